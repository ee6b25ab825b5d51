//! The wire model: zero-copy views with checked constructors (`*Packet::new_checked`, the only door for
//! captured bytes), owned reprs (`TcpRepr`, `UdpRepr`, `IcmpRepr`, `ArpRepr`) with `parse`/`emit`, a wrap-aware
//! [`SeqNumber`], and [`parse_frame`], which dissects a whole frame into an owned [`Packet`].
//!
//! Malformed or truncated bytes are a [`WireError`], never a panic. Left out on purpose: IP options are not
//! interpreted (their length is honoured), fragments other than the first are not dissected further
//! (`Transport::Fragment` keeps their bytes; [`reassembly`] puts UDP datagrams back together), and checksums are
//! verified, not fixed.
//!
//! - [`link`] — Ethernet II and ARP.
//! - [`ip`] — IPv4 and IPv6 headers, extension headers walked to the upper layer.
//! - [`tcp`] — TCP segments and options.
//! - [`udp`] — UDP datagrams.
//! - [`icmp`] — ICMPv4 / ICMPv6 (incl. ND) and the packet an ICMP error quotes.
//! - [`checksum`] — the Internet checksum and the pseudo-headers.
//! - [`seq`] — the wrap-aware [`SeqNumber`].
//! - [`reassembly`] — UDP datagrams put back together from their IP fragments.

pub mod checksum;
pub mod icmp;
pub mod ip;
pub mod link;
pub mod reassembly;
pub mod seq;
pub mod tcp;
pub mod udp;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::frame::LinkType;
pub use icmp::{IcmpRepr, QuotedPacket};
pub use ip::{FragmentInfo, Ipv4Packet, Ipv6Packet};
pub use link::{ArpRepr, EthernetFrame};
pub use seq::SeqNumber;
pub use tcp::{TcpFlags, TcpOption, TcpPacket, TcpRepr};
pub use udp::{UdpPacket, UdpRepr};

/// Bytes that are not a valid packet of the layer named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    Truncated {
        layer: &'static str,
        needed: usize,
        got: usize,
    },
    Malformed {
        layer: &'static str,
        what: String,
    },
}

impl WireError {
    /// Fails unless `b` holds at least `n` bytes.
    pub fn need(layer: &'static str, b: &[u8], n: usize) -> Result<(), WireError> {
        if b.len() < n {
            Err(WireError::Truncated {
                layer,
                needed: n,
                got: b.len(),
            })
        } else {
            Ok(())
        }
    }
    pub fn malformed(layer: &'static str, what: String) -> WireError {
        WireError::Malformed { layer, what }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated { layer, needed, got } => {
                write!(f, "{layer}: truncated ({got} bytes, needs {needed})")
            }
            WireError::Malformed { layer, what } => write!(f, "{layer}: {what}"),
        }
    }
}

impl std::error::Error for WireError {}

/// State of a transport checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChecksumStatus {
    Valid,
    Invalid,
    /// IPv4 UDP checksum 0: not computed by the sender (RFC 768).
    NotComputed,
    /// The datagram is fragmented: the checksum covers bytes not in this frame.
    Unverifiable,
}

/// Ethernet header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetInfo {
    pub src: [u8; 6],
    pub dst: [u8; 6],
    pub ethertype: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Info {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub ident: u16,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    pub fragment_offset: u16,
    pub total_len: usize,
    pub header_len: usize,
    pub checksum_ok: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Info {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    pub payload_len: usize,
    pub flow_label: u32,
    pub traffic_class: u8,
    pub fragment: Option<FragmentInfo>,
}

/// The transport layer of an IP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Tcp {
        repr: TcpRepr,
        checksum: ChecksumStatus,
        payload: Vec<u8>,
        /// A malformed options area: `repr.options` holds the options before the fault
        /// ([`TcpOption::parse_prefix`]).
        options_error: Option<WireError>,
    },
    Udp {
        repr: UdpRepr,
        checksum: ChecksumStatus,
        payload: Vec<u8>,
    },
    Icmpv4(IcmpRepr),
    Icmpv6(IcmpRepr),
    /// A non-first fragment: its bytes continue a datagram started elsewhere.
    Fragment {
        protocol: u8,
        offset: u16,
        more: bool,
        id: u32,
        data_len: usize,
        /// The fragment's bytes (what follows its IP header or IPv6 fragment header), kept for reassembly.
        data: Vec<u8>,
    },
    Other {
        protocol: u8,
        len: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    Arp(ArpRepr),
    Ipv4 {
        header: Ipv4Info,
        transport: Transport,
    },
    Ipv6 {
        header: Ipv6Info,
        transport: Transport,
    },
    Other {
        ethertype: u16,
    },
}

