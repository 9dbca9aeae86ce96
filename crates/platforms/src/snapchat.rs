//! Snap Conversions API v3: `POST /v3/{pixel id}/events?access_token=…` (the token goes in the
//! query string, so no error or record ever carries a URL), body `{"data": [...]}`; in test mode
//! `/v3/{pixel id}/events/validate`, which checks the events and records nothing.
//!
//! Each event has its name per kind (`SIGN_UP` and `PURCHASE` by default: Snap has no lead
//! event), the time in Unix **seconds**, our event id as `event_id` (matched with the pixel's
//! `client_dedup_id`, the same on every attempt), `ScCid` as `sc_click_id`, the `_scid` cookie as
//! `sc_cookie1`, and user data by Snap's rules: email trimmed and lower-cased, phone as digits
//! **without** `+`, external id trimmed and lower-cased, each SHA-256 hex in an array; IP and user
//! agent as they are. Prices in `contents` are strings. Nothing of the person goes when ad user
//! data is denied: only the click id and cookie.
//!
//! Snap answers `{"status": "VALID" | "INVALID", "reason", "event"?}`: `INVALID` naming an event
//! fails it and the rest are sent again; otherwise the whole request failed for good. 401, 403
//! are permanent; 429 and 5xx retried. Events more than 37 days old are skipped.

use std::time::Duration;

use events::EventKind;
use futures_util::future::BoxFuture;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::batch::{self, Answer, JsonApi};
use crate::linkedin::amount;
use crate::model::{Conversion, Outcome, PerKind};
use crate::settings::{
    one_of, optional_bool, per_kind_names, required_secret, required_shaped, Errors, Obj,
};
use crate::{
    classify, click_value, client_of, event_wire_id, hashing, order_id, page_of, user_data_denied,
    Exchange, Limits, Platform, Platforms, RequestTarget, SendReport,
};

/// Most events in one request.
pub const MAX_PER_REQUEST: usize = 2000;

/// The oldest event Snap takes.
pub const MAX_EVENT_AGE: Duration = Duration::from_secs(37 * 24 * 3600);

/// Snap's `action_source` values.
pub const ACTION_SOURCES: &str = "WEB, MOBILE_APP, OFFLINE";

/// `snapchat` destination config (public).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapchatConfig {
    /// The Snap pixel id.
    pub pixel_id: String,
    /// `action_source` (default `WEB`).
    #[serde(default = "default_action_source")]
    pub action_source: String,
    /// Event names per kind (default `SIGN_UP` / `PURCHASE`).
    #[serde(default = "default_event_names")]
    pub event_names: PerKind,
    /// Send to `/events/validate`: checked by Snap, recorded nowhere.
    #[serde(default)]
    pub test_mode: bool,
    /// Send events without an `ScCid`, matched on user data alone.
    #[serde(default)]
    pub match_without_click_id: bool,
}

fn default_action_source() -> String {
    "WEB".into()
}

fn default_event_names() -> PerKind {
    PerKind {
        lead: Some("SIGN_UP".into()),
        sale: Some("PURCHASE".into()),
    }
}

/// `snapchat` credentials (write-only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapchatCredentials {
    /// The Conversions API token from Business Manager.
    pub access_token: String,
}

impl std::fmt::Debug for SnapchatCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapchatCredentials { .. }")
    }
}

/// The `snapchat` adapter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapchat;

impl Platform for Snapchat {
    type Config = SnapchatConfig;
    type Credentials = SnapchatCredentials;

    fn destination_type(&self) -> events::DestinationType {
        events::DestinationType::Snapchat
    }

