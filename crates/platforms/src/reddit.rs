//! Reddit Conversions API v3: `POST /api/v3/pixels/{pixel id}/conversion_events` with the
//! pixel's conversion access token, body `{"data": {"test_id"?, "events": [...]}}`.
//!
//! Each event has its time in epoch **milliseconds**, `action_source`, the tracking type of the
//! event's kind (`LEAD`, `PURCHASE` by default), the `rdt_cid` as `click_id`, and `metadata`
//! with `conversion_id`, Reddit's dedup key: the invoice id of a sale, the lead id of a lead, else
//! our event id, the same on every attempt. User data follows Reddit's own rules: the email
//! lower-cased with everything from a `+` to the `@` and every other non-alphanumeric character
//! of the local part removed (for every domain, unlike Google's Gmail-only rule), then SHA-256;
//! the phone as E.164 with its `+`, the external id and the IP address SHA-256 too; the user
//! agent as it is. Nothing of the person goes when ad user data is denied: only the click id.
//!
//! Reddit refuses the whole request for one invalid event (400, `invalid_events` with each
//! refused event): those fail and the rest are sent again at once. 401 is permanent; 429 and
//! 5xx are retried. Events more than 7 days old are refused, so they are skipped before sending.
//! Test mode: `testId` from Events Manager, sent as `data.test_id`.

use std::time::Duration;

use events::EventKind;
use futures_util::future::BoxFuture;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::batch::{self, Answer, JsonApi};
use crate::model::{Conversion, Outcome, PerKind};
use crate::settings::{
    one_of, optional_bool, optional_string, required_secret, required_shaped, Errors, Obj,
    Recorded, MAX_STRING,
};
use crate::{
    click_value, client_of, hashing, order_id, page_of, user_data_denied, Exchange, Limits,
    Platform, Platforms, RequestTarget, SendReport,
};

/// Most events in one request.
pub const MAX_PER_REQUEST: usize = 1000;

/// The oldest event Reddit takes ("event_at timestamp must be less than 168h0m0s old").
pub const MAX_EVENT_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Reddit's tracking types (`CUSTOM` needs a custom name, which we do not send).
pub const TRACKING_TYPES: &str =
    "PAGE_VISIT, VIEW_CONTENT, SEARCH, ADD_TO_CART, ADD_TO_WISHLIST, LEAD, PURCHASE, SIGN_UP";

/// Reddit's `action_source` values.
pub const ACTION_SOURCES: &str = "WEBSITE, APP, PHYSICAL_STORE, OTHER";

/// `reddit` destination config (public).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedditConfig {
    /// The pixel id (`t2_…` or `a2_…`).
    pub pixel_id: String,
    /// `action_source` (default `WEBSITE`).
    #[serde(default = "default_action_source")]
    pub action_source: String,
    /// The tracking type per kind (default `LEAD` / `PURCHASE`).
    #[serde(default = "default_event_names")]
    pub event_names: PerKind,
    /// `data.test_id` from Events Manager: the events show in its test tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_id: Option<String>,
    /// Send events without an `rdtCid`, matched on user data alone.
    #[serde(default)]
    pub match_without_click_id: bool,
}

fn default_action_source() -> String {
    "WEBSITE".into()
}

fn default_event_names() -> PerKind {
    PerKind {
        lead: Some("LEAD".into()),
        sale: Some("PURCHASE".into()),
    }
}

/// `reddit` credentials (write-only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedditCredentials {
    /// The pixel's conversion access token.
    pub access_token: String,
}

impl std::fmt::Debug for RedditCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedditCredentials { .. }")
    }
}

/// The `reddit` adapter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reddit;

