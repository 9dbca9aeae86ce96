//! Google: offline click conversions through the Data Manager API (`events:ingest`, the default
//! and the only path open to new adopters since June 2026) or the Google Ads API v26
//! (`uploadClickConversions`; `uploadConversionAdjustments` for retractions), for allow-listed
//! accounts.
//!
//! Both carry the same facts: one click id (gclid, else gbraid, else wbraid), the conversion
//! action of the event's kind, the time in the API's own format, value and currency, the
//! `orderId` / `transactionId` that makes a re-send count once, consent, and the email and phone
//! hashed by Google's rules. They differ in how they fail: the Ads API answers 200 with a
//! `partialFailureError` naming failed rows by index; the Data Manager API rejects the whole
//! request for one bad event, naming it in a field violation, so those events fail and the others
//! are sent again at once.

use std::collections::{BTreeMap, HashSet};

use events::{Consent, ConsentStatus, EventKind};
use rust_decimal::prelude::ToPrimitive;
use serde_json::{json, Map, Value};
use time::{Duration as TimeDuration, OffsetDateTime, UtcOffset};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::batch::{self, Answer, JsonApi};
use crate::delivery::{CheckReport, ConfirmationMode, ConfirmationStatus, Quota, UploadCheck};
use crate::model::{Conversion, Outcome, PerKind};
use crate::oauth::RefreshGrant;
use crate::settings::{
    digits, object, one_of, optional_bool, optional_string, required, required_secret, Errors, Obj,
    Recorded,
};
use crate::{
    classify, hashing, order_id, record, Collector, Exchange, Limits, Platform, Platforms,
    RequestTarget, SendReport,
};

/// Most conversions (or adjustments, or Data Manager events) in one request.
pub const MAX_PER_REQUEST: usize = 2000;

/// The Google Ads API version in the paths.
pub const ADS_API_VERSION: &str = "v26";

/// Data Manager ingestion requests per minute per Google Cloud project.
pub const DATA_MANAGER_REQUESTS_PER_MINUTE: u32 = 300;

/// Data Manager ingestion requests per day per Google Cloud project.
pub const DATA_MANAGER_REQUESTS_PER_DAY: u32 = 100_000;

/// `conversionDateTime` / `adjustmentDateTime`: `yyyy-mm-dd hh:mm:ss+hh:mm`, here always in UTC.
pub fn ads_datetime(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}+00:00",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// Data Manager `eventTimestamp`: RFC 3339 in UTC with a `T` and a `Z`, whole seconds.
pub fn data_manager_timestamp(at: OffsetDateTime) -> String {
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

/// The oldest click Google takes a conversion for: the longest click-through window a
/// conversion action can have (older clicks are refused as `EXPIRED_EVENT`).
pub const MAX_CLICK_AGE: std::time::Duration = std::time::Duration::from_secs(90 * 24 * 3600);

/// Data Manager `eventSource` values.
pub const EVENT_SOURCES: &str = "WEB, APP, IN_STORE, PHONE, MESSAGE, OTHER";

/// Which Google API a `google_ads` destination uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoogleApi {
    /// Data Manager API `events:ingest` (the default).
    #[default]
    DataManager,
    /// Google Ads API `uploadClickConversions` / `uploadConversionAdjustments` (v26).
    GoogleAdsApi,
}

/// The Google Ads API access level of the Google Cloud project that owns the OAuth client: the
/// operations a day it may make (reference A.0). Data Manager has a quota of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLevel {
    /// Test accounts only.
    Test,
    /// 2,880 operations a day on production accounts.
    Explorer,
    /// 15,000 operations a day.
    Basic,
    /// No daily limit.
    Standard,
}

impl AccessLevel {
    /// The operations a day it allows, where it counts them.
    pub fn operations_per_day(self) -> Option<u32> {
        match self {
            Self::Explorer => Some(2_880),
            Self::Basic => Some(15_000),
            Self::Test | Self::Standard => None,
        }
    }
}

/// `google_ads` destination config (public: returned by the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoogleAdsConfig {
    /// Which API.
    #[serde(default)]
    pub api: GoogleApi,
    /// Customer id, 10 digits (dashes removed).
    pub customer_id: String,
    /// Manager account id sent as `login-customer-id`, 10 digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_customer_id: Option<String>,
    /// Conversion action ids per event kind.
    pub conversion_actions: PerKind,
    /// Data Manager `eventSource` (default `WEB`).
    #[serde(default = "default_event_source")]
    pub event_source: String,
    /// Ask Google to validate without storing.
    #[serde(default)]
    pub validate_only: bool,
    /// The Google Ads API access level of the OAuth client's Cloud project, when declared: sends
    /// through that API are paced to its operations a day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_level: Option<AccessLevel>,
}

fn default_event_source() -> String {
    "WEB".into()
}

/// `google_ads` credentials (write-only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoogleCredentials {
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: String,
    /// OAuth refresh token.
    pub refresh_token: String,
    /// Developer token, sent when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub developer_token: Option<String>,
}

impl std::fmt::Debug for GoogleCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GoogleCredentials { .. }")
    }
}

/// The `google_ads` adapter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Google;

impl Platform for Google {
    type Config = GoogleAdsConfig;
    type Credentials = GoogleCredentials;

    fn destination_type(&self) -> events::DestinationType {
        events::DestinationType::GoogleAds
    }

