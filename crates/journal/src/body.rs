//! How the journal keeps an event's body (`events.body`): its normalised wire form as compact
//! JSON, compressed, behind one byte that names the format.
//!
//! - `0`: the JSON as it is. Events stored before bodies were compressed read this way (their
//!   `payload jsonb` is given as `0` and its text, see [`BODY`]), and so does a body that did not
//!   compress.
//! - `1`: a zstd frame made against [`DICTIONARY_V1`], a dictionary of the wire format's own
//!   field names and common values. A 450-byte sale (570 bytes of compact JSON with its user
//!   agent and page URL) took about 630 bytes as jsonb; it takes about 250 (about 430 with zstd
//!   alone).
//!
//! A format, once written, is never changed: a new dictionary is a new format byte.

use std::cell::RefCell;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use tokio_postgres::types::{accepts, FromSql, Type};
use zstd::bulk::{Compressor, Decompressor};
use zstd::dict::{DecoderDictionary, EncoderDictionary};

/// The column list item that reads an event's body in any format: the body, or for an event
/// stored before bodies were compressed, its `payload jsonb` as format `0`.
pub(crate) const BODY: &str = "coalesce(body, '\\x00'::bytea || convert_to(payload::text, 'UTF8'))";

const PLAIN: u8 = 0;
const ZSTD_V1: u8 = 1;

/// zstd's level: one of its fast levels. On a 570-byte sale, level 3 gains 30 bytes (221 against
/// 251) for twice the compression time (3.9 µs against 2.0) and five times the decompression
/// time (1.6 µs against 0.3), which the matcher pays for every event it reads.
const LEVEL: i32 = -1;

/// The largest body a frame may claim to hold: far above any event the API accepts, so that a
/// corrupt frame cannot make a reader allocate without bound.
const MAX_BODY: usize = 16 << 20;

/// Format 1's dictionary: the wire form's field names as they appear in it (`"name":`), its
/// enumerated values, and what web clients commonly send (URLs, user agents). zstd finds the
/// longest matches at the end of a dictionary cheapest, so the most common come last.
/// Never edit it: stored bodies are decoded with exactly these bytes.
const DICTIONARY_V1: &[u8] = concat!(
    "\"products\":[{\"id\":\"\",\"name\":\"\",\"price\":,\"quantity\":1}],\"metadata\":{",
    "\"consent\":{\"adUserData\":\"granted\",\"adPersonalization\":\"granted\"},",
    "\"consent\":{\"adUserData\":\"denied\",\"adPersonalization\":\"denied\"},",
    "\"wbraid\":\"\",\"gbraid\":\"\",\"epik\":\"\",\"scCid\":\"\",\"scid\":\"\",\"rdtCid\":\"\",",
    "\"liFatId\":\"\",\"ttp\":\"\",\"ttclid\":\"\",\"msclkid\":\"\",\"fbc\":\"fb.1.\",",
    "\"fbp\":\"fb.1.\",\"fbclid\":\"\",\"clickId\":\"clk_\",\"referrer\":\"https://www.google.com/\",",
    "\"phone\":\"+1\",\"mode\":\"deferred\",\"mode\":\"wait\",\"event\":\"lead\",\"leadId\":\"\",",
    "\"currency\":\"USD\",\"currency\":\"GBP\",\"content\":\"\",\"term\":\"\",",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 ",
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 ",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) ",
    "Chrome/131.0.0.0 Mobile Safari/537.36",
    "{\"ip\":\"\",\"utm\":{\"term\":\"\",\"medium\":\"cpc\",\"source\":\"google\",\"campaign\":\"\"},",
    "\"mode\":\"async\",\"email\":\"\",\"event\":\"sale\",\"gclid\":\"\",\"amount\":,",
    "\"pageUrl\":\"https://www.\",\"currency\":\"EUR\",\"eventName\":\"purchase\",",
    "\"invoiceId\":\"\",\"timestamp\":\"2026-01-01T00:00:00.000Z\",",
    "\"userAgent\":\"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 ",
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\",\"customerExternalId\":\"\"}",
)
.as_bytes();

fn encoder_dictionary() -> &'static EncoderDictionary<'static> {
    static DICTIONARY: OnceLock<EncoderDictionary<'static>> = OnceLock::new();
    DICTIONARY.get_or_init(|| EncoderDictionary::copy(DICTIONARY_V1, LEVEL))
}

fn decoder_dictionary() -> &'static DecoderDictionary<'static> {
    static DICTIONARY: OnceLock<DecoderDictionary<'static>> = OnceLock::new();
    DICTIONARY.get_or_init(|| DecoderDictionary::copy(DICTIONARY_V1))
}

thread_local! {
    // A zstd context costs more to set up than a small body to compress: one per thread.
    static COMPRESSOR: RefCell<Option<Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
}

