//! Counters of one NLB listener, named after the CloudWatch `AWS/NetworkELB` metrics they feed.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters; all monotonic except the `active_*` gauges.
#[derive(Debug, Default)]
pub struct L4Stats {
    /// `ActiveFlowCount_TCP`: TCP connections open (plain TCP listeners).
    pub active_flows_tcp: AtomicU64,
    /// `NewFlowCount_TCP`.
    pub new_flows_tcp: AtomicU64,
    /// Connections closed unserved because the listener was at its connection limit (Weir's
    /// addition, exported as `RejectedConnectionCount`).
    pub rejected_connections: AtomicU64,
    /// `ActiveFlowCount_TLS`.
    pub active_flows_tls: AtomicU64,
    /// `NewFlowCount_TLS`.
    pub new_flows_tls: AtomicU64,
    /// `ActiveFlowCount_UDP`: UDP flows in the flow table.
    pub active_flows_udp: AtomicU64,
    /// `NewFlowCount_UDP`.
    pub new_flows_udp: AtomicU64,
    /// `ProcessedBytes_TCP` (both directions, payload only).
    pub processed_bytes_tcp: AtomicU64,
    /// `ProcessedBytes_TLS` (decrypted payload, both directions).
    pub processed_bytes_tls: AtomicU64,
    /// `ProcessedBytes_UDP`.
    pub processed_bytes_udp: AtomicU64,
    /// `TCP_Client_Reset_Count`: resets sent by clients.
    pub tcp_client_resets: AtomicU64,
    /// `TCP_Target_Reset_Count`: resets sent by targets.
    pub tcp_target_resets: AtomicU64,
    /// `TCP_ELB_Reset_Count`: resets the load balancer sent (idle timeout, no target, target
    /// unreachable, draining termination).
    pub tcp_elb_resets: AtomicU64,
    /// `TargetConnectionErrorCount`-like: connections to a target that failed.
    pub target_connection_errors: AtomicU64,
    /// `ClientTLSNegotiationErrorCount`.
    pub client_tls_negotiation_errors: AtomicU64,
    /// `TargetTLSNegotiationErrorCount`.
    pub target_tls_negotiation_errors: AtomicU64,
    /// UDP datagrams dropped (no target, or the target's socket failed).
    pub udp_dropped: AtomicU64,
}

impl L4Stats {
    /// Adds one to `c`.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    /// Reads `c`.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
