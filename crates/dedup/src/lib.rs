//! Accept-once: every lead and sale is stored once, whatever the sender retries.
//!
//! Two mechanisms, both inside the caller's ingest transaction:
//! - [`natural`]: a sale's `invoiceId` and a lead's `leadId` name one event per workspace,
//!   enforced by a unique constraint (never by check-then-insert);
//! - [`idempotency`]: an `Idempotency-Key` header keeps the first answer to a POST and replays
//!   it; a request holds its key's lock from its look-up to its commit.
//!
//! Functions take a [`deadpool_postgres::GenericClient`] so that the caller owns the transaction.

pub mod erase;
pub mod idempotency;
pub mod inflight;
pub mod natural;

pub use idempotency::{IdempotencyKey, RequestFingerprint, StoredResponse};
pub use inflight::{InFlight, InFlightGuard};
pub use natural::{Claim, NaturalKey};

/// Errors of the dedup crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `Idempotency-Key` header is empty, too long or not printable ASCII.
    #[error("Idempotency-Key must be 1 to 255 printable ASCII characters")]
    InvalidIdempotencyKey,
    /// The database failed.
    #[error("database error")]
    Database(#[from] tokio_postgres::Error),
    /// A migration failed.
    #[error("migration failed")]
    Migration(#[from] refinery::Error),
}

/// Result of this crate's functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The name of this crate's migration history table.
pub const MIGRATION_TABLE: &str = "dedup_schema_history";

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

/// The migrations this crate embeds, as `(version, name, checksum)`; used to tell whether a database is current.
pub fn migrations() -> Vec<(i32, String, u64)> {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| (m.version(), m.name().to_owned(), m.checksum()))
        .collect()
}
