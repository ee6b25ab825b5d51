use std::time::Duration;

use harness::exec::OpResult;
use harness::frame::Host;
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwsCase {
    /// b's SO_RCVBUF (the kernel doubles it).
    pub rcvbuf: i32,
    pub total: usize,
    /// b reads this much per read …
    pub chunk: usize,
    /// … sleeping this long before each read.
    pub sleep_ms: u32,
    /// a sets TCP_NODELAY.
    pub nodelay: bool,
}

const SWS_PORT: u16 = 5004;
/// RFC 1122 §4.2.3.4 lets the sender send a short segment when an override timeout expires; Linux's is the
/// zero-window/persist probe timer (tcp_write_wakeup sends window-sized data), starting at TCP_RTO_MIN 200 ms;
/// −10 % for timer rounding.
const SWS_OVERRIDE: Duration = Duration::from_millis(180);

fn sws_program(case: &SwsCase) -> Program {
    let a_opts: &[SockOpt] = if case.nodelay {
        &[SockOpt::NoDelay(true)]
    } else {
        &[]
    };
    let mut p = connected_on(SWS_PORT, a_opts, &[SockOpt::RcvBuf(case.rcvbuf)]);
    let mut left = case.total;
    while left > 0 {
        let n = case.chunk.min(left);
        p.b.push(Op::Sleep { ms: case.sleep_ms });
        p.b.push(Op::ReadExact { sock: 1, len: n });
        left -= n;
    }
    p.b.extend([Op::Sync, Op::Close { sock: 1 }, Op::Sync]);
    p.a.extend([
        Op::Write {
            sock: 0,
            len: case.total,
        },
        Op::Sync,
        Op::Close { sock: 0 },
        Op::Sync,
    ]);
    p
}

/// Silly window syndrome avoidance, receiver and sender (lab Q30, Q31).
///
/// RFC 9293 §3.8.6.2.2 (MUST-39) / RFC 1122 §4.2.3.3: the receiver does not advance its right window edge
/// (RCV.NXT + RCV.WND) by less than min(RCV.BUFF/2, Eff.snd.MSS). §3.8.6.2.1 (MUST-38) / RFC 1122 §4.2.3.4:
/// the sender sends a short segment only if it is the end of the data (with PUSH), or at least half the
/// largest window the receiver offered (Fs = 1/2), or when the override timeout expires.
///
/// Cases: b's SO_RCVBUF 2048–16384 (doubled by the kernel), b reads 1–600 bytes per read with 1–8 ms sleeps
/// before each (20–60 reads), a writes everything at once, with or without TCP_NODELAY.
///
/// Checked on the wire: every increase of b's right edge (ack + scaled window, from the ACK that last moved
/// it) is at least min(SO_RCVBUF as reported / 2, a's snd_mss). Measured Linux specific, tolerated: the ACK
/// of the sender's last, short segment moves the edge by that segment's length, because tcp_select_window
/// keeps the current window offering when it is within one MSS of the free space (seen in about half the
/// cases) — allowed only when that ACK covers the end of the data. The FIN's ACK (+1) is not a window
/// change. Every data segment from a shorter than the MSS is the end of the data, or ≥ half the largest
/// window b advertised, or follows a's previous segment by ≥ 180 ms (the override timeout: Linux's persist
/// timer, TCP_RTO_MIN 200 ms −10 %, whose tcp_write_wakeup sends window-sized data). Measured: 0 such
/// segments in 192 cases (Linux's tcp_snd_wnd_test waits for a full MSS of window).
pub struct SwsAvoidance;

