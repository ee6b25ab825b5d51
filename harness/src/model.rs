//! The reference model: generates meaningful programs and states what must hold of their outcomes.
//!
//! Generation (proptest-state-machine's `ReferenceStateMachine` idea, without the framework): a program
//! usually starts with a connection set up across barriers (b: socket, bind, listen | a: socket, connect |
//! b: accept), then draws ops whose preconditions hold in the model's state (writes on connected sockets,
//! shutdowns, closes, reads, options, sleeps, barriers). Ops refer to sockets by index, so a shrunk program
//! stays valid: an op on a missing socket is a no-op.
//!
//! Checking walks the *executed* outcomes in order, per host, and applies postconditions that hold whatever
//! the timing between hosts (cross-host facts are only used once a barrier separates them):
//! - `write` after the socket's own `shutdown(WR|RDWR)` fails with EPIPE (RFC 9293 §3.10.2: "connection
//!   closing" for SEND after CLOSE; POSIX shutdown: further sends are disallowed, EPIPE) — or with the
//!   socket's pending error (ECONNRESET, ECONNREFUSED), which Linux reports first;
//! - `write` on a TCP socket that never connected fails with EPIPE (Linux tcp_sendmsg: not connected);
//! - `read` on a TCP socket that is neither connected nor accepted fails with ENOTCONN;
//! - `listen` on a UDP socket fails with EOPNOTSUPP; a second `bind` of a bound socket that never connected
//!   fails with EINVAL;
//! - `connect` to a port on which the other host listens since an earlier segment, with room in its
//!   backlog, succeeds; to a port no socket of the other host ever bound, fails with ECONNREFUSED;
//! - a TCP `read` returns 0 (EOF) only after the peer shut down writing or closed, and only once every byte
//!   the peer wrote was read; after the peer's shutdown in an earlier segment and with every byte read, a
//!   read returns EOF and does not time out (RFC 9293 §3.10.4 / §3.6);
//! - every byte read is the byte the peer wrote at that stream offset (`tcp.stream.integrity`).

use std::collections::HashMap;

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::exec::{OpOutcome, OpResult};
use crate::frame::Host;
use crate::ops::{Op, Program, ShutdownHow, SockKind, SockOpt, TcpState};
use crate::property::{CaseRng, Violation};

/// A deliberate error in the model's predictions, for proving that failures are found, shrunk and
/// replayed. Never set outside tests (hidden `--model-fault` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelFault {
    /// Predicts that a write after the socket's own shutdown(WR) succeeds.
    WriteAfterShutdownSucceeds,
}

/// Ports programs use: few, so binds collide and connects meet listeners.
pub const PORTS: [u16; 3] = [5001, 5002, 5003];

/// Generator limits.
#[derive(Debug, Clone, Copy)]
pub struct GenLimits {
    pub max_ops: usize,
    pub allow_sleep: bool,
    pub allow_udp: bool,
}

impl GenLimits {
    /// Programs of up to 20 ops, sleeps and UDP allowed.
    pub const DEFAULT: GenLimits = GenLimits {
        max_ops: 20,
        allow_sleep: true,
        allow_udp: true,
    };
}

impl Default for GenLimits {
    fn default() -> Self {
        GenLimits::DEFAULT
    }
}

#[derive(Debug, Clone, Default)]
struct GenSock {
    connected: bool,
    closed: bool,
}