/// A dissected frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub eth: Option<EthernetInfo>,
    pub net: Network,
}

impl Packet {
    pub fn src_ip(&self) -> Option<IpAddr> {
        match &self.net {
            Network::Ipv4 { header, .. } => Some(IpAddr::V4(header.src)),
            Network::Ipv6 { header, .. } => Some(IpAddr::V6(header.src)),
            Network::Arp(a) => Some(IpAddr::V4(a.sender_ip)),
            Network::Other { .. } => None,
        }
    }
    pub fn dst_ip(&self) -> Option<IpAddr> {
        match &self.net {
            Network::Ipv4 { header, .. } => Some(IpAddr::V4(header.dst)),
            Network::Ipv6 { header, .. } => Some(IpAddr::V6(header.dst)),
            Network::Arp(a) => Some(IpAddr::V4(a.target_ip)),
            Network::Other { .. } => None,
        }
    }
    pub fn transport(&self) -> Option<&Transport> {
        match &self.net {
            Network::Ipv4 { transport, .. } | Network::Ipv6 { transport, .. } => Some(transport),
            Network::Arp(_) | Network::Other { .. } => None,
        }
    }
    pub fn tcp(&self) -> Option<&TcpRepr> {
        match self.transport()? {
            Transport::Tcp { repr, .. } => Some(repr),
            _ => None,
        }
    }
    pub fn udp(&self) -> Option<(&UdpRepr, &[u8])> {
        match self.transport()? {
            Transport::Udp { repr, payload, .. } => Some((repr, payload)),
            _ => None,
        }
    }
    pub fn icmp(&self) -> Option<&IcmpRepr> {
        match self.transport()? {
            Transport::Icmpv4(r) | Transport::Icmpv6(r) => Some(r),
            _ => None,
        }
    }
}

fn transport(
    protocol: u8,
    src: IpAddr,
    dst: IpAddr,
    b: &[u8],
    fragmented: bool,
) -> Result<Transport, WireError> {
    let status = |ok: bool| {
        if fragmented {
            ChecksumStatus::Unverifiable
        } else if ok {
            ChecksumStatus::Valid
        } else {
            ChecksumStatus::Invalid
        }
    };
    Ok(match protocol {
        ip::PROTO_TCP => {
            let p = TcpPacket::new_checked(b)?;
            let (repr, options_error) = TcpRepr::parse_lenient(&p);
            Transport::Tcp {
                repr,
                checksum: status(p.verify_checksum(src, dst)),
                payload: p.payload().to_vec(),
                options_error,
            }
        }
        ip::PROTO_UDP => {
            let p = UdpPacket::new_checked(b)?;
            let repr = UdpRepr::parse(&p);
            let checksum = if repr.checksum == 0 && src.is_ipv4() && !fragmented {
                ChecksumStatus::NotComputed
            } else {
                status(p.verify_checksum(src, dst))
            };
            // A first fragment's length field describes the whole datagram: keep every byte the frame
            // holds (reassembly needs them even when the length field is wrong).
            let payload = if fragmented {
                b[8..].to_vec()
            } else {
                p.payload().to_vec()
            };
            Transport::Udp {
                repr,
                checksum,
                payload,
            }
        }
        ip::PROTO_ICMP => Transport::Icmpv4(IcmpRepr::parse_v4(b)?),
        ip::PROTO_ICMPV6 => Transport::Icmpv6(IcmpRepr::parse_v6(b, src, dst)?),
        protocol => Transport::Other {
            protocol,
            len: b.len(),
        },
    })
}

