//! The touchpoint rules, the identity graph and routing, on a real PostgreSQL, one worker step
//! at a time.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration as StdDuration;

use attribution_matcher::{identifier_hash, IdentifierKind};
use common::{days, dispatches, reason, Harness, T0};
use events::{AttributionStatus, MatchedBy};
use serde_json::json;
use time::Duration;

#[tokio::test]
async fn direct_click_ids_on_the_event_are_the_touchpoint() {
    let mut h = Harness::new().await;
    let sale = h
        .send(
            json!({"event": "sale", "timestamp": "2026-04-10T12:00:00Z", "gclid": "EAIaIQ",
                   "fbclid": "IwAR", "pageUrl": "https://example.com/checkout",
                   "amount": 199.0, "currency": "USD"}),
            T0,
        )
        .await;
    let decided = h.run_one(sale, T0).await;
    assert!(decided.first);
    let attribution = &decided.attribution;
    assert_eq!(attribution.status, AttributionStatus::Matched);
    assert_eq!(attribution.matched_by, Some(MatchedBy::Direct));
    assert_eq!(attribution.model, "last_click");
    let click = attribution.click.as_ref().unwrap();
    assert_eq!(click.clicked_at, T0);
    assert_eq!(click.click_id, None);
    assert_eq!(click.click_ids.gclid.as_deref(), Some("EAIaIQ"));
    assert_eq!(click.url.as_deref(), Some("https://example.com/checkout"));
    assert_eq!(attribution.first_touch.as_ref(), Some(click));
    assert_eq!(dispatches(&decided), ["google_ads", "meta", "webhook"]);
    assert_eq!(
        reason(&decided, "google_ads"),
        "gclid present: google_ads offline click conversion"
    );
    // What the read side serves is what was decided.
    let stored = h.decision(sale).await.unwrap();
    assert_eq!(stored.attribution, decided.attribution);
    assert_eq!(stored.routes, decided.routes);
    let client = h.pool.get().await.unwrap();
    let queued = h
        .send(json!({"event": "lead", "email": "later@example.com"}), T0)
        .await;
    let many = attribution_matcher::get_attributions(&client, h.workspace, &[sale, queued, sale])
        .await
        .unwrap();
    assert_eq!(many.len(), 1);
    assert_eq!(many[&sale], decided.attribution);
}

