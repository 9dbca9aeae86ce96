//! Accept-once through HTTP: natural keys and Idempotency-Keys, under concurrency.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{create_key, sale, seed_lead, TestApp};
use ingest_api::keys::Scope;
use serde_json::{json, Value};

#[tokio::test]
async fn a_hundred_concurrent_sends_of_one_invoice_store_one_event() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let sends: Vec<_> = (0..100)
        .map(|_| {
            let app = std::sync::Arc::clone(&app);
            tokio::spawn(async move {
                let res = app.post("/v1/events", &sale("inv-race")).await;
                (res.status().as_u16(), res.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for send in sends {
        let (status, body) = send.await.unwrap();
        match status {
            202 => {
                created += 1;
                assert_eq!(body["duplicate"], false);
            }
            200 => assert_eq!(body["duplicate"], true),
            other => panic!("unexpected status {other}: {body}"),
        }
        ids.insert(body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1, "all 100 answers carry the one event's id");
    assert_eq!(app.count("events").await, 1);
}

#[tokio::test]
async fn a_duplicate_invoice_returns_the_original_event_id_and_time() {
    let app = TestApp::spawn().await;
    let first: Value = app
        .post("/v1/events", &sale("inv-1"))
        .await
        .json()
        .await
        .unwrap();
    let mut retry = sale("inv-1");
    retry["amount"] = json!(5);
    let res = app.post("/v1/events", &retry).await;
    assert_eq!(res.status(), 200);
    let second: Value = res.json().await.unwrap();
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["receivedAt"], first["receivedAt"]);
    assert_eq!(second["duplicate"], true);
    assert_eq!(app.count("events").await, 1);
}

#[tokio::test]
async fn lead_ids_dedup_leads_and_kinds_do_not_collide() {
    let app = TestApp::spawn().await;
    let mut lead = seed_lead();
    lead["leadId"] = json!("k-1");
    assert_eq!(app.post("/v1/events", &lead).await.status(), 202);
    assert_eq!(app.post("/v1/events", &lead).await.status(), 200);
    // A sale whose invoiceId equals the lead's leadId is another event.
    assert_eq!(app.post("/v1/events", &sale("k-1")).await.status(), 202);
    // A lead without leadId has no natural key: each is new.
    assert_eq!(app.post("/v1/events", &seed_lead()).await.status(), 202);
    assert_eq!(app.post("/v1/events", &seed_lead()).await.status(), 202);
    assert_eq!(app.count("events").await, 4);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_byte_for_byte() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_vec(&sale("inv-idem")).unwrap();
    let first = app
        .post_raw("/v1/events", &app.key, body.clone(), Some("order-1"))
        .await;
    assert_eq!(first.status(), 202);
    assert!(!first.headers().contains_key("idempotent-replayed"));
    let first_body = first.bytes().await.unwrap();
    for _ in 0..2 {
        let again = app
            .post_raw("/v1/events", &app.key, body.clone(), Some("order-1"))
            .await;
        assert_eq!(again.status(), 202);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(again.bytes().await.unwrap(), first_body);
    }
    // Another body under the same key is refused.
    let other = serde_json::to_vec(&sale("inv-other")).unwrap();
    let res = app
        .post_raw("/v1/events", &app.key, other.clone(), Some("order-1"))
        .await;
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "https://convrelay.dev/problems/idempotency-key-reused"
    );
    // Keys are per workspace.
    let globex = create_key(&app.db, "globex", &[Scope::Ingest]).await;
    let res = app
        .post_raw("/v1/events", &globex, other, Some("order-1"))
        .await;
    assert_eq!(res.status(), 202);
    assert_eq!(app.count("events").await, 2);
}

#[tokio::test]
async fn a_batch_answer_is_replayed_for_its_idempotency_key() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_vec(&json!({"events": [sale("b-1"), {"event": "sale"}]})).unwrap();
    let first = app
        .post_raw("/v1/events/batch", &app.key, body.clone(), Some("batch-1"))
        .await;
    assert_eq!(first.status(), 200);
    let first_body = first.bytes().await.unwrap();
    let again = app
        .post_raw("/v1/events/batch", &app.key, body, Some("batch-1"))
        .await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.bytes().await.unwrap(), first_body);
    assert_eq!(app.count("events").await, 1);
}

#[tokio::test]
async fn a_rejected_request_leaves_its_idempotency_key_free() {
    let app = TestApp::spawn().await;
    let bad = serde_json::to_vec(&json!({"event": "sale"})).unwrap();
    let res = app
        .post_raw("/v1/events", &app.key, bad, Some("k-free"))
        .await;
    assert_eq!(res.status(), 422);
    let good = serde_json::to_vec(&sale("inv-after")).unwrap();
    let res = app
        .post_raw("/v1/events", &app.key, good, Some("k-free"))
        .await;
    assert_eq!(res.status(), 202);
    assert_eq!(app.count("idempotency_keys").await, 1);
}

#[tokio::test]
async fn a_key_held_by_a_request_in_flight_answers_409() {
    let app = TestApp::spawn().await;
    // Another process's transaction holds the key, as the writer does until its commit.
    let workspace: uuid::Uuid = app
        .db
        .client()
        .await
        .query_one("SELECT id FROM workspaces WHERE name = 'acme'", &[])
        .await
        .unwrap()
        .get(0);
    let mut holder = app.db.client().await;
    let tx = holder.transaction().await.unwrap();
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(($1::uuid)::text || ':' || $2, 7477))",
        &[&workspace, &"busy-key"],
    )
    .await
    .unwrap();
    let body = serde_json::to_vec(&sale("inv-busy")).unwrap();
    let res = app
        .post_raw("/v1/events", &app.key, body.clone(), Some("busy-key"))
        .await;
    assert_eq!(res.status(), 409);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "https://convrelay.dev/problems/idempotency-key-in-flight"
    );
    assert_eq!(app.count("events").await, 0);
    tx.rollback().await.unwrap();
    let res = app
        .post_raw("/v1/events", &app.key, body, Some("busy-key"))
        .await;
    assert_eq!(res.status(), 202);
}

