//! Retention: the forwarder's part. Before the journal drops a month of events, their
//! dispatches, their payloads, attempts and upload checks go ([`forget_dispatches`]). Also the workspace's
//! stored counts for `GET /v1/usage` ([`usage`]).

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::Result;

/// One range of the (workspace_id, event_id, …) unique index, the payloads and attempts of the
/// rows it deleted by their primary key, the platform requests whose every conversion was of an
/// event of the range (their last event is in it), and the upload checks of the requests that
/// carried only dispatches of the range (a request that also carried a later event's dispatch
/// keeps its check until that one goes; every statement here sees the rows as they were before
/// it, so "a dispatch that stays" is one of an event from `$2` on).
const FORGET: &str = "
    WITH gone AS (
        DELETE FROM dispatches WHERE workspace_id = $1 AND event_id < $2
        RETURNING workspace_id, id, destination_id, confirmation_request
    ), checks AS (
        DELETE FROM upload_checks c
        USING (SELECT DISTINCT destination_id, confirmation_request FROM gone
               WHERE confirmation_request IS NOT NULL) AS g
        WHERE c.workspace_id = $1 AND c.destination_id = g.destination_id
          AND c.request_id = g.confirmation_request
          AND NOT EXISTS (
              SELECT 1 FROM dispatches d
              WHERE d.workspace_id = $1 AND d.destination_id = g.destination_id
                AND d.confirmation_request = g.confirmation_request AND d.event_id >= $2)
    ), payloads AS (
        DELETE FROM dispatch_payloads p USING gone g
        WHERE p.workspace_id = g.workspace_id AND p.dispatch_id = g.id
    ), attempts AS (
        DELETE FROM dispatch_attempts a USING gone g
        WHERE a.workspace_id = g.workspace_id AND a.dispatch_id = g.id
    ), requests AS (
        DELETE FROM dispatch_requests WHERE workspace_id = $1 AND last_event_id < $2
    )
    SELECT count(*) FROM gone";

/// Deletes one workspace's dispatches (with their payloads, attempts, requests and upload checks) of events
/// whose id sorts before `before` (the upper bound of a partition the journal is about to drop).
/// Answers how many dispatches went.
pub async fn forget_dispatches(
    client: &impl GenericClient,
    workspace_id: Uuid,
    before: Uuid,
) -> Result<i64> {
    let stmt = client.prepare_cached(FORGET).await?;
    Ok(client
        .query_one(&stmt, &[&workspace_id, &before])
        .await?
        .try_get(0)?)
}

/// The forwarder's stored counts of one workspace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchUsage {
    /// Dispatches.
    pub dispatches: i64,
    /// Their attempts.
    pub attempts: i64,
}

const USAGE: &str = "
    SELECT (SELECT count(*) FROM dispatches WHERE workspace_id = $1),
           (SELECT count(*) FROM dispatch_attempts WHERE workspace_id = $1)";

/// Counts one workspace's dispatches and attempts.
pub async fn usage(client: &impl GenericClient, workspace_id: Uuid) -> Result<DispatchUsage> {
    let stmt = client.prepare_cached(USAGE).await?;
    let row = client.query_one(&stmt, &[&workspace_id]).await?;
    Ok(DispatchUsage {
        dispatches: row.try_get(0)?,
        attempts: row.try_get(1)?,
    })
}
