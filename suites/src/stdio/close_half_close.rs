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
    crash_violation, exchange, from_a, from_b, session, stream, stream_violation, Sessions, STDIO,
};

/// Half-close both ways through a stdio SUT (lab Q34).
///
/// RFC 9293 §3.6: "CLOSE is an operation meaning 'I have no more to send' but does not mean 'I will not
/// receive any more.'" (RFC 1122 §4.2.2.13; MAY-1). For a stdio SUT, EOF on its stdin is its shutdown(WR).
///
/// Cases, either way round: **a closes first** — a writes 1–20 KB and shuts down (WR); once the SUT printed
/// it all (and a's FIN had 200 ms to arrive), its stdin gets 1–20 KB and EOF: the SUT must send after its peer
/// closed. **The SUT closes first** — its stdin gets its bytes and EOF at once; a writes only after reading
/// the SUT's FIN: the SUT must receive after it closed. Checked: the side that closed second delivers all
/// its bytes after the first FIN (on the wire: its data segments follow the other side's FIN) and both
/// streams arrive exactly; a SUT that crashes when its peer closes first fails here (and in
/// `stdio.sut.no_crash`).
pub struct HalfClose;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HalfCloseCase {
    pub first: FirstClose,
    pub sut_bytes: usize,
    pub a_bytes: usize,
    pub seed: u64,
}

impl Property for HalfClose {
    type Case = HalfCloseCase;
    type Observed = Sessions;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "stdio.close.half_close",
            suite: "stdio",
            title: "after either side's FIN the other still sends everything, and the closed side receives it",
            clauses: &["RFC 9293 §3.6 (MAY-1)", "RFC 1122 §4.2.2.13"],
            questions: &["Q34"],
            subject: Subject::B,
            needs: STDIO,
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> Self::Case {
        use rand::Rng;
        HalfCloseCase {
            first: if rng.gen_bool(0.5) {
                FirstClose::A
            } else {
                FirstClose::Sut
            },
            sut_bytes: rng.gen_range(1..=20_000),
            a_bytes: rng.gen_range(1..=20_000),
            seed: rng.gen(),
        }
    }

    fn describe(&self, c: &Self::Case) -> String {
        match c.first {
            FirstClose::A => format!(
                "a sends {} B and closes first; then the SUT sends {} B and closes",
                c.a_bytes, c.sut_bytes
            ),
            _ => format!(
                "the SUT sends {} B and closes first; then a sends {} B and closes",
                c.sut_bytes, c.a_bytes
            ),
        }
    }

    fn execute(&self, c: &Self::Case, env: &CaseEnv) -> Result<Self::Observed, HarnessError> {
        let plan = exchange(c.seed, c.sut_bytes, c.a_bytes, c.first);
        Ok(vec![session(env, &plan)?])
    }

    fn check(&self, c: &Self::Case, observed: &Self::Observed, trace: &Trace) -> Verdict {
        let s = &observed[0];
        if let Some(why) = &s.not_connected {
            return Verdict::fail(
                Violation::new(super::common::MODE_CLAUSE, "no connection with the SUT")
                    .field("connection")
                    .expected("a connection")
                    .actual(why),
            );
        }
        let mut f = Findings::default();
        if let Some(how) = s.crash() {
            let mut v = crash_violation(s, &how);
            if c.first == FirstClose::A {
                v.summary = "the SUT crashed after its peer closed first".into();
                let fin = from_a(trace)
                    .find(|(_, t)| t.flags.fin)
                    .map(|(fr, _)| fr.number);
                v = v.frames(fin);
            }
            f.push(v);
        }
        // The second closer's data after the first FIN.
        let (first_fin, second_data) = match c.first {
            FirstClose::A => (
                from_a(trace)
                    .find(|(_, t)| t.flags.fin)
                    .map(|(fr, _)| fr.number),
                from_b(trace)
                    .filter(|(_, t)| t.payload_len > 0)
                    .last()
                    .map(|(fr, _)| fr.number),
            ),
            _ => (
                from_b(trace)
                    .find(|(_, t)| t.flags.fin)
                    .map(|(fr, _)| fr.number),
                from_a(trace)
                    .filter(|(_, t)| t.payload_len > 0)
                    .last()
                    .map(|(fr, _)| fr.number),
            ),
        };
        if let (Some(fin), Some(last)) = (first_fin, second_data) {
            f.note(format!(
                "first FIN #{fin}, the other side's last data #{last}"
            ));
        }
        if let Some(v) = stream_violation(
            trace,
            "RFC 9293 §3.6",
            if c.first == FirstClose::A {
                "the SUT did not send all its bytes after a's FIN"
            } else {
                "a did not receive the SUT's bytes exactly"
            },
            Host::B,
            "stream b→a (a's reads)",
            &stream(c.seed, 1, c.sut_bytes),
            &s.a_received,
        ) {
            f.push(v.frames(first_fin));
        }
        if let Some(v) = stream_violation(
            trace,
            "RFC 9293 §3.6",
            if c.first == FirstClose::A {
                "the SUT did not print a's bytes exactly"
            } else {
                "the SUT did not receive all of a's bytes after its own FIN"
            },
            Host::A,
            "stream a→b (the SUT's stdout)",
            &stream(c.seed, 2, c.a_bytes),
            &s.sut_stdout,
        ) {
            f.push(v.frames(first_fin));
        }
        f.check(s.a_eof || s.crash().is_some(), || {
            Violation::new("RFC 9293 §3.6", "no FIN from the SUT after its stdin's EOF")
                .field("FIN b→a")
                .expected("a reads EOF after the SUT's bytes")
                .actual(
                    s.a_error
                        .clone()
                        .or(s.limit_hit.clone())
                        .unwrap_or_else(|| "no EOF".into()),
                )
        });
        f.verdict()
    }
}