    fn click_ids(&self) -> &'static [&'static str] {
        &["gclid", "gbraid", "wbraid"]
    }

    fn check_config(
        &self,
        errors: &mut Errors,
        obj: &mut Obj<'_>,
        kinds: &[EventKind],
    ) -> Option<GoogleAdsConfig> {
        check_config(errors, obj, kinds)
    }

    fn check_credentials(
        &self,
        errors: &mut Errors,
        obj: &mut Obj<'_>,
    ) -> Option<GoogleCredentials> {
        let client_id = required_secret(errors, obj, "clientId");
        let client_secret = required_secret(errors, obj, "clientSecret");
        let refresh_token = required_secret(errors, obj, "refreshToken");
        let developer_token =
            optional_string(errors, obj, "developerToken", crate::settings::MAX_SECRET);
        Some(GoogleCredentials {
            client_id: client_id?,
            client_secret: client_secret?,
            refresh_token: refresh_token?,
            developer_token: developer_token.ok()?,
        })
    }

    fn limits(&self, config: &GoogleAdsConfig) -> Limits {
        Limits {
            batch_size: MAX_PER_REQUEST,
            max_event_age: None,
            max_click_age: Some(MAX_CLICK_AGE),
            dedup_key: match config.api {
                GoogleApi::DataManager => "transactionId (invoiceId, leadId or evt_ id)",
                GoogleApi::GoogleAdsApi => "orderId (invoiceId, leadId or evt_ id)",
            },
            test_mode: Some("validateOnly"),
        }
    }

    fn supports_retraction(&self, config: &GoogleAdsConfig) -> bool {
        config.api == GoogleApi::GoogleAdsApi
    }

    /// `RESTATEMENT` adjustments go through the Google Ads API only (A.5); how Data Manager
    /// would encode one is unconfirmed (A.7), so its destinations record `not_supported`.
    fn supports_restatement(&self, config: &GoogleAdsConfig) -> bool {
        config.api == GoogleApi::GoogleAdsApi
    }

    fn restate<'a>(
        &'a self,
        http: &'a Platforms,
        config: &'a GoogleAdsConfig,
        credentials: &'a GoogleCredentials,
        batch: &'a [Conversion],
        now: OffsetDateTime,
    ) -> BoxFuture<'a, SendReport> {
        Box::pin(adjust::<true>(http, config, credentials, batch, now))
    }

    /// Data Manager processes an accepted upload later; a `validateOnly` request stores nothing
    /// and has no status to read (`INVALID_REQUEST_ID`), and the Ads API answers per row at once.
    fn confirmation_mode(&self, config: &GoogleAdsConfig) -> ConfirmationMode {
        if config.api == GoogleApi::DataManager && !config.validate_only {
            ConfirmationMode::Deferred
        } else {
            ConfirmationMode::Immediate
        }
    }

    fn check_upload<'a>(
        &'a self,
        http: &'a Platforms,
        _config: &'a GoogleAdsConfig,
        credentials: &'a GoogleCredentials,
        request_id: &'a str,
    ) -> BoxFuture<'a, CheckReport> {
        Box::pin(check_upload(http, credentials, request_id))
    }

    /// Data Manager: 300 ingestion requests per minute and 100,000 per day per Google Cloud
    /// project, which is the OAuth client's project (A.7). The Google Ads API: operations a day
    /// by that project's access level (A.0), where the destination declares it (`accessLevel`);
    /// otherwise its 429s are honoured (a spent day parks the destination).
    fn quota(&self, config: &GoogleAdsConfig, credentials: &GoogleCredentials) -> Option<Quota> {
        let project = &hashing::sha256_hex(credentials.client_id.trim())[..16];
        match config.api {
            GoogleApi::DataManager => Some(Quota {
                bucket: format!("google-cloud-project:{project}"),
                per_minute: Some(DATA_MANAGER_REQUESTS_PER_MINUTE),
                per_day: Some(DATA_MANAGER_REQUESTS_PER_DAY),
                operations_per_day: None,
                source: "Data Manager API: 300 ingestion requests per minute and 100,000 per day \
                         per Google Cloud project",
            }),
            GoogleApi::GoogleAdsApi => {
                let operations = config.access_level?.operations_per_day()?;
                Some(Quota {
                    bucket: format!("google-ads-api-operations:{project}"),
                    per_minute: None,
                    per_day: None,
                    operations_per_day: Some(operations),
                    source: "Google Ads API: operations per day by the Cloud project's access \
                             level (Explorer 2,880, Basic 15,000)",
                })
            }
        }
    }

    fn with_refresh_token(
        &self,
        credentials: &GoogleCredentials,
        refresh_token: &str,
    ) -> Option<GoogleCredentials> {
        Some(GoogleCredentials {
            refresh_token: refresh_token.to_owned(),
            ..credentials.clone()
        })
    }

    fn send<'a>(
        &'a self,
        http: &'a Platforms,
        config: &'a GoogleAdsConfig,
        credentials: &'a GoogleCredentials,
        batch: &'a [Conversion],
        now: OffsetDateTime,
    ) -> BoxFuture<'a, SendReport> {
        Box::pin(send(http, config, credentials, batch, now))
    }

    fn retract<'a>(
        &'a self,
        http: &'a Platforms,
        config: &'a GoogleAdsConfig,
        credentials: &'a GoogleCredentials,
        batch: &'a [Conversion],
        now: OffsetDateTime,
    ) -> BoxFuture<'a, SendReport> {
        Box::pin(retract(http, config, credentials, batch, now))
    }
}

