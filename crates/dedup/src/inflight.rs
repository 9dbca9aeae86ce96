//! Requests holding an `Idempotency-Key` in this process, so that a second request with the same
//! key answers 409 at once instead of queueing behind the first. Across processes the same rule is
//! kept by a transaction-scoped advisory lock (see [`crate::idempotency::lock_keys`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use uuid::Uuid;

/// The set of `(workspace, key)` pairs whose first request is still in flight here.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    keys: Arc<Mutex<HashSet<(Uuid, String)>>>,
}

/// Holds a key while its request runs; dropping it frees the key.
#[derive(Debug)]
pub struct InFlightGuard {
    keys: Arc<Mutex<HashSet<(Uuid, String)>>>,
    entry: Option<(Uuid, String)>,
}

impl InFlight {
    /// Marks the key as in flight, or answers `None` when another request already holds it.
    pub fn try_enter(&self, workspace_id: Uuid, key: &str) -> Option<InFlightGuard> {
        let entry = (workspace_id, key.to_owned());
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if !keys.insert(entry.clone()) {
            return None;
        }
        Some(InFlightGuard {
            keys: Arc::clone(&self.keys),
            entry: Some(entry),
        })
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            self.keys
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_key_is_refused_until_its_guard_drops() {
        let inflight = InFlight::default();
        let ws = Uuid::now_v7();
        let guard = inflight.try_enter(ws, "k1");
        assert!(guard.is_some());
        assert!(inflight.try_enter(ws, "k1").is_none());
        assert!(inflight.try_enter(Uuid::now_v7(), "k1").is_some());
        drop(guard);
        assert!(inflight.try_enter(ws, "k1").is_some());
    }
}
