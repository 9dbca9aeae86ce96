//! The dispatch worker against fake platforms (wiremock) on a real PostgreSQL: retries with the
//! same ids, permanent errors kept, attempts exhausted, disabled destinations, leases, and two
//! workers sharing one queue.
#![allow(clippy::unwrap_used)]

mod worker_support;

use std::collections::HashMap;
use std::time::Duration;

use events::{AttributionStatus, DestinationType};
use forwarder::{queue, DispatchKind, DispatchReport, DispatchStatus, Forwarder};
use serde_json::{json, Value};
use uuid::Uuid;
use wiremock::matchers::{header, method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};
use worker_support::*;

fn body_of(request: &wiremock::Request) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

async fn detail(
    client: &deadpool_postgres::Client,
    ws: Uuid,
    event_id: Uuid,
) -> forwarder::DispatchDetail {
    let ids = dispatch_ids(client, ws, event_id).await;
    assert_eq!(ids.len(), 1, "{ids:?}");
    forwarder::get_dispatch(client, ws, &ids[0]).await.unwrap()
}

#[tokio::test]
async fn a_webhook_failing_twice_succeeds_on_the_third_attempt_with_the_same_event_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(500).set_body_string("upstream broke"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&server)
        .await;
    let db = test_db().await;
    let pool = pool(&db, 4);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    webhook(
        &client,
        ws,
        &format!("{}/hook", server.uri()),
        &["sale"],
        true,
    )
    .await;
    let event = routed(ws, sale("inv-1"), AttributionStatus::Matched, &ALL_ROUTES);
    forwarder::enqueue(&client, std::slice::from_ref(&event))
        .await
        .unwrap();
    let worker = Forwarder::new(pool.clone(), cipher(), config(&server.uri(), 5));

    let first = worker.dispatch_due(10).await.unwrap();
    assert_eq!((first.claimed, first.retrying), (1, 1));
    let waiting = detail(&client, ws, event.event_id).await;
    assert_eq!(waiting.dispatch.status, DispatchStatus::Retrying);
    assert!(waiting.dispatch.next_attempt_at.is_some());
    assert_eq!(
        waiting.dispatch.last_error.as_deref(),
        Some("HTTP 500 from the webhook receiver")
    );
    // Not due yet: nothing to do until time passes.
    client
        .execute(
            "UPDATE dispatches SET due_at = now() + interval '1 hour'",
            &[],
        )
        .await
        .unwrap();
    assert!(worker.dispatch_due(10).await.unwrap().is_idle());
    make_retries_due(&client).await;
    assert_eq!(worker.dispatch_due(10).await.unwrap().retrying, 1);
    make_retries_due(&client).await;
    assert_eq!(worker.dispatch_due(10).await.unwrap().succeeded, 1);

    let done = detail(&client, ws, event.event_id).await;
    assert_eq!(done.dispatch.status, DispatchStatus::Succeeded);
    assert_eq!(done.dispatch.attempts, 3);
    assert_eq!(done.dispatch.last_error, None);
    let attempts: Vec<(i32, Option<u16>, &str)> = done
        .attempts
        .iter()
        .map(|a| (a.attempt, a.http_status, a.outcome.as_str()))
        .collect();
    assert_eq!(
        attempts,
        [
            (1, Some(500), "retry"),
            (2, Some(500), "retry"),
            (3, Some(200), "succeeded")
        ]
    );
    assert_eq!(
        done.attempts[0].response_excerpt.as_deref(),
        Some("upstream broke")
    );

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 3);
    let evt = forwarder::ids::to_wire(forwarder::ids::EVENT, event.event_id);
    for request in &requests {
        assert_eq!(body_of(request)["id"], evt.as_str());
        assert!(request.headers.get("convrelay-signature").is_some());
    }
    let json = serde_json::to_value(&done).unwrap();
    assert_eq!(json["attempts"][2]["httpStatus"], 200);
    assert!(json["attempts"][0]["durationMs"].is_number());
    assert_eq!(json["status"], "succeeded");
}

