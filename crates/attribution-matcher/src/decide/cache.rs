//! The part of the identity graph a worker keeps between steps: the identifiers that name people
//! (customer ids, emails, phones) and their persons, so that a repeat customer's step reads only
//! the identifiers it has not seen (mostly new click ids) from the database.
//!
//! A copy is right only while nobody else writes the workspace's graph, and a copy that is wrong
//! would file a customer under a person that no longer exists. So the database names, per
//! workspace, the last writer that keeps a copy (`graph_writers`):
//!
//! - a step checks the mark under the workspace's lock ([`GraphCache::checkout`]); when it names
//!   another writer (or none), the copy is dropped and the step's writes name this cache;
//! - a step without a copy (another loop of this process holds it, or [`crate::decide()`]) and
//!   the erasures and retention rounds that delete identities clear the mark with their writes;
//! - a step applies its changes to the copy only after everything it wrote is committed, and
//!   drops the copy when it fails (parts of it may have committed).
//!
//! With the persons go their earliest clicks of all (their own rows'): while a person's earliest
//! click lies in an event's window, it is the first touch the window's probe would find, so a
//! repeat customer's first touch is not probed again. A step forgets a person's earliest click
//! when it files an earlier one, and every earliest click of the workspace when it files a click
//! under a stored identifier (whose person it does not know here).
//!
//! Copies are bounded: two generations of identifiers and of earliest clicks (a lookup keeps an
//! entry young), and the persons and merges the identifiers need, dropped whole when they
//! outgrow the identifiers.

use crate::{HashMap, HashSet};
use events::IdentifierHash;
use std::sync::{Arc, Mutex, PoisonError};

use deadpool_postgres::GenericClient;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::choice::Touch;
use crate::Result;

use super::generations::Generations;
use super::step::{guarded, KnownIdentifier, KnownPerson, PersonRow, Step};
use super::KnownGraph;

/// What a step's writes say about the graph's last writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum WriterMark {
    /// Nothing: the mark names the cache the step's graph came from already.
    Keep,
    /// Name this cache: its copy will hold what the step writes.
    Name(Uuid),
    /// Clear it: no copy knows what the step writes.
    #[default]
    Clear,
}

const WRITER: &str = "SELECT writer FROM graph_writers WHERE workspace_id = $1";

const NAME_WRITER: &str = "
    INSERT INTO graph_writers (workspace_id, writer) VALUES ($1, $2)
    ON CONFLICT (workspace_id) DO UPDATE SET writer = excluded.writer
    WHERE graph_writers.writer IS DISTINCT FROM excluded.writer";

const CLEAR_WRITER: &str = "
    UPDATE graph_writers SET writer = NULL WHERE workspace_id = $1 AND writer IS NOT NULL";

/// Writes `mark` with a step's (or an erasure's) other writes, in the same transaction.
pub(crate) async fn write_mark(
    client: &impl GenericClient,
    workspace_id: Uuid,
    mark: WriterMark,
) -> Result<()> {
    match mark {
        WriterMark::Keep => {}
        WriterMark::Name(token) => {
            let stmt = client.prepare_cached(NAME_WRITER).await?;
            client.execute(&stmt, &[&workspace_id, &token]).await?;
        }
        WriterMark::Clear => {
            let stmt = client.prepare_cached(CLEAR_WRITER).await?;
            client.execute(&stmt, &[&workspace_id]).await?;
        }
    }
    Ok(())
}

/// Tells the copies of a workspace's graph that it changed without them (an erasure, a retention
/// round that deleted identities): run it in the transaction that changes it, under
/// [`crate::erase::lock_graph`].
pub async fn graph_changed(client: &impl GenericClient, workspace_id: Uuid) -> Result<()> {
    write_mark(client, workspace_id, WriterMark::Clear).await
}

/// A person's earliest click of all (of its own rows), as a probe answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Earliest {
    /// When it happened (the identity row's time).
    pub(crate) at: OffsetDateTime,
    /// The click.
    pub(crate) touch: Touch,
}