/// Generates a program of at most `limits.max_ops` ops.
pub fn generate(rng: &mut CaseRng, limits: GenLimits) -> Program {
    let mut p = Program::default();
    let mut socks: HashMap<Host, Vec<GenSock>> = HashMap::new();
    socks.insert(Host::A, Vec::new());
    socks.insert(Host::B, Vec::new());
    let port = *PORTS.choose(rng).expect("non-empty");
    let skeleton = rng.gen_range(0..100);
    if limits.allow_udp && skeleton >= 85 {
        // A UDP exchange: b bound, a connected to it.
        p.b.push(Op::Socket {
            kind: SockKind::Udp,
        });
        p.b.push(Op::Bind { sock: 0, port });
        p.b.push(Op::Sync);
        p.a.push(Op::Socket {
            kind: SockKind::Udp,
        });
        p.a.push(Op::Connect { sock: 0, port });
        p.a.push(Op::Sync);
        socks.get_mut(&Host::A).unwrap().push(GenSock {
            connected: true,
            ..Default::default()
        });
        socks.get_mut(&Host::B).unwrap().push(GenSock::default());
    } else if skeleton < 80 {
        // A connection across barriers.
        p.b.push(Op::Socket {
            kind: SockKind::Tcp,
        });
        if rng.gen_bool(0.2) {
            p.b.push(Op::SetOpt {
                sock: 0,
                opt: random_opt(rng),
            });
        }
        p.b.push(Op::Bind { sock: 0, port });
        p.b.push(Op::Listen {
            sock: 0,
            backlog: rng.gen_range(1..=8),
        });
        p.b.push(Op::Sync);
        p.a.push(Op::Sync);
        p.a.push(Op::Socket {
            kind: SockKind::Tcp,
        });
        if rng.gen_bool(0.2) {
            p.a.push(Op::SetOpt {
                sock: 0,
                opt: random_opt(rng),
            });
        }
        p.a.push(Op::Connect { sock: 0, port });
        p.a.push(Op::Sync);
        p.b.push(Op::Sync);
        p.b.push(Op::Accept { sock: 0 });
        socks.get_mut(&Host::A).unwrap().push(GenSock {
            connected: true,
            ..Default::default()
        });
        let b = socks.get_mut(&Host::B).unwrap();
        b.push(GenSock::default());
        b.push(GenSock {
            connected: true,
            ..Default::default()
        });
    }
    while p.len() < limits.max_ops {
        let host = if rng.gen() { Host::A } else { Host::B };
        let list = socks.get_mut(&host).unwrap();
        let live: Vec<usize> = (0..list.len()).filter(|i| !list[*i].closed).collect();
        let connected: Vec<usize> = live
            .iter()
            .copied()
            .filter(|i| list[*i].connected)
            .collect();
        let pick = |rng: &mut CaseRng, v: &[usize], all: usize| -> usize {
            v.choose(rng)
                .copied()
                .unwrap_or_else(|| rng.gen_range(0..all.max(1)))
        };
        let roll = rng.gen_range(0..110);
        let op = match roll {
            0..=24 if !connected.is_empty() => Op::Write {
                sock: pick(rng, &connected, list.len()),
                len: write_len(rng),
            },
            25..=44 if !connected.is_empty() => Op::Read {
                sock: pick(rng, &connected, list.len()),
                max: read_len(rng),
            },
            45..=52 => Op::Shutdown {
                sock: pick(rng, &connected, list.len()),
                how: *[
                    ShutdownHow::Wr,
                    ShutdownHow::Wr,
                    ShutdownHow::Rd,
                    ShutdownHow::RdWr,
                ]
                .choose(rng)
                .expect("non-empty"),
            },
            53..=58 => {
                let s = pick(rng, &live, list.len());
                if let Some(g) = list.get_mut(s) {
                    g.closed = true;
                }
                Op::Close { sock: s }
            }
            59..=66 => {
                p.a.push(Op::Sync);
                p.b.push(Op::Sync);
                continue;
            }
            67..=71 => Op::SetOpt {
                sock: pick(rng, &live, list.len()),
                opt: random_opt(rng),
            },
            72..=75 if limits.allow_sleep => Op::Sleep {
                ms: rng.gen_range(1..=30),
            },
            76..=79 if limits.allow_udp => {
                list.push(GenSock::default());
                Op::Socket {
                    kind: SockKind::Udp,
                }
            }
            80..=84 if limits.allow_udp => {
                let s = pick(rng, &live, list.len());
                if let Some(g) = list.get_mut(s) {
                    g.connected = true;
                }
                Op::Connect {
                    sock: s,
                    port: *PORTS.choose(rng).expect("non-empty"),
                }
            }
            85..=88 => Op::Bind {
                sock: pick(rng, &live, list.len()),
                port: *PORTS.choose(rng).expect("non-empty"),
            },
            89..=91 => Op::Listen {
                sock: pick(rng, &live, list.len()),
                backlog: rng.gen_range(1..=4),
            },
            92..=94 => Op::Accept {
                sock: pick(rng, &live, list.len()),
            },
            95..=99 if limits.allow_udp => Op::SendTo {
                sock: pick(rng, &live, list.len()),
                len: rng.gen_range(0..=1400),
                port: *PORTS.choose(rng).expect("non-empty"),
            },
            100..=103 if limits.allow_udp => Op::RecvFrom {
                sock: pick(rng, &live, list.len()),
                max: if rng.gen() {
                    rng.gen_range(0..=16)
                } else {
                    rng.gen_range(17..=65_536)
                },
                peek: rng.gen_bool(0.3),
                trunc: rng.gen_bool(0.3),
            },
            104..=106 if limits.allow_sleep => {
                let sock = pick(rng, &live, list.len());
                let ms = rng.gen_range(1..=20);
                match rng.gen_range(0..3) {
                    0 => Op::WaitReadable { sock, ms },
                    1 => Op::WaitWritable { sock, ms },
                    _ => Op::WaitState {
                        sock,
                        state: *[
                            TcpState::Established,
                            TcpState::CloseWait,
                            TcpState::FinWait2,
                            TcpState::TimeWait,
                        ]
                        .choose(rng)
                        .expect("non-empty"),
                        ms,
                    },
                }
            }
            107..=109 => Op::SetOpt {
                sock: pick(rng, &live, list.len()),
                opt: SockOpt::NonBlocking(rng.gen()),
            },
            _ => Op::Read {
                sock: pick(rng, &live, list.len()),
                max: read_len(rng),
            },
        };
        p.ops_mut(host).push(op);
    }
    p
}

