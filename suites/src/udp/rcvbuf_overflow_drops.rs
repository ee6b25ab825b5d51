use harness::property::{Cap, KernelNeed, Subject};
use std::net::SocketAddr;
use std::time::Duration;

use harness::frame::Host;
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::{Errno, Family, Socket};
use harness::sockopt::RecvFlags;
use harness::trace::Trace;
use harness::HarnessError;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::common::{
    check_sends, describe_sizes, note_once, our_wire_frames, payload_of, pin_to_current_cpu,
    send_on_a, sock_step, unfragmented_max, which, RECV_WAIT, ROOMY_RCVBUF,
};

/// SO_MEMINFO sk_rmem_alloc: bytes of truesize charged to the socket's receive queue.
fn rmem_alloc(s: &Socket) -> Result<u32, HarnessError> {
    s.rmem_alloc().map_err(sock_step("SO_MEMINFO"))
}

/// How long b waits for a datagram it was sent to be either queued or counted as dropped.
const FATE_WAIT: Duration = Duration::from_millis(200);

/// Receive-buffer overflow: datagrams that do not fit are dropped, later ones that fit are accepted, and
/// RcvbufErrors counts exactly the drops (lab Q7).
///
/// RFC 768 promises no delivery, so dropping is allowed; what is checked is that Linux drops exactly as it
/// documents and counts every drop. socket(7) SO_RCVBUF: "The kernel doubles this value (to allow space for
/// bookkeeping overhead) when it is set using setsockopt(2), and this doubled value is returned by
/// getsockopt(2)". The bookkeeping is per-skb *truesize* (data buffer + struct sk_buff), charged to
/// sk_rmem_alloc; Linux's UDP enqueue (`__udp_enqueue_schedule_skb`) drops a datagram when the memory already
/// queued plus its truesize exceeds the buffer — except that an empty queue always accepts one datagram — and
/// counts it in `RcvbufErrors` (and `InErrors`) of the namespace's UDP MIB (`Udp6RcvbufErrors` for IPv6).
///
/// Lab question: what happens to datagrams when the receiver does not read? Generated: SO_RCVBUF 2048–12288
/// bytes, then 6–20 datagrams of 1 byte up to the link MTU (each one skb; fragmented datagrams are left to
/// the other properties), big and small mixed, sent one at a time to a socket that is never read until the
/// end. The truesize of each size is measured first on a second socket with room (SO_MEMINFO, one datagram at
/// a time), so the prediction uses the kernel's own accounting. Checked: the effective buffer is twice the
/// request; each datagram's fate (queued: sk_rmem_alloc grew by its truesize; dropped: RcvbufErrors grew)
/// matches the rule above applied to the memory queued at that moment; the datagrams read at the end are
/// exactly the queued ones, in order, whole; and RcvbufErrors of b's namespace rose by exactly
/// (datagrams sent − datagrams read).
pub struct RcvbufOverflow;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RcvbufCase {
    pub family: Family,
    pub port: u16,
    /// SO_RCVBUF requested.
    pub rcvbuf: i32,
    pub sizes: Vec<usize>,
}

/// What b saw after datagram i was sent.
#[derive(Debug, Clone, Copy)]
pub struct Fate {
    pub rmem_before: u32,
    pub rmem_after: u32,
    pub errors_before: u64,
    pub errors_after: u64,
}

#[derive(Debug, Clone)]
pub struct RcvbufObserved {
    pub a: SocketAddr,
    pub effective: i32,
    /// Measured truesize per payload size.
    pub truesize: Vec<(usize, u32)>,
    pub sends: Vec<Result<usize, Errno>>,
    pub fates: Vec<Fate>,
    /// RcvbufErrors before the first and after the last datagram.
    pub errors: (u64, u64),
    /// The datagrams read at the end, in order.
    pub read: Vec<harness::sock::Received>,
}

