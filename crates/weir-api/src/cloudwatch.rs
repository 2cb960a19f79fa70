//! The CloudWatch API (2010-08-01) over the metrics registry: `ListMetrics`,
//! `GetMetricStatistics`, `GetMetricData`, and metric alarms (`PutMetricAlarm`,
//! `DescribeAlarms`, `DeleteAlarms`, `SetAlarmState`) evaluated by [`Api::evaluate_alarms`].
//!
//! Three wire protocols reach the same handlers, as CloudWatch accepts them all: the Query
//! protocol (`Version=2010-08-01`, XML responses), AWS JSON 1.0 (`X-Amz-Target:
//! GraniteServiceVersion20100801.OP`, what current AWS CLIs send) and Smithy RPC v2 CBOR
//! (`POST /service/GraniteServiceVersion20100801/operation/OP`, newer SDKs). Inputs become the
//! JSON shape either way (timestamps as ISO 8601 strings or epoch seconds); outputs are [`Val`]
//! trees rendered as XML, JSON or CBOR.

use weir_model::alarm::MetricAlarm;
use weir_model::shape::{get_str, get_strs};
use weir_telemetry::alarm::{AlarmSpec, AlarmState};
use weir_telemetry::{MetricId, Registry};

use crate::{Api, ApiError};

fn strs(v: &[String]) -> Val {
    Val::List(v.iter().map(|s| Val::Str(s.clone())).collect())
}

fn alarm_val(a: &MetricAlarm, state: AlarmState, reason: String, at: u64) -> Val {
    let mut m =
        vec![("AlarmName", Val::Str(a.name.clone())), ("AlarmArn", Val::Str(a.arn.clone()))];
    if let Some(d) = &a.description {
        m.push(("AlarmDescription", Val::Str(d.clone())));
    }
    m.extend([
        ("AlarmConfigurationUpdatedTimestamp", Val::Ts(a.updated_ms / 1000)),
        ("ActionsEnabled", Val::Bool(a.actions_enabled)),
        ("OKActions", strs(&a.ok_actions)),
        ("AlarmActions", strs(&a.alarm_actions)),
        ("InsufficientDataActions", strs(&a.insufficient_data_actions)),
        ("StateValue", Val::Str(state.as_str().into())),
        ("StateReason", Val::Str(reason)),
        ("StateUpdatedTimestamp", Val::Ts(at)),
        ("MetricName", Val::Str(a.metric_name.clone())),
        ("Namespace", Val::Str(a.namespace.clone())),
        ("Statistic", Val::Str(a.statistic.clone())),
        (
            "Dimensions",
            Val::List(
                a.dimensions
                    .iter()
                    .map(|(k, v)| {
                        Val::Map(vec![
                            ("Name", Val::Str(k.clone())),
                            ("Value", Val::Str(v.clone())),
                        ])
                    })
                    .collect(),
            ),
        ),
        ("Period", Val::Int(i64::from(a.period))),
        ("EvaluationPeriods", Val::Int(i64::from(a.evaluation_periods))),
        ("DatapointsToAlarm", Val::Int(i64::from(a.datapoints_to_alarm))),
        ("Threshold", Val::Num(a.threshold.0)),
        ("ComparisonOperator", Val::Str(a.comparison.clone())),
        ("TreatMissingData", Val::Str(a.treat_missing_data.clone())),
    ]);
    if let Some(u) = &a.unit {
        m.push(("Unit", Val::Str(u.clone())));
    }
    Val::Map(m)
}

impl Api {
    /// Evaluates every metric alarm at `now` (seconds since the epoch), recording state
    /// changes; returns the alarms that changed state, with their new state.
    pub async fn evaluate_alarms(&self, now: u64) -> Vec<(MetricAlarm, AlarmState)> {
        let alarms: Vec<MetricAlarm> =
            self.store.lock().await.state().alarms.values().cloned().collect();
        let names: Vec<&str> = alarms.iter().map(|a| a.name.as_str()).collect();
        self.metrics.alarm_states.retain(&names);
        let mut changed = Vec::new();
        for a in &alarms {
            let id = MetricId {
                namespace: a.namespace.clone(),
                name: a.metric_name.clone(),
                dimensions: a.dimensions.clone(),
            };
            let spec = AlarmSpec {
                metric: &id,
                statistic: &a.statistic,
                period: u64::from(a.period),
                evaluation_periods: a.evaluation_periods,
                datapoints_to_alarm: a.datapoints_to_alarm,
                threshold: a.threshold.0,
                comparison: &a.comparison,
                treat_missing_data: &a.treat_missing_data,
            };
            let e = weir_telemetry::alarm::evaluate(&self.metrics, &spec, now);
            if let Some(state) = e.state {
                if let Some(before) = self.metrics.alarm_states.set(&a.name, state, e.reason, now) {
                    tracing::info!(alarm = %a.name, from = before.as_str(), to = state.as_str(), "alarm state changed");
                    changed.push((a.clone(), state));
                }
            }
        }
        changed
    }
}