/// The stored form of an event's wire form.
pub(crate) fn encode(payload: &serde_json::Value) -> Vec<u8> {
    let json = payload.to_string().into_bytes();
    let compressed = COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = Compressor::with_prepared_dictionary(encoder_dictionary()).ok();
        }
        let compressor = cell.as_mut()?;
        compressor.compress(&json).ok()
    });
    match compressed {
        Some(frame) if frame.len() < json.len() => {
            let mut body = Vec::with_capacity(1 + frame.len());
            body.push(ZSTD_V1);
            body.extend_from_slice(&frame);
            body
        }
        // zstd failed (it cannot, short of memory) or did not shrink it: kept as it is.
        _ => {
            let mut body = Vec::with_capacity(1 + json.len());
            body.push(PLAIN);
            body.extend_from_slice(&json);
            body
        }
    }
}

/// Why a stored body cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// Its first byte names no format this version knows.
    #[error("an event body of unknown format {0}")]
    UnknownFormat(u8),
    /// The body is empty.
    #[error("an empty event body")]
    Empty,
    /// The compressed frame is damaged.
    #[error("an event body that does not decompress: {0}")]
    Frame(String),
    /// The JSON inside does not read as the type asked for.
    #[error("an event body that does not parse: {0}")]
    Json(#[from] serde_json::Error),
}

/// The JSON bytes a stored body holds.
pub(crate) fn decode(body: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, BodyError> {
    let (&format, rest) = body.split_first().ok_or(BodyError::Empty)?;
    match format {
        PLAIN => Ok(std::borrow::Cow::Borrowed(rest)),
        ZSTD_V1 => DECOMPRESSOR.with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.is_none() {
                *cell = Some(
                    Decompressor::with_prepared_dictionary(decoder_dictionary())
                        .map_err(|e| BodyError::Frame(e.to_string()))?,
                );
            }
            let Some(decompressor) = cell.as_mut() else {
                return Err(BodyError::Frame("no decompression context".into()));
            };
            decompressor
                .decompress(rest, MAX_BODY)
                .map(std::borrow::Cow::Owned)
                .map_err(|e| BodyError::Frame(e.to_string()))
        }),
        other => Err(BodyError::UnknownFormat(other)),
    }
}

/// A stored body read as `T` (with [`BODY`] as the column): a body that cannot be read is a
/// column error of the row, as a jsonb column that does not parse would be.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<'a, T: DeserializeOwned> FromSql<'a> for Body<T> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let json = decode(raw)?;
        Ok(Body(serde_json::from_slice(&json)?))
    }

    accepts!(BYTEA);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn sale() -> serde_json::Value {
        json!({
            "event": "sale", "eventName": "purchase", "invoiceId": "ord_5001",
            "timestamp": "2026-11-30T09:12:44.120Z", "amount": 84.9, "currency": "EUR",
            "customerExternalId": "cust_655", "email": "buyer655@mail.example",
            "gclid": "Cj0KCQiA_5001_BwE", "mode": "async", "ip": "203.0.113.156",
            "pageUrl": "https://shop.example/checkout/thank-you?order=5001",
            "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
            "utm": {"source": "google", "medium": "cpc", "campaign": "winter_sale_2026", "term": "wool socks"}
        })
    }

    #[test]
    fn a_sale_comes_back_as_it_went_in_at_about_half_its_size() {
        let body = encode(&sale());
        assert_eq!(body[0], ZSTD_V1);
        let json = sale().to_string();
        assert!(
            body.len() * 2 < json.len() + 60,
            "{} of {}",
            body.len(),
            json.len()
        );
        let back: serde_json::Value = serde_json::from_slice(&decode(&body).unwrap()).unwrap();
        assert_eq!(back, sale());
    }

    #[test]
    fn a_body_kept_before_compression_reads_as_its_json() {
        let mut body = vec![PLAIN];
        body.extend_from_slice(br#"{"event": "lead", "leadId": "l-1"}"#);
        let back: serde_json::Value = serde_json::from_slice(&decode(&body).unwrap()).unwrap();
        assert_eq!(back, json!({"event": "lead", "leadId": "l-1"}));
    }

    #[test]
    fn the_dictionary_is_the_one_stored_bodies_were_made_with() {
        // Bodies in the journal were compressed against exactly these bytes.
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(DICTIONARY_V1);
        assert_eq!(
            digest
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            "e459eae12dd64a7b",
            "format 1's dictionary changed: add a new format instead"
        );
    }

    #[test]
    fn damaged_or_unknown_bodies_are_errors_not_panics() {
        assert!(matches!(decode(&[]), Err(BodyError::Empty)));
        assert!(matches!(
            decode(&[7, 1, 2]),
            Err(BodyError::UnknownFormat(7))
        ));
        assert!(matches!(
            decode(&[ZSTD_V1, 1, 2, 3]),
            Err(BodyError::Frame(_))
        ));
        let mut body = encode(&sale());
        let last = body.len() - 1;
        body.truncate(last);
        assert!(decode(&body).is_err());
    }
}
