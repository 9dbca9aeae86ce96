//! The matcher's work queue, and how a worker claims a step of it.
//!
//! Three kinds of work, all per workspace:
//! - newly stored events, queued by [`enqueue`] inside the ingest transaction, one row per
//!   transaction and workspace holding its events in arrival order (so a queue row costs the
//!   same for one event as for two thousand);
//! - newly registered clicks, queued by [`crate::register_clicks`]; a claim files each into the
//!   identity graph (as a click of the person who named its clickId, if anyone did) and turns it
//!   into re-checks of that person's pending events it may match;
//! - pending events: those a later event linked to new clicks (queued by [`crate::decide()`]), and
//!   those whose pending window is over.
//!
//! [`claim`] picks the workspace with the oldest work that no other worker holds, takes its
//! transaction-scoped advisory lock (`pg_try_advisory_xact_lock`), and deletes that workspace's
//! oldest queue rows (looking at a few dozen first: whoever changes a workspace's rows holds its
//! lock). One worker at a time works on a workspace, so its events are attributed in arrival
//! order and its identity graph has one writer (a large claim may be decided in parts that share
//! nothing: see [`crate::split`]); other workspaces go to other workers. Everything happens in
//! the caller's transaction: if the worker dies before it commits, the rows are back and the
//! lock is gone.

use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Result;

/// The work of one step: events of one workspace to attribute or look at again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The workspace, locked for the rest of the caller's transaction.
    pub workspace_id: Uuid,
    /// The events to hand to [`crate::decide()`], in arrival order (UUIDv7 order), without
    /// duplicates. May be empty when the step only filed registered clicks.
    pub event_ids: Vec<Uuid>,
    /// Whether other workspaces had work too when this one was claimed (so a worker should not
    /// pause before its next claim).
    pub others_waiting: bool,
    /// Whether the claiming transaction holds rows beyond the queue's: pending events whose
    /// window is over (locked), or registered clicks it filed (updated). Such a claim is decided
    /// in that transaction, whole: another transaction touching those rows would wait for it.
    pub holds_rows: bool,
    /// Whether it filed registered clicks into the graph (their identity rows now own them).
    pub filed_clicks: bool,
}

/// Counts for metrics and for telling whether the matcher keeps up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Work waiting in the queue (events, clicks, re-checks), all workspaces.
    pub queued: i64,
    /// When the oldest of them was queued.
    pub oldest_queued_at: Option<OffsetDateTime>,
    /// Events waiting in the pending window for a late link.
    pub pending: i64,
}

/// One row per workspace, its events in the order given, the workspaces in order of their first
/// event.
const ENQUEUE: &str = "
    INSERT INTO match_queue (workspace_id, event_ids)
    SELECT workspace_id, array_agg(event_id ORDER BY n)
    FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS t(workspace_id, event_id, n)
    GROUP BY workspace_id
    ORDER BY min(n)";

/// Queues newly stored events, given as `(workspace_id, event_id)` in arrival order, for the
/// matcher. Meant for the ingest transaction: one row per workspace, one statement.
pub async fn enqueue(client: &impl GenericClient, arrivals: &[(Uuid, Uuid)]) -> Result<()> {
    if arrivals.is_empty() {
        return Ok(());
    }
    let workspaces: Vec<Uuid> = arrivals.iter().map(|(workspace, _)| *workspace).collect();
    let events: Vec<Uuid> = arrivals.iter().map(|(_, event)| *event).collect();
    let statement = client.prepare_cached(ENQUEUE).await?;
    client.execute(&statement, &[&workspaces, &events]).await?;
    Ok(())
}

/// The workspaces with the oldest work, skipping those in $1: queued rows by queueing time (then
/// queue order: rows queued by one transaction share a time), expired pending events by the end
/// of their window.
const CANDIDATES: &str = "
    SELECT workspace_id, min(since) AS since, min(queued) AS queued FROM (
        (SELECT workspace_id, enqueued_at AS since, id AS queued FROM match_queue
         WHERE workspace_id <> ALL($1)
         ORDER BY id LIMIT $3)
        UNION ALL
        (SELECT workspace_id, pending_until AS since, NULL::bigint AS queued FROM attributions
         WHERE status = 'pending' AND pending_until <= $2 AND workspace_id <> ALL($1)
         ORDER BY pending_until LIMIT $3)
    ) AS work
    GROUP BY workspace_id
    ORDER BY since, queued NULLS LAST
    LIMIT $3";

/// How many candidate rows one look at the queue reads.
const CANDIDATE_ROWS: i64 = 64;

/// How many looks a claim takes before it concludes that every workspace with work is held.
const CANDIDATE_ROUNDS: usize = 4;

const TRY_LOCK: &str = "
    SELECT pg_try_advisory_xact_lock(hashtextextended('attribution-matcher:' || ($1::uuid)::text, 0))";

