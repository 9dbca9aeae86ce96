//! The conversion-events catalog's mapping reaches the platforms: a conversion that carries one
//! is sent as the mapped conversion action or event name instead of the destination's per-kind
//! setting, against the strict fakes.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use platforms::google::GoogleApi;
use platforms::model::{EventMapping, Outcome};
use platforms::reddit::Reddit;
use serde_json::{json, Value};
use support::*;
use time::OffsetDateTime;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TIMEOUT: Duration = Duration::from_secs(5);

fn mapped(conversion_action: Option<&str>, event_name: Option<&str>) -> Option<EventMapping> {
    Some(EventMapping {
        conversion_action: conversion_action.map(str::to_owned),
        event_name: event_name.map(str::to_owned),
    })
}

#[tokio::test]
async fn data_manager_sends_the_mapped_conversion_action() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.dm").await;
    Mock::given(method("POST"))
        .and(path("/v1/events:ingest"))
        .and(header("authorization", "Bearer ya29.dm"))
        .and(Strict(check_data_manager))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"requestId": "dm-1"})))
        .mount(&server)
        .await;
    let now = OffsetDateTime::now_utc();
    let mut demo = without_clicks(lead(Some("lead-demo"), now));
    demo.mapping = mapped(Some("555000111"), None);
    let plain = sale("INV-1", now);
    let report = platforms(&server, TIMEOUT)
        .send_google(
            &google_config(GoogleApi::DataManager),
            &google_creds(),
            &[demo, plain],
            now,
        )
        .await;
    assert_eq!(report.outcomes, vec![Outcome::Succeeded; 2]);
    assert_requests_strict(&server).await;
    let body = &bodies(&server, "/v1/events:ingest").await[0];
    let actions: Vec<&str> = body["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["productDestinationId"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"555000111"), "{body:#}");
    assert!(actions.contains(&SALE_ACTION), "{body:#}");
    assert!(
        !actions.contains(&LEAD_ACTION),
        "the lead's per-kind action is not used: {body:#}"
    );
}

#[tokio::test]
async fn reddit_sends_the_mapped_tracking_type() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(RD_PATH))
        .and(header(
            "authorization",
            format!("Bearer {RD_TOKEN}").as_str(),
        ))
        .and(Strict(check_reddit))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"data": {"message": "Successfully processed 2 conversion events."}}),
        ))
        .mount(&server)
        .await;
    let now = OffsetDateTime::now_utc();
    let mut signup = with_rdt_cid(lead(Some("lead-1"), now));
    signup.mapping = mapped(None, Some("SIGN_UP"));
    let plain = with_rdt_cid(lead(Some("lead-2"), now));
    let report = platforms(&server, TIMEOUT)
        .send_to(
            &Reddit,
            &reddit_config(),
            &reddit_creds(),
            &[signup, plain],
            now,
        )
        .await;
    assert_eq!(report.outcomes, vec![Outcome::Succeeded; 2]);
    assert_requests_strict(&server).await;
    let body: &Value = &bodies(&server, RD_PATH).await[0];
    let types: Vec<&str> = body["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"]["tracking_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["SIGN_UP", "LEAD"]);
}
