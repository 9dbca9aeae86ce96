//! Erasing a person's events (`POST /v1/persons/erase`): the journal deletes every event of a
//! workspace that carries one of the person's identifiers. The identity graph keeps identifiers
//! only as SHA-256 digests of `"<field>:<normalised value>"`, so the events are found by hashing
//! their stored (normalised) fields the same way, inside PostgreSQL.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

/// An event the erasure deleted: what the dedup records of it are filed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasedEvent {
    /// Its id.
    pub id: Uuid,
    /// `lead` or `sale`.
    pub kind: String,
    /// Its `leadId` / `invoiceId`, if it had one.
    pub natural_key: Option<String>,
}

/// One pass over the workspace's events: an event goes when one of its identifier fields
/// (`fields`, the payload's wire names) hashes to one of `identifiers`.
const ERASE: &str = "
    DELETE FROM events e
    WHERE e.workspace_id = $1
      AND EXISTS (
          SELECT 1 FROM jsonb_each_text(e.payload) AS f(name, value)
          WHERE f.name = ANY($3::text[])
            AND sha256(convert_to(f.name || ':' || f.value, 'UTF8')) = ANY($2::bytea[]))
    RETURNING e.id, e.kind, e.natural_key";

/// Deletes, in the caller's transaction, every event of the workspace whose identifier fields
/// (`fields`: `email`, `customerExternalId`, …) hash, as `SHA-256("<field>:<value>")`, to one of
/// `identifiers`. Answers the deleted events.
///
/// It reads the workspace's events once (no index holds the digests); erasure is rare and runs in
/// one transaction of its own.
pub async fn erase_events(
    client: &impl GenericClient,
    workspace_id: Uuid,
    identifiers: &[Vec<u8>],
    fields: &[&str],
) -> Result<Vec<ErasedEvent>, tokio_postgres::Error> {
    if identifiers.is_empty() || fields.is_empty() {
        return Ok(Vec::new());
    }
    let stmt = client.prepare_cached(ERASE).await?;
    client
        .query(&stmt, &[&workspace_id, &identifiers, &fields])
        .await?
        .into_iter()
        .map(|r| {
            Ok(ErasedEvent {
                id: r.try_get(0)?,
                kind: r.try_get(1)?,
                natural_key: r.try_get(2)?,
            })
        })
        .collect()
}
