use std::time::Duration;

use harness::exec::OpResult;
use harness::frame::Host;
use harness::ops::{Op, Program, SockOpt};
use harness::property::{Cap, Subject, TimingBounds};
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::Family;
use harness::trace::{ConversationKind, Label, Trace};
use harness::HarnessError;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::zero_window_common::{PORT, PROBE_BASE, PROBE_EARLY, PROBE_LATE, PROBE_SLACK};
use crate::conn::{connected_on, ProgramObserved};

/// a's read deadline once it reads (idle time between two reads): b resumes within a round trip of a's window
/// update, a user-space stack on a loaded machine within a few hundred ms.
const READ_IDLE_TIMEOUT_MS: u32 = 1000;

/// When b must probe, and how its probes may be spaced: b's n-th probe (from 0) comes `base · 2^n` after the
/// previous one (the first: after the zero window), within [`early`, `late`] times that plus `slack`, and each
/// gap is at least [`GROWTH`] times the one before.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeSchedule {
    /// Where the numbers come from, named in violations.
    pub source: &'static str,
    pub base: Duration,
    pub early: f64,
    pub late: f64,
    pub slack: Duration,
}

impl ProbeSchedule {
    /// b is the lab's kernel: Linux's probe timer, max(RTO, TCP_RTO_MIN) = 200 ms on the lab's sub-ms link,
    /// doubling (tcp_probe0_when), with the tolerance of `tcp.zero_window.probes` (−10 %, +30 % + 30 ms).
    pub const LINUX: ProbeSchedule = ProbeSchedule {
        source: "Linux tcp_probe0_when: 200 ms · 2^n, −10 %/+30 % +30 ms",
        base: PROBE_BASE,
        early: PROBE_EARLY,
        late: PROBE_LATE,
        slack: PROBE_SLACK,
    };
    /// Any other stack: RFC 9293 SHLD-29 sends the first probe once the zero window has lasted one
    /// retransmission timeout, and SHLD-30 doubles the interval (RFC 1122 §4.2.2.17 "increase exponentially";
    /// RFC 6298 (5.5) doubles the RTO it backs off). The RTO on the lab's sub-ms link is RFC 6298's 1 s
    /// (initial value (2.1), and the floor (2.4) every computed RTO is rounded up to). Tolerance: the probe may
    /// come up to twice that late (a stack's timer granularity, an RTO backed off once, a user-space stack
    /// on a loaded machine), and any earlier (a stack with a smaller RTO departs from a SHOULD of RFC 6298, not
    /// from zero-window probing).
    pub const RFC: ProbeSchedule = ProbeSchedule {
        source: "RFC 9293 SHLD-29/30 with RFC 6298's 1 s RTO: 1 s · 2^n, up to twice that",
        base: TimingBounds::RFC.rto_min,
        early: 0.0,
        late: 2.0,
        slack: Duration::ZERO,
    };

    /// The schedule b is held to (`env.timing`: Linux's constants for the kernel, the RFCs' otherwise).
    pub fn of(timing: TimingBounds) -> ProbeSchedule {
        if timing == TimingBounds::LINUX {
            ProbeSchedule::LINUX
        } else {
            ProbeSchedule::RFC
        }
    }

    /// The accepted range of the gap before probe `n` (0: from the zero window to the first probe).
    pub fn window(&self, n: u32) -> (Duration, Duration) {
        let expected = self.base * 2u32.pow(n.min(16));
        (
            expected.mul_f64(self.early),
            expected.mul_f64(self.late) + self.slack,
        )
    }

    /// A zero window that lasts longer than this must have been probed.
    pub fn first_probe_within(&self) -> Duration {
        self.window(0).1
    }
}

/// Each probe gap is at least this many times the previous one: the interval doubles (SHLD-30), less 25 % for
/// timer slack.
const GROWTH: f64 = 1.5;

