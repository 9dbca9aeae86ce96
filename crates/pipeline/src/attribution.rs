//! The attribution step — claim queued events of one workspace, load them from the journal,
//! decide attribution and routing, queue what follows (dispatches, the report stage's
//! conversions) — and the loop that runs it.
//!
//! A large claim is decided in parts that share no identifier and no person, side by side, each
//! in a transaction of its own beside the claim's (see [`match_step_sized`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use attribution_matcher::{CarriedClicks, GraphCache, GraphChanges, Lease, MatchSettings};
use deadpool_postgres::Pool;
use events::{Event, RoutedEvent};
use time::OffsetDateTime;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::{load, Error, MatcherBusy};

/// Events the attribution step claims at most per transaction. A step's fixed costs (the claim,
/// the barriers between its side-by-side phases, the commits) are spread over more events in
/// steps of 3,000 or 4,000 than of 2,000 (a repeat-customer backlog drained 5–10 % faster,
/// measured in alternation; 8,000 was slower again). 3,000 keeps `serve`'s peak memory under
/// load some 25 MB lower than 4,000 for about the same speed.
const MATCH_BATCH: usize = 3000;

/// The fewest events a step claims after failures.
const MIN_MATCH_BATCH: usize = 50;

/// How often an idle worker looks for work that another process queued.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// After a step that found fewer events than this, and no other workspace waiting, the loop
/// waits [`LINGER`] before the next, so that a steady trickle is attributed in steps of hundreds
/// rather than dozens: a step costs about the same for 50 events as for 500 (measured: 125 µs an
/// event in steps of 60, 26 µs in steps of 2000), and the time saved goes to ingestion.
const LINGER_BELOW: usize = 500;

/// See [`LINGER_BELOW`]; at most this much is added to the attribution lag.
const LINGER: Duration = Duration::from_millis(50);

/// What one attribution step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MatchReport {
    /// Whether it claimed anything (events, clicks to file, re-checks); false means idle.
    pub claimed: bool,
    /// Events decided (first decisions, late matches, expiries).
    pub decided: usize,
    /// Dispatches queued.
    pub dispatches: usize,
    /// Whether other workspaces had work waiting too.
    pub others_waiting: bool,
    /// The parts the claim was decided in, side by side (1: whole).
    pub parts: usize,
}

/// Claims with fewer events than this are decided whole: a split costs a read and two
/// transactions more.
const SPLIT_FROM: usize = 200;

/// The parts a claim is split into, each decided in its own transaction on its own connection
/// while the others run: one per core of a small machine (the database's work of a step is
/// about twice the worker's).
const SPLIT_PARTS: usize = 2;

