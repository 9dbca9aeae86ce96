//! TikTok Events API 2.0: `POST /open_api/v1.3/event/track/` with the pixel's `Access-Token`,
//! body `{"event_source", "event_source_id", "test_event_code"?, "data": [...]}` (the 1.0
//! `pixel/track` format was retired in 2024 and is never sent).
//!
//! Each event has its name per kind (`Lead` and `Purchase` by default), the time in Unix
//! **seconds**, our event id as `event_id` (TikTok drops a second event with the same name and id
//! within 48 hours, so every attempt carries the same one), the `ttclid` and the `_ttp` cookie,
//! and user data hashed by TikTok's rules: email trimmed and lower-cased, phone as E.164 **with**
//! its `+`, external id lower-cased, each SHA-256 hex in an array; IP and user agent as they are.
//! When the person denied ad user data none of that goes, and the event is marked
//! `limited_data_use`.
//!
//! TikTok answers HTTP 200 with a `code`: 0 is success, 20001 partial success (TikTok names no
//! event, so all count as sent); 40100, 42900, 61000 (throttling), 50000, 50002, 51xxx and 60001
//! (its own failures) are retried; 40102, 40104 and 40105 mean the token must be replaced; every
//! other code is permanent. The oldest event TikTok takes is not documented: no age limit is
//! applied. Test mode: `testEventCode` (Events Manager, Test Events).

use events::EventKind;
use futures_util::future::BoxFuture;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::batch::{self, Answer, JsonApi};
use crate::model::{Conversion, Outcome, PerKind};
use crate::settings::{
    one_of, optional_bool, optional_string, per_kind_names, required_secret, required_shaped,
    Errors, Obj, MAX_STRING,
};
use crate::{
    classify, click_value, client_of, event_wire_id, hashing, order_id, page_of, user_data_denied,
    Exchange, Limits, Platform, Platforms, RequestTarget, SendReport,
};

/// Most events in one request.
pub const MAX_PER_REQUEST: usize = 1000;

/// The path of the Events API 2.0.
pub const PATH: &str = "/open_api/v1.3/event/track/";

/// TikTok's `event_source` values.
pub const EVENT_SOURCES: &str = "web, offline, crm";

/// `tiktok` destination config (public).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TikTokConfig {
    /// `event_source_id`: the pixel code for `web`, the event set id for `offline` and `crm`.
    pub pixel_code: String,
    /// `event_source` (default `web`).
    #[serde(default = "default_event_source")]
    pub event_source: String,
    /// Event names per kind (default `Lead` / `Purchase`).
    #[serde(default = "default_event_names")]
    pub event_names: PerKind,
    /// `test_event_code`, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_event_code: Option<String>,
    /// Send events without a `ttclid`, matched on user data (and `_ttp`) alone.
    #[serde(default)]
    pub match_without_click_id: bool,
}

fn default_event_source() -> String {
    "web".into()
}

fn default_event_names() -> PerKind {
    PerKind {
        lead: Some("Lead".into()),
        sale: Some("Purchase".into()),
    }
}

/// `tiktok` credentials (write-only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TikTokCredentials {
    /// The Events API access token generated for the pixel.
    pub access_token: String,
}

impl std::fmt::Debug for TikTokCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TikTokCredentials { .. }")
    }
}

/// The `tiktok` adapter.
#[derive(Debug, Clone, Copy, Default)]
pub struct TikTok;

impl Platform for TikTok {
    type Config = TikTokConfig;
    type Credentials = TikTokCredentials;

    fn destination_type(&self) -> events::DestinationType {
        events::DestinationType::TikTok
    }

