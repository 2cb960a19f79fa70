//! EC2 Auto Scaling groups as the Auto Scaling API (2011-01-01) defines them: size limits,
//! zones from subnets, a launch template, target groups, health-check type and grace period,
//! termination policies, and the group's instances with their lifecycle states, plus the
//! scaling-activity history. Validation and error wording are AWS's. Launching and stopping the
//! processes behind instances is `weir-scale`'s job; it records what it did through these
//! operations.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use serde_json::Value;

use crate::error::{ErrorCode, ModelError, Result};
use crate::shape::{get_bool, get_str, get_strs, get_u32};
use crate::zones;

/// Activities kept per region (the oldest are forgotten first).
pub const MAX_ACTIVITIES: usize = 1000;

/// Termination policies Auto Scaling accepts.
pub const TERMINATION_POLICIES: &[&str] = &[
    "Default",
    "AllocationStrategy",
    "OldestLaunchTemplate",
    "OldestLaunchConfiguration",
    "ClosestToNextInstanceHour",
    "NewestInstance",
    "OldestInstance",
];

/// Which launch template (and version) a group launches.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LaunchTemplateRef {
    /// `lt-…`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `$Default`, `$Latest` or a number.
    pub version: String,
}

/// Where an instance is in its life (`LifecycleState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Lifecycle {
    /// Launched; not yet serving (its process is starting, or it is not yet registered).
    Pending,
    /// Serving, registered with the group's target groups.
    InService,
    /// Deregistered and being stopped.
    Terminating,
}

impl Lifecycle {
    /// AWS's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::InService => "InService",
            Self::Terminating => "Terminating",
        }
    }
}

/// An instance of a group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupInstance {
    /// `i-…`.
    pub id: String,
    /// Its zone.
    pub availability_zone: String,
    /// Lifecycle state.
    pub lifecycle: Lifecycle,
    /// `Healthy` or `Unhealthy`.
    pub healthy: bool,
    /// Where it listens.
    pub address: IpAddr,
    /// The port it was given.
    pub port: u16,
    /// Launch time, ms since the epoch.
    pub launched_ms: u64,
    /// When it entered `Terminating`.
    pub terminating_since_ms: Option<u64>,
    /// The launch template it was launched from.
    pub launch_template: LaunchTemplateRef,
}

/// An Auto Scaling group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AutoScalingGroup {
    /// Name (unique per region), 1–255 characters.
    pub name: String,
    /// `arn:aws:autoscaling:REGION:ACCOUNT:autoScalingGroup:UUID:autoScalingGroupName/NAME`.
    pub arn: String,
    /// What it launches.
    pub launch_template: LaunchTemplateRef,
    /// Size limits and the size wanted.
    pub min_size: u32,
    /// Maximum size.
    pub max_size: u32,
    /// Desired capacity.
    pub desired_capacity: u32,
    /// Seconds between simple-scaling activities (default 300).
    pub default_cooldown: u32,
    /// `EC2` (the process runs) or `ELB` (also healthy in its target groups).
    pub health_check_type: String,
    /// Seconds after launch before health checks count.
    pub health_check_grace_period: u32,
    /// Subnets (`VPCZoneIdentifier`), in the order given.
    pub subnets: Vec<String>,
    /// Their zones, in order, without repeats.
    pub availability_zones: Vec<String>,
    /// Target groups its instances are registered with.
    pub target_group_arns: Vec<String>,
    /// Termination policies, in order.
    pub termination_policies: Vec<String>,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Instances by id.
    pub instances: BTreeMap<String, GroupInstance>,
    /// `Delete in progress` while a forced delete stops the instances.
    pub status: Option<String>,
}

/// A scaling activity (`DescribeScalingActivities`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Activity {
    /// Activity id (a UUID).
    pub id: String,
    /// The group's name.
    pub group: String,
    /// `Launching a new EC2 instance: i-…`.
    pub description: String,
    /// Why.
    pub cause: String,
    /// `InProgress`, `Successful`, `Failed`, `Cancelled`.
    pub status_code: String,
    /// Details of a failure.
    pub status_message: Option<String>,
    /// Start, ms since the epoch.
    pub start_ms: u64,
    /// End, ms since the epoch.
    pub end_ms: Option<u64>,
    /// The instance it concerns.
    pub instance_id: Option<String>,
}

/// Every Auto Scaling resource of the region.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AutoScaling {
    /// Groups by name.
    pub groups: BTreeMap<String, AutoScalingGroup>,
    /// Activities, oldest first.
    pub activities: VecDeque<Activity>,
    /// Scaling policies by ARN.
    #[serde(default)]
    pub policies: BTreeMap<String, ScalingPolicy>,
    /// Scheduled actions by (group, name).
    #[serde(default)]
    pub scheduled: BTreeMap<String, ScheduledAction>,
}

/// A step of a step-scaling policy: bounds relative to the alarm threshold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StepAdjustment {
    /// Lower bound (inclusive), `None` = -infinity.
    pub lower: Option<crate::alarm::Threshold>,
    /// Upper bound (exclusive), `None` = +infinity.
    pub upper: Option<crate::alarm::Threshold>,
    /// The adjustment.
    pub adjustment: i64,
}

/// A target-tracking configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TargetTracking {
    /// `ALBRequestCountPerTarget`, `ASGAverageCPUUtilization`, ...
    pub metric: String,
    /// For `ALBRequestCountPerTarget`: `app/LB/ID/targetgroup/TG/ID`.
    pub resource_label: Option<String>,
    /// The value to hold the metric at.
    pub target: crate::alarm::Threshold,
    /// Never scale in.
    pub disable_scale_in: bool,
}

/// Metrics target tracking can follow.
pub const PREDEFINED_METRICS: &[&str] = &[
    "ASGAverageCPUUtilization",
    "ALBRequestCountPerTarget",
    "ASGAverageNetworkIn",
    "ASGAverageNetworkOut",
];