/// A Google Ads customer id: 10 digits, dashes allowed in (`123-456-7890`), stored without.
pub fn customer_id(errors: &mut Errors, field: &str, value: &Value) -> Option<String> {
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

fn check_config(
    errors: &mut Errors,
    obj: &mut Obj<'_>,
    kinds: &[EventKind],
) -> Option<GoogleAdsConfig> {
    let api = match one_of(errors, obj, "api", "data_manager, google_ads_api") {
        Ok(Some(api)) if api == "google_ads_api" => Ok(GoogleApi::GoogleAdsApi),
        Ok(_) => Ok(GoogleApi::DataManager),
        Err(Recorded) => Err(Recorded),
    };
    let customer = required(errors, obj, "customerId")
        .and_then(|v| customer_id(errors, &obj.path("customerId"), v));
    let login = match obj.get("loginCustomerId") {
        None => Ok(None),
        Some(v) => customer_id(errors, &obj.path("loginCustomerId"), v)
            .map(Some)
            .ok_or(Recorded),
    };
    let actions = required(errors, obj, "conversionActions").and_then(|value| {
        let path = obj.path("conversionActions");
        let map = object(errors, &path, value)?;
        let mut actions = Obj::new(map, path.clone());
        let mut read =
            |errors: &mut Errors, key: &'static str| -> Result<Option<String>, Recorded> {
                match actions.get(key) {
                    None => Ok(None),
                    Some(v) => digits(
                        errors,
                        &format!("{path}.{key}"),
                        v,
                        "a conversion action id",
                    )
                    .map(Some)
                    .ok_or(Recorded),
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
        for &kind in kinds {
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
    let event_source = one_of(errors, obj, "eventSource", EVENT_SOURCES);
    let validate_only = optional_bool(errors, obj, "validateOnly");
    let access_level = one_of(
        errors,
        obj,
        "accessLevel",
        "test, explorer, basic, standard",
    )
    .map(|level| match level.as_deref() {
        Some("test") => Some(AccessLevel::Test),
        Some("explorer") => Some(AccessLevel::Explorer),
        Some("basic") => Some(AccessLevel::Basic),
        Some("standard") => Some(AccessLevel::Standard),
        _ => None,
    });
    Some(GoogleAdsConfig {
        api: api.ok()?,
        customer_id: customer?,
        login_customer_id: login.ok()?,
        conversion_actions: actions?,
        event_source: event_source.ok()?.unwrap_or_else(|| "WEB".to_owned()),
        validate_only: validate_only.ok()?.unwrap_or(false),
        access_level: access_level.ok()?,
    })
}

/// One conversion ready for either Google API.
#[derive(Debug, Clone)]
struct Row {
    action_id: String,
    order_id: String,
    /// The event time, never after `now` (events may carry a few minutes of clock skew; Google
    /// refuses times in the future).
    at: OffsetDateTime,
    click: Option<(&'static str, String)>,
    email_sha256: Option<String>,
    phone_sha256: Option<String>,
    value: Option<(f64, &'static str)>,
    consent: Option<Consent>,
    ip: Option<String>,
    user_agent: Option<String>,
}

fn digits_only(id: &str) -> String {
    id.chars().filter(char::is_ascii_digit).collect()
}

/// The conversion action id of `kind`: the number, also from a resource name
/// (`customers/1/conversionActions/2`).
fn action_id(
    config: &GoogleAdsConfig,
    kind: EventKind,
    mapped: Option<&str>,
) -> Result<String, Outcome> {
    let configured = mapped
        .or_else(|| config.conversion_actions.get(kind))
        .ok_or_else(|| {
            classify::permanent(format!(
                "no conversion action is configured for {kind} events"
            ))
        })?;
    let id = configured.rsplit('/').next().unwrap_or(configured).trim();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(classify::permanent(format!(
            "the conversion action for {kind} events is not a numeric id"
        )));
    }
    Ok(id.to_owned())
}

/// The Google click id of a conversion: the touchpoint's, else the event's own; gclid first,
/// then gbraid, then wbraid (only one may be sent).
fn google_click(conversion: &Conversion) -> Option<(&'static str, String)> {
    let from = |ids: &events::ClickIds| {
        [
            ("gclid", &ids.gclid),
            ("gbraid", &ids.gbraid),
            ("wbraid", &ids.wbraid),
        ]
        .into_iter()
        .find_map(|(name, value)| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(|value| (name, value.to_owned()))
        })
    };
    conversion
        .attribution
        .click
        .as_ref()
        .and_then(|touchpoint| from(&touchpoint.click_ids))
        .or_else(|| from(&conversion.event.click_ids))
}

fn prepare(
    config: &GoogleAdsConfig,
    conversion: &Conversion,
    now: OffsetDateTime,
) -> Result<Row, Outcome> {
    let event = &conversion.event;
    let action_id = action_id(config, event.kind, conversion.mapped_conversion_action())?;
    let click = google_click(conversion);
    let consent = event.consent;
    let denied = consent.is_some_and(|consent| consent.ad_user_data_denied());
    let (email_sha256, phone_sha256) = if denied {
        (None, None)
    } else {
        (
            event
                .email
                .as_ref()
                .and_then(|email| hashing::google_email_sha256(email.as_str())),
            event
                .phone
                .as_ref()
                .and_then(|phone| hashing::google_phone_sha256(phone.as_str())),
        )
    };
    if click.is_none() && email_sha256.is_none() && phone_sha256.is_none() {
        let had_user_data = event.email.is_some() || event.phone.is_some();
        let reason = if denied && had_user_data {
            "consent_denied: adUserData is denied and there is no gclid, gbraid or wbraid to send"
        } else {
            "no_identifiers: no gclid, gbraid or wbraid and no email or phone"
        };
        return Err(Outcome::Skipped {
            reason: reason.into(),
        });
    }
    let touchpoint = conversion.attribution.click.as_ref();
    let (ip, user_agent) = if denied {
        (None, None)
    } else {
        (
            event
                .ip
                .or_else(|| touchpoint.and_then(|click| click.ip))
                .map(|ip| ip.to_string()),
            event
                .user_agent
                .clone()
                .or_else(|| touchpoint.and_then(|click| click.user_agent.clone())),
        )
    };
    let value = event.value.and_then(|money| {
        money
            .amount()
            .to_f64()
            .map(|amount| (amount, money.currency().code()))
    });
    Ok(Row {
        action_id,
        order_id: order_id(conversion),
        at: event.timestamp.min(now),
        click,
        email_sha256,
        phone_sha256,
        value,
        consent,
        ip,
        user_agent,
    })
}

/// Splits rows into requests of at most [`MAX_PER_REQUEST`], never putting one order id twice in
/// a request (Google refuses that as `DUPLICATE_ORDER_ID`).
fn chunks<T>(rows: Vec<T>, key: impl Fn(&T) -> &str) -> Vec<Vec<T>> {
    let mut chunks: Vec<(Vec<T>, HashSet<String>)> = Vec::new();
    for row in rows {
        let id = key(&row).to_owned();
        let slot = chunks
            .iter_mut()
            .position(|(rows, ids)| rows.len() < MAX_PER_REQUEST && !ids.contains(&id));
        match slot {
            Some(position) => {
                let (rows, ids) = &mut chunks[position];
                ids.insert(id);
                rows.push(row);
            }
            None => chunks.push((vec![row], HashSet::from([id]))),
        }
    }
    chunks.into_iter().map(|(rows, _)| rows).collect()
}

fn money_json(amount: f64) -> Value {
    serde_json::Number::from_f64(amount).map_or(Value::Null, Value::Number)
}

fn ads_consent(consent: Option<Consent>) -> Option<Value> {
    let status = consent?.ad_user_data?;
    Some(json!({"adUserData": match status {
        ConsentStatus::Granted => "GRANTED",
        ConsentStatus::Denied => "DENIED",
    }}))
}

fn data_manager_consent(consent: Option<Consent>) -> Option<Value> {
    let consent = consent?;
    let name = |status: ConsentStatus| match status {
        ConsentStatus::Granted => "CONSENT_GRANTED",
        ConsentStatus::Denied => "CONSENT_DENIED",
    };
    let mut map = Map::new();
    if let Some(status) = consent.ad_user_data {
        map.insert("adUserData".into(), name(status).into());
    }
    if let Some(status) = consent.ad_personalization {
        map.insert("adPersonalization".into(), name(status).into());
    }
    (!map.is_empty()).then_some(Value::Object(map))
}

/// A `ClickConversion` of `uploadClickConversions`: exactly one of gclid, gbraid, wbraid or
/// `userIdentifiers` (a braid refuses user identifiers, and with a gclid they are ignored).
fn ads_conversion(customer_id: &str, row: &Row) -> Value {
    let mut conversion = Map::new();
    match &row.click {
        Some((name, value)) => {
            conversion.insert((*name).into(), value.clone().into());
        }
        None => {
            let mut identifiers = Vec::new();
            if let Some(hash) = &row.email_sha256 {
                identifiers
                    .push(json!({"hashedEmail": hash, "userIdentifierSource": "FIRST_PARTY"}));
            }
            if let Some(hash) = &row.phone_sha256 {
                identifiers.push(
                    json!({"hashedPhoneNumber": hash, "userIdentifierSource": "FIRST_PARTY"}),
                );
            }
            conversion.insert("userIdentifiers".into(), identifiers.into());
        }
    }
    conversion.insert(
        "conversionAction".into(),
        format!(
            "customers/{customer_id}/conversionActions/{}",
            row.action_id
        )
        .into(),
    );
    conversion.insert("conversionDateTime".into(), ads_datetime(row.at).into());
    if let Some((amount, currency)) = row.value {
        conversion.insert("conversionValue".into(), money_json(amount));
        conversion.insert("currencyCode".into(), currency.into());
    }
    conversion.insert("orderId".into(), row.order_id.clone().into());
    if let Some(consent) = ads_consent(row.consent) {
        conversion.insert("consent".into(), consent);
    }
    Value::Object(conversion)
}

/// The reference of the Data Manager destination of a conversion action.
fn destination_reference(action_id: &str) -> String {
    format!("conversion_action_{action_id}")
}

/// An `IngestEventsRequest` for `rows`: one destination per conversion action they use.
fn data_manager_body(config: &GoogleAdsConfig, rows: &[&Row]) -> Value {
    let customer_id = digits_only(&config.customer_id);
    let login = config.login_customer_id.as_deref().map(digits_only);
    let actions: BTreeMap<&str, ()> = rows
        .iter()
        .map(|row| (row.action_id.as_str(), ()))
        .collect();
    let destinations: Vec<Value> = actions
        .keys()
        .map(|action_id| {
            let mut destination = json!({
                "reference": destination_reference(action_id),
                "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": customer_id},
                "productDestinationId": action_id,
            });
            if let (Some(login), Some(map)) = (&login, destination.as_object_mut()) {
                if !login.is_empty() && *login != customer_id {
                    map.insert(
                        "loginAccount".into(),
                        json!({"accountType": "GOOGLE_ADS", "accountId": login}),
                    );
                }
            }
            destination
        })
        .collect();
    let event_source = match config.event_source.trim() {
        "" => "WEB".to_owned(),
        source => source.to_ascii_uppercase(),
    };
    let events: Vec<Value> = rows
        .iter()
        .map(|row| {
            let mut event = Map::new();
            event.insert(
                "destinationReferences".into(),
                json!([destination_reference(&row.action_id)]),
            );
            event.insert("transactionId".into(), row.order_id.clone().into());
            event.insert(
                "eventTimestamp".into(),
                data_manager_timestamp(row.at).into(),
            );
            event.insert("eventSource".into(), event_source.clone().into());
            if let Some((name, value)) = &row.click {
                event.insert("adIdentifiers".into(), json!({ *name: value }));
            }
            if let Some((amount, currency)) = row.value {
                event.insert("conversionValue".into(), money_json(amount));
                event.insert("currency".into(), currency.into());
            }
            let mut identifiers = Vec::new();
            if let Some(hash) = &row.email_sha256 {
                identifiers.push(json!({"emailAddress": hash}));
            }
            if let Some(hash) = &row.phone_sha256 {
                identifiers.push(json!({"phoneNumber": hash}));
            }
            if !identifiers.is_empty() {
                event.insert("userData".into(), json!({"userIdentifiers": identifiers}));
            }
            if let Some(consent) = data_manager_consent(row.consent) {
                event.insert("consent".into(), consent);
            }
            let mut device = Map::new();
            if let Some(agent) = &row.user_agent {
                device.insert("userAgent".into(), agent.clone().into());
            }
            if let Some(ip) = &row.ip {
                device.insert("ipAddress".into(), ip.clone().into());
            }
            if !device.is_empty() {
                event.insert("eventDeviceInfo".into(), Value::Object(device));
            }
            Value::Object(event)
        })
        .collect();
    json!({
        "destinations": destinations,
        "encoding": "HEX",
        "events": events,
        "validateOnly": config.validate_only,
    })
}

/// Everything a record or outcome must not show (the access token is added once known).
fn google_secrets(creds: &GoogleCredentials) -> Vec<&str> {
    let mut secrets = vec![creds.client_secret.as_str(), creds.refresh_token.as_str()];
    if let Some(developer_token) = creds.developer_token.as_deref() {
        secrets.push(developer_token);
    }
    secrets
}

/// The refresh-token grant of `creds` at Google's token endpoint.
fn grant<'a>(platforms: &'a Platforms, creds: &'a GoogleCredentials) -> RefreshGrant<'a> {
    RefreshGrant {
        provider: "Google",
        url: &platforms.endpoints.google_oauth,
        target: RequestTarget::GoogleOAuth,
        client_id: &creds.client_id,
        client_secret: Some(&creds.client_secret),
        refresh_token: &creds.refresh_token,
        scope: None,
    }
}

/// True when a field path element names `field`: Google writes proto field names there
/// (`conversion_adjustments`), our bodies use their JSON names (`conversionAdjustments`).
fn same_field(name: &str, field: &str) -> bool {
    name.replace('_', "").eq_ignore_ascii_case(field)
}

/// The outcome of each row of an Ads API answer: succeeded unless `partialFailureError` names
/// it (`location.fieldPathElements` with `fieldName == list_field`).
fn ads_row_outcomes(body: &Value, list_field: &str, count: usize) -> Vec<Outcome> {
    let mut outcomes = vec![Outcome::Succeeded; count];
    let Some(failure) = body
        .get("partialFailureError")
        .filter(|failure| failure.is_object())
    else {
        return outcomes;
    };
    let errors: Vec<&Value> = failure
        .get("details")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|detail| detail.get("errors").and_then(Value::as_array))
        .flatten()
        .collect();
    if errors.is_empty() {
        // Something failed but Google did not say which: every row goes again; the order id
        // makes the ones already taken come back as ORDER_ID_ALREADY_IN_USE.
        let message = failure.get("message").and_then(Value::as_str).unwrap_or("");
        let outcome = classify::retry(format!("partial failure without details: {message}"), None);
        return vec![outcome; count];
    }
    for error in errors {
        let (family, code) = classify::google_error_code(error)
            .unwrap_or_else(|| ("unknown".into(), "UNKNOWN".into()));
        let message = error.get("message").and_then(Value::as_str).unwrap_or("");
        let outcome = classify::google_ads_row(&family, &code, message);
        let index = error
            .pointer("/location/fieldPathElements")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|element| {
                element
                    .get("fieldName")
                    .and_then(Value::as_str)
                    .is_some_and(|name| same_field(name, list_field))
            })
            .and_then(|element| element.get("index"))
            .and_then(Value::as_u64)
            .and_then(|index| usize::try_from(index).ok());
        match index {
            Some(index) if index < count => {
                let current = std::mem::replace(&mut outcomes[index], Outcome::Succeeded);
                outcomes[index] = classify::worse(current, outcome);
            }
            // An error about no row in particular concerns them all.
            _ => {
                for slot in &mut outcomes {
                    let current = std::mem::replace(slot, Outcome::Succeeded);
                    *slot = classify::worse(current, outcome.clone());
                }
            }
        }
    }
    outcomes
}

/// What an Ads API answer means for its `count` rows: per row from a 200 (partial failures,
/// `ORDER_ID_ALREADY_IN_USE` as already delivered), else the request's failure for all of them
/// (`retryDelay` and `Retry-After` honoured).
fn ads_answer(exchange: &Exchange, list_field: &str, count: usize) -> Answer {
    let status = exchange.status.unwrap_or(0);
    if exchange.is_success() {
        return match exchange.json().filter(Value::is_object) {
            Some(body) => Answer::Rows(ads_row_outcomes(&body, list_field, count)),
            None => Answer::All(classify::unexpected_body(status, "not JSON")),
        };
    }
    Answer::All(classify::google_request_failure(
        status,
        exchange.retry_after(),
        &exchange.body,
    ))
}

/// A POST of one Ads API method (`uploadClickConversions`, `uploadConversionAdjustments`) with
/// `items` as its `list_field`.
fn ads_request(
    platforms: &Platforms,
    config: &GoogleAdsConfig,
    creds: &GoogleCredentials,
    token: Option<&str>,
    method: &str,
    list_field: &str,
    items: Vec<Value>,
) -> reqwest::RequestBuilder {
    let customer_id = digits_only(&config.customer_id);
    let url = super::join(
        &platforms.endpoints.google_ads,
        &format!("/{ADS_API_VERSION}/customers/{customer_id}:{method}"),
    );
    let body = json!({
        list_field: items,
        "partialFailure": true,
        "validateOnly": config.validate_only,
    });
    let mut request = platforms
        .client
        .post(&url)
        .bearer_auth(token.unwrap_or_default())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    if let Some(developer_token) = creds
        .developer_token
        .as_deref()
        .filter(|token| !token.is_empty())
    {
        request = request.header("developer-token", developer_token);
    }
    if let Some(login) = config
        .login_customer_id
        .as_deref()
        .map(digits_only)
        .filter(|login| !login.is_empty())
    {
        request = request.header("login-customer-id", login);
    }
    request
}

/// `uploadClickConversions` of the Google Ads API.
struct AdsClickConversions;

impl JsonApi for AdsClickConversions {
    type Config = GoogleAdsConfig;
    type Credentials = GoogleCredentials;
    type Row = Row;

    const TARGET: RequestTarget = RequestTarget::GoogleAdsUploadClickConversions;

    fn secrets(credentials: &GoogleCredentials) -> Vec<&str> {
        google_secrets(credentials)
    }

    fn grant<'a>(
        platforms: &'a Platforms,
        credentials: &'a GoogleCredentials,
    ) -> Option<RefreshGrant<'a>> {
        Some(grant(platforms, credentials))
    }

    fn row(
        config: &GoogleAdsConfig,
        conversion: &Conversion,
        now: OffsetDateTime,
    ) -> Result<Row, Outcome> {
        prepare(config, conversion, now)
    }

    fn groups(rows: Vec<(usize, Row)>) -> Vec<Vec<(usize, Row)>> {
        chunks(rows, |(_, row)| row.order_id.as_str())
    }

    fn request(
        platforms: &Platforms,
        config: &GoogleAdsConfig,
        credentials: &GoogleCredentials,
        token: Option<&str>,
        rows: &[&Row],
    ) -> Result<reqwest::RequestBuilder, Outcome> {
        let customer_id = digits_only(&config.customer_id);
        let items = rows
            .iter()
            .map(|row| ads_conversion(&customer_id, row))
            .collect();
        Ok(ads_request(
            platforms,
            config,
            credentials,
            token,
            "uploadClickConversions",
            "conversions",
            items,
        ))
    }

    fn transient(exchange: &Exchange, rows: &[&Row]) -> Answer {
        Self::answer(exchange, rows)
    }

    fn answer(exchange: &Exchange, rows: &[&Row]) -> Answer {
        ads_answer(exchange, "conversions", rows.len())
    }
}

