//! Kept Idempotency-Key answers by the day they expire: the upkeep creates days ahead, moves
//! answers that waited in the default partition into their day, and drops the days past whole;
//! upgrading keeps the live answers of an unpartitioned table.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use deadpool_postgres::GenericClient;
use dedup::idempotency::{self, IdempotencyKey, NewResponse, RequestFingerprint};
use test_support::TestDb;
use time::OffsetDateTime;
use uuid::Uuid;

const DAY: time::Duration = time::Duration::DAY;

async fn count(client: &impl GenericClient, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

async fn keep(
    client: &impl GenericClient,
    ws: Uuid,
    key: &IdempotencyKey,
    expires: OffsetDateTime,
) {
    let response = NewResponse {
        workspace_id: ws,
        key,
        fingerprint: RequestFingerprint::new("POST", "/v1/events", b"{}"),
        status: 202,
        body: b"{\"id\":\"evt_1\"}",
    };
    idempotency::store_responses(client, &[response], expires)
        .await
        .unwrap();
}

async fn live(client: &impl GenericClient, ws: Uuid, key: &IdempotencyKey) -> bool {
    idempotency::find_responses(client, &[(ws, key)])
        .await
        .unwrap()[0]
        .is_some()
}

#[tokio::test]
async fn days_are_made_ahead_filled_from_the_default_partition_and_dropped_when_past() {
    let migrations = format!("dedup:{:?}", dedup::migrations());
    let db = TestDb::new(&migrations, |client| {
        Box::pin(async move { dedup::migrate(client).await.map_err(|e| e.to_string()) })
    })
    .await;
    let pool = db.pool(1);
    let mut client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    let now = OffsetDateTime::now_utc();
    let ttl = Duration::from_secs(10 * 86_400);

    // Kept for ten days before the upkeep made those days: it waits in the default partition.
    let later = IdempotencyKey::parse(b"later").unwrap();
    keep(&client, ws, &later, now + 10 * DAY).await;
    assert_eq!(count(&client, "idempotency_keys_default").await, 1);
    // An answer long expired whose day was never made: it waits there too.
    let stale = IdempotencyKey::parse(b"stale").unwrap();
    keep(&client, ws, &stale, now - 5 * DAY).await;
    assert!(!live(&client, ws, &stale).await);

    let kept = idempotency::keep_days(&mut client, now, ttl).await.unwrap();
    assert!(!kept.created.is_empty(), "{kept:?}");
    let expected: Vec<String> = (0..=11).map(|d| day_name(now + d * DAY)).collect();
    assert_eq!(days(&client).await, expected, "today to the eleventh day");
    assert_eq!(count(&client, "idempotency_keys_default").await, 0);
    assert_eq!(
        count(&client, "idempotency_keys").await,
        1,
        "the stale answer went"
    );
    assert!(
        live(&client, ws, &later).await,
        "moved into its day, still found"
    );

    // Run again: nothing to do.
    let again = idempotency::keep_days(&mut client, now, ttl).await.unwrap();
    assert_eq!(again, idempotency::DaysKept::default());

    // Eleven days on, the answer's day is past: the days before are dropped, whole.
    let kept = idempotency::keep_days(&mut client, now + 11 * DAY, ttl)
        .await
        .unwrap();
    assert_eq!(kept.dropped.len(), 11, "days 0 to 10: {kept:?}");
    assert_eq!(count(&client, "idempotency_keys").await, 0);
    let expected: Vec<String> = (11..=22).map(|d| day_name(now + d * DAY)).collect();
    assert_eq!(days(&client).await, expected);
}

fn day_name(at: OffsetDateTime) -> String {
    let date = at.date();
    format!(
        "idempotency_keys_p{:04}{:02}{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// The day partitions, in order.
async fn days(client: &impl GenericClient) -> Vec<String> {
    client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'idempotency_keys'::regclass
               AND c.relname <> 'idempotency_keys_default'
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn upgrading_keeps_the_live_answers_and_leaves_the_expired_ones() {
    let db = TestDb::new("dedup-v2-idempotency", |client| {
        Box::pin(async move {
            dedup::migrate_to(client, 2)
                .await
                .map_err(|e| e.to_string())
        })
    })
    .await;
    let mut client = db.client().await;
    let ws = Uuid::now_v7();
    client
        .execute(
            "INSERT INTO idempotency_keys
                 (workspace_id, key, request_hash, response_status, response_body, expires_at)
             VALUES ($1, 'live', $2, 202, '\\x7b7d', now() + interval '20 hours'),
                    ($1, 'gone', $2, 202, '\\x7b7d', now() - interval '1 hour')",
            &[&ws, &vec![0u8; 32]],
        )
        .await
        .unwrap();

    dedup::migrate(&mut client).await.unwrap();
    let pool = db.pool(1);
    let client = pool.get().await.unwrap();
    assert_eq!(count(&client, "idempotency_keys").await, 1);
    assert_eq!(count(&client, "idempotency_keys_default").await, 0);
    let key = IdempotencyKey::parse(b"live").unwrap();
    let found = idempotency::find_responses(&client, &[(ws, &key)])
        .await
        .unwrap();
    let found = found[0].as_ref().unwrap();
    assert_eq!((found.status, found.body.as_slice()), (202, &b"{}"[..]));
}
