//! Retention: the matcher's part. Decisions are partitioned by month as the journal's events are
//! ([`ATTRIBUTIONS`]): a month of them is dropped whole with its month of events, and what an
//! older, wider partition still holds of them goes by range ([`forget_decisions`]); a person no
//! event has named since the cutoff goes with its identity links and registered clicks
//! ([`forget_idle_persons`]). Also the workspace's stored counts for `GET /v1/usage`
//! ([`usage`]).

use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Result;

/// The decisions, partitioned by month on their event's id, with the bounds of the events'.
pub const ATTRIBUTIONS: journal::retention::MonthlyTable = journal::retention::MonthlyTable {
    name: "attributions",
    key: "event_id",
    options: "",
};

const FORGET_DECISIONS: &str = "
    DELETE FROM attributions WHERE workspace_id = $1 AND event_id < $2";

/// Deletes one workspace's decisions about events whose id sorts before `before` (the upper
/// bound of a partition the journal is about to drop; older ones are gone already): one range
/// of the primary key. Answers how many went.
pub async fn forget_decisions(
    client: &impl GenericClient,
    workspace_id: Uuid,
    before: Uuid,
) -> Result<u64> {
    let stmt = client.prepare_cached(FORGET_DECISIONS).await?;
    Ok(client.execute(&stmt, &[&workspace_id, &before]).await?)
}

/// A person is idle when no event has named it, and none of its identifiers was filed, since
/// the cutoff's day: then nothing kept links to it. Idle persons are a range of the
/// `persons_idle` index (each person keeps its day of use, which attribution steps write once a
/// day at most). They lose their identity links (with those of the persons merged into them,
/// their members); registered clicks registered before the cutoff that no identity links any
/// more go too (a range of `clicks_age`), and so do the persons' rows.
const FORGET_IDLE: &str = "
    WITH idle AS MATERIALIZED (
        SELECT person_id, members FROM persons
        WHERE workspace_id = $1 AND merged_into IS NULL AND used_on < $3
    ), members AS MATERIALIZED (
        SELECT person_id FROM idle
        UNION
        SELECT unnest(members) FROM idle
    ), owned AS MATERIALIZED (
        SELECT x.identifier FROM members m
        CROSS JOIN LATERAL (
            SELECT identifier FROM identities
            WHERE workspace_id = $1 AND person_id = m.person_id AND clicked_at IS NOT NULL
            UNION ALL
            SELECT identifier FROM identities
            WHERE workspace_id = $1 AND person_id = m.person_id AND clicked_at IS NULL
        ) AS x
    ), gone_identities AS (
        DELETE FROM identities
        WHERE workspace_id = $1 AND identifier = ANY (ARRAY(SELECT identifier FROM owned))
        RETURNING identifier
    ), gone_persons AS (
        DELETE FROM persons
        WHERE workspace_id = $1 AND person_id = ANY (ARRAY(SELECT person_id FROM members))
    ), gone_clicks AS (
        DELETE FROM clicks c
        WHERE c.workspace_id = $1 AND c.created_at < $2 AND c.clicked_at < $2
          AND (c.identifier IN (SELECT identifier FROM gone_identities)
               OR NOT EXISTS (SELECT 1 FROM identities i
                              WHERE i.workspace_id = $1 AND i.identifier = c.identifier))
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone_identities), (SELECT count(*) FROM gone_clicks)";

/// What [`forget_idle_persons`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdleForgotten {
    /// Identity links.
    pub identifiers: i64,
    /// Registered clicks.
    pub clicks: i64,
}

/// Removes one workspace's persons idle since `cutoff`, their identity links, and the registered
/// clicks older than `cutoff` that nobody kept links to. It reads only what goes (and the
/// registered clicks older than `cutoff` that identities still link); the workers run it once a
/// round (hourly), in a transaction holding [`crate::erase::lock_graph`].
pub async fn forget_idle_persons(
    client: &impl GenericClient,
    workspace_id: Uuid,
    cutoff: OffsetDateTime,
) -> Result<IdleForgotten> {
    // A person used on the cutoff's day may have been used after the cutoff: it stays.
    let day = crate::decide::step::used_on(cutoff);
    let stmt = client.prepare_cached(FORGET_IDLE).await?;
    let row = client
        .query_one(&stmt, &[&workspace_id, &cutoff, &day])
        .await?;
    let forgotten = IdleForgotten {
        identifiers: row.try_get(0)?,
        clicks: row.try_get(1)?,
    };
    if forgotten.identifiers > 0 {
        // The workers' copies of the graph may hold what went.
        crate::graph_changed(client, workspace_id).await?;
    }
    Ok(forgotten)
}

const WORKSPACES: &str = "
    WITH RECURSIVE w AS (
        (SELECT workspace_id FROM identities ORDER BY workspace_id LIMIT 1)
        UNION ALL
        SELECT (SELECT workspace_id FROM identities i WHERE i.workspace_id > w.workspace_id
                ORDER BY workspace_id LIMIT 1)
        FROM w WHERE w.workspace_id IS NOT NULL
    ), c AS (
        (SELECT workspace_id FROM clicks ORDER BY workspace_id LIMIT 1)
        UNION ALL
        SELECT (SELECT workspace_id FROM clicks k WHERE k.workspace_id > c.workspace_id
                ORDER BY workspace_id LIMIT 1)
        FROM c WHERE c.workspace_id IS NOT NULL
    )
    SELECT workspace_id FROM w WHERE workspace_id IS NOT NULL
    UNION
    SELECT workspace_id FROM c WHERE workspace_id IS NOT NULL";

/// The workspaces with identity links or clicks: a skip scan of both primary keys.
pub async fn graph_workspaces(client: &impl GenericClient) -> Result<Vec<Uuid>> {
    let stmt = client.prepare_cached(WORKSPACES).await?;
    Ok(client
        .query(&stmt, &[])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

/// The matcher's stored counts of one workspace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraphUsage {
    /// Registered clicks.
    pub clicks: i64,
    /// Identity links (identifiers filed under persons).
    pub identifiers: i64,
    /// Persons (not counting those merged into another).
    pub persons: i64,
}

const USAGE: &str = "
    SELECT (SELECT count(*) FROM clicks WHERE workspace_id = $1),
           (SELECT count(*) FROM identities WHERE workspace_id = $1),
           (SELECT count(*) FROM persons WHERE workspace_id = $1 AND merged_into IS NULL)";

/// Counts one workspace's clicks, identity links and persons.
pub async fn usage(client: &impl GenericClient, workspace_id: Uuid) -> Result<GraphUsage> {
    let stmt = client.prepare_cached(USAGE).await?;
    let row = client.query_one(&stmt, &[&workspace_id]).await?;
    Ok(GraphUsage {
        clicks: row.try_get(0)?,
        identifiers: row.try_get(1)?,
        persons: row.try_get(2)?,
    })
}
