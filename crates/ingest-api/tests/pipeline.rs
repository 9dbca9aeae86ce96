//! The whole pipeline in one process: events in, attribution, routing, dispatches to fake ad
//! platforms and webhooks, the operator's view of it, retries and retractions.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{create_key, days_ago, seed_lead, seed_sale, TestApp};
use ingest_api::keys::Scope;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn app_with_platforms(server: &MockServer) -> (TestApp, String) {
    let db = common::test_db().await;
    let uri = server.uri();
    let app = TestApp::spawn_with(db, |url| common::settings_with(url, Some(&uri))).await;
    let admin = create_key(&app.db, "acme", &[Scope::Admin, Scope::Read, Scope::Ingest]).await;
    (app, admin)
}

async fn mount_google(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "ya29.test-token", "expires_in": 3599, "token_type": "Bearer"
        })))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/events:ingest"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"requestId": "dm-1"})))
        .mount(server)
        .await;
}

fn google_destination() -> Value {
    json!({
        "type": "google_ads", "name": "Google Ads", "events": ["lead", "sale"],
        "config": {"customerId": "123-456-7890", "conversionActions": {"lead": "111", "sale": "222"}},
        "credentials": {"clientId": "client.apps.example", "clientSecret": "client-secret-1",
                        "refreshToken": "1//refresh-token"}
    })
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

#[tokio::test]
async fn the_seed_sale_reaches_google_through_the_click_of_its_deferred_lead() {
    let server = MockServer::start().await;
    mount_google(&server).await;
    let (app, admin) = app_with_platforms(&server).await;
    let res = app
        .post_as(&admin, "/v1/destinations", &google_destination())
        .await;
    assert_eq!(res.status(), 201);
    let destination: Value = res.json().await.unwrap();
    assert!(
        destination.get("credentials").is_none(),
        "credentials are write-only"
    );
    assert!(!destination.to_string().contains("refresh-token"));

    let click = json!({"clickId": "clickid_123", "gclid": "Cj0KCQ-test-gclid", "timestamp": days_ago(9),
                       "utm": {"source": "google", "medium": "cpc", "campaign": "spring"}});
    assert_eq!(app.post("/v1/clicks", &click).await.status(), 201);
    assert_eq!(app.post("/v1/clicks", &click).await.status(), 200);
    let mut lead = seed_lead();
    lead["timestamp"] = json!(days_ago(8));
    assert_eq!(app.post("/v1/events", &lead).await.status(), 202);

    let mut sale = seed_sale();
    sale["timestamp"] = json!(days_ago(1));
    sale["mode"] = json!("wait");
    let res = app.post("/v1/events", &sale).await;
    assert_eq!(res.status(), 202);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["attribution"]["status"], "matched", "{answer:#}");
    assert_eq!(answer["attribution"]["matchedBy"], "customerExternalId");
    assert_eq!(answer["attribution"]["click"]["clickId"], "clickid_123");
    assert_eq!(answer["attribution"]["click"]["gclid"], "Cj0KCQ-test-gclid");
    let google = answer["routing"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "google_ads")
        .unwrap();
    assert_eq!(google["dispatch"], true);
    assert_eq!(answer["dispatches"].as_array().unwrap().len(), 1);

    let id = answer["id"].as_str().unwrap();
    let event = event_until(&app, id, |e| e["dispatches"][0]["status"] == "succeeded").await;
    assert_eq!(event["dispatches"][0]["type"], "google_ads");
    let sent: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v1/events:ingest")
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].contains("Cj0KCQ-test-gclid"));
    assert!(
        sent[0].contains("inv_987"),
        "the invoiceId is the transaction id"
    );

    // The deferred lead itself is linked, not dispatched.
    let leads: Value = app.get("/v1/events?event=lead").await.json().await.unwrap();
    let lead_id = leads["data"][0]["id"].as_str().unwrap();
    let lead = event_until(&app, lead_id, |e| !e["attribution"].is_null()).await;
    assert_eq!(lead["dispatches"], json!([]));
    assert!(lead["routing"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["dispatch"] == false));
}

