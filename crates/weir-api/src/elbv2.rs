//! ELBv2 (2015-12-01) operations.

use serde_json::Value;
use weir_model::shape::{self, get_str, get_strs, get_u32};
use weir_model::state::TargetSpec;
use weir_model::{Attributes, ErrorCode, LoadBalancerType, ModelError, Protocol, Scheme, State};

use crate::xml::{self, Xml};
use crate::{Api, ApiError};

type Result<T> = std::result::Result<T, ApiError>;

fn required(p: &Value, key: &str) -> Result<String> {
    get_str(p, key).ok_or_else(|| ApiError::missing(key))
}

/// `Marker`/`PageSize` pagination over already-filtered items.
fn page<T>(items: Vec<T>, p: &Value) -> Result<(Vec<T>, Option<String>)> {
    let size = get_u32(p, "PageSize")?.unwrap_or(400) as usize;
    if !(1..=400).contains(&size) {
        return Err(ApiError::validation("PageSize must be between 1 and 400"));
    }
    let start: usize = match get_str(p, "Marker") {
        Some(m) => m.parse().map_err(|_| ApiError::validation("The marker is not valid"))?,
        None => 0,
    };
    let total = items.len();
    let out: Vec<T> = items.into_iter().skip(start).take(size).collect();
    let next = (start + size < total).then(|| (start + size).to_string());
    Ok((out, next))
}

fn with_marker(x: &mut Xml, next: Option<String>) {
    x.opt("NextMarker", next);
}

fn attribute_pairs(p: &Value) -> Vec<(String, String)> {
    shape::key_values(p.get("Attributes"))
}

