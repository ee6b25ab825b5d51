//! The SUT link: host b is a system under test (`--sut`), joined to a's kernel through the relay's
//! forwarder, so capture, recording and seeded impairments work as on any relay link. What b's end is
//! depends on the attachment (`docs/driver-protocol.md`, "Attachment"):
//!
//! - `fd`: one end of `socketpair(AF_UNIX, SOCK_SEQPACKET)`; the SUT gets the other as fd 3, and b's
//!   namespace has only `lo`.
//! - `kernel`: a TUN device `nc0` in b's namespace with the lab addresses and routes: the SUT (a kernel
//!   adapter) uses the kernel's own IP layer, the harness forwards the device's packets.
//! - `tun:NAME`: a persistent TUN device NAME in b's namespace, owned by the SUT's uid, up, with no address
//!   and IPv6 off (b's kernel stays out of the way); the SUT opens it by name (the sandbox gives it a
//!   `/dev/net/tun` node) and is the IP layer. The harness reads and writes the device through an AF_PACKET
//!   socket bound to it that ignores its own transmissions (`PACKET_IGNORE_OUTGOING`) and writes past the
//!   device's queueing discipline (`PACKET_QDISC_BYPASS`): a persistent TUN device gets its real qdisc only when
//!   the link watcher handles the carrier coming up as the SUT attaches, which on a busy machine comes up to
//!   a second later (linkwatch batches events, net/core/link_watch.c); until then the `noop` qdisc drops every
//!   packet sent to the SUT, its first SYN included.
//! - `tap:NAME`: the same with a TAP device (Ethernet frames, read whole through a `SOCK_RAW` packet
//!   socket); a's end of the relay is a TAP too, so the frames pass unchanged between the SUT and a's
//!   kernel, which resolves the SUT's addresses by ARP and neighbour discovery as on any Ethernet.

use std::os::fd::OwnedFd;

use crate::error::{HarnessError, Result};
use crate::frame::Host;
use crate::lab::hosts::Hosts;
use crate::link::endpoint::PacketEnd;
use crate::link::impairment::RelaySpec;
use crate::link::relay::Relay;
use crate::link::tun::configure_tun_host;
use crate::link::LinkOptions;
use crate::sut::sandbox::UidLease;
use crate::sut::Attach;

/// b's end of a SUT link, and what the SUT process gets of it.
pub struct SutEnd {
    /// The harness's side, forwarded by the relay.
    pub end: PacketEnd,
    /// The descriptor the SUT gets as fd 3 (`fd` attachment).
    pub fd3: Option<OwnedFd>,
    /// The uid the SUT must run as (the owner of its TUN device).
    pub uid: Option<UidLease>,
}

/// Sets up b's end for `attach` in b's namespace.
pub fn prepare_b(hosts: &Hosts, options: &LinkOptions, attach: &Attach) -> Result<SutEnd> {
    match attach {
        Attach::Fd => {
            let (ours, theirs) = crate::sut::seqpacket_pair().map_err(|e| {
                HarnessError::lab("SUT link: socketpair(AF_UNIX, SOCK_SEQPACKET)", e)
            })?;
            let end =
                PacketEnd::new(ours).map_err(|e| HarnessError::lab("SUT link: packet end", e))?;
            Ok(SutEnd {
                end,
                fd3: Some(theirs),
                uid: None,
            })
        }
        Attach::Kernel => {
            let mtu = options.mtu;
            let (end, _) = hosts
                .host(Host::B)
                .run(move || configure_tun_host(Host::B, mtu))??;
            Ok(SutEnd {
                end,
                fd3: None,
                uid: None,
            })
        }
        Attach::Tun { name } | Attach::Tap { name } => {
            let tap = matches!(attach, Attach::Tap { .. });
            let lease = UidLease::take()?;
            let (uid, name, mtu) = (lease.uid(), name.clone(), options.mtu);
            let end = hosts
                .host(Host::B)
                .run(move || persistent_tun(&name, uid, mtu, tap))??;
            Ok(SutEnd {
                end,
                fd3: None,
                uid: Some(lease),
            })
        }
    }
}

const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
const TUNSETGROUP: libc::c_ulong = 0x4004_54ce;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_QDISC_BYPASS: libc::c_int = 20;

