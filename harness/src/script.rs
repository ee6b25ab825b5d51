//! Scripts for the scripted peer ([`crate::link::peer`]): only host `b` is a kernel; netconform plays `a` by writing crafted IP packets into a
//! TUN device in b's namespace and reading what b sends back, packetdrill-style — for a misbehaving or
//! precise peer a kernel will not play (one that advertises a zero window on purpose, sends out of window …).
//!
//! A [`Script`] (JSON) is a list of steps:
//! - `{"b": <op>}` runs one socket op on b (the [`Op`] language; b's sockets keep their indices);
//! - `{"inject": {"flags": "S", "seq": 0, "ack": 0, "win": 65535, "len": 0, "mss": 1460}}` sends a segment
//!   from a; `seq` is relative to a's ISN, `ack` to b's ISN (learned from b's SYN or SYN-ACK);
//! - `{"expect": {"flags": "S.", "seq": 0, "ack": 1, "win": null, "len": 0, "options": "mss 1460", "within_ms": 100}}`
//!   waits for b's next packet and matches every field given (`null` or absent is a wildcard); `seq` is
//!   relative to b's ISN, `ack` to a's, `options` is the canonical trace's option list;
//! - `{"sleep_ms": 50}`.
//!
//! Unlike packetdrill, the checker also reports packets b sent that no `expect` asked for: every packet
//! from b must be matched in order (`"skip_other": true` on an expect lets it pass over others, which are
//! still reported as notes), and after the last step b must stay quiet for the script's `quiet_ms`.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::HarnessError;
use crate::exec::{session_op, ExecConfig, OpOutcome};
use crate::frame::Host;
use crate::lab::Lab;
use crate::link::Peer;
use crate::ops::Op;
use crate::property::Violation;
use crate::wire::{checksum, parse_ip, SeqNumber, TcpFlags, TcpOption, TcpRepr};

/// A segment the peer sends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inject {
    pub flags: String,
    #[serde(default)]
    pub seq: u32,
    #[serde(default)]
    pub ack: u32,
    #[serde(default = "default_win")]
    pub win: u16,
    #[serde(default)]
    pub len: usize,
    #[serde(default)]
    pub mss: Option<u16>,
}

fn default_win() -> u16 {
    65535
}

/// A segment the peer expects from b; `None` fields match anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expect {
    #[serde(default)]
    pub flags: Option<String>,
    #[serde(default)]
    pub seq: Option<u32>,
    #[serde(default)]
    pub ack: Option<u32>,
    #[serde(default)]
    pub win: Option<u16>,
    #[serde(default)]
    pub len: Option<usize>,
    /// TCP options as the canonical trace writes them, e.g. `mss 1460,sackOK,TS,nop,wscale 7` (`""`: none).
    #[serde(default)]
    pub options: Option<String>,
    #[serde(default = "default_within")]
    pub within_ms: u64,
    #[serde(default)]
    pub skip_other: bool,
}

fn default_within() -> u64 {
    100
}