#[tokio::test]
async fn a_carried_click_is_filed_with_the_id_of_its_groups() {
    let mut h = Harness::new().await;
    let sale = h
        .send(
            json!({"event": "sale", "timestamp": "2026-04-10T12:00:00Z", "gclid": "EAIaIQ",
                   "utm": {"source": "google", "medium": "cpc", "campaign": "spring"},
                   "amount": 199.0, "currency": "USD"}),
            T0,
        )
        .await;
    h.run_one(sale, T0).await;
    let groups = events::ClickGroups {
        channel: "google_ads".into(),
        source: Some("google".into()),
        medium: Some("cpc".into()),
        campaign: Some("spring".into()),
    };
    let client = h.pool.get().await.unwrap();
    let filed: Vec<(Option<i64>, Option<uuid::Uuid>)> = client
        .query(
            "SELECT click_group, source_event FROM identities
             WHERE workspace_id = $1 AND clicked_at IS NOT NULL",
            &[&h.workspace],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(filed, [(Some(groups.id()), Some(sale))]);
    let row = client
        .query_one(
            "SELECT channel, source, medium, campaign FROM click_groups
             WHERE workspace_id = $1 AND id = $2",
            &[&h.workspace, &groups.id()],
        )
        .await
        .unwrap();
    let stored = events::ClickGroups {
        channel: row.get(0),
        source: row.get(1),
        medium: row.get(2),
        campaign: row.get(3),
    };
    assert_eq!(stored, groups);
}

#[tokio::test]
async fn a_registered_click_named_by_click_id_is_the_touchpoint() {
    let mut h = Harness::new().await;
    let registered = h
        .click(
            json!({"clickId": "clk_fb", "timestamp": "2026-04-09T08:00:00Z", "fbclid": "IwAR",
                   "utm": {"source": "facebook"}}),
            T0,
        )
        .await;
    assert!(registered.created);
    let lead = h
        .send(
            json!({"event": "lead", "timestamp": "2026-04-10T12:00:00Z", "clickId": "clk_fb"}),
            T0,
        )
        .await;
    let decided = h.run_one(lead, T0).await;
    assert_eq!(decided.attribution.status, AttributionStatus::Matched);
    assert_eq!(decided.attribution.matched_by, Some(MatchedBy::ClickId));
    let click = decided.attribution.click.as_ref().unwrap();
    assert_eq!(click.click_id.as_deref(), Some("clk_fb"));
    assert_eq!(click.clicked_at, days(T0, -1) - Duration::hours(4));
    assert_eq!(
        click.utm.as_ref().and_then(|u| u.source.as_deref()),
        Some("facebook")
    );
    assert_eq!(dispatches(&decided), ["meta", "webhook"]);
    assert_eq!(
        reason(&decided, "google_ads"),
        "no gclid/gbraid/wbraid: google_ads not applicable"
    );
    assert_eq!(
        reason(&decided, "meta"),
        "fbclid present: meta conversions api event"
    );
}

#[tokio::test]
async fn direct_click_ids_win_over_a_named_click() {
    let mut h = Harness::new().await;
    h.click(json!({"clickId": "c1", "fbclid": "f"}), days(T0, -1))
        .await;
    let lead = h
        .send(
            json!({"event": "lead", "timestamp": "2026-04-10T12:00:00Z", "clickId": "c1",
                   "gclid": "g"}),
            T0,
        )
        .await;
    let decided = h.run_one(lead, T0).await;
    assert_eq!(decided.attribution.matched_by, Some(MatchedBy::Direct));
    assert_eq!(dispatches(&decided), ["google_ads", "webhook"]);
}

#[tokio::test]
async fn an_unknown_click_id_is_not_an_error() {
    let mut h = Harness::new().await;
    let lead = h
        .send(
            json!({"event": "lead", "timestamp": "2026-04-10T12:00:00Z", "clickId": "nobody"}),
            T0,
        )
        .await;
    let decided = h.run_one(lead, T0).await;
    // A lead without a touchpoint is unmatched at once; webhooks still get it.
    assert_eq!(decided.attribution.status, AttributionStatus::Unmatched);
    assert_eq!(decided.attribution.click, None);
    assert_eq!(decided.attribution.pending_until, None);
    assert_eq!(dispatches(&decided), ["webhook"]);
}

/// The documented flow: a short-link click, a deferred lead that ties the click to the user,
/// then a sale that names only the user (and a clickId nobody registered).
#[tokio::test]
async fn the_sale_of_a_deferred_lead_is_matched_through_its_customer_id() {
    let mut h = Harness::new().await;
    h.click(
        json!({"clickId": "clickid_123", "timestamp": "2026-04-10T12:30:00Z",
               "gclid": "EAIaIQobChMI", "utm": {"source": "google", "medium": "cpc"}}),
        T0 + Duration::minutes(30),
    )
    .await;
    let lead_at = T0 + Duration::seconds(34 * 60 + 56);
    let lead = h
        .send(
            json!({"event": "lead", "timestamp": "2026-04-10T12:34:56.000Z",
                   "clickId": "clickid_123", "customerExternalId": "user_123",
                   "email": "user@gmail.com", "name": "user", "mode": "deferred"}),
            lead_at,
        )
        .await;
    let deferred = h.run_one(lead, lead_at).await;
    assert!(deferred.first);
    assert_eq!(deferred.attribution.status, AttributionStatus::Unmatched);
    assert_eq!(deferred.attribution.click, None);
    assert!(deferred.routes.iter().all(|r| !r.dispatch));
    assert_eq!(
        reason(&deferred, "webhook"),
        "deferred lead: identifiers linked; not counted or dispatched"
    );

    let sale_at = T0 + Duration::seconds(45 * 60 + 10);
    let sale = h
        .send(
            json!({"event": "sale", "timestamp": "2026-04-10T12:45:10.000Z",
                   "clickId": "clk_abc123", "customerExternalId": "user_123",
                   "email": "alex@example.com", "currency": "USD", "amount": 199.0,
                   "invoiceId": "inv_987"}),
            sale_at,
        )
        .await;
    let decided = h.run_one(sale, sale_at).await;
    assert!(decided.first);
    assert_eq!(decided.attribution.status, AttributionStatus::Matched);
    assert_eq!(
        decided.attribution.matched_by,
        Some(MatchedBy::CustomerExternalId)
    );
    let click = decided.attribution.click.as_ref().unwrap();
    assert_eq!(click.click_id.as_deref(), Some("clickid_123"));
    assert_eq!(click.click_ids.gclid.as_deref(), Some("EAIaIQobChMI"));
    assert_eq!(dispatches(&decided), ["google_ads", "webhook"]);
    // The user's next lead is attributed through the link the deferred lead made.
    let next_at = sale_at + Duration::minutes(1);
    let next = h
        .send(
            json!({"event": "lead", "timestamp": "2026-04-10T12:46:10.000Z",
                   "email": "user@gmail.com"}),
            next_at,
        )
        .await;
    let decided = h.run_one(next, next_at).await;
    assert_eq!(decided.attribution.matched_by, Some(MatchedBy::Email));
    assert_eq!(
        decided.attribution.click.unwrap().click_id.as_deref(),
        Some("clickid_123")
    );
}

#[tokio::test]
async fn the_persons_last_click_is_the_touchpoint_and_the_first_is_kept() {
    let mut h = Harness::new().await;
    h.click(json!({"clickId": "c_old", "gclid": "g1"}), days(T0, -30))
        .await;
    h.click(json!({"clickId": "c_new", "fbclid": "f2"}), days(T0, -2))
        .await;
    h.send(
        json!({"event": "lead", "clickId": "c_old", "email": "Alex@Example.com"}),
        days(T0, -29),
    )
    .await;
    h.send(
        json!({"event": "lead", "clickId": "c_new", "phone": "+14155550123",
               "email": "alex@example.com"}),
        days(T0, -1),
    )
    .await;
    assert_eq!(h.run(days(T0, -1)).await.len(), 2);

    let sale = h
        .send(
            json!({"event": "sale", "phone": "+1 415 555 0123", "amount": 10, "currency": "EUR"}),
            T0,
        )
        .await;
    let decided = h.run_one(sale, T0).await;
    let attribution = decided.attribution.clone();
    assert_eq!(attribution.matched_by, Some(MatchedBy::Phone));
    assert_eq!(
        attribution.click.unwrap().click_id.as_deref(),
        Some("c_new")
    );
    assert_eq!(
        attribution.first_touch.unwrap().click_id.as_deref(),
        Some("c_old")
    );
    assert_eq!(dispatches(&decided), ["meta", "webhook"]);
}

#[tokio::test]
async fn an_event_that_names_two_persons_merges_them() {
    let mut h = Harness::new().await;
    h.click(json!({"clickId": "c1", "gclid": "g1"}), days(T0, -3))
        .await;
    // Two persons: one with the click, one with a customer id and a phone.
    h.send(
        json!({"event": "lead", "clickId": "c1", "email": "a@example.com"}),
        days(T0, -3),
    )
    .await;
    h.send(
        json!({"event": "lead", "customerExternalId": "u1", "phone": "+442079460958"}),
        days(T0, -2),
    )
    .await;
    h.run(days(T0, -2)).await;
    assert_eq!(h.persons().await, 2);

    // An event that names one identifier of each links them.
    let link = h
        .send(
            json!({"event": "lead", "email": "a@example.com", "customerExternalId": "u1"}),
            days(T0, -1),
        )
        .await;
    let decided = h.run_one(link, days(T0, -1)).await;
    assert_eq!(decided.attribution.matched_by, Some(MatchedBy::Email));
    assert_eq!(h.persons().await, 1);

    // The phone now reaches the click through the merged person.
    let sale = h
        .send(
            json!({"event": "sale", "phone": "+44 20 7946 0958", "amount": 5, "currency": "GBP"}),
            T0,
        )
        .await;
    let decided = h.run_one(sale, T0).await;
    assert_eq!(decided.attribution.status, AttributionStatus::Matched);
    assert_eq!(decided.attribution.matched_by, Some(MatchedBy::Phone));
    assert_eq!(
        decided.attribution.click.unwrap().click_id.as_deref(),
        Some("c1")
    );
}

#[tokio::test]
async fn a_merge_within_one_step_links_every_event_of_the_step() {
    let mut h = Harness::new().await;
    h.click(json!({"clickId": "c1", "gclid": "g1"}), days(T0, -3))
        .await;
    // One step: a chain of events that only together lead from the phone to the click.
    h.send(
        json!({"event": "lead", "clickId": "c1", "email": "a@x.io"}),
        days(T0, -2),
    )
    .await;
    h.send(
        json!({"event": "lead", "customerExternalId": "u9", "phone": "+14155550100"}),
        days(T0, -2),
    )
    .await;
    h.send(
        json!({"event": "lead", "customerExternalId": "u9", "email": "a@x.io"}),
        days(T0, -2),
    )
    .await;
    let sale = h
        .send(
            json!({"event": "sale", "phone": "+14155550100", "amount": 1, "currency": "USD"}),
            days(T0, -2),
        )
        .await;
    let decided = h.run(days(T0, -2)).await;
    assert_eq!(decided.len(), 4);
    let last = decided.iter().find(|d| d.event_id == sale).unwrap();
    assert_eq!(last.attribution.matched_by, Some(MatchedBy::Phone));
    assert_eq!(h.persons().await, 1);
}

#[tokio::test]
async fn identifiers_are_stored_as_hashes_only() {
    let mut h = Harness::new().await;
    h.send(
        json!({"event": "lead", "customerExternalId": "user_123", "email": " User@Gmail.com ",
               "phone": "+1 (415) 555-0123", "clickId": "clickid_123", "gclid": "g"}),
        T0,
    )
    .await;
    h.run(T0).await;
    let client = h.pool.get().await.unwrap();
    let rows = client
        .query(
            "SELECT identifier, kind FROM identities WHERE workspace_id = $1 ORDER BY kind",
            &[&h.workspace],
        )
        .await
        .unwrap();
    let stored: Vec<(Vec<u8>, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let expected = [
        (IdentifierKind::ClickId, "clickid_123"),
        (IdentifierKind::CustomerExternalId, "user_123"),
        (IdentifierKind::Email, "user@gmail.com"),
        (IdentifierKind::Gclid, "g"),
        (IdentifierKind::Phone, "+14155550123"),
    ];
    assert_eq!(stored.len(), expected.len());
    for ((hash, kind), (expected_kind, value)) in stored.iter().zip(expected) {
        assert_eq!(kind, expected_kind.as_str());
        assert_eq!(hash.as_slice(), identifier_hash(expected_kind, value));
    }
    // Nothing in clear anywhere in the graph's rows.
    let clear: i64 = client
        .query_one(
            "SELECT count(*) FROM identities
             WHERE workspace_id = $1 AND (identities::text LIKE '%gmail%' OR identities::text LIKE '%user_123%')",
            &[&h.workspace],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(clear, 0);
}

#[tokio::test]
async fn clicks_outside_the_attribution_window_do_not_count() {
    let mut h = Harness::new().await;
    let clicked = T0;
    h.click(json!({"clickId": "c1", "gclid": "g"}), clicked)
        .await;
    h.send(
        json!({"event": "lead", "clickId": "c1", "customerExternalId": "u"}),
        clicked,
    )
    .await;
    h.run(clicked).await;

    // Exactly 90 days later is still inside the default window.
    let edge = days(clicked, 90);
    let inside = h
        .send(json!({"event": "lead", "customerExternalId": "u"}), edge)
        .await;
    let decided = h.run_one(inside, edge).await;
    assert_eq!(decided.attribution.status, AttributionStatus::Matched);

    // A millisecond later it is not.
    let past = edge + Duration::milliseconds(1);
    let outside = h
        .send(json!({"event": "lead", "customerExternalId": "u"}), past)
        .await;
    let decided = h.run_one(outside, past).await;
    assert_eq!(decided.attribution.status, AttributionStatus::Unmatched);
}

#[tokio::test]
async fn a_workspace_may_shorten_its_attribution_window() {
    let mut h = Harness::new().await;
    {
        let client = h.pool.get().await.unwrap();
        attribution_matcher::set_attribution_window(
            &client,
            h.workspace,
            StdDuration::from_secs(7 * 24 * 3600),
        )
        .await
        .unwrap();
        let window = attribution_matcher::attribution_window(&client, h.workspace, &h.settings)
            .await
            .unwrap();
        assert_eq!(window, StdDuration::from_secs(7 * 24 * 3600));
        assert!(matches!(
            attribution_matcher::set_attribution_window(&client, h.workspace, StdDuration::ZERO)
                .await,
            Err(attribution_matcher::Error::InvalidWindow { .. })
        ));
    }
    h.click(json!({"clickId": "c1", "gclid": "g"}), T0).await;
    h.send(
        json!({"event": "lead", "clickId": "c1", "email": "a@b.io"}),
        T0,
    )
    .await;
    h.run(T0).await;
    let in_window = h
        .send(json!({"event": "lead", "email": "a@b.io"}), days(T0, 6))
        .await;
    assert_eq!(
        h.run_one(in_window, days(T0, 6)).await.attribution.status,
        AttributionStatus::Matched
    );
    let late = h
        .send(json!({"event": "lead", "email": "a@b.io"}), days(T0, 8))
        .await;
    assert_eq!(
        h.run_one(late, days(T0, 8)).await.attribution.status,
        AttributionStatus::Unmatched
    );
}

#[tokio::test]
async fn a_click_after_the_event_is_not_its_touchpoint() {
    let mut h = Harness::new().await;
    // The person's only click happens after the lead.
    h.click(json!({"clickId": "later", "gclid": "g"}), days(T0, 1))
        .await;
    h.send(
        json!({"event": "lead", "clickId": "later", "email": "a@b.io"}),
        days(T0, 1),
    )
    .await;
    h.run(days(T0, 1)).await;
    let early = h
        .send(
            json!({"event": "lead", "timestamp": "2026-04-10T12:00:00Z", "email": "a@b.io"}),
            days(T0, 1),
        )
        .await;
    let decided = h.run_one(early, days(T0, 1)).await;
    assert_eq!(decided.attribution.status, AttributionStatus::Unmatched);
}

#[tokio::test]
async fn a_workspace_never_sees_another_workspaces_graph() {
    let mut a = Harness::new().await;
    let mut b = Harness::on(a.pool.clone()).await;
    a.click(json!({"clickId": "c1", "gclid": "g"}), T0).await;
    a.send(
        json!({"event": "lead", "clickId": "c1", "email": "a@b.io"}),
        T0,
    )
    .await;
    a.run(T0).await;
    let lead = b
        .send(json!({"event": "lead", "email": "a@b.io"}), T0)
        .await;
    let decided = b.run_one(lead, T0).await;
    assert_eq!(decided.attribution.status, AttributionStatus::Unmatched);
    let client = a.pool.get().await.unwrap();
    assert_eq!(
        attribution_matcher::get_click(&client, b.workspace, "c1")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        b.decision(lead).await.unwrap().attribution,
        decided.attribution
    );
    assert_eq!(a.decision(lead).await, None);
}
