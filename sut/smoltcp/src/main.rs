//! `netconform-sut-smoltcp`: smoltcp 0.12, a user-space TCP/IP stack, under test through the driver protocol
//! `netconform-sut/1` (docs/driver-protocol.md). This is the example adapter to copy for another stack: one
//! thread runs the stack between and during requests, and each request is a few calls of the stack's socket API.
//!
//! How the pieces map:
//! - the link ([`link`]) is the descriptor netconform attached, fd 3, a TUN or a TAP device; smoltcp's interface gets
//!   the lab addresses from `NETCONFORM_ADDR`/`NETCONFORM_ADDR6` and its random seed from `NETCONFORM_SEED`;
//! - each request looks at its socket after every poll of the stack and otherwise sleeps ([`Adapter::wait`]) in
//!   `poll(2)` on the link (and, between requests, stdin) until the stack's next timer, a packet, a request
//!   line or the request's deadline;
//! - smoltcp has no accept queue: a listening socket *is* the connection once a SYN arrives. A listener here is
//!   a set of smoltcp sockets listening on one port (`backlog` of them, at least one), refilled as connections
//!   complete; `accept` hands out an established one;
//! - smoltcp has no close(2) either, only a FIN (`close`) and a RST (`abort`). `close` sends the FIN after the
//!   queued data, or a RST when unread data is left (RFC 1122 §4.2.2.13, as Linux does); the socket lives on,
//!   without its id, until smoltcp reaches CLOSED. Data arriving after that is taken and acknowledged by smoltcp,
//!   which has no closed receive side: no RST (docs/smoltcp.md);
//! - a RST is seen as the state going to CLOSED other than by the end of a close (smoltcp keeps no error);
//!   `read` and `write` then report `ECONNRESET` once, and `connect` reports `ECONNREFUSED`.
//!
//! Declared caps: everything but `shutdown_rd`, which smoltcp cannot do (its sockets always take data).
//! Fault variants for netconform's own tests are in [`fault`], off unless `--fault NAME` is given.
//!
//! `--stdio` runs the passive stdio mode instead ([`stdio`]): no protocol, one connection whose bytes are the
//! process's stdin and stdout, on the same link and stack setup ([`stack`]).

mod fault;
mod link;
mod stdio;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::process::ExitCode;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Map, Value};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::socket::udp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint};

use fault::{Fault, Faults};
use link::Link;

/// What this adapter implements (docs/driver-protocol.md, "Hello").
const CAPS: &[&str] = &[
    "tcp",
    "udp",
    "set_opt:rcv_buf",
    "set_opt:snd_buf",
    "set_opt:no_delay",
    "shutdown_wr",
    "abort",
    "state",
    "multi_conn",
    "ipv6",
];

/// Socket buffers when `set_opt` gives none: 64 KiB each way (smoltcp has no default of its own).
const DEFAULT_BUFFER: usize = 64 * 1024;

/// Ephemeral ports: IANA's dynamic range (RFC 6335 §6), starting at a seeded offset.
const EPHEMERAL_FIRST: u16 = 49152;

fn main() -> ExitCode {
    let fault = match chosen_fault() {
        Ok(fault) => fault,
        Err(why) => {
            eprintln!("netconform-sut-smoltcp: {why}");
            return ExitCode::from(2);
        }
    };
    if std::env::args().any(|a| a == "--stdio") {
        return match stdio::run(fault) {
            Ok(()) => ExitCode::SUCCESS,
            Err(why) => {
                eprintln!("netconform-sut-smoltcp: {why}");
                ExitCode::from(2)
            }
        };
    }
    let mut adapter = match Adapter::new(fault) {
        Ok(adapter) => adapter,
        Err(why) => {
            eprintln!("netconform-sut-smoltcp: cannot start: {why}");
            return ExitCode::from(2);
        }
    };
    send(&json!({
        "hello": "netconform-sut/1",
        "stack": "smoltcp 0.12",
        "families": ["ipv4", "ipv6"],
        "caps": CAPS,
    }));
    let mut input = Vec::new();
    loop {
        // One request at a time: answer every complete line, then run the stack until more input comes.
        while let Some(end) = input.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = input.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            if !line.trim().is_empty() {
                let reply = adapter.answer(line.trim());
                adapter.poll();
                if let Some(reply) = reply {
                    send(&reply);
                }
            }
        }
        let mut chunk = [0u8; 65536];
        // SAFETY: the buffer and its length are passed together; stdin is non-blocking.
        let n = unsafe { libc::read(0, chunk.as_mut_ptr().cast(), chunk.len()) };
        match n {
            0 => break, // the end of the case
            n if n > 0 => input.extend_from_slice(&chunk[..n as usize]),
            _ if last_errno() == libc::EAGAIN || last_errno() == libc::EINTR => {
                adapter.wait(None, true);
            }
            _ => break,
        }
    }
    adapter.abort_all();
    ExitCode::SUCCESS
}

