//! Maglev consistent hashing (Eisenbud et al., NSDI 2016) and flow hashes for the L4/L3 data
//! planes.
//!
//! A [`Maglev`] table maps a flow hash to one of N targets so that the shares are near equal and
//! adding or removing a target moves only about 1/N of the flows. [`FlowPool`] puts a table over
//! a snapshot of target cells and skips targets that are not routable at the moment of the pick,
//! so a target turning unhealthy moves only its own flows.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::cell::TargetCell;

/// Table size: a prime, fixed so that a target's slots do not depend on how many others there
/// are (a size that grew with the target count would reshuffle every flow at the boundary). At
/// least 100 slots per target up to 655 targets, as the Maglev paper advises.
const SIZE: usize = 65521;

/// A Maglev lookup table over `n` targets.
#[derive(Debug, Clone)]
pub struct Maglev {
    table: Vec<u16>,
    n: usize,
}

/// 64-bit FNV-1a: stable across runs and versions, so flows map the same way after a restart.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A strong 64-bit finaliser (splitmix64), used to derive independent hashes.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Maglev {
    /// A table over targets named by `names` (their identities: a name keeps its slots when
    /// other targets come and go).
    pub fn new<N: AsRef<[u8]>>(names: &[N]) -> Self {
        let n = names.len();
        if n == 0 {
            return Self { table: Vec::new(), n: 0 };
        }
        let n = n.min(usize::from(u16::MAX));
        let m = SIZE;
        let perms: Vec<(usize, usize)> = names
            .iter()
            .map(|name| {
                let h = fnv1a(name.as_ref());
                let offset = (mix(h) % m as u64) as usize;
                let skip = (mix(h ^ 0x5bd1_e995) % (m as u64 - 1)) as usize + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0usize; n];
        let mut table = vec![u16::MAX; m];
        let mut filled = 0;
        'fill: loop {
            for i in 0..n {
                let (offset, skip) = perms[i];
                let mut c = (offset + next[i] * skip) % m;
                while table[c] != u16::MAX {
                    next[i] += 1;
                    c = (offset + next[i] * skip) % m;
                }
                table[c] = i as u16;
                next[i] += 1;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
        }
        Self { table, n }
    }

    /// The target index for `hash`; `None` when there are no targets.
    pub fn lookup(&self, hash: u64) -> Option<usize> {
        if self.n == 0 {
            return None;
        }
        self.table.get((hash % self.table.len() as u64) as usize).map(|i| *i as usize)
    }

    /// Number of targets.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there are no targets.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

/// Which parts of a flow its hash covers (NLB `stickiness.type`, GWLB tuple modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowKeyMode {
    /// Protocol, source and destination address and port (the default).
    FiveTuple,
    /// Source address, destination address and protocol (`source_ip_dest_ip_proto`).
    ThreeTuple,
    /// Source and destination address (`source_ip_dest_ip`).
    TwoTuple,
    /// Source address only (NLB `source_ip` stickiness).
    SourceIp,
}

fn ip_bytes(ip: IpAddr, out: &mut Vec<u8>) {
    match ip {
        IpAddr::V4(v) => out.extend_from_slice(&v.octets()),
        IpAddr::V6(v) => out.extend_from_slice(&v.octets()),
    }
}

/// The hash of a flow from `src` to `dst` over IP protocol `proto` (6 TCP, 17 UDP). Symmetric
/// modes are not needed here: the data planes key the return direction by the same tuple.
pub fn flow_hash(mode: FlowKeyMode, proto: u8, src: SocketAddr, dst: SocketAddr) -> u64 {
    let mut b = Vec::with_capacity(40);
    match mode {
        FlowKeyMode::FiveTuple => {
            b.push(proto);
            ip_bytes(src.ip(), &mut b);
            b.extend_from_slice(&src.port().to_be_bytes());
            ip_bytes(dst.ip(), &mut b);
            b.extend_from_slice(&dst.port().to_be_bytes());
        }
        FlowKeyMode::ThreeTuple => {
            b.push(proto);
            ip_bytes(src.ip(), &mut b);
            ip_bytes(dst.ip(), &mut b);
        }
        FlowKeyMode::TwoTuple => {
            ip_bytes(src.ip(), &mut b);
            ip_bytes(dst.ip(), &mut b);
        }
        FlowKeyMode::SourceIp => ip_bytes(src.ip(), &mut b),
    }
    mix(fnv1a(&b))
}

/// A Maglev table over a snapshot of target cells.
#[derive(Debug)]
pub struct FlowPool {
    targets: Vec<Arc<TargetCell>>,
    maglev: Maglev,
}

impl FlowPool {
    /// A pool over `targets`, identified by `id:port`.
    pub fn new(targets: Vec<Arc<TargetCell>>) -> Self {
        let names: Vec<String> =
            targets.iter().map(|t| format!("{}:{}", t.key.id, t.key.port)).collect();
        Self { maglev: Maglev::new(&names), targets }
    }

