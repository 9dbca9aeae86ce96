//! The fake platforms are as strict as the real ones: they refuse the mistakes the reference
//! says Google's and Meta's parsers refuse, so a passing platform test means a well-formed
//! request, not a lenient fake.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{json, Value};
use support::*;
use wiremock::http::{HeaderMap, HeaderName, HeaderValue, Method};
use wiremock::Request;

/// A change that makes a valid body invalid.
type Mutation = Box<dyn Fn(&mut Value)>;

fn request(method: Method, url: &str, headers: &[(&str, &str)], body: &Value) -> Request {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    Request {
        url: url.parse().unwrap(),
        method,
        headers: map,
        body: serde_json::to_vec(body).unwrap(),
    }
}

fn ads_body() -> Value {
    json!({"conversions": [{
        "gclid": "Cj0KCQiA", "conversionAction": "customers/1234567890/conversionActions/987654321",
        "conversionDateTime": "2026-11-20 12:32:45+01:00", "conversionValue": 149.0, "currencyCode": "EUR",
        "orderId": "ORD-10045", "consent": {"adUserData": "GRANTED"}}],
        "partialFailure": true, "validateOnly": false})
}

fn ads(body: &Value) -> Vec<String> {
    check_ads_upload(&request(
        Method::POST,
        "http://fake/v26/customers/1234567890:uploadClickConversions",
        &[
            ("authorization", "Bearer t"),
            ("content-type", "application/json"),
        ],
        body,
    ))
}

#[test]
fn the_reference_example_passes() {
    assert_eq!(ads(&ads_body()), Vec::<String>::new());
}

#[test]
fn the_ads_fake_refuses_what_google_refuses() {
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "debugEnabled",
            Box::new(|b| b["debugEnabled"] = json!(false)),
        ),
        (
            "partialFailure",
            Box::new(|b| b["partialFailure"] = json!(false)),
        ),
        (
            "snake_case",
            Box::new(|b| {
                let row = b["conversions"][0].as_object_mut().unwrap();
                let action = row.remove("conversionAction").unwrap();
                row.insert("conversion_action".into(), action);
            }),
        ),
        (
            "T in the date",
            Box::new(|b| {
                b["conversions"][0]["conversionDateTime"] = json!("2026-11-20T12:32:45+01:00")
            }),
        ),
        (
            "no offset",
            Box::new(|b| b["conversions"][0]["conversionDateTime"] = json!("2026-11-20 12:32:45")),
        ),
        (
            "gclid and wbraid",
            Box::new(|b| b["conversions"][0]["wbraid"] = json!("x")),
        ),
        (
            "two identifiers in one entry",
            Box::new(|b| {
                let row = b["conversions"][0].as_object_mut().unwrap();
                row.remove("gclid");
                row.insert(
                    "userIdentifiers".into(),
                    json!([{"hashedEmail": "a".repeat(64), "hashedPhoneNumber": "b".repeat(64)}]),
                );
            }),
        ),
        (
            "unhashed email",
            Box::new(|b| {
                let row = b["conversions"][0].as_object_mut().unwrap();
                row.remove("gclid");
                row.insert(
                    "userIdentifiers".into(),
                    json!([{"hashedEmail": "john@example.com"}]),
                );
            }),
        ),
        (
            "lower-case currency",
            Box::new(|b| b["conversions"][0]["currencyCode"] = json!("eur")),
        ),
        (
            "value as a string",
            Box::new(|b| b["conversions"][0]["conversionValue"] = json!("149.0")),
        ),
        (
            "enum typo",
            Box::new(|b| b["conversions"][0]["consent"] = json!({"adUserData": "YES"})),
        ),
        (
            "resource name",
            Box::new(|b| b["conversions"][0]["conversionAction"] = json!("987654321")),
        ),
        (
            "null",
            Box::new(|b| b["conversions"][0]["orderId"] = Value::Null),
        ),
    ];
    for (name, mutate) in cases {
        let mut body = ads_body();
        mutate(&mut body);
        assert!(!ads(&body).is_empty(), "{name} was accepted");
    }
    let wrong_path = check_ads_upload(&request(
        Method::POST,
        "http://fake/v26/customers/123-456-7890:uploadClickConversions",
        &[
            ("authorization", "Bearer t"),
            ("content-type", "application/json"),
        ],
        &ads_body(),
    ));
    assert!(!wrong_path.is_empty());
    let no_auth = check_ads_upload(&request(
        Method::POST,
        "http://fake/v26/customers/1234567890:uploadClickConversions",
        &[("content-type", "application/json")],
        &ads_body(),
    ));
    assert!(!no_auth.is_empty());
}

