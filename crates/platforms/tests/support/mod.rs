//! Fixtures and fake-platform checks shared by the `platforms_*` tests.
//!
//! The checks are as strict as the real APIs (and stricter where the reference says the real
//! parser is lax): path, method, headers, the exact set of allowed keys, every field's format.
//! A mock only answers requests that pass them, and every test ends with
//! [`assert_requests_strict`], so a malformed request fails the test with the reason.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use events::{
    Attribution, AttributionStatus, ClickIds, Consent, ConsentStatus, Currency, Email, Event,
    EventKind, MatchedBy, Mode, Money, PhoneE164, Product, Touchpoint,
};
use platforms::google::{Google, GoogleAdsConfig, GoogleApi, GoogleCredentials};
use platforms::meta::{Meta, MetaConfig, MetaCredentials};
use platforms::model::{Conversion, PerKind};
use platforms::webhook::{Webhook, WebhookConfig, WebhookCredentials};
use platforms::{deliver, Endpoints, Platform, Platforms, SendReport};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Match, Mock, MockServer, Request, Respond, ResponseTemplate};

pub const CUSTOMER_ID: &str = "1234567890";
pub const LOGIN_CUSTOMER_ID: &str = "9876543210";
pub const SALE_ACTION: &str = "987654321";
pub const LEAD_ACTION: &str = "123456789";
pub const PIXEL_ID: &str = "1122334455";
pub const CLIENT_ID: &str = "client-1.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "GOCSPX-client-secret";
pub const REFRESH_TOKEN: &str = "1//0refresh-token";
pub const DEVELOPER_TOKEN: &str = "DEVTOKEN22characters00";
pub const META_TOKEN: &str = "EAAmetaaccesstoken";

/// Google's hash of `John.Smith+promo@gmail.com` (Gmail rules: `johnsmith@gmail.com`).
pub const GOOGLE_EMAIL_SHA256: &str =
    "3586de92bb3636d0885a12eff961429a32e4ebd764b96f50d85d016f9338d586";
/// Google's hash of `+16505551212` (E.164 with the `+`).
pub const GOOGLE_PHONE_SHA256: &str =
    "1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8";
/// Meta's hash of `john_smith@gmail.com`.
pub const META_EMAIL_SHA256: &str =
    "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f";
/// Meta's hash of `16505551212` (digits, no `+`).
pub const META_PHONE_SHA256: &str =
    "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176";

pub const GCLID: &str = "Cj0KCQiA_gclid-Value";
pub const FBCLID: &str = "IwAR2MixedCase_FbClid-Value";

/// Sends through each adapter the way the forwarder does ([`deliver`]: age limits first).
#[allow(async_fn_in_trait)]
pub trait Sends {
    async fn send_google(
        &self,
        config: &GoogleAdsConfig,
        creds: &GoogleCredentials,
        batch: &[Conversion],
        now: OffsetDateTime,
    ) -> SendReport;
    async fn retract_google(
        &self,
        config: &GoogleAdsConfig,
        creds: &GoogleCredentials,
        batch: &[Conversion],
        now: OffsetDateTime,
    ) -> SendReport;
    async fn send_meta(
        &self,
        config: &MetaConfig,
        creds: &MetaCredentials,
        batch: &[Conversion],
        now: OffsetDateTime,
    ) -> SendReport;
    async fn send_webhook(
        &self,
        config: &WebhookConfig,
        creds: &WebhookCredentials,
        conversion: &Conversion,
        routing: &Value,
        now: OffsetDateTime,
    ) -> SendReport;
    async fn send_to<P: Platform>(
        &self,
        platform: &P,
        config: &P::Config,
        creds: &P::Credentials,
        batch: &[Conversion],
        now: OffsetDateTime,
    ) -> SendReport;
}

impl Sends for Platforms {
    async fn send_to<P: Platform>(
        &self,
        platform: &P,
        config: &P::Config,
        creds: &P::Credentials,
        batch: &[Conversion],
        now: OffsetDateTime,
    ) -> SendReport {
        deliver(platform, self, config, creds, batch, now).await
    }

    async fn send_google(
        &self,
        config: &GoogleAdsConfig,
        creds: &GoogleCredentials,
        batch: &[Conversion],
        now: OffsetDateTime,
    ) -> SendReport {
        deliver(&Google, self, config, creds, batch, now).await
    }

    async fn retract_google(
        &self,
        config: &GoogleAdsConfig,
        creds: &GoogleCredentials,
        batch: &[Conversion],
        now: OffsetDateTime,
    ) -> SendReport {
        Google.retract(self, config, creds, batch, now).await
    }

    async fn send_meta(
        &self,
        config: &MetaConfig,
        creds: &MetaCredentials,
        batch: &[Conversion],
        now: OffsetDateTime,
    ) -> SendReport {
        deliver(&Meta, self, config, creds, batch, now).await
    }

    async fn send_webhook(
        &self,
        config: &WebhookConfig,
        creds: &WebhookCredentials,
        conversion: &Conversion,
        routing: &Value,
        now: OffsetDateTime,
    ) -> SendReport {
        let mut conversion = conversion.clone();
        conversion.routing = routing.clone();
        deliver(
            &Webhook,
            self,
            config,
            creds,
            std::slice::from_ref(&conversion),
            now,
        )
        .await
    }
}

/// Platforms pointed at `server`, with a request timeout.
pub fn platforms(server: &MockServer, timeout: Duration) -> Platforms {
    Platforms::new(endpoints(server), timeout)
}

pub fn endpoints(server: &MockServer) -> Endpoints {
    Endpoints {
        google_ads: server.uri(),
        google_data_manager: server.uri(),
        google_oauth: format!("{}/token", server.uri()),
        meta: server.uri(),
        microsoft_ads: server.uri(),
        microsoft_oauth: format!("{}/ms-token", server.uri()),
        pinterest: server.uri(),
        snapchat: server.uri(),
        tiktok: server.uri(),
        reddit: server.uri(),
        linkedin: server.uri(),
    }
}

pub fn google_config(api: GoogleApi) -> GoogleAdsConfig {
    GoogleAdsConfig {
        api,
        customer_id: CUSTOMER_ID.into(),
        login_customer_id: Some(LOGIN_CUSTOMER_ID.into()),
        conversion_actions: PerKind {
            lead: Some(LEAD_ACTION.into()),
            sale: Some(SALE_ACTION.into()),
        },
        event_source: "WEB".into(),
        validate_only: false,
        access_level: None,
    }
}

pub fn google_creds() -> GoogleCredentials {
    GoogleCredentials {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        refresh_token: REFRESH_TOKEN.into(),
        developer_token: Some(DEVELOPER_TOKEN.into()),
    }
}

pub fn meta_config() -> MetaConfig {
    MetaConfig {
        pixel_id: PIXEL_ID.into(),
        action_source: "website".into(),
        test_event_code: None,
        event_names: PerKind {
            lead: Some("Lead".into()),
            sale: Some("Purchase".into()),
        },
        match_without_click_id: false,
    }
}

pub fn meta_creds() -> MetaCredentials {
    MetaCredentials {
        access_token: META_TOKEN.into(),
    }
}

/// A time with whole milliseconds, so that stored and sent times compare exactly.
pub fn millis(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(at.millisecond() as u32 * 1_000_000)
        .unwrap()
}

/// A sale an hour ago for `invoice`, clicked two hours ago (gclid and fbclid), with email,
/// phone, IP, user agent, value 149.00 EUR, one product and granted consent.
pub fn sale(invoice: &str, now: OffsetDateTime) -> Conversion {
    let at = millis(now - time::Duration::hours(1));
    let clicked_at = millis(now - time::Duration::hours(2));
    let event = Event {
        kind: EventKind::Sale,
        timestamp: at,
        lead_id: None,
        invoice_id: Some(invoice.into()),
        event_name: "sale".into(),
        customer_external_id: Some("user-42".into()),
        email: Some(Email::parse("John.Smith+promo@GMail.com").unwrap()),
        phone: Some(PhoneE164::parse("+1 650 555 1212").unwrap()),
        name: Some("John Smith".into()),
        click_id: None,
        click_ids: ClickIds::default(),
        utm: None,
        page_url: Some("https://shop.example.com/thanks".into()),
        referrer: None,
        ip: Some(IpAddr::from_str("203.0.113.7").unwrap()),
        user_agent: Some("Mozilla/5.0 (test)".into()),
        consent: Some(Consent {
            ad_user_data: Some(ConsentStatus::Granted),
            ad_personalization: Some(ConsentStatus::Granted),
        }),
        value: Some(Money::new(Decimal::new(14900, 2), Currency::parse("EUR").unwrap()).unwrap()),
        products: vec![Product {
            id: "sku-1".into(),
            name: None,
            quantity: 2,
            price: Some(Decimal::new(7450, 2)),
        }],
        mode: Mode::Async,
        metadata: None,
    };
    let attribution = Attribution {
        status: AttributionStatus::Matched,
        matched_by: Some(MatchedBy::ClickId),
        click: Some(Touchpoint {
            click_id: Some("clk_1".into()),
            clicked_at,
            click_ids: ClickIds {
                gclid: Some(GCLID.into()),
                fbclid: Some(FBCLID.into()),
                ..ClickIds::default()
            },
            utm: None,
            url: Some("https://shop.example.com/landing".into()),
            referrer: None,
            ip: None,
            user_agent: None,
        }),
        model: "last_click".into(),
        first_touch: None,
        pending_until: None,
        decided_at: at,
        ignored_identifiers: Vec::new(),
    };
    Conversion {
        dispatch_id: Uuid::now_v7(),
        event_id: Uuid::now_v7(),
        received_at: at,
        event,
        attribution,
        routing: Value::Null,
        mapping: None,
    }
}

/// A lead an hour ago, with `lead_id` when given, and the same identifiers as [`sale`] but no
/// value.
pub fn lead(lead_id: Option<&str>, now: OffsetDateTime) -> Conversion {
    let mut conversion = sale("unused", now);
    conversion.event.kind = EventKind::Lead;
    conversion.event.invoice_id = None;
    conversion.event.lead_id = lead_id.map(str::to_owned);
    conversion.event.event_name = "lead".into();
    conversion.event.value = None;
    conversion.event.products = Vec::new();
    conversion
}

/// Removes every click id (touchpoint and event).
pub fn without_clicks(mut conversion: Conversion) -> Conversion {
    conversion.attribution.click = None;
    conversion.attribution.status = AttributionStatus::Unmatched;
    conversion.attribution.matched_by = None;
    conversion.event.click_ids = ClickIds::default();
    conversion
}

pub fn deny_user_data(mut conversion: Conversion) -> Conversion {
    conversion.event.consent = Some(Consent {
        ad_user_data: Some(ConsentStatus::Denied),
        ad_personalization: Some(ConsentStatus::Denied),
    });
    conversion
}

