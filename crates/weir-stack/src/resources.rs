//! The resource types a stack can hold: how each is created, updated in place, replaced and
//! deleted through the validated operations of [`State`], and what `Ref` and `Fn::GetAtt`
//! return for it (AWS's return values).
//!
//! Which property changes need a replacement follows AWS's "Update requires" column of each
//! resource type's reference page; everything else is updated in place, keeping the physical id
//! (and so the live state behind it: registered targets, running instances, open connections).

use std::collections::BTreeMap;

use serde_json::{json, Value};
use weir_model::shape::{self as convert, get_str, get_strs, get_u32};
use weir_model::{ErrorCode, LoadBalancerType, ModelError, Protocol, Scheme, State};

/// `Fn::GetAtt` values of one resource.
pub type Attrs = BTreeMap<String, Value>;

/// The resource types Weir implements.
pub const SUPPORTED: &[&str] = &[
    "AWS::ElasticLoadBalancingV2::LoadBalancer",
    "AWS::ElasticLoadBalancingV2::TargetGroup",
    "AWS::ElasticLoadBalancingV2::Listener",
    "AWS::ElasticLoadBalancingV2::ListenerRule",
    "AWS::ElasticLoadBalancingV2::ListenerCertificate",
    "AWS::EC2::LaunchTemplate",
    "AWS::AutoScaling::LaunchConfiguration",
    "AWS::AutoScaling::AutoScalingGroup",
    "AWS::AutoScaling::ScalingPolicy",
    "AWS::AutoScaling::ScheduledAction",
    "AWS::CloudWatch::Alarm",
    "AWS::EC2::VPC",
    "AWS::EC2::Subnet",
    "AWS::EC2::SecurityGroup",
    "AWS::EC2::SecurityGroupIngress",
    "AWS::EC2::SecurityGroupEgress",
    "AWS::EC2::InternetGateway",
    "AWS::EC2::VPCGatewayAttachment",
    "AWS::EC2::RouteTable",
    "AWS::EC2::Route",
    "AWS::EC2::SubnetRouteTableAssociation",
];

/// Network plumbing that Weir records (an id, nothing else): it has no effect on loopback.
const RECORDED_ONLY: &[(&str, &str)] = &[
    ("AWS::EC2::SecurityGroupIngress", "sgr"),
    ("AWS::EC2::SecurityGroupEgress", "sgr"),
    ("AWS::EC2::InternetGateway", "igw"),
    ("AWS::EC2::VPCGatewayAttachment", "attach"),
    ("AWS::EC2::RouteTable", "rtb"),
    ("AWS::EC2::Route", "rtbroute"),
    ("AWS::EC2::SubnetRouteTableAssociation", "rtbassoc"),
];

/// Properties whose change replaces the resource, per type (AWS's "Update requires:
/// Replacement"). Types not listed update everything in place.
fn replacing_properties(ty: &str) -> &'static [&'static str] {
    match ty {
        "AWS::ElasticLoadBalancingV2::LoadBalancer" => &["Name", "Scheme", "Type"],
        "AWS::ElasticLoadBalancingV2::TargetGroup" => {
            &["Name", "Port", "Protocol", "ProtocolVersion", "TargetType", "VpcId", "IpAddressType"]
        }
        "AWS::ElasticLoadBalancingV2::Listener" => &["LoadBalancerArn"],
        "AWS::ElasticLoadBalancingV2::ListenerRule" => &["ListenerArn"],
        "AWS::ElasticLoadBalancingV2::ListenerCertificate" => &["ListenerArn", "Certificates"],
        "AWS::EC2::LaunchTemplate" => &["LaunchTemplateName"],
        "AWS::AutoScaling::AutoScalingGroup" => &["AutoScalingGroupName"],
        "AWS::AutoScaling::ScalingPolicy" => &["AutoScalingGroupName", "PolicyName"],
        "AWS::AutoScaling::ScheduledAction" => &["AutoScalingGroupName", "ScheduledActionName"],
        "AWS::CloudWatch::Alarm" => &["AlarmName"],
        "AWS::EC2::VPC" => &["CidrBlock"],
        "AWS::EC2::Subnet" => &["VpcId", "CidrBlock", "AvailabilityZone"],
        "AWS::EC2::SecurityGroup" => &["GroupName", "GroupDescription", "VpcId"],
        _ => &[],
    }
}

