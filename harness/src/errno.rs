//! errno values named as Linux names them (`ECONNREFUSED`), so outcomes and violations read like man pages.
//!
//! One list gives both the names ([`errno_name`]) and the constants properties compare outcomes with
//! ([`Errno::ECONNREFUSED`](Errno::ECONNREFUSED) …), so a property never needs libc to say which
//! errno it expects.

/// An errno value observed from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub fn last() -> Self {
        Errno(last_errno())
    }
    /// The errno an `io::Error` from a system call carries (EIO if it carries none, which socket2's
    /// system-call wrappers never do).
    pub fn of(e: &std::io::Error) -> Self {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
    pub fn name(self) -> String {
        errno_name(self.0)
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// Defines `Errno::<NAME>` for every listed name and the table [`errno_name`] reads.
macro_rules! named_errnos {
    ($($name:ident),* $(,)?) => {
        /// The errnos netconform names, as Linux numbers them (asm-generic/errno-base.h, asm-generic/errno.h).
        impl Errno {
            $(
                #[doc = concat!("`", stringify!($name), "`")]
                pub const $name: Errno = Errno(libc::$name);
            )*
        }

        /// The symbolic name of an errno value, or `E<n>` for one this table does not know.
        pub fn errno_name(errno: i32) -> String {
            let name = match errno {
                $(libc::$name => stringify!($name),)*
                _ => return format!("E{errno}"),
            };
            name.to_string()
        }
    };
}

named_errnos!(
    EPERM,
    ENOENT,
    ESRCH,
    EINTR,
    EIO,
    ENOEXEC,
    EBADF,
    ECHILD,
    EAGAIN,
    ENOMEM,
    EACCES,
    EFAULT,
    EBUSY,
    EEXIST,
    ENOTDIR,
    EINVAL,
    ETXTBSY,
    EROFS,
    EPIPE,
    ENAMETOOLONG,
    ENOSYS,
    ELOOP,
    EMSGSIZE,
    ENOPROTOOPT,
    EPROTONOSUPPORT,
    EOPNOTSUPP,
    EAFNOSUPPORT,
    EADDRINUSE,
    EADDRNOTAVAIL,
    ENETDOWN,
    ENETUNREACH,
    ECONNABORTED,
    ECONNRESET,
    ENOBUFS,
    EISCONN,
    ENOTCONN,
    ETIMEDOUT,
    ECONNREFUSED,
    EHOSTDOWN,
    EHOSTUNREACH,
    EALREADY,
    EINPROGRESS,
    ENOTSOCK,
    EDESTADDRREQ,
);

/// The current thread's errno.
pub fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_known_and_unknown_errnos() {
        assert_eq!(errno_name(libc::ECONNREFUSED), "ECONNREFUSED");
        assert_eq!(errno_name(libc::EPIPE), "EPIPE");
        assert_eq!(errno_name(4242), "E4242");
    }

    #[test]
    fn constants_carry_linux_values_and_names() {
        assert_eq!(Errno::ECONNREFUSED, Errno(libc::ECONNREFUSED));
        assert_eq!(Errno::EAGAIN.0, libc::EWOULDBLOCK);
        assert_eq!(Errno::EADDRINUSE.name(), "EADDRINUSE");
        // Usable as patterns, which is how properties match outcomes.
        assert!(matches!(
            Some(Err::<(), _>(Errno(libc::EAGAIN))),
            Some(Err(Errno::EAGAIN))
        ));
    }
}
