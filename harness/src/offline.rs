//! The offline judge (`netconform check FILE`): the properties whose check the wire alone can decide, run
//! over every TCP conversation of any capture. Each reports `pass` (with what it saw), `fail` with a
//! [`Violation`], or `not applicable` with why. The lab's properties judge a case they built (parameters,
//! socket options, sysctls); these judge only what a capture shows, so each states what it cannot know.
//!
//! - `tcp.rst.closed_port` (RFC 9293 §3.10.7.1): a side that answers only with RSTs (a closed port) answers
//!   a segment with ACK by `<SEQ=SEG.ACK><CTL=RST>` and one without by `<SEQ=0><ACK=SEG.SEQ+SEG.LEN>
//!   <CTL=RST,ACK>`.
//! - `tcp.zero_window.probes` (RFC 9293 §3.8.6.1, MUST-36; RFC 1122 §4.2.2.17): while a window stays zero the
//!   intervals between the sender's probes never shrink (exponential backoff; 20 ms of timer jitter allowed).
//! - `tcp.ack.delay` (RFC 9293 §3.8.6.3, MUST-40): the first ACK after each data segment (its last copy: an
//!   earlier copy may have been lost after the capture point) comes within 500 ms. Measured at the capture
//!   point, so a capture at the data sender adds one round trip.
//! - `tcp.close.half_close` (RFC 9293 §3.6, MAY-1; RFC 1122 §4.2.2.13): every FIN is acknowledged when the
//!   peer sends anything later; data that follows a FIN from the other side is acknowledged (a half-close) or
//!   answered by RST (a full close — legal, RFC 9293 §3.6 SHLD-3; the wire cannot tell shutdown() from
//!   close()).
//! - `tcp.loss.retransmit` (RFC 9293 §3.8.1; RFC 5681 §3.2): when the receiver's cumulative ACK stays at X
//!   through three duplicate ACKs and until the end of the capture (at least 1 s later), the sender resent X.
//! - `tcp.reorder.sack` (RFC 2018 §3, §4; RFC 2883): SACK blocks cover only data the peer sent, and every block
//!   but a first D-SACK lies above the cumulative ACK.
//! - `tcp.nagle` (RFC 9293 §3.7.4, SHLD-7; RFC 896): with Nagle at most one sub-MSS segment is unacknowledged.
//!   The capture cannot show TCP_NODELAY, so two outstanding small segments make the property not applicable
//!   (naming the frame), never a failure.

use std::fmt::Write as _;

use serde::Serialize;

use crate::trace::{Conversation, ConversationKind, Label, Trace, TraceFrame};
use crate::verdict::Violation;
use crate::wire::{SeqNumber, TcpRepr};

/// One property's outcome over a whole capture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Pass { notes: Vec<String> },
    Fail { violation: Violation },
    NotApplicable { why: String },
}

/// A property judged offline.
#[derive(Debug, Clone, Serialize)]
pub struct Judged {
    pub id: &'static str,
    pub clause: &'static str,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// RFC 9293 §3.8.6.3 (MUST-40): an ACK is never delayed 0.5 s or more.
pub const ACK_DELAY_BOUND_NS: u64 = 500_000_000;
/// Probe timers fire on a tick; an interval this much shorter than the previous one is still "not shrinking".
const PROBE_JITTER_NS: u64 = 20_000_000;
/// How long after three duplicate ACKs a capture must go on before a missing retransmission is a finding.
const RETRANSMIT_PATIENCE_NS: u64 = 1_000_000_000;

/// Every wire-observable property over `trace`.
pub fn judge(trace: &Trace) -> Vec<Judged> {
    let tcp: Vec<&Conversation> = trace
        .conversations
        .iter()
        .filter(|c| c.kind == ConversationKind::Tcp)
        .collect();
    vec![
        Judged {
            id: "tcp.rst.closed_port",
            clause: "RFC 9293 §3.10.7.1",
            outcome: rst_closed_port(trace, &tcp),
        },
        Judged {
            id: "tcp.zero_window.probes",
            clause: "RFC 9293 §3.8.6.1 (MUST-36)",
            outcome: zero_window_probes(trace, &tcp),
        },
        Judged {
            id: "tcp.ack.delay",
            clause: "RFC 9293 §3.8.6.3 (MUST-40)",
            outcome: ack_delay(trace, &tcp),
        },
        Judged {
            id: "tcp.close.half_close",
            clause: "RFC 9293 §3.6 (MAY-1)",
            outcome: half_close(trace, &tcp),
        },
        Judged {
            id: "tcp.loss.retransmit",
            clause: "RFC 9293 §3.8.1; RFC 5681 §3.2",
            outcome: loss_retransmit(trace, &tcp),
        },
        Judged {
            id: "tcp.reorder.sack",
            clause: "RFC 2018 §3, §4; RFC 2883",
            outcome: sack_consistency(trace, &tcp),
        },
        Judged {
            id: "tcp.nagle",
            clause: "RFC 9293 §3.7.4 (SHLD-7); RFC 896",
            outcome: nagle(trace, &tcp),
        },
    ]
}

/// The TCP frames of a conversation: (direction, frame, repr).
fn segments<'t>(
    trace: &'t Trace,
    c: &Conversation,
) -> impl Iterator<Item = (usize, &'t TraceFrame, &'t TcpRepr)> + 't {
    let frames: Vec<usize> = c.frames.clone();
    frames.into_iter().filter_map(move |i| {
        let f = &trace.frames[i];
        Some((f.direction?, f, f.tcp()?))
    })
}

