//! The HTTP/1.1 fast path: the common request — an HTTP/1.1 request without a streamed body,
//! forwarded to an HTTP target group — handled in the connection's own task with one buffer
//! per side and no intermediate representation: the head is parsed in place (`httparse`), the
//! rules see borrowed slices of it, the request head for the target is written straight from
//! the client's bytes (hop-by-hop fields dropped, the load balancer's fields added), the
//! target's response head likewise, and the body is copied as it comes (chunked bodies pass
//! through in their chunks). Connections to targets are pooled per listener and used from the
//! request's task, with no connection task or channel in between.
//!
//! Anything else hands the connection, with the bytes already read, to the general path
//! (hyper) for the rest of its life: HTTP/2 (prior knowledge or `h2` ALPN), HTTP/1.0, heads
//! the fast path does not parse or that the desync classifier does not call compliant,
//! `Transfer-Encoding` or `Expect` or `Upgrade` requests, bodies over 64 KiB, actions other
//! than forward, HTTPS/h2c targets, stickiness, access logging, and a draining listener. The
//! general path then answers exactly as it always has (400, 431, 413, redirects, …), so the
//! fast path changes the cost of a request, never its outcome. `WEIR_HTTP1_FAST_PATH=off`
//! turns it off.

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::HeaderMap;
use httparse::Status;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use weir_balance::{pick_weighted, OutstandingGuard};

use super::{host_without_port, upstream_host, ConnInfo, Proxy, MAX_LINE_BYTES};
use crate::clock::{coarse_epoch_secs, coarse_monotonic};
use crate::desync::{self, Tier};
use crate::headers::{
    forwarded_addresses, has_trace_root, is_hop_by_hop, push_trace_root, MAX_XFF_ADDRESSES,
};
use crate::http1::{self, named_in, write_parsed_response_head, Body, Framing, ResponseHead};
use crate::responses;
use crate::rules::RequestView;
use crate::snapshot::{CompiledAction, ListenerSnapshot, Stickiness, TargetGroupRuntime, XffMode};
use crate::upstream::{TargetProtocol, TARGET_CONNECT_TIMEOUT};

/// Most header fields the fast path parses; a request with more goes the general way.
const MAX_FAST_HEADERS: usize = 100;
/// Largest request body the fast path buffers (and can therefore replay on a fresh
/// connection); larger ones are streamed by the general path.
const MAX_FAST_BODY: usize = 64 * 1024;
/// How long an idle pooled target connection is kept (as the general path's pool).
const POOL_IDLE: Duration = Duration::from_secs(55);
/// Most idle pooled connections per target.
const POOL_MAX_PER_TARGET: usize = 1024;
/// Read buffer size: a read that fills less than this has drained the socket.
pub(super) const READ_CHUNK: usize = 16 * 1024;
/// A new connection's first read buffer (most request heads fit).
const FIRST_READ: usize = 4 * 1024;

/// Whether the fast path is on (`WEIR_HTTP1_FAST_PATH` is not `off`/`0`/`false`).
pub(super) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        !matches!(
            std::env::var("WEIR_HTTP1_FAST_PATH").as_deref(),
            Ok("off" | "0" | "false" | "no")
        )
    })
}

/// How the fast path left a connection.
pub(super) enum Outcome<I> {
    /// Closed (or to be closed): nothing more to do.
    Done,
    /// For the general path, with the bytes read but not handled.
    Fallback(I, Vec<u8>),
}

/// A client stream handed to the general path: the bytes the fast path read but did not handle
/// come first.
pub(super) struct Rewind<I> {
    prefix: Vec<u8>,
    pos: usize,
    inner: I,
}

