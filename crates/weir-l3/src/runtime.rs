//! The thin I/O around [`Gateway`]: one UDP socket for GENEVE (port 6081) and one task per
//! gateway endpoint's TUN device. Packets read from a TUN device are encapsulated and sent to
//! the appliance the gateway picks; GENEVE datagrams from appliances are decapsulated and
//! written to the endpoint's TUN device, where the kernel forwards them on.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::io::unix::AsyncFd;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::gateway::{Gateway, GatewaySnapshot};
use crate::tun::Tun;

type Devices = Arc<RwLock<HashMap<u64, Arc<AsyncFd<Tun>>>>>;

/// Largest packet handled (a TUN device never hands out more than its MTU).
const MAX_PACKET: usize = 65_535;

/// A running GWLB data plane.
#[derive(Debug)]
pub struct GatewayHandle {
    cell: Arc<ArcSwap<GatewaySnapshot>>,
    core: Arc<Mutex<Gateway>>,
    devices: Devices,
    readers: HashMap<u64, (String, JoinHandle<()>)>,
    tasks: Vec<JoinHandle<()>>,
    socket: Arc<UdpSocket>,
    local: SocketAddr,
}

/// Why an endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("gateway endpoint {device}: {source}")]
pub struct EndpointError {
    /// TUN device name.
    pub device: String,
    /// The error opening it.
    pub source: io::Error,
}

impl GatewayHandle {
    /// Binds the GENEVE socket on `bind` and starts serving `snapshot` (opening its endpoints'
    /// TUN devices). Endpoints that fail to open are reported and retried on the next update.
    pub async fn start(
        bind: SocketAddr,
        snapshot: GatewaySnapshot,
    ) -> io::Result<(Self, Vec<EndpointError>)> {
        let (socket, registration) = weir_sockets::udp_socket(bind)?;
        let socket = Arc::new(socket);
        let local = socket.local_addr()?;
        let cell = Arc::new(ArcSwap::from_pointee(GatewaySnapshot::default()));
        let core = Arc::new(Mutex::new(Gateway::default()));
        let devices: Devices = Arc::default();
        let receiving = receive(socket.clone(), cell.clone(), core.clone(), devices.clone());
        let recv = tokio::spawn(async move {
            let _registration = registration;
            receiving.await
        });
        let sweeper = {
            let core = Arc::downgrade(&core);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(10));
                loop {
                    tick.tick().await;
                    let Some(core) = core.upgrade() else { break };
                    if let Ok(mut g) = core.lock() {
                        g.expire(Instant::now());
                    };
                }
            })
        };
        let mut h = Self {
            cell,
            core,
            devices,
            readers: HashMap::new(),
            tasks: vec![recv, sweeper],
            socket,
            local,
        };
        let errors = h.update(snapshot);
        Ok((h, errors))
    }

    /// The GENEVE socket's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Flows remembered now, per load balancer ARN.
    pub fn flows_per_load_balancer(&self) -> HashMap<String, usize> {
        let snap = self.cell.load();
        let mut per_endpoint: HashMap<u64, usize> = HashMap::new();
        if let Ok(g) = self.core.lock() {
            for (_, f) in g.flows().iter() {
                *per_endpoint.entry(f.endpoint).or_default() += 1;
            }
        }
        snap.lbs
            .iter()
            .map(|l| {
                let n = l.endpoints.iter().filter_map(|e| per_endpoint.get(&e.id)).sum();
                (l.arn.clone(), n)
            })
            .collect()
    }

    /// Serves `snapshot` from the next packet on: opens TUN devices of new endpoints and
    /// closes those of endpoints that are gone. Flows are kept.
    pub fn update(&mut self, snapshot: GatewaySnapshot) -> Vec<EndpointError> {
        let wanted: HashMap<u64, String> =
            snapshot.endpoints().map(|e| (e.id, e.device.clone())).collect();
        self.cell.store(Arc::new(snapshot));
        let mut errors = Vec::new();
        self.readers.retain(|id, (device, task)| {
            let keep = wanted.get(id) == Some(device);
            if !keep {
                task.abort();
                if let Ok(mut d) = self.devices.write() {
                    d.remove(id);
                }
            }
            keep
        });
        let socket = self.socket.clone();
        for (id, device) in wanted {
            if self.readers.contains_key(&id) {
                continue;
            }
            match Tun::open(&device).and_then(Tun::into_async) {
                Ok(tun) => {
                    let tun = Arc::new(tun);
                    if let Ok(mut d) = self.devices.write() {
                        d.insert(id, tun.clone());
                    }
                    let task = tokio::spawn(read_endpoint(
                        id,
                        tun,
                        socket.clone(),
                        self.cell.clone(),
                        self.core.clone(),
                    ));
                    tracing::info!(device = %device, "gateway endpoint attached");
                    self.readers.insert(id, (device, task));
                }
                Err(source) => errors.push(EndpointError { device, source }),
            }
        }
        errors
    }

    /// Stops every task and closes the socket and devices.
    pub fn stop(mut self) {
        for (_, (_, t)) in self.readers.drain() {
            t.abort();
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Ok(mut d) = self.devices.write() {
            d.clear();
        }
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        for (_, t) in self.readers.values() {
            t.abort();
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn read_endpoint(
    id: u64,
    tun: Arc<AsyncFd<Tun>>,
    socket: Arc<UdpSocket>,
    cell: Arc<ArcSwap<GatewaySnapshot>>,
    core: Arc<Mutex<Gateway>>,
) {
    let mut buf = vec![0u8; MAX_PACKET];
    let mut out = Vec::with_capacity(MAX_PACKET + 64);
    loop {
        let Ok(mut guard) = tun.readable().await else { return };
        let n = match guard.try_io(|t| t.get_ref().read(&mut buf)) {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "gateway endpoint read failed");
                return;
            }
            Err(_would_block) => continue,
        };
        out.clear();
        let snap = cell.load();
        let to = match core.lock() {
            Ok(mut g) => g.from_endpoint(&snap, id, &buf[..n], Instant::now(), &mut out),
            Err(_) => return,
        };
        if let Ok(to) = to {
            let _ = socket.send_to(&out, to).await;
        }
    }
}

async fn receive(
    socket: Arc<UdpSocket>,
    cell: Arc<ArcSwap<GatewaySnapshot>>,
    core: Arc<Mutex<Gateway>>,
    devices: Devices,
) {
    let mut buf = vec![0u8; MAX_PACKET];
    loop {
        let Ok((n, src)) = socket.recv_from(&mut buf).await else { continue };
        let snap = cell.load();
        let verdict = match core.lock() {
            Ok(mut g) => g.from_appliance(&snap, src, &buf[..n], Instant::now()),
            Err(_) => return,
        };
        let Ok((endpoint, offset)) = verdict else { continue };
        let tun = devices.read().ok().and_then(|d| d.get(&endpoint).cloned());
        if let Some(tun) = tun {
            // TUN writes hand the packet to the kernel's receive path and do not block; a
            // full queue drops the packet as a congested link would.
            let _ = tun.get_ref().write(&buf[offset..n]);
        }
    }
}
