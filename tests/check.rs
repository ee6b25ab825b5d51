//! `netconform check FILE`: the offline judge over any capture — wire validity, the TCP invariants and the
//! wire-observable properties; lossy captures warned about, offload and snaplen artifacts not judged.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::*;
use harness::frame::{Frame, LinkType};
use harness::wire::{checksum, SeqNumber, TcpFlags, TcpOption, TcpRepr};

const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// A raw IPv4 packet with a TCP segment (link type RawIp, as a TUN capture would have it).
fn segment(
    from_a: bool,
    flags: &str,
    seq: u32,
    ack: u32,
    win: u16,
    len: usize,
    ts_us: u64,
) -> Frame {
    let (src, dst) = if from_a { (A, B) } else { (B, A) };
    let repr = TcpRepr {
        src_port: if from_a { 40000 } else { 80 },
        dst_port: if from_a { 80 } else { 40000 },
        seq: SeqNumber(seq),
        ack: SeqNumber(ack),
        flags: TcpFlags {
            syn: flags.contains('S'),
            ack: flags.contains('.'),
            ..Default::default()
        },
        window: win,
        urgent: 0,
        options: if flags.contains('S') {
            vec![TcpOption::WindowScale(0), TcpOption::MaxSegmentSize(1460)]
        } else {
            vec![]
        },
        payload_len: len,
    };
    let tcp = repr.emit(IpAddr::V4(src), IpAddr::V4(dst), &vec![7u8; len]);
    let total = 20 + tcp.len();
    let mut ip = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ];
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&tcp);
    Frame {
        ts_ns: 1_700_000_000_000_000_000 + ts_us * 1000,
        origin: None,
        link: LinkType::RawIp,
        data: ip,
    }
}

fn write(name: &str, frames: &[Frame]) -> std::path::PathBuf {
    // One directory per capture: the tests run in parallel and out_dir() empties the directory it returns.
    let path = out_dir(&format!("check-{name}")).join(name);
    harness::pcapng::write_case_frames(&path, "netconform check test", frames).unwrap();
    path
}

fn handshake() -> Vec<Frame> {
    vec![
        segment(true, "S", 100, 0, 65535, 0, 0),
        segment(false, "S.", 500, 101, 1000, 0, 10),
        segment(true, ".", 101, 501, 65535, 0, 20),
    ]
}

