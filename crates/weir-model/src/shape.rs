//! Converts ELBv2 structures in their AWS JSON shape (`DefaultActions`, `Conditions`, `Targets`,
//! `…Attributes`) into model values. CloudFormation properties have this shape directly; the
//! Query API gets it by nesting its `X.member.N.Y` form parameters. One conversion serves both.

use crate::condition::QueryStringPair;
use crate::state::TargetSpec;
use crate::{
    Action, ActionKind, Condition, FixedResponseConfig, ForwardConfig, ModelError, RedirectConfig,
    WeightedTargetGroup,
};
use serde_json::Value;

type Result<T> = std::result::Result<T, ModelError>;

/// A property as a string (numbers and booleans are accepted, as CloudFormation does).
pub fn str_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `obj[key]` as a string.
pub fn get_str(obj: &Value, key: &str) -> Option<String> {
    obj.get(key).and_then(str_of)
}

/// `obj[key]` as an unsigned number; a present but non-numeric value is a `ValidationError`.
pub fn get_u32(obj: &Value, key: &str) -> Result<Option<u32>> {
    match get_str(obj, key) {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| ModelError::validation(format!("{key} must be a number, got '{s}'"))),
    }
}

/// `obj[key]` as a boolean.
pub fn get_bool(obj: &Value, key: &str) -> Result<Option<bool>> {
    match get_str(obj, key).as_deref() {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(s) => Err(ModelError::validation(format!("{key} must be true or false, got '{s}'"))),
    }
}

/// `obj[key]` as a list of strings.
pub fn get_strs(obj: &Value, key: &str) -> Vec<String> {
    obj.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(str_of).collect())
        .unwrap_or_default()
}

