//! The credit stage: behind the matcher (see `pipeline::credit_step`), each decided conversion's
//! touches in its attribution window are read once, their shares under every model stored
//! (`credit_shares`), and the conversion's contribution added to the rollups; a re-decision (a
//! pending sale matched late) takes the old contribution out first. Retractions and value
//! changes adjust the rollups the same way, so reports never re-walk a history.
//!
//! A step reads the windows of its whole batch in one statement of the matcher's
//! ([`attribution_matcher::window::clicks_in_window`]) and the clicks events carried from the
//! step's own events, the stage's [`ClickCache`], or one journal read for the rest.
//!
//! Every write first locks the conversion's `report_conversions` row (an upsert), so that a
//! retraction racing a credit, or a restatement racing a re-decision, is applied once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use attribution_matcher::window::{clicks_in_window, WindowProbe};
use deadpool_postgres::GenericClient;
use events::{Attribution, ClickIds, EventKind, Touchpoint, Utm};
use rust_decimal::Decimal;
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

use crate::shares::{share, Timed, DIRECT};
use crate::tier::{conversion_tiers, Tier};
use crate::touches::{resolve, ClickCache, ClickGroups, Touch};
use crate::{Result, NONE_KEY};

/// At most this many of a person's clicks in a window (the latest) share a conversion's credit,
/// per person merged into it: the bound on what one conversion costs to credit.
pub const MAX_TOUCHES: usize = 100;

