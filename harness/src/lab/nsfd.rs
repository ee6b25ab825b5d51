//! Network namespaces held by file descriptors, and the namespace a socket lives in.
//!
//! A lab namespace is *anonymous*: it is created with `unshare(CLONE_NEWNET)` on a host thread and kept alive
//! only by that thread and by descriptors of `/proc/thread-self/ns/net` (nothing is mounted under
//! `/run/netns`). When the last thread, descriptor and socket using it are gone, the kernel tears it down
//! (asynchronously, in its `cleanup_net` work).
//!
//! Namespaces are per *thread* on Linux: `unshare` and `setns` change only the calling thread, and a thread
//! spawned afterwards starts in its creator's namespace. That is why every path here is
//! `/proc/thread-self/…` and never `/proc/self/…` (which names the main thread's namespace).
//!
//! A namespace is identified by the inode of its nsfs file (what `ip netns identify` and `readlink
//! /proc/…/ns/net` show as `net:[<inode>]`). [`socket_netns_inode`] reads the inode of the namespace a socket
//! was created in (ioctl `SIOCGSKNS`), which is how the harness checks that a socket is inside a lab before
//! it connects or sends.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;

/// `SIOCGSKNS = 0x894C` (include/uapi/linux/sockios.h): on a socket, returns a new descriptor (O_CLOEXEC) of
/// the network namespace the socket belongs to. Linux ≥ 4.9.
pub const SIOCGSKNS: libc::c_ulong = 0x894C;

/// The calling thread's network namespace (a `/proc` path, so it also works after `unshare`/`setns`).
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// A network namespace, held open by our own descriptor (`O_CLOEXEC`, so child processes do not inherit it).
///
/// Holding a `NetNs` keeps the namespace alive; nothing names it in the file system.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
    inode: u64,
}

/// Adds `op` to the last OS error, keeping the errno recoverable (see [`crate::lab::netlink::errno_of`]).
fn last_error(op: impl Into<String>) -> io::Error {
    let errno = io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO);
    super::netlink::os_error(op, errno)
}

/// Adds `op` to an I/O error, keeping its errno recoverable.
fn with_op(op: impl Into<String>, e: io::Error) -> io::Error {
    super::netlink::os_error(op, e.raw_os_error().unwrap_or(libc::EIO))
}

/// The inode of an open namespace file (fstat through std).
fn inode_of(file: &File) -> io::Result<u64> {
    file.metadata()
        .map(|m| m.ino())
        .map_err(|e| with_op("fstat namespace descriptor", e))
}

impl NetNs {
    /// The calling thread's current network namespace.
    pub fn current() -> io::Result<NetNs> {
        // std opens read-only with O_CLOEXEC.
        let file =
            File::open(THREAD_NETNS).map_err(|e| with_op("open /proc/thread-self/ns/net", e))?;
        let inode = inode_of(&file)?;
        Ok(NetNs {
            fd: OwnedFd::from(file),
            inode,
        })
    }

    /// Moves the calling thread into a new, empty, anonymous network namespace (`unshare(CLONE_NEWNET)`) and
    /// returns it. The new namespace has only `lo` (ifindex 1, down).
    ///
    /// Call this on a thread of your own: the thread stays in the new namespace for the rest of its life.
    pub fn new_on_this_thread() -> io::Result<NetNs> {
        // SAFETY: unshare changes only the calling thread's network namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } < 0 {
            return Err(last_error("unshare(CLONE_NEWNET)"));
        }
        NetNs::current()
    }

    /// Moves the calling thread into this namespace (`setns(fd, CLONE_NEWNET)`). Sockets the thread already
    /// has stay in the namespace they were created in.
    pub fn enter(&self) -> io::Result<()> {
        // SAFETY: `fd` is a network namespace descriptor; setns affects only the calling thread.
        if unsafe { libc::setns(self.fd.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
            return Err(last_error(format!("setns into net:[{}]", self.inode)));
        }
        Ok(())
    }

    /// The namespace's inode, as `readlink /proc/<pid>/task/<tid>/ns/net` shows it (`net:[<inode>]`).
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// The namespace descriptor, e.g. for `IFLA_NET_NS_FD`. Valid while `self` lives.
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// A second handle on the same namespace (`dup` of the descriptor, close-on-exec).
    pub fn try_clone(&self) -> io::Result<NetNs> {
        Ok(NetNs {
            fd: self.fd.try_clone().map_err(|e| {
                super::netlink::os_error(
                    format!("dup descriptor of net:[{}]", self.inode),
                    e.raw_os_error().unwrap_or(libc::EIO),
                )
            })?,
            inode: self.inode,
        })
    }
}