fn write_len(rng: &mut CaseRng) -> usize {
    match rng.gen_range(0..10) {
        0 => 0,
        1..=5 => rng.gen_range(1..=1460),
        6..=8 => rng.gen_range(1461..=20_000),
        _ => rng.gen_range(20_001..=100_000),
    }
}

fn read_len(rng: &mut CaseRng) -> usize {
    if rng.gen_bool(0.1) {
        rng.gen_range(1..=16)
    } else {
        rng.gen_range(1..=65_536)
    }
}

fn random_opt(rng: &mut CaseRng) -> SockOpt {
    match rng.gen_range(0..7) {
        0 => SockOpt::RcvBuf(rng.gen_range(2048..=262_144)),
        1 => SockOpt::SndBuf(rng.gen_range(2048..=262_144)),
        2 => SockOpt::NoDelay(rng.gen()),
        3 => SockOpt::Cork(rng.gen()),
        4 => SockOpt::QuickAck(rng.gen()),
        5 => SockOpt::Linger(if rng.gen() { Some(0) } else { None }),
        _ => SockOpt::ReuseAddr(rng.gen()),
    }
}

/// The model's view of one socket, built from outcomes.
#[derive(Debug, Clone, Default)]
struct ModelSock {
    kind: Option<SockKind>,
    bound: bool,
    listening: bool,
    listen_segment: usize,
    backlog: i32,
    /// Connected (TCP connect succeeded, accepted, or UDP connect).
    connected: bool,
    ever_connected: bool,
    shut_wr: bool,
    shut_wr_segment: usize,
    /// Own shutdown(RD): Linux then returns 0 from reads (tcp_recvmsg on RCV_SHUTDOWN).
    shut_rd: bool,
    closed: bool,
    closed_segment: usize,
    local_port: Option<u16>,
    peer_port: Option<u16>,
    /// TCP stream bytes written (accepted by the kernel) and read.
    written: u64,
    read: u64,
    linger_zero: bool,
}

