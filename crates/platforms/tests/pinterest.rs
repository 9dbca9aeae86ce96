//! Pinterest Conversions API against a strict fake.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use platforms::model::{Conversion, Outcome};
use platforms::pinterest::{Pinterest, PinterestConfig};
use platforms::SendReport;
use serde_json::{json, Value};
use support::*;
use time::OffsetDateTime;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Answers each event, failing those whose event id is in `failing`.
struct PerEvent {
    failing: Vec<String>,
}

impl Respond for PerEvent {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let events: Vec<Value> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                if self.failing.iter().any(|id| e["event_id"] == **id) {
                    json!({"status": "failed", "error_message": "click_id is not valid", "warning_message": null})
                } else {
                    json!({"status": "processed", "error_message": null, "warning_message": null})
                }
            })
            .collect();
        let processed = events.iter().filter(|e| e["status"] == "processed").count();
        ResponseTemplate::new(200).set_body_json(json!({
            "num_events_received": events.len(), "num_events_processed": processed, "events": events}))
    }
}

async fn mount(server: &MockServer, respond: impl Respond + 'static) {
    Mock::given(method("POST"))
        .and(path(PI_PATH))
        .and(header(
            "authorization",
            format!("Bearer {PI_TOKEN}").as_str(),
        ))
        .and(Strict(check_pinterest))
        .respond_with(respond)
        .mount(server)
        .await;
}

async fn send_with(
    server: &MockServer,
    config: &PinterestConfig,
    batch: &[Conversion],
) -> SendReport {
    platforms(server, TIMEOUT)
        .send_to(
            &Pinterest,
            config,
            &pinterest_creds(),
            batch,
            OffsetDateTime::now_utc(),
        )
        .await
}

fn data(body: &Value) -> Vec<Value> {
    body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn events_carry_names_seconds_event_id_epik_string_values_and_pinterest_hashes() {
    let server = MockServer::start().await;
    mount(&server, PerEvent { failing: vec![] }).await;
    let now = OffsetDateTime::now_utc();
    let sale = with_epik(sale("INV-1", now));
    let lead = with_epik(lead(Some("lead-1"), now));

    let report = send_with(&server, &pinterest_config(), &[sale.clone(), lead]).await;

    assert_eq!(report.outcomes, [Outcome::Succeeded, Outcome::Succeeded]);
    assert_requests_strict(&server).await;
    let sent = data(&bodies(&server, PI_PATH).await[0]);
    assert_eq!(sent[0]["event_name"], "checkout");
    assert_eq!(sent[1]["event_name"], "lead");
    assert_eq!(sent[0]["action_source"], "web");
    assert_eq!(
        sent[0]["event_time"],
        json!(sale.event.timestamp.unix_timestamp())
    );
    assert_eq!(sent[0]["event_id"], evt(&sale));
    assert_eq!(sent[0]["user_data"]["click_id"], EPIK);
    assert_eq!(sent[0]["user_data"]["em"], json!([MS_EMAIL_SHA256]));
    assert_eq!(
        sent[0]["user_data"]["ph"],
        json!([META_PHONE_SHA256]),
        "digits without +"
    );
    assert_eq!(sent[0]["custom_data"]["value"], "149.00");
    assert_eq!(sent[0]["custom_data"]["currency"], "EUR");
    assert_no_secrets(&report, &[PI_TOKEN]);
}

#[tokio::test]
async fn a_failed_event_fails_alone() {
    let server = MockServer::start().await;
    let now = OffsetDateTime::now_utc();
    let batch = [with_epik(sale("INV-1", now)), with_epik(sale("INV-2", now))];
    mount(
        &server,
        PerEvent {
            failing: vec![evt(&batch[1])],
        },
    )
    .await;

    let report = send_with(&server, &pinterest_config(), &batch).await;

    assert_eq!(report.outcomes[0], Outcome::Succeeded);
    assert!(
        matches!(&report.outcomes[1], Outcome::Permanent { error } if error.contains("click_id"))
    );
}

#[tokio::test]
async fn test_mode_adds_test_true() {
    let server = MockServer::start().await;
    mount(&server, PerEvent { failing: vec![] }).await;
    let now = OffsetDateTime::now_utc();
    let mut config = pinterest_config();
    config.test_mode = true;

    let report = send_with(&server, &config, &[with_epik(sale("INV-1", now))]).await;

    assert_eq!(report.outcomes, [Outcome::Succeeded]);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests[0].url.query(), Some("test=true"));
}

#[tokio::test]
async fn a_429_honours_retry_after_and_a_401_is_permanent() {
    let now = OffsetDateTime::now_utc();
    let server = MockServer::start().await;
    mount(
        &server,
        ResponseTemplate::new(429).insert_header("retry-after", "5"),
    )
    .await;
    let report = send_with(
        &server,
        &pinterest_config(),
        &[with_epik(sale("INV-1", now))],
    )
    .await;
    assert!(
        matches!(&report.outcomes[0], Outcome::Retry { after: Some(after), .. } if *after == Duration::from_secs(5))
    );

    let server = MockServer::start().await;
    mount(
        &server,
        ResponseTemplate::new(401)
            .set_body_json(json!({"code": 2, "message": "Authentication failed."})),
    )
    .await;
    let report = send_with(
        &server,
        &pinterest_config(),
        &[with_epik(sale("INV-1", now))],
    )
    .await;
    assert!(
        matches!(&report.outcomes[0], Outcome::Permanent { error } if error.contains("Authentication failed"))
    );
}

#[tokio::test]
async fn consent_denied_and_a_missing_epik_are_skipped_and_never_sent() {
    let server = MockServer::start().await;
    let now = OffsetDateTime::now_utc();

    let report = send_with(
        &server,
        &pinterest_config(),
        &[
            deny_user_data(with_epik(sale("INV-1", now))),
            sale("INV-2", now),
        ],
    )
    .await;

    assert!(
        matches!(&report.outcomes[0], Outcome::Skipped { reason } if reason.starts_with("consent_denied"))
    );
    assert!(
        matches!(&report.outcomes[1], Outcome::Skipped { reason } if reason.starts_with("no_click_id"))
    );
    assert!(server.received_requests().await.unwrap().is_empty());

    mount(&server, PerEvent { failing: vec![] }).await;
    let mut config = pinterest_config();
    config.match_without_click_id = true;
    let report = send_with(&server, &config, &[sale("INV-2", now)]).await;
    assert_eq!(report.outcomes, [Outcome::Succeeded]);
}
