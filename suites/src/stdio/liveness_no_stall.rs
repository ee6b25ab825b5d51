use harness::property::{
    CaseEnv, CaseRng, Findings, Property, PropertyInfo, Subject, Verdict, Violation,
};
use harness::sock::Family;
use harness::sut::stdio_session::{FirstClose, SESSION_LIMIT};
use harness::trace::Trace;
use harness::HarnessError;
use serde::{Deserialize, Serialize};

use super::common::{exchange, session, session_failure, Sessions, STDIO};

/// No stall with data outstanding (a liveness check for student stacks, lab Q21).
///
/// RFC 9293 §3.8.1 and RFC 6298: data not acknowledged is retransmitted until it is, so a conversation with
/// a live peer ends. Cases: 10–200 KB each way at once, both close when done. The conversation must reach
/// "both FINs acknowledged" within the session limit (`SESSION_LIMIT`, 20 s, or `--sut-limit` if smaller):
/// a stack that loses track of its send queue, or waits forever for a window update it missed, stalls.
pub struct NoStall;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoStallCase {
    pub sut_bytes: usize,
    pub a_bytes: usize,
    pub seed: u64,
}

impl Property for NoStall {
    type Case = NoStallCase;
    type Observed = Sessions;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "stdio.liveness.no_stall",
            suite: "stdio",
            title: "a bulk exchange both ways ends with both FINs acknowledged: no stall with data outstanding",
            clauses: &["RFC 9293 §3.8.1", "RFC 6298 (5.1)"],
            questions: &["Q21"],
            subject: Subject::B,
            needs: STDIO,
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> Self::Case {
        use rand::Rng;
        NoStallCase {
            sut_bytes: rng.gen_range(10_000..=200_000),
            a_bytes: rng.gen_range(10_000..=200_000),
            seed: rng.gen(),
        }
    }

    fn describe(&self, c: &Self::Case) -> String {
        format!(
            "the SUT sends {} B, a {} B, at once",
            c.sut_bytes, c.a_bytes
        )
    }

    fn execute(&self, c: &Self::Case, env: &CaseEnv) -> Result<Self::Observed, HarnessError> {
        let plan = exchange(c.seed, c.sut_bytes, c.a_bytes, FirstClose::Both);
        Ok(vec![session(env, &plan)?])
    }

    fn check(&self, _c: &Self::Case, observed: &Self::Observed, trace: &Trace) -> Verdict {
        let s = &observed[0];
        if let Some(v) = session_failure(s) {
            return Verdict::fail(v);
        }
        let mut f = Findings::default();
        if let Some(waiting) = &s.limit_hit {
            let last = trace.frames.last().map(|fr| fr.number);
            f.push(
                Violation::new(
                    "RFC 9293 §3.8.1",
                    "the conversation stalled with data outstanding",
                )
                .frames(last)
                .field("progress")
                .expected(format!(
                    "both FINs acknowledged within {} s",
                    SESSION_LIMIT.as_secs()
                ))
                .actual(format!("still waiting for {waiting}")),
            );
        }
        f.check(s.closed_cleanly || s.limit_hit.is_some(), || {
            Violation::new(
                "RFC 9293 §3.6",
                "the conversation did not end with both FINs acknowledged",
            )
            .field("close")
            .expected("a's socket CLOSED after the SUT's FIN")
            .actual(
                s.a_error
                    .clone()
                    .unwrap_or_else(|| "the SUT ended first".into()),
            )
        });
        f.verdict()
    }
}
