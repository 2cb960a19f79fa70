use std::net::IpAddr;
use std::time::Duration;

use weir_balance::{HealthState, Reason, TargetKey};

use super::*;
use crate::geneve::PROTO_IPV4;

fn cell(ip: [u8; 4]) -> Arc<TargetCell> {
    let addr = SocketAddr::new(IpAddr::from(ip), 6081);
    let c = TargetCell::new(TargetKey { id: addr.ip().to_string(), port: 6081 }, addr, "z1".into());
    c.set_health(HealthState::Healthy, Reason::None);
    Arc::new(c)
}

fn lb(targets: Vec<Arc<TargetCell>>, mode: FlowKeyMode, rebalance: bool) -> GatewaySnapshot {
    GatewaySnapshot {
        lbs: vec![GatewayLb {
            arn: "gwlb".into(),
            attachment_id: 99,
            endpoints: vec![Endpoint { id: 5, device: "gwe0".into(), zone: Some(Arc::from("z1")) }],
            zones: HashMap::from([("z1".to_string(), FlowPool::new(targets.clone()))]),
            all: FlowPool::new(targets),
            cross_zone: false,
            mode,
            rebalance_unhealthy: rebalance,
            rebalance_deregistered: rebalance,
            stats: Arc::default(),
        }],
    }
}

/// An IPv4 packet of `proto` from src:sport to dst:dport.
fn packet(proto: u8, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, proto, 0, 0];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0, 8, 0, 0]);
    p
}

fn send(g: &mut Gateway, s: &GatewaySnapshot, p: &[u8], now: Instant) -> Result<SocketAddr, Drop> {
    let mut out = Vec::new();
    g.from_endpoint(s, 5, p, now, &mut out)
}

#[test]
fn flows_spread_by_five_tuple_and_both_directions_stick() {
    let s = lb(vec![cell([10, 3, 0, 2]), cell([10, 4, 0, 2])], FlowKeyMode::FiveTuple, false);
    let mut g = Gateway::default();
    let now = Instant::now();
    let mut used = std::collections::HashSet::new();
    for port in 40000..40040 {
        let fwd = send(&mut g, &s, &packet(17, [10, 1, 0, 2], port, [10, 2, 0, 2], 5000), now);
        let back = send(&mut g, &s, &packet(17, [10, 2, 0, 2], 5000, [10, 1, 0, 2], port), now);
        assert_eq!(fwd, back, "return direction of port {port} went elsewhere");
        used.insert(fwd.unwrap());
    }
    assert_eq!(used.len(), 2, "40 flows all on one appliance");
    assert_eq!(g.flows().len(), 40);
    assert_eq!(s.lbs[0].stats.new_flows.load(Ordering::Relaxed), 40);
}

#[test]
fn coarser_tuples_keep_address_pairs_together() {
    for mode in [FlowKeyMode::ThreeTuple, FlowKeyMode::TwoTuple] {
        let s = lb(vec![cell([10, 3, 0, 2]), cell([10, 4, 0, 2])], mode, false);
        let mut g = Gateway::default();
        let now = Instant::now();
        let mut per_source = Vec::new();
        for host in 2..18u8 {
            let first =
                send(&mut g, &s, &packet(17, [10, 1, 0, host], 1000, [10, 2, 0, 2], 53), now);
            for port in 1001..1010 {
                let p = packet(17, [10, 1, 0, host], port, [10, 2, 0, 2], 53);
                assert_eq!(send(&mut g, &s, &p, now), first, "{mode:?}");
            }
            let tcp = send(&mut g, &s, &packet(6, [10, 2, 0, 2], 80, [10, 1, 0, host], 999), now);
            if mode == FlowKeyMode::TwoTuple {
                assert_eq!(tcp, first, "2-tuple ignores the protocol");
            }
            per_source.push(first.unwrap());
        }
        per_source.sort();
        per_source.dedup();
        assert_eq!(per_source.len(), 2, "{mode:?}: 16 address pairs all on one appliance");
    }
}

#[test]
fn failover_follows_the_target_failover_attributes() {
    for rebalance in [false, true] {
        let (a, b) = (cell([10, 3, 0, 2]), cell([10, 4, 0, 2]));
        let s = lb(vec![a.clone(), b.clone()], FlowKeyMode::FiveTuple, rebalance);
        let mut g = Gateway::default();
        let now = Instant::now();
        let flows: Vec<Vec<u8>> =
            (0..20).map(|i| packet(6, [10, 1, 0, 2], 30000 + i, [10, 2, 0, 2], 80)).collect();
        let before: Vec<_> = flows.iter().map(|p| send(&mut g, &s, p, now).unwrap()).collect();
        assert!(before.contains(&a.addr));
        a.set_health(HealthState::Unhealthy, Reason::FailedHealthChecks);
        for (p, was) in flows.iter().zip(&before) {
            let now_at = send(&mut g, &s, p, now).unwrap();
            if rebalance || *was != a.addr {
                assert_eq!(now_at, if rebalance { b.addr } else { *was });
            } else {
                assert_eq!(now_at, a.addr, "no_rebalance keeps flows on the failed appliance");
            }
        }
        // New flows avoid the failed appliance either way.
        for i in 0..20 {
            let p = packet(6, [10, 1, 0, 3], 30000 + i, [10, 2, 0, 2], 80);
            assert_eq!(send(&mut g, &s, &p, now), Ok(b.addr));
        }
    }
}

