//! Every status the load balancer generates itself: 502 (refused, reset, invalid response), 503
//! (no targets), 504 (target timeout), 400 (malformed, missing Host), 431 (huge head), 463 (too
//! many X-Forwarded-For addresses), 408 (a request head that stalls), 460 (client closed
//! first, counted), and desync mitigation per mode.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use weir_tests::*;

fn single_target(port: u16, lb_attrs: &str, tg_props: &str) -> String {
    let lb = if lb_attrs.is_empty() {
        String::new()
    } else {
        format!("      LoadBalancerAttributes: [{lb_attrs}]")
    };
    let targets = format!("        - {{ Id: 127.0.0.1, Port: {port} }}\n");
    one_group("errors", &lb, &format!("      HealthCheckEnabled: false\n{tg_props}"), &targets)
}

/// A server that reads a request head, then does `then` with the connection.
async fn misbehaving(then: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                match then {
                    "reset" => {
                        #[allow(deprecated)] // linger 0 makes drop send RST at once; nothing blocks
                        let _ = s.set_linger(Some(Duration::ZERO));
                        drop(s);
                    }
                    "garbage" => {
                        let _ = s.write_all(b"this is not http\r\n\r\n").await;
                    }
                    _ => {}
                }
            });
        }
    });
    port
}