/// Dissects an IPv4 or IPv6 packet (the version nibble decides).
pub fn parse_ip(b: &[u8]) -> Result<Network, WireError> {
    match b.first().map(|v| v >> 4) {
        Some(4) => {
            let p = Ipv4Packet::new_checked(b, false)?;
            let header = Ipv4Info {
                src: p.src_addr(),
                dst: p.dst_addr(),
                ttl: p.ttl(),
                ident: p.ident(),
                dont_fragment: p.dont_fragment(),
                more_fragments: p.more_fragments(),
                fragment_offset: p.fragment_offset(),
                total_len: p.total_len(),
                header_len: p.header_len(),
                checksum_ok: p.verify_checksum(),
            };
            let (src, dst) = (IpAddr::V4(header.src), IpAddr::V4(header.dst));
            let transport = if header.fragment_offset > 0 {
                Transport::Fragment {
                    protocol: p.protocol(),
                    offset: header.fragment_offset,
                    more: header.more_fragments,
                    id: header.ident as u32,
                    data_len: p.payload().len(),
                    data: p.payload().to_vec(),
                }
            } else {
                transport(p.protocol(), src, dst, p.payload(), header.more_fragments)?
            };
            Ok(Network::Ipv4 { header, transport })
        }
        Some(6) => {
            let p = Ipv6Packet::new_checked(b, false)?;
            let ul = p.upper_layer()?;
            let header = Ipv6Info {
                src: p.src_addr(),
                dst: p.dst_addr(),
                hop_limit: p.hop_limit(),
                payload_len: p.payload_len(),
                flow_label: p.flow_label(),
                traffic_class: p.traffic_class(),
                fragment: ul.fragment,
            };
            let data = &b[ul.offset.min(p.packet_end())..p.packet_end()];
            let (src, dst) = (IpAddr::V6(header.src), IpAddr::V6(header.dst));
            let transport = match ul.fragment {
                Some(f) if f.offset > 0 => Transport::Fragment {
                    protocol: ul.protocol,
                    offset: f.offset,
                    more: f.more,
                    id: f.id,
                    data_len: data.len(),
                    data: data.to_vec(),
                },
                frag => transport(ul.protocol, src, dst, data, frag.is_some_and(|f| f.more))?,
            };
            Ok(Network::Ipv6 { header, transport })
        }
        other => Err(WireError::malformed(
            "ip",
            format!("version nibble {other:?}"),
        )),
    }
}