/// The workspace's oldest queue rows, at most $2, with the events each holds (a click counts one).
const PEEK_QUEUED: &str = "
    SELECT id, coalesce(cardinality(event_ids), 1)::bigint FROM match_queue
    WHERE workspace_id = $1
    ORDER BY id LIMIT $2";

/// Takes the chosen queue rows. Whoever changes a workspace's queue rows holds its lock (claims
/// and erasures), so the rows peeked at are still there and nobody else holds them.
const TAKE_QUEUED: &str = "
    DELETE FROM match_queue
    WHERE workspace_id = $1 AND id = ANY($2::bigint[])
    RETURNING id, event_ids, click_identifier";

/// Queue rows a claim looks at first: a busy workspace's rows hold a request's events each, so a
/// few dozen fill a step; the look widens when they hold fewer.
const PEEK_ROWS: i64 = 32;

const TAKE_EXPIRED: &str = "
    SELECT event_id FROM attributions
    WHERE workspace_id = $1 AND status = 'pending' AND pending_until <= $2
    ORDER BY pending_until LIMIT $3
    FOR UPDATE SKIP LOCKED";

/// Files registered clicks as clicks of the person who named them, when someone did: the
/// `clickId` identity row owns the click from then on. Answers the person each now belongs to
/// (the survivor, when that person was merged into another).
const FILE_CLICKS: &str = "
    WITH filed AS (
        UPDATE identities AS i SET clicked_at = c.clicked_at
        FROM unnest($2::bytea[]) AS q(identifier)
        JOIN clicks c ON c.workspace_id = $1 AND c.identifier = q.identifier
        WHERE i.workspace_id = $1 AND i.identifier = c.identifier AND i.clicked_at IS NULL
        RETURNING i.person_id, i.clicked_at, i.identifier
    )
    SELECT coalesce(p.merged_into, f.person_id), f.clicked_at, f.identifier
    FROM filed f
    LEFT JOIN persons p ON p.workspace_id = $1 AND p.person_id = f.person_id";

/// Pending events that newly filed clicks may match: the click happened before the event, or
/// the event named it.
const PENDING_FOR_CLICKS: &str = "
    SELECT DISTINCT a.event_id
    FROM unnest($2::uuid[], $3::timestamptz[], $4::bytea[]) AS g(person_id, clicked_at, identifier)
    JOIN attributions a
      ON a.workspace_id = $1 AND a.status = 'pending' AND a.person_id = g.person_id
     AND (a.occurred_at >= g.clicked_at OR a.named_click = g.identifier)";

/// [`claim_at`] now.
pub async fn claim(client: &impl GenericClient, limit: usize) -> Result<Option<Claim>> {
    claim_at(client, limit, OffsetDateTime::now_utc()).await
}

