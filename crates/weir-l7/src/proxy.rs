//! Serving one listener: accept loop, per-connection HTTP/1.1 server, per-request routing and
//! proxying to targets over a pooled keep-alive client.
//!
//! Status codes follow ALB: 503 when no target can be picked, 502 when the target refuses or
//! resets the connection or answers with an invalid response, 504 when the connection or the
//! response does not arrive within its timeout, 400 for malformed requests (hyper answers parse
//! errors with 400, a request line or header line over 16 KiB with 400 and a head over 64 KiB
//! with 431, as ALB's limits are), 463 for more than 30 X-Forwarded-For
//! addresses. A request the client abandons before its response is counted and logged as 460.

use std::convert::Infallible;
use std::error::Error as _;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_balance::{pick_weighted, RateCell};

use crate::access_log::{AccessLog, LogRecord};
use crate::client_body::ClientBody;
use crate::client_io::{ClientIo, HeadCapture};
use crate::desync::{self, Verdict};
use crate::error::ProxyError;
use crate::headers;
use crate::responses::{self, BodyError, ProxyBody, UrlParts};
use crate::rules::RequestView;
use crate::snapshot::{CompiledAction, ForwardAction, ListenerSnapshot, SnapshotCell, Stickiness};
use crate::stats::ListenerStats;
use crate::sticky;
use crate::tls::{self, TlsInfo};
use crate::upstream::{TargetProtocol, UpstreamBody, Upstreams};

mod fast;
mod h2;
mod pooled;

/// ALB's limit on the request line and on any single header line; beyond it the answer is 400.
/// (The whole head's limit, 64 KiB by default, is [`weir_model::Limits::max_header_bytes`].)
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Most header fields in one HTTP/1.1 request head.
pub const MAX_HEADERS: usize = 200;
/// How long a draining HTTP/1 connection must have been quiet before it is closed.
const DRAIN_QUIET: Duration = Duration::from_millis(500);
/// Most connections being shed with a 503 at once; beyond it shed connections are closed
/// without one, so a flood costs no more than its accepts.
const MAX_SHEDDING: usize = 256;

/// One bound address of a listener and the task accepting on it.
#[derive(Debug)]
struct Bound {
    /// The address as configured (port 0 stays 0 here).
    requested: SocketAddr,
    /// The address actually bound.
    local: SocketAddr,
    task: JoinHandle<()>,
}

/// A running listener. Addresses can be added and removed in place ([`Self::set_addresses`]);
/// [`Self::stop`] stops accepting and waits until every socket is closed. Dropping it also stops
/// accepting (without waiting); open connections finish their current request either way.
pub struct ListenerHandle {
    proxy: Arc<Proxy>,
    bound: Vec<Bound>,
    shutdown: watch::Sender<bool>,
    /// Counters.
    pub stats: Arc<ListenerStats>,
}

impl std::fmt::Debug for ListenerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerHandle").field("bound", &self.bound).finish_non_exhaustive()
    }
}

impl Drop for ListenerHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for b in &self.bound {
            b.task.abort();
        }
    }
}

impl ListenerHandle {
    /// The addresses actually bound.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.bound.iter().map(|b| b.local).collect()
    }

    /// Makes the listener accept on exactly `addrs`: removed addresses are closed (and waited
    /// for, so they can be bound again at once), new ones bound, unchanged ones left alone.
    pub async fn set_addresses(&mut self, addrs: &[SocketAddr]) -> io::Result<()> {
        let (keep, gone): (Vec<Bound>, Vec<Bound>) =
            std::mem::take(&mut self.bound).into_iter().partition(|b| addrs.contains(&b.requested));
        self.bound = keep;
        for b in gone {
            b.task.abort();
            let _ = b.task.await;
        }
        for a in addrs {
            if self.bound.iter().any(|b| b.requested == *a) {
                continue;
            }
            let (l, registration) = weir_sockets::tcp_listener(*a)
                .map_err(|e| io::Error::new(e.kind(), format!("bind {a}: {e}")))?;
            let local = l.local_addr()?;
            let (proxy, shutdown) = (self.proxy.clone(), self.shutdown.subscribe());
            let task = tokio::spawn(async move {
                let _registration = registration;
                accept_loop(l, proxy, shutdown).await
            });
            self.bound.push(Bound { requested: *a, local, task });
        }
        Ok(())
    }

    /// Stops accepting (as [`Self::stop`]) for a binary upgrade: open connections drain, and a
    /// busy HTTP/2 connection is sent GOAWAY only once it has been idle for a moment or
    /// `h2_patience` has passed (a GOAWAY crossing requests the client has queued makes
    /// clients that do not retry them, such as h2load, count them as failed).
    pub async fn drain(self, h2_patience: Duration) {
        if let Ok(mut at) = self.proxy.goaway_at.lock() {
            *at = Some(tokio::time::Instant::now() + h2_patience);
        }
        self.stop().await;
    }

    /// Stops accepting and waits until every listening socket is closed. Open connections are
    /// told to finish their current request and close (HTTP/2: GOAWAY at once).
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        for b in std::mem::take(&mut self.bound) {
            b.task.abort();
            let _ = b.task.await;
        }
    }
}

struct Proxy {
    cell: SnapshotCell,
    upstreams: Upstreams,
    stats: Arc<ListenerStats>,
    /// New connections per source (`max_connection_rate_per_source`).
    conn_rates: RateCell,
    /// Requests per source (`max_request_rate_per_source`).
    req_rates: RateCell,
    /// Connections being answered with a 503 while shed.
    shedding: Arc<tokio::sync::Semaphore>,
    /// When draining HTTP/2 connections get GOAWAY even if busy (`None`: at once).
    goaway_at: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// Idle target connections of the HTTP/1.1 fast path.
    fast_pool: Arc<fast::Pool>,
}

