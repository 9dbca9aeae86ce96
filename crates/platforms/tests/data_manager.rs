//! Google Data Manager API `events:ingest`, against a fake that checks requests as strictly as
//! the real API and, like it, refuses a whole request for one bad event.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use platforms::google::{AccessLevel, GoogleAdsConfig, GoogleApi};
use platforms::model::Outcome;
use platforms::RequestTarget;
use serde_json::{json, Value};
use support::*;
use time::OffsetDateTime;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const INGEST: &str = "/v1/events:ingest";
const TIMEOUT: Duration = Duration::from_secs(5);

/// Refuses (400, fast-fail) every request holding an event whose transactionId starts with
/// `BAD`, naming those events by index as Google does; accepts the others.
struct FastFail;

impl Respond for FastFail {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let violations: Vec<Value> = body["events"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .filter(|(_, event)| event["transactionId"].as_str().unwrap().starts_with("BAD"))
            .map(|(index, _)| {
                json!({"field": format!("events.events[{index}].user_data.user_identifiers[0]"),
                       "reason": "INVALID_HEX_ENCODING", "description": "The HEX encoded value is malformed."})
            })
            .collect();
        if violations.is_empty() {
            return ResponseTemplate::new(200).set_body_json(json!({"requestId": "dm-ok"}));
        }
        ResponseTemplate::new(400).set_body_json(json!({"error": {
            "code": 400, "status": "INVALID_ARGUMENT", "message": "Request contains an invalid argument.",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "INVALID_ARGUMENT",
                 "domain": "datamanager.googleapis.com", "metadata": {"requestId": "t-1"}},
                {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations}]}}))
    }
}

async fn mount_ingest(server: &MockServer, response: impl Respond + 'static) {
    Mock::given(method("POST"))
        .and(path(INGEST))
        .and(header("authorization", "Bearer ya29.dm"))
        .and(header("content-type", "application/json"))
        .and(Strict(check_data_manager))
        .respond_with(response)
        .mount(server)
        .await;
}

fn accept() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"requestId": "dm-req-1"}))
}

#[tokio::test]
async fn ingest_sends_every_field_in_data_manager_format() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.dm").await;
    mount_ingest(&server, accept()).await;
    let now = OffsetDateTime::now_utc();
    let sale_conversion = sale("INV-1", now);
    let lead_conversion = without_clicks(lead(None, now));
    let batch = vec![sale_conversion.clone(), lead_conversion.clone()];

    let report = platforms(&server, TIMEOUT)
        .send_google(
            &google_config(GoogleApi::DataManager),
            &google_creds(),
            &batch,
            now,
        )
        .await;

    assert_eq!(report.outcomes, vec![Outcome::Succeeded; 2]);
    assert_requests_strict(&server).await;
    let body = &bodies(&server, INGEST).await[0];
    assert_eq!(body["encoding"], "HEX");
    let destinations = body["destinations"].as_array().unwrap();
    assert_eq!(
        destinations.len(),
        2,
        "one destination per conversion action"
    );
    let sale_destination = destinations
        .iter()
        .find(|d| d["productDestinationId"] == SALE_ACTION)
        .unwrap();
    assert_eq!(
        sale_destination["operatingAccount"],
        json!({"accountType": "GOOGLE_ADS", "accountId": CUSTOMER_ID})
    );
    assert_eq!(
        sale_destination["loginAccount"],
        json!({"accountType": "GOOGLE_ADS", "accountId": LOGIN_CUSTOMER_ID})
    );
    let events = body["events"].as_array().unwrap();
    let sale_event = &events[0];
    assert_eq!(
        sale_event["destinationReferences"],
        json!([sale_destination["reference"]])
    );
    assert_eq!(sale_event["transactionId"], "INV-1");
    let at = sale_conversion.event.timestamp;
    assert_eq!(
        sale_event["eventTimestamp"],
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        )
    );
    assert_eq!(sale_event["eventSource"], "WEB");
    assert_eq!(sale_event["adIdentifiers"], json!({"gclid": GCLID}));
    assert_eq!(sale_event["conversionValue"].as_f64(), Some(149.0));
    assert_eq!(sale_event["currency"], "EUR");
    assert_eq!(
        sale_event["userData"],
        json!({"userIdentifiers": [{"emailAddress": GOOGLE_EMAIL_SHA256}, {"phoneNumber": GOOGLE_PHONE_SHA256}]})
    );
    assert_eq!(
        sale_event["consent"],
        json!({"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"})
    );
    assert_eq!(
        sale_event["eventDeviceInfo"],
        json!({"userAgent": "Mozilla/5.0 (test)", "ipAddress": "203.0.113.7"})
    );
    let lead_event = &events[1];
    assert_eq!(lead_event["transactionId"], evt(&lead_conversion));
    assert!(lead_event.get("adIdentifiers").is_none());
    assert!(lead_event.get("conversionValue").is_none());

    let record = report.request_for(1).unwrap();
    assert_eq!(record.target, RequestTarget::GoogleDataManagerIngest);
    assert_eq!(record.platform_request_id.as_deref(), Some("dm-req-1"));
    assert_no_secrets(&report, &["ya29.dm"]);
}

