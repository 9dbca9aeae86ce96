//! The retention worker: once a round (hourly, and at start), one process at a time
//! (a session advisory lock) makes sure the journal's monthly partitions exist ahead, then
//! removes what is past `CONVRELAY_RETENTION_DAYS`:
//!
//! 1. the tables partitioned by month on a time-ordered id — `events`, and with the same bounds
//!    the decisions, the conversions' report rows and the values leads took from the catalog (on
//!    their event's id), the dispatches, their
//!    attempts and payloads (on the dispatch id, which begins with its event's time) and the
//!    platform requests (on their own id, the time they were made) ([`PARTITIONED`]) — get their
//!    partitions ahead; the partitions of every table but `events` wholly past retention are
//!    dropped, then for each partition of `events` whose every event was received before the
//!    cutoff, per workspace found in it: what is left of its decisions, report rows, lead values
//!    and dispatches (in a partition that was created wider, before they were partitioned, or the
//!    default one), one range delete each, and its natural keys (dedup), in pages; then the
//!    partition is dropped — one statement, whatever it holds. A round stopped half-way is
//!    finished by the next one. Idempotency-Key answers are kept by the day they expire, and
//!    the API's upkeep drops their days once past (`dedup::idempotency::keep_days`).
//!
//!    `natural_keys` stays unpartitioned on purpose: a partitioned table's unique constraints
//!    must include its partition key, so partitioned by time it would refuse a repeated
//!    `invoiceId` only within one partition, unless every new key were also looked for in every
//!    other partition kept. Monthly, that is 13 more index probes per new sale (measured, all in
//!    memory: 43 µs a key against 5 µs in one index). Kept by year instead, it is one more
//!    probe (two in January), with an event of a year's first day claiming in the year before
//!    too, so that the turn of a year is still decided by a primary key: built and measured
//!    against this table with `scripts/bench.sh`, a million earlier invoiceIds filed first,
//!    three alternating rounds on one PostgreSQL, batch ingest fell 11% (33,990 against 38,180
//!    events/s; the claim statement took 2.1 ms a call against 1.4 ms), and a year's keys would
//!    be stored up to a year past their events. Releasing a key once, here, costs about what
//!    that probe costs each new sale, off the ingest path: its rows of dropped events go by
//!    primary key, in pages.
//! 2. per workspace: persons whose identity links and clicks have all been idle since the cutoff
//!    lose them, and registered clicks older than the cutoff that nobody links to go.
//!
//! Events are kept by month: a month goes once its last day is past retention, so an event is
//! kept between `retention` and `retention` plus one month.

use std::time::Duration;

use deadpool_postgres::Pool;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::Error;

/// The tables partitioned by month on a time-ordered id, the journal's first: the others follow
/// its months.
pub const PARTITIONED: [journal::retention::MonthlyTable; 8] = [
    journal::retention::EVENTS,
    attribution_matcher::retention::ATTRIBUTIONS,
    reports::retention::CONVERSIONS,
    catalog::apply::LEAD_VALUES,
    forwarder::retention::DISPATCHES,
    forwarder::retention::ATTEMPTS,
    forwarder::retention::PAYLOADS,
    forwarder::retention::REQUESTS,
];

/// Months of partitions created ahead of the current one.
pub const MONTHS_AHEAD: i64 = 2;

/// Time between rounds.
const ROUND: Duration = Duration::from_secs(3600);

/// Natural keys released per statement.
const KEYS_PAGE: i64 = 10_000;

/// Retention settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    /// How long events are kept (`CONVRELAY_RETENTION_DAYS`, default 400).
    pub days: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self { days: 400 }
    }
}

impl RetentionSettings {
    /// The instant before which events are past retention.
    pub fn cutoff(&self, now: OffsetDateTime) -> OffsetDateTime {
        now - time::Duration::days(i64::from(self.days))
    }
}

/// What a round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    /// Whether this process ran it (false: another held the lock).
    pub ran: bool,
    /// Partitions created.
    pub created: Vec<String>,
    /// Partitions dropped.
    pub dropped: Vec<String>,
    /// Events dropped with them (the planner's estimate).
    pub events: i64,
    /// Dispatches removed (those of dropped partitions by the planner's estimate).
    pub dispatches: i64,
    /// Decisions removed (those of dropped partitions by the planner's estimate).
    pub attributions: u64,
    /// Conversions removed from reports' per-conversion rows, their rollups staying (those of
    /// dropped partitions by the planner's estimate).
    pub conversions: u64,
    /// Natural keys released.
    pub natural_keys: u64,
    /// Identity links of idle persons removed.
    pub identifiers: i64,
    /// Registered clicks removed.
    pub clicks: i64,
}

const TRY_LOCK: &str = "SELECT pg_try_advisory_lock(hashtextextended('convrelay-retention', 0))";
const UNLOCK: &str = "SELECT pg_advisory_unlock(hashtextextended('convrelay-retention', 0))";

