use harness::property::{
    CaseEnv, CaseRng, Findings, Property, PropertyInfo, Subject, Verdict, Violation,
};
use harness::sock::Family;
use harness::sut::stdio_session::{FirstClose, OTHER_PORT_WAIT};
use harness::trace::Trace;
use harness::HarnessError;
use serde::{Deserialize, Serialize};

use super::common::{exchange, from_a, from_b, session, session_failure, Sessions, STDIO};

/// RST for a SYN to another port of the SUT (lab Q18).
///
/// RFC 9293 §3.10.7.1: if the state is CLOSED, "an incoming segment not containing a RST causes a RST to be
/// sent in response": ACK bit off → `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`. While its connection is up,
/// a connects to the port next to the SUT's own (its listening port, or the port it connected from) and
/// waits 3 s (`OTHER_PORT_WAIT`, room for a user-space stack on a loaded machine). Checked on the wire: b
/// answers a's SYN with RST,ACK, seq 0, ack = SYN + 1. CS144-style stacks never send RST and fail here.
pub struct RstOtherPort;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RstOtherPortCase {
    pub seed: u64,
}

impl Property for RstOtherPort {
    type Case = RstOtherPortCase;
    type Observed = Sessions;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "stdio.rst.other_port",
            suite: "stdio",
            title:
                "a SYN to another port of the SUT is answered by RST,ACK with seq 0, ack SYN + 1",
            clauses: &["RFC 9293 §3.10.7.1"],
            questions: &["Q18"],
            subject: Subject::B,
            needs: STDIO,
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> Self::Case {
        use rand::Rng;
        RstOtherPortCase { seed: rng.gen() }
    }

    fn describe(&self, _c: &Self::Case) -> String {
        "while connected, a connects to the SUT's next port".into()
    }

    fn execute(&self, c: &Self::Case, env: &CaseEnv) -> Result<Self::Observed, HarnessError> {
        let mut plan = exchange(c.seed, 500, 500, FirstClose::Sut);
        plan.probe_other_port = true;
        Ok(vec![session(env, &plan)?])
    }

    fn check(&self, _c: &Self::Case, observed: &Self::Observed, trace: &Trace) -> Verdict {
        let s = &observed[0];
        if let Some(v) = session_failure(s) {
            return Verdict::fail(v);
        }
        let Some((port, outcome)) = &s.other_port else {
            return Verdict::Invalid {
                reason: "the other port was not probed".into(),
            };
        };
        let Some((syn_frame, syn)) =
            from_a(trace).find(|(_, t)| t.flags.syn && t.dst_port == *port)
        else {
            return Verdict::Invalid {
                reason: format!("a's SYN to port {port} is not in the capture"),
            };
        };
        let expected_ack = syn.seq.0.wrapping_add(syn.segment_len());
        let rst = from_b(trace).find(|(_, t)| t.flags.rst && t.src_port == *port);
        let mut f = Findings::default();
        match rst {
            None => f.push(
                Violation::new(
                    "RFC 9293 §3.10.7.1",
                    "no RST answered a SYN to another port of the SUT",
                )
                .frame(syn_frame.number)
                .field("reply")
                .expected(format!(
                    "R. with seq 0, ack {expected_ack} (SEG.SEQ+SEG.LEN)"
                ))
                .actual(format!(
                    "no RST from b within {} ms (a's connect: {outcome})",
                    OTHER_PORT_WAIT.as_millis()
                )),
            ),
            Some((fr, t)) => {
                f.check(
                    t.flags.ack && t.seq.0 == 0 && t.ack.0 == expected_ack,
                    || {
                        Violation::new(
                            "RFC 9293 §3.10.7.1",
                            "the RST for another port has the wrong numbers",
                        )
                        .frames([syn_frame.number, fr.number])
                        .field("RST seq/ack")
                        .expected(format!("R. seq 0, ack {expected_ack}"))
                        .actual(format!(
                            "{} seq {}, ack {}",
                            t.flags.tcpdump(),
                            t.seq.0,
                            t.ack.0
                        ))
                    },
                );
                f.note(format!("RST for port {port}"));
            }
        }
        f.verdict()
    }
}
