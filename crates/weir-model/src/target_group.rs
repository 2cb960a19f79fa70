//! Target groups, their health-check settings with AWS's per-protocol defaults, matchers and
//! registered targets.

use std::net::IpAddr;

use crate::attributes::{self, Attributes};
use crate::error::{ErrorCode, ModelError, Result};

/// A listener or target-group protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[allow(missing_docs)]
pub enum Protocol {
    Http,
    Https,
    Tcp,
    Tls,
    Udp,
    TcpUdp,
    Geneve,
}

impl Protocol {
    /// Parses AWS's spelling.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "HTTP" => Self::Http,
            "HTTPS" => Self::Https,
            "TCP" => Self::Tcp,
            "TLS" => Self::Tls,
            "UDP" => Self::Udp,
            "TCP_UDP" => Self::TcpUdp,
            "GENEVE" => Self::Geneve,
            _ => {
                return Err(ModelError::validation(format!(
                    "Protocol '{s}' must be one of: HTTP, HTTPS, TCP, TLS, UDP, TCP_UDP, GENEVE"
                )))
            }
        })
    }
    /// AWS's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "HTTP",
            Self::Https => "HTTPS",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
            Self::Udp => "UDP",
            Self::TcpUdp => "TCP_UDP",
            Self::Geneve => "GENEVE",
        }
    }
    /// Whether this is an ALB (layer 7) protocol.
    pub fn is_l7(self) -> bool {
        matches!(self, Self::Http | Self::Https)
    }
    /// Whether this is an NLB (layer 4) protocol.
    pub fn is_l4(self) -> bool {
        matches!(self, Self::Tcp | Self::Tls | Self::Udp | Self::TcpUdp)
    }
}

/// The protocol version a target group speaks to its targets (ALB only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[allow(missing_docs)]
pub enum ProtocolVersion {
    Http1,
    Http2,
    Grpc,
}

impl ProtocolVersion {
    /// Parses AWS's spelling.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "HTTP1" => Ok(Self::Http1),
            "HTTP2" => Ok(Self::Http2),
            "GRPC" => Ok(Self::Grpc),
            _ => Err(ModelError::validation(format!(
                "Protocol version '{s}' must be HTTP1, HTTP2 or GRPC"
            ))),
        }
    }
    /// AWS's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http1 => "HTTP1",
            Self::Http2 => "HTTP2",
            Self::Grpc => "GRPC",
        }
    }
}

/// The kind of targets a group holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[allow(missing_docs)]
pub enum TargetType {
    Instance,
    Ip,
    Lambda,
    Alb,
}

impl TargetType {
    /// Parses AWS's spelling.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "instance" => Ok(Self::Instance),
            "ip" => Ok(Self::Ip),
            "lambda" => Ok(Self::Lambda),
            "alb" => Ok(Self::Alb),
            _ => Err(ModelError::validation(format!(
                "Target type '{s}' must be one of: instance, ip, lambda, alb"
            ))),
        }
    }
    /// AWS's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Instance => "instance",
            Self::Ip => "ip",
            Self::Lambda => "lambda",
            Self::Alb => "alb",
        }
    }
}

/// The port health checks are sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum HealthCheckPort {
    /// The port each target receives traffic on (`traffic-port`).
    TrafficPort,
    /// A fixed port.
    Port(u16),
}

impl HealthCheckPort {
    /// Parses `traffic-port` or a port number.
    pub fn parse(s: &str) -> Result<Self> {
        if s == "traffic-port" {
            return Ok(Self::TrafficPort);
        }
        match s.parse::<u16>() {
            Ok(p) if p >= 1 => Ok(Self::Port(p)),
            _ => Err(ModelError::validation(format!(
                "Health check port '{s}' must be 'traffic-port' or a number between 1 and 65535"
            ))),
        }
    }
    /// AWS's spelling.
    pub fn to_aws(self) -> String {
        match self {
            Self::TrafficPort => "traffic-port".into(),
            Self::Port(p) => p.to_string(),
        }
    }
}

/// A health-check success matcher: a set of HTTP codes (or gRPC codes) as inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Matcher {
    /// The text as configured, e.g. `200,202` or `200-299`.
    pub text: String,
    /// Whether these are gRPC status codes (`GrpcCode`) rather than HTTP codes.
    pub grpc: bool,
    ranges: Vec<(u16, u16)>,
}

impl Matcher {
    /// Parses an HTTP code matcher whose codes must lie in `min..=max`.
    pub fn http(text: &str, min: u16, max: u16) -> Result<Self> {
        Self::parse(text, min, max, false)
    }

    /// Parses a gRPC code matcher (0–99).
    pub fn grpc(text: &str) -> Result<Self> {
        Self::parse(text, 0, 99, true)
    }