/// `[{Key, Value}]` pairs.
pub fn key_values(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|kv| {
                    Some((get_str(kv, "Key")?, get_str(kv, "Value").unwrap_or_default()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A list of actions.
pub fn actions(v: Option<&Value>) -> Result<Vec<Action>> {
    let list = v
        .and_then(Value::as_array)
        .ok_or_else(|| ModelError::validation("Actions must be a list"))?;
    let mut out: Vec<Action> = list.iter().map(action).collect::<Result<_>>()?;
    out.sort_by_key(|a| a.order.unwrap_or(u32::MAX));
    Ok(out)
}

fn action(v: &Value) -> Result<Action> {
    let ty =
        get_str(v, "Type").ok_or_else(|| ModelError::validation("An action must have a Type"))?;
    let order = get_u32(v, "Order")?;
    let kind = match ty.as_str() {
        "forward" => {
            let mut target_groups = Vec::new();
            let mut stickiness_enabled = false;
            let mut stickiness_duration_seconds = 3600;
            if let Some(fc) = v.get("ForwardConfig") {
                for tg in fc.get("TargetGroups").and_then(Value::as_array).into_iter().flatten() {
                    let arn = get_str(tg, "TargetGroupArn").ok_or_else(|| ModelError::validation("ForwardConfig target groups need a TargetGroupArn"))?;
                    target_groups.push(WeightedTargetGroup { target_group_arn: arn, weight: get_u32(tg, "Weight")?.unwrap_or(1) });
                }
                if let Some(s) = fc.get("TargetGroupStickinessConfig") {
                    stickiness_enabled = get_bool(s, "Enabled")?.unwrap_or(false);
                    stickiness_duration_seconds = get_u32(s, "DurationSeconds")?.unwrap_or(3600);
                }
            }
            if let Some(arn) = get_str(v, "TargetGroupArn") {
                match target_groups.as_slice() {
                    [] => target_groups.push(WeightedTargetGroup { target_group_arn: arn, weight: 1 }),
                    [one] if one.target_group_arn == arn => {}
                    _ => return Err(ModelError::validation("TargetGroupArn and ForwardConfig must name the same single target group when both are given")),
                }
            }
            ActionKind::Forward(ForwardConfig { target_groups, stickiness_enabled, stickiness_duration_seconds })
        }
        "redirect" => {
            let c = v.get("RedirectConfig").ok_or_else(|| ModelError::validation("A redirect action needs a RedirectConfig"))?;
            let d = RedirectConfig::default();
            let status = get_str(c, "StatusCode").ok_or_else(|| ModelError::validation("RedirectConfig needs a StatusCode"))?;
            let status_code = match status.as_str() {
                "HTTP_301" => 301,
                "HTTP_302" => 302,
                other => return Err(ModelError::validation(format!("Redirect status code '{other}' must be HTTP_301 or HTTP_302"))),
            };
            ActionKind::Redirect(RedirectConfig {
                protocol: get_str(c, "Protocol").unwrap_or(d.protocol),
                host: get_str(c, "Host").unwrap_or(d.host),
                port: get_str(c, "Port").unwrap_or(d.port),
                path: get_str(c, "Path").unwrap_or(d.path),
                query: get_str(c, "Query").unwrap_or(d.query),
                status_code,
            })
        }
        "fixed-response" => {
            let c = v.get("FixedResponseConfig").ok_or_else(|| ModelError::validation("A fixed-response action needs a FixedResponseConfig"))?;
            let status = get_str(c, "StatusCode").ok_or_else(|| ModelError::validation("FixedResponseConfig needs a StatusCode"))?;
            let status_code = status.parse().map_err(|_| ModelError::validation(format!("Fixed response status code '{status}' is not valid")))?;
            ActionKind::FixedResponse(FixedResponseConfig { status_code, content_type: get_str(c, "ContentType"), message_body: get_str(c, "MessageBody") })
        }
        other => {
            return Err(ModelError::new(
                crate::ErrorCode::InvalidLoadBalancerAction,
                format!("Action type '{other}' is not supported; supported types are forward, redirect and fixed-response"),
            ))
        }
    };
    Ok(Action { order, kind })
}

/// A list of rule conditions.
pub fn conditions(v: Option<&Value>) -> Result<Vec<Condition>> {
    let list = v
        .and_then(Value::as_array)
        .ok_or_else(|| ModelError::validation("Conditions must be a list"))?;
    list.iter().map(condition).collect()
}

fn config_values(c: &Value, config: &str) -> Vec<String> {
    let from_config = c.get(config).map(|x| get_strs(x, "Values")).unwrap_or_default();
    if from_config.is_empty() {
        get_strs(c, "Values")
    } else {
        from_config
    }
}

fn condition(c: &Value) -> Result<Condition> {
    let field = get_str(c, "Field")
        .ok_or_else(|| ModelError::validation("A condition must have a Field"))?;
    Ok(match field.as_str() {
        "host-header" => Condition::HostHeader(config_values(c, "HostHeaderConfig")),
        "path-pattern" => Condition::PathPattern(config_values(c, "PathPatternConfig")),
        "http-request-method" => Condition::HttpRequestMethod(config_values(c, "HttpRequestMethodConfig")),
        "source-ip" => Condition::SourceIp(config_values(c, "SourceIpConfig")),
        "http-header" => {
            let h = c.get("HttpHeaderConfig").ok_or_else(|| ModelError::validation("An http-header condition needs an HttpHeaderConfig"))?;
            Condition::HttpHeader {
                name: get_str(h, "HttpHeaderName").ok_or_else(|| ModelError::validation("HttpHeaderConfig needs an HttpHeaderName"))?,
                values: get_strs(h, "Values"),
            }
        }
        "query-string" => {
            let q = c.get("QueryStringConfig").ok_or_else(|| ModelError::validation("A query-string condition needs a QueryStringConfig"))?;
            let pairs = q
                .get("Values")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|kv| QueryStringPair { key: get_str(kv, "Key"), value: get_str(kv, "Value").unwrap_or_default() }).collect())
                .unwrap_or_default();
            Condition::QueryString(pairs)
        }
        other => return Err(ModelError::validation(format!("Condition field '{other}' must be one of: host-header, path-pattern, http-header, http-request-method, query-string, source-ip"))),
    })
}

/// Certificate ARNs of a `Certificates` list (`[{CertificateArn}]`).
pub fn certificate_arns(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|c| get_str(c, "CertificateArn")).collect())
        .unwrap_or_default()
}

/// `Certificates` (`[{CertificateArn}]`), `SslPolicy` and `AlpnPolicy` of a listener.
pub fn listener_tls(p: &Value) -> crate::ListenerTls {
    crate::ListenerTls {
        certificates: certificate_arns(p.get("Certificates")),
        ssl_policy: get_str(p, "SslPolicy"),
        alpn_policy: get_strs(p, "AlpnPolicy")
            .into_iter()
            .next()
            .or_else(|| get_str(p, "AlpnPolicy")),
    }
}

/// A list of target descriptions.
pub fn targets(v: Option<&Value>) -> Result<Vec<TargetSpec>> {
    let Some(list) = v else { return Ok(Vec::new()) };
    let list = list.as_array().ok_or_else(|| ModelError::validation("Targets must be a list"))?;
    list.iter()
        .map(|t| {
            let port = match get_u32(t, "Port")? {
                Some(p) if (1..=65535).contains(&p) => Some(p as u16),
                Some(p) => {
                    return Err(ModelError::validation(format!(
                        "Target port {p} must be between 1 and 65535"
                    )))
                }
                None => None,
            };
            Ok(TargetSpec {
                id: get_str(t, "Id")
                    .ok_or_else(|| ModelError::validation("A target must have an Id"))?,
                port,
                availability_zone: get_str(t, "AvailabilityZone"),
            })
        })
        .collect()
}

