//! The operation language: what a host does with its sockets, as data.
//!
//! A [`Program`] holds one op list per host. Sockets are referred to by per-host index in creation order
//! (`Socket` and a successful `Accept` each create the next index), so a shrunk program stays meaningful: an op
//! whose socket does not exist (yet, or any more) is a no-op, recorded as `skipped`. [`Op::Sync`] is a barrier:
//! both hosts run their ops up to their next `Sync` concurrently, then wait for each other — so `a` can write
//! while `b` sleeps, and "b listened before a connected" is expressed by a `Sync` between the two.
//!
//! Bytes written are a deterministic stream: byte `i` of the stream a socket writes is
//! [`stream_byte`]`(seed, local_port, i)`, so a reader that knows its peer's port checks every byte it reads
//! without anything being stored.

use serde::{Deserialize, Serialize};

use crate::frame::Host;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SockKind {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShutdownHow {
    Rd,
    Wr,
    RdWr,
}

/// Socket options the generator varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "opt", content = "value", rename_all = "snake_case")]
pub enum SockOpt {
    RcvBuf(i32),
    SndBuf(i32),
    NoDelay(bool),
    Cork(bool),
    QuickAck(bool),
    /// SO_LINGER: `Some(secs)` on, `None` off.
    Linger(Option<u16>),
    ReuseAddr(bool),
    NonBlocking(bool),
}

/// TCP states as TCP_INFO reports them (include/net/tcp_states.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
    BoundInactive,
}

impl TcpState {
    /// The RFC 9293 §3.3.2 name (Linux's NEW_SYN_RECV and BOUND_INACTIVE keep theirs).
    pub fn rfc_name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN-SENT",
            TcpState::SynRecv => "SYN-RECEIVED",
            TcpState::FinWait1 => "FIN-WAIT-1",
            TcpState::FinWait2 => "FIN-WAIT-2",
            TcpState::TimeWait => "TIME-WAIT",
            TcpState::Close => "CLOSED",
            TcpState::CloseWait => "CLOSE-WAIT",
            TcpState::LastAck => "LAST-ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
            TcpState::NewSynRecv => "NEW_SYN_RECV",
            TcpState::BoundInactive => "BOUND_INACTIVE",
        }
    }

    pub fn from_kernel(v: u8) -> Option<TcpState> {
        Some(match v {
            1 => TcpState::Established,
            2 => TcpState::SynSent,
            3 => TcpState::SynRecv,
            4 => TcpState::FinWait1,
            5 => TcpState::FinWait2,
            6 => TcpState::TimeWait,
            7 => TcpState::Close,
            8 => TcpState::CloseWait,
            9 => TcpState::LastAck,
            10 => TcpState::Listen,
            11 => TcpState::Closing,
            12 => TcpState::NewSynRecv,
            13 => TcpState::BoundInactive,
            _ => return None,
        })
    }
}

/// One operation of one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Creates the next socket index (of the case's family).
    Socket {
        kind: SockKind,
    },
    SetOpt {
        sock: usize,
        opt: SockOpt,
    },
    /// Binds to the host's lab address and `port` (0: ephemeral).
    Bind {
        sock: usize,
        port: u16,
    },
    Listen {
        sock: usize,
        backlog: i32,
    },
    /// Connects to the other host's lab address and `port`.
    Connect {
        sock: usize,
        port: u16,
    },
    /// Accepts one connection; success creates the next socket index.
    Accept {
        sock: usize,
    },
    /// Writes `len` bytes of the socket's stream (TCP), or sends one datagram of `len` bytes (connected UDP).
    Write {
        sock: usize,
        len: usize,
    },
    /// Reads up to `max` bytes.
    Read {
        sock: usize,
        max: usize,
    },
    /// Reads until `len` bytes came (or a read waits longer than the op deadline, or EOF).
    ReadExact {
        sock: usize,
        len: usize,
    },
    /// UDP: sends a datagram of `len` bytes to the other host's `port`.
    SendTo {
        sock: usize,
        len: usize,
        port: u16,
    },
    /// UDP: receives one datagram into a buffer of `max` bytes (MSG_PEEK / MSG_TRUNC as asked).
    RecvFrom {
        sock: usize,
        max: usize,
        peek: bool,
        trunc: bool,
    },
    Shutdown {
        sock: usize,
        how: ShutdownHow,
    },
    Close {
        sock: usize,
    },
    Sleep {
        ms: u32,
    },
    WaitReadable {
        sock: usize,
        ms: u32,
    },
    WaitWritable {
        sock: usize,
        ms: u32,
    },
    WaitState {
        sock: usize,
        state: TcpState,
        ms: u32,
    },
    /// Sends one crafted TCP segment from a raw socket to the other host's `port` (for segments a kernel
    /// socket would never send, e.g. a bare ACK to a closed port). `flags` in tcpdump letters: `S`, `F`,
    /// `R`, `P`, and `.` for ACK.
    CraftTcp {
        src_port: u16,
        port: u16,
        flags: String,
        seq: u32,
        ack: u32,
        len: usize,
    },
    /// Barrier with the other host.
    Sync,
}

