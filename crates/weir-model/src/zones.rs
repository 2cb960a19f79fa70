//! Availability zones, the default VPC and its subnets, and zone-node addresses.
//!
//! Weir models one region with six zones `us-east-1a` … `us-east-1f`. The default VPC has one
//! subnet per zone, `subnet-0000000000000000a` … `subnet-0000000000000000f`. A load balancer's
//! node in zone number `z` (a = 1) binds the loopback address `127.0.z.n`, where `n` is the load
//! balancer's node index (1–254); IP targets in `127.0.z.0/24` (z = 1..6) are in zone `z`, any
//! other target address is in zone a unless the target names its zone.

use std::net::Ipv4Addr;

/// Zone letters Weir models.
pub const ZONE_LETTERS: [char; 6] = ['a', 'b', 'c', 'd', 'e', 'f'];
/// Id of the default VPC.
pub const DEFAULT_VPC_ID: &str = "vpc-00000000000000001";

/// One zone that a load balancer is enabled in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AvailabilityZone {
    /// Zone name, e.g. `us-east-1a`.
    pub zone_name: String,
    /// The subnet in that zone.
    pub subnet_id: String,
}

/// Name of zone number `n` (0-based) in `region`.
pub fn zone_name(region: &str, n: usize) -> String {
    format!("{region}{}", ZONE_LETTERS[n % ZONE_LETTERS.len()])
}

/// The default subnet id of zone number `n` (0-based).
pub fn default_subnet_id(n: usize) -> String {
    format!("subnet-{:0>17}", ZONE_LETTERS[n % ZONE_LETTERS.len()])
}

/// Zone number (0-based) of a zone name such as `us-east-1c`.
pub fn zone_index(zone_name: &str) -> Option<usize> {
    let last = zone_name.chars().last()?;
    ZONE_LETTERS.iter().position(|&c| c == last)
}

/// Resolves a subnet id of the default VPC to its zone.
pub fn subnet_zone(region: &str, subnet_id: &str) -> Option<AvailabilityZone> {
    (0..ZONE_LETTERS.len()).find(|&n| default_subnet_id(n) == subnet_id).map(|n| AvailabilityZone {
        zone_name: zone_name(region, n),
        subnet_id: subnet_id.to_string(),
    })
}

/// The loopback address of a load balancer's node in zone number `zone` (0-based).
pub fn node_address(zone: usize, node_index: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, (zone + 1) as u8, node_index)
}

/// The zone number (0-based) of an IPv4 target address, per the mapping in the module docs.
pub fn zone_of_address(addr: Ipv4Addr) -> usize {
    let o = addr.octets();
    if o[0] == 127 && o[1] == 0 && (1..=6).contains(&o[2]) {
        (o[2] - 1) as usize
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_map_to_zones() {
        assert_eq!(default_subnet_id(0), "subnet-0000000000000000a");
        let z = subnet_zone("us-east-1", "subnet-0000000000000000b").unwrap();
        assert_eq!(z.zone_name, "us-east-1b");
        assert!(subnet_zone("us-east-1", "subnet-nope").is_none());
        assert_eq!(zone_index("us-east-1c"), Some(2));
        assert_eq!(node_address(1, 7), Ipv4Addr::new(127, 0, 2, 7));
        assert_eq!(zone_of_address(Ipv4Addr::new(127, 0, 3, 9)), 2);
        assert_eq!(zone_of_address(Ipv4Addr::LOCALHOST), 0);
    }
}
