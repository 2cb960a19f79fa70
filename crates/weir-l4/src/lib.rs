//! The NLB data plane: TCP, TLS, UDP and TCP_UDP listeners on a load balancer's zone nodes.
//!
//! Each flow is hashed (5-tuple, or source IP under `source_ip` stickiness) onto a Maglev table
//! of the target group's targets in the node's zone (or all zones with cross-zone load
//! balancing), so a TCP connection stays on one target for its life and a UDP flow stays on
//! one target until it goes idle. Plain TCP is relayed on io_uring (`weir_uring`), bulk
//! transfer with `splice(2)`, and through epoll where io_uring is unavailable; TLS listeners
//! terminate with the ALB's certificate store and SNI selection. Optional PROXY v2 headers and client-IP
//! preservation; connections watched for idle timeout, draining and unhealthy targets. TLS
//! connections are logged as NLB access-log entries ([`conn_log`]) when logging is on.
//!
//! Configuration arrives only as immutable [`L4Snapshot`]s in an [`L4SnapshotCell`]. See
//! `docs/lifecycle-nlb.md` for a connection's life through this crate.
#![forbid(unsafe_code)]

pub mod conn_log;
pub mod flows;
pub mod proxy_v2;
pub mod relay;
pub mod snapshot;
pub mod socket;
pub mod stats;
mod tcp;
mod udp;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use snapshot::{L4Group, L4Protocol, L4Snapshot, L4SnapshotCell};
pub use stats::L4Stats;

/// One address a listener serves, with the zone of the node it belongs to (`None` for public
/// addresses, which are not a zone's node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddr {
    /// Address and port.
    pub addr: SocketAddr,
    /// Zone name.
    pub zone: Option<Arc<str>>,
}

#[derive(Debug)]
struct Bound {
    requested: NodeAddr,
    local: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

/// A running NLB listener. Addresses can change in place; [`Self::stop`] closes every socket.
#[derive(Debug)]
pub struct L4Handle {
    cell: L4SnapshotCell,
    bound: Vec<Bound>,
    shutdown: watch::Sender<bool>,
    /// New connections per source (`max_connection_rate_per_source`), across its addresses.
    rates: Arc<weir_balance::RateCell>,
    /// Counters.
    pub stats: Arc<L4Stats>,
}

impl Drop for L4Handle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for b in &self.bound {
            for t in &b.tasks {
                t.abort();
            }
        }
    }
}

/// Binds every address of `addrs` with the protocol in `cell` and serves.
pub async fn serve_listener(addrs: &[NodeAddr], cell: L4SnapshotCell) -> io::Result<L4Handle> {
    let (shutdown, _) = watch::channel(false);
    let mut h = L4Handle {
        cell,
        bound: Vec::new(),
        shutdown,
        rates: Arc::default(),
        stats: Arc::new(L4Stats::default()),
    };
    if let Err(e) = h.set_addresses(addrs).await {
        h.stop().await;
        return Err(e);
    }
    Ok(h)
}

impl L4Handle {
    /// The addresses actually bound.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.bound.iter().map(|b| b.local).collect()
    }

    /// Swaps in a new snapshot; a protocol change rebinds every address.
    pub async fn update(&mut self, snap: Arc<L4Snapshot>, addrs: &[NodeAddr]) -> io::Result<()> {
        let rebind = snap.protocol != self.cell.load().protocol;
        self.cell.store(snap);
        if rebind {
            for b in std::mem::take(&mut self.bound) {
                for t in b.tasks {
                    t.abort();
                    let _ = t.await;
                }
            }
        }
        self.set_addresses(addrs).await
    }

    /// Serves exactly `addrs`: removed ones are closed (and awaited), new ones bound.
    pub async fn set_addresses(&mut self, addrs: &[NodeAddr]) -> io::Result<()> {
        let (keep, gone): (Vec<Bound>, Vec<Bound>) =
            std::mem::take(&mut self.bound).into_iter().partition(|b| addrs.contains(&b.requested));
        self.bound = keep;
        for b in gone {
            for t in b.tasks {
                t.abort();
                let _ = t.await;
            }
        }
        let protocol = self.cell.load().protocol;
        for a in addrs {
            if self.bound.iter().any(|b| b.requested == *a) {
                continue;
            }
            let err = |e: io::Error| io::Error::new(e.kind(), format!("bind {}: {e}", a.addr));
            let mut tasks = Vec::new();
            let mut local = a.addr;
            if protocol.tcp() {
                let (l, registration) = weir_sockets::tcp_listener(a.addr).map_err(err)?;
                local = l.local_addr()?;
                let accept = tcp::accept_loop(
                    l,
                    a.zone.clone(),
                    self.cell.clone(),
                    self.stats.clone(),
                    self.rates.clone(),
                    self.shutdown.subscribe(),
                );
                tasks.push(tokio::spawn(async move {
                    let _registration = registration;
                    accept.await
                }));
            }
            if protocol.udp() {
                // TCP_UDP binds UDP on the port TCP got (they match unless port 0 was asked).
                let (u, registration) = match weir_sockets::udp_socket(local) {
                    Ok(u) => u,
                    Err(e) => {
                        for t in tasks {
                            t.abort();
                        }
                        return Err(err(e));
                    }
                };
                local = u.local_addr()?;
                let serve = udp::serve(
                    u,
                    a.zone.clone(),
                    self.cell.clone(),
                    self.stats.clone(),
                    self.shutdown.subscribe(),
                );
                tasks.push(tokio::spawn(async move {
                    let _registration = registration;
                    serve.await
                }));
            }
            self.bound.push(Bound { requested: a.clone(), local, tasks });
        }
        Ok(())
    }

    /// Stops accepting (closes this process's listening and UDP sockets) and leaves open TCP
    /// connections running: a drain. [`Self::stop`] (or dropping the handle) ends them.
    pub async fn stop_accepting(&mut self) {
        for b in std::mem::take(&mut self.bound) {
            for t in b.tasks {
                t.abort();
                let _ = t.await;
            }
        }
    }

    /// Open TCP connections (plain and TLS).
    pub fn open_connections(&self) -> u64 {
        L4Stats::get(&self.stats.active_flows_tcp) + L4Stats::get(&self.stats.active_flows_tls)
    }

    /// Stops serving and waits until every socket is closed. Open TCP connections are reset.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        self.stop_accepting().await;
    }
}
