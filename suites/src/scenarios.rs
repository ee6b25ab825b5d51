//! The named scenarios behind `snapshots/` (issue: snapshot expectations): fixed programs, both families.

use std::time::Duration;

use harness::frame::Host;
use harness::lab::{LabConfig, SysctlSetting};
use harness::ops::{Op, Program, ShutdownHow, SockKind, SockOpt};
use harness::snapshot::Scenario;
use harness::sock::Family;

const PORT: u16 = 5001;
const CLOSED: u16 = 5009;

/// b listens on PORT, a connects, b accepts: afterwards a's socket is s0 and b's accepted socket s1; both
/// hosts have passed two barriers.
fn connected() -> Program {
    crate::conn::connected_on(PORT, &[], &[])
}

/// Payload of a full segment with timestamps on a 1500-byte MTU: MSS (1460 / 1440) − 12.
fn full_segment(family: Family) -> usize {
    match family {
        Family::Ipv4 => 1448,
        Family::Ipv6 => 1428,
    }
}

fn with(mut p: Program, a: Vec<Op>, b: Vec<Op>) -> Program {
    p.a.extend(a);
    p.b.extend(b);
    p
}

fn both_hosts(settings: &[(&str, &str)]) -> LabConfig {
    let mut cfg = LabConfig::default();
    for (k, v) in settings {
        for host in [Host::A, Host::B] {
            cfg.sysctls.push(SysctlSetting {
                host,
                key: (*k).into(),
                value: (*v).into(),
            });
        }
    }
    cfg
}

fn scenario(name: &str, what: &str, family: Family, program: Program) -> Scenario {
    Scenario {
        name: format!("{name}-{}", family.name()),
        what: what.into(),
        family,
        program,
        lab: LabConfig::default(),
        settle: Duration::from_millis(20),
        io_timeout_ms: 200,
        overrides: Vec::new(),
    }
}

