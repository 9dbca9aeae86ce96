//! The database goes away and comes back: requests get a quick 503 with Retry-After, nothing
//! half-written, and the service recovers by itself.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{sale, TestApp};
use test_support::Proxy;

#[tokio::test]
async fn a_lost_database_means_a_quick_503_and_recovery_without_a_restart() {
    let db = common::test_db().await;
    // host:port of the real server, from postgres://user:pw@host:port/db
    let after_at = db.url.rsplit_once('@').unwrap().1;
    let target = after_at.split('/').next().unwrap().to_owned();
    let proxy = Proxy::start(target.clone()).await;
    let proxied = db.url.replace(&target, &proxy.addr.to_string());
    let proxied_db = test_support::TestDb {
        url: proxied,
        name: db.name.clone(),
    };
    let app = TestApp::spawn_with(proxied_db, common::settings).await;
    assert_eq!(app.post("/v1/events", &sale("before")).await.status(), 202);

    proxy.cut();
    let started = Instant::now();
    let res = app.post("/v1/events", &sale("during")).await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "answered after {:?}",
        started.elapsed()
    );
    let problem: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "https://convrelay.dev/problems/unavailable"
    );
    let res = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 503);

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let res = app.post("/v1/events", &sale("after")).await;
        if res.status() == 202 {
            break;
        }
        assert_eq!(res.status(), 503);
        assert!(Instant::now() < deadline, "the service did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Only the acknowledged events exist.
    let client = db.client().await;
    let keys: Vec<String> = client
        .query("SELECT natural_key FROM events ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(keys, ["before", "after"]);
}
