//! The accept queue (`tcp.accept.backlog`, suite `tcp-lifecycle`).
//!
//! Accept-queue overflow has two shapes on Linux, both measured by this property before being checked: a SYN that
//! meets a full queue is dropped whatever `tcp_abort_on_overflow` says (tcp_conn_request:
//! LINUX_MIB_LISTENOVERFLOWS); a handshake's final ACK that meets a full queue is reset with
//! `tcp_abort_on_overflow=1` and dropped silently with 0. On veth a blocking connect's whole handshake completes
//! inside the connect() call, so the second shape needs two SYNs in flight at once: those cases run over the relay
//! with 5 ms each way.

use harness::property::{Cap, KernelNeed, Subject};
use std::collections::BTreeSet;

use harness::exec::{ExecConfig, OpOutcome, OpResult};
use harness::frame::Host;
use harness::ops::{Op, Program, SockKind, TcpState};
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::Family;
use harness::trace::Trace;
use harness::{HarnessError, LabConfig};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::handshake_common::{connection, handshake, ops_of, presence, run, sysctl, Seg};
use crate::conn::ProgramObserved;

/// How long a connect into a full accept queue is given: well below the first SYN retransmission at
/// TCP_TIMEOUT_INIT (1 s), well above a veth handshake (tens of µs; docs/kernel-facts.md).
const OVERFLOW_CONNECT_MS: u32 = 200;

/// Judges the final-ACK race: both raced handshakes complete on the wire; with `tcp_abort_on_overflow=1` b
/// resets the connection whose final ACK met the full queue (`<SEQ=SEG.ACK><CTL=RST>`, RFC 9293 §3.5.2: a reset
/// for a segment with ACK takes its sequence number from the ACK field), with 0 it drops that ACK silently (no RST; its SYN-ACK would be
/// retransmitted after TCP_TIMEOUT_INIT, 1 s, not waited for). Returns the raced connection b may accept.
fn check_race(
    f: &mut Findings,
    c: &BacklogCase,
    trace: &Trace,
    raced: &[&&OpOutcome],
    last_accepted: Option<u16>,
) -> Option<u16> {
    const CLAUSE: &str = "ip-sysctl tcp_abort_on_overflow; listen(2)";
    let ports: Vec<u16> = raced
        .iter()
        .filter_map(|o| o.sock.as_ref().and_then(|s| s.local_port))
        .collect();
    if ports.len() != 2 {
        f.push(
            Violation::new(CLAUSE, "the two raced connects have no local ports")
                .field("getsockname()")
                .expected("2 ports")
                .actual(ports.len()),
        );
        return None;
    }
    let mut reset = Vec::new();
    for &p in &ports {
        let segs = connection(trace, p, c.port);
        let hs = handshake(&segs);
        let Some((ack_no, _, ack)) = hs.ack else {
            f.push(
                Violation::new("RFC 9293 §3.5", format!("the raced connection from port {p} did not finish its handshake on the wire"))
                    .frames(segs.iter().map(|s| s.0))
                    .field("flags")
                    .expected("S, S., . (both SYNs reach b while the queue still has room)")
                    .actual(format!("SYN {}, SYN-ACK {}, ACK {}", presence(hs.syn.is_some()), presence(hs.syn_ack.is_some()), presence(hs.ack.is_some()))),
            );
            continue;
        };
        if let Some((rst_no, _, rst)) = segs
            .iter()
            .find(|(n, from, t)| *n > ack_no && *from == Some(Host::B) && t.flags.rst)
        {
            reset.push(p);
            f.check(rst.seq == ack.ack && !rst.flags.ack, || {
                Violation::new(
                    "RFC 9293 §3.5.2 (a reset for a segment with ACK: <SEQ=SEG.ACK><CTL=RST>)",
                    "the overflow RST does not carry SEQ=SEG.ACK without the ACK bit",
                )
                .frames([ack_no, *rst_no])
                .field("seq/flags")
                .expected(format!("seq {} flags R", ack.ack))
                .actual(format!("seq {} flags {}", rst.seq, rst.flags.tcpdump()))
            });
        }
    }
    let want_resets = c.abort_on_overflow as usize;
    f.check(reset.len() == want_resets, || {
        Violation::new(CLAUSE, "a final ACK that met a full accept queue was not handled as tcp_abort_on_overflow says")
            .field("RST from b on the raced connections")
            .expected(if c.abort_on_overflow {
                "exactly one (tcp_abort_on_overflow=1: reset)"
            } else {
                "none (tcp_abort_on_overflow=0: the ACK is dropped, the SYN-ACK retransmitted later)"
            })
            .actual(format!("{} (ports {reset:?})", reset.len()))
    });
    match last_accepted {
        Some(p) if ports.contains(&p) && !reset.contains(&p) => Some(p),
        // The accepted one must be a raced connection that was not reset: expect the first raced port so the
        // FIFO check reports the difference.
        _ => ports.iter().find(|p| !reset.contains(p)).copied(),
    }
}

