//! UDP datagrams (RFC 768; checksum mandatory over IPv6, RFC 8200 §8.1).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{checksum, WireError};
use crate::wire::ip::PROTO_UDP;

/// A zero-copy view of a UDP datagram.
#[derive(Debug, Clone, Copy)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        WireError::need("udp", buffer.as_ref(), 8)?;
        Ok(UdpPacket { buffer })
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn src_port(&self) -> u16 {
        u16::from_be_bytes([self.b()[0], self.b()[1]])
    }
    pub fn dst_port(&self) -> u16 {
        u16::from_be_bytes([self.b()[2], self.b()[3]])
    }
    /// The length field (header + payload).
    pub fn len_field(&self) -> u16 {
        u16::from_be_bytes([self.b()[4], self.b()[5]])
    }
    pub fn checksum(&self) -> u16 {
        u16::from_be_bytes([self.b()[6], self.b()[7]])
    }
    /// The payload as the length field bounds it (and the buffer).
    pub fn payload(&self) -> &[u8] {
        let end = (self.len_field() as usize).clamp(8, self.b().len());
        &self.b()[8..end]
    }
    /// Whether the checksum verifies over the bytes the length field covers.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        let end = (self.len_field() as usize).clamp(8, self.b().len());
        checksum::upper_layer(src, dst, PROTO_UDP, &self.b()[..end]) == 0
    }
}

/// A parsed UDP header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub length: u16,
    pub checksum: u16,
}

impl UdpRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &UdpPacket<T>) -> UdpRepr {
        UdpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            length: p.len_field(),
            checksum: p.checksum(),
        }
    }

    /// The datagram as bytes with length and checksum computed (0 is sent as 0xffff, RFC 768).
    pub fn emit(src_port: u16, dst_port: u16, src: IpAddr, dst: IpAddr, payload: &[u8]) -> Vec<u8> {
        let len = 8 + payload.len();
        let mut b = Vec::with_capacity(len);
        b.extend_from_slice(&src_port.to_be_bytes());
        b.extend_from_slice(&dst_port.to_be_bytes());
        b.extend_from_slice(&(len as u16).to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(payload);
        let mut c = checksum::upper_layer(src, dst, PROTO_UDP, &b);
        if c == 0 {
            c = 0xffff;
        }
        b[6..8].copy_from_slice(&c.to_be_bytes());
        b
    }
}
