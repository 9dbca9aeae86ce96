//! Several workers over one database: one workspace per worker at a time, arrival order, crashed
//! claims coming back, and merges that are never lost.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use attribution_matcher::{claim_at, decide, MatchSettings};
use common::{Harness, T0};
use events::Event;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

#[tokio::test]
async fn two_workers_never_claim_the_same_workspace_at_once() {
    let mut a = Harness::new().await;
    let mut b = Harness::on(a.pool.clone()).await;
    let first = a
        .send(json!({"event": "lead", "email": "a@a.io"}), T0)
        .await;
    let second = a
        .send(json!({"event": "lead", "email": "b@a.io"}), T0)
        .await;

    let mut one = a.pool.get().await.unwrap();
    let mut two = a.pool.get().await.unwrap();
    let tx_one = one.transaction().await.unwrap();
    let tx_two = two.transaction().await.unwrap();

    // Worker one takes workspace a, one event at a time.
    let claim = claim_at(&tx_one, 1, T0).await.unwrap().unwrap();
    assert_eq!(claim.workspace_id, a.workspace);
    assert_eq!(claim.event_ids, [first]);
    // Worker two finds a's second event but not a's lock: nothing to do.
    assert_eq!(claim_at(&tx_two, 10, T0).await.unwrap(), None);

    // Work for workspace b goes to worker two while one still holds a.
    let other = b
        .send(json!({"event": "lead", "email": "a@a.io"}), T0)
        .await;
    let claim_two = claim_at(&tx_two, 10, T0).await.unwrap().unwrap();
    assert_eq!(claim_two.workspace_id, b.workspace);
    assert_eq!(claim_two.event_ids, [other]);

    let events = a.load(&claim);
    decide(&tx_one, &claim, &events, &a.settings, T0)
        .await
        .unwrap();
    tx_one.commit().await.unwrap();
    tx_two.rollback().await.unwrap();

    // With a released, the rest of a is claimable; b's event came back with the rollback.
    let decided = a.run(T0).await;
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0].event_id, second);
    let decided = b.run(T0).await;
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0].event_id, other);
}

#[tokio::test]
async fn a_crashed_workers_claim_is_claimed_again() {
    let mut h = Harness::new().await;
    let id = h.send(json!({"event": "lead", "gclid": "g"}), T0).await;
    {
        let mut client = h.pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let claim = claim_at(&tx, 10, T0).await.unwrap().unwrap();
        assert_eq!(claim.event_ids, [id]);
        let events = h.load(&claim);
        decide(&tx, &claim, &events, &h.settings, T0).await.unwrap();
        // The worker dies before it commits.
        drop(tx);
    }
    assert_eq!(h.decision(id).await, None);
    let decided = h.run_one(id, T0).await;
    assert!(decided.first);
}

#[tokio::test]
async fn events_are_claimed_in_arrival_order() {
    let mut h = Harness::new().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(
            h.send(
                json!({"event": "lead", "customerExternalId": format!("u{i}")}),
                T0,
            )
            .await,
        );
    }
    let mut seen = Vec::new();
    loop {
        let mut client = h.pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let Some(claim) = claim_at(&tx, 3, T0).await.unwrap() else {
            break;
        };
        assert!(claim.event_ids.len() <= 3);
        let events = h.load(&claim);
        let decided = decide(&tx, &claim, &events, &h.settings, T0).await.unwrap();
        tx.commit().await.unwrap();
        seen.extend(decided.into_iter().map(|d| d.event_id));
    }
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn a_claim_takes_whole_ingest_groups_oldest_first() {
    let h = Harness::new().await;
    let other = Harness::on(h.pool.clone()).await;
    let mut ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    ids.sort_unstable();
    let client = h.pool.get().await.unwrap();
    // One ingest transaction with events of two workspaces, then another with one event.
    let group = [
        (h.workspace, ids[0]),
        (other.workspace, ids[1]),
        (h.workspace, ids[2]),
        (h.workspace, ids[3]),
    ];
    attribution_matcher::enqueue(&client, &group).await.unwrap();
    attribution_matcher::enqueue(&client, &[(h.workspace, ids[4])])
        .await
        .unwrap();
    let stats = attribution_matcher::queue_stats(&client).await.unwrap();
    assert_eq!(stats.queued, 5, "the queue counts events, not rows");

    let mut claims = Vec::new();
    for limit in [2, 10, 10] {
        let mut conn = h.pool.get().await.unwrap();
        let tx = conn.transaction().await.unwrap();
        let claim = claim_at(&tx, limit, T0).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        claims.push((claim.workspace_id, claim.event_ids, claim.others_waiting));
    }
    assert_eq!(
        claims,
        [
            // The oldest group is taken whole even when it holds more than the limit.
            (h.workspace, vec![ids[0], ids[2], ids[3]], true),
            // Then the oldest work left: the other workspace's part of the same transaction.
            (other.workspace, vec![ids[1]], true),
            // The last work: nobody else waits.
            (h.workspace, vec![ids[4]], false),
        ]
    );
    let mut conn = h.pool.get().await.unwrap();
    let tx = conn.transaction().await.unwrap();
    assert_eq!(claim_at(&tx, 10, T0).await.unwrap(), None);
}