/// Passive open and the accept queue (lab Q10, Q11, Q14).
///
/// RFC 9293 §3.5 and §3.9.1 (OPEN, passive): the handshake completes in the TCP layer; the application's
/// accept (Linux) only takes a completed connection off the queue. listen(2): `backlog` bounds the queue of
/// completely established sockets waiting to be accepted; "if a connection request arrives when the queue is
/// full, ... the request may be ignored so that a later reattempt at connection succeeds". Linux holds
/// backlog + 1 connections (`sk_acceptq_is_full`: `sk_ack_backlog > sk_max_ack_backlog`) and drops a SYN that
/// meets a full queue (tcp_conn_request, LINUX_MIB_LISTENOVERFLOWS) whatever `tcp_abort_on_overflow` says:
/// ip-sysctl's "reset them" applies to the final ACK of a handshake meeting a full queue (see the module doc).
///
/// Cases: backlog 1–4, `tcp_abort_on_overflow` 0 or 1 on b, 1..=backlog+1 queued connects plus 0–2 that
/// overflow; or (30 %) `backlog` queued connects then two non-blocking connects at once over a relay with
/// [`RACE_DELAY_US`] each way and `tcp_syncookies=0` on b, so both SYNs are answered and the second final ACK
/// meets a full queue (see [`check_race`]). b calls accept only after every connect returned; then one more
/// connection is made and accepted.
///
/// Checked: every connect within backlog+1 returns before b calls accept, ESTABLISHED, its SYN, SYN-ACK and ACK
/// on the wire; each overflowing connect does not complete within [`OVERFLOW_CONNECT_MS`] and its SYN gets
/// no answer (no SYN-ACK, no RST); accepts return new, distinct sockets whose peers are the queued connects
/// in connect order (FIFO), none of the overflowing ones; the listener stays in LISTEN and the later
/// connection is accepted too.
pub struct AcceptBacklog;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BacklogCase {
    pub port: u16,
    pub backlog: i32,
    /// Connects that fit in the queue (1..=backlog+1).
    pub queued: usize,
    /// Connects beyond backlog+1 (only when `queued` = backlog+1).
    pub overflow: usize,
    pub abort_on_overflow: bool,
    /// Final-ACK race: with `queued` = backlog, two connects are started at once over a 5 ms relay so that the
    /// second final ACK meets a full queue (then `overflow` = 0).
    #[serde(default)]
    pub race: bool,
}

impl BacklogCase {
    /// Connections b accepts from the first queue.
    fn accepted(&self) -> usize {
        self.queued + self.race as usize
    }
    /// a's connect ops before the later connection.
    fn connects(&self) -> usize {
        self.queued + self.overflow + 2 * self.race as usize
    }
}

/// One-way delay of the relay in race cases: both SYNs reach b before either final ACK (RTT 10 ms ≫ the
/// microseconds between two non-blocking connect() calls).
const RACE_DELAY_US: u64 = 5_000;
/// How long a waits after the raced connects: two round trips (20 ms) plus slack for a loaded 2-core box.
const RACE_WAIT_MS: u32 = 80;

