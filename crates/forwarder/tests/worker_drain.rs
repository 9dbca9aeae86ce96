//! A drain measurement, not a timed test (ignored by default): routes `DRAIN_CONVERSIONS`
//! (50,000) conversions to a Meta destination whose API is a local fake, drains the queue with
//! `DRAIN_WORKERS` (1) forwarders of their own pools, each running `DRAIN_PARALLEL_STEPS` (2)
//! steps of `DRAIN_BATCH` (1000) at once, and prints conversions/s and the queue lag.
//!
//! `cargo test --release -p forwarder --test worker_drain -- --ignored --nocapture`
#![allow(clippy::unwrap_used)]

mod worker_support;

use std::time::{Duration, Instant};

use events::{AttributionStatus, DestinationType};
use forwarder::Forwarder;
use serde_json::{json, Value};
use uuid::Uuid;
use wiremock::matchers::{any, method};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};
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

/// A destination of each type, its click id on the event, and its settings (the examples'
/// values). Google and webhook: `google_ads` through the Ads API, `google_data_manager` through
/// Data Manager (300 requests a minute: at most 10,000 conversions/s at its 2,000 a request).
fn platform(name: &str, base: &str) -> Option<(DestinationType, &'static str, Value)> {
    let (kind, click, config, credentials) = match name {
        "google_ads" | "google_data_manager" => (
            DestinationType::GoogleAds,
            "gclid",
            json!({"api": if name == "google_ads" { "google_ads_api" } else { "data_manager" },
                   "customerId": "123-456-7890", "conversionActions": {"sale": "987654321"}}),
            json!({"clientId": "client-1", "clientSecret": "client-secret-1",
                   "refreshToken": "1//refresh-token-1", "developerToken": "dev-token-1"}),
        ),
        "meta" => (
            DestinationType::Meta,
            "fbclid",
            json!({"pixelId": "1234567890"}),
            json!({"accessToken": "EAAB-meta-token"}),
        ),
        "microsoft_ads" => (
            DestinationType::MicrosoftAds,
            "msclkid",
            json!({"customerId": "251186883", "accountId": "149615541",
                   "conversionNames": {"sale": "Offline Purchase"}}),
            json!({"clientId": "ms-client", "refreshToken": "ms-refresh",
                   "developerToken": "ms-developer-token"}),
        ),
        "linkedin" => (
            DestinationType::LinkedIn,
            "liFatId",
            json!({"conversionRules": {"sale": "104013"}}),
            json!({"accessToken": "linkedin-token"}),
        ),
        "reddit" => (
            DestinationType::Reddit,
            "rdtCid",
            json!({"pixelId": "t2_abc123"}),
            json!({"accessToken": "reddit-token"}),
        ),
        "tiktok" => (
            DestinationType::TikTok,
            "ttclid",
            json!({"pixelCode": "CABC123PIXEL"}),
            json!({"accessToken": "tiktok-token"}),
        ),
        "snapchat" => (
            DestinationType::Snapchat,
            "scCid",
            json!({"pixelId": "7a3b1c2d-4e5f-6789-abcd-ef0123456789"}),
            json!({"accessToken": "snapchat-token"}),
        ),
        "pinterest" => (
            DestinationType::Pinterest,
            "epik",
            json!({"adAccountId": "549755885175"}),
            json!({"accessToken": "pinterest-token"}),
        ),
        "webhook" => (
            DestinationType::Webhook,
            "gclid",
            json!({"url": format!("{base}/hook")}),
            json!({"secret": WEBHOOK_SECRET}),
        ),
        _ => return None,
    };
    Some((
        kind,
        click,
        json!({"type": kind.as_str(), "name": name, "events": ["sale"],
               "config": config, "credentials": credentials}),
    ))
}

