//! The GWLB's decisions, sans-I/O: for a packet from a gateway endpoint, which appliance gets
//! it and the GENEVE packet to send; for a datagram from an appliance, which endpoint the inner
//! packet goes back out of. The runtime ([`crate::runtime`]) only moves bytes.
//!
//! Configuration is an immutable [`GatewaySnapshot`] per apply; the [`Gateway`] keeps the flow
//! table across snapshots, so a configuration change never moves an existing flow by itself.
//! Target failover follows the target group's `target_failover.*` attributes: with
//! `no_rebalance` (the default) existing flows stay on an unhealthy or deregistered appliance,
//! with `rebalance` they are rehashed to a healthy one (for a deregistered appliance, once its
//! deregistration delay has passed).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use weir_balance::{FlowKeyMode, FlowPool, TargetCell};

use crate::flow::{flow_hash, FlowKey, FlowTable};
use crate::geneve::{self, Geneve, GwlbMetadata};
use crate::packet::FlowTuple;

/// A gateway endpoint: the TUN device traffic enters and leaves through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Id carried in GENEVE option 1.
    pub id: u64,
    /// TUN interface name.
    pub device: String,
    /// Zone of the endpoint (`None`: use every zone's appliances).
    pub zone: Option<Arc<str>>,
}

/// Counters of one Gateway Load Balancer.
#[derive(Debug, Default)]
pub struct GatewayStats {
    /// Flows created.
    pub new_flows: AtomicU64,
    /// Bytes of IP packets processed, both directions.
    pub processed_bytes: AtomicU64,
    /// Packets sent to appliances.
    pub to_appliances: AtomicU64,
    /// Packets returned by appliances and delivered to an endpoint.
    pub from_appliances: AtomicU64,
    /// Packets dropped (no appliance, malformed, unknown source or flow).
    pub dropped: AtomicU64,
}

/// One Gateway Load Balancer as the data plane runs it.
#[derive(Debug)]
pub struct GatewayLb {
    /// Load balancer ARN.
    pub arn: String,
    /// Attachment id carried in GENEVE option 2.
    pub attachment_id: u64,
    /// Its gateway endpoints.
    pub endpoints: Vec<Endpoint>,
    /// The listener's target group: every target.
    pub all: FlowPool,
    /// The same targets by zone name.
    pub zones: HashMap<String, FlowPool>,
    /// `load_balancing.cross_zone.enabled`.
    pub cross_zone: bool,
    /// Tuple new flows are hashed on (`stickiness.type` when stickiness is enabled).
    pub mode: FlowKeyMode,
    /// `target_failover.on_unhealthy` is `rebalance`.
    pub rebalance_unhealthy: bool,
    /// `target_failover.on_deregistration` is `rebalance`.
    pub rebalance_deregistered: bool,
    /// Counters (kept across snapshots).
    pub stats: Arc<GatewayStats>,
}

impl GatewayLb {
    fn pool(&self, zone: Option<&Arc<str>>) -> &FlowPool {
        if self.cross_zone {
            return &self.all;
        }
        match zone.and_then(|z| self.zones.get(&**z)) {
            Some(p) if !p.targets().is_empty() => p,
            _ => &self.all,
        }
    }

    fn is_target_address(&self, ip: std::net::IpAddr) -> bool {
        self.all.targets().iter().any(|t| t.addr.ip() == ip)
    }
}

/// Every Gateway Load Balancer of a process.
#[derive(Debug, Default)]
pub struct GatewaySnapshot {
    /// The load balancers (those with a listener).
    pub lbs: Vec<GatewayLb>,
}

impl GatewaySnapshot {
    /// Every endpoint of every load balancer.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.lbs.iter().flat_map(|l| l.endpoints.iter())
    }

    fn endpoint(&self, id: u64) -> Option<(&GatewayLb, &Endpoint)> {
        self.lbs.iter().find_map(|l| l.endpoints.iter().find(|e| e.id == id).map(|e| (l, e)))
    }
}

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// The endpoint belongs to no configured load balancer.
    UnknownEndpoint,
    /// Not an IP packet, or truncated.
    Malformed,
    /// No appliance can take the flow.
    NoTarget,
    /// GENEVE from an address that is not one of the load balancer's appliances.
    UnknownSource,
    /// A returned packet of no known flow and no endpoint option.
    UnknownFlow,
    /// A GENEVE control (OAM) packet.
    Control,
}

/// The GWLB's flow state and decisions.
#[derive(Debug)]
pub struct Gateway {
    flows: FlowTable<Arc<TargetCell>>,
    epoch: Instant,
}

impl Default for Gateway {
    fn default() -> Self {
        Self::new(FlowTable::default())
    }
}

impl Gateway {
    /// A gateway over `flows` (normally empty).
    pub fn new(flows: FlowTable<Arc<TargetCell>>) -> Self {
        Self { flows, epoch: Instant::now() }
    }

    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// The flow table.
    pub fn flows(&self) -> &FlowTable<Arc<TargetCell>> {
        &self.flows
    }

    /// Forgets idle flows.
    pub fn expire(&mut self, now: Instant) -> usize {
        let ms = self.ms(now);
        self.flows.expire(ms)
    }