impl Property for AcceptBacklog {
    type Case = BacklogCase;
    type Observed = ProgramObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.accept.backlog",
            suite: "tcp-lifecycle",
            title: "the handshake completes before accept(); completed connections queue (backlog + 1 on Linux) and are accepted FIFO as new sockets; a SYN meeting a full queue is ignored; the listener stays usable",
            clauses: &["RFC 9293 §3.5", "RFC 9293 §3.9.1", "listen(2)"],
            questions: &["Q10", "Q11", "Q14"],
            subject: Subject::B,
            needs: Needs {
                links: &[LinkKind::Veth, LinkKind::Relay],
                kernel: &[KernelNeed::Sysctl, KernelNeed::TcpInfo],
                caps: &[Cap::Tcp, Cap::MultiConn],
                ethernet: false,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> BacklogCase {
        let backlog = rng.gen_range(1..=4);
        if rng.gen_bool(0.3) {
            return BacklogCase {
                port: rng.gen_range(1024..=60999),
                backlog,
                queued: backlog as usize,
                overflow: 0,
                abort_on_overflow: rng.gen(),
                race: true,
            };
        }
        let full = rng.gen_bool(0.6);
        let queued = if full {
            backlog as usize + 1
        } else {
            rng.gen_range(1..=backlog as usize + 1)
        };
        BacklogCase {
            port: rng.gen_range(1024..=60999),
            backlog,
            queued,
            overflow: if queued == backlog as usize + 1 {
                rng.gen_range(0..=2)
            } else {
                0
            },
            abort_on_overflow: rng.gen(),
            race: false,
        }
    }

    fn lab_config(&self, c: &BacklogCase) -> LabConfig {
        let mut cfg = LabConfig::default();
        cfg.sysctls.push(sysctl(
            Host::B,
            "net.ipv4.tcp_abort_on_overflow",
            c.abort_on_overflow,
        ));
        if c.race {
            let delay = harness::link::relay::Impairment {
                delay_us: RACE_DELAY_US,
                ..Default::default()
            };
            cfg.link = harness::link::LinkSpec::Relay(harness::link::RelaySpec {
                a_to_b: delay.clone(),
                b_to_a: delay,
                seed: 1,
            });
            // Two handshakes pending at once must both get a real SYN-ACK, not a SYN cookie (the request queue
            // check in tcp_conn_request), so the second final ACK reaches the accept-queue check.
            cfg.sysctls
                .push(sysctl(Host::B, "net.ipv4.tcp_syncookies", false));
        }
        cfg
    }

    fn describe(&self, c: &BacklogCase) -> String {
        if c.race {
            return format!(
                "listen(backlog {}), {} queued, then two connects at once over a {} ms relay (the second final ACK meets a full queue), tcp_abort_on_overflow={}",
                c.backlog,
                c.queued,
                RACE_DELAY_US / 1000,
                c.abort_on_overflow as u8
            );
        }
        format!(
            "listen(backlog {}), {} queued + {} overflowing connect(s), tcp_abort_on_overflow={}, then accept all and one more",
            c.backlog, c.queued, c.overflow, c.abort_on_overflow as u8
        )
    }

    fn execute(&self, c: &BacklogCase, env: &CaseEnv) -> Result<ProgramObserved, HarnessError> {
        let tcp = || Op::Socket {
            kind: SockKind::Tcp,
        };
        let total = c.queued + c.overflow;
        let mut a = vec![Op::Sync];
        for i in 0..total {
            a.push(tcp());
            a.push(Op::Connect {
                sock: i,
                port: c.port,
            });
        }
        if c.race {
            for i in total..total + 2 {
                a.push(tcp());
                a.push(Op::SetOpt {
                    sock: i,
                    opt: harness::ops::SockOpt::NonBlocking(true),
                });
            }
            a.push(Op::Connect {
                sock: total,
                port: c.port,
            });
            a.push(Op::Connect {
                sock: total + 1,
                port: c.port,
            });
            a.push(Op::Sleep { ms: RACE_WAIT_MS });
        }
        a.push(Op::Sync);
        let b = {
            let mut b = vec![
                tcp(),
                Op::Bind {
                    sock: 0,
                    port: c.port,
                },
                Op::Listen {
                    sock: 0,
                    backlog: c.backlog,
                },
                Op::Sync,
                // a connects while b does not call accept.
                Op::Sync,
            ];
            for _ in 0..c.accepted() {
                b.push(Op::Accept { sock: 0 });
            }
            // A no-wait op on each accepted socket snapshots its peer.
            for k in 0..c.accepted() {
                b.push(Op::WaitWritable { sock: 1 + k, ms: 0 });
            }
            b.push(Op::Sync);
            b.push(Op::Sync);
            b.push(Op::Accept { sock: 0 });
            b.push(Op::WaitWritable {
                sock: 1 + c.accepted(),
                ms: 0,
            });
            b
        };
        // The later connection, after the queue was drained.
        a.push(Op::Sync);
        a.push(tcp());
        a.push(Op::Connect {
            sock: c.connects(),
            port: c.port,
        });
        a.push(Op::Sync);
        let mut cfg = ExecConfig::new(env.seed, env.family);
        cfg.connect_timeout_ms = OVERFLOW_CONNECT_MS;
        cfg.io_timeout_ms = 300;
        run(env, Program { a, b }, cfg)
    }

    fn check(&self, c: &BacklogCase, observed: &ProgramObserved, trace: &Trace) -> Verdict {
        const QUEUE: &str = "RFC 9293 §3.5, §3.9.1; listen(2)";
        let mut f = Findings::default();
        let a_ops = ops_of(observed, Host::A);
        let b_ops = ops_of(observed, Host::B);
        let connects: Vec<&&OpOutcome> = a_ops
            .iter()
            .filter(|o| matches!(o.op, Op::Connect { .. }))
            .collect();
        let total = c.connects();
        if connects.len() != total + 1 {
            return Verdict::Invalid {
                reason: format!(
                    "a ran {} connects, the program has {}",
                    connects.len(),
                    total + 1
                ),
            };
        }
        let port_of = |o: &OpOutcome| o.sock.as_ref().and_then(|s| s.local_port);
        // Queued connects: complete before any accept, ESTABLISHED, handshake on the wire.
        let mut queued_ports = Vec::new();
        for (i, o) in connects.iter().take(c.queued).enumerate() {
            let port = port_of(o);
            let state = o.sock.as_ref().and_then(|s| s.state());
            f.check(o.result == OpResult::Done && state == Some(TcpState::Established), || {
                Violation::new(QUEUE, format!("connect #{i} did not complete while b had not called accept (the queue holds backlog + 1 = {})", c.backlog + 1))
                    .field("connect()")
                    .expected("ok, ESTABLISHED")
                    .actual(format!("{}, {}", o.result.render(), state.map_or("?", |s| s.rfc_name())))
            });
            let Some(port) = port else { continue };
            queued_ports.push(port);
            let segs = connection(trace, port, c.port);
            let hs = handshake(&segs);
            f.check(
                hs.syn.is_some() && hs.syn_ack.is_some() && hs.ack.is_some(),
                || {
                    Violation::new(
                        "RFC 9293 §3.5",
                        format!(
                            "connect #{i} returned but its three-way handshake is not on the wire"
                        ),
                    )
                    .frames(segs.iter().map(|s| s.0))
                    .field("flags")
                    .expected("S, S., . before accept()")
                    .actual(format!(
                        "SYN {}, SYN-ACK {}, ACK {}",
                        presence(hs.syn.is_some()),
                        presence(hs.syn_ack.is_some()),
                        presence(hs.ack.is_some())
                    ))
                },
            );
        }
        // Overflowing connects: the SYN is ignored (both tcp_abort_on_overflow values).
        let mut overflow_ports = Vec::new();
        for (i, o) in connects.iter().enumerate().skip(c.queued).take(c.overflow) {
            f.check(o.result == OpResult::TimedOut, || {
                Violation::new(
                    "listen(2); Linux sk_acceptq_is_full (backlog + 1)",
                    format!("connect #{i} into a full accept queue did not stay unanswered"),
                )
                .field("connect()")
                .expected(format!(
                    "no completion within {OVERFLOW_CONNECT_MS} ms (SYN dropped)"
                ))
                .actual(o.result.render())
            });
            let Some(port) = port_of(o) else { continue };
            overflow_ports.push(port);
            let segs = connection(trace, port, c.port);
            // Only the first SYN is known to have met the full queue. a retransmits it after TCP_TIMEOUT_INIT
            // (1 s, RFC 6298 §2.1) if the case is still running then — only on a machine so loaded that the
            // case took that long — and by then accept() may have made room: an answer to that is legal.
            let a_syns: Vec<usize> = segs
                .iter()
                .enumerate()
                .filter(|(_, s)| s.1 == Some(Host::A) && s.2.flags.syn)
                .map(|(k, _)| k)
                .collect();
            let first_syn_window = a_syns.get(1).copied().unwrap_or(segs.len());
            let answers: Vec<&Seg> = segs[..first_syn_window]
                .iter()
                .filter(|s| s.1 == Some(Host::B))
                .collect();
            if segs[first_syn_window..]
                .iter()
                .any(|s| s.1 == Some(Host::B))
            {
                f.note("a SYN retransmitted after 1 s (TCP_TIMEOUT_INIT) was answered once the queue had room");
            }
            let syn = a_syns.first().map(|&k| &segs[k]);
            f.check(syn.is_some() && answers.is_empty(), || {
                Violation::new(
                    "listen(2); Linux tcp_conn_request (LISTENOVERFLOWS: SYN dropped)",
                    format!("the SYN of connect #{i} into a full accept queue was answered"),
                )
                .frames(segs.iter().map(|s| s.0))
                .field("reply to SYN")
                .expected(format!(
                    "nothing (tcp_abort_on_overflow={} only acts on a final ACK)",
                    c.abort_on_overflow as u8
                ))
                .actual(
                    answers
                        .first()
                        .map_or("no SYN on the wire".to_string(), |s| {
                            format!("[{}] from b", s.2.flags.tcpdump())
                        }),
                )
            });
        }
        // Accepts: new distinct sockets, peers in connect order, the listener still listening.
        let accepts: Vec<&&OpOutcome> = b_ops
            .iter()
            .filter(|o| matches!(o.op, Op::Accept { .. }))
            .collect();
        let mut seen_index = BTreeSet::new();
        let accepted_peer = |o: &OpOutcome| -> Option<u16> {
            let OpResult::Value { value } = o.result else {
                return None;
            };
            b_ops
                .iter()
                .find(|p| p.op.sock() == Some(value as usize))
                .and_then(|p| p.sock.as_ref().and_then(|s| s.peer_port))
        };
        let mut got_order = Vec::new();
        for (k, o) in accepts.iter().take(c.accepted()).enumerate() {
            match o.result {
                OpResult::Value { value } => {
                    f.check(value != 0 && seen_index.insert(value), || {
                        Violation::new(QUEUE, format!("accept #{k} did not return a new socket"))
                            .field("accept()")
                            .expected("a new socket index")
                            .actual(value)
                    });
                }
                ref other => f.push(
                    Violation::new(
                        QUEUE,
                        format!(
                            "accept #{k} found no queued connection although {} completed",
                            c.queued
                        ),
                    )
                    .field("accept()")
                    .expected("a new socket")
                    .actual(other.render()),
                ),
            }
            got_order.push(accepted_peer(o));
            let listening = o.sock.as_ref().and_then(|s| s.state());
            f.check(listening == Some(TcpState::Listen), || {
                Violation::new(
                    "RFC 9293 §3.9.1 (the listener stays open)",
                    format!("the listener left LISTEN after accept #{k}"),
                )
                .field("listener state")
                .expected("LISTEN")
                .actual(listening.map_or("?", |s| s.rfc_name()))
            });
        }
        let mut want_order: Vec<Option<u16>> = queued_ports.iter().map(|p| Some(*p)).collect();
        if c.race {
            let raced = &connects[c.queued..c.queued + 2];
            let admitted = check_race(&mut f, c, trace, raced, got_order.last().copied().flatten());
            want_order.push(admitted);
        }
        if got_order.len() == want_order.len() && !got_order.contains(&None) {
            f.check(got_order == want_order, || {
                Violation::new(
                    QUEUE,
                    "connections were not accepted in the order they completed (FIFO)",
                )
                .field("accepted peers' ports")
                .expected(render_ports(&want_order))
                .actual(render_ports(&got_order))
            });
            let leaked: Vec<u16> = got_order
                .iter()
                .flatten()
                .filter(|p| overflow_ports.contains(p))
                .copied()
                .collect();
            f.check(leaked.is_empty(), || {
                Violation::new(
                    QUEUE,
                    "an overflowing connection was accepted from the first queue",
                )
                .field("accepted peers' ports")
                .expected(format!("none of {overflow_ports:?}"))
                .actual(format!("{leaked:?}"))
            });
        }
        // The later connection.
        let later = connects[total];
        let later_accept = accepts.get(c.accepted());
        let later_ok = later.result == OpResult::Done
            && later_accept.is_some_and(|o| matches!(o.result, OpResult::Value { .. }));
        f.check(later_ok, || {
            Violation::new(
                "RFC 9293 §3.9.1 (the listener stays open)",
                "a connection after the queue was drained was not accepted",
            )
            .field("connect()/accept()")
            .expected("ok / a new socket")
            .actual(format!(
                "{} / {}",
                later.result.render(),
                later_accept.map_or("not run".to_string(), |o| o.result.render())
            ))
        });
        if let (Some(o), Some(port)) = (later_accept, port_of(later)) {
            let peer = accepted_peer(o);
            f.check(!later_ok || peer == Some(port), || {
                Violation::new(
                    QUEUE,
                    "the later accept returned a different connection than the later connect",
                )
                .field("accepted peer port")
                .expected(port)
                .actual(peer.map_or("?".to_string(), |p| p.to_string()))
            });
        }
        if c.race {
            f.note(format!(
                "final-ACK race, tcp_abort_on_overflow={}: {}",
                c.abort_on_overflow as u8,
                if c.abort_on_overflow {
                    "RST"
                } else {
                    "ACK dropped silently"
                }
            ));
        } else {
            f.note(format!(
                "queued {} of backlog+1 = {}, overflow {}",
                c.queued,
                c.backlog + 1,
                c.overflow
            ));
        }
        f.verdict()
    }
}

fn render_ports(ports: &[Option<u16>]) -> String {
    let v: Vec<String> = ports
        .iter()
        .map(|p| p.map_or("?".to_string(), |p| p.to_string()))
        .collect();
    v.join(", ")
}
