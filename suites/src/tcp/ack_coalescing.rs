use std::time::Duration;

use harness::exec::OpResult;
use harness::frame::Host;
use harness::lab::LabConfig;
use harness::link::{Impairment, LinkEventKind, LinkSpec, RelaySpec, Rule};
use harness::ops::{Op, Program, SockOpt};
use harness::property::{Cap, Subject, TimingBounds};
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::Family;
use harness::trace::{ConversationKind, Trace};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::conn::{connected_on, ProgramObserved};

/// What a coalescing case observed: the program's outcomes, and the timing its subject is held to (Linux's
/// constants for the kernel, the RFCs' bounds for another stack; `harness/src/backend/mod.rs`).
#[derive(Debug)]
pub struct CoalescingObserved {
    pub program: ProgramObserved,
    pub timing: TimingBounds,
}

/// RFC 9293 MUST-40: "an ACK should not be excessively delayed; in particular, the delay MUST be less than
/// 0.5 seconds". Linux's delayed-ACK timer runs between TCP_DELACK_MIN (40 ms) and TCP_DELACK_MAX (200 ms),
/// so the 300 ms between TCP_DELACK_MAX and this bound is the scheduling margin on a loaded machine.
/// The check uses the backend's bounds ([`TimingBounds`]); for the kernel they are these constants (a test
/// keeps them equal).
#[cfg(test)]
const MUST_40: Duration = Duration::from_millis(500);
/// An out-of-order or gap-filling segment must be answered "at once" (RFC 9293 §3.8.6.3 MUST-58/59 via RFC
/// 5681 §4.2: "a TCP receiver SHOULD send an immediate duplicate ACK when an out-of-order segment arrives"
/// and "an immediate ACK when the incoming segment fills in all or part of a gap"). Measured as: a segment
/// from b follows within this time. 40 ms is TCP_DELACK_MIN: the delayed-ACK timer is never armed for less,
/// so a reply sooner than that was not delayed-ACKed; it also covers Linux's SACK compression
/// (net.ipv4.tcp_comp_sack_delay_ns, 1 ms, applied after the third duplicate ACK) and relay scheduling.
/// For a stack other than Linux, "at once" is held to the RFC's only timed bound, MUST-40's 0.5 s
/// (`TimingBounds::RFC.immediate_ack`).
#[cfg(test)]
const AT_ONCE: Duration = Duration::from_millis(40);
/// Full segments delivered in order before the coalescing claim applies: Linux starts in quick-ack mode
/// for up to TCP_MAX_QUICKACKS (16) segments (tcp_incr_quickack) and re-enters it after out-of-order data,
/// so the claim needs a run well past that.
const MIN_FULL_SEGMENTS: usize = 48;
/// Linux ACKs a segment at once when it grows the receive window: tcp_event_data_recv → tcp_grow_window
/// raises rcv_ssthresh by max(incr, 2 · skb->len) and sets `icsk_ack.quick |= 1` (tcp_input.c), so the
/// next ACK check is in quick-ack mode. With the default (autotuned) SO_RCVBUF and a reader that keeps the
/// queue empty, tcp_rcvbuf_grow lets window_clamp follow the growing buffer, so the window can grow on
/// every segment for the whole transfer: measured after a relay drop, 204 full segments each ACKed alone,
/// each ACK's window field ~2.8 units (of 1024: 2 × 1428 bytes) above the previous one. Segments covered
/// by such window-growth ACKs are left out of the coalescing claim's count (an ACK that does not grow
/// the window is still held to it); this is a named kernel behaviour, not a tolerance.
const WINDOW_GROWTH: &str = "tcp_grow_window: an ACK that grows the window is sent at once";

