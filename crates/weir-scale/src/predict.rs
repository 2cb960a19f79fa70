//! Predictive scaling, sans-I/O: an hourly load forecast from the load metric's history, and the
//! capacity it takes to hold the scaling metric at the policy's target.
//!
//! The method is seasonal averaging over the last 14 days of hourly history (at least 24 hours
//! with data are needed, as on AWS). The load forecast for hour `h` is
//!
//! - the *daily* estimate: the same hour of each of the previous 14 days, weighted
//!   `0.8^(days back − 1)` so recent days count more; blended half and half with
//! - the *weekly* estimate, when there is one: the mean of the same hour one and two weeks back,
//!
//! falling back to the mean of all history when neither has data. Forecasts cover 48 hours
//! from the current hour. The capacity forecast for an hour is
//! `ceil(load per minute / target)` for `ALBRequestCount` (the load is requests per hour, the
//! target requests per instance per minute) and `ceil(total CPU / target)` for
//! `ASGCPUUtilization`, never below the group's minimum and, with `HonorMaxCapacity`, never above
//! its maximum.

use std::collections::BTreeMap;

use weir_model::autoscaling::{AutoScalingGroup, Predictive};

/// One hour, in seconds.
pub const HOUR: u64 = 3600;
/// How far ahead forecasts reach.
pub const HORIZON_HOURS: u64 = 48;
/// How far back history is read.
pub const HISTORY_DAYS: u64 = 14;
/// Hours of history needed before there is any forecast.
pub const MIN_HISTORY_HOURS: usize = 24;

/// The load forecast for each hour of `hours` starting at `from_hour` (a multiple of [`HOUR`]),
/// from `history` (hour start → load, hours before `from_hour`); empty with too little history.
pub fn forecast_load(history: &BTreeMap<u64, f64>, from_hour: u64, hours: u64) -> Vec<(u64, f64)> {
    let oldest = from_hour.saturating_sub(HISTORY_DAYS * 24 * HOUR);
    let past: BTreeMap<u64, f64> = history
        .range(oldest..from_hour)
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| (*k, *v))
        .collect();
    if past.len() < MIN_HISTORY_HOURS {
        return Vec::new();
    }
    let overall = past.values().sum::<f64>() / past.len() as f64;
    (0..hours)
        .map(|i| {
            let h = from_hour + i * HOUR;
            let back = |n: u64| h.checked_sub(n).and_then(|t| past.get(&t).copied());
            let (mut sum, mut weights) = (0.0, 0.0);
            let mut w = 1.0;
            for d in 1..=HISTORY_DAYS {
                if let Some(v) = back(d * 24 * HOUR) {
                    sum += w * v;
                    weights += w;
                }
                w *= 0.8;
            }
            let daily = (weights > 0.0).then(|| sum / weights);
            let weekly: Vec<f64> = (1..=2).filter_map(|k| back(k * 7 * 24 * HOUR)).collect();
            let weekly =
                (!weekly.is_empty()).then(|| weekly.iter().sum::<f64>() / weekly.len() as f64);
            let v = match (daily, weekly) {
                (Some(d), Some(w)) => (d + w) / 2.0,
                (Some(x), None) | (None, Some(x)) => x,
                (None, None) => overall,
            };
            (h, v.max(0.0))
        })
        .collect()
}

/// The instances it takes to carry `load` at `p`'s target, before the group's limits.
pub fn raw_capacity(p: &Predictive, load: f64) -> u32 {
    let per_instance = match p.metric.as_str() {
        "ALBRequestCount" => load / 60.0,
        _ => load,
    };
    // Less a hair, so that the rounding error of an average (599.999… or 600.000…1 for 600)
    // never costs an instance.
    let n = (per_instance / p.target.0 - 1e-9).ceil();
    if n.is_finite() && n > 0.0 {
        n.min(f64::from(u32::MAX)) as u32
    } else {
        0
    }
}

/// The capacity forecast for `load`: [`raw_capacity`] within the group's minimum and, unless
/// the policy may increase it, its maximum.
pub fn capacity(p: &Predictive, g: &AutoScalingGroup, load: f64) -> u32 {
    let raw = raw_capacity(p, load);
    let capped =
        if p.max_capacity_breach == "IncreaseMaxCapacity" { raw } else { raw.min(g.max_size) };
    capped.max(g.min_size)
}

