//! Delivery truth on a real PostgreSQL against a strict Data Manager fake: accepted uploads stay
//! `pending` until one status call per upload request settles every conversion it carried;
//! synchronous platforms are confirmed at once; sends are paced to the platform's quota through
//! a bucket every worker shares; a platform asking to come back in hours parks the destination
//! without spending attempts.
#![allow(clippy::unwrap_used)]

mod worker_support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use events::AttributionStatus;
use forwarder::platforms::delivery::ConfirmationStatus;
use forwarder::{DispatchFilter, DispatchStatus, Forwarder};
use serde_json::{json, Value};
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Match, Mock, MockServer, Request, Respond, ResponseTemplate};
use worker_support::*;

const INGEST: &str = "/v1/events:ingest";
const STATUS: &str = "/v1/requestStatus:retrieve";

/// What the Data Manager fake has issued and will answer.
#[derive(Default)]
struct State {
    issued: Vec<String>,
    /// Answers of the status calls, in turn (the last one repeatedly).
    statuses: VecDeque<Value>,
    /// When set, ingestion answers this 429 body.
    exhausted: Option<Value>,
}

#[derive(Clone, Default)]
struct DataManager(Arc<Mutex<State>>);

fn problems_of(request: &Request) -> Vec<String> {
    let mut problems = Vec::new();
    let bearer = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "Bearer ya29.dm");
    if !bearer {
        problems.push("no bearer token".to_owned());
    }
    for forbidden in ["developer-token", "login-customer-id"] {
        if request.headers.get(forbidden).is_some() {
            problems.push(format!("{forbidden} must not be sent"));
        }
    }
    match (request.method.as_str(), request.url.path()) {
        ("POST", INGEST) => {
            let body: Option<Value> = serde_json::from_slice(&request.body).ok();
            let events = body
                .as_ref()
                .and_then(|b| b.get("events"))
                .and_then(Value::as_array);
            if events.is_none_or(|e| e.is_empty() || e.len() > 2000) {
                problems.push("events must hold 1 to 2000 events".into());
            }
            if request.url.query().is_some() {
                problems.push("events:ingest takes no query".into());
            }
        }
        ("GET", STATUS) => {
            let pairs: Vec<(String, String)> = request
                .url
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if !matches!(pairs.as_slice(), [(k, v)] if k == "requestId" && !v.is_empty()) {
                problems.push(format!("query must be one requestId: {pairs:?}"));
            }
            if !request.body.is_empty() {
                problems.push("a GET has no body".into());
            }
        }
        (method, path) => problems.push(format!("unexpected {method} {path}")),
    }
    problems
}

struct Strict;

impl Match for Strict {
    fn matches(&self, request: &Request) -> bool {
        problems_of(request).is_empty()
    }
}

impl Respond for DataManager {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.0.lock().unwrap();
        if request.url.path() == INGEST {
            if let Some(body) = &state.exhausted {
                return ResponseTemplate::new(429).set_body_json(body.clone());
            }
            let id = format!("dm-req-{}", state.issued.len() + 1);
            state.issued.push(id.clone());
            return ResponseTemplate::new(200).set_body_json(json!({"requestId": id}));
        }
        let id = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "requestId")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if !state.issued.contains(&id) {
            return ResponseTemplate::new(400).set_body_json(json!({"error": {
                "code": 400, "status": "INVALID_ARGUMENT", "message": "invalid request id",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                             "reason": "INVALID_REQUEST_ID"}]}}));
        }
        let answer = if state.statuses.len() > 1 {
            state.statuses.pop_front().unwrap()
        } else {
            state.statuses.front().cloned().unwrap_or(json!({}))
        };
        ResponseTemplate::new(200).set_body_json(answer)
    }
}

async fn data_manager(server: &MockServer) -> DataManager {
    let fake = DataManager::default();
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "ya29.dm", "expires_in": 3599, "token_type": "Bearer"})))
        .mount(server)
        .await;
    for (verb, route) in [("POST", INGEST), ("GET", STATUS)] {
        Mock::given(method(verb))
            .and(path(route))
            .and(Strict)
            .respond_with(fake.clone())
            .mount(server)
            .await;
    }
    fake
}

fn status_of(state: &str, errors: Value) -> Value {
    json!({"requestStatusPerDestination": [{
        "destination": {"reference": "conversion_action_987654321",
                        "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": "1234567890"},
                        "productDestinationId": "987654321"},
        "requestStatus": state,
        "eventsIngestionStatus": {"recordCount": "3"},
        "errorInfo": {"errorCounts": errors}}]})
}

