//! The conversion-events catalog over HTTP on the real service and PostgreSQL: definitions and
//! their checks, scopes and workspaces, Idempotency-Key, the undefined-event-name setting, the
//! value a lead without an amount takes (fixed and estimated from real leads and sales) in its
//! dispatches and reports, and each destination's mapping reaching a fake platform or turning a
//! destination off.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{create_key, TestApp};
use ingest_api::keys::Scope;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn app_with(server: &MockServer, reject_undefined: bool) -> (TestApp, String) {
    let db = common::test_db().await;
    let uri = server.uri();
    let app = TestApp::spawn_with(db, |url| {
        let mut settings = common::settings_with(url, Some(&uri));
        if reject_undefined {
            settings.undefined_event_names = ingest_api::config::UndefinedEventNames::Reject;
        }
        settings
    })
    .await;
    let admin = create_key(&app.db, "acme", &[Scope::Admin, Scope::Read, Scope::Ingest]).await;
    (app, admin)
}

async fn put(app: &TestApp, key: &str, name: &str, body: &Value) -> reqwest::Response {
    put_with(app, key, name, body, None).await
}

async fn put_with(
    app: &TestApp,
    key: &str,
    name: &str,
    body: &Value,
    idempotency_key: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .http
        .put(app.url(&format!("/v1/conversion-events/{name}")))
        .bearer_auth(key)
        .json(body);
    if let Some(k) = idempotency_key {
        req = req.header("Idempotency-Key", k);
    }
    req.send().await.unwrap()
}

