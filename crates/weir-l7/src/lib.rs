//! The ALB data plane: accepts HTTP/1.1 and HTTP/2 connections (plain or TLS-terminated with
//! SNI certificates) on a load balancer's addresses, evaluates the
//! listener's rules against each request and runs the matching action (forward to a target
//! picked from a weighted target group, redirect, fixed response), proxying over pooled
//! keep-alive connections to targets.
//!
//! Configuration arrives only as immutable [`ListenerSnapshot`]s swapped atomically into a
//! [`SnapshotCell`]; each request loads the current snapshot once. See
//! `docs/lifecycle-alb.md` for a request's life through this crate.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod client_body;
pub mod client_io;
pub mod clock;
pub mod desync;
pub mod error;
pub mod glob;
pub mod headers;
pub mod http1;
pub mod proxy;
pub mod responses;
pub mod rules;
pub mod snapshot;
pub mod stats;
pub mod sticky;
pub mod tls;
pub mod upstream;

pub use error::{ErrorSide, ProxyError};
pub use proxy::{serve_listener, ListenerHandle};
pub use rules::{CompiledRules, RequestView};
pub use snapshot::{
    CompiledAction, ForwardAction, ForwardGroup, LbSettings, ListenerSnapshot, SnapshotCell,
    Stickiness, TargetGroupRuntime, TlsSnapshot, XffMode,
};
pub use stats::{GroupStats, ListenerStats};
pub use upstream::TargetProtocol;
