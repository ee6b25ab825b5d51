//! Zero windows (suite `tcp-data`): a kernel sender facing a kernel receiver whose buffer is full
//! (`tcp.zero_window.probes`), and facing a scripted peer that closes and reopens its window on cue
//! (`tcp.zero_window.peer`).

use std::time::Duration;

use harness::exec::{run_program, ExecConfig, OpResult};
use harness::frame::Host;
use harness::ops::{Op, Program, SockKind, SockOpt};
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::Family;
use harness::trace::{Label, Trace};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Linux's zero-window probe base: the probe timer starts at max(RTO, TCP_RTO_MIN = 200 ms) and doubles
/// (tcp_probe0_base / tcp_probe0_when); docs/kernel-facts.md measured gaps of 0.21, 0.43, 0.86, 1.70 s.
const PROBE_BASE: Duration = Duration::from_millis(200);
/// Accepted spread of a probe gap around `PROBE_BASE · 2^i`: −10 % (timers never fire early by more than
/// jiffy rounding) to +30 % + 30 ms (timer slack and scheduling on a loaded 2-core machine).
const PROBE_EARLY: f64 = 0.9;
const PROBE_LATE: f64 = 1.3;
const PROBE_SLACK: Duration = Duration::from_millis(30);
/// The window update leaves inside the reader's read() (docs/kernel-facts.md: within 0.4 ms of it); it must be
/// captured no later than this after the read returned: the capture stamps it when a's end of the veth
/// receives it, in softirq, which an overloaded machine may defer (ksoftirqd) past the read's return.
const UPDATE_AFTER_READ: Duration = Duration::from_millis(50);
/// How late past its own deadline the scripted peer's read may return before its timing is no evidence
/// (poll wake-up on a busy machine is a few ms; 50 ms is a stall: seen 770 ms under stress-ng --cpu 4 with
/// 16 jobs, when b then sent a third probe because the peer reopened the window 1.5 s late).
const PEER_OVERRUN_MS: f64 = 50.0;

/// Zero-window probes (lab Q28).
///
/// RFC 9293 §3.8.6.1: "The sending TCP must regularly transmit at least one octet of new data (if
/// available) or retransmit to the receiving TCP even if the send window is zero" (MUST-36), "in order to
/// 'probe' the window"; the probes' interval should increase exponentially (SHLD-29 via RFC 1122
/// §4.2.2.17), and a zero window must not close the connection while probes are acknowledged (MUST-35/37).
/// Linux departs in form, not in substance: its probe carries no payload and uses SEQ = SND.UNA − 1 (an
/// old sequence number that forces the receiver to answer with its current window), instead of one octet of
/// new data; netconform labels both forms `zero-window-probe` (tshark calls Linux's form "Keep-Alive").
///
/// Cases: b's SO_RCVBUF 2048–8192 (doubled by the kernel), a writes far more than b can hold, b stalls
/// 300–1000 ms, then reads everything. Checked: b advertises window 0; while it is 0, a sends no data
/// beyond it and only probes (no payload at SND.UNA − 1, or one byte at SND.UNA); probe gaps follow
/// 200 ms · 2^i within [−10 %, +30 % + 30 ms] and grow; each probe is answered; the connection stays open
/// (no RST); the window update leaves during b's first read() (captured at most 50 ms after it returned) and a resumes; every byte written is read
/// (stream integrity is checked on every read).
pub struct ZeroWindowProbes;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZeroWindowCase {
    pub rcvbuf: i32,
    pub total: usize,
    pub stall_ms: u32,
}

const PORT: u16 = 5001;

fn program(case: &ZeroWindowCase) -> Program {
    let mut b = vec![
        Op::Socket {
            kind: SockKind::Tcp,
        },
        Op::SetOpt {
            sock: 0,
            opt: SockOpt::RcvBuf(case.rcvbuf),
        },
        Op::Bind {
            sock: 0,
            port: PORT,
        },
        Op::Listen {
            sock: 0,
            backlog: 4,
        },
        Op::Sync,
        Op::Sync,
        Op::Accept { sock: 0 },
        Op::Sleep { ms: case.stall_ms },
    ];
    // One read() first: it frees the window and sends the update (tcp_recvmsg → tcp_cleanup_rbuf) before it
    // returns, so its call and return bound the update in time; then the rest (read_exact stops at the
    // io timeout once everything is read).
    b.push(Op::Read {
        sock: 1,
        max: case.total,
    });
    b.push(Op::ReadExact {
        sock: 1,
        len: case.total,
    });
    b.push(Op::Sync);
    Program {
        a: vec![
            Op::Sync,
            Op::Socket {
                kind: SockKind::Tcp,
            },
            Op::Connect {
                sock: 0,
                port: PORT,
            },
            Op::Sync,
            Op::Write {
                sock: 0,
                len: case.total,
            },
            Op::Sync,
        ],
        b,
    }
}

