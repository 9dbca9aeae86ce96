//! Reports: which sources brought the conversions, under five attribution models, at any scale.
//!
//! - [`shares`]: how a conversion's credit is shared among its touches (last click, first click,
//!   linear, position based 40/20/40, time decay with a 7-day half-life); pure.
//! - [`credit`]: the stage the pipeline runs behind the matcher: each decided conversion's
//!   touches in its window are read once (bounded index scans), their shares stored, and the
//!   conversion added to per-day rollups; retractions and value changes adjust the rollups.
//! - [`touches`]: what credit needs of a click (when, and its groups), and the stage's cache of
//!   the clicks events carried.
//! - [`clicks`]: registered clicks per day and group.
//! - [`query`]: `GET /v1/reports/conversions` from the rollups (and its CSV form).
//! - [`tier`]: macro and micro conversions.
//!
//! The crate owns `report_conversions` (each conversion with its touches), `report_rollups`,
//! `report_histograms` and `report_clicks`; every key starts with `workspace_id`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod clicks;
pub mod credit;
pub mod query;
pub mod queue;
pub mod retention;
pub mod shares;
mod stored;
pub mod tier;
pub mod touches;

pub use clicks::count_clicks;
pub use credit::{
    apply_value_change, conversion_tier, credit, credit_one, erase, refresh, retract, shares_of,
    Conversion, Credited, Decided, MAX_TOUCHES,
};
pub use query::{conversions, to_csv, GroupBy, Interval, Report, ReportQuery, ReportRow};
pub use shares::{channel, channel_of, Model};
pub use tier::{conversion_tiers, Tier};
pub use touches::{ClickCache, ClickGroups, Touch};

/// The key of rows for conversions with no value to group by (no utm campaign, say).
pub const NONE_KEY: &str = "(none)";

/// Errors of the reports crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed.
    #[error("database error")]
    Database(#[from] tokio_postgres::Error),
    /// A migration failed.
    #[error("migration failed")]
    Migration(#[from] refinery::Error),
    /// The matcher could not read a conversion's touches.
    #[error("reading the touches of conversions failed")]
    Touches(#[from] attribution_matcher::Error),
    /// A conversion's contribution to the rollups is too large to be summed exactly.
    #[error("a rollup sum is too large to be exact")]
    Overflow,
    /// A conversion's stored touches cannot be read (written by an incompatible version, or
    /// edited by hand).
    #[error("the stored touches of conversion {event_id} cannot be read")]
    StoredTouches {
        /// The conversion's event.
        event_id: uuid::Uuid,
    },
}

/// Result of this crate's functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The name of this crate's migration history table.
pub const MIGRATION_TABLE: &str = "reports_schema_history";

/// Applies this crate's pending migrations (forward only).
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<()> {
    embedded::migrations::runner()
        .set_migration_table_name(MIGRATION_TABLE)
        .run_async(client)
        .await?;
    Ok(())
}

/// Applies this crate's migrations up to `version` only: how the upgrade tests build a database
/// as an older release left it.
#[doc(hidden)]
pub async fn migrate_to(client: &mut tokio_postgres::Client, version: i32) -> Result<()> {
    let mut runner = embedded::migrations::runner().set_target(refinery::Target::Version(version));
    runner
        .set_migration_table_name(MIGRATION_TABLE)
        .run_async(client)
        .await?;
    Ok(())
}

/// The migrations this crate embeds, as `(version, name, checksum)`.
pub fn migrations() -> Vec<(i32, String, u64)> {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| (m.version(), m.name().to_owned(), m.checksum()))
        .collect()
}
