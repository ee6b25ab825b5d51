//! IPv4 (RFC 791) and IPv6 (RFC 8200) headers, with extension headers walked to the upper layer.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::{checksum, WireError};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

mod field4 {
    pub const MIN_HEADER: usize = 20;
}

/// A zero-copy view of an IPv4 packet.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Checks version, IHL and total length against the buffer. A buffer shorter than the total length is
    /// accepted only with `allow_truncated` (quoted packets in ICMP errors).
    pub fn new_checked(buffer: T, allow_truncated: bool) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        WireError::need("ipv4", b, field4::MIN_HEADER)?;
        if b[0] >> 4 != 4 {
            return Err(WireError::malformed(
                "ipv4",
                format!("version {}", b[0] >> 4),
            ));
        }
        let ihl = ((b[0] & 0x0f) as usize) * 4;
        if ihl < field4::MIN_HEADER {
            return Err(WireError::malformed("ipv4", format!("header length {ihl}")));
        }
        WireError::need("ipv4 options", b, ihl)?;
        let total = u16::from_be_bytes([b[2], b[3]]) as usize;
        if total < ihl {
            return Err(WireError::malformed(
                "ipv4",
                format!("total length {total} < header length {ihl}"),
            ));
        }
        if !allow_truncated {
            WireError::need("ipv4 payload", b, total)?;
        }
        Ok(Ipv4Packet { buffer })
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn header_len(&self) -> usize {
        ((self.b()[0] & 0x0f) as usize) * 4
    }
    pub fn total_len(&self) -> usize {
        u16::from_be_bytes([self.b()[2], self.b()[3]]) as usize
    }
    pub fn ident(&self) -> u16 {
        u16::from_be_bytes([self.b()[4], self.b()[5]])
    }
    pub fn dont_fragment(&self) -> bool {
        self.b()[6] & 0x40 != 0
    }
    pub fn more_fragments(&self) -> bool {
        self.b()[6] & 0x20 != 0
    }
    /// Fragment offset in bytes.
    pub fn fragment_offset(&self) -> u16 {
        (u16::from_be_bytes([self.b()[6], self.b()[7]]) & 0x1fff) * 8
    }
    pub fn ttl(&self) -> u8 {
        self.b()[8]
    }
    pub fn protocol(&self) -> u8 {
        self.b()[9]
    }
    pub fn src_addr(&self) -> Ipv4Addr {
        let b = self.b();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }
    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = self.b();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(&self.b()[..self.header_len()]) == 0
    }
    /// The payload, bounded by the total length (and by the buffer, for quoted packets).
    pub fn payload(&self) -> &[u8] {
        let end = self.total_len().min(self.b().len());
        &self.b()[self.header_len()..end]
    }
}

/// An IPv6 fragment header (RFC 8200 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FragmentInfo {
    pub offset: u16,
    pub more: bool,
    pub id: u32,
}

/// A zero-copy view of an IPv6 packet.
#[derive(Debug, Clone, Copy)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

const EXT_HOP_BY_HOP: u8 = 0;
const EXT_ROUTING: u8 = 43;
const EXT_FRAGMENT: u8 = 44;
const EXT_DEST_OPTS: u8 = 60;

/// Where the upper layer starts after the extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    pub protocol: u8,
    /// Offset from the start of the IPv6 header.
    pub offset: usize,
    pub fragment: Option<FragmentInfo>,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    pub fn new_checked(buffer: T, allow_truncated: bool) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        WireError::need("ipv6", b, 40)?;
        if b[0] >> 4 != 6 {
            return Err(WireError::malformed(
                "ipv6",
                format!("version {}", b[0] >> 4),
            ));
        }
        let p = Ipv6Packet { buffer };
        if !allow_truncated {
            WireError::need("ipv6 payload", p.buffer.as_ref(), 40 + p.payload_len())?;
        }
        Ok(p)
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn traffic_class(&self) -> u8 {
        let b = self.b();
        (b[0] << 4) | (b[1] >> 4)
    }
    pub fn flow_label(&self) -> u32 {
        let b = self.b();
        (((b[1] & 0x0f) as u32) << 16) | ((b[2] as u32) << 8) | b[3] as u32
    }
    pub fn payload_len(&self) -> usize {
        u16::from_be_bytes([self.b()[4], self.b()[5]]) as usize
    }
    pub fn next_header(&self) -> u8 {
        self.b()[6]
    }
    pub fn hop_limit(&self) -> u8 {
        self.b()[7]
    }
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(<[u8; 16]>::try_from(&self.b()[8..24]).unwrap_or([0; 16]))
    }
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(<[u8; 16]>::try_from(&self.b()[24..40]).unwrap_or([0; 16]))
    }
    /// Bytes after the fixed header, bounded by the payload length and the buffer.
    pub fn packet_end(&self) -> usize {
        (40 + self.payload_len()).min(self.b().len())
    }
    /// Walks hop-by-hop, routing, fragment and destination-options headers to the upper layer.
    pub fn upper_layer(&self) -> Result<UpperLayer, WireError> {
        let b = &self.b()[..self.packet_end()];
        let mut next = self.next_header();
        let mut at = 40;
        let mut fragment = None;
        loop {
            match next {
                EXT_HOP_BY_HOP | EXT_ROUTING | EXT_DEST_OPTS => {
                    WireError::need("ipv6 extension header", b, at + 8)?;
                    let len = (b[at + 1] as usize + 1) * 8;
                    WireError::need("ipv6 extension header", b, at + len)?;
                    next = b[at];
                    at += len;
                }
                EXT_FRAGMENT => {
                    WireError::need("ipv6 fragment header", b, at + 8)?;
                    let off = u16::from_be_bytes([b[at + 2], b[at + 3]]);
                    fragment = Some(FragmentInfo {
                        offset: off & 0xfff8,
                        more: off & 1 != 0,
                        id: u32::from_be_bytes([b[at + 4], b[at + 5], b[at + 6], b[at + 7]]),
                    });
                    next = b[at];
                    at += 8;
                }
                protocol => {
                    return Ok(UpperLayer {
                        protocol,
                        offset: at,
                        fragment,
                    })
                }
            }
        }
    }
}
