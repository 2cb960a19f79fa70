//! CloudWatch metric alarms: the definition `PutMetricAlarm` stores (and `AWS::CloudWatch::Alarm`
//! will), validated with CloudWatch's rules. Evaluation lives in `weir-telemetry`.

use crate::error::{ErrorCode, ModelError, Result};

/// A threshold value; compared bit-for-bit so that alarms can live in the `Eq` state.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Threshold(pub f64);

impl PartialEq for Threshold {
    fn eq(&self, o: &Self) -> bool {
        self.0.to_bits() == o.0.to_bits()
    }
}
impl Eq for Threshold {}

/// The statistics an alarm may use.
pub const STATISTICS: &[&str] = &["SampleCount", "Average", "Sum", "Minimum", "Maximum"];
/// `ComparisonOperator` values for static thresholds.
pub const COMPARISONS: &[&str] = &[
    "GreaterThanOrEqualToThreshold",
    "GreaterThanThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
];
/// `TreatMissingData` values.
pub const TREAT_MISSING: &[&str] = &["breaching", "notBreaching", "ignore", "missing"];

/// A metric alarm on one metric.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MetricAlarm {
    /// Name (unique per region), 1–255 characters.
    pub name: String,
    /// `arn:aws:cloudwatch:REGION:ACCOUNT:alarm:NAME`.
    pub arn: String,
    /// Description.
    pub description: Option<String>,
    /// Metric namespace.
    pub namespace: String,
    /// Metric name.
    pub metric_name: String,
    /// Dimensions, sorted by name.
    pub dimensions: Vec<(String, String)>,
    /// Statistic.
    pub statistic: String,
    /// Period in seconds (10, 30 or a multiple of 60).
    pub period: u32,
    /// Number of periods evaluated.
    pub evaluation_periods: u32,
    /// Breaching periods (of those) that trigger ALARM.
    pub datapoints_to_alarm: u32,
    /// Threshold.
    pub threshold: Threshold,
    /// Comparison operator.
    pub comparison: String,
    /// How missing datapoints count.
    pub treat_missing_data: String,
    /// Whether actions run on state changes.
    pub actions_enabled: bool,
    /// ARNs notified on ALARM (Auto Scaling policy ARNs act on them).
    pub alarm_actions: Vec<String>,
    /// ARNs notified on OK.
    pub ok_actions: Vec<String>,
    /// ARNs notified on INSUFFICIENT_DATA.
    pub insufficient_data_actions: Vec<String>,
    /// Unit filter, if any.
    pub unit: Option<String>,
    /// When the configuration last changed, ms since the epoch.
    pub updated_ms: u64,
}

impl MetricAlarm {
    /// Checks CloudWatch's rules.
    pub fn validate(&self) -> Result<()> {
        let invalid = |m: String| ModelError::new(ErrorCode::InvalidParameterValue, m);
        if self.name.is_empty() || self.name.len() > 255 {
            return Err(invalid("AlarmName must be 1 to 255 characters long".into()));
        }
        if self.namespace.is_empty() || self.metric_name.is_empty() {
            return Err(ModelError::validation("An alarm needs a Namespace and a MetricName"));
        }
        if !STATISTICS.contains(&self.statistic.as_str()) {
            return Err(invalid(format!("The statistic '{}' is not valid", self.statistic)));
        }
        if !COMPARISONS.contains(&self.comparison.as_str()) {
            return Err(invalid(format!(
                "The comparison operator '{}' is not valid",
                self.comparison
            )));
        }
        if !TREAT_MISSING.contains(&self.treat_missing_data.as_str()) {
            return Err(invalid(format!(
                "TreatMissingData '{}' must be one of breaching, notBreaching, ignore, missing",
                self.treat_missing_data
            )));
        }
        if !(self.period == 10 || self.period == 30 || (self.period >= 60 && self.period % 60 == 0))
        {
            return Err(invalid("The parameter Period must be 10, 30 or a multiple of 60".into()));
        }
        if self.evaluation_periods == 0 {
            return Err(invalid("EvaluationPeriods must be at least 1".into()));
        }
        if self.datapoints_to_alarm == 0 || self.datapoints_to_alarm > self.evaluation_periods {
            return Err(invalid(
                "DatapointsToAlarm must be between 1 and EvaluationPeriods".into(),
            ));
        }
        if u64::from(self.period) * u64::from(self.evaluation_periods) > 7 * 86_400 {
            return Err(invalid(
                "Period multiplied by EvaluationPeriods cannot exceed 7 days".into(),
            ));
        }
        if !self.threshold.0.is_finite() {
            return Err(invalid("Threshold must be a finite number".into()));
        }
        Ok(())
    }
}
