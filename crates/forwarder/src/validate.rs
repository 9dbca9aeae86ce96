//! Checking a destination document (`type`, `name`, `enabled`, `events`, `config`, `credentials`)
//! into typed values, listing every offending field by its path (`config.customerId`,
//! `credentials.refreshToken`), so that a destination that cannot work is refused when it is
//! created, not discovered when the first conversion fails.

use std::net::IpAddr;

use events::{DestinationType, EventKind, FieldError};
use serde_json::{Map, Value};

use crate::destinations::{Credentials, DestinationConfig};
use crate::model::{
    GoogleAdsConfig, GoogleApi, GoogleCredentials, MetaConfig, MetaCredentials, PerKind,
    WebhookConfig, WebhookCredentials,
};

/// Longest `name`.
pub const MAX_NAME: usize = 255;
/// Longest plain string setting (ids, event names, codes).
const MAX_STRING: usize = 255;
/// Longest secret (tokens, client secrets, signing secrets).
const MAX_SECRET: usize = 4096;
/// Longest webhook URL.
const MAX_URL: usize = 2048;
/// Shortest webhook signing secret.
pub const MIN_WEBHOOK_SECRET: usize = 16;

/// Meta's `action_source` values (SDK 26 enum).
pub const META_ACTION_SOURCES: &str =
    "email, website, app, phone_call, chat, physical_store, system_generated, business_messaging, other";
/// Data Manager `eventSource` values.
pub const GOOGLE_EVENT_SOURCES: &str = "WEB, APP, IN_STORE, PHONE, MESSAGE, OTHER";

/// A checked destination document.
#[derive(Debug, Clone)]
pub struct Draft {
    /// Its type.
    pub destination_type: DestinationType,
    /// Display name.
    pub name: String,
    /// Whether dispatches go out.
    pub enabled: bool,
    /// Subscribed kinds, each once, leads first.
    pub events: Vec<EventKind>,
    /// The type's settings, defaults filled in.
    pub config: DestinationConfig,
    /// The type's credentials; `None` only where they may be left out (an update keeping them).
    pub credentials: Option<Credentials>,
}

/// Collected field errors.
#[derive(Default)]
pub struct Errors(pub Vec<FieldError>);

impl Errors {
    fn push(&mut self, field: impl Into<String>, code: &'static str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            code,
            message: message.into(),
        });
    }

    fn error(&mut self, field: impl Into<String>, error: &events::Error) {
        self.0.push(FieldError::new(field, error));
    }
}

/// The keys of one JSON object being read: remembers which were read, so that the rest can be
/// reported as unknown.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    prefix: String,
    read: Vec<&'static str>,
}

impl<'a> Obj<'a> {
    fn new(map: &'a Map<String, Value>, prefix: impl Into<String>) -> Self {
        Self {
            map,
            prefix: prefix.into(),
            read: Vec::new(),
        }
    }

    /// The value at `key`; `null` counts as absent.
    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.read.push(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    /// Reports every key that was not read.
    fn finish(self, errors: &mut Errors) {
        for key in self.map.keys() {
            if !self.read.contains(&key.as_str()) {
                errors.error(self.path(key), &events::Error::UnknownField);
            }
        }
    }
}

fn object<'a>(
    errors: &mut Errors,
    field: &str,
    value: &'a Value,
) -> Option<&'a Map<String, Value>> {
    match value.as_object() {
        Some(map) => Some(map),
        None => {
            errors.error(
                field,
                &events::Error::Type {
                    expected: "an object",
                },
            );
            None
        }
    }
}

fn string<'a>(errors: &mut Errors, field: &str, value: &'a Value, max: usize) -> Option<&'a str> {
    let Some(s) = value.as_str() else {
        errors.error(
            field,
            &events::Error::Type {
                expected: "a string",
            },
        );
        return None;
    };
    if s.trim().is_empty() {
        errors.error(field, &events::Error::Empty);
        return None;
    }
    if s.chars().count() > max {
        errors.error(field, &events::Error::TooLong { max });
        return None;
    }
    Some(s)
}

fn required<'a>(errors: &mut Errors, obj: &mut Obj<'a>, key: &'static str) -> Option<&'a Value> {
    let value = obj.get(key);
    if value.is_none() {
        errors.error(obj.path(key), &events::Error::Required);
    }
    value
}

