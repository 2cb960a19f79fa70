//! Data-plane wiring: turns a desired [`State`] into running listeners, target cells and health
//! checkers, and keeps them in step with every new state.
//!
//! [`Dataplane::apply`] is the only entry point for configuration. It compiles one immutable
//! snapshot per listener and swaps it in atomically, so a rule or target change takes effect for
//! the next request and never disturbs one in flight. Per-target cells are keyed by target group
//! and target and survive across snapshots, so health and outstanding counts are never reset by
//! a configuration change. Deregistered targets drain: they get no new requests, their in-flight
//! requests finish, and they disappear once idle or after `deregistration_delay.timeout_seconds`.
//!
//! Each listener binds one address per enabled zone (`127.0.Z.N`, see `weir_model::zones`) and,
//! for internet-facing load balancers, the configured public addresses.
//!
//! This crate depends only on the model and the data-plane crates, never on the control plane.
#![forbid(unsafe_code)]

mod compile;
mod compile_l3;
mod compile_l4;
pub mod dns;
mod metrics;

pub use compile_l3::ENDPOINT_TAG as GATEWAY_ENDPOINT_TAG;
pub use weir_balance::{HealthState, Reason};
pub use weir_l7::tls;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use weir_balance::{TargetCell, TargetKey};
use weir_health::CheckSpec;
use weir_l7::tls::{CertificateStore, TlsError};
use weir_l7::{ListenerHandle, ListenerStats, SnapshotCell};
use weir_model::{LoadBalancerType, Scheme, State};

/// Static settings of the data plane.
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    /// Addresses internet-facing load balancers bind besides their zone nodes.
    pub public_addresses: Vec<IpAddr>,
    /// Whether to bind the per-zone node addresses (`127.0.Z.N`).
    pub bind_zone_nodes: bool,
    /// Where certificate ARNs are looked up (`NAME.pem`, or `NAME.crt` + `NAME.key`).
    pub certificate_dir: PathBuf,
    /// Where access logs are written: `DIR/BUCKET/PREFIX/AWSLogs/...` (the `access_logs.s3.*`
    /// attributes name the bucket and prefix).
    pub access_log_dir: PathBuf,
    /// Where Gateway Load Balancers send and receive GENEVE (bound only while one exists).
    pub geneve_address: SocketAddr,
    /// Protective limits every ALB and NLB listener applies.
    pub limits: weir_model::Limits,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        Self {
            public_addresses: vec![IpAddr::from([127, 0, 0, 1])],
            bind_zone_nodes: true,
            certificate_dir: PathBuf::from("certs"),
            access_log_dir: PathBuf::from("access-logs"),
            geneve_address: SocketAddr::from(([0, 0, 0, 0], weir_model::GENEVE_PORT)),
            limits: weir_model::Limits::default(),
        }
    }
}

/// Why applying a state failed (partially: everything else was applied).
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// A listener address could not be bound.
    #[error("listener {listener}: {source}")]
    Bind {
        /// Listener ARN.
        listener: String,
        /// The bind error.
        source: std::io::Error,
    },
    /// The GENEVE socket or a gateway endpoint's TUN device could not be opened.
    #[error("gateway: {0}")]
    Gateway(String),
    /// An HTTPS listener's certificates or policy could not be loaded; it keeps serving with
    /// its previous TLS configuration, if it had one.
    #[error("listener {listener}: {source}")]
    Tls {
        /// Listener ARN.
        listener: String,
        /// What failed.
        source: TlsError,
    },
}

/// One target's health as `DescribeTargetHealth` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealthInfo {
    /// Target id.
    pub id: String,
    /// Port.
    pub port: u16,
    /// Zone.
    pub availability_zone: String,
    /// State.
    pub state: HealthState,
    /// Reason (`Reason::None` when healthy).
    pub reason: Reason,
}

type CellKey = (String, TargetKey);

struct Checker {
    spec: Option<CheckSpec>,
    task: Option<JoinHandle<()>>,
}

