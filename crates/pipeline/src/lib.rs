//! The pipeline workers that run inside `convrelay serve` (and alone in `convrelay worker`), on
//! two threads of their own: the attribution step ([`attribution`]: claim queued events of one
//! workspace, load them from the journal, decide attribution and routing, queue the dispatches),
//! the report stage's credit step, backfills, estimates, retention, and the forwarder's dispatch
//! loop. No HTTP here: a failed step says what failed ([`Error`]) in the log
//! and in `convrelay_matcher_step_failures_total{cause}`.
//!
//! Any number of processes may run them against one database: claims use `SKIP LOCKED` and
//! per-workspace locks, and a crashed worker's claim is its rolled-back transaction. A failed
//! step loses nothing (its claim rolls back) and the next one takes half as many events, so that
//! a step too big for the database's statement timeout is not redone at full size again and again.

pub mod attribution;
pub mod retention;

use attribution::match_loop;
pub use attribution::{match_step_sized, MatchReport};

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attribution_matcher::MatchSettings;
use deadpool_postgres::Pool;
use events::{Event, RoutedEvent};
use time::OffsetDateTime;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Why a pipeline step failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection could be had from the pool in time (every one busy, or the database down).
    #[error("no database connection available: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A statement failed.
    #[error("{}", describe(.0))]
    Database(#[from] tokio_postgres::Error),
    /// The matcher failed on something other than the database.
    #[error("attribution failed")]
    Matcher(#[source] attribution_matcher::Error),
    /// The forwarder could not queue the dispatches.
    #[error("queueing dispatches failed")]
    Forwarder(#[source] forwarder::Error),
    /// A retention round failed on something other than the database.
    #[error("retention failed: {0}")]
    Retention(String),
    /// Crediting the decided conversions for reports failed.
    #[error("crediting conversions failed")]
    Reports(#[source] reports::Error),
    /// Reading the conversion-events catalog failed on something other than the database.
    #[error("conversion-events catalog failed")]
    Catalog(#[source] catalog::Error),
    /// A part of a split step stopped without an answer (its task panicked or was cancelled).
    #[error("a part of the attribution step stopped: {0}")]
    Part(#[source] tokio::task::JoinError),
}

impl From<catalog::Error> for Error {
    fn from(e: catalog::Error) -> Self {
        match e {
            catalog::Error::Database(e) => Self::Database(e),
            other => Self::Catalog(other),
        }
    }
}

impl From<reports::Error> for Error {
    fn from(e: reports::Error) -> Self {
        match e {
            reports::Error::Database(e) => Self::Database(e),
            reports::Error::Touches(attribution_matcher::Error::Database(e)) => Self::Database(e),
            other => Self::Reports(other),
        }
    }
}

impl From<attribution_matcher::Error> for Error {
    fn from(e: attribution_matcher::Error) -> Self {
        match e {
            attribution_matcher::Error::Database(e) => Self::Database(e),
            other => Self::Matcher(other),
        }
    }
}

impl From<forwarder::Error> for Error {
    fn from(e: forwarder::Error) -> Self {
        match e {
            forwarder::Error::Database(e) => Self::Database(e),
            other => Self::Forwarder(other),
        }
    }
}

impl Error {
    /// A short name of the cause, for metrics: `statement_timeout`, `lock_timeout`, `deadlock`,
    /// `serialization`, `connection`, `pool`, `database` (any other database error), `matcher`,
    /// `forwarder`, `reports`, `catalog`, `part`.
    pub fn cause(&self) -> &'static str {
        use tokio_postgres::error::SqlState;
        match self {
            Self::Pool(_) => "pool",
            Self::Matcher(_) => "matcher",
            Self::Forwarder(_) => "forwarder",
            Self::Retention(_) => "retention",
            Self::Reports(_) => "reports",
            Self::Catalog(_) => "catalog",
            Self::Part(_) => "part",
            Self::Database(e) if e.is_closed() => "connection",
            Self::Database(e) => match e.code() {
                Some(c) if *c == SqlState::QUERY_CANCELED => "statement_timeout",
                Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE => "lock_timeout",
                Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED => "deadlock",
                Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE => "serialization",
                Some(c) if c.code().starts_with("08") || c.code().starts_with("57P") => {
                    "connection"
                }
                _ => "database",
            },
        }
    }
}

/// A database error as the log should tell it: the server's own message and code (a statement
/// timeout reads "canceling statement due to statement timeout (57014)"), or the client's.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("database error: {} ({})", db.message(), db.code().code()),
        None => {
            let mut out = format!("database client error: {e}");
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                out.push_str(": ");
                out.push_str(&s.to_string());
                source = s.source();
            }
            out
        }
    }
}

/// Attribution loops per process.
const MATCH_LOOPS: usize = 2;

/// Report-stage loops per process.
const CREDIT_LOOPS: usize = 2;

/// Conversions one report step credits: when the matcher is idle, and while it has a backlog
/// (then one step every [`CREDIT_YIELD`]).
const CREDIT_BATCH: i64 = 250;
const CREDIT_BATCH_BUSY: i64 = 50;
const CREDIT_YIELD: Duration = Duration::from_millis(500);

/// One report step: takes at most `limit` of one workspace's decided conversions from the
/// credit queue, shares each one's credit among its touches and adds it to the report rollups,
/// in one transaction; answers how many it credited (`None` when nothing waited). `cache` keeps
/// the clicks events carried between steps (see [`reports::ClickCache`]).
///
/// It runs behind the matcher, never in its step: a multi-touch model reads every touch of the
/// person in the window, which costs more than the decision itself, and attribution and
/// relaying must not wait for reports. Deferred leads are never queued.
pub async fn credit_step(
    pool: &Pool,
    settings: &MatchSettings,
    limit: i64,
    cache: &mut reports::ClickCache,
) -> Result<Option<usize>, Error> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let Some((workspace_id, ids)) = reports::queue::claim(&tx, limit).await? else {
        return Ok(None);
    };
    let mut retracted = HashSet::new();
    let loaded = load(&tx, &workspace_id, &ids, &mut retracted).await?;
    let decided = attribution_matcher::decided_touches(&tx, workspace_id, &ids).await?;
    // Decisions stored as copies of their attribution (before they referenced their touches).
    let copied: Vec<Uuid> = decided
        .iter()
        .filter(|(_, d)| d.copied)
        .map(|(id, _)| *id)
        .collect();
    let copies = attribution_matcher::get_attributions(&tx, workspace_id, &copied).await?;
    let credited = credit(
        &tx,
        workspace_id,
        &loaded,
        &Decisions {
            decided: &decided,
            copies: &copies,
        },
        &retracted,
        settings,
        cache,
    )
    .await?;
    tx.commit().await?;
    metrics::counter!("convrelay_report_credits_total").increment(credited as u64);
    Ok(Some(credited))
}

