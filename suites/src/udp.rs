//! UDP (suite `udp`): the ICMP answer to a datagram for a closed port, ports per host, the datagram on the wire
//! (incl. fragmented datagrams, reassembled by netconform), message boundaries, truncation, sending to an
//! unresolved neighbour, receive-buffer overflow, and no retransmission of datagrams lost on a relay link.
//!
//! Shared choices: senders pin their host thread to the CPU it runs on before sending, because veth hands a
//! frame to the *sending* CPU's backlog: a sender that migrates between two sends can have its datagrams
//! processed out of order by the receiving host (docs/kernel-facts.md: veth reorders occasionally on 2 CPUs).
//! Pinned, the link is a FIFO and "in order on a lossless link" is a fair requirement. Receivers that are not studying
//! buffer limits get a large receive buffer (SO_RCVBUFFORCE) so that no datagram is dropped for room.

use std::net::SocketAddr;
use std::time::Duration;

use harness::frame::Host;
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::{Errno, Family, Socket};
use harness::sockopt::RecvFlags;
use harness::trace::Trace;
use harness::wire::reassembly::{udp_datagrams, Incomplete, UdpDatagram};
use harness::wire::{ChecksumStatus, Network, Transport};
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
            needs: Needs { link: LinkKind::Veth },
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

// ---------------------------------------------------------------------------------------------------------
// Shared helpers of the UDP properties.
// ---------------------------------------------------------------------------------------------------------

/// MTU of the lab link (veth default).
const LINK_MTU: usize = 1500;

/// Largest UDP payload: IPv4 total length 65535 − 20 (IP) − 8 (UDP) = 65507; IPv6 payload length 65535 − 8
/// (UDP) = 65527 (RFC 8200 §3; jumbograms left out).
pub fn max_payload(family: Family) -> usize {
    match family {
        Family::Ipv4 => 65_535 - 20 - 8,
        Family::Ipv6 => 65_535 - 8,
    }
}

/// Largest payload that fits one frame on the lab link: MTU − IP header (20 / 40) − UDP header (8).
pub fn unfragmented_max(family: Family) -> usize {
    match family {
        Family::Ipv4 => LINK_MTU - 20 - 8,
        Family::Ipv6 => LINK_MTU - 40 - 8,
    }
}

/// A datagram size: tiny, ordinary, around the fragmentation boundary, fragmenting, up to the maximum.
fn gen_size(rng: &mut CaseRng, family: Family) -> usize {
    let unfrag = unfragmented_max(family);
    let max = max_payload(family);
    match rng.gen_range(0..100) {
        0..=9 => rng.gen_range(0..=8),
        10..=49 => rng.gen_range(0..=unfrag),
        50..=64 => rng.gen_range(unfrag - 2..=unfrag + 2),
        65..=89 => rng.gen_range(unfrag + 1..=16_000),
        90..=94 => rng.gen_range(16_000..=max),
        _ => max,
    }
}

/// The payload of datagram `index`: its first byte is the index, so a received datagram names itself.
pub fn payload_of(index: usize, size: usize) -> Vec<u8> {
    (0..size)
        .map(|j| {
            if j == 0 {
                index as u8
            } else {
                (j as u8).wrapping_mul(7) ^ ((j >> 8) as u8) ^ (index as u8).wrapping_mul(37)
            }
        })
        .collect()
}

/// Which sent payload `data` is, if any.
fn which(payloads: &[Vec<u8>], data: &[u8]) -> Option<usize> {
    payloads.iter().position(|p| p.as_slice() == data)
}

/// Receive buffer asked for (SO_RCVBUFFORCE, root) by receivers that must not drop for lack of room: eight
/// maximal datagrams, each charged ~100 KiB of truesize once reassembled from 45 fragments.
const ROOMY_RCVBUF: i32 = 8 << 20;

/// How long a receiver waits for a datagram that was already sent (veth delivers in microseconds; the bound
/// only keeps a lost datagram from hanging the case).
const RECV_WAIT: Duration = Duration::from_millis(1000);

/// Pins the calling (host) thread to the CPU it is running on (see the module doc: veth order).
fn pin_to_current_cpu() {
    if let Some(cpu) = harness::cpu::current_cpu() {
        // Best effort, as before: an unpinned sender only loses the ordering guarantee.
        let _ = harness::cpu::pin_current_thread_to_cpu(cpu);
    }
}

/// SO_MEMINFO sk_rmem_alloc: bytes of truesize charged to the socket's receive queue.
fn rmem_alloc(s: &Socket) -> Result<u32, HarnessError> {
    s.rmem_alloc().map_err(sock_step("SO_MEMINFO"))
}

fn sock_step(what: &'static str) -> impl Fn(Errno) -> HarnessError {
    move |e| harness::sock::socket_step(what, e)
}

/// Every UDP datagram on the wire, whole or reassembled, with the host it left.
fn wire_datagrams(trace: &Trace) -> Vec<(Option<Host>, Result<UdpDatagram, Incomplete>)> {
    let from: std::collections::HashMap<usize, Option<Host>> =
        trace.frames.iter().map(|f| (f.number, f.from)).collect();
    udp_datagrams(
        trace
            .frames
            .iter()
            .filter_map(|f| Some((f.number, f.packet.as_ref().ok()?))),
    )
    .into_iter()
    .map(|d| {
        let first = match &d {
            Ok(d) => d.frames[0],
            Err(i) => i.frames[0],
        };
        (from.get(&first).copied().flatten(), d)
    })
    .collect()
}

/// Adds a note unless the case already has it (notes are counted per case in the report).
fn note_once(findings: &mut Findings, note: &str) {
    if !findings.notes.iter().any(|n| n == note) {
        findings.note(note);
    }
}

fn describe_sizes(sizes: &[usize]) -> String {
    let v: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
    format!("[{}]", v.join(", "))
}

fn outcome<T: std::fmt::Debug>(r: &Result<T, Errno>) -> String {
    match r {
        Ok(v) => format!("{v:?}"),
        Err(e) => e.name(),
    }
}

// ---------------------------------------------------------------------------------------------------------
// udp.bind.per_host (Q2)
// ---------------------------------------------------------------------------------------------------------

/// Port numbers are per host; a second bind of the same port on one host fails unless Linux's reuse rules
/// allow it (lab Q2).
///
/// RFC 768: "Source Port … Destination Port": a port names a process *on a host* (the pseudo-header pairs it
/// with the host's address), so the same port bound on `a` and on `b` at once is two independent endpoints.
/// POSIX bind: `[EADDRINUSE] The specified address is already in use.` What "in use" means is Linux's rule
/// (`udp_lib_lport_inuse`, documented in socket(7) and ipv6(7)): two UDP sockets conflict when their bound
/// addresses overlap (equal, or either is the wildcard; an IPv6 `[::]` socket without IPV6_V6ONLY also covers
/// every IPv4 address, ipv6(7)) — unless both set SO_REUSEADDR, or both set SO_REUSEPORT with the same
/// effective UID (socket(7): "This option must be set on each socket (including the first socket) prior to
/// calling bind(2)"). A specific IPv6 address makes its socket IPv6-only, so it never conflicts with IPv4.
///
/// Lab question: can the same port be used on both hosts at once, and what does a second bind on one host do?
/// Checked: the first bind on one host and the same port on the other host both succeed; the second bind on
/// the first host gives exactly what the rule predicts (success or EADDRINUSE); a unicast datagram from the
/// other host to that port is delivered to exactly one of the sockets whose address matches it (with reuse,
/// Linux picks one: the most specific address, or one member of the SO_REUSEPORT group) and to none when none
/// matches; on the wire both directions carry that same port as source and destination.
pub struct BindPerHost;

/// The address a socket binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindAddr {
    Wildcard,
    /// The host's lab address.
    Lab,
    Loopback,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindSpec {
    pub family: Family,
    pub addr: BindAddr,
    pub reuseaddr: bool,
    pub reuseport: bool,
    /// IPV6_V6ONLY (IPv6 sockets only).
    pub v6only: bool,
}

impl BindSpec {
    fn ip(&self, host: Host) -> std::net::IpAddr {
        match (self.addr, self.family) {
            (BindAddr::Wildcard, f) => f.unspecified(),
            (BindAddr::Lab, f) => harness::lab::host_addr(host, f),
            (BindAddr::Loopback, Family::Ipv4) => std::net::Ipv4Addr::LOCALHOST.into(),
            (BindAddr::Loopback, Family::Ipv6) => std::net::Ipv6Addr::LOCALHOST.into(),
        }
    }

