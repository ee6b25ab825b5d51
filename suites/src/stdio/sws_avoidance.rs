use std::time::Duration;

use harness::frame::Host;
use harness::property::{
    CaseEnv, CaseRng, Findings, Property, PropertyInfo, Subject, Verdict, Violation,
};
use harness::sock::Family;
use harness::sut::stdio_session::FirstClose;
use harness::trace::Trace;
use harness::wire::TcpOption;
use harness::HarnessError;
use serde::{Deserialize, Serialize};

use super::common::{
    exchange, from_a, from_b, session, session_failure, stream, stream_violation, Sessions, STDIO,
};

/// RFC 9293 §3.8.6.2.1: "the override timeout should be in the range 0.1 - 1.0 seconds"; the lower end,
/// −10 % for timer rounding in a user-space stack.
pub const OVERRIDE_TIMEOUT: Duration = Duration::from_millis(90);
/// RFC 9293 §3.8.6.2.1: "Fs is a fraction whose recommended value is 1/2" (of the largest window the
/// receiver offered), as numerator and denominator.
pub const FS: (u32, u32) = (1, 2);

/// Sender silly-window-syndrome avoidance by the SUT (lab Q22, Q31).
///
/// RFC 9293 §3.8.6.2.1 (MUST-38): "A TCP implementation MUST include a SWS avoidance algorithm in the
/// sender"; the algorithm sends data only (1) if a maximum-sized segment can be sent (min(D,U) ≥
/// Eff.snd.MSS), (2) if the data is pushed and all queued data can be sent now ([SND.NXT = SND.UNA and]
/// PUSHed and D ≤ U, the bracket being the Nagle algorithm, RFC 9293 §3.7.4 SHLD-7), (3) if at least a
/// fraction Fs of the maximum window can be sent, or (4) if the override timeout occurs. RFC 1122 §4.2.3.4
/// is the same rule.
///
/// The SUT gets 20–60 KB on stdin at once and closes first; a (default buffers) reads at once and then
/// sends 100 B. Checked on the wire, for every new data segment of the SUT shorter than Eff.snd.MSS (a's MSS
/// option less the TCP options of that segment): it carries the stream's last byte (the end of the data);
/// or no other short segment of the SUT was unacknowledged (Nagle, in Minshall's form: at most one sub-MSS
/// segment unacknowledged — a's ACKs recorded before it count); or it is at least Fs ([`FS`]) of the
/// largest window a advertised; or the SUT sent no data for [`OVERRIDE_TIMEOUT`] before it. Tolerated: a
/// retransmission (a sender may repacketise) and a one-byte probe of a zero window. The stream must arrive
/// intact.
///
/// Receiver SWS avoidance (§3.8.6.2.2, MUST-39) is not judged here: the harness drains the SUT's stdout as
/// fast as it comes, so the SUT's application never reads slowly and its window never has to reopen by
/// small steps (pausing the drain would stall the SUT behind its stdout pipe's 64 KiB before its receive
/// buffer fills, so the window a sees would depend on the pipe, not on the stack).
pub struct SwsAvoidance;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwsCase {
    pub sut_bytes: usize,
    pub seed: u64,
}

impl Property for SwsAvoidance {
    type Case = SwsCase;
    type Observed = Sessions;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "stdio.sws.avoidance",
            suite: "stdio",
            title: "the SUT as sender sends no short segment while another is unacknowledged, except at the end of its data",
            clauses: &[
                "RFC 9293 §3.8.6.2.1 (MUST-38)",
                "RFC 9293 §3.7.4 (SHLD-7)",
                "RFC 1122 §4.2.3.4",
            ],
            questions: &["Q22", "Q31"],
            subject: Subject::B,
            needs: STDIO,
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> Self::Case {
        use rand::Rng;
        SwsCase {
            sut_bytes: rng.gen_range(20_000..=60_000),
            seed: rng.gen(),
        }
    }

    fn describe(&self, c: &Self::Case) -> String {
        format!("the SUT sends {} B from its stdin at once", c.sut_bytes)
    }

    fn execute(&self, c: &Self::Case, env: &CaseEnv) -> Result<Self::Observed, HarnessError> {
        let plan = exchange(c.seed, c.sut_bytes, 100, FirstClose::Sut);
        Ok(vec![session(env, &plan)?])
    }

