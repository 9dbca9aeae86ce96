//! A workspace the planner's statistics have not seen yet is looked up by the same index probes
//! as any other: the pool's connections plan a statement once for every workspace.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use uuid::Uuid;

/// The last click of a person in a window, as the matcher's probes and the report stage's window
/// reads look for it.
const LAST_CLICK: &str = "
    PREPARE last_click(uuid, uuid, timestamptz, timestamptz) AS
    SELECT identifier FROM identities
    WHERE workspace_id = $1 AND person_id = $2 AND clicked_at IS NOT NULL
      AND clicked_at <= $3 AND clicked_at >= $4
    ORDER BY clicked_at DESC, identifier DESC
    LIMIT 1";

#[tokio::test]
async fn a_workspace_younger_than_the_statistics_is_looked_up_by_index() {
    let db = common::test_db().await;
    let pool = ingest_api::db::pool(&db.url, 1, Duration::from_secs(10)).unwrap();
    let client = pool.get().await.unwrap();
    // A workspace with many persons and clicks, analysed: the statistics know only it.
    let old = Uuid::now_v7();
    client
        .execute(
            "INSERT INTO identities (workspace_id, identifier, kind, person_id, clicked_at)
             SELECT $1, decode(md5(i::text), 'hex'), 'gclid',
                    md5((i / 50)::text)::uuid, now() - i * interval '1 minute'
             FROM generate_series(1, 20000) AS i",
            &[&old],
        )
        .await
        .unwrap();
    client.batch_execute("ANALYZE identities").await.unwrap();
    // Then a new workspace whose person has a long history.
    let new = Uuid::now_v7();
    let person = Uuid::now_v7();
    client
        .execute(
            "INSERT INTO identities (workspace_id, identifier, kind, person_id, clicked_at)
             SELECT $1, decode(md5('new' || i), 'hex'), 'gclid', $2,
                    now() - i * interval '1 minute'
             FROM generate_series(1, 3000) AS i",
            &[&new, &person],
        )
        .await
        .unwrap();

    client.batch_execute(LAST_CLICK).await.unwrap();
    let explain = format!(
        "EXPLAIN (FORMAT JSON) EXECUTE last_click('{new}', '{person}', now(), now() - interval '30 days')"
    );
    let plan = || async {
        let rows = client.simple_query(&explain).await.unwrap();
        rows.iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .unwrap()
    };

    // The pool's sessions plan once for every workspace, and that plan probes the person's
    // clicks in identities_touches, however often it runs.
    let mode = client.simple_query("SHOW plan_cache_mode").await.unwrap();
    let mode = mode.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(mode.as_deref(), Some("force_generic_plan"));
    for _ in 0..6 {
        let plan = plan().await;
        assert!(
            plan.contains("\"Index Name\": \"identities_touches\""),
            "the person's clicks are read through identities_touches: {plan}"
        );
        assert!(
            !plan.contains("identities_pkey") && !plan.contains("\"Sort\""),
            "not a scan of the workspace's range, then a sort: {plan}"
        );
    }

    // Why: planned for this workspace, the statistics (which know only the old one) call its
    // rows one, and a scan of its whole primary-key range then looks as cheap as the probe.
    client
        .batch_execute("SET plan_cache_mode = force_custom_plan")
        .await
        .unwrap();
    let plan = plan().await;
    assert!(
        plan.contains("\"Plan Rows\": 1,"),
        "a workspace the statistics have not seen is estimated at one row: {plan}"
    );
    client.batch_execute("RESET plan_cache_mode").await.unwrap();
}
