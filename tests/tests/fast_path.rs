//! The HTTP/1.1 fast path (`weir_l7::proxy::fast`) against a scripted target that answers in
//! every framing HTTP/1.1 has: pipelined requests answered in order over one reused target
//! connection, chunked bodies passed through with their trailers, close-delimited bodies,
//! interim 100 responses, HEAD and 204, a target closing its keep-alive connection (retried on
//! a new one), a truncated body (the client connection closes rather than end it cleanly), and
//! requests outside the fast path handed to the general path mid-connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use weir_tests::*;

/// What the scripted target saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    heads: Mutex<Vec<String>>,
}

/// A target answering by path (see the match below), recording connections and request heads.
async fn scripted() -> (u16, Arc<Seen>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let s2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            s2.connections.fetch_add(1, Ordering::SeqCst);
            let seen = s2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_string)
                        })
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < end + length {
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    }
                    buf.drain(..end + length);
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    seen.heads.lock().unwrap().push(head);
                    let (answer, close): (Vec<u8>, bool) = match path.as_str() {
                        "/chunked" => (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n".to_vec(), false),
                        "/close" => (b"HTTP/1.1 200 OK\r\nX-Up: 1\r\n\r\nuntil close".to_vec(), true),
                        "/continue" => (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), false),
                        "/hangup" => (b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhangup".to_vec(), true),
                        "/head" => (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec(), false),
                        "/204" => (b"HTTP/1.1 204 No Content\r\nX-Up: 1\r\n\r\n".to_vec(), false),
                        "/short" => (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec(), true),
                        p => (format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nKeep-Alive: timeout=60\r\nConnection: keep-alive\r\n\r\n{p}", p.len()).into_bytes(), false),
                    };
                    if s.write_all(&answer).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

fn template(port: u16) -> String {
    one_group(
        "fastpath",
        "",
        "      HealthCheckEnabled: false",
        &format!("        - {{ Id: 127.0.0.1, Port: {port} }}\n"),
    )
}

/// Writes `bytes` on a new connection and reads until the load balancer closes it.
async fn exchange(lb: SocketAddr, bytes: &[u8]) -> String {
    let s = raw(lb, bytes, Duration::from_secs(5)).await;
    assert!(!s.is_empty(), "no answer to {:?}", String::from_utf8_lossy(bytes));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_share_one_target_connection_and_keep_their_order() {
    let (port, seen) = scripted().await;
    let lb = Lb::up(&template(port)).await;
    let out = exchange(
        lb.addr(),
        b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.1\r\n\r\nGET /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    let bodies: Vec<usize> = ["\r\n\r\n/a", "\r\n\r\n/b", "\r\n\r\n/c"]
        .iter()
        .map(|b| out.find(b).unwrap_or_else(|| panic!("{b:?} missing from {out}")))
        .collect();
    assert!(bodies.windows(2).all(|w| w[0] < w[1]), "answered out of order: {out}");
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3, "{out}");
    // The target's hop-by-hop fields stay with the target.
    assert!(!out.contains("Keep-Alive"), "{out}");
    assert!(out.ends_with("/c"), "{out}");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1, "one pooled target connection");
    let heads = seen.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 3);
    let host = format!("Host: a:{}\r\n", lb.port);
    assert!(heads.iter().all(|h| h.contains(&host)), "{heads:?}");
    assert!(heads[0].contains("X-Forwarded-For: 127.0.0.1\r\n"), "{}", heads[0]);
    assert!(heads[1].contains("X-Forwarded-For: 192.0.2.1, 127.0.0.1\r\n"), "{}", heads[1]);
    assert!(heads.iter().all(|h| h.contains("X-Amzn-Trace-Id: Root=1-")), "{heads:?}");
    assert!(!heads[2].to_ascii_lowercase().contains("connection:"), "hop-by-hop: {}", heads[2]);

    // A new client connection reuses the pooled target connection too.
    assert_eq!(get(&lb.url("/d")).await.body, "/d");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_framing_reaches_the_client_intact() {
    let (port, _seen) = scripted().await;
    let lb = Lb::up(&template(port)).await;
    let out =
        exchange(lb.addr(), b"GET /chunked HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("Transfer-Encoding: chunked\r\n"), "{out}");
    assert!(
        out.ends_with("\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"),
        "chunks and trailers pass through: {out}"
    );
    let c = client();
    let r = send(&c, "GET", &lb.url("/chunked"), &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "hello world"));

    let out = exchange(lb.addr(), b"GET /close HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(out.contains("Connection: close\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\nuntil close"), "{out}");

    let r = send(&c, "GET", &lb.url("/continue"), &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"), "the interim 100 is not passed on");

    let r = send(&c, "HEAD", &lb.url("/head"), &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert_eq!(r.headers["content-length"], "1000");
    let r = send(&c, "GET", &lb.url("/204"), &[]).await;
    assert_eq!((r.status, r.headers["x-up"].to_str().unwrap()), (204, "1"));
    // The same pooled client connection still works after the bodiless answers.
    assert_eq!(send(&c, "GET", &lb.url("/after"), &[]).await.body, "/after");

    // A body cut short by the target: the client sees its connection close, never a complete
    // response.
    let out = exchange(lb.addr(), b"GET /short HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n") && out.ends_with("\r\n\r\nabc"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_closing_its_keep_alive_connection_costs_no_request() {
    let (port, seen) = scripted().await;
    let lb = Lb::up(&template(port)).await;
    let c = client();
    for i in 0..20 {
        let r = send(&c, "GET", &lb.url("/hangup"), &[]).await;
        assert_eq!((r.status, r.body.as_str()), (200, "hangup"), "request {i}");
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 20, "a new target connection each time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_outside_the_fast_path_continue_on_the_general_path() {
    let b = backends("fallback", 1).await;
    let lb = Lb::up(&one_group("fallback", "", "", &targets_yaml(&b, 8))).await;
    // A plain GET (fast path), a chunked POST (general path, with the bytes already read), and
    // a GET after it, all on one connection.
    let out = exchange(
        lb.addr(),
        b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nPOST /two HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    let at = |s: &str| out.find(s).unwrap_or_else(|| panic!("{s:?} missing from {out}"));
    assert!(at("GET /one") < at("POST /two") && at("POST /two") < at("GET /three"), "{out}");
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3, "{out}");
    assert_eq!(b[0].requests(), 3);
    // Malformed requests still get the general path's answers.
    let out = exchange(
        lb.addr(),
        b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
    )
    .await;
    assert!(out.contains("GET /ok") && out.contains("HTTP/1.1 400"), "{out}");
}