/// A predictive scaling configuration (`PredictiveScalingConfiguration`), with its one metric
/// specification reduced to the metric pair it amounts to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Predictive {
    /// The metric pair: `ALBRequestCount` (load: the target group's `RequestCount`; scaling:
    /// requests per target per minute) or `ASGCPUUtilization` (load: the instances' total CPU;
    /// scaling: their average CPU).
    pub metric: String,
    /// For `ALBRequestCount`: `app/LB/ID/targetgroup/TG/ID`.
    pub resource_label: Option<String>,
    /// The scaling metric's value to hold each instance at.
    pub target: crate::alarm::Threshold,
    /// `ForecastOnly` (default) or `ForecastAndScale`.
    pub mode: String,
    /// Seconds before each forecast hour that capacity is raised (`SchedulingBufferTime`).
    pub scheduling_buffer_secs: u32,
    /// `MaxCapacityBreachBehavior`: `HonorMaxCapacity` (default) or `IncreaseMaxCapacity`.
    pub max_capacity_breach: String,
    /// `MaxCapacityBuffer`: percent above the forecast the maximum may grow to.
    pub max_capacity_buffer: Option<u32>,
}

/// Metric pairs predictive scaling follows, with the load and scaling metrics that make them
/// up when given separately.
pub const PREDICTIVE_METRICS: &[(&str, &str, &str)] = &[
    ("ALBRequestCount", "ALBTargetGroupRequestCount", "ALBRequestCountPerTarget"),
    ("ASGCPUUtilization", "ASGTotalCPUUtilization", "ASGAverageCPUUtilization"),
];

/// A scaling policy (`PutScalingPolicy`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScalingPolicy {
    /// Name, unique per group.
    pub name: String,
    /// `arn:aws:autoscaling:REGION:ACCOUNT:scalingPolicy:UUID:autoScalingGroupName/G:policyName/P`.
    pub arn: String,
    /// Its group.
    pub group: String,
    /// `SimpleScaling`, `StepScaling`, `TargetTrackingScaling` or `PredictiveScaling`.
    pub policy_type: String,
    /// `ChangeInCapacity`, `ExactCapacity` or `PercentChangeInCapacity`.
    pub adjustment_type: Option<String>,
    /// Simple scaling's adjustment.
    pub scaling_adjustment: Option<i64>,
    /// Simple scaling's cooldown (the group's default when absent).
    pub cooldown: Option<u32>,
    /// `PercentChangeInCapacity`'s minimum change.
    pub min_adjustment_magnitude: Option<i64>,
    /// Step scaling's steps.
    pub step_adjustments: Vec<StepAdjustment>,
    /// Seconds a new instance takes to count (target tracking and step scaling).
    pub estimated_instance_warmup: Option<u32>,
    /// Target tracking.
    pub target_tracking: Option<TargetTracking>,
    /// Predictive scaling.
    #[serde(default)]
    pub predictive: Option<Predictive>,
    /// Whether it is enabled.
    pub enabled: bool,
}

/// A scheduled action (`PutScheduledUpdateGroupAction`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScheduledAction {
    /// Name, unique per group.
    pub name: String,
    /// ARN.
    pub arn: String,
    /// Its group.
    pub group: String,
    /// Unix cron, five fields (UTC unless `time_zone`).
    pub recurrence: Option<String>,
    /// First (or only) run, ms since the epoch.
    pub start_ms: Option<u64>,
    /// No runs after, ms since the epoch.
    pub end_ms: Option<u64>,
    /// The IANA time zone `recurrence` is read in (`America/New_York`); UTC when absent.
    pub time_zone: Option<String>,
    /// New sizes.
    pub min_size: Option<u32>,
    /// New maximum.
    pub max_size: Option<u32>,
    /// New desired capacity.
    pub desired_capacity: Option<u32>,
    /// The last minute it ran (ms), so a minute runs once.
    pub last_run_ms: Option<u64>,
}

/// The parameters of `CreateAutoScalingGroup` / `UpdateAutoScalingGroup` (all optional on update).
#[derive(Debug, Clone, Default)]
pub struct GroupSpec {
    /// Launch template id or name, and version.
    pub launch_template: Option<(Option<String>, Option<String>, Option<String>)>,
    /// `MinSize`.
    pub min_size: Option<u32>,
    /// `MaxSize`.
    pub max_size: Option<u32>,
    /// `DesiredCapacity`.
    pub desired_capacity: Option<u32>,
    /// `DefaultCooldown`.
    pub default_cooldown: Option<u32>,
    /// `HealthCheckType`.
    pub health_check_type: Option<String>,
    /// `HealthCheckGracePeriod`.
    pub health_check_grace_period: Option<u32>,
    /// `VPCZoneIdentifier`, comma-separated subnets.
    pub vpc_zone_identifier: Option<String>,
    /// `AvailabilityZones`.
    pub availability_zones: Option<Vec<String>>,
    /// `TargetGroupARNs`.
    pub target_group_arns: Option<Vec<String>>,
    /// `TerminationPolicies`.
    pub termination_policies: Option<Vec<String>>,
}

fn not_found(name: &str) -> ModelError {
    ModelError::validation(format!("AutoScalingGroup name not found - {name}"))
}

impl crate::State {
    /// The group called `name`, or AWS's `ValidationError`.
    pub fn auto_scaling_group(&self, name: &str) -> Result<&AutoScalingGroup> {
        self.auto_scaling.groups.get(name).ok_or_else(|| not_found(name))
    }

    fn group_mut(&mut self, name: &str) -> Result<&mut AutoScalingGroup> {
        self.auto_scaling.groups.get_mut(name).ok_or_else(|| not_found(name))
    }

