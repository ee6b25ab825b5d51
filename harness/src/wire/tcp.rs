//! TCP segments (RFC 9293 §3.1) with options walked by hand: MSS (RFC 9293 §3.7.1), window scale and timestamps
//! (RFC 7323 §2.2, §3.2), SACK-permitted and SACK (RFC 2018); unknown kinds are kept as they are.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{checksum, SeqNumber, WireError};
use crate::wire::ip::PROTO_TCP;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
    pub const MIN_HEADER: usize = 20;
}

/// Control bits (RFC 9293 §3.1; ECE/CWR from RFC 3168).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TcpFlags {
    pub fin: bool,
    pub syn: bool,
    pub rst: bool,
    pub psh: bool,
    pub ack: bool,
    pub urg: bool,
    pub ece: bool,
    pub cwr: bool,
}

impl TcpFlags {
    pub fn from_byte(b: u8) -> TcpFlags {
        TcpFlags {
            fin: b & 0x01 != 0,
            syn: b & 0x02 != 0,
            rst: b & 0x04 != 0,
            psh: b & 0x08 != 0,
            ack: b & 0x10 != 0,
            urg: b & 0x20 != 0,
            ece: b & 0x40 != 0,
            cwr: b & 0x80 != 0,
        }
    }
    pub fn to_byte(self) -> u8 {
        [
            self.fin, self.syn, self.rst, self.psh, self.ack, self.urg, self.ece, self.cwr,
        ]
        .iter()
        .enumerate()
        .fold(0, |acc, (i, on)| acc | ((*on as u8) << i))
    }
    /// tcpdump's letters: S F R P U E W, then `.` for ACK (e.g. `S.`, `F.`, `R`); `none` for no flag.
    pub fn tcpdump(self) -> String {
        let mut s = String::new();
        for (on, c) in [
            (self.syn, 'S'),
            (self.fin, 'F'),
            (self.rst, 'R'),
            (self.psh, 'P'),
            (self.urg, 'U'),
            (self.ece, 'E'),
            (self.cwr, 'W'),
        ] {
            if on {
                s.push(c);
            }
        }
        if self.ack {
            s.push('.');
        }
        if s.is_empty() {
            s.push_str("none");
        }
        s
    }
}

/// One TCP option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TcpOption {
    EndOfList,
    NoOperation,
    MaxSegmentSize(u16),
    WindowScale(u8),
    SackPermitted,
    SackRange(Vec<(SeqNumber, SeqNumber)>),
    Timestamp { tsval: u32, tsecr: u32 },
    Unknown { kind: u8, data: Vec<u8> },
}

impl TcpOption {
    /// Walks an options area. EOL ends the walk (the rest is padding).
    pub fn parse_all(b: &[u8]) -> Result<Vec<TcpOption>, WireError> {
        match TcpOption::parse_prefix(b) {
            (options, None) => Ok(options),
            (_, Some(e)) => Err(e),
        }
    }

    /// Walks an options area as far as it is well formed: the options before the first malformed one, and
    /// the error that stopped the walk (if any). A receiver such as Linux's `tcp_parse_options` also stops
    /// at a malformed option and keeps the segment; the trace does the same so that the segment is still
    /// numbered and labelled, and `crate::validity` reports the option.
    pub fn parse_prefix(b: &[u8]) -> (Vec<TcpOption>, Option<WireError>) {
        let mut out = Vec::new();
        let error = TcpOption::walk(b, &mut out).err();
        (out, error)
    }

    fn walk(mut b: &[u8], out: &mut Vec<TcpOption>) -> Result<(), WireError> {
        while let Some(&kind) = b.first() {
            match kind {
                0 => {
                    out.push(TcpOption::EndOfList);
                    break;
                }
                1 => {
                    out.push(TcpOption::NoOperation);
                    b = &b[1..];
                    continue;
                }
                _ => {}
            }
            let len = *b.get(1).ok_or_else(|| {
                WireError::malformed("tcp option", format!("kind {kind} has no length byte"))
            })? as usize;
            if len < 2 || len > b.len() {
                return Err(WireError::malformed(
                    "tcp option",
                    format!("kind {kind} length {len} with {} bytes left", b.len()),
                ));
            }
            let data = &b[2..len];
            let want = |n: usize| -> Result<(), WireError> {
                if data.len() == n {
                    Ok(())
                } else {
                    Err(WireError::malformed(
                        "tcp option",
                        format!("kind {kind} length {len}, expected {}", n + 2),
                    ))
                }
            };
            let opt = match kind {
                2 => {
                    want(2)?;
                    TcpOption::MaxSegmentSize(u16::from_be_bytes([data[0], data[1]]))
                }
                3 => {
                    want(1)?;
                    TcpOption::WindowScale(data[0])
                }
                4 => {
                    want(0)?;
                    TcpOption::SackPermitted
                }
                5 => {
                    if data.is_empty() || !data.len().is_multiple_of(8) {
                        return Err(WireError::malformed(
                            "tcp option",
                            format!("SACK length {len}"),
                        ));
                    }
                    TcpOption::SackRange(
                        data.chunks_exact(8)
                            .map(|c| {
                                (
                                    SeqNumber(u32::from_be_bytes([c[0], c[1], c[2], c[3]])),
                                    SeqNumber(u32::from_be_bytes([c[4], c[5], c[6], c[7]])),
                                )
                            })
                            .collect(),
                    )
                }
                8 => {
                    want(8)?;
                    TcpOption::Timestamp {
                        tsval: u32::from_be_bytes([data[0], data[1], data[2], data[3]]),
                        tsecr: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
                    }
                }
                _ => TcpOption::Unknown {
                    kind,
                    data: data.to_vec(),
                },
            };
            out.push(opt);
            b = &b[len..];
        }
        Ok(())
    }

