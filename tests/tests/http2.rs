//! Weir's HTTP/2 server end to end, with the h2 crate as the client (so that frames, flow
//! control and resets are under the test's control): request and response bodies larger than
//! the flow-control windows, fields HTTP/2 forbids dropped from a target's response, CONNECT
//! refused, a stream the client resets abandoning its request (460), h2c whose preface
//! arrives in pieces on a listener with access logs on, and a connection still being told
//! h2c from HTTP/1.1 when its listener drains.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use weir_dataplane::DataplaneConfig;
use weir_tests::*;

/// An HTTP/2 client connection (prior knowledge) over `io`.
async fn h2_over<I>(io: I) -> h2::client::SendRequest<Bytes>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (c, conn) = h2::client::handshake(io).await.expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

async fn h2c(port: u16) -> h2::client::SendRequest<Bytes> {
    h2_over(TcpStream::connect(("127.0.0.1", port)).await.unwrap()).await
}

/// Sends `req` with `body` (if any) and reads the whole response, giving back window as it
/// goes.
async fn fetch(
    c: &h2::client::SendRequest<Bytes>,
    req: http::Request<()>,
    body: Option<Bytes>,
) -> Result<(http::response::Parts, Bytes), h2::Error> {
    tokio::time::timeout(Duration::from_secs(20), exchange(c, req, body))
        .await
        .expect("the exchange finished in time")
}

