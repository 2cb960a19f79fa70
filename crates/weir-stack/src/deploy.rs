//! Deploying a template into a [`State`]: parameters, conditions, dependency order, resource
//! creation through validated model operations, outputs. All or nothing: on any error the state
//! is left exactly as it was.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{json, Value};
use weir_model::{LoadBalancerType, ModelError, Protocol, Scheme, State};

use crate::intrinsics::{references, Context};
use crate::template::Template;
use weir_model::shape::{self as convert, get_str, get_strs, get_u32};

/// Why a deployment failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackError {
    /// The template or its parameters are malformed.
    Template(String),
    /// A resource type Weir does not implement.
    Unsupported {
        /// Logical id.
        logical_id: String,
        /// Type.
        resource_type: String,
    },
    /// Creating a resource failed validation.
    Resource {
        /// Logical id.
        logical_id: String,
        /// Type.
        resource_type: String,
        /// The model error.
        error: ModelError,
    },
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StackError::Template(m) => f.write_str(m),
            StackError::Unsupported { logical_id, resource_type } => write!(
                f,
                "Template format error: resource {logical_id} has type {resource_type}, which Weir does not support"
            ),
            StackError::Resource { logical_id, resource_type, error } => {
                write!(f, "Resource {logical_id} ({resource_type}) failed: {error}")
            }
        }
    }
}

impl std::error::Error for StackError {}

/// One created resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedResource {
    /// Logical id.
    pub logical_id: String,
    /// Resource type.
    pub resource_type: String,
    /// Physical id (the ARN for ELBv2 resources).
    pub physical_id: String,
}

/// The result of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Deployment {
    /// Resources in creation order.
    pub resources: Vec<DeployedResource>,
    /// Evaluated outputs.
    pub outputs: BTreeMap<String, String>,
}

const SUPPORTED: &[&str] = &[
    "AWS::ElasticLoadBalancingV2::LoadBalancer",
    "AWS::ElasticLoadBalancingV2::TargetGroup",
    "AWS::ElasticLoadBalancingV2::Listener",
    "AWS::ElasticLoadBalancingV2::ListenerRule",
    "AWS::ElasticLoadBalancingV2::ListenerCertificate",
    "AWS::EC2::LaunchTemplate",
    "AWS::AutoScaling::AutoScalingGroup",
    "AWS::AutoScaling::ScalingPolicy",
    "AWS::AutoScaling::ScheduledAction",
];

fn terr(m: impl Into<String>) -> StackError {
    StackError::Template(m.into())
}

/// Deploys `template` as stack `stack_name` into `state`.
pub fn deploy(
    template: &Template,
    stack_name: &str,
    params: &BTreeMap<String, String>,
    state: &mut State,
    now_ms: u64,
) -> Result<Deployment, StackError> {
    let mut ctx = Context {
        region: state.region.clone(),
        mappings: template.section("Mappings").clone(),
        ..Default::default()
    };
    ctx.refs.insert("AWS::Region".into(), json!(state.region));
    ctx.refs.insert("AWS::AccountId".into(), json!(state.account));
    ctx.refs.insert("AWS::StackName".into(), json!(stack_name));
    ctx.refs.insert("AWS::Partition".into(), json!("aws"));
    ctx.refs.insert("AWS::URLSuffix".into(), json!("amazonaws.com"));
    ctx.refs.insert(
        "AWS::StackId".into(),
        json!(format!(
            "arn:aws:cloudformation:{}:{}:stack/{stack_name}/weir",
            state.region, state.account
        )),
    );
    resolve_parameters(template, params, &mut ctx)?;
    resolve_conditions(template, &mut ctx)?;

    let resources = template.section("Resources");
    for (id, r) in resources {
        let ty = get_str(r, "Type")
            .ok_or_else(|| terr(format!("Template format error: resource {id} has no Type")))?;
        if !SUPPORTED.contains(&ty.as_str()) {
            return Err(StackError::Unsupported { logical_id: id.clone(), resource_type: ty });
        }
    }
    let order = creation_order(resources, &ctx)?;

    let mut next = state.clone();
    let mut out = Deployment::default();
    for id in order {
        let r = &resources[&id];
        if let Some(c) = get_str(r, "Condition") {
            if !ctx
                .conditions
                .get(&c)
                .copied()
                .ok_or_else(|| terr(format!("Template error: unknown condition {c}")))?
            {
                continue;
            }
        }
        let ty = get_str(r, "Type").unwrap_or_default();
        let props = ctx.eval(r.get("Properties").unwrap_or(&json!({})))?;
        let wrap = |error: ModelError| StackError::Resource {
            logical_id: id.clone(),
            resource_type: ty.clone(),
            error,
        };
        let (physical, attrs) =
            create(&mut next, &ty, &id, stack_name, &props, now_ms).map_err(wrap)?;
        ctx.refs.insert(id.clone(), json!(physical));
        ctx.attrs.insert(id.clone(), attrs);
        out.resources.push(DeployedResource {
            logical_id: id.clone(),
            resource_type: ty,
            physical_id: physical,
        });
    }
    for (name, o) in template.section("Outputs") {
        if let Some(c) = get_str(o, "Condition") {
            if !ctx.conditions.get(&c).copied().unwrap_or(false) {
                continue;
            }
        }
        let v =
            ctx.eval(o.get("Value").ok_or_else(|| {
                terr(format!("Template format error: output {name} has no Value"))
            })?)?;
        let text = match v {
            Value::Array(a) => a.iter().filter_map(convert::str_of).collect::<Vec<_>>().join(","),
            other => convert::str_of(&other).unwrap_or_else(|| other.to_string()),
        };
        out.outputs.insert(name.clone(), text);
    }
    *state = next;
    Ok(out)
}