    fn resolve_launch_template(
        &self,
        id: Option<&str>,
        name: Option<&str>,
        version: Option<&str>,
    ) -> Result<LaunchTemplateRef> {
        let t = match (id, name) {
            (Some(id), None) => self.ec2.launch_templates.get(id).ok_or_else(|| {
                ModelError::validation(format!(
                    "The specified launch template, with template ID {id}, does not exist."
                ))
            })?,
            (None, Some(n)) => {
                self.ec2.launch_templates.values().find(|t| t.name == n).ok_or_else(|| {
                    ModelError::validation(format!(
                        "The specified launch template, with template name {n}, does not exist."
                    ))
                })?
            }
            _ => {
                return Err(ModelError::validation(
                    "Valid requests must contain either LaunchTemplateId or LaunchTemplateName",
                ))
            }
        };
        let version = version.unwrap_or("$Default").to_string();
        if version != "$Default" && version != "$Latest" && version.parse::<u32>().is_err() {
            return Err(ModelError::validation(format!(
                "The launch template version '{version}' is not valid."
            )));
        }
        Ok(LaunchTemplateRef { id: t.id.clone(), name: t.name.clone(), version })
    }

    fn zones_of(&self, subnets: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for s in subnets {
            let z = self
                .ec2
                .subnet(&self.region, s)
                .map(|s| s.availability_zone)
                .or_else(|| zones::subnet_zone(&self.region, s).map(|z| z.zone_name))
                .ok_or_else(|| {
                    ModelError::validation(format!("The subnet ID '{s}' does not exist"))
                })?;
            if !out.contains(&z) {
                out.push(z);
            }
        }
        Ok(out)
    }

    fn check_sizes(min: u32, max: u32, desired: u32) -> Result<()> {
        if min > max {
            return Err(ModelError::validation(format!(
                "Max bound, {max}, must be greater than or equal to min bound, {min}"
            )));
        }
        if desired < min || desired > max {
            return Err(ModelError::validation(format!(
                "Desired capacity:{desired} must be between the specified min size:{min} and max size:{max}"
            )));
        }
        Ok(())
    }

    fn apply_spec(&self, g: &mut AutoScalingGroup, spec: &GroupSpec) -> Result<()> {
        if let Some((id, name, version)) = &spec.launch_template {
            g.launch_template =
                self.resolve_launch_template(id.as_deref(), name.as_deref(), version.as_deref())?;
        }
        if let Some(v) = spec.min_size {
            g.min_size = v;
        }
        if let Some(v) = spec.max_size {
            g.max_size = v;
        }
        match spec.desired_capacity {
            Some(v) => g.desired_capacity = v,
            // Changing the bounds moves the desired capacity inside them, as AWS does.
            None => {
                g.desired_capacity =
                    g.desired_capacity.clamp(g.min_size, g.max_size.max(g.min_size))
            }
        }
        if let Some(v) = spec.default_cooldown {
            g.default_cooldown = v;
        }
        if let Some(t) = &spec.health_check_type {
            if t != "EC2" && t != "ELB" {
                return Err(ModelError::validation(format!(
                    "Invalid health check type '{t}': must be EC2 or ELB"
                )));
            }
            g.health_check_type = t.clone();
        }
        if let Some(v) = spec.health_check_grace_period {
            g.health_check_grace_period = v;
        }
        if let Some(ids) = &spec.vpc_zone_identifier {
            let subnets: Vec<String> = ids
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            g.availability_zones = self.zones_of(&subnets)?;
            g.subnets = subnets;
        } else if let Some(zs) = &spec.availability_zones {
            for z in zs {
                if !z.starts_with(&self.region) || zones::zone_index(z).is_none() {
                    return Err(ModelError::validation(format!(
                        "The availability zone '{z}' is not legal"
                    )));
                }
            }
            g.availability_zones = zs.clone();
        }
        if let Some(arns) = &spec.target_group_arns {
            for a in arns {
                self.target_group(a)?;
            }
            g.target_group_arns = arns.clone();
        }
        if let Some(p) = &spec.termination_policies {
            if let Some(bad) = p.iter().find(|p| !TERMINATION_POLICIES.contains(&p.as_str())) {
                return Err(ModelError::validation(format!(
                    "Termination policy '{bad}' is not valid"
                )));
            }
            g.termination_policies = p.clone();
        }
        Self::check_sizes(g.min_size, g.max_size, g.desired_capacity)
    }

    /// `CreateAutoScalingGroup`.
    pub fn create_auto_scaling_group(
        &mut self,
        name: &str,
        spec: &GroupSpec,
        now_ms: u64,
    ) -> Result<AutoScalingGroup> {
        if name.is_empty() || name.len() > 255 || name.contains(':') {
            return Err(ModelError::validation(format!(
                "AutoScalingGroupName '{name}' must be 1-255 characters without ':'"
            )));
        }
        if self.auto_scaling.groups.contains_key(name) {
            return Err(ModelError::new(
                ErrorCode::AlreadyExists,
                format!("AutoScalingGroup by this name already exists - A group with the name {name} already exists"),
            ));
        }
        let (Some(min), Some(max)) = (spec.min_size, spec.max_size) else {
            return Err(ModelError::validation("MinSize and MaxSize are required"));
        };
        if spec.launch_template.is_none() {
            return Err(ModelError::validation(
                "Valid requests must contain either LaunchTemplate, LaunchConfigurationName, InstanceId or MixedInstancesPolicy parameter.",
            ));
        }
        if spec.vpc_zone_identifier.is_none() && spec.availability_zones.is_none() {
            return Err(ModelError::validation(
                "At least one Availability Zone or VPC Subnet is required.",
            ));
        }
        let uuid = crate::ids::uuid();
        let mut g = AutoScalingGroup {
            name: name.into(),
            arn: format!(
                "arn:aws:autoscaling:{}:{}:autoScalingGroup:{uuid}:autoScalingGroupName/{name}",
                self.region, self.account
            ),
            launch_template: LaunchTemplateRef {
                id: String::new(),
                name: String::new(),
                version: String::new(),
            },
            min_size: min,
            max_size: max,
            desired_capacity: spec.desired_capacity.unwrap_or(min),
            default_cooldown: 300,
            health_check_type: "EC2".into(),
            health_check_grace_period: 0,
            subnets: Vec::new(),
            availability_zones: Vec::new(),
            target_group_arns: Vec::new(),
            termination_policies: vec!["Default".into()],
            created_ms: now_ms,
            instances: BTreeMap::new(),
            status: None,
        };
        self.apply_spec(&mut g, spec)?;
        self.auto_scaling.groups.insert(name.into(), g.clone());
        Ok(g)
    }