    fn emit(&self, out: &mut Vec<u8>) {
        match self {
            TcpOption::EndOfList => out.push(0),
            TcpOption::NoOperation => out.push(1),
            TcpOption::MaxSegmentSize(m) => {
                out.extend_from_slice(&[2, 4]);
                out.extend_from_slice(&m.to_be_bytes());
            }
            TcpOption::WindowScale(s) => out.extend_from_slice(&[3, 3, *s]),
            TcpOption::SackPermitted => out.extend_from_slice(&[4, 2]),
            TcpOption::SackRange(blocks) => {
                out.extend_from_slice(&[5, (2 + 8 * blocks.len()) as u8]);
                for (l, r) in blocks {
                    out.extend_from_slice(&l.0.to_be_bytes());
                    out.extend_from_slice(&r.0.to_be_bytes());
                }
            }
            TcpOption::Timestamp { tsval, tsecr } => {
                out.extend_from_slice(&[8, 10]);
                out.extend_from_slice(&tsval.to_be_bytes());
                out.extend_from_slice(&tsecr.to_be_bytes());
            }
            TcpOption::Unknown { kind, data } => {
                out.extend_from_slice(&[*kind, (2 + data.len()) as u8]);
                out.extend_from_slice(data);
            }
        }
    }
}

/// A zero-copy view of a TCP segment.
#[derive(Debug, Clone, Copy)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Checks that the fixed header and the header length the data offset claims fit in the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        WireError::need("tcp", b, field::MIN_HEADER)?;
        let hl = ((b[field::DATA_OFFSET] >> 4) as usize) * 4;
        if hl < field::MIN_HEADER {
            return Err(WireError::malformed(
                "tcp",
                format!("data offset {hl} bytes < 20"),
            ));
        }
        WireError::need("tcp options", b, hl)?;
        Ok(TcpPacket { buffer })
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    fn u16_at(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.b()[at], self.b()[at + 1]])
    }
    fn u32_at(&self, at: usize) -> u32 {
        let b = self.b();
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }
    pub fn seq_number(&self) -> SeqNumber {
        SeqNumber(self.u32_at(field::SEQ))
    }
    pub fn ack_number(&self) -> SeqNumber {
        SeqNumber(self.u32_at(field::ACK))
    }
    pub fn header_len(&self) -> usize {
        ((self.b()[field::DATA_OFFSET] >> 4) as usize) * 4
    }
    pub fn flags(&self) -> TcpFlags {
        TcpFlags::from_byte(self.b()[field::FLAGS])
    }
    pub fn window_len(&self) -> u16 {
        self.u16_at(field::WINDOW)
    }
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }
    pub fn urgent(&self) -> u16 {
        self.u16_at(field::URGENT)
    }
    pub fn options(&self) -> Result<Vec<TcpOption>, WireError> {
        TcpOption::parse_all(&self.b()[field::MIN_HEADER..self.header_len()])
    }
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..]
    }
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        checksum::upper_layer(src, dst, PROTO_TCP, self.b()) == 0
    }
}

/// A parsed TCP header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: SeqNumber,
    pub ack: SeqNumber,
    pub flags: TcpFlags,
    pub window: u16,
    pub urgent: u16,
    pub options: Vec<TcpOption>,
    pub payload_len: usize,
}

