//! A small synchronous rtnetlink client, written by hand: just the requests a lab needs.
//!
//! # Message layout
//!
//! Every request and reply is one or more netlink messages, each aligned to 4 bytes (`NLMSG_ALIGNTO`):
//!
//! ```text
//! struct nlmsghdr   16 bytes  nlmsg_len u32 (header included), nlmsg_type u16, nlmsg_flags u16,
//!                             nlmsg_seq u32, nlmsg_pid u32                (include/uapi/linux/netlink.h)
//! family header     fixed     struct ifinfomsg (16 bytes) for links, ifaddrmsg (8) for addresses,
//!                             ndmsg (12) for neighbours                 (include/uapi/linux/rtnetlink.h,
//!                                                                        if_addr.h, neighbour.h)
//! attributes        rtattr*   struct rtattr { rta_len u16 (header included), rta_type u16 } + payload,
//!                             each padded to 4 bytes; a nested attribute's payload is more rtattrs
//! ```
//!
//! All integers are in host byte order; addresses are in network order, as bytes. The one odd attribute is
//! `VETH_INFO_PEER` (include/uapi/linux/veth.h): its payload is a whole `struct ifinfomsg` followed by the
//! peer's own attributes, so it is written as a raw header inside the nest, without `NLA_F_NESTED`.
//!
//! Creating a veth pair is thus:
//!
//! ```text
//! nlmsghdr RTM_NEWLINK, NLM_F_REQUEST|NLM_F_ACK|NLM_F_CREATE|NLM_F_EXCL
//! ifinfomsg {0}
//! IFLA_IFNAME "nc0"
//! IFLA_LINKINFO
//!     IFLA_INFO_KIND "veth"
//!     IFLA_INFO_DATA
//!         VETH_INFO_PEER  ifinfomsg {0}
//!                         IFLA_IFNAME "nc1"
//!                         IFLA_NET_NS_FD <fd of the peer's namespace>
//! ```
//!
//! # Design
//!
//! - **Synchronous, one request in flight.** Each call sends one request with `NLM_F_ACK` and a fresh
//!   sequence number, then reads until the kernel's `NLMSG_ERROR` for that sequence number (error 0 is the
//!   acknowledgement) or, for a dump, until `NLMSG_DONE` (the kernel sends no ACK after a dump even when asked).
//!   Messages carrying another sequence number (left over from a request that failed half-way) are skipped.
//! - **Errors say which request failed.** A negative error becomes an `io::Error` of the errno's kind whose
//!   inner error is a [`KernelError`]: the request ("create veth nc0/nc1"), the errno (see [`errno_of`]) and,
//!   when the kernel gave one, its extended-ack text (`NETLINK_EXT_ACK`). `io::Error` cannot carry both a raw
//!   errno and a message, so `raw_os_error()` is `None` on these errors: use [`errno_of`].
//! - **No panics on replies.** Every length and offset in a reply is checked; a short or inconsistent message
//!   is an `InvalidData` error naming the request. Only datagrams from the kernel (port id 0) are read, and a
//!   datagram larger than the receive buffer is an error rather than a silent truncation (`MSG_TRUNC`).
//! - **Namespaces.** The socket is opened in the calling thread's network namespace and stays there whatever
//!   thread uses it later; the lab opens one per host thread. A veth pair is created in that namespace with
//!   its peer placed directly in another one (`IFLA_NET_NS_FD` inside `VETH_INFO_PEER`): moving an existing
//!   interface afterwards (`IFLA_NET_NS_FD` on an existing link) costs 12–44 ms.
//! - **Deferred carrier.** Setting a veth end up turns its carrier on, but the kernel finishes that (operstate,
//!   qdisc activation) in deferred link-watch work. Reading the link once with [`Netlink::get_link`] after
//!   both ends are up makes the kernel complete it before it answers (measured on 6.18: `IFF_RUNNING` was
//!   clear right after the second end went up in 200 of 200 labs, and set after one RTM_GETLINK in 200 of 200).
//! - **IPv6 readiness.** `IFA_F_NODAD` makes an IPv6 address non-tentative at once, but its local route is
//!   still inserted by deferred addrconf work; packets to the address are dropped until then (1–2 % of labs
//!   when idle, more under load). [`Netlink::wait_address_local`] waits for it with route lookups.
//! - Every reply waits at most [`REPLY_TIMEOUT`] (`SO_RCVTIMEO`): a kernel that never answers is a
//!   `TimedOut` error, not a hang.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

// include/uapi/linux/netlink.h
/// `NLMSG_HDRLEN`: size of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;
/// `NLMSG_NOOP = 0x1`: nothing; skipped.
const NLMSG_NOOP: u16 = 0x1;
/// `NLMSG_ERROR = 0x2`: `struct nlmsgerr { int error; struct nlmsghdr msg; }` + optional TLVs.
const NLMSG_ERROR: u16 = 0x2;
/// `NLMSG_DONE = 0x3`: end of a dump; payload is an `int` error.
const NLMSG_DONE: u16 = 0x3;
/// `NLMSG_OVERRUN = 0x4`: data lost.
const NLMSG_OVERRUN: u16 = 0x4;
/// `NLM_F_REQUEST = 0x01`.
const NLM_F_REQUEST: u16 = 0x01;
/// `NLM_F_ACK = 0x04`: reply with an acknowledgement (an `NLMSG_ERROR` with error 0).
const NLM_F_ACK: u16 = 0x04;
/// `NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH = 0x300` (GET requests).
const NLM_F_DUMP: u16 = 0x300;
/// `NLM_F_REPLACE = 0x100` (NEW requests): replace an existing object.
const NLM_F_REPLACE: u16 = 0x100;
/// `NLM_F_EXCL = 0x200` (NEW requests): fail with EEXIST if the object exists.
const NLM_F_EXCL: u16 = 0x200;
/// `NLM_F_CREATE = 0x400` (NEW requests): create the object if it does not exist.
const NLM_F_CREATE: u16 = 0x400;
/// `NLM_F_CAPPED = 0x100` (on `NLMSG_ERROR`): the echoed request was cut down to its header.
const NLM_F_CAPPED: u16 = 0x100;
/// `NLM_F_ACK_TLVS = 0x200` (on `NLMSG_ERROR`): extended-ack TLVs follow the echoed request.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLMSGERR_ATTR_MSG = 1`: extended-ack TLV, a NUL-terminated message.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// `SOL_NETLINK = 270` (include/linux/socket.h).
const SOL_NETLINK: libc::c_int = 270;
/// `NETLINK_CAP_ACK = 10`: echo only the header of a failed request in `NLMSG_ERROR`.
const NETLINK_CAP_ACK: libc::c_int = 10;
/// `NETLINK_EXT_ACK = 11`: extended acknowledgements (the kernel's error text).
const NETLINK_EXT_ACK: libc::c_int = 11;
/// `NLA_F_NESTED = 1 << 15`: the attribute's payload is attributes.
const NLA_F_NESTED: u16 = 1 << 15;
/// `NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER)`.
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | (1 << 14));

// include/uapi/linux/rtnetlink.h
/// `RTM_NEWLINK = 16`.
const RTM_NEWLINK: u16 = 16;
/// `RTM_GETLINK = 18`.
const RTM_GETLINK: u16 = 18;
/// `RTM_NEWADDR = 20`.
const RTM_NEWADDR: u16 = 20;
/// `RTM_NEWNEIGH = 28`.
const RTM_NEWNEIGH: u16 = 28;
/// `RTM_NEWROUTE = 24`: a route (also the answer to a route lookup).
const RTM_NEWROUTE: u16 = 24;
/// `RTM_GETROUTE = 26`: without `NLM_F_DUMP`, a route lookup (`ip route get`).
const RTM_GETROUTE: u16 = 26;
/// `RTN_LOCAL = 2` (`rtm_type`): the destination is an address of this host.
const RTN_LOCAL: u8 = 2;
/// `RTA_DST = 1` (`enum rtattr_type_t`): destination address.
const RTA_DST: u16 = 1;
/// `RTA_OIF = 4`: output interface.
const RTA_OIF: u16 = 4;
/// `RT_TABLE_LOCAL = 255`: the table of local and broadcast routes.
const RT_TABLE_LOCAL: u8 = 255;
/// `RTPROT_KERNEL = 2`: a route the kernel installs for an address.
const RTPROT_KERNEL: u8 = 2;
/// `RTEXT_FILTER_SKIP_STATS = 1 << 3`: leave the (large) statistics out of link replies.
const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;