fn resolve_parameters(
    t: &Template,
    given: &BTreeMap<String, String>,
    ctx: &mut Context,
) -> Result<(), StackError> {
    let declared = t.section("Parameters");
    let unknown: Vec<&String> = given.keys().filter(|k| !declared.contains_key(*k)).collect();
    if !unknown.is_empty() {
        return Err(terr(format!("Parameters: {unknown:?} do not exist in the template")));
    }
    let mut missing = Vec::new();
    for (name, p) in declared {
        let value = given.get(name).cloned().or_else(|| get_str(p, "Default"));
        let Some(value) = value else {
            missing.push(name.clone());
            continue;
        };
        let allowed = get_strs(p, "AllowedValues");
        if !allowed.is_empty() && !allowed.contains(&value) {
            return Err(terr(format!("Parameter '{name}' must be one of AllowedValues")));
        }
        let ty = get_str(p, "Type").unwrap_or_else(|| "String".into());
        let v = if ty == "Number" {
            value
                .parse::<f64>()
                .map_err(|_| terr(format!("Parameter '{name}' must be a number")))?;
            json!(value)
        } else if ty == "CommaDelimitedList" || ty.starts_with("List<") {
            Value::Array(value.split(',').map(|s| json!(s.trim())).collect())
        } else {
            json!(value)
        };
        ctx.refs.insert(name.clone(), v);
    }
    if !missing.is_empty() {
        return Err(terr(format!("Parameters: {missing:?} must have values")));
    }
    Ok(())
}

fn resolve_conditions(t: &Template, ctx: &mut Context) -> Result<(), StackError> {
    let conds = t.section("Conditions");
    // Conditions may refer to each other; resolve in passes until no progress.
    let mut pending: Vec<&String> = conds.keys().collect();
    while !pending.is_empty() {
        let before = pending.len();
        let mut still = Vec::new();
        for name in pending {
            match ctx.condition(&conds[name]) {
                Ok(b) => {
                    ctx.conditions.insert(name.clone(), b);
                }
                Err(_) => still.push(name),
            }
        }
        if still.len() == before {
            let name = still[0];
            return ctx.condition(&conds[name]).map(|_| ());
        }
        pending = still;
    }
    Ok(())
}

fn creation_order(
    resources: &serde_json::Map<String, Value>,
    ctx: &Context,
) -> Result<Vec<String>, StackError> {
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, r) in resources {
        let mut refs = BTreeSet::new();
        references(r.get("Properties").unwrap_or(&Value::Null), &mut refs);
        match r.get("DependsOn") {
            Some(Value::String(s)) => {
                refs.insert(s.clone());
            }
            Some(Value::Array(a)) => refs.extend(a.iter().filter_map(convert::str_of)),
            _ => {}
        }
        let mut d = BTreeSet::new();
        for name in refs {
            if resources.contains_key(&name) {
                d.insert(name);
            } else if !ctx.refs.contains_key(&name) && name != "AWS::NoValue" {
                return Err(terr(format!("Template format error: Unresolved resource dependencies [{name}] in the Resources block of the template")));
            }
        }
        deps.insert(id.clone(), d);
    }
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    while order.len() < deps.len() {
        let ready: Vec<String> = deps
            .iter()
            .filter(|(id, d)| !done.contains(*id) && d.iter().all(|x| done.contains(x)))
            .map(|(id, _)| id.clone())
            .collect();
        if ready.is_empty() {
            let cyc: Vec<&String> = deps.keys().filter(|id| !done.contains(*id)).collect();
            return Err(terr(format!("Circular dependency between resources: {cyc:?}")));
        }
        for id in ready {
            done.insert(id.clone());
            order.push(id);
        }
    }
    Ok(order)
}

