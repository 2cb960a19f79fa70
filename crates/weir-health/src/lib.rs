//! Active health checks (HTTP, HTTPS, TCP) that feed the health state machine of
//! `weir-balance`.
//!
//! One checker task per registered target probes it every interval and records the outcome in
//! the target's [`TargetCell`]. HTTP checks send `GET <path>` with `Host: <ip>:<port>` and
//! `User-Agent: ELB-HealthChecker/2.0`, as ALB does; HTTPS checks do the same over TLS without
//! verifying the target's certificate (targets commonly use self-signed certificates, and AWS
//! does not verify them either).
#![forbid(unsafe_code)]

mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use weir_balance::{HealthMachine, HealthState, ProbeOutcome, Reason, TargetCell, Thresholds};
use weir_model::{HealthCheck, HealthCheckPort, Matcher, Protocol, ProtocolVersion};

/// Everything a checker needs, derived from a target group's health-check settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    /// HTTP, HTTPS or TCP.
    pub protocol: Protocol,
    /// Port override (`None` = traffic port).
    pub port: Option<u16>,
    /// Request path for HTTP(S).
    pub path: String,
    /// Time between probes.
    pub interval: Duration,
    /// Probe timeout.
    pub timeout: Duration,
    /// Thresholds.
    pub thresholds: Thresholds,
    /// Success codes for HTTP(S), or gRPC status codes for gRPC target groups.
    pub matcher: Option<Matcher>,
    /// The target group's protocol version: HTTP2 and GRPC checks speak HTTP/2.
    pub version: ProtocolVersion,
}

impl CheckSpec {
    /// Derives a spec from model settings.
    pub fn from_model(hc: &HealthCheck) -> Self {
        Self {
            protocol: hc.protocol,
            port: match hc.port {
                HealthCheckPort::TrafficPort => None,
                HealthCheckPort::Port(p) => Some(p),
            },
            path: hc.path.clone().unwrap_or_else(|| "/".into()),
            interval: Duration::from_secs(u64::from(hc.interval_seconds)),
            timeout: Duration::from_secs(u64::from(hc.timeout_seconds)),
            thresholds: Thresholds {
                healthy: hc.healthy_threshold,
                unhealthy: hc.unhealthy_threshold,
            },
            matcher: hc.matcher.clone(),
            version: ProtocolVersion::Http1,
        }
    }

    /// The same spec for a target group of protocol version `v`.
    pub fn with_version(mut self, v: ProtocolVersion) -> Self {
        self.version = v;
        self
    }
}

/// Probes `addr` once according to `spec`.
pub async fn probe(addr: SocketAddr, spec: &CheckSpec) -> ProbeOutcome {
    let addr = SocketAddr::new(addr.ip(), spec.port.unwrap_or(addr.port()));
    match tokio::time::timeout(spec.timeout, probe_inner(addr, spec)).await {
        Ok(outcome) => outcome,
        Err(_) => ProbeOutcome::Timeout,
    }
}

async fn probe_inner(addr: SocketAddr, spec: &CheckSpec) -> ProbeOutcome {
    let Ok(tcp) = TcpStream::connect(addr).await else {
        return ProbeOutcome::Failed;
    };
    let _ = tcp.set_nodelay(true);
    let h2 = spec.version != ProtocolVersion::Http1;
    match (spec.protocol, h2) {
        (Protocol::Tcp, _) => ProbeOutcome::Success,
        (Protocol::Https, false) => match tls::connect(tcp, addr, &[b"http/1.1"]).await {
            Some(stream) => http_check(stream, addr, spec).await,
            None => ProbeOutcome::Failed,
        },
        (Protocol::Https, true) => match tls::connect(tcp, addr, &[b"h2"]).await {
            Some(stream) => h2_check(stream, addr, spec).await,
            None => ProbeOutcome::Failed,
        },
        (_, true) => h2_check(tcp, addr, spec).await,
        _ => http_check(tcp, addr, spec).await,
    }
}

