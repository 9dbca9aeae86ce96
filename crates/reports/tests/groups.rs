//! A click filed with the id of its groups is credited from `click_groups`, without the event
//! that carried it: the report stage does not read the journal for it.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use attribution_matcher::window::{WindowClick, WindowSource};
use reports::{ClickCache, ClickGroups};
use test_support::TestDb;
use time::macros::datetime;
use uuid::Uuid;

#[tokio::test]
async fn a_click_filed_with_its_groups_is_resolved_without_its_event() {
    let migrations = format!(
        "reports-groups:{:?}{:?}",
        journal::migrations(),
        attribution_matcher::migrations()
    );
    let db = TestDb::new(&migrations, |client| {
        Box::pin(async move {
            journal::migrate(client).await.map_err(|e| e.to_string())?;
            attribution_matcher::migrate(client)
                .await
                .map_err(|e| e.to_string())
        })
    })
    .await;
    let pool = db.pool(1);
    let client = pool.get().await.unwrap();
    let ws = Uuid::now_v7();
    let spring = ClickGroups {
        channel: "google_ads".into(),
        source: Some("google".into()),
        medium: Some("cpc".into()),
        campaign: Some("spring".into()),
    };
    client
        .execute(
            "INSERT INTO click_groups (workspace_id, id, channel, source, medium, campaign)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &ws,
                &spring.id(),
                &spring.channel,
                &spring.source,
                &spring.medium,
                &spring.campaign,
            ],
        )
        .await
        .unwrap();

    // Neither click's event is in the journal: the one filed with its groups is still a touch,
    // the one filed without them is left out (as a click of an erased event).
    let conversion = Uuid::now_v7();
    let click = |owner: u8, group: Option<i64>| WindowClick {
        owner: [owner; 16],
        clicked_at: datetime!(2026-04-01 10:00 UTC),
        source: WindowSource::Carried(Uuid::now_v7()),
        group,
    };
    let windows: attribution_matcher::HashMap<_, _> = [(
        conversion,
        vec![click(1, Some(spring.id())), click(2, None)],
    )]
    .into_iter()
    .collect();
    let mut cache = ClickCache::new(0);
    let touches = reports::touches::resolve(&client, ws, windows, &HashMap::new(), &mut cache)
        .await
        .unwrap();
    let touches = &touches[&conversion];
    assert_eq!(touches.len(), 1);
    assert_eq!(touches[0].owner, Some([1; 16]));
    assert_eq!(*touches[0].groups, spring);

    // Another workspace's groups are not this one's.
    let other: attribution_matcher::HashMap<_, _> =
        [(conversion, vec![click(1, Some(spring.id()))])]
            .into_iter()
            .collect();
    let touches =
        reports::touches::resolve(&client, Uuid::now_v7(), other, &HashMap::new(), &mut cache)
            .await
            .unwrap();
    assert!(touches[&conversion].is_empty());
}