/// The stored decisions of a report step's conversions.
struct Decisions<'a> {
    decided: &'a attribution_matcher::HashMap<Uuid, attribution_matcher::DecidedTouches>,
    copies: &'a attribution_matcher::HashMap<Uuid, events::Attribution>,
}

/// Shares the credit of the loaded conversions that have a decision.
async fn credit(
    tx: &impl deadpool_postgres::GenericClient,
    workspace_id: Uuid,
    loaded: &[(Uuid, OffsetDateTime, Event)],
    decisions: &Decisions<'_>,
    retracted: &HashSet<Uuid>,
    settings: &MatchSettings,
    cache: &mut reports::ClickCache,
) -> Result<usize, Error> {
    // A lead without an amount counts the value it took from its definition when it was decided.
    let unvalued: Vec<Uuid> = loaded
        .iter()
        .filter(|(_, _, e)| e.kind() == events::EventKind::Lead && e.value.is_none())
        .map(|(id, _, _)| *id)
        .collect();
    let lead_values = catalog::lead_values(tx, workspace_id, &unvalued).await?;
    let conversions: Vec<reports::Conversion<'_>> = loaded
        .iter()
        .filter_map(|(event_id, _, event)| {
            let stored = decisions.decided.get(event_id)?;
            if event.mode == events::Mode::Deferred {
                return None;
            }
            let decided = if stored.copied {
                reports::Decided::Copied(decisions.copies.get(event_id)?)
            } else {
                reports::Decided::Owners {
                    touch: stored.touch,
                    first_touch: stored.first_touch,
                }
            };
            Some(reports::Conversion {
                event_id: *event_id,
                kind: event.kind,
                occurred_at: event.timestamp,
                event_name: &event.event_name,
                value: event
                    .value
                    .as_ref()
                    .or_else(|| lead_values.get(event_id).map(|applied| &applied.money))
                    .map(|v| (v.amount(), v.currency().code())),
                retracted: retracted.contains(event_id),
                carried: (&event.click_ids, event.utm.as_ref()),
                decided,
            })
        })
        .collect();
    if conversions.is_empty() {
        return Ok(0);
    }
    let window = attribution_matcher::attribution_window(tx, workspace_id, settings).await?;
    let window = time::Duration::try_from(window).unwrap_or(time::Duration::MAX);
    Ok(reports::credit(tx, workspace_id, &conversions, window, cache).await?)
}