    /// Removes a group with its policies and scheduled actions.
    fn forget_group(&mut self, name: &str) {
        self.auto_scaling.groups.remove(name);
        self.auto_scaling.policies.retain(|_, p| p.group != name);
        self.auto_scaling.scheduled.retain(|_, a| a.group != name);
    }

    /// `UpdateAutoScalingGroup`.
    pub fn update_auto_scaling_group(&mut self, name: &str, spec: &GroupSpec) -> Result<()> {
        let mut g = self.auto_scaling_group(name)?.clone();
        self.apply_spec(&mut g, spec)?;
        self.auto_scaling.groups.insert(name.into(), g);
        Ok(())
    }

    /// `SetDesiredCapacity`.
    pub fn set_desired_capacity(&mut self, name: &str, desired: u32) -> Result<()> {
        let g = self.group_mut(name)?;
        if desired < g.min_size {
            return Err(ModelError::validation(format!(
                "New SetDesiredCapacity value {desired} is below min value {} for the AutoScalingGroup.",
                g.min_size
            )));
        }
        if desired > g.max_size {
            return Err(ModelError::validation(format!(
                "New SetDesiredCapacity value {desired} is above max value {} for the AutoScalingGroup.",
                g.max_size
            )));
        }
        g.desired_capacity = desired;
        Ok(())
    }

    /// `DeleteAutoScalingGroup`: refused while instances remain unless `force`, which marks the
    /// group for deletion (its instances are stopped, then it goes).
    pub fn delete_auto_scaling_group(&mut self, name: &str, force: bool) -> Result<()> {
        let g = self.group_mut(name)?;
        if g.instances.is_empty() {
            self.forget_group(name);
            return Ok(());
        }
        if !force {
            return Err(ModelError::new(
                ErrorCode::ResourceInUse,
                "You cannot delete an AutoScalingGroup while there are instances or pending Spot instance request(s) still in the group.",
            ));
        }
        g.status = Some("Delete in progress".into());
        g.min_size = 0;
        g.max_size = 0;
        g.desired_capacity = 0;
        Ok(())
    }

    /// `TerminateInstanceInAutoScalingGroup`: marks the instance for termination; with
    /// `decrement` the desired capacity drops by one (not below the minimum).
    pub fn terminate_group_instance(
        &mut self,
        instance_id: &str,
        decrement: bool,
    ) -> Result<String> {
        let g = self
            .auto_scaling
            .groups
            .values_mut()
            .find(|g| g.instances.contains_key(instance_id))
            .ok_or_else(|| {
                ModelError::validation(format!("Instance Id not found - No managed instance found for instance ID: {instance_id}"))
            })?;
        if decrement {
            if g.desired_capacity <= g.min_size {
                return Err(ModelError::validation(format!(
                    "Currently, desiredSize equals minSize ({}). Terminating instance without replacement will violate group's min size constraint. Either set shouldDecrementDesiredCapacity flag to false or lower group's min size.",
                    g.min_size
                )));
            }
            g.desired_capacity -= 1;
        }
        if let Some(i) = g.instances.get_mut(instance_id) {
            i.healthy = false;
        }
        Ok(g.name.clone())
    }

    /// Records a scaling activity (the oldest are forgotten past [`MAX_ACTIVITIES`]).
    pub fn record_activity(&mut self, a: Activity) {
        self.auto_scaling.activities.push_back(a);
        while self.auto_scaling.activities.len() > MAX_ACTIVITIES {
            self.auto_scaling.activities.pop_front();
        }
    }

    /// Ends the activity `id` with `status`.
    pub fn finish_activity(
        &mut self,
        id: &str,
        status: &str,
        message: Option<String>,
        now_ms: u64,
    ) {
        if let Some(a) = self.auto_scaling.activities.iter_mut().rev().find(|a| a.id == id) {
            a.status_code = status.into();
            a.status_message = message;
            a.end_ms = Some(now_ms);
        }
    }

    /// Adds a launched instance to its group (and as an EC2 instance targets can name).
    pub fn add_group_instance(&mut self, group: &str, inst: GroupInstance) -> Result<()> {
        self.instances.insert(
            inst.id.clone(),
            crate::state::Instance {
                id: inst.id.clone(),
                address: inst.address,
                availability_zone: inst.availability_zone.clone(),
            },
        );
        self.group_mut(group)?.instances.insert(inst.id.clone(), inst);
        Ok(())
    }

    /// Removes a stopped instance; a group being force-deleted goes with its last instance.
    pub fn remove_group_instance(&mut self, group: &str, id: &str) -> Result<()> {
        self.instances.remove(id);
        let g = self.group_mut(group)?;
        g.instances.remove(id);
        if g.instances.is_empty() && g.status.is_some() {
            self.forget_group(group);
        }
        Ok(())
    }

