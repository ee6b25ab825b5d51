//! Network namespaces held by file descriptors, and the namespace a socket lives in.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// ioctl asking a socket for a descriptor of its network namespace (include/uapi/linux/sockios.h).
const SIOCGSKNS: libc::c_ulong = 0x894C;

/// A network namespace, held open by our own descriptor. Nothing names it in the file system, so when every
/// descriptor and thread using it is gone, the kernel frees it.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
    inode: u64,
}

fn inode_of(fd: RawFd) -> io::Result<u64> {
    // SAFETY: st is written by fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.st_ino)
}

impl NetNs {
    /// The calling thread's current network namespace.
    pub fn current() -> io::Result<NetNs> {
        let path = c"/proc/thread-self/ns/net";
        // SAFETY: path is a valid C string.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let inode = inode_of(fd.as_raw_fd())?;
        Ok(NetNs { fd, inode })
    }

    /// Moves the calling thread into a new anonymous network namespace and returns it.
    pub fn new_on_this_thread() -> io::Result<NetNs> {
        // SAFETY: unshare affects only the calling thread's network namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } < 0 {
            return Err(io::Error::last_os_error());
        }
        NetNs::current()
    }

    /// Moves the calling thread into this namespace.
    pub fn enter(&self) -> io::Result<()> {
        // SAFETY: fd is a namespace descriptor.
        if unsafe { libc::setns(self.fd.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn inode(&self) -> u64 {
        self.inode
    }

    pub fn try_clone(&self) -> io::Result<NetNs> {
        Ok(NetNs {
            fd: self.fd.try_clone()?,
            inode: self.inode,
        })
    }
}

impl AsRawFd for NetNs {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The inode of the network namespace socket `fd` belongs to (ioctl SIOCGSKNS).
pub fn socket_netns_inode(fd: RawFd) -> io::Result<u64> {
    // SAFETY: SIOCGSKNS takes no argument and returns a new descriptor.
    let ns = unsafe { libc::ioctl(fd, SIOCGSKNS as _) };
    if ns < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    let ns = unsafe { OwnedFd::from_raw_fd(ns) };
    inode_of(ns.as_raw_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_reports_the_namespace_it_was_created_in() {
        let outer = NetNs::current().unwrap();
        let (inner, sock_inode) = std::thread::spawn(|| {
            let ns = NetNs::new_on_this_thread().unwrap();
            let s =
                unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
            let s = unsafe { OwnedFd::from_raw_fd(s) };
            (ns.inode(), socket_netns_inode(s.as_raw_fd()).unwrap())
        })
        .join()
        .unwrap();
        assert_eq!(inner, sock_inode);
        assert_ne!(inner, outer.inode());
    }
}
