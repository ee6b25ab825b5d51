//! Named socket options, receive flags and readiness for properties: a property says
//! `s.set_reuse_port(true)` or `s.recv_with(64, RecvFlags::DONTWAIT)` and never calls libc itself, so the
//! system under test sits behind one seam (issue #14).
//!
//! Each setter is one setsockopt(2) with the option named in its doc; outcomes are the kernel's
//! ([`SockResult`]: an errno is an observation, named on display). Only the options properties use are here;
//! [`Socket::set_int_opt`] stays for the harness's own generic callers (the random-ops executor).

use std::mem::size_of;
use std::ops::BitOr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::error::HarnessError;
use crate::sock::{Errno, Family, Received, SockResult, Socket};

/// Flags of one receive call (recv(2)), named as Linux names them; combine them with `|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecvFlags(i32);

impl RecvFlags {
    /// No flag: wait for data as the socket's blocking mode says.
    pub const NONE: RecvFlags = RecvFlags(0);
    /// MSG_DONTWAIT: answer at once, EAGAIN when nothing is queued.
    pub const DONTWAIT: RecvFlags = RecvFlags(libc::MSG_DONTWAIT);
    /// MSG_PEEK: return the data without taking it off the queue.
    pub const PEEK: RecvFlags = RecvFlags(libc::MSG_PEEK);
    /// MSG_TRUNC (udp(7)): return the datagram's real length even when the buffer was shorter.
    pub const TRUNC: RecvFlags = RecvFlags(libc::MSG_TRUNC);

    /// The flags as recvmsg(2) takes them.
    pub fn bits(self) -> i32 {
        self.0
    }
}

impl BitOr for RecvFlags {
    type Output = RecvFlags;
    fn bitor(self, other: RecvFlags) -> RecvFlags {
        RecvFlags(self.0 | other.0)
    }
}

/// asm-generic/socket.h SO_MEMINFO (not in the libc crate): fills `u32 meminfo[SK_MEMINFO_VARS]`
/// (linux/sock_diag.h; 9 words in Linux 6.x, room for 16 so a longer array still fits).
const SO_MEMINFO: i32 = 55;
const SO_MEMINFO_WORDS: usize = 16;

fn on_off(on: bool) -> i32 {
    i32::from(on)
}

impl Socket {
    /// A raw IPPROTO_TCP socket for crafted segments; the kernel writes the IP header.
    pub fn raw_tcp(family: Family) -> Result<Socket, HarnessError> {
        Socket::raw(family, libc::IPPROTO_TCP)
    }

    /// SO_RCVBUF (socket(7)): asks for a receive buffer of `bytes`; the kernel doubles the value (room for its
    /// bookkeeping), clamps it to net.core.rmem_max, and [`Socket::rcvbuf`] reads back what it set.
    pub fn set_rcvbuf(&self, bytes: i32) -> SockResult<()> {
        self.set_int_opt(libc::SOL_SOCKET, libc::SO_RCVBUF, bytes)
    }