fn rel(c: &Conversation, d: usize, s: SeqNumber) -> u32 {
    c.base[d].map_or(s.0, |b| (s - b) as u32)
}

fn ms(ns: u64) -> String {
    format!("{:.1} ms", ns as f64 / 1e6)
}

fn rst_closed_port(trace: &Trace, tcp: &[&Conversation]) -> Outcome {
    let mut judged = 0;
    for c in tcp {
        let segs: Vec<_> = segments(trace, c).collect();
        // The answering side sends only RSTs: nothing listens there.
        let only_rst = segs.iter().filter(|(d, _, _)| *d == 1).count() > 0
            && segs.iter().all(|(d, _, t)| *d == 0 || t.flags.rst);
        if !only_rst {
            continue;
        }
        let mut last_in: Option<(&TraceFrame, &TcpRepr)> = None;
        for (d, f, t) in &segs {
            if *d == 0 {
                if !t.flags.rst {
                    last_in = Some((f, t));
                }
                continue;
            }
            let Some((sf, seg)) = last_in.take() else {
                continue;
            };
            judged += 1;
            let (want_seq, want_ack) = if seg.flags.ack {
                (seg.ack, None)
            } else {
                (SeqNumber(0), Some(seg.seq + seg.segment_len()))
            };
            let ok = t.seq == want_seq
                && match want_ack {
                    None => true,
                    Some(a) => t.flags.ack && t.ack == a,
                };
            if !ok {
                let expected = match want_ack {
                    None => format!("R with seq {} (SEG.ACK)", want_seq.0),
                    Some(a) => format!("R. with seq 0, ack {} (SEG.SEQ+SEG.LEN)", a.0),
                };
                return Outcome::Fail {
                    violation: Violation::new(
                        "RFC 9293 §3.10.7.1",
                        "a RST from a closed port has the wrong sequence or acknowledgment number",
                    )
                    .frames([sf.number, f.number])
                    .field("seq/ack")
                    .expected(expected)
                    .actual(format!(
                        "{} with seq {}{}",
                        t.flags.tcpdump(),
                        t.seq.0,
                        if t.flags.ack {
                            format!(", ack {}", t.ack.0)
                        } else {
                            String::new()
                        }
                    )),
                };
            }
        }
    }
    if judged == 0 {
        Outcome::NotApplicable {
            why: "no conversation was answered only by RSTs (no segment met a closed port)".into(),
        }
    } else {
        Outcome::Pass {
            notes: vec![format!(
                "{judged} RST(s) from closed ports with the RFC's numbers"
            )],
        }
    }
}

