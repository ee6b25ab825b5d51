//! UDP datagrams as they crossed the wire: whole in one frame, or put back together from their IP fragments
//! (RFC 791 §3.2 "reassembly", RFC 8200 §4.5), so a check can read the length field, the payload and the
//! checksum of the whole datagram.
//!
//! Fragments are grouped by (source, destination, protocol, identification) — the IPv4 ident or the IPv6
//! fragment header's id — and joined by offset. Only UDP is rebuilt: the first fragment of a UDP datagram is
//! dissected as [`Transport::Udp`] (header + the payload bytes that frame holds), the others as
//! [`Transport::Fragment`] with their bytes. Overlaps, holes, a missing first or last fragment are reported as
//! [`Incomplete`], never guessed around. Left out on purpose: fragment timeouts (a capture is one case), and
//! IPv6 extension headers other than the fragment header are counted in [`UdpDatagram::ip_len`] of an
//! unfragmented datagram (the lab sends none).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::ip::PROTO_UDP;
use super::{checksum, ChecksumStatus, Network, Packet, Transport, UdpPacket, UdpRepr};

/// One UDP datagram seen on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpDatagram {
    /// Frame numbers that carried it (1-based), first fragment first.
    pub frames: Vec<usize>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub repr: UdpRepr,
    /// Verified over the whole datagram (every fragment), with the RFC 768 / RFC 8200 §8.1 pseudo-header.
    pub checksum: ChecksumStatus,
    /// The payload, as the UDP length field bounds it (and the bytes carried).
    pub payload: Vec<u8>,
    /// What IP says the transport occupies: IPv4 total length − header length, IPv6 payload length, or the sum
    /// of the fragments' data once reassembled.
    pub ip_len: usize,
    /// Carried in more than one frame.
    pub fragmented: bool,
}

/// Fragments that do not make a whole datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incomplete {
    pub frames: Vec<usize>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub id: u32,
    pub reason: String,
}

/// One piece of a fragmented datagram.
struct Piece {
    frame: usize,
    offset: usize,
    more: bool,
    bytes: Vec<u8>,
}

type Key = (IpAddr, IpAddr, u32);

/// The UDP datagrams among `packets` (frame number, dissected frame), in the order their first fragment (or
/// whole frame) was captured. Non-UDP packets are skipped.
pub fn udp_datagrams<'a>(
    packets: impl IntoIterator<Item = (usize, &'a Packet)>,
) -> Vec<Result<UdpDatagram, Incomplete>> {
    // (first frame number, result) so whole and reassembled datagrams interleave in capture order.
    let mut out: Vec<(usize, Result<UdpDatagram, Incomplete>)> = Vec::new();
    let mut groups: BTreeMap<Key, Vec<Piece>> = BTreeMap::new();
    let mut order: Vec<Key> = Vec::new();
    let mut add = |key: Key, piece: Piece, groups: &mut BTreeMap<Key, Vec<Piece>>| {
        if !groups.contains_key(&key) {
            order.push(key);
        }
        groups.entry(key).or_default().push(piece);
    };
    for (number, p) in packets {
        let (Some(src), Some(dst)) = (p.src_ip(), p.dst_ip()) else {
            continue;
        };
        // (fragment id, offset, more) when this frame is a fragment.
        let (fragment, transport, ip_len) = match &p.net {
            Network::Ipv4 { header, transport } => {
                let frag = (header.more_fragments || header.fragment_offset > 0).then_some((
                    header.ident as u32,
                    header.fragment_offset as usize,
                    header.more_fragments,
                ));
                (
                    frag,
                    transport,
                    header.total_len.saturating_sub(header.header_len),
                )
            }
            Network::Ipv6 { header, transport } => (
                header.fragment.map(|f| (f.id, f.offset as usize, f.more)),
                transport,
                header.payload_len,
            ),
            Network::Arp(_) | Network::Other { .. } => continue,
        };
        match (fragment, transport) {
            (
                None,
                Transport::Udp {
                    repr,
                    checksum,
                    payload,
                },
            ) => out.push((
                number,
                Ok(UdpDatagram {
                    frames: vec![number],
                    src,
                    dst,
                    repr: repr.clone(),
                    checksum: *checksum,
                    payload: payload.clone(),
                    ip_len,
                    fragmented: false,
                }),
            )),
            (Some((id, 0, more)), Transport::Udp { repr, payload, .. }) => {
                let mut bytes = Vec::with_capacity(8 + payload.len());
                bytes.extend_from_slice(&repr.src_port.to_be_bytes());
                bytes.extend_from_slice(&repr.dst_port.to_be_bytes());
                bytes.extend_from_slice(&repr.length.to_be_bytes());
                bytes.extend_from_slice(&repr.checksum.to_be_bytes());
                bytes.extend_from_slice(payload);
                add(
                    (src, dst, id),
                    Piece {
                        frame: number,
                        offset: 0,
                        more,
                        bytes,
                    },
                    &mut groups,
                );
            }
            (
                Some((id, _, _)),
                Transport::Fragment {
                    protocol: PROTO_UDP,
                    offset,
                    more,
                    data,
                    ..
                },
            ) => add(
                (src, dst, id),
                Piece {
                    frame: number,
                    offset: *offset as usize,
                    more: *more,
                    bytes: data.clone(),
                },
                &mut groups,
            ),
            _ => {}
        }
    }
    for key in order {
        let Some(mut pieces) = groups.remove(&key) else {
            continue;
        };
        // Ordered by the frame of the first fragment, not the earliest frame: the capture sorts frames by
        // kernel timestamp, and a later fragment can carry an earlier one (seen here with IPv6, ~1 in 1000).
        let first_frame = pieces
            .iter()
            .filter(|p| p.offset == 0)
            .map(|p| p.frame)
            .min()
            .or_else(|| pieces.iter().map(|p| p.frame).min())
            .unwrap_or(0);
        out.push((first_frame, assemble(key, &mut pieces)));
    }
    out.sort_by_key(|(n, _)| *n);
    out.into_iter().map(|(_, d)| d).collect()
}

