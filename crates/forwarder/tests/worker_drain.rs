//! A drain measurement, not a timed test (ignored by default): routes `DRAIN_CONVERSIONS`
//! (50,000) conversions to a Meta destination whose API is a local fake, drains the queue with
//! `DRAIN_WORKERS` (1) forwarders of their own pools, each running `DRAIN_PARALLEL_STEPS` (2)
//! steps of `DRAIN_BATCH` (1000) at once, and prints conversions/s and the queue lag.
//!
//! `cargo test --release -p forwarder --test worker_drain -- --ignored --nocapture`
#![allow(clippy::unwrap_used)]

mod worker_support;

use std::time::{Duration, Instant};

use events::AttributionStatus;
use forwarder::Forwarder;
use serde_json::json;
use uuid::Uuid;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};
use worker_support::*;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement: run it with --ignored --nocapture"]
async fn drain_routed_conversions_to_a_local_fake_platform() {
    let total = setting("DRAIN_CONVERSIONS", 50_000);
    let workers = setting("DRAIN_WORKERS", 1);
    let parallel = setting("DRAIN_PARALLEL_STEPS", 2);
    let batch = setting("DRAIN_BATCH", 1000);
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"events_received": 1})))
        .mount(&server)
        .await;
    let db = test_db().await;
    let setup = pool(&db, 2);
    let client = setup.get().await.unwrap();
    let ws = Uuid::now_v7();
    meta(&client, ws, &["sale"], false).await;

    let enqueue_started = Instant::now();
    let routes = [(events::DestinationType::Meta, true)];
    let template = sale("inv");
    for chunk in 0..total.div_ceil(1000) {
        let routed: Vec<_> = (0..1000.min(total - chunk * 1000))
            .map(|i| {
                let mut event = template.clone();
                event.invoice_id = Some(format!("inv-{chunk}-{i}"));
                routed(ws, event, AttributionStatus::Matched, &routes)
            })
            .collect();
        forwarder::enqueue(&client, &routed).await.unwrap();
    }
    let enqueued_in = enqueue_started.elapsed();

    let started = Instant::now();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut handles = Vec::new();
    for _ in 0..workers {
        let mut settings = config(&server.uri(), 5);
        settings.batch_size = batch;
        settings.poll_interval = Duration::from_millis(5);
        settings.parallel_steps = parallel;
        let worker = Forwarder::new(pool(&db, parallel + 2), cipher(), settings);
        handles.push(tokio::spawn(worker.run(stopped.clone())));
    }
    let mut worst_lag = 0.0f64;
    loop {
        let stats = forwarder::dispatch_stats(&client, ws).await.unwrap();
        worst_lag = worst_lag.max(stats.oldest_queued_age_seconds.unwrap_or(0.0));
        if stats.totals["succeeded"] as usize == total {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "{stats:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained_in = started.elapsed();
    stop.send(true).unwrap();
    for handle in handles {
        handle.await.unwrap();
    }
    println!(
        "forwarder drain: {total} conversions, {workers} worker(s) of {parallel} step(s), batch {batch}: \
         enqueued in {:.2}s ({:.0}/s), drained in {:.2}s = {:.0} conversions/s, \
         oldest queued at worst {worst_lag:.1}s",
        enqueued_in.as_secs_f64(),
        total as f64 / enqueued_in.as_secs_f64(),
        drained_in.as_secs_f64(),
        total as f64 / drained_in.as_secs_f64(),
    );
}
