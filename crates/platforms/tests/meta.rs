//! Meta Conversions API v26.0, against a fake Graph API that checks requests as strictly as the
//! real one.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use platforms::model::Outcome;
use platforms::RequestTarget;
use serde_json::{json, Value};
use support::*;
use time::OffsetDateTime;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const EVENTS: &str = "/v26.0/1122334455/events";
const TIMEOUT: Duration = Duration::from_secs(5);

/// Answers 200 with the number of events received.
struct Receive;

impl Respond for Receive {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let count = body["data"].as_array().map_or(0, Vec::len);
        ResponseTemplate::new(200).set_body_json(json!({
            "events_received": count, "messages": [], "fbtrace_id": "AbCdTrace"}))
    }
}

/// Refuses (code 100) any request holding an event whose order id starts with `BAD`, without
/// saying which, as Meta does.
struct RefuseBad;

impl Respond for RefuseBad {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let bad = body["data"].as_array().unwrap().iter().any(|event| {
            event["custom_data"]["order_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("BAD"))
        });
        if bad {
            ResponseTemplate::new(400).set_body_json(json!({"error": {
                "message": "Invalid parameter", "type": "OAuthException", "code": 100,
                "error_subcode": 2804019, "error_user_title": "Invalid value",
                "error_user_msg": "A parameter has an invalid value.", "fbtrace_id": "BadTrace"}}))
        } else {
            Receive.respond(request)
        }
    }
}

async fn mount_events(server: &MockServer, response: impl Respond + 'static) {
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .and(query_param("access_token", META_TOKEN))
        .and(Strict(check_meta))
        .respond_with(response)
        .mount(server)
        .await;
}