fn assemble(key: Key, pieces: &mut [Piece]) -> Result<UdpDatagram, Incomplete> {
    let (src, dst, id) = key;
    let mut frames: Vec<usize> = pieces.iter().map(|p| p.frame).collect();
    frames.sort();
    let incomplete = |reason: String| Incomplete {
        frames: frames.clone(),
        src,
        dst,
        id,
        reason,
    };
    pieces.sort_by_key(|p| (p.offset, p.frame));
    if pieces[0].offset != 0 {
        return Err(incomplete(format!(
            "no first fragment (lowest offset {})",
            pieces[0].offset
        )));
    }
    let mut bytes: Vec<u8> = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        if p.offset != bytes.len() {
            return Err(incomplete(if p.offset < bytes.len() {
                format!(
                    "fragment in frame #{} at offset {} overlaps bytes up to {}",
                    p.frame,
                    p.offset,
                    bytes.len()
                )
            } else {
                format!("hole between offsets {} and {}", bytes.len(), p.offset)
            }));
        }
        let last = i + 1 == pieces.len();
        if p.more == last {
            return Err(incomplete(if last {
                format!(
                    "no last fragment (frame #{} ends at {} with more-fragments set)",
                    p.frame,
                    p.offset + p.bytes.len()
                )
            } else {
                format!(
                    "fragment in frame #{} at offset {} says it is the last, but more follow",
                    p.frame, p.offset
                )
            }));
        }
        bytes.extend_from_slice(&p.bytes);
    }
    let packet = UdpPacket::new_checked(&bytes[..])
        .map_err(|e| incomplete(format!("reassembled bytes are not UDP: {e}")))?;
    let repr = UdpRepr::parse(&packet);
    let checksum = if repr.checksum == 0 && src.is_ipv4() {
        ChecksumStatus::NotComputed
    } else if packet.verify_checksum(src, dst) {
        ChecksumStatus::Valid
    } else {
        ChecksumStatus::Invalid
    };
    Ok(UdpDatagram {
        frames,
        src,
        dst,
        payload: packet.payload().to_vec(),
        repr,
        checksum,
        ip_len: bytes.len(),
        fragmented: true,
    })
}

