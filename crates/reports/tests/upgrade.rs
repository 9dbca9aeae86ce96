//! Upgrading a database whose credit was kept one row per touch (`credit_shares`) to the touches
//! on each conversion's row: every conversion's touches and shares read back as they were,
//! and the rollups rebuilt from them count what they counted.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use events::{ClickIds, EventKind, Utm};
use reports::{ClickGroups, Conversion, Decided, Touch};
use rust_decimal::Decimal;
use test_support::TestDb;
use time::macros::datetime;
use time::OffsetDateTime;
use uuid::Uuid;

fn touch(owner: u8, at: OffsetDateTime, source: &str, gclid: bool) -> Touch {
    let ids = ClickIds {
        gclid: gclid.then(|| "g".to_owned()),
        ..ClickIds::default()
    };
    let utm = Utm {
        source: Some(source.into()),
        campaign: Some("spring".into()),
        ..Utm::default()
    };
    Touch {
        owner: Some([owner; 16]),
        clicked_at: at,
        groups: Arc::new(ClickGroups::of(&ids, Some(&utm))),
    }
}

/// A conversion: its id, the owners of its touchpoint and first touch, its window.
type Case = (Uuid, Option<u8>, Option<u8>, Vec<Touch>);

#[tokio::test]
async fn per_touch_shares_become_one_row_per_conversion_that_reads_back_the_same() {
    // The report stage reads the matcher's tables (click_groups): a database holds both.
    let db = TestDb::new("reports-v4-with-matcher", |client| {
        Box::pin(async move {
            attribution_matcher::migrate(client)
                .await
                .map_err(|e| e.to_string())?;
            reports::migrate_to(client, 4)
                .await
                .map_err(|e| e.to_string())
        })
    })
    .await;
    let mut client = db.client().await;
    let ws = Uuid::now_v7();
    let at = datetime!(2026-04-20 0:00 UTC);
    let no_ids = ClickIds::default();
    // A conversion without a touch, one with touches of three groups (the touchpoint not the
    // latest), one with two touches of one group.
    let cases: Vec<Case> = vec![
        (Uuid::now_v7(), None, None, Vec::new()),
        (
            Uuid::now_v7(),
            Some(2),
            Some(1),
            vec![
                touch(1, datetime!(2026-03-25 0:00 UTC), "google", true),
                touch(2, datetime!(2026-04-10 8:30 UTC), "newsletter", false),
                touch(3, datetime!(2026-04-12 0:00 UTC), "google", true),
                touch(4, datetime!(2026-04-19 23:59:59.5 UTC), "partner", false),
            ],
        ),
        (
            Uuid::now_v7(),
            Some(6),
            Some(5),
            vec![
                touch(5, datetime!(2026-04-01 0:00 UTC), "google", true),
                touch(6, datetime!(2026-04-02 0:00 UTC), "google", true),
            ],
        ),
    ];
    let mut expected = Vec::new();
    for (event_id, last, first, window) in &cases {
        let conversion = Conversion {
            event_id: *event_id,
            kind: EventKind::Sale,
            occurred_at: at,
            event_name: "purchase",
            value: Some((Decimal::new(9950, 2), "USD")),
            retracted: false,
            carried: (&no_ids, None),
            decided: Decided::Owners {
                touch: last.map(|o| [o; 16]),
                first_touch: first.map(|o| [o; 16]),
            },
        };
        let credited = reports::credit_one(&conversion, window.clone());
        client
            .execute(
                "INSERT INTO report_conversions (workspace_id, event_id, kind, occurred_at,
                     event_name, tier, amount, currency, credited_at)
                 VALUES ($1, $2, 'sale', $3, 'purchase', 'macro', 99.50, 'USD', now())",
                &[&ws, event_id, &at],
            )
            .await
            .unwrap();
        for (n, c) in credited.iter().enumerate() {
            let n = i16::try_from(n).unwrap();
            let owner = c.clicked_at.map(|_| vec![n as u8; 32]);
            client
                .execute(
                    "INSERT INTO credit_shares (workspace_id, event_id, n, owner, clicked_at,
                         channel, source, medium, campaign, last_click, first_click, linear,
                         position_based, time_decay)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                    &[
                        &ws,
                        event_id,
                        &n,
                        &owner,
                        &c.clicked_at,
                        &c.channel,
                        &c.source,
                        &c.medium,
                        &c.campaign,
                        &c.shares[0],
                        &c.shares[1],
                        &c.shares[2],
                        &c.shares[3],
                        &c.shares[4],
                    ],
                )
                .await
                .unwrap();
        }
        expected.push((*event_id, credited));
    }

    reports::migrate(&mut client).await.unwrap();
    let pool = db.pool(1);
    let mut client = pool.get().await.unwrap();

    let rows: i64 = client
        .query_one(
            "SELECT count(*) FROM report_conversions WHERE touches IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 2);
    let gone: bool = client
        .query_one("SELECT to_regclass('credit_shares') IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(gone);
    for (event_id, credited) in &expected {
        let read = reports::shares_of(&client, ws, *event_id).await.unwrap();
        assert_eq!(&read, credited, "{event_id}");
    }
    // The rollups rebuilt from the kept touches count the three sales and their revenue.
    let tx = client.transaction().await.unwrap();
    reports::refresh(&tx, ws).await.unwrap();
    tx.commit().await.unwrap();
    for model in 0..5i16 {
        let (sales, revenue): (Decimal, Decimal) = client
            .query_one(
                "SELECT sum(sales), sum(revenue) FROM report_rollups
                 WHERE workspace_id = $1 AND model = $2 AND dim = 0",
                &[&ws, &model],
            )
            .await
            .map(|r| (r.get(0), r.get(1)))
            .unwrap();
        assert_eq!(sales, Decimal::from(3), "model {model}");
        assert_eq!(revenue, Decimal::new(29850, 2), "model {model}");
    }
}