impl<I> Rewind<I> {
    pub(super) fn new(inner: I, prefix: Vec<u8>) -> Self {
        Self { prefix, pos: 0, inner }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = b.remaining().min(self.prefix.len() - self.pos);
            let at = self.pos;
            b.put_slice(&self.prefix[at..at + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, b)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, b)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, b)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An idle connection to a target.
struct Idle {
    stream: TcpStream,
    /// When it went idle, on the coarse monotonic clock (seconds matter here).
    since: Duration,
}

/// Idle keep-alive connections to targets, by target address (addresses from the
/// configuration, not from clients: a fast hash is safe).
#[derive(Default)]
pub(super) struct Pool {
    idle: Mutex<std::collections::HashMap<SocketAddr, Vec<Idle>, foldhash::fast::RandomState>>,
}

impl Pool {
    /// The most recently used live connection to `addr`, if any.
    pub(super) fn take(&self, addr: SocketAddr) -> Option<TcpStream> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(&addr)?;
        let now = coarse_monotonic();
        while let Some(c) = list.pop() {
            if now.saturating_sub(c.since) < POOL_IDLE && !closed_by_peer(&c.stream) {
                return Some(c.stream);
            }
        }
        None
    }

    /// Keeps `stream` for the next request to `addr`.
    pub(super) fn put(&self, addr: SocketAddr, stream: TcpStream) {
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(addr).or_default();
            let now = coarse_monotonic();
            // The oldest first: drop what has expired, and make room.
            let expired =
                list.iter().take_while(|c| now.saturating_sub(c.since) >= POOL_IDLE).count();
            let over = (list.len() + 1).saturating_sub(POOL_MAX_PER_TARGET);
            list.drain(..expired.max(over).min(list.len()));
            list.push(Idle { stream, since: now });
        }
    }

    /// Closes connections idle for longer than the pool keeps them.
    pub(super) fn sweep(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            let now = coarse_monotonic();
            idle.retain(|_, list| {
                list.retain(|c| now.saturating_sub(c.since) < POOL_IDLE);
                !list.is_empty()
            });
        }
    }
}

/// Reads what `io` has into `buf`, growing it first. With `first` (the buffer holds nothing
/// yet), waits for bytes to arrive before taking the buffer: an idle connection holds none. A
/// zero-length read is that wait on a plain socket (readiness, then a read of nothing); a
/// stream that cannot wait so (TLS) answers it at once and the buffer is taken as before.
async fn read_some<I: AsyncRead + Unpin>(
    io: &mut I,
    buf: &mut Vec<u8>,
    first: bool,
) -> io::Result<usize> {
    if first {
        std::future::poll_fn(|cx| Pin::new(&mut *io).poll_read(cx, &mut ReadBuf::new(&mut [])))
            .await?;
    }
    buf.reserve(if buf.capacity() == 0 { FIRST_READ } else { READ_CHUNK });
    io.read_buf(buf).await
}

