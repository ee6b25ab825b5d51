//! sock_diag: the TCP sockets of a network namespace as the kernel lists them (what `ss -tan` shows),
//! including those no descriptor holds any more — TIME-WAIT, and orphans in FIN-WAIT-2 or LAST-ACK.
//!
//! One `NETLINK_SOCK_DIAG` dump (`SOCK_DIAG_BY_FAMILY` with an `inet_diag_req_v2`, include/uapi/linux/
//! inet_diag.h) per address family. The netlink socket belongs to the namespace of the thread that opens it,
//! so [`tcp_sockets`] must run on a lab host thread (`lab.host(Host::A).run(..)`). Parsing is by hand and
//! checked: a short or malformed message is an error, never a panic.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::ops::TcpState;

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// struct inet_diag_req_v2: family, protocol, ext, pad, states (u32), inet_diag_sockid (48 bytes).
const REQ_LEN: usize = 56;
/// struct inet_diag_msg: family, state, timer, retrans, inet_diag_sockid (48), expires, rqueue, wqueue,
/// uid, inode (5 × u32).
const MSG_LEN: usize = 72;

/// One socket from the dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagSocket {
    /// The state as the kernel numbers it (include/net/tcp_states.h); `None` for a number we do not know.
    pub state: Option<TcpState>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The pending timer (idiag_timer: 0 none, 1 retransmit, 2 keep-alive, 3 TIME-WAIT, 4 zero-window probe).
    pub timer: u8,
    /// Milliseconds until the timer fires.
    pub expires_ms: u32,
    /// 0 for sockets no file descriptor holds (TIME-WAIT, orphans).
    pub inode: u32,
}

/// Every TCP socket (all states) of the calling thread's network namespace, IPv4 then IPv6.
pub fn tcp_sockets() -> io::Result<Vec<DiagSocket>> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::other(format!(
            "sock_diag: socket(AF_NETLINK, NETLINK_SOCK_DIAG): {}",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: `fd` is fresh and owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut out = Vec::new();
    for (seq, family) in [(1u32, libc::AF_INET as u8), (2, libc::AF_INET6 as u8)] {
        let req = request(family, seq);
        // SAFETY: `req` is valid for its length; a null address sends to the kernel.
        let n = unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
        if n < 0 {
            return Err(io::Error::other(format!(
                "sock_diag: send: {}",
                io::Error::last_os_error()
            )));
        }
        let mut buf = vec![0u8; 64 * 1024];
        'dump: loop {
            // SAFETY: `buf` is valid for its length.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(io::Error::new(e.kind(), format!("sock_diag: receive: {e}")));
            }
            match parse_datagram(&buf[..n as usize], &mut out)? {
                Parsed::More => {}
                Parsed::Done => break 'dump,
            }
        }
    }
    Ok(out)
}

/// The dump request for one family: all states, TCP.
fn request(family: u8, seq: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + REQ_LEN;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel fills it in
    m.push(family);
    m.push(libc::IPPROTO_TCP as u8);
    m.push(0); // no extensions
    m.push(0);
    m.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    m.resize(len, 0); // inet_diag_sockid: zero, a dump filters nothing
    m
}

enum Parsed {
    More,
    Done,
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("sock_diag: malformed reply: {what}"),
    )
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses one datagram of netlink messages, appending sockets to `out`.
fn parse_datagram(mut b: &[u8], out: &mut Vec<DiagSocket>) -> io::Result<Parsed> {
    while b.len() >= NLMSG_HDRLEN {
        let len = u32_at(b, 0) as usize;
        let ty = u16::from_ne_bytes([b[4], b[5]]);
        if len < NLMSG_HDRLEN || len > b.len() {
            return Err(malformed("message length"));
        }
        let payload = &b[NLMSG_HDRLEN..len];
        match ty {
            NLMSG_DONE => return Ok(Parsed::Done),
            NLMSG_ERROR => {
                let errno = if payload.len() >= 4 {
                    -(u32_at(payload, 0) as i32)
                } else {
                    libc::EIO
                };
                if errno == 0 {
                    return Ok(Parsed::Done);
                }
                return Err(io::Error::other(format!(
                    "sock_diag: the kernel refused the dump: {}",
                    io::Error::from_raw_os_error(errno)
                )));
            }
            SOCK_DIAG_BY_FAMILY => out.push(parse_msg(payload)?),
            _ => {}
        }
        let aligned = (len + 3) & !3;
        b = &b[aligned.min(b.len())..];
    }
    Ok(Parsed::More)
}