/// What the matcher decided of a conversion's touches.
#[derive(Debug, Clone, Copy)]
pub enum Decided<'a> {
    /// The identifiers owning its touchpoint (last click) and first touch, as the decision
    /// references them (no touch: unmatched or pending).
    Owners {
        /// The touchpoint's owner.
        touch: Option<[u8; 32]>,
        /// The first touch's owner, when it is another click than the touchpoint.
        first_touch: Option<[u8; 32]>,
    },
    /// A decision stored as a copy of its attribution, before decisions referenced their
    /// touches: its touchpoint and first touch are all the touches it has.
    Copied(&'a Attribution),
}

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
    /// The click ids and utm the event itself carried (what a touch naming it reads).
    pub carried: (&'a ClickIds, Option<&'a Utm>),
    /// The matcher's decision.
    pub decided: Decided<'a>,
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
/// caller's transaction; `window` is the workspace's attribution window, `cache` the stage's
/// clicks kept between steps. Answers how many conversions were credited.
pub async fn credit(
    client: &impl GenericClient,
    workspace_id: Uuid,
    conversions: &[Conversion<'_>],
    window: Duration,
    cache: &mut ClickCache,
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
        .filter(|c| matches!(c.decided, Decided::Owners { touch: Some(_), .. }))
        .map(|c| WindowProbe {
            event_id: c.event_id,
            at: c.occurred_at,
            since: c.occurred_at.saturating_sub(window),
        })
        .collect();
    let limit = i64::try_from(MAX_TOUCHES).unwrap_or(i64::MAX);
    let clicks = clicks_in_window(client, workspace_id, &probes, limit).await?;
    let own: HashMap<Uuid, ClickGroups> = list
        .iter()
        .map(|c| (c.event_id, ClickGroups::of(c.carried.0, c.carried.1)))
        .collect();
    let mut windows = resolve(client, workspace_id, clicks, &own, cache).await?;

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
    let mut counted = HashMap::with_capacity(list.len());
    for row in client
        .query(
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
        .await?
    {
        counted.insert(
            row.try_get::<_, Uuid>(0)?,
            Counted {
                kind: row.try_get(1)?,
                occurred_at: row.try_get(2)?,
                event_name: row.try_get(3)?,
                tier: row.try_get(4)?,
                amount: row.try_get(5)?,
                currency: row.try_get(6)?,
                retracted: row.try_get(7)?,
            },
        );
    }

    // A conversion credited before (decided again) gives back its contribution first; read
    // after the locks, so a credit that committed meanwhile is seen.
    let statement = client.prepare_cached(SELECT_CREDITED).await?;
    let mut before = Vec::new();
    for row in client.query(&statement, &[&workspace_id, &ids]).await? {
        before.push(row.try_get::<_, Uuid>(0)?);
    }
    if !before.is_empty() {
        apply(client, workspace_id, &before, Decimal::NEGATIVE_ONE).await?;
        let statement = client.prepare_cached(DELETE_SHARES).await?;
        client
            .execute(&statement, &[&workspace_id, &before])
            .await?;
    }

    let mut rows = SharesRows::default();
    for c in &list {
        let touches = windows.remove(&c.event_id).unwrap_or_default();
        for (n, credited) in credit_one(c, touches).into_iter().enumerate() {
            rows.push(c.event_id, i16::try_from(n).unwrap_or(i16::MAX), credited);
        }
    }
    rows.insert(client, workspace_id).await?;

    // The step has every share in hand: it adds them up itself rather than reading them back.
    match Contributions::of(&counted, &rows) {
        Some(contributions) => contributions.add(client, workspace_id).await?,
        None => apply(client, workspace_id, &ids, Decimal::ONE).await?,
    }
    Ok(list.len())
}

/// The touches of one conversion and their shares: the clicks in its window (the latest
/// [`MAX_TOUCHES`]) with the matcher's touchpoint and first touch among them; one `direct` row
/// for a conversion without a touchpoint (or whose touchpoint's data is gone).
pub fn credit_one(c: &Conversion<'_>, window: Vec<Touch>) -> Vec<Credited> {
    let (mut touches, last, first) = match c.decided {
        Decided::Owners {
            touch: Some(touch),
            first_touch,
        } => owned_touches(window, touch, first_touch.unwrap_or(touch)),
        Decided::Owners { touch: None, .. } => None,
        Decided::Copied(attribution) => copied_touches(attribution),
    }
    .unwrap_or_default();
    if touches.is_empty() {
        return vec![Credited {
            owner: None,
            clicked_at: None,
            channel: DIRECT.into(),
            source: None,
            medium: None,
            campaign: None,
            shares: [Decimal::ONE; 5],
        }];
    }
    let timed: Vec<Timed> = touches
        .iter()
        .map(|t| Timed {
            clicked_at: t.clicked_at,
        })
        .collect();
    let shares = share(c.occurred_at, &timed, last, first);
    touches
        .drain(..)
        .zip(shares)
        .map(|(t, shares)| {
            let groups = Arc::unwrap_or_clone(t.groups);
            Credited {
                owner: t.owner.map(|o| o.to_vec()),
                clicked_at: Some(t.clicked_at),
                channel: groups.channel,
                source: groups.source,
                medium: groups.medium,
                campaign: groups.campaign,
                shares,
            }
        })
        .collect()
}

/// The window's touches in time order, each owner once, the latest [`MAX_TOUCHES`] and the
/// decision's own two; with the indexes of the touchpoint and the first touch. `None` when the
/// touchpoint is not among them (its data is gone).
fn owned_touches(
    mut touches: Vec<Touch>,
    touch: [u8; 32],
    first: [u8; 32],
) -> Option<(Vec<Touch>, usize, usize)> {
    touches.sort_by_key(|t| (t.clicked_at, t.owner));
    touches.dedup_by(|a, b| a.owner == b.owner);
    if touches.len() > MAX_TOUCHES {
        let cut = touches.len() - MAX_TOUCHES;
        let mut i = 0;
        touches.retain(|t| {
            i += 1;
            i > cut || t.owner == Some(touch) || t.owner == Some(first)
        });
    }
    let last = touches.iter().position(|t| t.owner == Some(touch))?;
    let first = touches
        .iter()
        .position(|t| t.owner == Some(first))
        .unwrap_or(last);
    Some((touches, last, first))
}

/// The touchpoint and first touch of a decision stored as a copy, in time order, with their
/// indexes; `None` without a touchpoint.
fn copied_touches(attribution: &Attribution) -> Option<(Vec<Touch>, usize, usize)> {
    let last = attribution.click.as_ref()?;
    let touch = |t: &Touchpoint| Touch {
        owner: None,
        clicked_at: t.clicked_at,
        groups: Arc::new(ClickGroups::of(&t.click_ids, t.utm.as_ref())),
    };
    let same = |a: &Touchpoint, b: &Touchpoint| {
        a.clicked_at == b.clicked_at && a.click_ids == b.click_ids && a.utm == b.utm
    };
    match attribution.first_touch.as_ref() {
        Some(first) if !same(first, last) => {
            if first.clicked_at <= last.clicked_at {
                Some((vec![touch(first), touch(last)], 1, 0))
            } else {
                Some((vec![touch(last), touch(first)], 0, 1))
            }
        }
        _ => Some((vec![touch(last)], 0, 0)),
    }
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
        credited_at = now()
    RETURNING r.event_id, r.kind, r.occurred_at, r.event_name, r.tier, r.amount, r.currency,
              r.retracted";

/// Those of the conversions that have shares already.
const SELECT_CREDITED: &str = "
    SELECT q.event_id FROM unnest($2::uuid[]) AS q(event_id)
    WHERE EXISTS (
        SELECT 1 FROM credit_shares WHERE workspace_id = $1 AND event_id = q.event_id
    )";

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
        ORDER BY model, dim, day, key COLLATE \"C\", tier COLLATE \"C\",
                 coalesce(currency, '') COLLATE \"C\"
        ON CONFLICT (workspace_id, model, dim, day, key, tier, currency) DO UPDATE SET
            leads = r.leads + excluded.leads,
            sales = r.sales + excluded.sales,
            revenue = r.revenue + excluded.revenue,
            value = r.value + excluded.value",
        summed(filter, false)
    )
}

/// The last bucket of a time histogram: it holds every wait from 1.5^46 seconds (about four
/// years) on.
pub const LAST_BUCKET: i32 = 47;

/// The bucket of a wait `w.w` in seconds, as `report_histograms` documents it.
pub const BUCKET_SQL: &str =
    "CASE WHEN w.w < 1 THEN 0 ELSE least(1 + floor(ln(w.w::float8) / ln(1.5))::int, 47) END";

/// Adds the conversions' waits to the time histograms (see [`HISTOGRAMS_TAIL`]).
fn apply_times_sql(filter: &str) -> String {
    format!(
        "{}, g AS (
            SELECT model, dim, day, key, tier, bucket, ($2::numeric * sum(share))::float8 AS w,
                   ($2::numeric * sum(weighted))::float8 AS s
            FROM x
            GROUP BY model, dim, day, key, tier, bucket
        ){HISTOGRAMS_TAIL}",
        summed(filter, true)
    )
}