/// A new target group from `CreateTargetGroup` parameters / CloudFormation properties (without
/// attributes and targets, which callers add). Defaults are AWS's for the protocol.
pub fn target_group(state: &crate::State, p: &Value, name: &str) -> Result<crate::TargetGroup> {
    use crate::{HealthCheck, Protocol, ProtocolVersion, TargetGroup, TargetType};
    let protocol = Protocol::parse(
        &get_str(p, "Protocol")
            .ok_or_else(|| ModelError::validation("A target group needs a Protocol"))?,
    )?;
    let port =
        get_u32(p, "Port")?.ok_or_else(|| ModelError::validation("A target group needs a Port"))?;
    let port = u16::try_from(port)
        .map_err(|_| ModelError::validation("Port must be between 1 and 65535"))?;
    let target_type =
        TargetType::parse(&get_str(p, "TargetType").unwrap_or_else(|| "instance".into()))?;
    let mut tg =
        TargetGroup::new(&state.region, &state.account, name, protocol, port, target_type)?;
    if let Some(v) = get_str(p, "ProtocolVersion") {
        if !protocol.is_l7() {
            return Err(ModelError::validation(
                "ProtocolVersion is supported only for HTTP and HTTPS target groups",
            ));
        }
        tg.protocol_version = ProtocolVersion::parse(&v)?;
        tg.health_check = HealthCheck::defaults(protocol, tg.protocol_version);
    }
    if let Some(v) = get_str(p, "VpcId") {
        tg.vpc_id = v;
    }
    modify_health_check(&mut tg, p)?;
    Ok(tg)
}

/// Applies the `HealthCheck*`, threshold and `Matcher` parameters present in `p` and validates
/// the result (`ModifyTargetGroup`, and target-group creation).
pub fn modify_health_check(tg: &mut crate::TargetGroup, p: &Value) -> Result<()> {
    use crate::{HealthCheckPort, Matcher, Protocol};
    let hc = &mut tg.health_check;
    if let Some(b) = get_bool(p, "HealthCheckEnabled")? {
        hc.enabled = b;
    }
    if let Some(v) = get_str(p, "HealthCheckProtocol") {
        hc.protocol = Protocol::parse(&v)?;
        if hc.protocol == Protocol::Tcp {
            hc.path = None;
            hc.matcher = None;
        } else {
            hc.path.get_or_insert_with(|| "/".into());
            if hc.matcher.is_none() {
                hc.matcher = Some(Matcher::http("200-399", 200, 599)?);
            }
        }
        // NLB groups: AWS's timeout default depends on the check protocol (HTTP 6 s, else 10 s).
        if tg.protocol.is_l4() && get_str(p, "HealthCheckTimeoutSeconds").is_none() {
            hc.timeout_seconds = if hc.protocol == Protocol::Http { 6 } else { 10 };
        }
    }
    if let Some(v) = get_str(p, "HealthCheckPort") {
        hc.port = HealthCheckPort::parse(&v)?;
    }
    if let Some(v) = get_str(p, "HealthCheckPath") {
        hc.path = Some(v);
    }
    if let Some(v) = get_u32(p, "HealthCheckIntervalSeconds")? {
        hc.interval_seconds = v;
    }
    if let Some(v) = get_u32(p, "HealthCheckTimeoutSeconds")? {
        hc.timeout_seconds = v;
    }
    if let Some(v) = get_u32(p, "HealthyThresholdCount")? {
        hc.healthy_threshold = v;
    }
    if let Some(v) = get_u32(p, "UnhealthyThresholdCount")? {
        hc.unhealthy_threshold = v;
    }
    if let Some(m) = p.get("Matcher") {
        let max = if tg.protocol.is_l7() { 499 } else { 599 };
        hc.matcher = Some(match (get_str(m, "HttpCode"), get_str(m, "GrpcCode")) {
            (Some(h), None) => Matcher::http(&h, 200, max)?,
            (None, Some(g)) => Matcher::grpc(&g)?,
            _ => {
                return Err(ModelError::validation(
                    "Matcher must specify exactly one of HttpCode or GrpcCode",
                ))
            }
        });
    }
    hc.validate(tg.protocol)
}

