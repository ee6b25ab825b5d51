use std::time::Duration;

use harness::property::{Cap, KernelNeed, Subject};
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::Family;
use harness::trace::Trace;
use harness::{HarnessError, LabConfig};

use super::loss_common::{
    check_delivery, describe_loss, dropped, execute_loss, generate_loss, loss_lab, was_dropped,
    LossCase, RTO_MIN,
};
use crate::conn::ProgramObserved;
use crate::conn::{segments, Seg};

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
            subject: Subject::Both,
            needs: Needs {
                links: &[LinkKind::Relay],
                kernel: &[KernelNeed::Sysctl],
                caps: &[Cap::Tcp],
                ethernet: false,
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