#[tokio::test]
async fn events_named_by_a_400_fail_and_the_rest_are_resent_at_once() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.dm").await;
    mount_ingest(&server, FastFail).await;
    let now = OffsetDateTime::now_utc();
    let batch = vec![
        sale("GOOD-1", now),
        sale("BAD-1", now),
        sale("GOOD-2", now),
        sale("BAD-2", now),
        sale("GOOD-3", now),
    ];

    let report = platforms(&server, TIMEOUT)
        .send_google(
            &google_config(GoogleApi::DataManager),
            &google_creds(),
            &batch,
            now,
        )
        .await;

    for index in [0, 2, 4] {
        assert_eq!(report.outcomes[index], Outcome::Succeeded, "{index}");
    }
    for index in [1, 3] {
        let Outcome::Permanent { error } = &report.outcomes[index] else {
            panic!("{index}: {:?}", report.outcomes[index]);
        };
        assert!(error.contains("INVALID_HEX_ENCODING"), "{error}");
    }
    let sent = bodies(&server, INGEST).await;
    assert_eq!(sent.len(), 2, "one refused request, one re-send");
    let resent: Vec<&str> = sent[1]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["transactionId"].as_str().unwrap())
        .collect();
    assert_eq!(resent, vec!["GOOD-1", "GOOD-2", "GOOD-3"]);
    let ingest_records: Vec<_> = report
        .requests
        .iter()
        .filter(|record| record.target == RequestTarget::GoogleDataManagerIngest)
        .collect();
    assert_eq!(ingest_records[0].http_status, Some(400));
    assert_eq!(ingest_records[0].conversions, vec![0, 1, 2, 3, 4]);
    assert_eq!(ingest_records[1].conversions, vec![0, 2, 4]);
    assert_eq!(report.request_for(1).unwrap().http_status, Some(400));
    assert_requests_strict(&server).await;
}

#[tokio::test]
async fn a_400_naming_no_event_fails_the_whole_request() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.dm").await;
    mount_ingest(
        &server,
        ResponseTemplate::new(400).set_body_json(json!({"error": {
            "code": 400, "status": "INVALID_ARGUMENT", "message": "Request contains an invalid argument.",
            "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [
                {"field": "destinations[0].product_destination_id", "reason": "INVALID_CONVERSION_ACTION_ID",
                 "description": "The conversion action does not exist."}]}]}})),
    )
    .await;
    let now = OffsetDateTime::now_utc();

    let report = platforms(&server, TIMEOUT)
        .send_google(
            &google_config(GoogleApi::DataManager),
            &google_creds(),
            &[sale("INV-1", now), sale("INV-2", now)],
            now,
        )
        .await;

    for outcome in &report.outcomes {
        assert!(matches!(outcome, Outcome::Permanent { .. }), "{outcome:?}");
    }
    assert_eq!(bodies(&server, INGEST).await.len(), 1);
}

