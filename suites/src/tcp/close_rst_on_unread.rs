use harness::frame::Host;
use harness::property::{Cap, Subject};
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::Family;
use harness::trace::Trace;
use harness::wire::TcpRepr;
use harness::HarnessError;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How long b's ops after a's close wait for what the close sent (returns at its arrival).
const RESET_WAIT_MS: u32 = 1_000;

/// b's unread data must have reached a this long before a's close() for the case to test what it means to: the
/// capture stamps a segment when a's device receives it, and a's TCP takes it into the receive queue in softirq,
/// which a loaded machine may defer. Over a relay or a SUT link the 5 ms a sleeps may not even bring the data
/// (the forwarder is a thread of its own, and a busy machine delays it: measured 9 ms with smoltcp on b).
const UNREAD_BEFORE_CLOSE: std::time::Duration = std::time::Duration::from_millis(1);

/// close() with unread data aborts with RST (lab Q35).
///
/// RFC 9293 §3.6 (SHLD-3 via RFC 1122 §4.2.2.13): a host that closes a connection while received data is
/// still unread SHOULD send a RST to show the data was lost; RFC 2525 §2.17 documents the failure to do so.
/// SO_LINGER {on, 0} makes close() abortive too (socket(7)). Cases: b sends 1–5000 bytes that a never reads,
/// or a sets SO_LINGER 0 (with or without unread data); then a closes. Checked: a sends a RST and never a
/// FIN; the RST's sequence number is a's SND.NXT (nothing after the data a sent); b's next read fails with
/// ECONNRESET (the Linux errno for a received RST) and its next write with EPIPE.
pub struct RstOnUnread;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RstOnUnreadCase {
    pub unread: usize,
    pub linger_zero: bool,
}

