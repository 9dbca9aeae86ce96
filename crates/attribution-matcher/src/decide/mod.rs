//! One worker step: attribute and route the events of a [`Claim`], and record the decisions.
//!
//! Three parts, each in its own module:
//! - [`read`]: what the database knew before the step, in one pipelined round trip (decisions
//!   already made, stored identifiers with their persons, named registered clicks), then the
//!   probes for persons' clicks in each event's window;
//! - [`step`]: the decisions, without I/O (property-tested);
//! - [`write`]: merges, persons, identifiers, clicks, decisions and re-checks, in one pipelined
//!   burst.
//!
//! A step costs about the same number of round trips for one event as for two thousand, and the
//! same per event for a person's first event as for their thousandth: a person's clicks are never
//! loaded, only the last and the first in each event's window, by index probes.
//!
//! A decision is stored as references (the identifiers that own its touchpoint and first touch,
//! the routing stage); [`get_decision`] and [`get_attributions`] rebuild what the API shows.

mod cache;
mod carried;
mod generations;
pub(crate) mod read;
mod split;
pub mod step;
mod write;

use crate::{HashMap, HashSet};
use std::borrow::Cow;

use deadpool_postgres::GenericClient;
use events::{
    to_utc_millis, Attribution, Event, IdentifierHash, IgnoredIdentifier, RouteDecision, Touchpoint,
};
use time::OffsetDateTime;
use tracing::debug;
use uuid::Uuid;

use crate::choice::{Found, Touch};
use crate::identity::{event_identifiers, Identifier};
use crate::queue::Claim;
use crate::routing::route;
use crate::settings::{attribution_window, to_time, MatchSettings};
use crate::{from_json, Error, Result};

use self::step::{Item, Known, KnownIdentifier, KnownPerson, StepSettings};

pub use self::cache::{graph_changed, GraphCache, GraphChanges, Lease};
pub use self::carried::CarriedClicks;
pub use self::split::split;
pub use self::step::direct_touchpoint;

/// What the database held of a claim's identifiers before its step: each stored identifier with
/// the person it belongs to, and those persons. A step reads it itself; a worker that splits a
/// claim reads it once ([`KnownGraph::of_claim`], then [`read_identities`] of its
/// [`KnownGraph::runs`]), for [`split`] and for every part.
#[derive(Debug, Clone, Default)]
pub struct KnownGraph {
    pub(crate) identifiers: HashMap<IdentifierHash, KnownIdentifier>,
    pub(crate) persons: HashMap<Uuid, KnownPerson>,
    /// Each claimed event's identifiers (hashed once, for every part).
    pub(crate) of_event: HashMap<Uuid, Vec<Identifier>>,
    /// What the step's writes say of the graph's last writer ([`GraphCache`]).
    pub(crate) mark: cache::WriterMark,
    /// The earliest clicks of all of some of the persons, from a [`GraphCache`].
    pub(crate) earliest: HashMap<Uuid, cache::Earliest>,
}

impl KnownGraph {
    /// The identifiers of the claim's events (hashed once, here), before anything is read.
    pub fn of_claim(claim: &Claim, events: &[(Uuid, OffsetDateTime, Event)]) -> Self {
        let bodies = bodies_of(events);
        let of_event = claimed_items(claim, &bodies, None)
            .into_iter()
            .map(|item| (item.event_id, item.identifiers))
            .collect();
        Self {
            of_event,
            ..Self::default()
        }
    }

    /// The claim's distinct identifiers, in `n` runs of about equal length.
    pub fn runs(&self, n: usize) -> Vec<Vec<IdentifierHash>> {
        in_runs(&self.distinct_hashes(), n)
    }

    /// The claim's distinct identifiers, sorted.
    pub(crate) fn distinct_hashes(&self) -> Vec<IdentifierHash> {
        let mut hashes: Vec<IdentifierHash> = self
            .of_event
            .values()
            .flat_map(|identifiers| identifiers.iter().map(|id| id.hash))
            .collect();
        hashes.sort_unstable();
        hashes.dedup();
        hashes
    }

    /// Adds what `other` read (of other identifiers of the same claim, at the same time).
    pub fn absorb(&mut self, other: KnownGraph) {
        self.identifiers.extend(other.identifiers);
        self.persons.extend(other.persons);
        self.of_event.extend(other.of_event);
        self.earliest.extend(other.earliest);
    }
}

