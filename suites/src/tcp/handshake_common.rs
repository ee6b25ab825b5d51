//! Helpers shared by the properties that open connections (suite `tcp-lifecycle`): the three-way handshake
//! and its options (`tcp.handshake.options`), the accept queue (`tcp.accept.backlog`), and the 4-tuple as a
//! connection's identity (`tcp.identity.four_tuple`).
//!
//! Every one of them runs an op [`Program`] on real sockets and judges the captured trace together with the
//! executor's outcomes (TCP_INFO snapshots, accepted peers, stream checks). Stream integrity, sequence
//! accounting and window bounds are checked on every case by `harness::invariants` and are not repeated here.

use harness::exec::{ExecConfig, OpOutcome};
use harness::frame::Host;
use harness::ops::Program;
use harness::property::CaseEnv;
use harness::trace::Trace;
use harness::wire::TcpRepr;
use harness::{HarnessError, SysctlSetting};

use crate::conn::ProgramObserved;

pub(super) fn run(
    env: &CaseEnv,
    program: Program,
    cfg: ExecConfig,
) -> Result<ProgramObserved, HarnessError> {
    let (outcomes, sockets) = harness::exec::run_program(env.lab, &program, cfg)?;
    Ok(ProgramObserved { outcomes, sockets })
}

pub(super) fn sysctl(host: Host, key: &str, on: bool) -> SysctlSetting {
    SysctlSetting {
        host,
        key: key.into(),
        value: if on { "1" } else { "0" }.into(),
    }
}

/// One captured TCP segment: frame number (1-based), sender, header.
pub(super) type Seg<'t> = (usize, Option<Host>, &'t TcpRepr);

/// The segments of the connection between a's `a_port` and b's `b_port`, in capture order.
pub(super) fn connection(trace: &Trace, a_port: u16, b_port: u16) -> Vec<Seg<'_>> {
    trace
        .frames
        .iter()
        .filter_map(|f| f.tcp().map(|t| (f.number, f.from, t)))
        .filter(|(_, from, t)| match from {
            Some(Host::A) => t.src_port == a_port && t.dst_port == b_port,
            Some(Host::B) => t.src_port == b_port && t.dst_port == a_port,
            None => false,
        })
        .collect()
}

/// The first SYN from a, the first SYN-ACK from b after it, and a's first non-SYN ACK after that.
pub(super) struct Handshake<'t> {
    pub(super) syn: Option<Seg<'t>>,
    pub(super) syn_ack: Option<Seg<'t>>,
    pub(super) ack: Option<Seg<'t>>,
}

pub(super) fn handshake<'t>(segs: &[Seg<'t>]) -> Handshake<'t> {
    let syn = segs
        .iter()
        .find(|(_, from, t)| *from == Some(Host::A) && t.flags.syn && !t.flags.ack)
        .copied();
    let syn_ack = syn.and_then(|(n, _, _)| {
        segs.iter()
            .find(|(m, from, t)| {
                *m > n && *from == Some(Host::B) && t.flags.syn && t.flags.ack && !t.flags.rst
            })
            .copied()
    });
    let ack = syn_ack.and_then(|(n, _, _)| {
        segs.iter()
            .find(|(m, from, t)| {
                *m > n && *from == Some(Host::A) && t.flags.ack && !t.flags.syn && !t.flags.rst
            })
            .copied()
    });
    Handshake { syn, syn_ack, ack }
}

pub(super) fn presence(p: bool) -> &'static str {
    if p {
        "present"
    } else {
        "absent"
    }
}

/// The outcomes of `host`'s ops, in op order.
pub(super) fn ops_of(observed: &ProgramObserved, host: Host) -> Vec<&OpOutcome> {
    observed
        .outcomes
        .iter()
        .filter(|o| o.host == host)
        .collect()
}
