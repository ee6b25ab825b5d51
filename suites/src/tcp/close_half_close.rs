use harness::frame::Host;
use harness::ops::{Op, ShutdownHow, SockOpt};
use harness::property::{Cap, Subject};
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::Family;
use harness::trace::Trace;
use harness::HarnessError;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::close_common::IO_TIMEOUT_MS;
use crate::conn::{connected, flags, outcomes_of, read_result, segments, ProgramObserved, Seg};

fn fins(segs: &[Seg], from: Host) -> Vec<&Seg> {
    segs.iter()
        .filter(|s| s.from == from && s.flags.fin)
        .collect()
}

/// Half-close (lab Q34).
///
/// RFC 9293 §3.6: "CLOSE is an operation meaning 'I have no more to send' but does not mean 'I will not
/// receive any more.'" RFC 1122 §4.2.2.13 / RFC 9293 MAY-1: a host may implement a half-duplex close;
/// shutdown(SHUT_WR) is that operation in the sockets API (POSIX shutdown).
///
/// Cases: a writes 0–200 KB (in 1–4 writes) and calls shutdown(SHUT_WR); b reads it all, reads EOF, then
/// writes 0–200 KB and closes; a reads everything and EOF, then closes. Buffer sizes on either side vary
/// (4 KB–256 KB or the default), so the data crosses a full window some of the time.
///
/// Checked on the wire: a's FIN carries sequence number 1 + (bytes a wrote) (it follows all of a's data,
/// RFC 9293 §3.4 SEG.LEN); b acknowledges it with ack = FIN + 1; a sends no new data after its FIN; b's
/// data after a's FIN is accepted (a's cumulative ACK reaches all of it); b's FIN comes after its data and
/// a acknowledges it with ack = b's FIN + 1; no RST. Checked on the sockets: b reads exactly a's bytes, then
/// EOF (read returns 0); a reads exactly b's bytes, then EOF; the streams are intact (every read is checked
/// against the writer's stream).
pub struct HalfClose;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HalfCloseCase {
    /// Sizes of a's writes before shutdown(SHUT_WR).
    pub a_writes: Vec<usize>,
    /// Bytes b writes after reading a's EOF.
    pub b_bytes: usize,
    pub a_rcvbuf: Option<i32>,
    pub b_rcvbuf: Option<i32>,
}

impl HalfCloseCase {
    fn a_bytes(&self) -> usize {
        self.a_writes.iter().sum()
    }
}

fn gen_size(rng: &mut CaseRng) -> usize {
    match rng.gen_range(0..4) {
        0 => 0,
        1 => rng.gen_range(1..=1500),
        2 => rng.gen_range(1500..=20_000),
        _ => rng.gen_range(20_000..=200_000),
    }
}

fn gen_buf(rng: &mut CaseRng) -> Option<i32> {
    rng.gen_bool(0.4)
        .then(|| rng.gen_range(4096..=262_144) & !1023)
}

