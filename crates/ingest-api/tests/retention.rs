//! Retention (`CONVRELAY_RETENTION_DAYS`): the journal's monthly partitions past retention are
//! dropped whole, after the decisions, dispatches, attempts and natural keys of their events;
//! idle persons and clicks go; partitions are created ahead; `GET /v1/usage` shows what is kept.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{create_key, TestApp};
use ingest_api::keys::Scope;
use pipeline::retention::{retention_round, RetentionReport, RetentionSettings};
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The retention the app's workers are given (a hundred years).
const WORKERS_RETENTION_DAYS: u32 = 36_500;

struct Setup {
    app: TestApp,
    admin: String,
    pool: deadpool_postgres::Pool,
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
    // The workers' own rounds keep everything (the test's rounds say 400 days): a round of
    // theirs that started late must not drop the partitions a test has just filled long ago.
    let app = TestApp::spawn_with(db, |url| {
        let mut settings = common::settings_with(url, Some(&uri));
        settings.retention_days = WORKERS_RETENTION_DAYS;
        settings
    })
    .await;
    let admin = create_key(&app.db, "acme", &[Scope::Admin, Scope::Read, Scope::Ingest]).await;
    app.add_webhook(&admin, &format!("{uri}/hook"), &["lead", "sale"])
        .await;
    let pool = ingest_api::db::pool(&app.db.url, 2, Duration::from_secs(5)).unwrap();
    Setup {
        app,
        admin,
        pool,
        _server: server,
    }
}

/// Polls until the event is decided and its dispatches are done.
async fn settled(app: &TestApp, key: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let event: Value = app
            .get_as(key, &format!("/v1/events/{id}"))
            .await
            .json()
            .await
            .unwrap();
        let sent = event["dispatches"]
            .as_array()
            .is_some_and(|d| !d.is_empty() && d.iter().all(|d| d["status"] == "succeeded"));
        if !event["attribution"].is_null() && sent {
            return event;
        }
        assert!(Instant::now() < deadline, "never settled: {event:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post(app: &TestApp, key: &str, event: &Value) -> Value {
    let res = app.post_as(key, "/v1/events", event).await;
    assert!(res.status().is_success(), "{}", res.status());
    res.json().await.unwrap()
}

/// `GET /v1/usage`.
async fn get_usage(app: &TestApp, key: &str) -> Value {
    app.get_as(key, "/v1/usage").await.json().await.unwrap()
}

async fn workspace_id(app: &TestApp, name: &str) -> Uuid {
    let client = app.db.client().await;
    client
        .query_one("SELECT id FROM workspaces WHERE name = $1", &[&name])
        .await
        .unwrap()
        .get(0)
}

/// Stores events received at `at` (long ago) the way ingest stores them: journal, natural keys
/// and the matcher's queue in one transaction. The workers then attribute and dispatch them.
async fn store_received_at(
    pool: &deadpool_postgres::Pool,
    workspace_id: Uuid,
    at: OffsetDateTime,
    bodies: &[Value],
) -> Vec<Uuid> {
    let mut client = pool.get().await.unwrap();
    for table in pipeline::retention::PARTITIONED {
        journal::retention::ensure_partitions(&mut client, table, at, at)
            .await
            .unwrap();
    }
    let tx = client.transaction().await.unwrap();
    let mut stored = Vec::new();
    let mut keys = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let received_at = at + time::Duration::seconds(i as i64);
        let millis = u64::try_from(received_at.unix_timestamp_nanos() / 1_000_000).unwrap();
        let id = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            millis / 1000,
            u32::try_from(millis % 1000).unwrap() * 1_000_000,
        ));
        let event = events::parse_event(body, received_at).unwrap();
        if let Some(key) = event.natural_key() {
            keys.push(dedup::NaturalKey {
                workspace_id,
                kind: event.kind().as_str(),
                key: key.to_owned(),
                event_id: id,
            });
        }
        stored.push(journal::NewEvent {
            workspace_id,
            id,
            kind: event.kind().as_str(),
            occurred_at: event.timestamp,
            received_at,
            natural_key: event.natural_key().map(str::to_owned),
            customer_external_id: event.customer_external_id.clone(),
            mode: event.mode.as_str(),
            amount: event.value.as_ref().map(|m| m.amount()),
            currency: event.value.as_ref().map(|m| m.currency().code().to_owned()),
            payload: serde_json::to_value(&event).unwrap(),
        });
    }
    dedup::natural::claim_natural_keys(&tx, &keys)
        .await
        .unwrap();
    let refs: Vec<&journal::NewEvent> = stored.iter().collect();
    journal::insert_events(&tx, &refs).await.unwrap();
    let arrivals: Vec<(Uuid, Uuid)> = stored.iter().map(|e| (workspace_id, e.id)).collect();
    attribution_matcher::enqueue(&tx, &arrivals).await.unwrap();
    tx.commit().await.unwrap();
    stored.iter().map(|e| e.id).collect()
}