    /// Whether this socket can receive a unicast datagram of `family` sent to the host's lab address.
    fn receives_from_link(&self, family: Family) -> bool {
        let addr_ok = matches!(self.addr, BindAddr::Wildcard | BindAddr::Lab);
        match (self.family, family) {
            (a, b) if a == b => addr_ok,
            // An IPv6 wildcard socket without IPV6_V6ONLY receives IPv4 as mapped addresses.
            (Family::Ipv6, Family::Ipv4) => self.addr == BindAddr::Wildcard && !self.v6only,
            _ => false,
        }
    }

    fn describe(&self) -> String {
        let mut s = format!(
            "{} {}",
            self.family.name(),
            match self.addr {
                BindAddr::Wildcard => "wildcard",
                BindAddr::Lab => "lab-addr",
                BindAddr::Loopback => "loopback",
            }
        );
        if self.reuseaddr {
            s.push_str(" +SO_REUSEADDR");
        }
        if self.reuseport {
            s.push_str(" +SO_REUSEPORT");
        }
        if self.family == Family::Ipv6 && self.v6only {
            s.push_str(" +V6ONLY");
        }
        s
    }
}

/// Linux's conflict rule for two UDP sockets on one port (see [`BindPerHost`]).
pub fn bind_conflicts(first: &BindSpec, second: &BindSpec) -> bool {
    let overlap = match (first.family, second.family) {
        (a, b) if a == b => {
            first.addr == BindAddr::Wildcard
                || second.addr == BindAddr::Wildcard
                || first.addr == second.addr
        }
        // Exactly one IPv6 socket: only an IPv6 wildcard without V6ONLY covers IPv4 addresses.
        (Family::Ipv6, Family::Ipv4) => first.addr == BindAddr::Wildcard && !first.v6only,
        (Family::Ipv4, Family::Ipv6) => second.addr == BindAddr::Wildcard && !second.v6only,
        _ => false,
    };
    let shared = (first.reuseaddr && second.reuseaddr) || (first.reuseport && second.reuseport);
    overlap && !shared
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindCase {
    pub family: Family,
    pub port: u16,
    /// The host that binds twice; the other binds the port once.
    pub host: Host,
    pub first: BindSpec,
    pub second: BindSpec,
}

#[derive(Debug, Clone)]
pub struct BindObserved {
    pub first_bind: Result<(), Errno>,
    pub other_bind: Result<(), Errno>,
    pub second_bind: Result<(), Errno>,
    /// The datagram from the other host: what its send returned, and which of (first, second) received it.
    pub to_host_send: Result<usize, Errno>,
    pub received_by: [bool; 2],
    /// The answer from the first socket (when it can send on the link): send result and whether it arrived.
    pub reply: Option<(Result<usize, Errno>, bool)>,
}

fn gen_bind_spec(rng: &mut CaseRng, family: Family) -> BindSpec {
    BindSpec {
        family,
        addr: match rng.gen_range(0..3) {
            0 => BindAddr::Wildcard,
            1 => BindAddr::Lab,
            _ => BindAddr::Loopback,
        },
        reuseaddr: rng.gen_bool(0.4),
        reuseport: rng.gen_bool(0.4),
        v6only: family == Family::Ipv6 && rng.gen(),
    }
}

fn bind_socket(
    spec: &BindSpec,
    host: Host,
    port: u16,
) -> Result<(Socket, Result<(), Errno>), HarnessError> {
    let s = Socket::udp(spec.family)?;
    if spec.reuseaddr {
        s.set_reuse_addr(true).map_err(sock_step("SO_REUSEADDR"))?;
    }
    if spec.reuseport {
        s.set_reuse_port(true).map_err(sock_step("SO_REUSEPORT"))?;
    }
    if spec.family == Family::Ipv6 {
        s.set_v6only(spec.v6only)
            .map_err(sock_step("IPV6_V6ONLY"))?;
    }
    let r = s.bind(SocketAddr::new(spec.ip(host), port));
    Ok((s, r))
}

/// Waits for any of `sockets` to become readable, then takes what each has (one datagram at most).
fn take_from_any(sockets: &[&Socket], wait: Duration) -> Vec<bool> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        if sockets.iter().any(|s| s.poll_readable(Duration::ZERO)) {
            break;
        }
        if std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    // Give a second (wrong) copy a moment to show up before deciding that only one socket got it.
    std::thread::sleep(Duration::from_millis(2));
    sockets
        .iter()
        .map(|s| s.recv_with(64, RecvFlags::DONTWAIT).is_ok())
        .collect()
}

