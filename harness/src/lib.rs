//! netconform's engine. A case flows left to right through these modules:
//!
//! - [`property`] — what a property is: id, clauses, lab questions, a case generator, `execute` (sockets) and
//!   `check` (observations + trace → [`property::Verdict`]); [`property::Violation`] is a finding.
//! - [`lab`] — hosts `a`/`b` in anonymous network namespaces on their own threads, veth over netlink, offloads
//!   off (ethtool ioctl), sysctls and `--exec` commands per host, the privilege check.
//! - [`sock`] — kernel sockets created on host threads, with the containment check before connect/send;
//!   [`sockopt`] names the options, receive flags and readiness properties use, so they never call libc.
//! - [`cpu`] — the calling thread's CPU, and pinning it there (senders that must reach veth in order).
//! - [`diag`] — sock_diag: a namespace's TCP sockets with their states, TIME-WAIT and orphans included.
//! - [`counters`] — a lab host's own protocol counters (UDP MIB from /proc/thread-self/net/snmp, snmp6).
//! - [`capture`] — AF_PACKET capture on the link: kernel ns timestamps, direction, drop counting.
//! - [`frame`] — one captured frame, as every capture source hands it on.
//! - [`wire`] — zero-copy packet views with checked constructors and owned reprs; wrap-aware `SeqNumber`.
//! - [`trace`] — frames grouped into conversations, relative seq/ack, roles, canonical lines, labels.
//! - [`pcapng`] — pcapng writer (ns resolution, direction, comments) and pcap/pcapng reader.
//! - [`runner`] — one lab per case, concurrent workers, seeds, case files; [`report`] renders the results.
//! - [`schedule`] — how many cases run at once: CPU slots for CPU-bound phases, admission while CPUs idle.
//! - [`docs`] — coverage tables generated from the properties.
//! - [`error`] — [`HarnessError`]: netconform could not run (never a finding); [`errno`] names errnos.

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
pub mod ops;
pub mod pcapng;
pub mod property;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod snapshot;
pub mod sock;
pub mod sockopt;
pub mod trace;
pub mod wire;

pub use error::HarnessError;
pub use lab::{ExecCommand, LabConfig, SysctlSetting};