    fn click_ids(&self) -> &'static [&'static str] {
        &["scCid"]
    }

    fn check_config(
        &self,
        errors: &mut Errors,
        obj: &mut Obj<'_>,
        _kinds: &[EventKind],
    ) -> Option<SnapchatConfig> {
        let pixel_id = required_shaped(
            errors,
            obj,
            "pixelId",
            "a Snap pixel id (letters, digits and -)",
            |id| id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
        );
        let action_source = one_of(errors, obj, "actionSource", ACTION_SOURCES);
        let event_names = per_kind_names(errors, obj, "eventNames", ("SIGN_UP", "PURCHASE"));
        let test_mode = optional_bool(errors, obj, "testMode");
        let match_without_click_id = optional_bool(errors, obj, "matchWithoutClickId");
        Some(SnapchatConfig {
            pixel_id: pixel_id?,
            action_source: action_source.ok()?.unwrap_or_else(default_action_source),
            event_names: event_names?,
            test_mode: test_mode.ok()?.unwrap_or(false),
            match_without_click_id: match_without_click_id.ok()?.unwrap_or(false),
        })
    }

    fn check_credentials(
        &self,
        errors: &mut Errors,
        obj: &mut Obj<'_>,
    ) -> Option<SnapchatCredentials> {
        required_secret(errors, obj, "accessToken")
            .map(|access_token| SnapchatCredentials { access_token })
    }

    fn limits(&self, _config: &SnapchatConfig) -> Limits {
        Limits {
            batch_size: MAX_PER_REQUEST,
            max_event_age: Some(MAX_EVENT_AGE),
            max_click_age: None,
            dedup_key: "event_id (evt_ id) = the pixel's client_dedup_id",
            test_mode: Some("testMode (/events/validate)"),
        }
    }

    fn matches_without_click_id(&self, config: &SnapchatConfig) -> bool {
        config.match_without_click_id
    }

    fn send<'a>(
        &'a self,
        http: &'a Platforms,
        config: &'a SnapchatConfig,
        credentials: &'a SnapchatCredentials,
        batch: &'a [Conversion],
        now: OffsetDateTime,
    ) -> BoxFuture<'a, SendReport> {
        Box::pin(batch::send::<Self>(http, config, credentials, batch, now))
    }
}

/// Snap's form of a phone: digits only, no `+`, no leading zeros.
pub fn phone_sha256(phone: &str) -> Option<String> {
    hashing::meta_phone_sha256(phone)
}

impl JsonApi for Snapchat {
    type Config = SnapchatConfig;
    type Credentials = SnapchatCredentials;

    type Row = Value;

    const TARGET: RequestTarget = RequestTarget::SnapchatEvents;

    fn secrets(credentials: &SnapchatCredentials) -> Vec<&str> {
        vec![credentials.access_token.as_str()]
    }

    fn row(
        config: &SnapchatConfig,
        conversion: &Conversion,
        _now: OffsetDateTime,
    ) -> Result<Value, Outcome> {
        let event = &conversion.event;
        let click = click_value(conversion, "scCid");
        if click.is_none() && !config.match_without_click_id {
            return Err(Outcome::Skipped {
                reason: "no_click_id: no scCid, and matchWithoutClickId is off".into(),
            });
        }
        let denied = user_data_denied(conversion);
        let mut user = Map::new();
        let mut matchable = click.is_some();
        if !denied {
            if let Some(hash) = event
                .email
                .as_ref()
                .and_then(|e| hashing::meta_email_sha256(e.as_str()))
            {
                user.insert("em".into(), json!([hash]));
                matchable = true;
            }
            if let Some(hash) = event.phone.as_ref().and_then(|p| phone_sha256(p.as_str())) {
                user.insert("ph".into(), json!([hash]));
                matchable = true;
            }
            if let Some(id) = event
                .customer_external_id
                .as_deref()
                .map(|id| id.trim().to_lowercase())
                .filter(|id| !id.is_empty())
            {
                user.insert("external_id".into(), json!([hashing::sha256_hex(&id)]));
            }
            let (ip, agent) = client_of(conversion);
            matchable |= ip.is_some() && agent.is_some();
            if let Some(ip) = ip {
                user.insert("client_ip_address".into(), ip.into());
            }
            if let Some(agent) = agent {
                user.insert("client_user_agent".into(), agent.into());
            }
        }
        if let Some(click) = click {
            user.insert("sc_click_id".into(), click.into());
        }
        if let Some(cookie) = click_value(conversion, "scid") {
            user.insert("sc_cookie1".into(), cookie.into());
        }
        if !matchable {
            return Err(Outcome::Skipped {
                reason: if denied {
                    "consent_denied: adUserData is denied and there is no scCid to send".into()
                } else {
                    "no_identifiers: Snap needs an email, a phone, or IP and user agent".into()
                },
            });
        }
        let name = conversion
            .mapped_event_name()
            .or_else(|| config.event_names.get(event.kind))
            .unwrap_or(match event.kind {
                EventKind::Lead => "SIGN_UP",
                EventKind::Sale => "PURCHASE",
            });
        let mut custom = Map::new();
        if let Some(money) = event.value {
            if let Some(value) = money
                .amount()
                .to_f64()
                .and_then(serde_json::Number::from_f64)
            {
                custom.insert("value".into(), Value::Number(value));
                custom.insert("currency".into(), money.currency().code().into());
            }
        }
        if event.kind == EventKind::Sale {
            custom.insert("order_id".into(), order_id(conversion).into());
        }
        if !event.products.is_empty() {
            let count: u64 = event.products.iter().map(|p| u64::from(p.quantity)).sum();
            custom.insert("num_items".into(), count.into());
            let contents: Vec<Value> = event
                .products
                .iter()
                .map(|p| {
                    let mut content = json!({"id": p.id, "quantity": p.quantity.to_string()});
                    if let (Some(price), Some(map)) = (p.price, content.as_object_mut()) {
                        map.insert("item_price".into(), amount(price).into());
                    }
                    content
                })
                .collect();
            custom.insert("contents".into(), contents.into());
        }
        let mut row = Map::new();
        row.insert("event_name".into(), name.into());
        row.insert(
            "event_time".into(),
            event
                .timestamp
                .min(conversion.received_at)
                .unix_timestamp()
                .into(),
        );
        row.insert("event_id".into(), event_wire_id(conversion.event_id).into());
        row.insert("action_source".into(), config.action_source.clone().into());
        if let Some(url) = page_of(conversion) {
            row.insert("event_source_url".into(), url.into());
        }
        row.insert("user_data".into(), Value::Object(user));
        if !custom.is_empty() {
            row.insert("custom_data".into(), Value::Object(custom));
        }
        Ok(Value::Object(row))
    }