pub fn evt(conversion: &Conversion) -> String {
    format!("evt_{}", conversion.event_id.simple())
}

// ---------------------------------------------------------------------------------------------
// Format checks

/// True when `text` has `pattern`'s shape: `9` a digit, `#` a `+` or `-`, anything else itself.
pub fn shaped(text: &str, pattern: &str) -> bool {
    text.len() == pattern.len()
        && text.bytes().zip(pattern.bytes()).all(|(c, p)| match p {
            b'9' => c.is_ascii_digit(),
            b'#' => c == b'+' || c == b'-',
            _ => c == p,
        })
}

pub fn is_hex64(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|c| c.is_ascii_digit())
}

fn is_currency(text: &str) -> bool {
    text.len() == 3 && text.bytes().all(|c| c.is_ascii_uppercase())
}

/// Every key of every object in `value`, with its path.
fn keys(value: &Value, at: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                out.push(format!("{at}.{key}"));
                keys(child, &format!("{at}.{key}"), out);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                keys(item, &format!("{at}[{index}]"), out);
            }
        }
        _ => {}
    }
}

fn no_nulls(value: &Value, at: &str, problems: &mut Vec<String>) {
    match value {
        Value::Null => problems.push(format!("{at} is null")),
        Value::Object(map) => map
            .iter()
            .for_each(|(key, child)| no_nulls(child, &format!("{at}.{key}"), problems)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(index, item)| no_nulls(item, &format!("{at}[{index}]"), problems)),
        _ => {}
    }
}

fn only_keys(object: &Value, allowed: &[&str], at: &str, problems: &mut Vec<String>) {
    match object.as_object() {
        Some(map) => {
            for key in map.keys() {
                if !allowed.contains(&key.as_str()) {
                    problems.push(format!("{at}: unknown field {key:?}"));
                }
            }
        }
        None => problems.push(format!("{at} is not an object")),
    }
}

fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
}

fn json_body(request: &Request, problems: &mut Vec<String>) -> Value {
    if !header(request, "content-type").is_some_and(|value| value.starts_with("application/json")) {
        problems.push("content-type is not application/json".into());
    }
    match serde_json::from_slice::<Value>(&request.body) {
        Ok(value) => {
            no_nulls(&value, "body", problems);
            value
        }
        Err(error) => {
            problems.push(format!("body is not JSON: {error}"));
            Value::Null
        }
    }
}

fn bearer(request: &Request, problems: &mut Vec<String>) {
    match header(request, "authorization").and_then(|value| value.strip_prefix("Bearer ")) {
        Some(token) if !token.trim().is_empty() => {}
        _ => problems.push("no Authorization: Bearer <token>".into()),
    }
}

fn camel_case_only(body: &Value, problems: &mut Vec<String>) {
    let mut all = Vec::new();
    keys(body, "body", &mut all);
    for key in all {
        let last = key.rsplit('.').next().unwrap_or("");
        if last.contains('_') {
            problems.push(format!("{key}: not a camelCase key"));
        }
    }
}

/// Google Ads API `uploadClickConversions` (reference A.1, A.2, D.1).
pub fn check_ads_upload(request: &Request) -> Vec<String> {
    let mut problems = Vec::new();
    if request.method.as_str() != "POST" {
        problems.push("method is not POST".into());
    }
    let path = request.url.path();
    match path
        .strip_prefix("/v26/customers/")
        .and_then(|rest| rest.strip_suffix(":uploadClickConversions"))
    {
        Some(id) if id.len() == 10 && is_digits(id) => {}
        _ => problems.push(format!(
            "path {path} is not /v26/customers/<10 digits>:uploadClickConversions"
        )),
    }
    ads_headers(request, &mut problems);
    let body = json_body(request, &mut problems);
    camel_case_only(&body, &mut problems);
    only_keys(
        &body,
        &["conversions", "partialFailure", "validateOnly", "jobId"],
        "body",
        &mut problems,
    );
    if body.get("partialFailure") != Some(&Value::Bool(true)) {
        problems.push("partialFailure is not true (PARTIAL_FAILURE_MODE_REQUIRED)".into());
    }
    let conversions = body
        .get("conversions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if conversions.is_empty() || conversions.len() > 2000 {
        problems.push(format!(
            "{} conversions (1 to 2000 allowed)",
            conversions.len()
        ));
    }
    let mut order_ids = std::collections::HashSet::new();
    for (index, conversion) in conversions.iter().enumerate() {
        let at = format!("conversions[{index}]");
        only_keys(
            conversion,
            &[
                "gclid",
                "gbraid",
                "wbraid",
                "conversionAction",
                "conversionDateTime",
                "conversionValue",
                "currencyCode",
                "orderId",
                "userIdentifiers",
                "consent",
                "customVariables",
                "externalAttributionData",
                "cartData",
                "conversionEnvironment",
                "customerType",
            ],
            &at,
            &mut problems,
        );
        let ids = ["gclid", "gbraid", "wbraid", "userIdentifiers"]
            .iter()
            .filter(|key| conversion.get(**key).is_some())
            .count();
        if ids != 1 {
            problems.push(format!(
                "{at}: {ids} of gclid/gbraid/wbraid/userIdentifiers (exactly 1)"
            ));
        }
        for key in ["gclid", "gbraid", "wbraid"] {
            if let Some(value) = conversion.get(key) {
                if value.as_str().is_none_or(str::is_empty) {
                    problems.push(format!("{at}.{key} is not a non-empty string"));
                }
            }
        }
        check_action(conversion.get("conversionAction"), &at, &mut problems);
        match conversion.get("conversionDateTime").and_then(Value::as_str) {
            Some(text) if shaped(text, "9999-99-99 99:99:99#99:99") => {}
            other => problems.push(format!(
                "{at}.conversionDateTime {other:?} is not yyyy-mm-dd hh:mm:ss+hh:mm"
            )),
        }
        check_value(
            conversion,
            "conversionValue",
            "currencyCode",
            &at,
            &mut problems,
        );
        match conversion.get("orderId").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => {
                if !order_ids.insert(id.to_owned()) {
                    problems.push(format!("{at}: DUPLICATE_ORDER_ID {id}"));
                }
            }
            _ => problems.push(format!("{at}.orderId missing")),
        }
        if let Some(identifiers) = conversion.get("userIdentifiers") {
            let list = identifiers.as_array().cloned().unwrap_or_default();
            if list.is_empty() || list.len() > 5 {
                problems.push(format!(
                    "{at}.userIdentifiers: {} entries (1 to 5)",
                    list.len()
                ));
            }
            for (position, identifier) in list.iter().enumerate() {
                let here = format!("{at}.userIdentifiers[{position}]");
                only_keys(
                    identifier,
                    &["hashedEmail", "hashedPhoneNumber", "userIdentifierSource"],
                    &here,
                    &mut problems,
                );
                let hashes: Vec<&str> = ["hashedEmail", "hashedPhoneNumber"]
                    .iter()
                    .filter_map(|key| identifier.get(*key).and_then(Value::as_str))
                    .collect();
                if hashes.len() != 1 || !is_hex64(hashes[0]) {
                    problems.push(format!("{here}: not exactly one 64-hex hash"));
                }
                if let Some(source) = identifier.get("userIdentifierSource") {
                    if !matches!(source.as_str(), Some("FIRST_PARTY" | "THIRD_PARTY")) {
                        problems.push(format!("{here}.userIdentifierSource invalid"));
                    }
                }
            }
        }
        if let Some(consent) = conversion.get("consent") {
            only_keys(
                consent,
                &["adUserData"],
                &format!("{at}.consent"),
                &mut problems,
            );
            if !matches!(
                consent.get("adUserData").and_then(Value::as_str),
                Some("GRANTED" | "DENIED")
            ) {
                problems.push(format!("{at}.consent.adUserData is not GRANTED/DENIED"));
            }
        }
    }
    problems
}

/// Google Ads API `uploadConversionAdjustments` (reference A.5).
pub fn check_ads_adjustments(request: &Request) -> Vec<String> {
    let mut problems = Vec::new();
    let path = request.url.path();
    match path
        .strip_prefix("/v26/customers/")
        .and_then(|rest| rest.strip_suffix(":uploadConversionAdjustments"))
    {
        Some(id) if id.len() == 10 && is_digits(id) => {}
        _ => problems.push(format!(
            "path {path} is not /v26/customers/<10 digits>:uploadConversionAdjustments"
        )),
    }
    ads_headers(request, &mut problems);
    let body = json_body(request, &mut problems);
    camel_case_only(&body, &mut problems);
    only_keys(
        &body,
        &[
            "conversionAdjustments",
            "partialFailure",
            "validateOnly",
            "jobId",
        ],
        "body",
        &mut problems,
    );
    if body.get("partialFailure") != Some(&Value::Bool(true)) {
        problems.push("partialFailure is not true".into());
    }
    let items = body
        .get("conversionAdjustments")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if items.is_empty() || items.len() > 2000 {
        problems.push(format!("{} adjustments (1 to 2000 allowed)", items.len()));
    }
    for (index, item) in items.iter().enumerate() {
        let at = format!("conversionAdjustments[{index}]");
        only_keys(
            item,
            &[
                "orderId",
                "gclidDateTimePair",
                "conversionAction",
                "adjustmentType",
                "adjustmentDateTime",
                "restatementValue",
                "userIdentifiers",
                "userAgent",
            ],
            &at,
            &mut problems,
        );
        let by_order = item
            .get("orderId")
            .and_then(Value::as_str)
            .is_some_and(|id| !id.is_empty());
        if by_order == item.get("gclidDateTimePair").is_some() {
            problems.push(format!("{at}: exactly one of orderId / gclidDateTimePair"));
        }
        check_action(item.get("conversionAction"), &at, &mut problems);
        let kind = item.get("adjustmentType").and_then(Value::as_str);
        if !matches!(kind, Some("RETRACTION" | "RESTATEMENT" | "ENHANCEMENT")) {
            problems.push(format!("{at}.adjustmentType {kind:?} invalid"));
        }
        if (kind == Some("RESTATEMENT")) != item.get("restatementValue").is_some() {
            problems.push(format!(
                "{at}: restatementValue is required for RESTATEMENT and refused otherwise"
            ));
        }
        if let Some(value) = item.get("restatementValue") {
            only_keys(
                value,
                &["adjustedValue", "currencyCode"],
                &format!("{at}.restatementValue"),
                &mut problems,
            );
            if !value
                .get("adjustedValue")
                .and_then(Value::as_f64)
                .is_some_and(|v| v.is_finite() && v >= 0.0)
            {
                problems.push(format!(
                    "{at}.restatementValue.adjustedValue must be a number >= 0 (the new total)"
                ));
            }
            if !value
                .get("currencyCode")
                .and_then(Value::as_str)
                .is_some_and(is_currency)
            {
                problems.push(format!(
                    "{at}.restatementValue.currencyCode must be an ISO 4217 code"
                ));
            }
        }
        for enhancement_only in ["userIdentifiers", "userAgent"] {
            if kind != Some("ENHANCEMENT") && item.get(enhancement_only).is_some() {
                problems.push(format!("{at}.{enhancement_only} is for ENHANCEMENT only"));
            }
        }
        match item.get("adjustmentDateTime").and_then(Value::as_str) {
            Some(text) if shaped(text, "9999-99-99 99:99:99#99:99") => {}
            other => problems.push(format!("{at}.adjustmentDateTime {other:?} malformed")),
        }
    }
    problems
}

