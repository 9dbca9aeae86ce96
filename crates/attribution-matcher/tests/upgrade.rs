//! Upgrading a database whose identity graph kept whole SHA-256 digests (32 bytes) to the
//! 16-byte heads kept now: every stored identifier is cut in place, and the graph links and
//! attributes as before.
#![allow(clippy::unwrap_used)]

mod common;

use attribution_matcher::{identifier_hash, IdentifierKind};
use common::{days, Harness, T0};
use events::MatchedBy;
use serde_json::json;
use test_support::TestDb;

/// Every column of the graph, its queue and its decisions that holds an identifier.
const COLUMNS: [(&str, &str); 6] = [
    ("identities", "identifier"),
    ("clicks", "identifier"),
    ("match_queue", "click_identifier"),
    ("attributions", "named_click"),
    ("attributions", "touch"),
    ("attributions", "first_touch"),
];

/// How many stored identifiers (of every column in `COLUMNS`) are not `length` bytes long, and
/// how many there are in all.
async fn lengths(client: &tokio_postgres::Client, length: i32) -> (i64, i64) {
    let (mut other, mut all) = (0, 0);
    for (table, column) in COLUMNS {
        let row = client
            .query_one(
                &format!(
                    "SELECT count(*) FILTER (WHERE length({column}) <> $1), count({column})
                     FROM {table}"
                ),
                &[&length],
            )
            .await
            .unwrap();
        other += row.get::<_, i64>(0);
        all += row.get::<_, i64>(1);
    }
    (other, all)
}

#[tokio::test]
async fn whole_digests_are_cut_to_their_heads_and_the_graph_still_links() {
    let db = TestDb::new("matcher-v8", |client| {
        Box::pin(async move {
            journal::migrate(client).await.map_err(|e| e.to_string())?;
            attribution_matcher::migrate_to(client, 8)
                .await
                .map_err(|e| e.to_string())
        })
    })
    .await;
    let pool = db.pool(4);
    let mut h = Harness::on(pool.clone()).await;

    // A person: a registered click, then a lead that names it with the person's ids; and a
    // second click registered but not yet looked at (its identifier waits in the queue).
    h.click(json!({"clickId": "c_old", "gclid": "g1"}), days(T0, -10))
        .await;
    let lead = h
        .send(
            json!({"event": "lead", "clickId": "c_old", "email": "alex@example.com",
                   "customerExternalId": "u1"}),
            days(T0, -9),
        )
        .await;
    assert_eq!(h.run(days(T0, -9)).await.len(), 1);
    h.click(json!({"clickId": "c_queued", "fbclid": "f2"}), days(T0, -2))
        .await;

    // As a release before this one left it: every identifier the whole SHA-256 of
    // "<kind>:<value>".
    let client = pool.get().await.unwrap();
    let values = [
        (IdentifierKind::ClickId, "c_old"),
        (IdentifierKind::ClickId, "c_queued"),
        (IdentifierKind::Email, "alex@example.com"),
        (IdentifierKind::CustomerExternalId, "u1"),
    ];
    for (kind, value) in values {
        let head = identifier_hash(kind, value).to_vec();
        let text = format!("{}:{value}", kind.as_str());
        for (table, column) in COLUMNS {
            client
                .execute(
                    &format!(
                        "UPDATE {table} SET {column} = sha256(convert_to($2, 'UTF8'))
                         WHERE {column} = $1"
                    ),
                    &[&head, &text],
                )
                .await
                .unwrap();
        }
    }
    let (other, all) = lengths(&client, 32).await;
    assert_eq!(
        other, 0,
        "every stored identifier is a whole digest before the upgrade"
    );
    assert!(
        all >= 6,
        "the story stored identifiers in most columns: {all}"
    );

    let mut admin = db.client().await;
    attribution_matcher::migrate(&mut admin).await.unwrap();
    assert_eq!(
        lengths(&client, 16).await,
        (0, all),
        "every identifier is cut to its head"
    );

    // The lead's decision reads back with its click, and a sale by the same email is attributed
    // to the click the person had before the upgrade.
    let decision = h.decision(lead).await.unwrap();
    assert_eq!(
        decision.attribution.click.unwrap().click_id.as_deref(),
        Some("c_old")
    );
    let sale = h
        .send(
            json!({"event": "sale", "email": "Alex@Example.com", "amount": 10, "currency": "EUR"}),
            T0,
        )
        .await;
    let decided = h.run_one(sale, T0).await;
    assert_eq!(decided.attribution.matched_by, Some(MatchedBy::Email));
    assert_eq!(
        decided.attribution.click.unwrap().click_id.as_deref(),
        Some("c_old")
    );
    assert_eq!(h.persons().await, 1);
}
