//! The adapter's smoltcp `Device`: packets over the descriptor netconform attached (docs/driver-protocol.md,
//! "Attachment"): fd 3, one `read`/`write` per IP packet, or a TUN device opened by name with `IFF_NO_PI` — the
//! same thing once open — or a TAP device opened by name, one Ethernet frame per `read`/`write`, where smoltcp
//! does ARP and neighbour discovery itself. Every IP packet passes through [`Faults`], which does nothing unless a
//! fault variant was asked for.

use std::io;
use std::os::fd::RawFd;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::{Duration, Instant};

use crate::fault::Faults;

/// Largest packet read: the IPv4/IPv6 total length field's limit, plus an Ethernet header.
const LARGEST_PACKET: usize = 65535 + ETHERNET_HEADER;
/// Destination, source, EtherType.
const ETHERNET_HEADER: usize = 14;

pub struct Link {
    pub fd: RawFd,
    mtu: usize,
    faults: Faults,
    /// A TAP device: Ethernet frames, not IP packets.
    pub ethernet: bool,
}

impl Link {
    /// `NETCONFORM_TUN=name` or `NETCONFORM_TAP=name`: open that device; otherwise the descriptor in
    /// `NETCONFORM_FD` (3 by default).
    pub fn open(mtu: usize, faults: Faults) -> io::Result<Link> {
        let (tun, tap) = (
            std::env::var("NETCONFORM_TUN"),
            std::env::var("NETCONFORM_TAP"),
        );
        let fd = match (&tun, &tap) {
            (Ok(name), _) => open_tun(name, false)?,
            (_, Ok(name)) => open_tun(name, true)?,
            _ => std::env::var("NETCONFORM_FD")
                .ok()
                .and_then(|fd| fd.parse().ok())
                .unwrap_or(3),
        };
        set_nonblocking(fd)?;
        let ethernet = tun.is_err() && tap.is_ok();
        Ok(Link {
            fd,
            mtu,
            faults,
            ethernet,
        })
    }

    /// The IP packet in a packet or frame of this link (an ARP frame has none the faults care about).
    fn ip_part<'p>(&self, packet: &'p mut [u8]) -> &'p mut [u8] {
        let skip = if self.ethernet { ETHERNET_HEADER } else { 0 };
        packet.get_mut(skip..).unwrap_or_default()
    }

    /// Sleeps in poll(2) until a packet arrives on the link, `also` (another descriptor, such as stdin) is
    /// readable, or `timeout` passes (`None`: no timeout). The caller then polls the stack.
    pub fn wait(&self, timeout: Option<Duration>, also: Option<RawFd>) {
        let millis = timeout.map_or(-1, |t| t.total_millis().min(i32::MAX as u64) as i32);
        let pollfd = |fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let mut fds = [pollfd(self.fd), pollfd(also.unwrap_or(-1))];
        // SAFETY: the array and its length are passed together; a negative fd is ignored by poll(2).
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
    }
}

impl Device for Link {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        if self.ethernet {
            caps.medium = Medium::Ethernet;
            caps.max_transmission_unit = self.mtu + ETHERNET_HEADER;
        } else {
            caps.medium = Medium::Ip;
            caps.max_transmission_unit = self.mtu;
        }
        caps
    }

    fn receive(&mut self, _now: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let mut packet = vec![0u8; LARGEST_PACKET];
        // SAFETY: the buffer and its length are passed together.
        let n = unsafe { libc::read(self.fd, packet.as_mut_ptr().cast(), packet.len()) };
        if n <= 0 {
            return None; // EAGAIN, or netconform closed its end at the end of the case
        }
        packet.truncate(n as usize);
        let ip = self.ip_part(&mut packet);
        self.faults.incoming(ip);
        let reply = TxToken {
            link: self,
            reply: true,
        };
        Some((RxToken { packet }, reply))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            link: self,
            reply: false,
        })
    }
}

pub struct RxToken {
    packet: Vec<u8>,
}

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.packet)
    }
}

/// A packet to send. `reply`: smoltcp answers the packet just received with it (an ACK, or a RST for a closed port);
/// otherwise a socket sends it on its own (data, retransmissions, a RST after `abort`).
pub struct TxToken<'a> {
    link: &'a mut Link,
    reply: bool,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0u8; len];
        let result = f(&mut packet);
        let ip = self.link.ip_part(&mut packet);
        if self.link.faults.outgoing(ip, self.reply) {
            // SAFETY: the buffer and its length are passed together. A full socket buffer drops the packet, as a
            // full device queue would; TCP retransmits.
            unsafe { libc::write(self.link.fd, packet.as_ptr().cast(), packet.len()) };
        }
        result
    }
}

/// TUNSETIFF with `IFF_TUN` (or `IFF_TAP`) and `IFF_NO_PI` (linux/if_tun.h) on a new descriptor of /dev/net/tun.
fn open_tun(name: &str, tap: bool) -> io::Result<RawFd> {
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    const IFF_TUN: libc::c_short = 0x0001;
    const IFF_TAP: libc::c_short = 0x0002;
    const IFF_NO_PI: libc::c_short = 0x1000;
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain old data.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *slot = byte as libc::c_char;
    }
    request.ifr_ifru.ifru_flags = if tap { IFF_TAP } else { IFF_TUN } | IFF_NO_PI;
    // SAFETY: TUNSETIFF reads one ifreq.
    if unsafe { libc::ioctl(fd, TUNSETIFF as _, &request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor of ours.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