/// The maximum size the group needs to hold `capacity`: its own, or with
/// `IncreaseMaxCapacity` the forecast plus `MaxCapacityBuffer` percent when that is more.
pub fn max_for(p: &Predictive, g: &AutoScalingGroup, capacity: u32) -> u32 {
    if p.max_capacity_breach != "IncreaseMaxCapacity" || capacity <= g.max_size {
        return g.max_size;
    }
    let buffer = f64::from(p.max_capacity_buffer.unwrap_or(0)) / 100.0;
    g.max_size.max((f64::from(capacity) * (1.0 + buffer)).ceil() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_model::alarm::Threshold;
    use weir_model::autoscaling::GroupSpec;
    use weir_model::State;

    /// 2026-11-23 00:00 UTC.
    const DAY0: u64 = 1_795_392_000;

    fn policy(metric: &str, target: f64, breach: &str) -> Predictive {
        Predictive {
            metric: metric.into(),
            resource_label: None,
            target: Threshold(target),
            mode: "ForecastOnly".into(),
            scheduling_buffer_secs: 300,
            max_capacity_breach: breach.into(),
            max_capacity_buffer: Some(10),
        }
    }

    fn group(min: u32, max: u32) -> AutoScalingGroup {
        let mut s = State::default();
        let t = s.ec2.create_launch_template("tpl", serde_json::json!({}), 0).unwrap();
        let spec = GroupSpec {
            launch_template: Some((Some(t.id), None, None)),
            min_size: Some(min),
            max_size: Some(max),
            availability_zones: Some(vec!["us-east-1a".into()]),
            ..Default::default()
        };
        s.create_auto_scaling_group("g", &spec, 0).unwrap();
        s.auto_scaling_group("g").unwrap().clone()
    }

    /// A daily pattern: 6000 requests an hour from 09:00 to 17:00, 600 otherwise.
    fn daily(h: u64) -> f64 {
        if (9..17).contains(&(h / HOUR % 24)) {
            6000.0
        } else {
            600.0
        }
    }

    #[test]
    fn a_daily_pattern_is_forecast_from_the_same_hours_of_previous_days() {
        let history: BTreeMap<u64, f64> =
            (0..72).map(|i| DAY0 - 3 * 24 * HOUR + i * HOUR).map(|h| (h, daily(h))).collect();
        let f = forecast_load(&history, DAY0, HORIZON_HOURS);
        assert_eq!(f.len(), 48);
        let near = |(h, v): (u64, f64), (eh, ev): (u64, f64)| h == eh && (v - ev).abs() < 1e-6;
        assert!(near(f[0], (DAY0, 600.0)), "{:?}", f[0]);
        assert!(near(f[10], (DAY0 + 10 * HOUR, 6000.0)), "{:?}", f[10]);
        assert!(near(f[34], (DAY0 + 34 * HOUR, 6000.0)), "the second day from older days");
        assert_eq!(raw_capacity(&policy("ALBRequestCount", 20.0, "x"), f[10].1), 5);
        let p = policy("ALBRequestCount", 20.0, "HonorMaxCapacity");
        let g = group(1, 4);
        // 6000 an hour is 100 a minute: five instances at 20, capped at the maximum of 4.
        assert_eq!(raw_capacity(&p, 6000.0), 5);
        assert_eq!(capacity(&p, &g, 6000.0), 4);
        assert_eq!(capacity(&p, &g, 600.0), 1);
        assert_eq!(capacity(&p, &g, 0.0), 1, "never below the minimum");
        assert_eq!(max_for(&p, &g, 4), 4);
        let p = policy("ALBRequestCount", 20.0, "IncreaseMaxCapacity");
        assert_eq!(capacity(&p, &g, 6000.0), 5);
        assert_eq!(max_for(&p, &g, 5), 6, "5 plus a 10% buffer, rounded up");
    }

    #[test]
    fn recent_days_and_the_same_weekday_weigh_in() {
        // Fourteen days of 100 an hour, then a day of 200: the next day's forecast leans on
        // the latest day (weight 1 of ~4.8) and on the same hour a week back (half).
        let mut history = BTreeMap::new();
        for i in 0..(15 * 24) {
            let h = DAY0 - 15 * 24 * HOUR + i * HOUR;
            history.insert(h, if i >= 14 * 24 { 200.0 } else { 100.0 });
        }
        let f = forecast_load(&history, DAY0, 1);
        let weights: f64 = (0..14).map(|d| 0.8f64.powi(d)).sum();
        let daily = (200.0 + (weights - 1.0) * 100.0) / weights;
        assert!((f[0].1 - (daily + 100.0) / 2.0).abs() < 1e-9, "{f:?}");
    }

    #[test]
    fn too_little_history_is_no_forecast() {
        let history: BTreeMap<u64, f64> = (1..=23).map(|i| (DAY0 - i * HOUR, 1000.0)).collect();
        assert!(forecast_load(&history, DAY0, HORIZON_HOURS).is_empty());
        // Only hours before the forecast count.
        let mut later = history.clone();
        later.insert(DAY0 + HOUR, 5.0);
        assert!(forecast_load(&later, DAY0, HORIZON_HOURS).is_empty());
    }

    #[test]
    fn cpu_capacity_is_total_cpu_over_the_target() {
        let p = policy("ASGCPUUtilization", 50.0, "HonorMaxCapacity");
        assert_eq!(capacity(&p, &group(0, 10), 240.0), 5);
        assert_eq!(capacity(&p, &group(0, 10), 0.0), 0);
    }
}
