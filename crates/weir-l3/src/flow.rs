//! The GWLB flow table (sans-I/O): which appliance each flow goes to, so that every packet of a
//! flow, in both directions, reaches the same appliance for as long as the flow lives.
//!
//! Flows are keyed by gateway endpoint and the direction-free [`FlowKey`] of their 5-tuple,
//! carry a cookie (sent to the appliance as GENEVE option 3), and expire after
//! [`TCP_IDLE_MS`] (TCP) or [`OTHER_IDLE_MS`] (everything else) without packets, as AWS's GWLB
//! does. Time is passed in as milliseconds so tests drive it directly.

use std::collections::HashMap;
use std::net::IpAddr;

use weir_balance::FlowKeyMode;

use crate::packet::{FlowTuple, TCP};

/// Idle timeout of TCP flows (AWS GWLB: 350 seconds).
pub const TCP_IDLE_MS: u64 = 350_000;
/// Idle timeout of other flows (AWS GWLB: 120 seconds).
pub const OTHER_IDLE_MS: u64 = 120_000;
/// Default capacity: beyond it new flows are still balanced by hash, but not remembered.
pub const DEFAULT_CAPACITY: usize = 1 << 20;

/// A flow's identity regardless of direction: the two ends in a fixed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// IP protocol.
    pub proto: u8,
    /// The lower end (address, port).
    pub lo: (IpAddr, u16),
    /// The higher end.
    pub hi: (IpAddr, u16),
}

impl FlowKey {
    /// The key of the flow `t` belongs to (the same for both directions).
    pub fn of(t: &FlowTuple) -> Self {
        let a = (t.src, t.sport);
        let b = (t.dst, t.dport);
        if a <= b {
            Self { proto: t.proto, lo: a, hi: b }
        } else {
            Self { proto: t.proto, lo: b, hi: a }
        }
    }
}

/// The hash a new flow is placed by: over the 5-tuple, the 3-tuple (addresses and protocol) or
/// the 2-tuple (addresses), the same in both directions.
pub fn flow_hash(mode: FlowKeyMode, key: &FlowKey) -> u64 {
    let lo = std::net::SocketAddr::new(key.lo.0, key.lo.1);
    let hi = std::net::SocketAddr::new(key.hi.0, key.hi.1);
    weir_balance::flow_hash(mode, key.proto, lo, hi)
}

/// One remembered flow.
#[derive(Debug, Clone)]
pub struct Flow<T> {
    /// Where the flow goes.
    pub target: T,
    /// The gateway endpoint it came through.
    pub endpoint: u64,
    /// Its cookie.
    pub cookie: u32,
    /// When a packet of it was last seen.
    pub last_seen_ms: u64,
    /// Packets seen.
    pub packets: u64,
}

/// Flows by endpoint and key, with a cookie index.
#[derive(Debug)]
pub struct FlowTable<T> {
    flows: HashMap<(u64, FlowKey), Flow<T>>,
    cookies: HashMap<u32, (u64, FlowKey)>,
    next_cookie: u32,
    capacity: usize,
}

impl<T> Default for FlowTable<T> {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl<T> FlowTable<T> {
    /// An empty table remembering at most `capacity` flows.
    pub fn with_capacity(capacity: usize) -> Self {
        Self { flows: HashMap::new(), cookies: HashMap::new(), next_cookie: 1, capacity }
    }

    /// Flows remembered.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no flow is remembered.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// The flow `key` through `endpoint`, if remembered and not idle past its timeout at
    /// `now_ms` (an idle one is forgotten). Touches it.
    pub fn touch(&mut self, endpoint: u64, key: &FlowKey, now_ms: u64) -> Option<&mut Flow<T>> {
        let k = (endpoint, *key);
        let idle = self.flows.get(&k).is_some_and(|f| expired(key, f.last_seen_ms, now_ms));
        if idle {
            self.remove(&k);
            return None;
        }
        let f = self.flows.get_mut(&k)?;
        f.last_seen_ms = now_ms;
        f.packets += 1;
        Some(f)
    }

    /// Remembers a new flow to `target`. Returns its cookie, or `None` when the table is full
    /// even after forgetting idle flows (the caller still forwards the packet by hash).
    pub fn insert(&mut self, endpoint: u64, key: FlowKey, target: T, now_ms: u64) -> Option<u32> {
        if self.flows.len() >= self.capacity {
            self.expire(now_ms);
            if self.flows.len() >= self.capacity {
                return None;
            }
        }
        let mut cookie = self.next_cookie;
        while cookie == 0 || self.cookies.contains_key(&cookie) {
            cookie = cookie.wrapping_add(1);
        }
        self.next_cookie = cookie.wrapping_add(1);
        self.cookies.insert(cookie, (endpoint, key));
        if let Some(old) = self.flows.insert(
            (endpoint, key),
            Flow { target, endpoint, cookie, last_seen_ms: now_ms, packets: 1 },
        ) {
            self.cookies.remove(&old.cookie);
        }
        Some(cookie)
    }

