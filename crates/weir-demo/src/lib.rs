//! A small HTTP backend for quickstarts and tests: HTTP/1.1 and HTTP/2 (h2c prior knowledge,
//! or ALPN `h2` when started with TLS and a self-signed certificate).
//!
//! Every request is answered with `200` and a plain-text body: the backend's name on the first
//! line, then `METHOD PATH?QUERY`, then the request headers as received (so tests can check what
//! the load balancer forwarded). The response carries `x-backend: NAME`, `x-demo-version`
//! (the HTTP version the request arrived in) and `x-demo-peer` (the address the connection came
//! from, to check client-IP preservation). Special paths:
//! - `GET /health` answers with the configured health status (200 unless told otherwise).
//! - `POST /_demo/health?status=N` sets that status; `POST /_demo/delay?ms=N` delays every
//!   ordinary response by N ms; `GET /_demo/stats` reports connections and requests served.
//! - Requests from the load balancer's health checker (`User-Agent: ELB-HealthChecker/…`) are
//!   answered like any other but not counted in `requests`.
//! - Any request with `?delay_ms=N` is delayed by N ms, `?status=N` answers with status N, and
//!   `?set_cookie=NAME=VALUE` sets that cookie.
//! - `GET /_demo/ws` with a WebSocket upgrade echoes every message back.
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as AutoBuilder;
use tokio::task::JoinHandle;

/// Live settings and counters of one backend.
#[derive(Debug)]
pub struct DemoState {
    /// Name reported in responses.
    pub name: String,
    /// Status `/health` answers with.
    pub health_status: AtomicU16,
    /// Delay of ordinary responses, in ms.
    pub delay_ms: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Requests served (control requests and load-balancer health checks excluded).
    pub requests: AtomicU64,
}

/// A running backend; dropping it stops accepting.
#[derive(Debug)]
pub struct DemoBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Settings and counters.
    pub state: Arc<DemoState>,
    task: JoinHandle<()>,
}

impl Drop for DemoBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DemoBackend {
    /// Starts a backend named `name` on `addr` (port 0 picks a free port).
    pub async fn start(addr: SocketAddr, name: &str) -> io::Result<Self> {
        Self::start_with(addr, name, None).await
    }

    /// Starts a backend that speaks TLS with a fresh self-signed certificate (ALPN `h2` and
    /// `http/1.1`).
    pub async fn start_tls(addr: SocketAddr, name: &str) -> io::Result<Self> {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .map_err(io::Error::other)?;
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(c.key_pair.serialize_der()),
        );
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(vec![c.cert.der().clone()], key)
        .map_err(io::Error::other)?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self::start_with(addr, name, Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))).await
    }

    async fn start_with(
        addr: SocketAddr,
        name: &str,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> io::Result<Self> {
        let (listener, registration) = weir_sockets::tcp_listener(addr)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(DemoState {
            name: name.to_string(),
            health_status: AtomicU16::new(200),
            delay_ms: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            let _registration = registration;
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                st.connections.fetch_add(1, Ordering::Relaxed);
                let st = st.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(st.clone(), peer, req));
                    let builder = AutoBuilder::new(TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(stream).await {
                                let _ = builder
                                    .serve_connection_with_upgrades(TokioIo::new(s), svc)
                                    .await;
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                                .await;
                        }
                    }
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    /// Makes `/health` answer with `status`.
    pub fn set_health(&self, status: u16) {
        self.state.health_status.store(status, Ordering::Relaxed);
    }

    /// Delays ordinary responses by `ms`.
    pub fn set_delay_ms(&self, ms: u64) {
        self.state.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Requests served so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::Relaxed)
    }
}

fn param(query: Option<&str>, key: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn text(status: u16, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("text/plain"));
    r
}

/// Answers a WebSocket handshake and echoes every message until the client closes.
fn websocket(mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return text(400, "missing Sec-WebSocket-Key\n".into());
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        use futures_util::{SinkExt, StreamExt};
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                break;
            }
            if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                break;
            }
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut().insert("connection", hyper::header::HeaderValue::from_static("upgrade"));
    r.headers_mut().insert("upgrade", hyper::header::HeaderValue::from_static("websocket"));
    if let Ok(v) = hyper::header::HeaderValue::from_str(&accept) {
        r.headers_mut().insert("sec-websocket-accept", v);
    }
    r
}

async fn handle(
    st: Arc<DemoState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    if path == "/_demo/ws" && req.headers().contains_key("upgrade") {
        st.requests.fetch_add(1, Ordering::Relaxed);
        return Ok(websocket(req));
    }
    let version = format!("{:?}", req.version());
    let query = req.uri().query().map(str::to_string);
    match (req.method().as_str(), path.as_str()) {
        (_, "/health") => {
            let s = st.health_status.load(Ordering::Relaxed);
            return Ok(text(s, format!("{} health {s}\n", st.name)));
        }
        ("POST", "/_demo/health") => {
            let s = param(query.as_deref(), "status").and_then(|v| v.parse().ok()).unwrap_or(200);
            st.health_status.store(s, Ordering::Relaxed);
            return Ok(text(200, format!("health status now {s}\n")));
        }
        ("POST", "/_demo/delay") => {
            let ms = param(query.as_deref(), "ms").and_then(|v| v.parse().ok()).unwrap_or(0);
            st.delay_ms.store(ms, Ordering::Relaxed);
            return Ok(text(200, format!("delay now {ms} ms\n")));
        }
        ("GET", "/_demo/stats") => {
            let body = format!(
                "connections {}\nrequests {}\n",
                st.connections.load(Ordering::Relaxed),
                st.requests.load(Ordering::Relaxed)
            );
            return Ok(text(200, body));
        }
        _ => {}
    }
    let is_health_check = req
        .headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.starts_with("ELB-HealthChecker"));
    if !is_health_check {
        st.requests.fetch_add(1, Ordering::Relaxed);
    }
    let delay = param(query.as_deref(), "delay_ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| st.delay_ms.load(Ordering::Relaxed));
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = param(query.as_deref(), "status").and_then(|v| v.parse().ok()).unwrap_or(200);
    let mut body = format!("{}\n{} {}", st.name, req.method(), path);
    if let Some(q) = &query {
        body.push('?');
        body.push_str(q);
    }
    body.push('\n');
    for (k, v) in req.headers() {
        body.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("<binary>")));
    }
    let req_body = req.into_body();
    // Read the whole request body (keep-alive needs it drained) and report its size.
    let n = req_body.collect().await.map_or(0, |b| b.to_bytes().len());
    if n > 0 {
        body.push_str(&format!("body: {n} bytes\n"));
    }
    let mut r = text(status, body);
    if let Ok(v) = hyper::header::HeaderValue::from_str(&st.name) {
        r.headers_mut().insert("x-backend", v);
    }
    if let Ok(v) = hyper::header::HeaderValue::from_str(&version) {
        r.headers_mut().insert("x-demo-version", v);
    }
    if let Ok(v) = hyper::header::HeaderValue::from_str(&peer.to_string()) {
        r.headers_mut().insert("x-demo-peer", v);
    }
    if let Some(c) = param(query.as_deref(), "set_cookie") {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&format!("{c}; Path=/")) {
            r.headers_mut().append("set-cookie", v);
        }
    }
    Ok(r)
}