// include/uapi/linux/if_link.h
/// `IFLA_ADDRESS = 1`: link-layer address.
const IFLA_ADDRESS: u16 = 1;
/// `IFLA_IFNAME = 3`: interface name, NUL-terminated.
const IFLA_IFNAME: u16 = 3;
/// `IFLA_MTU = 4`: u32.
const IFLA_MTU: u16 = 4;
/// `IFLA_OPERSTATE = 16`: u8, RFC 2863 operational state (`IF_OPER_*`).
const IFLA_OPERSTATE: u16 = 16;
/// `IFLA_LINKINFO = 18`: nested `IFLA_INFO_*`.
const IFLA_LINKINFO: u16 = 18;
/// `IFLA_NET_NS_FD = 28`: u32, a network namespace descriptor.
const IFLA_NET_NS_FD: u16 = 28;
/// `IFLA_EXT_MASK = 29`: u32, `RTEXT_FILTER_*` bits.
const IFLA_EXT_MASK: u16 = 29;
/// Per-address-family link settings (nested by family).
const IFLA_AF_SPEC: u16 = 26;
/// Inside `IFLA_AF_SPEC`/`AF_INET6`: how the link-local address is generated (u8).
const IFLA_INET6_ADDR_GEN_MODE: u16 = 8;
/// `IN6_ADDR_GEN_MODE_NONE`: no link-local address.
const IN6_ADDR_GEN_MODE_NONE: u8 = 1;
/// `IFLA_INFO_KIND = 1`: string, the link type ("veth").
const IFLA_INFO_KIND: u16 = 1;
/// `IFLA_INFO_DATA = 2`: nested, type-specific.
const IFLA_INFO_DATA: u16 = 2;

// include/uapi/linux/veth.h
/// `VETH_INFO_PEER = 1`: `struct ifinfomsg` + the peer's IFLA_* attributes.
const VETH_INFO_PEER: u16 = 1;

// include/uapi/linux/if_addr.h
/// `IFA_ADDRESS = 1`: prefix address (the peer on point-to-point links; else the same as IFA_LOCAL).
const IFA_ADDRESS: u16 = 1;
/// `IFA_LOCAL = 2`: local address.
const IFA_LOCAL: u16 = 2;
/// `IFA_FLAGS = 8`: u32, all `IFA_F_*` flags (`ifa_flags` has only 8 bits).
const IFA_FLAGS: u16 = 8;
/// `IFA_F_NODAD = 0x02`: no duplicate address detection, the IPv6 address is usable at once.
const IFA_F_NODAD: u32 = 0x02;

// include/uapi/linux/neighbour.h
/// `NDA_DST = 1`: network-layer address.
const NDA_DST: u16 = 1;
/// `NDA_LLADDR = 2`: link-layer address.
const NDA_LLADDR: u16 = 2;
/// `NUD_PERMANENT = 0x80`: static entry, never probed or expired.
const NUD_PERMANENT: u16 = 0x80;

// include/uapi/linux/if.h
/// `IFF_UP = 0x1`.
pub const IFF_UP: u32 = 0x1;
/// `IFF_NOARP = 0x80`: no ARP, and for IPv6 no solicited-node multicast groups (so no MLD reports).
pub const IFF_NOARP: u32 = 0x80;
/// `IFF_RUNNING = 0x40`: operstate is up (carrier on).
pub const IFF_RUNNING: u32 = 0x40;
/// `IFF_LOWER_UP = 0x10000`: carrier on.
pub const IFF_LOWER_UP: u32 = 0x10000;
/// `IF_OPER_DOWN = 2` (enum in include/uapi/linux/if.h).
pub const IF_OPER_DOWN: u8 = 2;
/// `IF_OPER_LOWERLAYERDOWN = 5`.
pub const IF_OPER_LOWERLAYERDOWN: u8 = 5;
/// `IF_OPER_UP = 6`.
pub const IF_OPER_UP: u8 = 6;

/// The loopback interface's index: `lo` is the first device of every network namespace.
pub const LOOPBACK_IFINDEX: u32 = 1;

/// How long [`Netlink`] waits for a reply before giving up.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Receive buffer: large enough for any dump chunk (the kernel caps those at 32 KiB) and any single link.
const RECV_BUF: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------------------
// Errors

/// A kernel request that failed: which one, its errno, and the kernel's own explanation when it gave one.
///
/// Returned as the inner error of an `io::Error` whose kind is the errno's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelError {
    op: String,
    errno: i32,
    detail: Option<String>,
}

impl KernelError {
    /// The request that failed, e.g. `netlink create veth nc0/nc1`.
    pub fn op(&self) -> &str {
        &self.op
    }

    /// The positive errno (`libc::EEXIST`, …).
    pub fn errno(&self) -> i32 {
        self.errno
    }

    /// The kernel's extended-ack message, if it sent one.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The bare OS error, `io::Error::from_raw_os_error(errno)`.
    pub fn os_error(&self) -> io::Error {
        io::Error::from_raw_os_error(self.errno)
    }
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.op, self.os_error())?;
        if let Some(d) = &self.detail {
            write!(f, " (kernel: {d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for KernelError {}

/// The errno behind `e`: its raw OS error, or that of a [`KernelError`] inside it.
pub fn errno_of(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<KernelError>())
            .map(KernelError::errno)
    })
}

/// An `io::Error` of `errno`'s kind that says which operation failed.
pub(crate) fn os_error(op: impl Into<String>, errno: i32) -> io::Error {
    kernel_error(op.into(), errno, None)
}

fn kernel_error(op: String, errno: i32, detail: Option<String>) -> io::Error {
    let kind = io::Error::from_raw_os_error(errno).kind();
    io::Error::new(kind, KernelError { op, errno, detail })
}

fn malformed(op: &Op<'_>, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("netlink {op}: malformed reply: {why}"),
    )
}

fn invalid_input(op: &Op<'_>, why: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("netlink {op}: {why}"))
}

/// The request in progress, for error messages (formatted only when something fails).
#[derive(Debug, Clone, Copy)]
enum Op<'a> {
    CreateVeth(&'a str, &'a str),
    LinkIndex(&'a str),
    GetLink(u32),
    ListLinks,
    SetUp(u32),
    SetMtu(u32, u32),
    NoLinkLocal(u32),
    AddAddress(u32, IpAddr, u8),
    AddNeighbour(u32, IpAddr),
    RouteGet(IpAddr),
    AddLocalRoute(u32, Ipv6Addr),
}

impl fmt::Display for Op<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Op::CreateVeth(a, b) => write!(f, "create veth {a}/{b}"),
            Op::LinkIndex(name) => write!(f, "get link {name}"),
            Op::GetLink(i) => write!(f, "get link #{i}"),
            Op::ListLinks => write!(f, "dump links"),
            Op::SetUp(i) => write!(f, "set link #{i} up"),
            Op::SetMtu(i, mtu) => write!(f, "set link #{i} mtu {mtu}"),
            Op::NoLinkLocal(i) => write!(f, "set link #{i} addrgenmode none"),
            Op::AddAddress(i, a, p) => write!(f, "add address {a}/{p} on link #{i}"),
            Op::AddNeighbour(i, a) => write!(f, "add neighbour {a} on link #{i}"),
            Op::RouteGet(a) => write!(f, "route get {a}"),
            Op::AddLocalRoute(i, a) => write!(f, "add local route {a} on link #{i}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Wire structures

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// `NLMSG_ALIGN` / `RTA_ALIGN`: round up to 4 bytes.
fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// `struct nlmsghdr` (include/uapi/linux/netlink.h), 16 bytes; `nlmsg_pid` (at 12) is not needed: only
/// datagrams from the kernel are read, and they are matched by sequence number.
#[derive(Debug, Clone, Copy)]
struct NlMsgHdr {
    len: u32,
    ty: u16,
    flags: u16,
    seq: u32,
}

impl NlMsgHdr {
    fn decode(b: &[u8]) -> Option<NlMsgHdr> {
        if b.len() < NLMSG_HDRLEN {
            return None;
        }
        Some(NlMsgHdr {
            len: u32_at(b, 0)?,
            ty: u16_at(b, 4)?,
            flags: u16_at(b, 6)?,
            seq: u32_at(b, 8)?,
        })
    }
}

/// `struct ifinfomsg` (include/uapi/linux/rtnetlink.h), 16 bytes: `ifi_family u8, __ifi_pad u8, ifi_type u16,
/// ifi_index i32, ifi_flags u32, ifi_change u32`.
#[derive(Debug, Clone, Copy, Default)]
struct IfInfoMsg {
    family: u8,
    ty: u16,
    index: i32,
    flags: u32,
    change: u32,
}

impl IfInfoMsg {
    const LEN: usize = 16;

    /// A header addressing link `index` (0: by name, or a new link).
    fn link(index: u32) -> io::Result<IfInfoMsg> {
        let index = i32::try_from(index).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("ifindex {index} out of range"),
            )
        })?;
        Ok(IfInfoMsg {
            family: libc::AF_UNSPEC as u8,
            index,
            ..IfInfoMsg::default()
        })
    }

    fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.family;
        b[2..4].copy_from_slice(&self.ty.to_ne_bytes());
        b[4..8].copy_from_slice(&self.index.to_ne_bytes());
        b[8..12].copy_from_slice(&self.flags.to_ne_bytes());
        b[12..16].copy_from_slice(&self.change.to_ne_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<IfInfoMsg> {
        Some(IfInfoMsg {
            family: *b.first()?,
            ty: u16_at(b, 2)?,
            index: u32_at(b, 4)? as i32,
            flags: u32_at(b, 8)?,
            change: u32_at(b, 12)?,
        })
    }
}

