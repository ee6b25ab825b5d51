//! Wire validity: rules every frame a host emits must keep, whatever the property — checked on every frame of
//! every case (TCP and UDP, IPv4 and IPv6) and by `netconform check` on any capture.
//!
//! - `ip.header.valid`: the IPv4 header checksum verifies (RFC 791 §3.1); IHL ≥ 5, Total Length covers the
//!   header and fits the frame, the IPv6 Payload Length fits the frame and its extension headers walk to an
//!   upper layer (RFC 791 §3.1, RFC 8200 §3, §4) — a frame the wire model cannot dissect is reported here or
//!   at the layer that failed, with the parser's reason as the actual value.
//! - `tcp.header.valid`: the TCP checksum over the pseudo-header verifies (RFC 9293 §3.1, MUST-2); the data
//!   offset is ≥ 5 words and within the segment; the reserved bits are zero; every option is well formed
//!   (a length byte ≥ 2, the length its kind defines, nothing crossing the end of the header; RFC 9293 §3.1,
//!   §3.2); no segment carries SYN together with RST or FIN; every segment other than a SYN or a RST has ACK
//!   set (RFC 9293 §3.1: once a connection is established the acknowledgment is always sent).
//! - `tcp.options.valid`: MSS, window scale and SACK-permitted only on SYNs (RFC 9293 §3.2, RFC 7323 §2.2,
//!   RFC 2018 §2); a window-scale shift ≤ 14 (RFC 7323 §2.3); window scale and timestamps on a SYN-ACK only if
//!   the SYN offered them (RFC 7323 §2.2, §3.2); once timestamps are negotiated, a TSopt on every non-RST
//!   segment, never one when they were not, each TSecr echoing a TSval the peer sent, and the capture host's
//!   TSvals never going backwards (RFC 7323 §3.2, §5.4); SACK blocks only when both SYNs carried SACK-permitted,
//!   each with its left edge before its right edge (RFC 2018 §2, §3).
//! - `tcp.segment.size`: payload plus TCP options never more than the MSS the peer announced, or the default
//!   536 (IPv4) / 1220 (IPv6) when its SYN had none (RFC 9293 §3.7.1, MUST-15; Eff.snd.MSS subtracts the TCP
//!   options); no data on a SYN unless it carries a Fast Open cookie, and on a SYN-ACK only if the SYN asked for
//!   Fast Open (RFC 7413 §3, §4.2).
//! - `udp.header.valid`: the length field is 8 + payload and matches the IP payload; the checksum verifies, and
//!   is 0 ("not computed") only over IPv4 (RFC 768; RFC 8200 §8.1).
//!
//! Tolerances and exceptions, named:
//! - Offloads are off inside the lab (`harness/src/lab/ethtool.rs`: TSO, GSO, GRO and TX checksum; the relay
//!   and the peer link use TUN devices without offloads), so a capture point sees every checksum filled in and
//!   every segment at most one MSS: no case is excused.
//! - Linux raises an announced MSS below `net.ipv4.tcp_min_snd_mss` (default 48) to that floor before
//!   subtracting options (`tcp_mtu_to_mss`, CVE-2019-11477's fix), so the limit is max(MSS, 48).
//! - A RST may carry data: RFC 9293 §3.5.3 (SHLD-2) lets it hold diagnostic text, so data on a RST is never a
//!   finding; only the flag combinations above are.
//! - Ordering rules (TSval never going back) apply to frames of the capture host only; frames of the other host
//!   are seen in the capture host's receive order (see `harness/src/invariants.rs`). The TSecr rule holds in any
//!   order: the echoed TSval is looked up in everything the peer sent in the whole capture.
//! - A checksum of an IP fragment is not verifiable from one frame and is not judged.
//! - In a run, only frames from the property's subject hosts are judged: frames netconform crafts itself (raw
//!   sockets of a in `tcp.rst.closed_port`, the scripted peer) are the subject's input, sometimes malformed on
//!   purpose.
//!
//! Offline (`netconform check`), a capture from a real host shows artifacts of its NIC offloads and of the
//! capture itself. They are reported as [`Artifact`]s — "capture artifact, not judged" — never as violations:
//! a TCP/UDP checksum that holds the pseudo-header sum only (TX checksum offload: the NIC fills it in after the
//! capture point), a segment larger than the peer's MSS in a packet larger than 1500 bytes (TSO/GSO before the
//! NIC, GRO after it), and a frame cut by the snaplen.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::frame::{Frame, Host, LinkType};
use crate::property::{PropertyInfo, Violation};
use crate::trace::{ConversationKind, Trace};
use crate::wire::{
    checksum, ip, link, ChecksumStatus, EthernetFrame, Ipv4Packet, Ipv6Packet, Network, TcpOption,
    TcpPacket, TcpRepr, Transport, WireError,
};

