//! Compiles Gateway Load Balancers into the snapshot `weir-l3` serves from.
//!
//! A GWLB's gateway endpoints are named by its `weir:gateway-endpoint` tag (Weir's stand-in for
//! AWS's VPC endpoints): comma-separated TUN device names, each optionally `DEVICE:ZONE`
//! (default: the load balancer's first zone).

use std::collections::HashMap;
use std::sync::Arc;

use weir_balance::{FlowKeyMode, FlowPool, TargetCell};
use weir_l3::{Endpoint, GatewayLb, GatewaySnapshot, GatewayStats};
use weir_model::{ActionKind, LoadBalancerType, State};

use crate::compile_l4::{group_cells, zone_pools};
use crate::CellKey;

/// The tag naming a GWLB's gateway endpoints.
pub const ENDPOINT_TAG: &str = "weir:gateway-endpoint";

fn id_of(parts: &[&str]) -> u64 {
    weir_balance::maglev::mix(weir_balance::maglev::fnv1a(parts.join("\u{0}").as_bytes()))
}

/// The endpoints a tag value names (`lb_arn` makes their ids unique per load balancer).
pub(crate) fn endpoints(lb_arn: &str, tag: &str, default_zone: Option<&str>) -> Vec<Endpoint> {
    tag.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (device, zone) = match s.split_once(':') {
                Some((d, z)) => (d.trim(), Some(z.trim())),
                None => (s, default_zone),
            };
            Endpoint {
                id: id_of(&[lb_arn, device]),
                device: device.to_string(),
                zone: zone.map(Arc::from),
            }
        })
        .collect()
}

/// The snapshot of every GWLB with a listener forwarding to a target group. `stats` keeps each
/// load balancer's counters across snapshots.
pub(crate) fn snapshot(
    state: &State,
    cells: &HashMap<CellKey, Arc<TargetCell>>,
    stats: &mut HashMap<String, Arc<GatewayStats>>,
) -> GatewaySnapshot {
    let mut lbs = Vec::new();
    for lb in state.load_balancers.values().filter(|l| l.lb_type == LoadBalancerType::Gateway) {
        let tg_arn = state.listeners_of(&lb.arn).iter().find_map(|l| {
            l.default_actions.iter().find_map(|a| match &a.kind {
                ActionKind::Forward(f) => {
                    f.target_groups.first().map(|w| w.target_group_arn.clone())
                }
                _ => None,
            })
        });
        let Some(tg) = tg_arn.and_then(|a| state.target_groups.get(&a)) else { continue };
        let tag = state.tags.get(&lb.arn).and_then(|t| t.get(ENDPOINT_TAG));
        let default_zone = lb.zones.first().map(|z| z.zone_name.as_str());
        let endpoints = tag.map(|t| endpoints(&lb.arn, t, default_zone)).unwrap_or_default();
        let all = group_cells(tg, cells);
        let zones = zone_pools(lb, &all);
        let a = &tg.attributes;
        let mode = match (a.get_bool("stickiness.enabled"), a.get("stickiness.type")) {
            (true, Some("source_ip_dest_ip_proto")) => FlowKeyMode::ThreeTuple,
            (true, Some("source_ip_dest_ip")) => FlowKeyMode::TwoTuple,
            _ => FlowKeyMode::FiveTuple,
        };
        lbs.push(GatewayLb {
            arn: lb.arn.clone(),
            attachment_id: id_of(&[&lb.arn]),
            endpoints,
            all: FlowPool::new(all),
            zones,
            cross_zone: lb.attributes.get_bool("load_balancing.cross_zone.enabled"),
            mode,
            rebalance_unhealthy: a.get("target_failover.on_unhealthy") == Some("rebalance"),
            rebalance_deregistered: a.get("target_failover.on_deregistration") == Some("rebalance"),
            stats: stats.entry(lb.arn.clone()).or_default().clone(),
        });
    }
    stats.retain(|arn, _| lbs.iter().any(|l| &l.arn == arn));
    GatewaySnapshot { lbs }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_tags_name_devices_and_zones() {
        let e = endpoints("arn:a", "gwe0, gwe1:us-east-1b,,", Some("us-east-1a"));
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].device.as_str(), e[0].zone.as_deref()), ("gwe0", Some("us-east-1a")));
        assert_eq!((e[1].device.as_str(), e[1].zone.as_deref()), ("gwe1", Some("us-east-1b")));
        assert_ne!(e[0].id, e[1].id);
        assert_ne!(e[0].id, endpoints("arn:b", "gwe0", None)[0].id, "ids are per load balancer");
    }
}
