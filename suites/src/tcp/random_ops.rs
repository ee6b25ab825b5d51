//! Random programs on both hosts' kernel sockets (suite `tcp-ops`), judged by the reference model and the
//! TCP invariants.

use harness::property::{Cap, KernelNeed, Subject};
use std::time::Duration;

use harness::exec::{run_program, ExecConfig, HostSockets, OpOutcome};
use harness::model::{self, GenLimits, ModelFault};
use harness::ops::{Op, Program};
use harness::property::{CaseEnv, CaseRng, LinkKind, Needs, Property, PropertyInfo, Verdict};
use harness::sock::Family;
use harness::trace::Trace;
use harness::HarnessError;
use serde::{Deserialize, Serialize};

/// Random but meaningful socket programs on both hosts (lab Q19, Q33–Q36 in spirit: every TCP case is held
/// to the invariants `tcp.stream.integrity`, `tcp.seq.accounting`, `tcp.window.respected`,
/// `tcp.window.bounded_by_buffer`).
///
/// Each case is a [`Program`] from [`model::generate`] (≤ 20 ops, barriers included). The executor runs it on
/// real sockets; [`model::check`] holds every outcome to the model's postconditions (EPIPE after the socket's
/// own shutdown(WR), ECONNREFUSED for a port nobody bound, EOF only after the peer's FIN and once every byte
/// was read, bytes read equal to bytes written — RFC 9293 §3.4, §3.6, §3.10.2–§3.10.4, §3.10.7); the runner
/// adds the trace invariants. A failure shrinks to the smallest program that still fails (ops removed, sizes
/// halved), is re-run to be classified confirmed or flaky, and is written as a replayable case file.
pub struct RandomOps {
    /// How programs are generated (`--max-ops`).
    pub limits: GenLimits,
    /// Test only: a deliberate error in the model's predictions (`--model-fault`), stored in each case, so
    /// replays carry it.
    pub fault: Option<ModelFault>,
}

/// `tcp.random_ops` as the default suites list it; a run with `--max-ops` or `--model-fault` uses its own
/// [`RandomOps`] value instead (no state shared between the command line and the property).
pub static RANDOM_OPS: RandomOps = RandomOps {
    limits: GenLimits::DEFAULT,
    fault: None,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RandomOpsCase {
    pub program: Program,
    /// Test only: a deliberate error in the model's predictions (see [`ModelFault`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_fault: Option<ModelFault>,
}

pub struct RandomOpsObserved {
    pub outcomes: Vec<OpOutcome>,
    /// Kept open until the capture stopped (dropped with the observation).
    pub sockets: Vec<HostSockets>,
}

impl std::fmt::Debug for RandomOpsObserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RandomOpsObserved")
            .field("outcomes", &self.outcomes)
            .finish_non_exhaustive()
    }
}

impl Property for RandomOps {
    type Case = RandomOpsCase;
    type Observed = RandomOpsObserved;

    fn info(&self) -> PropertyInfo {
        PropertyInfo {
            id: "tcp.random_ops",
            suite: "tcp-ops",
            title: "random socket programs on both hosts meet the model's predictions and every TCP invariant",
            clauses: &["RFC 9293 §3.4", "RFC 9293 §3.6", "RFC 9293 §3.10.2–§3.10.4", "RFC 9293 §3.10.7.1"],
            questions: &["Q19", "Q33", "Q34", "Q35"],
            subject: Subject::Both,
            needs: Needs {
                links: &[LinkKind::Veth],
                kernel: &[KernelNeed::Sockets],
                caps: &[Cap::Tcp, Cap::Udp],
                ethernet: false,
            },
        }
    }

    fn generate(&self, rng: &mut CaseRng, _family: Family) -> RandomOpsCase {
        RandomOpsCase {
            program: model::generate(rng, self.limits),
            model_fault: self.fault,
        }
    }

