//! TCP connection establishment (suite `tcp-lifecycle`): the three-way handshake and its options, the
//! listener's accept queue, and connection identity by 4-tuple.

use std::collections::BTreeMap;

use harness::exec::{run_program, ExecConfig, OpOutcome, OpResult};
use harness::frame::Host;
use harness::ops::{Op, Program, ShutdownHow, SockKind, SockOpt, TcpState};
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::Family;
use harness::trace::{ConversationKind, Trace};
use harness::wire::TcpOption;
use harness::{HarnessError, LabConfig, SysctlSetting};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::conn::{connected, read_result, segments, Seg, PORT};
use crate::tcp_close::ProgramObserved;

fn exec_config(env: &CaseEnv, io_timeout_ms: u32) -> ExecConfig {
    let mut cfg = ExecConfig::new(env.seed, env.family);
    cfg.io_timeout_ms = io_timeout_ms;
    cfg
}

/// TCP handshake options per host's sysctls (lab Q12, Q13).
///
/// RFC 9293 §3.5: SYN, SYN-ACK, ACK, and a SYN occupies one sequence number (§3.4), so the SYN-ACK carries
/// ACK = ISN(a) + 1, the third segment ACK = ISN(b) + 1 and the first data octet is ISN + 1; a FIN occupies
/// one too (b's ACK of a's data and FIN is data + 2, relative). §3.7.1 (MUST-14/15/16): the MSS option
/// announces the largest segment the host can receive: MTU − 40 over IPv4, MTU − 60 over IPv6 (fixed
/// headers, no options). RFC 2018 §2: SACK-permitted only in a SYN, and in the SYN-ACK only if the SYN
/// carried it. RFC 7323 §3.2 / §2.2: timestamps and window scale are sent in a SYN-ACK only if the SYN
/// offered them; the window field of a SYN is never scaled; scaling is in force only if both SYNs carried
/// the option.
///
/// Cases: `net.ipv4.tcp_sack`, `tcp_timestamps` and `tcp_window_scaling` drawn independently on a and on b
/// (all 64 combinations; the ipv4 names govern IPv6 too), the link MTU from 1280 to 9000, and 0–20 KB of
/// data from a before it closes.
///
/// Checked: a's SYN carries MSS = MTU − 40/60 and exactly the options a's sysctls enable; b's SYN-ACK
/// carries MSS = MTU − 40/60 and each optional option only if a offered it and b's sysctl enables it (so
/// never one a did not offer); SYN-ACK ack = 1, third segment seq 1 / ack 1 (relative), first data at seq 1,
/// the ACK of a's data and FIN = data + 2; scaling: where it is not in force, each side's first window after
/// the handshake is at least a quarter of its SYN window (an unnegotiated shift would shrink it 2^shift
/// times); where it is in force, that window shifted left by the side's scale is at least a quarter of its
/// SYN window (the `tcp.window.bounded_by_buffer` invariant bounds it from above on every case).
pub struct HandshakeOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionSysctls {
    pub sack: bool,
    pub timestamps: bool,
    pub window_scaling: bool,
}

