//! LinkedIn Conversions API: `POST /rest/conversionEvents` as a Rest.li `BATCH_CREATE`
//! (`{"elements": [...]}`), with a member's OAuth access token (`rw_conversions`), the monthly
//! `LinkedIn-Version` and Rest.li protocol 2.0.0.
//!
//! Each element names the conversion rule of the event's kind
//! (`urn:lla:llaPartnerConversion:<id>`), the time in epoch **milliseconds**, the value as a
//! decimal **string**, our event id as `eventId` (LinkedIn's dedup key, the same on every
//! attempt), and `user.userIds` (always present, LinkedIn refuses an element without it): the
//! `li_fat_id` as `LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID` and the email as `SHA256_EMAIL`
//! (SHA-256 hex of the trimmed lower-case address). LinkedIn takes no phone. When the person
//! denied ad user data, only the click's `li_fat_id` goes.
//!
//! One bad element fails the whole batch with a 422 naming it (`Index: N, ERROR :: …`): those
//! elements fail and the rest are sent again at once. 401, 403 and 426 (a retired version) are
//! permanent; 429 and 5xx are retried. Events more than 90 days old are refused, so they are
//! skipped before sending. LinkedIn has no test mode: use a separate conversion rule.

use std::time::Duration;

use events::EventKind;
use futures_util::future::BoxFuture;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::batch::{self, Answer, JsonApi};
use crate::model::{Conversion, Outcome, PerKind};
use crate::settings::{digits, object, optional_bool, required, required_secret, Errors, Obj};
use crate::{
    classify, click_value, event_wire_id, hashing, user_data_denied, Exchange, Limits, Platform,
    Platforms, RequestTarget, SendReport,
};

/// Most elements in one `BATCH_CREATE`.
pub const MAX_PER_REQUEST: usize = 5000;

/// The oldest conversion LinkedIn takes.
pub const MAX_EVENT_AGE: Duration = Duration::from_secs(90 * 24 * 3600);

/// The request rate sends are paced to (see [`LinkedIn`]'s `quota`).
const REQUESTS_PER_MINUTE: u32 = 600;

/// The daily request count sends are paced to (as [`REQUESTS_PER_MINUTE`]).
const REQUESTS_PER_DAY: u32 = 300_000;

/// The `LinkedIn-Version` sent (versions are monthly and retired after about a year).
pub const API_VERSION: &str = "202603";

/// The path of the Conversions API.
pub const PATH: &str = "/rest/conversionEvents";

/// `linkedin` destination config (public).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkedInConfig {
    /// The conversion rule id per event kind (its method must be `CONVERSIONS_API`).
    pub conversion_rules: PerKind,
    /// Send events without an `li_fat_id`, matched on the hashed email alone.
    #[serde(default)]
    pub match_without_click_id: bool,
}

/// `linkedin` credentials (write-only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkedInCredentials {
    /// A member's OAuth access token with `rw_conversions`.
    pub access_token: String,
}

impl std::fmt::Debug for LinkedInCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkedInCredentials { .. }")
    }
}

/// The `linkedin` adapter.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkedIn;

impl Platform for LinkedIn {
    type Config = LinkedInConfig;
    type Credentials = LinkedInCredentials;

    fn destination_type(&self) -> events::DestinationType {
        events::DestinationType::LinkedIn
    }