    fn request(
        platforms: &Platforms,
        config: &SnapchatConfig,
        credentials: &SnapchatCredentials,
        _token: Option<&str>,
        rows: &[&Value],
    ) -> Result<reqwest::RequestBuilder, Outcome> {
        let suffix = if config.test_mode {
            "/events/validate"
        } else {
            "/events"
        };
        let address = crate::join(
            &platforms.endpoints.snapchat,
            &format!("/v3/{}{suffix}", config.pixel_id.trim()),
        );
        let mut url = match reqwest::Url::parse(&address) {
            Ok(url) => url,
            // CONVRELAY_SNAPCHAT_URL is not a URL (a misconfigured setting): retried, so that
            // nothing is lost while the setting is fixed; its URL is never recorded.
            Err(_) => {
                return Err(classify::retry(
                    "the Snap Conversions API base address is not a valid URL",
                    None,
                ))
            }
        };
        url.query_pairs_mut()
            .append_pair("access_token", &credentials.access_token);
        Ok(platforms
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json!({ "data": rows }).to_string()))
    }

    fn answer(exchange: &Exchange, _rows: &[&Value]) -> Answer {
        let status = exchange.status.unwrap_or(0);
        let body = exchange.json();
        let reason = batch::message(exchange, &["/reason", "/error_msgs", "/message"]);
        if !exchange.is_success() {
            if let Some(index) = body
                .as_ref()
                .and_then(|b| b.get("event"))
                .and_then(Value::as_u64)
                .and_then(|i| usize::try_from(i).ok())
            {
                return Answer::RefusedFor(vec![(index, reason)]);
            }
            return batch::refused(exchange, &reason);
        }
        match body
            .as_ref()
            .and_then(|b| b.get("status"))
            .and_then(Value::as_str)
        {
            Some("VALID") => Answer::All(Outcome::Succeeded),
            Some("INVALID") => match body
                .as_ref()
                .and_then(|b| b.get("event"))
                .and_then(Value::as_u64)
                .and_then(|i| usize::try_from(i).ok())
            {
                Some(index) => Answer::RefusedFor(vec![(index, reason)]),
                None => Answer::All(classify::permanent(format!("Snap: INVALID: {reason}"))),
            },
            _ => Answer::All(classify::unexpected_body(status, "no status")),
        }
    }
}
