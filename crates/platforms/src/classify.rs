//! What a platform's answer means for a conversion: the reference's error tables turned into
//! [`Outcome`]s.
//!
//! - `Retry { after }`: the conversion will be sent again; `after` is the earliest moment the
//!   platform asked for (`Retry-After`, Google's `retryDelay`, six hours for
//!   `TOO_RECENT_EVENT`), `None` to leave it to the backoff.
//! - `Permanent`: sending it again cannot help; the platform's message is kept for the operator.
//! - `AlreadyDelivered`: the platform already holds it (a re-send after a lost answer).
//!
//! An answer that is not the JSON a platform documents (an HTML error page from a proxy, a cut
//! body) is a retried failure with the reason recorded: a forwarder never trusts, and never
//! crashes on, a body it did not expect.

use std::time::Duration;

use serde_json::Value;
use time::format_description::well_known::Rfc2822;
use time::OffsetDateTime;

use crate::model::Outcome;

/// How long Google wants a click (`TOO_RECENT_EVENT`) or a conversion action
/// (`TOO_RECENT_CONVERSION_ACTION`) to age before a conversion can name it.
pub const TOO_RECENT_WAIT: Duration = Duration::from_secs(6 * 3600);

/// How old a conversion must be before Google takes an adjustment of it
/// (`TOO_RECENT_CONVERSION`).
pub const TOO_RECENT_CONVERSION_WAIT: Duration = Duration::from_secs(24 * 3600);

/// The wait after Google's `QuotaError.RESOURCE_EXHAUSTED` when it names no delay: that quota
/// only comes back in a later window, so a short backoff would just burn attempts.
pub const QUOTA_WINDOW_WAIT: Duration = Duration::from_secs(3600);

/// A retried failure.
pub fn retry(error: impl Into<String>, after: Option<Duration>) -> Outcome {
    Outcome::Retry {
        error: error.into(),
        after,
    }
}

/// A permanent failure.
pub fn permanent(error: impl Into<String>) -> Outcome {
    Outcome::Permanent {
        error: error.into(),
    }
}

/// The answer was not the JSON the platform documents: retried, with what was wrong recorded.
pub fn unexpected_body(status: u16, what: &str) -> Outcome {
    retry(format!("HTTP {status}: unexpected response ({what})"), None)
}

/// The worse of two outcomes for one conversion (several errors can name the same row):
/// permanent over retry over skipped over already delivered over succeeded; two retries wait for
/// the later of the two.
pub fn worse(a: Outcome, b: Outcome) -> Outcome {
    fn rank(outcome: &Outcome) -> u8 {
        match outcome {
            Outcome::Succeeded => 0,
            Outcome::AlreadyDelivered => 1,
            Outcome::Skipped { .. } => 2,
            Outcome::Retry { .. } => 3,
            Outcome::Permanent { .. } => 4,
        }
    }
    match (a, b) {
        (
            Outcome::Retry {
                error,
                after: first,
            },
            Outcome::Retry { after: second, .. },
        ) => Outcome::Retry {
            error,
            after: first.max(second),
        },
        (a, b) if rank(&b) > rank(&a) => b,
        (a, _) => a,
    }
}

/// Reads `Retry-After`: delay-seconds or an HTTP date, relative to `now`.
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = OffsetDateTime::parse(value, &Rfc2822).ok()?;
    let wait = at - now;
    Some(if wait.is_negative() {
        Duration::ZERO
    } else {
        wait.unsigned_abs()
    })
}

/// Reads a protobuf JSON `Duration` (`"30s"`, `"1.5s"`), as in Google's `retryDelay`.
pub fn parse_proto_duration(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().strip_suffix('s')?.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(1e9)))
}

/// The longest `retryDelay` anywhere in a Google error (`quotaErrorDetails.retryDelay`,
/// `google.rpc.RetryInfo.retryDelay`).
fn google_retry_delay(value: &Value) -> Option<Duration> {
    match value {
        Value::Object(map) => map
            .iter()
            .filter_map(|(key, value)| match (key.as_str(), value) {
                ("retryDelay", Value::String(text)) => parse_proto_duration(text),
                _ => google_retry_delay(value),
            })
            .max(),
        Value::Array(items) => items.iter().filter_map(google_retry_delay).max(),
        _ => None,
    }
}

