//! What a step reads: the decisions already made, the stored identifiers and their persons, the
//! registered clicks the events name, and the probes for persons' clicks. Every look-up is a key
//! probe per value (`unnest(…) CROSS JOIN LATERAL (… LIMIT 1)`), whatever the planner believes of
//! the workspace's size: a plain join may read the whole workspace and hash it, as it does while
//! a fast-growing table has no statistics yet.

use crate::HashMap;

use deadpool_postgres::GenericClient;
use events::{Event, IdentifierHash, Touchpoint};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::choice::Touch;
use crate::clicks::{stored_click, StoredClick};
use crate::{from_json, Result, ANY_WORKSPACE};

use super::cache::Earliest;
use super::step::{Counts, Item, KnownIdentifier, KnownPerson, Probe, Probed};
use super::KnownGraph;

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
    let mut existing = HashMap::default();
    for row in client
        .query(&statement, &[&workspace_id, &event_ids])
        .await?
    {
        existing.insert(row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?));
    }
    Ok(existing)
}

const ANY_PENDING: &str = "
    SELECT EXISTS (SELECT 1 FROM attributions WHERE workspace_id = $1 AND status = 'pending')";

/// Whether the workspace has pending events at all (when it has none, clicks gained by a step
/// need no re-check of anything stored).
pub(crate) async fn any_pending(client: &impl GenericClient, workspace_id: Uuid) -> Result<bool> {
    let statement = client.prepare_cached(ANY_PENDING).await?;
    Ok(client
        .query_one(&statement, &[&workspace_id])
        .await?
        .try_get(0)?)
}

/// Each identifier's row and the person it belongs to now (the survivor, when the person it was
/// filed under was merged into another), with that person's members, counts and day of use.
/// Persons are looked up once each, however many of the identifiers they hold; a person that was
/// not merged is its own root, and its row, read once, answers both.
const SELECT_IDENTITIES: &str = "
    WITH found AS MATERIALIZED (
        SELECT q.identifier, i.person_id, i.too_common, i.clicked_at IS NOT NULL AS has_touch
        FROM unnest($2::bytea[]) AS q(identifier)
        CROSS JOIN LATERAL (
            SELECT person_id, too_common, clicked_at FROM identities
            WHERE workspace_id = $1 AND identifier = q.identifier
            LIMIT 1
        ) AS i
    ), filed AS MATERIALIZED (
        SELECT f.person_id, p.merged_into, coalesce(p.merged_into, f.person_id) AS root,
               p.members, p.customer_ids, p.emails, p.phones, p.used_on
        FROM (SELECT DISTINCT person_id FROM found) AS f
        LEFT JOIN LATERAL (
            SELECT merged_into, members, customer_ids, emails, phones, used_on FROM persons
            WHERE workspace_id = $1 AND person_id = f.person_id
            LIMIT 1
        ) AS p ON true
    ), roots AS MATERIALIZED (
        SELECT root, members, customer_ids, emails, phones, used_on
        FROM filed WHERE merged_into IS NULL
        UNION ALL
        SELECT r.root, p.members, p.customer_ids, p.emails, p.phones, p.used_on
        FROM (
            SELECT DISTINCT root FROM filed
            WHERE merged_into IS NOT NULL
              AND root NOT IN (SELECT root FROM filed WHERE merged_into IS NULL)
        ) AS r
        LEFT JOIN LATERAL (
            SELECT members, customer_ids, emails, phones, used_on FROM persons
            WHERE workspace_id = $1 AND person_id = r.root
            LIMIT 1
        ) AS p ON true
    )
    SELECT found.identifier, found.too_common, found.has_touch, filed.root, roots.members,
           roots.customer_ids, roots.emails, roots.phones, roots.used_on
    FROM found
    JOIN filed ON filed.person_id = found.person_id
    JOIN roots ON roots.root = filed.root";

