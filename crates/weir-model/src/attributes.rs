//! Resource attributes (`Key`/`Value` string pairs as in the ELBv2 API) with AWS defaults and
//! ranges. Every key a resource supports is described by an [`AttributeSpec`]; unknown keys and
//! out-of-range values are `ValidationError`s with AWS wording.

use std::collections::BTreeMap;

use crate::error::{ModelError, Result};

/// What values an attribute accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeKind {
    /// `true` or `false`.
    Bool,
    /// An integer in `min..=max`.
    Int(i64, i64),
    /// `0`, or an integer in `min..=max` (e.g. slow start: 0 or 30–900).
    ZeroOrInt(i64, i64),
    /// One of the listed strings.
    Enum(&'static [&'static str]),
    /// Any string up to the given length.
    Str(usize),
}

/// One supported attribute key with its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeSpec {
    /// The key, e.g. `idle_timeout.timeout_seconds`.
    pub key: &'static str,
    /// The default value as AWS reports it.
    pub default: &'static str,
    /// Accepted values.
    pub kind: AttributeKind,
}

const fn spec(key: &'static str, default: &'static str, kind: AttributeKind) -> AttributeSpec {
    AttributeSpec { key, default, kind }
}

use AttributeKind::*;

const BOOL: AttributeKind = Bool;

/// Attributes of an Application Load Balancer.
pub const ALB_ATTRIBUTES: &[AttributeSpec] = &[
    spec("access_logs.s3.enabled", "false", BOOL),
    spec("access_logs.s3.bucket", "", Str(1024)),
    spec("access_logs.s3.prefix", "", Str(1024)),
    spec("client_keep_alive.seconds", "3600", Int(60, 604800)),
    spec("connection_logs.s3.enabled", "false", BOOL),
    spec("connection_logs.s3.bucket", "", Str(1024)),
    spec("connection_logs.s3.prefix", "", Str(1024)),
    spec("deletion_protection.enabled", "false", BOOL),
    spec("idle_timeout.timeout_seconds", "60", Int(1, 4000)),
    spec("load_balancing.cross_zone.enabled", "true", BOOL),
    spec(
        "routing.http.desync_mitigation_mode",
        "defensive",
        Enum(&["monitor", "defensive", "strictest"]),
    ),
    spec("routing.http.drop_invalid_header_fields.enabled", "false", BOOL),
    spec("routing.http.preserve_host_header.enabled", "false", BOOL),
    spec("routing.http.x_amzn_tls_version_and_cipher_suite.enabled", "false", BOOL),
    spec("routing.http.xff_client_port.enabled", "false", BOOL),
    spec(
        "routing.http.xff_header_processing.mode",
        "append",
        Enum(&["append", "preserve", "remove"]),
    ),
    spec("routing.http2.enabled", "true", BOOL),
    spec("waf.fail_open.enabled", "false", BOOL),
    spec("zonal_shift.config.enabled", "false", BOOL),
];

/// Attributes of a Network Load Balancer.
pub const NLB_ATTRIBUTES: &[AttributeSpec] = &[
    spec("access_logs.s3.enabled", "false", BOOL),
    spec("access_logs.s3.bucket", "", Str(1024)),
    spec("access_logs.s3.prefix", "", Str(1024)),
    spec("deletion_protection.enabled", "false", BOOL),
    spec(
        "dns_record.client_routing_policy",
        "any_availability_zone",
        Enum(&[
            "availability_zone_affinity",
            "partial_availability_zone_affinity",
            "any_availability_zone",
        ]),
    ),
    spec("load_balancing.cross_zone.enabled", "false", BOOL),
    spec("zonal_shift.config.enabled", "false", BOOL),
];

/// Attributes of a Gateway Load Balancer.
pub const GWLB_ATTRIBUTES: &[AttributeSpec] = &[
    spec("deletion_protection.enabled", "false", BOOL),
    spec("load_balancing.cross_zone.enabled", "false", BOOL),
];

const STICKINESS_TYPES: &[&str] =
    &["lb_cookie", "app_cookie", "source_ip", "source_ip_dest_ip", "source_ip_dest_ip_proto"];

/// Attributes of a target group used by an ALB (HTTP/HTTPS).
pub const ALB_TG_ATTRIBUTES: &[AttributeSpec] = &[
    spec("deregistration_delay.timeout_seconds", "300", Int(0, 3600)),
    spec(
        "load_balancing.algorithm.type",
        "round_robin",
        Enum(&["round_robin", "least_outstanding_requests", "weighted_random"]),
    ),
    spec("load_balancing.algorithm.anomaly_mitigation", "off", Enum(&["on", "off"])),
    spec(
        "load_balancing.cross_zone.enabled",
        "use_load_balancer_configuration",
        Enum(&["true", "false", "use_load_balancer_configuration"]),
    ),
    spec("slow_start.duration_seconds", "0", ZeroOrInt(30, 900)),
    spec("stickiness.enabled", "false", BOOL),
    spec("stickiness.type", "lb_cookie", Enum(STICKINESS_TYPES)),
    spec("stickiness.lb_cookie.duration_seconds", "86400", Int(1, 604800)),
    spec("stickiness.app_cookie.cookie_name", "", Str(128)),
    spec("stickiness.app_cookie.duration_seconds", "86400", Int(1, 604800)),
    spec("target_group_health.dns_failover.minimum_healthy_targets.count", "1", Int(1, 1000)),
    spec(
        "target_group_health.unhealthy_state_routing.minimum_healthy_targets.count",
        "1",
        Int(1, 1000),
    ),
];