    /// Changes an instance's lifecycle state and health.
    pub fn set_group_instance(
        &mut self,
        group: &str,
        id: &str,
        lifecycle: Lifecycle,
        healthy: bool,
        now_ms: u64,
    ) -> Result<()> {
        let g = self.group_mut(group)?;
        let i = g
            .instances
            .get_mut(id)
            .ok_or_else(|| ModelError::validation(format!("Instance Id not found - {id}")))?;
        if lifecycle == Lifecycle::Terminating && i.lifecycle != Lifecycle::Terminating {
            i.terminating_since_ms = Some(now_ms);
        }
        i.lifecycle = lifecycle;
        i.healthy = healthy;
        Ok(())
    }

    /// `AttachLoadBalancerTargetGroups` (registration of running instances follows).
    pub fn attach_target_groups(&mut self, name: &str, arns: &[String]) -> Result<()> {
        for a in arns {
            self.target_group(a)?;
        }
        let g = self.group_mut(name)?;
        for a in arns {
            if !g.target_group_arns.contains(a) {
                g.target_group_arns.push(a.clone());
            }
        }
        Ok(())
    }

    /// `DetachLoadBalancerTargetGroups` (the scaler deregisters the group's instances).
    pub fn detach_target_groups(&mut self, name: &str, arns: &[String]) -> Result<()> {
        let g = self.group_mut(name)?;
        g.target_group_arns.retain(|a| !arns.contains(a));
        Ok(())
    }
}

/// The parameters of `PutScalingPolicy`.
#[derive(Debug, Clone, Default)]
pub struct PolicySpec {
    /// `PolicyType` (default `SimpleScaling`).
    pub policy_type: Option<String>,
    /// `AdjustmentType`.
    pub adjustment_type: Option<String>,
    /// `ScalingAdjustment`.
    pub scaling_adjustment: Option<i64>,
    /// `Cooldown`.
    pub cooldown: Option<u32>,
    /// `MinAdjustmentMagnitude`.
    pub min_adjustment_magnitude: Option<i64>,
    /// `StepAdjustments`.
    pub step_adjustments: Vec<StepAdjustment>,
    /// `EstimatedInstanceWarmup`.
    pub estimated_instance_warmup: Option<u32>,
    /// `TargetTrackingConfiguration`.
    pub target_tracking: Option<TargetTracking>,
    /// `PredictiveScalingConfiguration`.
    pub predictive: Option<Predictive>,
    /// `Enabled` (default true).
    pub enabled: Option<bool>,
}

const ADJUSTMENT_TYPES: &[&str] = &["ChangeInCapacity", "ExactCapacity", "PercentChangeInCapacity"];

impl crate::State {
    /// `PutScalingPolicy`: creates or replaces the group's policy `name`; returns its ARN.
    pub fn put_scaling_policy(
        &mut self,
        group: &str,
        name: &str,
        spec: PolicySpec,
    ) -> Result<String> {
        self.auto_scaling_group(group)?;
        if name.is_empty() || name.len() > 255 {
            return Err(ModelError::validation("PolicyName must be 1-255 characters"));
        }
        let policy_type = spec.policy_type.unwrap_or_else(|| "SimpleScaling".into());
        if let Some(t) = &spec.adjustment_type {
            if !ADJUSTMENT_TYPES.contains(&t.as_str()) {
                return Err(ModelError::validation(format!("Invalid adjustment type {t}")));
            }
        }
        match policy_type.as_str() {
            "SimpleScaling" => {
                if spec.scaling_adjustment.is_none() || spec.adjustment_type.is_none() {
                    return Err(ModelError::validation(
                        "ScalingAdjustment and AdjustmentType are required for simple scaling policies",
                    ));
                }
            }
            "StepScaling" => {
                if spec.step_adjustments.is_empty() || spec.adjustment_type.is_none() {
                    return Err(ModelError::validation(
                        "StepAdjustments and AdjustmentType are required for step scaling policies",
                    ));
                }
                let mut steps = spec.step_adjustments.clone();
                steps.sort_by(|a, b| {
                    let k = |s: &StepAdjustment| s.lower.map_or(f64::NEG_INFINITY, |t| t.0);
                    k(a).total_cmp(&k(b))
                });
                for w in steps.windows(2) {
                    if w[0].upper.map(|t| t.0) != w[1].lower.map(|t| t.0) {
                        return Err(ModelError::validation(
                            "Step adjustments must not overlap or leave gaps between their bounds",
                        ));
                    }
                }
            }
            "TargetTrackingScaling" => {
                let Some(tt) = &spec.target_tracking else {
                    return Err(ModelError::validation(
                        "TargetTrackingConfiguration is required for target tracking policies",
                    ));
                };
                if !PREDEFINED_METRICS.contains(&tt.metric.as_str()) {
                    return Err(ModelError::validation(format!(
                        "Unsupported predefined metric type {}",
                        tt.metric
                    )));
                }
                if tt.metric == "ALBRequestCountPerTarget" {
                    self.tracked_target_group(group, tt.resource_label.as_deref())?;
                }
                if tt.target.0.is_nan() || tt.target.0 <= 0.0 {
                    return Err(ModelError::validation("TargetValue must be greater than 0"));
                }
            }
            "PredictiveScaling" => {
                let Some(p) = &spec.predictive else {
                    return Err(ModelError::validation(
                        "PredictiveScalingConfiguration is required for predictive scaling policies",
                    ));
                };
                if p.metric == "ALBRequestCount" {
                    self.tracked_target_group(group, p.resource_label.as_deref())?;
                }
                if p.target.0.is_nan() || p.target.0 <= 0.0 {
                    return Err(ModelError::validation("TargetValue must be greater than 0"));
                }
                if !matches!(p.mode.as_str(), "ForecastOnly" | "ForecastAndScale") {
                    return Err(ModelError::validation(format!(
                        "Invalid predictive scaling mode {}: ForecastOnly or ForecastAndScale",
                        p.mode
                    )));
                }
                if p.scheduling_buffer_secs > 3600 {
                    return Err(ModelError::validation(
                        "SchedulingBufferTime must be between 0 and 3600 seconds",
                    ));
                }
                if !matches!(
                    p.max_capacity_breach.as_str(),
                    "HonorMaxCapacity" | "IncreaseMaxCapacity"
                ) {
                    return Err(ModelError::validation(format!(
                        "Invalid MaxCapacityBreachBehavior {}",
                        p.max_capacity_breach
                    )));
                }
                if p.max_capacity_buffer.is_some_and(|b| b > 100) {
                    return Err(ModelError::validation(
                        "MaxCapacityBuffer must be between 0 and 100",
                    ));
                }
            }
            other => {
                return Err(ModelError::validation(format!("Invalid policy type {other}")));
            }
        }
        let arn = format!(
            "arn:aws:autoscaling:{}:{}:scalingPolicy:{}:autoScalingGroupName/{group}:policyName/{name}",
            self.region,
            self.account,
            crate::ids::uuid()
        );
        let arn = self
            .auto_scaling
            .policies
            .values()
            .find(|p| p.group == group && p.name == name)
            .map_or(arn, |p| p.arn.clone());
        self.auto_scaling.policies.insert(
            arn.clone(),
            ScalingPolicy {
                name: name.into(),
                arn: arn.clone(),
                group: group.into(),
                policy_type,
                adjustment_type: spec.adjustment_type,
                scaling_adjustment: spec.scaling_adjustment,
                cooldown: spec.cooldown,
                min_adjustment_magnitude: spec.min_adjustment_magnitude,
                step_adjustments: spec.step_adjustments,
                estimated_instance_warmup: spec.estimated_instance_warmup,
                target_tracking: spec.target_tracking,
                predictive: spec.predictive,
                enabled: spec.enabled.unwrap_or(true),
            },
        );
        Ok(arn)
    }

