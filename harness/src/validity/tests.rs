//! Each rule on hand-made frames: a clean exchange passes, and one fault at a time is found with its frame,
//! field, expected and actual value.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;
use crate::frame::{Frame, LinkType};
use crate::trace::HostAddrs;
use crate::wire::testutil::{ethernet, ipv4, ipv6, tcp_v4, MAC_A, MAC_B};
use crate::wire::{SeqNumber, TcpFlags, UdpRepr};

const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn repr(
    from_a: bool,
    flags: &str,
    seq: u32,
    ack: u32,
    len: usize,
    options: Vec<TcpOption>,
) -> TcpRepr {
    TcpRepr {
        src_port: if from_a { 40000 } else { 5000 },
        dst_port: if from_a { 5000 } else { 40000 },
        seq: SeqNumber(seq),
        ack: SeqNumber(ack),
        flags: TcpFlags {
            syn: flags.contains('S'),
            fin: flags.contains('F'),
            rst: flags.contains('R'),
            ack: flags.contains('.'),
            ..Default::default()
        },
        window: 1000,
        urgent: 0,
        options,
        payload_len: len,
    }
}

fn frame(from_a: bool, data: Vec<u8>) -> Frame {
    Frame {
        ts_ns: 0,
        origin: Some(if from_a { Host::A } else { Host::B }),
        link: LinkType::Ethernet,
        data,
    }
}

fn seg(
    from_a: bool,
    flags: &str,
    seq: u32,
    ack: u32,
    len: usize,
    options: Vec<TcpOption>,
) -> Frame {
    let r = repr(from_a, flags, seq, ack, len, options);
    let (s, d) = if from_a { (A, B) } else { (B, A) };
    frame(from_a, tcp_v4(s, d, &r, &vec![0x61; len], from_a))
}

fn ts(tsval: u32, tsecr: u32) -> TcpOption {
    TcpOption::Timestamp { tsval, tsecr }
}

/// SYN (MSS 1000, SACK-permitted, TS), SYN-ACK (MSS 500, SACK-permitted, TS), ACK.
fn handshake() -> Vec<Frame> {
    use TcpOption::*;
    vec![
        seg(
            true,
            "S",
            0,
            0,
            0,
            vec![MaxSegmentSize(1000), SackPermitted, ts(1, 0)],
        ),
        seg(
            false,
            "S.",
            100,
            1,
            0,
            vec![MaxSegmentSize(500), SackPermitted, ts(7, 1)],
        ),
        seg(true, ".", 1, 101, 0, vec![ts(2, 7)]),
    ]
}

fn run(frames: &[Frame], offline: bool) -> ValidityReport {
    let hosts = HostAddrs::new(vec![(IpAddr::V4(A), Host::A), (IpAddr::V4(B), Host::B)]);
    let trace = Trace::build(frames, &hosts, Some(0));
    let ctx = ValidityContext {
        capture_host: Some(Host::A),
        judged: None,
        offline: offline.then(|| OfflineCapture {
            truncated: vec![false; frames.len()],
        }),
    };
    check(frames, &trace, &ctx)
}

fn found(frames: &[Frame]) -> Vec<(&'static str, Violation)> {
    run(frames, false).findings
}

fn one(frames: &[Frame]) -> (&'static str, Violation) {
    let f = found(frames);
    assert_eq!(f.len(), 1, "{f:#?}");
    f.into_iter().next().unwrap()
}

#[test]
fn a_clean_exchange_has_no_finding() {
    let mut f = handshake();
    f.push(seg(true, ".", 1, 101, 488, vec![ts(3, 7)])); // 488 + 12 option bytes = the MSS of 500
    f.push(seg(false, ".", 101, 489, 0, vec![ts(8, 3)]));
    f.push(seg(true, "F.", 489, 101, 0, vec![ts(4, 8)]));
    f.push(seg(false, "R.", 101, 490, 0, vec![]));
    assert!(found(&f).is_empty(), "{:#?}", found(&f));
}

#[test]
fn a_bad_tcp_checksum_names_the_right_value() {
    let mut f = handshake();
    let mut data = seg(true, ".", 1, 101, 10, vec![ts(3, 7)]);
    let at = 14 + 20 + 16;
    let right = u16::from_be_bytes([data.data[at], data.data[at + 1]]);
    data.data[at] ^= 0xff;
    let wrong = u16::from_be_bytes([data.data[at], data.data[at + 1]]);
    f.push(data);
    let (id, v) = one(&f);
    assert_eq!(id, "tcp.header.valid");
    assert_eq!(v.frames, [4]);
    assert_eq!(v.field.as_deref(), Some("tcp.checksum"));
    assert!(v.expected.unwrap().starts_with(&format!("0x{right:04x}")));
    assert_eq!(v.actual.unwrap(), format!("0x{wrong:04x}"));
}

