//! Scaling decisions, sans-I/O: the capacity a target-tracking policy asks for given the
//! group's measured load, what a simple or step policy's adjustment makes of the desired
//! capacity, and when a scheduled action is due.
//!
//! Target tracking: `desired = ceil(in_service × metric / target)`, within the group's limits.
//! For `ALBRequestCountPerTarget` the metric is requests per minute per in-service instance,
//! for `ASGAverageCPUUtilization` the instances' average CPU percent. Scale-out follows the
//! metric at once (then waits for the new instances to warm up); scale-in only after the metric
//! has asked for less for a while (the caller's scale-in delay) and never with
//! `DisableScaleIn`.

use weir_model::autoscaling::{AutoScalingGroup, Lifecycle, ScalingPolicy, ScheduledAction};
use weir_model::cron::Cron;

/// What is measured of a group's load.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GroupLoad {
    /// Requests per minute per in-service instance, through the tracked target group.
    pub requests_per_target: Option<f64>,
    /// Average CPU utilization of the instances, percent of one CPU.
    pub cpu_percent: Option<f64>,
}

fn in_service(g: &AutoScalingGroup) -> u32 {
    g.instances.values().filter(|i| i.lifecycle == Lifecycle::InService && i.healthy).count() as u32
}

/// The desired capacity target tracking asks for, if it can tell.
pub fn tracking_desired(p: &ScalingPolicy, g: &AutoScalingGroup, load: &GroupLoad) -> Option<u32> {
    let tt = p.target_tracking.as_ref()?;
    if !p.enabled {
        return None;
    }
    let n = f64::from(in_service(g).max(1));
    let desired = match tt.metric.as_str() {
        // Requests are shared by the instances: the capacity that brings each to the target.
        "ALBRequestCountPerTarget" => (load.requests_per_target? * n / tt.target.0).ceil(),
        "ASGAverageCPUUtilization" => (load.cpu_percent? * n / tt.target.0).ceil(),
        _ => return None,
    };
    let desired = if desired.is_finite() { desired.max(0.0) as u32 } else { g.max_size };
    Some(desired.clamp(g.min_size, g.max_size))
}

/// The desired capacity after a simple or step adjustment of `adjustment`.
pub fn adjusted(
    g: &AutoScalingGroup,
    adjustment_type: &str,
    adjustment: i64,
    min_magnitude: Option<i64>,
) -> u32 {
    let current = i64::from(g.desired_capacity);
    let new = match adjustment_type {
        "ExactCapacity" => adjustment,
        "PercentChangeInCapacity" => {
            let mut change = (current as f64 * adjustment as f64 / 100.0).trunc() as i64;
            if change == 0 && adjustment != 0 {
                change = adjustment.signum();
            }
            if let Some(m) = min_magnitude {
                if change.abs() < m {
                    change = m * change.signum();
                }
            }
            current + change
        }
        _ => current + adjustment,
    };
    new.clamp(i64::from(g.min_size), i64::from(g.max_size)) as u32
}

/// The step of a step-scaling policy for a metric `breach` above (or below) the alarm's
/// threshold: bounds are relative to the threshold, lower inclusive, upper exclusive.
pub fn step_for(p: &ScalingPolicy, breach: f64) -> Option<i64> {
    p.step_adjustments
        .iter()
        .find(|s| s.lower.is_none_or(|l| breach >= l.0) && s.upper.is_none_or(|u| breach < u.0))
        .map(|s| s.adjustment)
}

