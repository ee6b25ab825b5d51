//! Each offline judge on hand-made traces: pass, fail with the frame named, not applicable with why.

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::frame::{Frame, Host, LinkType};
use crate::trace::HostAddrs;
use crate::wire::testutil::tcp_v4;
use crate::wire::{TcpFlags, TcpOption};

const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

fn seg(from_a: bool, flags: &str, seq: u32, ack: u32, win: u16, len: usize, ms: u64) -> Frame {
    let repr = TcpRepr {
        src_port: if from_a { 40000 } else { 80 },
        dst_port: if from_a { 80 } else { 40000 },
        seq: SeqNumber(seq),
        ack: SeqNumber(ack),
        flags: TcpFlags {
            syn: flags.contains('S'),
            fin: flags.contains('F'),
            rst: flags.contains('R'),
            ack: flags.contains('.'),
            ..Default::default()
        },
        window: win,
        urgent: 0,
        options: if flags.contains('S') {
            vec![TcpOption::MaxSegmentSize(1000)]
        } else {
            vec![]
        },
        payload_len: len,
    };
    let (s, d) = if from_a { (A, B) } else { (B, A) };
    Frame {
        ts_ns: ms * 1_000_000,
        origin: None,
        link: LinkType::Ethernet,
        data: tcp_v4(s, d, &repr, &vec![1; len], from_a),
    }
}

fn outcome(frames: &[Frame], id: &str) -> Outcome {
    let hosts = HostAddrs::new(vec![(IpAddr::V4(A), Host::A), (IpAddr::V4(B), Host::B)]);
    let trace = Trace::build(frames, &hosts, Some(0));
    judge(&trace)
        .into_iter()
        .find(|j| j.id == id)
        .unwrap()
        .outcome
}

fn handshake() -> Vec<Frame> {
    vec![
        seg(true, "S", 100, 0, 1000, 0, 0),
        seg(false, "S.", 500, 101, 1000, 0, 1),
        seg(true, ".", 101, 501, 1000, 0, 2),
    ]
}

#[test]
fn a_rst_from_a_closed_port_is_judged_by_its_numbers() {
    let ok = [
        seg(true, "S", 100, 0, 1000, 0, 0),
        seg(false, "R.", 0, 101, 0, 0, 1),
    ];
    assert!(matches!(
        outcome(&ok, "tcp.rst.closed_port"),
        Outcome::Pass { .. }
    ));
    let bad = [
        seg(true, "S", 100, 0, 1000, 0, 0),
        seg(false, "R.", 0, 100, 0, 0, 1),
    ];
    let Outcome::Fail { violation } = outcome(&bad, "tcp.rst.closed_port") else {
        panic!()
    };
    assert_eq!(violation.frames, [1, 2]);
    assert_eq!(
        violation.expected.as_deref(),
        Some("R. with seq 0, ack 101 (SEG.SEQ+SEG.LEN)")
    );
    assert!(matches!(
        outcome(&handshake(), "tcp.rst.closed_port"),
        Outcome::NotApplicable { .. }
    ));
}

#[test]
fn an_ack_later_than_half_a_second_fails_and_a_prompt_one_passes() {
    let mut f = handshake();
    f.push(seg(true, ".", 101, 501, 1000, 100, 10));
    f.push(seg(false, ".", 501, 201, 1000, 0, 50));
    assert!(matches!(outcome(&f, "tcp.ack.delay"), Outcome::Pass { .. }));
    let mut f = handshake();
    f.push(seg(true, ".", 101, 501, 1000, 100, 10));
    f.push(seg(false, ".", 501, 201, 1000, 0, 700));
    let Outcome::Fail { violation } = outcome(&f, "tcp.ack.delay") else {
        panic!()
    };
    assert_eq!(
        (violation.frames.as_slice(), violation.actual.as_deref()),
        (&[4, 5][..], Some("690.0 ms"))
    );
}

#[test]
fn zero_window_probe_intervals_must_not_shrink() {
    let mut f = handshake();
    f.push(seg(true, ".", 101, 501, 1000, 1000, 10));
    f.push(seg(false, ".", 501, 1101, 0, 0, 11)); // zero window
    let probes = |times: &[u64]| {
        let mut g = f.clone();
        for &t in times {
            g.push(seg(true, ".", 1100, 501, 1000, 0, t));
            g.push(seg(false, ".", 501, 1101, 0, 0, t + 1));
        }
        outcome(&g, "tcp.zero_window.probes")
    };
    assert!(matches!(probes(&[211, 611, 1411]), Outcome::Pass { .. }));
    let Outcome::Fail { violation } = probes(&[211, 611, 811]) else {
        panic!()
    };
    assert_eq!(violation.frames, [6, 8, 10]);
}

#[test]
fn a_fin_is_acknowledged_and_a_missing_retransmission_is_found() {
    let mut f = handshake();
    f.push(seg(true, "F.", 101, 501, 1000, 0, 10));
    f.push(seg(false, ".", 501, 102, 1000, 0, 11));
    assert!(matches!(
        outcome(&f, "tcp.close.half_close"),
        Outcome::Pass { .. }
    ));
    let mut f = handshake();
    f.push(seg(true, "F.", 101, 501, 1000, 0, 10));
    f.push(seg(false, ".", 501, 101, 1000, 10, 11));
    assert!(matches!(
        outcome(&f, "tcp.close.half_close"),
        Outcome::Fail { .. }
    ));

    // Three duplicate ACKs at 101, and 2 s of capture without a retransmission.
    let mut f = handshake();
    for k in 0..4 {
        f.push(seg(true, ".", 201 + 100 * k, 501, 1000, 100, 10 + k as u64));
    }
    for k in 0..4 {
        f.push(seg(false, ".", 501, 101, 1000, 0, 20 + k as u64));
    }
    f.push(seg(false, ".", 501, 101, 999, 0, 2100));
    let Outcome::Fail { violation } = outcome(&f, "tcp.loss.retransmit") else {
        panic!()
    };
    assert_eq!(violation.frames, [10]);
    f.insert(11, seg(true, ".", 101, 501, 1000, 100, 30));
    assert!(matches!(
        outcome(&f, "tcp.loss.retransmit"),
        Outcome::Pass { .. }
    ));
}
