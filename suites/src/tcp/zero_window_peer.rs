use harness::exec::ExecConfig;
use harness::ops::{Op, SockKind};
use harness::property::{Cap, KernelNeed, Subject};
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::Family;
use harness::trace::Trace;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::zero_window_common::{PORT, PROBE_BASE, PROBE_EARLY, PROBE_LATE, PROBE_SLACK};

/// How late past its own deadline the scripted peer's read may return before its timing is no evidence
/// (poll wake-up on a busy machine is a few ms; 50 ms is a stall: seen 770 ms under stress-ng --cpu 4 with
/// 16 jobs, when b then sent a third probe because the peer reopened the window 1.5 s late).
const PEER_OVERRUN_MS: f64 = 50.0;

/// A peer that closes its window (lab Q28), played by netconform through the scripted-peer link.
///
/// RFC 9293 §3.8.6.1 from the sender's side, with a precise peer instead of a kernel: after b's first data
/// the peer acknowledges it with window 0; b then has more data to send (MUST-36: it must probe the zero
/// window, not give up, and not send beyond it). Checked with the script (every packet from b matched in
/// order, nothing unexpected): b sends no data while the window is 0, only probes — Linux's form: no payload,
/// SEQ = SND.UNA − 1 — the first ~200 ms after b's write into the zero window (the write arms the probe
/// timer: tcp_push → tcp_check_probe_timer) and the second ~400 ms after the first (200 ms · 2^i within
/// −10 %/+30 % +30 ms, Linux tcp_probe0_when); when the peer reopens the window, b sends its pending data at
/// once and nothing else. Cases pause 0–150 ms between the peer's zero-window ACK and b's second write, so
/// a timer started by the ACK instead of the write would show as an early first probe.
pub struct PeerZeroWindow;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerZeroWindowCase {
    pub a_isn: u32,
    pub a_port: u16,
    pub first: usize,
    pub second: usize,
    /// Pause between the peer's zero-window ACK and b's second write: the probe timer starts at the write,
    /// so the first probe must keep its distance to the write, not to the ACK.
    #[serde(default)]
    pub write_delay_ms: u32,
}

pub struct PeerZeroWindowObserved {
    pub run: harness::script::ScriptRun,
    pub script: harness::script::Script,
}

impl std::fmt::Debug for PeerZeroWindowObserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerZeroWindowObserved")
            .field("seen", &self.run.seen)
            .finish_non_exhaustive()
    }
}

fn peer_script(c: &PeerZeroWindowCase) -> harness::script::Script {
    use harness::script::{Expect, Inject, Script, Step};
    let una = 1 + c.first as u32;
    let probe = || Expect {
        flags: Some(".".into()),
        seq: Some(una - 1),
        len: Some(0),
        within_ms: 1200,
        ..Default::default()
    };
    Script {
        b_port: PORT,
        a_port: c.a_port,
        a_isn: c.a_isn,
        quiet_ms: 50,
        steps: vec![
            Step::B(Op::Socket {
                kind: SockKind::Tcp,
            }),
            Step::B(Op::Bind {
                sock: 0,
                port: PORT,
            }),
            Step::B(Op::Listen {
                sock: 0,
                backlog: 4,
            }),
            Step::Inject(Inject {
                flags: "S".into(),
                seq: 0,
                ack: 0,
                win: 65535,
                len: 0,
                mss: Some(1460),
            }),
            Step::Expect(Expect {
                flags: Some("S.".into()),
                ack: Some(1),
                len: Some(0),
                ..Default::default()
            }),
            Step::Inject(Inject {
                flags: ".".into(),
                seq: 1,
                ack: 1,
                win: 65535,
                len: 0,
                mss: None,
            }),
            Step::B(Op::Accept { sock: 0 }),
            Step::B(Op::Write {
                sock: 1,
                len: c.first,
            }),
            Step::Expect(Expect {
                flags: Some("P.".into()),
                seq: Some(1),
                len: Some(c.first),
                ..Default::default()
            }),
            // The window closes, then b has more to send.
            Step::Inject(Inject {
                flags: ".".into(),
                seq: 1,
                ack: una,
                win: 0,
                len: 0,
                mss: None,
            }),
            Step::SleepMs(c.write_delay_ms as u64),
            Step::B(Op::Write {
                sock: 1,
                len: c.second,
            }),
            Step::Expect(probe()),
            Step::Inject(Inject {
                flags: ".".into(),
                seq: 1,
                ack: una,
                win: 0,
                len: 0,
                mss: None,
            }),
            Step::Expect(probe()),
            Step::Inject(Inject {
                flags: ".".into(),
                seq: 1,
                ack: una,
                win: 65535,
                len: 0,
                mss: None,
            }),
            Step::Expect(Expect {
                flags: Some("P.".into()),
                seq: Some(una),
                len: Some(c.second),
                ..Default::default()
            }),
            Step::Inject(Inject {
                flags: ".".into(),
                seq: 1,
                ack: una + c.second as u32,
                win: 65535,
                len: 0,
                mss: None,
            }),
        ],
    }
}

