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
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{header, HeaderValue, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_balance::pick_weighted;

use crate::error::ProxyError;
use crate::headers;
use crate::responses::{self, ProxyBody, UrlParts};
use crate::rules::RequestView;
use crate::snapshot::{CompiledAction, ForwardGroup, ListenerSnapshot, SnapshotCell};
use crate::stats::ListenerStats;

/// How long the load balancer waits for a TCP connection to a target (ALB: 10 s).
pub const TARGET_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// ALB's limit on a whole request head; beyond it hyper answers 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// ALB's limit on the request line and on any single header line; beyond it the answer is 400.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

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
            let l = TcpListener::bind(a)
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("bind {a}: {e}")))?;
            let local = l.local_addr()?;
            let task = tokio::spawn(accept_loop(l, self.proxy.clone(), self.shutdown.subscribe()));
            self.bound.push(Bound { requested: *a, local, task });
        }
        Ok(())
    }

    /// Stops accepting and waits until every listening socket is closed. Open connections are
    /// told to finish their current request and close.
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
    client: Client<HttpConnector, Incoming>,
    stats: Arc<ListenerStats>,
}

/// Binds every address in `addrs` and serves the listener whose configuration is in `cell`.
pub async fn serve_listener(
    addrs: &[SocketAddr],
    cell: SnapshotCell,
) -> io::Result<ListenerHandle> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(TARGET_CONNECT_TIMEOUT));
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(55))
        .pool_timer(TokioTimer::new())
        .build(connector);
    let stats = Arc::new(ListenerStats::default());
    let proxy = Arc::new(Proxy { cell, client, stats: stats.clone() });
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
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            proxy.stats.new_connections.fetch_add(1, Ordering::Relaxed);
            proxy.stats.active_connections.fetch_add(1, Ordering::Relaxed);
            let idle = proxy.cell.load().lb.idle_timeout;
            let p = proxy.clone();
            let svc = service_fn(move |req| p.clone().handle(req, peer));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(idle)
                .keep_alive(true)
                .max_buf_size(MAX_HEAD_BYTES + 16 * 1024)
                .max_header_size(MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "client connection ended with an error");
                    }
                }
                _ = shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            proxy.stats.active_connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Counts and logs a request whose client went away before the response (status 460).
struct ClientClosedGuard<'a> {
    stats: &'a ListenerStats,
    peer: SocketAddr,
    armed: bool,
}

impl Drop for ClientClosedGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.stats.client_closed_460.fetch_add(1, Ordering::Relaxed);
            tracing::info!(client = %self.peer, elb_status_code = 460, "client closed the connection before the response");
        }
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

impl Proxy {
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let snap = self.cell.load_full();
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let mut guard = ClientClosedGuard { stats: &self.stats, peer, armed: true };
        let resp = match self.route(req, peer, &snap).await {
            Ok(r) => r,
            Err(e) => {
                self.stats.record_elb(e.status);
                tracing::debug!(client = %peer, status = e.status, reason = e.reason, "request failed");
                own(responses::error_page(e.status), &snap)
            }
        };
        guard.armed = false;
        Ok(resp)
    }

    async fn route(
        &self,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        snap: &ListenerSnapshot,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let line_len = req.method().as_str().len() + req.uri().to_string().len() + 10;
        let longest_header =
            req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 2).max().unwrap_or(0);
        if line_len > MAX_LINE_BYTES || longest_header > MAX_LINE_BYTES {
            return Err(ProxyError::bad_request("LineTooLong"));
        }
        let host_header = match req.headers().get(header::HOST) {
            Some(h) => Some(
                h.to_str().map_err(|_| ProxyError::bad_request("InvalidHostHeader"))?.to_string(),
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
        let host = host_without_port(&host_full).to_string();
        let uri = req.uri().clone();
        let view = RequestView {
            method: req.method().as_str(),
            host: &host,
            path: uri.path(),
            query: uri.query(),
            headers: req.headers(),
            source: peer.ip(),
        };
        let (_priority, action) = snap.rules.evaluate(&view);
        match action.as_ref() {
            CompiledAction::Fixed(f) => Ok(own(responses::fixed(f), snap)),
            CompiledAction::Redirect(r) => {
                let parts = UrlParts {
                    protocol: "http",
                    host: &host,
                    port: snap.port,
                    path: uri.path(),
                    query: uri.query().unwrap_or(""),
                };
                Ok(own(responses::redirect(r, &parts), snap))
            }
            CompiledAction::Forward(groups) => self.forward(req, peer, snap, groups).await,
        }
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        snap: &ListenerSnapshot,
        groups: &[ForwardGroup],
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let group = if groups.len() == 1 {
            &groups[0]
        } else {
            let weights: Vec<u32> = groups.iter().map(|g| g.weight).collect();
            pick_weighted(&weights).and_then(|i| groups.get(i)).ok_or_else(ProxyError::no_target)?
        };
        let target = group.group.selector.pick(None).ok_or_else(ProxyError::no_target)?;
        let addr = target.target().addr;

        let (mut parts, body) = req.into_parts();
        let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = Uri::try_from(format!("http://{addr}{pq}"))
            .map_err(|_| ProxyError::bad_request("InvalidRequestTarget"))?;
        parts.version = Version::HTTP_11;
        headers::strip_hop_by_hop(&mut parts.headers);
        headers::apply_forwarded(&mut parts.headers, peer, snap.port, "http", &snap.lb)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        headers::trace_id(&mut parts.headers, now);
        let upstream = Request::from_parts(parts, body);

        let result =
            tokio::time::timeout(snap.lb.idle_timeout, self.client.request(upstream)).await;
        let resp = match result {
            Err(_) => return Err(ProxyError::target_timeout()),
            Ok(Err(e)) if e.is_connect() => {
                self.stats.target_connection_errors.fetch_add(1, Ordering::Relaxed);
                let timed_out = connect_timed_out(&e);
                tracing::debug!(target = %addr, error = ?e, "target connection failed");
                return Err(if timed_out {
                    ProxyError::connect_timeout()
                } else {
                    ProxyError::connect_refused()
                });
            }
            Ok(Err(e)) => {
                tracing::debug!(target = %addr, error = ?e, "target request failed");
                return Err(ProxyError::target_failed());
            }
            Ok(Ok(r)) => r,
        };
        self.stats.record_target(resp.status().as_u16());
        let (mut parts, body) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        if parts.status == http::StatusCode::SWITCHING_PROTOCOLS {
            parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        // The request stays outstanding on the target until its response body is done.
        let body = body.map_err(move |e| {
            let _held = &target;
            e
        });
        Ok(Response::from_parts(parts, body.boxed()))
    }
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