/// Attributes of a target group used by an NLB (TCP/UDP/TLS/TCP_UDP).
pub const NLB_TG_ATTRIBUTES: &[AttributeSpec] = &[
    spec("deregistration_delay.timeout_seconds", "300", Int(0, 3600)),
    spec("deregistration_delay.connection_termination.enabled", "false", BOOL),
    spec(
        "load_balancing.cross_zone.enabled",
        "use_load_balancer_configuration",
        Enum(&["true", "false", "use_load_balancer_configuration"]),
    ),
    spec("preserve_client_ip.enabled", "true", BOOL),
    spec("proxy_protocol_v2.enabled", "false", BOOL),
    spec("stickiness.enabled", "false", BOOL),
    spec("stickiness.type", "source_ip", Enum(STICKINESS_TYPES)),
    spec("target_health_state.unhealthy.connection_termination.enabled", "true", BOOL),
    spec("target_health_state.unhealthy.draining_interval_seconds", "0", Int(0, 360000)),
];

/// Attributes of a target group used by a GWLB (GENEVE).
pub const GWLB_TG_ATTRIBUTES: &[AttributeSpec] = &[
    spec("deregistration_delay.timeout_seconds", "300", Int(0, 3600)),
    spec("stickiness.enabled", "false", BOOL),
    spec("stickiness.type", "source_ip_dest_ip_proto", Enum(STICKINESS_TYPES)),
    spec("target_failover.on_deregistration", "no_rebalance", Enum(&["rebalance", "no_rebalance"])),
    spec("target_failover.on_unhealthy", "no_rebalance", Enum(&["rebalance", "no_rebalance"])),
];

/// Which attribute table a resource uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AttributeSet {
    /// [`ALB_ATTRIBUTES`].
    Alb,
    /// [`NLB_ATTRIBUTES`].
    Nlb,
    /// [`GWLB_ATTRIBUTES`].
    Gwlb,
    /// [`ALB_TG_ATTRIBUTES`].
    AlbTargetGroup,
    /// [`NLB_TG_ATTRIBUTES`].
    NlbTargetGroup,
    /// [`GWLB_TG_ATTRIBUTES`].
    GwlbTargetGroup,
    /// [`ALB_LISTENER_ATTRIBUTES`].
    AlbListener,
    /// [`NLB_LISTENER_ATTRIBUTES`].
    NlbListener,
}

impl AttributeSet {
    /// The specs of this set.
    pub fn specs(self) -> &'static [AttributeSpec] {
        match self {
            Self::Alb => ALB_ATTRIBUTES,
            Self::Nlb => NLB_ATTRIBUTES,
            Self::Gwlb => GWLB_ATTRIBUTES,
            Self::AlbTargetGroup => ALB_TG_ATTRIBUTES,
            Self::NlbTargetGroup => NLB_TG_ATTRIBUTES,
            Self::GwlbTargetGroup => GWLB_TG_ATTRIBUTES,
            Self::AlbListener => ALB_LISTENER_ATTRIBUTES,
            Self::NlbListener => NLB_LISTENER_ATTRIBUTES,
        }
    }
}

/// Attributes of an ALB listener (response header settings).
pub const ALB_LISTENER_ATTRIBUTES: &[AttributeSpec] = &[
    spec("routing.http.response.server.enabled", "true", BOOL),
    spec("routing.http.response.strict_transport_security.header_value", "", Str(1024)),
    spec("routing.http.response.access_control_allow_origin.header_value", "", Str(1024)),
    spec("routing.http.response.access_control_allow_methods.header_value", "", Str(1024)),
    spec("routing.http.response.access_control_allow_headers.header_value", "", Str(1024)),
    spec("routing.http.response.access_control_allow_credentials.header_value", "", Str(1024)),
    spec("routing.http.response.access_control_expose_headers.header_value", "", Str(1024)),
    spec("routing.http.response.access_control_max_age.header_value", "", Str(1024)),
    spec("routing.http.response.content_security_policy.header_value", "", Str(1024)),
    spec("routing.http.response.x_content_type_options.header_value", "", Str(1024)),
    spec("routing.http.response.x_frame_options.header_value", "", Str(1024)),
];

