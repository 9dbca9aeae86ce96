//! Meta Conversions API v26.0: `POST /v26.0/{pixel id}/events` with server events.
//!
//! Every event carries our event id as `event_id` on every attempt, so Meta counts a re-send
//! once; `event_time` is in Unix seconds; `user_data` holds the click id as `fbc` (the cookie
//! when the sender had it, else `fb.1.<click time in ms>.<fbclid>` with the fbclid exactly as
//! received), `fbp`, the client's IP and user agent unhashed, and the email, phone and external
//! id hashed by Meta's rules (phone digits without `+`).
//!
//! Meta refuses a whole request when one of its events is more than 7 days old: the limits say
//! so, and such events are skipped before sending. A request refused for an invalid parameter is
//! split in halves until the events at fault are found, so that one bad event does not fail its batch.

use std::time::Duration;

use events::EventKind;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::batch::{self, Answer, JsonApi};
use crate::model::{Conversion, Outcome, PerKind};
use crate::settings::{
    digits, one_of, optional_bool, optional_string, per_kind_names, required, required_secret,
    Errors, Obj, MAX_STRING,
};
use crate::{
    classify, event_wire_id, hashing, order_id, Exchange, Limits, Platform, Platforms,
    RequestTarget, SendReport,
};

/// Meta's `action_source` values (SDK 26 enum).
pub const ACTION_SOURCES: &str =
    "email, website, app, phone_call, chat, physical_store, system_generated, business_messaging, other";

/// `meta` destination config (public).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaConfig {
    /// Pixel (dataset) id, digits.
    pub pixel_id: String,
    /// `action_source` (default `system_generated`).
    #[serde(default = "default_action_source")]
    pub action_source: String,
    /// `test_event_code`, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_event_code: Option<String>,
    /// Event names per kind (default `Lead` / `Purchase`).
    #[serde(default = "default_event_names")]
    pub event_names: PerKind,
    /// Send events without fbclid/fbc, matched on user data only.
    #[serde(default)]
    pub match_without_click_id: bool,
}

fn default_action_source() -> String {
    "system_generated".into()
}

fn default_event_names() -> PerKind {
    PerKind {
        lead: Some("Lead".into()),
        sale: Some("Purchase".into()),
    }
}

/// `meta` credentials (write-only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaCredentials {
    /// System-user access token.
    pub access_token: String,
}

impl std::fmt::Debug for MetaCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetaCredentials { .. }")
    }
}

/// The `meta` adapter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Meta;

impl Platform for Meta {
    type Config = MetaConfig;
    type Credentials = MetaCredentials;

    fn destination_type(&self) -> events::DestinationType {
        events::DestinationType::Meta
    }

    fn click_ids(&self) -> &'static [&'static str] {
        &["fbclid", "fbc"]
    }

    fn check_config(
        &self,
        errors: &mut Errors,
        obj: &mut Obj<'_>,
        _kinds: &[EventKind],
    ) -> Option<MetaConfig> {
        let pixel = required(errors, obj, "pixelId")
            .and_then(|v| digits(errors, &obj.path("pixelId"), v, "a pixel (dataset) id"));
        let action_source = one_of(errors, obj, "actionSource", ACTION_SOURCES);
        let test_event_code = optional_string(errors, obj, "testEventCode", MAX_STRING);
        let event_names = per_kind_names(errors, obj, "eventNames", ("Lead", "Purchase"));
        let match_without_click_id = optional_bool(errors, obj, "matchWithoutClickId");
        Some(MetaConfig {
            pixel_id: pixel?,
            action_source: action_source
                .ok()?
                .unwrap_or_else(|| "system_generated".to_owned()),
            test_event_code: test_event_code.ok()?,
            event_names: event_names?,
            match_without_click_id: match_without_click_id.ok()?.unwrap_or(false),
        })
    }

    fn check_credentials(&self, errors: &mut Errors, obj: &mut Obj<'_>) -> Option<MetaCredentials> {
        required_secret(errors, obj, "accessToken")
            .map(|access_token| MetaCredentials { access_token })
    }

    fn limits(&self, config: &MetaConfig) -> Limits {
        Limits {
            batch_size: MAX_PER_REQUEST,
            max_event_age: Some(if config.action_source.trim() == "physical_store" {
                MAX_STORE_EVENT_AGE
            } else {
                MAX_EVENT_AGE
            }),
            max_click_age: None,
            dedup_key: "event_id (evt_ id) with event_name",
            test_mode: Some("testEventCode"),
        }
    }

    fn matches_without_click_id(&self, config: &MetaConfig) -> bool {
        config.match_without_click_id
    }

    fn send<'a>(
        &'a self,
        http: &'a Platforms,
        config: &'a MetaConfig,
        credentials: &'a MetaCredentials,
        batch: &'a [Conversion],
        now: OffsetDateTime,
    ) -> BoxFuture<'a, SendReport> {
        Box::pin(batch::send::<Self>(http, config, credentials, batch, now))
    }
}