/// `uploadConversionAdjustments` of the Google Ads API: retractions, or (`RESTATEMENT`)
/// restatements.
struct AdsAdjustments<const RESTATEMENT: bool>;

impl<const RESTATEMENT: bool> JsonApi for AdsAdjustments<RESTATEMENT> {
    type Config = GoogleAdsConfig;
    type Credentials = GoogleCredentials;
    /// The order id and the `ConversionAdjustment`.
    type Row = (String, Value);

    const TARGET: RequestTarget = RequestTarget::GoogleAdsUploadConversionAdjustments;

    fn secrets(credentials: &GoogleCredentials) -> Vec<&str> {
        google_secrets(credentials)
    }

    fn grant<'a>(
        platforms: &'a Platforms,
        credentials: &'a GoogleCredentials,
    ) -> Option<RefreshGrant<'a>> {
        Some(grant(platforms, credentials))
    }

    /// By order id (A.5): `restatementValue` (the new total) is required for `RESTATEMENT` and
    /// refused on `RETRACTION`.
    fn row(
        config: &GoogleAdsConfig,
        conversion: &Conversion,
        now: OffsetDateTime,
    ) -> Result<(String, Value), Outcome> {
        let customer_id = digits_only(&config.customer_id);
        let action = action_id(
            config,
            conversion.event.kind,
            conversion.mapped_conversion_action(),
        )?;
        let order_id = order_id(conversion);
        // The adjustment must come after the conversion it adjusts.
        let at = now.max(conversion.event.timestamp + TimeDuration::seconds(1));
        let mut adjustment = json!({
            "orderId": order_id,
            "conversionAction": format!("customers/{customer_id}/conversionActions/{action}"),
            "adjustmentType": if RESTATEMENT { "RESTATEMENT" } else { "RETRACTION" },
            "adjustmentDateTime": ads_datetime(at),
        });
        if RESTATEMENT {
            let value = conversion.event.value.and_then(|money| {
                money
                    .amount()
                    .to_f64()
                    .map(|amount| (amount, money.currency().code()))
            });
            let Some((amount, currency)) = value else {
                return Err(classify::permanent(
                    "a restatement needs the new value and its currency",
                ));
            };
            if let Some(map) = adjustment.as_object_mut() {
                map.insert(
                    "restatementValue".into(),
                    json!({"adjustedValue": money_json(amount), "currencyCode": currency}),
                );
            }
        }
        Ok((order_id, adjustment))
    }

    fn groups(rows: Vec<(usize, (String, Value))>) -> Vec<Vec<(usize, (String, Value))>> {
        chunks(rows, |(_, (order_id, _))| order_id.as_str())
    }

    fn request(
        platforms: &Platforms,
        config: &GoogleAdsConfig,
        credentials: &GoogleCredentials,
        token: Option<&str>,
        rows: &[&(String, Value)],
    ) -> Result<reqwest::RequestBuilder, Outcome> {
        let items = rows
            .iter()
            .map(|(_, adjustment)| adjustment.clone())
            .collect();
        Ok(ads_request(
            platforms,
            config,
            credentials,
            token,
            "uploadConversionAdjustments",
            "conversionAdjustments",
            items,
        ))
    }

    fn transient(exchange: &Exchange, rows: &[&(String, Value)]) -> Answer {
        Self::answer(exchange, rows)
    }

    fn answer(exchange: &Exchange, rows: &[&(String, Value)]) -> Answer {
        ads_answer(exchange, "conversionAdjustments", rows.len())
    }
}