/// CloudFormation's generated physical name: `STACK-LOGICAL-RANDOM`, at most 32 characters.
fn generated_name(stack: &str, logical: &str) -> String {
    let clean = |s: &str, n: usize| {
        s.chars().filter(|c| c.is_ascii_alphanumeric()).take(n).collect::<String>()
    };
    let suffix = format!("{:X}", weir_model::ids::random_u64() & 0xFFFF_FFFF_FFFF);
    format!("{}-{}-{}", clean(stack, 8), clean(logical, 8), &suffix[..suffix.len().min(12)])
}

type Attrs = BTreeMap<String, Value>;

fn create(
    state: &mut State,
    ty: &str,
    id: &str,
    stack: &str,
    p: &Value,
    now_ms: u64,
) -> Result<(String, Attrs), ModelError> {
    match ty {
        "AWS::ElasticLoadBalancingV2::LoadBalancer" => create_lb(state, id, stack, p, now_ms),
        "AWS::ElasticLoadBalancingV2::TargetGroup" => create_tg(state, id, stack, p),
        "AWS::ElasticLoadBalancingV2::Listener" => {
            let lb = get_str(p, "LoadBalancerArn")
                .ok_or_else(|| ModelError::validation("Listener needs a LoadBalancerArn"))?;
            let port = get_u32(p, "Port")?
                .ok_or_else(|| ModelError::validation("Listener needs a Port"))?;
            let port = u16::try_from(port)
                .map_err(|_| ModelError::validation("Port must be between 1 and 65535"))?;
            let protocol =
                Protocol::parse(&get_str(p, "Protocol").unwrap_or_else(|| "HTTP".into()))?;
            let actions = convert::actions(p.get("DefaultActions"))?;
            let tls = weir_model::shape::listener_tls(p);
            let arn = state.create_listener(&lb, port, protocol, actions, tls)?;
            Ok((arn.clone(), BTreeMap::from([("ListenerArn".into(), json!(arn))])))
        }
        "AWS::ElasticLoadBalancingV2::ListenerCertificate" => {
            let l = get_str(p, "ListenerArn")
                .ok_or_else(|| ModelError::validation("ListenerCertificate needs a ListenerArn"))?;
            let certs = weir_model::shape::certificate_arns(p.get("Certificates"));
            state.add_listener_certificates(&l, &certs)?;
            Ok((format!("{l}|{}", certs.join(",")), BTreeMap::new()))
        }
        "AWS::ElasticLoadBalancingV2::ListenerRule" => {
            let l = get_str(p, "ListenerArn")
                .ok_or_else(|| ModelError::validation("ListenerRule needs a ListenerArn"))?;
            let priority = get_u32(p, "Priority")?
                .ok_or_else(|| ModelError::validation("ListenerRule needs a Priority"))?;
            let arn = state.create_rule(
                &l,
                priority,
                convert::conditions(p.get("Conditions"))?,
                convert::actions(p.get("Actions"))?,
            )?;
            Ok((
                arn.clone(),
                BTreeMap::from([
                    ("RuleArn".into(), json!(arn)),
                    ("IsDefault".into(), json!(false)),
                ]),
            ))
        }
        "AWS::EC2::LaunchTemplate" => {
            let name =
                get_str(p, "LaunchTemplateName").unwrap_or_else(|| generated_name(stack, id));
            let data = p.get("LaunchTemplateData").cloned().unwrap_or_else(|| json!({}));
            let t = state.ec2.create_launch_template(&name, data, now_ms)?;
            Ok((
                t.id.clone(),
                BTreeMap::from([
                    ("LaunchTemplateId".into(), json!(t.id)),
                    ("LatestVersionNumber".into(), json!("1")),
                    ("DefaultVersionNumber".into(), json!("1")),
                ]),
            ))
        }
        "AWS::AutoScaling::AutoScalingGroup" => {
            let name =
                get_str(p, "AutoScalingGroupName").unwrap_or_else(|| generated_name(stack, id));
            let spec = weir_model::autoscaling::GroupSpec::from_shape(p)?;
            state.create_auto_scaling_group(&name, &spec, now_ms)?;
            Ok((name, BTreeMap::new()))
        }
        "AWS::AutoScaling::ScalingPolicy" => {
            let group = get_str(p, "AutoScalingGroupName").ok_or_else(|| {
                ModelError::validation("ScalingPolicy needs an AutoScalingGroupName")
            })?;
            let name = get_str(p, "PolicyName").unwrap_or_else(|| generated_name(stack, id));
            let spec = weir_model::autoscaling::PolicySpec::from_shape(p)?;
            let arn = state.put_scaling_policy(&group, &name, spec)?;
            Ok((arn.clone(), BTreeMap::from([("Arn".into(), json!(arn))])))
        }
        "AWS::AutoScaling::ScheduledAction" => {
            let group = get_str(p, "AutoScalingGroupName").ok_or_else(|| {
                ModelError::validation("ScheduledAction needs an AutoScalingGroupName")
            })?;
            let name =
                get_str(p, "ScheduledActionName").unwrap_or_else(|| generated_name(stack, id));
            let time = |k: &str| -> Result<Option<u64>, ModelError> {
                match get_str(p, k) {
                    None => Ok(None),
                    Some(t) => {
                        weir_model::time::parse_iso8601(&t).map(|s| Some(s * 1000)).ok_or_else(
                            || ModelError::validation(format!("{k} '{t}' is not an ISO 8601 time")),
                        )
                    }
                }
            };
            state.put_scheduled_action(weir_model::autoscaling::ScheduledAction::from_shape(
                p,
                group,
                name.clone(),
                time,
            )?)?;
            Ok((name, BTreeMap::new()))
        }
        other => Err(ModelError::validation(format!("Unsupported resource type {other}"))),
    }
}

