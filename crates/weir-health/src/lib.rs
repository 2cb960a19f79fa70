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
use weir_model::{HealthCheck, HealthCheckPort, Matcher, Protocol};

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
    /// Success codes for HTTP(S).
    pub matcher: Option<Matcher>,
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
        }
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
    match spec.protocol {
        Protocol::Tcp => ProbeOutcome::Success,
        Protocol::Https => match tls::connect(tcp, addr).await {
            Some(stream) => http_check(stream, addr, spec).await,
            None => ProbeOutcome::Failed,
        },
        _ => http_check(tcp, addr, spec).await,
    }
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
