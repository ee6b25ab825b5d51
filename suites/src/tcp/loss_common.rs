//! Helpers shared by the loss and reordering properties (suite `tcp-data`): a segment dropped by the relay is
//! retransmitted, the receiver keeps what arrived beyond the hole and says so with SACK, and the cumulative ACK
//! jumps when the hole fills.

use std::time::Duration;

use harness::frame::Host;
use harness::link::{Impairment, LinkEventKind, LinkSpec, RelaySpec, Rule};
use harness::ops::Op;
use harness::property::{CaseEnv, CaseRng, Findings, Violation};
use harness::sock::Family;
use harness::trace::Trace;
use harness::{HarnessError, LabConfig, SysctlSetting};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::conn::ProgramObserved;
use crate::conn::{connected, outcomes_of, read_result, Seg};

/// Linux TCP_RTO_MIN (200 ms): a retransmission later than this after the drop may come from the RTO,
/// which RFC 2018 §8 / RFC 6675 §5.1 let resend SACKed data; an earlier one is fast recovery, RACK or a
/// tail-loss probe.
pub(super) const RTO_MIN: Duration = Duration::from_millis(200);

/// A transfer through a relay that drops some data segments of the writer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LossCase {
    /// Which host writes the data (the other reads it).
    pub writer: Host,
    /// Bytes written in one write().
    pub bytes: usize,
    /// Data segments of the writer the relay drops (1-based, among the first 10: the initial window, so
    /// every drop hits an original transmission).
    pub drop: Vec<u32>,
    /// `net.ipv4.tcp_sack` on a and on b.
    pub sack_a: bool,
    pub sack_b: bool,
}

impl LossCase {
    pub(super) fn sack(&self) -> bool {
        self.sack_a && self.sack_b
    }
}

pub(super) fn full_segment(family: Family) -> usize {
    match family {
        Family::Ipv4 => 1448,
        Family::Ipv6 => 1428,
    }
}

pub(super) fn generate_loss(rng: &mut CaseRng, family: Family, min_after: u32) -> LossCase {
    let segments = rng.gen_range(3 + min_after..=40);
    let bytes =
        segments as usize * full_segment(family) - rng.gen_range(0..full_segment(family) / 2);
    let last = segments.min(10) - min_after;
    let mut drop = vec![rng.gen_range(1..=last)];
    if rng.gen_bool(0.3) {
        let second = rng.gen_range(1..=last);
        if !drop.contains(&second) {
            drop.push(second);
        }
    }
    drop.sort_unstable();
    LossCase {
        writer: if rng.gen_bool(0.75) { Host::A } else { Host::B },
        bytes,
        drop,
        sack_a: rng.gen_bool(0.7),
        sack_b: rng.gen_bool(0.7),
    }
}

pub(super) fn loss_lab(case: &LossCase) -> LabConfig {
    let lossy = Impairment {
        rules: case.drop.iter().map(|&n| Rule::DropNthData { n }).collect(),
        ..Impairment::default()
    };
    let (a_to_b, b_to_a) = match case.writer {
        Host::A => (lossy, Impairment::default()),
        Host::B => (Impairment::default(), lossy),
    };
    let mut cfg = LabConfig {
        link: LinkSpec::Relay(RelaySpec {
            a_to_b,
            b_to_a,
            seed: 1,
        }),
        ..LabConfig::default()
    };
    for (host, on) in [(Host::A, case.sack_a), (Host::B, case.sack_b)] {
        cfg.sysctls.push(SysctlSetting {
            host,
            key: "net.ipv4.tcp_sack".into(),
            value: if on { "1" } else { "0" }.into(),
        });
    }
    cfg
}

pub(super) fn describe_loss(c: &LossCase) -> String {
    format!(
        "{} writes {} bytes, the relay drops its data segment(s) {:?}, SACK a={} b={}",
        c.writer.name(),
        c.bytes,
        c.drop,
        c.sack_a as u8,
        c.sack_b as u8
    )
}

pub(super) fn execute_loss(
    case: &LossCase,
    env: &CaseEnv,
) -> Result<ProgramObserved, HarnessError> {
    let mut p = connected(&[], &[]);
    let (w, r, wsock, rsock) = match case.writer {
        Host::A => (&mut p.a, &mut p.b, 0, 1),
        Host::B => (&mut p.b, &mut p.a, 1, 0),
    };
    w.push(Op::Write {
        sock: wsock,
        len: case.bytes,
    });
    r.push(Op::ReadExact {
        sock: rsock,
        len: case.bytes,
    });
    // Recovery may need the RTO (200 ms, doubled once if a retransmission is lost too).
    ProgramObserved::run(env, &p, 3000)
}

/// The writer's data segments the relay dropped, in capture order.
pub(super) fn dropped(trace: &Trace, segs: &[Seg], writer: Host) -> Vec<Seg> {
    segs.iter()
        .filter(|s| {
            s.from == writer
                && s.len > 0
                && trace
                    .link_events
                    .iter()
                    .any(|e| e.frame == s.index && e.kind == LinkEventKind::Dropped)
        })
        .cloned()
        .collect()
}

pub(super) fn was_dropped(trace: &Trace, s: &Seg) -> bool {
    trace
        .link_events
        .iter()
        .any(|e| e.frame == s.index && e.kind == LinkEventKind::Dropped)
}

/// The reader got every byte, intact.
pub(super) fn check_delivery(case: &LossCase, observed: &ProgramObserved, findings: &mut Findings) {
    let reader = case.writer.other();
    for r in outcomes_of(&observed.outcomes, reader, |op| {
        matches!(op, Op::ReadExact { .. })
    }) {
        findings.check(
            read_result(&r.result).is_some_and(|(n, _, m)| n == case.bytes as u64 && m.is_none()),
            || {
                Violation::new(
                    "RFC 9293 §3.8.1 (retransmission delivers the stream); §3.4",
                    "the reader did not get every byte intact",
                )
                .field(format!("{} read_exact()", reader.name()))
                .expected(format!("{} bytes", case.bytes))
                .actual(r.result.render())
            },
        );
    }
}