#[tokio::test]
async fn a_permanent_platform_error_fails_at_once_and_keeps_the_platform_message() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/v26\.0/1234567890/events$"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "Error validating access token: Session has expired",
            "type": "OAuthException", "code": 190, "fbtrace_id": "AbCdEf"}})))
        .mount(&server)
        .await;
    let db = test_db().await;
    let pool = pool(&db, 4);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    meta(&client, ws, &["sale"], false).await;
    let event = routed(ws, sale("inv-1"), AttributionStatus::Matched, &ALL_ROUTES);
    forwarder::enqueue(&client, std::slice::from_ref(&event))
        .await
        .unwrap();
    let worker = Forwarder::new(pool.clone(), cipher(), config(&server.uri(), 5));

    let report = worker.dispatch_due(10).await.unwrap();
    assert_eq!((report.claimed, report.failed), (1, 1));
    let done = detail(&client, ws, event.event_id).await;
    assert_eq!(done.dispatch.status, DispatchStatus::Failed);
    assert_eq!(done.dispatch.reason.as_deref(), Some("permanent_error"));
    let error = done.dispatch.last_error.unwrap();
    assert!(error.contains("Session has expired"), "{error}");
    assert!(error.contains("190"), "{error}");
    assert_eq!(done.attempts.len(), 1);
    assert_eq!(done.attempts[0].http_status, Some(400));
    assert_eq!(done.attempts[0].outcome, "permanent");
    let excerpt = done.attempts[0].response_excerpt.clone().unwrap();
    assert!(!excerpt.contains("EAAB-meta-token"), "{excerpt}");
    assert!(worker.dispatch_due(10).await.unwrap().is_idle());
}

#[tokio::test]
async fn a_request_keeps_its_answer_once_for_every_conversion_it_carried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/v26\.0/1234567890/events$"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"events_received": 3, "fbtrace_id": "AbCdEf"})),
        )
        .mount(&server)
        .await;
    let db = test_db().await;
    let pool = pool(&db, 4);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    meta(&client, ws, &["sale"], false).await;
    let events: Vec<_> = (0..3)
        .map(|i| {
            routed(
                ws,
                sale(&format!("inv-{i}")),
                AttributionStatus::Matched,
                &ALL_ROUTES,
            )
        })
        .collect();
    forwarder::enqueue(&client, &events).await.unwrap();
    let worker = Forwarder::new(pool.clone(), cipher(), config(&server.uri(), 5));

    assert_eq!(worker.dispatch_due(10).await.unwrap().succeeded, 3);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    // One row for the one request, its answer stored once.
    let stored: Vec<(Option<String>, Option<i16>)> = client
        .query(
            "SELECT response_excerpt, http_status FROM dispatch_requests WHERE workspace_id = $1",
            &[&ws],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let (excerpt, http_status) = stored[0].clone();
    assert_eq!(http_status, Some(200));
    assert!(excerpt.as_deref().unwrap().contains("events_received"));
    // Every conversion's attempt shows it, as before.
    for event in &events {
        let done = detail(&client, ws, event.event_id).await;
        assert_eq!(done.attempts.len(), 1);
        assert_eq!(done.attempts[0].http_status, Some(200));
        assert_eq!(done.attempts[0].response_excerpt, excerpt);
    }
}

#[tokio::test]
async fn a_dispatch_fails_once_its_attempts_are_exhausted() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let db = test_db().await;
    let pool = pool(&db, 4);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    webhook(
        &client,
        ws,
        &format!("{}/hook", server.uri()),
        &["sale"],
        true,
    )
    .await;
    let event = routed(ws, sale("inv-1"), AttributionStatus::Matched, &ALL_ROUTES);
    forwarder::enqueue(&client, std::slice::from_ref(&event))
        .await
        .unwrap();
    let worker = Forwarder::new(pool.clone(), cipher(), config(&server.uri(), 2));

    assert_eq!(worker.dispatch_due(10).await.unwrap().retrying, 1);
    make_retries_due(&client).await;
    assert_eq!(worker.dispatch_due(10).await.unwrap().failed, 1);
    let done = detail(&client, ws, event.event_id).await;
    assert_eq!(done.dispatch.status, DispatchStatus::Failed);
    assert_eq!(done.dispatch.reason.as_deref(), Some("attempts_exhausted"));
    assert_eq!(
        done.dispatch.last_error.as_deref(),
        Some("HTTP 503 from the webhook receiver")
    );
    assert_eq!(done.attempts.len(), 2);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);

    // An operator's retry gives it a fresh budget.
    forwarder::retry_dispatch(&client, ws, &done.dispatch.id)
        .await
        .unwrap();
    assert_eq!(worker.dispatch_due(10).await.unwrap().retrying, 1);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "120"))
        .mount(&server)
        .await;
    let db = test_db().await;
    let pool = pool(&db, 4);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    webhook(
        &client,
        ws,
        &format!("{}/hook", server.uri()),
        &["sale"],
        true,
    )
    .await;
    let event = routed(ws, sale("inv-1"), AttributionStatus::Matched, &ALL_ROUTES);
    forwarder::enqueue(&client, std::slice::from_ref(&event))
        .await
        .unwrap();
    let worker = Forwarder::new(pool.clone(), cipher(), config(&server.uri(), 5));
    assert_eq!(worker.dispatch_due(10).await.unwrap().retrying, 1);
    let wait: f64 = client
        .query_one(
            "SELECT extract(epoch FROM due_at - now())::float8 FROM dispatches WHERE workspace_id = $1",
            &[&ws],
        )
        .await
        .unwrap()
        .get(0);
    assert!((110.0..=121.0).contains(&wait), "{wait}");
}

