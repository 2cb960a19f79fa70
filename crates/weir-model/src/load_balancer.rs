//! Load balancers: type, scheme, zones, attributes, ARN and DNS name.

use crate::attributes::{self, Attributes};
use crate::error::{ModelError, Result};
use crate::zones::AvailabilityZone;

/// The `Type` of a load balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum LoadBalancerType {
    /// `application` (ALB).
    Application,
    /// `network` (NLB).
    Network,
    /// `gateway` (GWLB).
    Gateway,
}

impl LoadBalancerType {
    /// Parses AWS's spelling.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "application" => Ok(Self::Application),
            "network" => Ok(Self::Network),
            "gateway" => Ok(Self::Gateway),
            _ => Err(ModelError::validation(format!(
                "Load balancer type '{s}' must be one of: application, network, gateway"
            ))),
        }
    }
    /// AWS's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Application => "application",
            Self::Network => "network",
            Self::Gateway => "gateway",
        }
    }
    /// Short form used in ARNs (`app`, `net`, `gwy`).
    pub fn arn_tag(self) -> &'static str {
        match self {
            Self::Application => "app",
            Self::Network => "net",
            Self::Gateway => "gwy",
        }
    }
    fn attribute_set(self) -> attributes::AttributeSet {
        match self {
            Self::Application => attributes::AttributeSet::Alb,
            Self::Network => attributes::AttributeSet::Nlb,
            Self::Gateway => attributes::AttributeSet::Gwlb,
        }
    }
}

/// The `Scheme` of a load balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Scheme {
    /// Reachable on the configured public address(es) as well as the zone nodes.
    InternetFacing,
    /// Reachable on the zone nodes (private/loopback addresses) only.
    Internal,
}

impl Scheme {
    /// Parses AWS's spelling.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "internet-facing" => Ok(Self::InternetFacing),
            "internal" => Ok(Self::Internal),
            _ => Err(ModelError::validation(format!(
                "Scheme '{s}' must be internet-facing or internal"
            ))),
        }
    }
    /// AWS's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InternetFacing => "internet-facing",
            Self::Internal => "internal",
        }
    }
}

/// The `IpAddressType` of a load balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum IpAddressType {
    /// `ipv4`.
    Ipv4,
    /// `dualstack`.
    Dualstack,
}

impl IpAddressType {
    /// Parses AWS's spelling.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "ipv4" => Ok(Self::Ipv4),
            "dualstack" => Ok(Self::Dualstack),
            _ => Err(ModelError::validation(format!(
                "IP address type '{s}' must be ipv4 or dualstack"
            ))),
        }
    }
    /// AWS's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ipv4 => "ipv4",
            Self::Dualstack => "dualstack",
        }
    }
}

/// A load balancer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoadBalancer {
    /// ARN: `arn:aws:elasticloadbalancing:REGION:ACCOUNT:loadbalancer/app/NAME/ID`.
    pub arn: String,
    /// Name (1–32 alphanumerics or hyphens, no leading/trailing hyphen, not `internal-`).
    pub name: String,
    /// Type.
    pub lb_type: LoadBalancerType,
    /// Scheme.
    pub scheme: Scheme,
    /// IP address type.
    pub ip_address_type: IpAddressType,
    /// Enabled zones with their subnets.
    pub zones: Vec<AvailabilityZone>,
    /// Security group ids (recorded, not enforced).
    pub security_groups: Vec<String>,
    /// Attributes.
    pub attributes: Attributes,
    /// Node index (1–254): the last octet of every zone node address (see [`crate::zones`]).
    pub node_index: u8,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

