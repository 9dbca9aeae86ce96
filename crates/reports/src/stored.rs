//! How a conversion's credit is kept, on its `report_conversions` row: its touches' click times,
//! their groups (channel, source, medium, campaign) once each, as their ids in `click_groups`,
//! and which touches are the matcher's touchpoint and first touch. The shares are not stored: the models' rules give
//! them again from exactly this ([`crate::shares::share`]), so a retraction takes out of the
//! rollups what the credit put in, and `GET /v1/events/{id}/credit` shows what reports count.
//!
//! A repeat customer's sale with forty touches of one campaign keeps about 200 bytes (it took
//! forty rows, about 11 KB, when every touch had a row of its shares).

use std::collections::BTreeMap;

use events::ClickGroups;
use rust_decimal::Decimal;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use integer_encoding::VarInt;

use crate::shares::{share, Timed, DIRECT};
use crate::{Error, Result};

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

    /// The id of its groups in `click_groups` ([`events::group_id`]).
    pub(crate) fn group_id(&self) -> i64 {
        events::group_id(
            &self.channel,
            self.source.as_deref(),
            self.medium.as_deref(),
            self.campaign.as_deref(),
        )
    }

    /// Its groups.
    pub(crate) fn groups(&self) -> ClickGroups {
        ClickGroups {
            channel: self.channel.clone(),
            source: self.source.clone(),
            medium: self.medium.clone(),
            campaign: self.campaign.clone(),
        }
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
/// touchpoint's and first touch's indexes and its encoded touches ([`encode`]); flat lists of
/// the ids of its groups that a statement aggregates back into each conversion's array (see
/// [`group_arrays`]); and the step's groups, each once, by id, for `click_groups`.
#[derive(Default)]
pub(crate) struct TouchParams<'a> {
    pub last: Vec<Option<i16>>,
    pub first: Vec<Option<i16>>,
    pub touches: Vec<Option<Vec<u8>>>,
    pub group_events: Vec<Uuid>,
    pub group_ids: Vec<i64>,
    pub groups: BTreeMap<i64, &'a Credited>,
}

/// The CTE that aggregates [`TouchParams`]' group lists, given as the two parameters from `$a`
/// on, back into each conversion's array: `g(event_id, group_ids)`.
pub(crate) fn group_arrays(a: usize) -> String {
    format!(
        "g AS (
            SELECT event_id, array_agg(id ORDER BY i) AS group_ids
            FROM unnest(${}::uuid[], ${}::bigint[]) WITH ORDINALITY AS g(event_id, id, i)
            GROUP BY event_id
        )",
        a,
        a + 1
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
        let times: Vec<OffsetDateTime> = touches.iter().filter_map(|t| t.clicked_at).collect();
        let touched = !times.is_empty();
        let index = |i: usize| touched.then(|| i16::try_from(i).unwrap_or(i16::MAX));
        self.last.push(index(c.credit.last));
        self.first.push(index(c.credit.first));
        if !touched {
            self.touches.push(None);
            return;
        }
        let mut groups: Vec<&Credited> = Vec::new();
        let mut of_touch = Vec::with_capacity(times.len());
        for touch in touches.iter().filter(|t| t.clicked_at.is_some()) {
            let g = match groups.iter().position(|g| g.same_group(touch)) {
                Some(g) => g,
                None => {
                    groups.push(touch);
                    groups.len() - 1
                }
            };
            of_touch.push(g);
        }
        let of_touch = (groups.len() > 1).then_some(of_touch.as_slice());
        self.touches.push(Some(encode(&times, of_touch)));
        for g in groups {
            let id = g.group_id();
            self.group_events.push(c.event_id);
            self.group_ids.push(id);
            self.groups.entry(id).or_insert(g);
        }
    }
}