#[tokio::test]
async fn a_disabled_destinations_dispatches_wait_and_go_once_it_is_enabled() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let db = test_db().await;
    let pool = pool(&db, 4);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    let hook = webhook(
        &client,
        ws,
        &format!("{}/hook", server.uri()),
        &["sale"],
        false,
    )
    .await;
    let event = routed(ws, sale("inv-1"), AttributionStatus::Matched, &ALL_ROUTES);
    assert_eq!(
        forwarder::enqueue(&client, std::slice::from_ref(&event))
            .await
            .unwrap(),
        1
    );
    let worker = Forwarder::new(pool.clone(), cipher(), config(&server.uri(), 5));

    assert!(worker.dispatch_due(10).await.unwrap().is_idle());
    assert_eq!(
        detail(&client, ws, event.event_id).await.dispatch.status,
        DispatchStatus::Queued
    );
    assert!(server.received_requests().await.unwrap().is_empty());

    forwarder::update_destination(&client, &cipher(), ws, &hook.id, &json!({"enabled": true}))
        .await
        .unwrap();
    let report = worker.dispatch_due(10).await.unwrap();
    assert_eq!((report.claimed, report.succeeded), (1, 1));
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_crashed_workers_claim_is_sent_once_its_lease_runs_out() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let db = test_db().await;
    let pool = pool(&db, 4);
    let mut client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    webhook(
        &client,
        ws,
        &format!("{}/hook", server.uri()),
        &["sale"],
        true,
    )
    .await;
    let event = routed(ws, sale("inv-1"), AttributionStatus::Matched, &ALL_ROUTES);
    forwarder::enqueue(&client, std::slice::from_ref(&event))
        .await
        .unwrap();

    // A worker claims for 30 s and dies: the dispatch is held, nobody else sends it.
    let crashed = queue::claim_due(&mut client, 10, Duration::from_secs(30), 5)
        .await
        .unwrap();
    assert_eq!(crashed.dispatches.len(), 1);
    let worker = Forwarder::new(pool.clone(), cipher(), config(&server.uri(), 5));
    assert!(worker.dispatch_due(10).await.unwrap().is_idle());
    assert_eq!(
        detail(&client, ws, event.event_id).await.dispatch.status,
        DispatchStatus::InFlight
    );

    // 30 s later (the lease's end moved to now), the claim comes back.
    client
        .execute(
            "UPDATE dispatches SET due_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    let report = worker.dispatch_due(10).await.unwrap();
    assert_eq!((report.claimed, report.succeeded), (1, 1));
    let done = detail(&client, ws, event.event_id).await;
    let outcomes: Vec<&str> = done.attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["lease_expired", "succeeded"]);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn two_workers_on_one_queue_never_send_a_dispatch_twice() {
    const EVENTS: usize = 120;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(15)))
        .mount(&server)
        .await;
    let db = test_db().await;
    let setup = pool(&db, 2);
    let client = setup.get().await.unwrap();
    let ws = Uuid::now_v7();
    webhook(
        &client,
        ws,
        &format!("{}/hook", server.uri()),
        &["sale"],
        true,
    )
    .await;
    let events: Vec<_> = (0..EVENTS)
        .map(|i| {
            routed(
                ws,
                sale(&format!("inv-{i}")),
                AttributionStatus::Matched,
                &ALL_ROUTES,
            )
        })
        .collect();
    assert_eq!(forwarder::enqueue(&client, &events).await.unwrap(), EVENTS);

    // Two pools, as two processes would have; small batches so that both get work.
    let forwarders: Vec<Forwarder> = (0..2)
        .map(|_| {
            let mut settings = config(&server.uri(), 5);
            settings.batch_size = 7;
            Forwarder::new(pool(&db, 4), cipher(), settings)
        })
        .collect();
    // Steps at the same moment take different dispatches.
    let (a, b) = tokio::join!(forwarders[0].dispatch_due(7), forwarders[1].dispatch_due(7));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        (a.claimed, a.succeeded, b.claimed, b.succeeded),
        (7, 7, 7, 7)
    );

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers: Vec<_> = forwarders
        .into_iter()
        .map(|worker| tokio::spawn(worker.run(stopped.clone())))
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stats = forwarder::dispatch_stats(&client, ws).await.unwrap();
        if stats.totals["succeeded"] == EVENTS as i64 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    for worker in workers {
        tokio::time::timeout(Duration::from_secs(10), worker)
            .await
            .unwrap()
            .unwrap();
    }

    let requests = server.received_requests().await.unwrap();
    let mut per_event: HashMap<String, usize> = HashMap::new();
    for request in &requests {
        *per_event
            .entry(body_of(request)["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_event.len(), EVENTS);
    assert!(per_event.values().all(|&n| n == 1), "{per_event:?}");
    assert_eq!(requests.len(), EVENTS);
}

#[tokio::test]
async fn a_google_ads_retraction_goes_out_by_order_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "ya29.test-token", "expires_in": 3599, "token_type": "Bearer"})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(
            "/v26/customers/1234567890:uploadConversionAdjustments",
        ))
        .and(header("authorization", "Bearer ya29.test-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "results": [{"orderId": "inv-1", "adjustmentType": "RETRACTION"}]})))
        .mount(&server)
        .await;
    let db = test_db().await;
    let pool = pool(&db, 4);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    google(&client, ws, "google_ads_api").await;
    let event = routed(ws, sale("inv-1"), AttributionStatus::Matched, &ALL_ROUTES);
    forwarder::enqueue(&client, std::slice::from_ref(&event))
        .await
        .unwrap();
    // The conversion went out earlier.
    client
        .execute(
            "UPDATE dispatches SET status = 'succeeded' WHERE workspace_id = $1",
            &[&ws],
        )
        .await
        .unwrap();
    let report = forwarder::retract(&client, ws, event.event_id, "refund")
        .await
        .unwrap();
    assert_eq!(report.queued, 1);

    let worker = Forwarder::new(pool.clone(), cipher(), config(&server.uri(), 5));
    let sent: DispatchReport = worker.dispatch_due(10).await.unwrap();
    assert_eq!((sent.claimed, sent.succeeded), (1, 1));
    let all = dispatches_of(&client, ws, event.event_id).await;
    let retraction = all
        .iter()
        .find(|d| d.kind == DispatchKind::Retraction)
        .unwrap();
    assert_eq!(retraction.status, DispatchStatus::Succeeded);

    let requests = server.received_requests().await.unwrap();
    let upload = requests
        .iter()
        .find(|r| r.url.path().ends_with(":uploadConversionAdjustments"))
        .unwrap();
    let body = body_of(upload);
    assert_eq!(body["conversionAdjustments"][0]["orderId"], "inv-1");
    assert_eq!(
        body["conversionAdjustments"][0]["adjustmentType"],
        "RETRACTION"
    );
    assert_eq!(
        body["conversionAdjustments"][0]["conversionAction"],
        "customers/1234567890/conversionActions/987654321"
    );
}

#[tokio::test]
async fn meta_conversions_of_one_destination_go_in_one_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/v26\.0/1234567890/events$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"events_received": 3})))
        .mount(&server)
        .await;
    let db = test_db().await;
    let pool = pool(&db, 4);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    meta(&client, ws, &["sale"], false).await;
    let events: Vec<_> = (0..3)
        .map(|i| {
            routed(
                ws,
                sale(&format!("inv-{i}")),
                AttributionStatus::Matched,
                &ALL_ROUTES,
            )
        })
        .collect();
    forwarder::enqueue(&client, &events).await.unwrap();
    let worker = Forwarder::new(pool.clone(), cipher(), config(&server.uri(), 5));
    let report = worker.dispatch_due(10).await.unwrap();
    assert_eq!((report.claimed, report.succeeded), (3, 3));
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let mut ids: Vec<String> = body_of(&requests[0])["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut expected: Vec<String> = events
        .iter()
        .map(|e| forwarder::ids::to_wire(forwarder::ids::EVENT, e.event_id))
        .collect();
    expected.sort();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn a_slow_send_keeps_its_lease_and_nobody_takes_it_over() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(1200)))
        .mount(&server)
        .await;
    let db = test_db().await;
    let pool = pool(&db, 4);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    webhook(
        &client,
        ws,
        &format!("{}/hook", server.uri()),
        &["sale"],
        true,
    )
    .await;
    let event = routed(ws, sale("inv-1"), AttributionStatus::Matched, &ALL_ROUTES);
    forwarder::enqueue(&client, std::slice::from_ref(&event))
        .await
        .unwrap();

    let mut settings = config(&server.uri(), 5);
    settings.lease = Duration::from_millis(300);
    let slow = Forwarder::new(pool.clone(), cipher(), settings.clone());
    let other = Forwarder::new(pool.clone(), cipher(), settings);
    let (sent, meanwhile) = tokio::join!(slow.dispatch_due(10), async {
        // Well past the first lease's end, while the send is still under way.
        tokio::time::sleep(Duration::from_millis(800)).await;
        other.dispatch_due(10).await
    });
    assert!(meanwhile.unwrap().is_idle());
    let sent = sent.unwrap();
    assert_eq!((sent.succeeded, sent.lost), (1, 0));
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_conversion_too_old_for_its_platform_is_skipped_and_never_sent() {
    let server = MockServer::start().await;
    let db = test_db().await;
    let pool = pool(&db, 4);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    meta(&client, ws, &["sale"], false).await;
    let mut old = sale("inv-old");
    old.timestamp -= time::Duration::days(8);
    let old = routed(ws, old, AttributionStatus::Matched, &ALL_ROUTES);
    forwarder::enqueue(&client, std::slice::from_ref(&old))
        .await
        .unwrap();

    let worker = Forwarder::new(pool.clone(), cipher(), config(&server.uri(), 5));
    let report = worker.dispatch_due(10).await.unwrap();

    assert_eq!((report.claimed, report.skipped), (1, 1));
    assert!(server.received_requests().await.unwrap().is_empty());
    let dispatches = dispatches_of(&client, ws, old.event_id).await;
    assert_eq!(dispatches.len(), 1);
    assert_eq!(dispatches[0].status, forwarder::DispatchStatus::Skipped);
    assert_eq!(
        dispatches[0].reason.as_deref(),
        Some("too_old_for_platform")
    );
}

