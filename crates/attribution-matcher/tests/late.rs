//! Late data: pending sales, late matches by a later event or click, expiry.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration as StdDuration;

use common::{days, dispatches, reason, Harness, T0};
use events::{AttributionStatus, MatchedBy};
use serde_json::json;
use time::Duration;

fn sale(extra: serde_json::Value) -> serde_json::Value {
    let mut body = json!({"event": "sale", "timestamp": "2026-04-10T12:00:00Z",
                          "amount": 49.0, "currency": "USD"});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

#[tokio::test]
async fn a_sale_without_a_touchpoint_is_pending_and_goes_to_webhooks_now() {
    let mut h = Harness::new().await;
    let received = T0 + Duration::seconds(2);
    let id = h.send(sale(json!({"clickId": "clk_late"})), received).await;
    let decided = h.run_one(id, received).await;
    assert!(decided.first);
    assert_eq!(decided.attribution.status, AttributionStatus::Pending);
    assert_eq!(
        decided.attribution.pending_until,
        Some(received + Duration::hours(24))
    );
    assert_eq!(dispatches(&decided), ["webhook"]);
    assert_eq!(
        reason(&decided, "google_ads"),
        "attribution pending: sent if and when it matches"
    );
    assert_eq!(
        reason(&decided, "webhook"),
        "attribution pending: webhooks get it now"
    );
    let stored = h.decision(id).await.unwrap();
    assert_eq!(stored.attribution.status, AttributionStatus::Pending);
    // Nothing else to do until something links it.
    assert!(h.step(received + Duration::hours(1)).await.is_none());
}

#[tokio::test]
async fn a_pending_sale_is_matched_when_the_click_it_names_is_registered() {
    let mut h = Harness::new().await;
    let id = h.send(sale(json!({"clickId": "clk_late"})), T0).await;
    h.run(T0).await;

    let later = T0 + Duration::hours(2);
    let registered = h
        .click(
            json!({"clickId": "clk_late", "timestamp": "2026-04-10T11:00:00Z", "gclid": "g"}),
            later,
        )
        .await;
    assert!(registered.created);
    let decided = h.run_one(id, later).await;
    assert!(!decided.first);
    assert_eq!(decided.attribution.status, AttributionStatus::Matched);
    assert_eq!(decided.attribution.matched_by, Some(MatchedBy::ClickId));
    assert_eq!(decided.attribution.pending_until, None);
    assert_eq!(decided.attribution.decided_at, later);
    assert_eq!(dispatches(&decided), ["google_ads"]);
    assert_eq!(reason(&decided, "webhook"), "already sent while pending");
    assert_eq!(
        h.decision(id).await.unwrap().attribution,
        decided.attribution
    );
    // Matched once: nothing more happens to it.
    assert!(h.step(days(T0, 2)).await.is_none());
}

#[tokio::test]
async fn a_click_registered_without_a_timestamp_still_matches_the_sale_that_named_it() {
    let mut h = Harness::new().await;
    let id = h
        .send(sale(json!({"clickId": "clk_x", "email": "a@b.io"})), T0)
        .await;
    h.run(T0).await;
    // Registered an hour after the sale, with the registration time as its timestamp.
    let later = T0 + Duration::hours(1);
    h.click(json!({"clickId": "clk_x", "fbclid": "f"}), later)
        .await;
    let decided = h.run_one(id, later).await;
    assert_eq!(decided.attribution.matched_by, Some(MatchedBy::ClickId));
    assert_eq!(dispatches(&decided), ["meta"]);
}

#[tokio::test]
async fn a_pending_sale_is_matched_by_a_later_event_that_links_it_to_a_click() {
    let mut h = Harness::new().await;
    h.click(
        json!({"clickId": "c1", "timestamp": "2026-04-10T09:00:00Z", "gclid": "g"}),
        T0,
    )
    .await;
    let id = h
        .send(sale(json!({"email": "buyer@example.com"})), T0)
        .await;
    let first = h.run_one(id, T0).await;
    assert_eq!(first.attribution.status, AttributionStatus::Pending);

    // A lead arrives later that ties the buyer's email to the click.
    let later = T0 + Duration::hours(3);
    let lead = h
        .send(
            json!({"event": "lead", "clickId": "c1", "email": "buyer@example.com"}),
            later,
        )
        .await;
    // The lead's step queues the sale for another look; the next step matches it.
    let (_, decided) = h.step(later).await.unwrap();
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0].event_id, lead);
    assert_eq!(decided[0].attribution.matched_by, Some(MatchedBy::ClickId));
    let (claim, decided) = h.step(later).await.unwrap();
    assert_eq!(claim.event_ids, [id]);
    assert_eq!(decided.len(), 1);
    let late = &decided[0];
    assert_eq!(late.event_id, id);
    assert!(!late.first);
    assert_eq!(late.attribution.status, AttributionStatus::Matched);
    assert_eq!(late.attribution.matched_by, Some(MatchedBy::Email));
    assert_eq!(
        late.attribution.click.as_ref().unwrap().click_id.as_deref(),
        Some("c1")
    );
    assert_eq!(dispatches(late), ["google_ads"]);
    assert!(h.step(later).await.is_none());
}

