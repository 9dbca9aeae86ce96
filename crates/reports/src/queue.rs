//! The report stage's queue: conversions decided by the matcher, waiting for their credit.
//!
//! The matcher's step adds the conversions it decides, in its own transaction (so a decision is
//! never lost to reports), as one row holding them all; the report stage takes up to a batch of
//! one workspace's oldest, shares their credit and removes them, in one transaction: a failed
//! batch stays queued. A conversion decided again (a pending one matched late) is queued again
//! and credited again; crediting replaces its earlier credit.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::Result;

const QUEUE: &str = "
    INSERT INTO credit_batches (workspace_id, event_ids) VALUES ($1, $2)";

/// Queues `event_ids` of `workspace_id` for credit: one row, whatever their number.
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

/// The oldest rows (`$2` at most) of the workspace with the oldest row nobody holds, holding at
/// most `$1` conversions before each (so the last may hold more than are taken), locked for the
/// caller's transaction; rows another stage holds are skipped.
const CLAIM: &str = "
    WITH oldest AS (
        SELECT workspace_id FROM credit_batches ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
    ), locked AS (
        SELECT b.id, b.event_ids FROM credit_batches b JOIN oldest USING (workspace_id)
        ORDER BY b.id
        LIMIT $2
        FOR UPDATE OF b SKIP LOCKED
    ), counted AS (
        SELECT id, event_ids, cardinality(event_ids) AS n,
               sum(cardinality(event_ids)) OVER (ORDER BY id) - cardinality(event_ids) AS before
        FROM locked
    )
    SELECT (SELECT workspace_id FROM oldest), id, event_ids, before, n FROM counted
    WHERE before < $1
    ORDER BY id";

/// Rows a claim locks first: a batch holds a matcher step's conversions, hundreds of them, so a
/// few fill a step; the claim widens when they hold fewer (it locked and read up to `limit` rows
/// of thousands of conversions each before, some 7 ms a step).
const CLAIM_ROWS: i64 = 4;

const TAKE_WHOLE: &str = "
    DELETE FROM credit_batches WHERE workspace_id = $1 AND id = ANY($2::bigint[])";

const TAKE_PART: &str = "
    UPDATE credit_batches SET event_ids = event_ids[$3 + 1:]
    WHERE workspace_id = $1 AND id = $2";

/// Takes up to `limit` queued conversions of one workspace, oldest first and without repeats,
/// in the caller's transaction.
pub async fn claim(client: &impl GenericClient, limit: i64) -> Result<Option<(Uuid, Vec<Uuid>)>> {
    let limit = limit.max(1);
    let statement = client.prepare_cached(CLAIM).await?;
    let mut batches = CLAIM_ROWS.min(limit);
    let rows = loop {
        let rows = client.query(&statement, &[&limit, &batches]).await?;
        let full = match rows.last() {
            Some(last) => {
                last.try_get::<_, i64>(3)? + i64::from(last.try_get::<_, i32>(4)?) >= limit
            }
            None => true,
        };
        if full || i64::try_from(rows.len()).unwrap_or(i64::MAX) < batches || batches >= limit {
            break rows;
        }
        batches = batches.saturating_mul(4).min(limit);
    };
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let workspace_id: Uuid = first.try_get(0)?;
    let mut ids = Vec::new();
    let mut whole = Vec::with_capacity(rows.len());
    let mut part = None;
    for row in &rows {
        let id: i64 = row.try_get(1)?;
        let event_ids: Vec<Uuid> = row.try_get(2)?;
        let before: i64 = row.try_get(3)?;
        let room = usize::try_from(limit - before).unwrap_or(0);
        if event_ids.len() <= room {
            whole.push(id);
            ids.extend(event_ids);
        } else {
            part = Some((id, i32::try_from(room).unwrap_or(i32::MAX)));
            ids.extend(event_ids.into_iter().take(room));
        }
    }
    if !whole.is_empty() {
        let statement = client.prepare_cached(TAKE_WHOLE).await?;
        client.execute(&statement, &[&workspace_id, &whole]).await?;
    }
    if let Some((id, taken)) = part {
        let statement = client.prepare_cached(TAKE_PART).await?;
        client
            .execute(&statement, &[&workspace_id, &id, &taken])
            .await?;
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(Some((workspace_id, ids)))
}
