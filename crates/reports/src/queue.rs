//! The report stage's queue: conversions decided by the matcher, waiting for their credit.
//!
//! The matcher's step adds the conversions it decides, in its own transaction (so a decision is
//! never lost to reports); the report stage takes a batch of one workspace, shares their credit
//! and removes them, in one transaction: a failed batch stays queued.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::Result;

const QUEUE: &str = "
    INSERT INTO credit_queue (workspace_id, event_id)
    SELECT $1, id FROM unnest($2::uuid[]) AS q(id)
    ON CONFLICT DO NOTHING";

/// Queues `event_ids` of `workspace_id` for credit.
pub async fn queue(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_ids: &[Uuid],
) -> Result<()> {
    if event_ids.is_empty() {
        return Ok(());
    }
    let statement = client.prepare_cached(QUEUE).await?;
    client
        .execute(&statement, &[&workspace_id, &event_ids])
        .await?;
    Ok(())
}

/// One workspace's queued conversions, at most `$1`, locked and removed (the caller's
/// transaction keeps them until it commits); rows another stage holds are skipped. Both reads
/// walk the primary key in order, so that a claim costs the same however long the queue is (a
/// join with the picked workspace let the planner read and sort the whole queue every time).
const CLAIM: &str = "
    WITH picked AS (
        SELECT workspace_id FROM credit_queue
        ORDER BY workspace_id, event_id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ), locked AS (
        SELECT workspace_id, event_id FROM credit_queue
        WHERE workspace_id = (SELECT workspace_id FROM picked)
        ORDER BY workspace_id, event_id
        LIMIT $1
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM credit_queue c USING locked l
    WHERE c.workspace_id = l.workspace_id AND c.event_id = l.event_id
    RETURNING c.workspace_id, c.event_id";

/// Takes up to `limit` queued conversions of one workspace, in the caller's transaction.
pub async fn claim(client: &impl GenericClient, limit: i64) -> Result<Option<(Uuid, Vec<Uuid>)>> {
    let statement = client.prepare_cached(CLAIM).await?;
    let rows = client.query(&statement, &[&limit]).await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let workspace_id: Uuid = first.try_get(0)?;
    let mut ids = Vec::with_capacity(rows.len());
    for row in &rows {
        ids.push(row.try_get(1)?);
    }
    ids.sort_unstable();
    Ok(Some((workspace_id, ids)))
}
