//! When segments and ACKs leave (suite `tcp-data`): delayed ACKs, Nagle / NODELAY / CORK, and silly window
//! syndrome avoidance on both sides.

use std::time::Duration;

use harness::frame::Host;
use harness::link::{Impairment, LinkSpec, RelaySpec, Rule};
use harness::ops::{Op, SockOpt};
use harness::property::{
    CaseEnv, CaseRng, Findings, LinkKind, Needs, Property, PropertyInfo, Verdict, Violation,
};
use harness::sock::Family;
use harness::trace::Trace;
use harness::{HarnessError, LabConfig, SysctlSetting};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::conn::{connected, outcomes_of, read_result, segments, Seg};
use crate::tcp_close::ProgramObserved;

/// Payload of a full-sized segment with timestamps (the lab default) on a 1500-byte MTU: MSS − 12.
pub fn full_segment(family: Family) -> u32 {
    match family {
        Family::Ipv4 => 1448,
        Family::Ipv6 => 1428,
    }
}

fn family_of(trace: &Trace) -> Family {
    trace
        .conversations
        .iter()
        .find(|c| c.kind == harness::trace::ConversationKind::Tcp)
        .map_or(Family::Ipv4, |c| Family::of(c.client.addr))
}

fn relay(a_to_b: Impairment, b_to_a: Impairment) -> LinkSpec {
    LinkSpec::Relay(RelaySpec {
        a_to_b,
        b_to_a,
        seed: 1,
    })
}

fn delay(ms: u32) -> Impairment {
    Impairment {
        delay_us: ms as u64 * 1000,
        ..Impairment::default()
    }
}

fn exec(
    p: &harness::ops::Program,
    env: &CaseEnv,
    io_ms: u32,
) -> Result<ProgramObserved, HarnessError> {
    let mut cfg = harness::exec::ExecConfig::new(env.seed, env.family);
    cfg.io_timeout_ms = io_ms;
    let (outcomes, sockets) = harness::exec::run_program(env.lab, p, cfg)?;
    Ok(ProgramObserved { outcomes, sockets })
}

/// The reader got `bytes` intact.
fn check_read(observed: &ProgramObserved, reader: Host, bytes: u64, findings: &mut Findings) {
    if let Some(r) = outcomes_of(&observed.outcomes, reader, |op| {
        matches!(op, Op::ReadExact { .. })
    })
    .first()
    {
        findings.check(
            read_result(&r.result).is_some_and(|(n, _, m)| n == bytes && m.is_none()),
            || {
                Violation::new("RFC 9293 §3.4", "the reader did not get every byte intact")
                    .field(format!("{} read_exact()", reader.name()))
                    .expected(format!("{bytes} bytes"))
                    .actual(r.result.render())
            },
        );
    }
}

// ---------------------------------------------------------------------------------------------------------
// Delayed ACKs.

