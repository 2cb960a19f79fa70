//! Listeners built from hand-made snapshots (the idle timeout attribute's 60 s floor would make
//! an end-to-end test slow): idle connections are reset after the idle timeout, active ones
//! not; a client's reset reaches the target at once, while a half-close lets the target finish;
//! bulk transfer (spliced) arrives intact both ways and is counted; bytes a target sends
//! unprompted are relayed at once; stopping the listener, or the target turning unhealthy,
//! resets its connections. Plain TCP
//! goes through io_uring here where the kernel allows it (`connections_epoll.rs` runs the same
//! tests with it turned off).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir_balance::{FlowKeyMode, FlowPool, HealthState, Reason, TargetCell, TargetKey};
use weir_l4::{L4Group, L4Protocol, L4Snapshot, L4Stats, NodeAddr};

/// io_uring where the kernel has it.
const EPOLL_ONLY: bool = false;

include!("common/cases.rs");