    fn describe(&self, case: &RandomOpsCase) -> String {
        let render = |ops: &[Op]| ops.iter().map(Op::render).collect::<Vec<_>>().join("; ");
        format!(
            "a: [{}] | b: [{}]",
            render(&case.program.a),
            render(&case.program.b)
        )
    }

    fn execute(
        &self,
        case: &RandomOpsCase,
        env: &CaseEnv,
    ) -> Result<RandomOpsObserved, HarnessError> {
        let (outcomes, sockets) = run_program(
            env.lab,
            &case.program,
            ExecConfig::new(env.seed, env.family),
        )?;
        Ok(RandomOpsObserved { outcomes, sockets })
    }

    fn settle(&self, _case: &RandomOpsCase) -> Duration {
        Duration::from_millis(5)
    }

    fn shrink(&self, case: &RandomOpsCase) -> Vec<RandomOpsCase> {
        shrink_program(&case.program)
            .into_iter()
            .map(|program| RandomOpsCase {
                program,
                ..case.clone()
            })
            .collect()
    }

    fn size(&self, case: &RandomOpsCase) -> Option<usize> {
        Some(case.program.len())
    }

    fn check(&self, case: &RandomOpsCase, observed: &RandomOpsObserved, _trace: &Trace) -> Verdict {
        let violations = model::check(&observed.outcomes, case.model_fault);
        match violations.into_iter().next() {
            None => Verdict::pass(),
            Some(mut v) => {
                // The executed program, so the violation reads on its own.
                v.context = observed
                    .outcomes
                    .iter()
                    .map(|o| {
                        format!(
                            "{} #{:<2} seg {}  {:<28} -> {}",
                            o.host.name(),
                            o.index,
                            o.segment,
                            o.op.render(),
                            o.result.render()
                        )
                    })
                    .collect();
                v.context.push("--".into());
                Verdict::fail(v)
            }
        }
    }
}

/// Smaller programs: chunks of ops removed (halves first, then single ops), then sizes halved.
pub fn shrink_program(p: &Program) -> Vec<Program> {
    let mut out = Vec::new();
    for host in [harness::frame::Host::A, harness::frame::Host::B] {
        let ops = p.ops(host);
        let n = ops.len();
        let mut chunk = (n / 2).max(1);
        while chunk >= 1 {
            let mut start = 0;
            while start < n {
                let end = (start + chunk).min(n);
                let mut q = p.clone();
                q.ops_mut(host).drain(start..end);
                out.push(q);
                start += chunk;
            }
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
    }
    for host in [harness::frame::Host::A, harness::frame::Host::B] {
        for i in 0..p.ops(host).len() {
            let smaller = match &p.ops(host)[i] {
                Op::Write { sock, len } if *len > 1 => Some(Op::Write {
                    sock: *sock,
                    len: len / 2,
                }),
                Op::Read { sock, max } if *max > 1 => Some(Op::Read {
                    sock: *sock,
                    max: max / 2,
                }),
                Op::Sleep { ms } if *ms > 1 => Some(Op::Sleep { ms: ms / 2 }),
                _ => None,
            };
            if let Some(op) = smaller {
                let mut q = p.clone();
                q.ops_mut(host)[i] = op;
                out.push(q);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness::ops::SockKind;

    #[test]
    fn shrink_candidates_are_strictly_smaller_or_simpler() {
        let p = Program {
            a: vec![
                Op::Socket {
                    kind: SockKind::Udp,
                },
                Op::Write { sock: 0, len: 10 },
                Op::Sync,
            ],
            b: vec![Op::Sleep { ms: 4 }],
        };
        let c = shrink_program(&p);
        assert!(c
            .iter()
            .all(|q| q.len() < p.len() || q.len() == p.len() && q != &p));
        assert!(c.contains(&Program {
            a: vec![
                Op::Socket {
                    kind: SockKind::Udp
                },
                Op::Sync
            ],
            b: p.b.clone()
        }));
        assert!(c
            .iter()
            .any(|q| q.a.get(1) == Some(&Op::Write { sock: 0, len: 5 })));
    }
}
