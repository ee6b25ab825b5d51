//! Property-based self-tests of the harness (proptest, dev-dependency): the wire parsers and the pcapng reader
//! never panic on arbitrary bytes, emitted reprs parse back to themselves, `SeqNumber` arithmetic keeps its
//! laws, and etherparse, as a differential oracle, reads the same IP/TCP/UDP fields as `wire` does.
//!
//! These test the harness, not the kernel, so they need no lab and no root, and take about a second.
//!
//! Where etherparse and `wire` legitimately differ (documented, not tested as equal):
//! - an unknown TCP option: `wire` keeps it (`TcpOption::Unknown`) and walks on; etherparse's options iterator
//!   reports `UnknownId` and stops, so options after it are not compared;
//! - a malformed option length: `wire` fails the segment (`WireError`), etherparse reports the error only when
//!   the options are iterated and still gives the header fields;
//! - the IPv4 header checksum: `wire` verifies it (`checksum_ok`), etherparse does not look at it;
//! - IPv4 fragments after the first: `wire` reports `Transport::Fragment`, etherparse gives no transport slice.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::prelude::*;

use crate::frame::LinkType;
use crate::wire::seq::SeqNumber;
use crate::wire::tcp::{TcpFlags, TcpOption, TcpPacket, TcpRepr};
use crate::wire::testutil::{ethernet, ipv4, ipv6, MAC_A, MAC_B};
use crate::wire::udp::{UdpPacket, UdpRepr};
use crate::wire::{link, parse_frame, Network, Transport};

/// Emitted length of one option (kind + length + data).
fn option_len(o: &TcpOption) -> usize {
    match o {
        TcpOption::EndOfList | TcpOption::NoOperation => 1,
        TcpOption::MaxSegmentSize(_) => 4,
        TcpOption::WindowScale(_) => 3,
        TcpOption::SackPermitted => 2,
        TcpOption::SackRange(b) => 2 + 8 * b.len(),
        TcpOption::Timestamp { .. } => 10,
        TcpOption::Unknown { data, .. } => 2 + data.len(),
    }
}

fn seq() -> impl Strategy<Value = SeqNumber> {
    any::<u32>().prop_map(SeqNumber)
}

/// Any option `wire` can emit, EOL excepted (it ends the walk; padding after the last option is EOLs).
fn tcp_option(with_unknown: bool) -> BoxedStrategy<TcpOption> {
    let known = prop_oneof![
        Just(TcpOption::NoOperation),
        any::<u16>().prop_map(TcpOption::MaxSegmentSize),
        any::<u8>().prop_map(TcpOption::WindowScale),
        Just(TcpOption::SackPermitted),
        vec((seq(), seq()), 1..=4).prop_map(TcpOption::SackRange),
        (any::<u32>(), any::<u32>())
            .prop_map(|(tsval, tsecr)| TcpOption::Timestamp { tsval, tsecr }),
    ];
    if with_unknown {
        prop_oneof![
            4 => known,
            1 => ((9u8..=253), vec(any::<u8>(), 0..6))
                .prop_map(|(kind, data)| TcpOption::Unknown { kind, data }),
        ]
        .boxed()
    } else {
        known.boxed()
    }
}

fn tcp_repr(with_unknown: bool) -> impl Strategy<Value = (TcpRepr, Vec<u8>)> {
    (
        any::<(u16, u16, u8, u16, u16)>(),
        seq(),
        seq(),
        vec(tcp_option(with_unknown), 0..6).prop_filter("options fit in 40 bytes", |o| {
            o.iter().map(option_len).sum::<usize>() <= 40
        }),
        vec(any::<u8>(), 0..200),
    )
        .prop_map(
            |((src_port, dst_port, flags, window, urgent), seq, ack, options, payload)| {
                let repr = TcpRepr {
                    src_port,
                    dst_port,
                    seq,
                    ack,
                    flags: TcpFlags::from_byte(flags),
                    window,
                    urgent,
                    options,
                    payload_len: payload.len(),
                };
                (repr, payload)
            },
        )
}

/// The parsed options without the EOL padding that emit adds to reach a multiple of 4 bytes.
fn without_padding(mut options: Vec<TcpOption>) -> Vec<TcpOption> {
    if options.last() == Some(&TcpOption::EndOfList) {
        options.pop();
    }
    options
}