/// One attribution step, taking at most `limit` events; answers what it did (nothing when no
/// work). It keeps the clicks of stored events it reads in `carried` for the next steps, and the
/// part of the workspace's graph that names people in `graphs` (shared by the process's loops).
///
/// The claim's transaction holds the workspace and the claimed queue rows to the end. When the
/// claim holds nothing else ([`attribution_matcher::Claim::holds_rows`]) and its events fall into
/// parts that share no identifier and no person ([`attribution_matcher::split`]), the parts are
/// decided side by side, each in a transaction of its own that commits as soon as its part is
/// done, and the claim's transaction commits last. A part that fails rolls the claim back: its
/// events come back, and those of parts that did commit are found decided and skipped.
pub async fn match_step_sized(
    pool: &Pool,
    settings: &MatchSettings,
    limit: usize,
    carried: &mut CarriedClicks,
    graphs: &GraphCache,
) -> Result<MatchReport, Error> {
    let started = std::time::Instant::now();
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let Some(claim) = attribution_matcher::claim(&tx, limit).await? else {
        return Ok(MatchReport::default());
    };
    // Dropped without a check-in (any failure below), the lease drops the copy.
    let lease = graphs.checkout(&tx, claim.workspace_id).await?;
    let claimed_ms = started.elapsed().as_secs_f64() * 1000.0;
    // A large claim that holds nothing but its queue rows is read, and decided in parts, on
    // connections beside the claim's, whose transaction only keeps the workspace and the rows.
    let spare = if !claim.holds_rows && claim.event_ids.len() >= SPLIT_FROM {
        spare_connections(pool, SPLIT_PARTS).await
    } else {
        Vec::new()
    };
    let now = OffsetDateTime::now_utc();
    let ((recorded, changes), parts, loaded_ms) = if spare.is_empty() {
        let mut retracted = HashSet::new();
        let loaded = load(&tx, &claim.workspace_id, &claim.event_ids, &mut retracted).await?;
        let loaded_ms = started.elapsed().as_secs_f64() * 1000.0;
        let step = Step {
            loaded: Arc::new(loaded),
            retracted: Arc::new(retracted),
            settings: *settings,
            now,
        };
        let graph = match &lease {
            Some(lease) => Some(read_graph_here(&tx, &claim, &step.loaded, lease, graphs).await?),
            None => None,
        };
        let (recorded, changes) = step.record(&tx, &claim, carried, graph.as_ref()).await?;
        ((recorded, vec![changes]), 1, loaded_ms)
    } else {
        let (spare, step) = load_beside(spare, &claim, *settings, now).await?;
        let loaded_ms = started.elapsed().as_secs_f64() * 1000.0;
        let copy = lease.as_ref().map(|lease| (lease, graphs));
        let (spare, graph) = read_graph_beside(spare, &claim, &step.loaded, copy).await?;
        let parts = attribution_matcher::split(&claim, &step.loaded, &graph, spare.len());
        if parts.len() > 1 {
            let count = parts.len();
            let recorded = decide_parts(spare, parts, &step, Arc::new(graph), carried).await?;
            (recorded, count, loaded_ms)
        } else {
            drop(spare);
            let (recorded, changes) = step.record(&tx, &claim, carried, Some(&graph)).await?;
            ((recorded, vec![changes]), 1, loaded_ms)
        }
    };
    tx.commit().await?;
    if let Some(lease) = lease {
        graphs.checkin(lease, &changes);
    }
    tracing::debug!(
        workspace_id = %claim.workspace_id,
        claimed = claim.event_ids.len(),
        parts,
        decided = recorded.decided,
        dispatches = recorded.dispatches,
        claimed_ms,
        loaded_ms,
        credited = recorded.credited,
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "attribution step"
    );
    metrics::counter!("convrelay_matcher_decisions_total").increment(recorded.decided as u64);
    Ok(MatchReport {
        claimed: true,
        decided: recorded.decided,
        dispatches: recorded.dispatches,
        others_waiting: claim.others_waiting,
        parts,
    })
}

/// `n` connections if the pool has them free now (none otherwise): a split never waits for
/// connections that the API or other loops are using.
async fn spare_connections(pool: &Pool, n: usize) -> Vec<deadpool_postgres::Object> {
    let mut timeouts = pool.timeouts();
    timeouts.wait = Some(Duration::ZERO);
    let mut connections = Vec::with_capacity(n);
    for _ in 0..n {
        match pool.timeout_get(&timeouts).await {
            Ok(connection) => connections.push(connection),
            Err(_) => return Vec::new(),
        }
    }
    connections
}

/// Runs `work` for each of `connections` (with its index) as a task of its own, side by side on
/// the runtime's threads; answers the connections back with the answers, in order, once every
/// task is done (the first failure otherwise).
async fn beside<T, Fut>(
    connections: Vec<deadpool_postgres::Object>,
    work: impl Fn(usize, deadpool_postgres::Object) -> Fut,
) -> Result<(Vec<deadpool_postgres::Object>, Vec<T>), Error>
where
    Fut: std::future::Future<Output = (deadpool_postgres::Object, Result<T, Error>)>
        + Send
        + 'static,
    T: Send + 'static,
{
    let tasks: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(index, connection)| tokio::spawn(work(index, connection)))
        .collect();
    let mut connections = Vec::with_capacity(tasks.len());
    let mut answers = Vec::with_capacity(tasks.len());
    let mut failed = None;
    for task in tasks {
        match task.await {
            Ok((connection, Ok(answer))) => {
                connections.push(connection);
                answers.push(answer);
            }
            Ok((_, Err(e))) => failed = failed.or(Some(e)),
            Err(e) => failed = failed.or(Some(Error::Part(e))),
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok((connections, answers)),
    }
}

/// The claim's events in as many contiguous runs as `n` says, each a claim of its own.
fn runs_of(claim: &attribution_matcher::Claim, n: usize) -> Vec<attribution_matcher::Claim> {
    let size = claim.event_ids.len().div_ceil(n.max(1)).max(1);
    claim
        .event_ids
        .chunks(size)
        .map(|ids| attribution_matcher::Claim {
            event_ids: ids.to_vec(),
            ..claim.clone()
        })
        .collect()
}