/// Dispatches one ELBv2 action; returns the inner XML of `<ActionResult>`.
pub(crate) async fn dispatch(api: &Api, action: &str, p: &Value) -> Result<String> {
    let mut x = Xml::default();
    match action {
        "CreateLoadBalancer" => {
            let name = required(p, "Name")?;
            let lb_type = LoadBalancerType::parse(
                &get_str(p, "Type").unwrap_or_else(|| "application".into()),
            )?;
            let scheme =
                Scheme::parse(&get_str(p, "Scheme").unwrap_or_else(|| "internet-facing".into()))?;
            let mut subnets = get_strs(p, "Subnets");
            if let Some(m) = p.get("SubnetMappings").and_then(Value::as_array) {
                subnets.extend(m.iter().filter_map(|s| get_str(s, "SubnetId")));
            }
            let groups = get_strs(p, "SecurityGroups");
            let ip_type = get_str(p, "IpAddressType");
            let arn = api
                .mutate(action, &name, |s| {
                    let arn =
                        s.create_load_balancer(&name, lb_type, scheme, &subnets, crate::now_ms())?;
                    create_tags(s, &arn, p)?;
                    if let Some(lb) = s.load_balancers.get_mut(&arn) {
                        lb.security_groups = groups;
                        if let Some(t) = &ip_type {
                            lb.ip_address_type = weir_model::IpAddressType::parse(t)?;
                        }
                    }
                    Ok(arn)
                })
                .await?;
            let store = api.store.lock().await;
            let lb = store.state().load_balancer(&arn)?;
            x.list("LoadBalancers", [lb], |x, lb| {
                xml::load_balancer(x, lb, "provisioning", &store.state().load_balancer_vpc(lb))
            });
        }
        "DescribeLoadBalancers" => {
            let store = api.store.lock().await;
            let st = store.state();
            let arns = get_strs(p, "LoadBalancerArns");
            let names = get_strs(p, "Names");
            let mut lbs: Vec<_> = st.load_balancers.values().collect();
            lbs.sort_by_key(|lb| (lb.created_ms, lb.name.clone()));
            if !arns.is_empty() {
                for a in &arns {
                    st.load_balancer(a)?;
                }
                lbs.retain(|lb| arns.contains(&lb.arn));
            }
            if !names.is_empty() {
                if let Some(missing) = names.iter().find(|n| !lbs.iter().any(|lb| &lb.name == *n)) {
                    return Err(ModelError::new(
                        ErrorCode::LoadBalancerNotFound,
                        format!("Load balancers '[{missing}]' not found"),
                    )
                    .into());
                }
                lbs.retain(|lb| names.contains(&lb.name));
            }
            let (items, next) = page(lbs, p)?;
            x.list("LoadBalancers", items, |x, lb| {
                xml::load_balancer(x, lb, "active", &st.load_balancer_vpc(lb))
            });
            with_marker(&mut x, next);
        }
        "DeleteLoadBalancer" => {
            let arn = required(p, "LoadBalancerArn")?;
            // Deleting a load balancer that does not exist succeeds, as in AWS.
            api.mutate(action, &arn, |s| {
                if s.load_balancers.contains_key(&arn) {
                    s.delete_load_balancer(&arn)
                } else {
                    Ok(())
                }
            })
            .await?;
        }
        "DescribeLoadBalancerAttributes" => {
            let arn = required(p, "LoadBalancerArn")?;
            let store = api.store.lock().await;
            xml::attributes(&mut x, &store.state().load_balancer(&arn)?.attributes);
        }
        "ModifyLoadBalancerAttributes" => {
            let arn = required(p, "LoadBalancerArn")?;
            xml::attributes(&mut x, &modify_attributes(api, action, &arn, p, lb_attributes).await?);
        }
        "SetSecurityGroups" => {
            let arn = required(p, "LoadBalancerArn")?;
            let groups = get_strs(p, "SecurityGroups");
            api.mutate(action, &arn, |s| {
                s.load_balancer(&arn)?;
                if let Some(lb) = s.load_balancers.get_mut(&arn) {
                    lb.security_groups = groups.clone();
                }
                Ok(())
            })
            .await?;
            x.strings("SecurityGroupIds", &groups);
        }
        "CreateTargetGroup" => {
            let name = required(p, "Name")?;
            let arn = api
                .mutate(action, &name, |s| {
                    let tg = shape::target_group(s, p, &name)?;
                    let arn = s.add_target_group(tg)?;
                    create_tags(s, &arn, p)?;
                    Ok(arn)
                })
                .await?;
            let store = api.store.lock().await;
            let st = store.state();
            x.list("TargetGroups", [st.target_group(&arn)?], |x, tg| xml::target_group(x, tg, st));
        }
        "DescribeTargetGroups" => {
            let store = api.store.lock().await;
            let st = store.state();
            let arns = get_strs(p, "TargetGroupArns");
            let names = get_strs(p, "Names");
            let mut tgs: Vec<_> = st.target_groups.values().collect();
            tgs.sort_by_key(|t| t.name.clone());
            if let Some(lb) = get_str(p, "LoadBalancerArn") {
                st.load_balancer(&lb)?;
                tgs.retain(|t| st.load_balancers_of_target_group(&t.arn).contains(&lb));
            }
            if !arns.is_empty() {
                for a in &arns {
                    st.target_group(a)?;
                }
                tgs.retain(|t| arns.contains(&t.arn));
            }
            if !names.is_empty() {
                if let Some(missing) = names.iter().find(|n| !tgs.iter().any(|t| &t.name == *n)) {
                    return Err(ModelError::new(
                        ErrorCode::TargetGroupNotFound,
                        format!("One or more target groups not found: '{missing}'"),
                    )
                    .into());
                }
                tgs.retain(|t| names.contains(&t.name));
            }
            let (items, next) = page(tgs, p)?;
            x.list("TargetGroups", items, |x, tg| xml::target_group(x, tg, st));
            with_marker(&mut x, next);
        }
        "ModifyTargetGroup" => {
            let arn = required(p, "TargetGroupArn")?;
            api.mutate(action, &arn, |s| {
                s.target_group(&arn)?;
                let tg = s.target_groups.get_mut(&arn).ok_or_else(|| {
                    ModelError::new(ErrorCode::TargetGroupNotFound, "Target group not found")
                })?;
                shape::modify_health_check(tg, p)
            })
            .await?;
            let store = api.store.lock().await;
            let st = store.state();
            x.list("TargetGroups", [st.target_group(&arn)?], |x, tg| xml::target_group(x, tg, st));
        }
        "DeleteTargetGroup" => {
            let arn = required(p, "TargetGroupArn")?;
            api.mutate(action, &arn, |s| s.delete_target_group(&arn)).await?;
        }
        "DescribeTargetGroupAttributes" => {
            let arn = required(p, "TargetGroupArn")?;
            let store = api.store.lock().await;
            xml::attributes(&mut x, &store.state().target_group(&arn)?.attributes);
        }
        "ModifyTargetGroupAttributes" => {
            let arn = required(p, "TargetGroupArn")?;
            xml::attributes(&mut x, &modify_attributes(api, action, &arn, p, tg_attributes).await?);
        }
        "RegisterTargets" | "DeregisterTargets" => {
            let arn = required(p, "TargetGroupArn")?;
            let targets: Vec<TargetSpec> = shape::targets(p.get("Targets"))?;
            if targets.is_empty() {
                return Err(ApiError::missing("Targets"));
            }
            let register = action == "RegisterTargets";
            api.mutate(action, &arn, |s| {
                if register {
                    s.register_targets(&arn, &targets)
                } else {
                    s.deregister_targets(&arn, &targets)
                }
            })
            .await?;
        }
        "DescribeTargetHealth" => {
            let arn = required(p, "TargetGroupArn")?;
            let store = api.store.lock().await;
            let st = store.state();
            let tg = st.target_group(&arn)?;
            let mut health = api.dataplane.describe_target_health(&arn, st).await;
            let wanted = shape::targets(p.get("Targets"))?;
            if !wanted.is_empty() {
                health.retain(|h| {
                    wanted.iter().any(|w| w.id == h.id && w.port.is_none_or(|port| port == h.port))
                });
            }
            x.list("TargetHealthDescriptions", &health, |x, h| xml::target_health(x, h, tg));
        }
        "CreateListener" => {
            let lb = required(p, "LoadBalancerArn")?;
            let port = get_u32(p, "Port")?
                .map(|port| {
                    u16::try_from(port)
                        .map_err(|_| ApiError::validation("Port must be between 1 and 65535"))
                })
                .transpose()?;
            let protocol = get_str(p, "Protocol").map(|s| Protocol::parse(&s)).transpose()?;
            let actions = shape::actions(p.get("DefaultActions"))?;
            let tls = shape::listener_tls(p);
            let new_certs = tls.certificates.clone();
            let arn = api
                .mutate(action, &lb, |s| {
                    let (port, protocol) = s.listener_port_protocol(&lb, port, protocol)?;
                    let arn = s.create_listener(&lb, port, protocol, actions, tls)?;
                    check_certificates(api, &new_certs)?;
                    create_tags(s, &arn, p)?;
                    Ok(arn)
                })
                .await?;
            let store = api.store.lock().await;
            x.list("Listeners", [store.state().listener(&arn)?], xml::listener);
        }
        "DescribeListeners" => {
            let store = api.store.lock().await;
            let st = store.state();
            let arns = get_strs(p, "ListenerArns");
            let mut ls: Vec<_> = match get_str(p, "LoadBalancerArn") {
                Some(lb) => {
                    st.load_balancer(&lb)?;
                    st.listeners_of(&lb)
                }
                None if !arns.is_empty() => {
                    arns.iter().map(|a| st.listener(a)).collect::<std::result::Result<_, _>>()?
                }
                None => {
                    return Err(ApiError::validation(
                        "You must specify either listener ARNs or a load balancer ARN",
                    ))
                }
            };
            if !arns.is_empty() {
                ls.retain(|l| arns.contains(&l.arn));
            }
            let (items, next) = page(ls, p)?;
            x.list("Listeners", items, xml::listener);
            with_marker(&mut x, next);
        }
        "ModifyListener" => {
            let arn = required(p, "ListenerArn")?;
            let port = get_u32(p, "Port")?
                .map(|v| {
                    u16::try_from(v)
                        .map_err(|_| ApiError::validation("Port must be between 1 and 65535"))
                })
                .transpose()?;
            let protocol = get_str(p, "Protocol").map(|v| Protocol::parse(&v)).transpose()?;
            let actions = p.get("DefaultActions").map(|a| shape::actions(Some(a))).transpose()?;
            let tls = shape::listener_tls(p);
            let new_certs = tls.certificates.clone();
            api.mutate(action, &arn, |s| {
                s.modify_listener(&arn, port, protocol, actions, tls)?;
                check_certificates(api, &new_certs)
            })
            .await?;
            let store = api.store.lock().await;
            x.list("Listeners", [store.state().listener(&arn)?], xml::listener);
        }
        "DeleteListener" => {
            let arn = required(p, "ListenerArn")?;
            api.mutate(action, &arn, |s| s.delete_listener(&arn)).await?;
        }
        "CreateRule" => {
            let l = required(p, "ListenerArn")?;
            let priority = get_u32(p, "Priority")?.ok_or_else(|| ApiError::missing("Priority"))?;
            let conditions = shape::conditions(p.get("Conditions"))?;
            let actions = shape::actions(p.get("Actions"))?;
            let arn = api
                .mutate(action, &l, |s| {
                    let arn = s.create_rule(&l, priority, conditions, actions)?;
                    create_tags(s, &arn, p)?;
                    Ok(arn)
                })
                .await?;
            let store = api.store.lock().await;
            x.list("Rules", [store.state().rule(&arn)?], xml::rule);
        }
        "DescribeRules" => {
            let store = api.store.lock().await;
            let st = store.state();
            let arns = get_strs(p, "RuleArns");
            let rules: Vec<weir_model::Rule> = match get_str(p, "ListenerArn") {
                Some(l) => {
                    let listener = st.listener(&l)?;
                    let mut v: Vec<_> = st.rules_of(&l).into_iter().cloned().collect();
                    v.push(default_rule(listener));
                    v
                }
                None if !arns.is_empty() => arns
                    .iter()
                    .map(|a| st.rule(a).cloned())
                    .collect::<std::result::Result<_, _>>()?,
                None => {
                    return Err(ApiError::validation(
                        "You must specify either listener or rule ARNs",
                    ))
                }
            };
            let (items, next) = page(rules, p)?;
            x.list("Rules", &items, xml::rule);
            with_marker(&mut x, next);
        }
        "ModifyRule" => {
            let arn = required(p, "RuleArn")?;
            let conditions = p.get("Conditions").map(|c| shape::conditions(Some(c))).transpose()?;
            let actions = p.get("Actions").map(|a| shape::actions(Some(a))).transpose()?;
            api.mutate(action, &arn, |s| s.modify_rule(&arn, conditions, actions)).await?;
            let store = api.store.lock().await;
            x.list("Rules", [store.state().rule(&arn)?], xml::rule);
        }
        "SetRulePriorities" => {
            let list = p
                .get("RulePriorities")
                .and_then(Value::as_array)
                .ok_or_else(|| ApiError::missing("RulePriorities"))?;
            let mut changes = Vec::new();
            for item in list {
                let arn = get_str(item, "RuleArn").ok_or_else(|| ApiError::missing("RuleArn"))?;
                let pr = get_u32(item, "Priority")?.ok_or_else(|| ApiError::missing("Priority"))?;
                changes.push((arn, pr));
            }
            api.mutate(action, "", |s| s.set_rule_priorities(&changes)).await?;
            let store = api.store.lock().await;
            let rules: Vec<_> =
                changes.iter().filter_map(|(a, _)| store.state().rules.get(a)).collect();
            x.list("Rules", rules, xml::rule);
        }
        "DeleteRule" => {
            let arn = required(p, "RuleArn")?;
            api.mutate(action, &arn, |s| s.delete_rule(&arn)).await?;
        }
        "AddTags" => {
            let arns = get_strs(p, "ResourceArns");
            let tags = shape::key_values(p.get("Tags"));
            if arns.is_empty() || tags.is_empty() {
                return Err(ApiError::missing(if arns.is_empty() {
                    "ResourceArns"
                } else {
                    "Tags"
                }));
            }
            check_duplicate_keys(&tags)?;
            api.mutate(action, "", |s| s.add_tags(&arns, &tags)).await?;
        }
        "RemoveTags" => {
            let arns = get_strs(p, "ResourceArns");
            let keys = get_strs(p, "TagKeys");
            if arns.is_empty() || keys.is_empty() {
                return Err(ApiError::missing(if arns.is_empty() {
                    "ResourceArns"
                } else {
                    "TagKeys"
                }));
            }
            api.mutate(action, "", |s| s.remove_tags(&arns, &keys)).await?;
        }
        "DescribeTags" => {
            let arns = get_strs(p, "ResourceArns");
            if arns.is_empty() || arns.len() > 20 {
                return Err(ApiError::validation(
                    "ResourceArns must name between 1 and 20 resources",
                ));
            }
            let store = api.store.lock().await;
            let st = store.state();
            for a in &arns {
                st.check_taggable(a)?;
            }
            x.list("TagDescriptions", &arns, |x, a| {
                x.leaf("ResourceArn", a);
                x.list("Tags", st.tags.get(a).into_iter().flatten(), |x, (k, v)| {
                    x.leaf("Key", k).leaf("Value", v);
                });
            });
        }
        "DescribeSSLPolicies" => {
            let names = get_strs(p, "Names");
            let mut list: Vec<_> = weir_model::tls_policies::POLICIES.iter().collect();
            if !names.is_empty() {
                if let Some(missing) =
                    names.iter().find(|n| weir_model::tls_policies::policy(n).is_none())
                {
                    return Err(ModelError::new(
                        ErrorCode::SSLPolicyNotFound,
                        format!("SSL policy '{missing}' not found"),
                    )
                    .into());
                }
                list.retain(|pol| names.iter().any(|n| n == pol.name));
            }
            x.list("SslPolicies", list, |x, pol| {
                x.strings("SslProtocols", pol.protocols);
                x.list(
                    "Ciphers",
                    weir_model::tls_policies::ciphers(pol).into_iter().enumerate(),
                    |x, (i, c)| {
                        x.leaf("Name", c).leaf("Priority", i + 1);
                    },
                );
                x.leaf("Name", pol.name);
                x.strings("SupportedLoadBalancerTypes", ["application", "network"]);
            });
        }
        "DescribeListenerAttributes" => {
            let arn = required(p, "ListenerArn")?;
            let store = api.store.lock().await;
            xml::attributes(&mut x, &store.state().listener(&arn)?.attributes);
        }
        "ModifyListenerAttributes" => {
            let arn = required(p, "ListenerArn")?;
            xml::attributes(
                &mut x,
                &modify_attributes(api, action, &arn, p, listener_attributes).await?,
            );
        }
        "DescribeListenerCertificates" => {
            let arn = required(p, "ListenerArn")?;
            let store = api.store.lock().await;
            let l = store.state().listener(&arn)?;
            let certs: Vec<(usize, &String)> = l.certificates.iter().enumerate().collect();
            let (items, next) = page(certs, p)?;
            x.list("Certificates", items, |x, (i, c)| {
                x.leaf("CertificateArn", c.as_str());
                x.leaf("IsDefault", if i == 0 { "true" } else { "false" });
            });
            with_marker(&mut x, next);
        }
        "AddListenerCertificates" | "RemoveListenerCertificates" => {
            let arn = required(p, "ListenerArn")?;
            let certs = shape::certificate_arns(p.get("Certificates"));
            if certs.is_empty() {
                return Err(ApiError::missing("Certificates"));
            }
            if action == "AddListenerCertificates" {
                api.mutate(action, &arn, |s| {
                    s.add_listener_certificates(&arn, &certs)?;
                    check_certificates(api, &certs)
                })
                .await?;
            } else {
                api.mutate(action, &arn, |s| s.remove_listener_certificates(&arn, &certs)).await?;
            }
            x.list("Certificates", &certs, |x, c| {
                x.leaf("CertificateArn", c.as_str());
                x.leaf("IsDefault", "false");
            });
        }
        "SetIpAddressType" => {
            let arn = required(p, "LoadBalancerArn")?;
            let t = weir_model::IpAddressType::parse(&required(p, "IpAddressType")?)?;
            api.mutate(action, &arn, |s| {
                s.load_balancer(&arn)?;
                if let Some(lb) = s.load_balancers.get_mut(&arn) {
                    lb.ip_address_type = t;
                }
                Ok(())
            })
            .await?;
            x.leaf("IpAddressType", t.as_str());
        }
        "SetSubnets" => {
            let arn = required(p, "LoadBalancerArn")?;
            let mut subnets = get_strs(p, "Subnets");
            if let Some(m) = p.get("SubnetMappings").and_then(Value::as_array) {
                subnets.extend(m.iter().filter_map(|s| get_str(s, "SubnetId")));
            }
            api.mutate(action, &arn, |s| s.set_subnets(&arn, &subnets)).await?;
            let store = api.store.lock().await;
            let lb = store.state().load_balancer(&arn)?;
            x.list("AvailabilityZones", &lb.zones, |x, z| {
                x.leaf("ZoneName", &z.zone_name)
                    .leaf("SubnetId", &z.subnet_id)
                    .open("LoadBalancerAddresses")
                    .close("LoadBalancerAddresses");
            });
            x.leaf("IpAddressType", lb.ip_address_type.as_str());
        }
        "DescribeAccountLimits" => {
            let limits = [
                ("application-load-balancers", 50),
                ("condition-values-per-alb-rule", 5),
                ("condition-wildcards-per-alb-rule", 5),
                ("listeners-per-application-load-balancer", 50),
                ("rules-per-application-load-balancer", 100),
                ("target-groups", 3000),
                ("target-groups-per-action-on-application-load-balancer", 5),
                ("targets-per-application-load-balancer", 1000),
                ("targets-per-target-group", 1000),
            ];
            x.list("Limits", limits, |x, (n, m)| {
                x.leaf("Name", n).leaf("Max", m);
            });
        }
        _ => {
            return Err(ApiError {
                status: 400,
                kind: "Sender",
                code: "InvalidAction".into(),
                message: format!("Could not find operation {action} for version 2015-12-01"),
            });
        }
    }
    Ok(x.0)
}

