//! The built-in DNS responder: answers a load balancer's DNS name
//! (`NAME-ID.elb.weir.internal`) with the addresses of its zone nodes that have healthy
//! targets, as Route 53 does for ELB (DNS failover). When no node has a healthy target, every
//! node is returned (fail-open). Zonal names (`us-east-1a.NAME-ID.elb.weir.internal`) always
//! answer with that zone's node.
//!
//! A node counts as healthy when a target it may send to is healthy: a target in its own zone,
//! or in any zone when cross-zone load balancing is on for the target's group. Health is read
//! live at query time; the table of names and nodes is rebuilt on every apply.
//!
//! [`answer`] is sans-I/O (bytes in, bytes out; fuzzed); [`serve`] is the UDP loop around it.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{rdata::A, RData, Record, RecordType};
use weir_balance::TargetCell;
use weir_model::State;

use crate::CellKey;

/// The domain every load balancer name lives under.
pub const DOMAIN: &str = "elb.weir.internal";
/// TTL of answers, as ELB's records (60 s).
pub const TTL: u32 = 60;

#[derive(Debug)]
struct Node {
    zone: String,
    addr: Ipv4Addr,
    /// Targets whose health keeps this node in the answer.
    cells: Vec<Arc<TargetCell>>,
}

/// Names and nodes of every load balancer.
#[derive(Debug, Default)]
pub struct DnsTable {
    names: HashMap<String, Vec<Node>>,
}

/// Where the current table lives.
pub(crate) type DnsTableCell = Arc<ArcSwap<DnsTable>>;

impl DnsTable {
    /// The table for `state`, with the live cells of its targets.
    pub(crate) fn build(state: &State, cells: &HashMap<CellKey, Arc<TargetCell>>) -> Self {
        let mut names = HashMap::new();
        for lb in state.load_balancers.values() {
            let groups: Vec<&weir_model::TargetGroup> = state
                .target_groups
                .values()
                .filter(|tg| state.load_balancers_of_target_group(&tg.arn).contains(&lb.arn))
                .collect();
            let nodes = lb
                .zones
                .iter()
                .filter_map(|z| {
                    let i = weir_model::zones::zone_index(&z.zone_name)?;
                    let cells = groups
                        .iter()
                        .flat_map(|tg| {
                            let cross = crate::compile_l4::cross_zone(lb, tg)
                                || lb.lb_type == weir_model::LoadBalancerType::Application;
                            crate::compile_l4::group_cells(tg, cells)
                                .into_iter()
                                .filter(move |c| cross || c.zone == z.zone_name || c.zone == "all")
                        })
                        .collect();
                    Some(Node {
                        zone: z.zone_name.clone(),
                        addr: weir_model::zones::node_address(i, lb.node_index),
                        cells,
                    })
                })
                .collect();
            names.insert(lb.dns_name().to_ascii_lowercase(), nodes);
        }
        Self { names }
    }

    /// The table for `state` before any target has live state (every node is answered).
    pub fn for_state(state: &State) -> Self {
        Self::build(state, &HashMap::new())
    }

    /// The addresses `name` resolves to now; `None` for names of no load balancer.
    pub fn resolve(&self, name: &str) -> Option<Vec<Ipv4Addr>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(nodes) = self.names.get(&name) {
            let healthy: Vec<Ipv4Addr> = nodes
                .iter()
                .filter(|n| n.cells.iter().any(|c| c.is_routable()))
                .map(|n| n.addr)
                .collect();
            return Some(if healthy.is_empty() {
                nodes.iter().map(|n| n.addr).collect()
            } else {
                healthy
            });
        }
        let (zone, rest) = name.split_once('.')?;
        let nodes = self.names.get(rest)?;
        nodes.iter().find(|n| n.zone == zone).map(|n| vec![n.addr])
    }
}

