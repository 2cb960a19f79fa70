//! The flow tuple of an IP packet (sans-I/O): protocol, addresses and, for TCP, UDP and SCTP,
//! ports. Packets without ports (ICMP, non-first fragments, other protocols) have ports 0, so
//! they hash on the 3-tuple.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol number of TCP.
pub const TCP: u8 = 6;
/// IP protocol number of UDP.
pub const UDP: u8 = 17;
const SCTP: u8 = 132;

/// A packet's flow identity as seen in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowTuple {
    /// IP protocol number.
    pub proto: u8,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (0 when the protocol has none).
    pub sport: u16,
    /// Destination port (0 when the protocol has none).
    pub dport: u16,
}

/// Why a packet has no flow tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Not IPv4 or IPv6.
    #[error("not an IP packet")]
    NotIp,
    /// Shorter than its headers.
    #[error("truncated IP packet")]
    Truncated,
}

impl FlowTuple {
    /// Reads the tuple of an IPv4 or IPv6 packet. IPv6 extension headers are not walked: the
    /// tuple of such a packet uses the first next-header value and ports 0.
    pub fn parse(p: &[u8]) -> Result<Self, PacketError> {
        match p.first().map(|b| b >> 4) {
            Some(4) => {
                if p.len() < 20 {
                    return Err(PacketError::Truncated);
                }
                let ihl = usize::from(p[0] & 0x0f) * 4;
                if ihl < 20 || p.len() < ihl {
                    return Err(PacketError::Truncated);
                }
                let proto = p[9];
                let src = IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15]));
                let dst = IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19]));
                let frag_offset = u16::from_be_bytes([p[6] & 0x1f, p[7]]);
                let (sport, dport) =
                    if frag_offset == 0 { ports(proto, &p[ihl..]) } else { (0, 0) };
                Ok(Self { proto, src, dst, sport, dport })
            }
            Some(6) => {
                if p.len() < 40 {
                    return Err(PacketError::Truncated);
                }
                let mut s = [0u8; 16];
                let mut d = [0u8; 16];
                s.copy_from_slice(&p[8..24]);
                d.copy_from_slice(&p[24..40]);
                let proto = p[6];
                let (sport, dport) = ports(proto, &p[40..]);
                Ok(Self {
                    proto,
                    src: IpAddr::V6(Ipv6Addr::from(s)),
                    dst: IpAddr::V6(Ipv6Addr::from(d)),
                    sport,
                    dport,
                })
            }
            _ => Err(PacketError::NotIp),
        }
    }

    /// The same flow seen from the other side.
    pub fn reversed(&self) -> Self {
        Self {
            proto: self.proto,
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
        }
    }
}

fn ports(proto: u8, l4: &[u8]) -> (u16, u16) {
    match proto {
        TCP | UDP | SCTP if l4.len() >= 4 => {
            (u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]]))
        }
        _ => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4(proto: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, (frag >> 8) as u8, frag as u8, 64, proto, 0, 0];
        p.extend_from_slice(&[10, 1, 0, 2, 10, 2, 0, 2]);
        p.extend_from_slice(l4);
        p
    }

    #[test]
    fn reads_ipv4_and_ipv6_tuples() {
        let t = FlowTuple::parse(&ipv4(TCP, 0, &[0x9c, 0x40, 0, 80, 0, 0, 0, 0])).unwrap();
        assert_eq!((t.proto, t.sport, t.dport), (TCP, 40000, 80));
        assert_eq!(t.src, IpAddr::from([10, 1, 0, 2]));
        assert_eq!(t.reversed().reversed(), t);
        // A non-first fragment has no ports.
        let t = FlowTuple::parse(&ipv4(UDP, 0x0010, &[1, 2, 3, 4])).unwrap();
        assert_eq!((t.sport, t.dport), (0, 0));
        // ICMP has none either.
        assert_eq!(FlowTuple::parse(&ipv4(1, 0, &[8, 0, 0, 0])).unwrap().dport, 0);
        let mut v6 = vec![0x60, 0, 0, 0, 0, 8, UDP, 64];
        v6.extend_from_slice(&[0xfd; 16]);
        v6.extend_from_slice(&[0xfe; 16]);
        v6.extend_from_slice(&[0, 53, 0, 54, 0, 8, 0, 0]);
        let t = FlowTuple::parse(&v6).unwrap();
        assert_eq!((t.proto, t.sport, t.dport), (UDP, 53, 54));
        assert_eq!(FlowTuple::parse(&[0x45; 10]), Err(PacketError::Truncated));
        assert_eq!(FlowTuple::parse(&[0x15; 40]), Err(PacketError::NotIp));
        assert_eq!(FlowTuple::parse(&[0x4f; 40]), Err(PacketError::Truncated));
    }
}
