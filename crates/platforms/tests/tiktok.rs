//! TikTok Events API 2.0 against a strict fake.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use platforms::model::{Conversion, Outcome};
use platforms::tiktok::{TikTok, TikTokConfig, PATH};
use platforms::SendReport;
use serde_json::{json, Value};
use support::*;
use time::OffsetDateTime;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TIMEOUT: Duration = Duration::from_secs(5);

async fn mount(server: &MockServer, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(PATH))
        .and(header("access-token", TT_TOKEN))
        .and(Strict(check_tiktok))
        .respond_with(response)
        .mount(server)
        .await;
}

fn code(code: i64, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"code": code, "message": message, "request_id": "r-1", "data": {}}))
}

async fn send_with(server: &MockServer, config: &TikTokConfig, batch: &[Conversion]) -> SendReport {
    platforms(server, TIMEOUT)
        .send_to(
            &TikTok,
            config,
            &tiktok_creds(),
            batch,
            OffsetDateTime::now_utc(),
        )
        .await
}

fn data(body: &Value) -> Vec<Value> {
    body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn events_carry_names_seconds_event_id_click_ids_and_tiktok_hashes() {
    let server = MockServer::start().await;
    mount(&server, code(0, "OK")).await;
    let now = OffsetDateTime::now_utc();
    let sale = with_ttclid(sale("INV-1", now));
    let lead = with_ttclid(lead(Some("lead-1"), now));
    let mut config = tiktok_config();
    config.test_event_code = Some("TEST123".into());

    let report = send_with(&server, &config, &[sale.clone(), lead]).await;

    assert_eq!(report.outcomes, [Outcome::Succeeded, Outcome::Succeeded]);
    assert_requests_strict(&server).await;
    let body = &bodies(&server, PATH).await[0];
    assert_eq!(body["event_source"], "web");
    assert_eq!(body["event_source_id"], TT_PIXEL);
    assert_eq!(body["test_event_code"], "TEST123");
    let sent = data(body);
    assert_eq!(sent[0]["event"], "Purchase");
    assert_eq!(sent[1]["event"], "Lead");
    assert_eq!(
        sent[0]["event_time"],
        json!(sale.event.timestamp.unix_timestamp())
    );
    assert_eq!(sent[0]["event_id"], evt(&sale));
    assert_eq!(sent[0]["user"]["ttclid"], TTCLID);
    assert_eq!(sent[0]["user"]["ttp"], TTP);
    assert_eq!(sent[0]["user"]["email"], json!([MS_EMAIL_SHA256]));
    assert_eq!(
        sent[0]["user"]["phone"],
        json!([GOOGLE_PHONE_SHA256]),
        "E.164 with the +"
    );
    assert_eq!(sent[0]["user"]["ip"], "203.0.113.7");
    assert_eq!(sent[0]["properties"]["value"], json!(149.0));
    assert_eq!(sent[0]["properties"]["currency"], "EUR");
    assert_eq!(sent[0]["properties"]["order_id"], "INV-1");
    assert_eq!(sent[0]["limited_data_use"], false);
    assert_no_secrets(&report, &[TT_TOKEN]);
}

#[tokio::test]
async fn throttling_codes_and_429_are_retried_and_auth_codes_are_permanent() {
    let now = OffsetDateTime::now_utc();
    for (response, retried) in [
        (code(40100, "Request too frequent"), true),
        (code(61000, "Too many requests"), true),
        (code(51001, "System busy"), true),
        (
            ResponseTemplate::new(429).insert_header("retry-after", "10"),
            true,
        ),
        (code(40105, "Invalid access token"), false),
        (code(40002, "Param error: event_time"), false),
    ] {
        let server = MockServer::start().await;
        mount(&server, response).await;
        let report = send_with(
            &server,
            &tiktok_config(),
            &[with_ttclid(sale("INV-1", now))],
        )
        .await;
        match (&report.outcomes[0], retried) {
            (Outcome::Retry { .. }, true) | (Outcome::Permanent { .. }, false) => {}
            (other, _) => panic!("unexpected {other:?}"),
        }
    }
    let server = MockServer::start().await;
    mount(
        &server,
        ResponseTemplate::new(429).insert_header("retry-after", "10"),
    )
    .await;
    let report = send_with(
        &server,
        &tiktok_config(),
        &[with_ttclid(sale("INV-1", now))],
    )
    .await;
    assert!(
        matches!(&report.outcomes[0], Outcome::Retry { after: Some(after), .. } if *after == Duration::from_secs(10))
    );
}

#[tokio::test]
async fn consent_denied_sends_click_ids_only_with_limited_data_use() {
    let server = MockServer::start().await;
    mount(&server, code(0, "OK")).await;
    let now = OffsetDateTime::now_utc();

    let report = send_with(
        &server,
        &tiktok_config(),
        &[deny_user_data(with_ttclid(sale("INV-1", now)))],
    )
    .await;

    assert_eq!(report.outcomes, [Outcome::Succeeded]);
    let sent = data(&bodies(&server, PATH).await[0]);
    assert_eq!(sent[0]["user"], json!({"ttclid": TTCLID, "ttp": TTP}));
    assert_eq!(sent[0]["limited_data_use"], true);
}

#[tokio::test]
async fn without_ttclid_an_event_is_skipped_unless_the_destination_matches_on_user_data() {
    let server = MockServer::start().await;
    mount(&server, code(0, "OK")).await;
    let now = OffsetDateTime::now_utc();

    let report = send_with(&server, &tiktok_config(), &[sale("INV-1", now)]).await;
    assert!(
        matches!(&report.outcomes[0], Outcome::Skipped { reason } if reason.starts_with("no_click_id"))
    );
    assert!(server.received_requests().await.unwrap().is_empty());

    let mut config = tiktok_config();
    config.match_without_click_id = true;
    let report = send_with(&server, &config, &[sale("INV-1", now)]).await;
    assert_eq!(report.outcomes, [Outcome::Succeeded]);
}

#[tokio::test]
async fn a_500_is_retried_with_the_same_event_id() {
    let server = MockServer::start().await;
    mount(&server, ResponseTemplate::new(500)).await;
    let now = OffsetDateTime::now_utc();
    let sale = with_ttclid(sale("INV-1", now));

    send_with(&server, &tiktok_config(), std::slice::from_ref(&sale)).await;
    let report = send_with(&server, &tiktok_config(), std::slice::from_ref(&sale)).await;

    assert!(matches!(report.outcomes[0], Outcome::Retry { .. }));
    let sent = bodies(&server, PATH).await;
    assert_eq!(data(&sent[0])[0]["event_id"], data(&sent[1])[0]["event_id"]);
}