fn info(id: &'static str, title: &'static str, clauses: &'static [&'static str]) -> PropertyInfo {
    PropertyInfo {
        id,
        suite: "invariant",
        title,
        clauses,
        questions: &["Q37"],
        subject: crate::property::Subject::Both,
        needs: crate::property::Needs {
            links: &[crate::property::LinkKind::Veth],
            kernel: &[],
            caps: &[],
            ethernet: false,
        },
    }
}

/// The validity invariants, for `list` and the coverage docs.
pub fn infos() -> [PropertyInfo; 5] {
    [
        info(
            "ip.header.valid",
            "every IP header is well formed: IPv4 checksum, IHL, total length; IPv6 payload length",
            &["RFC 791 §3.1", "RFC 8200 §3"],
        ),
        info(
            "tcp.header.valid",
            "every TCP header is well formed: checksum over the pseudo-header, data offset, reserved bits zero, options well formed, legal flags",
            &["RFC 9293 §3.1 (MUST-2)", "RFC 9293 §3.2"],
        ),
        info(
            "tcp.options.valid",
            "options where they belong: MSS, wscale, SACK-permitted on SYNs only, shift ≤ 14, timestamps consistent once negotiated, SACK only when permitted",
            &["RFC 9293 §3.2", "RFC 7323 §2.2, §2.3, §3.2", "RFC 2018 §2, §3"],
        ),
        info(
            "tcp.segment.size",
            "no segment's payload and options exceed the MSS the peer announced; no data on a SYN without Fast Open",
            &["RFC 9293 §3.7.1 (MUST-15)", "RFC 7413 §3"],
        ),
        info(
            "udp.header.valid",
            "every UDP header is well formed: length 8 + payload, checksum valid, 0 only over IPv4",
            &["RFC 768", "RFC 8200 §8.1"],
        ),
    ]
}

/// Where the frames come from.
#[derive(Debug, Clone, Default)]
pub struct ValidityContext {
    /// The host whose capture point orders its own frames exactly (veth: `a`); `None` offline.
    pub capture_host: Option<Host>,
    /// Only frames from these hosts are judged (a property's subjects); `None`: every frame.
    pub judged: Option<Vec<Host>>,
    /// `Some` for a capture taken outside the lab (`netconform check`): offload artifacts are recognised.
    pub offline: Option<OfflineCapture>,
}

/// What the capture file says about each frame (index = frame index).
#[derive(Debug, Clone, Default)]
pub struct OfflineCapture {
    /// Fewer bytes were captured than the frame had (snaplen).
    pub truncated: Vec<bool>,
}

