//! The TCP state machine (suite `tcp-lifecycle`): every state a connection's socket is seen in follows the
//! RFC 9293 §3.3.2 diagram, and every transition taken is justified by an operation or a segment.

use harness::property::{Cap, KernelNeed, Subject};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use harness::diag::DiagSocket;
use harness::exec::OpOutcome;
use harness::frame::Host;
use harness::ops::{Op, ShutdownHow, SockOpt, TcpState};
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::Family;
use harness::trace::{ConversationKind, Trace};
use harness::HarnessError;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::conn::ProgramObserved;
use crate::conn::{connected, PORT};

/// What makes a connection move (RFC 9293 §3.3.2, Figure 5's edge labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    /// The user called connect() (active OPEN: SYN sent).
    Connect,
    /// A SYN-ACK arrived for our SYN.
    SynAck,
    /// This side sent its FIN (close() or shutdown(SHUT_WR)).
    OwnFin,
    /// The peer's FIN arrived.
    PeerFin,
    /// The peer acknowledged our FIN.
    AckOfOwnFin,
    /// A RST arrived, or this side aborted (its own RST).
    Reset,
}

/// The RFC 9293 §3.3.2 diagram (Figure 5) as data, for a connection socket: (from, event(s), to). LISTEN and
/// SYN-RECEIVED are left out: a Linux listener never becomes a connection (accept() hands over a new socket
/// that is already ESTABLISHED), and NEW_SYN_RECV is a request sock, not a socket state. TIME-WAIT → CLOSED
/// (2·MSL = Linux TCP_TIMEWAIT_LEN, 60 s) never happens within a case, so it is not an edge here.
pub const DIAGRAM: &[(TcpState, &[Event], TcpState)] = &[
    (TcpState::Close, &[Event::Connect], TcpState::SynSent),
    (TcpState::SynSent, &[Event::SynAck], TcpState::Established),
    (TcpState::Established, &[Event::OwnFin], TcpState::FinWait1),
    (
        TcpState::Established,
        &[Event::PeerFin],
        TcpState::CloseWait,
    ),
    (
        TcpState::FinWait1,
        &[Event::AckOfOwnFin],
        TcpState::FinWait2,
    ),
    (TcpState::FinWait1, &[Event::PeerFin], TcpState::Closing),
    (
        TcpState::FinWait1,
        &[Event::PeerFin, Event::AckOfOwnFin],
        TcpState::TimeWait,
    ),
    (TcpState::FinWait2, &[Event::PeerFin], TcpState::TimeWait),
    (TcpState::Closing, &[Event::AckOfOwnFin], TcpState::TimeWait),
    (TcpState::CloseWait, &[Event::OwnFin], TcpState::LastAck),
    (TcpState::LastAck, &[Event::AckOfOwnFin], TcpState::Close),
    (TcpState::SynSent, &[Event::Reset], TcpState::Close),
    (TcpState::Established, &[Event::Reset], TcpState::Close),
    (TcpState::FinWait1, &[Event::Reset], TcpState::Close),
    (TcpState::FinWait2, &[Event::Reset], TcpState::Close),
    (TcpState::CloseWait, &[Event::Reset], TcpState::Close),
    (TcpState::Closing, &[Event::Reset], TcpState::Close),
    (TcpState::LastAck, &[Event::Reset], TcpState::Close),
];

/// Whether `to` is reachable from `from` through edges whose events all occurred, without passing through
/// CLOSED (which ends the connection); returns a shortest such path (states after `from`), or `None`.
pub fn legal_path(from: TcpState, to: TcpState, events: &BTreeSet<Event>) -> Option<Vec<TcpState>> {
    if from == to {
        return Some(Vec::new());
    }
    let mut prev: BTreeMap<u8, TcpState> = BTreeMap::new();
    let key = |s: TcpState| s as u8;
    let mut queue = VecDeque::from([from]);
    let mut seen = BTreeSet::from([key(from)]);
    while let Some(s) = queue.pop_front() {
        // CLOSED ends a connection: a path may start there (before connect()) but never pass through it.
        if s == TcpState::Close && s != from {
            continue;
        }
        for (a, needs, b) in DIAGRAM {
            if *a != s || !needs.iter().all(|e| events.contains(e)) || !seen.insert(key(*b)) {
                continue;
            }
            prev.insert(key(*b), s);
            if *b == to {
                let mut path = vec![to];
                let mut cur = s;
                while cur != from {
                    path.push(cur);
                    cur = prev[&key(cur)];
                }
                path.reverse();
                return Some(path);
            }
            queue.push_back(*b);
        }
    }
    None
}