fn ads_headers(request: &Request, problems: &mut Vec<String>) {
    bearer(request, problems);
    if let Some(login) = header(request, "login-customer-id") {
        if !is_digits(login) {
            problems.push(format!("login-customer-id {login:?} is not digits only"));
        }
    }
    if let Some(token) = header(request, "developer-token") {
        if token.len() != 22 {
            problems.push("developer-token is not 22 characters".into());
        }
    }
}

fn check_action(action: Option<&Value>, at: &str, problems: &mut Vec<String>) {
    let ok = action
        .and_then(Value::as_str)
        .and_then(|text| text.strip_prefix("customers/"))
        .and_then(|rest| rest.split_once("/conversionActions/"))
        .is_some_and(|(customer, id)| is_digits(customer) && is_digits(id));
    if !ok {
        problems.push(format!(
            "{at}.conversionAction {action:?} is not customers/<id>/conversionActions/<id>"
        ));
    }
}

fn check_value(
    item: &Value,
    value_key: &str,
    currency_key: &str,
    at: &str,
    problems: &mut Vec<String>,
) {
    if let Some(value) = item.get(value_key) {
        if !value.is_number() {
            problems.push(format!("{at}.{value_key} is not a JSON number"));
        }
        match item.get(currency_key).and_then(Value::as_str) {
            Some(code) if is_currency(code) => {}
            other => problems.push(format!(
                "{at}.{currency_key} {other:?} is not 3 upper-case letters"
            )),
        }
    }
}

/// Data Manager `events:ingest` (reference A.7, D.3).
pub fn check_data_manager(request: &Request) -> Vec<String> {
    let mut problems = Vec::new();
    if request.method.as_str() != "POST" || request.url.path() != "/v1/events:ingest" {
        problems.push(format!(
            "{} {} is not POST /v1/events:ingest",
            request.method,
            request.url.path()
        ));
    }
    bearer(request, &mut problems);
    for forbidden in ["developer-token", "login-customer-id"] {
        if header(request, forbidden).is_some() {
            problems.push(format!(
                "{forbidden} header must not be sent to the Data Manager API"
            ));
        }
    }
    let body = json_body(request, &mut problems);
    camel_case_only(&body, &mut problems);
    only_keys(
        &body,
        &[
            "destinations",
            "events",
            "consent",
            "validateOnly",
            "encoding",
            "encryptionInfo",
        ],
        "body",
        &mut problems,
    );
    let destinations = body
        .get("destinations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if destinations.is_empty() || destinations.len() > 10 {
        problems.push(format!("{} destinations (1 to 10)", destinations.len()));
    }
    let mut references = std::collections::HashSet::new();
    for (index, destination) in destinations.iter().enumerate() {
        let at = format!("destinations[{index}]");
        only_keys(
            destination,
            &[
                "reference",
                "operatingAccount",
                "loginAccount",
                "linkedAccount",
                "productDestinationId",
            ],
            &at,
            &mut problems,
        );
        match destination.get("reference").and_then(Value::as_str) {
            Some(reference) if !reference.is_empty() => {
                if !references.insert(reference.to_owned()) {
                    problems.push(format!("{at}.reference repeated"));
                }
            }
            _ => problems.push(format!("{at}.reference missing")),
        }
        for account in ["operatingAccount", "loginAccount"] {
            let Some(value) = destination.get(account) else {
                if account == "operatingAccount" {
                    problems.push(format!("{at}.operatingAccount missing"));
                }
                continue;
            };
            only_keys(
                value,
                &["accountType", "accountId"],
                &format!("{at}.{account}"),
                &mut problems,
            );
            if value.get("accountType").and_then(Value::as_str) != Some("GOOGLE_ADS") {
                problems.push(format!("{at}.{account}.accountType is not GOOGLE_ADS"));
            }
            if !value
                .get("accountId")
                .and_then(Value::as_str)
                .is_some_and(|id| id.len() == 10 && is_digits(id))
            {
                problems.push(format!(
                    "{at}.{account}.accountId is not a string of 10 digits"
                ));
            }
        }
        if !destination
            .get("productDestinationId")
            .and_then(Value::as_str)
            .is_some_and(is_digits)
        {
            problems.push(format!("{at}.productDestinationId is not a numeric string"));
        }
    }
    let events = body
        .get("events")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if events.is_empty() || events.len() > 2000 {
        problems.push(format!("{} events (1 to 2000)", events.len()));
    }
    let now = OffsetDateTime::now_utc();
    let encoding = body.get("encoding").and_then(Value::as_str);
    if !matches!(encoding, None | Some("HEX" | "BASE64")) {
        problems.push(format!("encoding {encoding:?} invalid"));
    }
    if let Some(consent) = body.get("consent") {
        check_dm_consent(consent, "consent", &mut problems);
    }
    let mut transactions = std::collections::HashSet::new();
    for (index, event) in events.iter().enumerate() {
        let at = format!("events[{index}]");
        only_keys(
            event,
            &[
                "destinationReferences",
                "transactionId",
                "eventTimestamp",
                "lastUpdatedTimestamp",
                "userData",
                "consent",
                "adIdentifiers",
                "currency",
                "conversionValue",
                "eventSource",
                "eventDeviceInfo",
                "cartData",
                "customVariables",
                "experimentalFields",
                "userProperties",
            ],
            &at,
            &mut problems,
        );
        for reference in event
            .get("destinationReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !reference.as_str().is_some_and(|r| references.contains(r)) {
                problems.push(format!(
                    "{at}.destinationReferences names no destination: {reference}"
                ));
            }
        }
        match event.get("transactionId").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => {
                if !transactions.insert(id.to_owned()) {
                    problems.push(format!("{at}.transactionId repeated in the request"));
                }
            }
            _ => problems.push(format!("{at}.transactionId missing")),
        }
        match event.get("eventTimestamp").and_then(Value::as_str) {
            Some(text) => {
                let well_formed = text.as_bytes().get(10) == Some(&b'T')
                    && (text.ends_with('Z')
                        || shaped(&text[text.len().saturating_sub(6)..], "#99:99"));
                match OffsetDateTime::parse(text, &Rfc3339) {
                    Ok(at_time) if well_formed => {
                        if at_time > now + time::Duration::seconds(1) {
                            problems.push(format!("{at}.eventTimestamp is in the future"));
                        }
                    }
                    _ => problems.push(format!(
                        "{at}.eventTimestamp {text:?} is not RFC 3339 with T and Z/offset"
                    )),
                }
            }
            None => problems.push(format!("{at}.eventTimestamp missing")),
        }
        if !matches!(
            event.get("eventSource").and_then(Value::as_str),
            Some("WEB" | "APP" | "IN_STORE" | "PHONE" | "OTHER")
        ) {
            problems.push(format!("{at}.eventSource missing or invalid"));
        }
        let click_ids = event
            .get("adIdentifiers")
            .map(|ids| {
                only_keys(
                    ids,
                    &[
                        "gclid",
                        "gbraid",
                        "wbraid",
                        "sessionAttributes",
                        "landingPageDeviceInfo",
                    ],
                    &format!("{at}.adIdentifiers"),
                    &mut problems,
                );
                ["gclid", "gbraid", "wbraid"]
                    .iter()
                    .filter(|key| ids.get(**key).is_some())
                    .count()
            })
            .unwrap_or(0);
        if click_ids > 1 {
            problems.push(format!("{at}: more than one click id"));
        }
        let user_data = event.get("userData");
        if click_ids == 0 && user_data.is_none() {
            problems.push(format!("{at}: NO_IDENTIFIERS_PROVIDED"));
        }
        if let Some(user_data) = user_data {
            if encoding.is_none() {
                problems.push("encoding missing while userData is sent".into());
            }
            only_keys(
                user_data,
                &["userIdentifiers"],
                &format!("{at}.userData"),
                &mut problems,
            );
            let identifiers = user_data
                .get("userIdentifiers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if identifiers.is_empty() || identifiers.len() > 10 {
                problems.push(format!(
                    "{at}.userData: {} identifiers (1 to 10)",
                    identifiers.len()
                ));
            }
            for (position, identifier) in identifiers.iter().enumerate() {
                let here = format!("{at}.userData.userIdentifiers[{position}]");
                only_keys(
                    identifier,
                    &["emailAddress", "phoneNumber", "address"],
                    &here,
                    &mut problems,
                );
                let hashes: Vec<&str> = ["emailAddress", "phoneNumber"]
                    .iter()
                    .filter_map(|key| identifier.get(*key).and_then(Value::as_str))
                    .collect();
                if hashes.len() != 1 || !is_hex64(hashes[0]) {
                    problems.push(format!("{here}: not exactly one HEX hash"));
                }
            }
        }
        check_value(event, "conversionValue", "currency", &at, &mut problems);
        if let Some(consent) = event.get("consent") {
            check_dm_consent(consent, &format!("{at}.consent"), &mut problems);
        }
        if let Some(device) = event.get("eventDeviceInfo") {
            only_keys(
                device,
                &["userAgent", "ipAddress"],
                &format!("{at}.eventDeviceInfo"),
                &mut problems,
            );
        }
    }
    problems
}

fn check_dm_consent(consent: &Value, at: &str, problems: &mut Vec<String>) {
    only_keys(consent, &["adUserData", "adPersonalization"], at, problems);
    for key in ["adUserData", "adPersonalization"] {
        if let Some(value) = consent.get(key) {
            if !matches!(value.as_str(), Some("CONSENT_GRANTED" | "CONSENT_DENIED")) {
                problems.push(format!(
                    "{at}.{key} {value} is not CONSENT_GRANTED/CONSENT_DENIED"
                ));
            }
        }
    }
}