impl Property for PeerZeroWindow {
    type Case = PeerZeroWindowCase;
    type Observed = PeerZeroWindowObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.zero_window.peer",
            suite: "tcp-data",
            title: "facing a scripted peer that closes its window, the kernel sends no data, probes at 200 ms · 2^i, and resumes when it reopens",
            clauses: &["RFC 9293 §3.8.6.1 (MUST-36)", "RFC 1122 §4.2.2.17"],
            questions: &["Q28"],
            subject: Subject::B,
            needs: Needs {
                links: &[LinkKind::Peer],
                kernel: &[KernelNeed::ScriptedPeer, KernelNeed::LinuxTimers],
                caps: &[Cap::Tcp],
                ethernet: false,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> PeerZeroWindowCase {
        PeerZeroWindowCase {
            a_isn: rng.gen(),
            a_port: rng.gen_range(1024..=u16::MAX),
            // Both below one segment on either family (MSS 1440 over IPv6), so each write is one segment.
            first: rng.gen_range(1..=1400),
            second: rng.gen_range(1..=1400),
            write_delay_ms: rng.gen_range(0..=150),
        }
    }

    fn lab_config(&self, _case: &PeerZeroWindowCase) -> harness::LabConfig {
        harness::LabConfig {
            link: harness::link::LinkSpec::Peer,
            ..Default::default()
        }
    }

    fn describe(&self, c: &PeerZeroWindowCase) -> String {
        format!(
            "b writes {} bytes, the peer closes its window, b writes {} more {} ms later",
            c.first, c.second, c.write_delay_ms
        )
    }

    fn execute(
        &self,
        case: &PeerZeroWindowCase,
        env: &CaseEnv,
    ) -> Result<PeerZeroWindowObserved, harness::HarnessError> {
        let peer = env.lab.peer().ok_or_else(|| {
            harness::HarnessError::Usage("tcp.zero_window.peer needs the peer link".into())
        })?;
        let script = peer_script(case);
        let run = harness::script::run_script(
            env.lab,
            peer,
            &script,
            ExecConfig::new(env.seed, env.family),
        )?;
        Ok(PeerZeroWindowObserved { run, script })
    }

    fn check(
        &self,
        _case: &PeerZeroWindowCase,
        observed: &PeerZeroWindowObserved,
        _trace: &Trace,
    ) -> Verdict {
        // The peer plays a: if its own thread did not run (a read came back well past its deadline), b's
        // segments were stamped and answered late and b legitimately probed again: the case is no evidence.
        if observed.run.max_overrun_ms > PEER_OVERRUN_MS {
            return Verdict::Invalid {
                reason: format!(
                    "the scripted peer's read returned {:.0} ms past its own deadline: the machine is overloaded, b's probes were read and answered late",
                    observed.run.max_overrun_ms
                ),
            };
        }
        let mut findings = Findings::default();
        for v in &observed.run.violations {
            findings.push(v.clone());
        }
        // Probe timing. The probe timer is armed inside b's second write(): the window being 0, tcp_push
        // cannot send and tcp_check_probe_timer arms ICSK_TIME_PROBE0 for tcp_probe0_base (PROBE_BASE). So the
        // first probe is timed from that write, not from b's previous segment (the peer's zero-window ACK
        // and the write's dispatch to b's thread lie between them: 317-368 ms were measured under load).
        // The write's call and return bound the arming instant: a probe is early only if it came too soon
        // after the call, late only if it came too long after the return. The second probe is timed from
        // the first (the timer is re-armed, doubled, when the first leaves); the peer reads each probe
        // after b sent it, by its own wake-up latency, so a late read of the first makes the second gap look
        // short: its early bound is therefore checked from the write's call, cumulatively (0.9 · 600 ms).
        let steps = &observed.script.steps;
        let probe_steps: Vec<usize> = steps
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, harness::script::Step::Expect(e) if e.len == Some(0) && e.within_ms == 1200))
            .map(|(k, _)| k)
            .collect();
        let at = |k: usize| {
            observed
                .run
                .seen
                .iter()
                .find(|(_, m)| *m == Some(k))
                .map(|(s, _)| s.wall_ns)
        };
        let Some(write) = observed
            .run
            .outcomes
            .iter()
            .filter(|o| matches!(o.op, Op::Write { .. }))
            .nth(1)
        else {
            return findings.verdict();
        };
        let ms = |ns: u64| format!("{:.1} ms", ns as f64 / 1e6);
        let window = |i: usize| {
            let base = PROBE_BASE * 2u32.pow(i as u32);
            (
                base.mul_f64(PROBE_EARLY),
                base.mul_f64(PROBE_LATE) + PROBE_SLACK,
            )
        };
        let probes: Vec<u64> = probe_steps.iter().map_while(|&k| at(k)).collect();
        if let Some(&first) = probes.first() {
            let (lo, hi) = window(0);
            let since_call = first.saturating_sub(write.wall_ns);
            let since_return = first.saturating_sub(write.done_wall_ns);
            findings.check(
                since_call >= lo.as_nanos() as u64 && since_return <= hi.as_nanos() as u64,
                || {
                    Violation::new(
                        "RFC 1122 §4.2.2.17; Linux tcp_probe0_when",
                        "zero-window probe 1 comes at the wrong time",
                    )
                    .field(
                        "time from b's write() into the zero window (call / return) to the probe",
                    )
                    .expected(format!(
                        "{}–{} ms (PROBE_BASE 200 ms, −10 %/+30 % +30 ms)",
                        lo.as_millis(),
                        hi.as_millis()
                    ))
                    .actual(format!(
                        "{} / {}",
                        ms(since_call),
                        ms(since_return)
                    ))
                },
            );
        }
        if let [first, second, ..] = probes[..] {
            let (lo0, _) = window(0);
            let (lo, hi) = window(1);
            let since_call = second.saturating_sub(write.wall_ns);
            let gap = second.saturating_sub(first);
            findings.check(
                since_call >= (lo0 + lo).as_nanos() as u64 && gap <= hi.as_nanos() as u64,
                || {
                    Violation::new(
                        "RFC 1122 §4.2.2.17; Linux tcp_probe0_when",
                        "zero-window probe 2 comes at the wrong time",
                    )
                    .field("gap since probe 1 (and time since b's write() call)")
                    .expected(format!(
                        "gap {}–{} ms (400 ms, −10 %/+30 % +30 ms), at least {} ms after the write",
                        lo.as_millis(),
                        hi.as_millis(),
                        (lo0 + lo).as_millis()
                    ))
                    .actual(format!(
                        "gap {} ({} after the write)",
                        ms(gap),
                        ms(since_call)
                    ))
                },
            );
        }
        findings.verdict()
    }
}
