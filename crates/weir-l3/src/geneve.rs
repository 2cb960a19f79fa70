//! GENEVE (RFC 8926) encoding and decoding, with the AWS Gateway Load Balancer options.
//!
//! Sans-I/O: [`Geneve::parse`] reads a UDP payload without copying, [`encode`] writes one into
//! a caller's buffer. The GWLB carries three options of class `0x0108` ([`AWS_OPTION_CLASS`]):
//! type 1, the gateway endpoint id (8 bytes); type 2, the attachment id (8 bytes); type 3, the
//! flow cookie (4 bytes). Appliances must return packets with the options they received.
//!
//! ```text
//!  0                   1                   2                   3
//! |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
//! |        Virtual Network Identifier (VNI)       |    Reserved   |
//! |          Option Class         |      Type     |R|R|R| Length  |  (options, Opt Len words)
//! ```

/// The IANA UDP port of GENEVE.
pub const GENEVE_PORT: u16 = 6081;
/// The option class AWS uses for the GWLB's metadata.
pub const AWS_OPTION_CLASS: u16 = 0x0108;
/// Option type: gateway (VPC) endpoint id, 8 bytes.
pub const OPT_ENDPOINT_ID: u8 = 1;
/// Option type: attachment id, 8 bytes.
pub const OPT_ATTACHMENT_ID: u8 = 2;
/// Option type: flow cookie, 4 bytes.
pub const OPT_FLOW_COOKIE: u8 = 3;
/// Protocol type of an IPv4 payload.
pub const PROTO_IPV4: u16 = 0x0800;
/// Protocol type of an IPv6 payload.
pub const PROTO_IPV6: u16 = 0x86DD;
/// Protocol type of an Ethernet payload (Linux's default "transparent Ethernet bridging").
pub const PROTO_ETHERNET: u16 = 0x6558;
/// Length of the fixed header.
pub const BASE_LEN: usize = 8;
/// Length of the header the GWLB writes (fixed header and its three options).
pub const GWLB_HEADER_LEN: usize = BASE_LEN + 12 + 12 + 8;

/// Why a datagram is not a GENEVE packet Weir accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeneveError {
    /// Shorter than the fixed header or than the options it announces.
    #[error("truncated GENEVE header")]
    Truncated,
    /// Version other than 0.
    #[error("unsupported GENEVE version {0}")]
    Version(u8),
    /// An option's length runs past the options area.
    #[error("GENEVE option overruns the header")]
    OptionOverrun,
    /// A critical option Weir does not understand (RFC 8926 §3.5: must drop).
    #[error("unknown critical GENEVE option class {class:#06x} type {kind}")]
    UnknownCritical {
        /// Option class.
        class: u16,
        /// Option type.
        kind: u8,
    },
}

/// A parsed GENEVE packet, borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geneve<'a> {
    /// O bit: a control packet, not data.
    pub oam: bool,
    /// C bit: some option is critical.
    pub critical: bool,
    /// Protocol type of the payload (an EtherType).
    pub protocol: u16,
    /// Virtual network identifier (24 bits).
    pub vni: u32,
    /// The options area.
    pub options: &'a [u8],
    /// The encapsulated packet.
    pub payload: &'a [u8],
}

/// One option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneveOption<'a> {
    /// Option class.
    pub class: u16,
    /// Type (the high bit marks it critical).
    pub kind: u8,
    /// Data (a multiple of 4 bytes).
    pub data: &'a [u8],
}

impl GeneveOption<'_> {
    /// Whether the receiver must drop the packet if it does not understand this option.
    pub fn is_critical(&self) -> bool {
        self.kind & 0x80 != 0
    }
}

/// Iterator over the options of a [`Geneve`] packet (stops at the first malformed one; `parse`
/// has already rejected packets with malformed options).
#[derive(Debug, Clone)]
pub struct Options<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Options<'a> {
    type Item = GeneveOption<'a>;

    fn next(&mut self) -> Option<GeneveOption<'a>> {
        let (opt, rest) = split_option(self.rest).ok()??;
        self.rest = rest;
        Some(opt)
    }
}

type Split<'a> = Option<(GeneveOption<'a>, &'a [u8])>;

fn split_option(b: &[u8]) -> Result<Split<'_>, GeneveError> {
    if b.is_empty() {
        return Ok(None);
    }
    if b.len() < 4 {
        return Err(GeneveError::OptionOverrun);
    }
    let len = usize::from(b[3] & 0x1f) * 4;
    let data = b.get(4..4 + len).ok_or(GeneveError::OptionOverrun)?;
    let opt = GeneveOption { class: u16::from_be_bytes([b[0], b[1]]), kind: b[2], data };
    Ok(Some((opt, &b[4 + len..])))
}

