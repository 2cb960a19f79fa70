//! Turns the data plane's live counters into CloudWatch metrics in a [`Registry`].
//!
//! [`Dataplane::collect_metrics`] is called once a minute (by the binary; tests call it
//! directly). Counters are monotonic in the data plane; each collection records the increase
//! since the previous one, so a metric's `Sum` over a period is the count in that period. Gauges
//! (healthy hosts, active connections and flows) are sampled. Names, dimensions and units are
//! CloudWatch's (`AWS/ApplicationELB`, `AWS/NetworkELB`, `AWS/GatewayELB`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use weir_balance::{HealthState, TargetCell, TargetKey};
use weir_model::{LoadBalancerType, State};
use weir_telemetry::{Kind, MetricId, Registry, Stat, ALB, GWLB, NLB};

use crate::{CellKey, Dataplane};

/// What collection needs to know of the configuration, captured at each apply.
#[derive(Debug, Default)]
pub(crate) struct Names {
    /// Listener ARN → (namespace, `LoadBalancer` dimension).
    listeners: HashMap<String, (&'static str, String)>,
    /// Target group ARN → (`TargetGroup` dimension, its load balancers' (namespace, dimension,
    /// zones), registered targets).
    groups: HashMap<String, GroupNames>,
    /// Gateway Load Balancer ARN → `LoadBalancer` dimension.
    gateways: HashMap<String, String>,
}

#[derive(Debug, Default)]
struct GroupNames {
    full_name: String,
    lbs: Vec<(&'static str, String, Vec<String>)>,
    targets: Vec<TargetKey>,
}

fn namespace(t: LoadBalancerType) -> &'static str {
    match t {
        LoadBalancerType::Network => NLB,
        LoadBalancerType::Gateway => GWLB,
        LoadBalancerType::Application => ALB,
    }
}

impl Names {
    pub(crate) fn of(state: &State) -> Self {
        let listeners = state
            .listeners
            .values()
            .filter_map(|l| {
                let lb = state.load_balancers.get(&l.load_balancer_arn)?;
                Some((l.arn.clone(), (namespace(lb.lb_type), lb.full_name())))
            })
            .collect();
        let groups = state
            .target_groups
            .values()
            .map(|tg| {
                let lbs = state
                    .load_balancers_of_target_group(&tg.arn)
                    .iter()
                    .filter_map(|a| state.load_balancers.get(a))
                    .map(|lb| {
                        let zones = lb.zones.iter().map(|z| z.zone_name.clone()).collect();
                        (namespace(lb.lb_type), lb.full_name(), zones)
                    })
                    .collect();
                let targets = tg
                    .targets
                    .iter()
                    .map(|t| TargetKey { id: t.id.clone(), port: t.port })
                    .collect();
                (tg.arn.clone(), GroupNames { full_name: tg.full_name(), lbs, targets })
            })
            .collect();
        let gateways = state
            .load_balancers
            .values()
            .filter(|lb| lb.lb_type == LoadBalancerType::Gateway)
            .map(|lb| (lb.arn.clone(), lb.full_name()))
            .collect();
        Self { listeners, groups, gateways }
    }
}

/// Names plus the counter values seen at the last collection.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub(crate) names: Names,
    last: HashMap<String, u64>,
}

/// The counter values of the previous collection (`before`) and of this one (`seen`), so that
/// counters of listeners and groups that are gone are forgotten.
struct Deltas<'a> {
    before: &'a HashMap<String, u64>,
    seen: HashMap<String, u64>,
}

/// The increase of the counter `key` since the previous collection.
fn delta(d: &mut Deltas<'_>, key: String, now: u64) -> u64 {
    let before = d.before.get(&key).copied().unwrap_or(0);
    d.seen.insert(key, now);
    now.saturating_sub(before)
}

struct Out<'a> {
    registry: &'a Registry,
    at: u64,
}