/// Binds every address in `addrs` and serves the listener whose configuration is in `cell`.
pub async fn serve_listener(
    addrs: &[SocketAddr],
    cell: SnapshotCell,
) -> io::Result<ListenerHandle> {
    let stats = Arc::new(ListenerStats::default());
    let proxy = Arc::new(Proxy {
        cell,
        upstreams: Upstreams::new(),
        stats: stats.clone(),
        conn_rates: RateCell::default(),
        req_rates: RateCell::default(),
        shedding: Arc::new(tokio::sync::Semaphore::new(MAX_SHEDDING)),
        goaway_at: std::sync::Mutex::default(),
        fast_pool: Arc::default(),
    });
    // Expired idle target connections are closed even when no request comes to reuse them.
    let weak = Arc::downgrade(&proxy);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            match weak.upgrade() {
                Some(p) => p.fast_pool.sweep(),
                None => return,
            }
        }
    });
    let (shutdown, _) = watch::channel(false);
    let mut handle = ListenerHandle { proxy, bound: Vec::new(), shutdown, stats };
    if let Err(e) = handle.set_addresses(addrs).await {
        handle.stop().await;
        return Err(e);
    }
    Ok(handle)
}

async fn accept_loop(listener: TcpListener, proxy: Arc<Proxy>, shutdown: watch::Receiver<bool>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors and similar: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let snap = proxy.cell.load_full();
        let limits = &snap.limits;
        if !proxy.conn_rates.allow(limits.max_connection_rate_per_source, peer.ip()) {
            proxy.stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "source over its connection rate; connection closed");
            continue;
        }
        let open = proxy.stats.active_connections.load(Ordering::Relaxed);
        if open >= limits.max_connections as u64 {
            proxy.stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, open, "connection limit reached; shedding");
            if snap.tls.is_none() {
                shed(stream, &proxy, snap.server_header);
            }
            continue;
        }
        let _ = stream.set_nodelay(true);
        // Counted before the task starts, so a burst of accepts cannot overshoot the limit.
        proxy.stats.new_connections.fetch_add(1, Ordering::Relaxed);
        proxy.stats.active_connections.fetch_add(1, Ordering::Relaxed);
        let proxy = proxy.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            match &snap.tls {
                Some(tls) => {
                    Box::pin(serve_tls(&proxy, stream, peer, tls, &snap, shutdown)).await;
                }
                None => {
                    // h2c with prior knowledge is recognised by its preface when HTTP/2 is on.
                    let mode = if snap.lb.http2 { Mode::Auto } else { Mode::H1 };
                    let conn = ConnInfo {
                        peer,
                        fwd: Arc::new(headers::Forwarded::new(peer, snap.port)),
                        tls: None,
                        capture: None,
                        inflight: Arc::default(),
                        draining: Arc::default(),
                    };
                    serve_connection(&proxy, stream, conn, mode, &snap, shutdown).await;
                }
            }
            proxy.stats.active_connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Completes the TLS handshake of an HTTPS listener's connection and serves it (boxed by the
/// caller: a plain connection's task does not carry room for TLS state).
async fn serve_tls(
    proxy: &Arc<Proxy>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: &crate::snapshot::TlsSnapshot,
    snap: &ListenerSnapshot,
    shutdown: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
    let timeout = snap.limits.handshake_timeout;
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let (_, conn) = stream.get_ref();
            let sni = conn.server_name().map(str::to_string);
            let info = TlsInfo {
                version: conn.protocol_version().map_or("-", tls::version_name),
                cipher: conn.negotiated_cipher_suite().map_or("-", tls::cipher_name),
                certificate_arn: tls::select(&tls.certificates, sni.as_deref())
                    .map(|c| c.arn.clone()),
                sni,
            };
            let mode = if conn.alpn_protocol() == Some(b"h2") { Mode::H2 } else { Mode::H1 };
            let conn = ConnInfo {
                peer,
                fwd: Arc::new(headers::Forwarded::new(peer, snap.port)),
                tls: Some(Arc::new(info)),
                capture: None,
                inflight: Arc::default(),
                draining: Arc::default(),
            };
            serve_connection(proxy, stream, conn, mode, snap, shutdown).await;
        }
        Ok(Err(e)) => {
            proxy.stats.tls_negotiation_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            proxy.stats.tls_negotiation_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "TLS handshake timed out");
        }
    }
}

/// Answers a plain-HTTP connection shed at the connection limit with a 503 and closes it. The
/// client's request is read (and thrown away) for a moment so that closing does not reset the
/// connection before the client has read the answer. At most [`MAX_SHEDDING`] at once; beyond
/// that the connection is closed without an answer.
fn shed(stream: tokio::net::TcpStream, proxy: &Proxy, server_header: bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(permit) = proxy.shedding.clone().try_acquire_owned() else {
        return;
    };
    proxy.stats.record_elb(503);
    tokio::spawn(async move {
        let _permit = permit;
        let mut stream = stream;
        let answer = responses::raw_error(503, server_header);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            stream.write_all(&answer).await?;
            stream.shutdown().await?;
            let mut sink = [0u8; 4096];
            let mut left = 64 * 1024usize;
            while left > 0 {
                let n = stream.read(&mut sink).await?;
                if n == 0 {
                    break;
                }
                left = left.saturating_sub(n);
            }
            Ok::<_, io::Error>(())
        })
        .await;
    });
}

/// Which HTTP versions a connection may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// HTTP/1.1 only (ALPN `http/1.1` or none, or HTTP/2 disabled).
    H1,
    /// HTTP/2 only (ALPN `h2`).
    H2,
    /// HTTP/1.1, or HTTP/2 when the connection starts with the h2 preface (h2c).
    Auto,
}

/// What the request path knows of the client connection.
#[derive(Debug, Clone)]
struct ConnInfo {
    peer: SocketAddr,
    /// The X-Forwarded-For/-Port values of this connection.
    fwd: Arc<headers::Forwarded>,
    tls: Option<Arc<TlsInfo>>,
    /// Raw head bytes of HTTP/1.x requests on this connection.
    capture: Option<Arc<HeadCapture>>,
    /// Requests of this connection being handled.
    inflight: Arc<AtomicUsize>,
    /// The listener is draining: HTTP/1 responses carry `Connection: close`.
    draining: Arc<std::sync::atomic::AtomicBool>,
}