/// Meta Conversions API `POST /v26.0/{pixel}/events` (reference B.1–B.4).
pub fn check_meta(request: &Request) -> Vec<String> {
    let mut problems = Vec::new();
    let path = request.url.path();
    match path
        .strip_prefix("/v26.0/")
        .and_then(|rest| rest.strip_suffix("/events"))
    {
        Some(pixel) if is_digits(pixel) => {}
        _ => problems.push(format!("path {path} is not /v26.0/<pixel id>/events")),
    }
    if request.method.as_str() != "POST" {
        problems.push("method is not POST".into());
    }
    let tokens: Vec<String> = request
        .url
        .query_pairs()
        .filter(|(key, _)| key == "access_token")
        .map(|(_, value)| value.into_owned())
        .collect();
    if tokens.len() != 1 || tokens[0].is_empty() {
        problems.push("access_token query parameter missing".into());
    }
    let body = json_body(request, &mut problems);
    only_keys(
        &body,
        &[
            "data",
            "test_event_code",
            "partner_agent",
            "namespace_id",
            "upload_id",
            "upload_tag",
            "upload_source",
        ],
        "body",
        &mut problems,
    );
    let data = body
        .get("data")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if data.is_empty() || data.len() > 1000 {
        problems.push(format!("{} events (1 to 1000)", data.len()));
    }
    let now = OffsetDateTime::now_utc().unix_timestamp();
    for (index, event) in data.iter().enumerate() {
        let at = format!("data[{index}]");
        only_keys(
            event,
            &[
                "event_name",
                "event_time",
                "event_id",
                "action_source",
                "event_source_url",
                "opt_out",
                "user_data",
                "custom_data",
                "data_processing_options",
                "data_processing_options_country",
                "data_processing_options_state",
                "referrer_url",
            ],
            &at,
            &mut problems,
        );
        if event
            .get("event_name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            problems.push(format!("{at}.event_name missing"));
        }
        match event.get("event_time").and_then(Value::as_i64) {
            Some(seconds) if seconds <= now + 60 && seconds > now - 7 * 86_400 => {}
            other => problems.push(format!(
                "{at}.event_time {other:?} is not Unix seconds within the last 7 days"
            )),
        }
        if event
            .get("event_id")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            problems.push(format!("{at}.event_id missing"));
        }
        let source = event.get("action_source").and_then(Value::as_str);
        if !matches!(
            source,
            Some(
                "email"
                    | "website"
                    | "app"
                    | "phone_call"
                    | "chat"
                    | "physical_store"
                    | "system_generated"
                    | "business_messaging"
                    | "other"
            )
        ) {
            problems.push(format!("{at}.action_source {source:?} invalid"));
        }
        if let Some(url) = event.get("event_source_url") {
            if !url
                .as_str()
                .is_some_and(|url| url.starts_with("http://") || url.starts_with("https://"))
            {
                problems.push(format!("{at}.event_source_url must start with http(s)://"));
            }
        }
        let user_data = event.get("user_data").cloned().unwrap_or(Value::Null);
        only_keys(
            &user_data,
            &[
                "em",
                "ph",
                "fn",
                "ln",
                "ge",
                "db",
                "ct",
                "st",
                "zp",
                "country",
                "external_id",
                "client_ip_address",
                "client_user_agent",
                "fbc",
                "fbp",
                "subscription_id",
                "fb_login_id",
                "lead_id",
            ],
            &format!("{at}.user_data"),
            &mut problems,
        );
        if user_data.as_object().is_some_and(|map| map.is_empty()) {
            problems.push(format!("{at}.user_data is empty"));
        }
        if source == Some("website")
            && (event.get("event_source_url").is_none()
                || user_data.get("client_user_agent").is_none())
        {
            problems.push(format!(
                "{at}: website events need event_source_url and client_user_agent"
            ));
        }
        for key in ["em", "ph", "external_id"] {
            if let Some(list) = user_data.get(key) {
                let ok = list.as_array().is_some_and(|items| {
                    !items.is_empty()
                        && items.iter().all(|item| item.as_str().is_some_and(is_hex64))
                });
                if !ok {
                    problems.push(format!(
                        "{at}.user_data.{key} is not a list of SHA-256 hex hashes"
                    ));
                }
            }
        }
        if let Some(fbc) = user_data.get("fbc") {
            let parts: Vec<&str> = fbc.as_str().unwrap_or("").splitn(4, '.').collect();
            let ok = parts.len() == 4
                && parts[0] == "fb"
                && is_digits(parts[1])
                && parts[2].len() == 13
                && is_digits(parts[2])
                && !parts[3].is_empty();
            if !ok {
                problems.push(format!(
                    "{at}.user_data.fbc {fbc} is not fb.<n>.<ms>.<fbclid>"
                ));
            }
        }
        if let Some(ip) = user_data.get("client_ip_address") {
            if ip
                .as_str()
                .and_then(|ip| ip.parse::<IpAddr>().ok())
                .is_none()
            {
                problems.push(format!("{at}.user_data.client_ip_address is not an IP"));
            }
        }
        if let Some(custom) = event.get("custom_data") {
            if let Some(value) = custom.get("value") {
                if !value.is_number() {
                    problems.push(format!("{at}.custom_data.value is not a number"));
                }
                if custom
                    .get("currency")
                    .and_then(Value::as_str)
                    .is_none_or(|c| c.len() != 3)
                {
                    problems.push(format!("{at}.custom_data.currency missing"));
                }
            }
        }
    }
    problems
}

/// Google's token endpoint: a refresh-token exchange as `google-auth` sends it (reference A.6).
pub fn check_oauth(request: &Request) -> Vec<String> {
    let mut problems = Vec::new();
    if request.method.as_str() != "POST" || request.url.path() != "/token" {
        problems.push("not POST /token".into());
    }
    if header(request, "content-type") != Some("application/x-www-form-urlencoded") {
        problems.push("content-type is not application/x-www-form-urlencoded".into());
    }
    let form = form_decode(&String::from_utf8_lossy(&request.body));
    let get = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    if get("grant_type") != Some("refresh_token") {
        problems.push("grant_type is not refresh_token".into());
    }
    for key in ["client_id", "client_secret", "refresh_token"] {
        if get(key).is_none_or(str::is_empty) {
            problems.push(format!("{key} missing"));
        }
    }
    problems
}

/// `application/x-www-form-urlencoded` pairs.
pub fn form_decode(text: &str) -> Vec<(String, String)> {
    fn decode(part: &str) -> String {
        let bytes = part.as_bytes();
        let mut out = Vec::new();
        let mut index = 0;
        while index < bytes.len() {
            match bytes[index] {
                b'+' => out.push(b' '),
                b'%' if index + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    index += 2;
                }
                byte => out.push(byte),
            }
            index += 1;
        }
        String::from_utf8(out).unwrap()
    }
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

/// `GET /v1/requestStatus:retrieve?requestId=…` as Data Manager takes it (A.7): a GET with a
/// bearer token, exactly one non-empty `requestId` and nothing else in the query, no body, and
/// none of the Ads API headers.
pub fn check_request_status(request: &Request) -> Vec<String> {
    let mut problems = Vec::new();
    if request.method.as_str() != "GET" || request.url.path() != "/v1/requestStatus:retrieve" {
        problems.push(format!(
            "{} {} is not GET /v1/requestStatus:retrieve",
            request.method,
            request.url.path()
        ));
    }
    bearer(request, &mut problems);
    for forbidden in ["developer-token", "login-customer-id", "content-type"] {
        if header(request, forbidden).is_some() {
            problems.push(format!(
                "{forbidden} header must not be sent to requestStatus:retrieve"
            ));
        }
    }
    if !request.body.is_empty() {
        problems.push("a GET must carry no body".into());
    }
    let pairs: Vec<(String, String)> = request
        .url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    match pairs.as_slice() {
        [(name, value)] if name == "requestId" && !value.trim().is_empty() => {}
        other => problems.push(format!(
            "the query must be exactly one non-empty requestId, got {other:?}"
        )),
    }
    problems
}

/// The check of one kind of request: every problem it finds.
pub type Check = fn(&Request) -> Vec<String>;

/// The kind of a request to a fake, by its path, and its check.
pub fn kind_of(path: &str) -> Option<(&'static str, Check)> {
    let found: (&'static str, Check) = if path == "/token" {
        ("google_oauth", check_oauth)
    } else if path == "/ms-token" {
        ("microsoft_oauth", check_microsoft_oauth)
    } else if path == platforms::microsoft::APPLY_PATH {
        ("microsoft_offline_conversions", check_microsoft)
    } else if path == platforms::microsoft::ADJUST_PATH {
        (
            "microsoft_offline_conversion_adjustments",
            check_microsoft_adjustments,
        )
    } else if path == platforms::linkedin::PATH {
        ("linkedin_conversion_events", check_linkedin)
    } else if path.starts_with("/api/v3/pixels/") {
        ("reddit_conversion_events", check_reddit)
    } else if path == platforms::tiktok::PATH {
        ("tiktok_events", check_tiktok)
    } else if path.starts_with("/v3/") {
        ("snapchat_events", check_snapchat)
    } else if path.starts_with("/v5/ad_accounts/") {
        ("pinterest_events", check_pinterest)
    } else if path.ends_with(":uploadClickConversions") {
        ("google_ads_upload_click_conversions", check_ads_upload)
    } else if path.ends_with(":uploadConversionAdjustments") {
        (
            "google_ads_upload_conversion_adjustments",
            check_ads_adjustments,
        )
    } else if path == "/v1/events:ingest" {
        ("google_data_manager_ingest", check_data_manager)
    } else if path == "/v1/requestStatus:retrieve" {
        ("google_data_manager_request_status", check_request_status)
    } else if path.starts_with("/v26.0/") {
        ("meta_events", check_meta)
    } else {
        return None;
    };
    Some(found)
}

/// The check of whatever kind of request this is; a path of no fake is a problem.
pub fn check_any(request: &Request) -> Vec<String> {
    match kind_of(request.url.path()) {
        Some((_, check)) => check(request),
        None => vec![format!("unexpected request to {}", request.url.path())],
    }
}

/// Every request the server got passes the check for its kind. With
/// `CONVRELAY_RECORD_REQUESTS` naming a directory, each one is also written there (see
/// [`record_request`]) for the official client libraries to check (`scripts/sdk-check.sh`).
pub async fn assert_requests_strict(server: &MockServer) {
    for request in server.received_requests().await.unwrap_or_default() {
        let path = request.url.path().to_owned();
        let problems = match kind_of(&path) {
            Some((kind, check)) => {
                let problems = check(&request);
                if problems.is_empty() {
                    record_request(kind, &request);
                }
                problems
            }
            None => vec![format!("unexpected request to {path}")],
        };
        assert!(problems.is_empty(), "{path}: {problems:#?}");
    }
}

