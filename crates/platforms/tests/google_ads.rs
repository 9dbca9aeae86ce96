//! Google Ads API v26 (`uploadClickConversions`, `uploadConversionAdjustments`) and the OAuth
//! refresh-token flow, against a fake Google that checks requests as strictly as the real one.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use platforms::google::GoogleApi;
use platforms::model::Outcome;
use platforms::{RequestTarget, RetryPolicy};
use serde_json::{json, Value};
use support::*;
use time::OffsetDateTime;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const UPLOAD: &str = "/v26/customers/1234567890:uploadClickConversions";
const ADJUST: &str = "/v26/customers/1234567890:uploadConversionAdjustments";
const TIMEOUT: Duration = Duration::from_secs(5);

fn ok_results(count: usize) -> Value {
    json!({"results": vec![json!({"gclid": GCLID}); count], "jobId": "2147483690"})
}

/// Answers 200 with one empty result per conversion sent.
struct Accept;

impl Respond for Accept {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let count = body["conversions"].as_array().map_or(0, Vec::len);
        ResponseTemplate::new(200)
            .insert_header("request-id", "req-123")
            .set_body_json(ok_results(count))
    }
}

async fn mount_upload(server: &MockServer, response: impl Respond + 'static) {
    Mock::given(method("POST"))
        .and(path(UPLOAD))
        .and(header("authorization", "Bearer ya29.token-1"))
        .and(header("developer-token", DEVELOPER_TOKEN))
        .and(header("login-customer-id", LOGIN_CUSTOMER_ID))
        .and(header("content-type", "application/json"))
        .and(Strict(check_ads_upload))
        .respond_with(response)
        .mount(server)
        .await;
}

#[tokio::test]
async fn upload_sends_every_field_in_google_ads_format() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.token-1").await;
    mount_upload(&server, Accept).await;
    let now = OffsetDateTime::now_utc();
    let with_gclid = sale("INV-1", now);
    let lead_with_id = without_clicks(lead(Some("lead-7"), now));
    let lead_without_id = without_clicks(lead(None, now));
    let batch = vec![with_gclid.clone(), lead_with_id, lead_without_id.clone()];

    let report = platforms(&server, TIMEOUT)
        .send_google(
            &google_config(GoogleApi::GoogleAdsApi),
            &google_creds(),
            &batch,
            now,
        )
        .await;

    assert_eq!(report.outcomes, vec![Outcome::Succeeded; 3]);
    assert_requests_strict(&server).await;
    let body = &bodies(&server, ":uploadClickConversions").await[0];
    let sent = body["conversions"].as_array().unwrap();
    let sale_row = &sent[0];
    assert_eq!(sale_row["gclid"], GCLID);
    assert!(
        sale_row.get("userIdentifiers").is_none(),
        "gclid wins over identifiers"
    );
    assert_eq!(
        sale_row["conversionAction"],
        format!("customers/{CUSTOMER_ID}/conversionActions/{SALE_ACTION}")
    );
    let at = with_gclid.event.timestamp;
    assert_eq!(
        sale_row["conversionDateTime"],
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}+00:00",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        )
    );
    assert_eq!(sale_row["conversionValue"].as_f64(), Some(149.0));
    assert_eq!(sale_row["currencyCode"], "EUR");
    assert_eq!(sale_row["orderId"], "INV-1");
    assert_eq!(sale_row["consent"], json!({"adUserData": "GRANTED"}));
    // Enhanced conversions for leads: identifiers hashed by Google's rules.
    assert_eq!(
        sent[1]["userIdentifiers"],
        json!([
            {"hashedEmail": GOOGLE_EMAIL_SHA256, "userIdentifierSource": "FIRST_PARTY"},
            {"hashedPhoneNumber": GOOGLE_PHONE_SHA256, "userIdentifierSource": "FIRST_PARTY"}
        ])
    );
    assert_eq!(sent[1]["orderId"], "lead-7");
    assert_eq!(
        sent[1]["conversionAction"],
        format!("customers/{CUSTOMER_ID}/conversionActions/{LEAD_ACTION}")
    );
    assert_eq!(sent[2]["orderId"], evt(&lead_without_id));
    assert!(sent[2].get("conversionValue").is_none());
    assert_eq!(body["partialFailure"], true);
    assert!(body.get("debugEnabled").is_none());

    let upload = report.request_for(0).unwrap();
    assert_eq!(
        upload.target,
        RequestTarget::GoogleAdsUploadClickConversions
    );
    assert_eq!(upload.http_status, Some(200));
    assert_eq!(upload.conversions, vec![0, 1, 2]);
    assert_eq!(upload.platform_request_id.as_deref(), Some("req-123"));
    assert_eq!(report.requests[0].target, RequestTarget::GoogleOAuth);
    assert_no_secrets(&report, &["ya29.token-1"]);
}