fn sent_events(body: &Value) -> Vec<Value> {
    body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn events_carry_every_field_in_meta_format() {
    let server = MockServer::start().await;
    mount_events(&server, Receive).await;
    let now = OffsetDateTime::now_utc();
    let mut purchase = sale("INV-1", now);
    purchase.event.email = Some(events::Email::parse("  John_Smith@gmail.com ").unwrap());
    let mut config = meta_config();
    config.test_event_code = Some("TEST12345".into());

    let report = platforms(&server, TIMEOUT)
        .send_meta(&config, &meta_creds(), &[purchase.clone()], now)
        .await;

    assert_eq!(report.outcomes, vec![Outcome::Succeeded]);
    assert_requests_strict(&server).await;
    let body = &bodies(&server, "/events").await[0];
    assert_eq!(body["test_event_code"], "TEST12345");
    let event = &sent_events(body)[0];
    assert_eq!(event["event_name"], "Purchase");
    assert_eq!(
        event["event_time"],
        json!(purchase.event.timestamp.unix_timestamp())
    );
    assert_eq!(event["event_id"], evt(&purchase));
    assert_eq!(event["action_source"], "website");
    assert_eq!(event["event_source_url"], "https://shop.example.com/thanks");
    let clicked_at = purchase.attribution.click.as_ref().unwrap().clicked_at;
    let click_ms = clicked_at.unix_timestamp_nanos() / 1_000_000;
    assert_eq!(
        event["user_data"],
        json!({
            "em": [META_EMAIL_SHA256],
            "ph": [META_PHONE_SHA256],
            "external_id": [events::sha256_hex("user-42")],
            "client_ip_address": "203.0.113.7",
            "client_user_agent": "Mozilla/5.0 (test)",
            "fbc": format!("fb.1.{click_ms}.{FBCLID}"),
        })
    );
    assert_eq!(
        event["custom_data"],
        json!({"value": 149.0, "currency": "eur", "order_id": "INV-1",
               "content_ids": ["sku-1"], "contents": [{"id": "sku-1", "quantity": 2, "item_price": 74.5}],
               "content_type": "product"})
    );
    let record = report.request_for(0).unwrap();
    assert_eq!(record.target, RequestTarget::MetaEvents);
    assert_eq!(record.platform_request_id.as_deref(), Some("AbCdTrace"));
    assert_no_secrets(&report, &[]);
}

#[tokio::test]
async fn an_fbc_the_sender_captured_is_sent_unchanged() {
    let server = MockServer::start().await;
    mount_events(&server, Receive).await;
    let now = OffsetDateTime::now_utc();
    let mut purchase = sale("INV-1", now);
    purchase.event.click_ids.fbc = Some("fb.1.1554763741205.AbCdEfGhIjKlMnOp.Ag".into());
    purchase.event.click_ids.fbp = Some("fb.1.1596403881668.1116446470".into());

    let report = platforms(&server, TIMEOUT)
        .send_meta(&meta_config(), &meta_creds(), &[purchase], now)
        .await;

    assert_eq!(report.outcomes, vec![Outcome::Succeeded]);
    let event = &sent_events(&bodies(&server, "/events").await[0])[0];
    assert_eq!(
        event["user_data"]["fbc"],
        "fb.1.1554763741205.AbCdEfGhIjKlMnOp.Ag"
    );
    assert_eq!(event["user_data"]["fbp"], "fb.1.1596403881668.1116446470");
    assert_requests_strict(&server).await;
}

#[tokio::test]
async fn leads_use_the_configured_name_and_no_order_id() {
    let server = MockServer::start().await;
    mount_events(&server, Receive).await;
    let now = OffsetDateTime::now_utc();
    let mut config = meta_config();
    config.event_names.lead = Some("SubmitApplication".into());
    config.action_source = "system_generated".into();

    let report = platforms(&server, TIMEOUT)
        .send_meta(&config, &meta_creds(), &[lead(Some("lead-1"), now)], now)
        .await;

    assert_eq!(report.outcomes, vec![Outcome::Succeeded]);
    let event = &sent_events(&bodies(&server, "/events").await[0])[0];
    assert_eq!(event["event_name"], "SubmitApplication");
    assert_eq!(event["action_source"], "system_generated");
    assert!(event.get("custom_data").is_none());
    assert_requests_strict(&server).await;
}

#[tokio::test]
async fn an_event_older_than_7_days_is_skipped_and_never_sent() {
    let server = MockServer::start().await;
    mount_events(&server, Receive).await;
    let now = OffsetDateTime::now_utc();
    let mut old = sale("INV-OLD", now);
    old.event.timestamp = now - time::Duration::days(8);
    let fresh = sale("INV-NEW", now);

    let report = platforms(&server, TIMEOUT)
        .send_meta(&meta_config(), &meta_creds(), &[old, fresh], now)
        .await;

    assert!(
        matches!(&report.outcomes[0], Outcome::Skipped { reason } if reason == platforms::TOO_OLD_FOR_PLATFORM),
        "{:?}",
        report.outcomes[0]
    );
    assert_eq!(report.outcomes[1], Outcome::Succeeded);
    let sent = sent_events(&bodies(&server, "/events").await[0]);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["custom_data"]["order_id"], "INV-NEW");
    assert!(report.request_for(0).is_none());
    assert_requests_strict(&server).await;
}

#[tokio::test]
async fn a_website_event_without_the_user_agent_is_settled_before_sending() {
    let server = MockServer::start().await;
    mount_events(&server, Receive).await;
    let now = OffsetDateTime::now_utc();
    let mut no_agent = sale("INV-2", now);
    no_agent.event.user_agent = None;
    let batch = vec![
        sale("INV-1", now),
        deny_user_data(sale("INV-3", now)),
        no_agent,
    ];

    let report = platforms(&server, TIMEOUT)
        .send_meta(&meta_config(), &meta_creds(), &batch, now)
        .await;

    assert_eq!(report.outcomes[0], Outcome::Succeeded);
    assert!(
        matches!(&report.outcomes[1], Outcome::Skipped { reason } if reason.starts_with("consent_denied")),
        "{:?}",
        report.outcomes[1]
    );
    assert!(
        matches!(&report.outcomes[2], Outcome::Permanent { error } if error.contains("user agent")),
        "{:?}",
        report.outcomes[2]
    );
    let sent = sent_events(&bodies(&server, "/events").await[0]);
    assert_eq!(sent.len(), 1, "one request, with the one event Meta takes");
    assert_eq!(report.requests.len(), 1);
    assert_requests_strict(&server).await;
}