/// The checksum a UDP datagram would carry (RFC 768: a computed 0 is sent as 0xffff), for tests and for
/// properties that craft payloads whose checksum computes to zero.
pub fn udp_checksum(src: IpAddr, dst: IpAddr, datagram_with_zero_checksum: &[u8]) -> u16 {
    match checksum::upper_layer(src, dst, PROTO_UDP, datagram_with_zero_checksum) {
        0 => 0xffff,
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{ip, parse_frame};
    use super::*;
    use crate::frame::LinkType;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const A4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const B4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    /// IPv4 fragments of `udp` with `chunk` data bytes each (a multiple of 8).
    fn v4_fragments(udp: &[u8], chunk: usize, ident: u16) -> Vec<Vec<u8>> {
        udp.chunks(chunk)
            .enumerate()
            .map(|(i, data)| {
                let more = (i + 1) * chunk < udp.len();
                let mut pkt = ipv4(A4, B4, ip::PROTO_UDP, ident, data);
                let off = ((i * chunk / 8) as u16) | if more { 0x2000 } else { 0 };
                pkt[6..8].copy_from_slice(&off.to_be_bytes());
                pkt[10..12].copy_from_slice(&[0, 0]);
                let c = checksum::checksum(&pkt[..20]);
                pkt[10..12].copy_from_slice(&c.to_be_bytes());
                ethernet(MAC_A, MAC_B, super::super::link::ETHERTYPE_IPV4, &pkt)
            })
            .collect()
    }

    fn parse_all(frames: &[Vec<u8>]) -> Vec<Packet> {
        frames
            .iter()
            .map(|f| parse_frame(LinkType::Ethernet, f).unwrap())
            .collect()
    }

    #[test]
    fn ipv4_fragments_reassemble_and_the_checksum_covers_all_of_them() {
        let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
        let udp = UdpRepr::emit(4000, 5000, A4.into(), B4.into(), &payload);
        let mut frames = v4_fragments(&udp, 1480, 9);
        // Delivered out of order: the reassembly does not care.
        frames.swap(0, 2);
        let packets = parse_all(&frames);
        let got = udp_datagrams(packets.iter().enumerate().map(|(i, p)| (i + 1, p)));
        assert_eq!(got.len(), 1);
        let d = got[0].as_ref().unwrap();
        assert_eq!(d.payload, payload);
        assert_eq!(d.checksum, ChecksumStatus::Valid);
        assert_eq!(d.repr.length as usize, 8 + payload.len());
        assert_eq!(d.ip_len, 8 + payload.len());
        assert_eq!(d.frames, vec![1, 2, 3]);
        assert!(d.fragmented);
        // One flipped byte in the last fragment breaks the checksum of the whole datagram.
        let mut bad = v4_fragments(&udp, 1480, 9);
        let n = bad[2].len();
        bad[2][n - 1] ^= 0x55;
        let packets = parse_all(&bad);
        let got = udp_datagrams(packets.iter().enumerate().map(|(i, p)| (i + 1, p)));
        assert_eq!(got[0].as_ref().unwrap().checksum, ChecksumStatus::Invalid);
    }

    #[test]
    fn a_missing_fragment_is_reported_not_guessed() {
        let payload = vec![1u8; 4000];
        let udp = UdpRepr::emit(1, 2, A4.into(), B4.into(), &payload);
        let mut frames = v4_fragments(&udp, 1480, 3);
        frames.remove(1);
        let packets = parse_all(&frames);
        let got = udp_datagrams(packets.iter().enumerate().map(|(i, p)| (i + 1, p)));
        let e = got[0].as_ref().unwrap_err();
        assert!(e.reason.contains("hole"), "{e:?}");
    }

    #[test]
    fn ipv6_fragments_reassemble() {
        let a6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let b6: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let payload: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
        let udp = UdpRepr::emit(7, 8, a6.into(), b6.into(), &payload);
        let frames: Vec<Vec<u8>> = udp
            .chunks(1232)
            .enumerate()
            .map(|(i, data)| {
                let more = (i + 1) * 1232 < udp.len();
                let off = ((i * 1232) as u16) | more as u16;
                let mut ext = vec![ip::PROTO_UDP, 0];
                ext.extend_from_slice(&off.to_be_bytes());
                ext.extend_from_slice(&77u32.to_be_bytes());
                ext.extend_from_slice(data);
                ethernet(
                    MAC_A,
                    MAC_B,
                    super::super::link::ETHERTYPE_IPV6,
                    &ipv6(a6, b6, 44, &ext),
                )
            })
            .collect();
        let packets = parse_all(&frames);
        let got = udp_datagrams(packets.iter().enumerate().map(|(i, p)| (i + 1, p)));
        let d = got[0].as_ref().unwrap();
        assert_eq!(d.payload, payload);
        assert_eq!(d.checksum, ChecksumStatus::Valid);
    }

    #[test]
    fn a_computed_zero_checksum_is_sent_as_all_ones() {
        // Two payload bytes chosen so that the sum is 0xffff: the checksum computes to 0.
        let (s, d): (IpAddr, IpAddr) = (A4.into(), B4.into());
        let mut udp = UdpRepr::emit(1000, 2000, s, d, &[0, 0, 9, 9]);
        udp[6..8].copy_from_slice(&[0, 0]);
        let sum = checksum::sum(&udp, checksum::pseudo_header_sum(s, d, 17, udp.len()));
        let word = checksum::finish(sum); // !fold(sum): adding it makes the folded sum 0xffff
        udp[8..10].copy_from_slice(&word.to_be_bytes());
        assert_eq!(udp_checksum(s, d, &udp), 0xffff);
    }
}
