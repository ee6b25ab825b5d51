//! Kernel sockets owned by a lab host, with the containment rule built in.
//!
//! Every [`Socket`] is created on a host thread (see [`crate::lab::HostWorker`]), which has entered that host's
//! anonymous network namespace. Before a socket connects or sends anything, [`Socket::verify_containment`]
//! asks the kernel (ioctl `SIOCGSKNS`) which namespace the socket lives in and compares it with the namespace of
//! the lab host whose thread is running; a socket created elsewhere — in the root namespace above all — is
//! refused with [`HarnessError::Containment`]. The answer is cached per socket (a socket never changes namespace).
//!
//! Operations report kernel outcomes as [`SockResult`] (value or errno by name): an errno is an *observation*,
//! not a harness failure. Blocking operations take a timeout and never hang the harness.
//!
//! The system calls with a standard shape (socket, bind, listen, connect, accept4, send, sendto, recvmsg,
//! shutdown, getsockname/getpeername, O_NONBLOCK) go through `socket2`'s safe wrappers; its `io::Error`s keep
//! the raw errno, so outcomes are named exactly as before. Ours remain: integer options by (level, name)
//! (socket2 has no generic setsockopt, and properties set SO_RCVBUFFORCE, SO_NO_CHECK …), TCP_INFO, poll, and
//! the namespace ioctl `SIOCGSKNS`.

use std::cell::Cell;
use std::mem::{size_of, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use socket2::{Domain, MaybeUninitSlice, Protocol, SockAddr, SockRef, Type};

use crate::errno::last_errno;
use crate::error::HarnessError;
use crate::lab::nsfd::socket_netns_inode;

thread_local! {
    /// The network-namespace inode of the lab host this thread serves, set by the host thread at start.
    static LAB_NETNS: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Marks the calling thread as serving a lab host whose namespace has this inode.
pub(crate) fn set_thread_lab_netns(inode: u64) {
    LAB_NETNS.with(|c| c.set(Some(inode)));
}

/// The lab namespace inode of the calling thread, if it is a lab host thread.
pub fn thread_lab_netns() -> Option<u64> {
    LAB_NETNS.with(|c| c.get())
}

/// An outcome the kernel gave: a value, or an errno (named on display).
pub type SockResult<T> = Result<T, Errno>;

pub use crate::errno::Errno;

/// IP version of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
    fn domain(self) -> Domain {
        match self {
            Family::Ipv4 => Domain::IPV4,
            Family::Ipv6 => Domain::IPV6,
        }
    }
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }
    pub fn unspecified(self) -> IpAddr {
        match self {
            Family::Ipv4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::Ipv6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }
}

/// A kernel socket created on a lab host thread.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
    family: Family,
    /// Namespace inode verified once, before the first connect/send.
    verified: Cell<bool>,
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn cvt(ret: libc::c_int) -> SockResult<libc::c_int> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// An `io::Result` from socket2 as a kernel outcome.
fn outcome<T>(r: std::io::Result<T>) -> SockResult<T> {
    r.map_err(|e| Errno::of(&e))
}

/// Encodes a socket address for the kernel.
pub fn sockaddr_from(addr: SocketAddr) -> SockAddr {
    SockAddr::from(addr)
}

/// Decodes a kernel socket address (IPv4 or IPv6 only).
pub fn sockaddr_to(addr: &SockAddr) -> Option<SocketAddr> {
    addr.as_socket()
}

/// The outcome of a receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// What recv returned (with MSG_TRUNC in the call flags: the datagram's real length).
    pub returned: usize,
    /// The bytes copied into the buffer.
    pub data: Vec<u8>,
    /// MSG_TRUNC was set in msg_flags: the datagram was longer than the buffer.
    pub truncated: bool,
    pub from: Option<SocketAddr>,
}

