//! The decision step without I/O: given what the database knew before the step, attribute and
//! route the step's events in arrival order, and say what to write back.
//!
//! Each event's identifiers are linked into one person (merging the persons it names together,
//! unless an identifier is shared by too many people: see [`Guard`]), the clicks it brings are
//! filed as that person's, and the touchpoint rules of [`crate::choice`] run over what the graph
//! knew just before the event. A person's stored clicks are never loaded: the rules see, per
//! stored person, the last and the first click within the event's attribution window (a
//! [`Probe`], answered by two index probes), plus the clicks filed earlier in the same step.
//!
//! The step runs twice: first without probe answers, to learn which probes it needs (the graph's
//! shape does not depend on clicks), then with them. Both runs make the same graph.

use crate::{HashMap, HashSet};

use events::{
    to_utc_millis, Attribution, AttributionStatus, Event, EventKind, IdentifierHash,
    IgnoredIdentifier, MatchedBy, Mode, RouteDecision, Touchpoint,
};
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

use crate::choice::{choose_touches, find_touchpoint, Chosen, Found, Linked, Touch};
use crate::clicks::StoredClick;
use crate::identity::{identifier_hash, Identifier, IdentifierKind};
use crate::routing::{route, Stage};

use super::Decided;

/// The attribution model; the only one.
pub(crate) const MODEL: &str = "last_click";

/// Identifiers of each guarded kind a person holds: customer ids, emails, phones.
pub type Counts = [i64; 3];

/// A click filed by a step: when it happened, and the event that carried it (none for a
/// registered click).
pub type Filed = (OffsetDateTime, Option<Uuid>);

/// A claimed event to look at in this step.
#[derive(Debug, Clone)]
pub struct Item<'e> {
    /// The event.
    pub event_id: Uuid,
    /// When it was received.
    pub received_at: OffsetDateTime,
    /// Its body.
    pub event: &'e Event,
    /// The end of its pending window, when it is pending already (a re-check).
    pub pending_until: Option<OffsetDateTime>,
    /// Its identifiers, in [`crate::event_identifiers`] order.
    pub identifiers: Vec<Identifier>,
}

/// What the database held of an identifier before the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownIdentifier {
    /// The person it belongs to (one that was not merged into another).
    pub person: Uuid,
    /// Marked as shared by too many people: it links nobody any more.
    pub too_common: bool,
    /// It owns a click of its person.
    pub has_touch: bool,
}

/// What the database held of a person before the step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownPerson {
    /// The persons merged into it.
    pub members: Vec<Uuid>,
    /// Its identifiers of each guarded kind.
    pub counts: Counts,
    /// The day it was last used (an event named it), as stored.
    pub used_on: Option<Date>,
}

/// The last and the first click of one stored person (its own rows, not its members') between
/// `at - window` and `at`, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Probe {
    /// The person.
    pub person: Uuid,
    /// The event's time.
    pub at: OffsetDateTime,
    /// Whether the last click is wanted too (an event with a touchpoint of its own, direct or
    /// named, needs only the first).
    pub last: bool,
}

/// The answer to a [`Probe`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probed {
    /// The most recent click in the window.
    pub last: Option<Touch>,
    /// The earliest click in the window.
    pub first: Option<Touch>,
}

/// What the database knew before the step.
#[derive(Debug, Clone, Copy)]
pub struct Known<'a> {
    /// The stored identifiers among the step's.
    pub identifiers: &'a HashMap<IdentifierHash, KnownIdentifier>,
    /// Their persons.
    pub persons: &'a HashMap<Uuid, KnownPerson>,
    /// The registered clicks the step's events name.
    pub named: &'a HashMap<String, StoredClick>,
    /// Answers to the probes; `None` in the first run, which only collects them.
    pub probes: Option<&'a HashMap<Probe, Probed>>,
}

/// The settings of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepSettings {
    /// The workspace's attribution window.
    pub window: Duration,
    /// How long a sale without a touchpoint waits.
    pub pending_window: Duration,
    /// The most identifiers of one guarded kind a person may hold.
    pub max_links: Counts,
    /// The time of the decisions.
    pub now: OffsetDateTime,
}

/// A row of `attributions` to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The event.
    pub event_id: Uuid,
    /// Its attribution and routes: the [`Decided`] at this index.
    pub decided: usize,
    /// How it was routed.
    pub stage: Stage,
    /// The identifier owning the touchpoint.
    pub touch: Option<IdentifierHash>,
    /// The identifier owning the first touch, when it is not the touchpoint.
    pub first_touch: Option<IdentifierHash>,
    /// Fields of identifiers left out, comma-separated.
    pub ignored: Option<String>,
    /// Kept while pending: the window's end, when the event happened, its person, the named click.
    pub pending: Option<Pending>,
    /// The event was decided before (pending): its row is updated, not inserted.
    pub recheck: bool,
}

