use std::collections::{BTreeMap, BTreeSet};

use harness::exec::{ExecConfig, OpResult};
use harness::frame::Host;
use harness::ops::{Op, Program, SockKind};
use harness::property::{Cap, Subject};
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::Family;
use harness::trace::Trace;
use harness::wire::SeqNumber;
use harness::HarnessError;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::handshake_common::{connection, handshake, ops_of, presence, run};
use crate::conn::ProgramObserved;

/// A connection is its 4-tuple (lab Q16).
///
/// RFC 9293 §3.1: "the pair of sockets [address, port] uniquely identifies each connection"; several connections
/// from one host to one listening port differ by the client port, and each has its own sequence space (§3.4:
/// ISN chosen per connection). Cases: 2–8 connections from a to one port on b, 2–4 writes of 1–3000 bytes per
/// connection in a random interleaving, then b writes 1–2000 bytes back on each.
///
/// Checked: all of a's source ports are distinct and each accepted socket's peer is one of them; the SYNs'
/// ISNs are pairwise distinct, and so are the SYN-ACKs' (Linux derives them from a keyed hash of the 4-tuple
/// and a clock, RFC 6528; a coincidence has probability ~N²/2³³ and is a tolerance we do not expect to need);
/// every accepted socket reads exactly the bytes its own peer wrote (the executor checks each byte against the
/// stream of the writer's port, so a crossed byte is reported at its stream offset), and so does every socket
/// on a.
pub struct FourTuple;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FourTupleCase {
    pub port: u16,
    pub connections: usize,
    /// (connection, bytes) in write order.
    pub writes: Vec<(usize, usize)>,
    /// Bytes b writes back on each connection.
    pub replies: Vec<usize>,
}

impl FourTupleCase {
    fn total(&self, conn: usize) -> usize {
        self.writes
            .iter()
            .filter(|(c, _)| *c == conn)
            .map(|(_, n)| n)
            .sum()
    }
}

