//! How a conversion's credit is kept, on its `report_conversions` row: its touches' click times,
//! their groups (channel, source, medium, campaign) once each, and which touches are the
//! matcher's touchpoint and first touch. The shares are not stored: the models' rules give
//! them again from exactly this ([`crate::shares::share`]), so a retraction takes out of the
//! rollups what the credit put in, and `GET /v1/events/{id}/credit` shows what reports count.
//!
//! A repeat customer's sale with forty touches of one campaign keeps about 450 bytes (it took
//! forty rows, about 11 KB, when every touch had a row of its shares).

use rust_decimal::Decimal;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::shares::{share, Timed, DIRECT};
use crate::Result;

/// One touch of a conversion with its shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credited {
    /// When the click happened (`None` for the row of a conversion without a touch).
    pub clicked_at: Option<OffsetDateTime>,
    /// Its channel.
    pub channel: String,
    /// Its utm source, medium and campaign.
    pub source: Option<String>,
    /// See `source`.
    pub medium: Option<String>,
    /// See `source`.
    pub campaign: Option<String>,
    /// Its share under each model, indexed like [`crate::Model::ALL`].
    pub shares: [Decimal; 5],
}

impl Credited {
    /// The row of a conversion without a touch: `direct` takes everything.
    pub(crate) fn direct() -> Self {
        Self {
            clicked_at: None,
            channel: DIRECT.into(),
            source: None,
            medium: None,
            campaign: None,
            shares: [Decimal::ONE; 5],
        }
    }

    fn same_group(&self, other: &Self) -> bool {
        self.channel == other.channel
            && self.source == other.source
            && self.medium == other.medium
            && self.campaign == other.campaign
    }
}

/// A conversion's touches with their shares, oldest first, and which of them the single-touch
/// models credit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CreditedTouches {
    /// The touches; one `direct` row without a click time for a conversion without a touch.
    pub touches: Vec<Credited>,
    /// The index of the touchpoint (last click) in `touches`.
    pub last: usize,
    /// The index of the first touch.
    pub first: usize,
}

impl CreditedTouches {
    /// The credit of a conversion without a touch.
    pub fn direct() -> Self {
        Self {
            touches: vec![Credited::direct()],
            last: 0,
            first: 0,
        }
    }
}

/// A conversion's credit, by event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConversionCredit {
    /// The event.
    pub event_id: Uuid,
    /// Its touches.
    pub credit: CreditedTouches,
}

/// The step's touches as statement parameters: per conversion (in the order given) the
/// touchpoint's and first touch's indexes, and flat lists that a statement aggregates back into
/// each conversion's arrays (see [`touch_arrays`]).
#[derive(Default)]
pub(crate) struct TouchParams<'a> {
    pub last: Vec<Option<i16>>,
    pub first: Vec<Option<i16>>,
    pub touch_events: Vec<Uuid>,
    pub touch_times: Vec<OffsetDateTime>,
    pub group_events: Vec<Uuid>,
    pub group_values: Vec<Option<&'a str>>,
    /// Only for conversions whose touches are of more than one group (else all are of group 0).
    pub touch_group_events: Vec<Uuid>,
    pub touch_groups: Vec<i16>,
}

/// The CTEs that aggregate [`TouchParams`]' flat lists, given as the six parameters from `$a`
/// on, back into each conversion's arrays: `t(event_id, touched_at)`, `g(event_id, groups)`,
/// `tg(event_id, touch_groups)`.
pub(crate) fn touch_arrays(a: usize) -> String {
    let p = |i: usize| format!("${}", a + i);
    format!(
        "t AS (
            SELECT event_id, array_agg(clicked_at ORDER BY i) AS touched_at
            FROM unnest({}::uuid[], {}::timestamptz[]) WITH ORDINALITY AS t(event_id, clicked_at, i)
            GROUP BY event_id
        ), g AS (
            SELECT event_id, array_agg(value ORDER BY i) AS groups
            FROM unnest({}::uuid[], {}::text[]) WITH ORDINALITY AS g(event_id, value, i)
            GROUP BY event_id
        ), tg AS (
            SELECT event_id, array_agg(g ORDER BY i) AS touch_groups
            FROM unnest({}::uuid[], {}::smallint[]) WITH ORDINALITY AS tg(event_id, g, i)
            GROUP BY event_id
        )",
        p(0),
        p(1),
        p(2),
        p(3),
        p(4),
        p(5)
    )
}

impl<'a> TouchParams<'a> {
    /// The parameters of `credits`, in their order.
    pub fn of(credits: &'a [ConversionCredit]) -> Self {
        let mut out = Self::default();
        for c in credits {
            out.push(c);
        }
        out
    }