/// Headers whose values are credentials: recorded as `[redacted]`.
const CREDENTIAL_HEADERS: [&str; 4] = [
    "authorization",
    "access-token",
    "developertoken",
    "developer-token",
];

/// Writes one request a strict fake accepted as JSON (`kind`, `method`, `path`, `query`,
/// `headers`, `body`) into `$CONVRELAY_RECORD_REQUESTS/<kind>-<n>.json`, credentials blanked;
/// does nothing without that variable.
pub fn record_request(kind: &str, request: &Request) {
    static RECORDED: AtomicUsize = AtomicUsize::new(0);
    let Some(dir) = std::env::var_os("CONVRELAY_RECORD_REQUESTS") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let headers: serde_json::Map<String, Value> = request
        .headers
        .iter()
        .map(|(name, value)| {
            let name = name.as_str().to_ascii_lowercase();
            let value = if CREDENTIAL_HEADERS.contains(&name.as_str()) {
                "[redacted]".to_owned()
            } else {
                value.to_str().unwrap_or("").to_owned()
            };
            (name, Value::String(value))
        })
        .collect();
    let query: serde_json::Map<String, Value> = request
        .url
        .query_pairs()
        .map(|(name, value)| {
            let value = if name == "access_token" {
                "[redacted]".to_owned()
            } else {
                value.into_owned()
            };
            (name.into_owned(), Value::String(value))
        })
        .collect();
    let body = serde_json::from_slice::<Value>(&request.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&request.body).into_owned()));
    let record = json!({
        "kind": kind,
        "method": request.method.to_string(),
        "path": request.url.path(),
        "query": query,
        "headers": headers,
        "body": body,
    });
    let name = format!(
        "{kind}-{}-{}.json",
        std::process::id(),
        RECORDED.fetch_add(1, Ordering::SeqCst)
    );
    std::fs::write(dir.join(name), serde_json::to_vec_pretty(&record).unwrap()).unwrap();
}

/// Bodies of the requests to `path_suffix`, in order.
pub async fn bodies(server: &MockServer, path_suffix: &str) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|request| request.url.path().ends_with(path_suffix))
        .map(|request| serde_json::from_slice(&request.body).unwrap())
        .collect()
}

/// Matches only requests that pass `check`.
pub struct Strict(pub fn(&Request) -> Vec<String>);

impl Match for Strict {
    fn matches(&self, request: &Request) -> bool {
        (self.0)(request).is_empty()
    }
}

/// Token endpoint answering `tokens` in turn (the last one repeatedly), each living
/// `expires_in` seconds.
pub struct TokenSequence {
    pub tokens: Vec<&'static str>,
    pub expires_in: u64,
    pub served: AtomicUsize,
}

impl Respond for TokenSequence {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let position = self.served.fetch_add(1, Ordering::SeqCst);
        let token = self.tokens[position.min(self.tokens.len() - 1)];
        ResponseTemplate::new(200).set_body_json(json!({
            "access_token": token, "expires_in": self.expires_in,
            "scope": "https://www.googleapis.com/auth/adwords https://www.googleapis.com/auth/datamanager",
            "token_type": "Bearer"
        }))
    }
}

/// Mounts a token endpoint that checks the exchange and hands out `token`.
pub async fn mount_oauth(server: &MockServer, token: &'static str) {
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(Strict(check_oauth))
        .respond_with(TokenSequence {
            tokens: vec![token],
            expires_in: 3599,
            served: AtomicUsize::new(0),
        })
        .named("oauth token")
        .mount(server)
        .await;
}

/// No record of `report` shows a credential.
pub fn assert_no_secrets(report: &SendReport, extra: &[&str]) {
    let secrets = [CLIENT_SECRET, REFRESH_TOKEN, DEVELOPER_TOKEN, META_TOKEN];
    for record in &report.requests {
        for secret in secrets.iter().chain(extra) {
            assert!(
                !record.response_excerpt.contains(secret),
                "excerpt shows a secret: {}",
                record.response_excerpt
            );
            assert!(
                !record.error.as_deref().unwrap_or("").contains(secret),
                "error shows a secret: {:?}",
                record.error
            );
        }
        assert!(record.response_excerpt.len() <= 2048);
    }
    for outcome in &report.outcomes {
        let text = format!("{outcome:?}");
        for secret in secrets.iter().chain(extra) {
            assert!(!text.contains(secret), "outcome shows a secret: {text}");
        }
    }
}

// ---- Microsoft Advertising

pub const MS_CUSTOMER_ID: &str = "251186883";
pub const MS_ACCOUNT_ID: &str = "149615541";
pub const MS_CLIENT_ID: &str = "4c0b021c-00c3-4508-838f-d3127e8167ff";
pub const MS_REFRESH_TOKEN: &str = "M.C107_BAY.refresh-token";
pub const MS_DEVELOPER_TOKEN: &str = "BBD37VB98-dev-token";
pub const MS_ACCESS_TOKEN: &str = "EwAIA+pvBAAUms-access";
pub const MSCLKID: &str = "f894f652ea334e739002f7167ab8f8e3";
/// Microsoft's hash of `john.smith+promo@gmail.com` (trimmed, lower-cased, nothing else).
pub const MS_EMAIL_SHA256: &str =
    "bf76de1a7b58966a1a636ee208f34a243f0f24c29b3d1163b6e0d14c0cfadfee";

pub fn microsoft_config() -> platforms::microsoft::MicrosoftAdsConfig {
    platforms::microsoft::MicrosoftAdsConfig {
        customer_id: MS_CUSTOMER_ID.into(),
        account_id: MS_ACCOUNT_ID.into(),
        conversion_names: PerKind {
            lead: Some("CRM Lead".into()),
            sale: Some("Offline Purchase".into()),
        },
    }
}

pub fn microsoft_creds() -> platforms::microsoft::MicrosoftAdsCredentials {
    platforms::microsoft::MicrosoftAdsCredentials {
        client_id: MS_CLIENT_ID.into(),
        client_secret: None,
        refresh_token: MS_REFRESH_TOKEN.into(),
        developer_token: MS_DEVELOPER_TOKEN.into(),
    }
}

/// `conversion` carrying an msclkid on its touchpoint.
pub fn with_msclkid(mut conversion: Conversion) -> Conversion {
    if let Some(click) = conversion.attribution.click.as_mut() {
        click.click_ids.msclkid = Some(MSCLKID.into());
    }
    conversion
}

/// The identity platform's refresh-token exchange, as Microsoft checks it.
pub fn check_microsoft_oauth(request: &Request) -> Vec<String> {
    let mut problems = Vec::new();
    if request.method.as_str() != "POST" || request.url.path() != "/ms-token" {
        problems.push("not POST /ms-token".into());
    }
    if header(request, "content-type") != Some("application/x-www-form-urlencoded") {
        problems.push("content-type is not application/x-www-form-urlencoded".into());
    }
    let form = form_decode(&String::from_utf8_lossy(&request.body));
    let get = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    if get("grant_type") != Some("refresh_token") {
        problems.push("grant_type is not refresh_token".into());
    }
    for key in ["client_id", "refresh_token"] {
        if get(key).is_none_or(str::is_empty) {
            problems.push(format!("{key} missing"));
        }
    }
    if !get("scope").is_some_and(|scope| {
        scope
            .split(' ')
            .any(|s| s == "https://ads.microsoft.com/msads.manage")
    }) {
        problems.push("scope does not ask for https://ads.microsoft.com/msads.manage".into());
    }
    problems
}

/// `ApplyOfflineConversions` (REST), as strict as the service and its msads models: the four
/// headers, the exact keys (PascalCase), 1 to 1,000 rows, UTC times with a `Z` no older than
/// 90 days and not in the future, hex hashes, a currency only with a value.
pub fn check_microsoft(request: &Request) -> Vec<String> {
    let mut problems = Vec::new();
    if request.method.as_str() != "POST" || request.url.path() != platforms::microsoft::APPLY_PATH {
        problems.push("not POST /CampaignManagement/v13/OfflineConversions/Apply".into());
    }
    bearer(request, &mut problems);
    if header(request, "developertoken").is_none_or(str::is_empty) {
        problems.push("no DeveloperToken header".into());
    }
    for name in ["customerid", "customeraccountid"] {
        if !header(request, name).is_some_and(is_digits) {
            problems.push(format!("{name} header is not digits"));
        }
    }
    let body = json_body(request, &mut problems);
    only_keys(&body, &["OfflineConversions"], "body", &mut problems);
    let rows = body["OfflineConversions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if rows.is_empty() || rows.len() > 1000 {
        problems.push(format!(
            "{} OfflineConversions: must be 1 to 1000",
            rows.len()
        ));
    }
    let now = OffsetDateTime::now_utc();
    for (index, row) in rows.iter().enumerate() {
        let at = format!("OfflineConversions[{index}]");
        only_keys(
            row,
            &[
                "ConversionName",
                "ConversionTime",
                "MicrosoftClickId",
                "ConversionValue",
                "ConversionCurrencyCode",
                "HashedEmailAddress",
                "HashedPhoneNumber",
                "ExternalAttributionCredit",
                "ExternalAttributionModel",
            ],
            &at,
            &mut problems,
        );
        if row["ConversionName"]
            .as_str()
            .is_none_or(|s| s.trim().is_empty())
        {
            problems.push(format!("{at}.ConversionName missing"));
        }
        if row["MicrosoftClickId"]
            .as_str()
            .is_none_or(|s| s.trim().is_empty())
        {
            problems.push(format!("{at}.MicrosoftClickId missing"));
        }
        match row["ConversionTime"].as_str() {
            Some(text) if shaped(text, "9999-99-99T99:99:99Z") => {
                match OffsetDateTime::parse(text, &Rfc3339) {
                    Ok(time) if time > now + time::Duration::minutes(1) => {
                        problems.push(format!("{at}.ConversionTime is in the future"))
                    }
                    Ok(time) if now - time > time::Duration::days(90) => {
                        problems.push(format!("{at}.ConversionTime is over 90 days old"))
                    }
                    Ok(_) => {}
                    Err(_) => problems.push(format!("{at}.ConversionTime is not a time")),
                }
            }
            _ => problems.push(format!("{at}.ConversionTime is not yyyy-mm-ddThh:mm:ssZ")),
        }
        if let Some(value) = row.get("ConversionValue") {
            if !value.as_f64().is_some_and(|v| v >= 0.0) {
                problems.push(format!("{at}.ConversionValue is not a number >= 0"));
            }
        }
        match row.get("ConversionCurrencyCode") {
            Some(code) if !code.as_str().is_some_and(is_currency) => {
                problems.push(format!("{at}.ConversionCurrencyCode is not ISO 4217"))
            }
            Some(_) if row.get("ConversionValue").is_none() => {
                problems.push(format!("{at}.ConversionCurrencyCode without a value"))
            }
            _ => {}
        }
        for key in ["HashedEmailAddress", "HashedPhoneNumber"] {
            if let Some(hash) = row.get(key) {
                if !hash.as_str().is_some_and(is_hex64) {
                    problems.push(format!("{at}.{key} is not a lower-case SHA-256 hex digest"));
                }
            }
        }
    }
    problems
}