fn dm_body() -> Value {
    json!({"destinations": [{"reference": "sale",
       "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": "1234567890"},
       "loginAccount": {"accountType": "GOOGLE_ADS", "accountId": "9876543210"},
       "productDestinationId": "987654321"}],
     "encoding": "HEX", "validateOnly": false,
     "consent": {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"},
     "events": [{"destinationReferences": ["sale"], "transactionId": "ORD-10045",
       "eventTimestamp": "2026-01-20T12:32:45+01:00", "eventSource": "WEB",
       "adIdentifiers": {"gclid": "Cj0KCQiA"}, "conversionValue": 149.0, "currency": "EUR",
       "userData": {"userIdentifiers": [
         {"emailAddress": GOOGLE_EMAIL_SHA256}, {"phoneNumber": GOOGLE_PHONE_SHA256}]}}]})
}

fn dm(body: &Value, headers: &[(&str, &str)]) -> Vec<String> {
    check_data_manager(&request(
        Method::POST,
        "http://fake/v1/events:ingest",
        headers,
        body,
    ))
}

#[test]
fn the_data_manager_fake_refuses_what_google_refuses_and_more() {
    let headers = [
        ("authorization", "Bearer t"),
        ("content-type", "application/json"),
    ];
    assert_eq!(dm(&dm_body(), &headers), Vec::<String>::new());
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "transactionID",
            Box::new(|b| {
                let event = b["events"][0].as_object_mut().unwrap();
                let id = event.remove("transactionId").unwrap();
                event.insert("transactionID".into(), id);
            }),
        ),
        (
            "Ads API name orderId",
            Box::new(|b| b["events"][0]["orderId"] = json!("x")),
        ),
        (
            "GRANTED",
            Box::new(|b| b["consent"]["adUserData"] = json!("GRANTED")),
        ),
        (
            "space in the time",
            Box::new(|b| b["events"][0]["eventTimestamp"] = json!("2026-01-20 12:32:45+01:00")),
        ),
        (
            "no offset",
            Box::new(|b| b["events"][0]["eventTimestamp"] = json!("2026-01-20T12:32:45")),
        ),
        (
            "future",
            Box::new(|b| b["events"][0]["eventTimestamp"] = json!("2999-01-01T00:00:00Z")),
        ),
        (
            "numeric account id",
            Box::new(|b| b["destinations"][0]["operatingAccount"]["accountId"] = json!(1234567890)),
        ),
        (
            "account id with dashes",
            Box::new(|b| {
                b["destinations"][0]["operatingAccount"]["accountId"] = json!("123-456-7890")
            }),
        ),
        (
            "resource name",
            Box::new(|b| {
                b["destinations"][0]["productDestinationId"] =
                    json!("customers/1/conversionActions/2")
            }),
        ),
        (
            "unknown reference",
            Box::new(|b| b["events"][0]["destinationReferences"] = json!(["lead"])),
        ),
        (
            "snake_case",
            Box::new(|b| b["events"][0]["event_source"] = json!("WEB")),
        ),
        (
            "no identifiers",
            Box::new(|b| {
                let event = b["events"][0].as_object_mut().unwrap();
                event.remove("adIdentifiers");
                event.remove("userData");
            }),
        ),
        (
            "two click ids",
            Box::new(|b| b["events"][0]["adIdentifiers"]["gbraid"] = json!("x")),
        ),
        (
            "unhashed email",
            Box::new(|b| {
                b["events"][0]["userData"]["userIdentifiers"][0]["emailAddress"] = json!("a@b.com")
            }),
        ),
        (
            "lower-case currency",
            Box::new(|b| b["events"][0]["currency"] = json!("eur")),
        ),
        (
            "no event source",
            Box::new(|b| {
                b["events"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("eventSource");
            }),
        ),
    ];
    for (name, mutate) in cases {
        let mut body = dm_body();
        mutate(&mut body);
        assert!(!dm(&body, &headers).is_empty(), "{name} was accepted");
    }
    let with_ads_headers = [
        ("authorization", "Bearer t"),
        ("content-type", "application/json"),
        ("developer-token", "DEVTOKEN22characters00"),
    ];
    assert!(!dm(&dm_body(), &with_ads_headers).is_empty());
}

