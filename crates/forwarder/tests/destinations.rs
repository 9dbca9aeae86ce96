//! Destinations on a real PostgreSQL: checked whole, credentials sealed and never shown,
//! workspaces apart.
#![allow(clippy::unwrap_used)]

mod worker_support;

use events::{AttributionStatus, DestinationType};
use forwarder::{Cipher, DispatchStatus, Error};
use serde_json::json;
use uuid::Uuid;
use worker_support::*;

fn fields(error: Error) -> Vec<String> {
    match error {
        Error::Invalid(errors) => errors.into_iter().map(|e| e.field).collect(),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_destination_that_cannot_work_is_refused_with_every_bad_field() {
    let db = test_db().await;
    let pool = pool(&db, 2);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    let body = json!({
        "type": "google_ads", "name": "ads", "events": ["lead", "sale", "refund"],
        "config": {"customerId": "12-34", "loginCustomerId": "abc", "conversionActions": {"sale": "x1"},
                   "api": "rest"},
        "credentials": {"clientId": "", "refreshToken": "r"},
        "color": "red"
    });
    let error = forwarder::create_destination(&client, &cipher(), ws, &body)
        .await
        .unwrap_err();
    assert_eq!(
        fields(error),
        [
            "events[2]",
            "color",
            "config.api",
            "config.customerId",
            "config.loginCustomerId",
            "config.conversionActions.sale",
            "credentials.clientId",
            "credentials.clientSecret",
        ]
    );

    let webhook = json!({"type": "webhook", "name": "w", "events": [],
        "config": {"url": "http://hooks.example.com/in"}, "credentials": {"secret": "short"}});
    let error = forwarder::create_destination(&client, &cipher(), ws, &webhook)
        .await
        .unwrap_err();
    assert_eq!(
        fields(error),
        ["events", "config.url", "credentials.secret"]
    );
    let listed = forwarder::list_destinations(&client, ws, None, 10)
        .await
        .unwrap();
    assert!(
        listed.data.is_empty(),
        "nothing is stored for a refused body"
    );
}

#[tokio::test]
async fn credentials_are_sealed_at_rest_and_never_shown() {
    let db = test_db().await;
    let pool = pool(&db, 2);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    let view = webhook(&client, ws, "https://hooks.example.com/in", &["sale"], true).await;
    assert!(view.has_credentials);
    let shown = serde_json::to_string(&view).unwrap();
    assert!(!shown.contains(WEBHOOK_SECRET), "{shown}");
    assert!(!shown.contains("credentials"), "{shown}");
    assert!(shown.contains(r#""hasCredentials":true"#), "{shown}");

    // Neither the row's text nor its raw bytes hold the secret.
    let row = client
        .query_one(
            "SELECT d::text, credentials FROM destinations d WHERE workspace_id = $1",
            &[&ws],
        )
        .await
        .unwrap();
    let text: String = row.get(0);
    let bytes: Vec<u8> = row.get(1);
    assert!(!text.contains(WEBHOOK_SECRET));
    assert!(!text.contains(&hex_of(WEBHOOK_SECRET)));
    assert!(!bytes
        .windows(WEBHOOK_SECRET.len())
        .any(|w| w == WEBHOOK_SECRET.as_bytes()));

    // Only the right key opens them.
    let id = forwarder::ids::from_wire(forwarder::ids::DESTINATION, &view.id).unwrap();
    let stored = forwarder::destinations::load_destination(&client, ws, id)
        .await
        .unwrap()
        .unwrap();
    let creds: platforms::webhook::WebhookCredentials =
        stored.credentials(&cipher()).unwrap().parse().unwrap();
    assert_eq!(creds.secret, WEBHOOK_SECRET);
    assert!(!format!("{stored:?}").contains(WEBHOOK_SECRET));
    assert!(matches!(
        stored.credentials(&Cipher::from_bytes([9; 32])),
        Err(Error::Crypto)
    ));

    let got = forwarder::get_destination(&client, ws, &view.id)
        .await
        .unwrap();
    assert_eq!(got, view);
    let listed = forwarder::list_destinations(&client, ws, None, 10)
        .await
        .unwrap();
    assert!(!serde_json::to_string(&listed)
        .unwrap()
        .contains(WEBHOOK_SECRET));
}

fn hex_of(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn an_update_merges_the_config_and_is_checked_whole() {
    let db = test_db().await;
    let pool = pool(&db, 2);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    let created = google(&client, ws, "google_ads_api").await;
    assert_eq!(created.config["customerId"], "1234567890");
    assert_eq!(created.config["eventSource"], "WEB");

    // Subscribing to leads needs a lead conversion action.
    let error = forwarder::update_destination(
        &client,
        &cipher(),
        ws,
        &created.id,
        &json!({"events": ["lead", "sale"]}),
    )
    .await
    .unwrap_err();
    assert_eq!(fields(error), ["config.conversionActions.lead"]);

    let updated = forwarder::update_destination(
        &client,
        &cipher(),
        ws,
        &created.id,
        &json!({"events": ["lead", "sale"], "name": "Ads (all)", "enabled": false,
                "config": {"conversionActions": {"lead": "111"}, "loginCustomerId": "999-888-7777"}}),
    )
    .await
    .unwrap();
    assert_eq!(updated.name, "Ads (all)");
    assert!(!updated.enabled);
    assert_eq!(
        updated.config["conversionActions"],
        json!({"lead": "111", "sale": "987654321"})
    );
    assert_eq!(updated.config["loginCustomerId"], "9998887777");
    assert_eq!(updated.config["api"], "google_ads_api");
    assert_eq!(updated.created_at, created.created_at);

    // `null` removes a setting; the type cannot change; unknown fields are refused.
    let updated = forwarder::update_destination(
        &client,
        &cipher(),
        ws,
        &created.id,
        &json!({"config": {"loginCustomerId": null}}),
    )
    .await
    .unwrap();
    assert!(updated.config.get("loginCustomerId").is_none());
    // The access level is one of Google's, and is kept as given.
    let error = forwarder::update_destination(
        &client,
        &cipher(),
        ws,
        &created.id,
        &json!({"config": {"accessLevel": "gold"}}),
    )
    .await
    .unwrap_err();
    assert_eq!(fields(error), ["config.accessLevel"]);
    let updated = forwarder::update_destination(
        &client,
        &cipher(),
        ws,
        &created.id,
        &json!({"config": {"accessLevel": "basic"}}),
    )
    .await
    .unwrap();
    assert_eq!(updated.config["accessLevel"], "basic");
    let error = forwarder::update_destination(
        &client,
        &cipher(),
        ws,
        &created.id,
        &json!({"type": "meta", "colour": 1, "name": null}),
    )
    .await
    .unwrap_err();
    let mut bad = fields(error);
    bad.sort();
    assert_eq!(bad, ["colour", "name", "type"]);

    // New credentials are checked and sealed again.
    let id = forwarder::ids::from_wire(forwarder::ids::DESTINATION, &created.id).unwrap();
    let before = sealed(&client, ws, id).await;
    let error = forwarder::update_destination(
        &client,
        &cipher(),
        ws,
        &created.id,
        &json!({"credentials": {"clientId": "c2"}}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        fields(error),
        ["credentials.clientSecret", "credentials.refreshToken"]
    );
    forwarder::update_destination(
        &client,
        &cipher(),
        ws,
        &created.id,
        &json!({"credentials": {"clientId": "c2", "clientSecret": "s2", "refreshToken": "r2"}}),
    )
    .await
    .unwrap();
    assert_ne!(sealed(&client, ws, id).await, before);
    let stored = forwarder::destinations::load_destination(&client, ws, id)
        .await
        .unwrap()
        .unwrap();
    let creds: platforms::google::GoogleCredentials =
        stored.credentials(&cipher()).unwrap().parse().unwrap();
    assert_eq!(creds.refresh_token, "r2");
}

async fn sealed(client: &deadpool_postgres::Client, ws: Uuid, id: Uuid) -> Vec<u8> {
    client
        .query_one(
            "SELECT credentials FROM destinations WHERE workspace_id = $1 AND id = $2",
            &[&ws, &id],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn another_workspace_sees_nothing_and_lists_page_newest_first() {
    let db = test_db().await;
    let pool = pool(&db, 2);
    let client = pool.get().await.unwrap();
    let (ws, other) = (Uuid::now_v7(), Uuid::now_v7());
    let mut made = Vec::new();
    for _ in 0..5 {
        made.push(webhook(&client, ws, "https://hooks.example.com/in", &["sale"], true).await);
    }
    webhook(
        &client,
        other,
        "https://other.example.com/in",
        &["sale"],
        true,
    )
    .await;

    assert!(matches!(
        forwarder::get_destination(&client, other, &made[0].id).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        forwarder::update_destination(
            &client,
            &cipher(),
            other,
            &made[0].id,
            &json!({"name": "x"})
        )
        .await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        forwarder::delete_destination(&client, other, &made[0].id).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        forwarder::get_destination(&client, ws, "dst_nothex").await,
        Err(Error::NotFound)
    ));

    let first = forwarder::list_destinations(&client, ws, None, 2)
        .await
        .unwrap();
    let ids: Vec<&str> = first.data.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, [made[4].id.as_str(), made[3].id.as_str()]);
    let mut seen = ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut cursor = first.next_cursor;
    while let Some(c) = cursor {
        let page = forwarder::list_destinations(&client, ws, Some(&c), 2)
            .await
            .unwrap();
        seen.extend(page.data.iter().map(|d| d.id.clone()));
        cursor = page.next_cursor;
    }
    let mut expected: Vec<String> = made.iter().map(|d| d.id.clone()).collect();
    expected.reverse();
    assert_eq!(seen, expected);
    assert!(matches!(
        forwarder::list_destinations(&client, ws, Some("evt_x"), 0).await,
        Err(Error::Invalid(errors)) if errors.len() == 2
    ));
}

#[tokio::test]
async fn deleting_a_destination_cancels_its_waiting_dispatches() {
    let db = test_db().await;
    let pool = pool(&db, 2);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    let doomed = webhook(&client, ws, "https://hooks.example.com/in", &["sale"], true).await;
    let kept = webhook(&client, ws, "https://kept.example.com/in", &["sale"], true).await;
    let event = routed(ws, sale("inv-1"), AttributionStatus::Matched, &ALL_ROUTES);
    assert_eq!(
        forwarder::enqueue(&client, std::slice::from_ref(&event))
            .await
            .unwrap(),
        2
    );

    forwarder::delete_destination(&client, ws, &doomed.id)
        .await
        .unwrap();
    assert!(matches!(
        forwarder::get_destination(&client, ws, &doomed.id).await,
        Err(Error::NotFound)
    ));
    let dispatches = dispatches_of(&client, ws, event.event_id).await;
    let by_destination = |id: &str| dispatches.iter().find(|d| d.destination == id).unwrap();
    assert_eq!(by_destination(&doomed.id).status, DispatchStatus::Cancelled);
    assert_eq!(
        by_destination(&doomed.id).reason.as_deref(),
        Some("destination deleted")
    );
    assert_eq!(
        by_destination(&doomed.id).destination_type,
        DestinationType::Webhook
    );
    assert_eq!(by_destination(&kept.id).status, DispatchStatus::Queued);
    let stored: i64 = client
        .query_one(
            "SELECT count(*) FROM destinations WHERE workspace_id = $1",
            &[&ws],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored, 1,
        "the deleted destination's sealed credentials are gone"
    );
}