/// `ApplyOfflineConversionAdjustments` (REST), as strict as its msads models
/// (`OfflineConversionAdjustment`): the four headers, the exact keys, 1 to 1,000 rows, the
/// original goal name, time and click id, `Restate` with a value and a currency or `Retract`
/// with neither, an `AdjustmentTime` in UTC with a `Z` after the conversion and not in the future.
pub fn check_microsoft_adjustments(request: &Request) -> Vec<String> {
    let mut problems = Vec::new();
    if request.method.as_str() != "POST" || request.url.path() != platforms::microsoft::ADJUST_PATH
    {
        problems.push("not POST /CampaignManagement/v13/OfflineConversionAdjustments/Apply".into());
    }
    bearer(request, &mut problems);
    if header(request, "developertoken").is_none_or(str::is_empty) {
        problems.push("no DeveloperToken header".into());
    }
    for name in ["customerid", "customeraccountid"] {
        if !header(request, name).is_some_and(is_digits) {
            problems.push(format!("{name} header is not digits"));
        }
    }
    let body = json_body(request, &mut problems);
    only_keys(
        &body,
        &["OfflineConversionAdjustments"],
        "body",
        &mut problems,
    );
    let rows = body["OfflineConversionAdjustments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if rows.is_empty() || rows.len() > 1000 {
        problems.push(format!(
            "{} OfflineConversionAdjustments: must be 1 to 1000",
            rows.len()
        ));
    }
    let now = OffsetDateTime::now_utc();
    let time_of =
        |row: &Value, key: &str, at: &str, problems: &mut Vec<String>| match row[key].as_str() {
            Some(text) if shaped(text, "9999-99-99T99:99:99Z") => {
                match OffsetDateTime::parse(text, &Rfc3339) {
                    Ok(time) if time > now + time::Duration::minutes(1) => {
                        problems.push(format!("{at}.{key} is in the future"));
                        None
                    }
                    Ok(time) => Some(time),
                    Err(_) => {
                        problems.push(format!("{at}.{key} is not a time"));
                        None
                    }
                }
            }
            _ => {
                problems.push(format!("{at}.{key} is not yyyy-mm-ddThh:mm:ssZ"));
                None
            }
        };
    for (index, row) in rows.iter().enumerate() {
        let at = format!("OfflineConversionAdjustments[{index}]");
        only_keys(
            row,
            &[
                "ConversionName",
                "ConversionTime",
                "MicrosoftClickId",
                "AdjustmentTime",
                "AdjustmentType",
                "AdjustmentValue",
                "AdjustmentCurrencyCode",
                "HashedEmailAddress",
                "HashedPhoneNumber",
            ],
            &at,
            &mut problems,
        );
        for key in ["ConversionName", "MicrosoftClickId"] {
            if row[key].as_str().is_none_or(|s| s.trim().is_empty()) {
                problems.push(format!("{at}.{key} missing"));
            }
        }
        let converted = time_of(row, "ConversionTime", &at, &mut problems);
        let adjusted = time_of(row, "AdjustmentTime", &at, &mut problems);
        if let (Some(converted), Some(adjusted)) = (converted, adjusted) {
            if adjusted <= converted {
                problems.push(format!("{at}.AdjustmentTime is not after ConversionTime"));
            }
        }
        let has_value = row.get("AdjustmentValue").is_some();
        let has_currency = row.get("AdjustmentCurrencyCode").is_some();
        match row["AdjustmentType"].as_str() {
            Some("Restate") => {
                if !row["AdjustmentValue"].as_f64().is_some_and(|v| v >= 0.0) {
                    problems.push(format!("{at}.AdjustmentValue is not a number >= 0"));
                }
                if !row["AdjustmentCurrencyCode"]
                    .as_str()
                    .is_some_and(is_currency)
                {
                    problems.push(format!("{at}.AdjustmentCurrencyCode is not ISO 4217"));
                }
            }
            Some("Retract") => {
                if has_value || has_currency {
                    problems.push(format!("{at}: a Retract carries no value"));
                }
            }
            other => problems.push(format!(
                "{at}.AdjustmentType must be Restate or Retract, got {other:?}"
            )),
        }
    }
    problems
}

/// Mounts Microsoft's token endpoint, handing out `token`.
pub async fn mount_microsoft_oauth(server: &MockServer, token: &'static str) {
    Mock::given(method("POST"))
        .and(path("/ms-token"))
        .and(Strict(check_microsoft_oauth))
        .respond_with(TokenSequence {
            tokens: vec![token],
            expires_in: 3599,
            served: AtomicUsize::new(0),
        })
        .named("microsoft token")
        .mount(server)
        .await;
}

// ---- LinkedIn

pub const LI_TOKEN: &str = "AQX-linkedin-member-token";
pub const LI_FAT_ID: &str = "df6b1d2a-5f9e-4b2c-9a63-2c0f1f8c7a11";
/// The trimmed, lower-cased email's SHA-256 (LinkedIn lowercases only).
pub const LI_EMAIL_SHA256: &str = MS_EMAIL_SHA256;

pub fn linkedin_config() -> platforms::linkedin::LinkedInConfig {
    platforms::linkedin::LinkedInConfig {
        conversion_rules: PerKind {
            lead: Some("104012".into()),
            sale: Some("104013".into()),
        },
        match_without_click_id: false,
    }
}

pub fn linkedin_creds() -> platforms::linkedin::LinkedInCredentials {
    platforms::linkedin::LinkedInCredentials {
        access_token: LI_TOKEN.into(),
    }
}

pub fn with_li_fat_id(mut conversion: Conversion) -> Conversion {
    if let Some(click) = conversion.attribution.click.as_mut() {
        click.click_ids.li_fat_id = Some(LI_FAT_ID.into());
    }
    conversion
}

/// `BATCH_CREATE /rest/conversionEvents`, as strict as LinkedIn: the Rest.li headers and a
/// version, the exact keys, `user.userIds` always present (LinkedIn refuses an element without
/// it), a rule URN, a 13-digit time no more than 90 days old, an amount as a decimal string,
/// hex email hashes, 1 to 5,000 elements.
pub fn check_linkedin(request: &Request) -> Vec<String> {
    let mut problems = Vec::new();
    if request.method.as_str() != "POST" || request.url.path() != platforms::linkedin::PATH {
        problems.push("not POST /rest/conversionEvents".into());
    }
    bearer(request, &mut problems);
    if !header(request, "linkedin-version").is_some_and(|v| shaped(v, "999999")) {
        problems.push("LinkedIn-Version is not YYYYMM".into());
    }
    if header(request, "x-restli-protocol-version") != Some("2.0.0") {
        problems.push("X-Restli-Protocol-Version is not 2.0.0".into());
    }
    if header(request, "x-restli-method") != Some("BATCH_CREATE") {
        problems.push("X-RestLi-Method is not BATCH_CREATE".into());
    }
    let body = json_body(request, &mut problems);
    only_keys(&body, &["elements"], "body", &mut problems);
    let elements = body["elements"].as_array().cloned().unwrap_or_default();
    if elements.is_empty() || elements.len() > 5000 {
        problems.push(format!("{} elements: must be 1 to 5000", elements.len()));
    }
    let now_ms = OffsetDateTime::now_utc().unix_timestamp() * 1000;
    for (index, element) in elements.iter().enumerate() {
        let at = format!("elements[{index}]");
        only_keys(
            element,
            &[
                "conversion",
                "conversionHappenedAt",
                "conversionValue",
                "eventId",
                "user",
            ],
            &at,
            &mut problems,
        );
        let urn = element["conversion"].as_str().unwrap_or("");
        if !urn
            .strip_prefix("urn:lla:llaPartnerConversion:")
            .is_some_and(is_digits)
        {
            problems.push(format!(
                "{at}.conversion is not urn:lla:llaPartnerConversion:<id>"
            ));
        }
        match element["conversionHappenedAt"].as_i64() {
            Some(ms) if ms.to_string().len() == 13 => {
                if ms > now_ms + 60_000 || now_ms - ms > 90 * 86_400_000 {
                    problems.push(format!(
                        "{at}.conversionHappenedAt is outside the last 90 days"
                    ));
                }
            }
            _ => problems.push(format!(
                "{at}.conversionHappenedAt is not epoch milliseconds"
            )),
        }
        if let Some(value) = element.get("conversionValue") {
            only_keys(
                value,
                &["currencyCode", "amount"],
                &format!("{at}.conversionValue"),
                &mut problems,
            );
            if !value["currencyCode"].as_str().is_some_and(is_currency) {
                problems.push(format!("{at}.conversionValue.currencyCode is not ISO 4217"));
            }
            let amount = value["amount"].as_str().unwrap_or("");
            if amount.is_empty() || amount.parse::<f64>().is_err() {
                problems.push(format!(
                    "{at}.conversionValue.amount is not a decimal string"
                ));
            }
        }
        if element["eventId"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{at}.eventId missing"));
        }
        let user = &element["user"];
        only_keys(
            user,
            &["userIds", "userInfo", "externalIds"],
            &format!("{at}.user"),
            &mut problems,
        );
        match user["userIds"].as_array() {
            None => problems.push(format!("{at}.user.userIds missing")),
            Some(ids) => {
                for (position, id) in ids.iter().enumerate() {
                    let path = format!("{at}.user.userIds[{position}]");
                    only_keys(id, &["idType", "idValue"], &path, &mut problems);
                    match id["idType"].as_str() {
                        Some("SHA256_EMAIL") => {
                            if !id["idValue"].as_str().is_some_and(is_hex64) {
                                problems
                                    .push(format!("{path}.idValue is not a SHA-256 hex digest"));
                            }
                        }
                        Some(
                            "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID"
                            | "ACXIOM_ID"
                            | "ORACLE_MOAT_ID",
                        ) => {
                            if id["idValue"].as_str().is_none_or(str::is_empty) {
                                problems.push(format!("{path}.idValue missing"));
                            }
                        }
                        other => problems.push(format!("{path}.idType {other:?} is not known")),
                    }
                }
            }
        }
    }
    problems
}

// ---- Reddit

pub const RD_PIXEL: &str = "t2_abc123";
pub const RD_TOKEN: &str = "eyJ-reddit-conversion-token";
pub const RDT_CID: &str = "1a2b3c4d-reddit-click";
pub const RD_PATH: &str = "/api/v3/pixels/t2_abc123/conversion_events";
/// Reddit's hash of `John.Smith+promo@GMail.com`: `johnsmith@gmail.com`.
pub const RD_EMAIL_SHA256: &str =
    "3586de92bb3636d0885a12eff961429a32e4ebd764b96f50d85d016f9338d586";