/// What a pending decision keeps for a late link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The end of the pending window.
    pub until: OffsetDateTime,
    /// When the event happened.
    pub occurred_at: OffsetDateTime,
    /// The person its identifiers form, if any.
    pub person: Option<Uuid>,
    /// The registered click it names, hashed.
    pub named_click: Option<IdentifierHash>,
}

/// A new identity row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIdentity {
    /// The identifier.
    pub identifier: Identifier,
    /// Its person.
    pub person: Uuid,
    /// The click it owns, if any (a registered click's data stays in the clicks registry).
    pub touch: Option<Filed>,
    /// Shared by too many people.
    pub too_common: bool,
}

/// A person row to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonRow {
    /// The person.
    pub person: Uuid,
    /// The persons merged into it.
    pub members: Vec<Uuid>,
    /// Its identifiers of each guarded kind.
    pub counts: Counts,
}

/// What a step decided and what to write back.
#[derive(Debug, Default)]
pub struct Step {
    /// The probes the step needs (all of them; filled by both runs).
    pub probes: HashSet<Probe>,
    /// Every event whose routing changes now, in claim order.
    pub decided: Vec<Decided>,
    /// The attributions to write.
    pub records: Vec<Record>,
    /// New identity rows.
    pub identities: Vec<NewIdentity>,
    /// Stored identifiers that now own a click.
    pub filed: Vec<(IdentifierHash, Filed)>,
    /// Stored identifiers found too common now.
    pub too_common: Vec<IdentifierHash>,
    /// Person rows to write (new persons, survivors of merges, changed counts).
    pub persons: Vec<PersonRow>,
    /// `(person, into)` for every stored person (member or not) that now belongs to another.
    pub merged: Vec<(Uuid, Uuid)>,
    /// `(loser, survivor)` for every stored person merged into another: its pending events move.
    pub merges: Vec<(Uuid, Uuid)>,
    /// `(person, since)`: persons that gained clicks their pending events from `since` on may match.
    pub gains: Vec<(Uuid, OffsetDateTime)>,
    /// Stored persons the step's events named whose stored day of use is before the step's
    /// ([`used_on`]); the persons it writes ([`Step::persons`]) get the day with their rows.
    pub used: Vec<Uuid>,
}

/// The day of use a step records: its decisions' day, in UTC.
pub fn used_on(now: OffsetDateTime) -> Date {
    now.to_offset(time::UtcOffset::UTC).date()
}

/// Before every event allowed: clicks before 2000 are refused at the door.
const FAR_PAST: OffsetDateTime = time::macros::datetime!(2000-01-01 0:00 UTC);

