//! One run of something in a fresh lab, written once: build the lab and start capturing (holding a CPU
//! slot), execute, settle, stop capturing (holding a CPU slot again, kept for the caller's check), and the
//! trace of what was captured.
//!
//! Its callers differ only in what they execute and what they do with the capture, so those are theirs:
//! the runner executes a property's case and checks it ([`crate::runner`]), snapshots run a fixed program
//! and render the trace ([`crate::snapshot`]), `netconform bench` runs a bulk transfer and counts the
//! capture's drops. What the capture's drops mean is the caller's too (a case is invalid, a snapshot an
//! error, a benchmark reports them).
//!
//! Left out: the SUT-specific parts of a case (its [`CaseContext`], timing bounds, receive-buffer limits,
//! a crash as a finding) stay with the runner, which knows the case; this module only passes the context to
//! [`Lab::build_case`].

use std::time::Duration;

use crate::capture::Captured;
use crate::error::HarnessError;
use crate::frame::{Frame, Host};
use crate::lab::{host_addr, Lab, LabConfig};
use crate::record::{realtime_ns, LinkEvent};
use crate::schedule::{CpuGate, CpuSlot};
use crate::sock::Family;
use crate::sut::CaseContext;
use crate::trace::{HostAddrs, Trace};

/// How long capturing goes on after the execution returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// This long, plus twice the link's round trip ([`Lab::link_round_trip`]: zero on veth): answers still
    /// in flight when a property's case ends.
    PlusLinkRoundTrips(Duration),
    /// Exactly this long (a snapshot scenario's settle is chosen for its link; bench: zero).
    Exactly(Duration),
}

/// The lab settings of one case: `user`'s (sysctls, `--exec`, link, SUT), with what the case itself asks
/// for ([`crate::property::Property::lab_config`]) on top: its sysctls and commands after the user's, its
/// MTU over the user's, dynamic neighbours if either asks, and its link when it needs one other than veth
/// (a relay with its own seeded impairments).
pub fn case_config(user: &LabConfig, extra: LabConfig) -> LabConfig {
    let mut config = user.clone();
    config.sysctls.extend(extra.sysctls);
    config.exec.extend(extra.exec);
    config.mtu = extra.mtu.or(config.mtu);
    config.dynamic_neighbours |= extra.dynamic_neighbours;
    if extra.link != crate::link::LinkSpec::Veth {
        config.link = extra.link;
    }
    config
}

/// The lab settings of one case of a run: the user's, with a relay's seed derived from the case's seed, so
/// every case of a `--link relay` run gets its own loss pattern and its case file replays exactly that
/// pattern ([`crate::link::LinkSpec::for_case`]).
pub fn case_lab(user: &LabConfig, case_seed: u64) -> LabConfig {
    LabConfig {
        link: user.link.for_case(case_seed),
        ..user.clone()
    }
}

/// What [`run_in_lab`] hands back: the lab (still up), what the execution returned, what was captured,
/// and the CPU slot taken to stop the capture, held until this is dropped (the caller's check runs in it).
pub struct Ran<'g, T> {
    /// What `execute` returned (dropped before the lab when this is dropped whole).
    pub executed: T,
    pub lab: Lab,
    pub captured: Captured,
    /// When execution started (CLOCK_REALTIME ns): the trace's time zero.
    pub start_ns: u64,
    pub checking: CpuSlot<'g>,
}

impl<T> Ran<'_, T> {
    /// The trace of the captured frames, the relay's decisions attached.
    pub fn trace(&self) -> Trace {
        case_trace(
            &self.captured.frames,
            self.start_ns,
            &self.captured.link_events,
        )
    }
}

/// Runs `execute` in a fresh lab of `config` with the link captured:
///
/// 1. builds the lab ([`Lab::build_case`] for `case`, [`Lab::build`] without one) and starts the capture,
///    holding a slot of `gate` (namespaces and netlink are CPU-bound);
/// 2. executes, holding no slot (mostly waiting); an error ends the run there;
/// 3. waits `settle`;
/// 4. takes a slot of `gate` and stops the capture; the slot stays held in the returned [`Ran`].
pub fn run_in_lab<'g, T>(
    config: &LabConfig,
    case: Option<&CaseContext>,
    gate: &'g CpuGate,
    settle: Settle,
    execute: impl FnOnce(&Lab) -> Result<T, HarnessError>,
) -> Result<Ran<'g, T>, HarnessError> {
    let building = gate.acquire();
    let build = || match case {
        Some(ctx) => Lab::build_case(config, ctx),
        None => Lab::build(config),
    };
    // A kernel step that timed out while the machine was overloaded (the IPv6 local route installed by
    // addrconf's deferred work, seen at load 20) is the harness's, not the case's: one fresh lab more.
    let lab = match build() {
        Err(e) if is_transient_setup_timeout(&e) => build()?,
        other => other?,
    };
    let capture = lab.start_capture()?;
    drop(building);
    let start_ns = realtime_ns();
    let executed = execute(&lab)?;
    std::thread::sleep(match settle {
        Settle::PlusLinkRoundTrips(d) => d + lab.link_round_trip() * 2,
        Settle::Exactly(d) => d,
    });
    let checking = gate.acquire();
    let captured = capture.stop()?;
    Ok(Ran {
        executed,
        lab,
        captured,
        start_ns,
        checking,
    })
}

/// The trace of a case's frames: lab addresses, times from `start_ns`, the relay's decisions attached (also
/// how the HTML report redraws a finished case).
pub fn case_trace(frames: &[Frame], start_ns: u64, link_events: &[LinkEvent]) -> Trace {
    let mut trace = Trace::build(frames, &lab_host_addrs(), Some(start_ns));
    trace.link_events = link_events.to_vec();
    trace
}

/// The lab hosts' addresses as the trace needs them.
pub fn lab_host_addrs() -> HostAddrs {
    let mut entries = Vec::new();
    for host in [Host::A, Host::B] {
        for family in [Family::Ipv4, Family::Ipv6] {
            entries.push((host_addr(host, family), host));
        }
    }
    HostAddrs::new(entries)
}

/// A lab setup step that gave up waiting on the kernel (`ErrorKind::TimedOut`): worth one more lab.
fn is_transient_setup_timeout(e: &HarnessError) -> bool {
    matches!(e, HarnessError::Lab { source, .. } if source.kind() == std::io::ErrorKind::TimedOut)
}