/// Every platform's success answer for as many rows as the request carried, tokens included.
fn accept(request: &Request) -> ResponseTemplate {
    let path = request.url.path();
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    let rows = |pointer: &str| {
        body.pointer(pointer)
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
    };
    let ok = ResponseTemplate::new(200);
    if path == "/token" || path == "/ms-token" {
        ok.set_body_json(json!({"access_token": "access-token", "expires_in": 3599,
                                "token_type": "Bearer"}))
    } else if path.ends_with(":uploadClickConversions") {
        ok.set_body_json(json!({"results": vec![json!({}); rows("/conversions")]}))
    } else if path == "/v1/events:ingest" {
        ok.set_body_json(json!({"requestId": "dm-1"}))
    } else if path == "/v1/requestStatus:retrieve" {
        ok.set_body_json(json!({"requestStatusPerDestination": [{"requestStatus": "SUCCESS"}]}))
    } else if path == "/rest/conversionEvents" {
        ok.set_body_json(json!({"elements": vec![json!({"status": 201}); rows("/elements")]}))
    } else if path.starts_with("/v5/ad_accounts/") {
        let count = rows("/data");
        ok.set_body_json(
            json!({"num_events_received": count, "num_events_processed": count,
            "events": vec![json!({"status": "processed"}); count]}),
        )
    } else if path.starts_with("/v3/") {
        ok.set_body_json(json!({"status": "VALID"}))
    } else if path.starts_with("/open_api/") {
        ok.set_body_json(json!({"code": 0, "message": "OK", "request_id": "r", "data": {}}))
    } else if path.starts_with("/api/v3/pixels/") {
        ok.set_body_json(json!({"data": {"message": "ok"}}))
    } else if path.starts_with("/CampaignManagement/") {
        ok.set_body_json(json!({"PartialErrors": null}))
    } else if path.starts_with("/v26.0/") {
        ok.set_body_json(json!({"events_received": rows("/data")}))
    } else {
        ok
    }
}

/// CPU seconds used so far by the process `pid` ("self" for this one), and with `children` by
/// the children it reaped (PostgreSQL's postmaster reaps its backends); `None` off Linux.
fn cpu_seconds(pid: &str, children: bool) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<u64> = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    // utime, stime, cutime, cstime are fields 14 to 17; 3 is the first after the name.
    let own = fields.get(11)? + fields.get(12)?;
    let reaped = if children {
        fields.get(13)? + fields.get(14)?
    } else {
        0
    };
    // Clock ticks as Linux shows them to user space: 100 a second.
    Some((own + reaped) as f64 / 100.0)
}

/// Where the server's write-ahead log stands, in bytes. The whole server's: what other databases
/// write meanwhile is counted too.
async fn wal_position(client: &deadpool_postgres::Client) -> f64 {
    client
        .query_one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::float8", &[])
        .await
        .unwrap()
        .get(0)
}

