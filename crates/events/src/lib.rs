//! The conversion event model of Convrelay: leads and sales, parsed, validated and normalised.
//!
//! This crate does no I/O. [`parse_event`] turns a request body into an [`Event`] whose
//! identifiers are already in their one canonical form ([`Email`], [`PhoneE164`], [`Money`]), so
//! matching, deduplication and hashing downstream never see two spellings of the same thing.
//! [`parse_batch`] checks the envelope of a batch. An [`Event`]'s serde form is its stored wire
//! form (camelCase JSON, times as [`format_timestamp`] writes them, amounts as exact JSON numbers).
//! [`parse_click`] and [`parse_click_batch`] do the same for the [`Click`]s of `POST /v1/clicks`,
//! under the same codes.
//!
//! # Validation errors
//!
//! A rejected body yields [`ValidationErrors`]: every offending field, not only the first, each a
//! [`FieldError`] with the field's path (`amount`, `utm.source`, `products[0].price`, `""` for the
//! body itself, `identifiers` for the missing-identifier rule), a stable code and a message. The
//! codes:
//!
//! | code | meaning |
//! |---|---|
//! | `type` | wrong JSON type, e.g. a string where a number is expected ("must be a number"); also a body that is not an object (field `""`) |
//! | `required` | a required field is missing or `null`; also `amount` / `currency` when the other one is given |
//! | `unknown_field` | the field is not part of the schema (typos are never silently dropped) |
//! | `not_allowed` | the field exists but not on this kind of event: `leadId` on a sale, `invoiceId` or `products` on a lead, `mode: "deferred"` on a sale |
//! | `min_length` | an empty or all-whitespace string |
//! | `max_length` | a string over its limit: 255 characters for ids, names, `eventName` and UTM values; 1024 for ad-platform click ids; 2048 for `pageUrl`, `referrer`, `userAgent`; 254 for `email` |
//! | `invalid_value` | a string outside a fixed set (`event`, `mode`, `consent.*`); the message lists the accepted values |
//! | `invalid_timestamp` | `timestamp` is not an RFC 3339 date-time with an offset |
//! | `future` | `timestamp` is more than 5 minutes after the time the event was received |
//! | `too_old` | `timestamp` is before 2000-01-01T00:00:00Z |
//! | `invalid_email` | `email` is not a syntactically valid address |
//! | `invalid_phone` | `phone` has no country code, cannot be parsed, or is not a valid number for its country |
//! | `invalid_currency` | `currency` is not an ISO 4217 code |
//! | `invalid_ip` | `ip` is not an IPv4 or IPv6 address |
//! | `invalid_url` | `pageUrl` or `referrer` is not an absolute URL |
//! | `minimum` | a number below its minimum: an amount or price below 0, a quantity below 1 |
//! | `maximum` | a number above its maximum: an amount or price above 10^14, a quantity above 4294967295 |
//! | `precision` | an amount or price with more than 4 decimal places |
//! | `max_size` | `metadata` is over 16 KiB once serialised |
//! | `min_items` | `events` (or `clicks`) of a batch is empty |
//! | `max_items` | `events` (or `clicks`) of a batch holds more than 1000 items |
//! | `duplicate_key` | an object of the body repeats a key (`{"amount": 1, "amount": 2}`); reported by [`json::from_slice_strict`], which the API answers with 400 rather than 422 |
//! | `missing_identifier` | none of `customerExternalId`, `email`, `phone`, `clickId`, `gclid`, `gbraid`, `wbraid`, `fbclid`, `fbc`, `fbp`, `ttclid`, `msclkid`, `ttp`, `liFatId`, `rdtCid`, `scCid`, `scid`, `epik` is given (field `identifiers`); for a click, none of `clickId`, the ad-platform click ids or a `utm` value |
//!
//! Errors are listed in the order the fields are checked: the event fields in the order of the
//! API table (nested fields where their parent is), then unknown fields, then `identifiers`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod attribution;
mod click;
mod email;
mod error;
mod event;
mod groups;
pub mod json;
mod money;
mod parse;
mod phone;
mod timestamp;

pub use attribution::{
    Attribution, AttributionStatus, DestinationType, IgnoredIdentifier, MatchedBy, RouteDecision,
    RoutedEvent, Touchpoint,
};
pub use click::{parse_click, parse_click_batch, Click, CLICK_FIELDS};
pub use email::{Email, MAX_EMAIL_LENGTH};
pub use error::{Error, FieldError, Result, ValidationErrors};
pub use event::{ClickIds, Consent, ConsentStatus, Event, EventKind, Mode, Product, Utm};
pub use groups::{channel_of, group_id, ClickGroups, DIRECT};
pub use money::{
    amount_from_json, amount_serde, check_amount, Currency, Money, MAX_AMOUNT, MAX_DECIMAL_PLACES,
};
pub use parse::{
    nul_errors, parse_batch, parse_event, EVENT_FIELDS, MAX_CLICK_ID_LENGTH, MAX_ID_LENGTH,
    MAX_METADATA_BYTES, MAX_URL_LENGTH,
};
pub use phone::PhoneE164;
pub use timestamp::{
    check_event_time, format_timestamp, parse_timestamp, rfc3339_millis, to_utc_millis, EARLIEST,
    MAX_FUTURE_SKEW,
};

use sha2::{Digest, Sha256};

/// Most events in one `POST /v1/events/batch` (and most clicks in one `POST /v1/clicks/batch`).
pub const MAX_BATCH: usize = 1000;

/// How many bytes the identity graph keeps of an identifier's SHA-256: sixteen. Among the 2^64
/// identifiers a workspace would need before two of them collide, none is ever told apart by more.
pub const IDENTIFIER_HASH_BYTES: usize = 16;

/// An identifier as the identity graph keeps it (see [`identifier_hash`]).
pub type IdentifierHash = [u8; IDENTIFIER_HASH_BYTES];

/// The first [`IDENTIFIER_HASH_BYTES`] of `SHA-256("<kind>:<value>")`: the form in which the
/// identity graph keeps an identifier (an email, a customer id, a click id), never the value itself.
/// `kind` is the identifier's field name (`email`, `gclid`, …); `value` must already be normalised.
pub fn identifier_hash(kind: &str, value: &str) -> IdentifierHash {
    let mut hasher = Sha256::new();
    hasher.update(kind.as_bytes());
    hasher.update(b":");
    hasher.update(value.as_bytes());
    let mut out = [0; IDENTIFIER_HASH_BYTES];
    out.copy_from_slice(&hasher.finalize()[..IDENTIFIER_HASH_BYTES]);
    out
}

/// SHA-256 of `input`'s UTF-8 bytes, as 64 lower-case hex digits.
pub fn sha256_hex(input: &str) -> String {
    hex::encode(Sha256::digest(input.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_is_lower_case_hex_of_the_utf8_bytes() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn an_identifier_hash_is_the_head_of_the_sha256_of_kind_and_value() {
        let full = sha256_hex("email:user@example.com");
        assert_eq!(
            hex::encode(identifier_hash("email", "user@example.com")),
            full[..32]
        );
    }
}
