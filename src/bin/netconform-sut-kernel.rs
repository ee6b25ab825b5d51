//! `netconform-sut-kernel`: the driver protocol `netconform-sut/1` (docs/driver-protocol.md) spoken over real
//! kernel sockets of the network namespace this process runs in.
//!
//! It exists to prove the plumbing: a suite run through this adapter ("kernel attachment": the harness puts the
//! lab addresses on a device in this process's namespace) must give the verdicts of the direct kernel run. So
//! every request is one or a few system calls with POSIX semantics, and errors are the kernel's own errno,
//! named as Linux names it. Nothing is emulated: a read after a RST reports `ECONNRESET` once and then EOF
//! because that is what the kernel does.
//!
//! Design choices:
//! - every socket is non-blocking; a deadline (`timeout_ms`) is a `poll(2)` on the one socket, so the reply to a
//!   request comes at the latest at its deadline plus a few system calls;
//! - a socket never bound explicitly is bound to the lab address (`NETCONFORM_ADDR`/`NETCONFORM_ADDR6`) before
//!   `connect`/`send_to`, with `IP_BIND_ADDRESS_NO_PORT` so the kernel still picks the port at connect time, as
//!   an unbound connect would;
//! - socket ids count up from 0 and are never reused within one process;
//! - requests are read one line at a time; a line that is not a request is answered `EINVAL` when its id can be
//!   read and reported on stderr otherwise. The adapter never panics on input.
//!
//! Left out: events (`{"event":...}` lines) are never sent; `state` of a closed id cannot be asked (the id is
//! gone), so TIME-WAIT is only seen while the socket is still open, which the kernel never reports through a
//! descriptor.

use harness::sut::base64;
use std::collections::BTreeMap;
use std::io::{self, BufRead, Read, Write};
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// The protocol version this adapter speaks (docs/driver-protocol.md, title).
const PROTOCOL: &str = "netconform-sut/1";

/// What this adapter implements, as declared in `hello` (docs/driver-protocol.md, "Capabilities").
const CAPS: &[&str] = &[
    "tcp",
    "udp",
    "set_opt:rcv_buf",
    "set_opt:snd_buf",
    "set_opt:no_delay",
    "shutdown_wr",
    "shutdown_rd",
    "abort",
    "state",
    "multi_conn",
    "ipv6",
];

/// Longest deadline honoured: a `timeout_ms` beyond it is cut to it (one day; the harness's per-case limit is far
/// shorter, and this keeps `Instant` arithmetic from overflowing).
const LONGEST_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Largest buffer allocated for one `read`/`recv_from`, whatever `max` asks (16 MiB, far above any socket buffer
/// Linux allows by default: `net.core.rmem_max` is 208 KiB).
const LARGEST_READ: usize = 16 << 20;

fn main() -> ExitCode {
    let lab = match Lab::from_env() {
        Ok(lab) => lab,
        Err(why) => {
            log(&format!("cannot start: {why}"));
            return ExitCode::from(2);
        }
    };
    log(&format!(
        "family {:?}, local address {}, peer {}",
        lab.family,
        lab.local,
        lab.peer
            .map_or_else(|| "unset".to_string(), |p| p.to_string())
    ));
    let mut adapter = Adapter {
        lab,
        sockets: BTreeMap::new(),
        next_id: 0,
    };
    let hello = json!({
        "hello": PROTOCOL,
        "stack": format!("linux {}", kernel_release()),
        "families": ["ipv4", "ipv6"],
        "caps": CAPS,
    });
    if send_line(&hello).is_err() {
        return ExitCode::SUCCESS;
    }
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log(&format!("reading stdin: {e}"));
                break;
            }
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        if let Some(reply) = adapter.answer(text) {
            if send_line(&reply).is_err() {
                log("stdout closed");
                break;
            }
        }
    }
    // End of the case (stdin closed): abort what is open, as docs/driver-protocol.md "End of a case" asks.
    adapter.abort_all();
    ExitCode::SUCCESS
}