/// A conversion's touches as its row keeps them (`touches bytea`), oldest first: for each touch
/// its click time, then (only when the touches are of more than one group) the index of its
/// group, each a varint. The first click time is counted from the Unix epoch, each next one from
/// the one before. A time is `2 × seconds` when it is whole seconds (as platforms and most
/// clients give them), else `2 × microseconds + 1`, zigzag-encoded: a touch usually takes two to
/// four bytes where a `timestamptz[]` took eight and a `smallint[]` two more.
pub(crate) fn encode(times: &[OffsetDateTime], groups: Option<&[usize]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 * times.len() + 8);
    let mut buffer = [0u8; 10];
    let mut before = 0i128;
    for (i, at) in times.iter().enumerate() {
        let micros = at.unix_timestamp_nanos() / 1000;
        let step = micros - before;
        before = micros;
        let code = if step % MICROS == 0 {
            2 * (step / MICROS)
        } else {
            2 * step + 1
        };
        // `time` dates lie within ±9999 years, so twice any difference in microseconds fits.
        let code = i64::try_from(code).unwrap_or(if code < 0 { i64::MIN } else { i64::MAX });
        let n = code.encode_var(&mut buffer);
        out.extend_from_slice(&buffer[..n]);
        if let Some(groups) = groups {
            let g = groups.get(i).copied().unwrap_or(0) as u64;
            let n = g.encode_var(&mut buffer);
            out.extend_from_slice(&buffer[..n]);
        }
    }
    out
}

/// Microseconds a second.
const MICROS: i128 = 1_000_000;

/// The click times and (with more than one of `groups`) the group of each touch that
/// [`encode`] wrote; `None` when the bytes are not such a list.
pub(crate) fn decode(
    bytes: &[u8],
    groups: usize,
) -> Option<(Vec<OffsetDateTime>, Option<Vec<usize>>)> {
    let mut times = Vec::with_capacity(bytes.len() / 3);
    let mut of_touch = (groups > 1).then(|| Vec::with_capacity(bytes.len() / 4));
    let mut rest = bytes;
    let mut micros = 0i128;
    while !rest.is_empty() {
        let (code, n) = i64::decode_var(rest)?;
        rest = rest.get(n..)?;
        let code = i128::from(code);
        micros += if code % 2 == 0 {
            code / 2 * MICROS
        } else {
            (code - 1) / 2
        };
        times.push(OffsetDateTime::from_unix_timestamp_nanos(micros.checked_mul(1000)?).ok()?);
        if let Some(of_touch) = &mut of_touch {
            let (g, n) = u64::decode_var(rest)?;
            rest = rest.get(n..)?;
            let g = usize::try_from(g).ok().filter(|&g| g < groups)?;
            of_touch.push(g);
        }
    }
    Some((times, of_touch))
}

/// The columns [`from_row`] reads, from `report_conversions c`: the groups as four values each,
/// read through their ids in `click_groups` (a row credited before they were kept by id keeps
/// the values themselves).
pub(crate) const COLUMNS: &str = "c.last_touch, c.first_touch, c.touches,
    coalesce(c.groups, (
        SELECT array_agg(v.value ORDER BY n.i, v.k)
        FROM unnest(c.group_ids) WITH ORDINALITY AS n(id, i)
        JOIN click_groups g ON g.workspace_id = c.workspace_id AND g.id = n.id
        CROSS JOIN LATERAL unnest(ARRAY[g.channel, g.source, g.medium, g.campaign])
            WITH ORDINALITY AS v(value, k)))";