#[tokio::test]
async fn a_microsoft_ads_destination_gets_conversions_routed_by_msclkid() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/ms-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "ms-access", "expires_in": 3599, "token_type": "Bearer"}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/CampaignManagement/v13/OfflineConversions/Apply"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"PartialErrors": null})))
        .mount(&server)
        .await;
    let db = test_db().await;
    let pool = pool(&db, 4);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    forwarder::create_destination(
        &client,
        &cipher(),
        ws,
        &json!({"type": "microsoft_ads", "name": "ms", "events": ["sale"],
                "config": {"customerId": "251186883", "accountId": "149615541",
                           "conversionNames": {"sale": "Offline Purchase"}},
                "credentials": {"clientId": "app-1", "refreshToken": "M.refresh",
                                "developerToken": "dev-1"}}),
    )
    .await
    .unwrap();
    let sale = event(
        json!({"event": "sale", "invoiceId": "inv-ms", "amount": 20, "currency": "USD",
                            "email": "a@example.com", "msclkid": "f894f652ea334e739002f7167ab8f8e3"}),
    );
    let routed = routed(
        ws,
        sale,
        AttributionStatus::Matched,
        &[
            (DestinationType::MicrosoftAds, true),
            (DestinationType::Webhook, true),
        ],
    );
    assert_eq!(
        forwarder::enqueue(&client, std::slice::from_ref(&routed))
            .await
            .unwrap(),
        1
    );

    let worker = Forwarder::new(pool.clone(), cipher(), config(&server.uri(), 5));
    let report = worker.dispatch_due(10).await.unwrap();

    assert_eq!((report.claimed, report.succeeded), (1, 1));
    let apply = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.url.path().ends_with("/Apply"))
        .unwrap();
    let body = body_of(&apply);
    assert_eq!(
        body["OfflineConversions"][0]["MicrosoftClickId"],
        "f894f652ea334e739002f7167ab8f8e3"
    );
    let dispatches = dispatches_of(&client, ws, routed.event_id).await;
    assert_eq!(
        dispatches[0].destination_type,
        DestinationType::MicrosoftAds
    );
    assert_eq!(dispatches[0].status, forwarder::DispatchStatus::Succeeded);
}
