use std::time::Duration;

use harness::exec::OpResult;
use harness::frame::Host;
use harness::ops::{Op, Program, SockOpt};
use harness::property::{Cap, KernelNeed, Subject};
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::Family;
use harness::trace::{Label, Trace};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::zero_window_common::{PORT, PROBE_BASE, PROBE_EARLY, PROBE_LATE, PROBE_SLACK};
use crate::conn::connected_on;

/// The window update leaves inside the reader's read() (docs/kernel-facts.md: within 0.4 ms of it); it must be
/// captured no later than this after the read returned: the capture stamps it when a's end of the veth
/// receives it, in softirq, which an overloaded machine may defer (ksoftirqd) past the read's return.
const UPDATE_AFTER_READ: Duration = Duration::from_millis(50);

/// Zero-window probes (lab Q28).
///
/// RFC 9293 §3.8.6.1: "The sending TCP must regularly transmit at least one octet of new data (if
/// available) or retransmit to the receiving TCP even if the send window is zero" (MUST-36), "in order to
/// 'probe' the window"; the probes' interval should increase exponentially (SHLD-29 via RFC 1122
/// §4.2.2.17), and a zero window must not close the connection while probes are acknowledged (MUST-37).
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

fn program(case: &ZeroWindowCase) -> Program {
    let mut p = connected_on(PORT, &[], &[SockOpt::RcvBuf(case.rcvbuf)]);
    p.b.push(Op::Sleep { ms: case.stall_ms });
    // One read() first: it frees the window and sends the update (tcp_recvmsg → tcp_cleanup_rbuf) before it
    // returns, so its call and return bound the update in time; then the rest (read_exact stops at the
    // io timeout once everything is read).
    p.b.extend([
        Op::Read {
            sock: 1,
            max: case.total,
        },
        Op::ReadExact {
            sock: 1,
            len: case.total,
        },
        Op::Sync,
    ]);
    p.a.extend([
        Op::Write {
            sock: 0,
            len: case.total,
        },
        Op::Sync,
    ]);
    p
}

impl Property for ZeroWindowProbes {
    type Case = ZeroWindowCase;
    type Observed = crate::conn::ProgramObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.zero_window.probes",
            suite: "tcp-data",
            title: "a zero window stops the sender, which probes at exponentially growing intervals until a window update; nothing is lost",
            clauses: &["RFC 9293 §3.8.6.1 (MUST-36, MUST-37, SHLD-29, SHLD-30)", "RFC 1122 §4.2.2.17"],
            questions: &["Q28"],
            subject: Subject::A,
            needs: Needs {
                links: &[LinkKind::Veth],
                kernel: &[KernelNeed::TcpInfo, KernelNeed::LinuxTimers],
                caps: &[Cap::Tcp, Cap::SetOptRcvBuf],
                ethernet: false,
            },
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
        crate::conn::ProgramObserved::run(env, &program(case), 60)
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
                    "RFC 9293 §3.8.6.1 (a receiver with a zero window still acknowledges each segment)",
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