/// Decides the step's events, in order.
pub fn run(items: &[Item<'_>], known: Known<'_>, settings: StepSettings) -> Step {
    let mut graph = Graph::default();
    let mut step = Step::default();
    step.decided.reserve(items.len());
    let mut guard = Guard::default();
    // Owners of clicks filed by this step.
    let mut filed: HashSet<IdentifierHash> = HashSet::default();
    let mut new_identities: Vec<(Identifier, usize)> = Vec::new();
    let mut touched: HashMap<IdentifierHash, Filed> = HashMap::default();
    let mut seen_new: HashSet<IdentifierHash> = HashSet::default();
    let mut records: Vec<(Record, Option<usize>)> = Vec::with_capacity(items.len());

    // The first run only collects the probes: nothing it would decide is kept.
    let collecting = known.probes.is_none();

    for item in items {
        let event = item.event;
        let (usable, ignored) = guard.usable(&mut graph, known, item, settings.max_links);

        let mut roots: Vec<(IdentifierKind, usize)> = Vec::with_capacity(usable.len());
        for &(identifier, node) in &usable {
            let root = graph.find(node);
            if !roots.iter().any(|&(_, seen)| seen == root) {
                roots.push((identifier.kind, root));
            }
        }
        let named_click = event
            .click_id
            .as_ref()
            .and_then(|click_id| known.named.get(click_id).map(|click| (click_id, click)));
        let (direct, named_touch, found) = if collecting {
            // The probes an event needs depend on its own touchpoint only through `need_last`.
            let need_last = !has_direct_touch(item) && named_click.is_none();
            for &(_, root) in &roots {
                graph.note_probes(root, (event.timestamp, need_last), known, &mut step.probes);
            }
            (None, None, None)
        } else {
            // The rules run over what the graph knew before this event linked anything.
            let direct = direct_touch(item);
            let named_touch = named_click.map(|(click_id, click)| Touch {
                owner: identifier_hash(IdentifierKind::ClickId, click_id),
                touchpoint: click.touchpoint(),
            });
            let need_last = direct.is_none() && named_touch.is_none();
            let linked: Vec<Linked<'_>> = roots
                .iter()
                .map(|&(kind, root)| Linked {
                    matched_by: kind.matched_by(),
                    chosen: graph.candidates(
                        root,
                        (event.timestamp, need_last),
                        settings.window,
                        known,
                        &mut step.probes,
                    ),
                })
                .collect();
            let found = find_touchpoint(direct.as_ref(), named_touch.as_ref(), &linked);
            (direct, named_touch, found)
        };

        // Link the event's identifiers into one person.
        let root = usable
            .iter()
            .map(|&(_, node)| node)
            .reduce(|a, b| graph.union(a, b));
        for &(identifier, node) in &usable {
            if !known.identifiers.contains_key(&identifier.hash) && seen_new.insert(identifier.hash)
            {
                new_identities.push((identifier, node));
            }
        }
        // File the clicks it brings as the person's.
        if let Some(root) = root {
            let owns_click = |hash: &IdentifierHash| {
                known
                    .identifiers
                    .get(hash)
                    .is_some_and(|stored| stored.has_touch)
            };
            for (touch, stored_elsewhere) in [(direct, false), (named_touch, true)] {
                let Some(touch) = touch else { continue };
                if owns_click(&touch.owner) || !filed.insert(touch.owner) {
                    continue;
                }
                let source = (!stored_elsewhere).then_some(item.event_id);
                touched.insert(touch.owner, (touch.touchpoint.clicked_at, source));
                graph.add_touch(root, touch);
            }
        }

        if collecting {
            continue;
        }
        let Some(outcome) = outcome(item, found, settings) else {
            continue;
        };
        if let (AttributionStatus::Pending, Some(root)) = (outcome.attribution.status, root) {
            graph.mark_pending(root);
        }
        let mut attribution = outcome.attribution;
        attribution.ignored_identifiers = ignored
            .iter()
            .map(|kind| IgnoredIdentifier {
                field: kind.as_str().to_owned(),
                reason: "too_common".to_owned(),
            })
            .collect();
        let pending = (attribution.status == AttributionStatus::Pending).then(|| Pending {
            until: attribution.pending_until.unwrap_or(settings.now),
            occurred_at: event.timestamp,
            person: None,
            named_click: event
                .click_id
                .as_ref()
                .map(|click_id| identifier_hash(IdentifierKind::ClickId, click_id)),
        });
        let pending_node = pending.as_ref().and(root);
        let record = Record {
            event_id: item.event_id,
            decided: step.decided.len(),
            stage: outcome.stage,
            touch: outcome.touch,
            first_touch: outcome.first_touch,
            ignored: (!ignored.is_empty()).then(|| {
                ignored
                    .iter()
                    .map(|kind| kind.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            }),
            pending,
            recheck: item.pending_until.is_some(),
        };
        records.push((record, pending_node));
        step.decided.push(Decided {
            event_id: item.event_id,
            first: item.pending_until.is_none(),
            attribution,
            routes: outcome.routes,
        });
    }

    if collecting {
        return step;
    }

    // Every component's person: the stored person with the most members (the oldest on a tie)
    // survives and the others join it; a component of new identifiers only is a new person.
    let mut persons = Persons::default();
    for (identifier, node) in &new_identities {
        let person = persons.of(&mut graph, *node, known);
        step.identities.push(NewIdentity {
            identifier: *identifier,
            person,
            touch: touched.remove(&identifier.hash),
            too_common: false,
        });
    }
    for identifier in guard.flagged_new() {
        // Linked by an earlier event of this step before it was found too common: its row
        // is written once, marked.
        if let Some(row) = step
            .identities
            .iter_mut()
            .find(|row| row.identifier.hash == identifier.hash)
        {
            row.too_common = true;
            continue;
        }
        step.identities.push(NewIdentity {
            identifier,
            person: Uuid::now_v7(),
            touch: None,
            too_common: true,
        });
    }
    // Stored identifiers that now own a click.
    let mut filed_stored: Vec<(IdentifierHash, Filed)> = touched
        .into_iter()
        .filter(|(hash, _)| known.identifiers.contains_key(hash))
        .collect();
    filed_stored.sort_by_key(|(hash, _)| *hash);
    step.filed = filed_stored;
    step.too_common = guard.flagged_stored();
    for (mut record, node) in records {
        if let (Some(pending), Some(node)) = (record.pending.as_mut(), node) {
            pending.person = Some(persons.of(&mut graph, node, known));
        }
        step.records.push(record);
    }
    persons.finish(&mut graph, known, used_on(settings.now), &mut step);
    step
}

/// Whether [`direct_touch`] finds a touch, without building it.
fn has_direct_touch(item: &Item<'_>) -> bool {
    !item.event.click_ids.is_empty()
        && item
            .identifiers
            .iter()
            .any(|id| id.kind.matched_by() == MatchedBy::Direct)
}

/// The event's own click ids as a touch, owned by its first ad-platform click id.
fn direct_touch(item: &Item<'_>) -> Option<Touch> {
    let event = item.event;
    if event.click_ids.is_empty() {
        return None;
    }
    let owner = item
        .identifiers
        .iter()
        .find(|id| id.kind.matched_by() == MatchedBy::Direct)?
        .hash;
    Some(Touch {
        owner,
        touchpoint: direct_touchpoint(event),
    })
}

/// The click ids an event carries, as its own touchpoint.
pub fn direct_touchpoint(event: &Event) -> Touchpoint {
    Touchpoint {
        click_id: None,
        clicked_at: event.timestamp,
        click_ids: event.click_ids.clone(),
        utm: event.utm.clone(),
        url: event.page_url.clone(),
        referrer: event.referrer.clone(),
        ip: event.ip,
        user_agent: event.user_agent.clone(),
    }
}

/// An event's attribution and routes after this step.
struct Outcome {
    attribution: Attribution,
    routes: Vec<RouteDecision>,
    stage: Stage,
    touch: Option<IdentifierHash>,
    first_touch: Option<IdentifierHash>,
}

/// The stage of a decision: what the touchpoint rules found, the event's kind and mode, and
/// whether it was pending; `None` for a pending event that still waits.
fn stage_of(
    item: &Item<'_>,
    found: bool,
    settings: StepSettings,
) -> Option<(Stage, Option<OffsetDateTime>)> {
    let event = item.event;
    let recheck = item.pending_until.is_some();
    let deferred = event.kind == EventKind::Lead && event.mode == Mode::Deferred;
    Some(match (found, item.pending_until) {
        _ if deferred && !recheck => (Stage::Deferred, None),
        (true, None) => (Stage::Matched, None),
        (true, Some(_)) => (Stage::MatchedLate, None),
        (false, Some(until)) if until <= settings.now => (Stage::Expired, None),
        (false, Some(_)) => return None,
        (false, None) if event.kind == EventKind::Sale => {
            let until = to_utc_millis(item.received_at.saturating_add(settings.pending_window));
            if until > settings.now {
                (Stage::Pending, Some(until))
            } else {
                (Stage::Unmatched, None)
            }
        }
        (false, None) => (Stage::Unmatched, None),
    })
}

/// Applies the status rules to what the touchpoint rules found.
fn outcome(item: &Item<'_>, found: Option<Found>, settings: StepSettings) -> Option<Outcome> {
    let (stage, pending_until) = stage_of(item, found.is_some(), settings)?;
    let found = match stage {
        Stage::Matched | Stage::MatchedLate => found,
        _ => None,
    };
    let (touch, first_touch) = match &found {
        Some(found) => (
            Some(found.click.owner),
            (found.first_touch.owner != found.click.owner).then_some(found.first_touch.owner),
        ),
        None => (None, None),
    };
    let attribution = attribution_of(stage, found, pending_until, settings.now);
    let routes = route(stage, attribution.click.as_ref());
    Some(Outcome {
        attribution,
        routes,
        stage,
        touch,
        first_touch,
    })
}

/// The attribution shown for a decision at `stage` (the touchpoints found move into it).
pub(crate) fn attribution_of(
    stage: Stage,
    found: Option<Found>,
    pending_until: Option<OffsetDateTime>,
    decided_at: OffsetDateTime,
) -> Attribution {
    let status = status_of(stage);
    let (matched_by, click, first_touch) = match found {
        Some(found) => (
            Some(found.matched_by),
            Some(found.click.touchpoint),
            Some(found.first_touch.touchpoint),
        ),
        None => (None, None, None),
    };
    Attribution {
        status,
        matched_by,
        click,
        model: MODEL.to_owned(),
        first_touch,
        pending_until,
        decided_at,
        ignored_identifiers: Vec::new(),
    }
}

/// The status a stage shows.
pub(crate) fn status_of(stage: Stage) -> AttributionStatus {
    match stage {
        Stage::Matched | Stage::MatchedLate => AttributionStatus::Matched,
        Stage::Pending => AttributionStatus::Pending,
        Stage::Deferred | Stage::Unmatched | Stage::Expired => AttributionStatus::Unmatched,
    }
}

/// The guardrail: an identifier that would join more than `max_links[kind]` identifiers of one
/// guarded kind (customer ids, emails, phones) into one person is too common, and links nobody
/// from then on. Of the two sides a link would join, the one holding more identifiers of that kind
/// holds the common identifier (a placeholder e-mail shared by 50 customers sits with their 50
/// customer ids; the 51st customer brings one); on a tie, the later of the event's identifiers
/// (an event names its customer id first: with one customer id per person, the e-mail that would
/// join a second customer is the shared one, not the customer's own id).
#[derive(Debug, Default)]
struct Guard {
    /// Identifiers found too common in this step, with whether they were stored.
    flagged: HashMap<IdentifierHash, (Identifier, bool)>,
}

impl Guard {
    /// The event's identifiers that may link, each with its node; and the kinds left out.
    fn usable(
        &mut self,
        graph: &mut Graph,
        known: Known<'_>,
        item: &Item<'_>,
        max_links: Counts,
    ) -> (Vec<(Identifier, usize)>, Vec<IdentifierKind>) {
        let mut ignored = Vec::new();
        let mut usable: Vec<(Identifier, usize)> = Vec::with_capacity(item.identifiers.len());
        for identifier in &item.identifiers {
            let stored = known.identifiers.get(&identifier.hash);
            if stored.is_some_and(|stored| stored.too_common)
                || self.flagged.contains_key(&identifier.hash)
            {
                ignored.push(identifier.kind);
                continue;
            }
            let node = graph.identifier(*identifier, stored.copied(), known);
            usable.push((*identifier, node));
        }
        // Each round drops one identifier; the event has a handful.
        while let Some(index) = Self::culprit(graph, &usable, max_links) {
            let (identifier, _) = usable.remove(index);
            let stored = known.identifiers.contains_key(&identifier.hash);
            self.flagged.insert(identifier.hash, (identifier, stored));
            ignored.push(identifier.kind);
        }
        (usable, ignored)
    }

    /// The index of the identifier whose link would put too many identifiers of one kind into
    /// one person, if any.
    fn culprit(
        graph: &mut Graph,
        usable: &[(Identifier, usize)],
        max_links: Counts,
    ) -> Option<usize> {
        // The components joined so far, each with the index of its first identifier.
        let mut joined: Vec<(usize, usize)> = Vec::new();
        let mut total: Counts = [0; 3];
        for (index, &(_, node)) in usable.iter().enumerate() {
            let root = graph.find(node);
            if joined.iter().any(|&(seen, _)| seen == root) {
                continue;
            }
            let counts = graph.counts(root);
            if !joined.is_empty() {
                for kind in 0..3 {
                    if total[kind] + counts[kind] <= max_links[kind] {
                        continue;
                    }
                    let biggest = joined
                        .iter()
                        .max_by_key(|&&(root, _)| graph.counts_at(root)[kind])
                        .copied();
                    return Some(match biggest {
                        Some((root, first)) if graph.counts_at(root)[kind] > counts[kind] => first,
                        _ => index,
                    });
                }
            }
            joined.push((root, index));
            for kind in 0..3 {
                total[kind] += counts[kind];
            }
        }
        None
    }

    fn flagged_new(&self) -> Vec<Identifier> {
        let mut out: Vec<Identifier> = self
            .flagged
            .values()
            .filter(|(_, stored)| !stored)
            .map(|(identifier, _)| *identifier)
            .collect();
        out.sort_by_key(|identifier| identifier.hash);
        out
    }

    fn flagged_stored(&self) -> Vec<IdentifierHash> {
        let mut out: Vec<IdentifierHash> = self
            .flagged
            .iter()
            .filter(|(_, (_, stored))| *stored)
            .map(|(hash, _)| *hash)
            .collect();
        out.sort_unstable();
        out
    }
}

/// The index of a guarded kind in [`Counts`].
pub(crate) fn guarded(kind: IdentifierKind) -> Option<usize> {
    match kind {
        IdentifierKind::CustomerExternalId => Some(0),
        IdentifierKind::Email => Some(1),
        IdentifierKind::Phone => Some(2),
        _ => None,
    }
}

/// A node of the in-memory graph: a stored person, or an identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Node {
    Person(Uuid),
    Identifier(IdentifierHash),
}

/// What the graph knows about one set of linked nodes (kept at its root).
#[derive(Debug, Default)]
struct Component {
    /// The stored persons in it.
    stored: Vec<Uuid>,
    /// Its identifiers of each guarded kind.
    counts: Counts,
    /// Clicks filed by this step (indices into [`Graph::touches`]).
    touches: Vec<usize>,
    /// The earliest of those clicks.
    earliest_touch: Option<OffsetDateTime>,
    /// True when pending events may belong here: it holds a stored person, or an event of this
    /// step went pending in it.
    may_have_pending: bool,
    /// The earliest click that pending events here may not have seen yet.
    gained_since: Option<OffsetDateTime>,
}

/// A union-find over stored persons and identifiers that carries each component's clicks of this
/// step and its guarded counts, and notes which components gained clicks their pending events
/// may match.
#[derive(Debug, Default)]
struct Graph {
    index: HashMap<Node, usize>,
    parent: Vec<usize>,
    components: Vec<Component>,
    touches: Vec<Touch>,
}

impl Graph {
    fn add(&mut self, node: Node, component: Component) -> usize {
        let index = self.parent.len();
        self.index.insert(node, index);
        self.parent.push(index);
        self.components.push(component);
        index
    }

    /// The node of an identifier, linked to its stored person when it has one.
    fn identifier(
        &mut self,
        identifier: Identifier,
        stored: Option<KnownIdentifier>,
        known: Known<'_>,
    ) -> usize {
        if let Some(&index) = self.index.get(&Node::Identifier(identifier.hash)) {
            return index;
        }
        let mut component = Component::default();
        if stored.is_none() {
            if let Some(kind) = guarded(identifier.kind) {
                component.counts[kind] = 1;
            }
        }
        let node = self.add(Node::Identifier(identifier.hash), component);
        if let Some(stored) = stored {
            let person = self.person(stored.person, known);
            self.union(node, person);
        }
        node
    }

    fn person(&mut self, person: Uuid, known: Known<'_>) -> usize {
        if let Some(&index) = self.index.get(&Node::Person(person)) {
            return index;
        }
        let counts = known
            .persons
            .get(&person)
            .map_or([0; 3], |stored| stored.counts);
        self.add(
            Node::Person(person),
            Component {
                stored: vec![person],
                counts,
                may_have_pending: true,
                ..Component::default()
            },
        )
    }

    fn find(&mut self, mut index: usize) -> usize {
        while self.parent[index] != index {
            let grandparent = self.parent[self.parent[index]];
            self.parent[index] = grandparent;
            index = grandparent;
        }
        index
    }

    fn counts(&mut self, index: usize) -> Counts {
        let root = self.find(index);
        self.components[root].counts
    }

    /// The counts of a component by its root.
    fn counts_at(&self, root: usize) -> Counts {
        self.components[root].counts
    }

    /// Links the components of `a` and `b`; answers the root of the result.
    fn union(&mut self, a: usize, b: usize) -> usize {
        let (a, b) = (self.find(a), self.find(b));
        if a == b {
            return a;
        }
        let weight = |c: &Component| c.touches.len() + c.stored.len();
        let (big, small) = if weight(&self.components[a]) >= weight(&self.components[b]) {
            (a, b)
        } else {
            (b, a)
        };
        let small_component = std::mem::take(&mut self.components[small]);
        let big_component = &mut self.components[big];
        // Each side's pending events may now match the other side's clicks: those of this step
        // from their earliest, and any stored person's, whose times the step does not know.
        let mut gained = min_time(big_component.gained_since, small_component.gained_since);
        let reach = |c: &Component| {
            if c.stored.is_empty() {
                c.earliest_touch
            } else {
                Some(FAR_PAST)
            }
        };
        if big_component.may_have_pending {
            gained = min_time(gained, reach(&small_component));
        }
        if small_component.may_have_pending {
            gained = min_time(gained, reach(big_component));
        }
        big_component.gained_since = gained;
        big_component.stored.extend(small_component.stored);
        for kind in 0..3 {
            big_component.counts[kind] += small_component.counts[kind];
        }
        big_component.touches.extend(small_component.touches);
        big_component.earliest_touch =
            min_time(big_component.earliest_touch, small_component.earliest_touch);
        big_component.may_have_pending |= small_component.may_have_pending;
        self.parent[small] = big;
        big
    }

    /// Files a click of this step with the component of `index`; its pending events may match it.
    fn add_touch(&mut self, index: usize, touch: Touch) {
        let root = self.find(index);
        let clicked_at = touch.touchpoint.clicked_at;
        let touch_index = self.touches.len();
        self.touches.push(touch);
        let component = &mut self.components[root];
        component.touches.push(touch_index);
        component.earliest_touch = min_time(component.earliest_touch, Some(clicked_at));
        if component.may_have_pending {
            component.gained_since = min_time(component.gained_since, Some(clicked_at));
        }
    }

    fn mark_pending(&mut self, index: usize) {
        let root = self.find(index);
        self.components[root].may_have_pending = true;
    }

    /// Notes in `wanted` the probes an event at `at` linked to the component whose root is
    /// `root` needs: the last and first clicks of each of its stored persons (and their members).
    fn note_probes(
        &self,
        root: usize,
        (at, last): (OffsetDateTime, bool),
        known: Known<'_>,
        wanted: &mut HashSet<Probe>,
    ) {
        for stored in &self.components[root].stored {
            let members = known
                .persons
                .get(stored)
                .map_or(&[][..], |person| person.members.as_slice());
            for &person in std::iter::once(stored).chain(members) {
                wanted.insert(Probe { person, at, last });
            }
        }
    }

    /// The last and the first click the rules may choose for an event at `at` linked to the
    /// component whose root is `root`: of this step's clicks, and of the answers to the probes of
    /// its stored persons (noted in `wanted`).
    fn candidates<'a>(
        &'a self,
        root: usize,
        (at, last): (OffsetDateTime, bool),
        window: Duration,
        known: Known<'a>,
        wanted: &mut HashSet<Probe>,
    ) -> Option<Chosen<'a>> {
        self.note_probes(root, (at, last), known, wanted);
        let component = &self.components[root];
        let filed = component.touches.iter().map(|&index| &self.touches[index]);
        let probed = component
            .stored
            .iter()
            .flat_map(move |stored| {
                let members = known
                    .persons
                    .get(stored)
                    .map_or(&[][..], |person| person.members.as_slice());
                std::iter::once(stored).chain(members)
            })
            .filter_map(move |&person| {
                known
                    .probes
                    .and_then(|probes| probes.get(&Probe { person, at, last }))
            })
            .flat_map(|answer| answer.last.iter().chain(answer.first.iter()));
        choose_touches(filed.chain(probed), at, window)
    }
}

