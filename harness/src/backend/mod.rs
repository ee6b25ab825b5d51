//! What executes a host's program — the seam where the system under test varies.
//!
//! Host `a` is always the lab's Linux kernel. Host `b` is the system under test (SUT): today's
//! [`kernel`] backend runs b's ops on b's own kernel sockets; a driven process (`netconform-sut/1`,
//! `docs/driver-protocol.md`) is the other kind. The executor ([`crate::exec`]) only sees a
//! [`HostSession`]: one op in, one [`OpResult`] out.
//!
//! What differs between backends is declared, not discovered: a property names its [`Subject`] (the host it
//! judges) and its [`Needs`] (kernel introspection, driver capabilities, links); a backend states its
//! [`Offer`]; [`Offer::unmet`] says why a property cannot run (`needs kernel TCP_INFO on b`), and the runner
//! reports it `skipped` with that reason — never passed. Timing bounds come from the backend too
//! ([`TimingBounds`]): Linux's constants for the kernel, the RFCs' bounds for any other stack.
//!
//! - [`kernel`] — b's program on the lab host's own kernel sockets.
//! - [`driven`] — b's program as `netconform-sut/1` requests to a SUT process.

pub mod driven;
pub mod kernel;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::HarnessError;
use crate::exec::outcome::{OpResult, SockSnapshot};
use crate::link::LinkKind;
use crate::ops::Op;

/// A host's sockets as one backend runs them. Ops come one at a time, in program order; the session keeps
/// its sockets (by the program's indices) until it is dropped, after the capture stopped.
pub trait HostSession: Send {
    /// Runs one op on an open socket (the executor has checked [`HostSession::slot`]). An op that does not
    /// apply (wrong kind, no request for it) is [`OpResult::Skipped`]; a [`HarnessError`] means the backend
    /// itself failed (the case errors).
    fn apply(&mut self, op: &Op) -> Result<OpResult, HarnessError>;
    /// What the program index `sock` holds: ops on a missing or closed socket are no-ops (the op language's
    /// rule, applied once by the executor for every backend).
    fn slot(&self, sock: usize) -> Slot;
    /// The socket at program index `sock` right after an op, as far as the backend can tell.
    fn snapshot(&mut self, sock: usize) -> Option<SockSnapshot>;
}

/// What a program's socket index holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// No socket was ever made at this index.
    Missing,
    /// Closed by the program: the index stays taken.
    Closed,
    Open,
}

/// The host a property judges: its violations are findings about that host only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    /// Host b, the system under test (the RST sender, the probing sender, the coalescing receiver).
    B,
    /// Host a (the kernel b talks to): a property judging a cannot judge a non-kernel SUT.
    A,
    /// Both hosts, each for its own behaviour (the program model, invariants of every conversation).
    Both,
}

impl Subject {
    pub fn name(self) -> &'static str {
        match self {
            Subject::B => "b",
            Subject::A => "a",
            Subject::Both => "a+b",
        }
    }
}

/// What only a Linux kernel on host b gives a property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelNeed {
    /// TCP_INFO of b's sockets (states, windows, retransmission counts in every snapshot).
    TcpInfo,
    /// sock_diag of b's namespace (TIME-WAIT and orphaned sockets).
    SockDiag,
    /// b's own protocol counters in `/proc` (UDP MIB, snmp6).
    ProcCounters,
    /// sysctls the case sets in b's namespace.
    Sysctl,
    /// b's kernel sockets driven directly, outside the op language (readiness, flags, raw sockets).
    Sockets,
    /// Linux's timer constants, with no RFC-bound variant of the check yet.
    LinuxTimers,
    /// b's kernel answering netconform's scripted peer through a TUN device in b's namespace.
    ScriptedPeer,
}

impl KernelNeed {
    pub const ALL: &'static [KernelNeed] = &[
        KernelNeed::TcpInfo,
        KernelNeed::SockDiag,
        KernelNeed::ProcCounters,
        KernelNeed::Sysctl,
        KernelNeed::Sockets,
        KernelNeed::LinuxTimers,
        KernelNeed::ScriptedPeer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            KernelNeed::TcpInfo => "TCP_INFO",
            KernelNeed::SockDiag => "sock_diag",
            KernelNeed::ProcCounters => "/proc counters",
            KernelNeed::Sysctl => "sysctls",
            KernelNeed::Sockets => "sockets (direct syscalls)",
            KernelNeed::LinuxTimers => "Linux timer constants",
            KernelNeed::ScriptedPeer => "scripted peer",
        }
    }
}