#[tokio::test]
async fn a_claim_stops_before_the_group_that_would_pass_the_limit() {
    let h = Harness::new().await;
    let mut ids: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    ids.sort_unstable();
    let client = h.pool.get().await.unwrap();
    for group in [&ids[..1], &ids[1..3], &ids[3..]] {
        let arrivals: Vec<(Uuid, Uuid)> = group.iter().map(|id| (h.workspace, *id)).collect();
        attribution_matcher::enqueue(&client, &arrivals)
            .await
            .unwrap();
    }
    let mut conn = h.pool.get().await.unwrap();
    let tx = conn.transaction().await.unwrap();
    // 1 + 2 events fit in 3; the group after them does not.
    let claim = claim_at(&tx, 3, T0).await.unwrap().unwrap();
    assert_eq!(claim.event_ids, ids[..3]);
    tx.commit().await.unwrap();
    let tx = conn.transaction().await.unwrap();
    let claim = claim_at(&tx, 3, T0).await.unwrap().unwrap();
    assert_eq!(claim.event_ids, ids[3..]);
}

/// Worker loop: claim and decide until no workspace has work left.
async fn work(
    pool: deadpool_postgres::Pool,
    journal: std::sync::Arc<HashMap<Uuid, (OffsetDateTime, Event)>>,
) -> usize {
    // The chains below put 40 customer ids in one person: allowed here, to test merges alone.
    let settings = MatchSettings {
        identity_max_customer_ids: 50,
        ..MatchSettings::default()
    };
    let mut decided = 0;
    let mut idle = 0;
    while idle < 50 {
        let mut client = pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let Some(claim) = claim_at(&tx, 5, T0).await.unwrap() else {
            tx.commit().await.unwrap();
            let stats = attribution_matcher::queue_stats(&pool.get().await.unwrap())
                .await
                .unwrap();
            let queued = stats.queued;
            if queued == 0 {
                return decided;
            }
            idle += 1;
            tokio::task::yield_now().await;
            continue;
        };
        let events: Vec<_> = claim
            .event_ids
            .iter()
            .filter_map(|id| journal.get(id).map(|(at, e)| (*id, *at, e.clone())))
            .collect();
        decided += decide(&tx, &claim, &events, &settings, T0)
            .await
            .unwrap()
            .len();
        tx.commit().await.unwrap();
    }
    decided
}

#[tokio::test]
async fn concurrent_workers_lose_no_merge() {
    // Three workspaces, each a chain of leads that links 40 emails into one person only when
    // every link is kept; four workers take the steps in whatever order they win the locks.
    let pool = common::pool().await;
    let mut journal = HashMap::new();
    let mut workspaces = Vec::new();
    for _ in 0..3 {
        let mut h = Harness::on(pool.clone()).await;
        // p_i - phone_i - c_i - p_(i+1): linked only all together; sent so that most steps
        // merge persons made by earlier steps.
        for i in 0..40 {
            h.send(
                json!({"event": "lead", "email": format!("p{i}@x.io"),
                       "phone": format!("+1415555{:04}", 100 + i)}),
                T0,
            )
            .await;
        }
        for i in 0..40 {
            h.send(
                json!({"event": "lead", "customerExternalId": format!("c{i}"),
                       "email": format!("p{}@x.io", (i + 1) % 40)}),
                T0,
            )
            .await;
        }
        for i in (0..40).rev() {
            h.send(
                json!({"event": "lead", "phone": format!("+1415555{:04}", 100 + i),
                       "customerExternalId": format!("c{i}")}),
                T0,
            )
            .await;
        }
        journal.extend(h.journal.drain());
        workspaces.push(h);
    }
    let journal = std::sync::Arc::new(journal);
    let workers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(work(pool.clone(), journal.clone())))
        .collect();
    let mut decided = 0;
    for worker in workers {
        decided += worker.await.unwrap();
    }
    assert_eq!(decided, 3 * 120);
    for h in &workspaces {
        assert_eq!(h.persons().await, 1, "workspace {}", h.workspace);
        let client = pool.get().await.unwrap();
        let identifiers: i64 = client
            .query_one(
                "SELECT count(*) FROM identities WHERE workspace_id = $1",
                &[&h.workspace],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(identifiers, 40 * 3);
    }
}

#[tokio::test]
async fn registering_a_click_never_waits_for_a_matcher_step() {
    let mut h = Harness::new().await;
    let id = h
        .send(
            json!({"event": "sale", "clickId": "c_mid", "amount": 1, "currency": "USD"}),
            T0,
        )
        .await;
    let mut client = h.pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let claim = claim_at(&tx, 10, T0).await.unwrap().unwrap();
    // While the step holds the workspace, the click is registered (and committed) at once.
    let registered = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        h.click(json!({"clickId": "c_mid", "gclid": "g"}), T0),
    )
    .await
    .expect("registration blocked by the matcher");
    assert!(registered.created);
    // The step may or may not see the click; either way the sale ends up matched.
    let events = h.load(&claim);
    decide(&tx, &claim, &events, &h.settings, T0).await.unwrap();
    tx.commit().await.unwrap();
    h.run(T0).await;
    let decision = h.decision(id).await.unwrap();
    assert_eq!(
        decision.attribution.status,
        events::AttributionStatus::Matched
    );
}

#[tokio::test]
async fn a_claim_takes_as_many_small_queue_rows_as_its_limit_holds_oldest_first() {
    let mut h = Harness::new().await;
    let mut sent = Vec::new();
    for n in 0..40 {
        sent.push(
            h.send(json!({"event": "lead", "email": format!("p{n}@a.io")}), T0)
                .await,
        );
    }
    let mut client = h.pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let claim = claim_at(&tx, 35, T0).await.unwrap().unwrap();
    let mut oldest = sent[..35].to_vec();
    oldest.sort_unstable();
    assert_eq!(claim.event_ids, oldest);
    tx.rollback().await.unwrap();
}