impl Property for BindPerHost {
    type Case = BindCase;
    type Observed = BindObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "udp.bind.per_host",
            suite: "udp",
            title: "the same port binds on both hosts at once; a second bind on one host fails with EADDRINUSE unless SO_REUSEADDR/SO_REUSEPORT/V6ONLY rules allow it",
            clauses: &["RFC 768", "POSIX bind", "socket(7) SO_REUSEADDR/SO_REUSEPORT", "ipv6(7) IPV6_V6ONLY"],
            questions: &["Q2"],
            needs: Needs { link: LinkKind::Veth },
        }
    }

    fn generate(&self, rng: &mut CaseRng, family: Family) -> BindCase {
        let first = gen_bind_spec(rng, family);
        let second_family = if family == Family::Ipv6 && rng.gen_bool(0.3) {
            Family::Ipv4
        } else {
            family
        };
        let mut second = gen_bind_spec(rng, second_family);
        // Half the time, the same options as the first: the interesting both-set cases are not rare.
        if rng.gen() {
            second.reuseaddr = first.reuseaddr;
            second.reuseport = first.reuseport;
        }
        BindCase {
            family,
            port: rng.gen_range(1..=u16::MAX),
            host: if rng.gen() { Host::A } else { Host::B },
            first,
            second,
        }
    }

    fn describe(&self, case: &BindCase) -> String {
        format!(
            "port {} on host {}: first {}, second {} (other host binds it too)",
            case.port,
            case.host.name(),
            case.first.describe(),
            case.second.describe()
        )
    }

    fn execute(&self, case: &BindCase, env: &CaseEnv) -> Result<BindObserved, HarnessError> {
        let (x, o) = (case.host, case.host.other());
        let (port, family) = (case.port, case.family);
        let (first, second) = (case.first.clone(), case.second.clone());
        let (s1, first_bind) = env
            .lab
            .host(x)
            .run(move || bind_socket(&first, x, port))??;
        let other_addr = SocketAddr::new(env.lab.addr(o, family), port);
        let (so, other_bind) = env.lab.host(o).run(move || -> Result<_, HarnessError> {
            let s = Socket::udp(family)?;
            let r = s.bind(other_addr);
            Ok((s, r))
        })??;
        let (s2, second_bind) = env
            .lab
            .host(x)
            .run(move || bind_socket(&second, x, port))??;
        // The other host sends to x's lab address on the port.
        let x_addr = SocketAddr::new(env.lab.addr(x, family), port);
        let (so, to_host_send) = env.lab.host(o).run(move || -> Result<_, HarnessError> {
            pin_to_current_cpu();
            let r = so.send_to(b"to-x", x_addr, 0)?;
            Ok((so, r))
        })??;
        let first_bound = first_bind.is_ok();
        let second_bound = second_bind.is_ok();
        let (s1, s2, received_by) = env.lab.host(x).run(move || {
            let mut socks: Vec<&Socket> = Vec::new();
            if first_bound {
                socks.push(&s1);
            }
            if second_bound {
                socks.push(&s2);
            }
            let got = take_from_any(&socks, Duration::from_millis(100));
            let mut it = got.into_iter();
            let r1 = first_bound && it.next().unwrap_or(false);
            let r2 = second_bound && it.next().unwrap_or(false);
            (s1, s2, [r1, r2])
        })?;
        let mut reply = None;
        if first_bound && case.first.family == family && case.first.addr != BindAddr::Loopback {
            let sent = env
                .lab
                .host(x)
                .run(move || s1.send_to(b"to-other", other_addr, 0))??;
            let arrived = env.lab.host(o).run(move || {
                so.recv_timeout(64, 0, Duration::from_millis(300))
                    .is_some_and(|r| r.is_ok())
            })?;
            reply = Some((sent, arrived));
        }
        drop(s2);
        Ok(BindObserved {
            first_bind,
            other_bind,
            second_bind,
            to_host_send,
            received_by,
            reply,
        })
    }

    fn check(&self, case: &BindCase, observed: &BindObserved, trace: &Trace) -> Verdict {
        let mut findings = Findings::default();
        let (x, o) = (case.host, case.host.other());
        findings.check(observed.first_bind.is_ok(), || {
            Violation::new("POSIX bind", "the first bind of a free port failed")
                .field("bind() of the first socket")
                .expected("success")
                .actual(outcome(&observed.first_bind))
        });
        findings.check(observed.other_bind.is_ok(), || {
            Violation::new(
                "RFC 768",
                format!(
                    "port {} bound on host {} could not also be bound on host {}: ports are per host",
                    case.port,
                    x.name(),
                    o.name()
                ),
            )
            .field("bind() on the other host")
            .expected("success")
            .actual(outcome(&observed.other_bind))
        });
        if observed.first_bind.is_err() || observed.other_bind.is_err() {
            return findings.verdict();
        }
        let conflict = bind_conflicts(&case.first, &case.second);
        let second_ok = match observed.second_bind {
            Ok(()) => !conflict,
            Err(e) => conflict && e == Errno::EADDRINUSE,
        };
        findings.check(second_ok, || {
            Violation::new(
                if case.first.family != case.second.family {
                    "ipv6(7) IPV6_V6ONLY"
                } else if case.first.reuseaddr || case.first.reuseport {
                    "socket(7) SO_REUSEADDR/SO_REUSEPORT"
                } else {
                    "POSIX bind"
                },
                format!(
                    "second bind of port {} on host {} ({} after {})",
                    case.port,
                    x.name(),
                    case.second.describe(),
                    case.first.describe()
                ),
            )
            .field("bind() of the second socket")
            .expected(if conflict {
                "EADDRINUSE (the addresses overlap and the sockets do not both allow reuse)"
            } else {
                "success"
            })
            .actual(outcome(&observed.second_bind))
        });
        // The datagram from the other host.
        let datagrams = wire_datagrams(trace);
        let to_x = datagrams.iter().find_map(|(from, d)| match d {
            Ok(d) if *from == Some(o) && d.repr.dst_port == case.port => Some(d),
            _ => None,
        });
        findings.check(observed.to_host_send == Ok(4), || {
            Violation::new("POSIX send", "the other host could not send to the port")
                .field("sendto()")
                .expected("4 bytes")
                .actual(outcome(&observed.to_host_send))
        });
        match to_x {
            None => findings.push(
                Violation::new(
                    "RFC 768",
                    "the datagram to the bound port never appeared on the wire",
                )
                .field("datagram")
                .expected(format!(
                    "{} > {} udp 4, port {} > {}",
                    o.role(),
                    x.role(),
                    case.port,
                    case.port
                ))
                .actual("nothing"),
            ),
            Some(d) => {
                findings.check(d.repr.src_port == case.port, || {
                    Violation::new(
                        "RFC 768",
                        "the datagram does not carry the bound port as its source port",
                    )
                    .frames(d.frames.clone())
                    .field("source port")
                    .expected(case.port)
                    .actual(d.repr.src_port)
                });
                let eligible = [
                    case.first.receives_from_link(case.family),
                    observed.second_bind.is_ok() && case.second.receives_from_link(case.family),
                ];
                let want = eligible.iter().filter(|e| **e).count().min(1);
                let got = observed.received_by.iter().filter(|r| **r).count();
                let wrong = observed
                    .received_by
                    .iter()
                    .zip(eligible)
                    .any(|(r, e)| *r && !e);
                findings.check(got == want && !wrong, || {
                    Violation::new(
                        "RFC 768",
                        "a unicast datagram was not delivered to exactly one socket whose address matches it",
                    )
                    .frames(d.frames.clone())
                    .field("receiving sockets (first, second)")
                    .expected(if want == 0 {
                        "none (no socket's address matches the lab address)".to_string()
                    } else {
                        format!("exactly one of those that match: first {}, second {}", eligible[0], eligible[1])
                    })
                    .actual(format!(
                        "first {}, second {}",
                        observed.received_by[0], observed.received_by[1]
                    ))
                });
            }
        }
        if let Some((sent, arrived)) = &observed.reply {
            let reply = datagrams.iter().find_map(|(from, d)| match d {
                Ok(d) if *from == Some(x) && d.repr.dst_port == case.port => Some(d),
                _ => None,
            });
            findings.check(*sent == Ok(8) && *arrived, || {
                Violation::new(
                    "RFC 768",
                    "the answer from the first socket to the same port on the other host was not delivered",
                )
                .frames(reply.map(|d| d.frames.clone()).unwrap_or_default())
                .field("send/receive")
                .expected("sent 8 bytes, received by the other host's socket")
                .actual(format!("send {}, received {arrived}", outcome(sent)))
            });
            if let Some(d) = reply {
                findings.check(d.repr.src_port == case.port, || {
                    Violation::new(
                        "RFC 768",
                        "the answer does not carry the bound port as its source port",
                    )
                    .frames(d.frames.clone())
                    .field("source port")
                    .expected(case.port)
                    .actual(d.repr.src_port)
                });
                findings.note("same port in both directions at once");
            }
        }
        findings.note(if conflict {
            "second bind refused (EADDRINUSE)"
        } else {
            "second bind allowed"
        });
        findings.verdict()
    }
}

// ---------------------------------------------------------------------------------------------------------
// udp.wire.header (Q3, Q5)
// ---------------------------------------------------------------------------------------------------------

/// A UDP datagram on the wire: protocol 17, 8-byte header, length, payload, checksum (lab Q3, Q5).
///
/// RFC 768: "Length is the length in octets of this user datagram including this header and the data" (so
/// the header is 8 bytes and length = 8 + payload); "Checksum is the 16-bit one's complement of the one's
/// complement sum of a pseudo header …, the UDP header, and the data"; "If the computed checksum is zero, it
/// is transmitted as all ones … An all zero transmitted checksum value means that the transmitter generated
/// no checksum". RFC 8200 §8.1: over IPv6 the checksum is not optional: "IPv6 receivers must discard UDP
/// packets containing a zero checksum" (the tunnel exception of RFC 6935 needs UDP_NO_CHECK6_TX, never set
/// here). RFC 791 §3.2 / RFC 8200 §4.5: a datagram larger than the link MTU leaves in fragments that
/// reassemble to exactly the datagram.
///
/// Lab question: what does a UDP datagram look like on the wire, and is the checksum there? Checked, for
/// every datagram `a` sends (sizes 0 to 65507 / 65527, many of them fragmented): it is found on the wire as
/// UDP (IP protocol / next header 17) with the socket's ports; once reassembled by netconform, its length field
/// is 8 + payload, IP carries exactly those bytes, the payload equals what was sent byte for byte, and the
/// checksum verifies over the whole datagram and the pseudo-header. IPv4 may carry 0 (not computed: the case
/// sets SO_NO_CHECK, Linux then sends 0); IPv6 never carries 0, even when the application asked SO_NO_CHECK.
/// Some cases craft the payload so the checksum computes to 0: it must then be sent as 0xffff. `b` must
/// receive each datagram whole (RFC 1122 §4.1.3.4: a datagram with checksum 0 over IPv4 is accepted).
pub struct WireHeader;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireHeaderCase {
    pub family: Family,
    pub src_port: u16,
    pub dst_port: u16,
    pub sizes: Vec<usize>,
    /// SO_NO_CHECK on the sender.
    pub no_check: bool,
    /// Datagram whose first two payload bytes are chosen so that its checksum computes to zero.
    pub zero_sum: Option<usize>,
    pub connected: bool,
}

impl WireHeaderCase {
    /// The payload of datagram `i`, as sent.
    pub fn payload(&self, i: usize) -> Vec<u8> {
        let mut p = payload_of(i, self.sizes[i]);
        if self.zero_sum == Some(i) && p.len() >= 2 {
            let (src, dst) = (
                harness::lab::host_addr(Host::A, self.family),
                harness::lab::host_addr(Host::B, self.family),
            );
            p[0] = 0;
            p[1] = 0;
            let mut udp = Vec::with_capacity(8 + p.len());
            udp.extend_from_slice(&self.src_port.to_be_bytes());
            udp.extend_from_slice(&self.dst_port.to_be_bytes());
            udp.extend_from_slice(&((8 + p.len()) as u16).to_be_bytes());
            udp.extend_from_slice(&[0, 0]);
            udp.extend_from_slice(&p);
            let sum = harness::wire::checksum::sum(
                &udp,
                harness::wire::checksum::pseudo_header_sum(src, dst, 17, udp.len()),
            );
            // Adding !fold(sum) at an aligned word (payload offset 0 = datagram offset 8) makes the folded sum
            // 0xffff, so the checksum (its complement) computes to 0.
            let word = harness::wire::checksum::finish(sum);
            p[0..2].copy_from_slice(&word.to_be_bytes());
        }
        p
    }
}