/// Most events in one request.
pub const MAX_PER_REQUEST: usize = 1000;

/// The Graph API version in the path.
pub const API_VERSION: &str = "v26.0";

/// The oldest event Meta takes (other than `physical_store`).
pub const MAX_EVENT_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The oldest `physical_store` event Meta takes.
pub const MAX_STORE_EVENT_AGE: Duration = Duration::from_secs(62 * 24 * 3600);

/// `partner_agent`: names the integration to Meta.
const PARTNER_AGENT: &str = "convrelay";

/// `fbc` built on the server from an fbclid: subdomain index 1, the click time in milliseconds,
/// the fbclid exactly as received (it is case-sensitive).
pub fn fbc_from_fbclid(fbclid: &str, clicked_at: OffsetDateTime) -> String {
    let millis = clicked_at.unix_timestamp_nanos() / 1_000_000;
    format!("fb.1.{millis}.{fbclid}")
}

fn non_empty(value: Option<&String>) -> Option<&str> {
    value
        .map(|value| value.trim())
        .filter(|value| !value.is_empty())
}

/// The `fbc` of a conversion: the event's or the touchpoint's cookie, else one built from the
/// touchpoint's fbclid (with its click time), else from the event's own fbclid (with the event
/// time).
fn fbc(conversion: &Conversion) -> Option<String> {
    let event = &conversion.event;
    let touchpoint = conversion.attribution.click.as_ref();
    non_empty(event.click_ids.fbc.as_ref())
        .or_else(|| touchpoint.and_then(|click| non_empty(click.click_ids.fbc.as_ref())))
        .map(str::to_owned)
        .or_else(|| {
            touchpoint.and_then(|click| {
                non_empty(click.click_ids.fbclid.as_ref())
                    .map(|fbclid| fbc_from_fbclid(fbclid, click.clicked_at))
            })
        })
        .or_else(|| {
            non_empty(event.click_ids.fbclid.as_ref())
                .map(|fbclid| fbc_from_fbclid(fbclid, event.timestamp))
        })
}

fn event_name(config: &MetaConfig, kind: EventKind) -> String {
    config
        .event_names
        .get(kind)
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map_or_else(
            || match kind {
                EventKind::Lead => "Lead".to_owned(),
                EventKind::Sale => "Purchase".to_owned(),
            },
            str::to_owned,
        )
}