    /// A packet read from endpoint `endpoint_id`: picks (or remembers) the flow's appliance and
    /// appends the GENEVE packet for it to `out`. Returns the appliance's address.
    pub fn from_endpoint(
        &mut self,
        snap: &GatewaySnapshot,
        endpoint_id: u64,
        packet: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<SocketAddr, Drop> {
        let (lb, endpoint) = snap.endpoint(endpoint_id).ok_or(Drop::UnknownEndpoint)?;
        let result = self.route(lb, endpoint, packet, now, out);
        match result {
            Ok(_) => {
                lb.stats.to_appliances.fetch_add(1, Ordering::Relaxed);
                lb.stats.processed_bytes.fetch_add(packet.len() as u64, Ordering::Relaxed);
            }
            Err(_) => {
                lb.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    fn route(
        &mut self,
        lb: &GatewayLb,
        endpoint: &Endpoint,
        packet: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<SocketAddr, Drop> {
        let protocol = geneve::ip_protocol_type(packet).ok_or(Drop::Malformed)?;
        let tuple = FlowTuple::parse(packet).map_err(|_| Drop::Malformed)?;
        let key = FlowKey::of(&tuple);
        let ms = self.ms(now);
        let pool = lb.pool(endpoint.zone.as_ref());
        let (target, cookie) = match self.flows.touch(endpoint.id, &key, ms) {
            Some(flow) if keeps(lb, pool, &flow.target, now) => (flow.target.clone(), flow.cookie),
            Some(flow) => {
                // Rebalance: rehash onto a healthy appliance; the flow keeps its cookie.
                let t = pool.pick(flow_hash(lb.mode, &key)).ok_or(Drop::NoTarget)?;
                flow.target = t.clone();
                (t, flow.cookie)
            }
            None => {
                let t = pool.pick(flow_hash(lb.mode, &key)).ok_or(Drop::NoTarget)?;
                lb.stats.new_flows.fetch_add(1, Ordering::Relaxed);
                let cookie = self.flows.insert(endpoint.id, key, t.clone(), ms).unwrap_or(0);
                (t, cookie)
            }
        };
        GwlbMetadata {
            endpoint_id: endpoint.id,
            attachment_id: lb.attachment_id,
            flow_cookie: cookie,
        }
        .encode(protocol, packet, out);
        Ok(target.addr)
    }

    /// A datagram received from `src`: if it is GENEVE from one of a load balancer's appliances,
    /// returns the endpoint to deliver the inner packet to and the packet's offset in
    /// `datagram`. The endpoint comes from option 1 when present, else from the flow table (for
    /// peers that do not echo options), else the load balancer's only endpoint.
    pub fn from_appliance(
        &mut self,
        snap: &GatewaySnapshot,
        src: SocketAddr,
        datagram: &[u8],
        now: Instant,
    ) -> Result<(u64, usize), Drop> {
        let parsed = Geneve::parse(datagram).map_err(|_| Drop::Malformed);
        let wanted = parsed.as_ref().ok().and_then(|g| g.gwlb().endpoint_id);
        // The load balancer whose appliance sent it; when appliances serve several, the one
        // owning the endpoint the packet names.
        let mut owners = snap.lbs.iter().filter(|l| l.is_target_address(src.ip()));
        let first = owners.next();
        let lb = match wanted {
            Some(id) => std::iter::once(first)
                .flatten()
                .chain(owners)
                .find(|l| l.endpoints.iter().any(|e| e.id == id))
                .or(first),
            None => first,
        };
        let Some(lb) = lb else { return Err(Drop::UnknownSource) };
        let result = parsed.and_then(|g| self.deliver(lb, &g, now));
        match result {
            Ok((endpoint, offset)) => {
                lb.stats.from_appliances.fetch_add(1, Ordering::Relaxed);
                let inner = (datagram.len() - offset) as u64;
                lb.stats.processed_bytes.fetch_add(inner, Ordering::Relaxed);
                Ok((endpoint, offset))
            }
            Err(e) => {
                lb.stats.dropped.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    fn deliver(
        &mut self,
        lb: &GatewayLb,
        g: &Geneve<'_>,
        now: Instant,
    ) -> Result<(u64, usize), Drop> {
        if g.oam {
            return Err(Drop::Control);
        }
        if geneve::ip_protocol_type(g.payload).is_none() {
            return Err(Drop::Malformed);
        }
        let tuple = FlowTuple::parse(g.payload).map_err(|_| Drop::Malformed)?;
        let key = FlowKey::of(&tuple);
        let ids = || lb.endpoints.iter().map(|e| e.id);
        let endpoint = match g.gwlb().endpoint_id {
            Some(id) if ids().any(|e| e == id) => id,
            _ => match self.flows.find(&key, ids()) {
                Some(f) => f.endpoint,
                None if lb.endpoints.len() == 1 => lb.endpoints[0].id,
                None => return Err(Drop::UnknownFlow),
            },
        };
        // Returned traffic keeps the flow alive too.
        let ms = self.ms(now);
        let _ = self.flows.touch(endpoint, &key, ms);
        let offset = g.options.len() + geneve::BASE_LEN;
        Ok((endpoint, offset))
    }
}

/// Whether an existing flow stays on `target`.
fn keeps(lb: &GatewayLb, pool: &FlowPool, target: &Arc<TargetCell>, now: Instant) -> bool {
    let registered = lb.all.targets().iter().any(|t| Arc::ptr_eq(t, target));
    if registered {
        // An unhealthy appliance keeps its flows unless rebalancing, and when no appliance is
        // healthy there is nowhere better to go.
        target.is_routable() || !lb.rebalance_unhealthy || !pool.any_routable()
    } else {
        // Deregistered: draining until its delay passes, then rehashed if rebalancing.
        !lb.rebalance_deregistered || target.drain_deadline().is_some_and(|d| d > now)
    }
}

#[cfg(test)]
mod tests;
