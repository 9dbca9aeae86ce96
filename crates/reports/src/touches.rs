//! The touches of conversions as the credit stage needs them: when each click happened and the
//! groups it counts under (channel, utm source, medium, campaign), nothing else.
//!
//! Most clicks were carried by events (a sale with its gclid), so their data is in the journal.
//! A repeat customer's every conversion touches the same clicks again, and reading and parsing
//! each of them from the journal per conversion was what crediting cost. The report stage is
//! long-lived, so it keeps the groups of the clicks it read in a [`ClickCache`]: events never
//! change once stored (a retraction keeps the click; an erasure removes the identity rows that
//! point at the event, so no window names it again), which makes the cache always right. An entry
//! is a key and a pointer to groups shared by every click with the same ones (a workspace has few
//! distinct channel, source, medium and campaign combinations), about 50 bytes, so the default
//! bound of two generations of 100,000 clicks holds a busy workspace's active clicks in about
//! 10 MB, where a full touchpoint (url, user agent, every click id) would take twenty times that.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use attribution_matcher::window::{WindowClick, WindowSource};
use deadpool_postgres::GenericClient;
use events::{ClickIds, Utm};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::shares::channel_of;
use crate::Result;

/// The groups a click counts under in reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClickGroups {
    /// The ad platform of its click id, else its utm source, else `direct`.
    pub channel: String,
    /// Its `utm.source`.
    pub source: Option<String>,
    /// Its `utm.medium`.
    pub medium: Option<String>,
    /// Its `utm.campaign`.
    pub campaign: Option<String>,
}

impl ClickGroups {
    /// The groups of a click with these click ids and utm parameters.
    pub fn of(click_ids: &ClickIds, utm: Option<&Utm>) -> Self {
        Self {
            channel: channel_of(click_ids, utm),
            source: utm.and_then(|u| u.source.clone()),
            medium: utm.and_then(|u| u.medium.clone()),
            campaign: utm.and_then(|u| u.campaign.clone()),
        }
    }
}

/// One click in a conversion's window, ready to share its credit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch {
    /// The identifier that owns the click (`None` for a click known only from a decision stored
    /// as a copy).
    pub owner: Option<[u8; 32]>,
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
        }
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

/// The touches of each conversion's window: the clicks carried by events come from `own` (the
/// clicks the step's own conversions carried), else from `cache`, else from the journal, read
/// once for the whole step (and then kept in `cache`). A click whose event is gone (erased) is
/// left out.
pub async fn resolve(
    client: &impl GenericClient,
    workspace_id: Uuid,
    windows: HashMap<Uuid, Vec<WindowClick>>,
    own: &HashMap<Uuid, ClickGroups>,
    cache: &mut ClickCache,
) -> Result<HashMap<Uuid, Vec<Touch>>> {
    let mut carried: HashMap<Uuid, Arc<ClickGroups>> = HashMap::new();
    let mut missing: Vec<Uuid> = Vec::new();
    for click in windows.values().flatten() {
        let WindowSource::Carried(id) = click.source else {
            continue;
        };
        if carried.contains_key(&id) {
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
                let groups = match click.source {
                    WindowSource::Carried(id) => Arc::clone(carried.get(&id)?),
                    WindowSource::Stored { click_ids, utm } => {
                        Arc::new(ClickGroups::of(&click_ids, utm.as_deref()))
                    }
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
