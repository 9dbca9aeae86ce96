//! End to end: the real `convrelay` binary, its command line and its HTTP API, against a real
//! PostgreSQL database of the test's own.
#![allow(clippy::unwrap_used)]

#[path = "../crates/ingest-api/tests/common/mod.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_convrelay");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cli(database_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("CONVRELAY_LOG", "warn")
        .output()
        .unwrap()
}

/// A running `convrelay serve`; killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(database_url: &str) -> Self {
        Self::start_with(database_url, &["serve"], &[]).await
    }

    /// `args` and extra environment; waits for `/readyz` of an API process.
    async fn start_with(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let child = Command::new(BIN)
            .args(args)
            .envs(env.iter().copied())
            .env("DATABASE_URL", database_url)
            .env("CONVRELAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("CONVRELAY_RATE_LIMIT", "0")
            .env("CONVRELAY_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        if args.first() == Some(&"worker") {
            return server;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(res) = reqwest::get(format!("{}/readyz", server.base)).await {
                if res.status() == 200 {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "the server did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    async fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(
    base: &str,
    key: &str,
    body: &Value,
    idempotency_key: Option<&str>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .bearer_auth(key)
        .json(body);
    if let Some(k) = idempotency_key {
        req = req.header("Idempotency-Key", k);
    }
    req.send().await.unwrap()
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["worker", "--help"],
        vec!["migrate", "--help"],
        vec!["keys", "--help"],
        vec!["keys", "create", "--help"],
        vec!["keys", "list", "--help"],
        vec!["keys", "revoke", "--help"],
        vec!["reports", "--help"],
        vec!["reports", "rebuild", "--help"],
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}

#[tokio::test]
async fn a_new_user_creates_a_key_sends_the_seed_events_and_revokes_the_key() {
    let db = common::test_db().await;
    let out = cli(
        &db.url,
        &[
            "keys",
            "create",
            "--workspace",
            "acme",
            "--scope",
            "ingest",
            "--scope",
            "read",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "the key alone on one line");
    let key = stdout.trim().to_owned();
    assert!(key.starts_with("cr_"));
    let prefix = key.split('_').nth(1).unwrap().to_owned();

    let server = Server::start(&db.url).await;
    let lead = post(&server.base, &key, &common::seed_lead(), None).await;
    assert_eq!(lead.status(), 202);
    let sale = post(&server.base, &key, &common::seed_sale(), None).await;
    assert_eq!(sale.status(), 202);
    let again = post(&server.base, &key, &common::seed_sale(), None).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["duplicate"], true);

    let out = cli(&db.url, &["keys", "list", "--workspace", "acme"]);
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(listing.contains(&prefix) && listing.contains("ingest,read"));
    assert!(!listing.contains(&key), "a listing never shows a secret");

    let out = cli(&db.url, &["keys", "revoke", &prefix]);
    assert!(out.status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = post(&server.base, &key, &common::sale("after-revoke"), None).await;
        if res.status() == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "a revoked key still works");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = cli(&db.url, &["keys", "revoke", "nosuchprefix"]);
    assert!(!out.status.success());
}

fn create(database_url: &str, workspace: &str) -> String {
    let out = cli(
        database_url,
        &[
            "keys",
            "create",
            "--workspace",
            workspace,
            "--scope",
            "read",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `cr_<prefix>` of a whole key.
fn public_part(key: &str) -> String {
    key.rsplit_once('_').unwrap().0.to_owned()
}

/// The listing's line of the key whose public part is `public`, split at its tabs.
fn listed(database_url: &str, public: &str) -> Vec<String> {
    let out = cli(database_url, &["keys", "list"]);
    assert!(out.status.success());
    let listing = String::from_utf8(out.stdout).unwrap();
    let line = listing
        .lines()
        .find(|l| l.split('\t').next() == Some(public))
        .unwrap_or_else(|| panic!("{public} not in {listing}"));
    line.split('\t').map(str::to_owned).collect()
}

#[tokio::test]
async fn keys_are_listed_by_their_public_part_and_revoked_by_it_their_prefix_or_the_whole_key() {
    let db = common::test_db().await;
    let keys: Vec<String> = (0..3).map(|_| create(&db.url, "acme")).collect();
    let publics: Vec<String> = keys.iter().map(|k| public_part(k)).collect();
    for public in &publics {
        let line = listed(&db.url, public);
        assert_eq!(line[1], "acme");
        assert_eq!(line[5], "-", "not revoked yet");
    }
    let out = cli(&db.url, &["keys", "list"]);
    let listing = String::from_utf8(out.stdout).unwrap();
    for key in &keys {
        assert!(
            !listing.contains(key.as_str()),
            "a listing never shows a secret"
        );
    }

    // A whole key whose secret is not the stored one revokes nothing.
    let forged = format!("{}_NotTheSecret0", publics[2]);
    let out = cli(&db.url, &["keys", "revoke", &forged]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("NotTheSecret0"), "{stderr}");
    assert_eq!(listed(&db.url, &publics[2])[5], "-");

    let prefix = publics[1].strip_prefix("cr_").unwrap().to_owned();
    for given in [publics[0].as_str(), prefix.as_str(), keys[2].as_str()] {
        let out = cli(&db.url, &["keys", "revoke", given]);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(out.status.success(), "{given}: {stderr}");
        assert!(!stderr.contains(&keys[2]), "the secret is never repeated");
    }
    for public in &publics {
        assert_ne!(listed(&db.url, public)[5], "-", "{public} revoked");
    }
    let out = cli(&db.url, &["keys", "revoke", &keys[0]]);
    assert!(out.status.success(), "revoking again is fine");
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("already revoked"));
}

#[tokio::test]
async fn command_line_errors_are_one_line_without_a_backtrace() {
    let db = common::test_db().await;
    create(&db.url, "acme");
    let closed = format!("postgres://convrelay:s3cretpw@127.0.0.1:{}/db", free_port());
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            db.url.as_str(),
            vec!["keys", "list", "--workspace", "nope"],
            "no workspace",
        ),
        (
            db.url.as_str(),
            vec!["keys", "revoke", "cr_nosuchkey1"],
            "no key is cr_nosuchkey1",
        ),
        (
            db.url.as_str(),
            vec!["keys", "revoke", "not a key"],
            "expected a key",
        ),
        (db.url.as_str(), vec!["keys", "list", "--bogus"], "--bogus"),
        (
            db.url.as_str(),
            vec!["keys", "create", "--workspace", "a", "--scope", "wizard"],
            "unknown scope",
        ),
        (
            db.url.as_str(),
            vec!["keys", "create", "--scope", "read"],
            "--workspace",
        ),
        (db.url.as_str(), vec!["keys", "revoke"], "<KEY>"),
        (db.url.as_str(), vec!["serve", "--nope"], "--nope"),
        (db.url.as_str(), vec!["frobnicate"], "frobnicate"),
        ("not a url", vec!["keys", "list"], "DATABASE_URL"),
        ("not a url", vec!["migrate"], "DATABASE_URL"),
        (closed.as_str(), vec!["keys", "list"], "cannot connect"),
        (
            closed.as_str(),
            vec!["keys", "create", "--workspace", "a", "--scope", "read"],
            "cannot connect",
        ),
        (
            closed.as_str(),
            vec!["keys", "revoke", "cr_nosuchkey1"],
            "cannot connect",
        ),
        (closed.as_str(), vec!["migrate"], "cannot connect"),
        (closed.as_str(), vec!["serve"], "cannot connect"),
        (
            closed.as_str(),
            vec!["serve", "--no-workers"],
            "cannot connect",
        ),
        (closed.as_str(), vec!["worker"], "cannot connect"),
    ];
    for (url, args, says) in cases {
        let out = Command::new(BIN)
            .args(&args)
            .env("DATABASE_URL", url)
            .env("CONVRELAY_LOG", "warn")
            .env("RUST_BACKTRACE", "full")
            .env("RUST_LIB_BACKTRACE", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("s3cretpw"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let out = Command::new(BIN)
        .args(["serve"])
        .env_remove("DATABASE_URL")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

#[tokio::test]
async fn sigterm_answers_requests_in_flight_then_exits_0() {
    let db = common::test_db().await;
    let key = common::create_key(&db, "acme", &[ingest_api::keys::Scope::Ingest]).await;
    let mut server = Server::start(&db.url).await;
    let base = server.base.clone();
    let sends: Vec<_> = (0..200)
        .map(|i| {
            let (base, key) = (base.clone(), key.clone());
            tokio::spawn(async move {
                post(&base, &key, &common::sale(&format!("drain-{i}")), None)
                    .await
                    .status()
                    .as_u16()
            })
        })
        .collect();
    // Let some requests get under way, then ask the server to stop.
    tokio::time::sleep(Duration::from_millis(20)).await;
    server.terminate();
    let mut accepted = 0;
    for send in sends {
        // Anything else was refused before it started: the sender retries; nothing half-done.
        if let Ok(202) = send.await {
            accepted += 1;
        }
    }
    let status = server.wait(Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status:?}");
    let stored: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, accepted, "every 202 is stored, nothing else is");
}

#[tokio::test]
async fn two_processes_on_one_database_store_a_racing_invoice_and_key_once() {
    let db = common::test_db().await;
    let key = common::create_key(&db, "acme", &[ingest_api::keys::Scope::Ingest]).await;
    let a = Server::start(&db.url).await;
    let b = Server::start(&db.url).await;

    let sends: Vec<_> = (0..60)
        .map(|i| {
            let base = if i % 2 == 0 {
                a.base.clone()
            } else {
                b.base.clone()
            };
            let key = key.clone();
            tokio::spawn(async move {
                let res = post(&base, &key, &common::sale("race-1"), None).await;
                (res.status().as_u16(), res.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for send in sends {
        let (status, body) = send.await.unwrap();
        assert!(status == 202 || status == 200, "{status}");
        ids.insert(body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "every answer names the one event");

    let sends: Vec<_> = (0..40)
        .map(|i| {
            let base = if i % 2 == 0 {
                a.base.clone()
            } else {
                b.base.clone()
            };
            let key = key.clone();
            tokio::spawn(async move {
                let res = post(
                    &base,
                    &key,
                    &common::sale(&format!("idem-{i}")),
                    Some("same-key"),
                )
                .await;
                let status = res.status().as_u16();
                (status, res.bytes().await.unwrap())
            })
        })
        .collect();
    let mut bodies = std::collections::HashSet::new();
    for send in sends {
        let (status, body) = send.await.unwrap();
        match status {
            202 => {
                bodies.insert(body);
            }
            // Still in flight elsewhere, or the key's first request had another body.
            409 | 422 => {}
            other => panic!("unexpected {other}"),
        }
    }
    let client = db.client().await;
    let stored: i64 = client
        .query_one(
            "SELECT count(*) FROM events WHERE natural_key LIKE 'idem-%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1, "one key, one stored request");
    assert_eq!(bodies.len(), 1);
}

/// A secret key for the processes of a test.
const SECRET_KEY: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

#[tokio::test]
async fn an_api_process_and_two_worker_processes_send_each_dispatch_once() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let hook = MockServer::start().await;
    // A slow receiver keeps sends in flight while the other worker looks for work.
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(20)))
        .mount(&hook)
        .await;
    let db = common::test_db().await;
    let env = [("CONVRELAY_SECRET_KEY", SECRET_KEY)];
    let api = Server::start_with(&db.url, &["serve", "--no-workers"], &env).await;
    let key = common::create_key(
        &db,
        "acme",
        &[
            ingest_api::keys::Scope::Ingest,
            ingest_api::keys::Scope::Read,
            ingest_api::keys::Scope::Admin,
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let destination = serde_json::json!({
        "type": "webhook", "name": "CRM", "events": ["sale"],
        "config": {"url": format!("{}/hook", hook.uri())},
        "credentials": {"secret": "whsec_0123456789abcdef"}
    });
    let res = http
        .post(format!("{}/v1/destinations", api.base))
        .bearer_auth(&key)
        .json(&destination)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let total = 120;
    for i in 0..total {
        let res = post(&api.base, &key, &common::sale(&format!("w-{i}")), None).await;
        assert_eq!(res.status(), 202);
    }
    // Nothing is sent without workers.
    assert!(hook.received_requests().await.unwrap().is_empty());

    let _a = Server::start_with(&db.url, &["worker"], &env).await;
    let _b = Server::start_with(&db.url, &["worker"], &env).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats: Value = http
            .get(format!("{}/v1/dispatches/stats", api.base))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if stats["totals"]["succeeded"] == total {
            break;
        }
        assert!(Instant::now() < deadline, "not all delivered: {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let received = hook.received_requests().await.unwrap();
    let ids: std::collections::HashSet<String> = received
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            body["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), total, "every event delivered");
    assert_eq!(received.len(), total, "and none twice");
}

#[tokio::test]
async fn the_binary_erases_a_person_reports_usage_and_refuses_a_retention_of_zero_days() {
    let db = common::test_db().await;
    let out = cli(
        &db.url,
        &[
            "keys",
            "create",
            "--workspace",
            "acme",
            "--scope",
            "ingest",
            "--scope",
            "read",
            "--scope",
            "admin",
        ],
    );
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let server =
        Server::start_with(&db.url, &["serve"], &[("CONVRELAY_RETENTION_DAYS", "30")]).await;
    let http = reqwest::Client::new();
    let usage = || async {
        http.get(format!("{}/v1/usage", server.base))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    assert_eq!(
        post(&server.base, &key, &common::seed_sale(), None)
            .await
            .status(),
        202
    );
    let before = usage().await;
    assert_eq!(before["stored"]["events"], 1, "{before:#}");
    assert_eq!(before["retentionDays"], 30);
    assert!(before["oldestEventAt"].is_string());

    let erase = |body: Value| {
        let http = http.clone();
        let url = format!("{}/v1/persons/erase", server.base);
        let key = key.clone();
        async move {
            let res = http
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap()
        }
    };
    let answer = erase(serde_json::json!({"email": "Alex@Example.com"})).await;
    assert_eq!(answer["erased"]["events"], 1, "{answer:#}");
    let after = usage().await;
    assert_eq!(after["stored"]["events"], 0, "{after:#}");
    assert_eq!(after["oldestEventAt"], Value::Null);
    let again = erase(serde_json::json!({"email": "alex@example.com"})).await;
    assert_eq!(
        again,
        serde_json::json!({"erased": {"events": 0, "identifiers": 0, "dispatches": 0}})
    );
    drop(server);

    let out = Command::new(BIN)
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("CONVRELAY_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("CONVRELAY_RETENTION_DAYS", "0")
        .env("CONVRELAY_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CONVRELAY_RETENTION_DAYS"), "{stderr}");
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
}

#[tokio::test]
async fn the_binary_refuses_undefined_event_names_when_told_and_values_leads_by_the_catalog() {
    let db = common::test_db().await;
    let out = cli(
        &db.url,
        &[
            "keys",
            "create",
            "--workspace",
            "acme",
            "--scope",
            "ingest",
            "--scope",
            "read",
            "--scope",
            "admin",
        ],
    );
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let server = Server::start_with(
        &db.url,
        &["serve"],
        &[("CONVRELAY_UNDEFINED_EVENT_NAMES", "reject")],
    )
    .await;
    let http = reqwest::Client::new();
    let lead = serde_json::json!({"event": "lead", "eventName": "Demo booked",
                                  "customerExternalId": "e2e-1"});
    let res = post(&server.base, &key, &lead, None).await;
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "eventName");
    assert_eq!(problem["errors"][0]["code"], "undefined_event_name");

    let definition = serde_json::json!({"kind": "lead", "tier": "micro",
                                        "value": {"amount": 40, "currency": "GBP"}});
    let res = http
        .put(format!(
            "{}/v1/conversion-events/Demo%20booked",
            server.base
        ))
        .bearer_auth(&key)
        .json(&definition)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = post(&server.base, &key, &lead, None).await;
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let event: Value = http
            .get(format!("{}/v1/events/{id}", server.base))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !event["attribution"].is_null() {
            assert_eq!(
                event["leadValue"],
                serde_json::json!({"amount": 40, "currency": "GBP", "source": "fixed"}),
                "{event:#}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never attributed: {event:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
