//! One worker step: attribute and route the events of a [`Claim`], and record the decisions.
//!
//! The events are taken in arrival order. For each: its identifiers are linked into one person
//! (merging persons it names together), the clicks it brings are filed as that person's, and
//! the touchpoint rules of [`crate::choice`] run over what the graph knew just before the event.
//! A new event gets its first decision; a pending event is looked at again and changes only when
//! it matches now (a late match) or its window is over (then `unmatched`).
//!
//! The graph of the events at hand is worked out in memory and written back at the end in a few
//! statements, so a step costs about the same number of round trips for one event as for a
//! thousand. When the step links new clicks to a person who has pending events, those events are
//! queued to be looked at again by the next step (see [`crate::queue`]).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;

use deadpool_postgres::GenericClient;
use events::{
    to_utc_millis, Attribution, AttributionStatus, Event, EventKind, Mode, RouteDecision,
    Touchpoint,
};
use time::OffsetDateTime;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::Statement;
use tracing::debug;
use uuid::Uuid;

use crate::choice::{choose_touches, find_touchpoint, Found, Linked, Touch};
use crate::clicks::{stored_click, StoredClick};
use crate::identity::{
    event_identifiers, identifier_hash, Graph, Identifier, IdentifierKind, Node,
};
use crate::queue::Claim;
use crate::routing::{route, Stage};
use crate::settings::{attribution_window, to_time, MatchSettings};
use crate::{from_json, to_json, Result};

/// The attribution model; the only one.
const MODEL: &str = "last_click";

/// An event whose routing changes with this step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// The event.
    pub event_id: Uuid,
    /// Its attribution now.
    pub attribution: Attribution,
    /// One decision per kind of destination: who gets the conversion now.
    pub routes: Vec<RouteDecision>,
    /// True for the event's first decision; false when a pending event was matched late or its
    /// window ended (webhooks got it when it went pending).
    pub first: bool,
}

/// The recorded decision about an event, as `GET /v1/events/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The attribution (`attribution` on the wire).
    pub attribution: Attribution,
    /// Why each kind of destination was or was not chosen (`routing` on the wire).
    pub routes: Vec<RouteDecision>,
}

const SELECT_DECISION: &str = "
    SELECT attribution, routes FROM attributions WHERE workspace_id = $1 AND event_id = $2";

/// The decision about `event_id`, or `None` while the event still waits for the matcher.
pub async fn get_decision(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_id: Uuid,
) -> Result<Option<Decision>> {
    let statement = client.prepare_cached(SELECT_DECISION).await?;
    let Some(row) = client
        .query_opt(&statement, &[&workspace_id, &event_id])
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(Decision {
        attribution: from_json("attribution", row.try_get(0)?)?,
        routes: from_json("routes", row.try_get(1)?)?,
    }))
}

const SELECT_ATTRIBUTIONS: &str = "
    SELECT a.event_id, a.attribution
    FROM unnest($2::uuid[]) AS q(event_id)
    JOIN attributions a ON a.workspace_id = $1 AND a.event_id = q.event_id";

/// The attributions of those of `event_ids` that are decided, by event id (for reports: one
/// statement for many events).
pub async fn get_attributions(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_ids: &[Uuid],
) -> Result<HashMap<Uuid, Attribution>> {
    let mut out = HashMap::with_capacity(event_ids.len());
    if event_ids.is_empty() {
        return Ok(out);
    }
    let statement = client.prepare_cached(SELECT_ATTRIBUTIONS).await?;
    for row in client
        .query(&statement, &[&workspace_id, &event_ids])
        .await?
    {
        out.insert(row.try_get(0)?, from_json("attribution", row.try_get(1)?)?);
    }
    Ok(out)
}

/// One primary-key probe per event (see `SELECT_PERSONS`).
const SELECT_EXISTING: &str = "
    SELECT a.event_id, a.status, a.pending_until
    FROM unnest($2::uuid[]) AS q(event_id)
    CROSS JOIN LATERAL (
        SELECT event_id, status, pending_until FROM attributions
        WHERE workspace_id = $1 AND event_id = q.event_id
        LIMIT 1
    ) AS a";