impl Property for FourTuple {
    type Case = FourTupleCase;
    type Observed = ProgramObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.identity.four_tuple",
            suite: "tcp-lifecycle",
            title: "several connections from one host to one listening port coexist, told apart by the client port, each with its own ISN; data never crosses between them",
            clauses: &["RFC 9293 §3.1", "RFC 9293 §3.4 (ISN per connection)"],
            questions: &["Q16"],
            subject: Subject::Both,
            needs: Needs {
                links: &[LinkKind::Veth],
                kernel: &[],
                caps: &[Cap::Tcp, Cap::MultiConn],
                ethernet: false,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> FourTupleCase {
        let connections = rng.gen_range(2..=8);
        let mut writes = Vec::new();
        for conn in 0..connections {
            for _ in 0..rng.gen_range(2..=4) {
                writes.push((conn, rng.gen_range(1..=3000)));
            }
        }
        writes.shuffle(rng);
        FourTupleCase {
            port: rng.gen_range(1024..=60999),
            connections,
            writes,
            replies: (0..connections).map(|_| rng.gen_range(1..=2000)).collect(),
        }
    }

    fn describe(&self, c: &FourTupleCase) -> String {
        let totals: Vec<String> = (0..c.connections).map(|i| c.total(i).to_string()).collect();
        format!(
            "{} connections to port {}, {} interleaved writes (bytes per connection: {}), replies {:?}",
            c.connections,
            c.port,
            c.writes.len(),
            totals.join("/"),
            c.replies
        )
    }

    fn execute(&self, c: &FourTupleCase, env: &CaseEnv) -> Result<ProgramObserved, HarnessError> {
        let tcp = || Op::Socket {
            kind: SockKind::Tcp,
        };
        let n = c.connections;
        let mut a = vec![Op::Sync];
        for i in 0..n {
            a.push(tcp());
            a.push(Op::Connect {
                sock: i,
                port: c.port,
            });
        }
        a.push(Op::Sync);
        let mut b = vec![
            tcp(),
            Op::Bind {
                sock: 0,
                port: c.port,
            },
            Op::Listen {
                sock: 0,
                backlog: 16,
            },
            Op::Sync,
            Op::Sync,
        ];
        for _ in 0..n {
            b.push(Op::Accept { sock: 0 });
        }
        b.push(Op::Sync);
        a.push(Op::Sync);
        for (conn, len) in &c.writes {
            a.push(Op::Write {
                sock: *conn,
                len: *len,
            });
        }
        a.push(Op::Sync);
        b.push(Op::Sync);
        // Accepted socket 1 + i is a's socket i when accept is FIFO (checked by tcp.accept.backlog); the check
        // below matches by port, so a different order reads short and is reported, never mixed up.
        for i in 0..n {
            b.push(Op::ReadExact {
                sock: 1 + i,
                len: c.total(i),
            });
            b.push(Op::Write {
                sock: 1 + i,
                len: c.replies[i],
            });
        }
        b.push(Op::Sync);
        a.push(Op::Sync);
        for i in 0..n {
            a.push(Op::ReadExact {
                sock: i,
                len: c.replies[i],
            });
        }
        let mut cfg = ExecConfig::new(env.seed, env.family);
        cfg.io_timeout_ms = 500;
        run(env, Program { a, b }, cfg)
    }

    fn check(&self, c: &FourTupleCase, observed: &ProgramObserved, trace: &Trace) -> Verdict {
        const ID: &str = "RFC 9293 §3.1";
        let mut f = Findings::default();
        let a_ops = ops_of(observed, Host::A);
        let b_ops = ops_of(observed, Host::B);
        // a's socket i → its source port.
        let mut a_port: BTreeMap<usize, u16> = BTreeMap::new();
        for o in &a_ops {
            if let (Op::Connect { sock, .. }, OpResult::Done) = (&o.op, &o.result) {
                if let Some(p) = o.sock.as_ref().and_then(|s| s.local_port) {
                    a_port.insert(*sock, p);
                }
            } else if let Op::Connect { sock, .. } = &o.op {
                f.push(
                    Violation::new(
                        "RFC 9293 §3.5",
                        format!(
                            "connect #{sock} to a port that already has a connection from a failed"
                        ),
                    )
                    .field("connect()")
                    .expected("ok")
                    .actual(o.result.render()),
                );
            }
        }
        let ports: BTreeSet<u16> = a_port.values().copied().collect();
        f.check(ports.len() == a_port.len(), || {
            Violation::new(
                ID,
                "two connections from a share a source port: their 4-tuples are equal",
            )
            .field("source ports")
            .expected(format!("{} distinct", a_port.len()))
            .actual(format!("{:?}", a_port.values().collect::<Vec<_>>()))
        });
        // ISNs per direction.
        let mut isn_a: Vec<(u16, usize, SeqNumber)> = Vec::new();
        let mut isn_b: Vec<(u16, usize, SeqNumber)> = Vec::new();
        for &p in &ports {
            let segs = connection(trace, p, c.port);
            let hs = handshake(&segs);
            if let Some((n, _, t)) = hs.syn {
                isn_a.push((p, n, t.seq));
            }
            if let Some((n, _, t)) = hs.syn_ack {
                isn_b.push((p, n, t.seq));
            }
            f.check(hs.syn.is_some() && hs.syn_ack.is_some(), || {
                Violation::new(
                    "RFC 9293 §3.5",
                    format!("the handshake of the connection from port {p} is not on the wire"),
                )
                .frames(segs.iter().map(|s| s.0))
                .field("flags")
                .expected("S, S.")
                .actual(format!(
                    "SYN {}, SYN-ACK {}",
                    presence(hs.syn.is_some()),
                    presence(hs.syn_ack.is_some())
                ))
            });
        }
        for (who, isns) in [("a's SYNs", &isn_a), ("b's SYN-ACKs", &isn_b)] {
            for (i, x) in isns.iter().enumerate() {
                if let Some(y) = isns[i + 1..].iter().find(|y| y.2 == x.2) {
                    f.push(
                        Violation::new(
                            "RFC 9293 §3.4 (ISN per connection); RFC 6528",
                            format!("{who} of two connections carry the same ISN"),
                        )
                        .frames([x.1, y.1])
                        .field("seq")
                        .expected("distinct initial sequence numbers")
                        .actual(format!("{} for ports {} and {}", x.2, x.0, y.0)),
                    );
                }
            }
        }
        // Accepted sockets: peers are a's ports, and each read exactly its own peer's bytes.
        let want_from: BTreeMap<u16, usize> =
            a_port.iter().map(|(i, p)| (*p, c.total(*i))).collect();
        let mut peers_seen = BTreeSet::new();
        for o in &b_ops {
            let Op::ReadExact { sock, len } = o.op else {
                continue;
            };
            let peer = o.sock.as_ref().and_then(|s| s.peer_port);
            let Some(peer) = peer else {
                f.push(
                    Violation::new(ID, format!("accepted socket s{sock} has no peer"))
                        .field("getpeername()")
                        .expected("one of a's source ports")
                        .actual("none"),
                );
                continue;
            };
            peers_seen.insert(peer);
            let Some(&want) = want_from.get(&peer) else {
                f.push(
                    Violation::new(
                        ID,
                        format!(
                            "accepted socket s{sock}'s peer port is not one of a's connections"
                        ),
                    )
                    .field("peer port")
                    .expected(format!("one of {ports:?}"))
                    .actual(peer),
                );
                continue;
            };
            read_matches(&mut f, Host::B, sock, peer, want, len, &o.result);
        }
        f.check(peers_seen.len() == ports.len(), || {
            Violation::new(
                ID,
                "the accepted sockets do not cover every connection exactly once",
            )
            .field("accepted peers' ports")
            .expected(format!("{ports:?}"))
            .actual(format!("{peers_seen:?}"))
        });
        for o in &a_ops {
            let Op::ReadExact { sock, len } = o.op else {
                continue;
            };
            let port = a_port.get(&sock).copied().unwrap_or(0);
            read_matches(&mut f, Host::A, sock, port, c.replies[sock], len, &o.result);
        }
        f.note(format!("{} connections", c.connections));
        f.verdict()
    }
}

/// A read that must return exactly `want` bytes of the right writer's stream.
fn read_matches(
    f: &mut Findings,
    host: Host,
    sock: usize,
    port: u16,
    want: usize,
    asked: usize,
    result: &OpResult,
) {
    const ID: &str = "RFC 9293 §3.1";
    match result {
        OpResult::Read {
            n, mismatch_at: None, ..
        } if *n as usize == want && asked == want => {}
        OpResult::Read {
            mismatch_at: Some(m),
            ..
        } => f.push(
            Violation::new(ID, format!("{}'s socket s{sock} read bytes that its peer did not write: data crossed connections", host.name()))
                .field("stream byte")
                .expected(format!("the stream of the connection with port {port}"))
                .actual(format!("a different byte at stream offset {m}")),
        ),
        other => f.push(
            Violation::new(ID, format!("{}'s socket s{sock} did not read exactly what its own peer wrote", host.name()))
                .field("bytes read")
                .expected(format!("{want} (written on the connection with port {port})"))
                .actual(format!("{} (asked for {asked})", other.render())),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_tuple_totals_sum_writes_per_connection() {
        let c = FourTupleCase {
            port: 1,
            connections: 2,
            writes: vec![(0, 10), (1, 5), (0, 3)],
            replies: vec![1, 1],
        };
        assert_eq!(c.total(0), 13);
        assert_eq!(c.total(1), 5);
    }

    #[test]
    fn a_crossed_byte_is_named() {
        let mut f = Findings::default();
        let r = OpResult::Read {
            n: 10,
            returned: 10,
            eof: false,
            truncated: false,
            offset: 0,
            mismatch_at: Some(4),
        };
        read_matches(&mut f, Host::B, 1, 40000, 10, 10, &r);
        match f.verdict() {
            Verdict::Fail { violation } => {
                assert!(violation.summary.contains("data crossed"), "{violation}");
                assert_eq!(
                    violation.actual.as_deref(),
                    Some("a different byte at stream offset 4")
                );
            }
            v => panic!("{v:?}"),
        }
    }
}
