//! The Auto Scaling Query API (2011-01-01) for groups — `CreateAutoScalingGroup`,
//! `DescribeAutoScalingGroups`, `UpdateAutoScalingGroup`, `DeleteAutoScalingGroup`,
//! `SetDesiredCapacity`, `DescribeAutoScalingInstances`, `TerminateInstanceInAutoScalingGroup`,
//! `DescribeScalingActivities`, `Attach/DetachLoadBalancerTargetGroups` — and [`Scaling`], the
//! loop that carries out `weir_scale::plan` with instances as local processes.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;
use weir_model::autoscaling::{Activity, AutoScalingGroup, GroupInstance, GroupSpec, Lifecycle};
use weir_model::shape::{get_bool, get_str, get_strs, get_u32};
use weir_model::state::TargetSpec;
use weir_model::target_group::TargetType;
use weir_model::State;
use weir_scale::local::{command_of, LocalProcesses};
use weir_scale::{Observed, Step};

use crate::xml::{iso8601, Xml};
use crate::{Api, ApiError};

/// The Auto Scaling XML namespace.
pub(crate) const NS: &str = "http://autoscaling.amazonaws.com/doc/2011-01-01/";

type Result<T> = std::result::Result<T, ApiError>;

fn group_name(p: &Value) -> Result<String> {
    get_str(p, "AutoScalingGroupName").ok_or_else(|| ApiError::missing("autoScalingGroupName"))
}

fn spec(p: &Value) -> Result<GroupSpec> {
    let lt = p.get("LaunchTemplate").map(|t| {
        (get_str(t, "LaunchTemplateId"), get_str(t, "LaunchTemplateName"), get_str(t, "Version"))
    });
    let list = |k: &str| p.get(k).map(|_| get_strs(p, k));
    Ok(GroupSpec {
        launch_template: lt,
        min_size: get_u32(p, "MinSize")?,
        max_size: get_u32(p, "MaxSize")?,
        desired_capacity: get_u32(p, "DesiredCapacity")?,
        default_cooldown: get_u32(p, "DefaultCooldown")?,
        health_check_type: get_str(p, "HealthCheckType"),
        health_check_grace_period: get_u32(p, "HealthCheckGracePeriod")?,
        vpc_zone_identifier: get_str(p, "VPCZoneIdentifier"),
        availability_zones: list("AvailabilityZones"),
        target_group_arns: list("TargetGroupARNs"),
        termination_policies: list("TerminationPolicies"),
    })
}

fn template_xml(x: &mut Xml, t: &weir_model::autoscaling::LaunchTemplateRef) {
    x.open("LaunchTemplate")
        .leaf("LaunchTemplateId", &t.id)
        .leaf("LaunchTemplateName", &t.name)
        .leaf("Version", &t.version)
        .close("LaunchTemplate");
}

fn health(i: &GroupInstance) -> &'static str {
    if i.healthy {
        "Healthy"
    } else {
        "Unhealthy"
    }
}

fn group_xml(x: &mut Xml, g: &AutoScalingGroup) {
    x.leaf("AutoScalingGroupName", &g.name).leaf("AutoScalingGroupARN", &g.arn);
    template_xml(x, &g.launch_template);
    x.leaf("MinSize", g.min_size)
        .leaf("MaxSize", g.max_size)
        .leaf("DesiredCapacity", g.desired_capacity)
        .leaf("DefaultCooldown", g.default_cooldown)
        .strings("AvailabilityZones", &g.availability_zones)
        .strings("LoadBalancerNames", Vec::<String>::new())
        .strings("TargetGroupARNs", &g.target_group_arns)
        .leaf("HealthCheckType", &g.health_check_type)
        .leaf("HealthCheckGracePeriod", g.health_check_grace_period)
        .list("Instances", g.instances.values(), |x, i| {
            x.leaf("InstanceId", &i.id)
                .leaf("InstanceType", "weir.process")
                .leaf("AvailabilityZone", &i.availability_zone)
                .leaf("LifecycleState", i.lifecycle.as_str())
                .leaf("HealthStatus", health(i));
            template_xml(x, &i.launch_template);
            x.leaf("ProtectedFromScaleIn", false);
        })
        .leaf("CreatedTime", iso8601(g.created_ms))
        .leaf("VPCZoneIdentifier", g.subnets.join(","))
        .strings("TerminationPolicies", &g.termination_policies)
        .leaf("NewInstancesProtectedFromScaleIn", false)
        .opt("Status", g.status.as_deref());
}