/// Loads events from the journal in arrival order, noting which were retracted.
pub(crate) async fn load(
    client: &impl deadpool_postgres::GenericClient,
    workspace_id: &Uuid,
    ids: &[Uuid],
    retracted: &mut HashSet<Uuid>,
) -> Result<Vec<(Uuid, OffsetDateTime, Event)>, Error> {
    let rows = journal::get_events(client, *workspace_id, ids).await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            if row.retracted {
                retracted.insert(row.id);
            }
            match row.event {
                Ok(event) => Some((row.id, row.received_at, event)),
                Err(error) => {
                    tracing::error!(event_id = %row.id, %error, "a stored event cannot be read");
                    None
                }
            }
        })
        .collect())
}

/// Starts a destination's backfill (admin) inside the caller's transaction: reads the request
/// (`{"since"?: "…"}`), counts the workspace's events in the window in the journal, and records
/// the backfill for the backfill loop, which walks them behind live traffic.
///
/// # Errors
/// The forwarder's: not found, invalid, a backfill already running; the database's.
pub async fn start_backfill(
    client: &impl deadpool_postgres::GenericClient,
    workspace_id: Uuid,
    destination: &str,
    body: &serde_json::Value,
) -> Result<forwarder::BackfillView, forwarder::Error> {
    let plan = forwarder::plan_backfill(client, workspace_id, destination, body).await?;
    let total = journal::count_received(client, workspace_id, plan.since, plan.cursor).await?;
    forwarder::start_backfill(client, workspace_id, &plan, total).await
}

/// Events one backfill step considers.
const BACKFILL_PAGE: i64 = 500;