/// How b reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "pattern", rename_all = "snake_case")]
pub enum ReadPattern {
    /// One read_exact of everything: the reader is always waiting for data.
    Continuous,
    /// `reads` chunks, sleeping `sleep_ms` before each: the receive buffer fills while b sleeps.
    Sleepy { reads: u32, sleep_ms: u32 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CoalescingCase {
    pub total: usize,
    /// b's SO_RCVBUF (None: the tcp_rmem default).
    pub rcvbuf: Option<i32>,
    pub read: ReadPattern,
    /// b sets TCP_QUICKACK on the accepted socket before reading.
    pub quickack: bool,
    /// The relay drops the n-th data segment a -> b (out-of-order data, then a gap-filling retransmission).
    pub drop_nth: Option<u32>,
    pub relay_seed: u64,
}

const PORT: u16 = 5002;

fn coalescing_program(case: &CoalescingCase) -> Program {
    let b_opts: Vec<SockOpt> = case.rcvbuf.map(SockOpt::RcvBuf).into_iter().collect();
    let mut p = connected_on(PORT, &[], &b_opts);
    if case.quickack {
        p.b.push(Op::SetOpt {
            sock: 1,
            opt: SockOpt::QuickAck(true),
        });
    }
    match case.read {
        ReadPattern::Continuous => p.b.push(Op::ReadExact {
            sock: 1,
            len: case.total,
        }),
        ReadPattern::Sleepy { reads, sleep_ms } => {
            let chunk = case.total.div_ceil(reads as usize);
            let mut left = case.total;
            while left > 0 {
                let n = chunk.min(left);
                p.b.push(Op::Sleep { ms: sleep_ms });
                p.b.push(Op::ReadExact { sock: 1, len: n });
                left -= n;
            }
        }
    }
    p.b.extend([Op::Sync, Op::Close { sock: 1 }, Op::Sync]);
    p.a.extend([
        Op::Write {
            sock: 0,
            len: case.total,
        },
        Op::Sync,
        Op::Close { sock: 0 },
        Op::Sync,
    ]);
    p
}

/// One data segment from a that reached b, as the ACK analysis sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataSeg {
    pub number: usize,
    pub ns: u64,
    pub seq: u32,
    pub len: u32,
}

/// One segment from b (its cumulative ACK and the window field as sent, unscaled: the scale is fixed
/// after the handshake, so two of b's windows compare as sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckSeg {
    pub number: usize,
    pub ns: u64,
    pub ack: u32,
    pub win: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Data(DataSeg),
    Ack(AckSeg),
}