impl Default for Expect {
    fn default() -> Self {
        Expect {
            flags: None,
            seq: None,
            ack: None,
            win: None,
            len: None,
            options: None,
            within_ms: default_within(),
            skip_other: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    B(Op),
    Inject(Inject),
    Expect(Expect),
    SleepMs(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Script {
    /// b's listening/connecting port and a's port.
    pub b_port: u16,
    pub a_port: u16,
    /// a's initial sequence number.
    pub a_isn: u32,
    pub steps: Vec<Step>,
    /// After the last step, b must send nothing for this long.
    #[serde(default = "default_quiet")]
    pub quiet_ms: u64,
}

fn default_quiet() -> u64 {
    50
}

/// A segment b sent, as the script saw it (relative numbers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    pub at_ms: f64,
    /// CLOCK_REALTIME when the peer read the packet from the TUN device (the clock of the executor's
    /// `OpOutcome::wall_ns`): never before b sent it, later by the peer thread's wake-up latency.
    #[serde(default)]
    pub wall_ns: u64,
    pub flags: String,
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    pub len: usize,
    pub options: String,
}

/// TCP options in the canonical trace's words (SACK blocks and timestamp values left out: they are volatile).
fn options_text(options: &[TcpOption]) -> String {
    options
        .iter()
        .map(|o| match o {
            TcpOption::EndOfList => "eol".to_string(),
            TcpOption::NoOperation => "nop".to_string(),
            TcpOption::MaxSegmentSize(m) => format!("mss {m}"),
            TcpOption::WindowScale(w) => format!("wscale {w}"),
            TcpOption::SackPermitted => "sackOK".to_string(),
            TcpOption::Timestamp { .. } => "TS".to_string(),
            TcpOption::SackRange(b) => format!("sack {}", b.len()),
            TcpOption::Unknown { kind, data } => format!("opt-{kind} len {}", data.len() + 2),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// What a script run produced.
#[derive(Debug, Clone, Default)]
pub struct ScriptRun {
    pub outcomes: Vec<OpOutcome>,
    /// Every segment b sent, in order, with the index of the expect that matched it (None: unexpected).
    pub seen: Vec<(Seen, Option<usize>)>,
    pub violations: Vec<Violation>,
    /// How far past an expect's own deadline the peer got a packet back (ms, the largest): the peer
    /// thread was not running (an overloaded machine), so b's later segments were read, stamped and
    /// answered late, and timing judged from them is no evidence.
    pub max_overrun_ms: f64,
}

fn flags(s: &str) -> TcpFlags {
    TcpFlags {
        syn: s.contains('S'),
        fin: s.contains('F'),
        rst: s.contains('R'),
        psh: s.contains('P'),
        ack: s.contains('.'),
        ..Default::default()
    }
}

/// An IPv4 or IPv6 packet around a transport payload.
fn ip_packet(src: IpAddr, dst: IpAddr, protocol: u8, payload: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = 20 + payload.len();
            let mut h = vec![
                0x45,
                0,
                (total >> 8) as u8,
                total as u8,
                0,
                0,
                0x40,
                0,
                64,
                protocol,
                0,
                0,
            ];
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let c = checksum::checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            h.extend_from_slice(payload);
            h
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            h.extend_from_slice(&[protocol, 64]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            h.extend_from_slice(payload);
            h
        }
        _ => Vec::new(),
    }
}

/// Runs a script against b. Findings go to `ScriptRun::violations`; harness failures are errors.
pub fn run_script(
    lab: &Lab,
    peer: &Peer,
    script: &Script,
    cfg: ExecConfig,
) -> Result<ScriptRun, HarnessError> {
    let a = lab.addr(Host::A, cfg.family);
    let b = lab.addr(Host::B, cfg.family);
    let start = Instant::now();
    let mut run = ScriptRun::default();
    let mut b_isn: Option<u32> = None;
    let mut op_index = 0;
    // Turns a packet from b into a Seen (None: not TCP of this connection).
    let seen_of = |pkt: &[u8], b_isn: &mut Option<u32>| -> Option<Seen> {
        let net = parse_ip(pkt).ok()?;
        let t = match &net {
            crate::wire::Network::Ipv4 {
                transport: crate::wire::Transport::Tcp { repr, .. },
                ..
            }
            | crate::wire::Network::Ipv6 {
                transport: crate::wire::Transport::Tcp { repr, .. },
                ..
            } => repr.clone(),
            _ => return None,
        };
        if t.flags.syn {
            *b_isn = Some(t.seq.0);
        }
        let base = b_isn.unwrap_or(t.seq.0);
        Some(Seen {
            at_ms: start.elapsed().as_secs_f64() * 1e3,
            wall_ns: crate::record::realtime_ns(),
            flags: t.flags.tcpdump(),
            seq: t.seq.0.wrapping_sub(base),
            ack: t.ack.0.wrapping_sub(script.a_isn),
            win: t.window,
            len: t.payload_len,
            options: options_text(&t.options),
        })
    };
    for (k, step) in script.steps.iter().enumerate() {
        match step {
            Step::B(op) => {
                run.outcomes
                    .push(session_op(lab, Host::B, op_index, op.clone(), cfg)?);
                op_index += 1;
            }
            Step::SleepMs(ms) => std::thread::sleep(Duration::from_millis(*ms)),
            Step::Inject(i) => {
                let repr = TcpRepr {
                    src_port: script.a_port,
                    dst_port: script.b_port,
                    seq: SeqNumber(script.a_isn.wrapping_add(i.seq)),
                    ack: SeqNumber(if i.flags.contains('.') {
                        b_isn.unwrap_or(0).wrapping_add(i.ack)
                    } else {
                        0
                    }),
                    flags: flags(&i.flags),
                    window: i.win,
                    urgent: 0,
                    options: i
                        .mss
                        .map(|m| vec![TcpOption::MaxSegmentSize(m)])
                        .unwrap_or_default(),
                    payload_len: i.len,
                };
                let seg = repr.emit(a, b, &vec![0x61; i.len]);
                peer.write(ip_packet(a, b, 6, &seg))?;
            }
            Step::Expect(e) => {
                let deadline = Instant::now() + Duration::from_millis(e.within_ms);
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let got = if left.is_zero() {
                        None
                    } else {
                        peer.read(left)
                    };
                    let overrun = Instant::now().saturating_duration_since(deadline);
                    run.max_overrun_ms = run.max_overrun_ms.max(overrun.as_secs_f64() * 1e3);
                    let Some(pkt) = got else {
                        run.violations.push(
                            Violation::new(
                                "scripted peer",
                                format!(
                                    "step {}: b did not send the expected segment in time",
                                    k + 1
                                ),
                            )
                            .field("segment from b")
                            .expected(format!("{e:?}"))
                            .actual(format!("nothing within {} ms", e.within_ms)),
                        );
                        break;
                    };
                    let Some(s) = seen_of(&pkt, &mut b_isn) else {
                        continue;
                    };
                    let ok = e.flags.as_ref().is_none_or(|f| *f == s.flags)
                        && e.seq.is_none_or(|v| v == s.seq)
                        && e.ack.is_none_or(|v| v == s.ack)
                        && e.win.is_none_or(|v| v == s.win)
                        && e.len.is_none_or(|v| v == s.len)
                        && e.options.as_ref().is_none_or(|o| *o == s.options);
                    if ok {
                        run.seen.push((s, Some(k)));
                        break;
                    }
                    run.seen.push((s.clone(), None));
                    if !e.skip_other {
                        run.violations.push(
                            Violation::new(
                                "scripted peer",
                                format!(
                                    "step {}: b sent a segment the script did not expect",
                                    k + 1
                                ),
                            )
                            .field("segment from b")
                            .expected(format!("{e:?}"))
                            .actual(format!("{s:?}")),
                        );
                        break;
                    }
                }
            }
        }
    }
    // Quiet period: anything b sends now is unexpected.
    let deadline = Instant::now() + Duration::from_millis(script.quiet_ms);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let Some(pkt) = peer.read(left) else { break };
        if let Some(s) = seen_of(&pkt, &mut b_isn) {
            run.violations.push(
                Violation::new("scripted peer", "b sent a segment after the script ended")
                    .field("segment from b")
                    .expected("nothing")
                    .actual(format!("{s:?}")),
            );
            run.seen.push((s, None));
        }
    }
    Ok(run)
}