fn is_pixel_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Platform for Reddit {
    type Config = RedditConfig;
    type Credentials = RedditCredentials;

    fn destination_type(&self) -> events::DestinationType {
        events::DestinationType::Reddit
    }

    fn click_ids(&self) -> &'static [&'static str] {
        &["rdtCid"]
    }

    fn check_config(
        &self,
        errors: &mut Errors,
        obj: &mut Obj<'_>,
        _kinds: &[EventKind],
    ) -> Option<RedditConfig> {
        let pixel_id = required_shaped(
            errors,
            obj,
            "pixelId",
            "a Reddit pixel id (letters, digits and _, e.g. t2_abc123)",
            is_pixel_id,
        );
        let action_source = one_of(errors, obj, "actionSource", ACTION_SOURCES);
        let event_names = match obj.get("eventNames") {
            None => Ok(default_event_names()),
            Some(value) => {
                let path = obj.path("eventNames");
                match crate::settings::object(errors, &path, value) {
                    None => Err(Recorded),
                    Some(map) => {
                        let mut names = Obj::new(map, path);
                        let lead = one_of(errors, &mut names, "lead", TRACKING_TYPES);
                        let sale = one_of(errors, &mut names, "sale", TRACKING_TYPES);
                        names.finish(errors);
                        match (lead, sale) {
                            (Ok(lead), Ok(sale)) => Ok(PerKind {
                                lead: lead.or_else(|| Some("LEAD".into())),
                                sale: sale.or_else(|| Some("PURCHASE".into())),
                            }),
                            _ => Err(Recorded),
                        }
                    }
                }
            }
        };
        let test_id = optional_string(errors, obj, "testId", MAX_STRING);
        let match_without_click_id = optional_bool(errors, obj, "matchWithoutClickId");
        Some(RedditConfig {
            pixel_id: pixel_id?,
            action_source: action_source.ok()?.unwrap_or_else(default_action_source),
            event_names: event_names.ok()?,
            test_id: test_id.ok()?,
            match_without_click_id: match_without_click_id.ok()?.unwrap_or(false),
        })
    }

    fn check_credentials(
        &self,
        errors: &mut Errors,
        obj: &mut Obj<'_>,
    ) -> Option<RedditCredentials> {
        required_secret(errors, obj, "accessToken")
            .map(|access_token| RedditCredentials { access_token })
    }

    fn limits(&self, _config: &RedditConfig) -> Limits {
        Limits {
            batch_size: MAX_PER_REQUEST,
            max_event_age: Some(MAX_EVENT_AGE),
            max_click_age: None,
            dedup_key: "metadata.conversion_id (invoiceId, leadId or evt_ id)",
            test_mode: Some("testId"),
        }
    }

    fn matches_without_click_id(&self, config: &RedditConfig) -> bool {
        config.match_without_click_id
    }

    fn send<'a>(
        &'a self,
        http: &'a Platforms,
        config: &'a RedditConfig,
        credentials: &'a RedditCredentials,
        batch: &'a [Conversion],
        now: OffsetDateTime,
    ) -> BoxFuture<'a, SendReport> {
        Box::pin(batch::send::<Self>(http, config, credentials, batch, now))
    }
}

/// Reddit's form of an email: lower-cased; in the local part, everything from the first `+`
/// dropped and every character that is not a letter or digit removed.
pub fn email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    let (local, domain) = email.rsplit_once('@')?;
    let local = local.split('+').next().unwrap_or("");
    let local: String = local.chars().filter(|c| c.is_alphanumeric()).collect();
    if local.is_empty() || !domain.contains('.') {
        return None;
    }
    Some(format!("{local}@{domain}"))
}

/// SHA-256 hex of [`email`].
pub fn email_sha256(raw: &str) -> Option<String> {
    email(raw).map(|email| hashing::sha256_hex(&email))
}

impl JsonApi for Reddit {
    type Config = RedditConfig;
    type Credentials = RedditCredentials;

    type Row = Value;

    const TARGET: RequestTarget = RequestTarget::RedditConversionEvents;

    fn secrets(credentials: &RedditCredentials) -> Vec<&str> {
        vec![credentials.access_token.as_str()]
    }