/// Adds `g(model, dim, day, key, tier, bucket, w, s)` (shares and shares times waits per group
/// and bucket) to the time histograms: one array per group, from bucket 0 to its last with a
/// wait, added element-wise to the stored one (the shorter padded with zeros).
const HISTOGRAMS_TAIL: &str = ", k AS (
            SELECT model, dim, day, key, tier, max(bucket) AS top
            FROM g
            GROUP BY model, dim, day, key, tier
        )
        INSERT INTO report_histograms AS r
            (workspace_id, model, dim, day, key, tier, weights, seconds)
        SELECT $1, k.model, k.dim, k.day, k.key, k.tier,
               array_agg(coalesce(g.w, 0) ORDER BY b.bucket),
               array_agg(coalesce(g.s, 0) ORDER BY b.bucket)
        FROM k
        CROSS JOIN LATERAL generate_series(0, k.top) AS b(bucket)
        LEFT JOIN g ON g.model = k.model AND g.dim = k.dim AND g.day = k.day AND g.key = k.key
                   AND g.tier = k.tier AND g.bucket = b.bucket
        GROUP BY k.model, k.dim, k.day, k.key, k.tier
        ORDER BY k.model, k.dim, k.day, k.key COLLATE \"C\", k.tier COLLATE \"C\"
        ON CONFLICT (workspace_id, model, dim, day, key, tier) DO UPDATE SET
            weights = ARRAY(
                SELECT coalesce(a, 0) + coalesce(b, 0)
                FROM unnest(r.weights, excluded.weights) WITH ORDINALITY AS u(a, b, i)
                ORDER BY i),
            seconds = ARRAY(
                SELECT coalesce(a, 0) + coalesce(b, 0)
                FROM unnest(r.seconds, excluded.seconds) WITH ORDINALITY AS u(a, b, i)
                ORDER BY i)";