/// One primary-key probe per identifier, whatever the planner believes of the workspace's size:
/// a plain join may read the whole workspace and hash it, as it does while a fast-growing table
/// has no statistics yet.
const SELECT_PERSONS: &str = "
    SELECT i.identifier, i.person_id
    FROM unnest($2::bytea[]) AS q(identifier)
    CROSS JOIN LATERAL (
        SELECT identifier, person_id FROM identities
        WHERE workspace_id = $1 AND identifier = q.identifier
        LIMIT 1
    ) AS i";

const SELECT_NAMED_CLICKS: &str = "
    SELECT c.click_id, c.clicked_at, c.click_ids, c.utm, c.url, c.referrer, c.ip, c.user_agent,
           c.created_at
    FROM unnest($2::text[]) AS q(click_id)
    JOIN clicks c ON c.workspace_id = $1 AND c.click_id = q.click_id";

const SELECT_TOUCHES: &str = "
    SELECT t.person_id, t.identifier, t.touchpoint,
           c.click_id, c.clicked_at, c.click_ids, c.utm, c.url, c.referrer, c.ip, c.user_agent,
           c.created_at
    FROM unnest($2::uuid[]) AS q(person_id)
    JOIN touches t ON t.workspace_id = $1 AND t.person_id = q.person_id
    LEFT JOIN clicks c ON c.workspace_id = t.workspace_id AND c.click_id = t.click_id
    WHERE t.clicked_at >= $3 AND t.clicked_at <= $4";

const MERGE_IDENTITIES: &str = "
    UPDATE identities AS i SET person_id = m.survivor
    FROM unnest($2::uuid[], $3::uuid[]) AS m(loser, survivor)
    WHERE i.workspace_id = $1 AND i.person_id = m.loser";

const MERGE_TOUCHES: &str = "
    UPDATE touches AS t SET person_id = m.survivor
    FROM unnest($2::uuid[], $3::uuid[]) AS m(loser, survivor)
    WHERE t.workspace_id = $1 AND t.person_id = m.loser";

const MERGE_PENDING: &str = "
    UPDATE attributions AS a SET person_id = m.survivor
    FROM unnest($2::uuid[], $3::uuid[]) AS m(loser, survivor)
    WHERE a.workspace_id = $1 AND a.status = 'pending' AND a.person_id = m.loser";

const INSERT_IDENTITIES: &str = "
    INSERT INTO identities (workspace_id, identifier, kind, person_id)
    SELECT $1, * FROM unnest($2::bytea[], $3::text[], $4::uuid[])
    ON CONFLICT DO NOTHING";

const INSERT_TOUCHES: &str = "
    INSERT INTO touches (workspace_id, identifier, person_id, clicked_at, click_id, touchpoint)
    SELECT $1, * FROM unnest($2::bytea[], $3::uuid[], $4::timestamptz[], $5::text[], $6::jsonb[])
    ON CONFLICT DO NOTHING";

const UPSERT_ATTRIBUTIONS: &str = "
    INSERT INTO attributions (workspace_id, event_id, status, attribution, routes, occurred_at,
                              received_at, pending_until, person_id, named_click, decided_at,
                              updated_at)
    SELECT $1, t.*, $11, $11
    FROM unnest($2::uuid[], $3::text[], $4::jsonb[], $5::jsonb[], $6::timestamptz[],
                $7::timestamptz[], $8::timestamptz[], $9::uuid[], $10::bytea[])
        AS t(event_id, status, attribution, routes, occurred_at, received_at, pending_until,
             person_id, named_click)
    ON CONFLICT (workspace_id, event_id) DO UPDATE SET
        status = excluded.status,
        attribution = excluded.attribution,
        routes = excluded.routes,
        pending_until = excluded.pending_until,
        person_id = excluded.person_id,
        named_click = excluded.named_click,
        updated_at = excluded.updated_at";

const CLOSE_GONE: &str = "
    UPDATE attributions
    SET status = 'unmatched', attribution = $3, routes = $4, pending_until = NULL,
        person_id = NULL, named_click = NULL, updated_at = $5
    WHERE workspace_id = $1 AND event_id = ANY($2) AND status = 'pending'";