/// Matched sales `inv-<n>` of `ws` for each `n`, routed everywhere.
fn matched_sales(ws: Uuid, numbers: impl Iterator<Item = usize>) -> Vec<events::RoutedEvent> {
    numbers
        .map(|n| {
            routed(
                ws,
                sale(&format!("inv-{n}")),
                AttributionStatus::Matched,
                &ALL_ROUTES,
            )
        })
        .collect()
}

async fn requests_to(server: &MockServer, route: &str) -> Vec<Request> {
    let all = server.received_requests().await.unwrap();
    for request in all
        .iter()
        .filter(|r| [INGEST, STATUS].contains(&r.url.path()))
    {
        assert!(
            problems_of(request).is_empty(),
            "{:?}",
            problems_of(request)
        );
    }
    all.into_iter().filter(|r| r.url.path() == route).collect()
}

/// Runs confirmation steps until one checks something (the first check waits the poll
/// interval), within a deadline.
async fn check_when_due(worker: &Forwarder) -> forwarder::ConfirmationReport {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let report = worker.check_confirmations(10).await.unwrap();
        if report.checked > 0 {
            return report;
        }
        assert!(Instant::now() < deadline, "no upload check came due");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn by_confirmation(
    client: &deadpool_postgres::Client,
    ws: Uuid,
    confirmation: &str,
) -> Vec<forwarder::DispatchView> {
    let filter = DispatchFilter::from_pairs([("confirmation", confirmation)]).unwrap();
    forwarder::list_dispatches(client, ws, filter)
        .await
        .unwrap()
        .data
}

#[tokio::test]
async fn data_manager_uploads_stay_pending_until_one_status_call_per_request_settles_them() {
    let server = MockServer::start().await;
    let fake = data_manager(&server).await;
    fake.0.lock().unwrap().statuses = VecDeque::from([
        status_of("PROCESSING", json!([])),
        status_of(
            "PARTIAL_SUCCESS",
            json!([{"reason": "PROCESSING_ERROR_REASON_CLICK_NOT_FOUND", "recordCount": "1"}]),
        ),
    ]);
    let db = test_db().await;
    let pool = pool(&db, 4);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    google(&client, ws, "data_manager").await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    webhook(
        &client,
        ws,
        &format!("{}/hook", server.uri()),
        &["sale"],
        true,
    )
    .await;
    let events = matched_sales(ws, 1..=3);
    forwarder::enqueue(&client, &events).await.unwrap();
    let worker = Forwarder::new(pool.clone(), cipher(), config(&server.uri(), 5));

    let sent = worker.dispatch_due(100).await.unwrap();
    assert_eq!((sent.claimed, sent.succeeded), (6, 6));
    assert_eq!(requests_to(&server, INGEST).await.len(), 1, "one upload");
    let pending = by_confirmation(&client, ws, "pending").await;
    assert_eq!(pending.len(), 3);
    for dispatch in &pending {
        let confirmation = dispatch.confirmation.as_ref().unwrap();
        assert_eq!(confirmation.upload_request.as_deref(), Some("dm-req-1"));
        assert_eq!(confirmation.checked_at, None);
    }
    let confirmed = by_confirmation(&client, ws, "confirmed").await;
    assert_eq!(confirmed.len(), 3, "webhooks are confirmed at once");
    assert!(confirmed
        .iter()
        .all(|d| d.destination_type == events::DestinationType::Webhook));

    let first = check_when_due(&worker).await;
    assert_eq!((first.checked, first.pending, first.settled), (1, 1, 0));
    let still = by_confirmation(&client, ws, "pending").await;
    assert!(still.iter().all(|d| d
        .confirmation
        .as_ref()
        .unwrap()
        .detail
        .as_deref()
        .is_some_and(|t| t.contains("PROCESSING"))));

    let second = check_when_due(&worker).await;
    assert_eq!(
        (second.checked, second.settled, second.dispatches),
        (1, 1, 3)
    );
    let status_calls = requests_to(&server, STATUS).await;
    assert_eq!(
        status_calls.len(),
        2,
        "one call per check of the upload, not per conversion"
    );
    assert!(status_calls
        .iter()
        .all(|r| r.url.query() == Some("requestId=dm-req-1")));

    let partial = by_confirmation(&client, ws, "partially_failed").await;
    assert_eq!(partial.len(), 3);
    let detail = forwarder::get_dispatch(&client, ws, &partial[0].id)
        .await
        .unwrap();
    assert_eq!(detail.dispatch.status, DispatchStatus::Succeeded);
    let wire = serde_json::to_value(&detail).unwrap();
    assert_eq!(wire["confirmation"]["status"], "partially_failed");
    assert!(wire["confirmation"]["detail"]
        .as_str()
        .unwrap()
        .contains("PROCESSING_ERROR_REASON_CLICK_NOT_FOUND × 1"));
    assert!(wire["confirmation"]["checkedAt"].is_string());
    assert!(by_confirmation(&client, ws, "pending").await.is_empty());
    // Nothing is due any more.
    assert_eq!(worker.check_confirmations(10).await.unwrap().checked, 0);
}

#[tokio::test]
async fn an_upload_still_processing_at_the_deadline_fails_its_confirmation() {
    let server = MockServer::start().await;
    let fake = data_manager(&server).await;
    fake.0.lock().unwrap().statuses = VecDeque::from([status_of("PROCESSING", json!([]))]);
    let db = test_db().await;
    let pool = pool(&db, 4);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    google(&client, ws, "data_manager").await;
    let event = routed(ws, sale("inv-1"), AttributionStatus::Matched, &ALL_ROUTES);
    forwarder::enqueue(&client, std::slice::from_ref(&event))
        .await
        .unwrap();
    let worker = Forwarder::new(pool.clone(), cipher(), config(&server.uri(), 5));
    assert_eq!(worker.dispatch_due(10).await.unwrap().succeeded, 1);
    client
        .execute(
            "UPDATE upload_checks SET deadline_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    let report = check_when_due(&worker).await;
    assert_eq!(report.settled, 1);
    let failed = by_confirmation(&client, ws, ConfirmationStatus::Failed.as_str()).await;
    assert_eq!(failed.len(), 1);
    let detail = failed[0]
        .confirmation
        .as_ref()
        .unwrap()
        .detail
        .clone()
        .unwrap();
    assert!(detail.contains("no final processing status"), "{detail}");
}

#[tokio::test]
async fn workspaces_on_one_cloud_project_share_its_quota() {
    let server = MockServer::start().await;
    data_manager(&server).await;
    let db = test_db().await;
    let client_pool = pool(&db, 2);
    let client = client_pool.get().await.unwrap();
    // Two workspaces whose Data Manager destinations use one OAuth client: one Google Cloud
    // project, so one quota for both.
    let workspaces = [Uuid::now_v7(), Uuid::now_v7()];
    for ws in workspaces {
        google(&client, ws, "data_manager").await;
    }
    let events: Vec<_> = workspaces
        .iter()
        .enumerate()
        .map(|(n, ws)| {
            routed(
                *ws,
                sale(&format!("inv-{n}")),
                AttributionStatus::Matched,
                &ALL_ROUTES,
            )
        })
        .collect();
    forwarder::enqueue(&client, &events).await.unwrap();
    // 1 % of 300 requests a minute: a bucket of one token.
    let shrunk = forwarder::ForwarderConfig {
        quota_share: 0.01,
        ..config(&server.uri(), 5)
    };
    let forwarder = Forwarder::new(pool(&db, 2), cipher(), shrunk);
    let report = forwarder.dispatch_due(100).await.unwrap();
    assert_eq!(report.claimed, 2, "{report:?}");
    assert_eq!((report.succeeded, report.deferred), (1, 1), "{report:?}");
    assert_eq!(
        requests_to(&server, INGEST).await.len(),
        1,
        "one request within the project's quota, whichever workspace sent it"
    );
}

#[tokio::test]
async fn a_spent_day_holds_sends_though_the_minute_has_room() {
    use forwarder::pacing::{take, Permit};
    let db = test_db().await;
    let client_pool = pool(&db, 1);
    let client = client_pool.get().await.unwrap();
    // A day of 24 requests holds one at a time (an hour's); the minute's 60 hold 6.
    let quota = forwarder::platforms::delivery::Quota {
        bucket: "project".into(),
        per_minute: Some(60),
        per_day: Some(24),
        operations_per_day: None,
        source: "test",
    };
    assert_eq!(
        take(&client, &quota, 1.0, 1).await.unwrap(),
        Permit::Granted
    );
    match take(&client, &quota, 1.0, 1).await.unwrap() {
        // The day's next token is an hour away (refilling at 90 % of 24 a day).
        Permit::Wait(wait) => assert!(wait >= Duration::from_secs(3000), "{wait:?}"),
        other => panic!("{other:?}"),
    }
    // The refused send took nothing from the minute's bucket (6, less the granted one).
    let minute: f64 = client
        .query_one(
            "SELECT tokens FROM quota_buckets WHERE bucket = 'project'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!((4.5..6.0).contains(&minute), "{minute}");
    // A quota without a day is paced by its minute alone.
    let minute_only = forwarder::platforms::delivery::Quota {
        per_day: None,
        ..quota
    };
    assert_eq!(
        take(&client, &minute_only, 1.0, 1).await.unwrap(),
        Permit::Granted
    );
}

#[tokio::test]
async fn ads_api_sends_are_paced_in_operations_by_the_declared_access_level() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "ya29.ads", "expires_in": 3599, "token_type": "Bearer"})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v26/customers/1234567890:uploadClickConversions"))
        .respond_with(|request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            let rows = body["conversions"].as_array().map_or(0, Vec::len);
            ResponseTemplate::new(200).set_body_json(json!({"results": vec![json!({}); rows]}))
        })
        .mount(&server)
        .await;
    let db = test_db().await;
    let client_pool = pool(&db, 2);
    let client = client_pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    forwarder::create_destination(
        &client,
        &cipher(),
        ws,
        &json!({"type": "google_ads", "name": "ads", "events": ["sale"],
                "config": {"api": "google_ads_api", "customerId": "123-456-7890",
                           "conversionActions": {"sale": "987654321"},
                           "accessLevel": "explorer"},
                "credentials": {"clientId": "client-1", "clientSecret": "client-secret-1",
                                "refreshToken": "1//refresh-token-1"}}),
    )
    .await
    .unwrap();
    let events = matched_sales(ws, 0..3);
    forwarder::enqueue(&client, &events).await.unwrap();
    // Explorer: 2,880 operations a day; a share of 1/60 leaves a bucket of 2 (an hour's).
    let shrunk = forwarder::ForwarderConfig {
        quota_share: 1.0 / 60.0,
        ..config(&server.uri(), 5)
    };
    let forwarder = Forwarder::new(pool(&db, 2), cipher(), shrunk);
    let report = forwarder.dispatch_due(100).await.unwrap();
    assert_eq!(report.claimed, 3, "{report:?}");
    assert_eq!((report.succeeded, report.deferred), (2, 1), "{report:?}");
    let uploads: Vec<usize> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with(":uploadClickConversions"))
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["conversions"]
                .as_array()
                .unwrap()
                .len()
        })
        .collect();
    assert_eq!(
        uploads,
        [2],
        "one request of the two operations the bucket holds"
    );
}

