//! The credit stage: right after the matcher decides (in the matcher's transaction), each decided
//! conversion's touches in its attribution window are read once, their shares under every model
//! stored (`credit_shares`), and the conversion's contribution added to the rollups; a
//! re-decision (a pending sale matched late) takes the old contribution out first. Retractions
//! and value changes adjust the rollups the same way, so reports never re-walk a history.
//!
//! Every write first locks the conversion's `report_conversions` row (an upsert), so that a
//! retraction racing a credit, or a restatement racing a re-decision, is applied once.

use std::collections::{HashMap, HashSet};

use attribution_matcher::{touches_in_window, WindowProbe, WindowTouch};
use deadpool_postgres::GenericClient;
use events::{Attribution, EventKind, Touchpoint};
use rust_decimal::Decimal;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::shares::{channel, share, Timed, DIRECT};
use crate::tier::{conversion_tiers, Tier};
use crate::Result;

/// At most this many of a person's clicks in a window (the latest) share a conversion's credit,
/// per person merged into it: the bound on what one conversion costs to credit.
pub const MAX_TOUCHES: usize = 100;

/// A decided conversion, as the credit stage needs it.
#[derive(Debug, Clone, Copy)]
pub struct Conversion<'a> {
    /// The event.
    pub event_id: Uuid,
    /// Lead or sale.
    pub kind: EventKind,
    /// When it happened (the event's `timestamp`).
    pub occurred_at: OffsetDateTime,
    /// Its `eventName`.
    pub event_name: &'a str,
    /// Its value: a sale's amount, a lead's amount when it has one.
    pub value: Option<(Decimal, &'a str)>,
    /// Retracted already: kept out of the rollups.
    pub retracted: bool,
    /// The matcher's decision.
    pub attribution: &'a Attribution,
}

/// One touch of a conversion with its shares, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credited {
    /// The identifier that owns the click, when the identity graph has it.
    pub owner: Option<Vec<u8>>,
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

