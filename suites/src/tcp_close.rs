//! TCP connection closing (suite `tcp-lifecycle`): the three close shapes, half-close, and writing after the
//! peer closed. (`tcp.close.rst_on_unread` lives in `tcp_lifecycle.rs` with the other RST properties.)

use harness::exec::{run_program, ExecConfig, OpResult};
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

use crate::conn::{connected, flags, outcomes_of, read_result, segments, ProgramObserved, Seg};

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
/// from A after B's FIN at most, pure ACKs included: a segment already in flight, or a's ACK of the FIN that
/// b takes after the data, meets no socket and draws its own RST); A sends nothing after the
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
        // Segments a sent after b's FIN: each one that reaches b may draw its own RST (the first data finds
        // the closed socket and aborts it; whatever comes next finds no socket at all, and RFC 9293
        // §3.10.7.1 answers "any incoming segment except a reset" with a reset). That includes a's pure ACK
        // of b's FIN: veth hands each frame to the backlog of the CPU that sent it, so when a's thread
        // moved between its ACK and its write, b may take the data first (FIN-WAIT-1, the data ACKs the
        // FIN: tcp_rcv_state_process → TCPAbortOnData, RST) and the ACK after it (no socket: RST with
        // SEQ = SEG.ACK, byte for byte the same RST). Measured: b's TcpOutRsts = 2 and TCPAbortOnData = 1
        // for one data segment and one pure ACK, 4 µs apart; 4 such cases in ~3,000 at load 8-65.
        let a_after_fin: Vec<&Seg> = segs
            .iter()
            .filter(|s| s.from == Host::A && s.index > b_fin.index && !s.flags.rst)
            .collect();
        let data_after_fin = a_after_fin.iter().filter(|s| s.seg_len() > 0).count();
        if rsts.len() > data_after_fin {
            findings.note(format!(
                "{} RSTs for {} data segment(s): a's pure ACK of B's FIN reached b after the data had reset the connection",
                rsts.len(),
                data_after_fin
            ));
        }
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
                    .expected(format!(
                        "at most {} (one per segment from A after B's FIN, pure ACKs included)",
                        a_after_fin.len()
                    ))
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
            needs: Needs {
                link: LinkKind::Veth,
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
        let (outcomes, sockets) = run_program(env.lab, &p, exec_config(env))?;
        Ok(CloseShapesObserved {
            program: ProgramObserved { outcomes, sockets },
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
