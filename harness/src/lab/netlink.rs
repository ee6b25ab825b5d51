//! A small synchronous rtnetlink client, written by hand: just the requests a lab needs.
//!
//! Each request is one `struct nlmsghdr` (16 bytes) + a fixed family header (`ifinfomsg` 16 bytes,
//! `ifaddrmsg` 8, `ndmsg` 12) + `rtattr`s (len u16, type u16, payload, padded to 4 bytes; nested attributes are
//! rtattrs inside an rtattr). Every request carries `NLM_F_ACK`; the kernel's `NLMSG_ERROR` reply with error 0 is
//! the acknowledgement, a negative error is returned as an `io::Error` that names the request. Constants carry
//! the names of include/uapi/linux/{netlink,rtnetlink,if_link,if_addr,neighbour,veth}.h.
//!
//! The socket is opened in the calling thread's network namespace: the lab calls this from host threads.
//! No reply, however short or malformed, makes this code panic.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_MULTI: u16 = 0x2;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_DUMP: u16 = 0x300;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWNEIGH: u16 = 28;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
const IFA_F_NODAD: u32 = 0x02;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NUD_PERMANENT: u16 = 0x80;
const IFF_UP: u32 = 0x1;

/// What RTM_GETLINK tells about an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    pub flags: u32,
    pub mac: [u8; 6],
    pub operstate: u8,
}

/// A request under construction: header, family header, attributes.
struct Request {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Request {
    fn new(ty: u16, flags: u16, family_header: &[u8]) -> Request {
        let mut buf = vec![0u8; NLMSG_HDRLEN];
        buf[4..6].copy_from_slice(&ty.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(family_header);
        Request {
            buf,
            nests: Vec::new(),
        }
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        self.pad();
        self.buf
            .extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self
    }

    fn attr_str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(ty, &v)
    }

    fn begin(&mut self, ty: u16) -> &mut Self {
        self.pad();
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self
    }

    /// Raw bytes inside the current nest (e.g. the peer's ifinfomsg).
    fn raw(&mut self, data: &[u8]) -> &mut Self {
        self.pad();
        self.buf.extend_from_slice(data);
        self
    }

    fn end(&mut self) -> &mut Self {
        if let Some(start) = self.nests.pop() {
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        self.pad();
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0] = libc::AF_UNSPEC as u8;
    h[4..8].copy_from_slice(&(index as i32).to_ne_bytes());
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h[12..16].copy_from_slice(&change.to_ne_bytes());
    h
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Walks the rtattrs of `b`, yielding (type without flag bits, payload).
fn attrs(b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let len = u16_at(b, at)? as usize;
        let ty = u16_at(b, at + 2)? & 0x3fff;
        if len < 4 || at + len > b.len() {
            return None;
        }
        let payload = &b[at + 4..at + len];
        at += (len + 3) & !3;
        Some((ty, payload))
    })
}

fn bad_reply(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("netlink: malformed reply to {what}"),
    )
}