impl Out<'_> {
    fn count(&self, ns: &str, name: &str, dims: &[(&str, &str)], v: u64) {
        if v > 0 {
            self.registry.sample(
                MetricId::new(ns, name, dims),
                "Count",
                Kind::Counter,
                v as f64,
                self.at,
            );
        }
    }
    fn bytes(&self, ns: &str, name: &str, dims: &[(&str, &str)], v: u64) {
        if v > 0 {
            self.registry.sample(
                MetricId::new(ns, name, dims),
                "Bytes",
                Kind::Counter,
                v as f64,
                self.at,
            );
        }
    }
    fn gauge(&self, ns: &str, name: &str, dims: &[(&str, &str)], v: f64) {
        self.registry.sample(MetricId::new(ns, name, dims), "Count", Kind::Gauge, v, self.at);
    }
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl Dataplane {
    /// Records the metrics of the last interval into `registry` at `at` (seconds since the
    /// epoch).
    pub async fn collect_metrics(&self, registry: &Registry, at: u64) {
        let mut guard = self.inner.lock().await;
        let inner = &mut *guard;
        let out = Out { registry, at };
        let Collected { names, last } = &mut inner.metrics;
        let previous = std::mem::take(last);
        let last = &mut Deltas { before: &previous, seen: HashMap::new() };
        // ALB listeners.
        for (arn, l) in &inner.listeners {
            let Some((ns, lb)) = names.listeners.get(arn).cloned() else { continue };
            let s = &l.handle.stats;
            let dims = [("LoadBalancer", lb.as_str())];
            let mut c = |name: &str, v: &AtomicU64| {
                let d = delta(last, format!("{arn}|{name}"), get(v));
                out.count(ns, name, &dims, d);
            };
            c("RequestCount", &s.requests);
            c("HTTPCode_ELB_4XX_Count", &s.elb_4xx);
            c("HTTPCode_ELB_5XX_Count", &s.elb_5xx);
            c("HTTPCode_ELB_502_Count", &s.elb_502);
            c("HTTPCode_ELB_503_Count", &s.elb_503);
            c("HTTPCode_ELB_504_Count", &s.elb_504);
            for (i, n) in ["2XX", "3XX", "4XX", "5XX"].iter().enumerate() {
                c(&format!("HTTPCode_Target_{n}_Count"), &s.target_codes[i]);
            }
            c("TargetConnectionErrorCount", &s.target_connection_errors);
            c("NewConnectionCount", &s.new_connections);
            c("ClientTLSNegotiationErrorCount", &s.tls_negotiation_errors);
            c("RejectedConnectionCount", &s.rejected_connections);
            c("DesyncMitigationMode_NonCompliant_Request_Count", &s.desync_non_compliant);
            out.gauge(ns, "ActiveConnectionCount", &dims, get(&s.active_connections) as f64);
            let bytes = delta(last, format!("{arn}|ProcessedBytes"), get(&s.processed_bytes));
            out.bytes(ns, "ProcessedBytes", &dims, bytes);
        }
        // NLB listeners.
        for (arn, l) in &inner.l4 {
            let Some((ns, lb)) = names.listeners.get(arn).cloned() else { continue };
            let s = &l.handle.stats;
            let dims = [("LoadBalancer", lb.as_str())];
            let mut d = |name: &str, v: &AtomicU64| delta(last, format!("{arn}|{name}"), get(v));
            let new = [
                ("TCP", d("NewFlowCount_TCP", &s.new_flows_tcp)),
                ("TLS", d("NewFlowCount_TLS", &s.new_flows_tls)),
                ("UDP", d("NewFlowCount_UDP", &s.new_flows_udp)),
            ];
            let bytes = [
                ("TCP", d("ProcessedBytes_TCP", &s.processed_bytes_tcp)),
                ("TLS", d("ProcessedBytes_TLS", &s.processed_bytes_tls)),
                ("UDP", d("ProcessedBytes_UDP", &s.processed_bytes_udp)),
            ];
            for (p, v) in new {
                out.count(ns, &format!("NewFlowCount_{p}"), &dims, v);
            }
            out.count(ns, "NewFlowCount", &dims, new.iter().map(|x| x.1).sum());
            for (p, v) in bytes {
                out.bytes(ns, &format!("ProcessedBytes_{p}"), &dims, v);
            }
            out.bytes(ns, "ProcessedBytes", &dims, bytes.iter().map(|x| x.1).sum());
            let counts = [
                ("TCP_Client_Reset_Count", d("TCP_Client_Reset_Count", &s.tcp_client_resets)),
                ("TCP_Target_Reset_Count", d("TCP_Target_Reset_Count", &s.tcp_target_resets)),
                ("TCP_ELB_Reset_Count", d("TCP_ELB_Reset_Count", &s.tcp_elb_resets)),
                (
                    "ClientTLSNegotiationErrorCount",
                    d("ClientTLSNegotiationErrorCount", &s.client_tls_negotiation_errors),
                ),
                (
                    "TargetTLSNegotiationErrorCount",
                    d("TargetTLSNegotiationErrorCount", &s.target_tls_negotiation_errors),
                ),
                ("RejectedConnectionCount", d("RejectedConnectionCount", &s.rejected_connections)),
            ];
            for (name, v) in counts {
                out.count(ns, name, &dims, v);
            }
            let active = [
                ("TCP", get(&s.active_flows_tcp)),
                ("TLS", get(&s.active_flows_tls)),
                ("UDP", get(&s.active_flows_udp)),
            ];
            for (p, v) in active {
                out.gauge(ns, &format!("ActiveFlowCount_{p}"), &dims, v as f64);
            }
            out.gauge(ns, "ActiveFlowCount", &dims, active.iter().map(|x| x.1).sum::<u64>() as f64);
        }
        // Gateway Load Balancers.
        let active =
            inner.gateway.as_ref().map(|g| g.flows_per_load_balancer()).unwrap_or_default();
        for (arn, s) in &inner.gateway_stats {
            let Some(lb) = names.gateways.get(arn) else { continue };
            let dims = [("LoadBalancer", lb.as_str())];
            let new = delta(last, format!("{arn}|NewFlowCount"), get(&s.new_flows));
            out.count(GWLB, "NewFlowCount", &dims, new);
            let bytes = delta(last, format!("{arn}|ProcessedBytes"), get(&s.processed_bytes));
            out.bytes(GWLB, "ProcessedBytes", &dims, bytes);
            let flows = active.get(arn).copied().unwrap_or(0);
            out.gauge(GWLB, "ActiveFlowCount", &dims, flows as f64);
        }
        // Target groups: health per zone, and ALB request counters.
        for (tg_arn, g) in &names.groups {
            let cells: Vec<&Arc<TargetCell>> = g
                .targets
                .iter()
                .filter_map(|k| inner.cells.get(&(tg_arn.clone(), k.clone()) as &CellKey))
                .filter(|c| c.state() != HealthState::Unused)
                .collect();
            let healthy = |zone: Option<&str>| {
                cells
                    .iter()
                    .filter(|c| zone.is_none_or(|z| c.zone == z || c.zone == "all"))
                    .filter(|c| c.is_routable())
                    .count()
            };
            let unhealthy = |zone: Option<&str>| {
                cells
                    .iter()
                    .filter(|c| zone.is_none_or(|z| c.zone == z || c.zone == "all"))
                    .filter(|c| matches!(c.state(), HealthState::Unhealthy))
                    .count()
            };
            let stats = inner.group_stats.get(tg_arn);
            let requests = stats
                .map_or(0, |s| delta(last, format!("{tg_arn}|RequestCount"), get(&s.requests)));
            let codes: Vec<u64> = (0..4)
                .map(|i| {
                    stats.map_or(0, |s| {
                        delta(last, format!("{tg_arn}|code{i}"), get(&s.target_codes[i]))
                    })
                })
                .collect();
            let conn_errors = stats.map_or(0, |s| {
                delta(
                    last,
                    format!("{tg_arn}|TargetConnectionErrorCount"),
                    get(&s.target_connection_errors),
                )
            });
            let rt_sum = stats
                .map_or(0, |s| delta(last, format!("{tg_arn}|rt_sum"), get(&s.response_time_us)));
            let rt_n =
                stats.map_or(0, |s| delta(last, format!("{tg_arn}|rt_n"), get(&s.responses)));
            let rt_minmax = stats.and_then(|s| s.take_min_max());
            for (ns, lb, zones) in &g.lbs {
                let dims = [("TargetGroup", g.full_name.as_str()), ("LoadBalancer", lb.as_str())];
                out.gauge(ns, "HealthyHostCount", &dims, healthy(None) as f64);
                out.gauge(ns, "UnHealthyHostCount", &dims, unhealthy(None) as f64);
                for z in zones {
                    let zd = [
                        ("TargetGroup", g.full_name.as_str()),
                        ("LoadBalancer", lb.as_str()),
                        ("AvailabilityZone", z.as_str()),
                    ];
                    out.gauge(ns, "HealthyHostCount", &zd, healthy(Some(z)) as f64);
                    out.gauge(ns, "UnHealthyHostCount", &zd, unhealthy(Some(z)) as f64);
                }
                if *ns != ALB {
                    continue;
                }
                out.count(ns, "RequestCount", &dims, requests);
                for (i, n) in ["2XX", "3XX", "4XX", "5XX"].iter().enumerate() {
                    out.count(ns, &format!("HTTPCode_Target_{n}_Count"), &dims, codes[i]);
                }
                out.count(ns, "TargetConnectionErrorCount", &dims, conn_errors);
                if requests > 0 {
                    // Requests per healthy target (all registered ones when none is healthy).
                    let h = healthy(None);
                    let n = (if h > 0 { h } else { cells.len() }).max(1) as f64;
                    let per = requests as f64 / n;
                    for d in [&dims[..], &dims[..1]] {
                        out.registry.sample(
                            MetricId::new(ns, "RequestCountPerTarget", d),
                            "Count",
                            Kind::Counter,
                            per,
                            at,
                        );
                    }
                }
                if let (true, Some((min, max))) = (rt_n > 0, rt_minmax) {
                    let s = Stat {
                        sum: rt_sum as f64 / 1e6,
                        count: rt_n as f64,
                        min: min as f64 / 1e6,
                        max: max as f64 / 1e6,
                    };
                    for d in [&dims[..], &dims[1..]] {
                        out.registry.record(
                            MetricId::new(ns, "TargetResponseTime", d),
                            "Seconds",
                            Kind::Gauge,
                            s,
                            at,
                        );
                    }
                }
            }
        }
        inner.metrics.last = std::mem::take(&mut last.seen);
    }
}