#[tokio::test]
async fn malformed_idempotency_keys_are_400() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_vec(&sale("inv-x")).unwrap();
    let long = "k".repeat(256);
    for key in ["", long.as_str(), "tab\tkey"] {
        let res = app
            .http
            .post(app.url("/v1/events"))
            .bearer_auth(&app.key)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", key)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{key:?}");
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
    }
    let res = app
        .http
        .post(app.url("/v1/events"))
        .bearer_auth(&app.key)
        .header("Content-Type", "application/json")
        .header(
            "Idempotency-Key",
            reqwest::header::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(app.count("events").await, 0);
}

#[tokio::test]
async fn an_expired_key_is_free_again_and_goes_with_its_day() {
    let db = common::test_db().await;
    let app = TestApp::spawn_with(db, |url| {
        let url = url.to_owned();
        ingest_api::Settings::from_lookup(move |name| match name {
            "DATABASE_URL" => Some(url.clone()),
            "CONVRELAY_LISTEN" => Some("127.0.0.1:0".into()),
            "CONVRELAY_RATE_LIMIT" => Some("0".into()),
            "CONVRELAY_IDEMPOTENCY_TTL_SECS" => Some("1".into()),
            _ => None,
        })
        .unwrap()
    })
    .await;
    let first = serde_json::to_vec(&sale("inv-ttl-1")).unwrap();
    let res = app
        .post_raw("/v1/events", &app.key, first, Some("ttl"))
        .await;
    assert_eq!(res.status(), 202);
    let second = serde_json::to_vec(&sale("inv-ttl-2")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = app
            .post_raw("/v1/events", &app.key, second.clone(), Some("ttl"))
            .await;
        match res.status().as_u16() {
            202 => break,
            422 => {}
            other => panic!("unexpected {other}"),
        }
        assert!(Instant::now() < deadline, "the key never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.count("events").await, 2);
    // Both answers are kept, the expired one ignored, until their day is past: then the day's
    // partition goes, and both with it.
    assert_eq!(app.count("idempotency_keys").await, 2);
    let pool = ingest_api::db::pool(&app.db.url, 1, Duration::from_secs(5)).unwrap();
    let mut client = pool.get().await.unwrap();
    let tomorrow = time::OffsetDateTime::now_utc() + time::Duration::DAY;
    let kept = dedup::idempotency::keep_days(&mut client, tomorrow, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(!kept.dropped.is_empty(), "{kept:?}");
    assert_eq!(app.count("idempotency_keys").await, 0);
}
