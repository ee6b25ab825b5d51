use std::time::Duration;

use harness::frame::Host;
use harness::link::{Impairment, LinkSpec, RelaySpec};
use harness::ops::{Op, SockOpt};
use harness::property::{Cap, Subject};
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::Family;
use harness::trace::Trace;
use harness::{HarnessError, LabConfig, SysctlSetting};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::conn::ProgramObserved;
use crate::conn::{connected, outcomes_of, read_result, segments};

/// Round trips per measuring interval of `tcp.flow.window_bound`.
const INTERVAL_RTTS: u64 = 5;
/// b's read deadline for the whole transfer: five times the ~0.6 s it takes at window / RTT.
const WINDOW_BOUND_IO_TIMEOUT_MS: u32 = 3000;

/// Goodput bounded by window / RTT (lab Q23–Q25).
///
/// RFC 7323 §1.1: "the maximum throughput on a TCP connection is bounded by the window size divided by the
/// round-trip time" — at most one window of data can be unacknowledged, so in any interval of length T at
/// most W · (T / RTT + 1) bytes are acknowledged. A buffer of C · RTT bytes (the bandwidth-delay product) is
/// what fills a link of rate C.
///
/// Cases: b's SO_RCVBUF 16–128 KB (fixed, so no autotuning), a relay with 5–20 ms one-way delay, reno on a
/// (bbr would pace below the window); a writes for about 0.6 s worth of data at the window's rate; b reads as
/// it comes.
///
/// Measured from the capture at the relay: W = the largest window b advertised (scaled), R = the round
/// trip (2 × the relay delay; the hosts add microseconds), and from b's first ACK 5 round trips in (past
/// slow start), the bytes b acknowledged in every interval of 5 round trips that starts at one of its ACKs.
/// Checked: no interval holds more than W · (5 + 1) · 1.1 (one window per round trip plus the one in flight
/// at the start, 10 % for timer granularity); the best interval reaches at least half of W / R (the window
/// is what limits: with reno past slow start and a reader that keeps up, Linux reaches 60–97 % here; the
/// best interval, not the average, so a scheduling stall of a loaded machine elsewhere in the transfer
/// does not count against the kernel). Each case's W, R, bound, best and average goodput are notes.
pub struct WindowBound;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowBoundCase {
    pub rcvbuf: i32,
    pub delay_ms: u32,
}

impl WindowBoundCase {
    fn rtt(&self) -> Duration {
        Duration::from_millis(2 * self.delay_ms as u64)
    }
    /// Bytes a writes: about 0.6 s at the window's rate (the window is about SO_RCVBUF on Linux).
    /// Bytes a sends: about 0.6 s of transfer at window / RTT.
    fn bytes(&self) -> usize {
        let rate = self.rcvbuf as f64 / self.rtt().as_secs_f64();
        ((rate * 0.6) as usize).clamp(200_000, 8 << 20)
    }
}