#[tokio::test]
async fn a_pending_sale_is_matched_by_a_later_event_with_direct_click_ids() {
    let mut h = Harness::new().await;
    let id = h
        .send(
            sale(json!({"timestamp": "2026-04-10T12:00:00Z", "phone": "+14155550123"})),
            T0,
        )
        .await;
    h.run(T0).await;
    // A lead sent late, but about an action before the sale, carries the gclid.
    let later = T0 + Duration::hours(5);
    h.send(
        json!({"event": "lead", "timestamp": "2026-04-10T11:00:00Z", "phone": "+14155550123",
               "gclid": "g_direct"}),
        later,
    )
    .await;
    let decided = h.run(later).await;
    assert_eq!(decided.len(), 2);
    let late = decided.iter().find(|d| d.event_id == id).unwrap();
    assert!(!late.first);
    assert_eq!(late.attribution.matched_by, Some(MatchedBy::Phone));
    assert_eq!(
        late.attribution
            .click
            .as_ref()
            .unwrap()
            .click_ids
            .gclid
            .as_deref(),
        Some("g_direct")
    );
}

#[tokio::test]
async fn a_link_to_a_click_after_the_sale_leaves_it_pending() {
    let mut h = Harness::new().await;
    let id = h.send(sale(json!({"email": "a@b.io"})), T0).await;
    h.run(T0).await;
    let later = T0 + Duration::hours(1);
    h.send(
        json!({"event": "lead", "email": "a@b.io", "gclid": "g"}),
        later,
    )
    .await;
    let decided = h.run(later).await;
    assert_eq!(decided.len(), 1, "only the lead: {decided:#?}");
    assert_eq!(
        h.decision(id).await.unwrap().attribution.status,
        AttributionStatus::Pending
    );
}

#[tokio::test]
async fn a_pending_sale_becomes_unmatched_when_its_window_ends() {
    let mut h = Harness::new().await;
    let id = h.send(sale(json!({"customerExternalId": "u1"})), T0).await;
    h.run(T0).await;
    let until = T0 + Duration::hours(24);
    // Not a millisecond early.
    assert!(h.step(until - Duration::milliseconds(1)).await.is_none());

    let (claim, decided) = h.step(until).await.unwrap();
    assert_eq!(claim.event_ids, [id]);
    assert_eq!(decided.len(), 1);
    let expired = &decided[0];
    assert!(!expired.first);
    assert_eq!(expired.attribution.status, AttributionStatus::Unmatched);
    assert_eq!(expired.attribution.pending_until, None);
    assert!(expired.routes.iter().all(|r| !r.dispatch));
    assert_eq!(reason(expired, "webhook"), "already sent while pending");
    assert_eq!(
        reason(expired, "google_ads"),
        "pending window over without a match, no gclid/gbraid/wbraid: google_ads not applicable"
    );
    assert!(h.step(days(T0, 3)).await.is_none());

    // A click that would have matched comes too late to change anything.
    h.click(
        json!({"clickId": "c9", "gclid": "g", "timestamp": "2026-04-10T10:00:00Z"}),
        days(T0, 3),
    )
    .await;
    h.send(
        json!({"event": "lead", "clickId": "c9", "customerExternalId": "u1"}),
        days(T0, 3),
    )
    .await;
    let decided = h.run(days(T0, 3)).await;
    assert_eq!(decided.len(), 1);
    assert_ne!(decided[0].event_id, id);
    assert_eq!(
        h.decision(id).await.unwrap().attribution.status,
        AttributionStatus::Unmatched
    );
}

#[tokio::test]
async fn a_pending_sale_that_matches_at_its_expiry_is_matched_late() {
    let mut h = Harness::new().await;
    let id = h.send(sale(json!({"clickId": "c_slow"})), T0).await;
    h.run(T0).await;
    let until = T0 + Duration::hours(24);
    // The click is registered but its queue row and the expiry are taken in one step.
    h.click(
        json!({"clickId": "c_slow", "wbraid": "w", "timestamp": "2026-04-10T11:00:00Z"}),
        until,
    )
    .await;
    let decided = h.run_one(id, until).await;
    assert_eq!(decided.attribution.status, AttributionStatus::Matched);
    assert!(!decided.first);
    assert_eq!(
        reason(&decided, "google_ads"),
        "matched late; wbraid present: google_ads offline click conversion"
    );
}