fn activity_xml(x: &mut Xml, a: &Activity) {
    x.leaf("ActivityId", &a.id)
        .leaf("AutoScalingGroupName", &a.group)
        .leaf("Description", &a.description)
        .leaf("Cause", &a.cause)
        .leaf("StartTime", iso8601(a.start_ms))
        .opt("EndTime", a.end_ms.map(iso8601))
        .leaf("StatusCode", &a.status_code)
        .opt("StatusMessage", a.status_message.as_deref())
        .leaf("Progress", if a.end_ms.is_some() { 100 } else { 50 });
}

/// Registers or deregisters an instance with target group `arn` (by id for `instance` groups,
/// by address for `ip` groups).
fn target_of(state: &State, arn: &str, i: &GroupInstance) -> Option<TargetSpec> {
    let tg = state.target_groups.get(arn)?;
    let id = match tg.target_type {
        TargetType::Ip => i.address.to_string(),
        _ => i.id.clone(),
    };
    Some(TargetSpec {
        id,
        port: Some(i.port),
        availability_zone: (tg.target_type == TargetType::Ip).then(|| i.availability_zone.clone()),
    })
}

fn deregister_everywhere(s: &mut State, arns: &[String], i: &GroupInstance) {
    for arn in arns {
        if let Some(t) = target_of(s, arn, i) {
            let _ = s.deregister_targets(arn, &[t]);
        }
    }
}