    fn click_ids(&self) -> &'static [&'static str] {
        &["liFatId"]
    }

    fn check_config(
        &self,
        errors: &mut Errors,
        obj: &mut Obj<'_>,
        kinds: &[EventKind],
    ) -> Option<LinkedInConfig> {
        let rules = required(errors, obj, "conversionRules").and_then(|value| {
            let path = obj.path("conversionRules");
            let map = object(errors, &path, value)?;
            let mut rules = Obj::new(map, path.clone());
            let mut read = |errors: &mut Errors, key: &'static str| match rules.get(key) {
                None => Some(None),
                Some(v) => {
                    digits(errors, &format!("{path}.{key}"), v, "a conversion rule id").map(Some)
                }
            };
            let lead = read(errors, "lead");
            let sale = read(errors, "sale");
            rules.finish(errors);
            let rules = PerKind {
                lead: lead?,
                sale: sale?,
            };
            let mut complete = true;
            for &kind in kinds {
                if rules.get(kind).is_none() {
                    complete = false;
                    errors.push(
                        format!("{path}.{kind}"),
                        "required",
                        format!("is required: the destination subscribes to {kind} events"),
                    );
                }
            }
            complete.then_some(rules)
        });
        let match_without_click_id = optional_bool(errors, obj, "matchWithoutClickId");
        Some(LinkedInConfig {
            conversion_rules: rules?,
            match_without_click_id: match_without_click_id.ok()?.unwrap_or(false),
        })
    }

    fn check_credentials(
        &self,
        errors: &mut Errors,
        obj: &mut Obj<'_>,
    ) -> Option<LinkedInCredentials> {
        required_secret(errors, obj, "accessToken")
            .map(|access_token| LinkedInCredentials { access_token })
    }

    fn limits(&self, _config: &LinkedInConfig) -> Limits {
        Limits {
            batch_size: MAX_PER_REQUEST,
            max_event_age: Some(MAX_EVENT_AGE),
            max_click_age: None,
            dedup_key: "eventId (evt_ id)",
            test_mode: None,
        }
    }

    /// LinkedIn limits each app and each member of an app per day and does not publish the
    /// figures (L.5); the only rates the reference gives are 600 requests a minute and 300,000 a
    /// day (Salesforce's figures), paced per access token, which is one member of one app. A
    /// daily quota spent all the same still answers 429.
    fn quota(
        &self,
        _config: &LinkedInConfig,
        credentials: &LinkedInCredentials,
    ) -> Option<crate::delivery::Quota> {
        Some(crate::delivery::Quota {
            bucket: format!(
                "linkedin-member-app:{}",
                &hashing::sha256_hex(credentials.access_token.trim())[..16]
            ),
            per_minute: Some(REQUESTS_PER_MINUTE),
            per_day: Some(REQUESTS_PER_DAY),
            operations_per_day: None,
            source: "LinkedIn Conversions API: 600 requests per minute and 300,000 per day (as \
                     third parties quote them)",
        })
    }

    fn matches_without_click_id(&self, config: &LinkedInConfig) -> bool {
        config.match_without_click_id
    }

    fn send<'a>(
        &'a self,
        http: &'a Platforms,
        config: &'a LinkedInConfig,
        credentials: &'a LinkedInCredentials,
        batch: &'a [Conversion],
        now: OffsetDateTime,
    ) -> BoxFuture<'a, SendReport> {
        Box::pin(batch::send::<Self>(http, config, credentials, batch, now))
    }
}

/// A value as LinkedIn's `amount`: a decimal string with two places at least.
pub fn amount(value: Decimal) -> String {
    let mut value = value.normalize();
    if value.scale() < 2 {
        value.rescale(2);
    }
    value.to_string()
}

impl JsonApi for LinkedIn {
    type Config = LinkedInConfig;
    type Credentials = LinkedInCredentials;

    type Row = Value;

    const TARGET: RequestTarget = RequestTarget::LinkedInConversionEvents;

    fn secrets(credentials: &LinkedInCredentials) -> Vec<&str> {
        vec![credentials.access_token.as_str()]
    }

    fn row(
        config: &LinkedInConfig,
        conversion: &Conversion,
        _now: OffsetDateTime,
    ) -> Result<Value, Outcome> {
        let event = &conversion.event;
        let Some(rule) = conversion
            .mapped_conversion_action()
            .or_else(|| config.conversion_rules.get(event.kind))
        else {
            return Err(classify::permanent(format!(
                "no conversion rule is configured for {} events",
                event.kind
            )));
        };
        let click = click_value(conversion, "liFatId");
        if click.is_none() && !config.match_without_click_id {
            return Err(Outcome::Skipped {
                reason: "no_click_id: no liFatId, and matchWithoutClickId is off".into(),
            });
        }
        let mut user_ids = Vec::new();
        if !user_data_denied(conversion) {
            if let Some(hash) = event
                .email
                .as_ref()
                .and_then(|email| hashing::meta_email_sha256(email.as_str()))
            {
                user_ids.push(json!({"idType": "SHA256_EMAIL", "idValue": hash}));
            }
        }
        if let Some(click) = click {
            user_ids.push(
                json!({"idType": "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID", "idValue": click}),
            );
        }
        if user_ids.is_empty() {
            return Err(Outcome::Skipped {
                reason: if user_data_denied(conversion) {
                    "consent_denied: adUserData is denied and there is no liFatId to send".into()
                } else {
                    "no_identifiers: no liFatId or email LinkedIn could match".into()
                },
            });
        }
        let mut element = json!({
            "conversion": format!("urn:lla:llaPartnerConversion:{rule}"),
            "conversionHappenedAt": (event.timestamp.min(conversion.received_at).unix_timestamp_nanos() / 1_000_000) as i64,
            "eventId": event_wire_id(conversion.event_id),
            "user": {"userIds": user_ids},
        });
        if let (Some(money), Some(map)) = (event.value, element.as_object_mut()) {
            map.insert(
                "conversionValue".into(),
                json!({"currencyCode": money.currency().code(), "amount": amount(money.amount())}),
            );
        }
        Ok(element)
    }

