//! Metric alarm evaluation, as CloudWatch does it: the last `evaluation_periods` complete
//! periods of the metric's statistic are compared with the threshold; ALARM when at least
//! `datapoints_to_alarm` of them breach ("M out of N"), with missing datapoints treated as the
//! alarm says. Pure: the caller passes the clock.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::{MetricId, Registry};

/// An alarm's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlarmState {
    /// `OK`.
    Ok,
    /// `ALARM`.
    Alarm,
    /// `INSUFFICIENT_DATA`.
    InsufficientData,
}

impl AlarmState {
    /// CloudWatch's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Alarm => "ALARM",
            Self::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
    /// Parses CloudWatch's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "OK" => Some(Self::Ok),
            "ALARM" => Some(Self::Alarm),
            "INSUFFICIENT_DATA" => Some(Self::InsufficientData),
            _ => None,
        }
    }
}

/// What an evaluation needs of an alarm.
#[derive(Debug, Clone)]
pub struct AlarmSpec<'a> {
    /// The metric.
    pub metric: &'a MetricId,
    /// Statistic name.
    pub statistic: &'a str,
    /// Period, seconds.
    pub period: u64,
    /// N.
    pub evaluation_periods: u32,
    /// M.
    pub datapoints_to_alarm: u32,
    /// Threshold.
    pub threshold: f64,
    /// `GreaterThanOrEqualToThreshold` and friends.
    pub comparison: &'a str,
    /// `breaching`, `notBreaching`, `ignore`, `missing`.
    pub treat_missing_data: &'a str,
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The new state; `None` keeps the current one (`ignore` with no data).
    pub state: Option<AlarmState>,
    /// Why, in CloudWatch's words.
    pub reason: String,
    /// The values of the evaluated periods, oldest first (`None`: missing).
    pub values: Vec<Option<f64>>,
}

fn breaches(comparison: &str, v: f64, t: f64) -> bool {
    match comparison {
        "GreaterThanOrEqualToThreshold" => v >= t,
        "GreaterThanThreshold" => v > t,
        "LessThanThreshold" => v < t,
        "LessThanOrEqualToThreshold" => v <= t,
        _ => false,
    }
}

/// Evaluates `spec` against `registry` at `now` (seconds since the epoch).
pub fn evaluate(registry: &Registry, spec: &AlarmSpec<'_>, now: u64) -> Evaluation {
    let period = spec.period.max(60);
    let n = u64::from(spec.evaluation_periods.max(1));
    let end = now - now % period; // the end of the last complete period
    let start = end.saturating_sub(n * period);
    let points = registry.statistics(spec.metric, start, end, period);
    let values: Vec<Option<f64>> = (0..n)
        .map(|i| {
            let t = start + i * period;
            points.iter().find(|(pt, _)| *pt == t).and_then(|(_, s)| s.get(spec.statistic))
        })
        .collect();
    let present: Vec<f64> = values.iter().flatten().copied().collect();
    let mut breaching =
        present.iter().filter(|v| breaches(spec.comparison, **v, spec.threshold)).count();
    let missing = values.len() - present.len();
    if spec.treat_missing_data == "breaching" {
        breaching += missing;
    }
    let m = spec.datapoints_to_alarm.max(1) as usize;
    let shown: Vec<String> =
        values.iter().rev().map(|v| v.map_or("missing".to_string(), |v| format!("{v}"))).collect();
    let state = if breaching >= m {
        Some(AlarmState::Alarm)
    } else if present.is_empty() {
        match spec.treat_missing_data {
            "notBreaching" => Some(AlarmState::Ok),
            "ignore" => None,
            _ => Some(AlarmState::InsufficientData),
        }
    } else {
        Some(AlarmState::Ok)
    };
    let reason = match state {
        Some(AlarmState::Alarm) => format!(
            "Threshold Crossed: {breaching} out of the last {n} datapoints [{}] were {} the threshold ({}) (minimum {m} datapoints for OK -> ALARM transition).",
            shown.join(", "),
            match spec.comparison {
                "GreaterThanOrEqualToThreshold" => "greater than or equal to",
                "GreaterThanThreshold" => "greater than",
                "LessThanThreshold" => "less than",
                _ => "less than or equal to",
            },
            spec.threshold
        ),
        Some(AlarmState::Ok) => format!(
            "Threshold Crossed: {breaching} out of the last {n} datapoints [{}] breached the threshold ({}), fewer than {m}.",
            shown.join(", "),
            spec.threshold
        ),
        _ => format!("Insufficient Data: {n} datapoints were unknown."),
    };
    Evaluation { state, reason, values }
}