    fn check(&self, c: &Self::Case, observed: &Self::Observed, trace: &Trace) -> Verdict {
        let s = &observed[0];
        if let Some(v) = session_failure(s) {
            return Verdict::fail(v);
        }
        let Some(a_mss) = from_a(trace).find_map(|(_, t)| t.flags.syn.then(|| t.mss()).flatten())
        else {
            return Verdict::Invalid {
                reason: "a's SYN (or SYN-ACK) with its MSS option was not captured".into(),
            };
        };
        let end_of_data = c.sut_bytes as u64 + 1;
        // a's frames in time order: (time, ack, scaled window).
        let a_frames: Vec<(u64, u64, u64)> = from_a(trace)
            .filter(|(fr, t)| t.flags.ack && fr.rel_ack.is_some())
            .map(|(fr, t)| {
                let i = fr.number - 1;
                let w = trace.scaled_window(i).unwrap_or(t.window as u32) as u64;
                (fr.rel_ns, fr.rel_ack.unwrap_or(0) as u64, w)
            })
            .collect();
        let mut f = Findings::default();
        let mut sent_to: u64 = 1;
        let mut last_data_ns: Option<u64> = None;
        let mut shorts: Vec<(usize, u64)> = Vec::new(); // (frame, end) of short new segments
        let mut bad: Vec<Violation> = Vec::new();
        let (mut short_count, mut segments) = (0usize, 0usize);
        for (fr, t) in from_b(trace) {
            let Some(seq) = fr.rel_seq else { continue };
            if t.payload_len == 0 || t.flags.syn {
                continue;
            }
            let (seq, len) = (seq as u64, t.payload_len as u64);
            let previous = last_data_ns.replace(fr.rel_ns);
            if seq < sent_to {
                sent_to = sent_to.max(seq + len);
                continue; // a retransmission, possibly repacketised
            }
            sent_to = seq + len;
            segments += 1;
            let eff_mss = (a_mss as u64).saturating_sub(options_len(&t.options));
            if len >= eff_mss {
                continue;
            }
            short_count += 1;
            let before: Vec<_> = a_frames
                .iter()
                .filter(|(ns, _, _)| *ns < fr.rel_ns)
                .collect();
            let acked = before.iter().map(|(_, a, _)| *a).max().unwrap_or(0);
            let window = before.last().map_or(0, |(_, _, w)| *w);
            let max_window = before.iter().map(|(_, _, w)| *w).max().unwrap_or(0);
            let unacked_short: Vec<usize> = shorts
                .iter()
                .filter(|(_, end)| *end > acked)
                .map(|(n, _)| *n)
                .collect();
            shorts.push((fr.number, seq + len));
            let end = seq + len >= end_of_data;
            let probe = window == 0 && len == 1;
            let fraction = len * FS.1 as u64 >= max_window * FS.0 as u64;
            let override_timeout = previous
                .is_none_or(|p| fr.rel_ns.saturating_sub(p) >= OVERRIDE_TIMEOUT.as_nanos() as u64);
            if end || probe || unacked_short.is_empty() || fraction || override_timeout {
                continue;
            }
            bad.push(
                Violation::new(
                    "RFC 9293 §3.8.6.2.1 (MUST-38); RFC 9293 §3.7.4 (SHLD-7)",
                    "the SUT sent a short segment while another short one was unacknowledged",
                )
                .frames(unacked_short.iter().copied().chain([fr.number]))
                .field("segment size")
                .expected(format!(
                    "≥ {eff_mss} B (Eff.snd.MSS), or the end of the data, or no other short segment unacknowledged, or ≥ {} B (Fs of a's largest window {max_window}), or ≥ {} ms after the previous one",
                    max_window * FS.0 as u64 / FS.1 as u64,
                    OVERRIDE_TIMEOUT.as_millis()
                ))
                .actual(format!(
                    "{len} B at {seq} with {} short segment(s) unacknowledged (a had acknowledged up to {acked})",
                    unacked_short.len()
                )),
            );
        }
        let silly = bad.len();
        if let Some(mut v) = bad.into_iter().next() {
            if silly > 1 {
                v.context.push(format!("{silly} such segments in all"));
            }
            f.push(v);
        }
        if let Some(v) = stream_violation(
            trace,
            "RFC 9293 §3.8.6.2.1",
            "a did not receive the SUT's stream intact",
            Host::B,
            "stream b→a (a's reads)",
            &stream(c.seed, 1, c.sut_bytes),
            &s.a_received,
        ) {
            f.push(v);
        }
        f.note(format!(
            "{segments} new data segments, {short_count} shorter than Eff.snd.MSS"
        ));
        f.verdict()
    }
}

/// The bytes `options` take in a TCP header, padding included.
fn options_len(options: &[TcpOption]) -> u64 {
    let raw: u64 = options
        .iter()
        .map(|o| match o {
            TcpOption::EndOfList | TcpOption::NoOperation => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::SackRange(blocks) => 2 + 8 * blocks.len() as u64,
            TcpOption::Timestamp { .. } => 10,
            TcpOption::Unknown { data, .. } => 2 + data.len() as u64,
        })
        .sum();
    raw.div_ceil(4) * 4
}
