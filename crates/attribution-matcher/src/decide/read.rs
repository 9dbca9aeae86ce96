//! What a step reads: the decisions already made, the stored identifiers and their persons, the
//! registered clicks the events name, and the probes for persons' clicks. Every look-up is a key
//! probe per value (`unnest(…) CROSS JOIN LATERAL (… LIMIT 1)`), whatever the planner believes of
//! the workspace's size: a plain join may read the whole workspace and hash it, as it does while
//! a fast-growing table has no statistics yet.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use events::Touchpoint;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::choice::Touch;
use crate::clicks::{stored_click, StoredClick};
use crate::{from_json, Result};

use super::step::{Counts, Item, KnownIdentifier, KnownPerson, Probe, Probed};

const SELECT_EXISTING: &str = "
    SELECT a.event_id, a.status, a.pending_until
    FROM unnest($2::uuid[]) AS q(event_id)
    CROSS JOIN LATERAL (
        SELECT event_id, status, pending_until FROM attributions
        WHERE workspace_id = $1 AND event_id = q.event_id
        LIMIT 1
    ) AS a";

/// The stored status of those of `event_ids` that are decided (or pending): `(status,
/// pending_until)` by event.
pub(crate) async fn existing(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_ids: &[Uuid],
) -> Result<HashMap<Uuid, (String, Option<OffsetDateTime>)>> {
    let statement = client.prepare_cached(SELECT_EXISTING).await?;
    let mut existing = HashMap::new();
    for row in client
        .query(&statement, &[&workspace_id, &event_ids])
        .await?
    {
        existing.insert(row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?));
    }
    Ok(existing)
}

/// Each identifier's row, the person it was filed under, and that person's survivor when it was
/// merged (with the survivor's members and counts).
const SELECT_IDENTITIES: &str = "
    SELECT q.identifier, i.too_common, i.clicked_at IS NOT NULL,
           coalesce(r.person_id, i.person_id), r.members, r.customer_ids, r.emails, r.phones
    FROM unnest($2::bytea[]) AS q(identifier)
    CROSS JOIN LATERAL (
        SELECT person_id, too_common, clicked_at FROM identities
        WHERE workspace_id = $1 AND identifier = q.identifier
        LIMIT 1
    ) AS i
    LEFT JOIN LATERAL (
        SELECT merged_into FROM persons
        WHERE workspace_id = $1 AND person_id = i.person_id
        LIMIT 1
    ) AS p ON true
    LEFT JOIN LATERAL (
        SELECT person_id, members, customer_ids, emails, phones FROM persons
        WHERE workspace_id = $1 AND person_id = coalesce(p.merged_into, i.person_id)
        LIMIT 1
    ) AS r ON true";

/// The stored identifiers of the items, and their persons.
pub(crate) async fn identities(
    client: &impl GenericClient,
    workspace_id: Uuid,
    items: &[Item<'_>],
) -> Result<(
    HashMap<[u8; 32], KnownIdentifier>,
    HashMap<Uuid, KnownPerson>,
)> {
    let mut hashes: Vec<&[u8]> = items
        .iter()
        .flat_map(|item| item.identifiers.iter().map(|id| &id.hash[..]))
        .collect();
    hashes.sort_unstable();
    hashes.dedup();
    let mut identifiers = HashMap::with_capacity(hashes.len());
    let mut persons = HashMap::new();
    if hashes.is_empty() {
        return Ok((identifiers, persons));
    }
    let statement = client.prepare_cached(SELECT_IDENTITIES).await?;
    for row in client.query(&statement, &[&workspace_id, &hashes]).await? {
        let Some(hash) = hash_at(&row, 0)? else {
            continue;
        };
        let person: Uuid = row.try_get(3)?;
        identifiers.insert(
            hash,
            KnownIdentifier {
                person,
                too_common: row.try_get(1)?,
                has_touch: row.try_get(2)?,
            },
        );
        if persons.contains_key(&person) {
            continue;
        }
        let members: Option<Vec<Uuid>> = row.try_get(4)?;
        let counts: Counts = [count_at(&row, 5)?, count_at(&row, 6)?, count_at(&row, 7)?];
        persons.insert(
            person,
            KnownPerson {
                members: members.unwrap_or_default(),
                counts,
            },
        );
    }
    Ok((identifiers, persons))
}

fn count_at(row: &Row, index: usize) -> Result<i64> {
    Ok(i64::from(
        row.try_get::<_, Option<i32>>(index)?.unwrap_or(0),
    ))
}

fn hash_at(row: &Row, index: usize) -> Result<Option<[u8; 32]>> {
    let bytes: Option<Vec<u8>> = row.try_get(index)?;
    Ok(bytes.and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok()))
}

const SELECT_NAMED_CLICKS: &str = "
    SELECT c.click_id, c.clicked_at, c.click_ids, c.utm, c.url, c.referrer, c.ip, c.user_agent,
           c.created_at
    FROM unnest($2::text[]) AS q(click_id)
    CROSS JOIN LATERAL (
        SELECT * FROM clicks WHERE workspace_id = $1 AND click_id = q.click_id LIMIT 1
    ) AS c";