/// How the case ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// a closes; b reads EOF and closes.
    ActiveA,
    /// b closes; a reads EOF and closes.
    ActiveB,
    /// a shuts down writing, b reads EOF and closes, a reads EOF and closes.
    HalfCloseA,
    /// Both close in the same barrier segment (the FINs may cross).
    BothClose,
    /// a aborts with SO_LINGER {on, 0}.
    AbortA,
    /// b closes with a's data unread (RST).
    UnreadB,
    /// a closes and b never closes (b stays in CLOSE-WAIT, a in FIN-WAIT-2).
    OnlyA,
}

/// State transitions (lab Q36).
///
/// RFC 9293 §3.3.2: "A connection progresses through a series of states during its lifetime", Figure 5
/// ([`DIAGRAM`]), driven by user calls (OPEN, CLOSE, ABORT) and arriving segments (SYN, FIN, ACK, RST).
///
/// Cases: a connection (connect() blocking or non-blocking), 0–5000 bytes each way, then one of seven
/// endings ([`Ending`]): either side closing first, half-close, both closing at once, abort by SO_LINGER 0,
/// close with unread data, or one side never closing; over veth or a relay with 3–8 ms one-way delay (which
/// keeps SYN-SENT, FIN-WAIT-1, CLOSING and LAST-ACK alive long enough to be sampled). Sampling: TCP_INFO after every op on a socket and on a poll (a no-op wait on each open socket
/// every 2 ms for 10 samples after each closing step), and sock_diag at the end for sockets no descriptor
/// holds (TIME-WAIT, orphans in FIN-WAIT-2 / LAST-ACK; absent means CLOSED).
///
/// Checked, per socket: each pair of consecutive observed states is joined by a path of the diagram whose
/// edges' events all happened (a path, not an edge: sampling can miss states in between) — this host's
/// connect(), close()/shutdown(SHUT_WR) and FIN on the wire, the peer's FIN, the peer's ACK of our FIN,
/// and RSTs, all read from the ops and the capture. Linux exception, in one place: when a socket that still
/// has a descriptor enters TIME-WAIT, `tcp_time_wait()` hands the connection to a timewait mini-socket and
/// the full socket reports CLOSE; so a descriptor's CLOSE followed by a sock_diag TIME-WAIT for the same
/// 4-tuple is read as TIME-WAIT.
pub struct StateTransitions;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateCase {
    pub a_bytes: usize,
    pub b_bytes: usize,
    pub ending: Ending,
    /// One-way delay of a relay link (0: veth). A few ms make the short-lived states (SYN-SENT,
    /// FIN-WAIT-1, CLOSING, LAST-ACK) last long enough for the 2 ms poll to see them.
    #[serde(default)]
    pub delay_ms: u32,
    /// connect() non-blocking, then a wait: SYN-SENT can be sampled.
    #[serde(default)]
    pub nonblocking_connect: bool,
}

pub struct StateObserved {
    pub program: ProgramObserved,
    pub a_diag: Vec<DiagSocket>,
    pub b_diag: Vec<DiagSocket>,
}

impl std::fmt::Debug for StateObserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateObserved")
            .field("program", &self.program)
            .field("a_diag", &self.a_diag)
            .field("b_diag", &self.b_diag)
            .finish()
    }
}

const ENDINGS: [Ending; 7] = [
    Ending::ActiveA,
    Ending::ActiveB,
    Ending::HalfCloseA,
    Ending::BothClose,
    Ending::AbortA,
    Ending::UnreadB,
    Ending::OnlyA,
];

/// A poll: `samples` no-op waits on every socket of `socks`, 2 ms apart.
fn poll(socks: &[usize], samples: usize) -> Vec<Op> {
    let mut ops = Vec::new();
    for _ in 0..samples {
        ops.push(Op::Sleep { ms: 2 });
        for &s in socks {
            ops.push(Op::WaitWritable { sock: s, ms: 0 });
        }
    }
    ops
}

