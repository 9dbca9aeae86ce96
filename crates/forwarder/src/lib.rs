//! The forwarder: destinations and their sealed credentials, the durable dispatch queue and its
//! workers. The platform clients live in the `platforms` crate, behind one trait; the forwarder
//! drives every platform through its adapter the same way and never names one.
//!
//! The flow: the attribution step calls [`enqueue`] in its own transaction, which turns each
//! routed conversion into one dispatch per subscribed destination. A [`Forwarder`] claims due
//! dispatches in short transactions (`FOR UPDATE SKIP LOCKED`, with a lease), sends them outside
//! any transaction, in batches, and records every attempt and the new status under the lease it
//! claimed them with. Operators read and replay dispatches through [`views`].
//!
//! Every table is keyed by `workspace_id` first, and every function takes the workspace it acts
//! for: no function reads or changes another workspace's rows.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod backfill;
pub mod crypto;
pub mod destinations;
pub mod erase;
mod error;
pub mod health;
pub mod pacing;
pub mod queue;
pub mod restatement;
pub mod retention;
pub mod views;
pub mod worker;

pub use platforms::{self, ids, model};

pub use backfill::{get_backfill, plan_backfill, start_backfill, BackfillView, PlannedBackfill};
pub use crypto::Cipher;
pub use destinations::{
    create_destination, delete_destination, get_destination, has_destinations, list_destinations,
    update_destination, Credentials, Destination, DestinationConfig, DestinationView,
};
pub use error::{Error, Result};
pub use health::{delivery_health, HealthInterval, HealthRow};
pub use platforms::{Endpoints, RetryPolicy};
pub use queue::{
    enqueue, enqueue_with_catalog, CatalogRule, CatalogRules, DispatchKind, DispatchStatus,
};
pub use restatement::{
    current_values, restate, value_history, NewValue, RestateReport, RestateTarget, ValueEntry,
};
pub use views::{
    confirmation_gauges, dispatch_stats, dispatches_for_event, get_dispatch, list_dispatches,
    queue_gauges, retract, retry_dispatch, retry_dispatches, AttemptView, Confirmation,
    DestinationStats, DispatchDetail, DispatchFilter, DispatchSummary, DispatchView, QueueGauge,
    RetractReport, Stats,
};
pub use worker::{ConfirmationReport, DispatchReport, Forwarder, ForwarderConfig};

use serde::Serialize;

/// A page of a list: `{"data": [...], "nextCursor": "…" | null}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// The items, newest first.
    pub data: Vec<T>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The name of this crate's migration history table.
pub const MIGRATION_TABLE: &str = "forwarder_schema_history";

/// Applies this crate's pending migrations (forward only).
///
/// # Errors
/// [`Error::Migration`].
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<()> {
    embedded::migrations::runner()
        .set_migration_table_name(MIGRATION_TABLE)
        .run_async(client)
        .await?;
    Ok(())
}

/// The migrations this crate embeds, as `(version, name, checksum)`; used to tell whether a database is current.
pub fn migrations() -> Vec<(i32, String, u64)> {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| (m.version(), m.name().to_owned(), m.checksum()))
        .collect()
}