/// Current alarm states with their reasons and times, by alarm name.
#[derive(Debug, Default)]
pub struct AlarmStates {
    states: RwLock<HashMap<String, (AlarmState, String, u64)>>,
}

impl AlarmStates {
    /// The state of `name` (`INSUFFICIENT_DATA` before its first evaluation), reason, time (s).
    pub fn get(&self, name: &str, created: u64) -> (AlarmState, String, u64) {
        self.states.read().ok().and_then(|s| s.get(name).cloned()).unwrap_or((
            AlarmState::InsufficientData,
            "Unchecked: Initial alarm creation".into(),
            created,
        ))
    }

    /// Sets the state of `name`; returns the previous state when it changed.
    pub fn set(
        &self,
        name: &str,
        state: AlarmState,
        reason: String,
        at: u64,
    ) -> Option<AlarmState> {
        let mut all = self.states.write().ok()?;
        let before = all.get(name).map_or(AlarmState::InsufficientData, |s| s.0);
        let changed = all.get(name).is_none_or(|s| s.0 != state);
        if changed {
            all.insert(name.to_string(), (state, reason, at));
            Some(before)
        } else {
            None
        }
    }

    /// Forgets alarms not in `names`.
    pub fn retain(&self, names: &[&str]) {
        if let Ok(mut all) = self.states.write() {
            all.retain(|k, _| names.contains(&k.as_str()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Kind, ALB};

    fn spec<'a>(id: &'a MetricId, treat: &'a str) -> AlarmSpec<'a> {
        AlarmSpec {
            metric: id,
            statistic: "Sum",
            period: 60,
            evaluation_periods: 3,
            datapoints_to_alarm: 2,
            threshold: 100.0,
            comparison: "GreaterThanThreshold",
            treat_missing_data: treat,
        }
    }

    #[test]
    fn m_out_of_n_with_missing_data_rules() {
        let r = Registry::default();
        let id = MetricId::new(ALB, "RequestCount", &[("LoadBalancer", "app/a/1")]);
        let t0 = 1_800_000_000; // minute-aligned
                                // No data at all.
        assert_eq!(
            evaluate(&r, &spec(&id, "missing"), t0).state,
            Some(AlarmState::InsufficientData)
        );
        assert_eq!(evaluate(&r, &spec(&id, "notBreaching"), t0).state, Some(AlarmState::Ok));
        assert_eq!(evaluate(&r, &spec(&id, "ignore"), t0).state, None);
        assert_eq!(evaluate(&r, &spec(&id, "breaching"), t0).state, Some(AlarmState::Alarm));
        // One breaching minute of three: OK; two: ALARM.
        r.sample(id.clone(), "Count", Kind::Counter, 150.0, t0 - 180);
        r.sample(id.clone(), "Count", Kind::Counter, 50.0, t0 - 120);
        let e = evaluate(&r, &spec(&id, "missing"), t0);
        assert_eq!(e.values, vec![Some(150.0), Some(50.0), None]);
        assert_eq!(e.state, Some(AlarmState::Ok));
        r.sample(id.clone(), "Count", Kind::Counter, 101.0, t0 - 60);
        let e = evaluate(&r, &spec(&id, "missing"), t0);
        assert_eq!(e.state, Some(AlarmState::Alarm), "{}", e.reason);
        assert!(
            e.reason.starts_with("Threshold Crossed: 2 out of the last 3 datapoints"),
            "{}",
            e.reason
        );
        // The current, incomplete minute is not evaluated.
        r.sample(id.clone(), "Count", Kind::Counter, 1000.0, t0 + 10);
        assert_eq!(evaluate(&r, &spec(&id, "missing"), t0 + 30).values.len(), 3);
        assert_eq!(evaluate(&r, &spec(&id, "missing"), t0 + 30).values[2], Some(101.0));
    }

    #[test]
    fn states_report_changes_only() {
        let s = AlarmStates::default();
        assert_eq!(s.get("a", 5).0, AlarmState::InsufficientData);
        assert_eq!(
            s.set("a", AlarmState::Alarm, "x".into(), 10),
            Some(AlarmState::InsufficientData)
        );
        assert_eq!(s.set("a", AlarmState::Alarm, "y".into(), 20), None);
        assert_eq!(s.get("a", 5), (AlarmState::Alarm, "x".into(), 10));
        s.retain(&[]);
        assert_eq!(s.get("a", 5).0, AlarmState::InsufficientData);
    }
}
