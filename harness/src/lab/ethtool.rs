//! Offloads off through the ethtool ioctl (no `ethtool` binary): TSO, GSO, GRO and TX checksum, so that a
//! capture on the link shows segments as they are on a real wire (at most one MTU each, with real checksums)
//! rather than 64 KiB super-frames with partial checksums.
//!
//! # Interface
//!
//! `ioctl(fd, SIOCETHTOOL, &ifr)` on an `AF_INET` datagram socket. The socket selects the network namespace
//! (the calling thread's, when it is created here), `ifr.ifr_name` the interface, and `ifr.ifr_data` points at
//! a command structure; for these legacy one-feature commands that is
//! `struct ethtool_value { __u32 cmd; __u32 data; }` (include/uapi/linux/ethtool.h). The kernel writes the
//! GET answer into `data` (0 or 1); a SET takes the new value in `data`.
//!
//! Each legacy SET changes the device's *wanted* features, then the kernel recomputes the active ones
//! (`__netdev_update_features`, net/core/dev.c), which may keep a feature on that the device cannot turn off
//! or drop one that depends on another. So every setting is read back with its GET counterpart, and an
//! offload still on is an error naming it.
//!
//! # Order
//!
//! TSO needs TX checksumming: with TX checksum off the kernel drops TSO by itself ("Dropping TSO features
//! since no CSUM feature", `netdev_fix_features`). TSO is nevertheless turned off explicitly and *first*: that
//! removes it from the wanted set, so it cannot come back if TX checksumming is re-enabled later, and the
//! result does not depend on that implicit rule. GSO and GRO are independent of both.
//!
//! A SET that fails with `EOPNOTSUPP` means the feature is fixed on this device (not in its `hw_features`);
//! that is fine when it is already off, so the read-back, not the SET, decides.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `SIOCETHTOOL = 0x8946` (include/uapi/linux/sockios.h).
pub const SIOCETHTOOL: libc::c_ulong = 0x8946;

// include/uapi/linux/ethtool.h, legacy `struct ethtool_value` commands.
/// `ETHTOOL_GTXCSUM = 0x16`: get TX checksum offload.
const ETHTOOL_GTXCSUM: u32 = 0x16;
/// `ETHTOOL_STXCSUM = 0x17`: set TX checksum offload.
const ETHTOOL_STXCSUM: u32 = 0x17;
/// `ETHTOOL_GTSO = 0x1e`: get TCP segmentation offload.
const ETHTOOL_GTSO: u32 = 0x1e;
/// `ETHTOOL_STSO = 0x1f`: set TCP segmentation offload.
const ETHTOOL_STSO: u32 = 0x1f;
/// `ETHTOOL_GGSO = 0x23`: get generic segmentation offload.
const ETHTOOL_GGSO: u32 = 0x23;
/// `ETHTOOL_SGSO = 0x24`: set generic segmentation offload.
const ETHTOOL_SGSO: u32 = 0x24;
/// `ETHTOOL_GGRO = 0x2b`: get generic receive offload.
const ETHTOOL_GGRO: u32 = 0x2b;
/// `ETHTOOL_SGRO = 0x2c`: set generic receive offload.
const ETHTOOL_SGRO: u32 = 0x2c;

/// `struct ethtool_value` (include/uapi/linux/ethtool.h).
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// One offload: its name in messages and its legacy GET/SET commands.
struct Offload {
    name: &'static str,
    get: u32,
    set: u32,
}

const TSO: Offload = Offload {
    name: "TSO",
    get: ETHTOOL_GTSO,
    set: ETHTOOL_STSO,
};
const GSO: Offload = Offload {
    name: "GSO",
    get: ETHTOOL_GGSO,
    set: ETHTOOL_SGSO,
};
const GRO: Offload = Offload {
    name: "GRO",
    get: ETHTOOL_GGRO,
    set: ETHTOOL_SGRO,
};
const TX_CHECKSUM: Offload = Offload {
    name: "TX checksum",
    get: ETHTOOL_GTXCSUM,
    set: ETHTOOL_STXCSUM,
};

/// The order in which [`disable_offloads`] turns them off (see the module docs).
const DISABLE_ORDER: [&Offload; 4] = [&TSO, &GSO, &GRO, &TX_CHECKSUM];

/// Offload state of an interface (`true` = on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offloads {
    /// TCP segmentation offload (`tcp-segmentation-offload`).
    pub tso: bool,
    /// Generic segmentation offload (`generic-segmentation-offload`).
    pub gso: bool,
    /// Generic receive offload (`generic-receive-offload`).
    pub gro: bool,
    /// TX checksumming (`tx-checksumming`).
    pub tx_checksum: bool,
}