/// Checks every outcome against the model's postconditions; returns the violations (frames are not known
/// here: the runner adds context from the trace).
pub fn check(outcomes: &[OpOutcome], fault: Option<ModelFault>) -> Vec<Violation> {
    let mut v = Vec::new();
    let mut socks: HashMap<Host, Vec<ModelSock>> = HashMap::new();
    socks.insert(Host::A, Vec::new());
    socks.insert(Host::B, Vec::new());
    // Pass 1: build each host's sockets from its own outcomes (per-host order is real order).
    for o in outcomes {
        let list = socks.get_mut(&o.host).expect("both hosts");
        apply(list, o);
    }
    // Pass 2: postconditions, per host in order, using the other host's final view only for facts that a
    // barrier made certain.
    let finals = socks.clone();
    let mut replay: HashMap<Host, Vec<ModelSock>> = HashMap::new();
    replay.insert(Host::A, Vec::new());
    replay.insert(Host::B, Vec::new());
    for o in outcomes {
        let other = &finals[&o.host.other()];
        let list = replay.get_mut(&o.host).expect("both hosts");
        let me = o.op.sock().and_then(|i| list.get(i)).cloned();
        let who = format!("{} op {} `{}`", o.host.name(), o.index, o.op.render());
        let result = &o.result;
        if matches!(result, OpResult::Skipped { .. }) {
            apply(list, o);
            continue;
        }
        let expect_errno = |v: &mut Vec<Violation>, clause: &str, what: &str, errno: &str| {
            if result.errno() != Some(errno) {
                v.push(
                    Violation::new(clause, format!("{who}: {what}"))
                        .field(format!("{} result", o.op.render()))
                        .expected(errno)
                        .actual(result.render()),
                );
            }
        };
        match (&o.op, me) {
            // An unconnected UDP socket has nowhere to send: POSIX send() answers EDESTADDRREQ, and Linux
            // checks that before the shutdown flags (found by tcp.random_ops; kept as
            // tests/cases/regression_udp_unconnected_shutdown_write.json).
            // udp_sendmsg refuses anything over 0xFFFF bytes first (RFC 768: the length field is 16 bits).
            (Op::Write { len, .. }, Some(s)) if s.kind == Some(SockKind::Udp) && *len > 0xFFFF => {
                expect_errno(
                    &mut v,
                    "RFC 768 (16-bit length); POSIX send",
                    "a datagram longer than 65535 bytes",
                    "EMSGSIZE",
                );
            }
            (Op::Write { len, .. }, Some(s))
                if s.kind == Some(SockKind::Udp) && !s.connected && *len > 0 && *len <= 65_507 =>
            {
                expect_errno(
                    &mut v,
                    "POSIX send (no peer address set)",
                    "write on an unconnected UDP socket",
                    "EDESTADDRREQ",
                );
            }
            (Op::Write { len, .. }, Some(s)) if s.shut_wr && *len > 0 => {
                if fault == Some(ModelFault::WriteAfterShutdownSucceeds) {
                    if !matches!(result, OpResult::Value { .. }) {
                        v.push(
                            Violation::new(
                                "model fault (test only)",
                                format!("{who}: write after shutdown(WR) did not succeed"),
                            )
                            .field("write result")
                            .expected("bytes written (deliberately wrong prediction)")
                            .actual(result.render()),
                        );
                    }
                } else {
                    // Linux reports a pending socket error first (sk_stream_error / sock_error): a reset
                    // connection answers ECONNRESET, a UDP socket with a pending port unreachable
                    // ECONNREFUSED; otherwise EPIPE.
                    let pending_ok =
                        matches!(result.errno(), Some("ECONNRESET") | Some("ECONNREFUSED"));
                    if !pending_ok {
                        expect_errno(
                            &mut v,
                            "RFC 9293 §3.10.2; POSIX shutdown",
                            "write after the socket's own shutdown(WR)",
                            "EPIPE",
                        );
                    }
                }
            }
            (Op::Write { len, .. }, Some(s))
                if s.kind == Some(SockKind::Tcp)
                    && !s.ever_connected
                    && !s.listening
                    && *len > 0 =>
            {
                expect_errno(&mut v, "RFC 9293 §3.10.2 (SEND in CLOSED: connection does not exist); Linux tcp_sendmsg", "write on a TCP socket that never connected", "EPIPE");
            }
            (Op::Read { max, .. }, Some(s))
                if s.kind == Some(SockKind::Tcp)
                    && !s.ever_connected
                    && !s.listening
                    && !s.shut_rd
                    && *max > 0 =>
            {
                expect_errno(
                    &mut v,
                    "RFC 9293 §3.10.3 (RECEIVE in CLOSED/LISTEN); POSIX recv",
                    "read on a TCP socket that is not connected",
                    "ENOTCONN",
                );
            }
            (Op::Listen { .. }, Some(s)) if s.kind == Some(SockKind::Udp) => {
                expect_errno(
                    &mut v,
                    "POSIX listen",
                    "listen on a UDP socket",
                    "EOPNOTSUPP",
                );
            }
            // A TCP socket whose connection ended is unhashed by the kernel and may be bound again: only
            // predict for sockets that never connected (or UDP, which stays bound).
            (Op::Bind { .. }, Some(s))
                if s.bound && (s.kind == Some(SockKind::Udp) || !s.ever_connected) =>
            {
                expect_errno(
                    &mut v,
                    "POSIX bind",
                    "a second bind of the same socket",
                    "EINVAL",
                );
            }
            (Op::Connect { port, .. }, Some(s))
                if s.kind == Some(SockKind::Tcp) && !s.ever_connected && !s.listening =>
            {
                let listener = other.iter().find(|t| {
                    t.listening
                        && t.local_port == Some(*port)
                        && t.listen_segment < o.segment
                        && !(t.closed && t.closed_segment <= o.segment)
                });
                let ever_bound = other
                    .iter()
                    .any(|t| t.local_port == Some(*port) && t.kind == Some(SockKind::Tcp));
                let pending_before = outcomes
                    .iter()
                    .filter(|p| {
                        p.host == o.host
                            && p.index < o.index
                            && matches!(p.op, Op::Connect { port: q, .. } if q == *port)
                            && p.result == OpResult::Done
                    })
                    .count() as i32;
                if let Some(l) = listener {
                    if pending_before < l.backlog && !s.linger_zero && *result != OpResult::Done {
                        v.push(
                            Violation::new(
                                "RFC 9293 §3.5 (three-way handshake)",
                                format!(
                                    "{who}: connect to a port the other host listens on failed"
                                ),
                            )
                            .field("connect()")
                            .expected("connected")
                            .actual(result.render()),
                        );
                    }
                } else if !ever_bound {
                    expect_errno(
                        &mut v,
                        "RFC 9293 §3.10.7.1 (RST from CLOSED) and §3.10.7.3",
                        "connect to a port with no listener",
                        "ECONNREFUSED",
                    );
                }
            }
            (Op::Read { .. }, Some(s)) if s.kind == Some(SockKind::Tcp) && s.ever_connected => {
                // EOF rules, with the peer found by ports.
                let peer = other.iter().find(|t| {
                    t.local_port.is_some()
                        && t.local_port == s.peer_port
                        && t.peer_port == s.local_port
                });
                if let OpResult::Read {
                    eof: true, offset, ..
                } = result
                {
                    match peer.filter(|_| !s.shut_rd) {
                        Some(p) if (p.shut_wr || p.closed) && *offset != p.written => {
                            v.push(
                                    Violation::new("RFC 9293 §3.10.4 (RECEIVE after FIN: only once the data is delivered)", format!("{who}: EOF before every byte the peer wrote was read"))
                                        .field("stream offset at EOF")
                                        .expected(p.written)
                                        .actual(offset),
                                );
                        }
                        Some(p) if p.shut_wr || p.closed => {}
                        Some(_) => {
                            v.push(
                                    Violation::new("RFC 9293 §3.10.4", format!("{who}: read returned EOF but the peer never shut down or closed"))
                                        .field("read()")
                                        .expected("data or a timeout")
                                        .actual("0 (EOF)"),
                                );
                        }
                        None => {}
                    }
                } else if let Some(p) = peer {
                    let peer_done_before = (p.shut_wr && p.shut_wr_segment < o.segment)
                        || (p.closed && p.closed_segment < o.segment && !p.linger_zero);
                    if peer_done_before
                        && s.read == p.written
                        && *result == OpResult::TimedOut
                        && !s.shut_wr
                    {
                        v.push(
                            Violation::new("RFC 9293 §3.6 (FIN: the peer's RECEIVE returns end of data)", format!("{who}: after the peer's shutdown and with every byte read, read did not return EOF"))
                                .field("read()")
                                .expected("0 (EOF)")
                                .actual(result.render()),
                        );
                    }
                }
            }
            _ => {}
        }
        if let OpResult::Read {
            mismatch_at: Some(at),
            offset,
            n,
            ..
        } = result
        {
            v.push(
                Violation::new(
                    "RFC 9293 §3.4 (tcp.stream.integrity)",
                    format!("{who}: bytes read differ from the bytes the peer wrote"),
                )
                .field("stream byte")
                .expected(format!("the peer's byte at stream offset {at}"))
                .actual(format!(
                    "a different byte (read of {n} bytes at offset {offset})"
                )),
            );
        }
        apply(list, o);
    }
    v
}

