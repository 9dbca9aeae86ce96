//! Natural keys: the sender's own id of an event (`invoiceId` of a sale, `leadId` of a lead).
//!
//! A key is claimed with `INSERT … ON CONFLICT DO NOTHING RETURNING` over arrays, so that the
//! primary key decides, even between several processes: a concurrent claim of the same key waits
//! for the first transaction and then sees its row. Keys are sorted before they are inserted so
//! that two transactions always lock them in the same order and cannot deadlock.
//!
//! A key is kept as its [`digest`] (the event keeps the key itself): sixteen bytes whatever the
//! sender's ids look like, and spread evenly over the index, where ids such as `ord_<n>` that
//! grow per sender left its pages half full.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::Result;

/// A natural key to claim for a new event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NaturalKey {
    /// The workspace the key lives in.
    pub workspace_id: Uuid,
    /// `"lead"` or `"sale"`: the two kinds have separate key spaces.
    pub kind: &'static str,
    /// The sender's id.
    pub key: String,
    /// The id the new event will have if the claim wins.
    pub event_id: Uuid,
}

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The key was free: the event is new.
    New,
    /// The key belongs to an earlier event, whose id this is.
    Duplicate(Uuid),
}

/// What the table keeps of a key of `kind`: the first sixteen bytes of
/// `SHA-256("<kind>:<key>")` (a collision among 2^64 keys of a workspace would be the first).
pub fn digest(kind: &str, key: &str) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(kind.as_bytes());
    hasher.update(b":");
    hasher.update(key.as_bytes());
    hasher.finalize()[..16].to_vec()
}

const INSERT_KEYS: &str = "
    INSERT INTO natural_keys (workspace_id, digest, event_id)
    SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::uuid[])
    ON CONFLICT DO NOTHING
    RETURNING event_id";

const SELECT_KEYS: &str = "
    SELECT k.workspace_id, k.digest, k.event_id
    FROM natural_keys k
    JOIN unnest($1::uuid[], $2::bytea[]) AS q(workspace_id, digest)
      ON k.workspace_id = q.workspace_id AND k.digest = q.digest";

/// Claims every key inside the caller's transaction and answers, in input order, whether each
/// event is new or a duplicate of which earlier event.
///
/// Within one call the first occurrence of a key wins and later ones are its duplicates.
pub async fn claim_natural_keys(
    client: &impl GenericClient,
    keys: &[NaturalKey],
) -> Result<Vec<Claim>> {
    let mut claims = vec![Claim::New; keys.len()];
    // First occurrence of each key within this call; later ones point at it.
    let mut first: HashMap<(Uuid, &str, &str), usize> = HashMap::with_capacity(keys.len());
    let mut unique: Vec<usize> = Vec::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        match first.get(&(k.workspace_id, k.kind, k.key.as_str())) {
            Some(&j) => claims[i] = Claim::Duplicate(keys[j].event_id),
            None => {
                first.insert((k.workspace_id, k.kind, k.key.as_str()), i);
                unique.push(i);
            }
        }
    }
    if unique.is_empty() {
        return Ok(claims);
    }
    let digests: Vec<Vec<u8>> = keys.iter().map(|k| digest(k.kind, &k.key)).collect();
    // One lock order for every transaction: the primary key's.
    unique.sort_by(|&a, &b| {
        (keys[a].workspace_id, &digests[a]).cmp(&(keys[b].workspace_id, &digests[b]))
    });
    let ws: Vec<Uuid> = unique.iter().map(|&i| keys[i].workspace_id).collect();
    let claimed: Vec<&[u8]> = unique.iter().map(|&i| digests[i].as_slice()).collect();
    let ids: Vec<Uuid> = unique.iter().map(|&i| keys[i].event_id).collect();

    let insert = client.prepare_cached(INSERT_KEYS).await?;
    let won = client.query(&insert, &[&ws, &claimed, &ids]).await?;
    if won.len() == unique.len() {
        return Ok(claims);
    }
    let won: std::collections::HashSet<Uuid> = won.iter().map(|r| r.get(0)).collect();
    let lost: Vec<usize> = unique
        .into_iter()
        .filter(|&i| !won.contains(&keys[i].event_id))
        .collect();
    let ws: Vec<Uuid> = lost.iter().map(|&i| keys[i].workspace_id).collect();
    let taken: Vec<&[u8]> = lost.iter().map(|&i| digests[i].as_slice()).collect();
    let select = client.prepare_cached(SELECT_KEYS).await?;
    let existing: HashMap<(Uuid, Vec<u8>), Uuid> = client
        .query(&select, &[&ws, &taken])
        .await?
        .into_iter()
        .map(|r| Ok(((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?)))
        .collect::<std::result::Result<_, tokio_postgres::Error>>()?;
    for &i in &lost {
        let k = &keys[i];
        let owner = existing
            .get(&(k.workspace_id, digests[i].clone()))
            .copied()
            // Unreachable under the primary key: a conflict means a committed row we can read.
            .unwrap_or(k.event_id);
        claims[i] = Claim::Duplicate(owner);
    }
    // Duplicates within the call point at their first occurrence, which may itself have lost.
    for (i, k) in keys.iter().enumerate() {
        if let Claim::Duplicate(_) = claims[i] {
            if let Some(&j) = first.get(&(k.workspace_id, k.kind, k.key.as_str())) {
                if j != i {
                    claims[i] = match claims[j] {
                        Claim::New => Claim::Duplicate(keys[j].event_id),
                        dup => dup,
                    };
                }
            }
        }
    }
    Ok(claims)
}

const FIND_EVENT: &str = "
    SELECT event_id FROM natural_keys WHERE workspace_id = $1 AND digest = $2";

/// The event that holds a natural key, if any (for look-ups by `invoiceId` / `leadId`).
pub async fn find_event(
    client: &impl GenericClient,
    workspace_id: Uuid,
    kind: &str,
    key: &str,
) -> Result<Option<Uuid>> {
    let stmt = client.prepare_cached(FIND_EVENT).await?;
    Ok(client
        .query_opt(&stmt, &[&workspace_id, &digest(kind, key)])
        .await?
        .map(|r| r.get(0)))
}
