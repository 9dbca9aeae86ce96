//! Snap Conversions API v3 against a strict fake.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use platforms::model::{Conversion, Outcome};
use platforms::snapchat::{Snapchat, SnapchatConfig};
use platforms::SendReport;
use serde_json::{json, Value};
use support::*;
use time::OffsetDateTime;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TIMEOUT: Duration = Duration::from_secs(5);

async fn mount_at(server: &MockServer, at: &str, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(at))
        .and(query_param("access_token", SC_TOKEN))
        .and(Strict(check_snapchat))
        .respond_with(response)
        .mount(server)
        .await;
}

fn valid() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"status": "VALID"}))
}

async fn send_with(
    server: &MockServer,
    config: &SnapchatConfig,
    batch: &[Conversion],
) -> SendReport {
    platforms(server, TIMEOUT)
        .send_to(
            &Snapchat,
            config,
            &snapchat_creds(),
            batch,
            OffsetDateTime::now_utc(),
        )
        .await
}

fn data(body: &Value) -> Vec<Value> {
    body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn events_carry_names_seconds_event_id_click_ids_and_snap_hashes() {
    let server = MockServer::start().await;
    mount_at(&server, SC_PATH, valid()).await;
    let now = OffsetDateTime::now_utc();
    let sale = with_sc_cid(sale("INV-1", now));
    let lead = with_sc_cid(lead(Some("lead-1"), now));

    let report = send_with(&server, &snapchat_config(), &[sale.clone(), lead]).await;

    assert_eq!(report.outcomes, [Outcome::Succeeded, Outcome::Succeeded]);
    assert_requests_strict(&server).await;
    let sent = data(&bodies(&server, SC_PATH).await[0]);
    assert_eq!(sent[0]["event_name"], "PURCHASE");
    assert_eq!(sent[1]["event_name"], "SIGN_UP");
    assert_eq!(
        sent[0]["event_time"],
        json!(sale.event.timestamp.unix_timestamp())
    );
    assert_eq!(sent[0]["event_id"], evt(&sale));
    assert_eq!(sent[0]["user_data"]["sc_click_id"], SC_CID);
    assert_eq!(sent[0]["user_data"]["sc_cookie1"], SC_COOKIE);
    assert_eq!(sent[0]["user_data"]["em"], json!([MS_EMAIL_SHA256]));
    assert_eq!(
        sent[0]["user_data"]["ph"],
        json!([META_PHONE_SHA256]),
        "digits without +"
    );
    assert_eq!(sent[0]["custom_data"]["contents"][0]["item_price"], "74.50");
    assert_eq!(sent[0]["custom_data"]["order_id"], "INV-1");
    assert_no_secrets(&report, &[SC_TOKEN]);
    for record in &report.requests {
        assert!(!format!("{record:?}").contains(SC_TOKEN));
    }
}

#[tokio::test]
async fn test_mode_sends_to_the_validate_endpoint() {
    let server = MockServer::start().await;
    let validate = format!("{SC_PATH}/validate");
    mount_at(
        &server,
        &validate,
        ResponseTemplate::new(200)
            .set_body_json(json!({"status": "VALID", "test_event": true, "event_logs": []})),
    )
    .await;
    let now = OffsetDateTime::now_utc();
    let mut config = snapchat_config();
    config.test_mode = true;

    let report = send_with(&server, &config, &[with_sc_cid(sale("INV-1", now))]).await;

    assert_eq!(report.outcomes, [Outcome::Succeeded]);
    assert_eq!(bodies(&server, &validate).await.len(), 1);
}

#[tokio::test]
async fn an_invalid_event_fails_alone_and_the_rest_are_sent_again() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SC_PATH))
        .and(Strict(check_snapchat))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(json!({"status": "INVALID",
            "reason": "Invalid event_time", "event": 0})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    mount_at(&server, SC_PATH, valid()).await;
    let now = OffsetDateTime::now_utc();
    let batch = [
        with_sc_cid(sale("INV-1", now)),
        with_sc_cid(sale("INV-2", now)),
    ];

    let report = send_with(&server, &snapchat_config(), &batch).await;

    assert!(
        matches!(&report.outcomes[0], Outcome::Permanent { error } if error.contains("event_time"))
    );
    assert_eq!(report.outcomes[1], Outcome::Succeeded);
    let sent = bodies(&server, SC_PATH).await;
    assert_eq!(data(&sent[1]).len(), 1);
}

#[tokio::test]
async fn a_429_honours_retry_after_and_a_401_is_permanent() {
    let now = OffsetDateTime::now_utc();
    let server = MockServer::start().await;
    mount_at(
        &server,
        SC_PATH,
        ResponseTemplate::new(429).insert_header("retry-after", "20"),
    )
    .await;
    let report = send_with(
        &server,
        &snapchat_config(),
        &[with_sc_cid(sale("INV-1", now))],
    )
    .await;
    assert!(
        matches!(&report.outcomes[0], Outcome::Retry { after: Some(after), .. } if *after == Duration::from_secs(20))
    );

    let server = MockServer::start().await;
    mount_at(
        &server,
        SC_PATH,
        ResponseTemplate::new(401)
            .set_body_json(json!({"status": "INVALID", "reason": "Unauthorized"})),
    )
    .await;
    let report = send_with(
        &server,
        &snapchat_config(),
        &[with_sc_cid(sale("INV-1", now))],
    )
    .await;
    assert!(matches!(&report.outcomes[0], Outcome::Permanent { .. }));
}

#[tokio::test]
async fn consent_denied_sends_the_click_id_and_cookie_only() {
    let server = MockServer::start().await;
    mount_at(&server, SC_PATH, valid()).await;
    let now = OffsetDateTime::now_utc();

    let report = send_with(
        &server,
        &snapchat_config(),
        &[deny_user_data(with_sc_cid(sale("INV-1", now)))],
    )
    .await;

    assert_eq!(report.outcomes, [Outcome::Succeeded]);
    let sent = data(&bodies(&server, SC_PATH).await[0]);
    assert_eq!(
        sent[0]["user_data"],
        json!({"sc_click_id": SC_CID, "sc_cookie1": SC_COOKIE})
    );
}

#[tokio::test]
async fn an_event_older_than_37_days_is_too_old_and_an_event_without_sc_cid_is_skipped() {
    let server = MockServer::start().await;
    let now = OffsetDateTime::now_utc();
    let mut old = with_sc_cid(sale("INV-1", now));
    old.event.timestamp = now - time::Duration::days(38);

    let report = send_with(&server, &snapchat_config(), &[old, sale("INV-2", now)]).await;

    assert_eq!(
        report.outcomes[0],
        Outcome::Skipped {
            reason: platforms::TOO_OLD_FOR_PLATFORM.into()
        }
    );
    assert!(
        matches!(&report.outcomes[1], Outcome::Skipped { reason } if reason.starts_with("no_click_id"))
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}
