use std::net::SocketAddr;

use harness::frame::Host;
use harness::property::{Cap, KernelNeed, Subject};
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::{Errno, Family, Socket};
use harness::trace::Trace;
use harness::wire::reassembly::{Incomplete, UdpDatagram};
use harness::wire::ChecksumStatus;
use harness::HarnessError;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::common::{
    describe_sizes, gen_size, note_once, outcome, payload_of, pin_to_current_cpu, sock_step,
    wire_datagrams, RECV_WAIT, ROOMY_RCVBUF,
};

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
            subject: Subject::Both,
            needs: Needs {
                links: &[LinkKind::Veth],
                kernel: &[KernelNeed::Sockets],
                caps: &[Cap::Udp],
                ethernet: false,
            },
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
