//! The conversion-events catalog: what each `eventName` a workspace sends means, and what it is
//! worth.
//!
//! A definition gives an event name its kind (lead or sale), its tier (macro or micro, which
//! reports filter on), an owner and a description, a value for leads sent without an amount
//! (fixed, or estimated from the workspace's close rate) and, per destination, the platform's
//! conversion action or event name to use for it, or that the destination does not get it.
//!
//! - [`put_definition`], [`get_definition`], [`list_definitions`], [`delete_definition`]: the
//!   `/v1/conversion-events` resource. Every body is checked whole, and every bad field is
//!   listed ([`Error::Invalid`]); a destination is checked against its platform's mapping rules
//!   (`platforms::mapping`).
//! - [`estimate`]: the close-rate estimate of a lead's value (the workspace's sales ÷ leads over
//!   the trailing 90 days × its median sale amount, per currency), recomputed when a definition
//!   asks for it and by the workers at least daily ([`refresh_due_estimates`]).
//! - [`apply`]: what the pipeline needs while it decides: the definitions of a step's event
//!   names, the value a lead without an amount takes (frozen when attribution first decides it,
//!   so that dispatches and reports agree), and the per-destination rules the forwarder applies.
//!
//! It owns `conversion_events`, `conversion_value_estimates` and `conversion_lead_values`,
//! every one keyed by `workspace_id` first; it reads the journal and the destinations through
//! their crates' functions.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod apply;
mod definition;
pub mod estimate;
mod store;

pub use apply::{
    catalog_rules, definitions_for, erase_lead_values, forget_lead_values, freeze_lead_values,
    lead_values, AppliedValue, ValueSource,
};
pub use definition::{
    check_event_name, DefinitionView, DestinationRule, LeadValue, Tier, MAX_EVENT_NAME_LENGTH,
};
pub use estimate::{refresh_due_estimates, refresh_estimate, Estimate, WINDOW_DAYS};
pub use store::{
    defined_kinds, delete_definition, get_definition, list_definitions, put_definition, Definition,
    Page, PutOutcome,
};

use events::FieldError;

/// What can go wrong in the catalog.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request breaks the schema: every offending field.
    #[error("invalid conversion event definition ({} field errors)", .0.len())]
    Invalid(Vec<FieldError>),
    /// No such definition in this workspace.
    #[error("no such conversion event")]
    NotFound,
    /// A statement failed.
    #[error("database error")]
    Database(#[from] tokio_postgres::Error),
    /// Reading the destinations failed on something other than the database.
    #[error("reading destinations failed")]
    Destinations(#[source] forwarder::Error),
    /// A stored row cannot be read back.
    #[error("stored {what} cannot be read: {detail}")]
    Corrupt {
        /// What.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// A migration failed.
    #[error("migration failed")]
    Migration(#[from] refinery::Error),
}

impl From<forwarder::Error> for Error {
    fn from(e: forwarder::Error) -> Self {
        match e {
            forwarder::Error::Database(e) => Self::Database(e),
            other => Self::Destinations(other),
        }
    }
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The name of this crate's migration history table.
pub const MIGRATION_TABLE: &str = "catalog_schema_history";

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

/// This crate's migrations: version, name, checksum.
pub fn migrations() -> Vec<(i32, String, u64)> {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| (m.version(), m.name().to_owned(), m.checksum()))
        .collect()
}