/// Loads the claim's events from the journal on the spare connections, a run of them each, side
/// by side (events never change once stored, and an erasure waits for the workspace the claim
/// holds, so any connection reads what the claim's would).
async fn load_beside(
    spare: Vec<deadpool_postgres::Object>,
    claim: &attribution_matcher::Claim,
    settings: MatchSettings,
    now: OffsetDateTime,
) -> Result<(Vec<deadpool_postgres::Object>, Step), Error> {
    let runs = Arc::new(runs_of(claim, spare.len()));
    let (spare, loaded) = beside(spare, |index, connection| {
        let runs = Arc::clone(&runs);
        async move {
            let mut retracted = HashSet::new();
            let loaded = match runs.get(index) {
                Some(run) => {
                    load(
                        &connection,
                        &run.workspace_id,
                        &run.event_ids,
                        &mut retracted,
                    )
                    .await
                }
                None => Ok(Vec::new()),
            };
            (connection, loaded.map(|loaded| (loaded, retracted)))
        }
    })
    .await?;
    let mut events = Vec::with_capacity(claim.event_ids.len());
    let mut retracted = HashSet::new();
    for (run, gone) in loaded {
        events.extend(run);
        retracted.extend(gone);
    }
    let step = Step {
        loaded: Arc::new(events),
        retracted: Arc::new(retracted),
        settings,
        now,
    };
    Ok((spare, step))
}

/// The claim's graph from the process's copy, and what the copy does not know read in the
/// claim's transaction (`tx`).
async fn read_graph_here(
    tx: &deadpool_postgres::Transaction<'_>,
    claim: &attribution_matcher::Claim,
    loaded: &[(Uuid, OffsetDateTime, Event)],
    lease: &Lease,
    graphs: &GraphCache,
) -> Result<attribution_matcher::KnownGraph, Error> {
    let mut graph = attribution_matcher::KnownGraph::of_claim(claim, loaded);
    let mut reads = Vec::new();
    for run in graphs.fill(lease, &mut graph, 1) {
        reads.push(attribution_matcher::read_identities(tx, claim.workspace_id, &run).await?);
    }
    graphs.complete(lease, &mut graph, reads, claim.filed_clicks);
    Ok(graph)
}

/// Reads what the database holds of the claim's identifiers (those the process's `copy` of the
/// graph does not know, when there is one) on the spare connections, a run of the distinct
/// identifiers each, side by side.
async fn read_graph_beside(
    spare: Vec<deadpool_postgres::Object>,
    claim: &attribution_matcher::Claim,
    loaded: &[(Uuid, OffsetDateTime, Event)],
    copy: Option<(&Lease, &GraphCache)>,
) -> Result<
    (
        Vec<deadpool_postgres::Object>,
        attribution_matcher::KnownGraph,
    ),
    Error,
> {
    let mut graph = attribution_matcher::KnownGraph::of_claim(claim, loaded);
    let runs = match copy {
        Some((lease, graphs)) => graphs.fill(lease, &mut graph, spare.len()),
        None => graph.runs(spare.len()),
    };
    let runs = Arc::new(runs);
    let workspace_id = claim.workspace_id;
    let (spare, read) = beside(spare, |index, connection| {
        let runs = Arc::clone(&runs);
        async move {
            let read = match runs.get(index) {
                Some(run) => attribution_matcher::read_identities(&connection, workspace_id, run)
                    .await
                    .map_err(Error::from),
                None => Ok(attribution_matcher::KnownGraph::default()),
            };
            (connection, read)
        }
    })
    .await?;
    match copy {
        Some((lease, graphs)) => graphs.complete(lease, &mut graph, read, claim.filed_clicks),
        None => read.into_iter().for_each(|other| graph.absorb(other)),
    }
    Ok((spare, graph))
}

