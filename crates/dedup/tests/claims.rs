//! The dedup rules on a real PostgreSQL, one transaction against another.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use deadpool_postgres::Pool;
use dedup::idempotency::{self, NewResponse};
use dedup::{Claim, IdempotencyKey, NaturalKey, RequestFingerprint};
use test_support::TestDb;
use uuid::Uuid;

async fn pool() -> Pool {
    // The template is named after the migrations, so that a new one builds a new template.
    let migrations = format!("dedup-only:{:?}", dedup::migrations());
    let db = TestDb::new(&migrations, |client| {
        Box::pin(async move { dedup::migrate(client).await.map_err(|e| e.to_string()) })
    })
    .await;
    db.pool(4)
}

fn key(ws: Uuid, name: &str) -> NaturalKey {
    NaturalKey {
        workspace_id: ws,
        kind: "sale",
        key: name.into(),
        event_id: Uuid::now_v7(),
    }
}

#[tokio::test]
async fn the_first_occurrence_in_a_call_wins_and_later_ones_point_at_it() {
    let pool = pool().await;
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    let keys = [
        key(ws, "a"),
        key(ws, "b"),
        key(ws, "a"),
        key(Uuid::now_v7(), "a"),
    ];
    let claims = dedup::natural::claim_natural_keys(&client, &keys)
        .await
        .unwrap();
    assert_eq!(
        claims,
        [
            Claim::New,
            Claim::New,
            Claim::Duplicate(keys[0].event_id),
            Claim::New
        ]
    );
    let again = [key(ws, "b"), key(ws, "b")];
    let claims = dedup::natural::claim_natural_keys(&client, &again)
        .await
        .unwrap();
    assert_eq!(
        claims,
        [
            Claim::Duplicate(keys[1].event_id),
            Claim::Duplicate(keys[1].event_id)
        ]
    );
}

#[tokio::test]
async fn a_claim_rolled_back_leaves_the_key_free() {
    let pool = pool().await;
    let ws = Uuid::now_v7();
    let first = key(ws, "inv-crash");
    {
        let mut client = pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let claims = dedup::natural::claim_natural_keys(&tx, std::slice::from_ref(&first))
            .await
            .unwrap();
        assert_eq!(claims, [Claim::New]);
        // The process dies before commit: the transaction is rolled back.
        tx.rollback().await.unwrap();
    }
    let client = pool.get().await.unwrap();
    let retry = key(ws, "inv-crash");
    let claims = dedup::natural::claim_natural_keys(&client, std::slice::from_ref(&retry))
        .await
        .unwrap();
    assert_eq!(claims, [Claim::New]);
}

#[tokio::test]
async fn a_concurrent_claim_waits_for_the_first_and_sees_its_outcome() {
    let pool = pool().await;
    let ws = Uuid::now_v7();
    let first = key(ws, "inv-race");
    let mut a = pool.get().await.unwrap();
    let tx = a.transaction().await.unwrap();
    dedup::natural::claim_natural_keys(&tx, std::slice::from_ref(&first))
        .await
        .unwrap();
    let second = key(ws, "inv-race");
    let pool2 = pool.clone();
    let contender = tokio::spawn(async move {
        let client = pool2.get().await.unwrap();
        dedup::natural::claim_natural_keys(&client, std::slice::from_ref(&second))
            .await
            .unwrap()
    });
    // The contender blocks on the uncommitted row until the first commits.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!contender.is_finished());
    tx.commit().await.unwrap();
    let claims = tokio::time::timeout(Duration::from_secs(10), contender)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claims, [Claim::Duplicate(first.event_id)]);
}

#[tokio::test]
async fn an_idempotency_answer_is_stored_only_with_its_transaction() {
    let pool = pool().await;
    let ws = Uuid::now_v7();
    let k = IdempotencyKey::parse(b"order-7").unwrap();
    let fp = RequestFingerprint::new("POST", "/v1/events", b"{}");
    let answer = NewResponse {
        workspace_id: ws,
        key: &k,
        fingerprint: fp,
        status: 202,
        body: b"{\"id\":1}",
    };
    let expires = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    {
        let mut client = pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        assert_eq!(
            idempotency::lock_keys(&tx, &[(ws, &k)]).await.unwrap(),
            [true]
        );
        // Held: another transaction cannot take the key meanwhile.
        let other = pool.get().await.unwrap();
        assert_eq!(
            idempotency::lock_keys(&other, &[(ws, &k)]).await.unwrap(),
            [false]
        );
        idempotency::store_responses(&tx, std::slice::from_ref(&answer), expires)
            .await
            .unwrap();
        tx.rollback().await.unwrap();
    }
    let client = pool.get().await.unwrap();
    assert_eq!(
        idempotency::find_responses(&client, &[(ws, &k)])
            .await
            .unwrap(),
        [None]
    );
    assert_eq!(
        idempotency::lock_keys(&client, &[(ws, &k)]).await.unwrap(),
        [true]
    );
    idempotency::store_responses(&client, &[answer], expires)
        .await
        .unwrap();
    let kept = idempotency::find_responses(&client, &[(ws, &k)])
        .await
        .unwrap();
    let kept = kept[0].clone().unwrap();
    assert_eq!(
        (kept.status, kept.body.as_slice()),
        (202, &b"{\"id\":1}"[..])
    );
    assert_eq!(kept.fingerprint, fp);
}