#[tokio::test]
async fn data_manager_sends_wait_for_the_shared_quota_without_spending_attempts() {
    let server = MockServer::start().await;
    data_manager(&server).await;
    let db = test_db().await;
    let client_pool = pool(&db, 2);
    let client = client_pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    // Two destinations on one OAuth client: one Google Cloud project, one quota.
    google(&client, ws, "data_manager").await;
    google(&client, ws, "data_manager").await;
    let events = matched_sales(ws, 1..=2);
    forwarder::enqueue(&client, &events).await.unwrap();
    // 1 % of 300 requests a minute: a bucket of one token, refilled every ~22 s.
    let shrunk = |base: &str| forwarder::ForwarderConfig {
        quota_share: 0.01,
        ..config(base, 5)
    };
    let first = Forwarder::new(pool(&db, 2), cipher(), shrunk(&server.uri()));
    let second = Forwarder::new(pool(&db, 2), cipher(), shrunk(&server.uri()));

    let one = first.dispatch_due(100).await.unwrap();
    assert_eq!(one.claimed, 4);
    assert_eq!((one.succeeded, one.deferred), (2, 2), "{one:?}");
    assert_eq!(requests_to(&server, INGEST).await.len(), 1);
    // Make the deferred ones due at once: another process's worker still finds no token.
    client
        .execute(
            "UPDATE dispatches SET due_at = now() WHERE status = 'queued'",
            &[],
        )
        .await
        .unwrap();
    let two = second.dispatch_due(100).await.unwrap();
    assert_eq!(
        (two.claimed, two.deferred, two.succeeded),
        (2, 2, 0),
        "{two:?}"
    );
    assert_eq!(
        requests_to(&server, INGEST).await.len(),
        1,
        "no request over the quota"
    );

    let waiting = forwarder::list_dispatches(
        &client,
        ws,
        DispatchFilter::from_pairs([("status", "queued")]).unwrap(),
    )
    .await
    .unwrap()
    .data;
    assert_eq!(waiting.len(), 2);
    for dispatch in &waiting {
        assert_eq!(dispatch.attempts, 0, "pacing spends no attempt");
        let next = events::parse_timestamp(dispatch.next_attempt_at.as_deref().unwrap()).unwrap();
        let wait = next - time::OffsetDateTime::now_utc();
        assert!(
            wait > time::Duration::seconds(5) && wait < time::Duration::seconds(30),
            "{wait}"
        );
        let detail = forwarder::get_dispatch(&client, ws, &dispatch.id)
            .await
            .unwrap();
        assert!(detail.attempts.is_empty(), "no attempt is written down");
    }
}

