//! Helpers shared by the TCP close properties (suite `tcp-lifecycle`): the three close shapes, half-close, and
//! writing after the peer closed.

/// Blocking reads and writes of these cases wait this long: long enough for 200 KB through a small
/// buffer on a loaded 2-core machine, short enough that a lost FIN shows as a timed-out read, not a hang.
pub(super) const IO_TIMEOUT_MS: u32 = 2_000;