impl Property for StateTransitions {
    type Case = StateCase;
    type Observed = StateObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.state.transitions",
            suite: "tcp-lifecycle",
            title: "every state a socket passes through follows the RFC 9293 diagram, each transition justified by an op or a segment",
            clauses: &["RFC 9293 §3.3.2 (Figure 5)"],
            questions: &["Q36"],
            subject: Subject::Both,
            needs: Needs {
                links: &[LinkKind::Veth, LinkKind::Relay],
                kernel: &[KernelNeed::SockDiag, KernelNeed::TcpInfo],
                caps: &[Cap::Tcp, Cap::ShutdownWr, Cap::Abort],
                ethernet: false,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> StateCase {
        let size = |rng: &mut CaseRng| {
            if rng.gen_bool(0.3) {
                0
            } else {
                rng.gen_range(1..=5000)
            }
        };
        let ending = ENDINGS[rng.gen_range(0..ENDINGS.len())];
        let mut case = StateCase {
            a_bytes: size(rng),
            b_bytes: size(rng),
            ending,
            delay_ms: if rng.gen_bool(0.5) {
                0
            } else {
                rng.gen_range(3..=8)
            },
            nonblocking_connect: rng.gen(),
        };
        if ending == Ending::UnreadB && case.a_bytes == 0 {
            case.a_bytes = rng.gen_range(1..=5000);
        }
        case
    }

    fn describe(&self, c: &StateCase) -> String {
        format!(
            "{}connect, a sends {}, b sends {}, ending {:?}, {}",
            if c.nonblocking_connect {
                "non-blocking "
            } else {
                ""
            },
            c.a_bytes,
            c.b_bytes,
            c.ending,
            if c.delay_ms == 0 {
                "veth".to_string()
            } else {
                format!("relay with {} ms one-way delay", c.delay_ms)
            }
        )
    }

    fn lab_config(&self, case: &StateCase) -> harness::LabConfig {
        let mut cfg = harness::LabConfig::default();
        if case.delay_ms > 0 {
            cfg.link = crate::conn::delayed_link(case.delay_ms as u64 * 1000);
        }
        cfg
    }

    fn execute(&self, case: &StateCase, env: &CaseEnv) -> Result<StateObserved, HarnessError> {
        let mut p = connected(&[], &[]);
        if case.nonblocking_connect {
            // a: sync, socket, [non-blocking], connect, (poll for SYN-SENT), wait, blocking again, sync.
            let at =
                p.a.iter()
                    .position(|o| matches!(o, Op::Connect { .. }))
                    .expect("connect");
            p.a.insert(
                at,
                Op::SetOpt {
                    sock: 0,
                    opt: SockOpt::NonBlocking(true),
                },
            );
            let mut after = poll(&[0], 1);
            after.extend([
                Op::WaitWritable { sock: 0, ms: 1000 },
                Op::SetOpt {
                    sock: 0,
                    opt: SockOpt::NonBlocking(false),
                },
            ]);
            for (k, op) in after.into_iter().enumerate() {
                p.a.insert(at + 2 + k, op);
            }
        }
        // Samples right after the connection is up.
        p.a.extend(poll(&[0], 1));
        p.b.extend(poll(&[1], 1));
        if case.a_bytes > 0 {
            p.a.push(Op::Write {
                sock: 0,
                len: case.a_bytes,
            });
            if case.ending != Ending::UnreadB {
                p.b.push(Op::ReadExact {
                    sock: 1,
                    len: case.a_bytes,
                });
            }
        }
        if case.b_bytes > 0 {
            p.b.push(Op::Write {
                sock: 1,
                len: case.b_bytes,
            });
            p.a.push(Op::ReadExact {
                sock: 0,
                len: case.b_bytes,
            });
        }
        p.a.push(Op::Sync);
        p.b.push(Op::Sync);
        // Let the data (and b's unread bytes) arrive before the ending.
        p.b.push(Op::Sleep { ms: 5 });
        let read_eof = |s: usize| Op::Read {
            sock: s,
            max: 65_536,
        };
        match case.ending {
            Ending::ActiveA | Ending::OnlyA => {
                p.a.push(Op::Close { sock: 0 });
                p.b.extend(poll(&[1], 5));
                p.b.push(read_eof(1));
                if case.ending == Ending::ActiveA {
                    // shutdown first, so LAST-ACK is sampled while b still holds the descriptor.
                    p.b.push(Op::Shutdown {
                        sock: 1,
                        how: ShutdownHow::Wr,
                    });
                    p.b.extend(poll(&[1], 8));
                    p.b.push(Op::Close { sock: 1 });
                } else {
                    p.b.extend(poll(&[1], 5));
                }
            }
            Ending::ActiveB => {
                p.b.push(Op::Close { sock: 1 });
                p.a.extend(poll(&[0], 5));
                p.a.extend([read_eof(0), Op::Close { sock: 0 }]);
            }
            Ending::HalfCloseA => {
                p.a.push(Op::Shutdown {
                    sock: 0,
                    how: ShutdownHow::Wr,
                });
                p.a.extend(poll(&[0], 5));
                p.b.extend([read_eof(1)]);
                p.b.extend(poll(&[1], 3));
                p.b.push(Op::Close { sock: 1 });
                p.a.extend([read_eof(0)]);
                p.a.extend(poll(&[0], 10));
                p.a.push(Op::Close { sock: 0 });
            }
            Ending::BothClose => {
                // Both shut down writing at once (the FINs cross over a delayed link: CLOSING), polled.
                for (ops, s) in [(&mut p.a, 0), (&mut p.b, 1)] {
                    ops.push(Op::Shutdown {
                        sock: s,
                        how: ShutdownHow::Wr,
                    });
                    ops.extend(poll(&[s], 8));
                    ops.push(Op::Close { sock: s });
                }
            }
            Ending::AbortA => {
                p.a.extend([
                    Op::SetOpt {
                        sock: 0,
                        opt: SockOpt::Linger(Some(0)),
                    },
                    Op::Close { sock: 0 },
                ]);
                p.b.extend(poll(&[1], 5));
            }
            Ending::UnreadB => {
                p.b.push(Op::Close { sock: 1 });
                p.a.extend(poll(&[0], 5));
            }
        }
        // The last segments need the link's round trip.
        let tail = 20 + 2 * case.delay_ms;
        p.a.extend([Op::Sleep { ms: tail }, Op::Sync]);
        p.b.extend([Op::Sleep { ms: tail }, Op::Sync]);
        Ok(StateObserved {
            program: ProgramObserved::run(env, &p, 1000)?,
            a_diag: crate::conn::namespace_sockets(env, Host::A)?,
            b_diag: crate::conn::namespace_sockets(env, Host::B)?,
        })
    }

    fn check(&self, case: &StateCase, observed: &StateObserved, trace: &Trace) -> Verdict {
        let mut findings = Findings::default();
        let conv = trace
            .conversations
            .iter()
            .find(|c| c.kind == ConversationKind::Tcp && c.server.port == PORT);
        let Some(conv) = conv else {
            findings.push(
                Violation::new("RFC 9293 §3.5", "no connection in the capture")
                    .field("conversation")
                    .expected(format!("a TCP connection to port {PORT}"))
                    .actual("none"),
            );
            return findings.verdict();
        };
        let mut seen_states: BTreeSet<&'static str> = BTreeSet::new();
        for (host, sock, diag) in [
            (Host::A, 0usize, &observed.a_diag),
            (Host::B, 1usize, &observed.b_diag),
        ] {
            let outs: Vec<&OpOutcome> = observed
                .program
                .outcomes
                .iter()
                .filter(|o| o.host == host && o.op.sock() == Some(sock))
                .collect();
            let events = events_of(host, &outs, conv, trace);
            // Observations: (label, state).
            let mut obs: Vec<(String, TcpState)> = outs
                .iter()
                .filter_map(|o| {
                    let st = o.sock.as_ref()?.state()?;
                    Some((format!("after {} (op {})", o.op.render(), o.index), st))
                })
                .collect();
            let local = if host == Host::A {
                conv.client.port
            } else {
                conv.server.port
            };
            let remote = if host == Host::A {
                conv.server.port
            } else {
                conv.client.port
            };
            let final_state = diag
                .iter()
                .find(|d| d.local.port() == local && d.remote.port() == remote)
                .map_or(Some(TcpState::Close), |d| d.state);
            if let Some(fs) = final_state {
                if fs == TcpState::TimeWait {
                    // Linux's hand-off to the timewait mini-socket (see the type's doc): the trailing
                    // run of CLOSE observations of the descriptor is the connection in TIME-WAIT.
                    for o in obs.iter_mut().rev() {
                        if o.1 != TcpState::Close {
                            break;
                        }
                        o.1 = TcpState::TimeWait;
                    }
                }
                obs.push(("at the end (sock_diag)".into(), fs));
            }
            // The first observation of a's socket is before connect (CLOSED); b's accepted socket starts
            // ESTABLISHED (the handshake completed in the kernel).
            let start = if host == Host::A {
                TcpState::Close
            } else {
                TcpState::Established
            };
            let mut prev = ("at creation".to_string(), start);
            for (label, st) in obs {
                seen_states.insert(st.rfc_name());
                if legal_path(prev.1, st, &events).is_none() {
                    let any_path = legal_path(prev.1, st, &all_events()).is_some();
                    findings.push(
                        Violation::new(
                            "RFC 9293 §3.3.2 (Figure 5)",
                            if any_path {
                                format!(
                                    "{}'s socket moved {} → {} without the segment or call that transition needs",
                                    host.name(),
                                    prev.1.rfc_name(),
                                    st.rfc_name()
                                )
                            } else {
                                format!(
                                    "{}'s socket moved {} → {}, which the state diagram does not allow",
                                    host.name(),
                                    prev.1.rfc_name(),
                                    st.rfc_name()
                                )
                            },
                        )
                        .field(format!("state {} → {label}", prev.0))
                        .expected(format!(
                            "a diagram path using only events seen: {}",
                            render_events(&events)
                        ))
                        .actual(format!("{} → {}", prev.1.rfc_name(), st.rfc_name())),
                    );
                }
                prev = (label, st);
            }
        }
        findings.note(format!("ending {:?}", case.ending));
        for s in seen_states {
            findings.note(format!("state seen: {s}"));
        }
        findings.verdict()
    }
}

fn all_events() -> BTreeSet<Event> {
    [
        Event::Connect,
        Event::SynAck,
        Event::OwnFin,
        Event::PeerFin,
        Event::AckOfOwnFin,
        Event::Reset,
    ]
    .into()
}

fn render_events(events: &BTreeSet<Event>) -> String {
    let v: Vec<String> = events.iter().map(|e| format!("{e:?}")).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The events that happened to `host`'s side of `conv`: from its ops and from the capture.
fn events_of(
    host: Host,
    outs: &[&OpOutcome],
    conv: &harness::trace::Conversation,
    trace: &Trace,
) -> BTreeSet<Event> {
    let mut ev = BTreeSet::new();
    if outs.iter().any(|o| matches!(o.op, Op::Connect { .. })) {
        ev.insert(Event::Connect);
    }
    let mut own_fin_end = None;
    for &k in &conv.frames {
        let f = &trace.frames[k];
        let Some(t) = f.tcp() else { continue };
        let mine = f.from == Some(host);
        if t.flags.rst {
            ev.insert(Event::Reset);
        }
        if !mine && t.flags.syn && t.flags.ack {
            ev.insert(Event::SynAck);
        }
        if t.flags.fin {
            if mine {
                ev.insert(Event::OwnFin);
                if let Some(seq) = f.rel_seq {
                    own_fin_end.get_or_insert(seq + t.payload_len as u32 + 1);
                }
            } else {
                ev.insert(Event::PeerFin);
            }
        }
        if !mine && t.flags.ack {
            if let (Some(end), Some(ack)) = (own_fin_end, f.rel_ack) {
                if ack == end {
                    ev.insert(Event::AckOfOwnFin);
                }
            }
        }
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcpState::*;

    fn ev(e: &[Event]) -> BTreeSet<Event> {
        e.iter().copied().collect()
    }

    #[test]
    fn the_active_close_path_needs_the_peer_fin() {
        let closing = ev(&[
            Event::Connect,
            Event::SynAck,
            Event::OwnFin,
            Event::AckOfOwnFin,
        ]);
        assert_eq!(
            legal_path(Established, FinWait2, &closing),
            Some(vec![FinWait1, FinWait2])
        );
        // TIME-WAIT needs the peer's FIN.
        assert_eq!(legal_path(Established, TimeWait, &closing), None);
        let mut both = closing.clone();
        both.insert(Event::PeerFin);
        assert!(legal_path(Established, TimeWait, &both).is_some());
    }

    #[test]
    fn close_wait_needs_a_fin_from_the_peer() {
        assert_eq!(
            legal_path(Established, CloseWait, &ev(&[Event::OwnFin])),
            None
        );
        assert_eq!(
            legal_path(Established, CloseWait, &ev(&[Event::PeerFin])),
            Some(vec![CloseWait])
        );
    }

    #[test]
    fn illegal_moves_have_no_path_whatever_happened() {
        let all = all_events();
        assert_eq!(legal_path(TimeWait, Established, &all), None);
        assert_eq!(legal_path(CloseWait, FinWait1, &all), None);
        assert_eq!(legal_path(LastAck, TimeWait, &all), None);
        assert_eq!(legal_path(Close, Established, &ev(&[Event::Connect])), None);
        assert!(legal_path(Close, Established, &ev(&[Event::Connect, Event::SynAck])).is_some());
    }

    #[test]
    fn a_reset_closes_any_synchronized_state() {
        for s in [Established, FinWait1, FinWait2, CloseWait, Closing, LastAck] {
            assert_eq!(
                legal_path(s, Close, &ev(&[Event::Reset])),
                Some(vec![Close])
            );
            assert_eq!(legal_path(s, Close, &ev(&[])), None, "{s:?}");
        }
    }
}