impl Property for RstOnUnread {
    type Case = RstOnUnreadCase;
    type Observed = crate::conn::ProgramObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.close.rst_on_unread",
            suite: "tcp-lifecycle",
            title: "close() with unread data, or with SO_LINGER 0, sends RST instead of FIN; the peer's read gets ECONNRESET",
            clauses: &["RFC 9293 §3.6 (SHLD-3)", "RFC 1122 §4.2.2.13", "RFC 2525 §2.17"],
            questions: &["Q35"],
            subject: Subject::Both,
            needs: Needs {
                links: &[LinkKind::Veth],
                kernel: &[],
                caps: &[Cap::Tcp, Cap::Abort],
                ethernet: false,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> RstOnUnreadCase {
        let linger_zero = rng.gen_bool(0.4);
        RstOnUnreadCase {
            unread: if linger_zero && rng.gen_bool(0.5) {
                0
            } else {
                rng.gen_range(1..=5000)
            },
            linger_zero,
        }
    }

    fn describe(&self, c: &RstOnUnreadCase) -> String {
        format!(
            "a closes with {} unread byte(s){}",
            c.unread,
            if c.linger_zero {
                " and SO_LINGER {on, 0}"
            } else {
                ""
            }
        )
    }

    fn execute(
        &self,
        case: &RstOnUnreadCase,
        env: &CaseEnv,
    ) -> Result<crate::conn::ProgramObserved, HarnessError> {
        use harness::ops::{Op, Program, SockKind, SockOpt};
        let port = 5001;
        let mut a = vec![
            Op::Sync,
            Op::Socket {
                kind: SockKind::Tcp,
            },
            Op::Connect { sock: 0, port },
            Op::Sync,
        ];
        let mut b = vec![
            Op::Socket {
                kind: SockKind::Tcp,
            },
            Op::Bind { sock: 0, port },
            Op::Listen {
                sock: 0,
                backlog: 4,
            },
            Op::Sync,
            Op::Sync,
            Op::Accept { sock: 0 },
        ];
        if case.unread > 0 {
            b.push(Op::Write {
                sock: 1,
                len: case.unread,
            });
        }
        b.push(Op::Sync);
        a.push(Op::Sync);
        // Let the data arrive in a's receive queue before it closes.
        a.push(Op::Sleep { ms: 5 });
        if case.linger_zero {
            a.push(Op::SetOpt {
                sock: 0,
                opt: SockOpt::Linger(Some(0)),
            });
        }
        a.push(Op::Close { sock: 0 });
        a.push(Op::Sync);
        b.push(Op::Sync);
        b.push(Op::Read {
            sock: 1,
            max: 65_536,
        });
        b.push(Op::Write { sock: 1, len: 10 });
        let (outcomes, sockets) = harness::exec::run_program(
            env.lab,
            &Program { a, b },
            harness::exec::ExecConfig {
                // b's read waits for the RST (or FIN) a's close sends: it returns as soon as that arrives, and
                // a relay or a SUT under load may take longer than the default 40 ms to deliver it.
                io_timeout_ms: RESET_WAIT_MS,
                ..harness::exec::ExecConfig::new(env.seed, env.family)
            },
        )?;
        Ok(crate::conn::ProgramObserved { outcomes, sockets })
    }

    fn check(
        &self,
        case: &RstOnUnreadCase,
        observed: &crate::conn::ProgramObserved,
        trace: &Trace,
    ) -> Verdict {
        const CLAUSE: &str = "RFC 9293 §3.6 (SHLD-3); RFC 2525 §2.17";
        if let Some(reason) = unread_arrived_late(case, trace) {
            return Verdict::Invalid { reason };
        }
        let mut findings = Findings::default();
        let from_a: Vec<(usize, &TcpRepr)> = trace
            .frames
            .iter()
            .filter(|f| f.from == Some(Host::A))
            .filter_map(|f| f.tcp().map(|t| (f.number, t)))
            .collect();
        let fins: Vec<usize> = from_a
            .iter()
            .filter(|(_, t)| t.flags.fin)
            .map(|(n, _)| *n)
            .collect();
        findings.check(fins.is_empty(), || {
            Violation::new(
                CLAUSE,
                "a closed with unread data (or SO_LINGER 0) with a FIN: the data loss is hidden",
            )
            .frames(fins.iter().copied())
            .field("flags")
            .expected("R (abort)")
            .actual("F (orderly close)")
        });
        let rst = from_a.iter().find(|(_, t)| t.flags.rst);
        match rst {
            None => findings.push(
                Violation::new(
                    CLAUSE,
                    "a closed with unread data (or SO_LINGER 0) but sent no RST",
                )
                .field("segment from A after close()")
                .expected("RST")
                .actual("none before the capture ended"),
            ),
            Some((n, t)) => {
                // a sent only its SYN, so SND.NXT is ISN + 1.
                let syn = from_a.iter().find(|(_, t)| t.flags.syn).map(|(_, t)| t.seq);
                if let Some(isn) = syn {
                    findings.check(t.seq == isn + 1, || {
                        Violation::new(
                            "RFC 9293 §3.10.4 (ABORT: <SEQ=SND.NXT><CTL=RST>)",
                            "the RST does not carry SND.NXT",
                        )
                        .frame(*n)
                        .field("seq (relative)")
                        .expected(1)
                        .actual(t.seq - isn)
                    });
                }
            }
        }
        let b_ops: Vec<&harness::exec::OpOutcome> = observed
            .outcomes
            .iter()
            .filter(|o| o.host == Host::B)
            .collect();
        let read = b_ops
            .iter()
            .rev()
            .find(|o| matches!(o.op, harness::ops::Op::Read { .. }));
        let write = b_ops
            .iter()
            .rev()
            .find(|o| matches!(o.op, harness::ops::Op::Write { len: 10, .. }));
        if let Some(r) = read {
            findings.check(r.result.errno() == Some("ECONNRESET"), || {
                Violation::new(
                    "RFC 9293 §3.10.7.4 (RST: \"connection reset\"); Linux ECONNRESET",
                    "b's read after the RST did not report the reset",
                )
                .field("read()")
                .expected("ECONNRESET")
                .actual(r.result.render())
            });
        }
        if let Some(w) = write {
            findings.check(w.result.errno() == Some("EPIPE"), || {
                Violation::new(
                    "RFC 9293 §3.10.7.4; Linux EPIPE after a reset",
                    "b's write after the reset did not fail with EPIPE",
                )
                .field("write()")
                .expected("EPIPE")
                .actual(w.result.render())
            });
        }
        let _ = case;
        findings.verdict()
    }
}

/// Why the case did not set up what it tests — a closing with `case.unread` bytes in its receive queue — when
/// b's data reached a only after (or just before) a's first FIN or RST; `None` when it did.
fn unread_arrived_late(case: &RstOnUnreadCase, trace: &Trace) -> Option<String> {
    if case.unread == 0 || case.linger_zero {
        return None; // SO_LINGER 0 aborts whatever the receive queue holds
    }
    let close = trace
        .frames
        .iter()
        .find(|f| f.from == Some(Host::A) && f.tcp().is_some_and(|t| t.flags.fin || t.flags.rst))?;
    let (mut bytes, mut last_ns) = (0usize, 0u64);
    for f in trace.frames.iter().take_while(|f| f.number < close.number) {
        if let (Some(Host::B), Some(t)) = (f.from, f.tcp()) {
            if t.payload_len > 0 {
                bytes += t.payload_len;
                last_ns = f.rel_ns;
            }
        }
    }
    let margin_ns = UNREAD_BEFORE_CLOSE.as_nanos() as u64;
    if bytes >= case.unread && last_ns + margin_ns <= close.rel_ns {
        return None;
    }
    Some(format!(
        "b's {} byte(s) had not reached a {} ms before a's close (frame #{}: {} byte(s) before it): the machine was too loaded to set up this case",
        case.unread,
        UNREAD_BEFORE_CLOSE.as_millis(),
        close.number,
        bytes
    ))
}
