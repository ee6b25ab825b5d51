//! ICMPv4 (RFC 792) and ICMPv6 (RFC 4443, ND from RFC 4861), and the packet an ICMP error quotes.

use std::net::{IpAddr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::ip::{Ipv4Packet, Ipv6Packet, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use super::{checksum, SeqNumber, WireError};

/// What an ICMP error quotes of the packet that caused it. Tolerates truncation: only the IP header and the
/// first 8 transport bytes are guaranteed (RFC 1122 §3.2.2, RFC 792).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotedPacket {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    /// IPv4 header length, or 40 + extension headers for IPv6.
    pub ip_header_len: usize,
    /// The quoted packet's own total length field (IPv4) or 40 + payload length (IPv6).
    pub total_len_field: usize,
    /// IPv4 identification of the quoted packet.
    pub ip_ident: Option<u16>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub tcp_seq: Option<SeqNumber>,
    pub udp_length: Option<u16>,
    /// Bytes of the quoted packet after its IP header(s).
    pub quoted_transport_bytes: usize,
}

impl QuotedPacket {
    pub fn parse(b: &[u8]) -> Result<QuotedPacket, WireError> {
        let version = b.first().map(|v| v >> 4);
        let (src, dst, protocol, hl, total, ident) = match version {
            Some(4) => {
                let p = Ipv4Packet::new_checked(b, true)?;
                (
                    IpAddr::V4(p.src_addr()),
                    IpAddr::V4(p.dst_addr()),
                    p.protocol(),
                    p.header_len(),
                    p.total_len(),
                    Some(p.ident()),
                )
            }
            Some(6) => {
                let p = Ipv6Packet::new_checked(b, true)?;
                let ul = p.upper_layer()?;
                (
                    IpAddr::V6(p.src_addr()),
                    IpAddr::V6(p.dst_addr()),
                    ul.protocol,
                    ul.offset,
                    40 + p.payload_len(),
                    None,
                )
            }
            _ => {
                return Err(WireError::malformed(
                    "quoted packet",
                    "not IPv4 or IPv6".to_string(),
                ))
            }
        };
        let t = b.get(hl..).unwrap_or(&[]);
        let u16_at = |at: usize| t.get(at..at + 2).map(|x| u16::from_be_bytes([x[0], x[1]]));
        let is_port_proto = protocol == PROTO_TCP || protocol == PROTO_UDP;
        Ok(QuotedPacket {
            src,
            dst,
            protocol,
            ip_header_len: hl,
            total_len_field: total,
            ip_ident: ident,
            src_port: if is_port_proto { u16_at(0) } else { None },
            dst_port: if is_port_proto { u16_at(2) } else { None },
            tcp_seq: if protocol == PROTO_TCP {
                t.get(4..8)
                    .map(|x| SeqNumber(u32::from_be_bytes([x[0], x[1], x[2], x[3]])))
            } else {
                None
            },
            udp_length: if protocol == PROTO_UDP {
                u16_at(4)
            } else {
                None
            },
            quoted_transport_bytes: t.len(),
        })
    }
}

/// A parsed ICMPv4 or ICMPv6 message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IcmpRepr {
    pub icmp_type: u8,
    pub code: u8,
    pub checksum_ok: bool,
    /// For errors (v4: 3, 4, 5, 11, 12; v6: 1–4): the quoted packet, if it parses.
    pub quoted: Option<QuotedPacket>,
    /// For errors: the number of quoted bytes.
    pub quoted_len: usize,
    /// For Neighbour Solicitation/Advertisement: the target address.
    pub nd_target: Option<Ipv6Addr>,
}

impl IcmpRepr {
    fn is_error_v4(t: u8) -> bool {
        matches!(t, 3 | 4 | 5 | 11 | 12)
    }
    fn is_error_v6(t: u8) -> bool {
        (1..=4).contains(&t)
    }

    /// Parses an ICMPv4 message (`b` is the IP payload).
    pub fn parse_v4(b: &[u8]) -> Result<IcmpRepr, WireError> {
        WireError::need("icmp", b, 8)?;
        let (t, code) = (b[0], b[1]);
        let error = Self::is_error_v4(t);
        Ok(IcmpRepr {
            icmp_type: t,
            code,
            checksum_ok: checksum::checksum(b) == 0,
            quoted: if error {
                QuotedPacket::parse(&b[8..]).ok()
            } else {
                None
            },
            quoted_len: if error { b.len() - 8 } else { 0 },
            nd_target: None,
        })
    }

    /// Parses an ICMPv6 message (`b` is the upper-layer payload) and verifies its pseudo-header checksum.
    pub fn parse_v6(b: &[u8], src: IpAddr, dst: IpAddr) -> Result<IcmpRepr, WireError> {
        WireError::need("icmpv6", b, 8)?;
        let (t, code) = (b[0], b[1]);
        let error = Self::is_error_v6(t);
        let nd_target = if matches!(t, 135 | 136) {
            b.get(8..24)
                .and_then(|x| <[u8; 16]>::try_from(x).ok())
                .map(Ipv6Addr::from)
        } else {
            None
        };
        Ok(IcmpRepr {
            icmp_type: t,
            code,
            checksum_ok: checksum::upper_layer(src, dst, PROTO_ICMPV6, b) == 0,
            quoted: if error {
                QuotedPacket::parse(&b[8..]).ok()
            } else {
                None
            },
            quoted_len: if error { b.len() - 8 } else { 0 },
            nd_target,
        })
    }

    /// A short name, e.g. `port-unreachable`, `echo-request`, `ns`.
    pub fn name(&self, v6: bool) -> String {
        let s = match (v6, self.icmp_type, self.code) {
            (false, 3, 3) | (true, 1, 4) => "port-unreachable",
            (false, 3, 1) | (true, 1, 3) => "host-unreachable",
            (false, 3, 4) => "frag-needed",
            (true, 2, _) => "packet-too-big",
            (false, 3, _) | (true, 1, _) => "unreachable",
            (false, 11, _) | (true, 3, _) => "time-exceeded",
            (false, 8, _) | (true, 128, _) => "echo-request",
            (false, 0, _) | (true, 129, _) => "echo-reply",
            (true, 133, _) => "rs",
            (true, 134, _) => "ra",
            (true, 135, _) => "ns",
            (true, 136, _) => "na",
            (true, 143, _) => "mld-report",
            (_, t, c) => return format!("type {t} code {c}"),
        };
        s.to_string()
    }
}