#[tokio::test]
async fn a_pending_sale_goes_to_webhooks_now_and_to_google_when_its_click_arrives() {
    let server = MockServer::start().await;
    mount_google(&server).await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let (app, admin) = app_with_platforms(&server).await;
    assert_eq!(
        app.post_as(&admin, "/v1/destinations", &google_destination())
            .await
            .status(),
        201
    );
    app.add_webhook(&admin, &format!("{}/hook", server.uri()), &["sale"])
        .await;

    let sale = json!({"event": "sale", "clickId": "late-click", "customerExternalId": "u-late",
                      "currency": "EUR", "amount": 49.5, "invoiceId": "inv-late", "mode": "wait"});
    let answer: Value = app.post("/v1/events", &sale).await.json().await.unwrap();
    assert_eq!(answer["attribution"]["status"], "pending", "{answer:#}");
    let id = answer["id"].as_str().unwrap().to_owned();
    let event = event_until(&app, &id, |e| e["dispatches"][0]["status"] == "succeeded").await;
    assert_eq!(event["dispatches"].as_array().unwrap().len(), 1);
    assert_eq!(event["dispatches"][0]["type"], "webhook");

    let click = json!({"clickId": "late-click", "gclid": "late-gclid"});
    assert_eq!(app.post("/v1/clicks", &click).await.status(), 201);
    let event = event_until(&app, &id, |e| {
        e["attribution"]["status"] == "matched"
            && e["dispatches"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["type"] == "google_ads" && d["status"] == "succeeded")
    })
    .await;
    assert_eq!(event["attribution"]["matchedBy"], "clickId");
    // The webhook had it while pending, and is not sent it twice.
    let hooks = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/hook")
        .count();
    assert_eq!(hooks, 1);
}