/// `events:ingest` of the Data Manager API.
struct DataManagerIngest;

impl JsonApi for DataManagerIngest {
    type Config = GoogleAdsConfig;
    type Credentials = GoogleCredentials;
    type Row = Row;

    const TARGET: RequestTarget = RequestTarget::GoogleDataManagerIngest;

    fn secrets(credentials: &GoogleCredentials) -> Vec<&str> {
        google_secrets(credentials)
    }

    fn grant<'a>(
        platforms: &'a Platforms,
        credentials: &'a GoogleCredentials,
    ) -> Option<RefreshGrant<'a>> {
        Some(grant(platforms, credentials))
    }

    fn row(
        config: &GoogleAdsConfig,
        conversion: &Conversion,
        now: OffsetDateTime,
    ) -> Result<Row, Outcome> {
        prepare(config, conversion, now)
    }

    fn groups(rows: Vec<(usize, Row)>) -> Vec<Vec<(usize, Row)>> {
        chunks(rows, |(_, row)| row.order_id.as_str())
    }

    fn request(
        platforms: &Platforms,
        config: &GoogleAdsConfig,
        _credentials: &GoogleCredentials,
        token: Option<&str>,
        rows: &[&Row],
    ) -> Result<reqwest::RequestBuilder, Outcome> {
        let url = super::join(
            &platforms.endpoints.google_data_manager,
            "/v1/events:ingest",
        );
        Ok(platforms
            .client
            .post(url)
            .bearer_auth(token.unwrap_or_default())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(data_manager_body(config, rows).to_string()))
    }

    fn transient(exchange: &Exchange, rows: &[&Row]) -> Answer {
        Self::answer(exchange, rows)
    }

    /// A 200 must carry the `requestId` the upload's processing status is read back by: one
    /// without cannot be confirmed, so it is sent again (the `transactionId` makes Google count
    /// it once). A 400 naming events in field violations fails them and sends the others again.
    fn answer(exchange: &Exchange, rows: &[&Row]) -> Answer {
        let status = exchange.status.unwrap_or(0);
        if exchange.is_success() {
            let body = exchange.json();
            let has_request_id = body.as_ref().is_some_and(|body| {
                body.get("requestId")
                    .and_then(Value::as_str)
                    .is_some_and(|id| !id.trim().is_empty())
            });
            return Answer::All(if has_request_id {
                Outcome::Succeeded
            } else if body.is_some_and(|body| body.is_object()) {
                classify::unexpected_body(status, "no requestId")
            } else {
                classify::unexpected_body(status, "not JSON")
            });
        }
        if status == 400 {
            let named: Vec<(usize, String)> = classify::data_manager_violations(&exchange.body)
                .into_iter()
                .filter(|(position, _)| *position < rows.len())
                .map(|(position, violation)| (position, format!("INVALID_ARGUMENT: {violation}")))
                .collect();
            if !named.is_empty() {
                return Answer::RefusedFor(named);
            }
        }
        Answer::All(classify::google_request_failure(
            status,
            exchange.retry_after(),
            &exchange.body,
        ))
    }
}