impl Socket {
    /// Creates a socket in the calling thread's network namespace. Fails with a harness error if the calling
    /// thread is not a lab host thread: sockets are never created in the root namespace.
    pub fn new(family: Family, ty: i32, protocol: i32) -> Result<Socket, HarnessError> {
        if thread_lab_netns().is_none() {
            return Err(HarnessError::Containment(
                "a socket was requested on a thread that is not a lab host thread; sockets are only created \
                 inside lab namespaces"
                    .into(),
            ));
        }
        // socket2 adds SOCK_CLOEXEC on Linux.
        let sock = socket2::Socket::new(
            family.domain(),
            Type::from(ty),
            Some(Protocol::from(protocol)),
        )
        .map_err(|e| {
            HarnessError::Socket(format!(
                "socket({}, {ty}, {protocol}): {}",
                family.name(),
                Errno::of(&e)
            ))
        })?;
        Ok(Socket {
            fd: OwnedFd::from(sock),
            family,
            verified: Cell::new(false),
        })
    }

    /// Wraps a descriptor made elsewhere (e.g. by accept). It is verified like any other before it sends.
    pub fn from_owned(fd: OwnedFd, family: Family) -> Socket {
        Socket {
            fd,
            family,
            verified: Cell::new(false),
        }
    }

    pub fn tcp(family: Family) -> Result<Socket, HarnessError> {
        Socket::new(family, libc::SOCK_STREAM, 0)
    }
    pub fn udp(family: Family) -> Result<Socket, HarnessError> {
        Socket::new(family, libc::SOCK_DGRAM, 0)
    }
    /// A raw socket for crafted segments of `protocol` (e.g. IPPROTO_TCP); the kernel writes the IP header.
    pub fn raw(family: Family, protocol: i32) -> Result<Socket, HarnessError> {
        Socket::new(family, libc::SOCK_RAW, protocol)
    }

    pub fn family(&self) -> Family {
        self.family
    }

