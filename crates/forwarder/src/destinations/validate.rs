//! Checking a destination document (`type`, `name`, `enabled`, `events`, `config`, `credentials`)
//! into typed values, listing every offending field by its path (`config.customerId`,
//! `credentials.refreshToken`), so that a destination that cannot work is refused when it is
//! created, not discovered when the first conversion fails.

use events::{DestinationType, EventKind, FieldError};
use platforms::settings::{object, optional_bool, required, required_string, Errors, Obj};
use serde_json::{Map, Value};

use super::{Credentials, DestinationConfig};

/// Longest `name`.
pub const MAX_NAME: usize = 255;
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
    let found = value
        .as_str()
        .and_then(|raw| DestinationType::ALL.into_iter().find(|t| t.as_str() == raw));
    if found.is_none() {
        errors.push(
            "type",
            "invalid_value",
            format!(
                "must be one of: {}",
                DestinationType::ALL.map(DestinationType::as_str).join(", ")
            ),
        );
    }
    found
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
        let config_map = config_value.and_then(|v| object(&mut errors, "config", v));
        let credentials_map = match credentials_value {
            Some(value) => object(&mut errors, "credentials", value).map(Some),
            None => Some(None),
        };
        if let (Some(config_map), Some(credentials_map)) = (config_map, credentials_map) {
            let adapter = platforms::adapter(destination_type);
            match adapter.check(
                config_map,
                credentials_map,
                kinds.as_deref().unwrap_or_default(),
            ) {
                Ok((checked, sealed)) => {
                    config = Some(DestinationConfig::new(destination_type, checked));
                    credentials = sealed.map(|json| Credentials::new(destination_type, json));
                }
                Err(field_errors) => errors.0.extend(field_errors),
            }
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
        let config: platforms::google::GoogleAdsConfig = draft.config.parse().unwrap();
        assert_eq!(config.customer_id, "1234567890");
        assert_eq!(config.api, platforms::google::GoogleApi::DataManager);
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
        let config: platforms::meta::MetaConfig =
            check_document(&body, true).unwrap().config.parse().unwrap();
        assert_eq!(config.action_source, "system_generated");
        assert_eq!(config.event_names.sale.as_deref(), Some("Subscribe"));
        assert_eq!(config.event_names.lead.as_deref(), Some("Lead"));
        assert!(!config.match_without_click_id);
    }

    #[test]
    fn an_unknown_type_and_empty_events_are_both_reported() {
        let body =
            json!({"type": "myspace", "name": "t", "events": [], "config": {}, "credentials": {}});
        assert_eq!(fields(check_document(&body, true)), ["type", "events"]);
        assert_eq!(fields(check_document(&json!([1]), true)), [""]);
    }

    #[test]
    fn every_bad_microsoft_ads_field_is_listed_and_a_good_one_is_stored_without_secrets() {
        let body = json!({"type": "microsoft_ads", "name": "ms", "events": ["lead", "sale"],
            "config": {"customerId": "12a", "conversionNames": {"sale": "", "lead": "CRM Lead"},
                       "tagId": "1"},
            "credentials": {"clientId": "c", "clientSecret": 7}});
        assert_eq!(
            fields(check_document(&body, true)),
            [
                "config.customerId",
                "config.accountId",
                "config.conversionNames.sale",
                "config.tagId",
                "credentials.clientSecret",
                "credentials.refreshToken",
                "credentials.developerToken",
            ]
        );
        let body = json!({"type": "microsoft_ads", "name": "ms", "events": ["sale"],
            "config": {"customerId": 251186883, "accountId": " 149615541 ",
                       "conversionNames": {"sale": "Offline Purchase"}},
            "credentials": {"clientId": "c", "refreshToken": "r", "developerToken": "d"}});
        let draft = check_document(&body, true).unwrap();
        assert_eq!(
            draft.config.to_json(),
            json!({"customerId": "251186883", "accountId": "149615541",
                   "conversionNames": {"sale": "Offline Purchase"}})
        );
        assert!(!format!("{:?}", draft.credentials).contains("\"r\""));
    }

    #[test]
    fn every_new_platform_lists_every_bad_field_and_fills_its_defaults() {
        let bad = [
            (
                json!({"type": "tiktok", "name": "t", "events": ["sale"],
                       "config": {"pixelCode": "no spaces", "eventSource": "shop", "x": 1},
                       "credentials": {}}),
                vec![
                    "config.pixelCode",
                    "config.eventSource",
                    "config.x",
                    "credentials.accessToken",
                ],
            ),
            (
                json!({"type": "linkedin", "name": "l", "events": ["lead", "sale"],
                       "config": {"conversionRules": {"lead": "urn:1"}}, "credentials": {"accessToken": ""}}),
                vec!["config.conversionRules.lead", "credentials.accessToken"],
            ),
            (
                json!({"type": "reddit", "name": "r", "events": ["sale"],
                       "config": {"pixelId": "t2 abc", "eventNames": {"sale": "BUY"}},
                       "credentials": {"accessToken": 5}}),
                vec![
                    "config.pixelId",
                    "config.eventNames.sale",
                    "credentials.accessToken",
                ],
            ),
            (
                json!({"type": "snapchat", "name": "s", "events": ["sale"],
                       "config": {"actionSource": "web", "testMode": "yes"}, "credentials": {"accessToken": "t"}}),
                vec!["config.pixelId", "config.actionSource", "config.testMode"],
            ),
            (
                json!({"type": "pinterest", "name": "p", "events": ["sale"],
                       "config": {"adAccountId": "acct-1", "eventNames": {"sale": "purchase"}},
                       "credentials": {"accessToken": "t", "refreshToken": "r"}}),
                vec![
                    "config.adAccountId",
                    "config.eventNames.sale",
                    "credentials.refreshToken",
                ],
            ),
        ];
        for (body, expected) in bad {
            assert_eq!(fields(check_document(&body, true)), expected, "{body}");
        }
        let good = [
            (
                json!({"type": "tiktok", "name": "t", "events": ["sale"],
                       "config": {"pixelCode": "CABC123"}, "credentials": {"accessToken": "t"}}),
                json!({"pixelCode": "CABC123", "eventSource": "web",
                       "eventNames": {"lead": "Lead", "sale": "Purchase"}, "matchWithoutClickId": false}),
            ),
            (
                json!({"type": "reddit", "name": "r", "events": ["sale"],
                       "config": {"pixelId": "t2_abc"}, "credentials": {"accessToken": "t"}}),
                json!({"pixelId": "t2_abc", "actionSource": "WEBSITE",
                       "eventNames": {"lead": "LEAD", "sale": "PURCHASE"}, "matchWithoutClickId": false}),
            ),
            (
                json!({"type": "pinterest", "name": "p", "events": ["sale"],
                       "config": {"adAccountId": 549755885175u64}, "credentials": {"accessToken": "t"}}),
                json!({"adAccountId": "549755885175", "actionSource": "web",
                       "eventNames": {"lead": "lead", "sale": "checkout"}, "testMode": false,
                       "matchWithoutClickId": false}),
            ),
        ];
        for (body, stored) in good {
            assert_eq!(
                check_document(&body, true).unwrap().config.to_json(),
                stored
            );
        }
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut target, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}}));
    }
}