#[tokio::test]
async fn consent_denied_leaves_only_click_ids_or_skips() {
    let server = MockServer::start().await;
    mount_events(&server, Receive).await;
    let now = OffsetDateTime::now_utc();
    let mut config = meta_config();
    config.action_source = "system_generated".into();
    config.match_without_click_id = true;
    let batch = vec![
        deny_user_data(sale("INV-1", now)),
        deny_user_data(without_clicks(sale("INV-2", now))),
    ];

    let report = platforms(&server, TIMEOUT)
        .send_meta(&config, &meta_creds(), &batch, now)
        .await;

    assert_eq!(report.outcomes[0], Outcome::Succeeded);
    assert!(
        matches!(&report.outcomes[1], Outcome::Skipped { reason } if reason.starts_with("consent_denied")),
        "{:?}",
        report.outcomes[1]
    );
    let sent = sent_events(&bodies(&server, "/events").await[0]);
    assert_eq!(sent.len(), 1);
    let user_data = sent[0]["user_data"].as_object().unwrap();
    let keys: Vec<&str> = user_data.keys().map(String::as_str).collect();
    assert_eq!(keys, vec!["fbc"], "click ids only");
    assert_requests_strict(&server).await;
}

#[tokio::test]
async fn without_a_click_id_events_are_skipped_unless_user_data_matching_is_on() {
    let server = MockServer::start().await;
    mount_events(&server, Receive).await;
    let now = OffsetDateTime::now_utc();
    let organic = without_clicks(sale("INV-1", now));
    let platforms = platforms(&server, TIMEOUT);

    let report = platforms
        .send_meta(
            &meta_config(),
            &meta_creds(),
            std::slice::from_ref(&organic),
            now,
        )
        .await;
    assert!(
        matches!(&report.outcomes[0], Outcome::Skipped { reason } if reason.starts_with("no_click_id")),
        "{:?}",
        report.outcomes
    );

    let mut config = meta_config();
    config.match_without_click_id = true;
    let report = platforms
        .send_meta(&config, &meta_creds(), &[organic], now)
        .await;
    assert_eq!(report.outcomes, vec![Outcome::Succeeded]);
    let event = &sent_events(&bodies(&server, "/events").await[0])[0];
    assert!(event["user_data"].get("fbc").is_none());
    assert_eq!(event["user_data"]["ph"], json!([META_PHONE_SHA256]));
    assert_requests_strict(&server).await;
}

#[tokio::test]
async fn two_500s_then_200_resend_the_same_event_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"error": {
            "message": "An unknown error occurred", "type": "OAuthException", "code": 1,
            "is_transient": true, "fbtrace_id": "T"}})))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_events(&server, Receive).await;
    let now = OffsetDateTime::now_utc();
    let purchase = sale("INV-5", now);
    let platforms = platforms(&server, TIMEOUT);

    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.push(
            platforms
                .send_meta(
                    &meta_config(),
                    &meta_creds(),
                    std::slice::from_ref(&purchase),
                    now,
                )
                .await
                .outcomes[0]
                .clone(),
        );
    }

    assert!(matches!(outcomes[0], Outcome::Retry { .. }));
    assert!(matches!(outcomes[1], Outcome::Retry { .. }));
    assert_eq!(outcomes[2], Outcome::Succeeded);
    let sent = bodies(&server, "/events").await;
    assert_eq!(sent.len(), 3);
    for body in &sent {
        assert_eq!(body["data"][0]["event_id"], evt(&purchase));
        assert_eq!(body, &sent[0]);
    }
    assert_requests_strict(&server).await;
}

#[tokio::test]
async fn a_429_and_throttling_codes_retry_after_retry_after() {
    let server = MockServer::start().await;
    mount_events(
        &server,
        ResponseTemplate::new(429)
            .insert_header("retry-after", "120")
            .set_body_json(
                json!({"error": {"message": "(#4) Application request limit reached",
                "type": "OAuthException", "code": 4, "is_transient": true, "fbtrace_id": "T"}}),
            ),
    )
    .await;
    let now = OffsetDateTime::now_utc();

    let report = platforms(&server, TIMEOUT)
        .send_meta(&meta_config(), &meta_creds(), &[sale("INV-1", now)], now)
        .await;

    assert!(
        matches!(&report.outcomes[0], Outcome::Retry { after: Some(after), .. } if *after == Duration::from_secs(120)),
        "{:?}",
        report.outcomes
    );
}

