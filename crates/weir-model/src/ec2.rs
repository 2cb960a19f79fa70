//! The few EC2 resources tools create before ELB calls: VPCs, subnets (which carry the zone a
//! load balancer node lands in), security groups and launch templates. They allocate ids and
//! zones and nothing more: Weir does not route by VPC or enforce security groups.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::error::{ErrorCode, ModelError, Result};
use crate::zones;

/// A VPC.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Vpc {
    /// `vpc-…`.
    pub id: String,
    /// IPv4 CIDR block.
    pub cidr: String,
    /// Whether this is the default VPC.
    pub is_default: bool,
}

/// A subnet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Subnet {
    /// `subnet-…`.
    pub id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// Zone name.
    pub availability_zone: String,
    /// IPv4 CIDR block.
    pub cidr: String,
    /// Whether it is the default subnet of its zone.
    pub default_for_az: bool,
}

/// A security group (recorded, not enforced).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecurityGroup {
    /// `sg-…`.
    pub id: String,
    /// Name, unique per VPC.
    pub name: String,
    /// Description.
    pub description: String,
    /// Its VPC.
    pub vpc_id: String,
}

/// A launch template (its data is kept as given, for Auto Scaling to read).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LaunchTemplate {
    /// `lt-…`.
    pub id: String,
    /// Name.
    pub name: String,
    /// `LaunchTemplateData` in the AWS JSON shape.
    pub data: serde_json::Value,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
}

/// Every EC2 resource created through the API (the default VPC and subnets are implied).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ec2 {
    /// VPCs by id.
    pub vpcs: BTreeMap<String, Vpc>,
    /// Subnets by id.
    pub subnets: BTreeMap<String, Subnet>,
    /// Security groups by id.
    pub security_groups: BTreeMap<String, SecurityGroup>,
    /// Launch templates by id.
    pub launch_templates: BTreeMap<String, LaunchTemplate>,
}

/// A new EC2-style id: `prefix-` and 17 hex digits.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:017x}", crate::ids::random_u64() & 0x0fff_ffff_ffff_ffff)
}

/// Parses `a.b.c.d/n` (IPv4), returning network address and prefix.
pub fn parse_ipv4_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, p) = s.split_once('/')?;
    let a: Ipv4Addr = a.parse().ok()?;
    let p: u8 = p.parse().ok()?;
    (p <= 32).then_some((a, p))
}

fn within(inner: (Ipv4Addr, u8), outer: (Ipv4Addr, u8)) -> bool {
    let mask = |p: u8| if p == 0 { 0 } else { u32::MAX << (32 - p) };
    inner.1 >= outer.1 && u32::from(inner.0) & mask(outer.1) == u32::from(outer.0) & mask(outer.1)
}

fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    within(a, b) || within(b, a)
}

impl Ec2 {
    /// The default VPC.
    pub fn default_vpc() -> Vpc {
        Vpc { id: zones::DEFAULT_VPC_ID.into(), cidr: "172.31.0.0/16".into(), is_default: true }
    }

    /// The default subnets, one per zone.
    pub fn default_subnets(region: &str) -> Vec<Subnet> {
        (0..zones::ZONE_LETTERS.len())
            .map(|n| Subnet {
                id: zones::default_subnet_id(n),
                vpc_id: zones::DEFAULT_VPC_ID.into(),
                availability_zone: zones::zone_name(region, n),
                cidr: format!("172.31.{}.0/20", n * 16),
                default_for_az: true,
            })
            .collect()
    }

    /// Every VPC, the default one first.
    pub fn all_vpcs(&self) -> Vec<Vpc> {
        std::iter::once(Self::default_vpc()).chain(self.vpcs.values().cloned()).collect()
    }

    /// Every subnet, the default ones first.
    pub fn all_subnets(&self, region: &str) -> Vec<Subnet> {
        Self::default_subnets(region).into_iter().chain(self.subnets.values().cloned()).collect()
    }

    /// A subnet by id.
    pub fn subnet(&self, region: &str, id: &str) -> Option<Subnet> {
        self.all_subnets(region).into_iter().find(|s| s.id == id)
    }

    /// Creates a VPC (`/16` to `/28`).
    pub fn create_vpc(&mut self, cidr: &str) -> Result<Vpc> {
        match parse_ipv4_cidr(cidr) {
            Some((_, p)) if (16..=28).contains(&p) => {}
            _ => return Err(ModelError::new(ErrorCode::InvalidParameterValue, format!("Value ({cidr}) for parameter cidrBlock is invalid. This is not a valid CIDR block."))),
        }
        let vpc = Vpc { id: new_id("vpc"), cidr: cidr.into(), is_default: false };
        self.vpcs.insert(vpc.id.clone(), vpc.clone());
        Ok(vpc)
    }

