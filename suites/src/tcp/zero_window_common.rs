//! Helpers shared by the zero-window properties (suite `tcp-data`): a kernel sender facing a kernel receiver whose
//! buffer is full (`tcp.zero_window.probes`), and facing a scripted peer that closes and reopens its window on cue
//! (`tcp.zero_window.peer`), and b as the sender facing a's full buffer (`tcp.zero_window.sender`).

use std::time::Duration;

/// Linux's zero-window probe base: the probe timer starts at max(RTO, TCP_RTO_MIN = 200 ms) and doubles
/// (tcp_probe0_base / tcp_probe0_when); docs/kernel-facts.md measured gaps of 0.21, 0.43, 0.86, 1.70 s.
pub(super) const PROBE_BASE: Duration = Duration::from_millis(200);
/// Accepted spread of a probe gap around `PROBE_BASE · 2^i`: −10 % (timers never fire early by more than
/// jiffy rounding) to +30 % + 30 ms (timer slack and scheduling on a loaded 2-core machine).
pub(super) const PROBE_EARLY: f64 = 0.9;
pub(super) const PROBE_LATE: f64 = 1.3;
pub(super) const PROBE_SLACK: Duration = Duration::from_millis(30);

pub(super) const PORT: u16 = 5001;
