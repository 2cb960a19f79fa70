//! Connections to targets: one pooled client per target protocol (HTTP/1.1, h2c, HTTP/1.1 over
//! TLS, HTTP/2 over TLS), and a request body that can be taken back when the connection to a
//! target failed before any of it was sent, so that the request may be retried elsewhere.
//!
//! As ALB does, TLS to targets does not verify their certificates: targets commonly present
//! self-signed ones. Health checks use the same TLS configuration ([`insecure_client_config`]).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use hyper::body::{Body, Frame, SizeHint};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::client_body::ClientBody;

/// How long the load balancer waits for a TCP connection to a target (ALB: 10 s).
pub const TARGET_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a target group's targets are spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetProtocol {
    /// HTTP/1.1 over TCP.
    Http1,
    /// HTTP/2 over TCP with prior knowledge (h2c).
    H2c,
    /// HTTP/1.1 over TLS.
    Https1,
    /// HTTP/2 over TLS (ALPN `h2`).
    Https2,
}

impl TargetProtocol {
    /// The URI scheme requests to such targets carry.
    pub fn scheme(self) -> &'static str {
        match self {
            Self::Http1 | Self::H2c => "http",
            Self::Https1 | Self::Https2 => "https",
        }
    }
}

/// The request body sent to a target. Until the client first polls it, the client's body stays
/// in a shared slot that [`BodySlot::take_back`] can empty after a failed connection. A body
/// growing past its limit fails with [`BodyTooLarge`] (so the target sees an aborted request,
/// never a truncated one that looks complete) and the slot remembers why.
#[derive(Debug)]
pub struct UpstreamBody {
    slot: Arc<Mutex<Option<ClientBody>>>,
    taken: Option<ClientBody>,
    hint: SizeHint,
    end: bool,
    /// Most body bytes allowed (0: no limit).
    limit: u64,
    seen: u64,
    too_large: Arc<AtomicBool>,
}

/// The error a request body over the size limit ends with.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("request body larger than the limit")]
pub struct BodyTooLarge;

/// The other handle on an [`UpstreamBody`]'s slot.
#[derive(Debug, Clone)]
pub struct BodySlot(Arc<Mutex<Option<ClientBody>>>, Arc<AtomicBool>);

impl BodySlot {
    /// The client's body if the target never started reading it.
    pub fn take_back(&self) -> Option<ClientBody> {
        self.0.lock().ok().and_then(|mut s| s.take())
    }

    /// Whether the body was cut off for growing past its limit.
    pub fn too_large(&self) -> bool {
        self.1.load(Ordering::Relaxed)
    }
}

impl UpstreamBody {
    /// Wraps `body`, allowing at most `limit` bytes of it (0: any); returns the body to send
    /// and the handle that can take it back.
    pub fn new(body: ClientBody, limit: u64) -> (Self, BodySlot) {
        let hint = body.size_hint();
        let end = body.is_end_stream();
        let slot = Arc::new(Mutex::new(Some(body)));
        let too_large = Arc::new(AtomicBool::new(false));
        let me = Self { slot: slot.clone(), taken: None, hint, end, limit, seen: 0, too_large };
        let handle = BodySlot(slot, me.too_large.clone());
        (me, handle)
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.taken.is_none() {
            let b = self.slot.lock().ok().and_then(|mut s| s.take());
            match b {
                Some(b) => self.taken = Some(b),
                None => return Poll::Ready(None),
            }
        }
        let limit = self.limit;
        let polled = match self.taken.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => return Poll::Ready(None),
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    self.seen += d.len() as u64;
                    if limit > 0 && self.seen > limit {
                        self.too_large.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.taken {
            Some(b) => b.is_end_stream(),
            None => self.end,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.taken {
            Some(b) => b.size_hint(),
            None => self.hint,
        }
    }
}

/// The pooled clients of one listener.
#[derive(Debug, Clone)]
pub struct Upstreams {
    h1: Client<HttpConnector, UpstreamBody>,
    h2c: Client<HttpConnector, UpstreamBody>,
    tls_h1: Client<HttpsConnector<HttpConnector>, UpstreamBody>,
    tls_h2: Client<HttpsConnector<HttpConnector>, UpstreamBody>,
}

impl Default for Upstreams {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstreams {
    /// Clients with ALB's connect timeout and a 55 s idle pool.
    pub fn new() -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(TARGET_CONNECT_TIMEOUT));
        http.set_nodelay(true);
        http.enforce_http(false);
        let builder = |h2: bool| {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_idle_timeout(Duration::from_secs(55)).pool_timer(TokioTimer::new());
            if h2 {
                b.http2_only(true).timer(TokioTimer::new());
            }
            b
        };
        let tls = |h2: bool| {
            let b = HttpsConnectorBuilder::new()
                .with_tls_config(insecure_client_config(&[]))
                .https_only();
            if h2 {
                b.enable_http2().wrap_connector(http.clone())
            } else {
                b.enable_http1().wrap_connector(http.clone())
            }
        };
        Self {
            h1: builder(false).build(http.clone()),
            h2c: builder(true).build(http.clone()),
            tls_h1: builder(false).build(tls(false)),
            tls_h2: builder(true).build(tls(true)),
        }
    }

    /// Sends `req`, whose URI names the target, the way `protocol` says. Requests keep the
    /// client's `Host` header (HTTP/2 targets see the target address as `:authority`).
    pub fn request(&self, protocol: TargetProtocol, req: Request<UpstreamBody>) -> ResponseFuture {
        match protocol {
            TargetProtocol::Http1 => self.h1.request(req),
            TargetProtocol::H2c => self.h2c.request(req),
            TargetProtocol::Https1 => self.tls_h1.request(req),
            TargetProtocol::Https2 => self.tls_h2.request(req),
        }
    }
}

#[derive(Debug)]
struct AcceptAny(Vec<SignatureScheme>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

/// A TLS client configuration that accepts any target certificate, offering `alpn`.
pub fn insecure_client_config(alpn: &[&[u8]]) -> ClientConfig {
    static BASE: OnceLock<ClientConfig> = OnceLock::new();
    let mut cfg = BASE
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let schemes = provider.signature_verification_algorithms.supported_schemes();
            ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(rustls::DEFAULT_VERSIONS)
                .unwrap_or_else(|_| unreachable_config())
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(schemes)))
                .with_no_client_auth()
        })
        .clone();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    cfg
}

#[allow(clippy::panic)]
fn unreachable_config() -> rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier> {
    // The ring provider always supports the default protocol versions.
    panic!("rustls ring provider rejected its own default protocol versions")
}
