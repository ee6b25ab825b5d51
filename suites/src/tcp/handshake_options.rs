use harness::exec::{ExecConfig, OpResult};
use harness::frame::Host;
use harness::ops::{Op, Program, SockKind};
use harness::property::{Cap, KernelNeed, Subject};
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::Family;
use harness::trace::Trace;
use harness::wire::{TcpOption, TcpRepr};
use harness::{HarnessError, LabConfig};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::handshake_common::{connection, handshake, ops_of, presence, run, sysctl, Seg};
use crate::conn::ProgramObserved;

fn mss_of(t: &TcpRepr) -> Option<u16> {
    t.options.iter().find_map(|o| match o {
        TcpOption::MaxSegmentSize(m) => Some(*m),
        _ => None,
    })
}
fn wscale_of(t: &TcpRepr) -> Option<u8> {
    t.options.iter().find_map(|o| match o {
        TcpOption::WindowScale(s) => Some(*s),
        _ => None,
    })
}
fn sack_permitted(t: &TcpRepr) -> bool {
    t.options
        .iter()
        .any(|o| matches!(o, TcpOption::SackPermitted))
}
fn timestamps(t: &TcpRepr) -> bool {
    t.options
        .iter()
        .any(|o| matches!(o, TcpOption::Timestamp { .. }))
}

/// Linux's advertised MSS is the route MTU less the fixed IP and TCP headers (RFC 9293 §3.7.1 MUST-16; RFC 879;
/// Linux dst_metric_advmss / tcp_mss_to_mtu): 20 + 20 bytes for IPv4, 40 + 20 for IPv6.
fn expected_mss(mtu: u32, family: Family) -> u32 {
    match family {
        Family::Ipv4 => mtu - 40,
        Family::Ipv6 => mtu - 60,
    }
}

/// Three-way handshake, options and sequence-number consumption (lab Q12, Q13).
///
/// RFC 9293 §3.5: a connection opens with SYN, SYN-ACK, ACK; the SYN-ACK acknowledges SYN.SEQ+1 and the ACK
/// acknowledges SYN-ACK.SEQ+1. §3.4: SYN and FIN each occupy one sequence number, so the first data byte has
/// seq ISN+1 and the peer acknowledges a FIN at FIN.SEQ+LEN+1. §3.7.1 MUST-14/15/16: a SYN carries the MSS
/// option, whose value (by MUST-16, Linux `tcp_advertise_mss`) is the MTU less the fixed IP and TCP headers:
/// MTU − 40 (IPv4) or − 60 (IPv6); the MTU is varied through `LabConfig.mtu` (both veth ends). RFC 2018 §2,
/// RFC 7323 §2.2 and §3.2: SACK-permitted, timestamps and window scale appear on a SYN only if the host enables
/// them (Linux: `net.ipv4.tcp_sack`, `tcp_timestamps`, `tcp_window_scaling`, each per namespace) and on a
/// SYN-ACK only if the SYN offered them and the answering host enables them too. RFC 7323 §2.2: window scaling
/// is in force only when both SYNs carried the option.
///
/// Cases: MTU 1280–9000 (the IPv6 minimum: the lab adds IPv6 addresses in IPv4 cases too), every combination of the three sysctls on
/// a and on b independently, 0–6000 bytes a→b and 0–4000 bytes b→a, then a closes first and b after EOF.
///
/// Checked: the handshake's flags and acks; MSS of SYN and SYN-ACK; each option's presence on SYN and SYN-ACK;
/// no data segment larger than the peer's MSS; a's first data byte at ISN+1; each FIN acknowledged at
/// FIN.SEQ+LEN+1 and never beyond; TCP_INFO on both hosts agrees with the wire (TCPI_OPT_TIMESTAMPS, _SACK,
/// _WSCALE; snd_wscale/rcv_wscale equal the two shifts sent, or 0 when scaling is not in force); every
/// non-SYN window advertisement, shifted by the sender's scale only when scaling is in force, lies between
/// [`MIN_SCALED_WINDOW`] and the sender's SO_RCVBUF (a shift applied or omitted wrongly is off by 2^shift,
/// ×128 with Linux's default shift 7).
pub struct HandshakeOptions;

