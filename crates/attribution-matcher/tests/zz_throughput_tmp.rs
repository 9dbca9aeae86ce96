#![allow(clippy::unwrap_used)]
mod common;
use common::{Harness, T0};
use serde_json::json;
use std::time::Instant;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn throughput() {
    let mut h = Harness::new().await;
    let n = 20_000u64;
    let mut arrivals = Vec::new();
    for seq in 0..n {
        let c = (seq * 7) % 500;
        let body = json!({"event":"sale","timestamp":"2026-04-10T12:00:00.000Z","clickId":"clk_abc123",
            "customerExternalId": format!("user_{c}"), "email": format!("user{c}@example.com"),
            "currency":"USD","amount":199.0,"invoiceId": format!("inv_{seq}")});
        let event = events::parse_event(&body, T0).unwrap();
        let id = Uuid::now_v7();
        h.journal.insert(id, (T0, event));
        arrivals.push((h.workspace, id));
    }
    {
        let client = h.pool.get().await.unwrap();
        for chunk in arrivals.chunks(1000) {
            attribution_matcher::enqueue(&client, chunk).await.unwrap();
        }
    }
    let start = Instant::now();
    let mut total = 0;
    loop {
        let t = Instant::now();
        let mut client = h.pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let Some(claim) = attribution_matcher::claim_at(&tx, 1000, T0).await.unwrap() else { break };
        eprintln!("claim {:?}", t.elapsed());
        let events = h.load(&claim);
        let d = attribution_matcher::decide(&tx, &claim, &events, &h.settings, T0).await.unwrap();
        let tc = Instant::now(); tx.commit().await.unwrap(); eprintln!("commit {:?}", tc.elapsed());
        total += d.len();
        eprintln!("step {} in {:?}", d.len(), t.elapsed());
    }
    eprintln!("{total} in {:?} = {:.0}/s", start.elapsed(), total as f64 / start.elapsed().as_secs_f64());
}