/// Dispatches one Auto Scaling action; returns the XML inside `<ActionResult>`.
pub(crate) async fn dispatch(api: &Api, action: &str, p: &Value) -> Result<String> {
    let mut x = Xml::default();
    let now = crate::now_ms();
    match action {
        "CreateAutoScalingGroup" => {
            let name = group_name(p)?;
            let spec = spec(p)?;
            api.mutate(action, &name, |s| {
                s.create_auto_scaling_group(&name, &spec, now).map(|_| ())
            })
            .await?;
        }
        "UpdateAutoScalingGroup" => {
            let name = group_name(p)?;
            let spec = spec(p)?;
            api.mutate(action, &name, |s| s.update_auto_scaling_group(&name, &spec)).await?;
        }
        "DeleteAutoScalingGroup" => {
            let name = group_name(p)?;
            let force = get_bool(p, "ForceDelete")?.unwrap_or(false);
            api.mutate(action, &name, |s| s.delete_auto_scaling_group(&name, force)).await?;
        }
        "SetDesiredCapacity" => {
            let name = group_name(p)?;
            let desired = get_u32(p, "DesiredCapacity")?
                .ok_or_else(|| ApiError::missing("desiredCapacity"))?;
            api.mutate(action, &name, |s| s.set_desired_capacity(&name, desired)).await?;
        }
        "DescribeAutoScalingGroups" => {
            let names = get_strs(p, "AutoScalingGroupNames");
            let store = api.store.lock().await;
            let groups: Vec<&AutoScalingGroup> = store
                .state()
                .auto_scaling
                .groups
                .values()
                .filter(|g| names.is_empty() || names.contains(&g.name))
                .collect();
            x.list("AutoScalingGroups", groups, group_xml);
        }
        "DescribeAutoScalingInstances" => {
            let ids = get_strs(p, "InstanceIds");
            let store = api.store.lock().await;
            let mut out = Vec::new();
            for g in store.state().auto_scaling.groups.values() {
                for i in g.instances.values() {
                    if ids.is_empty() || ids.contains(&i.id) {
                        out.push((g.name.clone(), i.clone()));
                    }
                }
            }
            x.list("AutoScalingInstances", out, |x, (g, i)| {
                x.leaf("InstanceId", &i.id)
                    .leaf("InstanceType", "weir.process")
                    .leaf("AutoScalingGroupName", g)
                    .leaf("AvailabilityZone", &i.availability_zone)
                    .leaf("LifecycleState", i.lifecycle.as_str())
                    .leaf("HealthStatus", health(&i).to_uppercase());
                template_xml(x, &i.launch_template);
                x.leaf("ProtectedFromScaleIn", false);
            });
        }
        "TerminateInstanceInAutoScalingGroup" => {
            let id = get_str(p, "InstanceId").ok_or_else(|| ApiError::missing("instanceId"))?;
            let decrement = get_bool(p, "ShouldDecrementDesiredCapacity")?
                .ok_or_else(|| ApiError::missing("shouldDecrementDesiredCapacity"))?;
            let activity = api
                .mutate(action, &id, |s| {
                    let group = s.terminate_group_instance(&id, decrement)?;
                    let cause = if decrement {
                        format!("an instance was taken out of service in response to a user request, shrinking the capacity to {}", s.auto_scaling_group(&group)?.desired_capacity)
                    } else {
                        "an instance was taken out of service in response to a user request."
                            .to_string()
                    };
                    let a = Activity {
                        id: weir_model::ids::uuid(),
                        group,
                        description: format!("Terminating EC2 instance: {id}"),
                        cause,
                        status_code: "InProgress".into(),
                        status_message: None,
                        start_ms: now,
                        end_ms: None,
                        instance_id: Some(id.clone()),
                    };
                    s.record_activity(a.clone());
                    Ok(a)
                })
                .await?;
            x.open("Activity");
            activity_xml(&mut x, &activity);
            x.close("Activity");
        }
        "DescribeScalingActivities" => {
            let name = get_str(p, "AutoScalingGroupName");
            let ids = get_strs(p, "ActivityIds");
            let max = get_u32(p, "MaxRecords")?.unwrap_or(100).clamp(1, 100) as usize;
            let store = api.store.lock().await;
            let out: Vec<&Activity> = store
                .state()
                .auto_scaling
                .activities
                .iter()
                .rev()
                .filter(|a| name.as_ref().is_none_or(|n| &a.group == n))
                .filter(|a| ids.is_empty() || ids.contains(&a.id))
                .take(max)
                .collect();
            x.list("Activities", out, activity_xml);
        }
        "AttachLoadBalancerTargetGroups" => {
            let name = group_name(p)?;
            let arns = get_strs(p, "TargetGroupARNs");
            api.mutate(action, &name, |s| s.attach_target_groups(&name, &arns)).await?;
        }
        "DetachLoadBalancerTargetGroups" => {
            let name = group_name(p)?;
            let arns = get_strs(p, "TargetGroupARNs");
            api.mutate(action, &name, |s| {
                let instances: Vec<GroupInstance> =
                    s.auto_scaling_group(&name)?.instances.values().cloned().collect();
                s.detach_target_groups(&name, &arns)?;
                for i in &instances {
                    deregister_everywhere(s, &arns, i);
                }
                Ok(())
            })
            .await?;
        }
        _ => {
            return Err(ApiError {
                status: 400,
                kind: "Sender",
                code: "InvalidAction".into(),
                message: format!("Could not find operation {action} for version 2011-01-01"),
            })
        }
    }
    Ok(x.0)
}

/// Runs Auto Scaling: each [`Scaling::run_once`] observes the instances, plans with
/// `weir_scale::plan` and carries the steps out (processes through the provider, every state
/// change as a command through the store).
#[derive(Debug)]
pub struct Scaling {
    /// The launch provider.
    pub provider: LocalProcesses,
    /// Groups whose last launch failed, and when (launches back off for 10 s).
    failed: Mutex<HashMap<String, u64>>,
}

impl Scaling {
    /// Auto Scaling with instances as processes whose output goes under `dir`.
    pub fn new(dir: impl Into<std::path::PathBuf>) -> Self {
        Self { provider: LocalProcesses::new(dir), failed: Mutex::new(HashMap::new()) }
    }

