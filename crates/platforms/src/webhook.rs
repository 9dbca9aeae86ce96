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

use std::net::IpAddr;

use events::EventKind;
use futures_util::future::BoxFuture;
use serde::Deserialize;

use crate::batch::{self, Answer, JsonApi};
use crate::model::{Conversion, Outcome};
use crate::settings::{required_secret, required_string, Errors, Obj};
use crate::{
    classify, event_wire_id, Exchange, Limits, Platform, Platforms, RequestTarget, SendReport,
};

/// Longest webhook URL.
const MAX_URL: usize = 2048;
/// Shortest webhook signing secret.
pub const MIN_SECRET: usize = 16;

/// `webhook` destination config (public).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookConfig {
    /// Where to POST; https, or http on loopback.
    pub url: String,
}

/// `webhook` credentials (write-only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookCredentials {
    /// HMAC-SHA256 signing secret.
    pub secret: String,
}

impl std::fmt::Debug for WebhookCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookCredentials { .. }")
    }
}

/// The `webhook` adapter: one conversion per request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Webhook;

impl Platform for Webhook {
    type Config = WebhookConfig;
    type Credentials = WebhookCredentials;

    fn destination_type(&self) -> events::DestinationType {
        events::DestinationType::Webhook
    }

    fn check_config(
        &self,
        errors: &mut Errors,
        obj: &mut Obj<'_>,
        _kinds: &[EventKind],
    ) -> Option<WebhookConfig> {
        check_url(errors, obj)
    }

    fn check_credentials(
        &self,
        errors: &mut Errors,
        obj: &mut Obj<'_>,
    ) -> Option<WebhookCredentials> {
        let secret = required_secret(errors, obj, "secret")?;
        if secret.chars().count() < MIN_SECRET {
            errors.push(
                obj.path("secret"),
                "min_length",
                format!("must be at least {MIN_SECRET} characters"),
            );
            return None;
        }
        Some(WebhookCredentials { secret })
    }

    fn limits(&self, _config: &WebhookConfig) -> Limits {
        Limits {
            batch_size: 1,
            max_event_age: None,
            max_click_age: None,
            dedup_key: "id (evt_ id) in the body",
            test_mode: None,
        }
    }

    fn send<'a>(
        &'a self,
        http: &'a Platforms,
        config: &'a WebhookConfig,
        credentials: &'a WebhookCredentials,
        batch: &'a [Conversion],
        now: OffsetDateTime,
    ) -> BoxFuture<'a, SendReport> {
        Box::pin(batch::send::<Self>(http, config, credentials, batch, now))
    }
}

fn check_url(errors: &mut Errors, obj: &mut Obj<'_>) -> Option<WebhookConfig> {
    let raw = required_string(errors, obj, "url", MAX_URL)?;
    let field = obj.path("url");
    let Ok(url) = reqwest::Url::parse(raw.trim()) else {
        errors.error(field, &events::Error::InvalidUrl);
        return None;
    };
    if !url.username().is_empty() || url.password().is_some() {
        errors.push(
            field,
            "format",
            "must not carry a user name or password: the signature authenticates the requests",
        );
        return None;
    }
    let host = url.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" if !host.is_empty() => {}
        "http" if loopback => {}
        "http" => {
            errors.push(
                field,
                "format",
                "must be https (plain http only for 127.0.0.1, ::1 or localhost)",
            );
            return None;
        }
        _ => {
            errors.push(field, "format", "must be an https URL");
            return None;
        }
    }
    Some(WebhookConfig {
        url: url.to_string(),
    })
}

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
    #[serde(skip_serializing_if = "Option::is_none")]
    mapping: Option<&'a crate::model::EventMapping>,
}

/// The JSON a webhook receives for `conversion`.
pub fn body(conversion: &Conversion, routing: &Value) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Body {
        id: event_wire_id(conversion.event_id),
        received_at: conversion.received_at,
        event: &conversion.event,
        attribution: &conversion.attribution,
        routing,
        mapping: conversion.mapping.as_ref(),
    })
}

/// One conversion per request, signed, with its routing decision.
impl JsonApi for Webhook {
    type Config = WebhookConfig;
    type Credentials = WebhookCredentials;
    /// The body.
    type Row = Vec<u8>;

    const TARGET: RequestTarget = RequestTarget::Webhook;

    fn secrets(credentials: &WebhookCredentials) -> Vec<&str> {
        vec![credentials.secret.as_str()]
    }

    fn row(
        _config: &WebhookConfig,
        conversion: &Conversion,
        _now: OffsetDateTime,
    ) -> Result<Vec<u8>, Outcome> {
        body(conversion, &conversion.routing).map_err(|error| {
            classify::permanent(format!("the event could not be written as JSON: {error}"))
        })
    }

    /// Each conversion is a request of its own.
    fn groups(rows: Vec<(usize, Self::Row)>) -> Vec<Vec<(usize, Self::Row)>> {
        rows.into_iter().map(|row| vec![row]).collect()
    }

    /// Signed when it is sent, so that the signature's time is the attempt's.
    fn request(
        platforms: &Platforms,
        config: &WebhookConfig,
        credentials: &WebhookCredentials,
        _token: Option<&str>,
        rows: &[&Vec<u8>],
    ) -> Result<reqwest::RequestBuilder, Outcome> {
        let Ok(url) = reqwest::Url::parse(config.url.trim()) else {
            return Err(classify::permanent("the webhook URL is not a valid URL"));
        };
        let Some(payload) = rows.first() else {
            return Err(classify::permanent(
                "internal: a webhook request without an event",
            ));
        };
        let timestamp = OffsetDateTime::now_utc().unix_timestamp();
        Ok(platforms
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                SIGNATURE_HEADER,
                signature(&credentials.secret, timestamp, payload),
            )
            .body(payload.to_vec()))
    }

    fn transient(exchange: &Exchange, rows: &[&Vec<u8>]) -> Answer {
        Self::answer(exchange, rows)
    }

    fn answer(exchange: &Exchange, _rows: &[&Vec<u8>]) -> Answer {
        Answer::All(classify::webhook_status(
            exchange.status.unwrap_or(0),
            exchange.retry_after(),
        ))
    }
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
