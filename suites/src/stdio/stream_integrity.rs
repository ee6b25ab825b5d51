use harness::frame::Host;
use harness::property::{
    CaseEnv, CaseRng, Findings, Property, PropertyInfo, Subject, Verdict, Violation,
};
use harness::sock::Family;
use harness::sut::stdio_session::FirstClose;
use harness::trace::Trace;
use harness::HarnessError;
use serde::{Deserialize, Serialize};

use super::common::{
    exchange, gen_size, session, session_failure, stream, stream_violation, Sessions, STDIO,
};

/// Stream integrity both ways through a stdio SUT (lab Q19).
///
/// RFC 9293 §3.4 / §3.10.4: the bytes a TCP delivers are the bytes its peer sent, in order, once; the
/// stdio contract (`docs/driver-protocol.md`, "Other modes") makes the SUT's stdin what it sends and its
/// stdout what it received.
///
/// Cases: the SUT's stdin gets 0–60 KB and then EOF; a writes 0–60 KB at once, and shuts down its side
/// after it read the SUT's FIN (so the SUT closes first: a stack that cannot take a peer's first close is
/// judged by `stdio.close.half_close`, not here). Checked: a reads exactly the SUT's stdin, then EOF (the
/// SUT's FIN); the SUT prints exactly a's bytes. A violation names the first byte that differs and the
/// frame that carried it. The four TCP invariants are checked on the trace as on every case.
pub struct StreamIntegrity;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamIntegrityCase {
    pub sut_bytes: usize,
    pub a_bytes: usize,
    pub seed: u64,
}

impl Property for StreamIntegrity {
    type Case = StreamIntegrityCase;
    type Observed = Sessions;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "stdio.stream.integrity",
            suite: "stdio",
            title:
                "the SUT sends its stdin and prints what it received, exactly, both ways at once",
            clauses: &["RFC 9293 §3.4", "RFC 9293 §3.10.4"],
            questions: &["Q19"],
            subject: Subject::B,
            needs: STDIO,
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> Self::Case {
        use rand::Rng;
        StreamIntegrityCase {
            sut_bytes: gen_size(rng),
            a_bytes: gen_size(rng),
            seed: rng.gen(),
        }
    }

    fn describe(&self, c: &Self::Case) -> String {
        format!(
            "the SUT sends {} B (stdin, then EOF), a sends {} B at once",
            c.sut_bytes, c.a_bytes
        )
    }

    fn execute(&self, c: &Self::Case, env: &CaseEnv) -> Result<Self::Observed, HarnessError> {
        let plan = exchange(c.seed, c.sut_bytes, c.a_bytes, FirstClose::Both);
        Ok(vec![session(env, &plan)?])
    }

    fn check(&self, c: &Self::Case, observed: &Self::Observed, trace: &Trace) -> Verdict {
        let s = &observed[0];
        if let Some(v) = session_failure(s) {
            return Verdict::fail(v);
        }
        let mut f = Findings::default();
        let sut_sends = stream(c.seed, 1, c.sut_bytes);
        let a_sends = stream(c.seed, 2, c.a_bytes);
        if let Some(v) = stream_violation(
            trace,
            "RFC 9293 §3.4",
            "a did not receive exactly the SUT's stdin",
            Host::B,
            "stream b→a (a's reads)",
            &sut_sends,
            &s.a_received,
        ) {
            f.push(v);
        }
        f.check(s.a_eof, || {
            Violation::new("RFC 9293 §3.6", "no FIN from the SUT after its stdin's EOF")
                .field("FIN b→a")
                .expected("a reads EOF after the SUT's bytes")
                .actual(match &s.a_error {
                    Some(e) => format!("a's socket: {e}"),
                    None => s
                        .limit_hit
                        .clone()
                        .map(|w| format!("still waiting for {w} at the case limit"))
                        .unwrap_or_else(|| "no EOF".into()),
                })
        });
        if let Some(v) = stream_violation(
            trace,
            "RFC 9293 §3.10.4",
            "the SUT did not print exactly what a sent",
            Host::A,
            "stream a→b (the SUT's stdout)",
            &a_sends,
            &s.sut_stdout,
        ) {
            f.push(v);
        }
        f.note(format!(
            "{} B each way checked; the SUT {}",
            c.sut_bytes.max(c.a_bytes),
            match s.ending {
                harness::sut::stdio::Ending::Exited(_) => "exited by itself",
                harness::sut::stdio::Ending::Ended => "was ended",
            }
        ));
        f.verdict()
    }

    fn settle(&self, _c: &Self::Case) -> std::time::Duration {
        std::time::Duration::from_millis(10)
    }
}
