//! Health checks end to end: AWS thresholds and reason codes, traffic avoiding unhealthy
//! targets, fail-open, unused targets, draining on deregistration. Uses AWS's smallest interval
//! (5 s), so these tests take tens of seconds of wall time; they run concurrently.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio::net::TcpListener;
use weir_tests::weir_model::HealthCheck;
use weir_tests::*;

fn template(targets: &str, extra_tg_props: &str) -> String {
    let hc = "      HealthCheckPath: /health\n      HealthCheckIntervalSeconds: 5\n      HealthCheckTimeoutSeconds: 2\n      HealthyThresholdCount: 2\n      UnhealthyThresholdCount: 2\n      Matcher: { HttpCode: \"200\" }\n";
    one_group("hc", "", &format!("{hc}{extra_tg_props}"), targets)
}

fn states(h: &[weir_dataplane::TargetHealthInfo]) -> Vec<&'static str> {
    h.iter().map(|t| t.state.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transitions_follow_thresholds_and_traffic_follows_health() {
    let b = backends("hc", 2).await;
    let lb = Lb::up(&template(&targets_yaml(&b, 8), "")).await;
    let h = lb.health("hc").await;
    assert_eq!(states(&h), vec!["initial", "initial"]);
    assert!(h.iter().all(|t| t.reason.code().unwrap().starts_with("Elb.")));

    let h = lb.wait_health("hc", 12, |h| h.iter().all(|t| t.state.as_str() == "healthy")).await;
    assert_eq!(states(&h), vec!["healthy", "healthy"]);
    assert!(h.iter().all(|t| t.reason.code().is_none()));

    b[0].set_health(503);
    let h = lb.wait_health("hc", 14, |h| h[0].state.as_str() == "unhealthy").await;
    assert_eq!(states(&h), vec!["unhealthy", "healthy"]);
    assert_eq!(h[0].reason.code(), Some("Target.ResponseCodeMismatch"));
    assert_eq!(h[0].reason.description().unwrap(), "Health checks failed with these codes: [503]");

    let before = b[0].requests();
    let c = client();
    for _ in 0..20 {
        assert_eq!(send(&c, "GET", &lb.url("/"), &[]).await.backend(), "hc-2");
    }
    assert_eq!(b[0].requests(), before, "no traffic to the unhealthy target");

    b[0].set_health(200);
    let h = lb.wait_health("hc", 14, |h| h[0].state.as_str() == "healthy").await;
    assert_eq!(states(&h), vec!["healthy", "healthy"]);
    for _ in 0..10 {
        send(&c, "GET", &lb.url("/"), &[]).await;
    }
    assert_eq!(b[0].requests(), before + 5, "round robin resumes once healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_when_every_target_is_unhealthy() {
    let b = backends("open", 2).await;
    b[0].set_health(500);
    b[1].set_health(404);
    let lb = Lb::up(&template(&targets_yaml(&b, 8), "")).await;
    let h = lb.wait_health("hc", 12, |h| h.iter().all(|t| t.state.as_str() == "unhealthy")).await;
    assert_eq!(states(&h), vec!["unhealthy", "unhealthy"]);
    let c = client();
    for _ in 0..10 {
        assert_eq!(send(&c, "GET", &lb.url("/"), &[]).await.status, 200);
    }
    assert_eq!((b[0].requests(), b[1].requests()), (5, 5), "fail-open spreads over all targets");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_and_connection_failure_reasons() {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let targets = format!(
        "        - {{ Id: 127.0.0.1, Port: {} }}\n        - {{ Id: 127.0.0.1, Port: {closed_port} }}\n",
        silent.local_addr().unwrap().port()
    );
    let lb = Lb::up(&template(&targets, "")).await;
    let h = lb.wait_health("hc", 14, |h| h.iter().all(|t| t.state.as_str() == "unhealthy")).await;
    assert_eq!(states(&h), vec!["unhealthy", "unhealthy"]);
    assert_eq!(h[0].reason.code(), Some("Target.Timeout"));
    assert_eq!(h[1].reason.code(), Some("Target.FailedHealthChecks"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_targets_and_disabled_checks() {
    let b = backends("unused", 2).await;
    let yaml = template(&targets_yaml(&b, 8), "").replace(
        &format!("        - {{ Id: 127.0.0.1, Port: {} }}\n", b[1].addr.port()),
        &format!(
            "        - {{ Id: 127.0.0.1, Port: {}, AvailabilityZone: us-east-1c }}\n",
            b[1].addr.port()
        ),
    );
    let mut lb = Lb::up(&yaml).await;
    let h = lb.health("hc").await;
    assert_eq!(states(&h), vec!["initial", "unused"], "a target outside the LB's zones is unused");
    assert_eq!(h[1].reason.code(), Some("Target.NotInUse"));

    // Detach the group from the listener: all its targets become unused.
    let l = lb.listener_arn();
    lb.change(|s| {
        let fixed = weir_model::Action {
            order: None,
            kind: weir_model::ActionKind::FixedResponse(weir_model::FixedResponseConfig {
                status_code: 200,
                content_type: None,
                message_body: None,
            }),
        };
        s.modify_listener_default_actions(&l, vec![fixed]).unwrap();
    })
    .await;
    assert_eq!(states(&lb.health("hc").await), vec!["unused", "unused"]);

    // A group with health checks disabled reports its targets unavailable and routes to them.
    let yaml = template(&targets_yaml(&b[..1], 8), "      HealthCheckEnabled: false\n")
        .replace("Name: health", "Name: nohc")
        .replace("Name: hc", "Name: nohc");
    let lb2 = Lb::up(&yaml).await;
    let h = lb2.health("nohc").await;
    assert_eq!(states(&h), vec!["unavailable"]);
    assert_eq!(h[0].reason.code(), Some("Target.HealthCheckDisabled"));
    assert_eq!(get(&lb2.url("/")).await.backend(), "unused-1");
    let _ = HealthCheck::defaults; // the model's defaults are exercised in unit tests
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregistered_target_drains_then_disappears() {
    let b = backends("drain", 2).await;
    let mut lb = Lb::up(&template(
        &targets_yaml(&b, 8),
        &(attributes("TargetGroupAttributes", &[("deregistration_delay.timeout_seconds", "30")])
            + "\n"),
    ))
    .await;
    lb.wait_health("hc", 12, |h| h.iter().all(|t| t.state.as_str() == "healthy")).await;
    // Put a slow request in flight on each target (round robin), then deregister the first.
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let u = lb.url("/slow?delay_ms=1500");
            tokio::spawn(async move { get(&u).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let port = b[0].addr.port();
    lb.deregister("hc", port).await;
    let h = lb.health("hc").await;
    let drained = h.iter().find(|t| t.port == port).expect("still reported while draining");
    assert_eq!(drained.state.as_str(), "draining");
    assert_eq!(drained.reason.code(), Some("Target.DeregistrationInProgress"));
    let before = b[0].requests();
    for _ in 0..10 {
        assert_eq!(get(&lb.url("/")).await.backend(), "drain-2");
    }
    assert_eq!(b[0].requests(), before, "no new requests to a draining target");
    for s in slow {
        assert_eq!(s.await.unwrap().status, 200, "in-flight requests finish");
    }
    // Idle now: it leaves well before the 30 s delay.
    let h = lb.wait_health("hc", 3, |h| h.len() == 1).await;
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].port, b[1].addr.port());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_start_gives_a_new_target_a_growing_share() {
    let b = backends("slow", 2).await;
    let mut lb = Lb::up(&template(
        &targets_yaml(&b[..1], 8),
        &(attributes("TargetGroupAttributes", &[("slow_start.duration_seconds", "30")]) + "\n"),
    ))
    .await;
    lb.wait_health("hc", 12, |h| h.iter().all(|t| t.state.as_str() == "healthy")).await;
    // The first target must be past its own window before a newcomer ramps beside it.
    tokio::time::sleep(Duration::from_secs(31)).await;
    lb.register("hc", b[1].addr.port()).await;
    let h = lb.wait_health("hc", 12, |h| h.iter().all(|t| t.state.as_str() == "healthy")).await;
    assert_eq!(states(&h), vec!["healthy", "healthy"]);
    let c = client();
    for _ in 0..200 {
        assert_eq!(send(&c, "GET", &lb.url("/"), &[]).await.status, 200);
    }
    // Within the first seconds of its 30 s window the newcomer's share is far below half
    // (round robin without slow start would give it exactly 100).
    let newcomer = b[1].requests();
    assert!(newcomer < 50, "newcomer got {newcomer} of 200");
    assert_eq!(b[0].requests() + newcomer, 200);
}
