use harness::exec::OpResult;
use harness::frame::Host;
use harness::ops::Op;
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
            subject: Subject::B,
            needs: Needs {
                links: &[LinkKind::Veth],
                kernel: &[],
                caps: &[Cap::Tcp],
                ethernet: false,
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
        ProgramObserved::run(env, &p, IO_TIMEOUT_MS)
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
