//! A worker splits a large claim into parts that share no identifier and no person, and decides
//! them side by side: the decisions are those of the whole claim, and a part that fails loses
//! nothing and repeats nothing.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use attribution_matcher::{CarriedClicks, GraphCache, MatchSettings};
use common::{days_ago, TestApp};
use serde_json::{json, Value};

/// Customers per round: enough for a claim past the size from which steps split.
const CUSTOMERS: usize = 150;

/// Stores `events` through the batch endpoint; answers their ids in order.
async fn store(app: &TestApp, events: Vec<Value>) -> Vec<String> {
    let mut ids = Vec::with_capacity(events.len());
    for chunk in events.chunks(100) {
        let res = app
            .post("/v1/events/batch", &json!({"events": chunk}))
            .await;
        assert_eq!(res.status(), 200);
        let answer: Value = res.json().await.unwrap();
        for result in answer["results"].as_array().unwrap() {
            assert_eq!(result["status"], "accepted", "{result}");
            ids.push(result["id"].as_str().unwrap().to_owned());
        }
    }
    ids
}

/// Runs attribution steps of at most `limit` events until the queue is empty, with the copy of
/// the graph in `graphs`; answers the most parts a step used.
async fn drain(pool: &deadpool_postgres::Pool, limit: usize, graphs: &GraphCache) -> usize {
    let mut carried = CarriedClicks::default();
    let mut most = 0;
    for _ in 0..100 {
        let settings = MatchSettings::default();
        let report = pipeline::match_step_sized(pool, &settings, limit, &mut carried, graphs)
            .await
            .unwrap();
        if !report.claimed {
            return most;
        }
        most = most.max(report.parts);
    }
    panic!("the queue was not drained in 100 steps");
}

/// Round one: each customer's lead with its own gclid, by customer id and e-mail.
fn round_one() -> Vec<Value> {
    (0..CUSTOMERS)
        .map(|i| {
            json!({"event": "lead", "customerExternalId": format!("c{i}"),
                "email": format!("p{i}@shop.example"), "gclid": format!("g{i}"),
                "timestamp": days_ago(3)})
        })
        .collect()
}

/// Round two, in one claim: each customer's new click (a lead by e-mail), then their sale by
/// customer id alone, which reaches that click only through the stored person; and new
/// customers' lead and sale, linked only inside the claim.
fn round_two() -> Vec<Value> {
    let mut events = Vec::new();
    for i in 0..CUSTOMERS {
        events.push(
            json!({"event": "lead", "email": format!("p{i}@shop.example"),
            "gclid": format!("k{i}"), "timestamp": days_ago(2)}),
        );
        events.push(
            json!({"event": "sale", "customerExternalId": format!("c{i}"),
            "amount": 10, "currency": "EUR", "invoiceId": format!("s{i}"),
            "timestamp": days_ago(1)}),
        );
        events.push(
            json!({"event": "lead", "email": format!("q{i}@shop.example"),
            "gclid": format!("h{i}"), "timestamp": days_ago(2)}),
        );
        events.push(
            json!({"event": "sale", "customerExternalId": format!("d{i}"),
            "email": format!("q{i}@shop.example"), "amount": 20, "currency": "EUR",
            "invoiceId": format!("t{i}"), "timestamp": days_ago(1)}),
        );
    }
    events
}

/// Each sale of round two and the gclid it must be attributed to.
fn expected(ids: &[String]) -> HashMap<&str, String> {
    let mut out = HashMap::new();
    for i in 0..CUSTOMERS {
        out.insert(ids[4 * i + 1].as_str(), format!("k{i}"));
        out.insert(ids[4 * i + 3].as_str(), format!("h{i}"));
    }
    out
}

/// The event as `GET /v1/events/{id}` shows it.
async fn event(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/events/{id}"))
        .await
        .json()
        .await
        .unwrap()
}

async fn attributed_gclid(app: &TestApp, id: &str) -> Value {
    let event = event(app, id).await;
    assert_eq!(event["attribution"]["status"], "matched", "{event}");
    event["attribution"]["click"]["gclid"].clone()
}