/// `--fault NAME` or `NETCONFORM_SMOLTCP_FAULT=NAME`.
fn chosen_fault() -> Result<Option<Fault>, String> {
    let args: Vec<String> = std::env::args().collect();
    let name = match args.iter().position(|a| a == "--fault") {
        Some(i) => args.get(i + 1).cloned(),
        None => std::env::var("NETCONFORM_SMOLTCP_FAULT").ok(),
    };
    match name {
        None => Ok(None),
        Some(name) => Fault::parse(&name).map(Some).ok_or_else(|| {
            let known: Vec<&str> = Fault::NAMES.iter().map(|(n, _)| *n).collect();
            format!("unknown fault {name:?}; known: {}", known.join(", "))
        }),
    }
}

/// One line on stdout, flushed.
fn send(line: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A `NETCONFORM_*` variable, `198.18.0.2/24` or `198.18.0.2`.
fn env_address(name: &str) -> Result<(IpAddr, u8), String> {
    let text = std::env::var(name).map_err(|_| format!("{name} is not set"))?;
    let (address, prefix) = text.split_once('/').unwrap_or((&text, ""));
    let address: IpAddr = address
        .parse()
        .map_err(|_| format!("{name}={text:?} is not an address"))?;
    let prefix = prefix
        .parse()
        .unwrap_or(if address.is_ipv4() { 24 } else { 64 });
    Ok((address, prefix))
}

/// `NETCONFORM_SEED`, 0 if unset.
fn env_seed() -> u64 {
    std::env::var("NETCONFORM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The first ephemeral port: a seeded offset into IANA's dynamic range.
fn first_ephemeral_port(seed: u64) -> u16 {
    EPHEMERAL_FIRST + (seed % 16384) as u16
}

/// smoltcp on the link netconform attached, set up from the environment it gives every SUT (both modes): the
/// lab addresses (`NETCONFORM_ADDR`, `NETCONFORM_ADDR6`), the MTU, and `seed` for smoltcp's random numbers (ISNs).
/// Returns the interface, the link and the peer's address of the case's family.
fn stack(fault: Option<Fault>, seed: u64) -> Result<(Interface, Link, IpAddress), String> {
    let ipv6 = std::env::var("NETCONFORM_FAMILY").as_deref() == Ok("ipv6");
    let (addr4, prefix4) = env_address("NETCONFORM_ADDR")?;
    let (addr6, prefix6) = env_address("NETCONFORM_ADDR6")?;
    let (peer, _) = env_address(if ipv6 {
        "NETCONFORM_PEER6"
    } else {
        "NETCONFORM_PEER"
    })?;
    let mtu = std::env::var("NETCONFORM_MTU")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(1500);
    let mut link = Link::open(mtu, Faults::new(fault)).map_err(|e| format!("the link: {e}"))?;
    // On a TAP device smoltcp speaks Ethernet: a locally administered address of its own, ARP and ND by smoltcp.
    let hardware = if link.ethernet {
        HardwareAddress::Ethernet(EthernetAddress([0x02, 0, 0, 0, 0, 0x02]))
    } else {
        HardwareAddress::Ip
    };
    let mut config = Config::new(hardware);
    config.random_seed = seed;
    let mut iface = Interface::new(config, &mut link, Instant::now());
    iface.update_ip_addrs(|addrs| {
        let _ = addrs.push(IpCidr::new(addr4.into(), prefix4));
        let _ = addrs.push(IpCidr::new(addr6.into(), prefix6));
    });
    Ok((iface, link, peer.into()))
}

type Reply = Result<Map<String, Value>, &'static str>;

#[derive(Debug, Clone, Copy, Default)]
struct Options {
    rcv_buf: Option<usize>,
    snd_buf: Option<usize>,
    no_delay: bool,
}

enum Entry {
    /// After `socket` (and maybe `bind`, `set_opt`): nothing exists in smoltcp yet.
    Fresh {
        udp: bool,
        port: u16,
        options: Options,
    },
    /// After `listen`: smoltcp sockets listening on `port` or holding a connection not yet accepted.
    Listener {
        port: u16,
        backlog: usize,
        options: Options,
        queue: Vec<SocketHandle>,
    },
    Tcp(Conn),
    Udp(SocketHandle),
}

struct Conn {
    handle: SocketHandle,
    /// The state at the last look, to tell a RST from the end of a close.
    last: State,
    reset: bool,
    reset_reported: bool,
}

impl Conn {
    fn new(handle: SocketHandle, state: State) -> Conn {
        Conn {
            handle,
            last: state,
            reset: false,
            reset_reported: false,
        }
    }
}

struct Adapter {
    iface: Interface,
    link: Link,
    sockets: SocketSet<'static>,
    entries: BTreeMap<u64, Entry>,
    next_id: u64,
    /// Closed ids whose connection is still finishing (FIN exchange, TIME-WAIT).
    orphans: Vec<SocketHandle>,
    peer: IpAddress,
    next_port: u16,
}

impl Adapter {
    fn new(fault: Option<Fault>) -> Result<Adapter, String> {
        let seed = env_seed();
        let (iface, link, peer) = stack(fault, seed)?;
        link::set_nonblocking(0).map_err(|e| format!("stdin: {e}"))?;
        Ok(Adapter {
            iface,
            link,
            sockets: SocketSet::new(Vec::new()),
            entries: BTreeMap::new(),
            next_id: 0,
            orphans: Vec::new(),
            peer,
            next_port: first_ephemeral_port(seed),
        })
    }

    /// Runs the stack: packets in and out, timers. Then notes resets, refills listeners, ends orphans.
    fn poll(&mut self) {
        self.iface
            .poll(Instant::now(), &mut self.link, &mut self.sockets);
        for entry in self.entries.values_mut() {
            match entry {
                Entry::Tcp(conn) => {
                    let state = self.sockets.get::<tcp::Socket>(conn.handle).state();
                    // CLOSED other than after LAST-ACK or TIME-WAIT: a RST (or, in SYN-SENT, a refusal).
                    if state == State::Closed
                        && !matches!(conn.last, State::Closed | State::LastAck | State::TimeWait)
                    {
                        conn.reset = true;
                    }
                    conn.last = state;
                }
                Entry::Listener {
                    port,
                    backlog,
                    options,
                    queue,
                } => {
                    queue.retain(|&h| self.sockets.get::<tcp::Socket>(h).state() != State::Closed);
                    while queue.len() < *backlog {
                        let mut socket = tcp_socket(options);
                        if socket.listen(*port).is_err() {
                            break;
                        }
                        queue.push(self.sockets.add(socket));
                    }
                }
                Entry::Fresh { .. } | Entry::Udp(_) => {}
            }
        }
        let sockets = &mut self.sockets;
        self.orphans.retain(|&h| {
            let socket = sockets.get::<tcp::Socket>(h);
            if socket.state() == State::Closed && socket.local_endpoint().is_none() {
                sockets.remove(h);
                return false;
            }
            true
        });
    }

    /// Sleeps until the stack's next timer, a packet, `deadline`, or (with `stdin`) a request line, then polls
    /// the stack. `false`, without sleeping, when the deadline has passed. Callers look at their socket between
    /// two calls: a poll before the sleep could take in the very packet they wait for and then sleep past it.
    fn wait(&mut self, deadline: Option<Instant>, stdin: bool) -> bool {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return false;
        }
        let mut sleep = self.iface.poll_delay(now, &self.sockets);
        if let Some(deadline) = deadline {
            sleep = Some(sleep.map_or(deadline - now, |s| s.min(deadline - now)));
        }
        self.link.wait(sleep, stdin.then_some(0));
        self.poll();
        true
    }

    /// The reply to one request line; `None` for a line that is not a request with an id (reported on stderr,
    /// never answered: netconform could not match the reply).
    fn answer(&mut self, line: &str) -> Option<Value> {
        let request = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(request)) if request.contains_key("id") => request,
            Ok(_) | Err(_) => {
                eprintln!("netconform-sut-smoltcp: not a request: {line}");
                return None;
            }
        };
        let id = request["id"].clone();
        let r = Request(&request);
        let result = match request.get("op").and_then(Value::as_str).unwrap_or("") {
            "socket" => self.socket(&r),
            "set_opt" => self.set_opt(&r),
            "bind" => self.bind(&r),
            "listen" => self.listen(&r),
            "accept" => self.accept(&r),
            "connect" => self.connect(&r),
            "write" => self.write(&r),
            "read" => self.read(&r),
            "shutdown" => self.shutdown(&r),
            "close" => self.close(&r, false),
            "abort" => self.close(&r, true),
            "state" => self.state(&r),
            "send_to" => self.send_to(&r),
            "recv_from" => self.recv_from(&r),
            _ => Err("UNSUPPORTED"),
        };
        Some(match result {
            Ok(mut fields) => {
                fields.insert("id".into(), id);
                fields.insert("ok".into(), Value::Bool(true));
                Value::Object(fields)
            }
            Err(err) => json!({"id": id, "ok": false, "err": err}),
        })
    }

    fn add(&mut self, entry: Entry) -> u64 {
        self.next_id += 1;
        self.entries.insert(self.next_id - 1, entry);
        self.next_id - 1
    }

    fn entry(&mut self, r: &Request) -> Result<&mut Entry, &'static str> {
        self.entries.get_mut(&r.number("sock")?).ok_or("EBADF")
    }

    fn conn(&mut self, r: &Request) -> Result<&mut Conn, &'static str> {
        match self.entry(r)? {
            Entry::Tcp(conn) => Ok(conn),
            Entry::Fresh { .. } | Entry::Listener { .. } | Entry::Udp(_) => Err("ENOTCONN"),
        }
    }

    fn ephemeral_port(&mut self) -> u16 {
        let port = self.next_port;
        self.next_port = if port == u16::MAX {
            EPHEMERAL_FIRST
        } else {
            port + 1
        };
        port
    }

    fn socket(&mut self, r: &Request) -> Reply {
        let udp = match r.text("kind")? {
            "tcp" => false,
            "udp" => true,
            _ => return Err("UNSUPPORTED"),
        };
        let sock = self.add(Entry::Fresh {
            udp,
            port: 0,
            options: Options::default(),
        });
        Ok(fields([("sock", sock.into())]))
    }

    fn set_opt(&mut self, r: &Request) -> Reply {
        let Entry::Fresh { options, .. } = self.entry(r)? else {
            return Err("EINVAL");
        };
        let value = r.0.get("value").ok_or("EINVAL")?;
        match r.text("opt")? {
            "rcv_buf" => options.rcv_buf = Some(value.as_u64().ok_or("EINVAL")?.max(1) as usize),
            "snd_buf" => options.snd_buf = Some(value.as_u64().ok_or("EINVAL")?.max(1) as usize),
            "no_delay" => options.no_delay = value.as_bool().ok_or("EINVAL")?,
            _ => return Err("UNSUPPORTED"),
        }
        Ok(Map::new())
    }

    fn bind(&mut self, r: &Request) -> Reply {
        let wanted = r.port()?;
        let port = if wanted == 0 {
            self.ephemeral_port()
        } else {
            wanted
        };
        let Entry::Fresh {
            udp, port: bound, ..
        } = self.entry(r)?
        else {
            return Err("EINVAL");
        };
        *bound = port;
        if *udp {
            self.udp_handle(r)?;
        }
        Ok(Map::new())
    }

    fn listen(&mut self, r: &Request) -> Reply {
        let backlog = r.number("backlog").unwrap_or(1).max(1) as usize;
        let Entry::Fresh {
            udp: false,
            port,
            options,
        } = *self.entry(r)?
        else {
            return Err("EINVAL");
        };
        // listen(2) on an unbound socket binds it to an ephemeral port first.
        let port = if port == 0 {
            self.ephemeral_port()
        } else {
            port
        };
        *self.entry(r)? = Entry::Listener {
            port,
            backlog,
            options,
            queue: Vec::new(),
        };
        self.poll(); // creates the listening sockets
        Ok(Map::new())
    }

    fn accept(&mut self, r: &Request) -> Reply {
        let deadline = r.deadline()?;
        self.poll();
        loop {
            let Entry::Listener { queue, .. } = self.entry(r)? else {
                return Err("EINVAL");
            };
            let queue = queue.clone();
            let ready = queue.iter().position(|&h| {
                let state = self.sockets.get::<tcp::Socket>(h).state();
                !matches!(state, State::Listen | State::SynReceived | State::Closed)
            });
            if let Some(i) = ready {
                let Entry::Listener { queue, .. } = self.entry(r)? else {
                    unreachable!()
                };
                let handle = queue.remove(i);
                let state = self.sockets.get::<tcp::Socket>(handle).state();
                let sock = self.add(Entry::Tcp(Conn::new(handle, state)));
                self.poll(); // refills the listener
                return Ok(fields([("sock", sock.into())]));
            }
            if !self.wait(Some(deadline), false) {
                return Err("EAGAIN");
            }
        }
    }

    fn connect(&mut self, r: &Request) -> Reply {
        let port = r.port()?;
        let deadline = r.deadline()?;
        if let Entry::Fresh {
            udp: false,
            port: local,
            options,
        } = *self.entry(r)?
        {
            let local = if local == 0 {
                self.ephemeral_port()
            } else {
                local
            };
            let mut socket = tcp_socket(&options);
            let remote = IpEndpoint::new(self.peer, port);
            socket
                .connect(self.iface.context(), remote, local)
                .map_err(|_| "EINVAL")?;
            let handle = self.sockets.add(socket);
            *self.entry(r)? = Entry::Tcp(Conn::new(handle, State::SynSent));
        }
        self.poll();
        loop {
            let conn = self.conn(r)?;
            let (handle, reset) = (conn.handle, conn.reset);
            match self.sockets.get::<tcp::Socket>(handle).state() {
                State::SynSent | State::SynReceived => {}
                State::Closed if reset => return Err("ECONNREFUSED"),
                State::Closed => return Err("ENOTCONN"),
                State::Listen => return Err("EINVAL"),
                State::Established
                | State::FinWait1
                | State::FinWait2
                | State::CloseWait
                | State::Closing
                | State::LastAck
                | State::TimeWait => return Ok(Map::new()),
            }
            if !self.wait(Some(deadline), false) {
                return Err("EINPROGRESS");
            }
        }
    }

    fn write(&mut self, r: &Request) -> Reply {
        let data = r.data()?;
        let deadline = r.deadline()?;
        let mut queued = 0;
        self.poll();
        loop {
            let conn = self.conn(r)?;
            let handle = conn.handle;
            if conn.reset {
                if queued > 0 {
                    break;
                }
                let first = !conn.reset_reported;
                conn.reset_reported = true;
                return Err(if first { "ECONNRESET" } else { "EPIPE" });
            }
            let socket = self.sockets.get_mut::<tcp::Socket>(handle);
            match socket.state() {
                State::SynSent | State::SynReceived => {}
                State::Established | State::CloseWait => {
                    queued += socket.send_slice(&data[queued..]).unwrap_or(0);
                    if queued == data.len() {
                        break;
                    }
                }
                State::Closed
                | State::Listen
                | State::FinWait1
                | State::FinWait2
                | State::Closing
                | State::LastAck
                | State::TimeWait => return Err("EPIPE"),
            }
            if !self.wait(Some(deadline), false) {
                break;
            }
        }
        match queued {
            0 => Err("EAGAIN"),
            n => Ok(fields([("n", n.into())])),
        }
    }

    fn read(&mut self, r: &Request) -> Reply {
        let max = r.number("max")?.clamp(1, 1 << 24) as usize;
        let deadline = r.deadline()?;
        let eof = || Ok(fields([("data", "".into()), ("eof", true.into())]));
        self.poll();
        loop {
            let conn = self.conn(r)?;
            let handle = conn.handle;
            if conn.reset {
                let first = !conn.reset_reported;
                conn.reset_reported = true;
                return if first { Err("ECONNRESET") } else { eof() };
            }
            let socket = self.sockets.get_mut::<tcp::Socket>(handle);
            let mut buffer = vec![0u8; max.min(socket.recv_queue().max(1))];
            match socket.recv_slice(&mut buffer) {
                Ok(0) => {}
                Ok(n) => {
                    return Ok(fields([
                        ("data", BASE64.encode(&buffer[..n]).into()),
                        ("eof", false.into()),
                    ]))
                }
                Err(tcp::RecvError::Finished) => return eof(),
                Err(tcp::RecvError::InvalidState) if socket.state() == State::Closed => {
                    return eof()
                }
                Err(tcp::RecvError::InvalidState) => {} // still connecting
            }
            if !self.wait(Some(deadline), false) {
                return Err("EAGAIN");
            }
        }
    }

    fn shutdown(&mut self, r: &Request) -> Reply {
        match r.text("how")? {
            "wr" => {
                let handle = self.conn(r)?.handle;
                self.sockets.get_mut::<tcp::Socket>(handle).close();
                Ok(Map::new())
            }
            _ => Err("UNSUPPORTED"),
        }
    }

    /// `close`, or with `abort` SO_LINGER 0 then close: the id is gone either way.
    fn close(&mut self, r: &Request, abort: bool) -> Reply {
        let entry = self.entries.remove(&r.number("sock")?).ok_or("EBADF")?;
        match entry {
            Entry::Fresh { .. } => {}
            Entry::Udp(handle) => {
                self.sockets.remove(handle);
            }
            Entry::Listener { queue, .. } => {
                for handle in queue {
                    self.sockets.get_mut::<tcp::Socket>(handle).abort();
                    self.orphans.push(handle);
                }
            }
            Entry::Tcp(conn) => {
                let socket = self.sockets.get_mut::<tcp::Socket>(conn.handle);
                if abort || socket.recv_queue() > 0 {
                    socket.abort();
                } else {
                    socket.close();
                }
                self.orphans.push(conn.handle);
            }
        }
        Ok(Map::new())
    }

    fn state(&mut self, r: &Request) -> Reply {
        let entry = self.entries.get(&r.number("sock")?).ok_or("EBADF")?;
        let state = match entry {
            Entry::Fresh { .. } | Entry::Udp(_) => State::Closed,
            Entry::Listener { .. } => State::Listen,
            Entry::Tcp(conn) => self.sockets.get::<tcp::Socket>(conn.handle).state(),
        };
        Ok(fields([("state", state_name(state).into())]))
    }

    /// The UDP socket of an id, created and bound (to an ephemeral port if none was given) on first use.
    fn udp_handle(&mut self, r: &Request) -> Result<SocketHandle, &'static str> {
        let port = match self.entry(r)? {
            Entry::Udp(handle) => return Ok(*handle),
            Entry::Fresh {
                udp: true, port, ..
            } => *port,
            Entry::Fresh { udp: false, .. } | Entry::Listener { .. } | Entry::Tcp(_) => {
                return Err("EINVAL")
            }
        };
        let port = if port == 0 {
            self.ephemeral_port()
        } else {
            port
        };
        let buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; 64],
                vec![0; DEFAULT_BUFFER],
            )
        };
        let mut socket = udp::Socket::new(buffer(), buffer());
        socket.bind(port).map_err(|_| "EINVAL")?;
        let handle = self.sockets.add(socket);
        *self.entry(r)? = Entry::Udp(handle);
        Ok(handle)
    }

    fn send_to(&mut self, r: &Request) -> Reply {
        let remote = IpEndpoint::new(self.peer, r.port()?);
        let data = r.data()?;
        let handle = self.udp_handle(r)?;
        match self
            .sockets
            .get_mut::<udp::Socket>(handle)
            .send_slice(&data, remote)
        {
            Ok(()) => Ok(fields([("n", data.len().into())])),
            Err(udp::SendError::BufferFull) => Err("EAGAIN"),
            Err(udp::SendError::Unaddressable) => Err("EDESTADDRREQ"),
        }
    }

    fn recv_from(&mut self, r: &Request) -> Reply {
        let max = r.number("max")?.max(1) as usize;
        let deadline = r.deadline()?;
        self.poll();
        loop {
            let handle = self.udp_handle(r)?;
            if let Ok((data, meta)) = self.sockets.get_mut::<udp::Socket>(handle).recv() {
                return Ok(fields([
                    ("data", BASE64.encode(&data[..data.len().min(max)]).into()),
                    ("port", meta.endpoint.port.into()),
                    ("truncated", (data.len() > max).into()),
                ]));
            }
            if !self.wait(Some(deadline), false) {
                return Err("EAGAIN");
            }
        }
    }

    /// The end of the case: RST on every connection still open, sent before exiting.
    fn abort_all(&mut self) {
        for (_, socket) in self.sockets.iter_mut() {
            if let smoltcp::socket::Socket::Tcp(socket) = socket {
                socket.abort();
            }
        }
        self.iface
            .poll(Instant::now(), &mut self.link, &mut self.sockets);
    }
}