/// One backfill step: takes one running backfill, considers the next page of its workspace's
/// events (newest first, below its cursor), and hands the decided ones with their attribution
/// and routing to the forwarder, which queues what the destination gets behind live traffic.
/// `None` when no backfill is due.
///
/// # Errors
/// [`Error`]; a backfill whose step failed is taken up again when its lease runs out.
pub async fn backfill_step(
    pool: &Pool,
    lease: Duration,
) -> Result<Option<forwarder::backfill::BackfillPage>, Error> {
    let mut client = pool.get().await?;
    let Some(job) = forwarder::backfill::claim_backfill(&client, lease).await? else {
        return Ok(None);
    };
    let filter = journal::EventFilter {
        since: Some(job.since),
        before: Some(job.cursor),
        limit: BACKFILL_PAGE,
        ..journal::EventFilter::default()
    };
    let page = journal::list_events(&client, job.workspace_id, &filter).await?;
    let finished = i64::try_from(page.len()).unwrap_or(i64::MAX) < BACKFILL_PAGE;
    let next_cursor = page.last().map_or(job.cursor, |stored| stored.id);
    let live: Vec<Uuid> = page
        .iter()
        .filter(|stored| stored.retracted_at.is_none())
        .map(|stored| stored.id)
        .collect();
    let loaded = journal::get_events(&client, job.workspace_id, &live).await?;
    // The catalog as for live traffic: leads keep the values they took when they were decided,
    // and an event name turned off for this destination is not sent to it.
    let mut names: Vec<&str> = loaded
        .iter()
        .filter_map(|stored| stored.event.as_ref().ok())
        .map(|event| event.event_name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    let definitions = catalog::definitions_for(&client, job.workspace_id, &names).await?;
    let lead_values = catalog::lead_values(&client, job.workspace_id, &live).await?;
    // A restated conversion goes out at its latest value, as a live one decided after the
    // restatement does.
    let restated = restated_values(&client, job.workspace_id, &live).await?;
    let mut routed = Vec::with_capacity(loaded.len());
    for stored in loaded {
        let Ok(mut event) = stored.event else {
            continue;
        };
        let turned_off = definitions
            .get(&event.event_name)
            .filter(|definition| definition.kind == event.kind())
            .and_then(|definition| definition.destinations.get(&job.destination.id))
            .is_some_and(|rule| !rule.enabled);
        if turned_off {
            continue;
        }
        if event.value.is_none() {
            if let Some(applied) = lead_values.get(&stored.id) {
                event.value = Some(applied.money);
            }
        }
        if let Some(money) = restated.get(&stored.id) {
            event.value = Some(*money);
        }
        let decision =
            attribution_matcher::get_decision(&client, job.workspace_id, stored.id, Some(&event))
                .await?;
        if let Some(decision) = decision {
            routed.push(RoutedEvent {
                workspace_id: job.workspace_id,
                event_id: stored.id,
                received_at: stored.received_at,
                event,
                attribution: decision.attribution,
                routes: decision.routes,
            });
        }
    }
    let tx = client.transaction().await?;
    let recorded = forwarder::backfill::record_backfill_page(
        &tx,
        &job,
        page.len(),
        &routed,
        &catalog::catalog_rules(&definitions),
        next_cursor,
        finished,
    )
    .await?;
    tx.commit().await?;
    Ok(Some(recorded))
}

/// The latest restated value of each of `event_ids` that was restated: what its conversion
/// carries when it is sent (a stored restatement is always valid money: it was checked when
/// made).
pub(crate) async fn restated_values(
    client: &impl deadpool_postgres::GenericClient,
    workspace_id: Uuid,
    event_ids: &[Uuid],
) -> Result<HashMap<Uuid, events::Money>, Error> {
    let current = forwarder::current_values(client, workspace_id, event_ids).await?;
    Ok(current
        .into_iter()
        .filter_map(|(id, (amount, currency))| {
            let currency = events::Currency::parse(&currency).ok()?;
            Some((id, events::Money::new(amount, currency).ok()?))
        })
        .collect())
}

/// Runs backfill steps until `stop`: busy while a backfill has pages left, else idle a second.
async fn backfill_loop(pool: Pool, lease: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let wait = match backfill_step(&pool, lease).await {
            Ok(Some(_)) => continue,
            Ok(None) => Duration::from_millis(500),
            Err(e) => {
                tracing::warn!(error = %e, cause = e.cause(), "backfill step failed; trying again shortly");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// How old a workspace's close-rate estimate of a lead's value may grow before the workers
/// compute it again (the catalog promises at least daily).
pub const ESTIMATE_MAX_AGE: Duration = Duration::from_secs(12 * 3600);

/// Workspaces whose estimate one round recomputes at most.
const ESTIMATES_PER_ROUND: i64 = 10;

/// How often the estimate loop looks for estimates due.
const ESTIMATE_POLL: Duration = Duration::from_secs(60);

/// One round of the conversion-events catalog's upkeep: recomputes the close-rate estimates
/// older than `max_age` of at most [`ESTIMATES_PER_ROUND`] workspaces; answers how many.
///
/// # Errors
/// [`Error`]; nothing is half-done (each estimate is one statement).
pub async fn estimate_step(pool: &Pool, max_age: Duration) -> Result<usize, Error> {
    let client = pool.get().await?;
    Ok(catalog::refresh_due_estimates(&client, max_age, ESTIMATES_PER_ROUND).await?)
}

/// Runs [`estimate_step`] until `stop`: again at once while rounds are full, else every
/// [`ESTIMATE_POLL`].
async fn estimate_loop(pool: Pool, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let wait = match estimate_step(&pool, ESTIMATE_MAX_AGE).await {
            Ok(n) if i64::try_from(n).unwrap_or(i64::MAX) >= ESTIMATES_PER_ROUND => continue,
            Ok(_) => ESTIMATE_POLL,
            Err(e) => {
                tracing::warn!(error = %e, cause = e.cause(), "estimating lead values failed; trying again shortly");
                ESTIMATE_POLL
            }
        };
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Whether this process's matcher has a backlog: a match loop says so after each step that took
/// most of what it may, and the word holds for [`BUSY_FOR`]. A step that found little, or
/// nothing to claim, does not take it back: the match loops take turns at a workspace's
/// backlog, and the one that finds the workspace held by its sibling must not hide the
/// sibling's backlog while that step runs (a flag per loop did, between their turns: the report
/// stage then took full steps during half of a burst).
#[derive(Debug)]
pub(crate) struct MatcherBusy {
    origin: Instant,
    /// Milliseconds from `origin` to the last step that found a backlog, plus one (0: none).
    last: AtomicU64,
}

/// How long the matcher counts as busy after a step that found a backlog: some steps' time, so
/// that the report stage takes its full steps again within a second of the burst's end.
const BUSY_FOR: Duration = Duration::from_secs(1);

impl Default for MatcherBusy {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl MatcherBusy {
    /// A match loop's step found a backlog, or not.
    pub(crate) fn report(&self, backlog: bool) {
        self.report_at(backlog, Instant::now());
    }

    fn report_at(&self, backlog: bool, at: Instant) {
        if backlog {
            self.last.store(self.millis(at) + 1, Ordering::Relaxed);
        }
    }

    /// Whether a step found a backlog within the last [`BUSY_FOR`].
    fn any(&self) -> bool {
        self.any_at(Instant::now())
    }

    fn any_at(&self, at: Instant) -> bool {
        let last = self.last.load(Ordering::Relaxed);
        last != 0 && self.millis(at).saturating_sub(last - 1) < millis(BUSY_FOR)
    }

    fn millis(&self, at: Instant) -> u64 {
        millis(at.saturating_duration_since(self.origin))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The report stage: credits queued conversions until none wait, then polls. It stays behind
/// attribution: while this process's matcher works through a backlog, it takes a small batch
/// every [`CREDIT_YIELD`] only, so that reports lag in a burst instead of attribution.
async fn credit_loop(
    pool: Pool,
    settings: MatchSettings,
    busy: Arc<MatcherBusy>,
    mut stop: watch::Receiver<bool>,
) {
    let mut cache = reports::ClickCache::default();
    loop {
        if *stop.borrow() {
            return;
        }
        let yielding = busy.any();
        let limit = if yielding {
            CREDIT_BATCH_BUSY
        } else {
            CREDIT_BATCH
        };
        let wait = match credit_step(&pool, &settings, limit, &mut cache).await {
            Ok(Some(_)) if yielding => CREDIT_YIELD,
            Ok(Some(_)) => continue,
            Ok(None) => Duration::from_millis(100),
            Err(e) => {
                let cause = e.cause();
                metrics::counter!("convrelay_report_credit_failures_total", "cause" => cause)
                    .increment(1);
                tracing::warn!(error = %e, cause, "report step failed; trying again shortly");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// The running workers of a process.
pub struct Workers {
    shutdown: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
    /// The threads they run on (none when they could not be started: then the caller's).
    runtime: Option<tokio::runtime::Runtime>,
}

/// Threads the workers of a process run on: the parts of a split attribution step, and loops of
/// different workspaces, run on both cores of a small machine, beside the API's own threads.
const WORKER_THREADS: usize = 2;

/// The workers' own runtime, and where to spawn on it (on the caller's when it cannot start).
fn worker_runtime() -> (Option<tokio::runtime::Runtime>, tokio::runtime::Handle) {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .thread_name("convrelay-worker")
        .enable_all()
        .build()
    {
        Ok(runtime) => {
            let handle = runtime.handle().clone();
            (Some(runtime), handle)
        }
        Err(error) => {
            tracing::warn!(%error, "the workers' threads cannot start; they share the caller's");
            (None, tokio::runtime::Handle::current())
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        // Dropping a runtime blocks, which an async caller must not: it is let go instead.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Workers {
    /// Starts the attribution loop (woken by `work` when this process stores events) and, when
    /// given, the forwarder's dispatch loop and the backfill loop.
    pub fn start(
        pool: Pool,
        settings: MatchSettings,
        work: Arc<Notify>,
        forwarder: Option<forwarder::Forwarder>,
    ) -> Self {
        Self::start_with(
            pool,
            settings,
            work,
            forwarder,
            retention::RetentionSettings::default(),
        )
    }

    /// As [`Workers::start`], with the retention worker's settings.
    pub fn start_with(
        pool: Pool,
        settings: MatchSettings,
        work: Arc<Notify>,
        forwarder: Option<forwarder::Forwarder>,
        retention: retention::RetentionSettings,
    ) -> Self {
        let (shutdown, stop) = watch::channel(false);
        let (runtime, spawner) = worker_runtime();
        let busy = Arc::new(MatcherBusy::default());
        // Each loop works on one workspace at a time; a few let workspaces proceed side by side,
        // sharing one copy of the graphs they attribute from.
        let graphs = attribution_matcher::GraphCache::default();
        let mut handles: Vec<JoinHandle<()>> = (0..MATCH_LOOPS)
            .map(|_| {
                spawner.spawn(match_loop(
                    pool.clone(),
                    settings,
                    Arc::clone(&work),
                    Arc::clone(&busy),
                    graphs.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        // The report stage: steps of one workspace's conversions lock their rows and rollups in
        // one order, so two loops credit side by side.
        for _ in 0..CREDIT_LOOPS {
            handles.push(spawner.spawn(credit_loop(
                pool.clone(),
                settings,
                Arc::clone(&busy),
                stop.clone(),
            )));
        }
        handles.push(spawner.spawn(estimate_loop(pool.clone(), stop.clone())));
        handles.push(spawner.spawn(retention::retention_loop(
            pool.clone(),
            retention,
            stop.clone(),
        )));
        if let Some(forwarder) = forwarder {
            // Backfills queue dispatches for the forwarder; without one there is nothing to fill.
            let lease = forwarder.config().lease;
            handles.push(spawner.spawn(backfill_loop(pool.clone(), lease, stop.clone())));
            handles.push(spawner.spawn(forwarder.run(stop)));
        }
        Self {
            shutdown,
            handles,
            runtime,
        }
    }

    /// Asks the workers to finish what they hold and waits for them (bounded).
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        for handle in std::mem::take(&mut self.handles) {
            if tokio::time::timeout(Duration::from_secs(30), handle)
                .await
                .is_err()
            {
                tracing::warn!("a worker did not stop in time");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_statement_timeout_is_named_as_one() {
        let db = test_support::TestDb::new("pipeline:none", |_| Box::pin(async { Ok(()) })).await;
        let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .batch_execute("SET statement_timeout = '20ms'")
            .await
            .unwrap();
        let e = Error::from(client.query("SELECT pg_sleep(1)", &[]).await.unwrap_err());
        assert_eq!(e.cause(), "statement_timeout");
        assert!(
            e.to_string()
                .contains("canceling statement due to statement timeout (57014)"),
            "{e}"
        );
    }

    #[test]
    fn a_backlog_holds_the_report_stage_back_until_a_second_without_one() {
        let busy = MatcherBusy::default();
        let start = busy.origin;
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert!(!busy.any_at(at(0)));
        busy.report_at(true, at(100));
        assert!(busy.any_at(at(100)));
        // The sibling loop found the workspace held, or a small step: the backlog still counts.
        busy.report_at(false, at(200));
        assert!(busy.any_at(at(900)));
        busy.report_at(true, at(1000));
        assert!(busy.any_at(at(1999)));
        // A second after the last step that found one, the report stage takes full steps again.
        assert!(!busy.any_at(at(2000)));
    }

    #[test]
    fn a_pool_timeout_is_not_called_a_database_outage() {
        let e = Error::Pool(deadpool_postgres::PoolError::Timeout(
            deadpool_postgres::TimeoutType::Wait,
        ));
        assert_eq!(e.cause(), "pool");
        assert!(e
            .to_string()
            .starts_with("no database connection available"));
    }
}
