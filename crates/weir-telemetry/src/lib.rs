//! Metrics with CloudWatch names and dimensions, kept as 1-minute aggregates.
//!
//! A [`Registry`] holds one [`Series`] per [`MetricId`] (namespace, metric name, dimensions).
//! Samples are folded into per-minute [`Stat`]s (sum, sample count, minimum, maximum) that are
//! kept for the retention period (15 days by default: 21 600 minutes, a few hundred KiB per
//! series at most). [`Registry::statistics`] aggregates them into periods as
//! `GetMetricStatistics` does; [`Registry::prometheus`] renders the current values in the
//! Prometheus text format, metric names as CloudWatch names, dimensions as labels.
//! Pure data: no clocks or I/O except [`Registry::save`] / [`Registry::load`]. The log files
//! load balancers write (ALB access logs, NLB TLS connection logs) are [`log_files`].
#![forbid(unsafe_code)]

pub mod alarm;
pub mod log_files;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::RwLock;

/// Namespace of ALB metrics.
pub const ALB: &str = "AWS/ApplicationELB";
/// Namespace of NLB metrics.
pub const NLB: &str = "AWS/NetworkELB";
/// Namespace of GWLB metrics.
pub const GWLB: &str = "AWS/GatewayELB";
/// Default retention: 15 days of 1-minute points.
pub const RETENTION_MINUTES: usize = 15 * 24 * 60;

/// A metric's identity. Dimensions are kept sorted by name.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct MetricId {
    /// e.g. `AWS/ApplicationELB`.
    pub namespace: String,
    /// e.g. `RequestCount`.
    pub name: String,
    /// (name, value) pairs, sorted by name.
    pub dimensions: Vec<(String, String)>,
}

impl MetricId {
    /// An id with `dims` sorted.
    pub fn new(namespace: &str, name: &str, dims: &[(&str, &str)]) -> Self {
        let mut dimensions: Vec<(String, String)> =
            dims.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        dimensions.sort();
        Self { namespace: namespace.into(), name: name.into(), dimensions }
    }

    /// Whether this id has exactly the dimensions `dims` (in any order).
    pub fn has_dimensions(&self, dims: &[(String, String)]) -> bool {
        let mut d = dims.to_vec();
        d.sort();
        d == self.dimensions
    }
}

/// How a series behaves in Prometheus: counters accumulate, gauges report the last sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// Samples are increments (`RequestCount`).
    Counter,
    /// Samples are levels (`HealthyHostCount`).
    Gauge,
}

/// One aggregate of samples.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stat {
    /// Sum of the samples.
    pub sum: f64,
    /// Number of samples.
    pub count: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

impl Stat {
    /// A single sample.
    pub fn one(v: f64) -> Self {
        Self { sum: v, count: 1.0, min: v, max: v }
    }

    /// Folds `o` into this aggregate.
    pub fn merge(&mut self, o: &Stat) {
        self.sum += o.sum;
        self.count += o.count;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    /// The value of a CloudWatch statistic (`Sum`, `SampleCount`, `Average`, `Minimum`,
    /// `Maximum`); `None` for other names.
    pub fn get(&self, statistic: &str) -> Option<f64> {
        match statistic {
            "Sum" => Some(self.sum),
            "SampleCount" => Some(self.count),
            "Average" => Some(if self.count > 0.0 { self.sum / self.count } else { 0.0 }),
            "Minimum" => Some(self.min),
            "Maximum" => Some(self.max),
            _ => None,
        }
    }
}

/// One metric's history.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Series {
    /// CloudWatch unit (`Count`, `Seconds`, `Bytes`).
    pub unit: String,
    /// Counter or gauge.
    pub kind: Kind,
    /// (minute start in seconds since the epoch, aggregate), oldest first.
    pub points: VecDeque<(u64, Stat)>,
    /// Counters: the total since start; gauges: the last sample.
    pub current: f64,
}

/// Why a saved registry could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// File system.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Not a saved registry.
    #[error("{0}")]
    Format(#[from] serde_json::Error),
}

/// All series of one Weir process.
#[derive(Debug)]
pub struct Registry {
    series: RwLock<HashMap<MetricId, Series>>,
    retention_minutes: usize,
    /// The states of metric alarms evaluated over this registry.
    pub alarm_states: alarm::AlarmStates,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new(RETENTION_MINUTES)
    }
}

fn minute(secs: u64) -> u64 {
    secs - secs % 60
}

impl Registry {
    /// An empty registry keeping `retention_minutes` of history per series.
    pub fn new(retention_minutes: usize) -> Self {
        Self {
            series: RwLock::default(),
            retention_minutes: retention_minutes.max(1),
            alarm_states: alarm::AlarmStates::default(),
        }
    }