#[test]
fn offline_an_offload_checksum_is_an_artifact_but_garbage_is_not() {
    let mut f = handshake();
    let mut data = seg(true, ".", 1, 101, 10, vec![ts(3, 7)]);
    let tcp_len = data.data.len() - 34;
    let seed = offload_seed(IpAddr::V4(A), IpAddr::V4(B), ip::PROTO_TCP, tcp_len);
    data.data[50..52].copy_from_slice(&seed.to_be_bytes());
    f.push(data);
    let r = run(&f, true);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!(r.artifacts.len(), 1);
    assert!(
        r.artifacts[0].what.contains("TX checksum offload"),
        "{:?}",
        r.artifacts
    );
    // In the lab nothing is excused.
    assert_eq!(found(&f).len(), 1);
}

/// The SYN-ACK's options area rewritten in place (checksum recomputed): MSS with length 9.
fn with_malformed_mss(mut f: Frame) -> Frame {
    let tcp = 14 + 20;
    assert_eq!(f.data[tcp + 20], 2);
    f.data[tcp + 21] = 9;
    f.data[tcp + 16] = 0;
    f.data[tcp + 17] = 0;
    let c = checksum::upper_layer(IpAddr::V4(B), IpAddr::V4(A), ip::PROTO_TCP, &f.data[tcp..]);
    f.data[tcp + 16..tcp + 18].copy_from_slice(&c.to_be_bytes());
    f
}

#[test]
fn a_malformed_option_is_found_and_the_segment_is_still_traced() {
    let mut f = handshake();
    f[1] = with_malformed_mss(f[1].clone());
    let r = found(&f);
    let (id, v) = &r[0];
    assert_eq!(*id, "tcp.header.valid", "{r:#?}");
    assert_eq!(v.frames, [2]);
    assert_eq!(v.field.as_deref(), Some("tcp.options"));
    assert!(
        v.actual.as_ref().unwrap().contains("kind 2 length 9"),
        "{v:?}"
    );
    let hosts = HostAddrs::new(vec![(IpAddr::V4(A), Host::A), (IpAddr::V4(B), Host::B)]);
    let trace = Trace::build(&f, &hosts, Some(0));
    assert!(trace.frames[1]
        .tcp()
        .is_some_and(|t| t.flags.syn && t.flags.ack));
    assert!(
        trace.canonical_line(1).contains("<malformed>"),
        "{}",
        trace.canonical_line(1)
    );
}

#[test]
fn syn_only_options_and_a_large_shift_are_found() {
    let mut f = handshake();
    f.push(seg(
        true,
        ".",
        1,
        101,
        0,
        vec![TcpOption::MaxSegmentSize(1000), ts(3, 7)],
    ));
    let (id, v) = one(&f);
    assert_eq!((id, v.frames.as_slice()), ("tcp.options.valid", &[4][..]));
    assert!(v.actual.unwrap().starts_with("MSS on a . segment"));

    let f = vec![seg(true, "S", 0, 0, 0, vec![TcpOption::WindowScale(15)])];
    let (id, v) = one(&f);
    assert_eq!(
        (id, v.field.as_deref()),
        ("tcp.options.valid", Some("tcp.options.wscale"))
    );
    assert_eq!(v.actual.as_deref(), Some("15"));
}

#[test]
fn timestamps_must_follow_the_negotiation() {
    let mut f = handshake();
    f.push(seg(true, ".", 1, 101, 10, vec![])); // negotiated, but no TSopt
    let (id, v) = one(&f);
    assert_eq!(
        (id, v.field.as_deref()),
        ("tcp.options.valid", Some("tcp.options.timestamps"))
    );

    let mut f = handshake();
    f.push(seg(true, ".", 1, 101, 10, vec![ts(3, 99)])); // echoes a TSval b never sent
    let (_, v) = one(&f);
    assert_eq!(v.field.as_deref(), Some("tcp.options.timestamps.tsecr"));

    let mut f = handshake();
    f.push(seg(true, ".", 1, 101, 10, vec![ts(1, 7)])); // a's TSval went from 2 back to 1
    let (_, v) = one(&f);
    assert_eq!(v.frames, [3, 4]);

    // A SYN-ACK answering timestamps the SYN did not offer.
    let f = vec![
        seg(true, "S", 0, 0, 0, vec![]),
        seg(false, "S.", 100, 1, 0, vec![ts(7, 0)]),
    ];
    let (_, v) = one(&f);
    assert_eq!(v.field.as_deref(), Some("SYN-ACK options"));
}

