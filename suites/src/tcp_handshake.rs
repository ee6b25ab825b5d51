//! Opening connections (suite `tcp-lifecycle`): the three-way handshake and its options, the accept queue, and
//! the 4-tuple as a connection's identity.
//!
//! Every property here runs an op [`Program`] on real sockets and judges the captured trace together with the
//! executor's outcomes (TCP_INFO snapshots, accepted peers, stream checks). Stream integrity, sequence
//! accounting and window bounds are checked on every case by `harness::invariants` and are not repeated here.
//!
//! Accept-queue overflow has two shapes on Linux, both measured here before being checked: a SYN that meets a
//! full queue is dropped whatever `tcp_abort_on_overflow` says (tcp_conn_request: LINUX_MIB_LISTENOVERFLOWS);
//! a handshake's final ACK that meets a full queue is reset with `tcp_abort_on_overflow=1` and dropped silently
//! with 0. On veth a blocking connect's whole handshake completes inside the connect() call, so the second
//! shape needs two SYNs in flight at once: those cases run over the relay with 5 ms each way.

use std::collections::{BTreeMap, BTreeSet};

use harness::exec::{ExecConfig, OpOutcome, OpResult};
use harness::frame::Host;
use harness::ops::{Op, Program, SockKind, TcpState};
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::Family;
use harness::trace::Trace;
use harness::wire::{SeqNumber, TcpOption, TcpRepr};
use harness::{HarnessError, LabConfig, SysctlSetting};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::conn::ProgramObserved;

fn run(env: &CaseEnv, program: Program, cfg: ExecConfig) -> Result<ProgramObserved, HarnessError> {
    let (outcomes, sockets) = harness::exec::run_program(env.lab, &program, cfg)?;
    Ok(ProgramObserved { outcomes, sockets })
}

fn sysctl(host: Host, key: &str, on: bool) -> SysctlSetting {
    SysctlSetting {
        host,
        key: key.into(),
        value: if on { "1" } else { "0" }.into(),
    }
}

/// One captured TCP segment: frame number (1-based), sender, header.
type Seg<'t> = (usize, Option<Host>, &'t TcpRepr);

/// The segments of the connection between a's `a_port` and b's `b_port`, in capture order.
fn connection(trace: &Trace, a_port: u16, b_port: u16) -> Vec<Seg<'_>> {
    trace
        .frames
        .iter()
        .filter_map(|f| f.tcp().map(|t| (f.number, f.from, t)))
        .filter(|(_, from, t)| match from {
            Some(Host::A) => t.src_port == a_port && t.dst_port == b_port,
            Some(Host::B) => t.src_port == b_port && t.dst_port == a_port,
            None => false,
        })
        .collect()
}

/// The first SYN from a, the first SYN-ACK from b after it, and a's first non-SYN ACK after that.
struct Handshake<'t> {
    syn: Option<Seg<'t>>,
    syn_ack: Option<Seg<'t>>,
    ack: Option<Seg<'t>>,
}

fn handshake<'t>(segs: &[Seg<'t>]) -> Handshake<'t> {
    let syn = segs
        .iter()
        .find(|(_, from, t)| *from == Some(Host::A) && t.flags.syn && !t.flags.ack)
        .copied();
    let syn_ack = syn.and_then(|(n, _, _)| {
        segs.iter()
            .find(|(m, from, t)| {
                *m > n && *from == Some(Host::B) && t.flags.syn && t.flags.ack && !t.flags.rst
            })
            .copied()
    });
    let ack = syn_ack.and_then(|(n, _, _)| {
        segs.iter()
            .find(|(m, from, t)| {
                *m > n && *from == Some(Host::A) && t.flags.ack && !t.flags.syn && !t.flags.rst
            })
            .copied()
    });
    Handshake { syn, syn_ack, ack }
}

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

fn presence(p: bool) -> &'static str {
    if p {
        "present"
    } else {
        "absent"
    }
}