/// What newly credited conversions add to the rollups, summed in the step from the shares it
/// has just computed: the same sums [`apply`] reads back from the stored shares (see
/// [`summed`]), without reading them back. Decimal sums are exact as in SQL; a sum too large for
/// a [`Decimal`] makes [`Contributions::of`] answer `None`, and the step applies the stored
/// shares instead.
#[derive(Default)]
struct Contributions {
    /// Per rollup row: leads, sales, revenue, value.
    rollups: BTreeMap<RollupKey, [Decimal; 4]>,
    /// Per histogram bucket: the shares and the shares times the waits.
    histograms: BTreeMap<BucketKey, (Decimal, Decimal)>,
}

/// A rollup row's key: model, dim, day, key, tier, currency. Rows are written in this order,
/// strings compared bytewise as the SQL path orders them (`COLLATE "C"`), so that a credit and a
/// retraction lock the rows they share in the same order.
type RollupKey = (i16, i16, Date, String, String, String);

/// A histogram bucket's key: model, dim, day, key, tier, bucket.
type BucketKey = (i16, i16, Date, String, String, i32);

/// A conversion as its `report_conversions` row counts it (after the upsert: a restated amount
/// or an earlier retraction wins over the event's).
struct Counted {
    kind: Option<String>,
    occurred_at: Option<OffsetDateTime>,
    event_name: Option<String>,
    tier: Option<String>,
    amount: Option<Decimal>,
    currency: Option<String>,
    retracted: bool,
}

/// The key of one touch's sums before they are spread over models and groupings: the
/// conversion's day, tier, kind, currency and event name, the touch's groups, and the bucket of
/// its wait (`None` for the touchless row, which the histograms do not count).
type TouchKey<'a> = (
    Date,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<i32>,
);

/// Per model: the shares, the shares times the amount, the shares times the wait.
type TouchSums = [[Decimal; 3]; 5];

/// The bucket of a wait of `micros` microseconds, as [`BUCKET_SQL`] computes it (the same
/// floating-point steps, so the same bucket).
fn bucket_of(micros: i128) -> i32 {
    // Exact below 2^53 microseconds (285 years); the quotient is then the correctly rounded
    // seconds, as PostgreSQL's numeric to float8 cast gives them.
    let seconds = micros as f64 / 1e6;
    if seconds < 1.0 {
        return 0;
    }
    let b = 1.0 + (seconds.ln() / 1.5f64.ln()).floor();
    (b as i32).min(LAST_BUCKET)
}