#[tokio::test]
async fn resource_exhausted_for_hours_parks_the_destination_without_spending_attempts() {
    let server = MockServer::start().await;
    let fake = data_manager(&server).await;
    fake.0.lock().unwrap().exhausted = Some(json!({"error": {
        "code": 429, "message": "Resource has been exhausted (e.g. check quota).",
        "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7200s"}]}}));
    let db = test_db().await;
    let pool = pool(&db, 4);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    let ads = google(&client, ws, "data_manager").await;
    let events = matched_sales(ws, 1..=3);
    forwarder::enqueue(&client, &events).await.unwrap();
    let worker = Forwarder::new(pool.clone(), cipher(), config(&server.uri(), 2));

    let step = worker.dispatch_due(100).await.unwrap();
    assert_eq!(
        (step.parked, step.deferred, step.failed),
        (1, 3, 0),
        "{step:?}"
    );
    let parks = forwarder::pacing::parked_destinations(&client, ws)
        .await
        .unwrap();
    assert_eq!(parks.len(), 1);
    assert_eq!(parks[0].destination, ads.id);
    assert_eq!(parks[0].waiting, 3);
    assert!(
        parks[0].reason.contains("RESOURCE_EXHAUSTED"),
        "{}",
        parks[0].reason
    );

    // Even when their time comes, a parked destination's dispatches are not claimed.
    client
        .execute(
            "UPDATE dispatches SET due_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    for _ in 0..3 {
        assert!(worker.dispatch_due(100).await.unwrap().is_idle());
    }
    assert_eq!(requests_to(&server, INGEST).await.len(), 1);
    let queued = forwarder::list_dispatches(
        &client,
        ws,
        DispatchFilter::from_pairs([("status", "queued")]).unwrap(),
    )
    .await
    .unwrap()
    .data;
    assert_eq!(queued.len(), 3);
    assert!(queued.iter().all(|d| d.attempts == 0));

    // When the park ends, they go, with their whole retry budget.
    fake.0.lock().unwrap().exhausted = None;
    client
        .execute("UPDATE destination_parks SET parked_until = now()", &[])
        .await
        .unwrap();
    assert_eq!(worker.dispatch_due(100).await.unwrap().succeeded, 3);
}