/// A drain measurement per platform (ignored by default): for each of `DRAIN_PLATFORMS` (all
/// nine, Google through both APIs), routes `DRAIN_CONVERSIONS` (20,000) sales to one destination
/// of that type whose API is a local fake answering success, drains the queue with one forwarder
/// of `DRAIN_PARALLEL_STEPS` (2) steps of `DRAIN_BATCH` (1000), and prints conversions/s and
/// the CPU one conversion cost this process (forwarder and fake) and PostgreSQL, and the
/// write-ahead log it cost the server: on a machine
/// shared with other work, the wall-clock rate says how much CPU was left, the CPU per
/// conversion what the drain costs.
///
/// `cargo test --release -p forwarder --test worker_drain -- --ignored --nocapture each_platform`
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement: run it with --ignored --nocapture"]
async fn drain_to_each_platform() {
    let total = setting("DRAIN_CONVERSIONS", 20_000);
    let parallel = setting("DRAIN_PARALLEL_STEPS", 2);
    let batch = setting("DRAIN_BATCH", 1000);
    let names = std::env::var("DRAIN_PLATFORMS").unwrap_or_else(|_| {
        "google_ads google_data_manager meta microsoft_ads linkedin reddit tiktok snapchat \
         pinterest webhook"
            .into()
    });
    // PostgreSQL's postmaster, when it runs here (DRAIN_POSTMASTER_PID): the CPU its backends
    // spend per conversion is printed beside this process's.
    let postmaster = std::env::var("DRAIN_POSTMASTER_PID").ok();
    let server = MockServer::start().await;
    Mock::given(any()).respond_with(accept).mount(&server).await;
    let db = test_db().await;
    let setup = pool(&db, 2);
    let client = setup.get().await.unwrap();

    for name in names.split_whitespace() {
        let Some((kind, click, destination)) = platform(name, &server.uri()) else {
            panic!("unknown platform {name}");
        };
        let ws = Uuid::now_v7();
        forwarder::create_destination(&client, &cipher(), ws, &destination)
            .await
            .unwrap();
        let mut body = json!({"event": "sale", "invoiceId": "inv", "amount": 49.9,
            "currency": "usd", "email": "Alex@Example.com", "phone": "+16505551212",
            "ip": "203.0.113.7", "userAgent": "Mozilla/5.0 (bench)",
            "pageUrl": "https://shop.example.com/thanks"});
        body[click] = json!(format!("{click}-bench"));
        let template = event(body);
        let routes = [(kind, true)];
        for chunk in 0..total.div_ceil(1000) {
            let routed: Vec<_> = (0..1000.min(total - chunk * 1000))
                .map(|i| {
                    let mut event = template.clone();
                    event.invoice_id = Some(format!("inv-{name}-{chunk}-{i}"));
                    routed(ws, event, AttributionStatus::Matched, &routes)
                })
                .collect();
            forwarder::enqueue(&client, &routed).await.unwrap();
        }

        let started = Instant::now();
        let own_before = cpu_seconds("self", false);
        let postgres_before = postmaster.as_deref().and_then(|pid| cpu_seconds(pid, true));
        let wal_before = wal_position(&client).await;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut settings = config(&server.uri(), 5);
        settings.batch_size = batch;
        settings.poll_interval = Duration::from_millis(5);
        settings.parallel_steps = parallel;
        let worker = Forwarder::new(pool(&db, parallel + 2), cipher(), settings);
        let handle = tokio::spawn(worker.run(stopped));
        // Polled while the worker drains: one row of the waiting dispatches' index, not the
        // per-status counts (a pass over every dispatch of the workspace, which would take the
        // drain's CPU away from it); the counts are checked once the queue is empty.
        let waiting = client
            .prepare(
                "SELECT EXISTS (SELECT 1 FROM dispatches WHERE workspace_id = $1
                                  AND status IN ('queued', 'in_flight', 'retrying'))",
            )
            .await
            .unwrap();
        loop {
            if !client
                .query_one(&waiting, &[&ws])
                .await
                .unwrap()
                .get::<_, bool>(0)
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "{name}: {:?}",
                forwarder::dispatch_stats(&client, ws).await.unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let drained_in = started.elapsed();
        let stats = forwarder::dispatch_stats(&client, ws).await.unwrap();
        assert_eq!(
            stats.totals["succeeded"] as usize, total,
            "{name}: {stats:?}"
        );
        stop.send(true).unwrap();
        handle.await.unwrap();
        // The worker's pool is gone with it: its backends have exited and been reaped.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let own = own_before
            .zip(cpu_seconds("self", false))
            .map(|(before, after)| after - before);
        let postgres = postgres_before
            .zip(postmaster.as_deref().and_then(|pid| cpu_seconds(pid, true)))
            .map(|(before, after)| after - before);
        let wal = wal_position(&client).await - wal_before;
        server.reset().await;
        Mock::given(any()).respond_with(accept).mount(&server).await;
        let micros = |cpu: Option<f64>| {
            cpu.map_or("n/a".to_owned(), |cpu| {
                format!("{:.0}", cpu * 1e6 / total as f64)
            })
        };
        println!(
            "forwarder drain platform={name} conversions={total} batch={batch} steps={parallel} \
             seconds={:.2} per_second={:.0} process_cpu_us={} postgres_cpu_us={} wal_bytes={:.0}",
            drained_in.as_secs_f64(),
            total as f64 / drained_in.as_secs_f64(),
            micros(own),
            micros(postgres),
            wal / total as f64,
        );
    }
}