/// Shares `conversions`' credit among their touches and adds them to the rollups, inside the
/// caller's transaction; `window` is the workspace's attribution window. Answers how many
/// conversions were credited.
pub async fn credit(
    client: &impl GenericClient,
    workspace_id: Uuid,
    conversions: &[Conversion<'_>],
    window: Duration,
) -> Result<usize> {
    if conversions.is_empty() {
        return Ok(0);
    }
    // One row per event (the last decision of the step wins), in id order for the locks.
    let mut by_id: HashMap<Uuid, &Conversion<'_>> = HashMap::new();
    for c in conversions {
        by_id.insert(c.event_id, c);
    }
    let mut ids: Vec<Uuid> = by_id.keys().copied().collect();
    ids.sort_unstable();
    let list: Vec<&Conversion<'_>> = ids.iter().filter_map(|id| by_id.get(id).copied()).collect();

    let names: Vec<&str> = {
        let set: HashSet<&str> = list.iter().map(|c| c.event_name).collect();
        set.into_iter().collect()
    };
    let tiers = conversion_tiers(client, workspace_id, &names).await?;

    let probes: Vec<WindowProbe> = list
        .iter()
        .filter(|c| c.attribution.click.is_some())
        .map(|c| WindowProbe {
            event_id: c.event_id,
            at: c.occurred_at,
            since: c.occurred_at.saturating_sub(window),
        })
        .collect();
    let limit = i64::try_from(MAX_TOUCHES).unwrap_or(i64::MAX);
    let mut windows = touches_in_window(client, workspace_id, &probes, limit).await?;

    // Lock (or create) the conversions' rows; values already there (a restated amount) win.
    let kinds: Vec<&str> = list.iter().map(|c| c.kind.as_str()).collect();
    let at: Vec<OffsetDateTime> = list.iter().map(|c| c.occurred_at).collect();
    let event_names: Vec<&str> = list.iter().map(|c| c.event_name).collect();
    let tier_names: Vec<&str> = list
        .iter()
        .map(|c| {
            tiers
                .get(c.event_name)
                .copied()
                .unwrap_or_default()
                .as_str()
        })
        .collect();
    let amounts: Vec<Option<Decimal>> = list.iter().map(|c| c.value.map(|v| v.0)).collect();
    let currencies: Vec<Option<&str>> = list.iter().map(|c| c.value.map(|v| v.1)).collect();
    let retracted: Vec<bool> = list.iter().map(|c| c.retracted).collect();
    let statement = client.prepare_cached(UPSERT_CONVERSIONS).await?;
    client
        .execute(
            &statement,
            &[
                &workspace_id,
                &ids,
                &kinds,
                &at,
                &event_names,
                &tier_names,
                &amounts,
                &currencies,
                &retracted,
            ],
        )
        .await?;

    apply(client, workspace_id, &ids, Decimal::NEGATIVE_ONE).await?;

    let mut rows = SharesRows::default();
    for c in &list {
        let touches = windows.remove(&c.event_id).unwrap_or_default();
        for (n, credited) in credit_one(c, touches).into_iter().enumerate() {
            rows.push(c.event_id, i16::try_from(n).unwrap_or(i16::MAX), credited);
        }
    }
    let statement = client.prepare_cached(DELETE_SHARES).await?;
    client.execute(&statement, &[&workspace_id, &ids]).await?;
    rows.insert(client, workspace_id).await?;

    apply(client, workspace_id, &ids, Decimal::ONE).await?;
    Ok(list.len())
}

/// The touches of one conversion and their shares: the clicks in its window (the latest
/// [`MAX_TOUCHES`]) with the matcher's touchpoint and first touch among them; one `direct` row
/// for a conversion without a touchpoint.
pub fn credit_one(c: &Conversion<'_>, window: Vec<WindowTouch>) -> Vec<Credited> {
    let Some(last_click) = c.attribution.click.as_ref() else {
        return vec![Credited {
            owner: None,
            clicked_at: None,
            channel: DIRECT.into(),
            source: None,
            medium: None,
            campaign: None,
            shares: [Decimal::ONE; 5],
        }];
    };
    let first_click = c.attribution.first_touch.as_ref().unwrap_or(last_click);
    let mut touches: Vec<(Option<[u8; 32]>, Touchpoint)> = window
        .into_iter()
        .map(|t| (Some(t.owner), t.touchpoint))
        .collect();
    touches.sort_by_key(|t| (t.1.clicked_at, t.0));
    touches.dedup_by(|a, b| a.0.is_some() && a.0 == b.0);
    if touches.len() > MAX_TOUCHES {
        touches.drain(..touches.len() - MAX_TOUCHES);
    }
    let same = |a: &Touchpoint, b: &Touchpoint| {
        a.clicked_at == b.clicked_at && a.click_ids == b.click_ids && a.utm == b.utm
    };
    let find_or_add =
        |wanted: &Touchpoint, touches: &mut Vec<(Option<[u8; 32]>, Touchpoint)>| match touches
            .iter()
            .rposition(|(_, t)| same(t, wanted))
        {
            Some(i) => i,
            None => {
                let at = touches.partition_point(|(_, t)| t.clicked_at <= wanted.clicked_at);
                touches.insert(at, (None, wanted.clone()));
                at
            }
        };
    // The first touch goes in before the last, so adding it cannot move the last's index.
    let _ = find_or_add(first_click, &mut touches);
    let last = find_or_add(last_click, &mut touches);
    let first = touches
        .iter()
        .position(|(_, t)| same(t, first_click))
        .unwrap_or(0);
    let timed: Vec<Timed> = touches
        .iter()
        .map(|(_, t)| Timed {
            clicked_at: t.clicked_at,
        })
        .collect();
    let shares = share(c.occurred_at, &timed, last, first);
    touches
        .into_iter()
        .zip(shares)
        .map(|((owner, t), shares)| {
            let utm = t.utm.as_ref();
            Credited {
                owner: owner.map(|o| o.to_vec()),
                clicked_at: Some(t.clicked_at),
                channel: channel(Some(&t)),
                source: utm.and_then(|u| u.source.clone()),
                medium: utm.and_then(|u| u.medium.clone()),
                campaign: utm.and_then(|u| u.campaign.clone()),
                shares,
            }
        })
        .collect()
}

#[derive(Default)]
struct SharesRows {
    event_ids: Vec<Uuid>,
    n: Vec<i16>,
    owners: Vec<Option<Vec<u8>>>,
    clicked_at: Vec<Option<OffsetDateTime>>,
    channels: Vec<String>,
    sources: Vec<Option<String>>,
    mediums: Vec<Option<String>>,
    campaigns: Vec<Option<String>>,
    shares: [Vec<Decimal>; 5],
}

impl SharesRows {
    fn push(&mut self, event_id: Uuid, n: i16, c: Credited) {
        self.event_ids.push(event_id);
        self.n.push(n);
        self.owners.push(c.owner);
        self.clicked_at.push(c.clicked_at);
        self.channels.push(c.channel);
        self.sources.push(c.source);
        self.mediums.push(c.medium);
        self.campaigns.push(c.campaign);
        for (m, s) in c.shares.into_iter().enumerate() {
            self.shares[m].push(s);
        }
    }

    async fn insert(&self, client: &impl GenericClient, workspace_id: Uuid) -> Result<()> {
        if self.event_ids.is_empty() {
            return Ok(());
        }
        let statement = client.prepare_cached(INSERT_SHARES).await?;
        client
            .execute(
                &statement,
                &[
                    &workspace_id,
                    &self.event_ids,
                    &self.n,
                    &self.owners,
                    &self.clicked_at,
                    &self.channels,
                    &self.sources,
                    &self.mediums,
                    &self.campaigns,
                    &self.shares[0],
                    &self.shares[1],
                    &self.shares[2],
                    &self.shares[3],
                    &self.shares[4],
                ],
            )
            .await?;
        Ok(())
    }
}

const UPSERT_CONVERSIONS: &str = "
    INSERT INTO report_conversions AS r
        (workspace_id, event_id, kind, occurred_at, event_name, tier, amount, currency, retracted,
         credited_at)
    SELECT $1, q.* , now()
    FROM unnest($2::uuid[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::numeric[],
                $8::text[], $9::bool[])
         AS q(event_id, kind, occurred_at, event_name, tier, amount, currency, retracted)
    ORDER BY q.event_id
    ON CONFLICT (workspace_id, event_id) DO UPDATE SET
        kind = coalesce(r.kind, excluded.kind),
        occurred_at = coalesce(r.occurred_at, excluded.occurred_at),
        event_name = coalesce(r.event_name, excluded.event_name),
        tier = coalesce(r.tier, excluded.tier),
        amount = CASE WHEN r.amount IS NULL THEN excluded.amount ELSE r.amount END,
        currency = CASE WHEN r.amount IS NULL THEN excluded.currency ELSE r.currency END,
        retracted = r.retracted OR excluded.retracted,
        credited_at = now()";

const DELETE_SHARES: &str =
    "DELETE FROM credit_shares WHERE workspace_id = $1 AND event_id = ANY($2::uuid[])";

const INSERT_SHARES: &str = "
    INSERT INTO credit_shares (workspace_id, event_id, n, owner, clicked_at, channel, source,
        medium, campaign, last_click, first_click, linear, position_based, time_decay)
    SELECT $1, q.*
    FROM unnest($2::uuid[], $3::smallint[], $4::bytea[], $5::timestamptz[], $6::text[],
                $7::text[], $8::text[], $9::text[], $10::numeric[], $11::numeric[],
                $12::numeric[], $13::numeric[], $14::numeric[]) AS q";

/// The counted conversions (credited, not retracted) that `{filter}` selects, with their
/// touches summed per day and everything a rollup row is keyed by, before the expansion into
/// models and groupings: a rebuild aggregates millions of touches into a few thousand rows
/// first. With `times`, the touches are those with a click, keyed by the wait's bucket too, and
/// weighted by the wait (else by the amount).
fn summed(filter: &str, times: bool) -> String {
    let weight = |column: &str, by: &str| format!("sum(s.{column}{by}) AS {column}");
    let by = if times { " * w.w" } else { " * c.amount" };
    let touched = if times {
        "s.clicked_at IS NOT NULL"
    } else {
        "true"
    };
    let models = [
        "last_click",
        "first_click",
        "linear",
        "position_based",
        "time_decay",
    ];
    let shares: Vec<String> = models.iter().map(|m| weight(m, "")).collect();
    let weighted: Vec<String> = models
        .iter()
        .map(|m| format!("sum(s.{m}{by}) AS {m}_x"))
        .collect();
    let (select, group, pick) = if times {
        (
            format!(", ({BUCKET_SQL}) AS bucket"),
            ", bucket",
            ", t.bucket",
        )
    } else {
        (String::new(), "", "")
    };
    format!(
        "WITH c AS (
            SELECT event_id, kind, event_name, tier, amount, currency, occurred_at,
                   (occurred_at AT TIME ZONE 'UTC')::date AS day
            FROM report_conversions
            WHERE workspace_id = $1 AND {filter} AND NOT retracted AND kind IS NOT NULL
              AND credited_at IS NOT NULL
        ), t AS (
            SELECT c.day, c.tier, c.kind, c.currency, c.event_name, s.channel, s.source,
                   s.medium, s.campaign{select}, {}, {}
            FROM c
            JOIN credit_shares s ON s.workspace_id = $1 AND s.event_id = c.event_id
            CROSS JOIN LATERAL (
                SELECT greatest(extract(epoch FROM c.occurred_at - s.clicked_at), 0) AS w
            ) AS w
            WHERE {touched}
            GROUP BY c.day, c.tier, c.kind, c.currency, c.event_name, s.channel, s.source,
                     s.medium, s.campaign{group}
        ), x AS (
            SELECT t.day, t.tier, t.kind, t.currency{pick}, m.model, m.share, m.weighted,
                   d.dim, d.key
            FROM t
            CROSS JOIN LATERAL (VALUES
                (0::smallint, t.last_click, t.last_click_x),
                (1::smallint, t.first_click, t.first_click_x),
                (2::smallint, t.linear, t.linear_x),
                (3::smallint, t.position_based, t.position_based_x),
                (4::smallint, t.time_decay, t.time_decay_x)) AS m(model, share, weighted)
            CROSS JOIN LATERAL (VALUES (0::smallint, t.channel),
                (1::smallint, coalesce(t.source, '{none}')),
                (2::smallint, coalesce(t.medium, '{none}')),
                (3::smallint, coalesce(t.campaign, '{none}')),
                (4::smallint, coalesce(t.event_name, '{none}'))) AS d(dim, key)
            WHERE m.share <> 0
        )",
        shares.join(", "),
        weighted.join(", "),
        none = crate::NONE_KEY
    )
}

fn apply_rollups_sql(filter: &str) -> String {
    format!(
        "{}
        INSERT INTO report_rollups AS r
            (workspace_id, model, dim, day, key, tier, currency, leads, sales, revenue, value)
        SELECT $1, model, dim, day, key, tier, coalesce(currency, ''),
               $2::numeric * coalesce(sum(share) FILTER (WHERE kind = 'lead'), 0),
               $2::numeric * coalesce(sum(share) FILTER (WHERE kind = 'sale'), 0),
               $2::numeric * coalesce(sum(weighted) FILTER (WHERE kind = 'sale'), 0),
               $2::numeric * coalesce(sum(weighted), 0)
        FROM x
        GROUP BY model, dim, day, key, tier, coalesce(currency, '')
        ORDER BY model, dim, day, key, tier, coalesce(currency, '')
        ON CONFLICT (workspace_id, model, dim, day, key, tier, currency) DO UPDATE SET
            leads = r.leads + excluded.leads,
            sales = r.sales + excluded.sales,
            revenue = r.revenue + excluded.revenue,
            value = r.value + excluded.value",
        summed(filter, false)
    )
}

/// The bucket of a wait `w.w` in seconds, as `report_times` documents it.
pub const BUCKET_SQL: &str =
    "CASE WHEN w.w < 1 THEN 0 ELSE 1 + floor(ln(w.w::float8) / ln(1.5))::int END";

fn apply_times_sql(filter: &str) -> String {
    format!(
        "{}
        INSERT INTO report_times AS r
            (workspace_id, model, dim, day, key, tier, bucket, weight, seconds)
        SELECT $1, model, dim, day, key, tier, bucket::smallint,
               ($2::numeric * sum(share))::float8, ($2::numeric * sum(weighted))::float8
        FROM x
        GROUP BY model, dim, day, key, tier, bucket
        ORDER BY model, dim, day, key, tier, bucket
        ON CONFLICT (workspace_id, model, dim, day, key, tier, bucket) DO UPDATE SET
            weight = r.weight + excluded.weight,
            seconds = r.seconds + excluded.seconds",
        summed(filter, true)
    )
}

/// Adds (`sign` 1) or takes out (`sign` -1) the contributions of `event_ids`.
async fn apply(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_ids: &[Uuid],
    sign: Decimal,
) -> Result<()> {
    let filter = "event_id = ANY($3::uuid[])";
    let rollups = client.prepare_cached(&apply_rollups_sql(filter)).await?;
    client
        .execute(&rollups, &[&workspace_id, &sign, &event_ids])
        .await?;
    let times = client.prepare_cached(&apply_times_sql(filter)).await?;
    client
        .execute(&times, &[&workspace_id, &sign, &event_ids])
        .await?;
    Ok(())
}

/// Rebuilds a workspace's conversion rollups from the stored shares (after a bulk load, or to
/// repair them); registered clicks are counted as they come and are left as they are.
pub async fn refresh(client: &impl GenericClient, workspace_id: Uuid) -> Result<()> {
    for sql in [
        "DELETE FROM report_rollups WHERE workspace_id = $1",
        "DELETE FROM report_times WHERE workspace_id = $1",
    ] {
        let statement = client.prepare_cached(sql).await?;
        client.execute(&statement, &[&workspace_id]).await?;
    }
    let filter = "$3::bool";
    for sql in [apply_rollups_sql(filter), apply_times_sql(filter)] {
        let statement = client.prepare(&sql).await?;
        client
            .execute(&statement, &[&workspace_id, &Decimal::ONE, &true])
            .await?;
    }
    Ok(())
}

const LOCK_CONVERSION: &str = "
    INSERT INTO report_conversions AS r (workspace_id, event_id) VALUES ($1, $2)
    ON CONFLICT (workspace_id, event_id) DO UPDATE SET retracted = r.retracted
    RETURNING r.retracted";

/// Takes a retracted conversion out of the rollups, inside the caller's transaction (the one
/// that retracts the event). Idempotent; a conversion not credited yet is kept out when it is.
pub async fn retract(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_id: Uuid,
) -> Result<()> {
    let lock = client.prepare_cached(LOCK_CONVERSION).await?;
    let row = client.query_one(&lock, &[&workspace_id, &event_id]).await?;
    if row.try_get::<_, bool>(0)? {
        return Ok(());
    }
    apply(client, workspace_id, &[event_id], Decimal::NEGATIVE_ONE).await?;
    let statement = client
        .prepare_cached(
            "UPDATE report_conversions SET retracted = true WHERE workspace_id = $1 AND event_id = $2",
        )
        .await?;
    client
        .execute(&statement, &[&workspace_id, &event_id])
        .await?;
    Ok(())
}

/// Applies a change of one conversion's value (a restated sale, a lead valued later) to the
/// rollups, inside the caller's transaction. A conversion not credited yet takes the new value
/// when it is; a retracted one keeps out of the rollups. Answers whether the value changed.
pub async fn apply_value_change(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_id: Uuid,
    amount: Decimal,
    currency: &str,
) -> Result<bool> {
    let lock = client.prepare_cached(LOCK_CONVERSION).await?;
    client.query_one(&lock, &[&workspace_id, &event_id]).await?;
    let current = client
        .prepare_cached(
            "SELECT amount, currency FROM report_conversions WHERE workspace_id = $1 AND event_id = $2",
        )
        .await?;
    let row = client
        .query_one(&current, &[&workspace_id, &event_id])
        .await?;
    let before: (Option<Decimal>, Option<String>) = (row.try_get(0)?, row.try_get(1)?);
    if before.0 == Some(amount) && before.1.as_deref() == Some(currency) {
        return Ok(false);
    }
    apply(client, workspace_id, &[event_id], Decimal::NEGATIVE_ONE).await?;
    let update = client
        .prepare_cached(
            "UPDATE report_conversions SET amount = $3, currency = $4
             WHERE workspace_id = $1 AND event_id = $2",
        )
        .await?;
    client
        .execute(&update, &[&workspace_id, &event_id, &amount, &currency])
        .await?;
    apply(client, workspace_id, &[event_id], Decimal::ONE).await?;
    Ok(true)
}

/// The tier a conversion was counted under (`None` before it is credited).
pub async fn conversion_tier(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_id: Uuid,
) -> Result<Option<Tier>> {
    let statement = client
        .prepare_cached(
            "SELECT tier FROM report_conversions WHERE workspace_id = $1 AND event_id = $2",
        )
        .await?;
    let row = client
        .query_opt(&statement, &[&workspace_id, &event_id])
        .await?;
    Ok(match row {
        Some(row) => row
            .try_get::<_, Option<String>>(0)?
            .as_deref()
            .and_then(Tier::parse),
        None => None,
    })
}

/// A conversion's touches with their shares, oldest first (empty before it is credited).
pub async fn shares_of(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_id: Uuid,
) -> Result<Vec<Credited>> {
    let statement = client
        .prepare_cached(
            "SELECT owner, clicked_at, channel, source, medium, campaign, last_click, first_click,
                    linear, position_based, time_decay
             FROM credit_shares WHERE workspace_id = $1 AND event_id = $2
             ORDER BY clicked_at NULLS FIRST, n",
        )
        .await?;
    let mut out = Vec::new();
    for row in client
        .query(&statement, &[&workspace_id, &event_id])
        .await?
    {
        out.push(Credited {
            owner: row.try_get(0)?,
            clicked_at: row.try_get(1)?,
            channel: row.try_get(2)?,
            source: row.try_get(3)?,
            medium: row.try_get(4)?,
            campaign: row.try_get(5)?,
            shares: [
                row.try_get(6)?,
                row.try_get(7)?,
                row.try_get(8)?,
                row.try_get(9)?,
                row.try_get(10)?,
            ],
        });
    }
    Ok(out)
}

/// Takes erased conversions out of the rollups and deletes their rows (their touches reference
/// the person's identifiers), inside the caller's transaction: what erasing a person does to
/// reports. Answers how many conversions were erased.
pub async fn erase(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_ids: &[Uuid],
) -> Result<u64> {
    if event_ids.is_empty() {
        return Ok(0);
    }
    let mut ids = event_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let lock = client
        .prepare_cached(
            "SELECT event_id FROM report_conversions
             WHERE workspace_id = $1 AND event_id = ANY($2::uuid[])
             ORDER BY event_id FOR UPDATE",
        )
        .await?;
    client.query(&lock, &[&workspace_id, &ids]).await?;
    apply(client, workspace_id, &ids, Decimal::NEGATIVE_ONE).await?;
    let shares = client.prepare_cached(DELETE_SHARES).await?;
    client.execute(&shares, &[&workspace_id, &ids]).await?;
    let rows = client
        .prepare_cached(
            "DELETE FROM report_conversions WHERE workspace_id = $1 AND event_id = ANY($2::uuid[])",
        )
        .await?;
    Ok(client.execute(&rows, &[&workspace_id, &ids]).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::{AttributionStatus, ClickIds, MatchedBy, Utm};
    use time::macros::datetime;

    fn touchpoint(at: OffsetDateTime, source: &str, gclid: Option<&str>) -> Touchpoint {
        Touchpoint {
            click_id: None,
            clicked_at: at,
            click_ids: ClickIds {
                gclid: gclid.map(String::from),
                ..ClickIds::default()
            },
            utm: Some(Utm {
                source: Some(source.into()),
                campaign: Some("spring".into()),
                ..Utm::default()
            }),
            url: None,
            referrer: None,
            ip: None,
            user_agent: None,
        }
    }

    fn attribution(click: Option<Touchpoint>, first: Option<Touchpoint>) -> Attribution {
        Attribution {
            status: if click.is_some() {
                AttributionStatus::Matched
            } else {
                AttributionStatus::Unmatched
            },
            matched_by: click.as_ref().map(|_| MatchedBy::ClickId),
            click,
            model: "last_click".into(),
            first_touch: first,
            pending_until: None,
            decided_at: datetime!(2026-04-20 0:00 UTC),
            ignored_identifiers: Vec::new(),
        }
    }

    fn conversion(a: &Attribution) -> Conversion<'_> {
        Conversion {
            event_id: Uuid::nil(),
            kind: EventKind::Sale,
            occurred_at: datetime!(2026-04-20 0:00 UTC),
            event_name: "sale",
            value: Some((Decimal::from(100), "USD")),
            retracted: false,
            attribution: a,
        }
    }

    #[test]
    fn a_conversion_without_a_touch_is_direct_under_every_model() {
        let a = attribution(None, None);
        let credited = credit_one(&conversion(&a), Vec::new());
        assert_eq!(credited.len(), 1);
        assert_eq!(credited[0].channel, "direct");
        assert_eq!(credited[0].shares, [Decimal::ONE; 5]);
    }

    #[test]
    fn the_matchers_touches_take_part_even_when_the_window_scan_missed_them() {
        let google = touchpoint(datetime!(2026-04-01 0:00 UTC), "google", Some("g"));
        let news = touchpoint(datetime!(2026-04-10 0:00 UTC), "newsletter", None);
        let late = touchpoint(datetime!(2026-04-19 0:00 UTC), "partner", None);
        let a = attribution(Some(news.clone()), Some(google.clone()));
        // The scan found the newsletter click and a later partner click, not the first touch.
        let window = vec![
            WindowTouch {
                owner: [2; 32],
                touchpoint: late,
            },
            WindowTouch {
                owner: [1; 32],
                touchpoint: news,
            },
        ];
        let credited = credit_one(&conversion(&a), window);
        let channels: Vec<&str> = credited.iter().map(|c| c.channel.as_str()).collect();
        assert_eq!(channels, ["google_ads", "newsletter", "partner"]);
        // Last click is the matcher's touchpoint (the named newsletter click), first click its
        // first touch; position based runs over time order.
        let column = |m: usize| -> Vec<String> {
            credited
                .iter()
                .map(|c| c.shares[m].normalize().to_string())
                .collect()
        };
        assert_eq!(column(0), ["0", "1", "0"]);
        assert_eq!(column(1), ["1", "0", "0"]);
        assert_eq!(column(3), ["0.4", "0.2", "0.4"]);
        assert_eq!(credited[0].owner, None);
        assert_eq!(credited[1].owner, Some(vec![1; 32]));
        assert_eq!(credited[0].campaign.as_deref(), Some("spring"));
    }

    #[test]
    fn a_person_with_thousands_of_clicks_shares_among_the_latest_hundred() {
        let last = touchpoint(datetime!(2026-04-19 0:00 UTC), "google", Some("g"));
        let first = touchpoint(datetime!(2026-01-25 0:00 UTC), "google", Some("g0"));
        let a = attribution(Some(last.clone()), Some(first));
        let window: Vec<WindowTouch> = (0..5000u32)
            .map(|i| WindowTouch {
                owner: {
                    let mut o = [0u8; 32];
                    o[..4].copy_from_slice(&i.to_be_bytes());
                    o
                },
                touchpoint: touchpoint(
                    datetime!(2026-02-01 0:00 UTC) + time::Duration::minutes(i64::from(i)),
                    "partner",
                    None,
                ),
            })
            .collect();
        let credited = credit_one(&conversion(&a), window);
        // The latest 100 of the scan, plus the matcher's first touch and touchpoint.
        assert_eq!(credited.len(), MAX_TOUCHES + 2);
        for m in 0..5 {
            let total: Decimal = credited.iter().map(|c| c.shares[m]).sum();
            assert_eq!(total, Decimal::ONE);
        }
    }
}
