//! Turning a request body into an [`Event`], reporting every offending field at once.
//!
//! serde's derived deserialisers stop at the first error, and a sender fixing a payload one field
//! per round trip is a poor experience; so the body is read from a [`serde_json::Value`] field by
//! field, each check appending to one list. Fields are checked in the order of the API table,
//! then unknown fields (in the map's order), then the rules that span fields.

use crate::email::Email;
use crate::error::{Error, FieldError, Result, ValidationErrors};
use crate::event::{ClickIds, Consent, ConsentStatus, Event, EventKind, Mode, Product, Utm};
use crate::money::{amount_from_json, Currency, Money};
use crate::phone::PhoneE164;
use crate::timestamp::{check_event_time, parse_timestamp, to_utc_millis};
use crate::MAX_BATCH;
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use std::net::IpAddr;
use time::OffsetDateTime;
use validator::ValidateUrl;

/// Longest id, name or UTM value, in characters.
pub const MAX_ID_LENGTH: usize = 255;

/// Longest ad-platform click id (`gclid`, `fbc`, …), in characters. Looser than our own ids:
/// the platforms set these, they have grown over the years, and refusing one loses the
/// attribution it carries.
pub const MAX_CLICK_ID_LENGTH: usize = 1024;

/// Longest `pageUrl`, `referrer` or `userAgent`, in characters.
pub const MAX_URL_LENGTH: usize = 2048;

/// Largest `metadata` object, in bytes of compact JSON.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// The top-level fields of an event body, in the order they are checked.
pub const EVENT_FIELDS: [&str; 35] = [
    "event",
    "timestamp",
    "leadId",
    "invoiceId",
    "eventName",
    "customerExternalId",
    "email",
    "phone",
    "name",
    "clickId",
    "gclid",
    "gbraid",
    "wbraid",
    "fbclid",
    "fbc",
    "fbp",
    "ttclid",
    "msclkid",
    "ttp",
    "liFatId",
    "rdtCid",
    "scCid",
    "scid",
    "epik",
    "utm",
    "pageUrl",
    "referrer",
    "ip",
    "userAgent",
    "consent",
    "amount",
    "currency",
    "products",
    "mode",
    "metadata",
];

/// Fields that identify the person; an event needs at least one of them.
const IDENTIFIER_FIELDS: [&str; 18] = [
    "customerExternalId",
    "email",
    "phone",
    "clickId",
    "gclid",
    "gbraid",
    "wbraid",
    "fbclid",
    "fbc",
    "fbp",
    "ttclid",
    "msclkid",
    "ttp",
    "liFatId",
    "rdtCid",
    "scCid",
    "scid",
    "epik",
];

const PRODUCT_FIELDS: [&str; 4] = ["id", "name", "quantity", "price"];
const CONSENT_FIELDS: [&str; 2] = ["adUserData", "adPersonalization"];

const ONLY_ON_LEADS: Error = Error::NotAllowed {
    reason: "is only allowed on lead events",
};
const ONLY_ON_SALES: Error = Error::NotAllowed {
    reason: "is only allowed on sale events",
};

/// Parses, validates and normalises one event body.
///
/// `now` is the time of receipt: the default `timestamp`, and the reference for the check
/// that an event is not in the future.
///
/// # Errors
/// Every offending field, in the order the fields are checked.
pub fn parse_event(value: &Value, now: OffsetDateTime) -> Result<Event, ValidationErrors> {
    with_nul_check(value, parse_event_fields(value, now))
}

/// Adds an error for every string (or key) holding a NUL character, wherever it is.
pub(crate) fn with_nul_check<T>(
    value: &Value,
    parsed: Result<T, ValidationErrors>,
) -> Result<T, ValidationErrors> {
    let mut nul = Vec::new();
    find_nul(value, "", &mut nul);
    match (parsed, nul.is_empty()) {
        (parsed, true) => parsed,
        (Ok(_), false) => Err(ValidationErrors(nul)),
        (Err(mut errors), false) => {
            errors.0.retain(|e| !nul.iter().any(|n| n.field == e.field));
            errors.0.append(&mut nul);
            Err(errors)
        }
    }
}

/// An error for every string or key of `value` holding a NUL character (which PostgreSQL cannot
/// store), by path: for bodies that are not events, such as destinations.
pub fn nul_errors(value: &Value) -> Vec<FieldError> {
    let mut out = Vec::new();
    find_nul(value, "", &mut out);
    out
}

fn find_nul(value: &Value, path: &str, out: &mut Vec<FieldError>) {
    match value {
        Value::String(s) if s.contains('\0') => {
            out.push(FieldError::new(path, &Error::NulCharacter))
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                find_nul(item, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if key.contains('\0') {
                    out.push(FieldError::new(child.clone(), &Error::NulCharacter));
                }
                find_nul(item, &child, out);
            }
        }
        _ => {}
    }
}