impl TcpRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &TcpPacket<T>) -> Result<TcpRepr, WireError> {
        Ok(TcpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq: p.seq_number(),
            ack: p.ack_number(),
            flags: p.flags(),
            window: p.window_len(),
            urgent: p.urgent(),
            options: p.options()?,
            payload_len: p.payload().len(),
        })
    }

    /// Like [`TcpRepr::parse`], but a malformed options area keeps the options before the fault and returns
    /// the fault beside the repr (see [`TcpOption::parse_prefix`]).
    pub fn parse_lenient<T: AsRef<[u8]>>(p: &TcpPacket<T>) -> (TcpRepr, Option<WireError>) {
        let (options, error) = TcpOption::parse_prefix(&p.b()[field::MIN_HEADER..p.header_len()]);
        let repr = TcpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq: p.seq_number(),
            ack: p.ack_number(),
            flags: p.flags(),
            window: p.window_len(),
            urgent: p.urgent(),
            options,
            payload_len: p.payload().len(),
        };
        (repr, error)
    }

    /// SEG.LEN (RFC 9293 §3.4): payload plus one for SYN and one for FIN.
    pub fn segment_len(&self) -> u32 {
        self.payload_len as u32 + self.flags.syn as u32 + self.flags.fin as u32
    }

    pub fn mss(&self) -> Option<u16> {
        self.options.iter().find_map(|o| match o {
            TcpOption::MaxSegmentSize(m) => Some(*m),
            _ => None,
        })
    }

    pub fn window_scale(&self) -> Option<u8> {
        self.options.iter().find_map(|o| match o {
            TcpOption::WindowScale(s) => Some(*s),
            _ => None,
        })
    }

    /// The segment as bytes: options encoded and padded to 4 bytes, data offset set, checksum computed.
    pub fn emit(&self, src: IpAddr, dst: IpAddr, payload: &[u8]) -> Vec<u8> {
        let mut opts = Vec::new();
        for o in &self.options {
            o.emit(&mut opts);
        }
        while !opts.len().is_multiple_of(4) {
            opts.push(0);
        }
        let hl = field::MIN_HEADER + opts.len();
        let mut b = Vec::with_capacity(hl + payload.len());
        b.extend_from_slice(&self.src_port.to_be_bytes());
        b.extend_from_slice(&self.dst_port.to_be_bytes());
        b.extend_from_slice(&self.seq.0.to_be_bytes());
        b.extend_from_slice(&self.ack.0.to_be_bytes());
        b.push(((hl / 4) as u8) << 4);
        b.push(self.flags.to_byte());
        b.extend_from_slice(&self.window.to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&self.urgent.to_be_bytes());
        b.extend_from_slice(&opts);
        b.extend_from_slice(payload);
        let c = checksum::upper_layer(src, dst, PROTO_TCP, &b);
        b[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn addrs() -> (IpAddr, IpAddr) {
        (
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
        )
    }

    #[test]
    fn emit_parse_round_trip_with_options_and_checksum() {
        let (s, d) = addrs();
        let repr = TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq: SeqNumber(u32::MAX - 1),
            ack: SeqNumber(0),
            flags: TcpFlags {
                syn: true,
                ..Default::default()
            },
            window: 64240,
            urgent: 0,
            options: vec![
                TcpOption::MaxSegmentSize(1460),
                TcpOption::SackPermitted,
                TcpOption::Timestamp { tsval: 1, tsecr: 0 },
                TcpOption::NoOperation,
                TcpOption::WindowScale(7),
                TcpOption::Unknown {
                    kind: 30,
                    data: vec![1, 2],
                },
            ],
            payload_len: 3,
        };
        let bytes = repr.emit(s, d, b"abc");
        let p = TcpPacket::new_checked(&bytes[..]).unwrap();
        assert!(p.verify_checksum(s, d));
        let parsed = TcpRepr::parse(&p).unwrap();
        assert_eq!(p.header_len(), 20 + 24);
        assert_eq!(parsed, repr);
        // Options that do not fill a 4-byte word are padded with EOL.
        let short = TcpRepr {
            options: vec![TcpOption::WindowScale(2)],
            ..repr.clone()
        };
        let bytes = short.emit(s, d, b"abc");
        let parsed = TcpRepr::parse(&TcpPacket::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(
            parsed.options,
            [TcpOption::WindowScale(2), TcpOption::EndOfList]
        );
        assert_eq!(parsed.segment_len(), 4);
    }

    #[test]
    fn bad_options_and_offsets_are_errors_not_panics() {
        assert!(TcpOption::parse_all(&[2]).is_err());
        assert!(TcpOption::parse_all(&[2, 1]).is_err());
        assert!(TcpOption::parse_all(&[2, 9, 0]).is_err());
        assert!(TcpOption::parse_all(&[5, 6, 0, 0, 0, 0]).is_err());
        assert!(TcpOption::parse_all(&[3, 4, 0, 0]).is_err());
        let mut seg = [0u8; 20];
        seg[12] = 0x40; // data offset 16 bytes
        assert!(TcpPacket::new_checked(&seg[..]).is_err());
        seg[12] = 0xf0; // 60 bytes, buffer has 20
        assert!(TcpPacket::new_checked(&seg[..]).is_err());
    }
}