/// `hashes` in `n` runs of about equal length (none when there are none).
pub(crate) fn in_runs(hashes: &[IdentifierHash], n: usize) -> Vec<Vec<IdentifierHash>> {
    let size = hashes.len().div_ceil(n.max(1)).max(1);
    hashes.chunks(size).map(<[_]>::to_vec).collect()
}

/// What the database holds of these identifiers (sorted, without duplicates) and their persons;
/// a worker reading a large claim's graph reads runs of them on several connections.
pub async fn read_identities(
    client: &impl GenericClient,
    workspace_id: Uuid,
    hashes: &[IdentifierHash],
) -> Result<KnownGraph> {
    let hashes: Vec<&[u8]> = hashes.iter().map(|hash| &hash[..]).collect();
    read::identities_of(client, workspace_id, &hashes).await
}

/// The claimed events by id.
fn bodies_of(events: &[(Uuid, OffsetDateTime, Event)]) -> HashMap<Uuid, (OffsetDateTime, &Event)> {
    events
        .iter()
        .map(|(id, received_at, event)| (*id, (*received_at, event)))
        .collect()
}

/// The claimed events that are stored, with their identifiers (from `graph` when it has them),
/// in claim order.
fn claimed_items<'e>(
    claim: &Claim,
    bodies: &HashMap<Uuid, (OffsetDateTime, &'e Event)>,
    graph: Option<&KnownGraph>,
) -> Vec<Item<'e>> {
    let mut seen = HashSet::with_capacity_and_hasher(claim.event_ids.len(), Default::default());
    claim
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
                identifiers: graph
                    .and_then(|graph| graph.of_event.get(&event_id).cloned())
                    .unwrap_or_else(|| event_identifiers(event)),
            })
        })
        .collect()
}

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
    let mut carried = CarriedClicks::new(0);
    let (decided, _) =
        decide_known(client, claim, events, settings, now, &mut carried, None).await?;
    Ok(decided)
}