/// The property that names a resource, when the template may set it.
pub fn name_property(ty: &str) -> Option<&'static str> {
    Some(match ty {
        "AWS::ElasticLoadBalancingV2::LoadBalancer"
        | "AWS::ElasticLoadBalancingV2::TargetGroup" => "Name",
        "AWS::EC2::LaunchTemplate" => "LaunchTemplateName",
        "AWS::AutoScaling::LaunchConfiguration" => "LaunchConfigurationName",
        "AWS::AutoScaling::AutoScalingGroup" => "AutoScalingGroupName",
        "AWS::AutoScaling::ScalingPolicy" => "PolicyName",
        "AWS::AutoScaling::ScheduledAction" => "ScheduledActionName",
        "AWS::CloudWatch::Alarm" => "AlarmName",
        "AWS::EC2::SecurityGroup" => "GroupName",
        _ => return None,
    })
}

/// Top-level properties that differ between `old` and `new`.
pub fn changed_properties(old: &Value, new: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let o = old.as_object().unwrap_or(&empty);
    let n = new.as_object().unwrap_or(&empty);
    let mut keys: Vec<String> = o.keys().chain(n.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.retain(|k| o.get(k) != n.get(k));
    keys
}

/// Whether changing `old` to `new` replaces a resource of type `ty`.
pub fn needs_replacement(ty: &str, old: &Value, new: &Value) -> bool {
    if ty == "AWS::AutoScaling::LaunchConfiguration" {
        // Launch configurations are immutable: any change is a new one.
        return true;
    }
    let replacing = replacing_properties(ty);
    changed_properties(old, new).iter().any(|k| replacing.contains(&k.as_str()))
}

/// CloudFormation's generated physical name: `STACK-LOGICAL-RANDOM`, at most 32 characters.
pub fn generated_name(stack: &str, logical: &str) -> String {
    let clean = |s: &str, n: usize| {
        s.chars().filter(|c| c.is_ascii_alphanumeric()).take(n).collect::<String>()
    };
    let suffix = format!("{:X}", weir_model::ids::random_u64() & 0xFFFF_FFFF_FFFF);
    format!("{}-{}-{}", clean(stack, 8), clean(logical, 8), &suffix[..suffix.len().min(12)])
}

/// Who is creating a resource: for names and the `aws:cloudformation:*` tags.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// Stack name.
    pub stack: &'a str,
    /// Stack id.
    pub stack_id: &'a str,
    /// Logical id.
    pub logical_id: &'a str,
    /// Now, ms since the epoch.
    pub now_ms: u64,
}

impl Owner<'_> {
    fn name(&self, p: &Value, key: &str) -> String {
        get_str(p, key).unwrap_or_else(|| generated_name(self.stack, self.logical_id))
    }

    /// Tags ELBv2 resources the way CloudFormation does, plus the template's `Tags`.
    fn tag(&self, state: &mut State, arn: &str, p: &Value) {
        let mut tags: BTreeMap<String, String> = convert::key_values(p.get("Tags"))
            .into_iter()
            .filter(|(k, _)| !k.starts_with("aws:"))
            .collect();
        tags.insert("aws:cloudformation:stack-name".into(), self.stack.into());
        tags.insert("aws:cloudformation:stack-id".into(), self.stack_id.into());
        tags.insert("aws:cloudformation:logical-id".into(), self.logical_id.into());
        state.tags.insert(arn.to_string(), tags);
    }
}