/// One line on stdout, flushed.
fn send_line(value: &Value) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{value}")?;
    out.flush()
}

/// One log line on stderr.
fn log(message: &str) {
    eprintln!("netconform-sut-kernel: {message}");
}

/// `uname -r`.
fn kernel_release() -> String {
    // SAFETY: utsname is plain old data; uname fills it with NUL-terminated strings.
    let mut names: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut names) } != 0 {
        return "unknown".to_string();
    }
    let bytes: Vec<u8> = names
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Ipv4,
    Ipv6,
}

/// The addresses of this case (docs/driver-protocol.md, "Environment").
struct Lab {
    family: Family,
    /// Our address: every socket binds to it. Unspecified when the variable is absent.
    local: IpAddr,
    /// Where `connect` and `send_to` go. `None` when the variable is absent: those requests fail `EDESTADDRREQ`.
    peer: Option<IpAddr>,
}

impl Lab {
    fn from_env() -> Result<Lab, String> {
        let family = match std::env::var("NETCONFORM_FAMILY").as_deref() {
            Ok("ipv4") | Err(_) => Family::Ipv4,
            Ok("ipv6") => Family::Ipv6,
            Ok(other) => {
                return Err(format!(
                    "NETCONFORM_FAMILY={other:?} is neither ipv4 nor ipv6"
                ))
            }
        };
        let (addr_var, peer_var, any) = match family {
            Family::Ipv4 => (
                "NETCONFORM_ADDR",
                "NETCONFORM_PEER",
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            ),
            Family::Ipv6 => (
                "NETCONFORM_ADDR6",
                "NETCONFORM_PEER6",
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ),
        };
        let local = match std::env::var(addr_var) {
            Ok(text) => parse_address(addr_var, &text, family)?,
            Err(_) => any,
        };
        let peer = match std::env::var(peer_var) {
            Ok(text) => Some(parse_address(peer_var, &text, family)?),
            Err(_) => None,
        };
        Ok(Lab {
            family,
            local,
            peer,
        })
    }
}