/// [`decide`], keeping the clicks it reads from stored events in `carried` for the next steps (a
/// worker keeps one for its life), given what [`read_identities`] read of the claim's
/// identifiers (`None`: read it here). A part of a [`split`] claim takes the whole claim's graph:
/// the part's identifiers and persons are its own, so nothing another part writes changes what
/// was read of them. Answers also what the step changed of the graph, for a [`GraphCache`] to
/// apply once the step has committed.
pub async fn decide_known(
    client: &impl GenericClient,
    claim: &Claim,
    events: &[(Uuid, OffsetDateTime, Event)],
    settings: &MatchSettings,
    now: OffsetDateTime,
    carried: &mut CarriedClicks,
    graph: Option<&KnownGraph>,
) -> Result<(Vec<Decided>, GraphChanges)> {
    let workspace_id = claim.workspace_id;
    if claim.event_ids.is_empty() {
        return Ok((Vec::new(), GraphChanges::default()));
    }
    let mark = graph.map(|graph| graph.mark).unwrap_or_default();
    let now = to_utc_millis(now);
    let started = std::time::Instant::now();

    let bodies = bodies_of(events);
    let claimed = claimed_items(claim, &bodies, graph);

    // What the step reads, in one round trip: the statements are pipelined on the connection.
    let identities = async {
        match graph {
            Some(graph) => Ok(Cow::Borrowed(graph)),
            None => read::identities(client, workspace_id, &claimed)
                .await
                .map(Cow::Owned),
        }
    };
    let (window, existing, graph, named, any_pending) = futures_util::try_join!(
        attribution_window(client, workspace_id, settings),
        read::existing(client, workspace_id, &claim.event_ids),
        identities,
        read::named_clicks(client, workspace_id, &claimed),
        read::any_pending(client, workspace_id),
    )?;
    let (identifiers, persons) = (&graph.identifiers, &graph.persons);
    let read_ms = started.elapsed().as_secs_f64() * 1000.0;
    let window = to_time(window);
    let (items, gone) = sort_items(claim, claimed, &bodies, &existing, now);
    let step_settings = StepSettings {
        window,
        pending_window: to_time(settings.pending_window),
        max_links: {
            let limit = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            let links = limit(settings.identity_max_links);
            [limit(settings.identity_max_customer_ids), links, links]
        },
        now,
    };
    let mut known = Known {
        identifiers,
        persons,
        named: &named,
        probes: None,
    };
    // The graph's shape does not depend on clicks: a first run tells which probes it needs.
    let mut wanted: Vec<_> = step::run(&items, known, step_settings)
        .probes
        .into_iter()
        .collect();
    wanted.sort_unstable();
    let at_hand: HashMap<Uuid, &Event> = bodies
        .iter()
        .map(|(id, (_, event))| (*id, *event))
        .collect();
    let probe_started = std::time::Instant::now();
    let (answers, earliest) = read::probes(
        client,
        workspace_id,
        &wanted,
        window,
        &at_hand,
        carried,
        &graph.earliest,
    )
    .await?;
    let probe_ms = probe_started.elapsed().as_secs_f64() * 1000.0;
    known.probes = Some(&answers);
    let mut step = step::run(&items, known, step_settings);
    if !any_pending && step.records.iter().all(|r| r.pending.is_none()) {
        // Nothing pending, stored or new: the clicks gained re-check nothing.
        step.gains.clear();
    }
    // The groups (and their id) of the clicks this step files from the events that carried them.
    let carried_groups: HashMap<Uuid, (i64, events::ClickGroups)> = step
        .identities
        .iter()
        .filter_map(|i| i.touch.as_ref().and_then(|(_, source)| *source))
        .chain(step.filed.iter().filter_map(|(_, (_, source))| *source))
        .filter_map(|source| {
            let (_, event) = bodies.get(&source)?;
            let groups = events::ClickGroups::of(&event.click_ids, event.utm.as_ref());
            Some((source, (groups.id(), groups)))
        })
        .collect();
    let write_started = std::time::Instant::now();
    write::write(
        client,
        workspace_id,
        now,
        &step,
        &gone,
        &carried_groups,
        mark,
    )
    .await?;
    debug!(
        %workspace_id,
        events = items.len(),
        probes = wanted.len(),
        identities = step.identities.len(),
        merges = step.merges.len(),
        read_ms,
        probe_ms,
        write_ms = write_started.elapsed().as_secs_f64() * 1000.0,
        total_ms = started.elapsed().as_secs_f64() * 1000.0,
        "attribution step decided"
    );
    let decided = std::mem::take(&mut step.decided);
    let day = self::step::used_on(now);
    Ok((decided, GraphChanges::of(step, day, earliest)))
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
    let mut seen = HashSet::default();
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

const SELECT_DECISIONS: &str = "
    SELECT a.event_id, a.stage, a.matched_by, a.touch, a.first_touch, a.ignored, a.pending_until,
           a.decided_at, a.attribution, a.routes, a.status
    FROM unnest($2::uuid[]) AS q(event_id)
    CROSS JOIN LATERAL (
        SELECT * FROM attributions WHERE workspace_id = $1 AND event_id = q.event_id LIMIT 1
    ) AS a";

/// A stored decision, before its clicks are looked up.
struct Stored {
    event_id: Uuid,
    /// Decided before decisions were kept as references: the copies.
    copied: Option<(Attribution, Vec<RouteDecision>)>,
    stage: Option<crate::routing::Stage>,
    matched_by: Option<events::MatchedBy>,
    touch: Option<IdentifierHash>,
    first_touch: Option<IdentifierHash>,
    ignored: Option<String>,
    pending_until: Option<OffsetDateTime>,
    decided_at: OffsetDateTime,
}

async fn select_decisions(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_ids: &[Uuid],
) -> Result<Vec<Stored>> {
    let statement = client.prepare_cached(SELECT_DECISIONS).await?;
    let hash =
        |bytes: Option<Vec<u8>>| bytes.and_then(|b| <IdentifierHash>::try_from(b.as_slice()).ok());
    let mut out = Vec::with_capacity(event_ids.len());
    for row in client
        .query(&statement, &[&workspace_id, &event_ids])
        .await?
    {
        let attribution: Option<serde_json::Value> = row.try_get(8)?;
        let routes: Option<serde_json::Value> = row.try_get(9)?;
        let copied = match (attribution, routes) {
            (Some(attribution), Some(routes)) => Some((
                from_json("attribution", attribution)?,
                from_json("routes", routes)?,
            )),
            _ => None,
        };
        let stage: Option<String> = row.try_get(1)?;
        let matched_by: Option<String> = row.try_get(2)?;
        out.push(Stored {
            event_id: row.try_get(0)?,
            copied,
            stage: stage.as_deref().and_then(write::stage_from_name),
            matched_by: matched_by.as_deref().and_then(write::matched_by_from_name),
            touch: hash(row.try_get(3)?),
            first_touch: hash(row.try_get(4)?),
            ignored: row.try_get(5)?,
            pending_until: row.try_get(6)?,
            decided_at: to_utc_millis(row.try_get(7)?),
        });
    }
    Ok(out)
}

/// Rebuilds a decision from its references. `direct` is the event's own touchpoint, when the
/// caller has the event: a direct match shows it as the event carried it.
fn rebuild(
    stored: Stored,
    touches: &HashMap<IdentifierHash, Touchpoint>,
    direct: Option<Touchpoint>,
) -> Result<Decision> {
    if let Some((attribution, routes)) = stored.copied {
        return Ok(Decision {
            attribution,
            routes,
        });
    }
    let stage = stored.stage.ok_or(Error::StoredDecision {
        event_id: stored.event_id,
    })?;
    let touch = |owner: IdentifierHash| {
        touches.get(&owner).map(|touchpoint| Touch {
            owner,
            touchpoint: touchpoint.clone(),
        })
    };
    let click = match (stored.matched_by, direct) {
        (Some(events::MatchedBy::Direct), Some(direct)) => stored.touch.map(|owner| Touch {
            owner,
            touchpoint: direct,
        }),
        _ => stored.touch.and_then(touch),
    };
    let found = match (stored.matched_by, click) {
        (Some(matched_by), Some(click)) => {
            let first_touch = stored
                .first_touch
                .and_then(touch)
                .unwrap_or_else(|| click.clone());
            Some(Found {
                matched_by,
                click,
                first_touch,
            })
        }
        _ => None,
    };
    let mut attribution =
        step::attribution_of(stage, found, stored.pending_until, stored.decided_at);
    attribution.ignored_identifiers = stored
        .ignored
        .iter()
        .flat_map(|fields| fields.split(','))
        .filter(|field| !field.is_empty())
        .map(|field| IgnoredIdentifier {
            field: field.to_owned(),
            reason: "too_common".to_owned(),
        })
        .collect();
    let routes = route(stage, attribution.click.as_ref());
    Ok(Decision {
        attribution,
        routes,
    })
}

/// The decision about `event_id`, or `None` while the event still waits for the matcher.
/// `event` is the event itself when the caller has it (a direct match then shows the event's
/// own click as it carried it).
pub async fn get_decision(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_id: Uuid,
    event: Option<&Event>,
) -> Result<Option<Decision>> {
    let Some(stored) = select_decisions(client, workspace_id, &[event_id])
        .await?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let owners: Vec<IdentifierHash> = stored
        .touch
        .iter()
        .chain(&stored.first_touch)
        .copied()
        .collect();
    let touches = read::touches(client, workspace_id, &owners).await?;
    let direct = event.map(direct_touchpoint);
    Ok(Some(rebuild(stored, &touches, direct)?))
}

/// The attributions of those of `event_ids` that are decided, by event id (for reports: a few
/// statements for many events).
pub async fn get_attributions(
    client: &impl GenericClient,
    workspace_id: Uuid,
    event_ids: &[Uuid],
) -> Result<HashMap<Uuid, Attribution>> {
    let mut out = HashMap::with_capacity_and_hasher(event_ids.len(), Default::default());
    if event_ids.is_empty() {
        return Ok(out);
    }
    let stored = select_decisions(client, workspace_id, event_ids).await?;
    let owners: Vec<IdentifierHash> = stored
        .iter()
        .flat_map(|s| s.touch.iter().chain(&s.first_touch))
        .copied()
        .collect();
    let touches = read::touches(client, workspace_id, &owners).await?;
    for stored in stored {
        let event_id = stored.event_id;
        out.insert(event_id, rebuild(stored, &touches, None)?.attribution);
    }
    Ok(out)
}