fn prepare(
    config: &MetaConfig,
    conversion: &Conversion,
    now: OffsetDateTime,
) -> Result<Value, Outcome> {
    let event = &conversion.event;
    let touchpoint = conversion.attribution.click.as_ref();
    let action_source = match config.action_source.trim() {
        "" => "system_generated",
        source => source,
    };
    let fbc = fbc(conversion);
    if fbc.is_none() && !config.match_without_click_id {
        return Err(Outcome::Skipped {
            reason: "no_click_id: no fbclid or fbc, and matchWithoutClickId is off".into(),
        });
    }
    let denied = event
        .consent
        .is_some_and(|consent| consent.ad_user_data_denied());

    let mut user_data = Map::new();
    if let Some(fbc) = fbc {
        user_data.insert("fbc".into(), fbc.into());
    }
    let fbp = non_empty(event.click_ids.fbp.as_ref())
        .or_else(|| touchpoint.and_then(|click| non_empty(click.click_ids.fbp.as_ref())));
    if let Some(fbp) = fbp {
        user_data.insert("fbp".into(), fbp.into());
    }
    if !denied {
        if let Some(hash) = event
            .email
            .as_ref()
            .and_then(|email| hashing::meta_email_sha256(email.as_str()))
        {
            user_data.insert("em".into(), json!([hash]));
        }
        if let Some(hash) = event
            .phone
            .as_ref()
            .and_then(|phone| hashing::meta_phone_sha256(phone.as_str()))
        {
            user_data.insert("ph".into(), json!([hash]));
        }
        if let Some(hash) = event
            .customer_external_id
            .as_deref()
            .and_then(hashing::meta_external_id_sha256)
        {
            user_data.insert("external_id".into(), json!([hash]));
        }
        if let Some(ip) = event.ip.or_else(|| touchpoint.and_then(|click| click.ip)) {
            user_data.insert("client_ip_address".into(), ip.to_string().into());
        }
        let agent = non_empty(event.user_agent.as_ref())
            .or_else(|| touchpoint.and_then(|click| non_empty(click.user_agent.as_ref())));
        if let Some(agent) = agent {
            user_data.insert("client_user_agent".into(), agent.into());
        }
    }
    if user_data.is_empty() {
        let had_user_data = event.email.is_some()
            || event.phone.is_some()
            || event.customer_external_id.is_some()
            || event.ip.is_some()
            || event.user_agent.is_some();
        let reason = if denied && had_user_data {
            "consent_denied: adUserData is denied and there is no fbclid, fbc or fbp to send"
        } else {
            "no_identifiers: nothing Meta could match the event on"
        };
        return Err(Outcome::Skipped {
            reason: reason.into(),
        });
    }

    let mut custom_data = Map::new();
    if let Some(money) = event.value {
        if let Some(amount) = money
            .amount()
            .to_f64()
            .and_then(serde_json::Number::from_f64)
        {
            custom_data.insert("value".into(), Value::Number(amount));
            custom_data.insert(
                "currency".into(),
                money.currency().code().to_ascii_lowercase().into(),
            );
        }
    }
    if event.kind == EventKind::Sale {
        custom_data.insert("order_id".into(), order_id(conversion).into());
    }
    if !event.products.is_empty() {
        let ids: Vec<&str> = event
            .products
            .iter()
            .map(|product| product.id.as_str())
            .collect();
        custom_data.insert("content_ids".into(), json!(ids));
        let contents: Vec<Value> = event
            .products
            .iter()
            .map(|product| {
                let mut content = json!({"id": product.id, "quantity": product.quantity});
                if let (Some(price), Some(map)) = (
                    product
                        .price
                        .and_then(|price| price.to_f64())
                        .and_then(serde_json::Number::from_f64),
                    content.as_object_mut(),
                ) {
                    map.insert("item_price".into(), Value::Number(price));
                }
                content
            })
            .collect();
        custom_data.insert("contents".into(), contents.into());
        custom_data.insert("content_type".into(), "product".into());
    }

    let mut server_event = Map::new();
    let name = conversion
        .mapped_event_name()
        .map_or_else(|| event_name(config, event.kind), str::to_owned);
    server_event.insert("event_name".into(), name.into());
    server_event.insert(
        "event_time".into(),
        event.timestamp.min(now).unix_timestamp().into(),
    );
    server_event.insert("event_id".into(), event_wire_id(conversion.event_id).into());
    server_event.insert("action_source".into(), action_source.into());
    let source_url = non_empty(event.page_url.as_ref())
        .or_else(|| touchpoint.and_then(|click| non_empty(click.url.as_ref())))
        .filter(|url| url.starts_with("https://") || url.starts_with("http://"));
    // Meta refuses a whole request for one website event without both (and the split that
    // finds it costs requests): such an event is settled here.
    if action_source == "website"
        && (source_url.is_none() || !user_data.contains_key("client_user_agent"))
    {
        return Err(if denied {
            Outcome::Skipped {
                reason: "consent_denied: adUserData is denied, and Meta takes a website event \
                         only with the person's user agent"
                    .into(),
            }
        } else {
            classify::permanent(
                "Meta takes a website event only with an http(s) page URL (pageUrl or the \
                 touchpoint's landing page) and the person's user agent: send them, or set the \
                 destination's actionSource",
            )
        });
    }
    if let Some(url) = source_url {
        server_event.insert("event_source_url".into(), url.into());
    }
    server_event.insert("user_data".into(), Value::Object(user_data));
    if !custom_data.is_empty() {
        server_event.insert("custom_data".into(), Value::Object(custom_data));
    }
    Ok(Value::Object(server_event))
}

