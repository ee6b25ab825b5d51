use std::net::SocketAddr;

use harness::frame::Host;
use harness::property::{Cap, KernelNeed, Subject};
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::{Errno, Family};
use harness::sockopt::RecvFlags;
use harness::trace::Trace;
use harness::HarnessError;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::common::{
    check_sends, datagram_pair, gen_size, our_wire_frames, payload_of, send_on_a, RECV_WAIT,
};

/// A short buffer truncates a datagram and the rest is discarded; MSG_TRUNC reports it (lab Q6).
///
/// POSIX recvmsg: "If a message is too long to fit in the supplied buffers, and MSG_PEEK is not set in the
/// flags argument, the excess bytes shall be discarded, and MSG_TRUNC shall be set in the msg_flags member";
/// the return value is the number of bytes copied. Linux recv(2), MSG_TRUNC in *flags*: "return the real
/// length of the packet or datagram, even when it was longer than the passed buffer" (UDP since 2.6.8);
/// MSG_PEEK: "returns data from the beginning of the receive queue without removing that data from the queue".
///
/// Lab question: what happens when the buffer is shorter than the datagram? Generated: 1–6 datagrams of 1 to
/// 65507/65527 bytes sent first, then each read with a buffer mostly shorter than it (0 bytes included),
/// sometimes exactly fitting or longer, with or without MSG_TRUNC in the flags, sometimes preceded by a
/// MSG_PEEK of any length. Checked for every call: the return value (copied length, or the real length with
/// MSG_TRUNC in flags), the bytes copied (the datagram's prefix), MSG_TRUNC in msg_flags exactly when the
/// datagram was longer than the buffer; a peek leaves the datagram whole for the next read; the read after a
/// truncating read returns the *next* datagram (the rest was discarded), and at the end nothing is left.
pub struct RecvTruncate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecvCall {
    pub buf: usize,
    /// MSG_TRUNC in the call's flags.
    pub msg_trunc: bool,
}