    fn parse(text: &str, min: u16, max: u16, grpc: bool) -> Result<Self> {
        let bad = || {
            ModelError::validation(format!(
                "Health check matcher '{text}' must be a code, a comma-separated list of codes or a range of codes between {min} and {max}"
            ))
        };
        let mut ranges = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let a: u16 = a.parse().map_err(|_| bad())?;
            let b: u16 = b.parse().map_err(|_| bad())?;
            if a > b || a < min || b > max {
                return Err(bad());
            }
            ranges.push((a, b));
        }
        if ranges.is_empty() {
            return Err(bad());
        }
        Ok(Self { text: text.to_string(), grpc, ranges })
    }

    /// Whether `code` counts as a success.
    pub fn matches(&self, code: u16) -> bool {
        self.ranges.iter().any(|&(a, b)| (a..=b).contains(&code))
    }
}

/// Health-check settings of a target group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HealthCheck {
    /// `HealthCheckEnabled`.
    pub enabled: bool,
    /// `HealthCheckProtocol`: HTTP, HTTPS or TCP.
    pub protocol: Protocol,
    /// `HealthCheckPort`.
    pub port: HealthCheckPort,
    /// `HealthCheckPath` (HTTP/HTTPS only).
    pub path: Option<String>,
    /// `HealthCheckIntervalSeconds`, 5–300.
    pub interval_seconds: u32,
    /// `HealthCheckTimeoutSeconds`, 2–120.
    pub timeout_seconds: u32,
    /// `HealthyThresholdCount`, 2–10.
    pub healthy_threshold: u32,
    /// `UnhealthyThresholdCount`, 2–10.
    pub unhealthy_threshold: u32,
    /// `Matcher` (HTTP/HTTPS/gRPC).
    pub matcher: Option<Matcher>,
}

impl HealthCheck {
    /// AWS's defaults for a target group of `protocol` (and `version` for ALB groups).
    pub fn defaults(protocol: Protocol, version: ProtocolVersion) -> Self {
        let (hc_protocol, interval, timeout, healthy, unhealthy) = match protocol {
            Protocol::Http => (Protocol::Http, 30, 5, 5, 2),
            Protocol::Https => (Protocol::Https, 30, 5, 5, 2),
            Protocol::Geneve => (Protocol::Tcp, 10, 5, 5, 2),
            Protocol::Tcp | Protocol::Tls | Protocol::Udp | Protocol::TcpUdp => {
                (Protocol::Tcp, 30, 10, 5, 2)
            }
        };
        let matcher = match (hc_protocol, version) {
            (Protocol::Http | Protocol::Https, ProtocolVersion::Grpc) => Matcher::grpc("12").ok(),
            (Protocol::Http | Protocol::Https, _) => Matcher::http("200", 200, 499).ok(),
            _ => None,
        };
        let path = match (hc_protocol, version) {
            (Protocol::Http | Protocol::Https, ProtocolVersion::Grpc) => {
                Some("/AWS.ALB/healthcheck".into())
            }
            (Protocol::Http | Protocol::Https, _) => Some("/".into()),
            _ => None,
        };
        let port = if protocol == Protocol::Geneve {
            HealthCheckPort::Port(80)
        } else {
            HealthCheckPort::TrafficPort
        };
        Self {
            enabled: true,
            protocol: hc_protocol,
            port,
            path,
            interval_seconds: interval,
            timeout_seconds: timeout,
            healthy_threshold: healthy,
            unhealthy_threshold: unhealthy,
            matcher,
        }
    }

    /// Validates ranges and combinations.
    pub fn validate(&self, tg_protocol: Protocol) -> Result<()> {
        if !matches!(self.protocol, Protocol::Http | Protocol::Https | Protocol::Tcp) {
            return Err(ModelError::validation("Health check protocol must be HTTP, HTTPS or TCP"));
        }
        if tg_protocol.is_l7() && self.protocol == Protocol::Tcp {
            return Err(ModelError::validation(
                "Health check protocol 'TCP' is not supported for target groups with protocol HTTP or HTTPS",
            ));
        }
        let range = |v: u32, lo: u32, hi: u32, what: &str| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(ModelError::validation(format!("{what} must be between {lo} and {hi}")))
            }
        };
        range(self.interval_seconds, 5, 300, "Health check interval")?;
        range(self.timeout_seconds, 2, 120, "Health check timeout")?;
        range(self.healthy_threshold, 2, 10, "Healthy threshold count")?;
        range(self.unhealthy_threshold, 2, 10, "Unhealthy threshold count")?;
        if self.timeout_seconds >= self.interval_seconds {
            return Err(ModelError::validation(
                "Health check interval must be greater than the timeout.",
            ));
        }
        if let Some(p) = &self.path {
            if !p.starts_with('/') || p.len() > 1024 {
                return Err(ModelError::validation(
                    "Health check path must begin with '/' and be at most 1024 characters",
                ));
            }
        }
        Ok(())
    }
}

/// A registered target.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Target {
    /// Instance id, or IP address for `ip` target groups.
    pub id: String,
    /// The port traffic is sent to.
    pub port: u16,
    /// Availability zone (or `all`).
    pub availability_zone: String,
    /// The address traffic is sent to (the IP, or the instance's private address).
    pub address: IpAddr,
}