impl Property for ZeroWindowProbes {
    type Case = ZeroWindowCase;
    type Observed = crate::conn::ProgramObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.zero_window.probes",
            suite: "tcp-data",
            title: "a zero window stops the sender, which probes at exponentially growing intervals until a window update; nothing is lost",
            clauses: &["RFC 9293 §3.8.6.1 (MUST-35, MUST-36, MUST-37)", "RFC 1122 §4.2.2.17"],
            questions: &["Q28"],
            needs: Needs { link: LinkKind::Veth },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> ZeroWindowCase {
        let rcvbuf = rng.gen_range(2048..=8192);
        ZeroWindowCase {
            rcvbuf,
            // Far more than the receiver holds (2 × rcvbuf) but within a's initial send buffer, so the
            // write completes at once and the data waits in a's queue.
            total: rng.gen_range(4 * rcvbuf as usize..=12_000.max(4 * rcvbuf as usize + 1)),
            stall_ms: rng.gen_range(300..=1000),
        }
    }

    fn describe(&self, c: &ZeroWindowCase) -> String {
        format!(
            "b SO_RCVBUF {}, a writes {} bytes, b stalls {} ms then reads",
            c.rcvbuf, c.total, c.stall_ms
        )
    }

    fn execute(
        &self,
        case: &ZeroWindowCase,
        env: &CaseEnv,
    ) -> Result<crate::conn::ProgramObserved, harness::HarnessError> {
        let mut cfg = ExecConfig::new(env.seed, env.family);
        cfg.io_timeout_ms = 60;
        let (outcomes, sockets) = run_program(env.lab, &program(case), cfg)?;
        Ok(crate::conn::ProgramObserved { outcomes, sockets })
    }

    fn settle(&self, _case: &ZeroWindowCase) -> Duration {
        Duration::from_millis(60)
    }