/// The response to the DNS message `query`; `None` when it is not a parseable query (dropped,
/// as servers do with garbage).
pub fn answer(table: &DnsTable, query: &[u8]) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    if q.message_type() != MessageType::Query {
        return None;
    }
    let mut r = Message::new();
    r.set_id(q.id())
        .set_message_type(MessageType::Response)
        .set_op_code(q.op_code())
        .set_recursion_desired(q.recursion_desired())
        .set_recursion_available(false);
    r.add_queries(q.queries().iter().cloned());
    let question = match (q.op_code(), q.queries()) {
        (OpCode::Query, [one]) => one,
        (OpCode::Query, _) => {
            r.set_response_code(ResponseCode::FormErr);
            return r.to_vec().ok();
        }
        _ => {
            r.set_response_code(ResponseCode::NotImp);
            return r.to_vec().ok();
        }
    };
    let name = question.name().to_ascii().to_ascii_lowercase();
    let bare = name.trim_end_matches('.');
    if bare != DOMAIN && !bare.ends_with(&format!(".{DOMAIN}")) {
        // Not ours, and this is not a recursive resolver.
        r.set_response_code(ResponseCode::Refused);
        return r.to_vec().ok();
    }
    r.set_authoritative(true);
    match table.resolve(bare) {
        None => {
            r.set_response_code(ResponseCode::NXDomain);
        }
        Some(addrs) => {
            if matches!(question.query_type(), RecordType::A | RecordType::ANY) {
                for a in addrs {
                    r.add_answer(Record::from_rdata(
                        question.name().clone(),
                        TTL,
                        RData::A(A::from(a)),
                    ));
                }
            }
        }
    }
    r.to_vec().ok()
}

/// Serves DNS over UDP on `addr` from the data plane's table until the task is aborted.
pub async fn serve(
    addr: SocketAddr,
    dp: Arc<crate::Dataplane>,
) -> io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let (sock, registration) = weir_sockets::udp_socket(addr)?;
    let local = sock.local_addr()?;
    let task = tokio::spawn(async move {
        let _registration = registration;
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                // Do not spin on an error that persists.
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                continue;
            };
            if let Some(resp) = answer(&dp.dns_table(), &buf[..n]) {
                let _ = sock.send_to(&resp, peer).await;
            }
        }
    });
    Ok((local, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(7).set_message_type(MessageType::Query).set_op_code(OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    fn table() -> DnsTable {
        let cell = |zone: &str, healthy: bool| {
            let c = Arc::new(TargetCell::new(
                weir_balance::TargetKey { id: "t".into(), port: 1 },
                "127.0.0.1:1".parse().unwrap(),
                zone.into(),
            ));
            let s = if healthy {
                weir_balance::HealthState::Healthy
            } else {
                weir_balance::HealthState::Unhealthy
            };
            c.set_health(s, weir_balance::Reason::None);
            c
        };
        let nodes = vec![
            Node {
                zone: "us-east-1a".into(),
                addr: Ipv4Addr::new(127, 0, 1, 1),
                cells: vec![cell("us-east-1a", true)],
            },
            Node {
                zone: "us-east-1b".into(),
                addr: Ipv4Addr::new(127, 0, 2, 1),
                cells: vec![cell("us-east-1b", false)],
            },
        ];
        DnsTable { names: HashMap::from([("web-1.elb.weir.internal".to_string(), nodes)]) }
    }

    fn answers(resp: &[u8]) -> (ResponseCode, Vec<Ipv4Addr>) {
        let m = Message::from_vec(resp).unwrap();
        let a = m
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        (m.response_code(), a)
    }

    #[test]
    fn healthy_nodes_only_then_fail_open() {
        let t = table();
        let r = answer(&t, &query("WEB-1.elb.weir.internal.", RecordType::A)).unwrap();
        assert_eq!(answers(&r), (ResponseCode::NoError, vec![Ipv4Addr::new(127, 0, 1, 1)]));
        for n in t.names.values() {
            for node in n {
                for c in &node.cells {
                    c.set_health(weir_balance::HealthState::Unhealthy, weir_balance::Reason::None);
                }
            }
        }
        let r = answer(&t, &query("web-1.elb.weir.internal.", RecordType::A)).unwrap();
        assert_eq!(answers(&r).1.len(), 2);
    }

    #[test]
    fn zonal_names_unknown_names_and_foreign_names() {
        let t = table();
        let r = answer(&t, &query("us-east-1b.web-1.elb.weir.internal.", RecordType::A)).unwrap();
        assert_eq!(answers(&r).1, vec![Ipv4Addr::new(127, 0, 2, 1)]);
        let r = answer(&t, &query("nope.elb.weir.internal.", RecordType::A)).unwrap();
        assert_eq!(answers(&r).0, ResponseCode::NXDomain);
        let r = answer(&t, &query("example.com.", RecordType::A)).unwrap();
        assert_eq!(answers(&r).0, ResponseCode::Refused);
        let r = answer(&t, &query("web-1.elb.weir.internal.", RecordType::AAAA)).unwrap();
        assert_eq!(answers(&r), (ResponseCode::NoError, vec![]));
        assert!(answer(&t, b"\\x00garbage").is_none());
    }
}