    /// The ARN of the target group of `group` that a policy's `ResourceLabel`
    /// (`app/LB/ID/targetgroup/TG/ID`) names.
    pub fn tracked_target_group(&self, group: &str, label: Option<&str>) -> Result<String> {
        let label = label.unwrap_or_default();
        let g = self.auto_scaling_group(group)?;
        g.target_group_arns
            .iter()
            .find(|arn| {
                !label.is_empty()
                    && self.target_groups.get(*arn).is_some_and(|tg| label.ends_with(&tg.full_name()))
            })
            .cloned()
            .ok_or_else(|| {
                ModelError::validation(format!(
                    "Invalid ResourceLabel '{label}': it must name a target group of the Auto Scaling group, as app/LB/ID/targetgroup/TG/ID"
                ))
            })
    }

    /// The policy `name_or_arn`: its ARN, or its name with its group.
    pub fn find_scaling_policy(
        &self,
        group: Option<&str>,
        name_or_arn: &str,
    ) -> Result<&ScalingPolicy> {
        self.auto_scaling
            .policies
            .values()
            .find(|p| {
                p.arn == name_or_arn || (Some(p.group.as_str()) == group && p.name == name_or_arn)
            })
            .ok_or_else(|| ModelError::validation(format!("Policy {name_or_arn} not found")))
    }

    /// `DeletePolicy` by name (with the group) or ARN.
    pub fn delete_scaling_policy(&mut self, group: Option<&str>, name_or_arn: &str) -> Result<()> {
        let key = self.find_scaling_policy(group, name_or_arn)?.arn.clone();
        self.auto_scaling.policies.remove(&key);
        Ok(())
    }

    /// `PutScheduledUpdateGroupAction`.
    pub fn put_scheduled_action(&mut self, mut a: ScheduledAction) -> Result<()> {
        self.auto_scaling_group(&a.group)?;
        if a.min_size.is_none() && a.max_size.is_none() && a.desired_capacity.is_none() {
            return Err(ModelError::validation(
                "At least one of MinSize, MaxSize or DesiredCapacity must be specified",
            ));
        }
        if let Some(z) = &a.time_zone {
            if crate::time::zone_offset(z, 0).is_none() {
                return Err(ModelError::validation(format!(
                    "Invalid time zone '{z}': expected an IANA time zone name such as America/New_York"
                )));
            }
        }
        match &a.recurrence {
            Some(r) => {
                crate::cron::Cron::parse(r).map_err(|e| {
                    ModelError::validation(format!("Given recurrence string '{r}' is invalid: {e}"))
                })?;
            }
            None if a.start_ms.is_none() => {
                return Err(ModelError::validation(
                    "Either StartTime or Recurrence must be specified",
                ))
            }
            None => {}
        }
        if let (Some(s), Some(e)) = (a.start_ms, a.end_ms) {
            if e <= s {
                return Err(ModelError::validation("EndTime must be after StartTime"));
            }
        }
        let key = format!("{}/{}", a.group, a.name);
        a.arn = self.auto_scaling.scheduled.get(&key).map_or_else(
            || {
                format!(
                    "arn:aws:autoscaling:{}:{}:scheduledUpdateGroupAction:{}:autoScalingGroupName/{}:scheduledActionName/{}",
                    self.region,
                    self.account,
                    crate::ids::uuid(),
                    a.group,
                    a.name
                )
            },
            |old| old.arn.clone(),
        );
        self.auto_scaling.scheduled.insert(key, a);
        Ok(())
    }

    /// `DeleteScheduledAction`.
    pub fn delete_scheduled_action(&mut self, group: &str, name: &str) -> Result<()> {
        self.auto_scaling.scheduled.remove(&format!("{group}/{name}")).map(|_| ()).ok_or_else(
            || ModelError::validation(format!("Scheduled action name not found - {name}")),
        )
    }

