//! Offloads off through the ethtool ioctl (no `ethtool` binary): TSO, GSO, GRO and TX checksum, so that the
//! capture shows segments as they would be on a real wire (≤ MTU), not 64 KB super-frames.
//!
//! Legacy `struct ethtool_value { __u32 cmd; __u32 data; }` commands (include/uapi/linux/ethtool.h) on an
//! AF_INET datagram socket in the calling thread's namespace; each setting is read back and an offload that
//! stays on is an error naming it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_GGSO: u32 = 0x23;
const ETHTOOL_SGSO: u32 = 0x24;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// Offload state of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offloads {
    pub tso: bool,
    pub gso: bool,
    pub gro: bool,
    pub tx_checksum: bool,
}

fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ethtool(sock: &OwnedFd, ifname: &str, cmd: u32, data: u32) -> io::Result<u32> {
    if ifname.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {ifname:?} too long"),
        ));
    }
    let mut value = EthtoolValue { cmd, data };
    let mut ifr = IfreqData {
        name: [0; libc::IFNAMSIZ],
        data: &mut value as *mut EthtoolValue as *mut libc::c_void,
        _pad: [0; 16],
    };
    for (d, s) in ifr.name.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: ifr points at a live ethtool_value for the duration of the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut ifr) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("ethtool command {cmd:#x} on {ifname}: {e}"),
        ));
    }
    Ok(value.data)
}

/// Reads TSO, GSO, GRO and TX checksum of `ifname`.
pub fn get_offloads(ifname: &str) -> io::Result<Offloads> {
    let s = control_socket()?;
    Ok(Offloads {
        tso: ethtool(&s, ifname, ETHTOOL_GTSO, 0)? != 0,
        gso: ethtool(&s, ifname, ETHTOOL_GGSO, 0)? != 0,
        gro: ethtool(&s, ifname, ETHTOOL_GGRO, 0)? != 0,
        tx_checksum: ethtool(&s, ifname, ETHTOOL_GTXCSUM, 0)? != 0,
    })
}

/// Turns TSO, GSO, GRO and TX checksum off on `ifname` and verifies they stayed off.
pub fn disable_offloads(ifname: &str) -> io::Result<()> {
    let s = control_socket()?;
    // TSO before TX checksum: TSO depends on it; GSO and GRO are independent.
    for cmd in [ETHTOOL_STSO, ETHTOOL_SGSO, ETHTOOL_SGRO, ETHTOOL_STXCSUM] {
        ethtool(&s, ifname, cmd, 0)?;
    }
    let o = get_offloads(ifname)?;
    for (on, name) in [
        (o.tso, "TSO"),
        (o.gso, "GSO"),
        (o.gro, "GRO"),
        (o.tx_checksum, "TX checksum"),
    ] {
        if on {
            return Err(io::Error::other(format!(
                "{name} stayed on for {ifname} after turning it off"
            )));
        }
    }
    Ok(())
}
