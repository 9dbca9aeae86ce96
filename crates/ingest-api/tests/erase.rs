//! Erasing a person (`POST /v1/persons/erase`): the whole connected person goes, in one
//! transaction, from every table; other persons and workspaces stay; later events start afresh.
//! The "no table keeps it" check walks the catalog, so tables added later are covered too.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use attribution_matcher::{identifier_hash, IdentifierKind};
use common::{create_key, days_ago, TestApp};
use ingest_api::keys::Scope;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const EMAIL_AS_SENT: &str = "  Alex.Doe@Example.COM ";
const EMAIL: &str = "alex.doe@example.com";
const PHONE_AS_SENT: &str = "+1 (415) 555-0199";
const PHONE: &str = "+14155550199";
const CUSTOMER: &str = "cust-alex-42";
const CLICK: &str = "clk-alex-7";
const GCLID: &str = "gclid-alex-9";

struct Setup {
    app: TestApp,
    admin: String,
    other: String,
    _server: MockServer,
}

async fn setup() -> Setup {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let db = common::test_db().await;
    let uri = server.uri();
    let app = TestApp::spawn_with(db, |url| common::settings_with(url, Some(&uri))).await;
    let admin = create_key(&app.db, "acme", &[Scope::Admin, Scope::Read, Scope::Ingest]).await;
    let other = create_key(
        &app.db,
        "globex",
        &[Scope::Admin, Scope::Read, Scope::Ingest],
    )
    .await;
    let hook = json!({"type": "webhook", "name": "CRM", "events": ["lead", "sale"],
                      "config": {"url": format!("{uri}/hook")},
                      "credentials": {"secret": "whsec_0123456789abcdef"}});
    for key in [&admin, &other] {
        assert_eq!(
            app.post_as(key, "/v1/destinations", &hook).await.status(),
            201
        );
    }
    Setup {
        app,
        admin,
        other,
        _server: server,
    }
}

/// The person's events: linked into one person through a chain (click + customer id, customer
/// id + email, email + phone, phone alone), so erasing by any one identifier must find all.
fn alex_events() -> Vec<Value> {
    vec![
        json!({"event": "lead", "timestamp": days_ago(3), "clickId": CLICK,
               "customerExternalId": CUSTOMER, "leadId": "lead-alex"}),
        json!({"event": "sale", "timestamp": days_ago(2), "customerExternalId": CUSTOMER,
               "email": EMAIL_AS_SENT, "name": "Alex Doe", "invoiceId": "inv-alex-1",
               "currency": "USD", "amount": 120.0, "ip": "203.0.113.7"}),
        json!({"event": "sale", "timestamp": days_ago(1), "email": EMAIL, "phone": PHONE_AS_SENT,
               "gclid": GCLID, "invoiceId": "inv-alex-2", "currency": "USD", "amount": 30.0}),
    ]
}

fn bo_events() -> Vec<Value> {
    vec![
        json!({"event": "lead", "timestamp": days_ago(2), "customerExternalId": "cust-bo-1",
               "email": "bo@example.org", "leadId": "lead-bo"}),
        json!({"event": "sale", "timestamp": days_ago(1), "email": "bo@example.org",
               "invoiceId": "inv-bo-1", "currency": "USD", "amount": 55.0}),
    ]
}

async fn post_event(app: &TestApp, key: &str, event: &Value, idem: Option<&str>) -> Value {
    let res = app
        .post_raw("/v1/events", key, serde_json::to_vec(event).unwrap(), idem)
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    res.json().await.unwrap()
}

