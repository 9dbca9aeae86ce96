//! The dispatch queue on a real PostgreSQL: what enqueue creates, exclusive claims and leases,
//! operator retries, statistics and retractions.
#![allow(clippy::unwrap_used)]

mod worker_support;

use std::time::Duration;

use events::{AttributionStatus, DestinationType};
use forwarder::queue::{self, AttemptResult, RequestResult};
use forwarder::{DispatchFilter, DispatchKind, DispatchStatus, Error};
use serde_json::json;
use test_support::TestDb;
use time::OffsetDateTime;
use uuid::Uuid;
use worker_support::*;

const GOOGLE_ONLY: [(DestinationType, bool); 3] = [
    (DestinationType::GoogleAds, true),
    (DestinationType::Meta, false),
    (DestinationType::Webhook, true),
];

#[tokio::test]
async fn enqueue_follows_routes_and_subscriptions_and_adds_nothing_the_second_time() {
    let db = test_db().await;
    let pool = pool(&db, 2);
    let client = pool.get().await.unwrap();
    let (ws, other) = (Uuid::now_v7(), Uuid::now_v7());
    let sales_hook = webhook(&client, ws, "https://a.example.com/", &["sale"], true).await;
    let leads_hook = webhook(&client, ws, "https://b.example.com/", &["lead"], true).await;
    let ads = google(&client, ws, "data_manager").await;
    let pixel = meta(&client, ws, &["sale"], false).await;
    webhook(
        &client,
        other,
        "https://other.example.com/",
        &["sale", "lead"],
        true,
    )
    .await;

    let event = routed(ws, sale("inv-1"), AttributionStatus::Matched, &GOOGLE_ONLY);
    let batch = [event.clone()];
    assert_eq!(forwarder::enqueue(&client, &batch).await.unwrap(), 2);
    assert_eq!(forwarder::enqueue(&client, &batch).await.unwrap(), 0);

    let mut got: Vec<(String, DestinationType, DispatchStatus)> =
        dispatches_of(&client, ws, event.event_id)
            .await
            .into_iter()
            .map(|d| (d.destination, d.destination_type, d.status))
            .collect();
    got.sort();
    let mut expected = vec![
        (
            sales_hook.id.clone(),
            DestinationType::Webhook,
            DispatchStatus::Queued,
        ),
        (
            ads.id.clone(),
            DestinationType::GoogleAds,
            DispatchStatus::Queued,
        ),
    ];
    expected.sort();
    assert_eq!(got, expected);
    let _ = (leads_hook, pixel);

    // A lead reaches only the lead subscriber; nothing crosses workspaces.
    let lead_event = routed(
        ws,
        lead("lead-1"),
        AttributionStatus::Unmatched,
        &[(DestinationType::Webhook, true)],
    );
    assert_eq!(forwarder::enqueue(&client, &[lead_event]).await.unwrap(), 1);
    let total: i64 = client
        .query_one(
            "SELECT count(*) FROM dispatches WHERE workspace_id = $1",
            &[&other],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 0);

    // A routing decision that dispatches nothing creates nothing.
    let none = routed(
        ws,
        sale("inv-2"),
        AttributionStatus::Matched,
        &[
            (DestinationType::GoogleAds, false),
            (DestinationType::Meta, false),
            (DestinationType::Webhook, false),
        ],
    );
    assert_eq!(forwarder::enqueue(&client, &[none]).await.unwrap(), 0);

    // The snapshot carries the conversion as routed.
    let payload: serde_json::Value = client
        .query_one(
            "SELECT p.payload FROM dispatches d
             JOIN dispatch_payloads p ON p.workspace_id = d.workspace_id AND p.dispatch_id = d.id
             WHERE d.workspace_id = $1 AND d.event_id = $2 LIMIT 1",
            &[&ws, &event.event_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(payload["event"]["invoiceId"], "inv-1");
    assert_eq!(payload["event"]["amount"].to_string(), "49.9");
    assert_eq!(payload["attribution"]["status"], "matched");
}

#[tokio::test]
async fn meta_destinations_that_opt_in_get_decided_events_without_a_meta_click() {
    let db = test_db().await;
    let pool = pool(&db, 2);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    let opted_in = meta(&client, ws, &["lead", "sale"], true).await;
    let _plain = meta(&client, ws, &["lead", "sale"], false).await;
    let meta_off = [(DestinationType::Meta, false)];

    let unmatched = routed(ws, lead("l-1"), AttributionStatus::Unmatched, &meta_off);
    assert_eq!(
        forwarder::enqueue(&client, std::slice::from_ref(&unmatched))
            .await
            .unwrap(),
        1
    );
    let got = dispatches_of(&client, ws, unmatched.event_id).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].destination, opted_in.id);

    let pending = routed(ws, lead("l-2"), AttributionStatus::Pending, &meta_off);
    let deferred = routed(
        ws,
        event(
            json!({"event": "lead", "leadId": "l-3", "email": "d@example.com", "mode": "deferred"}),
        ),
        AttributionStatus::Unmatched,
        &meta_off,
    );
    let denied = routed(
        ws,
        event(
            json!({"event": "lead", "leadId": "l-4", "email": "d@example.com",
                     "consent": {"adUserData": "denied"}}),
        ),
        AttributionStatus::Unmatched,
        &meta_off,
    );
    let nobody = routed(
        ws,
        event(json!({"event": "lead", "leadId": "l-5", "clickId": "clk_1"})),
        AttributionStatus::Unmatched,
        &meta_off,
    );
    assert_eq!(
        forwarder::enqueue(&client, &[pending, deferred, denied, nobody])
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn every_platform_that_opts_in_gets_events_without_its_own_click_id() {
    let db = test_db().await;
    let pool = pool(&db, 2);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    let create = |body: serde_json::Value| {
        let client = &client;
        async move {
            forwarder::create_destination(client, &cipher(), ws, &body)
                .await
                .unwrap()
        }
    };
    let linkedin = create(json!({"type": "linkedin", "name": "li", "events": ["lead"],
        "config": {"conversionRules": {"lead": "1"}, "matchWithoutClickId": true},
        "credentials": {"accessToken": "t"}}))
    .await;
    let _reddit_plain = create(json!({"type": "reddit", "name": "rd", "events": ["lead"],
        "config": {"pixelId": "t2_x"}, "credentials": {"accessToken": "t"}}))
    .await;
    let _microsoft = create(
        json!({"type": "microsoft_ads", "name": "ms", "events": ["lead"],
        "config": {"customerId": "1", "accountId": "2", "conversionNames": {"lead": "L"}},
        "credentials": {"clientId": "c", "refreshToken": "r", "developerToken": "d"}}),
    )
    .await;
    let all_off: Vec<(DestinationType, bool)> =
        DestinationType::ALL.iter().map(|&t| (t, false)).collect();

    let unmatched = routed(ws, lead("l-1"), AttributionStatus::Unmatched, &all_off);
    assert_eq!(
        forwarder::enqueue(&client, std::slice::from_ref(&unmatched))
            .await
            .unwrap(),
        1
    );
    let got = dispatches_of(&client, ws, unmatched.event_id).await;
    assert_eq!(got[0].destination, linkedin.id);
    assert_eq!(got[0].destination_type, DestinationType::LinkedIn);

    // An event that carries LinkedIn's own click id goes by its route, not as user-data-only.
    let with_click = routed(
        ws,
        event(
            json!({"event": "lead", "leadId": "l-2", "email": "a@example.com", "liFatId": "li-1"}),
        ),
        AttributionStatus::Matched,
        &all_off,
    );
    assert_eq!(
        forwarder::enqueue(&client, std::slice::from_ref(&with_click))
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn concurrent_claims_never_share_a_dispatch() {
    let db = test_db().await;
    let pool = pool(&db, 4);
    let mut client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    webhook(&client, ws, "https://a.example.com/", &["sale"], true).await;
    let events: Vec<_> = (0..50)
        .map(|i| {
            routed(
                ws,
                sale(&format!("inv-{i}")),
                AttributionStatus::Matched,
                &ALL_ROUTES,
            )
        })
        .collect();
    assert_eq!(forwarder::enqueue(&client, &events).await.unwrap(), 50);

    let (mut a, mut b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    let lease = Duration::from_secs(30);
    let (first, second) = tokio::join!(
        queue::claim_due(&mut a, 30, lease, 5),
        queue::claim_due(&mut b, 30, lease, 5)
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.dispatches.len() + second.dispatches.len(), 50);
    let mut ids: Vec<Uuid> = first
        .dispatches
        .iter()
        .chain(&second.dispatches)
        .map(|d| d.id)
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50);
    assert!(queue::claim_due(&mut client, 30, lease, 5)
        .await
        .unwrap()
        .dispatches
        .is_empty());
}

fn result_for(d: &queue::ClaimedDispatch) -> AttemptResult {
    AttemptResult {
        workspace_id: d.workspace_id,
        id: d.id,
        status: DispatchStatus::Succeeded,
        retry_in: None,
        last_error: None,
        reason: None,
        at: OffsetDateTime::now_utc(),
        duration: Duration::from_millis(12),
        http_status: Some(200),
        outcome: "succeeded",
        error: None,
        request: None,
        confirmation: Some(forwarder::platforms::delivery::ConfirmationStatus::Confirmed),
        confirmation_request: None,
        check_in: None,
        released: false,
    }
}

/// A request that carried `d`, answered with `excerpt`.
fn request_for(d: &queue::ClaimedDispatch, excerpt: &str) -> RequestResult {
    RequestResult {
        workspace_id: d.workspace_id,
        id: Uuid::now_v7(),
        destination_id: d.destination.id,
        at: OffsetDateTime::now_utc(),
        duration: Duration::from_millis(12),
        http_status: Some(200),
        response_excerpt: Some(excerpt.into()),
    }
}

#[tokio::test]
async fn an_expired_lease_returns_the_claim_and_the_old_holder_cannot_record() {
    let db = test_db().await;
    let pool = pool(&db, 2);
    let mut client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    webhook(&client, ws, "https://a.example.com/", &["sale"], true).await;
    let event = routed(ws, sale("inv-1"), AttributionStatus::Matched, &ALL_ROUTES);
    forwarder::enqueue(&client, std::slice::from_ref(&event))
        .await
        .unwrap();

    // A worker claims with a lease that is already over, then "crashes".
    let crashed = queue::claim_due(&mut client, 10, Duration::ZERO, 5)
        .await
        .unwrap();
    assert_eq!(crashed.dispatches.len(), 1);
    let taken = queue::claim_due(&mut client, 10, Duration::from_secs(30), 5)
        .await
        .unwrap();
    assert_eq!(taken.dispatches.len(), 1);
    assert_eq!(taken.dispatches[0].attempts, 2);

    // The vanished worker comes back late: its result is refused.
    let late_answer = request_for(&crashed.dispatches[0], "late");
    let late = queue::record_results(
        &mut client,
        crashed.token,
        &[AttemptResult {
            request: Some(late_answer.id),
            ..result_for(&crashed.dispatches[0])
        }],
        std::slice::from_ref(&late_answer),
    )
    .await
    .unwrap();
    assert!(late.is_empty());
    let answer = request_for(&taken.dispatches[0], "ok");
    let recorded = queue::record_results(
        &mut client,
        taken.token,
        &[AttemptResult {
            request: Some(answer.id),
            ..result_for(&taken.dispatches[0])
        }],
        std::slice::from_ref(&answer),
    )
    .await
    .unwrap();
    assert_eq!(recorded, [taken.dispatches[0].id]);
    // The refused result's request is not kept: no attempt names it.
    assert_eq!(requests_of(&client, ws).await, [answer.id]);

    let id = forwarder::ids::to_wire(forwarder::ids::DISPATCH, taken.dispatches[0].id);
    let detail = forwarder::get_dispatch(&client, ws, &id).await.unwrap();
    assert_eq!(detail.dispatch.status, DispatchStatus::Succeeded);
    let outcomes: Vec<(i32, &str)> = detail
        .attempts
        .iter()
        .map(|a| (a.attempt, a.outcome.as_str()))
        .collect();
    assert_eq!(outcomes, [(1, "lease_expired"), (2, "succeeded")]);
    assert_eq!(detail.attempts[1].http_status, Some(200));
    assert_eq!(detail.attempts[0].response_excerpt, None);
    assert_eq!(detail.attempts[1].response_excerpt.as_deref(), Some("ok"));
}

#[tokio::test]
async fn a_send_under_way_when_its_destination_is_deleted_keeps_its_real_outcome() {
    let db = test_db().await;
    let pool = pool(&db, 2);
    let mut client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    let lands = webhook(&client, ws, "https://a.example.com/", &["sale"], true).await;
    let fails = webhook(&client, ws, "https://b.example.com/", &["sale"], true).await;
    let event = routed(ws, sale("inv-1"), AttributionStatus::Matched, &ALL_ROUTES);
    forwarder::enqueue(&client, std::slice::from_ref(&event))
        .await
        .unwrap();
    let claim = queue::claim_due(&mut client, 10, Duration::from_secs(30), 5)
        .await
        .unwrap();
    assert_eq!(claim.dispatches.len(), 2);

    // Both destinations are deleted while their dispatches are being sent.
    for destination in [&lands, &fails] {
        forwarder::delete_destination(&client, ws, &destination.id)
            .await
            .unwrap();
    }
    let during = dispatches_of(&client, ws, event.event_id).await;
    assert!(
        during.iter().all(|d| d.status == DispatchStatus::InFlight),
        "a send under way is not cancelled: {during:?}"
    );

    // One lands; the other fails in a way that would be retried.
    let results: Vec<AttemptResult> = claim
        .dispatches
        .iter()
        .map(|d| {
            let destination =
                forwarder::ids::to_wire(forwarder::ids::DESTINATION, d.destination.id);
            if destination == lands.id {
                result_for(d)
            } else {
                AttemptResult {
                    status: DispatchStatus::Retrying,
                    retry_in: Some(Duration::from_secs(60)),
                    last_error: Some("HTTP 503".into()),
                    http_status: Some(503),
                    outcome: "retry",
                    error: Some("HTTP 503".into()),
                    ..result_for(d)
                }
            }
        })
        .collect();
    let recorded = queue::record_results(&mut client, claim.token, &results, &[])
        .await
        .unwrap();
    assert_eq!(recorded.len(), 2, "both attempts are written down");

    let after = dispatches_of(&client, ws, event.event_id).await;
    let of = |id: &str| after.iter().find(|d| d.destination == id).unwrap();
    assert_eq!(of(&lands.id).status, DispatchStatus::Succeeded);
    assert_eq!(of(&lands.id).reason, None);
    assert_eq!(
        of(&fails.id).status,
        DispatchStatus::Cancelled,
        "nothing is left to retry against"
    );
    assert_eq!(of(&fails.id).reason.as_deref(), Some("destination deleted"));
    assert_eq!(of(&fails.id).last_error.as_deref(), Some("HTTP 503"));
}

#[tokio::test]
async fn a_deleted_destinations_send_whose_worker_vanished_is_cancelled_by_the_next_claim() {
    let db = test_db().await;
    let pool = pool(&db, 2);
    let mut client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    let hook = webhook(&client, ws, "https://a.example.com/", &["sale"], true).await;
    let event = routed(ws, sale("inv-1"), AttributionStatus::Matched, &ALL_ROUTES);
    forwarder::enqueue(&client, std::slice::from_ref(&event))
        .await
        .unwrap();
    let crashed = queue::claim_due(&mut client, 10, Duration::ZERO, 5)
        .await
        .unwrap();
    assert_eq!(crashed.dispatches.len(), 1);
    forwarder::delete_destination(&client, ws, &hook.id)
        .await
        .unwrap();
    let next = queue::claim_due(&mut client, 10, Duration::from_secs(30), 5)
        .await
        .unwrap();
    assert!(next.dispatches.is_empty());
    assert_eq!(next.cancelled, 1);
    let got = dispatches_of(&client, ws, event.event_id).await;
    assert_eq!(got[0].status, DispatchStatus::Cancelled);
    assert_eq!(got[0].reason.as_deref(), Some("destination deleted"));
}

#[tokio::test]
async fn a_vanished_worker_on_the_last_attempt_fails_the_dispatch() {
    let db = test_db().await;
    let pool = pool(&db, 2);
    let mut client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    webhook(&client, ws, "https://a.example.com/", &["sale"], true).await;
    let event = routed(ws, sale("inv-1"), AttributionStatus::Matched, &ALL_ROUTES);
    forwarder::enqueue(&client, std::slice::from_ref(&event))
        .await
        .unwrap();
    let crashed = queue::claim_due(&mut client, 10, Duration::ZERO, 1)
        .await
        .unwrap();
    assert_eq!(crashed.dispatches.len(), 1);
    let again = queue::claim_due(&mut client, 10, Duration::ZERO, 1)
        .await
        .unwrap();
    assert!(again.dispatches.is_empty());
    assert_eq!(again.exhausted, 1);
    let got = dispatches_of(&client, ws, event.event_id).await;
    assert_eq!(got[0].status, DispatchStatus::Failed);
    assert!(got[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("attempts exhausted"));
}

#[tokio::test]
async fn operators_retry_failed_dispatches_one_by_one_or_in_bulk() {
    let db = test_db().await;
    let pool = pool(&db, 2);
    let mut client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    let hook = webhook(&client, ws, "https://a.example.com/", &["sale"], true).await;
    let other_hook = webhook(&client, ws, "https://b.example.com/", &["sale"], true).await;
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
    // Everything fails permanently.
    let claim = queue::claim_due(&mut client, 100, Duration::from_secs(30), 5)
        .await
        .unwrap();
    let results: Vec<AttemptResult> = claim
        .dispatches
        .iter()
        .map(|d| AttemptResult {
            status: DispatchStatus::Failed,
            outcome: "permanent",
            last_error: Some("HTTP 410: gone".into()),
            error: Some("HTTP 410: gone".into()),
            http_status: Some(410),
            ..result_for(d)
        })
        .collect();
    assert_eq!(
        queue::record_results(&mut client, claim.token, &results, &[])
            .await
            .unwrap()
            .len(),
        6
    );

    let failed = forwarder::list_dispatches(
        &client,
        ws,
        DispatchFilter {
            status: Some(DispatchStatus::Failed),
            ..DispatchFilter::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(failed.data.len(), 6);
    let one = &failed.data[0];
    assert_eq!(one.last_error.as_deref(), Some("HTTP 410: gone"));

    let retried = forwarder::retry_dispatch(&client, ws, &one.id)
        .await
        .unwrap();
    assert_eq!(retried.status, DispatchStatus::Queued);
    assert!(retried.next_attempt_at.is_some());
    assert!(matches!(
        forwarder::retry_dispatch(&client, ws, &one.id).await,
        Err(Error::Conflict(message)) if message.contains("queued")
    ));
    assert!(matches!(
        forwarder::retry_dispatch(&client, Uuid::now_v7(), &one.id).await,
        Err(Error::NotFound)
    ));

    let count = forwarder::retry_dispatches(
        &client,
        ws,
        &json!({"status": "failed", "destination": hook.id}),
    )
    .await
    .unwrap();
    let already = usize::from(one.destination == hook.id);
    assert_eq!(count, 3 - already);
    let count = forwarder::retry_dispatches(&client, ws, &json!({}))
        .await
        .unwrap();
    assert_eq!(count, 3 - usize::from(one.destination == other_hook.id));
    let count = forwarder::retry_dispatches(&client, ws, &json!({"status": "failed"}))
        .await
        .unwrap();
    assert_eq!(count, 0);
    assert!(matches!(
        forwarder::retry_dispatches(&client, ws, &json!({"status": "succeeded", "since": "yesterday", "x": 1})).await,
        Err(Error::Invalid(errors)) if errors.len() == 3
    ));

    // A retried dispatch gets the full retry budget again.
    let claim = queue::claim_due(&mut client, 100, Duration::from_secs(30), 5)
        .await
        .unwrap();
    assert_eq!(claim.dispatches.len(), 6);
    assert!(claim
        .dispatches
        .iter()
        .all(|d| d.attempts == 2 && d.retry_from == 1));
}

#[tokio::test]
async fn stats_count_per_destination_and_status() {
    let db = test_db().await;
    let pool = pool(&db, 2);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    let hook = webhook(&client, ws, "https://a.example.com/", &["sale"], true).await;
    let ads = google(&client, ws, "data_manager").await;
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
    client
        .execute(
            "UPDATE dispatches SET status = 'succeeded', created_at = created_at - interval '10 seconds'
             WHERE destination_type = 'google_ads' AND event_id = $1",
            &[&events[0].event_id],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE dispatches SET created_at = now() - interval '42 seconds'
             WHERE destination_type = 'webhook' AND event_id = $1",
            &[&events[1].event_id],
        )
        .await
        .unwrap();

    let stats = forwarder::dispatch_stats(&client, ws).await.unwrap();
    assert_eq!(stats.totals["queued"], 5);
    assert_eq!(stats.totals["succeeded"], 1);
    assert_eq!(stats.totals["failed"], 0);
    let of = |id: &str| {
        stats
            .destinations
            .iter()
            .find(|d| d.destination == id)
            .unwrap()
    };
    assert_eq!(of(&hook.id).counts["queued"], 3);
    assert_eq!(of(&ads.id).counts["queued"], 2);
    assert_eq!(of(&ads.id).counts["succeeded"], 1);
    let age = stats.oldest_queued_age_seconds.unwrap();
    assert!((42.0..60.0).contains(&age), "{age}");
    assert!(of(&ads.id).oldest_queued_age_seconds.unwrap() < 42.0);
    let json = serde_json::to_value(&stats).unwrap();
    assert!(json["oldestQueuedAgeSeconds"].is_number());
    assert_eq!(json["destinations"][0]["counts"]["in_flight"], 0);

    let empty = forwarder::dispatch_stats(&client, Uuid::now_v7())
        .await
        .unwrap();
    assert!(empty.destinations.is_empty() && empty.oldest_queued_age_seconds.is_none());
}

#[tokio::test]
async fn retracting_queues_google_ads_retractions_and_records_not_supported_once() {
    let db = test_db().await;
    let pool = pool(&db, 2);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    let ads_api = google(&client, ws, "google_ads_api").await;
    let data_manager = google(&client, ws, "data_manager").await;
    let hook = webhook(&client, ws, "https://a.example.com/", &["sale"], true).await;
    let late_hook = webhook(&client, ws, "https://b.example.com/", &["sale"], true).await;
    let pixel = meta(&client, ws, &["sale"], false).await;
    let event = routed(ws, sale("inv-1"), AttributionStatus::Matched, &ALL_ROUTES);
    assert_eq!(
        forwarder::enqueue(&client, std::slice::from_ref(&event))
            .await
            .unwrap(),
        5
    );
    // Everything went out but one webhook, still waiting.
    let late_id = forwarder::ids::from_wire(forwarder::ids::DESTINATION, &late_hook.id).unwrap();
    client
        .execute(
            "UPDATE dispatches SET status = 'succeeded' WHERE workspace_id = $1 AND destination_id <> $2",
            &[&ws, &late_id],
        )
        .await
        .unwrap();

    let report = forwarder::retract(&client, ws, event.event_id, "refund")
        .await
        .unwrap();
    assert_eq!(
        (report.queued, report.not_supported, report.cancelled),
        (1, 3, 1)
    );
    let by_destination = |id: &str| {
        report
            .retractions
            .iter()
            .find(|d| d.destination == id)
            .unwrap()
    };
    assert_eq!(by_destination(&ads_api.id).status, DispatchStatus::Queued);
    assert_eq!(by_destination(&ads_api.id).kind, DispatchKind::Retraction);
    for id in [&data_manager.id, &hook.id, &pixel.id] {
        assert_eq!(by_destination(id).status, DispatchStatus::Skipped);
        assert_eq!(by_destination(id).reason.as_deref(), Some("not_supported"));
    }
    let all = dispatches_of(&client, ws, event.event_id).await;
    let late = all
        .iter()
        .find(|d| d.destination == late_hook.id && d.kind == DispatchKind::Conversion)
        .unwrap();
    assert_eq!(late.status, DispatchStatus::Cancelled);
    assert_eq!(late.reason.as_deref(), Some("event retracted: refund"));

    let again = forwarder::retract(&client, ws, event.event_id, "refund")
        .await
        .unwrap();
    assert_eq!(
        (again.queued, again.not_supported, again.cancelled),
        (0, 0, 0)
    );
    assert_eq!(again.retractions, report.retractions);
    assert_eq!(dispatches_of(&client, ws, event.event_id).await.len(), 9);
    let detail = forwarder::get_dispatch(&client, ws, &by_destination(&ads_api.id).id)
        .await
        .unwrap();
    assert_eq!(detail.retract_reason.as_deref(), Some("refund"));

    assert!(matches!(
        forwarder::retract(&client, ws, event.event_id, "  ").await,
        Err(Error::Invalid(_))
    ));
}

#[tokio::test]
async fn the_dispatch_list_filters_and_pages_newest_first() {
    let db = test_db().await;
    let pool = pool(&db, 2);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    let hook = webhook(&client, ws, "https://a.example.com/", &["sale"], true).await;
    google(&client, ws, "data_manager").await;
    // Events received a millisecond apart (a dispatch sorts with its event's millisecond).
    let events: Vec<_> = (0..4u64)
        .map(|i| {
            let mut event = routed(
                ws,
                sale(&format!("inv-{i}")),
                AttributionStatus::Matched,
                &ALL_ROUTES,
            );
            let ms =
                u64::try_from(event.received_at.unix_timestamp_nanos() / 1_000_000).unwrap() + i;
            event.event_id = Uuid::new_v7(uuid::Timestamp::from_unix(
                uuid::NoContext,
                ms / 1000,
                u32::try_from(ms % 1000).unwrap() * 1_000_000,
            ));
            event
        })
        .collect();
    for e in &events {
        forwarder::enqueue(&client, std::slice::from_ref(e))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = forwarder::list_dispatches(
            &client,
            ws,
            DispatchFilter {
                destination: Some(hook.id.clone()),
                limit: 3,
                cursor,
                ..DispatchFilter::default()
            },
        )
        .await
        .unwrap();
        seen.extend(page.data.into_iter().map(|d| d.event_id));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let expected: Vec<String> = events
        .iter()
        .rev()
        .map(|e| forwarder::ids::to_wire(forwarder::ids::EVENT, e.event_id))
        .collect();
    assert_eq!(seen, expected);

    let filter =
        DispatchFilter::from_pairs([("eventId", expected[0].as_str()), ("limit", "10")]).unwrap();
    let page = forwarder::list_dispatches(&client, ws, filter)
        .await
        .unwrap();
    assert_eq!(page.data.len(), 2);
    assert!(page.next_cursor.is_none());
    let errors = match DispatchFilter::from_pairs([
        ("status", "done"),
        ("destination", "evt_1"),
        ("limit", "500"),
        ("colour", "red"),
    ]) {
        Err(Error::Invalid(errors)) => errors,
        other => panic!("{other:?}"),
    };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["status", "destination", "limit", "colour"]);
    let json = serde_json::to_value(&page).unwrap();
    assert!(json["nextCursor"].is_null());
    assert_eq!(json["data"][0]["status"], "queued");
    assert!(json["data"][0]["lastError"].is_null());
}

/// The forwarder's migrations in order (V1 on), for the upgrade tests: each builds a database as
/// a release before one migration left it, fills it, and applies that migration.
const MIGRATIONS: [&str; 12] = [
    include_str!("../migrations/V1__forwarder.sql"),
    include_str!("../migrations/V2__platform_types.sql"),
    include_str!("../migrations/V3__confirmation_and_pacing.sql"),
    include_str!("../migrations/V4__restatements.sql"),
    include_str!("../migrations/V5__backfills.sql"),
    include_str!("../migrations/V6__backfill_total.sql"),
    include_str!("../migrations/V7__dispatch_requests.sql"),
    include_str!("../migrations/V8__dispatches_fillfactor.sql"),
    include_str!("../migrations/V9__dispatch_payloads.sql"),
    include_str!("../migrations/V10__dispatches_by_status_without_in_flight.sql"),
    include_str!("../migrations/V11__quota_buckets_per_project.sql"),
    include_str!("../migrations/V12__partition_dispatches_by_time.sql"),
];

/// A database migrated up to, not including, migration `version`; answers it and that migration.
async fn database_before(version: usize) -> (TestDb, &'static str) {
    let before = &MIGRATIONS[..version - 1];
    let id = format!("forwarder-before-v{version}:{}", before.concat());
    let db = TestDb::new(&id, |client| {
        Box::pin(async move {
            for sql in before {
                client.batch_execute(sql).await.map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    })
    .await;
    (db, MIGRATIONS[version - 1])
}

#[tokio::test]
async fn the_requests_migration_keeps_every_attempts_excerpt_once_per_answer() {
    let (db, requests_migration) = database_before(7).await;
    let pool = pool(&db, 2);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    let destination = Uuid::now_v7();
    client
        .execute(
            "INSERT INTO destinations (workspace_id, id, type, name, enabled, events, config, credentials)
             VALUES ($1, $2, 'meta', 'Meta', true, '{sale}', '{}', '\\x00')",
            &[&ws, &destination],
        )
        .await
        .unwrap();
    let events: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    let dispatches: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    for (event, dispatch) in events.iter().zip(&dispatches) {
        client
            .execute(
                "INSERT INTO dispatches (workspace_id, id, event_id, destination_id, destination_type,
                                         kind, status, payload, attempts)
                 VALUES ($1, $2, $3, $4, 'meta', 'conversion', 'succeeded', '{}', 1)",
                &[&ws, dispatch, event, &destination],
            )
            .await
            .unwrap();
    }
    // The first two went in one request (one answer, stored twice); the third in another; the
    // fourth was never sent (no excerpt).
    let at = OffsetDateTime::now_utc();
    let attempts: [(Uuid, i32, Option<i16>, Option<&str>); 4] = [
        (
            dispatches[0],
            40,
            Some(200),
            Some(r#"{"events_received":2}"#),
        ),
        (
            dispatches[1],
            40,
            Some(200),
            Some(r#"{"events_received":2}"#),
        ),
        (dispatches[2], 41, Some(500), Some("upstream broke")),
        (dispatches[3], 0, None, None),
    ];
    for (dispatch, duration, status, excerpt) in attempts {
        client
            .execute(
                "INSERT INTO dispatch_attempts (workspace_id, dispatch_id, attempt, at, duration_ms,
                                                http_status, outcome, response_excerpt)
                 VALUES ($1, $2, 1, $3, $4, $5, 'succeeded', $6)",
                &[&ws, &dispatch, &at, &duration, &status, &excerpt],
            )
            .await
            .unwrap();
    }

    client.batch_execute(requests_migration).await.unwrap();

    let requests: Vec<(Option<String>, Uuid)> = client
        .query(
            "SELECT response_excerpt, last_event_id FROM dispatch_requests
             WHERE workspace_id = $1 ORDER BY last_event_id",
            &[&ws],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        requests,
        [
            (Some(r#"{"events_received":2}"#.to_owned()), events[1]),
            (Some("upstream broke".to_owned()), events[2]),
        ]
    );
    for (dispatch, _, status, excerpt) in attempts {
        let wire = forwarder::ids::to_wire(forwarder::ids::DISPATCH, dispatch);
        let detail = forwarder::get_dispatch(&client, ws, &wire).await.unwrap();
        assert_eq!(detail.attempts.len(), 1);
        assert_eq!(detail.attempts[0].response_excerpt.as_deref(), excerpt);
        assert_eq!(
            detail.attempts[0].http_status,
            status.and_then(|s| u16::try_from(s).ok())
        );
    }
}

/// The workspace's platform requests kept, by id.
async fn requests_of(client: &deadpool_postgres::Client, ws: Uuid) -> Vec<Uuid> {
    client
        .query(
            "SELECT id FROM dispatch_requests WHERE workspace_id = $1 ORDER BY id",
            &[&ws],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// How many of these dispatches still have their payload stored.
async fn payloads_of(client: &deadpool_postgres::Client, ws: Uuid, dispatches: &[Uuid]) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM dispatch_payloads WHERE workspace_id = $1 AND dispatch_id = ANY($2)",
            &[&ws, &dispatches],
        )
        .await
        .unwrap()
        .get(0)
}

/// The requests of a workspace's upload checks, in order.
async fn upload_checks_of(client: &deadpool_postgres::Client, ws: Uuid) -> Vec<String> {
    client
        .query_one(
            "SELECT coalesce(array_agg(request_id ORDER BY request_id), '{}')
             FROM upload_checks WHERE workspace_id = $1",
            &[&ws],
        )
        .await
        .unwrap()
        .get(0)
}

/// The ids of an event's dispatches.
async fn dispatch_uuids(client: &deadpool_postgres::Client, ws: Uuid, event_id: Uuid) -> Vec<Uuid> {
    client
        .query(
            "SELECT id FROM dispatches WHERE workspace_id = $1 AND event_id = $2 ORDER BY id",
            &[&ws, &event_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn erasure_deletes_the_payloads_of_the_erased_dispatches_and_a_later_claim_sends_nothing() {
    let db = test_db().await;
    let pool = pool(&db, 2);
    let mut client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    webhook(&client, ws, "https://a.example.com/", &["sale"], true).await;
    let erased = routed(ws, sale("inv-1"), AttributionStatus::Matched, &ALL_ROUTES);
    let kept = routed(ws, sale("inv-2"), AttributionStatus::Matched, &ALL_ROUTES);
    forwarder::enqueue(&client, &[erased.clone(), kept.clone()])
        .await
        .unwrap();
    let erased_ids = dispatch_uuids(&client, ws, erased.event_id).await;
    let kept_ids = dispatch_uuids(&client, ws, kept.event_id).await;
    assert_eq!(payloads_of(&client, ws, &erased_ids).await, 1);

    // Both are in flight when the person is erased, and their worker then vanishes.
    let crashed = queue::claim_due(&mut client, 10, Duration::ZERO, 5)
        .await
        .unwrap();
    assert_eq!(crashed.dispatches.len(), 2);
    let stripped = forwarder::erase::strip_dispatches(&client, ws, &[erased.event_id])
        .await
        .unwrap();
    assert_eq!(stripped, 1);
    assert_eq!(payloads_of(&client, ws, &erased_ids).await, 0);
    assert_eq!(payloads_of(&client, ws, &kept_ids).await, 1);
    assert_eq!(
        dispatch_uuids(&client, ws, erased.event_id).await,
        erased_ids
    );

    // The next claim sends the other one; the erased one has nothing left to send.
    let taken = queue::claim_due(&mut client, 10, Duration::from_secs(30), 5)
        .await
        .unwrap();
    let sent: Vec<Uuid> = taken.dispatches.iter().map(|d| d.id).collect();
    assert_eq!(sent, kept_ids);
    let unreadable: Vec<Uuid> = taken.unreadable.iter().map(|u| u.1).collect();
    assert_eq!(unreadable, erased_ids);
}

#[tokio::test]
async fn retention_deletes_what_a_wider_partition_keeps_of_old_events() {
    let db = test_db().await;
    let pool = pool(&db, 2);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    webhook(&client, ws, "https://a.example.com/", &["sale"], true).await;
    google(&client, ws, "data_manager").await;
    let old = routed(ws, sale("inv-1"), AttributionStatus::Matched, &ALL_ROUTES);
    let new = routed(ws, sale("inv-2"), AttributionStatus::Matched, &ALL_ROUTES);
    forwarder::enqueue(&client, &[old.clone(), new.clone()])
        .await
        .unwrap();
    let old_ids = dispatch_uuids(&client, ws, old.event_id).await;
    let new_ids = dispatch_uuids(&client, ws, new.event_id).await;
    assert_eq!(payloads_of(&client, ws, &old_ids).await, 2);
    // Two upload checks and two platform requests: one of each made before the bound, one after.
    client
        .execute(
            "INSERT INTO upload_checks
                 (workspace_id, destination_id, request_id, status, due_at, deadline_at, created_at)
             SELECT DISTINCT ON (r) workspace_id, destination_id, r, 'confirmed', now(), now(),
                    CASE r WHEN 'req-old' THEN now() - interval '1 day' ELSE now() END
             FROM dispatches, unnest(ARRAY['req-old', 'req-new']) AS r
             WHERE workspace_id = $1 AND destination_type = 'google_ads'",
            &[&ws],
        )
        .await
        .unwrap();
    let (early, late) = (
        Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, 1_000_000, 0)),
        Uuid::now_v7(),
    );
    for id in [early, late] {
        client
            .execute(
                "INSERT INTO dispatch_requests (workspace_id, id, destination_id, at, duration_ms)
                 VALUES ($1, $2, $2, now(), 1)",
                &[&ws, &id],
            )
            .await
            .unwrap();
    }
    assert_eq!(upload_checks_of(&client, ws).await, ["req-new", "req-old"]);

    let gone = forwarder::retention::forget_dispatches(&client, ws, new.event_id)
        .await
        .unwrap();
    assert_eq!(gone, 2);
    assert_eq!(payloads_of(&client, ws, &old_ids).await, 0);
    assert_eq!(payloads_of(&client, ws, &new_ids).await, 2);
    assert_eq!(upload_checks_of(&client, ws).await, ["req-new"]);
    assert_eq!(requests_of(&client, ws).await, [late]);
}

#[tokio::test]
async fn the_payloads_migration_moves_what_dispatches_carried_and_keeps_nothing_of_the_erased() {
    let (db, payloads_migration) = database_before(9).await;
    let pool = pool(&db, 2);
    let mut client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    let hook = webhook(&client, ws, "https://a.example.com/", &["sale"], true).await;
    let destination = forwarder::ids::from_wire(forwarder::ids::DESTINATION, &hook.id).unwrap();
    let waiting = routed(ws, sale("inv-1"), AttributionStatus::Matched, &ALL_ROUTES);
    let payload = json!({
        "eventId": waiting.event_id,
        "receivedAt": events::format_timestamp(waiting.received_at),
        "event": waiting.event,
        "attribution": waiting.attribution,
    });
    let routing = serde_json::to_value(&waiting.routes).unwrap();
    let (queued, erased) = (Uuid::now_v7(), Uuid::now_v7());
    client
        .execute(
            "INSERT INTO dispatches (workspace_id, id, event_id, destination_id, destination_type,
                                     kind, status, payload, routing)
             VALUES ($1, $2, $3, $4, 'webhook', 'conversion', 'queued', $5, $6),
                    ($1, $7, $8, $4, 'webhook', 'conversion', 'succeeded', '{}', NULL)",
            &[
                &ws,
                &queued,
                &waiting.event_id,
                &destination,
                &payload,
                &routing,
                &erased,
                &Uuid::now_v7(),
            ],
        )
        .await
        .unwrap();

    client.batch_execute(payloads_migration).await.unwrap();

    let moved: Vec<(Uuid, serde_json::Value, Option<serde_json::Value>)> = client
        .query(
            "SELECT dispatch_id, payload, routing FROM dispatch_payloads WHERE workspace_id = $1",
            &[&ws],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(moved, [(queued, payload, Some(routing.clone()))]);
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.columns
             WHERE table_name = 'dispatches' AND column_name IN ('payload', 'routing')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);

    // The waiting dispatch goes out as it was routed.
    let claim = queue::claim_due(&mut client, 10, Duration::from_secs(30), 5)
        .await
        .unwrap();
    assert_eq!(claim.dispatches.len(), 1, "{:?}", claim.unreadable);
    let conversion = &claim.dispatches[0].conversion;
    assert_eq!(conversion.event_id, waiting.event_id);
    assert_eq!(conversion.event.invoice_id, waiting.event.invoice_id);
    assert_eq!(conversion.routing, routing);
}

#[tokio::test]
async fn partitioning_keeps_the_stored_dispatches_and_still_refuses_a_second_one() {
    let (db, partitioning) = database_before(12).await;
    let pool = pool(&db, 2);
    let mut client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    let hook = webhook(&client, ws, "https://a.example.com/", &["sale"], true).await;
    let destination = forwarder::ids::from_wire(forwarder::ids::DESTINATION, &hook.id).unwrap();
    let stored = routed(ws, sale("inv-1"), AttributionStatus::Matched, &ALL_ROUTES);
    // Stored as before: ids of the time they were queued, a request with its last event, made
    // by V7 for an attempt recorded before it: a random id that sorts past every month.
    let dispatch = Uuid::now_v7();
    let request = Uuid::from_u128(u128::MAX - 7);
    client
        .batch_execute(&format!(
            "INSERT INTO dispatches (workspace_id, id, event_id, destination_id, destination_type,
                                     kind, status, attempts)
             VALUES ('{ws}', '{dispatch}', '{event}', '{destination}', 'webhook', 'conversion',
                     'retrying', 1);
             INSERT INTO dispatch_payloads (workspace_id, dispatch_id, payload)
             VALUES ('{ws}', '{dispatch}', '{payload}');
             INSERT INTO dispatch_requests (workspace_id, id, destination_id, at, duration_ms,
                                            http_status, response_excerpt, last_event_id)
             VALUES ('{ws}', '{request}', '{destination}', now(), 5, 503, 'busy', '{event}');
             INSERT INTO dispatch_attempts (workspace_id, dispatch_id, attempt, at, duration_ms,
                                            http_status, outcome, request_id)
             VALUES ('{ws}', '{dispatch}', 1, now(), 5, 503, 'retry', '{request}');",
            event = stored.event_id,
            payload = json!({
                "eventId": stored.event_id,
                "receivedAt": events::format_timestamp(stored.received_at),
                "event": stored.event,
                "attribution": stored.attribution,
            }),
        ))
        .await
        .unwrap();

    client.batch_execute(partitioning).await.unwrap();

    for table in [
        "dispatches",
        "dispatch_payloads",
        "dispatch_attempts",
        "dispatch_requests",
    ] {
        let homes: Vec<String> = client
            .query(
                &format!("SELECT DISTINCT tableoid::regclass::text FROM {table}"),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(homes, [format!("{table}_legacy")]);
        let next = journal::retention::MonthPartition::of(
            journal::retention::MonthlyTable {
                name: table,
                key: "id",
                options: "",
            },
            OffsetDateTime::now_utc() + time::Duration::days(40),
        );
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&next.name])
            .await
            .unwrap()
            .get(0);
        assert!(exists, "{}", next.name);
    }
    // The stored dispatch reads as before, with its attempt and the request's answer; the
    // request now has an id of the time it was made.
    let wire = forwarder::ids::to_wire(forwarder::ids::DISPATCH, dispatch);
    let detail = forwarder::get_dispatch(&client, ws, &wire).await.unwrap();
    assert_eq!(detail.attempts.len(), 1);
    assert_eq!(detail.attempts[0].response_excerpt.as_deref(), Some("busy"));
    let rekeyed: Uuid = client
        .query_one("SELECT id FROM dispatch_requests", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(rekeyed, request);
    assert_eq!(rekeyed.as_bytes()[6..], request.as_bytes()[6..]);
    assert!(rekeyed < journal::retention::time_bound(OffsetDateTime::now_utc()));
    // A second enqueue of its event adds nothing (the old partition keeps its constraint); a
    // new event's dispatch gets the id made from what it is.
    let fresh = routed(ws, sale("inv-2"), AttributionStatus::Matched, &ALL_ROUTES);
    forwarder::enqueue(&client, &[stored.clone(), fresh.clone()])
        .await
        .unwrap();
    assert_eq!(
        dispatch_uuids(&client, ws, stored.event_id).await,
        [dispatch]
    );
    assert_eq!(
        dispatch_uuids(&client, ws, fresh.event_id).await,
        [queue::dispatch_id(
            fresh.event_id,
            destination,
            queue::DispatchKind::Conversion,
            0
        )]
    );
    client
        .execute("UPDATE dispatches SET due_at = now()", &[])
        .await
        .unwrap();
    let claim = queue::claim_due(&mut client, 10, Duration::from_secs(30), 5)
        .await
        .unwrap();
    let mut sent: Vec<Uuid> = claim
        .dispatches
        .iter()
        .map(|d| d.conversion.event_id)
        .collect();
    sent.sort();
    assert_eq!(sent, [stored.event_id, fresh.event_id]);
}