/// Steps one socket list through an outcome.
fn apply(list: &mut Vec<ModelSock>, o: &OpOutcome) {
    let snap_ports = |s: &mut ModelSock| {
        if let Some(snap) = &o.sock {
            if snap.local_port.is_some() && snap.local_port != Some(0) {
                s.local_port = snap.local_port;
            }
            if snap.peer_port.is_some() {
                s.peer_port = snap.peer_port;
            }
        }
    };
    match (&o.op, &o.result) {
        (Op::Socket { kind }, OpResult::Value { .. }) => list.push(ModelSock {
            kind: Some(*kind),
            ..Default::default()
        }),
        (Op::Accept { .. }, OpResult::Value { .. }) => {
            let mut s = ModelSock {
                kind: Some(SockKind::Tcp),
                connected: true,
                ever_connected: true,
                ..Default::default()
            };
            // The snapshot is of the listener; the new socket's ports come from later ops.
            s.local_port = o.sock.as_ref().and_then(|x| x.local_port);
            list.push(s);
        }
        (op, result) => {
            let Some(s) = op.sock().and_then(|i| list.get_mut(i)) else {
                return;
            };
            let ok = matches!(
                result,
                OpResult::Done | OpResult::Value { .. } | OpResult::Read { .. }
            );
            match op {
                Op::Bind { .. } if ok => s.bound = true,
                Op::Listen { backlog, .. } if ok => {
                    s.listening = true;
                    s.bound = true;
                    s.listen_segment = o.segment;
                    s.backlog = (*backlog).max(1);
                }
                Op::Connect { .. } if ok => {
                    s.connected = true;
                    s.ever_connected = true;
                    s.bound = true;
                }
                Op::Connect { .. }
                    if s.kind == Some(SockKind::Tcp)
                        && !matches!(result, OpResult::Skipped { .. }) =>
                {
                    // A failed or pending TCP connect still binds and may connect later: stop predicting.
                    s.ever_connected = true;
                    s.bound = true;
                }
                Op::Write { .. } => {
                    if let OpResult::Value { value } = result {
                        if s.kind == Some(SockKind::Tcp) {
                            s.written += value;
                        }
                    }
                }
                Op::Read { .. } => {
                    if let OpResult::Read { n, .. } = result {
                        s.read += n;
                    }
                }
                // Linux sets the shutdown flags even when shutdown() answers ENOTCONN on an unconnected
                // socket (inet_shutdown: "Hack to wake up other listeners"): later reads return 0 and
                // writes EPIPE. Found by tcp.random_ops; kept as
                // tests/cases/regression_shutdown_unconnected_read.json.
                Op::Shutdown { how, .. } if ok || result.errno() == Some("ENOTCONN") => {
                    if matches!(how, ShutdownHow::Wr | ShutdownHow::RdWr) {
                        if !s.shut_wr {
                            s.shut_wr_segment = o.segment;
                        }
                        s.shut_wr = true;
                    }
                    if matches!(how, ShutdownHow::Rd | ShutdownHow::RdWr) {
                        s.shut_rd = true;
                    }
                }
                Op::SetOpt {
                    opt: SockOpt::Linger(l),
                    ..
                } if ok => s.linger_zero = *l == Some(0),
                Op::Close { .. } if ok => {
                    s.closed = true;
                    s.closed_segment = o.segment;
                }
                _ => {}
            }
            snap_ports(s);
        }
    }
}