    async fn observe(&self, api: &Api, state: &State) -> Observed {
        let mut seen = Observed::default();
        for g in state.auto_scaling.groups.values() {
            for i in g.instances.values() {
                seen.processes.insert(i.id.clone(), self.provider.status(&i.id).await);
            }
            if g.health_check_type != "ELB" {
                continue;
            }
            for arn in &g.target_group_arns {
                for t in api.dataplane.describe_target_health(arn, state).await {
                    if t.state != weir_balance::HealthState::Unhealthy {
                        continue;
                    }
                    if let Some(i) = g.instances.values().find(|i| {
                        t.id == i.id || (t.port == i.port && t.id == i.address.to_string())
                    }) {
                        seen.unhealthy_targets.push(i.id.clone());
                    }
                }
            }
        }
        seen
    }

    /// One reconciliation at `now_ms`.
    pub async fn run_once(&self, api: &Api, now_ms: u64) {
        let state = api.store.lock().await.state().clone();
        if state.auto_scaling.groups.is_empty() {
            return;
        }
        let seen = self.observe(api, &state).await;
        for step in weir_scale::plan(&state, &seen, now_ms) {
            if let Err(e) = self.carry_out(api, &state, step, now_ms).await {
                tracing::warn!(code = %e.code, error = %e.message, "auto scaling step failed");
            }
        }
        self.sync_registrations(api).await;
    }