    fn request(
        platforms: &Platforms,
        _config: &LinkedInConfig,
        credentials: &LinkedInCredentials,
        _token: Option<&str>,
        rows: &[&Value],
    ) -> Result<reqwest::RequestBuilder, Outcome> {
        Ok(platforms
            .client
            .post(crate::join(&platforms.endpoints.linkedin, PATH))
            .bearer_auth(&credentials.access_token)
            .header("LinkedIn-Version", API_VERSION)
            .header("X-Restli-Protocol-Version", "2.0.0")
            .header("X-RestLi-Method", "BATCH_CREATE")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json!({ "elements": rows }).to_string()))
    }

    fn answer(exchange: &Exchange, rows: &[&Value]) -> Answer {
        let status = exchange.status.unwrap_or(0);
        if exchange.is_success() {
            let Some(elements) = exchange
                .json()
                .and_then(|body| body.get("elements").and_then(Value::as_array).cloned())
            else {
                return Answer::All(classify::unexpected_body(status, "no elements"));
            };
            return Answer::Rows(
                (0..rows.len())
                    .map(|i| {
                        match elements
                            .get(i)
                            .and_then(|e| e.get("status"))
                            .and_then(Value::as_u64)
                        {
                            Some(200..=299) => Outcome::Succeeded,
                            Some(code) => classify::permanent(format!(
                                "element status {code}: {}",
                                elements[i]
                                    .get("message")
                                    .and_then(Value::as_str)
                                    .unwrap_or("")
                            )),
                            None => classify::unexpected_body(status, "no status for this element"),
                        }
                    })
                    .collect(),
            );
        }
        let text = batch::message(exchange, &["/message"]);
        if matches!(status, 400 | 422) {
            let named = named_indexes(&text);
            if !named.is_empty() {
                return Answer::RefusedFor(named);
            }
        }
        match status {
            426 => Answer::All(classify::permanent(format!(
                "HTTP 426: LinkedIn-Version {API_VERSION} is retired: {text}"
            ))),
            _ => batch::refused(exchange, &text),
        }
    }
}

/// The elements a LinkedIn refusal names: `Index: 3, ERROR :: …` lines, or `indices [0, 2]`.
pub fn named_indexes(message: &str) -> Vec<(usize, String)> {
    let mut named: Vec<(usize, String)> = Vec::new();
    for line in message.lines() {
        if let Some(rest) = line.trim().strip_prefix("Index: ") {
            let (number, detail) = rest.split_once(',').unwrap_or((rest, ""));
            if let Ok(index) = number.trim().parse::<usize>() {
                named.push((index, detail.trim().to_owned()));
            }
        }
    }
    if named.is_empty() {
        if let Some(start) = message.find("indices [") {
            let rest = &message[start + "indices [".len()..];
            let list = rest.split(']').next().unwrap_or("");
            for number in list.split(',') {
                if let Ok(index) = number.trim().parse::<usize>() {
                    named.push((index, message.trim().to_owned()));
                }
            }
        }
    }
    named.sort_by_key(|(index, _)| *index);
    named.dedup_by_key(|(index, _)| *index);
    named
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_are_paced_per_access_token_without_naming_it() {
        let config = LinkedInConfig {
            conversion_rules: PerKind {
                lead: Some("1".into()),
                sale: None,
            },
            match_without_click_id: false,
        };
        let credentials = |token: &str| LinkedInCredentials {
            access_token: token.into(),
        };
        let quota = LinkedIn.quota(&config, &credentials("AQX-token-1"));
        let Some(quota) = quota else {
            panic!("LinkedIn sends are paced")
        };
        assert_eq!(quota.per_minute, Some(600));
        assert!(quota.bucket.starts_with("linkedin-member-app:"));
        assert!(!quota.bucket.contains("AQX-token-1"));
        let other = LinkedIn.quota(&config, &credentials("AQX-token-2"));
        assert_ne!(other.map(|q| q.bucket), Some(quota.bucket));
    }

    #[test]
    fn amounts_are_decimal_strings_with_cents() {
        assert_eq!(amount(Decimal::new(149, 0)), "149.00");
        assert_eq!(amount(Decimal::new(14995, 2)), "149.95");
        assert_eq!(amount(Decimal::new(1234, 4)), "0.1234");
    }

    #[test]
    fn refusals_name_elements_by_index_or_indices() {
        let text = "Index: 0, ERROR :: /conversionValue/amount :: field is required but not found\nIndex: 2, ERROR :: /user :: bad\n";
        assert_eq!(
            named_indexes(text)
                .iter()
                .map(|(i, _)| *i)
                .collect::<Vec<_>>(),
            [0, 2]
        );
        assert_eq!(
            named_indexes("Conversion's method should be CONVERSIONS_API, indices [1, 3]")
                .iter()
                .map(|(i, _)| *i)
                .collect::<Vec<_>>(),
            [1, 3]
        );
        assert!(named_indexes("Unauthorized").is_empty());
    }
}