async fn delete(app: &TestApp, key: &str, name: &str) -> reqwest::Response {
    app.http
        .delete(app.url(&format!("/v1/conversion-events/{name}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

async fn create_destination(app: &TestApp, admin: &str, body: &Value) -> String {
    let res = app.post_as(admin, "/v1/destinations", body).await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    created["id"].as_str().unwrap().to_owned()
}

fn webhook(server: &MockServer, hook: &str) -> Value {
    json!({"type": "webhook", "name": hook, "events": ["lead", "sale"],
           "config": {"url": format!("{}/{hook}", server.uri())},
           "credentials": {"secret": "whsec_0123456789abcdef"}})
}

fn meta() -> Value {
    json!({"type": "meta", "name": "Meta", "events": ["lead", "sale"],
           "config": {"pixelId": "1234567890"},
           "credentials": {"accessToken": "EAAB-test-token"}})
}

fn google() -> Value {
    json!({"type": "google_ads", "name": "Google Ads", "events": ["lead", "sale"],
           "config": {"customerId": "123-456-7890", "conversionActions": {"lead": "111", "sale": "222"}},
           "credentials": {"clientId": "client.apps.example", "clientSecret": "client-secret-1",
                           "refreshToken": "1//refresh-token"}})
}

async fn mount_ok(server: &MockServer, at: &str, body: Value) {
    Mock::given(method("POST"))
        .and(path(at))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

/// Polls an event until `done` holds for it, with a deadline.
async fn event_until(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let event: Value = app
            .get(&format!("/v1/events/{id}"))
            .await
            .json()
            .await
            .unwrap();
        if done(&event) {
            return event;
        }
        assert!(Instant::now() < deadline, "never reached: {event:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn fields(problem: &Value) -> Vec<(String, String)> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap().to_owned(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(f, c)| ((*f).to_owned(), (*c).to_owned()))
        .collect()
}

#[tokio::test]
async fn definitions_are_created_replaced_listed_in_pages_and_deleted() {
    let server = MockServer::start().await;
    let (app, admin) = app_with(&server, false).await;
    let hook = create_destination(&app, &admin, &webhook(&server, "crm")).await;

    let body = json!({"kind": "lead", "tier": "micro", "description": "A demo was booked",
                      "owner": "growth@acme.test", "value": {"amount": 50.0, "currency": "usd"},
                      "destinations": {hook.clone(): {"enabled": true, "eventName": "DemoBooked"}}});
    let res = put(&app, &admin, "Demo booked", &body).await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["eventName"], "Demo booked");
    assert_eq!(created["kind"], "lead");
    assert_eq!(created["tier"], "micro");
    assert_eq!(created["value"], json!({"amount": 50, "currency": "USD"}));
    assert_eq!(
        created["destinations"][&hook],
        json!({"enabled": true, "eventName": "DemoBooked"})
    );
    assert!(created.get("estimatedValue").is_none());

    let replaced = json!({"kind": "lead", "tier": "macro"});
    let res = put(&app, &admin, "Demo booked", &replaced).await;
    assert_eq!(res.status(), 200);
    let got: Value = app
        .get_as(&admin, "/v1/conversion-events/Demo%20booked")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["tier"], "macro");
    assert_eq!(got["value"], Value::Null);
    assert_eq!(got["destinations"], json!({}));
    assert_eq!(got["createdAt"], created["createdAt"]);

    for name in ["newsletter", "purchase"] {
        let kind = if name == "purchase" { "sale" } else { "lead" };
        let res = put(&app, &admin, name, &json!({"kind": kind, "tier": "macro"})).await;
        assert_eq!(res.status(), 201);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let query = match &cursor {
            Some(c) => format!("/v1/conversion-events?limit=2&cursor={c}"),
            None => "/v1/conversion-events?limit=2".to_owned(),
        };
        let page: Value = app.get_as(&admin, &query).await.json().await.unwrap();
        for d in page["data"].as_array().unwrap() {
            seen.push(d["eventName"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["Demo booked", "newsletter", "purchase"]);
    // Any cursor of the documented shape is a position: "AA" is a NUL byte, before every name.
    let page: Value = app
        .get_as(&admin, "/v1/conversion-events?cursor=AA")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 3, "{page:#}");
    let res = app
        .get_as(&admin, "/v1/conversion-events?cursor=not.a.cursor&limit=0")
        .await;
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(fields(&problem).len(), 2, "{problem:#}");

    assert_eq!(delete(&app, &admin, "newsletter").await.status(), 204);
    assert_eq!(
        app.get_as(&admin, "/v1/conversion-events/newsletter")
            .await
            .status(),
        404
    );
    assert_eq!(delete(&app, &admin, "newsletter").await.status(), 404);
}

#[tokio::test]
async fn every_bad_field_of_a_definition_is_listed() {
    let server = MockServer::start().await;
    let (app, admin) = app_with(&server, false).await;
    let google = create_destination(&app, &admin, &google()).await;
    let meta = create_destination(&app, &admin, &meta()).await;
    let unknown = "dst_0192f0c27c4e70008000000000000000";

    let body = json!({
        "kind": "lead", "tier": "major", "owner": 7,
        "value": {"amount": 1.23456, "currency": "USD"},
        "destinations": {
            google.clone(): {"enabled": true, "conversionAction": "purchase", "eventName": "Lead"},
            meta.clone(): {"enabled": true, "conversionAction": "123", "eventName": "Schedule"},
            unknown: {"enabled": true},
            "google": {"enabled": false}
        }
    });
    let res = put(&app, &admin, "demo_booked", &body).await;
    assert_eq!(res.status(), 422);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let problem: Value = res.json().await.unwrap();
    let mut got = fields(&problem);
    got.sort();
    let mut expected = pairs(&[
        ("tier", "invalid_value"),
        ("owner", "type"),
        ("value.amount", "precision"),
        ("destinations.google", "not_found"),
        (&format!("destinations.{unknown}"), "not_found"),
        (&format!("destinations.{google}.conversionAction"), "format"),
        (&format!("destinations.{google}.eventName"), "not_allowed"),
        (
            &format!("destinations.{meta}.conversionAction"),
            "not_allowed",
        ),
    ]);
    expected.sort();
    assert_eq!(got, expected, "{problem:#}");
    assert_eq!(app.count("conversion_events").await, 0);

    let long = "x".repeat(256);
    let res = put(
        &app,
        &admin,
        &long,
        &json!({"kind": "sale", "tier": "macro",
                                               "value": {"estimate": "close_rate"}}),
    )
    .await;
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(
        fields(&problem),
        pairs(&[("eventName", "max_length"), ("value", "not_allowed")])
    );
    let res = app
        .http
        .put(app.url("/v1/conversion-events/x"))
        .bearer_auth(&admin)
        .header("Content-Type", "application/json")
        .body("[1]")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn writes_need_admin_and_reads_need_read_or_admin() {
    let server = MockServer::start().await;
    let (app, admin) = app_with(&server, false).await;
    let body = json!({"kind": "lead", "tier": "macro"});
    assert_eq!(put(&app, &admin, "signup", &body).await.status(), 201);
    let ingest_only = create_key(&app.db, "acme", &[Scope::Ingest]).await;
    let read_only = create_key(&app.db, "acme", &[Scope::Read]).await;
    let admin_only = create_key(&app.db, "acme", &[Scope::Admin]).await;

    assert_eq!(put(&app, &app.key, "signup", &body).await.status(), 403);
    assert_eq!(put(&app, &read_only, "signup", &body).await.status(), 403);
    assert_eq!(delete(&app, &read_only, "signup").await.status(), 403);
    for key in [&read_only, &admin_only] {
        let res = app.get_as(key, "/v1/conversion-events/signup").await;
        assert_eq!(res.status(), 200);
        let res = app.get_as(key, "/v1/conversion-events").await;
        assert_eq!(res.status(), 200);
    }
    let res = app
        .get_as(&ingest_only, "/v1/conversion-events/signup")
        .await;
    assert_eq!(res.status(), 403);
    let res = app.get_as("cr_nope_nope", "/v1/conversion-events").await;
    assert_eq!(res.status(), 401);
    assert_eq!(put(&app, &admin_only, "signup", &body).await.status(), 200);
}

#[tokio::test]
async fn another_workspaces_definitions_and_destinations_are_not_found() {
    let server = MockServer::start().await;
    let (app, admin) = app_with(&server, false).await;
    let hook = create_destination(&app, &admin, &webhook(&server, "crm")).await;
    let body = json!({"kind": "lead", "tier": "macro",
                      "destinations": {hook.clone(): {"enabled": false}}});
    assert_eq!(put(&app, &admin, "signup", &body).await.status(), 201);

    let other = create_key(&app.db, "globex", &[Scope::Admin, Scope::Read]).await;
    assert_eq!(
        app.get_as(&other, "/v1/conversion-events/signup")
            .await
            .status(),
        404
    );
    assert_eq!(delete(&app, &other, "signup").await.status(), 404);
    let page: Value = app
        .get_as(&other, "/v1/conversion-events")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"], json!([]));
    // Naming acme's destination from globex is naming a destination that does not exist.
    let res = put(&app, &other, "signup", &body).await;
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(
        fields(&problem),
        pairs(&[(&format!("destinations.{hook}"), "not_found")])
    );
    // globex defines its own signup; acme's is untouched.
    let res = put(
        &app,
        &other,
        "signup",
        &json!({"kind": "sale", "tier": "micro"}),
    )
    .await;
    assert_eq!(res.status(), 201);
    let mine: Value = app
        .get_as(&admin, "/v1/conversion-events/signup")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["kind"], "lead");
}

#[tokio::test]
async fn a_retried_put_with_its_idempotency_key_replays_and_another_body_is_refused() {
    let server = MockServer::start().await;
    let (app, admin) = app_with(&server, false).await;
    let body = json!({"kind": "lead", "tier": "macro", "owner": "ops"});
    let first = put_with(&app, &admin, "signup", &body, Some("put-1")).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = put_with(&app, &admin, "signup", &body, Some("put-1")).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let other = json!({"kind": "lead", "tier": "micro"});
    let res = put_with(&app, &admin, "signup", &other, Some("put-1")).await;
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.unwrap();
    assert!(problem["type"]
        .as_str()
        .unwrap()
        .ends_with("/idempotency-key-reused"));
    let stored: Value = app
        .get_as(&admin, "/v1/conversion-events/signup")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["tier"], "macro");
}

#[tokio::test]
async fn undefined_event_names_are_refused_when_the_operator_says_so() {
    let server = MockServer::start().await;
    let (app, admin) = app_with(&server, true).await;
    let res = put(
        &app,
        &admin,
        "Demo booked",
        &json!({"kind": "lead", "tier": "micro"}),
    )
    .await;
    assert_eq!(res.status(), 201);

    let undefined = json!({"event": "lead", "eventName": "Webinar", "customerExternalId": "u1"});
    let res = app.post("/v1/events", &undefined).await;
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(
        fields(&problem),
        pairs(&[("eventName", "undefined_event_name")])
    );
    // Without eventName, a lead is named "lead", which is not defined either; other errors are
    // listed with it.
    let res = app
        .post(
            "/v1/events",
            &json!({"event": "lead", "amount": -1, "currency": "USD",
                                     "customerExternalId": "u1"}),
        )
        .await;
    let problem: Value = res.json().await.unwrap();
    assert_eq!(
        fields(&problem),
        pairs(&[("amount", "minimum"), ("eventName", "undefined_event_name")])
    );
    let res = app
        .post(
            "/v1/events",
            &json!({"event": "sale", "eventName": "Demo booked",
                                     "customerExternalId": "u1", "invoiceId": "i-1",
                                     "amount": 5, "currency": "USD"}),
        )
        .await;
    let problem: Value = res.json().await.unwrap();
    assert_eq!(fields(&problem), pairs(&[("eventName", "kind_mismatch")]));

    let defined = json!({"event": "lead", "eventName": "Demo booked", "customerExternalId": "u1"});
    assert_eq!(app.post("/v1/events", &defined).await.status(), 202);
    let batch = json!({"events": [defined, undefined]});
    let res = app.post("/v1/events/batch", &batch).await;
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(
        (answer["accepted"].clone(), answer["rejected"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(answer["results"][0]["status"], "accepted");
    assert_eq!(answer["results"][1]["status"], "rejected");
    assert_eq!(answer["results"][1]["errors"][0]["field"], "eventName");
    assert_eq!(
        answer["results"][1]["errors"][0]["code"],
        "undefined_event_name"
    );
    assert_eq!(app.count("events").await, 2);
}

#[tokio::test]
async fn undefined_event_names_are_accepted_by_default() {
    let server = MockServer::start().await;
    let (app, _admin) = app_with(&server, false).await;
    let event = json!({"event": "lead", "eventName": "Webinar", "customerExternalId": "u1"});
    assert_eq!(app.post("/v1/events", &event).await.status(), 202);
}

#[tokio::test]
async fn a_lead_without_amount_takes_the_fixed_value_and_the_mapped_meta_event_name() {
    let server = MockServer::start().await;
    mount_ok(
        &server,
        "/v26.0/1234567890/events",
        json!({"events_received": 1, "fbtrace_id": "trace"}),
    )
    .await;
    let (app, admin) = app_with(&server, false).await;
    let meta = create_destination(&app, &admin, &meta()).await;
    let body = json!({"kind": "lead", "tier": "micro",
                      "value": {"amount": 50, "currency": "EUR"},
                      "destinations": {meta.clone(): {"enabled": true, "eventName": "Schedule"}}});
    assert_eq!(put(&app, &admin, "demo_booked", &body).await.status(), 201);

    let at = events::format_timestamp(time::OffsetDateTime::now_utc() - time::Duration::hours(1));
    let lead = json!({"event": "lead", "eventName": "demo_booked", "fbclid": "fb-click-1",
                      "customerExternalId": "u-demo", "timestamp": at});
    let res = app.post("/v1/events", &lead).await;
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let event = event_until(&app, &id, |e| e["dispatches"][0]["status"] == "succeeded").await;
    assert_eq!(
        event["leadValue"],
        json!({"amount": 50, "currency": "EUR", "source": "fixed"})
    );
    assert!(event.get("amount").is_none(), "the stored event is as sent");
    let sent: Vec<Value> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v26.0/1234567890/events")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(sent.len(), 1);
    let sent_event = &sent[0]["data"][0];
    assert_eq!(sent_event["event_name"], "Schedule", "{sent_event:#}");
    assert_eq!(sent_event["custom_data"]["value"], json!(50.0));
    // Meta takes currencies in lower case.
    assert_eq!(sent_event["custom_data"]["currency"], "eur");

    // The definition's value changes later: this lead keeps the value it was attributed with,
    // and reports count it.
    let body = json!({"kind": "lead", "tier": "micro", "value": {"amount": 80, "currency": "EUR"}});
    assert_eq!(put(&app, &admin, "demo_booked", &body).await.status(), 200);
    let event = event_until(&app, &id, |_| true).await;
    assert_eq!(event["leadValue"]["amount"], json!(50));
    let deadline = Instant::now() + Duration::from_secs(20);
    let report = loop {
        let report: Value = app
            .get("/v1/reports/conversions?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z&groupBy=eventName")
            .await
            .json()
            .await
            .unwrap();
        let row = report["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == "demo_booked")
            .cloned();
        if let Some(row) = row.filter(|r| r["leads"] == json!(1)) {
            break row;
        }
        assert!(Instant::now() < deadline, "never credited: {report:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(report["value"]["EUR"], json!(50), "{report:#}");
    assert_eq!(report["revenue"], json!({}), "{report:#}");
}

#[tokio::test]
async fn a_destination_turned_off_for_an_event_name_gets_nothing_and_a_mapped_one_gets_the_mapping()
{
    let server = MockServer::start().await;
    mount_ok(&server, "/on", json!({})).await;
    mount_ok(&server, "/off", json!({})).await;
    let (app, admin) = app_with(&server, false).await;
    let on = create_destination(&app, &admin, &webhook(&server, "on")).await;
    let off = create_destination(&app, &admin, &webhook(&server, "off")).await;
    let body = json!({"kind": "lead", "tier": "micro", "destinations": {
        on.clone(): {"enabled": true, "conversionAction": "crm-demo", "eventName": "Demo"},
        off.clone(): {"enabled": false}
    }});
    assert_eq!(put(&app, &admin, "demo_booked", &body).await.status(), 201);

    let lead = json!({"event": "lead", "eventName": "demo_booked", "customerExternalId": "u-1",
                      "amount": 10, "currency": "USD"});
    let res = app.post("/v1/events", &lead).await;
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let event = event_until(&app, &id, |e| {
        e["dispatches"]
            .as_array()
            .is_some_and(|d| d.len() == 2 && d.iter().any(|d| d["status"] == "succeeded"))
    })
    .await;
    let dispatches = event["dispatches"].as_array().unwrap();
    let skipped = dispatches
        .iter()
        .find(|d| d["destination"] == off.as_str() || d["destinationId"] == off.as_str())
        .unwrap_or_else(|| panic!("{event:#}"));
    assert_eq!(skipped["status"], "skipped", "{event:#}");
    assert!(
        skipped.to_string().contains("turned_off_in_catalog"),
        "{skipped:#}"
    );
    let bodies: Vec<(String, Value)> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.url.path().to_owned(),
                serde_json::from_slice(&r.body).unwrap(),
            )
        })
        .collect();
    assert_eq!(bodies.len(), 1, "{bodies:#?}");
    assert_eq!(bodies[0].0, "/on");
    assert_eq!(
        bodies[0].1["mapping"],
        json!({"conversionAction": "crm-demo", "eventName": "Demo"})
    );

    // Events of other names, and a sale of the same name (the definition is a lead's), are
    // relayed to both as before.
    let sale = json!({"event": "sale", "eventName": "demo_booked", "customerExternalId": "u-1",
                      "invoiceId": "inv-1", "amount": 10, "currency": "USD"});
    let res = app.post("/v1/events", &sale).await;
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    event_until(&app, &id, |e| {
        e["dispatches"]
            .as_array()
            .is_some_and(|d| d.len() == 2 && d.iter().all(|d| d["status"] == "succeeded"))
    })
    .await;
}

/// Leads and sales of the last weeks, sent through the API and attributed.
async fn send_history(app: &TestApp, leads: usize, sales: &[(&str, f64)]) {
    let at = events::format_timestamp(time::OffsetDateTime::now_utc() - time::Duration::days(3));
    let mut items = Vec::new();
    for i in 0..leads {
        items.push(
            json!({"event": "lead", "customerExternalId": format!("lead-{i}"),
                          "timestamp": at}),
        );
    }
    for (i, (currency, amount)) in sales.iter().enumerate() {
        items.push(
            json!({"event": "sale", "customerExternalId": format!("buyer-{i}"),
                          "invoiceId": format!("inv-{currency}-{i}"), "timestamp": at,
                          "currency": currency, "amount": amount}),
        );
    }
    // Old events, outside the 90-day window, do not count.
    let old = events::format_timestamp(time::OffsetDateTime::now_utc() - time::Duration::days(200));
    items.push(
        json!({"event": "sale", "customerExternalId": "old", "invoiceId": "inv-old",
                      "timestamp": old, "currency": "USD", "amount": 9999}),
    );
    let answer: Value = app
        .post("/v1/events/batch", &json!({"events": items}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["rejected"], 0, "{answer:#}");
}

#[tokio::test]
async fn a_close_rate_estimate_comes_from_the_workspaces_leads_and_sales() {
    let server = MockServer::start().await;
    let (app, admin) = app_with(&server, false).await;
    // Too thin first: no sales at all.
    send_history(&app, 3, &[]).await;
    let body = json!({"kind": "lead", "tier": "micro", "value": {"estimate": "close_rate"}});
    let res = put(&app, &admin, "demo_booked", &body).await;
    assert_eq!(res.status(), 201);
    let thin: Value = res.json().await.unwrap();
    assert_eq!(thin["estimatedValue"], Value::Null, "{thin:#}");
    assert!(thin["basis"]["reason"]
        .as_str()
        .unwrap()
        .contains("no sales"));
    assert_eq!(thin["basis"]["leads"], 3);

    // 8 leads, 2 USD sales of 100 and 300 (median 200) and one EUR sale of 40:
    // USD: 2 / 8 × 200 = 50; EUR: 1 / 8 × 40 = 5.
    send_history(&app, 5, &[("USD", 100.0), ("USD", 300.0), ("EUR", 40.0)]).await;
    let client = app.db.client().await;
    let pool = ingest_api::db::pool(&app.db.url, 1, Duration::from_secs(5)).unwrap();
    // The workers recompute estimates older than their age; an age of zero makes it due now.
    let refreshed = pipeline::estimate_step(&pool, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(refreshed, 1);
    let got: Value = app
        .get_as(&admin, "/v1/conversion-events/demo_booked")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        got["estimatedValue"],
        json!({"amount": 50, "currency": "USD"}),
        "{got:#}"
    );
    let basis = &got["basis"];
    assert_eq!(basis["leads"], 8);
    assert_eq!(basis["sales"], 2);
    assert_eq!(basis["closeRate"], 0.25);
    assert_eq!(
        basis["medianSale"],
        json!({"amount": 200, "currency": "USD"})
    );
    assert_eq!(basis["window"]["days"], 90);
    assert_eq!(basis["reason"], Value::Null);
    let eur = basis["currencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["currency"] == "EUR")
        .unwrap();
    assert_eq!(eur["estimatedValue"], json!(5));
    // Fresh estimates are not recomputed.
    assert_eq!(
        pipeline::estimate_step(&pool, Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );

    // A lead without an amount takes the estimate.
    let lead = json!({"event": "lead", "eventName": "demo_booked", "customerExternalId": "new"});
    let res = app.post("/v1/events", &lead).await;
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let event = event_until(&app, &id, |e| !e["attribution"].is_null()).await;
    assert_eq!(
        event["leadValue"],
        json!({"amount": 50, "currency": "USD", "source": "close_rate"}),
        "{event:#}"
    );
    drop(client);
}