#[test]
fn deregistered_appliances_keep_flows_until_the_delay_when_rebalancing() {
    let (a, b) = (cell([10, 3, 0, 2]), cell([10, 4, 0, 2]));
    let s = lb(vec![a.clone(), b.clone()], FlowKeyMode::TwoTuple, true);
    let mut g = Gateway::default();
    let now = Instant::now();
    let on_a = (2..40u8)
        .map(|h| packet(17, [10, 1, 0, h], 1, [10, 2, 0, 2], 2))
        .find(|p| send(&mut g, &s, p, now) == Ok(a.addr))
        .expect("some flow on a");
    // Deregistered (a new snapshot without it), draining for 10 s.
    a.start_draining(now + Duration::from_secs(10));
    let s2 = lb(vec![b.clone()], FlowKeyMode::TwoTuple, true);
    assert_eq!(send(&mut g, &s2, &on_a, now + Duration::from_secs(5)), Ok(a.addr));
    assert_eq!(send(&mut g, &s2, &on_a, now + Duration::from_secs(11)), Ok(b.addr));
}

#[test]
fn returned_packets_find_their_endpoint_and_strangers_are_dropped() {
    let a = cell([10, 3, 0, 2]);
    let s = lb(vec![a.clone()], FlowKeyMode::FiveTuple, false);
    let mut g = Gateway::default();
    let now = Instant::now();
    let p = packet(17, [10, 1, 0, 2], 4000, [10, 2, 0, 2], 53);
    let mut out = Vec::new();
    assert_eq!(g.from_endpoint(&s, 5, &p, now, &mut out), Ok(a.addr));
    // Echoed with options.
    let (ep, off) = g.from_appliance(&s, a.addr, &out, now).unwrap();
    assert_eq!((ep, &out[off..]), (5, &p[..]));
    // From a peer that strips options (the Linux kernel's geneve device).
    let mut bare = Vec::new();
    geneve::encode(PROTO_IPV4, 0, &[], &p, &mut bare);
    assert_eq!(g.from_appliance(&s, a.addr, &bare, now).map(|r| r.0), Ok(5));
    // Not from an appliance.
    let stranger = SocketAddr::from(([10, 9, 9, 9], 6081));
    assert_eq!(g.from_appliance(&s, stranger, &out, now), Err(Drop::UnknownSource));
    // Garbage and control packets.
    assert_eq!(g.from_appliance(&s, a.addr, &[1, 2, 3], now), Err(Drop::Malformed));
    let mut oam = out.clone();
    oam[1] |= 0x80;
    assert_eq!(g.from_appliance(&s, a.addr, &oam, now), Err(Drop::Control));
    assert_eq!(send(&mut g, &s, &[0x45, 0, 0], now), Err(Drop::Malformed));
    let mut out2 = Vec::new();
    assert_eq!(g.from_endpoint(&s, 6, &p, now, &mut out2), Err(Drop::UnknownEndpoint));
    assert_eq!(s.lbs[0].stats.dropped.load(Ordering::Relaxed), 3);
}

#[test]
fn all_appliances_unhealthy_fails_open_and_none_registered_drops() {
    let a = cell([10, 3, 0, 2]);
    a.set_health(HealthState::Unhealthy, Reason::FailedHealthChecks);
    let s = lb(vec![a.clone()], FlowKeyMode::FiveTuple, true);
    let mut g = Gateway::default();
    let p = packet(17, [10, 1, 0, 2], 4000, [10, 2, 0, 2], 53);
    assert_eq!(send(&mut g, &s, &p, Instant::now()), Ok(a.addr));
    let empty = lb(vec![], FlowKeyMode::FiveTuple, true);
    let q = packet(17, [10, 1, 0, 2], 4001, [10, 2, 0, 2], 53);
    assert_eq!(send(&mut g, &empty, &q, Instant::now()), Err(Drop::NoTarget));
}

#[test]
fn an_appliance_shared_by_two_load_balancers_returns_to_the_right_one() {
    let a = cell([10, 3, 0, 2]);
    let mut s = lb(vec![a.clone()], FlowKeyMode::FiveTuple, false);
    let mut second = lb(vec![a.clone()], FlowKeyMode::FiveTuple, false).lbs.remove(0);
    second.arn = "gwlb-2".into();
    second.endpoints = vec![Endpoint { id: 6, device: "gwe1".into(), zone: None }];
    s.lbs.push(second);
    let mut g = Gateway::default();
    let now = Instant::now();
    let p = packet(17, [10, 1, 0, 2], 4000, [10, 2, 0, 2], 53);
    let mut out = Vec::new();
    assert_eq!(g.from_endpoint(&s, 6, &p, now, &mut out), Ok(a.addr));
    assert_eq!(g.from_appliance(&s, a.addr, &out, now).map(|r| r.0), Ok(6));
    assert_eq!(s.lbs[1].stats.from_appliances.load(Ordering::Relaxed), 1);
    assert_eq!(s.lbs[0].stats.from_appliances.load(Ordering::Relaxed), 0);
}