/// Attributes of an NLB listener.
pub const NLB_LISTENER_ATTRIBUTES: &[AttributeSpec] =
    &[spec("tcp.idle_timeout.seconds", "350", Int(60, 6000))];

/// A resource's attribute values: the attribute table plus the values set explicitly.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attributes {
    table: AttributeSet,
    set: BTreeMap<String, String>,
}

impl Attributes {
    /// All defaults of `table`.
    pub fn new(table: AttributeSet) -> Self {
        Self { table, set: BTreeMap::new() }
    }

    /// The same table with every value back at its default.
    pub fn defaults(&self) -> Self {
        Self::new(self.table)
    }

    /// The supported keys.
    pub fn specs(&self) -> &'static [AttributeSpec] {
        self.table.specs()
    }

    fn spec(&self, key: &str) -> Option<&'static AttributeSpec> {
        self.specs().iter().find(|s| s.key == key)
    }

    /// Validates and sets one attribute.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let spec = self.spec(key).ok_or_else(|| {
            ModelError::validation(format!("Attribute key '{key}' is not recognized"))
        })?;
        validate_value(spec, value)?;
        self.set.insert(key.to_string(), value.to_string());
        Ok(())
    }

    /// Validates and sets several attributes, all or nothing.
    pub fn set_all<'a>(
        &mut self,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<()> {
        let mut next = self.clone();
        for (k, v) in pairs {
            next.set(k, v)?;
        }
        *self = next;
        Ok(())
    }

    /// The value of `key` (explicit or default); `None` for unsupported keys.
    pub fn get(&self, key: &str) -> Option<&str> {
        if let Some(v) = self.set.get(key) {
            return Some(v);
        }
        self.spec(key).map(|s| s.default)
    }

    /// The value of a boolean attribute (false when unsupported).
    pub fn get_bool(&self, key: &str) -> bool {
        self.get(key) == Some("true")
    }

    /// The value of an integer attribute (0 when unsupported).
    pub fn get_i64(&self, key: &str) -> i64 {
        self.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// Every supported key with its current value, in AWS's key order.
    pub fn all(&self) -> Vec<(&'static str, String)> {
        self.specs()
            .iter()
            .map(|s| (s.key, self.get(s.key).unwrap_or(s.default).to_string()))
            .collect()
    }

    /// Only the explicitly set pairs.
    pub fn explicit(&self) -> &BTreeMap<String, String> {
        &self.set
    }
}

fn validate_value(spec: &AttributeSpec, value: &str) -> Result<()> {
    let bad = |what: String| {
        Err(ModelError::validation(format!("The value of attribute '{}' must be {what}", spec.key)))
    };
    match spec.kind {
        AttributeKind::Bool => match value {
            "true" | "false" => Ok(()),
            _ => bad("true or false".into()),
        },
        AttributeKind::Int(min, max) => match value.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(()),
            _ => bad(format!("an integer between {min} and {max}")),
        },
        AttributeKind::ZeroOrInt(min, max) => match value.parse::<i64>() {
            Ok(n) if n == 0 || (min..=max).contains(&n) => Ok(()),
            _ => bad(format!("0 or an integer between {min} and {max}")),
        },
        AttributeKind::Enum(options) => {
            if options.contains(&value) {
                Ok(())
            } else {
                bad(format!("one of: {}", options.join(", ")))
            }
        }
        AttributeKind::Str(max) => {
            if value.len() <= max {
                Ok(())
            } else {
                bad(format!("at most {max} characters"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_ranges() {
        let mut a = Attributes::new(AttributeSet::Alb);
        assert_eq!(a.get("idle_timeout.timeout_seconds"), Some("60"));
        assert!(a.set("idle_timeout.timeout_seconds", "0").is_err());
        assert!(a.set("idle_timeout.timeout_seconds", "4001").is_err());
        a.set("idle_timeout.timeout_seconds", "5").unwrap();
        assert_eq!(a.get_i64("idle_timeout.timeout_seconds"), 5);
        let e = a.set("no.such.key", "1").unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::ValidationError);
        assert!(a.set("routing.http.xff_header_processing.mode", "bogus").is_err());
    }

    #[test]
    fn slow_start_zero_or_range() {
        let mut a = Attributes::new(AttributeSet::AlbTargetGroup);
        assert!(a.set("slow_start.duration_seconds", "0").is_ok());
        assert!(a.set("slow_start.duration_seconds", "29").is_err());
        assert!(a.set("slow_start.duration_seconds", "30").is_ok());
        assert!(a.set("slow_start.duration_seconds", "901").is_err());
    }

    #[test]
    fn set_all_is_atomic() {
        let mut a = Attributes::new(AttributeSet::AlbTargetGroup);
        let r = a.set_all([
            ("deregistration_delay.timeout_seconds", "10"),
            ("stickiness.enabled", "maybe"),
        ]);
        assert!(r.is_err());
        assert_eq!(a.get("deregistration_delay.timeout_seconds"), Some("300"));
    }
}