impl Property for HalfClose {
    type Case = HalfCloseCase;
    type Observed = ProgramObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.close.half_close",
            suite: "tcp-lifecycle",
            title: "shutdown(SHUT_WR) sends FIN after all data; the peer reads everything then EOF and can still send; then the second FIN",
            clauses: &[
                "RFC 9293 §3.6 (MAY-1)",
                "RFC 1122 §4.2.2.13",
                "RFC 9293 §3.4 (SEG.LEN)",
            ],
            questions: &["Q34"],
            subject: Subject::Both,
            needs: Needs {
                links: &[LinkKind::Veth],
                kernel: &[],
                caps: &[Cap::Tcp, Cap::ShutdownWr, Cap::SetOptRcvBuf],
                ethernet: false,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> HalfCloseCase {
        let writes = rng.gen_range(1..=4);
        let total = gen_size(rng);
        let mut a_writes = Vec::new();
        let mut left = total;
        for i in 0..writes {
            let w = if i + 1 == writes {
                left
            } else {
                rng.gen_range(0..=left)
            };
            left -= w;
            if w > 0 {
                a_writes.push(w);
            }
        }
        HalfCloseCase {
            a_writes,
            b_bytes: gen_size(rng),
            a_rcvbuf: gen_buf(rng),
            b_rcvbuf: gen_buf(rng),
        }
    }

    fn describe(&self, c: &HalfCloseCase) -> String {
        let buf = |b: Option<i32>| b.map_or("default".to_string(), |b| format!("{b}"));
        format!(
            "a writes {:?} then shutdown(WR); b reads to EOF, writes {} and closes (SO_RCVBUF a {}, b {})",
            c.a_writes,
            c.b_bytes,
            buf(c.a_rcvbuf),
            buf(c.b_rcvbuf)
        )
    }

    fn execute(
        &self,
        case: &HalfCloseCase,
        env: &CaseEnv,
    ) -> Result<ProgramObserved, HarnessError> {
        let a_opts: Vec<SockOpt> = case.a_rcvbuf.map(SockOpt::RcvBuf).into_iter().collect();
        let b_opts: Vec<SockOpt> = case.b_rcvbuf.map(SockOpt::RcvBuf).into_iter().collect();
        let mut p = connected(&a_opts, &b_opts);
        for &w in &case.a_writes {
            p.a.push(Op::Write { sock: 0, len: w });
        }
        p.a.extend([
            Op::Shutdown {
                sock: 0,
                how: ShutdownHow::Wr,
            },
            Op::ReadExact {
                sock: 0,
                len: case.b_bytes,
            },
            Op::Read {
                sock: 0,
                max: 65_536,
            },
            Op::Close { sock: 0 },
            Op::Sync,
        ]);
        p.b.extend([
            Op::ReadExact {
                sock: 1,
                len: case.a_bytes(),
            },
            Op::Read {
                sock: 1,
                max: 65_536,
            },
            Op::Write {
                sock: 1,
                len: case.b_bytes,
            },
            Op::Close { sock: 1 },
            Op::Sync,
        ]);
        ProgramObserved::run(env, &p, IO_TIMEOUT_MS)
    }

    fn settle(&self, _case: &HalfCloseCase) -> std::time::Duration {
        std::time::Duration::from_millis(20)
    }

    fn check(&self, case: &HalfCloseCase, observed: &ProgramObserved, trace: &Trace) -> Verdict {
        const CLAUSE: &str = "RFC 9293 §3.6 (MAY-1: half-duplex close)";
        let mut findings = Findings::default();
        let segs = segments(trace);
        let a_bytes = case.a_bytes() as u32;
        let b_bytes = case.b_bytes as u32;
        let sockets = half_close_reads(case, observed);

        // The wire.
        let a_fins = fins(&segs, Host::A);
        let b_fins = fins(&segs, Host::B);
        let Some(a_fin) = a_fins.first() else {
            findings.push(
                Violation::new(CLAUSE, "shutdown(SHUT_WR) sent no FIN")
                    .field("flags")
                    .expected(format!("a FIN from A at seq {}", 1 + a_bytes))
                    .actual("no FIN from A in the capture"),
            );
            findings.append(sockets);
            return findings.verdict();
        };
        findings.check(a_fin.seq.wrapping_add(a_fin.len) == 1 + a_bytes, || {
            Violation::new(
                "RFC 9293 §3.4 (the FIN follows the last data octet)",
                "A's FIN does not follow all of its data",
            )
            .frame(a_fin.number)
            .field("seq + len (relative)")
            .expected(1 + a_bytes)
            .actual(a_fin.seq.wrapping_add(a_fin.len))
        });
        let a_fin_end = a_fin.end();
        for s in &segs {
            if s.from == Host::A && s.index > a_fin.index && s.len > 0 && !s.retransmission {
                findings.push(
                    Violation::new(CLAUSE, "A sent new data after its FIN")
                        .frames([a_fin.number, s.number])
                        .field("payload")
                        .expected("no new data after shutdown(SHUT_WR)")
                        .actual(format!("{} bytes at seq {}", s.len, s.seq)),
                );
            }
        }
        let acked_a_fin = segs.iter().any(|s| {
            s.from == Host::B && s.flags.ack && s.ack == a_fin_end && s.index > a_fin.index
        });
        findings.check(acked_a_fin, || {
            Violation::new(
                "RFC 9293 §3.10.7.4 (FIN: advance RCV.NXT over the FIN and acknowledge it)",
                "B never acknowledged A's FIN",
            )
            .frame(a_fin.number)
            .field("ack")
            .expected(a_fin_end)
            .actual("no such ACK from B")
        });
        // b's data after a's FIN, then b's FIN.
        match b_fins.first() {
            None => findings.push(
                Violation::new(CLAUSE, "B's close() after its data sent no FIN")
                    .field("flags")
                    .expected(format!("a FIN from B at seq {}", 1 + b_bytes))
                    .actual("no FIN from B in the capture"),
            ),
            Some(b_fin) => {
                findings.check(b_fin.seq.wrapping_add(b_fin.len) == 1 + b_bytes, || {
                    Violation::new(
                        "RFC 9293 §3.4 (the FIN follows the last data octet)",
                        "B's FIN does not follow all of its data",
                    )
                    .frame(b_fin.number)
                    .field("seq + len (relative)")
                    .expected(1 + b_bytes)
                    .actual(b_fin.seq.wrapping_add(b_fin.len))
                });
                findings.check(b_fin.index > a_fin.index, || {
                    Violation::new(CLAUSE, "B's FIN came before A's half-close")
                        .frames([b_fin.number, a_fin.number])
                        .field("order")
                        .expected("A's FIN, B's data, then B's FIN")
                        .actual("B's FIN first")
                });
                let b_fin_end = b_fin.end();
                let acked = segs.iter().any(|s| {
                    s.from == Host::A && s.flags.ack && s.ack == b_fin_end && s.index > b_fin.index
                });
                findings.check(acked, || {
                    Violation::new(
                        "RFC 9293 §3.10.7.4 (FIN-WAIT-2: acknowledge the FIN)",
                        "the half-closed side never acknowledged B's FIN (it must keep receiving)",
                    )
                    .frame(b_fin.number)
                    .field("ack")
                    .expected(b_fin_end)
                    .actual("no such ACK from A")
                });
            }
        }
        if b_bytes > 0 {
            let data_after = segs
                .iter()
                .filter(|s| s.from == Host::B && s.len > 0 && s.index > a_fin.index)
                .count();
            findings.check(data_after > 0, || {
                Violation::new(CLAUSE, "B sent no data after A's half-close")
                    .frame(a_fin.number)
                    .field("payload")
                    .expected(format!("{b_bytes} bytes from B after A's FIN"))
                    .actual("none")
            });
        }
        for s in segs.iter().filter(|s| s.flags.rst) {
            if answers_after_close(&segs, s) {
                // The side that closed last is CLOSED once its FIN is acknowledged; a segment arriving after
                // that (a duplicate ACK, a window update) meets no connection and is answered by a RST
                // (RFC 9293 §3.10.7.1). The half-close itself completed.
                findings
                    .note("a segment after the close completed was answered by a RST from CLOSED");
                continue;
            }
            findings.push(
                Violation::new(CLAUSE, "the half-closed connection was reset")
                    .frame(s.number)
                    .field("flags")
                    .expected("FINs only")
                    .actual(flags(s)),
            );
        }
        findings.notes.push(format!(
            "A: {a_bytes} bytes then FIN; B: {b_bytes} bytes after it, then FIN"
        ));
        findings.append(sockets);
        findings.verdict()
    }
}

/// True when `rst` comes from a side whose connection had fully closed — its FIN acknowledged by the other
/// side, the other side's FIN acknowledged by it — and answers a segment of the other side the way a closed
/// port does (no ACK flag, the sequence number that segment acknowledged).
fn answers_after_close(segs: &[Seg], rst: &Seg) -> bool {
    let (me, other) = (rst.from, rst.from.other());
    let before = |s: &&Seg| s.index < rst.index;
    let fin_end = |host: Host| {
        segs.iter()
            .filter(before)
            .find(|s| s.from == host && s.flags.fin)
            .map(|s| s.seq.wrapping_add(s.seg_len()))
    };
    let (Some(my_fin_end), Some(their_fin_end)) = (fin_end(me), fin_end(other)) else {
        return false;
    };
    let acked = |by: Host, end: u32| {
        segs.iter()
            .filter(before)
            .any(|s| s.from == by && s.flags.ack && s.ack.wrapping_sub(end) as i32 >= 0)
    };
    let answered = segs
        .iter()
        .filter(before)
        .any(|s| s.from == other && s.flags.ack && s.ack == rst.seq);
    !rst.flags.ack && acked(other, my_fin_end) && acked(me, their_fin_end) && answered
}

/// What each side of a half-close read (reported after the wire findings: the wire says why a read failed).
fn half_close_reads(case: &HalfCloseCase, observed: &ProgramObserved) -> Findings {
    const CLAUSE: &str = "RFC 9293 §3.6 (MAY-1: half-duplex close)";
    let a_bytes = case.a_bytes() as u32;
    let b_bytes = case.b_bytes as u32;
    let mut sockets = Findings::default();
    let reads = |host: Host| {
        outcomes_of(&observed.outcomes, host, |op| {
            matches!(op, Op::ReadExact { .. } | Op::Read { .. })
        })
    };
    for (host, peer, expected) in [(Host::B, Host::A, a_bytes), (Host::A, Host::B, b_bytes)] {
        let r = reads(host);
        let (exact, eof) = (r.first(), r.get(1));
        if let Some(exact) = exact {
            let got = read_result(&exact.result);
            sockets.check(
                got.is_some_and(|(n, _, m)| n == expected as u64 && m.is_none()),
                || {
                    Violation::new(
                        CLAUSE,
                        format!(
                            "{} did not read all of {}'s data before the EOF",
                            host.name(),
                            peer.name()
                        ),
                    )
                    .field(format!("{} read_exact()", host.name()))
                    .expected(format!("{expected} bytes, intact"))
                    .actual(exact.result.render())
                },
            );
        }
        if let Some(eof) = eof {
            sockets.check(
                read_result(&eof.result).is_some_and(|(_, e, _)| e),
                || {
                    Violation::new(
                        "RFC 9293 §3.10.7.4 (FIN: \"connection closing\"); POSIX read returns 0 at end of stream",
                        format!(
                            "{}'s read after all of {}'s data did not return EOF",
                            host.name(),
                            peer.name()
                        ),
                    )
                    .field(format!("{} read()", host.name()))
                    .expected("0 (EOF)")
                    .actual(eof.result.render())
                },
            );
        }
    }

    sockets
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness::wire::TcpFlags;

    fn seg(index: usize, from: Host, seq: u32, ack: u32, flags: &str, len: u32) -> Seg {
        Seg {
            index,
            number: index + 1,
            from,
            seq,
            ack,
            flags: TcpFlags {
                syn: flags.contains('S'),
                fin: flags.contains('F'),
                rst: flags.contains('R'),
                psh: flags.contains('P'),
                ack: flags.contains('.'),
                ..Default::default()
            },
            len,
            window: 100,
            rel_ns: index as u64 * 1000,
            retransmission: false,
        }
    }

    /// The shape seen through the kernel adapter under load (case 25, seed 4): A half-closes at once, B
    /// sends its data and FIN, A acknowledges the FIN, then a late duplicate ACK from A meets B's socket after
    /// LAST-ACK → CLOSED, and B answers it the way a closed port does.
    fn closed_then_answered() -> Vec<Seg> {
        vec![
            seg(0, Host::A, 1, 1, "F.", 0),
            seg(1, Host::B, 1, 2, ".", 0),
            seg(2, Host::B, 1, 2, "FP.", 100),
            seg(3, Host::A, 2, 102, ".", 0),
            seg(4, Host::A, 2, 102, ".", 0),
            seg(5, Host::B, 102, 0, "R", 0),
        ]
    }

    #[test]
    fn a_rst_answering_a_segment_after_the_close_completed_is_not_a_reset_of_the_half_close() {
        let segs = closed_then_answered();
        assert!(answers_after_close(&segs, &segs[5]));
    }

    #[test]
    fn a_rst_before_the_close_completed_is_still_a_reset() {
        let mut segs = closed_then_answered();
        // B's FIN never acknowledged: B was not CLOSED when it reset.
        segs.remove(3);
        segs.remove(3);
        let rst = seg(3, Host::B, 102, 0, "R", 0);
        segs.push(rst.clone());
        assert!(!answers_after_close(&segs, &rst));
        // A RST with ACK (an abort) is never the closed-port answer.
        let segs = closed_then_answered();
        let abort = seg(5, Host::B, 102, 2, "R.", 0);
        assert!(!answers_after_close(&segs[..5], &abort));
    }
}
