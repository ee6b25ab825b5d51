use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::frame::LinkType;
use crate::wire::testutil::tcp_v4;
use crate::wire::{TcpFlags, TcpOption, TcpRepr};

const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn hosts() -> HostAddrs {
    HostAddrs::new(vec![(IpAddr::V4(A), Host::A), (IpAddr::V4(B), Host::B)])
}

fn flags(s: &str) -> TcpFlags {
    TcpFlags {
        syn: s.contains('S'),
        fin: s.contains('F'),
        rst: s.contains('R'),
        psh: s.contains('P'),
        ack: s.contains('.'),
        ..Default::default()
    }
}

/// A segment from a (true) or b, with raw seq/ack, window and payload length.
#[allow(clippy::too_many_arguments)] // one argument per field a test varies: reads like a trace line
fn seg(
    from_a: bool,
    f: &str,
    seq: u32,
    ack: u32,
    win: u16,
    len: usize,
    opts: Vec<TcpOption>,
    t_us: u64,
) -> Frame {
    let repr = TcpRepr {
        src_port: if from_a { 40000 } else { 5000 },
        dst_port: if from_a { 5000 } else { 40000 },
        seq: SeqNumber(seq),
        ack: SeqNumber(ack),
        flags: flags(f),
        window: win,
        urgent: 0,
        options: opts,
        payload_len: len,
    };
    let payload = vec![0u8; len];
    let data = if from_a {
        tcp_v4(A, B, &repr, &payload, true)
    } else {
        tcp_v4(B, A, &repr, &payload, false)
    };
    Frame {
        ts_ns: 1_000_000_000 + t_us * 1000,
        origin: Some(if from_a { Host::A } else { Host::B }),
        link: LinkType::Ethernet,
        data,
    }
}

fn lines(t: &Trace) -> Vec<String> {
    (0..t.frames.len()).map(|i| t.canonical_line(i)).collect()
}

#[test]
fn handshake_data_close_with_wrapping_isn() {
    let isn_a = u32::MAX - 10;
    let isn_b = 7;
    let syn_opts = vec![
        TcpOption::MaxSegmentSize(1460),
        TcpOption::SackPermitted,
        TcpOption::Timestamp { tsval: 5, tsecr: 0 },
        TcpOption::NoOperation,
        TcpOption::WindowScale(7),
    ];
    let frames = vec![
        seg(true, "S", isn_a, 0, 64240, 0, syn_opts.clone(), 0),
        seg(
            false,
            "S.",
            isn_b,
            isn_a.wrapping_add(1),
            65160,
            0,
            syn_opts,
            10,
        ),
        seg(
            true,
            ".",
            isn_a.wrapping_add(1),
            isn_b + 1,
            502,
            0,
            vec![],
            20,
        ),
        seg(
            true,
            "P.",
            isn_a.wrapping_add(1),
            isn_b + 1,
            502,
            100,
            vec![],
            30,
        ),
        seg(
            false,
            ".",
            isn_b + 1,
            isn_a.wrapping_add(101),
            509,
            0,
            vec![],
            40,
        ),
        seg(
            true,
            "F.",
            isn_a.wrapping_add(101),
            isn_b + 1,
            502,
            0,
            vec![],
            50,
        ),
        seg(
            false,
            "F.",
            isn_b + 1,
            isn_a.wrapping_add(102),
            509,
            0,
            vec![],
            60,
        ),
        seg(
            true,
            ".",
            isn_a.wrapping_add(102),
            isn_b + 2,
            502,
            0,
            vec![],
            70,
        ),
    ];
    let t = Trace::build(&frames, &hosts(), None);
    assert_eq!(
        lines(&t),
        [
            "A>B  S  0:0(0) win 64240 <mss 1460,sackOK,TS,nop,wscale 7>",
            "B>A  S. 0:0(0) ack 1 win 65160 <mss 1460,sackOK,TS,nop,wscale 7>",
            "A>B  .  1:1(0) ack 1 win 502",
            "A>B  P. 1:101(100) ack 1 win 502",
            "B>A  .  1:1(0) ack 101 win 509",
            "A>B  F. 101:101(0) ack 1 win 502",
            "B>A  F. 1:1(0) ack 102 win 509",
            "A>B  .  102:102(0) ack 2 win 502",
        ]
    );
    assert_eq!(t.conversations.len(), 1);
    assert_eq!(t.conversations[0].window_scale, [Some(7), Some(7)]);
    assert_eq!(t.scaled_window(2), Some(502 << 7));
    assert!(
        t.frames.iter().all(|f| f.labels.is_empty()),
        "{}",
        t.render()
    );
    assert!(
        t.render().contains("   4 +0.000030  A>B  P. 1:101(100)"),
        "{}",
        t.render()
    );
}

#[test]
fn rst_from_a_closed_port_renders_relative_to_the_syn() {
    let frames = vec![
        seg(true, "S", 1000, 0, 64240, 0, vec![], 0),
        seg(false, "R.", 0, 1001, 0, 0, vec![], 13),
    ];
    let t = Trace::build(&frames, &hosts(), None);
    assert_eq!(
        lines(&t),
        ["A>B  S  0:0(0) win 64240", "B>A  R. 0:0(0) ack 1 win 0"]
    );
    // A RST does not carry the zero-window label.
    assert!(t.frames[1].labels.is_empty());
}