    /// Sets a group's size limits and desired capacity together (scheduled actions, scaling
    /// policies): the desired capacity is kept within the new limits.
    pub fn resize_group(
        &mut self,
        group: &str,
        min: Option<u32>,
        max: Option<u32>,
        desired: Option<u32>,
    ) -> Result<u32> {
        let g = self.group_mut(group)?;
        let min = min.unwrap_or(g.min_size);
        let max = max.unwrap_or(g.max_size).max(min);
        g.min_size = min;
        g.max_size = max;
        g.desired_capacity = desired.unwrap_or(g.desired_capacity).clamp(min, max);
        Ok(g.desired_capacity)
    }
}

/// `obj[key]` as a finite number.
pub fn get_f64(p: &Value, key: &str) -> Result<Option<f64>> {
    match get_str(p, key) {
        None => Ok(None),
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| ModelError::validation(format!("Invalid value '{v}' for {key}"))),
    }
}

fn get_i64(p: &Value, key: &str) -> Result<Option<i64>> {
    match get_str(p, key) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ModelError::validation(format!("Invalid value '{v}' for {key}"))),
    }
}

fn missing(name: &str) -> ModelError {
    ModelError::validation(format!(
        "1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null"
    ))
}

impl GroupSpec {
    /// From the AWS JSON shape shared by the Query API (nested parameters) and CloudFormation
    /// (`VPCZoneIdentifier` a comma-separated string or a list; `Cooldown` or `DefaultCooldown`).
    pub fn from_shape(p: &Value) -> Result<Self> {
        let lt = p.get("LaunchTemplate").map(|t| {
            (
                get_str(t, "LaunchTemplateId"),
                get_str(t, "LaunchTemplateName"),
                get_str(t, "Version"),
            )
        });
        let list = |k: &str| p.get(k).map(|_| get_strs(p, k));
        let subnets = match p.get("VPCZoneIdentifier") {
            Some(Value::Array(_)) => Some(get_strs(p, "VPCZoneIdentifier").join(",")),
            _ => get_str(p, "VPCZoneIdentifier"),
        };
        Ok(Self {
            launch_template: lt,
            min_size: get_u32(p, "MinSize")?,
            max_size: get_u32(p, "MaxSize")?,
            desired_capacity: get_u32(p, "DesiredCapacity")?,
            default_cooldown: get_u32(p, "DefaultCooldown")?.or(get_u32(p, "Cooldown")?),
            health_check_type: get_str(p, "HealthCheckType"),
            health_check_grace_period: get_u32(p, "HealthCheckGracePeriod")?,
            vpc_zone_identifier: subnets,
            availability_zones: list("AvailabilityZones"),
            target_group_arns: list("TargetGroupARNs"),
            termination_policies: list("TerminationPolicies"),
        })
    }
}

impl ScheduledAction {
    /// The action `name` of `group` from the AWS JSON shape shared by
    /// `PutScheduledUpdateGroupAction` and `AWS::AutoScaling::ScheduledAction`; `time` reads a
    /// timestamp field as ms since the epoch (the two accept different timestamp forms).
    pub fn from_shape(
        p: &Value,
        group: String,
        name: String,
        time: impl Fn(&str) -> Result<Option<u64>>,
    ) -> Result<Self> {
        Ok(Self {
            name,
            arn: String::new(),
            group,
            recurrence: get_str(p, "Recurrence"),
            start_ms: time("StartTime")?.or(time("Time")?),
            end_ms: time("EndTime")?,
            time_zone: get_str(p, "TimeZone"),
            min_size: get_u32(p, "MinSize")?,
            max_size: get_u32(p, "MaxSize")?,
            desired_capacity: get_u32(p, "DesiredCapacity")?,
            last_run_ms: None,
        })
    }
}

impl PolicySpec {
    /// From the AWS JSON shape shared by `PutScalingPolicy` and `AWS::AutoScaling::ScalingPolicy`.
    pub fn from_shape(p: &Value) -> Result<Self> {
        let steps = match p.get("StepAdjustments") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|s| {
                    Ok(StepAdjustment {
                        lower: get_f64(s, "MetricIntervalLowerBound")?.map(crate::alarm::Threshold),
                        upper: get_f64(s, "MetricIntervalUpperBound")?.map(crate::alarm::Threshold),
                        adjustment: get_i64(s, "ScalingAdjustment")?
                            .ok_or_else(|| missing("scalingAdjustment"))?,
                    })
                })
                .collect::<Result<Vec<_>>>()?,
            _ => Vec::new(),
        };
        let tt = match p.get("TargetTrackingConfiguration") {
            Some(c) => {
                let pre = c.get("PredefinedMetricSpecification").ok_or_else(|| {
                    ModelError::validation(
                        "Weir supports target tracking on predefined metrics (PredefinedMetricSpecification)",
                    )
                })?;
                Some(TargetTracking {
                    metric: get_str(pre, "PredefinedMetricType")
                        .ok_or_else(|| missing("predefinedMetricType"))?,
                    resource_label: get_str(pre, "ResourceLabel"),
                    target: crate::alarm::Threshold(
                        get_f64(c, "TargetValue")?.ok_or_else(|| missing("targetValue"))?,
                    ),
                    disable_scale_in: get_bool(c, "DisableScaleIn")?.unwrap_or(false),
                })
            }
            None => None,
        };
        Ok(Self {
            predictive: match p.get("PredictiveScalingConfiguration") {
                Some(c) => Some(Predictive::from_shape(c)?),
                None => None,
            },
            policy_type: get_str(p, "PolicyType"),
            adjustment_type: get_str(p, "AdjustmentType"),
            scaling_adjustment: get_i64(p, "ScalingAdjustment")?,
            cooldown: get_u32(p, "Cooldown")?,
            min_adjustment_magnitude: get_i64(p, "MinAdjustmentMagnitude")?,
            step_adjustments: steps,
            estimated_instance_warmup: get_u32(p, "EstimatedInstanceWarmup")?,
            target_tracking: tt,
            enabled: get_bool(p, "Enabled")?,
        })
    }
}