    /// The targets.
    pub fn targets(&self) -> &[Arc<TargetCell>] {
        &self.targets
    }

    /// The target for a flow with `hash`: its Maglev slot if that target is routable, else the
    /// slot of a rehash (a few tries), else any routable target; when none is routable, a
    /// fail-open candidate (as AWS routes to all targets when all are unhealthy). `None` when
    /// the pool has nothing that may take new flows.
    pub fn pick(&self, hash: u64) -> Option<Arc<TargetCell>> {
        let mut h = hash;
        for _ in 0..8 {
            let t = &self.targets[self.maglev.lookup(h)?];
            if t.is_routable() {
                return Some(t.clone());
            }
            h = mix(h);
        }
        let routable: Vec<&Arc<TargetCell>> =
            self.targets.iter().filter(|t| t.is_routable()).collect();
        if !routable.is_empty() {
            return Some(routable[(hash % routable.len() as u64) as usize].clone());
        }
        let open: Vec<&Arc<TargetCell>> =
            self.targets.iter().filter(|t| t.is_fail_open_candidate()).collect();
        (!open.is_empty()).then(|| open[(hash % open.len() as u64) as usize].clone())
    }

    /// Whether some target is healthy (routable).
    pub fn any_routable(&self) -> bool {
        self.targets.iter().any(|t| t.is_routable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:80")).collect()
    }

    #[test]
    fn shares_are_near_equal() {
        let m = Maglev::new(&names(7));
        let mut counts = [0usize; 7];
        for h in 0..70_000u64 {
            counts[m.lookup(mix(h)).unwrap()] += 1;
        }
        for c in counts {
            assert!((8_500..11_500).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn adding_a_target_moves_few_flows() {
        let before = Maglev::new(&names(10));
        let after = Maglev::new(&names(11));
        let moved = (0..20_000u64)
            .filter(|h| {
                let (a, b) = (before.lookup(mix(*h)).unwrap(), after.lookup(mix(*h)).unwrap());
                a != b
            })
            .count();
        // Ideal is 1/11 (~9%); Maglev stays close to it, far from modulo hashing's ~90%.
        assert!(moved < 20_000 * 15 / 100, "moved {moved}");
        assert!(moved > 20_000 * 5 / 100, "moved {moved}");
    }

    #[test]
    fn empty_table_has_no_target() {
        assert_eq!(Maglev::new::<String>(&[]).lookup(3), None);
    }

    #[test]
    fn flow_hash_modes_ignore_what_they_should() {
        let a: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        let a2: SocketAddr = "10.0.0.1:2000".parse().unwrap();
        let d: SocketAddr = "10.0.9.9:80".parse().unwrap();
        assert_ne!(
            flow_hash(FlowKeyMode::FiveTuple, 6, a, d),
            flow_hash(FlowKeyMode::FiveTuple, 6, a2, d)
        );
        assert_eq!(
            flow_hash(FlowKeyMode::SourceIp, 6, a, d),
            flow_hash(FlowKeyMode::SourceIp, 17, a2, d)
        );
        assert_eq!(
            flow_hash(FlowKeyMode::ThreeTuple, 6, a, d),
            flow_hash(FlowKeyMode::ThreeTuple, 6, a2, d)
        );
        assert_ne!(
            flow_hash(FlowKeyMode::ThreeTuple, 6, a, d),
            flow_hash(FlowKeyMode::ThreeTuple, 17, a, d)
        );
    }

    proptest! {
        // Each case builds 65521-slot tables; a few dozen cases cover the shapes.
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn every_slot_names_a_target(n in 1usize..40, h in any::<u64>()) {
            let m = Maglev::new(&names(n));
            prop_assert!(m.lookup(h).unwrap() < n);
        }

        #[test]
        fn removing_a_target_moves_few_flows_of_the_others(n in 3usize..20, gone in 0usize..20) {
            let gone = gone % n;
            let all = names(n);
            let rest: Vec<String> =
                all.iter().enumerate().filter(|(i, _)| *i != gone).map(|(_, s)| s.clone()).collect();
            let before = Maglev::new(&all);
            let after = Maglev::new(&rest);
            let (mut others, mut moved) = (0u32, 0u32);
            for h in 0..4000u64 {
                let h = mix(h);
                let (a, b) = (before.lookup(h).unwrap(), after.lookup(h).unwrap());
                if a != gone {
                    others += 1;
                    if rest[b] != all[a] {
                        moved += 1;
                    }
                }
            }
            // Modulo hashing would move most of them; Maglev keeps nearly all in place.
            prop_assert!(moved * 100 <= others * 15, "moved {} of {}", moved, others);
        }
    }
}
