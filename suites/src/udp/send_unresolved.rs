use harness::property::{Cap, KernelNeed, Subject};
use std::net::SocketAddr;
use std::time::Duration;

use harness::frame::Host;
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::{Errno, Family, Socket};
use harness::trace::Trace;
use harness::wire::{Network, Transport};
use harness::{HarnessError, LabConfig};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::common::{describe_sizes, gen_size, outcome, payload_of, sock_step};

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
            subject: Subject::A,
            needs: Needs {
                links: &[LinkKind::Veth],
                kernel: &[KernelNeed::Sockets],
                caps: &[Cap::Udp],
                ethernet: true,
            },
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