#[derive(Debug, Clone)]
pub struct WireHeaderObserved {
    pub sends: Vec<Result<usize, Errno>>,
    /// What b received for each datagram (None: nothing within the wait).
    pub received: Vec<Option<Result<harness::sock::Received, Errno>>>,
}

impl Property for WireHeader {
    type Case = WireHeaderCase;
    type Observed = WireHeaderObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "udp.wire.header",
            suite: "udp",
            title: "each datagram on the wire is protocol 17 with an 8-byte header, length 8 + payload, the payload sent, and a valid checksum (IPv4 0 allowed, IPv6 never 0), also when fragmented",
            clauses: &["RFC 768", "RFC 8200 §8.1", "RFC 791 §3.2", "RFC 8200 §4.5", "RFC 1122 §4.1.3.4"],
            questions: &["Q3", "Q5"],
            needs: Needs { link: LinkKind::Veth },
        }
    }

    fn generate(&self, rng: &mut CaseRng, family: Family) -> WireHeaderCase {
        let n = rng.gen_range(1..=4);
        let sizes: Vec<usize> = (0..n).map(|_| gen_size(rng, family)).collect();
        let zero_sum = if rng.gen_bool(0.3) {
            let i = rng.gen_range(0..n);
            (sizes[i] >= 2).then_some(i)
        } else {
            None
        };
        WireHeaderCase {
            family,
            src_port: rng.gen_range(1..=u16::MAX),
            dst_port: rng.gen_range(1..=u16::MAX),
            sizes,
            no_check: rng.gen_bool(0.3),
            zero_sum,
            connected: rng.gen(),
        }
    }

    fn describe(&self, case: &WireHeaderCase) -> String {
        format!(
            "{} datagram(s) of {} bytes, port {} > {}{}{}{}",
            case.sizes.len(),
            describe_sizes(&case.sizes),
            case.src_port,
            case.dst_port,
            if case.connected { ", connected" } else { "" },
            if case.no_check { ", SO_NO_CHECK" } else { "" },
            match case.zero_sum {
                Some(i) => format!(", datagram {} sums to 0", i + 1),
                None => String::new(),
            }
        )
    }

    fn execute(
        &self,
        case: &WireHeaderCase,
        env: &CaseEnv,
    ) -> Result<WireHeaderObserved, HarnessError> {
        let family = case.family;
        let a = SocketAddr::new(env.lab.addr(Host::A, family), case.src_port);
        let b = SocketAddr::new(env.lab.addr(Host::B, family), case.dst_port);
        let receiver = env
            .lab
            .host(Host::B)
            .run(move || -> Result<Socket, HarnessError> {
                let s = Socket::udp(family)?;
                s.set_rcvbuf_force(ROOMY_RCVBUF)
                    .map_err(sock_step("SO_RCVBUFFORCE"))?;
                s.bind(b).map_err(sock_step("bind"))?;
                Ok(s)
            })??;
        let payloads: Vec<Vec<u8>> = (0..case.sizes.len()).map(|i| case.payload(i)).collect();
        let (no_check, connected) = (case.no_check, case.connected);
        let sends = env
            .lab
            .host(Host::A)
            .run(move || -> Result<_, HarnessError> {
                pin_to_current_cpu();
                let s = Socket::udp(family)?;
                if no_check {
                    s.set_udp_no_checksum(true)
                        .map_err(sock_step("SO_NO_CHECK"))?;
                }
                s.bind(a).map_err(sock_step("bind"))?;
                if connected {
                    s.connect(b)?.map_err(sock_step("connect"))?;
                }
                let mut sends = Vec::new();
                for p in &payloads {
                    sends.push(if connected {
                        s.send(p, 0)?
                    } else {
                        s.send_to(p, b, 0)?
                    });
                }
                Ok(sends)
            })??;
        let n = case.sizes.len();
        let received = env.lab.host(Host::B).run(move || {
            (0..n)
                .map(|_| receiver.recv_timeout(65_536, 0, RECV_WAIT))
                .collect::<Vec<_>>()
        })?;
        Ok(WireHeaderObserved { sends, received })
    }

    fn check(
        &self,
        case: &WireHeaderCase,
        observed: &WireHeaderObserved,
        trace: &Trace,
    ) -> Verdict {
        let mut findings = Findings::default();
        let v6 = case.family == Family::Ipv6;
        for (i, sent) in observed.sends.iter().enumerate() {
            findings.check(*sent == Ok(case.sizes[i]), || {
                Violation::new("POSIX send", format!("send of datagram {} failed", i + 1))
                    .field("send()")
                    .expected(format!("{} bytes", case.sizes[i]))
                    .actual(outcome(sent))
            });
        }
        let ours: Vec<Result<UdpDatagram, Incomplete>> = wire_datagrams(trace)
            .into_iter()
            .filter(|(from, _)| *from == Some(Host::A))
            .map(|(_, d)| d)
            .filter(|d| match d {
                Ok(d) => d.repr.src_port == case.src_port && d.repr.dst_port == case.dst_port,
                // Fragments that do not reassemble: ports unknown unless the first is there; keep them all.
                Err(_) => true,
            })
            .collect();
        for d in &ours {
            if let Err(inc) = d {
                findings.push(
                    Violation::new(
                        "RFC 791 §3.2 / RFC 8200 §4.5",
                        "fragments on the wire do not reassemble into a datagram",
                    )
                    .frames(inc.frames.clone())
                    .field("fragments")
                    .expected("first to last fragment, contiguous")
                    .actual(&inc.reason),
                );
            }
        }
        let whole: Vec<&UdpDatagram> = ours.iter().filter_map(|d| d.as_ref().ok()).collect();
        findings.check(whole.len() == case.sizes.len(), || {
            Violation::new(
                "RFC 768",
                "the wire does not carry one UDP datagram per send",
            )
            .frames(whole.iter().flat_map(|d| d.frames.first().copied()))
            .field("UDP datagrams from A with the socket's ports")
            .expected(case.sizes.len())
            .actual(whole.len())
        });
        let mut fragmented = 0;
        for (i, d) in whole.iter().enumerate().take(case.sizes.len()) {
            let size = case.sizes[i];
            let frames = d.frames.clone();
            let v = |summary: String| Violation::new("RFC 768", summary).frames(frames.clone());
            if d.fragmented {
                fragmented += 1;
            }
            findings.check(d.repr.length as usize == 8 + size, || {
                v(format!(
                    "datagram {}: the length field is not 8 + payload",
                    i + 1
                ))
                .field("UDP length")
                .expected(8 + size)
                .actual(d.repr.length)
            });
            findings.check(d.ip_len == 8 + size, || {
                v(format!(
                    "datagram {}: IP carries a different number of bytes than the UDP datagram",
                    i + 1
                ))
                .field(if d.fragmented {
                    "reassembled IP payload"
                } else {
                    "IP payload length"
                })
                .expected(format!("{} (8-byte header + {size})", 8 + size))
                .actual(d.ip_len)
            });
            let want = case.payload(i);
            if d.payload != want {
                let at = d
                    .payload
                    .iter()
                    .zip(&want)
                    .position(|(a, b)| a != b)
                    .unwrap_or(d.payload.len().min(want.len()));
                findings.push(
                    v(format!(
                        "datagram {}: the payload on the wire differs from what was sent",
                        i + 1
                    ))
                    .field(format!("payload byte {at}"))
                    .expected(format!(
                        "{} bytes as sent; byte {at} = {:?}",
                        want.len(),
                        want.get(at)
                    ))
                    .actual(format!(
                        "{} bytes; byte {at} = {:?}",
                        d.payload.len(),
                        d.payload.get(at)
                    )),
                );
            }
            let field = d.repr.checksum;
            if v6 {
                findings.check(field != 0, || {
                    Violation::new(
                        "RFC 8200 §8.1",
                        format!("datagram {}: IPv6 UDP checksum is zero", i + 1),
                    )
                    .frames(frames.clone())
                    .field("UDP checksum")
                    .expected("computed (never 0 over IPv6, even with SO_NO_CHECK)")
                    .actual("0x0000")
                });
            }
            match d.checksum {
                ChecksumStatus::Valid => {}
                ChecksumStatus::NotComputed if !v6 => {
                    note_once(&mut findings, "IPv4 checksum 0 (not computed)");
                }
                status => findings.push(
                    Violation::new(
                        if v6 { "RFC 8200 §8.1" } else { "RFC 768" },
                        format!(
                            "datagram {}: the checksum does not verify over the {}datagram",
                            i + 1,
                            if d.fragmented { "reassembled " } else { "" }
                        ),
                    )
                    .frames(frames.clone())
                    .field("UDP checksum")
                    .expected("one's complement sum over pseudo-header, header and data = 0xffff")
                    .actual(format!("{field:#06x} ({status:?})")),
                ),
            }
            if case.zero_sum == Some(i) && field != 0 {
                findings.check(field == 0xffff, || {
                    v(format!(
                        "datagram {}: a checksum that computes to zero is not sent as all ones",
                        i + 1
                    ))
                    .field("UDP checksum")
                    .expected("0xffff")
                    .actual(format!("{field:#06x}"))
                });
            }
            if case.zero_sum == Some(i) && field == 0xffff {
                note_once(&mut findings, "computed zero sent as 0xffff");
            }
        }
        if fragmented > 0 {
            findings.note("fragmented datagrams reassembled");
        }
        // b got each datagram whole.
        let a = SocketAddr::new(harness::lab::host_addr(Host::A, case.family), case.src_port);
        for (i, r) in observed.received.iter().enumerate() {
            let want = case.payload(i);
            let frames = whole.get(i).map(|d| d.frames.clone()).unwrap_or_default();
            let ok = matches!(r, Some(Ok(got)) if got.data == want && got.returned == want.len() && got.from == Some(a));
            findings.check(ok, || {
                Violation::new(
                    "RFC 1122 §4.1.3.4",
                    format!("datagram {} was not delivered to b as sent", i + 1),
                )
                .frames(frames)
                .field("recvmsg() on b")
                .expected(format!("{} bytes from {a}", want.len()))
                .actual(match r {
                    None => "nothing within 1 s".to_string(),
                    Some(Err(e)) => e.name(),
                    Some(Ok(got)) => format!(
                        "{} bytes from {:?}{}",
                        got.returned,
                        got.from,
                        if got.data == want {
                            ""
                        } else {
                            ", different bytes"
                        }
                    ),
                })
            });
        }
        findings.verdict()
    }
}

