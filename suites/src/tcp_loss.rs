//! Loss and reordering (suite `tcp-data`): a segment dropped by the relay is retransmitted, the receiver
//! keeps what arrived beyond the hole and says so with SACK, and the cumulative ACK jumps when the hole fills.

use std::time::Duration;

use harness::frame::Host;
use harness::link::{Impairment, LinkEventKind, LinkSpec, RelaySpec, Rule};
use harness::ops::Op;
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::Family;
use harness::trace::Trace;
use harness::wire::TcpOption;
use harness::{HarnessError, LabConfig, SysctlSetting};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::conn::ProgramObserved;
use crate::conn::{connected, outcomes_of, read_result, segments, Seg};

/// Linux TCP_RTO_MIN (200 ms): a retransmission later than this after the drop may come from the RTO,
/// which RFC 2018 §8 / RFC 6675 §5.1 let resend SACKed data; an earlier one is fast recovery, RACK or a
/// tail-loss probe.
const RTO_MIN: Duration = Duration::from_millis(200);

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
    fn sack(&self) -> bool {
        self.sack_a && self.sack_b
    }
}

fn full_segment(family: Family) -> usize {
    match family {
        Family::Ipv4 => 1448,
        Family::Ipv6 => 1428,
    }
}

fn generate_loss(rng: &mut CaseRng, family: Family, min_after: u32) -> LossCase {
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

fn loss_lab(case: &LossCase) -> LabConfig {
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

fn describe_loss(c: &LossCase) -> String {
    format!(
        "{} writes {} bytes, the relay drops its data segment(s) {:?}, SACK a={} b={}",
        c.writer.name(),
        c.bytes,
        c.drop,
        c.sack_a as u8,
        c.sack_b as u8
    )
}

fn execute_loss(case: &LossCase, env: &CaseEnv) -> Result<ProgramObserved, HarnessError> {
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
    let mut cfg = harness::exec::ExecConfig::new(env.seed, env.family);
    cfg.io_timeout_ms = 3000;
    let (outcomes, sockets) = harness::exec::run_program(env.lab, &p, cfg)?;
    Ok(ProgramObserved { outcomes, sockets })
}

/// The writer's data segments the relay dropped, in capture order.
fn dropped(trace: &Trace, segs: &[Seg], writer: Host) -> Vec<Seg> {
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

fn was_dropped(trace: &Trace, s: &Seg) -> bool {
    trace
        .link_events
        .iter()
        .any(|e| e.frame == s.index && e.kind == LinkEventKind::Dropped)
}

/// The reader got every byte, intact.
fn check_delivery(case: &LossCase, observed: &ProgramObserved, findings: &mut Findings) {
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

/// Retransmission of a lost segment (lab Q21).
///
/// RFC 9293 §3.8.1: a segment not acknowledged is retransmitted; RFC 5681 §3.2: fast retransmit after
/// duplicate ACKs, else the retransmission timer (RFC 6298; Linux also probes the tail, RFC 8985 TLP, and
/// detects loss by time with RACK). The retransmission carries the same sequence range (RFC 9293 §3.4:
/// sequence numbers name bytes; a sender may repacketise, so the range is covered from the same first byte).
///
/// Cases: a or b writes 3–40 full segments at once; the relay drops 1 or 2 of its first 10 data segments
/// (originals: the initial window); SACK on or off per host.
///
/// Checked: for each dropped segment, a later segment from the writer starts at the same sequence number,
/// and later segments cover the whole dropped range; the reader receives every byte intact. Annotated: how
/// the loss was repaired — "fast" (duplicate ACKs came before the retransmission, within TCP_RTO_MIN 200 ms),
/// "tail probe" (no duplicate ACK, within 200 ms) or "RTO" (200 ms or more).
pub struct LossRetransmit;

impl Property for LossRetransmit {
    type Case = LossCase;
    type Observed = ProgramObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.loss.retransmit",
            suite: "tcp-data",
            title: "a dropped segment is retransmitted from the same sequence number and the stream arrives intact",
            clauses: &["RFC 9293 §3.8.1", "RFC 5681 §3.2", "RFC 6298"],
            questions: &["Q21"],
            needs: Needs {
                link: LinkKind::Relay,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, family: Family) -> LossCase {
        generate_loss(rng, family, 0)
    }

    fn lab_config(&self, case: &LossCase) -> LabConfig {
        loss_lab(case)
    }

    fn describe(&self, case: &LossCase) -> String {
        describe_loss(case)
    }

    fn execute(&self, case: &LossCase, env: &CaseEnv) -> Result<ProgramObserved, HarnessError> {
        execute_loss(case, env)
    }

    fn check(&self, case: &LossCase, observed: &ProgramObserved, trace: &Trace) -> Verdict {
        let mut findings = Findings::default();
        let segs = segments(trace);
        let writer = case.writer;
        let drops = dropped(trace, &segs, writer);
        findings.check(drops.len() == case.drop.len(), || {
            Violation::new(
                "netconform relay (the case's drop rules)",
                "the relay did not drop the segments the case asked for",
            )
            .field("dropped data segments")
            .expected(format!("{:?}", case.drop))
            .actual(drops.len())
        });
        for d in &drops {
            let later: Vec<&Seg> = segs
                .iter()
                .filter(|s| s.from == writer && s.index > d.index && s.len > 0)
                .collect();
            let first = later
                .iter()
                .find(|s| s.seq <= d.seq && d.seq < s.seq.wrapping_add(s.len));
            match first {
                None => findings.push(
                    Violation::new(
                        "RFC 9293 §3.8.1 (unacknowledged data is retransmitted)",
                        "a dropped segment's first byte was never sent again",
                    )
                    .frame(d.number)
                    .field("retransmission")
                    .expected(format!(
                        "a segment from {} starting at seq {}",
                        writer.role(),
                        d.seq
                    ))
                    .actual("none in the capture"),
                ),
                Some(r) => {
                    findings.check(r.seq == d.seq, || {
                        Violation::new(
                            "RFC 9293 §3.8.1 (the retransmission resends the lost range)",
                            "the retransmission does not start where the lost segment started",
                        )
                        .frames([d.number, r.number])
                        .field("seq (relative)")
                        .expected(d.seq)
                        .actual(r.seq)
                    });
                    // The whole range is covered by segments after the drop.
                    let mut covered = d.seq;
                    let mut ranges: Vec<(u32, u32)> = later
                        .iter()
                        .filter(|s| !was_dropped(trace, s))
                        .map(|s| (s.seq, s.seq.wrapping_add(s.len)))
                        .collect();
                    ranges.sort_unstable();
                    for (from, to) in ranges {
                        if from <= covered && to > covered {
                            covered = to;
                        }
                    }
                    let d_end = d.seq.wrapping_add(d.len);
                    findings.check(covered >= d_end, || {
                        Violation::new(
                            "RFC 9293 §3.8.1",
                            "the dropped range was only partly retransmitted",
                        )
                        .frames([d.number, r.number])
                        .field("bytes retransmitted")
                        .expected(format!("{}:{}", d.seq, d_end))
                        .actual(format!("{}:{covered}", d.seq))
                    });
                    let dup_acks = segs.iter().any(|s| {
                        s.from == writer.other()
                            && s.index > d.index
                            && s.index < r.index
                            && s.len == 0
                            && s.ack == d.seq
                    });
                    let after = Duration::from_nanos(r.rel_ns.saturating_sub(d.rel_ns));
                    findings.note(if after >= RTO_MIN {
                        "repaired by RTO"
                    } else if dup_acks {
                        "repaired by fast retransmit / RACK"
                    } else {
                        "repaired by a tail-loss probe"
                    });
                }
            }
        }
        check_delivery(case, observed, &mut findings);
        findings.verdict()
    }
}

/// Out-of-order data, SACK and the cumulative ACK (lab Q27).
///
/// RFC 9293 §3.10.7.4: segments beyond RCV.NXT are kept (not delivered) and an ACK is sent; RFC 5681 §4.2:
/// an out-of-order segment SHOULD be acknowledged at once (a duplicate ACK) and a segment that fills the
/// hole too. RFC 2018 §4: with SACK-permitted negotiated, duplicate ACKs carry SACK blocks naming the
/// received out-of-order ranges, the first block containing the segment that triggered the ACK; without it,
/// no SACK option may appear. RFC 2018 §8 / RFC 6675: SACKed data is not retransmitted, except after a
/// retransmission timeout (the sender then forgets SACK information).
///
/// Cases: as `tcp.loss.retransmit`, with at least three segments after the (first) dropped one, so data
/// arrives beyond the hole.
///
/// Checked (capture order at the relay; data is recorded before it is delivered, so "recorded before an
/// ACK" includes everything the receiver had): while the hole is open the receiver's ACKs never acknowledge
/// past it and at least one duplicate ACK is sent; with SACK negotiated every SACK block lies within data
/// recorded (and not dropped) beyond the hole before that ACK, and its first block contains a segment
/// recorded before it; without SACK no ACK carries SACK blocks; the first ACK after the hole-filling
/// retransmission covers all contiguous data recorded before it (the jump); with SACK, the sender never
/// resends SACKed bytes within TCP_RTO_MIN of the drop; the stream arrives intact.
pub struct ReorderSack;

impl Property for ReorderSack {
    type Case = LossCase;
    type Observed = ProgramObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.reorder.sack",
            suite: "tcp-data",
            title: "data beyond a hole is kept and SACKed exactly, duplicate ACKs never pass the hole, the cumulative ACK jumps when it fills",
            clauses: &[
                "RFC 9293 §3.10.7.4",
                "RFC 5681 §4.2",
                "RFC 2018 §3, §4, §8",
                "RFC 6675 §5",
            ],
            questions: &["Q27"],
            needs: Needs {
                link: LinkKind::Relay,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, family: Family) -> LossCase {
        generate_loss(rng, family, 3)
    }

    fn lab_config(&self, case: &LossCase) -> LabConfig {
        loss_lab(case)
    }

    fn describe(&self, case: &LossCase) -> String {
        describe_loss(case)
    }

    fn execute(&self, case: &LossCase, env: &CaseEnv) -> Result<ProgramObserved, HarnessError> {
        execute_loss(case, env)
    }

    fn check(&self, case: &LossCase, observed: &ProgramObserved, trace: &Trace) -> Verdict {
        let mut findings = Findings::default();
        let segs = segments(trace);
        let writer = case.writer;
        let reader = writer.other();
        let drops = dropped(trace, &segs, writer);
        let Some(hole) = drops.first().cloned() else {
            findings.push(
                Violation::new(
                    "netconform relay (the case's drop rules)",
                    "the relay dropped nothing",
                )
                .field("dropped data segments")
                .expected(format!("{:?}", case.drop))
                .actual("none"),
            );
            return findings.verdict();
        };
        // The hole-filling segment: the first later one from the writer covering the hole's first byte.
        let fill = segs
            .iter()
            .find(|s| {
                s.from == writer
                    && s.index > hole.index
                    && s.len > 0
                    && !was_dropped(trace, s)
                    && s.seq <= hole.seq
                    && hole.seq < s.seq.wrapping_add(s.len)
            })
            .cloned();
        let fill_index = fill.as_ref().map_or(usize::MAX, |f| f.index);
        let delivered_before = |index: usize| -> Vec<(u32, u32)> {
            segs.iter()
                .filter(|s| {
                    s.from == writer && s.index < index && s.len > 0 && !was_dropped(trace, s)
                })
                .map(|s| (s.seq, s.seq.wrapping_add(s.len)))
                .collect()
        };
        // The base of the writer's relative sequence numbers (its ISN), for SACK edges.
        let writer_base = trace.frames[hole.index]
            .conversation
            .zip(trace.frames[hole.index].direction)
            .and_then(|(c, d)| trace.conversations[c].base[d]);
        let mut dup_acks = 0;
        let mut sacked: Vec<(u32, u32, usize)> = Vec::new();
        for s in segs
            .iter()
            .filter(|s| s.from == reader && s.index > hole.index && s.index < fill_index)
        {
            findings.check(s.ack <= hole.seq || !s.flags.ack, || {
                Violation::new(
                    "RFC 9293 §3.10.7.4 (RCV.NXT stops at the first missing byte)",
                    "the receiver acknowledged data beyond the hole",
                )
                .frames([hole.number, s.number])
                .field("ack (relative)")
                .expected(format!("≤ {} (the hole)", hole.seq))
                .actual(s.ack)
            });
            if s.len == 0 && s.ack == hole.seq {
                dup_acks += 1;
            }
            let tcp = trace.frames[s.index].tcp().expect("a TCP segment");
            let blocks: Vec<(u32, u32)> = tcp
                .options
                .iter()
                .filter_map(|o| match o {
                    TcpOption::SackRange(r) => Some(r.clone()),
                    _ => None,
                })
                .flatten()
                .map(|(l, r)| {
                    // SACK edges are absolute: relative to the writer's ISN, like seq.
                    let base = writer_base.unwrap_or(l);
                    ((l - base) as u32, (r - base) as u32)
                })
                .collect();
            if !case.sack() {
                findings.check(blocks.is_empty(), || {
                    Violation::new(
                        "RFC 2018 §3 (SACK only after SACK-permitted in both SYNs)",
                        "an ACK carries SACK blocks although SACK was not negotiated",
                    )
                    .frame(s.number)
                    .field("options")
                    .expected("no SACK blocks")
                    .actual(format!("{blocks:?}"))
                });
                continue;
            }
            let have = delivered_before(s.index);
            let within = |(l, r): (u32, u32)| {
                // [l, r) is covered by the union of delivered ranges beyond the hole.
                let mut ranges: Vec<(u32, u32)> =
                    have.iter().copied().filter(|(_, e)| *e > l).collect();
                ranges.sort_unstable();
                let mut at = l;
                for (from, to) in ranges {
                    if from <= at && to > at {
                        at = to;
                    }
                }
                at >= r && l > hole.seq
            };
            for &(l, r) in &blocks {
                // D-SACK (RFC 2883): a first block below the cumulative ACK reports a duplicate.
                if r <= s.ack {
                    continue;
                }
                findings.check(within((l, r)), || {
                    Violation::new(
                        "RFC 2018 §4 (a SACK block names received, queued data beyond the hole)",
                        "a SACK block names data the receiver cannot have",
                    )
                    .frame(s.number)
                    .field("SACK block (relative)")
                    .expected(format!(
                        "within data recorded beyond {} before frame #{}",
                        hole.seq, s.number
                    ))
                    .actual(format!("{l}:{r}"))
                });
                sacked.push((l, r, s.index));
            }
            if let Some(&(l, r)) = blocks.iter().find(|(_, r)| *r > s.ack) {
                let contains_one = have.iter().any(|&(f, t)| f >= l && t <= r && f > hole.seq);
                findings.check(contains_one, || {
                    Violation::new(
                        "RFC 2018 §4 (the first block contains the segment that triggered the ACK)",
                        "the first SACK block contains no received segment",
                    )
                    .frame(s.number)
                    .field("first SACK block")
                    .expected("a block holding a segment received beyond the hole")
                    .actual(format!("{l}:{r}"))
                });
            }
        }
        findings.check(dup_acks > 0, || {
            Violation::new(
                "RFC 5681 §4.2 (an out-of-order segment SHOULD be ACKed at once); RFC 9293 §3.10.7.4",
                "no duplicate ACK while data arrived beyond the hole",
            )
            .frame(hole.number)
            .field("duplicate ACKs")
            .expected(format!("≥ 1 with ack {}", hole.seq))
            .actual(0)
        });
        if case.sack() {
            findings.check(!sacked.is_empty(), || {
                Violation::new(
                    "RFC 2018 §4 (a receiver with out-of-order data SHOULD send SACK blocks)",
                    "no duplicate ACK carried a SACK block although SACK was negotiated",
                )
                .frame(hole.number)
                .field("SACK blocks")
                .expected("at least one")
                .actual("none")
            });
            // SACKed data is not resent before an RTO.
            for s in segs.iter().filter(|s| {
                s.from == writer
                    && s.retransmission
                    && s.len > 0
                    && Duration::from_nanos(s.rel_ns.saturating_sub(hole.rel_ns)) < RTO_MIN
            }) {
                let end = s.seq.wrapping_add(s.len);
                if let Some(&(l, r, by)) = sacked
                    .iter()
                    .find(|(l, r, by)| *by < s.index && s.seq >= *l && end <= *r)
                {
                    findings.push(
                        Violation::new(
                            "RFC 2018 §8, RFC 6675 §5 (SACKed data is not retransmitted before an RTO)",
                            "the sender resent data the receiver had SACKed",
                        )
                        .frames([trace.frames[by].number, s.number])
                        .field("retransmitted range")
                        .expected(format!("outside the SACKed {l}:{r}"))
                        .actual(format!("{}:{end}", s.seq)),
                    );
                }
            }
        }
        // The jump.
        match &fill {
            None => findings.push(
                Violation::new("RFC 9293 §3.8.1", "the hole was never filled")
                    .frame(hole.number)
                    .field("retransmission")
                    .expected(format!("a segment starting at or before {}", hole.seq))
                    .actual("none"),
            ),
            Some(f) => {
                let mut have = delivered_before(f.index);
                have.push((f.seq, f.seq.wrapping_add(f.len)));
                have.sort_unstable();
                let mut contiguous = 1u32;
                for (from, to) in have {
                    if from <= contiguous && to > contiguous {
                        contiguous = to;
                    }
                }
                if let Some(ack) = segs
                    .iter()
                    .find(|s| s.from == reader && s.index > f.index && s.ack > hole.seq)
                {
                    findings.check(ack.ack >= contiguous, || {
                        Violation::new(
                            "RFC 9293 §3.10.7.4 (RCV.NXT advances over queued data once the gap fills); RFC 5681 §4.2",
                            "the cumulative ACK did not jump past the data held beyond the hole",
                        )
                        .frames([f.number, ack.number])
                        .field("ack (relative)")
                        .expected(format!("≥ {contiguous}"))
                        .actual(ack.ack)
                    });
                }
            }
        }
        findings.note(if case.sack() {
            "SACK negotiated"
        } else {
            "SACK off"
        });
        check_delivery(case, observed, &mut findings);
        findings.verdict()
    }
}