/// `198.18.0.2/24` or `198.18.0.1` → the address, checked against the family.
fn parse_address(var: &str, text: &str, family: Family) -> Result<IpAddr, String> {
    let address = text.split('/').next().unwrap_or(text).trim();
    let ip: IpAddr = address
        .parse()
        .map_err(|_| format!("{var}={text:?} is not an address"))?;
    match (family, ip) {
        (Family::Ipv4, IpAddr::V4(_)) | (Family::Ipv6, IpAddr::V6(_)) => Ok(ip),
        (Family::Ipv4, IpAddr::V6(_)) | (Family::Ipv6, IpAddr::V4(_)) => {
            Err(format!("{var}={text:?} is not of family {family:?}"))
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------------------------

/// The requests of docs/driver-protocol.md, "Requests".
#[derive(Debug, Clone, Copy)]
enum Op {
    Socket,
    SetOpt,
    Bind,
    Listen,
    Accept,
    Connect,
    Write,
    Read,
    Shutdown,
    Close,
    Abort,
    State,
    SendTo,
    RecvFrom,
}

impl Op {
    fn parse(name: &str) -> Option<Op> {
        Some(match name {
            "socket" => Op::Socket,
            "set_opt" => Op::SetOpt,
            "bind" => Op::Bind,
            "listen" => Op::Listen,
            "accept" => Op::Accept,
            "connect" => Op::Connect,
            "write" => Op::Write,
            "read" => Op::Read,
            "shutdown" => Op::Shutdown,
            "close" => Op::Close,
            "abort" => Op::Abort,
            "state" => Op::State,
            "send_to" => Op::SendTo,
            "recv_from" => Op::RecvFrom,
            _ => return None,
        })
    }
}

/// Why a request failed: a Linux errno, or something this adapter does not implement.
#[derive(Debug)]
enum Failure {
    Errno(i32),
    Unsupported,
}

impl Failure {
    fn invalid() -> Failure {
        Failure::Errno(libc::EINVAL)
    }

    fn name(&self) -> String {
        match self {
            Failure::Errno(errno) => errno_name(*errno),
            Failure::Unsupported => "UNSUPPORTED".to_string(),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

/// The Linux name of an errno (errno(3)); the ones sockets return are listed, any other is `E<number>`.
fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOSPC => "ENOSPC",
        libc::EPIPE => "EPIPE",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EDESTADDRREQ => "EDESTADDRREQ",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::EPROTOTYPE => "EPROTOTYPE",
        libc::ENOPROTOOPT => "ENOPROTOOPT",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETDOWN => "ENETDOWN",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ENETRESET => "ENETRESET",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ENOBUFS => "ENOBUFS",
        libc::EISCONN => "EISCONN",
        libc::ENOTCONN => "ENOTCONN",
        libc::ESHUTDOWN => "ESHUTDOWN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EHOSTDOWN => "EHOSTDOWN",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EALREADY => "EALREADY",
        libc::EINPROGRESS => "EINPROGRESS",
        other => return format!("E{other}"),
    };
    name.to_string()
}

type Reply = Result<Map<String, Value>, Failure>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Udp,
}

struct Entry {
    socket: Socket,
    kind: Kind,
    /// Bound explicitly (`bind`) or implicitly (before `connect`/`send_to`).
    bound: bool,
    /// A `connect` was started (it may still be in progress in the background).
    connect_started: bool,
}

struct Adapter {
    lab: Lab,
    sockets: BTreeMap<u64, Entry>,
    next_id: u64,
}

impl Adapter {
    /// The reply line to one request line, or `None` when the line has no readable id (then reported on stderr).
    fn answer(&mut self, line: &str) -> Option<Value> {
        let request = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(request)) => request,
            Ok(_) | Err(_) => {
                return match id_in_broken_line(line) {
                    Some(id) => Some(failure_line(Value::from(id), &Failure::invalid())),
                    None => {
                        malformed(line);
                        None
                    }
                };
            }
        };
        let id = match request.get("id") {
            Some(id) if !id.is_null() => id.clone(),
            Some(_) | None => {
                malformed(line);
                return None;
            }
        };
        let result = match request.get("op").and_then(Value::as_str) {
            None => Err(Failure::invalid()),
            Some(name) => match Op::parse(name) {
                None => Err(Failure::Unsupported),
                Some(op) => self.run(op, &request),
            },
        };
        Some(match result {
            Ok(mut fields) => {
                let mut line = Map::new();
                line.insert("id".into(), id);
                line.insert("ok".into(), Value::Bool(true));
                line.append(&mut fields);
                Value::Object(line)
            }
            Err(failure) => failure_line(id, &failure),
        })
    }

    fn run(&mut self, op: Op, request: &Map<String, Value>) -> Reply {
        match op {
            Op::Socket => self.socket(request),
            Op::SetOpt => self.set_opt(request),
            Op::Bind => self.bind(request),
            Op::Listen => self.listen(request),
            Op::Accept => self.accept(request),
            Op::Connect => self.connect(request),
            Op::Write => self.write(request),
            Op::Read => self.read(request),
            Op::Shutdown => self.shutdown(request),
            Op::Close => self.close(request, false),
            Op::Abort => self.close(request, true),
            Op::State => self.state(request),
            Op::SendTo => self.send_to(request),
            Op::RecvFrom => self.recv_from(request),
        }
    }

    fn entry(&mut self, request: &Map<String, Value>) -> Result<&mut Entry, Failure> {
        let id = number(request, "sock")?;
        self.sockets.get_mut(&id).ok_or(Failure::Errno(libc::EBADF))
    }

    fn insert(&mut self, entry: Entry) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.sockets.insert(id, entry);
        id
    }

    fn domain(&self) -> Domain {
        match self.lab.family {
            Family::Ipv4 => Domain::IPV4,
            Family::Ipv6 => Domain::IPV6,
        }
    }

    fn socket(&mut self, request: &Map<String, Value>) -> Reply {
        let kind = match request.get("kind").and_then(Value::as_str) {
            Some("tcp") => Kind::Tcp,
            Some("udp") => Kind::Udp,
            Some(_) => return Err(Failure::Unsupported),
            None => return Err(Failure::invalid()),
        };
        let (ty, protocol) = match kind {
            Kind::Tcp => (Type::STREAM, Protocol::TCP),
            Kind::Udp => (Type::DGRAM, Protocol::UDP),
        };
        let socket = Socket::new(self.domain(), ty.nonblocking().cloexec(), Some(protocol))?;
        if self.lab.family == Family::Ipv6 {
            socket.set_only_v6(true)?;
        }
        let id = self.insert(Entry {
            socket,
            kind,
            bound: false,
            connect_started: false,
        });
        Ok(fields([("sock", Value::from(id))]))
    }

    fn set_opt(&mut self, request: &Map<String, Value>) -> Reply {
        let entry = self.entry(request)?;
        let value = request.get("value").ok_or_else(Failure::invalid)?;
        match request.get("opt").and_then(Value::as_str) {
            Some("rcv_buf") => entry.socket.set_recv_buffer_size(buffer_size(value)?)?,
            Some("snd_buf") => entry.socket.set_send_buffer_size(buffer_size(value)?)?,
            Some("no_delay") => {
                let on = value.as_bool().ok_or_else(Failure::invalid)?;
                entry.socket.set_tcp_nodelay(on)?;
            }
            Some(_) => return Err(Failure::Unsupported),
            None => return Err(Failure::invalid()),
        }
        Ok(Map::new())
    }

    fn bind(&mut self, request: &Map<String, Value>) -> Reply {
        let port = port(request)?;
        let local = self.lab.local;
        let entry = self.entry(request)?;
        entry
            .socket
            .bind(&SockAddr::from(SocketAddr::new(local, port)))?;
        entry.bound = true;
        Ok(Map::new())
    }

    fn listen(&mut self, request: &Map<String, Value>) -> Reply {
        let backlog = number(request, "backlog")?;
        let backlog = i32::try_from(backlog).map_err(|_| Failure::invalid())?;
        self.entry(request)?.socket.listen(backlog)?;
        Ok(Map::new())
    }

    fn accept(&mut self, request: &Map<String, Value>) -> Reply {
        let deadline = deadline(request)?;
        let entry = self.entry(request)?;
        let kind = entry.kind;
        let accepted = loop {
            match entry
                .socket
                .accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            {
                Ok((socket, _)) => break socket,
                Err(e) if would_block(&e) => {
                    if !wait_ready(&entry.socket, libc::POLLIN, deadline)? {
                        return Err(Failure::Errno(libc::EAGAIN));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        };
        let id = self.insert(Entry {
            socket: accepted,
            kind,
            bound: true,
            connect_started: true,
        });
        Ok(fields([("sock", Value::from(id))]))
    }

    /// A non-blocking connect, waited on until the deadline; at the deadline `EINPROGRESS` and the kernel goes on
    /// with the handshake. A later `connect` on the same socket waits again and reports the outcome.
    fn connect(&mut self, request: &Map<String, Value>) -> Reply {
        let port = port(request)?;
        let deadline = deadline(request)?;
        let peer = self.peer(port)?;
        let local = self.lab.local;
        let entry = self.entry(request)?;
        bind_implicitly(entry, local)?;
        let started_before = entry.connect_started;
        entry.connect_started = true;
        match entry.socket.connect(&peer) {
            Ok(()) => return Ok(Map::new()),
            Err(e) => match e.raw_os_error() {
                Some(libc::EINPROGRESS) | Some(libc::EALREADY) => {}
                // The handshake of an earlier connect has completed since.
                Some(libc::EISCONN) if started_before => return Ok(Map::new()),
                _ => return Err(e.into()),
            },
        }
        if !wait_ready(&entry.socket, libc::POLLOUT, deadline)? {
            return Err(Failure::Errno(libc::EINPROGRESS));
        }
        match entry.socket.take_error()? {
            None => Ok(Map::new()),
            Some(e) => Err(e.into()),
        }
    }

    /// Queues as much as the send buffer takes by the deadline (MSG_NOSIGNAL: a closed peer is EPIPE, never a
    /// SIGPIPE).
    fn write(&mut self, request: &Map<String, Value>) -> Reply {
        let data = data(request)?;
        let deadline = deadline(request)?;
        let entry = self.entry(request)?;
        let mut sent = 0;
        loop {
            match entry
                .socket
                .send_with_flags(&data[sent..], libc::MSG_NOSIGNAL)
            {
                Ok(n) => {
                    sent += n;
                    if sent >= data.len() || n == 0 {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if would_block(&e) => {
                    if !wait_ready(&entry.socket, libc::POLLOUT, deadline)? {
                        break;
                    }
                }
                // What was queued is the answer; the error comes again on the next request.
                Err(_) if sent > 0 => break,
                Err(e) => return Err(e.into()),
            }
        }
        if sent == 0 && !data.is_empty() {
            return Err(Failure::Errno(libc::EAGAIN));
        }
        Ok(fields([("n", Value::from(sent))]))
    }

    /// Waits until something is readable or the deadline, then takes what is there, up to `max`, without waiting
    /// more (POSIX read). EOF is reported on its own, after all data: `data` is then empty.
    fn read(&mut self, request: &Map<String, Value>) -> Reply {
        let max = read_size(request)?;
        let deadline = deadline(request)?;
        let entry = self.entry(request)?;
        let mut buffer = vec![0u8; max];
        let mut got = 0;
        loop {
            match (&entry.socket).read(&mut buffer[got..]) {
                Ok(0) if got == 0 && entry.kind == Kind::Tcp => {
                    return Ok(fields([
                        ("data", Value::from("")),
                        ("eof", Value::Bool(true)),
                    ]));
                }
                Ok(0) => break,
                Ok(n) => {
                    got += n;
                    // A datagram socket returns one datagram per read.
                    if got == max || entry.kind == Kind::Udp {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if would_block(&e) => {
                    if got > 0 {
                        break;
                    }
                    if !wait_ready(&entry.socket, libc::POLLIN, deadline)? {
                        return Err(Failure::Errno(libc::EAGAIN));
                    }
                }
                Err(_) if got > 0 => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(fields([
            ("data", Value::from(base64::encode(&buffer[..got]))),
            ("eof", Value::Bool(false)),
        ]))
    }

    fn shutdown(&mut self, request: &Map<String, Value>) -> Reply {
        let how = match request.get("how").and_then(Value::as_str) {
            Some("wr") => std::net::Shutdown::Write,
            Some("rd") => std::net::Shutdown::Read,
            Some("rdwr") => std::net::Shutdown::Both,
            Some(_) | None => return Err(Failure::invalid()),
        };
        self.entry(request)?.socket.shutdown(how)?;
        Ok(Map::new())
    }

    /// `close(2)`, or with `abort` SO_LINGER 0 first: RST, queues dropped. The id is gone either way.
    fn close(&mut self, request: &Map<String, Value>, abort: bool) -> Reply {
        let id = number(request, "sock")?;
        let entry = self
            .sockets
            .remove(&id)
            .ok_or(Failure::Errno(libc::EBADF))?;
        if abort {
            entry.socket.set_linger(Some(Duration::ZERO))?;
        }
        drop(entry);
        Ok(Map::new())
    }

    fn state(&mut self, request: &Map<String, Value>) -> Reply {
        let entry = self.entry(request)?;
        let state = tcp_state(&entry.socket)?;
        Ok(fields([("state", Value::from(state))]))
    }

    fn send_to(&mut self, request: &Map<String, Value>) -> Reply {
        let port = port(request)?;
        let data = data(request)?;
        let peer = self.peer(port)?;
        let local = self.lab.local;
        let entry = self.entry(request)?;
        bind_implicitly(entry, local)?;
        let n = entry
            .socket
            .send_to_with_flags(&data, &peer, libc::MSG_NOSIGNAL)?;
        Ok(fields([("n", Value::from(n))]))
    }

    /// One datagram; `truncated` when it was longer than `max` (MSG_TRUNC gives its real length).
    fn recv_from(&mut self, request: &Map<String, Value>) -> Reply {
        let max = read_size(request)?;
        let deadline = deadline(request)?;
        let entry = self.entry(request)?;
        let mut buffer = vec![0u8; max];
        loop {
            match entry
                .socket
                .recv_from_with_flags(as_uninit(&mut buffer), libc::MSG_TRUNC)
            {
                Ok((length, from)) => {
                    let port = from.as_socket().map_or(0, |a| a.port());
                    let kept = length.min(max);
                    return Ok(fields([
                        ("data", Value::from(base64::encode(&buffer[..kept]))),
                        ("port", Value::from(port)),
                        ("truncated", Value::Bool(length > max)),
                    ]));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if would_block(&e) => {
                    if !wait_ready(&entry.socket, libc::POLLIN, deadline)? {
                        return Err(Failure::Errno(libc::EAGAIN));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn peer(&self, port: u16) -> Result<SockAddr, Failure> {
        let peer = self.lab.peer.ok_or(Failure::Errno(libc::EDESTADDRREQ))?;
        Ok(SockAddr::from(SocketAddr::new(peer, port)))
    }

    /// SO_LINGER 0 and close on every open socket: the end of a case leaves nothing behind.
    fn abort_all(&mut self) {
        for (_, entry) in std::mem::take(&mut self.sockets) {
            if let Err(e) = entry.socket.set_linger(Some(Duration::ZERO)) {
                log(&format!("SO_LINGER 0 at exit: {e}"));
            }
        }
    }
}

/// Binds a socket that was never bound to the lab address, port chosen by the kernel. For TCP with
/// IP_BIND_ADDRESS_NO_PORT, so the port is picked at connect time exactly as for an unbound connect.
fn bind_implicitly(entry: &mut Entry, local: IpAddr) -> Result<(), Failure> {
    if entry.bound || local.is_unspecified() {
        return Ok(());
    }
    if entry.kind == Kind::Tcp {
        set_bind_address_no_port(&entry.socket)?;
    }
    entry
        .socket
        .bind(&SockAddr::from(SocketAddr::new(local, 0)))?;
    entry.bound = true;
    Ok(())
}

fn set_bind_address_no_port(socket: &Socket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a c_int option value of the right size, on a descriptor we own.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The RFC 9293 name of the socket's state, from TCP_INFO `tcpi_state` (Linux include/net/tcp_states.h).
fn tcp_state(socket: &Socket) -> Result<&'static str, Failure> {
    // tcpi_state is the first byte of struct tcp_info; the kernel copies min(optlen, sizeof) bytes.
    let mut info = [0u8; 8];
    let mut length = info.len() as libc::socklen_t;
    // SAFETY: the buffer and its length are passed together; the kernel writes at most `length` bytes.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut length,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error().into());
    }
    Ok(match info[0] {
        1 => "ESTABLISHED",   // TCP_ESTABLISHED
        2 => "SYN-SENT",      // TCP_SYN_SENT
        3 => "SYN-RECEIVED",  // TCP_SYN_RECV
        4 => "FIN-WAIT-1",    // TCP_FIN_WAIT1
        5 => "FIN-WAIT-2",    // TCP_FIN_WAIT2
        6 => "TIME-WAIT",     // TCP_TIME_WAIT
        7 => "CLOSED",        // TCP_CLOSE
        8 => "CLOSE-WAIT",    // TCP_CLOSE_WAIT
        9 => "LAST-ACK",      // TCP_LAST_ACK
        10 => "LISTEN",       // TCP_LISTEN
        11 => "CLOSING",      // TCP_CLOSING
        12 => "SYN-RECEIVED", // TCP_NEW_SYN_RECV (request socks; not seen through a descriptor)
        13 => "CLOSED",       // TCP_BOUND_INACTIVE (bound, neither listening nor connecting)
        _ => return Err(Failure::invalid()),
    })
}

/// Waits for `events` on the socket until the deadline. `true` when ready (errors and hang-ups count as ready:
/// the next call reports them), `false` at the deadline.
fn wait_ready(socket: &Socket, events: libc::c_short, deadline: Instant) -> Result<bool, Failure> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Round up, so that poll never returns before the deadline.
        let millis = left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int;
        let mut poll = libc::pollfd {
            fd: socket.as_raw_fd(),
            events,
            revents: 0,
        };
        // SAFETY: one pollfd, counted as one.
        let rc = unsafe { libc::poll(&mut poll, 1, millis) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        if rc > 0 && poll.revents != 0 {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
    }
}

fn would_block(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EAGAIN)
}

fn as_uninit(buffer: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: MaybeUninit<u8> has the layout of u8, and the callee only writes initialised bytes into it.
    unsafe { &mut *(buffer as *mut [u8] as *mut [MaybeUninit<u8>]) }
}

// ---------------------------------------------------------------------------------------------------------------
// Request fields
// ---------------------------------------------------------------------------------------------------------------

fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn failure_line(id: Value, failure: &Failure) -> Value {
    json!({"id": id, "ok": false, "err": failure.name()})
}

/// A non-negative integer field, `EINVAL` when absent or of another type.
fn number(request: &Map<String, Value>, name: &str) -> Result<u64, Failure> {
    request
        .get(name)
        .and_then(Value::as_u64)
        .ok_or_else(Failure::invalid)
}

fn port(request: &Map<String, Value>) -> Result<u16, Failure> {
    u16::try_from(number(request, "port")?).map_err(|_| Failure::invalid())
}

fn read_size(request: &Map<String, Value>) -> Result<usize, Failure> {
    match number(request, "max")? {
        0 => Err(Failure::invalid()),
        max => Ok(usize::try_from(max)
            .unwrap_or(LARGEST_READ)
            .min(LARGEST_READ)),
    }
}

fn buffer_size(value: &Value) -> Result<usize, Failure> {
    let size = value.as_u64().ok_or_else(Failure::invalid)?;
    // setsockopt takes an int.
    usize::try_from(size)
        .ok()
        .filter(|&s| s <= i32::MAX as usize)
        .ok_or_else(Failure::invalid)
}

/// `timeout_ms` from now; absent means 0: one attempt, no waiting.
fn deadline(request: &Map<String, Value>) -> Result<Instant, Failure> {
    let millis = match request.get("timeout_ms") {
        None => 0,
        Some(value) => value.as_u64().ok_or_else(Failure::invalid)?,
    };
    Ok(Instant::now() + Duration::from_millis(millis).min(LONGEST_TIMEOUT))
}

fn data(request: &Map<String, Value>) -> Result<Vec<u8>, Failure> {
    let text = request
        .get("data")
        .and_then(Value::as_str)
        .ok_or_else(Failure::invalid)?;
    base64::decode(text).ok_or_else(Failure::invalid)
}

/// The id of a line that is not a JSON object, when `"id": <digits>` can be found in it.
fn id_in_broken_line(line: &str) -> Option<u64> {
    let after = &line[line.find("\"id\"")? + 4..];
    let after = after.trim_start().strip_prefix(':')?.trim_start();
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A line that cannot be answered, reported as an event line on stderr.
fn malformed(line: &str) {
    eprintln!(
        "{}",
        json!({"event": "malformed_request", "line": line.chars().take(200).collect::<String>()})
    );
}