/// Queues for another look the pending events of persons who gained clicks no earlier than the
/// event.
const MARK_PENDING: &str = "
    INSERT INTO match_queue (workspace_id, event_ids)
    SELECT $1, array_agg(DISTINCT a.event_id ORDER BY a.event_id)
    FROM unnest($2::uuid[], $3::timestamptz[]) AS g(person_id, since)
    JOIN attributions a
      ON a.workspace_id = $1 AND a.status = 'pending' AND a.person_id = g.person_id
     AND a.occurred_at >= g.since
    HAVING count(*) > 0
    RETURNING cardinality(event_ids)";

/// One event to look at in this step.
struct Item<'e> {
    event_id: Uuid,
    received_at: OffsetDateTime,
    event: &'e Event,
    /// The end of its pending window, when it is pending already (a re-check).
    pending_until: Option<OffsetDateTime>,
    identifiers: Vec<Identifier>,
}

/// A row of `attributions` to write.
struct Record {
    event_id: Uuid,
    /// Its attribution and routes: the [`Decided`] at this index.
    decided: usize,
    occurred_at: OffsetDateTime,
    received_at: OffsetDateTime,
    /// Kept while pending: the window's end, the person's node, the named click.
    pending: Option<(OffsetDateTime, Option<usize>, Option<[u8; 32]>)>,
}

/// A click this step links to a person for the first time.
struct NewTouch {
    owner: [u8; 32],
    node: usize,
    clicked_at: OffsetDateTime,
    click_id: Option<String>,
    touchpoint: Option<serde_json::Value>,
}

