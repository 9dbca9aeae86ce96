//! The errors of the forwarder's functions, one variant per way they fail, so that the HTTP edge
//! maps each to one status in one place.

use events::FieldError;

/// Errors of the forwarder crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request breaks the schema; every offending field is listed (422).
    #[error("{} invalid field(s)", .0.len())]
    Invalid(Vec<FieldError>),
    /// No such resource in this workspace (404).
    #[error("not found")]
    NotFound,
    /// The resource is not in a state that allows the operation, e.g. retrying a dispatch that
    /// succeeded (409). The message says why, for people.
    #[error("{0}")]
    Conflict(String),
    /// The database failed.
    #[error("database error")]
    Database(#[from] tokio_postgres::Error),
    /// No database connection could be had from the pool.
    #[error("no database connection")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A migration failed.
    #[error("migration failed")]
    Migration(#[from] refinery::Error),
    /// Sealed credentials could not be opened: the secret key is not the one they were sealed with,
    /// or the stored bytes were altered.
    #[error("credentials cannot be decrypted with the configured CONVRELAY_SECRET_KEY")]
    Crypto,
    /// `CONVRELAY_SECRET_KEY` is not 32 bytes written as 64 hex digits or as base64.
    #[error("CONVRELAY_SECRET_KEY must be 32 bytes written as 64 hex digits or as base64")]
    InvalidSecretKey,
    /// A stored row cannot be read back (written by an incompatible version, or edited by hand).
    #[error("stored {what} cannot be read: {detail}")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// Why it failed.
        detail: String,
    },
}

impl Error {
    /// A validation error on one field.
    pub fn invalid(
        field: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self::Invalid(vec![FieldError {
            field: field.into(),
            code,
            message: message.into(),
        }])
    }

    /// True when the database could not be reached or failed for reasons of its own: the HTTP
    /// edge answers 503 with `Retry-After` rather than 500.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Database(_) | Self::Pool(_))
    }
}

/// Result of this crate's functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;