impl Contributions {
    /// The contributions of `rows` (the shares of the step's conversions, by event) for the
    /// conversions as counted.
    fn of(counted: &HashMap<Uuid, Counted>, rows: &SharesRows) -> Option<Self> {
        let mut sums: HashMap<TouchKey<'_>, TouchSums> = HashMap::new();
        for i in 0..rows.event_ids.len() {
            let Some(c) = counted.get(&rows.event_ids[i]) else {
                continue;
            };
            let (Some(kind), Some(at), false) = (c.kind.as_deref(), c.occurred_at, c.retracted)
            else {
                continue;
            };
            let wait = rows.clicked_at[i].map(|clicked| {
                let micros = (at - clicked).whole_microseconds().max(0);
                (micros, Decimal::from_i128_with_scale(micros, 6))
            });
            let key: TouchKey<'_> = (
                at.to_offset(time::UtcOffset::UTC).date(),
                c.tier.as_deref().unwrap_or_default(),
                kind,
                c.currency.as_deref().unwrap_or_default(),
                c.event_name.as_deref().unwrap_or(NONE_KEY),
                &rows.channels[i],
                rows.sources[i].as_deref(),
                rows.mediums[i].as_deref(),
                rows.campaigns[i].as_deref(),
                wait.map(|(micros, _)| bucket_of(micros)),
            );
            let entry = sums.entry(key).or_insert([[Decimal::ZERO; 3]; 5]);
            for (m, sum) in entry.iter_mut().enumerate() {
                let share = rows.shares[m][i];
                sum[0] = sum[0].checked_add(share)?;
                if let Some(amount) = c.amount {
                    sum[1] = sum[1].checked_add(share.checked_mul(amount)?)?;
                }
                if let Some((_, seconds)) = wait {
                    sum[2] = sum[2].checked_add(share.checked_mul(seconds)?)?;
                }
            }
        }
        let mut out = Self::default();
        for (key, per_model) in sums {
            let (day, tier, kind, currency, event_name, channel, source, medium, campaign, bucket) =
                key;
            let groups = [
                channel,
                source.unwrap_or(NONE_KEY),
                medium.unwrap_or(NONE_KEY),
                campaign.unwrap_or(NONE_KEY),
                event_name,
            ];
            for (m, [share, weighted, waited]) in per_model.into_iter().enumerate() {
                if share.is_zero() {
                    continue;
                }
                let model = i16::try_from(m).unwrap_or(i16::MAX);
                for (d, group) in groups.iter().enumerate() {
                    let dim = i16::try_from(d).unwrap_or(i16::MAX);
                    let sums = out
                        .rollups
                        .entry((
                            model,
                            dim,
                            day,
                            (*group).to_owned(),
                            tier.to_owned(),
                            currency.to_owned(),
                        ))
                        .or_insert([Decimal::ZERO; 4]);
                    let sale = kind == "sale";
                    if kind == "lead" {
                        sums[0] = sums[0].checked_add(share)?;
                    }
                    if sale {
                        sums[1] = sums[1].checked_add(share)?;
                        sums[2] = sums[2].checked_add(weighted)?;
                    }
                    sums[3] = sums[3].checked_add(weighted)?;
                    if let Some(bucket) = bucket {
                        let h = out
                            .histograms
                            .entry((
                                model,
                                dim,
                                day,
                                (*group).to_owned(),
                                tier.to_owned(),
                                bucket,
                            ))
                            .or_insert((Decimal::ZERO, Decimal::ZERO));
                        h.0 = h.0.checked_add(share)?;
                        h.1 = h.1.checked_add(waited)?;
                    }
                }
            }
        }
        Some(out)
    }

    /// Adds the contributions to the stored rollups and histograms.
    async fn add(&self, client: &impl GenericClient, workspace_id: Uuid) -> Result<()> {
        if !self.rollups.is_empty() {
            let n = self.rollups.len();
            let (mut models, mut dims, mut days) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            let (mut keys, mut tiers, mut currencies) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            let mut sums: [Vec<Decimal>; 4] = Default::default();
            for ((model, dim, day, key, tier, currency), values) in &self.rollups {
                models.push(*model);
                dims.push(*dim);
                days.push(*day);
                keys.push(key.as_str());
                tiers.push(tier.as_str());
                currencies.push(currency.as_str());
                for (into, value) in sums.iter_mut().zip(values) {
                    into.push(*value);
                }
            }
            let statement = client.prepare_cached(ADD_ROLLUPS).await?;
            client
                .execute(
                    &statement,
                    &[
                        &workspace_id,
                        &models,
                        &dims,
                        &days,
                        &keys,
                        &tiers,
                        &currencies,
                        &sums[0],
                        &sums[1],
                        &sums[2],
                        &sums[3],
                    ],
                )
                .await?;
        }
        if !self.histograms.is_empty() {
            let n = self.histograms.len();
            let (mut models, mut dims, mut days) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            let (mut keys, mut tiers, mut buckets) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            let (mut weights, mut seconds) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for ((model, dim, day, key, tier, bucket), (weight, waited)) in &self.histograms {
                models.push(*model);
                dims.push(*dim);
                days.push(*day);
                keys.push(key.as_str());
                tiers.push(tier.as_str());
                buckets.push(*bucket);
                // Through the decimal text, as PostgreSQL casts numeric to float8.
                weights.push(weight.to_string().parse::<f64>().unwrap_or(0.0));
                seconds.push(waited.to_string().parse::<f64>().unwrap_or(0.0));
            }
            let statement = client.prepare_cached(&add_histograms_sql()).await?;
            client
                .execute(
                    &statement,
                    &[
                        &workspace_id,
                        &models,
                        &dims,
                        &days,
                        &keys,
                        &tiers,
                        &buckets,
                        &weights,
                        &seconds,
                    ],
                )
                .await?;
        }
        Ok(())
    }
}

