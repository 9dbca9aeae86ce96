//! The edges of the HTTP surface every route shares: bodies that repeat a key.
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