/// One retention round at `now` (see the module documentation).
pub async fn retention_round(
    pool: &Pool,
    settings: RetentionSettings,
    now: OffsetDateTime,
) -> Result<RetentionReport, Error> {
    let mut client = pool.get().await?;
    let locked: bool = client.query_one(TRY_LOCK, &[]).await?.try_get(0)?;
    if !locked {
        return Ok(RetentionReport::default());
    }
    let result = round(&mut client, settings, now).await;
    // The lock is the session's: released here, or with the connection if this fails.
    if client.query_one(UNLOCK, &[]).await.is_err() {
        drop(deadpool_postgres::Object::take(client));
    }
    result
}

async fn round(
    client: &mut deadpool_postgres::Object,
    settings: RetentionSettings,
    now: OffsetDateTime,
) -> Result<RetentionReport, Error> {
    let mut report = RetentionReport {
        ran: true,
        ..RetentionReport::default()
    };
    let ahead = now + time::Duration::days(31 * MONTHS_AHEAD);
    for table in PARTITIONED {
        report
            .created
            .extend(journal::retention::ensure_partitions(client, table, now, ahead).await?);
    }
    let cutoff = settings.cutoff(now);
    // The months of every other table past retention go whole, before their events.
    for table in PARTITIONED {
        if table == journal::retention::EVENTS {
            continue;
        }
        for partition in journal::retention::expired_partitions(&*client, table, cutoff).await? {
            let rows = journal::retention::drop_partition(client, &partition).await?;
            let rows = u64::try_from(rows).unwrap_or(0);
            if table == attribution_matcher::retention::ATTRIBUTIONS {
                report.attributions += rows;
            } else if table == reports::retention::CONVERSIONS {
                report.conversions += rows;
            } else if table == forwarder::retention::DISPATCHES {
                report.dispatches += i64::try_from(rows).unwrap_or(i64::MAX);
            }
            report.dropped.push(partition.name);
        }
    }
    for partition in
        journal::retention::expired_partitions(&*client, journal::retention::EVENTS, cutoff).await?
    {
        for workspace_id in journal::retention::partition_workspaces(&*client, &partition).await? {
            report.attributions += attribution_matcher::retention::forget_decisions(
                &*client,
                workspace_id,
                partition.to,
            )
            .await?;
            report.dispatches +=
                forwarder::retention::forget_dispatches(&*client, workspace_id, partition.to)
                    .await?;
            report.conversions +=
                reports::retention::forget_conversions(&*client, workspace_id, partition.to)
                    .await?;
            catalog::forget_lead_values(&*client, workspace_id, partition.to).await?;
            let mut after = None;
            loop {
                let page = journal::retention::partition_natural_keys(
                    &*client,
                    &partition,
                    workspace_id,
                    after,
                    KEYS_PAGE,
                )
                .await?;
                let keys: Vec<(&str, &str, uuid::Uuid)> = page
                    .iter()
                    .map(|k| (k.kind.as_str(), k.key.as_str(), k.event_id))
                    .collect();
                report.natural_keys +=
                    dedup::erase::forget_natural_keys(&*client, workspace_id, &keys)
                        .await
                        .map_err(dedup_error)?;
                after = page.last().map(|k| k.event_id);
                if (page.len() as i64) < KEYS_PAGE {
                    break;
                }
            }
        }
        report.events += journal::retention::drop_partition(client, &partition).await?;
        tracing::info!(partition = %partition.name, "events partition past retention dropped");
        report.dropped.push(partition.name);
    }
    for workspace_id in attribution_matcher::retention::graph_workspaces(&*client).await? {
        // Under the workspace's graph lock, so that no attribution step writes to a person
        // while it goes.
        let tx = client.transaction().await?;
        attribution_matcher::erase::lock_graph(&tx, workspace_id).await?;
        let forgotten =
            attribution_matcher::retention::forget_idle_persons(&tx, workspace_id, cutoff).await?;
        tx.commit().await?;
        report.identifiers += forgotten.identifiers;
        report.clicks += forgotten.clicks;
    }
    Ok(report)
}

fn dedup_error(e: dedup::Error) -> Error {
    match e {
        dedup::Error::Database(e) => Error::Database(e),
        other => Error::Retention(other.to_string()),
    }
}

/// Runs a round at start and then every hour until `stop`.
pub async fn retention_loop(
    pool: Pool,
    settings: RetentionSettings,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match retention_round(&pool, settings, OffsetDateTime::now_utc()).await {
            Ok(report) if report.ran => {
                metrics::counter!("convrelay_retention_events_dropped_total")
                    .increment(u64::try_from(report.events).unwrap_or(0));
                tracing::info!(
                    created = ?report.created,
                    dropped = ?report.dropped,
                    dispatches = report.dispatches,
                    attributions = report.attributions,
                    conversions = report.conversions,
                    natural_keys = report.natural_keys,
                    identifiers = report.identifiers,
                    clicks = report.clicks,
                    "retention round"
                );
            }
            Ok(_) => {}
            Err(e) => {
                metrics::counter!("convrelay_retention_failures_total", "cause" => e.cause())
                    .increment(1);
                tracing::warn!(error = %e, "retention round failed; the next round resumes it");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(ROUND) => {}
            _ = stop.changed() => return,
        }
    }
}
