//! Immutable per-listener configuration snapshots, swapped atomically.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use weir_balance::Selector;
use weir_model::{FixedResponseConfig, RedirectConfig};

use crate::rules::CompiledRules;

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
}

impl Default for LbSettings {
    fn default() -> Self {
        Self {
            full_name: String::new(),
            idle_timeout: Duration::from_secs(60),
            xff_mode: XffMode::Append,
            xff_client_port: false,
            drop_invalid_header_fields: false,
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
}

/// One target group of a forward action, with its weight.
#[derive(Debug, Clone)]
pub struct ForwardGroup {
    /// The group.
    pub group: Arc<TargetGroupRuntime>,
    /// Weight 0–999.
    pub weight: u32,
}

/// A compiled action.
#[derive(Debug)]
pub enum CompiledAction {
    /// Forward to one of the groups, chosen by weight.
    Forward(Vec<ForwardGroup>),
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
}

/// The current snapshot of one listener, replaced atomically on every configuration change.
pub type SnapshotCell = Arc<ArcSwap<ListenerSnapshot>>;