/// Conversion `event_id` at `at` as stored, its touches shared out again, from [`COLUMNS`]
/// starting at column `from` (without a time, which a counted conversion always has, it reads as
/// direct).
pub(crate) fn from_row(
    row: &Row,
    from: usize,
    event_id: Uuid,
    at: Option<OffsetDateTime>,
) -> Result<CreditedTouches> {
    let last: Option<i16> = row.try_get(from)?;
    let first: Option<i16> = row.try_get(from + 1)?;
    let touches: Option<&[u8]> = row.try_get(from + 2)?;
    let groups: Option<Vec<Option<String>>> = row.try_get(from + 3)?;
    let (Some(at), Some(touches), Some(groups)) = (at, touches, groups) else {
        return Ok(CreditedTouches::direct());
    };
    let (times, of_touch) =
        decode(touches, groups.len() / 4).ok_or(Error::StoredTouches { event_id })?;
    let index = |i: Option<i16>| i.and_then(|i| usize::try_from(i).ok());
    let last = index(last).unwrap_or(times.len().saturating_sub(1));
    let first = index(first).unwrap_or(last);
    Ok(reshare(
        at,
        times,
        &groups,
        of_touch.as_deref(),
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
    touch_groups: Option<&[usize]>,
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
            let g = touch_groups.and_then(|t| t.get(i)).copied().unwrap_or(0);
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

/// What a conversion's row keeps, shared out again at `at` (as the credit step's upsert, then
/// [`from_row`]).
#[cfg(test)]
pub(crate) fn round_trip(c: &ConversionCredit, at: OffsetDateTime) -> CreditedTouches {
    let rows = TouchParams::of(std::slice::from_ref(c));
    let groups: Vec<Option<String>> = rows
        .group_ids
        .iter()
        .flat_map(|id| {
            let g = rows.groups[id];
            [
                Some(g.channel.clone()),
                g.source.clone(),
                g.medium.clone(),
                g.campaign.clone(),
            ]
        })
        .collect();
    let index = |i: Option<i16>| usize::try_from(i.unwrap_or(0)).unwrap_or(0);
    let Some(Some(touches)) = rows.touches.first() else {
        assert!(groups.is_empty() && rows.last == [None] && rows.first == [None]);
        return CreditedTouches::direct();
    };
    let (times, of_touch) = decode(touches, groups.len() / 4).unwrap();
    reshare(
        at,
        times,
        &groups,
        of_touch.as_deref(),
        index(rows.last[0]),
        index(rows.first[0]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    #[test]
    fn a_touch_at_whole_seconds_takes_a_few_bytes() {
        let at = datetime!(2026-04-01 12:00 UTC);
        let times: Vec<OffsetDateTime> = (0..60)
            .map(|i| at + time::Duration::minutes(17 * i))
            .collect();
        let bytes = encode(&times, None);
        // The first time from the epoch (five bytes), then 1,020 s apart (two bytes each).
        assert_eq!(bytes.len(), 5 + 59 * 2);
        assert_eq!(decode(&bytes, 1), Some((times, None)));
    }

    #[test]
    fn bytes_that_are_not_a_list_of_touches_are_refused() {
        assert_eq!(decode(&[0x80], 1), None);
        // A group index beyond the row's groups.
        let bytes = encode(&[datetime!(2026-04-01 0:00 UTC)], Some(&[2]));
        assert_eq!(decode(&bytes, 2), None);
        assert!(decode(&bytes, 3).is_some());
    }

    proptest! {
        #[test]
        fn touches_come_back_exactly(
            start in -62_000_000_000i64..250_000_000_000,
            steps in proptest::collection::vec((0i64..40_000_000_000_000, any::<bool>(), 0usize..4), 1..80),
        ) {
            let mut micros = i128::from(start) * 1_000_000;
            let mut times = Vec::new();
            let mut groups = Vec::new();
            for (step, whole, group) in steps {
                micros += if whole { i128::from(step / 1_000_000) * 1_000_000 } else { i128::from(step) };
                let Ok(at) = OffsetDateTime::from_unix_timestamp_nanos(micros * 1000) else { break };
                times.push(at);
                groups.push(group);
            }
            let bytes = encode(&times, Some(&groups));
            prop_assert_eq!(decode(&bytes, 4), Some((times.clone(), Some(groups))));
            let bytes = encode(&times, None);
            prop_assert_eq!(decode(&bytes, 1), Some((times, None)));
        }
    }
}
