//! Listeners and listener rules.

use crate::action::Action;
use crate::condition::Condition;
use crate::target_group::Protocol;

/// A listener: a port and protocol on a load balancer, with default actions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Listener {
    /// ARN: `...:listener/app/LBNAME/LBID/ID`.
    pub arn: String,
    /// The load balancer's ARN.
    pub load_balancer_arn: String,
    /// Port, 1–65535.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// Default actions (the default rule).
    pub default_actions: Vec<Action>,
    /// Listener attributes.
    #[serde(default = "default_listener_attributes")]
    pub attributes: crate::Attributes,
    /// Certificate ARNs of an HTTPS listener; the first is the default certificate.
    #[serde(default)]
    pub certificates: Vec<String>,
    /// The security policy of an HTTPS or TLS listener.
    #[serde(default)]
    pub ssl_policy: Option<String>,
    /// The ALPN policy of a TLS listener (`HTTP1Only`, `HTTP2Only`, `HTTP2Optional`,
    /// `HTTP2Preferred` or `None`).
    #[serde(default)]
    pub alpn_policy: Option<String>,
}

/// The ALPN policies of TLS listeners, with the protocols each offers in preference order.
pub const ALPN_POLICIES: &[(&str, &[&str])] = &[
    ("HTTP1Only", &["http/1.1"]),
    ("HTTP2Only", &["h2"]),
    ("HTTP2Optional", &["http/1.1", "h2"]),
    ("HTTP2Preferred", &["h2", "http/1.1"]),
    ("None", &[]),
];

/// The ALPN protocols of `policy`, most preferred first; `None` for unknown names.
pub fn alpn_protocols(policy: &str) -> Option<&'static [&'static str]> {
    ALPN_POLICIES.iter().find(|(n, _)| *n == policy).map(|(_, p)| *p)
}

/// The TLS settings given when a listener is created or modified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerTls {
    /// The default certificate (AWS takes exactly one at creation).
    pub certificates: Vec<String>,
    /// Security policy name; `None` keeps the current one (or the default).
    pub ssl_policy: Option<String>,
    /// ALPN policy of a TLS listener; `None` keeps the current one.
    pub alpn_policy: Option<String>,
}

/// The most certificates a listener may hold (ALB's quota, default certificate excluded).
pub const MAX_CERTIFICATES_PER_LISTENER: usize = 25;

fn default_listener_attributes() -> crate::Attributes {
    crate::Attributes::new(crate::AttributeSet::AlbListener)
}

/// A rule's priority.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum RulePriority {
    /// 1–50000, lower evaluated first.
    Number(u32),
    /// The listener's default rule, evaluated last.
    Default,
}

impl RulePriority {
    /// AWS's spelling (`"10"`, `"default"`).
    pub fn to_aws(self) -> String {
        match self {
            Self::Number(n) => n.to_string(),
            Self::Default => "default".into(),
        }
    }
}

/// A listener rule: conditions (AND-ed) and actions, at a priority.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rule {
    /// ARN: `...:listener-rule/app/LBNAME/LBID/LISTENERID/ID`.
    pub arn: String,
    /// The listener's ARN.
    pub listener_arn: String,
    /// Priority.
    pub priority: RulePriority,
    /// Conditions.
    pub conditions: Vec<Condition>,
    /// Actions.
    pub actions: Vec<Action>,
}
