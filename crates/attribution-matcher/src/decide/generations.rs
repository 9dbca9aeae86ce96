//! A map bounded by two generations, for what a worker keeps between steps.

use crate::HashMap;

/// A map bounded by two generations of `capacity` entries each: a lookup promotes an entry from
/// the older generation, and when the newer one is full the older one is dropped.
#[derive(Debug)]
pub(crate) struct Generations<K, V> {
    capacity: usize,
    young: HashMap<K, V>,
    old: HashMap<K, V>,
}

impl<K: std::hash::Hash + Eq, V: Clone> Generations<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            young: HashMap::default(),
            old: HashMap::default(),
        }
    }

    pub(crate) fn get(&mut self, key: K) -> Option<V> {
        if let Some(value) = self.young.get(&key) {
            return Some(value.clone());
        }
        let value = self.old.remove(&key)?;
        self.insert(key, value.clone());
        Some(value)
    }

    /// Keeps `value` (nothing is kept at capacity 0).
    pub(crate) fn insert(&mut self, key: K, value: V) {
        if self.capacity == 0 {
            return;
        }
        if self.young.len() >= self.capacity {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, value);
    }

    pub(crate) fn remove(&mut self, key: &K) {
        self.young.remove(key);
        self.old.remove(key);
    }

    pub(crate) fn update(&mut self, key: &K, f: impl Fn(&mut V)) {
        for generation in [&mut self.young, &mut self.old] {
            if let Some(value) = generation.get_mut(key) {
                f(value);
            }
        }
    }

    /// The entries a generation holds at most.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many entries are kept.
    pub(crate) fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    /// The entries of the newer generation.
    pub(crate) fn into_young(self) -> impl Iterator<Item = (K, V)> {
        self.young.into_iter()
    }

    pub(crate) fn retain(&mut self, keep: impl Fn(&K) -> bool) {
        self.young.retain(|key, _| keep(key));
        self.old.retain(|key, _| keep(key));
    }
}
