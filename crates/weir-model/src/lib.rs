//! The Weir resource model: AWS Elastic Load Balancing resources with AWS names, defaults, ranges
//! and validation errors (AWS error codes and wording), ARNs and ids, and [`State`], the desired
//! state that every surface (templates, API) edits through validated operations.
//!
//! Pure data: no I/O, no async. [`shape`] converts AWS's JSON shapes (CloudFormation properties,
//! nested Query API parameters) into model values. The data plane is handed snapshots compiled from a [`State`].
#![forbid(unsafe_code)]

pub mod action;
pub mod alarm;
pub mod attributes;
pub mod autoscaling;
pub mod condition;
pub mod cron;
pub mod ec2;
pub mod error;
pub mod ids;
pub mod limits;
pub mod listener;
pub mod load_balancer;
pub mod shape;
pub mod stack;
pub mod state;
pub mod target_group;
pub mod time;
pub mod tls_policies;
pub mod zones;

pub use action::{
    Action, ActionKind, FixedResponseConfig, ForwardConfig, RedirectConfig, WeightedTargetGroup,
};
pub use attributes::{AttributeKind, AttributeSet, AttributeSpec, Attributes};
pub use condition::{Condition, QueryStringPair};
pub use error::{ErrorCode, ModelError};
pub use limits::Limits;
pub use listener::{alpn_protocols, Listener, ListenerTls, Rule, RulePriority, ALPN_POLICIES};
pub use load_balancer::{IpAddressType, LoadBalancer, LoadBalancerType, Scheme};
pub use state::State;
pub use target_group::{
    HealthCheck, HealthCheckPort, Matcher, Protocol, ProtocolVersion, Target, TargetGroup,
    TargetType,
};

/// The port of GENEVE, which Gateway Load Balancers and their target groups use.
pub const GENEVE_PORT: u16 = 6081;
