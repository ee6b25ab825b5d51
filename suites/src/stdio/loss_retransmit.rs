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

use super::common::{session, session_failure, stream, stream_violation, Sessions};

/// Retransmission by the SUT under relay loss (lab Q21).
///
/// RFC 9293 §3.8.1: a segment that is not acknowledged is retransmitted; RFC 6298: by the retransmission
/// timer (or earlier, RFC 5681 §3.2 fast retransmit). The relay drops the SUT's 1st, 2nd or 3rd data segment
/// (b→a) once; the SUT sends 5–30 KB and closes first. Checked: a later segment of the SUT carries the first
/// byte of each dropped one (a sender may repacketise), and a receives the whole stream exactly.
pub struct LossRetransmit;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LossCase {
    /// The SUT's data segment the relay drops (1-based).
    pub drop: u32,
    pub sut_bytes: usize,
    pub seed: u64,
}

impl Property for LossRetransmit {
    type Case = LossCase;
    type Observed = Sessions;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "stdio.loss.retransmit",
            suite: "stdio",
            title: "a data segment of the SUT dropped by the relay is sent again and the stream arrives intact",
            clauses: &["RFC 9293 §3.8.1", "RFC 6298", "RFC 5681 §3.2"],
            questions: &["Q21"],
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
        LossCase {
            drop: rng.gen_range(1..=3),
            sut_bytes: rng.gen_range(5000..=30_000),
            seed: rng.gen(),
        }
    }

    fn lab_config(&self, c: &Self::Case) -> LabConfig {
        LabConfig {
            link: LinkSpec::Relay(RelaySpec {
                a_to_b: Impairment::default(),
                b_to_a: Impairment {
                    rules: vec![Rule::DropNthData { n: c.drop }],
                    ..Impairment::default()
                },
                seed: 1,
            }),
            ..LabConfig::default()
        }
    }

    fn describe(&self, c: &Self::Case) -> String {
        format!(
            "the SUT sends {} B; the relay drops its data segment {}",
            c.sut_bytes, c.drop
        )
    }

    fn execute(&self, c: &Self::Case, env: &CaseEnv) -> Result<Self::Observed, HarnessError> {
        let plan = Plan::exchange(stream(c.seed, 1, c.sut_bytes), Vec::new(), FirstClose::Sut);
        Ok(vec![session(env, &plan)?])
    }

    fn check(&self, c: &Self::Case, observed: &Self::Observed, trace: &Trace) -> Verdict {
        let s = &observed[0];
        if let Some(v) = session_failure(s) {
            return Verdict::fail(v);
        }
        let dropped: Vec<_> = trace
            .frames
            .iter()
            .enumerate()
            .filter(|(i, fr)| {
                fr.from == Some(Host::B)
                    && fr.tcp().is_some_and(|t| t.payload_len > 0)
                    && trace
                        .link_events
                        .iter()
                        .any(|e| e.frame == *i && e.kind == LinkEventKind::Dropped)
            })
            .map(|(_, fr)| fr)
            .collect();
        if dropped.is_empty() {
            return Verdict::Invalid {
                reason: format!(
                    "the relay dropped no data segment of the SUT (rule: its segment {})",
                    c.drop
                ),
            };
        }
        let mut f = Findings::default();
        for d in &dropped {
            let Some(seq) = d.rel_seq else { continue };
            let again = trace.frames.iter().find(|fr| {
                fr.number > d.number
                    && fr.from == Some(Host::B)
                    && fr.rel_seq.zip(fr.tcp()).is_some_and(|(s2, t)| {
                        t.payload_len > 0
                            && s2 <= seq
                            && (seq as u64) < s2 as u64 + t.payload_len as u64
                    })
            });
            match again {
                Some(r) => f.note(format!(
                    "dropped #{} retransmitted as #{} after {} ms",
                    d.number,
                    r.number,
                    (r.rel_ns - d.rel_ns) / 1_000_000
                )),
                None => f.push(
                    Violation::new(
                        "RFC 9293 §3.8.1",
                        "the SUT never retransmitted a dropped segment",
                    )
                    .frame(d.number)
                    .field("retransmission")
                    .expected(format!("a later segment of the SUT carrying byte {seq}"))
                    .actual("none before the capture ended"),
                ),
            }
        }
        if let Some(v) = stream_violation(
            trace,
            "RFC 9293 §3.8.1",
            "a did not receive the SUT's stream intact after the loss",
            Host::B,
            "stream b→a (a's reads)",
            &stream(c.seed, 1, c.sut_bytes),
            &s.a_received,
        ) {
            f.push(v);
        }
        f.verdict()
    }
}
