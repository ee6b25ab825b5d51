//! Helpers shared by the TCP close properties (suite `tcp-lifecycle`): the three close shapes, half-close, and
//! writing after the peer closed.

use harness::exec::ExecConfig;
use harness::property::CaseEnv;

/// Blocking reads and writes of these cases wait this long: long enough for 200 KB through a small
/// buffer on a loaded 2-core machine, short enough that a lost FIN shows as a timed-out read, not a hang.
pub(super) const IO_TIMEOUT_MS: u32 = 2_000;

pub(super) fn exec_config(env: &CaseEnv) -> ExecConfig {
    let mut cfg = ExecConfig::new(env.seed, env.family);
    cfg.io_timeout_ms = IO_TIMEOUT_MS;
    cfg
}