/// A frame not judged because what it shows is the capture's doing, not the stack's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// 1-based frame number.
    pub frame: usize,
    pub what: String,
}

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct ValidityReport {
    /// (invariant id, violation), in frame order per rule.
    pub findings: Vec<(&'static str, Violation)>,
    pub artifacts: Vec<Artifact>,
}

/// Linux `net.ipv4.tcp_min_snd_mss` default (Documentation/networking/ip-sysctl.rst): the floor an announced
/// MSS is raised to.
const LINUX_MIN_SND_MSS: usize = 48;
/// RFC 9293 §3.7.1 (MUST-15): the send MSS when the SYN carried no MSS option, IPv4 and IPv6 (RFC 8200 §5:
/// 1280 − 60).
const DEFAULT_MSS_V4: usize = 536;
const DEFAULT_MSS_V6: usize = 1220;
/// Offline only: an IP packet larger than an Ethernet MTU is a TSO/GRO super-segment of the capturing host.
const ETHERNET_MTU: usize = 1500;
/// RFC 7413 §4.1.1: the TCP Fast Open cookie option, and the experimental form (kind 254, magic 0xF989).
const TFO_KIND: u8 = 34;
const EXPERIMENTAL_KIND: u8 = 254;
const TFO_MAGIC: [u8; 2] = [0xf9, 0x89];

/// The IP packet and the transport bytes of a frame (both bounded by the IP lengths), when they can be found.
fn transport_bytes(f: &Frame) -> Option<(&[u8], &[u8])> {
    let ip_bytes = match f.link {
        LinkType::RawIp => &f.data[..],
        LinkType::Ethernet => {
            let e = EthernetFrame::new_checked(&f.data[..]).ok()?;
            if !matches!(e.ethertype(), link::ETHERTYPE_IPV4 | link::ETHERTYPE_IPV6) {
                return None;
            }
            let at = f.data.len() - e.payload().len();
            &f.data[at..]
        }
    };
    match ip_bytes.first()? >> 4 {
        4 => {
            let p = Ipv4Packet::new_checked(ip_bytes, false).ok()?;
            let end = p.total_len();
            Some((&ip_bytes[..end], &ip_bytes[p.header_len()..end]))
        }
        6 => {
            let p = Ipv6Packet::new_checked(ip_bytes, false).ok()?;
            let ul = p.upper_layer().ok()?;
            let end = p.packet_end();
            Some((&ip_bytes[..end], &ip_bytes[ul.offset.min(end)..end]))
        }
        _ => None,
    }
}

/// The checksum field value a correct sender would have written (the field zeroed, then the sum).
fn correct_checksum(src: IpAddr, dst: IpAddr, protocol: u8, bytes: &[u8], at: usize) -> u16 {
    let mut b = bytes.to_vec();
    b[at] = 0;
    b[at + 1] = 0;
    let c = checksum::upper_layer(src, dst, protocol, &b);
    if protocol == ip::PROTO_UDP && c == 0 {
        0xffff
    } else {
        c
    }
}

/// The value a TX checksum offload leaves in the field: the folded pseudo-header sum (Linux
/// `~csum_tcpudp_magic(...)` for CHECKSUM_PARTIAL), which the NIC completes after the capture point.
fn offload_seed(src: IpAddr, dst: IpAddr, protocol: u8, len: usize) -> u16 {
    !checksum::finish(checksum::pseudo_header_sum(src, dst, protocol, len))
}

fn wire_error_id(e: &WireError) -> Option<&'static str> {
    let layer = match e {
        WireError::Truncated { layer, .. } | WireError::Malformed { layer, .. } => *layer,
    };
    if layer.starts_with("tcp") {
        Some("tcp.header.valid")
    } else if layer.starts_with("udp") {
        Some("udp.header.valid")
    } else if layer.starts_with("ip") {
        Some("ip.header.valid")
    } else {
        // Ethernet, ARP and ICMP bodies are outside these rules.
        None
    }
}

fn fmt_u16(v: u16) -> String {
    format!("0x{v:04x}")
}

/// Per TCP conversation: what the SYNs negotiated.
#[derive(Default)]
struct Negotiated {
    /// The first SYN of each direction (0 client→server, 1 server→client), as parsed.
    syn: [Option<TcpRepr>; 2],
    /// Every TSval each direction sent (for the TSecr echo rule).
    tsvals: [HashSet<u32>; 2],
}

impl Negotiated {
    fn both_syns(&self) -> Option<(&TcpRepr, &TcpRepr)> {
        Some((self.syn[0].as_ref()?, self.syn[1].as_ref()?))
    }
    fn timestamps(&self) -> Option<bool> {
        self.both_syns()
            .map(|(a, b)| timestamp(a).is_some() && timestamp(b).is_some())
    }
    fn sack_permitted(&self) -> Option<bool> {
        self.both_syns().map(|(a, b)| {
            let p = |t: &TcpRepr| t.options.contains(&TcpOption::SackPermitted);
            p(a) && p(b)
        })
    }
}