#[test]
fn the_meta_fake_refuses_what_meta_refuses() {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let body = |event: Value| json!({"data": [event]});
    let good = json!({"event_name": "Purchase", "event_time": now - 60, "event_id": "ord-1",
        "action_source": "website", "event_source_url": "https://shop.example.com/thanks",
        "user_data": {"em": [META_EMAIL_SHA256], "client_user_agent": "Mozilla/5.0",
                      "fbc": "fb.1.1554763741205.AbCdEf"},
        "custom_data": {"currency": "usd", "value": 123.45}});
    let meta = |body: &Value, url: &str| {
        check_meta(&request(
            Method::POST,
            url,
            &[("content-type", "application/json")],
            body,
        ))
    };
    let url = "http://fake/v26.0/1122334455/events?access_token=tok";
    assert_eq!(meta(&body(good.clone()), url), Vec::<String>::new());
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "milliseconds",
            Box::new(move |e| e["event_time"] = json!((now - 60) * 1000)),
        ),
        (
            "8 days old",
            Box::new(move |e| e["event_time"] = json!(now - 8 * 86_400)),
        ),
        (
            "bad action source",
            Box::new(|e| e["action_source"] = json!("web")),
        ),
        (
            "website without user agent",
            Box::new(|e| {
                e["user_data"]
                    .as_object_mut()
                    .unwrap()
                    .remove("client_user_agent");
            }),
        ),
        (
            "unhashed email",
            Box::new(|e| e["user_data"]["em"] = json!(["john@example.com"])),
        ),
        (
            "fbc in seconds",
            Box::new(|e| e["user_data"]["fbc"] = json!("fb.1.1554763741.AbCdEf")),
        ),
        (
            "ip not an ip",
            Box::new(|e| e["user_data"]["client_ip_address"] = json!("localhost")),
        ),
        (
            "unknown key",
            Box::new(|e| e["eventName"] = json!("Purchase")),
        ),
    ];
    for (name, mutate) in cases {
        let mut event = good.clone();
        mutate(&mut event);
        assert!(!meta(&body(event), url).is_empty(), "{name} was accepted");
    }
    assert!(!meta(&body(good.clone()), "http://fake/v26.0/1122334455/events").is_empty());
    assert!(!meta(
        &body(good),
        "http://fake/v25.0/1122334455/events?access_token=t"
    )
    .is_empty());
}

#[test]
fn the_request_status_fake_refuses_what_data_manager_refuses() {
    let status = |method: Method, url: &str, headers: &[(&str, &str)], body: Option<&Value>| {
        let mut built = request(method, url, headers, &Value::Null);
        built.body = body
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default();
        check_request_status(&built)
    };
    let base = "http://fake/v1/requestStatus:retrieve";
    let auth = [("authorization", "Bearer t")];
    assert_eq!(
        status(Method::GET, &format!("{base}?requestId=r-1"), &auth, None),
        Vec::<String>::new()
    );
    let refused = [
        status(Method::POST, &format!("{base}?requestId=r-1"), &auth, None),
        status(Method::GET, &format!("{base}?requestId=r-1"), &[], None),
        status(Method::GET, base, &auth, None),
        status(Method::GET, &format!("{base}?requestId="), &auth, None),
        status(
            Method::GET,
            &format!("{base}?requestId=r-1&requestId=r-2"),
            &auth,
            None,
        ),
        status(Method::GET, &format!("{base}?request_id=r-1"), &auth, None),
        status(
            Method::GET,
            &format!("{base}?requestId=r-1"),
            &[("authorization", "Bearer t"), ("developer-token", "d")],
            None,
        ),
        status(
            Method::GET,
            &format!("{base}?requestId=r-1"),
            &auth,
            Some(&json!({"requestId": "r-1"})),
        ),
        status(
            Method::GET,
            "http://fake/v1/requestStatus?requestId=r-1",
            &auth,
            None,
        ),
    ];
    for (case, problems) in refused.iter().enumerate() {
        assert!(!problems.is_empty(), "case {case} passed the fake");
    }
}