impl AsRawFd for NetNs {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The inode of the network namespace that socket `fd` belongs to (ioctl `SIOCGSKNS`, then `fstat`).
///
/// A socket belongs to the namespace its creating thread was in at `socket()` time, whatever thread uses it
/// later. Compare the result with [`NetNs::inode`].
pub fn socket_netns_inode(fd: RawFd) -> io::Result<u64> {
    // SAFETY: SIOCGSKNS takes no argument; on success it returns a new descriptor that we own.
    let ns = unsafe { libc::ioctl(fd, SIOCGSKNS as _) };
    if ns < 0 {
        return Err(last_error(format!("ioctl SIOCGSKNS on fd {fd}")));
    }
    // SAFETY: `ns` is a fresh descriptor that nothing else owns; dropping it closes it.
    let ns = File::from(unsafe { OwnedFd::from_raw_fd(ns) });
    inode_of(&ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_socket() -> OwnedFd {
        // SAFETY: plain socket(2) call.
        let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        assert!(s >= 0, "socket: {}", io::Error::last_os_error());
        // SAFETY: fresh descriptor.
        unsafe { OwnedFd::from_raw_fd(s) }
    }

    /// Never touches the host namespace: the test thread first moves into namespace `outer`; a second thread
    /// spawned from it starts in `outer` too and moves on into `inner`.
    #[test]
    fn a_socket_reports_the_namespace_it_was_created_in() {
        std::thread::spawn(|| {
            let outer = NetNs::new_on_this_thread().unwrap();
            let outer_sock = udp_socket();
            let (inner, inner_sock_inode, started_in) = std::thread::spawn(|| {
                let started_in = NetNs::current().unwrap().inode();
                let ns = NetNs::new_on_this_thread().unwrap();
                let s = udp_socket();
                (
                    ns.inode(),
                    socket_netns_inode(s.as_raw_fd()).unwrap(),
                    started_in,
                )
            })
            .join()
            .unwrap();
            assert_eq!(
                started_in,
                outer.inode(),
                "a new thread starts in its creator's namespace"
            );
            assert_eq!(inner_sock_inode, inner);
            assert_eq!(
                socket_netns_inode(outer_sock.as_raw_fd()).unwrap(),
                outer.inode()
            );
            assert_ne!(inner, outer.inode());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn enter_and_clone_keep_the_identity() {
        std::thread::spawn(|| {
            let a = NetNs::new_on_this_thread().unwrap();
            let b = NetNs::new_on_this_thread().unwrap();
            assert_ne!(a.inode(), b.inode());
            let a2 = a.try_clone().unwrap();
            assert_eq!(a2.inode(), a.inode());
            assert_ne!(a2.as_raw_fd(), a.as_raw_fd());
            a2.enter().unwrap();
            assert_eq!(NetNs::current().unwrap().inode(), a.inode());
            let s = udp_socket();
            assert_eq!(socket_netns_inode(s.as_raw_fd()).unwrap(), a.inode());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn siocgskns_on_a_non_socket_is_an_error() {
        std::thread::spawn(|| {
            let ns = NetNs::new_on_this_thread().unwrap();
            let e = socket_netns_inode(ns.as_raw_fd()).unwrap_err();
            assert!(e.to_string().contains("SIOCGSKNS"), "{e}");
        })
        .join()
        .unwrap();
    }
}