impl OptionSysctls {
    fn render(&self) -> String {
        format!(
            "sack={} ts={} ws={}",
            self.sack as u8, self.timestamps as u8, self.window_scaling as u8
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandshakeCase {
    pub a: OptionSysctls,
    pub b: OptionSysctls,
    pub mtu: u32,
    pub data: usize,
}

fn option_sysctls(rng: &mut CaseRng) -> OptionSysctls {
    OptionSysctls {
        sack: rng.gen(),
        timestamps: rng.gen(),
        window_scaling: rng.gen(),
    }
}

/// The options a SYN or SYN-ACK carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Offered {
    mss: Option<u16>,
    sack: bool,
    timestamps: bool,
    window_scale: Option<u8>,
}

impl Offered {
    fn of(options: &[TcpOption]) -> Offered {
        let mut o = Offered::default();
        for opt in options {
            match opt {
                TcpOption::MaxSegmentSize(m) => o.mss = Some(*m),
                TcpOption::SackPermitted => o.sack = true,
                TcpOption::Timestamp { .. } => o.timestamps = true,
                TcpOption::WindowScale(s) => o.window_scale = Some(*s),
                TcpOption::EndOfList
                | TcpOption::NoOperation
                | TcpOption::SackRange(_)
                | TcpOption::Unknown { .. } => {}
            }
        }
        o
    }
    fn render(&self) -> String {
        format!(
            "mss {}, sackOK {}, TS {}, wscale {}",
            self.mss.map_or("-".into(), |m| m.to_string()),
            if self.sack { "yes" } else { "no" },
            if self.timestamps { "yes" } else { "no" },
            self.window_scale.map_or("-".into(), |s| s.to_string())
        )
    }
}

fn header_overhead(family: Family) -> u32 {
    match family {
        Family::Ipv4 => 40,
        Family::Ipv6 => 60,
    }
}

fn family_of(trace: &Trace) -> Option<Family> {
    trace.conversations.iter().find_map(|c| {
        (c.kind == ConversationKind::Tcp).then_some(harness::sock::Family::of(c.client.addr))
    })
}

impl Property for HandshakeOptions {
    type Case = HandshakeCase;
    type Observed = ProgramObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.handshake.options",
            suite: "tcp-lifecycle",
            title: "SYN/SYN-ACK/ACK numbering; MSS from the MTU; SACK, timestamps and window scale per each host's sysctls, echoed only when offered",
            clauses: &[
                "RFC 9293 §3.5",
                "RFC 9293 §3.4 (SYN and FIN take one sequence number)",
                "RFC 9293 §3.7.1 (MUST-14/15/16)",
                "RFC 7323 §2.2, §3.2",
                "RFC 2018 §2",
            ],
            questions: &["Q12", "Q13"],
            needs: Needs {
                link: LinkKind::Veth,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> HandshakeCase {
        HandshakeCase {
            a: option_sysctls(rng),
            b: option_sysctls(rng),
            mtu: match rng.gen_range(0..4) {
                0 => 1500,
                1 => 1280,
                2 => rng.gen_range(1280..=9000),
                _ => 9000,
            },
            data: if rng.gen_bool(0.3) {
                0
            } else {
                rng.gen_range(1..=20_000)
            },
        }
    }

    fn lab_config(&self, case: &HandshakeCase) -> LabConfig {
        let mut cfg = LabConfig {
            mtu: Some(case.mtu),
            ..LabConfig::default()
        };
        for (host, s) in [(Host::A, case.a), (Host::B, case.b)] {
            for (key, on) in [
                ("net.ipv4.tcp_sack", s.sack),
                ("net.ipv4.tcp_timestamps", s.timestamps),
                ("net.ipv4.tcp_window_scaling", s.window_scaling),
            ] {
                cfg.sysctls.push(SysctlSetting {
                    host,
                    key: key.into(),
                    value: if on { "1" } else { "0" }.into(),
                });
            }
        }
        cfg
    }

    fn describe(&self, c: &HandshakeCase) -> String {
        format!(
            "a {}, b {}, MTU {}, a sends {} bytes and closes",
            c.a.render(),
            c.b.render(),
            c.mtu,
            c.data
        )
    }

    fn execute(
        &self,
        case: &HandshakeCase,
        env: &CaseEnv,
    ) -> Result<ProgramObserved, HarnessError> {
        let mut p = connected(&[], &[]);
        if case.data > 0 {
            p.a.push(Op::Write {
                sock: 0,
                len: case.data,
            });
        }
        p.a.extend([Op::Close { sock: 0 }, Op::Sleep { ms: 10 }]);
        p.b.extend([
            Op::ReadExact {
                sock: 1,
                len: case.data,
            },
            Op::Read { sock: 1, max: 1000 },
            Op::Close { sock: 1 },
        ]);
        let (outcomes, sockets) = run_program(env.lab, &p, exec_config(env, 2000))?;
        Ok(ProgramObserved { outcomes, sockets })
    }

    fn check(&self, case: &HandshakeCase, _observed: &ProgramObserved, trace: &Trace) -> Verdict {
        let mut findings = Findings::default();
        let segs = segments(trace);
        let find = |from: Host, pick: &dyn Fn(&Seg) -> bool| {
            segs.iter().find(|s| s.from == from && pick(s)).cloned()
        };
        let Some(syn) = find(Host::A, &|s| s.flags.syn && !s.flags.ack) else {
            findings.push(
                Violation::new("RFC 9293 §3.5", "no SYN from A")
                    .field("flags")
                    .expected("S")
                    .actual("none in the capture"),
            );
            return findings.verdict();
        };
        let Some(syn_ack) = find(Host::B, &|s| s.flags.syn && s.flags.ack) else {
            findings.push(
                Violation::new("RFC 9293 §3.5", "B did not answer the SYN with a SYN-ACK")
                    .frame(syn.number)
                    .field("flags")
                    .expected("S.")
                    .actual("none in the capture"),
            );
            return findings.verdict();
        };
        let family = family_of(trace).unwrap_or(Family::Ipv4);
        let mss = (case.mtu - header_overhead(family)) as u16;
        let tcp_of = |s: &Seg| trace.frames[s.index].tcp().cloned().expect("a TCP segment");
        let syn_opts = Offered::of(&tcp_of(&syn).options);
        let syn_ack_opts = Offered::of(&tcp_of(&syn_ack).options);
        let expect_syn = Offered {
            mss: Some(mss),
            sack: case.a.sack,
            timestamps: case.a.timestamps,
            window_scale: syn_opts.window_scale.filter(|_| case.a.window_scaling),
        };
        let ws_ok = |o: &Offered, on: bool| o.window_scale.is_some() == on;
        findings.check(
            syn_opts.mss == expect_syn.mss
                && syn_opts.sack == expect_syn.sack
                && syn_opts.timestamps == expect_syn.timestamps
                && ws_ok(&syn_opts, case.a.window_scaling),
            || {
                Violation::new(
                    "RFC 9293 §3.7.1 (MUST-14/15: MSS = MTU − IP and TCP headers); RFC 7323 §2.2, §3.2; RFC 2018 §2",
                    "A's SYN options do not match the MTU and A's sysctls",
                )
                .frame(syn.number)
                .field("SYN options")
                .expected(format!(
                    "mss {mss}, sackOK {}, TS {}, wscale {}",
                    yes(case.a.sack),
                    yes(case.a.timestamps),
                    if case.a.window_scaling { "any" } else { "-" }
                ))
                .actual(syn_opts.render())
            },
        );
        let both = |x: bool, y: bool| x && y;
        let want_sack = both(syn_opts.sack, case.b.sack);
        let want_ts = both(syn_opts.timestamps, case.b.timestamps);
        let want_ws = both(syn_opts.window_scale.is_some(), case.b.window_scaling);
        findings.check(
            syn_ack_opts.mss == Some(mss)
                && syn_ack_opts.sack == want_sack
                && syn_ack_opts.timestamps == want_ts
                && ws_ok(&syn_ack_opts, want_ws),
            || {
                let unoffered = (syn_ack_opts.sack && !syn_opts.sack)
                    || (syn_ack_opts.timestamps && !syn_opts.timestamps)
                    || (syn_ack_opts.window_scale.is_some() && syn_opts.window_scale.is_none());
                Violation::new(
                    "RFC 7323 §2.2, §3.2 and RFC 2018 §2 (a SYN-ACK carries only options the SYN offered); RFC 9293 §3.7.1",
                    if unoffered {
                        "B's SYN-ACK carries an option A's SYN did not offer"
                    } else {
                        "B's SYN-ACK options do not match the offer, the MTU and B's sysctls"
                    },
                )
                .frames([syn.number, syn_ack.number])
                .field("SYN-ACK options")
                .expected(format!(
                    "mss {mss}, sackOK {}, TS {}, wscale {}",
                    yes(want_sack),
                    yes(want_ts),
                    if want_ws { "any" } else { "-" }
                ))
                .actual(syn_ack_opts.render())
            },
        );
        // Numbering: the SYN takes one sequence number.
        findings.check(syn_ack.ack == 1, || {
            Violation::new(
                "RFC 9293 §3.4 (a SYN occupies one sequence number)",
                "the SYN-ACK does not acknowledge ISN + 1",
            )
            .frames([syn.number, syn_ack.number])
            .field("ack (relative)")
            .expected(1)
            .actual(syn_ack.ack)
        });
        match find(Host::A, &|s| !s.flags.syn && s.index > syn_ack.index) {
            None => findings.push(
                Violation::new("RFC 9293 §3.5", "A never completed the handshake")
                    .frame(syn_ack.number)
                    .field("third segment")
                    .expected("ACK seq 1 ack 1")
                    .actual("nothing from A after the SYN-ACK"),
            ),
            Some(third) => findings.check(third.seq == 1 && third.ack == 1, || {
                Violation::new(
                    "RFC 9293 §3.4, §3.5 (both SYNs occupy one sequence number)",
                    "the segment after the SYN-ACK is not at seq 1 / ack 1",
                )
                .frames([syn_ack.number, third.number])
                .field("seq/ack (relative)")
                .expected("1/1")
                .actual(format!("{}/{}", third.seq, third.ack))
            }),
        }
        if let Some(first_data) = find(Host::A, &|s| s.len > 0) {
            findings.check(first_data.seq == 1, || {
                Violation::new(
                    "RFC 9293 §3.4 (data starts after the SYN's sequence number)",
                    "A's first data octet is not at ISN + 1",
                )
                .frame(first_data.number)
                .field("seq (relative)")
                .expected(1)
                .actual(first_data.seq)
            });
        }
        let data = case.data as u32;
        let acked_fin = segs
            .iter()
            .any(|s| s.from == Host::B && s.flags.ack && s.ack == data + 2);
        findings.check(acked_fin, || {
            Violation::new(
                "RFC 9293 §3.4 (SYN and FIN each occupy one sequence number)",
                "B never acknowledged A's data and FIN with data + 2",
            )
            .field("ack (relative)")
            .expected(data + 2)
            .actual(
                segs.iter()
                    .filter(|s| s.from == Host::B)
                    .map(|s| s.ack)
                    .max()
                    .unwrap_or(0),
            )
        });
        // Window scaling in force only when both SYNs carried it.
        let in_force = syn_opts.window_scale.is_some() && syn_ack_opts.window_scale.is_some();
        for (host, handshake, shift) in [
            (Host::A, &syn, syn_opts.window_scale),
            (Host::B, &syn_ack, syn_ack_opts.window_scale),
        ] {
            let Some(first) = find(host, &|s| {
                !s.flags.syn && !s.flags.rst && s.index > syn_ack.index
            }) else {
                continue;
            };
            let shift = if in_force { shift.unwrap_or(0) } else { 0 };
            let scaled = (first.window as u64) << shift;
            let floor = handshake.window as u64 / 4;
            findings.check(scaled >= floor, || {
                Violation::new(
                    "RFC 7323 §2.2 (the shift applies only when both SYNs carried Window Scale; the SYN's own window is unscaled)",
                    format!(
                        "{}'s first window after the handshake is far below its SYN window: {}",
                        host.name(),
                        if in_force {
                            "the negotiated shift was not applied"
                        } else {
                            "a shift was applied although scaling was not negotiated"
                        }
                    ),
                )
                .frames([handshake.number, first.number])
                .field("window")
                .expected(format!(
                    "≥ {floor} bytes (a quarter of the SYN window {}), shift {shift}",
                    handshake.window
                ))
                .actual(format!("{} << {shift} = {scaled}", first.window))
            });
        }
        findings.note(format!(
            "scaling {}",
            if in_force { "in force" } else { "off" }
        ));
        findings.verdict()
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Connections are told apart by their 4-tuple (lab Q16).
///
/// RFC 9293 §3.1: "a pair of sockets uniquely identifies each connection"; a socket is an address and a
/// port. Several connections from one host to one listening port therefore coexist, differing only in the
/// client's port, and each has its own sequence space (§3.4: an ISN per connection). (The lab's "two ports
/// and two sequence numbers": the sequence numbers are not part of the identity.)
///
/// Cases: 2–8 connections from a to b's one listening port; a writes 1–20,000 bytes on each, interleaved
/// in rounds across the connections, then half-closes each; b accepts them all, reads each to EOF, answers
/// 1–5,000 bytes and closes; a reads each answer to EOF.
///
/// Checked: the capture holds one conversation per connection, all to b's port, with distinct client ports
/// and distinct ISNs in each direction; on each connection the FINs sit at 1 + the bytes written on it; b's
/// socket whose peer is a's port p read exactly what a wrote on p and a's socket read exactly what b wrote
/// on the matching accepted socket (every byte is checked against the writer's stream, so a byte that
/// crossed connections is reported as corrupt).
pub struct FourTuple;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FourTupleCase {
    /// Per connection, the sizes of a's writes (one per round).
    pub a_writes: Vec<Vec<usize>>,
    /// Per accepted connection, the bytes b answers.
    pub b_answers: Vec<usize>,
}

impl Property for FourTuple {
    type Case = FourTupleCase;
    type Observed = ProgramObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.identity.four_tuple",
            suite: "tcp-lifecycle",
            title: "connections from one host to one port coexist, one per client port, each with its own sequence space; data never crosses",
            clauses: &["RFC 9293 §3.1", "RFC 9293 §3.4 (ISN per connection)"],
            questions: &["Q16"],
            needs: Needs {
                link: LinkKind::Veth,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> FourTupleCase {
        let n = rng.gen_range(2..=8);
        let rounds = rng.gen_range(1..=3);
        FourTupleCase {
            a_writes: (0..n)
                .map(|_| {
                    (0..rounds)
                        .map(|_| rng.gen_range(1..=20_000 / rounds))
                        .collect()
                })
                .collect(),
            b_answers: (0..n).map(|_| rng.gen_range(1..=5000)).collect(),
        }
    }

    fn describe(&self, c: &FourTupleCase) -> String {
        let totals: Vec<usize> = c.a_writes.iter().map(|w| w.iter().sum()).collect();
        format!(
            "{} connections to one port; a writes {:?} (interleaved), b answers {:?}",
            c.a_writes.len(),
            totals,
            c.b_answers
        )
    }

    fn execute(
        &self,
        case: &FourTupleCase,
        env: &CaseEnv,
    ) -> Result<ProgramObserved, HarnessError> {
        let n = case.a_writes.len();
        let mut a = vec![Op::Sync];
        for i in 0..n {
            a.push(Op::Socket {
                kind: SockKind::Tcp,
            });
            a.push(Op::Connect {
                sock: i,
                port: PORT,
            });
        }
        a.push(Op::Sync);
        let mut b = vec![
            Op::Socket {
                kind: SockKind::Tcp,
            },
            Op::Bind {
                sock: 0,
                port: PORT,
            },
            Op::Listen {
                sock: 0,
                backlog: 16,
            },
            Op::Sync,
            Op::Sync,
        ];
        b.extend((0..n).map(|_| Op::Accept { sock: 0 }));
        let rounds = case.a_writes.iter().map(Vec::len).max().unwrap_or(0);
        for r in 0..rounds {
            for (i, w) in case.a_writes.iter().enumerate() {
                if let Some(&len) = w.get(r) {
                    a.push(Op::Write { sock: i, len });
                }
            }
        }
        for i in 0..n {
            a.push(Op::Shutdown {
                sock: i,
                how: ShutdownHow::Wr,
            });
        }
        for (j, &answer) in case.b_answers.iter().enumerate() {
            // ReadExact stops at EOF: asking for more than was written reads exactly what came.
            b.push(Op::ReadExact {
                sock: 1 + j,
                len: 1 << 20,
            });
            b.push(Op::Write {
                sock: 1 + j,
                len: answer,
            });
            b.push(Op::Close { sock: 1 + j });
        }
        for i in 0..n {
            a.push(Op::ReadExact {
                sock: i,
                len: 1 << 20,
            });
        }
        a.push(Op::Sync);
        b.push(Op::Sync);
        let (outcomes, sockets) = run_program(env.lab, &Program { a, b }, exec_config(env, 2000))?;
        Ok(ProgramObserved { outcomes, sockets })
    }

    fn check(&self, case: &FourTupleCase, observed: &ProgramObserved, trace: &Trace) -> Verdict {
        const CLAUSE: &str = "RFC 9293 §3.1 (a pair of sockets identifies a connection)";
        let mut findings = Findings::default();
        let n = case.a_writes.len();
        let convs: Vec<&harness::trace::Conversation> = trace
            .conversations
            .iter()
            .filter(|c| c.kind == ConversationKind::Tcp && c.server.port == PORT)
            .collect();
        findings.check(convs.len() == n, || {
            Violation::new(
                CLAUSE,
                "the capture does not hold one conversation per connection",
            )
            .field("conversations to b's port")
            .expected(n)
            .actual(convs.len())
        });
        let mut client_ports: Vec<u16> = convs.iter().map(|c| c.client.port).collect();
        client_ports.sort_unstable();
        client_ports.dedup();
        findings.check(client_ports.len() == convs.len(), || {
            Violation::new(CLAUSE, "two connections share a client port")
                .field("client ports")
                .expected("distinct")
                .actual(format!("{client_ports:?}"))
        });
        for dir in 0..2 {
            let mut isns: Vec<u32> = convs
                .iter()
                .filter_map(|c| c.base[dir].filter(|_| c.isn_seen[dir]).map(|s| s.0))
                .collect();
            let seen = isns.len();
            isns.sort_unstable();
            isns.dedup();
            findings.check(isns.len() == seen, || {
                Violation::new(
                    "RFC 9293 §3.4 (each connection has its own initial sequence number)",
                    format!(
                        "two connections share an ISN ({})",
                        if dir == 0 { "A's side" } else { "B's side" }
                    ),
                )
                .field("ISN")
                .expected("distinct per connection")
                .actual(format!("{isns:?}"))
            });
        }
        // Sockets: a's socket i has local port p_i; b's accepted socket with peer port p_i.
        let a_port: BTreeMap<usize, u16> = observed
            .outcomes
            .iter()
            .filter(|o| o.host == Host::A && matches!(o.op, Op::Connect { .. }))
            .filter_map(|o| Some((o.op.sock()?, o.sock.as_ref()?.local_port?)))
            .collect();
        let b_reads: BTreeMap<u16, &OpOutcome> = observed
            .outcomes
            .iter()
            .filter(|o| o.host == Host::B && matches!(o.op, Op::ReadExact { .. }))
            .filter_map(|o| Some((o.sock.as_ref()?.peer_port?, o)))
            .collect();
        let b_answer_by_port: BTreeMap<u16, usize> = observed
            .outcomes
            .iter()
            .filter(|o| o.host == Host::B && matches!(o.op, Op::Write { .. }))
            .filter_map(|o| {
                let written = match o.result {
                    OpResult::Value { value } => value as usize,
                    _ => 0,
                };
                Some((o.sock.as_ref()?.peer_port?, written))
            })
            .collect();
        for (i, writes) in case.a_writes.iter().enumerate() {
            let Some(&port) = a_port.get(&i) else {
                continue;
            };
            let written: usize = writes.iter().sum();
            match b_reads.get(&port) {
                None => findings.push(
                    Violation::new(CLAUSE, format!("no accepted socket of b has a's port {port} as its peer"))
                        .field("accepted sockets' peer ports")
                        .expected(port)
                        .actual(format!("{:?}", b_reads.keys().collect::<Vec<_>>())),
                ),
                Some(r) => findings.check(
                    read_result(&r.result)
                        .is_some_and(|(got, _, m)| got == written as u64 && m.is_none()),
                    || {
                        Violation::new(CLAUSE, format!("b's connection from port {port} did not read exactly a's bytes for it"))
                            .field("b read_exact()")
                            .expected(format!("{written} bytes of a's stream on port {port}"))
                            .actual(r.result.render())
                    },
                ),
            }
            let a_read = observed.outcomes.iter().find(|o| {
                o.host == Host::A && matches!(o.op, Op::ReadExact { sock, .. } if sock == i)
            });
            if let (Some(r), Some(&answer)) = (a_read, b_answer_by_port.get(&port)) {
                findings.check(
                    read_result(&r.result)
                        .is_some_and(|(got, _, m)| got == answer as u64 && m.is_none()),
                    || {
                        Violation::new(CLAUSE, format!("a's connection on port {port} did not read exactly b's answer on it"))
                            .field("a read_exact()")
                            .expected(format!("{answer} bytes"))
                            .actual(r.result.render())
                    },
                );
            }
            // On the wire: that connection's FIN follows exactly its bytes.
            if let Some(conv) = convs.iter().find(|c| c.client.port == port) {
                let fin = conv.frames.iter().find_map(|&k| {
                    let f = &trace.frames[k];
                    let t = f.tcp()?;
                    if f.from == Some(Host::A) && t.flags.fin {
                        Some((f.number, f.rel_seq? + t.payload_len as u32))
                    } else {
                        None
                    }
                });
                if let Some((number, end)) = fin {
                    findings.check(end == 1 + written as u32, || {
                        Violation::new(
                            "RFC 9293 §3.4 (each connection numbers its own bytes)",
                            format!("the FIN of the connection from port {port} is not after exactly its bytes"),
                        )
                        .frame(number)
                        .field("seq + len (relative)")
                        .expected(1 + written)
                        .actual(end)
                    });
                }
            }
        }
        findings.note(format!("{n} connections"));
        findings.verdict()
    }
}

/// The listener's accept queue (lab Q10, Q11, Q14).
///
/// RFC 9293 §3.5 and §3.9.1 (OPEN/passive): a listening socket completes handshakes on its own; accept()
/// only hands over connections that are already established. listen(2): "backlog defines the maximum length
/// to which the queue of pending connections may grow"; on Linux it is the queue of *completely established*
/// sockets waiting to be accepted, and `sk_acceptq_is_full` lets it hold backlog + 1 of them. When the queue
/// is full, tcp_conn_request drops further SYNs without an answer (counted in `ListenOverflows`/
/// `ListenDrops`, and the client's SYN is retransmitted after TCP_TIMEOUT_INIT, 1 s); `tcp_abort_on_overflow`
/// only changes what happens to a handshake's final ACK arriving at a full queue (RST instead of a drop),
/// which sequential connects do not produce.
///
/// Cases: backlog 1–8; 1–(backlog + 3) connections from a, made one after the other while b does not call
/// accept; then b accepts as many as the queue holds, one more non-blocking accept, and a last connection
/// after the queue drained; `net.ipv4.tcp_abort_on_overflow` 0 or 1.
///
/// Checked: each connect() that fits the queue (the first backlog + 1) succeeds before b calls accept, and
/// its SYN, SYN-ACK and ACK are on the wire; the ones beyond get no SYN-ACK while the queue is full and
/// their connect() does not complete within 300 ms (a SYN-ACK for them would mean the queue grew past
/// backlog + 1); accept() returns the queued connections in connect order (FIFO: peer ports in order), each
/// as a new socket in ESTABLISHED, while the listener stays in LISTEN; once drained, the non-blocking
/// accept() fails with EAGAIN; a later connection is accepted too.
pub struct AcceptBacklog;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcceptBacklogCase {
    pub backlog: i32,
    pub connections: usize,
    pub abort_on_overflow: bool,
}

impl AcceptBacklogCase {
    /// Connections the accept queue holds (Linux: backlog + 1).
    fn capacity(&self) -> usize {
        self.backlog as usize + 1
    }
}

impl Property for AcceptBacklog {
    type Case = AcceptBacklogCase;
    type Observed = ProgramObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.accept.backlog",
            suite: "tcp-lifecycle",
            title: "handshakes complete before accept(); the queue holds backlog + 1 and is FIFO; SYNs beyond are dropped; the listener stays usable",
            clauses: &["RFC 9293 §3.5", "RFC 9293 §3.9.1 (passive OPEN)", "POSIX listen/accept"],
            questions: &["Q10", "Q11", "Q14"],
            needs: Needs {
                link: LinkKind::Veth,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> AcceptBacklogCase {
        let backlog = rng.gen_range(1..=8);
        AcceptBacklogCase {
            backlog,
            connections: rng.gen_range(1..=backlog as usize + 3),
            abort_on_overflow: rng.gen(),
        }
    }

    fn lab_config(&self, case: &AcceptBacklogCase) -> LabConfig {
        LabConfig {
            sysctls: vec![SysctlSetting {
                host: Host::B,
                key: "net.ipv4.tcp_abort_on_overflow".into(),
                value: if case.abort_on_overflow { "1" } else { "0" }.into(),
            }],
            ..LabConfig::default()
        }
    }

    fn describe(&self, c: &AcceptBacklogCase) -> String {
        format!(
            "listen(backlog {}), {} connections before any accept, tcp_abort_on_overflow={}",
            c.backlog, c.connections, c.abort_on_overflow as u8
        )
    }

    fn execute(
        &self,
        case: &AcceptBacklogCase,
        env: &CaseEnv,
    ) -> Result<ProgramObserved, HarnessError> {
        let n = case.connections;
        let mut a = vec![Op::Sync];
        for i in 0..n {
            a.push(Op::Socket {
                kind: SockKind::Tcp,
            });
            a.push(Op::Connect {
                sock: i,
                port: PORT,
            });
        }
        a.push(Op::Sync);
        let queued = n.min(case.capacity());
        let mut b = vec![
            Op::Socket {
                kind: SockKind::Tcp,
            },
            Op::Bind {
                sock: 0,
                port: PORT,
            },
            Op::Listen {
                sock: 0,
                backlog: case.backlog,
            },
            Op::Sync,
            // a connects while b does nothing.
            Op::Sync,
        ];
        b.extend((0..queued).map(|_| Op::Accept { sock: 0 }));
        // One no-op wait per accepted socket records its peer port and state.
        b.extend((0..queued).map(|k| Op::WaitWritable { sock: 1 + k, ms: 1 }));
        b.push(Op::SetOpt {
            sock: 0,
            opt: SockOpt::NonBlocking(true),
        });
        b.push(Op::Accept { sock: 0 });
        b.push(Op::SetOpt {
            sock: 0,
            opt: SockOpt::NonBlocking(false),
        });
        b.push(Op::Sync);
        a.push(Op::Sync);
        // The listener is still usable: one more connection. (Connections refused by a full queue are
        // still retrying their SYN in the kernel; the next retransmission is 1 s away.)
        a.push(Op::Socket {
            kind: SockKind::Tcp,
        });
        a.push(Op::Connect {
            sock: n,
            port: PORT,
        });
        b.push(Op::Accept { sock: 0 });
        a.push(Op::Sync);
        b.push(Op::Sync);
        let (outcomes, sockets) = run_program(env.lab, &Program { a, b }, exec_config(env, 300))?;
        Ok(ProgramObserved { outcomes, sockets })
    }

    fn check(
        &self,
        case: &AcceptBacklogCase,
        observed: &ProgramObserved,
        trace: &Trace,
    ) -> Verdict {
        const CLAUSE: &str =
            "RFC 9293 §3.5, §3.9.1; POSIX listen (Linux: backlog + 1 established connections)";
        let mut findings = Findings::default();
        let n = case.connections;
        let cap = case.capacity();
        let connects: Vec<&OpOutcome> = observed
            .outcomes
            .iter()
            .filter(|o| o.host == Host::A && matches!(o.op, Op::Connect { .. }))
            .collect();
        let accepts: Vec<&OpOutcome> = observed
            .outcomes
            .iter()
            .filter(|o| o.host == Host::B && matches!(o.op, Op::Accept { .. }))
            .collect();
        let port_of = |o: &OpOutcome| o.sock.as_ref().and_then(|s| s.local_port);
        // Handshakes per client port, from the wire.
        let handshake = |port: u16| {
            let conv = trace.conversations.iter().find(|c| {
                c.kind == ConversationKind::Tcp && c.client.port == port && c.server.port == PORT
            })?;
            let mut syn_ack = None;
            let mut ack = None;
            for &k in &conv.frames {
                let f = &trace.frames[k];
                let Some(t) = f.tcp() else { continue };
                if f.from == Some(Host::B) && t.flags.syn && t.flags.ack && syn_ack.is_none() {
                    syn_ack = Some(f.number);
                }
                if f.from == Some(Host::A) && !t.flags.syn && t.flags.ack && syn_ack.is_some() {
                    ack.get_or_insert(f.number);
                }
            }
            Some((
                conv.frames.first().map(|&k| trace.frames[k].number),
                syn_ack,
                ack,
            ))
        };
        let mut queued_ports = Vec::new();
        for (i, c) in connects.iter().take(n).enumerate() {
            let port = port_of(c);
            let hs = port.and_then(handshake);
            if i < cap {
                findings.check(c.result == OpResult::Done, || {
                    Violation::new(
                        CLAUSE,
                        format!(
                            "connect() {} did not complete before b called accept()",
                            i + 1
                        ),
                    )
                    .field("connect()")
                    .expected(format!(
                        "success: the queue holds {cap} (backlog {} + 1)",
                        case.backlog
                    ))
                    .actual(c.result.render())
                });
                findings.check(
                    hs.is_some_and(|(_, sa, ack)| sa.is_some() && ack.is_some()),
                    || {
                        Violation::new(
                            "RFC 9293 §3.5 (the handshake completes in the kernel, before accept)",
                            format!("connection {} has no complete handshake on the wire", i + 1),
                        )
                        .field("SYN, SYN-ACK, ACK")
                        .expected("all three before accept()")
                        .actual(format!("{hs:?}"))
                    },
                );
                if let Some(p) = port {
                    queued_ports.push(p);
                }
            } else {
                let syn_ack = hs.and_then(|(_, sa, _)| sa);
                findings.check(syn_ack.is_none() && c.result != OpResult::Done, || {
                    let mut v = Violation::new(
                        "listen(2) / Linux tcp_conn_request (a SYN to a full accept queue is dropped)",
                        format!("connection {} beyond the queue's {cap} was answered", i + 1),
                    )
                    .field("SYN-ACK / connect()")
                    .expected("no SYN-ACK, connect() still pending after 300 ms")
                    .actual(format!("SYN-ACK {:?}, connect() {}", syn_ack, c.result.render()));
                    if let Some(sa) = syn_ack {
                        v = v.frame(sa);
                    }
                    v
                });
            }
        }
        // FIFO, new sockets in ESTABLISHED, listener stays LISTEN.
        let accepted = accepts
            .iter()
            .take(cap.min(n))
            .filter(|o| matches!(o.result, OpResult::Value { .. }))
            .count();
        findings.check(accepted == cap.min(n), || {
            Violation::new(CLAUSE, "accept() did not return every queued connection")
                .field("accept() successes")
                .expected(cap.min(n))
                .actual(accepted)
        });
        let probes: Vec<&OpOutcome> = observed
            .outcomes
            .iter()
            .filter(|o| o.host == Host::B && matches!(o.op, Op::WaitWritable { .. }))
            .collect();
        let accepted_peers: Vec<u16> = probes
            .iter()
            .filter_map(|o| o.sock.as_ref()?.peer_port)
            .collect();
        for o in &probes {
            if let Some(state) = o.sock.as_ref().and_then(|s| s.state()) {
                findings.check(state == TcpState::Established, || {
                    Violation::new(
                        "RFC 9293 §3.5 (accept() hands over established connections)",
                        "an accepted socket is not ESTABLISHED",
                    )
                    .field(format!(
                        "state of accepted socket s{}",
                        o.op.sock().unwrap_or(0)
                    ))
                    .expected("ESTABLISHED")
                    .actual(state.rfc_name())
                });
            }
        }
        for (k, o) in accepts.iter().enumerate() {
            if let Some(state) = o.sock.as_ref().and_then(|s| s.state()) {
                findings.check(state == TcpState::Listen, || {
                    Violation::new(
                        "RFC 9293 §3.9.1 (the listening socket stays in LISTEN)",
                        "the listener left LISTEN after accept()",
                    )
                    .field(format!("listener state after accept {}", k + 1))
                    .expected("LISTEN")
                    .actual(state.rfc_name())
                });
            }
        }
        findings.check(accepted_peers == queued_ports, || {
            Violation::new(
                "listen(2): accept() takes the first connection of the queue (FIFO)",
                "accept() did not return the connections in the order they were made",
            )
            .field("peer ports of accepted sockets")
            .expected(format!("{queued_ports:?}"))
            .actual(format!("{accepted_peers:?}"))
        });
        let extra = accepts.get(cap.min(n));
        if let Some(extra) = extra {
            findings.check(extra.result.errno() == Some("EAGAIN"), || {
                Violation::new(
                    "POSIX accept (O_NONBLOCK and no pending connection: EAGAIN)",
                    "a non-blocking accept() on the drained queue did not fail with EAGAIN",
                )
                .field("accept()")
                .expected("EAGAIN")
                .actual(extra.result.render())
            });
        }
        if let (Some(last_connect), Some(last_accept)) = (connects.get(n), accepts.last()) {
            findings.check(
                last_connect.result == OpResult::Done
                    && matches!(last_accept.result, OpResult::Value { .. }),
                || {
                    Violation::new(
                        "RFC 9293 §3.9.1 (the listener keeps accepting)",
                        "a connection after the queue drained was not accepted",
                    )
                    .field("connect() / accept()")
                    .expected("ok / a new socket")
                    .actual(format!(
                        "{} / {}",
                        last_connect.result.render(),
                        last_accept.result.render()
                    ))
                },
            );
        }
        findings.note(if n > cap {
            "queue overflowed: the SYNs beyond backlog + 1 were dropped"
        } else {
            "queue did not overflow"
        });
        findings.verdict()
    }
}
