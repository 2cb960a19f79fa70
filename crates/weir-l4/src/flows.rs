//! The UDP flow table, sans-I/O: flows keyed by their 5-tuple, each stamped with its last
//! activity (in milliseconds on a caller-supplied clock), expired after an idle period.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A flow's last-activity stamp, shared with whoever moves its packets.
#[derive(Debug, Default)]
pub struct Activity(AtomicU64);

impl Activity {
    /// Records activity at `now_ms`.
    pub fn touch(&self, now_ms: u64) {
        self.0.fetch_max(now_ms, Ordering::Relaxed);
    }
    /// The last activity.
    pub fn last(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Flows of type `V` keyed by `K`.
#[derive(Debug)]
pub struct FlowTable<K, V> {
    flows: HashMap<K, (V, Arc<Activity>)>,
    max: usize,
}

impl<K: Hash + Eq + Clone, V> FlowTable<K, V> {
    /// An empty table holding at most `max` flows.
    pub fn new(max: usize) -> Self {
        Self { flows: HashMap::new(), max }
    }

    /// The flow for `key`, touched at `now_ms`.
    pub fn get(&self, key: &K, now_ms: u64) -> Option<(&V, &Arc<Activity>)> {
        self.flows.get(key).map(|(v, a)| {
            a.touch(now_ms);
            (v, a)
        })
    }

    /// Adds a flow; `None` (and nothing added) when the table is full.
    pub fn insert(&mut self, key: K, value: V, now_ms: u64) -> Option<Arc<Activity>> {
        if self.flows.len() >= self.max && !self.flows.contains_key(&key) {
            return None;
        }
        let a = Arc::new(Activity::default());
        a.touch(now_ms);
        self.flows.insert(key, (value, a.clone()));
        Some(a)
    }

    /// Removes and returns the flows idle for at least `idle_ms` at `now_ms`.
    pub fn expire(&mut self, now_ms: u64, idle_ms: u64) -> Vec<(K, V)> {
        let gone: Vec<K> = self
            .flows
            .iter()
            .filter(|(_, (_, a))| now_ms.saturating_sub(a.last()) >= idle_ms)
            .map(|(k, _)| k.clone())
            .collect();
        gone.into_iter().filter_map(|k| self.flows.remove(&k).map(|(v, _)| (k, v))).collect()
    }

    /// Removes the flows for which `pred` holds.
    pub fn remove_where(&mut self, mut pred: impl FnMut(&V) -> bool) -> usize {
        let before = self.flows.len();
        self.flows.retain(|_, (v, _)| !pred(v));
        before - self.flows.len()
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_expire_after_idle_and_activity_keeps_them() {
        let mut t: FlowTable<u32, &str> = FlowTable::new(10);
        t.insert(1, "a", 0);
        let b = t.insert(2, "b", 0).unwrap();
        assert!(t.get(&1, 50_000).is_some());
        b.touch(100_000); // the reply direction counts too
        assert!(t.expire(119_999, 120_000).is_empty());
        let gone = t.expire(170_000, 120_000);
        assert_eq!(gone, vec![(1, "a")]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.expire(220_000, 120_000), vec![(2, "b")]);
        assert!(t.is_empty());
    }

    #[test]
    fn a_full_table_refuses_new_flows_only() {
        let mut t: FlowTable<u32, ()> = FlowTable::new(2);
        assert!(t.insert(1, (), 0).is_some());
        assert!(t.insert(2, (), 0).is_some());
        assert!(t.insert(3, (), 0).is_none());
        assert!(t.insert(2, (), 5).is_some());
        assert_eq!(t.remove_where(|_| true), 2);
    }
}