/// One `GoogleAdsError` code, as (family, code): `("conversionUploadError", "EXPIRED_EVENT")`.
pub fn google_error_code(error: &Value) -> Option<(String, String)> {
    let (family, code) = error.get("errorCode")?.as_object()?.iter().next()?;
    Some((family.clone(), code.as_str()?.to_owned()))
}

/// The outcome of one row that a Google Ads API partial failure names, by the reference's
/// tables for `ConversionUploadError` and `ConversionAdjustmentUploadError`.
pub fn google_ads_row(family: &str, code: &str, message: &str) -> Outcome {
    let error = if message.is_empty() {
        code.to_owned()
    } else {
        format!("{code}: {message}")
    };
    match (family, code) {
        (_, "TOO_RECENT_EVENT" | "TOO_RECENT_CONVERSION_ACTION") => {
            retry(error, Some(TOO_RECENT_WAIT))
        }
        ("conversionAdjustmentUploadError", "TOO_RECENT_CONVERSION") => {
            retry(error, Some(TOO_RECENT_CONVERSION_WAIT))
        }
        (
            _,
            "ORDER_ID_ALREADY_IN_USE"
            | "CLICK_CONVERSION_ALREADY_EXISTS"
            | "CONVERSION_ALREADY_RETRACTED",
        ) => Outcome::AlreadyDelivered,
        // Identifiers of an organic lead matched no click: expected, not an error to chase.
        (_, "CLICK_NOT_FOUND") => Outcome::Skipped {
            reason: format!("click_not_found: {error}"),
        },
        ("internalError", _) | ("databaseError", "CONCURRENT_MODIFICATION") => retry(error, None),
        ("quotaError", "RESOURCE_EXHAUSTED") => retry(error, Some(QUOTA_WINDOW_WAIT)),
        ("quotaError", _) => retry(error, None),
        _ => permanent(error),
    }
}

/// The outcome of a Google request (Ads API or Data Manager) that failed as a whole: a non-2xx
/// answer carrying `{"error": {code, message, status, details}}`.
///
/// 408, 409 (`ABORTED`), 429 and 5xx are retried, honouring `retryDelay` and `Retry-After`
/// (the later of the two); every other status is permanent (400 `INVALID_ARGUMENT`, 401 after
/// the one token refresh, 403 `PERMISSION_DENIED` / `SERVICE_DISABLED`, 404).
pub fn google_request_failure(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Outcome {
    let Some(error) = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|mut value| value.get_mut("error").map(Value::take))
        .filter(Value::is_object)
    else {
        return unexpected_body(status, "not a Google error object");
    };
    let status_name = error.get("status").and_then(Value::as_str).unwrap_or("");
    let message = error.get("message").and_then(Value::as_str).unwrap_or("");
    let codes: Vec<(String, String)> = error
        .get("details")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|detail| detail.get("errors").and_then(Value::as_array))
        .flatten()
        .filter_map(google_error_code)
        .collect();
    let mut text = format!("HTTP {status}");
    if !status_name.is_empty() {
        text.push(' ');
        text.push_str(status_name);
    }
    for (family, code) in &codes {
        text.push_str(&format!(" {family}.{code}"));
    }
    if !message.is_empty() {
        text.push_str(": ");
        text.push_str(message);
    }
    let hint = google_retry_delay(&error).max(retry_after);
    match status {
        408 | 409 | 500..=599 => retry(text, hint),
        429 => {
            let daily = codes
                .iter()
                .any(|(family, code)| family == "quotaError" && code == "RESOURCE_EXHAUSTED");
            let hint = match hint {
                None if daily => Some(QUOTA_WINDOW_WAIT),
                hint => hint,
            };
            retry(text, hint)
        }
        _ => permanent(text),
    }
}

/// The events a Data Manager 400 names, by index into the request's `events`, each with its
/// violation (`INVALID_HEX_ENCODING: The HEX encoded value is malformed.
/// (events.events[1].user_data.user_identifiers[2])`). Empty when the answer names no event
/// (the whole request is at fault) or is not a Google error.
pub fn data_manager_violations(body: &[u8]) -> Vec<(usize, String)> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let mut named: Vec<(usize, String)> = Vec::new();
    let details = value
        .pointer("/error/details")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    for violation in details
        .filter_map(|detail| detail.get("fieldViolations").and_then(Value::as_array))
        .flatten()
    {
        let field = violation.get("field").and_then(Value::as_str).unwrap_or("");
        let Some(index) = event_index(field) else {
            continue;
        };
        let reason = violation
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("");
        let description = violation
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("");
        let text = format!("{reason}: {description} ({field})");
        match named.iter_mut().find(|(seen, _)| *seen == index) {
            Some((_, existing)) => {
                existing.push_str("; ");
                existing.push_str(&text);
            }
            None => named.push((index, text)),
        }
    }
    named
}

