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

use super::common::{outcome, pin_to_current_cpu, sock_step, wire_datagrams};

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
            subject: Subject::Both,
            needs: Needs {
                links: &[LinkKind::Veth],
                kernel: &[KernelNeed::Sockets],
                caps: &[Cap::Udp],
                ethernet: false,
            },
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
