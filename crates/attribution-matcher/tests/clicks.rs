//! The clicks registry on a real PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use attribution_matcher::{get_click, register_clicks, CLICK_ID_PREFIX};
use common::{Harness, T0};
use events::parse_click;
use serde_json::json;
use time::Duration;

#[tokio::test]
async fn a_click_is_stored_with_every_field_and_read_back() {
    let h = Harness::new().await;
    let registered = h
        .click(
            json!({"clickId": "clickid_123", "timestamp": "2026-04-10T11:59:00.250Z",
                   "gclid": "g", "gbraid": "gb", "wbraid": "wb", "fbclid": "f", "fbc": "fb.1.2.f",
                   "fbp": "fb.1.2.3", "ttclid": "t", "msclkid": "m",
                   "utm": {"source": "google", "medium": "cpc", "campaign": "spring",
                           "term": "crm", "content": "ad1"},
                   "url": "https://example.com/?gclid=g", "referrer": "https://www.google.com/",
                   "ip": "2001:db8::7", "userAgent": "Mozilla/5.0"}),
            T0,
        )
        .await;
    assert!(registered.created);
    let client = h.pool.get().await.unwrap();
    let stored = get_click(&client, h.workspace, "clickid_123")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, registered.click);
    let wire = serde_json::to_value(&stored).unwrap();
    assert_eq!(wire["clickId"], "clickid_123");
    assert_eq!(wire["timestamp"], "2026-04-10T11:59:00.250Z");
    assert_eq!(wire["msclkid"], "m");
    assert_eq!(wire["utm"]["term"], "crm");
    assert_eq!(wire["ip"], "2001:db8::7");
    assert_eq!(wire["userAgent"], "Mozilla/5.0");
    assert!(wire["createdAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        get_click(&client, h.workspace, "other").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn a_click_without_an_id_gets_a_generated_one() {
    let h = Harness::new().await;
    let first = h.click(json!({"gclid": "g1"}), T0).await;
    let second = h.click(json!({"utm": {"source": "newsletter"}}), T0).await;
    for registered in [&first, &second] {
        assert!(registered.created);
        let id = &registered.click.click_id;
        assert!(id.starts_with(CLICK_ID_PREFIX), "{id}");
        assert_eq!(id.len(), CLICK_ID_PREFIX.len() + 32);
    }
    assert!(first.click.click_id < second.click.click_id, "time-ordered");
    assert_eq!(first.click.timestamp, T0);
}

#[tokio::test]
async fn the_same_click_id_twice_answers_the_first() {
    let h = Harness::new().await;
    let first = h
        .click(json!({"clickId": "dup", "gclid": "first"}), T0)
        .await;
    let again = h
        .click(
            json!({"clickId": "dup", "gclid": "second"}),
            T0 + Duration::minutes(1),
        )
        .await;
    assert!(first.created);
    assert!(!again.created);
    assert_eq!(again.click, first.click);
    assert_eq!(again.click.click_ids.gclid.as_deref(), Some("first"));
}

#[tokio::test]
async fn a_batch_keeps_the_first_of_each_click_id_in_input_order() {
    let h = Harness::new().await;
    h.click(json!({"clickId": "old", "fbclid": "f0"}), T0).await;
    let clicks: Vec<_> = [
        json!({"clickId": "b", "gclid": "b1"}),
        json!({"clickId": "a", "gclid": "a1"}),
        json!({"clickId": "b", "gclid": "b2"}),
        json!({"clickId": "old", "fbclid": "f1"}),
        json!({"gclid": "generated"}),
    ]
    .iter()
    .map(|body| parse_click(body, T0).unwrap())
    .collect();
    let client = h.pool.get().await.unwrap();
    let registered = register_clicks(&client, h.workspace, &clicks)
        .await
        .unwrap();
    let summary: Vec<(bool, &str, Option<&str>)> = registered
        .iter()
        .map(|r| {
            (
                r.created,
                r.click.click_id.as_str(),
                r.click
                    .click_ids
                    .gclid
                    .as_deref()
                    .or(r.click.click_ids.fbclid.as_deref()),
            )
        })
        .collect();
    assert_eq!(
        summary[..4],
        [
            (true, "b", Some("b1")),
            (true, "a", Some("a1")),
            (false, "b", Some("b1")),
            (false, "old", Some("f0")),
        ]
    );
    assert!(summary[4].0);
    assert!(summary[4].1.starts_with(CLICK_ID_PREFIX));
    assert!(register_clicks(&client, h.workspace, &[])
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn concurrent_registrations_of_one_click_id_keep_one() {
    let h = Harness::new().await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let pool = h.pool.clone();
        let workspace = h.workspace;
        tasks.push(tokio::spawn(async move {
            let click =
                parse_click(&json!({"clickId": "race", "gclid": format!("g{i}")}), T0).unwrap();
            let client = pool.get().await.unwrap();
            register_clicks(&client, workspace, &[click])
                .await
                .unwrap()
                .remove(0)
        }));
    }
    let mut created = 0;
    let mut kept = Vec::new();
    for task in tasks {
        let registered = task.await.unwrap();
        created += usize::from(registered.created);
        kept.push(registered.click);
    }
    assert_eq!(created, 1);
    assert!(kept.windows(2).all(|pair| pair[0] == pair[1]));
}

#[tokio::test]
async fn a_click_nobody_named_is_filed_away_without_work() {
    let h = Harness::new().await;
    h.click(json!({"clickId": "lonely", "gclid": "g"}), T0)
        .await;
    // The registration queued the click; the matcher takes it and finds nobody waiting.
    let (claim, decided) = h.step(T0).await.unwrap();
    assert!(claim.event_ids.is_empty());
    assert!(decided.is_empty());
    assert!(h.step(T0).await.is_none());
}

#[tokio::test]
async fn no_decision_is_visible_while_the_event_is_queued() {
    let mut h = Harness::new().await;
    let id = h
        .send(json!({"event": "lead", "email": "a@b.io"}), T0)
        .await;
    assert_eq!(h.decision(id).await, None);
    let client = h.pool.get().await.unwrap();
    let stats = attribution_matcher::queue_stats(&client).await.unwrap();
    assert_eq!(stats.queued, 1);
    assert!(stats.oldest_queued_at.is_some());
    h.run(T0).await;
    assert!(h.decision(id).await.is_some());
    let stats = attribution_matcher::queue_stats(&client).await.unwrap();
    assert_eq!((stats.queued, stats.pending), (0, 0));
}