/// Parses one `inet_diag_msg`.
fn parse_msg(p: &[u8]) -> io::Result<DiagSocket> {
    if p.len() < MSG_LEN {
        return Err(malformed("inet_diag_msg shorter than 72 bytes"));
    }
    let family = p[0] as i32;
    let sport = u16::from_be_bytes([p[4], p[5]]);
    let dport = u16::from_be_bytes([p[6], p[7]]);
    let addr = |at: usize| -> io::Result<IpAddr> {
        match family {
            libc::AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(
                p[at],
                p[at + 1],
                p[at + 2],
                p[at + 3],
            ))),
            libc::AF_INET6 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(&p[at..at + 16]);
                Ok(IpAddr::V6(Ipv6Addr::from(o)))
            }
            _ => Err(malformed("unknown address family")),
        }
    };
    Ok(DiagSocket {
        state: TcpState::from_kernel(p[1]),
        timer: p[2],
        local: SocketAddr::new(addr(8)?, sport),
        remote: SocketAddr::new(addr(24)?, dport),
        expires_ms: u32_at(p, 52),
        inode: u32_at(p, 68),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TIME-WAIT entry as the kernel sent it (IPv4, 198.18.0.1:40000 → 198.18.0.2:5001, timer 3,
    /// 59,987 ms left, no inode), followed by NLMSG_DONE.
    fn time_wait_datagram() -> Vec<u8> {
        let mut msg = vec![0u8; MSG_LEN];
        msg[0] = libc::AF_INET as u8;
        msg[1] = 6; // TCP_TIME_WAIT
        msg[2] = 3;
        msg[4..6].copy_from_slice(&40000u16.to_be_bytes());
        msg[6..8].copy_from_slice(&5001u16.to_be_bytes());
        msg[8..12].copy_from_slice(&[198, 18, 0, 1]);
        msg[24..28].copy_from_slice(&[198, 18, 0, 2]);
        msg[52..56].copy_from_slice(&59_987u32.to_ne_bytes());
        let mut d = Vec::new();
        d.extend_from_slice(&((NLMSG_HDRLEN + MSG_LEN) as u32).to_ne_bytes());
        d.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        d.extend_from_slice(&[0; 10]);
        d.extend_from_slice(&msg);
        d.extend_from_slice(&(NLMSG_HDRLEN as u32 + 4).to_ne_bytes());
        d.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        d.extend_from_slice(&[0; 14]);
        d
    }

    #[test]
    fn a_time_wait_entry_parses() {
        let mut out = Vec::new();
        assert!(matches!(
            parse_datagram(&time_wait_datagram(), &mut out).unwrap(),
            Parsed::Done
        ));
        assert_eq!(
            out,
            vec![DiagSocket {
                state: Some(TcpState::TimeWait),
                local: "198.18.0.1:40000".parse().unwrap(),
                remote: "198.18.0.2:5001".parse().unwrap(),
                timer: 3,
                expires_ms: 59_987,
                inode: 0,
            }]
        );
    }

    #[test]
    fn truncated_replies_are_errors_not_panics() {
        let d = time_wait_datagram();
        for cut in 0..d.len() {
            let mut out = Vec::new();
            let _ = parse_datagram(&d[..cut], &mut out);
        }
        let mut out = Vec::new();
        let mut bad = d.clone();
        bad[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(parse_datagram(&bad, &mut out).is_err());
    }

    #[test]
    fn the_request_is_56_bytes_after_the_header() {
        let r = request(libc::AF_INET6 as u8, 9);
        assert_eq!(r.len(), 72);
        assert_eq!(u32_at(&r, 0), 72);
        assert_eq!(r[16], libc::AF_INET6 as u8);
        assert_eq!(r[17], libc::IPPROTO_TCP as u8);
        assert_eq!(u32_at(&r, 20), u32::MAX);
    }
}
