//! The EC2 (2016-11-15) calls tools make before ELB calls. EC2 speaks its own dialect of the
//! Query protocol: `Name.N` lists, lowercase elements, `<item>` sets, and errors as
//! `Response/Errors/Error`.

use serde_json::Value;
use weir_model::ec2::{LaunchTemplate, SecurityGroup, Subnet, Vpc};
use weir_model::shape::{get_str, get_strs};
use weir_model::{ErrorCode, ModelError, State};

use crate::xml::{iso8601, Xml};
use crate::{Api, ApiError};

type Result<T> = std::result::Result<T, ApiError>;

fn required(p: &Value, key: &str) -> Result<String> {
    get_str(p, key).ok_or_else(|| ApiError {
        status: 400,
        kind: "Sender",
        code: "MissingParameter".into(),
        message: format!("The request must contain the parameter {key}"),
    })
}

fn items<T>(
    x: &mut Xml,
    tag: &str,
    list: impl IntoIterator<Item = T>,
    mut f: impl FnMut(&mut Xml, T),
) {
    x.open(tag);
    for it in list {
        x.open("item");
        f(x, it);
        x.close("item");
    }
    x.close(tag);
}

/// `Filter.N.Name` / `Filter.N.Value.M` pairs; a resource matches when, for every filter, one of
/// its values for that name equals one of the filter's values.
fn filters(p: &Value) -> Vec<(String, Vec<String>)> {
    p.get("Filter")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter().filter_map(|f| Some((get_str(f, "Name")?, get_strs(f, "Value")))).collect()
        })
        .unwrap_or_default()
}

