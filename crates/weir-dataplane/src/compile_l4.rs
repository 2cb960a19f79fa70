//! Compiles NLB listeners and their target groups into the snapshots `weir-l4` serves from.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use weir_balance::{FlowKeyMode, FlowPool, HealthState, TargetCell, TargetKey};
use weir_l4::{L4Group, L4Protocol, L4Snapshot};
use weir_l7::tls::{CertificateStore, TlsError};
use weir_model::{tls_policies, ActionKind, Listener, LoadBalancer, Protocol, State};

use crate::CellKey;

/// AWS's fixed UDP flow idle timeout.
const UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether a node of `lb` may use targets of `tg` in other zones.
pub(crate) fn cross_zone(lb: &LoadBalancer, tg: &weir_model::TargetGroup) -> bool {
    match tg.attributes.get("load_balancing.cross_zone.enabled") {
        Some("true") => true,
        Some("false") => false,
        _ => lb.attributes.get_bool("load_balancing.cross_zone.enabled"),
    }
}

/// The in-use cells of a target group, in registration order.
pub(crate) fn group_cells(
    tg: &weir_model::TargetGroup,
    cells: &HashMap<CellKey, Arc<TargetCell>>,
) -> Vec<Arc<TargetCell>> {
    tg.targets
        .iter()
        .filter_map(|t| cells.get(&(tg.arn.clone(), TargetKey { id: t.id.clone(), port: t.port })))
        .filter(|c| c.state() != HealthState::Unused)
        .cloned()
        .collect()
}

/// A flow pool per zone of `lb` over the cells of `all` in it (a target in zone `all` is in
/// every zone).
pub(crate) fn zone_pools(lb: &LoadBalancer, all: &[Arc<TargetCell>]) -> HashMap<String, FlowPool> {
    lb.zones
        .iter()
        .map(|z| {
            let in_zone: Vec<Arc<TargetCell>> =
                all.iter().filter(|c| c.zone == z.zone_name || c.zone == "all").cloned().collect();
            (z.zone_name.clone(), FlowPool::new(in_zone))
        })
        .collect()
}

fn group(
    state: &State,
    lb: &LoadBalancer,
    tg_arn: &str,
    cells: &HashMap<CellKey, Arc<TargetCell>>,
) -> Option<L4Group> {
    let tg = state.target_groups.get(tg_arn)?;
    let all = group_cells(tg, cells);
    let zones = zone_pools(lb, &all);
    let a = &tg.attributes;
    let key_mode = match (a.get_bool("stickiness.enabled"), a.get("stickiness.type")) {
        (true, Some("source_ip")) => FlowKeyMode::SourceIp,
        _ => FlowKeyMode::FiveTuple,
    };
    Some(L4Group {
        arn: tg.arn.clone(),
        cross_zone: cross_zone(lb, tg),
        all: FlowPool::new(all),
        zones,
        proxy_protocol_v2: a.get_bool("proxy_protocol_v2.enabled"),
        preserve_client_ip: a.get_bool("preserve_client_ip.enabled"),
        key_mode,
        terminate_on_drain: a.get_bool("deregistration_delay.connection_termination.enabled"),
        terminate_on_unhealthy: a
            .get_bool("target_health_state.unhealthy.connection_termination.enabled"),
        target_tls: (tg.protocol == Protocol::Tls)
            .then(|| Arc::new(weir_l7::upstream::insecure_client_config(&[]))),
    })
}

/// The rustls configuration of a TLS listener: the HTTPS listener's (certificates, SNI,
/// policy) with the listener's ALPN policy; and its certificates, for logs.
fn tls(l: &Listener, store: &CertificateStore) -> Result<Option<TlsParts>, TlsError> {
    if l.protocol != Protocol::Tls {
        return Ok(None);
    }
    let certificates =
        l.certificates.iter().map(|arn| store.load(arn)).collect::<Result<Vec<_>, _>>()?;
    let name = l.ssl_policy.as_deref().unwrap_or(tls_policies::DEFAULT_POLICY);
    let policy = tls_policies::policy(name).ok_or_else(|| TlsError::Policy(name.into()))?;
    let base = weir_l7::tls::server_config(policy, certificates.clone(), false)?;
    let mut cfg = (*base).clone();
    cfg.alpn_protocols = weir_model::alpn_protocols(l.alpn_policy.as_deref().unwrap_or("None"))
        .unwrap_or_default()
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    Ok(Some((Arc::new(cfg), certificates)))
}

/// A TLS listener's configuration and certificates.
type TlsParts = (Arc<rustls::ServerConfig>, Vec<Arc<weir_l7::tls::LoadedCertificate>>);

/// The snapshot of an NLB listener.
pub(crate) fn listener(
    state: &State,
    l: &Listener,
    lb: &LoadBalancer,
    cells: &HashMap<CellKey, Arc<TargetCell>>,
    store: &CertificateStore,
    access_log: Option<Arc<weir_l4::conn_log::AccessLog>>,
    limits: &Arc<weir_model::Limits>,
) -> Result<L4Snapshot, TlsError> {
    let protocol = match l.protocol {
        Protocol::Udp => L4Protocol::Udp,
        Protocol::TcpUdp => L4Protocol::TcpUdp,
        Protocol::Tls => L4Protocol::Tls,
        _ => L4Protocol::Tcp,
    };
    // An NLB forward action names one target group.
    let tg = l.default_actions.iter().rev().find_map(|a| match &a.kind {
        ActionKind::Forward(f) => f.target_groups.first().map(|w| w.target_group_arn.clone()),
        _ => None,
    });
    let (tls, certificates) = tls(l, store)?.map_or((None, Vec::new()), |(c, v)| (Some(c), v));
    Ok(L4Snapshot {
        listener_arn: l.arn.clone(),
        protocol,
        tls,
        certificates,
        elb: lb.full_name(),
        access_log,
        tcp_idle_timeout: Duration::from_secs(
            l.attributes.get_i64("tcp.idle_timeout.seconds").max(1) as u64,
        ),
        udp_idle_timeout: UDP_IDLE_TIMEOUT,
        group: tg.and_then(|arn| group(state, lb, &arn, cells)).map(Arc::new),
        limits: limits.clone(),
    })
}