#[tokio::test]
async fn partial_failure_gives_each_row_its_own_outcome() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.token-1").await;
    mount_upload(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({
            "partialFailureError": {"code": 3, "message": "1 conversion failed", "details": [{
                "@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
                "errors": [{
                    "errorCode": {"conversionUploadError": "EXPIRED_EVENT"},
                    "message": "The click associated with the given identifier is too old.",
                    "trigger": {"stringValue": GCLID},
                    "location": {"fieldPathElements": [{"fieldName": "conversions", "index": 1}]}
                }],
                "requestId": "req-9"}]},
            "results": [{"gclid": GCLID}, {}, {"gclid": GCLID}],
            "jobId": "2147483690"
        })),
    )
    .await;
    let now = OffsetDateTime::now_utc();
    let batch = vec![sale("INV-1", now), sale("INV-2", now), sale("INV-3", now)];

    let report = platforms(&server, TIMEOUT)
        .send_google(
            &google_config(GoogleApi::GoogleAdsApi),
            &google_creds(),
            &batch,
            now,
        )
        .await;

    assert_eq!(report.outcomes[0], Outcome::Succeeded);
    assert_eq!(
        report.outcomes[1],
        Outcome::Permanent {
            error: "EXPIRED_EVENT: The click associated with the given identifier is too old."
                .into()
        }
    );
    assert_eq!(report.outcomes[2], Outcome::Succeeded);
    assert_requests_strict(&server).await;
}

#[tokio::test]
async fn too_recent_event_waits_six_hours_and_a_used_order_id_counts_as_delivered() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.token-1").await;
    let error = |code: &str, index: usize| {
        json!({"errorCode": {"conversionUploadError": code}, "message": code,
               "location": {"fieldPathElements": [{"fieldName": "conversions", "index": index}]}})
    };
    mount_upload(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({
            "partialFailureError": {"code": 3, "message": "m", "details": [{
                "@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
                "errors": [error("TOO_RECENT_EVENT", 0), error("ORDER_ID_ALREADY_IN_USE", 1)]}]},
            "results": [{}, {}]
        })),
    )
    .await;
    let now = OffsetDateTime::now_utc();
    let batch = vec![sale("INV-1", now), sale("INV-2", now)];

    let report = platforms(&server, TIMEOUT)
        .send_google(
            &google_config(GoogleApi::GoogleAdsApi),
            &google_creds(),
            &batch,
            now,
        )
        .await;

    let six_hours = Duration::from_secs(6 * 3600);
    assert!(matches!(
        &report.outcomes[0],
        Outcome::Retry { after: Some(after), .. } if *after == six_hours
    ));
    assert_eq!(report.outcomes[1], Outcome::AlreadyDelivered);
    let Outcome::Retry { after, .. } = &report.outcomes[0] else {
        unreachable!()
    };
    assert_eq!(
        RetryPolicy::default().next_attempt(1, *after),
        Some(six_hours)
    );
}