#[tokio::test]
async fn an_invalid_token_is_permanent_and_never_shown() {
    let server = MockServer::start().await;
    mount_events(
        &server,
        ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": format!("Invalid OAuth access token - Cannot parse access token {META_TOKEN}"),
            "type": "OAuthException", "code": 190, "fbtrace_id": "T"}})),
    )
    .await;
    let now = OffsetDateTime::now_utc();

    let report = platforms(&server, TIMEOUT)
        .send_meta(
            &meta_config(),
            &meta_creds(),
            &[sale("INV-1", now), sale("INV-2", now)],
            now,
        )
        .await;

    for outcome in &report.outcomes {
        assert!(
            matches!(outcome, Outcome::Permanent { error } if error.contains("code 190")),
            "{outcome:?}"
        );
    }
    assert_eq!(report.requests.len(), 1, "auth errors are not split");
    assert_no_secrets(&report, &[]);
}

#[tokio::test]
async fn one_invalid_event_is_found_by_splitting_and_the_rest_go_through() {
    let server = MockServer::start().await;
    mount_events(&server, RefuseBad).await;
    let now = OffsetDateTime::now_utc();
    let batch = vec![
        sale("GOOD-1", now),
        sale("GOOD-2", now),
        sale("BAD-1", now),
        sale("GOOD-3", now),
    ];

    let report = platforms(&server, TIMEOUT)
        .send_meta(&meta_config(), &meta_creds(), &batch, now)
        .await;

    assert_eq!(report.outcomes[0], Outcome::Succeeded);
    assert_eq!(report.outcomes[1], Outcome::Succeeded);
    assert!(
        matches!(&report.outcomes[2], Outcome::Permanent { error } if error.contains("code 100")),
        "{:?}",
        report.outcomes[2]
    );
    assert_eq!(report.outcomes[3], Outcome::Succeeded);
    // [0..4] refused, [0,1] taken, [2,3] refused, [2] refused, [3] taken.
    assert_eq!(report.requests.len(), 5);
    assert_eq!(report.request_for(2).unwrap().conversions, vec![2]);
    assert_requests_strict(&server).await;
}

#[tokio::test]
async fn batches_are_cut_into_requests_of_1000_events() {
    let server = MockServer::start().await;
    mount_events(&server, Receive).await;
    let now = OffsetDateTime::now_utc();
    let batch: Vec<_> = (0..2500).map(|n| sale(&format!("INV-{n}"), now)).collect();

    let report = platforms(&server, TIMEOUT)
        .send_meta(&meta_config(), &meta_creds(), &batch, now)
        .await;

    assert!(report
        .outcomes
        .iter()
        .all(|outcome| *outcome == Outcome::Succeeded));
    let sizes: Vec<usize> = bodies(&server, "/events")
        .await
        .iter()
        .map(|body| body["data"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![1000, 1000, 500]);
    assert_requests_strict(&server).await;
}

#[tokio::test]
async fn a_timeout_or_a_non_json_answer_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .respond_with(
            ResponseTemplate::new(502).set_body_raw("<html>Bad Gateway</html>", "text/html"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_events(
        &server,
        ResponseTemplate::new(200)
            .set_body_json(json!({"events_received": 1, "messages": [], "fbtrace_id": "slow"}))
            .set_delay(Duration::from_secs(3)),
    )
    .await;
    let now = OffsetDateTime::now_utc();
    let platforms = platforms(&server, Duration::from_millis(300));

    let first = platforms
        .send_meta(&meta_config(), &meta_creds(), &[sale("INV-1", now)], now)
        .await;
    assert!(
        matches!(&first.outcomes[0], Outcome::Retry { error, .. } if error.contains("HTTP 502")),
        "{:?}",
        first.outcomes
    );
    let second = platforms
        .send_meta(&meta_config(), &meta_creds(), &[sale("INV-1", now)], now)
        .await;
    assert!(
        matches!(&second.outcomes[0], Outcome::Retry { error, .. } if error.contains("timeout")),
        "{:?}",
        second.outcomes
    );
    let record = second.request_for(0).unwrap();
    assert!(!record.error.as_deref().unwrap().contains(META_TOKEN));
}