/// b's zero-window probing as the sender (lab Q28): b is the kernel or a driven SUT; a is the receiver.
///
/// RFC 9293 §3.8.6.1: "The sending TCP peer must regularly transmit at least one octet of new data (if
/// available), or retransmit to the receiving TCP peer even if the send window is zero, in order to 'probe'
/// the window"; "Probing of zero (offered) windows MUST be supported" (MUST-36); while probes are
/// acknowledged the sender "MUST allow the connection to stay open" (MUST-37); the first probe SHOULD go
/// when the zero window "has existed for the retransmission timeout period" (SHLD-29) and the interval
/// SHOULD "increase exponentially" (SHLD-30, from RFC 1122 §4.2.2.17). Both probe forms are accepted (netconform
/// labels both `zero-window-probe`): one octet of new data at SND.UNA (the RFC's), or no payload at
/// SND.UNA − 1 (Linux's).
///
/// Cases: b listens and accepts; a (SO_RCVBUF 2048–8192, set before connect) connects; b writes 4–12 times
/// what a can hold, a stalls then reads everything. a stalls for [`ProbeSchedule::first_probe_within`] plus one
/// base interval plus 300–1000 ms, so the zero window outlasts the first-probe bound: 790–1490 ms when b is the
/// kernel (Linux's schedule: 1–3 probes), 3.3–4.0 s for any other stack (the RFC's: 1–2 probes at 1 s, 2 s). Checked from a's first zero window to the first
/// window that reopens it: b sends no data into it other than probes (more than one octet, or data past
/// SND.UNA, is beyond the window) and no RST; it probes ([`ProbeSchedule`]: the first probe within the bound
/// of the zero window, gap n within base · 2^n), each gap at least 1.5 × the one before; and every byte b
/// wrote reaches a intact once the window opens. Data beyond a's window outside the zero window is the
/// `tcp.window.respected` invariant's, checked on every case. A zero window shorter than the first-probe bound
/// (a machine that delayed the stall's start) makes the case invalid, never passed.
pub struct ZeroWindowSender;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZeroWindowSenderCase {
    /// a's SO_RCVBUF (the kernel doubles it).
    pub a_rcvbuf: i32,
    /// Bytes b writes.
    pub total: usize,
    /// How much longer a stalls than the first-probe bound and one probe interval.
    pub extra_stall_ms: u32,
}

impl ZeroWindowSenderCase {
    /// The first-probe bound, one base interval more (the zero window starts some time into the stall: a
    /// sender may first hold a sub-MSS segment for a small window, Linux for one probe interval), and the
    /// case's extra.
    fn stall(&self, schedule: &ProbeSchedule) -> Duration {
        schedule.first_probe_within()
            + schedule.base
            + Duration::from_millis(self.extra_stall_ms as u64)
    }
}

/// What a case observed: the program's outcomes and the probe schedule b was held to.
#[derive(Debug)]
pub struct ZeroWindowSenderObserved {
    pub program: ProgramObserved,
    pub schedule: ProbeSchedule,
}

fn program(case: &ZeroWindowSenderCase, stall: Duration) -> Program {
    let mut p = connected_on(PORT, &[SockOpt::RcvBuf(case.a_rcvbuf)], &[]);
    p.b.extend([
        Op::Write {
            sock: 1,
            len: case.total,
        },
        Op::Sync,
    ]);
    p.a.extend([
        Op::Sleep {
            ms: stall.as_millis() as u32,
        },
        Op::ReadExact {
            sock: 0,
            len: case.total,
        },
        Op::Sync,
    ]);
    p
}

