//! Pinterest Conversions API (v5): `POST /v5/ad_accounts/{ad account id}/events` with the ad
//! account's conversion access token, body `{"data": [...]}`; in test mode `?test=true`, which
//! validates and records nothing.
//!
//! Each event has its name per kind (`lead` and `checkout` by default: Pinterest has no
//! purchase event), `action_source`, the time in Unix **seconds**, our event id as `event_id`
//! (Pinterest's dedup key with the tag, the same on every attempt), the `epik` as
//! `user_data.click_id`, and user data by Pinterest's rules: email trimmed and lower-cased, phone
//! as digits **without** `+`, external id, each SHA-256 hex in an array; IP and user agent as
//! they are. The value and prices are **strings**. Pinterest needs an email, or IP and user
//! agent, to take an event: when ad user data is denied there is none, so the event is skipped
//! (`consent_denied`) rather than refused.
//!
//! Pinterest answers each event in order (`events[i].status`: `processed` or `failed` with its
//! message): failed ones are permanent. 401, 403 and other refusals are permanent; 429 and 5xx
//! retried. The oldest event Pinterest takes is not documented: no age limit is applied.

use events::EventKind;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::batch::{self, Answer, JsonApi};
use crate::linkedin::amount;
use crate::model::{Conversion, Outcome, PerKind};
use crate::settings::{
    digits, object, one_of, optional_bool, required, required_secret, Errors, Obj, Recorded,
};
use crate::{
    classify, click_value, client_of, event_wire_id, hashing, order_id, page_of, user_data_denied,
    Exchange, Limits, Platform, Platforms, RequestTarget, SendReport,
};

/// Most events in one request.
pub const MAX_PER_REQUEST: usize = 1000;

/// Pinterest's `action_source` values.
pub const ACTION_SOURCES: &str = "web, app_android, app_ios, offline";

/// Pinterest's event names.
pub const EVENT_NAMES: &str = "add_payment_info, add_to_cart, add_to_wishlist, checkout, contact, \
    custom, initiate_checkout, lead, page_visit, search, signup, start_trial, subscribe, \
    view_category, view_content, watch_video";

/// `pinterest` destination config (public).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PinterestConfig {
    /// The ad account id, digits.
    pub ad_account_id: String,
    /// `action_source` (default `web`).
    #[serde(default = "default_action_source")]
    pub action_source: String,
    /// Event names per kind (default `lead` / `checkout`).
    #[serde(default = "default_event_names")]
    pub event_names: PerKind,
    /// Send with `?test=true`: validated by Pinterest, recorded nowhere.
    #[serde(default)]
    pub test_mode: bool,
    /// Send events without an `epik`, matched on user data alone.
    #[serde(default)]
    pub match_without_click_id: bool,
}

fn default_action_source() -> String {
    "web".into()
}

fn default_event_names() -> PerKind {
    PerKind {
        lead: Some("lead".into()),
        sale: Some("checkout".into()),
    }
}

/// `pinterest` credentials (write-only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PinterestCredentials {
    /// The conversion access token from Ads Manager.
    pub access_token: String,
}

impl std::fmt::Debug for PinterestCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PinterestCredentials { .. }")
    }
}

/// The `pinterest` adapter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pinterest;

impl Platform for Pinterest {
    type Config = PinterestConfig;
    type Credentials = PinterestCredentials;

    fn destination_type(&self) -> events::DestinationType {
        events::DestinationType::Pinterest
    }

    fn click_ids(&self) -> &'static [&'static str] {
        &["epik"]
    }

    fn check_config(
        &self,
        errors: &mut Errors,
        obj: &mut Obj<'_>,
        _kinds: &[EventKind],
    ) -> Option<PinterestConfig> {
        let account = required(errors, obj, "adAccountId")
            .and_then(|v| digits(errors, &obj.path("adAccountId"), v, "an ad account id"));
        let action_source = one_of(errors, obj, "actionSource", ACTION_SOURCES);
        let event_names = match obj.get("eventNames") {
            None => Ok(default_event_names()),
            Some(value) => {
                let path = obj.path("eventNames");
                match object(errors, &path, value) {
                    None => Err(Recorded),
                    Some(map) => {
                        let mut names = Obj::new(map, path);
                        let lead = one_of(errors, &mut names, "lead", EVENT_NAMES);
                        let sale = one_of(errors, &mut names, "sale", EVENT_NAMES);
                        names.finish(errors);
                        match (lead, sale) {
                            (Ok(lead), Ok(sale)) => Ok(PerKind {
                                lead: lead.or_else(|| Some("lead".into())),
                                sale: sale.or_else(|| Some("checkout".into())),
                            }),
                            _ => Err(Recorded),
                        }
                    }
                }
            }
        };
        let test_mode = optional_bool(errors, obj, "testMode");
        let match_without_click_id = optional_bool(errors, obj, "matchWithoutClickId");
        Some(PinterestConfig {
            ad_account_id: account?,
            action_source: action_source.ok()?.unwrap_or_else(default_action_source),
            event_names: event_names.ok()?,
            test_mode: test_mode.ok()?.unwrap_or(false),
            match_without_click_id: match_without_click_id.ok()?.unwrap_or(false),
        })
    }

    fn check_credentials(
        &self,
        errors: &mut Errors,
        obj: &mut Obj<'_>,
    ) -> Option<PinterestCredentials> {
        required_secret(errors, obj, "accessToken")
            .map(|access_token| PinterestCredentials { access_token })
    }

    fn limits(&self, _config: &PinterestConfig) -> Limits {
        Limits {
            batch_size: MAX_PER_REQUEST,
            max_event_age: None,
            max_click_age: None,
            dedup_key: "event_id (evt_ id)",
            test_mode: Some("testMode (?test=true)"),
        }
    }

    /// 5,000 calls per minute per ad account (P.5).
    fn quota(
        &self,
        config: &PinterestConfig,
        _credentials: &Self::Credentials,
    ) -> Option<crate::delivery::Quota> {
        Some(crate::delivery::Quota {
            bucket: format!("pinterest-ad-account:{}", config.ad_account_id),
            per_minute: Some(5000),
            per_day: None,
            operations_per_day: None,
            source: "Pinterest Conversions API: 5,000 calls per minute per ad account",
        })
    }

    fn matches_without_click_id(&self, config: &PinterestConfig) -> bool {
        config.match_without_click_id
    }

    fn send<'a>(
        &'a self,
        http: &'a Platforms,
        config: &'a PinterestConfig,
        credentials: &'a PinterestCredentials,
        batch: &'a [Conversion],
        now: OffsetDateTime,
    ) -> BoxFuture<'a, SendReport> {
        Box::pin(batch::send::<Self>(http, config, credentials, batch, now))
    }
}

