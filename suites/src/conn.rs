//! Helpers shared by the TCP properties: a program that leaves one connection established, and the
//! segments of that connection as a flat list with relative numbers (so a check reads like the RFC).

use harness::exec::{ExecConfig, HostSockets, OpOutcome, OpResult};
use harness::frame::Host;
use harness::ops::{Op, Program, SockKind, SockOpt};
use harness::property::CaseEnv;
use harness::trace::{Label, Trace};
use harness::wire::TcpFlags;
use harness::HarnessError;

/// What a program-driven property observed: every op outcome, and the sockets (kept open until the capture
/// stopped, so the trace shows the program and not the teardown).
pub struct ProgramObserved {
    pub outcomes: Vec<OpOutcome>,
    pub sockets: Vec<HostSockets>,
}

impl ProgramObserved {
    /// Runs `program` on the case's lab (both hosts' backends), each blocking op bounded by `io_timeout_ms`.
    pub fn run(env: &CaseEnv, program: &Program, io_timeout_ms: u32) -> Result<Self, HarnessError> {
        let mut cfg = ExecConfig::new(env.seed, env.family);
        cfg.io_timeout_ms = io_timeout_ms;
        let (outcomes, sockets) = harness::exec::run_program(env.lab, program, cfg)?;
        Ok(ProgramObserved { outcomes, sockets })
    }
}

impl std::fmt::Debug for ProgramObserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgramObserved")
            .field("outcomes", &self.outcomes)
            .finish_non_exhaustive()
    }
}

/// The port b listens on.
pub const PORT: u16 = 5001;

/// b listens on [`PORT`] (with `b_opts` set on the listener first: accepted sockets inherit them), a
/// connects (with `a_opts` set before), b accepts. Afterwards a's socket is s0 and b's accepted socket s1;
/// both hosts have passed two barriers, so the next ops of both run concurrently.
pub fn connected(a_opts: &[SockOpt], b_opts: &[SockOpt]) -> Program {
    connected_on(PORT, a_opts, b_opts)
}

/// [`connected`] on another port (properties that share a trace keep their connections apart by port).
pub fn connected_on(port: u16, a_opts: &[SockOpt], b_opts: &[SockOpt]) -> Program {
    let mut a = vec![
        Op::Sync,
        Op::Socket {
            kind: SockKind::Tcp,
        },
    ];
    a.extend(a_opts.iter().map(|&opt| Op::SetOpt { sock: 0, opt }));
    a.extend([Op::Connect { sock: 0, port }, Op::Sync]);
    let mut b = vec![Op::Socket {
        kind: SockKind::Tcp,
    }];
    b.extend(b_opts.iter().map(|&opt| Op::SetOpt { sock: 0, opt }));
    b.extend([
        Op::Bind { sock: 0, port },
        Op::Listen {
            sock: 0,
            backlog: 8,
        },
        Op::Sync,
        Op::Sync,
        Op::Accept { sock: 0 },
    ]);
    Program { a, b }
}

/// One TCP segment of the case's connection, numbers relative to each side's ISN.
#[derive(Debug, Clone)]
pub struct Seg {
    /// Index into `trace.frames`.
    pub index: usize,
    /// Frame number (1-based, as Wireshark).
    pub number: usize,
    pub from: Host,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub len: u32,
    /// The window field as sent (unscaled).
    pub window: u16,
    pub rel_ns: u64,
    pub retransmission: bool,
}

impl Seg {
    /// Sequence space the segment occupies: payload plus one for SYN and for FIN (RFC 9293 §3.4).
    pub fn seg_len(&self) -> u32 {
        self.len + self.flags.syn as u32 + self.flags.fin as u32
    }
    /// The sequence number after the segment.
    pub fn end(&self) -> u32 {
        self.seq.wrapping_add(self.seg_len())
    }
}

/// The segments of the conversation to or from [`PORT`] (the connection of [`connected`]), in capture
/// order. Segments of other conversations (there are none in these cases) are left out.
pub fn segments(trace: &Trace) -> Vec<Seg> {
    let conv = trace.conversations.iter().find(|c| {
        c.kind == harness::trace::ConversationKind::Tcp
            && (c.server.port == PORT || c.client.port == PORT)
    });
    let Some(conv) = conv else {
        return Vec::new();
    };
    conv.frames
        .iter()
        .filter_map(|&i| {
            let f = &trace.frames[i];
            let t = f.tcp()?;
            Some(Seg {
                index: i,
                number: f.number,
                from: f.from?,
                seq: f.rel_seq?,
                ack: f.rel_ack.unwrap_or(0),
                flags: t.flags,
                len: t.payload_len as u32,
                window: t.window,
                rel_ns: f.rel_ns,
                retransmission: f.labels.contains(&Label::Retransmission),
            })
        })
        .collect()
}

/// The outcomes of `host`'s ops that match `pick`, in op order.
pub fn outcomes_of(
    outcomes: &[OpOutcome],
    host: Host,
    pick: impl Fn(&Op) -> bool,
) -> Vec<&OpOutcome> {
    outcomes
        .iter()
        .filter(|o| o.host == host && pick(&o.op))
        .collect()
}

/// Bytes a read outcome returned, and whether it was EOF; `None` for other results.
pub fn read_result(r: &OpResult) -> Option<(u64, bool, Option<u64>)> {
    match r {
        OpResult::Read {
            n,
            eof,
            mismatch_at,
            ..
        } => Some((*n, *eof, *mismatch_at)),
        _ => None,
    }
}

/// Canonical tcpdump flag letters of a segment, e.g. `F.`.
pub fn flags(s: &Seg) -> String {
    s.flags.tcpdump()
}

/// A relay link with the same one-way delay both ways (the RTT is twice `delay_us`).
pub fn delayed_link(delay_us: u64) -> harness::link::LinkSpec {
    let delay = harness::link::Impairment {
        delay_us,
        ..Default::default()
    };
    harness::link::LinkSpec::Relay(harness::link::RelaySpec {
        a_to_b: delay.clone(),
        b_to_a: delay,
        seed: 1,
    })
}

/// The TCP sockets of `host`'s namespace (sock_diag), TIME-WAIT and orphans included.
pub fn namespace_sockets(
    env: &harness::property::CaseEnv,
    host: Host,
) -> Result<Vec<harness::diag::DiagSocket>, harness::HarnessError> {
    env.lab
        .host(host)
        .run(harness::diag::tcp_sockets)?
        .map_err(|e| harness::sock::socket_step("sock_diag dump", e))
}
