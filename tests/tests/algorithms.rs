//! Each load-balancing algorithm's distribution, measured at real backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use weir_tests::*;

async fn lb_with(algorithm: &str, n: usize) -> (Lb, Vec<weir_demo::DemoBackend>) {
    let b = backends(algorithm, n).await;
    let hc = "      HealthCheckPath: /health\n      HealthCheckIntervalSeconds: 5\n      HealthCheckTimeoutSeconds: 2\n      HealthyThresholdCount: 2\n";
    let tg = format!(
        "{hc}{}",
        attributes("TargetGroupAttributes", &[("load_balancing.algorithm.type", algorithm)])
    );
    let yaml = one_group("algo", "", &tg, &targets_yaml(&b, 8));
    (Lb::up(&yaml).await, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_is_exact() {
    let (lb, b) = lb_with("round_robin", 3).await;
    let c = client();
    let mut order = Vec::new();
    for _ in 0..30 {
        order.push(send(&c, "GET", &lb.url("/"), &[]).await.backend().to_string());
    }
    for x in &b {
        assert_eq!(x.requests(), 10, "{order:?}");
    }
    // Strict rotation: every window of 3 consecutive responses names 3 different backends.
    for w in order.windows(3) {
        assert!(w[0] != w[1] && w[1] != w[2] && w[0] != w[2], "{order:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_outstanding_prefers_the_idle_target() {
    let (lb, b) = lb_with("least_outstanding_requests", 2).await;
    // Occupy one target with a slow request, then see every quick request go to the other.
    let url = lb.url("/slow?delay_ms=1500");
    let slow = vec![tokio::spawn(async move { get(&url).await })];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let busy = if b[0].requests() > 0 { 0 } else { 1 };
    let idle = 1 - busy;
    assert_eq!(b[busy].requests(), 1);
    let c = client();
    for _ in 0..20 {
        let r = send(&c, "GET", &lb.url("/quick"), &[]).await;
        assert_eq!(r.backend(), format!("least_outstanding_requests-{}", idle + 1));
    }
    for s in slow {
        assert_eq!(s.await.unwrap().status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_random_spreads_evenly() {
    let (lb, b) = lb_with("weighted_random", 4).await;
    let c = client();
    for _ in 0..2000 {
        send(&c, "GET", &lb.url("/"), &[]).await;
    }
    // Binomial(2000, 0.25): mean 500, sd ≈ 19.4; ±100 is over 5 sd.
    for x in &b {
        assert!(
            (400..=600).contains(&x.requests()),
            "{:?}",
            b.iter().map(|x| x.requests()).collect::<Vec<_>>()
        );
    }
    // And it is random, not a rotation.
    let mut order = Vec::new();
    for _ in 0..40 {
        order.push(send(&c, "GET", &lb.url("/"), &[]).await.backend().to_string());
    }
    assert!(
        order.windows(4).any(|w| w[0] == w[1] || w[0] == w[2] || w[1] == w[2] || w[0] == w[3]),
        "{order:?}"
    );
}
