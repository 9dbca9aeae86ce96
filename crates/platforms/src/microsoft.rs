//! Microsoft Advertising offline conversions: Campaign Management v13 REST,
//! `POST /CampaignManagement/v13/OfflineConversions/Apply` (the SOAP service is retired on
//! 31 January 2027), with an access token from the Microsoft identity platform.
//!
//! One `OfflineConversion` per conversion: the goal name of the event's kind
//! (`ConversionName`, which must equal the offline conversion goal's name: Microsoft gives no
//! error for a wrong name and never counts it), the `msclkid` as `MicrosoftClickId`, the event
//! time as `ConversionTime` (UTC, whole seconds, never after the time we received it, so that it
//! is the same on every attempt: Microsoft drops a second conversion with the same click id and
//! time, which is what makes a re-send count once), value and currency, and the email and phone
//! hashed (SHA-256 hex of the trimmed lower-case email; of the E.164 number with its `+`) unless
//! the person denied ad user data: the API has no consent field, so no user data is sent then.
//!
//! Microsoft answers 200 with `PartialErrors` naming failed rows by `Index`; those rows fail
//! permanently, the others succeeded. A call refused whole with 401 (or error code 109, an
//! expired token) gets one token refresh and one more try; 429, 5xx and timeouts are retried
//! (honouring `Retry-After`); other refusals are permanent.
//!
//! Test mode: Microsoft has no validate-only flag; its sandbox is a separate environment with
//! its own accounts and tokens, reached by pointing `CONVRELAY_MICROSOFT_ADS_URL` and
//! `CONVRELAY_MICROSOFT_OAUTH_URL` at it.

use std::time::Duration;

use events::EventKind;
use futures_util::future::BoxFuture;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use time::{OffsetDateTime, UtcOffset};

use crate::batch::{self, Answer, JsonApi};
use crate::model::{Conversion, Outcome, PerKind};
use crate::oauth::RefreshGrant;
use crate::settings::{
    digits, object, optional_string, required, required_secret, Errors, Obj, MAX_SECRET, MAX_STRING,
};
use crate::{classify, hashing, Exchange, Limits, Platform, Platforms, RequestTarget, SendReport};

/// Most offline conversions in one call.
pub const MAX_PER_REQUEST: usize = 1000;

/// The oldest click Microsoft takes a conversion for: the longest conversion window an offline
/// conversion goal can have.
pub const MAX_CLICK_AGE: Duration = Duration::from_secs(90 * 24 * 3600);

/// The path of `ApplyOfflineConversions`.
pub const APPLY_PATH: &str = "/CampaignManagement/v13/OfflineConversions/Apply";

/// The path of `ApplyOfflineConversionAdjustments` (M.A.9): restatements and retractions.
pub const ADJUST_PATH: &str = "/CampaignManagement/v13/OfflineConversionAdjustments/Apply";

/// The scope of an access token for the Microsoft Advertising API.
pub const SCOPE: &str = "https://ads.microsoft.com/msads.manage offline_access";

/// The error code of an expired access token.
const EXPIRED_TOKEN_CODE: i64 = 109;

/// `microsoft_ads` destination config (public).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MicrosoftAdsConfig {
    /// The customer (manager) id, sent as `CustomerId`: digits.
    pub customer_id: String,
    /// The ad account id, sent as `CustomerAccountId`: digits.
    pub account_id: String,
    /// The offline conversion goal's name per event kind (`ConversionName`).
    pub conversion_names: PerKind,
}

/// `microsoft_ads` credentials (write-only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MicrosoftAdsCredentials {
    /// The application (client) id registered with the Microsoft identity platform.
    pub client_id: String,
    /// Its client secret; public (native) applications have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// A refresh token granted with the `msads.manage` scope.
    pub refresh_token: String,
    /// The Microsoft Advertising developer token.
    pub developer_token: String,
}

impl std::fmt::Debug for MicrosoftAdsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MicrosoftAdsCredentials { .. }")
    }
}

/// The `microsoft_ads` adapter.
#[derive(Debug, Clone, Copy, Default)]
pub struct MicrosoftAds;

impl Platform for MicrosoftAds {
    type Config = MicrosoftAdsConfig;
    type Credentials = MicrosoftAdsCredentials;

    fn destination_type(&self) -> events::DestinationType {
        events::DestinationType::MicrosoftAds
    }