/// The attributes of the resource `arn`, for `Modify*Attributes`.
type AttributesOf =
    for<'s> fn(&'s mut State, &str) -> std::result::Result<&'s mut Attributes, ModelError>;

fn lb_attributes<'s>(
    s: &'s mut State,
    arn: &str,
) -> std::result::Result<&'s mut Attributes, ModelError> {
    s.load_balancer(arn)?;
    s.load_balancers
        .get_mut(arn)
        .map(|x| &mut x.attributes)
        .ok_or_else(|| ModelError::new(ErrorCode::LoadBalancerNotFound, "Load balancer not found"))
}

fn tg_attributes<'s>(
    s: &'s mut State,
    arn: &str,
) -> std::result::Result<&'s mut Attributes, ModelError> {
    s.target_group(arn)?;
    s.target_groups
        .get_mut(arn)
        .map(|x| &mut x.attributes)
        .ok_or_else(|| ModelError::new(ErrorCode::TargetGroupNotFound, "Target group not found"))
}

fn listener_attributes<'s>(
    s: &'s mut State,
    arn: &str,
) -> std::result::Result<&'s mut Attributes, ModelError> {
    s.listener(arn)?;
    s.listeners
        .get_mut(arn)
        .map(|x| &mut x.attributes)
        .ok_or_else(|| ModelError::new(ErrorCode::ListenerNotFound, "Listener not found"))
}