// ---------------------------------------------------------------------------------------------------------
// udp.recv.boundaries and udp.recv.truncate (Q6)
// ---------------------------------------------------------------------------------------------------------

/// A receiving socket on b with room for every datagram of a case, and a pinned sending socket on a.
fn datagram_pair(
    env: &CaseEnv,
    family: Family,
    port: u16,
) -> Result<(Socket, Socket, SocketAddr, SocketAddr), HarnessError> {
    let b = SocketAddr::new(env.lab.addr(Host::B, family), port);
    let receiver = env
        .lab
        .host(Host::B)
        .run(move || -> Result<Socket, HarnessError> {
            let s = Socket::udp(family)?;
            s.set_rcvbuf_force(ROOMY_RCVBUF)
                .map_err(sock_step("SO_RCVBUFFORCE"))?;
            s.bind(b).map_err(sock_step("bind"))?;
            Ok(s)
        })??;
    let a_ip = env.lab.addr(Host::A, family);
    let (sender, a) = env
        .lab
        .host(Host::A)
        .run(move || -> Result<_, HarnessError> {
            pin_to_current_cpu();
            let s = Socket::udp(family)?;
            s.bind(SocketAddr::new(a_ip, 0))
                .map_err(sock_step("bind"))?;
            let a = s.local_addr().map_err(sock_step("getsockname"))?;
            Ok((s, a))
        })??;
    Ok((receiver, sender, a, b))
}

/// Sends `payload` from the socket on a's thread and hands the socket back.
fn send_on_a(
    env: &CaseEnv,
    sender: Socket,
    payload: Vec<u8>,
    to: SocketAddr,
) -> Result<(Socket, Result<usize, Errno>), HarnessError> {
    env.lab
        .host(Host::A)
        .run(move || -> Result<_, HarnessError> {
            let r = sender.send_to(&payload, to, 0)?;
            Ok((sender, r))
        })?
}

/// Frame numbers of our datagrams on the wire (a → b, these ports), in order.
fn our_wire_frames(trace: &Trace, a: SocketAddr, b_port: u16) -> Vec<Vec<usize>> {
    wire_datagrams(trace)
        .into_iter()
        .filter_map(|(from, d)| match d {
            Ok(d)
                if from == Some(Host::A)
                    && d.repr.src_port == a.port()
                    && d.repr.dst_port == b_port =>
            {
                Some(d.frames)
            }
            _ => None,
        })
        .collect()
}

