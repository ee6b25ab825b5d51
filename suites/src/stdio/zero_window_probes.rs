use std::time::Duration;

use harness::property::{
    CaseEnv, CaseRng, Findings, Property, PropertyInfo, Subject, Verdict, Violation,
};
use harness::sock::Family;
use harness::sut::stdio_session::{FirstClose, Plan};
use harness::trace::Trace;
use harness::HarnessError;
use serde::{Deserialize, Serialize};

use super::common::{
    from_a, from_b, session, session_failure, stream, stream_violation, Sessions, STDIO,
};

/// How long a's window stays closed before a reads: long enough for a first probe after an RFC 6298 RTO of
/// 1 s doubled once (the tolerance: a first probe may wait one RTO, RFC 9293 SHLD-29).
pub const READ_PAUSE: Duration = Duration::from_millis(4000);
/// A zero window that lasted at least this long must have been probed.
pub const MUST_PROBE_AFTER: Duration = Duration::from_millis(2500);

/// Zero-window probing by the SUT (lab Q28).
///
/// RFC 9293 §3.8.6.1 (MUST-36): a sender MUST probe a zero window; (SHLD-30) probes back off exponentially;
/// (MUST-37) the connection is kept open while probes are answered. a gets SO_RCVBUF 2048 and reads nothing
/// for 4 s while the SUT sends 20–60 KB; then a reads everything. Checked: a's window closed (else the case
/// is invalid); while it was closed for 2.5 s or more, the SUT sent at least one segment into it (a probe);
/// the intervals between its probes do not shrink (10 % tolerance, SHLD-30); a receives the whole stream once
/// the window opens.
pub struct ZeroWindowProbes;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZeroWindowCase {
    pub sut_bytes: usize,
    pub seed: u64,
}

impl Property for ZeroWindowProbes {
    type Case = ZeroWindowCase;
    type Observed = Sessions;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "stdio.zero_window.probes",
            suite: "stdio",
            title: "the SUT probes a's zero window, backing off, and the stream completes once it opens",
            clauses: &["RFC 9293 §3.8.6.1 (MUST-36, MUST-37, SHLD-30)", "RFC 1122 §4.2.2.17"],
            questions: &["Q28"],
            subject: Subject::B,
            needs: STDIO,
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> Self::Case {
        use rand::Rng;
        ZeroWindowCase {
            sut_bytes: rng.gen_range(20_000..=60_000),
            seed: rng.gen(),
        }
    }

    fn describe(&self, c: &Self::Case) -> String {
        format!(
            "the SUT sends {} B; a (SO_RCVBUF 2048) reads nothing for {} ms",
            c.sut_bytes,
            READ_PAUSE.as_millis()
        )
    }

    fn execute(&self, c: &Self::Case, env: &CaseEnv) -> Result<Self::Observed, HarnessError> {
        let mut plan = Plan::exchange(stream(c.seed, 1, c.sut_bytes), Vec::new(), FirstClose::Sut);
        plan.a_rcvbuf = Some(2048);
        plan.a_read_pause = READ_PAUSE;
        Ok(vec![session(env, &plan)?])
    }

    fn check(&self, c: &Self::Case, observed: &Self::Observed, trace: &Trace) -> Verdict {
        let s = &observed[0];
        if let Some(v) = session_failure(s) {
            return Verdict::fail(v);
        }
        // a's first zero-window advertisement and the first later one that opens the window again.
        let a_frames: Vec<_> = from_a(trace)
            .filter(|(_, t)| !t.flags.syn && !t.flags.rst)
            .collect();
        let Some(closed) = a_frames.iter().find(|(_, t)| t.window == 0) else {
            return Verdict::Invalid {
                reason: "a's window never closed (nothing to probe)".into(),
            };
        };
        let opened = a_frames
            .iter()
            .find(|(fr, t)| fr.number > closed.0.number && t.window > 0);
        let end_ns = opened.map_or(trace.frames.last().map_or(0, |f| f.rel_ns), |(fr, _)| {
            fr.rel_ns
        });
        let probes: Vec<_> = from_b(trace)
            .filter(|(fr, t)| {
                fr.rel_ns > closed.0.rel_ns
                    && fr.rel_ns < end_ns
                    && (t.payload_len <= 1 || t.flags.fin)
            })
            .map(|(fr, _)| (fr.number, fr.rel_ns))
            .collect();
        let period = Duration::from_nanos(end_ns.saturating_sub(closed.0.rel_ns));
        let mut f = Findings::default();
        f.check(!probes.is_empty() || period < MUST_PROBE_AFTER, || {
            Violation::new(
                "RFC 9293 §3.8.6.1 (MUST-36)",
                "the SUT never probed a's zero window",
            )
            .frame(closed.0.number)
            .field("zero-window probe")
            .expected(format!(
                "a probe while the window was closed ({} ms)",
                period.as_millis()
            ))
            .actual("no segment from the SUT until the window opened")
        });
        let gaps: Vec<u64> = probes.windows(2).map(|w| w[1].1 - w[0].1).collect();
        for (i, w) in gaps.windows(2).enumerate() {
            f.check(w[1] * 10 >= w[0] * 9, || {
                Violation::new(
                    "RFC 9293 §3.8.6.1 (SHLD-30)",
                    "the SUT's zero-window probes do not back off",
                )
                .frames([probes[i + 1].0, probes[i + 2].0])
                .field("interval between probes")
                .expected(format!("≥ {} ms (the previous interval)", w[0] / 1_000_000))
                .actual(format!("{} ms", w[1] / 1_000_000))
            });
        }
        if let Some(v) = stream_violation(
            trace,
            "RFC 9293 §3.8.6.1 (MUST-37)",
            "a did not receive the SUT's stream after its window opened",
            harness::frame::Host::B,
            "stream b→a (a's reads)",
            &stream(c.seed, 1, c.sut_bytes),
            &s.a_received,
        ) {
            f.push(v);
        }
        f.note(format!(
            "window closed {} ms, {} probe(s)",
            period.as_millis(),
            probes.len()
        ));
        f.verdict()
    }
}