/// Attributes and routes the events of `claim`, in its order, inside the caller's transaction
/// (the one [`crate::claim`] ran in), and records the decisions.
///
/// `events` holds the claimed events as `(event_id, received_at, event)`, in any order; a claimed
/// event missing from it (no longer stored) is skipped, except that a pending one whose window
/// is over is recorded `unmatched` (without a [`Decided`]: nothing is dispatched then anyway).
///
/// Answers a [`Decided`] for every event whose routing changes now, in claim order: first
/// decisions (matched, unmatched, pending, or deferred), late matches and expiries. A pending
/// event that still waits is not in the answer.
pub async fn decide(
    client: &impl GenericClient,
    claim: &Claim,
    events: &[(Uuid, OffsetDateTime, Event)],
    settings: &MatchSettings,
    now: OffsetDateTime,
) -> Result<Vec<Decided>> {
    let workspace_id = claim.workspace_id;
    if claim.event_ids.is_empty() {
        return Ok(Vec::new());
    }
    let now = to_utc_millis(now);
    let pending_window = to_time(settings.pending_window);

    // The claimed events that are stored, with their identifiers, in claim order.
    let bodies: HashMap<Uuid, (OffsetDateTime, &Event)> = events
        .iter()
        .map(|(id, received_at, event)| (*id, (*received_at, event)))
        .collect();
    let mut seen = HashSet::with_capacity(claim.event_ids.len());
    let claimed: Vec<Item<'_>> = claim
        .event_ids
        .iter()
        .filter(|id| seen.insert(**id))
        .filter_map(|&event_id| {
            let &(received_at, event) = bodies.get(&event_id)?;
            Some(Item {
                event_id,
                received_at,
                event,
                pending_until: None,
                identifiers: event_identifiers(event),
            })
        })
        .collect();

    // What the step reads, in one round trip: the statements are pipelined on the connection.
    let (window, existing, persons, named) = futures_util::try_join!(
        attribution_window(client, workspace_id, settings),
        select_existing(client, workspace_id, &claim.event_ids),
        select_persons(client, workspace_id, &claimed),
        select_named_clicks(client, workspace_id, &claimed),
    )?;
    let window = to_time(window);
    let (items, gone) = sort_items(claim, claimed, &bodies, &existing, now);
    let mut graph = Graph::default();
    let known = add_persons(&mut graph, persons);
    let mut touch_owners =
        load_touches(client, workspace_id, &items, &known, window, &mut graph).await?;

    let mut decided = Vec::with_capacity(items.len());
    let mut records = Vec::with_capacity(items.len());
    let mut new_identities: Vec<(Identifier, usize)> = Vec::new();
    let mut new_touches: Vec<NewTouch> = Vec::new();
    let mut seen_identifiers: HashSet<[u8; 32]> = HashSet::new();

    for item in &items {
        let event = item.event;
        let nodes: Vec<usize> = item
            .identifiers
            .iter()
            .map(|id| graph.node(Node::Identifier(id.hash)))
            .collect();

        // The rules run over what the graph knew before this event linked anything.
        let direct = direct_touchpoint(event);
        let named_click = event
            .click_id
            .as_ref()
            .and_then(|click_id| named.get(click_id));
        let named_touchpoint = named_click.map(StoredClick::touchpoint);
        let found = {
            let mut roots: Vec<(IdentifierKind, usize)> = Vec::with_capacity(nodes.len());
            for (id, &node) in item.identifiers.iter().zip(&nodes) {
                let root = graph.find(node);
                if !roots.iter().any(|&(_, seen)| seen == root) {
                    roots.push((id.kind, root));
                }
            }
            let linked: Vec<Linked<'_>> = roots
                .iter()
                .map(|&(kind, root)| Linked {
                    matched_by: kind.matched_by(),
                    chosen: choose_touches(graph.touches_of(root), event.timestamp, window),
                })
                .collect();
            find_touchpoint(direct.as_ref(), named_touchpoint.as_ref(), &linked)
        };

        // Link the event's identifiers into one person.
        let root = nodes.iter().copied().reduce(|a, b| graph.union(a, b));
        for (id, &node) in item.identifiers.iter().zip(&nodes) {
            if !known.contains(&id.hash) && seen_identifiers.insert(id.hash) {
                new_identities.push((*id, node));
            }
        }
        // File the clicks it brings as the person's.
        if let Some(root) = root {
            let owner_of_direct = item
                .identifiers
                .iter()
                .find(|id| id.kind.matched_by() == events::MatchedBy::Direct)
                .map(|id| id.hash);
            if let (Some(direct), Some(owner)) = (&direct, owner_of_direct) {
                if !known.contains(&owner) && touch_owners.insert(owner) {
                    new_touches.push(NewTouch {
                        owner,
                        node: root,
                        clicked_at: direct.clicked_at,
                        click_id: None,
                        touchpoint: Some(to_json("touchpoint", direct)?),
                    });
                    let touch = Touch {
                        owner,
                        touchpoint: direct.clone(),
                    };
                    graph.add_touch(root, touch, true);
                }
            }
            if let Some(click) = named_click {
                let owner = identifier_hash(IdentifierKind::ClickId, &click.click_id);
                if !known.contains(&owner) && touch_owners.insert(owner) {
                    new_touches.push(NewTouch {
                        owner,
                        node: root,
                        clicked_at: click.timestamp,
                        click_id: Some(click.click_id.clone()),
                        touchpoint: None,
                    });
                    let touch = Touch {
                        owner,
                        touchpoint: click.touchpoint(),
                    };
                    graph.add_touch(root, touch, true);
                }
            }
        }

        let Some(outcome) = outcome(item, found, pending_window, now) else {
            continue;
        };
        if let (AttributionStatus::Pending, Some(root)) = (outcome.attribution.status, root) {
            graph.mark_pending(root);
        }
        let pending = (outcome.attribution.status == AttributionStatus::Pending).then(|| {
            let named_click = event
                .click_id
                .as_ref()
                .map(|click_id| identifier_hash(IdentifierKind::ClickId, click_id));
            (
                outcome.attribution.pending_until.unwrap_or(now),
                root,
                named_click,
            )
        });
        records.push(Record {
            event_id: item.event_id,
            decided: decided.len(),
            occurred_at: event.timestamp,
            received_at: item.received_at,
            pending,
        });
        decided.push(Decided {
            event_id: item.event_id,
            first: item.pending_until.is_none(),
            attribution: outcome.attribution,
            routes: outcome.routes,
        });
    }

    write(
        client,
        workspace_id,
        now,
        &mut graph,
        &new_identities,
        &new_touches,
        &records,
        &decided,
        &gone,
    )
    .await?;
    Ok(decided)
}

