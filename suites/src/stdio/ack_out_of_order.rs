use std::time::Duration;

use harness::backend::TimingBounds;
use harness::frame::Host;
use harness::link::{Impairment, LinkEventKind, LinkSpec, RelaySpec, Rule};
use harness::property::{
    Cap, CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Subject, Verdict,
    Violation,
};
use harness::sock::Family;
use harness::sut::stdio_session::{FirstClose, Plan};
use harness::trace::Trace;
use harness::{HarnessError, LabConfig};
use serde::{Deserialize, Serialize};

use super::common::{exchange, from_b, session, session_failure, stream_violation, Sessions};

/// How late the relay delivers its copy of a's segment holding the last byte of the stream: long after the
/// original and every ACK for it, so the copy meets a connection with nothing else in flight.
pub const LAST_COPY_DELAY_MS: u32 = 300;
/// How late the relay delivers its copy of the segment holding a random byte of the stream (mid-stream).
pub const MID_COPY_DELAY_MS: u32 = 1;
/// a's FIN waits this long after a got its last byte into its socket: the last copy arrives (and is
/// answered) before the FIN, whose ACK must not be taken for the copy's answer.
pub const A_FIN_DELAY: Duration = Duration::from_millis(1500);
/// An ACK that must be sent "immediately" (RFC 5681 §4.2) or "in reply" (RFC 9293 §3.10.7.4) comes within
/// this: the RFCs give no number, so a non-kernel stack is held to MUST-40's 0.5 s
/// (`TimingBounds::RFC.immediate_ack`), plus the link's round trip.
pub const ANSWER_WITHIN: Duration = TimingBounds::RFC.immediate_ack;

/// How the relay opens a hole in a's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hole {
    /// a's n-th data segment is dropped (a retransmits it).
    Drop,
    /// a's n-th data segment is held back `hold_ms`: the later ones overtake it, and it arrives late, mostly
    /// after a's retransmission filled the hole (an old duplicate).
    Hold,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutOfOrderCase {
    pub a_bytes: usize,
    pub hole: Hole,
    /// a's data segment the hole is made of (1-based).
    pub n: u32,
    pub hold_ms: u32,
    /// Relative sequence number of a mid-stream byte whose segment the relay duplicates.
    pub dup_at: u32,
    pub seed: u64,
}

/// Cumulative and duplicate ACKs of the SUT as receiver, under reordering, duplication and loss (lab Q27).
///
/// RFC 9293 §3.10.7.4: "Once the TCP endpoint takes responsibility for the data, it advances RCV.NXT over
/// the data accepted" — in order only: segments beyond RCV.NXT "SHOULD be held for later processing"
/// (SHLD-31) but not acknowledged; "If an incoming segment is not acceptable, an acknowledgment should be
/// sent in reply" (an old duplicate, entirely below RCV.NXT, is not acceptable). RFC 5681 §4.2: "A TCP
/// receiver SHOULD send an immediate duplicate ACK when an out-of-order segment arrives."
///
/// The relay impairs a's segments only (a→b): a's 1st, 2nd or 3rd data segment is dropped or held back
/// 150–400 ms; the segment holding a random byte is copied (the copy 1 ms later); the segment holding the
/// last byte is copied, the copy [`LAST_COPY_DELAY_MS`] later, before a's FIN ([`A_FIN_DELAY`]). a sends
/// 8–40 KB and closes first; the SUT then sends 100 B.
///
/// Judged from a's frames as recorded at the relay and the relay's decisions: every delivery to the SUT
/// (copies included) at its scheduled time, which is no later than the real one, in the relay's order. From
/// them, the most the SUT can have received in order by any time (keeping every out-of-order byte), and the
/// least (keeping none). Checked: (a) no ACK of the SUT acknowledges more than the most it can have received
/// in order when the ACK was recorded; (b) for each hole that out-of-order data reached (its first byte
/// beyond the most the SUT can have in order), the SUT sends pure ACKs not covering that data, within
/// [`ANSWER_WITHIN`] of the last such segment: at least one per out-of-order segment up to two (tolerance:
/// the first may also be the ACK of the data before the hole, and one ACK may answer a burst of
/// out-of-order segments processed together, RFC 9293 MUST-58); (c) each old duplicate (all of it below the
/// least the SUT can have in order, or below what the SUT had already acknowledged) is followed within [`ANSWER_WITHIN`] by a pure ACK (one that does not
/// acknowledge a's FIN, unless the FIN came before the duplicate); (d) the SUT printed a's stream exactly.
/// A case in which no out-of-order segment and no old duplicate reached the SUT is invalid.
pub struct AckOutOfOrder;