/// The person id of each component and what to write of persons.
#[derive(Debug, Default)]
struct Persons {
    by_root: HashMap<usize, Uuid>,
}

impl Persons {
    /// The person of `node`'s component: its surviving stored person, else a new one.
    fn of(&mut self, graph: &mut Graph, node: usize, known: Known<'_>) -> Uuid {
        let root = graph.find(node);
        if let Some(&person) = self.by_root.get(&root) {
            return person;
        }
        let person = survivor(&graph.components[root].stored, known).unwrap_or_else(Uuid::now_v7);
        self.by_root.insert(root, person);
        person
    }

    /// Merges, new persons, changed counts, gains and days of use, for every component of the
    /// step.
    fn finish(&mut self, graph: &mut Graph, known: Known<'_>, today: Date, step: &mut Step) {
        let mut roots: Vec<usize> = (0..graph.parent.len()).map(|i| graph.find(i)).collect();
        roots.sort_unstable();
        roots.dedup();
        for root in roots {
            let stored = graph.components[root].stored.clone();
            let counts = graph.components[root].counts;
            let is_new = stored.is_empty() && self.by_root.contains_key(&root);
            if stored.is_empty() && !is_new {
                // Identifiers that linked nothing new (a flagged one's node, say).
                continue;
            }
            let person = self.of(graph, root, known);
            if let Some(since) = graph.components[root].gained_since {
                step.gains.push((person, since));
            }
            let survivor_row = known.persons.get(&person).cloned().unwrap_or_default();
            let mut members = survivor_row.members.clone();
            for &loser in stored.iter().filter(|&&p| p != person) {
                step.merges.push((loser, person));
                step.merged.push((loser, person));
                members.push(loser);
                if let Some(row) = known.persons.get(&loser) {
                    for &member in &row.members {
                        step.merged.push((member, person));
                        members.push(member);
                    }
                }
            }
            if is_new
                || members.len() != survivor_row.members.len()
                || counts != survivor_row.counts
            {
                step.persons.push(PersonRow {
                    person,
                    members,
                    counts,
                });
            } else if survivor_row.used_on.is_none_or(|day| day < today) {
                step.used.push(person);
            }
        }
    }
}

