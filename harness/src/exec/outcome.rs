//! What executing an op produced, whichever backend ran it: [`OpResult`], the socket right after
//! ([`SockSnapshot`]) and the timed [`OpOutcome`]; plus the deadlines of blocking ops ([`ExecConfig`]).

use serde::{Deserialize, Serialize};

use crate::frame::Host;
use crate::ops::{Op, SockKind, TcpState};
use crate::sock::{Errno, Family, TcpInfo};

/// Deadlines of blocking operations.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ExecConfig {
    pub seed: u64,
    pub family: Family,
    /// read/accept/recvfrom wait at most this long for data; write waits this long for buffer space.
    pub io_timeout_ms: u32,
    /// connect waits at most this long for the SYN-ACK or RST (the first SYN retransmission is at 1 s,
    /// TCP_TIMEOUT_INIT, so a shorter deadline never sees one).
    pub connect_timeout_ms: u32,
}

impl ExecConfig {
    pub fn new(seed: u64, family: Family) -> Self {
        ExecConfig {
            seed,
            family,
            io_timeout_ms: 40,
            connect_timeout_ms: 300,
        }
    }
}

/// What an op returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum OpResult {
    /// The op does not apply (no such socket, closed socket, wrong kind): a no-op.
    Skipped {
        why: String,
    },
    Done,
    /// Bytes written or sent; for accept, the new socket's index.
    Value {
        value: u64,
    },
    /// Bytes read. `offset` is the stream position before the read (TCP); `mismatch_at` the first stream
    /// offset whose byte differs from what the peer's stream holds there.
    Read {
        n: u64,
        returned: u64,
        eof: bool,
        truncated: bool,
        offset: u64,
        mismatch_at: Option<u64>,
    },
    Errno {
        errno: String,
    },
    /// Nothing happened before the op's deadline (no data, no connection, no buffer space).
    TimedOut,
}

impl OpResult {
    pub fn errno(&self) -> Option<&str> {
        match self {
            OpResult::Errno { errno } => Some(errno),
            _ => None,
        }
    }
    /// What a read of exactly `len` bytes gives, whichever backend ran it: `got` bytes from stream offset
    /// `offset`, `eof` when the stream ended before any. Nothing by the deadline is [`OpResult::TimedOut`];
    /// asking for 0 bytes is satisfied at once (like read(fd, buf, 0)).
    pub fn read_exact(
        len: usize,
        got: u64,
        eof: bool,
        offset: u64,
        mismatch_at: Option<u64>,
    ) -> OpResult {
        if got == 0 && !eof && len > 0 {
            OpResult::TimedOut
        } else {
            OpResult::Read {
                n: got,
                returned: got,
                eof: eof && got == 0,
                truncated: false,
                offset,
                mismatch_at,
            }
        }
    }

    pub fn err(e: Errno) -> OpResult {
        OpResult::Errno { errno: e.name() }
    }
    pub fn render(&self) -> String {
        match self {
            OpResult::Skipped { why } => format!("skipped ({why})"),
            OpResult::Done => "ok".into(),
            OpResult::Value { value } => format!("{value}"),
            OpResult::Read {
                n,
                returned,
                eof,
                truncated,
                mismatch_at,
                ..
            } => {
                let mut s = if *eof {
                    "0 (EOF)".to_string()
                } else if returned != n {
                    format!("{returned} ({n} copied)")
                } else {
                    format!("{n}")
                };
                if *truncated {
                    s.push_str(" MSG_TRUNC");
                }
                if let Some(m) = mismatch_at {
                    s.push_str(&format!(" CORRUPT at stream offset {m}"));
                }
                s
            }
            OpResult::Errno { errno } => errno.clone(),
            OpResult::TimedOut => "timed out".into(),
        }
    }
}

/// The socket an op acted on, right after the op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SockSnapshot {
    pub kind: SockKind,
    pub local_port: Option<u16>,
    pub peer_port: Option<u16>,
    pub tcp: Option<TcpInfo>,
    pub rcvbuf: Option<i32>,
}

impl SockSnapshot {
    pub fn state(&self) -> Option<TcpState> {
        self.tcp.and_then(|t| TcpState::from_kernel(t.state))
    }
}

/// One executed op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpOutcome {
    pub host: Host,
    /// Index of the op in its host's list.
    pub index: usize,
    /// Segment (between barriers) the op ran in.
    pub segment: usize,
    pub op: Op,
    pub result: OpResult,
    pub sock: Option<SockSnapshot>,
    /// Nanoseconds since the program started.
    pub t_ns: u64,
    /// CLOCK_REALTIME (the capture's clock, [`crate::record::realtime_ns`]) when the op was called and
    /// when it returned, in ns: a timing check compares the kernel event an op starts (a timer armed by a
    /// write, a window update sent by a read) with the capture in one clock, and knows how long the op
    /// itself took (on an overloaded machine a thread can wait tens of ms between the two).
    #[serde(default)]
    pub wall_ns: u64,
    #[serde(default)]
    pub done_wall_ns: u64,
}
