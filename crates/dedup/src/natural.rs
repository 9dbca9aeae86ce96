//! Natural keys: the sender's own id of an event (`invoiceId` of a sale, `leadId` of a lead).
//!
//! A key is claimed with `INSERT … ON CONFLICT DO NOTHING RETURNING` over arrays, so that the
//! primary key decides, even between several processes: a concurrent claim of the same key waits
//! for the first transaction and then sees its row. Keys are sorted before they are inserted so
//! that two transactions always lock them in the same order and cannot deadlock.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
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

const INSERT_KEYS: &str = "
    INSERT INTO natural_keys (workspace_id, kind, key, event_id)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[])
    ON CONFLICT DO NOTHING
    RETURNING event_id";

const SELECT_KEYS: &str = "
    SELECT k.workspace_id, k.kind, k.key, k.event_id
    FROM natural_keys k
    JOIN unnest($1::uuid[], $2::text[], $3::text[]) AS q(workspace_id, kind, key)
      ON k.workspace_id = q.workspace_id AND k.kind = q.kind AND k.key = q.key";

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
    // One lock order for every transaction.
    unique.sort_by(|&a, &b| {
        let (a, b) = (&keys[a], &keys[b]);
        (a.workspace_id, a.kind, &a.key).cmp(&(b.workspace_id, b.kind, &b.key))
    });
    let ws: Vec<Uuid> = unique.iter().map(|&i| keys[i].workspace_id).collect();
    let kinds: Vec<&str> = unique.iter().map(|&i| keys[i].kind).collect();
    let names: Vec<&str> = unique.iter().map(|&i| keys[i].key.as_str()).collect();
    let ids: Vec<Uuid> = unique.iter().map(|&i| keys[i].event_id).collect();

    let insert = client.prepare_cached(INSERT_KEYS).await?;
    let won = client.query(&insert, &[&ws, &kinds, &names, &ids]).await?;
    if won.len() == unique.len() {
        return Ok(claims);
    }
    let won: std::collections::HashSet<Uuid> = won.iter().map(|r| r.get(0)).collect();
    let lost: Vec<usize> = unique
        .into_iter()
        .filter(|&i| !won.contains(&keys[i].event_id))
        .collect();
    let ws: Vec<Uuid> = lost.iter().map(|&i| keys[i].workspace_id).collect();
    let kinds: Vec<&str> = lost.iter().map(|&i| keys[i].kind).collect();
    let names: Vec<&str> = lost.iter().map(|&i| keys[i].key.as_str()).collect();
    let select = client.prepare_cached(SELECT_KEYS).await?;
    let existing: HashMap<(Uuid, String, String), Uuid> = client
        .query(&select, &[&ws, &kinds, &names])
        .await?
        .into_iter()
        .map(|r| ((r.get(0), r.get(1), r.get(2)), r.get(3)))
        .collect();
    for &i in &lost {
        let k = &keys[i];
        let owner = existing
            .get(&(k.workspace_id, k.kind.to_owned(), k.key.clone()))
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
    SELECT event_id FROM natural_keys WHERE workspace_id = $1 AND kind = $2 AND key = $3";

/// The event that holds a natural key, if any (for look-ups by `invoiceId` / `leadId`).
pub async fn find_event(
    client: &impl GenericClient,
    workspace_id: Uuid,
    kind: &str,
    key: &str,
) -> Result<Option<Uuid>> {
    let stmt = client.prepare_cached(FIND_EVENT).await?;
    Ok(client
        .query_opt(&stmt, &[&workspace_id, &kind, &key])
        .await?
        .map(|r| r.get(0)))
}
