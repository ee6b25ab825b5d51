use harness::property::{Cap, Subject};
use std::net::SocketAddr;
use std::time::Duration;

use harness::frame::Host;
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::{ConnectOutcome, Family, Socket};
use harness::trace::Trace;
use harness::wire::{SeqNumber, TcpFlags, TcpOption, TcpRepr};
use harness::{HarnessError, LabConfig, SysctlSetting};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How long a kernel connect() may wait for the RST. The RST comes back in ~13 µs on veth
/// (docs/kernel-facts.md); the first SYN retransmission would only come after TCP_TIMEOUT_INIT (1 s), so 500 ms
/// separates "refused" from "no answer" without ever seeing a retransmitted SYN.
const CONNECT_DEADLINE: Duration = Duration::from_millis(500);

/// RST for a segment to a port with no listener (lab Q18).
///
/// RFC 9293 §3.10.7.1 (state CLOSED): "all data in the incoming segment is discarded. An incoming segment
/// containing a RST is discarded. An incoming segment not containing a RST causes a RST to be sent in
/// response. [...] If the ACK bit is off, sequence number zero is used, `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`.
/// If the ACK bit is on, `<SEQ=SEG.ACK><CTL=RST>`." SEG.LEN counts the SYN and FIN flags (§3.4).
/// RFC 9293 §3.5.2: a RST is never sent in response to a RST. A kernel connect() answered by RST fails with
/// ECONNREFUSED (POSIX connect).
///
/// Cases: a closed port on `b`, IPv4 or IPv6, and one probe from `a`: either the kernel's own SYN from
/// connect() with SACK, timestamps and window scaling switched per case through `a`'s sysctls, or a crafted
/// segment from a raw socket in `a` with the ACK bit off (SYN, SYN with data, FIN, data without ACK, no flag
/// at all) or on (bare ACK, ACK with data, FIN-ACK, stray SYN-ACK), random seq/ack, options and payload.
///
/// Checked: exactly one RST from `b` for the probe's 4-tuple; its seq/ack/flags as quoted above, ports and
/// addresses swapped; nothing from `a` answers that RST; connect() fails with ECONNREFUSED.
pub struct RstOnClosedPort;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RstCase {
    /// The closed port on b.
    pub port: u16,
    pub probe: RstProbe,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RstProbe {
    /// connect() from a; the SYN's options follow a's sysctls.
    KernelSyn {
        sack: bool,
        timestamps: bool,
        window_scaling: bool,
    },
    /// A crafted segment from a raw socket in a.
    Crafted {
        src_port: u16,
        flags: CraftedFlags,
        seq: u32,
        ack: u32,
        payload_len: u16,
        mss: Option<u16>,
        sack_permitted: bool,
        timestamp: Option<(u32, u32)>,
        window_scale: Option<u8>,
        window: u16,
    },
}

/// Flag combinations of crafted probes (none carries RST: a RST is never answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CraftedFlags {
    Syn,
    Fin,
    PshNoAck,
    NoFlags,
    Ack,
    PshAck,
    FinAck,
    SynAck,
}

impl CraftedFlags {
    const ALL: [CraftedFlags; 8] = [
        CraftedFlags::Syn,
        CraftedFlags::Fin,
        CraftedFlags::PshNoAck,
        CraftedFlags::NoFlags,
        CraftedFlags::Ack,
        CraftedFlags::PshAck,
        CraftedFlags::FinAck,
        CraftedFlags::SynAck,
    ];

    fn tcp_flags(self) -> TcpFlags {
        let mut f = TcpFlags::default();
        match self {
            CraftedFlags::Syn => f.syn = true,
            CraftedFlags::Fin => f.fin = true,
            CraftedFlags::PshNoAck => f.psh = true,
            CraftedFlags::NoFlags => {}
            CraftedFlags::Ack => f.ack = true,
            CraftedFlags::PshAck => {
                f.psh = true;
                f.ack = true
            }
            CraftedFlags::FinAck => {
                f.fin = true;
                f.ack = true
            }
            CraftedFlags::SynAck => {
                f.syn = true;
                f.ack = true
            }
        }
        f
    }
}

