//! Compiles model resources into the immutable snapshots the L7 data plane serves from.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use weir_balance::{Algorithm, HealthState, Selector, TargetCell, TargetKey};
use weir_l7::rules::CompiledRules;
use weir_l7::tls::{CertificateStore, TlsError};
use weir_l7::{
    CompiledAction, ForwardAction, ForwardGroup, LbSettings, ListenerSnapshot, Stickiness,
    TargetGroupRuntime, TargetProtocol, TlsSnapshot, XffMode,
};
use weir_model::{
    tls_policies, Action, ActionKind, Listener, LoadBalancer, Protocol, ProtocolVersion,
    RulePriority, State,
};

use crate::CellKey;

/// One runtime per target group, shared by every listener of this apply.
pub(crate) fn target_groups(
    state: &State,
    cells: &HashMap<CellKey, Arc<TargetCell>>,
    stats: &mut HashMap<String, Arc<weir_l7::GroupStats>>,
) -> HashMap<String, Arc<TargetGroupRuntime>> {
    stats.retain(|arn, _| state.target_groups.contains_key(arn));
    state
        .target_groups
        .values()
        .map(|tg| {
            let targets: Vec<Arc<TargetCell>> = tg
                .targets
                .iter()
                .filter_map(|t| {
                    cells.get(&(tg.arn.clone(), TargetKey { id: t.id.clone(), port: t.port }))
                })
                .filter(|c| c.state() != HealthState::Unused)
                .cloned()
                .collect();
            let a = &tg.attributes;
            let secs = |k: &str| Duration::from_secs(a.get_i64(k).max(0) as u64);
            let slow_start = Some(secs("slow_start.duration_seconds")).filter(|d| !d.is_zero());
            let stickiness = match (a.get_bool("stickiness.enabled"), a.get("stickiness.type")) {
                (true, Some("lb_cookie")) => {
                    Stickiness::LbCookie(secs("stickiness.lb_cookie.duration_seconds"))
                }
                (true, Some("app_cookie")) => Stickiness::AppCookie {
                    name: a.get("stickiness.app_cookie.cookie_name").unwrap_or("").to_string(),
                    duration: secs("stickiness.app_cookie.duration_seconds"),
                },
                _ => Stickiness::None,
            };
            let protocol = match (tg.protocol, tg.protocol_version) {
                (Protocol::Https, ProtocolVersion::Http1) => TargetProtocol::Https1,
                (Protocol::Https, _) => TargetProtocol::Https2,
                (_, ProtocolVersion::Http1) => TargetProtocol::Http1,
                (_, _) => TargetProtocol::H2c,
            };
            let rt = TargetGroupRuntime {
                arn: tg.arn.clone(),
                name: tg.name.clone(),
                selector: Selector::new(Algorithm::parse(tg.algorithm()), targets)
                    .with_slow_start(slow_start),
                protocol,
                stickiness,
                stats: stats.entry(tg.arn.clone()).or_default().clone(),
            };
            (tg.arn.clone(), Arc::new(rt))
        })
        .collect()
}

fn lb_settings(lb: &LoadBalancer) -> LbSettings {
    let a = &lb.attributes;
    LbSettings {
        full_name: lb.full_name(),
        idle_timeout: Duration::from_secs(a.get_i64("idle_timeout.timeout_seconds").max(1) as u64),
        xff_mode: match a.get("routing.http.xff_header_processing.mode") {
            Some("preserve") => XffMode::Preserve,
            Some("remove") => XffMode::Remove,
            _ => XffMode::Append,
        },
        xff_client_port: a.get_bool("routing.http.xff_client_port.enabled"),
        drop_invalid_header_fields: a.get_bool("routing.http.drop_invalid_header_fields.enabled"),
        http2: a.get("routing.http2.enabled") != Some("false"),
        tls_headers: a.get_bool("routing.http.x_amzn_tls_version_and_cipher_suite.enabled"),
        preserve_host_header: a.get_bool("routing.http.preserve_host_header.enabled"),
        desync_mode: weir_l7::desync::DesyncMode::parse(
            a.get("routing.http.desync_mitigation_mode").unwrap_or("defensive"),
        ),
    }
}

fn action(
    actions: &[Action],
    groups: &HashMap<String, Arc<TargetGroupRuntime>>,
) -> Arc<CompiledAction> {
    // The terminal action is the last one by order.
    let compiled = match actions.last().map(|a| &a.kind) {
        Some(ActionKind::Forward(f)) => CompiledAction::Forward(ForwardAction {
            groups: f
                .target_groups
                .iter()
                .filter_map(|w| {
                    groups
                        .get(&w.target_group_arn)
                        .map(|g| ForwardGroup { group: g.clone(), weight: w.weight })
                })
                .collect(),
            group_stickiness: f
                .stickiness_enabled
                .then(|| Duration::from_secs(u64::from(f.stickiness_duration_seconds))),
        }),
        Some(ActionKind::Redirect(r)) => CompiledAction::Redirect(r.clone()),
        Some(ActionKind::FixedResponse(f)) => CompiledAction::Fixed(f.clone()),
        None => {
            CompiledAction::Forward(ForwardAction { groups: Vec::new(), group_stickiness: None })
        }
    };
    Arc::new(compiled)
}

/// The TLS side of an HTTPS listener: its certificates loaded from `store`, its policy.
pub(crate) fn tls(
    l: &Listener,
    lb: &LoadBalancer,
    store: &CertificateStore,
) -> Result<Option<TlsSnapshot>, TlsError> {
    if l.protocol != Protocol::Https {
        return Ok(None);
    }
    let certificates =
        l.certificates.iter().map(|arn| store.load(arn)).collect::<Result<Vec<_>, _>>()?;
    let name = l.ssl_policy.as_deref().unwrap_or(tls_policies::DEFAULT_POLICY);
    let policy = tls_policies::policy(name).ok_or_else(|| TlsError::Policy(name.into()))?;
    let http2 = lb.attributes.get("routing.http2.enabled") != Some("false");
    let config = weir_l7::tls::server_config(policy, certificates.clone(), http2)?;
    Ok(Some(TlsSnapshot { config, certificates }))
}

/// The snapshot of one listener.
pub(crate) fn listener(
    state: &State,
    l: &Listener,
    lb: &LoadBalancer,
    groups: &HashMap<String, Arc<TargetGroupRuntime>>,
    tls: Option<TlsSnapshot>,
    access_log: Option<Arc<weir_l7::access_log::AccessLog>>,
    limits: &Arc<weir_model::Limits>,
) -> ListenerSnapshot {
    let rules = state
        .rules_of(&l.arn)
        .into_iter()
        .filter_map(|r| match r.priority {
            RulePriority::Number(p) => Some((p, r.conditions.clone(), action(&r.actions, groups))),
            RulePriority::Default => None,
        })
        .collect();
    ListenerSnapshot {
        port: l.port,
        lb: lb_settings(lb),
        rules: CompiledRules::new(rules, action(&l.default_actions, groups)),
        server_header: l.attributes.get("routing.http.response.server.enabled") != Some("false"),
        tls,
        access_log,
        limits: limits.clone(),
    }
}