/// Model invariants, checked with proptest (no lab, no root): what the generator promises the executor and
/// the shrinker, and what the postconditions promise the runner.
#[cfg(test)]
mod invariants {
    use proptest::prelude::*;

    use super::*;
    use crate::property::case_rng;

    fn limits() -> impl Strategy<Value = GenLimits> {
        (1usize..40, any::<bool>(), any::<bool>()).prop_map(|(max_ops, allow_sleep, allow_udp)| {
            GenLimits {
                max_ops,
                allow_sleep,
                allow_udp,
            }
        })
    }

    fn syncs(ops: &[Op]) -> usize {
        ops.iter().filter(|o| matches!(o, Op::Sync)).count()
    }

    /// Any result an executor could report for an op (no-ops, values, reads, errnos, timeouts).
    fn any_result() -> impl Strategy<Value = OpResult> {
        prop_oneof![
            Just(OpResult::Done),
            Just(OpResult::TimedOut),
            Just(OpResult::Skipped {
                why: "no socket".into()
            }),
            (0u64..4).prop_map(|value| OpResult::Value { value }),
            (0u64..70_000).prop_map(|value| OpResult::Value { value }),
            (
                0u64..70_000,
                any::<bool>(),
                0u64..200_000,
                proptest::option::of(0u64..200_000)
            )
                .prop_map(|(n, eof, offset, mismatch_at)| OpResult::Read {
                    n,
                    returned: n,
                    eof,
                    truncated: false,
                    offset,
                    mismatch_at,
                }),
            prop::sample::select(vec![
                "EPIPE",
                "ECONNRESET",
                "ECONNREFUSED",
                "ENOTCONN",
                "EINVAL",
                "EAGAIN",
                "EADDRINUSE",
                "EOPNOTSUPP",
                "EDESTADDRREQ",
                "EMSGSIZE",
            ])
            .prop_map(|e| OpResult::Errno { errno: e.into() }),
        ]
    }

