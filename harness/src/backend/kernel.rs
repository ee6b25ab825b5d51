//! The kernel backend: a host's program runs on the lab host's own kernel sockets, on the host's thread
//! (inside its namespace). Every op maps to the syscalls a C program would make; blocking ops have the
//! deadlines of [`ExecConfig`]. It offers everything a property may need: TCP_INFO in every
//! [`SockSnapshot`], crafted segments from raw sockets, and the namespace's kernel for sock_diag, `/proc`
//! counters, sysctls and `--exec`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::backend::{HostSession, Slot};
use crate::error::HarnessError;
use crate::exec::outcome::{ExecConfig, OpResult, SockSnapshot};
use crate::ops::{fill_stream, first_mismatch, Op, ShutdownHow, SockKind, SockOpt, TcpState};
use crate::sock::{ConnectOutcome, Errno, Socket};

/// A host's sockets on its own kernel. Created and used on the host's thread; dropping it closes them.
pub struct KernelSession {
    cfg: ExecConfig,
    local: IpAddr,
    peer: IpAddr,
    sockets: Vec<Option<Entry>>,
}

impl KernelSession {
    /// A session of a host whose address is `local`, talking to `peer`.
    pub fn new(cfg: ExecConfig, local: IpAddr, peer: IpAddr) -> KernelSession {
        KernelSession {
            cfg,
            local,
            peer,
            sockets: Vec::new(),
        }
    }
}

impl HostSession for KernelSession {
    fn apply(&mut self, op: &Op) -> Result<OpResult, HarnessError> {
        self.apply_op(op)
    }

    fn slot(&self, sock: usize) -> Slot {
        match self.sockets.get(sock) {
            None | Some(None) => Slot::Missing,
            Some(Some(e)) if e.closed => Slot::Closed,
            Some(Some(_)) => Slot::Open,
        }
    }

    fn snapshot(&mut self, sock: usize) -> Option<SockSnapshot> {
        self.sockets
            .get(sock)
            .and_then(|e| e.as_ref())
            .filter(|e| !e.closed)
            .map(snapshot_of)
    }
}

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

fn snapshot_of(e: &Entry) -> SockSnapshot {
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

impl KernelSession {
    fn io_timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.io_timeout_ms as u64)
    }

    fn apply_op(&mut self, op: &Op) -> Result<OpResult, HarnessError> {
        let skipped = |why: &str| Ok(OpResult::Skipped { why: why.into() });
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
                Ok(OpResult::read_exact(*len, got, eof, offset, mismatch_at))
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
                let mut gone = self.sockets[*sock]
                    .take()
                    .expect("the executor checks the slot before apply");
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
        self.sockets[i]
            .as_mut()
            .expect("the executor checks the slot before apply")
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
