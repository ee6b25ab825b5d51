//! netconform's engine. A case flows left to right: generator → case → lab → executor → capture → trace →
//! properties → verdict → report (`docs/architecture.md`). One line per module:
//!
//! - [`property`] — what a property is: id, clauses, lab questions, a case generator, `execute` (sockets) and
//!   `check` (observations + trace → a verdict).
//! - [`verdict`] — [`verdict::Verdict`] per case and the [`verdict::Violation`] that makes a failure (clause,
//!   frames, field, expected, actual); [`verdict::Findings`] collects them during a check.
//! - [`ops`] — the operation language: per-host op lists, sockets by index, ops that do not apply are no-ops.
//! - [`model`] — the reference model: generates meaningful programs and predicts what their outcomes must be.
//! - [`lab`] — a lab is hosts plus a built link: `lab::hosts` (hosts `a`/`b` in anonymous network namespaces
//!   on their own threads, sysctls and `--exec` commands per host, addresses; never imports `link`), `lab::pool`
//!   (pairs of hosts made ahead, each used once), netlink,
//!   ethtool ioctl, privileges (rootless user namespace) and facilities (sysctls, TUN); `Lab::build` is the one place a link kind is chosen.
//! - [`link`] — links that build themselves, one file each (`veth`, `relay`, `peer`) behind the
//!   [`link::BuiltLink`] trait; packet ends, TUN devices and the relay's seeded impairments.
//! - [`script`] — scripts for the scripted peer: crafted segments injected, b's answers matched in order.
//! - [`record`] — what relay and peer record (frames, link decisions) and the clock every frame is stamped with.
//! - [`sut`] — systems under test beyond the kernel: their description (`--sut`), the sandbox an untrusted
//!   SUT process runs in, the `netconform-sut/1` driver that speaks to it, and the passive stdio mode (one
//!   connection per run; a's kernel socket is its peer).
//! - [`backend`] — what executes a host's program (the kernel's sockets, or a driven SUT on b): subjects,
//!   needs, what a backend offers, and the timing bounds it is held to.
//! - [`exec`] — the executor: runs a program through both hosts' backends between barriers, records every
//!   outcome.
//! - [`sock`] — kernel sockets created on host threads, with the containment check before connect/send;
//!   [`sockopt`] names the options, receive flags and readiness properties use, so they never call libc.
//! - [`cpu`] — the calling thread's CPU, and pinning it there (senders that must reach veth in order).
//! - [`diag`] — sock_diag: a namespace's TCP sockets with their states, TIME-WAIT and orphans included.
//! - [`counters`] — a lab host's own protocol counters (UDP MIB from /proc/thread-self/net/snmp, snmp6).
//! - [`capture`] — AF_PACKET capture on the link: kernel ns timestamps, direction, drop counting.
//! - [`frame`] — one captured frame, as every capture source hands it on.
//! - [`wire`] — zero-copy packet views with checked constructors and owned reprs; wrap-aware `SeqNumber`.
//! - [`trace`] — frames grouped into conversations, relative seq/ack, roles, canonical lines, labels.
//! - [`invariants`] — the four TCP invariants checked on every conversation of every case.
//! - [`validity`] — wire validity of every frame (checksums, lengths, options, MSS, flags), in runs and offline.
//! - [`offline`] — the offline judge of `netconform check`: wire-observable properties over any capture.
//! - [`pcapng`] — pcapng writer (ns resolution, direction, comments) and pcap/pcapng reader.
//! - [`pipeline`] — one run in a fresh lab, written once for the runner, snapshots and bench: a case's lab
//!   settings, build and capture (in a CPU slot), execute, settle, stop the capture (in a CPU slot), the trace.
//! - [`runner`] — one lab per case, concurrent workers, seeds, case files, shrinking and confirmation.
//! - [`schedule`] — how many cases run at once: CPU slots for CPU-bound phases, admission while CPUs idle.
//! - [`report`] — the results of a run: terminal summary, JSON, JUnit XML.
//! - [`snapshot`] — fixed scenarios rendered for people and compared with `snapshots/<profile>/`.
//! - [`docs`] — coverage tables generated from the properties (`docs/coverage.md`).
//! - [`error`] — [`HarnessError`]: netconform could not run (never a finding).
//! - [`errno`] — errno values named as Linux names them (`ECONNREFUSED`).

pub mod backend;
pub mod capture;
pub mod counters;
pub mod cpu;
pub mod diag;
pub mod docs;
pub mod errno;
pub mod error;
pub mod exec;
pub mod frame;
pub mod invariants;
pub mod lab;
pub mod link;
pub mod model;
pub mod offline;
pub mod ops;
pub mod pcapng;
pub mod pipeline;
pub mod property;
pub mod record;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod script;
pub mod snapshot;
pub mod sock;
pub mod sockopt;
pub mod sut;
pub mod trace;
pub mod validity;
pub mod verdict;
pub mod wire;

#[cfg(test)]
mod proptests;

pub use error::HarnessError;
pub use lab::{ExecCommand, LabConfig, SysctlSetting};