impl Property for WindowBound {
    type Case = WindowBoundCase;
    type Observed = ProgramObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.flow.window_bound",
            suite: "tcp-data",
            title: "goodput stays under window / RTT and reaches at least half of it",
            clauses: &["RFC 7323 §1.1", "RFC 9293 §3.8.6"],
            questions: &["Q23", "Q24", "Q25"],
            subject: Subject::B,
            needs: Needs {
                links: &[LinkKind::Relay],
                kernel: &[],
                caps: &[Cap::Tcp, Cap::SetOptRcvBuf],
                ethernet: false,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> WindowBoundCase {
        WindowBoundCase {
            rcvbuf: [16_384, 32_768, 65_536, 131_072][rng.gen_range(0..4)],
            delay_ms: [5, 10, 20][rng.gen_range(0..3)],
        }
    }

    fn lab_config(&self, case: &WindowBoundCase) -> LabConfig {
        let d = Impairment {
            delay_us: case.delay_ms as u64 * 1000,
            ..Impairment::default()
        };
        LabConfig {
            link: LinkSpec::Relay(RelaySpec {
                a_to_b: d.clone(),
                b_to_a: d,
                seed: 1,
            }),
            sysctls: vec![SysctlSetting {
                host: Host::A,
                key: "net.ipv4.tcp_congestion_control".into(),
                value: "reno".into(),
            }],
            ..LabConfig::default()
        }
    }

    fn describe(&self, c: &WindowBoundCase) -> String {
        format!(
            "b SO_RCVBUF {}, RTT {} ms, a sends {} bytes",
            c.rcvbuf,
            c.rtt().as_millis(),
            c.bytes()
        )
    }

    fn execute(
        &self,
        case: &WindowBoundCase,
        env: &CaseEnv,
    ) -> Result<ProgramObserved, HarnessError> {
        let mut p = connected(&[], &[SockOpt::RcvBuf(case.rcvbuf)]);
        p.a.push(Op::Write {
            sock: 0,
            len: case.bytes(),
        });
        p.b.push(Op::ReadExact {
            sock: 1,
            len: case.bytes(),
        });
        p.a.push(Op::Sync);
        p.b.push(Op::Sync);
        ProgramObserved::run(env, &p, WINDOW_BOUND_IO_TIMEOUT_MS)
    }

    fn check(&self, case: &WindowBoundCase, observed: &ProgramObserved, trace: &Trace) -> Verdict {
        let mut findings = Findings::default();
        let segs = segments(trace);
        let rtt = case.rtt();
        // b's advertised windows after the handshake, scaled.
        let window = segs
            .iter()
            .filter(|s| s.from == Host::B && !s.flags.syn)
            .filter_map(|s| trace.scaled_window(s.index))
            .max()
            .unwrap_or(0) as f64;
        let acks: Vec<(u64, u32)> = segs
            .iter()
            .filter(|s| s.from == Host::B && s.flags.ack && !s.flags.syn)
            .map(|s| (s.rel_ns, s.ack))
            .collect();
        let Some(&(t_first, _)) = acks.first() else {
            findings.push(
                Violation::new("RFC 9293 §3.8.6", "b acknowledged nothing")
                    .field("ACKs from B")
                    .expected("a transfer")
                    .actual("none"),
            );
            return findings.verdict();
        };
        // A transfer still running at b's read deadline (5× the ~0.6 s it takes at window / RTT) says the
        // machine — our relay's forwarder included — was too loaded to time this case, not that the kernel
        // lost bytes: that would show as data acknowledged but never read.
        let acked = acks.iter().map(|&(_, a)| a).max().unwrap_or(0) as u64;
        let read_short = outcomes_of(&observed.outcomes, Host::B, |op| {
            matches!(op, Op::ReadExact { .. })
        })
        .first()
        .is_some_and(|r| {
            read_result(&r.result).is_some_and(|(n, _, m)| n < case.bytes() as u64 && m.is_none())
        });
        if read_short && acked < case.bytes() as u64 + 1 {
            return Verdict::Invalid {
                reason: format!(
                    "the transfer was unfinished at b's {WINDOW_BOUND_IO_TIMEOUT_MS} ms read deadline \
                     (b had acknowledged {acked} of {} bytes, ~0.6 s of work at window / RTT): the machine \
                     was too loaded to time this case",
                    case.bytes()
                ),
            };
        }
        // Past slow start: from the first ACK 5 round trips in.
        let warm = t_first + 5 * rtt.as_nanos() as u64;
        let steady: Vec<(u64, u32)> = acks.iter().copied().filter(|(t, _)| *t >= warm).collect();
        let bound = window / rtt.as_secs_f64();
        // Every interval of INTERVAL_RTTS round trips starting at an ACK: acknowledged bytes within it.
        let span = rtt.as_nanos() as u64 * INTERVAL_RTTS;
        let mut best = 0f64;
        let mut measured = 0;
        for (i, &(t0, a0)) in steady.iter().enumerate() {
            let Some(&(_, a1)) = steady[i..]
                .iter()
                .take_while(|(t, _)| *t <= t0 + span)
                .last()
            else {
                continue;
            };
            if steady.last().is_none_or(|(t, _)| *t < t0 + span) {
                break;
            }
            measured += 1;
            let bytes = a1.wrapping_sub(a0) as f64;
            best = best.max(bytes);
            let limit = window * (INTERVAL_RTTS as f64 + 1.0) * 1.1;
            if bytes > limit {
                findings.push(
                    Violation::new(
                        "RFC 7323 §1.1 (throughput ≤ window / RTT)",
                        "more was acknowledged in an interval than the advertised window allows",
                    )
                    .field(format!("bytes acknowledged in {INTERVAL_RTTS} round trips"))
                    .expected(format!(
                        "≤ {limit:.0} (window {window:.0} B × ({INTERVAL_RTTS} + 1) round trips, +10 %)"
                    ))
                    .actual(format!("{bytes:.0}")),
                );
                break;
            }
        }
        if measured == 0 {
            findings.note("steady state shorter than the measuring interval: not measured");
            return findings.verdict();
        }
        let best_rate = best / (span as f64 / 1e9);
        findings.check(best_rate >= 0.5 * bound, || {
            Violation::new(
                "RFC 7323 §1.1 (the window is what limits a long-delay path)",
                "goodput never reached half of window / RTT",
            )
            .field(format!("best goodput over {INTERVAL_RTTS} round trips"))
            .expected(format!(
                "≥ {:.0} KB/s (half of {:.0} KB/s)",
                bound / 2000.0,
                bound / 1000.0
            ))
            .actual(format!("{:.0} KB/s", best_rate / 1000.0))
        });
        let (t_last, a_last) = *steady.last().expect("measured");
        let (t_start, a_start) = steady[0];
        let average = a_last.wrapping_sub(a_start) as f64 / ((t_last - t_start) as f64 / 1e9);
        findings.note(format!(
            "SO_RCVBUF {} B, window {:.0} B, RTT {} ms: bound {:.0} KB/s, best {:.0} KB/s ({:.0} %), average {:.0} KB/s",
            case.rcvbuf,
            window,
            rtt.as_millis(),
            bound / 1000.0,
            best_rate / 1000.0,
            100.0 * best_rate / bound,
            average / 1000.0
        ));
        if let Some(r) = outcomes_of(&observed.outcomes, Host::B, |op| {
            matches!(op, Op::ReadExact { .. })
        })
        .first()
        {
            findings.check(
                read_result(&r.result)
                    .is_some_and(|(n, _, m)| n == case.bytes() as u64 && m.is_none()),
                || {
                    Violation::new("RFC 9293 §3.4", "b did not read every byte")
                        .field("b read_exact()")
                        .expected(case.bytes())
                        .actual(r.result.render())
                },
            );
        }
        findings.verdict()
    }
}