/// An HTTP/2 check: `GET path` for HTTP2 target groups; for GRPC ones a unary gRPC call with
/// an empty message to `path` (default `/AWS.ALB/healthcheck`), judged by its `grpc-status`.
async fn h2_check<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    s: S,
    addr: SocketAddr,
    spec: &CheckSpec,
) -> ProbeOutcome {
    use http_body_util::BodyExt;
    let Ok((mut send, conn)) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(s),
    )
    .await
    else {
        return ProbeOutcome::Failed;
    };
    let driver = tokio::spawn(conn);
    let grpc = spec.version == ProtocolVersion::Grpc;
    let uri = format!("http://{addr}{}", spec.path);
    let mut b = http::Request::builder()
        .method(if grpc { "POST" } else { "GET" })
        .uri(uri)
        .header("user-agent", "ELB-HealthChecker/2.0");
    if grpc {
        b = b.header("content-type", "application/grpc").header("te", "trailers");
    }
    // A gRPC message frame: not compressed, zero length.
    let body = if grpc { bytes::Bytes::from_static(&[0, 0, 0, 0, 0]) } else { bytes::Bytes::new() };
    let Ok(req) = b.body(http_body_util::Full::new(body)) else {
        driver.abort();
        return ProbeOutcome::Failed;
    };
    let outcome = match send.send_request(req).await {
        Err(_) => ProbeOutcome::Failed,
        Ok(resp) if !grpc => {
            let code = resp.status().as_u16();
            let ok = spec.matcher.as_ref().map_or(code == 200, |m| m.matches(code));
            if ok {
                ProbeOutcome::Success
            } else {
                ProbeOutcome::CodeMismatch(code)
            }
        }
        Ok(resp) => {
            let in_headers = grpc_status(resp.headers());
            match resp.into_body().collect().await {
                Err(_) => ProbeOutcome::Failed,
                Ok(c) => match in_headers.or_else(|| c.trailers().and_then(grpc_status)) {
                    None => ProbeOutcome::Failed,
                    Some(code) => {
                        let ok = spec.matcher.as_ref().map_or(code == 12, |m| m.matches(code));
                        if ok {
                            ProbeOutcome::Success
                        } else {
                            ProbeOutcome::CodeMismatch(code)
                        }
                    }
                },
            }
        }
    };
    driver.abort();
    outcome
}

fn grpc_status(h: &http::HeaderMap) -> Option<u16> {
    h.get("grpc-status")?.to_str().ok()?.trim().parse().ok()
}

async fn http_check<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    addr: SocketAddr,
    spec: &CheckSpec,
) -> ProbeOutcome {
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: ELB-HealthChecker/2.0\r\nAccept-Encoding: gzip, compressed\r\nConnection: close\r\n\r\n",
        spec.path
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        return ProbeOutcome::Failed;
    }
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let code = resp.code.unwrap_or(0);
                let ok = spec.matcher.as_ref().map_or(code == 200, |m| m.matches(code));
                return if ok { ProbeOutcome::Success } else { ProbeOutcome::CodeMismatch(code) };
            }
            Ok(httparse::Status::Partial) if buf.len() < 16 * 1024 => {}
            _ => return ProbeOutcome::Failed,
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return ProbeOutcome::Failed,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Starts checking `cell` with `spec` until the returned handle is aborted. When health checks
/// are disabled (`spec` is `None`) the target is marked `unavailable` and no task probes it.
pub fn spawn_checker(cell: Arc<TargetCell>, spec: Option<CheckSpec>) -> Option<JoinHandle<()>> {
    let Some(spec) = spec else {
        cell.set_health(HealthState::Unavailable, Reason::HealthCheckDisabled);
        return None;
    };
    Some(tokio::spawn(async move {
        let mut machine = HealthMachine::new();
        let mut ticker = tokio::time::interval(spec.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let outcome = probe(cell.addr, &spec).await;
            let before = cell.state();
            let after = machine.record(&cell, &outcome, spec.thresholds);
            if before != after {
                tracing::info!(target = %cell.addr, from = before.as_str(), to = after.as_str(), reason = ?cell.reason().code(), "target health changed");
            }
        }
    }))
}

#[cfg(test)]
mod tests;