fn v4(a: u32) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

/// An Ethernet frame carrying `segment` (TCP, 6, or UDP, 17) over IPv4 or IPv6.
fn frame(v6: bool, proto: u8, src: IpAddr, dst: IpAddr, segment: &[u8]) -> Vec<u8> {
    match (src, dst, v6) {
        (IpAddr::V4(s), IpAddr::V4(d), false) => ethernet(
            MAC_A,
            MAC_B,
            link::ETHERTYPE_IPV4,
            &ipv4(s, d, proto, 7, segment),
        ),
        (IpAddr::V6(s), IpAddr::V6(d), true) => ethernet(
            MAC_A,
            MAC_B,
            link::ETHERTYPE_IPV6,
            &ipv6(s, d, proto, segment),
        ),
        _ => unreachable!("addresses follow the family"),
    }
}

fn addrs() -> impl Strategy<Value = (bool, IpAddr, IpAddr)> {
    prop_oneof![
        (any::<u32>(), any::<u32>()).prop_map(|(s, d)| (
            false,
            IpAddr::V4(v4(s)),
            IpAddr::V4(v4(d))
        )),
        (any::<u128>(), any::<u128>()).prop_map(|(s, d)| (
            true,
            IpAddr::V6(Ipv6Addr::from(s)),
            IpAddr::V6(Ipv6Addr::from(d))
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    // ---- never panic on arbitrary bytes ------------------------------------------------------------------

    #[test]
    fn parse_frame_never_panics(data in vec(any::<u8>(), 0..1600)) {
        let _ = parse_frame(LinkType::Ethernet, &data);
        let _ = parse_frame(LinkType::RawIp, &data);
    }

    #[test]
    fn parse_frame_never_panics_on_ip_like_bytes(
        version in prop_oneof![Just(0x45u8), Just(0x46), Just(0x4f), Just(0x60)],
        rest in vec(any::<u8>(), 0..200),
    ) {
        let mut data = vec![version];
        data.extend(rest);
        let _ = parse_frame(LinkType::RawIp, &data);
    }

    #[test]
    fn tcp_and_udp_views_never_panic(data in vec(any::<u8>(), 0..120)) {
        if let Ok(p) = TcpPacket::new_checked(&data[..]) {
            let _ = TcpRepr::parse(&p);
            let _ = p.payload();
        }
        if let Ok(p) = UdpPacket::new_checked(&data[..]) {
            let _ = UdpRepr::parse(&p);
            let _ = p.payload();
        }
        let _ = TcpOption::parse_all(&data);
    }

    #[test]
    fn pcapng_reader_never_panics(data in vec(any::<u8>(), 0..600)) {
        let _ = crate::pcapng::read_capture_bytes(&data);
    }

    #[test]
    fn pcapng_reader_never_panics_on_a_damaged_real_file(
        (at, byte) in (0usize..10_000, any::<u8>()),
        cut in 0usize..10_000,
    ) {
        let mut good = sample_pcapng();
        let at = at % good.len();
        good[at] = byte;
        good.truncate(cut % (good.len() + 1));
        let _ = crate::pcapng::read_capture_bytes(&good);
    }

    // ---- round trips -------------------------------------------------------------------------------------

    #[test]
    fn tcp_emit_then_parse_gives_the_same_repr(((repr, payload), (_, src, dst)) in (tcp_repr(true), addrs())) {
        let bytes = repr.emit(src, dst, &payload);
        let p = TcpPacket::new_checked(&bytes[..]).expect("emitted segment is valid");
        prop_assert!(p.verify_checksum(src, dst));
        let mut back = TcpRepr::parse(&p).expect("emitted options parse");
        back.options = without_padding(back.options);
        prop_assert_eq!(&back, &repr);
        prop_assert_eq!(p.payload(), &payload[..]);
    }

    #[test]
    fn udp_emit_then_parse_gives_the_same_fields(
        (sport, dport) in any::<(u16, u16)>(),
        (_, src, dst) in addrs(),
        payload in vec(any::<u8>(), 0..300),
    ) {
        let bytes = UdpRepr::emit(sport, dport, src, dst, &payload);
        let p = UdpPacket::new_checked(&bytes[..]).expect("emitted datagram is valid");
        let r = UdpRepr::parse(&p);
        prop_assert_eq!((r.src_port, r.dst_port, r.length as usize), (sport, dport, 8 + payload.len()));
        prop_assert_ne!(r.checksum, 0, "0 means 'no checksum'; RFC 768 sends 0xffff instead");
        prop_assert!(p.verify_checksum(src, dst));
        prop_assert_eq!(p.payload(), &payload[..]);
    }

    #[test]
    fn a_whole_frame_round_trips_through_parse_frame(((repr, payload), (v6, src, dst)) in (tcp_repr(true), addrs())) {
        let seg = repr.emit(src, dst, &payload);
        let f = frame(v6, 6, src, dst, &seg);
        let packet = parse_frame(LinkType::Ethernet, &f).expect("emitted frame parses");
        prop_assert_eq!(packet.src_ip(), Some(src));
        prop_assert_eq!(packet.dst_ip(), Some(dst));
        let Some(Transport::Tcp { repr: back, payload: got, .. }) = packet.transport() else {
            return Err(TestCaseError::fail("not TCP"));
        };
        let mut back = back.clone();
        back.options = without_padding(back.options);
        prop_assert_eq!(&back, &repr);
        prop_assert_eq!(got, &payload);
    }

    // ---- SeqNumber laws (RFC 9293 §3.4: modulo 2^32) ------------------------------------------------------

    #[test]
    fn seq_add_then_sub_is_the_identity(a in seq(), n in 0u32..=i32::MAX as u32) {
        prop_assert_eq!((a + n) - a, n as i32);
        prop_assert_eq!((a + n).distance_from(a), n as i64);
    }

    #[test]
    fn seq_sub_then_add_gives_back_the_number(a in seq(), b in seq()) {
        prop_assert_eq!(b + (a - b) as u32, a);
    }

    #[test]
    fn seq_ordering_is_wrap_aware(a in seq(), n in 1u32..=(i32::MAX as u32)) {
        // Anything up to 2^31 - 1 ahead is "after", across the wrap too.
        prop_assert!(a < a + n);
        prop_assert!(a + n > a);
        prop_assert!(a <= a);
        prop_assert_eq!(a.partial_cmp(&a), Some(std::cmp::Ordering::Equal));
    }

    #[test]
    fn seq_ordering_is_antisymmetric(a in seq(), b in seq()) {
        prop_assume!(b.0.wrapping_sub(a.0) != 1 << 31); // exactly half-way: both directions are "ahead"
        prop_assert_eq!(a < b, b > a);
        prop_assert!(!(a < b && b < a));
    }

    // ---- etherparse as a differential oracle ---------------------------------------------------------------

    #[test]
    fn etherparse_reads_the_same_fields_as_wire(
        ((repr, payload), (v6, src, dst)) in (tcp_repr(false), addrs()),
    ) {
        let seg = repr.emit(src, dst, &payload);
        let f = frame(v6, 6, src, dst, &seg);
        let ours = parse_frame(LinkType::Ethernet, &f).expect("emitted frame parses");
        oracle::same_fields(&ours, &f)?;
    }

    #[test]
    fn etherparse_reads_the_same_udp_fields_as_wire(
        (sport, dport) in any::<(u16, u16)>(),
        (v6, src, dst) in addrs(),
        payload in vec(any::<u8>(), 0..300),
    ) {
        let f = frame(v6, 17, src, dst, &UdpRepr::emit(sport, dport, src, dst, &payload));
        let ours = parse_frame(LinkType::Ethernet, &f).expect("emitted frame parses");
        oracle::same_fields(&ours, &f)?;
    }

    #[test]
    fn etherparse_stops_at_an_unknown_option_where_wire_walks_on(
        kind in 9u8..=253,
        data in vec(any::<u8>(), 0..4),
        mss in any::<u16>(),
    ) {
        let repr = TcpRepr {
            src_port: 1, dst_port: 2, seq: SeqNumber(1), ack: SeqNumber(0),
            flags: TcpFlags::from_byte(0x02), window: 1000, urgent: 0,
            options: vec![TcpOption::Unknown { kind, data }, TcpOption::MaxSegmentSize(mss)],
            payload_len: 0,
        };
        let (s, d) = (IpAddr::V4(v4(1)), IpAddr::V4(v4(2)));
        let seg = repr.emit(s, d, &[]);
        let ours = TcpRepr::parse(&TcpPacket::new_checked(&seg[..]).unwrap()).unwrap();
        prop_assert_eq!(ours.mss(), Some(mss), "wire walks past the unknown option");
        let theirs = etherparse::TcpSlice::from_slice(&seg).unwrap();
        let mut it = theirs.options_iterator();
        prop_assert!(it.next().is_some_and(|o| o.is_err()), "etherparse reports the unknown option");
        prop_assert!(it.next().is_none(), "and stops there: the MSS after it is not read");
    }
}

/// A small real-shaped pcapng file: a handshake-like exchange written by our writer.
fn sample_pcapng() -> Vec<u8> {
    use crate::frame::Frame;
    use crate::pcapng::{Direction, PcapngWriter};
    let (s, d) = (v4(0xc612_0001), v4(0xc612_0002));
    let mut w = PcapngWriter::new(Vec::new(), Some("proptest sample")).unwrap();
    let ifc = w.add_interface("veth-a", LinkType::Ethernet, None).unwrap();
    for (i, flags) in [0x02u8, 0x12, 0x10, 0x18, 0x11].iter().enumerate() {
        let repr = TcpRepr {
            src_port: 40000,
            dst_port: 4242,
            seq: SeqNumber(1000 + i as u32),
            ack: SeqNumber(i as u32),
            flags: TcpFlags::from_byte(*flags),
            window: 64240,
            urgent: 0,
            options: vec![TcpOption::MaxSegmentSize(1460), TcpOption::SackPermitted],
            payload_len: i,
        };
        let payload = vec![b'x'; i];
        let seg = repr.emit(IpAddr::V4(s), IpAddr::V4(d), &payload);
        let data = ethernet(
            MAC_A,
            MAC_B,
            link::ETHERTYPE_IPV4,
            &ipv4(s, d, 6, i as u16, &seg),
        );
        let frame = Frame {
            ts_ns: 1_700_000_000_000_000_000 + i as u64 * 1000,
            origin: None,
            link: LinkType::Ethernet,
            data,
        };
        w.write_frame(ifc, &frame, Some(Direction::Outbound), None)
            .unwrap();
    }
    w.finish().unwrap()
}

#[test]
fn the_sample_pcapng_reads_back_to_its_frames() {
    let records = crate::pcapng::read_capture_bytes(&sample_pcapng()).unwrap();
    assert_eq!(records.len(), 5);
    for r in &records {
        let p = parse_frame(r.frame.link, &r.frame.data).unwrap();
        assert!(p.tcp().is_some());
        oracle::same_fields(&p, &r.frame.data).unwrap();
    }
}

/// Checking `wire`'s reading of a frame against etherparse's.
pub(crate) mod oracle {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TcpOptionElement, TransportSlice};

    macro_rules! same {
        ($field:expr, $ours:expr, $theirs:expr) => {
            if $ours != $theirs {
                return Err(TestCaseError::fail(format!(
                    "{}: wire {:?}, etherparse {:?}",
                    $field, $ours, $theirs
                )));
            }
        };
    }

    /// The IP and TCP/UDP fields of an Ethernet frame as `wire` parsed them (`ours`) and as etherparse does.
    pub fn same_fields(ours: &crate::wire::Packet, frame: &[u8]) -> Result<(), TestCaseError> {
        let theirs = SlicedPacket::from_ethernet(frame)
            .map_err(|e| TestCaseError::fail(format!("etherparse: {e}")))?;
        match (&ours.net, &theirs.net) {
            (Network::Ipv4 { header, .. }, Some(NetSlice::Ipv4(ip))) => {
                let h = ip.header();
                same!("ipv4 src", header.src, h.source_addr());
                same!("ipv4 dst", header.dst, h.destination_addr());
                same!("ipv4 ttl", header.ttl, h.ttl());
                same!("ipv4 id", header.ident, h.identification());
                same!("ipv4 DF", header.dont_fragment, h.dont_fragment());
                same!("ipv4 MF", header.more_fragments, h.more_fragments());
                same!(
                    "ipv4 offset",
                    header.fragment_offset,
                    h.fragments_offset().value()
                );
                same!(
                    "ipv4 total length",
                    header.total_len,
                    h.total_len() as usize
                );
            }
            (Network::Ipv6 { header, .. }, Some(NetSlice::Ipv6(ip))) => {
                let h = ip.header();
                same!("ipv6 src", header.src, h.source_addr());
                same!("ipv6 dst", header.dst, h.destination_addr());
                same!("ipv6 hop limit", header.hop_limit, h.hop_limit());
                same!(
                    "ipv6 payload length",
                    header.payload_len,
                    h.payload_length() as usize
                );
                same!("ipv6 flow label", header.flow_label, h.flow_label().value());
                same!(
                    "ipv6 traffic class",
                    header.traffic_class,
                    h.traffic_class()
                );
            }
            (n, t) => {
                return Err(TestCaseError::fail(format!(
                    "network layer: wire {n:?}, etherparse {}",
                    if t.is_some() { "another one" } else { "none" }
                )))
            }
        }
        match (ours.transport(), &theirs.transport) {
            (Some(Transport::Tcp { repr, payload, .. }), Some(TransportSlice::Tcp(t))) => {
                same!("tcp src port", repr.src_port, t.source_port());
                same!("tcp dst port", repr.dst_port, t.destination_port());
                same!("tcp seq", repr.seq.0, t.sequence_number());
                same!("tcp ack", repr.ack.0, t.acknowledgment_number());
                same!("tcp window", repr.window, t.window_size());
                same!("tcp urgent", repr.urgent, t.urgent_pointer());
                let f = repr.flags;
                same!(
                    "tcp flags",
                    (f.fin, f.syn, f.rst, f.psh, f.ack, f.urg, f.ece, f.cwr),
                    (
                        t.fin(),
                        t.syn(),
                        t.rst(),
                        t.psh(),
                        t.ack(),
                        t.urg(),
                        t.ece(),
                        t.cwr()
                    )
                );
                same!("tcp payload", &payload[..], t.payload());
                // Options, up to the first one etherparse cannot read (see the module doc).
                let mut theirs_opts = Vec::new();
                for o in t.options_iterator() {
                    match o {
                        Ok(TcpOptionElement::Noop) => theirs_opts.push(TcpOption::NoOperation),
                        Ok(TcpOptionElement::MaximumSegmentSize(m)) => {
                            theirs_opts.push(TcpOption::MaxSegmentSize(m))
                        }
                        Ok(TcpOptionElement::WindowScale(s)) => {
                            theirs_opts.push(TcpOption::WindowScale(s))
                        }
                        Ok(TcpOptionElement::SelectiveAcknowledgementPermitted) => {
                            theirs_opts.push(TcpOption::SackPermitted)
                        }
                        Ok(TcpOptionElement::SelectiveAcknowledgement(first, rest)) => {
                            let blocks = std::iter::once(Some(first))
                                .chain(rest)
                                .flatten()
                                .map(|(l, r)| (SeqNumber(l), SeqNumber(r)))
                                .collect();
                            theirs_opts.push(TcpOption::SackRange(blocks))
                        }
                        Ok(TcpOptionElement::Timestamp(tsval, tsecr)) => {
                            theirs_opts.push(TcpOption::Timestamp { tsval, tsecr })
                        }
                        Err(_) => break,
                    }
                }
                let ours_opts: Vec<TcpOption> = repr
                    .options
                    .iter()
                    .take_while(|o| !matches!(o, TcpOption::EndOfList | TcpOption::Unknown { .. }))
                    .cloned()
                    .collect();
                same!("tcp options", ours_opts, theirs_opts);
            }
            (Some(Transport::Udp { repr, payload, .. }), Some(TransportSlice::Udp(u))) => {
                same!("udp src port", repr.src_port, u.source_port());
                same!("udp dst port", repr.dst_port, u.destination_port());
                same!("udp length", repr.length, u.length());
                same!("udp checksum", repr.checksum, u.checksum());
                same!("udp payload", &payload[..], u.payload());
            }
            (o, t) => {
                return Err(TestCaseError::fail(format!(
                    "transport: wire {o:?}, etherparse {}",
                    if t.is_some() { "another one" } else { "none" }
                )))
            }
        }
        Ok(())
    }
}

/// Captures taken by `netconform run --pcap all` on this kernel (`tests/data/`): a handshake over IPv4 and IPv6,
/// and UDP datagrams over IPv4, fragmented ones included.
const REAL_CAPTURES: &[&str] = &[
    "handshake-ipv4.pcapng",
    "handshake-ipv6.pcapng",
    "udp-ipv4.pcapng",
];

fn real_frames() -> Vec<crate::frame::Frame> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let dir = root.join("tests/data");
    REAL_CAPTURES
        .iter()
        .flat_map(|name| crate::pcapng::read_capture(&dir.join(name)).unwrap())
        .map(|r| r.frame)
        .collect()
}

/// An IP fragment (first or later): etherparse does not slice the transport of a fragment; `wire` reads the
/// first fragment's header and reassembles elsewhere (`wire::reassembly`).
fn is_fragment(p: &crate::wire::Packet) -> bool {
    match &p.net {
        Network::Ipv4 { header, .. } => header.more_fragments || header.fragment_offset > 0,
        Network::Ipv6 { header, .. } => header.fragment.is_some(),
        _ => false,
    }
}

#[test]
fn etherparse_reads_real_captured_frames_as_wire_does() {
    let frames = real_frames();
    let (mut compared, mut fragments) = (0, 0);
    for (i, f) in frames.iter().enumerate() {
        let ours = parse_frame(f.link, &f.data).unwrap_or_else(|e| panic!("frame {i}: {e}"));
        if !matches!(ours.net, Network::Ipv4 { .. } | Network::Ipv6 { .. }) {
            continue; // ARP / ND are not compared
        }
        if is_fragment(&ours) {
            // Only the IP header is compared: etherparse leaves a fragment's transport alone.
            let theirs = etherparse::SlicedPacket::from_ethernet(&f.data).unwrap();
            assert!(
                theirs.transport.is_none(),
                "frame {i}: etherparse sliced a fragment"
            );
            fragments += 1;
            continue;
        }
        oracle::same_fields(&ours, &f.data).unwrap_or_else(|e| panic!("frame {i}: {e}"));
        compared += 1;
    }
    assert!(compared >= 10, "only {compared} real frames compared");
    assert!(fragments >= 1, "the UDP capture should hold fragments");
}

/// Parse throughput of `wire` and etherparse on the same real frames (a measurement, not a test: speed targets
/// live in benchmarks). `cargo test --release -p harness --lib parse_throughput -- --ignored --nocapture`
#[test]
#[ignore]
fn parse_throughput() {
    use std::time::Instant;
    let frames: Vec<Vec<u8>> = real_frames().into_iter().map(|f| f.data).collect();
    println!(
        "size of an owned result: wire Packet {} B, etherparse PacketHeaders {} B",
        std::mem::size_of::<crate::wire::Packet>(),
        std::mem::size_of::<etherparse::PacketHeaders>()
    );
    let rounds = 200_000 / frames.len().max(1);
    let total = (rounds * frames.len()) as f64;
    for run in 0..3 {
        let t = Instant::now();
        let mut n = 0usize;
        for _ in 0..rounds {
            for f in &frames {
                n += std::hint::black_box(parse_frame(LinkType::Ethernet, std::hint::black_box(f)))
                    .is_ok() as usize;
            }
        }
        let ours = total / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut m = 0usize;
        for _ in 0..rounds {
            for f in &frames {
                let p = etherparse::SlicedPacket::from_ethernet(std::hint::black_box(f));
                // Walk the TCP options too, as wire does.
                if let Ok(etherparse::SlicedPacket {
                    transport: Some(etherparse::TransportSlice::Tcp(t)),
                    ..
                }) = &p
                {
                    m += t.options_iterator().count();
                }
                m += std::hint::black_box(p).is_ok() as usize;
            }
        }
        let theirs = total / t.elapsed().as_secs_f64();
        // etherparse into owned headers (closer to wire's owned reprs; still no checksum verification).
        let t = Instant::now();
        for _ in 0..rounds {
            for f in &frames {
                m += std::hint::black_box(etherparse::PacketHeaders::from_ethernet_slice(
                    std::hint::black_box(f),
                ))
                .is_ok() as usize;
            }
        }
        let owned = total / t.elapsed().as_secs_f64();
        println!(
            "run {run}: {} frames: wire {:.2} M frames/s, etherparse sliced {:.2} M frames/s, etherparse \
             owned headers {:.2} M frames/s ({n} {m})",
            frames.len(),
            ours / 1e6,
            theirs / 1e6,
            owned / 1e6
        );
    }
}