#[test]
fn a_new_syn_after_rst_starts_a_new_conversation() {
    let frames = vec![
        seg(true, "S", 1000, 0, 64240, 0, vec![], 0),
        seg(false, "R.", 0, 1001, 0, 0, vec![], 13),
        seg(true, "S", 5000, 0, 64240, 0, vec![], 20),
    ];
    let t = Trace::build(&frames, &hosts(), None);
    assert_eq!(t.conversations.len(), 2);
    assert_eq!(t.frames[2].conversation, Some(1));
}

#[test]
fn zero_window_probes_window_updates_and_keepalives_are_labelled() {
    let frames = vec![
        seg(true, "S", 0, 0, 64240, 0, vec![], 0),
        seg(false, "S.", 0, 1, 8192, 0, vec![], 1),
        seg(true, ".", 1, 1, 502, 0, vec![], 2),
        seg(true, "P.", 1, 1, 502, 1000, vec![], 3),
        seg(false, ".", 1, 1001, 0, 0, vec![], 4), // receiver full
        seg(true, ".", 1000, 1, 502, 0, vec![], 200_000), // Linux probe: SND.UNA-1, no payload
        seg(false, ".", 1, 1001, 0, 0, vec![], 200_010),
        seg(false, ".", 1, 1001, 4096, 0, vec![], 300_000), // window update
        seg(true, "P.", 1001, 1, 502, 100, vec![], 300_050),
        seg(true, "P.", 1001, 1, 502, 100, vec![], 500_000), // retransmission
        seg(false, ".", 1, 1101, 4096, 0, vec![], 600_000),
        seg(true, ".", 1100, 1, 502, 0, vec![], 900_000), // keep-alive shape while window open
    ];
    let t = Trace::build(&frames, &hosts(), None);
    let labels: Vec<Vec<Label>> = t.frames.iter().map(|f| f.labels.clone()).collect();
    assert_eq!(labels[4], vec![Label::ZeroWindow], "{}", t.render());
    assert_eq!(labels[5], vec![Label::ZeroWindowProbe], "{}", t.render());
    assert_eq!(labels[6], vec![Label::ZeroWindow], "{}", t.render());
    assert_eq!(labels[7], vec![Label::WindowUpdate], "{}", t.render());
    assert!(labels[8].is_empty(), "{}", t.render());
    assert_eq!(labels[9], vec![Label::Retransmission], "{}", t.render());
    assert!(
        t.render()
            .contains("A>B  .  1000:1000(0) ack 1 win 502  [zero-window-probe]"),
        "{}",
        t.render()
    );
    assert!(labels[10].is_empty(), "{}", t.render());
    assert_eq!(labels[11], vec![Label::KeepAlive], "{}", t.render());
}

#[test]
fn malformed_frames_are_kept_and_rendered() {
    let mut f = seg(true, "S", 0, 0, 1, 0, vec![], 0);
    f.data.truncate(20);
    let t = Trace::build(&[f], &hosts(), None);
    assert!(t.frames[0].packet.is_err());
    assert!(
        t.canonical_line(0).starts_with("?  malformed: "),
        "{}",
        t.canonical_line(0)
    );
}

/// Snapshots put the crossing frames of a simultaneous close in one order (A first), and keep a causal order.
#[test]
fn snapshots_order_a_simultaneous_close_and_keep_causal_closes() {
    let open = || {
        vec![
            seg(true, "S", 100, 0, 64240, 0, vec![], 0),
            seg(false, "S.", 300, 101, 65160, 0, vec![], 10),
            seg(true, ".", 101, 301, 502, 0, vec![], 20),
        ]
    };
    // Both FINs cross (a's does not acknowledge b's), then both final ACKs; the capture saw b's first each time.
    let mut crossing = open();
    crossing.extend([
        seg(false, "F.", 301, 101, 509, 0, vec![], 30),
        seg(true, "F.", 101, 301, 502, 0, vec![], 31),
        seg(false, ".", 302, 102, 509, 0, vec![], 40),
        seg(true, ".", 102, 302, 502, 0, vec![], 41),
    ]);
    let order = |frames: &[Frame]| {
        let t = Trace::build(frames, &hosts(), None);
        let mut shown: Vec<usize> = (0..t.frames.len()).collect();
        crate::snapshot::order_simultaneous_close(&t, &mut shown);
        shown
    };
    assert_eq!(order(&crossing), [0, 1, 2, 4, 3, 6, 5]);
    // b closes first and a answers its FIN (a's FIN+ACK acknowledges it): causal, kept as captured.
    let mut causal = open();
    causal.extend([
        seg(false, "F.", 301, 101, 509, 0, vec![], 30),
        seg(true, "F.", 101, 302, 502, 0, vec![], 31),
        seg(false, ".", 302, 102, 509, 0, vec![], 40),
    ]);
    assert_eq!(order(&causal), [0, 1, 2, 3, 4, 5]);
}
