//! Erasing a person (`POST /v1/persons/erase`): the dedup records of the erased events go with
//! them.
//!
//! - Natural keys: an erased event's `invoiceId` / `leadId` is released, so that a later event
//!   with the same key is accepted as new. "Exactly once" holds over the events the workspace
//!   keeps: once an event is erased (or dropped by retention) nothing of it remains to be a
//!   duplicate of, and keeping its key would keep a trace of it.
//! - Idempotency-Key answers: a kept answer that names an erased event (or an erased click) is
//!   deleted, request fingerprint and body together; a replay of that key is then a new request.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::Result;

const FORGET_NATURAL_KEYS: &str = "
    DELETE FROM natural_keys k
    USING unnest($2::bytea[], $3::uuid[]) AS q(digest, event_id)
    WHERE k.workspace_id = $1 AND k.digest = q.digest AND k.event_id = q.event_id";

/// Releases the natural keys `(kind, key)` of erased events (`event_id` the event that held
/// each), by primary key. Answers how many were released.
pub async fn forget_natural_keys(
    client: &impl GenericClient,
    workspace_id: Uuid,
    keys: &[(&str, &str, Uuid)],
) -> Result<u64> {
    if keys.is_empty() {
        return Ok(0);
    }
    let digests: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| crate::natural::digest(k.0, k.1))
        .collect();
    let events: Vec<Uuid> = keys.iter().map(|k| k.2).collect();
    let stmt = client.prepare_cached(FORGET_NATURAL_KEYS).await?;
    Ok(client
        .execute(&stmt, &[&workspace_id, &digests, &events])
        .await?)
}

/// Kept answers are few (they expire after a day by default): a pass over the workspace's.
const FORGET_RESPONSES: &str = "
    DELETE FROM idempotency_keys k
    WHERE k.workspace_id = $1
      AND EXISTS (SELECT 1 FROM unnest($2::text[]) AS q(needle)
                  WHERE position(convert_to(q.needle, 'UTF8') IN k.response_body) > 0)";

/// Deletes the workspace's kept Idempotency-Key answers whose body names one of `ids` (wire
/// ids such as `evt_…`, or click ids). Answers how many went.
pub async fn forget_responses(
    client: &impl GenericClient,
    workspace_id: Uuid,
    ids: &[String],
) -> Result<u64> {
    let ids: Vec<&str> = ids
        .iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let stmt = client.prepare_cached(FORGET_RESPONSES).await?;
    Ok(client.execute(&stmt, &[&workspace_id, &ids]).await?)
}