    fn check(
        &self,
        case: &ZeroWindowCase,
        observed: &crate::conn::ProgramObserved,
        trace: &Trace,
    ) -> Verdict {
        let mut findings = Findings::default();
        let written: u64 = observed
            .outcomes
            .iter()
            .filter(|o| o.host == Host::A && matches!(o.op, Op::Write { .. }))
            .map(|o| {
                if let OpResult::Value { value } = o.result {
                    value
                } else {
                    0
                }
            })
            .sum();
        let read: u64 = observed
            .outcomes
            .iter()
            .filter(|o| o.host == Host::B)
            .map(|o| {
                if let OpResult::Read { n, .. } = o.result {
                    n
                } else {
                    0
                }
            })
            .sum();
        for v in harness::model::check(&observed.outcomes, None) {
            findings.push(v);
        }
        findings.check(written > 0 && read == written, || {
            Violation::new(
                "RFC 9293 §3.8.6.1 (MUST-37: the connection survives the zero window)",
                "not every byte written was read",
            )
            .field("bytes read by b")
            .expected(written)
            .actual(read)
        });
        // The connection of interest: the one with data from A.
        let frames: Vec<usize> = trace
            .conversations
            .iter()
            .find(|c| c.kind == harness::trace::ConversationKind::Tcp)
            .map(|c| c.frames.clone())
            .unwrap_or_default();
        let tcp = |i: usize| trace.frames[i].tcp();
        let from = |i: usize| trace.frames[i].from;
        let Some(zero_at) = frames.iter().position(|&i| {
            from(i) == Some(Host::B)
                && tcp(i).is_some_and(|t| t.window == 0 && !t.flags.syn && !t.flags.rst)
        }) else {
            return Verdict::Invalid {
                reason: format!(
                    "b never advertised a zero window (SO_RCVBUF {}, {} bytes written)",
                    case.rcvbuf, written
                ),
            };
        };
        let Some(open_at) = frames[zero_at..]
            .iter()
            .position(|&i| {
                from(i) == Some(Host::B) && tcp(i).is_some_and(|t| t.window > 0 && !t.flags.rst)
            })
            .map(|k| k + zero_at)
        else {
            findings.push(
                Violation::new(
                    "RFC 9293 §3.8.6.1",
                    "no window update ever followed the zero window",
                )
                .frame(trace.frames[frames[zero_at]].number)
                .field("window")
                .expected("> 0 after b read")
                .actual("0 until the end of the capture"),
            );
            return findings.verdict();
        };
        // While the window is 0: only probes from A, each answered.
        let mut probes: Vec<(usize, u64)> = Vec::new();
        for &i in &frames[zero_at + 1..open_at] {
            let f = &trace.frames[i];
            let Some(t) = f.tcp() else { continue };
            if t.flags.rst {
                findings.push(
                    Violation::new("RFC 9293 §3.8.6.1 (MUST-37: keep the connection open while probes are answered)", "the connection was reset during the zero window")
                        .frame(f.number)
                        .field("flags")
                        .expected("probes and their ACKs")
                        .actual(t.flags.tcpdump()),
                );
            }
            if f.from == Some(Host::A) {
                if f.labels.contains(&Label::ZeroWindowProbe) {
                    probes.push((f.number, f.rel_ns));
                } else if t.payload_len > 0 && !f.labels.contains(&Label::Retransmission) {
                    findings.push(
                        Violation::new(
                            "RFC 9293 §3.8.6.1 (MUST-36 allows one octet of new data, no more)",
                            "the sender sent data into a zero window",
                        )
                        .frame(f.number)
                        .field("payload")
                        .expected(
                            "a zero-window probe (no payload at SND.UNA-1, or 1 byte at SND.UNA)",
                        )
                        .actual(format!("{} bytes", t.payload_len)),
                    );
                }
            }
        }
        let zero_ns = trace.frames[frames[zero_at]].rel_ns;
        let open_ns = trace.frames[frames[open_at]].rel_ns;
        let zero_span = Duration::from_nanos(open_ns.saturating_sub(zero_ns));
        if zero_span > PROBE_BASE + PROBE_BASE / 2 {
            findings.check(!probes.is_empty(), || {
                Violation::new(
                    "RFC 9293 §3.8.6.1 (MUST-36)",
                    "no zero-window probe while the window was zero",
                )
                .frames([
                    trace.frames[frames[zero_at]].number,
                    trace.frames[frames[open_at]].number,
                ])
                .field("probes")
                .expected(format!(
                    "at least one within {} ms of zero window",
                    zero_span.as_millis()
                ))
                .actual("none")
            });
        }
        let mut prev = zero_ns;
        let mut prev_gap = Duration::ZERO;
        for (k, (number, at)) in probes.iter().enumerate() {
            let gap = Duration::from_nanos(at.saturating_sub(prev));
            let base = PROBE_BASE * 2u32.pow(k as u32);
            let lo = base.mul_f64(PROBE_EARLY);
            let hi = base.mul_f64(PROBE_LATE) + PROBE_SLACK;
            findings.check(gap >= lo && gap <= hi, || {
                Violation::new(
                    "RFC 1122 §4.2.2.17 (exponential backoff of probes); Linux tcp_probe0_when",
                    format!("zero-window probe {} comes at the wrong time", k + 1),
                )
                .frame(*number)
                .field("gap since the previous probe (or the zero window)")
                .expected(format!(
                    "{} ms (−10 %/+30 % +30 ms: {}–{} ms)",
                    base.as_millis(),
                    lo.as_millis(),
                    hi.as_millis()
                ))
                .actual(format!("{:.1} ms", gap.as_secs_f64() * 1e3))
            });
            if k > 0 {
                findings.check(gap.as_secs_f64() >= 1.5 * prev_gap.as_secs_f64(), || {
                    Violation::new(
                        "RFC 1122 §4.2.2.17 (the interval SHOULD increase exponentially)",
                        "probe intervals do not grow",
                    )
                    .frame(*number)
                    .field("probe interval")
                    .expected(format!(">= 1.5 × {:.1} ms", prev_gap.as_secs_f64() * 1e3))
                    .actual(format!("{:.1} ms", gap.as_secs_f64() * 1e3))
                });
            }
            prev = *at;
            prev_gap = gap;
        }
        // Each probe is answered by b (its ACK with the current window).
        for (number, _) in &probes {
            let answered = frames
                .iter()
                .any(|&i| trace.frames[i].number > *number && from(i) == Some(Host::B));
            findings.check(answered, || {
                Violation::new(
                    "RFC 9293 §3.8.6.1 (MUST-35: the receiver answers probes)",
                    "a zero-window probe was not answered",
                )
                .frame(*number)
                .field("reply")
                .expected("an ACK from B")
                .actual("nothing")
            });
        }
        // The window update is sent inside b's first read() (tcp_cleanup_rbuf: the window was 0 and the read
        // freed it), so it is judged against the read's return, both on CLOCK_REALTIME: measured from the
        // call, an overloaded machine adds however long b's thread waited before it ran (140 ms seen).
        if let Some(first_read) = observed
            .outcomes
            .iter()
            .find(|o| o.host == Host::B && matches!(o.result, OpResult::Read { n, .. } if n > 0))
        {
            let update = trace.start_ns + open_ns;
            let after_return = update.saturating_sub(first_read.done_wall_ns);
            let read_took = first_read.done_wall_ns.saturating_sub(first_read.wall_ns);
            findings.check(
                update < first_read.wall_ns || after_return <= UPDATE_AFTER_READ.as_nanos() as u64,
                || {
                    Violation::new(
                        "RFC 9293 §3.8.6.2.1 (the receiver reopens the window as data is consumed)",
                        "the window update came late after b read",
                    )
                    .frame(trace.frames[frames[open_at]].number)
                    .field("time from the return of b's read() to the window update")
                    .expected(format!("<= {} ms", UPDATE_AFTER_READ.as_millis()))
                    .actual(format!(
                        "{:.1} ms (the read() itself took {:.1} ms)",
                        after_return as f64 / 1e6,
                        read_took as f64 / 1e6
                    ))
                },
            );
            if read_took > UPDATE_AFTER_READ.as_nanos() as u64 {
                findings.note(format!(
                    "b's read() took {:.1} ms (machine overloaded); the window update was judged from its return",
                    read_took as f64 / 1e6
                ));
            }
        }
        // And a resumes.
        let resumed = frames[open_at..]
            .iter()
            .any(|&i| from(i) == Some(Host::A) && tcp(i).is_some_and(|t| t.payload_len > 0));
        if written as usize > 0 && read < written {
            findings.check(resumed, || {
                Violation::new(
                    "RFC 9293 §3.8.6.1",
                    "the sender did not resume after the window update",
                )
                .frame(trace.frames[frames[open_at]].number)
                .field("data after the update")
                .expected("the rest of the stream")
                .actual("nothing")
            });
        }
        findings.note(format!("{} probe(s)", probes.len()));
        findings.verdict()
    }
}

