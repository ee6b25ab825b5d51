//! A TUN device `nc0` in a host's namespace: the packet end (one read or write is one IP packet) through
//! which the relay and the scripted peer reach a kernel host.
//!
//! The host's connected /24 and /64 routes send the other host's traffic into the device; no neighbours, no
//! link-local address, no offloads to turn off (a TUN device carries IP packets, not Ethernet frames).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::{HarnessError, Result};
use crate::frame::Host;
use crate::lab::hosts::{bring_up_link, wait_ipv6_local_route, IFNAME};
use crate::link::endpoint::PacketEnd;

/// TUNSETIFF = _IOW('T', 202, int) (include/uapi/linux/if_tun.h).
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: i16 = 0x0001;
const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
/// SIOCSIFTXQLEN (include/uapi/linux/sockios.h).
const SIOCSIFTXQLEN: libc::c_ulong = 0x8943;
/// TUN transmit queue (kernel → forwarder), sized so a burst never overflows it.
pub const TUN_TXQUEUELEN: i32 = 10_000;

/// Host setup for a link that ends in a TUN device, on the host thread: lo up, the TUN device `nc0` with the
/// host's addresses, its IPv6 address ready. Returns the device's packet end and its ifindex.
pub fn configure_tun_host(host: Host, mtu: Option<u32>) -> Result<(PacketEnd, u32)> {
    let tun = open_tun(IFNAME)
        .and_then(PacketEnd::new)
        .map_err(|e| HarnessError::lab(format!("host {}: open TUN device", host.name()), e))?;
    // A TUN device has IFF_NOARP already.
    let (_, ifindex) = bring_up_link(host, mtu, "TUN device", false, false)?;
    wait_ipv6_local_route(host)?;
    Ok((tun, ifindex))
}

/// Host setup for a link that ends in a TAP device (Ethernet: the host's kernel does ARP and neighbour
/// discovery with whoever is at the other end), as [`configure_tun_host`] otherwise.
pub fn configure_tap_host(host: Host, mtu: Option<u32>) -> Result<(PacketEnd, u32)> {
    let tap = open_device(IFNAME, true)
        .and_then(PacketEnd::new)
        .map_err(|e| HarnessError::lab(format!("host {}: open TAP device", host.name()), e))?;
    let (_, ifindex) = bring_up_link(host, mtu, "TAP device", false, false)?;
    wait_ipv6_local_route(host)?;
    Ok((tap.ethernet(), ifindex))
}

/// Opens TUN device `name` in the calling thread's namespace, non-blocking, with a long transmit queue.
pub fn open_tun(name: &str) -> std::io::Result<OwnedFd> {
    open_device(name, false)
}

/// Opens TUN (or, with `tap`, TAP) device `name` in the calling thread's namespace, non-blocking, with a
/// long transmit queue.
pub fn open_device(name: &str, tap: bool) -> std::io::Result<OwnedFd> {
    let path = c"/dev/net/tun";
    // SAFETY: valid C string.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    #[repr(C)]
    struct IfReqFlags {
        name: [libc::c_char; libc::IFNAMSIZ],
        value: i32,
        _pad: [u8; 20],
    }
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        value: (if tap { IFF_TAP } else { IFF_TUN } | IFF_NO_PI) as i32,
        _pad: [0; 20],
    };
    for (d, s) in req
        .name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    // SAFETY: req is a valid ifreq-sized buffer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // txqueuelen through an ordinary socket of this namespace.
    // SAFETY: plain syscall.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    req.value = TUN_TXQUEUELEN;
    // SAFETY: as above.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCSIFTXQLEN as _, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}