fn zero_window_probes(trace: &Trace, tcp: &[&Conversation]) -> Outcome {
    let mut probes_seen = 0;
    for c in tcp {
        // Per sending direction: the probe times of the current zero-window episode.
        let mut episode: [Vec<(u64, usize)>; 2] = [Vec::new(), Vec::new()];
        for (d, f, t) in segments(trace, c) {
            let o = 1 - d;
            if t.flags.ack && !t.flags.syn && t.window > 0 {
                // The peer of `o` reopened: o's episode ends.
                episode[o].clear();
            }
            if !f.labels.contains(&Label::ZeroWindowProbe) {
                continue;
            }
            probes_seen += 1;
            let e = &mut episode[d];
            e.push((f.rel_ns, f.number));
            if e.len() >= 3 {
                let n = e.len();
                let prev = e[n - 2].0 - e[n - 3].0;
                let now = e[n - 1].0 - e[n - 2].0;
                if now + PROBE_JITTER_NS < prev {
                    return Outcome::Fail {
                        violation: Violation::new(
                            "RFC 9293 §3.8.6.1 (MUST-36); RFC 1122 §4.2.2.17 (exponential backoff)",
                            "the interval between zero-window probes shrank",
                        )
                        .frames([e[n - 3].1, e[n - 2].1, e[n - 1].1])
                        .field("probe interval")
                        .expected(format!(">= {} (the previous interval)", ms(prev)))
                        .actual(ms(now)),
                    };
                }
            }
        }
    }
    if probes_seen == 0 {
        Outcome::NotApplicable {
            why: "no zero-window probe in the capture".into(),
        }
    } else {
        Outcome::Pass {
            notes: vec![format!(
                "{probes_seen} zero-window probe(s), intervals never shrinking"
            )],
        }
    }
}

fn ack_delay(trace: &Trace, tcp: &[&Conversation]) -> Outcome {
    let mut judged = 0;
    let mut worst = 0u64;
    for c in tcp {
        let segs: Vec<_> = segments(trace, c).collect();
        for (k, (d, f, t)) in segs.iter().enumerate() {
            if t.payload_len == 0
                || t.flags.rst
                || f.labels.contains(&Label::ZeroWindowProbe)
                || f.labels.contains(&Label::KeepAlive)
            {
                continue;
            }
            // Only the last copy of a range: an earlier one may have been lost after the capture point.
            let resent = segs[k + 1..].iter().any(|(d2, _, t2)| {
                d2 == d
                    && t2.payload_len > 0
                    && t2.seq <= t.seq
                    && t.seq < t2.seq + t2.payload_len as u32
            });
            if resent {
                continue;
            }
            let Some((_, af, _)) = segs[k + 1..]
                .iter()
                .find(|(d2, _, t2)| *d2 != *d && t2.flags.ack)
            else {
                continue;
            };
            judged += 1;
            let delay = af.rel_ns.saturating_sub(f.rel_ns);
            worst = worst.max(delay);
            if delay >= ACK_DELAY_BOUND_NS {
                return Outcome::Fail {
                    violation: Violation::new(
                        "RFC 9293 §3.8.6.3 (MUST-40: an ACK is not delayed 0.5 s or more)",
                        "data was acknowledged 0.5 s or more after it arrived",
                    )
                    .frames([f.number, af.number])
                    .field("ACK delay")
                    .expected("< 500 ms")
                    .actual(ms(delay)),
                };
            }
        }
    }
    if judged == 0 {
        Outcome::NotApplicable {
            why: "no data segment was followed by an ACK from the other side".into(),
        }
    } else {
        Outcome::Pass {
            notes: vec![format!(
                "{judged} data segment(s) acknowledged, the slowest after {}",
                ms(worst)
            )],
        }
    }
}

