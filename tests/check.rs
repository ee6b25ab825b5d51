//! `netconform check FILE`: the TCP invariants over any capture, offline.

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
            vec![TcpOption::WindowScale(0)]
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
        text(&out).contains("1 TCP conversation(s), 0 finding(s)"),
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
