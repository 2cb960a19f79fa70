//! The immutable configuration an NLB listener serves from, swapped atomically on change.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use weir_balance::{FlowKeyMode, FlowPool, TargetCell};

/// A listener's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Protocol {
    /// TCP, passed through.
    Tcp,
    /// TLS terminated here; the target gets the plaintext (or TLS again for TLS groups).
    Tls,
    /// UDP.
    Udp,
    /// TCP and UDP on one port.
    TcpUdp,
}

impl L4Protocol {
    /// Whether the listener accepts TCP connections.
    pub fn tcp(self) -> bool {
        !matches!(self, Self::Udp)
    }
    /// Whether the listener receives UDP datagrams.
    pub fn udp(self) -> bool {
        matches!(self, Self::Udp | Self::TcpUdp)
    }
}

/// The target group a listener forwards to, with one flow pool per zone.
#[derive(Debug)]
pub struct L4Group {
    /// ARN.
    pub arn: String,
    /// Every in-use target.
    pub all: FlowPool,
    /// Targets per zone (targets in zone `all` are in every zone's pool).
    pub zones: HashMap<String, FlowPool>,
    /// Whether a zone node may pick targets in other zones.
    pub cross_zone: bool,
    /// Send a PROXY v2 header ahead of each TCP connection's bytes.
    pub proxy_protocol_v2: bool,
    /// Connect to targets from the client's address.
    pub preserve_client_ip: bool,
    /// What the flow hash covers (`source_ip` stickiness or the 5-tuple).
    pub key_mode: FlowKeyMode,
    /// Close connections of a draining target when its deregistration delay ends.
    pub terminate_on_drain: bool,
    /// Close connections of a target that turns unhealthy.
    pub terminate_on_unhealthy: bool,
    /// TLS towards targets (TLS target groups).
    pub target_tls: Option<Arc<rustls::ClientConfig>>,
}

impl L4Group {
    /// The pool a node in `zone` picks from (`None`: a node outside any zone, e.g. a public
    /// address, which uses every target).
    pub fn pool(&self, zone: Option<&str>) -> Option<&FlowPool> {
        match zone {
            Some(z) if !self.cross_zone => self.zones.get(z),
            _ => Some(&self.all),
        }
    }

    /// The target for a flow seen by a node in `zone`.
    pub fn pick(&self, zone: Option<&str>, hash: u64) -> Option<Arc<TargetCell>> {
        self.pool(zone)?.pick(hash)
    }
}

/// Everything a listener needs to serve.
#[derive(Debug)]
pub struct L4Snapshot {
    /// Listener ARN (for logs).
    pub listener_arn: String,
    /// Protocol.
    pub protocol: L4Protocol,
    /// TLS termination (TLS listeners).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Certificates of a TLS listener, default first, for logs.
    pub certificates: Vec<Arc<weir_tls::LoadedCertificate>>,
    /// `net/NAME/ID` of the load balancer, for logs.
    pub elb: String,
    /// Where TLS connections are logged (`access_logs.s3.enabled`).
    pub access_log: Option<Arc<crate::conn_log::AccessLog>>,
    /// `tcp.idle_timeout.seconds` (default 350).
    pub tcp_idle_timeout: Duration,
    /// UDP flow idle timeout (120 s on AWS).
    pub udp_idle_timeout: Duration,
    /// The forward target group.
    pub group: Option<Arc<L4Group>>,
    /// Protective limits (connection count, handshake timeout).
    pub limits: Arc<weir_model::Limits>,
}

/// Where a listener's current snapshot lives.
pub type L4SnapshotCell = Arc<ArcSwap<L4Snapshot>>;