/// What a committed step changed of the cached part of the graph, and what it learned.
#[derive(Debug, Clone, Default)]
pub struct GraphChanges {
    /// New identifiers that name people: `(hash, person, too common)`.
    identities: Vec<(IdentifierHash, Uuid, bool)>,
    /// Stored identifiers found too common.
    too_common: Vec<IdentifierHash>,
    /// Persons written (new, survivors of merges, changed counts).
    persons: Vec<PersonRow>,
    /// `(person, into)`: stored persons that now belong to another.
    merged: Vec<(Uuid, Uuid)>,
    /// Earliest clicks the step's probes found (as stored before the step).
    earliest: Vec<(Uuid, Earliest)>,
    /// `(person, when, owner)` of the clicks the step filed as new identifiers.
    clicks: Vec<(Uuid, OffsetDateTime, IdentifierHash)>,
    /// Whether it filed clicks under stored identifiers.
    filed: bool,
    /// Stored persons it marked used on `day` (the persons it wrote were, too).
    used: Vec<Uuid>,
    /// The step's day of use.
    day: Option<Date>,
}

impl GraphChanges {
    /// What `step` wrote of the cached part of the graph (its decisions taken out already) on
    /// `day`, and the earliest clicks its probes found.
    pub(crate) fn of(step: Step, day: Date, earliest: Vec<(Uuid, Earliest)>) -> Self {
        Self {
            earliest,
            used: step.used,
            day: Some(day),
            clicks: step
                .identities
                .iter()
                .filter_map(|row| {
                    let (at, _) = row.touch?;
                    Some((row.person, at, row.identifier.hash))
                })
                .collect(),
            filed: !step.filed.is_empty(),
            identities: step
                .identities
                .iter()
                .filter(|row| guarded(row.identifier.kind).is_some())
                .map(|row| (row.identifier.hash, row.person, row.too_common))
                .collect(),
            too_common: step.too_common,
            persons: step.persons,
            merged: step.merged,
        }
    }
}

/// A cached identifier: the person it was filed under (maybe merged since), and its mark.
#[derive(Debug, Clone, Copy)]
struct CachedIdentifier {
    epoch: u64,
    person: Uuid,
    too_common: bool,
}

/// The copies of one process's workspaces, shared by its attribution loops.
#[derive(Debug)]
struct Copies {
    token: Uuid,
    capacity: usize,
    /// Bumped to drop a workspace's entries (they are left to age out).
    epochs: HashMap<Uuid, u64>,
    /// Workspaces whose copy a step holds now.
    out: HashSet<Uuid>,
    identifiers: Generations<(Uuid, IdentifierHash), CachedIdentifier>,
    /// Persons not merged into another, exactly as stored.
    persons: HashMap<(Uuid, Uuid), (u64, KnownPerson)>,
    /// Persons merged into another: the one they belong to now.
    merged: HashMap<(Uuid, Uuid), (u64, Uuid)>,
    /// Persons' earliest clicks of all.
    earliest: Generations<(Uuid, Uuid), (u64, Earliest)>,
}

/// The graph copies of a process: clone it to share it between loops.
#[derive(Debug, Clone)]
pub struct GraphCache(Arc<Mutex<Copies>>);

impl Default for GraphCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

/// A step's hold on a workspace's copy, from [`GraphCache::checkout`] to
/// [`GraphCache::checkin`]; a hold let go without a check-in (a failed step) drops the copy.
#[derive(Debug)]
pub struct Lease {
    cache: GraphCache,
    workspace_id: Uuid,
    /// What the step's writes say of the graph's writer: [`WriterMark::Keep`] when the copy
    /// agreed with the database's mark at checkout, else [`WriterMark::Name`] this cache.
    mark: WriterMark,
    returned: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.returned {
            self.cache.with(|copies| {
                copies.forget(self.workspace_id);
                copies.out.remove(&self.workspace_id);
            });
        }
    }
}

impl GraphCache {
    /// Identifiers per generation by default: some 100 bytes each, so at most some 10 MB with
    /// their persons, and as much again for the earliest clicks of 12,500 persons.
    pub const DEFAULT_CAPACITY: usize = 50_000;