/// See [`Google`]'s [`Platform::send`].
async fn send(
    platforms: &Platforms,
    config: &GoogleAdsConfig,
    creds: &GoogleCredentials,
    batch: &[Conversion],
    now: OffsetDateTime,
) -> SendReport {
    match config.api {
        GoogleApi::DataManager => {
            batch::send::<DataManagerIngest>(platforms, config, creds, batch, now).await
        }
        GoogleApi::GoogleAdsApi => {
            batch::send::<AdsClickConversions>(platforms, config, creds, batch, now).await
        }
    }
}

/// Reads `requestStatus:retrieve` for one upload request: one call for every event the request
/// carried. Final when no destination of the request is still `PROCESSING`.
async fn check_upload(
    platforms: &Platforms,
    creds: &GoogleCredentials,
    request_id: &str,
) -> CheckReport {
    let target = RequestTarget::GoogleDataManagerRequestStatus;
    let url = super::join(
        &platforms.endpoints.google_data_manager,
        "/v1/requestStatus:retrieve",
    );
    let mut collector = Collector::new(0);
    for secret in google_secrets(creds) {
        collector.add_secret(secret);
    }
    let url = match reqwest::Url::parse_with_params(&url, &[("requestId", request_id)]) {
        Ok(url) => url,
        Err(_) => {
            return CheckReport {
                check: UploadCheck::Unavailable {
                    error: "the Data Manager base address is not a valid URL".into(),
                },
                requests: Vec::new(),
            }
        }
    };
    let build = |token: &str| Ok(platforms.client.get(url.clone()).bearer_auth(token));
    let exchange = match batch::authorized(
        platforms,
        &grant(platforms, creds),
        target,
        &[],
        &mut collector,
        |exchange| exchange.status == Some(401),
        build,
    )
    .await
    {
        Ok(exchange) => exchange,
        Err(outcome) => {
            let check = match outcome {
                Outcome::Permanent { error } => UploadCheck::Unavailable { error },
                Outcome::Retry { error, .. } => UploadCheck::Retry { error },
                _ => UploadCheck::Retry {
                    error: "no access token".into(),
                },
            };
            return CheckReport {
                check,
                requests: collector.requests,
            };
        }
    };
    tracing::debug!(
        target = target.as_str(),
        status = ?exchange.status,
        duration_ms = u64::try_from(exchange.duration.as_millis()).unwrap_or(u64::MAX),
        request_id = exchange.header("request-id").as_deref().unwrap_or(""),
        "google request"
    );
    let check = read_upload_status(&exchange);
    let error = match &check {
        UploadCheck::Retry { error } | UploadCheck::Unavailable { error } => Some(error.clone()),
        _ => None,
    };
    let secrets = collector.secret_list();
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    collector
        .requests
        .push(record(target, Vec::new(), &exchange, error, &secrets));
    let redact = |text: String| super::redact_text(&text, &secrets);
    let check = match check {
        UploadCheck::Retry { error } => UploadCheck::Retry {
            error: redact(error),
        },
        UploadCheck::Unavailable { error } => UploadCheck::Unavailable {
            error: redact(error),
        },
        other => other,
    };
    CheckReport {
        check,
        requests: collector.requests,
    }
}