impl Property for SwsAvoidance {
    type Case = SwsCase;
    type Observed = ProgramObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.sws.avoidance",
            suite: "tcp-data",
            title: "a slow reader never advertises small window increases, and the sender sends no small segments into a small window",
            clauses: &["RFC 9293 §3.8.6.2.1 (MUST-38)", "RFC 9293 §3.8.6.2.2 (MUST-39)", "RFC 1122 §4.2.3.3, §4.2.3.4"],
            questions: &["Q30", "Q31"],
            subject: Subject::Both,
            needs: Needs {
                links: &[LinkKind::Veth],
                kernel: &[KernelNeed::TcpInfo, KernelNeed::LinuxTimers],
                caps: &[Cap::Tcp, Cap::SetOptRcvBuf],
                ethernet: false,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> SwsCase {
        let rcvbuf = rng.gen_range(2048..=16384);
        let chunk = rng.gen_range(1..=600);
        let reads = rng.gen_range(20..=60);
        SwsCase {
            rcvbuf,
            total: chunk * reads,
            chunk,
            sleep_ms: rng.gen_range(1..=8),
            nodelay: rng.gen_bool(0.5),
        }
    }

    fn describe(&self, c: &SwsCase) -> String {
        format!(
            "b SO_RCVBUF {} reads {} bytes every {} ms; a{} writes {} bytes",
            c.rcvbuf,
            c.chunk,
            c.sleep_ms,
            if c.nodelay { " (TCP_NODELAY)" } else { "" },
            c.total
        )
    }

    fn execute(
        &self,
        case: &SwsCase,
        env: &CaseEnv,
    ) -> Result<ProgramObserved, harness::HarnessError> {
        ProgramObserved::run(env, &sws_program(case), 1500)
    }

    fn settle(&self, _case: &SwsCase) -> Duration {
        Duration::from_millis(20)
    }

    fn check(&self, case: &SwsCase, observed: &ProgramObserved, trace: &Trace) -> Verdict {
        let mut findings = Findings::default();
        let Some(conv) = trace
            .conversations
            .iter()
            .find(|c| c.kind == ConversationKind::Tcp)
        else {
            return Verdict::Invalid {
                reason: "no TCP conversation captured".into(),
            };
        };
        let mss = observed
            .outcomes
            .iter()
            .filter(|o| o.host == Host::A)
            .filter_map(|o| o.sock.as_ref().and_then(|s| s.tcp))
            .filter(|t| t.state == 1)
            .map(|t| t.snd_mss)
            .next_back()
            .unwrap_or(0);
        let rcvbuf = observed
            .outcomes
            .iter()
            .filter(|o| o.host == Host::B && matches!(o.op, Op::ReadExact { .. }))
            .find_map(|o| o.sock.as_ref().and_then(|s| s.rcvbuf))
            .unwrap_or(0) as u32;
        if mss == 0 || rcvbuf == 0 {
            return Verdict::Invalid {
                reason: "no TCP_INFO snd_mss or SO_RCVBUF".into(),
            };
        }
        let step = (rcvbuf / 2).min(mss);
        let end_of_data = case.total as u32 + 1;
        let mut right: Option<(u32, usize)> = None;
        let mut min_inc: Option<u32> = None;
        let mut end_incs = 0usize;
        let mut max_wnd = 0u32;
        let mut last_a_ns: Option<u64> = None;
        let mut overrides = 0usize;
        for &i in &conv.frames {
            let f = &trace.frames[i];
            let Some(t) = f.tcp() else { continue };
            if t.flags.syn || t.flags.rst {
                continue;
            }
            if f.from == Some(Host::B) {
                let ack = f.rel_ack.unwrap_or(0);
                // The FIN exchange moves the ACK by one: not a window increase.
                if t.flags.fin || ack > end_of_data {
                    continue;
                }
                let w = trace.scaled_window(i).unwrap_or(0);
                max_wnd = max_wnd.max(w);
                let r = ack.wrapping_add(w);
                match right {
                    Some((old, old_frame)) if (r.wrapping_sub(old) as i32) > 0 => {
                        let inc = r - old;
                        if inc < step {
                            if ack == end_of_data {
                                // Linux keeps its window offering when it is within one MSS of the free
                                // space (tcp_select_window), so the edge moves by the ACK's advance: the
                                // sender's last, short segment (RFC 9293: "unless it is the end of the data").
                                end_incs += 1;
                            } else {
                                findings.push(
                                    Violation::new(
                                        "RFC 9293 §3.8.6.2.2 (MUST-39: receiver SWS avoidance); RFC 1122 §4.2.3.3",
                                        "the receiver advanced its right window edge by a small amount",
                                    )
                                    .frames([trace.frames[old_frame].number, f.number])
                                    .field("right edge (ack + scaled window) increase")
                                    .expected(format!(
                                        ">= min(RCV.BUFF/2, MSS) = min({}, {mss}) = {step} bytes",
                                        rcvbuf / 2
                                    ))
                                    .actual(format!("{inc} bytes (ack {ack}, window {w})")),
                                );
                            }
                        } else {
                            min_inc = Some(min_inc.map_or(inc, |m: u32| m.min(inc)));
                        }
                        right = Some((r, i));
                    }
                    None => right = Some((r, i)),
                    _ => {}
                }
            } else if f.from == Some(Host::A) && t.payload_len > 0 {
                let len = t.payload_len as u32;
                let end = f.rel_seq.unwrap_or(0).wrapping_add(len);
                let gap = last_a_ns.map(|p| f.rel_ns.saturating_sub(p));
                last_a_ns = Some(f.rel_ns);
                if len >= mss || end == end_of_data || len >= max_wnd / 2 {
                    continue;
                }
                if gap.is_some_and(|g| g >= SWS_OVERRIDE.as_nanos() as u64) {
                    overrides += 1;
                    continue;
                }
                findings.push(
                    Violation::new(
                        "RFC 9293 §3.8.6.2.1 (MUST-38: sender SWS avoidance); RFC 1122 §4.2.3.4",
                        "the sender sent a small segment that is not the end of the data",
                    )
                    .frame(f.number)
                    .field("payload")
                    .expected(format!(
                        ">= MSS {mss}, or >= half the largest window ({}), or the end of the data, or after the {} ms override timeout",
                        max_wnd / 2,
                        SWS_OVERRIDE.as_millis()
                    ))
                    .actual(format!(
                        "{len} bytes, {:.1} ms after a's previous segment",
                        gap.unwrap_or(0) as f64 / 1e6
                    )),
                );
            }
        }
        let read: u64 = observed
            .outcomes
            .iter()
            .filter(|o| o.host == Host::B)
            .map(|o| match o.result {
                OpResult::Read { n, .. } => n,
                _ => 0,
            })
            .sum();
        findings.check(read == case.total as u64, || {
            Violation::new("RFC 9293 §3.4", "b did not read everything a wrote")
                .field("bytes read by b")
                .expected(case.total)
                .actual(read)
        });
        findings.note(format!(
            "smallest right-edge step {} (min {step}); {} short step(s) at the end of the data; {} override-timeout segment(s)",
            min_inc.map(|m| if m >= mss { ">= MSS".to_string() } else { format!("< MSS ({m})") }).unwrap_or_else(|| "none".into()),
            end_incs,
            overrides
        ));
        findings.verdict()
    }
}
