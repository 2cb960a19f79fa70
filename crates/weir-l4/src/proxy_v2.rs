//! The PROXY protocol version 2 header (haproxy.org/download/2.9/doc/proxy-protocol.txt) that
//! an NLB sends ahead of a connection's bytes when `proxy_protocol_v2.enabled` is on, carrying
//! the client's address. Sans-I/O: [`encode`] builds the bytes, [`decode`] parses them (for
//! backends, tests and the fuzz target).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12-byte signature every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The transport of the proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `SOCK_STREAM`.
    Stream,
    /// `SOCK_DGRAM`.
    Datagram,
}

/// A decoded header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `PROXY` (true) or `LOCAL` (false, e.g. health checks).
    pub proxy: bool,
    /// Transport, when the family is known.
    pub transport: Option<Transport>,
    /// Source and destination, for `PROXY` with an INET/INET6 family.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    /// TLVs (type, value) in order.
    pub tlvs: Vec<(u8, Vec<u8>)>,
    /// Total header length in bytes (16 + the length field).
    pub len: usize,
}

/// Why a header could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the header needs; read more.
    #[error("incomplete PROXY v2 header: need {0} bytes")]
    Incomplete(usize),
    /// Not a v2 header.
    #[error("not a PROXY v2 header")]
    BadSignature,
    /// Version is not 2, or the command is unknown.
    #[error("unsupported PROXY version or command {0:#04x}")]
    BadVersion(u8),
    /// The address block is shorter than its family needs, or a TLV overruns.
    #[error("malformed PROXY v2 header")]
    Malformed,
}

/// The header announcing a proxied connection from `src` to `dst`. Mixed families are mapped
/// to IPv6 (IPv4-mapped addresses), as the specification allows.
pub fn encode(src: SocketAddr, dst: SocketAddr, transport: Transport) -> Vec<u8> {
    let t = match transport {
        Transport::Stream => 0x1,
        Transport::Datagram => 0x2,
    };
    let mut out = Vec::with_capacity(52);
    out.extend_from_slice(&SIGNATURE);
    out.push(0x21); // version 2, PROXY
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x10 | t);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v) => v.to_ipv6_mapped(),
                IpAddr::V6(v) => v,
            };
            out.push(0x20 | t);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