impl Property for ZeroWindowSender {
    type Case = ZeroWindowSenderCase;
    type Observed = ZeroWindowSenderObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.zero_window.sender",
            suite: "tcp-data",
            title: "b, sending into a's zero window, sends only probes, the first within one RTO (Linux: 200 ms; RFC: 1 s, ×2 tolerance), at growing intervals, and resumes intact when it opens",
            clauses: &[
                "RFC 9293 §3.8.6.1 (MUST-36, MUST-37, SHLD-29, SHLD-30)",
                "RFC 1122 §4.2.2.17",
            ],
            questions: &["Q28"],
            subject: Subject::B,
            needs: Needs {
                links: &[LinkKind::Veth],
                kernel: &[],
                caps: &[Cap::Tcp],
                ethernet: false,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> ZeroWindowSenderCase {
        let a_rcvbuf = rng.gen_range(2048..=8192);
        let least = 4 * a_rcvbuf as usize;
        ZeroWindowSenderCase {
            a_rcvbuf,
            // Far more than a holds (2 × SO_RCVBUF), within the send buffer of the kernel (and of a SUT's
            // 64 KiB), so b's write completes at once and the rest waits in b's queue.
            total: rng.gen_range(least..=12_000.max(least + 1)),
            extra_stall_ms: rng.gen_range(300..=1000),
        }
    }

    fn describe(&self, c: &ZeroWindowSenderCase) -> String {
        format!(
            "a SO_RCVBUF {}, b writes {} bytes, a stalls {} ms past the first-probe bound and one probe interval, then reads",
            c.a_rcvbuf, c.total, c.extra_stall_ms
        )
    }

    fn execute(
        &self,
        case: &ZeroWindowSenderCase,
        env: &CaseEnv,
    ) -> Result<ZeroWindowSenderObserved, HarnessError> {
        let schedule = ProbeSchedule::of(env.timing);
        let program = ProgramObserved::run(
            env,
            &program(case, case.stall(&schedule)),
            READ_IDLE_TIMEOUT_MS,
        )?;
        Ok(ZeroWindowSenderObserved { program, schedule })
    }

    fn settle(&self, _case: &ZeroWindowSenderCase) -> Duration {
        Duration::from_millis(60)
    }

    fn check(
        &self,
        case: &ZeroWindowSenderCase,
        observed: &ZeroWindowSenderObserved,
        trace: &Trace,
    ) -> Verdict {
        let schedule = observed.schedule;
        let outcomes = &observed.program.outcomes;
        let mut findings = Findings::default();
        let written: u64 = outcomes
            .iter()
            .filter(|o| o.host == Host::B && matches!(o.op, Op::Write { .. }))
            .map(|o| match o.result {
                OpResult::Value { value } => value,
                _ => 0,
            })
            .sum();
        let (read, mismatch_at) = outcomes
            .iter()
            .filter(|o| o.host == Host::A && matches!(o.op, Op::ReadExact { .. }))
            .find_map(|o| match o.result {
                OpResult::Read { n, mismatch_at, .. } => Some((n, mismatch_at)),
                _ => None,
            })
            .unwrap_or((0, None));
        if written == 0 {
            return Verdict::Invalid {
                reason: "b's write queued nothing".into(),
            };
        }
        let frames: Vec<usize> = trace
            .conversations
            .iter()
            .find(|c| {
                c.kind == ConversationKind::Tcp && (c.server.port == PORT || c.client.port == PORT)
            })
            .map(|c| c.frames.clone())
            .unwrap_or_default();
        let tcp = |i: usize| trace.frames[i].tcp();
        let from = |i: usize| trace.frames[i].from;
        let Some(zero_at) = frames.iter().position(|&i| {
            from(i) == Some(Host::A)
                && tcp(i).is_some_and(|t| t.window == 0 && !t.flags.syn && !t.flags.rst)
        }) else {
            return Verdict::Invalid {
                reason: format!(
                    "a never advertised a zero window (SO_RCVBUF {}, b wrote {written} bytes)",
                    case.a_rcvbuf
                ),
            };
        };
        let zero = &trace.frames[frames[zero_at]];
        let open = frames[zero_at..]
            .iter()
            .map(|&i| &trace.frames[i])
            .find(|f| {
                f.from == Some(Host::A) && f.tcp().is_some_and(|t| t.window > 0 && !t.flags.rst)
            });
        let end_ns = open
            .or(trace.frames.last())
            .map_or(zero.rel_ns, |f| f.rel_ns);
        let zero_span = Duration::from_nanos(end_ns.saturating_sub(zero.rel_ns));
        let must_probe_after = schedule.first_probe_within();
        if zero_span <= must_probe_after {
            return Verdict::Invalid {
                reason: format!(
                    "a's window was zero for only {} ms, not longer than the first-probe bound ({} ms; a stalled {} ms): \
                     the machine was too loaded to time this case",
                    zero_span.as_millis(),
                    must_probe_after.as_millis(),
                    case.stall(&schedule).as_millis()
                ),
            };
        }
        // While the window is zero: b sends probes, nothing else with data, and no RST.
        let mut probes: Vec<(usize, u64)> = Vec::new();
        for &i in &frames[zero_at + 1..] {
            let f = &trace.frames[i];
            if f.rel_ns >= end_ns {
                break;
            }
            let Some(t) = f.tcp() else { continue };
            if f.from != Some(Host::B) {
                continue;
            }
            if t.flags.rst {
                findings.push(
                    Violation::new(
                        "RFC 9293 §3.8.6.1 (MUST-37: the connection stays open while probes are acknowledged)",
                        "b reset the connection during a's zero window",
                    )
                    .frames([zero.number, f.number])
                    .field("flags")
                    .expected("probes, the connection open")
                    .actual(t.flags.tcpdump()),
                );
            } else if f.labels.contains(&Label::ZeroWindowProbe) {
                probes.push((f.number, f.rel_ns));
            } else if t.payload_len > 0 && !f.labels.contains(&Label::Retransmission) {
                findings.push(
                    Violation::new(
                        "RFC 9293 §3.8.6.1 (a probe is one octet of new data; nothing else goes into a zero window)",
                        "b sent data into a's zero window",
                    )
                    .frames([zero.number, f.number])
                    .field("payload")
                    .expected("a zero-window probe (1 byte at SND.UNA, or no payload at SND.UNA-1)")
                    .actual(format!("{} bytes", t.payload_len)),
                );
            }
        }
        findings.check(!probes.is_empty(), || {
            Violation::new(
                "RFC 9293 §3.8.6.1 (MUST-36: probing of zero windows MUST be supported)",
                "b never probed a's zero window",
            )
            .frame(zero.number)
            .field("zero-window probe")
            .expected(format!(
                "a probe within {} ms of the zero window ({})",
                must_probe_after.as_millis(),
                schedule.source
            ))
            .actual(format!(
                "none while the window stayed zero for {} ms",
                zero_span.as_millis()
            ))
        });
        let mut prev = zero.rel_ns;
        let mut prev_gap: Option<Duration> = None;
        for (n, &(number, at)) in probes.iter().enumerate() {
            let gap = Duration::from_nanos(at.saturating_sub(prev));
            let (lo, hi) = schedule.window(n as u32);
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            findings.check(gap >= lo && gap <= hi, || {
                let clause = if n == 0 {
                    "RFC 9293 §3.8.6.1 (SHLD-29: the first probe after one RTO)"
                } else {
                    "RFC 9293 §3.8.6.1 (SHLD-30: probe intervals increase exponentially); RFC 1122 §4.2.2.17"
                };
                Violation::new(clause, format!("b's zero-window probe {} comes at the wrong time", n + 1))
                    .frames([zero.number, number])
                    .field(if n == 0 {
                        "time from the zero window to the first probe"
                    } else {
                        "gap since the previous probe"
                    })
                    .expected(format!("{:.0}–{:.0} ms ({})", ms(lo), ms(hi), schedule.source))
                    .actual(format!("{:.1} ms", ms(gap)))
            });
            if let Some(before) = prev_gap {
                findings.check(gap.as_secs_f64() >= GROWTH * before.as_secs_f64(), || {
                    Violation::new(
                        "RFC 9293 §3.8.6.1 (SHLD-30: probe intervals increase exponentially); RFC 1122 §4.2.2.17",
                        "b's probe intervals do not grow",
                    )
                    .frames([zero.number, number])
                    .field("gap since the previous probe")
                    .expected(format!("≥ {GROWTH} × {:.1} ms", ms(before)))
                    .actual(format!("{:.1} ms", ms(gap)))
                });
            }
            prev = at;
            prev_gap = Some(gap);
        }
        findings.check(read == written && mismatch_at.is_none(), || {
            let v = Violation::new(
                "RFC 9293 §3.8.6.1 (MUST-37: the connection survives the zero window)",
                "a did not receive b's stream intact after its window opened",
            );
            let v = match open {
                Some(f) => v.frame(f.number),
                None => v.frame(zero.number),
            };
            match mismatch_at {
                Some(at) => v
                    .field("bytes a read")
                    .expected("b's stream")
                    .actual(format!("different bytes from offset {at}")),
                None => v.field("bytes a read").expected(written).actual(read),
            }
        });
        findings.note(format!(
            "zero window {} ms, {} probe(s) ({})",
            zero_span.as_millis(),
            probes.len(),
            schedule.source
        ));
        findings.verdict()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux's schedule is `tcp.zero_window.probes`'s; the RFC's starts at RFC 6298's 1 s and allows twice it.
    #[test]
    fn the_schedules_follow_their_sources() {
        assert_eq!(ProbeSchedule::of(TimingBounds::LINUX), ProbeSchedule::LINUX);
        assert_eq!(ProbeSchedule::of(TimingBounds::RFC), ProbeSchedule::RFC);
        assert_eq!(
            ProbeSchedule::LINUX.window(1),
            (Duration::from_millis(360), Duration::from_millis(550))
        );
        assert_eq!(
            ProbeSchedule::RFC.first_probe_within(),
            Duration::from_secs(2)
        );
        assert_eq!(
            ProbeSchedule::RFC.window(2),
            (Duration::ZERO, Duration::from_secs(8))
        );
    }
}