/// Claims the oldest work of one workspace that no other worker holds, for the rest of the
/// caller's transaction; `None` when there is nothing to claim. `now` decides which pending
/// windows are over.
///
/// At most `limit` events are taken: expired pending events (a quarter of `limit` at most, at
/// least one, so that a busy workspace still expires its pending events), then queued ones — all
/// of a queue row or none of it, except that the oldest row is taken whole even when it holds
/// more; a registered click counts one and may add the pending events it may match on top.
///
/// Run it in a transaction at READ COMMITTED (the default) and call [`crate::decide()`] in the
/// same transaction before committing: the claimed rows are deleted here, so committing without
/// deciding drops them.
pub async fn claim_at(
    client: &impl GenericClient,
    limit: usize,
    now: OffsetDateTime,
) -> Result<Option<Claim>> {
    if limit == 0 {
        return Ok(None);
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let candidates = client.prepare_cached(CANDIDATES).await?;
    let try_lock = client.prepare_cached(TRY_LOCK).await?;
    let mut held: Vec<Uuid> = Vec::new();
    for _ in 0..CANDIDATE_ROUNDS {
        let rows = client
            .query(&candidates, &[&held, &now, &CANDIDATE_ROWS])
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let count = rows.len();
        for (index, row) in rows.into_iter().enumerate() {
            let workspace_id: Uuid = row.try_get(0)?;
            let locked: bool = client
                .query_one(&try_lock, &[&workspace_id])
                .await?
                .try_get(0)?;
            if !locked {
                held.push(workspace_id);
                continue;
            }
            if let Some(mut claim) = take(client, workspace_id, limit, now).await? {
                claim.others_waiting = index + 1 < count;
                return Ok(Some(claim));
            }
            // Another worker emptied it between the look and the lock; the lock is harmless.
            held.push(workspace_id);
        }
    }
    Ok(None)
}

/// Takes the work of a workspace whose lock this transaction holds.
async fn take(
    client: &impl GenericClient,
    workspace_id: Uuid,
    limit: i64,
    now: OffsetDateTime,
) -> Result<Option<Claim>> {
    let expired_budget = (limit / 4).max(1);
    let take_expired = client.prepare_cached(TAKE_EXPIRED).await?;
    let mut event_ids: Vec<Uuid> = client
        .query(&take_expired, &[&workspace_id, &now, &expired_budget])
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;

    let queue_budget = limit.saturating_sub(i64::try_from(event_ids.len()).unwrap_or(limit));
    let chosen = choose_queued(client, workspace_id, queue_budget).await?;
    let queued = if chosen.is_empty() {
        Vec::new()
    } else {
        let take_queued = client.prepare_cached(TAKE_QUEUED).await?;
        client
            .query(&take_queued, &[&workspace_id, &chosen])
            .await?
    };
    if event_ids.is_empty() && queued.is_empty() {
        return Ok(None);
    }
    let holds_rows = !event_ids.is_empty();
    let mut clicks: Vec<Vec<u8>> = Vec::new();
    for row in &queued {
        if let Some(group) = row.try_get::<_, Option<Vec<Uuid>>>(1)? {
            event_ids.extend(group);
        }
        if let Some(identifier) = row.try_get::<_, Option<Vec<u8>>>(2)? {
            clicks.push(identifier);
        }
    }
    let filed_clicks = !clicks.is_empty();
    let holds_rows = holds_rows || filed_clicks;
    if filed_clicks {
        event_ids.extend(file_clicks(client, workspace_id, &clicks).await?);
    }
    event_ids.sort_unstable();
    event_ids.dedup();
    Ok(Some(Claim {
        workspace_id,
        event_ids,
        others_waiting: false,
        holds_rows,
        filed_clicks,
    }))
}

/// The ids of the workspace's oldest queue rows holding at most `budget` events in all (and
/// always the oldest row, however many it holds); none when `budget` is 0.
async fn choose_queued(
    client: &impl GenericClient,
    workspace_id: Uuid,
    budget: i64,
) -> Result<Vec<i64>> {
    if budget <= 0 {
        return Ok(Vec::new());
    }
    let peek = client.prepare_cached(PEEK_QUEUED).await?;
    let mut rows = PEEK_ROWS.min(budget);
    loop {
        let peeked = client.query(&peek, &[&workspace_id, &rows]).await?;
        let mut chosen = Vec::with_capacity(peeked.len());
        let mut events: i64 = 0;
        for row in &peeked {
            if events >= budget {
                return Ok(chosen);
            }
            events = events.saturating_add(row.try_get::<_, i64>(1)?);
            chosen.push(row.try_get::<_, i64>(0)?);
        }
        let all = i64::try_from(peeked.len()).unwrap_or(i64::MAX) < rows;
        if events >= budget || all || rows >= budget {
            return Ok(chosen);
        }
        rows = rows.saturating_mul(4).min(budget);
    }
}

/// Files newly registered clicks into the graph; answers the pending events to look at again.
async fn file_clicks(
    client: &impl GenericClient,
    workspace_id: Uuid,
    identifiers: &[Vec<u8>],
) -> Result<Vec<Uuid>> {
    let file = client.prepare_cached(FILE_CLICKS).await?;
    let filed = client.query(&file, &[&workspace_id, &identifiers]).await?;
    if filed.is_empty() {
        return Ok(Vec::new());
    }
    let mut persons: Vec<Uuid> = Vec::with_capacity(filed.len());
    let mut clicked_at: Vec<OffsetDateTime> = Vec::with_capacity(filed.len());
    let mut owners: Vec<Vec<u8>> = Vec::with_capacity(filed.len());
    for row in &filed {
        persons.push(row.try_get(0)?);
        clicked_at.push(row.try_get(1)?);
        owners.push(row.try_get(2)?);
    }
    let pending = client.prepare_cached(PENDING_FOR_CLICKS).await?;
    client
        .query(&pending, &[&workspace_id, &persons, &clicked_at, &owners])
        .await?
        .iter()
        .map(|row| Ok(row.try_get(0)?))
        .collect()
}

const STATS: &str = "
    SELECT (SELECT coalesce(sum(coalesce(cardinality(event_ids), 1)), 0)::bigint FROM match_queue),
           (SELECT enqueued_at FROM match_queue ORDER BY id LIMIT 1),
           (SELECT count(*) FROM attributions WHERE status = 'pending')";

/// How much work waits, over all workspaces.
pub async fn queue_stats(client: &impl GenericClient) -> Result<QueueStats> {
    let statement = client.prepare_cached(STATS).await?;
    let row = client.query_one(&statement, &[]).await?;
    Ok(QueueStats {
        queued: row.try_get(0)?,
        oldest_queued_at: row.try_get(1)?,
        pending: row.try_get(2)?,
    })
}