#[test]
fn sack_blocks_need_permission_and_order() {
    let f = vec![
        seg(true, "S", 0, 0, 0, vec![]),
        seg(false, "S.", 100, 1, 0, vec![TcpOption::SackPermitted]),
        seg(true, ".", 1, 101, 0, vec![]),
        seg(
            false,
            ".",
            101,
            1,
            0,
            vec![TcpOption::SackRange(vec![(SeqNumber(11), SeqNumber(21))])],
        ),
    ];
    let (id, v) = one(&f);
    assert_eq!(
        (id, v.field.as_deref()),
        ("tcp.options.valid", Some("tcp.options.sack"))
    );

    let mut f = handshake();
    f.push(seg(
        false,
        ".",
        101,
        1,
        0,
        vec![
            ts(8, 2),
            TcpOption::SackRange(vec![(SeqNumber(21), SeqNumber(11))]),
        ],
    ));
    let (_, v) = one(&f);
    assert_eq!(v.expected.as_deref(), Some("left < right"));
}

#[test]
fn a_segment_beyond_the_peer_mss_and_data_on_a_syn_are_found() {
    let mut f = handshake();
    f.push(seg(true, ".", 1, 101, 489, vec![ts(3, 7)]));
    let (id, v) = one(&f);
    assert_eq!(id, "tcp.segment.size");
    assert_eq!(
        v.expected.as_deref(),
        Some("<= 500 bytes (peer's MSS 500, announced)")
    );
    assert_eq!(
        v.actual.as_deref(),
        Some("501 bytes (489 payload + 12 options)")
    );

    // No MSS option: the IPv4 default of 536.
    let f = vec![
        seg(true, "S", 0, 0, 0, vec![]),
        seg(false, "S.", 100, 1, 0, vec![]),
        seg(true, ".", 1, 101, 537, vec![]),
    ];
    assert_eq!(
        one(&f).1.expected.as_deref(),
        Some("<= 536 bytes (peer's MSS 536, default, no MSS option)")
    );

    let f = vec![seg(true, "S", 0, 0, 5, vec![])];
    let (id, v) = one(&f);
    assert_eq!(
        (id, v.field.as_deref()),
        ("tcp.segment.size", Some("SYN payload"))
    );
    // With a Fast Open cookie it is allowed.
    let tfo = TcpOption::Unknown {
        kind: 34,
        data: vec![1, 2, 3, 4, 5, 6, 7, 8],
    };
    assert!(found(&[seg(true, "S", 0, 0, 5, vec![tfo])]).is_empty());
}

#[test]
fn reserved_bits_and_illegal_flags_are_found_but_data_on_a_rst_is_not() {
    let mut f = seg(true, "S", 0, 0, 0, vec![]);
    let tcp = 14 + 20;
    f.data[tcp + 12] |= 0x02;
    f.data[tcp + 16] = 0;
    f.data[tcp + 17] = 0;
    let c = checksum::upper_layer(IpAddr::V4(A), IpAddr::V4(B), ip::PROTO_TCP, &f.data[tcp..]);
    f.data[tcp + 16..tcp + 18].copy_from_slice(&c.to_be_bytes());
    let (id, v) = one(&[f]);
    assert_eq!(
        (id, v.field.as_deref(), v.actual.as_deref()),
        ("tcp.header.valid", Some("tcp.reserved"), Some("0b0010"))
    );

    let (_, v) = one(&[seg(true, "SR", 0, 0, 0, vec![])]);
    assert_eq!(v.field.as_deref(), Some("tcp.flags"));
    let (_, v) = one(&[seg(true, "", 0, 0, 3, vec![])]);
    assert!(v.actual.unwrap().contains("no ACK"));
    assert!(found(&[seg(true, "R.", 0, 0, 20, vec![])]).is_empty());
}