/// Every scenario, in a stable order.
pub fn all() -> Vec<Scenario> {
    let mut out = Vec::new();
    for family in [Family::Ipv4, Family::Ipv6] {
        for sack in [0, 1] {
            for ts in [0, 1] {
                for ws in [0, 1] {
                    let mut s = scenario(
                        &format!("handshake-sack{sack}-ts{ts}-ws{ws}"),
                        &format!("three-way handshake with tcp_sack={sack}, tcp_timestamps={ts}, tcp_window_scaling={ws} on both hosts"),
                        family,
                        connected(),
                    );
                    let (sack, ts, ws) = (sack.to_string(), ts.to_string(), ws.to_string());
                    s.lab = both_hosts(&[
                        ("net.ipv4.tcp_sack", &sack),
                        ("net.ipv4.tcp_timestamps", &ts),
                        ("net.ipv4.tcp_window_scaling", &ws),
                    ]);
                    out.push(s);
                }
            }
        }
        out.push(scenario(
            "rst-closed-port-syn",
            "connect() to a port with no listener: SYN answered by RST,ACK; connect fails with ECONNREFUSED",
            family,
            Program { a: vec![Op::Socket { kind: SockKind::Tcp }, Op::Connect { sock: 0, port: CLOSED }], b: vec![] },
        ));
        out.push(scenario(
            "rst-closed-port-ack",
            "a crafted bare ACK to a port with no listener: answered by RST with SEQ=SEG.ACK, never answered back",
            family,
            Program {
                a: vec![Op::CraftTcp { src_port: 40000, port: CLOSED, flags: ".".into(), seq: 1000, ack: 777_000, len: 0 }],
                b: vec![],
            },
        ));
        out.push(scenario(
            "icmp-port-unreachable",
            "a connected UDP socket sends to a closed port: ICMP port unreachable, then recv() fails with ECONNREFUSED",
            family,
            Program {
                a: vec![
                    Op::Socket { kind: SockKind::Udp },
                    Op::Connect { sock: 0, port: CLOSED },
                    Op::Write { sock: 0, len: 26 },
                    Op::Read { sock: 0, max: 64 },
                ],
                b: vec![],
            },
        ));
        out.push(scenario(
            "close-four-segments",
            "a closes; b acknowledges, reads EOF and closes 100 ms later: FIN, ACK, FIN, ACK",
            family,
            with(
                connected(),
                vec![Op::Close { sock: 0 }, Op::Sync],
                vec![
                    Op::Sync,
                    Op::Read { sock: 1, max: 1000 },
                    Op::Sleep { ms: 100 },
                    Op::Close { sock: 1 },
                ],
            ),
        ));
        out.push(scenario(
            "close-three-segments",
            "b turns quick ACKs off (TCP_QUICKACK 0: delayed ACKs); a closes; b closes as soon as it sees EOF, within the 40 ms delayed-ACK timer: its FIN rides on the ACK of a's FIN",
            family,
            with(
                connected(),
                vec![Op::Sync, Op::Close { sock: 0 }],
                vec![
                    Op::SetOpt { sock: 1, opt: SockOpt::QuickAck(false) },
                    Op::Sync,
                    Op::WaitReadable { sock: 1, ms: 200 },
                    Op::Close { sock: 1 },
                ],
            ),
        ));
        let mut simultaneous = scenario(
            "close-simultaneous",
            "over a relay with 20 ms one-way delay a closes and b closes 5 ms later: the FINs cross, both pass CLOSING (RFC 9293 Figure 13)",
            family,
            with(
                connected(),
                vec![Op::Sync, Op::Close { sock: 0 }, Op::Sleep { ms: 100 }],
                // 5 ms after a: well inside the 20 ms a's FIN needs to arrive, and a fixed order on the wire.
                vec![Op::Sync, Op::Sleep { ms: 5 }, Op::Close { sock: 1 }, Op::Sleep { ms: 100 }],
            ),
        );
        let delay = harness::link::Impairment {
            delay_us: 20_000,
            ..Default::default()
        };
        simultaneous.lab.link = harness::link::LinkSpec::Relay(harness::link::RelaySpec {
            a_to_b: delay.clone(),
            b_to_a: delay,
            seed: 1,
        });
        out.push(simultaneous);
        out.push(scenario(
            "half-close",
            "a writes 1000 bytes; b reads them; a shuts down writing; b reads EOF, answers 500 bytes and closes; a reads them and EOF",
            family,
            with(
                connected(),
                vec![
                    Op::Write { sock: 0, len: 1000 },
                    Op::Sync,
                    Op::Sync,
                    Op::Shutdown { sock: 0, how: ShutdownHow::Wr },
                    Op::Sync,
                    Op::Sync,
                    Op::Read { sock: 0, max: 65536 },
                    Op::Read { sock: 0, max: 65536 },
                    Op::Close { sock: 0 },
                ],
                vec![
                    Op::Sync,
                    Op::Read { sock: 1, max: 65536 },
                    Op::Sync,
                    Op::Sync,
                    Op::Read { sock: 1, max: 65536 },
                    Op::Write { sock: 1, len: 500 },
                    Op::Close { sock: 1 },
                    Op::Sync,
                ],
            ),
        ));
        out.push(scenario(
            "close-unread",
            "b sends 110 bytes that a never reads; a's close() sends RST instead of FIN; b's read gets ECONNRESET",
            family,
            with(
                connected(),
                vec![Op::Sync, Op::Close { sock: 0 }, Op::Sync],
                vec![Op::Write { sock: 1, len: 110 }, Op::Sync, Op::Sync, Op::Read { sock: 1, max: 1000 }],
            ),
        ));
        out.push(scenario(
            "linger-zero-abort",
            "a sets SO_LINGER {on, 0} and closes: an abortive RST, no FIN",
            family,
            with(
                connected(),
                vec![
                    Op::SetOpt {
                        sock: 0,
                        opt: SockOpt::Linger(Some(0)),
                    },
                    Op::Close { sock: 0 },
                    Op::Sync,
                ],
                vec![Op::Sync, Op::Read { sock: 1, max: 1000 }],
            ),
        ));
        let mut zw = scenario(
            "zero-window",
            "b's receive buffer is 4096 (8192 effective) and b does not read for 1.1 s: zero window, probes at ~0.2 s and ~0.6 s, window update, resume",
            family,
            Program {
                a: vec![
                    Op::Sync,
                    Op::Socket { kind: SockKind::Tcp },
                    Op::Connect { sock: 0, port: PORT },
                    Op::Sync,
                    Op::Sync,
                    // One segment more than the window holds before it closes (3 full segments).
                    Op::Write { sock: 0, len: 4 * full_segment(family) },
                    Op::Sync,
                ],
                b: vec![
                    Op::Socket { kind: SockKind::Tcp },
                    Op::SetOpt { sock: 0, opt: SockOpt::RcvBuf(4096) },
                    Op::Bind { sock: 0, port: PORT },
                    Op::Listen { sock: 0, backlog: 8 },
                    Op::Sync,
                    Op::Sync,
                    Op::Accept { sock: 0 },
                    // a writes only once b's accept() (and the executor's TCP_INFO of the accepted socket) is
                    // over: a segment arriving while b's thread holds the socket lock is queued to the
                    // backlog and its quick ACK deferred to release_sock (tcp_backlog_ack_defer), so the
                    // first two segments drew one ACK instead of an ACK of the first alone.
                    Op::Sync,
                    // Probes come ~0.21 s and ~0.64 s after the window closed (docs/kernel-facts.md); reading at ~1.1 s
                    // puts the window update mid-way between the probe classes' edges.
                    Op::Sleep { ms: 1100 },
                    Op::Read { sock: 1, max: 65536 },
                    Op::Sleep { ms: 100 },
                    Op::Read { sock: 1, max: 65536 },
                    Op::Sync,
                ],
            },
        );
        zw.settle = Duration::from_millis(50);
        out.push(zw);
        out.push(scenario(
            "delayed-ack",
            "after an exchange in both directions (pingpong), b's ACK of a's next 100 bytes waits for the delayed-ACK timer",
            family,
            with(
                connected(),
                vec![
                    Op::Write { sock: 0, len: 100 },
                    Op::Sync,
                    Op::Sync,
                    Op::Read { sock: 0, max: 1000 },
                    Op::Write { sock: 0, len: 100 },
                    Op::Sleep { ms: 100 },
                ],
                vec![Op::Sync, Op::Read { sock: 1, max: 1000 }, Op::Write { sock: 1, len: 100 }, Op::Sync, Op::Sleep { ms: 100 }],
            ),
        ));
        let full = full_segment(family);
        let mut bulk = scenario(
            "delayed-ack-bulk",
            "a writes 9 full segments at once; b (quick-ack off, fixed 200 KB buffer) ACKs every second one at once and the odd last one after the delayed-ACK timer",
            family,
            Program {
                a: vec![
                    Op::Sync,
                    Op::Socket { kind: SockKind::Tcp },
                    Op::Connect { sock: 0, port: PORT },
                    Op::Sync,
                    Op::Sync,
                    Op::Write { sock: 0, len: 9 * full },
                    Op::Sleep { ms: 150 },
                ],
                b: vec![
                    Op::Socket { kind: SockKind::Tcp },
                    // A fixed buffer stops autotuning; 200 KB (under net.core.rmem_max) keeps the window able
                    // to advance whatever b has read, so the ACK rule is "every second full segment".
                    Op::SetOpt { sock: 0, opt: SockOpt::RcvBuf(200_000) },
                    Op::Bind { sock: 0, port: PORT },
                    Op::Listen { sock: 0, backlog: 8 },
                    Op::Sync,
                    Op::Sync,
                    Op::Accept { sock: 0 },
                    // Out of quick-ack mode (pingpong), as after an interactive exchange.
                    Op::SetOpt { sock: 1, opt: SockOpt::QuickAck(false) },
                    Op::Sync,
                    Op::ReadExact { sock: 1, len: 9 * full },
                    Op::Sleep { ms: 150 },
                ],
            },
        );
        // A rate-limited relay spaces a's burst (0.6 ms per full segment at 20 Mbit/s), so b takes each
        // segment on its own and the ACK decisions do not depend on how the two CPUs interleave; reno on a
        // sends the burst at once (bbr would pace it).
        bulk.lab.link = harness::link::LinkSpec::Relay(harness::link::RelaySpec {
            a_to_b: harness::link::Impairment {
                rate_bps: Some(20_000_000),
                ..Default::default()
            },
            b_to_a: harness::link::Impairment::default(),
            seed: 1,
        });
        // Tail-loss probes off on a (tcp_early_retrans=0): with 4 segments in flight a's probe timer is
        // srtt/4 + 2 jiffies, ~2 ms here, and it raced the 1.2 ms between b's ACKs in 1-2 of 20 runs,
        // retransmitting the last segment before b's delayed ACK (a D-SACK then replaces it).
        for (key, value) in [
            ("net.ipv4.tcp_congestion_control", "reno"),
            ("net.ipv4.tcp_early_retrans", "0"),
        ] {
            bulk.lab.sysctls.push(SysctlSetting {
                host: Host::A,
                key: key.into(),
                value: value.into(),
            });
        }
        bulk.io_timeout_ms = 1000;
        out.push(bulk);
        out.push(scenario(
            "udp-truncate",
            "two 26-byte datagrams read with a 10-byte buffer: the first truncated (MSG_TRUNC), the second with MSG_TRUNC in the flags returns the real length",
            family,
            Program {
                a: vec![
                    Op::Sync,
                    Op::Socket { kind: SockKind::Udp },
                    Op::SendTo { sock: 0, len: 26, port: PORT },
                    Op::SendTo { sock: 0, len: 26, port: PORT },
                    Op::Sync,
                ],
                b: vec![
                    Op::Socket { kind: SockKind::Udp },
                    Op::Bind { sock: 0, port: PORT },
                    Op::Sync,
                    Op::Sync,
                    Op::RecvFrom { sock: 0, max: 10, peek: false, trunc: false },
                    Op::RecvFrom { sock: 0, max: 10, peek: false, trunc: true },
                ],
            },
        ));
    }
    out
}
