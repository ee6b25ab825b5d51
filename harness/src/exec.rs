//! The executor: runs a [`Program`] on both hosts' real sockets and records every outcome.
//!
//! Each host's ops run on that host's thread (inside its namespace), which owns its sockets. The program is
//! cut into segments at [`Op::Sync`]; segment `k` of `a` and segment `k` of `b` run concurrently, then both
//! meet at a barrier (both hosts pass the same number of barriers, whatever their op counts). Every blocking
//! operation has a deadline ([`ExecConfig`]), so a program never hangs the harness; the barrier itself gives
//! up after [`BARRIER_TIMEOUT`] and reports the other host as stuck.
//!
//! Sockets stay open until the caller drops the returned [`HostSockets`] — after the capture stopped — so the
//! trace shows the program, not the teardown.

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::HarnessError;
use crate::frame::Host;
use crate::lab::Lab;
use crate::ops::{
    fill_stream, first_mismatch, Op, Program, ShutdownHow, SockKind, SockOpt, TcpState,
};
use crate::sock::{ConnectOutcome, Errno, Family, Socket, TcpInfo};

/// How long a barrier waits for the other host before the case errors.
pub const BARRIER_TIMEOUT: Duration = Duration::from_secs(10);

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
    fn err(e: Errno) -> OpResult {
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

/// Sockets of one host, kept open until the caller drops them.
pub struct HostSockets(#[allow(dead_code)] Vec<Option<Entry>>);

struct Entry {
    sock: Socket,
    kind: SockKind,
    nonblocking: bool,
    /// TCP: stream bytes read / written so far.
    read_offset: u64,
    write_offset: u64,
    /// SOCK_STREAM after a successful close: the index stays taken, the socket is gone.
    closed: bool,
    /// The peer's port, remembered once known: after a RST getpeername fails, but queued data is still
    /// readable and must still be checked against the peer's stream.
    peer_port: Option<u16>,
}

impl Entry {
    fn new(sock: Socket, kind: SockKind) -> Entry {
        Entry {
            sock,
            kind,
            nonblocking: false,
            read_offset: 0,
            write_offset: 0,
            closed: false,
            peer_port: None,
        }
    }

    fn peer_port(&mut self) -> Option<u16> {
        if self.peer_port.is_none() {
            self.peer_port = self.sock.peer_addr().ok().map(|a| a.port());
        }
        self.peer_port
    }
}

/// A barrier for two hosts that gives up after a deadline and can be broken by a failing side.
struct SyncPoint {
    state: Mutex<(u32, u64, bool)>,
    cv: Condvar,
}

impl SyncPoint {
    fn new() -> Arc<SyncPoint> {
        Arc::new(SyncPoint {
            state: Mutex::new((0, 0, false)),
            cv: Condvar::new(),
        })
    }
    fn wait(&self) -> bool {
        let mut st = self.state.lock().unwrap();
        if st.2 {
            return false;
        }
        let generation = st.1;
        st.0 += 1;
        if st.0 == 2 {
            st.0 = 0;
            st.1 += 1;
            self.cv.notify_all();
            return true;
        }
        let deadline = Instant::now() + BARRIER_TIMEOUT;
        while st.1 == generation && !st.2 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                st.2 = true;
                self.cv.notify_all();
                return false;
            }
            st = self.cv.wait_timeout(st, left).unwrap().0;
        }
        !st.2
    }
    fn breaks(&self) {
        self.state.lock().unwrap().2 = true;
        self.cv.notify_all();
    }
}

/// Breaks the barrier if the host job ends without passing all of it (panic, harness error).
struct BreakOnDrop(Arc<SyncPoint>, bool);
impl Drop for BreakOnDrop {
    fn drop(&mut self) {
        if !self.1 {
            self.0.breaks();
        }
    }
}

fn split_segments(ops: &[Op]) -> Vec<Vec<(usize, Op)>> {
    let mut segs = vec![Vec::new()];
    for (i, op) in ops.iter().enumerate() {
        if *op == Op::Sync {
            segs.push(Vec::new());
        } else {
            segs.last_mut().expect("non-empty").push((i, op.clone()));
        }
    }
    segs
}

