//! EC2 Auto Scaling on Weir: what each group should do next, decided from the desired state and
//! what is observed of its instances ([`plan`], sans-I/O), the [`LaunchProvider`] trait for
//! where instances run and its local-process implementation ([`local::LocalProcesses`]),
//! scaling policies ([`policy`]) and predictive forecasts ([`predict`]).
//!
//! One reconciliation: instances whose process exited (EC2 health) or whose targets are
//! unhealthy after the grace period (ELB health) are marked unhealthy and replaced; a `Pending`
//! instance whose port accepts connections is registered with the group's target groups and goes
//! `InService`; the group is brought to its desired capacity by launching into the zone with the
//! fewest instances or terminating by the termination policies; a `Terminating` instance is
//! stopped once its targets have drained (the longest deregistration delay of its groups).
#![forbid(unsafe_code)]

pub mod local;
pub mod policy;
pub mod predict;

use std::collections::BTreeMap;

use weir_model::autoscaling::{AutoScalingGroup, GroupInstance, Lifecycle};
use weir_model::State;

pub use local::{LaunchError, Launched};

/// A boxed future, as [`LaunchProvider`]'s asynchronous calls return.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Where instances run. Weir's default is [`local::LocalProcesses`] (processes on this
/// machine); a provider for containers, VMs or other hosts implements the same calls, and the
/// reconciliation loop uses nothing else.
pub trait LaunchProvider: Send + Sync + std::fmt::Debug {
    /// Starts instance `id` in `zone` running `script` (the launch template's user data,
    /// decoded); returns the address and port it serves on.
    fn launch(&self, id: &str, zone: &str, script: &str) -> Result<Launched, LaunchError>;
    /// What is observed of instance `id`.
    fn status<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ProcessStatus>;
    /// CPU seconds instance `id` has used so far (user + system), when the provider can tell;
    /// CPU target tracking and the `CPUUtilization` metric read it.
    fn cpu_seconds(&self, id: &str) -> Option<f64>;
    /// Stops instance `id`, gracefully first.
    fn stop<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()>;
    /// Stops every instance it started (at shutdown).
    fn stop_all(&self) -> BoxFuture<'_, ()>;
}

/// What is observed of an instance's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessStatus {
    /// Running; its port does not accept connections yet.
    Starting,
    /// Running and accepting connections.
    Ready,
    /// Exited, or unknown to the provider (e.g. after a restart of Weir).
    Gone,
}

/// What the planner is told besides the state.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    /// Process status by instance id.
    pub processes: BTreeMap<String, ProcessStatus>,
    /// Instances some target group reports unhealthy (ELB health).
    pub unhealthy_targets: Vec<String>,
}

/// One step of reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Launch an instance of `group` in `zone`.
    Launch {
        /// Group name.
        group: String,
        /// Zone.
        zone: String,
        /// Why (the activity's cause).
        cause: String,
    },
    /// Register a ready `Pending` instance with the group's target groups; it goes `InService`.
    Activate {
        /// Group name.
        group: String,
        /// Instance id.
        id: String,
    },
    /// Mark an instance unhealthy (it is terminated and replaced next).
    MarkUnhealthy {
        /// Group name.
        group: String,
        /// Instance id.
        id: String,
        /// Why.
        reason: String,
    },
    /// Deregister an instance from its target groups and start terminating it.
    Terminate {
        /// Group name.
        group: String,
        /// Instance id.
        id: String,
        /// Why.
        cause: String,
    },
    /// Stop a drained `Terminating` instance's process and forget it.
    Stop {
        /// Group name.
        group: String,
        /// Instance id.
        id: String,
    },
}

/// The longest deregistration delay of the group's target groups, in ms.
fn drain_ms(state: &State, g: &AutoScalingGroup) -> u64 {
    g.target_group_arns
        .iter()
        .filter_map(|a| state.target_groups.get(a))
        .map(|tg| tg.attributes.get_i64("deregistration_delay.timeout_seconds").max(0) as u64)
        .max()
        .unwrap_or(0)
        * 1000
}