fn timestamp(t: &TcpRepr) -> Option<(u32, u32)> {
    t.options.iter().find_map(|o| match o {
        TcpOption::Timestamp { tsval, tsecr } => Some((*tsval, *tsecr)),
        _ => None,
    })
}

/// Whether a SYN asks for or carries a Fast Open cookie; `cookie`: only one that carries a cookie counts.
fn fast_open(t: &TcpRepr, cookie: bool) -> bool {
    t.options.iter().any(|o| match o {
        TcpOption::Unknown { kind, data } if *kind == TFO_KIND => !cookie || !data.is_empty(),
        TcpOption::Unknown { kind, data } if *kind == EXPERIMENTAL_KIND => {
            data.starts_with(&TFO_MAGIC) && (!cookie || data.len() > 2)
        }
        _ => false,
    })
}

fn option_name(o: &TcpOption) -> &'static str {
    match o {
        TcpOption::EndOfList => "EOL",
        TcpOption::NoOperation => "NOP",
        TcpOption::MaxSegmentSize(_) => "MSS",
        TcpOption::WindowScale(_) => "window scale",
        TcpOption::SackPermitted => "SACK-permitted",
        TcpOption::SackRange(_) => "SACK",
        TcpOption::Timestamp { .. } => "timestamps",
        TcpOption::Unknown { .. } => "unknown",
    }
}

