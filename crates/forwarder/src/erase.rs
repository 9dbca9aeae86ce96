//! Erasing a person (`POST /v1/persons/erase`): the forwarder's part. The dispatches of erased
//! events stay as the record of what was sent, when, and how it ended, but keep nothing else:
//! their payload and routing (the conversion as routed, with the person's data: their
//! `dispatch_payloads` row) are deleted, their errors, reasons and the attempts' errors are
//! cleared, and so is the response excerpt of every platform request that carried one of them
//! (an answer shared by a batch may name the person). A dispatch still waiting (`queued`,
//! `retrying`) is `cancelled` (reason `person erased`): there is nothing left to send. One in
//! flight keeps its worker's real outcome, and should its worker vanish, the next claim finds
//! nothing to send and fails it.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::Result;

/// The reason of a dispatch cancelled because its person was erased.
pub const ERASED: &str = "person erased";

/// The dispatches are locked in id order first, as an operator's replay locks them: the two
/// deadlocked once, each holding a row the other wanted next.
const STRIP: &str = "
    WITH target AS (
        SELECT workspace_id, id FROM dispatches
        WHERE workspace_id = $1 AND event_id = ANY($2::uuid[])
        ORDER BY id
        FOR UPDATE
    ), stripped AS (
        UPDATE dispatches d SET
            status = CASE WHEN d.status IN ('queued', 'retrying') THEN 'cancelled' ELSE d.status END,
            reason = CASE WHEN d.status IN ('queued', 'retrying') THEN $3 END,
            retract_reason = NULL,
            last_error = NULL,
            updated_at = now()
        FROM target t
        WHERE d.workspace_id = t.workspace_id AND d.id = t.id
        RETURNING d.workspace_id, d.id
    ), payloads AS (
        DELETE FROM dispatch_payloads p USING stripped s
        WHERE p.workspace_id = s.workspace_id AND p.dispatch_id = s.id
    ), attempts AS (
        UPDATE dispatch_attempts a SET error = NULL
        FROM stripped s
        WHERE a.workspace_id = s.workspace_id AND a.dispatch_id = s.id
    ), requests AS (
        UPDATE dispatch_requests q SET response_excerpt = NULL
        FROM stripped s, dispatch_attempts a
        WHERE a.workspace_id = s.workspace_id AND a.dispatch_id = s.id
          AND q.workspace_id = a.workspace_id AND q.id = a.request_id
    )
    SELECT count(*) FROM stripped";

/// Strips the dispatches of the erased `events` (and their attempts) down to ids, status and
/// times, in the caller's transaction. Answers how many dispatches that was.
pub async fn strip_dispatches(
    client: &impl GenericClient,
    workspace_id: Uuid,
    events: &[Uuid],
) -> Result<u64> {
    if events.is_empty() {
        return Ok(0);
    }
    let stmt = client.prepare_cached(STRIP).await?;
    let n: i64 = client
        .query_one(&stmt, &[&workspace_id, &events, &ERASED])
        .await?
        .try_get(0)?;
    Ok(u64::try_from(n).unwrap_or(0))
}
