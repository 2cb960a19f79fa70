//! ALB access logs from real traffic: one entry per request in ALB's field order, in gzip files
//! laid out as ELB names its S3 objects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use weir_dataplane::DataplaneConfig;
use weir_l7::access_log::{parse_line, read_all, FIELDS};
use weir_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_match_the_requests_sent() {
    let dir = TempDir::new("access-logs");
    let b = backends("log", 1).await;
    let lb_attrs = attributes(
        "LoadBalancerAttributes",
        &[
            ("access_logs.s3.enabled", "true"),
            ("access_logs.s3.bucket", "my-bucket"),
            ("access_logs.s3.prefix", "team/app"),
        ],
    );
    let config = DataplaneConfig { access_log_dir: dir.0.clone(), ..Default::default() };
    let lb = Lb::up_with(&one_group("logged", &lb_attrs, "", &targets_yaml(&b, 8)), config).await;
    let c = client();
    send(&c, "GET", &lb.url("/a?x=1"), &[("user-agent", "log-test/1.0")]).await;
    send(&c, "GET", &lb.url("/b?status=503"), &[]).await;
    send(
        &c,
        "POST",
        &lb.url("/c"),
        &[("x-amzn-trace-id", "Root=1-00000000-000000000000000000000001")],
    )
    .await;
    lb.dp.flush_access_logs().await;

    let root = dir.0.join("my-bucket/team/app/AWSLogs/123456789012/elasticloadbalancing/us-east-1");
    assert!(root.is_dir(), "{}", root.display());
    let lines = read_all(&dir.0).unwrap();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let lb_model = lb.state.load_balancers.values().next().unwrap();
    let tg_arn = lb.tg_arn("logged");
    let rows: Vec<Vec<String>> = lines.iter().map(|l| parse_line(l)).collect();
    for r in &rows {
        assert_eq!(r.len(), FIELDS.len(), "{r:?}");
        assert_eq!(r[0], "http");
        assert_eq!(r[2], lb_model.full_name());
        assert!(r[3].starts_with("127.0.0.1:"));
        assert_eq!(r[4], b[0].addr.to_string());
        for i in 5..8 {
            let t: f64 = r[i].parse().unwrap();
            assert!((0.0..5.0).contains(&t), "{} = {t}", FIELDS[i]);
        }
        assert!(r[10].parse::<u64>().unwrap() > 20, "received_bytes {r:?}");
        assert!(r[11].parse::<u64>().unwrap() > 50, "sent_bytes {r:?}");
        assert_eq!(r[16], tg_arn);
        assert!(r[17].starts_with("Root=1-"), "{r:?}");
        assert_eq!(r[20], "0", "default rule");
        assert_eq!(r[22], "forward");
        assert_eq!(r[25], r[4]);
        assert_eq!(r[26], r[9]);
    }
    let find = |path: &str| rows.iter().find(|r| r[12].contains(path)).unwrap();
    let a = find("/a?x=1");
    assert_eq!(a[12], format!("GET http://127.0.0.1:{}/a?x=1 HTTP/1.1", lb.port));
    assert_eq!(a[13], "log-test/1.0");
    assert_eq!((a[8].as_str(), a[9].as_str()), ("200", "200"));
    let b503 = find("/b?status=503");
    assert_eq!((b503[8].as_str(), b503[9].as_str()), ("503", "503"));
    let c = find("POST");
    assert_eq!(c[17], "Root=1-00000000-000000000000000000000001");
    // The sent bytes count the body the client got: the demo body names the backend.
    let body_len = send(&client(), "GET", &lb.url("/a?x=1"), &[]).await.body.len() as u64;
    assert!(a[11].parse::<u64>().unwrap() > body_len);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_client_abandons_is_logged_as_460() {
    use std::sync::atomic::Ordering;
    use tokio::io::AsyncWriteExt;
    let dir = TempDir::new("access-logs-460");
    let b = backends("slow", 1).await;
    b[0].set_delay_ms(1500);
    let lb_attrs = attributes("LoadBalancerAttributes", &[("access_logs.s3.enabled", "true")]);
    let config = DataplaneConfig { access_log_dir: dir.0.clone(), ..Default::default() };
    let lb = Lb::up_with(&one_group("slow", &lb_attrs, "", &targets_yaml(&b, 8)), config).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", lb.port)).await.unwrap();
    s.write_all(b"GET /abandoned HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(s);
    let stats = lb.dp.listener_stats(&lb.listener_arn()).await.unwrap();
    for _ in 0..100 {
        if stats.client_closed_460.load(Ordering::Relaxed) > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    lb.dp.flush_access_logs().await;
    let lines = read_all(&dir.0).unwrap();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let r = parse_line(&lines[0]);
    assert_eq!(r.len(), FIELDS.len(), "{r:?}");
    assert_eq!(r[8], "460", "elb_status_code {r:?}");
    assert_eq!(r[9], "-", "no target status {r:?}");
    assert_eq!((r[6].as_str(), r[7].as_str()), ("-1", "-1"));
    let waited: f64 = r[5].parse().unwrap();
    assert!((0.2..1.5).contains(&waited), "request_processing_time {waited}");
    assert!(r[12].contains("/abandoned"), "{r:?}");
}