    /// socket2's safe view of this descriptor.
    fn sock(&self) -> SockRef<'_> {
        SockRef::from(&self.fd)
    }

    /// Checks that this socket lives in the network namespace of the lab host whose thread is running.
    pub fn verify_containment(&self) -> Result<(), HarnessError> {
        if self.verified.get() {
            return Ok(());
        }
        let Some(expected) = thread_lab_netns() else {
            return Err(HarnessError::Containment(
                "a socket tried to connect or send from a thread that is not a lab host thread"
                    .into(),
            ));
        };
        let actual = socket_netns_inode(self.fd.as_raw_fd()).map_err(|e| {
            HarnessError::Containment(format!(
                "cannot read the socket's network namespace (SIOCGSKNS): {e}"
            ))
        })?;
        if actual != expected {
            return Err(HarnessError::Containment(format!(
                "socket is in network namespace {actual}, not in the lab host's namespace {expected}; refusing to \
                 let it connect or send"
            )));
        }
        self.verified.set(true);
        Ok(())
    }

    pub fn set_int_opt(&self, level: i32, name: i32, value: i32) -> SockResult<()> {
        // SAFETY: value is a live c_int for the duration of the call.
        cvt(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                &value as *const i32 as *const libc::c_void,
                size_of::<i32>() as libc::socklen_t,
            )
        })
        .map(|_| ())
    }

    pub fn get_int_opt(&self, level: i32, name: i32) -> SockResult<i32> {
        let mut value: i32 = 0;
        let mut len = size_of::<i32>() as libc::socklen_t;
        // SAFETY: value/len describe a valid buffer.
        cvt(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                &mut value as *mut i32 as *mut libc::c_void,
                &mut len,
            )
        })?;
        Ok(value)
    }

    pub fn set_nonblocking(&self, on: bool) -> SockResult<()> {
        outcome(self.sock().set_nonblocking(on))
    }

    pub fn bind(&self, addr: SocketAddr) -> SockResult<()> {
        outcome(self.sock().bind(&sockaddr_from(addr)))
    }

    pub fn listen(&self, backlog: i32) -> SockResult<()> {
        outcome(self.sock().listen(backlog))
    }

    pub fn local_addr(&self) -> SockResult<SocketAddr> {
        sockaddr_to(&outcome(self.sock().local_addr())?).ok_or(Errno(libc::EAFNOSUPPORT))
    }

    /// connect() with a deadline: the socket is made non-blocking, the connect started, and the outcome read
    /// from SO_ERROR once the socket is writable. `Ok(Err(ETIMEDOUT))`-like outcomes are reported as
    /// [`ConnectOutcome::TimedOut`] so a missing answer is told apart from a kernel ETIMEDOUT.
    pub fn connect_timeout(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<ConnectOutcome, HarnessError> {
        self.verify_containment()?;
        self.set_nonblocking(true)
            .map_err(|e| HarnessError::Socket(format!("O_NONBLOCK: {e}")))?;
        let result = match outcome(self.sock().connect(&sockaddr_from(addr))) {
            Ok(()) => ConnectOutcome::Done(Ok(())),
            Err(errno) => {
                if errno.0 != libc::EINPROGRESS {
                    ConnectOutcome::Done(Err(errno))
                } else {
                    match self.poll(libc::POLLOUT, timeout) {
                        0 => ConnectOutcome::TimedOut,
                        _ => {
                            let err = self
                                .get_int_opt(libc::SOL_SOCKET, libc::SO_ERROR)
                                .map_err(|e| HarnessError::Socket(format!("SO_ERROR: {e}")))?;
                            ConnectOutcome::Done(if err == 0 { Ok(()) } else { Err(Errno(err)) })
                        }
                    }
                }
            }
        };
        self.set_nonblocking(false)
            .map_err(|e| HarnessError::Socket(format!("O_NONBLOCK off: {e}")))?;
        Ok(result)
    }

    /// Plain connect() (used for UDP, which does not block).
    pub fn connect(&self, addr: SocketAddr) -> Result<SockResult<()>, HarnessError> {
        self.verify_containment()?;
        Ok(outcome(self.sock().connect(&sockaddr_from(addr))))
    }

    /// poll() for `events`, returning the revents (0 on timeout).
    pub fn poll(&self, events: i16, timeout: Duration) -> i16 {
        let deadline = Instant::now() + timeout;
        loop {
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events,
                revents: 0,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            let ret = unsafe { libc::poll(&mut pfd, 1, ms) };
            if ret < 0 && last_errno() == libc::EINTR {
                continue;
            }
            if ret <= 0 {
                return 0;
            }
            return pfd.revents;
        }
    }

    pub fn send(&self, data: &[u8], flags: i32) -> Result<SockResult<usize>, HarnessError> {
        self.verify_containment()?;
        // MSG_NOSIGNAL: an EPIPE is an outcome, not a SIGPIPE for the harness.
        Ok(outcome(
            self.sock()
                .send_with_flags(data, flags | libc::MSG_NOSIGNAL),
        ))
    }

    pub fn send_to(
        &self,
        data: &[u8],
        to: SocketAddr,
        flags: i32,
    ) -> Result<SockResult<usize>, HarnessError> {
        self.verify_containment()?;
        Ok(outcome(self.sock().send_to_with_flags(
            data,
            &sockaddr_from(to),
            flags | libc::MSG_NOSIGNAL,
        )))
    }

    /// recvmsg() with a buffer of `max` bytes, waiting at most `timeout` for the socket to become readable
    /// (or to report an error). `None` means nothing arrived in time.
    pub fn recv_timeout(
        &self,
        max: usize,
        flags: i32,
        timeout: Duration,
    ) -> Option<SockResult<Received>> {
        let revents = self.poll(libc::POLLIN, timeout);
        if revents == 0 {
            return None;
        }
        Some(self.recv_now(max, flags | libc::MSG_DONTWAIT))
    }

    /// One recvmsg() call now.
    pub fn recv_now(&self, max: usize, flags: i32) -> SockResult<Received> {
        let mut buf = vec![MaybeUninit::new(0u8); max];
        // recvmsg(2) underneath; the address comes back with the length the kernel gave (0 for TCP: None).
        let (n, msg_flags, from) = outcome(
            self.sock()
                .recv_from_vectored_with_flags(&mut [MaybeUninitSlice::new(&mut buf)], flags),
        )?;
        let truncated = msg_flags.is_truncated();
        let copied = n.min(max);
        // Every element was initialised by `MaybeUninit::new(0)` above; the kernel only overwrote bytes.
        let data = buf[..copied]
            .iter()
            // SAFETY: initialised (see above).
            .map(|b| unsafe { b.assume_init() })
            .collect();
        Ok(Received {
            returned: n,
            data,
            truncated,
            from: sockaddr_to(&from),
        })
    }

    pub fn peer_addr(&self) -> SockResult<SocketAddr> {
        sockaddr_to(&outcome(self.sock().peer_addr())?).ok_or(Errno(libc::EAFNOSUPPORT))
    }

    pub fn shutdown(&self, how: i32) -> SockResult<()> {
        let how = match how {
            libc::SHUT_RD => Shutdown::Read,
            libc::SHUT_WR => Shutdown::Write,
            libc::SHUT_RDWR => Shutdown::Both,
            // What shutdown(2) answers for any other value.
            _ => return Err(Errno(libc::EINVAL)),
        };
        outcome(self.sock().shutdown(how))
    }

    /// accept4() now (the caller polls first when it wants to wait). The new socket is verified like any other
    /// before it sends.
    /// Returns the new socket and the peer's address as accept reported it (getpeername may already fail
    /// if the connection was reset while it waited in the queue).
    pub fn accept_now(&self) -> SockResult<(Socket, Option<SocketAddr>)> {
        // socket2 calls accept4 with SOCK_CLOEXEC on Linux.
        let (sock, from) = outcome(self.sock().accept())?;
        Ok((
            Socket::from_owned(OwnedFd::from(sock), self.family),
            sockaddr_to(&from),
        ))
    }

    /// connect() without waiting (for non-blocking sockets: EINPROGRESS is the expected answer).
    pub fn connect_now(&self, addr: SocketAddr) -> Result<SockResult<()>, HarnessError> {
        self.connect(addr)
    }

    /// A TCP_INFO snapshot (include/uapi/linux/tcp.h `struct tcp_info`), or None for non-TCP sockets.
    pub fn tcp_info(&self) -> Option<TcpInfo> {
        let mut buf = [0u8; 232];
        let mut len = buf.len() as libc::socklen_t;
        // SAFETY: buf/len describe a valid buffer; the kernel writes at most len bytes.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                buf.as_mut_ptr() as *mut libc::c_void,
                &mut len,
            )
        };
        if r < 0 || (len as usize) < 104 {
            return None;
        }
        let u32_at =
            |at: usize| u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        Some(TcpInfo {
            state: buf[0],
            retransmits: buf[2],
            probes: buf[3],
            backoff: buf[4],
            options: buf[5],
            snd_wscale: buf[6] & 0x0f,
            rcv_wscale: buf[6] >> 4,
            rto_us: u32_at(8),
            snd_mss: u32_at(16),
            rcv_mss: u32_at(20),
            unacked: u32_at(24),
            rcv_space: u32_at(96),
            snd_cwnd: u32_at(80),
            total_retrans: u32_at(100),
        })
    }

    /// Waits up to `timeout` for a pending socket error (POLLERR), then reads and clears it via SO_ERROR.
    pub fn wait_error(&self, timeout: Duration) -> Option<Errno> {
        let deadline = Instant::now() + timeout;
        loop {
            let err = self
                .get_int_opt(libc::SOL_SOCKET, libc::SO_ERROR)
                .unwrap_or(0);
            if err != 0 {
                return Some(Errno(err));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            // POLLERR is always reported; ask for nothing else.
            if self.poll(0, left) == 0 {
                return None;
            }
        }
    }
}