/// Ranks `active` instances for scale-in, first to go first: the zone with the most instances, then
/// (by policy) an instance of an older launch template, the oldest or newest, or — `Default` —
/// the one closest to its next instance hour.
fn scale_in_order<'a>(
    g: &'a AutoScalingGroup,
    active: &[&'a GroupInstance],
) -> Vec<&'a GroupInstance> {
    let per_zone = |z: &str| active.iter().filter(|i| i.availability_zone == z).count();
    let mut v: Vec<&GroupInstance> = active.to_vec();
    let policy = g.termination_policies.first().map_or("Default", String::as_str);
    v.sort_by(|a, b| {
        let za = per_zone(&a.availability_zone);
        let zb = per_zone(&b.availability_zone);
        zb.cmp(&za)
            .then_with(|| {
                let old = |i: &GroupInstance| i.launch_template != g.launch_template;
                old(b).cmp(&old(a))
            })
            .then_with(|| match policy {
                "OldestInstance" => a.launched_ms.cmp(&b.launched_ms),
                "NewestInstance" => b.launched_ms.cmp(&a.launched_ms),
                _ => {
                    let hour = |i: &GroupInstance| i.launched_ms % 3_600_000;
                    hour(a).cmp(&hour(b))
                }
            })
            .then_with(|| a.id.cmp(&b.id))
    });
    v
}

/// The steps that bring every group closer to what it should be, at `now_ms`.
pub fn plan(state: &State, seen: &Observed, now_ms: u64) -> Vec<Step> {
    let mut steps = Vec::new();
    for g in state.auto_scaling.groups.values() {
        let mut unhealthy: Vec<&str> = Vec::new();
        for i in g.instances.values() {
            let status = seen.processes.get(&i.id).copied().unwrap_or(ProcessStatus::Gone);
            match i.lifecycle {
                Lifecycle::Terminating => {
                    let since = i.terminating_since_ms.unwrap_or(now_ms);
                    let drained = status == ProcessStatus::Gone
                        || now_ms.saturating_sub(since) >= drain_ms(state, g);
                    if drained {
                        steps.push(Step::Stop { group: g.name.clone(), id: i.id.clone() });
                    }
                    continue;
                }
                _ if !i.healthy => unhealthy.push(&i.id),
                _ if status == ProcessStatus::Gone => {
                    steps.push(Step::MarkUnhealthy {
                        group: g.name.clone(),
                        id: i.id.clone(),
                        reason: "an EC2 health check indicates it has been terminated or stopped"
                            .into(),
                    });
                    unhealthy.push(&i.id);
                }
                Lifecycle::Pending if status == ProcessStatus::Ready => {
                    steps.push(Step::Activate { group: g.name.clone(), id: i.id.clone() });
                }
                Lifecycle::InService
                    if g.health_check_type == "ELB"
                        && now_ms.saturating_sub(i.launched_ms)
                            >= u64::from(g.health_check_grace_period) * 1000
                        && seen.unhealthy_targets.contains(&i.id) =>
                {
                    steps.push(Step::MarkUnhealthy {
                        group: g.name.clone(),
                        id: i.id.clone(),
                        reason: "an ELB health check failure".into(),
                    });
                    unhealthy.push(&i.id);
                }
                _ => {}
            }
        }
        for id in &unhealthy {
            steps.push(Step::Terminate {
                group: g.name.clone(),
                id: (*id).to_string(),
                cause: format!(
                    "an instance was taken out of service in response to a health check: {id} was unhealthy"
                ),
            });
        }
        let active: Vec<&GroupInstance> = g
            .instances
            .values()
            .filter(|i| {
                i.lifecycle != Lifecycle::Terminating && !unhealthy.contains(&i.id.as_str())
            })
            .collect();
        let want = g.desired_capacity as usize;
        if active.len() < want && !g.availability_zones.is_empty() {
            let mut counts: Vec<(String, usize)> = g
                .availability_zones
                .iter()
                .map(|z| (z.clone(), active.iter().filter(|i| &i.availability_zone == z).count()))
                .collect();
            for _ in active.len()..want {
                let Some(slot) = counts.iter_mut().min_by_key(|(_, n)| *n) else { break };
                slot.1 += 1;
                steps.push(Step::Launch {
                    group: g.name.clone(),
                    zone: slot.0.clone(),
                    cause: format!(
                        "an instance was started in response to a difference between desired and actual capacity, increasing the capacity from {} to {want}",
                        active.len()
                    ),
                });
            }
        } else if active.len() > want {
            // One at a time: each choice changes which zone is the biggest.
            let mut left = active.clone();
            let mut victims = Vec::new();
            while left.len() > want {
                let Some(v) = scale_in_order(g, &left).first().copied() else { break };
                left.retain(|i| i.id != v.id);
                victims.push(v);
            }
            for i in victims {
                steps.push(Step::Terminate {
                    group: g.name.clone(),
                    id: i.id.clone(),
                    cause: format!(
                        "an instance was taken out of service in response to a difference between desired and actual capacity, shrinking the capacity from {} to {want}",
                        active.len()
                    ),
                });
            }
        }
    }
    steps
}

#[cfg(test)]
mod tests;