#[test]
fn a_clean_capture_passes() {
    let mut f = handshake();
    f.push(segment(true, ".", 101, 501, 65535, 1000, 30));
    f.push(segment(false, ".", 501, 1101, 1000, 0, 40));
    let out = netconform(&["check", write("clean.pcapng", &f).to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("1 TCP conversation(s), 0 UDP flow(s), 0 finding(s)"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_capture_with_data_beyond_the_window_fails_with_the_frame_named() {
    let mut f = handshake();
    f.push(segment(true, ".", 101, 501, 65535, 1001, 30)); // the SYN-ACK offered 1000 bytes
    let out = netconform(&[
        "check",
        "--trace",
        write("beyond.pcapng", &f).to_str().unwrap(),
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("FAIL tcp.window.respected"), "{t}");
    assert!(
        t.contains("frame(s): #4") && t.contains("expected: <= 1001"),
        "{t}"
    );
}

#[test]
fn an_unreadable_file_exits_2() {
    let path = out_dir("check-bad").join("garbage.pcapng");
    std::fs::write(&path, b"not a capture").unwrap();
    let out = netconform(&["check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// A classic pcap (LINKTYPE_RAW, microseconds) whose records may be cut: (frame, bytes kept).
fn write_pcap(name: &str, frames: &[(Frame, usize)]) -> std::path::PathBuf {
    let path = out_dir(&format!("check-{name}")).join(name);
    let mut b = Vec::new();
    for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 101] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for (f, keep) in frames {
        let us = f.ts_ns / 1000;
        for v in [
            (us / 1_000_000) as u32,
            (us % 1_000_000) as u32,
            *keep as u32,
            f.data.len() as u32,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&f.data[..*keep]);
    }
    std::fs::write(&path, b).unwrap();
    path
}

/// The TCP checksum field of a raw IPv4 frame set to the pseudo-header sum only: what a capture on a real host
/// with TX checksum offload records for its own outgoing segments.
fn with_offload_checksum(mut f: Frame) -> Frame {
    let tcp_len = f.data.len() - 20;
    let (src, dst) = (
        IpAddr::V4(Ipv4Addr::new(
            f.data[12], f.data[13], f.data[14], f.data[15],
        )),
        IpAddr::V4(Ipv4Addr::new(
            f.data[16], f.data[17], f.data[18], f.data[19],
        )),
    );
    let seed = !checksum::finish(checksum::pseudo_header_sum(src, dst, 6, tcp_len));
    f.data[36..38].copy_from_slice(&seed.to_be_bytes());
    f
}

#[test]
fn offload_checksums_and_snaplen_cuts_are_capture_artifacts_not_findings() {
    let mut f: Vec<(Frame, usize)> = handshake()
        .into_iter()
        .map(|f| {
            let n = f.data.len();
            (f, n)
        })
        .collect();
    f.push((
        with_offload_checksum(segment(true, ".", 101, 501, 65535, 500, 30)),
        540,
    ));
    let cut = segment(false, ".", 501, 601, 1000, 600, 40);
    f.push((cut, 54)); // headers only
    let out = netconform(&["check", write_pcap("artifacts.pcap", &f).to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("capture artifact, not judged: frame #4: TCP checksum"),
        "{t}"
    );
    assert!(
        t.contains("is the pseudo-header sum (TX checksum offload)"),
        "{t}"
    );
    assert!(
        t.contains("capture artifact, not judged: frame #5: cut by the capture's snaplen"),
        "{t}"
    );
    // A checksum that is garbage, not the offload's seed, is a finding even offline.
    let mut bad = with_offload_checksum(segment(true, ".", 101, 501, 65535, 500, 30));
    bad.data[37] ^= 0x5a;
    let mut g = handshake();
    g.push(bad);
    let out = netconform(&[
        "check",
        write("garbage-checksum.pcapng", &g).to_str().unwrap(),
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("FAIL tcp.header.valid: a TCP checksum is wrong") && t.contains("frame(s): #4"),
        "{t}"
    );
}

#[test]
fn a_sequence_hole_is_a_lossy_capture_warning_not_a_finding() {
    let mut f = handshake();
    f.push(segment(true, ".", 101, 501, 65535, 100, 30));
    // 100 bytes at 201 never appear: the capture lost them, the receiver's ACK covers them.
    f.push(segment(true, ".", 301, 501, 65535, 100, 40));
    f.push(segment(false, ".", 501, 401, 1000, 0, 50));
    let out = netconform(&["check", write("hole.pcapng", &f).to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains(
            "warning: the capture may be lossy: bytes of the sequence space were never sent"
        ),
        "{t}"
    );
    assert!(t.contains("not blamed on the stack"), "{t}");
}

#[test]
fn json_lists_every_rule_and_property_with_its_outcome() {
    let mut f = handshake();
    f.push(segment(true, ".", 101, 501, 65535, 1001, 30)); // beyond the window
    let out = netconform(&[
        "check",
        "--json",
        "-",
        write("json.pcapng", &f).to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["tcp_conversations"], 1);
    let results = v["results"].as_array().unwrap();
    let outcome = |id: &str| {
        results
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{id} missing: {v}"))
            .clone()
    };
    assert_eq!(outcome("tcp.window.respected")["outcome"], "fail");
    assert_eq!(outcome("tcp.window.respected")["violation"]["frames"][0], 4);
    assert_eq!(outcome("tcp.header.valid")["outcome"], "pass");
    assert_eq!(outcome("udp.header.valid")["outcome"], "not_applicable");
    assert_eq!(outcome("tcp.rst.closed_port")["outcome"], "not_applicable");
    assert!(outcome("tcp.rst.closed_port")["why"]
        .as_str()
        .unwrap()
        .contains("closed port"));
    assert_eq!(v["findings"], 1);
}