impl<'a> Geneve<'a> {
    /// Parses a UDP payload. Options are checked for framing; an unknown option marked
    /// critical is refused, as RFC 8926 requires of a receiver.
    pub fn parse(b: &'a [u8]) -> Result<Self, GeneveError> {
        if b.len() < BASE_LEN {
            return Err(GeneveError::Truncated);
        }
        let version = b[0] >> 6;
        if version != 0 {
            return Err(GeneveError::Version(version));
        }
        let opt_len = usize::from(b[0] & 0x3f) * 4;
        let options = b.get(BASE_LEN..BASE_LEN + opt_len).ok_or(GeneveError::Truncated)?;
        let mut rest = options;
        while let Some((opt, r)) = split_option(rest)? {
            if opt.is_critical() && !(opt.class == AWS_OPTION_CLASS && known_aws(opt.kind & 0x7f)) {
                return Err(GeneveError::UnknownCritical { class: opt.class, kind: opt.kind });
            }
            rest = r;
        }
        Ok(Self {
            oam: b[1] & 0x80 != 0,
            critical: b[1] & 0x40 != 0,
            protocol: u16::from_be_bytes([b[2], b[3]]),
            vni: u32::from_be_bytes([0, b[4], b[5], b[6]]),
            options,
            payload: &b[BASE_LEN + opt_len..],
        })
    }

    /// The options, in order.
    pub fn options(&self) -> Options<'a> {
        Options { rest: self.options }
    }

    /// The GWLB metadata in the options, where present.
    pub fn gwlb(&self) -> GwlbOptions {
        let mut out = GwlbOptions::default();
        for o in self.options().filter(|o| o.class == AWS_OPTION_CLASS) {
            match (o.kind & 0x7f, o.data.len()) {
                (OPT_ENDPOINT_ID, 8) => out.endpoint_id = Some(be_u64(o.data)),
                (OPT_ATTACHMENT_ID, 8) => out.attachment_id = Some(be_u64(o.data)),
                (OPT_FLOW_COOKIE, 4) => {
                    out.flow_cookie =
                        Some(u32::from_be_bytes([o.data[0], o.data[1], o.data[2], o.data[3]]))
                }
                _ => {}
            }
        }
        out
    }
}

fn known_aws(kind: u8) -> bool {
    matches!(kind, OPT_ENDPOINT_ID | OPT_ATTACHMENT_ID | OPT_FLOW_COOKIE)
}

fn be_u64(d: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&d[..8]);
    u64::from_be_bytes(a)
}

/// The GWLB options of a packet (each `None` when absent, as from a peer that strips options).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GwlbOptions {
    /// Gateway endpoint id.
    pub endpoint_id: Option<u64>,
    /// Attachment id.
    pub attachment_id: Option<u64>,
    /// Flow cookie.
    pub flow_cookie: Option<u32>,
}

/// The metadata the GWLB writes on every packet it sends to an appliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GwlbMetadata {
    /// Gateway endpoint the flow came from.
    pub endpoint_id: u64,
    /// Attachment id (Weir: the load balancer's).
    pub attachment_id: u64,
    /// Cookie of the flow.
    pub flow_cookie: u32,
}

impl GwlbMetadata {
    /// Appends a GENEVE packet with these options around `inner` (an IP packet of `protocol`)
    /// to `out`.
    pub fn encode(&self, protocol: u16, inner: &[u8], out: &mut Vec<u8>) {
        let endpoint = self.endpoint_id.to_be_bytes();
        let attachment = self.attachment_id.to_be_bytes();
        let cookie = self.flow_cookie.to_be_bytes();
        encode(
            protocol,
            0,
            &[
                (AWS_OPTION_CLASS, OPT_ENDPOINT_ID, &endpoint),
                (AWS_OPTION_CLASS, OPT_ATTACHMENT_ID, &attachment),
                (AWS_OPTION_CLASS, OPT_FLOW_COOKIE, &cookie),
            ],
            inner,
            out,
        );
    }
}

/// Appends a GENEVE packet to `out`: `options` as (class, type, data) with data a multiple of
/// 4 bytes and at most 124 bytes each (longer data is truncated to fit). The C bit is set when
/// an option type has its critical bit set.
pub fn encode(
    protocol: u16,
    vni: u32,
    options: &[(u16, u8, &[u8])],
    inner: &[u8],
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.extend_from_slice(&[0; BASE_LEN]);
    let mut critical = false;
    let mut words = 0usize;
    for &(class, kind, data) in options {
        let len = (data.len() / 4).min(31);
        if words + 1 + len > 63 {
            break;
        }
        words += 1 + len;
        critical |= kind & 0x80 != 0;
        out.extend_from_slice(&class.to_be_bytes());
        out.push(kind);
        out.push(len as u8);
        out.extend_from_slice(&data[..len * 4]);
    }
    let h = &mut out[start..start + BASE_LEN];
    h[0] = words as u8;
    h[1] = if critical { 0x40 } else { 0 };
    h[2..4].copy_from_slice(&protocol.to_be_bytes());
    let v = (vni & 0x00ff_ffff).to_be_bytes();
    h[4..7].copy_from_slice(&v[1..4]);
    out.extend_from_slice(inner);
}