/// Counts a request in flight on its connection while alive.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(c: &Arc<AtomicUsize>) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        Self(c.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_connection<I>(
    proxy: &Arc<Proxy>,
    io: I,
    conn: ConnInfo,
    mode: Mode,
    snap: &ListenerSnapshot,
    mut shutdown: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if mode == Mode::H2 {
        // Boxed: a connection's task stays as small as a handshake's state while that lasts.
        Box::pin(serve_general(proxy, io, conn, Mode::H2, snap, shutdown)).await;
        return;
    }
    let (io, prefix) = if fast::enabled() {
        match fast::serve(proxy, io, &conn, &mut shutdown).await {
            fast::Outcome::Done => return,
            fast::Outcome::Fallback(io, prefix) => (io, prefix),
        }
    } else {
        (io, Vec::new())
    };
    let (io, prefix, mode) = if mode == Mode::Auto {
        match sniff(io, prefix, snap.lb.idle_timeout, &mut shutdown).await {
            Some((io, prefix, true)) => (io, prefix, Mode::H2),
            Some((io, prefix, false)) => (io, prefix, Mode::H1),
            None => return,
        }
    } else {
        (io, prefix, mode)
    };
    // Boxed: a connection's task stays as small as the fast path's state while it lasts.
    let io = fast::Rewind::new(io, prefix);
    Box::pin(serve_general(proxy, io, conn, mode, snap, shutdown)).await;
}

/// The client preface an HTTP/2 connection starts with (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads from a plain connection (after the bytes already in `prefix`) until it is clear
/// whether it starts with the HTTP/2 preface (h2c with prior knowledge) or not; returns the
/// stream, every byte read, and whether it is HTTP/2. `None`: the connection closed, or stayed
/// silent for the idle timeout — or, once the listener drains, for [`DRAIN_QUIET`] (as a quiet
/// HTTP/1 connection would be closed; the drain stays signalled for the server that follows).
async fn sniff<I>(
    mut io: I,
    mut prefix: Vec<u8>,
    idle: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(I, Vec<u8>, bool)>
where
    I: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut deadline = tokio::time::Instant::now() + idle;
    let mut draining = false;
    while prefix.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&prefix) {
        if prefix.capacity() == prefix.len() {
            prefix.reserve(4096);
        }
        tokio::select! {
            r = tokio::time::timeout_at(deadline, io.read_buf(&mut prefix)) => match r {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            },
            _ = shutdown.changed(), if !draining => {
                draining = true;
                shutdown.mark_changed();
                deadline = deadline.min(tokio::time::Instant::now() + DRAIN_QUIET);
            }
        }
    }
    let h2 = prefix.starts_with(H2_PREFACE);
    Some((io, prefix, h2))
}

/// Serves a connection on the general path: hyper's HTTP/1.1 server or Weir's HTTP/2 server
/// ([`h2`]), with the idle watchdog, the 408 for a stalled head, and draining.
async fn serve_general<I>(
    proxy: &Arc<Proxy>,
    io: I,
    conn: ConnInfo,
    mode: Mode,
    snap: &ListenerSnapshot,
    shutdown: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let h2 = mode == Mode::H2;
    let (mut io, handle) = ClientIo::new(io, !h2, Some(proxy.stats.clone()));
    let mut conn = conn;
    conn.capture = Some(handle.capture.clone());
    // Shared by the connection's requests: one reference count per request, not one per field.
    let conn = Arc::new(conn);
    if h2 {
        io.coalesce_writes();
        let served = h2::serve(proxy, io, conn.clone(), snap);
        supervise(proxy, served, true, &conn, &handle, snap, shutdown).await;
        return;
    }
    let p = proxy.clone();
    let c = conn.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        p.clone().handle(Box::new(req.map(ClientBody::Hyper)), c.clone())
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(snap.lb.idle_timeout)
        .keep_alive(true)
        .max_buf_size(snap.limits.max_header_bytes + 16 * 1024)
        .max_headers(MAX_HEADERS);
    let served = builder.serve_connection(TokioIo::new(io), svc).with_upgrades();
    supervise(proxy, H1Conn(Box::pin(served)), false, &conn, &handle, snap, shutdown).await;
}

/// A client connection being served, by hyper's HTTP/1.1 server or Weir's HTTP/2 server.
trait Served: Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>> + Unpin {
    /// Stops taking new requests: HTTP/1 closes after the response in progress, HTTP/2 sends
    /// GOAWAY and closes once its streams are done.
    fn graceful_shutdown(&mut self);
}

/// hyper's HTTP/1.1 server connection (with upgrades) as a [`Served`].
struct H1Conn<C>(Pin<Box<C>>);

impl<T, S> Future for H1Conn<hyper::server::conn::http1::UpgradeableConnection<T, S>>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<(), Box<dyn std::error::Error + Send + Sync>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx).map_err(Into::into)
    }
}

impl<T, S> Served for H1Conn<hyper::server::conn::http1::UpgradeableConnection<T, S>>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(&mut self) {
        self.0.as_mut().graceful_shutdown();
    }
}