/// A peer that closes its window (lab Q28), played by netconform through the scripted-peer link.
///
/// RFC 9293 §3.8.6.1 from the sender's side, with a precise peer instead of a kernel: after b's first data
/// the peer acknowledges it with window 0; b then has more data to send (MUST-36: it must probe the zero
/// window, not give up, and not send beyond it). Checked with the script (every packet from b matched in
/// order, nothing unexpected): b sends no data while the window is 0, only probes — Linux's form: no payload,
/// SEQ = SND.UNA − 1 — the first ~200 ms after b's write into the zero window (the write arms the probe
/// timer: tcp_push → tcp_check_probe_timer) and the second ~400 ms after the first (200 ms · 2^i within
/// −10 %/+30 % +30 ms, Linux tcp_probe0_when); when the peer reopens the window, b sends its pending data at
/// once and nothing else. Cases pause 0–150 ms between the peer's zero-window ACK and b's second write, so
/// a timer started by the ACK instead of the write would show as an early first probe.
pub struct PeerZeroWindow;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerZeroWindowCase {
    pub a_isn: u32,
    pub a_port: u16,
    pub first: usize,
    pub second: usize,
    /// Pause between the peer's zero-window ACK and b's second write: the probe timer starts at the write,
    /// so the first probe must keep its distance to the write, not to the ACK.
    #[serde(default)]
    pub write_delay_ms: u32,
}

pub struct PeerZeroWindowObserved {
    pub run: harness::script::ScriptRun,
    pub script: harness::script::Script,
}

impl std::fmt::Debug for PeerZeroWindowObserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerZeroWindowObserved")
            .field("seen", &self.run.seen)
            .finish_non_exhaustive()
    }
}