    /// A cache holding at most `2 × capacity` identifiers; `0` keeps nothing.
    pub fn new(capacity: usize) -> Self {
        Self(Arc::new(Mutex::new(Copies {
            token: Uuid::now_v7(),
            capacity,
            epochs: HashMap::default(),
            out: HashSet::default(),
            identifiers: Generations::new(capacity),
            persons: HashMap::default(),
            merged: HashMap::default(),
            earliest: Generations::new(capacity / EARLIEST_SHARE),
        })))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Copies) -> T) -> T {
        // A panic elsewhere cannot leave the maps half-updated in a way that matters: every
        // change is a whole insert or removal.
        let mut copies = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut copies)
    }

    /// Takes the workspace's copy for a step whose transaction holds the workspace's lock (the
    /// claim's, in `client`). `None` when another step of this process still holds it: that
    /// step runs without a copy (and clears the mark).
    pub async fn checkout(
        &self,
        client: &impl GenericClient,
        workspace_id: Uuid,
    ) -> Result<Option<Lease>> {
        let (token, capacity) = self.with(|copies| (copies.token, copies.capacity));
        if capacity == 0 || !self.with(|copies| copies.out.insert(workspace_id)) {
            return Ok(None);
        }
        let mut lease = Lease {
            cache: self.clone(),
            workspace_id,
            mark: WriterMark::Name(token),
            returned: false,
        };
        // On failure here the lease is dropped, and with it the copy.
        let stmt = client.prepare_cached(WRITER).await?;
        let writer: Option<Uuid> = match client.query_opt(&stmt, &[&workspace_id]).await? {
            Some(row) => row.try_get(0)?,
            None => None,
        };
        if writer == Some(token) {
            lease.mark = WriterMark::Keep;
        } else {
            self.with(|copies| copies.forget(workspace_id));
        }
        Ok(Some(lease))
    }

    /// Fills `graph` (the identifiers of a claim, [`KnownGraph::of_claim`]) with what the copy
    /// knows, and marks it for the step's writes. Answers the identifiers left to read from the
    /// database, sorted, in `n` runs of about equal length (none when nothing is left).
    pub fn fill(
        &self,
        lease: &Lease,
        graph: &mut KnownGraph,
        n: usize,
    ) -> Vec<Vec<IdentifierHash>> {
        graph.mark = lease.mark;
        let hashes = graph.distinct_hashes();
        let mut missing = Vec::with_capacity(hashes.len());
        self.with(|copies| {
            for hash in hashes {
                match copies.get(lease.workspace_id, hash) {
                    Some((identifier, root, person)) => {
                        graph.identifiers.insert(hash, identifier);
                        graph.persons.entry(root).or_insert(person);
                    }
                    None => missing.push(hash),
                }
            }
        });
        super::in_runs(&missing, n)
    }

    /// Completes `graph` (filled by [`GraphCache::fill`]) with what the database answered for
    /// the identifiers the copy did not know (`reads`), keeping those of them that name people,
    /// with their persons; then adds the earliest clicks the copy knows of its persons and their
    /// members. A claim that filed registered clicks (`filed_clicks`) may have changed any of
    /// those: they are forgotten instead.
    pub fn complete(
        &self,
        lease: &Lease,
        graph: &mut KnownGraph,
        reads: Vec<KnownGraph>,
        filed_clicks: bool,
    ) {
        let people: HashSet<IdentifierHash> = graph
            .of_event
            .values()
            .flatten()
            .filter(|id| guarded(id.kind).is_some())
            .map(|id| id.hash)
            .collect();
        let ws = lease.workspace_id;
        self.with(|copies| {
            let epoch = copies.epoch(ws);
            for read in &reads {
                for (hash, known) in &read.identifiers {
                    let Some(person) = read.persons.get(&known.person) else {
                        continue;
                    };
                    if !people.contains(hash) {
                        continue;
                    }
                    copies.put_person(ws, known.person, person.clone(), epoch);
                    let entry = CachedIdentifier {
                        epoch,
                        person: known.person,
                        too_common: known.too_common,
                    };
                    copies.identifiers.insert((ws, *hash), entry);
                }
            }
            for read in reads {
                graph.absorb(read);
            }
            if filed_clicks {
                copies.forget_earliest(ws);
                return;
            }
            for (root, person) in &graph.persons {
                for person in std::iter::once(root).chain(&person.members) {
                    if let Some((e, earliest)) = copies.earliest.get((ws, *person)) {
                        if e == epoch {
                            graph.earliest.insert(*person, earliest);
                        }
                    }
                }
            }
        });
    }

    /// Returns the copy after the step committed everything it wrote: `changes` are applied
    /// (each part's, for a split step).
    pub fn checkin(&self, mut lease: Lease, changes: &[GraphChanges]) {
        lease.returned = true;
        self.with(|copies| {
            let ws = lease.workspace_id;
            let epoch = copies.epoch(ws);
            for change in changes {
                for &(person, into) in &change.merged {
                    copies.persons.remove(&(ws, person));
                    copies.merged.insert((ws, person), (epoch, into));
                }
                for row in &change.persons {
                    copies.merged.remove(&(ws, row.person));
                    let person = KnownPerson {
                        members: row.members.clone(),
                        counts: row.counts,
                        used_on: change.day,
                    };
                    copies.put_person(ws, row.person, person, epoch);
                }
                for person in &change.used {
                    if let Some((_, known)) = copies.persons.get_mut(&(ws, *person)) {
                        known.used_on = change.day;
                    }
                }
                for &(hash, person, too_common) in &change.identities {
                    let entry = CachedIdentifier {
                        epoch,
                        person,
                        too_common,
                    };
                    copies.identifiers.insert((ws, hash), entry);
                }
                for hash in &change.too_common {
                    copies
                        .identifiers
                        .update(&(ws, *hash), |entry| entry.too_common = true);
                }
                // The earliest clicks as stored before the step, then what its clicks changed
                // (the parts of a split step share no person).
                for (person, earliest) in &change.earliest {
                    copies
                        .earliest
                        .insert((ws, *person), (epoch, earliest.clone()));
                }
                if change.filed {
                    copies.forget_earliest(ws);
                }
                for &(person, at, owner) in &change.clicks {
                    let key = (ws, person);
                    let earlier = copies
                        .earliest
                        .get(key)
                        .is_some_and(|(_, e)| (at, owner) < (e.at, e.touch.owner));
                    if earlier {
                        copies.earliest.remove(&key);
                    }
                }
            }
            copies.out.remove(&ws);
        });
    }
}

