//! Reddit Conversions API v3 against a strict fake.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use platforms::model::{Conversion, Outcome};
use platforms::reddit::{Reddit, RedditConfig};
use platforms::SendReport;
use serde_json::{json, Value};
use support::*;
use time::OffsetDateTime;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TIMEOUT: Duration = Duration::from_secs(5);

async fn mount(server: &MockServer, respond: impl Respond + 'static) {
    Mock::given(method("POST"))
        .and(path(RD_PATH))
        .and(header(
            "authorization",
            format!("Bearer {RD_TOKEN}").as_str(),
        ))
        .and(Strict(check_reddit))
        .respond_with(respond)
        .mount(server)
        .await;
}

fn processed() -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"data": {"message": "Successfully processed 1 conversion events."}}))
}

async fn send_with(server: &MockServer, config: &RedditConfig, batch: &[Conversion]) -> SendReport {
    platforms(server, TIMEOUT)
        .send_to(
            &Reddit,
            config,
            &reddit_creds(),
            batch,
            OffsetDateTime::now_utc(),
        )
        .await
}

fn events(body: &Value) -> Vec<Value> {
    body["data"]["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn events_carry_ms_time_tracking_type_click_id_conversion_id_and_reddit_hashes() {
    let server = MockServer::start().await;
    mount(&server, processed()).await;
    let now = OffsetDateTime::now_utc();
    let sale = with_rdt_cid(sale("INV-1", now));
    let lead = with_rdt_cid(lead(Some("lead-1"), now));
    let mut config = reddit_config();
    config.test_id = Some("t2_abc123_test".into());

    let report = send_with(&server, &config, &[sale.clone(), lead]).await;

    assert_eq!(report.outcomes, [Outcome::Succeeded, Outcome::Succeeded]);
    assert_requests_strict(&server).await;
    let body = &bodies(&server, RD_PATH).await[0];
    assert_eq!(body["data"]["test_id"], "t2_abc123_test");
    let sent = events(body);
    assert_eq!(
        sent[0]["event_at"],
        json!((sale.event.timestamp.unix_timestamp_nanos() / 1_000_000) as i64)
    );
    assert_eq!(sent[0]["type"], json!({"tracking_type": "PURCHASE"}));
    assert_eq!(sent[1]["type"], json!({"tracking_type": "LEAD"}));
    assert_eq!(sent[0]["click_id"], RDT_CID);
    assert_eq!(sent[0]["metadata"]["conversion_id"], "INV-1");
    assert_eq!(sent[1]["metadata"]["conversion_id"], "lead-1");
    assert_eq!(sent[0]["metadata"]["value"], json!(149.0));
    assert_eq!(sent[0]["metadata"]["currency"], "EUR");
    assert_eq!(sent[0]["user"]["email"], RD_EMAIL_SHA256);
    assert_eq!(sent[0]["user"]["phone_number"], GOOGLE_PHONE_SHA256);
    assert_eq!(sent[0]["user"]["user_agent"], "Mozilla/5.0 (test)");
    assert_no_secrets(&report, &[RD_TOKEN]);
}

/// Refuses the request naming the event whose conversion id is `bad`, then accepts.
struct RefuseOne {
    bad: &'static str,
}

impl Respond for RefuseOne {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let bad: Vec<Value> = events(&body)
            .into_iter()
            .filter(|e| e["metadata"]["conversion_id"] == self.bad)
            .collect();
        if bad.is_empty() {
            return processed();
        }
        ResponseTemplate::new(400).set_body_json(json!({
            "message": "There were 1 invalid conversion events. None were processed.",
            "invalid_events": [{"error_message": "invalid click_id", "event": bad[0]}]}))
    }
}

