//! Per-listener request counters (CloudWatch-named), updated lock-free on the request path.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one listener.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// `RequestCount`.
    pub requests: AtomicU64,
    /// `HTTPCode_ELB_4XX_Count`.
    pub elb_4xx: AtomicU64,
    /// `HTTPCode_ELB_5XX_Count`.
    pub elb_5xx: AtomicU64,
    /// `HTTPCode_ELB_502_Count`.
    pub elb_502: AtomicU64,
    /// `HTTPCode_ELB_503_Count`.
    pub elb_503: AtomicU64,
    /// `HTTPCode_ELB_504_Count`.
    pub elb_504: AtomicU64,
    /// `HTTPCode_Target_2XX_Count` … `5XX` (index 0 = 2XX).
    pub target_codes: [AtomicU64; 4],
    /// Requests the client abandoned before the response (logged with status 460).
    pub client_closed_460: AtomicU64,
    /// `TargetConnectionErrorCount`.
    pub target_connection_errors: AtomicU64,
    /// `NewConnectionCount`.
    pub new_connections: AtomicU64,
    /// `ActiveConnectionCount` (current).
    pub active_connections: AtomicU64,
    /// `ClientTLSNegotiationErrorCount`.
    pub tls_negotiation_errors: AtomicU64,
    /// WebSocket connections established (`ws`/`wss` in access logs).
    pub websocket_upgrades: AtomicU64,
    /// `DesyncMitigationMode_NonCompliant_Request_Count`.
    pub desync_non_compliant: AtomicU64,
    /// Requests the client sent over HTTP/2.
    pub http2_requests: AtomicU64,
}

impl ListenerStats {
    /// Records a status the load balancer generated itself.
    pub fn record_elb(&self, status: u16) {
        match status / 100 {
            4 => self.elb_4xx.fetch_add(1, Ordering::Relaxed),
            5 => self.elb_5xx.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        match status {
            502 => self.elb_502.fetch_add(1, Ordering::Relaxed),
            503 => self.elb_503.fetch_add(1, Ordering::Relaxed),
            504 => self.elb_504.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }

    /// Records a status a target answered with.
    pub fn record_target(&self, status: u16) {
        if let Some(c) =
            (status / 100).checked_sub(2).and_then(|i| self.target_codes.get(usize::from(i)))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