/// The partition an event is stored in.
async fn home(app: &TestApp, id: Uuid) -> String {
    home_in(app, journal::retention::EVENTS, id).await
}

/// The partition of `table` that holds a row of the event `id`, once there is one (the
/// decisions, report rows and dispatches follow the event by a moment): the dispatch tables are
/// keyed by the dispatch's id, found by its event.
async fn home_in(app: &TestApp, table: journal::retention::MonthlyTable, id: Uuid) -> String {
    let sql = match table.name {
        "dispatches" => {
            "SELECT tableoid::regclass::text FROM dispatches WHERE event_id = $1 LIMIT 1".to_owned()
        }
        "dispatch_attempts" | "dispatch_payloads" => format!(
            "SELECT t.tableoid::regclass::text FROM {} t
             JOIN dispatches d ON d.workspace_id = t.workspace_id AND d.id = t.dispatch_id
             WHERE d.event_id = $1 LIMIT 1",
            table.name
        ),
        _ => format!(
            "SELECT tableoid::regclass::text FROM {} WHERE {} = $1",
            table.name, table.key
        ),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let client = app.db.client().await;
        if let Some(row) = client.query_opt(&sql, &[&id]).await.unwrap() {
            return row.get(0);
        }
        assert!(
            Instant::now() < deadline,
            "no row of {id} in {}",
            table.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A retention round at `now`; the workers' own round (at their start) may hold the lock for a
/// moment.
async fn round_at(pool: &deadpool_postgres::Pool, now: OffsetDateTime) -> RetentionReport {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let report = retention_round(pool, RetentionSettings { days: 400 }, now)
            .await
            .unwrap();
        if report.ran {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "the retention lock was never free"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn scalar(app: &TestApp, sql: &str, ids: &[Uuid]) -> i64 {
    let client = app.db.client().await;
    client.query_one(sql, &[&ids]).await.unwrap().get(0)
}

#[tokio::test]
async fn partitions_past_retention_are_dropped_with_what_belongs_to_their_events() {
    let s = setup().await;
    let app = &s.app;
    let acme = workspace_id(app, "acme").await;
    let now = OffsetDateTime::now_utc();
    let long_ago = now - time::Duration::days(500);
    let old = store_received_at(
        &s.pool,
        acme,
        long_ago,
        &[
            json!({"event": "lead", "timestamp": events::format_timestamp(long_ago),
                   "customerExternalId": "cust-old", "leadId": "lead-old"}),
            json!({"event": "sale", "timestamp": events::format_timestamp(long_ago),
                   "customerExternalId": "cust-old", "invoiceId": "inv-old",
                   "currency": "USD", "amount": 10.0}),
        ],
    )
    .await;
    let old_wire: Vec<String> = old
        .iter()
        .map(|id| ingest_api::ids::to_wire("evt_", *id))
        .collect();
    for id in &old_wire {
        settled(app, &s.admin, id).await;
    }
    let new_sale = json!({"event": "sale", "customerExternalId": "cust-new", "invoiceId": "inv-new",
                          "currency": "USD", "amount": 20.0});
    let fresh = post(app, &s.admin, &new_sale).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    settled(app, &s.admin, &fresh).await;

    let usage = get_usage(app, &s.admin).await;
    assert_eq!(usage["stored"]["events"], 3, "{usage:#}");
    assert_eq!(usage["stored"]["dispatches"], 3, "{usage:#}");
    assert_eq!(usage["retentionDays"], WORKERS_RETENTION_DAYS);
    assert_eq!(
        usage["oldestEventAt"],
        events::format_timestamp(events::to_utc_millis(long_ago)),
        "{usage:#}"
    );

    // The value the old lead took from the catalog, as the matcher records it.
    app.db
        .client()
        .await
        .execute(
            "INSERT INTO conversion_lead_values
                 (workspace_id, event_id, event_name, amount, currency, source)
             VALUES ($1, $2, 'lead', 5, 'USD', 'fixed')",
            &[&acme, &old[0]],
        )
        .await
        .unwrap();
    // A month of decisions, report rows, lead values, dispatches, their attempts and payloads
    // lives with its month of events, and goes with it. The platform requests were made now:
    // their month of then is empty, and goes too.
    let months: Vec<String> = pipeline::retention::PARTITIONED
        .iter()
        .map(|table| journal::retention::MonthPartition::of(*table, long_ago).name)
        .collect();
    for (table, month) in pipeline::retention::PARTITIONED.iter().zip(&months) {
        if *table != forwarder::retention::REQUESTS {
            assert_eq!(&home_in(app, *table, old[0]).await, month);
        }
    }
    let requests = "SELECT count(*) FROM dispatch_requests WHERE $1::uuid[] IS NOT NULL";
    let requests_before = scalar(app, requests, &old).await;
    assert!(requests_before > 0);
    let report = round_at(&s.pool, now).await;
    let mut dropped = report.dropped.clone();
    dropped.sort();
    let mut expected = months.clone();
    expected.sort();
    assert_eq!(dropped, expected, "{report:#?}");
    assert_eq!(report.natural_keys, 2);

    let client = app.db.client().await;
    for month in &months {
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[month])
            .await
            .unwrap()
            .get(0);
        assert!(!exists, "{month} is dropped, not emptied");
    }
    for id in &old_wire {
        assert_eq!(
            app.get_as(&s.admin, &format!("/v1/events/{id}"))
                .await
                .status(),
            404
        );
    }
    for (table, sql) in [
        (
            "attributions",
            "SELECT count(*) FROM attributions WHERE event_id = ANY($1)",
        ),
        (
            "dispatches",
            "SELECT count(*) FROM dispatches WHERE event_id = ANY($1)",
        ),
        (
            "dispatch_attempts",
            "SELECT count(*) FROM dispatch_attempts a JOIN dispatches d ON d.id = a.dispatch_id
             WHERE d.event_id = ANY($1)",
        ),
        (
            "dispatch_payloads",
            "SELECT count(*) FROM dispatch_payloads p
             WHERE $1::uuid[] IS NOT NULL AND NOT EXISTS (
                 SELECT 1 FROM dispatches d
                 WHERE d.workspace_id = p.workspace_id AND d.id = p.dispatch_id)",
        ),
        (
            "natural_keys",
            "SELECT count(*) FROM natural_keys WHERE event_id = ANY($1)",
        ),
        (
            "conversion_lead_values",
            "SELECT count(*) FROM conversion_lead_values WHERE event_id = ANY($1)",
        ),
        (
            "report_conversions",
            "SELECT count(*) FROM report_conversions WHERE event_id = ANY($1)",
        ),
    ] {
        assert_eq!(scalar(app, sql, &old).await, 0, "{table}");
    }
    assert_eq!(
        scalar(
            app,
            "SELECT count(*) FROM dispatch_attempts WHERE $1::uuid[] IS NOT NULL",
            &old
        )
        .await,
        1,
        "the kept event's attempt stays"
    );
    assert_eq!(
        scalar(app, requests, &old).await,
        requests_before,
        "the requests made this month stay (until their month is past retention)"
    );
    assert_eq!(
        scalar(
            app,
            "SELECT count(*) FROM dispatch_attempts a
             JOIN dispatch_requests q ON q.workspace_id = a.workspace_id AND q.id = a.request_id
             WHERE $1::uuid[] IS NOT NULL",
            &old
        )
        .await,
        1,
        "the kept attempt's request stays"
    );
    // What is within retention stays whole.
    let kept = settled(app, &s.admin, &fresh).await;
    assert_eq!(kept["dispatches"][0]["status"], "succeeded");
    let usage = get_usage(app, &s.admin).await;
    assert_eq!(usage["stored"]["events"], 1, "{usage:#}");
    assert_eq!(usage["stored"]["dispatches"], 1, "{usage:#}");
    assert_eq!(
        usage["oldestEventAt"], kept["receivedAt"],
        "the oldest kept is the fresh one: {usage:#}"
    );
    // The dropped events' natural keys no longer make duplicates.
    let again = json!({"event": "sale", "customerExternalId": "cust-old", "invoiceId": "inv-old",
                       "currency": "USD", "amount": 10.0});
    assert_eq!(post(app, &s.admin, &again).await["duplicate"], false);

    // A second round finds nothing more to drop.
    let report = round_at(&s.pool, now).await;
    assert!(report.dropped.is_empty(), "{report:#?}");
}

#[tokio::test]
async fn a_round_past_everything_leaves_nothing_and_partitions_are_created_ahead() {
    let s = setup().await;
    let app = &s.app;
    let click = json!({"clickId": "clk-1", "gclid": "g-1"});
    assert_eq!(
        app.post_as(&s.admin, "/v1/clicks", &click).await.status(),
        201
    );
    let idle_click = json!({"clickId": "clk-nobody", "fbclid": "f-1"});
    assert_eq!(
        app.post_as(&s.admin, "/v1/clicks", &idle_click)
            .await
            .status(),
        201
    );
    let lead = json!({"event": "lead", "clickId": "clk-1", "customerExternalId": "cust-1",
                      "email": "one@example.com"});
    let id = post(app, &s.admin, &lead).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    settled(app, &s.admin, &id).await;
    let usage = get_usage(app, &s.admin).await;
    assert_eq!(usage["stored"]["clicks"], 2, "{usage:#}");
    assert_eq!(usage["stored"]["persons"], 1, "{usage:#}");
    assert!(
        usage["stored"]["identifiers"].as_i64().unwrap() >= 3,
        "{usage:#}"
    );

    // A round as if 500 days had passed with the workers stopped.
    let later = OffsetDateTime::now_utc() + time::Duration::days(500);
    let report = round_at(&s.pool, later).await;
    assert!(!report.dropped.is_empty(), "{report:#?}");
    assert_eq!(report.clicks, 2, "{report:#?}");
    assert!(report.identifiers >= 3, "{report:#?}");
    for table in pipeline::retention::PARTITIONED {
        let ahead = journal::retention::MonthPartition::of(table, later + time::Duration::days(40));
        assert!(report.created.contains(&ahead.name), "{report:#?}");
    }
    let usage = get_usage(app, &s.admin).await;
    assert_eq!(
        usage["stored"],
        json!({"events": 0, "clicks": 0, "identifiers": 0, "persons": 0, "dispatches": 0,
               "attempts": 0}),
        "{usage:#}"
    );
    assert_eq!(usage["oldestEventAt"], Value::Null);

    // This month's partition is gone (the clock of that round ran ahead): an event now is still
    // accepted, into the default partition, and moves to its month's partition when created.
    let late = json!({"event": "lead", "customerExternalId": "cust-2"});
    let late_id = post(app, &s.admin, &late).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let uuid = ingest_api::ids::from_wire("evt_", &late_id).unwrap();
    assert_eq!(home(app, uuid).await, "events_default");
    let decisions = attribution_matcher::retention::ATTRIBUTIONS;
    assert_eq!(home_in(app, decisions, uuid).await, "attributions_default");
    let now = OffsetDateTime::now_utc();
    let mut client = s.pool.get().await.unwrap();
    for table in [journal::retention::EVENTS, decisions] {
        let created = journal::retention::ensure_partitions(&mut client, table, now, now)
            .await
            .unwrap();
        let this_month = journal::retention::MonthPartition::of(table, now).name;
        assert_eq!(created, vec![this_month.clone()]);
        assert_eq!(home_in(app, table, uuid).await, this_month);
    }
    assert_eq!(
        app.get_as(&s.admin, &format!("/v1/events/{late_id}"))
            .await
            .status(),
        200
    );
}

/// A person stays while events name it, even events that file nothing new; a person no event has
/// named since the cutoff goes with its identity links, found by its day of use.
#[tokio::test]
async fn a_person_named_within_retention_stays_and_an_idle_one_goes() {
    let s = setup().await;
    let app = &s.app;
    let acme = workspace_id(app, "acme").await;
    for (customer, email, gclid) in [
        ("cust-kept", "kept@example.com", "g-kept"),
        ("cust-idle", "idle@example.com", "g-idle"),
    ] {
        let lead = json!({"event": "lead", "customerExternalId": customer, "email": email,
                          "gclid": gclid});
        let id = post(app, &s.admin, &lead).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        settled(app, &s.admin, &id).await;
    }
    let days_of_use = |client: deadpool_postgres::Object| async move {
        client
            .query(
                "SELECT i.used_on FROM persons i WHERE i.workspace_id = $1
                 AND i.merged_into IS NULL ORDER BY i.used_on",
                &[&acme],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<_, time::Date>(0))
            .collect::<Vec<_>>()
    };
    let now = OffsetDateTime::now_utc();
    let today = now.date();
    assert_eq!(
        days_of_use(s.pool.get().await.unwrap()).await,
        vec![today, today]
    );

    // Both persons as if last used 450 days ago, written as any other writer of the graph
    // writes: under its lock, telling the workers' copies.
    let long_ago = today - time::Duration::days(450);
    {
        let mut client = s.pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        attribution_matcher::erase::lock_graph(&tx, acme)
            .await
            .unwrap();
        tx.execute(
            "UPDATE persons SET used_on = $2 WHERE workspace_id = $1",
            &[&acme, &long_ago],
        )
        .await
        .unwrap();
        attribution_matcher::graph_changed(&tx, acme).await.unwrap();
        tx.commit().await.unwrap();
    }
    // A sale by the kept customer's e-mail alone files nothing, but names the person.
    let sale = json!({"event": "sale", "email": "kept@example.com", "invoiceId": "inv-kept",
                      "currency": "USD", "amount": 5.0});
    let id = post(app, &s.admin, &sale).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let kept = settled(app, &s.admin, &id).await;
    assert_eq!(kept["attribution"]["matchedBy"], "email", "{kept:#}");
    assert_eq!(
        days_of_use(s.pool.get().await.unwrap()).await,
        vec![long_ago, today]
    );

    let report = round_at(&s.pool, now).await;
    assert_eq!(
        report.identifiers, 3,
        "the idle customer's id, e-mail and click: {report:#?}"
    );
    assert_eq!(days_of_use(s.pool.get().await.unwrap()).await, vec![today]);
    let usage = get_usage(app, &s.admin).await;
    assert_eq!(usage["stored"]["identifiers"], 3, "{usage:#}");
    assert_eq!(usage["stored"]["persons"], 1, "{usage:#}");

    // The idle customer starts afresh, without the forgotten click; the kept one keeps theirs.
    for (email, invoice, status) in [
        ("idle@example.com", "inv-idle", "pending"),
        ("kept@example.com", "inv-kept-2", "matched"),
    ] {
        let sale = json!({"event": "sale", "email": email, "invoiceId": invoice,
                          "currency": "USD", "amount": 5.0});
        let id = post(app, &s.admin, &sale).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let event = settled(app, &s.admin, &id).await;
        assert_eq!(event["attribution"]["status"], status, "{event:#}");
    }
    // A second round finds nobody idle.
    assert_eq!(round_at(&s.pool, now).await.identifiers, 0);
}

#[tokio::test]
async fn usage_needs_the_read_scope() {
    let s = setup().await;
    let ingest_only = create_key(&s.app.db, "acme", &[Scope::Ingest]).await;
    assert_eq!(s.app.get_as(&ingest_only, "/v1/usage").await.status(), 403);
    let usage: Value = s.app.get("/v1/usage").await.json().await.unwrap();
    assert_eq!(usage["stored"]["events"], 0);
    assert_eq!(usage["oldestEventAt"], Value::Null);
    assert!(usage["retentionCutoff"].is_string());
}

#[tokio::test]
async fn a_legacy_partition_that_covers_this_month_stays_until_it_is_past_retention() {
    let db = common::test_db().await;
    let pool = ingest_api::db::pool(&db.url, 2, Duration::from_secs(5)).unwrap();
    let client = pool.get().await.unwrap();
    let decisions = attribution_matcher::retention::ATTRIBUTIONS;
    let now = OffsetDateTime::now_utc();
    // As the migration leaves a database that already held decisions: one partition from
    // MINVALUE to the end of this month.
    let this_month = journal::retention::MonthPartition::of(decisions, now);
    client
        .batch_execute(&format!(
            "DROP TABLE {name};
             CREATE TABLE attributions_legacy (LIKE attributions INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
             ALTER TABLE attributions ATTACH PARTITION attributions_legacy
                 FOR VALUES FROM (MINVALUE) TO ('{to}');",
            name = this_month.name,
            to = this_month.to,
        ))
        .await
        .unwrap();
    let last_month = now - time::Duration::days(40);
    let millis = u64::try_from(last_month.unix_timestamp_nanos() / 1_000_000).unwrap();
    let event_id = Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        millis / 1000,
        0,
    ));
    client
        .execute(
            "INSERT INTO attributions (workspace_id, event_id, status, decided_at)
             VALUES ($1, $2, 'unmatched', now())",
            &[&Uuid::now_v7(), &event_id],
        )
        .await
        .unwrap();

    // The months it covers are not created again; the later ones are.
    let report = round_at(&pool, now).await;
    assert!(!report.created.contains(&this_month.name), "{report:#?}");
    let ahead = journal::retention::MonthPartition::of(decisions, now + time::Duration::days(62));
    assert!(
        report.created.contains(&ahead.name) || {
            let exists: bool = client
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&ahead.name])
                .await
                .unwrap()
                .get(0);
            exists
        },
        "{report:#?}"
    );
    assert!(!report.dropped.contains(&"attributions_legacy".to_owned()));

    // Once everything it covers is past retention, it goes whole.
    let report = round_at(&pool, now + time::Duration::days(500)).await;
    assert!(
        report.dropped.contains(&"attributions_legacy".to_owned()),
        "{report:#?}"
    );
    let left: i64 = client
        .query_one("SELECT count(*) FROM attributions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}