/// The registered clicks the items name by `clickId`.
pub(crate) async fn named_clicks(
    client: &impl GenericClient,
    workspace_id: Uuid,
    items: &[Item<'_>],
) -> Result<HashMap<String, StoredClick>> {
    let mut names: Vec<&str> = items
        .iter()
        .filter_map(|item| item.event.click_id.as_deref())
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut clicks = HashMap::with_capacity(names.len());
    if names.is_empty() {
        return Ok(clicks);
    }
    let statement = client.prepare_cached(SELECT_NAMED_CLICKS).await?;
    for row in client.query(&statement, &[&workspace_id, &names]).await? {
        let click = stored_click(&row, 0)?;
        clicks.insert(click.click_id.clone(), click);
    }
    Ok(clicks)
}

/// The columns of a click owned by an identity row: the row's own touchpoint, or the registered
/// click it names.
const CLICK_COLUMNS: &str = "identifier, touchpoint";

/// Per probe, the person's last and first click between `since` and `at`: two descents of the
/// `identities_touches` index, however many clicks the person has.
fn probe_sql() -> String {
    let side = |order: &str, alias: &str| {
        format!(
            "LEFT JOIN LATERAL (
                SELECT {CLICK_COLUMNS} FROM identities
                WHERE workspace_id = $1 AND person_id = q.person_id
                  AND clicked_at <= q.at AND clicked_at >= q.since
                ORDER BY clicked_at {order}, identifier {order}
                LIMIT 1
            ) AS {alias} ON true
            LEFT JOIN LATERAL (
                SELECT click_id, clicked_at, click_ids, utm, url, referrer, ip, user_agent,
                       created_at
                FROM clicks
                WHERE workspace_id = $1 AND identifier = {alias}.identifier
                  AND {alias}.touchpoint IS NULL
                LIMIT 1
            ) AS {alias}c ON true"
        )
    };
    format!(
        "SELECT q.n,
                l.identifier, l.touchpoint, lc.click_id, lc.clicked_at, lc.click_ids, lc.utm,
                lc.url, lc.referrer, lc.ip, lc.user_agent, lc.created_at,
                f.identifier, f.touchpoint, fc.click_id, fc.clicked_at, fc.click_ids, fc.utm,
                fc.url, fc.referrer, fc.ip, fc.user_agent, fc.created_at
         FROM unnest($2::uuid[], $3::timestamptz[], $4::timestamptz[]) WITH ORDINALITY
              AS q(person_id, at, since, n)
         {}
         {}",
        side("DESC", "l"),
        side("ASC", "f")
    )
}

/// Answers the probes: the last and first click of each person in each event's window.
pub(crate) async fn probes(
    client: &impl GenericClient,
    workspace_id: Uuid,
    wanted: &[Probe],
    window: time::Duration,
) -> Result<HashMap<Probe, Probed>> {
    let mut answers = HashMap::with_capacity(wanted.len());
    if wanted.is_empty() {
        return Ok(answers);
    }
    let persons: Vec<Uuid> = wanted.iter().map(|p| p.person).collect();
    let at: Vec<OffsetDateTime> = wanted.iter().map(|p| p.at).collect();
    let since: Vec<OffsetDateTime> = wanted.iter().map(|p| p.at.saturating_sub(window)).collect();
    let statement = client.prepare_cached(&probe_sql()).await?;
    for row in client
        .query(&statement, &[&workspace_id, &persons, &at, &since])
        .await?
    {
        let n: i64 = row.try_get(0)?;
        let Some(probe) = usize::try_from(n - 1).ok().and_then(|i| wanted.get(i)) else {
            continue;
        };
        answers.insert(
            *probe,
            Probed {
                last: touch_at(&row, 1)?,
                first: touch_at(&row, 12)?,
            },
        );
    }
    Ok(answers)
}

/// A click from an identity row's columns at `at` (identifier, touchpoint) and its registered
/// click's after them.
fn touch_at(row: &Row, at: usize) -> Result<Option<Touch>> {
    let Some(owner) = hash_at(row, at)? else {
        return Ok(None);
    };
    let own: Option<serde_json::Value> = row.try_get(at + 1)?;
    let click_id: Option<String> = row.try_get(at + 2)?;
    let touchpoint: Touchpoint = match (own, click_id) {
        (Some(own), _) => from_json("touchpoint", own)?,
        (None, Some(_)) => stored_click(row, at + 2)?.touchpoint(),
        // A registered click that is no longer stored.
        (None, None) => return Ok(None),
    };
    Ok(Some(Touch { owner, touchpoint }))
}

const SELECT_TOUCHES: &str = "
    SELECT i.identifier, i.touchpoint, c.click_id, c.clicked_at, c.click_ids, c.utm, c.url,
           c.referrer, c.ip, c.user_agent, c.created_at
    FROM unnest($2::bytea[]) AS q(identifier)
    CROSS JOIN LATERAL (
        SELECT identifier, touchpoint FROM identities
        WHERE workspace_id = $1 AND identifier = q.identifier
        LIMIT 1
    ) AS i
    LEFT JOIN LATERAL (
        SELECT * FROM clicks
        WHERE workspace_id = $1 AND identifier = i.identifier AND i.touchpoint IS NULL
        LIMIT 1
    ) AS c ON true";

/// The clicks owned by `owners`, by owner.
pub(crate) async fn touches(
    client: &impl GenericClient,
    workspace_id: Uuid,
    owners: &[[u8; 32]],
) -> Result<HashMap<[u8; 32], Touchpoint>> {
    let mut out = HashMap::with_capacity(owners.len());
    let mut wanted: Vec<&[u8]> = owners.iter().map(|owner| &owner[..]).collect();
    wanted.sort_unstable();
    wanted.dedup();
    if wanted.is_empty() {
        return Ok(out);
    }
    let statement = client.prepare_cached(SELECT_TOUCHES).await?;
    for row in client.query(&statement, &[&workspace_id, &wanted]).await? {
        if let Some(touch) = touch_at(&row, 0)? {
            out.insert(touch.owner, touch.touchpoint);
        }
    }
    Ok(out)
}