impl RecvCall {
    fn describe(&self) -> String {
        format!("{}{}", self.buf, if self.msg_trunc { "+T" } else { "" })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruncDatagram {
    pub size: usize,
    pub peek: Option<RecvCall>,
    pub read: RecvCall,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruncateCase {
    pub family: Family,
    pub port: u16,
    pub datagrams: Vec<TruncDatagram>,
}

/// A receive's outcome; None when the socket did not become readable.
pub type MaybeReceived = Option<Result<harness::sock::Received, Errno>>;

#[derive(Debug, Clone)]
pub struct TruncateObserved {
    pub a: SocketAddr,
    pub sends: Vec<Result<usize, Errno>>,
    /// Per datagram: (peek, read); None when the socket did not become readable.
    pub calls: Vec<(MaybeReceived, MaybeReceived)>,
    pub leftover: Result<harness::sock::Received, Errno>,
}

impl Property for RecvTruncate {
    type Case = TruncateCase;
    type Observed = TruncateObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "udp.recv.truncate",
            suite: "udp",
            title: "a short buffer truncates the datagram and discards the rest: MSG_TRUNC in msg_flags, the copied length (the real one with MSG_TRUNC in flags)",
            clauses: &["POSIX recvmsg", "recv(2) MSG_TRUNC", "recv(2) MSG_PEEK"],
            questions: &["Q6"],
            subject: Subject::B,
            needs: Needs {
                links: &[LinkKind::Veth],
                kernel: &[KernelNeed::Sockets],
                caps: &[Cap::Udp],
                ethernet: false,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, family: Family) -> TruncateCase {
        let n = rng.gen_range(1..=6);
        let datagrams = (0..n)
            .map(|_| {
                let size = gen_size(rng, family).max(1);
                let read = RecvCall {
                    buf: if rng.gen_bool(0.75) {
                        match rng.gen_range(0..4) {
                            0 => 0,
                            1 => size - 1,
                            _ => rng.gen_range(0..size),
                        }
                    } else {
                        size + rng.gen_range(0..=64)
                    },
                    msg_trunc: rng.gen(),
                };
                let peek = rng.gen_bool(0.4).then(|| RecvCall {
                    buf: rng.gen_range(0..=size + 8),
                    msg_trunc: rng.gen(),
                });
                TruncDatagram { size, peek, read }
            })
            .collect();
        TruncateCase {
            family,
            port: rng.gen_range(1..=u16::MAX),
            datagrams,
        }
    }

    fn describe(&self, case: &TruncateCase) -> String {
        let d: Vec<String> = case
            .datagrams
            .iter()
            .map(|d| match d.peek {
                Some(p) => format!(
                    "{} (peek {}, read {})",
                    d.size,
                    p.describe(),
                    d.read.describe()
                ),
                None => format!("{} (read {})", d.size, d.read.describe()),
            })
            .collect();
        format!("datagrams {} (+T: MSG_TRUNC in flags)", d.join(", "))
    }

    fn execute(
        &self,
        case: &TruncateCase,
        env: &CaseEnv,
    ) -> Result<TruncateObserved, HarnessError> {
        let (receiver, mut sender, a, b) = datagram_pair(env, case.family, case.port)?;
        let mut sends = Vec::new();
        for (i, d) in case.datagrams.iter().enumerate() {
            let (s, r) = send_on_a(env, sender, payload_of(i, d.size), b)?;
            sender = s;
            sends.push(r);
        }
        let datagrams = case.datagrams.clone();
        let (calls, leftover) = env.lab.host(Host::B).run(move || {
            let flags = |c: &RecvCall| {
                let trunc = if c.msg_trunc {
                    RecvFlags::TRUNC
                } else {
                    RecvFlags::NONE
                };
                trunc | RecvFlags::DONTWAIT
            };
            let calls: Vec<_> = datagrams
                .iter()
                .map(|d| {
                    if !receiver.poll_readable(RECV_WAIT) {
                        return (None, None);
                    }
                    let peek = d
                        .peek
                        .map(|p| receiver.recv_with(p.buf, flags(&p) | RecvFlags::PEEK));
                    (peek, Some(receiver.recv_with(d.read.buf, flags(&d.read))))
                })
                .collect();
            (calls, receiver.recv_with(65_536, RecvFlags::DONTWAIT))
        })?;
        drop(sender);
        Ok(TruncateObserved {
            a,
            sends,
            calls,
            leftover,
        })
    }

    fn check(&self, case: &TruncateCase, observed: &TruncateObserved, trace: &Trace) -> Verdict {
        let mut findings = Findings::default();
        let payloads: Vec<Vec<u8>> = case
            .datagrams
            .iter()
            .enumerate()
            .map(|(i, d)| payload_of(i, d.size))
            .collect();
        let wire = our_wire_frames(trace, observed.a, case.port);
        let frames_of = |k: usize| wire.get(k).cloned().unwrap_or_default();
        check_sends(
            &mut findings,
            case.datagrams.iter().map(|d| d.size),
            &observed.sends,
            &wire,
        );
        let mut truncated = 0;
        for (k, (d, (peek, read))) in case.datagrams.iter().zip(&observed.calls).enumerate() {
            let payload = &payloads[k];
            let mut judge = |what: &str,
                             call: &RecvCall,
                             got: &Option<Result<harness::sock::Received, Errno>>,
                             peeking: bool| {
                let copied = d.size.min(call.buf);
                let want_ret = if call.msg_trunc { d.size } else { copied };
                let want_trunc = d.size > call.buf;
                let clause = if call.msg_trunc {
                    "recv(2) MSG_TRUNC"
                } else if peeking {
                    "recv(2) MSG_PEEK"
                } else {
                    "POSIX recvmsg"
                };
                let field = format!(
                    "{what} of datagram {} ({} bytes) with a {}-byte buffer{}",
                    k + 1,
                    d.size,
                    call.buf,
                    if call.msg_trunc {
                        " and MSG_TRUNC in flags"
                    } else {
                        ""
                    }
                );
                let expected = format!(
                    "returns {want_ret}, copies the first {copied} bytes, MSG_TRUNC {} in msg_flags",
                    if want_trunc { "set" } else { "clear" }
                );
                match got {
                    Some(Ok(r))
                        if r.returned == want_ret
                            && r.data[..] == payload[..copied]
                            && r.truncated == want_trunc => {}
                    Some(Ok(r)) => {
                        let which_one = if r.data.len() <= payload.len()
                            && r.data[..] == payload[..r.data.len()]
                        {
                            format!("datagram {}'s first {} bytes", k + 1, r.data.len())
                        } else {
                            match payloads.iter().position(|p| p.len() >= r.data.len() && p[..r.data.len()] == r.data[..]) {
                                Some(j) => format!("bytes of datagram {} (the rest of a truncated datagram was not discarded, or the order changed)", j + 1),
                                None => "bytes of no datagram that was sent".to_string(),
                            }
                        };
                        findings.push(
                            Violation::new(
                                clause,
                                format!(
                                    "{what} of datagram {} did not return what the buffer allows",
                                    k + 1
                                ),
                            )
                            .frames(frames_of(k))
                            .field(field)
                            .expected(expected)
                            .actual(format!(
                                "returned {}, copied {which_one}, MSG_TRUNC {}",
                                r.returned,
                                if r.truncated { "set" } else { "clear" }
                            )),
                        );
                    }
                    Some(Err(e)) => findings.push(
                        Violation::new(clause, format!("{what} of datagram {} failed", k + 1))
                            .frames(frames_of(k))
                            .field(field)
                            .expected(expected)
                            .actual(e.name()),
                    ),
                    None => findings.push(
                        Violation::new(
                            "RFC 768",
                            format!("datagram {} never became readable", k + 1),
                        )
                        .frames(frames_of(k))
                        .field(field)
                        .expected(expected)
                        .actual(format!("not readable within {} ms", RECV_WAIT.as_millis())),
                    ),
                }
            };
            if let (Some(call), Some(got)) = (d.peek, peek) {
                judge("MSG_PEEK", &call, &Some(got.clone()), true);
            }
            judge("read", &d.read, read, false);
            if d.size > d.read.buf {
                truncated += 1;
            }
        }
        findings.check(matches!(observed.leftover, Err(Errno::EAGAIN)), || {
            Violation::new("POSIX recvmsg", "after every datagram was read once, data was still queued: the rest of a truncated datagram was kept")
                .field("recvmsg(MSG_DONTWAIT) at the end")
                .expected("EAGAIN")
                .actual(match &observed.leftover {
                    Ok(r) => format!("{} bytes", r.returned),
                    Err(e) => e.name(),
                })
        });
        if truncated > 0 {
            findings.note("truncating reads");
        }
        findings.verdict()
    }
}
