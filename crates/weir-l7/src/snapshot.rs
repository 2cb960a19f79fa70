//! Immutable per-listener configuration snapshots, swapped atomically.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use weir_balance::Selector;
use weir_model::{FixedResponseConfig, RedirectConfig};

use crate::desync::DesyncMode;
use crate::rules::CompiledRules;
use crate::tls::LoadedCertificate;
use crate::upstream::TargetProtocol;

/// `routing.http.xff_header_processing.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XffMode {
    /// Append the client address (default).
    Append,
    /// Forward the header as received.
    Preserve,
    /// Remove the header.
    Remove,
}

/// Load-balancer attributes the request path reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbSettings {
    /// The load balancer's `app/NAME/ID`.
    pub full_name: String,
    /// `idle_timeout.timeout_seconds`: also how long a target may take to answer.
    pub idle_timeout: Duration,
    /// X-Forwarded-For processing.
    pub xff_mode: XffMode,
    /// `routing.http.xff_client_port.enabled`.
    pub xff_client_port: bool,
    /// `routing.http.drop_invalid_header_fields.enabled`.
    pub drop_invalid_header_fields: bool,
    /// `routing.http2.enabled`: offer `h2` in ALPN and accept h2c prior knowledge.
    pub http2: bool,
    /// `routing.http.x_amzn_tls_version_and_cipher_suite.enabled`.
    pub tls_headers: bool,
    /// `routing.http.preserve_host_header.enabled`: send the client's Host (port included)
    /// unchanged; otherwise the port is dropped when it is the listener's default.
    pub preserve_host_header: bool,
    /// `routing.http.desync_mitigation_mode`.
    pub desync_mode: DesyncMode,
}

impl Default for LbSettings {
    fn default() -> Self {
        Self {
            full_name: String::new(),
            idle_timeout: Duration::from_secs(60),
            xff_mode: XffMode::Append,
            xff_client_port: false,
            drop_invalid_header_fields: false,
            http2: true,
            tls_headers: false,
            preserve_host_header: false,
            desync_mode: DesyncMode::Defensive,
        }
    }
}

/// A target group as the request path sees it.
#[derive(Debug)]
pub struct TargetGroupRuntime {
    /// ARN.
    pub arn: String,
    /// Name.
    pub name: String,
    /// Picks targets.
    pub selector: Selector,
    /// How targets are spoken to.
    pub protocol: TargetProtocol,
    /// Session stickiness.
    pub stickiness: Stickiness,
    /// Counters, shared across snapshots.
    pub stats: std::sync::Arc<crate::stats::GroupStats>,
}

/// A target group's `stickiness.*` attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stickiness {
    /// Off.
    None,
    /// `lb_cookie`: the load balancer's `AWSALB` cookie, valid this long.
    LbCookie(Duration),
    /// `app_cookie`: when the target sets cookie `name`, `AWSALBAPP-0` follows it.
    AppCookie {
        /// The application's cookie name.
        name: String,
        /// Lifetime of `AWSALBAPP-0`.
        duration: Duration,
    },
}

/// One target group of a forward action, with its weight.
#[derive(Debug, Clone)]
pub struct ForwardGroup {
    /// The group.
    pub group: Arc<TargetGroupRuntime>,
    /// Weight 0–999.
    pub weight: u32,
}

/// A compiled forward action.
#[derive(Debug)]
pub struct ForwardAction {
    /// The groups, chosen by weight.
    pub groups: Vec<ForwardGroup>,
    /// Target-group stickiness (`AWSALBTG`) and its lifetime.
    pub group_stickiness: Option<Duration>,
}

/// A compiled action.
#[derive(Debug)]
pub enum CompiledAction {
    /// Forward to one of the groups.
    Forward(ForwardAction),
    /// Redirect.
    Redirect(RedirectConfig),
    /// Fixed response.
    Fixed(FixedResponseConfig),
}

/// Everything a listener needs to serve a request.
#[derive(Debug)]
pub struct ListenerSnapshot {
    /// Listener port (for `X-Forwarded-Port` and `#{port}`).
    pub port: u16,
    /// Load-balancer attributes.
    pub lb: LbSettings,
    /// The rules.
    pub rules: CompiledRules,
    /// `routing.http.response.server.enabled`: whether responses the load balancer writes
    /// itself carry `Server: awselb/2.0`.
    pub server_header: bool,
    /// TLS termination of an HTTPS listener.
    pub tls: Option<TlsSnapshot>,
    /// Where access-log entries go (`access_logs.s3.enabled`).
    pub access_log: Option<Arc<crate::access_log::AccessLog>>,
    /// The data plane's protective limits.
    pub limits: Arc<weir_model::Limits>,
}

/// The TLS side of an HTTPS listener.
#[derive(Debug, Clone)]
pub struct TlsSnapshot {
    /// rustls configuration (certificates by SNI, policy, ALPN).
    pub config: Arc<rustls::ServerConfig>,
    /// The certificates, default first.
    pub certificates: Vec<Arc<LoadedCertificate>>,
}

/// The current snapshot of one listener, replaced atomically on every configuration change.
pub type SnapshotCell = Arc<ArcSwap<ListenerSnapshot>>;