/// Whether scheduled action `a` runs in the minute holding `now_ms`: a recurring one when its
/// cron matches inside its start/end window, a one-time one once its start time has come; never
/// twice in one minute.
pub fn scheduled_due(a: &ScheduledAction, now_ms: u64) -> bool {
    let minute = now_ms - now_ms % 60_000;
    if a.last_run_ms.is_some_and(|l| l >= minute) {
        return false;
    }
    if a.end_ms.is_some_and(|e| now_ms > e) {
        return false;
    }
    match &a.recurrence {
        Some(r) => {
            // The cron fields are wall-clock time in the action's zone. When clocks go back, a
            // local minute comes twice: it runs the first time only.
            let local = |ms: u64| match &a.time_zone {
                Some(z) => weir_model::time::local_secs(z, ms / 1000).map(|s| s / 60),
                None => Some(ms / 60_000),
            };
            let Some(now_local) = local(now_ms) else { return false };
            if a.last_run_ms.is_some_and(|l| {
                now_ms.saturating_sub(l) < 3 * 3_600_000 && local(l) == Some(now_local)
            }) {
                return false;
            }
            a.start_ms.is_none_or(|s| now_ms >= s)
                && Cron::parse(r).is_ok_and(|c| c.matches(now_local * 60))
        }
        None => a.start_ms.is_some_and(|s| now_ms >= s) && a.last_run_ms.is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_model::alarm::Threshold;
    use weir_model::autoscaling::{GroupSpec, PolicySpec, StepAdjustment, TargetTracking};
    use weir_model::State;

    fn group(desired: u32) -> (State, AutoScalingGroup) {
        let mut s = State::default();
        let t = s.ec2.create_launch_template("tpl", serde_json::json!({}), 0).unwrap();
        let spec = GroupSpec {
            launch_template: Some((Some(t.id), None, None)),
            min_size: Some(1),
            max_size: Some(6),
            desired_capacity: Some(desired),
            availability_zones: Some(vec!["us-east-1a".into()]),
            ..Default::default()
        };
        let g = s.create_auto_scaling_group("g", &spec, 0).unwrap();
        (s, g)
    }

    #[test]
    fn target_tracking_holds_the_metric_at_the_target() {
        let (mut s, g) = group(2);
        let spec = PolicySpec {
            policy_type: Some("TargetTrackingScaling".into()),
            target_tracking: Some(TargetTracking {
                metric: "ASGAverageCPUUtilization".into(),
                resource_label: None,
                target: Threshold(50.0),
                disable_scale_in: false,
            }),
            ..Default::default()
        };
        let arn = s.put_scaling_policy("g", "cpu", spec).unwrap();
        let p = s.auto_scaling.policies[&arn].clone();
        // No instance in service counts as one: 90% on one → two.
        let load = |c: f64| GroupLoad { cpu_percent: Some(c), requests_per_target: None };
        assert_eq!(tracking_desired(&p, &g, &load(90.0)), Some(2));
        assert_eq!(tracking_desired(&p, &g, &load(400.0)), Some(6), "capped at max");
        assert_eq!(tracking_desired(&p, &g, &load(0.0)), Some(1), "floored at min");
        assert_eq!(tracking_desired(&p, &g, &GroupLoad::default()), None, "no data, no change");
    }

    #[test]
    fn adjustments_and_steps() {
        let (_, g) = group(4);
        assert_eq!(adjusted(&g, "ChangeInCapacity", 1, None), 5);
        assert_eq!(adjusted(&g, "ChangeInCapacity", -10, None), 1);
        assert_eq!(adjusted(&g, "ExactCapacity", 3, None), 3);
        assert_eq!(adjusted(&g, "PercentChangeInCapacity", 10, None), 5, "rounds away from 0");
        assert_eq!(adjusted(&g, "PercentChangeInCapacity", 50, Some(3)), 6);
        let p = ScalingPolicy {
            name: "s".into(),
            arn: "a".into(),
            group: "g".into(),
            policy_type: "StepScaling".into(),
            adjustment_type: Some("ChangeInCapacity".into()),
            scaling_adjustment: None,
            cooldown: None,
            min_adjustment_magnitude: None,
            step_adjustments: vec![
                StepAdjustment {
                    lower: Some(Threshold(0.0)),
                    upper: Some(Threshold(10.0)),
                    adjustment: 1,
                },
                StepAdjustment { lower: Some(Threshold(10.0)), upper: None, adjustment: 3 },
            ],
            estimated_instance_warmup: None,
            target_tracking: None,
            predictive: None,
            enabled: true,
        };
        assert_eq!(step_for(&p, 0.0), Some(1));
        assert_eq!(step_for(&p, 9.9), Some(1));
        assert_eq!(step_for(&p, 10.0), Some(3));
        assert_eq!(step_for(&p, -1.0), None);
    }

    #[test]
    fn scheduled_actions_run_once_per_matching_minute_inside_their_window() {
        // 2026-11-23 09:30:00 UTC.
        let t = 1_795_426_200_000;
        let mut a = ScheduledAction {
            name: "morning".into(),
            arn: String::new(),
            group: "g".into(),
            recurrence: Some("30 9 * * *".into()),
            start_ms: None,
            end_ms: None,
            time_zone: None,
            min_size: None,
            max_size: None,
            desired_capacity: Some(3),
            last_run_ms: None,
        };
        assert!(scheduled_due(&a, t + 5_000));
        assert!(!scheduled_due(&a, t + 60_000), "09:31 does not match");
        a.last_run_ms = Some(t);
        assert!(!scheduled_due(&a, t + 30_000), "once per minute");
        assert!(scheduled_due(&a, t + 86_400_000), "the next day");
        a.end_ms = Some(t + 1000);
        assert!(!scheduled_due(&a, t + 86_400_000), "past its end time");
        let once = ScheduledAction {
            recurrence: None,
            start_ms: Some(t),
            end_ms: None,
            last_run_ms: None,
            ..a
        };
        assert!(!scheduled_due(&once, t - 1));
        assert!(scheduled_due(&once, t + 90_000));
    }

    #[test]
    fn recurrences_are_read_in_their_time_zone_across_daylight_saving() {
        let at = |recurrence: &str, zone: &str, last: Option<u64>| ScheduledAction {
            name: "s".into(),
            arn: String::new(),
            group: "g".into(),
            recurrence: Some(recurrence.into()),
            start_ms: None,
            end_ms: None,
            time_zone: Some(zone.into()),
            min_size: None,
            max_size: None,
            desired_capacity: Some(1),
            last_run_ms: last,
        };
        // 2026-11-23 09:30 UTC is 10:30 in Paris (winter, UTC+1) and 04:30 in New York.
        let t = 1_795_426_200_000;
        assert!(scheduled_due(&at("30 10 * * MON", "Europe/Paris", None), t));
        assert!(!scheduled_due(&at("30 9 * * MON", "Europe/Paris", None), t));
        assert!(scheduled_due(&at("30 4 * * *", "America/New_York", None), t));
        // 2026-07-15 12:00 UTC is 14:00 in Paris (summer, UTC+2).
        assert!(scheduled_due(&at("0 14 15 JUL *", "Europe/Paris", None), 1_784_116_800_000));
        // Paris clocks went back at 01:00 UTC on 2026-10-25: 02:30 local came at 00:30 and
        // again at 01:30 UTC. The action runs the first time only.
        let first = 1_792_888_200_000;
        let second = first + 3_600_000;
        let a = at("30 2 * * *", "Europe/Paris", None);
        assert!(scheduled_due(&a, first) && scheduled_due(&a, second));
        assert!(!scheduled_due(&at("30 2 * * *", "Europe/Paris", Some(first)), second));
        assert!(!scheduled_due(&at("* * * * *", "Nowhere/Special", None), t), "unknown zone");
    }
}