/// A target group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TargetGroup {
    /// ARN: `...:targetgroup/NAME/ID`.
    pub arn: String,
    /// Name (1–32 alphanumerics or hyphens).
    pub name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Default port of targets.
    pub port: u16,
    /// Protocol version (ALB groups).
    pub protocol_version: ProtocolVersion,
    /// Target type.
    pub target_type: TargetType,
    /// VPC id.
    pub vpc_id: String,
    /// Health-check settings.
    pub health_check: HealthCheck,
    /// Attributes.
    pub attributes: Attributes,
    /// Registered targets, in registration order.
    pub targets: Vec<Target>,
}

impl TargetGroup {
    /// A new target group with AWS defaults for its protocol.
    pub fn new(
        region: &str,
        account: &str,
        name: &str,
        protocol: Protocol,
        port: u16,
        target_type: TargetType,
    ) -> Result<Self> {
        validate_tg_name(name)?;
        if port == 0 {
            return Err(ModelError::validation("Port must be between 1 and 65535"));
        }
        if protocol == Protocol::Geneve && port != crate::GENEVE_PORT {
            return Err(ModelError::validation("Port must be 6081 for the GENEVE protocol"));
        }
        if target_type == TargetType::Lambda || target_type == TargetType::Alb {
            return Err(ModelError::new(
                ErrorCode::UnsupportedProtocol,
                format!("Target type '{}' is not supported by Weir yet", target_type.as_str()),
            ));
        }
        let specs = match protocol {
            Protocol::Http | Protocol::Https => attributes::AttributeSet::AlbTargetGroup,
            Protocol::Geneve => attributes::AttributeSet::GwlbTargetGroup,
            _ => attributes::AttributeSet::NlbTargetGroup,
        };
        let mut attributes = Attributes::new(specs);
        // AWS turns client IP preservation off by default for `ip` targets over TCP and TLS,
        // and on for instances and for UDP / TCP_UDP.
        if target_type == TargetType::Ip && matches!(protocol, Protocol::Tcp | Protocol::Tls) {
            attributes.set("preserve_client_ip.enabled", "false")?;
        }
        Ok(Self {
            arn: format!(
                "{}:targetgroup/{name}/{}",
                crate::ids::elb_arn_prefix(region, account),
                crate::ids::new_hex_id()
            ),
            name: name.to_string(),
            protocol,
            port,
            protocol_version: ProtocolVersion::Http1,
            target_type,
            vpc_id: crate::zones::DEFAULT_VPC_ID.to_string(),
            health_check: HealthCheck::defaults(protocol, ProtocolVersion::Http1),
            attributes,
            targets: Vec::new(),
        })
    }

    /// `targetgroup/NAME/ID`, the CloudWatch `TargetGroup` dimension.
    pub fn full_name(&self) -> String {
        crate::ids::arn_resource(&self.arn).unwrap_or_default().to_string()
    }

    /// The load-balancing algorithm attribute.
    pub fn algorithm(&self) -> &str {
        self.attributes.get("load_balancing.algorithm.type").unwrap_or("round_robin")
    }
}

/// AWS's target group name rules.
pub fn validate_tg_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ModelError::validation(format!(
            "Target group name '{name}' cannot be longer than '32' characters, must contain only alphanumeric characters or hyphens, and must not begin or end with a hyphen"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_forms() {
        let m = Matcher::http("200,202", 200, 499).unwrap();
        assert!(m.matches(200) && m.matches(202) && !m.matches(201));
        let r = Matcher::http("200-299", 200, 499).unwrap();
        assert!(r.matches(250) && !r.matches(300));
        assert!(Matcher::http("100", 200, 499).is_err());
        assert!(Matcher::http("299-200", 200, 499).is_err());
        assert!(Matcher::http("abc", 200, 499).is_err());
        assert!(Matcher::http("", 200, 499).is_err());
        assert!(Matcher::grpc("0-99").unwrap().matches(12));
    }

    #[test]
    fn alb_defaults() {
        let hc = HealthCheck::defaults(Protocol::Http, ProtocolVersion::Http1);
        assert_eq!(
            (hc.interval_seconds, hc.timeout_seconds, hc.healthy_threshold, hc.unhealthy_threshold),
            (30, 5, 5, 2)
        );
        assert_eq!(hc.path.as_deref(), Some("/"));
        assert_eq!(hc.matcher.as_ref().unwrap().text, "200");
        assert_eq!(hc.port, HealthCheckPort::TrafficPort);
        hc.validate(Protocol::Http).unwrap();
        let gw = HealthCheck::defaults(Protocol::Geneve, ProtocolVersion::Http1);
        assert_eq!((gw.interval_seconds, gw.protocol), (10, Protocol::Tcp));
    }

    #[test]
    fn health_check_ranges() {
        let mut hc = HealthCheck::defaults(Protocol::Http, ProtocolVersion::Http1);
        hc.timeout_seconds = 30;
        assert!(hc
            .validate(Protocol::Http)
            .unwrap_err()
            .message
            .contains("greater than the timeout"));
        hc.timeout_seconds = 5;
        hc.healthy_threshold = 11;
        assert!(hc.validate(Protocol::Http).is_err());
        hc.healthy_threshold = 2;
        hc.protocol = Protocol::Tcp;
        assert!(hc.validate(Protocol::Http).is_err());
        assert!(hc.validate(Protocol::Tcp).is_ok());
    }
}