    /// Deletes a VPC that has no subnets or security groups.
    pub fn delete_vpc(&mut self, id: &str) -> Result<()> {
        if !self.vpcs.contains_key(id) {
            return Err(ModelError::new(
                ErrorCode::InvalidVpcIdNotFound,
                format!("The vpc ID '{id}' does not exist"),
            ));
        }
        if self.subnets.values().any(|s| s.vpc_id == id)
            || self.security_groups.values().any(|g| g.vpc_id == id)
        {
            return Err(ModelError::new(
                ErrorCode::DependencyViolation,
                format!("The vpc '{id}' has dependencies and cannot be deleted."),
            ));
        }
        self.vpcs.remove(id);
        Ok(())
    }

    /// Creates a subnet inside a VPC's CIDR, not overlapping its other subnets.
    pub fn create_subnet(
        &mut self,
        region: &str,
        vpc_id: &str,
        cidr: &str,
        zone: Option<&str>,
    ) -> Result<Subnet> {
        let vpc = self.all_vpcs().into_iter().find(|v| v.id == vpc_id).ok_or_else(|| {
            ModelError::new(
                ErrorCode::InvalidVpcIdNotFound,
                format!("The vpc ID '{vpc_id}' does not exist"),
            )
        })?;
        let net = parse_ipv4_cidr(cidr).filter(|(_, p)| (16..=28).contains(p)).ok_or_else(|| ModelError::new(ErrorCode::InvalidParameterValue, format!("Value ({cidr}) for parameter cidrBlock is invalid. This is not a valid CIDR block.")))?;
        let vnet = parse_ipv4_cidr(&vpc.cidr)
            .ok_or_else(|| ModelError::validation("VPC CIDR is invalid"))?;
        if !within(net, vnet) {
            return Err(ModelError::new(
                ErrorCode::InvalidSubnetRange,
                format!("The CIDR '{cidr}' is invalid."),
            ));
        }
        if self
            .all_subnets(region)
            .iter()
            .filter(|s| s.vpc_id == vpc_id)
            .filter_map(|s| parse_ipv4_cidr(&s.cidr))
            .any(|o| overlaps(o, net))
        {
            return Err(ModelError::new(
                ErrorCode::InvalidSubnetConflict,
                format!("The CIDR '{cidr}' conflicts with another subnet"),
            ));
        }
        let zone = match zone {
            Some(z) if zones::zone_index(z).is_some() && z.starts_with(region) && z.len() == region.len() + 1 => z.to_string(),
            Some(z) => return Err(ModelError::new(ErrorCode::InvalidParameterValue, format!("Value ({z}) for parameter availabilityZone is invalid. Subnets can currently only be created in the following availability zones: {}", (0..zones::ZONE_LETTERS.len()).map(|n| zones::zone_name(region, n)).collect::<Vec<_>>().join(", ")))),
            None => zones::zone_name(region, self.subnets.len() % zones::ZONE_LETTERS.len()),
        };
        let s = Subnet {
            id: new_id("subnet"),
            vpc_id: vpc_id.into(),
            availability_zone: zone,
            cidr: cidr.into(),
            default_for_az: false,
        };
        self.subnets.insert(s.id.clone(), s.clone());
        Ok(s)
    }

    /// Deletes a subnet no load balancer uses (the caller checks that).
    pub fn delete_subnet(&mut self, id: &str) -> Result<()> {
        self.subnets.remove(id).map(|_| ()).ok_or_else(|| {
            ModelError::new(
                ErrorCode::InvalidSubnetIdNotFound,
                format!("The subnet ID '{id}' does not exist"),
            )
        })
    }

    /// Creates a security group; names are unique per VPC.
    pub fn create_security_group(
        &mut self,
        name: &str,
        description: &str,
        vpc_id: Option<&str>,
    ) -> Result<SecurityGroup> {
        let vpc_id = vpc_id.unwrap_or(zones::DEFAULT_VPC_ID).to_string();
        if !self.all_vpcs().iter().any(|v| v.id == vpc_id) {
            return Err(ModelError::new(
                ErrorCode::InvalidVpcIdNotFound,
                format!("The vpc ID '{vpc_id}' does not exist"),
            ));
        }
        if name.is_empty() || name.len() > 255 || name.starts_with("sg-") {
            return Err(ModelError::new(
                ErrorCode::InvalidParameterValue,
                format!("Invalid value '{name}' for groupName"),
            ));
        }
        if self.security_groups.values().any(|g| g.name == name && g.vpc_id == vpc_id) {
            return Err(ModelError::new(
                ErrorCode::InvalidGroupDuplicate,
                format!("The security group '{name}' already exists for VPC '{vpc_id}'"),
            ));
        }
        let g = SecurityGroup {
            id: new_id("sg"),
            name: name.into(),
            description: description.into(),
            vpc_id,
        };
        self.security_groups.insert(g.id.clone(), g.clone());
        Ok(g)
    }