impl Op {
    /// The socket index the op acts on, if any.
    pub fn sock(&self) -> Option<usize> {
        match self {
            Op::SetOpt { sock, .. }
            | Op::Bind { sock, .. }
            | Op::Listen { sock, .. }
            | Op::Connect { sock, .. }
            | Op::Accept { sock }
            | Op::Write { sock, .. }
            | Op::Read { sock, .. }
            | Op::ReadExact { sock, .. }
            | Op::SendTo { sock, .. }
            | Op::RecvFrom { sock, .. }
            | Op::Shutdown { sock, .. }
            | Op::Close { sock }
            | Op::WaitReadable { sock, .. }
            | Op::WaitWritable { sock, .. }
            | Op::WaitState { sock, .. } => Some(*sock),
            Op::Socket { .. } | Op::Sleep { .. } | Op::Sync | Op::CraftTcp { .. } => None,
        }
    }

    /// A compact one-line form, e.g. `write(s0, 1000)`.
    pub fn render(&self) -> String {
        match self {
            Op::Socket { kind } => format!("socket({kind:?})").to_lowercase(),
            Op::SetOpt { sock, opt } => format!("setsockopt(s{sock}, {opt:?})"),
            Op::Bind { sock, port } => format!("bind(s{sock}, {port})"),
            Op::Listen { sock, backlog } => format!("listen(s{sock}, {backlog})"),
            Op::Connect { sock, port } => format!("connect(s{sock}, {port})"),
            Op::Accept { sock } => format!("accept(s{sock})"),
            Op::Write { sock, len } => format!("write(s{sock}, {len})"),
            Op::Read { sock, max } => format!("read(s{sock}, {max})"),
            Op::ReadExact { sock, len } => format!("read_exact(s{sock}, {len})"),
            Op::SendTo { sock, len, port } => format!("sendto(s{sock}, {len}, {port})"),
            Op::RecvFrom {
                sock,
                max,
                peek,
                trunc,
            } => {
                format!(
                    "recvfrom(s{sock}, {max}{}{})",
                    if *peek { ", PEEK" } else { "" },
                    if *trunc { ", TRUNC" } else { "" }
                )
            }
            Op::Shutdown { sock, how } => format!("shutdown(s{sock}, {how:?})")
                .replace("RdWr", "RDWR")
                .replace("Rd", "RD")
                .replace("Wr", "WR"),
            Op::Close { sock } => format!("close(s{sock})"),
            Op::Sleep { ms } => format!("sleep({ms}ms)"),
            Op::WaitReadable { sock, ms } => format!("wait_readable(s{sock}, {ms}ms)"),
            Op::WaitWritable { sock, ms } => format!("wait_writable(s{sock}, {ms}ms)"),
            Op::WaitState { sock, state, ms } => format!("wait_state(s{sock}, {state:?}, {ms}ms)"),
            Op::CraftTcp {
                src_port,
                port,
                flags,
                seq,
                ack,
                len,
            } => {
                format!(
                    "craft_tcp({src_port} > {port}, [{flags}], seq {seq}, ack {ack}, len {len})"
                )
            }
            Op::Sync => "sync".to_string(),
        }
    }
}

/// One op list per host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    pub a: Vec<Op>,
    pub b: Vec<Op>,
}