async fn exchange(
    c: &h2::client::SendRequest<Bytes>,
    req: http::Request<()>,
    body: Option<Bytes>,
) -> Result<(http::response::Parts, Bytes), h2::Error> {
    let mut c = c.clone().ready().await?;
    let (resp, mut tx) = c.send_request(req, body.is_none())?;
    if let Some(b) = body {
        tx.send_data(b, true)?;
    }
    let (parts, mut rx) = resp.await?.into_parts();
    let mut out = BytesMut::new();
    while let Some(chunk) = rx.data().await {
        let chunk = chunk?;
        let _ = rx.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    Ok((parts, out.freeze()))
}

fn get(port: u16, path: &str) -> http::Request<()> {
    http::Request::get(format!("http://127.0.0.1:{port}{path}")).body(()).unwrap()
}

/// The byte at offset `i` of the test's large bodies.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// A raw HTTP/1.1 target: `GET /big` answers 3 MiB of [`pattern`]; `POST /sum` reads the
/// request's `content-length` body and answers its length and whether every byte matched the
/// pattern; `GET /hop` answers a chunked body with every connection-specific field HTTP/1.1
/// knows.
async fn raw_target() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 65536];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 65536];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body: Vec<u8> = buf.drain(..head_end + len).skip(head_end).collect();
                    let answer: Vec<u8> = if head.starts_with("get /big ") {
                        let n = 3 << 20;
                        let mut a =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").into_bytes();
                        a.extend((0..n).map(pattern));
                        a
                    } else if head.starts_with("post /sum ") {
                        let ok = body.iter().enumerate().all(|(i, b)| *b == pattern(i));
                        let text = format!("{} {ok}", body.len());
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}", text.len())
                            .into_bytes()
                    } else {
                        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTransfer-Encoding: chunked\r\nX-Kept: yes\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"
                            .to_vec()
                    };
                    if s.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn raw_group(name: &str, port: u16, lb_props: &str) -> String {
    one_group(name, lb_props, "", &format!("        - {{ Id: 127.0.0.1, Port: {port} }}\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_larger_than_the_windows_pass_whole_both_ways() {
    let lb = Lb::up(&raw_group("h2-bodies", raw_target().await, "")).await;
    let c = h2c(lb.port).await;
    // 3 MiB down: three times the stream window the load balancer starts with on its side, and
    // far beyond the client's 64 KiB default, so both directions wait on WINDOW_UPDATEs.
    let (parts, body) = fetch(&c, get(lb.port, "/big"), None).await.unwrap();
    assert_eq!(parts.status, 200);
    assert_eq!(parts.version, http::Version::HTTP_2);
    assert_eq!(body.len(), 3 << 20);
    assert!(body.iter().enumerate().all(|(i, b)| *b == pattern(i)), "the body is intact");
    assert_eq!(parts.headers["content-length"], (3usize << 20).to_string().as_str());
    // 3 MiB up, beyond the 1 MiB windows the load balancer grants: the target gets all of it.
    let n = 3 << 20;
    let up = Bytes::from((0..n).map(pattern).collect::<Vec<u8>>());
    let req = http::Request::post(format!("http://127.0.0.1:{}/sum", lb.port))
        .header("content-length", n.to_string())
        .body(())
        .unwrap();
    let (parts, body) = fetch(&c, req, Some(up)).await.unwrap();
    assert_eq!(parts.status, 200);
    assert_eq!(&body[..], format!("{n} true").as_bytes());
    // Several streams at once on the one connection.
    let all = futures_util::future::join_all(
        (0..8).map(|_| fetch(&c, get(lb.port, "/big"), None)).collect::<Vec<_>>(),
    )
    .await;
    for r in all {
        assert_eq!(r.unwrap().1.len(), 3 << 20);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_http2_forbids_are_dropped_from_a_target_response() {
    let lb = Lb::up(&raw_group("h2-hop", raw_target().await, "")).await;
    let c = h2c(lb.port).await;
    // Twice on the one connection: the first response's fields did not break the stream or
    // the connection.
    for _ in 0..2 {
        let (parts, body) = fetch(&c, get(lb.port, "/hop"), None).await.unwrap();
        assert_eq!(parts.status, 200);
        assert_eq!(&body[..], b"hello world");
        let h = &parts.headers;
        for f in ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "x-private"]
        {
            assert!(!h.contains_key(f), "{f} reached an HTTP/2 client: {h:?}");
        }
        assert_eq!(h["x-kept"], "yes");
        assert!(h.contains_key("date"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_refused_and_a_reset_stream_abandons_its_request() {
    let b = backends("h2-reset", 1).await;
    let lb = Lb::up(&one_group("h2-reset", "", "", &targets_yaml(&b, 8))).await;
    let c = h2c(lb.port).await;
    // CONNECT: no tunnels over HTTP/2; the stream is refused, the connection stays.
    let connect =
        http::Request::builder().method("CONNECT").uri("example.com:443").body(()).unwrap();
    let e = fetch(&c, connect, None).await.expect_err("CONNECT refused");
    assert_eq!(e.reason(), Some(h2::Reason::REFUSED_STREAM), "{e}");
    // A request whose client resets its stream while the target works is abandoned: counted
    // as 460, and the connection goes on serving.
    let mut s = c.clone().ready().await.unwrap();
    let (resp, mut tx) = s.send_request(get(lb.port, "/slow?delay_ms=1500"), true).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send_reset(h2::Reason::CANCEL);
    drop(resp);
    let stats = lb.dp.listener_stats(&lb.listener_arn()).await.unwrap();
    let mut closed = 0;
    for _ in 0..50 {
        closed = stats.client_closed_460.load(Ordering::Relaxed);
        if closed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(closed, 1, "the reset request is counted as the client's (460)");
    let (parts, body) = fetch(&c, get(lb.port, "/after"), None).await.unwrap();
    assert_eq!(parts.status, 200);
    assert!(String::from_utf8_lossy(&body).contains("GET /after"));
}

/// A stream whose first `skip` written bytes are dropped (the test wrote them itself).
struct Skip {
    inner: TcpStream,
    skip: usize,
}

impl AsyncRead for Skip {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, b)
    }
}

impl AsyncWrite for Skip {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.skip > 0 {
            let n = self.skip.min(b.len());
            self.skip -= n;
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut self.inner).poll_write(cx, b)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_preface_in_pieces_is_recognised_with_access_logs_on() {
    let dir = TempDir::new("h2c-logs");
    let b = backends("h2c-logs", 1).await;
    let lb_attrs = attributes(
        "LoadBalancerAttributes",
        &[("access_logs.s3.enabled", "true"), ("access_logs.s3.bucket", "b")],
    );
    let config = DataplaneConfig { access_log_dir: dir.0.clone(), ..Default::default() };
    let lb = Lb::up_with(&one_group("h2c-logs", &lb_attrs, "", &targets_yaml(&b, 8)), config).await;
    // The preface in three writes, a pause between each: the load balancer must wait for all
    // of it before deciding the connection is HTTP/2.
    let mut tcp = TcpStream::connect(("127.0.0.1", lb.port)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    for part in [&preface[..3], &preface[3..16], &preface[16..]] {
        tcp.write_all(part).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = h2_over(Skip { inner: tcp, skip: preface.len() }).await;
    let (parts, body) = fetch(&c, get(lb.port, "/pieces"), None).await.unwrap();
    assert_eq!(parts.status, 200);
    assert!(String::from_utf8_lossy(&body).contains("GET /pieces"));
    // An HTTP/1.1 request on the same listener is still HTTP/1.1.
    assert_eq!(get_http1(&lb.url("/one")).await, 200);
    lb.dp.flush_access_logs().await;
    let lines = weir_l7::access_log::read_all(&dir.0).unwrap();
    let rows: Vec<Vec<String>> = lines.iter().map(|l| weir_l7::access_log::parse_line(l)).collect();
    let h2 = rows.iter().find(|r| r[12].contains("/pieces")).expect("the h2c request is logged");
    assert_eq!(h2[12], format!("GET http://127.0.0.1:{}/pieces HTTP/2.0", lb.port));
    assert_eq!((h2[8].as_str(), h2[9].as_str()), ("200", "200"));
    let h1 = rows.iter().find(|r| r[12].contains("/one")).expect("the HTTP/1.1 request is logged");
    assert!(h1[12].ends_with("HTTP/1.1"), "{h1:?}");
}

async fn get_http1(url: &str) -> u16 {
    weir_tests::get(url).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_waiting_for_its_first_bytes_when_the_listener_drains_is_still_answered() {
    // Access logs on: every connection goes straight to telling h2c from HTTP/1.1.
    let dir = TempDir::new("sniff-drain");
    let b = backends("sniff-drain", 1).await;
    let lb_attrs = attributes(
        "LoadBalancerAttributes",
        &[("access_logs.s3.enabled", "true"), ("access_logs.s3.bucket", "b")],
    );
    let config = DataplaneConfig { access_log_dir: dir.0.clone(), ..Default::default() };
    let lb =
        Lb::up_with(&one_group("sniff-drain", &lb_attrs, "", &targets_yaml(&b, 8)), config).await;
    let mut quiet = TcpStream::connect(lb.addr()).await.unwrap();
    let mut late = TcpStream::connect(lb.addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The listener is removed (it drains) while both connections wait for their first bytes.
    let mut state = lb.state.clone();
    state.delete_listener(&lb.listener_arn()).unwrap();
    let dp = lb.dp.clone();
    tokio::spawn(async move { dp.apply(&state).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A request that arrives just after gets an answer (not a reset), then the connection
    // closes. (The listener is gone, so the answer is ALB's 503 for a listener without
    // targets; in a binary upgrade the same connection is served by the old process.)
    late.write_all(b"GET /late HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), late.read_to_end(&mut out))
        .await
        .expect("closed after its answer")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 "), "no answer: {text:?}");
    // The one that stays quiet is closed without an answer, soon.
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), quiet.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the quiet connection was left open");
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
}
