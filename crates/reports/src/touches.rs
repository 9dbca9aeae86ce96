//! The touches of conversions as the credit stage needs them: when each click happened and the
//! groups it counts under (channel, utm source, medium, campaign), nothing else.
//!
//! Most clicks were carried by events (a sale with its gclid). The matcher files each with the id
//! of its groups, kept once per workspace in `click_groups`, so a touch's groups are a look-up
//! among a few rows (kept in the [`ClickCache`] by id). A repeat customer's every conversion
//! touches the same clicks again, and reading and parsing the carrying event from the journal per
//! touch was what crediting cost; that is now left to clicks filed before groups were, whose
//! groups the cache keeps by event: events never change once stored (a retraction keeps the
//! click; an erasure removes the identity rows that point at the event, so no window names it
//! again), which makes the cache always right. Such an entry is a key and a pointer to groups
//! shared by every click with the same ones, about 50 bytes, so the default bound of two
//! generations of 100,000 clicks takes about 10 MB.

use events::IdentifierHash;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use attribution_matcher::window::{WindowClick, WindowSource};
use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Result;

pub use events::ClickGroups;

/// One click in a conversion's window, ready to share its credit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch {
    /// The identifier that owns the click (`None` for a click known only from a decision stored
    /// as a copy).
    pub owner: Option<IdentifierHash>,
    /// When the click happened.
    pub clicked_at: OffsetDateTime,
    /// What it counts under.
    pub groups: Arc<ClickGroups>,
}

/// The groups of clicks that stored events carried, by `(workspace, event)`, kept by the report
/// stage between steps; bounded by two generations of `capacity` entries each: a lookup promotes
/// an entry from the older generation, and when the newer one is full the older one is dropped.
#[derive(Debug)]
pub struct ClickCache {
    capacity: usize,
    young: HashMap<(Uuid, Uuid), Arc<ClickGroups>>,
    old: HashMap<(Uuid, Uuid), Arc<ClickGroups>>,
    /// One allocation per distinct groups of the young generation.
    shared: HashSet<Arc<ClickGroups>>,
    /// Groups by their id in `click_groups` (few: a workspace has few distinct ones).
    by_id: HashMap<(Uuid, i64), Arc<ClickGroups>>,
}

impl Default for ClickCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl ClickCache {
    /// Entries per generation by default.
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// A cache holding at most `2 × capacity` clicks; `0` keeps nothing.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            young: HashMap::new(),
            old: HashMap::new(),
            shared: HashSet::new(),
            by_id: HashMap::new(),
        }
    }

    /// Groups kept by id, at most; past it they are read again.
    const GROUPS_CAPACITY: usize = 10_000;

    fn group(&self, workspace_id: Uuid, id: i64) -> Option<Arc<ClickGroups>> {
        self.by_id.get(&(workspace_id, id)).cloned()
    }

    fn keep_group(&mut self, workspace_id: Uuid, id: i64, groups: Arc<ClickGroups>) {
        if self.by_id.len() >= Self::GROUPS_CAPACITY {
            self.by_id.clear();
        }
        self.by_id.insert((workspace_id, id), groups);
    }

    /// The groups of the click `event_id` carried, if kept.
    pub fn get(&mut self, workspace_id: Uuid, event_id: Uuid) -> Option<Arc<ClickGroups>> {
        let key = (workspace_id, event_id);
        if let Some(groups) = self.young.get(&key) {
            return Some(Arc::clone(groups));
        }
        let groups = self.old.remove(&key)?;
        self.insert(workspace_id, event_id, &groups);
        Some(groups)
    }

    /// Keeps the groups of the click `event_id` carried; answers the shared copy.
    pub fn insert(
        &mut self,
        workspace_id: Uuid,
        event_id: Uuid,
        groups: &ClickGroups,
    ) -> Arc<ClickGroups> {
        let shared = match self.shared.get(groups) {
            Some(shared) => Arc::clone(shared),
            None => {
                let shared = Arc::new(groups.clone());
                if self.capacity > 0 {
                    self.shared.insert(Arc::clone(&shared));
                }
                shared
            }
        };
        if self.capacity == 0 {
            return shared;
        }
        if self.young.len() >= self.capacity {
            self.old = std::mem::take(&mut self.young);
            self.shared.clear();
        }
        self.young
            .insert((workspace_id, event_id), Arc::clone(&shared));
        shared
    }

    /// How many clicks are kept.
    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The groups of `click_groups` rows by id.
const SELECT_GROUPS: &str = "
    SELECT id, channel, source, medium, campaign FROM click_groups
    WHERE workspace_id = $1 AND id = ANY($2::bigint[])";