/// `Modify*Attributes`: sets every `Attributes.member.N` pair on the resource, all or nothing, in
/// one command, and returns all its attributes.
async fn modify_attributes(
    api: &Api,
    action: &str,
    arn: &str,
    p: &Value,
    of: AttributesOf,
) -> Result<Attributes> {
    let pairs = attribute_pairs(p);
    if pairs.is_empty() {
        return Err(ApiError::missing("Attributes"));
    }
    api.mutate(action, arn, |s| {
        let attrs = of(s, arn)?;
        attrs.set_all(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        Ok(attrs.clone())
    })
    .await
}

/// Every certificate ARN must name a readable certificate in the certificate directory. Called
/// inside a command after the model's own checks, so that their errors come first; failing
/// leaves the state untouched.
fn check_certificates(api: &Api, arns: &[String]) -> std::result::Result<(), ModelError> {
    for a in arns {
        api.dataplane
            .check_certificate(a)
            .map_err(|e| ModelError::new(ErrorCode::CertificateNotFound, e.to_string()))?;
    }
    Ok(())
}

fn check_duplicate_keys(tags: &[(String, String)]) -> Result<()> {
    for (i, (k, _)) in tags.iter().enumerate() {
        if tags[..i].iter().any(|(o, _)| o == k) {
            return Err(ModelError::new(
                ErrorCode::DuplicateTagKeys,
                format!("A tag key was specified more than once: '{k}'"),
            )
            .into());
        }
    }
    Ok(())
}

/// Applies the optional `Tags` of a create call to the new resource, in the same command.
fn create_tags(s: &mut State, arn: &str, p: &Value) -> std::result::Result<(), ModelError> {
    let tags = shape::key_values(p.get("Tags"));
    if tags.is_empty() {
        return Ok(());
    }
    s.add_tags(&[arn.to_string()], &tags)
}

fn default_rule(l: &weir_model::Listener) -> weir_model::Rule {
    weir_model::Rule {
        arn: l.arn.replacen(":listener/", ":listener-rule/", 1) + "/default",
        listener_arn: l.arn.clone(),
        priority: weir_model::RulePriority::Default,
        conditions: Vec::new(),
        actions: l.default_actions.clone(),
    }
}