/// One datagram per receive, in order, whole; a receive posted before the send blocks and returns it (lab Q6).
///
/// RFC 768 delivers datagrams, not a stream; POSIX recvmsg: "For message-based sockets, such as SOCK_DGRAM
/// and SOCK_SEQPACKET, the entire message shall be read in a single operation"; POSIX recv: "If no messages
/// are available at the socket and O_NONBLOCK is not set on the socket's file descriptor, recv() shall block
/// until a message arrives." UDP itself promises no order; on a lossless, pinned veth link (one FIFO, see the
/// module doc) Linux delivers in sending order, and that is what the lab observed and what is checked.
///
/// Lab question: does each receive return exactly one datagram, and does a receive wait for one? Generated:
/// 1–8 datagrams of 0–65507/65527 bytes (many fragmented), sends and receives interleaved at random, buffers
/// from exactly the datagram's size to 64 KiB more; in some cases the first receive is posted (blocking, with
/// SO_RCVTIMEO as a safety bound) before anything is sent, and the send follows 1–20 ms later. Checked: the
/// k-th receive returns exactly the k-th datagram — its length, its bytes, MSG_TRUNC clear, a's address and
/// port — never two merged, never a part; the blocking receive was posted before the send started and returned
/// (that datagram) after it; afterwards nothing more can be received (EAGAIN).
pub struct RecvBoundaries;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoundaryOp {
    /// Send the next datagram.
    Send,
    /// Receive the next datagram.
    Recv,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundariesCase {
    pub family: Family,
    pub port: u16,
    pub sizes: Vec<usize>,
    /// The buffer of the receive of each datagram (≥ its size).
    pub bufs: Vec<usize>,
    /// Datagram 0 is taken by a receive posted this many ms before its send.
    pub blocking_first_ms: Option<u16>,
    /// Interleaving of the other sends and receives.
    pub ops: Vec<BoundaryOp>,
}

#[derive(Debug, Clone)]
pub struct BoundariesObserved {
    pub a: SocketAddr,
    pub sends: Vec<Result<usize, Errno>>,
    /// Receive k (of datagram k): None when nothing came within the wait.
    pub recvs: Vec<Option<Result<harness::sock::Received, Errno>>>,
    /// The blocking receive: (posted, send started on a, returned), CLOCK_REALTIME ns read by the threads
    /// themselves. Capture timestamps are not used for this: in 2 of ~200 blocking cases under load the
    /// outgoing frame's capture timestamp was ~0.1 ms *after* b's recvmsg() had returned it (likely stamped at
    /// the capture's read rather than at the tap: net_timestamp_set only stamps while the netstamp static key is
    /// on — not verified).
    pub blocking: Option<(u64, u64, u64)>,
    /// One more non-blocking receive at the end.
    pub leftover: Result<harness::sock::Received, Errno>,
}

impl Property for RecvBoundaries {
    type Case = BoundariesCase;
    type Observed = BoundariesObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "udp.recv.boundaries",
            suite: "udp",
            title: "each receive returns exactly one whole datagram, in order on a lossless link; a receive posted before the send blocks and returns it",
            clauses: &["RFC 768", "POSIX recvmsg", "POSIX recv"],
            questions: &["Q6"],
            needs: Needs { link: LinkKind::Veth },
        }
    }

    fn generate(&self, rng: &mut CaseRng, family: Family) -> BoundariesCase {
        let n = rng.gen_range(1..=8);
        let sizes: Vec<usize> = (0..n).map(|_| gen_size(rng, family)).collect();
        let bufs = sizes
            .iter()
            .map(|&s| match rng.gen_range(0..3) {
                0 => s,
                1 => s + 1,
                _ => s + rng.gen_range(0..=65_536),
            })
            .collect();
        let blocking_first_ms = rng.gen_bool(0.4).then(|| rng.gen_range(1..=20));
        let mut left = n - blocking_first_ms.is_some() as usize;
        let (mut to_send, mut pending, mut ops) = (left, 0usize, Vec::new());
        while left > 0 {
            if pending > 0 && (to_send == 0 || rng.gen_bool(0.5)) {
                ops.push(BoundaryOp::Recv);
                pending -= 1;
                left -= 1;
            } else {
                ops.push(BoundaryOp::Send);
                pending += 1;
                to_send -= 1;
            }
        }
        BoundariesCase {
            family,
            port: rng.gen_range(1..=u16::MAX),
            sizes,
            bufs,
            blocking_first_ms,
            ops,
        }
    }

    fn describe(&self, case: &BoundariesCase) -> String {
        let ops: String = case
            .ops
            .iter()
            .map(|o| match o {
                BoundaryOp::Send => 's',
                BoundaryOp::Recv => 'r',
            })
            .collect();
        format!(
            "{} datagram(s) of {} bytes, buffers {}, {}ops {ops}",
            case.sizes.len(),
            describe_sizes(&case.sizes),
            describe_sizes(&case.bufs),
            match case.blocking_first_ms {
                Some(ms) => format!("first receive posted {ms} ms before its send, "),
                None => String::new(),
            }
        )
    }

    fn execute(
        &self,
        case: &BoundariesCase,
        env: &CaseEnv,
    ) -> Result<BoundariesObserved, HarnessError> {
        let (mut receiver, mut sender, a, b) = datagram_pair(env, case.family, case.port)?;
        let mut sends = Vec::new();
        let mut recvs = Vec::new();
        let mut blocking = None;
        let (mut next_send, mut next_recv) = (0usize, 0usize);
        if let Some(ms) = case.blocking_first_ms {
            let buf = case.bufs[0];
            let (tx, rx) = std::sync::mpsc::channel();
            let pending = env
                .lab
                .host(Host::B)
                .submit(move || -> Result<_, HarnessError> {
                    // A safety bound only: the send follows within 20 ms.
                    receiver
                        .set_recv_timeout(Duration::from_secs(3))
                        .map_err(sock_step("SO_RCVTIMEO"))?;
                    let posted = harness::capture::realtime_ns();
                    let _ = tx.send(());
                    let r = receiver.recv_now(buf, 0);
                    let returned = harness::capture::realtime_ns();
                    Ok((receiver, r, posted, returned))
                });
            rx.recv_timeout(Duration::from_secs(2))
                .map_err(|_| HarnessError::HostThread("b did not post its receive".into()))?;
            std::thread::sleep(Duration::from_millis(ms as u64));
            let payload = payload_of(0, case.sizes[0]);
            let (s, r, sent_at) =
                env.lab
                    .host(Host::A)
                    .run(move || -> Result<_, HarnessError> {
                        let sent_at = harness::capture::realtime_ns();
                        let r = sender.send_to(&payload, b, 0)?;
                        Ok((sender, r, sent_at))
                    })??;
            sender = s;
            sends.push(r);
            let (rs, r, posted, returned) = pending.wait_timeout(Duration::from_secs(5))??;
            receiver = rs;
            recvs.push(Some(r));
            blocking = Some((posted, sent_at, returned));
            next_send = 1;
            next_recv = 1;
        }
        for op in &case.ops {
            match op {
                BoundaryOp::Send => {
                    let (s, r) =
                        send_on_a(env, sender, payload_of(next_send, case.sizes[next_send]), b)?;
                    sender = s;
                    sends.push(r);
                    next_send += 1;
                }
                BoundaryOp::Recv => {
                    let buf = case.bufs[next_recv];
                    let (rs, r) = env.lab.host(Host::B).run(move || {
                        let r = receiver.recv_timeout(buf, 0, RECV_WAIT);
                        (receiver, r)
                    })?;
                    receiver = rs;
                    recvs.push(r);
                    next_recv += 1;
                }
            }
        }
        let leftover = env
            .lab
            .host(Host::B)
            .run(move || receiver.recv_with(65_536, RecvFlags::DONTWAIT))?;
        drop(sender);
        Ok(BoundariesObserved {
            a,
            sends,
            recvs,
            blocking,
            leftover,
        })
    }

    fn check(
        &self,
        case: &BoundariesCase,
        observed: &BoundariesObserved,
        trace: &Trace,
    ) -> Verdict {
        let mut findings = Findings::default();
        let payloads: Vec<Vec<u8>> = case
            .sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| payload_of(i, s))
            .collect();
        let wire = our_wire_frames(trace, observed.a, case.port);
        let frames_of = |k: usize| wire.get(k).cloned().unwrap_or_default();
        for (i, sent) in observed.sends.iter().enumerate() {
            findings.check(*sent == Ok(case.sizes[i]), || {
                Violation::new("POSIX send", format!("send of datagram {} failed", i + 1))
                    .frames(frames_of(i))
                    .field("sendto()")
                    .expected(format!("{} bytes", case.sizes[i]))
                    .actual(outcome(sent))
            });
        }
        for (k, r) in observed.recvs.iter().enumerate() {
            let want = &payloads[k];
            let ok = matches!(r, Some(Ok(got)) if &got.data == want && got.returned == want.len() && !got.truncated && got.from == Some(observed.a));
            if ok {
                continue;
            }
            let (summary, actual) = match r {
                None => (
                    format!("receive {} returned nothing within {} ms although datagram {} was sent", k + 1, RECV_WAIT.as_millis(), k + 1),
                    "nothing".to_string(),
                ),
                Some(Err(e)) => (format!("receive {} failed", k + 1), e.name()),
                Some(Ok(got)) => match which(&payloads, &got.data) {
                    Some(j) if j != k => (
                        format!("receive {} returned datagram {}: the order of sending was not kept", k + 1, j + 1),
                        format!("datagram {} ({} bytes)", j + 1, got.returned),
                    ),
                    Some(_) => (
                        format!("receive {} returned datagram {} with the wrong length, flags or source", k + 1, k + 1),
                        format!("returned {}, MSG_TRUNC {}, from {:?}", got.returned, got.truncated, got.from),
                    ),
                    None => (
                        format!("receive {} returned bytes that are not one datagram that was sent", k + 1),
                        format!("{} bytes (returned {}), MSG_TRUNC {}", got.data.len(), got.returned, got.truncated),
                    ),
                },
            };
            findings.push(
                Violation::new("POSIX recvmsg", summary)
                    .frames(frames_of(k))
                    .field(format!(
                        "recvmsg() #{} with a {}-byte buffer",
                        k + 1,
                        case.bufs[k]
                    ))
                    .expected(format!(
                        "datagram {} whole: {} bytes from {}, MSG_TRUNC clear",
                        k + 1,
                        want.len(),
                        observed.a
                    ))
                    .actual(actual),
            );
        }
        if let Some((posted, sent_at, returned)) = observed.blocking {
            findings.check(posted < sent_at && sent_at <= returned, || {
                Violation::new(
                    "POSIX recv",
                    "the receive posted before the send did not wait for the datagram",
                )
                .frames(frames_of(0))
                .field("recvmsg() posted / sendto() started / recvmsg() returned")
                .expected("posted < send started <= returned")
                .actual(format!(
                    "posted {:+.6} s, returned {:+.6} s relative to the start of the send",
                    (posted as f64 - sent_at as f64) / 1e9,
                    (returned as f64 - sent_at as f64) / 1e9
                ))
            });
            findings.note("a receive posted before the send blocked and returned it");
        }
        findings.check(matches!(observed.leftover, Err(Errno::EAGAIN)), || {
            Violation::new(
                "POSIX recvmsg",
                "a receive after every datagram was read still returned data",
            )
            .field("recvmsg(MSG_DONTWAIT) at the end")
            .expected("EAGAIN")
            .actual(match &observed.leftover {
                Ok(r) => format!("{} bytes", r.returned),
                Err(e) => e.name(),
            })
        });
        findings.verdict()
    }
}

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
            needs: Needs { link: LinkKind::Veth },
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
        for (i, sent) in observed.sends.iter().enumerate() {
            findings.check(*sent == Ok(case.datagrams[i].size), || {
                Violation::new("POSIX send", format!("send of datagram {} failed", i + 1))
                    .frames(frames_of(i))
                    .field("sendto()")
                    .expected(format!("{} bytes", case.datagrams[i].size))
                    .actual(outcome(sent))
            });
        }
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

