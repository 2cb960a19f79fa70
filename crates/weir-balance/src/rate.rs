//! Per-source rate limiting with a sliding window: the rate of the current second plus the
//! previous second's count weighted by how much of it still overlaps the last 1000 ms (the
//! estimate NGINX and Cloudflare use). Memory is bounded: at most [`MAX_SOURCES`] sources are
//! tracked; when full, sources idle for two seconds are forgotten, and if none is, unknown
//! sources are let through rather than tracked (a flood from many addresses is the connection
//! limit's job). IPv6 sources are keyed by their /64, which one attacker usually holds whole.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Most sources tracked at once (all shards together).
pub const MAX_SOURCES: usize = 65_536;
const SHARDS: usize = 16;

#[derive(Debug, Clone, Copy)]
struct Window {
    /// The second this window counts.
    second: u64,
    count: u32,
    previous: u32,
}

/// Counts events per source and says whether one more stays within `limit` per second.
#[derive(Debug)]
pub struct SourceRates {
    limit: u32,
    shards: Vec<Mutex<Shard>>,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<u128, Window>,
    /// The second of the last sweep for idle sources (at most one per second, so a flood
    /// from many addresses costs no more than one pass over the shard per second).
    swept: u64,
}

fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => (u128::from(v6) >> 64 << 64) | 1 << 32,
        },
    }
}

impl SourceRates {
    /// A limiter allowing `limit` events per second per source; 0 allows everything.
    pub fn new(limit: u32) -> Self {
        Self { limit, shards: (0..SHARDS).map(|_| Mutex::default()).collect() }
    }

    /// The configured limit (0: none).
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Records one event from `ip` at `now_ms` (milliseconds on any monotonic clock) and says
    /// whether it is within the limit. Refused events are not counted, so a source that backs off
    /// gets through again after a second.
    pub fn allow(&self, ip: IpAddr, now_ms: u64) -> bool {
        if self.limit == 0 {
            return true;
        }
        let k = key(ip);
        let shard = (k ^ (k >> 64) ^ (k >> 17)) as usize % SHARDS;
        let Ok(mut guard) = self.shards[shard].lock() else {
            return true;
        };
        let Shard { map, swept } = &mut *guard;
        let second = now_ms / 1000;
        if !map.contains_key(&k) && map.len() >= MAX_SOURCES / SHARDS {
            if *swept != second {
                *swept = second;
                map.retain(|_, w| w.second + 2 > second);
            }
            if map.len() >= MAX_SOURCES / SHARDS {
                return true;
            }
        }
        let w = map.entry(k).or_insert(Window { second, count: 0, previous: 0 });
        if w.second != second {
            w.previous = if w.second + 1 == second { w.count } else { 0 };
            w.second = second;
            w.count = 0;
        }
        let overlap = 1000 - (now_ms % 1000);
        let estimate = u64::from(w.previous) * overlap / 1000 + u64::from(w.count);
        if estimate >= u64::from(self.limit) {
            return false;
        }
        w.count += 1;
        true
    }
}

/// A [`SourceRates`] that follows a configured limit: replaced (counts reset) only when the
/// limit changes, so one can live in a listener across configuration snapshots.
#[derive(Debug, Default)]
pub struct RateCell(Mutex<Option<Arc<SourceRates>>>);

impl RateCell {
    /// Whether one more event from `ip` now is within `limit` per second (0: always).
    pub fn allow(&self, limit: u32, ip: IpAddr) -> bool {
        if limit == 0 {
            return true;
        }
        let rates = {
            let Ok(mut current) = self.0.lock() else {
                return true;
            };
            match &*current {
                Some(r) if r.limit() == limit => r.clone(),
                _ => {
                    let r = Arc::new(SourceRates::new(limit));
                    *current = Some(r.clone());
                    r
                }
            }
        };
        rates.allow(ip, monotonic_ms())
    }
}

/// Milliseconds since the first call: the clock of [`RateCell`].
pub fn monotonic_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn limits_per_source_and_recovers() {
        let r = SourceRates::new(10);
        let a = ip("10.0.0.1");
        let allowed = (0..50).filter(|_| r.allow(a, 5_000)).count();
        assert_eq!(allowed, 10);
        assert!(r.allow(ip("10.0.0.2"), 5_000), "another source has its own budget");
        // Half a second into the next second, half of the last second still counts.
        let allowed = (0..50).filter(|_| r.allow(a, 6_500)).count();
        assert_eq!(allowed, 5);
        // After two quiet seconds the whole budget is back.
        let allowed = (0..50).filter(|_| r.allow(a, 9_000)).count();
        assert_eq!(allowed, 10);
    }

    #[test]
    fn zero_means_unlimited_and_ipv6_is_keyed_by_its_64() {
        let r = SourceRates::new(0);
        assert!((0..10_000).all(|_| r.allow(ip("10.0.0.1"), 0)));
        let r = SourceRates::new(3);
        let n = ["2001:db8::1", "2001:db8::2", "2001:db8::ffff", "2001:db8::9"]
            .iter()
            .filter(|s| r.allow(ip(s), 0))
            .count();
        assert_eq!(n, 3, "one /64 shares a budget");
        assert!(r.allow(ip("2001:db8:0:1::1"), 0), "the next /64 does not");
        assert!(r.allow(ip("::ffff:10.0.0.1"), 0) && r.allow(ip("10.0.0.1"), 0));
        assert!(
            r.allow(ip("10.0.0.1"), 0) && !r.allow(ip("::ffff:10.0.0.1"), 0),
            "mapped v4 is v4"
        );
    }

    #[test]
    fn a_cell_follows_its_limit() {
        let c = RateCell::default();
        let a = ip("10.0.0.1");
        assert!((0..100).all(|_| c.allow(0, a)));
        assert_eq!((0..10).filter(|_| c.allow(3, a)).count(), 3);
        // A new limit starts counting afresh.
        assert_eq!((0..10).filter(|_| c.allow(5, a)).count(), 5);
    }

    #[test]
    fn memory_is_bounded() {
        let r = SourceRates::new(1);
        for i in 0..(MAX_SOURCES as u32 * 2) {
            r.allow(IpAddr::from(i.to_be_bytes()), 0);
        }
        let tracked: usize = r.shards.iter().map(|s| s.lock().map_or(0, |m| m.map.len())).sum();
        assert!(tracked <= MAX_SOURCES, "{tracked} sources tracked");
        // Old entries make room once they are two seconds old.
        assert!(r.allow(ip("192.0.2.1"), 3_000));
        assert!(!r.allow(ip("192.0.2.1"), 3_000));
    }
}