#[tokio::test]
async fn two_500s_then_200_resend_the_same_order_id_each_time() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.token-1").await;
    Mock::given(method("POST"))
        .and(path(UPLOAD))
        .and(Strict(check_ads_upload))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"error": {
            "code": 500, "status": "INTERNAL", "message": "Internal error encountered.",
            "details": [{"@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
              "errors": [{"errorCode": {"internalError": "INTERNAL_ERROR"}, "message": "x"}]}]}})))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_upload(&server, Accept).await;
    let now = OffsetDateTime::now_utc();
    let batch = vec![sale("INV-77", now)];
    let platforms = platforms(&server, TIMEOUT);
    let config = google_config(GoogleApi::GoogleAdsApi);
    let policy = RetryPolicy::from_settings(10, 1000, 5);

    let mut outcomes = Vec::new();
    for attempt in 1..=3 {
        let report = platforms
            .send_google(&config, &google_creds(), &batch, now)
            .await;
        let outcome = report.outcomes[0].clone();
        if let Outcome::Retry { after, .. } = &outcome {
            assert!(policy.next_attempt(attempt, *after).is_some());
        }
        outcomes.push(outcome);
    }

    assert!(matches!(&outcomes[0], Outcome::Retry { error, .. } if error.contains("HTTP 500")));
    assert!(matches!(outcomes[1], Outcome::Retry { .. }));
    assert_eq!(outcomes[2], Outcome::Succeeded);
    let sent = bodies(&server, ":uploadClickConversions").await;
    assert_eq!(sent.len(), 3);
    for body in &sent {
        assert_eq!(body["conversions"][0]["orderId"], "INV-77");
        assert_eq!(body["conversions"][0], sent[0]["conversions"][0]);
    }
    // The token was fetched once and reused by the three attempts.
    let token_requests = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|request| request.url.path() == "/token")
        .count();
    assert_eq!(token_requests, 1);
    assert_requests_strict(&server).await;
}

#[tokio::test]
async fn a_429_honours_retry_delay() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.token-1").await;
    mount_upload(
        &server,
        ResponseTemplate::new(429).set_body_json(json!({"error": {
            "code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
              "errors": [{"errorCode": {"quotaError": "RESOURCE_TEMPORARILY_EXHAUSTED"}, "message": "Too many requests",
                "details": {"quotaErrorDetails": {"rateScope": "DEVELOPER", "rateName": "Requests", "retryDelay": "30s"}}}],
              "requestId": "r"}]}})),
    )
    .await;
    let now = OffsetDateTime::now_utc();

    let report = platforms(&server, TIMEOUT)
        .send_google(
            &google_config(GoogleApi::GoogleAdsApi),
            &google_creds(),
            &[sale("INV-1", now), sale("INV-2", now)],
            now,
        )
        .await;

    for outcome in &report.outcomes {
        assert!(
            matches!(outcome, Outcome::Retry { after: Some(after), .. } if *after == Duration::from_secs(30)),
            "{outcome:?}"
        );
    }
    assert_eq!(report.request_for(0).unwrap().http_status, Some(429));
}