// ---------------------------------------------------------------------------------------------------------
// udp.send.unresolved (Q6)
// ---------------------------------------------------------------------------------------------------------

/// How long the capture watches after the last send to an unresolved address. Linux sends the first ARP
/// request / Neighbour Solicitation at once and retries every `retrans_time_ms` (1000 ms), giving up after
/// `mcast_solicit` (3) tries, ≈ 3 s; only the first request falls inside this window, on purpose: the retries
/// and the final drop of the queued datagrams (with EHOSTUNREACH for IP_RECVERR/connected sockets) are
/// outside what this property checks.
const UNRESOLVED_WINDOW: Duration = Duration::from_millis(150);

/// Sending to a lab address with no host behind it: send() succeeds, only ARP/ND requests reach the wire (lab Q6).
///
/// RFC 1122 §2.3.2.2: "The link layer SHOULD save (rather than discard) at least one (the latest) packet of
/// each set of packets destined to the same unresolved IP address, and transmit the saved packet when the
/// address has been resolved." UDP's send completes when the datagram is handed to IP (RFC 768: no delivery
/// confirmation), so send() reports success; nothing can be transmitted to an unresolved link address, so the
/// wire carries only the resolution requests: ARP who-has (RFC 826) or a Neighbour Solicitation to the
/// target's solicited-node multicast address (RFC 4861 §7.2.2).
///
/// Lab question: what is on the wire when a datagram is sent to an address nobody answers? The lab resolves
/// neighbours dynamically (no static entries) and the target is 198.18.0.3 / 2001:db8::3, inside the lab subnet
/// with no host behind it. Generated: 1–4 datagrams of 0–65507/65527 bytes (fragmented ones too), from a
/// connected or an unconnected socket. Checked within [`UNRESOLVED_WINDOW`] after the sends: every connect()
/// and send() succeeded with the full length; no IP packet addressed to the target (no datagram, no fragment)
/// and no UDP datagram to the port left `a`; at least one ARP request / Neighbour Solicitation for the
/// target did. Tolerated and named: other ND/MLD traffic of `a` (multicast listener reports are not
/// datagrams), and retries outside the window.
pub struct SendUnresolved;

/// The lab address with no host behind it.
pub fn unresolved_addr(family: Family) -> std::net::IpAddr {
    match family {
        Family::Ipv4 => std::net::Ipv4Addr::new(198, 18, 0, 3).into(),
        Family::Ipv6 => std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3).into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnresolvedCase {
    pub family: Family,
    pub port: u16,
    pub sizes: Vec<usize>,
    pub connected: bool,
}

#[derive(Debug, Clone)]
pub struct UnresolvedObserved {
    pub connect: Option<Result<(), Errno>>,
    pub sends: Vec<Result<usize, Errno>>,
}

impl Property for SendUnresolved {
    type Case = UnresolvedCase;
    type Observed = UnresolvedObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "udp.send.unresolved",
            suite: "udp",
            title: "sending to a lab address with no host behind it succeeds locally; only ARP/ND requests reach the wire, no datagram",
            clauses: &["RFC 1122 §2.3.2.2", "RFC 826", "RFC 4861 §7.2.2"],
            questions: &["Q6"],
            needs: Needs { link: LinkKind::Veth },
        }
    }

    fn generate(&self, rng: &mut CaseRng, family: Family) -> UnresolvedCase {
        let n = rng.gen_range(1..=4);
        UnresolvedCase {
            family,
            port: rng.gen_range(1..=u16::MAX),
            sizes: (0..n).map(|_| gen_size(rng, family)).collect(),
            connected: rng.gen(),
        }
    }

    fn lab_config(&self, _case: &UnresolvedCase) -> LabConfig {
        LabConfig {
            dynamic_neighbours: true,
            ..LabConfig::default()
        }
    }

    fn settle(&self, _case: &UnresolvedCase) -> Duration {
        UNRESOLVED_WINDOW
    }

    fn describe(&self, case: &UnresolvedCase) -> String {
        format!(
            "{} datagram(s) of {} bytes from a{} socket to {}:{} (nobody there; dynamic ARP/ND)",
            case.sizes.len(),
            describe_sizes(&case.sizes),
            if case.connected {
                " connected"
            } else {
                "n unconnected"
            },
            unresolved_addr(case.family),
            case.port
        )
    }

    fn execute(
        &self,
        case: &UnresolvedCase,
        env: &CaseEnv,
    ) -> Result<UnresolvedObserved, HarnessError> {
        let case = case.clone();
        let to = SocketAddr::new(unresolved_addr(case.family), case.port);
        let a = env.lab.addr(Host::A, case.family);
        env.lab
            .host(Host::A)
            .run(move || -> Result<_, HarnessError> {
                let s = Socket::udp(case.family)?;
                s.bind(SocketAddr::new(a, 0)).map_err(sock_step("bind"))?;
                let connect = if case.connected {
                    Some(s.connect(to)?)
                } else {
                    None
                };
                let mut sends = Vec::new();
                for (i, &size) in case.sizes.iter().enumerate() {
                    let p = payload_of(i, size);
                    sends.push(if case.connected {
                        s.send(&p, 0)?
                    } else {
                        s.send_to(&p, to, 0)?
                    });
                }
                Ok(UnresolvedObserved { connect, sends })
            })?
    }

    fn check(
        &self,
        case: &UnresolvedCase,
        observed: &UnresolvedObserved,
        trace: &Trace,
    ) -> Verdict {
        let mut findings = Findings::default();
        let target = unresolved_addr(case.family);
        if let Some(c) = &observed.connect {
            findings.check(c.is_ok(), || {
                Violation::new(
                    "RFC 768",
                    "connect() of a UDP socket to an unresolved address failed",
                )
                .field("connect()")
                .expected("success (UDP connect only records the peer)")
                .actual(outcome(c))
            });
        }
        for (i, sent) in observed.sends.iter().enumerate() {
            findings.check(*sent == Ok(case.sizes[i]), || {
                Violation::new(
                    "RFC 1122 §2.3.2.2",
                    format!("send of datagram {} to an unresolved address failed", i + 1),
                )
                .field("send()")
                .expected(format!(
                    "{} bytes (the datagram is queued while the address resolves)",
                    case.sizes[i]
                ))
                .actual(outcome(sent))
            });
        }
        let mut requests = Vec::new();
        for f in &trace.frames {
            let Ok(p) = &f.packet else { continue };
            match &p.net {
                Network::Arp(arp)
                    if arp.operation == 1 && std::net::IpAddr::V4(arp.target_ip) == target =>
                {
                    requests.push(f.number);
                }
                Network::Ipv6 {
                    transport: Transport::Icmpv6(icmp),
                    ..
                } if icmp.icmp_type == 135
                    && icmp.nd_target.map(std::net::IpAddr::V6) == Some(target) =>
                {
                    requests.push(f.number);
                }
                Network::Ipv4 { .. } | Network::Ipv6 { .. } => {
                    let to_target = p.dst_ip() == Some(target);
                    let udp_to_port = matches!(p.transport(), Some(Transport::Udp { repr, .. }) if repr.dst_port == case.port);
                    let fragment = matches!(p.transport(), Some(Transport::Fragment { .. }));
                    findings.check(
                        !(to_target || udp_to_port || (fragment && f.from == Some(Host::A))),
                        || {
                            Violation::new(
                                "RFC 1122 §2.3.2.2",
                                "a packet for an address that never resolved reached the wire",
                            )
                            .frame(f.number)
                            .field("frame")
                            .expected(format!("only ARP/ND requests for {target}"))
                            .actual(trace.canonical_line(f.number - 1))
                        },
                    );
                }
                Network::Arp(_) | Network::Other { .. } => {}
            }
        }
        let what = match case.family {
            Family::Ipv4 => "ARP request (who-has)",
            Family::Ipv6 => "Neighbour Solicitation",
        };
        findings.check(!requests.is_empty(), || {
            Violation::new(
                if case.family == Family::Ipv4 {
                    "RFC 826"
                } else {
                    "RFC 4861 §7.2.2"
                },
                format!("no {what} for {target} left a"),
            )
            .field("address resolution")
            .expected(format!(
                "at least one {what} within {} ms",
                UNRESOLVED_WINDOW.as_millis()
            ))
            .actual("none")
        });
        if !requests.is_empty() {
            findings.note(format!(
                "{} resolution request(s) within the window",
                requests.len()
            ));
        }
        findings.verdict()
    }
}