impl LoadBalancer {
    /// A new load balancer with default attributes. Validates name and zones.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        region: &str,
        account: &str,
        name: &str,
        lb_type: LoadBalancerType,
        scheme: Scheme,
        zones: Vec<AvailabilityZone>,
        node_index: u8,
        created_ms: u64,
    ) -> Result<Self> {
        validate_lb_name(name)?;
        if lb_type == LoadBalancerType::Application && zones.len() < 2 {
            return Err(ModelError::validation(
                "At least two subnets in two different Availability Zones must be specified",
            ));
        }
        if zones.is_empty() {
            return Err(ModelError::validation("At least one subnet must be specified"));
        }
        for (i, z) in zones.iter().enumerate() {
            if zones[..i].iter().any(|o| o.zone_name == z.zone_name) {
                return Err(ModelError::new(
                    crate::ErrorCode::InvalidConfigurationRequest,
                    "A load balancer cannot be attached to multiple subnets in the same Availability Zone",
                ));
            }
        }
        let id = crate::ids::new_hex_id();
        Ok(Self {
            arn: format!(
                "{}:loadbalancer/{}/{name}/{id}",
                crate::ids::elb_arn_prefix(region, account),
                lb_type.arn_tag()
            ),
            name: name.to_string(),
            lb_type,
            scheme,
            ip_address_type: IpAddressType::Ipv4,
            zones,
            security_groups: Vec::new(),
            attributes: Attributes::new(lb_type.attribute_set()),
            node_index,
            created_ms,
        })
    }

    /// The id part of the ARN.
    pub fn id(&self) -> &str {
        self.arn.rsplit('/').next().unwrap_or_default()
    }

    /// `app/NAME/ID`, the CloudWatch `LoadBalancer` dimension and CloudFormation
    /// `LoadBalancerFullName`.
    pub fn full_name(&self) -> String {
        format!("{}/{}/{}", self.lb_type.arn_tag(), self.name, self.id())
    }

    /// `NAME-NNNNNNNNNN.elb.weir.internal` (internal ones are prefixed `internal-`, as in AWS).
    pub fn dns_name(&self) -> String {
        let digits = u64::from_str_radix(&self.id()[..8.min(self.id().len())], 16).unwrap_or(0)
            % 10_000_000_000;
        let prefix = if self.scheme == Scheme::Internal { "internal-" } else { "" };
        format!("{prefix}{}-{digits:010}.elb.weir.internal", self.name)
    }
}

/// AWS's load balancer name rules.
pub fn validate_lb_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.starts_with("internal-");
    if ok {
        Ok(())
    } else {
        Err(ModelError::validation(format!(
            "Load balancer name '{name}' cannot be longer than '32' characters, must contain only alphanumeric characters or hyphens, must not begin or end with a hyphen, and must not begin with 'internal-'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zones::subnet_zone;

    fn zones() -> Vec<AvailabilityZone> {
        vec![
            subnet_zone("us-east-1", "subnet-0000000000000000a").unwrap(),
            subnet_zone("us-east-1", "subnet-0000000000000000b").unwrap(),
        ]
    }

    #[test]
    fn names_and_arns() {
        let lb = LoadBalancer::new(
            "us-east-1",
            "123456789012",
            "web",
            LoadBalancerType::Application,
            Scheme::InternetFacing,
            zones(),
            1,
            0,
        )
        .unwrap();
        assert!(lb.arn.starts_with(
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/"
        ));
        assert_eq!(lb.full_name(), format!("app/web/{}", lb.id()));
        assert!(lb.dns_name().starts_with("web-") && lb.dns_name().ends_with(".elb.weir.internal"));
        for bad in ["", "-a", "a-", "internal-x", "a_b", &"x".repeat(33)] {
            assert!(validate_lb_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn alb_needs_two_zones() {
        let one = zones()[..1].to_vec();
        assert!(LoadBalancer::new(
            "us-east-1",
            "1",
            "a",
            LoadBalancerType::Application,
            Scheme::Internal,
            one.clone(),
            1,
            0
        )
        .is_err());
        assert!(LoadBalancer::new(
            "us-east-1",
            "1",
            "a",
            LoadBalancerType::Network,
            Scheme::Internal,
            one,
            1,
            0
        )
        .is_ok());
    }
}