/// Checks every frame of `frames` (the trace built from them) against the validity rules.
pub fn check(frames: &[Frame], trace: &Trace, ctx: &ValidityContext) -> ValidityReport {
    let mut report = ValidityReport::default();
    let judged = |i: usize| -> bool {
        match &ctx.judged {
            None => true,
            Some(hosts) => trace.frames[i].from.is_some_and(|h| hosts.contains(&h)),
        }
    };
    let truncated = |i: usize| -> bool {
        ctx.offline
            .as_ref()
            .is_some_and(|o| o.truncated.get(i).copied().unwrap_or(false))
    };
    for (i, (frame, tf)) in frames.iter().zip(&trace.frames).enumerate() {
        if !judged(i) {
            continue;
        }
        let number = tf.number;
        let p = match &tf.packet {
            Err(e) => {
                if truncated(i) {
                    report.artifacts.push(Artifact {
                        frame: number,
                        what: format!("cut by the capture's snaplen ({e})"),
                    });
                } else if let Some(id) = wire_error_id(e) {
                    report.findings.push((
                        id,
                        Violation::new(
                            "RFC 791 §3.1, RFC 8200 §3, RFC 9293 §3.1, RFC 768 (header format)",
                            "a frame is malformed",
                        )
                        .frame(number)
                        .field(match e {
                            WireError::Truncated { layer, .. }
                            | WireError::Malformed { layer, .. } => *layer,
                        })
                        .expected("a well-formed header whose lengths fit the frame")
                        .actual(e),
                    ));
                }
                continue;
            }
            Ok(p) => p,
        };
        if truncated(i) {
            report.artifacts.push(Artifact {
                frame: number,
                what: "cut by the capture's snaplen: checksums and lengths not judged".into(),
            });
            continue;
        }
        let (src, dst) = match (p.src_ip(), p.dst_ip()) {
            (Some(s), Some(d)) => (s, d),
            _ => continue,
        };
        let (ip_bytes, tbytes) = transport_bytes(frame).unwrap_or((&[], &[]));
        let oversized = ip_bytes.len() > ETHERNET_MTU;
        if let Network::Ipv4 { header, .. } = &p.net {
            if !header.checksum_ok {
                let actual = u16::from_be_bytes([ip_bytes[10], ip_bytes[11]]);
                let mut h = ip_bytes[..header.header_len].to_vec();
                h[10] = 0;
                h[11] = 0;
                let expected = checksum::checksum(&h);
                if ctx.offline.is_some() && actual == 0 {
                    report.artifacts.push(Artifact {
                        frame: number,
                        what: "IPv4 header checksum 0: left for the NIC to fill in (TX offload)"
                            .into(),
                    });
                } else {
                    report.findings.push((
                        "ip.header.valid",
                        Violation::new(
                            "RFC 791 §3.1 (Header Checksum)",
                            "an IPv4 header checksum is wrong",
                        )
                        .frame(number)
                        .field("ipv4.checksum")
                        .expected(fmt_u16(expected))
                        .actual(fmt_u16(actual)),
                    ));
                }
            }
        }
        match p.transport() {
            Some(Transport::Tcp {
                repr,
                checksum: status,
                options_error,
                ..
            }) => {
                let Ok(raw) = TcpPacket::new_checked(tbytes) else {
                    continue;
                };
                if *status == ChecksumStatus::Invalid {
                    let actual = raw.checksum();
                    if ctx.offline.is_some()
                        && (actual == offload_seed(src, dst, ip::PROTO_TCP, tbytes.len())
                            || oversized)
                    {
                        report.artifacts.push(Artifact {
                            frame: number,
                            what: format!(
                                "TCP checksum {} {}: not judged",
                                fmt_u16(actual),
                                if oversized {
                                    "on a segment larger than the MTU (TSO/GRO)"
                                } else {
                                    "is the pseudo-header sum (TX checksum offload)"
                                }
                            ),
                        });
                    } else {
                        report.findings.push((
                            "tcp.header.valid",
                            Violation::new(
                                "RFC 9293 §3.1 (Checksum over the pseudo-header, MUST-2)",
                                "a TCP checksum is wrong",
                            )
                            .frame(number)
                            .field("tcp.checksum")
                            .expected(format!(
                                "{} (over the pseudo-header and {} bytes of segment)",
                                fmt_u16(correct_checksum(src, dst, ip::PROTO_TCP, tbytes, 16)),
                                tbytes.len()
                            ))
                            .actual(fmt_u16(actual)),
                        ));
                    }
                }
                let reserved = tbytes[12] & 0x0f;
                if reserved != 0 {
                    report.findings.push((
                        "tcp.header.valid",
                        Violation::new(
                            "RFC 9293 §3.1 (Reserved: must be zero in generated segments)",
                            "reserved bits of a TCP header are set",
                        )
                        .frame(number)
                        .field("tcp.reserved")
                        .expected("0b0000")
                        .actual(format!("0b{reserved:04b}")),
                    ));
                }
                if let Some(e) = options_error {
                    let area = &tbytes[20..raw.header_len()];
                    let hex: Vec<String> = area.iter().map(|b| format!("{b:02x}")).collect();
                    report.findings.push((
                        "tcp.header.valid",
                        Violation::new(
                            "RFC 9293 §3.1, §3.2 (Options: kind, length, within the header)",
                            "a TCP option is malformed",
                        )
                        .frame(number)
                        .field("tcp.options")
                        .expected(
                            "each option's length ≥ 2, the length its kind defines, and no option \
                             crossing the end of the header",
                        )
                        .actual(format!("{e} (options area: {})", hex.join(" "))),
                    ));
                }
                let f = repr.flags;
                let illegal = if f.syn && f.rst {
                    Some("SYN and RST")
                } else if f.syn && f.fin {
                    Some("SYN and FIN")
                } else if !f.syn && !f.rst && !f.ack {
                    Some("no ACK on a segment that is neither SYN nor RST")
                } else {
                    None
                };
                if let Some(what) = illegal {
                    report.findings.push((
                        "tcp.header.valid",
                        Violation::new(
                            "RFC 9293 §3.1 (control bits; the acknowledgment is always sent once a \
                             connection is established), §3.3.2",
                            "a TCP segment has an illegal combination of control bits",
                        )
                        .frame(number)
                        .field("tcp.flags")
                        .expected("SYN, SYN-ACK, RST, RST-ACK, or ACK with any of PSH/FIN/URG/ECE/CWR")
                        .actual(format!("{} ({what})", f.tcpdump())),
                    ));
                }
            }
            Some(Transport::Udp {
                repr,
                checksum: status,
                ..
            }) => {
                let fragmented = *status == ChecksumStatus::Unverifiable;
                let len_ok = if fragmented {
                    repr.length as usize >= tbytes.len()
                } else {
                    repr.length as usize == tbytes.len()
                };
                if repr.length < 8 || !len_ok {
                    report.findings.push((
                        "udp.header.valid",
                        Violation::new("RFC 768 (Length)", "a UDP length field is wrong")
                            .frame(number)
                            .field("udp.length")
                            .expected(format!(
                                "{} (8 + payload, as the IP header says){}",
                                tbytes.len(),
                                if fragmented {
                                    " or more, for a first fragment"
                                } else {
                                    ""
                                }
                            ))
                            .actual(repr.length),
                    ));
                    continue;
                }
                let v6 = matches!(p.net, Network::Ipv6 { .. });
                if *status == ChecksumStatus::Invalid {
                    let actual = repr.checksum;
                    if v6 && actual == 0 {
                        report.findings.push((
                            "udp.header.valid",
                            Violation::new(
                                "RFC 8200 §8.1 (the UDP checksum is mandatory over IPv6)",
                                "a UDP checksum over IPv6 is 0",
                            )
                            .frame(number)
                            .field("udp.checksum")
                            .expected(fmt_u16(correct_checksum(
                                src,
                                dst,
                                ip::PROTO_UDP,
                                tbytes,
                                6,
                            )))
                            .actual("0x0000 (not computed)"),
                        ));
                    } else if ctx.offline.is_some()
                        && (actual == offload_seed(src, dst, ip::PROTO_UDP, tbytes.len())
                            || oversized)
                    {
                        report.artifacts.push(Artifact {
                            frame: number,
                            what: format!(
                                "UDP checksum {} is the pseudo-header sum (TX checksum offload): \
                                 not judged",
                                fmt_u16(actual)
                            ),
                        });
                    } else {
                        report.findings.push((
                            "udp.header.valid",
                            Violation::new("RFC 768 (Checksum)", "a UDP checksum is wrong")
                                .frame(number)
                                .field("udp.checksum")
                                .expected(fmt_u16(correct_checksum(
                                    src,
                                    dst,
                                    ip::PROTO_UDP,
                                    tbytes,
                                    6,
                                )))
                                .actual(fmt_u16(actual)),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    conversations(frames, trace, ctx, &judged, &truncated, &mut report);
    report
}

/// The rules that need what the SYNs negotiated.
fn conversations(
    frames: &[Frame],
    trace: &Trace,
    ctx: &ValidityContext,
    judged: &dyn Fn(usize) -> bool,
    truncated: &dyn Fn(usize) -> bool,
    report: &mut ValidityReport,
) {
    for c in trace
        .conversations
        .iter()
        .filter(|c| c.kind == ConversationKind::Tcp)
    {
        let mut n = Negotiated::default();
        for &i in &c.frames {
            let f = &trace.frames[i];
            let (Some(d), Some(t)) = (f.direction, f.tcp()) else {
                continue;
            };
            if t.flags.syn && n.syn[d].is_none() {
                n.syn[d] = Some(t.clone());
            }
            if let Some((tsval, _)) = timestamp(t) {
                n.tsvals[d].insert(tsval);
            }
        }
        let v6 = c.client.addr.is_ipv6();
        let mut last_tsval: HashMap<usize, (u32, usize)> = HashMap::new();
        for &i in &c.frames {
            let f = &trace.frames[i];
            let (Some(d), Some(t)) = (f.direction, f.tcp()) else {
                continue;
            };
            if !judged(i) || truncated(i) {
                continue;
            }
            let number = f.number;
            let mut found: Vec<(&'static str, Violation)> = Vec::new();
            let syn = t.flags.syn;
            let syn_ack = syn && t.flags.ack;
            let mut push = |id: &'static str, v: Violation| found.push((id, v.frame(number)));
            // SYN-only options.
            for o in &t.options {
                let syn_only = matches!(
                    o,
                    TcpOption::MaxSegmentSize(_)
                        | TcpOption::WindowScale(_)
                        | TcpOption::SackPermitted
                );
                if syn_only && !syn {
                    push(
                        "tcp.options.valid",
                        Violation::new(
                            "RFC 9293 §3.2 (MSS only with SYN); RFC 7323 §2.2; RFC 2018 §2",
                            format!("a {} option on a segment without SYN", option_name(o)),
                        )
                        .field("tcp.options")
                        .expected(format!("no {} option (only SYNs carry it)", option_name(o)))
                        .actual(format!(
                            "{} on a {} segment",
                            option_name(o),
                            t.flags.tcpdump()
                        )),
                    );
                }
            }
            if let Some(shift) = t.window_scale() {
                if syn && shift > 14 {
                    push(
                        "tcp.options.valid",
                        Violation::new(
                            "RFC 7323 §2.3 (the shift count is at most 14)",
                            "a window scale shift is larger than 14",
                        )
                        .field("tcp.options.wscale")
                        .expected("<= 14")
                        .actual(shift),
                    );
                }
            }
            let syn_of_client = n.syn[1 - d].as_ref();
            if syn_ack {
                if let Some(client_syn) = syn_of_client {
                    for (offered, name) in [
                        (client_syn.window_scale().is_some(), "window scale"),
                        (timestamp(client_syn).is_some(), "timestamps"),
                    ] {
                        let answered = if name == "timestamps" {
                            timestamp(t).is_some()
                        } else {
                            t.window_scale().is_some()
                        };
                        if answered && !offered {
                            push(
                                "tcp.options.valid",
                                Violation::new(
                                    "RFC 7323 §2.2, §3.2 (a SYN-ACK carries window scale or \
                                     timestamps only if the SYN did)",
                                    format!("the SYN-ACK carries {name} the SYN did not offer"),
                                )
                                .field("SYN-ACK options")
                                .expected(format!("no {name} (the SYN had none)"))
                                .actual(format!("{name} present")),
                            );
                        }
                    }
                }
            }
            // Timestamps once negotiated (both SYNs seen).
            if !t.flags.rst && !syn {
                match (n.timestamps(), timestamp(t)) {
                    (Some(true), None) => push(
                        "tcp.options.valid",
                        Violation::new(
                            "RFC 7323 §3.2 (once negotiated, TSopt MUST be sent in every non-RST \
                             segment)",
                            "a segment lacks the timestamps option after both SYNs carried it",
                        )
                        .field("tcp.options.timestamps")
                        .expected("a TSopt")
                        .actual("none"),
                    ),
                    (Some(false), Some(_)) => push(
                        "tcp.options.valid",
                        Violation::new(
                            "RFC 7323 §3.2 (TSopt only after both SYNs carried it)",
                            "a segment carries timestamps that were not negotiated",
                        )
                        .field("tcp.options.timestamps")
                        .expected("no TSopt (the SYNs did not both carry one)")
                        .actual("a TSopt"),
                    ),
                    _ => {}
                }
            }
            if let (Some((tsval, tsecr)), false) = (timestamp(t), t.flags.rst) {
                if t.flags.ack && n.timestamps() == Some(true) && !n.tsvals[1 - d].contains(&tsecr)
                {
                    push(
                        "tcp.options.valid",
                        Violation::new(
                            "RFC 7323 §3.2, §4.3 (TSecr echoes a TSval the peer sent)",
                            "a TSecr echoes no TSval the peer ever sent",
                        )
                        .field("tcp.options.timestamps.tsecr")
                        .expected("one of the peer's TSvals in this connection")
                        .actual(tsecr),
                    );
                }
                if f.from.is_some() && f.from == ctx.capture_host {
                    if let Some((prev, prev_no)) = last_tsval.get(&d).copied() {
                        if tsval.wrapping_sub(prev) > u32::MAX / 2 {
                            report.findings.push((
                                "tcp.options.valid",
                                Violation::new(
                                    "RFC 7323 §5.4 (TSval is monotone non-decreasing)",
                                    "a TSval went backwards",
                                )
                                .frames([prev_no, number])
                                .field("tcp.options.timestamps.tsval")
                                .expected(format!(">= {prev}"))
                                .actual(tsval),
                            ));
                        }
                    }
                    last_tsval.insert(d, (tsval, number));
                }
            }
            // SACK blocks.
            for o in &t.options {
                if let TcpOption::SackRange(blocks) = o {
                    let mut push =
                        |id: &'static str, v: Violation| found.push((id, v.frame(number)));
                    if n.sack_permitted() == Some(false) {
                        push(
                            "tcp.options.valid",
                            Violation::new(
                                "RFC 2018 §2, §3 (SACK only after SACK-permitted on both SYNs)",
                                "a SACK option was sent without SACK being permitted",
                            )
                            .field("tcp.options.sack")
                            .expected("no SACK blocks (the SYNs did not both carry SACK-permitted)")
                            .actual(format!("{} block(s)", blocks.len())),
                        );
                    }
                    for (l, r) in blocks {
                        if *r <= *l {
                            let base = c.base[1 - d].unwrap_or(*l);
                            push(
                                "tcp.options.valid",
                                Violation::new(
                                    "RFC 2018 §3 (a block's right edge follows its left edge)",
                                    "a SACK block is empty or inverted",
                                )
                                .field("tcp.options.sack")
                                .expected("left < right")
                                .actual(format!(
                                    "{{{}:{}}}",
                                    *l - base,
                                    *r - base
                                )),
                            );
                        }
                    }
                }
            }
            let mut push = |id: &'static str, v: Violation| found.push((id, v.frame(number)));
            // Segment size against the peer's MSS.
            if t.payload_len > 0 {
                if let Some(peer_syn) = n.syn[1 - d].as_ref() {
                    let (announced, how) = match peer_syn.mss() {
                        Some(m) => (m as usize, "announced"),
                        None if v6 => (DEFAULT_MSS_V6, "default, no MSS option"),
                        None => (DEFAULT_MSS_V4, "default, no MSS option"),
                    };
                    let limit = announced.max(LINUX_MIN_SND_MSS);
                    let (_, tbytes) = transport_bytes(&frames[i]).unwrap_or((&[], &[]));
                    let options_len = TcpPacket::new_checked(tbytes)
                        .map(|p| p.header_len() - 20)
                        .unwrap_or(0);
                    if t.payload_len + options_len > limit {
                        let ip_len = transport_bytes(&frames[i]).map_or(0, |(ip, _)| ip.len());
                        if ctx.offline.is_some() && ip_len > ETHERNET_MTU {
                            report.artifacts.push(Artifact {
                                frame: number,
                                what: format!(
                                    "a {ip_len}-byte IP packet ({} bytes of payload) exceeds the \
                                     MTU: a TSO/GRO super-segment of the capturing host, not judged",
                                    t.payload_len
                                ),
                            });
                        } else {
                            push(
                                "tcp.segment.size",
                                Violation::new(
                                    "RFC 9293 §3.7.1 (MUST-15; Eff.snd.MSS = SendMSS − TCP options)",
                                    "a segment is larger than the peer's MSS",
                                )
                                .field("payload + TCP options")
                                .expected(format!("<= {limit} bytes (peer's MSS {announced}, {how})"))
                                .actual(format!(
                                    "{} bytes ({} payload + {} options)",
                                    t.payload_len + options_len,
                                    t.payload_len,
                                    options_len
                                )),
                            );
                        }
                    }
                }
                if syn && !t.flags.ack && !fast_open(t, true) {
                    push(
                        "tcp.segment.size",
                        Violation::new(
                            "RFC 7413 §3, §4.1 (data on a SYN only with a Fast Open cookie)",
                            "a SYN carries data without a Fast Open cookie",
                        )
                        .field("SYN payload")
                        .expected("0 bytes (no TFO cookie option)")
                        .actual(format!("{} bytes", t.payload_len)),
                    );
                }
                if syn_ack && !syn_of_client.is_some_and(|s| fast_open(s, false)) {
                    push(
                        "tcp.segment.size",
                        Violation::new(
                            "RFC 7413 §4.2 (data on a SYN-ACK only when the SYN asked for Fast Open)",
                            "a SYN-ACK carries data without Fast Open",
                        )
                        .field("SYN-ACK payload")
                        .expected("0 bytes (the SYN asked for no Fast Open)")
                        .actual(format!("{} bytes", t.payload_len)),
                    );
                }
            }
            report.findings.extend(found);
        }
    }
}

#[cfg(test)]
mod tests;
