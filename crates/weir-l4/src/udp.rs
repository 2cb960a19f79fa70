//! UDP listeners: each client flow (its 5-tuple) is hashed to a target once and kept in the flow
//! table; datagrams go to the target over a socket connected for that flow, and replies come
//! back from the listener's address. Flows idle for the UDP idle timeout are removed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_balance::{flow_hash, OutstandingGuard};

use crate::flows::FlowTable;
use crate::snapshot::L4SnapshotCell;
use crate::socket;
use crate::stats::L4Stats;

/// Most flows one listener address keeps.
const MAX_FLOWS: usize = 100_000;
/// How often idle flows are looked for.
const SWEEP_PERIOD: Duration = Duration::from_secs(1);

struct Flow {
    upstream: Arc<UdpSocket>,
    replies: JoinHandle<()>,
    target: Arc<weir_balance::TargetCell>,
    _guard: OutstandingGuard,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.replies.abort();
    }
}

fn ms_since(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

/// Serves datagrams on `sock` (a node in `zone`) until `shutdown` turns true.
pub(crate) async fn serve(
    sock: UdpSocket,
    zone: Option<Arc<str>>,
    cell: L4SnapshotCell,
    stats: Arc<L4Stats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let sock = Arc::new(sock);
    let local = sock.local_addr().ok();
    let start = Instant::now();
    let table: Arc<Mutex<FlowTable<SocketAddr, Flow>>> =
        Arc::new(Mutex::new(FlowTable::new(MAX_FLOWS)));
    // However serving ends (shutdown or abort), the flows end with it.
    let _clear = ClearOnDrop(table.clone(), stats.clone());
    let mut sweep = tokio::time::interval(SWEEP_PERIOD);
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, peer) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors from earlier sends surface here on some systems; keep serving.
                    // Do not spin on an error that persists.
                    tracing::debug!(error = %e, "udp receive failed");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
            },
            _ = sweep.tick() => {
                let idle = cell.load().udp_idle_timeout.as_millis() as u64;
                let gone = table.lock().map(|mut t| {
                    let expired = t.expire(ms_since(start), idle).len();
                    // Flows of targets whose deregistration delay is over end as well.
                    let drained = t.remove_where(|f| {
                        f.target.state() == weir_balance::HealthState::Draining
                            && f.target.drain_deadline().is_some_and(|d| d <= Instant::now())
                    });
                    expired + drained
                }).unwrap_or(0);
                stats.active_flows_udp.fetch_sub(gone as u64, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    return;
                }
                continue;
            }
        };
        let data = &buf[..n];
        let now = ms_since(start);
        let existing =
            table.lock().ok().and_then(|t| t.get(&peer, now).map(|(f, _)| f.upstream.clone()));
        let upstream = match existing {
            Some(u) => u,
            None => {
                match new_flow(&sock, peer, local, zone.as_deref(), &cell, &stats, &table, start) {
                    Some(u) => u,
                    None => {
                        L4Stats::inc(&stats.udp_dropped);
                        continue;
                    }
                }
            }
        };
        // A UDP send only waits for socket buffer space, which the kernel frees at once.
        match upstream.send(data).await {
            Ok(_) => {
                stats.processed_bytes_udp.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            }
            Err(_) => L4Stats::inc(&stats.udp_dropped),
        }
    }
}

/// Ends every flow (stopping their reply tasks) when dropped.
struct ClearOnDrop(Arc<Mutex<FlowTable<SocketAddr, Flow>>>, Arc<L4Stats>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        if let Ok(mut t) = self.0.lock() {
            let n = t.remove_where(|_| true);
            self.1.active_flows_udp.fetch_sub(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn new_flow(
    sock: &Arc<UdpSocket>,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    zone: Option<&str>,
    cell: &L4SnapshotCell,
    stats: &Arc<L4Stats>,
    table: &Arc<Mutex<FlowTable<SocketAddr, Flow>>>,
    start: Instant,
) -> Option<Arc<UdpSocket>> {
    let snap = cell.load();
    let group = snap.group.as_ref()?;
    let local = local.unwrap_or(peer);
    let target = group.pick(zone, flow_hash(group.key_mode, 17, peer, local))?;
    let from = group.preserve_client_ip.then(|| peer.ip());
    let upstream = match socket::connect_udp(target.addr, from) {
        Ok(u) => Arc::new(u),
        Err(e) => {
            tracing::debug!(target = %target.addr, error = %e, "udp socket to target failed");
            return None;
        }
    };
    let replies = {
        let (sock, upstream, stats) = (sock.clone(), upstream.clone(), stats.clone());
        // Weak: the table owns the task (through the flow), not the other way round.
        let table = Arc::downgrade(table);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok(n) = upstream.recv(&mut buf).await {
                if sock.send_to(&buf[..n], peer).await.is_err() {
                    break;
                }
                stats.processed_bytes_udp.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                let Some(strong) = table.upgrade() else { break };
                if let Ok(t) = strong.lock() {
                    let _ = t.get(&peer, ms_since(start));
                };
            }
        })
    };
    let flow = Flow {
        upstream: upstream.clone(),
        replies,
        target: target.clone(),
        _guard: OutstandingGuard::new(target),
    };
    let added = table.lock().ok()?.insert(peer, flow, ms_since(start)).is_some();
    if !added {
        return None;
    }
    L4Stats::inc(&stats.new_flows_udp);
    L4Stats::inc(&stats.active_flows_udp);
    Some(upstream)
}