    fn row(
        config: &RedditConfig,
        conversion: &Conversion,
        _now: OffsetDateTime,
    ) -> Result<Value, Outcome> {
        let event = &conversion.event;
        let click = click_value(conversion, "rdtCid");
        if click.is_none() && !config.match_without_click_id {
            return Err(Outcome::Skipped {
                reason: "no_click_id: no rdtCid, and matchWithoutClickId is off".into(),
            });
        }
        let denied = user_data_denied(conversion);
        let mut user = Map::new();
        if !denied {
            if let Some(hash) = event.email.as_ref().and_then(|e| email_sha256(e.as_str())) {
                user.insert("email".into(), hash.into());
            }
            if let Some(hash) = event
                .phone
                .as_ref()
                .and_then(|p| hashing::google_phone_sha256(p.as_str()))
            {
                user.insert("phone_number".into(), hash.into());
            }
            if let Some(id) = event
                .customer_external_id
                .as_deref()
                .map(str::trim)
                .filter(|id| !id.is_empty())
            {
                user.insert("external_id".into(), hashing::sha256_hex(id).into());
            }
            let (ip, agent) = client_of(conversion);
            if let Some(ip) = ip {
                user.insert("ip_address".into(), hashing::sha256_hex(&ip).into());
            }
            if let Some(agent) = agent {
                user.insert("user_agent".into(), agent.into());
            }
        }
        if click.is_none() && user.is_empty() {
            return Err(Outcome::Skipped {
                reason: if denied {
                    "consent_denied: adUserData is denied and there is no rdtCid to send".into()
                } else {
                    "no_identifiers: nothing Reddit could match the event on".into()
                },
            });
        }
        let kind_default = match event.kind {
            EventKind::Lead => "LEAD",
            EventKind::Sale => "PURCHASE",
        };
        let tracking_type = conversion
            .mapped_event_name()
            .or_else(|| config.event_names.get(event.kind))
            .unwrap_or(kind_default);
        let mut metadata = Map::new();
        metadata.insert("conversion_id".into(), order_id(conversion).into());
        if let Some(money) = event.value {
            if let Some(value) = money
                .amount()
                .to_f64()
                .and_then(serde_json::Number::from_f64)
            {
                metadata.insert("value".into(), Value::Number(value));
                metadata.insert("currency".into(), money.currency().code().into());
            }
        }
        if !event.products.is_empty() {
            let count: u64 = event.products.iter().map(|p| u64::from(p.quantity)).sum();
            metadata.insert("item_count".into(), count.into());
            let products: Vec<Value> = event
                .products
                .iter()
                .map(|p| {
                    let mut product = json!({"id": p.id});
                    if let (Some(name), Some(map)) = (p.name.as_deref(), product.as_object_mut()) {
                        map.insert("name".into(), name.into());
                    }
                    product
                })
                .collect();
            metadata.insert("products".into(), products.into());
        }
        let mut row = Map::new();
        row.insert(
            "event_at".into(),
            ((event
                .timestamp
                .min(conversion.received_at)
                .unix_timestamp_nanos()
                / 1_000_000) as i64)
                .into(),
        );
        row.insert("action_source".into(), config.action_source.clone().into());
        row.insert("type".into(), json!({"tracking_type": tracking_type}));
        if let Some(click) = click {
            row.insert("click_id".into(), click.into());
        }
        if let Some(url) = page_of(conversion) {
            row.insert("event_source_url".into(), url.into());
        }
        if !user.is_empty() {
            row.insert("user".into(), Value::Object(user));
        }
        row.insert("metadata".into(), Value::Object(metadata));
        Ok(Value::Object(row))
    }

    fn request(
        platforms: &Platforms,
        config: &RedditConfig,
        credentials: &RedditCredentials,
        _token: Option<&str>,
        rows: &[&Value],
    ) -> Result<reqwest::RequestBuilder, Outcome> {
        let mut data = json!({ "events": rows });
        if let (Some(test_id), Some(map)) = (
            config
                .test_id
                .as_deref()
                .map(str::trim)
                .filter(|id| !id.is_empty()),
            data.as_object_mut(),
        ) {
            map.insert("test_id".into(), test_id.into());
        }
        Ok(platforms
            .client
            .post(crate::join(
                &platforms.endpoints.reddit,
                &format!(
                    "/api/v3/pixels/{}/conversion_events",
                    config.pixel_id.trim()
                ),
            ))
            .bearer_auth(&credentials.access_token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json!({ "data": data }).to_string()))
    }

    fn answer(exchange: &Exchange, rows: &[&Value]) -> Answer {
        let status = exchange.status.unwrap_or(0);
        if exchange.is_success() {
            return Answer::All(Outcome::Succeeded);
        }
        let text = batch::message(
            exchange,
            &["/message", "/error/explanation", "/error/reason"],
        );
        if status == 400 {
            let named = refused_events(exchange, rows);
            if !named.is_empty() {
                return Answer::RefusedFor(named);
            }
        }
        batch::refused(exchange, &text)
    }
}

/// The rows a 400 names in `invalid_events`, found by their `metadata.conversion_id` (Reddit
/// echoes the refused events, not their positions).
fn refused_events(exchange: &Exchange, rows: &[&Value]) -> Vec<(usize, String)> {
    let Some(body) = exchange.json() else {
        return Vec::new();
    };
    let mut named = Vec::new();
    for invalid in body
        .get("invalid_events")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let message = invalid
            .get("error_message")
            .and_then(Value::as_str)
            .unwrap_or("invalid event")
            .to_owned();
        let id = invalid.pointer("/event/metadata/conversion_id");
        if let Some(position) = rows
            .iter()
            .position(|row| id.is_some() && row.pointer("/metadata/conversion_id") == id)
        {
            named.push((position, message));
        }
    }
    named
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_follow_reddits_own_rule_for_every_domain() {
        assert_eq!(
            email("Al.ice$+Apple@Example.Com").as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(
            email_sha256("Al.ice$+Apple@Example.Com").as_deref(),
            Some("ff8d9819fc0e12bf0d24892e45987e249a28dce836a85cad60e28eaaa8c6d976")
        );
        assert_eq!(email("+tag@example.com"), None);
    }
}
