//! A platform that rotates refresh tokens (Microsoft's identity platform hands out a new one
//! with every exchange): the worker stores the destination's credentials again with the new one,
//! so the destination keeps working after the old one expires.
#![allow(clippy::unwrap_used)]

mod worker_support;

use events::{AttributionStatus, DestinationType};
use forwarder::{destinations, Forwarder};
use serde_json::{json, Value};
use uuid::Uuid;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};
use worker_support::*;

const FIRST: &str = "M.C107_first-refresh-token";
const ROTATED: &str = "M.C107_rotated-refresh-token";

async fn stored_credentials(client: &deadpool_postgres::Client, ws: Uuid, id: &str) -> Value {
    let id = forwarder::ids::from_wire(forwarder::ids::DESTINATION, id).unwrap();
    let destination = destinations::load_destination(client, ws, id)
        .await
        .unwrap()
        .unwrap();
    destination.credentials(&cipher()).unwrap().json().clone()
}

#[tokio::test]
async fn a_rotated_refresh_token_is_stored_and_used_for_the_next_exchange() {
    let server = MockServer::start().await;
    // The first refresh token is exchanged once and rotated; the rotated one keeps itself.
    for (sent, answer) in [(FIRST, ROTATED), (ROTATED, ROTATED)] {
        Mock::given(method("POST"))
            .and(path("/ms-token"))
            .and(body_string_contains(format!("refresh_token={sent}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "token_type": "Bearer", "expires_in": 3599,
                "access_token": format!("access-for-{sent}"), "refresh_token": answer})))
            .expect(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path(forwarder::platforms::microsoft::APPLY_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"PartialErrors": null})))
        .mount(&server)
        .await;
    let db = test_db().await;
    let pool = pool(&db, 4);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    let destination = forwarder::create_destination(
        &client,
        &cipher(),
        ws,
        &json!({"type": "microsoft_ads", "name": "ads", "events": ["sale"],
                "config": {"customerId": "251186883", "accountId": "149615541",
                           "conversionNames": {"sale": "Offline Purchase"}},
                "credentials": {"clientId": "ms-client", "refreshToken": FIRST,
                                "developerToken": "ms-developer-token"}}),
    )
    .await
    .unwrap();
    let routes = [(DestinationType::MicrosoftAds, true)];
    let mut sale = sale("inv-1");
    sale.click_ids.msclkid = Some("msclkid-1".into());
    let event = routed(ws, sale.clone(), AttributionStatus::Matched, &routes);
    forwarder::enqueue(&client, std::slice::from_ref(&event))
        .await
        .unwrap();

    let worker = Forwarder::new(pool.clone(), cipher(), config(&server.uri(), 5));
    assert_eq!(worker.dispatch_due(10).await.unwrap().succeeded, 1);
    let stored = stored_credentials(&client, ws, &destination.id).await;
    assert_eq!(stored["refreshToken"], ROTATED);
    assert_eq!(stored["developerToken"], "ms-developer-token");
    assert_eq!(stored["clientId"], "ms-client");

    // A later worker (no token cached) exchanges the rotated one.
    sale.invoice_id = Some("inv-2".into());
    let event = routed(ws, sale, AttributionStatus::Matched, &routes);
    forwarder::enqueue(&client, std::slice::from_ref(&event))
        .await
        .unwrap();
    let worker = Forwarder::new(pool.clone(), cipher(), config(&server.uri(), 5));
    assert_eq!(worker.dispatch_due(10).await.unwrap().succeeded, 1);
    assert_eq!(
        stored_credentials(&client, ws, &destination.id).await["refreshToken"],
        ROTATED
    );
    server.verify().await;
}