/// RFC 9293 MUST-40 (via RFC 1122 §4.2.3.2): an ACK is not delayed more than 0.5 s.
const ACK_DELAY_MAX: Duration = Duration::from_millis(500);
/// "At once" for an out-of-order or hole-filling segment: Linux answers the first at once and may compress
/// further SACKs for up to tcp_comp_sack_delay_ns (1 ms); 25 ms of slack for a loaded 2-core machine stays
/// well below the delayed-ACK timer (TCP_DELACK_MIN 40 ms) this tells apart.
const ACK_AT_ONCE: Duration = Duration::from_millis(25);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoalescingKind {
    /// A burst spaced by a rate-limited relay; b reads as data comes (or after a pause).
    Burst,
    /// The relay drops one segment of the burst: out-of-order and hole-filling segments.
    Hole,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CoalescingCase {
    pub kind: CoalescingKind,
    /// Full segments a writes in one write().
    pub segments: u32,
    /// b turns quick-ack off (TCP_QUICKACK 0) right after accept.
    pub quickack_off: bool,
    /// b waits this long before it starts reading.
    pub read_pause_ms: u32,
    /// Relay rate for bursts, Mbit/s.
    pub rate_mbit: u32,
    /// Hole: the data segment the relay drops.
    pub drop: u32,
    /// `net.ipv4.tcp_comp_sack_nr` on b (0: every SACK at once; Linux default 44).
    pub comp_sack_nr: u32,
}

/// Delayed ACKs (lab Q20).
///
/// RFC 9293 §3.8.6.3: a TCP SHOULD implement a delayed ACK (SHLD-18), SHOULD acknowledge at least every
/// second full-sized segment (SHLD-19), and MUST NOT delay an ACK more than 0.5 s (MUST-40). RFC 5681 §4.2:
/// an out-of-order segment SHOULD be acknowledged at once (a duplicate ACK), and so should a segment that
/// fills a hole. Linux: delayed-ACK timer 40 ms (TCP_DELACK_MIN) to 200 ms (TCP_DELACK_MAX); "quick-ack"
/// mode acknowledges every segment at the start of a connection; TCP_QUICKACK 0 leaves it.
///
/// Stretch ACKs (one ACK for more than two full segments) are an annotated pass, not a failure: Linux
/// (tcp_input.c `__tcp_ack_snd_check`) sends the every-second-segment ACK only while the receive window
/// can advance (`__tcp_select_window() >= rcv_wnd`) or the reader has consumed everything; when the reader
/// lags, it withholds the ACK until the reader frees space — a deliberate departure from SHLD-19 that
/// avoids advertising a window it would have to shrink. Each stretch ACK is reported with the reader's
/// state (reading at once, or pausing).
///
/// Cases: a writes 4–60 full segments at once. Burst: a relay limits a→b to 20–100 Mbit/s so segments
/// arrive one by one; b reads at once or after a 50 ms pause; quick-ack on or off. Hole: the relay drops
/// one segment of the burst (not the last two), SACK compression on or off (tcp_comp_sack_nr).
///
/// Checked: every data segment is covered by an ACK within 500 ms (MUST-40); with quick-ack off and at least
/// four segments, not every segment gets its own ACK (SHLD-18); in a hole case, every segment that arrives
/// beyond the hole is followed within 25 ms by a duplicate ACK (or, when SACK compression waited and the
/// hole filled meanwhile, by an ACK covering it), and the hole-filling segment by an ACK past
/// the hole within 25 ms (RFC 5681 §4.2), far below the 40 ms delayed-ACK timer; the stream arrives intact.
pub struct AckCoalescing;

impl Property for AckCoalescing {
    type Case = CoalescingCase;
    type Observed = ProgramObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.ack.coalescing",
            suite: "tcp-data",
            title: "ACKs are delayed but never beyond 500 ms; out-of-order and hole-filling segments are ACKed at once; stretch ACKs annotated",
            clauses: &[
                "RFC 9293 §3.8.6.3 (SHLD-18, SHLD-19, MUST-40)",
                "RFC 5681 §4.2",
                "RFC 1122 §4.2.3.2",
            ],
            questions: &["Q20"],
            needs: Needs {
                link: LinkKind::Relay,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> CoalescingCase {
        let kind = if rng.gen_bool(0.6) {
            CoalescingKind::Burst
        } else {
            CoalescingKind::Hole
        };
        let segments = rng.gen_range(4..=60);
        CoalescingCase {
            kind,
            segments,
            quickack_off: rng.gen(),
            read_pause_ms: if rng.gen_bool(0.3) { 50 } else { 0 },
            rate_mbit: rng.gen_range(20..=100),
            drop: rng.gen_range(1..=segments.min(10) - 2),
            comp_sack_nr: if rng.gen() { 0 } else { 44 },
        }
    }

    fn lab_config(&self, case: &CoalescingCase) -> LabConfig {
        let a_to_b = match case.kind {
            CoalescingKind::Burst => Impairment {
                rate_bps: Some(case.rate_mbit as u64 * 1_000_000),
                ..Impairment::default()
            },
            CoalescingKind::Hole => Impairment {
                rules: vec![Rule::DropNthData { n: case.drop }],
                ..Impairment::default()
            },
        };
        LabConfig {
            link: relay(a_to_b, Impairment::default()),
            sysctls: vec![SysctlSetting {
                host: Host::B,
                key: "net.ipv4.tcp_comp_sack_nr".into(),
                value: case.comp_sack_nr.to_string(),
            }],
            ..LabConfig::default()
        }
    }

    fn describe(&self, c: &CoalescingCase) -> String {
        format!(
            "a writes {} full segments{}; b quick-ack {}, reads {}",
            c.segments,
            match c.kind {
                CoalescingKind::Burst => format!(" through a {} Mbit/s relay", c.rate_mbit),
                CoalescingKind::Hole => format!(
                    ", the relay drops data segment {} (tcp_comp_sack_nr {})",
                    c.drop, c.comp_sack_nr
                ),
            },
            if c.quickack_off { "off" } else { "on" },
            if c.read_pause_ms > 0 {
                format!("after {} ms", c.read_pause_ms)
            } else {
                "at once".into()
            }
        )
    }

    fn execute(
        &self,
        case: &CoalescingCase,
        env: &CaseEnv,
    ) -> Result<ProgramObserved, HarnessError> {
        let bytes = (case.segments * full_segment(env.family)) as usize;
        let mut p = connected(&[], &[]);
        if case.quickack_off {
            p.b.push(Op::SetOpt {
                sock: 1,
                opt: SockOpt::QuickAck(false),
            });
        }
        p.a.push(Op::Sync);
        p.b.push(Op::Sync);
        // Long enough for the last delayed ACK (TCP_DELACK_MAX 200 ms) to be captured.
        p.a.extend([
            Op::Write {
                sock: 0,
                len: bytes,
            },
            Op::Sleep { ms: 220 },
        ]);
        if case.read_pause_ms > 0 {
            p.b.push(Op::Sleep {
                ms: case.read_pause_ms,
            });
        }
        p.b.push(Op::ReadExact {
            sock: 1,
            len: bytes,
        });
        exec(&p, env, 3000)
    }

    fn check(&self, case: &CoalescingCase, observed: &ProgramObserved, trace: &Trace) -> Verdict {
        let mut findings = Findings::default();
        let segs = segments(trace);
        let full = full_segment(family_of(trace));
        let data: Vec<&Seg> = segs
            .iter()
            .filter(|s| s.from == Host::A && s.len > 0)
            .collect();
        let acks: Vec<&Seg> = segs
            .iter()
            .filter(|s| s.from == Host::B && s.flags.ack)
            .collect();
        let dropped = |s: &Seg| {
            trace
                .link_events
                .iter()
                .any(|e| e.frame == s.index && e.kind == harness::link::LinkEventKind::Dropped)
        };
        // MUST-40: every delivered data segment is covered within 500 ms.
        let mut worst = Duration::ZERO;
        for d in data.iter().filter(|d| !dropped(d)) {
            let end = d.seq.wrapping_add(d.len);
            let covered = acks.iter().find(|a| a.index > d.index && a.ack >= end);
            let Some(a) = covered else {
                findings.push(
                    Violation::new(
                        "RFC 9293 §3.8.6.3 (MUST-40: an ACK is not delayed more than 0.5 s)",
                        "a data segment was never acknowledged",
                    )
                    .frame(d.number)
                    .field("ack")
                    .expected(format!("≥ {end} within 500 ms"))
                    .actual("no such ACK in the capture"),
                );
                break;
            };
            let delay = Duration::from_nanos(a.rel_ns.saturating_sub(d.rel_ns));
            worst = worst.max(delay);
            findings.check(delay <= ACK_DELAY_MAX, || {
                Violation::new(
                    "RFC 9293 §3.8.6.3 (MUST-40: an ACK is not delayed more than 0.5 s)",
                    "an ACK came more than 500 ms after the data it acknowledges",
                )
                .frames([d.number, a.number])
                .field("ACK delay")
                .expected("≤ 500 ms")
                .actual(format!("{} ms", delay.as_millis()))
            });
        }
        match case.kind {
            CoalescingKind::Burst => {
                // Segments per ACK, for SHLD-18 and the stretch-ACK annotation.
                let mut acked = 1u32;
                let mut per_ack: Vec<(u32, usize)> = Vec::new();
                for a in &acks {
                    if a.ack > acked {
                        let n = (a.ack - acked).div_ceil(full);
                        per_ack.push((n, a.number));
                        acked = a.ack;
                    }
                }
                if case.quickack_off && case.segments >= 4 {
                    let one_each = per_ack.iter().all(|(n, _)| *n <= 1);
                    findings.check(!one_each, || {
                        Violation::new(
                            "RFC 9293 §3.8.6.3 (SHLD-18: a TCP SHOULD delay ACKs)",
                            "out of quick-ack mode, the receiver acknowledged every segment on its own",
                        )
                        .frames(per_ack.iter().map(|(_, n)| *n).take(4))
                        .field("segments per ACK")
                        .expected("at least one ACK covering two segments")
                        .actual(format!("{} ACKs for {} segments", per_ack.len(), case.segments))
                    });
                }
                let stretch: Vec<&(u32, usize)> = per_ack.iter().filter(|(n, _)| *n > 2).collect();
                if let Some(max) = stretch.iter().map(|(n, _)| *n).max() {
                    findings.note(format!(
                        "stretch ACKs (Linux withholds ACKs while the window cannot advance): reader {}",
                        if case.read_pause_ms > 0 { "pausing" } else { "reading at once" }
                    ));
                    let _ = max;
                } else {
                    findings.note("every ACK covers at most two segments");
                }
            }
            CoalescingKind::Hole => {
                let Some(hole) = data.iter().find(|d| dropped(d)) else {
                    findings.push(
                        Violation::new(
                            "netconform relay (the case's drop rule)",
                            "the relay dropped nothing",
                        )
                        .field("dropped segments")
                        .expected(case.drop)
                        .actual(0),
                    );
                    return findings.verdict();
                };
                let fill = data.iter().find(|d| {
                    d.index > hole.index
                        && !dropped(d)
                        && d.seq <= hole.seq
                        && hole.seq < d.seq + d.len
                });
                let fill_index = fill.map_or(usize::MAX, |f| f.index);
                for d in data.iter().filter(|d| {
                    d.index > hole.index && d.index < fill_index && !dropped(d) && d.seq > hole.seq
                }) {
                    // A duplicate ACK, or (SACK compression waits up to 1 ms, and the hole may fill
                    // meanwhile) an ACK that already covers the segment.
                    let end = d.seq + d.len;
                    let dup = acks
                        .iter()
                        .find(|a| a.index > d.index && (a.ack <= hole.seq || a.ack >= end));
                    let ok = dup.is_some_and(|a| {
                        Duration::from_nanos(a.rel_ns.saturating_sub(d.rel_ns)) <= ACK_AT_ONCE
                    });
                    findings.check(ok, || {
                        let mut v = Violation::new(
                            "RFC 5681 §4.2 (an out-of-order segment SHOULD be acknowledged at once)",
                            "a segment beyond the hole was not followed by a duplicate ACK at once",
                        )
                        .frame(d.number)
                        .field("duplicate ACK delay")
                        .expected("≤ 25 ms (Linux: at once, SACK compression ≤ 1 ms)")
                        .actual(dup.map_or("none".into(), |a| {
                            format!("{} ms", (a.rel_ns.saturating_sub(d.rel_ns)) / 1_000_000)
                        }));
                        if let Some(a) = dup {
                            v = v.frame(a.number);
                        }
                        v
                    });
                }
                if let Some(f) = fill {
                    let jump = acks.iter().find(|a| a.index > f.index && a.ack > hole.seq);
                    let ok = jump.is_some_and(|a| {
                        Duration::from_nanos(a.rel_ns.saturating_sub(f.rel_ns)) <= ACK_AT_ONCE
                    });
                    findings.check(ok, || {
                        Violation::new(
                            "RFC 5681 §4.2 (a segment that fills a hole SHOULD be acknowledged at once)",
                            "the hole-filling segment was not acknowledged at once",
                        )
                        .frame(f.number)
                        .field("ACK delay")
                        .expected("≤ 25 ms")
                        .actual(jump.map_or("no ACK past the hole".into(), |a| {
                            format!("{} ms (frame #{})", a.rel_ns.saturating_sub(f.rel_ns) / 1_000_000, a.number)
                        }))
                    });
                }
                findings.note("hole: out-of-order and filling segments ACKed at once");
            }
        }
        if worst > Duration::from_millis(200) {
            findings.note("an ACK waited longer than TCP_DELACK_MAX (200 ms)");
        }
        check_read(
            observed,
            Host::B,
            (case.segments * full) as u64,
            &mut findings,
        );
        findings.verdict()
    }
}

// ---------------------------------------------------------------------------------------------------------
// Nagle, NODELAY, CORK.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NagleMode {
    Nagle,
    NoDelay,
    Cork,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NagleCase {
    pub mode: NagleMode,
    /// Sizes of a's small writes.
    pub writes: Vec<usize>,
    /// `net.ipv4.tcp_autocorking` on a.
    pub autocorking: bool,
}

/// One-way delay of the Nagle relay: an ACK takes a 10 ms round trip, so writes 3 ms apart find data
/// unacknowledged.
const NAGLE_DELAY_MS: u32 = 5;
/// NODELAY writes are this far apart.
const NODELAY_GAP_MS: u32 = 3;

/// Nagle's algorithm, TCP_NODELAY and TCP_CORK (lab Q22).
///
/// RFC 9293 §3.7.4 (SHLD-7 via RFC 1122 §4.2.3.4, RFC 896): a sender with unacknowledged data holds a new
/// sub-MSS segment until the data is acknowledged or a full segment can be sent; Linux applies Minshall's
/// variant (`tcp_nagle_check`: at most one *sub-MSS* segment unacknowledged). MUST-17: the application can
/// turn it off (TCP_NODELAY), and each small write then leaves at once. tcp(7) TCP_CORK: partial frames are
/// held while corked (up to 200 ms) and sent when uncorked. PSH: Linux marks the last segment of each
/// write (`tcp_push` → `tcp_mark_push`); RFC 9293 §3.9.1 lets the sender set PSH on the last segment of a
/// SEND.
///
/// Cases: 3–20 writes of 1–400 bytes over a relay with 10 ms round trip. Nagle: back to back; NODELAY:
/// 3 ms apart; CORK: corked, back to back, uncorked 30 ms later. Linux autocorking on or off on a (it may
/// merge small writes while earlier data is still in the host: allowed in every mode checked here).
///
/// Checked (capture order at the relay: a's segments are recorded as they leave a, ACKs as they leave b,
/// so the check never blames a segment sent after a's ACK arrived): Nagle — between a sub-MSS data segment
/// and the ACK covering it no other sub-MSS data segment from a; NODELAY — one segment per write, of that
/// write's size; CORK — every segment but the last is full-sized (one segment if the data fits in one);
/// all modes — the segment carrying the last byte has PSH, and b reads every byte intact.
pub struct Nagle;

impl Property for Nagle {
    type Case = NagleCase;
    type Observed = ProgramObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.nagle",
            suite: "tcp-data",
            title: "Nagle keeps at most one small segment unacknowledged; NODELAY sends each write at once; CORK sends only full segments; PSH ends the data",
            clauses: &[
                "RFC 9293 §3.7.4 (SHLD-7, MUST-17)",
                "RFC 896",
                "RFC 1122 §4.2.3.4",
                "RFC 9293 §3.9.1 (PUSH)",
            ],
            questions: &["Q22"],
            needs: Needs {
                link: LinkKind::Relay,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> NagleCase {
        let mode = match rng.gen_range(0..3) {
            0 => NagleMode::Nagle,
            1 => NagleMode::NoDelay,
            _ => NagleMode::Cork,
        };
        NagleCase {
            mode,
            writes: (0..rng.gen_range(3..=20))
                .map(|_| rng.gen_range(1..=400))
                .collect(),
            autocorking: rng.gen(),
        }
    }

    fn lab_config(&self, case: &NagleCase) -> LabConfig {
        LabConfig {
            link: relay(delay(NAGLE_DELAY_MS), delay(NAGLE_DELAY_MS)),
            sysctls: vec![SysctlSetting {
                host: Host::A,
                key: "net.ipv4.tcp_autocorking".into(),
                value: if case.autocorking { "1" } else { "0" }.into(),
            }],
            ..LabConfig::default()
        }
    }

    fn describe(&self, c: &NagleCase) -> String {
        format!(
            "{:?}: a writes {:?} (autocorking {})",
            c.mode, c.writes, c.autocorking as u8
        )
    }

    fn execute(&self, case: &NagleCase, env: &CaseEnv) -> Result<ProgramObserved, HarnessError> {
        let a_opts = match case.mode {
            NagleMode::Nagle => vec![],
            NagleMode::NoDelay => vec![SockOpt::NoDelay(true)],
            NagleMode::Cork => vec![SockOpt::Cork(true)],
        };
        let mut p = connected(&a_opts, &[]);
        for (i, &w) in case.writes.iter().enumerate() {
            if case.mode == NagleMode::NoDelay && i > 0 {
                p.a.push(Op::Sleep { ms: NODELAY_GAP_MS });
            }
            p.a.push(Op::Write { sock: 0, len: w });
        }
        if case.mode == NagleMode::Cork {
            p.a.extend([
                Op::Sleep { ms: 30 },
                Op::SetOpt {
                    sock: 0,
                    opt: SockOpt::Cork(false),
                },
            ]);
        }
        p.a.push(Op::Sleep { ms: 60 });
        let total: usize = case.writes.iter().sum();
        p.b.push(Op::ReadExact {
            sock: 1,
            len: total,
        });
        exec(&p, env, 2000)
    }

    fn check(&self, case: &NagleCase, observed: &ProgramObserved, trace: &Trace) -> Verdict {
        let mut findings = Findings::default();
        let segs = segments(trace);
        let full = full_segment(family_of(trace));
        let data: Vec<&Seg> = segs
            .iter()
            .filter(|s| s.from == Host::A && s.len > 0 && !s.retransmission)
            .collect();
        let total: usize = case.writes.iter().sum();
        match case.mode {
            NagleMode::Nagle => {
                for (k, d) in data.iter().enumerate() {
                    if d.len >= full {
                        continue;
                    }
                    let end = d.seq + d.len;
                    let acked_at = segs
                        .iter()
                        .find(|a| a.from == Host::B && a.index > d.index && a.ack >= end)
                        .map_or(usize::MAX, |a| a.index);
                    if let Some(next) = data[k + 1..]
                        .iter()
                        .find(|n| n.index < acked_at && n.len < full)
                    {
                        findings.push(
                            Violation::new(
                                "RFC 9293 §3.7.4 (SHLD-7: Nagle); RFC 896",
                                "a second small segment was sent while a small segment was unacknowledged",
                            )
                            .frames([d.number, next.number])
                            .field("unacknowledged sub-MSS segments")
                            .expected("at most one")
                            .actual(format!("{} bytes and {} bytes", d.len, next.len)),
                        );
                        break;
                    }
                }
                findings.note(format!(
                    "Nagle: {} writes in {} segments",
                    case.writes.len(),
                    data.len()
                ));
            }
            NagleMode::NoDelay => {
                let sizes: Vec<u32> = data.iter().map(|d| d.len).collect();
                let writes: Vec<u32> = case.writes.iter().map(|&w| w as u32).collect();
                findings.check(sizes == writes, || {
                    Violation::new(
                        "RFC 9293 §3.7.4 (MUST-17: with Nagle off, data is sent at once)",
                        "with TCP_NODELAY, small writes 3 ms apart did not leave one segment each",
                    )
                    .frames(data.iter().map(|d| d.number).take(6))
                    .field("segment sizes")
                    .expected(format!("{writes:?}"))
                    .actual(format!("{sizes:?}"))
                });
            }
            NagleMode::Cork => {
                let n = data.len();
                for (k, d) in data.iter().enumerate() {
                    findings.check(k + 1 == n || d.len >= full, || {
                        Violation::new(
                            "tcp(7) TCP_CORK (partial frames are held while corked)",
                            "a partial segment left while the socket was corked",
                        )
                        .frame(d.number)
                        .field("payload")
                        .expected(format!("{full} bytes (full) or the last segment"))
                        .actual(format!(
                            "{} bytes, segment {} of {n}",
                            d.len,
                            k + 1
                        ))
                    });
                }
            }
        }
        if let Some(last) = data.iter().max_by_key(|d| d.seq + d.len) {
            findings.check(last.flags.psh, || {
                Violation::new(
                    "RFC 9293 §3.9.1 (PUSH on the last segment of a SEND); Linux tcp_mark_push",
                    "the segment carrying the last byte has no PSH",
                )
                .frame(last.number)
                .field("flags")
                .expected("P.")
                .actual(last.flags.tcpdump())
            });
        }
        check_read(observed, Host::B, total as u64, &mut findings);
        findings.verdict()
    }
}

// ---------------------------------------------------------------------------------------------------------
// Silly window syndrome.

/// RFC 1122 §4.2.3.4's override timeout for the sender's SWS rule is 0.1–1 s; Linux sends a partial
/// segment into a small window only from the zero-window probe timer (≥ TCP_RTO_MIN, 200 ms). A sub-MSS
/// segment sooner than this after a's previous segment is a finding.
const SWS_OVERRIDE: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwsCase {
    pub rcvbuf: i32,
    /// Bytes a writes at once (then closes).
    pub total: usize,
    /// b reads this many bytes per read...
    pub chunk: usize,
    /// ...with this pause between reads.
    pub pause_ms: u32,
}

/// Silly window syndrome avoidance (lab Q30, Q31).
///
/// RFC 9293 §3.8.6.2.2 (MUST-38, receiver): the window is not opened by small amounts — the right edge
/// (RCV.NXT + RCV.WND) moves forward only by at least min(RCV.BUFF / 2, Eff.snd.MSS). §3.8.6.2.1 (MUST-39,
/// sender): a segment smaller than Eff.snd.MSS is sent only if it is the end of the data (all of it can go
/// now), or after the override timeout (RFC 1122 §4.2.3.4: 0.1–1 s).
///
/// Cases: b's SO_RCVBUF 2–16 KB; a writes 4× that at once and closes; b reads 100–1500 bytes at a time with
/// 2–10 ms pauses (a slow reader that frees space in small steps).
///
/// Checked, from the capture: until all the data has arrived, each time b moves its right edge (ack +
/// window, scaled) forward, it does so by at least min(W / 2, MSS), where W is the largest window b
/// advertised (RCV.BUFF as the sender can see it) and MSS the full segment payload; each sub-MSS data
/// segment from a is at least Fs · W = W / 2 (RFC 1122 §4.2.3.4's Fs = 1/2; Linux's tcp_bound_to_half_wnd
/// sends such segments when W is small), the last one of the data, or at least 100 ms after a's previous
/// segment (the override timeout; Linux: its zero-window probe timer); b reads every byte intact.
pub struct SwsAvoidance;

impl Property for SwsAvoidance {
    type Case = SwsCase;
    type Observed = ProgramObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.sws.avoidance",
            suite: "tcp-data",
            title: "a slow reader opens its window only in steps of min(buffer/2, MSS); the sender sends no small segments into a small window",
            clauses: &[
                "RFC 9293 §3.8.6.2.2 (MUST-38)",
                "RFC 9293 §3.8.6.2.1 (MUST-39)",
                "RFC 1122 §4.2.3.3, §4.2.3.4",
            ],
            questions: &["Q30", "Q31"],
            needs: Needs {
                link: LinkKind::Veth,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> SwsCase {
        let rcvbuf = rng.gen_range(2048..=16_384) & !511;
        SwsCase {
            rcvbuf,
            total: 4 * rcvbuf as usize + rng.gen_range(0..1000),
            chunk: rng.gen_range(100..=1500),
            pause_ms: rng.gen_range(2..=10),
        }
    }

    fn describe(&self, c: &SwsCase) -> String {
        format!(
            "b SO_RCVBUF {}, reads {} bytes every {} ms; a writes {} and closes",
            c.rcvbuf, c.chunk, c.pause_ms, c.total
        )
    }

    fn execute(&self, case: &SwsCase, env: &CaseEnv) -> Result<ProgramObserved, HarnessError> {
        let mut p = connected(&[], &[SockOpt::RcvBuf(case.rcvbuf)]);
        p.a.extend([
            Op::Write {
                sock: 0,
                len: case.total,
            },
            Op::Close { sock: 0 },
        ]);
        // Slow reads for most of the data, then the rest to EOF.
        let slow = (case.total * 3 / 4) / case.chunk;
        for _ in 0..slow {
            p.b.push(Op::Sleep { ms: case.pause_ms });
            p.b.push(Op::Read {
                sock: 1,
                max: case.chunk,
            });
        }
        p.b.push(Op::ReadExact {
            sock: 1,
            len: case.total,
        });
        exec(&p, env, 3000)
    }

    fn check(&self, case: &SwsCase, observed: &ProgramObserved, trace: &Trace) -> Verdict {
        let mut findings = Findings::default();
        let segs = segments(trace);
        let full = full_segment(family_of(trace));
        // Receiver: right-edge steps.
        let b_segs: Vec<(&Seg, u64)> = segs
            .iter()
            .filter(|s| s.from == Host::B && s.flags.ack && !s.flags.syn && !s.flags.rst)
            .filter_map(|s| Some((s, trace.scaled_window(s.index)? as u64)))
            .collect();
        let w_max = b_segs.iter().map(|(_, w)| *w).max().unwrap_or(0);
        let threshold = (w_max / 2).min(full as u64);
        let mut edge: Option<u64> = None;
        let mut steps = 0;
        let end_of_data = 1 + case.total as u32;
        for (s, w) in &b_segs {
            // Once all the data has arrived, the window no longer matters (nothing more can come).
            if s.flags.fin || s.ack >= end_of_data {
                continue;
            }
            let right = s.ack as u64 + w;
            if let Some(e) = edge {
                if right > e {
                    steps += 1;
                    let step = right - e;
                    findings.check(step >= threshold, || {
                        Violation::new(
                            "RFC 9293 §3.8.6.2.2 (MUST-38: open the window by at least min(RCV.BUFF/2, MSS))",
                            "the receiver opened its window by a small step",
                        )
                        .frame(s.number)
                        .field("right edge (ack + window)")
                        .expected(format!(
                            "a step of ≥ {threshold} bytes (min({w_max}/2, {full}))"
                        ))
                        .actual(format!("+{step} (to {right})"))
                    });
                }
            }
            edge = Some(edge.map_or(right, |e| e.max(right)));
        }
        // Sender: sub-MSS segments only at the end of the data or after the override timeout.
        let data: Vec<&Seg> = segs
            .iter()
            .filter(|s| s.from == Host::A && s.len > 0 && !s.retransmission)
            .collect();
        // Fs × the largest window b offered (RFC 1122 §4.2.3.4: Fs = 1/2): a segment that big may go even
        // if it is below the MSS (Linux: tcp_bound_to_half_wnd caps segments at half the peer's largest
        // window when that window is small).
        let half_max_window = w_max / 2;
        let mut prev_ns: Option<u64> = None;
        for s in segs.iter().filter(|s| s.from == Host::A) {
            let is_data = s.len > 0 && !s.retransmission;
            if is_data
                && s.len < full
                && (s.len as u64) < half_max_window
                && s.seq + s.len != end_of_data
            {
                let gap = prev_ns.map(|p| Duration::from_nanos(s.rel_ns.saturating_sub(p)));
                findings.check(gap.is_some_and(|g| g >= SWS_OVERRIDE), || {
                    Violation::new(
                        "RFC 9293 §3.8.6.2.1 (MUST-39: no small segment into a small window, except at the end of the data or after the override timeout)",
                        "the sender sent a small segment in the middle of the data",
                    )
                    .frame(s.number)
                    .field("payload")
                    .expected(format!(
                        "{full} bytes (MSS), ≥ {half_max_window} (half the largest window), the end of the data, or ≥ 100 ms after the previous segment (override timeout)"
                    ))
                    .actual(format!(
                        "{} bytes, {} ms after the previous segment",
                        s.len,
                        gap.map_or(0, |g| g.as_millis())
                    ))
                });
            }
            prev_ns = Some(s.rel_ns);
        }
        let small = data.iter().filter(|d| d.len < full).count();
        findings.note(format!(
            "{} window openings; {} small segment(s) from a",
            if steps > 20 { "many" } else { "few" },
            small
        ));
        // Every byte read, over the slow reads and the final one.
        let reads = outcomes_of(&observed.outcomes, Host::B, |op| {
            matches!(op, Op::Read { .. } | Op::ReadExact { .. })
        });
        let got: u64 = reads
            .iter()
            .filter_map(|r| read_result(&r.result))
            .map(|(n, _, _)| n)
            .sum();
        let corrupt = reads
            .iter()
            .filter_map(|r| read_result(&r.result))
            .any(|(_, _, m)| m.is_some());
        findings.check(got == case.total as u64 && !corrupt, || {
            Violation::new("RFC 9293 §3.4", "the reader did not get every byte intact")
                .field("bytes read by b")
                .expected(case.total)
                .actual(format!("{got}{}", if corrupt { " (corrupt)" } else { "" }))
        });
        findings.verdict()
    }
}