fn peer_script(c: &PeerZeroWindowCase) -> harness::script::Script {
    use harness::script::{Expect, Inject, Script, Step};
    let una = 1 + c.first as u32;
    let probe = || Expect {
        flags: Some(".".into()),
        seq: Some(una - 1),
        len: Some(0),
        within_ms: 1200,
        ..Default::default()
    };
    Script {
        b_port: PORT,
        a_port: c.a_port,
        a_isn: c.a_isn,
        quiet_ms: 50,
        steps: vec![
            Step::B(Op::Socket {
                kind: SockKind::Tcp,
            }),
            Step::B(Op::Bind {
                sock: 0,
                port: PORT,
            }),
            Step::B(Op::Listen {
                sock: 0,
                backlog: 4,
            }),
            Step::Inject(Inject {
                flags: "S".into(),
                seq: 0,
                ack: 0,
                win: 65535,
                len: 0,
                mss: Some(1460),
            }),
            Step::Expect(Expect {
                flags: Some("S.".into()),
                ack: Some(1),
                len: Some(0),
                ..Default::default()
            }),
            Step::Inject(Inject {
                flags: ".".into(),
                seq: 1,
                ack: 1,
                win: 65535,
                len: 0,
                mss: None,
            }),
            Step::B(Op::Accept { sock: 0 }),
            Step::B(Op::Write {
                sock: 1,
                len: c.first,
            }),
            Step::Expect(Expect {
                flags: Some("P.".into()),
                seq: Some(1),
                len: Some(c.first),
                ..Default::default()
            }),
            // The window closes, then b has more to send.
            Step::Inject(Inject {
                flags: ".".into(),
                seq: 1,
                ack: una,
                win: 0,
                len: 0,
                mss: None,
            }),
            Step::SleepMs(c.write_delay_ms as u64),
            Step::B(Op::Write {
                sock: 1,
                len: c.second,
            }),
            Step::Expect(probe()),
            Step::Inject(Inject {
                flags: ".".into(),
                seq: 1,
                ack: una,
                win: 0,
                len: 0,
                mss: None,
            }),
            Step::Expect(probe()),
            Step::Inject(Inject {
                flags: ".".into(),
                seq: 1,
                ack: una,
                win: 65535,
                len: 0,
                mss: None,
            }),
            Step::Expect(Expect {
                flags: Some("P.".into()),
                seq: Some(una),
                len: Some(c.second),
                ..Default::default()
            }),
            Step::Inject(Inject {
                flags: ".".into(),
                seq: 1,
                ack: una + c.second as u32,
                win: 65535,
                len: 0,
                mss: None,
            }),
        ],
    }
}

impl Property for PeerZeroWindow {
    type Case = PeerZeroWindowCase;
    type Observed = PeerZeroWindowObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.zero_window.peer",
            suite: "tcp-data",
            title: "facing a scripted peer that closes its window, the kernel sends no data, probes at 200 ms · 2^i, and resumes when it reopens",
            clauses: &["RFC 9293 §3.8.6.1 (MUST-36)", "RFC 1122 §4.2.2.17"],
            questions: &["Q28"],
            needs: Needs { link: LinkKind::Peer },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> PeerZeroWindowCase {
        PeerZeroWindowCase {
            a_isn: rng.gen(),
            a_port: rng.gen_range(1024..=u16::MAX),
            // Both below one segment on either family (MSS 1440 over IPv6), so each write is one segment.
            first: rng.gen_range(1..=1400),
            second: rng.gen_range(1..=1400),
            write_delay_ms: rng.gen_range(0..=150),
        }
    }

    fn lab_config(&self, _case: &PeerZeroWindowCase) -> harness::LabConfig {
        harness::LabConfig {
            link: harness::link::LinkSpec::Peer,
            ..Default::default()
        }
    }

    fn describe(&self, c: &PeerZeroWindowCase) -> String {
        format!(
            "b writes {} bytes, the peer closes its window, b writes {} more {} ms later",
            c.first, c.second, c.write_delay_ms
        )
    }

    fn execute(
        &self,
        case: &PeerZeroWindowCase,
        env: &CaseEnv,
    ) -> Result<PeerZeroWindowObserved, harness::HarnessError> {
        let peer = env.lab.peer().ok_or_else(|| {
            harness::HarnessError::Usage("tcp.zero_window.peer needs the peer link".into())
        })?;
        let script = peer_script(case);
        let run = harness::script::run_script(
            env.lab,
            peer,
            &script,
            ExecConfig::new(env.seed, env.family),
        )?;
        Ok(PeerZeroWindowObserved { run, script })
    }

