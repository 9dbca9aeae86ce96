//! Erasing a person (`POST /v1/persons/erase`): the matcher's part.
//!
//! [`resolve_person`] finds the whole connected person some identifiers resolve to (the person
//! each identifier is filed under, the person that one was merged into, and every person merged
//! into that) and every identifier the person holds. [`forget_person`] then deletes the person's
//! identity rows and persons, the registered clicks linked to them, the decisions about the
//! erased events, and their queued work. Both run in the caller's transaction, after
//! [`lock_graph`] has made it the only writer of the workspace's graph.

use deadpool_postgres::GenericClient;
use events::IdentifierHash;
use uuid::Uuid;

use crate::Result;

/// The person as found: the persons it is made of and the identifiers (digests) they hold,
/// those asked for included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErasablePerson {
    /// Every person of the connected person: the one that absorbed the others, and its members.
    pub persons: Vec<Uuid>,
    /// The digests of every identifier filed under them, and of the identifiers asked for.
    pub identifiers: Vec<Vec<u8>>,
}

/// What [`forget_person`] deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Identity rows (identifiers) deleted.
    pub identifiers: u64,
    /// The ids of the registered clicks deleted.
    pub click_ids: Vec<String>,
}

/// The same lock as a worker's claim: while the erasure holds it no attribution step writes the
/// workspace's graph, so none can file an identifier of the person again from an event that is
/// being erased.
const LOCK: &str = "
    SELECT pg_advisory_xact_lock(hashtextextended('attribution-matcher:' || ($1::uuid)::text, 0))";

/// Waits for, then holds until the caller's transaction ends, the workspace's graph lock.
pub async fn lock_graph(client: &impl GenericClient, workspace_id: Uuid) -> Result<()> {
    let stmt = client.prepare_cached(LOCK).await?;
    client.execute(&stmt, &[&workspace_id]).await?;
    Ok(())
}

/// The persons the identifiers are filed under, resolved to the person each now belongs to, with
/// its members. An identifier marked too common links nobody, so it names no person here either.
const PERSONS: &str = "
    WITH found AS (
        SELECT DISTINCT person_id FROM identities
        WHERE workspace_id = $1 AND identifier = ANY($2::bytea[]) AND NOT too_common
    ), roots AS (
        SELECT DISTINCT coalesce(p.merged_into, f.person_id) AS root
        FROM found f
        LEFT JOIN persons p ON p.workspace_id = $1 AND p.person_id = f.person_id
    )
    SELECT root FROM roots
    UNION
    SELECT unnest(p.members) FROM roots r
    JOIN persons p ON p.workspace_id = $1 AND p.person_id = r.root";

/// Every identifier filed under the persons. The graph has no index by person (decisions never
/// need one), so this reads the workspace's identities once.
const IDENTIFIERS: &str = "
    SELECT identifier FROM identities WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])";

/// Resolves `identifiers` (digests, see [`crate::identifier_hash`]) to the whole connected
/// person.
pub async fn resolve_person(
    client: &impl GenericClient,
    workspace_id: Uuid,
    identifiers: &[IdentifierHash],
) -> Result<ErasablePerson> {
    let asked: Vec<Vec<u8>> = identifiers.iter().map(|h| h.to_vec()).collect();
    let stmt = client.prepare_cached(PERSONS).await?;
    let persons: Vec<Uuid> = client
        .query(&stmt, &[&workspace_id, &asked])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let mut all = asked;
    if !persons.is_empty() {
        let stmt = client.prepare_cached(IDENTIFIERS).await?;
        for row in client.query(&stmt, &[&workspace_id, &persons]).await? {
            all.push(row.try_get(0)?);
        }
    }
    all.sort_unstable();
    all.dedup();
    Ok(ErasablePerson {
        persons,
        identifiers: all,
    })
}

const DELETE_IDENTITIES: &str = "
    DELETE FROM identities
    WHERE workspace_id = $1 AND (person_id = ANY($2::uuid[]) OR identifier = ANY($3::bytea[]))";

const DELETE_PERSONS: &str = "
    DELETE FROM persons WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])";

/// A registered click is the person's when its node (`clickId:<id>`) is one of theirs.
const DELETE_CLICKS: &str = "
    DELETE FROM clicks WHERE workspace_id = $1 AND identifier = ANY($2::bytea[])
    RETURNING click_id";

const DELETE_ATTRIBUTIONS: &str = "
    DELETE FROM attributions
    WHERE workspace_id = $1 AND (event_id = ANY($2::uuid[]) OR person_id = ANY($3::uuid[]))";

/// Queued work: erased events leave their groups (a group left empty goes), and a registered
/// click waiting to be filed goes with the click.
const DEQUEUE_EVENTS: &str = "
    WITH changed AS (
        SELECT q.workspace_id, q.id,
               array(SELECT e FROM unnest(q.event_ids) AS e WHERE e <> ALL($2::uuid[])) AS kept
        FROM match_queue q
        WHERE q.workspace_id = $1 AND q.event_ids && $2::uuid[]
    ), emptied AS (
        DELETE FROM match_queue q USING changed c
        WHERE q.workspace_id = c.workspace_id AND q.id = c.id AND cardinality(c.kept) = 0
    )
    UPDATE match_queue q SET event_ids = c.kept
    FROM changed c
    WHERE q.workspace_id = c.workspace_id AND q.id = c.id AND cardinality(c.kept) > 0";

const DEQUEUE_CLICKS: &str = "
    DELETE FROM match_queue WHERE workspace_id = $1 AND click_identifier = ANY($2::bytea[])";

/// Deletes the person's graph, linked clicks, and the decisions and queued work of the erased
/// events (`events`), in the caller's transaction; the workers' copies of the graph are told.
pub async fn forget_person(
    client: &impl GenericClient,
    workspace_id: Uuid,
    person: &ErasablePerson,
    events: &[Uuid],
) -> Result<Forgotten> {
    let persons = &person.persons;
    let identifiers = &person.identifiers;
    let stmt = client.prepare_cached(DELETE_IDENTITIES).await?;
    let deleted = client
        .execute(&stmt, &[&workspace_id, persons, identifiers])
        .await?;
    let stmt = client.prepare_cached(DELETE_PERSONS).await?;
    client.execute(&stmt, &[&workspace_id, persons]).await?;
    let stmt = client.prepare_cached(DELETE_CLICKS).await?;
    let click_ids = client
        .query(&stmt, &[&workspace_id, identifiers])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<Vec<String>, _>>()?;
    let stmt = client.prepare_cached(DELETE_ATTRIBUTIONS).await?;
    client
        .execute(&stmt, &[&workspace_id, &events, persons])
        .await?;
    let stmt = client.prepare_cached(DEQUEUE_EVENTS).await?;
    client.execute(&stmt, &[&workspace_id, &events]).await?;
    let stmt = client.prepare_cached(DEQUEUE_CLICKS).await?;
    client.execute(&stmt, &[&workspace_id, identifiers]).await?;
    crate::graph_changed(client, workspace_id).await?;
    Ok(Forgotten {
        identifiers: deleted,
        click_ids,
    })
}