/// The GENEVE protocol type for an IP packet (from its version nibble), if it is one.
pub fn ip_protocol_type(packet: &[u8]) -> Option<u16> {
    match packet.first()? >> 4 {
        4 => Some(PROTO_IPV4),
        6 => Some(PROTO_IPV6),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn gwlb_packet_layout_matches_the_aws_format() {
        let meta = GwlbMetadata {
            endpoint_id: 0x0102_0304_0506_0708,
            attachment_id: 0x1112_1314_1516_1718,
            flow_cookie: 0xa1b2_c3d4,
        };
        let mut out = Vec::new();
        meta.encode(PROTO_IPV4, &[0x45, 0, 0, 20], &mut out);
        assert_eq!(out.len(), GWLB_HEADER_LEN + 4);
        // Version 0, 8 option words, no flags, IPv4, VNI 0.
        assert_eq!(&out[..8], &[0x08, 0x00, 0x08, 0x00, 0, 0, 0, 0]);
        // Endpoint id: class 0x0108, type 1, length 2 words.
        assert_eq!(&out[8..12], &[0x01, 0x08, 0x01, 0x02]);
        assert_eq!(&out[12..20], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&out[20..24], &[0x01, 0x08, 0x02, 0x02]);
        assert_eq!(&out[32..36], &[0x01, 0x08, 0x03, 0x01]);
        assert_eq!(&out[36..40], &[0xa1, 0xb2, 0xc3, 0xd4]);
        let g = Geneve::parse(&out).unwrap();
        assert_eq!(g.payload, &[0x45, 0, 0, 20]);
        assert_eq!(g.protocol, PROTO_IPV4);
        assert_eq!(
            g.gwlb(),
            GwlbOptions {
                endpoint_id: Some(meta.endpoint_id),
                attachment_id: Some(meta.attachment_id),
                flow_cookie: Some(meta.flow_cookie)
            }
        );
    }

    #[test]
    fn malformed_packets_are_refused() {
        assert_eq!(Geneve::parse(&[0; 7]), Err(GeneveError::Truncated));
        assert_eq!(Geneve::parse(&[0x40, 0, 8, 0, 0, 0, 0, 0]), Err(GeneveError::Version(1)));
        // Announces one option word but has none.
        assert_eq!(Geneve::parse(&[0x01, 0, 8, 0, 0, 0, 0, 0]), Err(GeneveError::Truncated));
        // An option claiming 4 data words inside a 1-word area.
        let b = [0x01, 0, 8, 0, 0, 0, 0, 0, 0x01, 0x08, 0x01, 0x04];
        assert_eq!(Geneve::parse(&b), Err(GeneveError::OptionOverrun));
        // Unknown critical option.
        let mut out = Vec::new();
        encode(PROTO_IPV4, 7, &[(0x0200, 0x85, &[0; 4])], &[], &mut out);
        assert_eq!(
            Geneve::parse(&out),
            Err(GeneveError::UnknownCritical { class: 0x0200, kind: 0x85 })
        );
        // Unknown non-critical options are skipped.
        out.clear();
        encode(PROTO_IPV6, 0x123456, &[(0x0200, 0x05, &[9; 8])], &[6], &mut out);
        let g = Geneve::parse(&out).unwrap();
        assert_eq!((g.vni, g.protocol, g.payload), (0x123456, PROTO_IPV6, &[6u8][..]));
        assert_eq!(g.gwlb(), GwlbOptions::default());
    }

    proptest! {
        #[test]
        fn encode_then_parse_round_trips(
            protocol in any::<u16>(),
            vni in 0u32..1 << 24,
            opts in proptest::collection::vec((any::<u16>(), 0u8..0x80, proptest::collection::vec(any::<u8>(), 0..3usize).prop_map(|w| w.repeat(4))), 0..4),
            inner in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let refs: Vec<(u16, u8, &[u8])> = opts.iter().map(|(c, k, d)| (*c, *k, d.as_slice())).collect();
            let mut out = Vec::new();
            encode(protocol, vni, &refs, &inner, &mut out);
            let g = Geneve::parse(&out).unwrap();
            prop_assert_eq!(g.protocol, protocol);
            prop_assert_eq!(g.vni, vni);
            prop_assert_eq!(g.payload, inner.as_slice());
            let back: Vec<(u16, u8, Vec<u8>)> = g.options().map(|o| (o.class, o.kind, o.data.to_vec())).collect();
            prop_assert_eq!(back, opts);
        }

        #[test]
        fn parse_never_panics_and_stays_in_bounds(b in proptest::collection::vec(any::<u8>(), 0..96)) {
            if let Ok(g) = Geneve::parse(&b) {
                prop_assert!(g.options.len() + g.payload.len() + BASE_LEN == b.len());
                let _ = g.gwlb();
                let _ = g.options().count();
            }
        }
    }
}