fn lb_addr(lb: &Lb) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], lb.port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_reset_and_invalid_targets_are_502() {
    let closed = free_port();
    let lb = Lb::up(&single_target(closed, "", "")).await;
    let r = get(&lb.url("/")).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.headers["server"], "awselb/2.0");
    assert!(r.body.contains("502 Bad Gateway"));
    let stats = lb.dp.listener_stats(&lb.listener_arn()).await.unwrap();
    assert_eq!(stats.target_connection_errors.load(Ordering::Relaxed), 1);
    assert_eq!(stats.elb_502.load(Ordering::Relaxed), 1);

    for mode in ["reset", "garbage"] {
        let port = misbehaving(mode).await;
        let lb = Lb::up(&single_target(port, "", "")).await;
        assert_eq!(get(&lb.url("/")).await.status, 502, "{mode}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_target_is_504_after_idle_timeout() {
    let b = backends("slow", 1).await;
    b[0].set_delay_ms(5000);
    let lb = Lb::up(&single_target(
        b[0].addr.port(),
        "{ Key: idle_timeout.timeout_seconds, Value: \"1\" }",
        "",
    ))
    .await;
    let started = std::time::Instant::now();
    let r = get(&lb.url("/")).await;
    assert_eq!(r.status, 504);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "{took:?}");
    assert_eq!(
        lb.dp.listener_stats(&lb.listener_arn()).await.unwrap().elb_504.load(Ordering::Relaxed),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_registered_targets_is_503() {
    let yaml = one_group("no-targets", "", "      HealthCheckEnabled: false", "        []");
    let lb = Lb::up(&yaml).await;
    let r = get(&lb.url("/")).await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("503 Service Temporarily Unavailable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_400_and_huge_heads_431() {
    let b = backends("ok", 1).await;
    let lb = Lb::up(&single_target(b[0].addr.port(), "", "")).await;
    let addr = lb_addr(&lb);
    let t = Duration::from_secs(3);
    assert_eq!(raw_status(&raw(addr, b"THIS IS NOT HTTP\r\n\r\n", t).await), 400);
    assert_eq!(raw_status(&raw(addr, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", t).await), 400);
    assert_eq!(
        raw_status(&raw(addr, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", t).await),
        400,
        "HTTP/1.1 without Host"
    );
    let long_header =
        format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "a".repeat(17 * 1024));
    assert_eq!(
        raw_status(&raw(addr, long_header.as_bytes(), t).await),
        400,
        "one header over 16 KiB"
    );
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(17 * 1024));
    assert_eq!(
        raw_status(&raw(addr, long_line.as_bytes(), t).await),
        400,
        "request line over 16 KiB"
    );
    let many: String = (0..10).map(|i| format!("X-H{i}: {}\r\n", "b".repeat(8 * 1024))).collect();
    let huge = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
    assert_eq!(raw_status(&raw(addr, huge.as_bytes(), t).await), 431, "whole head over 64 KiB");
    assert_eq!(b[0].requests(), 0, "nothing malformed reaches the target");
    assert_eq!(
        raw_status(&raw(addr, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", t).await),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_30_forwarded_addresses_is_463() {
    let b = backends("xff", 1).await;
    let lb = Lb::up(&single_target(b[0].addr.port(), "", "")).await;
    let thirty: Vec<String> = (0..30).map(|i| format!("10.0.0.{i}")).collect();
    let ok = send(&client(), "GET", &lb.url("/"), &[("x-forwarded-for", &thirty.join(", "))]).await;
    assert_eq!(ok.status, 200);
    let mut many = thirty.clone();
    many.push("10.0.1.1".into());
    let r = send(&client(), "GET", &lb.url("/"), &[("x-forwarded-for", &many.join(","))]).await;
    assert_eq!(r.status, 463);
    assert_eq!(b[0].requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_closing_first_is_counted_as_460() {
    let b = backends("abandoned", 1).await;
    b[0].set_delay_ms(1500);
    let lb = Lb::up(&single_target(b[0].addr.port(), "", "")).await;
    let mut s = tokio::net::TcpStream::connect(lb_addr(&lb)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(s);
    let stats = lb.dp.listener_stats(&lb.listener_arn()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while stats.client_closed_460.load(Ordering::Relaxed) == 0
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stats.client_closed_460.load(Ordering::Relaxed), 1);
    assert_eq!(stats.elb_5xx.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_request_head_is_408_and_idle_connection_closes_silently() {
    let b = backends("slowc", 1).await;
    let attrs = "{ Key: idle_timeout.timeout_seconds, Value: \"1\" }";
    let lb = Lb::up(&single_target(b[0].addr.port(), attrs, "")).await;
    let addr = lb_addr(&lb);
    let t = Duration::from_secs(4);
    let started = std::time::Instant::now();
    let r = raw(addr, b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ", t).await;
    assert_eq!(raw_status(&r), 408, "{r}");
    assert!(r.contains("Connection: close") && r.contains("408 Request Timeout"), "{r}");
    assert!(started.elapsed() < Duration::from_secs(3), "answered at the idle timeout");
    let started = std::time::Instant::now();
    assert_eq!(raw(addr, b"", t).await, "", "an idle connection gets no response");
    assert!(started.elapsed() < Duration::from_secs(3), "and is closed at the idle timeout");
    assert_eq!(b[0].requests(), 0);
    let stats = lb.dp.listener_stats(&lb.listener_arn()).await.unwrap();
    assert_eq!(stats.elb_4xx.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desync_mitigation_modes() {
    let b = backends("desync", 1).await;
    let t = Duration::from_secs(3);
    // Content-Length beside Transfer-Encoding: ambiguous.
    let both = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    // Bare LF line ends: acceptable (not compliant, no desync risk).
    let bare_lf = b"GET / HTTP/1.1\nHost: a\nConnection: close\n\n";
    let ok = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let mode = |m: &str| format!("{{ Key: routing.http.desync_mitigation_mode, Value: {m} }}");

    let lb = Lb::up(&single_target(b[0].addr.port(), "", "")).await;
    let addr = lb_addr(&lb);
    let r = raw(addr, both, t).await;
    assert_eq!(raw_status(&r), 200, "defensive forwards ambiguous requests: {r}");
    assert!(r.to_ascii_lowercase().contains("connection: close"), "and closes the connection: {r}");
    assert_eq!(raw_status(&raw(addr, bare_lf, t).await), 200, "acceptable is forwarded");
    let stats = lb.dp.listener_stats(&lb.listener_arn()).await.unwrap();
    assert_eq!(stats.desync_non_compliant.load(Ordering::Relaxed), 2);

    let lb = Lb::up(&single_target(b[0].addr.port(), &mode("strictest"), "")).await;
    let addr = lb_addr(&lb);
    let before = b[0].requests();
    assert_eq!(raw_status(&raw(addr, both, t).await), 400, "strictest blocks ambiguous");
    assert_eq!(raw_status(&raw(addr, bare_lf, t).await), 400, "strictest blocks acceptable");
    assert_eq!(b[0].requests(), before, "nothing blocked reaches the target");
    assert_eq!(raw_status(&raw(addr, ok, t).await), 200, "compliant passes");

    let lb = Lb::up(&single_target(b[0].addr.port(), &mode("monitor"), "")).await;
    let addr = lb_addr(&lb);
    assert_eq!(raw_status(&raw(addr, both, t).await), 200, "monitor forwards everything");
    assert_eq!(raw_status(&raw(addr, bare_lf, t).await), 200);
    let stats = lb.dp.listener_stats(&lb.listener_arn()).await.unwrap();
    assert_eq!(stats.desync_non_compliant.load(Ordering::Relaxed), 2, "but still counts them");
}