    fn click_ids(&self) -> &'static [&'static str] {
        &["ttclid"]
    }

    fn check_config(
        &self,
        errors: &mut Errors,
        obj: &mut Obj<'_>,
        _kinds: &[EventKind],
    ) -> Option<TikTokConfig> {
        let pixel_code = required_shaped(
            errors,
            obj,
            "pixelCode",
            "a TikTok pixel code or event set id (letters and digits)",
            |code| code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric()),
        );
        let event_source = one_of(errors, obj, "eventSource", EVENT_SOURCES);
        let event_names = per_kind_names(errors, obj, "eventNames", ("Lead", "Purchase"));
        let test_event_code = optional_string(errors, obj, "testEventCode", MAX_STRING);
        let match_without_click_id = optional_bool(errors, obj, "matchWithoutClickId");
        Some(TikTokConfig {
            pixel_code: pixel_code?,
            event_source: event_source.ok()?.unwrap_or_else(default_event_source),
            event_names: event_names?,
            test_event_code: test_event_code.ok()?,
            match_without_click_id: match_without_click_id.ok()?.unwrap_or(false),
        })
    }

    fn check_credentials(
        &self,
        errors: &mut Errors,
        obj: &mut Obj<'_>,
    ) -> Option<TikTokCredentials> {
        required_secret(errors, obj, "accessToken")
            .map(|access_token| TikTokCredentials { access_token })
    }

    fn limits(&self, _config: &TikTokConfig) -> Limits {
        Limits {
            batch_size: MAX_PER_REQUEST,
            max_event_age: None,
            max_click_age: None,
            dedup_key: "event + event_id (evt_ id)",
            test_mode: Some("testEventCode"),
        }
    }

    fn matches_without_click_id(&self, config: &TikTokConfig) -> bool {
        config.match_without_click_id
    }

    fn send<'a>(
        &'a self,
        http: &'a Platforms,
        config: &'a TikTokConfig,
        credentials: &'a TikTokCredentials,
        batch: &'a [Conversion],
        now: OffsetDateTime,
    ) -> BoxFuture<'a, SendReport> {
        Box::pin(batch::send::<Self>(http, config, credentials, batch, now))
    }
}

/// TikTok codes that mean "try again later": throttling and its own failures.
fn retried(code: i64) -> bool {
    matches!(code, 40100 | 42900 | 61000 | 50000 | 50002 | 60001) || (51000..=51099).contains(&code)
}

impl JsonApi for TikTok {
    type Config = TikTokConfig;
    type Credentials = TikTokCredentials;

    type Row = Value;

    const TARGET: RequestTarget = RequestTarget::TikTokEvents;

    fn secrets(credentials: &TikTokCredentials) -> Vec<&str> {
        vec![credentials.access_token.as_str()]
    }