/// A metric alarm from `PutMetricAlarm` parameters / `AWS::CloudWatch::Alarm` properties.
pub fn metric_alarm(
    state: &crate::State,
    p: &Value,
    now_ms: u64,
) -> Result<crate::alarm::MetricAlarm> {
    use crate::error::ErrorCode;
    let required = |k: &str| {
        get_str(p, k).ok_or_else(|| {
            ModelError::new(
                ErrorCode::MissingParameter,
                format!("The parameter {k} must be specified."),
            )
        })
    };
    if p.get("Metrics").is_some() || p.get("ExtendedStatistic").is_some() {
        return Err(ModelError::new(
            ErrorCode::InvalidParameterValue,
            "Metric math alarms and extended statistics are not supported by Weir",
        ));
    }
    let name = required("AlarmName")?;
    let number = |k: &str| -> Result<u32> {
        get_u32(p, k)?.ok_or_else(|| {
            ModelError::new(
                ErrorCode::MissingParameter,
                format!("The parameter {k} must be specified."),
            )
        })
    };
    let threshold: f64 = required("Threshold")?.parse().map_err(|_| {
        ModelError::new(ErrorCode::InvalidParameterValue, "Threshold must be a number")
    })?;
    let evaluation_periods = number("EvaluationPeriods")?;
    let mut dimensions: Vec<(String, String)> = p
        .get("Dimensions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|d| {
                    Some((get_str(d, "Name")?, get_str(d, "Value").unwrap_or_default()))
                })
                .collect()
        })
        .unwrap_or_default();
    dimensions.sort();
    Ok(crate::alarm::MetricAlarm {
        arn: format!("arn:aws:cloudwatch:{}:{}:alarm:{name}", state.region, state.account),
        name,
        description: get_str(p, "AlarmDescription"),
        namespace: required("Namespace")?,
        metric_name: required("MetricName")?,
        dimensions,
        statistic: required("Statistic")?,
        period: number("Period")?,
        evaluation_periods,
        datapoints_to_alarm: get_u32(p, "DatapointsToAlarm")?.unwrap_or(evaluation_periods),
        threshold: crate::alarm::Threshold(threshold),
        comparison: required("ComparisonOperator")?,
        treat_missing_data: get_str(p, "TreatMissingData").unwrap_or_else(|| "missing".into()),
        actions_enabled: get_bool(p, "ActionsEnabled")?.unwrap_or(true),
        alarm_actions: get_strs(p, "AlarmActions"),
        ok_actions: get_strs(p, "OKActions"),
        insufficient_data_actions: get_strs(p, "InsufficientDataActions"),
        unit: get_str(p, "Unit"),
        updated_ms: now_ms,
    })
}

