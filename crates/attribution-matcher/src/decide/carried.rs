//! The clicks that stored events carried, kept by a worker between steps.
//!
//! A person's first touch is usually the same click for every one of their conversions in the
//! window, so a step would read the same few events from the journal again and again. Events
//! never change once stored (a retraction keeps the click; an erasure removes the identity rows
//! that point at the event, so no probe names it again), which makes the cache always right; it
//! is bounded by two generations of `capacity` entries each: a lookup promotes an entry from the
//! older generation, and when the newer one is full the older one is dropped.

use events::Touchpoint;
use uuid::Uuid;

use super::generations::Generations;

/// The clicks of stored events, by `(workspace, event)`.
#[derive(Debug)]
pub struct CarriedClicks {
    kept: Generations<(Uuid, Uuid), Touchpoint>,
}

impl Default for CarriedClicks {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl CarriedClicks {
    /// Entries per generation by default: about a kilobyte each, so at most some 20 MB.
    pub const DEFAULT_CAPACITY: usize = 10_000;

    /// A cache holding at most `2 × capacity` clicks; `0` keeps nothing.
    pub fn new(capacity: usize) -> Self {
        Self {
            kept: Generations::new(capacity),
        }
    }

    /// The click `event_id` carried, if kept.
    pub fn get(&mut self, workspace_id: Uuid, event_id: Uuid) -> Option<Touchpoint> {
        self.kept.get((workspace_id, event_id))
    }

    /// Keeps the click `event_id` carried.
    pub fn insert(&mut self, workspace_id: Uuid, event_id: Uuid, touchpoint: Touchpoint) {
        self.kept.insert((workspace_id, event_id), touchpoint);
    }

    /// The entries a generation holds at most.
    pub fn capacity(&self) -> usize {
        self.kept.capacity()
    }

    /// Keeps what `other` kept most recently, as if it had been inserted here.
    pub fn absorb(&mut self, other: CarriedClicks) {
        for ((workspace_id, event_id), touchpoint) in other.kept.into_young() {
            self.insert(workspace_id, event_id, touchpoint);
        }
    }

    /// How many clicks are kept.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn click(n: i64) -> Touchpoint {
        Touchpoint {
            click_id: None,
            clicked_at: datetime!(2026-04-10 12:00 UTC) + time::Duration::seconds(n),
            click_ids: Default::default(),
            utm: None,
            url: None,
            referrer: None,
            ip: None,
            user_agent: None,
        }
    }

    #[test]
    fn keeps_at_most_two_generations_and_promotes_what_is_used() {
        let ws = Uuid::now_v7();
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
        let mut cache = CarriedClicks::new(2);
        cache.insert(ws, ids[0], click(0));
        cache.insert(ws, ids[1], click(1));
        cache.insert(ws, ids[2], click(2)); // ids 0 and 1 move to the older generation
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(ws, ids[0]), Some(click(0))); // promoted
        cache.insert(ws, ids[3], click(3)); // young was full: 2 and 0 become old, 1 is dropped
        assert_eq!(cache.get(ws, ids[1]), None);
        assert_eq!(cache.get(ws, ids[2]), Some(click(2)));
        assert!(cache.len() <= 4);
        assert_eq!(
            cache.get(Uuid::now_v7(), ids[2]),
            None,
            "keyed by workspace too"
        );
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let mut cache = CarriedClicks::new(0);
        cache.insert(Uuid::now_v7(), Uuid::now_v7(), click(0));
        assert!(cache.is_empty());
    }
}