/// The stored identifiers of the items, and their persons.
pub(crate) async fn identities(
    client: &impl GenericClient,
    workspace_id: Uuid,
    items: &[Item<'_>],
) -> Result<KnownGraph> {
    let mut hashes: Vec<&[u8]> = items
        .iter()
        .flat_map(|item| item.identifiers.iter().map(|id| &id.hash[..]))
        .collect();
    hashes.sort_unstable();
    hashes.dedup();
    identities_of(client, workspace_id, &hashes).await
}

/// [`identities`] of these identifiers (sorted, without duplicates); `of_event` left empty.
pub(crate) async fn identities_of(
    client: &impl GenericClient,
    workspace_id: Uuid,
    hashes: &[&[u8]],
) -> Result<KnownGraph> {
    let mut identifiers = HashMap::with_capacity_and_hasher(hashes.len(), Default::default());
    let mut persons = HashMap::default();
    if hashes.is_empty() {
        return Ok(KnownGraph::default());
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
                used_on: row.try_get(8)?,
            },
        );
    }
    Ok(KnownGraph {
        identifiers,
        persons,
        ..KnownGraph::default()
    })
}

fn count_at(row: &Row, index: usize) -> Result<i64> {
    Ok(i64::from(
        row.try_get::<_, Option<i32>>(index)?.unwrap_or(0),
    ))
}

fn hash_at(row: &Row, index: usize) -> Result<Option<IdentifierHash>> {
    let bytes: Option<&[u8]> = row.try_get(index)?;
    Ok(bytes.and_then(|bytes| <IdentifierHash>::try_from(bytes).ok()))
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
    let mut clicks = HashMap::with_capacity_and_hasher(names.len(), Default::default());
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

/// The columns of a click owned by an identity row: the identifier, the event that carried it,
/// a copy kept before clicks referenced their events, when it happened, and (in a lateral join
/// after them) the registered click it names.
const CLICK_COLUMNS: &str = "identifier, source_event, touchpoint, clicked_at";

/// Per probe, the person's last and first click between `since` and `at`: two descents of the
/// `identities_touches` index, however many clicks the person has; then the first click's time,
/// and whether the person has a click before `since` (a third descent: when it has none, the
/// first click is the person's earliest of all, which a worker keeps).
///
/// The workspace is named as [`ANY_WORKSPACE`] throughout.
pub(crate) fn probe_statement() -> String {
    let side = |order: &str, alias: &str, wanted: &str| {
        format!(
            "LEFT JOIN LATERAL (
                SELECT {CLICK_COLUMNS} FROM identities
                WHERE {wanted} AND workspace_id = {ANY_WORKSPACE} AND person_id = q.person_id
                  AND clicked_at <= q.at AND clicked_at >= q.since
                ORDER BY clicked_at {order}, identifier {order}
                LIMIT 1
            ) AS {alias} ON true
            LEFT JOIN LATERAL (
                SELECT click_id, clicked_at, click_ids, utm, url, referrer, ip, user_agent,
                       created_at
                FROM clicks
                WHERE workspace_id = {ANY_WORKSPACE} AND identifier = {alias}.identifier
                  AND {alias}.source_event IS NULL AND {alias}.touchpoint IS NULL
                LIMIT 1
            ) AS {alias}c ON true"
        )
    };
    let columns = |alias: &str| {
        format!(
            "{alias}.identifier, {alias}.source_event, {alias}.touchpoint, {alias}c.click_id,
             {alias}c.clicked_at, {alias}c.click_ids, {alias}c.utm, {alias}c.url,
             {alias}c.referrer, {alias}c.ip, {alias}c.user_agent, {alias}c.created_at"
        )
    };
    format!(
        "SELECT q.n, {}, {}, f.clicked_at,
                EXISTS (SELECT 1 FROM identities b
                        WHERE b.workspace_id = {ANY_WORKSPACE} AND b.person_id = q.person_id
                          AND b.clicked_at < q.since)
         FROM unnest($2::uuid[], $3::timestamptz[], $4::timestamptz[], $5::bool[]) WITH ORDINALITY
              AS q(person_id, at, since, last, n)
         {}
         {}",
        columns("l"),
        columns("f"),
        side("DESC", "l", "q.last"),
        side("ASC", "f", "true")
    )
}

/// How many columns [`touch_ref_at`] reads.
const TOUCH_COLUMNS: usize = 12;

/// Where the data of a click is.
#[derive(Debug, Clone)]
enum Source {
    /// Here already: a registered click, or a copy kept before clicks referenced their events.
    Here(Box<Touchpoint>),
    /// In the journal: the event that carried it.
    Event(Uuid),
}