impl JsonApi for Pinterest {
    type Config = PinterestConfig;
    type Credentials = PinterestCredentials;

    type Row = Value;

    const TARGET: RequestTarget = RequestTarget::PinterestEvents;

    fn secrets(credentials: &PinterestCredentials) -> Vec<&str> {
        vec![credentials.access_token.as_str()]
    }

    fn row(
        config: &PinterestConfig,
        conversion: &Conversion,
        _now: OffsetDateTime,
    ) -> Result<Value, Outcome> {
        let event = &conversion.event;
        let click = click_value(conversion, "epik");
        if click.is_none() && !config.match_without_click_id {
            return Err(Outcome::Skipped {
                reason: "no_click_id: no epik, and matchWithoutClickId is off".into(),
            });
        }
        if user_data_denied(conversion) {
            return Err(Outcome::Skipped {
                reason: "consent_denied: adUserData is denied and Pinterest takes no event \
                         without an email or the IP and user agent"
                    .into(),
            });
        }
        let mut user = Map::new();
        if let Some(hash) = event
            .email
            .as_ref()
            .and_then(|e| hashing::meta_email_sha256(e.as_str()))
        {
            user.insert("em".into(), json!([hash]));
        }
        if let Some(hash) = event
            .phone
            .as_ref()
            .and_then(|p| hashing::meta_phone_sha256(p.as_str()))
        {
            user.insert("ph".into(), json!([hash]));
        }
        if let Some(id) = event
            .customer_external_id
            .as_deref()
            .map(str::trim)
            .filter(|id| !id.is_empty())
        {
            user.insert("external_id".into(), json!([hashing::sha256_hex(id)]));
        }
        let (ip, agent) = client_of(conversion);
        let has_client = ip.is_some() && agent.is_some();
        if let Some(ip) = ip {
            user.insert("client_ip_address".into(), ip.into());
        }
        if let Some(agent) = agent {
            user.insert("client_user_agent".into(), agent.into());
        }
        if !user.contains_key("em") && !has_client {
            return Err(Outcome::Skipped {
                reason: "no_identifiers: Pinterest needs an email, or the IP and user agent".into(),
            });
        }
        if let Some(click) = click {
            user.insert("click_id".into(), click.into());
        }
        let name = conversion
            .mapped_event_name()
            .or_else(|| config.event_names.get(event.kind))
            .unwrap_or(match event.kind {
                EventKind::Lead => "lead",
                EventKind::Sale => "checkout",
            });
        let mut custom = Map::new();
        if let Some(money) = event.value {
            custom.insert("value".into(), amount(money.amount()).into());
            custom.insert("currency".into(), money.currency().code().into());
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
                    let mut content = json!({"id": p.id, "quantity": p.quantity});
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
        row.insert("action_source".into(), config.action_source.clone().into());
        row.insert(
            "event_time".into(),
            event
                .timestamp
                .min(conversion.received_at)
                .unix_timestamp()
                .into(),
        );
        row.insert("event_id".into(), event_wire_id(conversion.event_id).into());
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
        config: &PinterestConfig,
        credentials: &PinterestCredentials,
        _token: Option<&str>,
        rows: &[&Value],
    ) -> Result<reqwest::RequestBuilder, Outcome> {
        let mut address = crate::join(
            &platforms.endpoints.pinterest,
            &format!("/v5/ad_accounts/{}/events", config.ad_account_id.trim()),
        );
        if config.test_mode {
            address.push_str("?test=true");
        }
        Ok(platforms
            .client
            .post(address)
            .bearer_auth(&credentials.access_token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json!({ "data": rows }).to_string()))
    }

    fn answer(exchange: &Exchange, rows: &[&Value]) -> Answer {
        let status = exchange.status.unwrap_or(0);
        if !exchange.is_success() {
            let text = batch::message(exchange, &["/message"]);
            return batch::refused(exchange, &text);
        }
        let Some(events) = exchange
            .json()
            .and_then(|body| body.get("events").and_then(Value::as_array).cloned())
        else {
            return Answer::All(classify::unexpected_body(status, "no events"));
        };
        Answer::Rows(
            (0..rows.len())
                .map(|i| {
                    let answer = events.get(i);
                    match answer.and_then(|e| e.get("status")).and_then(Value::as_str) {
                        Some("processed") => Outcome::Succeeded,
                        Some(_) => classify::permanent(format!(
                            "Pinterest: {}",
                            answer
                                .and_then(|e| e.get("error_message"))
                                .and_then(Value::as_str)
                                .unwrap_or("failed")
                        )),
                        None => classify::unexpected_body(status, "no status for this event"),
                    }
                })
                .collect(),
        )
    }
}
