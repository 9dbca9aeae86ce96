//! Signed webhooks, against a receiver that verifies the signature as a customer's would.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use hmac::{Hmac, Mac};
use platforms::model::Outcome;
use platforms::webhook::{WebhookConfig, WebhookCredentials};
use platforms::RequestTarget;
use serde_json::{json, Value};
use sha2::Sha256;
use support::*;
use time::OffsetDateTime;
use wiremock::matchers::{header, method, path};
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

const SECRET: &str = "whsec_test_secret_value";
const TIMEOUT: Duration = Duration::from_secs(5);

/// Verifies `Convrelay-Signature: t=<unix>,v1=<hex>` as a receiver does: the HMAC-SHA256 of
/// `"<t>.<raw body>"` with the shared secret, and `t` no older than 5 minutes.
struct ValidSignature;

impl Match for ValidSignature {
    fn matches(&self, request: &Request) -> bool {
        verify(request).is_ok()
    }
}

fn verify(request: &Request) -> Result<(), String> {
    let value = request
        .headers
        .get("convrelay-signature")
        .ok_or("no signature header")?
        .to_str()
        .map_err(|e| e.to_string())?;
    let (t, v1) = value
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .ok_or("not t=<unix>,v1=<hex>")?;
    let t: i64 = t.parse().map_err(|_| "t is not a number")?;
    if (OffsetDateTime::now_utc().unix_timestamp() - t).abs() > 300 {
        return Err("t is more than 5 minutes off".into());
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&request.body);
    let expected = hex::encode(mac.finalize().into_bytes());
    if expected != v1 {
        return Err("signature mismatch".into());
    }
    Ok(())
}

fn config(server: &MockServer) -> WebhookConfig {
    WebhookConfig {
        url: format!("{}/hooks/convrelay", server.uri()),
    }
}

fn creds() -> WebhookCredentials {
    WebhookCredentials {
        secret: SECRET.into(),
    }
}

fn routing() -> Value {
    json!([
        {"type": "google_ads", "dispatch": true, "reason": "gclid present"},
        {"type": "meta", "dispatch": true, "reason": "fbclid present"},
        {"type": "webhook", "dispatch": true, "reason": "webhooks get every subscribed event"}
    ])
}

#[tokio::test]
async fn the_event_attribution_and_routing_arrive_signed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks/convrelay"))
        .and(header("content-type", "application/json"))
        .and(ValidSignature)
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let now = OffsetDateTime::now_utc();
    let conversion = sale("INV-1", now);

    let report = platforms(&server, TIMEOUT)
        .send_webhook(&config(&server), &creds(), &conversion, &routing(), now)
        .await;

    assert_eq!(report.outcomes, vec![Outcome::Succeeded]);
    let requests = server.received_requests().await.unwrap();
    verify(&requests[0]).unwrap();
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body["id"], evt(&conversion));
    assert_eq!(body["event"], "sale");
    assert_eq!(body["invoiceId"], "INV-1");
    assert_eq!(body["amount"].as_f64(), Some(149.0));
    assert_eq!(body["currency"], "EUR");
    assert_eq!(body["attribution"]["status"], "matched");
    assert_eq!(body["attribution"]["click"]["gclid"], GCLID);
    assert_eq!(body["routing"], routing());
    assert!(body["receivedAt"].as_str().unwrap().ends_with('Z'));
    let record = report.request_for(0).unwrap();
    assert_eq!(record.target, RequestTarget::Webhook);
    assert_eq!(record.http_status, Some(204));
}

#[tokio::test]
async fn any_2xx_is_success() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(ValidSignature)
        .respond_with(ResponseTemplate::new(202).set_body_string("queued"))
        .mount(&server)
        .await;
    let now = OffsetDateTime::now_utc();

    let report = platforms(&server, TIMEOUT)
        .send_webhook(
            &config(&server),
            &creds(),
            &sale("INV-1", now),
            &routing(),
            now,
        )
        .await;

    assert_eq!(report.outcomes, vec![Outcome::Succeeded]);
    assert_eq!(report.requests[0].response_excerpt, "queued");
}

#[tokio::test]
async fn failures_are_retried_honouring_retry_after_and_never_show_the_secret() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "30")
                .set_body_string(format!("slow down, {SECRET}")),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "https://example.com/"))
        .with_priority(3)
        .mount(&server)
        .await;
    let now = OffsetDateTime::now_utc();
    let platforms = platforms(&server, TIMEOUT);
    let conversion = sale("INV-1", now);

    let throttled = platforms
        .send_webhook(&config(&server), &creds(), &conversion, &routing(), now)
        .await;
    assert!(
        matches!(&throttled.outcomes[0], Outcome::Retry { after: Some(after), .. } if *after == Duration::from_secs(30)),
        "{:?}",
        throttled.outcomes
    );
    assert!(!throttled.requests[0].response_excerpt.contains(SECRET));
    let failed = platforms
        .send_webhook(&config(&server), &creds(), &conversion, &routing(), now)
        .await;
    assert!(matches!(
        &failed.outcomes[0],
        Outcome::Retry { after: None, .. }
    ));
    let redirected = platforms
        .send_webhook(&config(&server), &creds(), &conversion, &routing(), now)
        .await;
    assert!(
        matches!(&redirected.outcomes[0], Outcome::Retry { error, .. } if error.contains("302")),
        "redirects are not followed: {:?}",
        redirected.outcomes
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let now = OffsetDateTime::now_utc();

    let report = platforms(&server, Duration::from_millis(300))
        .send_webhook(
            &config(&server),
            &creds(),
            &sale("INV-1", now),
            &routing(),
            now,
        )
        .await;

    assert!(
        matches!(&report.outcomes[0], Outcome::Retry { error, .. } if error.contains("timeout")),
        "{:?}",
        report.outcomes
    );
}

#[tokio::test]
async fn a_malformed_url_is_permanent() {
    let server = MockServer::start().await;
    let now = OffsetDateTime::now_utc();

    let report = platforms(&server, TIMEOUT)
        .send_webhook(
            &WebhookConfig {
                url: "not a url".into(),
            },
            &creds(),
            &sale("INV-1", now),
            &routing(),
            now,
        )
        .await;

    assert!(matches!(report.outcomes[0], Outcome::Permanent { .. }));
    assert!(report.requests.is_empty());
}
