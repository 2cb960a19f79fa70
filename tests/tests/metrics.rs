//! CloudWatch metrics collected from real traffic: counts match what was sent, per load
//! balancer and per target group, with response times, host counts and NLB flows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use weir_telemetry::{MetricId, Registry, ALB, NLB};
use weir_tests::*;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn total(r: &Registry, id: &MetricId, stat: &str) -> f64 {
    let t = now();
    r.statistics(id, t - 3600, t + 3600, 60).iter().map(|(_, s)| s.get(stat).unwrap()).sum()
}

#[tokio::test]
async fn alb_counts_match_the_requests_sent() {
    let b = backends("m", 2).await;
    let lb = Lb::up(&one_group("metrics", "", "", &targets_yaml(&b, 8))).await;
    let c = client();
    for _ in 0..10 {
        assert_eq!(send(&c, "GET", &lb.url("/"), &[]).await.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(send(&c, "GET", &lb.url("/?status=503"), &[]).await.status, 503);
    }
    let r = Registry::default();
    lb.dp.collect_metrics(&r, now()).await;
    let lb_name = lb.state.load_balancers.values().next().unwrap().full_name();
    let tg_name = lb.state.target_groups.values().next().unwrap().full_name();
    let on_lb = |n: &str| MetricId::new(ALB, n, &[("LoadBalancer", &lb_name)]);
    let on_tg =
        |n: &str| MetricId::new(ALB, n, &[("LoadBalancer", &lb_name), ("TargetGroup", &tg_name)]);
    assert_eq!(total(&r, &on_lb("RequestCount"), "Sum"), 12.0);
    assert_eq!(total(&r, &on_lb("HTTPCode_Target_2XX_Count"), "Sum"), 10.0);
    assert_eq!(total(&r, &on_lb("HTTPCode_Target_5XX_Count"), "Sum"), 2.0);
    assert_eq!(total(&r, &on_tg("RequestCount"), "Sum"), 12.0);
    assert_eq!(total(&r, &on_tg("HTTPCode_Target_5XX_Count"), "Sum"), 2.0);
    assert_eq!(total(&r, &on_tg("TargetResponseTime"), "SampleCount"), 12.0);
    let rt = total(&r, &on_tg("TargetResponseTime"), "Average");
    assert!(rt > 0.0 && rt < 1.0, "response time {rt} s");
    // Two targets: 6 requests per target (the targets are still in their initial checks, so
    // all registered targets count).
    let per = MetricId::new(ALB, "RequestCountPerTarget", &[("TargetGroup", &tg_name)]);
    assert_eq!(total(&r, &per, "Sum"), 6.0);
    assert!(total(&r, &on_lb("NewConnectionCount"), "Sum") >= 1.0);
    let hosts = on_tg("UnHealthyHostCount");
    assert_eq!(r.statistics(&hosts, now() - 60, now() + 60, 60).len(), 1);
    let zone = MetricId::new(
        ALB,
        "HealthyHostCount",
        &[
            ("LoadBalancer", &lb_name),
            ("TargetGroup", &tg_name),
            ("AvailabilityZone", "us-east-1a"),
        ],
    );
    assert_eq!(r.statistics(&zone, now() - 60, now() + 60, 60).len(), 1);

    // A second collection adds only what happened since the first.
    for _ in 0..3 {
        send(&c, "GET", &lb.url("/"), &[]).await;
    }
    lb.dp.collect_metrics(&r, now()).await;
    assert_eq!(total(&r, &on_lb("RequestCount"), "Sum"), 15.0);
    assert_eq!(total(&r, &on_tg("RequestCount"), "Sum"), 15.0);
    let text = r.prometheus();
    assert!(
        text.contains(&format!(
            "RequestCount{{namespace=\"AWS/ApplicationELB\",LoadBalancer=\"{lb_name}\"}} 15\n"
        )),
        "{text}"
    );

    // ProcessedBytes counts every byte read from and written to clients: one raw exchange adds
    // exactly its request and response.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let before = total(&r, &on_lb("ProcessedBytes"), "Sum");
    assert!(before > 0.0);
    let req = b"GET /bytes HTTP/1.1\r\nHost: metrics.test\r\nConnection: close\r\n\r\n";
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", lb.port)).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    assert!(resp.starts_with(b"HTTP/1.1 200"));
    lb.dp.collect_metrics(&r, now()).await;
    let after = total(&r, &on_lb("ProcessedBytes"), "Sum");
    assert_eq!(after - before, (req.len() + resp.len()) as f64);
}

#[tokio::test]
async fn nlb_flows_and_bytes_are_counted() {
    let b = [tcp_backend("f", "127.0.0.1", false).await];
    let lb = Lb::up(&nlb_template("TCP", "", "TCP", "", "", &b)).await;
    for i in 0..5 {
        let mut c = LineClient::connect(lb.addr(), None).await.unwrap();
        assert_eq!(c.echo(&format!("m{i}")).await.unwrap(), format!("m{i}"));
    }
    // Bytes are counted as connections close: wait until all have.
    let stats = lb.dp.l4_stats(&lb.listener_arn()).await.unwrap();
    for _ in 0..100 {
        if weir_l4::L4Stats::get(&stats.active_flows_tcp) == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let r = Registry::default();
    lb.dp.collect_metrics(&r, now()).await;
    let name = lb.state.load_balancers.values().next().unwrap().full_name();
    assert!(name.starts_with("net/nlb/"), "{name}");
    let id = |n: &str| MetricId::new(NLB, n, &[("LoadBalancer", &name)]);
    assert_eq!(total(&r, &id("NewFlowCount_TCP"), "Sum"), 5.0);
    assert_eq!(total(&r, &id("NewFlowCount"), "Sum"), 5.0);
    // Each connection: a greeting line and one echo both ways.
    assert!(total(&r, &id("ProcessedBytes_TCP"), "Sum") >= 5.0 * (3.0 * 2.0 + 10.0));
    assert_eq!(total(&r, &id("ActiveFlowCount"), "Maximum"), 0.0);
    assert_eq!(r.unit(&id("ProcessedBytes")).as_deref(), Some("Bytes"));
}