/// `struct ifaddrmsg` (include/uapi/linux/if_addr.h), 8 bytes: `ifa_family u8, ifa_prefixlen u8, ifa_flags u8,
/// ifa_scope u8, ifa_index u32`.
#[derive(Debug, Clone, Copy)]
struct IfAddrMsg {
    family: u8,
    prefix_len: u8,
    flags: u8,
    scope: u8,
    index: u32,
}

impl IfAddrMsg {
    const LEN: usize = 8;

    fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.family;
        b[1] = self.prefix_len;
        b[2] = self.flags;
        b[3] = self.scope;
        b[4..8].copy_from_slice(&self.index.to_ne_bytes());
        b
    }
}

/// `struct ndmsg` (include/uapi/linux/neighbour.h), 12 bytes: `ndm_family u8, ndm_pad1 u8, ndm_pad2 u16,
/// ndm_ifindex i32, ndm_state u16, ndm_flags u8, ndm_type u8`.
#[derive(Debug, Clone, Copy)]
struct NdMsg {
    family: u8,
    ifindex: i32,
    state: u16,
    flags: u8,
    ty: u8,
}

impl NdMsg {
    const LEN: usize = 12;

    fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.family;
        b[4..8].copy_from_slice(&self.ifindex.to_ne_bytes());
        b[8..10].copy_from_slice(&self.state.to_ne_bytes());
        b[10] = self.flags;
        b[11] = self.ty;
        b
    }
}

/// `struct rtmsg` (include/uapi/linux/rtnetlink.h), 12 bytes: `rtm_family u8, rtm_dst_len u8, rtm_src_len u8,
/// rtm_tos u8, rtm_table u8, rtm_protocol u8, rtm_scope u8, rtm_type u8, rtm_flags u32`. Only the family and
/// destination length are needed for a lookup, and only the type is read from the answer (byte 7).
#[derive(Debug, Clone, Copy)]
struct RtMsg {
    family: u8,
    dst_len: u8,
}

impl RtMsg {
    const LEN: usize = 12;
    const TYPE_OFFSET: usize = 7;

    fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.family;
        b[1] = self.dst_len;
        b
    }
}

/// A request under construction: `nlmsghdr` (length and sequence filled in by [`Request::finish`]), family
/// header, attributes.
struct Request {
    buf: Vec<u8>,
    /// Set when an attribute or the message outgrew its 16/32-bit length field.
    overflow: bool,
}

impl Request {
    fn new(ty: u16, flags: u16, family_header: &[u8]) -> Request {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&[0; 4]); // nlmsg_len, see finish()
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(&[0; 8]); // nlmsg_seq (finish()), nlmsg_pid 0: the kernel fills in ours
        buf.extend_from_slice(family_header);
        let mut r = Request {
            buf,
            overflow: false,
        };
        r.pad();
        r
    }

    fn pad(&mut self) {
        self.buf.resize(align4(self.buf.len()), 0);
    }

    /// Appends an rtattr header with a length to be fixed up, returns its offset.
    fn header(&mut self, ty: u16) -> usize {
        self.pad();
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        at
    }

    /// Writes the rtattr length at `at` (everything from there to the end; padding is not counted).
    fn close(&mut self, at: usize) {
        match u16::try_from(self.buf.len() - at) {
            Ok(len) => self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes()),
            Err(_) => self.overflow = true,
        }
    }

    fn attr(&mut self, ty: u16, payload: &[u8]) {
        let at = self.header(ty);
        self.buf.extend_from_slice(payload);
        self.close(at);
    }

    fn attr_u32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_ne_bytes());
    }

    /// A NUL-terminated string attribute.
    fn attr_str(&mut self, ty: u16, s: &str) {
        let at = self.header(ty);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        self.close(at);
    }

    /// Opens a nested attribute; close it with [`Request::end_nest`]. `nested` sets `NLA_F_NESTED` (for
    /// attributes whose payload is only attributes).
    fn begin_nest(&mut self, ty: u16, nested: bool) -> usize {
        self.header(if nested { ty | NLA_F_NESTED } else { ty })
    }

    fn end_nest(&mut self, at: usize) {
        self.close(at);
        self.pad();
    }

    /// Raw bytes (a family header inside `VETH_INFO_PEER`), padded.
    fn raw(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn finish(mut self, seq: u32) -> Option<Vec<u8>> {
        self.pad();
        let len = u32::try_from(self.buf.len()).ok()?;
        if self.overflow {
            return None;
        }
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        Some(self.buf)
    }
}

/// The rtattrs of `b`: `(type without NLA_F_* bits, payload)`, or `Err` once for a length that does not fit
/// (after which the walk stops). Trailing bytes too short for a header are ignored, as the kernel does.
struct Attrs<'a> {
    rest: &'a [u8],
}

fn attrs(b: &[u8]) -> Attrs<'_> {
    Attrs { rest: b }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<(u16, &'a [u8]), &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        let len = u16_at(self.rest, 0)? as usize;
        let ty = u16_at(self.rest, 2)? & NLA_TYPE_MASK;
        if len < 4 || len > self.rest.len() {
            self.rest = &[];
            return Some(Err("attribute length out of bounds"));
        }
        let payload = &self.rest[4..len];
        self.rest = self.rest.get(align4(len)..).unwrap_or(&[]);
        Some(Ok((ty, payload)))
    }
}

/// A NUL-terminated (or not) string attribute.
fn attr_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Kernel names: 1–15 bytes, no '/', ':', NUL or whitespace, not "." or ".." (`dev_valid_name`, net/core/dev.c).
fn check_ifname(op: &Op<'_>, name: &str) -> io::Result<()> {
    let ok = !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|c| c == b'/' || c == b':' || c == 0 || c.is_ascii_whitespace());
    if ok {
        Ok(())
    } else {
        Err(invalid_input(
            op,
            format_args!("invalid interface name {name:?}"),
        ))
    }
}

/// What RTM_GETLINK tells about an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// ifindex (`ifi_index`).
    pub index: u32,
    /// `IFLA_IFNAME`.
    pub name: String,
    /// `IFLA_MTU`.
    pub mtu: u32,
    /// `ifi_flags`: `IFF_UP`, `IFF_RUNNING`, `IFF_LOWER_UP`, … (include/uapi/linux/if.h).
    pub flags: u32,
    /// `IFLA_ADDRESS` when it is 6 bytes (Ethernet, veth, and `lo`'s all-zero one); zeros otherwise.
    pub mac: [u8; 6],
    /// `IFLA_OPERSTATE`: [`IF_OPER_UP`], [`IF_OPER_DOWN`], [`IF_OPER_LOWERLAYERDOWN`], 0 = unknown (`lo`).
    pub operstate: u8,
}

impl LinkInfo {
    /// Parses the payload of an RTM_NEWLINK message (`ifinfomsg` + attributes).
    fn parse(payload: &[u8]) -> Result<LinkInfo, &'static str> {
        let hdr = IfInfoMsg::decode(payload).ok_or("short ifinfomsg")?;
        let index = u32::try_from(hdr.index).map_err(|_| "negative ifindex")?;
        let mut info = LinkInfo {
            index,
            name: String::new(),
            mtu: 0,
            flags: hdr.flags,
            mac: [0; 6],
            operstate: 0,
        };
        for a in attrs(&payload[IfInfoMsg::LEN..]) {
            let (ty, data) = a?;
            match ty {
                IFLA_IFNAME => info.name = attr_string(data),
                IFLA_MTU => info.mtu = u32_at(data, 0).ok_or("short IFLA_MTU")?,
                IFLA_ADDRESS => {
                    if let Ok(mac) = <[u8; 6]>::try_from(data) {
                        info.mac = mac;
                    }
                }
                IFLA_OPERSTATE => info.operstate = *data.first().ok_or("short IFLA_OPERSTATE")?,
                _ => {}
            }
        }
        if info.name.is_empty() {
            return Err("link without IFLA_IFNAME");
        }
        Ok(info)
    }
}