#[tokio::test]
async fn with_no_pending_window_a_sale_without_a_touchpoint_is_unmatched_at_once() {
    let mut h = Harness::new().await;
    h.settings.pending_window = StdDuration::ZERO;
    let id = h.send(sale(json!({"email": "a@b.io"})), T0).await;
    let decided = h.run_one(id, T0).await;
    assert!(decided.first);
    assert_eq!(decided.attribution.status, AttributionStatus::Unmatched);
    assert_eq!(dispatches(&decided), ["webhook"]);
}

#[tokio::test]
async fn a_sale_decided_after_its_window_is_unmatched_not_pending() {
    let mut h = Harness::new().await;
    let id = h.send(sale(json!({"email": "a@b.io"})), T0).await;
    // The matcher was down for two days.
    let decided = h.run_one(id, days(T0, 2)).await;
    assert!(decided.first);
    assert_eq!(decided.attribution.status, AttributionStatus::Unmatched);
    assert_eq!(
        reason(&decided, "webhook"),
        "unmatched: webhooks get every subscribed event"
    );
}

#[tokio::test]
async fn a_claimed_event_that_is_no_longer_stored_is_skipped() {
    let mut h = Harness::new().await;
    let kept = h.send(sale(json!({"email": "a@b.io"})), T0).await;
    let dropped = h.send(sale(json!({"email": "c@d.io"})), T0).await;
    h.journal.remove(&dropped);
    let decided = h.run(T0).await;
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0].event_id, kept);
    assert_eq!(h.decision(dropped).await, None);

    // A pending event that went away before its window ended is closed when the window ends.
    h.journal.remove(&kept);
    let until = T0 + Duration::hours(24);
    let (claim, decided) = h.step(until).await.unwrap();
    assert_eq!(claim.event_ids, [kept]);
    assert!(decided.is_empty());
    let closed = h.decision(kept).await.unwrap();
    assert_eq!(closed.attribution.status, AttributionStatus::Unmatched);
    assert!(closed.routes.iter().all(|r| !r.dispatch));
    assert!(h.step(until).await.is_none());
}

#[tokio::test]
async fn a_pending_sale_is_matched_when_a_later_event_merges_its_person_with_a_clicker() {
    let mut h = Harness::new().await;
    h.click(
        json!({"clickId": "c1", "timestamp": "2026-04-10T08:00:00Z", "fbclid": "f"}),
        T0,
    )
    .await;
    // Two persons: one clicked, the other bought.
    h.send(
        json!({"event": "lead", "timestamp": "2026-04-10T09:00:00Z", "clickId": "c1",
               "email": "e@x.io"}),
        T0,
    )
    .await;
    let id = h.send(sale(json!({"phone": "+14155550199"})), T0).await;
    let decided = h.run(T0).await;
    assert_eq!(decided.len(), 2);
    assert_eq!(h.persons().await, 2);
    assert_eq!(
        h.decision(id).await.unwrap().attribution.status,
        AttributionStatus::Pending
    );

    let later = T0 + Duration::hours(6);
    h.send(
        json!({"event": "lead", "phone": "+14155550199", "email": "e@x.io"}),
        later,
    )
    .await;
    let decided = h.run(later).await;
    assert_eq!(decided.len(), 2, "{decided:#?}");
    let late = decided.iter().find(|d| d.event_id == id).unwrap();
    assert!(!late.first);
    assert_eq!(late.attribution.matched_by, Some(MatchedBy::Phone));
    assert_eq!(dispatches(late), ["meta"]);
    assert_eq!(h.persons().await, 1);
}

#[tokio::test]
async fn a_click_registered_after_the_event_that_named_it_becomes_the_persons_click() {
    let mut h = Harness::new().await;
    // The lead names a click nobody registered yet: unmatched at once, as a lead.
    h.send(
        json!({"event": "lead", "timestamp": "2026-04-10T12:00:00Z", "clickId": "c_late",
               "customerExternalId": "u7"}),
        T0,
    )
    .await;
    h.run(T0).await;
    // The click arrives later, dated before the lead.
    h.click(
        json!({"clickId": "c_late", "timestamp": "2026-04-10T11:00:00Z", "gclid": "g"}),
        T0 + Duration::hours(1),
    )
    .await;
    assert!(h.run(T0 + Duration::hours(1)).await.is_empty());
    // The person's next sale finds it.
    let at = T0 + Duration::hours(2);
    let id = h
        .send(
            sale(json!({"timestamp": "2026-04-10T14:00:00Z", "customerExternalId": "u7"})),
            at,
        )
        .await;
    let decided = h.run_one(id, at).await;
    assert!(decided.first);
    assert_eq!(
        decided.attribution.matched_by,
        Some(MatchedBy::CustomerExternalId)
    );
    assert_eq!(
        decided.attribution.click.unwrap().click_id.as_deref(),
        Some("c_late")
    );
}
