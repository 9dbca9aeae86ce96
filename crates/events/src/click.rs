//! Ad clicks and short-link clicks registered with `POST /v1/clicks`, so that a later event can
//! name one by its `clickId`.
//!
//! [`parse_click`] reads a request body under the same rules and error codes as
//! [`crate::parse_event`]: every offending field is listed, unknown fields are rejected, and
//! strings keep the limits of the event fields of the same name. A click must carry something to
//! attribute by: a `clickId`, an ad-platform click id or a UTM value; a body with none of them is
//! rejected on the field `identifiers` with the code `missing_identifier`. [`parse_click_batch`]
//! checks the envelope of `POST /v1/clicks/batch`.
//!
//! A [`Click`]'s serde form is its wire form: camelCase, click ids at the top level, times as
//! [`crate::format_timestamp`] writes them.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::error::{Error, FieldError, ValidationErrors};
use crate::event::{ClickIds, Utm};
use crate::parse::{
    not_an_object, read_click_ids, read_utm, Reader, MAX_ID_LENGTH, MAX_URL_LENGTH,
};
use crate::timestamp::{check_event_time, parse_timestamp, rfc3339_millis, to_utc_millis};

/// The fields of a click body, in the order they are checked.
pub const CLICK_FIELDS: [&str; 21] = [
    "clickId",
    "timestamp",
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
    "url",
    "referrer",
    "ip",
    "userAgent",
];

/// The message of the `missing_identifier` error of a click.
const MISSING_CLICK_IDENTIFIER: &str = "at least one is required: clickId, gclid, gbraid, wbraid, \
     fbclid, fbc, fbp, ttclid, msclkid, ttp, liFatId, rdtCid, scCid, scid, epik or a utm value";

/// A validated click, as registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Click {
    /// The id later events name the click by; generated (`clk_…`) at registration when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub click_id: Option<String>,
    /// When the click happened, in UTC to the millisecond; the time of receipt when not given.
    #[serde(with = "rfc3339_millis")]
    pub timestamp: OffsetDateTime,
    /// The ad platforms' click ids (top-level fields on the wire).
    #[serde(flatten)]
    pub click_ids: ClickIds,
    /// UTM parameters of the landing page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm: Option<Utm>,
    /// The landing page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Referrer of the landing page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    /// IP address of the person who clicked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// User agent of that person's browser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// Parses and validates one click body.
///
/// `now` is the time of receipt: the default `timestamp`, and the reference for the check that a
/// click is not in the future.
///
/// # Errors
/// Every offending field, in the order of [`CLICK_FIELDS`], then unknown fields, then
/// `identifiers` (`missing_identifier`) when the click carries no `clickId`, no ad-platform click
/// id and no UTM value.
pub fn parse_click(value: &Value, now: OffsetDateTime) -> Result<Click, ValidationErrors> {
    crate::parse::with_nul_check(value, parse_click_fields(value, now))
}

fn parse_click_fields(value: &Value, now: OffsetDateTime) -> Result<Click, ValidationErrors> {
    let Some(body) = value.as_object() else {
        return Err(not_an_object());
    };
    let mut errors = Vec::new();
    let mut reader = Reader::new(body, String::new(), &mut errors);

    let click_id = reader.string("clickId", MAX_ID_LENGTH);
    let timestamp = reader
        .text("timestamp")
        .and_then(|raw| reader.check("timestamp", parse_timestamp(raw)))
        .and_then(|at| reader.check("timestamp", check_event_time(at, now)))
        .unwrap_or_else(|| to_utc_millis(now));
    let click_ids = read_click_ids(&mut reader);
    let utm = reader.object("utm").map(|utm| read_utm(&mut reader, utm));
    let url = reader.url("url");
    let referrer = reader.url("referrer");
    let ip = reader.parsed("ip", |raw| {
        raw.parse::<IpAddr>().map_err(|_| Error::InvalidIp)
    });
    let user_agent = reader.string("userAgent", MAX_URL_LENGTH);
    reader.reject_unknown(&CLICK_FIELDS);
    if !names_an_identifier(&reader) {
        errors.push(FieldError {
            field: "identifiers".to_owned(),
            code: Error::MissingIdentifier.code(),
            message: MISSING_CLICK_IDENTIFIER.to_owned(),
        });
    }

    if !errors.is_empty() {
        return Err(ValidationErrors(errors));
    }
    Ok(Click {
        click_id,
        timestamp,
        click_ids,
        utm,
        url,
        referrer,
        ip,
        user_agent,
    })
}

/// True when the body names a click id or a UTM value. A field that is present but invalid
/// counts, so that it is reported once, for what is wrong with it.
fn names_an_identifier(reader: &Reader<'_, '_>) -> bool {
    let click_id = std::iter::once("clickId")
        .chain(ClickIds::FIELDS)
        .any(|key| reader.is_present(key));
    let utm = match reader.value("utm") {
        Some(Value::Object(utm)) => utm.values().any(|value| !value.is_null()),
        Some(_) => true,
        None => false,
    };
    click_id || utm
}

