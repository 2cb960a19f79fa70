//! What the proxy does to requests and connections: forwarded headers, hop-by-hop removal,
//! pooled keep-alive connections to targets, zone-node addresses, and live configuration
//! changes under continuous load with zero failed requests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weir_model::state::TargetSpec;
use weir_model::{Action, ActionKind, Condition, FixedResponseConfig};
use weir_tests::*;

fn lb_yaml(targets: &str, lb_attrs: &str) -> String {
    let subnets = "      Subnets: [subnet-0000000000000000a, subnet-0000000000000000b, subnet-0000000000000000c]";
    let lb = if lb_attrs.is_empty() {
        subnets.to_string()
    } else {
        format!("{subnets}\n      LoadBalancerAttributes: [{lb_attrs}]")
    };
    one_group("proxying", &lb, "      HealthCheckPath: /health", targets)
}

fn header<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_and_hop_by_hop() {
    let b = backends("hdr", 1).await;
    let lb = Lb::up(&lb_yaml(&targets_yaml(&b, 8), "")).await;
    let r = send(
        &client(),
        "GET",
        &lb.url("/path?q=1"),
        &[
            ("host", "app.example.com"),
            ("x-forwarded-for", "203.0.113.7"),
            ("connection", "x-secret"),
            ("x-secret", "s"),
            ("te", "trailers"),
            ("x-custom", "kept"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let body = &r.body;
    assert!(body.contains("GET /path?q=1"), "{body}");
    // As ALB does by default, the listener port is appended to Host when it is not 80.
    let host = format!("app.example.com:{}", lb.port);
    assert_eq!(header(body, "host"), Some(host.as_str()));
    assert_eq!(header(body, "x-forwarded-for"), Some("203.0.113.7, 127.0.0.1"));
    assert_eq!(header(body, "x-forwarded-proto"), Some("http"));
    assert_eq!(header(body, "x-forwarded-port"), Some(lb.port.to_string().as_str()));
    assert_eq!(header(body, "x-custom"), Some("kept"));
    assert_eq!(header(body, "x-secret"), None, "headers named in Connection are removed");
    assert_eq!(header(body, "te"), None);
    let trace = header(body, "x-amzn-trace-id").expect("trace id added");
    assert!(trace.starts_with("Root=1-") && trace.len() == "Root=1-".len() + 8 + 1 + 24, "{trace}");

    let mut lb = lb;
    let arn = lb.state.load_balancers.keys().next().cloned().unwrap();
    lb.change(|s| {
        let a = &mut s.load_balancers.get_mut(&arn).unwrap().attributes;
        a.set("routing.http.preserve_host_header.enabled", "true").unwrap();
    })
    .await;
    let r = send(&client(), "GET", &lb.url("/"), &[("host", "app.example.com")]).await;
    assert_eq!(header(&r.body, "host"), Some("app.example.com"), "preserved unchanged");

    let inbound = "Root=1-5759e988-bd862e3fe1be46a994272793";
    let r = send(&client(), "GET", &lb.url("/"), &[("x-amzn-trace-id", inbound)]).await;
    assert_eq!(header(&r.body, "x-amzn-trace-id"), Some(inbound), "an incoming trace id is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xff_processing_modes() {
    let b = backends("xffmode", 1).await;
    let lb = Lb::up(&lb_yaml(
        &targets_yaml(&b, 8),
        "{ Key: routing.http.xff_client_port.enabled, Value: \"true\" }",
    ))
    .await;
    let r = get(&lb.url("/")).await;
    let xff = header(&r.body, "x-forwarded-for").unwrap();
    assert!(
        xff.starts_with("127.0.0.1:") && xff["127.0.0.1:".len()..].parse::<u16>().is_ok(),
        "{xff}"
    );

    let lb = Lb::up(
        &lb_yaml(
            &targets_yaml(&b, 8),
            "{ Key: routing.http.xff_header_processing.mode, Value: remove }",
        )
        .replace("Name: proxying", "Name: proxying2"),
    )
    .await;
    let r = send(&client(), "GET", &lb.url("/"), &[("x-forwarded-for", "1.2.3.4")]).await;
    assert_eq!(header(&r.body, "x-forwarded-for"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_connections_are_pooled_and_kept_alive() {
    let b = backends("pool", 1).await;
    let lb = Lb::up(&lb_yaml(&targets_yaml(&b, 8), "")).await;
    let c = client();
    for _ in 0..50 {
        assert_eq!(send(&c, "GET", &lb.url("/"), &[]).await.status, 200);
    }
    // Sequential requests reuse one pooled connection (health checks use their own).
    let conns = b[0].connections();
    assert_eq!(b[0].requests(), 50);
    assert!(conns <= 3, "{conns} connections for 50 sequential requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_zone_node_serves_the_listener() {
    let b = backends("zones", 1).await;
    let lb = Lb::up(&lb_yaml(&targets_yaml(&b, 8), "")).await;
    let addrs = lb.dp.listener_addrs(&lb.listener_arn()).await;
    let node = lb.state.load_balancers.values().next().unwrap().node_index;
    let want: Vec<SocketAddr> = vec![
        format!("127.0.1.{node}:{}", lb.port).parse().unwrap(),
        format!("127.0.2.{node}:{}", lb.port).parse().unwrap(),
        format!("127.0.3.{node}:{}", lb.port).parse().unwrap(),
        format!("127.0.0.1:{}", lb.port).parse().unwrap(),
    ];
    assert_eq!(addrs, want);
    for a in addrs {
        assert_eq!(get(&format!("http://{a}/")).await.backend(), "zones-1", "{a}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_changes_under_load_fail_no_request() {
    let b = backends("live", 3).await;
    let mut lb = Lb::up(&lb_yaml(&targets_yaml(&b[..2], 8), "")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), lb.url("/load"));
        workers.push(tokio::spawn(async move {
            let c = client();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
                let r = send(&c, "GET", &url, &[]).await;
                if r.status == 200 && r.backend().starts_with("live-") {
                    ok.fetch_add(1, Ordering::Relaxed)
                } else {
                    failed.fetch_add(1, Ordering::Relaxed)
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (l, tg) = (lb.listener_arn(), lb.tg_arn("proxying"));
    // A new rule takes effect for the very next request.
    lb.change(|s| {
        let fixed = Action {
            order: None,
            kind: ActionKind::FixedResponse(FixedResponseConfig {
                status_code: 200,
                content_type: None,
                message_body: Some("new rule".into()),
            }),
        };
        s.create_rule(&l, 1, vec![Condition::PathPattern(vec!["/new".into()])], vec![fixed])
            .unwrap();
    })
    .await;
    assert_eq!(get(&lb.url("/new")).await.body, "new rule");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Register a third target, then deregister the first, while the load runs.
    let third = TargetSpec {
        id: "127.0.0.1".into(),
        port: Some(b[2].addr.port()),
        availability_zone: None,
    };
    lb.change(|s| s.register_targets(&tg, &[third]).unwrap()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = TargetSpec {
        id: "127.0.0.1".into(),
        port: Some(b[0].addr.port()),
        availability_zone: None,
    };
    lb.change(|s| s.deregister_targets(&tg, &[first]).unwrap()).await;
    let at_deregistration = b[0].requests();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed during live changes");
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "the load actually ran: {}",
        ok.load(Ordering::Relaxed)
    );
    assert!(b[2].requests() > 0, "the new target received traffic");
    assert!(
        b[0].requests() <= at_deregistration + 4,
        "at most the in-flight requests reached the deregistered target"
    );
}
