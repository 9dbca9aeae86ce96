//! LinkedIn Conversions API against a strict fake.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use platforms::linkedin::{LinkedIn, PATH};
use platforms::model::{Conversion, Outcome};
use platforms::SendReport;
use serde_json::{json, Value};
use support::*;
use time::OffsetDateTime;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Answers `BATCH_CREATE` with one 201 per element.
struct Created;

impl Respond for Created {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let count = body["elements"].as_array().map_or(0, Vec::len);
        ResponseTemplate::new(200)
            .set_body_json(json!({"elements": vec![json!({"status": 201}); count]}))
    }
}

async fn mount(server: &MockServer, respond: impl Respond + 'static) {
    Mock::given(method("POST"))
        .and(path(PATH))
        .and(header(
            "authorization",
            format!("Bearer {LI_TOKEN}").as_str(),
        ))
        .and(Strict(check_linkedin))
        .respond_with(respond)
        .mount(server)
        .await;
}

async fn send_with(
    server: &MockServer,
    config: &platforms::linkedin::LinkedInConfig,
    batch: &[Conversion],
) -> SendReport {
    platforms(server, TIMEOUT)
        .send_to(
            &LinkedIn,
            config,
            &linkedin_creds(),
            batch,
            OffsetDateTime::now_utc(),
        )
        .await
}

fn elements(body: &Value) -> Vec<Value> {
    body["elements"].as_array().unwrap().clone()
}

#[tokio::test]
async fn elements_carry_the_rule_time_in_ms_value_as_a_string_event_id_and_user_ids() {
    let server = MockServer::start().await;
    mount(&server, Created).await;
    let now = OffsetDateTime::now_utc();
    let sale = with_li_fat_id(sale("INV-1", now));
    let lead = with_li_fat_id(lead(Some("lead-1"), now));

    let report = send_with(&server, &linkedin_config(), &[sale.clone(), lead]).await;

    assert_eq!(report.outcomes, [Outcome::Succeeded, Outcome::Succeeded]);
    assert_requests_strict(&server).await;
    let sent = elements(&bodies(&server, PATH).await[0]);
    assert_eq!(sent[0]["conversion"], "urn:lla:llaPartnerConversion:104013");
    assert_eq!(sent[1]["conversion"], "urn:lla:llaPartnerConversion:104012");
    assert_eq!(
        sent[0]["conversionHappenedAt"],
        json!((sale.event.timestamp.unix_timestamp_nanos() / 1_000_000) as i64)
    );
    assert_eq!(
        sent[0]["conversionValue"],
        json!({"currencyCode": "EUR", "amount": "149.00"})
    );
    assert_eq!(sent[0]["eventId"], evt(&sale));
    assert_eq!(
        sent[0]["user"]["userIds"],
        json!([{"idType": "SHA256_EMAIL", "idValue": LI_EMAIL_SHA256},
               {"idType": "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID", "idValue": LI_FAT_ID}])
    );
    assert!(
        !sent[0].to_string().contains("ph"),
        "LinkedIn takes no phone"
    );
    assert_no_secrets(&report, &[LI_TOKEN]);
}

#[tokio::test]
async fn a_422_naming_an_element_fails_it_and_the_rest_are_sent_again_at_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .and(Strict(check_linkedin))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "message": "Index: 1, ERROR :: /conversionValue/amount :: field is required but not found\n",
            "status": 422})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    mount(&server, Created).await;
    let now = OffsetDateTime::now_utc();
    let batch: Vec<_> = (0..3)
        .map(|i| with_li_fat_id(sale(&format!("INV-{i}"), now)))
        .collect();

    let report = send_with(&server, &linkedin_config(), &batch).await;

    assert_eq!(report.outcomes[0], Outcome::Succeeded);
    assert!(
        matches!(&report.outcomes[1], Outcome::Permanent { error } if error.contains("amount")),
        "{:?}",
        report.outcomes[1]
    );
    assert_eq!(report.outcomes[2], Outcome::Succeeded);
    let sent = bodies(&server, PATH).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(elements(&sent[1]).len(), 2);
    assert_eq!(
        elements(&sent[0])[0]["eventId"],
        elements(&sent[1])[0]["eventId"]
    );
}