impl Predictive {
    /// From `PredictiveScalingConfiguration`: one metric specification, as a metric pair or as
    /// a predefined load metric with its matching scaling metric.
    pub fn from_shape(c: &Value) -> Result<Self> {
        let specs = match c.get("MetricSpecifications") {
            Some(Value::Array(items)) => items.as_slice(),
            _ => &[],
        };
        let [spec] = specs else {
            return Err(ModelError::validation(
                "MetricSpecifications must hold exactly one metric specification",
            ));
        };
        let (metric, label) = if let Some(pair) = spec.get("PredefinedMetricPairSpecification") {
            let t = get_str(pair, "PredefinedMetricType")
                .ok_or_else(|| missing("predefinedMetricType"))?;
            if !PREDICTIVE_METRICS.iter().any(|(p, _, _)| *p == t) {
                return Err(ModelError::validation(format!(
                    "Unsupported predefined metric pair {t}: Weir forecasts ALBRequestCount and ASGCPUUtilization"
                )));
            }
            (t, get_str(pair, "ResourceLabel"))
        } else if let Some(load) = spec.get("PredefinedLoadMetricSpecification") {
            let t = get_str(load, "PredefinedMetricType")
                .ok_or_else(|| missing("predefinedMetricType"))?;
            let Some((pair, _, scaling)) = PREDICTIVE_METRICS.iter().find(|(_, l, _)| *l == t)
            else {
                return Err(ModelError::validation(format!(
                    "Unsupported predefined load metric {t}: Weir forecasts ALBTargetGroupRequestCount and ASGTotalCPUUtilization"
                )));
            };
            let given = spec
                .get("PredefinedScalingMetricSpecification")
                .and_then(|s| get_str(s, "PredefinedMetricType"));
            if given.as_deref() != Some(*scaling) {
                return Err(ModelError::validation(format!(
                    "The load metric {t} needs the scaling metric {scaling} (PredefinedScalingMetricSpecification)"
                )));
            }
            ((*pair).to_string(), get_str(load, "ResourceLabel"))
        } else {
            return Err(ModelError::validation(
                "Weir supports predictive scaling on predefined metrics (PredefinedMetricPairSpecification or PredefinedLoadMetricSpecification)",
            ));
        };
        Ok(Self {
            metric,
            resource_label: label,
            target: crate::alarm::Threshold(
                get_f64(spec, "TargetValue")?.ok_or_else(|| missing("targetValue"))?,
            ),
            mode: get_str(c, "Mode").unwrap_or_else(|| "ForecastOnly".into()),
            scheduling_buffer_secs: get_u32(c, "SchedulingBufferTime")?.unwrap_or(300),
            max_capacity_breach: get_str(c, "MaxCapacityBreachBehavior")
                .unwrap_or_else(|| "HonorMaxCapacity".into()),
            max_capacity_buffer: get_u32(c, "MaxCapacityBuffer")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn predictive_configurations_reduce_to_a_metric_pair() {
        let pair = json!({"MetricSpecifications": [{"TargetValue": 50,
            "PredefinedMetricPairSpecification": {"PredefinedMetricType": "ASGCPUUtilization"}}]});
        let p = Predictive::from_shape(&pair).unwrap();
        assert_eq!((p.metric.as_str(), p.target.0), ("ASGCPUUtilization", 50.0));
        assert_eq!((p.mode.as_str(), p.scheduling_buffer_secs), ("ForecastOnly", 300));
        assert_eq!(p.max_capacity_breach, "HonorMaxCapacity");
        let separate = json!({"Mode": "ForecastAndScale", "SchedulingBufferTime": "600",
            "MetricSpecifications": [{"TargetValue": "1000",
                "PredefinedLoadMetricSpecification": {"PredefinedMetricType": "ALBTargetGroupRequestCount",
                    "ResourceLabel": "app/a/1/targetgroup/t/2"},
                "PredefinedScalingMetricSpecification": {"PredefinedMetricType": "ALBRequestCountPerTarget",
                    "ResourceLabel": "app/a/1/targetgroup/t/2"}}]});
        let p = Predictive::from_shape(&separate).unwrap();
        assert_eq!(p.metric, "ALBRequestCount");
        assert_eq!(p.resource_label.as_deref(), Some("app/a/1/targetgroup/t/2"));
        assert_eq!((p.mode.as_str(), p.scheduling_buffer_secs), ("ForecastAndScale", 600));
        for bad in [
            json!({}),
            json!({"MetricSpecifications": [{"TargetValue": 1}]}),
            json!({"MetricSpecifications": [{"TargetValue": 1,
                "PredefinedMetricPairSpecification": {"PredefinedMetricType": "ASGNetworkIn"}}]}),
            json!({"MetricSpecifications": [{"TargetValue": 1,
                "PredefinedLoadMetricSpecification": {"PredefinedMetricType": "ASGTotalCPUUtilization"},
                "PredefinedScalingMetricSpecification": {"PredefinedMetricType": "ALBRequestCountPerTarget"}}]}),
            json!({"MetricSpecifications": [
                {"TargetValue": 1, "PredefinedMetricPairSpecification": {"PredefinedMetricType": "ASGCPUUtilization"}},
                {"TargetValue": 2, "PredefinedMetricPairSpecification": {"PredefinedMetricType": "ASGCPUUtilization"}}]}),
        ] {
            assert!(Predictive::from_shape(&bad).is_err(), "{bad}");
        }
    }
}