const ADD_ROLLUPS: &str = "
    INSERT INTO report_rollups AS r
        (workspace_id, model, dim, day, key, tier, currency, leads, sales, revenue, value)
    SELECT $1, q.*
    FROM unnest($2::smallint[], $3::smallint[], $4::date[], $5::text[], $6::text[], $7::text[],
                $8::numeric[], $9::numeric[], $10::numeric[], $11::numeric[]) AS q
    ON CONFLICT (workspace_id, model, dim, day, key, tier, currency) DO UPDATE SET
        leads = r.leads + excluded.leads,
        sales = r.sales + excluded.sales,
        revenue = r.revenue + excluded.revenue,
        value = r.value + excluded.value";

fn add_histograms_sql() -> String {
    format!(
        "WITH g AS (
            SELECT * FROM unnest($2::smallint[], $3::smallint[], $4::date[], $5::text[],
                                 $6::text[], $7::int[], $8::float8[], $9::float8[])
                AS g(model, dim, day, key, tier, bucket, w, s)
        ){}",
        HISTOGRAMS_TAIL
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
        "DELETE FROM report_histograms WHERE workspace_id = $1",
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
    use events::{AttributionStatus, MatchedBy};
    use time::macros::datetime;

    fn groups(source: &str, gclid: bool) -> Arc<ClickGroups> {
        let ids = ClickIds {
            gclid: gclid.then(|| "g".to_owned()),
            ..ClickIds::default()
        };
        let utm = Utm {
            source: Some(source.into()),
            campaign: Some("spring".into()),
            ..Utm::default()
        };
        Arc::new(ClickGroups::of(&ids, Some(&utm)))
    }

    fn touch(owner: u8, at: OffsetDateTime, source: &str) -> Touch {
        Touch {
            owner: Some([owner; 32]),
            clicked_at: at,
            groups: groups(source, source == "google"),
        }
    }

    fn conversion(decided: Decided<'_>) -> Conversion<'_> {
        let no_ids: &'static ClickIds = Box::leak(Box::default());
        Conversion {
            event_id: Uuid::nil(),
            kind: EventKind::Sale,
            occurred_at: datetime!(2026-04-20 0:00 UTC),
            event_name: "sale",
            value: Some((Decimal::from(100), "USD")),
            retracted: false,
            carried: (no_ids, None),
            decided,
        }
    }

    fn owners(touch: Option<u8>, first: Option<u8>) -> Decided<'static> {
        Decided::Owners {
            touch: touch.map(|o| [o; 32]),
            first_touch: first.map(|o| [o; 32]),
        }
    }

    fn column(credited: &[Credited], m: usize) -> Vec<String> {
        credited
            .iter()
            .map(|c| c.shares[m].normalize().to_string())
            .collect()
    }

    #[test]
    fn waits_fall_in_the_buckets_the_histograms_document() {
        // Bucket 0 under a second; b >= 1 in [1.5^(b-1), 1.5^b) seconds; 47 from then on.
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(999_999), 0);
        assert_eq!(bucket_of(1_000_000), 1);
        assert_eq!(bucket_of(1_499_999), 1);
        assert_eq!(bucket_of(1_500_000), 2);
        assert_eq!(bucket_of(86_400_000_000), 29);
        assert_eq!(bucket_of(i128::from(i64::MAX)), LAST_BUCKET);
    }

    #[test]
    fn a_conversion_without_a_touch_is_direct_under_every_model() {
        let credited = credit_one(&conversion(owners(None, None)), Vec::new());
        assert_eq!(credited.len(), 1);
        assert_eq!(credited[0].channel, "direct");
        assert_eq!(credited[0].shares, [Decimal::ONE; 5]);
    }

    #[test]
    fn a_touchpoint_whose_click_is_gone_leaves_the_conversion_direct() {
        let window = vec![touch(2, datetime!(2026-04-19 0:00 UTC), "partner")];
        let credited = credit_one(&conversion(owners(Some(1), None)), window);
        assert_eq!(credited.len(), 1);
        assert_eq!(credited[0].channel, "direct");
    }

    #[test]
    fn the_matchers_touches_are_found_by_owner_in_time_order() {
        // The window names the touchpoint twice (the scan and the decision's own look-up).
        let window = vec![
            touch(3, datetime!(2026-04-19 0:00 UTC), "partner"),
            touch(2, datetime!(2026-04-10 0:00 UTC), "newsletter"),
            touch(1, datetime!(2026-04-01 0:00 UTC), "google"),
            touch(2, datetime!(2026-04-10 0:00 UTC), "newsletter"),
        ];
        let credited = credit_one(&conversion(owners(Some(2), Some(1))), window);
        let channels: Vec<&str> = credited.iter().map(|c| c.channel.as_str()).collect();
        assert_eq!(channels, ["google_ads", "newsletter", "partner"]);
        // Last click is the matcher's touchpoint (not the latest click), first click its first
        // touch; position based runs over time order.
        assert_eq!(column(&credited, 0), ["0", "1", "0"]);
        assert_eq!(column(&credited, 1), ["1", "0", "0"]);
        assert_eq!(column(&credited, 3), ["0.4", "0.2", "0.4"]);
        assert_eq!(credited[1].owner, Some(vec![2; 32]));
        assert_eq!(credited[0].campaign.as_deref(), Some("spring"));
    }

    #[test]
    fn a_decision_stored_as_a_copy_shares_between_its_two_touches() {
        let tp = |at: OffsetDateTime, source: &str| Touchpoint {
            click_id: None,
            clicked_at: at,
            click_ids: ClickIds::default(),
            utm: Some(Utm {
                source: Some(source.into()),
                ..Utm::default()
            }),
            url: None,
            referrer: None,
            ip: None,
            user_agent: None,
        };
        let attribution = Attribution {
            status: AttributionStatus::Matched,
            matched_by: Some(MatchedBy::ClickId),
            click: Some(tp(datetime!(2026-04-10 0:00 UTC), "newsletter")),
            model: "last_click".into(),
            first_touch: Some(tp(datetime!(2026-04-01 0:00 UTC), "partner")),
            pending_until: None,
            decided_at: datetime!(2026-04-20 0:00 UTC),
            ignored_identifiers: Vec::new(),
        };
        let credited = credit_one(&conversion(Decided::Copied(&attribution)), Vec::new());
        let channels: Vec<&str> = credited.iter().map(|c| c.channel.as_str()).collect();
        assert_eq!(channels, ["partner", "newsletter"]);
        assert_eq!(column(&credited, 0), ["0", "1"]);
        assert_eq!(column(&credited, 1), ["1", "0"]);
        assert_eq!(credited[0].owner, None);
    }

    #[test]
    fn a_person_with_thousands_of_clicks_shares_among_the_latest_hundred() {
        // Owner 1 is the first touch, long before the latest hundred; owner 2 the touchpoint.
        let mut window = vec![
            touch(1, datetime!(2026-01-25 0:00 UTC), "google"),
            touch(2, datetime!(2026-04-19 0:00 UTC), "google"),
        ];
        window.extend((0..5000u32).map(|i| {
            let mut owner = [0u8; 32];
            owner[..4].copy_from_slice(&(i + 1000).to_be_bytes());
            Touch {
                owner: Some(owner),
                clicked_at: datetime!(2026-02-01 0:00 UTC) + time::Duration::minutes(i64::from(i)),
                groups: groups("partner", false),
            }
        }));
        let credited = credit_one(&conversion(owners(Some(2), Some(1))), window);
        // The latest 100 (the touchpoint among them) and the first touch.
        assert_eq!(credited.len(), MAX_TOUCHES + 1);
        assert_eq!(credited[0].clicked_at, Some(datetime!(2026-01-25 0:00 UTC)));
        assert_eq!(credited[0].shares[1], Decimal::ONE);
        assert_eq!(credited[MAX_TOUCHES].shares[0], Decimal::ONE);
        for m in 0..5 {
            let total: Decimal = credited.iter().map(|c| c.shares[m]).sum();
            assert_eq!(total, Decimal::ONE);
        }
    }
}