/// Runs `program` in `lab`; returns every outcome (a's then b's, each in op order) and the open sockets.
pub fn run_program(
    lab: &Lab,
    program: &Program,
    cfg: ExecConfig,
) -> Result<(Vec<OpOutcome>, Vec<HostSockets>), HarnessError> {
    let segs_a = split_segments(&program.a);
    let segs_b = split_segments(&program.b);
    let nseg = segs_a.len().max(segs_b.len());
    let sync = SyncPoint::new();
    let start = Instant::now();
    let start_wall_ns = crate::capture::realtime_ns();
    let mut pending = Vec::new();
    for (host, segs) in [(Host::A, segs_a), (Host::B, segs_b)] {
        let sync = sync.clone();
        let local = lab.addr(host, cfg.family);
        let peer = lab.addr(host.other(), cfg.family);
        pending.push(lab.host(host).submit(move || {
            let mut guard = BreakOnDrop(sync.clone(), false);
            let mut exec = HostExec {
                host,
                cfg,
                local,
                peer,
                sockets: Vec::new(),
                start,
            };
            let mut outcomes = Vec::new();
            for s in 0..nseg {
                if let Some(seg) = segs.get(s) {
                    for (index, op) in seg {
                        outcomes.push(exec.step(*index, s, op)?);
                    }
                }
                if s + 1 < nseg && !sync.wait() {
                    return Err(HarnessError::HostThread(format!(
                        "{}: the other host did not reach barrier {} within {BARRIER_TIMEOUT:?}",
                        host.name(),
                        s + 1
                    )));
                }
            }
            guard.1 = true;
            Ok::<_, HarnessError>((outcomes, HostSockets(exec.sockets)))
        }));
    }
    let mut all = Vec::new();
    let mut sockets = Vec::new();
    for p in pending {
        let (outcomes, socks) = p.wait_timeout(BARRIER_TIMEOUT * (nseg as u32 + 1))??;
        all.extend(outcomes);
        sockets.push(socks);
    }
    record_ops(start_wall_ns, &all);
    Ok((all, sockets))
}

/// One executed op placed on the capture's clock, for drawings (the HTML report's ladder margins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpMark {
    pub host: Host,
    /// When the op started, nanoseconds since the Unix epoch (CLOCK_REALTIME, like frame timestamps).
    pub wall_ns: u64,
    /// `connect(s0, 5001) -> ECONNREFUSED`.
    pub text: String,
}

thread_local! {
    /// The ops [`run_program`] ran on this thread since [`start_recording_ops`], when recording.
    static RECORDED_OPS: std::cell::RefCell<Option<Vec<OpMark>>> = const { std::cell::RefCell::new(None) };
}

/// Starts recording the ops every [`run_program`] called on this thread runs (the runner does this around
/// a property's `execute`, which runs on the worker's thread).
pub fn start_recording_ops() {
    RECORDED_OPS.with(|r| *r.borrow_mut() = Some(Vec::new()));
}

/// The ops recorded since [`start_recording_ops`], in time order; recording stops. `None`: no program ran
/// through [`run_program`] (the property drove its sockets another way, so op times are not known).
pub fn take_recorded_ops() -> Option<Vec<OpMark>> {
    let mut ops = RECORDED_OPS.with(|r| r.borrow_mut().take())?;
    if ops.is_empty() {
        return None;
    }
    ops.sort_by_key(|o| o.wall_ns);
    Some(ops)
}

fn record_ops(start_wall_ns: u64, outcomes: &[OpOutcome]) {
    RECORDED_OPS.with(|r| {
        if let Some(list) = r.borrow_mut().as_mut() {
            list.extend(
                outcomes
                    .iter()
                    .filter(|o| o.op != Op::Sync)
                    .map(|o| OpMark {
                        host: o.host,
                        wall_ns: start_wall_ns + o.t_ns,
                        text: format!("{} -> {}", o.op.render(), o.result.render()),
                    }),
            );
        }
    });
}

struct HostExec {
    host: Host,
    cfg: ExecConfig,
    local: std::net::IpAddr,
    peer: std::net::IpAddr,
    sockets: Vec<Option<Entry>>,
    start: Instant,
}

