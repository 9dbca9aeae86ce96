//! What the forwarder's integration tests share: a fresh migrated database per test, a fixed
//! cipher, routed events, destinations, and a forwarder pointed at local fakes.
#![allow(dead_code, clippy::unwrap_used, clippy::missing_panics_doc)]

use std::time::Duration;

use deadpool_postgres::Pool;
use events::{
    Attribution, AttributionStatus, DestinationType, Event, MatchedBy, RouteDecision, RoutedEvent,
    Touchpoint,
};
use forwarder::{Cipher, DestinationView, Endpoints, ForwarderConfig, RetryPolicy};
use serde_json::{json, Value};
use test_support::TestDb;
use time::OffsetDateTime;
use uuid::Uuid;

/// A webhook secret long enough to pass validation.
pub const WEBHOOK_SECRET: &str = "whsec_0123456789abcdef_do_not_leak";

/// A fresh database with the forwarder's tables.
pub async fn test_db() -> TestDb {
    // The template is rebuilt whenever a migration changes.
    let id = format!("forwarder-only:{:?}", forwarder::migrations());
    TestDb::new(&id, |client| {
        Box::pin(async move { forwarder::migrate(client).await.map_err(|e| e.to_string()) })
    })
    .await
}

/// A pool of its own on `db`, as a separate process would have.
pub fn pool(db: &TestDb, size: usize) -> Pool {
    db.pool(size)
}

/// The key every test seals credentials with.
pub fn cipher() -> Cipher {
    Cipher::from_key("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f").unwrap()
}

/// A parsed event from a request body.
pub fn event(body: Value) -> Event {
    events::parse_event(&body, OffsetDateTime::now_utc()).unwrap()
}

/// A sale with a gclid and an email.
pub fn sale(invoice: &str) -> Event {
    event(
        json!({"event": "sale", "invoiceId": invoice, "amount": 49.9, "currency": "usd",
                 "email": "Alex@Example.com", "gclid": "Cj0KCQ-test", "fbclid": "IwAR-test"}),
    )
}

/// A lead with an email and no click id.
pub fn lead(lead_id: &str) -> Event {
    event(json!({"event": "lead", "leadId": lead_id, "email": "lee@example.com"}))
}

/// An event routed with `status`, each type dispatched or not as given.
pub fn routed(
    workspace_id: Uuid,
    event: Event,
    status: AttributionStatus,
    routes: &[(DestinationType, bool)],
) -> RoutedEvent {
    let now = events::to_utc_millis(OffsetDateTime::now_utc());
    let click =
        (status == AttributionStatus::Matched && !event.click_ids.is_empty()).then(|| Touchpoint {
            click_id: None,
            clicked_at: event.timestamp,
            click_ids: event.click_ids.clone(),
            utm: None,
            url: None,
            referrer: None,
            ip: None,
            user_agent: None,
        });
    RoutedEvent {
        workspace_id,
        event_id: Uuid::now_v7(),
        received_at: now,
        attribution: Attribution {
            status,
            matched_by: click.as_ref().map(|_| MatchedBy::Direct),
            click,
            model: "last_click".into(),
            first_touch: None,
            pending_until: None,
            decided_at: now,
            ignored_identifiers: Vec::new(),
        },
        event,
        routes: routes
            .iter()
            .map(|&(destination_type, dispatch)| RouteDecision {
                destination_type,
                dispatch,
                reason: format!("test: {}", if dispatch { "sent" } else { "not sent" }).into(),
            })
            .collect(),
    }
}

/// Every type routed.
pub const ALL_ROUTES: [(DestinationType, bool); 3] = [
    (DestinationType::GoogleAds, true),
    (DestinationType::Meta, true),
    (DestinationType::Webhook, true),
];

/// A webhook destination to `url`.
pub async fn webhook(
    client: &deadpool_postgres::Client,
    workspace_id: Uuid,
    url: &str,
    events: &[&str],
    enabled: bool,
) -> DestinationView {
    forwarder::create_destination(
        client,
        &cipher(),
        workspace_id,
        &json!({"type": "webhook", "name": "hook", "enabled": enabled, "events": events,
                "config": {"url": url}, "credentials": {"secret": WEBHOOK_SECRET}}),
    )
    .await
    .unwrap()
}

/// A Google Ads destination on `api` subscribed to sales.
pub async fn google(
    client: &deadpool_postgres::Client,
    workspace_id: Uuid,
    api: &str,
) -> DestinationView {
    forwarder::create_destination(
        client,
        &cipher(),
        workspace_id,
        &json!({"type": "google_ads", "name": "ads", "events": ["sale"],
                "config": {"api": api, "customerId": "123-456-7890",
                           "conversionActions": {"sale": "987654321"}},
                "credentials": {"clientId": "client-1", "clientSecret": "client-secret-1",
                                "refreshToken": "1//refresh-token-1"}}),
    )
    .await
    .unwrap()
}

/// A Meta destination subscribed to `events`.
pub async fn meta(
    client: &deadpool_postgres::Client,
    workspace_id: Uuid,
    events: &[&str],
    match_without_click_id: bool,
) -> DestinationView {
    forwarder::create_destination(
        client,
        &cipher(),
        workspace_id,
        &json!({"type": "meta", "name": "pixel", "events": events,
                "config": {"pixelId": "1234567890", "matchWithoutClickId": match_without_click_id},
                "credentials": {"accessToken": "EAAB-meta-token"}}),
    )
    .await
    .unwrap()
}

/// Forwarder settings against fakes at `base`, with a retry schedule of milliseconds.
pub fn config(base: &str, max_attempts: u32) -> ForwarderConfig {
    ForwarderConfig {
        endpoints: Endpoints {
            google_ads: base.to_owned(),
            google_data_manager: base.to_owned(),
            google_oauth: format!("{base}/token"),
            meta: base.to_owned(),
            microsoft_ads: base.to_owned(),
            microsoft_oauth: format!("{base}/ms-token"),
            pinterest: base.to_owned(),
            snapchat: base.to_owned(),
            tiktok: base.to_owned(),
            reddit: base.to_owned(),
            linkedin: base.to_owned(),
        },
        retry: RetryPolicy::from_settings(1, 5, max_attempts),
        lease: Duration::from_secs(30),
        batch_size: 100,
        http_timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(10),
        concurrency: 16,
        parallel_steps: 2,
        confirmation_poll: Duration::from_millis(5),
        quota_share: 1.0,
    }
}

/// Lets time pass for waiting retries: every `retrying` dispatch becomes due now.
pub async fn make_retries_due(client: &deadpool_postgres::Client) {
    client
        .execute(
            "UPDATE dispatches SET due_at = now() - interval '1 second' WHERE status = 'retrying'",
            &[],
        )
        .await
        .unwrap();
}

/// The dispatches of an event, as shown.
pub async fn dispatches_of(
    client: &deadpool_postgres::Client,
    workspace_id: Uuid,
    event_id: Uuid,
) -> Vec<forwarder::DispatchSummary> {
    forwarder::dispatches_for_event(client, workspace_id, event_id)
        .await
        .unwrap()
}

/// The `dsp_…` ids of every dispatch of `event_id`.
pub async fn dispatch_ids(
    client: &deadpool_postgres::Client,
    workspace_id: Uuid,
    event_id: Uuid,
) -> Vec<String> {
    dispatches_of(client, workspace_id, event_id)
        .await
        .into_iter()
        .map(|d| d.id)
        .collect()
}