pub fn reddit_config() -> platforms::reddit::RedditConfig {
    platforms::reddit::RedditConfig {
        pixel_id: RD_PIXEL.into(),
        action_source: "WEBSITE".into(),
        event_names: PerKind {
            lead: Some("LEAD".into()),
            sale: Some("PURCHASE".into()),
        },
        test_id: None,
        match_without_click_id: false,
    }
}

pub fn reddit_creds() -> platforms::reddit::RedditCredentials {
    platforms::reddit::RedditCredentials {
        access_token: RD_TOKEN.into(),
    }
}

pub fn with_rdt_cid(mut conversion: Conversion) -> Conversion {
    if let Some(click) = conversion.attribution.click.as_mut() {
        click.click_ids.rdt_cid = Some(RDT_CID.into());
    }
    conversion
}

/// `POST /api/v3/pixels/{pixel}/conversion_events`, as strict as Reddit: bearer token, the
/// exact keys, 1 to 1,000 events, 13-digit `event_at` no more than 7 days old, the enums, a
/// numeric value, hex hashes, raw click id and user agent.
pub fn check_reddit(request: &Request) -> Vec<String> {
    let mut problems = Vec::new();
    let path = request.url.path();
    let pixel = path
        .strip_prefix("/api/v3/pixels/")
        .and_then(|rest| rest.strip_suffix("/conversion_events"));
    if request.method.as_str() != "POST"
        || !pixel.is_some_and(|p| !p.is_empty() && !p.contains('/'))
    {
        problems.push("not POST /api/v3/pixels/{pixel}/conversion_events".into());
    }
    bearer(request, &mut problems);
    let body = json_body(request, &mut problems);
    only_keys(&body, &["data"], "body", &mut problems);
    only_keys(
        &body["data"],
        &["test_id", "partner", "events"],
        "body.data",
        &mut problems,
    );
    let events = body["data"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if events.is_empty() || events.len() > 1000 {
        problems.push(format!("{} events: must be 1 to 1000", events.len()));
    }
    let now_ms = OffsetDateTime::now_utc().unix_timestamp() * 1000;
    for (index, event) in events.iter().enumerate() {
        let at = format!("events[{index}]");
        only_keys(
            event,
            &[
                "event_at",
                "action_source",
                "type",
                "click_id",
                "event_source_url",
                "user",
                "metadata",
            ],
            &at,
            &mut problems,
        );
        match event["event_at"].as_i64() {
            Some(ms) if ms.to_string().len() == 13 => {
                if now_ms - ms > 7 * 86_400_000 {
                    problems.push(format!(
                        "{at}: event_at timestamp must be less than 168h0m0s old"
                    ));
                }
                if ms > now_ms + 5 * 60_000 {
                    problems.push(format!("{at}.event_at is in the future"));
                }
            }
            _ => problems.push(format!("{at}.event_at is not epoch milliseconds")),
        }
        if !matches!(
            event["action_source"].as_str(),
            Some("WEBSITE" | "APP" | "PHYSICAL_STORE" | "OTHER")
        ) {
            problems.push(format!("{at}.action_source is not a Reddit action source"));
        }
        only_keys(
            &event["type"],
            &["tracking_type", "custom_event_name"],
            &format!("{at}.type"),
            &mut problems,
        );
        match event["type"]["tracking_type"].as_str() {
            Some("CUSTOM") if event["type"]["custom_event_name"].as_str().is_none() => {
                problems.push(format!("{at}.type: CUSTOM needs custom_event_name"))
            }
            Some(
                "PAGE_VISIT" | "VIEW_CONTENT" | "SEARCH" | "ADD_TO_CART" | "ADD_TO_WISHLIST"
                | "LEAD" | "PURCHASE" | "SIGN_UP" | "CUSTOM",
            ) => {}
            other => problems.push(format!("{at}.type.tracking_type {other:?} is not known")),
        }
        if let Some(user) = event.get("user") {
            only_keys(
                user,
                &[
                    "email",
                    "phone_number",
                    "external_id",
                    "ip_address",
                    "user_agent",
                    "uuid",
                    "idfa",
                    "aaid",
                    "screen_dimensions",
                    "data_processing_options",
                ],
                &format!("{at}.user"),
                &mut problems,
            );
            for key in ["email", "phone_number", "external_id", "ip_address"] {
                if let Some(hash) = user.get(key) {
                    if !hash.as_str().is_some_and(is_hex64) {
                        problems.push(format!("{at}.user.{key} is not a SHA-256 hex digest"));
                    }
                }
            }
        }
        let metadata = &event["metadata"];
        only_keys(
            metadata,
            &[
                "conversion_id",
                "currency",
                "value",
                "item_count",
                "products",
            ],
            &format!("{at}.metadata"),
            &mut problems,
        );
        if metadata["conversion_id"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{at}.metadata.conversion_id missing"));
        }
        if let Some(value) = metadata.get("value") {
            if !value.is_number() {
                problems.push(format!("{at}.metadata.value is not a number"));
            }
            if !metadata["currency"].as_str().is_some_and(is_currency) {
                problems.push(format!("{at}.metadata.currency is not ISO 4217"));
            }
        }
        if event.get("click_id").is_none() && event.get("user").is_none() {
            problems.push(format!("{at}: no click_id and no user"));
        }
    }
    problems
}

// ---- TikTok

pub const TT_PIXEL: &str = "CABC123PIXEL";
pub const TT_TOKEN: &str = "tiktok-events-api-token";
pub const TTCLID: &str = "E.C.P.tiktok-click";
pub const TTP: &str = "2AbCdEf-ttp-cookie";

pub fn tiktok_config() -> platforms::tiktok::TikTokConfig {
    platforms::tiktok::TikTokConfig {
        pixel_code: TT_PIXEL.into(),
        event_source: "web".into(),
        event_names: PerKind {
            lead: Some("Lead".into()),
            sale: Some("Purchase".into()),
        },
        test_event_code: None,
        match_without_click_id: false,
    }
}

pub fn tiktok_creds() -> platforms::tiktok::TikTokCredentials {
    platforms::tiktok::TikTokCredentials {
        access_token: TT_TOKEN.into(),
    }
}

pub fn with_ttclid(mut conversion: Conversion) -> Conversion {
    if let Some(click) = conversion.attribution.click.as_mut() {
        click.click_ids.ttclid = Some(TTCLID.into());
        click.click_ids.ttp = Some(TTP.into());
    }
    conversion
}

/// `POST /open_api/v1.3/event/track/`, as the reference's hand checks say (the official SDK
/// only models the retired 1.0 format): `Access-Token`, the exact keys, 1 to 1,000 events,
/// 10-digit `event_time`, hex hashes in arrays, raw ip and ttclid, an upper-case currency with
/// a value.
pub fn check_tiktok(request: &Request) -> Vec<String> {
    let mut problems = Vec::new();
    if request.method.as_str() != "POST" || request.url.path() != platforms::tiktok::PATH {
        problems.push("not POST /open_api/v1.3/event/track/".into());
    }
    if header(request, "access-token").is_none_or(str::is_empty) {
        problems.push("no Access-Token header".into());
    }
    let body = json_body(request, &mut problems);
    only_keys(
        &body,
        &[
            "event_source",
            "event_source_id",
            "test_event_code",
            "partner_name",
            "data",
        ],
        "body",
        &mut problems,
    );
    if !matches!(
        body["event_source"].as_str(),
        Some("web" | "app" | "offline" | "crm")
    ) {
        problems.push("event_source is not web, app, offline or crm".into());
    }
    if body["event_source_id"].as_str().is_none_or(str::is_empty) {
        problems.push("event_source_id missing".into());
    }
    let data = body["data"].as_array().cloned().unwrap_or_default();
    if data.is_empty() || data.len() > 1000 {
        problems.push(format!("{} events: must be 1 to 1000 (40061)", data.len()));
    }
    for (index, event) in data.iter().enumerate() {
        let at = format!("data[{index}]");
        only_keys(
            event,
            &[
                "event",
                "event_time",
                "event_id",
                "user",
                "properties",
                "page",
                "limited_data_use",
                "lead",
            ],
            &at,
            &mut problems,
        );
        if event["event"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{at}.event missing"));
        }
        if event["event_time"]
            .as_i64()
            .is_none_or(|t| t.to_string().len() != 10)
        {
            problems.push(format!("{at}.event_time is not Unix seconds"));
        }
        if event["event_id"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{at}.event_id missing"));
        }
        let user = &event["user"];
        only_keys(
            user,
            &[
                "email",
                "phone",
                "external_id",
                "ttclid",
                "ttp",
                "ip",
                "user_agent",
                "locale",
                "first_name",
                "last_name",
                "city",
                "state",
                "country",
                "zip_code",
            ],
            &format!("{at}.user"),
            &mut problems,
        );
        for key in ["email", "phone", "external_id"] {
            if let Some(hashes) = user.get(key) {
                let ok = match hashes {
                    Value::Array(items) => items.iter().all(|h| h.as_str().is_some_and(is_hex64)),
                    Value::String(h) => is_hex64(h),
                    _ => false,
                };
                if !ok {
                    problems.push(format!(
                        "{at}.user.{key} is not SHA-256 hex (40062: PII not hashed)"
                    ));
                }
            }
        }
        for key in ["ip", "ttclid"] {
            if user.get(key).and_then(Value::as_str).is_some_and(is_hex64) {
                problems.push(format!("{at}.user.{key} must not be hashed"));
            }
        }
        if let Some(properties) = event.get("properties") {
            only_keys(
                properties,
                &[
                    "value",
                    "currency",
                    "contents",
                    "content_type",
                    "order_id",
                    "content_ids",
                    "num_items",
                    "query",
                    "description",
                ],
                &format!("{at}.properties"),
                &mut problems,
            );
            if properties.get("value").is_some()
                && !properties["currency"].as_str().is_some_and(is_currency)
            {
                problems.push(format!("{at}.properties.currency is not ISO 4217"));
            }
        }
        if event
            .get("limited_data_use")
            .is_some_and(|v| !v.is_boolean())
        {
            problems.push(format!("{at}.limited_data_use is not a boolean"));
        }
    }
    problems
}

// ---- Snapchat

pub const SC_PIXEL: &str = "7a3b1c2d-4e5f-6789-abcd-ef0123456789";
pub const SC_TOKEN: &str = "snap-capi-token";
pub const SC_CID: &str = "snap-click-id-123";
pub const SC_COOKIE: &str = "snap-scid-cookie";
pub const SC_PATH: &str = "/v3/7a3b1c2d-4e5f-6789-abcd-ef0123456789/events";

pub fn snapchat_config() -> platforms::snapchat::SnapchatConfig {
    platforms::snapchat::SnapchatConfig {
        pixel_id: SC_PIXEL.into(),
        action_source: "WEB".into(),
        event_names: PerKind {
            lead: Some("SIGN_UP".into()),
            sale: Some("PURCHASE".into()),
        },
        test_mode: false,
        match_without_click_id: false,
    }
}

pub fn snapchat_creds() -> platforms::snapchat::SnapchatCredentials {
    platforms::snapchat::SnapchatCredentials {
        access_token: SC_TOKEN.into(),
    }
}

pub fn with_sc_cid(mut conversion: Conversion) -> Conversion {
    if let Some(click) = conversion.attribution.click.as_mut() {
        click.click_ids.sc_cid = Some(SC_CID.into());
        click.click_ids.scid = Some(SC_COOKIE.into());
    }
    conversion
}

/// `POST /v3/{pixel}/events?access_token=…` (or `/events/validate`), as strict as Snap's v3
/// schema and docs: the token in the query, 1 to 2,000 events, the enums, 10-digit times no
/// more than 37 days old, hex hashes in arrays, phone hashes of digits without `+`, string
/// prices, and a matchable event (email, phone, IP and user agent, or a click id).
pub fn check_snapchat(request: &Request) -> Vec<String> {
    let mut problems = Vec::new();
    let path = request.url.path();
    let pixel = path.strip_prefix("/v3/").and_then(|rest| {
        rest.strip_suffix("/events")
            .or_else(|| rest.strip_suffix("/events/validate"))
    });
    if request.method.as_str() != "POST"
        || !pixel.is_some_and(|p| !p.is_empty() && !p.contains('/'))
    {
        problems.push("not POST /v3/{pixel}/events".into());
    }
    if !request
        .url
        .query_pairs()
        .any(|(k, v)| k == "access_token" && !v.is_empty())
    {
        problems.push("no access_token in the query string".into());
    }
    let body = json_body(request, &mut problems);
    only_keys(&body, &["data"], "body", &mut problems);
    let data = body["data"].as_array().cloned().unwrap_or_default();
    if data.is_empty() || data.len() > 2000 {
        problems.push(format!("{} events: must be 1 to 2000", data.len()));
    }
    let now = OffsetDateTime::now_utc().unix_timestamp();
    for (index, event) in data.iter().enumerate() {
        let at = format!("data[{index}]");
        only_keys(
            event,
            &[
                "event_name",
                "event_time",
                "event_id",
                "action_source",
                "event_source_url",
                "user_data",
                "custom_data",
                "app_data",
                "opt_out",
                "data_processing_options",
                "integration",
            ],
            &at,
            &mut problems,
        );
        if event["event_name"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{at}.event_name missing"));
        }
        match event["event_time"].as_i64() {
            Some(t) if t.to_string().len() == 10 => {
                if now - t > 37 * 86_400 {
                    problems.push(format!("{at}.event_time is over 37 days old"));
                }
            }
            _ => problems.push(format!("{at}.event_time is not Unix seconds")),
        }
        if !matches!(
            event["action_source"].as_str(),
            Some("WEB" | "MOBILE_APP" | "OFFLINE")
        ) {
            problems.push(format!(
                "{at}.action_source is not WEB, MOBILE_APP or OFFLINE"
            ));
        }
        let user = &event["user_data"];
        only_keys(
            user,
            &[
                "em",
                "ph",
                "external_id",
                "fn",
                "ln",
                "ge",
                "ct",
                "st",
                "zp",
                "country",
                "db",
                "madid",
                "sc_click_id",
                "sc_cookie1",
                "client_ip_address",
                "client_user_agent",
                "idfv",
            ],
            &format!("{at}.user_data"),
            &mut problems,
        );
        for key in ["em", "ph", "external_id"] {
            if let Some(hashes) = user.get(key) {
                if !hashes
                    .as_array()
                    .is_some_and(|items| items.iter().all(|h| h.as_str().is_some_and(is_hex64)))
                {
                    problems.push(format!(
                        "{at}.user_data.{key} is not an array of SHA-256 hex digests"
                    ));
                }
            }
        }
        let matchable = user.get("em").is_some()
            || user.get("ph").is_some()
            || user.get("sc_click_id").is_some()
            || (user.get("client_ip_address").is_some() && user.get("client_user_agent").is_some());
        if !matchable {
            problems.push(format!("{at}.user_data has nothing Snap can match on"));
        }
        if let Some(custom) = event.get("custom_data") {
            only_keys(
                custom,
                &[
                    "value",
                    "currency",
                    "order_id",
                    "content_ids",
                    "contents",
                    "num_items",
                    "search_string",
                    "content_category",
                ],
                &format!("{at}.custom_data"),
                &mut problems,
            );
            if custom.get("value").is_some_and(|v| !v.is_number()) {
                problems.push(format!("{at}.custom_data.value is not a number"));
            }
            for (position, content) in custom["contents"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                for key in ["quantity", "item_price"] {
                    if content.get(key).is_some_and(|v| !v.is_string()) {
                        problems.push(format!(
                            "{at}.custom_data.contents[{position}].{key} is not a string"
                        ));
                    }
                }
            }
        }
    }
    problems
}

// ---- Pinterest

pub const PI_ACCOUNT: &str = "549755885175";
pub const PI_TOKEN: &str = "pina_conversion_token";
pub const EPIK: &str = "dj0yJnU9epik-click";
pub const PI_PATH: &str = "/v5/ad_accounts/549755885175/events";

pub fn pinterest_config() -> platforms::pinterest::PinterestConfig {
    platforms::pinterest::PinterestConfig {
        ad_account_id: PI_ACCOUNT.into(),
        action_source: "web".into(),
        event_names: PerKind {
            lead: Some("lead".into()),
            sale: Some("checkout".into()),
        },
        test_mode: false,
        match_without_click_id: false,
    }
}

pub fn pinterest_creds() -> platforms::pinterest::PinterestCredentials {
    platforms::pinterest::PinterestCredentials {
        access_token: PI_TOKEN.into(),
    }
}

pub fn with_epik(mut conversion: Conversion) -> Conversion {
    if let Some(click) = conversion.attribution.click.as_mut() {
        click.click_ids.epik = Some(EPIK.into());
    }
    conversion
}

/// `POST /v5/ad_accounts/{id}/events`, as strict as Pinterest's generated client (types,
/// required fields, 1 to 1,000 events, a matchable `user_data`) plus the hand checks: enums,
/// 10-digit `event_time`, hex hashes, bearer header, `value` and prices as strings.
pub fn check_pinterest(request: &Request) -> Vec<String> {
    let mut problems = Vec::new();
    let path = request.url.path();
    let account = path
        .strip_prefix("/v5/ad_accounts/")
        .and_then(|rest| rest.strip_suffix("/events"));
    if request.method.as_str() != "POST" || !account.is_some_and(is_digits) {
        problems.push("not POST /v5/ad_accounts/{digits}/events".into());
    }
    if request
        .url
        .query_pairs()
        .any(|(k, v)| k != "test" || v != "true")
    {
        problems.push("unknown query parameter".into());
    }
    bearer(request, &mut problems);
    let body = json_body(request, &mut problems);
    only_keys(&body, &["data"], "body", &mut problems);
    let data = body["data"].as_array().cloned().unwrap_or_default();
    if data.is_empty() || data.len() > 1000 {
        problems.push(format!("{} events: must be 1 to 1000", data.len()));
    }
    for (index, event) in data.iter().enumerate() {
        let at = format!("data[{index}]");
        only_keys(
            event,
            &[
                "event_name",
                "action_source",
                "event_time",
                "event_id",
                "event_source_url",
                "opt_out",
                "partner_name",
                "user_data",
                "custom_data",
                "app_id",
                "app_name",
                "app_version",
                "device_brand",
                "device_carrier",
                "device_model",
                "device_type",
                "os_version",
                "language",
            ],
            &at,
            &mut problems,
        );
        if event["event_name"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{at}.event_name missing"));
        }
        if !matches!(
            event["action_source"].as_str(),
            Some("web" | "app_android" | "app_ios" | "offline")
        ) {
            problems.push(format!(
                "{at}.action_source is not a Pinterest action source"
            ));
        }
        if event["event_time"]
            .as_i64()
            .is_none_or(|t| t.to_string().len() != 10)
        {
            problems.push(format!("{at}.event_time is not Unix seconds"));
        }
        if event["event_id"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{at}.event_id missing"));
        }
        let user = &event["user_data"];
        only_keys(
            user,
            &[
                "em",
                "hashed_maids",
                "client_ip_address",
                "client_user_agent",
                "ph",
                "ge",
                "db",
                "ln",
                "fn",
                "ct",
                "st",
                "zp",
                "country",
                "external_id",
                "click_id",
                "partner_id",
            ],
            &format!("{at}.user_data"),
            &mut problems,
        );
        for key in ["em", "ph", "external_id"] {
            if let Some(hashes) = user.get(key) {
                if !hashes
                    .as_array()
                    .is_some_and(|items| items.iter().all(|h| h.as_str().is_some_and(is_hex64)))
                {
                    problems.push(format!(
                        "{at}.user_data.{key} is not an array of SHA-256 hex digests"
                    ));
                }
            }
        }
        let matchable = user.get("em").is_some()
            || user.get("hashed_maids").is_some()
            || (user.get("client_ip_address").is_some() && user.get("client_user_agent").is_some());
        if !matchable {
            problems.push(format!(
                "{at}.user_data needs em, hashed_maids, or client_ip_address and client_user_agent"
            ));
        }
        if let Some(custom) = event.get("custom_data") {
            only_keys(
                custom,
                &[
                    "currency",
                    "value",
                    "content_ids",
                    "content_name",
                    "content_category",
                    "content_brand",
                    "contents",
                    "num_items",
                    "order_id",
                    "search_string",
                    "opt_out_type",
                ],
                &format!("{at}.custom_data"),
                &mut problems,
            );
            if custom.get("value").is_some_and(|v| !v.is_string()) {
                problems.push(format!("{at}.custom_data.value is not a string"));
            }
            for (position, content) in custom["contents"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                if content.get("item_price").is_some_and(|v| !v.is_string()) {
                    problems.push(format!(
                        "{at}.custom_data.contents[{position}].item_price is not a string"
                    ));
                }
                if content.get("quantity").is_some_and(|v| !v.is_i64()) {
                    problems.push(format!(
                        "{at}.custom_data.contents[{position}].quantity is not an integer"
                    ));
                }
            }
        }
    }
    problems
}
