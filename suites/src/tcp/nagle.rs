use std::time::Duration;

use harness::frame::Host;
use harness::lab::LabConfig;
use harness::ops::{Op, Program, SockOpt};
use harness::property::{Cap, KernelNeed, Subject};
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::Family;
use harness::trace::{ConversationKind, Trace};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::conn::{connected_on, ProgramObserved};

/// How a sends small writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendMode {
    /// Nagle on (the default).
    Nagle,
    /// TCP_NODELAY.
    NoDelay,
    /// TCP_CORK on before the writes, off `hold_ms` after the last one.
    Cork { hold_ms: u32 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NagleCase {
    pub mode: SendMode,
    /// Sizes of a's writes (all below the MSS).
    pub writes: Vec<usize>,
    /// Pause between writes (0: back to back).
    pub gap_ms: u32,
    /// net.ipv4.tcp_autocorking on a.
    pub autocorking: bool,
}

const NAGLE_PORT: u16 = 5003;
/// Linux's cork ceiling (tcp(7): "a 200 millisecond ceiling on the time for which output is corked by
/// TCP_CORK"); a corked partial segment may leave this long after the first corked write, −10 % for timer
/// rounding.
const CORK_CEILING: Duration = Duration::from_millis(180);
/// Executor clock vs capture clock (same start, µs apart) plus the time a write takes to reach the capture
/// on a loaded machine.
const CLOCK_SLACK: Duration = Duration::from_millis(5);

fn nagle_program(case: &NagleCase) -> Program {
    let total: usize = case.writes.iter().sum();
    let a_opts: &[SockOpt] = match case.mode {
        SendMode::Nagle => &[],
        SendMode::NoDelay => &[SockOpt::NoDelay(true)],
        SendMode::Cork { .. } => &[SockOpt::Cork(true)],
    };
    let mut p = connected_on(NAGLE_PORT, a_opts, &[]);
    for (k, &len) in case.writes.iter().enumerate() {
        if k > 0 && case.gap_ms > 0 {
            p.a.push(Op::Sleep { ms: case.gap_ms });
        }
        p.a.push(Op::Write { sock: 0, len });
    }
    if let SendMode::Cork { hold_ms } = case.mode {
        p.a.push(Op::Sleep { ms: hold_ms });
        p.a.push(Op::SetOpt {
            sock: 0,
            opt: SockOpt::Cork(false),
        });
    }
    p.a.extend([Op::Sync, Op::Close { sock: 0 }, Op::Sync]);
    p.b.extend([
        Op::ReadExact {
            sock: 1,
            len: total,
        },
        Op::Sync,
        Op::Close { sock: 1 },
        Op::Sync,
    ]);
    p
}

/// Nagle's algorithm, TCP_NODELAY and TCP_CORK on the wire (lab Q22).
///
/// RFC 9293 §3.7.4: a TCP SHOULD implement the Nagle algorithm (SHLD-7) — "if there is unacknowledged data,
/// then the sending TCP buffers all user data (regardless of the PSH bit) until the outstanding data has
/// been acknowledged or until the TCP can send a full-sized segment" — and MUST give the application a way
/// to disable it per connection (MUST-17: TCP_NODELAY). Linux implements the Minshall variant
/// (tcp_output.c `tcp_nagle_check` / `tcp_minshall_check`): a partial segment is held only while a
/// previously sent *partial* segment is unacknowledged — exactly the RFC 896 property checkable on the wire.
///
/// Cases: a makes 4–24 writes of 1–600 bytes, back to back or 1–4 ms apart, with Nagle (default),
/// TCP_NODELAY, or TCP_CORK released 20–400 ms after the last write; `net.ipv4.tcp_autocorking` on a is
/// generated (on/off): autocorking (Linux ≥ 3.14) holds small writes while earlier ones are still in the
/// host's queues, which can merge NODELAY writes, so the per-write claim below is made only with
/// autocorking off or writes spaced ≥ 1 ms (by then the earlier skb has left; the veth RTT is ~50 µs).
///
/// Checked (MSS = a's TCP_INFO snd_mss; retransmissions ignored):
/// - Nagle: between a sub-MSS data segment from a and the first ACK from b covering it, a sends no other
///   sub-MSS data segment;
/// - TCP_NODELAY with writes ≥ 1 ms apart: one segment per write, of that write's length, in order;
/// - TCP_CORK: no sub-MSS segment leaves before the uncork (−5 ms clock slack) unless Linux's 200 ms cork
///   ceiling (tcp(7)) passed since the first corked write (−10 %); full segments may leave at any time;
/// - the segment carrying the last byte written has PSH (Linux marks the last skb of every sendmsg).
pub struct Nagle;

impl Property for Nagle {
    type Case = NagleCase;
    type Observed = ProgramObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.nagle",
            suite: "tcp-data",
            title: "with Nagle at most one sub-MSS segment is unacknowledged; TCP_NODELAY sends each write at once; TCP_CORK holds partial segments; PSH ends a write",
            clauses: &["RFC 9293 §3.7.4 (SHLD-7, MUST-17)", "RFC 896"],
            questions: &["Q22"],
            subject: Subject::A,
            needs: Needs {
                links: &[LinkKind::Veth],
                kernel: &[KernelNeed::TcpInfo, KernelNeed::LinuxTimers],
                caps: &[Cap::Tcp],
                ethernet: false,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> NagleCase {
        let n = rng.gen_range(4..=24);
        NagleCase {
            mode: match rng.gen_range(0..3) {
                0 => SendMode::Nagle,
                1 => SendMode::NoDelay,
                _ => SendMode::Cork {
                    hold_ms: rng.gen_range(20..=400),
                },
            },
            writes: (0..n).map(|_| rng.gen_range(1..=600)).collect(),
            gap_ms: if rng.gen_bool(0.5) {
                0
            } else {
                rng.gen_range(1..=4)
            },
            autocorking: rng.gen_bool(0.5),
        }
    }

    fn lab_config(&self, case: &NagleCase) -> LabConfig {
        let mut cfg = LabConfig::default();
        cfg.sysctls.push(harness::lab::SysctlSetting {
            host: Host::A,
            key: "net.ipv4.tcp_autocorking".into(),
            value: if case.autocorking { "1" } else { "0" }.into(),
        });
        cfg
    }

    fn describe(&self, c: &NagleCase) -> String {
        format!(
            "a ({}, autocorking {}) writes {} pieces ({} bytes) {}",
            match c.mode {
                SendMode::Nagle => "Nagle".to_string(),
                SendMode::NoDelay => "TCP_NODELAY".to_string(),
                SendMode::Cork { hold_ms } => format!("TCP_CORK released {hold_ms} ms later"),
            },
            if c.autocorking { "on" } else { "off" },
            c.writes.len(),
            c.writes.iter().sum::<usize>(),
            if c.gap_ms == 0 {
                "back to back".to_string()
            } else {
                format!("{} ms apart", c.gap_ms)
            }
        )
    }

    fn execute(
        &self,
        case: &NagleCase,
        env: &CaseEnv,
    ) -> Result<ProgramObserved, harness::HarnessError> {
        ProgramObserved::run(env, &nagle_program(case), 1000)
    }

    fn settle(&self, _case: &NagleCase) -> Duration {
        Duration::from_millis(20)
    }

    fn check(&self, case: &NagleCase, observed: &ProgramObserved, trace: &Trace) -> Verdict {
        let mut findings = Findings::default();
        let total: usize = case.writes.iter().sum();
        let mss = observed
            .outcomes
            .iter()
            .filter(|o| o.host == Host::A)
            .filter_map(|o| o.sock.as_ref().and_then(|s| s.tcp))
            .filter(|t| t.state == 1) // ESTABLISHED: before connect TCP_INFO says 536 (TCP_MSS_DEFAULT)
            .map(|t| t.snd_mss)
            .next_back()
            .filter(|&m| m > 0);
        let Some(mss) = mss else {
            return Verdict::Invalid {
                reason: "no TCP_INFO snd_mss for a's socket".into(),
            };
        };
        let Some(conv) = trace
            .conversations
            .iter()
            .find(|c| c.kind == ConversationKind::Tcp)
        else {
            return Verdict::Invalid {
                reason: "no TCP conversation captured".into(),
            };
        };
        // a's new data segments (frame index, rel seq, len) and b's ACKs (frame index, rel ack).
        let mut data: Vec<(usize, u32, u32)> = Vec::new();
        let mut acks: Vec<(usize, u32)> = Vec::new();
        for &i in &conv.frames {
            let f = &trace.frames[i];
            let Some(t) = f.tcp() else { continue };
            if f.from == Some(Host::A)
                && t.payload_len > 0
                && !f.labels.contains(&harness::trace::Label::Retransmission)
            {
                data.push((i, f.rel_seq.unwrap_or(0), t.payload_len as u32));
            } else if f.from == Some(Host::B) && t.flags.ack {
                acks.push((i, f.rel_ack.unwrap_or(0)));
            }
        }
        let small = |len: u32| len < mss;
        let num = |i: usize| trace.frames[i].number;
        match case.mode {
            SendMode::Nagle => {
                for (k, &(i, seq, len)) in data.iter().enumerate() {
                    if !small(len) {
                        continue;
                    }
                    let end = seq.wrapping_add(len);
                    let acked_at = acks
                        .iter()
                        .find(|&&(j, ack)| j > i && (ack.wrapping_sub(end) as i32) >= 0)
                        .map(|&(j, _)| j)
                        .unwrap_or(usize::MAX);
                    if let Some(&(j, _, len2)) = data[k + 1..]
                        .iter()
                        .find(|&&(j, _, l)| j < acked_at && small(l))
                    {
                        findings.push(
                            Violation::new(
                                "RFC 9293 §3.7.4 (SHLD-7: Nagle); RFC 896",
                                "a second sub-MSS segment left while an earlier one was unacknowledged",
                            )
                            .frames([num(i), num(j)])
                            .field("payload of the second segment")
                            .expected(format!(
                                "no sub-MSS (< {mss} bytes) segment before the ACK of frame #{} ({len} bytes)",
                                num(i)
                            ))
                            .actual(format!("{len2} bytes in frame #{}", num(j))),
                        );
                        break;
                    }
                }
            }
            SendMode::NoDelay => {
                if case.gap_ms > 0 || !case.autocorking {
                    let got: Vec<u32> = data.iter().map(|d| d.2).collect();
                    let want: Vec<u32> = case.writes.iter().map(|&w| w as u32).collect();
                    if case.gap_ms > 0 {
                        findings.check(got == want, || {
                            Violation::new(
                                "RFC 9293 §3.7.4 (MUST-17: Nagle can be disabled; each write then leaves at once)",
                                "TCP_NODELAY writes spaced apart were not sent one segment per write",
                            )
                            .frames(data.iter().map(|d| num(d.0)).take(8))
                            .field("payload lengths of a's segments")
                            .expected(format!("{want:?}"))
                            .actual(format!("{got:?}"))
                        });
                    } else {
                        findings.note(format!(
                            "nodelay back to back, autocorking off: {}",
                            if got == want {
                                "one segment per write"
                            } else {
                                "writes merged (cwnd-limited)"
                            }
                        ));
                    }
                }
            }
            SendMode::Cork { .. } => {
                let uncork = observed.outcomes.iter().find(|o| {
                    o.host == Host::A
                        && matches!(
                            o.op,
                            Op::SetOpt {
                                opt: SockOpt::Cork(false),
                                ..
                            }
                        )
                });
                let first_write = observed
                    .outcomes
                    .iter()
                    .find(|o| o.host == Host::A && matches!(o.op, Op::Write { .. }));
                if let (Some(u), Some(w)) = (uncork, first_write) {
                    let earliest = u
                        .t_ns
                        .min(w.t_ns + CORK_CEILING.as_nanos() as u64)
                        .saturating_sub(CLOCK_SLACK.as_nanos() as u64);
                    let mut ceiling_seen = false;
                    for &(i, _, len) in &data {
                        let at = trace.frames[i].rel_ns;
                        if small(len) && at < earliest {
                            findings.push(
                                Violation::new(
                                    "tcp(7) TCP_CORK: partial frames are held until uncorked (200 ms ceiling)",
                                    "a partial segment left while the socket was corked",
                                )
                                .frame(num(i))
                                .field("time of the sub-MSS segment")
                                .expected(format!(
                                    "at or after {:.1} ms (uncork, or the 200 ms cork ceiling)",
                                    earliest as f64 / 1e6
                                ))
                                .actual(format!(
                                    "{:.1} ms ({len} bytes)",
                                    at as f64 / 1e6
                                )),
                            );
                            break;
                        }
                        if small(len) && at + (CLOCK_SLACK.as_nanos() as u64) < u.t_ns {
                            ceiling_seen = true;
                        }
                    }
                    if ceiling_seen {
                        findings
                            .note("cork: partial segment sent at the 200 ms ceiling before uncork");
                    }
                }
            }
        }
        // PSH on the segment carrying the last byte.
        if let Some(&(i, seq, len)) = data
            .iter()
            .find(|d| d.1.wrapping_add(d.2) as usize == total + 1)
        {
            let psh = trace.frames[i].tcp().is_some_and(|t| t.flags.psh);
            findings.check(psh, || {
                Violation::new(
                    "RFC 9293 §3.9.1 (SEND with PUSH); Linux tcp_mark_push at the end of sendmsg",
                    "the segment with the last byte written has no PSH",
                )
                .frame(num(i))
                .field("flags")
                .expected("PSH set")
                .actual(format!(
                    "{} (seq {seq}, {len} bytes)",
                    trace.frames[i]
                        .tcp()
                        .map(|t| t.flags.tcpdump())
                        .unwrap_or_default()
                ))
            });
        }
        findings.note(format!(
            "{}: {}",
            match case.mode {
                SendMode::Cork { .. } => "cork",
                SendMode::Nagle => "nagle",
                SendMode::NoDelay => "nodelay",
            },
            if data.len() == case.writes.len() {
                "one segment per write"
            } else {
                "writes merged into fewer segments"
            }
        ));
        findings.verdict()
    }
}
