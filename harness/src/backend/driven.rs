//! The driven backend: b's program becomes `netconform-sut/1` requests to a SUT process
//! (`docs/driver-protocol.md`). Each op maps to the request a C program's syscall would be, with the
//! deadlines of [`ExecConfig`]; what the SUT answers becomes the same [`OpResult`] the kernel backend gives,
//! so properties judge both alike.
//!
//! Two things the protocol does not say, and how the session learns them:
//! - **b's own port**, from which the bytes b writes are generated (`ops::fill_stream`): a socket that
//!   connects without a bind is first bound to a port of the session's choosing (bind-before-connect is
//!   ordinary POSIX), so every stream's origin is known; accepted sockets carry their listener's port.
//! - **the peer's port**, against which the bytes b reads are checked: a's ports are published by a's
//!   session ([`PortBook`]); the first bytes read on a socket pick the one whose stream they are. Bytes
//!   matching no stream of a are reported corrupt at their offset.
//!
//! Ops the protocol cannot express (TCP_CORK, TCP_QUICKACK, readiness waits, crafted segments) are
//! [`OpResult::Skipped`] with the reason; properties using them declare kernel needs and are not run
//! against a driven SUT.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::backend::{Cap, HostSession, Slot};
use crate::error::HarnessError;
use crate::exec::outcome::{ExecConfig, OpResult, SockSnapshot};
use crate::ops::{fill_stream, first_mismatch, Op, ShutdownHow, SockKind, SockOpt, TcpState};
use crate::sut::base64;
use crate::sut::driver::Reply;

/// A live SUT the session sends requests to (the lab's SUT process).
pub trait Conversation: Send {
    /// Sends one request and waits for its reply; a fault of the SUT (crash, hang, protocol) is a
    /// [`HarnessError::Sut`].
    fn request(
        &mut self,
        op: &str,
        fields: Map<String, Value>,
        timeout: Option<Duration>,
    ) -> Result<Reply, HarnessError>;
    /// Whether the SUT declared `cap` in its hello.
    fn has(&self, cap: Cap) -> bool;
}

/// The local ports of a's sockets, as a's session learns them: the candidates for a peer b reads from.
#[derive(Debug, Default)]
pub struct PortBook(Mutex<BTreeSet<u16>>);

impl PortBook {
    pub fn insert(&self, port: u16) {
        self.0.lock().unwrap().insert(port);
    }
    pub fn ports(&self) -> Vec<u16> {
        self.0.lock().unwrap().iter().copied().collect()
    }
}

/// The first port the session binds a connecting socket to; socket `i` of a program gets `BASE + i`.
pub const CONNECT_PORT_BASE: u16 = 47_000;

struct Entry {
    id: u64,
    kind: SockKind,
    local_port: Option<u16>,
    peer_port: Option<u16>,
    /// SO_LINGER 0 was set: close() is an abort (RST).
    linger_zero: bool,
    closed: bool,
    read_offset: u64,
    write_offset: u64,
}

/// b's program against a driven SUT.
pub struct DrivenSession {
    sut: Arc<Mutex<dyn Conversation>>,
    cfg: ExecConfig,
    peers: Arc<PortBook>,
    sockets: Vec<Option<Entry>>,
}

impl Entry {
    fn new(id: u64, kind: SockKind, local_port: Option<u16>) -> Entry {
        Entry {
            id,
            kind,
            local_port,
            peer_port: None,
            linger_zero: false,
            closed: false,
            read_offset: 0,
            write_offset: 0,
        }
    }
}

impl DrivenSession {
    pub fn new(sut: Arc<Mutex<dyn Conversation>>, cfg: ExecConfig, peers: Arc<PortBook>) -> Self {
        DrivenSession {
            sut,
            cfg,
            peers,
            sockets: Vec::new(),
        }
    }

    fn call(
        &self,
        op: &str,
        fields: Map<String, Value>,
        timeout: Option<Duration>,
    ) -> Result<Reply, HarnessError> {
        self.sut.lock().unwrap().request(op, fields, timeout)
    }

    fn has(&self, cap: Cap) -> bool {
        self.sut.lock().unwrap().has(cap)
    }

    fn io(&self) -> Duration {
        Duration::from_millis(self.cfg.io_timeout_ms as u64)
    }

    fn entry(&mut self, i: usize) -> &mut Entry {
        self.sockets[i]
            .as_mut()
            .expect("the executor checks the slot before apply")
    }

    /// The errno of a failed reply as an op result; EAGAIN at a deadline is the kernel backend's
    /// "timed out" (a blocking call that saw nothing in time).
    fn failed(reply: &Reply) -> OpResult {
        match reply.err.as_deref() {
            Some("EAGAIN") | Some("EWOULDBLOCK") => OpResult::TimedOut,
            Some(e) => OpResult::Errno { errno: e.into() },
            None => OpResult::Errno {
                errno: "EINVAL".into(),
            },
        }
    }