/// A capability a driven SUT declares in its hello (`docs/driver-protocol.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Cap {
    Tcp,
    Udp,
    SetOptRcvBuf,
    SetOptSndBuf,
    SetOptNoDelay,
    ShutdownWr,
    ShutdownRd,
    Abort,
    State,
    MultiConn,
    Ipv6,
    /// Not a driver capability: b is a passive stdio SUT (`--sut-mode stdio`), one connection whose bytes
    /// are its stdin and stdout. Properties written for that mode need it; nothing else offers it.
    Stdio,
}

impl Cap {
    pub const ALL: &'static [Cap] = &[
        Cap::Tcp,
        Cap::Udp,
        Cap::SetOptRcvBuf,
        Cap::SetOptSndBuf,
        Cap::SetOptNoDelay,
        Cap::ShutdownWr,
        Cap::ShutdownRd,
        Cap::Abort,
        Cap::State,
        Cap::MultiConn,
        Cap::Ipv6,
        Cap::Stdio,
    ];

    /// The name on the wire (`set_opt:rcv_buf`).
    pub fn name(self) -> &'static str {
        match self {
            Cap::Tcp => "tcp",
            Cap::Udp => "udp",
            Cap::SetOptRcvBuf => "set_opt:rcv_buf",
            Cap::SetOptSndBuf => "set_opt:snd_buf",
            Cap::SetOptNoDelay => "set_opt:no_delay",
            Cap::ShutdownWr => "shutdown_wr",
            Cap::ShutdownRd => "shutdown_rd",
            Cap::Abort => "abort",
            Cap::State => "state",
            Cap::MultiConn => "multi_conn",
            Cap::Ipv6 => "ipv6",
            Cap::Stdio => "stdio",
        }
    }

    /// A capability a driven SUT may declare in its hello (`stdio` is not one).
    pub fn parse(name: &str) -> Option<Cap> {
        Cap::ALL
            .iter()
            .copied()
            .filter(|c| *c != Cap::Stdio)
            .find(|c| c.name() == name)
    }
}

/// What a property needs to run.
#[derive(Debug, Clone, Copy)]
pub struct Needs {
    /// The links its cases build (`Veth`: none of its own, the user's link). Checked against what generated
    /// cases really build (`suites/src/lib.rs` tests).
    pub links: &'static [LinkKind],
    /// What only a Linux kernel on b gives (empty: the wire and the op language are enough).
    pub kernel: &'static [KernelNeed],
    /// The driver capabilities b's program uses (for a driven SUT).
    pub caps: &'static [Cap],
    /// The link must carry Ethernet frames (ARP/ND, e.g. an unresolved neighbour): a veth pair, not the
    /// relay's or a SUT's IP-only link.
    pub ethernet: bool,
}

impl Needs {
    /// Needs nothing beyond the wire, TCP ops and the default link.
    pub const TCP_WIRE: Needs = Needs {
        links: &[LinkKind::Veth],
        kernel: &[],
        caps: &[Cap::Tcp],
        ethernet: false,
    };

    /// One line for `netconform list`: `kernel TCP_INFO, sock_diag; caps tcp, abort`.
    pub fn render(&self) -> String {
        let mut parts = Vec::new();
        if !self.kernel.is_empty() {
            let names: Vec<_> = self.kernel.iter().map(|k| k.name()).collect();
            parts.push(format!("kernel {}", names.join(", ")));
        }
        if !self.caps.is_empty() {
            let names: Vec<_> = self.caps.iter().map(|c| c.name()).collect();
            parts.push(format!("caps {}", names.join(", ")));
        }
        if self.ethernet {
            parts.push("an Ethernet link (veth)".into());
        }
        if parts.is_empty() {
            "the wire".into()
        } else {
            parts.join("; ")
        }
    }
}

/// What a run's backend for host b offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// `kernel`, or the SUT's stack as its hello names it.
    pub backend: String,
    /// True when b is the lab's Linux kernel (every [`KernelNeed`] met).
    pub kernel: bool,
    /// The capabilities of a driven SUT (every cap, for the kernel).
    pub caps: Vec<Cap>,
    /// Families b speaks.
    pub ipv6: bool,
}

impl Offer {
    /// b is the lab's own Linux kernel: everything is offered but a stdio SUT's one connection.
    pub fn kernel() -> Offer {
        Offer {
            backend: "kernel".into(),
            kernel: true,
            caps: Cap::ALL
                .iter()
                .copied()
                .filter(|c| *c != Cap::Stdio)
                .collect(),
            ipv6: true,
        }
    }

    /// A passive stdio SUT (`--sut-mode stdio`): one connection, no requests.
    pub fn stdio(backend: String) -> Offer {
        Offer {
            backend,
            kernel: false,
            caps: vec![Cap::Stdio],
            ipv6: true,
        }
    }