/// A click found by a probe, before its data is read.
#[derive(Debug, Clone)]
struct TouchRef {
    owner: IdentifierHash,
    source: Source,
}

/// Answers the probes: the last and first click of each person in each event's window. The
/// clicks that events carried are read from the journal (`bodies` holds the step's own events).
/// A probe for the first click only is answered without the database when the person's earliest
/// click of all is known (`earliest`) and lies in the window or after it; the earliest clicks
/// the database answered are returned too.
pub(crate) async fn probes(
    client: &impl GenericClient,
    workspace_id: Uuid,
    wanted: &[Probe],
    window: time::Duration,
    bodies: &HashMap<Uuid, &Event>,
    cache: &mut super::CarriedClicks,
    earliest: &HashMap<Uuid, Earliest>,
) -> Result<(HashMap<Probe, Probed>, Vec<(Uuid, Earliest)>)> {
    let mut answers = HashMap::with_capacity_and_hasher(wanted.len(), Default::default());
    let mut asked: Vec<Probe> = Vec::with_capacity(wanted.len());
    for probe in wanted {
        let known = earliest.get(&probe.person).filter(|_| !probe.last);
        match known {
            Some(first) if first.at > probe.at => {
                answers.insert(*probe, Probed::default());
            }
            Some(first) if first.at >= probe.at.saturating_sub(window) => {
                let first = Some(first.touch.clone());
                answers.insert(*probe, Probed { last: None, first });
            }
            _ => asked.push(*probe),
        }
    }
    let wanted = &asked[..];
    if wanted.is_empty() {
        return Ok((answers, Vec::new()));
    }
    let persons: Vec<Uuid> = wanted.iter().map(|p| p.person).collect();
    let at: Vec<OffsetDateTime> = wanted.iter().map(|p| p.at).collect();
    let since: Vec<OffsetDateTime> = wanted.iter().map(|p| p.at.saturating_sub(window)).collect();
    let last: Vec<bool> = wanted.iter().map(|p| p.last).collect();
    let statement = client.prepare_cached(&probe_statement()).await?;
    // Per probe: the last and first click, and the first's time when it is the person's earliest
    // of all.
    let mut found: Vec<Found> = Vec::new();
    for row in client
        .query(&statement, &[&workspace_id, &persons, &at, &since, &last])
        .await?
    {
        let n: i64 = row.try_get(0)?;
        let Some(probe) = usize::try_from(n - 1).ok().and_then(|i| wanted.get(i)) else {
            continue;
        };
        let first_at: Option<OffsetDateTime> = row.try_get(1 + 2 * TOUCH_COLUMNS)?;
        let before: bool = row.try_get(2 + 2 * TOUCH_COLUMNS)?;
        found.push(Found {
            probe: *probe,
            last: touch_ref_at(&row, 1)?,
            first: touch_ref_at(&row, 1 + TOUCH_COLUMNS)?,
            earliest_at: first_at.filter(|_| !before),
        });
    }
    let refs: Vec<&TouchRef> = found
        .iter()
        .flat_map(|f| f.last.iter().chain(&f.first))
        .collect();
    let carried = carried_clicks(client, workspace_id, &refs, bodies, cache).await?;
    let mut learned = Vec::new();
    for found in found {
        let first = found.first.and_then(|r| resolve(r, &carried));
        if let (Some(at), Some(touch)) = (found.earliest_at, &first) {
            let touch = touch.clone();
            learned.push((found.probe.person, Earliest { at, touch }));
        }
        let last = found.last.and_then(|r| resolve(r, &carried));
        answers.insert(found.probe, Probed { last, first });
    }
    Ok((answers, learned))
}

/// A probe's answer from the database, before the clicks' data is read.
struct Found {
    probe: Probe,
    last: Option<TouchRef>,
    first: Option<TouchRef>,
    /// The first click's time, when the person has no click before the window.
    earliest_at: Option<OffsetDateTime>,
}

