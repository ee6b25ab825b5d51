//! Ethernet II (IEEE 802.3 framing as used by IP, RFC 894) and ARP (RFC 826).

use std::net::Ipv4Addr;

use super::WireError;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

mod field {
    use std::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const HEADER_LEN: usize = 14;
    pub const VLAN_LEN: usize = 4;
}

/// A zero-copy view of an Ethernet II frame (one 802.1Q tag skipped).
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
    header_len: usize,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// The only door for captured bytes: checks the header fits.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        WireError::need("ethernet", b, field::HEADER_LEN)?;
        let mut header_len = field::HEADER_LEN;
        if u16::from_be_bytes([b[12], b[13]]) == ETHERTYPE_VLAN {
            WireError::need("ethernet 802.1Q", b, field::HEADER_LEN + field::VLAN_LEN)?;
            header_len += field::VLAN_LEN;
        }
        Ok(EthernetFrame { buffer, header_len })
    }
    pub fn dst(&self) -> [u8; 6] {
        self.buffer.as_ref()[field::DST]
            .try_into()
            .unwrap_or([0; 6])
    }
    pub fn src(&self) -> [u8; 6] {
        self.buffer.as_ref()[field::SRC]
            .try_into()
            .unwrap_or([0; 6])
    }
    pub fn ethertype(&self) -> u16 {
        let b = self.buffer.as_ref();
        let at = self.header_len - 2;
        let _ = field::ETHERTYPE;
        u16::from_be_bytes([b[at], b[at + 1]])
    }
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len..]
    }
}

/// An ARP packet for IPv4 over Ethernet (the only kind a lab sees).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpRepr {
    /// 1 request, 2 reply.
    pub operation: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    pub fn parse(b: &[u8]) -> Result<ArpRepr, WireError> {
        WireError::need("arp", b, 28)?;
        let (htype, ptype, hlen, plen) = (
            u16::from_be_bytes([b[0], b[1]]),
            u16::from_be_bytes([b[2], b[3]]),
            b[4],
            b[5],
        );
        if htype != 1 || ptype != ETHERTYPE_IPV4 || hlen != 6 || plen != 4 {
            return Err(WireError::malformed(
                "arp",
                format!("not Ethernet/IPv4 (htype {htype}, ptype {ptype:#x})"),
            ));
        }
        let mac = |at: usize| -> [u8; 6] { b[at..at + 6].try_into().unwrap_or([0; 6]) };
        let ip = |at: usize| Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]);
        Ok(ArpRepr {
            operation: u16::from_be_bytes([b[6], b[7]]),
            sender_mac: mac(8),
            sender_ip: ip(14),
            target_mac: mac(18),
            target_ip: ip(24),
        })
    }
}