/// The stored status of those of `event_ids` that are decided (or pending): `(status,
/// pending_until)` by event.
async fn select_existing(
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

/// Of the claimed events, those to look at now (new ones, and pending ones looked at again),
/// and the pending ones that are no longer stored and whose window is over.
fn sort_items<'e>(
    claim: &Claim,
    claimed: Vec<Item<'e>>,
    stored: &HashMap<Uuid, (OffsetDateTime, &Event)>,
    existing: &HashMap<Uuid, (String, Option<OffsetDateTime>)>,
    now: OffsetDateTime,
) -> (Vec<Item<'e>>, Vec<Uuid>) {
    let pending_until = |event_id: &Uuid| match existing.get(event_id) {
        None => Some(None),
        Some((status, until)) if status == "pending" => Some(Some(until.unwrap_or(now))),
        Some(_) => None,
    };
    let mut gone = Vec::new();
    let mut seen = HashSet::new();
    for &event_id in &claim.event_ids {
        if stored.contains_key(&event_id) || !seen.insert(event_id) {
            continue;
        }
        debug!(%event_id, "event no longer stored; skipped");
        if pending_until(&event_id)
            .flatten()
            .is_some_and(|until| until <= now)
        {
            gone.push(event_id);
        }
    }
    let items = claimed
        .into_iter()
        .filter_map(|mut item| match pending_until(&item.event_id) {
            Some(until) => {
                item.pending_until = until;
                Some(item)
            }
            None => {
                debug!(event_id = %item.event_id, "already decided; skipped");
                None
            }
        })
        .collect();
    (items, gone)
}

/// The stored persons of the items' identifiers, as `(identifier, person)`.
async fn select_persons(
    client: &impl GenericClient,
    workspace_id: Uuid,
    items: &[Item<'_>],
) -> Result<Vec<([u8; 32], Uuid)>> {
    let mut hashes: Vec<&[u8]> = items
        .iter()
        .flat_map(|item| item.identifiers.iter().map(|id| &id.hash[..]))
        .collect();
    hashes.sort_unstable();
    hashes.dedup();
    if hashes.is_empty() {
        return Ok(Vec::new());
    }
    let statement = client.prepare_cached(SELECT_PERSONS).await?;
    let mut persons = Vec::new();
    for row in client.query(&statement, &[&workspace_id, &hashes]).await? {
        let hash: Vec<u8> = row.try_get(0)?;
        if let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) {
            persons.push((hash, row.try_get(1)?));
        }
    }
    Ok(persons)
}

/// Loads stored persons into `graph`; answers the identifiers already stored.
fn add_persons(graph: &mut Graph, persons: Vec<([u8; 32], Uuid)>) -> HashSet<[u8; 32]> {
    let mut known = HashSet::with_capacity(persons.len());
    for (hash, person) in persons {
        let identifier = graph.node(Node::Identifier(hash));
        let person = graph.node(Node::Person(person));
        graph.union(identifier, person);
        known.insert(hash);
    }
    known
}