fn parse_event_fields(value: &Value, now: OffsetDateTime) -> Result<Event, ValidationErrors> {
    let Some(body) = value.as_object() else {
        return Err(not_an_object());
    };
    let mut errors = Vec::new();
    let mut reader = Reader::new(body, String::new(), &mut errors);

    let kind = reader.one_of(
        "event",
        &[("lead", EventKind::Lead), ("sale", EventKind::Sale)],
        "lead, sale",
    );
    if kind.is_none() && !reader.is_present("event") {
        reader.fail("event", Error::Required);
    }
    let timestamp = reader
        .text("timestamp")
        .and_then(|raw| reader.check("timestamp", parse_timestamp(raw)))
        .and_then(|at| reader.check("timestamp", check_event_time(at, now)))
        .unwrap_or_else(|| to_utc_millis(now));

    let lead_id = if kind == Some(EventKind::Sale) {
        reader.refuse("leadId", ONLY_ON_LEADS);
        None
    } else {
        reader.string("leadId", MAX_ID_LENGTH)
    };
    let invoice_id = if kind == Some(EventKind::Lead) {
        reader.refuse("invoiceId", ONLY_ON_SALES);
        None
    } else {
        reader.string("invoiceId", MAX_ID_LENGTH)
    };
    let event_name = reader.string("eventName", MAX_ID_LENGTH);
    let customer_external_id = reader.string("customerExternalId", MAX_ID_LENGTH);
    let email = reader.parsed("email", Email::parse);
    let phone = reader.parsed("phone", PhoneE164::parse);
    let name = reader.string("name", MAX_ID_LENGTH);
    let click_id = reader.string("clickId", MAX_ID_LENGTH);
    let click_ids = read_click_ids(&mut reader);
    let utm = reader.object("utm").map(|utm| read_utm(&mut reader, utm));
    let page_url = reader.url("pageUrl");
    let referrer = reader.url("referrer");
    let ip = reader.parsed("ip", |raw| {
        raw.parse::<IpAddr>().map_err(|_| Error::InvalidIp)
    });
    let user_agent = reader.string("userAgent", MAX_URL_LENGTH);
    let consent = reader
        .object("consent")
        .map(|consent| read_consent(&mut reader, consent));
    let value = read_value(&mut reader, kind);
    let products = if kind == Some(EventKind::Lead) {
        reader.refuse("products", ONLY_ON_SALES);
        Vec::new()
    } else {
        read_products(&mut reader)
    };
    let mode = reader.one_of(
        "mode",
        &[
            ("async", Mode::Async),
            ("wait", Mode::Wait),
            ("deferred", Mode::Deferred),
        ],
        "async, wait, deferred",
    );
    if mode == Some(Mode::Deferred) && kind == Some(EventKind::Sale) {
        reader.fail(
            "mode",
            Error::NotAllowed {
                reason: "\"deferred\" is only allowed on lead events",
            },
        );
    }
    let metadata = read_metadata(&mut reader);
    reader.reject_unknown(&EVENT_FIELDS);
    if !IDENTIFIER_FIELDS.iter().any(|key| reader.is_present(key)) {
        reader.fail("identifiers", Error::MissingIdentifier);
    }

    match kind {
        Some(kind) if errors.is_empty() => Ok(Event {
            kind,
            timestamp,
            lead_id,
            invoice_id,
            event_name: event_name.unwrap_or_else(|| kind.as_str().to_owned()),
            customer_external_id,
            email,
            phone,
            name,
            click_id,
            click_ids,
            utm,
            page_url,
            referrer,
            ip,
            user_agent,
            consent,
            value,
            products,
            mode: mode.unwrap_or_default(),
            metadata,
        }),
        // A missing kind has always been reported above.
        _ => Err(ValidationErrors(errors)),
    }
}

/// Checks the envelope of `POST /v1/events/batch` and hands back its items, each still to be
/// parsed on its own with [`parse_event`] (a bad item does not reject the batch).
///
/// # Errors
/// The body is not an object (field `""`, code `type`); `events` is missing (`required`), not an
/// array (`type`), empty (`min_items`) or longer than [`MAX_BATCH`] (`max_items`); another key is
/// present (`unknown_field`).
pub fn parse_batch(value: &Value) -> Result<&[Value], ValidationErrors> {
    parse_envelope(value, "events")
}

/// The envelope of a batch: an object whose only key `items` holds 1 to [`MAX_BATCH`] values.
pub(crate) fn parse_envelope<'v>(
    value: &'v Value,
    items: &'static str,
) -> Result<&'v [Value], ValidationErrors> {
    let Some(body) = value.as_object() else {
        return Err(not_an_object());
    };
    let mut errors = Vec::new();
    let mut reader = Reader::new(body, String::new(), &mut errors);
    let found = match reader.value(items) {
        None => reader.fail_none(items, Error::Required),
        Some(Value::Array(list)) if list.is_empty() => {
            reader.fail_none(items, Error::MinItems { min: 1 })
        }
        Some(Value::Array(list)) if list.len() > MAX_BATCH => {
            reader.fail_none(items, Error::MaxItems { max: MAX_BATCH })
        }
        Some(Value::Array(list)) => Some(list.as_slice()),
        Some(_) => reader.fail_none(
            items,
            Error::Type {
                expected: "an array",
            },
        ),
    };
    reader.reject_unknown(&[items]);
    match found {
        Some(found) if errors.is_empty() => Ok(found),
        _ => Err(ValidationErrors(errors)),
    }
}

pub(crate) fn not_an_object() -> ValidationErrors {
    ValidationErrors(vec![FieldError::new(
        "",
        &Error::Type {
            expected: "an object",
        },
    )])
}

pub(crate) fn read_click_ids(reader: &mut Reader<'_, '_>) -> ClickIds {
    let mut id = |key| reader.string(key, MAX_CLICK_ID_LENGTH);
    ClickIds {
        gclid: id("gclid"),
        gbraid: id("gbraid"),
        wbraid: id("wbraid"),
        fbclid: id("fbclid"),
        fbc: id("fbc"),
        fbp: id("fbp"),
        ttclid: id("ttclid"),
        msclkid: id("msclkid"),
        ttp: id("ttp"),
        li_fat_id: id("liFatId"),
        rdt_cid: id("rdtCid"),
        sc_cid: id("scCid"),
        scid: id("scid"),
        epik: id("epik"),
    }
}

pub(crate) fn read_utm(parent: &mut Reader<'_, '_>, object: &Map<String, Value>) -> Utm {
    let mut reader = parent.nested(object, "utm.".to_owned());
    let utm = Utm {
        source: reader.string("source", MAX_ID_LENGTH),
        medium: reader.string("medium", MAX_ID_LENGTH),
        campaign: reader.string("campaign", MAX_ID_LENGTH),
        term: reader.string("term", MAX_ID_LENGTH),
        content: reader.string("content", MAX_ID_LENGTH),
    };
    reader.reject_unknown(&Utm::FIELDS);
    utm
}

