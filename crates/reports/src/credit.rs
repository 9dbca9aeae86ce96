//! The credit stage: behind the matcher (see `pipeline::credit_step`), each decided conversion's
//! touches in its attribution window are read once and kept on its `report_conversions` row (see
//! [`crate::stored`]), their shares under every model computed, and the conversion's contribution
//! added to the rollups; a re-decision (a pending sale matched late) takes the old contribution
//! out first. Retractions and value changes adjust the rollups the same way, from the same
//! touches shared out by the same rules, so reports never re-walk a history.
//!
//! A step reads the windows of its whole batch in one statement of the matcher's
//! ([`attribution_matcher::window::clicks_in_window`]) and the clicks events carried from the
//! step's own events, the stage's [`ClickCache`], or one journal read for the rest.
//!
//! Every write first locks the conversion's `report_conversions` row (an upsert), so that a
//! retraction racing a credit, or a restatement racing a re-decision, is applied once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use attribution_matcher::window::{clicks_in_window, keep_click_groups, WindowProbe};
use deadpool_postgres::GenericClient;
use events::{Attribution, ClickIds, EventKind, IdentifierHash, Touchpoint, Utm};
use rust_decimal::Decimal;
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

use crate::shares::{share, Timed};
use crate::stored::{self, group_arrays, ConversionCredit, CreditedTouches, TouchParams, COLUMNS};
use crate::tier::{conversion_tiers, Tier};
use crate::touches::{resolve, ClickCache, ClickGroups, Touch};
use crate::{Error, Result, NONE_KEY};

pub use crate::stored::Credited;

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
        touch: Option<IdentifierHash>,
        /// The first touch's owner, when it is another click than the touchpoint.
        first_touch: Option<IdentifierHash>,
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

    // A conversion credited before (decided again) gives back its contribution first: its row
    // is locked and read as it is, before the upsert below replaces its touches.
    apply(client, workspace_id, &ids, Decimal::NEGATIVE_ONE).await?;

    let credits: Vec<ConversionCredit> = list
        .iter()
        .map(|c| ConversionCredit {
            event_id: c.event_id,
            credit: credit_touches(c, windows.remove(&c.event_id).unwrap_or_default()),
        })
        .collect();
    let touches = TouchParams::of(&credits);
    // The rows name their groups by id; those of clicks a step did not file (a registered
    // click's) are kept here.
    let groups: Vec<ClickGroups> = touches.groups.values().map(|g| g.groups()).collect();
    keep_click_groups(client, workspace_id, &groups).await?;

    // Lock (or create) the conversions' rows with their touches; values already there (a
    // restated amount) win.
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
    let statement = client.prepare_cached(&upsert_conversions_sql()).await?;
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
                &touches.last,
                &touches.first,
                &touches.touches,
                &touches.group_events,
                &touches.group_ids,
            ],
        )
        .await?
    {
        counted.insert(row.try_get::<_, Uuid>(0)?, Counted::from_row(&row)?);
    }
    // The step has every share in hand: it adds them up itself rather than reading them back.
    Contributions::of(&counted, &credits, Decimal::ONE)?
        .add(client, workspace_id)
        .await?;
    Ok(list.len())
}

/// The touches of one conversion and their shares: the clicks in its window (the latest
/// [`MAX_TOUCHES`]) with the matcher's touchpoint and first touch among them; one `direct` row
/// for a conversion without a touchpoint (or whose touchpoint's data is gone).
pub fn credit_one(c: &Conversion<'_>, window: Vec<Touch>) -> Vec<Credited> {
    credit_touches(c, window).touches
}