    fn push(&mut self, c: &'a ConversionCredit) {
        let touches = &c.credit.touches;
        let touched = touches.iter().any(|t| t.clicked_at.is_some());
        let index = |i: usize| touched.then(|| i16::try_from(i).unwrap_or(i16::MAX));
        self.last.push(index(c.credit.last));
        self.first.push(index(c.credit.first));
        if !touched {
            return;
        }
        let mut groups: Vec<&Credited> = Vec::new();
        let mut of_touch = Vec::with_capacity(touches.len());
        for touch in touches {
            let Some(clicked_at) = touch.clicked_at else {
                continue;
            };
            self.touch_events.push(c.event_id);
            self.touch_times.push(clicked_at);
            let g = match groups.iter().position(|g| g.same_group(touch)) {
                Some(g) => g,
                None => {
                    groups.push(touch);
                    groups.len() - 1
                }
            };
            of_touch.push(i16::try_from(g).unwrap_or(i16::MAX));
        }
        for g in &groups {
            self.group_events.extend([c.event_id; 4]);
            self.group_values.extend([
                Some(g.channel.as_str()),
                g.source.as_deref(),
                g.medium.as_deref(),
                g.campaign.as_deref(),
            ]);
        }
        if groups.len() > 1 {
            self.touch_group_events
                .extend(std::iter::repeat_n(c.event_id, of_touch.len()));
            self.touch_groups.extend(of_touch);
        }
    }
}

/// The columns [`from_row`] reads, from `report_conversions c`.
pub(crate) const COLUMNS: &str =
    "c.last_touch, c.first_touch, c.touched_at, c.groups, c.touch_groups";

/// A conversion at `at` as stored, its touches shared out again, from [`COLUMNS`] starting at
/// column `from` (without a time, which a counted conversion always has, it reads as direct).
pub(crate) fn from_row(
    row: &Row,
    from: usize,
    at: Option<OffsetDateTime>,
) -> Result<CreditedTouches> {
    let last: Option<i16> = row.try_get(from)?;
    let first: Option<i16> = row.try_get(from + 1)?;
    let touched_at: Option<Vec<OffsetDateTime>> = row.try_get(from + 2)?;
    let groups: Option<Vec<Option<String>>> = row.try_get(from + 3)?;
    let touch_groups: Option<Vec<i16>> = row.try_get(from + 4)?;
    let (Some(at), Some(touched_at), Some(groups)) = (at, touched_at, groups) else {
        return Ok(CreditedTouches::direct());
    };
    let index = |i: Option<i16>| i.and_then(|i| usize::try_from(i).ok());
    let last = index(last).unwrap_or(touched_at.len().saturating_sub(1));
    let first = index(first).unwrap_or(last);
    Ok(reshare(
        at,
        touched_at,
        &groups,
        touch_groups.as_deref(),
        last,
        first,
    ))
}

/// The touches of a conversion at `at` from what a row keeps: their click times (oldest first),
/// the groups as four values each, the group of each touch (`None`: all of the first), and the
/// indexes of the touchpoint and the first touch.
pub(crate) fn reshare(
    at: OffsetDateTime,
    touched_at: Vec<OffsetDateTime>,
    groups: &[Option<String>],
    touch_groups: Option<&[i16]>,
    last: usize,
    first: usize,
) -> CreditedTouches {
    if touched_at.is_empty() {
        return CreditedTouches::direct();
    }
    let timed: Vec<Timed> = touched_at
        .iter()
        .map(|&clicked_at| Timed { clicked_at })
        .collect();
    let shares = share(at, &timed, last, first);
    let group = |g: usize| {
        let values = groups.get(4 * g..4 * g + 4).or_else(|| groups.get(..4));
        let value = |k: usize| values.and_then(|v| v[k].clone());
        (
            value(0).unwrap_or_else(|| DIRECT.into()),
            value(1),
            value(2),
            value(3),
        )
    };
    let touches = touched_at
        .into_iter()
        .zip(shares)
        .enumerate()
        .map(|(i, (clicked_at, shares))| {
            let g = touch_groups
                .and_then(|t| t.get(i))
                .and_then(|&g| usize::try_from(g).ok())
                .unwrap_or(0);
            let (channel, source, medium, campaign) = group(g);
            Credited {
                clicked_at: Some(clicked_at),
                channel,
                source,
                medium,
                campaign,
                shares,
            }
        })
        .collect();
    CreditedTouches {
        touches,
        last,
        first,
    }
}

/// What a conversion's row keeps, shared out again at `at` (as [`insert`] then [`from_row`]).
#[cfg(test)]
pub(crate) fn round_trip(c: &ConversionCredit, at: OffsetDateTime) -> CreditedTouches {
    let rows = TouchParams::of(std::slice::from_ref(c));
    let groups: Vec<Option<String>> = rows
        .group_values
        .iter()
        .map(|v| v.map(str::to_owned))
        .collect();
    let touch_groups = (!rows.touch_groups.is_empty()).then_some(rows.touch_groups.as_slice());
    let index = |i: Option<i16>| usize::try_from(i.unwrap_or(0)).unwrap_or(0);
    if rows.touch_times.is_empty() {
        assert!(groups.is_empty() && rows.last == [None] && rows.first == [None]);
        return CreditedTouches::direct();
    }
    reshare(
        at,
        rows.touch_times,
        &groups,
        touch_groups,
        index(rows.last[0]),
        index(rows.first[0]),
    )
}