    /// Deletes a security group.
    pub fn delete_security_group(&mut self, id: &str) -> Result<()> {
        self.security_groups.remove(id).map(|_| ()).ok_or_else(|| {
            ModelError::new(
                ErrorCode::InvalidGroupNotFound,
                format!("The security group '{id}' does not exist"),
            )
        })
    }

    /// Creates a launch template; names are unique.
    pub fn create_launch_template(
        &mut self,
        name: &str,
        data: serde_json::Value,
        created_ms: u64,
    ) -> Result<LaunchTemplate> {
        if name.len() < 3
            || name.len() > 128
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || "()./_-".contains(c))
        {
            return Err(ModelError::new(ErrorCode::InvalidParameterValue, format!("Launch template name '{name}' must be 3-128 characters of letters, digits and ( ) . / _ -")));
        }
        if self.launch_templates.values().any(|t| t.name == name) {
            return Err(ModelError::new(
                ErrorCode::InvalidLaunchTemplateNameAlreadyExists,
                format!("Launch template name already in use: '{name}'"),
            ));
        }
        let t = LaunchTemplate { id: new_id("lt"), name: name.into(), data, created_ms };
        self.launch_templates.insert(t.id.clone(), t.clone());
        Ok(t)
    }

    /// Replaces a launch template's data (instances launched from now on use it).
    pub fn set_launch_template_data(
        &mut self,
        id_or_name: &str,
        data: serde_json::Value,
    ) -> Result<()> {
        let t = self
            .launch_templates
            .values_mut()
            .find(|t| t.id == id_or_name || t.name == id_or_name)
            .ok_or_else(|| ModelError::new(ErrorCode::InvalidLaunchTemplateIdNotFound, format!("The specified launch template, with template ID or name {id_or_name}, does not exist.")))?;
        t.data = data;
        Ok(())
    }

    /// Deletes a launch template by id or name.
    pub fn delete_launch_template(&mut self, id_or_name: &str) -> Result<LaunchTemplate> {
        let id = self
            .launch_templates
            .values()
            .find(|t| t.id == id_or_name || t.name == id_or_name)
            .map(|t| t.id.clone());
        id.and_then(|id| self.launch_templates.remove(&id)).ok_or_else(|| ModelError::new(ErrorCode::InvalidLaunchTemplateIdNotFound, format!("The specified launch template, with template ID or name {id_or_name}, does not exist.")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vpcs_and_subnets() {
        let mut e = Ec2::default();
        let v = e.create_vpc("10.0.0.0/16").unwrap();
        assert!(v.id.starts_with("vpc-") && v.id.len() == 21);
        assert!(e.create_vpc("10.0.0.0/8").is_err());
        let s = e.create_subnet("us-east-1", &v.id, "10.0.1.0/24", Some("us-east-1c")).unwrap();
        assert_eq!(s.availability_zone, "us-east-1c");
        assert_eq!(
            e.create_subnet("us-east-1", &v.id, "10.0.1.128/25", None).unwrap_err().code,
            ErrorCode::InvalidSubnetConflict
        );
        assert_eq!(
            e.create_subnet("us-east-1", &v.id, "10.1.0.0/24", None).unwrap_err().code,
            ErrorCode::InvalidSubnetRange
        );
        assert!(e.create_subnet("us-east-1", &v.id, "10.0.2.0/24", Some("eu-west-1a")).is_err());
        assert_eq!(e.delete_vpc(&v.id).unwrap_err().code, ErrorCode::DependencyViolation);
        assert_eq!(e.subnet("us-east-1", &s.id).unwrap().cidr, "10.0.1.0/24");
        assert_eq!(
            e.subnet("us-east-1", "subnet-0000000000000000b").unwrap().availability_zone,
            "us-east-1b"
        );
    }

    #[test]
    fn groups_and_templates() {
        let mut e = Ec2::default();
        e.create_security_group("web", "web tier", None).unwrap();
        assert_eq!(
            e.create_security_group("web", "again", None).unwrap_err().code,
            ErrorCode::InvalidGroupDuplicate
        );
        let t =
            e.create_launch_template("web-lt", serde_json::json!({"ImageId": "ami-1"}), 0).unwrap();
        assert_eq!(
            e.create_launch_template("web-lt", serde_json::json!({}), 0).unwrap_err().code,
            ErrorCode::InvalidLaunchTemplateNameAlreadyExists
        );
        assert_eq!(e.delete_launch_template("web-lt").unwrap().id, t.id);
    }
}