/// A proto3 JSON int64 (a string) or a plain number.
fn count_of(value: Option<&Value>) -> u64 {
    match value {
        Some(Value::String(text)) => text.trim().parse().unwrap_or(0),
        Some(Value::Number(number)) => number.as_u64().unwrap_or(0),
        _ => 0,
    }
}

/// `reason × count` for each `{reason, recordCount}` of a list.
fn reason_counts(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|item| {
            let reason = item
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("UNSPECIFIED");
            format!("{reason} × {}", count_of(item.get("recordCount")))
        })
        .collect()
}

/// What a `requestStatus:retrieve` answer says about the upload.
fn read_upload_status(exchange: &Exchange) -> UploadCheck {
    if let Some(Outcome::Retry { error, .. }) = exchange.transport_outcome() {
        return UploadCheck::Retry { error };
    }
    let status = exchange.status.unwrap_or(0);
    if !exchange.is_success() {
        return match classify::google_request_failure(status, None, &exchange.body) {
            Outcome::Retry { error, .. } => UploadCheck::Retry { error },
            Outcome::Permanent { error } => UploadCheck::Unavailable { error },
            _ => UploadCheck::Retry {
                error: format!("HTTP {status}"),
            },
        };
    }
    let Some(body) = exchange.json().filter(Value::is_object) else {
        return UploadCheck::Retry {
            error: format!("HTTP {status}: unexpected response (not JSON)"),
        };
    };
    let per_destination: Vec<&Value> = body
        .get("requestStatusPerDestination")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    if per_destination.is_empty() {
        return UploadCheck::Processing {
            detail: "Google reports no destination status yet".into(),
        };
    }
    let mut statuses = Vec::new();
    let mut parts = Vec::new();
    for destination in &per_destination {
        let state = destination
            .get("requestStatus")
            .and_then(Value::as_str)
            .unwrap_or("REQUEST_STATUS_UNKNOWN");
        statuses.push(state);
        let reference = destination
            .pointer("/destination/productDestinationId")
            .and_then(Value::as_str)
            .map(|id| format!("conversion action {id}"))
            .unwrap_or_else(|| "destination".into());
        let mut part = format!(
            "{reference}: {state}, {} records",
            count_of(destination.pointer("/eventsIngestionStatus/recordCount"))
        );
        let errors = reason_counts(destination.pointer("/errorInfo/errorCounts"));
        if !errors.is_empty() {
            part.push_str(&format!("; errors: {}", errors.join(", ")));
        }
        let warnings = reason_counts(destination.pointer("/warningInfo/warningCounts"));
        if !warnings.is_empty() {
            part.push_str(&format!("; warnings: {}", warnings.join(", ")));
        }
        parts.push(part);
    }
    let detail = parts.join(" | ");
    if statuses
        .iter()
        .any(|s| matches!(*s, "PROCESSING" | "REQUEST_STATUS_UNKNOWN"))
    {
        return UploadCheck::Processing { detail };
    }
    let status = if statuses.iter().all(|s| *s == "SUCCESS") {
        ConfirmationStatus::Confirmed
    } else if statuses.iter().all(|s| *s == "FAILED") {
        ConfirmationStatus::Failed
    } else {
        ConfirmationStatus::PartiallyFailed
    };
    UploadCheck::Final { status, detail }
}

