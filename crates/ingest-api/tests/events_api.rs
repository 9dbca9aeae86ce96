//! The events API through HTTP, against the real service and a real PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use common::{create_key, sale, seed_lead, seed_sale, TestApp};
use ingest_api::keys::Scope;
use serde_json::{json, Value};

#[tokio::test]
async fn the_seed_lead_and_sale_are_accepted_and_read_back_normalised() {
    let app = TestApp::spawn().await;
    for (body, kind) in [(seed_lead(), "lead"), (seed_sale(), "sale")] {
        let res = app.post("/v1/events", &body).await;
        assert_eq!(res.status(), 202);
        assert!(res.headers().contains_key("x-request-id"));
        let answer: Value = res.json().await.unwrap();
        assert_eq!(answer["event"], kind);
        assert_eq!(answer["status"], "accepted");
        assert_eq!(answer["duplicate"], false);
        let id = answer["id"].as_str().unwrap();
        assert!(id.starts_with("evt_"), "{id}");
        let received = answer["receivedAt"].as_str().unwrap();
        assert!(
            received.ends_with('Z') && received.len() == 24,
            "{received}"
        );

        let stored: Value = app
            .get(&format!("/v1/events/{id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(stored["id"], id);
        assert_eq!(stored["receivedAt"], received);
        assert_eq!(stored["event"], kind);
        assert_eq!(stored["customerExternalId"], "user_123");
    }
    let sale: Value = app.get("/v1/events?event=sale").await.json().await.unwrap();
    let sale = &sale["data"][0];
    assert_eq!(sale["amount"].to_string(), "199.0");
    assert_eq!(sale["currency"], "USD");
    assert_eq!(sale["invoiceId"], "inv_987");
    assert_eq!(sale["timestamp"], "2026-04-10T12:45:10.000Z");
    assert_eq!(app.count("events").await, 2);
}

#[tokio::test]
async fn emails_phones_and_currencies_are_stored_normalised() {
    let app = TestApp::spawn().await;
    let body = json!({"event": "sale", "email": "  Alex@Example.COM ", "phone": "+1 (415) 555-0123",
                      "currency": "eur", "amount": 10.5, "invoiceId": "inv-n"});
    let res = app.post("/v1/events", &body).await;
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stored: Value = app
        .get(&format!("/v1/events/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["email"], "alex@example.com");
    assert_eq!(stored["phone"], "+14155550123");
    assert_eq!(stored["currency"], "EUR");
    assert_eq!(stored["amount"].to_string(), "10.5");
    let client = app.db.client().await;
    let row = client
        .query_one("SELECT amount::text, currency FROM events", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "10.5");
    assert_eq!(row.get::<_, String>(1), "EUR");
}

#[tokio::test]
async fn every_bad_field_is_listed_in_one_problem_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let body = json!({"event": "sale", "amount": -1, "currency": "XXY", "email": "not-an-email",
                      "phone": "12", "timestamp": "yesterday", "colour": "red"});
    let res = app.post("/v1/events", &body).await;
    assert_eq!(res.status(), 422);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["type"], "https://convrelay.dev/problems/validation");
    assert_eq!(problem["status"], 422);
    assert!(problem["requestId"].as_str().unwrap().starts_with("req_"));
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "amount",
            "colour",
            "currency",
            "email",
            "phone",
            "timestamp"
        ]
    );
    for e in problem["errors"].as_array().unwrap() {
        assert!(!e["code"].as_str().unwrap().is_empty());
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(app.count("events").await, 0);
}

#[tokio::test]
async fn bodies_that_are_not_json_objects_get_400_415_or_413() {
    let app = TestApp::spawn().await;
    let res = app
        .post_raw("/v1/events", &app.key, b"{\"event\": ".to_vec(), None)
        .await;
    assert_eq!(res.status(), 400);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "https://convrelay.dev/problems/bad-request"
    );

    let res = app
        .post_raw("/v1/events", &app.key, b"[1, 2]".to_vec(), None)
        .await;
    assert_eq!(res.status(), 400);

    let res = app
        .http
        .post(app.url("/v1/events"))
        .bearer_auth(&app.key)
        .header("Content-Type", "text/plain")
        .body(serde_json::to_vec(&seed_sale()).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);

    let mut big = seed_sale();
    big["metadata"] = json!({"blob": "x".repeat(1024 * 1024)});
    let res = app.post("/v1/events", &big).await;
    assert_eq!(res.status(), 413);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "https://convrelay.dev/problems/payload-too-large"
    );
    assert_eq!(app.count("events").await, 0);
}