#[tokio::test]
async fn a_permanent_400_fails_the_request_with_googles_message() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.token-1").await;
    mount_upload(
        &server,
        ResponseTemplate::new(400).set_body_json(json!({"error": {
            "code": 400, "status": "INVALID_ARGUMENT", "message": "Request contains an invalid argument.",
            "details": [{"@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
              "errors": [{"errorCode": {"conversionUploadError": "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE"}, "message": "m"}]}]}})),
    )
    .await;
    let now = OffsetDateTime::now_utc();

    let report = platforms(&server, TIMEOUT)
        .send_google(
            &google_config(GoogleApi::GoogleAdsApi),
            &google_creds(),
            &[sale("INV-1", now)],
            now,
        )
        .await;

    let Outcome::Permanent { error } = &report.outcomes[0] else {
        panic!("{:?}", report.outcomes);
    };
    assert!(
        error.contains("CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE"),
        "{error}"
    );
    assert!(error.contains("HTTP 400 INVALID_ARGUMENT"), "{error}");
    assert_eq!(
        report.request_for(0).unwrap().error.as_deref(),
        Some(error.as_str())
    );
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.token-1").await;
    mount_upload(
        &server,
        ResponseTemplate::new(200)
            .set_body_json(ok_results(1))
            .set_delay(Duration::from_secs(3)),
    )
    .await;
    let now = OffsetDateTime::now_utc();

    let report = platforms(&server, Duration::from_millis(300))
        .send_google(
            &google_config(GoogleApi::GoogleAdsApi),
            &google_creds(),
            &[sale("INV-1", now)],
            now,
        )
        .await;

    let Outcome::Retry { error, after } = &report.outcomes[0] else {
        panic!("{:?}", report.outcomes);
    };
    assert!(error.contains("timeout"), "{error}");
    assert_eq!(*after, None);
    let record = report.request_for(0).unwrap();
    assert_eq!(record.http_status, None);
    assert!(record.error.as_deref().unwrap().contains("timeout"));
    assert!(
        !record.error.as_deref().unwrap().contains("127.0.0.1"),
        "no URL in errors"
    );
}

#[tokio::test]
async fn an_answer_that_is_not_json_is_a_retried_failure() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.token-1").await;
    mount_upload(
        &server,
        ResponseTemplate::new(200).set_body_raw("<html>upstream glitch</html>", "text/html"),
    )
    .await;
    let now = OffsetDateTime::now_utc();

    let report = platforms(&server, TIMEOUT)
        .send_google(
            &google_config(GoogleApi::GoogleAdsApi),
            &google_creds(),
            &[sale("INV-1", now)],
            now,
        )
        .await;

    assert!(
        matches!(&report.outcomes[0], Outcome::Retry { error, .. } if error.contains("unexpected response")),
        "{:?}",
        report.outcomes
    );
    assert_eq!(
        report.request_for(0).unwrap().response_excerpt,
        "<html>upstream glitch</html>"
    );
}

#[tokio::test]
async fn a_revoked_refresh_token_fails_every_conversion_permanently_without_sending() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(Strict(check_oauth))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant", "error_description": "Token has been expired or revoked."})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path(UPLOAD))
        .respond_with(Accept)
        .expect(0)
        .mount(&server)
        .await;
    let now = OffsetDateTime::now_utc();

    let report = platforms(&server, TIMEOUT)
        .send_google(
            &google_config(GoogleApi::GoogleAdsApi),
            &google_creds(),
            &[sale("INV-1", now), sale("INV-2", now)],
            now,
        )
        .await;

    for outcome in &report.outcomes {
        assert!(
            matches!(outcome, Outcome::Permanent { error } if error.contains("invalid_grant")),
            "{outcome:?}"
        );
    }
    assert_eq!(report.requests.len(), 1);
    assert_eq!(report.requests[0].target, RequestTarget::GoogleOAuth);
    assert_eq!(report.requests[0].http_status, Some(400));
    assert_eq!(report.requests[0].conversions, vec![0, 1]);
    assert_no_secrets(&report, &[]);
    assert_requests_strict(&server).await;
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_sends_again() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(Strict(check_oauth))
        .respond_with(TokenSequence {
            tokens: vec!["ya29.stale", "ya29.fresh"],
            expires_in: 3599,
            served: AtomicUsize::new(0),
        })
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(UPLOAD))
        .and(header("authorization", "Bearer ya29.stale"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {
            "code": 401, "status": "UNAUTHENTICATED", "message": "Request had invalid authentication credentials."}})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(UPLOAD))
        .and(header("authorization", "Bearer ya29.fresh"))
        .and(Strict(check_ads_upload))
        .respond_with(Accept)
        .expect(2)
        .mount(&server)
        .await;
    let now = OffsetDateTime::now_utc();
    let platforms = platforms(&server, TIMEOUT);
    let config = google_config(GoogleApi::GoogleAdsApi);

    let report = platforms
        .send_google(&config, &google_creds(), &[sale("INV-1", now)], now)
        .await;
    assert_eq!(report.outcomes, vec![Outcome::Succeeded]);
    let targets: Vec<_> = report
        .requests
        .iter()
        .map(|r| (r.target, r.http_status))
        .collect();
    assert_eq!(
        targets,
        vec![
            (RequestTarget::GoogleOAuth, Some(200)),
            (RequestTarget::GoogleAdsUploadClickConversions, Some(401)),
            (RequestTarget::GoogleOAuth, Some(200)),
            (RequestTarget::GoogleAdsUploadClickConversions, Some(200)),
        ]
    );
    assert_no_secrets(&report, &["ya29.stale", "ya29.fresh"]);

    // The refreshed token is cached: the next send needs no exchange.
    let again = platforms
        .send_google(&config, &google_creds(), &[sale("INV-2", now)], now)
        .await;
    assert_eq!(again.outcomes, vec![Outcome::Succeeded]);
    assert_eq!(again.requests.len(), 1);
}

