use harness::property::{
    CaseEnv, CaseRng, Findings, Property, PropertyInfo, Subject, Verdict, Violation,
};
use harness::sock::Family;
use harness::sut::stdio_session::FirstClose;
use harness::trace::Trace;
use harness::HarnessError;
use serde::{Deserialize, Serialize};

use super::common::{b_syns, exchange, session, session_failure, Sessions, STDIO};

/// The SUT's initial sequence number is not constant across connections (lab Q16).
///
/// RFC 9293 §3.4.1 (MUST-8): "A TCP implementation MUST use the above type of 'clock-driven' selection of
/// initial sequence numbers"; RFC 6528 §3: ISNs must not be predictable. Two runs of the SUT, one connection
/// each, 100 B each way (the SUT closes first): the SYN (client role) or SYN-ACK (server role) of each run
/// carries its ISN. Equal ISNs — a constant such as 0 — fail, naming both frames. Unpredictability beyond
/// "not equal" is not judged from two samples (a named tolerance).
pub struct IsnVaries;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsnCase {
    pub seed: u64,
}

impl Property for IsnVaries {
    type Case = IsnCase;
    type Observed = Sessions;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "stdio.isn.varies",
            suite: "stdio",
            title: "two connections of the SUT start from different initial sequence numbers",
            clauses: &["RFC 9293 §3.4.1 (MUST-8)", "RFC 6528 §3"],
            questions: &["Q16"],
            subject: Subject::B,
            needs: STDIO,
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> Self::Case {
        use rand::Rng;
        IsnCase { seed: rng.gen() }
    }

    fn describe(&self, _c: &Self::Case) -> String {
        "two runs of the SUT, one connection each (100 B each way)".into()
    }

    fn execute(&self, c: &Self::Case, env: &CaseEnv) -> Result<Self::Observed, HarnessError> {
        let plan = exchange(c.seed, 100, 100, FirstClose::Sut);
        Ok(vec![session(env, &plan)?, session(env, &plan)?])
    }

    fn check(&self, _c: &Self::Case, observed: &Self::Observed, trace: &Trace) -> Verdict {
        for s in observed {
            if let Some(v) = session_failure(s) {
                return Verdict::fail(v);
            }
        }
        let mut f = Findings::default();
        // One SYN of b per connection (its retransmissions repeat the ISN).
        let mut isns: Vec<(usize, u32)> = Vec::new();
        let mut conversations = Vec::new();
        for (fr, t) in b_syns(trace) {
            if !conversations.contains(&fr.conversation) {
                conversations.push(fr.conversation);
                isns.push((fr.number, t.seq.0));
            }
        }
        if isns.len() < 2 {
            return Verdict::Invalid {
                reason: format!(
                    "{} SYN(-ACK) of the SUT seen for two connections: nothing to compare",
                    isns.len()
                ),
            };
        }
        let (first, second) = (isns[0], isns[1]);
        f.check(first.1 != second.1, || {
            Violation::new(
                "RFC 9293 §3.4.1 (MUST-8)",
                "the SUT's initial sequence number is the same for two connections",
            )
            .frames([first.0, second.0])
            .field("ISN (sequence number of the SUT's SYN)")
            .expected("a different ISN per connection (clock-driven, RFC 6528)")
            .actual(format!("{} and {}", first.1, second.1))
        });
        f.note(format!("ISNs {} and {}", first.1, second.1));
        f.verdict()
    }
}