/// What a connect() probe returned.
#[derive(Debug, Clone)]
pub struct RstObserved {
    pub connect: Option<ConnectOutcome>,
    /// The local port of the probe (the kernel's ephemeral port, or the crafted one).
    pub src_port: u16,
}

fn flags_text(f: &TcpFlags) -> String {
    f.tcpdump()
}

impl Property for RstOnClosedPort {
    type Case = RstCase;
    type Observed = RstObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.rst.closed_port",
            suite: "tcp-lifecycle",
            title: "a segment to a port with no listener is answered by one RST with the RFC's seq/ack; a RST is never answered",
            clauses: &["RFC 9293 §3.10.7.1", "RFC 9293 §3.5.2", "RFC 9293 §3.4 (SEG.LEN)"],
            questions: &["Q18"],
            subject: Subject::B,
            needs: Needs {
                links: &[LinkKind::Veth],
                kernel: &[],
                caps: &[Cap::Tcp],
                ethernet: false,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> RstCase {
        let port = rng.gen_range(1..=u16::MAX);
        let probe = if rng.gen_bool(0.4) {
            RstProbe::KernelSyn {
                sack: rng.gen(),
                timestamps: rng.gen(),
                window_scaling: rng.gen(),
            }
        } else {
            let flags = *CraftedFlags::ALL.choose(rng).expect("non-empty");
            let syn = matches!(flags, CraftedFlags::Syn | CraftedFlags::SynAck);
            RstProbe::Crafted {
                src_port: rng.gen_range(1024..=u16::MAX),
                flags,
                // Near-wrap values are generated on purpose: SEG.SEQ+SEG.LEN must wrap.
                seq: if rng.gen_bool(0.2) {
                    u32::MAX - rng.gen_range(0..2000)
                } else {
                    rng.gen()
                },
                ack: rng.gen(),
                payload_len: if rng.gen_bool(0.5) {
                    0
                } else {
                    rng.gen_range(1..=1200)
                },
                mss: (syn && rng.gen()).then(|| rng.gen_range(536..=1460)),
                sack_permitted: syn && rng.gen(),
                timestamp: rng.gen_bool(0.3).then(|| (rng.gen(), rng.gen())),
                window_scale: (syn && rng.gen()).then(|| rng.gen_range(0..=14)),
                window: rng.gen(),
            }
        };
        RstCase { port, probe }
    }

    fn lab_config(&self, case: &RstCase) -> LabConfig {
        let mut cfg = LabConfig::default();
        if let RstProbe::KernelSyn {
            sack,
            timestamps,
            window_scaling,
        } = case.probe
        {
            for (key, on) in [
                ("net.ipv4.tcp_sack", sack),
                ("net.ipv4.tcp_timestamps", timestamps),
                ("net.ipv4.tcp_window_scaling", window_scaling),
            ] {
                cfg.sysctls.push(SysctlSetting {
                    host: Host::A,
                    key: key.into(),
                    value: if on { "1" } else { "0" }.into(),
                });
            }
        }
        cfg
    }

    fn describe(&self, case: &RstCase) -> String {
        match &case.probe {
            RstProbe::KernelSyn {
                sack,
                timestamps,
                window_scaling,
            } => format!(
                "connect() to closed port {} (a: sack={} timestamps={} wscale={})",
                case.port, *sack as u8, *timestamps as u8, *window_scaling as u8
            ),
            RstProbe::Crafted {
                flags, payload_len, ..
            } => format!(
                "crafted [{}] with {} payload bytes to closed port {}",
                flags_text(&flags.tcp_flags()),
                payload_len,
                case.port
            ),
        }
    }

    fn execute(&self, case: &RstCase, env: &CaseEnv) -> Result<RstObserved, HarnessError> {
        let family = env.family;
        let a = env.lab.addr(Host::A, family);
        let b = SocketAddr::new(env.lab.addr(Host::B, family), case.port);
        let probe = case.probe.clone();
        env.lab
            .host(Host::A)
            .run(move || -> Result<RstObserved, HarnessError> {
                match probe {
                    RstProbe::KernelSyn { .. } => {
                        let s = Socket::tcp(family)?;
                        s.bind(SocketAddr::new(a, 0))
                            .map_err(|e| harness::sock::socket_step("bind", e))?;
                        let src_port = s
                            .local_addr()
                            .map_err(|e| harness::sock::socket_step("getsockname", e))?
                            .port();
                        let outcome = s.connect_timeout(b, CONNECT_DEADLINE)?;
                        Ok(RstObserved {
                            connect: Some(outcome),
                            src_port,
                        })
                    }
                    RstProbe::Crafted {
                        src_port,
                        flags,
                        seq,
                        ack,
                        payload_len,
                        mss,
                        sack_permitted,
                        timestamp,
                        window_scale,
                        window,
                    } => {
                        let mut options = Vec::new();
                        if let Some(m) = mss {
                            options.push(TcpOption::MaxSegmentSize(m));
                        }
                        if sack_permitted {
                            options.push(TcpOption::SackPermitted);
                        }
                        if let Some((tsval, tsecr)) = timestamp {
                            options.push(TcpOption::Timestamp { tsval, tsecr });
                        }
                        if let Some(ws) = window_scale {
                            options.push(TcpOption::NoOperation);
                            options.push(TcpOption::WindowScale(ws));
                        }
                        let payload: Vec<u8> = (0..payload_len).map(|i| (i % 251) as u8).collect();
                        let repr = TcpRepr {
                            src_port,
                            dst_port: b.port(),
                            seq: SeqNumber(seq),
                            ack: SeqNumber(if flags.tcp_flags().ack { ack } else { 0 }),
                            flags: flags.tcp_flags(),
                            window,
                            urgent: 0,
                            options,
                            payload_len: payload.len(),
                        };
                        let segment = repr.emit(a, b.ip(), &payload);
                        let raw = Socket::raw_tcp(family)?;
                        raw.bind(SocketAddr::new(a, 0))
                            .map_err(|e| harness::sock::socket_step("bind raw socket", e))?;
                        raw.send_to(&segment, SocketAddr::new(b.ip(), 0), 0)?
                            .map_err(|e| harness::sock::socket_step("sendto on raw socket", e))?;
                        Ok(RstObserved {
                            connect: None,
                            src_port,
                        })
                    }
                }
            })?
    }

    fn check(&self, case: &RstCase, observed: &RstObserved, trace: &Trace) -> Verdict {
        const CLAUSE: &str = "RFC 9293 §3.10.7.1";
        let tcp_frames: Vec<(usize, Option<Host>, &TcpRepr)> = trace
            .frames
            .iter()
            .filter_map(|f| f.tcp().map(|t| (f.number, f.from, t)))
            .filter(|(_, _, t)| {
                (t.src_port == observed.src_port && t.dst_port == case.port)
                    || (t.src_port == case.port && t.dst_port == observed.src_port)
            })
            .collect();
        let Some(&(probe_no, _, probe)) = tcp_frames
            .iter()
            .find(|(_, from, t)| *from == Some(Host::A) && t.dst_port == case.port)
        else {
            return Verdict::Invalid {
                reason: "the probe segment from a never appeared on the wire".into(),
            };
        };
        let mut findings = Findings::default();
        let rsts: Vec<&(usize, Option<Host>, &TcpRepr)> = tcp_frames
            .iter()
            .filter(|(n, from, t)| *n > probe_no && *from == Some(Host::B) && t.flags.rst)
            .collect();
        let seg_len = probe.payload_len as u32 + probe.flags.syn as u32 + probe.flags.fin as u32;
        let expected_line = if probe.flags.ack {
            format!("R with seq {} (SEG.ACK), no ACK bit", probe.ack.0)
        } else {
            format!(
                "R. with seq 0, ack {} (SEG.SEQ+SEG.LEN = {}+{})",
                (probe.seq + seg_len).0,
                probe.seq.0,
                seg_len
            )
        };
        match rsts.as_slice() {
            [] => findings.push(
                Violation::new(CLAUSE, "no RST answered a segment to a closed port")
                    .frame(probe_no)
                    .field("reply")
                    .expected(expected_line)
                    .actual("no RST from B before the capture ended"),
            ),
            [&(rst_no, _, rst)] => {
                if probe.flags.ack {
                    findings.check(rst.seq == probe.ack, || {
                        Violation::new(CLAUSE, "RST for a segment with ACK must carry SEQ=SEG.ACK")
                            .frames([probe_no, rst_no])
                            .field("seq")
                            .expected(probe.ack.0)
                            .actual(rst.seq.0)
                    });
                    findings.check(!rst.flags.ack, || {
                        Violation::new(
                            CLAUSE,
                            "RST for a segment with ACK must be <CTL=RST> without the ACK bit",
                        )
                        .frames([probe_no, rst_no])
                        .field("flags")
                        .expected("R")
                        .actual(flags_text(&rst.flags))
                    });
                } else {
                    findings.check(rst.seq == SeqNumber(0), || {
                        Violation::new(CLAUSE, "RST for a segment without ACK must carry SEQ=0")
                            .frames([probe_no, rst_no])
                            .field("seq")
                            .expected(0)
                            .actual(rst.seq.0)
                    });
                    findings.check(rst.flags.ack && rst.ack == probe.seq + seg_len, || {
                        Violation::new(CLAUSE, "RST for a segment without ACK must be <ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>")
                            .frames([probe_no, rst_no])
                            .field("ack")
                            .expected(format!("ack {} with the ACK bit", (probe.seq + seg_len).0))
                            .actual(format!("ack {} ACK bit {}", rst.ack.0, if rst.flags.ack { "on" } else { "off" }))
                    });
                }
                findings.check(!rst.flags.syn && !rst.flags.fin, || {
                    Violation::new(CLAUSE, "the RST carries other control flags")
                        .frame(rst_no)
                        .field("flags")
                        .expected(if probe.flags.ack { "R" } else { "R." })
                        .actual(flags_text(&rst.flags))
                });
                let answered: Vec<usize> = tcp_frames
                    .iter()
                    .filter(|(n, from, _)| *n > rst_no && *from == Some(Host::A))
                    .map(|(n, _, _)| *n)
                    .collect();
                findings.check(answered.is_empty(), || {
                    Violation::new("RFC 9293 §3.5.2", "a RST was answered")
                        .frame(rst_no)
                        .frames(answered.iter().copied())
                        .field("reply to RST")
                        .expected("nothing")
                        .actual(format!(
                            "{} segment(s) from A after the RST",
                            answered.len()
                        ))
                });
            }
            many => findings.push(
                Violation::new(CLAUSE, "more than one RST answered a single segment")
                    .frame(probe_no)
                    .frames(many.iter().map(|(n, _, _)| *n))
                    .field("reply")
                    .expected("exactly one RST")
                    .actual(format!("{} RSTs", many.len())),
            ),
        }
        if let Some(outcome) = observed.connect {
            findings.check(
                outcome == ConnectOutcome::Done(Err(harness::sock::Errno::ECONNREFUSED)),
                || {
                    Violation::new(
                        "RFC 9293 §3.10.7.3 (RST in SYN-SENT: connection refused); POSIX connect",
                        "connect() to a closed port did not fail with ECONNREFUSED",
                    )
                    .frame(probe_no)
                    .field("connect()")
                    .expected("ECONNREFUSED")
                    .actual(outcome)
                },
            );
        }
        findings.verdict()
    }
}