/// Whether an idle pooled connection has something to read — the target closed it (or sent
/// bytes it should not have): either way it is not reused. Costs no system call when nothing
/// arrived (the readiness the runtime already has is consulted).
fn closed_by_peer(s: &TcpStream) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if s.poll_read_ready(&mut cx).is_pending() {
        return false;
    }
    let mut b = [0u8; 1];
    !matches!(s.try_read(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// What one parsed request leads to.
enum Prep {
    /// The head (or the body after it) is not all here yet.
    NeedMore,
    /// For the general path.
    Fallback,
    /// Answered by the load balancer: `bytes` go to the client, `consumed` request bytes are
    /// done with; the connection closes after when `close`.
    Respond { bytes: Vec<u8>, consumed: usize, close: bool },
    /// To a target: the request for it is in the output buffer.
    Forward(Forward),
}

/// A request ready for a target.
struct Forward {
    consumed: usize,
    group: Arc<TargetGroupRuntime>,
    target: OutstandingGuard,
    head_request: bool,
    idempotent: bool,
    client_close: bool,
}

/// Serves HTTP/1.1 requests on `io` while they fit the fast path (see the module docs).
pub(super) async fn serve<I>(
    proxy: &Arc<Proxy>,
    mut io: I,
    conn: &ConnInfo,
    shutdown: &mut watch::Receiver<bool>,
) -> Outcome<I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send,
{
    // Buffers grow on use: an idle connection holds a small read buffer and nothing else.
    let mut buf: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    let mut up_buf: Vec<u8> = Vec::new();
    let mut spare: Vec<u8> = Vec::new();
    // A request (head and body) must arrive within the idle timeout of the previous response
    // (or of the connection's start): dribbling bytes does not extend it (slowloris).
    let mut deadline = tokio::time::Instant::now() + proxy.cell.load().lb.idle_timeout;
    loop {
        let snap = proxy.cell.load_full();
        if *shutdown.borrow() || snap.access_log.is_some() {
            return Outcome::Fallback(io, buf);
        }
        let prep = if buf.is_empty() {
            Prep::NeedMore
        } else {
            prepare(proxy, &snap, conn, &buf, &mut out)
        };
        let fwd = match prep {
            Prep::Fallback => return Outcome::Fallback(io, buf),
            Prep::NeedMore => {
                let limit = snap.limits.max_header_bytes + MAX_FAST_BODY + MAX_LINE_BYTES;
                if buf.len() >= limit {
                    return Outcome::Fallback(io, buf);
                }
                let first = buf.capacity() == 0;
                tokio::select! {
                    r = tokio::time::timeout_at(deadline, read_some(&mut io, &mut buf, first)) => match r {
                        Ok(Ok(n)) if n > 0 => continue,
                        Ok(_) => return Outcome::Done,
                        Err(_) => {
                            if !buf.is_empty() {
                                // A request began but did not arrive within the idle timeout.
                                proxy.stats.record_elb(408);
                                tracing::debug!(client = %conn.peer, elb_status_code = 408, "request head timed out");
                                let _ = io.write_all(&responses::raw_error(408, snap.server_header)).await;
                                let _ = io.shutdown().await;
                            }
                            return Outcome::Done;
                        }
                    },
                    _ = shutdown.changed() => {
                        shutdown.mark_changed();
                        return Outcome::Fallback(io, buf);
                    }
                }
            }
            Prep::Respond { bytes, consumed, close } => {
                count(proxy, consumed + bytes.len());
                buf.drain(..consumed);
                if io.write_all(&bytes).await.is_err() || close {
                    let _ = io.shutdown().await;
                    return Outcome::Done;
                }
                deadline = tokio::time::Instant::now() + snap.lb.idle_timeout;
                continue;
            }
            Prep::Forward(f) => f,
        };
        buf.drain(..fwd.consumed);
        count(proxy, fwd.consumed);
        let close = fwd.client_close;
        // Boxed: an idle connection's state does not carry room for a request's.
        let done = Box::pin(exchange(
            proxy,
            &snap,
            conn,
            &mut io,
            &mut buf,
            &mut out,
            &mut up_buf,
            &mut spare,
            fwd,
        ));
        match done.await {
            Ok(true) if !close => deadline = tokio::time::Instant::now() + snap.lb.idle_timeout,
            _ => {
                let _ = io.shutdown().await;
                return Outcome::Done;
            }
        }
    }
}

fn count(proxy: &Proxy, n: usize) {
    proxy.stats.processed_bytes.fetch_add(n as u64, Ordering::Relaxed);
}

/// Parses the request at the start of `buf` and decides what happens to it; a request for a
/// target is written to `out`.
fn prepare(
    proxy: &Proxy,
    snap: &ListenerSnapshot,
    conn: &ConnInfo,
    buf: &[u8],
    out: &mut Vec<u8>,
) -> Prep {
    // Uninitialised: filling 100 empty fields per request cost more than the parse.
    let mut parsed = [const { MaybeUninit::uninit() }; MAX_FAST_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut parsed) {
        Ok(Status::Complete(n)) => n,
        Ok(Status::Partial) => {
            return if buf.len() > snap.limits.max_header_bytes {
                Prep::Fallback
            } else {
                Prep::NeedMore
            }
        }
        Err(_) => return Prep::Fallback,
    };
    let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else {
        return Prep::Fallback;
    };
    if method == "CONNECT"
        || !path.starts_with('/')
        || method.len() + path.len() + 10 > MAX_LINE_BYTES
        || head_len > snap.limits.max_header_bytes
    {
        return Prep::Fallback;
    }
    let Some(fields) =
        http1::scan_request(req.headers, MAX_LINE_BYTES, snap.lb.drop_invalid_header_fields)
    else {
        return Prep::Fallback;
    };
    let Some(host_full) = fields.host else {
        return Prep::Fallback;
    };
    let body_len = fields.content_length.unwrap_or(0);
    let max_body = snap.limits.max_body_bytes;
    if body_len > MAX_FAST_BODY || (max_body > 0 && body_len as u64 > max_body) {
        return Prep::Fallback;
    }
    if buf.len() < head_len + body_len {
        return Prep::NeedMore;
    }
    if desync::classify_raw(&buf[..head_len]).tier != Tier::Compliant {
        return Prep::Fallback;
    }

    // Routing.
    let hostname = host_without_port(host_full);
    let (path_only, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let header_map = if snap.rules.uses_headers() {
        let mut m = HeaderMap::with_capacity(req.headers.len());
        for h in req.headers.iter() {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(h.name.as_bytes()),
                http::HeaderValue::from_bytes(h.value),
            ) {
                m.append(k, v);
            }
        }
        m
    } else {
        HeaderMap::new()
    };
    let view = RequestView {
        method,
        host: hostname,
        path: path_only,
        query,
        headers: &header_map,
        source: conn.peer.ip(),
    };
    let (_, action) = snap.rules.evaluate(&view);
    let CompiledAction::Forward(fwd) = action.as_ref() else {
        return Prep::Fallback;
    };
    if fwd.group_stickiness.is_some() {
        return Prep::Fallback;
    }
    let group = match fwd.groups.as_slice() {
        [one] => one,
        groups => {
            let weights: Vec<u32> = groups.iter().map(|g| g.weight).collect();
            match pick_weighted(&weights).and_then(|i| groups.get(i)) {
                Some(g) => g,
                None => return Prep::Fallback,
            }
        }
    };
    let tg = &group.group;
    if tg.stickiness != Stickiness::None || tg.protocol != TargetProtocol::Http1 {
        return Prep::Fallback;
    }

    // From here on the request is the fast path's.
    let consumed = head_len + body_len;
    let connection = fields.connection.as_slice();
    let client_close = named_in(connection, "close");
    let respond = |status: u16| {
        proxy.stats.record_elb(status);
        tracing::debug!(client = %conn.peer, status, "request failed");
        Prep::Respond {
            bytes: responses::raw_page(status, snap.server_header, client_close),
            consumed,
            close: client_close,
        }
    };
    if !proxy.req_rates.allow(snap.limits.max_request_rate_per_source, conn.peer.ip()) {
        proxy.stats.requests.fetch_add(1, Ordering::Relaxed);
        return respond(429);
    }
    proxy.stats.requests.fetch_add(1, Ordering::Relaxed);
    let xff = fields.forwarded_for.as_slice();
    let addresses: usize = xff.iter().map(|v| forwarded_addresses(v)).sum();
    if addresses > MAX_XFF_ADDRESSES {
        return respond(463);
    }
    let Some(target) = tg.selector.pick(None) else {
        return respond(503);
    };

    // The request for the target.
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let tls = conn.tls.as_ref().filter(|_| snap.lb.tls_headers);
    for h in req.headers.iter() {
        let n = h.name;
        if n.eq_ignore_ascii_case("host") {
            out.extend_from_slice(b"Host: ");
            upstream_host(out, host_full, snap, conn.tls.is_some());
            out.extend_from_slice(b"\r\n");
            continue;
        }
        let skip = is_hop_by_hop(n)
            || named_in(connection, n)
            || n.eq_ignore_ascii_case("x-forwarded-proto")
            || n.eq_ignore_ascii_case("x-forwarded-port")
            || n.eq_ignore_ascii_case("x-amzn-trace-id")
            || (n.eq_ignore_ascii_case("x-forwarded-for") && snap.lb.xff_mode != XffMode::Preserve)
            || (tls.is_some()
                && (n.eq_ignore_ascii_case("x-amzn-tls-version")
                    || n.eq_ignore_ascii_case("x-amzn-tls-cipher-suite")));
        if skip {
            continue;
        }
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    if snap.lb.xff_mode == XffMode::Append {
        out.extend_from_slice(b"X-Forwarded-For: ");
        for v in xff {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(conn.fwd.client(snap.lb.xff_client_port).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(if conn.tls.is_some() {
        b"X-Forwarded-Proto: https\r\nX-Forwarded-Port: "
    } else {
        b"X-Forwarded-Proto: http\r\nX-Forwarded-Port: "
    });
    out.extend_from_slice(conn.fwd.port.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(t) = tls {
        out.extend_from_slice(b"X-Amzn-Tls-Version: ");
        out.extend_from_slice(t.version.as_bytes());
        out.extend_from_slice(b"\r\nX-Amzn-Tls-Cipher-Suite: ");
        out.extend_from_slice(t.cipher.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"X-Amzn-Trace-Id: ");
    match fields.trace_id.filter(|t| has_trace_root(t)) {
        Some(t) => out.extend_from_slice(t),
        None => {
            push_trace_root(out, coarse_epoch_secs());
        }
    }
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&buf[head_len..consumed]);
    tg.stats.requests.fetch_add(1, Ordering::Relaxed);
    Prep::Forward(Forward {
        consumed,
        group: tg.clone(),
        target,
        head_request: method == "HEAD",
        idempotent: matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"),
        client_close,
    })
}

/// Why a request to a target failed.
enum UpError {
    /// No connection (refused, unreachable…): nothing reached the target.
    Connect(io::Error),
    /// The connection was lost before any of the response arrived.
    Lost { reused: bool, written: bool },
    /// The response did not arrive in time.
    Timeout,
    /// The target answered something that is not an HTTP/1.1 response.
    Invalid,
}

/// Sends the request in `out` to the target and the target's response to the client. `Ok(true)`
/// when the client connection may carry another request.
#[allow(clippy::too_many_arguments)] // the connection's buffers, each reused per request
async fn exchange<I>(
    proxy: &Proxy,
    snap: &ListenerSnapshot,
    conn: &ConnInfo,
    io: &mut I,
    buf: &mut Vec<u8>,
    out: &mut Vec<u8>,
    up_buf: &mut Vec<u8>,
    spare: &mut Vec<u8>,
    fwd: Forward,
) -> io::Result<bool>
where
    I: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Forward { group, mut target, head_request, idempotent, client_close, .. } = fwd;
    let sent_at = Instant::now();
    let idle = snap.lb.idle_timeout;
    let mut retried_target = false;
    let mut retried_stale = false;
    let mut fresh_only = false;
    // The request goes out from `out`; the response head for the client is written to `head`
    // (then `out` takes it over for the body's first bytes).
    let head = spare;
    let (mut upstream, head_len, status, framing, reusable) = loop {
        let addr = target.target().addr;
        let (request, response) = (&*out, &mut *head);
        // The first attempt's clock read is `sent_at`'s.
        let from = if retried_target || retried_stale { Instant::now() } else { sent_at };
        let deadline = tokio::time::Instant::from_std(from) + idle;
        let attempt = async {
            let (mut s, reused) = match (!fresh_only).then(|| proxy.fast_pool.take(addr)).flatten()
            {
                Some(s) => (s, true),
                None => (connect(addr).await.map_err(UpError::Connect)?, false),
            };
            if s.write_all(request).await.is_err() {
                return Err(UpError::Lost { reused, written: false });
            }
            up_buf.clear();
            let head = read_response_head(&mut s, up_buf, head_request, client_close, response);
            let parsed =
                tokio::time::timeout_at(deadline, head).await.map_err(|_| UpError::Timeout)?;
            match parsed {
                Ok(Some(head)) => Ok((s, head)),
                _ if up_buf.is_empty() => Err(UpError::Lost { reused, written: true }),
                _ => Err(UpError::Invalid),
            }
        };
        // A client that goes away while its target thinks abandons the request (460).
        let client_gone = async {
            loop {
                if buf.len() >= MAX_FAST_BODY {
                    return std::future::pending::<()>().await;
                }
                buf.reserve(READ_CHUNK);
                match io.read_buf(buf).await {
                    Ok(n) if n > 0 => continue,
                    _ => return,
                }
            }
        };
        let result = tokio::select! {
            r = attempt => r,
            () = client_gone => {
                proxy.stats.client_closed_460.fetch_add(1, Ordering::Relaxed);
                tracing::info!(client = %conn.peer, elb_status_code = 460, "client closed the connection before the response");
                return Ok(false);
            }
        };
        let err = match result {
            Ok((s, (head_len, status, framing, reusable))) => {
                break (s, head_len, status, framing, reusable)
            }
            Err(e) => e,
        };
        let status = match err {
            UpError::Connect(e) => {
                proxy.stats.target_connection_errors.fetch_add(1, Ordering::Relaxed);
                group.stats.target_connection_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(target = %addr, error = %e, "target connection failed");
                // Nothing reached this target: once more on another one.
                if !retried_target {
                    retried_target = true;
                    if let Some(t) = group.selector.pick(Some(target.target())) {
                        target = t;
                        fresh_only = false;
                        continue;
                    }
                }
                if e.kind() == io::ErrorKind::TimedOut {
                    504
                } else {
                    502
                }
            }
            // A pooled connection the target had closed: again on a new one, when the target
            // cannot have acted on the request (nothing written) or acting twice is harmless.
            UpError::Lost { reused: true, written }
                if !retried_stale && (!written || idempotent) =>
            {
                retried_stale = true;
                fresh_only = true;
                continue;
            }
            UpError::Lost { .. } | UpError::Invalid => 502,
            UpError::Timeout => 504,
        };
        proxy.stats.record_elb(status);
        tracing::debug!(client = %conn.peer, status, "request failed");
        let page = responses::raw_page(status, snap.server_header, client_close);
        count(proxy, page.len());
        io.write_all(&page).await?;
        return Ok(true);
    };
    proxy.stats.record_target(status);
    group.stats.record_response(status, sent_at.elapsed());

    let close_client = client_close || framing == Framing::Close;
    std::mem::swap(out, head);
    // The body bytes that came with the head.
    let mut body = Body::new(framing);
    let rest = &up_buf[head_len..];
    let take = match body.feed(rest) {
        Ok(n) => n,
        Err(()) => return Ok(false),
    };
    out.extend_from_slice(&rest[..take]);
    let mut extra = take < rest.len();
    count(proxy, out.len());
    io.write_all(out).await?;
    while !body.done() {
        up_buf.clear();
        up_buf.reserve(READ_CHUNK);
        let n = match tokio::time::timeout(idle, upstream.read_buf(up_buf)).await {
            Ok(Ok(n)) => n,
            _ => return Ok(false),
        };
        if n == 0 {
            if body.framing == Framing::Close {
                break;
            }
            // Cut off: the client must not take a truncated body for a whole one.
            return Ok(false);
        }
        let take = match body.feed(up_buf) {
            Ok(n) => n,
            Err(()) => return Ok(false),
        };
        count(proxy, take);
        io.write_all(&up_buf[..take]).await?;
        if take < up_buf.len() {
            // Bytes after the response: the target is not to be trusted with another request.
            extra = true;
        }
    }
    let addr = target.target().addr;
    drop(target);
    if reusable && !extra && body.framing != Framing::Close {
        proxy.fast_pool.put(addr, upstream);
    } else {
        let _ = upstream.shutdown().await;
    }
    Ok(!close_client)
}

/// A new connection to a target (ALB's connect timeout, no Nagle).
pub(super) async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = tokio::time::timeout(TARGET_CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Reads a final response head (skipping interim 1xx ones) into `buf`: its length, status,
/// body framing and whether the connection may be reused after the body. `None` when the
/// connection ended first or the head is not a valid HTTP/1.x response.
async fn read_response_head(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    head_request: bool,
    client_close: bool,
    out: &mut Vec<u8>,
) -> io::Result<Option<(usize, u16, Framing, bool)>> {
    loop {
        // The client's head is written from the same parse (a final response only).
        let step = http1::parse_response_head(buf, head_request, |r, framing| {
            out.clear();
            let close = client_close || framing == Framing::Close;
            write_parsed_response_head(r, out, framing, close).then_some(())
        });
        match step {
            ResponseHead::Final(h) => return Ok(Some((h.len, h.status, h.framing, h.keep_alive))),
            ResponseHead::Interim(n) => {
                buf.drain(..n);
                if !buf.is_empty() {
                    continue;
                }
            }
            ResponseHead::Partial => {}
            ResponseHead::Invalid => return Ok(None),
        }
        buf.reserve(READ_CHUNK);
        if s.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}
