use super::*;
use crate::cell::{HealthState, Reason, TargetKey};
use proptest::prelude::*;

fn cells(n: usize) -> Vec<Arc<TargetCell>> {
    (0..n)
        .map(|i| {
            let port = 9000 + i as u16;
            Arc::new(TargetCell::new(
                TargetKey { id: "127.0.0.1".into(), port },
                format!("127.0.0.1:{port}").parse().unwrap(),
                "us-east-1a".into(),
            ))
        })
        .collect()
}

fn healthy(c: &[Arc<TargetCell>]) {
    for x in c {
        x.set_health(HealthState::Healthy, Reason::None);
    }
}

#[test]
fn empty_selector_gives_none() {
    assert!(Selector::new(Algorithm::RoundRobin, vec![]).pick(None).is_none());
}

#[test]
fn fail_open_uses_unhealthy_but_never_draining() {
    let c = cells(3);
    c[0].set_health(HealthState::Unhealthy, Reason::Timeout);
    c[1].set_health(HealthState::Unhealthy, Reason::Timeout);
    c[2].start_draining(std::time::Instant::now());
    let s = Selector::new(Algorithm::RoundRobin, c.clone());
    for _ in 0..20 {
        let g = s.pick(None).unwrap();
        assert_ne!(g.target().key.port, 9002);
    }
    c[1].set_health(HealthState::Healthy, Reason::None);
    for _ in 0..10 {
        assert_eq!(
            s.pick(None).unwrap().target().key.port,
            9001,
            "healthy targets win over fail-open"
        );
    }
}

#[test]
fn exclude_skips_failed_target() {
    let c = cells(2);
    healthy(&c);
    let s = Selector::new(Algorithm::RoundRobin, c.clone());
    for _ in 0..10 {
        assert_eq!(s.pick(Some(&c[0])).unwrap().target().key.port, 9001);
    }
}

#[test]
fn least_outstanding_prefers_idle() {
    let c = cells(3);
    healthy(&c);
    let s = Selector::new(Algorithm::LeastOutstandingRequests, c.clone());
    let _busy0 = OutstandingGuard::new(c[0].clone());
    let _busy2 = OutstandingGuard::new(c[2].clone());
    for _ in 0..10 {
        let g = s.pick(None).unwrap();
        assert_eq!(g.target().key.port, 9001);
    }
}

#[test]
fn weighted_pick_respects_zero_and_ratio() {
    assert_eq!(pick_weighted(&[0, 0]), None);
    for _ in 0..100 {
        assert_eq!(pick_weighted(&[0, 5]), Some(1));
    }
    let mut hits = [0u32; 2];
    for _ in 0..10_000 {
        hits[pick_weighted(&[1, 3]).unwrap()] += 1;
    }
    assert!((2200..2800).contains(&hits[0]), "{hits:?}");
}

proptest! {
    #[test]
    fn round_robin_is_exact(n in 1usize..12, rounds in 1usize..20) {
        let c = cells(n);
        healthy(&c);
        let s = Selector::new(Algorithm::RoundRobin, c.clone());
        let mut counts = vec![0usize; n];
        for _ in 0..n * rounds {
            let g = s.pick(None).unwrap();
            counts[(g.target().key.port - 9000) as usize] += 1;
        }
        prop_assert!(counts.iter().all(|&k| k == rounds));
    }

    #[test]
    fn outstanding_returns_to_zero(n in 1usize..8, picks in 1usize..50) {
        let c = cells(n);
        healthy(&c);
        let s = Selector::new(Algorithm::LeastOutstandingRequests, c.clone());
        let guards: Vec<_> = (0..picks).map(|_| s.pick(None).unwrap()).collect();
        let total: u32 = c.iter().map(|x| x.outstanding()).sum();
        prop_assert_eq!(total as usize, picks);
        // LOR keeps the spread within one request.
        let max = c.iter().map(|x| x.outstanding()).max().unwrap();
        let min = c.iter().map(|x| x.outstanding()).min().unwrap();
        prop_assert!(max - min <= 1);
        drop(guards);
        prop_assert!(c.iter().all(|x| x.outstanding() == 0));
    }
}

#[test]
fn slow_start_ramps_linearly_and_only_beside_a_settled_target() {
    use std::time::{Duration, Instant};
    let c = cells(2);
    let window = Duration::from_millis(400);
    let s = Selector::new(Algorithm::RoundRobin, c.clone()).with_slow_start(Some(window));
    c[0].set_health(HealthState::Healthy, Reason::None);
    let t0 = c[0].healthy_since().unwrap();
    // The weight grows linearly over the window, then stays full.
    let w = |d: u64| s.slow_start_weight(&c[0], t0 + Duration::from_millis(d));
    assert!(w(0) <= 0.001 + f64::EPSILON);
    assert!((w(100) - 0.25).abs() < 1e-9);
    assert!((w(200) - 0.5).abs() < 1e-9);
    assert_eq!(w(400), 1.0);
    assert_eq!(w(4000), 1.0);
    // A lone target in its window still gets everything.
    for _ in 0..10 {
        assert_eq!(s.pick(None).unwrap().target().key.port, 9000);
    }
    std::thread::sleep(window + Duration::from_millis(50));
    // Beside a settled target, a target that just became healthy gets almost nothing.
    c[1].set_health(HealthState::Healthy, Reason::None);
    let newcomer = (0..1000).filter(|_| s.pick(None).unwrap().target().key.port == 9001).count();
    let elapsed = Instant::now().saturating_duration_since(c[1].healthy_since().unwrap());
    let expected = 1000.0 * s.slow_start_weight(&c[1], Instant::now()) / 2.0;
    assert!(
        (newcomer as f64) < expected + 100.0,
        "{newcomer} of 1000 after {elapsed:?} (expected about {expected})"
    );
    // A target that becomes healthy again starts a new window; without slow start, no ramp.
    let plain = Selector::new(Algorithm::RoundRobin, c.clone());
    let even = (0..1000).filter(|_| plain.pick(None).unwrap().target().key.port == 9001).count();
    assert_eq!(even, 500);
}