/// How an `NLMSG_ERROR` or `NLMSG_DONE` ends a request.
fn status(op: &Op<'_>, hdr: &NlMsgHdr, payload: &[u8]) -> io::Result<()> {
    if hdr.ty == NLMSG_DONE && payload.is_empty() {
        return Ok(()); // very old kernels end a dump without the `int` error
    }
    let code = u32_at(payload, 0).ok_or_else(|| malformed(op, "short error message"))? as i32;
    if code == 0 {
        return Ok(());
    }
    let errno = code.checked_neg().filter(|e| *e > 0).unwrap_or(libc::EIO);
    // Extended ack: the TLVs follow `int error` and the echoed request (its header only when capped).
    let mut detail = None;
    if hdr.ty == NLMSG_ERROR && hdr.flags & NLM_F_ACK_TLVS != 0 {
        let echoed = if hdr.flags & NLM_F_CAPPED != 0 {
            Some(NLMSG_HDRLEN)
        } else {
            u32_at(payload, 4).map(|l| align4(l as usize))
        };
        let tlvs = echoed
            .and_then(|e| payload.get(e.checked_add(4)?..))
            .unwrap_or(&[]);
        detail = attrs(tlvs)
            .map_while(Result::ok)
            .find(|(ty, _)| *ty == NLMSGERR_ATTR_MSG)
            .map(|(_, d)| attr_string(d));
    }
    Err(kernel_error(format!("netlink {op}"), errno, detail))
}

// ---------------------------------------------------------------------------------------------------------
// The client