impl JsonApi for Meta {
    type Config = MetaConfig;
    type Credentials = MetaCredentials;
    type Row = Value;

    const TARGET: RequestTarget = RequestTarget::MetaEvents;

    fn secrets(credentials: &MetaCredentials) -> Vec<&str> {
        vec![credentials.access_token.as_str()]
    }

    fn row(
        config: &MetaConfig,
        conversion: &Conversion,
        now: OffsetDateTime,
    ) -> Result<Value, Outcome> {
        prepare(config, conversion, now)
    }

    /// `POST /{pixel}/events` with the token in the query string (as Meta's own SDK sends it),
    /// the events, our partner agent and the test code when configured.
    fn request(
        platforms: &Platforms,
        config: &MetaConfig,
        credentials: &MetaCredentials,
        _token: Option<&str>,
        rows: &[&Value],
    ) -> Result<reqwest::RequestBuilder, Outcome> {
        let pixel_id = config.pixel_id.trim();
        if pixel_id.is_empty() || !pixel_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(classify::permanent(
                "the destination's pixelId is not a numeric id",
            ));
        }
        let address = super::join(
            &platforms.endpoints.meta,
            &format!("/{API_VERSION}/{pixel_id}/events"),
        );
        let Ok(mut url) = reqwest::Url::parse(&address) else {
            return Err(classify::permanent(
                "the Meta base address is not a valid URL",
            ));
        };
        url.query_pairs_mut()
            .append_pair("access_token", &credentials.access_token);
        let mut body = json!({"data": rows, "partner_agent": PARTNER_AGENT});
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
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string()))
    }

    fn transient(exchange: &Exchange, rows: &[&Value]) -> Answer {
        Self::answer(exchange, rows)
    }

    /// A 200 counts every event (a different `events_received` is noted); a refusal for an
    /// invalid parameter may be about one event only, so the request is split to find it; any
    /// other refusal is about them all.
    fn answer(exchange: &Exchange, rows: &[&Value]) -> Answer {
        let status = exchange.status.unwrap_or(0);
        let count = rows.len();
        if exchange.is_success() {
            return match exchange.json().filter(Value::is_object) {
                Some(body) => {
                    let received = body.get("events_received").and_then(Value::as_u64);
                    match received.filter(|received| usize::try_from(*received).ok() != Some(count))
                    {
                        Some(received) => Answer::Noted(
                            Outcome::Succeeded,
                            format!("Meta reported {received} of {count} events received"),
                        ),
                        None => Answer::All(Outcome::Succeeded),
                    }
                }
                None => Answer::All(classify::unexpected_body(status, "not JSON")),
            };
        }
        let failure = classify::meta_failure(status, exchange.retry_after(), &exchange.body);
        if failure.payload_error {
            Answer::Split(failure.outcome)
        } else {
            Answer::All(failure.outcome)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn fbc_keeps_the_fbclid_exactly_and_uses_milliseconds() {
        let at = datetime!(2019-04-08 22:49:01.205 UTC);
        assert_eq!(
            fbc_from_fbclid("AbCdEfGhIjKlMnOpQrStUvWxYz1234567890", at),
            "fb.1.1554763741205.AbCdEfGhIjKlMnOpQrStUvWxYz1234567890"
        );
    }
}
