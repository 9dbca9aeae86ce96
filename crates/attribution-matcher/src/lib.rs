//! The attribution stage of Convrelay: which ad click (if any) led to each conversion, and which
//! kinds of destination get the conversion because of it.
//!
//! The crate owns four things, each in its own module:
//! - [`clicks`]: the clicks registry behind `POST /v1/clicks` and `GET /v1/clicks/{clickId}`;
//! - [`identity`]: the identity graph. Identifiers seen together on one event
//!   (`customerExternalId`, normalised email, E.164 phone, `clickId`, the ad-platform click ids)
//!   belong to one person; an event that names identifiers of two persons merges them, unless an
//!   identifier is shared by too many people (the guardrail: it then stops linking, and the event
//!   says so in `attribution.ignoredIdentifiers`). Only digests of
//!   `"<kind>:<normalised value>"` (the first 16 bytes of its SHA-256) are stored in the graph;
//! - [`choice`] and [`routing`]: the pure rules. Direct click ids on the event, else its
//!   registered `clickId`, else the person's most recent click within the attribution window
//!   (`last_click`, with the first click of the window as `firstTouch`); then, per kind of
//!   destination, whether it gets the conversion and why;
//! - [`queue`] and [`mod@decide`]: the worker step. [`enqueue`] files newly stored events inside the
//!   ingest transaction; [`claim`] takes the oldest work of one workspace (new events, pending
//!   events that a later link may match, pending events whose window is over) under a
//!   per-workspace advisory lock; [`decide()`] attributes and routes them, in arrival order, in the
//!   same transaction: reads, a pure decision step, writes. Its cost per event does not grow with
//!   a person's history: a person's last and first click in a window are index probes. A large
//!   claim may be [`split`] into parts that share no identifier and no person, each decided by
//!   [`decide_known`] in a transaction of its own beside the claim's (the worker's choice). A
//!   worker keeps the identifiers that name people, and their persons, between steps in a
//!   [`GraphCache`], trusted only while the database names it the graph's last writer; a step
//!   then reads from the database only the identifiers it has not seen (mostly new click ids).
//!
//! Late data: a sale that nothing links to a click yet is `pending` for
//! [`MatchSettings::pending_window`]: webhooks get it at once, ad platforms only if a later event
//! or click registration links it to a click before the window ends; after that it is
//! `unmatched`. A lead without a click is `unmatched` at once. A lead sent with
//! `mode: "deferred"` only links its identifiers.
//!
//! Every table's key starts with `workspace_id`. Functions take a
//! [`deadpool_postgres::GenericClient`] so that the caller owns the transaction.

#![cfg_attr(test, allow(clippy::unwrap_used))]

/// Why some statements name their workspace as `(SELECT $1::uuid)` instead of `$1`: where rows
/// are looked up by a person or a click, in a table whose other index also begins with
/// `workspace_id`. PostgreSQL plans a statement for the workspace it is given by reading the
/// column's statistics, and those know only the workspaces the last `ANALYZE` saw; a workspace
/// begun since is estimated at one row, and a scan of its whole primary-key range, filtered, then
/// looks as cheap as the probe of `identities_touches` (a new workspace's 20,000 sales on a
/// database of 1.2 million identities took 85 s to attribute, statements timing out). Given as a
/// sub-select, the workspace is a value the planner cannot see, estimated as any workspace is;
/// the probe then wins whatever the statistics say.
pub(crate) const ANY_WORKSPACE: &str = "(SELECT $1::uuid)";

/// The statements that read a person's clicks by range, as sent, with their parameters' types:
/// for the test that checks how PostgreSQL plans them.
#[doc(hidden)]
pub fn person_click_statements() -> [(String, &'static str); 2] {
    [
        (
            decide::read::probe_statement(),
            "uuid, uuid[], timestamptz[], timestamptz[], bool[]",
        ),
        (
            window::window_statement().to_owned(),
            "uuid, uuid[], timestamptz[], timestamptz[], bigint",
        ),
    ]
}

/// The crate's hash maps and sets: a step hashes each of thousands of identifiers and persons
/// several times, and SipHash (the standard library's) took about a tenth of the worker's time.
/// foldhash is as randomly seeded per process, and much faster on short keys (the keys here are
/// digests and UUIDs).
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// See [`HashMap`].
pub type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

pub mod choice;
pub mod clicks;
pub mod decide;
pub mod erase;
pub mod identity;
pub mod queue;
pub mod retention;
pub mod routing;
pub mod settings;
pub mod window;

pub use choice::{choose_touches, find_touchpoint, Chosen, Found, Linked, Touch};
pub use clicks::{get_click, register_clicks, RegisteredClick, StoredClick, CLICK_ID_PREFIX};
pub use decide::{
    decide, decide_known, get_attributions, get_decision, graph_changed, read_identities, split,
    CarriedClicks, Decided, Decision, GraphCache, GraphChanges, KnownGraph, Lease,
};
pub use identity::{event_identifiers, identifier_hash, Identifier, IdentifierKind};
pub use queue::{claim, claim_at, enqueue, queue_stats, Claim, QueueStats};
pub use routing::{route, Stage};
pub use settings::{
    attribution_window, set_attribution_window, MatchSettings, DEFAULT_ATTRIBUTION_WINDOW,
    DEFAULT_IDENTITY_MAX_LINKS, DEFAULT_PENDING_WINDOW,
};
pub use window::{
    clicks_in_window, decided_touches, DecidedTouches, WindowClick, WindowProbe, WindowSource,
};

/// Errors of the attribution matcher.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed.
    #[error("database error")]
    Database(#[from] tokio_postgres::Error),
    /// A migration failed.
    #[error("migration failed")]
    Migration(#[from] refinery::Error),
    /// A JSON column of this crate's tables could not be read back (written by an incompatible
    /// version, or edited by hand).
    #[error("stored {what} cannot be read")]
    StoredData {
        /// Which column.
        what: &'static str,
        /// The decoding failure.
        #[source]
        source: serde_json::Error,
    },
    /// An attribution window must be at least one second and fit in 64-bit seconds.
    #[error("the attribution window must be between 1 second and {max_secs} seconds")]
    InvalidWindow {
        /// The largest accepted window, in seconds.
        max_secs: i64,
    },
    /// A stored decision names no stage it can be rebuilt from (edited by hand, or written by an
    /// incompatible version).
    #[error("the decision about event {event_id} cannot be read")]
    StoredDecision {
        /// The event.
        event_id: uuid::Uuid,
    },
    /// A click that lost its insert to an earlier registration could not be read back.
    #[error("click {click_id} was registered concurrently and cannot be read back")]
    ClickVanished {
        /// The click's id.
        click_id: String,
    },
}

/// Result of this crate's functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The name of this crate's migration history table.
pub const MIGRATION_TABLE: &str = "matcher_schema_history";

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

/// Reads a JSON column back into its type.
fn from_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    value: serde_json::Value,
) -> Result<T> {
    serde_json::from_value(value).map_err(|source| Error::StoredData { what, source })
}

/// Writes a value for a JSON column; the types written here always serialise.
fn to_json<T: serde::Serialize>(what: &'static str, value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|source| Error::StoredData { what, source })
}