/// Polls until the event's attribution is decided and its dispatches are done.
async fn settled(app: &TestApp, key: &str, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let event: Value = app
            .get_as(key, &format!("/v1/events/{id}"))
            .await
            .json()
            .await
            .unwrap();
        let decided = !event["attribution"].is_null();
        let sent = event["dispatches"]
            .as_array()
            .is_some_and(|d| !d.is_empty() && d.iter().all(|d| d["status"] == "succeeded"));
        if decided && sent {
            return;
        }
        assert!(Instant::now() < deadline, "never settled: {event:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends events, one at a time (so that they are attributed in order), and waits for each.
async fn send_all(app: &TestApp, key: &str, events: &[Value], idem: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let answer = post_event(app, key, event, Some(&format!("{idem}-{i}"))).await;
        let id = answer["id"].as_str().unwrap().to_owned();
        settled(app, key, &id).await;
        ids.push(id);
    }
    ids
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every form an erased value may take in the code: in clear (as normalised, and the phone's
/// digits), the platforms' SHA-256 forms (hex, base64, Google's and Meta's normalisations), and
/// the identity graph's digest of "<kind>:<value>" (raw bytes and hex, as the graph keeps it).
fn needles() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |label: String, bytes: Vec<u8>| out.push((label, bytes));
    let values = [
        ("email", EMAIL.to_owned()),
        ("phone", PHONE.to_owned()),
        ("customerExternalId", CUSTOMER.to_owned()),
        ("clickId", CLICK.to_owned()),
        ("gclid", GCLID.to_owned()),
    ];
    for (kind, value) in &values {
        add(format!("{kind} in clear"), value.as_bytes().to_vec());
        let digest = sha256(value.as_bytes());
        add(format!("sha256 hex of {kind}"), hex(&digest).into_bytes());
        add(
            format!("sha256 base64 of {kind}"),
            platforms::hashing::sha256_base64(value).into_bytes(),
        );
        // The graph keeps the head of SHA-256("<kind>:<value>"); a needle of that head also
        // finds the whole digest wherever it were kept.
        let node = events::identifier_hash(kind, value).to_vec();
        add(format!("identity digest of {kind}"), node.clone());
        add(
            format!("identity digest hex of {kind}"),
            hex(&node).into_bytes(),
        );
    }
    let digits = PHONE.trim_start_matches('+');
    add("phone digits".into(), digits.as_bytes().to_vec());
    for (label, hashed) in [
        (
            "google email",
            platforms::hashing::google_email_sha256(EMAIL),
        ),
        (
            "google phone",
            platforms::hashing::google_phone_sha256(PHONE),
        ),
        ("meta email", platforms::hashing::meta_email_sha256(EMAIL)),
        ("meta phone", platforms::hashing::meta_phone_sha256(PHONE)),
        (
            "meta external id",
            platforms::hashing::meta_external_id_sha256(CUSTOMER),
        ),
    ] {
        add(label.into(), hashed.unwrap().into_bytes());
    }
    out
}

/// Walks the catalog: every text-like, JSON, array and bytea column of every table and
/// materialized view of every schema but the system's (partitions included), restricted to the
/// workspace's rows where the table has a `workspace_id`. Answers "table.column: what" for
/// every needle found.
async fn traces_in_every_table(app: &TestApp, workspace_id: uuid::Uuid) -> Vec<String> {
    let client = app.db.client().await;
    let columns = client
        .query(
            "SELECT n.nspname::text, c.relname::text, a.attname::text, t.typname::text,
                    EXISTS (SELECT 1 FROM pg_attribute w
                            WHERE w.attrelid = c.oid AND w.attname = 'workspace_id'
                              AND NOT w.attisdropped)
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             JOIN pg_type t ON t.oid = a.atttypid
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_%' AND c.relkind IN ('r', 'm')
               AND (t.typname IN ('text', 'varchar', 'bpchar', 'name', 'json', 'jsonb', 'bytea',
                                  'inet', 'citext')
                    OR t.typcategory = 'A')
             ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    assert!(columns.len() > 20, "the walk found too few columns");
    let needles = needles();
    let mut found = Vec::new();
    for row in &columns {
        let (schema, table, column, ty, scoped): (String, String, String, String, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        if ty == "bytea" && column == "body" && table.starts_with("events") {
            // The journal keeps bodies compressed: they are searched as the JSON they hold.
            let sql = format!("SELECT body FROM \"{schema}\".\"{table}\" WHERE workspace_id = $1 AND body IS NOT NULL");
            for body in client.query(&sql, &[&workspace_id]).await.unwrap() {
                let journal::Body(json) = body.get::<_, journal::Body<serde_json::Value>>(0);
                let text = json.to_string().to_lowercase();
                for (label, needle) in &needles {
                    let hit =
                        std::str::from_utf8(needle).is_ok_and(|n| text.contains(&n.to_lowercase()));
                    let label = format!("{table}.{column}: {label}");
                    if hit && !found.contains(&label) {
                        found.push(label);
                    }
                }
            }
            continue;
        }
        // Text forms are compared lower-cased; bytea holds the bytes themselves.
        let haystack = if ty == "bytea" {
            format!("\"{column}\"")
        } else {
            format!("convert_to(lower(\"{column}\"::text), 'UTF8')")
        };
        let scope = if scoped {
            "workspace_id = $2"
        } else {
            "$2::uuid IS NOT NULL"
        };
        let sql = format!(
            "SELECT n.label FROM unnest($1::text[], $3::bytea[]) AS n(label, needle)
             WHERE EXISTS (SELECT 1 FROM \"{schema}\".\"{table}\"
                           WHERE {scope} AND position(n.needle IN {haystack}) > 0)"
        );
        let labels: Vec<&str> = needles.iter().map(|(l, _)| l.as_str()).collect();
        let bytes: Vec<Vec<u8>> = needles
            .iter()
            .map(|(_, b)| match std::str::from_utf8(b) {
                Ok(s) if ty != "bytea" => s.to_lowercase().into_bytes(),
                _ => b.clone(),
            })
            .collect();
        for hit in client
            .query(&sql, &[&labels, &workspace_id, &bytes])
            .await
            .unwrap()
        {
            let label: String = hit.get(0);
            found.push(format!("{table}.{column}: {label}"));
        }
    }
    found
}

async fn workspace_id(app: &TestApp, name: &str) -> uuid::Uuid {
    let client = app.db.client().await;
    client
        .query_one("SELECT id FROM workspaces WHERE name = $1", &[&name])
        .await
        .unwrap()
        .get(0)
}

async fn sales_in_report(app: &TestApp, key: &str) -> (f64, f64) {
    // Reports take whole UTC days.
    let day = |days: i64| (time::OffsetDateTime::now_utc() - time::Duration::days(days)).date();
    let (from, to) = (day(10), day(-1));
    let report: Value = app
        .get_as(
            key,
            &format!("/v1/reports/conversions?from={from}&to={to}&groupBy=channel"),
        )
        .await
        .json()
        .await
        .unwrap();
    let rows = report["data"].as_array().unwrap();
    let sales = rows.iter().map(|r| r["sales"].as_f64().unwrap()).sum();
    let revenue = rows
        .iter()
        .map(|r| r["revenue"]["USD"].as_f64().unwrap_or(0.0))
        .sum();
    (sales, revenue)
}

async fn erase(app: &TestApp, key: &str, body: &Value) -> (u16, Value) {
    let res = app.post_as(key, "/v1/persons/erase", body).await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

#[tokio::test]
async fn erasing_a_person_removes_the_whole_connected_person_from_every_table() {
    let s = setup().await;
    let app = &s.app;
    let click = json!({"clickId": CLICK, "gclid": "gclid-of-the-click", "timestamp": days_ago(4),
                       "url": "https://shop.example/?ref=alex", "ip": "203.0.113.7"});
    assert_eq!(
        app.post_as(&s.admin, "/v1/clicks", &click).await.status(),
        201
    );
    // Leads without an amount take the catalog's value (kept per event).
    let res = app
        .http
        .put(app.url("/v1/conversion-events/lead"))
        .bearer_auth(&s.admin)
        .json(
            &json!({"kind": "lead", "tier": "macro", "value": {"amount": 40.0, "currency": "USD"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let alex = send_all(app, &s.admin, &alex_events(), "alex").await;
    let bo = send_all(app, &s.admin, &bo_events(), "bo").await;
    let lead_values = || async {
        let client = app.db.client().await;
        let n: i64 = client
            .query_one("SELECT count(*) FROM conversion_lead_values", &[])
            .await
            .unwrap()
            .get(0);
        n
    };
    // Alex's lead and Bo's.
    assert_eq!(lead_values().await, 2);
    // The same person in another workspace.
    let elsewhere = send_all(app, &s.other, &alex_events(), "alex-elsewhere").await;
    let acme = workspace_id(app, "acme").await;
    let globex = workspace_id(app, "globex").await;

    let before = traces_in_every_table(app, acme).await;
    for table in ["events", "identities", "clicks", "dispatch_payloads"] {
        assert!(
            before.iter().any(|t| t.starts_with(table)),
            "the walk must see the person in {table} before: {before:#?}"
        );
    }
    assert_eq!(sales_in_report(app, &s.admin).await, (3.0, 205.0));

    // By the phone alone, as sent: the chain resolves to the whole person.
    let (status, answer) = erase(app, &s.admin, &json!({"phone": PHONE_AS_SENT})).await;
    assert_eq!(status, 200, "{answer:#}");
    assert_eq!(answer["erased"]["events"], 3, "{answer:#}");
    assert_eq!(answer["erased"]["dispatches"], 3, "{answer:#}");
    // Bo's lead keeps its value; Alex's went with the event.
    assert_eq!(lead_values().await, 1);
    assert!(
        answer["erased"]["identifiers"].as_u64().unwrap() >= 5,
        "customer id, email, phone, clickId, gclid: {answer:#}"
    );

    let after = traces_in_every_table(app, acme).await;
    assert!(after.is_empty(), "still kept after erasure: {after:#?}");
    for id in &alex {
        let res = app.get_as(&s.admin, &format!("/v1/events/{id}")).await;
        assert_eq!(res.status(), 404);
    }
    let res = app.get_as(&s.admin, &format!("/v1/clicks/{CLICK}")).await;
    assert_eq!(res.status(), 404, "the click linked to the person goes");
    // Reports no longer count the erased conversions.
    assert_eq!(sales_in_report(app, &s.admin).await, (1.0, 55.0));

    // Dispatch and attempt records keep ids, status and times only.
    let client = app.db.client().await;
    let kept = client
        .query(
            "SELECT d.status,
                    NOT EXISTS (SELECT 1 FROM dispatch_payloads p
                                WHERE p.workspace_id = d.workspace_id AND p.dispatch_id = d.id),
                    d.created_at IS NOT NULL,
                    (SELECT count(*) FROM dispatch_attempts a
                     LEFT JOIN dispatch_requests q
                       ON q.workspace_id = a.workspace_id AND q.id = a.request_id
                     WHERE a.workspace_id = d.workspace_id AND a.dispatch_id = d.id
                       AND (a.error IS NOT NULL OR q.response_excerpt IS NOT NULL))
             FROM dispatches d
             WHERE d.workspace_id = $1 AND d.event_id = ANY($2)",
            &[
                &acme,
                &alex
                    .iter()
                    .map(|id| ingest_api::ids::from_wire("evt_", id).unwrap())
                    .collect::<Vec<_>>(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(kept.len(), 3);
    for row in kept {
        assert_eq!(row.get::<_, String>(0), "succeeded");
        assert!(row.get::<_, bool>(1), "the payload and routing go");
        assert!(row.get::<_, bool>(2));
        assert_eq!(row.get::<_, i64>(3), 0);
    }

    // Another person of the workspace, and the same person in another workspace, stay.
    for id in &bo {
        let res = app.get_as(&s.admin, &format!("/v1/events/{id}")).await;
        assert_eq!(res.status(), 200);
    }
    for id in &elsewhere {
        let res = app.get_as(&s.other, &format!("/v1/events/{id}")).await;
        assert_eq!(res.status(), 200);
    }
    assert!(!traces_in_every_table(app, globex).await.is_empty());
    assert_eq!(sales_in_report(app, &s.other).await, (2.0, 150.0));

    // Asking again answers zeros, by any identifier.
    for body in [
        json!({"phone": PHONE}),
        json!({"email": EMAIL_AS_SENT, "customerExternalId": CUSTOMER}),
    ] {
        let (status, answer) = erase(app, &s.admin, &body).await;
        assert_eq!(status, 200);
        assert_eq!(
            answer,
            json!({"erased": {"events": 0, "identifiers": 0, "dispatches": 0}})
        );
    }

    // Later events with the same identifiers, natural keys and Idempotency-Keys are new.
    let again = alex_events();
    let answer = post_event(app, &s.admin, &again[1], Some("alex-1")).await;
    assert_eq!(answer["duplicate"], false, "{answer:#}");
    assert_ne!(answer["id"].as_str().unwrap(), alex[1]);
    let id = answer["id"].as_str().unwrap().to_owned();
    settled(app, &s.admin, &id).await;
    let event: Value = app
        .get_as(&s.admin, &format!("/v1/events/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(
        event["attribution"]["status"], "matched",
        "a new person, without the erased click: {event:#}"
    );
    // Its identifiers are filed again: the workers' copy of the graph forgot the erased person.
    let client = app.db.client().await;
    for hash in [
        identifier_hash(IdentifierKind::CustomerExternalId, CUSTOMER),
        identifier_hash(IdentifierKind::Email, EMAIL),
    ] {
        let filed: i64 = client
            .query_one(
                "SELECT count(*) FROM identities WHERE workspace_id = $1 AND identifier = $2",
                &[&acme, &&hash[..]],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(filed, 1, "an identifier of the new event is filed");
    }
}

#[tokio::test]
async fn events_not_attributed_yet_are_found_by_the_identifiers_they_carry() {
    // The API alone: events are stored and queued, but no worker has filed their identifiers.
    let db = common::test_db().await;
    let built = ingest_api::Application::build_with(common::settings(&db.url), false)
        .await
        .unwrap();
    let addr = built.addr();
    let server = tokio::spawn(built.run_until_stopped());
    let key = create_key(&db, "acme", &[Scope::Admin, Scope::Read, Scope::Ingest]).await;
    let app = TestApp {
        addr,
        db,
        http: reqwest::Client::new(),
        key: key.clone(),
        server,
    };
    for event in alex_events() {
        post_event(&app, &key, &event, None).await;
    }
    assert_eq!(app.count("match_queue").await, 3);
    let (status, answer) = erase(&app, &key, &json!({"email": EMAIL})).await;
    assert_eq!(status, 200);
    // The graph does not know the person yet: the events carrying the email go (the other
    // identifiers of the person are not linked to it until attribution runs).
    assert_eq!(answer["erased"]["events"], 2, "{answer:#}");
    assert_eq!(app.count("events").await, 1);
    assert_eq!(
        app.count("match_queue").await,
        1,
        "erased events leave the queue"
    );
    let acme = workspace_id(&app, "acme").await;
    let traces = traces_in_every_table(&app, acme).await;
    assert!(
        !traces.iter().any(|t| t.contains("email")),
        "the email is gone everywhere: {traces:#?}"
    );
}

#[tokio::test]
async fn erasure_needs_the_admin_scope_and_names_every_bad_field() {
    let s = setup().await;
    let app = &s.app;
    // The default key has ingest and read only.
    let res = app
        .post("/v1/persons/erase", &json!({"email": EMAIL}))
        .await;
    assert_eq!(res.status(), 403);
    let (status, problem) = erase(
        app,
        &s.admin,
        &json!({"email": "not-an-address", "phone": "12", "customerExternalId": 7, "name": "x"}),
    )
    .await;
    assert_eq!(status, 422, "{problem:#}");
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["customerExternalId", "email", "name", "phone"]);
    let (status, problem) = erase(app, &s.admin, &json!({})).await;
    assert_eq!(status, 422, "{problem:#}");
    let res = app
        .http
        .get(app.url("/v1/persons/erase"))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
}

#[tokio::test]
async fn erasure_waits_for_a_busy_graph_longer_than_an_ordinary_request_would() {
    let s = setup().await;
    let app = &s.app;
    let workspace = workspace_id(app, "acme").await;
    // Another session holds the workspace's graph lock (as a long attribution step would) for
    // longer than the API's statement and lock timeouts (2 s in the tests).
    let mut holder = app.db.client().await;
    let tx = holder.transaction().await.unwrap();
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('attribution-matcher:' || ($1::uuid)::text, 0))",
        &[&workspace],
    )
    .await
    .unwrap();
    let release = async move {
        tokio::time::sleep(Duration::from_millis(3_000)).await;
        tx.commit().await.unwrap();
    };
    let who = json!({"email": EMAIL});
    let started = Instant::now();
    let ((status, body), ()) = tokio::join!(erase(app, &s.admin, &who), release);
    assert_eq!(status, 200, "{body:#}");
    assert!(started.elapsed() >= Duration::from_millis(2_900));
    assert_eq!(body["erased"]["events"], 0);
}