    /// Why a property with this subject and these needs cannot run here; `None` when it can.
    pub fn unmet(&self, subject: Subject, needs: &Needs) -> Option<String> {
        let stdio = self.caps.contains(&Cap::Stdio);
        if needs.caps.contains(&Cap::Stdio) && !stdio {
            return Some(
                "needs a passive stdio SUT on b (--sut-mode stdio): its one connection is the case"
                    .into(),
            );
        }
        if self.kernel {
            return None;
        }
        if stdio && subject != Subject::A && needs.kernel.is_empty() {
            if let Some(c) = needs.caps.iter().find(|c| **c != Cap::Stdio) {
                return Some(format!(
                    "drives b with socket requests (cap {}); a stdio SUT ({}) takes none",
                    c.name(),
                    self.backend
                ));
            }
        }
        if subject == Subject::A {
            return Some(format!(
                "judges host a (the SUT's Linux peer), not the SUT on b ({})",
                self.backend
            ));
        }
        if let Some(k) = needs.kernel.first() {
            return Some(format!("needs kernel {} on b", k.name()));
        }
        let missing: Vec<_> = needs
            .caps
            .iter()
            .filter(|c| !self.caps.contains(c))
            .map(|c| c.name())
            .collect();
        if !missing.is_empty() {
            return Some(format!(
                "needs SUT capability {} ({} does not declare it)",
                missing.join(", "),
                self.backend
            ));
        }
        None
    }

    /// The timing bounds cases are judged against.
    pub fn timing(&self) -> TimingBounds {
        if self.kernel {
            TimingBounds::LINUX
        } else {
            TimingBounds::RFC
        }
    }
}

/// The timing a subject is held to: Linux's constants when b is the kernel, the RFCs' bounds otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimingBounds {
    /// Where the numbers come from, named in violations.
    pub source: &'static str,
    /// An ACK that must be sent at once (out-of-order or gap-filling data, RFC 5681 §4.2; Linux sends it
    /// before TCP_DELACK_MIN, 40 ms, could fire) comes within this.
    pub immediate_ack: Duration,
    /// No ACK is delayed longer than this (RFC 9293 MUST-40: 0.5 s).
    pub ack_delay_max: Duration,
    /// The smallest retransmission timeout (Linux TCP_RTO_MIN 200 ms; RFC 6298 (2.4): 1 s): a
    /// retransmission earlier than this after the loss is a fast one.
    pub rto_min: Duration,
    /// Added to a property's settle time before the capture stops: answers still in flight from the
    /// subject. The kernel answers within microseconds; a user-space stack (an interpreted one, on a
    /// loaded machine) is given 250 ms — measured: a Python stack missed a 10 ms settle at load 21.
    pub answer_grace: Duration,
}

impl TimingBounds {
    pub const LINUX: TimingBounds = TimingBounds {
        source: "Linux constants (docs/kernel-facts.md)",
        immediate_ack: Duration::from_millis(40),
        ack_delay_max: Duration::from_millis(500),
        rto_min: Duration::from_millis(200),
        answer_grace: Duration::ZERO,
    };
    pub const RFC: TimingBounds = TimingBounds {
        source: "RFC bounds (RFC 9293 MUST-40, RFC 5681 §4.2, RFC 6298 (2.4))",
        immediate_ack: Duration::from_millis(500),
        ack_delay_max: Duration::from_millis(500),
        rto_min: Duration::from_secs(1),
        answer_grace: Duration::from_millis(250),
    };
}

impl fmt::Display for Offer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STDIO_NEEDS: Needs = Needs {
        links: &[LinkKind::Veth],
        kernel: &[],
        caps: &[Cap::Stdio],
        ethernet: false,
    };

    /// A stdio SUT and the socket-request properties skip each other, each with its reason; `stdio` is never
    /// a capability a driven SUT can declare.
    #[test]
    fn stdio_properties_and_request_properties_skip_each_other() {
        let stdio = Offer::stdio("stdio SUT x".into());
        let kernel = Offer::kernel();
        assert!(stdio.unmet(Subject::B, &STDIO_NEEDS).is_none());
        let why = kernel.unmet(Subject::B, &STDIO_NEEDS).unwrap();
        assert!(why.contains("--sut-mode stdio"), "{why}");
        let why = stdio.unmet(Subject::B, &Needs::TCP_WIRE).unwrap();
        assert!(
            why.contains("a stdio SUT (stdio SUT x) takes none"),
            "{why}"
        );
        assert!(kernel.unmet(Subject::B, &Needs::TCP_WIRE).is_none());
        assert_eq!(Cap::parse("stdio"), None);
        assert_eq!(Cap::parse("tcp"), Some(Cap::Tcp));
    }
}