#[tokio::test]
async fn a_split_claim_decides_every_event_as_the_whole_claim_would() {
    let app = TestApp::spawn_without_workers(common::test_db().await).await;
    let pool = app.db.pool(8);
    let graphs = GraphCache::default();
    store(&app, round_one()).await;
    drain(&pool, 2000, &graphs).await;

    let ids = store(&app, round_two()).await;
    assert_eq!(drain(&pool, 2000, &graphs).await, 2, "the claim was split");
    for (id, gclid) in expected(&ids) {
        assert_eq!(attributed_gclid(&app, id).await, gclid.as_str(), "{id}");
    }
    // Persons: one per customer of each round, merged across their identifiers.
    let persons = app.count("persons").await;
    assert!(persons >= 2 * CUSTOMERS as i64, "{persons}");
    let client = pool.get().await.unwrap();
    let split: i64 = client
        .query_one(
            "SELECT count(DISTINCT person_id) FROM identities i
             WHERE NOT EXISTS (SELECT 1 FROM persons p WHERE p.person_id = i.person_id AND p.merged_into IS NOT NULL)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(split, 2 * CUSTOMERS as i64, "each customer is one person");
}

#[tokio::test]
async fn a_failed_part_rolls_the_claim_back_and_its_decided_events_are_not_decided_again() {
    let app = TestApp::spawn_without_workers(common::test_db().await).await;
    let pool = app.db.pool(8);
    // One copy of the graph throughout: the failed step's committed part must not leave it stale.
    let graphs = GraphCache::default();
    store(&app, round_one()).await;
    drain(&pool, 2000, &graphs).await;
    let ids = store(&app, round_two()).await;

    // One sale cannot be recorded: the part holding it fails, the other commits.
    let client = pool.get().await.unwrap();
    client
        .batch_execute(&format!(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'refused on purpose'; END $$;
             CREATE TRIGGER refuse BEFORE INSERT ON attributions FOR EACH ROW
             WHEN (NEW.event_id = '{}') EXECUTE FUNCTION refuse();",
            ids[1].trim_start_matches("evt_")
        ))
        .await
        .unwrap();
    let mut carried = CarriedClicks::default();
    let failed = pipeline::match_step_sized(
        &pool,
        &MatchSettings::default(),
        2000,
        &mut carried,
        &graphs,
    )
    .await;
    assert!(failed.is_err());
    let queued: i64 = client
        .query_one(
            "SELECT coalesce(sum(cardinality(event_ids)), 0)::bigint FROM match_queue",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        queued,
        ids.len() as i64,
        "every claimed event is back in the queue"
    );
    let decided: i64 = client
        .query_one("SELECT count(*) FROM attributions", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        decided > CUSTOMERS as i64 && decided < (CUSTOMERS + ids.len()) as i64,
        "the other part committed: {decided}"
    );

    client
        .batch_execute("DROP TRIGGER refuse ON attributions")
        .await
        .unwrap();
    drain(&pool, 2000, &graphs).await;
    for (id, gclid) in expected(&ids) {
        assert_eq!(attributed_gclid(&app, id).await, gclid.as_str(), "{id}");
    }
    // Each conversion was queued for the report stage once, whichever step decided it.
    let credited: Vec<(i64, i64)> = client
        .query(
            "SELECT count(*), count(DISTINCT e) FROM credit_batches, unnest(event_ids) AS e",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(credited, [(credited[0].1, (CUSTOMERS + ids.len()) as i64)]);
}

/// A mixed load: registered clicks named by deferred leads, leads with their own gclid, sales
/// linked through customer id or e-mail, sales nothing links to (pending), sales sharing a
/// placeholder e-mail. Answers each event's payload.
fn mixed_load() -> (Vec<Value>, Vec<Value>) {
    let clicks: Vec<Value> = (0..60)
        .map(|i| {
            json!({"clickId": format!("clk_{i}"), "gclid": format!("reg{i}"),
                "timestamp": days_ago(5)})
        })
        .collect();
    let mut events = Vec::new();
    for i in 0..80 {
        if i < 60 {
            events.push(json!({"event": "lead", "mode": "deferred",
                "customerExternalId": format!("m{i}"), "clickId": format!("clk_{i}"),
                "timestamp": days_ago(4)}));
        }
        events.push(
            json!({"event": "lead", "email": format!("m{i}@shop.example"),
            "gclid": format!("own{i}"), "timestamp": days_ago(3)}),
        );
        events.push(
            json!({"event": "sale", "customerExternalId": format!("m{i}"),
            "email": format!("m{i}@shop.example"), "amount": 30, "currency": "EUR",
            "invoiceId": format!("m-s{i}"), "timestamp": days_ago(2)}),
        );
        events.push(
            json!({"event": "sale", "customerExternalId": format!("lone{i}"),
            "amount": 5, "currency": "EUR", "invoiceId": format!("m-l{i}"),
            "timestamp": days_ago(1)}),
        );
        if i % 10 == 0 {
            events.push(
                json!({"event": "sale", "customerExternalId": format!("m{i}"),
                "email": "test@example.com", "amount": 7, "currency": "EUR",
                "invoiceId": format!("m-p{i}"), "timestamp": days_ago(1)}),
            );
        }
    }
    (clicks, events)
}

/// What the API shows of an event's attribution, without the times it was decided at.
async fn shown(app: &TestApp, id: &str) -> Value {
    let event = event(app, id).await;
    let mut attribution = event["attribution"].clone();
    if let Some(fields) = attribution.as_object_mut() {
        fields.remove("decidedAt");
        fields.remove("pendingUntil");
    }
    json!({"attribution": attribution, "routing": event["routing"]})
}

#[tokio::test]
async fn a_mixed_load_decided_in_parts_reads_as_one_decided_in_small_whole_claims() {
    let (clicks, events) = mixed_load();
    let mut shown_by: Vec<Vec<Value>> = Vec::new();
    let mut parts_used = Vec::new();
    // Claims of 2,000 events split in parts; claims of one request (100 events) are decided
    // whole; and claims of 2,000 again, without a copy of the graph (every identifier read).
    for (limit, copy) in [(2000, true), (99, true), (2000, false)] {
        let app = TestApp::spawn_without_workers(common::test_db().await).await;
        let pool = app.db.pool(8);
        let graphs = GraphCache::new(if copy {
            GraphCache::DEFAULT_CAPACITY
        } else {
            0
        });
        let res = app
            .post("/v1/clicks/batch", &json!({"clicks": clicks}))
            .await;
        assert!(res.status().is_success(), "{}", res.status());
        drain(&pool, limit, &graphs).await;
        let ids = store(&app, events.clone()).await;
        parts_used.push(drain(&pool, limit, &graphs).await);
        let mut all = Vec::with_capacity(ids.len());
        for id in &ids {
            all.push(shown(&app, id).await);
        }
        shown_by.push(all);
    }
    assert_eq!(parts_used, [2, 1, 2]);
    let statuses: Vec<&Value> = shown_by[0]
        .iter()
        .map(|s| &s["attribution"]["status"])
        .collect();
    for status in ["matched", "pending", "unmatched"] {
        assert!(statuses.iter().any(|s| *s == status), "some {status}");
    }
    for (n, (split, whole)) in shown_by[0].iter().zip(&shown_by[1]).enumerate() {
        assert_eq!(split, whole, "event {n}: {}", events[n]);
    }
    for (n, (copied, read)) in shown_by[0].iter().zip(&shown_by[2]).enumerate() {
        assert_eq!(copied, read, "event {n}: {}", events[n]);
    }
}

/// Two processes attribute one workspace in turn, each with its own copy of the graph: what one
/// of them merged, the other sees on its next step (its copy is dropped, not trusted).
#[tokio::test]
async fn a_copy_of_the_graph_is_not_trusted_after_another_process_wrote_the_graph() {
    let app = TestApp::spawn_without_workers(common::test_db().await).await;
    let pool = app.db.pool(8);
    let (one, other) = (GraphCache::default(), GraphCache::default());
    // One process: each customer's lead, and a lead by another e-mail of theirs not linked yet.
    let mut leads = round_one();
    leads.extend((0..CUSTOMERS).map(|i| {
        json!({"event": "lead", "email": format!("e{i}@shop.example"),
            "gclid": format!("f{i}"), "timestamp": days_ago(3)})
    }));
    store(&app, leads).await;
    drain(&pool, 2000, &one).await;

    // The other process: each customer seen with that e-mail, with a new click; their two
    // persons merge.
    let merging: Vec<Value> = (0..CUSTOMERS)
        .map(|i| {
            json!({"event": "lead", "customerExternalId": format!("c{i}"),
                "email": format!("e{i}@shop.example"), "gclid": format!("m{i}"),
                "timestamp": days_ago(2)})
        })
        .collect();
    store(&app, merging).await;
    drain(&pool, 2000, &other).await;

    // The first again: sales by either e-mail alone reach the merged click, whichever of the two
    // persons survived the merge.
    let sales: Vec<Value> = (0..CUSTOMERS)
        .flat_map(|i| {
            ["p", "e"].map(|prefix| {
                json!({"event": "sale", "email": format!("{prefix}{i}@shop.example"),
                    "amount": 10, "currency": "EUR", "invoiceId": format!("x{prefix}{i}"),
                    "timestamp": days_ago(1)})
            })
        })
        .collect();
    let ids = store(&app, sales).await;
    drain(&pool, 2000, &one).await;
    for (n, id) in ids.iter().enumerate() {
        let gclid = format!("m{}", n / 2);
        assert_eq!(attributed_gclid(&app, id).await, gclid.as_str(), "{id}");
    }
}

/// The first touch a worker keeps for each person: a later step sees it, and a click that arrives
/// late but happened earlier replaces it.
#[tokio::test]
async fn a_kept_first_touch_gives_way_to_an_earlier_click_that_arrives_late() {
    let app = TestApp::spawn_without_workers(common::test_db().await).await;
    let pool = app.db.pool(8);
    let graphs = GraphCache::default();
    let sale = |i: usize, round: &str, days: i64| {
        json!({"event": "sale", "customerExternalId": format!("c{i}"),
            "gclid": format!("{round}{i}"), "amount": 10, "currency": "EUR",
            "invoiceId": format!("{round}{i}"), "timestamp": days_ago(days)})
    };
    let first_touches = |ids: Vec<String>, prefix: &'static str| {
        let app = &app;
        async move {
            for (i, id) in ids.iter().enumerate() {
                let event = event(app, id).await;
                let gclid = &event["attribution"]["firstTouch"]["gclid"];
                assert_eq!(gclid, format!("{prefix}{i}").as_str(), "{id}");
            }
        }
    };
    // Each customer's lead, then a sale with its own click: the lead's click is the first touch
    // (and the one kept).
    store(&app, round_one()).await;
    drain(&pool, 2000, &graphs).await;
    let ids = store(&app, (0..CUSTOMERS).map(|i| sale(i, "s", 2)).collect()).await;
    drain(&pool, 2000, &graphs).await;
    first_touches(ids, "g").await;
    // A lead sent late, with a click from before the first one; then another sale.
    let late: Vec<Value> = (0..CUSTOMERS)
        .map(|i| {
            json!({"event": "lead", "customerExternalId": format!("c{i}"),
                "gclid": format!("early{i}"), "timestamp": days_ago(5)})
        })
        .collect();
    store(&app, late).await;
    drain(&pool, 2000, &graphs).await;
    let ids = store(&app, (0..CUSTOMERS).map(|i| sale(i, "t", 1)).collect()).await;
    drain(&pool, 2000, &graphs).await;
    first_touches(ids, "early").await;
}