fn snapshot(e: &Entry) -> SockSnapshot {
    SockSnapshot {
        kind: e.kind,
        local_port: e.sock.local_addr().ok().map(|a| a.port()),
        peer_port: e.sock.peer_addr().ok().map(|a| a.port()),
        tcp: if e.kind == SockKind::Tcp {
            e.sock.tcp_info()
        } else {
            None
        },
        rcvbuf: e.sock.get_int_opt(libc::SOL_SOCKET, libc::SO_RCVBUF).ok(),
    }
}

impl HostExec {
    fn step(&mut self, index: usize, segment: usize, op: &Op) -> Result<OpOutcome, HarnessError> {
        let t_ns = self.start.elapsed().as_nanos() as u64;
        let wall_ns = crate::record::realtime_ns();
        let result = self.apply(op)?;
        let done_wall_ns = crate::record::realtime_ns();
        let sock = op
            .sock()
            .and_then(|i| self.sockets.get(i))
            .and_then(|e| e.as_ref())
            .filter(|e| !e.closed)
            .map(snapshot);
        Ok(OpOutcome {
            host: self.host,
            index,
            segment,
            op: op.clone(),
            result,
            sock,
            t_ns,
            wall_ns,
            done_wall_ns,
        })
    }

    fn io_timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.io_timeout_ms as u64)
    }

    fn apply(&mut self, op: &Op) -> Result<OpResult, HarnessError> {
        let skipped = |why: &str| Ok(OpResult::Skipped { why: why.into() });
        if let Some(i) = op.sock() {
            match self.sockets.get(i) {
                None | Some(None) => return skipped("no such socket"),
                Some(Some(e)) if e.closed => return skipped("socket closed"),
                Some(Some(_)) => {}
            }
        }
        let seed = self.cfg.seed;
        let io = self.io_timeout();
        let peer = self.peer;
        let local = self.local;
        let family = self.cfg.family;
        let connect_timeout = Duration::from_millis(self.cfg.connect_timeout_ms as u64);
        match op {
            Op::Socket { kind } => {
                let sock = match kind {
                    SockKind::Tcp => Socket::tcp(family)?,
                    SockKind::Udp => Socket::udp(family)?,
                };
                self.sockets.push(Some(Entry::new(sock, *kind)));
                Ok(OpResult::Value {
                    value: (self.sockets.len() - 1) as u64,
                })
            }
            Op::Sleep { ms } => {
                std::thread::sleep(Duration::from_millis(*ms as u64));
                Ok(OpResult::Done)
            }
            Op::Sync => Ok(OpResult::Done),
            Op::CraftTcp {
                src_port,
                port,
                flags,
                seq,
                ack,
                len,
            } => {
                let repr = crate::wire::TcpRepr {
                    src_port: *src_port,
                    dst_port: *port,
                    seq: crate::wire::SeqNumber(*seq),
                    ack: crate::wire::SeqNumber(if flags.contains('.') { *ack } else { 0 }),
                    flags: crate::wire::TcpFlags {
                        syn: flags.contains('S'),
                        fin: flags.contains('F'),
                        rst: flags.contains('R'),
                        psh: flags.contains('P'),
                        ack: flags.contains('.'),
                        ..Default::default()
                    },
                    window: 64240,
                    urgent: 0,
                    options: Vec::new(),
                    payload_len: *len,
                };
                let payload = vec![0u8; *len];
                let segment = repr.emit(local, peer, &payload);
                let raw = Socket::raw(family, libc::IPPROTO_TCP)?;
                raw.bind(SocketAddr::new(local, 0))
                    .map_err(|e| crate::sock::socket_step("bind raw socket", e))?;
                Ok(raw
                    .send_to(&segment, SocketAddr::new(peer, 0), 0)?
                    .map_or_else(OpResult::err, |n| OpResult::Value { value: n as u64 }))
            }
            Op::SetOpt { sock, opt } => {
                let e = self.entry(*sock);
                if e.kind == SockKind::Udp
                    && matches!(
                        opt,
                        SockOpt::NoDelay(_) | SockOpt::Cork(_) | SockOpt::QuickAck(_)
                    )
                {
                    return skipped("TCP option on a UDP socket");
                }
                let r = match *opt {
                    SockOpt::RcvBuf(v) => e.sock.set_int_opt(libc::SOL_SOCKET, libc::SO_RCVBUF, v),
                    SockOpt::SndBuf(v) => e.sock.set_int_opt(libc::SOL_SOCKET, libc::SO_SNDBUF, v),
                    SockOpt::NoDelay(on) => {
                        e.sock
                            .set_int_opt(libc::IPPROTO_TCP, libc::TCP_NODELAY, on as i32)
                    }
                    SockOpt::Cork(on) => {
                        e.sock
                            .set_int_opt(libc::IPPROTO_TCP, libc::TCP_CORK, on as i32)
                    }
                    SockOpt::QuickAck(on) => {
                        e.sock
                            .set_int_opt(libc::IPPROTO_TCP, libc::TCP_QUICKACK, on as i32)
                    }
                    SockOpt::ReuseAddr(on) => {
                        e.sock
                            .set_int_opt(libc::SOL_SOCKET, libc::SO_REUSEADDR, on as i32)
                    }
                    SockOpt::Linger(l) => set_linger(&e.sock, l),
                    SockOpt::NonBlocking(on) => {
                        e.sock.set_nonblocking(on).map(|_| e.nonblocking = on)
                    }
                };
                Ok(r.map_or_else(OpResult::err, |_| OpResult::Done))
            }
            Op::Bind { sock, port } => {
                let e = self.entry(*sock);
                Ok(e.sock
                    .bind(SocketAddr::new(local, *port))
                    .map_or_else(OpResult::err, |_| OpResult::Done))
            }
            Op::Listen { sock, backlog } => {
                let e = self.entry(*sock);
                Ok(e.sock
                    .listen(*backlog)
                    .map_or_else(OpResult::err, |_| OpResult::Done))
            }
            Op::Connect { sock, port } => {
                let e = self.entry(*sock);
                let to = SocketAddr::new(peer, *port);
                if e.kind == SockKind::Udp || e.nonblocking {
                    return Ok(e
                        .sock
                        .connect_now(to)?
                        .map_or_else(OpResult::err, |_| OpResult::Done));
                }
                Ok(match e.sock.connect_timeout(to, connect_timeout)? {
                    ConnectOutcome::Done(Ok(())) => {
                        // A second connect() on a socket connected without blocking returns 0 whatever the
                        // address (Linux moves SS_CONNECTING to SS_CONNECTED), so the peer is what the
                        // kernel says, and the address asked for only when the kernel can no longer say.
                        if e.peer_port().is_none() {
                            e.peer_port = Some(to.port());
                        }
                        OpResult::Done
                    }
                    ConnectOutcome::Done(Err(err)) => OpResult::err(err),
                    ConnectOutcome::TimedOut => OpResult::TimedOut,
                })
            }
            Op::Accept { sock } => {
                let e = self.entry(*sock);
                if !e.nonblocking && e.sock.poll(libc::POLLIN, io) == 0 {
                    return Ok(OpResult::TimedOut);
                }
                match e.sock.accept_now() {
                    Ok((new, from)) => {
                        let mut entry = Entry::new(new, SockKind::Tcp);
                        entry.peer_port = from.map(|a| a.port());
                        entry.peer_port();
                        self.sockets.push(Some(entry));
                        Ok(OpResult::Value {
                            value: (self.sockets.len() - 1) as u64,
                        })
                    }
                    Err(err) => Ok(OpResult::err(err)),
                }
            }
            Op::Write { sock, len } => {
                let e = self.entry(*sock);
                let port = e.sock.local_addr().map(|a| a.port()).unwrap_or(0);
                let mut buf = vec![0u8; *len];
                fill_stream(seed, port, e.write_offset, &mut buf);
                if e.kind == SockKind::Udp {
                    return Ok(e
                        .sock
                        .send(&buf, 0)?
                        .map_or_else(OpResult::err, |n| OpResult::Value { value: n as u64 }));
                }
                let deadline = Instant::now() + io;
                let mut sent = 0usize;
                loop {
                    match e.sock.send(&buf[sent..], libc::MSG_DONTWAIT)? {
                        Ok(n) => {
                            sent += n;
                            e.write_offset += n as u64;
                            if sent == buf.len() {
                                break;
                            }
                        }
                        Err(err) if err.0 == libc::EAGAIN => {
                            let left = deadline.saturating_duration_since(Instant::now());
                            if e.nonblocking
                                || left.is_zero()
                                || e.sock.poll(libc::POLLOUT, left) == 0
                            {
                                if sent == 0 {
                                    return Ok(if e.nonblocking {
                                        OpResult::err(err)
                                    } else {
                                        OpResult::TimedOut
                                    });
                                }
                                break;
                            }
                        }
                        Err(err) => {
                            if sent == 0 {
                                return Ok(OpResult::err(err));
                            }
                            break;
                        }
                    }
                }
                Ok(OpResult::Value { value: sent as u64 })
            }
            Op::Read { sock, max } => {
                let e = self.entry(*sock);
                if !e.nonblocking && e.sock.poll(libc::POLLIN, io) == 0 {
                    return Ok(OpResult::TimedOut);
                }
                match e.sock.recv_now(*max, libc::MSG_DONTWAIT) {
                    Ok(r) => {
                        let offset = e.read_offset;
                        let mut mismatch_at = None;
                        if e.kind == SockKind::Tcp {
                            match e.peer_port() {
                                Some(peer_port) => {
                                    mismatch_at = first_mismatch(seed, peer_port, offset, &r.data)
                                }
                                None if !r.data.is_empty() => {
                                    return Err(HarnessError::Socket(
                                        "read data on a TCP socket whose peer port was never known"
                                            .into(),
                                    ))
                                }
                                None => {}
                            }
                            e.read_offset += r.data.len() as u64;
                        }
                        Ok(OpResult::Read {
                            n: r.data.len() as u64,
                            returned: r.returned as u64,
                            eof: r.returned == 0 && *max > 0 && e.kind == SockKind::Tcp,
                            truncated: r.truncated,
                            offset,
                            mismatch_at,
                        })
                    }
                    Err(err) => Ok(OpResult::err(err)),
                }
            }
            Op::ReadExact { sock, len } => {
                let e = self.entry(*sock);
                let offset = e.read_offset;
                let (mut got, mut eof, mut mismatch_at) = (0u64, false, None);
                while got < *len as u64 {
                    if e.sock.poll(libc::POLLIN, io) == 0 {
                        break;
                    }
                    match e.sock.recv_now(*len - got as usize, libc::MSG_DONTWAIT) {
                        Ok(r) if r.data.is_empty() => {
                            eof = true;
                            break;
                        }
                        Ok(r) => {
                            if e.kind == SockKind::Tcp && mismatch_at.is_none() {
                                if let Some(peer_port) = e.peer_port() {
                                    mismatch_at =
                                        first_mismatch(seed, peer_port, e.read_offset, &r.data);
                                }
                            }
                            e.read_offset += r.data.len() as u64;
                            got += r.data.len() as u64;
                        }
                        Err(err) if got == 0 => return Ok(OpResult::err(err)),
                        Err(_) => break,
                    }
                }
                // Asking for 0 bytes is satisfied at once (like read(fd, buf, 0)).
                Ok(if got == 0 && !eof && *len > 0 {
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
                })
            }
            Op::SendTo { sock, len, port } => {
                let e = self.entry(*sock);
                if e.kind != SockKind::Udp {
                    return skipped("sendto is for UDP sockets");
                }
                let lport = e.sock.local_addr().map(|a| a.port()).unwrap_or(0);
                let mut buf = vec![0u8; *len];
                fill_stream(seed, lport, e.write_offset, &mut buf);
                e.write_offset += *len as u64;
                Ok(e.sock
                    .send_to(&buf, SocketAddr::new(peer, *port), 0)?
                    .map_or_else(OpResult::err, |n| OpResult::Value { value: n as u64 }))
            }
            Op::RecvFrom {
                sock,
                max,
                peek,
                trunc,
            } => {
                let e = self.entry(*sock);
                if e.kind != SockKind::Udp {
                    return skipped("recvfrom is for UDP sockets");
                }
                if !e.nonblocking && e.sock.poll(libc::POLLIN, io) == 0 {
                    return Ok(OpResult::TimedOut);
                }
                let flags = libc::MSG_DONTWAIT
                    | if *peek { libc::MSG_PEEK } else { 0 }
                    | if *trunc { libc::MSG_TRUNC } else { 0 };
                Ok(match e.sock.recv_now(*max, flags) {
                    Ok(r) => OpResult::Read {
                        n: r.data.len() as u64,
                        returned: r.returned as u64,
                        eof: false,
                        truncated: r.truncated,
                        offset: 0,
                        mismatch_at: None,
                    },
                    Err(err) => OpResult::err(err),
                })
            }
            Op::Shutdown { sock, how } => {
                let e = self.entry(*sock);
                let how = match how {
                    ShutdownHow::Rd => libc::SHUT_RD,
                    ShutdownHow::Wr => libc::SHUT_WR,
                    ShutdownHow::RdWr => libc::SHUT_RDWR,
                };
                Ok(e.sock
                    .shutdown(how)
                    .map_or_else(OpResult::err, |_| OpResult::Done))
            }
            Op::Close { sock } => {
                // Dropping the descriptor is close(); the index stays taken so later ops are no-ops.
                let mut gone = self.sockets[*sock].take().expect("checked above");
                gone.closed = true;
                drop(gone.sock);
                Ok(OpResult::Done)
            }
            Op::WaitReadable { sock, ms } | Op::WaitWritable { sock, ms } => {
                let e = self.entry(*sock);
                let events = if matches!(op, Op::WaitReadable { .. }) {
                    libc::POLLIN
                } else {
                    libc::POLLOUT
                };
                let r = e.sock.poll(events, Duration::from_millis(*ms as u64));
                Ok(if r == 0 {
                    OpResult::TimedOut
                } else {
                    OpResult::Value { value: r as u64 }
                })
            }
            Op::WaitState { sock, state, ms } => {
                let e = self.entry(*sock);
                let deadline = Instant::now() + Duration::from_millis(*ms as u64);
                loop {
                    let now = e
                        .sock
                        .tcp_info()
                        .and_then(|t| TcpState::from_kernel(t.state));
                    if now == Some(*state) {
                        return Ok(OpResult::Done);
                    }
                    if Instant::now() >= deadline {
                        return Ok(OpResult::TimedOut);
                    }
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
        }
    }

    fn entry(&mut self, i: usize) -> &mut Entry {
        self.sockets[i].as_mut().expect("checked by apply")
    }
}

fn set_linger(sock: &Socket, l: Option<u16>) -> Result<(), Errno> {
    let v = libc::linger {
        l_onoff: l.is_some() as i32,
        l_linger: l.unwrap_or(0) as i32,
    };
    // SAFETY: v is a live linger struct.
    let r = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(sock),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &v as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

thread_local! {
    /// The socket table of a host thread driven one op at a time (scripted peer runs): it lives as long as
    /// the host thread, so sockets stay open between ops and close with the lab.
    static SESSION: std::cell::RefCell<Option<HostExec>> = const { std::cell::RefCell::new(None) };
}

/// Runs one op on `host`'s thread, keeping that host's sockets between calls (indices as in a program).
pub fn session_op(
    lab: &Lab,
    host: Host,
    index: usize,
    op: Op,
    cfg: ExecConfig,
) -> Result<OpOutcome, HarnessError> {
    let local = lab.addr(host, cfg.family);
    let peer = lab.addr(host.other(), cfg.family);
    lab.host(host).run(move || {
        SESSION.with(|s| {
            let mut s = s.borrow_mut();
            let exec = s.get_or_insert_with(|| HostExec {
                host,
                cfg,
                local,
                peer,
                sockets: Vec::new(),
                start: Instant::now(),
            });
            exec.step(index, 0, &op)
        })
    })?
}
