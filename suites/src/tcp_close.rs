//! TCP connection closing (suite `tcp-lifecycle`): half-close and writing after the peer closed.
//! (`tcp.close.rst_on_unread` lives in `tcp_lifecycle.rs` with the other RST properties.)

use harness::exec::{run_program, ExecConfig, HostSockets, OpOutcome, OpResult};
use harness::frame::Host;
use harness::ops::{Op, ShutdownHow, SockOpt};
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::Family;
use harness::trace::Trace;
use harness::HarnessError;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::conn::{connected, flags, outcomes_of, read_result, segments, Seg};

/// Socket outcomes of a program run, with the sockets kept open until the capture settled.
pub struct ProgramObserved {
    pub outcomes: Vec<OpOutcome>,
    pub sockets: Vec<HostSockets>,
}

impl std::fmt::Debug for ProgramObserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgramObserved")
            .field("outcomes", &self.outcomes)
            .finish_non_exhaustive()
    }
}

/// Blocking reads and writes of these cases wait this long: long enough for 200 KB through a small
/// buffer on a loaded 2-core machine, short enough that a lost FIN shows as a timed-out read, not a hang.
const IO_TIMEOUT_MS: u32 = 2_000;

fn exec_config(env: &CaseEnv) -> ExecConfig {
    let mut cfg = ExecConfig::new(env.seed, env.family);
    cfg.io_timeout_ms = IO_TIMEOUT_MS;
    cfg
}

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
            needs: Needs {
                link: LinkKind::Veth,
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
        let (outcomes, sockets) = run_program(env.lab, &p, exec_config(env))?;
        Ok(ProgramObserved { outcomes, sockets })
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

/// Writing after the peer closed (lab Q34, Q35).
///
/// RFC 9293 §3.6 (SHLD-3, from RFC 1122 §4.2.2.13): "if new data is received after CLOSE is called, its
/// TCP SHOULD send a RST to show that data was lost". b calls close() (a full close, not shutdown), so b's
/// socket can no longer deliver data: the first segment a sends afterwards is answered by a RST, and
/// RFC 9293 §3.10.7.4 tells a's side to report "connection reset".
///
/// Linux (tcp_input.c, tcp_rcv_state_process): data arriving at a socket whose receive side is shut is
/// answered by a reset (`TCPAbortOnData`); the RST is built by `tcp_v4_send_reset` for the offending
/// segment, so it carries SEQ = that segment's ACK and no ACK bit (RFC 9293 §3.10.7.1's form for a segment
/// with ACK). On a (in CLOSE-WAIT when the RST comes), `tcp_reset` records EPIPE, and because a already
/// received b's FIN a read returns 0 (EOF) rather than the error: `tcp_recvmsg` checks "done" before the
/// pending error.
///
/// Cases: b closes; a optionally reads b's EOF first, then writes 1–3000 bytes, waits 20 ms, reads, and
/// writes 1–3 more times. Checked: a's first write succeeds and its data leaves a (a segment from A after
/// B's FIN); B answers with a RST whose seq is that segment's ack and whose flags are `R` (one per segment
/// at most: a segment already in flight meets no socket and draws its own RST); A sends nothing after the
/// first RST; every later write fails with EPIPE (SIGPIPE is not raised: MSG_NOSIGNAL); a's read
/// returns EOF.
pub struct WriteAfterPeerClose;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteAfterPeerCloseCase {
    pub read_eof_first: bool,
    pub first_write: usize,
    pub later_writes: Vec<usize>,
}

impl Property for WriteAfterPeerClose {
    type Case = WriteAfterPeerCloseCase;
    type Observed = ProgramObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.close.write_after_peer_close",
            suite: "tcp-lifecycle",
            title: "after the peer's close(), the first write leaves and is answered by RST; later writes fail with EPIPE",
            clauses: &[
                "RFC 9293 §3.6 (SHLD-3)",
                "RFC 1122 §4.2.2.13",
                "RFC 9293 §3.10.7.4",
            ],
            questions: &["Q34", "Q35"],
            needs: Needs {
                link: LinkKind::Veth,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> WriteAfterPeerCloseCase {
        WriteAfterPeerCloseCase {
            read_eof_first: rng.gen(),
            first_write: rng.gen_range(1..=3000),
            later_writes: (0..rng.gen_range(1..=3))
                .map(|_| rng.gen_range(1..=3000))
                .collect(),
        }
    }

    fn describe(&self, c: &WriteAfterPeerCloseCase) -> String {
        format!(
            "b closes; a {}writes {}, then reads and writes {:?}",
            if c.read_eof_first { "reads EOF, " } else { "" },
            c.first_write,
            c.later_writes
        )
    }

    fn execute(
        &self,
        case: &WriteAfterPeerCloseCase,
        env: &CaseEnv,
    ) -> Result<ProgramObserved, HarnessError> {
        let mut p = connected(&[], &[]);
        p.b.extend([Op::Close { sock: 1 }, Op::Sync]);
        // a waits for b's FIN (the socket turns readable at EOF) so the write happens in CLOSE-WAIT.
        p.a.extend([Op::Sync, Op::WaitReadable { sock: 0, ms: 1000 }]);
        if case.read_eof_first {
            p.a.push(Op::Read { sock: 0, max: 1000 });
        }
        p.a.extend([
            Op::Write {
                sock: 0,
                len: case.first_write,
            },
            // The RST comes back in tens of µs on veth; 20 ms covers a loaded machine.
            Op::Sleep { ms: 20 },
            Op::Read { sock: 0, max: 1000 },
        ]);
        for &w in &case.later_writes {
            p.a.push(Op::Write { sock: 0, len: w });
        }
        let (outcomes, sockets) = run_program(env.lab, &p, exec_config(env))?;
        Ok(ProgramObserved { outcomes, sockets })
    }

    fn check(
        &self,
        case: &WriteAfterPeerCloseCase,
        observed: &ProgramObserved,
        trace: &Trace,
    ) -> Verdict {
        const CLAUSE: &str = "RFC 9293 §3.6 (SHLD-3: data after CLOSE is answered by RST)";
        let mut findings = Findings::default();
        let segs = segments(trace);
        let writes = outcomes_of(&observed.outcomes, Host::A, |op| {
            matches!(op, Op::Write { .. })
        });
        let reads = outcomes_of(&observed.outcomes, Host::A, |op| {
            matches!(op, Op::Read { .. })
        });
        // The sockets, reported after the wire (the wire says why a write did not fail).
        let mut sockets = Findings::default();
        if let Some(first) = writes.first() {
            sockets.check(
                first.result
                    == OpResult::Value {
                        value: case.first_write as u64,
                    },
                || {
                    Violation::new(
                        "RFC 9293 §3.10.7.4 (CLOSE-WAIT: SEND is still allowed)",
                        "the first write after the peer's close() did not succeed",
                    )
                    .field("write()")
                    .expected(case.first_write)
                    .actual(first.result.render())
                },
            );
        }
        for w in writes.iter().skip(1) {
            sockets.check(w.result.errno() == Some("EPIPE"), || {
                Violation::new(
                    "RFC 9293 §3.10.7.4 (after a RST: \"connection reset\"); Linux EPIPE",
                    "a write after the peer's RST did not fail with EPIPE",
                )
                .field(format!("write() (op {})", w.index))
                .expected("EPIPE")
                .actual(w.result.render())
            });
        }
        if let Some(last_read) = reads.last() {
            sockets.check(
                read_result(&last_read.result).is_some_and(|(_, eof, _)| eof),
                || {
                    Violation::new(
                        "Linux tcp_recvmsg (end of stream is reported before the pending reset)",
                        "a's read after the peer's FIN and RST did not return EOF",
                    )
                    .field("read()")
                    .expected("0 (EOF)")
                    .actual(last_read.result.render())
                },
            );
        }

        let Some(b_fin) = segs.iter().find(|s| s.from == Host::B && s.flags.fin) else {
            findings.push(
                Violation::new("RFC 9293 §3.6", "b's close() sent no FIN")
                    .field("flags")
                    .expected("a FIN from B")
                    .actual("none in the capture"),
            );
            findings.append(sockets);
            return findings.verdict();
        };
        let Some(data) = segs
            .iter()
            .find(|s| s.from == Host::A && s.len > 0 && s.index > b_fin.index)
        else {
            findings.push(
                Violation::new(
                    "RFC 9293 §3.10.7.4 (CLOSE-WAIT: SEND is still allowed)",
                    "the first write after the peer's close() never left A",
                )
                .frame(b_fin.number)
                .field("payload")
                .expected(format!("{} bytes from A after B's FIN", case.first_write))
                .actual("no data segment from A"),
            );
            findings.append(sockets);
            return findings.verdict();
        };
        let rsts: Vec<&Seg> = segs.iter().filter(|s| s.flags.rst).collect();
        // Segments a sent after b's FIN: each one that reaches b may draw its own RST (the first finds the
        // closed socket and aborts it; the next ones find no socket at all, RFC 9293 §3.10.7.1).
        let a_after_fin: Vec<&Seg> = segs
            .iter()
            .filter(|s| s.from == Host::A && s.index > b_fin.index && s.seg_len() > 0)
            .collect();
        match rsts.first() {
            None => findings.push(
                Violation::new(
                    CLAUSE,
                    "data sent after the peer's close() was not answered by a RST",
                )
                .frame(data.number)
                .field("reply")
                .expected(format!("R with seq {} (the segment's ack)", data.ack))
                .actual("no RST in the capture"),
            ),
            Some(first_rst) => {
                for rst in &rsts {
                    findings.check(rst.from == Host::B, || {
                        Violation::new(CLAUSE, "the RST came from the writer, not the closed side")
                            .frame(rst.number)
                            .field("source")
                            .expected("B")
                            .actual("A")
                    });
                    let answers = a_after_fin
                        .iter()
                        .any(|s| s.index < rst.index && s.ack == rst.seq);
                    findings.check(answers && !rst.flags.ack, || {
                        Violation::new(
                            "RFC 9293 §3.10.7.1 (reset for a segment with ACK: <SEQ=SEG.ACK><CTL=RST>)",
                            "the RST does not carry the acknowledgment number of a segment A sent",
                        )
                        .frames([data.number, rst.number])
                        .field("seq, flags")
                        .expected(format!("seq {} flags R", data.ack))
                        .actual(format!("seq {} flags {}", rst.seq, flags(rst)))
                    });
                }
                findings.check(rsts.len() <= a_after_fin.len(), || {
                    Violation::new(
                        "RFC 9293 §3.10.7.1 (one reset per offending segment)",
                        "more RSTs than segments A sent after B's FIN",
                    )
                    .frames(rsts.iter().map(|s| s.number))
                    .field("RST count")
                    .expected(format!("at most {}", a_after_fin.len()))
                    .actual(rsts.len())
                });
                // a's segments already on their way when the first RST arrived are legal; nothing may
                // follow the RST in a's own capture.
                let after: Vec<usize> = segs
                    .iter()
                    .filter(|s| s.from == Host::A && s.index > first_rst.index)
                    .map(|s| s.number)
                    .collect();
                findings.check(after.is_empty(), || {
                    Violation::new(
                        "RFC 9293 §3.10.7.4 (RST: the connection is reset, nothing more is sent)",
                        "A sent segments after the RST",
                    )
                    .frame(first_rst.number)
                    .frames(after.iter().copied())
                    .field("segments from A after the RST")
                    .expected("none")
                    .actual(after.len())
                });
            }
        }
        findings.append(sockets);
        findings.verdict()
    }
}