impl Property for AckOutOfOrder {
    type Case = OutOfOrderCase;
    type Observed = (Sessions, Duration);

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "stdio.ack.out_of_order",
            suite: "stdio",
            title: "under reordering, duplication and loss the SUT's ACKs stay cumulative, out-of-order data gets duplicate ACKs, old duplicates are answered, and the stream arrives intact",
            clauses: &["RFC 9293 §3.10.7.4 (SHLD-31)", "RFC 5681 §4.2"],
            questions: &["Q27"],
            subject: Subject::B,
            needs: Needs {
                links: &[LinkKind::Relay],
                kernel: &[],
                caps: &[Cap::Stdio],
                ethernet: false,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> Self::Case {
        use rand::Rng;
        let a_bytes = rng.gen_range(8000..=40_000);
        OutOfOrderCase {
            a_bytes,
            hole: if rng.gen_bool(0.5) {
                Hole::Drop
            } else {
                Hole::Hold
            },
            n: rng.gen_range(1..=3),
            hold_ms: rng.gen_range(150..=400),
            dup_at: rng.gen_range(1..=a_bytes as u32),
            seed: rng.gen(),
        }
    }

    fn lab_config(&self, c: &Self::Case) -> LabConfig {
        let hole = match c.hole {
            Hole::Drop => Rule::DropNthData { n: c.n },
            Hole::Hold => Rule::HoldNthData {
                n: c.n,
                ms: c.hold_ms,
            },
        };
        LabConfig {
            link: LinkSpec::Relay(RelaySpec {
                a_to_b: Impairment {
                    // The last byte's rule comes last: it wins when both pick one segment.
                    rules: vec![
                        hole,
                        Rule::DuplicateSeq {
                            at: c.dup_at,
                            ms: MID_COPY_DELAY_MS,
                        },
                        Rule::DuplicateSeq {
                            at: c.a_bytes as u32,
                            ms: LAST_COPY_DELAY_MS,
                        },
                    ],
                    ..Impairment::default()
                },
                b_to_a: Impairment::default(),
                seed: 1,
            }),
            ..LabConfig::default()
        }
    }

    fn describe(&self, c: &Self::Case) -> String {
        let hole = match c.hole {
            Hole::Drop => format!("drops a's data segment {}", c.n),
            Hole::Hold => format!("holds a's data segment {} back {} ms", c.n, c.hold_ms),
        };
        format!(
            "a sends {} B to the SUT; the relay {hole} and copies the segments holding byte {} and the last byte",
            c.a_bytes, c.dup_at
        )
    }

    fn execute(&self, c: &Self::Case, env: &CaseEnv) -> Result<Self::Observed, HarnessError> {
        let mut plan: Plan = exchange(c.seed, 100, c.a_bytes, FirstClose::A);
        plan.a_shut_delay = A_FIN_DELAY;
        Ok((vec![session(env, &plan)?], env.lab.link_round_trip()))
    }

    fn check(&self, c: &Self::Case, observed: &Self::Observed, trace: &Trace) -> Verdict {
        let (sessions, round_trip) = observed;
        let s = &sessions[0];
        if let Some(v) = session_failure(s) {
            return Verdict::fail(v);
        }
        let bound = ANSWER_WITHIN + *round_trip;
        let bound_ns = bound.as_nanos() as u64;
        let deliveries = deliveries(c, trace);
        let fin_seq = c.a_bytes as u64 + 1;
        // The relay's order, replayed: the most and the least the SUT can hold in order after each delivery.
        let mut most = InOrder::default();
        let mut least: u64 = 1;
        let mut most_after: Vec<(u64, u64)> = Vec::new(); // (time, most in order after it)
        let mut out_of_order: Vec<(&Delivery, u64)> = Vec::new(); // (delivery, the hole's first byte)
        let mut old: Vec<(&Delivery, bool)> = Vec::new(); // (delivery, a's FIN had arrived)
        let mut fin_arrived = false;
        // What the SUT itself had acknowledged before a time: its RCV.NXT was at least that.
        let acked_before = |t: u64| {
            from_b(trace)
                .filter(|(fr, tcp)| tcp.flags.ack && fr.rel_ns < t)
                .filter_map(|(fr, _)| fr.rel_ack.map(|a| a as u64))
                .max()
                .unwrap_or(1)
        };
        for d in &deliveries {
            if d.seq > most.next {
                out_of_order.push((d, most.next));
            } else if d.end <= least.max(acked_before(d.t_ns)) {
                old.push((d, fin_arrived));
            }
            most.add(d.seq, d.end);
            if d.seq <= least && least < d.end {
                least = d.end;
            }
            fin_arrived |= d.end > fin_seq;
            most_after.push((d.t_ns, most.next));
        }
        if out_of_order.is_empty() && old.is_empty() {
            return Verdict::Invalid {
                reason: format!(
                    "no segment of a reached the SUT out of order or as an old duplicate ({} deliveries)",
                    deliveries.len()
                ),
            };
        }
        let most_by = |t: u64| {
            most_after
                .iter()
                .take_while(|(dt, _)| *dt <= t)
                .last()
                .map_or(1, |(_, m)| *m)
        };
        let mut f = Findings::default();
        // (a) cumulative: never beyond what can have arrived in order.
        let b_acks: Vec<(usize, u64, u64, bool)> = from_b(trace)
            .filter(|(fr, t)| t.flags.ack && !t.flags.rst && fr.rel_ack.is_some())
            .map(|(fr, t)| {
                let pure = t.payload_len == 0 && !t.flags.syn && !t.flags.fin;
                (fr.number, fr.rel_ns, fr.rel_ack.unwrap_or(0) as u64, pure)
            })
            .collect();
        let beyond: Vec<_> = b_acks
            .iter()
            .filter(|(_, ns, ack, _)| *ack > most_by(*ns))
            .collect();
        if let Some((n, ns, ack, _)) = beyond.first() {
            f.push(
                Violation::new(
                    "RFC 9293 §3.10.7.4 (RCV.NXT advances over data accepted in order)",
                    "the SUT acknowledged data that had not reached it in order",
                )
                .frame(*n)
                .field("ACK")
                .expected(format!(
                    "≤ {} (a's bytes delivered in order by the relay before this ACK)",
                    most_by(*ns)
                ))
                .actual(format!(
                    "{ack}{}",
                    if beyond.len() > 1 {
                        format!(" ({} such ACKs)", beyond.len())
                    } else {
                        String::new()
                    }
                )),
            );
        }
        // (b) duplicate ACKs for each hole that out-of-order data reached.
        let mut holes: Vec<u64> = out_of_order.iter().map(|(_, h)| *h).collect();
        holes.dedup();
        for h in holes {
            let segs: Vec<&Delivery> = out_of_order
                .iter()
                .filter(|(_, hh)| *hh == h)
                .map(|(d, _)| *d)
                .collect();
            let (first, last) = (segs[0], segs[segs.len() - 1]);
            let lowest = segs.iter().map(|d| d.seq).min().unwrap_or(first.seq);
            let dup_acks = b_acks
                .iter()
                .filter(|(_, ns, ack, pure)| {
                    *pure && *ns > first.t_ns && *ns <= last.t_ns + bound_ns && *ack < lowest
                })
                .count();
            let want = segs.len().min(2);
            f.check(dup_acks >= want, || {
                Violation::new(
                    "RFC 5681 §4.2; RFC 9293 §3.10.7.4",
                    "the SUT did not answer out-of-order data with duplicate ACKs",
                )
                .frames([first.frame, last.frame])
                .field(format!("duplicate ACKs for the hole at {h}"))
                .expected(format!(
                    "≥ {want} pure ACK(s) below {lowest} within {} ms of the last of {} out-of-order segment(s)",
                    bound.as_millis(),
                    segs.len()
                ))
                .actual(format!("{dup_acks}"))
            });
        }
        // (c) old duplicates answered.
        for (d, fin_before) in &old {
            let limit = if *fin_before { fin_seq + 1 } else { fin_seq };
            let answer = b_acks.iter().find(|(_, ns, ack, pure)| {
                *pure && *ns > d.t_ns && *ns <= d.t_ns + bound_ns && *ack <= limit
            });
            match answer {
                Some((n, ns, _, _)) => f.note(format!(
                    "old duplicate #{}{} answered by #{n} after {} ms",
                    d.frame,
                    if d.copy { " (copy)" } else { "" },
                    (ns - d.t_ns) / 1_000_000
                )),
                None => f.push(
                    Violation::new(
                        "RFC 9293 §3.10.7.4 (an unacceptable segment is answered by an ACK)",
                        "the SUT did not acknowledge an old duplicate segment",
                    )
                    .frame(d.frame)
                    .field("ACK in reply")
                    .expected(format!(
                        "a pure ACK within {} ms of the {}delivery of [{}, {}) (all below RCV.NXT)",
                        bound.as_millis(),
                        if d.copy { "relay's copy's " } else { "late " },
                        d.seq,
                        d.end
                    ))
                    .actual("none"),
                ),
            }
        }
        if let Some(v) = stream_violation(
            trace,
            "RFC 9293 §3.10.7.4",
            "the SUT did not print a's stream intact",
            Host::A,
            "stream a→b (the SUT's stdout)",
            &super::common::stream(c.seed, 2, c.a_bytes),
            &s.sut_stdout,
        ) {
            f.push(v);
        }
        f.note(format!(
            "{} out-of-order and {} old duplicate deliveries",
            out_of_order.len(),
            old.len()
        ));
        f.verdict()
    }
}

/// One delivery of a's segment to the SUT, at the time the relay scheduled it.
#[derive(Debug)]
struct Delivery {
    frame: usize,
    t_ns: u64,
    /// Relative sequence range (a FIN counts one).
    seq: u64,
    end: u64,
    copy: bool,
}

/// a's segments that carry data or a FIN, as the relay delivered them (dropped ones left out, held ones
/// late, copies twice), in delivery order.
fn deliveries(c: &OutOfOrderCase, trace: &Trace) -> Vec<Delivery> {
    let ms = |m: u32| m as u64 * 1_000_000;
    let mut out = Vec::new();
    for (i, fr) in trace.frames.iter().enumerate() {
        if fr.from != Some(Host::A) {
            continue;
        }
        let (Some(t), Some(seq)) = (fr.tcp(), fr.rel_seq) else {
            continue;
        };
        let len = t.payload_len as u64 + t.flags.fin as u64;
        if t.flags.syn || t.flags.rst || len == 0 {
            continue;
        }
        let event = |k: LinkEventKind| {
            trace
                .link_events
                .iter()
                .any(|e| e.frame == i && e.kind == k)
        };
        if event(LinkEventKind::Dropped) {
            continue;
        }
        let (seq, end) = (seq as u64, seq as u64 + len);
        let holds = |at: u64| t.payload_len > 0 && seq <= at && at < seq + t.payload_len as u64;
        let t_ns = fr.rel_ns
            + if event(LinkEventKind::Reordered) {
                ms(c.hold_ms)
            } else {
                0
            };
        out.push(Delivery {
            frame: fr.number,
            t_ns,
            seq,
            end,
            copy: false,
        });
        if event(LinkEventKind::Duplicated) {
            let later = if holds(c.a_bytes as u64) {
                LAST_COPY_DELAY_MS
            } else {
                MID_COPY_DELAY_MS
            };
            out.push(Delivery {
                frame: fr.number,
                t_ns: t_ns + ms(later),
                seq,
                end,
                copy: true,
            });
        }
    }
    out.sort_by_key(|d| (d.t_ns, d.frame, d.copy));
    out
}

/// The most a receiver that keeps every out-of-order byte has in order.
struct InOrder {
    next: u64,
    /// Ranges received beyond `next`.
    beyond: Vec<(u64, u64)>,
}

impl Default for InOrder {
    fn default() -> InOrder {
        InOrder {
            next: 1,
            beyond: Vec::new(),
        }
    }
}

impl InOrder {
    fn add(&mut self, seq: u64, end: u64) {
        self.beyond.push((seq, end));
        loop {
            let before = self.next;
            for &(s, e) in &self.beyond {
                if s <= self.next && self.next < e {
                    self.next = e;
                }
            }
            if self.next == before {
                break;
            }
        }
        let next = self.next;
        self.beyond.retain(|&(_, e)| e > next);
    }
}