#[tokio::test]
async fn a_429_is_retried_after_retry_after_and_a_401_is_permanent() {
    let server = MockServer::start().await;
    mount(
        &server,
        ResponseTemplate::new(429).insert_header("retry-after", "30"),
    )
    .await;
    let now = OffsetDateTime::now_utc();
    let report = send_with(
        &server,
        &linkedin_config(),
        &[with_li_fat_id(sale("INV-1", now))],
    )
    .await;
    assert!(
        matches!(&report.outcomes[0], Outcome::Retry { after: Some(after), .. } if *after == Duration::from_secs(30))
    );

    let server = MockServer::start().await;
    mount(
        &server,
        ResponseTemplate::new(401).set_body_json(json!({"serviceErrorCode": 65601,
            "code": "REVOKED_ACCESS_TOKEN", "message": "The token used in the request has been revoked by the user", "status": 401})),
    )
    .await;
    let report = send_with(
        &server,
        &linkedin_config(),
        &[with_li_fat_id(sale("INV-2", now))],
    )
    .await;
    assert!(
        matches!(&report.outcomes[0], Outcome::Permanent { error } if error.contains("revoked") && error.contains("replace")),
        "{:?}",
        report.outcomes
    );
    assert_no_secrets(&report, &[LI_TOKEN]);
}

#[tokio::test]
async fn without_li_fat_id_an_event_is_skipped_unless_the_destination_matches_on_email() {
    let server = MockServer::start().await;
    mount(&server, Created).await;
    let now = OffsetDateTime::now_utc();

    let report = send_with(&server, &linkedin_config(), &[sale("INV-1", now)]).await;
    assert!(
        matches!(&report.outcomes[0], Outcome::Skipped { reason } if reason.starts_with("no_click_id"))
    );
    assert!(server.received_requests().await.unwrap().is_empty());

    let mut config = linkedin_config();
    config.match_without_click_id = true;
    let report = send_with(&server, &config, &[sale("INV-1", now)]).await;
    assert_eq!(report.outcomes, [Outcome::Succeeded]);
    let sent = elements(&bodies(&server, PATH).await[0]);
    assert_eq!(
        sent[0]["user"]["userIds"],
        json!([{"idType": "SHA256_EMAIL", "idValue": LI_EMAIL_SHA256}])
    );
}

#[tokio::test]
async fn consent_denied_sends_only_the_li_fat_id() {
    let server = MockServer::start().await;
    mount(&server, Created).await;
    let now = OffsetDateTime::now_utc();

    let report = send_with(
        &server,
        &linkedin_config(),
        &[deny_user_data(with_li_fat_id(sale("INV-1", now)))],
    )
    .await;

    assert_eq!(report.outcomes, [Outcome::Succeeded]);
    let sent = elements(&bodies(&server, PATH).await[0]);
    assert_eq!(
        sent[0]["user"]["userIds"],
        json!([{"idType": "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID", "idValue": LI_FAT_ID}])
    );
}

#[tokio::test]
async fn an_event_older_than_90_days_is_too_old_and_never_sent() {
    let server = MockServer::start().await;
    let now = OffsetDateTime::now_utc();
    let mut old = with_li_fat_id(sale("INV-1", now));
    old.event.timestamp = now - time::Duration::days(91);

    let report = send_with(&server, &linkedin_config(), &[old]).await;

    assert_eq!(
        report.outcomes,
        [Outcome::Skipped {
            reason: platforms::TOO_OLD_FOR_PLATFORM.into()
        }]
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_500_is_retried_with_the_same_event_ids() {
    let server = MockServer::start().await;
    mount(&server, ResponseTemplate::new(500)).await;
    let now = OffsetDateTime::now_utc();
    let sale = with_li_fat_id(sale("INV-1", now));

    let first = send_with(&server, &linkedin_config(), std::slice::from_ref(&sale)).await;
    let second = send_with(&server, &linkedin_config(), std::slice::from_ref(&sale)).await;

    assert!(matches!(
        first.outcomes[0],
        Outcome::Retry { after: None, .. }
    ));
    assert!(matches!(second.outcomes[0], Outcome::Retry { .. }));
    let sent = bodies(&server, PATH).await;
    assert_eq!(
        elements(&sent[0])[0]["eventId"],
        elements(&sent[1])[0]["eventId"]
    );
}