/// See [`Google`]'s [`Platform::retract`].
async fn retract(
    platforms: &Platforms,
    config: &GoogleAdsConfig,
    creds: &GoogleCredentials,
    batch: &[Conversion],
    now: OffsetDateTime,
) -> SendReport {
    adjust::<false>(platforms, config, creds, batch, now).await
}

/// `uploadConversionAdjustments` by order id (A.5): retractions, or (`RESTATEMENT`)
/// restatements; the Data Manager API has none.
async fn adjust<const RESTATEMENT: bool>(
    platforms: &Platforms,
    config: &GoogleAdsConfig,
    creds: &GoogleCredentials,
    batch: &[Conversion],
    now: OffsetDateTime,
) -> SendReport {
    if config.api == GoogleApi::DataManager {
        return SendReport::uniform(
            batch.len(),
            &Outcome::Skipped {
                reason: crate::NOT_SUPPORTED.into(),
            },
        );
    }
    batch::send::<AdsAdjustments<RESTATEMENT>>(platforms, config, creds, batch, now).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn ads_times_have_a_space_and_an_offset_with_a_colon() {
        let at = datetime!(2026-11-20 12:32:45.678 +01:00);
        assert_eq!(ads_datetime(at), "2026-11-20 11:32:45+00:00");
        assert_eq!(data_manager_timestamp(at), "2026-11-20T11:32:45Z");
    }

    #[test]
    fn chunks_respect_the_limit_and_never_repeat_an_order_id() {
        let rows: Vec<String> = (0..4500).map(|n| format!("o{}", n % 4000)).collect();
        let chunks = chunks(rows, |row| row.as_str());
        assert!(chunks.iter().all(|chunk| chunk.len() <= MAX_PER_REQUEST));
        assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), 4500);
        for chunk in &chunks {
            let unique: HashSet<_> = chunk.iter().collect();
            assert_eq!(unique.len(), chunk.len());
        }
        assert_eq!(chunks.len(), 3);
    }

    #[test]
    fn partial_failure_rows_get_their_own_outcomes() {
        let body = json!({"partialFailureError": {"code": 3, "message": "m", "details": [{
            "@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
            "errors": [
              {"errorCode": {"conversionUploadError": "EXPIRED_EVENT"}, "message": "old",
               "location": {"fieldPathElements": [{"fieldName": "conversions", "index": 1}]}},
              {"errorCode": {"conversionUploadError": "ORDER_ID_ALREADY_IN_USE"}, "message": "dup",
               "location": {"fieldPathElements": [{"fieldName": "conversions", "index": 2}, {"fieldName": "order_id"}]}}
            ]}]},
            "results": [{"gclid": "a"}, {}, {}]});
        let outcomes = ads_row_outcomes(&body, "conversions", 3);
        assert_eq!(outcomes[0], Outcome::Succeeded);
        assert_eq!(outcomes[1], classify::permanent("EXPIRED_EVENT: old"));
        assert_eq!(outcomes[2], Outcome::AlreadyDelivered);
    }
}