/// Checks the envelope of `POST /v1/clicks/batch` (`{"clicks": [...]}`) and hands back its items,
/// each still to be parsed on its own with [`parse_click`] (a bad item does not reject the batch).
///
/// # Errors
/// The body is not an object (field `""`, code `type`); `clicks` is missing (`required`), not an
/// array (`type`), empty (`min_items`) or longer than [`crate::MAX_BATCH`] (`max_items`); another key is
/// present (`unknown_field`).
pub fn parse_click_batch(value: &Value) -> Result<&[Value], ValidationErrors> {
    crate::parse::parse_envelope(value, "clicks")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_BATCH;
    use proptest::prelude::*;
    use serde_json::json;
    use time::macros::datetime;
    use time::Duration;

    const NOW: OffsetDateTime = datetime!(2026-06-01 12:00:00.123456 UTC);

    fn parse(body: Value) -> Click {
        match parse_click(&body, NOW) {
            Ok(click) => click,
            Err(errors) => panic!("{body} was rejected: {errors}"),
        }
    }

    fn errors(body: Value) -> Vec<(String, &'static str)> {
        match parse_click(&body, NOW) {
            Ok(click) => panic!("{body} was accepted as {click:?}"),
            Err(errors) => errors.0.into_iter().map(|e| (e.field, e.code)).collect(),
        }
    }

    fn error(field: &str, code: &'static str) -> (String, &'static str) {
        (field.to_owned(), code)
    }

    #[test]
    fn full_click_parses() {
        let click = parse(json!({
            "clickId": "clickid_123",
            "timestamp": "2026-04-10T14:34:56.5+02:00",
            "gclid": "EAIaIQobChMI",
            "fbclid": "IwAR2",
            "fbc": "fb.1.1554763741205.IwAR2",
            "fbp": "fb.1.1554763741205.123",
            "ttclid": "t",
            "msclkid": "m",
            "ttp": "tp", "liFatId": "li", "rdtCid": "rd", "scCid": "sc", "scid": "sci", "epik": "ep",
            "gbraid": "gb",
            "wbraid": "wb",
            "utm": {"source": "google", "medium": "cpc", "campaign": "spring"},
            "url": "https://example.com/pricing?gclid=EAIaIQobChMI",
            "referrer": "https://www.google.com/",
            "ip": "203.0.113.7",
            "userAgent": "Mozilla/5.0",
        }));
        assert_eq!(click.click_id.as_deref(), Some("clickid_123"));
        assert_eq!(click.timestamp, datetime!(2026-04-10 12:34:56.5 UTC));
        let names: Vec<_> = click.click_ids.iter().map(|(name, _)| name).collect();
        assert_eq!(names, ClickIds::FIELDS);
        assert_eq!(
            click.utm.as_ref().and_then(|utm| utm.medium.as_deref()),
            Some("cpc")
        );
        assert_eq!(click.ip, Some(IpAddr::from([203, 0, 113, 7])));
        assert_eq!(click.user_agent.as_deref(), Some("Mozilla/5.0"));
    }

    #[test]
    fn timestamp_defaults_to_the_time_of_receipt_in_milliseconds() {
        let click = parse(json!({"clickId": "c1"}));
        assert_eq!(click.timestamp, datetime!(2026-06-01 12:00:00.123 UTC));
    }

    #[test]
    fn any_click_id_or_a_utm_value_is_enough() {
        parse(json!({"clickId": "c1"}));
        for key in ClickIds::FIELDS {
            parse(json!({key: "x"}));
        }
        parse(json!({"utm": {"source": "newsletter"}}));
    }

    #[test]
    fn a_click_with_no_click_id_and_no_utm_is_missing_an_identifier() {
        let rejected = parse_click(&json!({"url": "https://example.com/"}), NOW).unwrap_err();
        assert_eq!(rejected.0.len(), 1);
        assert_eq!(rejected.0[0].field, "identifiers");
        assert_eq!(rejected.0[0].code, "missing_identifier");
        for key in std::iter::once("clickId").chain(ClickIds::FIELDS) {
            assert!(rejected.0[0].message.contains(key), "{key}");
        }
        assert!(rejected.0[0].message.contains("utm"));
        assert_eq!(
            errors(json!({})),
            [error("identifiers", "missing_identifier")]
        );
    }

    #[test]
    fn an_empty_utm_is_no_utm_at_all() {
        assert_eq!(
            errors(json!({"utm": {}})),
            [error("identifiers", "missing_identifier")]
        );
        assert_eq!(
            errors(json!({"utm": {"source": null}})),
            [error("identifiers", "missing_identifier")]
        );
    }

    #[test]
    fn an_invalid_identifier_is_not_also_reported_missing() {
        assert_eq!(
            errors(json!({"clickId": ""})),
            [error("clickId", "min_length")]
        );
        assert_eq!(errors(json!({"utm": "google"})), [error("utm", "type")]);
    }

    #[test]
    fn every_bad_field_is_listed_in_order() {
        assert_eq!(
            errors(json!({
                "clickId": "c".repeat(256),
                "timestamp": "yesterday",
                "gclid": 7,
                "utm": {"source": "", "channel": "x"},
                "url": "/pricing",
                "referrer": "https://example.com/".to_owned() + &"a".repeat(2048),
                "ip": "203.0.113",
                "userAgent": "u".repeat(2049),
                "pageUrl": "https://example.com/",
            })),
            [
                error("clickId", "max_length"),
                error("timestamp", "invalid_timestamp"),
                error("gclid", "type"),
                error("utm.source", "min_length"),
                error("utm.channel", "unknown_field"),
                error("url", "invalid_url"),
                error("referrer", "max_length"),
                error("ip", "invalid_ip"),
                error("userAgent", "max_length"),
                error("pageUrl", "unknown_field"),
            ]
        );
    }

    #[test]
    fn timestamps_out_of_range_are_rejected_like_an_events() {
        let future = crate::format_timestamp(NOW + Duration::minutes(6));
        assert_eq!(
            errors(json!({"clickId": "c1", "timestamp": future})),
            [error("timestamp", "future")]
        );
        assert_eq!(
            errors(json!({"clickId": "c1", "timestamp": "1999-12-31T23:59:59Z"})),
            [error("timestamp", "too_old")]
        );
    }

    #[test]
    fn a_body_that_is_not_an_object_is_a_type_error() {
        assert_eq!(errors(json!(["clickId"])), [error("", "type")]);
    }

    #[test]
    fn null_fields_count_as_absent() {
        let click = parse(json!({"clickId": "c1", "gclid": null, "utm": null, "ip": null}));
        assert_eq!(click.click_ids, ClickIds::default());
        assert_eq!(click.utm, None);
    }

    #[test]
    fn wire_form_is_camel_case_with_click_ids_at_the_top_level() {
        let click = parse(json!({
            "clickId": "clickid_123",
            "timestamp": "2026-04-10T12:00:00Z",
            "gclid": "g",
            "userAgent": "Mozilla/5.0",
            "ip": "2001:db8::1",
        }));
        let wire = serde_json::to_value(&click).unwrap();
        assert_eq!(
            wire,
            json!({
                "clickId": "clickid_123",
                "timestamp": "2026-04-10T12:00:00.000Z",
                "gclid": "g",
                "ip": "2001:db8::1",
                "userAgent": "Mozilla/5.0",
            })
        );
        let back: Click = serde_json::from_value(wire).unwrap();
        assert_eq!(back, click);
    }

    #[test]
    fn batch_items_are_handed_back_unparsed() {
        let batch = json!({"clicks": [{"clickId": "a"}, 3]});
        assert_eq!(
            parse_click_batch(&batch).unwrap(),
            [json!({"clickId": "a"}), json!(3)]
        );
        let full = json!({"clicks": vec![json!({}); MAX_BATCH]});
        assert_eq!(parse_click_batch(&full).unwrap().len(), MAX_BATCH);
    }

    #[test]
    fn batch_envelope_errors() {
        let codes = |body: Value| -> Vec<(String, &'static str)> {
            let rejected = parse_click_batch(&body).unwrap_err();
            rejected.0.into_iter().map(|e| (e.field, e.code)).collect()
        };
        assert_eq!(codes(json!([])), [error("", "type")]);
        assert_eq!(codes(json!({})), [error("clicks", "required")]);
        assert_eq!(codes(json!({"clicks": {}})), [error("clicks", "type")]);
        assert_eq!(codes(json!({"clicks": []})), [error("clicks", "min_items")]);
        assert_eq!(
            codes(json!({"clicks": vec![json!({}); MAX_BATCH + 1]})),
            [error("clicks", "max_items")]
        );
        assert_eq!(
            codes(json!({"events": [{}]})),
            [
                error("clicks", "required"),
                error("events", "unknown_field")
            ]
        );
    }

    proptest! {
        #[test]
        fn any_click_id_string_within_limits_round_trips(id in "[a-zA-Z0-9_.-]{1,255}") {
            let click = parse_click(&json!({"clickId": id.clone()}), NOW).unwrap();
            prop_assert_eq!(click.click_id.as_deref(), Some(id.as_str()));
            let back: Click = serde_json::from_value(serde_json::to_value(&click).unwrap()).unwrap();
            prop_assert_eq!(back, click);
        }
    }
}