/// An rtnetlink (`NETLINK_ROUTE`) socket in the network namespace of the thread that opened it.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens a `NETLINK_ROUTE` socket (close-on-exec) in the calling thread's current network namespace.
    pub fn open() -> io::Result<Netlink> {
        // SAFETY: plain socket(2) call.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            let errno = io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            return Err(os_error(
                "netlink: socket(AF_NETLINK, NETLINK_ROUTE)",
                errno,
            ));
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Extended acks give the kernel's error text; a kernel without them (< 4.12) still works.
        let _ = setsockopt_int(&fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
        let _ = setsockopt_int(&fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
        let tv = libc::timeval {
            tv_sec: REPLY_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: REPLY_TIMEOUT.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: `tv` is a valid timeval of the size given.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            let errno = io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            return Err(os_error("netlink: setsockopt(SO_RCVTIMEO)", errno));
        }
        Ok(Netlink {
            fd,
            seq: 0,
            buf: vec![0; RECV_BUF],
        })
    }

    /// Creates a veth pair: `name` in this socket's namespace, and `peer_name` directly in the namespace of
    /// `peer_netns_fd` (see [`crate::lab::nsfd::NetNs::as_raw_fd`]). Both ends start down. Fails with
    /// `EEXIST` if either name is taken in its namespace.
    pub fn create_veth(
        &mut self,
        name: &str,
        peer_name: &str,
        peer_netns_fd: RawFd,
    ) -> io::Result<()> {
        let op = Op::CreateVeth(name, peer_name);
        check_ifname(&op, name)?;
        check_ifname(&op, peer_name)?;
        let ns_fd = u32::try_from(peer_netns_fd)
            .map_err(|_| invalid_input(&op, format_args!("bad namespace fd {peer_netns_fd}")))?;
        let mut req = Request::new(
            RTM_NEWLINK,
            NLM_F_CREATE | NLM_F_EXCL,
            &IfInfoMsg::default().encode(),
        );
        req.attr_str(IFLA_IFNAME, name);
        let linkinfo = req.begin_nest(IFLA_LINKINFO, true);
        req.attr_str(IFLA_INFO_KIND, "veth");
        let data = req.begin_nest(IFLA_INFO_DATA, true);
        let peer = req.begin_nest(VETH_INFO_PEER, false);
        req.raw(&IfInfoMsg::default().encode());
        req.attr_str(IFLA_IFNAME, peer_name);
        req.attr_u32(IFLA_NET_NS_FD, ns_fd);
        req.end_nest(peer);
        req.end_nest(data);
        req.end_nest(linkinfo);
        self.execute(req, &op, |_, _| Ok(()))
    }

    /// The index of interface `name` (RTM_GETLINK by name). `NotFound` (ENODEV) if there is none.
    pub fn link_index(&mut self, name: &str) -> io::Result<u32> {
        let op = Op::LinkIndex(name);
        check_ifname(&op, name)?;
        let mut req = Request::new(RTM_GETLINK, 0, &IfInfoMsg::default().encode());
        req.attr_str(IFLA_IFNAME, name);
        req.attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
        Ok(self.one_link(req, &op)?.index)
    }

    /// Reads interface `ifindex` (RTM_GETLINK by index). After both ends of a veth are set up, one such read
    /// per end makes the kernel finish its deferred carrier-up work before answering.
    pub fn get_link(&mut self, ifindex: u32) -> io::Result<LinkInfo> {
        let op = Op::GetLink(ifindex);
        let hdr = IfInfoMsg::link(ifindex).map_err(|e| invalid_input(&op, e))?;
        let mut req = Request::new(RTM_GETLINK, 0, &hdr.encode());
        req.attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
        self.one_link(req, &op)
    }

    /// Every interface of this namespace (an RTM_GETLINK dump, possibly in several datagrams).
    pub fn list_links(&mut self) -> io::Result<Vec<LinkInfo>> {
        let op = Op::ListLinks;
        let mut req = Request::new(RTM_GETLINK, NLM_F_DUMP, &IfInfoMsg::default().encode());
        req.attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
        let mut links = Vec::new();
        self.execute(req, &op, |ty, payload| {
            if ty == RTM_NEWLINK {
                links.push(LinkInfo::parse(payload)?);
            }
            Ok(())
        })?;
        Ok(links)
    }

    /// Sets interface `ifindex` up (`IFF_UP`); works for `lo` ([`LOOPBACK_IFINDEX`]) too.
    pub fn set_link_up(&mut self, ifindex: u32) -> io::Result<()> {
        self.set_link_up_with(ifindex, 0)
    }

    /// Sets interface `ifindex` up with the flags `extra` (e.g. [`IFF_NOARP`]) set in the same request.
    pub fn set_link_up_with(&mut self, ifindex: u32, extra: u32) -> io::Result<()> {
        let op = Op::SetUp(ifindex);
        let mut hdr = IfInfoMsg::link(ifindex).map_err(|e| invalid_input(&op, e))?;
        hdr.flags = IFF_UP | extra;
        hdr.change = IFF_UP | extra;
        let req = Request::new(RTM_NEWLINK, 0, &hdr.encode());
        self.execute(req, &op, |_, _| Ok(()))
    }

    /// Sets the MTU of interface `ifindex` (`IFLA_MTU`).
    pub fn set_mtu(&mut self, ifindex: u32, mtu: u32) -> io::Result<()> {
        let op = Op::SetMtu(ifindex, mtu);
        let hdr = IfInfoMsg::link(ifindex).map_err(|e| invalid_input(&op, e))?;
        let mut req = Request::new(RTM_NEWLINK, 0, &hdr.encode());
        req.attr_u32(IFLA_MTU, mtu);
        self.execute(req, &op, |_, _| Ok(()))
    }

    /// Sets the link's IPv6 address generation mode to "none" (no link-local address when it goes up), like
    /// `ip link set dev X addrgenmode none`. Done per link over rtnetlink rather than by writing
    /// `net.ipv6.conf.default.addr_gen_mode`: that sysctl's handler takes the RTNL with `rtnl_trylock()` and
    /// restarts the write while another namespace holds it, a busy loop that burned most of a loaded run's CPU.
    pub fn set_no_link_local(&mut self, ifindex: u32) -> io::Result<()> {
        let op = Op::NoLinkLocal(ifindex);
        let hdr = IfInfoMsg::link(ifindex).map_err(|e| invalid_input(&op, e))?;
        let mut req = Request::new(RTM_NEWLINK, 0, &hdr.encode());
        let af_spec = req.begin_nest(IFLA_AF_SPEC, true);
        let inet6 = req.begin_nest(libc::AF_INET6 as u16, true);
        req.attr(IFLA_INET6_ADDR_GEN_MODE, &[IN6_ADDR_GEN_MODE_NONE]);
        req.end_nest(inet6);
        req.end_nest(af_spec);
        self.execute(req, &op, |_, _| Ok(()))
    }

    /// Adds `addr/prefix_len` to interface `ifindex` (RTM_NEWADDR, `EEXIST` if present). IPv6 addresses get
    /// `IFA_F_NODAD`, so they are not tentative: no duplicate address detection delay.
    pub fn add_address(&mut self, ifindex: u32, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
        let op = Op::AddAddress(ifindex, addr, prefix_len);
        let (family, bytes, max_prefix, flags): (i32, Vec<u8>, u8, u32) = match addr {
            IpAddr::V4(a) => (libc::AF_INET, a.octets().to_vec(), 32, 0),
            IpAddr::V6(a) => (libc::AF_INET6, a.octets().to_vec(), 128, IFA_F_NODAD),
        };
        if prefix_len > max_prefix {
            return Err(invalid_input(&op, "prefix length too long"));
        }
        let hdr = IfAddrMsg {
            family: family as u8,
            prefix_len,
            flags: flags as u8,
            scope: libc::RT_SCOPE_UNIVERSE,
            index: ifindex,
        };
        let mut req = Request::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &hdr.encode());
        req.attr(IFA_LOCAL, &bytes);
        req.attr(IFA_ADDRESS, &bytes);
        if flags != 0 {
            req.attr_u32(IFA_FLAGS, flags);
        }
        self.execute(req, &op, |_, _| Ok(()))
    }

    /// Installs a permanent neighbour entry `ip → mac` on interface `ifindex` (RTM_NEWNEIGH, `NUD_PERMANENT`),
    /// so no ARP or neighbour discovery is needed for `ip`. An existing entry for `ip` is replaced.
    pub fn add_neighbour(&mut self, ifindex: u32, ip: IpAddr, mac: [u8; 6]) -> io::Result<()> {
        let op = Op::AddNeighbour(ifindex, ip);
        let (family, bytes) = match ip {
            IpAddr::V4(a) => (libc::AF_INET, a.octets().to_vec()),
            IpAddr::V6(a) => (libc::AF_INET6, a.octets().to_vec()),
        };
        let ifindex =
            i32::try_from(ifindex).map_err(|_| invalid_input(&op, "ifindex out of range"))?;
        let hdr = NdMsg {
            family: family as u8,
            ifindex,
            state: NUD_PERMANENT,
            flags: 0,
            ty: 0,
        };
        let mut req = Request::new(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, &hdr.encode());
        req.attr(NDA_DST, &bytes);
        req.attr(NDA_LLADDR, &mac);
        self.execute(req, &op, |_, _| Ok(()))
    }

    /// Installs a local route for IPv6 address `addr` of interface `ifindex` (table local, `RTN_LOCAL`,
    /// protocol kernel, on the interface — the route the kernel installs for an address), so that packets to
    /// the address are delivered at once. The kernel installs its own only from addrconf's deferred DAD
    /// work, even for an `IFA_F_NODAD` address ([`Netlink::address_is_local`]); that work runs on one ordered
    /// workqueue for the whole machine, which under load took more than 10 s (a lab setup error in a stress
    /// run). Ours gets metric 1024 (the kernel reads a zero metric from user space as its default); the
    /// kernel's, metric 0, joins it when the deferred work runs (`ip -6 route show table local` lists both),
    /// and either delivers to this host. Returns `Ok` if the route already exists.
    pub fn add_ipv6_local_route(&mut self, ifindex: u32, addr: Ipv6Addr) -> io::Result<()> {
        let op = Op::AddLocalRoute(ifindex, addr);
        let mut hdr = RtMsg {
            family: libc::AF_INET6 as u8,
            dst_len: 128,
        }
        .encode();
        hdr[4] = RT_TABLE_LOCAL;
        hdr[5] = RTPROT_KERNEL;
        hdr[6] = libc::RT_SCOPE_UNIVERSE;
        hdr[RtMsg::TYPE_OFFSET] = RTN_LOCAL;
        let mut req = Request::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &hdr);
        req.attr(RTA_DST, &addr.octets());
        req.attr_u32(RTA_OIF, ifindex);
        match self.execute(req, &op, |_, _| Ok(())) {
            Err(e) if errno_of(&e) == Some(libc::EEXIST) => Ok(()),
            r => r,
        }
    }

    /// Whether `addr` is a local address *with its local route*, i.e. whether packets to it are delivered
    /// to this host (a route lookup, `ip route get`, answering `RTN_LOCAL`).
    ///
    /// An IPv6 address is listed as soon as RTM_NEWADDR is acknowledged, even with `IFA_F_NODAD`, but its
    /// local route is inserted later by addrconf's deferred DAD work (`addrconf_dad_work`, always queued):
    /// until then packets to it are dropped. IPv4 local routes are installed synchronously.
    pub fn address_is_local(&mut self, addr: IpAddr) -> io::Result<bool> {
        let op = Op::RouteGet(addr);
        let (family, bytes, dst_len) = match addr {
            IpAddr::V4(a) => (libc::AF_INET, a.octets().to_vec(), 32),
            IpAddr::V6(a) => (libc::AF_INET6, a.octets().to_vec(), 128),
        };
        let hdr = RtMsg {
            family: family as u8,
            dst_len,
        };
        let mut req = Request::new(RTM_GETROUTE, 0, &hdr.encode());
        req.attr(RTA_DST, &bytes);
        let mut ty = None;
        let r = self.execute(req, &op, |msg, payload| {
            if msg == RTM_NEWROUTE {
                ty = Some(*payload.get(RtMsg::TYPE_OFFSET).ok_or("short rtmsg")?);
            }
            Ok(())
        });
        match r {
            Ok(()) => {
                Ok(ty.ok_or_else(|| malformed(&op, "acknowledged without a route"))? == RTN_LOCAL)
            }
            // No route at all (e.g. no address of that family yet).
            Err(e) if errno_of(&e) == Some(libc::ENETUNREACH) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until [`Netlink::address_is_local`] holds for `addr`, polling every 50 µs; `TimedOut` after
    /// `timeout`. Returns how long it waited.
    pub fn wait_address_local(&mut self, addr: IpAddr, timeout: Duration) -> io::Result<Duration> {
        let start = std::time::Instant::now();
        loop {
            if self.address_is_local(addr)? {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("netlink: address {addr} not local after {timeout:?}"),
                ));
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// A GET that answers with exactly one RTM_NEWLINK.
    fn one_link(&mut self, req: Request, op: &Op<'_>) -> io::Result<LinkInfo> {
        let mut found = None;
        self.execute(req, op, |ty, payload| {
            if ty == RTM_NEWLINK {
                found = Some(LinkInfo::parse(payload)?);
            }
            Ok(())
        })?;
        found.ok_or_else(|| malformed(op, "acknowledged without a link"))
    }

    /// Sends `req` and reads replies until its acknowledgement or end of dump, handing each data message
    /// (type, payload after nlmsghdr) to `on_msg`. An `Err` from `on_msg` names what was malformed.
    fn execute(
        &mut self,
        req: Request,
        op: &Op<'_>,
        mut on_msg: impl FnMut(u16, &[u8]) -> Result<(), &'static str>,
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let msg = req
            .finish(seq)
            .ok_or_else(|| invalid_input(op, "request too large"))?;
        self.send(&msg, op)?;
        loop {
            let n = self.recv(op)?;
            let mut rest = &self.buf[..n];
            while !rest.is_empty() {
                let hdr = NlMsgHdr::decode(rest).ok_or_else(|| malformed(op, "short nlmsghdr"))?;
                let len = hdr.len as usize;
                if len < NLMSG_HDRLEN || len > rest.len() {
                    return Err(malformed(op, "nlmsg_len out of bounds"));
                }
                let payload = &rest[NLMSG_HDRLEN..len];
                rest = rest.get(align4(len)..).unwrap_or(&[]);
                if hdr.seq != seq {
                    continue; // a stale reply to an earlier request
                }
                match hdr.ty {
                    NLMSG_NOOP => {}
                    NLMSG_ERROR | NLMSG_DONE => return status(op, &hdr, payload),
                    NLMSG_OVERRUN => return Err(malformed(op, "NLMSG_OVERRUN")),
                    ty => on_msg(ty, payload).map_err(|why| malformed(op, why))?,
                }
            }
        }
    }

    fn send(&self, msg: &[u8], op: &Op<'_>) -> io::Result<()> {
        // SAFETY: sockaddr_nl is plain data; all zeros but the family addresses the kernel (nl_pid 0).
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        loop {
            // SAFETY: `msg` and `kernel` are valid for the lengths given.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    msg.as_ptr().cast(),
                    msg.len(),
                    0,
                    (&kernel as *const libc::sockaddr_nl).cast(),
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if n >= 0 {
                return Ok(());
            }
            let errno = io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            if errno != libc::EINTR {
                return Err(os_error(format!("netlink {op}: send"), errno));
            }
        }
    }

    /// Reads one datagram from the kernel into `self.buf`, returns its length.
    fn recv(&mut self, op: &Op<'_>) -> io::Result<usize> {
        loop {
            // SAFETY: sockaddr_nl is plain data.
            let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            let mut from_len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            // SAFETY: `buf` and `from` are valid for the lengths given. MSG_TRUNC makes the kernel return
            // the datagram's real length even if it did not fit.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_TRUNC,
                    (&mut from as *mut libc::sockaddr_nl).cast(),
                    &mut from_len,
                )
            };
            if n < 0 {
                let errno = io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO);
                match errno {
                    libc::EINTR => continue,
                    libc::EAGAIN => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("netlink {op}: no reply within {REPLY_TIMEOUT:?}"),
                        ))
                    }
                    _ => return Err(os_error(format!("netlink {op}: receive"), errno)),
                }
            }
            let n = n as usize;
            if n > self.buf.len() {
                return Err(malformed(op, "datagram larger than the receive buffer"));
            }
            if from.nl_pid != 0 {
                continue; // not from the kernel
            }
            return Ok(n);
        }
    }
}