/// Dissects a captured frame.
pub fn parse_frame(link: LinkType, data: &[u8]) -> Result<Packet, WireError> {
    match link {
        LinkType::RawIp => Ok(Packet {
            eth: None,
            net: parse_ip(data)?,
        }),
        LinkType::Ethernet => {
            let e = EthernetFrame::new_checked(data)?;
            let eth = EthernetInfo {
                src: e.src(),
                dst: e.dst(),
                ethertype: e.ethertype(),
            };
            let net = match eth.ethertype {
                link::ETHERTYPE_IPV4 | link::ETHERTYPE_IPV6 => parse_ip(e.payload())?,
                link::ETHERTYPE_ARP => Network::Arp(ArpRepr::parse(e.payload())?),
                ethertype => Network::Other { ethertype },
            };
            Ok(Packet {
                eth: Some(eth),
                net,
            })
        }
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Builders of whole frames for unit tests.
    use super::*;

    pub const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    pub const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

    pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, ident: u16, payload: &[u8]) -> Vec<u8> {
        let total = 20 + payload.len();
        let mut h = vec![0x45, 0, (total >> 8) as u8, total as u8];
        h.extend_from_slice(&ident.to_be_bytes());
        h.extend_from_slice(&[0x40, 0, 64, protocol, 0, 0]);
        h.extend_from_slice(&src.octets());
        h.extend_from_slice(&dst.octets());
        let c = checksum::checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        h.extend_from_slice(&[next, 64]);
        h.extend_from_slice(&src.octets());
        h.extend_from_slice(&dst.octets());
        h.extend_from_slice(payload);
        h
    }

    pub fn ethernet(src: [u8; 6], dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend_from_slice(&src);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// An Ethernet+IPv4+TCP frame.
    pub fn tcp_v4(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        repr: &TcpRepr,
        payload: &[u8],
        from_a: bool,
    ) -> Vec<u8> {
        let seg = repr.emit(IpAddr::V4(src), IpAddr::V4(dst), payload);
        let ip = ipv4(src, dst, ip::PROTO_TCP, 1, &seg);
        let (s, d) = if from_a {
            (MAC_A, MAC_B)
        } else {
            (MAC_B, MAC_A)
        };
        ethernet(s, d, link::ETHERTYPE_IPV4, &ip)
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    const A4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const B4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    fn syn() -> TcpRepr {
        TcpRepr {
            src_port: 40000,
            dst_port: 5000,
            seq: SeqNumber(1000),
            ack: SeqNumber(0),
            flags: TcpFlags {
                syn: true,
                ..Default::default()
            },
            window: 64240,
            urgent: 0,
            options: vec![TcpOption::MaxSegmentSize(1460)],
            payload_len: 0,
        }
    }

    #[test]
    fn dissects_ethernet_ipv4_tcp() {
        let f = tcp_v4(A4, B4, &syn(), &[], true);
        let p = parse_frame(LinkType::Ethernet, &f).unwrap();
        assert_eq!(p.src_ip(), Some(IpAddr::V4(A4)));
        let Some(Transport::Tcp { repr, checksum, .. }) = p.transport() else {
            panic!("{p:?}")
        };
        assert_eq!(*checksum, ChecksumStatus::Valid);
        assert_eq!(repr.mss(), Some(1460));
        assert!(matches!(&p.net, Network::Ipv4 { header, .. } if header.checksum_ok));
    }

    #[test]
    fn every_truncation_and_random_garbage_is_an_error_not_a_panic() {
        let f = tcp_v4(A4, B4, &syn(), b"hello", true);
        for n in 0..f.len() {
            let _ = parse_frame(LinkType::Ethernet, &f[..n]);
            let _ = parse_frame(LinkType::RawIp, &f[14..14 + n.min(f.len() - 14)]);
        }
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 120) as usize;
            let mut b: Vec<u8> = (0..len).map(|i| (x >> (i % 56)) as u8).collect();
            if len > 0 {
                b[0] = if x.is_multiple_of(2) { 0x45 } else { 0x60 };
            }
            let _ = parse_frame(LinkType::RawIp, &b);
            let _ = QuotedPacket::parse(&b);
        }
    }

    #[test]
    fn icmp_port_unreachable_quotes_the_udp_datagram() {
        let udp = UdpRepr::emit(5555, 9, IpAddr::V4(A4), IpAddr::V4(B4), b"0123456789");
        let dgram = ipv4(A4, B4, ip::PROTO_UDP, 77, &udp);
        let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&dgram);
        let c = checksum::checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let f = ethernet(
            MAC_B,
            MAC_A,
            link::ETHERTYPE_IPV4,
            &ipv4(B4, A4, ip::PROTO_ICMP, 1, &icmp),
        );
        let p = parse_frame(LinkType::Ethernet, &f).unwrap();
        let r = p.icmp().unwrap();
        assert!(r.checksum_ok);
        assert_eq!(r.name(false), "port-unreachable");
        let q = r.quoted.as_ref().unwrap();
        assert_eq!(
            (q.src_port, q.dst_port, q.udp_length, q.ip_ident),
            (Some(5555), Some(9), Some(18), Some(77))
        );
        assert_eq!(q.quoted_transport_bytes, 18);
        // Truncated to IP header + 8 bytes still parses.
        let q = QuotedPacket::parse(&dgram[..28]).unwrap();
        assert_eq!(q.udp_length, Some(18));
    }

    #[test]
    fn ipv6_extension_headers_are_walked() {
        let a6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let b6: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let udp = UdpRepr::emit(1, 2, IpAddr::V6(a6), IpAddr::V6(b6), b"x");
        let mut ext = vec![ip::PROTO_UDP, 0, 1, 4, 0, 0, 0, 0]; // destination options, PadN
        ext.extend_from_slice(&udp);
        let pkt = ipv6(a6, b6, 60, &ext);
        let Network::Ipv6 {
            transport:
                Transport::Udp {
                    repr,
                    checksum,
                    payload,
                },
            ..
        } = parse_ip(&pkt).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (repr.src_port, repr.dst_port, payload.as_slice()),
            (1, 2, &b"x"[..])
        );
        assert_eq!(checksum, ChecksumStatus::Valid);
    }
}