/// The outcomes of `host`'s ops, in op order.
fn ops_of(observed: &ProgramObserved, host: Host) -> Vec<&OpOutcome> {
    observed
        .outcomes
        .iter()
        .filter(|o| o.host == host)
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// tcp.handshake.options
// ---------------------------------------------------------------------------------------------------------------

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
            needs: Needs {
                link: LinkKind::Veth,
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

// ---------------------------------------------------------------------------------------------------------------
// tcp.accept.backlog
// ---------------------------------------------------------------------------------------------------------------

/// How long a connect into a full accept queue is given: well below the first SYN retransmission at
/// TCP_TIMEOUT_INIT (1 s), well above a veth handshake (tens of µs; docs/kernel-facts.md).
const OVERFLOW_CONNECT_MS: u32 = 200;

/// Judges the final-ACK race: both raced handshakes complete on the wire; with `tcp_abort_on_overflow=1` b
/// resets the connection whose final ACK met the full queue (`<SEQ=SEG.ACK><CTL=RST>`, RFC 9293 §3.5.2: a reset
/// for a segment with ACK takes its sequence number from the ACK field), with 0 it drops that ACK silently (no RST; its SYN-ACK would be
/// retransmitted after TCP_TIMEOUT_INIT, 1 s, not waited for). Returns the raced connection b may accept.
fn check_race(
    f: &mut Findings,
    c: &BacklogCase,
    trace: &Trace,
    raced: &[&&OpOutcome],
    last_accepted: Option<u16>,
) -> Option<u16> {
    const CLAUSE: &str = "ip-sysctl tcp_abort_on_overflow; listen(2)";
    let ports: Vec<u16> = raced
        .iter()
        .filter_map(|o| o.sock.as_ref().and_then(|s| s.local_port))
        .collect();
    if ports.len() != 2 {
        f.push(
            Violation::new(CLAUSE, "the two raced connects have no local ports")
                .field("getsockname()")
                .expected("2 ports")
                .actual(ports.len()),
        );
        return None;
    }
    let mut reset = Vec::new();
    for &p in &ports {
        let segs = connection(trace, p, c.port);
        let hs = handshake(&segs);
        let Some((ack_no, _, ack)) = hs.ack else {
            f.push(
                Violation::new("RFC 9293 §3.5", format!("the raced connection from port {p} did not finish its handshake on the wire"))
                    .frames(segs.iter().map(|s| s.0))
                    .field("flags")
                    .expected("S, S., . (both SYNs reach b while the queue still has room)")
                    .actual(format!("SYN {}, SYN-ACK {}, ACK {}", presence(hs.syn.is_some()), presence(hs.syn_ack.is_some()), presence(hs.ack.is_some()))),
            );
            continue;
        };
        if let Some((rst_no, _, rst)) = segs
            .iter()
            .find(|(n, from, t)| *n > ack_no && *from == Some(Host::B) && t.flags.rst)
        {
            reset.push(p);
            f.check(rst.seq == ack.ack && !rst.flags.ack, || {
                Violation::new(
                    "RFC 9293 §3.5.2 (a reset for a segment with ACK: <SEQ=SEG.ACK><CTL=RST>)",
                    "the overflow RST does not carry SEQ=SEG.ACK without the ACK bit",
                )
                .frames([ack_no, *rst_no])
                .field("seq/flags")
                .expected(format!("seq {} flags R", ack.ack))
                .actual(format!("seq {} flags {}", rst.seq, rst.flags.tcpdump()))
            });
        }
    }
    let want_resets = c.abort_on_overflow as usize;
    f.check(reset.len() == want_resets, || {
        Violation::new(CLAUSE, "a final ACK that met a full accept queue was not handled as tcp_abort_on_overflow says")
            .field("RST from b on the raced connections")
            .expected(if c.abort_on_overflow {
                "exactly one (tcp_abort_on_overflow=1: reset)"
            } else {
                "none (tcp_abort_on_overflow=0: the ACK is dropped, the SYN-ACK retransmitted later)"
            })
            .actual(format!("{} (ports {reset:?})", reset.len()))
    });
    match last_accepted {
        Some(p) if ports.contains(&p) && !reset.contains(&p) => Some(p),
        // The accepted one must be a raced connection that was not reset: expect the first raced port so the
        // FIFO check reports the difference.
        _ => ports.iter().find(|p| !reset.contains(p)).copied(),
    }
}

/// Passive open and the accept queue (lab Q10, Q11, Q14).
///
/// RFC 9293 §3.5 and §3.9.1 (OPEN, passive): the handshake completes in the TCP layer; the application's
/// accept (Linux) only takes a completed connection off the queue. listen(2): `backlog` bounds the queue of
/// completely established sockets waiting to be accepted; "if a connection request arrives when the queue is
/// full, ... the request may be ignored so that a later reattempt at connection succeeds". Linux holds
/// backlog + 1 connections (`sk_acceptq_is_full`: `sk_ack_backlog > sk_max_ack_backlog`) and drops a SYN that
/// meets a full queue (tcp_conn_request, LINUX_MIB_LISTENOVERFLOWS) whatever `tcp_abort_on_overflow` says:
/// ip-sysctl's "reset them" applies to the final ACK of a handshake meeting a full queue (see the module doc).
///
/// Cases: backlog 1–4, `tcp_abort_on_overflow` 0 or 1 on b, 1..=backlog+1 queued connects plus 0–2 that
/// overflow; or (30 %) `backlog` queued connects then two non-blocking connects at once over a relay with
/// [`RACE_DELAY_US`] each way and `tcp_syncookies=0` on b, so both SYNs are answered and the second final ACK
/// meets a full queue (see [`check_race`]). b calls accept only after every connect returned; then one more
/// connection is made and accepted.
///
/// Checked: every connect within backlog+1 returns before b calls accept, ESTABLISHED, its SYN, SYN-ACK and ACK
/// on the wire; each overflowing connect does not complete within [`OVERFLOW_CONNECT_MS`] and its SYN gets
/// no answer (no SYN-ACK, no RST); accepts return new, distinct sockets whose peers are the queued connects
/// in connect order (FIFO), none of the overflowing ones; the listener stays in LISTEN and the later
/// connection is accepted too.
pub struct AcceptBacklog;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BacklogCase {
    pub port: u16,
    pub backlog: i32,
    /// Connects that fit in the queue (1..=backlog+1).
    pub queued: usize,
    /// Connects beyond backlog+1 (only when `queued` = backlog+1).
    pub overflow: usize,
    pub abort_on_overflow: bool,
    /// Final-ACK race: with `queued` = backlog, two connects are started at once over a 5 ms relay so that the
    /// second final ACK meets a full queue (then `overflow` = 0).
    #[serde(default)]
    pub race: bool,
}

impl BacklogCase {
    /// Connections b accepts from the first queue.
    fn accepted(&self) -> usize {
        self.queued + self.race as usize
    }
    /// a's connect ops before the later connection.
    fn connects(&self) -> usize {
        self.queued + self.overflow + 2 * self.race as usize
    }
}

/// One-way delay of the relay in race cases: both SYNs reach b before either final ACK (RTT 10 ms ≫ the
/// microseconds between two non-blocking connect() calls).
const RACE_DELAY_US: u64 = 5_000;
/// How long a waits after the raced connects: two round trips (20 ms) plus slack for a loaded 2-core box.
const RACE_WAIT_MS: u32 = 80;

impl Property for AcceptBacklog {
    type Case = BacklogCase;
    type Observed = ProgramObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.accept.backlog",
            suite: "tcp-lifecycle",
            title: "the handshake completes before accept(); completed connections queue (backlog + 1 on Linux) and are accepted FIFO as new sockets; a SYN meeting a full queue is ignored; the listener stays usable",
            clauses: &["RFC 9293 §3.5", "RFC 9293 §3.9.1", "listen(2)"],
            questions: &["Q10", "Q11", "Q14"],
            needs: Needs {
                link: LinkKind::Veth,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> BacklogCase {
        let backlog = rng.gen_range(1..=4);
        if rng.gen_bool(0.3) {
            return BacklogCase {
                port: rng.gen_range(1024..=60999),
                backlog,
                queued: backlog as usize,
                overflow: 0,
                abort_on_overflow: rng.gen(),
                race: true,
            };
        }
        let full = rng.gen_bool(0.6);
        let queued = if full {
            backlog as usize + 1
        } else {
            rng.gen_range(1..=backlog as usize + 1)
        };
        BacklogCase {
            port: rng.gen_range(1024..=60999),
            backlog,
            queued,
            overflow: if queued == backlog as usize + 1 {
                rng.gen_range(0..=2)
            } else {
                0
            },
            abort_on_overflow: rng.gen(),
            race: false,
        }
    }

    fn lab_config(&self, c: &BacklogCase) -> LabConfig {
        let mut cfg = LabConfig::default();
        cfg.sysctls.push(sysctl(
            Host::B,
            "net.ipv4.tcp_abort_on_overflow",
            c.abort_on_overflow,
        ));
        if c.race {
            let delay = harness::link::relay::Impairment {
                delay_us: RACE_DELAY_US,
                ..Default::default()
            };
            cfg.link = harness::link::LinkSpec::Relay(harness::link::RelaySpec {
                a_to_b: delay.clone(),
                b_to_a: delay,
                seed: 1,
            });
            // Two handshakes pending at once must both get a real SYN-ACK, not a SYN cookie (the request queue
            // check in tcp_conn_request), so the second final ACK reaches the accept-queue check.
            cfg.sysctls
                .push(sysctl(Host::B, "net.ipv4.tcp_syncookies", false));
        }
        cfg
    }

    fn describe(&self, c: &BacklogCase) -> String {
        if c.race {
            return format!(
                "listen(backlog {}), {} queued, then two connects at once over a {} ms relay (the second final ACK meets a full queue), tcp_abort_on_overflow={}",
                c.backlog,
                c.queued,
                RACE_DELAY_US / 1000,
                c.abort_on_overflow as u8
            );
        }
        format!(
            "listen(backlog {}), {} queued + {} overflowing connect(s), tcp_abort_on_overflow={}, then accept all and one more",
            c.backlog, c.queued, c.overflow, c.abort_on_overflow as u8
        )
    }

    fn execute(&self, c: &BacklogCase, env: &CaseEnv) -> Result<ProgramObserved, HarnessError> {
        let tcp = || Op::Socket {
            kind: SockKind::Tcp,
        };
        let total = c.queued + c.overflow;
        let mut a = vec![Op::Sync];
        for i in 0..total {
            a.push(tcp());
            a.push(Op::Connect {
                sock: i,
                port: c.port,
            });
        }
        if c.race {
            for i in total..total + 2 {
                a.push(tcp());
                a.push(Op::SetOpt {
                    sock: i,
                    opt: harness::ops::SockOpt::NonBlocking(true),
                });
            }
            a.push(Op::Connect {
                sock: total,
                port: c.port,
            });
            a.push(Op::Connect {
                sock: total + 1,
                port: c.port,
            });
            a.push(Op::Sleep { ms: RACE_WAIT_MS });
        }
        a.push(Op::Sync);
        let b = {
            let mut b = vec![
                tcp(),
                Op::Bind {
                    sock: 0,
                    port: c.port,
                },
                Op::Listen {
                    sock: 0,
                    backlog: c.backlog,
                },
                Op::Sync,
                // a connects while b does not call accept.
                Op::Sync,
            ];
            for _ in 0..c.accepted() {
                b.push(Op::Accept { sock: 0 });
            }
            // A no-wait op on each accepted socket snapshots its peer.
            for k in 0..c.accepted() {
                b.push(Op::WaitWritable { sock: 1 + k, ms: 0 });
            }
            b.push(Op::Sync);
            b.push(Op::Sync);
            b.push(Op::Accept { sock: 0 });
            b.push(Op::WaitWritable {
                sock: 1 + c.accepted(),
                ms: 0,
            });
            b
        };
        // The later connection, after the queue was drained.
        a.push(Op::Sync);
        a.push(tcp());
        a.push(Op::Connect {
            sock: c.connects(),
            port: c.port,
        });
        a.push(Op::Sync);
        let mut cfg = ExecConfig::new(env.seed, env.family);
        cfg.connect_timeout_ms = OVERFLOW_CONNECT_MS;
        cfg.io_timeout_ms = 300;
        run(env, Program { a, b }, cfg)
    }

    fn check(&self, c: &BacklogCase, observed: &ProgramObserved, trace: &Trace) -> Verdict {
        const QUEUE: &str = "RFC 9293 §3.5, §3.9.1; listen(2)";
        let mut f = Findings::default();
        let a_ops = ops_of(observed, Host::A);
        let b_ops = ops_of(observed, Host::B);
        let connects: Vec<&&OpOutcome> = a_ops
            .iter()
            .filter(|o| matches!(o.op, Op::Connect { .. }))
            .collect();
        let total = c.connects();
        if connects.len() != total + 1 {
            return Verdict::Invalid {
                reason: format!(
                    "a ran {} connects, the program has {}",
                    connects.len(),
                    total + 1
                ),
            };
        }
        let port_of = |o: &OpOutcome| o.sock.as_ref().and_then(|s| s.local_port);
        // Queued connects: complete before any accept, ESTABLISHED, handshake on the wire.
        let mut queued_ports = Vec::new();
        for (i, o) in connects.iter().take(c.queued).enumerate() {
            let port = port_of(o);
            let state = o.sock.as_ref().and_then(|s| s.state());
            f.check(o.result == OpResult::Done && state == Some(TcpState::Established), || {
                Violation::new(QUEUE, format!("connect #{i} did not complete while b had not called accept (the queue holds backlog + 1 = {})", c.backlog + 1))
                    .field("connect()")
                    .expected("ok, ESTABLISHED")
                    .actual(format!("{}, {}", o.result.render(), state.map_or("?", |s| s.rfc_name())))
            });
            let Some(port) = port else { continue };
            queued_ports.push(port);
            let segs = connection(trace, port, c.port);
            let hs = handshake(&segs);
            f.check(
                hs.syn.is_some() && hs.syn_ack.is_some() && hs.ack.is_some(),
                || {
                    Violation::new(
                        "RFC 9293 §3.5",
                        format!(
                            "connect #{i} returned but its three-way handshake is not on the wire"
                        ),
                    )
                    .frames(segs.iter().map(|s| s.0))
                    .field("flags")
                    .expected("S, S., . before accept()")
                    .actual(format!(
                        "SYN {}, SYN-ACK {}, ACK {}",
                        presence(hs.syn.is_some()),
                        presence(hs.syn_ack.is_some()),
                        presence(hs.ack.is_some())
                    ))
                },
            );
        }
        // Overflowing connects: the SYN is ignored (both tcp_abort_on_overflow values).
        let mut overflow_ports = Vec::new();
        for (i, o) in connects.iter().enumerate().skip(c.queued).take(c.overflow) {
            f.check(o.result == OpResult::TimedOut, || {
                Violation::new(
                    "listen(2); Linux sk_acceptq_is_full (backlog + 1)",
                    format!("connect #{i} into a full accept queue did not stay unanswered"),
                )
                .field("connect()")
                .expected(format!(
                    "no completion within {OVERFLOW_CONNECT_MS} ms (SYN dropped)"
                ))
                .actual(o.result.render())
            });
            let Some(port) = port_of(o) else { continue };
            overflow_ports.push(port);
            let segs = connection(trace, port, c.port);
            // Only the first SYN is known to have met the full queue. a retransmits it after TCP_TIMEOUT_INIT
            // (1 s, RFC 6298 §2.1) if the case is still running then — only on a machine so loaded that the
            // case took that long — and by then accept() may have made room: an answer to that is legal.
            let a_syns: Vec<usize> = segs
                .iter()
                .enumerate()
                .filter(|(_, s)| s.1 == Some(Host::A) && s.2.flags.syn)
                .map(|(k, _)| k)
                .collect();
            let first_syn_window = a_syns.get(1).copied().unwrap_or(segs.len());
            let answers: Vec<&Seg> = segs[..first_syn_window]
                .iter()
                .filter(|s| s.1 == Some(Host::B))
                .collect();
            if segs[first_syn_window..]
                .iter()
                .any(|s| s.1 == Some(Host::B))
            {
                f.note("a SYN retransmitted after 1 s (TCP_TIMEOUT_INIT) was answered once the queue had room");
            }
            let syn = a_syns.first().map(|&k| &segs[k]);
            f.check(syn.is_some() && answers.is_empty(), || {
                Violation::new(
                    "listen(2); Linux tcp_conn_request (LISTENOVERFLOWS: SYN dropped)",
                    format!("the SYN of connect #{i} into a full accept queue was answered"),
                )
                .frames(segs.iter().map(|s| s.0))
                .field("reply to SYN")
                .expected(format!(
                    "nothing (tcp_abort_on_overflow={} only acts on a final ACK)",
                    c.abort_on_overflow as u8
                ))
                .actual(
                    answers
                        .first()
                        .map_or("no SYN on the wire".to_string(), |s| {
                            format!("[{}] from b", s.2.flags.tcpdump())
                        }),
                )
            });
        }
        // Accepts: new distinct sockets, peers in connect order, the listener still listening.
        let accepts: Vec<&&OpOutcome> = b_ops
            .iter()
            .filter(|o| matches!(o.op, Op::Accept { .. }))
            .collect();
        let mut seen_index = BTreeSet::new();
        let accepted_peer = |o: &OpOutcome| -> Option<u16> {
            let OpResult::Value { value } = o.result else {
                return None;
            };
            b_ops
                .iter()
                .find(|p| p.op.sock() == Some(value as usize))
                .and_then(|p| p.sock.as_ref().and_then(|s| s.peer_port))
        };
        let mut got_order = Vec::new();
        for (k, o) in accepts.iter().take(c.accepted()).enumerate() {
            match o.result {
                OpResult::Value { value } => {
                    f.check(value != 0 && seen_index.insert(value), || {
                        Violation::new(QUEUE, format!("accept #{k} did not return a new socket"))
                            .field("accept()")
                            .expected("a new socket index")
                            .actual(value)
                    });
                }
                ref other => f.push(
                    Violation::new(
                        QUEUE,
                        format!(
                            "accept #{k} found no queued connection although {} completed",
                            c.queued
                        ),
                    )
                    .field("accept()")
                    .expected("a new socket")
                    .actual(other.render()),
                ),
            }
            got_order.push(accepted_peer(o));
            let listening = o.sock.as_ref().and_then(|s| s.state());
            f.check(listening == Some(TcpState::Listen), || {
                Violation::new(
                    "RFC 9293 §3.9.1 (the listener stays open)",
                    format!("the listener left LISTEN after accept #{k}"),
                )
                .field("listener state")
                .expected("LISTEN")
                .actual(listening.map_or("?", |s| s.rfc_name()))
            });
        }
        let mut want_order: Vec<Option<u16>> = queued_ports.iter().map(|p| Some(*p)).collect();
        if c.race {
            let raced = &connects[c.queued..c.queued + 2];
            let admitted = check_race(&mut f, c, trace, raced, got_order.last().copied().flatten());
            want_order.push(admitted);
        }
        if got_order.len() == want_order.len() && !got_order.contains(&None) {
            f.check(got_order == want_order, || {
                Violation::new(
                    QUEUE,
                    "connections were not accepted in the order they completed (FIFO)",
                )
                .field("accepted peers' ports")
                .expected(render_ports(&want_order))
                .actual(render_ports(&got_order))
            });
            let leaked: Vec<u16> = got_order
                .iter()
                .flatten()
                .filter(|p| overflow_ports.contains(p))
                .copied()
                .collect();
            f.check(leaked.is_empty(), || {
                Violation::new(
                    QUEUE,
                    "an overflowing connection was accepted from the first queue",
                )
                .field("accepted peers' ports")
                .expected(format!("none of {overflow_ports:?}"))
                .actual(format!("{leaked:?}"))
            });
        }
        // The later connection.
        let later = connects[total];
        let later_accept = accepts.get(c.accepted());
        let later_ok = later.result == OpResult::Done
            && later_accept.is_some_and(|o| matches!(o.result, OpResult::Value { .. }));
        f.check(later_ok, || {
            Violation::new(
                "RFC 9293 §3.9.1 (the listener stays open)",
                "a connection after the queue was drained was not accepted",
            )
            .field("connect()/accept()")
            .expected("ok / a new socket")
            .actual(format!(
                "{} / {}",
                later.result.render(),
                later_accept.map_or("not run".to_string(), |o| o.result.render())
            ))
        });
        if let (Some(o), Some(port)) = (later_accept, port_of(later)) {
            let peer = accepted_peer(o);
            f.check(!later_ok || peer == Some(port), || {
                Violation::new(
                    QUEUE,
                    "the later accept returned a different connection than the later connect",
                )
                .field("accepted peer port")
                .expected(port)
                .actual(peer.map_or("?".to_string(), |p| p.to_string()))
            });
        }
        if c.race {
            f.note(format!(
                "final-ACK race, tcp_abort_on_overflow={}: {}",
                c.abort_on_overflow as u8,
                if c.abort_on_overflow {
                    "RST"
                } else {
                    "ACK dropped silently"
                }
            ));
        } else {
            f.note(format!(
                "queued {} of backlog+1 = {}, overflow {}",
                c.queued,
                c.backlog + 1,
                c.overflow
            ));
        }
        f.verdict()
    }
}

fn render_ports(ports: &[Option<u16>]) -> String {
    let v: Vec<String> = ports
        .iter()
        .map(|p| p.map_or("?".to_string(), |p| p.to_string()))
        .collect();
    v.join(", ")
}

// ---------------------------------------------------------------------------------------------------------------
// tcp.identity.four_tuple
// ---------------------------------------------------------------------------------------------------------------

/// A connection is its 4-tuple (lab Q16).
///
/// RFC 9293 §3.1: "the pair of sockets [address, port] uniquely identifies each connection"; several connections
/// from one host to one listening port differ by the client port, and each has its own sequence space (§3.4:
/// ISN chosen per connection). Cases: 2–8 connections from a to one port on b, 2–4 writes of 1–3000 bytes per
/// connection in a random interleaving, then b writes 1–2000 bytes back on each.
///
/// Checked: all of a's source ports are distinct and each accepted socket's peer is one of them; the SYNs'
/// ISNs are pairwise distinct, and so are the SYN-ACKs' (Linux derives them from a keyed hash of the 4-tuple
/// and a clock, RFC 6528; a coincidence has probability ~N²/2³³ and is a tolerance we do not expect to need);
/// every accepted socket reads exactly the bytes its own peer wrote (the executor checks each byte against the
/// stream of the writer's port, so a crossed byte is reported at its stream offset), and so does every socket
/// on a.
pub struct FourTuple;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FourTupleCase {
    pub port: u16,
    pub connections: usize,
    /// (connection, bytes) in write order.
    pub writes: Vec<(usize, usize)>,
    /// Bytes b writes back on each connection.
    pub replies: Vec<usize>,
}

impl FourTupleCase {
    fn total(&self, conn: usize) -> usize {
        self.writes
            .iter()
            .filter(|(c, _)| *c == conn)
            .map(|(_, n)| n)
            .sum()
    }
}

impl Property for FourTuple {
    type Case = FourTupleCase;
    type Observed = ProgramObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.identity.four_tuple",
            suite: "tcp-lifecycle",
            title: "several connections from one host to one listening port coexist, told apart by the client port, each with its own ISN; data never crosses between them",
            clauses: &["RFC 9293 §3.1", "RFC 9293 §3.4 (ISN per connection)"],
            questions: &["Q16"],
            needs: Needs {
                link: LinkKind::Veth,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> FourTupleCase {
        let connections = rng.gen_range(2..=8);
        let mut writes = Vec::new();
        for conn in 0..connections {
            for _ in 0..rng.gen_range(2..=4) {
                writes.push((conn, rng.gen_range(1..=3000)));
            }
        }
        writes.shuffle(rng);
        FourTupleCase {
            port: rng.gen_range(1024..=60999),
            connections,
            writes,
            replies: (0..connections).map(|_| rng.gen_range(1..=2000)).collect(),
        }
    }

    fn describe(&self, c: &FourTupleCase) -> String {
        let totals: Vec<String> = (0..c.connections).map(|i| c.total(i).to_string()).collect();
        format!(
            "{} connections to port {}, {} interleaved writes (bytes per connection: {}), replies {:?}",
            c.connections,
            c.port,
            c.writes.len(),
            totals.join("/"),
            c.replies
        )
    }

    fn execute(&self, c: &FourTupleCase, env: &CaseEnv) -> Result<ProgramObserved, HarnessError> {
        let tcp = || Op::Socket {
            kind: SockKind::Tcp,
        };
        let n = c.connections;
        let mut a = vec![Op::Sync];
        for i in 0..n {
            a.push(tcp());
            a.push(Op::Connect {
                sock: i,
                port: c.port,
            });
        }
        a.push(Op::Sync);
        let mut b = vec![
            tcp(),
            Op::Bind {
                sock: 0,
                port: c.port,
            },
            Op::Listen {
                sock: 0,
                backlog: 16,
            },
            Op::Sync,
            Op::Sync,
        ];
        for _ in 0..n {
            b.push(Op::Accept { sock: 0 });
        }
        b.push(Op::Sync);
        a.push(Op::Sync);
        for (conn, len) in &c.writes {
            a.push(Op::Write {
                sock: *conn,
                len: *len,
            });
        }
        a.push(Op::Sync);
        b.push(Op::Sync);
        // Accepted socket 1 + i is a's socket i when accept is FIFO (checked by tcp.accept.backlog); the check
        // below matches by port, so a different order reads short and is reported, never mixed up.
        for i in 0..n {
            b.push(Op::ReadExact {
                sock: 1 + i,
                len: c.total(i),
            });
            b.push(Op::Write {
                sock: 1 + i,
                len: c.replies[i],
            });
        }
        b.push(Op::Sync);
        a.push(Op::Sync);
        for i in 0..n {
            a.push(Op::ReadExact {
                sock: i,
                len: c.replies[i],
            });
        }
        let mut cfg = ExecConfig::new(env.seed, env.family);
        cfg.io_timeout_ms = 500;
        run(env, Program { a, b }, cfg)
    }

    fn check(&self, c: &FourTupleCase, observed: &ProgramObserved, trace: &Trace) -> Verdict {
        const ID: &str = "RFC 9293 §3.1";
        let mut f = Findings::default();
        let a_ops = ops_of(observed, Host::A);
        let b_ops = ops_of(observed, Host::B);
        // a's socket i → its source port.
        let mut a_port: BTreeMap<usize, u16> = BTreeMap::new();
        for o in &a_ops {
            if let (Op::Connect { sock, .. }, OpResult::Done) = (&o.op, &o.result) {
                if let Some(p) = o.sock.as_ref().and_then(|s| s.local_port) {
                    a_port.insert(*sock, p);
                }
            } else if let Op::Connect { sock, .. } = &o.op {
                f.push(
                    Violation::new(
                        "RFC 9293 §3.5",
                        format!(
                            "connect #{sock} to a port that already has a connection from a failed"
                        ),
                    )
                    .field("connect()")
                    .expected("ok")
                    .actual(o.result.render()),
                );
            }
        }
        let ports: BTreeSet<u16> = a_port.values().copied().collect();
        f.check(ports.len() == a_port.len(), || {
            Violation::new(
                ID,
                "two connections from a share a source port: their 4-tuples are equal",
            )
            .field("source ports")
            .expected(format!("{} distinct", a_port.len()))
            .actual(format!("{:?}", a_port.values().collect::<Vec<_>>()))
        });
        // ISNs per direction.
        let mut isn_a: Vec<(u16, usize, SeqNumber)> = Vec::new();
        let mut isn_b: Vec<(u16, usize, SeqNumber)> = Vec::new();
        for &p in &ports {
            let segs = connection(trace, p, c.port);
            let hs = handshake(&segs);
            if let Some((n, _, t)) = hs.syn {
                isn_a.push((p, n, t.seq));
            }
            if let Some((n, _, t)) = hs.syn_ack {
                isn_b.push((p, n, t.seq));
            }
            f.check(hs.syn.is_some() && hs.syn_ack.is_some(), || {
                Violation::new(
                    "RFC 9293 §3.5",
                    format!("the handshake of the connection from port {p} is not on the wire"),
                )
                .frames(segs.iter().map(|s| s.0))
                .field("flags")
                .expected("S, S.")
                .actual(format!(
                    "SYN {}, SYN-ACK {}",
                    presence(hs.syn.is_some()),
                    presence(hs.syn_ack.is_some())
                ))
            });
        }
        for (who, isns) in [("a's SYNs", &isn_a), ("b's SYN-ACKs", &isn_b)] {
            for (i, x) in isns.iter().enumerate() {
                if let Some(y) = isns[i + 1..].iter().find(|y| y.2 == x.2) {
                    f.push(
                        Violation::new(
                            "RFC 9293 §3.4 (ISN per connection); RFC 6528",
                            format!("{who} of two connections carry the same ISN"),
                        )
                        .frames([x.1, y.1])
                        .field("seq")
                        .expected("distinct initial sequence numbers")
                        .actual(format!("{} for ports {} and {}", x.2, x.0, y.0)),
                    );
                }
            }
        }
        // Accepted sockets: peers are a's ports, and each read exactly its own peer's bytes.
        let want_from: BTreeMap<u16, usize> =
            a_port.iter().map(|(i, p)| (*p, c.total(*i))).collect();
        let mut peers_seen = BTreeSet::new();
        for o in &b_ops {
            let Op::ReadExact { sock, len } = o.op else {
                continue;
            };
            let peer = o.sock.as_ref().and_then(|s| s.peer_port);
            let Some(peer) = peer else {
                f.push(
                    Violation::new(ID, format!("accepted socket s{sock} has no peer"))
                        .field("getpeername()")
                        .expected("one of a's source ports")
                        .actual("none"),
                );
                continue;
            };
            peers_seen.insert(peer);
            let Some(&want) = want_from.get(&peer) else {
                f.push(
                    Violation::new(
                        ID,
                        format!(
                            "accepted socket s{sock}'s peer port is not one of a's connections"
                        ),
                    )
                    .field("peer port")
                    .expected(format!("one of {ports:?}"))
                    .actual(peer),
                );
                continue;
            };
            read_matches(&mut f, Host::B, sock, peer, want, len, &o.result);
        }
        f.check(peers_seen.len() == ports.len(), || {
            Violation::new(
                ID,
                "the accepted sockets do not cover every connection exactly once",
            )
            .field("accepted peers' ports")
            .expected(format!("{ports:?}"))
            .actual(format!("{peers_seen:?}"))
        });
        for o in &a_ops {
            let Op::ReadExact { sock, len } = o.op else {
                continue;
            };
            let port = a_port.get(&sock).copied().unwrap_or(0);
            read_matches(&mut f, Host::A, sock, port, c.replies[sock], len, &o.result);
        }
        f.note(format!("{} connections", c.connections));
        f.verdict()
    }
}

/// A read that must return exactly `want` bytes of the right writer's stream.
fn read_matches(
    f: &mut Findings,
    host: Host,
    sock: usize,
    port: u16,
    want: usize,
    asked: usize,
    result: &OpResult,
) {
    const ID: &str = "RFC 9293 §3.1";
    match result {
        OpResult::Read {
            n, mismatch_at: None, ..
        } if *n as usize == want && asked == want => {}
        OpResult::Read {
            mismatch_at: Some(m),
            ..
        } => f.push(
            Violation::new(ID, format!("{}'s socket s{sock} read bytes that its peer did not write: data crossed connections", host.name()))
                .field("stream byte")
                .expected(format!("the stream of the connection with port {port}"))
                .actual(format!("a different byte at stream offset {m}")),
        ),
        other => f.push(
            Violation::new(ID, format!("{}'s socket s{sock} did not read exactly what its own peer wrote", host.name()))
                .field("bytes read")
                .expected(format!("{want} (written on the connection with port {port})"))
                .actual(format!("{} (asked for {asked})", other.render())),
        ),
    }
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

    #[test]
    fn four_tuple_totals_sum_writes_per_connection() {
        let c = FourTupleCase {
            port: 1,
            connections: 2,
            writes: vec![(0, 10), (1, 5), (0, 3)],
            replies: vec![1, 1],
        };
        assert_eq!(c.total(0), 13);
        assert_eq!(c.total(1), 5);
    }

    #[test]
    fn a_crossed_byte_is_named() {
        let mut f = Findings::default();
        let r = OpResult::Read {
            n: 10,
            returned: 10,
            eof: false,
            truncated: false,
            offset: 0,
            mismatch_at: Some(4),
        };
        read_matches(&mut f, Host::B, 1, 40000, 10, 10, &r);
        match f.verdict() {
            Verdict::Fail { violation } => {
                assert!(violation.summary.contains("data crossed"), "{violation}");
                assert_eq!(
                    violation.actual.as_deref(),
                    Some("a different byte at stream offset 4")
                );
            }
            v => panic!("{v:?}"),
        }
    }
}
