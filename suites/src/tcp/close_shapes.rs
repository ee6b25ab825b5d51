use harness::frame::Host;
use harness::ops::{Op, SockOpt};
use harness::property::{Cap, KernelNeed, Subject};
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::Family;
use harness::trace::Trace;
use harness::HarnessError;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::close_common::IO_TIMEOUT_MS;
use crate::conn::{connected, flags, segments, ProgramObserved, Seg};

/// The close shape a case aims at (the kernel decides what happens; the check classifies the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseShape {
    /// FIN, ACK, FIN, ACK: b's (delayed) ACK of a's FIN goes alone, b closes later.
    FourSegments,
    /// FIN, FIN+ACK, ACK: b's ACK of a's FIN is delayed (quick-ack off) and its close() lets the FIN ride on it.
    ThreeSegments,
    /// Both FINs cross (20 ms one-way delay, b closes 5 ms after a): both sides pass CLOSING.
    Simultaneous,
}

impl CloseShape {
    fn name(self) -> &'static str {
        match self {
            CloseShape::FourSegments => "four-segment",
            CloseShape::ThreeSegments => "three-segment",
            CloseShape::Simultaneous => "simultaneous",
        }
    }
}

/// Close shapes (lab Q33, Q36).
///
/// RFC 9293 §3.6 and Figure 12 (normal close: FIN-WAIT-1 → FIN-WAIT-2 → TIME-WAIT on the active side,
/// CLOSE-WAIT → LAST-ACK → CLOSED on the passive side) and Figure 13 (simultaneous close: both sides go
/// FIN-WAIT-1 → CLOSING → TIME-WAIT). A FIN occupies one sequence number (§3.4), so it is acknowledged by
/// FIN.SEQ + 1 (after any data in the same segment). MUST-13: the side that closes first lingers in TIME-WAIT
/// (2·MSL; Linux TCP_TIMEWAIT_LEN 60 s).
///
/// Cases: a may first send 0–3000 bytes that b reads; then a closes, and b closes in a way that aims at one
/// shape: four segments (b waits for the EOF, then 60–90 ms: Linux's tcp_fin() enters pingpong mode, so b's
/// ACK of the FIN waits for the delayed-ACK timer, TCP_DELACK_MIN 40 ms, and goes alone), three segments (b
/// also turns quick-ack off and closes as soon as it reads EOF, well inside those 40 ms), or simultaneous (a relay with 20 ms one-way delay; b closes 2–8 ms after a, before a's FIN arrives).
///
/// The check classifies what the wire shows — simultaneous if B's FIN does not acknowledge A's FIN; three
/// segments if B's FIN is B's first acknowledgment of A's FIN; four segments if a separate ACK came first —
/// and checks the shape's legality: each FIN follows its side's data; each FIN is acknowledged with FIN + 1
/// by the other side; in a simultaneous close neither FIN acknowledges the other and each side then
/// acknowledges the other's FIN; no RST; after the final ACK only retransmissions. Then sock_diag in each
/// namespace: every side that sent its FIN before receiving the other's ends in TIME-WAIT (a always; b too in
/// a simultaneous close) and the passive closer of a normal close has no socket left for the connection.
/// The shape seen is a note of the verdict; an aim the kernel did not follow is not a failure.
pub struct CloseShapes;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CloseShapesCase {
    pub aim: CloseShape,
    pub a_bytes: usize,
    /// Four segments: b's pause between reading EOF and close(); simultaneous: b's delay after a's close().
    pub b_delay_ms: u32,
}

pub struct CloseShapesObserved {
    pub program: ProgramObserved,
    pub a_sockets: Vec<harness::diag::DiagSocket>,
    pub b_sockets: Vec<harness::diag::DiagSocket>,
}

impl std::fmt::Debug for CloseShapesObserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloseShapesObserved")
            .field("program", &self.program)
            .field("a_sockets", &self.a_sockets)
            .field("b_sockets", &self.b_sockets)
            .finish()
    }
}

/// One-way delay of the simultaneous-close relay: far above scheduling noise, so b's FIN (sent 2–8 ms after
/// a's) always leaves before a's FIN arrives.
const SIMULTANEOUS_DELAY_US: u64 = 20_000;