fn required_string(
    errors: &mut Errors,
    obj: &mut Obj<'_>,
    key: &'static str,
    max: usize,
) -> Option<String> {
    let value = required(errors, obj, key)?;
    string(errors, &obj.path(key), value, max).map(str::to_owned)
}

fn optional_string(
    errors: &mut Errors,
    obj: &mut Obj<'_>,
    key: &'static str,
    max: usize,
) -> Result<Option<String>, ()> {
    match obj.get(key) {
        None => Ok(None),
        Some(value) => string(errors, &obj.path(key), value, max)
            .map(|s| Some(s.to_owned()))
            .ok_or(()),
    }
}

fn optional_bool(
    errors: &mut Errors,
    obj: &mut Obj<'_>,
    key: &'static str,
) -> Result<Option<bool>, ()> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => {
            errors.error(
                obj.path(key),
                &events::Error::Type {
                    expected: "a boolean",
                },
            );
            Err(())
        }
    }
}

fn one_of(
    errors: &mut Errors,
    obj: &mut Obj<'_>,
    key: &'static str,
    allowed: &'static str,
) -> Result<Option<String>, ()> {
    let Some(value) = optional_string(errors, obj, key, MAX_STRING)? else {
        return Ok(None);
    };
    if allowed.split(", ").any(|a| a == value) {
        Ok(Some(value))
    } else {
        errors.error(obj.path(key), &events::Error::InvalidValue { allowed });
        Err(())
    }
}

/// A string of digits, or a non-negative JSON integer, as digits.
fn digits(errors: &mut Errors, field: &str, value: &Value, what: &str) -> Option<String> {
    let text = match value {
        Value::Number(n) if n.as_u64().is_some() => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        _ => {
            errors.error(
                field,
                &events::Error::Type {
                    expected: "a string",
                },
            );
            return None;
        }
    };
    if text.is_empty() || text.len() > 32 || !text.bytes().all(|b| b.is_ascii_digit()) {
        errors.push(field, "format", format!("must be {what}, digits only"));
        return None;
    }
    Some(text)
}

/// A Google Ads customer id: 10 digits, dashes allowed in (`123-456-7890`), stored without.
fn customer_id(errors: &mut Errors, field: &str, value: &Value) -> Option<String> {
    let Some(s) = value.as_str() else {
        errors.error(
            field,
            &events::Error::Type {
                expected: "a string",
            },
        );
        return None;
    };
    let plain: String = s.trim().chars().filter(|&c| c != '-').collect();
    if plain.len() != 10 || !plain.bytes().all(|b| b.is_ascii_digit()) {
        errors.push(
            field,
            "format",
            "must be a 10-digit Google Ads customer id, e.g. 123-456-7890",
        );
        return None;
    }
    Some(plain)
}

/// Reads `events`: a non-empty array of `lead` / `sale`; duplicates are kept once.
fn event_kinds(errors: &mut Errors, value: &Value) -> Option<Vec<EventKind>> {
    let Some(items) = value.as_array() else {
        errors.error(
            "events",
            &events::Error::Type {
                expected: "an array",
            },
        );
        return None;
    };
    if items.is_empty() {
        errors.error("events", &events::Error::MinItems { min: 1 });
        return None;
    }
    let mut kinds = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match item.as_str() {
            Some("lead") => kinds.push(EventKind::Lead),
            Some("sale") => kinds.push(EventKind::Sale),
            _ => {
                ok = false;
                errors.error(
                    format!("events[{i}]"),
                    &events::Error::InvalidValue {
                        allowed: "lead, sale",
                    },
                );
            }
        }
    }
    kinds.sort();
    kinds.dedup();
    ok.then_some(kinds)
}

fn destination_type(errors: &mut Errors, value: &Value) -> Option<DestinationType> {
    match value.as_str() {
        Some("google_ads") => Some(DestinationType::GoogleAds),
        Some("meta") => Some(DestinationType::Meta),
        Some("webhook") => Some(DestinationType::Webhook),
        _ => {
            errors.error(
                "type",
                &events::Error::InvalidValue {
                    allowed: "google_ads, meta, webhook",
                },
            );
            None
        }
    }
}

/// The keys of a destination document.
const DOCUMENT_FIELDS: [&str; 6] = ["type", "name", "enabled", "events", "config", "credentials"];