/// The TCP_INFO fields netconform records after each operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TcpInfo {
    /// include/net/tcp_states.h numbering (1 ESTABLISHED … 10 LISTEN, 11 CLOSING).
    pub state: u8,
    pub retransmits: u8,
    pub probes: u8,
    pub backoff: u8,
    /// TCPI_OPT_* bits: 1 timestamps, 2 SACK, 4 window scale, 8 ECN.
    pub options: u8,
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
    pub rto_us: u32,
    pub snd_mss: u32,
    pub rcv_mss: u32,
    pub unacked: u32,
    pub rcv_space: u32,
    pub snd_cwnd: u32,
    pub total_retrans: u32,
}

/// What a connect with a deadline ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// The kernel answered: connected, or an errno.
    Done(SockResult<()>),
    /// No answer before the deadline (no RST, no SYN-ACK).
    TimedOut,
}

impl std::fmt::Display for ConnectOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectOutcome::Done(Ok(())) => f.write_str("connected"),
            ConnectOutcome::Done(Err(e)) => write!(f, "{e}"),
            ConnectOutcome::TimedOut => f.write_str("no answer before the deadline"),
        }
    }
}

/// Maps an io::Error to a harness error about a socket step.
pub fn socket_step(step: &str, e: impl std::fmt::Display) -> HarnessError {
    HarnessError::Socket(format!("{step}: {e}"))
}