fn matches(
    fs: &[(String, Vec<String>)],
    known: &[&str],
    value: impl Fn(&str) -> Vec<String>,
) -> Result<bool> {
    for (name, wanted) in fs {
        if !known.contains(&name.as_str()) && !name.starts_with("tag:") {
            return Err(ApiError {
                status: 400,
                kind: "Sender",
                code: "InvalidParameterValue".into(),
                message: format!("The filter '{name}' is invalid"),
            });
        }
        let have = value(name);
        if !wanted.iter().any(|w| have.contains(w)) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn vpc_xml(x: &mut Xml, v: &Vpc, account: &str) {
    x.leaf("vpcId", &v.id)
        .leaf("state", "available")
        .leaf("cidrBlock", &v.cidr)
        .leaf("dhcpOptionsId", "dopt-default")
        .leaf("instanceTenancy", "default")
        .leaf("isDefault", v.is_default)
        .leaf("ownerId", account);
}

fn subnet_xml(x: &mut Xml, s: &Subnet, st: &State) {
    let zone_id = format!(
        "use1-az{}",
        weir_model::zones::zone_index(&s.availability_zone).map_or(1, |i| i + 1)
    );
    let size = weir_model::ec2::parse_ipv4_cidr(&s.cidr)
        .map_or(0, |(_, p)| (1u64 << (32 - u32::from(p))).saturating_sub(5));
    x.leaf("subnetId", &s.id)
        .leaf("subnetArn", format!("arn:aws:ec2:{}:{}:subnet/{}", st.region, st.account, s.id))
        .leaf("state", "available")
        .leaf("vpcId", &s.vpc_id)
        .leaf("cidrBlock", &s.cidr)
        .leaf("availableIpAddressCount", size)
        .leaf("availabilityZone", &s.availability_zone)
        .leaf("availabilityZoneId", zone_id)
        .leaf("defaultForAz", s.default_for_az)
        .leaf("mapPublicIpOnLaunch", s.default_for_az)
        .leaf("ownerId", &st.account);
}

fn group_xml(x: &mut Xml, g: &SecurityGroup, account: &str) {
    x.leaf("ownerId", account)
        .leaf("groupId", &g.id)
        .leaf("groupName", &g.name)
        .leaf("groupDescription", &g.description)
        .leaf("vpcId", &g.vpc_id);
    x.open("ipPermissions")
        .close("ipPermissions")
        .open("ipPermissionsEgress")
        .close("ipPermissionsEgress");
}

fn template_xml(x: &mut Xml, t: &LaunchTemplate, account: &str) {
    x.leaf("launchTemplateId", &t.id)
        .leaf("launchTemplateName", &t.name)
        .leaf("createTime", iso8601(t.created_ms))
        .leaf("createdBy", format!("arn:aws:iam::{account}:root"))
        .leaf("defaultVersionNumber", 1)
        .leaf("latestVersionNumber", 1);
}

/// Dispatches one EC2 action; returns the XML inside `<ActionResponse>` after `requestId`.
pub(crate) async fn dispatch(api: &Api, action: &str, p: &Value) -> Result<String> {
    let mut x = Xml::default();
    match action {
        "CreateVpc" => {
            let cidr = required(p, "CidrBlock")?;
            let (v, acct) = api
                .mutate(action, "", |s| Ok((s.ec2.create_vpc(&cidr)?, s.account.clone())))
                .await?;
            x.open("vpc");
            vpc_xml(&mut x, &v, &acct);
            x.close("vpc");
        }
        "DescribeVpcs" => {
            let store = api.store.lock().await;
            let st = store.state();
            let ids = get_strs(p, "VpcId");
            let fs = filters(p);
            let mut out = Vec::new();
            for v in st.ec2.all_vpcs() {
                let ok = matches(
                    &fs,
                    &["vpc-id", "cidr", "cidr-block", "is-default", "isDefault", "state"],
                    |n| match n {
                        "vpc-id" => vec![v.id.clone()],
                        "cidr" | "cidr-block" => vec![v.cidr.clone()],
                        "is-default" | "isDefault" => vec![v.is_default.to_string()],
                        "state" => vec!["available".into()],
                        _ => vec![],
                    },
                )?;
                if ok && (ids.is_empty() || ids.contains(&v.id)) {
                    out.push(v);
                }
            }
            if let Some(missing) = ids.iter().find(|i| {
                !out.iter().any(|v| &v.id == *i) && !st.ec2.all_vpcs().iter().any(|v| &v.id == *i)
            }) {
                return Err(ModelError::new(
                    ErrorCode::InvalidVpcIdNotFound,
                    format!("The vpc ID '{missing}' does not exist"),
                )
                .into());
            }
            items(&mut x, "vpcSet", &out, |x, v| vpc_xml(x, v, &st.account));
        }
        "DeleteVpc" => {
            let id = required(p, "VpcId")?;
            api.mutate(action, "", |s| s.ec2.delete_vpc(&id)).await?;
            x.leaf("return", true);
        }
        "CreateSubnet" => {
            let vpc = required(p, "VpcId")?;
            let cidr = required(p, "CidrBlock")?;
            let zone = get_str(p, "AvailabilityZone");
            let (sub, st) = api
                .mutate(action, "", |s| {
                    let region = s.region.clone();
                    let sub = s.ec2.create_subnet(&region, &vpc, &cidr, zone.as_deref())?;
                    Ok((sub, s.clone()))
                })
                .await?;
            x.open("subnet");
            subnet_xml(&mut x, &sub, &st);
            x.close("subnet");
        }
        "DescribeSubnets" => {
            let store = api.store.lock().await;
            let st = store.state();
            let ids = get_strs(p, "SubnetId");
            if let Some(missing) = ids.iter().find(|i| st.ec2.subnet(&st.region, i).is_none()) {
                return Err(ModelError::new(
                    ErrorCode::InvalidSubnetIdNotFound,
                    format!("The subnet ID '{missing}' does not exist"),
                )
                .into());
            }
            let fs = filters(p);
            let mut out = Vec::new();
            for s in st.ec2.all_subnets(&st.region) {
                let ok = matches(
                    &fs,
                    &[
                        "subnet-id",
                        "vpc-id",
                        "availability-zone",
                        "availabilityZone",
                        "default-for-az",
                        "defaultForAz",
                        "cidr-block",
                        "state",
                    ],
                    |n| match n {
                        "subnet-id" => vec![s.id.clone()],
                        "vpc-id" => vec![s.vpc_id.clone()],
                        "availability-zone" | "availabilityZone" => {
                            vec![s.availability_zone.clone()]
                        }
                        "default-for-az" | "defaultForAz" => vec![s.default_for_az.to_string()],
                        "cidr-block" => vec![s.cidr.clone()],
                        "state" => vec!["available".into()],
                        _ => vec![],
                    },
                )?;
                if ok && (ids.is_empty() || ids.contains(&s.id)) {
                    out.push(s);
                }
            }
            items(&mut x, "subnetSet", &out, |x, s| subnet_xml(x, s, st));
        }
        "DeleteSubnet" => {
            let id = required(p, "SubnetId")?;
            api.mutate(action, "", |s| {
                if s.load_balancers.values().any(|lb| lb.zones.iter().any(|z| z.subnet_id == id)) {
                    return Err(ModelError::new(
                        ErrorCode::DependencyViolation,
                        format!("The subnet '{id}' has dependencies and cannot be deleted."),
                    ));
                }
                s.ec2.delete_subnet(&id)
            })
            .await?;
            x.leaf("return", true);
        }
        "CreateSecurityGroup" => {
            let name = required(p, "GroupName")?;
            let desc = required(p, "GroupDescription")?;
            let vpc = get_str(p, "VpcId");
            let g = api
                .mutate(action, "", |s| s.ec2.create_security_group(&name, &desc, vpc.as_deref()))
                .await?;
            x.leaf("return", true).leaf("groupId", &g.id);
        }
        "DescribeSecurityGroups" => {
            let store = api.store.lock().await;
            let st = store.state();
            let ids = get_strs(p, "GroupId");
            let names = get_strs(p, "GroupName");
            if let Some(missing) = ids.iter().find(|i| !st.ec2.security_groups.contains_key(*i)) {
                return Err(ModelError::new(
                    ErrorCode::InvalidGroupNotFound,
                    format!("The security group '{missing}' does not exist"),
                )
                .into());
            }
            let fs = filters(p);
            let mut out = Vec::new();
            for g in st.ec2.security_groups.values() {
                let ok =
                    matches(
                        &fs,
                        &["group-id", "group-name", "vpc-id", "description"],
                        |n| match n {
                            "group-id" => vec![g.id.clone()],
                            "group-name" => vec![g.name.clone()],
                            "vpc-id" => vec![g.vpc_id.clone()],
                            "description" => vec![g.description.clone()],
                            _ => vec![],
                        },
                    )?;
                if ok
                    && (ids.is_empty() || ids.contains(&g.id))
                    && (names.is_empty() || names.contains(&g.name))
                {
                    out.push(g);
                }
            }
            items(&mut x, "securityGroupInfo", out, |x, g| group_xml(x, g, &st.account));
        }
        "DeleteSecurityGroup" => {
            let id = required(p, "GroupId")?;
            api.mutate(action, "", |s| s.ec2.delete_security_group(&id)).await?;
            x.leaf("return", true);
        }
        "CreateLaunchTemplate" => {
            let name = required(p, "LaunchTemplateName")?;
            let data =
                p.get("LaunchTemplateData").cloned().unwrap_or(Value::Object(Default::default()));
            let (t, acct) = api
                .mutate(action, "", |s| {
                    Ok((
                        s.ec2.create_launch_template(&name, data, crate::now_ms())?,
                        s.account.clone(),
                    ))
                })
                .await?;
            x.open("launchTemplate");
            template_xml(&mut x, &t, &acct);
            x.close("launchTemplate");
        }
        "DescribeLaunchTemplates" => {
            let store = api.store.lock().await;
            let st = store.state();
            let ids = get_strs(p, "LaunchTemplateId");
            let names = get_strs(p, "LaunchTemplateName");
            let out: Vec<_> = st
                .ec2
                .launch_templates
                .values()
                .filter(|t| {
                    (ids.is_empty() || ids.contains(&t.id))
                        && (names.is_empty() || names.contains(&t.name))
                })
                .collect();
            if (!ids.is_empty() || !names.is_empty()) && out.len() < ids.len() + names.len() {
                return Err(ModelError::new(
                    ErrorCode::InvalidLaunchTemplateIdNotFound,
                    "At least one of the launch templates specified in the request does not exist.",
                )
                .into());
            }
            items(&mut x, "launchTemplates", out, |x, t| template_xml(x, t, &st.account));
        }
        "DeleteLaunchTemplate" => {
            let key = get_str(p, "LaunchTemplateId")
                .or_else(|| get_str(p, "LaunchTemplateName"))
                .ok_or_else(|| ApiError::missing("LaunchTemplateId"))?;
            let (t, acct) = api
                .mutate(action, "", |s| {
                    Ok((s.ec2.delete_launch_template(&key)?, s.account.clone()))
                })
                .await?;
            x.open("launchTemplate");
            template_xml(&mut x, &t, &acct);
            x.close("launchTemplate");
        }
        "DescribeAvailabilityZones" => {
            let store = api.store.lock().await;
            let st = store.state();
            items(
                &mut x,
                "availabilityZoneInfo",
                0..weir_model::zones::ZONE_LETTERS.len(),
                |x, i| {
                    x.leaf("zoneName", weir_model::zones::zone_name(&st.region, i))
                        .leaf("zoneState", "available")
                        .leaf("regionName", &st.region)
                        .leaf("zoneId", format!("use1-az{}", i + 1))
                        .leaf("zoneType", "availability-zone");
                },
            );
        }
        _ => {
            return Err(ApiError {
                status: 400,
                kind: "Sender",
                code: "InvalidAction".into(),
                message: format!("The action {action} is not valid for this web service."),
            });
        }
    }
    Ok(x.0)
}
