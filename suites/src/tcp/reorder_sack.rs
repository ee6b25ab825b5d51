use std::time::Duration;

use harness::property::{Cap, KernelNeed, Subject};
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::Family;
use harness::trace::Trace;
use harness::wire::TcpOption;
use harness::{HarnessError, LabConfig};

use super::loss_common::{
    check_delivery, describe_loss, dropped, execute_loss, generate_loss, loss_lab, was_dropped,
    LossCase, RTO_MIN,
};
use crate::conn::segments;
use crate::conn::ProgramObserved;

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
            subject: Subject::B,
            needs: Needs {
                links: &[LinkKind::Relay],
                kernel: &[KernelNeed::Sysctl, KernelNeed::LinuxTimers],
                caps: &[Cap::Tcp],
                ethernet: false,
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
