use harness::property::{Cap, KernelNeed, Subject};
use std::net::SocketAddr;
use std::time::Duration;

use harness::frame::Host;
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::{Errno, Family, Socket};
use harness::trace::Trace;
use harness::{HarnessError, LabConfig};
use rand::Rng;
use serde::{Deserialize, Serialize};

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
            subject: Subject::A,
            needs: Needs {
                links: &[LinkKind::Relay],
                kernel: &[KernelNeed::Sockets],
                caps: &[Cap::Udp],
                ethernet: false,
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
