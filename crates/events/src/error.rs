//! Why a value was rejected, and the stable codes clients see for it.
//!
//! Every rejection is an [`Error`] variant with exactly one code (`Error::code`), so the table in the
//! crate documentation, the OpenAPI document and the problem+json bodies all come from one place.
//! [`FieldError`] pins an [`Error`] to the path of the offending field, and [`ValidationErrors`] is
//! the full list for one body: validation reports every bad field, not only the first.

use serde::Serialize;
use std::fmt;

/// The result of the constructors and parsers of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One reason a value was rejected.
///
/// Messages never repeat the rejected input, so that an email address or a phone number cannot
/// leak into logs through an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A required field is missing or `null`.
    #[error("is required")]
    Required,
    /// A field that is optional on its own is missing while another field needs it.
    #[error("is required when {other} is given")]
    RequiredWith {
        /// The field that needs this one.
        other: &'static str,
    },
    /// The JSON type is wrong; `expected` reads like "a string".
    #[error("must be {expected}")]
    Type {
        /// The JSON type the field takes, with its article.
        expected: &'static str,
    },
    /// The field is not part of the schema.
    #[error("is not a known field")]
    UnknownField,
    /// The field exists but not in this context (e.g. `invoiceId` on a lead).
    #[error("{reason}")]
    NotAllowed {
        /// Where the field is allowed instead.
        reason: &'static str,
    },
    /// The string is empty or only whitespace.
    #[error("must not be empty")]
    Empty,
    /// The string is longer than the limit, counted in characters.
    #[error("must be at most {max} characters")]
    TooLong {
        /// The largest accepted length.
        max: usize,
    },
    /// The string is not one of a fixed set of values.
    #[error("must be one of: {allowed}")]
    InvalidValue {
        /// The accepted values, comma separated.
        allowed: &'static str,
    },
    /// The timestamp is not RFC 3339 with an offset.
    #[error("must be an RFC 3339 date-time with an offset, e.g. 2026-04-10T12:34:56.000Z")]
    InvalidTimestamp,
    /// The timestamp is more than the allowed skew after the time the event was received.
    #[error("must not be more than 5 minutes in the future")]
    Future,
    /// The timestamp is before 2000-01-01T00:00:00Z.
    #[error("must not be before 2000-01-01T00:00:00Z")]
    TooOld,
    /// The string is not a syntactically valid email address.
    #[error("must be a valid email address")]
    InvalidEmail,
    /// The string is not a valid international phone number.
    #[error("{reason}")]
    InvalidPhone {
        /// What is wrong with the number and how to write it instead.
        reason: &'static str,
    },
    /// The string is not an ISO 4217 currency code.
    #[error("must be an ISO 4217 currency code, e.g. USD")]
    InvalidCurrency,
    /// The string is not an IPv4 or IPv6 address.
    #[error("must be an IPv4 or IPv6 address")]
    InvalidIp,
    /// The string holds a NUL character, which no database or platform takes.
    #[error("must not contain NUL (\\u0000) characters")]
    NulCharacter,
    /// The string is not an absolute URL.
    #[error("must be an absolute URL, e.g. https://example.com/pricing")]
    InvalidUrl,
    /// The number is below the smallest accepted value.
    #[error("must be >= {min}")]
    Minimum {
        /// The smallest accepted value.
        min: &'static str,
    },
    /// The number is above the largest accepted value.
    #[error("must be <= {max}")]
    Maximum {
        /// The largest accepted value.
        max: &'static str,
    },
    /// The number has more decimal places than accepted.
    #[error("must have at most {places} decimal places")]
    Precision {
        /// The largest accepted number of decimal places.
        places: u32,
    },
    /// The value is larger than accepted once serialised as JSON.
    #[error("must be at most {max_bytes} bytes once serialised as JSON")]
    MaxSize {
        /// The largest accepted size in bytes.
        max_bytes: usize,
    },
    /// The array has fewer items than accepted.
    #[error("must hold at least {min} item(s)")]
    MinItems {
        /// The smallest accepted number of items.
        min: usize,
    },
    /// The array has more items than accepted.
    #[error("must hold at most {max} items")]
    MaxItems {
        /// The largest accepted number of items.
        max: usize,
    },
    /// The key appears twice (or more) in one JSON object: which value was meant is unknowable.
    #[error("appears more than once in its object; send each key once")]
    DuplicateKey,
    /// The event names none of the identifiers attribution needs.
    #[error(
        "at least one identifier is required: customerExternalId, email, phone, clickId, \
         gclid, gbraid, wbraid, fbclid, fbc, fbp, ttclid, msclkid, ttp, liFatId, rdtCid, scCid, \
         scid or epik"
    )]
    MissingIdentifier,
}

impl Error {
    /// The stable machine-readable code of this error, as listed in the crate documentation.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Required | Error::RequiredWith { .. } => "required",
            Error::Type { .. } => "type",
            Error::UnknownField => "unknown_field",
            Error::NotAllowed { .. } => "not_allowed",
            Error::Empty => "min_length",
            Error::TooLong { .. } => "max_length",
            Error::InvalidValue { .. } => "invalid_value",
            Error::InvalidTimestamp => "invalid_timestamp",
            Error::Future => "future",
            Error::TooOld => "too_old",
            Error::InvalidEmail => "invalid_email",
            Error::InvalidPhone { .. } => "invalid_phone",
            Error::InvalidCurrency => "invalid_currency",
            Error::InvalidIp => "invalid_ip",
            Error::NulCharacter => "invalid_characters",
            Error::InvalidUrl => "invalid_url",
            Error::Minimum { .. } => "minimum",
            Error::Maximum { .. } => "maximum",
            Error::Precision { .. } => "precision",
            Error::MaxSize { .. } => "max_size",
            Error::MinItems { .. } => "min_items",
            Error::MaxItems { .. } => "max_items",
            Error::MissingIdentifier => "missing_identifier",
            Error::DuplicateKey => "duplicate_key",
        }
    }
}

/// One offending field of a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldError {
    /// Path of the field in the body: `amount`, `utm.source`, `products[0].price`; `""` for the
    /// body itself.
    pub field: String,
    /// Stable machine-readable code, see the crate documentation.
    pub code: &'static str,
    /// Human-readable explanation, without the field name and without the rejected value.
    pub message: String,
}

impl FieldError {
    /// Pins `error` to the field at `field`.
    pub fn new(field: impl Into<String>, error: &Error) -> Self {
        Self {
            field: field.into(),
            code: error.code(),
            message: error.to_string(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "body {} ({})", self.message, self.code)
        } else {
            write!(f, "{} {} ({})", self.field, self.message, self.code)
        }
    }
}

/// Every offending field of one body, in the order the fields were checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} invalid field(s): {}", .0.len(), join(.0))]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    /// The offending fields.
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
