//! Signed webhooks: every subscribed event, its attribution and routing, POSTed as JSON to the
//! destination's URL.
//!
//! The body has the shape of `GET /v1/events/{id}` (the event's fields with `id` and
//! `receivedAt`, plus `attribution` and `routing`), so a receiver can share one parser. It is
//! signed the way Stripe and Svix receivers expect: `Convrelay-Signature: t=<unix seconds>,
//! v1=<hex>`, the hex being HMAC-SHA256, keyed by the destination's secret, of
//! `"<t>.<raw body>"`. Receivers reject a `t` older than 5 minutes, so every attempt is signed
//! anew. Any 2xx is success.

use events::{Attribution, Event};
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;
use time::OffsetDateTime;

use super::{classify, event_wire_id, record, Collector, Platforms, RequestTarget, SendReport};
use crate::model::{Conversion, WebhookConfig, WebhookCredentials};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "Convrelay-Signature";

/// The header value for `body` signed with `secret` at Unix time `timestamp`:
/// `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let digest = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    format!("t={timestamp},v1={digest}")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    id: String,
    #[serde(with = "events::rfc3339_millis")]
    received_at: OffsetDateTime,
    #[serde(flatten)]
    event: &'a Event,
    attribution: &'a Attribution,
    routing: &'a Value,
}

/// The JSON a webhook receives for `conversion`.
pub fn body(conversion: &Conversion, routing: &Value) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Body {
        id: event_wire_id(conversion.event_id),
        received_at: conversion.received_at,
        event: &conversion.event,
        attribution: &conversion.attribution,
        routing,
    })
}

/// See [`Platforms::send_webhook`].
pub(super) async fn send(
    platforms: &Platforms,
    config: &WebhookConfig,
    creds: &WebhookCredentials,
    conversion: &Conversion,
    routing: &Value,
    now: OffsetDateTime,
) -> SendReport {
    let mut collector = Collector::new(1);
    collector.add_secret(&creds.secret);
    let Ok(url) = reqwest::Url::parse(config.url.trim()) else {
        collector.set(0, classify::permanent("the webhook URL is not a valid URL"));
        return collector.finish();
    };
    let payload = match body(conversion, routing) {
        Ok(payload) => payload,
        Err(error) => {
            collector.set(
                0,
                classify::permanent(format!("the event could not be written as JSON: {error}")),
            );
            return collector.finish();
        }
    };
    let signature = signature(&creds.secret, now.unix_timestamp(), &payload);
    let request = platforms
        .client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .body(payload);
    let exchange = platforms.execute(request).await;
    tracing::debug!(
        status = ?exchange.status,
        duration_ms = u64::try_from(exchange.duration.as_millis()).unwrap_or(u64::MAX),
        "webhook request"
    );
    let outcome = exchange.transport_outcome().unwrap_or_else(|| {
        classify::webhook_status(exchange.status.unwrap_or(0), exchange.retry_after())
    });
    let error = match &outcome {
        crate::model::Outcome::Retry { error, .. } | crate::model::Outcome::Permanent { error } => {
            Some(error.clone())
        }
        _ => None,
    };
    collector.requests.push(record(
        RequestTarget::Webhook,
        vec![0],
        &exchange,
        error,
        &[creds.secret.as_str()],
    ));
    collector.set(0, outcome);
    collector.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // HMAC-SHA256 with key "key" of "1700000000.{}", computed with another implementation.
        assert_eq!(
            signature("key", 1_700_000_000, b"{}"),
            "t=1700000000,v1=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }
}