#[test]
fn a_bad_ipv4_header_checksum_and_a_short_total_length_are_found() {
    let mut f = seg(true, "S", 0, 0, 0, vec![]);
    f.data[14 + 10] ^= 0x10;
    let (id, v) = one(&[f]);
    assert_eq!(
        (id, v.field.as_deref()),
        ("ip.header.valid", Some("ipv4.checksum"))
    );

    let mut f = seg(true, "S", 0, 0, 0, vec![]);
    f.data[14 + 3] = 0xff; // total length beyond the frame
    let (id, v) = one(&[f]);
    assert_eq!(id, "ip.header.valid");
    assert!(v.actual.as_ref().unwrap().contains("truncated"), "{v:?}");
}

#[test]
fn udp_checksums_zero_allowed_over_ipv4_only_and_lengths_match() {
    let a6: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let b6: Ipv6Addr = "2001:db8::2".parse().unwrap();
    let v4 = |mut udp: Vec<u8>, tweak: &dyn Fn(&mut Vec<u8>)| {
        tweak(&mut udp);
        frame(
            true,
            ethernet(
                MAC_A,
                MAC_B,
                link::ETHERTYPE_IPV4,
                &ipv4(A, B, ip::PROTO_UDP, 1, &udp),
            ),
        )
    };
    let udp4 = UdpRepr::emit(1, 2, IpAddr::V4(A), IpAddr::V4(B), b"hello");
    assert!(found(&[v4(udp4.clone(), &|_| {})]).is_empty());
    assert!(found(&[v4(udp4.clone(), &|u| u[6..8].copy_from_slice(&[0, 0]))]).is_empty());
    let (id, v) = one(&[v4(udp4.clone(), &|u| u[8] ^= 1)]);
    assert_eq!(
        (id, v.field.as_deref()),
        ("udp.header.valid", Some("udp.checksum"))
    );
    let (_, v) = one(&[v4(udp4, &|u| u[5] = 12)]);
    assert_eq!(
        (v.field.as_deref(), v.actual.as_deref()),
        (Some("udp.length"), Some("12"))
    );

    let mut udp6 = UdpRepr::emit(1, 2, IpAddr::V6(a6), IpAddr::V6(b6), b"hello");
    udp6[6..8].copy_from_slice(&[0, 0]);
    let f = frame(
        true,
        ethernet(
            MAC_A,
            MAC_B,
            link::ETHERTYPE_IPV6,
            &ipv6(a6, b6, ip::PROTO_UDP, &udp6),
        ),
    );
    let hosts = HostAddrs::new(vec![(IpAddr::V6(a6), Host::A), (IpAddr::V6(b6), Host::B)]);
    let trace = Trace::build(std::slice::from_ref(&f), &hosts, Some(0));
    let r = check(
        std::slice::from_ref(&f),
        &trace,
        &ValidityContext::default(),
    );
    assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
    assert_eq!(
        r.findings[0].1.actual.as_deref(),
        Some("0x0000 (not computed)")
    );
}

#[test]
fn only_the_judged_hosts_frames_are_checked() {
    let f = vec![seg(true, "SR", 0, 0, 0, vec![])];
    let hosts = HostAddrs::new(vec![(IpAddr::V4(A), Host::A), (IpAddr::V4(B), Host::B)]);
    let trace = Trace::build(&f, &hosts, Some(0));
    let ctx = ValidityContext {
        judged: Some(vec![Host::B]),
        ..Default::default()
    };
    assert!(check(&f, &trace, &ctx).findings.is_empty());
}

/// Throughput of the validity rules alone (the trace is built beforehand): `cargo test --release -p harness
/// --lib validity_throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn validity_throughput() {
    let mut f = handshake();
    let mut seq = 1u32;
    for k in 0..20_000u32 {
        f.push(seg(true, ".", seq, 101, 488, vec![ts(3 + k, 7 + k)]));
        f.push(seg(false, ".", 101, seq + 488, 0, vec![ts(8 + k, 3 + k)]));
        seq += 488;
    }
    let hosts = HostAddrs::new(vec![(IpAddr::V4(A), Host::A), (IpAddr::V4(B), Host::B)]);
    let trace = Trace::build(&f, &hosts, Some(0));
    let ctx = ValidityContext {
        capture_host: Some(Host::A),
        ..Default::default()
    };
    let start = std::time::Instant::now();
    let r = check(&f, &trace, &ctx);
    let secs = start.elapsed().as_secs_f64();
    assert!(r.findings.is_empty(), "{:?}", r.findings.first());
    println!(
        "validity: {} frames in {:.1} ms, {:.2} M frames/s",
        f.len(),
        secs * 1e3,
        f.len() as f64 / secs / 1e6
    );
}