impl Property for RcvbufOverflow {
    type Case = RcvbufCase;
    type Observed = RcvbufObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "udp.rcvbuf.overflow_drops",
            suite: "udp",
            title: "with a small SO_RCVBUF and no reads, datagrams that do not fit are dropped, later ones that fit are accepted, RcvbufErrors rises by exactly the drops",
            clauses: &["RFC 768", "socket(7) SO_RCVBUF"],
            questions: &["Q7"],
            subject: Subject::B,
            needs: Needs {
                links: &[LinkKind::Veth],
                kernel: &[KernelNeed::Sockets, KernelNeed::ProcCounters],
                caps: &[Cap::Udp, Cap::SetOptRcvBuf],
                ethernet: false,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, family: Family) -> RcvbufCase {
        let max = unfragmented_max(family);
        let n = rng.gen_range(6..=20);
        RcvbufCase {
            family,
            port: rng.gen_range(2..=u16::MAX),
            rcvbuf: rng.gen_range(2048..=12_288),
            sizes: (0..n)
                .map(|_| match rng.gen_range(0..10) {
                    0..=3 => rng.gen_range(1000..=max),
                    4..=6 => rng.gen_range(100..1000),
                    _ => rng.gen_range(1..100),
                })
                .collect(),
        }
    }

    fn describe(&self, case: &RcvbufCase) -> String {
        format!(
            "SO_RCVBUF {}, {} unread datagrams of {} bytes",
            case.rcvbuf,
            case.sizes.len(),
            describe_sizes(&case.sizes)
        )
    }

    fn execute(&self, case: &RcvbufCase, env: &CaseEnv) -> Result<RcvbufObserved, HarnessError> {
        let family = case.family;
        let b_ip = env.lab.addr(Host::B, family);
        let (port, rcvbuf) = (case.port, case.rcvbuf);
        // The calibration port: any other port.
        let cal_port = port - 1;
        let (test, cal, effective) =
            env.lab
                .host(Host::B)
                .run(move || -> Result<_, HarnessError> {
                    let t = Socket::udp(family)?;
                    t.set_rcvbuf(rcvbuf).map_err(sock_step("SO_RCVBUF"))?;
                    t.bind(SocketAddr::new(b_ip, port))
                        .map_err(sock_step("bind"))?;
                    let effective = t.rcvbuf().map_err(sock_step("SO_RCVBUF"))?;
                    let c = Socket::udp(family)?;
                    c.set_rcvbuf_force(ROOMY_RCVBUF)
                        .map_err(sock_step("SO_RCVBUFFORCE"))?;
                    c.bind(SocketAddr::new(b_ip, cal_port))
                        .map_err(sock_step("bind"))?;
                    Ok((t, c, effective))
                })??;
        let a_ip = env.lab.addr(Host::A, family);
        let (mut sender, a) =
            env.lab
                .host(Host::A)
                .run(move || -> Result<_, HarnessError> {
                    pin_to_current_cpu();
                    let s = Socket::udp(family)?;
                    s.bind(SocketAddr::new(a_ip, 0))
                        .map_err(sock_step("bind"))?;
                    let a = s.local_addr().map_err(sock_step("getsockname"))?;
                    Ok((s, a))
                })??;
        // Truesize of each size, one datagram at a time on the roomy socket.
        let mut sizes: Vec<usize> = case.sizes.clone();
        sizes.sort();
        sizes.dedup();
        let mut truesize = Vec::new();
        let mut cal = cal;
        for &size in &sizes {
            let (s, r) = send_on_a(
                env,
                sender,
                payload_of(255, size),
                SocketAddr::new(b_ip, cal_port),
            )?;
            sender = s;
            r.map_err(sock_step("calibration send"))?;
            let (c, t) = env.lab.host(Host::B).run(move || -> Result<_, HarnessError> {
                if !cal.poll_readable(RECV_WAIT) {
                    return Err(HarnessError::Socket("calibration datagram never arrived".into()));
                }
                let t = rmem_alloc(&cal)?;
                cal.recv_with(65_536, RecvFlags::DONTWAIT).map_err(sock_step("calibration recv"))?;
                let left = rmem_alloc(&cal)?;
                if left != 0 {
                    return Err(HarnessError::Socket(format!("calibration socket kept {left} bytes charged after its only datagram was read")));
                }
                Ok((cal, t))
            })??;
            cal = c;
            truesize.push((size, t));
        }
        drop(cal);
        let before = env
            .lab
            .host(Host::B)
            .run(move || harness::counters::udp_counters(family))??;
        let mut test = test;
        let mut sends = Vec::new();
        let mut fates = Vec::new();
        for (i, &size) in case.sizes.iter().enumerate() {
            let rmem_before = env.lab.host(Host::B).run({
                let t = test;
                move || -> Result<_, HarnessError> {
                    let m = rmem_alloc(&t)?;
                    let e = harness::counters::udp_counters(family)?.rcvbuf_errors;
                    Ok((t, m, e))
                }
            })??;
            let (t, rmem_before, errors_before) = rmem_before;
            test = t;
            let (s, r) = send_on_a(
                env,
                sender,
                payload_of(i, size),
                SocketAddr::new(b_ip, port),
            )?;
            sender = s;
            sends.push(r);
            let (t, fate) = env
                .lab
                .host(Host::B)
                .run(move || -> Result<_, HarnessError> {
                    let deadline = std::time::Instant::now() + FATE_WAIT;
                    loop {
                        let m = rmem_alloc(&test)?;
                        let e = harness::counters::udp_counters(family)?.rcvbuf_errors;
                        if m != rmem_before
                            || e != errors_before
                            || std::time::Instant::now() > deadline
                        {
                            let fate = Fate {
                                rmem_before,
                                rmem_after: m,
                                errors_before,
                                errors_after: e,
                            };
                            return Ok((test, fate));
                        }
                        std::thread::sleep(Duration::from_micros(100));
                    }
                })??;
            test = t;
            fates.push(fate);
        }
        let (after, read) = env
            .lab
            .host(Host::B)
            .run(move || -> Result<_, HarnessError> {
                let after = harness::counters::udp_counters(family)?;
                let mut read = Vec::new();
                while let Ok(r) = test.recv_with(65_536, RecvFlags::DONTWAIT) {
                    read.push(r);
                }
                Ok((after, read))
            })??;
        drop(sender);
        Ok(RcvbufObserved {
            a,
            effective,
            truesize,
            sends,
            fates,
            errors: (before.rcvbuf_errors, after.rcvbuf_errors),
            read,
        })
    }