fn read_consent(parent: &mut Reader<'_, '_>, object: &Map<String, Value>) -> Consent {
    let mut reader = parent.nested(object, "consent.".to_owned());
    let statuses = [
        ("granted", ConsentStatus::Granted),
        ("denied", ConsentStatus::Denied),
    ];
    let consent = Consent {
        ad_user_data: reader.one_of("adUserData", &statuses, "granted, denied"),
        ad_personalization: reader.one_of("adPersonalization", &statuses, "granted, denied"),
    };
    reader.reject_unknown(&CONSENT_FIELDS);
    consent
}

/// `amount` and `currency`: both required on a sale; on a lead, each needs the other.
fn read_value(reader: &mut Reader<'_, '_>, kind: Option<EventKind>) -> Option<Money> {
    let amount = reader.amount("amount");
    let amount_given = reader.is_present("amount");
    let currency_given = reader.is_present("currency");
    match kind {
        Some(EventKind::Sale) if !amount_given => reader.fail("amount", Error::Required),
        Some(EventKind::Lead) if currency_given && !amount_given => {
            reader.fail("amount", Error::RequiredWith { other: "currency" })
        }
        _ => {}
    }
    let currency = reader.parsed("currency", Currency::parse);
    match kind {
        Some(EventKind::Sale) if !currency_given => reader.fail("currency", Error::Required),
        Some(EventKind::Lead) if amount_given && !currency_given => {
            reader.fail("currency", Error::RequiredWith { other: "amount" })
        }
        _ => {}
    }
    let money = Money::new(amount?, currency?);
    reader.check("amount", money)
}

fn read_products(reader: &mut Reader<'_, '_>) -> Vec<Product> {
    let items = match reader.value("products") {
        None => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            reader.fail(
                "products",
                Error::Type {
                    expected: "an array",
                },
            );
            return Vec::new();
        }
    };
    let mut products = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let Some(object) = item.as_object() else {
            reader.fail(
                &format!("products[{index}]"),
                Error::Type {
                    expected: "an object",
                },
            );
            continue;
        };
        let mut item = reader.nested(object, format!("products[{index}]."));
        let id = item.string("id", MAX_ID_LENGTH);
        if !item.is_present("id") {
            item.fail("id", Error::Required);
        }
        let name = item.string("name", MAX_ID_LENGTH);
        let quantity = item.quantity("quantity");
        let price = item.amount("price");
        item.reject_unknown(&PRODUCT_FIELDS);
        if let Some(id) = id {
            products.push(Product {
                id,
                name,
                quantity: quantity.unwrap_or(1),
                price,
            });
        }
    }
    products
}

fn read_metadata(reader: &mut Reader<'_, '_>) -> Option<Map<String, Value>> {
    let metadata = reader.object("metadata")?;
    // Compact JSON, the form the size limit is stated in; writing a map of JSON values cannot fail.
    let size = serde_json::to_vec(metadata).map_or(usize::MAX, |bytes| bytes.len());
    if size > MAX_METADATA_BYTES {
        reader.fail(
            "metadata",
            Error::MaxSize {
                max_bytes: MAX_METADATA_BYTES,
            },
        );
        return None;
    }
    Some(metadata.clone())
}

/// Reads the fields of one JSON object, recording what is wrong with them under a path prefix.
///
/// Every accessor treats `null` like an absent field, and returns `None` both when the field is
/// absent and when it is invalid (the error then being recorded).
pub(crate) struct Reader<'a, 'e> {
    object: &'a Map<String, Value>,
    prefix: String,
    errors: &'e mut Vec<FieldError>,
}

impl<'a, 'e> Reader<'a, 'e> {
    pub(crate) fn new(
        object: &'a Map<String, Value>,
        prefix: String,
        errors: &'e mut Vec<FieldError>,
    ) -> Self {
        Self {
            object,
            prefix,
            errors,
        }
    }