/// Decides the parts of a split claim side by side, each a task of its own (on as many threads
/// as the runtime has) with a transaction of its own on one of `connections`, committed as soon
/// as its part is done. The first part keeps its clicks in `carried`, the others in caches of
/// their own that `carried` takes over afterwards.
async fn decide_parts(
    connections: Vec<deadpool_postgres::Object>,
    parts: Vec<attribution_matcher::Claim>,
    step: &Step,
    graph: Arc<attribution_matcher::KnownGraph>,
    carried: &mut CarriedClicks,
) -> Result<(Recorded, Vec<GraphChanges>), Error> {
    let capacity = carried.capacity();
    let mut caches = Vec::with_capacity(parts.len());
    caches.push(std::mem::replace(carried, CarriedClicks::new(capacity)));
    caches.extend((1..parts.len()).map(|_| CarriedClicks::new(capacity)));
    let runs: Vec<_> = connections
        .into_iter()
        .zip(parts)
        .zip(caches)
        .map(|((mut connection, part), mut cache)| {
            let step = step.clone();
            let graph = Arc::clone(&graph);
            tokio::spawn(async move {
                let tx = connection.transaction().await?;
                let (recorded, changes) = step.record(&tx, &part, &mut cache, Some(&graph)).await?;
                tx.commit().await?;
                Ok::<_, Error>((recorded, changes, cache))
            })
        })
        .collect();
    let mut sum = Recorded::default();
    let mut all_changes = Vec::with_capacity(runs.len());
    let mut failed = None;
    for (index, run) in runs.into_iter().enumerate() {
        // Every part is waited for, so that none is still running when the claim rolls back.
        match run.await.map_err(Error::Part).and_then(|answer| answer) {
            Ok((recorded, changes, cache)) => {
                all_changes.push(changes);
                sum.decided += recorded.decided;
                sum.dispatches += recorded.dispatches;
                sum.credited += recorded.credited;
                if index == 0 {
                    *carried = cache;
                } else {
                    carried.absorb(cache);
                }
            }
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok((sum, all_changes)),
    }
}

/// What a step decides from: the claim's events as loaded (the retracted ones named), the
/// settings, and the time of its decisions. Shared by the parts of a split claim.
#[derive(Clone)]
struct Step {
    loaded: Arc<Vec<(Uuid, OffsetDateTime, Event)>>,
    retracted: Arc<HashSet<Uuid>>,
    settings: MatchSettings,
    now: OffsetDateTime,
}

/// What deciding a claim (or a part of one) did.
#[derive(Debug, Default, Clone, Copy)]
struct Recorded {
    decided: usize,
    dispatches: usize,
    credited: usize,
}

impl Step {
    /// Decides the events of `claim` in `tx`, and queues what follows from the decisions: the
    /// conversions for the report stage, the dispatches (with the catalog's values and rules).
    async fn record(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        claim: &attribution_matcher::Claim,
        carried: &mut CarriedClicks,
        graph: Option<&attribution_matcher::KnownGraph>,
    ) -> Result<(Recorded, GraphChanges), Error> {
        let now = self.now;
        let (decided, changes) = attribution_matcher::decide_known(
            tx,
            claim,
            &self.loaded,
            &self.settings,
            now,
            carried,
            graph,
        )
        .await?;

        let by_id: HashMap<Uuid, &(Uuid, OffsetDateTime, Event)> =
            self.loaded.iter().map(|entry| (entry.0, entry)).collect();
        // The catalog: the definitions of the step's event names, the values leads without an
        // amount take (frozen at their first decision), and each destination's rule.
        let decided_events: Vec<(Uuid, &Event)> = decided
            .iter()
            .filter_map(|d| by_id.get(&d.event_id).map(|(id, _, event)| (*id, event)))
            .collect();
        let mut names: Vec<&str> = decided_events
            .iter()
            .map(|(_, e)| e.event_name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        let (definitions, has_destinations) = futures_util::try_join!(
            async {
                Ok::<_, Error>(catalog::definitions_for(tx, claim.workspace_id, &names).await?)
            },
            async { Ok::<_, Error>(forwarder::has_destinations(tx, claim.workspace_id).await?) },
        )?;
        let lead_values =
            catalog::freeze_lead_values(tx, claim.workspace_id, &decided_events, &definitions, now)
                .await?;
        let rules = catalog::catalog_rules(&definitions);
        // Multi-touch credit is shared by the report stage once this step commits.
        let conversions: Vec<Uuid> = decided
            .iter()
            .filter(|d| {
                by_id
                    .get(&d.event_id)
                    .is_some_and(|(_, _, event)| event.mode != events::Mode::Deferred)
            })
            .map(|d| d.event_id)
            .collect();
        let lag = metrics::histogram!("convrelay_matcher_lag_seconds");
        let count = decided.len();
        let mut routed = Vec::new();
        for d in decided {
            let Some((_, received_at, event)) = by_id.get(&d.event_id).copied() else {
                continue;
            };
            if d.first {
                lag.record((now - *received_at).as_seconds_f64().max(0.0));
            }
            // A retracted event is attributed (its links count) but never sent; a workspace
            // without destinations has nowhere to send anything.
            if !has_destinations
                || !d.routes.iter().any(|r| r.dispatch)
                || self.retracted.contains(&d.event_id)
            {
                continue;
            }
            let mut event = event.clone();
            if let Some(applied) = lead_values.get(&d.event_id) {
                event.value = Some(applied.money);
            }
            routed.push(RoutedEvent {
                workspace_id: claim.workspace_id,
                event_id: d.event_id,
                received_at: *received_at,
                event,
                attribution: d.attribution,
                routes: d.routes,
            });
        }
        // A value restated before its conversion was decided: the conversion carries the latest.
        // (A restatement holds the workspace as this step does, so one made while it runs comes
        // after it, and finds the conversions it queued.)
        if !routed.is_empty() {
            let ids: Vec<Uuid> = routed.iter().map(|r| r.event_id).collect();
            let restated = crate::restated_values(tx, claim.workspace_id, &ids).await?;
            for routed in &mut routed {
                if let Some(money) = restated.get(&routed.event_id) {
                    routed.event.value = Some(*money);
                }
            }
        }
        reports::queue::queue(tx, claim.workspace_id, &conversions).await?;
        let dispatches = forwarder::enqueue_with_catalog(tx, &routed, &rules).await?;
        let recorded = Recorded {
            decided: count,
            dispatches,
            credited: conversions.len(),
        };
        Ok((recorded, changes))
    }
}

/// Whether a step of at most `limit` events found a backlog: it decided at least half of what it
/// may take. A steady flow that the matcher keeps up with comes in smaller steps (a few hundred
/// events at 20,000 a second), so the report stage keeps pace with it; only a burst that
/// outruns the matcher makes the report stage yield.
fn has_backlog(report: &MatchReport, limit: usize) -> bool {
    report.claimed && report.decided >= limit / 2
}

/// An attribution loop of the process: steps while work is claimable (telling [`MatcherBusy`]
/// after each step whether it found a backlog), then waits to be woken or polls.
pub(crate) async fn match_loop(
    pool: Pool,
    settings: MatchSettings,
    work: Arc<Notify>,
    busy: Arc<MatcherBusy>,
    graphs: GraphCache,
    mut stop: watch::Receiver<bool>,
) {
    let mut limit = MATCH_BATCH;
    let mut carried = CarriedClicks::default();
    loop {
        if *stop.borrow() {
            return;
        }
        let (idle, small) =
            match match_step_sized(&pool, &settings, limit, &mut carried, &graphs).await {
                Ok(report) => {
                    busy.report(has_backlog(&report, limit));
                    limit = (limit * 2).min(MATCH_BATCH);
                    (
                        !report.claimed,
                        report.decided < LINGER_BELOW && !report.others_waiting,
                    )
                }
                Err(e) => {
                    let cause = e.cause();
                    metrics::counter!("convrelay_matcher_step_failures_total", "cause" => cause)
                        .increment(1);
                    limit = (limit / 2).max(MIN_MATCH_BATCH);
                    tracing::warn!(
                        error = %e,
                        cause,
                        next_step_events = limit,
                        "attribution step failed; its claim was rolled back and is retried"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => return,
                    }
                    continue;
                }
            };
        if idle {
            tokio::select! {
                _ = work.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = stop.changed() => return,
            }
        } else if small {
            tokio::select! {
                _ = tokio::time::sleep(LINGER) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_steps_that_take_most_of_what_they_may_are_a_backlog() {
        let step = |decided: usize| MatchReport {
            claimed: true,
            decided,
            ..MatchReport::default()
        };
        // Draining a burst: every step takes all it may.
        assert!(has_backlog(&step(MATCH_BATCH), MATCH_BATCH));
        // A steady flow the matcher keeps up with: steps of a few hundred.
        assert!(!has_backlog(&step(600), MATCH_BATCH));
        // After failures the steps are smaller, and so is a backlog's step.
        assert!(has_backlog(&step(MIN_MATCH_BATCH), MIN_MATCH_BATCH));
        assert!(!has_backlog(&MatchReport::default(), MATCH_BATCH));
    }
}
