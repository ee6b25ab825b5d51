use harness::property::{CaseEnv, CaseRng, Findings, Property, PropertyInfo, Subject, Verdict};
use harness::sock::Family;
use harness::sut::stdio_session::FirstClose;
use harness::trace::Trace;
use harness::HarnessError;
use serde::{Deserialize, Serialize};

use super::common::{crash_violation, exchange, from_a, session, Sessions, MODE_CLAUSE, STDIO};

/// No crash (a check for student stacks, `docs/driver-protocol.md` "What changes for properties").
///
/// A stdio SUT runs until its conversation is over and then exits with status 0 (or is ended by netconform,
/// which is not a failure): exiting with another status or by a signal is a crash (the contract's failure
/// semantics), whoever closed first. Each case runs the SUT twice with 0–8 KB each way: once a closes first,
/// once the SUT does (or both send at once). The violation carries the tail of the SUT's stderr and, when a
/// closed first, a's FIN.
pub struct NoCrash;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoCrashCase {
    /// How the second run closes (the first always has a close first).
    pub second: FirstClose,
    pub sut_bytes: usize,
    pub a_bytes: usize,
    pub seed: u64,
}

impl Property for NoCrash {
    type Case = NoCrashCase;
    type Observed = Sessions;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "stdio.sut.no_crash",
            suite: "stdio",
            title: "the SUT never exits with an error or a signal, whoever closes first",
            clauses: &[MODE_CLAUSE, "RFC 9293 §3.6"],
            questions: &["Q33"],
            subject: Subject::B,
            needs: STDIO,
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> Self::Case {
        use rand::Rng;
        NoCrashCase {
            second: if rng.gen_bool(0.5) {
                FirstClose::Sut
            } else {
                FirstClose::Both
            },
            sut_bytes: rng.gen_range(0..=8000),
            a_bytes: rng.gen_range(0..=8000),
            seed: rng.gen(),
        }
    }

    fn describe(&self, c: &Self::Case) -> String {
        format!(
            "two runs: a closes first, then {} closes first; the SUT sends {} B, a {} B",
            match c.second {
                FirstClose::A => "a",
                FirstClose::Sut => "the SUT",
                FirstClose::Both => "whoever finishes",
            },
            c.sut_bytes,
            c.a_bytes
        )
    }

    fn execute(&self, c: &Self::Case, env: &CaseEnv) -> Result<Self::Observed, HarnessError> {
        let mut runs = Vec::new();
        for first in [FirstClose::A, c.second] {
            let plan = exchange(c.seed, c.sut_bytes, c.a_bytes, first);
            runs.push(session(env, &plan)?);
        }
        Ok(runs)
    }

    fn check(&self, c: &Self::Case, observed: &Self::Observed, trace: &Trace) -> Verdict {
        let mut f = Findings::default();
        for (run, (s, first)) in observed.iter().zip([FirstClose::A, c.second]).enumerate() {
            if let Some(how) = s.crash() {
                let mut v = crash_violation(s, &how);
                if first == FirstClose::A {
                    v.summary = "SUT crashed after its peer closed first".into();
                    // a's first FIN is the first run's.
                    v = v.frames(
                        from_a(trace)
                            .find(|(_, t)| t.flags.fin)
                            .map(|(fr, _)| fr.number),
                    );
                }
                f.push(v);
            }
            f.note(format!(
                "run {}: {}",
                run + 1,
                match s.ending {
                    harness::sut::stdio::Ending::Exited(_) => "the SUT exited by itself",
                    harness::sut::stdio::Ending::Ended =>
                        "the SUT was ended after the conversation",
                }
            ));
        }
        f.verdict()
    }
}