/// Creates a resource; returns its physical id and attributes.
pub fn create(
    state: &mut State,
    ty: &str,
    o: Owner<'_>,
    p: &Value,
) -> Result<(String, Attrs), ModelError> {
    if let Some((_, prefix)) = RECORDED_ONLY.iter().find(|(t, _)| *t == ty) {
        let id = weir_model::ec2::new_id(prefix);
        return Ok((id.clone(), Attrs::from([("Id".into(), json!(id))])));
    }
    match ty {
        "AWS::ElasticLoadBalancingV2::LoadBalancer" => create_lb(state, o, p),
        "AWS::ElasticLoadBalancingV2::TargetGroup" => create_tg(state, o, p),
        "AWS::ElasticLoadBalancingV2::Listener" => {
            let lb = get_str(p, "LoadBalancerArn")
                .ok_or_else(|| ModelError::validation("Listener needs a LoadBalancerArn"))?;
            let (port, protocol) = listener_port_protocol(p)?;
            let (port, protocol) = state.listener_port_protocol(&lb, port, protocol)?;
            let actions = convert::actions(p.get("DefaultActions"))?;
            let tls = convert::listener_tls(p);
            let arn = state.create_listener(&lb, port, protocol, actions, tls)?;
            o.tag(state, &arn, p);
            Ok((arn.clone(), Attrs::from([("ListenerArn".into(), json!(arn))])))
        }
        "AWS::ElasticLoadBalancingV2::ListenerCertificate" => {
            let l = get_str(p, "ListenerArn")
                .ok_or_else(|| ModelError::validation("ListenerCertificate needs a ListenerArn"))?;
            let certs = convert::certificate_arns(p.get("Certificates"));
            state.add_listener_certificates(&l, &certs)?;
            Ok((format!("{l}|{}", certs.join(",")), Attrs::new()))
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
            o.tag(state, &arn, p);
            Ok((
                arn.clone(),
                Attrs::from([("RuleArn".into(), json!(arn)), ("IsDefault".into(), json!(false))]),
            ))
        }
        "AWS::EC2::LaunchTemplate" => {
            let name = o.name(p, "LaunchTemplateName");
            let data = p.get("LaunchTemplateData").cloned().unwrap_or_else(|| json!({}));
            let t = state.ec2.create_launch_template(&name, data, o.now_ms)?;
            Ok((t.id.clone(), launch_template_attrs(&t.id, 1)))
        }
        "AWS::AutoScaling::LaunchConfiguration" => {
            // Kept as a launch template of the same name, which the group launches from.
            let name = o.name(p, "LaunchConfigurationName");
            state.ec2.create_launch_template(&name, launch_configuration_data(p), o.now_ms)?;
            Ok((name, Attrs::new()))
        }
        "AWS::AutoScaling::AutoScalingGroup" => {
            let name = o.name(p, "AutoScalingGroupName");
            let spec = group_spec(p)?;
            state.create_auto_scaling_group(&name, &spec, o.now_ms)?;
            Ok((name, Attrs::new()))
        }
        "AWS::AutoScaling::ScalingPolicy" => {
            let (group, name) = (policy_group(p)?, o.name(p, "PolicyName"));
            let spec = weir_model::autoscaling::PolicySpec::from_shape(p)?;
            let arn = state.put_scaling_policy(&group, &name, spec)?;
            Ok((
                arn.clone(),
                Attrs::from([("Arn".into(), json!(arn)), ("PolicyName".into(), json!(name))]),
            ))
        }
        "AWS::AutoScaling::ScheduledAction" => {
            let name = o.name(p, "ScheduledActionName");
            put_scheduled_action(state, p, &name)?;
            Ok((name, Attrs::new()))
        }
        "AWS::CloudWatch::Alarm" => {
            let name = o.name(p, "AlarmName");
            let alarm = alarm(state, p, &name, o.now_ms)?;
            let arn = alarm.arn.clone();
            state.put_metric_alarm(alarm)?;
            Ok((name, Attrs::from([("Arn".into(), json!(arn))])))
        }
        "AWS::EC2::VPC" => {
            let cidr = get_str(p, "CidrBlock")
                .ok_or_else(|| ModelError::validation("VPC needs a CidrBlock"))?;
            let v = state.ec2.create_vpc(&cidr)?;
            Ok((
                v.id.clone(),
                Attrs::from([
                    ("VpcId".into(), json!(v.id)),
                    ("CidrBlock".into(), json!(v.cidr)),
                    ("CidrBlockAssociations".into(), json!([])),
                ]),
            ))
        }
        "AWS::EC2::Subnet" => {
            let vpc = get_str(p, "VpcId")
                .ok_or_else(|| ModelError::validation("Subnet needs a VpcId"))?;
            let cidr = get_str(p, "CidrBlock")
                .ok_or_else(|| ModelError::validation("Subnet needs a CidrBlock"))?;
            let region = state.region.clone();
            let zone = get_str(p, "AvailabilityZone");
            let s = state.ec2.create_subnet(&region, &vpc, &cidr, zone.as_deref())?;
            Ok((
                s.id.clone(),
                Attrs::from([
                    ("SubnetId".into(), json!(s.id)),
                    ("AvailabilityZone".into(), json!(s.availability_zone)),
                    ("VpcId".into(), json!(s.vpc_id)),
                    ("CidrBlock".into(), json!(s.cidr)),
                ]),
            ))
        }
        "AWS::EC2::SecurityGroup" => {
            let name = o.name(p, "GroupName");
            let desc = get_str(p, "GroupDescription")
                .ok_or_else(|| ModelError::validation("SecurityGroup needs a GroupDescription"))?;
            let vpc = get_str(p, "VpcId");
            let g = state.ec2.create_security_group(&name, &desc, vpc.as_deref())?;
            Ok((
                g.id.clone(),
                Attrs::from([("GroupId".into(), json!(g.id)), ("VpcId".into(), json!(g.vpc_id))]),
            ))
        }
        other => Err(ModelError::validation(format!("Unsupported resource type {other}"))),
    }
}