/// The XML namespace of CloudWatch responses.
pub(crate) const NS: &str = "http://monitoring.amazonaws.com/doc/2010-08-01/";
/// The Smithy service name in RPC v2 CBOR paths.
pub(crate) const RPC_SERVICE: &str = "GraniteServiceVersion20100801";

/// A response value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Str(String),
    Num(f64),
    Int(i64),
    Bool(bool),
    /// Seconds since the epoch.
    Ts(u64),
    List(Vec<Val>),
    Map(Vec<(&'static str, Val)>),
}

fn err(code: &str, message: impl Into<String>) -> ApiError {
    ApiError { status: 400, kind: "Sender", code: code.into(), message: message.into() }
}

fn missing(name: &str) -> ApiError {
    err("MissingParameter", format!("The parameter {name} must be specified."))
}

/// Parses a timestamp: epoch seconds (number or digits) or ISO 8601
/// (`YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`).
pub(crate) fn parse_time(v: &serde_json::Value) -> Option<u64> {
    if let Some(n) = v.as_f64() {
        return (n >= 0.0).then_some(n as u64);
    }
    let s = v.as_str()?.trim();
    if let Ok(n) = s.parse::<f64>() {
        return (n >= 0.0).then_some(n as u64);
    }
    weir_model::time::parse_iso8601(s)
}

pub(crate) use weir_model::time::iso8601;

fn dimensions(v: Option<&serde_json::Value>) -> Vec<(String, String)> {
    v.and_then(|d| d.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|d| {
                    Some((get_str(d, "Name")?, get_str(d, "Value").unwrap_or_default()))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn metric_id(p: &serde_json::Value) -> Result<MetricId, ApiError> {
    let namespace = get_str(p, "Namespace").ok_or_else(|| missing("Namespace"))?;
    let name = get_str(p, "MetricName").ok_or_else(|| missing("MetricName"))?;
    let mut dims = dimensions(p.get("Dimensions"));
    dims.sort();
    Ok(MetricId { namespace, name, dimensions: dims })
}

fn period(p: &serde_json::Value) -> Result<u64, ApiError> {
    let v = p.get("Period").ok_or_else(|| missing("Period"))?;
    let n = v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
    match n {
        Some(n) if n >= 60 && n % 60 == 0 => Ok(n),
        Some(n) if [1, 5, 10, 30].contains(&n) => Ok(60),
        _ => Err(err("InvalidParameterValue", "The parameter Period must be a multiple of 60.")),
    }
}

fn window(p: &serde_json::Value) -> Result<(u64, u64), ApiError> {
    let t = |k: &str| -> Result<u64, ApiError> {
        let v = p.get(k).ok_or_else(|| missing(k))?;
        parse_time(v).ok_or_else(|| {
            err("InvalidParameterValue", format!("The parameter {k} must be a valid timestamp."))
        })
    };
    let (start, end) = (t("StartTime")?, t("EndTime")?);
    if end <= start {
        return Err(err(
            "InvalidParameterValue",
            "The parameter StartTime must be less than the parameter EndTime.",
        ));
    }
    Ok((start, end))
}

const STATISTICS: &[&str] = &["SampleCount", "Average", "Sum", "Minimum", "Maximum"];

fn dims_val(id: &MetricId) -> Val {
    Val::List(
        id.dimensions
            .iter()
            .map(|(k, v)| {
                Val::Map(vec![("Name", Val::Str(k.clone())), ("Value", Val::Str(v.clone()))])
            })
            .collect(),
    )
}

/// Runs one CloudWatch action.
pub(crate) async fn dispatch(
    api: &Api,
    action: &str,
    p: &serde_json::Value,
) -> Result<Val, ApiError> {
    let registry: &Registry = &api.metrics;
    match action {
        "PutMetricAlarm" => {
            let now = crate::now_ms();
            let name = get_str(p, "AlarmName").unwrap_or_default();
            api.mutate("PutMetricAlarm", &name, |s| {
                let a = weir_model::shape::metric_alarm(s, p, now)?;
                s.put_metric_alarm(a)
            })
            .await?;
            api.evaluate_alarms(now / 1000).await;
            Ok(Val::Map(Vec::new()))
        }
        "DeleteAlarms" => {
            let names = get_strs(p, "AlarmNames");
            if names.is_empty() {
                return Err(missing("AlarmNames"));
            }
            api.mutate("DeleteAlarms", &names.join(","), |s| s.delete_alarms(&names)).await?;
            api.evaluate_alarms(crate::now_ms() / 1000).await;
            Ok(Val::Map(Vec::new()))
        }
        "DescribeAlarms" => {
            let names = get_strs(p, "AlarmNames");
            let prefix = get_str(p, "AlarmNamePrefix");
            let state_filter = get_str(p, "StateValue");
            if let Some(s) = &state_filter {
                if AlarmState::parse(s).is_none() {
                    return Err(err(
                        "InvalidParameterValue",
                        format!("The StateValue '{s}' is not valid."),
                    ));
                }
            }
            let alarms: Vec<MetricAlarm> =
                api.store.lock().await.state().alarms.values().cloned().collect();
            let list = alarms
                .iter()
                .filter(|a| names.is_empty() || names.contains(&a.name))
                .filter(|a| prefix.as_ref().is_none_or(|p| a.name.starts_with(p.as_str())))
                .filter_map(|a| {
                    let (state, reason, at) =
                        registry.alarm_states.get(&a.name, a.updated_ms / 1000);
                    if state_filter.as_ref().is_some_and(|f| f != state.as_str()) {
                        return None;
                    }
                    Some(alarm_val(a, state, reason, at))
                })
                .collect();
            Ok(Val::Map(vec![
                ("MetricAlarms", Val::List(list)),
                ("CompositeAlarms", Val::List(Vec::new())),
            ]))
        }
        "SetAlarmState" => {
            let name = get_str(p, "AlarmName").ok_or_else(|| missing("AlarmName"))?;
            let value = get_str(p, "StateValue").ok_or_else(|| missing("StateValue"))?;
            let reason = get_str(p, "StateReason").ok_or_else(|| missing("StateReason"))?;
            let state = AlarmState::parse(&value).ok_or_else(|| {
                err("InvalidParameterValue", format!("The StateValue '{value}' is not valid."))
            })?;
            if !api.store.lock().await.state().alarms.contains_key(&name) {
                return Err(err("ResourceNotFound", format!("The alarm '{name}' does not exist.")));
            }
            // Until the next evaluation, as on CloudWatch.
            registry.alarm_states.set(&name, state, reason, crate::now_ms() / 1000);
            Ok(Val::Map(Vec::new()))
        }
        _ => metric_action(registry, action, p),
    }
}

/// The metric (not alarm) actions, over the registry alone.
pub(crate) fn metric_action(
    registry: &Registry,
    action: &str,
    p: &serde_json::Value,
) -> Result<Val, ApiError> {
    match action {
        "ListMetrics" => {
            let filters: Vec<(String, Option<String>)> = p
                .get("Dimensions")
                .and_then(|d| d.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|d| Some((get_str(d, "Name")?, get_str(d, "Value"))))
                        .collect()
                })
                .unwrap_or_default();
            let ns = get_str(p, "Namespace");
            let name = get_str(p, "MetricName");
            let list = registry.list(ns.as_deref(), name.as_deref(), &filters);
            Ok(Val::Map(vec![(
                "Metrics",
                Val::List(
                    list.iter()
                        .map(|id| {
                            Val::Map(vec![
                                ("Namespace", Val::Str(id.namespace.clone())),
                                ("MetricName", Val::Str(id.name.clone())),
                                ("Dimensions", dims_val(id)),
                            ])
                        })
                        .collect(),
                ),
            )]))
        }
        "GetMetricStatistics" => {
            let id = metric_id(p)?;
            let (start, end) = window(p)?;
            let period = period(p)?;
            let stats = get_strs(p, "Statistics");
            if stats.is_empty() {
                return Err(missing("Statistics"));
            }
            if let Some(bad) = stats.iter().find(|s| !STATISTICS.contains(&s.as_str())) {
                return Err(err(
                    "InvalidParameterValue",
                    format!("The statistic {bad} is not valid."),
                ));
            }
            if (end - start) / period > 1440 {
                return Err(err(
                    "InvalidParameterCombination",
                    "You have requested up to 1,440 datapoints; reduce the range or raise the period.",
                ));
            }
            let unit = registry.unit(&id).unwrap_or_else(|| "None".into());
            let points = registry
                .statistics(&id, start, end, period)
                .into_iter()
                .map(|(t, s)| {
                    let mut m = vec![("Timestamp", Val::Ts(t))];
                    for st in STATISTICS {
                        if stats.iter().any(|x| x == st) {
                            m.push((st, Val::Num(s.get(st).unwrap_or(0.0))));
                        }
                    }
                    m.push(("Unit", Val::Str(unit.clone())));
                    Val::Map(m)
                })
                .collect();
            Ok(Val::Map(vec![
                ("Label", Val::Str(id.name.clone())),
                ("Datapoints", Val::List(points)),
            ]))
        }
        "GetMetricData" => {
            let (start, end) = window(p)?;
            let queries = p
                .get("MetricDataQueries")
                .and_then(|q| q.as_array())
                .ok_or_else(|| missing("MetricDataQueries"))?;
            if queries.len() > 500 {
                return Err(err(
                    "InvalidParameterValue",
                    "At most 500 metric data queries are allowed.",
                ));
            }
            let ascending = get_str(p, "ScanBy").as_deref() == Some("TimestampAscending");
            let mut results = Vec::new();
            for q in queries {
                let qid =
                    get_str(q, "Id").ok_or_else(|| missing("MetricDataQueries.member.N.Id"))?;
                if q.get("Expression").is_some() {
                    return Err(err(
                        "InvalidParameterValue",
                        format!("Query {qid}: metric math expressions are not supported by Weir"),
                    ));
                }
                let ms = q
                    .get("MetricStat")
                    .ok_or_else(|| missing("MetricDataQueries.member.N.MetricStat"))?;
                let metric = ms.get("Metric").ok_or_else(|| missing("MetricStat.Metric"))?;
                let id = metric_id(metric)?;
                let period = period(ms)?;
                let stat = get_str(ms, "Stat").ok_or_else(|| missing("MetricStat.Stat"))?;
                if !STATISTICS.contains(&stat.as_str()) {
                    return Err(err(
                        "InvalidParameterValue",
                        format!("The statistic {stat} is not valid."),
                    ));
                }
                if get_str(q, "ReturnData").as_deref() == Some("false")
                    || q.get("ReturnData") == Some(&serde_json::Value::Bool(false))
                {
                    continue;
                }
                let mut points = registry.statistics(&id, start, end, period);
                if !ascending {
                    points.reverse();
                }
                results.push(Val::Map(vec![
                    ("Id", Val::Str(qid)),
                    ("Label", Val::Str(get_str(q, "Label").unwrap_or_else(|| id.name.clone()))),
                    ("Timestamps", Val::List(points.iter().map(|(t, _)| Val::Ts(*t)).collect())),
                    (
                        "Values",
                        Val::List(
                            points
                                .iter()
                                .map(|(_, s)| Val::Num(s.get(&stat).unwrap_or(0.0)))
                                .collect(),
                        ),
                    ),
                    ("StatusCode", Val::Str("Complete".into())),
                ]));
            }
            Ok(Val::Map(vec![
                ("MetricDataResults", Val::List(results)),
                ("Messages", Val::List(Vec::new())),
            ]))
        }
        _ => Err(ApiError {
            status: 400,
            kind: "Sender",
            code: "InvalidAction".into(),
            message: format!("Could not find operation {action} for version 2010-08-01"),
        }),
    }
}

/// The Query protocol's XML for `v` (lists as `<member>` items, timestamps in ISO 8601).
pub(crate) fn to_xml(v: &Val, out: &mut String) {
    match v {
        Val::Str(s) => out.push_str(&crate::xml::escape(s)),
        Val::Num(n) => out.push_str(&format!("{n:?}")),
        Val::Int(n) => out.push_str(&n.to_string()),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Ts(t) => out.push_str(&iso8601(*t)),
        Val::List(items) => {
            for i in items {
                out.push_str("<member>");
                to_xml(i, out);
                out.push_str("</member>");
            }
        }
        Val::Map(fields) => {
            for (k, f) in fields {
                out.push_str(&format!("<{k}>"));
                to_xml(f, out);
                out.push_str(&format!("</{k}>"));
            }
        }
    }
}

/// The CBOR value of `v` (timestamps as tag 1, epoch seconds).
pub(crate) fn to_cbor(v: &Val) -> ciborium::Value {
    use ciborium::Value as C;
    match v {
        Val::Str(s) => C::Text(s.clone()),
        Val::Num(n) => C::Float(*n),
        Val::Int(n) => C::Integer((*n).into()),
        Val::Bool(b) => C::Bool(*b),
        Val::Ts(t) => C::Tag(1, Box::new(C::Integer((*t).into()))),
        Val::List(items) => C::Array(items.iter().map(to_cbor).collect()),
        Val::Map(fields) => {
            C::Map(fields.iter().map(|(k, f)| (C::Text((*k).to_string()), to_cbor(f))).collect())
        }
    }
}

/// The AWS JSON 1.0 value of `v` (timestamps as epoch seconds).
pub(crate) fn to_json(v: &Val) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Val::Str(s) => J::String(s.clone()),
        Val::Num(n) => serde_json::Number::from_f64(*n).map_or(J::Null, J::Number),
        Val::Int(n) => J::from(*n),
        Val::Bool(b) => J::Bool(*b),
        Val::Ts(t) => J::from(*t),
        Val::List(items) => J::Array(items.iter().map(to_json).collect()),
        Val::Map(fields) => {
            J::Object(fields.iter().map(|(k, f)| ((*k).to_string(), to_json(f))).collect())
        }
    }
}