fn setsockopt_int(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `v` is a valid int of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Tests run as root, and only in fresh anonymous namespaces: each [`tests::Host`] is a thread of its own
/// that first moves into a new namespace; the test thread itself never changes namespace or creates a socket.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::lab::ethtool::{disable_offloads, get_offloads};
    use crate::lab::nsfd::{socket_netns_inode, NetNs};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
    use std::sync::mpsc;
    use std::thread::JoinHandle;
    use std::time::Instant;

    type Job = Box<dyn FnOnce() + Send>;

    /// A thread in a new anonymous network namespace that runs closures for the test.
    pub(crate) struct Host {
        ns: NetNs,
        jobs: Option<mpsc::Sender<Job>>,
        thread: Option<JoinHandle<()>>,
    }

    impl Host {
        pub(crate) fn spawn() -> Host {
            Host::spawn_async().wait()
        }

        /// Starts the thread; [`Spawning::wait`] returns once it is in its namespace.
        fn spawn_async() -> Spawning {
            let (jobs, rx) = mpsc::channel::<Job>();
            let (ns_tx, ns_rx) = mpsc::channel();
            let thread = std::thread::spawn(move || {
                let ns = NetNs::new_on_this_thread();
                let failed = ns.is_err();
                let _ = ns_tx.send(ns);
                if !failed {
                    for job in rx {
                        job();
                    }
                }
            });
            Spawning {
                jobs,
                ns_rx,
                thread,
            }
        }

        pub(crate) fn ns(&self) -> &NetNs {
            &self.ns
        }

        /// Runs `f` on the host thread, in its namespace, and waits for the result.
        pub(crate) fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
            self.submit(f).recv().expect("host thread died")
        }

        /// Starts `f` on the host thread; the result arrives on the returned channel.
        pub(crate) fn submit<R: Send + 'static>(
            &self,
            f: impl FnOnce() -> R + Send + 'static,
        ) -> mpsc::Receiver<R> {
            let (tx, rx) = mpsc::channel();
            let job: Job = Box::new(move || {
                let _ = tx.send(f());
            });
            self.jobs
                .as_ref()
                .unwrap()
                .send(job)
                .expect("host thread died");
            rx
        }
    }

    impl Drop for Host {
        fn drop(&mut self) {
            drop(self.jobs.take());
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    struct Spawning {
        jobs: mpsc::Sender<Job>,
        ns_rx: mpsc::Receiver<io::Result<NetNs>>,
        thread: JoinHandle<()>,
    }

    impl Spawning {
        fn wait(self) -> Host {
            let ns = self
                .ns_rx
                .recv()
                .expect("host thread died")
                .expect("unshare(CLONE_NEWNET) (tests must run as root)");
            Host {
                ns,
                jobs: Some(self.jobs),
                thread: Some(self.thread),
            }
        }
    }

    const A4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const B4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

    /// Two hosts joined by veth `nc0` (in a) / `nc1` (in b), configured as in the lab.
    struct Lab {
        a: Host,
        b: Host,
        a_if: u32,
        b_if: u32,
    }

    /// When [`build_lab`] turns the offloads off, relative to setting the link up.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum OffloadsOff {
        BeforeUp,
        AfterUp,
    }

    /// One end: lo up, veth end up, two addresses, offloads off. Runs on the host thread.
    fn configure_end(
        ifname: &'static str,
        v4: Ipv4Addr,
        v6: Ipv6Addr,
        order: OffloadsOff,
    ) -> io::Result<u32> {
        let mut nl = Netlink::open()?;
        nl.set_link_up(LOOPBACK_IFINDEX)?;
        let ifindex = nl.link_index(ifname)?;
        if order == OffloadsOff::BeforeUp {
            disable_offloads(ifname)?;
        }
        nl.set_link_up(ifindex)?;
        nl.add_address(ifindex, v4.into(), 24)?;
        nl.add_address(ifindex, v6.into(), 64)?;
        if order == OffloadsOff::AfterUp {
            disable_offloads(ifname)?;
        }
        Ok(ifindex)
    }

    /// Phase timings of one [`build_lab`].
    #[derive(Debug, Default, Clone, Copy)]
    struct Phases {
        namespaces: Duration,
        veth: Duration,
        configure: Duration,
        carrier: Duration,
        /// Waiting for the IPv6 local routes (not part of the setup proper).
        ipv6_local: Duration,
        /// Whether an IPv6 address was not yet local when the setup was done.
        ipv6_late: bool,
    }

    fn build_lab(order: OffloadsOff) -> io::Result<(Lab, Phases)> {
        let t0 = Instant::now();
        let (b, a) = (Host::spawn_async(), Host::spawn_async());
        let (b, a) = (b.wait(), a.wait());
        let t1 = Instant::now();
        let b_ns = b.ns().try_clone()?;
        a.run(move || Netlink::open()?.create_veth("nc0", "nc1", b_ns.as_raw_fd()))?;
        let t2 = Instant::now();
        let b_if = b.submit(move || configure_end("nc1", B4, B6, order));
        let a_if = a.run(move || configure_end("nc0", A4, A6, order))?;
        let b_if = b_if.recv().expect("host b died")?;
        let t3 = Instant::now();
        // Both ends are up: one RTM_GETLINK per end completes the deferred carrier-up.
        let b_link = b.submit(move || Netlink::open()?.get_link(b_if));
        let a_link = a.run(move || Netlink::open()?.get_link(a_if))?;
        let b_link = b_link.recv().expect("host b died")?;
        let t4 = Instant::now();
        // IPv6 local routes come from deferred addrconf work: wait for them before traffic.
        let wait6 = |v6: Ipv6Addr| {
            move || -> io::Result<bool> {
                let mut nl = Netlink::open()?;
                let late = !nl.address_is_local(v6.into())?;
                nl.wait_address_local(v6.into(), Duration::from_secs(2))?;
                Ok(late)
            }
        };
        let b_late = b.submit(wait6(B6));
        let a_late = a.run(wait6(A6))?;
        let b_late = b_late.recv().expect("host b died")?;
        let t5 = Instant::now();
        for l in [&a_link, &b_link] {
            assert_eq!(l.operstate, IF_OPER_UP, "{l:?}");
            assert_eq!(
                l.flags & (IFF_UP | IFF_RUNNING | IFF_LOWER_UP),
                IFF_UP | IFF_RUNNING | IFF_LOWER_UP,
                "{l:?}"
            );
        }
        let phases = Phases {
            namespaces: t1 - t0,
            veth: t2 - t1,
            configure: t3 - t2,
            carrier: t4 - t3,
            ipv6_local: t5 - t4,
            ipv6_late: a_late || b_late,
        };
        Ok((Lab { a, b, a_if, b_if }, phases))
    }

    /// Connects from a to `dst` (listening in b); returns how long the handshake took.
    fn connect_from_a(lab: &Lab, dst: SocketAddr, timeout: Duration) -> io::Result<Duration> {
        let a_inode = lab.a.ns().inode();
        lab.a.run(move || {
            let t = Instant::now();
            let s = TcpStream::connect_timeout(&dst, timeout)?;
            let took = t.elapsed();
            use std::os::fd::AsRawFd as _;
            assert_eq!(
                socket_netns_inode(s.as_raw_fd())?,
                a_inode,
                "client socket is in a"
            );
            Ok(took)
        })
    }

    fn listeners_in_b(lab: &Lab) -> io::Result<(TcpListener, TcpListener)> {
        lab.b
            .run(|| Ok((TcpListener::bind((B4, 0))?, TcpListener::bind((B6, 0))?)))
    }

    #[test]
    fn veth_lab_end_to_end() {
        let (lab, phases) = build_lab(OffloadsOff::AfterUp).unwrap();
        eprintln!("setup: {phases:?}");

        // Each end is in its own namespace, with lo up and the expected addresses' interfaces.
        let la = lab.a.run(|| Netlink::open()?.list_links()).unwrap();
        let lb = lab.b.run(|| Netlink::open()?.list_links()).unwrap();
        let names = |l: &[LinkInfo]| l.iter().map(|l| l.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&la), ["lo", "nc0"]);
        assert_eq!(names(&lb), ["lo", "nc1"]);
        for l in [&la[0], &lb[0]] {
            assert_eq!(
                (l.index, l.flags & IFF_UP),
                (LOOPBACK_IFINDEX, IFF_UP),
                "{l:?}"
            );
        }
        assert_eq!(la[1].index, lab.a_if);
        assert_eq!(lb[1].index, lab.b_if);
        assert_ne!(la[1].mac, [0; 6]);
        assert_ne!(la[1].mac, lb[1].mac);
        assert_eq!((la[1].mtu, lb[1].mtu), (1500, 1500));

        // Offloads are off at both ends.
        for (host, ifname) in [(&lab.a, "nc0"), (&lab.b, "nc1")] {
            let o = host.run(move || get_offloads(ifname)).unwrap();
            assert!(o.enabled().is_empty(), "{ifname}: {o:?}");
        }

        // TCP from a to b over IPv4 and IPv6, servers created on b's thread.
        let (l4, l6) = listeners_in_b(&lab).unwrap();
        for (listener, client) in [(&l4, IpAddr::from(A4)), (&l6, IpAddr::from(A6))] {
            let dst = listener.local_addr().unwrap();
            let took = connect_from_a(&lab, dst, Duration::from_millis(100))
                .unwrap_or_else(|e| panic!("connect to {dst}: {e}"));
            eprintln!("connect to {dst}: {took:?}");
            assert!(took < Duration::from_millis(100));
            let (_conn, peer) = listener.accept().unwrap();
            assert_eq!(peer.ip(), client);
        }
    }

    #[test]
    fn errors_name_the_request_and_keep_the_errno() {
        let a = Host::spawn();
        let b = Host::spawn();
        let (b_ns, b_ns2) = (b.ns().try_clone().unwrap(), b.ns().try_clone().unwrap());
        let e = a
            .run(move || -> io::Result<()> {
                let mut nl = Netlink::open()?;
                nl.create_veth("nc0", "nc1", b_ns.as_raw_fd())?;
                nl.create_veth("nc0", "nc2", b_ns.as_raw_fd())
            })
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert_eq!(errno_of(&e), Some(libc::EEXIST), "{e}");
        assert!(
            e.to_string().contains("netlink create veth nc0/nc2 failed"),
            "{e}"
        );
        let k = e.get_ref().unwrap().downcast_ref::<KernelError>().unwrap();
        assert_eq!(k.os_error().raw_os_error(), Some(libc::EEXIST));

        // The peer's name is taken in b.
        let e = a
            .run(move || Netlink::open()?.create_veth("nc3", "nc1", b_ns2.as_raw_fd()))
            .unwrap_err();
        assert_eq!(errno_of(&e), Some(libc::EEXIST), "{e}");
        assert!(e.to_string().contains("create veth nc3/nc1"), "{e}");

        a.run(|| {
            let mut nl = Netlink::open().unwrap();
            let e = nl.link_index("nosuch0").unwrap_err();
            assert_eq!(errno_of(&e), Some(libc::ENODEV), "{e}");
            assert!(e.to_string().contains("get link nosuch0"), "{e}");
            let e = nl.get_link(4242).unwrap_err();
            assert_eq!(errno_of(&e), Some(libc::ENODEV), "{e}");
            assert!(e.to_string().contains("get link #4242"), "{e}");
            // The kernel explains this one through an extended ack.
            let i = nl.link_index("nc0").unwrap();
            let e = nl.set_mtu(i, 1 << 20).unwrap_err();
            assert_eq!(errno_of(&e), Some(libc::EINVAL), "{e}");
            let k = e.get_ref().unwrap().downcast_ref::<KernelError>().unwrap();
            assert!(k.detail().is_some(), "{e}");
            eprintln!("{e}");
            // Checked before anything is sent.
            let e = nl.create_veth("a/b", "x", 0).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
            let e = nl.create_veth("x", "0123456789abcdef", 0).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
            let e = nl.add_address(i, A4.into(), 33).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
            let e = nl
                .add_address(i, A4.into(), 24)
                .and(nl.add_address(i, A4.into(), 24));
            assert_eq!(errno_of(&e.unwrap_err()), Some(libc::EEXIST));
            // The socket is still usable after errors.
            assert_eq!(nl.get_link(i).unwrap().name, "nc0");
        });
    }

    #[test]
    fn mtu_neighbours_and_dump() {
        let a = Host::spawn();
        let b = Host::spawn();
        let b_ns = b.ns().try_clone().unwrap();
        a.run(move || {
            let mut nl = Netlink::open().unwrap();
            nl.create_veth("nc0", "nc1", b_ns.as_raw_fd()).unwrap();
            let i = nl.link_index("nc0").unwrap();
            nl.set_mtu(i, 1280).unwrap();
            let l = nl.get_link(i).unwrap();
            assert_eq!(
                (l.mtu, l.flags & IFF_UP, l.operstate),
                (1280, 0, IF_OPER_DOWN)
            );
            nl.set_link_up(i).unwrap();
            // Peer still down: up, but no carrier.
            let l = nl.get_link(i).unwrap();
            assert_eq!(
                (l.flags & (IFF_UP | IFF_LOWER_UP), l.operstate),
                (IFF_UP, IF_OPER_DOWN)
            );
            let mac = [0x02, 0, 0, 0, 0, 2];
            nl.add_neighbour(i, B4.into(), mac).unwrap();
            nl.add_neighbour(i, B6.into(), mac).unwrap();
            // Replaced, not an error.
            nl.add_neighbour(i, B4.into(), [0x02, 0, 0, 0, 0, 3])
                .unwrap();
            assert!(!nl.address_is_local(A4.into()).unwrap(), "no address yet");
            nl.add_address(i, A4.into(), 24).unwrap();
            assert!(nl.address_is_local(A4.into()).unwrap(), "IPv4: synchronous");
            assert!(!nl.address_is_local(B4.into()).unwrap());
            // IPv6: local at once with our own local route (the kernel's comes from deferred work).
            nl.add_address(i, A6.into(), 64).unwrap();
            nl.add_ipv6_local_route(i, A6).unwrap();
            assert!(
                nl.address_is_local(A6.into()).unwrap(),
                "IPv6 with its route"
            );
            nl.add_ipv6_local_route(i, A6).unwrap(); // present: not an error
            let neigh = std::fs::read_to_string("/proc/thread-self/net/arp").unwrap();
            assert!(
                neigh.contains("198.18.0.2") && neigh.contains("02:00:00:00:00:03"),
                "{neigh}"
            );
            // Many links: the dump spans several datagrams.
            for n in 0..60 {
                nl.create_veth(&format!("m{n}"), &format!("p{n}"), b_ns.as_raw_fd())
                    .unwrap();
            }
            let links = nl.list_links().unwrap();
            assert_eq!(links.len(), 62);
            assert!(links.iter().any(|l| l.name == "m59"));
        });
    }

    // -- replies that are short or malformed never panic ---------------------------------------------

    #[test]
    fn attribute_walk_stops_on_bad_lengths() {
        let mut b = Vec::new();
        b.extend_from_slice(&7u16.to_ne_bytes());
        b.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
        b.extend_from_slice(b"lo\0\0");
        b.extend_from_slice(&200u16.to_ne_bytes()); // runs past the end
        b.extend_from_slice(&4u16.to_ne_bytes());
        let all: Vec<_> = attrs(&b).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], Ok((IFLA_IFNAME, &b"lo\0"[..])));
        assert!(all[1].is_err());
        // Zero length would loop forever if accepted.
        assert!(attrs(&[0, 0, 1, 0, 0, 0, 0, 0]).next().unwrap().is_err());
        assert!(attrs(&[1, 2, 3]).next().is_none());
    }

    #[test]
    fn malformed_links_are_errors() {
        assert!(LinkInfo::parse(&[]).is_err());
        assert!(LinkInfo::parse(&[0; 15]).is_err());
        assert!(LinkInfo::parse(&[0; 16]).is_err(), "no name");
        let mut m = IfInfoMsg::link(7).unwrap().encode().to_vec();
        m.extend_from_slice(&[8, 0, IFLA_IFNAME as u8, 0, b'x', 0, 0, 0]);
        m.extend_from_slice(&[6, 0, IFLA_MTU as u8, 0, 1, 2, 0, 0]); // 2-byte MTU
        assert_eq!(LinkInfo::parse(&m), Err("short IFLA_MTU"));
        let mut m = IfInfoMsg::link(7).unwrap().encode().to_vec();
        m.extend_from_slice(&[8, 0, IFLA_IFNAME as u8, 0, b'x', 0, 0, 0]);
        m.extend_from_slice(&[4, 0, IFLA_OPERSTATE as u8, 0]);
        assert_eq!(LinkInfo::parse(&m), Err("short IFLA_OPERSTATE"));
        let mut m = IfInfoMsg::link(7).unwrap().encode().to_vec();
        m.extend_from_slice(&[8, 0, IFLA_IFNAME as u8, 0, b'x', 0, 0, 0]);
        let l = LinkInfo::parse(&m).unwrap();
        assert_eq!((l.index, l.name.as_str()), (7, "x"));
    }

    #[test]
    fn error_messages_are_checked() {
        let op = Op::ListLinks;
        let hdr = |flags| NlMsgHdr {
            len: 0,
            ty: NLMSG_ERROR,
            flags,
            seq: 1,
        };
        assert_eq!(
            status(&op, &hdr(0), &[]).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert!(status(&op, &hdr(0), &0i32.to_ne_bytes()).is_ok());
        let e = status(&op, &hdr(0), &(-libc::EPERM).to_ne_bytes()).unwrap_err();
        assert_eq!(errno_of(&e), Some(libc::EPERM));
        // A positive "error" is nonsense; it still fails.
        assert!(status(&op, &hdr(0), &5i32.to_ne_bytes()).is_err());
        // Extended ack with a capped echo, and with a truncated one.
        let mut p = (-libc::EINVAL).to_ne_bytes().to_vec();
        p.extend_from_slice(&[0; 16]);
        p.extend_from_slice(&[8, 0, NLMSGERR_ATTR_MSG as u8, 0, b'b', b'a', b'd', 0]);
        let e = status(&op, &hdr(NLM_F_ACK_TLVS | NLM_F_CAPPED), &p).unwrap_err();
        assert!(e.to_string().ends_with("(kernel: bad)"), "{e}");
        let e = status(&op, &hdr(NLM_F_ACK_TLVS), &p[..10]).unwrap_err();
        assert_eq!(errno_of(&e), Some(libc::EINVAL));
    }

    /// Random bytes through every parser: errors, never panics.
    #[test]
    fn garbage_never_panics() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len > 4 && next() % 2 == 0 {
                b[16.min(len - 1)] = (next() % 24) as u8; // plausible small lengths
            }
            let _ = LinkInfo::parse(&b);
            let _ = attrs(&b).count();
            let _ = NlMsgHdr::decode(&b);
            for flags in [0, NLM_F_ACK_TLVS, NLM_F_ACK_TLVS | NLM_F_CAPPED] {
                let h = NlMsgHdr {
                    len: 0,
                    ty: NLMSG_ERROR,
                    flags,
                    seq: 0,
                };
                let _ = status(&Op::ListLinks, &h, &b);
            }
        }
    }

    #[test]
    fn requests_are_laid_out_as_the_kernel_expects() {
        let mut r = Request::new(RTM_NEWLINK, NLM_F_CREATE, &IfInfoMsg::default().encode());
        r.attr_str(IFLA_IFNAME, "ab");
        let n = r.begin_nest(IFLA_LINKINFO, true);
        r.attr_u32(IFLA_MTU, 9000);
        r.end_nest(n);
        let m = r.finish(77).unwrap();
        assert_eq!(m.len(), 16 + 16 + 8 + 4 + 8);
        assert_eq!(u32_at(&m, 0), Some(m.len() as u32));
        assert_eq!(u16_at(&m, 4), Some(RTM_NEWLINK));
        assert_eq!(
            u16_at(&m, 6),
            Some(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE)
        );
        assert_eq!(u32_at(&m, 8), Some(77));
        assert_eq!(&m[32..40], &[7, 0, 3, 0, b'a', b'b', 0, 0]); // rta_len 7, padded to 8
        assert_eq!(u16_at(&m, 40), Some(12));
        assert_eq!(u16_at(&m, 42), Some(IFLA_LINKINFO | NLA_F_NESTED));
        assert_eq!(u32_at(&m, 48), Some(9000));
    }

    // -- measurements (run with `cargo test --release -- --ignored --nocapture`) -----------------------

    fn stats(mut v: Vec<Duration>) -> String {
        v.sort();
        let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        format!(
            "median {:>8.3?}  p10 {:>8.3?}  p90 {:>8.3?}  max {:>8.3?}",
            p(0.5),
            p(0.1),
            p(0.9),
            p(1.0)
        )
    }

    /// Median lab setup: 2 namespaces + veth + lo/ends up + 4 addresses + offloads off + carrier.
    #[test]
    #[ignore = "measurement; run explicitly"]
    fn measure_setup() {
        const N: usize = 200;
        for order in [OffloadsOff::AfterUp, OffloadsOff::BeforeUp] {
            let mut ph = Vec::new();
            for _ in 0..N {
                let (lab, p) = build_lab(order).unwrap();
                ph.push(p);
                drop(lab);
            }
            let setup = |p: &Phases| p.namespaces + p.veth + p.configure + p.carrier;
            println!("offloads off {order:?}, {N} labs:");
            println!("  setup      {}", stats(ph.iter().map(setup).collect()));
            println!(
                "  namespaces {}",
                stats(ph.iter().map(|p| p.namespaces).collect())
            );
            println!(
                "  veth       {}",
                stats(ph.iter().map(|p| p.veth).collect())
            );
            println!(
                "  configure  {}",
                stats(ph.iter().map(|p| p.configure).collect())
            );
            println!(
                "  carrier    {}",
                stats(ph.iter().map(|p| p.carrier).collect())
            );
            let late = ph.iter().filter(|p| p.ipv6_late).count();
            println!(
                "  then IPv6 local routes: {}; not yet there in {late} of {N} labs",
                stats(ph.iter().map(|p| p.ipv6_local).collect())
            );
        }
    }

    /// How often does the first connect succeed within 100 ms right after setup, per family?
    #[test]
    #[ignore = "measurement; run explicitly"]
    fn measure_first_connect() {
        const N: usize = 200;
        let mut took = [Vec::new(), Vec::new()];
        let mut failed = [0, 0];
        for _ in 0..N {
            let (lab, _) = build_lab(OffloadsOff::AfterUp).unwrap();
            let (l4, l6) = listeners_in_b(&lab).unwrap();
            for (i, l) in [l4, l6].iter().enumerate() {
                match connect_from_a(&lab, l.local_addr().unwrap(), Duration::from_millis(100)) {
                    Ok(d) => took[i].push(d),
                    Err(_) => failed[i] += 1,
                }
            }
        }
        for (i, fam) in ["IPv4", "IPv6"].iter().enumerate() {
            println!(
                "{fam}: {} failed of {N}; {}",
                failed[i],
                stats(took[i].clone())
            );
        }
    }

    /// Cost of each ethtool step on an up veth, to see which one is expensive.
    #[test]
    #[ignore = "measurement; run explicitly"]
    fn measure_offload_steps() {
        for order in [OffloadsOff::AfterUp, OffloadsOff::BeforeUp] {
            let mut t = Vec::new();
            for _ in 0..50 {
                let a = Host::spawn();
                let b = Host::spawn();
                let b_ns = b.ns().try_clone().unwrap();
                t.push(a.run(move || {
                    let mut nl = Netlink::open().unwrap();
                    nl.create_veth("nc0", "nc1", b_ns.as_raw_fd()).unwrap();
                    let i = nl.link_index("nc0").unwrap();
                    if order == OffloadsOff::AfterUp {
                        nl.set_link_up(i).unwrap();
                    }
                    let s = Instant::now();
                    disable_offloads("nc0").unwrap();
                    s.elapsed()
                }));
            }
            println!("disable_offloads on a veth end, {order:?}: {}", stats(t));
        }
    }
}