fn tcp_socket(options: &Options) -> tcp::Socket<'static> {
    let rx = tcp::SocketBuffer::new(vec![0; options.rcv_buf.unwrap_or(DEFAULT_BUFFER)]);
    let tx = tcp::SocketBuffer::new(vec![0; options.snd_buf.unwrap_or(DEFAULT_BUFFER)]);
    let mut socket = tcp::Socket::new(rx, tx);
    socket.set_nagle_enabled(!options.no_delay);
    socket
}

/// RFC 9293's names, as the protocol spells them.
fn state_name(state: State) -> &'static str {
    match state {
        State::Closed => "CLOSED",
        State::Listen => "LISTEN",
        State::SynSent => "SYN-SENT",
        State::SynReceived => "SYN-RECEIVED",
        State::Established => "ESTABLISHED",
        State::FinWait1 => "FIN-WAIT-1",
        State::FinWait2 => "FIN-WAIT-2",
        State::CloseWait => "CLOSE-WAIT",
        State::Closing => "CLOSING",
        State::LastAck => "LAST-ACK",
        State::TimeWait => "TIME-WAIT",
    }
}

fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The fields of one request; a missing or mistyped one is `EINVAL`.
struct Request<'a>(&'a Map<String, Value>);

impl Request<'_> {
    fn number(&self, name: &str) -> Result<u64, &'static str> {
        self.0.get(name).and_then(Value::as_u64).ok_or("EINVAL")
    }

    fn text(&self, name: &str) -> Result<&str, &'static str> {
        self.0.get(name).and_then(Value::as_str).ok_or("EINVAL")
    }

    fn port(&self) -> Result<u16, &'static str> {
        u16::try_from(self.number("port")?).map_err(|_| "EINVAL")
    }

    fn data(&self) -> Result<Vec<u8>, &'static str> {
        BASE64.decode(self.text("data")?).map_err(|_| "EINVAL")
    }

    /// `timeout_ms` from now; absent means 0: one attempt.
    fn deadline(&self) -> Result<Instant, &'static str> {
        let millis = self
            .0
            .get("timeout_ms")
            .map_or(Some(0), Value::as_u64)
            .ok_or("EINVAL")?;
        Ok(Instant::now() + Duration::from_millis(millis.min(86_400_000)))
    }
}