    /// Adds the aggregate `s` to `id` in the minute containing `at` (seconds since the epoch).
    pub fn record(&self, id: MetricId, unit: &str, kind: Kind, s: Stat, at: u64) {
        let Ok(mut all) = self.series.write() else {
            return;
        };
        let series = all.entry(id).or_insert_with(|| Series {
            unit: unit.to_string(),
            kind,
            points: VecDeque::new(),
            current: 0.0,
        });
        match kind {
            Kind::Counter => series.current += s.sum,
            Kind::Gauge => series.current = if s.count > 0.0 { s.sum / s.count } else { 0.0 },
        }
        let m = minute(at);
        match series.points.iter_mut().rev().find(|(t, _)| *t == m) {
            Some((_, p)) => p.merge(&s),
            None => {
                // Points arrive in time order in practice; keep the deque sorted regardless.
                let pos =
                    series.points.iter().position(|(t, _)| *t > m).unwrap_or(series.points.len());
                series.points.insert(pos, (m, s));
            }
        }
        while series.points.len() > self.retention_minutes {
            series.points.pop_front();
        }
    }

    /// Adds one sample.
    pub fn sample(&self, id: MetricId, unit: &str, kind: Kind, value: f64, at: u64) {
        self.record(id, unit, kind, Stat::one(value), at);
    }

    /// The aggregates of `id` over the minutes from `start` (rounded down to its minute) up to
    /// `end` (exclusive), in periods of `period` seconds (a multiple of 60) aligned to the epoch as
    /// CloudWatch aligns them, one per period that has data, oldest first, with each period's
    /// start time.
    pub fn statistics(&self, id: &MetricId, start: u64, end: u64, period: u64) -> Vec<(u64, Stat)> {
        let period = period.max(60);
        let Ok(all) = self.series.read() else {
            return Vec::new();
        };
        let Some(series) = all.get(id) else {
            return Vec::new();
        };
        let mut out: BTreeMap<u64, Stat> = BTreeMap::new();
        let first = minute(start);
        for (t, s) in &series.points {
            if *t < first || *t >= end {
                continue;
            }
            let bucket = *t - *t % period;
            out.entry(bucket).and_modify(|b| b.merge(s)).or_insert(*s);
        }
        out.into_iter().collect()
    }

    /// The unit of a series.
    pub fn unit(&self, id: &MetricId) -> Option<String> {
        self.series.read().ok()?.get(id).map(|s| s.unit.clone())
    }

    /// Series matching a namespace, a name and dimension filters (a `None` value matches any
    /// value of that dimension), sorted.
    pub fn list(
        &self,
        namespace: Option<&str>,
        name: Option<&str>,
        dims: &[(String, Option<String>)],
    ) -> Vec<MetricId> {
        let Ok(all) = self.series.read() else {
            return Vec::new();
        };
        let mut v: Vec<MetricId> = all
            .keys()
            .filter(|id| namespace.is_none_or(|n| id.namespace == n))
            .filter(|id| name.is_none_or(|n| id.name == n))
            .filter(|id| {
                dims.iter().all(|(k, v)| {
                    id.dimensions
                        .iter()
                        .any(|(ik, iv)| ik == k && v.as_ref().is_none_or(|v| v == iv))
                })
            })
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Every series in the Prometheus text exposition format: `NAME{Dim="v",...} value`, with
    /// `# TYPE` lines; the namespace is a `namespace` label.
    pub fn prometheus(&self) -> String {
        let Ok(all) = self.series.read() else {
            return String::new();
        };
        let mut by_name: BTreeMap<&str, Vec<(&MetricId, &Series)>> = BTreeMap::new();
        for (id, s) in all.iter() {
            by_name.entry(id.name.as_str()).or_default().push((id, s));
        }
        let mut out = String::new();
        for (name, mut list) in by_name {
            list.sort_by(|a, b| a.0.cmp(b.0));
            let kind = if list[0].1.kind == Kind::Counter { "counter" } else { "gauge" };
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            for (id, s) in list {
                let mut labels = vec![format!("namespace=\"{}\"", escape(&id.namespace))];
                labels.extend(id.dimensions.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))));
                out.push_str(&format!("{name}{{{}}} {}\n", labels.join(","), s.current));
            }
        }
        out
    }

    /// Writes every series to `path` (JSON), atomically (write then rename).
    pub fn save(&self, path: &std::path::Path) -> Result<(), PersistError> {
        let snapshot: Vec<(MetricId, Series)> = match self.series.read() {
            Ok(all) => all.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Err(_) => return Ok(()),
        };
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(&snapshot)?)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// Loads series saved by [`Self::save`], replacing what is held; a missing file is empty.
    pub fn load(&self, path: &std::path::Path) -> Result<(), PersistError> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let list: Vec<(MetricId, Series)> = serde_json::from_slice(&data)?;
        if let Ok(mut all) = self.series.write() {
            *all = list.into_iter().collect();
        }
        Ok(())
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests;