fn half_close(trace: &Trace, tcp: &[&Conversation]) -> Outcome {
    let mut fins = 0;
    let mut notes = Vec::new();
    for c in tcp {
        let segs: Vec<_> = segments(trace, c).collect();
        for (k, (d, f, t)) in segs.iter().enumerate() {
            if !t.flags.fin || segs[..k].iter().any(|(d2, _, t2)| d2 == d && t2.flags.fin) {
                continue;
            }
            fins += 1;
            let fin_end = t.seq + t.segment_len();
            let other: Vec<_> = segs.iter().filter(|(d2, _, _)| *d2 != *d).collect();
            let later = segs[k + 1..]
                .iter()
                .filter(|(d2, _, t2)| *d2 != *d && !t2.flags.rst)
                .count();
            let reset = segs.iter().any(|(_, _, t2)| t2.flags.rst);
            let acked = other
                .iter()
                .any(|(_, _, t2)| t2.flags.ack && t2.ack >= fin_end);
            if later > 0 && !acked && !reset {
                return Outcome::Fail {
                    violation: Violation::new(
                        "RFC 9293 §3.6, §3.10.7.4 (a FIN takes one sequence number and is acknowledged)",
                        "a FIN was never acknowledged although the peer kept sending",
                    )
                    .frame(f.number)
                    .field("ack")
                    .expected(format!(">= {} (FIN + 1)", rel(c, *d, fin_end)))
                    .actual(format!("{later} later segment(s) from the peer, none acknowledging it")),
                };
            }
            // Data from the other side after this FIN: acknowledged (half-close) or reset (full close).
            let data_after = segs[k + 1..]
                .iter()
                .filter(|(d2, _, t2)| *d2 != *d && t2.payload_len > 0)
                .map(|(_, _, t2)| t2.seq + t2.payload_len as u32)
                .reduce(|a, b| if b > a { b } else { a });
            if let Some(end) = data_after {
                let acked_data = segs[k + 1..]
                    .iter()
                    .any(|(d2, _, t2)| d2 == d && t2.flags.ack && t2.ack >= end);
                let rst = segs[k + 1..]
                    .iter()
                    .any(|(d2, _, t2)| d2 == d && t2.flags.rst);
                if acked_data {
                    notes.push(format!(
                        "half-close at frame #{}: the peer's later data was acknowledged",
                        f.number
                    ));
                } else if rst {
                    notes.push(format!(
                        "full close at frame #{}: the peer's later data drew a RST (close(), legal)",
                        f.number
                    ));
                }
            }
        }
    }
    if fins == 0 {
        Outcome::NotApplicable {
            why: "no FIN in the capture".into(),
        }
    } else {
        notes.insert(0, format!("{fins} FIN(s), each acknowledged"));
        notes.truncate(4);
        Outcome::Pass { notes }
    }
}

fn loss_retransmit(trace: &Trace, tcp: &[&Conversation]) -> Outcome {
    let end_ns = trace.frames.last().map_or(0, |f| f.rel_ns);
    let mut episodes = 0;
    for c in tcp {
        let segs: Vec<_> = segments(trace, c).collect();
        for (k, (d, f, t)) in segs.iter().enumerate() {
            if !f.labels.contains(&Label::DupAck(3)) {
                continue;
            }
            episodes += 1;
            let hole = t.ack;
            let sender = 1 - d;
            if end_ns.saturating_sub(f.rel_ns) < RETRANSMIT_PATIENCE_NS {
                continue;
            }
            let resent = segs[k + 1..].iter().any(|(d2, _, t2)| {
                *d2 == sender && t2.seq <= hole && hole < t2.seq + t2.segment_len().max(1)
            });
            let filled = segs[k + 1..]
                .iter()
                .any(|(d2, _, t2)| d2 == d && t2.flags.ack && t2.ack > hole);
            let reset = segs[k + 1..].iter().any(|(_, _, t2)| t2.flags.rst);
            if !resent && !filled && !reset {
                return Outcome::Fail {
                    violation: Violation::new(
                        "RFC 9293 §3.8.1; RFC 5681 §3.2 (a lost segment is retransmitted)",
                        "a range the receiver reported missing was never retransmitted",
                    )
                    .frame(f.number)
                    .field("seq")
                    .expected(format!(
                        "a segment from the sender covering {} after the third duplicate ACK",
                        rel(c, sender, hole)
                    ))
                    .actual(format!(
                        "none until the end of the capture ({} later)",
                        ms(end_ns - f.rel_ns)
                    )),
                };
            }
        }
    }
    if episodes == 0 {
        Outcome::NotApplicable {
            why: "no three duplicate ACKs: the capture shows no loss the sender had to repair"
                .into(),
        }
    } else {
        Outcome::Pass {
            notes: vec![format!("{episodes} loss episode(s), each repaired")],
        }
    }
}