/// Parses a header at the start of `buf`.
pub fn decode(buf: &[u8]) -> Result<Header, DecodeError> {
    if buf.len() < 16 {
        if !SIGNATURE.starts_with(&buf[..buf.len().min(12)]) {
            return Err(DecodeError::BadSignature);
        }
        return Err(DecodeError::Incomplete(16));
    }
    if buf[..12] != SIGNATURE {
        return Err(DecodeError::BadSignature);
    }
    let ver_cmd = buf[12];
    let proxy = match ver_cmd {
        0x20 => false,
        0x21 => true,
        v => return Err(DecodeError::BadVersion(v)),
    };
    let fam = buf[13];
    let body_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body_len;
    if buf.len() < len {
        return Err(DecodeError::Incomplete(len));
    }
    let body = &buf[16..len];
    let transport = match fam & 0x0f {
        0x1 => Some(Transport::Stream),
        0x2 => Some(Transport::Datagram),
        _ => None,
    };
    let (addresses, rest) = match fam >> 4 {
        0x1 if proxy => {
            let b = body.get(..12).ok_or(DecodeError::Malformed)?;
            let ip = |o: &[u8]| IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3]));
            let port = |o: &[u8]| u16::from_be_bytes([o[0], o[1]]);
            let a = (
                SocketAddr::new(ip(&b[0..4]), port(&b[8..10])),
                SocketAddr::new(ip(&b[4..8]), port(&b[10..12])),
            );
            (Some(a), &body[12..])
        }
        0x2 if proxy => {
            let b = body.get(..36).ok_or(DecodeError::Malformed)?;
            let ip = |o: &[u8]| {
                let mut a = [0u8; 16];
                a.copy_from_slice(o);
                IpAddr::V6(Ipv6Addr::from(a))
            };
            let port = |o: &[u8]| u16::from_be_bytes([o[0], o[1]]);
            let a = (
                SocketAddr::new(ip(&b[0..16]), port(&b[32..34])),
                SocketAddr::new(ip(&b[16..32]), port(&b[34..36])),
            );
            (Some(a), &body[36..])
        }
        0x3 if proxy => (None, body.get(216..).ok_or(DecodeError::Malformed)?),
        _ => (None, &body[body.len()..]),
    };
    let mut tlvs = Vec::new();
    let mut r = rest;
    while !r.is_empty() {
        if r.len() < 3 {
            return Err(DecodeError::Malformed);
        }
        let n = usize::from(u16::from_be_bytes([r[1], r[2]]));
        let v = r.get(3..3 + n).ok_or(DecodeError::Malformed)?;
        tlvs.push((r[0], v.to_vec()));
        r = &r[3 + n..];
    }
    Ok(Header { proxy, transport, addresses, tlvs, len })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ipv4_stream_header_matches_the_specification() {
        let h = encode(
            "192.0.2.1:56324".parse().unwrap(),
            "198.51.100.7:443".parse().unwrap(),
            Transport::Stream,
        );
        let mut want = SIGNATURE.to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0, 12, 192, 0, 2, 1, 198, 51, 100, 7]);
        want.extend_from_slice(&56324u16.to_be_bytes());
        want.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(h, want);
        let d = decode(&h).unwrap();
        assert_eq!(d.len, 28);
        assert_eq!(d.transport, Some(Transport::Stream));
    }

    #[test]
    fn mixed_families_map_to_ipv6() {
        let h = encode(
            "[2001:db8::1]:1".parse().unwrap(),
            "10.0.0.1:2".parse().unwrap(),
            Transport::Datagram,
        );
        let d = decode(&h).unwrap();
        let (s, t) = d.addresses.unwrap();
        assert_eq!(s, "[2001:db8::1]:1".parse().unwrap());
        assert_eq!(t.ip(), IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()));
    }

    #[test]
    fn bad_input_is_rejected_not_misread() {
        assert_eq!(decode(b"GET / HTTP/1.1\r\n"), Err(DecodeError::BadSignature));
        assert_eq!(decode(&SIGNATURE[..5]), Err(DecodeError::Incomplete(16)));
        let mut h =
            encode("1.2.3.4:5".parse().unwrap(), "5.6.7.8:9".parse().unwrap(), Transport::Stream);
        h[12] = 0x11;
        assert_eq!(decode(&h), Err(DecodeError::BadVersion(0x11)));
        let mut h =
            encode("1.2.3.4:5".parse().unwrap(), "5.6.7.8:9".parse().unwrap(), Transport::Stream);
        h[15] = 4; // claims 4 bytes: too short for INET
        assert_eq!(decode(&h), Err(DecodeError::Malformed));
    }

    #[test]
    fn tlvs_are_parsed() {
        let mut h =
            encode("1.2.3.4:5".parse().unwrap(), "5.6.7.8:9".parse().unwrap(), Transport::Stream);
        h[15] = 12 + 6;
        h.extend_from_slice(&[0xEA, 0, 3, b'a', b'b', b'c']);
        let d = decode(&h).unwrap();
        assert_eq!(d.tlvs, vec![(0xEA, b"abc".to_vec())]);
    }

    proptest! {
        #[test]
        fn encode_then_decode_round_trips(s in any::<SocketAddr>(), d in any::<SocketAddr>()) {
            let h = encode(s, d, Transport::Stream);
            let got = decode(&h).unwrap();
            let (gs, gd) = got.addresses.unwrap();
            let norm = |a: SocketAddr, other: SocketAddr| match (a, other) {
                (SocketAddr::V4(v), SocketAddr::V6(_)) => SocketAddr::new(IpAddr::V6(v.ip().to_ipv6_mapped()), v.port()),
                _ => SocketAddr::new(a.ip(), a.port()),
            };
            prop_assert_eq!(gs, norm(s, d));
            prop_assert_eq!(gd, norm(d, s));
            prop_assert_eq!(got.len, h.len());
        }

        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode(&b);
        }
    }
}