    fn check(&self, case: &RcvbufCase, observed: &RcvbufObserved, trace: &Trace) -> Verdict {
        let mut findings = Findings::default();
        let counter = match case.family {
            Family::Ipv4 => "Udp RcvbufErrors",
            Family::Ipv6 => "Udp6RcvbufErrors",
        };
        let payloads: Vec<Vec<u8>> = case
            .sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| payload_of(i, s))
            .collect();
        let wire = our_wire_frames(trace, observed.a, case.port);
        let frames_of = |k: usize| wire.get(k).cloned().unwrap_or_default();
        check_sends(
            &mut findings,
            case.sizes.iter().copied(),
            &observed.sends,
            &wire,
        );
        findings.check(observed.effective == 2 * case.rcvbuf, || {
            Violation::new(
                "socket(7) SO_RCVBUF",
                "the receive buffer is not twice the requested size",
            )
            .field("getsockopt(SO_RCVBUF)")
            .expected(2 * case.rcvbuf)
            .actual(observed.effective)
        });
        let rcvbuf = observed.effective as u64;
        let truesize = |size: usize| {
            observed
                .truesize
                .iter()
                .find(|(s, _)| *s == size)
                .map(|(_, t)| *t as u64)
        };
        let mut queued = Vec::new();
        let mut dropped_before_a_later_accept = false;
        let mut any_dropped = false;
        for (i, fate) in observed.fates.iter().enumerate() {
            let size = case.sizes[i];
            let Some(t) = truesize(size) else {
                return Verdict::Invalid {
                    reason: format!("no truesize measured for {size} bytes"),
                };
            };
            let q = fate.rmem_before as u64;
            let fits = q == 0 || q + t <= rcvbuf;
            let accepted = fate.rmem_after > fate.rmem_before;
            let dropped = fate.errors_after > fate.errors_before;
            if accepted && fate.rmem_after as u64 - q != t {
                return Verdict::Invalid {
                    reason: format!(
                        "datagram {} ({size} bytes) was charged {} bytes, but its size measured {t} on the calibration socket",
                        i + 1,
                        fate.rmem_after as u64 - q
                    ),
                };
            }
            let actual = match (accepted, dropped) {
                (true, false) => "queued".to_string(),
                (false, true) => format!(
                    "dropped, {counter} +{}",
                    fate.errors_after - fate.errors_before
                ),
                (true, true) => "queued and counted as dropped".to_string(),
                (false, false) => format!(
                    "neither queued nor counted in {counter} within {} ms",
                    FATE_WAIT.as_millis()
                ),
            };
            let ok = if fits {
                accepted && !dropped
            } else {
                dropped && !accepted && fate.errors_after - fate.errors_before == 1
            };
            findings.check(ok, || {
                Violation::new(
                    if fits { "RFC 768; socket(7) SO_RCVBUF" } else { "socket(7) SO_RCVBUF" },
                    format!(
                        "datagram {} ({size} bytes, truesize {t}) with {q} of {rcvbuf} bytes queued was not {}",
                        i + 1,
                        if fits { "queued although it fits" } else { "dropped and counted although it does not fit" }
                    ),
                )
                .frames(frames_of(i))
                .field("fate of the datagram")
                .expected(if fits {
                    if q == 0 { "queued (an empty queue always takes one datagram)".to_string() } else { format!("queued ({q} + {t} <= {rcvbuf})") }
                } else {
                    format!("dropped, {counter} +1 ({q} + {t} > {rcvbuf})")
                })
                .actual(actual)
            });
            if accepted {
                queued.push(i);
                if any_dropped {
                    dropped_before_a_later_accept = true;
                }
            } else {
                any_dropped = true;
            }
        }
        // What was read at the end: exactly the queued datagrams, in order.
        let read: Vec<Option<usize>> = observed
            .read
            .iter()
            .map(|r| which(&payloads, &r.data))
            .collect();
        let want: Vec<Option<usize>> = queued.iter().map(|&i| Some(i)).collect();
        findings.check(read == want, || {
            let show = |v: &[Option<usize>]| -> String {
                let s: Vec<String> = v
                    .iter()
                    .map(|i| i.map(|i| (i + 1).to_string()).unwrap_or("?".into()))
                    .collect();
                format!("[{}]", s.join(", "))
            };
            Violation::new(
                "RFC 768",
                "the datagrams read after the overflow are not the queued ones, in order",
            )
            .field("datagrams read (numbers as sent)")
            .expected(show(&want))
            .actual(show(&read))
        });
        let sent = case.sizes.len() as u64;
        let read_n = observed.read.len() as u64;
        let delta = observed.errors.1.saturating_sub(observed.errors.0);
        findings.check(delta == sent.saturating_sub(read_n), || {
            Violation::new(
                "socket(7) SO_RCVBUF",
                format!("{counter} did not rise by exactly the number of datagrams lost to the full buffer"),
            )
            .frames(wire.iter().filter_map(|f| f.first().copied()))
            .field(counter)
            .expected(format!("+{} (sent {sent} − read {read_n})", sent.saturating_sub(read_n)))
            .actual(format!("+{delta}"))
        });
        if any_dropped {
            note_once(&mut findings, "datagrams dropped for the full buffer");
        }
        if dropped_before_a_later_accept {
            note_once(
                &mut findings,
                "a later datagram that fit was accepted after a drop",
            );
        }
        findings.verdict()
    }
}