impl Property for CloseShapes {
    type Case = CloseShapesCase;
    type Observed = CloseShapesObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.close.shapes",
            suite: "tcp-lifecycle",
            title: "four-segment, three-segment and simultaneous closes are each legal; the active closer ends in TIME-WAIT",
            clauses: &[
                "RFC 9293 §3.6 (Figures 12, 13)",
                "RFC 9293 §3.4 (a FIN takes one sequence number)",
                "RFC 9293 §3.6 (MUST-13: TIME-WAIT)",
            ],
            questions: &["Q33", "Q36"],
            subject: Subject::Both,
            needs: Needs {
                links: &[LinkKind::Veth, LinkKind::Relay],
                kernel: &[KernelNeed::SockDiag],
                caps: &[Cap::Tcp, Cap::ShutdownWr],
                ethernet: false,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> CloseShapesCase {
        let aim = match rng.gen_range(0..3) {
            0 => CloseShape::FourSegments,
            1 => CloseShape::ThreeSegments,
            _ => CloseShape::Simultaneous,
        };
        CloseShapesCase {
            aim,
            a_bytes: if rng.gen_bool(0.5) {
                0
            } else {
                rng.gen_range(1..=3000)
            },
            b_delay_ms: match aim {
                // Past b's delayed ACK of the FIN: tcp_fin() puts b in pingpong mode, so that ACK waits for the
                // delayed-ACK timer (TCP_DELACK_MIN 40 ms); a close() sooner would let the FIN ride on it.
                CloseShape::FourSegments => rng.gen_range(60..=90),
                CloseShape::ThreeSegments => 0,
                CloseShape::Simultaneous => rng.gen_range(2..=8),
            },
        }
    }

    fn lab_config(&self, case: &CloseShapesCase) -> harness::LabConfig {
        let mut cfg = harness::LabConfig::default();
        if case.aim == CloseShape::Simultaneous {
            cfg.link = crate::conn::delayed_link(SIMULTANEOUS_DELAY_US);
        }
        cfg
    }

    fn describe(&self, c: &CloseShapesCase) -> String {
        format!(
            "aim {} close: a sends {} bytes and closes{}",
            c.aim.name(),
            c.a_bytes,
            match c.aim {
                CloseShape::FourSegments =>
                    format!(", b closes {} ms after reading EOF", c.b_delay_ms),
                CloseShape::ThreeSegments => ", b (quick-ack off) closes on EOF".to_string(),
                CloseShape::Simultaneous =>
                    format!(", b closes {} ms later over a 20 ms relay", c.b_delay_ms),
            }
        )
    }

    fn execute(
        &self,
        case: &CloseShapesCase,
        env: &CaseEnv,
    ) -> Result<CloseShapesObserved, HarnessError> {
        let mut p = connected(&[], &[]);
        if case.a_bytes > 0 {
            p.a.push(Op::Write {
                sock: 0,
                len: case.a_bytes,
            });
            p.b.push(Op::ReadExact {
                sock: 1,
                len: case.a_bytes,
            });
        }
        if case.aim == CloseShape::ThreeSegments {
            p.b.push(Op::SetOpt {
                sock: 1,
                opt: SockOpt::QuickAck(false),
            });
        }
        // The relay's round trip plus margin for the last ACKs; on veth everything is over in µs.
        let tail = if case.aim == CloseShape::Simultaneous {
            150
        } else {
            30
        };
        p.a.extend([Op::Sync, Op::Close { sock: 0 }, Op::Sleep { ms: tail }]);
        p.b.push(Op::Sync);
        match case.aim {
            CloseShape::FourSegments => p.b.extend([
                Op::WaitReadable { sock: 1, ms: 1000 },
                Op::Sleep {
                    ms: case.b_delay_ms,
                },
                Op::Close { sock: 1 },
            ]),
            CloseShape::ThreeSegments => p.b.extend([
                Op::WaitReadable { sock: 1, ms: 1000 },
                Op::Close { sock: 1 },
            ]),
            CloseShape::Simultaneous => p.b.extend([
                Op::Sleep {
                    ms: case.b_delay_ms,
                },
                Op::Close { sock: 1 },
            ]),
        }
        p.b.push(Op::Sleep { ms: tail });
        Ok(CloseShapesObserved {
            program: ProgramObserved::run(env, &p, IO_TIMEOUT_MS)?,
            a_sockets: crate::conn::namespace_sockets(env, Host::A)?,
            b_sockets: crate::conn::namespace_sockets(env, Host::B)?,
        })
    }

    fn check(
        &self,
        case: &CloseShapesCase,
        observed: &CloseShapesObserved,
        trace: &Trace,
    ) -> Verdict {
        const CLAUSE: &str = "RFC 9293 §3.6";
        let mut findings = Findings::default();
        let segs = segments(trace);
        let (Some(fa), Some(fb)) = (
            segs.iter().find(|s| s.from == Host::A && s.flags.fin),
            segs.iter().find(|s| s.from == Host::B && s.flags.fin),
        ) else {
            let missing = if segs.iter().any(|s| s.from == Host::A && s.flags.fin) {
                "B"
            } else {
                "A"
            };
            findings.push(
                Violation::new(CLAUSE, format!("{missing} closed without sending a FIN"))
                    .field("flags")
                    .expected(format!("a FIN from {missing}"))
                    .actual("none in the capture"),
            );
            return findings.verdict();
        };
        // Each FIN follows its side's data (b sends none).
        for (fin, bytes, who) in [(fa, case.a_bytes as u32, "A"), (fb, 0, "B")] {
            findings.check(fin.seq.wrapping_add(fin.len) == 1 + bytes, || {
                Violation::new(
                    "RFC 9293 §3.4 (the FIN follows the last data octet)",
                    format!("{who}'s FIN does not follow its data"),
                )
                .frame(fin.number)
                .field("seq + len (relative)")
                .expected(1 + bytes)
                .actual(fin.seq.wrapping_add(fin.len))
            });
        }
        let (fa_end, fb_end) = (fa.end(), fb.end());
        // Classify. B's first segment acknowledging A's FIN, and A's first acknowledging B's.
        let b_acks_fa = segs
            .iter()
            .find(|s| s.from == Host::B && s.flags.ack && !s.flags.rst && s.ack == fa_end);
        let a_acks_fb = segs
            .iter()
            .find(|s| s.from == Host::A && s.flags.ack && !s.flags.rst && s.ack == fb_end);
        let fin_acks_fin = |fin: &Seg, other_end: u32| fin.ack == other_end;
        let shape = if !fin_acks_fin(fb, fa_end) && !fin_acks_fin(fa, fb_end) {
            CloseShape::Simultaneous
        } else if b_acks_fa.is_some_and(|s| s.index == fb.index) {
            CloseShape::ThreeSegments
        } else {
            CloseShape::FourSegments
        };
        match b_acks_fa {
            None => findings.push(
                Violation::new(
                    "RFC 9293 §3.10.7.4 (a FIN is acknowledged: RCV.NXT advances over it)",
                    "B never acknowledged A's FIN with FIN + 1",
                )
                .frame(fa.number)
                .field("ack")
                .expected(fa_end)
                .actual(
                    segs.iter()
                        .filter(|s| s.from == Host::B && s.index > fa.index)
                        .map(|s| s.ack)
                        .max()
                        .map_or("no segment from B after the FIN".to_string(), |a| {
                            format!("highest ack {a}")
                        }),
                ),
            ),
            Some(ack) => findings.check(
                ack.index > fa.index || shape != CloseShape::FourSegments,
                || {
                    Violation::new(CLAUSE, "B acknowledged A's FIN before it was sent")
                        .frames([fa.number, ack.number])
                        .field("order")
                        .expected("the FIN, then its ACK")
                        .actual("the ACK first")
                },
            ),
        }
        let final_ack = match a_acks_fb {
            None => {
                findings.push(
                    Violation::new(
                        "RFC 9293 §3.10.7.4 (FIN-WAIT-2 / CLOSING: acknowledge the peer's FIN)",
                        "A never acknowledged B's FIN with FIN + 1",
                    )
                    .frame(fb.number)
                    .field("ack")
                    .expected(fb_end)
                    .actual("no such ACK from A"),
                );
                None
            }
            Some(s) => Some(s),
        };
        if shape == CloseShape::FourSegments {
            if let Some(ack) = b_acks_fa {
                findings.check(!ack.flags.fin && ack.index < fb.index, || {
                    Violation::new(
                        "RFC 9293 §3.6 (Figure 12)",
                        "four-segment close without a separate ACK before B's FIN",
                    )
                    .frames([ack.number, fb.number])
                    .field("flags")
                    .expected(".")
                    .actual(flags(ack))
                });
            }
        }
        // Nothing new after the last ACK of the close: only retransmissions (and their ACKs). One named
        // exception: when b's last ACK and its FIN reach a in the other order (veth on two CPUs reorders b's
        // frames now and then), a in TIME-WAIT answers the stale ACK with an ACK, b (already CLOSED) answers
        // that with a RST, <SEQ=SEG.ACK><CTL=RST> (RFC 9293 §3.10.7.1), and the RST ends a's TIME-WAIT
        // (RFC 1337's "TIME-WAIT assassination"; Linux tcp_rfc1337=0 by default).
        let last = final_ack.map(|f| f.index).max(b_acks_fa.map(|s| s.index));
        let stale_answer_rst = |s: &Seg| {
            s.from == Host::B
                && s.flags.rst
                && !s.flags.ack
                && last.is_some_and(|l| {
                    segs.iter().any(|a| {
                        a.from == Host::A && a.index > l && a.index < s.index && a.ack == s.seq
                    })
                })
        };
        if let Some(last) = last {
            for s in segs.iter().filter(|s| s.index > last) {
                let legal = s.retransmission
                    || (s.seg_len() == 0 && !s.flags.rst && !s.flags.syn)
                    || (s.flags.fin && (s.seq == fa.seq || s.seq == fb.seq))
                    || stale_answer_rst(s);
                findings.check(legal, || {
                    Violation::new(CLAUSE, "a new segment after the close completed")
                        .frame(s.number)
                        .field("segment")
                        .expected("nothing but retransmissions and their ACKs")
                        .actual(format!("{} seq {} len {}", flags(s), s.seq, s.len))
                });
            }
        }
        let mut assassinated = false;
        for s in segs.iter().filter(|s| s.flags.rst) {
            if stale_answer_rst(s) {
                assassinated = true;
                findings.note("b's ACK and FIN arrived reordered: a's answer drew a RST that ended its TIME-WAIT (RFC 1337)");
                continue;
            }
            findings.push(
                Violation::new(CLAUSE, "an orderly close was reset")
                    .frame(s.number)
                    .field("flags")
                    .expected("FINs and ACKs only")
                    .actual(flags(s)),
            );
        }
        // TIME-WAIT via sock_diag.
        let conn = |socks: &[harness::diag::DiagSocket], local_port: u16, remote_port: u16| {
            socks
                .iter()
                .find(|d| d.local.port() == local_port && d.remote.port() == remote_port)
                .cloned()
        };
        let a_port = observed
            .program
            .outcomes
            .iter()
            .find(|o| o.host == Host::A && matches!(o.op, Op::Connect { .. }))
            .and_then(|o| o.sock.as_ref())
            .and_then(|s| s.local_port);
        if let Some(a_port) = a_port {
            let a_side = conn(&observed.a_sockets, a_port, crate::conn::PORT);
            let b_side = conn(&observed.b_sockets, crate::conn::PORT, a_port);
            let state = |d: &Option<harness::diag::DiagSocket>| {
                d.as_ref().map_or("no socket".to_string(), |d| {
                    d.state
                        .map_or("unknown".into(), |s| s.rfc_name().to_string())
                })
            };
            let tw = |d: &Option<harness::diag::DiagSocket>| {
                d.as_ref()
                    .is_some_and(|d| d.state == Some(harness::ops::TcpState::TimeWait))
            };
            findings.check(tw(&a_side) || assassinated, || {
                Violation::new(
                    "RFC 9293 §3.6 (MUST-13: the side that closes first lingers in TIME-WAIT)",
                    "A, the active closer, is not in TIME-WAIT after the close",
                )
                .field("A's socket state (sock_diag)")
                .expected("TIME-WAIT")
                .actual(state(&a_side))
            });
            if shape == CloseShape::Simultaneous {
                findings.check(tw(&b_side), || {
                    Violation::new(
                        "RFC 9293 §3.6 (Figure 13: CLOSING → TIME-WAIT on both sides)",
                        "B is not in TIME-WAIT after a simultaneous close",
                    )
                    .field("B's socket state (sock_diag)")
                    .expected("TIME-WAIT")
                    .actual(state(&b_side))
                });
            } else {
                findings.check(b_side.is_none(), || {
                    Violation::new(
                        "RFC 9293 §3.6 (Figure 12: LAST-ACK → CLOSED on the final ACK)",
                        "B, the passive closer, still has the connection after the final ACK",
                    )
                    .field("B's socket state (sock_diag)")
                    .expected("no socket (CLOSED)")
                    .actual(state(&b_side))
                });
            }
        }
        findings.note(format!("shape: {}", shape.name()));
        if shape != case.aim {
            findings.note(format!("aimed at {}", case.aim.name()));
        }
        findings.verdict()
    }
}