#[tokio::test]
async fn a_second_401_after_refreshing_is_permanent() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.token-1").await;
    Mock::given(method("POST"))
        .and(path(UPLOAD))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {
            "code": 401, "status": "UNAUTHENTICATED", "message": "Request had invalid authentication credentials."}})))
        .expect(2)
        .mount(&server)
        .await;
    let now = OffsetDateTime::now_utc();

    let report = platforms(&server, TIMEOUT)
        .send_google(
            &google_config(GoogleApi::GoogleAdsApi),
            &google_creds(),
            &[sale("INV-1", now)],
            now,
        )
        .await;

    assert!(
        matches!(&report.outcomes[0], Outcome::Permanent { error } if error.contains("UNAUTHENTICATED")),
        "{:?}",
        report.outcomes
    );
}

#[tokio::test]
async fn access_tokens_near_expiry_are_not_reused() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(TokenSequence {
            tokens: vec!["ya29.short"],
            expires_in: 60,
            served: AtomicUsize::new(0),
        })
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(UPLOAD))
        .respond_with(Accept)
        .mount(&server)
        .await;
    let now = OffsetDateTime::now_utc();
    let platforms = platforms(&server, TIMEOUT);
    let config = google_config(GoogleApi::GoogleAdsApi);
    for invoice in ["INV-1", "INV-2"] {
        let report = platforms
            .send_google(&config, &google_creds(), &[sale(invoice, now)], now)
            .await;
        assert_eq!(report.outcomes, vec![Outcome::Succeeded]);
    }
}

#[tokio::test]
async fn batches_are_cut_into_requests_of_2000() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.token-1").await;
    mount_upload(&server, Accept).await;
    let now = OffsetDateTime::now_utc();
    let batch: Vec<_> = (0..4001).map(|n| sale(&format!("INV-{n}"), now)).collect();

    let report = platforms(&server, TIMEOUT)
        .send_google(
            &google_config(GoogleApi::GoogleAdsApi),
            &google_creds(),
            &batch,
            now,
        )
        .await;

    assert!(report
        .outcomes
        .iter()
        .all(|outcome| *outcome == Outcome::Succeeded));
    let sizes: Vec<usize> = bodies(&server, ":uploadClickConversions")
        .await
        .iter()
        .map(|body| body["conversions"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![2000, 2000, 1]);
    assert_eq!(report.request_for(4000).unwrap().conversions, vec![4000]);
    assert_requests_strict(&server).await;
}