/// Nests flat Query API parameters into the JSON shape. Lists are 1-based on the wire, written
/// `A.member.2.B=x` by the Query protocol (ELB, Auto Scaling, CloudWatch, CloudFormation) and
/// `A.2.B=x` by EC2; both become `{"A": [_, {"B": "x"}]}`. Other dotted keys become objects.
/// Gaps in a list are left as `null`; indexes above 1000 are ignored. A key that is both a value
/// and a structure keeps the structure (AWS would reject such a request; the typed reader then
/// reports what is missing).
pub fn nest_query_params<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    let mut root = Value::Object(serde_json::Map::new());
    'pairs: for (key, value) in pairs {
        let parts: Vec<&str> = key.split('.').collect();
        let mut node = &mut root;
        let mut i = 0;
        while i < parts.len() {
            let (index, consumed) = if parts[i] == "member" {
                match parts.get(i + 1).and_then(|n| n.parse::<usize>().ok()) {
                    Some(n) => (Some(n), 2),
                    None => continue 'pairs,
                }
            } else {
                (parts[i].parse::<usize>().ok(), 1)
            };
            i += consumed;
            let last = i == parts.len();
            match index {
                Some(n) => {
                    if n == 0 || n > 1000 {
                        continue 'pairs;
                    }
                    if !node.is_array() {
                        *node = Value::Array(Vec::new());
                    }
                    let Value::Array(a) = node else { continue 'pairs };
                    if a.len() < n {
                        a.resize(n, Value::Null);
                    }
                    node = &mut a[n - 1];
                }
                None => {
                    if !node.is_object() {
                        *node = Value::Object(serde_json::Map::new());
                    }
                    let Value::Object(m) = node else { continue 'pairs };
                    node = m.entry(parts[i - 1].to_string()).or_insert(Value::Null);
                }
            }
            if last && !node.is_object() && !node.is_array() {
                *node = Value::String(value.to_string());
            }
        }
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn actions_and_conditions() {
        let a = actions(Some(&json!([{"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": 443, "StatusCode": "HTTP_301"}}]))).unwrap();
        match &a[0].kind {
            ActionKind::Redirect(r) => assert_eq!(
                (r.protocol.as_str(), r.port.as_str(), r.path.as_str(), r.status_code),
                ("HTTPS", "443", "/#{path}", 301)
            ),
            k => panic!("{k:?}"),
        }
        let f = actions(Some(&json!([{"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": "a", "Weight": 80}, {"TargetGroupArn": "b", "Weight": "20"}]}}]))).unwrap();
        match &f[0].kind {
            ActionKind::Forward(fc) => assert_eq!(
                fc.target_groups.iter().map(|t| t.weight).collect::<Vec<_>>(),
                vec![80, 20]
            ),
            k => panic!("{k:?}"),
        }
        assert!(actions(Some(&json!([{"Type": "authenticate-oidc"}]))).is_err());
        let c = conditions(Some(&json!([
            {"Field": "path-pattern", "Values": ["/a"]},
            {"Field": "host-header", "HostHeaderConfig": {"Values": ["x.com"]}},
            {"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "X-A", "Values": ["1"]}},
            {"Field": "query-string", "QueryStringConfig": {"Values": [{"Key": "k", "Value": "v"}, {"Value": "w"}]}}
        ])))
        .unwrap();
        assert_eq!(c.len(), 4);
        assert!(conditions(Some(&json!([{"Field": "cookie"}]))).is_err());
    }

    #[test]
    fn nlb_health_checks_get_nlb_defaults() {
        let p = serde_json::json!({"Protocol": "TCP", "Port": "80", "TargetType": "ip"});
        let tg = target_group(&crate::State::default(), &p, "n").unwrap();
        let hc = &tg.health_check;
        assert_eq!(
            (hc.protocol, hc.interval_seconds, hc.timeout_seconds),
            (crate::Protocol::Tcp, 30, 10)
        );
        assert_eq!((hc.healthy_threshold, hc.unhealthy_threshold), (5, 2));
        let p = serde_json::json!({"Protocol": "UDP", "Port": "53", "TargetType": "ip",
            "HealthCheckProtocol": "HTTP"});
        let tg = target_group(&crate::State::default(), &p, "n").unwrap();
        let hc = &tg.health_check;
        assert_eq!((hc.protocol, hc.timeout_seconds), (crate::Protocol::Http, 6));
        assert_eq!(hc.path.as_deref(), Some("/"));
        assert!(hc.matcher.as_ref().is_some_and(|m| m.matches(399) && !m.matches(400)));
    }

    #[test]
    fn query_params_nest_into_the_json_shape() {
        let v = nest_query_params([
            ("Action", "CreateRule"),
            ("Conditions.member.1.Field", "path-pattern"),
            ("Conditions.member.1.PathPatternConfig.Values.member.1", "/a/*"),
            ("Conditions.member.1.PathPatternConfig.Values.member.2", "/b"),
            ("Actions.member.1.Type", "forward"),
            ("Actions.member.1.ForwardConfig.TargetGroups.member.1.TargetGroupArn", "tg"),
            ("Actions.member.1.ForwardConfig.TargetGroups.member.1.Weight", "3"),
            ("Subnets.member.2", "s2"),
            ("Subnets.member.1", "s1"),
            ("Bad.member.0", "ignored"),
            ("Bad2.member.x", "ignored"),
            ("VpcId.2", "vpc-b"),
            ("VpcId.1", "vpc-a"),
            ("Filter.1.Name", "availability-zone"),
            ("Filter.1.Value.1", "us-east-1a"),
        ]);
        assert_eq!(v["VpcId"], json!(["vpc-a", "vpc-b"]));
        assert_eq!(v["Filter"], json!([{"Name": "availability-zone", "Value": ["us-east-1a"]}]));
        assert!(
            v.get("Bad").is_none() || v["Bad"] == json!([]) || v["Bad"].is_null(),
            "{}",
            v["Bad"]
        );
        assert_eq!(v["Action"], "CreateRule");
        assert_eq!(v["Subnets"], json!(["s1", "s2"]));
        let c = conditions(v.get("Conditions")).unwrap();
        assert_eq!(c, vec![Condition::PathPattern(vec!["/a/*".into(), "/b".into()])]);
        let a = actions(v.get("Actions")).unwrap();
        match &a[0].kind {
            ActionKind::Forward(f) => assert_eq!(
                (f.target_groups[0].target_group_arn.as_str(), f.target_groups[0].weight),
                ("tg", 3)
            ),
            k => panic!("{k:?}"),
        }
    }
}