/// The registered clicks the items name by `clickId`.
async fn select_named_clicks(
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

/// Loads into `graph` the stored clicks of the items' persons that any item's window can reach;
/// answers the identifiers that own them.
async fn load_touches(
    client: &impl GenericClient,
    workspace_id: Uuid,
    items: &[Item<'_>],
    known: &HashSet<[u8; 32]>,
    window: time::Duration,
    graph: &mut Graph,
) -> Result<HashSet<[u8; 32]>> {
    let mut owners = HashSet::new();
    let persons: Vec<Uuid> = graph
        .nodes()
        .filter_map(|(_, node)| match node {
            Node::Person(person) => Some(person),
            Node::Identifier(_) => None,
        })
        .collect();
    let (Some(earliest), Some(latest)) = (
        items.iter().map(|item| item.event.timestamp).min(),
        items.iter().map(|item| item.event.timestamp).max(),
    ) else {
        return Ok(owners);
    };
    if persons.is_empty() || known.is_empty() {
        return Ok(owners);
    }
    let since = earliest.saturating_sub(window);
    let statement = client.prepare_cached(SELECT_TOUCHES).await?;
    for row in client
        .query(&statement, &[&workspace_id, &persons, &since, &latest])
        .await?
    {
        let person: Uuid = row.try_get(0)?;
        let owner: Vec<u8> = row.try_get(1)?;
        let Ok(owner) = <[u8; 32]>::try_from(owner.as_slice()) else {
            continue;
        };
        let stored: Option<serde_json::Value> = row.try_get(2)?;
        let click_id: Option<String> = row.try_get(3)?;
        let touchpoint: Touchpoint = match (stored, click_id) {
            (Some(stored), _) => from_json("touchpoint", stored)?,
            (None, Some(_)) => stored_click(&row, 3)?.touchpoint(),
            // A registered click that is no longer stored.
            (None, None) => continue,
        };
        let node = graph.node(Node::Person(person));
        graph.add_touch(node, Touch { owner, touchpoint }, false);
        owners.insert(owner);
    }
    Ok(owners)
}

/// The click ids an event carries, as its own touchpoint.
fn direct_touchpoint(event: &Event) -> Option<Touchpoint> {
    if event.click_ids.is_empty() {
        return None;
    }
    Some(Touchpoint {
        click_id: None,
        clicked_at: event.timestamp,
        click_ids: event.click_ids.clone(),
        utm: event.utm.clone(),
        url: event.page_url.clone(),
        referrer: event.referrer.clone(),
        ip: event.ip,
        user_agent: event.user_agent.clone(),
    })
}

/// An event's attribution and routes after this step.
struct Outcome {
    attribution: Attribution,
    routes: Vec<RouteDecision>,
}

/// Applies the status rules to what the touchpoint rules found; `None` for a pending event
/// that still waits.
fn outcome(
    item: &Item<'_>,
    found: Option<Found>,
    pending_window: time::Duration,
    now: OffsetDateTime,
) -> Option<Outcome> {
    let event = item.event;
    let recheck = item.pending_until.is_some();
    let deferred = event.kind == EventKind::Lead && event.mode == Mode::Deferred;
    let (stage, found, pending_until) = match (found, item.pending_until) {
        _ if deferred && !recheck => (Stage::Deferred, None, None),
        (Some(found), None) => (Stage::Matched, Some(found), None),
        (Some(found), Some(_)) => (Stage::MatchedLate, Some(found), None),
        (None, Some(until)) if until <= now => (Stage::Expired, None, None),
        (None, Some(_)) => return None,
        (None, None) if event.kind == EventKind::Sale => {
            let until = to_utc_millis(item.received_at.saturating_add(pending_window));
            if until > now {
                (Stage::Pending, None, Some(until))
            } else {
                (Stage::Unmatched, None, None)
            }
        }
        (None, None) => (Stage::Unmatched, None, None),
    };
    let status = match stage {
        Stage::Matched | Stage::MatchedLate => AttributionStatus::Matched,
        Stage::Pending => AttributionStatus::Pending,
        Stage::Deferred | Stage::Unmatched | Stage::Expired => AttributionStatus::Unmatched,
    };
    let (matched_by, click, first_touch) = match found {
        Some(found) => (
            Some(found.matched_by),
            Some(found.click),
            Some(found.first_touch),
        ),
        None => (None, None, None),
    };
    let routes = route(stage, click.as_ref());
    Some(Outcome {
        attribution: Attribution {
            status,
            matched_by,
            click,
            model: MODEL.to_owned(),
            first_touch,
            pending_until,
            decided_at: now,
        },
        routes,
    })
}

/// A statement of the write phase, sent at its first poll.
type Write<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// Writes the step back: merges, new identifiers and clicks, decisions, and re-checks of
/// pending events that gained clicks.
///
/// The statements are pipelined: all are sent at once, in this order (a re-check must see the
/// merges and decisions before it), and executed by the server one after the other.
#[allow(clippy::too_many_arguments)]
async fn write(
    client: &impl GenericClient,
    workspace_id: Uuid,
    now: OffsetDateTime,
    graph: &mut Graph,
    new_identities: &[(Identifier, usize)],
    new_touches: &[NewTouch],
    records: &[Record],
    decided: &[Decided],
    gone: &[Uuid],
) -> Result<()> {
    let mut persons = Persons::new(graph);

    // Every parameter first: the person ids of new rows are chosen here.
    let merges: Vec<(Uuid, Uuid)> = persons.merges();
    let losers: Vec<Uuid> = merges.iter().map(|(loser, _)| *loser).collect();
    let survivors: Vec<Uuid> = merges.iter().map(|(_, survivor)| *survivor).collect();

    let identity_hashes: Vec<&[u8]> = new_identities.iter().map(|(id, _)| &id.hash[..]).collect();
    let identity_kinds: Vec<&str> = new_identities
        .iter()
        .map(|(id, _)| id.kind.as_str())
        .collect();
    let identity_owners: Vec<Uuid> = new_identities
        .iter()
        .map(|&(_, node)| persons.of(graph, node))
        .collect();

    let touch_owners: Vec<&[u8]> = new_touches.iter().map(|t| &t.owner[..]).collect();
    let touch_persons: Vec<Uuid> = new_touches
        .iter()
        .map(|t| persons.of(graph, t.node))
        .collect();
    let touch_times: Vec<OffsetDateTime> = new_touches.iter().map(|t| t.clicked_at).collect();
    let touch_click_ids: Vec<Option<&str>> =
        new_touches.iter().map(|t| t.click_id.as_deref()).collect();
    let touchpoints: Vec<Option<&serde_json::Value>> =
        new_touches.iter().map(|t| t.touchpoint.as_ref()).collect();

    let ids: Vec<Uuid> = records.iter().map(|r| r.event_id).collect();
    let statuses: Vec<&str> = records
        .iter()
        .map(|r| status_name(decided[r.decided].attribution.status))
        .collect();
    // Serialised straight into the statement's jsonb parameters.
    let attributions: Vec<Json<&Attribution>> = records
        .iter()
        .map(|r| Json(&decided[r.decided].attribution))
        .collect();
    let routes: Vec<Json<&[RouteDecision]>> = records
        .iter()
        .map(|r| Json(decided[r.decided].routes.as_slice()))
        .collect();
    let occurred_at: Vec<OffsetDateTime> = records.iter().map(|r| r.occurred_at).collect();
    let received_at: Vec<OffsetDateTime> = records.iter().map(|r| r.received_at).collect();
    let pending_until: Vec<Option<OffsetDateTime>> = records
        .iter()
        .map(|r| r.pending.map(|(until, _, _)| until))
        .collect();
    let pending_persons: Vec<Option<Uuid>> = records
        .iter()
        .map(|r| {
            r.pending
                .and_then(|(_, node, _)| node)
                .map(|node| persons.of(graph, node))
        })
        .collect();
    let named: Vec<Option<&[u8]>> = records
        .iter()
        .map(|r| {
            r.pending
                .as_ref()
                .and_then(|(_, _, named)| named.as_ref().map(|hash| &hash[..]))
        })
        .collect();

    // Nothing is dispatched when a window ends, so these need no event to route.
    let closed = Attribution {
        status: AttributionStatus::Unmatched,
        matched_by: None,
        click: None,
        model: MODEL.to_owned(),
        first_touch: None,
        pending_until: None,
        decided_at: now,
    };
    let closed_routes = route(Stage::Expired, None);
    let (closed, closed_routes) = (Json(&closed), Json(closed_routes.as_slice()));

    let gains = persons.gains(graph);
    let gained: Vec<Uuid> = gains.iter().map(|(person, _)| *person).collect();
    let gained_since: Vec<OffsetDateTime> = gains.iter().map(|(_, since)| *since).collect();

    // Then the statements, prepared before any is sent so that they go out in this order.
    let mut writes: Vec<Write<'_>> = Vec::new();
    if !merges.is_empty() {
        for sql in [MERGE_IDENTITIES, MERGE_TOUCHES, MERGE_PENDING] {
            let statement = client.prepare_cached(sql).await?;
            writes.push(execute(
                client,
                statement,
                vec![&workspace_id, &losers, &survivors],
            ));
        }
    }
    if !new_identities.is_empty() {
        let statement = client.prepare_cached(INSERT_IDENTITIES).await?;
        writes.push(execute(
            client,
            statement,
            vec![
                &workspace_id,
                &identity_hashes,
                &identity_kinds,
                &identity_owners,
            ],
        ));
    }
    if !new_touches.is_empty() {
        let statement = client.prepare_cached(INSERT_TOUCHES).await?;
        writes.push(execute(
            client,
            statement,
            vec![
                &workspace_id,
                &touch_owners,
                &touch_persons,
                &touch_times,
                &touch_click_ids,
                &touchpoints,
            ],
        ));
    }
    if !records.is_empty() {
        let statement = client.prepare_cached(UPSERT_ATTRIBUTIONS).await?;
        writes.push(execute(
            client,
            statement,
            vec![
                &workspace_id,
                &ids,
                &statuses,
                &attributions,
                &routes,
                &occurred_at,
                &received_at,
                &pending_until,
                &pending_persons,
                &named,
                &now,
            ],
        ));
    }
    if !gone.is_empty() {
        let statement = client.prepare_cached(CLOSE_GONE).await?;
        writes.push(execute(
            client,
            statement,
            vec![&workspace_id, &gone, &closed, &closed_routes, &now],
        ));
    }
    if !gains.is_empty() {
        let statement = client.prepare_cached(MARK_PENDING).await?;
        let (gained, gained_since) = (&gained, &gained_since);
        writes.push(Box::pin(async move {
            if let Some(row) = client
                .query_opt(&statement, &[&workspace_id, gained, gained_since])
                .await?
            {
                let marked: i32 = row.try_get(0)?;
                debug!(%workspace_id, marked, "pending events queued for another look");
            }
            Ok(())
        }));
    }
    futures_util::future::try_join_all(writes).await?;
    Ok(())
}

/// A statement of the write phase; sent when first polled.
fn execute<'a>(
    client: &'a impl GenericClient,
    statement: Statement,
    params: Vec<&'a (dyn ToSql + Sync)>,
) -> Write<'a> {
    Box::pin(async move {
        client.execute(&statement, &params).await?;
        Ok(())
    })
}