/// The event index in a field path such as `events.events[1].user_data` or `events[12]`.
fn event_index(field: &str) -> Option<usize> {
    let start = field.find("events[")? + "events[".len();
    let rest = &field[start..];
    let end = rest.find(']')?;
    rest[..end].parse().ok()
}

/// What a Meta error means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaFailure {
    /// The outcome for every event of the request.
    pub outcome: Outcome,
    /// True when the error is about the payload (code 100, "Invalid parameter"), so that one
    /// bad event may be behind it: a batch is then split to find it rather than failed whole.
    pub payload_error: bool,
}

/// Graph API error codes that mean "slow down": 4 (app), 17 (user), 32 (page), 613 (ad
/// account), 80004 (ads management).
const META_THROTTLE_CODES: [i64; 5] = [4, 17, 32, 613, 80004];
/// Subcodes of throttling and temporary trouble.
const META_THROTTLE_SUBCODES: [i64; 4] = [2446079, 1504022, 1504039, 1487742];

/// The outcome of a Meta request that failed: a non-2xx answer with a Graph error object.
///
/// Codes 1 and 2 (temporary problem), the throttling codes and subcodes, `is_transient`, 429
/// and 5xx are retried; code 100 (invalid parameter), 190/102 (token), 10 and 200–299
/// (permission) and every other client error are permanent.
pub fn meta_failure(status: u16, retry_after: Option<Duration>, body: &[u8]) -> MetaFailure {
    let Some(error) = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|mut value| value.get_mut("error").map(Value::take))
        .filter(Value::is_object)
    else {
        return MetaFailure {
            outcome: unexpected_body(status, "not a Graph API error object"),
            payload_error: false,
        };
    };
    let code = error.get("code").and_then(Value::as_i64);
    let subcode = error.get("error_subcode").and_then(Value::as_i64);
    let transient = error
        .get("is_transient")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let text_of = |key: &str| error.get(key).and_then(Value::as_str).unwrap_or("");
    let mut text = format!("HTTP {status}");
    if let Some(code) = code {
        text.push_str(&format!(" code {code}"));
    }
    if let Some(subcode) = subcode {
        text.push_str(&format!(" subcode {subcode}"));
    }
    for key in ["message", "error_user_title", "error_user_msg"] {
        let part = text_of(key);
        if !part.is_empty() {
            text.push_str(": ");
            text.push_str(part);
        }
    }
    let trace = text_of("fbtrace_id");
    if !trace.is_empty() {
        text.push_str(&format!(" (fbtrace_id {trace})"));
    }
    let throttled = code.is_some_and(|code| META_THROTTLE_CODES.contains(&code))
        || subcode.is_some_and(|subcode| META_THROTTLE_SUBCODES.contains(&subcode));
    let temporary = matches!(code, Some(1 | 2)) || transient;
    let outcome = if throttled || temporary || status == 429 || status >= 500 {
        retry(text, retry_after)
    } else {
        permanent(text)
    };
    MetaFailure {
        payload_error: matches!(outcome, Outcome::Permanent { .. }) && code == Some(100),
        outcome,
    }
}