fn sack_consistency(trace: &Trace, tcp: &[&Conversation]) -> Outcome {
    let mut blocks_seen = 0;
    for c in tcp {
        let segs: Vec<_> = segments(trace, c).collect();
        let mut max_end: [Option<SeqNumber>; 2] = [None; 2];
        for (d, _, t) in &segs {
            let end = t.seq + t.segment_len();
            if !t.flags.rst && max_end[*d].is_none_or(|m| end > m) {
                max_end[*d] = Some(end);
            }
        }
        for (d, f, t) in &segs {
            for o in &t.options {
                let crate::wire::TcpOption::SackRange(blocks) = o else {
                    continue;
                };
                for (n, (l, r)) in blocks.iter().enumerate() {
                    blocks_seen += 1;
                    let o = 1 - d;
                    let block = format!("{{{}:{}}}", rel(c, o, *l), rel(c, o, *r));
                    if let Some(sent) = max_end[o] {
                        if *r > sent {
                            return Outcome::Fail {
                                violation: Violation::new(
                                    "RFC 2018 §3 (a block reports data received)",
                                    "a SACK block covers data the peer never sent",
                                )
                                .frame(f.number)
                                .field("tcp.options.sack")
                                .expected(format!("right edge <= {}", rel(c, o, sent)))
                                .actual(block),
                            };
                        }
                    }
                    if n > 0 && t.flags.ack && *r <= t.ack {
                        return Outcome::Fail {
                            violation: Violation::new(
                                "RFC 2018 §3, §4; RFC 2883 (only a first block may be a D-SACK)",
                                "a SACK block after the first lies at or below the cumulative ACK",
                            )
                            .frame(f.number)
                            .field("tcp.options.sack")
                            .expected(format!("a block above ack {}", rel(c, o, t.ack)))
                            .actual(block),
                        };
                    }
                }
            }
        }
    }
    if blocks_seen == 0 {
        Outcome::NotApplicable {
            why: "no SACK block in the capture".into(),
        }
    } else {
        Outcome::Pass {
            notes: vec![format!("{blocks_seen} SACK block(s), all consistent")],
        }
    }
}

fn nagle(trace: &Trace, tcp: &[&Conversation]) -> Outcome {
    let mut small = 0;
    for c in tcp {
        let segs: Vec<_> = segments(trace, c).collect();
        // The sender's MSS: the peer's announcement, else the largest payload the direction sent.
        let mss = |d: usize| -> usize {
            let announced = segs
                .iter()
                .find(|(d2, _, t2)| *d2 != d && t2.flags.syn)
                .and_then(|(_, _, t2)| t2.mss());
            announced.map(|m| m as usize).unwrap_or_else(|| {
                segs.iter()
                    .filter(|(d2, _, _)| *d2 == d)
                    .map(|(_, _, t2)| t2.payload_len)
                    .max()
                    .unwrap_or(0)
            })
        };
        let mss = [mss(0), mss(1)];
        let mut acked: [Option<SeqNumber>; 2] = [None; 2];
        // Per direction: the end of the newest unacknowledged small segment and its frame.
        let mut outstanding: [Option<(SeqNumber, usize)>; 2] = [None; 2];
        let mut nxt: [Option<SeqNumber>; 2] = [None; 2];
        for (d, f, t) in &segs {
            let o = 1 - d;
            if t.flags.ack {
                acked[o] = Some(acked[o].map_or(t.ack, |a| if t.ack > a { t.ack } else { a }));
            }
            if let (Some((end, _)), Some(a)) = (outstanding[*d], acked[*d]) {
                if a >= end {
                    outstanding[*d] = None;
                }
            }
            let end = t.seq + t.payload_len as u32;
            let new = nxt[*d].is_none_or(|n| end > n) && !f.labels.contains(&Label::Retransmission);
            if t.payload_len > 0 && new {
                nxt[*d] = Some(end);
                let options = t.options.iter().map(option_len).sum::<usize>();
                let full = mss[*d].saturating_sub(options.div_ceil(4) * 4);
                if t.payload_len < full && !t.flags.fin && !t.flags.syn {
                    small += 1;
                    if let Some((_, first)) = outstanding[*d] {
                        let mut why = String::new();
                        let _ = write!(
                            why,
                            "two sub-MSS segments were unacknowledged at once (frames #{first} and #{}), \
                             which Nagle forbids; legal with TCP_NODELAY or TCP_CORK released, which a \
                             capture cannot show",
                            f.number
                        );
                        return Outcome::NotApplicable { why };
                    }
                    outstanding[*d] = Some((end, f.number));
                }
            }
        }
    }
    if small == 0 {
        Outcome::NotApplicable {
            why: "no sub-MSS data segment in the capture".into(),
        }
    } else {
        Outcome::Pass {
            notes: vec![format!(
                "{small} sub-MSS segment(s), never two unacknowledged at once (consistent with Nagle)"
            )],
        }
    }
}

fn option_len(o: &crate::wire::TcpOption) -> usize {
    use crate::wire::TcpOption::*;
    match o {
        EndOfList | NoOperation => 1,
        MaxSegmentSize(_) => 4,
        WindowScale(_) => 3,
        SackPermitted => 2,
        SackRange(b) => 2 + 8 * b.len(),
        Timestamp { .. } => 10,
        Unknown { data, .. } => 2 + data.len(),
    }
}

#[cfg(test)]
mod tests;
