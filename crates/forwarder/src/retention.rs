//! Retention: the forwarder's part. The dispatch tables are partitioned by month as the events
//! are ([`PARTITIONED`]): a dispatch's id begins with its event's time, so `dispatches`, their
//! attempts and their payloads are partitioned on it with the events' bounds, and a month of them
//! is dropped whole with its month of events; the platform requests are partitioned on their own
//! id (the time they were made, never before the attempts they decided) and go by their months.
//! What an older, wider partition still holds goes by range before the journal drops a month of
//! events ([`forget_dispatches`]), with the upload checks and value histories of that month.
//! Also the workspace's stored counts for `GET /v1/usage` ([`usage`]).

use deadpool_postgres::GenericClient;
use journal::retention::MonthlyTable;
use uuid::Uuid;

use crate::Result;

/// Dispatches, on their id (which begins with their event's time). A dispatch row gets two new
/// versions on its way out (claimed, then recorded): room left on each page keeps them beside it.
pub const DISPATCHES: MonthlyTable = MonthlyTable {
    name: "dispatches",
    key: "id",
    options: "WITH (fillfactor = 70)",
};

/// The dispatches' attempts, on their dispatch's id.
pub const ATTEMPTS: MonthlyTable = MonthlyTable {
    name: "dispatch_attempts",
    key: "dispatch_id",
    options: "",
};

/// The dispatches' payloads, on their dispatch's id.
pub const PAYLOADS: MonthlyTable = MonthlyTable {
    name: "dispatch_payloads",
    key: "dispatch_id",
    options: "",
};

/// The platform requests, on their own id (a UUIDv7 of when they were made).
pub const REQUESTS: MonthlyTable = MonthlyTable {
    name: "dispatch_requests",
    key: "id",
    options: "",
};

/// The forwarder's tables partitioned by month.
pub const PARTITIONED: [MonthlyTable; 4] = [DISPATCHES, ATTEMPTS, PAYLOADS, REQUESTS];

/// What is left, in a partition created wider than a month (the legacy one of the rows stored
/// before partitioning, or the default one), of the dispatches of events whose id sorts before
/// `$2`: one range of `dispatches_by_event`, and the payloads and attempts of the rows it deleted
/// by their primary key. Then the requests made before `$2`'s time (their attempts are gone: a
/// request is never older than the attempts it decided), the upload checks made before `$3`
/// (final a day after they are made), and the value histories of those events.
const FORGET: &str = "
    WITH gone AS (
        DELETE FROM dispatches WHERE workspace_id = $1 AND event_id < $2
        RETURNING workspace_id, id
    ), payloads AS (
        DELETE FROM dispatch_payloads p USING gone g
        WHERE p.workspace_id = g.workspace_id AND p.dispatch_id = g.id
    ), attempts AS (
        DELETE FROM dispatch_attempts a USING gone g
        WHERE a.workspace_id = g.workspace_id AND a.dispatch_id = g.id
    ), requests AS (
        DELETE FROM dispatch_requests WHERE workspace_id = $1 AND id < $2
    ), checks AS (
        DELETE FROM upload_checks WHERE workspace_id = $1 AND created_at < $3
    ), restated AS (
        DELETE FROM event_values WHERE workspace_id = $1 AND event_id < $2
    )
    SELECT count(*) FROM gone";

/// Deletes what is left of one workspace's dispatches (with their payloads and attempts) of
/// events whose id sorts before `before` (the upper bound of a partition the journal is about to
/// drop), and its requests, upload checks and value histories older than that. Answers how many
/// dispatches went.
pub async fn forget_dispatches(
    client: &impl GenericClient,
    workspace_id: Uuid,
    before: Uuid,
) -> Result<i64> {
    let stmt = client.prepare_cached(FORGET).await?;
    Ok(client
        .query_one(
            &stmt,
            &[&workspace_id, &before, &journal::retention::time_of(before)],
        )
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