/// What the ACK analysis found (pure: built from events, unit-tested on hand-made data).
#[derive(Debug, Default, Clone)]
pub struct AckAnalysis {
    /// (ACK frame, first unacknowledged data frame it covers, delay ns) over MUST_40.
    pub late: Vec<(usize, usize, u64)>,
    /// Data frames never covered by any ACK.
    pub never_acked: Vec<usize>,
    /// (data frame, kind "out-of-order"/"gap-filling") not answered within AT_ONCE, with the delay if any.
    pub slow_ooo: Vec<(usize, &'static str, Option<u64>)>,
    /// Out-of-order and gap-filling segments seen.
    pub ooo_seen: usize,
    /// Full segments delivered in order.
    pub full_in_order: usize,
    /// Full segments covered by each advancing ACK: (ACK frame, count).
    pub per_ack: Vec<(usize, usize)>,
    /// Advancing ACKs that advertised a larger window than b's previous ACK, and the full segments they
    /// covered: Linux sends those at once (see [`WINDOW_GROWTH`]).
    pub growth_acks: usize,
    pub full_on_growth: usize,
    /// Largest delay from the first unacknowledged segment to its ACK.
    pub max_delay_ns: u64,
}

impl AckAnalysis {
    pub fn max_per_ack(&self) -> usize {
        self.per_ack.iter().map(|p| p.1).max().unwrap_or(0)
    }
    pub fn stretch(&self) -> usize {
        self.per_ack.iter().filter(|p| p.1 > 2).count()
    }
}

/// Walks a's data segments (as delivered to b) and b's ACKs in capture order. `full` is the full segment
/// size (the largest payload seen).
pub fn analyse(events: &[Event], full: u32, at_once_ns: u64, must40_ns: u64) -> AckAnalysis {
    let mut out = AckAnalysis::default();
    // Received ranges above rcv_nxt (b's out-of-order queue), as b sees it.
    let mut rcv_nxt: Option<u32> = None;
    let mut ofo: Vec<(u32, u32)> = Vec::new();
    // In-order data not yet covered by an ACK: (frame, ns, end, full?).
    let mut pending: Vec<(usize, u64, u32, bool)> = Vec::new();
    // Out-of-order / gap-filling segments waiting for b's answer: (frame, ns, kind).
    let mut waiting: Vec<(usize, u64, &'static str)> = Vec::new();
    let lt = |a: u32, b: u32| (a.wrapping_sub(b) as i32) < 0;
    let mut prev_win: Option<u16> = None;
    for ev in events {
        match *ev {
            Event::Data(d) => {
                let end = d.seq.wrapping_add(d.len);
                let nxt = *rcv_nxt.get_or_insert(d.seq);
                if !lt(nxt, end) {
                    continue; // a duplicate of data b has: not the claim's business
                }
                if lt(nxt, d.seq) {
                    // Out of order: a hole before it.
                    ofo.push((d.seq, end));
                    out.ooo_seen += 1;
                    waiting.push((d.number, d.ns, "out-of-order"));
                    continue;
                }
                let filled = !ofo.is_empty();
                let mut new_nxt = end;
                ofo.sort_by_key(|r| r.0.wrapping_sub(nxt));
                let mut k = 0;
                while k < ofo.len() {
                    if !lt(new_nxt, ofo[k].0) {
                        if lt(new_nxt, ofo[k].1) {
                            new_nxt = ofo[k].1;
                        }
                        ofo.remove(k);
                    } else {
                        k += 1;
                    }
                }
                rcv_nxt = Some(new_nxt);
                if filled {
                    out.ooo_seen += 1;
                    waiting.push((d.number, d.ns, "gap-filling"));
                    // Data b holds now counts from here: the gap filler's ACK covers it at once.
                    pending.push((d.number, d.ns, new_nxt, false));
                } else {
                    out.full_in_order += usize::from(d.len == full);
                    pending.push((d.number, d.ns, new_nxt, d.len == full));
                }
            }
            Event::Ack(a) => {
                let grew = prev_win.is_some_and(|w| a.win > w);
                prev_win = Some(a.win);
                for (frame, ns, kind) in waiting.drain(..) {
                    let dt = a.ns.saturating_sub(ns);
                    if dt > at_once_ns {
                        out.slow_ooo.push((frame, kind, Some(dt)));
                    }
                }
                let covered: Vec<(usize, u64, u32, bool)> = pending
                    .iter()
                    .copied()
                    .filter(|p| !lt(a.ack, p.2))
                    .collect();
                if covered.is_empty() {
                    continue;
                }
                pending.retain(|p| lt(a.ack, p.2));
                let first = covered[0];
                let dt = a.ns.saturating_sub(first.1);
                out.max_delay_ns = out.max_delay_ns.max(dt);
                if dt > must40_ns {
                    out.late.push((a.number, first.0, dt));
                }
                let full_covered = covered.iter().filter(|p| p.3).count();
                out.per_ack.push((a.number, full_covered));
                if grew {
                    out.growth_acks += 1;
                    out.full_on_growth += full_covered;
                }
            }
        }
    }
    for (frame, _, kind) in waiting {
        out.slow_ooo.push((frame, kind, None));
    }
    out.never_acked = pending.iter().map(|p| p.0).collect();
    out
}

/// ACK coalescing: delayed ACKs, their bound, and immediate ACKs for out-of-order data (lab Q20).
///
/// RFC 9293 §3.8.6.3: a TCP SHOULD implement a delayed ACK (SHLD-18), "an ACK SHOULD be generated for at
/// least every second full-sized segment" (SHLD-19), and the delay MUST be less than 0.5 s (MUST-40); RFC
/// 5681 §4.2 (MUST-58/59 by reference; RFC 1122 §4.2.3.2): out-of-order segments get an immediate
/// duplicate ACK and a segment filling a gap an immediate ACK.
///
/// Cases: a writes 96–384 KB at once through the relay link (no delay); b reads continuously or in 4–24
/// chunks with 2–30 ms sleeps, with SO_RCVBUF default or 32–256 KB, with or without TCP_QUICKACK set
/// before reading; in a third of the cases the relay drops the 10th–40th data segment a -> b (so b sees
/// out-of-order data and then the gap-filling retransmission).
///
/// Checked on the wire (frames from b after data from a, capture timestamps):
/// - every delivered data segment is covered by an ACK, and every ACK comes within 500 ms (MUST-40) of
///   the first in-order segment it is the first to cover (no added tolerance: Linux's TCP_DELACK_MAX is
///   200 ms, leaving 300 ms of scheduling margin);
/// - coalescing: when at least 48 full segments arrive in order (past Linux's quick-ack phase,
///   TCP_MAX_QUICKACKS 16) and are acknowledged by ACKs that do not grow b's window (a window-growth ACK
///   goes at once: [`WINDOW_GROWTH`]), at least one ACK covers two or more full segments (SHLD-18/19: the
///   receiver does not ACK every segment);
/// - every out-of-order or gap-filling segment is followed by a segment from b within 40 ms
///   (TCP_DELACK_MIN; see `AT_ONCE`).
///
/// Stretch ACKs (one ACK covering more than two full segments) are a deliberate annotated pass, not a
/// failure: SHLD-19 is a SHOULD, and Linux (tcp_input.c `__tcp_ack_snd_check`) sends an immediate ACK only
/// when more than one full frame was received *and* the window can advance (`__tcp_select_window(sk) >=
/// tp->rcv_wnd`), or in quick-ack mode, or with out-of-order data; otherwise it arms the delayed-ACK timer.
/// A reader that sleeps (or a receive buffer the application drains slower than the wire) keeps the window
/// from advancing, so ACKs stretch (docs/kernel-facts.md: 1.8–4.9 segments per ACK in a 1 MB transfer). The notes
/// report the largest ACK, the number of stretch ACKs, and the reader's state (pattern, SO_RCVBUF as the
/// kernel reported it, quickack). The MUST-40 bound still applies to stretch ACKs.
pub struct AckCoalescing;

impl Property for AckCoalescing {
    type Case = CoalescingCase;
    type Observed = CoalescingObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.ack.coalescing",
            suite: "tcp-data",
            title: "the receiver coalesces ACKs but never delays one by 500 ms or more, and ACKs out-of-order and gap-filling data at once",
            clauses: &[
                "RFC 9293 §3.8.6.3 (SHLD-18, SHLD-19, MUST-40, MUST-58/59)",
                "RFC 5681 §4.2",
                "RFC 1122 §4.2.3.2",
            ],
            questions: &["Q20"],
            subject: Subject::B,
            needs: Needs {
                links: &[LinkKind::Relay],
                kernel: &[],
                caps: &[Cap::Tcp, Cap::SetOptRcvBuf],
                ethernet: false,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> CoalescingCase {
        CoalescingCase {
            total: rng.gen_range(96 * 1024..=384 * 1024),
            rcvbuf: rng
                .gen_bool(0.5)
                .then(|| rng.gen_range(32 * 1024..=256 * 1024)),
            read: if rng.gen_bool(0.5) {
                ReadPattern::Continuous
            } else {
                ReadPattern::Sleepy {
                    reads: rng.gen_range(4..=24),
                    sleep_ms: rng.gen_range(2..=30),
                }
            },
            quickack: rng.gen_bool(0.3),
            drop_nth: rng.gen_bool(0.33).then(|| rng.gen_range(10..=40)),
            relay_seed: rng.gen(),
        }
    }

    fn lab_config(&self, case: &CoalescingCase) -> LabConfig {
        LabConfig {
            link: LinkSpec::Relay(RelaySpec {
                a_to_b: Impairment {
                    rules: case
                        .drop_nth
                        .map(|n| vec![Rule::DropNthData { n }])
                        .unwrap_or_default(),
                    ..Default::default()
                },
                b_to_a: Impairment::default(),
                seed: case.relay_seed,
            }),
            ..Default::default()
        }
    }

    fn describe(&self, c: &CoalescingCase) -> String {
        format!(
            "a writes {} bytes; b {}{}, SO_RCVBUF {}{}",
            c.total,
            match c.read {
                ReadPattern::Continuous => "reads continuously".to_string(),
                ReadPattern::Sleepy { reads, sleep_ms } =>
                    format!("reads in {reads} chunks sleeping {sleep_ms} ms"),
            },
            if c.quickack { " with TCP_QUICKACK" } else { "" },
            c.rcvbuf
                .map(|r| r.to_string())
                .unwrap_or_else(|| "default".into()),
            c.drop_nth
                .map(|n| format!("; relay drops data segment {n}"))
                .unwrap_or_default()
        )
    }

    fn execute(
        &self,
        case: &CoalescingCase,
        env: &CaseEnv,
    ) -> Result<CoalescingObserved, harness::HarnessError> {
        // Sleepy readers take up to 24 × 30 ms; retransmissions after a drop up to an RTO (200 ms min).
        Ok(CoalescingObserved {
            program: ProgramObserved::run(env, &coalescing_program(case), 2000)?,
            timing: env.timing,
        })
    }

    fn settle(&self, _case: &CoalescingCase) -> Duration {
        Duration::from_millis(50)
    }

    fn check(
        &self,
        case: &CoalescingCase,
        observed: &CoalescingObserved,
        trace: &Trace,
    ) -> Verdict {
        let timing = observed.timing;
        let observed = &observed.program;
        let (at_once, must_40) = (timing.immediate_ack, timing.ack_delay_max);
        let mut findings = Findings::default();
        let read: u64 = observed
            .outcomes
            .iter()
            .filter(|o| o.host == Host::B)
            .map(|o| match o.result {
                OpResult::Read { n, .. } => n,
                _ => 0,
            })
            .sum();
        let Some(conv) = trace
            .conversations
            .iter()
            .find(|c| c.kind == ConversationKind::Tcp)
        else {
            return Verdict::Invalid {
                reason: "no TCP conversation captured".into(),
            };
        };
        let dropped: Vec<usize> = trace
            .link_events
            .iter()
            .filter(|e| e.kind == LinkEventKind::Dropped)
            .map(|e| e.frame)
            .collect();
        let mut events = Vec::new();
        let mut full = 0u32;
        for &i in &conv.frames {
            let f = &trace.frames[i];
            let Some(t) = f.tcp() else { continue };
            if t.flags.syn || t.flags.rst || dropped.contains(&i) {
                continue;
            }
            match f.from {
                Some(Host::A) if t.payload_len > 0 => {
                    full = full.max(t.payload_len as u32);
                    events.push(Event::Data(DataSeg {
                        number: f.number,
                        ns: f.rel_ns,
                        seq: f.rel_seq.unwrap_or(0),
                        len: t.payload_len as u32,
                    }));
                }
                Some(Host::B) if t.flags.ack => events.push(Event::Ack(AckSeg {
                    number: f.number,
                    ns: f.rel_ns,
                    ack: f.rel_ack.unwrap_or(0),
                    win: t.window,
                })),
                _ => {}
            }
        }
        let an = analyse(
            &events,
            full,
            at_once.as_nanos() as u64,
            must_40.as_nanos() as u64,
        );
        let ms = |ns: u64| format!("{:.1} ms", ns as f64 / 1e6);
        for &(ack, data, dt) in &an.late {
            findings.push(
                Violation::new(
                    "RFC 9293 §3.8.6.3 (MUST-40: an ACK is delayed less than 0.5 s)",
                    "an ACK came 500 ms or more after the data it acknowledges",
                )
                .frames([data, ack])
                .field("time from the first unacknowledged segment to its ACK")
                .expected(format!("< {} ms", must_40.as_millis()))
                .actual(ms(dt)),
            );
        }
        if let Some(&first) = an.never_acked.first() {
            findings.push(
                Violation::new(
                    "RFC 9293 §3.8.6.3 (MUST-40)",
                    format!(
                        "{} data segment(s) were never acknowledged",
                        an.never_acked.len()
                    ),
                )
                .frames(an.never_acked.iter().copied().take(5))
                .field("ack from b")
                .expected(format!("an ACK covering frame #{first} within 500 ms"))
                .actual("none until the end of the capture"),
            );
        }
        for &(frame, kind, dt) in &an.slow_ooo {
            findings.push(
                Violation::new(
                    "RFC 5681 §4.2; RFC 9293 §3.8.6.3 (MUST-58/59)",
                    format!("a {kind} segment was not acknowledged at once"),
                )
                .frame(frame)
                .field("time to b's next segment")
                .expected(format!("< {} ms ({})", at_once.as_millis(), timing.source))
                .actual(dt.map(ms).unwrap_or_else(|| "no segment from b".into())),
            );
        }
        // Segments acknowledged by window-growth ACKs are not delayed-ACK candidates ([`WINDOW_GROWTH`]).
        let coalescable = an.full_in_order.saturating_sub(an.full_on_growth);
        if coalescable >= MIN_FULL_SEGMENTS {
            findings.check(an.max_per_ack() >= 2, || {
                Violation::new(
                    "RFC 9293 §3.8.6.3 (SHLD-18/SHLD-19: delayed ACK; an ACK for every second full-sized segment)",
                    "the receiver acknowledged every full segment on its own (no ACK coalescing)",
                )
                .frames(an.per_ack.iter().rev().take(3).map(|p| p.0))
                .field("full segments covered per ACK")
                .expected(format!(
                    ">= 2 for at least one ACK among {} full segments in order ({} of them acknowledged by ACKs that did not grow the window)",
                    an.full_in_order, coalescable
                ))
                .actual(format!(
                    "at most {} over {} ACKs",
                    an.max_per_ack(),
                    an.per_ack.len()
                ))
            });
        }
        // Last: a short read is usually a consequence of the wire findings above.
        findings.check(read == case.total as u64, || {
            Violation::new("RFC 9293 §3.4", "b did not read everything a wrote")
                .field("bytes read by b")
                .expected(case.total)
                .actual(read)
        });
        let rcvbuf = observed
            .outcomes
            .iter()
            .filter(|o| o.host == Host::B && matches!(o.op, Op::ReadExact { .. }))
            .find_map(|o| o.sock.as_ref().and_then(|s| s.rcvbuf));
        findings.note(format!(
            "{} ACKs for {} full segments in order, max {} per ACK, {} stretch ACK(s) (> 2 full segments), max ACK delay {}; reader {}, SO_RCVBUF {}{}",
            an.per_ack.len(),
            an.full_in_order,
            an.max_per_ack(),
            an.stretch(),
            ms(an.max_delay_ns),
            match case.read {
                ReadPattern::Continuous => "blocked in read (continuous)".to_string(),
                ReadPattern::Sleepy { reads, sleep_ms } => format!("sleeping {sleep_ms} ms before each of {reads} reads"),
            },
            rcvbuf.map(|r| r.to_string()).unwrap_or_else(|| "?".into()),
            if case.quickack { ", TCP_QUICKACK set" } else { "" },
        ));
        if an.growth_acks > 0 {
            findings.note(format!(
                "{} ACK(s) grew b's window and went at once, covering {} full segment(s) ({WINDOW_GROWTH})",
                an.growth_acks, an.full_on_growth
            ));
        }
        if an.ooo_seen > 0 {
            findings.note(format!(
                "{} out-of-order/gap-filling segment(s) answered at once",
                an.ooo_seen
            ));
        }
        findings.verdict()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_bounds_are_linuxs_constants_and_another_stack_gets_the_rfcs() {
        assert_eq!(TimingBounds::LINUX.immediate_ack, AT_ONCE);
        assert_eq!(TimingBounds::LINUX.ack_delay_max, MUST_40);
        assert_eq!(TimingBounds::RFC.ack_delay_max, MUST_40);
        assert!(TimingBounds::RFC.immediate_ack > AT_ONCE);
    }

    fn d(number: usize, ms: u64, seq: u32, len: u32) -> Event {
        Event::Data(DataSeg {
            number,
            ns: ms * 1_000_000,
            seq,
            len,
        })
    }
    fn a(number: usize, ms: u64, ack: u32) -> Event {
        aw(number, ms, ack, 100)
    }
    fn aw(number: usize, ms: u64, ack: u32, win: u16) -> Event {
        Event::Ack(AckSeg {
            number,
            ns: ms * 1_000_000,
            ack,
            win,
        })
    }
    const AT: u64 = 40_000_000;
    const M40: u64 = 500_000_000;

    #[test]
    fn coalesced_acks_are_counted() {
        let ev = [
            d(1, 0, 1, 100),
            d(2, 0, 101, 100),
            a(3, 1, 201),
            d(4, 2, 201, 100),
            d(5, 2, 301, 100),
            d(6, 2, 401, 100),
            a(7, 3, 501),
        ];
        let an = analyse(&ev, 100, AT, M40);
        assert_eq!(an.per_ack, vec![(3, 2), (7, 3)]);
        assert_eq!(an.stretch(), 1);
        assert!(an.late.is_empty() && an.never_acked.is_empty() && an.slow_ooo.is_empty());
    }

    #[test]
    fn window_growth_acks_are_counted_apart() {
        // Each segment ACKed alone; the second and third ACKs grow the window (tcp_grow_window), the
        // fourth does not.
        let ev = [
            d(1, 0, 1, 100),
            aw(2, 0, 101, 60),
            d(3, 1, 101, 100),
            aw(4, 1, 201, 63),
            d(5, 2, 201, 100),
            aw(6, 2, 301, 66),
            d(7, 3, 301, 100),
            aw(8, 3, 401, 66),
        ];
        let an = analyse(&ev, 100, AT, M40);
        assert_eq!(an.full_in_order, 4);
        assert_eq!((an.growth_acks, an.full_on_growth), (2, 2));
        assert_eq!(an.max_per_ack(), 1);
    }

    #[test]
    fn late_and_missing_acks_are_found() {
        let ev = [d(1, 0, 1, 100), a(2, 600, 101), d(3, 700, 101, 100)];
        let an = analyse(&ev, 100, AT, M40);
        assert_eq!(an.late, vec![(2, 1, 600_000_000)]);
        assert_eq!(an.never_acked, vec![3]);
    }

    #[test]
    fn out_of_order_and_gap_filling_need_an_answer_at_once() {
        // Segment 101..201 lost; 201..301 arrives out of order, answered at once; the retransmission
        // fills the gap and is answered 50 ms later: too slow.
        let ev = [
            d(1, 0, 1, 100),
            a(2, 1, 101),
            d(3, 2, 201, 100),
            a(4, 3, 101),
            d(5, 200, 101, 100),
            a(6, 250, 301),
        ];
        let an = analyse(&ev, 100, AT, M40);
        assert_eq!(an.ooo_seen, 2);
        assert_eq!(an.slow_ooo, vec![(5, "gap-filling", Some(50_000_000))]);
        assert!(an.never_acked.is_empty(), "{an:?}");
    }
}
