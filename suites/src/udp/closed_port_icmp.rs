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
use harness::wire::{Network, Transport};
use harness::{HarnessError, LabConfig, SysctlSetting};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How long a connected socket waits for the port-unreachable to arrive (it comes back in microseconds on
/// veth; the bound only keeps a missing ICMP from hanging the case).
const ERROR_WAIT: Duration = Duration::from_millis(300);

/// RFC 4443 §2.4 (c): an ICMPv6 error carries as much of the invoking packet as fits in the IPv6 minimum
/// MTU (1280) after its own IPv6 (40) and ICMPv6 (8) headers.
const ICMPV6_MAX_QUOTE: usize = 1280 - 40 - 8;

/// ICMP port unreachable for a UDP datagram to a closed port (lab Q8).
///
/// RFC 1122 §3.2.2.1 / §4.1.3.1: a host SHOULD answer a datagram for a port with no listener with ICMP
/// Destination Unreachable, code 3 (port unreachable); RFC 1122 §3.2.2: the error quotes the invoking
/// datagram's IP header and at least its first 8 data bytes (the whole UDP header). RFC 4443 §3.1: ICMPv6
/// type 1 code 4, quoting as much of the invoking packet as fits in 1280 bytes (§2.4 (c)). Linux reports the
/// error on a *connected* UDP socket: the next receive or send fails with ECONNREFUSED; an unconnected socket
/// is not told (Linux only queues it with IP_RECVERR), so its sends keep succeeding.
///
/// Rate limiting, handled on purpose: Linux limits ICMP errors per destination host with a token bucket
/// (`net.ipv4.icmp_ratelimit` = 1000 ms, `net.ipv6.icmp.ratelimit` = 1000 ms; docs/kernel-facts.md: 1/s per source
/// host once the burst is spent) and globally (`icmp_msgs_per_sec`). Each case runs in a fresh lab, so the
/// buckets start full. Half of the cases turn the per-host limit off in `b`'s namespace (`ratelimit=0`):
/// then every datagram MUST get its own error, checked one by one. The other half keep the kernel default:
/// then the first datagram MUST be answered and every error that does come MUST be correct, but missing
/// errors for later datagrams are the documented rate limit, not a finding (the count is reported).
pub struct PortUnreachable;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortUnreachableCase {
    pub port: u16,
    /// Payload sizes of the datagrams sent, in order.
    pub sizes: Vec<u16>,
    pub connected: bool,
    /// Per-host ICMP rate limit switched off in b.
    pub ratelimit_off: bool,
}

#[derive(Debug, Clone)]
pub struct PortUnreachableObserved {
    pub src_port: u16,
    /// What each send returned.
    pub sends: Vec<Result<usize, Errno>>,
    /// Connected sockets: what a non-blocking recv() returned after each send once an error was pending
    /// (`None`: no error arrived within the wait).
    pub recv_after: Vec<Option<Result<usize, Errno>>>,
}

impl Property for PortUnreachable {
    type Case = PortUnreachableCase;
    type Observed = PortUnreachableObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "udp.closed_port.icmp",
            suite: "udp",
            title: "a datagram to a closed port gets ICMP port unreachable quoting it; a connected socket gets ECONNREFUSED",
            clauses: &["RFC 1122 §3.2.2.1", "RFC 1122 §4.1.3.1", "RFC 4443 §3.1", "RFC 4443 §2.4(c)"],
            questions: &["Q8"],
            subject: Subject::B,
            needs: Needs {
                links: &[LinkKind::Veth],
                kernel: &[KernelNeed::Sockets],
                caps: &[Cap::Udp],
                ethernet: false,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, family: Family) -> PortUnreachableCase {
        // Sizes stay below the link MTU (1500 − IP − UDP headers): no fragmentation in this property.
        let max = match family {
            Family::Ipv4 => 1500 - 20 - 8,
            Family::Ipv6 => 1500 - 40 - 8,
        };
        let n = rng.gen_range(1..=4);
        PortUnreachableCase {
            port: rng.gen_range(1..=u16::MAX),
            sizes: (0..n)
                .map(|_| {
                    if rng.gen_bool(0.3) {
                        rng.gen_range(0..=8)
                    } else {
                        rng.gen_range(0..=max)
                    }
                })
                .collect(),
            connected: rng.gen(),
            ratelimit_off: rng.gen(),
        }
    }

    fn lab_config(&self, case: &PortUnreachableCase) -> LabConfig {
        let mut cfg = LabConfig::default();
        if case.ratelimit_off {
            for key in ["net.ipv4.icmp_ratelimit", "net.ipv6.icmp.ratelimit"] {
                cfg.sysctls.push(SysctlSetting {
                    host: Host::B,
                    key: key.into(),
                    value: "0".into(),
                });
            }
        }
        cfg
    }

    fn describe(&self, case: &PortUnreachableCase) -> String {
        format!(
            "{} datagram(s) of {:?} bytes from a {} socket to closed port {} (b icmp ratelimit {})",
            case.sizes.len(),
            case.sizes,
            if case.connected {
                "connected"
            } else {
                "unconnected"
            },
            case.port,
            if case.ratelimit_off { "off" } else { "default" }
        )
    }

    fn execute(
        &self,
        case: &PortUnreachableCase,
        env: &CaseEnv,
    ) -> Result<PortUnreachableObserved, HarnessError> {
        let family = env.family;
        let a = env.lab.addr(Host::A, family);
        let dst = SocketAddr::new(env.lab.addr(Host::B, family), case.port);
        let case = case.clone();
        env.lab
            .host(Host::A)
            .run(move || -> Result<PortUnreachableObserved, HarnessError> {
                let s = Socket::udp(family)?;
                s.bind(SocketAddr::new(a, 0))
                    .map_err(|e| harness::sock::socket_step("bind", e))?;
                let src_port = s
                    .local_addr()
                    .map_err(|e| harness::sock::socket_step("getsockname", e))?
                    .port();
                if case.connected {
                    s.connect(dst)?
                        .map_err(|e| harness::sock::socket_step("connect", e))?;
                }
                let mut sends = Vec::new();
                let mut recv_after = Vec::new();
                for (i, &size) in case.sizes.iter().enumerate() {
                    let payload: Vec<u8> = (0..size)
                        .map(|j| (i as u8).wrapping_mul(31).wrapping_add(j as u8))
                        .collect();
                    let sent = if case.connected {
                        s.send(&payload, 0)?
                    } else {
                        s.send_to(&payload, dst, 0)?
                    };
                    sends.push(sent);
                    if case.connected {
                        // POLLERR once the ICMP error is queued; then a recv() reports it (and clears it).
                        let pending = s.poll(0, ERROR_WAIT) != 0;
                        recv_after.push(
                            pending
                                .then(|| s.recv_with(64, RecvFlags::DONTWAIT).map(|r| r.returned)),
                        );
                    }
                }
                Ok(PortUnreachableObserved {
                    src_port,
                    sends,
                    recv_after,
                })
            })?
    }

    fn check(
        &self,
        case: &PortUnreachableCase,
        observed: &PortUnreachableObserved,
        trace: &Trace,
    ) -> Verdict {
        let mut findings = Findings::default();
        // The datagrams a sent, in order.
        let datagrams: Vec<(usize, usize, Option<u16>)> = trace
            .frames
            .iter()
            .filter(|f| f.from == Some(Host::A))
            .filter_map(|f| {
                let p = f.packet.as_ref().ok()?;
                let (ident, transport) = match &p.net {
                    Network::Ipv4 { header, transport } => (Some(header.ident), transport),
                    Network::Ipv6 { transport, .. } => (None, transport),
                    _ => return None,
                };
                match transport {
                    Transport::Udp { repr, payload, .. }
                        if repr.src_port == observed.src_port && repr.dst_port == case.port =>
                    {
                        Some((f.number, payload.len(), ident))
                    }
                    _ => None,
                }
            })
            .collect();
        for (i, ((no, len, _), &size)) in datagrams.iter().zip(&case.sizes).enumerate() {
            findings.check(*len == size as usize, || {
                Violation::new(
                    "RFC 768",
                    format!("datagram {} carries a payload of the wrong length", i + 1),
                )
                .frame(*no)
                .field("UDP payload length")
                .expected(size)
                .actual(len)
            });
        }
        if datagrams.len() != case.sizes.len() {
            return Verdict::Invalid {
                reason: format!(
                    "{} datagram(s) were sent but {} appeared on the wire",
                    case.sizes.len(),
                    datagrams.len()
                ),
            };
        }
        // The errors b sent back.
        let mut errors = Vec::new();
        for f in trace.frames.iter().filter(|f| f.from == Some(Host::B)) {
            let Ok(p) = &f.packet else { continue };
            let (kind, quoted, checksum_ok) = match &p.net {
                Network::Ipv4 {
                    transport: Transport::Icmpv4(icmp),
                    ..
                } => (
                    (icmp.icmp_type, icmp.code),
                    icmp.quoted.clone(),
                    icmp.checksum_ok,
                ),
                Network::Ipv6 {
                    transport: Transport::Icmpv6(icmp),
                    ..
                } => (
                    (icmp.icmp_type, icmp.code),
                    icmp.quoted.clone(),
                    icmp.checksum_ok,
                ),
                _ => continue,
            };
            // Only ICMP errors (v4 types 3, 4, 5, 11, 12; v6 types 1–4): MLD reports and the like are not
            // answers to our datagrams.
            let is_error = match p.net {
                Network::Ipv4 { .. } => matches!(kind.0, 3 | 4 | 5 | 11 | 12),
                _ => (1..=4).contains(&kind.0),
            };
            if !is_error {
                continue;
            }
            errors.push((f.number, kind, quoted, checksum_ok));
        }
        let (clause, want_kind, want_name) = match case_family(trace, &datagrams) {
            Family::Ipv4 => (
                "RFC 1122 §3.2.2.1",
                (3u8, 3u8),
                "ICMP type 3 code 3 (port unreachable)",
            ),
            Family::Ipv6 => (
                "RFC 4443 §3.1",
                (1u8, 4u8),
                "ICMPv6 type 1 code 4 (port unreachable)",
            ),
        };
        let mut answered = vec![false; datagrams.len()];
        for (no, kind, quoted, checksum_ok) in &errors {
            findings.check(*kind == want_kind, || {
                Violation::new(
                    clause,
                    "the error for a closed port has the wrong type/code",
                )
                .frame(*no)
                .field("type/code")
                .expected(want_name)
                .actual(format!("type {} code {}", kind.0, kind.1))
            });
            findings.check(*checksum_ok, || {
                Violation::new(clause, "the ICMP error's checksum is wrong")
                    .frame(*no)
                    .field("checksum")
            });
            let Some(q) = quoted else {
                findings.push(
                    Violation::new(
                        "RFC 1122 §3.2.2",
                        "the ICMP error quotes no parsable IP header",
                    )
                    .frame(*no)
                    .field("quoted packet")
                    .expected("the invoking IP header + at least 8 bytes")
                    .actual("nothing parsable"),
                );
                continue;
            };
            // Which datagram does it quote? The first unanswered one with these ports and this length.
            let target = datagrams
                .iter()
                .enumerate()
                .position(|(i, (dno, len, ident))| {
                    !answered[i]
                        && dno < no
                        && q.src_port == Some(observed.src_port)
                        && q.dst_port == Some(case.port)
                        && q.udp_length == Some(8 + *len as u16)
                        && (ident.is_none() || q.ip_ident.is_none() || q.ip_ident == *ident)
                });
            let Some(i) = target else {
                findings.push(
                    Violation::new(
                        "RFC 1122 §3.2.2",
                        "the ICMP error quotes no datagram that was sent",
                    )
                    .frame(*no)
                    .field("quoted UDP header")
                    .expected(format!(
                        "ports {} > {} from one of the datagrams",
                        observed.src_port, case.port
                    ))
                    .actual(format!(
                        "ports {:?} > {:?}, UDP length {:?}",
                        q.src_port, q.dst_port, q.udp_length
                    )),
                );
                continue;
            };
            answered[i] = true;
            let (dno, len, _) = datagrams[i];
            findings.check(q.quoted_transport_bytes >= 8, || {
                Violation::new(
                    "RFC 1122 §3.2.2",
                    "the ICMP error quotes fewer than 8 bytes after the IP header",
                )
                .frames([dno, *no])
                .field("quoted bytes")
                .expected(">= 8")
                .actual(q.quoted_transport_bytes)
            });
            if matches!(want_kind, (1, 4)) {
                let want = (40 + 8 + len).min(ICMPV6_MAX_QUOTE);
                let got = q.ip_header_len + q.quoted_transport_bytes;
                findings.check(got == want, || {
                    Violation::new(
                        "RFC 4443 §2.4(c)",
                        "ICMPv6 error does not quote as much of the packet as fits in 1280 bytes",
                    )
                    .frames([dno, *no])
                    .field("quoted length")
                    .expected(want)
                    .actual(got)
                });
            }
        }
        // Which datagrams must have been answered.
        let must_answer: Vec<usize> = if case.ratelimit_off {
            (0..datagrams.len()).collect()
        } else {
            vec![0]
        };
        for i in must_answer {
            findings.check(answered[i], || {
                Violation::new(
                    clause,
                    format!(
                        "no port unreachable for datagram {} to closed port {}",
                        i + 1,
                        case.port
                    ),
                )
                .frame(datagrams[i].0)
                .field("reply")
                .expected(want_name)
                .actual(if case.ratelimit_off {
                    "nothing (per-host rate limit was off)".to_string()
                } else {
                    "nothing (the first error is within the rate limiter's burst)".to_string()
                })
            });
        }
        let count = answered.iter().filter(|a| **a).count();
        if !case.ratelimit_off && count < datagrams.len() {
            findings.note(format!(
                "rate limit withheld {} of {} errors",
                datagrams.len() - count,
                datagrams.len()
            ));
        }
        // Socket outcomes.
        for (i, sent) in observed.sends.iter().enumerate() {
            // A connected socket may see the previous datagram's error on this send instead of on recv.
            let ok = match sent {
                Ok(n) => *n == case.sizes[i] as usize,
                Err(e) => case.connected && *e == Errno::ECONNREFUSED,
            };
            findings.check(ok, || {
                Violation::new("POSIX send", format!("send of datagram {} failed", i + 1))
                    .frame(datagrams[i].0)
                    .field("send()")
                    .expected(format!("{} bytes", case.sizes[i]))
                    .actual(match sent {
                        Ok(n) => format!("{n} bytes"),
                        Err(e) => e.name(),
                    })
            });
        }
        if case.connected {
            for (i, after) in observed.recv_after.iter().enumerate() {
                if !answered[i] {
                    continue;
                }
                let ok = matches!(after, Some(Err(Errno::ECONNREFUSED)));
                findings.check(ok, || {
                    Violation::new(
                        "RFC 1122 §4.1.3.3 (UDP passes ICMP errors to the application); Linux connected UDP",
                        format!("the connected socket was not told of the port unreachable for datagram {}", i + 1),
                    )
                    .frame(datagrams[i].0)
                    .field("recv() after the error")
                    .expected("ECONNREFUSED")
                    .actual(match after {
                        None => "no pending error (POLLERR) within 300 ms".to_string(),
                        Some(Ok(n)) => format!("{n} bytes"),
                        Some(Err(e)) => e.name(),
                    })
                });
            }
        }
        findings.verdict()
    }
}

fn case_family(trace: &Trace, datagrams: &[(usize, usize, Option<u16>)]) -> Family {
    let first = datagrams
        .first()
        .and_then(|(no, _, _)| trace.frames.get(no - 1));
    match first.and_then(|f| f.packet.as_ref().ok()).map(|p| &p.net) {
        Some(Network::Ipv6 { .. }) => Family::Ipv6,
        _ => Family::Ipv4,
    }
}
