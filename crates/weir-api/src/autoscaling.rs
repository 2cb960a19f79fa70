//! The Auto Scaling Query API (2011-01-01) for groups — `CreateAutoScalingGroup`,
//! `DescribeAutoScalingGroups`, `UpdateAutoScalingGroup`, `DeleteAutoScalingGroup`,
//! `SetDesiredCapacity`, `DescribeAutoScalingInstances`, `TerminateInstanceInAutoScalingGroup`,
//! `DescribeScalingActivities`, `Attach/DetachLoadBalancerTargetGroups` — policies
//! (`PutScalingPolicy`, `DescribePolicies`, `DeletePolicy`, `ExecutePolicy`,
//! `GetPredictiveScalingForecast`), scheduled actions, and [`Scaling`], the loop that runs
//! schedules and policies and carries out `weir_scale::plan` with instances run by a launch
//! provider (local processes by default).

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;
use weir_model::autoscaling::{
    Activity, AutoScalingGroup, GroupInstance, GroupSpec, Lifecycle, PolicySpec, Predictive,
    ScalingPolicy, ScheduledAction,
};
use weir_model::shape::{get_bool, get_str, get_strs, get_u32};
use weir_model::state::TargetSpec;
use weir_model::target_group::TargetType;
use weir_model::State;
use weir_scale::local::{command_of, LocalProcesses};
use weir_scale::policy::{self, GroupLoad};
use weir_scale::LaunchProvider;
use weir_scale::{Observed, Step};
use weir_telemetry::MetricId;

use crate::xml::{iso8601, Xml};
use crate::{Api, ApiError};

/// The Auto Scaling XML namespace.
pub(crate) const NS: &str = "http://autoscaling.amazonaws.com/doc/2011-01-01/";

type Result<T> = std::result::Result<T, ApiError>;