#[tokio::test]
async fn two_503s_then_200_resend_the_same_transaction_id() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.dm").await;
    Mock::given(method("POST"))
        .and(path(INGEST))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({"error": {
            "code": 503, "status": "UNAVAILABLE", "message": "The service is currently unavailable."}})))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_ingest(&server, accept()).await;
    let now = OffsetDateTime::now_utc();
    let batch = vec![sale("INV-9", now)];
    let platforms = platforms(&server, TIMEOUT);
    let config = google_config(GoogleApi::DataManager);

    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.push(
            platforms
                .send_google(&config, &google_creds(), &batch, now)
                .await
                .outcomes[0]
                .clone(),
        );
    }

    assert!(matches!(outcomes[0], Outcome::Retry { .. }));
    assert!(matches!(outcomes[1], Outcome::Retry { .. }));
    assert_eq!(outcomes[2], Outcome::Succeeded);
    let sent = bodies(&server, INGEST).await;
    assert_eq!(sent.len(), 3);
    assert!(
        sent.iter().all(|body| body == &sent[0]),
        "identical re-sends"
    );
    assert_eq!(sent[0]["events"][0]["transactionId"], "INV-9");
    assert_requests_strict(&server).await;
}

#[tokio::test]
async fn a_429_honours_retry_after() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.dm").await;
    mount_ingest(
        &server,
        ResponseTemplate::new(429)
            .insert_header("retry-after", "45")
            .set_body_json(json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Quota exceeded."}})),
    )
    .await;
    let now = OffsetDateTime::now_utc();

    let report = platforms(&server, TIMEOUT)
        .send_google(
            &google_config(GoogleApi::DataManager),
            &google_creds(),
            &[sale("INV-1", now)],
            now,
        )
        .await;

    assert!(
        matches!(&report.outcomes[0], Outcome::Retry { after: Some(after), .. } if *after == Duration::from_secs(45)),
        "{:?}",
        report.outcomes
    );
}

#[tokio::test]
async fn a_403_is_permanent() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.dm").await;
    mount_ingest(
        &server,
        ResponseTemplate::new(403).set_body_json(json!({"error": {"code": 403, "status": "PERMISSION_DENIED",
            "message": "Data Manager API has not been used in project 1 before or it is disabled.",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED"}]}})),
    )
    .await;
    let now = OffsetDateTime::now_utc();

    let report = platforms(&server, TIMEOUT)
        .send_google(
            &google_config(GoogleApi::DataManager),
            &google_creds(),
            &[sale("INV-1", now)],
            now,
        )
        .await;

    assert!(
        matches!(&report.outcomes[0], Outcome::Permanent { error } if error.contains("PERMISSION_DENIED")),
        "{:?}",
        report.outcomes
    );
}

#[tokio::test]
async fn consent_denied_sends_click_ids_only_and_skips_what_has_none() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.dm").await;
    mount_ingest(&server, accept()).await;
    let now = OffsetDateTime::now_utc();
    let batch = vec![
        deny_user_data(sale("INV-1", now)),
        deny_user_data(without_clicks(sale("INV-2", now))),
    ];

    let report = platforms(&server, TIMEOUT)
        .send_google(
            &google_config(GoogleApi::DataManager),
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
    let body = &bodies(&server, INGEST).await[0];
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["adIdentifiers"], json!({"gclid": GCLID}));
    assert!(events[0].get("userData").is_none());
    assert!(events[0].get("eventDeviceInfo").is_none());
    assert_eq!(
        events[0]["consent"],
        json!({"adUserData": "CONSENT_DENIED", "adPersonalization": "CONSENT_DENIED"})
    );
    assert_requests_strict(&server).await;
}

#[tokio::test]
async fn batches_are_cut_into_requests_of_2000_events() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.dm").await;
    mount_ingest(&server, accept()).await;
    let now = OffsetDateTime::now_utc();
    let batch: Vec<_> = (0..2001).map(|n| sale(&format!("INV-{n}"), now)).collect();

    let report = platforms(&server, TIMEOUT)
        .send_google(
            &google_config(GoogleApi::DataManager),
            &google_creds(),
            &batch,
            now,
        )
        .await;

    assert!(report
        .outcomes
        .iter()
        .all(|outcome| *outcome == Outcome::Succeeded));
    let sizes: Vec<usize> = bodies(&server, INGEST)
        .await
        .iter()
        .map(|body| body["events"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![2000, 1]);
    assert_requests_strict(&server).await;
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.dm").await;
    mount_ingest(&server, accept().set_delay(Duration::from_secs(3))).await;
    let now = OffsetDateTime::now_utc();

    let report = platforms(&server, Duration::from_millis(300))
        .send_google(
            &google_config(GoogleApi::DataManager),
            &google_creds(),
            &[sale("INV-1", now)],
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
async fn events_stamped_slightly_ahead_of_now_are_not_sent_in_the_future() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.dm").await;
    mount_ingest(&server, accept()).await;
    let now = OffsetDateTime::now_utc();
    let mut ahead = sale("INV-1", now);
    ahead.event.timestamp = now + time::Duration::minutes(3);

    let report = platforms(&server, TIMEOUT)
        .send_google(
            &google_config(GoogleApi::DataManager),
            &google_creds(),
            &[ahead],
            now,
        )
        .await;

    assert_eq!(report.outcomes, vec![Outcome::Succeeded]);
    assert_requests_strict(&server).await;
}

// ---- requestStatus:retrieve: the upload's processing status, read back once per request.

const STATUS: &str = "/v1/requestStatus:retrieve";

/// The status Google reports for `dm-req-1` (the only request id this fake issued); any other id
/// is `INVALID_REQUEST_ID`, as for a failed or validateOnly request.
struct RequestStatus(Value);

impl Respond for RequestStatus {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "requestId")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if id != "dm-req-1" {
            return ResponseTemplate::new(400).set_body_json(json!({"error": {
                "code": 400, "status": "INVALID_ARGUMENT", "message": "Request contains an invalid argument.",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                             "reason": "INVALID_REQUEST_ID", "domain": "datamanager.googleapis.com"}]}}));
        }
        ResponseTemplate::new(200).set_body_json(self.0.clone())
    }
}