/// The clicks carried by the events the refs name, by event: from `bodies` when the event is at
/// hand, else from `cache`, else from the journal (and then kept in `cache`).
async fn carried_clicks(
    client: &impl GenericClient,
    workspace_id: Uuid,
    refs: &[&TouchRef],
    bodies: &HashMap<Uuid, &Event>,
    cache: &mut super::CarriedClicks,
) -> Result<HashMap<Uuid, Touchpoint>> {
    let mut carried = HashMap::default();
    let mut missing: Vec<Uuid> = Vec::new();
    for r in refs {
        if let Source::Event(id) = r.source {
            match bodies.get(&id) {
                Some(event) => {
                    carried.insert(id, super::direct_touchpoint(event));
                }
                None => match cache.get(workspace_id, id) {
                    Some(touchpoint) => {
                        carried.insert(id, touchpoint);
                    }
                    None => missing.push(id),
                },
            }
        }
    }
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        for stored in journal::get_events(client, workspace_id, &missing).await? {
            if let Ok(event) = &stored.event {
                let touchpoint = super::direct_touchpoint(event);
                cache.insert(workspace_id, stored.id, touchpoint.clone());
                carried.insert(stored.id, touchpoint);
            }
        }
    }
    Ok(carried)
}

fn resolve(r: TouchRef, carried: &HashMap<Uuid, Touchpoint>) -> Option<Touch> {
    let touchpoint = match r.source {
        Source::Here(touchpoint) => *touchpoint,
        // An event no longer stored (erased) takes its click with it.
        Source::Event(id) => carried.get(&id)?.clone(),
    };
    Some(Touch {
        owner: r.owner,
        touchpoint,
    })
}

/// A click from an identity row's columns at `at` (identifier, source event, kept copy) and its
/// registered click's after them.
fn touch_ref_at(row: &Row, at: usize) -> Result<Option<TouchRef>> {
    let Some(owner) = hash_at(row, at)? else {
        return Ok(None);
    };
    let source_event: Option<Uuid> = row.try_get(at + 1)?;
    let copy: Option<serde_json::Value> = row.try_get(at + 2)?;
    let click_id: Option<String> = row.try_get(at + 3)?;
    let source = match (source_event, copy, click_id) {
        (Some(event), _, _) => Source::Event(event),
        (None, Some(copy), _) => Source::Here(Box::new(from_json("touchpoint", copy)?)),
        (None, None, Some(_)) => Source::Here(Box::new(stored_click(row, at + 3)?.touchpoint())),
        // A registered click that is no longer stored.
        (None, None, None) => return Ok(None),
    };
    Ok(Some(TouchRef { owner, source }))
}

const SELECT_TOUCHES: &str = "
    SELECT i.identifier, i.source_event, i.touchpoint, c.click_id, c.clicked_at, c.click_ids,
           c.utm, c.url, c.referrer, c.ip, c.user_agent, c.created_at
    FROM unnest($2::bytea[]) AS q(identifier)
    CROSS JOIN LATERAL (
        SELECT identifier, source_event, touchpoint FROM identities
        WHERE workspace_id = $1 AND identifier = q.identifier
        LIMIT 1
    ) AS i
    LEFT JOIN LATERAL (
        SELECT * FROM clicks
        WHERE workspace_id = $1 AND identifier = i.identifier
          AND i.source_event IS NULL AND i.touchpoint IS NULL
        LIMIT 1
    ) AS c ON true";

/// The clicks owned by `owners`, by owner.
pub(crate) async fn touches(
    client: &impl GenericClient,
    workspace_id: Uuid,
    owners: &[IdentifierHash],
) -> Result<HashMap<IdentifierHash, Touchpoint>> {
    let mut out = HashMap::with_capacity_and_hasher(owners.len(), Default::default());
    let mut wanted: Vec<&[u8]> = owners.iter().map(|owner| &owner[..]).collect();
    wanted.sort_unstable();
    wanted.dedup();
    if wanted.is_empty() {
        return Ok(out);
    }
    let statement = client.prepare_cached(SELECT_TOUCHES).await?;
    let mut refs = Vec::new();
    for row in client.query(&statement, &[&workspace_id, &wanted]).await? {
        refs.extend(touch_ref_at(&row, 0)?);
    }
    let borrowed: Vec<&TouchRef> = refs.iter().collect();
    let mut uncached = super::CarriedClicks::new(0);
    let carried = carried_clicks(
        client,
        workspace_id,
        &borrowed,
        &HashMap::default(),
        &mut uncached,
    )
    .await?;
    for r in refs {
        if let Some(touch) = resolve(r, &carried) {
            out.insert(touch.owner, touch.touchpoint);
        }
    }
    Ok(out)
}