fn status_name(status: AttributionStatus) -> &'static str {
    match status {
        AttributionStatus::Matched => "matched",
        AttributionStatus::Unmatched => "unmatched",
        AttributionStatus::Pending => "pending",
    }
}

/// The person id of each component of the step's graph: the oldest stored person in it (the
/// others merge into it), else a new one.
struct Persons {
    by_root: HashMap<usize, Uuid>,
    /// Each stored person with the root of its component.
    stored: Vec<(usize, Uuid)>,
}

impl Persons {
    fn new(graph: &mut Graph) -> Self {
        let nodes: Vec<(usize, Uuid)> = graph
            .nodes()
            .filter_map(|(index, node)| match node {
                Node::Person(person) => Some((index, person)),
                Node::Identifier(_) => None,
            })
            .collect();
        let stored: Vec<(usize, Uuid)> = nodes
            .into_iter()
            .map(|(index, person)| (graph.find(index), person))
            .collect();
        let mut by_root: HashMap<usize, Uuid> = HashMap::new();
        for &(root, person) in &stored {
            by_root
                .entry(root)
                .and_modify(|survivor| *survivor = (*survivor).min(person))
                .or_insert(person);
        }
        Self { by_root, stored }
    }

    /// `(loser, survivor)` for every stored person merged into another.
    fn merges(&self) -> Vec<(Uuid, Uuid)> {
        self.stored
            .iter()
            .filter_map(|(root, person)| {
                let survivor = *self.by_root.get(root)?;
                (survivor != *person).then_some((*person, survivor))
            })
            .collect()
    }

    /// The person of `node`'s component.
    fn of(&mut self, graph: &mut Graph, node: usize) -> Uuid {
        let root = graph.find(node);
        *self.by_root.entry(root).or_insert_with(Uuid::now_v7)
    }

    /// `(person, since)` for every component that gained clicks its pending events may match.
    fn gains(&mut self, graph: &mut Graph) -> Vec<(Uuid, OffsetDateTime)> {
        let indices: Vec<usize> = graph.nodes().map(|(index, _)| index).collect();
        let mut roots: Vec<usize> = indices.into_iter().map(|i| graph.find(i)).collect();
        roots.sort_unstable();
        roots.dedup();
        let mut out = Vec::new();
        for root in roots {
            if let Some(since) = graph.gained_since(root) {
                out.push((self.of(graph, root), since));
            }
        }
        out
    }
}