// ---------------------------------------------------------------------------------------------------------
// udp.rcvbuf.overflow_drops (Q7)
// ---------------------------------------------------------------------------------------------------------

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
            needs: Needs { link: LinkKind::Veth },
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
        for (i, sent) in observed.sends.iter().enumerate() {
            findings.check(*sent == Ok(case.sizes[i]), || {
                Violation::new("POSIX send", format!("send of datagram {} failed", i + 1))
                    .frames(frames_of(i))
                    .field("sendto()")
                    .expected(format!("{} bytes", case.sizes[i]))
                    .actual(outcome(sent))
            });
        }
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

/// UDP never retransmits (lab Q9, Q21).
///
/// RFC 768: UDP gives "a minimum of protocol mechanism": no acknowledgement, no retransmission, no ordering
/// guarantee. On a relay link that loses datagrams (seeded: 10–50 % loss, or a rule dropping the n-th
/// datagram), a sends 5–30 datagrams to a bound socket on b and b reads for a while. Checked: every datagram
/// a sent appears exactly once on the wire (the relay records before it drops: a repeat would be a
/// retransmission), b receives exactly the datagrams the relay did not drop, whole and in order, and b sends
/// nothing at all back (nothing acknowledges). Tolerance: a retransmission later than the observation window
/// (the last datagram + 300 ms) would not be seen; UDP has no timer that could send one.
pub struct NoRetransmit;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoRetransmitCase {
    pub count: usize,
    pub size: usize,
    pub loss_ppm: u32,
    pub drop_nth: Option<u32>,
    pub relay_seed: u64,
}

#[derive(Debug)]
pub struct NoRetransmitObserved {
    pub src_port: u16,
    pub sent: Vec<Result<usize, Errno>>,
    /// Payloads b received, in order.
    pub received: Vec<Vec<u8>>,
}

const NO_RETRANSMIT_PORT: u16 = 5001;
const NO_RETRANSMIT_WINDOW: Duration = Duration::from_millis(300);

fn datagram_payload(index: usize, size: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..size)
        .map(|j| (j as u8).wrapping_mul(7).wrapping_add(index as u8))
        .collect();
    if size >= 4 {
        p[..4].copy_from_slice(&(index as u32).to_be_bytes());
    }
    p
}

impl Property for NoRetransmit {
    type Case = NoRetransmitCase;
    type Observed = NoRetransmitObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "udp.no_retransmit",
            suite: "udp",
            title: "on a lossy link, lost datagrams are never resent and nothing acknowledges them",
            clauses: &["RFC 768"],
            questions: &["Q9", "Q21"],
            needs: Needs {
                link: LinkKind::Relay,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> NoRetransmitCase {
        NoRetransmitCase {
            count: rng.gen_range(5..=30),
            size: rng.gen_range(4..=1200),
            loss_ppm: rng.gen_range(100_000..=500_000),
            drop_nth: rng.gen_bool(0.5).then(|| rng.gen_range(1..=5)),
            relay_seed: rng.gen(),
        }
    }

    fn lab_config(&self, case: &NoRetransmitCase) -> LabConfig {
        let lossy = harness::link::Impairment {
            loss_ppm: case.loss_ppm,
            rules: case
                .drop_nth
                .map(|n| vec![harness::link::Rule::DropNthUdp { n }])
                .unwrap_or_default(),
            ..Default::default()
        };
        LabConfig {
            link: harness::link::LinkSpec::Relay(harness::link::RelaySpec {
                a_to_b: lossy,
                b_to_a: Default::default(),
                seed: case.relay_seed,
            }),
            ..Default::default()
        }
    }

    fn describe(&self, c: &NoRetransmitCase) -> String {
        format!(
            "{} datagrams of {} bytes over a relay losing {:.0} %{}",
            c.count,
            c.size,
            c.loss_ppm as f64 / 1e4,
            c.drop_nth
                .map(|n| format!(" and dropping datagram {n}"))
                .unwrap_or_default()
        )
    }

    fn execute(
        &self,
        case: &NoRetransmitCase,
        env: &CaseEnv,
    ) -> Result<NoRetransmitObserved, HarnessError> {
        let family = env.family;
        let b_addr = SocketAddr::new(env.lab.addr(Host::B, family), NO_RETRANSMIT_PORT);
        let a_addr = env.lab.addr(Host::A, family);
        let receiver = env
            .lab
            .host(Host::B)
            .run(move || -> Result<Socket, HarnessError> {
                let s = Socket::udp(family)?;
                s.bind(b_addr)
                    .map_err(|e| harness::sock::socket_step("bind", e))?;
                Ok(s)
            })??;
        let (count, size) = (case.count, case.size);
        let (src_port, sent) = env.lab.host(Host::A).run(
            move || -> Result<(u16, Vec<Result<usize, Errno>>), HarnessError> {
                let s = Socket::udp(family)?;
                s.bind(SocketAddr::new(a_addr, 0))
                    .map_err(|e| harness::sock::socket_step("bind", e))?;
                let port = s
                    .local_addr()
                    .map_err(|e| harness::sock::socket_step("getsockname", e))?
                    .port();
                let mut sent = Vec::new();
                for i in 0..count {
                    sent.push(s.send_to(&datagram_payload(i, size), b_addr, 0)?);
                }
                Ok((port, sent))
            },
        )??;
        let received = env.lab.host(Host::B).run(move || {
            let mut got = Vec::new();
            while let Some(Ok(r)) = receiver.recv_timeout(65_536, 0, NO_RETRANSMIT_WINDOW) {
                got.push(r.data);
            }
            got
        })?;
        Ok(NoRetransmitObserved {
            src_port,
            sent,
            received,
        })
    }

    fn check(
        &self,
        case: &NoRetransmitCase,
        observed: &NoRetransmitObserved,
        trace: &Trace,
    ) -> Verdict {
        let mut findings = Findings::default();
        for (i, s) in observed.sent.iter().enumerate() {
            findings.check(*s == Ok(case.size), || {
                Violation::new("POSIX send", format!("sendto of datagram {} failed", i + 1))
                    .field("sendto()")
                    .expected(case.size)
                    .actual(format!("{s:?}"))
            });
        }
        let dropped: std::collections::BTreeSet<usize> = trace
            .link_events
            .iter()
            .filter(|e| e.kind == harness::link::LinkEventKind::Dropped)
            .map(|e| e.frame)
            .collect();
        // Datagrams from a, in wire order, by their index (first 4 payload bytes).
        let mut seen: Vec<(usize, usize, bool)> = Vec::new(); // (index, frame number, dropped)
        for (i, f) in trace.frames.iter().enumerate() {
            if f.from == Some(Host::B) {
                findings.push(
                    Violation::new(
                        "RFC 768 (no acknowledgement)",
                        "b sent something back: UDP acknowledges nothing",
                    )
                    .frame(f.number)
                    .field("packet from B")
                    .expected("nothing")
                    .actual(trace.canonical_line(i)),
                );
                continue;
            }
            let Some((udp, payload)) = f.packet.as_ref().ok().and_then(|p| p.udp()) else {
                continue;
            };
            if udp.src_port != observed.src_port || payload.len() < 4 {
                continue;
            }
            let index =
                u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
            if let Some((_, first, _)) = seen.iter().find(|(k, _, _)| *k == index) {
                findings.push(
                    Violation::new(
                        "RFC 768 (no retransmission)",
                        format!("datagram {} appears twice on the wire", index + 1),
                    )
                    .frames([*first, f.number])
                    .field("datagram")
                    .expected("sent once")
                    .actual("sent again"),
                );
            }
            seen.push((index, f.number, dropped.contains(&i)));
        }
        findings.check(seen.len() == case.count, || {
            Violation::new("RFC 768", "not every datagram reached the relay")
                .field("datagrams on the wire")
                .expected(case.count)
                .actual(seen.len())
        });
        let delivered: Vec<Vec<u8>> = seen
            .iter()
            .filter(|(_, _, d)| !d)
            .map(|(k, _, _)| datagram_payload(*k, case.size))
            .collect();
        findings.check(observed.received == delivered, || {
            Violation::new(
                "RFC 768",
                "b did not receive exactly the datagrams the link delivered",
            )
            .field("datagrams received by b (count)")
            .expected(format!(
                "{} (those the relay did not drop, in order)",
                delivered.len()
            ))
            .actual(observed.received.len())
        });
        let lost = seen.iter().filter(|(_, _, d)| *d).count();
        findings.note(if lost == 0 {
            "no loss"
        } else {
            "some datagrams lost"
        });
        findings.verdict()
    }
}