impl Drop for Checker {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

struct RunningListener {
    addrs: Vec<SocketAddr>,
    cell: SnapshotCell,
    handle: ListenerHandle,
}

struct RunningL4 {
    handle: weir_l4::L4Handle,
}

#[derive(Default)]
struct Inner {
    cells: HashMap<CellKey, Arc<TargetCell>>,
    checkers: HashMap<CellKey, Checker>,
    draining: HashMap<CellKey, Arc<TargetCell>>,
    listeners: HashMap<String, RunningListener>,
    l4: HashMap<String, RunningL4>,
    group_stats: HashMap<String, Arc<weir_l7::GroupStats>>,
    access_logs: HashMap<String, (PathBuf, Arc<weir_l7::access_log::AccessLog>)>,
    metrics: metrics::Collected,
    gateway: Option<weir_l3::GatewayHandle>,
    gateway_stats: HashMap<String, Arc<weir_l3::GatewayStats>>,
}

/// The running data plane of one Weir process.
pub struct Dataplane {
    config: DataplaneConfig,
    limits: Arc<weir_model::Limits>,
    certificates: CertificateStore,
    inner: Mutex<Inner>,
    dns: dns::DnsTableCell,
    /// Told when a target starts draining (the sweeper sleeps while none is).
    drain_started: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Dataplane {
    /// A data plane with nothing running. Starts the drain sweeper.
    pub fn new(config: DataplaneConfig) -> Arc<Self> {
        let certificates = CertificateStore::new(&config.certificate_dir);
        let dp = Arc::new(Self {
            limits: Arc::new(config.limits.clone()),
            config,
            certificates,
            inner: Mutex::new(Inner::default()),
            dns: Arc::default(),
            drain_started: Arc::default(),
        });
        let weak: Weak<Self> = Arc::downgrade(&dp);
        let started = dp.drain_started.clone();
        tokio::spawn(async move {
            loop {
                let Some(dp) = weak.upgrade() else { break };
                let left = dp.sweep_draining().await;
                drop(dp);
                if left {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                } else {
                    // Nothing draining: no wake-ups until a target starts to (and one now and
                    // then, to notice that the data plane is gone).
                    let _ = tokio::time::timeout(Duration::from_secs(10), started.notified()).await;
                }
            }
        });
        dp
    }

    /// Checks that a certificate ARN names a usable certificate, as the API does before
    /// accepting it.
    pub fn check_certificate(&self, arn: &str) -> Result<(), TlsError> {
        self.certificates.load(arn).map(|_| ())
    }

    /// The certificate store.
    pub fn certificate_store(&self) -> &CertificateStore {
        &self.certificates
    }

    /// Forgets draining targets that are done (no connection left, or the delay over); true
    /// while some are still draining.
    async fn sweep_draining(&self) -> bool {
        let mut inner = self.inner.lock().await;
        let now = Instant::now();
        inner
            .draining
            .retain(|_, c| c.outstanding() > 0 && c.drain_deadline().is_some_and(|d| d > now));
        !inner.draining.is_empty()
    }

    /// Brings the running data plane in line with `state`.
    pub async fn apply(&self, state: &State) -> Result<(), DataplaneError> {
        let mut guard = self.inner.lock().await;
        let inner = &mut *guard;
        self.apply_targets(inner, state);
        let groups = compile::target_groups(state, &inner.cells, &mut inner.group_stats);
        self.apply_access_logs(inner, state);
        let mut first_error = None;
        let wanted: Vec<String> = state
            .listeners
            .values()
            .filter(|l| {
                state
                    .load_balancers
                    .get(&l.load_balancer_arn)
                    .is_some_and(|lb| lb.lb_type == LoadBalancerType::Application)
            })
            .map(|l| l.arn.clone())
            .collect();
        // Stop listeners that are gone, waiting until their sockets are closed, so that another
        // listener may bind the same port within this same apply.
        let gone: Vec<String> =
            inner.listeners.keys().filter(|a| !wanted.contains(a)).cloned().collect();
        for arn in gone {
            if let Some(r) = inner.listeners.remove(&arn) {
                r.handle.stop().await;
            }
        }
        for arn in wanted {
            let Some(l) = state.listeners.get(&arn) else { continue };
            let Some(lb) = state.load_balancers.get(&l.load_balancer_arn) else { continue };
            let tls = match compile::tls(l, lb, &self.certificates) {
                Ok(t) => t,
                Err(source) => {
                    tracing::error!(listener = %arn, error = %source, "TLS configuration failed");
                    first_error
                        .get_or_insert(DataplaneError::Tls { listener: arn.clone(), source });
                    // Keep serving the last good TLS configuration rather than none.
                    match inner.listeners.get(&arn).and_then(|r| r.cell.load().tls.clone()) {
                        Some(t) => Some(t),
                        None => continue,
                    }
                }
            };
            let log = inner.access_logs.get(&lb.arn).map(|(_, l)| l.clone());
            let snapshot =
                Arc::new(compile::listener(state, l, lb, &groups, tls, log, &self.limits));
            let addrs = self.addresses(lb, l.port);
            let result = match inner.listeners.get_mut(&arn) {
                Some(r) => {
                    r.cell.store(snapshot);
                    if r.addrs == addrs {
                        Ok(())
                    } else {
                        // Zones or port changed: move the sockets, keep pool, counters, connections.
                        r.addrs = addrs.clone();
                        r.handle.set_addresses(&addrs).await
                    }
                }
                None => {
                    let cell: SnapshotCell = Arc::new(ArcSwap::new(snapshot));
                    weir_l7::serve_listener(&addrs, cell.clone()).await.map(|handle| {
                        inner.listeners.insert(
                            arn.clone(),
                            RunningListener { addrs: addrs.clone(), cell, handle },
                        );
                    })
                }
            };
            match result {
                Ok(()) => tracing::debug!(listener = %arn, addrs = ?addrs, "listener serving"),
                Err(source) => {
                    tracing::error!(listener = %arn, error = %source, "listener bind failed");
                    first_error
                        .get_or_insert(DataplaneError::Bind { listener: arn.clone(), source });
                }
            }
        }
        if let Err(e) = self.apply_l4(inner, state).await {
            first_error.get_or_insert(e);
        }
        if let Err(e) = self.apply_gateway(inner, state).await {
            first_error.get_or_insert(e);
        }
        self.dns.store(Arc::new(dns::DnsTable::build(state, &inner.cells)));
        inner.metrics.names = metrics::Names::of(state);
        first_error.map_or(Ok(()), Err)
    }

    /// Starts a writer for every ALB with access logs enabled (a new one when its directory
    /// changed); writers of others finish their file once no snapshot holds them.
    fn apply_access_logs(&self, inner: &mut Inner, state: &State) {
        let mut wanted = HashMap::new();
        for lb in state.load_balancers.values() {
            let a = &lb.attributes;
            // ALBs log requests; NLBs log the connections of their TLS listeners.
            if lb.lb_type == LoadBalancerType::Gateway || !a.get_bool("access_logs.s3.enabled") {
                continue;
            }
            let bucket =
                a.get("access_logs.s3.bucket").filter(|b| !b.is_empty()).unwrap_or("weir-logs");
            let mut dir = self.config.access_log_dir.join(bucket);
            if let Some(p) = a.get("access_logs.s3.prefix").filter(|p| !p.is_empty()) {
                dir = dir.join(p.trim_matches('/'));
            }
            let log = match inner.access_logs.remove(&lb.arn) {
                Some((d, l)) if d == dir => l,
                _ => {
                    let ip = lb
                        .zones
                        .first()
                        .and_then(|z| weir_model::zones::zone_index(&z.zone_name))
                        .map_or(IpAddr::from([127, 0, 0, 1]), |i| {
                            IpAddr::V4(weir_model::zones::node_address(i, lb.node_index))
                        });
                    weir_l7::access_log::AccessLog::start(weir_l7::access_log::LogTarget {
                        dir: dir.clone(),
                        account: state.account.clone(),
                        region: state.region.clone(),
                        elb: lb.full_name(),
                        ip,
                    })
                }
            };
            wanted.insert(lb.arn.clone(), (dir, log));
        }
        inner.access_logs = wanted;
    }

    /// Finishes the current access-log file of every load balancer (entries of requests that
    /// completed before the call are in it).
    pub async fn flush_access_logs(&self) {
        let logs: Vec<_> =
            self.inner.lock().await.access_logs.values().map(|(_, l)| l.clone()).collect();
        for l in logs {
            l.flush().await;
        }
    }

    /// Starts, updates and stops NLB listeners to match `state`.
    async fn apply_l4(&self, inner: &mut Inner, state: &State) -> Result<(), DataplaneError> {
        let mut first_error = None;
        let wanted: Vec<String> = state
            .listeners
            .values()
            .filter(|l| {
                state
                    .load_balancers
                    .get(&l.load_balancer_arn)
                    .is_some_and(|lb| lb.lb_type == LoadBalancerType::Network)
            })
            .map(|l| l.arn.clone())
            .collect();
        let gone: Vec<String> = inner.l4.keys().filter(|a| !wanted.contains(a)).cloned().collect();
        for arn in gone {
            if let Some(r) = inner.l4.remove(&arn) {
                r.handle.stop().await;
            }
        }
        for arn in wanted {
            let Some(l) = state.listeners.get(&arn) else { continue };
            let Some(lb) = state.load_balancers.get(&l.load_balancer_arn) else { continue };
            let log = inner.access_logs.get(&lb.arn).map(|(_, l)| l.clone());
            let snapshot = match compile_l4::listener(
                state,
                l,
                lb,
                &inner.cells,
                &self.certificates,
                log,
                &self.limits,
            ) {
                Ok(s) => Arc::new(s),
                Err(source) => {
                    tracing::error!(listener = %arn, error = %source, "TLS configuration failed");
                    first_error
                        .get_or_insert(DataplaneError::Tls { listener: arn.clone(), source });
                    continue;
                }
            };
            let addrs = self.node_addresses(lb, l.port);
            let result = match inner.l4.get_mut(&arn) {
                Some(r) => r.handle.update(snapshot, &addrs).await,
                None => {
                    let cell: weir_l4::L4SnapshotCell = Arc::new(ArcSwap::new(snapshot));
                    weir_l4::serve_listener(&addrs, cell).await.map(|handle| {
                        inner.l4.insert(arn.clone(), RunningL4 { handle });
                    })
                }
            };
            if let Err(source) = result {
                tracing::error!(listener = %arn, error = %source, "listener bind failed");
                first_error.get_or_insert(DataplaneError::Bind { listener: arn.clone(), source });
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Starts, updates or stops the GWLB data plane: it runs while some Gateway Load Balancer
    /// has a listener.
    async fn apply_gateway(&self, inner: &mut Inner, state: &State) -> Result<(), DataplaneError> {
        let snapshot = compile_l3::snapshot(state, &inner.cells, &mut inner.gateway_stats);
        if snapshot.lbs.is_empty() {
            if let Some(g) = inner.gateway.take() {
                g.stop();
            }
            return Ok(());
        }
        let errors = match &mut inner.gateway {
            Some(g) => g.update(snapshot),
            None => {
                let (g, errors) =
                    weir_l3::GatewayHandle::start(self.config.geneve_address, snapshot)
                        .await
                        .map_err(|e| {
                            DataplaneError::Gateway(format!(
                                "GENEVE socket {}: {e}",
                                self.config.geneve_address
                            ))
                        })?;
                tracing::info!(address = %g.local_addr(), "gateway load balancing on");
                inner.gateway = Some(g);
                errors
            }
        };
        for e in &errors {
            tracing::error!(error = %e, "gateway endpoint failed");
        }
        match errors.into_iter().next() {
            Some(e) => Err(DataplaneError::Gateway(e.to_string())),
            None => Ok(()),
        }
    }

    /// The GENEVE socket's address, while GWLBs run.
    pub async fn gateway_address(&self) -> Option<SocketAddr> {
        self.inner.lock().await.gateway.as_ref().map(|g| g.local_addr())
    }

    /// The addresses of `lb`'s nodes (with their zones) and public addresses, on `port`.
    fn node_addresses(&self, lb: &weir_model::LoadBalancer, port: u16) -> Vec<weir_l4::NodeAddr> {
        let mut out = Vec::new();
        if self.config.bind_zone_nodes {
            for z in &lb.zones {
                if let Some(i) = weir_model::zones::zone_index(&z.zone_name) {
                    out.push(weir_l4::NodeAddr {
                        addr: SocketAddr::new(
                            IpAddr::V4(weir_model::zones::node_address(i, lb.node_index)),
                            port,
                        ),
                        zone: Some(Arc::from(z.zone_name.as_str())),
                    });
                }
            }
        }
        if lb.scheme == Scheme::InternetFacing {
            out.extend(
                self.config
                    .public_addresses
                    .iter()
                    .map(|ip| weir_l4::NodeAddr { addr: SocketAddr::new(*ip, port), zone: None }),
            );
        }
        out
    }

    fn addresses(&self, lb: &weir_model::LoadBalancer, port: u16) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        if self.config.bind_zone_nodes {
            for z in &lb.zones {
                if let Some(i) = weir_model::zones::zone_index(&z.zone_name) {
                    out.push(SocketAddr::new(
                        IpAddr::V4(weir_model::zones::node_address(i, lb.node_index)),
                        port,
                    ));
                }
            }
        }
        if lb.scheme == Scheme::InternetFacing {
            out.extend(self.config.public_addresses.iter().map(|ip| SocketAddr::new(*ip, port)));
        }
        out
    }

    fn apply_targets(&self, inner: &mut Inner, state: &State) {
        let mut seen: HashSet<CellKey> = HashSet::new();
        for tg in state.target_groups.values() {
            let lbs = state.load_balancers_of_target_group(&tg.arn);
            let zones: Vec<&str> = lbs
                .iter()
                .filter_map(|a| state.load_balancers.get(a))
                .flat_map(|lb| lb.zones.iter().map(|z| z.zone_name.as_str()))
                .collect();
            let spec = tg
                .health_check
                .enabled
                .then(|| CheckSpec::from_model(&tg.health_check).with_version(tg.protocol_version));
            for t in &tg.targets {
                let key: CellKey = (tg.arn.clone(), TargetKey { id: t.id.clone(), port: t.port });
                seen.insert(key.clone());
                let in_use = !lbs.is_empty()
                    && (t.availability_zone == "all"
                        || zones.contains(&t.availability_zone.as_str()));
                // A target registered again while draining starts afresh.
                inner.draining.remove(&key);
                let cell = inner
                    .cells
                    .entry(key.clone())
                    .or_insert_with(|| {
                        Arc::new(TargetCell::new(
                            key.1.clone(),
                            SocketAddr::new(t.address, t.port),
                            t.availability_zone.clone(),
                        ))
                    })
                    .clone();
                if !in_use {
                    inner.checkers.remove(&key);
                    cell.set_health(HealthState::Unused, Reason::NotInUse);
                    continue;
                }
                let current = inner.checkers.get(&key).map(|c| &c.spec);
                if current != Some(&spec) {
                    if cell.state() == HealthState::Unused {
                        cell.set_health(HealthState::Initial, Reason::RegistrationInProgress);
                    }
                    let task = weir_health::spawn_checker(cell.clone(), spec.clone());
                    inner.checkers.insert(key.clone(), Checker { spec: spec.clone(), task });
                }
            }
        }
        let gone: Vec<CellKey> =
            inner.cells.keys().filter(|k| !seen.contains(k)).cloned().collect();
        for key in gone {
            inner.checkers.remove(&key);
            let Some(cell) = inner.cells.remove(&key) else {
                continue;
            };
            let delay = state
                .target_groups
                .get(&key.0)
                .map_or(0, |tg| tg.attributes.get_i64("deregistration_delay.timeout_seconds"))
                .max(0);
            if cell.state() != HealthState::Unused && delay > 0 {
                cell.start_draining(Instant::now() + Duration::from_secs(delay as u64));
                inner.draining.insert(key, cell);
                self.drain_started.notify_one();
            }
        }
    }

    /// Health of every target of `tg_arn`, draining ones included, in registration order.
    pub async fn describe_target_health(
        &self,
        tg_arn: &str,
        state: &State,
    ) -> Vec<TargetHealthInfo> {
        let inner = self.inner.lock().await;
        let info = |c: &Arc<TargetCell>| TargetHealthInfo {
            id: c.key.id.clone(),
            port: c.key.port,
            availability_zone: c.zone.clone(),
            state: c.state(),
            reason: c.reason(),
        };
        let mut out: Vec<TargetHealthInfo> = state
            .target_groups
            .get(tg_arn)
            .map(|tg| {
                tg.targets
                    .iter()
                    .filter_map(|t| {
                        inner.cells.get(&(
                            tg_arn.to_string(),
                            TargetKey { id: t.id.clone(), port: t.port },
                        ))
                    })
                    .map(info)
                    .collect()
            })
            .unwrap_or_default();
        out.extend(inner.draining.iter().filter(|(k, _)| k.0 == tg_arn).map(|(_, c)| info(c)));
        out
    }

    /// Requests sent to targets of target group `tg_arn` so far (Auto Scaling's
    /// `ALBRequestCountPerTarget` is measured from it).
    pub async fn group_requests(&self, tg_arn: &str) -> Option<u64> {
        self.inner
            .lock()
            .await
            .group_stats
            .get(tg_arn)
            .map(|g| g.requests.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Counters of a running NLB listener.
    pub async fn l4_stats(&self, listener_arn: &str) -> Option<Arc<weir_l4::L4Stats>> {
        self.inner.lock().await.l4.get(listener_arn).map(|l| l.handle.stats.clone())
    }

    /// The DNS answers of the built-in responder, as of the last apply (health is live).
    pub fn dns_table(&self) -> Arc<dns::DnsTable> {
        self.dns.load_full()
    }

    /// Counters of a running listener.
    pub async fn listener_stats(&self, listener_arn: &str) -> Option<Arc<ListenerStats>> {
        self.inner.lock().await.listeners.get(listener_arn).map(|l| l.handle.stats.clone())
    }

    /// Addresses a running listener is bound to.
    pub async fn listener_addrs(&self, listener_arn: &str) -> Vec<SocketAddr> {
        let inner = self.inner.lock().await;
        match inner.listeners.get(listener_arn) {
            Some(l) => l.handle.local_addrs(),
            None => inner.l4.get(listener_arn).map(|l| l.handle.local_addrs()).unwrap_or_default(),
        }
    }

    /// Stops accepting on every listener and lets open connections finish, for a binary
    /// upgrade: HTTP/1 connections answer their next requests with `Connection: close`, HTTP/2
    /// ones get GOAWAY once idle (busy ones at half of `grace`), NLB connections run on.
    /// Returns when none is left or after `grace`, resetting the NLB connections that remain.
    /// The GENEVE socket and health checks stop at once; access-log files are finished.
    pub async fn drain(&self, grace: Duration) {
        self.flush_access_logs().await;
        let mut inner = self.inner.lock().await;
        let l7: Vec<ListenerHandle> = inner.listeners.drain().map(|(_, l)| l.handle).collect();
        let mut l4: Vec<weir_l4::L4Handle> = inner.l4.drain().map(|(_, l)| l.handle).collect();
        if let Some(g) = inner.gateway.take() {
            g.stop();
        }
        inner.checkers.clear();
        drop(inner);
        let l7_stats: Vec<Arc<weir_l7::ListenerStats>> =
            l7.iter().map(|h| h.stats.clone()).collect();
        for h in l7 {
            h.drain(grace / 2).await;
        }
        for h in &mut l4 {
            h.stop_accepting().await;
        }
        let deadline = Instant::now() + grace;
        loop {
            let open: u64 = l7_stats
                .iter()
                .map(|s| s.active_connections.load(std::sync::atomic::Ordering::Relaxed))
                .chain(l4.iter().map(|h| h.open_connections()))
                .sum();
            if open == 0 || Instant::now() >= deadline {
                if open > 0 {
                    tracing::info!(open, "drain grace over; closing the remaining connections");
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for h in l4 {
            h.stop().await;
        }
    }

    /// Stops every listener and checker at once (a drain with no grace), and finishes the
    /// access-log files.
    pub async fn shutdown(&self) {
        self.drain(Duration::ZERO).await;
    }
}