/// On b's thread: TUN (or, with `tap`, TAP) device `name` made persistent and owned by `uid`, up, no
/// address, IPv6 off; returns an AF_PACKET end bound to it (whole Ethernet frames for a TAP). The device
/// goes with b's namespace.
pub fn persistent_tun(name: &str, uid: u32, mtu: Option<u32>, tap: bool) -> Result<PacketEnd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let kind = if tap { "TAP" } else { "TUN" };
    let step = |what: &str| format!("SUT link: {kind} device {name}: {what}");
    let tun = crate::link::tun::open_device(name, tap)
        .map_err(|e| HarnessError::lab(step("create"), e))?;
    for (req, value, what) in [
        (TUNSETOWNER, uid as libc::c_ulong, "TUNSETOWNER"),
        (TUNSETGROUP, uid as libc::c_ulong, "TUNSETGROUP"),
        (TUNSETPERSIST, 1, "TUNSETPERSIST"),
    ] {
        // SAFETY: these ioctls take their argument by value.
        if unsafe { libc::ioctl(tun.as_raw_fd(), req as _, value) } < 0 {
            return Err(HarnessError::lab(
                step(what),
                std::io::Error::last_os_error(),
            ));
        }
    }
    // The harness's descriptor closes now: the persistent device waits for the SUT to attach.
    drop(tun);
    let mut nl = crate::lab::netlink::Netlink::open()
        .map_err(|e| HarnessError::lab(step("open netlink"), e))?;
    let ifindex = nl
        .link_index(name)
        .map_err(|e| HarnessError::lab(step("find"), e))?;
    if let Some(mtu) = mtu {
        nl.set_mtu(ifindex, mtu)
            .map_err(|e| HarnessError::lab(step("set MTU"), e))?;
    }
    nl.set_no_link_local(ifindex)
        .map_err(|e| HarnessError::lab(step("addrgenmode none"), e))?;
    // b's namespace, b's own sysctl: its kernel must not speak IPv6 on the SUT's device.
    std::fs::write(
        format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"),
        "1\n",
    )
    .map_err(|e| HarnessError::lab(step("disable IPv6"), e))?;
    nl.set_link_up(ifindex)
        .map_err(|e| HarnessError::lab(step("set up"), e))?;
    // SAFETY: plain socket(2).
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            if tap {
                libc::SOCK_RAW
            } else {
                libc::SOCK_DGRAM
            } | libc::SOCK_CLOEXEC,
            (libc::ETH_P_ALL as u16).to_be() as i32,
        )
    };
    if fd < 0 {
        return Err(HarnessError::lab(
            step("AF_PACKET socket"),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: fresh descriptor, owned here.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    for (option, what) in [
        (PACKET_IGNORE_OUTGOING, "PACKET_IGNORE_OUTGOING"),
        (PACKET_QDISC_BYPASS, "PACKET_QDISC_BYPASS"),
    ] {
        // SAFETY: an int option, passed by pointer with its size.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_PACKET,
                option,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(HarnessError::lab(
                step(what),
                std::io::Error::last_os_error(),
            ));
        }
    }
    // SAFETY: sockaddr_ll is plain data; zero is a valid start.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: addr is a live sockaddr_ll, passed with its size.
    let r = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(HarnessError::lab(
            step("bind AF_PACKET"),
            std::io::Error::last_os_error(),
        ));
    }
    let end = PacketEnd::new(sock).map_err(|e| HarnessError::lab(step("packet end"), e))?;
    let end = end.on_sut_device();
    Ok(if tap { end.ethernet() } else { end })
}

/// On b's thread: the persistent TUN (or, with `tap`, TAP) device `name` given to `uid` (a later run of a
/// stdio SUT, under a new uid). The harness (root) attaches to the device for the change and closes it again.
pub fn reown_tun(name: &str, uid: u32, tap: bool) -> Result<()> {
    use std::os::fd::AsRawFd;
    let tun = crate::link::tun::open_device(name, tap)
        .map_err(|e| HarnessError::lab(format!("SUT link: TUN device {name}: attach"), e))?;
    for (req, what) in [(TUNSETOWNER, "TUNSETOWNER"), (TUNSETGROUP, "TUNSETGROUP")] {
        // SAFETY: these ioctls take their argument by value.
        if unsafe { libc::ioctl(tun.as_raw_fd(), req as _, uid as libc::c_ulong) } < 0 {
            return Err(HarnessError::lab(
                format!("SUT link: TUN device {name}: {what}"),
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

/// On b's thread: whether device `name` is running (a TUN has carrier while a process has it attached).
pub fn device_running(name: &str) -> bool {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: fresh descriptor, owned here.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; zero is a valid start.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills the ifreq passed by pointer.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) } < 0 {
        return false;
    }
    // SAFETY: SIOCGIFFLAGS wrote the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    flags as libc::c_int & libc::IFF_RUNNING != 0
}

/// The relay between a's TUN device and b's end.
pub fn build(
    hosts: &Hosts,
    options: &LinkOptions,
    b: PacketEnd,
    spec: &RelaySpec,
) -> Result<Relay> {
    Relay::build_to_end(hosts, options, b, spec)
}