    /// A host's ops as outcomes, in order, with the segment each op ran in.
    fn outcomes_of(host: Host, ops: &[Op], results: &[OpResult]) -> Vec<OpOutcome> {
        let mut segment = 0;
        ops.iter()
            .zip(results.iter().cycle())
            .enumerate()
            .map(|(index, (op, result))| {
                if matches!(op, Op::Sync) {
                    segment += 1;
                }
                OpOutcome {
                    host,
                    index,
                    segment,
                    op: op.clone(),
                    result: result.clone(),
                    sock: None,
                    t_ns: index as u64 * 1_000,
                    wall_ns: 0,
                    done_wall_ns: 0,
                }
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// The executor pairs barriers across hosts: a generated program has as many on a as on b.
        #[test]
        fn generated_programs_have_as_many_barriers_on_each_host(seed in any::<u64>(), limits in limits()) {
            let p = generate(&mut case_rng(seed), limits);
            prop_assert_eq!(syncs(&p.a), syncs(&p.b), "{}", p.render());
        }

        /// A program stops growing at the op limit: at most one barrier pair over it, or the connection
        /// skeleton (at most 12 ops) when the limit is smaller than that.
        #[test]
        fn generated_programs_respect_the_op_limit(seed in any::<u64>(), limits in limits()) {
            let p = generate(&mut case_rng(seed), limits);
            prop_assert!(p.len() <= limits.max_ops.max(12) + 1, "{} ops for a limit of {}", p.len(), limits.max_ops);
        }

        /// Replay rests on it: one seed, one program; and a case file keeps it whole.
        #[test]
        fn generation_is_a_function_of_the_seed_and_case_files_keep_it(seed in any::<u64>(), limits in limits()) {
            let p = generate(&mut case_rng(seed), limits);
            prop_assert_eq!(&p, &generate(&mut case_rng(seed), limits));
            let json = serde_json::to_string(&p).unwrap();
            let back: Program = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(p, back);
        }

        /// Generation honours its switches: no sleeps or waits when sleeps are off, no UDP socket when UDP is off.
        #[test]
        fn generation_honours_its_switches(seed in any::<u64>(), max_ops in 1usize..40) {
            let p = generate(&mut case_rng(seed), GenLimits { max_ops, allow_sleep: false, allow_udp: false });
            for op in p.a.iter().chain(p.b.iter()) {
                let timed = matches!(op, Op::Sleep { .. } | Op::WaitReadable { .. } | Op::WaitWritable { .. } | Op::WaitState { .. });
                prop_assert!(!timed, "timed op {} with sleeps off", op.render());
                let udp = matches!(op, Op::Socket { kind: SockKind::Udp } | Op::SendTo { .. } | Op::RecvFrom { .. });
                prop_assert!(!udp, "UDP op {} with UDP off", op.render());
            }
        }

        /// The postconditions accept any outcome list without panicking, and judge it the same way twice:
        /// a shrunk or hand-edited case, or a SUT answering nonsense, is a finding, never a crash.
        #[test]
        fn the_model_judges_any_outcomes_without_panicking_and_deterministically(
            seed in any::<u64>(),
            ra in proptest::collection::vec(any_result(), 1..12),
            rb in proptest::collection::vec(any_result(), 1..12),
        ) {
            let p = generate(&mut case_rng(seed), GenLimits::DEFAULT);
            let mut outcomes = outcomes_of(Host::A, &p.a, &ra);
            outcomes.extend(outcomes_of(Host::B, &p.b, &rb));
            let first: Vec<String> = check(&outcomes, None).iter().map(|v| format!("{v:?}")).collect();
            let second: Vec<String> = check(&outcomes, None).iter().map(|v| format!("{v:?}")).collect();
            prop_assert_eq!(first, second);
        }

        /// A TCP write that succeeds after its socket's own shutdown(WR) is always a finding, whatever the
        /// other host did; the test-only model fault turns exactly that prediction around.
        #[test]
        fn a_write_after_the_sockets_own_shutdown_is_always_judged(
            len in 1usize..100_000,
            seed in any::<u64>(),
            rb in proptest::collection::vec(any_result(), 1..12),
        ) {
            let a_ops = vec![
                Op::Socket { kind: SockKind::Tcp },
                Op::Connect { sock: 0, port: PORTS[0] },
                Op::Shutdown { sock: 0, how: ShutdownHow::Wr },
                Op::Write { sock: 0, len },
            ];
            let a_results = vec![
                OpResult::Value { value: 0 },
                OpResult::Done,
                OpResult::Done,
                OpResult::Value { value: len as u64 },
            ];
            let p = generate(&mut case_rng(seed), GenLimits::DEFAULT);
            let mut outcomes = outcomes_of(Host::A, &a_ops, &a_results);
            outcomes.extend(outcomes_of(Host::B, &p.b, &rb));
            let about_the_write = |v: &Violation| format!("{v:?}").contains("a op 3");
            prop_assert!(check(&outcomes, None).iter().any(about_the_write));
            prop_assert!(!check(&outcomes, Some(ModelFault::WriteAfterShutdownSucceeds)).iter().any(about_the_write));
        }

        /// Every read whose bytes differ from the peer's stream is reported (tcp.stream.integrity).
        #[test]
        fn every_corrupted_read_is_reported(n in 1u64..65_536, offset in 0u64..1_000_000, at in 0u64..65_536) {
            let ops = vec![Op::Socket { kind: SockKind::Tcp }, Op::Read { sock: 0, max: n as usize }];
            let results = vec![
                OpResult::Value { value: 0 },
                OpResult::Read { n, returned: n, eof: false, truncated: false, offset, mismatch_at: Some(offset + at % n) },
            ];
            let v = check(&outcomes_of(Host::B, &ops, &results), None);
            prop_assert!(v.iter().any(|v| format!("{v:?}").contains("tcp.stream.integrity")), "{v:?}");
        }
    }
}