async fn mount_status(server: &MockServer, answer: Value) {
    Mock::given(method("GET"))
        .and(path(STATUS))
        .and(header("authorization", "Bearer ya29.dm"))
        .and(Strict(check_request_status))
        .respond_with(RequestStatus(answer))
        .mount(server)
        .await;
}

fn per_destination(status: &str, records: &str, errors: Value) -> Value {
    json!({"requestStatusPerDestination": [{
        "destination": {"reference": "conversion_action_987654321",
                        "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": CUSTOMER_ID},
                        "productDestinationId": SALE_ACTION},
        "requestStatus": status,
        "eventsIngestionStatus": {"recordCount": records},
        "errorInfo": {"errorCounts": errors}}]})
}

async fn check(server: &MockServer, request_id: &str) -> platforms::delivery::CheckReport {
    platforms::Platform::check_upload(
        &platforms::google::Google,
        &platforms(server, TIMEOUT),
        &google_config(GoogleApi::DataManager),
        &google_creds(),
        request_id,
    )
    .await
}

#[tokio::test]
async fn a_processed_upload_is_confirmed_and_its_counts_are_kept() {
    use platforms::delivery::{ConfirmationStatus, UploadCheck};
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.dm").await;
    mount_status(&server, per_destination("SUCCESS", "3", json!([]))).await;

    let report = check(&server, "dm-req-1").await;
    match &report.check {
        UploadCheck::Final { status, detail } => {
            assert_eq!(*status, ConfirmationStatus::Confirmed);
            assert!(detail.contains("SUCCESS, 3 records"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert_requests_strict(&server).await;
    let statuses: Vec<_> = report
        .requests
        .iter()
        .filter(|r| r.target == RequestTarget::GoogleDataManagerRequestStatus)
        .collect();
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].http_status, Some(200));
}

#[tokio::test]
async fn rejected_records_make_an_upload_partially_failed_or_failed_with_the_reasons() {
    use platforms::delivery::{ConfirmationStatus, UploadCheck};
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.dm").await;
    mount_status(
        &server,
        per_destination(
            "PARTIAL_SUCCESS",
            "5",
            json!([{"reason": "PROCESSING_ERROR_REASON_CLICK_NOT_FOUND", "recordCount": "2"}]),
        ),
    )
    .await;
    match check(&server, "dm-req-1").await.check {
        UploadCheck::Final { status, detail } => {
            assert_eq!(status, ConfirmationStatus::PartiallyFailed);
            assert!(
                detail.contains("PROCESSING_ERROR_REASON_CLICK_NOT_FOUND × 2"),
                "{detail}"
            );
        }
        other => panic!("{other:?}"),
    }

    let failed = MockServer::start().await;
    mount_oauth(&failed, "ya29.dm").await;
    mount_status(
        &failed,
        per_destination(
            "FAILED",
            "0",
            json!([{"reason": "PROCESSING_ERROR_REASON_EVENT_TOO_OLD", "recordCount": 4}]),
        ),
    )
    .await;
    match check(&failed, "dm-req-1").await.check {
        UploadCheck::Final { status, detail } => {
            assert_eq!(status, ConfirmationStatus::Failed);
            assert!(detail.contains("EVENT_TOO_OLD × 4"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert_requests_strict(&server).await;
    assert_requests_strict(&failed).await;
}

#[tokio::test]
async fn a_processing_upload_stays_pending_and_an_unknown_request_id_cannot_be_checked() {
    use platforms::delivery::UploadCheck;
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.dm").await;
    mount_status(&server, per_destination("PROCESSING", "0", json!([]))).await;
    assert!(matches!(
        check(&server, "dm-req-1").await.check,
        UploadCheck::Processing { .. }
    ));
    match check(&server, "dm-unknown").await.check {
        UploadCheck::Unavailable { error } => {
            assert!(error.contains("HTTP 400"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert_requests_strict(&server).await;
}

#[tokio::test]
async fn a_failing_status_call_is_checked_again_later() {
    use platforms::delivery::UploadCheck;
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.dm").await;
    Mock::given(method("GET"))
        .and(path(STATUS))
        .and(Strict(check_request_status))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({"error": {
            "code": 503, "status": "UNAVAILABLE", "message": "The service is currently unavailable."}})))
        .mount(&server)
        .await;
    assert!(matches!(
        check(&server, "dm-req-1").await.check,
        UploadCheck::Retry { .. }
    ));
}

#[tokio::test]
async fn an_accepted_upload_without_a_request_id_is_sent_again() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.dm").await;
    mount_ingest(&server, ResponseTemplate::new(200).set_body_json(json!({}))).await;
    let now = OffsetDateTime::now_utc();
    let report = platforms(&server, TIMEOUT)
        .send_google(
            &google_config(GoogleApi::DataManager),
            &google_creds(),
            &[sale("INV-1", now)],
            now,
        )
        .await;
    assert!(
        matches!(&report.outcomes[0], Outcome::Retry { error, .. } if error.contains("no requestId")),
        "{:?}",
        report.outcomes
    );
}

#[tokio::test]
async fn resource_exhausted_with_a_long_retry_delay_parks_the_destination() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.dm").await;
    mount_ingest(
        &server,
        ResponseTemplate::new(429).set_body_json(json!({"error": {
            "code": 429, "message": "Resource has been exhausted (e.g. check quota).",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7200s"}]}})),
    )
    .await;
    let now = OffsetDateTime::now_utc();
    let report = platforms(&server, TIMEOUT)
        .send_google(
            &google_config(GoogleApi::DataManager),
            &google_creds(),
            &[sale("INV-1", now)],
            now,
        )
        .await;
    let park = report.park.expect("a park");
    assert_eq!(park.wait, Duration::from_secs(7200));
    assert!(
        park.reason.contains("RESOURCE_EXHAUSTED"),
        "{}",
        park.reason
    );
}

#[test]
fn data_manager_sends_are_paced_per_cloud_project() {
    use platforms::Platform;
    let google = platforms::google::Google;
    let quota = google
        .quota(&google_config(GoogleApi::DataManager), &google_creds())
        .unwrap();
    assert_eq!(quota.per_minute, Some(300));
    assert_eq!(quota.per_day, Some(100_000));
    assert!(quota.bucket.starts_with("google-cloud-project:"));
    assert!(!quota.bucket.contains(&google_creds().client_id));
    // The Ads API counts operations by the project's access level, when the destination says.
    assert_eq!(
        google.quota(&google_config(GoogleApi::GoogleAdsApi), &google_creds()),
        None
    );
    for (level, operations) in [
        (AccessLevel::Explorer, Some(2_880)),
        (AccessLevel::Basic, Some(15_000)),
        (AccessLevel::Standard, None),
        (AccessLevel::Test, None),
    ] {
        let config = GoogleAdsConfig {
            access_level: Some(level),
            ..google_config(GoogleApi::GoogleAdsApi)
        };
        let quota = google.quota(&config, &google_creds());
        assert_eq!(
            quota.as_ref().and_then(|q| q.operations_per_day),
            operations
        );
        if let Some(quota) = quota {
            assert_eq!((quota.per_minute, quota.per_day), (None, None));
            assert!(quota.bucket.starts_with("google-ads-api-operations:"));
            assert!(!quota.bucket.contains(&google_creds().client_id));
        }
    }
}