#[tokio::test]
async fn consent_denied_sends_the_click_id_only_or_skips() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.token-1").await;
    mount_upload(&server, Accept).await;
    let now = OffsetDateTime::now_utc();
    let batch = vec![
        deny_user_data(sale("INV-1", now)),
        deny_user_data(without_clicks(lead(Some("lead-1"), now))),
    ];

    let report = platforms(&server, TIMEOUT)
        .send_google(
            &google_config(GoogleApi::GoogleAdsApi),
            &google_creds(),
            &batch,
            now,
        )
        .await;

    assert_eq!(report.outcomes[0], Outcome::Succeeded);
    assert!(
        matches!(&report.outcomes[1], Outcome::Skipped { reason } if reason.starts_with("consent_denied")),
        "{:?}",
        report.outcomes[1]
    );
    let body = &bodies(&server, ":uploadClickConversions").await[0];
    let sent = body["conversions"].as_array().unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["gclid"], GCLID);
    assert_eq!(sent[0]["consent"], json!({"adUserData": "DENIED"}));
    assert!(sent[0].get("userIdentifiers").is_none());
    assert!(report.request_for(1).is_none());
    assert_requests_strict(&server).await;
}

#[tokio::test]
async fn retraction_is_an_adjustment_by_order_id() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.token-1").await;
    Mock::given(method("POST"))
        .and(path(ADJUST))
        .and(header("authorization", "Bearer ya29.token-1"))
        .and(header("login-customer-id", LOGIN_CUSTOMER_ID))
        .and(Strict(check_ads_adjustments))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "partialFailureError": {"code": 3, "message": "m", "details": [{
                "@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
                "errors": [{"errorCode": {"conversionAdjustmentUploadError": "CONVERSION_ALREADY_RETRACTED"},
                  "message": "already",
                  "location": {"fieldPathElements": [{"fieldName": "conversion_adjustments", "index": 1}]}}]}]},
            "results": [{"orderId": "INV-1"}, {}]})))
        .expect(1)
        .mount(&server)
        .await;
    let now = OffsetDateTime::now_utc();
    let lead_conversion = lead(Some("lead-5"), now);

    let report = platforms(&server, TIMEOUT)
        .retract_google(
            &google_config(GoogleApi::GoogleAdsApi),
            &google_creds(),
            &[sale("INV-1", now), lead_conversion],
            now,
        )
        .await;

    assert_eq!(report.outcomes[0], Outcome::Succeeded);
    assert_eq!(report.outcomes[1], Outcome::AlreadyDelivered);
    let body = &bodies(&server, ":uploadConversionAdjustments").await[0];
    let items = body["conversionAdjustments"].as_array().unwrap();
    assert_eq!(items[0]["orderId"], "INV-1");
    assert_eq!(items[0]["adjustmentType"], "RETRACTION");
    assert_eq!(
        items[0]["conversionAction"],
        format!("customers/{CUSTOMER_ID}/conversionActions/{SALE_ACTION}")
    );
    assert!(items[0].get("restatementValue").is_none());
    assert_eq!(items[1]["orderId"], "lead-5");
    assert_eq!(
        report.request_for(0).unwrap().target,
        RequestTarget::GoogleAdsUploadConversionAdjustments
    );
    assert_requests_strict(&server).await;
}

