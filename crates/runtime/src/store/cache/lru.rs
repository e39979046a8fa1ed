//! [`Lru`]: a least-recently-used map bounded by the total weight (bytes) of its
//! values, keyed by `(object path, block number)` so one object's blocks can be
//! dropped together.

use std::collections::BTreeMap;
use std::sync::Arc;

/// A cached block: which object, which block of it.
pub(crate) type BlockKey = (Arc<str>, u64);

/// What the LRU needs of a value: its weight in bytes.
pub(crate) trait Weighted {
    fn weight(&self) -> u64;
}

impl Weighted for bytes::Bytes {
    fn weight(&self) -> u64 {
        self.len() as u64
    }
}

struct Slot<V> {
    value: V,
    tick: u64,
}

/// A byte-bounded LRU. `insert` evicts the least recently used entries until the new
/// one fits, and refuses a value heavier than the whole capacity.
pub(crate) struct Lru<V> {
    capacity: u64,
    used: u64,
    next_tick: u64,
    entries: BTreeMap<BlockKey, Slot<V>>,
    by_tick: BTreeMap<u64, BlockKey>,
}

impl<V: Weighted> Lru<V> {
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            capacity,
            used: 0,
            next_tick: 0,
            entries: BTreeMap::new(),
            by_tick: BTreeMap::new(),
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Total weight of the entries.
    pub(crate) fn used(&self) -> u64 {
        self.used
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }

    /// The value of `key`, marked as most recently used.
    pub(crate) fn get(&mut self, key: &BlockKey) -> Option<&V> {
        let tick = self.tick();
        let slot = self.entries.get_mut(key)?;
        self.by_tick.remove(&slot.tick);
        slot.tick = tick;
        self.by_tick.insert(tick, key.clone());
        Some(&slot.value)
    }

    /// The value of `key`, without touching its recency.
    pub(crate) fn peek(&self, key: &BlockKey) -> Option<&V> {
        self.entries.get(key).map(|s| &s.value)
    }

    pub(crate) fn peek_mut(&mut self, key: &BlockKey) -> Option<&mut V> {
        self.entries.get_mut(key).map(|s| &mut s.value)
    }

    /// Insert (or replace) `key` as the most recently used entry. Returns the entries
    /// evicted to make room (a replaced value among them); when `value` alone is over
    /// the capacity it is not kept and comes back as evicted too.
    pub(crate) fn insert(&mut self, key: BlockKey, value: V) -> Vec<(BlockKey, V)> {
        let mut evicted = Vec::new();
        if let Some(old) = self.remove(&key) {
            evicted.push((key.clone(), old));
        }
        if value.weight() > self.capacity {
            evicted.push((key, value));
            return evicted;
        }
        while self.used + value.weight() > self.capacity {
            let Some((_, oldest)) = self.by_tick.pop_first() else {
                break;
            };
            if let Some(slot) = self.entries.remove(&oldest) {
                self.used -= slot.value.weight();
                evicted.push((oldest, slot.value));
            }
        }
        let tick = self.tick();
        self.used += value.weight();
        self.by_tick.insert(tick, key.clone());
        self.entries.insert(key, Slot { value, tick });
        evicted
    }

    pub(crate) fn remove(&mut self, key: &BlockKey) -> Option<V> {
        let slot = self.entries.remove(key)?;
        self.by_tick.remove(&slot.tick);
        self.used -= slot.value.weight();
        Some(slot.value)
    }

    /// Remove every block of `path`.
    pub(crate) fn remove_path(&mut self, path: &Arc<str>) -> Vec<(BlockKey, V)> {
        let keys: Vec<BlockKey> = self
            .entries
            .range((Arc::clone(path), 0)..=(Arc::clone(path), u64::MAX))
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .filter_map(|k| self.remove(&k).map(|v| (k, v)))
            .collect()
    }

    /// Every key with its value, least recently used first.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> Vec<BlockKey> {
        self.by_tick.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use rand::Rng;

    use super::*;

    fn key(p: &str, b: u64) -> BlockKey {
        (Arc::from(p), b)
    }

    #[test]
    fn evicts_least_recently_used_first_and_keeps_the_byte_bound() {
        let mut lru = Lru::new(10);
        assert!(lru.insert(key("a", 0), Bytes::from(vec![0; 4])).is_empty());
        assert!(lru.insert(key("a", 1), Bytes::from(vec![0; 4])).is_empty());
        // Touch a/0, so a/1 is the oldest.
        assert!(lru.get(&key("a", 0)).is_some());
        let evicted = lru.insert(key("b", 0), Bytes::from(vec![0; 4]));
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].0, key("a", 1));
        assert_eq!(lru.used(), 8);
        assert_eq!(lru.keys(), vec![key("a", 0), key("b", 0)]);
    }

    #[test]
    fn a_value_over_the_capacity_is_refused() {
        let mut lru = Lru::new(3);
        let evicted = lru.insert(key("a", 0), Bytes::from(vec![0; 4]));
        assert_eq!(evicted.len(), 1);
        assert_eq!(lru.len(), 0);
        assert_eq!(lru.used(), 0);
    }

    #[test]
    fn remove_path_drops_only_that_objects_blocks() {
        let mut lru = Lru::new(100);
        for b in 0..3 {
            lru.insert(key("a", b), Bytes::from(vec![0; 2]));
            lru.insert(key("ab", b), Bytes::from(vec![0; 2]));
        }
        let gone = lru.remove_path(&Arc::from("a"));
        assert_eq!(gone.len(), 3);
        assert_eq!(lru.used(), 6);
        assert!(lru.peek(&key("ab", 2)).is_some());
        assert!(lru.peek(&key("a", 0)).is_none());
    }

    /// Random inserts, gets and removals against a plain model: the bound always holds
    /// and `used` is always the sum of what is kept.
    #[test]
    fn random_operations_keep_used_exact_and_bounded() {
        let mut rng = rand::rng();
        let mut lru = Lru::new(1000);
        let mut model: std::collections::BTreeMap<BlockKey, usize> = Default::default();
        for _ in 0..5000 {
            let k = key(
                ["x", "y", "z"][rng.random_range(0..3)],
                rng.random_range(0..20),
            );
            match rng.random_range(0..4) {
                0 | 1 => {
                    let len = rng.random_range(0..300);
                    model.insert(k.clone(), len);
                    for (gone, _) in lru.insert(k.clone(), Bytes::from(vec![0; len])) {
                        if gone != k || lru.peek(&k).is_none() {
                            model.remove(&gone);
                        }
                    }
                }
                2 => {
                    let hit = lru.get(&k).map(|v| v.len());
                    if let Some(len) = hit {
                        assert_eq!(model.get(&k), Some(&len));
                    }
                }
                _ => {
                    lru.remove(&k);
                    model.remove(&k);
                }
            }
            assert!(lru.used() <= 1000);
            let sum: u64 = model
                .iter()
                .filter(|(k, _)| lru.peek(k).is_some())
                .map(|(_, l)| *l as u64)
                .sum();
            assert_eq!(sum, lru.used());
            assert_eq!(model.len(), lru.len(), "model and LRU hold the same keys");
        }
    }
}