/// The touches of each conversion's window. A click filed with the id of its groups takes them
/// from `click_groups` (kept in `cache`; the window read nothing else of it); a click filed before groups were, or a registered
/// one, as before: a click carried by an event from `own` (the clicks the step's own conversions
/// carried), else from `cache`, else from the journal, read once for the whole step (and then
/// kept in `cache`). A click whose event is gone (erased) is left out.
pub async fn resolve(
    client: &impl GenericClient,
    workspace_id: Uuid,
    windows: attribution_matcher::HashMap<Uuid, Vec<WindowClick>>,
    own: &HashMap<Uuid, ClickGroups>,
    cache: &mut ClickCache,
) -> Result<HashMap<Uuid, Vec<Touch>>> {
    let mut by_id: HashMap<i64, Arc<ClickGroups>> = HashMap::new();
    let mut unknown: Vec<i64> = Vec::new();
    for id in windows.values().flatten().filter_map(|click| click.group) {
        if by_id.contains_key(&id) {
            continue;
        }
        match cache.group(workspace_id, id) {
            Some(groups) => {
                by_id.insert(id, groups);
            }
            None => unknown.push(id),
        }
    }
    unknown.sort_unstable();
    unknown.dedup();
    if !unknown.is_empty() {
        let statement = client.prepare_cached(SELECT_GROUPS).await?;
        for row in client.query(&statement, &[&workspace_id, &unknown]).await? {
            let id: i64 = row.try_get(0)?;
            let groups = Arc::new(ClickGroups {
                channel: row.try_get(1)?,
                source: row.try_get(2)?,
                medium: row.try_get(3)?,
                campaign: row.try_get(4)?,
            });
            cache.keep_group(workspace_id, id, Arc::clone(&groups));
            by_id.insert(id, groups);
        }
    }
    let grouped = |click: &WindowClick| click.group.and_then(|id| by_id.get(&id)).cloned();

    let mut carried: HashMap<Uuid, Arc<ClickGroups>> = HashMap::new();
    let mut missing: Vec<Uuid> = Vec::new();
    for click in windows.values().flatten() {
        let WindowSource::Carried(id) = click.source else {
            continue;
        };
        if carried.contains_key(&id) || grouped(click).is_some() {
            continue;
        }
        if let Some(groups) = cache.get(workspace_id, id) {
            carried.insert(id, groups);
        } else if let Some(groups) = own.get(&id) {
            carried.insert(id, cache.insert(workspace_id, id, groups));
        } else {
            missing.push(id);
        }
    }
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        for stored in journal::get_events(client, workspace_id, &missing).await? {
            if let Ok(event) = &stored.event {
                let groups = ClickGroups::of(&event.click_ids, event.utm.as_ref());
                carried.insert(stored.id, cache.insert(workspace_id, stored.id, &groups));
            }
        }
    }
    let mut out = HashMap::with_capacity(windows.len());
    for (event_id, clicks) in windows {
        let touches: Vec<Touch> = clicks
            .into_iter()
            .filter_map(|click| {
                let groups = match (grouped(&click), click.source) {
                    (Some(groups), _) => groups,
                    (None, WindowSource::Carried(id)) => Arc::clone(carried.get(&id)?),
                    (None, WindowSource::Stored { click_ids, utm }) => {
                        Arc::new(ClickGroups::of(&click_ids, utm.as_deref()))
                    }
                    // A group id `click_groups` does not know (its rows are never deleted).
                    (None, WindowSource::Grouped) => return None,
                };
                Some(Touch {
                    owner: Some(click.owner),
                    clicked_at: click.clicked_at,
                    groups,
                })
            })
            .collect();
        out.insert(event_id, touches);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::{ClickIds, Utm};

    fn groups(source: &str) -> ClickGroups {
        ClickGroups::of(
            &ClickIds::default(),
            Some(&Utm {
                source: Some(source.into()),
                ..Utm::default()
            }),
        )
    }

    #[test]
    fn keeps_at_most_two_generations_and_shares_equal_groups() {
        let ws = Uuid::now_v7();
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
        let mut cache = ClickCache::new(2);
        let a = cache.insert(ws, ids[0], &groups("news"));
        let b = cache.insert(ws, ids[1], &groups("news"));
        assert!(Arc::ptr_eq(&a, &b), "equal groups are kept once");
        cache.insert(ws, ids[2], &groups("partner")); // ids 0 and 1 move to the older generation
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(ws, ids[0]).as_deref(), Some(&groups("news"))); // promoted
        cache.insert(ws, ids[3], &groups("partner")); // 2 and 0 become old, 1 is dropped
        assert_eq!(cache.get(ws, ids[1]), None);
        assert_eq!(cache.get(ws, ids[2]).as_deref(), Some(&groups("partner")));
        assert!(cache.len() <= 4);
        assert_eq!(
            cache.get(Uuid::now_v7(), ids[2]),
            None,
            "keyed by workspace too"
        );
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let mut cache = ClickCache::new(0);
        let kept = cache.insert(Uuid::now_v7(), Uuid::now_v7(), &groups("news"));
        assert_eq!(*kept, groups("news"));
        assert!(cache.is_empty());
    }
}