#[tokio::test]
async fn keys_are_checked_for_existence_scope_and_workspace() {
    let app = TestApp::spawn().await;
    let res = app
        .http
        .post(app.url("/v1/events"))
        .json(&seed_sale())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .post_raw("/v1/events", "cr_unknownkey12_abc", b"{}".to_vec(), None)
        .await;
    assert_eq!(res.status(), 401);
    let forged = format!("{}x", app.key);
    let res = app
        .post_raw("/v1/events", &forged, b"{}".to_vec(), None)
        .await;
    assert_eq!(res.status(), 401);

    let read_only = create_key(&app.db, "acme", &[Scope::Read]).await;
    let res = app
        .post_raw(
            "/v1/events",
            &read_only,
            serde_json::to_vec(&seed_sale()).unwrap(),
            None,
        )
        .await;
    assert_eq!(res.status(), 403);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["type"], "https://convrelay.dev/problems/forbidden");

    let res = app.post("/v1/events", &seed_sale()).await;
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = create_key(&app.db, "globex", &[Scope::Ingest, Scope::Read]).await;
    let res = app
        .http
        .get(app.url(&format!("/v1/events/{id}")))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let page: Value = app
        .http
        .get(app.url("/v1/events"))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"], json!([]));
    // The same invoiceId in another workspace is another event.
    let res = app
        .post_raw(
            "/v1/events",
            &other,
            serde_json::to_vec(&seed_sale()).unwrap(),
            None,
        )
        .await;
    assert_eq!(res.status(), 202);
    assert_ne!(res.json::<Value>().await.unwrap()["id"], id);
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_problems() {
    let app = TestApp::spawn().await;
    let res = app.get("/v1/nothing-here").await;
    assert_eq!(res.status(), 404);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let res = app.get("/v1/events/evt_not-an-id").await;
    assert_eq!(res.status(), 404);
    let res = app
        .http
        .delete(app.url("/v1/events"))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
}

#[tokio::test]
async fn a_batch_stores_its_valid_items_and_lists_the_rest() {
    let app = TestApp::spawn().await;
    let body = json!({"events": [
        sale("inv-1"),
        {"event": "sale", "currency": "USD"},
        seed_lead(),
        sale("inv-1"),
    ]});
    let res = app.post("/v1/events/batch", &body).await;
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["accepted"], 2);
    assert_eq!(answer["duplicates"], 1);
    assert_eq!(answer["rejected"], 1);
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["index"], i);
    }
    assert_eq!(results[0]["status"], "accepted");
    assert_eq!(results[1]["status"], "rejected");
    assert!(!results[1]["errors"].as_array().unwrap().is_empty());
    assert_eq!(results[3]["duplicate"], true);
    assert_eq!(results[3]["id"], results[0]["id"]);
    assert_eq!(app.count("events").await, 2);

    let res = app.post("/v1/events/batch", &json!({"events": []})).await;
    assert_eq!(res.status(), 422);
    let res = app.post("/v1/events/batch", &json!({"items": []})).await;
    assert_eq!(res.status(), 422);
    let too_many: Vec<Value> = (0..1001).map(|i| sale(&format!("b-{i}"))).collect();
    let res = app
        .post("/v1/events/batch", &json!({"events": too_many}))
        .await;
    assert_eq!(res.status(), 422);
}

#[tokio::test]
async fn a_batch_with_nothing_valid_still_answers_200() {
    let app = TestApp::spawn().await;
    let body = json!({"events": [{"event": "refund"}, 42]});
    let res = app.post("/v1/events/batch", &body).await;
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["accepted"], 0);
    assert_eq!(answer["rejected"], 2);
    assert_eq!(app.count("events").await, 0);
}

