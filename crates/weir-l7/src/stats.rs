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
    /// `RejectedConnectionCount`: connections shed at the connection limit or refused by the
    /// per-source connection rate limit.
    pub rejected_connections: AtomicU64,
    /// WebSocket connections established (`ws`/`wss` in access logs).
    pub websocket_upgrades: AtomicU64,
    /// `DesyncMitigationMode_NonCompliant_Request_Count`.
    pub desync_non_compliant: AtomicU64,
    /// Requests the client sent over HTTP/2.
    pub http2_requests: AtomicU64,
    /// `ProcessedBytes`: bytes read from and written to clients (after TLS decryption), heads
    /// and bodies, WebSocket tunnels included.
    pub processed_bytes: AtomicU64,
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

/// Counters of one target group, shared by every snapshot (and listener) that uses it.
#[derive(Debug)]
pub struct GroupStats {
    /// Requests sent to a target of the group (`RequestCount` per target group).
    pub requests: AtomicU64,
    /// `HTTPCode_Target_2XX_Count` … `5XX` (index 0 = 2XX).
    pub target_codes: [AtomicU64; 4],
    /// `TargetConnectionErrorCount`.
    pub target_connection_errors: AtomicU64,
    /// Sum of `TargetResponseTime`s, in microseconds.
    pub response_time_us: AtomicU64,
    /// Number of responses timed.
    pub responses: AtomicU64,
    /// Smallest response time since the last [`Self::take_min_max`], µs.
    min_us: AtomicU64,
    /// Largest response time since the last [`Self::take_min_max`], µs.
    max_us: AtomicU64,
}

impl Default for GroupStats {
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            target_codes: Default::default(),
            target_connection_errors: AtomicU64::new(0),
            response_time_us: AtomicU64::new(0),
            responses: AtomicU64::new(0),
            min_us: AtomicU64::new(u64::MAX),
            max_us: AtomicU64::new(0),
        }
    }
}

impl GroupStats {
    /// Records a target's response: its status and the time from sending the request to
    /// receiving the response head.
    pub fn record_response(&self, status: u16, elapsed: std::time::Duration) {
        if let Some(c) =
            (status / 100).checked_sub(2).and_then(|i| self.target_codes.get(usize::from(i)))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let us = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        self.response_time_us.fetch_add(us, Ordering::Relaxed);
        self.responses.fetch_add(1, Ordering::Relaxed);
        // Read first: most responses set neither bound, and a read is not a locked
        // read-modify-write (a race in between is settled by the fetch).
        if us < self.min_us.load(Ordering::Relaxed) {
            self.min_us.fetch_min(us, Ordering::Relaxed);
        }
        if us > self.max_us.load(Ordering::Relaxed) {
            self.max_us.fetch_max(us, Ordering::Relaxed);
        }
    }

    /// The smallest and largest response times (µs) since the last call, and resets them;
    /// `None` when no response was timed in between.
    pub fn take_min_max(&self) -> Option<(u64, u64)> {
        let min = self.min_us.swap(u64::MAX, Ordering::Relaxed);
        let max = self.max_us.swap(0, Ordering::Relaxed);
        (min != u64::MAX).then_some((min, max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn response_times_keep_their_bounds_until_taken() {
        let s = GroupStats::default();
        assert_eq!(s.take_min_max(), None);
        for us in [300, 100, 700, 200] {
            s.record_response(200, Duration::from_micros(us));
        }
        s.record_response(503, Duration::from_micros(400));
        assert_eq!(s.take_min_max(), Some((100, 700)));
        assert_eq!(s.response_time_us.load(Ordering::Relaxed), 1700);
        assert_eq!(s.responses.load(Ordering::Relaxed), 5);
        assert_eq!(s.target_codes[0].load(Ordering::Relaxed), 4);
        assert_eq!(s.target_codes[3].load(Ordering::Relaxed), 1);
        // Taken: the next interval starts empty, and its bounds are its own.
        assert_eq!(s.take_min_max(), None);
        s.record_response(200, Duration::from_micros(500));
        assert_eq!(s.take_min_max(), Some((500, 500)));
    }
}
