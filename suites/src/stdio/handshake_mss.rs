use harness::property::{
    CaseEnv, CaseRng, Findings, Property, PropertyInfo, Subject, Verdict, Violation,
};
use harness::sock::Family;
use harness::sut::stdio_session::FirstClose;
use harness::trace::Trace;
use harness::wire::TcpOption;
use harness::HarnessError;
use serde::{Deserialize, Serialize};

use super::common::{b_syns, exchange, session, session_failure, Sessions, STDIO};

/// The SUT's SYN or SYN-ACK carries an MSS option that fits the link (lab Q12).
///
/// RFC 9293 §3.7.1 (SHLD-5): "TCP implementations SHOULD send an MSS Option in every SYN segment when its
/// receive MSS differs from the default 536 for IPv4 or 1220 for IPv6"; the lab's MTU is 1500 (or the
/// user's), so the receive MSS differs. Without it a's kernel falls back to 536 (CS144 stacks send no
/// options). MUST-14/15: the value is the effective MTU minus the fixed IP and TCP headers, so one above
/// MTU − 40 (IPv4) or − 60 (IPv6) cannot be right. One connection, 2 KB each way.
pub struct MssPresent;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MssCase {
    pub seed: u64,
}

impl Property for MssPresent {
    type Case = MssCase;
    type Observed = Sessions;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "stdio.handshake.mss",
            suite: "stdio",
            title:
                "the SUT's SYN (or SYN-ACK) carries an MSS option no larger than the link allows",
            clauses: &["RFC 9293 §3.7.1 (SHLD-5, MUST-14, MUST-15)"],
            questions: &["Q12"],
            subject: Subject::B,
            needs: STDIO,
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> Self::Case {
        use rand::Rng;
        MssCase { seed: rng.gen() }
    }

    fn describe(&self, _c: &Self::Case) -> String {
        "one connection, 2000 B each way".into()
    }

    fn execute(&self, c: &Self::Case, env: &CaseEnv) -> Result<Self::Observed, HarnessError> {
        let plan = exchange(c.seed, 2000, 2000, FirstClose::Sut);
        Ok(vec![session(env, &plan)?])
    }

    fn check(&self, _c: &Self::Case, observed: &Self::Observed, trace: &Trace) -> Verdict {
        if let Some(v) = session_failure(&observed[0]) {
            return Verdict::fail(v);
        }
        let Some((fr, syn)) = b_syns(trace).into_iter().next() else {
            return Verdict::Invalid {
                reason: "no SYN or SYN-ACK from the SUT in the capture".into(),
            };
        };
        let v6 = fr
            .packet
            .as_ref()
            .ok()
            .and_then(|p| p.src_ip())
            .is_some_and(|ip| ip.is_ipv6());
        // The lab's MTU (docs/driver-protocol.md, NETCONFORM_MTU) unless the user set one: 1500.
        let largest = 1500 - if v6 { 60 } else { 40 };
        let mss = syn.options.iter().find_map(|o| match o {
            TcpOption::MaxSegmentSize(m) => Some(*m),
            _ => None,
        });
        let what = if syn.flags.ack { "SYN-ACK" } else { "SYN" };
        let mut f = Findings::default();
        match mss {
            None => f.push(
                Violation::new(
                    "RFC 9293 §3.7.1 (SHLD-5)",
                    "the SUT's handshake carries no MSS option",
                )
                .frame(fr.number)
                .field(format!("options of the SUT's {what}"))
                .expected(format!("<mss N> with N ≤ {largest}"))
                .actual(format!("{} option(s), no MSS", syn.options.len())),
            ),
            Some(m) => {
                f.check(m as usize <= largest, || {
                    Violation::new(
                        "RFC 9293 §3.7.1 (MUST-14, MUST-15)",
                        "the SUT's MSS is larger than the link can carry",
                    )
                    .frame(fr.number)
                    .field(format!("MSS option of the SUT's {what}"))
                    .expected(format!("≤ {largest} (MTU 1500 − headers)"))
                    .actual(m)
                });
                f.note(format!("MSS {m}"));
            }
        }
        f.verdict()
    }
}