/// Runs a served connection to its end: closes it after the idle timeout with nothing in
/// flight, answers a request head that stalled with 408, and drains it when the listener
/// stops (with GOAWAY when `h2`: the connection speaks HTTP/2).
async fn supervise<S, I>(
    proxy: &Arc<Proxy>,
    mut conn: S,
    h2: bool,
    info: &ConnInfo,
    handle: &crate::client_io::ClientIoHandle<I>,
    snap: &ListenerSnapshot,
    mut shutdown: watch::Receiver<bool>,
) where
    S: Served,
    I: tokio::io::AsyncWrite + Unpin,
{
    let peer = info.peer;
    let inflight = &info.inflight;
    // The idle timeout: a connection on which nothing moved for that long, with no request
    // in flight and no request head arriving (that one gets a 408 below), closes.
    let idle = snap.lb.idle_timeout;
    let capture = &handle.capture;
    let watchdog = async {
        loop {
            tokio::time::sleep((idle / 4).max(Duration::from_millis(100))).await;
            // A started head is left to hyper's 408 for one more idle period.
            let grace = if capture.request_started() { idle * 2 } else { idle };
            if inflight.load(Ordering::Relaxed) == 0 && capture.idle_for() >= grace {
                break;
            }
        }
    };
    tokio::select! {
        _ = watchdog => {
            tracing::debug!(%peer, "closing an idle client connection");
            conn.graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
        r = &mut conn => {
            if let Err(e) = r {
                let timed_out =
                    e.downcast_ref::<hyper::Error>().is_some_and(|h| h.is_timeout());
                if timed_out && handle.capture.request_started() {
                    // A request began but its head did not arrive within the idle timeout.
                    proxy.stats.record_elb(408);
                    tracing::debug!(%peer, elb_status_code = 408, "request head timed out");
                    handle.write_and_close(&responses::raw_error(408, snap.server_header)).await;
                } else {
                    tracing::debug!(%peer, error = %e, "client connection ended with an error");
                }
            }
        }
        _ = shutdown.changed() => {
            // Draining (the listener stops: removed, or a binary upgrade). An HTTP/1
            // connection answers its next requests with `Connection: close` (the client closes
            // after reading it, so no request is ever caught by a close) and is closed after a
            // moment with nothing in flight and nothing arriving. HTTP/2 gets GOAWAY: at once
            // when the listener is removed; in an upgrade, once idle for a moment or when the
            // patience given to `ListenerHandle::drain` runs out.
            info.draining.store(true, Ordering::Relaxed);
            let goaway_at = proxy.goaway_at.lock().ok().and_then(|g| *g);
            let mut goaway_sent = false;
            loop {
                let quiet = inflight.load(Ordering::Relaxed) == 0
                    && handle.capture.idle_for() >= DRAIN_QUIET;
                if h2 {
                    let due = goaway_at.is_none_or(|at| tokio::time::Instant::now() >= at);
                    if !goaway_sent && (quiet || due) {
                        conn.graceful_shutdown();
                        goaway_sent = true;
                    }
                } else if quiet {
                    conn.graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
                    return;
                }
                tokio::select! {
                    _ = &mut conn => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
}

/// Counts and logs a request whose client went away before the response (status 460), with an
/// access-log entry when logging is on.
struct ClientClosedGuard<'a> {
    stats: &'a ListenerStats,
    peer: SocketAddr,
    armed: bool,
    /// The access-log record begun, where to write it, and when the request was taken up.
    /// Boxed: a request's state (which holds this guard) keeps one pointer when nothing is
    /// logged, not a whole record.
    entry: Option<Box<(LogRecord, Arc<AccessLog>, std::time::Instant)>>,
}

impl Drop for ClientClosedGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.stats.client_closed_460.fetch_add(1, Ordering::Relaxed);
            tracing::info!(client = %self.peer, elb_status_code = 460, "client closed the connection before the response");
            if let Some(entry) = self.entry.take() {
                let (mut rec, log, started) = *entry;
                rec.elb_status = 460;
                rec.request_processing = started.elapsed().as_secs_f64();
                rec.target_processing = -1.0;
                rec.response_processing = -1.0;
                rec.time_us = now_us();
                crate::access_log::log(&log, &rec);
            }
        }
    }
}

/// What routing learned about a request, for its access-log entry.
struct Note {
    priority: i64,
    action: &'static str,
    target: Option<SocketAddr>,
    target_status: Option<u16>,
    tg_arn: Option<String>,
    trace_id: Option<String>,
    /// Whether the request has an access-log entry (the fields only it uses are kept).
    logging: bool,
    classification: Option<(&'static str, String)>,
    sent_at: Option<std::time::Instant>,
    head_at: Option<std::time::Instant>,
}

impl Default for Note {
    fn default() -> Self {
        Self {
            priority: -1,
            action: "-",
            target: None,
            target_status: None,
            tg_arn: None,
            trace_id: None,
            logging: false,
            classification: None,
            sent_at: None,
            head_at: None,
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// A response body that counts what it sends and writes the access-log entry when it ends
/// (or is dropped because the client went away).
struct LoggedBody {
    inner: ProxyBody,
    sent: u64,
    entry: Option<(LogRecord, Arc<AccessLog>)>,
}

impl LoggedBody {
    fn finish(&mut self) {
        if let Some((mut rec, log)) = self.entry.take() {
            rec.sent_bytes += self.sent;
            rec.time_us = now_us();
            crate::access_log::log(&log, &rec);
        }
    }
}

impl hyper::body::Body for LoggedBody {
    type Data = Bytes;
    type Error = BodyError;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BodyError>>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            std::task::Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    self.sent += d.len() as u64;
                }
            }
            std::task::Poll::Ready(None) => self.finish(),
            _ => {}
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A response the load balancer wrote itself: drops its Server header when the listener says so.
fn own(mut r: Response<ProxyBody>, snap: &ListenerSnapshot) -> Response<ProxyBody> {
    if !snap.server_header {
        r.headers_mut().remove(header::SERVER);
    }
    r
}

fn connect_timed_out(e: &hyper_util::client::legacy::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = src {
        if s.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::TimedOut) {
            return true;
        }
        // HttpConnector reports its connect timeout as a ConnectError whose text says so.
        if s.to_string().contains("timeout") || s.to_string().contains("timed out") {
            return true;
        }
        src = s.source();
    }
    false
}

fn host_without_port(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    h.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(h, |(h, _)| h)
}

/// Appends the Host a target sees for the client's `host` (ALB's rule): unchanged with
/// `preserve_host_header`, otherwise the name (IPv6 in brackets) with the listener's port unless
/// it is the scheme's default.
fn upstream_host(out: &mut Vec<u8>, host: &str, snap: &ListenerSnapshot, tls: bool) {
    if snap.lb.preserve_host_header {
        out.extend_from_slice(host.as_bytes());
        return;
    }
    let name = host_without_port(host);
    if name.contains(':') {
        out.push(b'[');
        out.extend_from_slice(name.as_bytes());
        out.push(b']');
    } else {
        out.extend_from_slice(name.as_bytes());
    }
    if snap.port != if tls { 443 } else { 80 } {
        out.push(b':');
        crate::http1::push_decimal(out, u64::from(snap.port));
    }
}

impl Proxy {
    // Plain functions returning `async move` blocks rather than `async fn`s: an `async fn`
    // moves its arguments into locals, so its state holds each of them twice (the request's
    // state is boxed and copied once per request; smaller is cheaper).
    #[allow(clippy::manual_async_fn)] // see above
    fn handle(
        self: Arc<Self>,
        req: Box<Request<ClientBody>>,
        conn: Arc<ConnInfo>,
    ) -> impl Future<Output = Result<Response<ProxyBody>, Infallible>> {
        async move {
            let snap = self.cell.load_full();
            let peer = conn.peer;
            let _inflight = InFlight::new(&conn.inflight);
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let entry = snap.access_log.as_ref().map(|log| {
                // The clock is read for the access log's processing times only.
                let started = std::time::Instant::now();
                Box::new((self.begin_entry(&req, &conn, &snap), log.clone(), started))
            });
            let mut guard = ClientClosedGuard { stats: &self.stats, peer, armed: true, entry };
            let mut note = Note { logging: guard.entry.is_some(), ..Note::default() };
            let mut error_reason = None;
            let http1 = req.version() < Version::HTTP_2;
            let resp = match self.route(req, &conn, &snap, &mut note).await {
                Ok(r) => r,
                Err(e) => {
                    self.stats.record_elb(e.status);
                    tracing::debug!(client = %peer, status = e.status, reason = e.reason, "request failed");
                    error_reason = Some(e.reason);
                    let mut r = own(responses::error_page(e.status), &snap);
                    if e.status == 429 {
                        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                    }
                    r
                }
            };
            guard.armed = false;
            let mut resp = resp;
            if http1 && conn.draining.load(Ordering::Relaxed) {
                resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            let Some(entry) = guard.entry.take() else {
                return Ok(resp);
            };
            let (mut rec, log, started) = *entry;
            let done = std::time::Instant::now();
            let span = |a: std::time::Instant, b: std::time::Instant| {
                b.saturating_duration_since(a).as_secs_f64()
            };
            match (note.sent_at, note.head_at) {
                (Some(sent), Some(head)) => {
                    rec.request_processing = span(started, sent);
                    rec.target_processing = span(sent, head);
                    rec.response_processing = span(head, done);
                }
                _ => {
                    rec.request_processing = span(started, done);
                    rec.target_processing = -1.0;
                    rec.response_processing = -1.0;
                }
            }
            rec.elb_status = resp.status().as_u16();
            rec.target = note.target;
            rec.target_status = note.target_status;
            rec.target_group_arn = note.tg_arn;
            rec.matched_rule_priority = note.priority;
            rec.actions_executed = note.action;
            rec.error_reason = error_reason;
            if let Some(t) = note.trace_id {
                rec.trace_id = t;
            }
            if let Some((c, r)) = note.classification {
                rec.classification = Some(c);
                rec.classification_reason = Some(r);
            }
            if note.action == "redirect" {
                rec.redirect_url = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
            }
            if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                rec.kind = if conn.tls.is_some() { "wss" } else { "ws" };
            }
            rec.sent_bytes = 12
                + resp.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>()
                    as u64
                + 2;
            let (parts, body) = resp.into_parts();
            let body = LoggedBody { inner: body, sent: 0, entry: Some((rec, log)) };
            Ok(Response::from_parts(parts, BodyExt::boxed(body)))
        }
    }

    /// The parts of an access-log entry known when the request arrives.
    fn begin_entry(
        &self,
        req: &Request<ClientBody>,
        conn: &ConnInfo,
        snap: &ListenerSnapshot,
    ) -> LogRecord {
        let h2 = req.version() == Version::HTTP_2;
        let grpc = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        let kind = match (&conn.tls, h2, grpc) {
            (Some(_), true, true) => "grpcs",
            (Some(_), true, false) => "h2",
            (Some(_), false, _) => "https",
            (None, _, _) => "http",
        };
        let scheme = if conn.tls.is_some() { "https" } else { "http" };
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let host = host_without_port(&host).to_string();
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let version = match req.version() {
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        };
        let head = req.method().as_str().len()
            + pq.len()
            + 12
            + req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>()
            + 2;
        let body = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        LogRecord {
            kind,
            elb: snap.lb.full_name.clone(),
            client: Some(conn.peer),
            received_bytes: head as u64 + body,
            request: format!("{} {scheme}://{host}:{}{pq} {version}", req.method(), snap.port),
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            ssl_cipher: conn.tls.as_ref().map(|t| t.cipher),
            ssl_protocol: conn.tls.as_ref().map(|t| t.version),
            trace_id: req
                .headers()
                .get("x-amzn-trace-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string(),
            domain_name: conn.tls.as_ref().and_then(|t| t.sni.clone()),
            chosen_cert_arn: conn.tls.as_ref().and_then(|t| t.certificate_arn.clone()),
            request_creation_us: now_us(),
            ..Default::default()
        }
    }

    #[allow(clippy::manual_async_fn)] // not an `async fn`: see `handle`
    fn route<'a>(
        &'a self,
        mut req: Box<Request<ClientBody>>,
        conn: &'a ConnInfo,
        snap: &'a ListenerSnapshot,
        note: &'a mut Note,
    ) -> impl Future<Output = Result<Response<ProxyBody>, ProxyError>> + 'a {
        async move {
            let uri = req.uri();
            let target_len = uri.scheme_str().map_or(0, |s| s.len() + 3)
                + uri.authority().map_or(0, |a| a.as_str().len())
                + uri.path_and_query().map_or(1, |p| p.as_str().len());
            let line_len = req.method().as_str().len() + target_len + 10;
            let mut longest_header = 0;
            let mut head = line_len;
            for (k, v) in req.headers() {
                let n = k.as_str().len() + v.len() + 2;
                longest_header = longest_header.max(n);
                head += n + 2;
            }
            if line_len > MAX_LINE_BYTES || longest_header > MAX_LINE_BYTES {
                return Err(ProxyError::bad_request("LineTooLong"));
            }
            if head > snap.limits.max_header_bytes {
                return Err(ProxyError::head_too_large());
            }
            if !self.req_rates.allow(snap.limits.max_request_rate_per_source, conn.peer.ip()) {
                return Err(ProxyError::rate_limited());
            }
            let max_body = snap.limits.max_body_bytes;
            if max_body > 0 && hyper::body::Body::size_hint(req.body()).lower() > max_body {
                return Err(ProxyError::body_too_large());
            }
            let raw = conn.capture.as_ref().and_then(|c| c.raw_head());
            let class = desync::classify(&req, raw.as_deref());
            if class.tier != desync::Tier::Compliant {
                note.classification = Some((class.tier.as_str(), class.reason.to_string()));
                self.stats.desync_non_compliant.fetch_add(1, Ordering::Relaxed);
                tracing::info!(client = %conn.peer, classification = class.tier.as_str(), reason = %class.reason, "non-compliant request");
            }
            let close_after = match desync::verdict(snap.lb.desync_mode, class.tier) {
                Verdict::Block => return Err(ProxyError::bad_request("DesyncMitigation")),
                Verdict::ForwardAndClose => true,
                Verdict::Forward => false,
            };
            let host_header = match req.headers().get(header::HOST) {
                Some(h) => Some(
                    h.to_str()
                        .map_err(|_| ProxyError::bad_request("InvalidHostHeader"))?
                        .to_string(),
                ),
                None => req.uri().authority().map(|a| a.to_string()),
            };
            let host_full = match host_header {
                Some(h) => h,
                None if req.version() == Version::HTTP_11 => {
                    return Err(ProxyError::bad_request("MissingHostHeader"))
                }
                None => String::new(),
            };
            if snap.lb.drop_invalid_header_fields {
                let bad: Vec<_> = req
                    .headers()
                    .keys()
                    .filter(|n| headers::is_invalid_header_name(n))
                    .cloned()
                    .collect();
                for n in bad {
                    req.headers_mut().remove(n);
                }
            }
            let host = host_without_port(&host_full);
            let uri = req.uri();
            let view = RequestView {
                method: req.method().as_str(),
                host,
                path: uri.path(),
                query: uri.query(),
                headers: req.headers(),
                source: conn.peer.ip(),
            };
            let (priority, action) = snap.rules.evaluate(&view);
            note.priority = priority.map_or(0, i64::from);
            note.action = match action.as_ref() {
                CompiledAction::Fixed(_) => "fixed-response",
                CompiledAction::Redirect(_) => "redirect",
                CompiledAction::Forward(_) => "forward",
            };
            let mut resp = match action.as_ref() {
                CompiledAction::Fixed(f) => Ok::<_, ProxyError>(own(responses::fixed(f), snap)),
                CompiledAction::Redirect(r) => {
                    let parts = UrlParts {
                        protocol: if conn.tls.is_some() { "https" } else { "http" },
                        host,
                        port: snap.port,
                        path: uri.path(),
                        query: uri.query().unwrap_or(""),
                    };
                    Ok(own(responses::redirect(r, &parts), snap))
                }
                CompiledAction::Forward(fwd) => {
                    self.forward(req, conn, &host_full, snap, fwd, close_after, note).await
                }
            }?;
            if close_after {
                resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(resp)
        }
    }

    #[allow(clippy::too_many_arguments)] // the request's parts, each used once
    #[allow(clippy::manual_async_fn)] // not an `async fn`: see `handle`
    fn forward<'a>(
        &'a self,
        mut req: Box<Request<ClientBody>>,
        conn: &'a ConnInfo,
        host: &'a str,
        snap: &'a ListenerSnapshot,
        fwd: &'a ForwardAction,
        close_after: bool,
        note: &'a mut Note,
    ) -> impl Future<Output = Result<Response<ProxyBody>, ProxyError>> + 'a {
        async move {
            // The target group: the one the client's AWSALBTG cookie names while it can serve,
            // otherwise one picked by weight.
            let tg_cookie = fwd.group_stickiness.and_then(|_| {
                sticky::cookie(req.headers(), sticky::TG_COOKIE)
                    .or_else(|| sticky::cookie(req.headers(), sticky::TG_COOKIE_CORS))
            });
            let sticky_group = tg_cookie.and_then(|t| {
                fwd.groups.iter().find(|g| {
                    g.weight > 0
                        && sticky::group_matches(t, &g.group.arn)
                        && g.group.selector.targets().iter().any(|c| c.is_routable())
                })
            });
            let group = match sticky_group {
                Some(g) => g,
                None if fwd.groups.len() == 1 => &fwd.groups[0],
                None => {
                    let weights: Vec<u32> = fwd.groups.iter().map(|g| g.weight).collect();
                    pick_weighted(&weights)
                        .and_then(|i| fwd.groups.get(i))
                        .ok_or_else(ProxyError::no_target)?
                }
            };
            let tg = &group.group;
            if note.logging {
                note.tg_arn = Some(tg.arn.clone());
            }

            // The target: the one the stickiness cookie names while it may receive traffic.
            let sticky_name = match &tg.stickiness {
                Stickiness::None => None,
                Stickiness::LbCookie(_) => Some(sticky::LB_COOKIE),
                Stickiness::AppCookie { .. } => Some(sticky::APP_COOKIE),
            };
            let sticky_target = sticky_name
                .and_then(|n| {
                    sticky::cookie(req.headers(), n).or_else(|| {
                        (n == sticky::LB_COOKIE)
                            .then(|| sticky::cookie(req.headers(), sticky::LB_COOKIE_CORS))
                            .flatten()
                    })
                })
                .and_then(|t| sticky::parse_target_token(t, &tg.arn))
                .and_then(|k| tg.selector.pick_key(&k));
            let mut target = match sticky_target.or_else(|| tg.selector.pick(None)) {
                Some(t) => t,
                None => return Err(ProxyError::no_target()),
            };

            let client_upgrade = is_upgrade(&req).then(|| hyper::upgrade::on(&mut *req));
            let upgrade_proto = req.headers().get(header::UPGRADE).cloned();
            let (mut parts, body) = req.into_parts();
            // Shares the URI's bytes (no copy).
            let pq = parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
            let from_h2 = parts.version == Version::HTTP_2;
            // `TE: trailers` is hop-by-hop, but gRPC servers require it on HTTP/2: kept for those.
            let te_trailers =
                parts.headers.get_all(header::TE).iter().any(|v| {
                    v.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim() == "trailers"))
                });
            headers::strip_hop_by_hop(&mut parts.headers);
            if from_h2 {
                headers::join_cookies(&mut parts.headers);
            }
            // What the load balancer sets, gathered apart from the client's fields: the pooled
            // client writes both into the head at once, without inserting into the map.
            let mut set = headers::Outgoing::new();
            let mut host_out = Vec::with_capacity(host.len() + 8);
            upstream_host(&mut host_out, host, snap, conn.tls.is_some());
            if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(host_out)) {
                set.set(header::HOST, v);
            }
            let proto = if conn.tls.is_some() { "https" } else { "http" };
            headers::forwarded(&parts.headers, &conn.fwd, proto, &snap.lb, &mut set)?;
            if let (Some(t), true) = (&conn.tls, snap.lb.tls_headers) {
                headers::tls_version_and_cipher(&mut set, t.version, t.cipher);
            }
            let now = crate::clock::coarse_epoch_secs();
            note.trace_id = headers::trace_id(&parts.headers, now, note.logging, &mut set);
            if close_after {
                // An ambiguous request: its target connection is not reused either.
                set.set(header::CONNECTION, HeaderValue::from_static("close"));
            }
            if let (Some(_), Some(u)) = (&client_upgrade, &upgrade_proto) {
                set.set(header::CONNECTION, HeaderValue::from_static("upgrade"));
                set.set(header::UPGRADE, u.clone());
            }
            let version = match tg.protocol {
                TargetProtocol::Http1 | TargetProtocol::Https1 => Version::HTTP_11,
                TargetProtocol::H2c | TargetProtocol::Https2 => Version::HTTP_2,
            };
            if version == Version::HTTP_2 && te_trailers {
                set.set(header::TE, HeaderValue::from_static("trailers"));
            }

            // A request without a body to an HTTP/1.1 target goes over the listener's own pool
            // (`pooled`); anything else through hyper-util's client.
            let pooled = tg.protocol == TargetProtocol::Http1
                && client_upgrade.is_none()
                && !close_after
                && hyper::body::Body::is_end_stream(&body)
                && parts.headers.get(header::CONTENT_LENGTH).is_none_or(|v| v.as_bytes() == b"0")
                && fast::enabled();
            let pooled_head = if pooled {
                Some(set.write_head(parts.method.as_str(), pq.as_str(), &parts.headers))
            } else {
                set.apply(&mut parts.headers);
                None
            };
            let mut retried = false;
            tg.stats.requests.fetch_add(1, Ordering::Relaxed);
            let sent_at = std::time::Instant::now();
            note.sent_at = Some(sent_at);
            if let Some(head) = pooled_head {
                let head_request = parts.method == http::Method::HEAD;
                let idempotent = parts.method.is_idempotent();
                let resp = loop {
                    let addr = target.target().addr;
                    note.target = Some(addr);
                    let sent = pooled::send(
                        &self.fast_pool,
                        addr,
                        &head,
                        head_request,
                        idempotent,
                        snap.lb.idle_timeout,
                        (!retried).then_some(sent_at),
                    )
                    .await;
                    match sent {
                        Ok(r) => break r,
                        Err(pooled::SendError::Connect(e)) => {
                            self.stats.target_connection_errors.fetch_add(1, Ordering::Relaxed);
                            tg.stats.target_connection_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(target = %addr, error = %e, "target connection failed");
                            // Nothing reached this target: try once more on another one.
                            match (!retried)
                                .then(|| tg.selector.pick(Some(target.target())))
                                .flatten()
                            {
                                Some(t) => {
                                    retried = true;
                                    target = t;
                                }
                                None if e.kind() == io::ErrorKind::TimedOut => {
                                    return Err(ProxyError::connect_timeout())
                                }
                                None => return Err(ProxyError::connect_refused()),
                            }
                        }
                        Err(pooled::SendError::Timeout) => return Err(ProxyError::target_timeout()),
                        Err(e) => {
                            tracing::debug!(target = %addr, error = ?e, "target request failed");
                            return Err(ProxyError::target_failed());
                        }
                    }
                };
                return Ok(self.respond(resp, None, None, None, target, tg, fwd, sent_at, note));
            }
            let max_body = snap.limits.max_body_bytes;
            let (mut body, mut slot) = UpstreamBody::new(body, max_body);
            let resp = loop {
                let addr = target.target().addr;
                note.target = Some(addr);
                let uri = Uri::try_from(format!("{}://{addr}{pq}", tg.protocol.scheme()))
                    .map_err(|_| ProxyError::bad_request("InvalidRequestTarget"))?;
                let mut up = Request::new(body);
                *up.method_mut() = parts.method.clone();
                *up.uri_mut() = uri;
                *up.version_mut() = version;
                *up.headers_mut() = parts.headers.clone();
                let result = tokio::time::timeout(
                    snap.lb.idle_timeout,
                    self.upstreams.request(tg.protocol, up),
                )
                .await;
                match result {
                    Err(_) => return Err(ProxyError::target_timeout()),
                    Ok(Err(e)) if e.is_connect() => {
                        self.stats.target_connection_errors.fetch_add(1, Ordering::Relaxed);
                        tg.stats.target_connection_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(target = %addr, error = ?e, "target connection failed");
                        // Nothing reached this target: try once more on another one, with the
                        // body the client is still holding.
                        let next =
                            (!retried).then(|| tg.selector.pick(Some(target.target()))).flatten();
                        let back = slot.take_back();
                        match (next, back) {
                            (Some(t), Some(b)) => {
                                retried = true;
                                target = t;
                                (body, slot) = UpstreamBody::new(b, max_body);
                                continue;
                            }
                            _ => {
                                return Err(if connect_timed_out(&e) {
                                    ProxyError::connect_timeout()
                                } else {
                                    ProxyError::connect_refused()
                                })
                            }
                        }
                    }
                    Ok(Err(_)) if slot.too_large() => return Err(ProxyError::body_too_large()),
                    Ok(Err(e)) => {
                        tracing::debug!(target = %addr, error = ?e, "target request failed");
                        return Err(ProxyError::target_failed());
                    }
                    Ok(Ok(r)) => break r,
                }
            };
            let mut resp = resp;
            let target_upgrade = (resp.status() == http::StatusCode::SWITCHING_PROTOCOLS
                && client_upgrade.is_some())
            .then(|| hyper::upgrade::on(&mut resp));
            let resp = resp.map(|b| b.map_err(BodyError::from));
            Ok(self.respond(
                resp,
                client_upgrade,
                target_upgrade,
                upgrade_proto,
                target,
                tg,
                fwd,
                sent_at,
                note,
            ))
        }
    }

    /// The target's response for the client: counted, hop-by-hop fields dropped, stickiness
    /// cookies added, a WebSocket tunnel set up when both sides agreed to one; the target stays
    /// outstanding until the body is done.
    #[allow(clippy::too_many_arguments)] // the request's state, each used once
    fn respond<B>(
        &self,
        resp: Response<B>,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
        target_upgrade: Option<hyper::upgrade::OnUpgrade>,
        upgrade_proto: Option<HeaderValue>,
        target: weir_balance::OutstandingGuard,
        tg: &crate::snapshot::TargetGroupRuntime,
        fwd: &ForwardAction,
        sent_at: std::time::Instant,
        note: &mut Note,
    ) -> Response<ProxyBody>
    where
        B: hyper::body::Body<Data = Bytes, Error = BodyError> + Send + Sync + 'static,
    {
        self.stats.record_target(resp.status().as_u16());
        let head_at = std::time::Instant::now();
        tg.stats
            .record_response(resp.status().as_u16(), head_at.saturating_duration_since(sent_at));
        note.target_status = Some(resp.status().as_u16());
        note.head_at = Some(head_at);
        let (mut parts, body) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);

        // Stickiness cookies.
        let key = &target.target().key;
        match &tg.stickiness {
            Stickiness::None => {}
            Stickiness::LbCookie(d) => {
                let v = sticky::target_token(&tg.arn, key);
                append_cookie(&mut parts.headers, sticky::LB_COOKIE, &v, *d, false);
                append_cookie(&mut parts.headers, sticky::LB_COOKIE_CORS, &v, *d, true);
            }
            Stickiness::AppCookie { name, duration } => {
                if sticky::sets_cookie(&parts.headers, name) {
                    let v = sticky::target_token(&tg.arn, key);
                    append_cookie(&mut parts.headers, sticky::APP_COOKIE, &v, *duration, false);
                }
            }
        }
        if let Some(d) = fwd.group_stickiness {
            let v = sticky::group_token(&tg.arn);
            append_cookie(&mut parts.headers, sticky::TG_COOKIE, &v, d, false);
            append_cookie(&mut parts.headers, sticky::TG_COOKIE_CORS, &v, d, true);
        }

        if let (Some(client), Some(upstream)) = (client_upgrade, target_upgrade) {
            parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            if let Some(u) = upgrade_proto {
                parts.headers.insert(header::UPGRADE, u);
            }
            self.stats.websocket_upgrades.fetch_add(1, Ordering::Relaxed);
            // The tunnel stays outstanding on the target until either side closes it.
            tokio::spawn(async move {
                let _held = target;
                let (client, upstream) = match tokio::join!(client, upstream) {
                    (Ok(c), Ok(u)) => (c, u),
                    _ => return,
                };
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
            return Response::from_parts(parts, body.boxed());
        }
        // The request stays outstanding on the target until its response body is done (one
        // box for the body and this).
        let body = body.map_err(move |e| {
            let _held = &target;
            e
        });
        Response::from_parts(parts, body.boxed())
    }
}

fn append_cookie(h: &mut http::HeaderMap, name: &str, value: &str, d: Duration, cors: bool) {
    if let Some(v) = sticky::set_cookie(name, value, d, cors) {
        h.append(header::SET_COOKIE, v);
    }
}

/// Whether the request asks for a WebSocket upgrade, the only upgrade ALB carries. Any other
/// (`h2c` above all: a target that accepted it would give the client an HTTP/2 tunnel past
/// the listener's rules, the "h2c smuggling" attack) is forwarded as a plain request, its
/// `Upgrade` header dropped with the other hop-by-hop ones.
fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().get_all(header::UPGRADE).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("websocket")))
        })
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

#[cfg(test)]
mod tests {
    use super::host_without_port;

    #[test]
    fn host_port_stripping() {
        assert_eq!(host_without_port("example.com:8080"), "example.com");
        assert_eq!(host_without_port("example.com"), "example.com");
        assert_eq!(host_without_port("[::1]:80"), "::1");
    }
}