#[tokio::test]
async fn retraction_through_data_manager_is_not_supported_and_sends_nothing() {
    let server = MockServer::start().await;
    let now = OffsetDateTime::now_utc();

    let report = platforms(&server, TIMEOUT)
        .retract_google(
            &google_config(GoogleApi::DataManager),
            &google_creds(),
            &[sale("INV-1", now)],
            now,
        )
        .await;

    assert_eq!(
        report.outcomes,
        vec![Outcome::Skipped {
            reason: "not_supported".into()
        }]
    );
    assert!(report.requests.is_empty());
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_missing_conversion_action_is_permanent_and_not_sent() {
    let server = MockServer::start().await;
    let now = OffsetDateTime::now_utc();
    let mut config = google_config(GoogleApi::GoogleAdsApi);
    config.conversion_actions.lead = None;

    let report = platforms(&server, TIMEOUT)
        .send_google(&config, &google_creds(), &[lead(Some("l-1"), now)], now)
        .await;

    assert!(
        matches!(&report.outcomes[0], Outcome::Permanent { error } if error.contains("lead")),
        "{:?}",
        report.outcomes
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_click_older_than_90_days_is_skipped_as_too_old_and_never_sent() {
    let server = MockServer::start().await;
    let now = OffsetDateTime::now_utc();
    let mut old = sale("INV-OLD-CLICK", now);
    if let Some(click) = old.attribution.click.as_mut() {
        click.clicked_at = now - time::Duration::days(91);
    }

    for api in [GoogleApi::GoogleAdsApi, GoogleApi::DataManager] {
        let report = platforms(&server, TIMEOUT)
            .send_google(&google_config(api), &google_creds(), &[old.clone()], now)
            .await;
        assert_eq!(
            report.outcomes,
            [Outcome::Skipped {
                reason: platforms::TOO_OLD_FOR_PLATFORM.into()
            }]
        );
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn restatement_is_an_adjustment_carrying_the_new_total() {
    use platforms::Platform;
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.token-1").await;
    Mock::given(method("POST"))
        .and(path(ADJUST))
        .and(header("authorization", "Bearer ya29.token-1"))
        .and(Strict(check_ads_adjustments))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "partialFailureError": {"code": 3, "message": "m", "details": [{
                "@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
                "errors": [{"errorCode": {"conversionAdjustmentUploadError": "TOO_RECENT_CONVERSION"},
                  "message": "too recent",
                  "location": {"fieldPathElements": [{"fieldName": "conversion_adjustments", "index": 1}]}}]}]},
            "results": [{"orderId": "INV-1"}, {}]})))
        .expect(1)
        .mount(&server)
        .await;
    let now = OffsetDateTime::now_utc();
    let mut first = sale("INV-1", now);
    let mut second = sale("INV-2", now);
    for (conversion, amount) in [(&mut first, "70.5"), (&mut second, "0")] {
        let currency = conversion.event.value.unwrap().currency();
        conversion.event.value =
            Some(events::Money::new(amount.parse().unwrap(), currency).unwrap());
    }
    let google = platforms::google::Google;
    assert!(google.supports_restatement(&google_config(GoogleApi::GoogleAdsApi)));
    assert!(!google.supports_restatement(&google_config(GoogleApi::DataManager)));

    let report = google
        .restate(
            &platforms(&server, TIMEOUT),
            &google_config(GoogleApi::GoogleAdsApi),
            &google_creds(),
            &[first, second],
            now,
        )
        .await;

    assert_eq!(report.outcomes[0], Outcome::Succeeded);
    assert!(
        matches!(&report.outcomes[1], Outcome::Retry { after: Some(wait), .. } if *wait == Duration::from_secs(24 * 3600)),
        "{:?}",
        report.outcomes[1]
    );
    let body = &bodies(&server, ":uploadConversionAdjustments").await[0];
    let items = body["conversionAdjustments"].as_array().unwrap();
    assert_eq!(items[0]["adjustmentType"], "RESTATEMENT");
    assert_eq!(items[0]["orderId"], "INV-1");
    assert_eq!(
        items[0]["restatementValue"]["adjustedValue"].as_f64(),
        Some(70.5)
    );
    assert_eq!(items[0]["restatementValue"]["currencyCode"], "EUR");
    assert_eq!(
        items[1]["restatementValue"]["adjustedValue"].as_f64(),
        Some(0.0)
    );
    assert_eq!(body["partialFailure"], true);
    assert_requests_strict(&server).await;
}

#[tokio::test]
async fn restatement_through_data_manager_is_not_supported_and_sends_nothing() {
    use platforms::Platform;
    let server = MockServer::start().await;
    let now = OffsetDateTime::now_utc();
    let report = platforms::google::Google
        .restate(
            &platforms(&server, TIMEOUT),
            &google_config(GoogleApi::DataManager),
            &google_creds(),
            &[sale("INV-1", now)],
            now,
        )
        .await;
    assert_eq!(
        report.outcomes,
        vec![Outcome::Skipped {
            reason: platforms::NOT_SUPPORTED.into()
        }]
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}
