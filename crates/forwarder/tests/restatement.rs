//! Restatements on a real PostgreSQL: the value history, the current value through the SQL
//! function and view the reports read, unsent conversions carrying the new value, older unsent
//! restatements superseded, and `not_supported` where a destination cannot restate.
#![allow(clippy::unwrap_used)]

mod worker_support;

use events::AttributionStatus;
use forwarder::{DispatchKind, DispatchStatus, NewValue, RestateTarget};
use rust_decimal::Decimal;
use serde_json::json;
use uuid::Uuid;
use worker_support::*;

fn new_value(body: serde_json::Value) -> NewValue {
    NewValue::from_json(&body).unwrap()
}

#[tokio::test]
async fn restating_keeps_the_history_revalues_unsent_conversions_and_supersedes_older_restatements()
{
    let db = test_db().await;
    let pool = pool(&db, 2);
    let mut client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    let ads = google(&client, ws, "google_ads_api").await;
    let pixel = meta(&client, ws, &["sale"], false).await;
    let event = routed(ws, sale("inv-1"), AttributionStatus::Matched, &ALL_ROUTES);
    forwarder::enqueue(&client, std::slice::from_ref(&event))
        .await
        .unwrap();
    // Google already has it; Meta's is still waiting.
    let google_id = forwarder::ids::from_wire(forwarder::ids::DESTINATION, &ads.id).unwrap();
    client
        .execute(
            "UPDATE dispatches SET status = 'succeeded' WHERE destination_id = $1",
            &[&google_id],
        )
        .await
        .unwrap();
    let target = RestateTarget {
        workspace_id: ws,
        event_id: event.event_id,
        original: event.event.value,
        received_at: event.received_at,
    };

    let tx = client.transaction().await.unwrap();
    let first = forwarder::restate(
        &tx,
        &target,
        &new_value(json!({"amount": 30.5, "reason": "partial refund"})),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(first.changed);
    assert_eq!(first.revision, 1);
    let amounts: Vec<String> = first
        .value_history
        .iter()
        .map(|v| format!("{}:{} {}", v.revision, v.amount, v.currency))
        .collect();
    assert_eq!(amounts, ["0:49.9 USD", "1:30.5 USD"]);
    assert_eq!(
        (first.queued, first.not_supported, first.revalued),
        (1, 0, 1)
    );
    let meta_payload: serde_json::Value = client
        .query_one(
            "SELECT p.payload FROM dispatches d
             JOIN dispatch_payloads p ON p.workspace_id = d.workspace_id AND p.dispatch_id = d.id
             WHERE d.kind = 'conversion' AND d.destination_id = $1",
            &[&forwarder::ids::from_wire(forwarder::ids::DESTINATION, &pixel.id).unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        meta_payload["event"]["amount"], 30.5,
        "the unsent conversion goes out restated"
    );

    let second = forwarder::restate(
        &client,
        &target,
        &new_value(json!({"amount": 20, "currency": "usd"})),
    )
    .await
    .unwrap();
    assert_eq!((second.revision, second.superseded), (2, 1));
    let restatements: Vec<(i32, DispatchStatus)> = second
        .restatements
        .iter()
        .map(|d| (d.attempts, d.status))
        .collect();
    assert_eq!(
        restatements,
        [(0, DispatchStatus::Cancelled), (0, DispatchStatus::Queued)]
    );
    assert!(second
        .restatements
        .iter()
        .all(|d| d.kind == DispatchKind::Restatement));
    let again = forwarder::restate(&client, &target, &new_value(json!({"amount": 20.00})))
        .await
        .unwrap();
    assert!(!again.changed);
    assert_eq!(again.value_history.len(), 3);

    // What reports read.
    let row = client
        .query_one(
            "SELECT amount, currency, revision FROM event_current_value($1, $2)",
            &[&ws, &event.event_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Decimal>(0), Decimal::from(20));
    assert_eq!(row.get::<_, String>(1), "USD");
    assert_eq!(row.get::<_, i32>(2), 2);
    let current = forwarder::current_values(&client, ws, &[event.event_id, Uuid::now_v7()])
        .await
        .unwrap();
    assert_eq!(current.len(), 1);
    assert_eq!(current[&event.event_id].0, Decimal::from(20));

    // Another currency conflicts with the event's.
    let wrong = forwarder::restate(
        &client,
        &target,
        &new_value(json!({"amount": 5, "currency": "EUR"})),
    )
    .await
    .unwrap_err();
    assert!(matches!(wrong, forwarder::Error::Conflict(ref why) if why.contains("USD")));
}

#[tokio::test]
async fn destinations_that_cannot_restate_record_not_supported() {
    let db = test_db().await;
    let pool = pool(&db, 2);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    google(&client, ws, "data_manager").await;
    webhook(&client, ws, "https://hooks.example.com/x", &["sale"], true).await;
    let event = routed(ws, sale("inv-2"), AttributionStatus::Matched, &ALL_ROUTES);
    forwarder::enqueue(&client, std::slice::from_ref(&event))
        .await
        .unwrap();
    client
        .execute("UPDATE dispatches SET status = 'succeeded'", &[])
        .await
        .unwrap();
    let target = RestateTarget {
        workspace_id: ws,
        event_id: event.event_id,
        original: event.event.value,
        received_at: event.received_at,
    };
    let report = forwarder::restate(&client, &target, &new_value(json!({"amount": 10})))
        .await
        .unwrap();
    assert_eq!((report.queued, report.not_supported), (0, 2));
    assert!(report.restatements.iter().all(
        |d| d.status == DispatchStatus::Skipped && d.reason.as_deref() == Some("not_supported")
    ));
}

#[test]
fn a_bad_body_lists_every_field() {
    let error = NewValue::from_json(&json!({"amount": "ten", "currency": 3, "reason": "", "x": 1}))
        .unwrap_err();
    let forwarder::Error::Invalid(errors) = error else {
        panic!("{error:?}")
    };
    let mut fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["amount", "currency", "reason", "x"]);
    assert!(NewValue::from_json(&json!({})).is_err());
    assert!(NewValue::from_json(&json!({"amount": 1.23456})).is_err());
}