fn group_name(p: &Value) -> Result<String> {
    get_str(p, "AutoScalingGroupName").ok_or_else(|| ApiError::missing("autoScalingGroupName"))
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

fn policy_xml(x: &mut Xml, p: &ScalingPolicy) {
    x.leaf("AutoScalingGroupName", &p.group)
        .leaf("PolicyName", &p.name)
        .leaf("PolicyARN", &p.arn)
        .leaf("PolicyType", &p.policy_type)
        .opt("AdjustmentType", p.adjustment_type.as_deref())
        .opt("ScalingAdjustment", p.scaling_adjustment)
        .opt("Cooldown", p.cooldown)
        .opt("MinAdjustmentMagnitude", p.min_adjustment_magnitude)
        .list("StepAdjustments", &p.step_adjustments, |x, s| {
            x.opt("MetricIntervalLowerBound", s.lower.map(|t| t.0))
                .opt("MetricIntervalUpperBound", s.upper.map(|t| t.0))
                .leaf("ScalingAdjustment", s.adjustment);
        })
        .opt("EstimatedInstanceWarmup", p.estimated_instance_warmup)
        .list("Alarms", Vec::<()>::new(), |_, ()| {});
    if let Some(t) = &p.target_tracking {
        x.open("TargetTrackingConfiguration")
            .open("PredefinedMetricSpecification")
            .leaf("PredefinedMetricType", &t.metric)
            .opt("ResourceLabel", t.resource_label.as_deref())
            .close("PredefinedMetricSpecification")
            .leaf("TargetValue", t.target.0)
            .leaf("DisableScaleIn", t.disable_scale_in)
            .close("TargetTrackingConfiguration");
    }
    if let Some(c) = &p.predictive {
        x.open("PredictiveScalingConfiguration").open("MetricSpecifications").open("member");
        predictive_metric_xml(&mut *x, c);
        x.close("member")
            .close("MetricSpecifications")
            .leaf("Mode", &c.mode)
            .leaf("SchedulingBufferTime", c.scheduling_buffer_secs)
            .leaf("MaxCapacityBreachBehavior", &c.max_capacity_breach)
            .opt("MaxCapacityBuffer", c.max_capacity_buffer)
            .close("PredictiveScalingConfiguration");
    }
    x.leaf("Enabled", p.enabled);
}

/// A predictive policy's metric specification, as its metric pair.
fn predictive_metric_xml(x: &mut Xml, c: &Predictive) {
    x.leaf("TargetValue", c.target.0)
        .open("PredefinedMetricPairSpecification")
        .leaf("PredefinedMetricType", &c.metric)
        .opt("ResourceLabel", c.resource_label.as_deref())
        .close("PredefinedMetricPairSpecification");
}

/// The hourly history of a predictive policy's load metric (hour start, seconds → value) from
/// `from` to `to` (seconds): requests an hour through the target group for `ALBRequestCount`,
/// the instances' average total CPU percent for `ASGCPUUtilization`.
fn load_history(
    api: &Api,
    group: &str,
    c: &Predictive,
    from: u64,
    to: u64,
) -> std::collections::BTreeMap<u64, f64> {
    let hour = weir_scale::predict::HOUR;
    let (id, per_hour) = match c.metric.as_str() {
        "ALBRequestCount" => {
            let label = c.resource_label.as_deref().unwrap_or_default();
            let Some((lb, tg)) = label.split_once("/targetgroup/") else {
                return Default::default();
            };
            let tg = format!("targetgroup/{tg}");
            let dims = [("TargetGroup", tg.as_str()), ("LoadBalancer", lb)];
            (MetricId::new("AWS/ApplicationELB", "RequestCount", &dims), 1.0)
        }
        // One CPU sample per instance a minute: the hour's sum over 60 is the average total.
        _ => (MetricId::new("AWS/EC2", "CPUUtilization", &[("AutoScalingGroupName", group)]), 60.0),
    };
    api.metrics
        .statistics(&id, from, to, hour)
        .into_iter()
        .map(|(t, st)| (t, st.sum / per_hour))
        .collect()
}

/// A forecast: (hour start in seconds, load, capacity) for each hour.
type Forecast = Vec<(u64, f64, u32)>;

/// A predictive policy's forecast made at `now_ms` for the next 48 hours from the current hour;
/// empty with less than a day of history.
fn forecast(api: &Api, g: &AutoScalingGroup, c: &Predictive, now_ms: u64) -> Forecast {
    use weir_scale::predict::{capacity, forecast_load, HISTORY_DAYS, HORIZON_HOURS, HOUR};
    let now = now_ms / 1000;
    let this_hour = now - now % HOUR;
    let oldest = this_hour.saturating_sub(HISTORY_DAYS * 24 * HOUR);
    let history = load_history(api, &g.name, c, oldest, this_hour);
    forecast_load(&history, this_hour, HORIZON_HOURS)
        .into_iter()
        .map(|(h, load)| (h, load, capacity(c, g, load)))
        .collect()
}

fn scheduled_xml(x: &mut Xml, a: &ScheduledAction) {
    x.leaf("AutoScalingGroupName", &a.group)
        .leaf("ScheduledActionName", &a.name)
        .leaf("ScheduledActionARN", &a.arn)
        .opt("Recurrence", a.recurrence.as_deref())
        .opt("StartTime", a.start_ms.map(iso8601))
        .opt("Time", a.start_ms.map(iso8601))
        .opt("EndTime", a.end_ms.map(iso8601))
        .opt("MinSize", a.min_size)
        .opt("MaxSize", a.max_size)
        .opt("DesiredCapacity", a.desired_capacity)
        .opt("TimeZone", a.time_zone.as_deref());
}

/// A Query timestamp (epoch seconds or ISO 8601) as ms since the epoch.
fn time_ms(p: &Value, key: &str) -> weir_model::error::Result<Option<u64>> {
    match p.get(key) {
        None => Ok(None),
        Some(v) => crate::cloudwatch::parse_time(v).map(|s| Some(s * 1000)).ok_or_else(|| {
            weir_model::ModelError::validation(format!("Invalid timestamp for {key}"))
        }),
    }
}

/// The desired capacity a simple or step policy asks for (`breach`: metric minus threshold).
fn policy_desired(
    s: &State,
    pol: &ScalingPolicy,
    breach: Option<f64>,
) -> std::result::Result<u32, weir_model::ModelError> {
    let g = s.auto_scaling_group(&pol.group)?;
    let kind = pol.adjustment_type.as_deref().unwrap_or("ChangeInCapacity");
    let adjustment = match pol.policy_type.as_str() {
        "SimpleScaling" => pol.scaling_adjustment.unwrap_or(0),
        "StepScaling" => {
            let breach = breach.ok_or_else(|| {
                weir_model::ModelError::validation(
                    "MetricValue and BreachThreshold are required to execute a step scaling policy",
                )
            })?;
            policy::step_for(pol, breach).ok_or_else(|| {
                weir_model::ModelError::validation(format!(
                    "No step adjustment covers a breach of {breach}"
                ))
            })?
        }
        _ => {
            return Err(weir_model::ModelError::validation(
                "Only simple and step scaling policies can be executed",
            ))
        }
    };
    Ok(policy::adjusted(g, kind, adjustment, pol.min_adjustment_magnitude))
}

/// Dispatches one Auto Scaling action; returns the XML inside `<ActionResult>`.
pub(crate) async fn dispatch(api: &Api, action: &str, p: &Value) -> Result<String> {
    let mut x = Xml::default();
    let now = crate::now_ms();
    match action {
        "CreateAutoScalingGroup" => {
            let name = group_name(p)?;
            let spec = GroupSpec::from_shape(p)?;
            api.mutate(action, &name, |s| {
                s.create_auto_scaling_group(&name, &spec, now).map(|_| ())
            })
            .await?;
        }
        "UpdateAutoScalingGroup" => {
            let name = group_name(p)?;
            let spec = GroupSpec::from_shape(p)?;
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
        "PutScalingPolicy" => {
            let group = group_name(p)?;
            let name = get_str(p, "PolicyName").ok_or_else(|| ApiError::missing("policyName"))?;
            let spec = PolicySpec::from_shape(p)?;
            let arn =
                api.mutate(action, &name, |s| s.put_scaling_policy(&group, &name, spec)).await?;
            x.leaf("PolicyARN", arn).list("Alarms", Vec::<()>::new(), |_, ()| {});
        }
        "DescribePolicies" => {
            let group = get_str(p, "AutoScalingGroupName");
            let names = get_strs(p, "PolicyNames");
            let types = get_strs(p, "PolicyTypes");
            let store = api.store.lock().await;
            let out: Vec<&ScalingPolicy> = store
                .state()
                .auto_scaling
                .policies
                .values()
                .filter(|q| group.as_ref().is_none_or(|g| &q.group == g))
                .filter(|q| names.is_empty() || names.contains(&q.name) || names.contains(&q.arn))
                .filter(|q| types.is_empty() || types.contains(&q.policy_type))
                .collect();
            x.list("ScalingPolicies", out, policy_xml);
        }
        "DeletePolicy" => {
            let group = get_str(p, "AutoScalingGroupName");
            let name = get_str(p, "PolicyName").ok_or_else(|| ApiError::missing("policyName"))?;
            api.mutate(action, &name, |s| s.delete_scaling_policy(group.as_deref(), &name)).await?;
        }
        "ExecutePolicy" => {
            let group = get_str(p, "AutoScalingGroupName");
            let name = get_str(p, "PolicyName").ok_or_else(|| ApiError::missing("policyName"))?;
            let breach = match (
                weir_model::autoscaling::get_f64(p, "MetricValue")?,
                weir_model::autoscaling::get_f64(p, "BreachThreshold")?,
            ) {
                (Some(v), Some(t)) => Some(v - t),
                _ => None,
            };
            api.mutate(action, &name, |s| {
                let pol = s.find_scaling_policy(group.as_deref(), &name)?.clone();
                let desired = policy_desired(s, &pol, breach)?;
                s.resize_group(&pol.group, None, None, Some(desired)).map(|_| ())
            })
            .await?;
        }
        "GetPredictiveScalingForecast" => {
            let group = group_name(p)?;
            let name = get_str(p, "PolicyName").ok_or_else(|| ApiError::missing("policyName"))?;
            let start = time_ms(p, "StartTime")?.ok_or_else(|| ApiError::missing("startTime"))?;
            let end = time_ms(p, "EndTime")?.ok_or_else(|| ApiError::missing("endTime"))?;
            if end <= start || end - start > 30 * 86_400_000 {
                return Err(weir_model::ModelError::validation(
                    "EndTime must be after StartTime and at most 30 days later",
                )
                .into());
            }
            let state = api.store.lock().await.state().clone();
            let pol = state.find_scaling_policy(Some(&group), &name)?;
            let Some(c) = &pol.predictive else {
                return Err(weir_model::ModelError::validation(format!(
                    "Policy {name} is not a predictive scaling policy"
                ))
                .into());
            };
            let g = state.auto_scaling_group(&group)?;
            let points: Forecast = forecast(api, g, c, now)
                .into_iter()
                .filter(|(h, _, _)| (start / 1000..end / 1000).contains(h))
                .collect();
            let times: Vec<String> = points.iter().map(|(h, _, _)| iso8601(h * 1000)).collect();
            x.open("LoadForecast").open("member");
            x.strings("Timestamps", &times)
                .strings("Values", points.iter().map(|(_, l, _)| *l).collect::<Vec<_>>())
                .open("MetricSpecification");
            predictive_metric_xml(&mut x, c);
            x.close("MetricSpecification").close("member").close("LoadForecast");
            x.open("CapacityForecast")
                .strings("Timestamps", &times)
                .strings("Values", points.iter().map(|(_, _, n)| *n).collect::<Vec<_>>())
                .close("CapacityForecast")
                .leaf("UpdateTime", iso8601(now - now % 60_000));
        }
        "PutScheduledUpdateGroupAction" => {
            let group = group_name(p)?;
            let name = get_str(p, "ScheduledActionName")
                .ok_or_else(|| ApiError::missing("scheduledActionName"))?;
            let a = ScheduledAction::from_shape(p, group, name.clone(), |k| time_ms(p, k))?;
            api.mutate(action, &name, |s| s.put_scheduled_action(a)).await?;
        }
        "DescribeScheduledActions" => {
            let group = get_str(p, "AutoScalingGroupName");
            let names = get_strs(p, "ScheduledActionNames");
            let store = api.store.lock().await;
            let out: Vec<&ScheduledAction> = store
                .state()
                .auto_scaling
                .scheduled
                .values()
                .filter(|a| group.as_ref().is_none_or(|g| &a.group == g))
                .filter(|a| names.is_empty() || names.contains(&a.name))
                .collect();
            x.list("ScheduledUpdateGroupActions", out, scheduled_xml);
        }
        "DeleteScheduledAction" => {
            let group = group_name(p)?;
            let name = get_str(p, "ScheduledActionName")
                .ok_or_else(|| ApiError::missing("scheduledActionName"))?;
            api.mutate(action, &name, |s| s.delete_scheduled_action(&group, &name)).await?;
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

/// An `InProgress` activity about instance `id`, its cause stamped with the time as AWS does.
fn started(group: &str, description: String, cause: &str, now: u64, id: &str) -> Activity {
    Activity {
        id: weir_model::ids::uuid(),
        group: group.into(),
        description,
        cause: format!("At {} {cause}.", iso8601(now).split('.').next().unwrap_or_default()),
        status_code: "InProgress".into(),
        status_message: None,
        start_ms: now,
        end_ms: None,
        instance_id: Some(id.into()),
    }
}

/// Runs Auto Scaling: each [`Scaling::run_once`] observes the instances, plans with
/// `weir_scale::plan` and carries the steps out (processes through the provider, every state
/// change as a command through the store).
#[derive(Debug)]
pub struct Scaling {
    /// The launch provider.
    pub provider: std::sync::Arc<dyn LaunchProvider>,
    /// Groups whose last launch failed, and when (launches back off for 10 s).
    failed: Mutex<HashMap<String, u64>>,
    /// How far back target tracking measures load (ms).
    window_ms: u64,
    /// How long target tracking must ask for less before it scales in (ms).
    scale_in_after_ms: u64,
    track: Mutex<Track>,
}

/// What target tracking remembers between reconciliations.
#[derive(Debug, Default)]
struct Track {
    /// Request counters of target groups: (ms, total), oldest first.
    requests: HashMap<String, std::collections::VecDeque<(u64, u64)>>,
    /// CPU seconds of instances: (ms, seconds), oldest first.
    cpu: HashMap<String, std::collections::VecDeque<(u64, f64)>>,
    /// When a policy last scaled its group out (warm-up) or a simple policy ran (cooldown).
    scaled_at: HashMap<String, u64>,
    /// Since when target tracking has asked for less than the desired capacity.
    low_since: HashMap<String, u64>,
    /// Each instance's CPU seconds when its CPU was last recorded (ms, seconds).
    cpu_recorded: HashMap<String, (u64, f64)>,
    /// Predictive policies' forecasts by ARN, with the minute they were made.
    forecasts: HashMap<String, (u64, Forecast)>,
    /// The capacity `ForecastAndScale` policies hold each group at for now (target tracking
    /// does not scale in below it).
    floors: HashMap<String, u32>,
}

/// Keeps samples newer than `window` (plus the one just before, so a full window is covered).
fn trim<T>(q: &mut std::collections::VecDeque<(u64, T)>, now: u64, window: u64) {
    while q.len() > 2 && q.get(1).is_some_and(|(t, _)| now.saturating_sub(*t) >= window) {
        q.pop_front();
    }
}

impl Scaling {
    /// Auto Scaling with instances as processes whose output goes under `dir`; target tracking
    /// measures over 60 s and scales in after 5 minutes of asking for less.
    pub fn new(dir: impl Into<std::path::PathBuf>) -> Self {
        Self::with_timing(dir, 60_000, 300_000)
    }

    /// Like [`Scaling::new`] with target tracking's measuring window and scale-in delay.
    pub fn with_timing(
        dir: impl Into<std::path::PathBuf>,
        window_ms: u64,
        scale_in_after_ms: u64,
    ) -> Self {
        let provider = std::sync::Arc::new(LocalProcesses::new(dir));
        Self::with_provider(provider, window_ms, scale_in_after_ms)
    }

    /// Auto Scaling with instances run by `provider`, target tracking measuring over
    /// `window_ms` and scaling in after `scale_in_after_ms`.
    pub fn with_provider(
        provider: std::sync::Arc<dyn LaunchProvider>,
        window_ms: u64,
        scale_in_after_ms: u64,
    ) -> Self {
        Self {
            provider,
            failed: Mutex::new(HashMap::new()),
            window_ms: window_ms.max(1000),
            scale_in_after_ms,
            track: Mutex::new(Track::default()),
        }
    }

    fn track(&self) -> std::sync::MutexGuard<'_, Track> {
        self.track.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Samples the counters target tracking reads and returns each group's load.
    async fn measure(&self, api: &Api, state: &State, now: u64) -> HashMap<String, GroupLoad> {
        let mut out = HashMap::new();
        for pol in state.auto_scaling.policies.values() {
            let (Some(tt), Ok(g)) = (&pol.target_tracking, state.auto_scaling_group(&pol.group))
            else {
                continue;
            };
            let in_service: Vec<&GroupInstance> = g
                .instances
                .values()
                .filter(|i| i.lifecycle == Lifecycle::InService && i.healthy)
                .collect();
            let n = in_service.len().max(1) as f64;
            let load: &mut GroupLoad = out.entry(g.name.clone()).or_default();
            match tt.metric.as_str() {
                "ALBRequestCountPerTarget" => {
                    let label = tt.resource_label.as_deref().unwrap_or_default();
                    let Some(arn) = g.target_group_arns.iter().find(|a| {
                        state
                            .target_groups
                            .get(*a)
                            .is_some_and(|tg| label.ends_with(&tg.full_name()))
                    }) else {
                        continue;
                    };
                    let Some(count) = api.dataplane.group_requests(arn).await else { continue };
                    let mut t = self.track();
                    let q = t.requests.entry(arn.clone()).or_default();
                    q.push_back((now, count));
                    trim(q, now, self.window_ms);
                    if let (Some(first), Some(last)) = (q.front(), q.back()) {
                        let ms = last.0.saturating_sub(first.0);
                        if ms >= self.window_ms / 2 {
                            let per_min =
                                last.1.saturating_sub(first.1) as f64 * 60_000.0 / ms as f64;
                            load.requests_per_target = Some(per_min / n);
                        }
                    }
                }
                "ASGAverageCPUUtilization" => {
                    let mut t = self.track();
                    let mut sum = 0.0;
                    let mut seen = 0.0;
                    for i in &in_service {
                        let Some(cpu) = self.provider.cpu_seconds(&i.id) else {
                            continue;
                        };
                        let q = t.cpu.entry(i.id.clone()).or_default();
                        q.push_back((now, cpu));
                        trim(q, now, self.window_ms);
                        if let (Some(first), Some(last)) = (q.front(), q.back()) {
                            let ms = last.0.saturating_sub(first.0);
                            if ms >= self.window_ms / 2 {
                                sum += (last.1 - first.1) * 100_000.0 / ms as f64;
                                seen += 1.0;
                            }
                        }
                    }
                    if seen > 0.0 {
                        load.cpu_percent = Some(sum / seen);
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Records each in-service instance's CPU utilization once a minute as `AWS/EC2`
    /// `CPUUtilization` by `AutoScalingGroupName` (one sample per instance), the history
    /// `ASGCPUUtilization` forecasts read.
    fn record_cpu(&self, api: &Api, state: &State, now: u64) {
        let mut t = self.track();
        let mut live = std::collections::HashSet::new();
        for g in state.auto_scaling.groups.values() {
            let id =
                MetricId::new("AWS/EC2", "CPUUtilization", &[("AutoScalingGroupName", &g.name)]);
            for i in g.instances.values().filter(|i| i.lifecycle == Lifecycle::InService) {
                live.insert(i.id.clone());
                let last = t.cpu_recorded.get(&i.id).copied();
                if last.is_some_and(|(at, _)| now.saturating_sub(at) < 60_000) {
                    continue;
                }
                let Some(cpu) = self.provider.cpu_seconds(&i.id) else { continue };
                if let Some((at, before)) = last {
                    let percent = (cpu - before).max(0.0) * 100_000.0 / (now - at) as f64;
                    let kind = weir_telemetry::Kind::Gauge;
                    api.metrics.sample(id.clone(), "Percent", kind, percent, now / 1000);
                }
                t.cpu_recorded.insert(i.id.clone(), (now, cpu));
            }
        }
        t.cpu_recorded.retain(|k, _| live.contains(k));
    }

    /// `ForecastAndScale` policies: ahead of each hour (by the scheduling buffer) the group is
    /// raised to the capacity forecast for it, and held there while the hour lasts; predictive
    /// scaling never scales in.
    async fn run_predictive(&self, api: &Api, state: &State, now: u64) {
        use weir_scale::predict::{max_for, HOUR};
        let mut floors: HashMap<String, u32> = HashMap::new();
        for pol in state.auto_scaling.policies.values() {
            let (Some(c), Ok(g)) = (&pol.predictive, state.auto_scaling_group(&pol.group)) else {
                continue;
            };
            if !pol.enabled || c.mode != "ForecastAndScale" {
                continue;
            }
            let minute = now / 60_000;
            let cached = self
                .track()
                .forecasts
                .get(&pol.arn)
                .filter(|(m, _)| *m == minute)
                .map(|(_, f)| f.clone());
            let fc = match cached {
                Some(f) => f,
                None => {
                    let f = forecast(api, g, c, now);
                    self.track().forecasts.insert(pol.arn.clone(), (minute, f.clone()));
                    f
                }
            };
            let secs = now / 1000;
            let (this_hour, ahead) =
                (secs - secs % HOUR, secs + u64::from(c.scheduling_buffer_secs));
            let ahead = ahead - ahead % HOUR;
            let Some((hour, _, cap)) = fc
                .iter()
                .filter(|(h, _, _)| (this_hour..=ahead).contains(h))
                .max_by_key(|(_, _, n)| *n)
                .copied()
            else {
                continue;
            };
            let floor = floors.entry(g.name.clone()).or_default();
            *floor = (*floor).max(cap);
            if g.desired_capacity >= cap {
                continue;
            }
            let max = max_for(c, g, cap);
            let from = g.desired_capacity;
            tracing::info!(group = %g.name, policy = %pol.name, from, to = cap, "predictive scaling");
            let r = api
                .mutate("PredictiveScaling", &pol.name, |s| {
                    let to = s.resize_group(&g.name, None, Some(max), Some(cap))?;
                    s.record_activity(Activity {
                        id: weir_model::ids::uuid(),
                        group: g.name.clone(),
                        description: format!(
                            "Executing predictive scaling policy {}",
                            pol.name
                        ),
                        cause: format!(
                            "At {} the predictive scaling policy {} forecast a capacity of {cap} for the hour starting at {}, changing the desired capacity from {from} to {to}.",
                            iso8601(now).split('.').next().unwrap_or_default(),
                            pol.name,
                            iso8601(hour * 1000).split('.').next().unwrap_or_default(),
                        ),
                        status_code: "Successful".into(),
                        status_message: None,
                        start_ms: now,
                        end_ms: Some(now),
                        instance_id: None,
                    });
                    Ok(())
                })
                .await;
            if let Err(e) = r {
                tracing::warn!(policy = %pol.name, error = %e.message, "predictive scaling failed");
            }
        }
        let mut t = self.track();
        t.floors = floors;
        let live: std::collections::HashSet<&String> = state.auto_scaling.policies.keys().collect();
        t.forecasts.retain(|k, _| live.contains(k));
    }

    /// Target tracking: scale out at once (then wait for warm-up), scale in after the delay.
    async fn track_targets(&self, api: &Api, state: &State, now: u64) {
        let loads = self.measure(api, state, now).await;
        for pol in state.auto_scaling.policies.values() {
            let (Some(tt), Ok(g)) = (&pol.target_tracking, state.auto_scaling_group(&pol.group))
            else {
                continue;
            };
            let Some(want) = loads.get(&g.name).and_then(|l| policy::tracking_desired(pol, g, l))
            else {
                continue;
            };
            // Not below what a predictive policy holds the group at for this hour.
            let want = want.max(self.track().floors.get(&g.name).copied().unwrap_or(0));
            let warmup =
                u64::from(pol.estimated_instance_warmup.unwrap_or(g.default_cooldown)) * 1000;
            let change = {
                let mut t = self.track();
                if want > g.desired_capacity {
                    t.low_since.remove(&g.name);
                    let warm =
                        t.scaled_at.get(&g.name).is_none_or(|at| now.saturating_sub(*at) >= warmup);
                    warm.then(|| {
                        t.scaled_at.insert(g.name.clone(), now);
                        want
                    })
                } else if want < g.desired_capacity && !tt.disable_scale_in {
                    let since = *t.low_since.entry(g.name.clone()).or_insert(now);
                    (now.saturating_sub(since) >= self.scale_in_after_ms).then(|| {
                        t.low_since.remove(&g.name);
                        want
                    })
                } else {
                    t.low_since.remove(&g.name);
                    None
                }
            };
            if let Some(want) = change {
                let metric = tt.metric.clone();
                let from = g.desired_capacity;
                tracing::info!(group = %g.name, policy = %pol.name, from, to = want, "target tracking");
                let _ = api
                    .mutate("TargetTracking", &pol.name, |s| {
                        s.resize_group(&pol.group, None, None, Some(want)).map(|_| ())
                    })
                    .await;
                tracing::debug!(%metric, "target tracking changed the desired capacity");
            }
        }
    }

    /// Runs the scheduled actions due at `now`.
    async fn run_schedules(&self, api: &Api, state: &State, now: u64) {
        for (key, a) in &state.auto_scaling.scheduled {
            if !policy::scheduled_due(a, now) {
                continue;
            }
            let r = api
                .mutate("ScheduledAction", &a.name, |s| {
                    let from = s.auto_scaling_group(&a.group)?.desired_capacity;
                    let to = s.resize_group(&a.group, a.min_size, a.max_size, a.desired_capacity)?;
                    s.record_activity(Activity {
                        id: weir_model::ids::uuid(),
                        group: a.group.clone(),
                        description: format!("Executing scheduled action {}", a.name),
                        cause: format!(
                            "At {} a scheduled action update of AutoScalingGroup constraints to min: {}, max: {}, desired: {} changing the desired capacity from {from} to {to}.",
                            iso8601(now).split('.').next().unwrap_or_default(),
                            a.min_size.map_or("-".into(), |v| v.to_string()),
                            a.max_size.map_or("-".into(), |v| v.to_string()),
                            a.desired_capacity.map_or("-".into(), |v| v.to_string()),
                        ),
                        status_code: "Successful".into(),
                        status_message: None,
                        start_ms: now,
                        end_ms: Some(now),
                        instance_id: None,
                    });
                    if a.recurrence.is_some() {
                        if let Some(x) = s.auto_scaling.scheduled.get_mut(key) {
                            x.last_run_ms = Some(now - now % 60_000);
                        }
                    } else {
                        // A one-time action is gone once it has run, as on AWS.
                        s.auto_scaling.scheduled.remove(key);
                    }
                    Ok(())
                })
                .await;
            if let Err(e) = r {
                tracing::warn!(action = %a.name, error = %e.message, "scheduled action failed");
            }
        }
    }

    /// Runs the simple and step policies named by alarms that just went into `ALARM`.
    pub async fn on_alarms(
        &self,
        api: &Api,
        changed: &[(weir_model::alarm::MetricAlarm, weir_telemetry::alarm::AlarmState)],
        now_ms: u64,
    ) {
        for (alarm, st) in changed {
            if *st != weir_telemetry::alarm::AlarmState::Alarm || !alarm.actions_enabled {
                continue;
            }
            // The breach: the latest datapoint of the alarm's metric minus its threshold.
            let id = weir_telemetry::MetricId {
                namespace: alarm.namespace.clone(),
                name: alarm.metric_name.clone(),
                dimensions: alarm.dimensions.clone(),
            };
            let period = u64::from(alarm.period.max(60));
            let now = now_ms / 1000;
            let breach = api
                .metrics
                .statistics(&id, now.saturating_sub(3 * period), now, period)
                .last()
                .and_then(|(_, s)| s.get(&alarm.statistic))
                .map(|v| v - alarm.threshold.0);
            for arn in &alarm.alarm_actions {
                let Some(pol) =
                    api.store.lock().await.state().auto_scaling.policies.get(arn).cloned()
                else {
                    continue;
                };
                let cooldown = {
                    let g =
                        api.store.lock().await.state().auto_scaling_group(&pol.group).ok().cloned();
                    let Some(g) = g else { continue };
                    u64::from(pol.cooldown.unwrap_or(g.default_cooldown)) * 1000
                };
                let key = format!("policy:{}", pol.arn);
                let cooling = pol.policy_type == "SimpleScaling"
                    && self
                        .track()
                        .scaled_at
                        .get(&key)
                        .is_some_and(|at| now_ms.saturating_sub(*at) < cooldown);
                if cooling || !pol.enabled {
                    continue;
                }
                let r = api
                    .mutate("AlarmPolicy", &pol.name, |s| {
                        let to = policy_desired(s, &pol, breach)?;
                        s.resize_group(&pol.group, None, None, Some(to)).map(|_| ())
                    })
                    .await;
                match r {
                    Ok(()) => {
                        self.track().scaled_at.insert(key, now_ms);
                        tracing::info!(alarm = %alarm.name, policy = %pol.name, "alarm ran a scaling policy");
                    }
                    Err(e) => {
                        tracing::warn!(policy = %pol.name, error = %e.message, "scaling policy failed")
                    }
                }
            }
        }
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
        self.record_cpu(api, &state, now_ms);
        self.run_schedules(api, &state, now_ms).await;
        self.run_predictive(api, &state, now_ms).await;
        let state = api.store.lock().await.state().clone();
        self.track_targets(api, &state, now_ms).await;
        // Plan on the state the schedules and policies just changed.
        let state = api.store.lock().await.state().clone();
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
                let mut activity = started(
                    &group,
                    format!("Launching a new EC2 instance: {id}"),
                    &cause,
                    now,
                    &id,
                );
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
                        s.record_activity(started(
                            &group,
                            format!("Terminating EC2 instance: {id}"),
                            &cause,
                            now,
                            &id,
                        ));
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