#[tokio::test]
async fn operators_see_a_failed_dispatch_with_its_attempts_and_retry_it() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .mount(&server)
        .await;
    let (app, admin) = app_with_platforms(&server).await;
    app.add_webhook(&admin, &format!("{}/hook", server.uri()), &["sale"])
        .await;
    let answer: Value = app
        .post("/v1/events", &seed_sale())
        .await
        .json()
        .await
        .unwrap();
    let id = answer["id"].as_str().unwrap().to_owned();
    let event = event_until(&app, &id, |e| e["dispatches"][0]["status"] == "failed").await;
    let dispatch = event["dispatches"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(event["dispatches"][0]["attempts"], 3);

    let detail: Value = app
        .get(&format!("/v1/dispatches/{dispatch}"))
        .await
        .json()
        .await
        .unwrap();
    let attempts = detail["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    assert_eq!(attempts[0]["httpStatus"], 500);
    assert!(attempts[0]["responseExcerpt"]
        .as_str()
        .unwrap()
        .contains("boom"));

    let page: Value = app
        .get("/v1/dispatches?status=failed")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    let stats: Value = app.get("/v1/dispatches/stats").await.json().await.unwrap();
    assert!(stats.to_string().contains("failed"), "{stats}");
    let res = app.get("/v1/dispatches?status=lost").await;
    assert_eq!(res.status(), 422);

    // Retrying needs admin.
    let retry = format!("/v1/dispatches/{dispatch}/retry");
    assert_eq!(app.post(&retry, &json!({})).await.status(), 403);
    server.reset().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let res = app.post_as(&admin, &retry, &json!({})).await;
    assert_eq!(res.status(), 200);
    event_until(&app, &id, |e| e["dispatches"][0]["status"] == "succeeded").await;
}

#[tokio::test]
async fn a_retracted_sale_records_not_supported_where_google_cannot_retract() {
    let server = MockServer::start().await;
    mount_google(&server).await;
    let (app, admin) = app_with_platforms(&server).await;
    assert_eq!(
        app.post_as(&admin, "/v1/destinations", &google_destination())
            .await
            .status(),
        201
    );
    let mut sale = seed_sale();
    sale["gclid"] = json!("direct-gclid");
    sale["timestamp"] = json!(days_ago(1));
    let answer: Value = app.post("/v1/events", &sale).await.json().await.unwrap();
    let id = answer["id"].as_str().unwrap().to_owned();
    event_until(&app, &id, |e| e["dispatches"][0]["status"] == "succeeded").await;

    let retract = format!("/v1/events/{id}/retract");
    let first: Value = app
        .post(&retract, &json!({"reason": "refund"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["reason"], "refund");
    assert!(first["retractedAt"].is_string());
    let again: Value = app
        .post(&retract, &json!({"reason": "other"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        again["retractedAt"], first["retractedAt"],
        "retracting is idempotent"
    );
    assert_eq!(again["reason"], "refund");
    let event: Value = app
        .get(&format!("/v1/events/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(event["retractedAt"], first["retractedAt"]);
    assert!(event.to_string().contains("not_supported"), "{event:#}");
    let res = app.post(&retract, &json!({"colour": "red"})).await;
    assert_eq!(res.status(), 422);
    let res = app.post("/v1/events/evt_0000/retract", &json!({})).await;
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn destinations_that_cannot_work_are_refused_at_creation() {
    let server = MockServer::start().await;
    let (app, admin) = app_with_platforms(&server).await;
    let bad = json!({"type": "google_ads", "name": "G", "events": ["sale"],
                     "config": {"customerId": "12-34", "conversionActions": {}},
                     "credentials": {"clientId": "x"}});
    let res = app.post_as(&admin, "/v1/destinations", &bad).await;
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.unwrap();
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"config.customerId"), "{fields:?}");
    assert!(
        fields
            .iter()
            .any(|f| f.starts_with("config.conversionActions")),
        "{fields:?}"
    );
    assert!(
        fields.iter().any(|f| f.starts_with("credentials.")),
        "{fields:?}"
    );
    let hook = json!({"type": "webhook", "name": "W", "events": ["sale"],
                      "config": {"url": "http://crm.example.com/hook"},
                      "credentials": {"secret": "whsec_0123456789abcdef"}});
    assert_eq!(
        app.post_as(&admin, "/v1/destinations", &hook)
            .await
            .status(),
        422
    );
    // Ingest keys cannot manage destinations.
    assert_eq!(app.post("/v1/destinations", &hook).await.status(), 403);
    assert_eq!(app.get("/v1/destinations").await.status(), 403);
}

#[tokio::test]
async fn the_conversion_report_counts_revenue_by_channel() {
    let server = MockServer::start().await;
    let (app, _admin) = app_with_platforms(&server).await;
    let clicks = json!({"clicks": [
        {"clickId": "c-google", "gclid": "g-1", "timestamp": "2026-04-01T10:00:00.000Z",
         "utm": {"source": "google", "medium": "cpc", "campaign": "spring"}},
        {"clickId": "c-meta", "fbclid": "f-1", "timestamp": "2026-04-01T10:00:00.000Z",
         "utm": {"source": "facebook", "medium": "paid_social", "campaign": "spring"}}
    ]});
    let res = app.post("/v1/clicks/batch", &clicks).await;
    assert_eq!(res.status(), 200);
    let at = "2026-04-02T10:00:00.000Z";
    let events = json!({"events": [
        {"event": "lead", "timestamp": at, "clickId": "c-google", "customerExternalId": "a"},
        {"event": "lead", "timestamp": at, "clickId": "c-google", "customerExternalId": "b"},
        {"event": "sale", "timestamp": at, "customerExternalId": "a", "invoiceId": "r-1",
         "currency": "USD", "amount": 100.5},
        {"event": "sale", "timestamp": at, "clickId": "c-meta", "customerExternalId": "c",
         "invoiceId": "r-2", "currency": "EUR", "amount": 20},
        {"event": "sale", "timestamp": at, "clickId": "c-meta", "customerExternalId": "d",
         "invoiceId": "r-3", "currency": "EUR", "amount": 5},
        {"event": "lead", "timestamp": at, "clickId": "c-meta", "customerExternalId": "e",
         "mode": "deferred"}
    ]});
    let answer: Value = app
        .post("/v1/events/batch", &events)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["accepted"], 6, "{answer:#}");
    let r3 = answer["results"][4]["id"].as_str().unwrap().to_owned();
    for result in answer["results"].as_array().unwrap() {
        let id = result["id"].as_str().unwrap();
        event_until(&app, id, |e| !e["attribution"].is_null()).await;
    }
    // The report stage credits behind the matcher: every conversion but the deferred lead.
    for result in &answer["results"].as_array().unwrap()[..5] {
        let id = result["id"].as_str().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let credit: Value = app
                .get(&format!("/v1/events/{id}/credit"))
                .await
                .json()
                .await
                .unwrap();
            if credit["credited"] == true {
                break;
            }
            assert!(Instant::now() < deadline, "never credited: {credit:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let res = app
        .post(
            &format!("/v1/events/{r3}/retract"),
            &json!({"reason": "refund"}),
        )
        .await;
    assert_eq!(res.status(), 200);

    let report: Value = app
        .get("/v1/reports/conversions?from=2026-04-01T00:00:00Z&to=2026-05-01T00:00:00Z&groupBy=channel")
        .await
        .json()
        .await
        .unwrap();
    let rows = report["data"].as_array().unwrap();
    let row = |key: &str| {
        rows.iter()
            .find(|r| r["key"] == key)
            .cloned()
            .unwrap_or_default()
    };
    let google = row("google_ads");
    assert_eq!(
        (google["leads"].clone(), google["sales"].clone()),
        (json!(2), json!(1)),
        "{report:#}"
    );
    assert_eq!(google["revenue"]["USD"].to_string(), "100.5");
    assert_eq!(google["conversionRate"], 0.5);
    assert_eq!(google["medianTimeToConversionSeconds"], 86400);
    let meta = row("meta");
    // The retracted sale and the deferred lead do not count.
    assert_eq!(
        (meta["leads"].clone(), meta["sales"].clone()),
        (json!(0), json!(1)),
        "{report:#}"
    );
    assert_eq!(meta["revenue"]["EUR"].to_string(), "20");
    assert_eq!(meta["conversionRate"], Value::Null);

    let res = app
        .get("/v1/reports/conversions?from=2026-05-01T00:00:00Z&to=2026-04-01T00:00:00Z&groupBy=colour")
        .await;
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_retried_destination_create_with_its_idempotency_key_makes_one_destination() {
    let server = MockServer::start().await;
    let (app, admin) = app_with_platforms(&server).await;
    let hook = json!({"type": "webhook", "name": "CRM", "events": ["sale"],
                      "config": {"url": format!("{}/hook", server.uri())},
                      "credentials": {"secret": "whsec_0123456789abcdef"}});
    let body = serde_json::to_vec(&hook).unwrap();
    let first = app
        .post_raw("/v1/destinations", &admin, body.clone(), Some("dst-1"))
        .await;
    assert_eq!(first.status(), 201);
    let first = first.bytes().await.unwrap();
    let again = app
        .post_raw("/v1/destinations", &admin, body, Some("dst-1"))
        .await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.bytes().await.unwrap(), first);
    let page: Value = app
        .get_as(&admin, "/v1/destinations")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 1);

    let mut nul = hook.clone();
    nul["name"] = json!("C\u{0}RM");
    let res = app.post_as(&admin, "/v1/destinations", &nul).await;
    assert_eq!(res.status(), 422);
}

/// The Google Ads API fake: uploads succeed; adjustments must be RESTATEMENTs by order id with
/// the new total, or they are refused.
async fn mount_google_ads_api(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "ya29.test-token", "expires_in": 3599, "token_type": "Bearer"
        })))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v26/customers/1234567890:uploadClickConversions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": [{}]})))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(
            "/v26/customers/1234567890:uploadConversionAdjustments",
        ))
        .respond_with(|request: &wiremock::Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
            let items = body["conversionAdjustments"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let well_formed = body["partialFailure"] == true
                && !items.is_empty()
                && items.iter().all(|item| {
                    item["adjustmentType"] == "RESTATEMENT"
                        && item["orderId"].is_string()
                        && item.get("gclidDateTimePair").is_none()
                        && item["restatementValue"]["adjustedValue"].is_number()
                        && item["restatementValue"]["currencyCode"].is_string()
                        && item["adjustmentDateTime"].is_string()
                });
            if well_formed {
                ResponseTemplate::new(200).set_body_json(json!({"results": [{}]}))
            } else {
                ResponseTemplate::new(400).set_body_json(json!({"error": {"code": 400,
                    "status": "INVALID_ARGUMENT", "message": "malformed adjustment"}}))
            }
        })
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_restated_sale_keeps_its_value_history_reaches_google_and_counts_at_its_new_value() {
    let server = MockServer::start().await;
    mount_google_ads_api(&server).await;
    let (app, admin) = app_with_platforms(&server).await;
    let mut destination = google_destination();
    destination["config"]["api"] = json!("google_ads_api");
    assert_eq!(
        app.post_as(&admin, "/v1/destinations", &destination)
            .await
            .status(),
        201
    );
    let mut sale = seed_sale();
    sale["gclid"] = json!("direct-gclid");
    let at = days_ago(2);
    sale["timestamp"] = json!(at);
    let answer: Value = app.post("/v1/events", &sale).await.json().await.unwrap();
    let id = answer["id"].as_str().unwrap().to_owned();
    event_until(&app, &id, |e| e["dispatches"][0]["status"] == "succeeded").await;

    let restate = format!("/v1/events/{id}/restate");
    let res = app
        .post(
            &restate,
            &json!({"amount": 150.0, "reason": "partial refund"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let first: Value = res.json().await.unwrap();
    assert_eq!(first["changed"], true);
    assert_eq!(first["revision"], 1);
    assert_eq!(first["amount"], 150.0);
    assert_eq!(first["currency"], "USD");
    let history = first["valueHistory"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        (history[0]["amount"].as_f64(), history[0]["reason"].clone()),
        (Some(199.0), Value::Null)
    );
    assert_eq!(history[1]["reason"], "partial refund");
    assert_eq!(first["queued"], 1);

    let event = event_until(&app, &id, |e| {
        e["dispatches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["kind"] == "restatement" && d["status"] == "succeeded")
    })
    .await;
    assert_eq!(event["valueHistory"].as_array().unwrap().len(), 2);
    let adjustments: Vec<Value> = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().ends_with(":uploadConversionAdjustments"))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(adjustments.len(), 1);
    let item = &adjustments[0]["conversionAdjustments"][0];
    assert_eq!(item["orderId"], "inv_987");
    assert_eq!(item["restatementValue"]["adjustedValue"], 150.0);
    assert_eq!(item["restatementValue"]["currencyCode"], "USD");

    // The same amount again changes nothing.
    let again: Value = app
        .post(&restate, &json!({"amount": 150}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (again["changed"].clone(), again["revision"].clone()),
        (json!(false), json!(1))
    );
    assert_eq!(again["restatements"].as_array().unwrap().len(), 1);

    // Reports count the latest value.
    // Reports take whole UTC days.
    let from = (time::OffsetDateTime::now_utc() - time::Duration::days(30)).date();
    let to = (time::OffsetDateTime::now_utc() + time::Duration::days(1)).date();
    let report: Value = app
        .get(&format!("/v1/reports/conversions?from={from}&to={to}"))
        .await
        .json()
        .await
        .unwrap();
    let revenue: f64 = report["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|row| row["revenue"]["USD"].as_f64())
        .sum();
    assert_eq!(revenue, 150.0, "{report:#}");

    // Every bad field at once; another workspace's event is not found; a retracted one conflicts.
    let res = app
        .post(
            &restate,
            &json!({"amount": -1, "currency": "EURO", "colour": "red"}),
        )
        .await;
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.unwrap();
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["amount", "colour", "currency"]);
    let res = app
        .post(&restate, &json!({"amount": 10, "currency": "EUR"}))
        .await;
    assert_eq!(
        res.status(),
        409,
        "a restatement keeps the event's currency"
    );
    let other = create_key(&app.db, "other", &[Scope::Ingest, Scope::Read]).await;
    let res = app.post_as(&other, &restate, &json!({"amount": 10})).await;
    assert_eq!(res.status(), 404);
    let reader = create_key(&app.db, "acme", &[Scope::Read]).await;
    let res = app.post_as(&reader, &restate, &json!({"amount": 10})).await;
    assert_eq!(res.status(), 403);
    app.post(
        &format!("/v1/events/{id}/retract"),
        &json!({"reason": "refund"}),
    )
    .await;
    let res = app.post(&restate, &json!({"amount": 10})).await;
    assert_eq!(res.status(), 409);
}

#[tokio::test]
async fn a_backfill_sends_a_new_destination_its_history_once_behind_live_traffic() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let (app, admin) = app_with_platforms(&server).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let mut sale = common::sale(&format!("inv-backfill-{n}"));
        sale["timestamp"] = json!(days_ago(1));
        let answer: Value = app.post("/v1/events", &sale).await.json().await.unwrap();
        ids.push(answer["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        event_until(&app, id, |e| !e["attribution"].is_null()).await;
    }
    // One sale was partly refunded before the destination existed: it is backfilled at its
    // latest value.
    let res = app
        .post(
            &format!("/v1/events/{}/restate", ids[0]),
            &json!({"amount": 150, "reason": "partial refund"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let hook = json!({"type": "webhook", "name": "CRM", "events": ["sale"],
                      "config": {"url": format!("{}/hook", server.uri())},
                      "credentials": {"secret": "whsec_backfill_0123456789abcdef"}});
    let created: Value = app
        .post_as(&admin, "/v1/destinations", &hook)
        .await
        .json()
        .await
        .unwrap();
    let destination = created["id"].as_str().unwrap().to_owned();
    let backfill = format!("/v1/destinations/{destination}/backfill");
    // The catalog maps sales to an event name of the receiver's: backfilled dispatches carry it
    // as live ones do.
    let definition = json!({"kind": "sale", "tier": "macro", "destinations": {
        destination.as_str(): {"enabled": true, "eventName": "order_completed"}}});
    let res = app
        .http
        .put(app.url("/v1/conversion-events/sale"))
        .bearer_auth(&admin)
        .json(&definition)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{:?}", res.text().await);

    let res = app.post_as(&admin, &backfill, &json!({})).await;
    assert_eq!(res.status(), 202);
    let started: Value = res.json().await.unwrap();
    assert_eq!(started["status"], "running");
    // The walk's length is known from the start: the workspace's three sales.
    assert_eq!(
        (&started["total"], &started["considered"]),
        (&json!(3), &json!(0))
    );
    let done = backfill_done(&app, &admin, &backfill).await;
    assert_eq!(
        (done["queued"].as_i64(), done["skipped"].as_i64()),
        (Some(3), Some(0)),
        "{done}"
    );
    assert_eq!(done["done"], 3);
    assert_eq!(
        (&done["total"], &done["considered"]),
        (&json!(3), &json!(3))
    );
    for id in &ids {
        event_until(&app, id, |e| {
            e["dispatches"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["destination"] == destination.as_str() && d["status"] == "succeeded")
        })
        .await;
    }
    let client = app.db.client().await;
    let amounts: Vec<(String, f64)> = client
        .query(
            "SELECT p.payload #>> '{event,invoiceId}', (p.payload #>> '{event,amount}')::float8
             FROM dispatch_payloads p JOIN dispatches d
               ON d.workspace_id = p.workspace_id AND d.id = p.dispatch_id
             WHERE d.destination_type = 'webhook' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        amounts,
        [
            ("inv-backfill-0".to_owned(), 150.0),
            ("inv-backfill-1".to_owned(), 199.0),
            ("inv-backfill-2".to_owned(), 199.0)
        ]
    );

    // Again: nothing twice.
    assert_eq!(
        app.post_as(&admin, &backfill, &json!({})).await.status(),
        202
    );
    let again = backfill_done(&app, &admin, &backfill).await;
    assert_eq!(
        (again["queued"].as_i64(), again["skipped"].as_i64()),
        (Some(0), Some(3)),
        "{again}"
    );
    let hook_calls: Vec<Value> = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/hook")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(hook_calls.len(), 3);
    for body in &hook_calls {
        assert_eq!(body["mapping"]["eventName"], "order_completed", "{body:#}");
    }

    // Bad input, scopes, other workspaces.
    let res = app
        .post_as(
            &admin,
            &backfill,
            &json!({"since": "yesterday", "until": "now"}),
        )
        .await;
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2);
    assert_eq!(app.post(&backfill, &json!({})).await.status(), 403);
    let other = create_key(&app.db, "other", &[Scope::Admin]).await;
    assert_eq!(
        app.post_as(&other, &backfill, &json!({})).await.status(),
        404
    );
    assert_eq!(app.get_as(&other, &backfill).await.status(), 404);
}

/// Polls a backfill's progress until it is done, with a deadline.
async fn backfill_done(app: &TestApp, admin: &str, backfill: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let view: Value = app.get_as(admin, backfill).await.json().await.unwrap();
        if view["status"] == "done" {
            return view;
        }
        assert!(Instant::now() < deadline, "backfill never finished: {view}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A retraction holds the workspace as an attribution step does. One that arrives while a step
/// holds it (the step may have read the event before it was retracted) waits until the step has
/// committed, so that it finds, and cancels, the dispatches the step queued.
#[tokio::test]
async fn a_retraction_waits_for_the_attribution_step_that_holds_the_workspace() {
    let app = TestApp::spawn_without_workers(common::test_db().await).await;
    let answer: Value = app
        .post("/v1/events", &seed_lead())
        .await
        .json()
        .await
        .unwrap();
    let id = answer["id"].as_str().unwrap().to_owned();
    let pool = app.db.pool(2);
    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let workspace_id: uuid::Uuid = tx
        .query_one("SELECT workspace_id FROM events", &[])
        .await
        .unwrap()
        .get(0);
    attribution_matcher::erase::lock_graph(&tx, workspace_id)
        .await
        .unwrap();
    let path = format!("/v1/events/{id}/retract");
    let reason = json!({"reason": "refund"});
    let retract = app.post(&path, &reason);
    tokio::pin!(retract);
    let early = tokio::time::timeout(Duration::from_millis(500), &mut retract).await;
    assert!(early.is_err(), "the retraction did not wait for the step");
    tx.commit().await.unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), retract)
        .await
        .expect("the retraction went on once the step committed");
    assert_eq!(res.status(), 200);
}

/// A sale restated before the matcher decided it: its conversion goes out at the new value, and
/// no restatement follows it (there was nothing sent to adjust).
#[tokio::test]
async fn a_sale_restated_before_it_is_decided_is_sent_at_its_new_value() {
    let app = TestApp::spawn_without_workers(common::test_db().await).await;
    let admin = create_key(&app.db, "acme", &[Scope::Admin]).await;
    app.add_webhook(&admin, "http://127.0.0.1:9/hook", &["sale"])
        .await;
    let mut sale = seed_sale();
    sale["amount"] = json!(100);
    let answer: Value = app.post("/v1/events", &sale).await.json().await.unwrap();
    let id = answer["id"].as_str().unwrap().to_owned();
    let res = app
        .post(
            &format!("/v1/events/{id}/restate"),
            &json!({"amount": 70, "reason": "partial refund"}),
        )
        .await;
    assert_eq!(res.status(), 200);

    let pool = app.db.pool(4);
    let report = pipeline::match_step_sized(
        &pool,
        &attribution_matcher::MatchSettings::default(),
        100,
        &mut attribution_matcher::CarriedClicks::default(),
        &attribution_matcher::GraphCache::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.dispatches, 1);
    let event_id: uuid::Uuid = id.trim_start_matches("evt_").parse().unwrap();
    let client = pool.get().await.unwrap();
    let rows = client
        .query(
            "SELECT d.kind, p.payload FROM dispatches d
             JOIN dispatch_payloads p ON p.workspace_id = d.workspace_id AND p.dispatch_id = d.id
             WHERE d.event_id = $1",
            &[&event_id],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "the conversion, and no restatement");
    let (kind, payload): (String, Value) = (rows[0].get(0), rows[0].get(1));
    assert_eq!(kind, "conversion");
    assert_eq!(payload["event"]["amount"], 70, "{payload}");
    assert_eq!(payload["event"]["currency"], "USD");
}
