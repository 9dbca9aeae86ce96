//! The edges of the HTTP surface every route shares: bodies that repeat a key, and HEAD.
#![allow(clippy::unwrap_used)]

mod common;

use common::{create_key, TestApp};
use ingest_api::keys::Scope;
use reqwest::Method;
use serde_json::Value;

const SALE: &str =
    r#""event": "sale", "invoiceId": "inv-1", "customerExternalId": "u1", "currency": "USD""#;

async fn send(app: &TestApp, key: &str, method: Method, path: &str, body: &str) -> (u16, Value) {
    let res = app
        .http
        .request(method, app.url(path))
        .bearer_auth(key)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", "same-key")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_body_that_repeats_a_key_is_a_400_naming_each_repeated_key_by_path() {
    let app = TestApp::spawn().await;
    let key = create_key(&app.db, "acme", &[Scope::Ingest, Scope::Read, Scope::Admin]).await;
    let event_id = "evt_01a212182d597119a4ae9fb62e539a02";
    let destination_id = "dst_01a212181801751aaa47e0cea626ad8c";
    let cases: Vec<(Method, String, String, Vec<&str>)> = vec![
        (
            Method::POST,
            "/v1/events".into(),
            format!(r#"{{{SALE}, "amount": 1, "amount": 2}}"#),
            vec!["amount"],
        ),
        (
            Method::POST,
            "/v1/events".into(),
            format!(
                r#"{{{SALE}, "amount": 1, "products": [{{"id": "p", "price": 1, "price": 1}}], "utm": {{"source": "a", "source": "a"}}}}"#
            ),
            vec!["products[0].price", "utm.source"],
        ),
        (
            Method::POST,
            "/v1/events/batch".into(),
            format!(
                r#"{{"events": [{{{SALE}, "amount": 1}}, {{{SALE}, "amount": 1, "email": "a@example.com", "email": "b@example.com"}}]}}"#
            ),
            vec!["events[1].email"],
        ),
        (
            Method::POST,
            "/v1/events/batch".into(),
            format!(r#"{{"events": [{{{SALE}, "amount": 1}}], "events": []}}"#),
            vec!["events"],
        ),
        (
            Method::POST,
            "/v1/clicks".into(),
            r#"{"clickId": "c1", "gclid": "g1", "gclid": "g2"}"#.into(),
            vec!["gclid"],
        ),
        (
            Method::POST,
            "/v1/clicks/batch".into(),
            r#"{"clicks": [{"clickId": "c1"}, {"clickId": "c2", "clickId": "c3"}]}"#.into(),
            vec!["clicks[1].clickId"],
        ),
        (
            Method::POST,
            "/v1/destinations".into(),
            r#"{"type": "webhook", "name": "a", "events": ["sale"],
                "config": {"url": "https://hooks.example.com/in"},
                "credentials": {"secret": "0123456789abcdef", "secret": "fedcba9876543210"}}"#
                .into(),
            vec!["credentials.secret"],
        ),
        (
            Method::PATCH,
            format!("/v1/destinations/{destination_id}"),
            r#"{"enabled": false, "enabled": true}"#.into(),
            vec!["enabled"],
        ),
        (
            Method::POST,
            format!("/v1/events/{event_id}/retract"),
            r#"{"reason": "refund", "reason": "mistake"}"#.into(),
            vec!["reason"],
        ),
        (
            Method::POST,
            "/v1/dispatches/retry".into(),
            r#"{"status": "failed", "status": "skipped"}"#.into(),
            vec!["status"],
        ),
    ];
    for (method, path, body, fields) in cases {
        let what = format!("{method} {path} {body}");
        let (status, problem) = send(&app, &key, method, &path, &body).await;
        assert_eq!(status, 400, "{what}: {problem}");
        assert_eq!(
            problem["type"], "https://convrelay.dev/problems/bad-request",
            "{what}"
        );
        let named: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(e["code"], "duplicate_key", "{what}");
                e["field"].as_str().unwrap()
            })
            .collect();
        assert_eq!(named, fields, "{what}");
        for field in &fields {
            assert!(
                problem["detail"].as_str().unwrap().contains(field),
                "{what}: {problem}"
            );
        }
    }
    for table in ["events", "clicks", "destinations", "idempotency_keys"] {
        assert_eq!(app.count(table).await, 0, "nothing stored in {table}");
    }

    // The refusal left the Idempotency-Key free: the corrected body is accepted under it.
    let (status, body) = send(
        &app,
        &key,
        Method::POST,
        "/v1/events",
        &format!(r#"{{{SALE}, "amount": 2}}"#),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(app.count("events").await, 1);
}

#[tokio::test]
async fn head_answers_every_get_route_like_get_without_a_body() {
    let app = TestApp::spawn().await;
    let res = app
        .post_raw(
            "/v1/events",
            &app.key,
            format!(r#"{{{SALE}, "amount": 2}}"#).into_bytes(),
            None,
        )
        .await;
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The pipeline settles the sale first (attributed, then credited in reports), so that GET
    // and HEAD see the same state.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
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
        assert!(
            std::time::Instant::now() < deadline,
            "never credited: {credit:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let paths = [
        "/healthz".to_owned(),
        "/readyz".into(),
        "/openapi.yaml".into(),
        "/schemas/sale.json".into(),
        "/docs".into(),
        "/docs/assets/redoc.LICENSE".into(),
        "/ui".into(),
        "/v1/events".into(),
        format!("/v1/events/{id}"),
        "/v1/events/evt_01a212182d597119a4ae9fb62e539a02".into(),
        "/v1/events?limit=0".into(),
        "/v1/clicks/nope".into(),
        "/v1/dispatches".into(),
        "/v1/dispatches/stats".into(),
        "/v1/dispatches/dsp_01a212182d6870a5a85edc8c0eb1cdf3".into(),
        "/v1/destinations".into(),
        "/v1/reports/conversions?from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z".into(),
        "/v1/no-such-path".into(),
    ];
    for path in &paths {
        let get = app.get(path).await;
        let (get_status, get_headers) = (get.status(), get.headers().clone());
        let get_body = get.bytes().await.unwrap();
        let head = app
            .http
            .head(app.url(path))
            .bearer_auth(&app.key)
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), get_status, "HEAD {path}");
        for name in [
            "content-type",
            "content-length",
            "allow",
            "www-authenticate",
        ] {
            assert_eq!(
                head.headers().get(name),
                get_headers.get(name),
                "HEAD {path}: {name}"
            );
        }
        if let Some(length) = head.headers().get("content-length") {
            assert_eq!(
                length.to_str().unwrap(),
                get_body.len().to_string(),
                "HEAD {path}"
            );
        }
        assert!(
            head.bytes().await.unwrap().is_empty(),
            "HEAD {path}: a body"
        );
    }

    // The metrics change with every request; their HEAD answers as their GET does all the same.
    let head = app.http.head(app.url("/metrics")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));

    // Without a key, HEAD is refused as GET is; a POST-only route names its methods.
    let head = app.http.head(app.url("/v1/events")).send().await.unwrap();
    assert_eq!(head.status(), 401);
    let head = app
        .http
        .head(app.url("/v1/events/batch"))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 405);
    assert_eq!(head.headers()["allow"], "POST");
    let put = app
        .http
        .put(app.url("/v1/dispatches/stats"))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(put.headers()["allow"], "GET, HEAD");
}