impl Offloads {
    /// The names of the offloads that are on, in [`disable_offloads`]' order.
    pub fn enabled(&self) -> Vec<&'static str> {
        [
            (self.tso, TSO.name),
            (self.gso, GSO.name),
            (self.gro, GRO.name),
            (self.tx_checksum, TX_CHECKSUM.name),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// An ioctl socket in the calling thread's namespace, bound to one interface name.
struct Ethtool<'a> {
    sock: OwnedFd,
    ifname: &'a str,
}

impl<'a> Ethtool<'a> {
    fn open(ifname: &'a str) -> io::Result<Ethtool<'a>> {
        let valid = !ifname.is_empty() && ifname.len() < libc::IFNAMSIZ && !ifname.contains('\0');
        if !valid {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("ethtool: invalid interface name {ifname:?}"),
            ));
        }
        // SAFETY: plain socket(2) call.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(last_error("ethtool: socket(AF_INET, SOCK_DGRAM)".into()));
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Ethtool { sock, ifname })
    }

    /// One `struct ethtool_value` command; returns the `data` the kernel left there.
    fn value(&self, cmd: u32, data: u32, what: &str) -> io::Result<u32> {
        let mut value = EthtoolValue { cmd, data };
        // SAFETY: ifreq is plain data; all zeros is a valid (empty) request.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in ifr.ifr_name.iter_mut().zip(self.ifname.bytes()) {
            *d = s as libc::c_char; // the name is shorter than IFNAMSIZ: NUL-terminated by the zeroing
        }
        ifr.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
        // SAFETY: `ifr` is a valid ifreq whose ifr_data points at `value`, which outlives the call.
        let r = unsafe { libc::ioctl(self.sock.as_raw_fd(), SIOCETHTOOL as _, &mut ifr) };
        if r < 0 {
            return Err(last_error(format!(
                "ethtool {what} (command {cmd:#x}) on {}",
                self.ifname
            )));
        }
        Ok(value.data)
    }

    fn get(&self, o: &Offload) -> io::Result<bool> {
        Ok(self.value(o.get, 0, &format!("get {}", o.name))? != 0)
    }

    fn offloads(&self) -> io::Result<Offloads> {
        Ok(Offloads {
            tso: self.get(&TSO)?,
            gso: self.get(&GSO)?,
            gro: self.get(&GRO)?,
            tx_checksum: self.get(&TX_CHECKSUM)?,
        })
    }
}

fn last_error(op: String) -> io::Error {
    let errno = io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO);
    super::netlink::os_error(op, errno)
}

/// Reads TSO, GSO, GRO and TX checksum of `ifname` in the calling thread's namespace.
pub fn get_offloads(ifname: &str) -> io::Result<Offloads> {
    Ethtool::open(ifname)?.offloads()
}

/// Turns TSO, GSO, GRO and TX checksum off on `ifname` (in the calling thread's namespace), then reads them
/// back: an offload that stayed on is an error naming it.
pub fn disable_offloads(ifname: &str) -> io::Result<()> {
    let e = Ethtool::open(ifname)?;
    for o in DISABLE_ORDER {
        match e.value(o.set, 0, &format!("turn {} off", o.name)) {
            Ok(_) => {}
            // Fixed feature: acceptable if it is off, which the read-back checks.
            Err(err) if super::netlink::errno_of(&err) == Some(libc::EOPNOTSUPP) => {}
            Err(err) => return Err(err),
        }
    }
    let now = e.offloads()?;
    let on = now.enabled();
    if on.is_empty() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ethtool: {} still on for {ifname} after turning it off",
            on.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::netlink::tests::Host;
    use crate::lab::netlink::{errno_of, Netlink};

    /// A veth end `e0` in a fresh namespace (peer `e1` in a second one), returned with both hosts alive.
    fn veth_lab() -> (Host, Host) {
        let a = Host::spawn();
        let b = Host::spawn();
        let b_ns = b.ns().try_clone().unwrap();
        a.run(move || Netlink::open()?.create_veth("e0", "e1", b_ns.as_raw_fd()))
            .unwrap();
        (a, b)
    }

    #[test]
    fn all_four_end_up_off() {
        let (a, _b) = veth_lab();
        let (before, gro_on, after) = a
            .run(|| -> io::Result<_> {
                let before = get_offloads("e0")?;
                // veth has GRO off by default (it only matters with NAPI/XDP): turn it on, so that the
                // test exercises all four SETs.
                Ethtool::open("e0")?.value(ETHTOOL_SGRO, 1, "turn GRO on")?;
                let gro_on = get_offloads("e0")?;
                disable_offloads("e0")?;
                Ok((before, gro_on, get_offloads("e0")?))
            })
            .unwrap();
        assert_eq!(
            before.enabled(),
            ["TSO", "GSO", "TX checksum"],
            "{before:?}"
        );
        assert_eq!(
            gro_on.enabled(),
            ["TSO", "GSO", "GRO", "TX checksum"],
            "{gro_on:?}"
        );
        assert!(after.enabled().is_empty(), "{after:?}");
        // Idempotent.
        a.run(|| disable_offloads("e0")).unwrap();
    }

    /// Documents the dependency the order in `DISABLE_ORDER` is about: TX checksum off drops TSO by itself,
    /// but not GSO; turning TX checksum back on brings TSO back unless TSO was turned off explicitly.
    #[test]
    fn tx_checksum_off_drops_tso() {
        let (a, _b) = veth_lab();
        let (off, back_on, explicit) = a
            .run(|| -> io::Result<_> {
                let e = Ethtool::open("e0")?;
                e.value(ETHTOOL_STXCSUM, 0, "turn TX checksum off")?;
                let off = e.offloads()?;
                e.value(ETHTOOL_STXCSUM, 1, "turn TX checksum on")?;
                let back_on = e.offloads()?;
                disable_offloads("e0")?;
                e.value(ETHTOOL_STXCSUM, 1, "turn TX checksum on")?;
                Ok((off, back_on, e.offloads()?))
            })
            .unwrap();
        assert!(!off.tx_checksum && !off.tso && off.gso, "{off:?}");
        assert!(back_on.tx_checksum && back_on.tso, "{back_on:?}");
        assert!(explicit.tx_checksum && !explicit.tso, "{explicit:?}");
    }

    #[test]
    fn errors_name_the_interface_and_command() {
        let (a, _b) = veth_lab();
        let e = a.run(|| get_offloads("nosuch0")).unwrap_err();
        assert_eq!(errno_of(&e), Some(libc::ENODEV), "{e}");
        assert!(e.to_string().contains("get TSO"), "{e}");
        assert!(e.to_string().contains("nosuch0"), "{e}");
        let e = a.run(|| disable_offloads("")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = a
            .run(|| disable_offloads("a-name-that-is-too-long"))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