#[tokio::test]
async fn a_400_naming_an_event_fails_it_and_the_rest_are_sent_again_at_once() {
    let server = MockServer::start().await;
    mount(&server, RefuseOne { bad: "INV-1" }).await;
    let now = OffsetDateTime::now_utc();
    let batch: Vec<_> = (0..3)
        .map(|i| with_rdt_cid(sale(&format!("INV-{i}"), now)))
        .collect();

    let report = send_with(&server, &reddit_config(), &batch).await;

    assert_eq!(report.outcomes[0], Outcome::Succeeded);
    assert!(
        matches!(&report.outcomes[1], Outcome::Permanent { error } if error.contains("invalid click_id")),
        "{:?}",
        report.outcomes
    );
    assert_eq!(report.outcomes[2], Outcome::Succeeded);
    let sent = bodies(&server, RD_PATH).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(events(&sent[1]).len(), 2);
}

#[tokio::test]
async fn a_429_honours_retry_after_and_a_401_is_permanent() {
    let server = MockServer::start().await;
    mount(
        &server,
        ResponseTemplate::new(429).insert_header("retry-after", "60"),
    )
    .await;
    let now = OffsetDateTime::now_utc();
    let report = send_with(
        &server,
        &reddit_config(),
        &[with_rdt_cid(sale("INV-1", now))],
    )
    .await;
    assert!(
        matches!(&report.outcomes[0], Outcome::Retry { after: Some(after), .. } if *after == Duration::from_secs(60))
    );

    let server = MockServer::start().await;
    mount(
        &server,
        ResponseTemplate::new(401).set_body_json(
            json!({"error": {"reason": "UNAUTHORIZED", "explanation": "bad token"}}),
        ),
    )
    .await;
    let report = send_with(
        &server,
        &reddit_config(),
        &[with_rdt_cid(sale("INV-1", now))],
    )
    .await;
    assert!(matches!(&report.outcomes[0], Outcome::Permanent { error } if error.contains("401")));
}

#[tokio::test]
async fn consent_denied_sends_the_click_id_without_user_data() {
    let server = MockServer::start().await;
    mount(&server, processed()).await;
    let now = OffsetDateTime::now_utc();

    let report = send_with(
        &server,
        &reddit_config(),
        &[deny_user_data(with_rdt_cid(sale("INV-1", now)))],
    )
    .await;

    assert_eq!(report.outcomes, [Outcome::Succeeded]);
    let sent = events(&bodies(&server, RD_PATH).await[0]);
    assert!(sent[0].get("user").is_none());
    assert_eq!(sent[0]["click_id"], RDT_CID);
}

#[tokio::test]
async fn without_rdt_cid_an_event_is_skipped_unless_the_destination_matches_on_user_data() {
    let server = MockServer::start().await;
    mount(&server, processed()).await;
    let now = OffsetDateTime::now_utc();

    let report = send_with(&server, &reddit_config(), &[sale("INV-1", now)]).await;
    assert!(
        matches!(&report.outcomes[0], Outcome::Skipped { reason } if reason.starts_with("no_click_id"))
    );

    let mut config = reddit_config();
    config.match_without_click_id = true;
    let report = send_with(&server, &config, &[sale("INV-1", now)]).await;
    assert_eq!(report.outcomes, [Outcome::Succeeded]);
    let sent = events(&bodies(&server, RD_PATH).await[0]);
    assert!(sent[0].get("click_id").is_none());
    assert_eq!(sent[0]["user"]["email"], RD_EMAIL_SHA256);
}

#[tokio::test]
async fn an_event_older_than_7_days_is_too_old_and_never_sent() {
    let server = MockServer::start().await;
    let now = OffsetDateTime::now_utc();
    let mut old = with_rdt_cid(sale("INV-1", now));
    old.event.timestamp = now - time::Duration::days(8);

    let report = send_with(&server, &reddit_config(), &[old]).await;

    assert_eq!(
        report.outcomes,
        [Outcome::Skipped {
            reason: platforms::TOO_OLD_FOR_PLATFORM.into()
        }]
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}
