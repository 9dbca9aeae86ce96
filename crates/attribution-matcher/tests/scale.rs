//! Attribution at scale: identifiers shared by too many people stop linking, merges write the
//! merge only, and a person's long history changes neither the decision nor what a step reads.
#![allow(clippy::unwrap_used)]

mod common;

use attribution_matcher::MatchSettings;
use common::{Harness, T0};
use events::{AttributionStatus, MatchedBy};
use serde_json::json;
use time::Duration;

fn minutes(at: time::OffsetDateTime, n: i64) -> time::OffsetDateTime {
    at + Duration::minutes(n)
}

#[tokio::test]
async fn a_placeholder_email_stops_linking_customers_past_the_limit() {
    let mut h = Harness::new().await;
    h.settings = MatchSettings {
        identity_max_links: 3,
        identity_max_customer_ids: 3,
        ..MatchSettings::default()
    };
    // Six customers check out as guests with one shop placeholder; each clicked an ad of its own.
    for n in 0..6 {
        h.send(
            json!({"event": "lead", "customerExternalId": format!("cust_{n}"),
                   "email": "test@example.com", "gclid": format!("g_{n}")}),
            minutes(T0, n),
        )
        .await;
    }
    let decided = h.run(minutes(T0, 10)).await;
    assert_eq!(decided.len(), 6);
    // The first three share a person; the fourth would make four customer ids in one person.
    for d in &decided[..3] {
        assert!(d.attribution.ignored_identifiers.is_empty(), "{d:#?}");
    }
    for d in &decided[3..] {
        let ignored: Vec<_> = d
            .attribution
            .ignored_identifiers
            .iter()
            .map(|i| (i.field.as_str(), i.reason.as_str()))
            .collect();
        assert_eq!(ignored, [("email", "too_common")], "{d:#?}");
    }
    // A later sale of the sixth customer, without a click of its own, is theirs alone.
    let sale = h
        .send(
            json!({"event": "sale", "customerExternalId": "cust_5", "email": "test@example.com",
                   "amount": 10, "currency": "EUR"}),
            minutes(T0, 20),
        )
        .await;
    let d = h.run_one(sale, minutes(T0, 20)).await;
    assert_eq!(
        d.attribution.matched_by,
        Some(MatchedBy::CustomerExternalId)
    );
    assert_eq!(
        d.attribution.click.unwrap().click_ids.gclid.as_deref(),
        Some("g_5")
    );
    assert_eq!(d.attribution.ignored_identifiers.len(), 1);
    // The decision as stored says the same.
    let stored = h.decision(sale).await.unwrap();
    assert_eq!(stored.attribution.ignored_identifiers.len(), 1);
    // Never more than three customer ids in one person.
    let client = h.pool.get().await.unwrap();
    let biggest: i64 = client
        .query_one(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM identities i
               LEFT JOIN persons p ON p.workspace_id = i.workspace_id AND p.person_id = i.person_id
               WHERE i.workspace_id = $1 AND i.kind = 'customerExternalId'
               GROUP BY coalesce(p.merged_into, i.person_id)) s",
            &[&h.workspace],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(biggest, 3);
}

#[tokio::test]
async fn by_default_a_placeholder_email_never_joins_two_customers() {
    let mut h = Harness::new().await;
    // Four customers give the shop's placeholder e-mail; each clicked an ad of its own.
    for n in 0..4 {
        h.send(
            json!({"event": "lead", "customerExternalId": format!("cust_{n}"),
                   "email": "test@example.com", "gclid": format!("g_{n}")}),
            minutes(T0, n),
        )
        .await;
    }
    let decided = h.run(minutes(T0, 10)).await;
    assert_eq!(decided.len(), 4);
    // The first customer's link stands; from the second on the e-mail links nobody.
    assert!(decided[0].attribution.ignored_identifiers.is_empty());
    for d in &decided[1..] {
        let fields: Vec<_> = d
            .attribution
            .ignored_identifiers
            .iter()
            .map(|i| i.field.as_str())
            .collect();
        assert_eq!(fields, ["email"], "{d:#?}");
    }
    // A sale of each customer, without a click of its own, goes to that customer's click.
    for n in 0..4 {
        let sale = h
            .send(
                json!({"event": "sale", "customerExternalId": format!("cust_{n}"),
                       "email": "test@example.com", "amount": 10, "currency": "EUR"}),
                minutes(T0, 20 + n),
            )
            .await;
        let d = h.run_one(sale, minutes(T0, 30)).await;
        assert_eq!(
            d.attribution.click.map(|c| c.click_ids.gclid),
            Some(Some(format!("g_{n}"))),
            "sale of cust_{n}"
        );
    }
    // Four customers, four persons: none holds two customer ids.
    let client = h.pool.get().await.unwrap();
    let biggest: i64 = client
        .query_one(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM identities i
               LEFT JOIN persons p ON p.workspace_id = i.workspace_id AND p.person_id = i.person_id
               WHERE i.workspace_id = $1 AND i.kind = 'customerExternalId'
               GROUP BY coalesce(p.merged_into, i.person_id)) s",
            &[&h.workspace],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(biggest, 1);
}