fn credit_touches(c: &Conversion<'_>, window: Vec<Touch>) -> CreditedTouches {
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
        return CreditedTouches::direct();
    }
    let timed: Vec<Timed> = touches
        .iter()
        .map(|t| Timed {
            clicked_at: t.clicked_at,
        })
        .collect();
    let shares = share(c.occurred_at, &timed, last, first);
    let touches = touches
        .drain(..)
        .zip(shares)
        .map(|(t, shares)| {
            let groups = Arc::unwrap_or_clone(t.groups);
            Credited {
                clicked_at: Some(t.clicked_at),
                channel: groups.channel,
                source: groups.source,
                medium: groups.medium,
                campaign: groups.campaign,
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

/// The window's touches in time order, each owner once, the latest [`MAX_TOUCHES`] and the
/// decision's own two; with the indexes of the touchpoint and the first touch. `None` when the
/// touchpoint is not among them (its data is gone).
fn owned_touches(
    mut touches: Vec<Touch>,
    touch: IdentifierHash,
    first: IdentifierHash,
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

/// Creates or locks the conversions' rows with their touches (see [`TouchParams`]), in id
/// order; answers each as counted (values already there win over the event's).
fn upsert_conversions_sql() -> String {
    format!(
        "WITH {}
        INSERT INTO report_conversions AS r
            (workspace_id, event_id, kind, occurred_at, event_name, tier, amount, currency,
             retracted, credited_at, last_touch, first_touch, touches, group_ids)
        SELECT $1, q.event_id, q.kind, q.occurred_at, q.event_name, q.tier, q.amount, q.currency,
               q.retracted, now(), q.last_touch, q.first_touch, q.touches, g.group_ids
        FROM unnest($2::uuid[], $3::text[], $4::timestamptz[], $5::text[], $6::text[],
                    $7::numeric[], $8::text[], $9::bool[], $10::smallint[], $11::smallint[],
                    $12::bytea[])
             AS q(event_id, kind, occurred_at, event_name, tier, amount, currency, retracted,
                  last_touch, first_touch, touches)
        LEFT JOIN g ON g.event_id = q.event_id
        ORDER BY q.event_id
        ON CONFLICT (workspace_id, event_id) DO UPDATE SET
            kind = coalesce(r.kind, excluded.kind),
            occurred_at = coalesce(r.occurred_at, excluded.occurred_at),
            event_name = coalesce(r.event_name, excluded.event_name),
            tier = coalesce(r.tier, excluded.tier),
            amount = CASE WHEN r.amount IS NULL THEN excluded.amount ELSE r.amount END,
            currency = CASE WHEN r.amount IS NULL THEN excluded.currency ELSE r.currency END,
            retracted = r.retracted OR excluded.retracted,
            credited_at = now(),
            last_touch = excluded.last_touch,
            first_touch = excluded.first_touch,
            touches = excluded.touches,
            groups = NULL,
            group_ids = excluded.group_ids
        RETURNING r.event_id, r.kind, r.occurred_at, r.event_name, r.tier, r.amount, r.currency,
                  r.retracted",
        group_arrays(13)
    )
}

/// The last bucket of a time histogram: it holds every wait from 1.5^46 seconds (about four
/// years) on.
pub const LAST_BUCKET: i32 = 47;

/// What conversions add to the rollups and histograms (or, with the sign -1, take out of them),
/// summed from their touches' shares: the credit step sums the shares it has just computed, a
/// retraction, restatement or erasure the same shares given again by the stored touches, so
/// what goes out is exactly what came in. Decimal sums are exact; a sum too large for a
/// [`Decimal`] is an [`Error::Overflow`].
#[derive(Default)]
struct Contributions {
    /// Per rollup row: leads, sales, revenue, value.
    rollups: HashMap<RollupKey, [Decimal; 4]>,
    /// Per histogram bucket: the shares and the shares times the waits.
    histograms: HashMap<BucketKey, (Decimal, Decimal)>,
    /// The keys' strings, each once.
    strings: HashSet<Arc<str>>,
}

/// A rollup row's key: model, dim, day, key, tier, currency. Rows are written in this order,
/// strings compared bytewise (as `COLLATE "C"` orders them), so that a credit and a retraction
/// lock the rows they share in the same order.
type RollupKey = (i16, i16, Date, Arc<str>, Arc<str>, Arc<str>);

/// A histogram bucket's key: model, dim, day, key, tier, bucket.
type BucketKey = (i16, i16, Date, Arc<str>, Arc<str>, i32);

/// The one copy of `text` among `strings`.
fn interned(strings: &mut HashSet<Arc<str>>, text: &str) -> Arc<str> {
    if let Some(found) = strings.get(text) {
        return Arc::clone(found);
    }
    let new: Arc<str> = Arc::from(text);
    strings.insert(Arc::clone(&new));
    new
}

/// A conversion as its `report_conversions` row counts it (after the upsert: a restated amount
/// or an earlier retraction wins over the event's).
#[derive(Debug, Clone)]
struct Counted {
    kind: Option<String>,
    occurred_at: Option<OffsetDateTime>,
    event_name: Option<String>,
    tier: Option<String>,
    amount: Option<Decimal>,
    currency: Option<String>,
    retracted: bool,
}

impl Counted {
    /// Reads columns 1 to 7: kind, occurred_at, event_name, tier, amount, currency, retracted.
    fn from_row(row: &tokio_postgres::Row) -> Result<Self> {
        Ok(Self {
            kind: row.try_get(1)?,
            occurred_at: row.try_get(2)?,
            event_name: row.try_get(3)?,
            tier: row.try_get(4)?,
            amount: row.try_get(5)?,
            currency: row.try_get(6)?,
            retracted: row.try_get(7)?,
        })
    }
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

/// The bucket of a wait of `micros` microseconds in the time histograms: 0 below a second, then
/// one bucket per factor 1.5 (`1 + floor(ln(seconds) / ln(1.5))`), at most [`LAST_BUCKET`].
fn bucket_of(micros: i128) -> i32 {
    // Exact below 2^53 microseconds (285 years).
    let seconds = micros as f64 / 1e6;
    if seconds < 1.0 {
        return 0;
    }
    let b = 1.0 + (seconds.ln() / 1.5f64.ln()).floor();
    (b as i32).min(LAST_BUCKET)
}

impl Contributions {
    /// The contributions of `credits` for the conversions as counted, times `sign`.
    fn of(
        counted: &HashMap<Uuid, Counted>,
        credits: &[ConversionCredit],
        sign: Decimal,
    ) -> Result<Self> {
        let mut out = Self::default();
        out.include(counted, credits, sign)?;
        Ok(out)
    }

    /// Adds the contributions of `credits`, times `sign`, to these.
    fn include(
        &mut self,
        counted: &HashMap<Uuid, Counted>,
        credits: &[ConversionCredit],
        sign: Decimal,
    ) -> Result<()> {
        self.sum(counted, credits, sign).ok_or(Error::Overflow)
    }

    fn sum(
        &mut self,
        counted: &HashMap<Uuid, Counted>,
        credits: &[ConversionCredit],
        sign: Decimal,
    ) -> Option<()> {
        let mut sums: HashMap<TouchKey<'_>, TouchSums> = HashMap::new();
        for credit in credits {
            let Some(c) = counted.get(&credit.event_id) else {
                continue;
            };
            let (Some(kind), Some(at), false) = (c.kind.as_deref(), c.occurred_at, c.retracted)
            else {
                continue;
            };
            for touch in &credit.credit.touches {
                let wait = touch.clicked_at.map(|clicked| {
                    let micros = (at - clicked).whole_microseconds().max(0);
                    (micros, Decimal::from_i128_with_scale(micros, 6))
                });
                let key: TouchKey<'_> = (
                    at.to_offset(time::UtcOffset::UTC).date(),
                    c.tier.as_deref().unwrap_or_default(),
                    kind,
                    c.currency.as_deref().unwrap_or_default(),
                    c.event_name.as_deref().unwrap_or(NONE_KEY),
                    &touch.channel,
                    touch.source.as_deref(),
                    touch.medium.as_deref(),
                    touch.campaign.as_deref(),
                    wait.map(|(micros, _)| bucket_of(micros)),
                );
                let entry = sums.entry(key).or_insert([[Decimal::ZERO; 3]; 5]);
                for (m, sum) in entry.iter_mut().enumerate() {
                    let share = touch.shares[m].checked_mul(sign)?;
                    sum[0] = sum[0].checked_add(share)?;
                    if let Some(amount) = c.amount {
                        sum[1] = sum[1].checked_add(share.checked_mul(amount)?)?;
                    }
                    if let Some((_, seconds)) = wait {
                        sum[2] = sum[2].checked_add(share.checked_mul(seconds)?)?;
                    }
                }
            }
        }
        let out = self;
        for (key, per_model) in sums {
            let (day, tier, kind, currency, event_name, channel, source, medium, campaign, bucket) =
                key;
            let groups = [
                channel,
                source.unwrap_or(NONE_KEY),
                medium.unwrap_or(NONE_KEY),
                campaign.unwrap_or(NONE_KEY),
                event_name,
            ]
            .map(|group| interned(&mut out.strings, group));
            let tier = interned(&mut out.strings, tier);
            let currency = interned(&mut out.strings, currency);
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
                            Arc::clone(group),
                            Arc::clone(&tier),
                            Arc::clone(&currency),
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
                                Arc::clone(group),
                                Arc::clone(&tier),
                                bucket,
                            ))
                            .or_insert((Decimal::ZERO, Decimal::ZERO));
                        h.0 = h.0.checked_add(share)?;
                        h.1 = h.1.checked_add(waited)?;
                    }
                }
            }
        }
        Some(())
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
            let mut rows: Vec<(&RollupKey, &[Decimal; 4])> = self.rollups.iter().collect();
            rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for ((model, dim, day, key, tier, currency), values) in rows {
                models.push(*model);
                dims.push(*dim);
                days.push(*day);
                keys.push(key.as_ref());
                tiers.push(tier.as_ref());
                currencies.push(currency.as_ref());
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
        // The histograms come sorted by group, then bucket: one group at a time.
        let mut chunk = HistogramChunk::default();
        let mut group: Option<(i16, i16, Date, &str, &str)> = None;
        let mut buckets: Vec<(i32, f64, f64)> = Vec::new();
        let mut histograms: Vec<(&BucketKey, &(Decimal, Decimal))> =
            self.histograms.iter().collect();
        histograms.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for ((model, dim, day, key, tier, bucket), (weight, waited)) in histograms {
            let this = (*model, *dim, *day, key.as_ref(), tier.as_ref());
            if group != Some(this) {
                if let Some(done) = group.replace(this) {
                    chunk.push_group(done, &buckets);
                    buckets.clear();
                    if chunk.weights.len() >= HISTOGRAM_CHUNK {
                        chunk.add(client, workspace_id).await?;
                        chunk = HistogramChunk::default();
                    }
                }
            }
            // Through the decimal text, as PostgreSQL casts numeric to float8.
            buckets.push((
                *bucket,
                weight.to_string().parse::<f64>().unwrap_or(0.0),
                waited.to_string().parse::<f64>().unwrap_or(0.0),
            ));
        }
        if let Some(done) = group {
            chunk.push_group(done, &buckets);
        }
        chunk.add(client, workspace_id).await?;
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

/// Adds time histograms given flat, one element per bucket from 0 (each group's buckets in
/// order, consecutive), to the stored ones: element-wise, the shorter padded with zeros.
const ADD_HISTOGRAMS: &str = "
    WITH g AS (
        SELECT model, dim, day, key, tier, array_agg(w ORDER BY i) AS weights,
               array_agg(s ORDER BY i) AS seconds
        FROM unnest($2::smallint[], $3::smallint[], $4::date[], $5::text[], $6::text[],
                    $7::float8[], $8::float8[]) WITH ORDINALITY
             AS g(model, dim, day, key, tier, w, s, i)
        GROUP BY model, dim, day, key, tier
    )
    INSERT INTO report_histograms AS r
        (workspace_id, model, dim, day, key, tier, weights, seconds)
    SELECT $1, model, dim, day, key, tier, weights, seconds
    FROM g
    ORDER BY model, dim, day, key COLLATE \"C\", tier COLLATE \"C\"
    ON CONFLICT (workspace_id, model, dim, day, key, tier) DO UPDATE SET
        weights = ARRAY(
            SELECT coalesce(a, 0) + coalesce(b, 0)
            FROM unnest(r.weights, excluded.weights) WITH ORDINALITY AS u(a, b, i)
            ORDER BY i),
        seconds = ARRAY(
            SELECT coalesce(a, 0) + coalesce(b, 0)
            FROM unnest(r.seconds, excluded.seconds) WITH ORDINALITY AS u(a, b, i)
            ORDER BY i)";

/// Buckets one statement of [`ADD_HISTOGRAMS`] carries at most (whole groups).
const HISTOGRAM_CHUNK: usize = 50_000;

/// The parameters of one [`ADD_HISTOGRAMS`] statement.
#[derive(Default)]
struct HistogramChunk<'a> {
    models: Vec<i16>,
    dims: Vec<i16>,
    days: Vec<Date>,
    keys: Vec<&'a str>,
    tiers: Vec<&'a str>,
    weights: Vec<f64>,
    seconds: Vec<f64>,
}

impl<'a> HistogramChunk<'a> {
    /// Appends one group's buckets, from 0 to the last it has, zeros where it has none.
    fn push_group(
        &mut self,
        group: (i16, i16, Date, &'a str, &'a str),
        buckets: &[(i32, f64, f64)],
    ) {
        let top = buckets.iter().map(|b| b.0).max().unwrap_or(0);
        let start = self.weights.len();
        let len = usize::try_from(top).unwrap_or(0) + 1;
        self.weights.resize(start + len, 0.0);
        self.seconds.resize(start + len, 0.0);
        for &(bucket, w, s) in buckets {
            if let Ok(b) = usize::try_from(bucket) {
                self.weights[start + b] += w;
                self.seconds[start + b] += s;
            }
        }
        let (model, dim, day, key, tier) = group;
        self.models.extend(std::iter::repeat_n(model, len));
        self.dims.extend(std::iter::repeat_n(dim, len));
        self.days.extend(std::iter::repeat_n(day, len));
        self.keys.extend(std::iter::repeat_n(key, len));
        self.tiers.extend(std::iter::repeat_n(tier, len));
    }

    async fn add(&self, client: &impl GenericClient, workspace_id: Uuid) -> Result<()> {
        if self.weights.is_empty() {
            return Ok(());
        }
        let statement = client.prepare_cached(ADD_HISTOGRAMS).await?;
        client
            .execute(
                &statement,
                &[
                    &workspace_id,
                    &self.models,
                    &self.dims,
                    &self.days,
                    &self.keys,
                    &self.tiers,
                    &self.weights,
                    &self.seconds,
                ],
            )
            .await?;
        Ok(())
    }
}

/// The credited conversions among `$2`, counted and with their stored touches, locked in the
/// order of `$2` (sorted, so that two transactions lock alike).
fn select_credits_by_id() -> String {
    format!(
        "SELECT c.event_id, c.kind, c.occurred_at, c.event_name, c.tier, c.amount, c.currency,
                c.retracted, {COLUMNS}
         FROM unnest($2::uuid[]) AS q(event_id)
         CROSS JOIN LATERAL (
             SELECT * FROM report_conversions
             WHERE workspace_id = $1 AND event_id = q.event_id AND credited_at IS NOT NULL
             LIMIT 1
             FOR UPDATE
         ) AS c"
    )
}

/// A page of the workspace's credited conversions, after the id `$2`, in id order.
fn select_credits_after() -> String {
    format!(
        "SELECT c.event_id, c.kind, c.occurred_at, c.event_name, c.tier, c.amount, c.currency,
                c.retracted, {COLUMNS}
         FROM report_conversions c
         WHERE c.workspace_id = $1 AND c.event_id > $2 AND c.credited_at IS NOT NULL
         ORDER BY c.event_id
         LIMIT $3"
    )
}

/// Conversions as counted, with their credit.
#[derive(Default)]
struct Credits {
    counted: HashMap<Uuid, Counted>,
    credits: Vec<ConversionCredit>,
}

impl Credits {
    fn from_rows(rows: &[tokio_postgres::Row]) -> Result<Self> {
        let mut out = Self::default();
        for row in rows {
            let event_id: Uuid = row.try_get(0)?;
            let counted = Counted::from_row(row)?;
            let credit = stored::from_row(row, 8, event_id, counted.occurred_at)?;
            out.counted.insert(event_id, counted);
            out.credits.push(ConversionCredit { event_id, credit });
        }
        Ok(out)
    }
}

/// Adds (`sign` 1) or takes out (`sign` -1) the contributions of `event_ids` (sorted) that are
/// credited, locking their rows.
async fn apply(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_ids: &[Uuid],
    sign: Decimal,
) -> Result<()> {
    let statement = client.prepare_cached(&select_credits_by_id()).await?;
    let rows = client
        .query(&statement, &[&workspace_id, &event_ids])
        .await?;
    let found = Credits::from_rows(&rows)?;
    Contributions::of(&found.counted, &found.credits, sign)?
        .add(client, workspace_id)
        .await
}

/// Conversions a rebuild reads at a time.
const REBUILD_PAGE: i64 = 10_000;

/// Rebuilds a workspace's conversion rollups from the stored touches (after a bulk load, or to
/// repair them); registered clicks are counted as they come and are left as they are.
pub async fn refresh(client: &impl GenericClient, workspace_id: Uuid) -> Result<()> {
    for sql in [
        "DELETE FROM report_rollups WHERE workspace_id = $1",
        "DELETE FROM report_histograms WHERE workspace_id = $1",
    ] {
        let statement = client.prepare_cached(sql).await?;
        client.execute(&statement, &[&workspace_id]).await?;
    }
    let statement = client.prepare_cached(&select_credits_after()).await?;
    let mut contributions = Contributions::default();
    let mut after = Uuid::nil();
    loop {
        let rows = client
            .query(&statement, &[&workspace_id, &after, &REBUILD_PAGE])
            .await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.try_get(0)?;
        let page = Credits::from_rows(&rows)?;
        contributions.include(&page.counted, &page.credits, Decimal::ONE)?;
    }
    contributions.add(client, workspace_id).await
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

/// A conversion's stored touches and the time they are shared from.
fn select_touches() -> String {
    format!(
        "SELECT c.occurred_at, {COLUMNS}
         FROM report_conversions c
         WHERE c.workspace_id = $1 AND c.event_id = $2 AND c.credited_at IS NOT NULL"
    )
}

/// A conversion's touches with their shares, oldest first (empty before it is credited): the
/// stored touches shared out by the rules that gave the rollups their sums.
pub async fn shares_of(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_id: Uuid,
) -> Result<Vec<Credited>> {
    let statement = client.prepare_cached(&select_touches()).await?;
    let Some(row) = client
        .query_opt(&statement, &[&workspace_id, &event_id])
        .await?
    else {
        return Ok(Vec::new());
    };
    let credit = stored::from_row(&row, 1, event_id, row.try_get(0)?)?;
    Ok(credit.touches)
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
            owner: Some([owner; 16]),
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
            touch: touch.map(|o| [o; 16]),
            first_touch: first.map(|o| [o; 16]),
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
        assert_eq!(credited[1].clicked_at, Some(datetime!(2026-04-10 0:00 UTC)));
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
        assert_eq!(credited[0].clicked_at, Some(datetime!(2026-04-01 0:00 UTC)));
    }

    #[test]
    fn the_stored_touches_give_back_every_touch_and_its_shares() {
        // Two groups, waits across several buckets, the touchpoint not the latest click.
        let mut window: Vec<Touch> = (0..12i64)
            .map(|i| Touch {
                owner: Some([u8::try_from(i + 10).unwrap(); 16]),
                clicked_at: datetime!(2026-03-25 0:00 UTC) + time::Duration::hours(37 * i),
                groups: groups(if i % 3 == 0 { "partner" } else { "google" }, i % 3 != 0),
            })
            .collect();
        window.push(touch(1, datetime!(2026-03-20 0:00 UTC), "newsletter"));
        let c = conversion(owners(Some(19), Some(1)));
        let credit = ConversionCredit {
            event_id: c.event_id,
            credit: credit_touches(&c, window),
        };
        assert_eq!(credit.credit.touches.len(), 13);
        assert_eq!((credit.credit.last, credit.credit.first), (10, 0));
        assert_eq!(stored::round_trip(&credit, c.occurred_at), credit.credit);
        // One group only: no group per touch is kept, and it still comes back.
        let window = vec![
            touch(1, datetime!(2026-04-01 0:00 UTC), "google"),
            touch(2, datetime!(2026-04-10 0:00 UTC), "google"),
        ];
        let c = conversion(owners(Some(2), Some(1)));
        let credit = ConversionCredit {
            event_id: c.event_id,
            credit: credit_touches(&c, window),
        };
        assert_eq!(stored::round_trip(&credit, c.occurred_at), credit.credit);
    }

    #[test]
    fn a_conversion_without_a_touch_keeps_no_touch_and_comes_back_direct() {
        let c = conversion(owners(None, None));
        let credit = ConversionCredit {
            event_id: c.event_id,
            credit: credit_touches(&c, Vec::new()),
        };
        assert_eq!(credit.credit, CreditedTouches::direct());
        assert_eq!(stored::round_trip(&credit, c.occurred_at), credit.credit);
    }

    #[test]
    fn a_retraction_takes_out_exactly_what_the_credit_put_in() {
        let window = vec![
            touch(1, datetime!(2026-04-01 0:00 UTC), "google"),
            touch(2, datetime!(2026-04-10 0:00 UTC), "newsletter"),
            touch(3, datetime!(2026-04-19 12:00 UTC), "partner"),
        ];
        let c = conversion(owners(Some(3), Some(1)));
        let credits = [ConversionCredit {
            event_id: c.event_id,
            credit: credit_touches(&c, window),
        }];
        let counted = HashMap::from([(
            c.event_id,
            Counted {
                kind: Some("sale".into()),
                occurred_at: Some(c.occurred_at),
                event_name: Some("purchase".into()),
                tier: Some("macro".into()),
                amount: Some(Decimal::new(12345, 2)),
                currency: Some("USD".into()),
                retracted: false,
            },
        )]);
        let mut both = Contributions::of(&counted, &credits, Decimal::ONE).unwrap();
        assert!(!both.rollups.is_empty() && !both.histograms.is_empty());
        let again = [ConversionCredit {
            event_id: c.event_id,
            credit: stored::round_trip(&credits[0], c.occurred_at),
        }];
        both.include(&counted, &again, Decimal::NEGATIVE_ONE)
            .unwrap();
        assert!(both.rollups.values().flatten().all(Decimal::is_zero));
        assert!(both
            .histograms
            .values()
            .all(|(w, s)| w.is_zero() && s.is_zero()));
    }

    #[test]
    fn a_person_with_thousands_of_clicks_shares_among_the_latest_hundred() {
        // Owner 1 is the first touch, long before the latest hundred; owner 2 the touchpoint.
        let mut window = vec![
            touch(1, datetime!(2026-01-25 0:00 UTC), "google"),
            touch(2, datetime!(2026-04-19 0:00 UTC), "google"),
        ];
        window.extend((0..5000u32).map(|i| {
            let mut owner = [0u8; 16];
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
