//! Process-wide protective limits of the data plane: connection counts and rates, request
//! rates, head and body sizes, HTTP/2 stream counts and handshake timeouts. They are not ELB
//! resources (AWS sets them for you); Weir takes them from the command line (`weir up`/`serve`
//! flags) and hands them to every listener snapshot. See `docs/security.md`.

use std::time::Duration;

/// The data plane's limits. `Default` is what a production edge should run with; per-source rate
/// limits are off by default because many clients can share one address behind a NAT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most open client connections per listener (all its addresses together). Beyond it new
    /// connections are shed: plain HTTP ones get a `503` and are closed, TLS and TCP ones are
    /// closed; each is counted in `RejectedConnectionCount`.
    pub max_connections: usize,
    /// Most new connections per second from one source (an IPv4 address or an IPv6 /64) per
    /// listener; beyond it connections are closed at once and counted as rejected. 0: no limit.
    pub max_connection_rate_per_source: u32,
    /// Most requests per second from one source per listener; beyond it the answer is `429` with
    /// `Retry-After: 1`. 0: no limit.
    pub max_request_rate_per_source: u32,
    /// Largest request head (request line and headers; HTTP/2: the header list). ALB: 64 KiB.
    /// Beyond it: 431.
    pub max_header_bytes: usize,
    /// Largest request body; beyond it: 413 (0: no limit, as ALB).
    pub max_body_bytes: u64,
    /// Concurrent HTTP/2 streams per client connection (ALB: 128).
    pub max_h2_streams: u32,
    /// HTTP/2 streams a client may reset before the proxy has accepted them (the rapid-reset
    /// attack, CVE-2023-44487); beyond it the connection gets GOAWAY `ENHANCE_YOUR_CALM`.
    pub max_h2_pending_resets: usize,
    /// How long a client has to complete a TLS handshake.
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connection_rate_per_source: 0,
            max_request_rate_per_source: 0,
            max_header_bytes: 64 * 1024,
            max_body_bytes: 0,
            max_h2_streams: 128,
            max_h2_pending_resets: 20,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// Checks that every limit can be honoured: the message names the bad one.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections == 0 {
            return Err("max connections must be at least 1".into());
        }
        if !(1024..=1024 * 1024).contains(&self.max_header_bytes) {
            return Err("max header bytes must be between 1024 and 1048576".into());
        }
        if self.max_h2_streams == 0 {
            return Err("max HTTP/2 streams must be at least 1".into());
        }
        if self.handshake_timeout.is_zero() {
            return Err("the handshake timeout must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert_eq!(Limits::default().validate(), Ok(()));
        let bad = Limits { max_header_bytes: 10, ..Limits::default() };
        assert!(bad.validate().unwrap_err().contains("header"));
        let bad = Limits { max_connections: 0, ..Limits::default() };
        assert!(bad.validate().unwrap_err().contains("connections"));
    }
}