    /// The flow with `cookie`.
    pub fn by_cookie(&self, cookie: u32) -> Option<&Flow<T>> {
        self.cookies.get(&cookie).and_then(|k| self.flows.get(k))
    }

    /// The flow `key` through any of `endpoints` (for returned packets that carry no options).
    pub fn find<'a>(
        &'a self,
        key: &FlowKey,
        endpoints: impl IntoIterator<Item = u64>,
    ) -> Option<&'a Flow<T>> {
        endpoints.into_iter().find_map(|e| self.flows.get(&(e, *key)))
    }

    /// Forgets flows idle past their timeout. Returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let before = self.flows.len();
        let cookies = &mut self.cookies;
        self.flows.retain(|(_, k), f| {
            let keep = !expired(k, f.last_seen_ms, now_ms);
            if !keep {
                cookies.remove(&f.cookie);
            }
            keep
        });
        before - self.flows.len()
    }

    /// Every remembered flow.
    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &Flow<T>)> {
        self.flows.iter().map(|((_, k), f)| (k, f))
    }

    fn remove(&mut self, k: &(u64, FlowKey)) {
        if let Some(f) = self.flows.remove(k) {
            self.cookies.remove(&f.cookie);
        }
    }
}

fn expired(key: &FlowKey, last_seen_ms: u64, now_ms: u64) -> bool {
    let idle = if key.proto == TCP { TCP_IDLE_MS } else { OTHER_IDLE_MS };
    now_ms.saturating_sub(last_seen_ms) > idle
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tuple(proto: u8, s: [u8; 4], sp: u16, d: [u8; 4], dp: u16) -> FlowTuple {
        FlowTuple { proto, src: IpAddr::from(s), dst: IpAddr::from(d), sport: sp, dport: dp }
    }

    #[test]
    fn flows_expire_after_the_protocol_idle_timeout() {
        let mut t = FlowTable::default();
        let tcp = FlowKey::of(&tuple(6, [10, 1, 0, 2], 40000, [10, 2, 0, 2], 80));
        let udp = FlowKey::of(&tuple(17, [10, 1, 0, 2], 40000, [10, 2, 0, 2], 53));
        let c1 = t.insert(7, tcp, "a", 0).unwrap();
        let c2 = t.insert(7, udp, "b", 0).unwrap();
        assert_ne!(c1, c2);
        assert_eq!(t.by_cookie(c2).map(|f| f.target), Some("b"));
        assert!(t.touch(7, &udp, OTHER_IDLE_MS).is_some());
        assert!(t.touch(7, &udp, 2 * OTHER_IDLE_MS + 1).is_none(), "idle UDP flow forgotten");
        assert!(t.by_cookie(c2).is_none());
        assert!(t.touch(7, &tcp, TCP_IDLE_MS).is_some(), "TCP flows live 350 s");
        assert!(t.touch(8, &tcp, TCP_IDLE_MS).is_none(), "flows are per endpoint");
        assert_eq!(t.find(&tcp, [8, 7]).map(|f| f.target), Some("a"));
        assert_eq!(t.expire(2 * TCP_IDLE_MS + 1), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn a_full_table_forgets_idle_flows_then_refuses() {
        let mut t = FlowTable::with_capacity(1);
        let a = FlowKey::of(&tuple(17, [1, 1, 1, 1], 1, [2, 2, 2, 2], 2));
        let b = FlowKey::of(&tuple(17, [1, 1, 1, 1], 3, [2, 2, 2, 2], 2));
        assert!(t.insert(0, a, 1, 0).is_some());
        assert!(t.insert(0, b, 2, 10).is_none());
        assert!(t.insert(0, b, 2, OTHER_IDLE_MS + 1).is_some());
        assert_eq!(t.len(), 1);
    }

    proptest! {
        #[test]
        fn both_directions_share_key_and_hash(
            proto in any::<u8>(), s in any::<[u8; 4]>(), d in any::<[u8; 4]>(),
            sp in any::<u16>(), dp in any::<u16>(),
        ) {
            let t = tuple(proto, s, sp, d, dp);
            let (k, r) = (FlowKey::of(&t), FlowKey::of(&t.reversed()));
            prop_assert_eq!(k, r);
            for m in [FlowKeyMode::FiveTuple, FlowKeyMode::ThreeTuple, FlowKeyMode::TwoTuple] {
                prop_assert_eq!(flow_hash(m, &k), flow_hash(m, &r));
            }
            // Coarser modes ignore what they leave out.
            let other_ports = FlowKey::of(&tuple(proto, s, sp.wrapping_add(1), d, dp));
            prop_assert_eq!(flow_hash(FlowKeyMode::ThreeTuple, &k), flow_hash(FlowKeyMode::ThreeTuple, &other_ports));
            let other_proto = FlowKey::of(&tuple(proto.wrapping_add(1), s, sp, d, dp));
            prop_assert_eq!(flow_hash(FlowKeyMode::TwoTuple, &k), flow_hash(FlowKeyMode::TwoTuple, &other_proto));
        }
    }
}