    fn click_ids(&self) -> &'static [&'static str] {
        &["msclkid"]
    }

    fn check_config(
        &self,
        errors: &mut Errors,
        obj: &mut Obj<'_>,
        kinds: &[EventKind],
    ) -> Option<MicrosoftAdsConfig> {
        let customer_id = required(errors, obj, "customerId")
            .and_then(|v| digits(errors, &obj.path("customerId"), v, "a customer id"));
        let account_id = required(errors, obj, "accountId")
            .and_then(|v| digits(errors, &obj.path("accountId"), v, "an account id"));
        let names = required(errors, obj, "conversionNames").and_then(|value| {
            let path = obj.path("conversionNames");
            let map = object(errors, &path, value)?;
            let mut names = Obj::new(map, path.clone());
            let lead = optional_string(errors, &mut names, "lead", MAX_STRING);
            let sale = optional_string(errors, &mut names, "sale", MAX_STRING);
            names.finish(errors);
            let names = PerKind {
                lead: lead.ok()?,
                sale: sale.ok()?,
            };
            let mut complete = true;
            for &kind in kinds {
                if names.get(kind).is_none() {
                    complete = false;
                    errors.push(
                        format!("{path}.{kind}"),
                        "required",
                        format!(
                            "is required: the destination subscribes to {kind} events \
                             (the offline conversion goal's name)"
                        ),
                    );
                }
            }
            complete.then_some(names)
        });
        Some(MicrosoftAdsConfig {
            customer_id: customer_id?,
            account_id: account_id?,
            conversion_names: names?,
        })
    }

    fn check_credentials(
        &self,
        errors: &mut Errors,
        obj: &mut Obj<'_>,
    ) -> Option<MicrosoftAdsCredentials> {
        let client_id = required_secret(errors, obj, "clientId");
        let client_secret = optional_string(errors, obj, "clientSecret", MAX_SECRET);
        let refresh_token = required_secret(errors, obj, "refreshToken");
        let developer_token = required_secret(errors, obj, "developerToken");
        Some(MicrosoftAdsCredentials {
            client_id: client_id?,
            client_secret: client_secret.ok()?,
            refresh_token: refresh_token?,
            developer_token: developer_token?,
        })
    }

    fn limits(&self, _config: &MicrosoftAdsConfig) -> Limits {
        Limits {
            batch_size: MAX_PER_REQUEST,
            max_event_age: None,
            max_click_age: Some(MAX_CLICK_AGE),
            dedup_key:
                "MicrosoftClickId + ConversionTime (the event time, the same on every attempt)",
            test_mode: None,
        }
    }

    fn with_refresh_token(
        &self,
        credentials: &MicrosoftAdsCredentials,
        refresh_token: &str,
    ) -> Option<MicrosoftAdsCredentials> {
        Some(MicrosoftAdsCredentials {
            refresh_token: refresh_token.to_owned(),
            ..credentials.clone()
        })
    }

    fn send<'a>(
        &'a self,
        http: &'a Platforms,
        config: &'a MicrosoftAdsConfig,
        credentials: &'a MicrosoftAdsCredentials,
        batch: &'a [Conversion],
        now: OffsetDateTime,
    ) -> BoxFuture<'a, SendReport> {
        Box::pin(batch::send::<Self>(http, config, credentials, batch, now))
    }

    /// A `Retract` adjustment of the offline conversion (M.A.9).
    fn supports_retraction(&self, _config: &MicrosoftAdsConfig) -> bool {
        true
    }

    fn retract<'a>(
        &'a self,
        http: &'a Platforms,
        config: &'a MicrosoftAdsConfig,
        credentials: &'a MicrosoftAdsCredentials,
        batch: &'a [Conversion],
        now: OffsetDateTime,
    ) -> BoxFuture<'a, SendReport> {
        Box::pin(batch::send::<Adjustments<false>>(
            http,
            config,
            credentials,
            batch,
            now,
        ))
    }

    /// A `Restate` adjustment with the new value (M.A.9).
    fn supports_restatement(&self, _config: &MicrosoftAdsConfig) -> bool {
        true
    }

    fn restate<'a>(
        &'a self,
        http: &'a Platforms,
        config: &'a MicrosoftAdsConfig,
        credentials: &'a MicrosoftAdsCredentials,
        batch: &'a [Conversion],
        now: OffsetDateTime,
    ) -> BoxFuture<'a, SendReport> {
        Box::pin(batch::send::<Adjustments<true>>(
            http,
            config,
            credentials,
            batch,
            now,
        ))
    }
}

/// `ConversionTime`: ISO 8601 in UTC with a `Z`, whole seconds.
pub fn conversion_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// Microsoft's hash of an email: SHA-256 hex of the trimmed, lower-cased address.
pub fn email_sha256(email: &str) -> Option<String> {
    hashing::meta_email(email).map(|email| hashing::sha256_hex(&email))
}