impl Program {
    pub fn ops(&self, host: Host) -> &[Op] {
        match host {
            Host::A => &self.a,
            Host::B => &self.b,
        }
    }
    pub fn ops_mut(&mut self, host: Host) -> &mut Vec<Op> {
        match host {
            Host::A => &mut self.a,
            Host::B => &mut self.b,
        }
    }
    /// Number of ops, barriers included.
    pub fn len(&self) -> usize {
        self.a.len() + self.b.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Both hosts' ops, one per line, side by side by segment.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for host in [Host::A, Host::B] {
            let ops: Vec<String> = self.ops(host).iter().map(Op::render).collect();
            s.push_str(&format!("{}: {}\n", host.name(), ops.join("; ")));
        }
        s
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The 8-byte block `index` of the stream (bytes `8·index .. 8·index+8`, little-endian).
fn stream_block(seed: u64, port: u16, index: u64) -> u64 {
    splitmix64(seed ^ ((port as u64) << 48) ^ index.wrapping_mul(0x2545_f491_4f6c_dd1d))
}

/// Byte `offset` of the stream written by the socket with local port `port` in a case seeded `seed`.
pub fn stream_byte(seed: u64, port: u16, offset: u64) -> u8 {
    (stream_block(seed, port, offset / 8) >> ((offset % 8) * 8)) as u8
}

/// Calls `each(i, bytes)` for consecutive runs of the stream covering `len` bytes from `offset`: one block
/// computed per 8 bytes (per byte, the stream cost 9 % of a default run's CPU).
fn stream_runs(
    seed: u64,
    port: u16,
    offset: u64,
    len: usize,
    mut each: impl FnMut(usize, &[u8]) -> bool,
) {
    let mut i = 0;
    while i < len {
        let at = offset + i as u64;
        let block = stream_block(seed, port, at / 8).to_le_bytes();
        let start = (at % 8) as usize;
        let n = (8 - start).min(len - i);
        if !each(i, &block[start..start + n]) {
            return;
        }
        i += n;
    }
}

/// Fills `buf` with the stream bytes starting at `offset`.
pub fn fill_stream(seed: u64, port: u16, offset: u64, buf: &mut [u8]) {
    let len = buf.len();
    stream_runs(seed, port, offset, len, |i, bytes| {
        buf[i..i + bytes.len()].copy_from_slice(bytes);
        true
    });
}

/// The first index where `data` differs from the stream at `offset`, if any.
pub fn first_mismatch(seed: u64, port: u16, offset: u64, data: &[u8]) -> Option<u64> {
    let mut found = None;
    stream_runs(seed, port, offset, data.len(), |i, bytes| {
        match data[i..i + bytes.len()]
            .iter()
            .zip(bytes)
            .position(|(d, s)| d != s)
        {
            Some(k) => {
                found = Some(offset + (i + k) as u64);
                false
            }
            None => true,
        }
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blockwise_streams_equal_the_byte_definition() {
        for offset in [0u64, 1, 7, 8, 13, 1_000_003] {
            let mut buf = vec![0; 37];
            fill_stream(9, 4242, offset, &mut buf);
            let bytes: Vec<u8> = (0..37).map(|i| stream_byte(9, 4242, offset + i)).collect();
            assert_eq!(buf, bytes, "offset {offset}");
            for k in [0usize, 5, 36] {
                let mut bad = bytes.clone();
                bad[k] ^= 0x80;
                assert_eq!(
                    first_mismatch(9, 4242, offset, &bad),
                    Some(offset + k as u64)
                );
            }
        }
    }

    #[test]
    fn streams_are_deterministic_and_differ_by_port() {
        let mut a = vec![0; 64];
        fill_stream(7, 1000, 10, &mut a);
        assert_eq!(first_mismatch(7, 1000, 10, &a), None);
        assert_eq!(first_mismatch(7, 1001, 10, &a).map(|o| o < 20), Some(true));
        let mut b = a.clone();
        b[5] ^= 1;
        assert_eq!(first_mismatch(7, 1000, 10, &b), Some(15));
    }

    #[test]
    fn programs_round_trip_through_json() {
        let p = Program {
            a: vec![
                Op::Socket {
                    kind: SockKind::Tcp,
                },
                Op::Connect {
                    sock: 0,
                    port: 5000,
                },
                Op::Sync,
            ],
            b: vec![
                Op::Shutdown {
                    sock: 0,
                    how: ShutdownHow::Wr,
                },
                Op::SetOpt {
                    sock: 0,
                    opt: SockOpt::Linger(Some(0)),
                },
            ],
        };
        let j = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Program>(&j).unwrap(), p);
        assert!(p.render().contains("shutdown(s0, WR)"), "{}", p.render());
    }
}