#[tokio::test]
async fn the_event_list_filters_and_pages_newest_first() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut body = sale(&format!("inv-{i}"));
        body["customerExternalId"] = json!(if i % 2 == 0 { "even" } else { "odd" });
        let answer: Value = app.post("/v1/events", &body).await.json().await.unwrap();
        ids.push(answer["id"].as_str().unwrap().to_owned());
    }
    app.post("/v1/events", &seed_lead()).await;

    let page: Value = app
        .get("/v1/events?event=sale&limit=2")
        .await
        .json()
        .await
        .unwrap();
    let got: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[4].as_str(), ids[3].as_str()]);
    let cursor = page["nextCursor"].as_str().unwrap();
    let page: Value = app
        .get(&format!("/v1/events?event=sale&limit=2&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"][0]["id"], ids[2].as_str());
    let page: Value = app
        .get("/v1/events?customerExternalId=even&limit=100")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 3);
    assert_eq!(page["nextCursor"], Value::Null);
    let page: Value = app
        .get("/v1/events?invoiceId=inv-3")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["data"][0]["id"], ids[3].as_str());
    let page: Value = app
        .get("/v1/events?since=2999-01-01T00:00:00Z")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"], json!([]));

    let res = app.get("/v1/events?limit=1000&event=x").await;
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn health_and_readiness_need_no_key() {
    let app = TestApp::spawn().await;
    let res = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_callers_request_id_is_kept_and_echoed() {
    let app = TestApp::spawn().await;
    let res = app
        .http
        .get(app.url("/v1/events/evt_x"))
        .bearer_auth(&app.key)
        .header("X-Request-Id", "trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-42");
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["requestId"], "trace-42");
}

#[tokio::test]
async fn a_key_past_its_rate_limit_gets_429_with_retry_after() {
    let db = common::test_db().await;
    let app = TestApp::spawn_with(db, |url| {
        let url = url.to_owned();
        ingest_api::Settings::from_lookup(move |name| match name {
            "DATABASE_URL" => Some(url.clone()),
            "CONVRELAY_LISTEN" => Some("127.0.0.1:0".into()),
            "CONVRELAY_RATE_LIMIT" => Some("2".into()),
            _ => None,
        })
        .unwrap()
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let res = app.get("/v1/events").await;
        if res.status() == 429 {
            assert!(res.headers().contains_key("retry-after"));
        }
        statuses.push(res.status().as_u16());
    }
    assert!(
        statuses.contains(&200) && statuses.contains(&429),
        "{statuses:?}"
    );
    // Another key is not affected.
    let other = create_key(&app.db, "acme", &[Scope::Read]).await;
    let res = app
        .http
        .get(app.url("/v1/events"))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn metrics_count_events_requests_and_queues() {
    let app = TestApp::spawn().await;
    assert_eq!(app.post("/v1/events", &seed_sale()).await.status(), 202);
    assert_eq!(app.post("/v1/events", &seed_sale()).await.status(), 200);
    assert_eq!(
        app.post("/v1/events", &json!({"event": "sale"}))
            .await
            .status(),
        422
    );
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        r#"convrelay_events_total{kind="sale",outcome="accepted"} 1"#,
        r#"convrelay_events_total{kind="sale",outcome="duplicate"} 1"#,
        r#"convrelay_events_total{kind="sale",outcome="rejected"} 1"#,
        "convrelay_http_request_duration_seconds_bucket",
        r#"route="/v1/events""#,
        "convrelay_db_pool_connections",
        "convrelay_dispatch_queue_depth",
        "convrelay_matcher_queue_depth",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

#[tokio::test]
async fn nul_characters_are_422_not_500_and_405_names_the_allowed_methods() {
    let app = TestApp::spawn().await;
    let mut body = seed_sale();
    body["invoiceId"] = json!("inv\u{0}1");
    let res = app.post("/v1/events", &body).await;
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["errors"][0]["code"], "invalid_characters");
    let res = app.get("/v1/events?customerExternalId=a%00b").await;
    assert_eq!(res.status(), 422);
    let res = app.get("/v1/clicks/a%00b").await;
    assert_eq!(res.status(), 404);
    let res = app
        .http
        .put(app.url("/v1/events"))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET, HEAD, POST");
    let res = app.http.post(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET, HEAD");
}
