//! Erasing a person's events (`POST /v1/persons/erase`): the journal deletes every event of a
//! workspace that carries one of the person's identifiers. The identity graph keeps identifiers
//! only as SHA-256 digests of `"<field>:<normalised value>"`, so the events are found by hashing
//! their stored (normalised) fields the same way.

use std::collections::HashSet;

use deadpool_postgres::GenericClient;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::body::{Body, BODY};

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

/// A page of the workspace's events after the id `$2`, in id order, with their bodies.
fn scan_sql() -> String {
    format!(
        "SELECT id, {BODY} FROM events
         WHERE workspace_id = $1 AND id > $2
         ORDER BY id
         LIMIT $3"
    )
}

/// Events read a page at a time: a page's bodies are a few megabytes at most.
const PAGE: i64 = 5_000;

const DELETE: &str = "
    DELETE FROM events e
    USING unnest($2::uuid[]) AS q(id)
    WHERE e.workspace_id = $1 AND e.id = q.id
    RETURNING e.id, e.kind, e.natural_key";

/// Deletes, in the caller's transaction, every event of the workspace whose identifier fields
/// (`fields`: `email`, `customerExternalId`, …) hash, as the identity graph keeps them
/// ([`events::identifier_hash`] of the field's name and value), to one of `identifiers`. Answers the deleted events.
///
/// It reads the workspace's events once, a page at a time (no index holds the digests, and the
/// bodies are compressed); erasure is rare and runs in one transaction of its own.
pub async fn erase_events(
    client: &impl GenericClient,
    workspace_id: Uuid,
    identifiers: &[Vec<u8>],
    fields: &[&str],
) -> Result<Vec<ErasedEvent>, tokio_postgres::Error> {
    if identifiers.is_empty() || fields.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: HashSet<&[u8]> = identifiers.iter().map(Vec::as_slice).collect();
    let scan = client.prepare_cached(&scan_sql()).await?;
    let mut after = Uuid::nil();
    let mut carrying = Vec::new();
    loop {
        let rows = client.query(&scan, &[&workspace_id, &after, &PAGE]).await?;
        for row in &rows {
            let id: Uuid = row.try_get(0)?;
            let Body(body) = row.try_get::<_, Body<Map<String, Value>>>(1)?;
            if carries(&body, fields, &wanted) {
                carrying.push(id);
            }
        }
        match rows.last() {
            Some(last) if rows.len() as i64 == PAGE => after = last.try_get(0)?,
            _ => break,
        }
    }
    if carrying.is_empty() {
        return Ok(Vec::new());
    }
    let delete = client.prepare_cached(DELETE).await?;
    client
        .query(&delete, &[&workspace_id, &carrying])
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

/// Whether one of the body's `fields` hashes, with its name, to one of `wanted`: its value as
/// text (a string as it is, anything else as its JSON).
fn carries(body: &Map<String, Value>, fields: &[&str], wanted: &HashSet<&[u8]>) -> bool {
    fields.iter().any(|&name| {
        body.get(name).is_some_and(|value| {
            let hash = match value {
                Value::String(text) => events::identifier_hash(name, text),
                other => events::identifier_hash(name, &other.to_string()),
            };
            wanted.contains(hash.as_slice())
        })
    })
}
