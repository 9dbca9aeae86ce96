//! Retention: when the journal drops a month of events, their conversions' rows go with them:
//! `report_conversions` is partitioned by month as the events are ([`CONVERSIONS`]), so a month of
//! them is dropped whole, and what an older, wider partition still holds goes by range
//! ([`forget_conversions`]).
//!
//! The rollups stay: they hold counts and sums per day and group, nothing of a person, so reports
//! over a period past retention keep the totals they had.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::Result;

/// The conversions' report rows, partitioned by month on their event's id, with the bounds of
/// the events'.
pub const CONVERSIONS: journal::retention::MonthlyTable = journal::retention::MonthlyTable {
    name: "report_conversions",
    key: "event_id",
    options: "",
};

/// Conversions (with their touches) of events with ids below `before` (UUIDv7: received before
/// the time its first 48 bits hold), for one workspace; answers how many conversions went.
const FORGET: &str = "DELETE FROM report_conversions WHERE workspace_id = $1 AND event_id < $2";

/// Removes the conversions and their touches of `workspace_id`'s events below `before`.
pub async fn forget_conversions(
    client: &impl GenericClient,
    workspace_id: Uuid,
    before: Uuid,
) -> Result<u64> {
    let statement = client.prepare_cached(FORGET).await?;
    Ok(client
        .execute(&statement, &[&workspace_id, &before])
        .await?)
}