/// Updates a resource in place (its physical id stays); returns its new attributes.
pub fn update(
    state: &mut State,
    ty: &str,
    physical: &str,
    old: (&Value, &Attrs),
    p: &Value,
    now_ms: u64,
) -> Result<Attrs, ModelError> {
    let (old_props, old_attrs) = old;
    match ty {
        "AWS::ElasticLoadBalancingV2::LoadBalancer" => {
            let mut subnets = get_strs(p, "Subnets");
            if let Some(m) = p.get("SubnetMappings").and_then(Value::as_array) {
                subnets.extend(m.iter().filter_map(|x| get_str(x, "SubnetId")));
            }
            if !subnets.is_empty() {
                state.set_subnets(physical, &subnets)?;
            }
            let lb = state
                .load_balancers
                .get_mut(physical)
                .ok_or_else(|| not_there("LoadBalancer", physical))?;
            lb.ip_address_type = weir_model::IpAddressType::parse(
                &get_str(p, "IpAddressType").unwrap_or_else(|| "ipv4".into()),
            )?;
            lb.security_groups = get_strs(p, "SecurityGroups");
            let mut attributes = lb.attributes.defaults();
            let kv = convert::key_values(p.get("LoadBalancerAttributes"));
            attributes.set_all(kv.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
            lb.attributes = attributes;
            let attrs = lb_attrs(lb);
            retag(state, physical, p);
            Ok(attrs)
        }
        "AWS::ElasticLoadBalancingV2::TargetGroup" => {
            let current = state
                .target_groups
                .get(physical)
                .ok_or_else(|| not_there("TargetGroup", physical))?
                .clone();
            let mut tg = convert::target_group(state, p, &current.name)?;
            let kv = convert::key_values(p.get("TargetGroupAttributes"));
            tg.attributes.set_all(kv.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
            tg.arn = current.arn.clone();
            tg.targets = current.targets;
            state.target_groups.insert(tg.arn.clone(), tg);
            // Targets the template declares; others (Auto Scaling's) are left alone.
            let before = convert::targets(old_props.get("Targets"))?;
            let after = convert::targets(p.get("Targets"))?;
            let gone: Vec<_> = before.iter().filter(|t| !after.contains(t)).cloned().collect();
            let added: Vec<_> = after.iter().filter(|t| !before.contains(t)).cloned().collect();
            if !gone.is_empty() {
                state.deregister_targets(physical, &gone)?;
            }
            if !added.is_empty() {
                state.register_targets(physical, &added)?;
            }
            retag(state, physical, p);
            Ok(old_attrs.clone())
        }
        "AWS::ElasticLoadBalancingV2::Listener" => {
            let (port, protocol) = listener_port_protocol(p)?;
            let actions = convert::actions(p.get("DefaultActions"))?;
            let mut tls = convert::listener_tls(p);
            if tls.certificates.is_empty() {
                // Removing the certificate block keeps the listener's certificates, as AWS does.
                tls.certificates =
                    state.listener(physical)?.certificates.iter().take(1).cloned().collect();
            }
            state.modify_listener(physical, port, protocol, Some(actions), tls)?;
            retag(state, physical, p);
            Ok(old_attrs.clone())
        }
        "AWS::ElasticLoadBalancingV2::ListenerRule" => {
            let priority = get_u32(p, "Priority")?
                .ok_or_else(|| ModelError::validation("ListenerRule needs a Priority"))?;
            if get_u32(old_props, "Priority")? != Some(priority) {
                state.set_rule_priorities(&[(physical.to_string(), priority)])?;
            }
            state.modify_rule(
                physical,
                Some(convert::conditions(p.get("Conditions"))?),
                Some(convert::actions(p.get("Actions"))?),
            )?;
            retag(state, physical, p);
            Ok(old_attrs.clone())
        }
        "AWS::EC2::LaunchTemplate" => {
            let data = p.get("LaunchTemplateData").cloned().unwrap_or_else(|| json!({}));
            state.ec2.set_launch_template_data(physical, data)?;
            // A change of data is a new version, as in EC2.
            let version = old_attrs
                .get("LatestVersionNumber")
                .and_then(convert::str_of)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1);
            Ok(launch_template_attrs(physical, version + 1))
        }
        "AWS::AutoScaling::AutoScalingGroup" => {
            state.update_auto_scaling_group(physical, &group_spec(p)?)?;
            Ok(old_attrs.clone())
        }
        "AWS::AutoScaling::ScalingPolicy" => {
            let group = policy_group(p)?;
            let name = old_attrs
                .get("PolicyName")
                .and_then(convert::str_of)
                .ok_or_else(|| ModelError::validation("the policy's name is not recorded"))?;
            let spec = weir_model::autoscaling::PolicySpec::from_shape(p)?;
            state.put_scaling_policy(&group, &name, spec)?;
            Ok(old_attrs.clone())
        }
        "AWS::AutoScaling::ScheduledAction" => {
            put_scheduled_action(state, p, physical)?;
            Ok(old_attrs.clone())
        }
        "AWS::CloudWatch::Alarm" => {
            let a = alarm(state, p, physical, now_ms)?;
            state.put_metric_alarm(a)?;
            Ok(old_attrs.clone())
        }
        // Recorded-only types, and the EC2 resources whose other properties Weir does not model.
        _ => Ok(old_attrs.clone()),
    }
}

/// Deletes a resource. A resource that is already gone counts as deleted, as in CloudFormation.
pub fn delete(
    state: &mut State,
    ty: &str,
    physical: &str,
    props: &Value,
) -> Result<(), ModelError> {
    let r = match ty {
        "AWS::ElasticLoadBalancingV2::LoadBalancer" => state.delete_load_balancer(physical),
        "AWS::ElasticLoadBalancingV2::TargetGroup" => state.delete_target_group(physical),
        "AWS::ElasticLoadBalancingV2::Listener" => state.delete_listener(physical),
        "AWS::ElasticLoadBalancingV2::ListenerRule" => state.delete_rule(physical),
        "AWS::ElasticLoadBalancingV2::ListenerCertificate" => {
            let (l, certs) = physical.split_once('|').unwrap_or((physical, ""));
            let certs: Vec<String> =
                certs.split(',').filter(|c| !c.is_empty()).map(str::to_string).collect();
            state.remove_listener_certificates(l, &certs)
        }
        "AWS::EC2::LaunchTemplate" | "AWS::AutoScaling::LaunchConfiguration" => {
            state.ec2.delete_launch_template(physical).map(|_| ())
        }
        "AWS::AutoScaling::AutoScalingGroup" => state.delete_auto_scaling_group(physical, true),
        "AWS::AutoScaling::ScalingPolicy" => state.delete_scaling_policy(None, physical),
        "AWS::AutoScaling::ScheduledAction" => match get_str(props, "AutoScalingGroupName") {
            Some(g) => state.delete_scheduled_action(&g, physical),
            None => Ok(()),
        },
        "AWS::CloudWatch::Alarm" => state.delete_alarms(&[physical.to_string()]),
        "AWS::EC2::VPC" => state.ec2.delete_vpc(physical),
        "AWS::EC2::Subnet" => state.ec2.delete_subnet(physical),
        "AWS::EC2::SecurityGroup" => state.ec2.delete_security_group(physical),
        _ => Ok(()),
    };
    match r {
        Err(e) if is_not_found(&e) => Ok(()),
        other => other,
    }
}

fn is_not_found(e: &ModelError) -> bool {
    use ErrorCode::*;
    matches!(
        e.code,
        LoadBalancerNotFound
            | TargetGroupNotFound
            | ListenerNotFound
            | RuleNotFound
            | ResourceNotFound
            | InvalidLaunchTemplateIdNotFound
            | InvalidVpcIdNotFound
            | InvalidSubnetIdNotFound
            | InvalidGroupNotFound
    ) || (e.code == ErrorCode::ValidationError && e.message.contains("not found"))
}

fn not_there(what: &str, id: &str) -> ModelError {
    ModelError::validation(format!("{what} '{id}' not found"))
}

fn retag(state: &mut State, arn: &str, p: &Value) {
    let Some(existing) = state.tags.get(arn) else { return };
    let keep: BTreeMap<String, String> = existing
        .iter()
        .filter(|(k, _)| k.starts_with("aws:"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut tags = keep;
    tags.extend(
        convert::key_values(p.get("Tags")).into_iter().filter(|(k, _)| !k.starts_with("aws:")),
    );
    state.tags.insert(arn.to_string(), tags);
}

fn listener_port_protocol(p: &Value) -> Result<(Option<u16>, Option<Protocol>), ModelError> {
    let port = match get_u32(p, "Port")? {
        Some(port) => Some(
            u16::try_from(port)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| ModelError::validation("Port must be between 1 and 65535"))?,
        ),
        None => None,
    };
    let protocol = get_str(p, "Protocol").map(|s| Protocol::parse(&s)).transpose()?;
    Ok((port, protocol))
}

fn launch_template_attrs(id: &str, version: u64) -> Attrs {
    Attrs::from([
        ("LaunchTemplateId".into(), json!(id)),
        ("LatestVersionNumber".into(), json!(version.to_string())),
        ("DefaultVersionNumber".into(), json!(version.to_string())),
    ])
}

/// A launch configuration's properties as launch template data.
fn launch_configuration_data(p: &Value) -> Value {
    let mut data = serde_json::Map::new();
    for k in ["ImageId", "InstanceType", "UserData", "KeyName"] {
        if let Some(v) = p.get(k) {
            data.insert(k.into(), v.clone());
        }
    }
    if p.get("SecurityGroups").is_some() {
        data.insert("SecurityGroupIds".into(), json!(get_strs(p, "SecurityGroups")));
    }
    Value::Object(data)
}

/// A group's spec; `LaunchConfigurationName` names the launch template kept for it.
fn group_spec(p: &Value) -> Result<weir_model::autoscaling::GroupSpec, ModelError> {
    let mut spec = weir_model::autoscaling::GroupSpec::from_shape(p)?;
    if spec.launch_template.is_none() {
        if let Some(lc) = get_str(p, "LaunchConfigurationName") {
            spec.launch_template = Some((None, Some(lc), None));
        } else if let Some(t) =
            p.pointer("/MixedInstancesPolicy/LaunchTemplate/LaunchTemplateSpecification")
        {
            spec.launch_template = Some((
                get_str(t, "LaunchTemplateId"),
                get_str(t, "LaunchTemplateName"),
                get_str(t, "Version"),
            ));
        }
    }
    Ok(spec)
}

fn policy_group(p: &Value) -> Result<String, ModelError> {
    get_str(p, "AutoScalingGroupName")
        .ok_or_else(|| ModelError::validation("ScalingPolicy needs an AutoScalingGroupName"))
}

fn put_scheduled_action(state: &mut State, p: &Value, name: &str) -> Result<(), ModelError> {
    let group = get_str(p, "AutoScalingGroupName")
        .ok_or_else(|| ModelError::validation("ScheduledAction needs an AutoScalingGroupName"))?;
    let time = |k: &str| -> Result<Option<u64>, ModelError> {
        match get_str(p, k) {
            None => Ok(None),
            Some(t) => {
                weir_model::time::parse_iso8601(&t).map(|s| Some(s * 1000)).ok_or_else(|| {
                    ModelError::validation(format!("{k} '{t}' is not an ISO 8601 time"))
                })
            }
        }
    };
    state.put_scheduled_action(weir_model::autoscaling::ScheduledAction::from_shape(
        p,
        group,
        name.to_string(),
        time,
    )?)
}

fn alarm(
    state: &State,
    p: &Value,
    name: &str,
    now_ms: u64,
) -> Result<weir_model::alarm::MetricAlarm, ModelError> {
    let mut p = p.clone();
    if let Some(m) = p.as_object_mut() {
        m.insert("AlarmName".into(), json!(name));
    }
    convert::metric_alarm(state, &p, now_ms)
}

fn lb_attrs(lb: &weir_model::LoadBalancer) -> Attrs {
    Attrs::from([
        ("LoadBalancerArn".into(), json!(lb.arn)),
        ("DNSName".into(), json!(lb.dns_name())),
        ("LoadBalancerFullName".into(), json!(lb.full_name())),
        ("LoadBalancerName".into(), json!(lb.name)),
        ("CanonicalHostedZoneID".into(), json!("Z35SXDOTRQ7X7K")),
        ("SecurityGroups".into(), json!(lb.security_groups)),
    ])
}

fn create_lb(state: &mut State, o: Owner<'_>, p: &Value) -> Result<(String, Attrs), ModelError> {
    let name = o.name(p, "Name");
    let lb_type =
        LoadBalancerType::parse(&get_str(p, "Type").unwrap_or_else(|| "application".into()))?;
    let scheme = Scheme::parse(&get_str(p, "Scheme").unwrap_or_else(|| "internet-facing".into()))?;
    let mut subnets = get_strs(p, "Subnets");
    if let Some(m) = p.get("SubnetMappings").and_then(Value::as_array) {
        subnets.extend(m.iter().filter_map(|x| get_str(x, "SubnetId")));
    }
    let arn = state.create_load_balancer(&name, lb_type, scheme, &subnets, o.now_ms)?;
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
    let out = lb_attrs(lb);
    o.tag(state, &arn, p);
    Ok((arn, out))
}

fn create_tg(state: &mut State, o: Owner<'_>, p: &Value) -> Result<(String, Attrs), ModelError> {
    let name = o.name(p, "Name");
    let mut tg = convert::target_group(state, p, &name)?;
    let attrs = convert::key_values(p.get("TargetGroupAttributes"));
    tg.attributes.set_all(attrs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    let full_name = tg.full_name();
    let arn = state.add_target_group(tg)?;
    state.register_targets(&arn, &convert::targets(p.get("Targets"))?)?;
    o.tag(state, &arn, p);
    let out = Attrs::from([
        ("TargetGroupArn".into(), json!(arn)),
        ("TargetGroupFullName".into(), json!(full_name)),
        ("TargetGroupName".into(), json!(name)),
        ("LoadBalancerArns".into(), json!([])),
    ]);
    Ok((arn, out))
}