/// The outcome of a webhook delivery: any 2xx is success; anything else is retried (honouring
/// `Retry-After`), as a receiver that is down, misconfigured or rotating its secret should get
/// the event once it is fixed.
pub fn webhook_status(status: u16, retry_after: Option<Duration>) -> Outcome {
    if (200..300).contains(&status) {
        Outcome::Succeeded
    } else {
        retry(
            format!("HTTP {status} from the webhook receiver"),
            retry_after,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn bytes(value: Value) -> Vec<u8> {
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn too_recent_event_waits_six_hours() {
        let outcome = google_ads_row("conversionUploadError", "TOO_RECENT_EVENT", "too soon");
        assert_eq!(
            outcome,
            Outcome::Retry {
                error: "TOO_RECENT_EVENT: too soon".into(),
                after: Some(TOO_RECENT_WAIT)
            }
        );
        assert!(matches!(
            google_ads_row("conversionUploadError", "TOO_RECENT_CONVERSION_ACTION", ""),
            Outcome::Retry { after: Some(wait), .. } if wait == TOO_RECENT_WAIT
        ));
        assert!(matches!(
            google_ads_row("conversionAdjustmentUploadError", "TOO_RECENT_CONVERSION", ""),
            Outcome::Retry { after: Some(wait), .. } if wait == TOO_RECENT_CONVERSION_WAIT
        ));
    }

    #[test]
    fn an_order_id_already_in_use_counts_as_delivered() {
        for code in [
            "ORDER_ID_ALREADY_IN_USE",
            "CLICK_CONVERSION_ALREADY_EXISTS",
            "CONVERSION_ALREADY_RETRACTED",
        ] {
            assert_eq!(
                google_ads_row("conversionUploadError", code, "x"),
                Outcome::AlreadyDelivered
            );
        }
    }

    #[test]
    fn other_row_errors_are_permanent_with_the_message() {
        for code in [
            "EXPIRED_EVENT",
            "CONVERSION_PRECEDES_EVENT",
            "UNPARSEABLE_GCLID",
            "DUPLICATE_ORDER_ID",
            "INVALID_CUSTOMER_FOR_CLICK",
            "NO_CONVERSION_ACTION_FOUND",
            "CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS",
            "CONVERSION_NOT_FOUND",
        ] {
            assert_eq!(
                google_ads_row("conversionUploadError", code, "msg"),
                permanent(format!("{code}: msg"))
            );
        }
        assert!(matches!(
            google_ads_row("internalError", "TRANSIENT_ERROR", ""),
            Outcome::Retry { after: None, .. }
        ));
        assert!(matches!(
            google_ads_row("conversionUploadError", "CLICK_NOT_FOUND", ""),
            Outcome::Skipped { .. }
        ));
    }

    #[test]
    fn google_429_honours_retry_delay_and_retry_after() {
        let body = bytes(
            json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
            "message": "Resource has been exhausted (e.g. check quota).",
            "details": [{"@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
              "errors": [{"errorCode": {"quotaError": "RESOURCE_TEMPORARILY_EXHAUSTED"}, "message": "m",
                "details": {"quotaErrorDetails": {"rateScope": "DEVELOPER", "retryDelay": "30s"}}}]}]}}),
        );
        let Outcome::Retry { error, after } = google_request_failure(429, None, &body) else {
            panic!("not a retry");
        };
        assert_eq!(after, Some(Duration::from_secs(30)));
        assert!(
            error.contains("quotaError.RESOURCE_TEMPORARILY_EXHAUSTED"),
            "{error}"
        );
        assert!(matches!(
            google_request_failure(429, Some(Duration::from_secs(90)), &body),
            Outcome::Retry { after: Some(wait), .. } if wait == Duration::from_secs(90)
        ));
        let daily = bytes(json!({"error": {"code": 429, "details": [{"errors": [
            {"errorCode": {"quotaError": "RESOURCE_EXHAUSTED"}}]}]}}));
        assert!(matches!(
            google_request_failure(429, None, &daily),
            Outcome::Retry { after: Some(wait), .. } if wait == QUOTA_WINDOW_WAIT
        ));
        let rpc = bytes(json!({"error": {"code": 429, "details": [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}]}}));
        assert!(matches!(
            google_request_failure(429, None, &rpc),
            Outcome::Retry { after: Some(wait), .. } if wait == Duration::from_millis(1500)
        ));
    }

    #[test]
    fn google_5xx_retries_and_4xx_is_permanent() {
        let body =
            bytes(json!({"error": {"code": 503, "status": "UNAVAILABLE", "message": "down"}}));
        assert!(matches!(
            google_request_failure(503, None, &body),
            Outcome::Retry { .. }
        ));
        let body = bytes(
            json!({"error": {"code": 403, "status": "PERMISSION_DENIED", "message": "no access"}}),
        );
        assert_eq!(
            google_request_failure(403, None, &body),
            permanent("HTTP 403 PERMISSION_DENIED: no access")
        );
    }

    #[test]
    fn a_body_that_is_not_the_expected_json_is_retried() {
        for body in [
            &b"<html>bad gateway</html>"[..],
            b"",
            b"{\"error\": 3}",
            b"[1,2",
        ] {
            assert!(matches!(
                google_request_failure(400, None, body),
                Outcome::Retry { .. }
            ));
            assert!(matches!(
                meta_failure(400, None, body).outcome,
                Outcome::Retry { .. }
            ));
        }
    }

    #[test]
    fn data_manager_violations_name_events_by_index() {
        let body = bytes(
            json!({"error": {"code": 400, "status": "INVALID_ARGUMENT", "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "INVALID_ARGUMENT"},
            {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [
                {"field": "events.events[1].user_data.user_identifiers[2]", "reason": "INVALID_HEX_ENCODING",
                 "description": "The HEX encoded value is malformed."},
                {"field": "events[12].event_timestamp", "reason": "EVENT_TIME_INVALID", "description": "bad"},
                {"field": "events.events[1].transaction_id", "reason": "REQUIRED_FIELD_MISSING", "description": "x"},
                {"field": "destinations[0].product_destination_id", "reason": "INVALID_CONVERSION_ACTION_ID", "description": "y"}
            ]}]}}),
        );
        let named = data_manager_violations(&body);
        assert_eq!(named.len(), 2);
        assert_eq!(named[0].0, 1);
        assert!(named[0]
            .1
            .starts_with("INVALID_HEX_ENCODING: The HEX encoded value is malformed."));
        assert!(named[0].1.contains("REQUIRED_FIELD_MISSING"));
        assert_eq!(named[1].0, 12);
        assert!(data_manager_violations(b"not json").is_empty());
    }

    #[test]
    fn meta_throttling_and_transient_codes_retry_the_rest_is_permanent() {
        let error = |code: i64, subcode: Option<i64>| {
            bytes(
                json!({"error": {"message": "m", "type": "OAuthException", "code": code,
                "error_subcode": subcode, "fbtrace_id": "AbC"}}),
            )
        };
        for code in [1, 2, 4, 17, 32, 613] {
            assert!(matches!(
                meta_failure(400, None, &error(code, None)).outcome,
                Outcome::Retry { .. }
            ));
        }
        assert!(matches!(
            meta_failure(400, None, &error(100, Some(2446079))).outcome,
            Outcome::Retry { .. }
        ));
        let invalid = meta_failure(400, None, &error(100, None));
        assert!(invalid.payload_error);
        let Outcome::Permanent { error: text } = invalid.outcome else {
            panic!("not permanent");
        };
        assert!(
            text.contains("code 100") && text.contains("fbtrace_id AbC"),
            "{text}"
        );
        for code in [190, 102, 10, 200, 294] {
            let failure = meta_failure(400, None, &error(code, None));
            assert!(matches!(failure.outcome, Outcome::Permanent { .. }));
            assert!(!failure.payload_error);
        }
        let transient = bytes(json!({"error": {"code": 100, "is_transient": true}}));
        assert!(matches!(
            meta_failure(400, None, &transient).outcome,
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            meta_failure(503, Some(Duration::from_secs(7)), &error(190, None)).outcome,
            Outcome::Retry { after: Some(wait), .. } if wait == Duration::from_secs(7)
        ));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = datetime!(1994-11-06 08:49:00 UTC);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(37))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:48:37 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_proto_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_proto_duration("-1s"), None);
        assert_eq!(parse_proto_duration("30"), None);
    }

    #[test]
    fn worse_prefers_permanent_and_the_later_retry() {
        let short = retry("a", Some(Duration::from_secs(1)));
        let long = retry("b", Some(Duration::from_secs(9)));
        assert!(matches!(
            worse(short.clone(), long),
            Outcome::Retry { after: Some(wait), .. } if wait == Duration::from_secs(9)
        ));
        assert_eq!(worse(short.clone(), permanent("p")), permanent("p"));
        assert_eq!(worse(Outcome::AlreadyDelivered, short.clone()), short);
        assert_eq!(
            worse(Outcome::Succeeded, Outcome::AlreadyDelivered),
            Outcome::AlreadyDelivered
        );
    }

    #[test]
    fn webhooks_succeed_on_any_2xx() {
        assert_eq!(webhook_status(204, None), Outcome::Succeeded);
        assert!(matches!(webhook_status(410, None), Outcome::Retry { .. }));
    }
}