    /// SO_RCVBUFFORCE (socket(7)): SO_RCVBUF without the net.core.rmem_max clamp; needs CAP_NET_ADMIN in the
    /// initial user namespace. Rootless (a lab in a user namespace of its own: EPERM) it falls back to
    /// SO_RCVBUF, clamped to the global net.core.rmem_max.
    pub fn set_rcvbuf_force(&self, bytes: i32) -> SockResult<()> {
        match self.set_int_opt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, bytes) {
            Err(e) if e.0 == libc::EPERM => self.set_rcvbuf(bytes),
            other => other,
        }
    }

    /// SO_RCVBUF read back: the receive buffer the kernel set, in bytes of truesize it will charge.
    pub fn rcvbuf(&self) -> SockResult<i32> {
        self.get_int_opt(libc::SOL_SOCKET, libc::SO_RCVBUF)
    }

    /// SO_REUSEADDR (socket(7)).
    pub fn set_reuse_addr(&self, on: bool) -> SockResult<()> {
        self.set_int_opt(libc::SOL_SOCKET, libc::SO_REUSEADDR, on_off(on))
    }

    /// SO_REUSEPORT (socket(7)).
    pub fn set_reuse_port(&self, on: bool) -> SockResult<()> {
        self.set_int_opt(libc::SOL_SOCKET, libc::SO_REUSEPORT, on_off(on))
    }

    /// IPV6_V6ONLY (ipv6(7)): an IPv6 socket that takes IPv6 only (true), or IPv4-mapped addresses too (false).
    pub fn set_v6only(&self, on: bool) -> SockResult<()> {
        self.set_int_opt(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, on_off(on))
    }

    /// SO_NO_CHECK (socket(7)): UDP over IPv4 sends its datagrams with checksum 0, "not computed" (RFC 768).
    pub fn set_udp_no_checksum(&self, on: bool) -> SockResult<()> {
        self.set_int_opt(libc::SOL_SOCKET, libc::SO_NO_CHECK, on_off(on))
    }

    /// SO_RCVTIMEO (socket(7)): a blocking receive gives up with EAGAIN after `timeout` (microsecond
    /// resolution; zero means wait for ever).
    pub fn set_recv_timeout(&self, timeout: Duration) -> SockResult<()> {
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: tv is a live, initialised timeval for the duration of the call and the length passed is its
        // size; the fd is owned by self.
        let r = unsafe {
            libc::setsockopt(
                self.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(Errno::last());
        }
        Ok(())
    }

    /// SO_MEMINFO (linux/sock_diag.h) `sk_rmem_alloc`: bytes of truesize charged to the receive queue now.
    pub fn rmem_alloc(&self) -> SockResult<u32> {
        let mut meminfo = [0u32; SO_MEMINFO_WORDS];
        let mut len = size_of::<[u32; SO_MEMINFO_WORDS]>() as libc::socklen_t;
        // SAFETY: meminfo/len describe a writable buffer of len bytes; the kernel writes at most len bytes and
        // updates len; the fd is owned by self.
        let r = unsafe {
            libc::getsockopt(
                self.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_MEMINFO,
                meminfo.as_mut_ptr() as *mut libc::c_void,
                &mut len,
            )
        };
        if r < 0 {
            return Err(Errno::last());
        }
        Ok(meminfo[libc::SK_MEMINFO_RMEM_ALLOC as usize])
    }

    /// One recvmsg() call now with these flags (see [`Socket::recv_now`]).
    pub fn recv_with(&self, max: usize, flags: RecvFlags) -> SockResult<Received> {
        self.recv_now(max, flags.bits())
    }

    /// Waits at most `timeout` for the socket to become readable (POLLIN). True also when an error or a
    /// hangup is pending, which poll(2) always reports; false when the time ran out.
    pub fn poll_readable(&self, timeout: Duration) -> bool {
        self.poll(libc::POLLIN, timeout) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recv_flags_combine_as_linux_numbers_them() {
        assert_eq!(RecvFlags::NONE.bits(), 0);
        assert_eq!(
            (RecvFlags::DONTWAIT | RecvFlags::PEEK | RecvFlags::TRUNC).bits(),
            libc::MSG_DONTWAIT | libc::MSG_PEEK | libc::MSG_TRUNC
        );
        assert_eq!(RecvFlags::default(), RecvFlags::NONE);
    }

    /// The options on a real UDP socket in this test's own namespace (no root needed; nothing is sent). The
    /// thread is marked as serving that namespace, which is what a lab host thread is.
    #[test]
    fn named_options_reach_the_kernel() {
        std::thread::spawn(|| {
            let ns = crate::lab::nsfd::NetNs::current().expect("own network namespace");
            crate::sock::set_thread_lab_netns(ns.inode());
            let s = Socket::udp(Family::Ipv6).expect("udp socket");
            s.set_rcvbuf(4096).expect("SO_RCVBUF");
            assert_eq!(s.rcvbuf(), Ok(8192), "the kernel doubles SO_RCVBUF");
            s.set_reuse_addr(true).expect("SO_REUSEADDR");
            assert_eq!(s.get_int_opt(libc::SOL_SOCKET, libc::SO_REUSEADDR), Ok(1));
            s.set_reuse_port(true).expect("SO_REUSEPORT");
            assert_eq!(s.get_int_opt(libc::SOL_SOCKET, libc::SO_REUSEPORT), Ok(1));
            s.set_v6only(true).expect("IPV6_V6ONLY");
            assert_eq!(s.get_int_opt(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY), Ok(1));
            s.set_v6only(false).expect("IPV6_V6ONLY");
            assert_eq!(s.get_int_opt(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY), Ok(0));
            s.set_udp_no_checksum(true).expect("SO_NO_CHECK");
            assert_eq!(s.get_int_opt(libc::SOL_SOCKET, libc::SO_NO_CHECK), Ok(1));
            s.set_recv_timeout(Duration::from_millis(1500))
                .expect("SO_RCVTIMEO");
            assert_eq!(s.rmem_alloc(), Ok(0), "nothing queued");
            assert!(!s.poll_readable(Duration::ZERO));
            assert_eq!(
                s.recv_with(64, RecvFlags::DONTWAIT | RecvFlags::PEEK),
                Err(Errno::EAGAIN)
            );
        })
        .join()
        .expect("test thread");
    }
}