/// A loose floor for any window advertised after the handshake. Each receiver here has the default buffer
/// (tcp_rmem[1] = 131072, about 64 KB of window: the SYNs here carry 64240–65160) and never holds more than
/// 6000 unread bytes, so its window stays far above 1 KB; a wrongly dropped shift divides it by 2^shift
/// (Linux picks 7–10 here: ~500 bytes or less), far below.
pub const MIN_SCALED_WINDOW: u32 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionSysctls {
    pub sack: bool,
    pub timestamps: bool,
    pub window_scaling: bool,
}

impl OptionSysctls {
    fn render(&self) -> String {
        format!(
            "sack={} ts={} wscale={}",
            self.sack as u8, self.timestamps as u8, self.window_scaling as u8
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandshakeCase {
    pub port: u16,
    pub mtu: u32,
    pub a: OptionSysctls,
    pub b: OptionSysctls,
    pub a_to_b: usize,
    pub b_to_a: usize,
}

impl Property for HandshakeOptions {
    type Case = HandshakeCase;
    type Observed = ProgramObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.handshake.options",
            suite: "tcp-lifecycle",
            title: "SYN, SYN-ACK, ACK; SYN and FIN take one sequence number; MSS = MTU − 40/60; SACK, timestamps and window scale follow each host's sysctls, echoed only if offered, scaling only when both sent it",
            clauses: &[
                "RFC 9293 §3.5",
                "RFC 9293 §3.4",
                "RFC 9293 §3.7.1 (MUST-14, MUST-15, MUST-16)",
                "RFC 7323 §2.2",
                "RFC 7323 §3.2",
                "RFC 2018 §2",
            ],
            questions: &["Q12", "Q13"],
            subject: Subject::Both,
            needs: Needs {
                links: &[LinkKind::Veth],
                kernel: &[KernelNeed::Sysctl, KernelNeed::TcpInfo],
                caps: &[Cap::Tcp],
                ethernet: false,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, family: Family) -> HandshakeCase {
        let mut sysctls = || OptionSysctls {
            sack: rng.gen(),
            timestamps: rng.gen(),
            window_scaling: rng.gen(),
        };
        let (a, b) = (sysctls(), sysctls());
        // The lab gives every host an IPv6 address too, and IPv6 refuses a link MTU below 1280 (RFC 8200 §5),
        // so IPv4 cases start there as well.
        let _ = family;
        let low = 1280;
        let mtu = match rng.gen_range(0..4) {
            0 => 1500,
            1 => low,
            2 => 9000,
            _ => rng.gen_range(low..=9000),
        };
        HandshakeCase {
            port: rng.gen_range(1024..=60999),
            mtu,
            a,
            b,
            a_to_b: if rng.gen_bool(0.2) {
                0
            } else {
                rng.gen_range(1..=6000)
            },
            b_to_a: if rng.gen_bool(0.3) {
                0
            } else {
                rng.gen_range(1..=4000)
            },
        }
    }

    fn lab_config(&self, case: &HandshakeCase) -> LabConfig {
        let mut cfg = LabConfig {
            mtu: Some(case.mtu),
            ..LabConfig::default()
        };
        for (host, s) in [(Host::A, case.a), (Host::B, case.b)] {
            cfg.sysctls.push(sysctl(host, "net.ipv4.tcp_sack", s.sack));
            cfg.sysctls
                .push(sysctl(host, "net.ipv4.tcp_timestamps", s.timestamps));
            cfg.sysctls.push(sysctl(
                host,
                "net.ipv4.tcp_window_scaling",
                s.window_scaling,
            ));
        }
        cfg
    }

    fn describe(&self, c: &HandshakeCase) -> String {
        format!(
            "MTU {}, a: {}, b: {}, {} bytes a→b, {} bytes b→a, close",
            c.mtu,
            c.a.render(),
            c.b.render(),
            c.a_to_b,
            c.b_to_a
        )
    }

    fn settle(&self, _case: &HandshakeCase) -> std::time::Duration {
        // The last ACK (of b's FIN) leaves a within microseconds of the FIN on veth.
        std::time::Duration::from_millis(20)
    }

    fn execute(&self, c: &HandshakeCase, env: &CaseEnv) -> Result<ProgramObserved, HarnessError> {
        let tcp = || Op::Socket {
            kind: SockKind::Tcp,
        };
        let mut a = vec![
            Op::Sync,
            tcp(),
            Op::Connect {
                sock: 0,
                port: c.port,
            },
            Op::Sync,
        ];
        let mut b = vec![
            tcp(),
            Op::Bind {
                sock: 0,
                port: c.port,
            },
            Op::Listen {
                sock: 0,
                backlog: 4,
            },
            Op::Sync,
            Op::Accept { sock: 0 },
            Op::Sync,
        ];
        if c.a_to_b > 0 {
            a.push(Op::Write {
                sock: 0,
                len: c.a_to_b,
            });
            b.push(Op::ReadExact {
                sock: 1,
                len: c.a_to_b,
            });
        }
        if c.b_to_a > 0 {
            b.push(Op::Write {
                sock: 1,
                len: c.b_to_a,
            });
        }
        a.push(Op::Sync);
        b.push(Op::Sync);
        if c.b_to_a > 0 {
            a.push(Op::ReadExact {
                sock: 0,
                len: c.b_to_a,
            });
        }
        a.push(Op::Close { sock: 0 });
        // b waits for a's FIN (EOF), then closes: both FINs and their ACKs are on the wire.
        b.push(Op::Read {
            sock: 1,
            max: 65_536,
        });
        b.push(Op::Close { sock: 1 });
        a.push(Op::Sync);
        b.push(Op::Sync);
        let mut cfg = ExecConfig::new(env.seed, env.family);
        cfg.io_timeout_ms = 500;
        run(env, Program { a, b }, cfg)
    }

    fn check(&self, c: &HandshakeCase, observed: &ProgramObserved, trace: &Trace) -> Verdict {
        let mut f = Findings::default();
        let a_ops = ops_of(observed, Host::A);
        let b_ops = ops_of(observed, Host::B);
        let Some(connect) = a_ops.iter().find(|o| matches!(o.op, Op::Connect { .. })) else {
            return Verdict::Invalid {
                reason: "a never ran connect()".into(),
            };
        };
        if connect.result != OpResult::Done {
            return Verdict::fail(
                Violation::new(
                    "RFC 9293 §3.5",
                    "connect() to a listening port did not complete",
                )
                .field("connect()")
                .expected("ok")
                .actual(connect.result.render()),
            );
        }
        let Some(a_port) = connect.sock.as_ref().and_then(|s| s.local_port) else {
            return Verdict::Invalid {
                reason: "a's connected socket has no local port".into(),
            };
        };
        let segs = connection(trace, a_port, c.port);
        let hs = handshake(&segs);
        let (Some(syn), Some(syn_ack), Some(ack)) = (hs.syn, hs.syn_ack, hs.ack) else {
            return Verdict::fail(
                Violation::new(
                    "RFC 9293 §3.5",
                    "the three-way handshake is not on the wire",
                )
                .frames(segs.iter().take(3).map(|s| s.0))
                .field("flags")
                .expected("S from a, S. from b, . from a")
                .actual(format!(
                    "SYN {}, SYN-ACK {}, ACK {}",
                    presence(hs.syn.is_some()),
                    presence(hs.syn_ack.is_some()),
                    presence(hs.ack.is_some())
                )),
            );
        };
        let (syn_no, _, syn) = syn;
        let (sa_no, _, sa) = syn_ack;
        let (ack_no, _, ack) = ack;
        // --- SYN and SYN-ACK each take one sequence number (RFC 9293 §3.4, §3.5).
        f.check(sa.ack == syn.seq + 1, || {
            Violation::new(
                "RFC 9293 §3.5, §3.4 (SYN occupies one sequence number)",
                "the SYN-ACK does not acknowledge SYN.SEQ+1",
            )
            .frames([syn_no, sa_no])
            .field("ack")
            .expected(syn.seq + 1)
            .actual(sa.ack)
        });
        f.check(ack.ack == sa.seq + 1, || {
            Violation::new(
                "RFC 9293 §3.5, §3.4 (SYN occupies one sequence number)",
                "the handshake's ACK does not acknowledge SYN-ACK.SEQ+1",
            )
            .frames([sa_no, ack_no])
            .field("ack")
            .expected(sa.seq + 1)
            .actual(ack.ack)
        });
        if let Some((n, _, d)) = segs
            .iter()
            .find(|(_, from, t)| *from == Some(Host::A) && t.payload_len > 0)
        {
            f.check(d.seq == syn.seq + 1, || {
                Violation::new(
                    "RFC 9293 §3.4 (SYN occupies one sequence number)",
                    "a's first data byte is not at ISN+1",
                )
                .frames([syn_no, *n])
                .field("seq (relative)")
                .expected(1)
                .actual(d.seq - syn.seq)
            });
        }
        // --- MSS (MUST-14/15/16).
        let want_mss = expected_mss(c.mtu, frame_family(trace, syn_no));
        for (no, t, who) in [(syn_no, syn, "SYN"), (sa_no, sa, "SYN-ACK")] {
            let got = mss_of(t);
            f.check(got.map(u32::from) == Some(want_mss), || {
                Violation::new(
                    "RFC 9293 §3.7.1 (MUST-14, MUST-16)",
                    format!("the {who}'s MSS option is not MTU − headers"),
                )
                .frame(no)
                .field(format!("{who} option MSS"))
                .expected(format!("{want_mss} (MTU {} − {})", c.mtu, c.mtu - want_mss))
                .actual(got.map_or("absent".to_string(), |m| m.to_string()))
            });
        }
        // --- Options per sysctl: offered by the SYN per a's sysctls; echoed by the SYN-ACK only if offered
        // and enabled on b.
        let sack_on = c.a.sack && c.b.sack;
        let ts_on = c.a.timestamps && c.b.timestamps;
        let ws_on = c.a.window_scaling && c.b.window_scaling;
        type Probe = fn(&TcpRepr) -> bool;
        let checks: [(&str, &str, Probe, bool, bool); 3] = [
            (
                "SACK-permitted",
                "RFC 2018 §2",
                sack_permitted,
                c.a.sack,
                c.b.sack,
            ),
            (
                "timestamps",
                "RFC 7323 §3.2",
                timestamps,
                c.a.timestamps,
                c.b.timestamps,
            ),
            (
                "window scale",
                "RFC 7323 §2.2",
                |t| wscale_of(t).is_some(),
                c.a.window_scaling,
                c.b.window_scaling,
            ),
        ];
        for (name, clause, has, on_a, on_b) in checks {
            let key = match name {
                "SACK-permitted" => "tcp_sack",
                "timestamps" => "tcp_timestamps",
                _ => "tcp_window_scaling",
            };
            f.check(has(syn) == on_a, || {
                Violation::new(
                    clause,
                    format!("the SYN's {name} option does not follow a's net.ipv4.{key}"),
                )
                .frame(syn_no)
                .field(format!("SYN option {name}"))
                .expected(format!("{} (a: {key}={})", presence(on_a), on_a as u8))
                .actual(presence(has(syn)))
            });
            let want = on_a && on_b;
            f.check(has(sa) == want, || {
                Violation::new(clause, format!("the SYN-ACK's {name} option is not \"offered by the SYN and enabled on b\""))
                    .frames([syn_no, sa_no])
                    .field(format!("SYN-ACK option {name}"))
                    .expected(format!("{} (SYN offered it: {}, b: {key}={})", presence(want), has(syn), on_b as u8))
                    .actual(presence(has(sa)))
            });
        }
        // Shift each side announced (RFC 7323 §2.2: in force only if both SYNs carried the option).
        let a_shift = wscale_of(syn);
        let b_shift = wscale_of(sa);
        let in_force = a_shift.is_some() && b_shift.is_some();
        let shift_of = |h: Host| -> u8 {
            if !in_force {
                return 0;
            }
            match h {
                Host::A => a_shift.unwrap_or(0),
                Host::B => b_shift.unwrap_or(0),
            }
        };
        // --- TCP_INFO agrees with the wire.
        let b_sock = b_ops
            .iter()
            .find(|o| o.op.sock() == Some(1) && o.sock.as_ref().is_some_and(|s| s.tcp.is_some()));
        for (host, snap) in [
            (Host::A, connect.sock.as_ref()),
            (Host::B, b_sock.and_then(|o| o.sock.as_ref())),
        ] {
            let Some(info) = snap.and_then(|s| s.tcp) else {
                continue;
            };
            let want_bits = (ts_on as u8) | ((sack_on as u8) << 1) | ((ws_on as u8) << 2);
            let got_bits = info.options & 7;
            f.check(got_bits == want_bits, || {
                Violation::new(
                    "RFC 7323 §2.2, §3.2; RFC 2018 §2",
                    format!(
                        "{}'s TCP_INFO options disagree with the negotiated handshake",
                        host.name()
                    ),
                )
                .frames([syn_no, sa_no])
                .field("tcpi_options (1 TS, 2 SACK, 4 WSCALE)")
                .expected(want_bits)
                .actual(got_bits)
            });
            let (own, peer) = (shift_of(host), shift_of(host.other()));
            f.check(info.rcv_wscale == own && info.snd_wscale == peer, || {
                Violation::new(
                    "RFC 7323 §2.2",
                    format!(
                        "{}'s window scale in TCP_INFO is not the one negotiated",
                        host.name()
                    ),
                )
                .frames([syn_no, sa_no])
                .field("tcpi_rcv_wscale/tcpi_snd_wscale")
                .expected(format!("{own}/{peer} (scaling in force: {in_force})"))
                .actual(format!("{}/{}", info.rcv_wscale, info.snd_wscale))
            });
        }
        // --- Window fields in the data phase, scaled only when scaling is in force.
        let rcvbuf = |host: Host, sock: usize| -> Option<u32> {
            observed
                .outcomes
                .iter()
                .filter(|o| o.host == host && o.op.sock() == Some(sock))
                .filter_map(|o| o.sock.as_ref().and_then(|s| s.rcvbuf))
                .max()
                .map(|v| v as u32)
        };
        let bufs = [(Host::A, rcvbuf(Host::A, 0)), (Host::B, rcvbuf(Host::B, 1))];
        // A side that has received its peer's FIN expects no more data, so its window says nothing any more
        // (Linux's TIME-WAIT mini-socket advertises a leftover value, e.g. 922 unscaled).
        let mut fin_seen_from: Vec<Host> = Vec::new();
        for (no, from, t) in &segs {
            let Some(from) = *from else { continue };
            if t.flags.fin {
                fin_seen_from.push(from);
            }
            if t.flags.syn || t.flags.rst || fin_seen_from.contains(&from.other()) {
                continue;
            }
            let shift = shift_of(from);
            let scaled = (t.window as u32) << shift;
            let max = bufs
                .iter()
                .find(|(h, _)| *h == from)
                .and_then(|(_, b)| *b)
                .unwrap_or(u32::MAX);
            if !(MIN_SCALED_WINDOW..=max).contains(&scaled) {
                f.push(
                    Violation::new("RFC 7323 §2.2", format!("{}'s advertised window, scaled as negotiated, is implausible: the shift is applied or omitted wrongly", from.name()))
                        .frames([syn_no, sa_no, *no])
                        .field("window")
                        .expected(format!("raw field × 2^{shift} within {MIN_SCALED_WINDOW}..={max} (SO_RCVBUF)"))
                        .actual(format!("{} × 2^{shift} = {scaled}", t.window)),
                );
                break;
            }
        }
        // --- No segment larger than the peer's MSS (RFC 9293 §3.7.1 MUST-15 via the effective send MSS).
        for (no, from, t) in &segs {
            let peer_mss = match from {
                Some(Host::A) => mss_of(sa),
                Some(Host::B) => mss_of(syn),
                None => None,
            };
            if let Some(m) = peer_mss {
                if t.payload_len > m as usize {
                    f.push(
                        Violation::new(
                            "RFC 9293 §3.7.1 (MUST-15); RFC 879",
                            "a segment is larger than the MSS its receiver announced",
                        )
                        .frame(*no)
                        .field("payload length")
                        .expected(format!("≤ {m}"))
                        .actual(t.payload_len),
                    );
                    break;
                }
            }
        }
        // --- Each FIN takes one sequence number: acknowledged at FIN.SEQ+LEN+1, never beyond.
        for closer in [Host::A, Host::B] {
            let Some((fin_no, _, fin)) = segs
                .iter()
                .find(|(_, from, t)| *from == Some(closer) && t.flags.fin)
                .copied()
            else {
                f.push(
                    Violation::new(
                        "RFC 9293 §3.6",
                        format!("{} closed but sent no FIN", closer.name()),
                    )
                    .field("flags")
                    .expected("F")
                    .actual("no FIN before the capture ended"),
                );
                continue;
            };
            let want = fin.seq + (fin.payload_len as u32 + 1);
            let acks: Vec<&Seg> = segs
                .iter()
                .filter(|(n, from, t)| {
                    *n > fin_no && *from == Some(closer.other()) && t.flags.ack && !t.flags.rst
                })
                .collect();
            let exact = acks.iter().any(|(_, _, t)| t.ack == want);
            let beyond = acks.iter().find(|(_, _, t)| t.ack > want);
            if let Some((n, _, t)) = beyond {
                f.push(
                    Violation::new(
                        "RFC 9293 §3.4 (FIN occupies one sequence number)",
                        format!(
                            "{} acknowledged beyond {}'s FIN",
                            closer.other().name(),
                            closer.name()
                        ),
                    )
                    .frames([fin_no, *n])
                    .field("ack")
                    .expected(format!("{want} (FIN.SEQ+LEN+1)"))
                    .actual(t.ack),
                );
            } else if !exact {
                f.push(
                    Violation::new(
                        "RFC 9293 §3.4 (FIN occupies one sequence number)",
                        format!(
                            "{}'s FIN was never acknowledged at FIN.SEQ+LEN+1",
                            closer.name()
                        ),
                    )
                    .frames(std::iter::once(fin_no).chain(acks.iter().map(|s| s.0)))
                    .field("ack")
                    .expected(format!("{want} (FIN.SEQ+LEN+1)"))
                    .actual(
                        acks.last()
                            .map_or("no ACK after the FIN".to_string(), |s| s.2.ack.to_string()),
                    ),
                );
            }
        }
        f.note(format!(
            "options in force: sack={} ts={} wscale={}",
            sack_on as u8, ts_on as u8, ws_on as u8
        ));
        f.verdict()
    }
}

/// The family of frame `number` (1-based), from its addresses (the case itself does not store the family).
fn frame_family(trace: &Trace, number: usize) -> Family {
    trace
        .frames
        .get(number - 1)
        .and_then(|f| f.packet.as_ref().ok().and_then(|p| p.src_ip()))
        .map(Family::of)
        .unwrap_or(Family::Ipv4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mss_is_mtu_less_fixed_headers() {
        assert_eq!(expected_mss(1500, Family::Ipv4), 1460);
        assert_eq!(expected_mss(1500, Family::Ipv6), 1440);
        assert_eq!(expected_mss(1280, Family::Ipv6), 1220);
        assert_eq!(expected_mss(576, Family::Ipv4), 536);
    }
}
