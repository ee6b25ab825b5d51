//! Deliberately broken variants of the adapter, for netconform's own tests (tests/smoltcp.rs): each one
//! breaks one rule on the wire, between smoltcp and the link, and some property must catch it. Chosen at start
//! with `--fault NAME` or `NETCONFORM_SMOLTCP_FAULT=NAME`; without one, every packet passes untouched.
//!
//! Each fault works on the TCP header of IP packets (no IPv6 extension headers: smoltcp sends none and the
//! lab's kernel sends none on TCP) and fixes the checksum after a change, so only the one rule is broken.

use std::collections::HashMap;

use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket, TcpSeqNumber};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A segment is never answered by a RST: a closed port stays silent (RFC 9293 §3.10.7.1 says RST).
    SilentClosedPort,
    /// The ACK of the peer's FIN acknowledges one byte too few: the FIN itself (RFC 9293 §3.4: a FIN takes one
    /// sequence number).
    ShortFinAck,
    /// Nothing is sent while the peer's window is zero, so no probe (RFC 9293 §3.8.6.1, MUST-36).
    NoZeroWindowProbe,
    /// Every fourth segment that carries data leaves with a wrong TCP checksum (RFC 9293 §3.1).
    BadChecksum,
    /// The peer's advertised window is read as 65535 (scaled), so data goes beyond it (RFC 9293 §3.8.6).
    IgnorePeerWindow,
}

impl Fault {
    pub const NAMES: &'static [(&'static str, Fault)] = &[
        ("silent-closed-port", Fault::SilentClosedPort),
        ("short-fin-ack", Fault::ShortFinAck),
        ("no-zero-window-probe", Fault::NoZeroWindowProbe),
        ("bad-checksum", Fault::BadChecksum),
        ("ignore-peer-window", Fault::IgnorePeerWindow),
    ];

    pub fn parse(name: &str) -> Option<Fault> {
        Fault::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, f)| f)
    }
}

/// A connection as seen from this host: (peer address, peer port, our port).
type Flow = (IpAddress, u16, u16);

#[derive(Default)]
pub struct Faults {
    fault: Option<Fault>,
    /// ShortFinAck: the sequence number just after each peer's FIN.
    after_fin: HashMap<Flow, TcpSeqNumber>,
    /// NoZeroWindowProbe: flows whose peer last advertised a zero window.
    zero_window: HashMap<Flow, bool>,
    /// BadChecksum: data segments sent so far.
    data_segments: u64,
}

impl Faults {
    pub fn new(fault: Option<Fault>) -> Faults {
        Faults {
            fault,
            ..Faults::default()
        }
    }

    /// A packet from the link, before smoltcp sees it.
    pub fn incoming(&mut self, packet: &mut [u8]) {
        let Some(fault) = self.fault else { return };
        let Some((peer, us, mut tcp)) = tcp_segment(packet) else {
            return;
        };
        let flow = (peer, tcp.src_port(), tcp.dst_port());
        match fault {
            Fault::ShortFinAck if tcp.fin() => {
                let after = tcp.seq_number() + tcp.segment_len();
                self.after_fin.insert(flow, after);
            }
            Fault::NoZeroWindowProbe if !tcp.syn() => {
                self.zero_window.insert(flow, tcp.window_len() == 0);
            }
            Fault::IgnorePeerWindow => {
                tcp.set_window_len(u16::MAX);
                tcp.fill_checksum(&peer, &us);
            }
            _ => {}
        }
    }

    /// A packet smoltcp sends; `reply` when it answers the packet just received. `false`: drop it.
    pub fn outgoing(&mut self, packet: &mut [u8], reply: bool) -> bool {
        let Some(fault) = self.fault else { return true };
        let Some((us, peer, mut tcp)) = tcp_segment(packet) else {
            return true;
        };
        let flow = (peer, tcp.dst_port(), tcp.src_port());
        match fault {
            Fault::SilentClosedPort => !(reply && tcp.rst()),
            Fault::ShortFinAck => {
                if tcp.ack() && self.after_fin.get(&flow) == Some(&tcp.ack_number()) {
                    tcp.set_ack_number(tcp.ack_number() - 1);
                    tcp.fill_checksum(&us, &peer);
                }
                true
            }
            Fault::NoZeroWindowProbe => {
                tcp.payload_mut().is_empty()
                    || !self.zero_window.get(&flow).copied().unwrap_or(false)
            }
            Fault::BadChecksum => {
                if !tcp.payload_mut().is_empty() {
                    self.data_segments += 1;
                    if self.data_segments.is_multiple_of(4) {
                        tcp.set_checksum(tcp.checksum() ^ 0x5a5a);
                    }
                }
                true
            }
            Fault::IgnorePeerWindow => true,
        }
    }
}

/// The TCP segment of an IP packet, with the packet's (source, destination) addresses.
fn tcp_segment(packet: &mut [u8]) -> Option<(IpAddress, IpAddress, TcpPacket<&mut [u8]>)> {
    let (src, dst, payload): (IpAddress, IpAddress, &mut [u8]) = match packet.first()? >> 4 {
        4 => {
            let ip = Ipv4Packet::new_checked(packet).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
            let ip = ip.into_inner();
            let header = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
            (src, dst, &mut ip[header..total])
        }
        6 => {
            let ip = Ipv6Packet::new_checked(packet).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
            let ip = ip.into_inner();
            let end = (40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]))).min(ip.len());
            (src, dst, &mut ip[40..end])
        }
        _ => return None,
    };
    let tcp = TcpPacket::new_checked(payload).ok()?;
    Some((src, dst, tcp))
}
