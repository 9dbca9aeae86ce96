//! Upgrading a database whose natural keys were kept as text to their digests: a key claimed
//! before is still taken after, by the same event, and can still be looked up and released.
#![allow(clippy::unwrap_used)]

use dedup::{Claim, NaturalKey};
use test_support::TestDb;
use uuid::Uuid;

#[tokio::test]
async fn keys_kept_as_text_are_still_taken_after_the_upgrade() {
    let db = TestDb::new("dedup-v1", |client| {
        Box::pin(async move {
            dedup::migrate_to(client, 1)
                .await
                .map_err(|e| e.to_string())
        })
    })
    .await;
    let mut client = db.client().await;
    let ws = Uuid::now_v7();
    let (sale, lead) = (Uuid::now_v7(), Uuid::now_v7());
    client
        .execute(
            "INSERT INTO natural_keys (workspace_id, kind, key, event_id)
             VALUES ($1, 'sale', 'ord_1001', $2), ($1, 'lead', 'ord_1001', $3)",
            &[&ws, &sale, &lead],
        )
        .await
        .unwrap();

    dedup::migrate(&mut client).await.unwrap();
    let pool = db.pool(1);
    let client = pool.get().await.unwrap();

    let again = |kind: &'static str| NaturalKey {
        workspace_id: ws,
        kind,
        key: "ord_1001".into(),
        event_id: Uuid::now_v7(),
    };
    let claims = dedup::natural::claim_natural_keys(&client, &[again("sale"), again("lead")])
        .await
        .unwrap();
    assert_eq!(claims, [Claim::Duplicate(sale), Claim::Duplicate(lead)]);
    let found = dedup::natural::find_event(&client, ws, "sale", "ord_1001")
        .await
        .unwrap();
    assert_eq!(found, Some(sale));
    let released = dedup::erase::forget_natural_keys(&client, ws, &[("sale", "ord_1001", sale)])
        .await
        .unwrap();
    assert_eq!(released, 1);
    let claims = dedup::natural::claim_natural_keys(&client, &[again("sale")])
        .await
        .unwrap();
    assert_eq!(claims, [Claim::New]);
}
