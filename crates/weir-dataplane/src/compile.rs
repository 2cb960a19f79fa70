//! Compiles model resources into the immutable snapshots the L7 data plane serves from.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use weir_balance::{Algorithm, HealthState, Selector, TargetCell, TargetKey};
use weir_l7::rules::CompiledRules;
use weir_l7::{
    CompiledAction, ForwardGroup, LbSettings, ListenerSnapshot, TargetGroupRuntime, XffMode,
};
use weir_model::{Action, ActionKind, Listener, LoadBalancer, RulePriority, State};

use crate::CellKey;

/// One runtime per target group, shared by every listener of this apply.
pub(crate) fn target_groups(
    state: &State,
    cells: &HashMap<CellKey, Arc<TargetCell>>,
) -> HashMap<String, Arc<TargetGroupRuntime>> {
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
            let rt = TargetGroupRuntime {
                arn: tg.arn.clone(),
                name: tg.name.clone(),
                selector: Selector::new(Algorithm::parse(tg.algorithm()), targets),
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
    }
}

fn action(
    actions: &[Action],
    groups: &HashMap<String, Arc<TargetGroupRuntime>>,
) -> Arc<CompiledAction> {
    // The terminal action is the last one by order.
    let compiled = match actions.last().map(|a| &a.kind) {
        Some(ActionKind::Forward(f)) => CompiledAction::Forward(
            f.target_groups
                .iter()
                .filter_map(|w| {
                    groups
                        .get(&w.target_group_arn)
                        .map(|g| ForwardGroup { group: g.clone(), weight: w.weight })
                })
                .collect(),
        ),
        Some(ActionKind::Redirect(r)) => CompiledAction::Redirect(r.clone()),
        Some(ActionKind::FixedResponse(f)) => CompiledAction::Fixed(f.clone()),
        None => CompiledAction::Forward(Vec::new()),
    };
    Arc::new(compiled)
}

/// The snapshot of one listener.
pub(crate) fn listener(
    state: &State,
    l: &Listener,
    lb: &LoadBalancer,
    groups: &HashMap<String, Arc<TargetGroupRuntime>>,
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
    }
}