    /// A reader for an object inside this one, reporting into the same list.
    pub(crate) fn nested<'b>(
        &'b mut self,
        object: &'b Map<String, Value>,
        prefix: String,
    ) -> Reader<'b, 'b> {
        Reader::new(object, prefix, self.errors)
    }

    pub(crate) fn value(&self, key: &str) -> Option<&'a Value> {
        self.object.get(key).filter(|value| !value.is_null())
    }

    pub(crate) fn is_present(&self, key: &str) -> bool {
        self.value(key).is_some()
    }

    pub(crate) fn fail(&mut self, key: &str, error: Error) {
        let path = format!("{}{key}", self.prefix);
        self.errors.push(FieldError::new(path, &error));
    }

    pub(crate) fn fail_none<T>(&mut self, key: &str, error: Error) -> Option<T> {
        self.fail(key, error);
        None
    }

    /// Records the error of `result`, if any, against `key`.
    pub(crate) fn check<T>(&mut self, key: &str, result: Result<T>) -> Option<T> {
        result.map_err(|error| self.fail(key, error)).ok()
    }

    /// Records [`Error::NotAllowed`] when `key` is present.
    pub(crate) fn refuse(&mut self, key: &str, error: Error) {
        if self.is_present(key) {
            self.fail(key, error);
        }
    }

    /// Any string, checked for its type only.
    pub(crate) fn text(&mut self, key: &str) -> Option<&'a str> {
        match self.value(key)? {
            Value::String(text) => Some(text),
            _ => self.fail_none(
                key,
                Error::Type {
                    expected: "a string",
                },
            ),
        }
    }

    /// A non-blank string of at most `max` characters, kept as given.
    pub(crate) fn string(&mut self, key: &str, max: usize) -> Option<String> {
        let text = self.text(key)?;
        if text.trim().is_empty() {
            return self.fail_none(key, Error::Empty);
        }
        if text.chars().count() > max {
            return self.fail_none(key, Error::TooLong { max });
        }
        Some(text.to_owned())
    }

    /// A string turned into a domain type by its constructor.
    pub(crate) fn parsed<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T>,
    ) -> Option<T> {
        let text = self.text(key)?;
        let parsed = parse(text);
        self.check(key, parsed)
    }

    /// An absolute URL of at most [`MAX_URL_LENGTH`] characters.
    pub(crate) fn url(&mut self, key: &str) -> Option<String> {
        let url = self.string(key, MAX_URL_LENGTH)?;
        if url.validate_url() {
            Some(url)
        } else {
            self.fail_none(key, Error::InvalidUrl)
        }
    }

    /// A string that must be one of `options`, matched exactly.
    pub(crate) fn one_of<T: Copy>(
        &mut self,
        key: &str,
        options: &[(&str, T)],
        allowed: &'static str,
    ) -> Option<T> {
        let text = self.text(key)?;
        match options.iter().find(|(name, _)| *name == text) {
            Some((_, value)) => Some(*value),
            None => self.fail_none(key, Error::InvalidValue { allowed }),
        }
    }

    pub(crate) fn object(&mut self, key: &str) -> Option<&'a Map<String, Value>> {
        match self.value(key)? {
            Value::Object(object) => Some(object),
            _ => self.fail_none(
                key,
                Error::Type {
                    expected: "an object",
                },
            ),
        }
    }

    /// A JSON number under the amount rules, read from its exact text.
    pub(crate) fn amount(&mut self, key: &str) -> Option<Decimal> {
        match self.value(key)? {
            Value::Number(number) => {
                let amount = amount_from_json(number);
                self.check(key, amount)
            }
            _ => self.fail_none(
                key,
                Error::Type {
                    expected: "a number",
                },
            ),
        }
    }

    /// An integer from 1 to `u32::MAX`.
    pub(crate) fn quantity(&mut self, key: &str) -> Option<u32> {
        let not_integer = Error::Type {
            expected: "an integer",
        };
        let Value::Number(number) = self.value(key)? else {
            return self.fail_none(key, not_integer);
        };
        // 2.0 is an integer too (JSON Schema agrees); read it exactly, never through f64.
        let whole = number.as_u64().or_else(|| {
            let exact = rust_decimal::Decimal::from_str_exact(&number.to_string()).ok()?;
            use rust_decimal::prelude::ToPrimitive;
            exact.fract().is_zero().then(|| exact.to_u64()).flatten()
        });
        if let Some(quantity) = whole {
            match u32::try_from(quantity) {
                Ok(0) => self.fail_none(key, Error::Minimum { min: "1" }),
                Ok(quantity) => Some(quantity),
                Err(_) => self.fail_none(key, Error::Maximum { max: "4294967295" }),
            }
        } else if number.is_i64() {
            self.fail_none(key, Error::Minimum { min: "1" })
        } else {
            self.fail_none(key, not_integer)
        }
    }

    /// Records [`Error::UnknownField`] for every key outside `known`.
    pub(crate) fn reject_unknown(&mut self, known: &[&str]) {
        let object = self.object;
        for key in object.keys() {
            if !known.contains(&key.as_str()) {
                self.fail(key, Error::UnknownField);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::str::FromStr;
    use time::macros::datetime;
    use time::Duration;

    const NOW: OffsetDateTime = datetime!(2026-06-01 12:00:00.123456 UTC);

    const LEAD_PAYLOAD: &str = r#"{"event":"lead","timestamp":"2026-04-10T12:34:56.000Z","clickId":"clickid_123","customerExternalId":"user_123","email":"user@gmail.com","name":"user","mode":"deferred"}"#;
    const SALE_PAYLOAD: &str = r#"{"event":"sale","timestamp":"2026-04-10T12:45:10.000Z","clickId":"clk_abc123","customerExternalId":"user_123","email":"alex@example.com","currency":"USD","amount":199.0,"invoiceId":"inv_987"}"#;

    fn parse(body: Value) -> Event {
        match parse_event(&body, NOW) {
            Ok(event) => event,
            Err(errors) => panic!("{body} was rejected: {errors}"),
        }
    }

    /// The `(field, code)` pairs of a rejected body, in order.
    fn errors(body: Value) -> Vec<(String, &'static str)> {
        match parse_event(&body, NOW) {
            Ok(event) => panic!("{body} was accepted as {event:?}"),
            Err(errors) => errors.0.into_iter().map(|e| (e.field, e.code)).collect(),
        }
    }

    fn error(field: &str, code: &'static str) -> (String, &'static str) {
        (field.to_owned(), code)
    }

    /// A valid lead with `extra` merged in (a `null` in `extra` removes the key).
    fn lead(extra: Value) -> Value {
        merge(
            json!({"event": "lead", "customerExternalId": "user_123"}),
            extra,
        )
    }

    /// A valid sale with `extra` merged in (a `null` in `extra` removes the key).
    fn sale(extra: Value) -> Value {
        merge(
            json!({"event": "sale", "customerExternalId": "user_123", "amount": 10, "currency": "USD"}),
            extra,
        )
    }

    fn merge(mut base: Value, extra: Value) -> Value {
        let object = base.as_object_mut().unwrap();
        for (key, value) in extra.as_object().unwrap() {
            if value.is_null() {
                object.remove(key);
            } else {
                object.insert(key.clone(), value.clone());
            }
        }
        base
    }

    fn body(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn documented_lead_payload_parses() {
        let event = parse(body(LEAD_PAYLOAD));
        assert_eq!(event.kind(), EventKind::Lead);
        assert_eq!(event.timestamp, datetime!(2026-04-10 12:34:56 UTC));
        assert_eq!(event.click_id.as_deref(), Some("clickid_123"));
        assert_eq!(event.customer_external_id.as_deref(), Some("user_123"));
        assert_eq!(
            event.email.as_ref().map(Email::as_str),
            Some("user@gmail.com")
        );
        assert_eq!(event.name.as_deref(), Some("user"));
        assert_eq!(event.mode, Mode::Deferred);
        assert_eq!(event.event_name, "lead");
        assert_eq!(event.natural_key(), None);
        assert_eq!(event.value, None);
    }

    #[test]
    fn documented_sale_payload_parses() {
        let event = parse(body(SALE_PAYLOAD));
        assert_eq!(event.kind(), EventKind::Sale);
        assert_eq!(event.timestamp, datetime!(2026-04-10 12:45:10 UTC));
        assert_eq!(event.natural_key(), Some("inv_987"));
        let value = event.value.unwrap();
        assert_eq!(value.amount(), Decimal::from_str("199.0").unwrap());
        assert_eq!(value.currency().code(), "USD");
        assert_eq!(event.mode, Mode::Async);
        assert_eq!(event.event_name, "sale");
    }

    #[test]
    fn documented_payloads_parse_against_the_real_clock() {
        let now = OffsetDateTime::now_utc();
        assert!(parse_event(&body(LEAD_PAYLOAD), now).is_ok());
        assert!(parse_event(&body(SALE_PAYLOAD), now).is_ok());
    }

    #[test]
    fn parsed_sale_is_stored_with_exact_amount_and_millisecond_timestamp() {
        let stored = serde_json::to_string(&parse(body(SALE_PAYLOAD))).unwrap();
        assert!(stored.contains(r#""amount":199.0"#), "{stored}");
        assert!(
            stored.contains(r#""timestamp":"2026-04-10T12:45:10.000Z""#),
            "{stored}"
        );
        let back: Event = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, parse(body(SALE_PAYLOAD)));
    }

    #[test]
    fn body_that_is_not_an_object_is_a_single_type_error() {
        for body in [json!([]), json!("lead"), json!(null), json!(3)] {
            let rejected = parse_event(&body, NOW).unwrap_err();
            assert_eq!(rejected.0.len(), 1);
            assert_eq!(rejected.0[0].field, "");
            assert_eq!(rejected.0[0].code, "type");
            assert_eq!(rejected.0[0].message, "must be an object");
        }
    }

    #[test]
    fn five_bad_fields_are_all_reported_in_check_order() {
        let rejected = errors(json!({
            "event": "sale",
            "timestamp": "yesterday",
            "email": "not-an-email",
            "phone": "555-0123",
            "amount": "199.00",
            "currency": "DOLLARS",
        }));
        assert_eq!(
            rejected,
            [
                error("timestamp", "invalid_timestamp"),
                error("email", "invalid_email"),
                error("phone", "invalid_phone"),
                error("amount", "type"),
                error("currency", "invalid_currency"),
            ]
        );
    }

    #[test]
    fn errors_everywhere_are_reported_together() {
        let rejected = errors(json!({
            "event": "purchase",
            "utm": {"source": 1, "camp": "x"},
            "products": [{"price": -1}],
            "consent": {"adUserData": "yes"},
            "colour": "red",
        }));
        assert_eq!(
            rejected,
            [
                error("event", "invalid_value"),
                error("utm.source", "type"),
                error("utm.camp", "unknown_field"),
                error("consent.adUserData", "invalid_value"),
                error("products[0].id", "required"),
                error("products[0].price", "minimum"),
                error("colour", "unknown_field"),
                error("identifiers", "missing_identifier"),
            ]
        );
    }

    #[test]
    fn missing_event_is_required() {
        assert_eq!(
            errors(json!({"customerExternalId": "u"})),
            [error("event", "required")]
        );
        assert_eq!(
            errors(json!({"event": null, "customerExternalId": "u"})),
            [error("event", "required")]
        );
    }

    #[test]
    fn unknown_event_kind_lists_the_accepted_values() {
        let rejected = parse_event(&lead(json!({"event": "Lead"})), NOW).unwrap_err();
        assert_eq!(rejected.0[0].code, "invalid_value");
        assert_eq!(rejected.0[0].message, "must be one of: lead, sale");
    }

    #[test]
    fn event_of_the_wrong_type_says_must_be_a_string() {
        let rejected = parse_event(&lead(json!({"event": 1})), NOW).unwrap_err();
        assert_eq!(rejected.0[0].field, "event");
        assert_eq!(rejected.0[0].code, "type");
        assert_eq!(rejected.0[0].message, "must be a string");
    }

    #[test]
    fn missing_timestamp_defaults_to_now_in_milliseconds() {
        let event = parse(lead(json!({})));
        assert_eq!(event.timestamp, datetime!(2026-06-01 12:00:00.123 UTC));
    }

    #[test]
    fn timestamp_with_offset_is_stored_in_utc() {
        let event = parse(lead(json!({"timestamp": "2026-04-10T14:34:56.789+02:00"})));
        assert_eq!(event.timestamp, datetime!(2026-04-10 12:34:56.789 UTC));
    }

    #[test]
    fn timestamp_more_than_five_minutes_ahead_is_future() {
        let ahead = crate::format_timestamp(NOW + Duration::minutes(6));
        assert_eq!(
            errors(lead(json!({"timestamp": ahead}))),
            [error("timestamp", "future")]
        );
        let skewed = crate::format_timestamp(NOW + Duration::minutes(4));
        parse(lead(json!({"timestamp": skewed})));
    }

    #[test]
    fn timestamp_before_2000_is_too_old() {
        assert_eq!(
            errors(lead(json!({"timestamp": "1999-12-31T23:59:59Z"}))),
            [error("timestamp", "too_old")]
        );
    }

    #[test]
    fn timestamp_without_offset_is_invalid() {
        assert_eq!(
            errors(lead(json!({"timestamp": "2026-04-10 12:34:56"}))),
            [error("timestamp", "invalid_timestamp")]
        );
        assert_eq!(
            errors(lead(json!({"timestamp": 1_775_824_496}))),
            [error("timestamp", "type")]
        );
    }

    #[test]
    fn invoice_id_on_a_lead_is_not_allowed() {
        let rejected = parse_event(&lead(json!({"invoiceId": "inv_1"})), NOW).unwrap_err();
        assert_eq!(rejected.0[0].field, "invoiceId");
        assert_eq!(rejected.0[0].code, "not_allowed");
        assert_eq!(rejected.0[0].message, "is only allowed on sale events");
    }

    #[test]
    fn lead_id_on_a_sale_is_not_allowed() {
        assert_eq!(
            errors(sale(json!({"leadId": "lead_1"}))),
            [error("leadId", "not_allowed")]
        );
    }

    #[test]
    fn lead_id_is_the_natural_key_of_a_lead() {
        let event = parse(lead(json!({"leadId": "lead_1"})));
        assert_eq!(event.natural_key(), Some("lead_1"));
    }

    #[test]
    fn event_name_is_kept_when_given() {
        let event = parse(sale(json!({"eventName": "Subscription created"})));
        assert_eq!(event.event_name, "Subscription created");
    }

    #[test]
    fn empty_or_blank_string_is_min_length() {
        assert_eq!(
            errors(sale(json!({"invoiceId": "", "name": "  "}))),
            [
                error("invoiceId", "min_length"),
                error("name", "min_length")
            ]
        );
    }

    #[test]
    fn id_of_256_characters_is_max_length() {
        parse(sale(json!({"invoiceId": "i".repeat(255)})));
        let rejected = parse_event(&sale(json!({"invoiceId": "i".repeat(256)})), NOW).unwrap_err();
        assert_eq!(rejected.0[0].code, "max_length");
        assert_eq!(rejected.0[0].message, "must be at most 255 characters");
    }

    #[test]
    fn length_is_counted_in_characters_not_bytes() {
        parse(lead(json!({"name": "é".repeat(255)})));
    }

    #[test]
    fn email_is_normalised() {
        let event = parse(lead(json!({"email": "  Alex@Example.COM "})));
        assert_eq!(event.email.unwrap().as_str(), "alex@example.com");
    }

    #[test]
    fn invalid_email_is_reported() {
        assert_eq!(
            errors(lead(json!({"email": "alex@"}))),
            [error("email", "invalid_email")]
        );
    }

    #[test]
    fn phone_is_normalised_to_e164() {
        let event = parse(lead(json!({"phone": "+1 (415) 555-0123"})));
        assert_eq!(event.phone.unwrap().as_str(), "+14155550123");
    }

    #[test]
    fn phone_without_country_code_is_invalid_phone_with_a_hint() {
        let rejected = parse_event(&lead(json!({"phone": "(415) 555-0123"})), NOW).unwrap_err();
        assert_eq!(rejected.0[0].field, "phone");
        assert_eq!(rejected.0[0].code, "invalid_phone");
        assert!(rejected.0[0].message.contains("+14155550123"));
    }

    #[test]
    fn click_ids_are_kept() {
        let event = parse(json!({"event": "sale", "amount": 1, "currency": "EUR",
            "gclid": "g", "gbraid": "gb", "wbraid": "wb", "fbclid": "f", "fbc": "fb.1.2.f",
            "fbp": "fb.1.2.3", "ttclid": "t", "msclkid": "m", "ttp": "tp", "liFatId": "li",
            "rdtCid": "rd", "scCid": "sc", "scid": "sci", "epik": "ep"}));
        let names: Vec<_> = event.click_ids.iter().map(|(name, _)| name).collect();
        assert_eq!(names, ClickIds::FIELDS);
        assert_eq!(event.click_ids.fbc.as_deref(), Some("fb.1.2.f"));
        assert_eq!(event.click_ids.li_fat_id.as_deref(), Some("li"));
        let stored = serde_json::to_value(&event.click_ids).unwrap();
        assert_eq!(stored["liFatId"], "li");
        assert_eq!(stored["scCid"], "sc");
    }

    #[test]
    fn click_ids_may_be_longer_than_our_own_ids() {
        parse(lead(json!({"fbclid": "f".repeat(1024)})));
        assert_eq!(
            errors(lead(json!({"fbclid": "f".repeat(1025)}))),
            [error("fbclid", "max_length")]
        );
    }

    #[test]
    fn any_single_identifier_is_enough() {
        for key in IDENTIFIER_FIELDS {
            let value = match key {
                "email" => "alex@example.com",
                "phone" => "+14155550123",
                _ => "id_1",
            };
            parse(json!({"event": "lead", key: value}));
        }
    }

    #[test]
    fn event_without_identifier_names_the_accepted_fields() {
        let rejected = parse_event(&json!({"event": "lead", "name": "Alex"}), NOW).unwrap_err();
        assert_eq!(rejected.0.len(), 1);
        assert_eq!(rejected.0[0].field, "identifiers");
        assert_eq!(rejected.0[0].code, "missing_identifier");
        for key in IDENTIFIER_FIELDS {
            assert!(rejected.0[0].message.contains(key), "{key}");
        }
    }

    #[test]
    fn invalid_identifier_is_not_also_reported_missing() {
        assert_eq!(
            errors(json!({"event": "lead", "email": "nope"})),
            [error("email", "invalid_email")]
        );
    }

    #[test]
    fn utm_is_parsed() {
        let event = parse(lead(
            json!({"utm": {"source": "google", "campaign": "spring"}}),
        ));
        let utm = event.utm.unwrap();
        assert_eq!(utm.source.as_deref(), Some("google"));
        assert_eq!(utm.campaign.as_deref(), Some("spring"));
        assert_eq!(utm.medium, None);
    }

    #[test]
    fn unknown_utm_key_is_reported_with_its_path() {
        assert_eq!(
            errors(lead(json!({"utm": {"source": "google", "foo": "bar"}}))),
            [error("utm.foo", "unknown_field")]
        );
    }

    #[test]
    fn utm_that_is_not_an_object_is_a_type_error() {
        assert_eq!(
            errors(lead(json!({"utm": "google"}))),
            [error("utm", "type")]
        );
    }

    #[test]
    fn context_fields_are_parsed() {
        let event = parse(lead(json!({
            "pageUrl": "https://example.com/pricing?plan=pro",
            "referrer": "https://www.google.com/",
            "ip": "203.0.113.7",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64)",
        })));
        assert_eq!(
            event.page_url.as_deref(),
            Some("https://example.com/pricing?plan=pro")
        );
        assert_eq!(event.ip, Some(IpAddr::from([203, 0, 113, 7])));
        let v6 = parse(lead(json!({"ip": "2001:db8::1"})));
        assert!(v6.ip.unwrap().is_ipv6());
    }

    #[test]
    fn relative_page_url_is_invalid_url() {
        assert_eq!(
            errors(lead(json!({"pageUrl": "/pricing"}))),
            [error("pageUrl", "invalid_url")]
        );
    }

    #[test]
    fn url_over_2048_characters_is_max_length() {
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert_eq!(
            errors(lead(
                json!({"referrer": long, "userAgent": "u".repeat(2049)})
            )),
            [
                error("referrer", "max_length"),
                error("userAgent", "max_length")
            ]
        );
    }

    #[test]
    fn malformed_ip_is_invalid_ip() {
        assert_eq!(
            errors(lead(json!({"ip": "203.0.113"}))),
            [error("ip", "invalid_ip")]
        );
    }

    #[test]
    fn consent_is_parsed() {
        let event = parse(lead(
            json!({"consent": {"adUserData": "denied", "adPersonalization": "granted"}}),
        ));
        let consent = event.consent.unwrap();
        assert!(consent.ad_user_data_denied());
        assert_eq!(consent.ad_personalization, Some(ConsentStatus::Granted));
    }

    #[test]
    fn consent_values_other_than_granted_or_denied_are_invalid() {
        assert_eq!(
            errors(lead(
                json!({"consent": {"adUserData": "GRANTED", "adStorage": "granted"}})
            )),
            [
                error("consent.adUserData", "invalid_value"),
                error("consent.adStorage", "unknown_field")
            ]
        );
    }

    #[test]
    fn sale_without_currency_lists_currency_as_required() {
        assert_eq!(
            errors(sale(json!({"currency": null}))),
            [error("currency", "required")]
        );
    }

    #[test]
    fn sale_without_amount_lists_amount_as_required() {
        assert_eq!(
            errors(sale(json!({"amount": null}))),
            [error("amount", "required")]
        );
    }

    #[test]
    fn sale_without_value_lists_both() {
        assert_eq!(
            errors(sale(json!({"amount": null, "currency": null}))),
            [error("amount", "required"), error("currency", "required")]
        );
    }

    #[test]
    fn lead_amount_needs_a_currency() {
        let rejected = parse_event(&lead(json!({"amount": 50})), NOW).unwrap_err();
        assert_eq!(rejected.0[0].field, "currency");
        assert_eq!(rejected.0[0].code, "required");
        assert_eq!(rejected.0[0].message, "is required when amount is given");
    }

    #[test]
    fn lead_currency_needs_an_amount() {
        assert_eq!(
            errors(lead(json!({"currency": "EUR"}))),
            [error("amount", "required")]
        );
    }

    #[test]
    fn lead_may_carry_an_estimated_value() {
        let event = parse(lead(json!({"amount": 50.5, "currency": "eur"})));
        let value = event.value.unwrap();
        assert_eq!(value.amount(), Decimal::from_str("50.5").unwrap());
        assert_eq!(value.currency().code(), "EUR");
    }

    #[test]
    fn amount_as_a_string_is_a_type_error() {
        let rejected = parse_event(&sale(json!({"amount": "199.0"})), NOW).unwrap_err();
        assert_eq!(rejected.0[0].field, "amount");
        assert_eq!(rejected.0[0].code, "type");
        assert_eq!(rejected.0[0].message, "must be a number");
    }

    #[test]
    fn negative_amount_is_below_minimum() {
        let rejected = parse_event(&sale(json!({"amount": -1})), NOW).unwrap_err();
        assert_eq!(rejected.0[0].code, "minimum");
        assert_eq!(rejected.0[0].message, "must be >= 0");
    }

    #[test]
    fn amount_with_five_decimal_places_is_too_precise() {
        assert_eq!(
            errors(sale(json!({"amount": body("1.23456")}))),
            [error("amount", "precision")]
        );
    }

    #[test]
    fn amount_over_ten_to_the_fourteenth_is_over_maximum() {
        assert_eq!(
            errors(sale(json!({"amount": body("100000000000000.01")}))),
            [error("amount", "maximum")]
        );
    }

    #[test]
    fn amount_keeps_its_exact_digits() {
        let event = parse(body(
            r#"{"event":"sale","clickId":"c","amount":0.1,"currency":"USD"}"#,
        ));
        assert_eq!(event.value.unwrap().amount().to_string(), "0.1");
        let event = parse(body(
            r#"{"event":"sale","clickId":"c","amount":1e2,"currency":"USD"}"#,
        ));
        assert_eq!(event.value.unwrap().amount(), Decimal::from(100));
    }

    #[test]
    fn unknown_currency_is_invalid_currency() {
        assert_eq!(
            errors(sale(json!({"currency": "XYZ"}))),
            [error("currency", "invalid_currency")]
        );
    }

    #[test]
    fn products_are_parsed_with_default_quantity() {
        let event = parse(sale(json!({"products": [
            {"id": "sku_1", "name": "Plan", "quantity": 2, "price": 4.5},
            {"id": "sku_2"},
        ]})));
        assert_eq!(
            event.products,
            [
                Product {
                    id: "sku_1".into(),
                    name: Some("Plan".into()),
                    quantity: 2,
                    price: Some(Decimal::from_str("4.5").unwrap()),
                },
                Product {
                    id: "sku_2".into(),
                    name: None,
                    quantity: 1,
                    price: None,
                },
            ]
        );
    }

    #[test]
    fn product_errors_carry_their_index() {
        assert_eq!(
            errors(sale(json!({"products": [
                {"id": "sku_1", "price": 1.00001},
                {"name": "no id", "quantity": 0},
                "sku_3",
                {"id": "sku_4", "quantity": 1.5, "sku": "x"},
                {"id": "sku_5", "quantity": -2, "price": "3"},
            ]}))),
            [
                error("products[0].price", "precision"),
                error("products[1].id", "required"),
                error("products[1].quantity", "minimum"),
                error("products[2]", "type"),
                error("products[3].quantity", "type"),
                error("products[3].sku", "unknown_field"),
                error("products[4].quantity", "minimum"),
                error("products[4].price", "type"),
            ]
        );
    }

    #[test]
    fn products_on_a_lead_are_not_allowed() {
        assert_eq!(
            errors(lead(json!({"products": [{"id": "sku_1"}]}))),
            [error("products", "not_allowed")]
        );
    }

    #[test]
    fn products_that_are_not_an_array_are_a_type_error() {
        assert_eq!(
            errors(sale(json!({"products": {"id": "sku_1"}}))),
            [error("products", "type")]
        );
    }

    #[test]
    fn mode_defaults_to_async() {
        assert_eq!(parse(sale(json!({}))).mode, Mode::Async);
        assert_eq!(parse(sale(json!({"mode": "wait"}))).mode, Mode::Wait);
    }

    #[test]
    fn deferred_mode_on_a_sale_is_not_allowed() {
        assert_eq!(
            errors(sale(json!({"mode": "deferred"}))),
            [error("mode", "not_allowed")]
        );
    }

    #[test]
    fn unknown_mode_lists_the_accepted_values() {
        let rejected = parse_event(&lead(json!({"mode": "later"})), NOW).unwrap_err();
        assert_eq!(rejected.0[0].code, "invalid_value");
        assert_eq!(
            rejected.0[0].message,
            "must be one of: async, wait, deferred"
        );
    }

    #[test]
    fn metadata_keeps_exact_numbers() {
        let event = parse(body(
            r#"{"event":"lead","clickId":"c","metadata":{"score":0.30000000000000000001,"tags":["a"]}}"#,
        ));
        let stored = serde_json::to_string(&event).unwrap();
        assert!(
            stored.contains(r#""score":0.30000000000000000001"#),
            "{stored}"
        );
    }

    #[test]
    fn metadata_over_16_kib_is_max_size() {
        parse(lead(
            json!({"metadata": {"note": "x".repeat(16 * 1024 - 11)}}),
        ));
        assert_eq!(
            errors(lead(
                json!({"metadata": {"note": "x".repeat(16 * 1024 - 10)}})
            )),
            [error("metadata", "max_size")]
        );
    }

    #[test]
    fn metadata_that_is_not_an_object_is_a_type_error() {
        assert_eq!(
            errors(lead(json!({"metadata": ["a"]}))),
            [error("metadata", "type")]
        );
    }

    #[test]
    fn unknown_top_level_field_is_reported_by_name() {
        let rejected = parse_event(&lead(json!({"emial": "a@b.c"})), NOW).unwrap_err();
        assert_eq!(rejected.0[0].field, "emial");
        assert_eq!(rejected.0[0].code, "unknown_field");
    }

    #[test]
    fn null_optional_fields_count_as_absent() {
        let event = parse(body(
            r#"{"event":"lead","clickId":"c","email":null,"utm":null,"products":null,"mode":null,"metadata":null}"#,
        ));
        assert_eq!(event.email, None);
        assert_eq!(event.mode, Mode::Async);
    }

    #[test]
    fn validation_errors_serialise_as_problem_entries() {
        let rejected = parse_event(&sale(json!({"amount": -1})), NOW).unwrap_err();
        assert_eq!(
            serde_json::to_value(&rejected.0).unwrap(),
            json!([{"field": "amount", "code": "minimum", "message": "must be >= 0"}])
        );
        assert_eq!(
            rejected.to_string(),
            "1 invalid field(s): amount must be >= 0 (minimum)"
        );
    }

    #[test]
    fn batch_items_are_handed_back_unparsed() {
        let batch = json!({"events": [{"event": "lead"}, 3]});
        let items = parse_batch(&batch).unwrap();
        assert_eq!(items, [json!({"event": "lead"}), json!(3)]);
    }

    #[test]
    fn batch_accepts_exactly_max_batch_items() {
        let batch = json!({"events": vec![json!({}); MAX_BATCH]});
        assert_eq!(parse_batch(&batch).unwrap().len(), MAX_BATCH);
    }

    fn batch_errors(body: Value) -> Vec<(String, &'static str)> {
        let rejected = parse_batch(&body).unwrap_err();
        rejected.0.into_iter().map(|e| (e.field, e.code)).collect()
    }

    #[test]
    fn batch_envelope_errors() {
        assert_eq!(batch_errors(json!([])), [error("", "type")]);
        assert_eq!(batch_errors(json!({})), [error("events", "required")]);
        assert_eq!(
            batch_errors(json!({"events": {}})),
            [error("events", "type")]
        );
        assert_eq!(
            batch_errors(json!({"events": []})),
            [error("events", "min_items")]
        );
        assert_eq!(
            batch_errors(json!({"events": vec![json!({}); MAX_BATCH + 1]})),
            [error("events", "max_items")]
        );
        assert_eq!(
            batch_errors(json!({"events": [{}], "dryRun": true})),
            [error("dryRun", "unknown_field")]
        );
    }
}

#[cfg(test)]
mod nul_tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn nul_characters_anywhere_are_listed_by_path() {
        let body = json!({"event": "sale", "currency": "USD", "amount": 1, "invoiceId": "a\u{0}b",
                          "customerExternalId": "u", "metadata": {"k": ["ok", "x\u{0}"]}});
        let errors = parse_event(&body, datetime!(2026-04-10 12:00 UTC))
            .err()
            .unwrap()
            .0;
        let fields: Vec<(&str, &str)> = errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert!(
            fields.contains(&("invoiceId", "invalid_characters")),
            "{fields:?}"
        );
        assert!(
            fields.contains(&("metadata.k[1]", "invalid_characters")),
            "{fields:?}"
        );
    }

    #[test]
    fn a_whole_number_written_with_a_point_is_a_quantity() {
        let body = json!({"event": "sale", "currency": "USD", "amount": 1, "customerExternalId": "u",
                          "products": [{"id": "p", "quantity": 2.0}, {"id": "q", "quantity": 2.5}]});
        let errors = parse_event(&body, datetime!(2026-04-10 12:00 UTC))
            .err()
            .unwrap()
            .0;
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["products[1].quantity"]);
    }
}