fn create_lb(
    state: &mut State,
    id: &str,
    stack: &str,
    p: &Value,
    now_ms: u64,
) -> Result<(String, Attrs), ModelError> {
    let name = get_str(p, "Name").unwrap_or_else(|| generated_name(stack, id));
    let lb_type =
        LoadBalancerType::parse(&get_str(p, "Type").unwrap_or_else(|| "application".into()))?;
    let scheme = Scheme::parse(&get_str(p, "Scheme").unwrap_or_else(|| "internet-facing".into()))?;
    let mut subnets = get_strs(p, "Subnets");
    if let Some(m) = p.get("SubnetMappings").and_then(Value::as_array) {
        subnets.extend(m.iter().filter_map(|x| get_str(x, "SubnetId")));
    }
    let arn = state.create_load_balancer(&name, lb_type, scheme, &subnets, now_ms)?;
    let lb = state
        .load_balancers
        .get_mut(&arn)
        .ok_or_else(|| ModelError::validation("load balancer vanished"))?;
    if let Some(t) = get_str(p, "IpAddressType") {
        lb.ip_address_type = weir_model::IpAddressType::parse(&t)?;
    }
    lb.security_groups = get_strs(p, "SecurityGroups");
    let attrs = convert::key_values(p.get("LoadBalancerAttributes"));
    lb.attributes.set_all(attrs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    let out = BTreeMap::from([
        ("LoadBalancerArn".into(), json!(arn)),
        ("DNSName".into(), json!(lb.dns_name())),
        ("LoadBalancerFullName".into(), json!(lb.full_name())),
        ("LoadBalancerName".into(), json!(lb.name)),
        ("CanonicalHostedZoneID".into(), json!("Z35SXDOTRQ7X7K")),
        ("SecurityGroups".into(), json!(lb.security_groups)),
    ]);
    Ok((arn, out))
}

fn create_tg(
    state: &mut State,
    id: &str,
    stack: &str,
    p: &Value,
) -> Result<(String, Attrs), ModelError> {
    let name = get_str(p, "Name").unwrap_or_else(|| generated_name(stack, id));
    let mut tg = convert::target_group(state, p, &name)?;
    let attrs = convert::key_values(p.get("TargetGroupAttributes"));
    tg.attributes.set_all(attrs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    let full_name = tg.full_name();
    let arn = state.add_target_group(tg)?;
    state.register_targets(&arn, &convert::targets(p.get("Targets"))?)?;
    let out = BTreeMap::from([
        ("TargetGroupArn".into(), json!(arn)),
        ("TargetGroupFullName".into(), json!(full_name)),
        ("TargetGroupName".into(), json!(name)),
        ("LoadBalancerArns".into(), json!([])),
    ]);
    Ok((arn, out))
}

#[cfg(test)]
mod tests;