#[tokio::test]
async fn a_shared_customer_id_is_the_one_left_out_not_the_real_email() {
    let mut h = Harness::new().await;
    h.settings = MatchSettings {
        identity_max_links: 2,
        ..MatchSettings::default()
    };
    for n in 0..3 {
        h.send(
            json!({"event": "lead", "customerExternalId": "guest",
                   "email": format!("buyer{n}@mail.example"), "gclid": format!("g_{n}")}),
            minutes(T0, n),
        )
        .await;
    }
    let decided = h.run(minutes(T0, 5)).await;
    let fields: Vec<_> = decided[2]
        .attribution
        .ignored_identifiers
        .iter()
        .map(|i| i.field.as_str())
        .collect();
    assert_eq!(fields, ["customerExternalId"]);
    // Once marked, "guest" links nobody, whatever the order of identifiers.
    let sale = h
        .send(
            json!({"event": "sale", "customerExternalId": "guest", "email": "buyer2@mail.example",
                   "amount": 1, "currency": "EUR"}),
            minutes(T0, 10),
        )
        .await;
    let d = h.run_one(sale, minutes(T0, 10)).await;
    assert_eq!(d.attribution.matched_by, Some(MatchedBy::Email));
    assert_eq!(
        d.attribution.click.unwrap().click_ids.gclid.as_deref(),
        Some("g_2")
    );
}

#[tokio::test]
async fn a_long_history_changes_neither_the_choice_nor_the_rows_a_step_reads() {
    let mut h = Harness::new().await;
    // 300 clicks of one customer over 100 days: the window (90 days) holds the later ones.
    for n in 0..300 {
        h.send(
            json!({"event": "lead", "customerExternalId": "loyal", "gclid": format!("g_{n}"),
                   "timestamp": time::OffsetDateTime::format(minutes(T0, n * 480), &time::format_description::well_known::Rfc3339).unwrap()}),
            minutes(T0, n * 480),
        )
        .await;
    }
    let end = minutes(T0, 300 * 480);
    h.run(end).await;
    let sale = h
        .send(
            json!({"event": "sale", "customerExternalId": "loyal", "amount": 5, "currency": "EUR"}),
            end,
        )
        .await;
    let d = h.run_one(sale, end).await;
    assert_eq!(d.attribution.status, AttributionStatus::Matched);
    assert_eq!(
        d.attribution.click.unwrap().click_ids.gclid.as_deref(),
        Some("g_299")
    );
    // The first click within 90 days of the sale: click n at n * 8 h, the sale at 2,400 h.
    let first = d.attribution.first_touch.unwrap();
    assert_eq!(first.click_ids.gclid.as_deref(), Some("g_30"));

    // The probe behind it reads the two ends of the window, not the person's 300 clicks.
    let client = h.pool.get().await.unwrap();
    let plan: Vec<String> = client
        .query(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
             SELECT identifier FROM identities
             WHERE workspace_id = $1 AND person_id = (SELECT person_id FROM identities
                                                      WHERE workspace_id = $1 AND kind = 'gclid' LIMIT 1)
               AND clicked_at <= $2 AND clicked_at >= $3
             ORDER BY clicked_at DESC, identifier DESC LIMIT 1",
            &[&h.workspace, &end, &(end - Duration::days(90))],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("identities_touches"), "{plan}");
}