/// Of the stored persons a component holds, the one the others join: the one with the most
/// members, the oldest on a tie (so that a merge moves the fewest rows).
fn survivor(stored: &[Uuid], known: Known<'_>) -> Option<Uuid> {
    stored.iter().copied().max_by(|a, b| {
        let members = |p: &Uuid| known.persons.get(p).map_or(0, |row| row.members.len());
        members(a).cmp(&members(b)).then(b.cmp(a))
    })
}

fn min_time(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::{ClickIds, Event};
    use proptest::prelude::*;
    use time::macros::datetime;

    const AT: OffsetDateTime = datetime!(2026-04-10 12:00 UTC);
    const WINDOW: Duration = Duration::minutes(60);

    fn stored_touch(index: usize, minutes: i64) -> Touch {
        let mut owner = [0xAB; 16];
        owner[0] = u8::try_from(index).unwrap_or(0);
        Touch {
            owner,
            touchpoint: Touchpoint {
                click_id: None,
                clicked_at: AT + Duration::minutes(minutes),
                click_ids: ClickIds {
                    gclid: Some(format!("h{index}")),
                    ..ClickIds::default()
                },
                utm: None,
                url: None,
                referrer: None,
                ip: None,
                user_agent: None,
            },
        }
    }

    fn lead(minutes: i64, gclid: Option<String>) -> Event {
        let mut body = serde_json::json!({
            "event": "lead", "customerExternalId": "c",
            "timestamp": (AT + Duration::minutes(minutes))
                .format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        });
        if let Some(gclid) = gclid {
            body["gclid"] = serde_json::Value::String(gclid);
        }
        events::parse_event(&body, AT + Duration::hours(3)).unwrap_or_else(|e| panic!("{e}"))
    }

    proptest! {
        /// What a step decides from probes equals what the rules decide over the person's whole
        /// history plus the clicks of the step's earlier events.
        #[test]
        fn probes_decide_as_the_whole_history_would(
            history in proptest::collection::vec(-150i64..30, 0..40),
            arrivals in proptest::collection::vec((-90i64..30, any::<bool>()), 1..12),
        ) {
            let person = Uuid::now_v7();
            let customer = identifier_hash(IdentifierKind::CustomerExternalId, "c");
            let identifiers: HashMap<_, _> = [(customer, KnownIdentifier { person, too_common: false, has_touch: false })].into_iter().collect();
            let persons: HashMap<_, _> = [(person, KnownPerson::default())].into_iter().collect();
            let named = HashMap::default();
            let history: Vec<Touch> = history.iter().enumerate().map(|(i, &m)| stored_touch(i, m)).collect();
            let bodies: Vec<Event> = arrivals
                .iter()
                .enumerate()
                .map(|(i, &(m, direct))| lead(m, direct.then(|| format!("s{i}"))))
                .collect();
            let items: Vec<Item<'_>> = bodies
                .iter()
                .map(|event| Item {
                    event_id: Uuid::now_v7(),
                    received_at: AT + Duration::hours(3),
                    event,
                    pending_until: None,
                    identifiers: crate::event_identifiers(event),
                })
                .collect();
            let settings = StepSettings { window: WINDOW, pending_window: Duration::ZERO, max_links: [1, 50, 50], now: AT + Duration::hours(3) };
            let mut known = Known { identifiers: &identifiers, persons: &persons, named: &named, probes: None };
            let wanted = run(&items, known, settings).probes;
            let answers: HashMap<Probe, Probed> = wanted
                .into_iter()
                .map(|probe| {
                    let chosen = choose_touches(&history, probe.at, WINDOW);
                    (probe, Probed {
                        last: chosen.map(|c| c.last.clone()),
                        first: chosen.map(|c| c.first.clone()),
                    })
                })
                .collect();
            known.probes = Some(&answers);
            let step = run(&items, known, settings);
            prop_assert_eq!(step.decided.len(), items.len());

            let mut seen: Vec<Touch> = history.clone();
            for (item, decided) in items.iter().zip(&step.decided) {
                let direct = direct_touch(item);
                let linked = [Linked {
                    matched_by: MatchedBy::CustomerExternalId,
                    chosen: choose_touches(&seen, item.event.timestamp, WINDOW),
                }];
                let expected = find_touchpoint(direct.as_ref(), None, &linked);
                prop_assert_eq!(
                    decided.attribution.click.as_ref(),
                    expected.as_ref().map(|f| &f.click.touchpoint)
                );
                prop_assert_eq!(
                    decided.attribution.first_touch.as_ref(),
                    expected.as_ref().map(|f| &f.first_touch.touchpoint)
                );
                seen.extend(direct);
            }
        }
    }
}