/// An rtnetlink socket in the calling thread's network namespace.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        // SAFETY: plain syscall.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Ask for extended acks off and strict checking off: defaults suit us.
        Ok(Netlink { fd, seq: 1 })
    }

    fn send(&mut self, req: Request) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let msg = req.finish(self.seq);
        // SAFETY: msg is a valid buffer; the kernel is the destination (zeroed sockaddr_nl).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr() as *const libc::c_void,
                msg.len(),
                0,
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(self.seq)
    }

    /// Reads replies to `seq` until the ACK (or DONE for dumps), handing every data message to `on_msg`.
    fn receive(
        &mut self,
        seq: u32,
        what: &str,
        mut on_msg: impl FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: buf is a valid buffer.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(e);
            }
            let data = &buf[..n as usize];
            let mut at = 0;
            let mut done = false;
            while at + NLMSG_HDRLEN <= data.len() {
                let len = u32_at(data, at).ok_or_else(|| bad_reply(what))? as usize;
                let ty = u16_at(data, at + 4).ok_or_else(|| bad_reply(what))?;
                let flags = u16_at(data, at + 6).ok_or_else(|| bad_reply(what))?;
                let msg_seq = u32_at(data, at + 8).ok_or_else(|| bad_reply(what))?;
                if len < NLMSG_HDRLEN || at + len > data.len() {
                    return Err(bad_reply(what));
                }
                let payload = &data[at + NLMSG_HDRLEN..at + len];
                at += (len + 3) & !3;
                if msg_seq != seq {
                    continue;
                }
                match ty {
                    NLMSG_ERROR => {
                        let code = u32_at(payload, 0).ok_or_else(|| bad_reply(what))? as i32;
                        if code == 0 {
                            return Ok(());
                        }
                        let e = io::Error::from_raw_os_error(-code);
                        return Err(io::Error::new(e.kind(), format!("netlink {what}: {e}")));
                    }
                    NLMSG_DONE => done = true,
                    _ => {
                        on_msg(ty, payload);
                        if flags & NLM_F_MULTI == 0 {
                            // A single reply (e.g. RTM_GETLINK by index) is followed by its ACK.
                        }
                    }
                }
            }
            if done {
                return Ok(());
            }
        }
    }

    fn request(&mut self, req: Request, what: &str) -> io::Result<()> {
        let seq = self.send(req)?;
        self.receive(seq, what, |_, _| {})
    }

    /// Creates a veth pair: `name` in this namespace, `peer_name` directly in the namespace of `peer_netns_fd`.
    pub fn create_veth(
        &mut self,
        name: &str,
        peer_name: &str,
        peer_netns_fd: RawFd,
    ) -> io::Result<()> {
        let mut req = Request::new(
            RTM_NEWLINK,
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &ifinfomsg(0, 0, 0),
        );
        req.attr_str(IFLA_IFNAME, name);
        req.begin(IFLA_LINKINFO);
        req.attr_str(IFLA_INFO_KIND, "veth");
        req.begin(IFLA_INFO_DATA);
        req.begin(VETH_INFO_PEER);
        req.raw(&ifinfomsg(0, 0, 0));
        req.attr_str(IFLA_IFNAME, peer_name);
        req.attr(IFLA_NET_NS_FD, &(peer_netns_fd as u32).to_ne_bytes());
        req.end().end().end();
        self.request(req, &format!("create veth {name}/{peer_name}"))
    }

    fn parse_link(payload: &[u8]) -> Option<LinkInfo> {
        let index = i32::from_ne_bytes(payload.get(4..8)?.try_into().ok()?) as u32;
        let flags = u32_at(payload, 8)?;
        let mut info = LinkInfo {
            index,
            name: String::new(),
            mtu: 0,
            flags,
            mac: [0; 6],
            operstate: 0,
        };
        for (ty, data) in attrs(payload.get(16..)?) {
            match ty {
                IFLA_IFNAME => {
                    info.name = String::from_utf8_lossy(data)
                        .trim_end_matches('\0')
                        .to_string()
                }
                IFLA_MTU => info.mtu = u32_at(data, 0)?,
                IFLA_ADDRESS if data.len() == 6 => info.mac.copy_from_slice(data),
                IFLA_OPERSTATE => info.operstate = *data.first()?,
                _ => {}
            }
        }
        Some(info)
    }

    fn get_link_by(&mut self, req: Request, what: &str) -> io::Result<LinkInfo> {
        let seq = self.send(req)?;
        let mut found = None;
        let mut malformed = false;
        self.receive(seq, what, |ty, payload| {
            if ty == RTM_NEWLINK {
                match Self::parse_link(payload) {
                    Some(l) => found = Some(l),
                    None => malformed = true,
                }
            }
        })?;
        if malformed {
            return Err(bad_reply(what));
        }
        found.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("netlink {what}: no such link"),
            )
        })
    }

    /// RTM_GETLINK by index. After setting a veth end up, one such read forces the kernel to finish its deferred
    /// carrier-up work (kernel-facts: otherwise the first ARP is lost in ~1 % of labs).
    pub fn get_link(&mut self, ifindex: u32) -> io::Result<LinkInfo> {
        let req = Request::new(RTM_GETLINK, NLM_F_ACK, &ifinfomsg(ifindex, 0, 0));
        self.get_link_by(req, &format!("get link {ifindex}"))
    }

    pub fn link_index(&mut self, name: &str) -> io::Result<u32> {
        let mut req = Request::new(RTM_GETLINK, NLM_F_ACK, &ifinfomsg(0, 0, 0));
        req.attr_str(IFLA_IFNAME, name);
        Ok(self.get_link_by(req, &format!("get link {name}"))?.index)
    }

    /// Every interface of this namespace.
    pub fn list_links(&mut self) -> io::Result<Vec<LinkInfo>> {
        let req = Request::new(RTM_GETLINK, NLM_F_DUMP, &ifinfomsg(0, 0, 0));
        let seq = self.send(req)?;
        let mut links = Vec::new();
        self.receive(seq, "dump links", |ty, payload| {
            if ty == RTM_NEWLINK {
                links.extend(Self::parse_link(payload));
            }
        })?;
        Ok(links)
    }

    pub fn set_link_up(&mut self, ifindex: u32) -> io::Result<()> {
        let req = Request::new(RTM_NEWLINK, NLM_F_ACK, &ifinfomsg(ifindex, IFF_UP, IFF_UP));
        self.request(req, &format!("set link {ifindex} up"))
    }

    pub fn set_mtu(&mut self, ifindex: u32, mtu: u32) -> io::Result<()> {
        let mut req = Request::new(RTM_NEWLINK, NLM_F_ACK, &ifinfomsg(ifindex, 0, 0));
        req.attr(IFLA_MTU, &mtu.to_ne_bytes());
        self.request(req, &format!("set link {ifindex} mtu {mtu}"))
    }

    /// Adds an address; IPv6 addresses get IFA_F_NODAD (usable at once, no duplicate address detection).
    pub fn add_address(&mut self, ifindex: u32, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
        let (family, bytes, flags) = match addr {
            IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec(), 0),
            IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec(), IFA_F_NODAD),
        };
        let mut h = [0u8; 8];
        h[0] = family;
        h[1] = prefix_len;
        h[2] = flags as u8;
        h[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        let mut req = Request::new(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, &h);
        req.attr(IFA_LOCAL, &bytes);
        req.attr(IFA_ADDRESS, &bytes);
        req.attr(IFA_FLAGS, &flags.to_ne_bytes());
        self.request(
            req,
            &format!("add address {addr}/{prefix_len} on {ifindex}"),
        )
    }

    /// Adds a permanent neighbour entry (no ARP/ND needed for `ip`).
    pub fn add_neighbour(&mut self, ifindex: u32, ip: IpAddr, mac: [u8; 6]) -> io::Result<()> {
        let (family, bytes) = match ip {
            IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
            IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
        };
        let mut h = [0u8; 12];
        h[0] = family;
        h[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
        h[8..10].copy_from_slice(&NUD_PERMANENT.to_ne_bytes());
        let mut req = Request::new(RTM_NEWNEIGH, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, &h);
        req.attr(NDA_DST, &bytes);
        req.attr(NDA_LLADDR, &mac);
        self.request(req, &format!("add neighbour {ip} on {ifindex}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_walk_stops_on_bad_lengths() {
        let mut b = Vec::new();
        b.extend_from_slice(&8u16.to_ne_bytes());
        b.extend_from_slice(&3u16.to_ne_bytes());
        b.extend_from_slice(b"lo\0\0");
        b.extend_from_slice(&200u16.to_ne_bytes()); // runs past the end
        b.extend_from_slice(&4u16.to_ne_bytes());
        let all: Vec<_> = attrs(&b).collect();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, 3);
        assert!(Netlink::parse_link(&[0u8; 3]).is_none());
    }

    #[test]
    fn errors_name_the_request() {
        std::thread::spawn(|| {
            crate::lab::nsfd::NetNs::new_on_this_thread().unwrap();
            let peer = crate::lab::nsfd::NetNs::current().unwrap();
            let mut nl = Netlink::open().unwrap();
            nl.create_veth("t0", "t1", peer.as_raw_fd()).unwrap();
            let e = nl.create_veth("t0", "t2", peer.as_raw_fd()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
            assert!(e.to_string().contains("create veth t0/t2"), "{e}");
            let links = nl.list_links().unwrap();
            assert!(
                links.iter().any(|l| l.name == "t0") && links.iter().any(|l| l.name == "t1"),
                "{links:?}"
            );
        })
        .join()
        .unwrap();
    }
}
