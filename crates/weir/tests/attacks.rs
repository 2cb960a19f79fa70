//! The attack suite: a live `weir up` (an ALB with HTTP and HTTPS listeners, template
//! `tests/attacks/edge.yaml`) on loopback in front of a recording backend, attacked with raw
//! sockets, hand-built HTTP/2 frames, varnishtest scripts (`tests/attacks/*.vtc`) and
//! slowhttptest. Each attack has a stated expected outcome (status, GOAWAY code, close) and
//! resource ceilings (the process's resident memory and open descriptors) that are asserted,
//! and after each the load balancer must still serve. `docs/security.md` lists them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::edge::*;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

// ---- HTTP/1 request smuggling -------------------------------------------------------------

/// Each smuggling variant, its expected statuses, and whether the connection must close.
/// `defensive` is ALB's default desync mode: ambiguous requests are forwarded normalised (one
/// framing, `Connection: close` to the target) and the client connection is closed; malformed
/// ones are refused with 400.
const SMUGGLING: &[(&str, &[u8], u16)] = &[
    ("CL.TE", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 35\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nX: y\r\n\r\n", 200),
    ("TE.CL", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n1e\r\nGET /smuggled HTTP/1.1\r\nX: y\r\n\r\n0\r\n\r\n", 200),
    ("TE obfuscated (xchunked)", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n", 400),
    ("TE with space before colon", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n", 400),
    ("TE chunked then identity", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("TE list chunked, identity", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("two different Content-Lengths", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 41\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("Content-Length with a sign", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +36\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("Content-Length list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 36, 36\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("obs-fold hiding TE", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n\r\n", 400),
    ("NUL in a header value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400),
    ("HTTP/1.0 with chunked", b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("GET with a body (CL.0)", b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 35\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", 200),
    ("bare LF line ends", b"GET / HTTP/1.1\nHost: a\nContent-Length: 35\n\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", 200),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_is_refused_or_normalised_never_forwarded_ambiguously() {
    let edge = Edge::start(&[], &[]).await;
    for (name, raw, want) in SMUGGLING {
        edge.backend.clear();
        let r = exchange(edge.http, raw).await;
        assert_eq!(r.statuses().first(), Some(want), "{name}: {}", r.text);
        let seen = edge.backend.seen();
        for s in &seen {
            assert_ne!(s.path, "/smuggled", "{name}: a smuggled request reached the target");
            assert!(!(s.content_length && s.chunked), "{name}: forwarded with both framings");
            let carried =
                s.body.as_deref().is_some_and(|b| b.windows(9).any(|w| w == b"/smuggled"));
            if carried {
                assert!(
                    s.connection_close,
                    "{name}: ambiguous bytes sent on a reusable connection"
                );
            }
        }
        if *want == 400 {
            assert!(seen.is_empty(), "{name}: a refused request reached the target: {seen:?}");
            assert!(r.closed, "{name}: the connection stayed open after a 400");
        }
        if name.starts_with("CL.TE") || name.starts_with("TE.CL") {
            assert!(
                r.closed,
                "{name}: the client connection must close after an ambiguous request"
            );
        }
        // Nothing after the first answer: the trailing bytes were never read as a request.
        assert_eq!(r.statuses().len(), 1, "{name}: {}", r.text);
    }
    // The strictest mode refuses the ambiguous ones outright.
    let strict = Edge::start(&[], &["DesyncMode=strictest"]).await;
    for (name, raw, _) in &SMUGGLING[..2] {
        let r = exchange(strict.http, raw).await;
        assert_eq!(r.statuses(), vec![400], "strictest {name}: {}", r.text);
        assert!(strict.backend.seen().is_empty(), "strictest {name}");
    }
    edge.assert_serving("smuggling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrade_smuggling_is_not_honoured() {
    let edge = Edge::start(&[], &[]).await;
    let r = exchange(
        edge.http,
        b"GET /admin HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n",
    )
    .await;
    assert_eq!(r.statuses(), vec![200], "{}", r.text);
    let seen = edge.backend.seen();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].upgrade, "the h2c upgrade reached the target: {seen:?}");
}

// ---- HTTP/2 floods ---------------------------------------------------------------------------

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix whose high bits are `first`.
fn hpack_int(mut v: usize, n: u32, first: u8) -> Vec<u8> {
    let max = (1usize << n) - 1;
    if v < max {
        return vec![first | v as u8];
    }
    let mut out = vec![first | max as u8];
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
    out
}

/// A literal header field without indexing, new name.
fn literal(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend(hpack_int(name.len(), 7, 0));
    out.extend_from_slice(name);
    out.extend(hpack_int(value.len(), 7, 0));
    out.extend_from_slice(value);
    out
}

/// `GET / http`, `:authority: a` (static-table references).
fn get_block() -> Vec<u8> {
    vec![0x82, 0x84, 0x86, 0x01, 0x01, b'a']
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// A header block split into HEADERS + CONTINUATION frames (END_STREAM set).
fn header_frames(stream: u32, block: &[u8]) -> Vec<u8> {
    let chunks: Vec<&[u8]> = block.chunks(16_000).collect();
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let last = if i + 1 == chunks.len() { 0x4 } else { 0 };
        if i == 0 {
            out.extend(frame(0x1, 0x1 | last, stream, c));
        } else {
            out.extend(frame(0x9, last, stream, c));
        }
    }
    out
}

/// The frames in `bytes`: (type, flags, stream, payload).
fn parse_frames(bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 9 <= bytes.len() {
        let len = usize::from(bytes[i]) << 16
            | usize::from(bytes[i + 1]) << 8
            | usize::from(bytes[i + 2]);
        let end = (i + 9 + len).min(bytes.len());
        let stream = u32::from_be_bytes([bytes[i + 5], bytes[i + 6], bytes[i + 7], bytes[i + 8]])
            & 0x7fff_ffff;
        out.push((bytes[i + 3], bytes[i + 4], stream, bytes[i + 9..end].to_vec()));
        i += 9 + len;
    }
    out
}

/// The GOAWAY error code among `frames`, if one came.
fn goaway(frames: &[(u8, u8, u32, Vec<u8>)]) -> Option<u32> {
    frames
        .iter()
        .find(|f| f.0 == 0x7 && f.3.len() >= 8)
        .map(|f| u32::from_be_bytes([f.3[4], f.3[5], f.3[6], f.3[7]]))
}

/// Opens an h2c (prior knowledge) connection, sends `attack` (stopping quietly if the server
/// closes), and returns the frames that came back and whether the server closed.
async fn h2_attack(addr: SocketAddr, attack: Vec<Vec<u8>>) -> (Vec<(u8, u8, u32, Vec<u8>)>, bool) {
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            match tokio::time::timeout(Duration::from_secs(3), rd.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Err(_) => return (out, false),
            }
        }
    });
    let mut first = PREFACE.to_vec();
    first.extend(frame(0x4, 0, 0, &[]));
    let _ = wr.write_all(&first).await;
    for chunk in attack {
        if wr.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let (bytes, closed) = reader.await.unwrap();
    (parse_frames(&bytes), closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_continuation_flood_and_hpack_bomb_get_goaway() {
    let edge = Edge::start(&[], &[]).await;
    let fds = edge.fds();
    let rss = edge.rss_mib();

    // Rapid reset (CVE-2023-44487): 5000 streams opened and cancelled at once.
    let mut burst = Vec::new();
    for i in 0..5000u32 {
        let id = 1 + 2 * i;
        burst.extend(frame(0x1, 0x5, id, &get_block()));
        burst.extend(frame(0x3, 0, id, &8u32.to_be_bytes()));
    }
    let (frames, closed) = h2_attack(edge.http, vec![burst]).await;
    assert_eq!(goaway(&frames), Some(ENHANCE_YOUR_CALM), "rapid reset: {frames:?}");
    assert!(closed, "rapid reset: connection left open");
    let reached = edge.backend.seen().len();
    assert!(reached < 100, "rapid reset: {reached} of 5000 cancelled streams reached the target");

    // CONTINUATION flood (CVE-2024-27316 family): one header block that never ends.
    edge.backend.clear();
    let block: Vec<u8> =
        (0..140).flat_map(|i| literal(format!("x-flood-{i}").as_bytes(), &[b'a'; 100])).collect();
    let mut flood = vec![frame(0x1, 0x1, 1, &get_block())];
    flood.extend((0..1500).map(|_| frame(0x9, 0, 1, &block)));
    let (frames, closed) = h2_attack(edge.http, flood).await;
    assert_eq!(goaway(&frames), Some(ENHANCE_YOUR_CALM), "CONTINUATION flood: {frames:?}");
    assert!(closed, "CONTINUATION flood: connection left open");

    // HPACK bomb: one 4000-byte header added to the dynamic table, then referenced 20000 times
    // (one byte each): 80 MB of headers from 24 kB on the wire.
    let mut bomb = get_block();
    bomb.push(0x40);
    bomb.extend(hpack_int(6, 7, 0));
    bomb.extend_from_slice(b"x-bomb");
    bomb.extend(hpack_int(4000, 7, 0));
    bomb.extend_from_slice(&[b'a'; 4000]);
    bomb.extend(std::iter::repeat_n(0xbe, 20_000));
    let (frames, closed) = h2_attack(edge.http, vec![header_frames(1, &bomb)]).await;
    assert_eq!(goaway(&frames), Some(ENHANCE_YOUR_CALM), "HPACK bomb: {frames:?}");
    assert!(closed, "HPACK bomb: connection left open");

    // An honest but oversized header list (80 kB > 64 kB): 431 on the stream, no target.
    let big: Vec<u8> = get_block()
        .into_iter()
        .chain((0..80).flat_map(|i| literal(format!("x-h{i}").as_bytes(), &[b'b'; 1000])))
        .collect();
    let (frames, _) = h2_attack(edge.http, vec![header_frames(1, &big)]).await;
    let headers = frames.iter().find(|f| f.0 == 0x1 && f.2 == 1).expect("a response");
    // `:status` (static index 8) with the value Huffman-coded: 0x69 0x90 0xff is "431".
    assert!(headers.3.windows(3).any(|w| w == [0x69, 0x90, 0xff]), "oversized h2 head: {frames:?}");

    assert!(edge.backend.seen().is_empty(), "a flood request reached the target");
    edge.assert_ceilings("HTTP/2 floods", fds, rss + 64).await;
    edge.assert_serving("HTTP/2 floods").await;
}

// ---- heads ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_and_header_floods_are_refused() {
    let edge = Edge::start(&["--max-header-bytes", "32768"], &[]).await;
    let fds = edge.fds();
    let head = |extra: String| format!("GET / HTTP/1.1\r\nHost: a\r\n{extra}\r\n").into_bytes();
    // A head over the configured 32 KiB: 431.
    let big = head((0..40).map(|i| format!("X-Big-{i}: {}\r\n", "v".repeat(1000))).collect());
    let r = exchange(edge.http, &big).await;
    assert_eq!(r.statuses(), vec![431], "{}", r.text);
    // A request line over 16 KiB: 400 (ALB's LineTooLong).
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "p".repeat(17 * 1024));
    assert_eq!(exchange(edge.http, long.as_bytes()).await.statuses(), vec![400]);
    // 300 tiny headers (more than 200): 431.
    let many = head((0..300).map(|i| format!("x{i}: y\r\n")).collect());
    assert_eq!(exchange(edge.http, &many).await.statuses(), vec![431]);
    // 50 connections each sending a 1 MiB head at once: each refused after its first 32 KiB,
    // none buffered whole.
    let rss = edge.rss_mib();
    let addr = edge.http;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await;
            let line = format!("X-Flood: {}\r\n", "f".repeat(8000));
            for _ in 0..128 {
                if s.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
            let (out, _) = read_until_quiet(&mut s, Duration::from_secs(2)).await;
            String::from_utf8_lossy(&out).into_owned()
        }));
    }
    for t in tasks {
        let text = t.await.unwrap();
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 431"), "{text}");
    }
    edge.assert_ceilings("header floods", fds, rss + 64).await;
    assert!(edge.backend.seen().is_empty(), "{:?}", edge.backend.seen());
    edge.assert_serving("header floods").await;
}

// ---- limits -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_flood_beyond_the_limit_is_shed_with_503() {
    let edge = Edge::start(&["--max-connections", "40"], &[]).await;
    let fds = edge.fds();
    // 40 idle connections fill the listener.
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(edge.http).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 200 more at once: each is answered 503 and closed.
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let addr = edge.http;
        tasks.push(tokio::spawn(async move {
            exchange(addr, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await
        }));
    }
    let mut shed = 0;
    for t in tasks {
        let r = t.await.unwrap();
        assert!(r.closed, "a shed connection stayed open");
        if r.statuses() == [503] {
            shed += 1;
        } else {
            assert!(r.text.is_empty(), "over the limit but answered: {}", r.text);
        }
    }
    assert!(shed >= 150, "only {shed} of 200 shed connections got a 503");
    assert!(edge.backend.seen().is_empty(), "a shed connection reached the target");
    // Counted as RejectedConnectionCount, and the listener serves again once there is room.
    drop(idle);
    tokio::time::sleep(Duration::from_millis(300)).await;
    edge.assert_serving("connection flood").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while edge.metric("RejectedConnectionCount").await < 200.0 {
        assert!(Instant::now() < deadline, "RejectedConnectionCount did not reach 200");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    edge.assert_ceilings("connection flood", fds, 200).await;
}

/// Connects from `source` (a loopback address) to `addr`.
async fn connect_from(source: [u8; 4], addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::from((source, 0)))?;
    s.connect(addr).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_source_rates_answer_429_and_close_connections() {
    let edge = Edge::start(
        &["--max-request-rate-per-source", "20", "--max-connection-rate-per-source", "30"],
        &[],
    )
    .await;
    // 60 requests at once on one keep-alive connection: 20 pass, the rest get 429 + Retry-After.
    let mut s = connect_from([127, 0, 0, 11], edge.http).await.unwrap();
    let burst: Vec<u8> =
        (0..60).flat_map(|_| b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()).collect();
    s.write_all(&burst).await.unwrap();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while text.matches("HTTP/1.1 ").count() < 60 && Instant::now() < deadline {
        let (out, closed) = read_until_quiet(&mut s, Duration::from_millis(500)).await;
        text.push_str(&String::from_utf8_lossy(&out));
        if closed {
            break;
        }
    }
    let ok = text.matches("HTTP/1.1 200").count();
    let limited = text.matches("HTTP/1.1 429").count();
    // 20 pass (a second or two more if the burst straddles a second boundary, as the sliding
    // window lets the previous second's share fade), the rest are limited.
    assert!(
        (20..=23).contains(&ok) && ok + limited == 60,
        "{ok} passed, {limited} limited: {text}"
    );
    assert_eq!(text.to_ascii_lowercase().matches("retry-after: 1").count(), limited);
    // Another source has its own budget.
    let mut other = connect_from([127, 0, 0, 12], edge.http).await.unwrap();
    other.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await.unwrap();
    let (out, _) = read_until_quiet(&mut other, Duration::from_secs(2)).await;
    assert!(out.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&out));
    // 60 connections at once from one source: about 30 are kept, the rest closed unanswered.
    let mut kept = 0;
    let mut conns = Vec::new();
    for _ in 0..60 {
        conns.push(connect_from([127, 0, 0, 13], edge.http).await.unwrap());
    }
    for mut c in conns {
        let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
        let (out, _) = read_until_quiet(&mut c, Duration::from_secs(2)).await;
        // Kept connections get an answer (200, or 429 once the request rate is spent too).
        if out.starts_with(b"HTTP/1.1 200") || out.starts_with(b"HTTP/1.1 429") {
            kept += 1;
        } else {
            assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
        }
    }
    assert!((25..=35).contains(&kept), "{kept} of 60 connections kept (limit 30/s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_over_the_limit_get_413_and_never_reach_a_target_whole() {
    let edge = Edge::start(&["--max-body-bytes", "1000"], &[]).await;
    let body = "b".repeat(3000);
    // Declared too large: refused before any target is contacted.
    let req = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3000\r\n\r\n{body}");
    assert_eq!(exchange(edge.http, req.as_bytes()).await.statuses(), vec![413]);
    assert!(edge.backend.seen().is_empty());
    // Chunked, growing past the limit: cut off with 413; the target sees an aborted body.
    let chunks: String = (0..3).map(|_| format!("3e8\r\n{}\r\n", "c".repeat(1000))).collect();
    let req = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}0\r\n\r\n"
    );
    assert_eq!(exchange(edge.http, req.as_bytes()).await.statuses(), vec![413]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for s in edge.backend.seen() {
        assert!(
            s.body.as_ref().is_none_or(|b| b.len() <= 1000),
            "a body over the limit arrived whole"
        );
    }
    // Within the limit: forwarded.
    let req = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n"
        .to_string()
        + &"d".repeat(1000);
    assert_eq!(exchange(edge.http, req.as_bytes()).await.statuses(), vec![200]);
}

// ---- slow clients -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_heads_time_out_with_408_and_others_are_served() {
    let edge = Edge::start(&[], &["IdleTimeout=2"]).await;
    let fds = edge.fds();
    // 100 connections each dribbling a head one header every 500 ms, never finishing it.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let addr = edge.http;
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await;
            let mut answer = Vec::new();
            for i in 0..40 {
                if s.write_all(format!("X-{i}: y\r\n").as_bytes()).await.is_err() {
                    break;
                }
                let mut buf = [0u8; 1024];
                match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                    Err(_) => {}
                }
            }
            String::from_utf8_lossy(&answer).into_owned()
        }));
    }
    // Meanwhile the listener serves everybody else.
    tokio::time::sleep(Duration::from_secs(1)).await;
    edge.assert_serving("during slowloris").await;
    for t in tasks {
        let answer = t.await.unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "a slowloris head was not timed out: {answer:?}"
        );
    }
    // The idle timeout (2 s) bounds a head; 408s came well before the 20 s the dribble lasts.
    assert!(started.elapsed() < Duration::from_secs(12), "{:?}", started.elapsed());
    edge.assert_ceilings("slowloris", fds, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshake_flood_is_timed_out_and_https_keeps_serving() {
    let edge = Edge::start(&["--handshake-timeout-seconds", "2"], &[]).await;
    let fds = edge.fds();
    // 300 connections that never send a ClientHello, and 300 that send garbage.
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(TcpStream::connect(edge.https).await.unwrap());
    }
    let mut garbage = Vec::new();
    for _ in 0..300 {
        let addr = edge.https;
        garbage.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let _ = s.write_all(b"\x16\x03\x01\x00\x05hello-not-tls").await;
            read_until_quiet(&mut s, Duration::from_secs(5)).await.1
        }));
    }
    // 200 full handshakes from 8 clients back to back, while a probe keeps requesting.
    let tls = tls_connector();
    let mut handshakes = Vec::new();
    for _ in 0..8 {
        let (tls, addr) = (tls.clone(), edge.https);
        handshakes.push(tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..25 {
                let tcp = TcpStream::connect(addr).await.unwrap();
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                if tls.connect(name, tcp).await.is_ok() {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let probe = https_get(&tls, edge.https).await;
    assert!(probe.starts_with("HTTP/1.1 200"), "HTTPS during the flood: {probe}");
    let mut done = 0;
    for h in handshakes {
        done += h.await.unwrap();
    }
    assert_eq!(done, 200, "honest handshakes failed during the flood");
    for g in garbage {
        assert!(g.await.unwrap(), "a garbage handshake was left open");
    }
    // The silent ones are closed by the handshake timeout (2 s).
    let deadline = Instant::now() + Duration::from_secs(6);
    for mut s in silent {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut buf = [0u8; 16];
        let r = tokio::time::timeout(left, s.read(&mut buf)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "a silent TLS connection outlived the handshake timeout"
        );
    }
    edge.assert_ceilings("TLS handshake flood", fds, 200).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while edge.metric("ClientTLSNegotiationErrorCount").await < 600.0 {
        assert!(Instant::now() < deadline, "ClientTLSNegotiationErrorCount did not reach 600");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A TLS client that accepts the edge's self-signed certificate (the one Weir uses towards
/// targets).
fn tls_connector() -> tokio_rustls::TlsConnector {
    tokio_rustls::TlsConnector::from(Arc::new(weir_l7::upstream::insecure_client_config(&[])))
}

async fn https_get(tls: &tokio_rustls::TlsConnector, addr: SocketAddr) -> String {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = tls.connect(name, tcp).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

// ---- external attack tools --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn varnishtest_scripts_pass_against_weir() {
    if !common::have("varnishtest") {
        return;
    }
    let edge = Edge::start(&[], &[]).await;
    let dir = format!("{}/tests/attacks", env!("CARGO_MANIFEST_DIR"));
    let mut scripts: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "vtc"))
        .collect();
    scripts.sort();
    assert!(scripts.len() >= 2, "{scripts:?}");
    for script in scripts {
        let out = tokio::process::Command::new("varnishtest")
            .args(["-t", "30", "-D", &format!("weir_http={}", edge.http)])
            .arg(&script)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.starts_with("----") || l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    for s in edge.backend.seen() {
        assert_ne!(s.path, "/smuggled", "a smuggled request reached the target");
    }
    edge.assert_serving("varnishtest").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowhttptest_slowloris_slow_post_and_slow_read_leave_the_service_available() {
    if !common::have("slowhttptest") {
        return;
    }
    let edge = Edge::start(&[], &["IdleTimeout=3"]).await;
    let fds = edge.fds();
    let url = format!("http://{}/", edge.http);
    // -H slowloris (slow headers), -B slow POST body, -X slow read of the response.
    for (mode, extra) in [
        ("-H", vec![]),
        ("-B", vec![]),
        ("-X", vec!["-k", "3", "-n", "2", "-w", "10", "-y", "20", "-z", "32"]),
    ] {
        let mut cmd = tokio::process::Command::new("slowhttptest");
        cmd.args([mode, "-c", "150", "-r", "150", "-i", "1", "-l", "8", "-s", "8192", "-p", "2"])
            .args(&extra)
            .args(["-u", &url])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let run = cmd.spawn().unwrap();
        // The load balancer answers others throughout.
        let mut probes = 0;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(7) {
            tokio::time::sleep(Duration::from_millis(700)).await;
            edge.assert_serving(&format!("slowhttptest {mode}")).await;
            probes += 1;
        }
        let out = tokio::time::timeout(Duration::from_secs(40), run.wait_with_output())
            .await
            .expect("slowhttptest stops by itself")
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("test type"), "slowhttptest {mode} did not run: {text}");
        assert!(probes >= 5);
    }
    edge.assert_ceilings("slowhttptest", fds, 200).await;
}
