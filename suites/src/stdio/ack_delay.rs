use std::time::Duration;

use harness::property::{
    CaseEnv, CaseRng, Findings, Property, PropertyInfo, Subject, Verdict, Violation,
};
use harness::sock::Family;
use harness::sut::stdio_session::FirstClose;
use harness::trace::Trace;
use harness::HarnessError;
use serde::{Deserialize, Serialize};

use super::common::{exchange, from_a, from_b, session, session_failure, Sessions, STDIO};

/// RFC 9293 MUST-40: "an ACK should not be excessively delayed; in particular, the delay MUST be less than
/// 0.5 seconds" — the bound a non-kernel stack is held to (`harness::backend::TimingBounds::RFC`).
pub const ACK_DELAY_MAX: Duration = Duration::from_millis(500);

/// The SUT acknowledges received data within 500 ms (lab Q20).
///
/// RFC 9293 §3.8.6.3 (MUST-40): the delay of an ACK MUST be less than 0.5 s. a sends 2–60 KB to the SUT
/// (the SUT sends 100 B and closes first). For every data segment of a that is new (not already
/// acknowledged), the first segment of the SUT acknowledging all of it must come less than 500 ms later, plus
/// the link's round trip (`--delay` on the relay; the capture is taken at a). Coalescing (one ACK for two
/// segments) is allowed; only the delay is judged.
pub struct AckDelay;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AckDelayCase {
    pub a_bytes: usize,
    pub seed: u64,
}

impl Property for AckDelay {
    type Case = AckDelayCase;
    type Observed = (Sessions, Duration);

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "stdio.ack.delay",
            suite: "stdio",
            title: "every data segment a sends is acknowledged by the SUT within 500 ms",
            clauses: &["RFC 9293 §3.8.6.3 (MUST-40)"],
            questions: &["Q20"],
            subject: Subject::B,
            needs: STDIO,
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> Self::Case {
        use rand::Rng;
        AckDelayCase {
            a_bytes: rng.gen_range(2000..=60_000),
            seed: rng.gen(),
        }
    }

    fn describe(&self, c: &Self::Case) -> String {
        format!("a sends {} B to the SUT", c.a_bytes)
    }

    fn execute(&self, c: &Self::Case, env: &CaseEnv) -> Result<Self::Observed, HarnessError> {
        let plan = exchange(c.seed, 100, c.a_bytes, FirstClose::Sut);
        Ok((vec![session(env, &plan)?], env.lab.link_round_trip()))
    }

    fn check(&self, _c: &Self::Case, observed: &Self::Observed, trace: &Trace) -> Verdict {
        let (sessions, round_trip) = observed;
        if let Some(v) = session_failure(&sessions[0]) {
            return Verdict::fail(v);
        }
        let bound = ACK_DELAY_MAX + *round_trip;
        let mut f = Findings::default();
        let mut acked: u64 = 0;
        let mut worst = Duration::ZERO;
        let b_acks: Vec<(usize, u64, u64)> = from_b(trace)
            .filter(|(fr, t)| t.flags.ack && fr.rel_ack.is_some())
            .map(|(fr, _)| (fr.number, fr.rel_ns, fr.rel_ack.unwrap_or(0) as u64))
            .collect();
        for (fr, t) in from_a(trace) {
            let Some(seq) = fr.rel_seq else { continue };
            if t.payload_len == 0 || t.flags.syn {
                continue;
            }
            let end = seq as u64 + t.payload_len as u64;
            acked = acked.max(
                b_acks
                    .iter()
                    .filter(|(_, ns, _)| *ns <= fr.rel_ns)
                    .map(|(_, _, a)| *a)
                    .max()
                    .unwrap_or(0),
            );
            if end <= acked {
                continue; // already acknowledged: a retransmission or a probe
            }
            let ack = b_acks
                .iter()
                .find(|(_, ns, a)| *ns >= fr.rel_ns && *a >= end);
            let delay = ack.map(|(_, ns, _)| Duration::from_nanos(ns - fr.rel_ns));
            match (ack, delay) {
                (Some((n, _, _)), Some(d)) => {
                    worst = worst.max(d);
                    f.check(d < bound, || {
                        Violation::new(
                            "RFC 9293 §3.8.6.3 (MUST-40)",
                            "the SUT delayed an ACK by 500 ms or more",
                        )
                        .frames([fr.number, *n])
                        .field("ACK delay")
                        .expected(format!(
                            "< {} ms (MUST-40, plus the link's round trip)",
                            bound.as_millis()
                        ))
                        .actual(format!("{} ms (ack {end} in #{n})", d.as_millis()))
                    });
                }
                _ => f.push(
                    Violation::new(
                        "RFC 9293 §3.8.6.3 (MUST-40)",
                        "the SUT never acknowledged a data segment",
                    )
                    .frame(fr.number)
                    .field("ACK")
                    .expected(format!("an ACK ≥ {end} within {} ms", bound.as_millis()))
                    .actual("none before the capture ended"),
                ),
            }
        }
        f.note(format!("longest ACK delay {} ms", worst.as_millis()));
        f.verdict()
    }
}
