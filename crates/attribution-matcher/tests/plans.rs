//! A workspace the planner's statistics have not seen yet (one begun since the last `ANALYZE`)
//! has its persons' clicks read by index probes, as any other: the statements that read them do
//! not let the statistics' idea of the workspace choose the plan.
#![allow(clippy::unwrap_used)]

mod common;

use tokio_postgres::SimpleQueryMessage;
use uuid::Uuid;

#[tokio::test]
async fn a_workspace_younger_than_the_statistics_is_probed_by_index() {
    let pool = common::pool().await;
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
    // On a large database the primary key (workspace, identifier) is a level shallower than
    // identities_touches, and a scan of a one-row workspace through it costs less than the probe.
    // An index on the workspace alone makes the same trap on a small table.
    client
        .batch_execute(
            "CREATE INDEX identities_by_workspace ON identities (workspace_id);
             ANALYZE identities",
        )
        .await
        .unwrap();
    let new = Uuid::now_v7();

    // Planned for the new workspace's values, as a prepared statement's first runs are.
    for (n, (sql, types)) in attribution_matcher::person_click_statements()
        .into_iter()
        .enumerate()
    {
        client
            .batch_execute(&format!("PREPARE s{n}({types}) AS {sql}"))
            .await
            .unwrap();
        let args = if n == 0 {
            "ARRAY[gen_random_uuid()], ARRAY[now()], ARRAY[now() - interval '30 days'], ARRAY[true]"
        } else {
            "ARRAY[gen_random_uuid()], ARRAY[now()], ARRAY[now() - interval '30 days'], 100"
        };
        let explain = format!("EXPLAIN (FORMAT JSON) EXECUTE s{n}('{new}', {args})");
        let plan = client
            .simple_query(&explain)
            .await
            .unwrap()
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .unwrap();
        let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
        let mut scans = Vec::new();
        identity_scans(&plan, &mut scans);
        assert!(
            scans.iter().any(|(index, _)| index == "identities_touches"),
            "statement {n} probes identities_touches: {scans:?}"
        );
        // Estimated by its statistics, the new workspace would be one row, and a scan of all its
        // rows, filtered by person, would look as cheap as the probe.
        for (index, cond) in &scans {
            assert!(
                cond.contains("person_id") || cond.contains("identifier"),
                "statement {n} reads identities by person or by identifier, never by workspace alone ({index}): {scans:?}"
            );
        }
    }
}

/// Every scan of `identities` in a JSON plan: its index and index condition.
fn identity_scans(node: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match node {
        serde_json::Value::Array(items) => items.iter().for_each(|n| identity_scans(n, out)),
        serde_json::Value::Object(map) => {
            if map.get("Relation Name").and_then(|v| v.as_str()) == Some("identities") {
                let text = |key: &str| {
                    map.get(key)
                        .and_then(|v| v.as_str())
                        .unwrap_or("(none)")
                        .to_owned()
                };
                out.push((text("Index Name"), text("Index Cond")));
            }
            map.values().for_each(|v| identity_scans(v, out));
        }
        _ => {}
    }
}