/// Checks a whole destination document. `credentials` are required when `credentials_required`;
/// otherwise they may be absent (an update that keeps the stored ones).
pub fn check_document(body: &Value, credentials_required: bool) -> Result<Draft, Vec<FieldError>> {
    let mut errors = Errors::default();
    let Some(map) = object(&mut errors, "", body) else {
        return Err(errors.0);
    };
    let mut obj = Obj::new(map, "");
    let destination_type =
        required(&mut errors, &mut obj, "type").and_then(|v| destination_type(&mut errors, v));
    let name = required_string(&mut errors, &mut obj, "name", MAX_NAME);
    let enabled = optional_bool(&mut errors, &mut obj, "enabled");
    let kinds = required(&mut errors, &mut obj, "events").and_then(|v| event_kinds(&mut errors, v));
    let config_value = required(&mut errors, &mut obj, "config");
    let credentials_value = if credentials_required {
        required(&mut errors, &mut obj, "credentials")
    } else {
        obj.get("credentials")
    };
    obj.finish(&mut errors);

    let mut config = None;
    let mut credentials = None;
    if let Some(destination_type) = destination_type {
        if let Some(map) = config_value.and_then(|v| object(&mut errors, "config", v)) {
            config = check_config(&mut errors, destination_type, map, kinds.as_deref());
        }
        if let Some(map) = credentials_value.and_then(|v| object(&mut errors, "credentials", v)) {
            credentials = check_credentials(&mut errors, destination_type, map);
        }
    }
    match (destination_type, name, enabled, kinds, config) {
        (Some(destination_type), Some(name), Ok(enabled), Some(events), Some(config))
            if errors.0.is_empty() =>
        {
            Ok(Draft {
                destination_type,
                name,
                enabled: enabled.unwrap_or(true),
                events,
                config,
                credentials,
            })
        }
        _ => Err(errors.0),
    }
}

/// Checks the keys of an update (`PATCH`) before it is merged into the stored document: only the
/// document's fields, and `type` only unchanged.
pub fn check_patch_keys(
    patch: &Map<String, Value>,
    stored_type: DestinationType,
) -> Vec<FieldError> {
    let mut errors = Errors::default();
    for (key, value) in patch {
        if !DOCUMENT_FIELDS.contains(&key.as_str()) {
            errors.error(key.clone(), &events::Error::UnknownField);
        } else if key == "type" && value.as_str() != Some(stored_type.as_str()) {
            errors.push(
                "type",
                "not_allowed",
                "cannot be changed: create a new destination instead",
            );
        } else if value.is_null() && key != "config" {
            errors.push(key.clone(), "type", "must not be null");
        }
    }
    errors.0
}

fn check_config(
    errors: &mut Errors,
    destination_type: DestinationType,
    map: &Map<String, Value>,
    kinds: Option<&[EventKind]>,
) -> Option<DestinationConfig> {
    let mut obj = Obj::new(map, "config");
    let config = match destination_type {
        DestinationType::GoogleAds => {
            google_config(errors, &mut obj, kinds).map(DestinationConfig::GoogleAds)
        }
        DestinationType::Meta => meta_config(errors, &mut obj).map(DestinationConfig::Meta),
        DestinationType::Webhook => {
            webhook_config(errors, &mut obj).map(DestinationConfig::Webhook)
        }
    };
    obj.finish(errors);
    config
}

fn google_config(
    errors: &mut Errors,
    obj: &mut Obj<'_>,
    kinds: Option<&[EventKind]>,
) -> Option<GoogleAdsConfig> {
    let api = match one_of(errors, obj, "api", "data_manager, google_ads_api") {
        Ok(Some(api)) if api == "google_ads_api" => Ok(GoogleApi::GoogleAdsApi),
        Ok(_) => Ok(GoogleApi::DataManager),
        Err(()) => Err(()),
    };
    let customer = required(errors, obj, "customerId")
        .and_then(|v| customer_id(errors, &obj.path("customerId"), v));
    let login = match obj.get("loginCustomerId") {
        None => Ok(None),
        Some(v) => customer_id(errors, &obj.path("loginCustomerId"), v)
            .map(Some)
            .ok_or(()),
    };
    let actions = required(errors, obj, "conversionActions").and_then(|value| {
        let path = obj.path("conversionActions");
        let map = object(errors, &path, value)?;
        let mut actions = Obj::new(map, path.clone());
        let mut read = |errors: &mut Errors, key: &'static str| -> Result<Option<String>, ()> {
            match actions.get(key) {
                None => Ok(None),
                Some(v) => digits(
                    errors,
                    &format!("{path}.{key}"),
                    v,
                    "a conversion action id",
                )
                .map(Some)
                .ok_or(()),
            }
        };
        let lead = read(errors, "lead");
        let sale = read(errors, "sale");
        actions.finish(errors);
        let (Ok(lead), Ok(sale)) = (lead, sale) else {
            return None;
        };
        let per_kind = PerKind { lead, sale };
        let mut complete = true;
        for &kind in kinds.unwrap_or_default() {
            if per_kind.get(kind).is_none() {
                complete = false;
                errors.push(
                    format!("{path}.{kind}"),
                    "required",
                    format!("is required: the destination subscribes to {kind} events"),
                );
            }
        }
        complete.then_some(per_kind)
    });
    let event_source = one_of(errors, obj, "eventSource", GOOGLE_EVENT_SOURCES);
    let validate_only = optional_bool(errors, obj, "validateOnly");
    Some(GoogleAdsConfig {
        api: api.ok()?,
        customer_id: customer?,
        login_customer_id: login.ok()?,
        conversion_actions: actions?,
        event_source: event_source.ok()?.unwrap_or_else(|| "WEB".to_owned()),
        validate_only: validate_only.ok()?.unwrap_or(false),
    })
}