    fn check(
        &self,
        _case: &PeerZeroWindowCase,
        observed: &PeerZeroWindowObserved,
        _trace: &Trace,
    ) -> Verdict {
        // The peer plays a: if its own thread did not run (a read came back well past its deadline), b's
        // segments were stamped and answered late and b legitimately probed again: the case is no evidence.
        if observed.run.max_overrun_ms > PEER_OVERRUN_MS {
            return Verdict::Invalid {
                reason: format!(
                    "the scripted peer's read returned {:.0} ms past its own deadline: the machine is overloaded, b's probes were read and answered late",
                    observed.run.max_overrun_ms
                ),
            };
        }
        let mut findings = Findings::default();
        for v in &observed.run.violations {
            findings.push(v.clone());
        }
        // Probe timing. The probe timer is armed inside b's second write(): the window being 0, tcp_push
        // cannot send and tcp_check_probe_timer arms ICSK_TIME_PROBE0 for tcp_probe0_base (PROBE_BASE). So the
        // first probe is timed from that write, not from b's previous segment (the peer's zero-window ACK
        // and the write's dispatch to b's thread lie between them: 317-368 ms were measured under load).
        // The write's call and return bound the arming instant: a probe is early only if it came too soon
        // after the call, late only if it came too long after the return. The second probe is timed from
        // the first (the timer is re-armed, doubled, when the first leaves); the peer reads each probe
        // after b sent it, by its own wake-up latency, so a late read of the first makes the second gap look
        // short: its early bound is therefore checked from the write's call, cumulatively (0.9 · 600 ms).
        let steps = &observed.script.steps;
        let probe_steps: Vec<usize> = steps
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, harness::script::Step::Expect(e) if e.len == Some(0) && e.within_ms == 1200))
            .map(|(k, _)| k)
            .collect();
        let at = |k: usize| {
            observed
                .run
                .seen
                .iter()
                .find(|(_, m)| *m == Some(k))
                .map(|(s, _)| s.wall_ns)
        };
        let Some(write) = observed
            .run
            .outcomes
            .iter()
            .filter(|o| matches!(o.op, Op::Write { .. }))
            .nth(1)
        else {
            return findings.verdict();
        };
        let ms = |ns: u64| format!("{:.1} ms", ns as f64 / 1e6);
        let window = |i: usize| {
            let base = PROBE_BASE * 2u32.pow(i as u32);
            (
                base.mul_f64(PROBE_EARLY),
                base.mul_f64(PROBE_LATE) + PROBE_SLACK,
            )
        };
        let probes: Vec<u64> = probe_steps.iter().map_while(|&k| at(k)).collect();
        if let Some(&first) = probes.first() {
            let (lo, hi) = window(0);
            let since_call = first.saturating_sub(write.wall_ns);
            let since_return = first.saturating_sub(write.done_wall_ns);
            findings.check(
                since_call >= lo.as_nanos() as u64 && since_return <= hi.as_nanos() as u64,
                || {
                    Violation::new(
                        "RFC 1122 §4.2.2.17; Linux tcp_probe0_when",
                        "zero-window probe 1 comes at the wrong time",
                    )
                    .field(
                        "time from b's write() into the zero window (call / return) to the probe",
                    )
                    .expected(format!(
                        "{}–{} ms (PROBE_BASE 200 ms, −10 %/+30 % +30 ms)",
                        lo.as_millis(),
                        hi.as_millis()
                    ))
                    .actual(format!(
                        "{} / {}",
                        ms(since_call),
                        ms(since_return)
                    ))
                },
            );
        }
        if let [first, second, ..] = probes[..] {
            let (lo0, _) = window(0);
            let (lo, hi) = window(1);
            let since_call = second.saturating_sub(write.wall_ns);
            let gap = second.saturating_sub(first);
            findings.check(
                since_call >= (lo0 + lo).as_nanos() as u64 && gap <= hi.as_nanos() as u64,
                || {
                    Violation::new(
                        "RFC 1122 §4.2.2.17; Linux tcp_probe0_when",
                        "zero-window probe 2 comes at the wrong time",
                    )
                    .field("gap since probe 1 (and time since b's write() call)")
                    .expected(format!(
                        "gap {}–{} ms (400 ms, −10 %/+30 % +30 ms), at least {} ms after the write",
                        lo.as_millis(),
                        hi.as_millis(),
                        (lo0 + lo).as_millis()
                    ))
                    .actual(format!(
                        "gap {} ({} after the write)",
                        ms(gap),
                        ms(since_call)
                    ))
                },
            );
        }
        findings.verdict()
    }
}
