//! The HTTP/1.1 fast path (`weir_l7::proxy::fast`) against a scripted target that answers in
//! every framing HTTP/1.1 has: pipelined requests answered in order over one reused target
//! connection, chunked bodies passed through with their trailers, close-delimited bodies,
//! interim 100 responses, HEAD and 204, a target closing its keep-alive connection (retried on
//! a new one), a truncated body (the client connection closes rather than end it cleanly), and
//! requests outside the fast path handed to the general path mid-connection. HTTP/2 clients'
//! requests to the same target go over the same pool (`weir_l7::proxy::pooled`): every framing
//! again, trailers, streams in parallel, and a truncated body reset rather than ended.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use weir_tests::*;

/// The length of the scripted target's `/big` body (several reads long).
const BIG: usize = 300_000;

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
                        "/big" => {
                            let mut a = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n").into_bytes();
                            a.extend((0..BIG).map(|i| b'a' + (i % 26) as u8));
                            (a, false)
                        }
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

/// An HTTP/2 (prior knowledge) client connection to the load balancer.
async fn h2(lb: SocketAddr) -> H2Sender {
    h2_client(tokio::net::TcpStream::connect(lb).await.unwrap()).await
}

/// A response over HTTP/2: status, fields, body and trailers (`Err` when the body failed).
type H2Answer = (u16, http::HeaderMap, Result<(bytes::Bytes, Option<http::HeaderMap>), String>);

async fn h2_request(c: &mut H2Sender, method: &str, path: &str) -> H2Answer {
    use http_body_util::BodyExt;
    c.ready().await.unwrap();
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://a{path}"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let r = c.send_request(req).await.unwrap();
    assert_eq!(r.version(), http::Version::HTTP_2);
    let (parts, body) = r.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| (c.trailers().cloned(), c.to_bytes()))
        .map(|(t, b)| (b, t))
        .map_err(|e| e.to_string());
    (parts.status.as_u16(), parts.headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_use_the_target_pool_in_every_framing() {
    let (port, seen) = scripted().await;
    let lb = Lb::up(&template(port)).await;
    let mut c = h2(lb.addr()).await;
    for p in ["/a", "/b", "/c"] {
        let (status, _, body) = h2_request(&mut c, "GET", p).await;
        assert_eq!((status, &body.unwrap().0[..]), (200, p.as_bytes()));
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1, "one pooled target connection");
    let heads = seen.heads.lock().unwrap().clone();
    let host = format!("host: a:{}\r\n", lb.port);
    assert!(
        heads.iter().all(|h| h.starts_with("GET /") && h.contains(" HTTP/1.1\r\n")),
        "{heads:?}"
    );
    assert!(heads.iter().all(|h| h.to_ascii_lowercase().contains(&host)), "{heads:?}");
    assert!(heads.iter().all(|h| h.contains("x-forwarded-for: 127.0.0.1\r\n")), "{heads:?}");
    assert!(heads.iter().all(|h| h.contains("x-forwarded-proto: http\r\n")), "{heads:?}");
    let fwd_port = format!("x-forwarded-port: {}\r\n", lb.port);
    assert!(heads.iter().all(|h| h.contains(&fwd_port)), "{heads:?}");
    assert!(heads.iter().all(|h| h.contains("x-amzn-trace-id: Root=1-")), "{heads:?}");

    // Chunked: decoded into DATA frames, the trailer field passed on as HTTP/2 trailers, the
    // hop-by-hop fields left behind.
    let (status, fields, body) = h2_request(&mut c, "GET", "/chunked").await;
    let (data, trailers) = body.unwrap();
    assert_eq!((status, &data[..]), (200, &b"hello world"[..]));
    assert_eq!(fields["x-up"], "1");
    assert!(!fields.contains_key("transfer-encoding"), "{fields:?}");
    assert_eq!(trailers.expect("trailers")["x-trailer"], "t");

    // Larger than one read: streamed as it comes, whole.
    let (status, fields, body) = h2_request(&mut c, "GET", "/big").await;
    let data = body.unwrap().0;
    assert_eq!((status, data.len()), (200, BIG));
    assert_eq!(fields["content-length"], BIG.to_string().as_str());
    assert!(data.iter().enumerate().all(|(i, b)| *b == b'a' + (i % 26) as u8));

    let (status, _, body) = h2_request(&mut c, "GET", "/close").await;
    assert_eq!((status, &body.unwrap().0[..]), (200, &b"until close"[..]));
    let (status, _, body) = h2_request(&mut c, "GET", "/continue").await;
    assert_eq!((status, &body.unwrap().0[..]), (200, &b"ok"[..]), "the interim 100 is skipped");
    let (status, fields, body) = h2_request(&mut c, "HEAD", "/head").await;
    assert_eq!((status, body.unwrap().0.len()), (200, 0));
    assert_eq!(fields["content-length"], "1000");
    let (status, fields, _) = h2_request(&mut c, "GET", "/204").await;
    assert_eq!((status, fields["x-up"].to_str().unwrap()), (204, "1"));

    // A target closing its keep-alive connection after each answer costs no request.
    for i in 0..10 {
        let (status, _, body) = h2_request(&mut c, "GET", "/hangup").await;
        assert_eq!((status, &body.unwrap().0[..]), (200, &b"hangup"[..]), "request {i}");
    }

    // A body cut short by the target: the stream is reset, it never ends cleanly.
    c.ready().await.unwrap();
    let req = http::Request::get("http://a/short").body(http_body_util::Empty::new()).unwrap();
    match c.send_request(req).await {
        Ok(r) => {
            let body = http_body_util::BodyExt::collect(r.into_body()).await;
            assert!(body.is_err(), "a truncated body must not look complete");
        }
        Err(e) => assert!(format!("{e:?}").contains("Reset"), "{e:?}"),
    }

    // The connection still serves, and many streams at once each get their own answer.
    let mut tasks = Vec::new();
    for i in 0..64 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            let p = format!("/parallel/{i}");
            let (status, _, body) = h2_request(&mut c, "GET", &p).await;
            assert_eq!((status, &body.unwrap().0[..]), (200, p.as_bytes()));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_answered_by_the_load_balancer_when_targets_fail() {
    // No target listening: the connection error is a 502 and counted.
    let dead = free_port();
    let lb = Lb::up(&template(dead)).await;
    let mut c = h2(lb.addr()).await;
    let (status, _, _) = h2_request(&mut c, "GET", "/x").await;
    assert_eq!(status, 502);
    // A target that answers garbage: 502 too.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut b = [0u8; 1024];
                let _ = s.read(&mut b).await;
                let _ = s.write_all(b"SSH-2.0-OpenSSH\r\n").await;
            });
        }
    });
    let lb = Lb::up(&template(port)).await;
    let mut c = h2(lb.addr()).await;
    let (status, _, _) = h2_request(&mut c, "GET", "/x").await;
    assert_eq!(status, 502);
}