#[tokio::test]
async fn live_dispatches_are_claimed_before_backfilled_ones_however_old() {
    let db = test_db().await;
    let pool = pool(&db, 2);
    let mut client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    webhook(&client, ws, "https://hooks.example.com/x", &["sale"], true).await;
    let old = routed(ws, sale("inv-old"), AttributionStatus::Matched, &ALL_ROUTES);
    let live = routed(
        ws,
        sale("inv-live"),
        AttributionStatus::Matched,
        &ALL_ROUTES,
    );
    forwarder::enqueue(&client, &[old.clone(), live.clone()])
        .await
        .unwrap();
    client
        .execute(
            "UPDATE dispatches SET backfill = true, due_at = now() - interval '1 day' WHERE event_id = $1",
            &[&old.event_id],
        )
        .await
        .unwrap();
    let claim = forwarder::queue::claim_due(&mut client, 1, Duration::from_secs(30), 5)
        .await
        .unwrap();
    assert_eq!(claim.dispatches.len(), 1);
    assert_eq!(claim.dispatches[0].conversion.event_id, live.event_id);
    let next = forwarder::queue::claim_due(&mut client, 1, Duration::from_secs(30), 5)
        .await
        .unwrap();
    assert_eq!(next.dispatches[0].conversion.event_id, old.event_id);
}