/// Earliest clicks are kept for one person in this many identifiers (a click's data is up to
/// ten times an identifier's and its person's).
const EARLIEST_SHARE: usize = 8;

/// Merges are followed this many steps at most (they are flat: a merge re-points every member).
const MAX_HOPS: usize = 8;

impl Copies {
    fn epoch(&mut self, workspace_id: Uuid) -> u64 {
        *self.epochs.entry(workspace_id).or_insert(0)
    }

    fn forget(&mut self, workspace_id: Uuid) {
        *self.epochs.entry(workspace_id).or_insert(0) += 1;
    }

    /// Drops the workspace's earliest clicks (a click was filed under a person not known here).
    fn forget_earliest(&mut self, workspace_id: Uuid) {
        self.earliest.retain(|(w, _)| *w != workspace_id);
    }

    /// The identifier as a step knows it (filed under the person it belongs to now), that
    /// person, and the person's row; `None` unless all of it is known.
    fn get(
        &mut self,
        ws: Uuid,
        hash: IdentifierHash,
    ) -> Option<(KnownIdentifier, Uuid, KnownPerson)> {
        let epoch = self.epoch(ws);
        let entry = self.identifiers.get((ws, hash))?;
        if entry.epoch != epoch {
            return None;
        }
        let mut root = entry.person;
        for _ in 0..MAX_HOPS {
            match self.merged.get(&(ws, root)) {
                Some(&(e, into)) if e == epoch => root = into,
                Some(_) => return None,
                None => break,
            }
        }
        let (e, person) = self.persons.get(&(ws, root))?;
        if *e != epoch {
            return None;
        }
        let known = KnownIdentifier {
            person: root,
            too_common: entry.too_common,
            // Identifiers that name people never own clicks.
            has_touch: false,
        };
        Some((known, root, person.clone()))
    }

    fn put_person(&mut self, ws: Uuid, person: Uuid, row: KnownPerson, epoch: u64) {
        if self.persons.len() >= 2 * self.capacity || self.merged.len() >= 2 * self.capacity {
            // Identifiers whose person is gone are simply read again.
            self.persons.clear();
            self.merged.clear();
        }
        self.persons.insert((ws, person), (epoch, row));
    }
}