/// Microsoft's hash of a phone: SHA-256 hex of the E.164 number with its `+`.
pub fn phone_sha256(phone: &str) -> Option<String> {
    hashing::google_phone_sha256(phone)
}

fn non_empty(value: Option<&String>) -> Option<&str> {
    value.map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// The msclkid of a conversion: the touchpoint's, else the event's own.
fn msclkid(conversion: &Conversion) -> Option<&str> {
    conversion
        .attribution
        .click
        .as_ref()
        .and_then(|click| non_empty(click.click_ids.msclkid.as_ref()))
        .or_else(|| non_empty(conversion.event.click_ids.msclkid.as_ref()))
}

/// One `OfflineConversion`, or why the conversion is not sent.
fn offline_conversion(
    config: &MicrosoftAdsConfig,
    conversion: &Conversion,
) -> Result<Value, Outcome> {
    let event = &conversion.event;
    let Some(name) = conversion
        .mapped_conversion_action()
        .or_else(|| config.conversion_names.get(event.kind))
        .map(str::trim)
        .filter(|name| !name.is_empty())
    else {
        return Err(classify::permanent(format!(
            "no conversion goal name is configured for {} events",
            event.kind
        )));
    };
    let Some(click_id) = msclkid(conversion) else {
        return Err(Outcome::Skipped {
            reason: "no_click_id: no msclkid on the event or its touchpoint".into(),
        });
    };
    let mut row = Map::new();
    row.insert("ConversionName".into(), name.into());
    row.insert(
        "ConversionTime".into(),
        conversion_time(event.timestamp.min(conversion.received_at)).into(),
    );
    row.insert("MicrosoftClickId".into(), click_id.into());
    if let Some(money) = event.value {
        if let Some(amount) = money
            .amount()
            .to_f64()
            .and_then(serde_json::Number::from_f64)
        {
            row.insert("ConversionValue".into(), Value::Number(amount));
            row.insert(
                "ConversionCurrencyCode".into(),
                money.currency().code().into(),
            );
        }
    }
    let denied = event.consent.is_some_and(|c| c.ad_user_data_denied());
    if !denied {
        if let Some(hash) = event.email.as_ref().and_then(|e| email_sha256(e.as_str())) {
            row.insert("HashedEmailAddress".into(), hash.into());
        }
        if let Some(hash) = event.phone.as_ref().and_then(|p| phone_sha256(p.as_str())) {
            row.insert("HashedPhoneNumber".into(), hash.into());
        }
    }
    Ok(Value::Object(row))
}

/// One `OfflineConversionAdjustment` (M.A.9) of a conversion sent before: the original goal name,
/// conversion time and click id identify it (as they did when it was sent), `AdjustmentTime` is
/// now (never before the conversion), and a restatement carries the new total value.
fn adjustment(
    config: &MicrosoftAdsConfig,
    conversion: &Conversion,
    restatement: bool,
    now: OffsetDateTime,
) -> Result<Value, Outcome> {
    let original = offline_conversion(config, conversion)?;
    let mut row = Map::new();
    for key in ["ConversionName", "ConversionTime", "MicrosoftClickId"] {
        if let Some(value) = original.get(key) {
            row.insert(key.into(), value.clone());
        }
    }
    let conversion_at = conversion.event.timestamp.min(conversion.received_at);
    row.insert(
        "AdjustmentTime".into(),
        conversion_time(now.max(conversion_at + time::Duration::seconds(1))).into(),
    );
    row.insert(
        "AdjustmentType".into(),
        if restatement { "Restate" } else { "Retract" }.into(),
    );
    if restatement {
        let value = conversion.event.value.and_then(|money| {
            money
                .amount()
                .to_f64()
                .and_then(serde_json::Number::from_f64)
                .map(|amount| (amount, money.currency().code()))
        });
        let Some((amount, currency)) = value else {
            return Err(classify::permanent(
                "a restatement needs the new value and its currency",
            ));
        };
        row.insert("AdjustmentValue".into(), Value::Number(amount));
        row.insert("AdjustmentCurrencyCode".into(), currency.into());
    }
    Ok(Value::Object(row))
}

/// A Campaign Management REST call to `path`, with the four headers every one needs (M.A.1).
fn call(
    platforms: &Platforms,
    config: &MicrosoftAdsConfig,
    credentials: &MicrosoftAdsCredentials,
    token: Option<&str>,
    path: &str,
) -> reqwest::RequestBuilder {
    platforms
        .client
        .post(crate::join(&platforms.endpoints.microsoft_ads, path))
        .bearer_auth(token.unwrap_or_default())
        .header("DeveloperToken", &credentials.developer_token)
        .header("CustomerId", config.customer_id.trim())
        .header("CustomerAccountId", config.account_id.trim())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
}

/// The refresh-token grant of `creds` at the Microsoft identity platform.
fn grant<'a>(platforms: &'a Platforms, creds: &'a MicrosoftAdsCredentials) -> RefreshGrant<'a> {
    RefreshGrant {
        provider: "Microsoft",
        url: &platforms.endpoints.microsoft_oauth,
        target: RequestTarget::MicrosoftOAuth,
        client_id: &creds.client_id,
        client_secret: creds.client_secret.as_deref(),
        refresh_token: &creds.refresh_token,
        scope: Some(SCOPE),
    }
}

/// True when a whole-call refusal says the access token is no good (401, or code 109).
fn token_refused(exchange: &Exchange) -> bool {
    exchange.status == Some(401)
        || exchange.json().is_some_and(|body| {
            error_codes(&body)
                .iter()
                .any(|(code, _)| *code == EXPIRED_TOKEN_CODE)
        })
}

/// Every `(Code, ErrorCode: Message)` in a Microsoft error answer, wherever it nests
/// (`Errors`, `OperationErrors`, `BatchErrors`).
fn error_codes(body: &Value) -> Vec<(i64, String)> {
    let mut found = Vec::new();
    fn walk(value: &Value, found: &mut Vec<(i64, String)>) {
        match value {
            Value::Object(map) => {
                if let Some(code) = map.get("Code").and_then(Value::as_i64) {
                    let name = map.get("ErrorCode").and_then(Value::as_str).unwrap_or("");
                    let message = map.get("Message").and_then(Value::as_str).unwrap_or("");
                    found.push((code, format!("{name}: {message}")));
                }
                map.values().for_each(|v| walk(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    walk(body, &mut found);
    found
}

/// The outcome of a call refused whole.
fn call_failure(exchange: &Exchange) -> Outcome {
    if let Some(outcome) = exchange.transport_outcome() {
        return outcome;
    }
    let status = exchange.status.unwrap_or(0);
    let detail = exchange
        .json()
        .map(|body| {
            error_codes(&body)
                .into_iter()
                .map(|(code, text)| format!("{code} {text}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|text| !text.is_empty());
    let text = match detail {
        Some(detail) => format!("HTTP {status}: {detail}"),
        None => format!("HTTP {status}"),
    };
    match status {
        408 | 429 | 500..=599 => classify::retry(text, exchange.retry_after()),
        _ => classify::permanent(text),
    }
}

/// Each row's outcome from a 200 answer: rows named in `PartialErrors` (by `Index`) fail
/// permanently with Microsoft's message; the rest succeeded.
fn row_outcomes(exchange: &Exchange, count: usize) -> Vec<Outcome> {
    let Some(body) = exchange.json().filter(Value::is_object) else {
        return vec![classify::unexpected_body(200, "not JSON"); count];
    };
    let mut outcomes = vec![Outcome::Succeeded; count];
    let errors = body
        .get("PartialErrors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    for error in errors {
        let index = error
            .get("Index")
            .and_then(Value::as_u64)
            .and_then(|i| usize::try_from(i).ok());
        let code = error.get("Code").and_then(Value::as_i64).unwrap_or(0);
        let name = error.get("ErrorCode").and_then(Value::as_str).unwrap_or("");
        let message = error.get("Message").and_then(Value::as_str).unwrap_or("");
        let outcome = classify::permanent(format!("{code} {name}: {message}"));
        match index.and_then(|i| outcomes.get_mut(i)) {
            Some(slot) => *slot = classify::worse(slot.clone(), outcome),
            // An error that names no row is about the whole call.
            None => outcomes.iter_mut().for_each(|slot| *slot = outcome.clone()),
        }
    }
    outcomes
}

impl JsonApi for MicrosoftAds {
    type Config = MicrosoftAdsConfig;
    type Credentials = MicrosoftAdsCredentials;
    type Row = Value;

    const TARGET: RequestTarget = RequestTarget::MicrosoftOfflineConversions;

    fn secrets(credentials: &MicrosoftAdsCredentials) -> Vec<&str> {
        let mut secrets = vec![
            credentials.refresh_token.as_str(),
            credentials.developer_token.as_str(),
        ];
        if let Some(secret) = credentials.client_secret.as_deref() {
            secrets.push(secret);
        }
        secrets
    }

    fn grant<'a>(
        platforms: &'a Platforms,
        credentials: &'a MicrosoftAdsCredentials,
    ) -> Option<RefreshGrant<'a>> {
        Some(grant(platforms, credentials))
    }

    fn token_refused(exchange: &Exchange) -> bool {
        token_refused(exchange)
    }

    fn row(
        config: &MicrosoftAdsConfig,
        conversion: &Conversion,
        _now: OffsetDateTime,
    ) -> Result<Value, Outcome> {
        offline_conversion(config, conversion)
    }

    fn request(
        platforms: &Platforms,
        config: &MicrosoftAdsConfig,
        credentials: &MicrosoftAdsCredentials,
        token: Option<&str>,
        rows: &[&Value],
    ) -> Result<reqwest::RequestBuilder, Outcome> {
        Ok(call(platforms, config, credentials, token, APPLY_PATH)
            .body(json!({ "OfflineConversions": rows }).to_string()))
    }

    fn transient(exchange: &Exchange, rows: &[&Value]) -> Answer {
        Self::answer(exchange, rows)
    }

    fn answer(exchange: &Exchange, rows: &[&Value]) -> Answer {
        if exchange.is_success() {
            Answer::Rows(row_outcomes(exchange, rows.len()))
        } else {
            Answer::All(call_failure(exchange))
        }
    }
}

/// `ApplyOfflineConversionAdjustments`: the same call shape and answers as
/// `ApplyOfflineConversions` (`PartialErrors` by `Index`), a `Restate` (`RESTATE`) or a
/// `Retract` row per conversion.
struct Adjustments<const RESTATE: bool>;

impl<const RESTATE: bool> JsonApi for Adjustments<RESTATE> {
    type Config = MicrosoftAdsConfig;
    type Credentials = MicrosoftAdsCredentials;
    type Row = Value;

    const TARGET: RequestTarget = RequestTarget::MicrosoftOfflineConversionAdjustments;

    fn secrets(credentials: &MicrosoftAdsCredentials) -> Vec<&str> {
        <MicrosoftAds as JsonApi>::secrets(credentials)
    }

    fn grant<'a>(
        platforms: &'a Platforms,
        credentials: &'a MicrosoftAdsCredentials,
    ) -> Option<RefreshGrant<'a>> {
        Some(grant(platforms, credentials))
    }

    fn token_refused(exchange: &Exchange) -> bool {
        token_refused(exchange)
    }

    fn row(
        config: &MicrosoftAdsConfig,
        conversion: &Conversion,
        now: OffsetDateTime,
    ) -> Result<Value, Outcome> {
        adjustment(config, conversion, RESTATE, now)
    }

    fn request(
        platforms: &Platforms,
        config: &MicrosoftAdsConfig,
        credentials: &MicrosoftAdsCredentials,
        token: Option<&str>,
        rows: &[&Value],
    ) -> Result<reqwest::RequestBuilder, Outcome> {
        Ok(call(platforms, config, credentials, token, ADJUST_PATH)
            .body(json!({ "OfflineConversionAdjustments": rows }).to_string()))
    }

    fn transient(exchange: &Exchange, rows: &[&Value]) -> Answer {
        Self::answer(exchange, rows)
    }

    fn answer(exchange: &Exchange, rows: &[&Value]) -> Answer {
        <MicrosoftAds as JsonApi>::answer(exchange, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn conversion_times_are_utc_whole_seconds_with_a_z() {
        assert_eq!(
            conversion_time(datetime!(2026-11-20 12:32:45.678 +01:00)),
            "2026-11-20T11:32:45Z"
        );
    }

    #[test]
    fn emails_are_trimmed_and_lower_cased_and_phones_keep_the_plus() {
        assert_eq!(
            email_sha256(" John_Smith@gmail.com ").as_deref(),
            Some("62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f")
        );
        assert_eq!(
            phone_sha256("+16505551212").as_deref(),
            Some("1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8")
        );
    }

    #[test]
    fn error_codes_are_found_wherever_they_nest() {
        let body = json!({"Errors": [{"Code": 109, "ErrorCode": "AuthenticationTokenExpired",
            "Message": "expired"}], "BatchErrors": [{"Code": 4806, "Index": 0}]});
        let codes = error_codes(&body);
        assert_eq!(codes.len(), 2);
        assert!(codes
            .iter()
            .any(|(code, text)| *code == 109 && text.contains("Expired")));
    }
}