fn meta_config(errors: &mut Errors, obj: &mut Obj<'_>) -> Option<MetaConfig> {
    let pixel = required(errors, obj, "pixelId")
        .and_then(|v| digits(errors, &obj.path("pixelId"), v, "a pixel (dataset) id"));
    let action_source = one_of(errors, obj, "actionSource", META_ACTION_SOURCES);
    let test_event_code = optional_string(errors, obj, "testEventCode", MAX_STRING);
    let event_names = match obj.get("eventNames") {
        None => Some(PerKind::default()),
        Some(value) => {
            let path = obj.path("eventNames");
            object(errors, &path, value).and_then(|map| {
                let mut names = Obj::new(map, path);
                let lead = optional_string(errors, &mut names, "lead", MAX_STRING);
                let sale = optional_string(errors, &mut names, "sale", MAX_STRING);
                names.finish(errors);
                Some(PerKind {
                    lead: lead.ok()?,
                    sale: sale.ok()?,
                })
            })
        }
    }
    .map(|names| PerKind {
        lead: names.lead.or_else(|| Some("Lead".to_owned())),
        sale: names.sale.or_else(|| Some("Purchase".to_owned())),
    });
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

fn webhook_config(errors: &mut Errors, obj: &mut Obj<'_>) -> Option<WebhookConfig> {
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

fn check_credentials(
    errors: &mut Errors,
    destination_type: DestinationType,
    map: &Map<String, Value>,
) -> Option<Credentials> {
    let mut obj = Obj::new(map, "credentials");
    let credentials = match destination_type {
        DestinationType::GoogleAds => {
            let client_id = required_string(errors, &mut obj, "clientId", MAX_SECRET);
            let client_secret = required_string(errors, &mut obj, "clientSecret", MAX_SECRET);
            let refresh_token = required_string(errors, &mut obj, "refreshToken", MAX_SECRET);
            let developer_token = optional_string(errors, &mut obj, "developerToken", MAX_SECRET);
            (|| {
                Some(Credentials::Google(GoogleCredentials {
                    client_id: client_id?,
                    client_secret: client_secret?,
                    refresh_token: refresh_token?,
                    developer_token: developer_token.ok()?,
                }))
            })()
        }
        DestinationType::Meta => required_string(errors, &mut obj, "accessToken", MAX_SECRET)
            .map(|access_token| Credentials::Meta(MetaCredentials { access_token })),
        DestinationType::Webhook => required_string(errors, &mut obj, "secret", MAX_SECRET)
            .and_then(|secret| {
                if secret.chars().count() < MIN_WEBHOOK_SECRET {
                    errors.push(
                        obj.path("secret"),
                        "min_length",
                        format!("must be at least {MIN_WEBHOOK_SECRET} characters"),
                    );
                    return None;
                }
                Some(Credentials::Webhook(WebhookCredentials { secret }))
            }),
    };
    obj.finish(errors);
    credentials
}

/// Applies a JSON merge patch (RFC 7396) to `target`: objects merge key by key, `null` removes a
/// key, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(result: Result<Draft, Vec<FieldError>>) -> Vec<String> {
        result.err().unwrap().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn every_bad_google_field_is_listed() {
        let body = json!({
            "type": "google_ads", "name": "", "events": ["sale", "lead"],
            "config": {"api": "adwords", "customerId": "123-45", "loginCustomerId": 12,
                       "conversionActions": {"sale": "abc"}, "eventSource": "web", "colour": 1},
            "credentials": {"clientId": "id"},
            "extra": true
        });
        assert_eq!(
            fields(check_document(&body, true)),
            [
                "name",
                "extra",
                "config.api",
                "config.customerId",
                "config.loginCustomerId",
                "config.conversionActions.sale",
                "config.eventSource",
                "config.colour",
                "credentials.clientSecret",
                "credentials.refreshToken",
            ]
        );
    }

    #[test]
    fn a_subscribed_kind_without_a_conversion_action_is_refused() {
        let body = json!({
            "type": "google_ads", "name": "g", "events": ["lead", "sale"],
            "config": {"customerId": "123-456-7890", "conversionActions": {"sale": "42"}},
            "credentials": {"clientId": "a", "clientSecret": "b", "refreshToken": "c"}
        });
        assert_eq!(
            fields(check_document(&body, true)),
            ["config.conversionActions.lead"]
        );
    }

    #[test]
    fn a_good_google_destination_gets_its_defaults() {
        let body = json!({
            "type": "google_ads", "name": "g", "events": ["sale", "sale"],
            "config": {"customerId": "123-456-7890", "conversionActions": {"sale": 42}},
            "credentials": {"clientId": "a", "clientSecret": "b", "refreshToken": "c"}
        });
        let draft = check_document(&body, true).unwrap();
        assert_eq!(draft.events, [EventKind::Sale]);
        assert!(draft.enabled);
        let DestinationConfig::GoogleAds(config) = draft.config else {
            panic!("not google")
        };
        assert_eq!(config.customer_id, "1234567890");
        assert_eq!(config.api, GoogleApi::DataManager);
        assert_eq!(config.event_source, "WEB");
        assert_eq!(config.conversion_actions.sale.as_deref(), Some("42"));
    }

    #[test]
    fn webhook_urls_must_be_https_except_on_loopback() {
        let check = |url: &str, secret: &str| {
            check_document(
                &json!({"type": "webhook", "name": "w", "events": ["lead"],
                        "config": {"url": url}, "credentials": {"secret": secret}}),
                true,
            )
        };
        for good in [
            "https://hooks.example.com/x",
            "http://127.0.0.1:9000/hook",
            "http://[::1]/hook",
            "http://localhost:8080/",
        ] {
            assert!(check(good, "0123456789abcdef").is_ok(), "{good}");
        }
        for bad in [
            "http://hooks.example.com/x",
            "ftp://127.0.0.1/",
            "not a url",
            "https://user:pw@example.com/",
        ] {
            assert_eq!(
                fields(check(bad, "0123456789abcdef")),
                ["config.url"],
                "{bad}"
            );
        }
        assert_eq!(
            fields(check("https://example.com", "short")),
            ["credentials.secret"]
        );
    }

    #[test]
    fn meta_settings_are_checked_and_defaulted() {
        let body = json!({"type": "meta", "name": "m", "events": ["sale"],
            "config": {"pixelId": "12ab", "actionSource": "web"}, "credentials": {}});
        assert_eq!(
            fields(check_document(&body, true)),
            [
                "config.pixelId",
                "config.actionSource",
                "credentials.accessToken"
            ]
        );
        let body = json!({"type": "meta", "name": "m", "events": ["sale"],
            "config": {"pixelId": "1234567890", "eventNames": {"sale": "Subscribe"}},
            "credentials": {"accessToken": "EAAB"}});
        let DestinationConfig::Meta(config) = check_document(&body, true).unwrap().config else {
            panic!("not meta")
        };
        assert_eq!(config.action_source, "system_generated");
        assert_eq!(config.event_names.sale.as_deref(), Some("Subscribe"));
        assert_eq!(config.event_names.lead.as_deref(), Some("Lead"));
        assert!(!config.match_without_click_id);
    }

    #[test]
    fn an_unknown_type_and_empty_events_are_both_reported() {
        let body =
            json!({"type": "tiktok", "name": "t", "events": [], "config": {}, "credentials": {}});
        assert_eq!(fields(check_document(&body, true)), ["type", "events"]);
        assert_eq!(fields(check_document(&json!([1]), true)), [""]);
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut target, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}}));
    }
}