    fn data_of(reply: &Reply) -> Result<Vec<u8>, HarnessError> {
        let text = reply.str("data").unwrap_or("");
        base64::decode(text).ok_or_else(|| {
            HarnessError::Sut(crate::error::SutFailure::protocol(format!(
                "\"data\" is not base64: {}",
                text.chars().take(80).collect::<String>()
            )))
        })
    }

    /// Checks bytes read on socket `i` against the stream of the peer that wrote them.
    fn check_stream(&mut self, i: usize, data: &[u8]) -> Option<u64> {
        let seed = self.cfg.seed;
        let candidates = self.peers.ports();
        let e = self.entry(i);
        let offset = e.read_offset;
        e.read_offset += data.len() as u64;
        if data.is_empty() {
            return None;
        }
        if e.peer_port.is_none() {
            e.peer_port = candidates
                .into_iter()
                .find(|p| first_mismatch(seed, *p, offset, data).is_none());
        }
        match e.peer_port {
            Some(p) => first_mismatch(seed, p, offset, data),
            None => Some(offset),
        }
    }

    fn apply_op(&mut self, op: &Op) -> Result<OpResult, HarnessError> {
        let skipped = |why: &str| Ok(OpResult::Skipped { why: why.into() });
        let io = self.io();
        let mut f = Map::new();
        match op {
            Op::Sync => Ok(OpResult::Done),
            Op::Sleep { ms } => {
                std::thread::sleep(Duration::from_millis(*ms as u64));
                Ok(OpResult::Done)
            }
            Op::Socket { kind } => {
                let (name, cap) = match kind {
                    SockKind::Tcp => ("tcp", Cap::Tcp),
                    SockKind::Udp => ("udp", Cap::Udp),
                };
                if !self.has(cap) {
                    return skipped(&format!("the SUT has no {name} sockets"));
                }
                f.insert("kind".into(), name.into());
                let r = self.call("socket", f, None)?;
                if !r.ok {
                    return Ok(Self::failed(&r));
                }
                let id = sock_id(&r)?;
                self.sockets.push(Some(Entry::new(id, *kind, None)));
                Ok(OpResult::Value {
                    value: (self.sockets.len() - 1) as u64,
                })
            }
            Op::SetOpt { sock, opt } => {
                let id = self.entry(*sock).id;
                let (name, value, cap): (&str, Value, Cap) = match opt {
                    SockOpt::RcvBuf(v) => ("rcv_buf", (*v).into(), Cap::SetOptRcvBuf),
                    SockOpt::SndBuf(v) => ("snd_buf", (*v).into(), Cap::SetOptSndBuf),
                    SockOpt::NoDelay(on) => ("no_delay", (*on).into(), Cap::SetOptNoDelay),
                    SockOpt::Linger(Some(0)) if self.has(Cap::Abort) => {
                        self.entry(*sock).linger_zero = true;
                        return Ok(OpResult::Done);
                    }
                    other => {
                        return skipped(&format!("{other:?} has no netconform-sut/1 request"));
                    }
                };
                if !self.has(cap) {
                    return skipped(&format!("the SUT lacks {}", cap.name()));
                }
                f.insert("sock".into(), id.into());
                f.insert("opt".into(), name.into());
                f.insert("value".into(), value);
                let r = self.call("set_opt", f, None)?;
                Ok(if r.ok {
                    OpResult::Done
                } else {
                    Self::failed(&r)
                })
            }
            Op::Bind { sock, port } => {
                let id = self.entry(*sock).id;
                f.insert("sock".into(), id.into());
                f.insert("port".into(), (*port).into());
                let r = self.call("bind", f, None)?;
                if r.ok && *port != 0 {
                    self.entry(*sock).local_port = Some(*port);
                }
                Ok(if r.ok {
                    OpResult::Done
                } else {
                    Self::failed(&r)
                })
            }
            Op::Listen { sock, backlog } => {
                let id = self.entry(*sock).id;
                f.insert("sock".into(), id.into());
                f.insert("backlog".into(), (*backlog).into());
                let r = self.call("listen", f, None)?;
                Ok(if r.ok {
                    OpResult::Done
                } else {
                    Self::failed(&r)
                })
            }
            Op::Connect { sock, port } => {
                let id = self.entry(*sock).id;
                if self.entry(*sock).local_port.is_none() {
                    // The port b writes from must be known to generate b's stream (module doc).
                    let own = CONNECT_PORT_BASE + (*sock as u16 % 1000);
                    let mut b = Map::new();
                    b.insert("sock".into(), id.into());
                    b.insert("port".into(), own.into());
                    let r = self.call("bind", b, None)?;
                    if !r.ok {
                        return Ok(Self::failed(&r));
                    }
                    self.entry(*sock).local_port = Some(own);
                }
                f.insert("sock".into(), id.into());
                f.insert("port".into(), (*port).into());
                let timeout = Duration::from_millis(self.cfg.connect_timeout_ms as u64);
                let r = self.call("connect", f, Some(timeout))?;
                if r.ok {
                    self.entry(*sock).peer_port = Some(*port);
                    return Ok(OpResult::Done);
                }
                Ok(match r.err.as_deref() {
                    Some("EINPROGRESS") => OpResult::TimedOut,
                    _ => Self::failed(&r),
                })
            }
            Op::Accept { sock } => {
                let (id, lport) = {
                    let e = self.entry(*sock);
                    (e.id, e.local_port)
                };
                f.insert("sock".into(), id.into());
                let r = self.call("accept", f, Some(io))?;
                if !r.ok {
                    return Ok(Self::failed(&r));
                }
                let new = sock_id(&r)?;
                self.sockets
                    .push(Some(Entry::new(new, SockKind::Tcp, lport)));
                Ok(OpResult::Value {
                    value: (self.sockets.len() - 1) as u64,
                })
            }
            Op::Write { sock, len } => {
                let seed = self.cfg.seed;
                let e = self.entry(*sock);
                let Some(port) = e.local_port else {
                    return skipped("write on a socket with no known local port");
                };
                let mut buf = vec![0u8; *len];
                fill_stream(seed, port, e.write_offset, &mut buf);
                let id = e.id;
                let udp = e.kind == SockKind::Udp;
                f.insert("sock".into(), id.into());
                f.insert("data".into(), base64::encode(&buf).into());
                let r = self.call("write", f, Some(io))?;
                if !r.ok {
                    return Ok(Self::failed(&r));
                }
                let n = r.u64("n").unwrap_or(0);
                if !udp {
                    self.entry(*sock).write_offset += n;
                }
                Ok(OpResult::Value { value: n })
            }
            Op::Read { sock, max } => {
                let (id, kind) = {
                    let e = self.entry(*sock);
                    (e.id, e.kind)
                };
                if kind == SockKind::Udp {
                    return self.recv_from(*sock, *max);
                }
                f.insert("sock".into(), id.into());
                f.insert("max".into(), (*max).into());
                let r = self.call("read", f, Some(io))?;
                if !r.ok {
                    return Ok(Self::failed(&r));
                }
                let data = Self::data_of(&r)?;
                let offset = self.entry(*sock).read_offset;
                let mismatch_at = self.check_stream(*sock, &data);
                let eof = r.bool("eof").unwrap_or(false) && data.is_empty();
                Ok(OpResult::Read {
                    n: data.len() as u64,
                    returned: data.len() as u64,
                    eof: eof && *max > 0,
                    truncated: false,
                    offset,
                    mismatch_at,
                })
            }
            Op::ReadExact { sock, len } => {
                let id = self.entry(*sock).id;
                let offset = self.entry(*sock).read_offset;
                let (mut got, mut eof, mut mismatch_at) = (0u64, false, None);
                let deadline = Instant::now() + io;
                while got < *len as u64 {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    let mut f = Map::new();
                    f.insert("sock".into(), id.into());
                    f.insert("max".into(), (*len as u64 - got).into());
                    let r = self.call("read", f, Some(io))?;
                    if !r.ok {
                        if got == 0 && r.err.as_deref() != Some("EAGAIN") {
                            return Ok(Self::failed(&r));
                        }
                        break;
                    }
                    let data = Self::data_of(&r)?;
                    if data.is_empty() {
                        eof = r.bool("eof").unwrap_or(false);
                        break;
                    }
                    let m = self.check_stream(*sock, &data);
                    mismatch_at = mismatch_at.or(m);
                    got += data.len() as u64;
                }
                Ok(OpResult::read_exact(*len, got, eof, offset, mismatch_at))
            }
            Op::SendTo { sock, len, port } => {
                let seed = self.cfg.seed;
                let e = self.entry(*sock);
                if e.kind != SockKind::Udp {
                    return skipped("sendto is for UDP sockets");
                }
                let Some(lport) = e.local_port else {
                    return skipped("send_to on a socket with no known local port");
                };
                let mut buf = vec![0u8; *len];
                fill_stream(seed, lport, e.write_offset, &mut buf);
                e.write_offset += *len as u64;
                f.insert("sock".into(), e.id.into());
                f.insert("port".into(), (*port).into());
                f.insert("data".into(), base64::encode(&buf).into());
                let r = self.call("send_to", f, None)?;
                Ok(if r.ok {
                    OpResult::Value {
                        value: r.u64("n").unwrap_or(0),
                    }
                } else {
                    Self::failed(&r)
                })
            }
            Op::RecvFrom {
                sock, max, peek, ..
            } => {
                if *peek {
                    return skipped("MSG_PEEK has no netconform-sut/1 request");
                }
                if self.entry(*sock).kind != SockKind::Udp {
                    return skipped("recvfrom is for UDP sockets");
                }
                self.recv_from(*sock, *max)
            }
            Op::Shutdown { sock, how } => {
                let (name, caps): (&str, &[Cap]) = match how {
                    ShutdownHow::Wr => ("wr", &[Cap::ShutdownWr]),
                    ShutdownHow::Rd => ("rd", &[Cap::ShutdownRd]),
                    ShutdownHow::RdWr => ("rdwr", &[Cap::ShutdownWr, Cap::ShutdownRd]),
                };
                if let Some(c) = caps.iter().find(|c| !self.has(**c)) {
                    return skipped(&format!("the SUT lacks {}", c.name()));
                }
                f.insert("sock".into(), self.entry(*sock).id.into());
                f.insert("how".into(), name.into());
                let r = self.call("shutdown", f, None)?;
                Ok(if r.ok {
                    OpResult::Done
                } else {
                    Self::failed(&r)
                })
            }
            Op::Close { sock } => {
                let (id, abort) = {
                    let e = self.entry(*sock);
                    (e.id, e.linger_zero)
                };
                f.insert("sock".into(), id.into());
                let r = self.call(if abort { "abort" } else { "close" }, f, None)?;
                // The index stays taken, like a closed descriptor; later ops on it are no-ops.
                self.entry(*sock).closed = true;
                Ok(if r.ok {
                    OpResult::Done
                } else {
                    Self::failed(&r)
                })
            }
            Op::WaitState { sock, state, ms } => {
                if !self.has(Cap::State) {
                    return skipped("the SUT lacks state");
                }
                let id = self.entry(*sock).id;
                let deadline = Instant::now() + Duration::from_millis(*ms as u64);
                loop {
                    let mut f = Map::new();
                    f.insert("sock".into(), id.into());
                    let r = self.call("state", f, None)?;
                    if r.ok && r.str("state").and_then(parse_state) == Some(*state) {
                        return Ok(OpResult::Done);
                    }
                    if Instant::now() >= deadline {
                        return Ok(OpResult::TimedOut);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Op::WaitReadable { .. } | Op::WaitWritable { .. } => {
                skipped("readiness waits have no netconform-sut/1 request")
            }
            Op::CraftTcp { .. } => skipped("crafted segments need a kernel's raw sockets on b"),
        }
    }

    fn recv_from(&mut self, sock: usize, max: usize) -> Result<OpResult, HarnessError> {
        let mut f = Map::new();
        f.insert("sock".into(), self.entry(sock).id.into());
        f.insert("max".into(), max.into());
        let r = self.call("recv_from", f, Some(self.io()))?;
        if !r.ok {
            return Ok(Self::failed(&r));
        }
        let data = Self::data_of(&r)?;
        Ok(OpResult::Read {
            n: data.len() as u64,
            returned: data.len() as u64,
            eof: false,
            truncated: r.bool("truncated").unwrap_or(false),
            offset: 0,
            mismatch_at: None,
        })
    }
}

fn sock_id(r: &Reply) -> Result<u64, HarnessError> {
    r.u64("sock").ok_or_else(|| {
        HarnessError::Sut(crate::error::SutFailure::protocol(format!(
            "a successful reply without \"sock\": {}",
            Value::Object(r.fields.clone())
        )))
    })
}

/// An RFC 9293 state name as the protocol spells it.
pub fn parse_state(name: &str) -> Option<TcpState> {
    Some(match name {
        "LISTEN" => TcpState::Listen,
        "SYN-SENT" => TcpState::SynSent,
        "SYN-RECEIVED" => TcpState::SynRecv,
        "ESTABLISHED" => TcpState::Established,
        "FIN-WAIT-1" => TcpState::FinWait1,
        "FIN-WAIT-2" => TcpState::FinWait2,
        "CLOSE-WAIT" => TcpState::CloseWait,
        "CLOSING" => TcpState::Closing,
        "LAST-ACK" => TcpState::LastAck,
        "TIME-WAIT" => TcpState::TimeWait,
        "CLOSED" => TcpState::Close,
        _ => return None,
    })
}

impl HostSession for DrivenSession {
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
        let e = self.sockets.get(sock)?.as_ref().filter(|e| !e.closed)?;
        Some(SockSnapshot {
            kind: e.kind,
            local_port: e.local_port,
            peer_port: e.peer_port,
            tcp: None,
            rcvbuf: None,
        })
    }
}