    fn row(
        config: &TikTokConfig,
        conversion: &Conversion,
        _now: OffsetDateTime,
    ) -> Result<Value, Outcome> {
        let event = &conversion.event;
        let ttclid = click_value(conversion, "ttclid");
        if ttclid.is_none() && !config.match_without_click_id {
            return Err(Outcome::Skipped {
                reason: "no_click_id: no ttclid, and matchWithoutClickId is off".into(),
            });
        }
        let denied = user_data_denied(conversion);
        let mut user = Map::new();
        if let Some(ttclid) = ttclid {
            user.insert("ttclid".into(), ttclid.into());
        }
        if let Some(ttp) = click_value(conversion, "ttp") {
            user.insert("ttp".into(), ttp.into());
        }
        if !denied {
            if let Some(hash) = event
                .email
                .as_ref()
                .and_then(|e| hashing::meta_email_sha256(e.as_str()))
            {
                user.insert("email".into(), json!([hash]));
            }
            if let Some(hash) = event
                .phone
                .as_ref()
                .and_then(|p| hashing::google_phone_sha256(p.as_str()))
            {
                user.insert("phone".into(), json!([hash]));
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
            if let Some(ip) = ip {
                user.insert("ip".into(), ip.into());
            }
            if let Some(agent) = agent {
                user.insert("user_agent".into(), agent.into());
            }
        }
        if user.is_empty() {
            return Err(Outcome::Skipped {
                reason: if denied {
                    "consent_denied: adUserData is denied and there is no ttclid or ttp to send"
                        .into()
                } else {
                    "no_identifiers: nothing TikTok could match the event on".into()
                },
            });
        }
        let name = conversion
            .mapped_event_name()
            .or_else(|| config.event_names.get(event.kind))
            .unwrap_or(match event.kind {
                EventKind::Lead => "Lead",
                EventKind::Sale => "Purchase",
            });
        let mut properties = Map::new();
        if let Some(money) = event.value {
            if let Some(value) = money
                .amount()
                .to_f64()
                .and_then(serde_json::Number::from_f64)
            {
                properties.insert("value".into(), Value::Number(value));
                properties.insert("currency".into(), money.currency().code().into());
            }
        }
        if event.kind == EventKind::Sale {
            properties.insert("order_id".into(), order_id(conversion).into());
        }
        if !event.products.is_empty() {
            let contents: Vec<Value> = event
                .products
                .iter()
                .map(|p| {
                    let mut content = json!({"content_id": p.id, "quantity": p.quantity});
                    if let Some(map) = content.as_object_mut() {
                        if let Some(price) = p
                            .price
                            .and_then(|d| d.to_f64())
                            .and_then(serde_json::Number::from_f64)
                        {
                            map.insert("price".into(), Value::Number(price));
                        }
                        if let Some(name) = p.name.as_deref() {
                            map.insert("content_name".into(), name.into());
                        }
                    }
                    content
                })
                .collect();
            properties.insert("contents".into(), contents.into());
            properties.insert("content_type".into(), "product".into());
        }
        let mut row = Map::new();
        row.insert("event".into(), name.into());
        row.insert(
            "event_time".into(),
            event
                .timestamp
                .min(conversion.received_at)
                .unix_timestamp()
                .into(),
        );
        row.insert("event_id".into(), event_wire_id(conversion.event_id).into());
        row.insert("user".into(), Value::Object(user));
        if !properties.is_empty() {
            row.insert("properties".into(), Value::Object(properties));
        }
        if let Some(url) = page_of(conversion) {
            row.insert("page".into(), json!({"url": url}));
        }
        row.insert("limited_data_use".into(), denied.into());
        Ok(Value::Object(row))
    }

    fn request(
        platforms: &Platforms,
        config: &TikTokConfig,
        credentials: &TikTokCredentials,
        _token: Option<&str>,
        rows: &[&Value],
    ) -> Result<reqwest::RequestBuilder, Outcome> {
        let mut body = json!({
            "event_source": config.event_source,
            "event_source_id": config.pixel_code.trim(),
            "data": rows,
        });
        if let (Some(code), Some(map)) = (
            config
                .test_event_code
                .as_deref()
                .map(str::trim)
                .filter(|code| !code.is_empty()),
            body.as_object_mut(),
        ) {
            map.insert("test_event_code".into(), code.into());
        }
        Ok(platforms
            .client
            .post(crate::join(&platforms.endpoints.tiktok, PATH))
            .header("Access-Token", &credentials.access_token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string()))
    }

    fn answer(exchange: &Exchange, _rows: &[&Value]) -> Answer {
        let status = exchange.status.unwrap_or(0);
        if !exchange.is_success() {
            let text = batch::message(exchange, &["/message"]);
            return batch::refused(exchange, &text);
        }
        let Some(body) = exchange.json().filter(Value::is_object) else {
            return Answer::All(classify::unexpected_body(status, "not JSON"));
        };
        let Some(code) = body.get("code").and_then(Value::as_i64) else {
            return Answer::All(classify::unexpected_body(status, "no code"));
        };
        let message = body.get("message").and_then(Value::as_str).unwrap_or("");
        let text = format!("TikTok code {code}: {message}");
        Answer::All(match code {
            0 | 20001 => Outcome::Succeeded,
            code if retried(code) => classify::retry(text, exchange.retry_after()),
            40102 | 40104 | 40105 => classify::permanent(format!(
                "{text}; the access token was refused: replace the destination's credentials"
            )),
            _ => classify::permanent(text),
        })
    }
}