/// A CBOR request body as the JSON shape (timestamps become epoch seconds).
pub(crate) fn from_cbor(v: ciborium::Value) -> serde_json::Value {
    use ciborium::Value as C;
    use serde_json::Value as J;
    match v {
        C::Integer(i) => {
            let n = i128::from(i);
            u64::try_from(n)
                .map(J::from)
                .or_else(|_| i64::try_from(n).map(J::from))
                .unwrap_or(J::Null)
        }
        C::Float(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
        C::Text(s) => J::String(s),
        C::Bool(b) => J::Bool(b),
        C::Bytes(b) => J::String(String::from_utf8_lossy(&b).into_owned()),
        C::Tag(_, inner) => from_cbor(*inner),
        C::Array(a) => J::Array(a.into_iter().map(from_cbor).collect()),
        C::Map(m) => J::Object(
            m.into_iter()
                .filter_map(|(k, v)| match k {
                    C::Text(k) => Some((k, from_cbor(v))),
                    _ => None,
                })
                .collect(),
        ),
        _ => J::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_and_print() {
        let t = parse_time(&serde_json::json!("2026-11-23T07:50:00Z")).unwrap();
        assert_eq!(iso8601(t), "2026-11-23T07:50:00Z");
        assert_eq!(parse_time(&serde_json::json!("2026-11-23T08:50:00.123+01:00")), Some(t));
        assert_eq!(parse_time(&serde_json::json!(1_700_000_000)), Some(1_700_000_000));
        assert_eq!(parse_time(&serde_json::json!("1970-01-01T00:00:00Z")), Some(0));
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        for bad in ["2026-13-01T00:00:00Z", "yesterday", "2026-11-23", "2026-11-23T07:50:00+1"] {
            assert_eq!(parse_time(&serde_json::json!(bad)), None, "{bad}");
        }
    }

    #[test]
    fn statistics_validation() {
        let r = Registry::default();
        let base = serde_json::json!({"Namespace": "AWS/ApplicationELB", "MetricName": "RequestCount",
            "StartTime": "2026-11-23T00:00:00Z", "EndTime": "2026-11-23T01:00:00Z", "Period": "60"});
        let mut p = base.clone();
        assert_eq!(
            metric_action(&r, "GetMetricStatistics", &p).unwrap_err().code,
            "MissingParameter"
        );
        p["Statistics"] = serde_json::json!(["Median"]);
        assert_eq!(
            metric_action(&r, "GetMetricStatistics", &p).unwrap_err().code,
            "InvalidParameterValue"
        );
        p["Statistics"] = serde_json::json!(["Sum"]);
        p["Period"] = serde_json::json!("90");
        assert_eq!(
            metric_action(&r, "GetMetricStatistics", &p).unwrap_err().code,
            "InvalidParameterValue"
        );
        p["Period"] = serde_json::json!(60);
        p["EndTime"] = serde_json::json!("2026-11-25T00:00:00Z");
        assert_eq!(
            metric_action(&r, "GetMetricStatistics", &p).unwrap_err().code,
            "InvalidParameterCombination"
        );
        let mut ok = base;
        ok["Statistics"] = serde_json::json!(["Sum"]);
        assert!(metric_action(&r, "GetMetricStatistics", &ok).is_ok());
    }
}