    async fn carry_out(&self, api: &Api, state: &State, step: Step, now: u64) -> Result<()> {
        match step {
            Step::Launch { group, zone, cause } => {
                let backoff = self.failed.lock().map_or(None, |f| f.get(&group).copied());
                if backoff.is_some_and(|t| now.saturating_sub(t) < 10_000) {
                    return Ok(());
                }
                let g = state.auto_scaling_group(&group)?;
                let id = weir_model::ec2::new_id("i");
                let launched = state
                    .ec2
                    .launch_templates
                    .get(&g.launch_template.id)
                    .ok_or_else(|| {
                        weir_scale::local::LaunchError::NoCommand(
                            "the launch template no longer exists".into(),
                        )
                    })
                    .and_then(|t| command_of(&t.data))
                    .and_then(|script| self.provider.launch(&id, &zone, &script));
                let lt = g.launch_template.clone();
                let mut activity = Activity {
                    id: weir_model::ids::uuid(),
                    group: group.clone(),
                    description: format!("Launching a new EC2 instance: {id}"),
                    cause: format!(
                        "At {} {cause}.",
                        iso8601(now).split('.').next().unwrap_or_default()
                    ),
                    status_code: "InProgress".into(),
                    status_message: None,
                    start_ms: now,
                    end_ms: None,
                    instance_id: Some(id.clone()),
                };
                match launched {
                    Ok(l) => {
                        if let Ok(mut f) = self.failed.lock() {
                            f.remove(&group);
                        }
                        let inst = GroupInstance {
                            id: id.clone(),
                            availability_zone: zone,
                            lifecycle: Lifecycle::Pending,
                            healthy: true,
                            address: l.address,
                            port: l.port,
                            launched_ms: now,
                            terminating_since_ms: None,
                            launch_template: lt,
                        };
                        let added = api
                            .mutate("Launch", &id, |s| {
                                s.add_group_instance(&group, inst)?;
                                s.record_activity(activity);
                                Ok(())
                            })
                            .await;
                        if added.is_err() {
                            self.provider.stop(&id).await;
                        }
                        added
                    }
                    Err(e) => {
                        if let Ok(mut f) = self.failed.lock() {
                            f.insert(group.clone(), now);
                        }
                        activity.description = "Launching a new EC2 instance.".into();
                        activity.status_code = "Failed".into();
                        activity.status_message = Some(e.to_string());
                        activity.end_ms = Some(now);
                        activity.instance_id = None;
                        api.mutate("LaunchFailed", &group, |s| {
                            s.record_activity(activity);
                            Ok(())
                        })
                        .await
                    }
                }
            }
            Step::Activate { group, id } => {
                api.mutate("InstanceInService", &id, |s| {
                    let g = s.auto_scaling_group(&group)?.clone();
                    let Some(i) = g.instances.get(&id) else { return Ok(()) };
                    for arn in &g.target_group_arns {
                        if let Some(t) = target_of(s, arn, i) {
                            s.register_targets(arn, &[t])?;
                        }
                    }
                    s.set_group_instance(&group, &id, Lifecycle::InService, true, now)?;
                    let launch = s
                        .auto_scaling
                        .activities
                        .iter()
                        .rev()
                        .find(|a| a.instance_id.as_deref() == Some(&id) && a.end_ms.is_none())
                        .map(|a| a.id.clone());
                    if let Some(a) = launch {
                        s.finish_activity(&a, "Successful", None, now);
                    }
                    Ok(())
                })
                .await
            }
            Step::MarkUnhealthy { group, id, reason } => {
                tracing::info!(instance = %id, %reason, "instance unhealthy");
                api.mutate("InstanceUnhealthy", &id, |s| {
                    let Some(i) = s.auto_scaling_group(&group)?.instances.get(&id) else {
                        return Ok(());
                    };
                    let lifecycle = i.lifecycle;
                    s.set_group_instance(&group, &id, lifecycle, false, now)
                })
                .await
            }
            Step::Terminate { group, id, cause } => {
                api.mutate("TerminateInstance", &id, |s| {
                    let g = s.auto_scaling_group(&group)?.clone();
                    let Some(i) = g.instances.get(&id) else { return Ok(()) };
                    deregister_everywhere(s, &g.target_group_arns, i);
                    let healthy = i.healthy;
                    s.set_group_instance(&group, &id, Lifecycle::Terminating, healthy, now)?;
                    let requested = s.auto_scaling.activities.iter().any(|a| {
                        a.instance_id.as_deref() == Some(&id)
                            && a.end_ms.is_none()
                            && a.description.starts_with("Terminating")
                    });
                    if !requested {
                        s.record_activity(Activity {
                            id: weir_model::ids::uuid(),
                            group: group.clone(),
                            description: format!("Terminating EC2 instance: {id}"),
                            cause: format!(
                                "At {} {cause}.",
                                iso8601(now).split('.').next().unwrap_or_default()
                            ),
                            status_code: "InProgress".into(),
                            status_message: None,
                            start_ms: now,
                            end_ms: None,
                            instance_id: Some(id.clone()),
                        });
                    }
                    Ok(())
                })
                .await
            }
            Step::Stop { group, id } => {
                self.provider.stop(&id).await;
                api.mutate("InstanceTerminated", &id, |s| {
                    let open: Vec<String> = s
                        .auto_scaling
                        .activities
                        .iter()
                        .filter(|a| a.instance_id.as_deref() == Some(&id) && a.end_ms.is_none())
                        .map(|a| a.id.clone())
                        .collect();
                    for a in open {
                        s.finish_activity(&a, "Successful", None, now);
                    }
                    s.remove_group_instance(&group, &id)
                })
                .await
            }
        }
    }

    /// Registers `InService` instances with target groups attached after they started.
    async fn sync_registrations(&self, api: &Api) {
        let missing: Vec<(String, TargetSpec)> = {
            let store = api.store.lock().await;
            let s = store.state();
            let mut out = Vec::new();
            for g in s.auto_scaling.groups.values() {
                for i in g.instances.values().filter(|i| i.lifecycle == Lifecycle::InService) {
                    for arn in &g.target_group_arns {
                        let Some(t) = target_of(s, arn, i) else { continue };
                        let registered = s.target_groups.get(arn).is_some_and(|tg| {
                            tg.targets.iter().any(|r| r.id == t.id && Some(r.port) == t.port)
                        });
                        if !registered {
                            out.push((arn.clone(), t));
                        }
                    }
                }
            }
            out
        };
        if missing.is_empty() {
            return;
        }
        let _ = api
            .mutate("RegisterGroupInstances", "", |s| {
                for (arn, t) in &missing {
                    s.register_targets(arn, std::slice::from_ref(t))?;
                }
                Ok(())
            })
            .await;
    }
}
