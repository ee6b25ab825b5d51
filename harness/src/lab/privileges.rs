//! What netconform needs from the process and the machine before it builds any lab, checked up front so a
//! missing privilege is one clear line (exit code 2), not a confusing failure in the middle of a run.
//!
//! Three layers, each with its remedy:
//!
//! - **Privileges** ([`enter`], [`check`]): root (or a container with the capabilities), or — rootless — a new
//!   user namespace the process enters itself, its uid and gid mapped to 0. Labs built there are owned by that
//!   user namespace, so veth, addresses, per-namespace sysctls and AF_PACKET capture work unprivileged where
//!   the kernel allows user namespaces. Where it refuses them, the remedy names the knob that refuses.
//! - **Facilities** ([`Facilities::probe`]): what a lab can do on this machine beyond that — writable
//!   per-namespace sysctls (a container's `/proc/sys` is read-only by default) and TUN devices
//!   (`/dev/net/tun`, root-only on many machines). A missing facility never stops a run: the cases that need
//!   it are skipped with the reason, and the run prints one remedy line.
//! - **Tools** (for `netconform doctor`): nft and tshark are optional (`--exec` commands, the tests).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use crate::error::HarnessError;

const CAP_NET_ADMIN: u32 = 12; // include/uapi/linux/capability.h
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;

/// The container run line: everything, or the least that gives a lab every facility (Docker grants
/// CAP_NET_RAW by default; `systempaths=unconfined` leaves `/proc/sys` writable).
pub const CONTAINER_REMEDY: &str = "docker run --privileged …, or at least --cap-add NET_ADMIN --cap-add \
                                    SYS_ADMIN --security-opt systempaths=unconfined --device /dev/net/tun";

/// The remedy when the process has neither the capabilities nor a user namespace.
fn remedy() -> String {
    format!("run as root (sudo netconform …) or in a container: {CONTAINER_REMEDY}")
}

/// Set by `NETCONFORM_NO_USERNS=1`: never enter a user namespace (root or a container only).
pub const NO_USERNS_ENV: &str = "NETCONFORM_NO_USERNS";

/// How this process holds the privileges a lab needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The capabilities were there (root, or a container granting them).
    Privileged,
    /// Rootless: inside a user namespace this process made, `uid` (outside) mapped to 0.
    UserNamespace { uid: u32 },
    /// Neither: the capabilities are missing and no user namespace could be entered (`why`).
    Unprivileged { why: String },
}

static MODE: OnceLock<Mode> = OnceLock::new();

fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

/// The capabilities a lab needs that this process does not have.
fn missing_caps() -> Vec<&'static str> {
    let caps = effective_caps().unwrap_or(0);
    [
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
        (CAP_NET_RAW, "CAP_NET_RAW"),
    ]
    .iter()
    .filter(|(bit, _)| caps & (1u64 << bit) == 0)
    .map(|(_, name)| *name)
    .collect()
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The exact remedy when the kernel refuses this user a user namespace (`e` from `unshare(CLONE_NEWUSER)`),
/// naming the knob that refuses.
pub fn userns_refused_remedy() -> String {
    if read_trimmed("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref()
        == Some("1")
    {
        return "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1): \
                run as root (sudo netconform …), or allow them: sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0"
            .into();
    }
    if read_trimmed("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return "unprivileged user namespaces are off (kernel.unprivileged_userns_clone=0): run as root (sudo \
                netconform …), or allow them: sudo sysctl kernel.unprivileged_userns_clone=1"
            .into();
    }
    if read_trimmed("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return "user namespaces are off (user.max_user_namespaces=0): run as root (sudo netconform …), or allow \
                them: sudo sysctl user.max_user_namespaces=15000"
            .into();
    }
    remedy()
}

/// Writes one line to a `/proc/self` map file.
fn write_proc(path: &str, text: &str) -> io::Result<()> {
    std::fs::write(path, text).map_err(|e| io::Error::new(e.kind(), format!("write {path}: {e}")))
}

/// Makes sure the process can build labs: with the capabilities it keeps them; without them (not root) it
/// enters a new user namespace with its uid and gid mapped to 0 — rootless mode — unless
/// [`NO_USERNS_ENV`] is set. Call it once, first thing, while the process has a single thread
/// (`unshare(CLONE_NEWUSER)` refuses a multi-threaded process). Never fails: [`check`] turns
/// [`Mode::Unprivileged`] into the exit-2 line.
pub fn enter() -> &'static Mode {
    MODE.get_or_init(|| {
        if missing_caps().is_empty() {
            return Mode::Privileged;
        }
        if std::env::var_os(NO_USERNS_ENV).is_some_and(|v| v != "0") {
            return Mode::Unprivileged {
                why: format!("{NO_USERNS_ENV} is set"),
            };
        }
        // SAFETY: getuid/getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        // SAFETY: unshare changes only this (single-threaded) process's user namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWUSER) } < 0 {
            return Mode::Unprivileged {
                why: format!(
                    "the kernel refused a user namespace (unshare(CLONE_NEWUSER): {})",
                    io::Error::last_os_error()
                ),
            };
        }
        // user_namespaces(7): setgroups must be denied before an unprivileged process may write gid_map.
        let mapped = write_proc("/proc/self/setgroups", "deny")
            .and_then(|()| write_proc("/proc/self/uid_map", &format!("0 {uid} 1\n")))
            .and_then(|()| write_proc("/proc/self/gid_map", &format!("0 {gid} 1\n")));
        match mapped {
            Ok(()) => Mode::UserNamespace { uid },
            Err(e) => Mode::Unprivileged {
                why: format!("a user namespace was made but not mapped ({e})"),
            },
        }
    })
}

/// The mode [`enter`] chose (entering first if it has not run).
pub fn mode() -> &'static Mode {
    enter()
}

/// Checks capabilities (after [`enter`]) and that an anonymous network namespace can really be made. TUN and
/// writable sysctls are not required: see [`Facilities`].
pub fn check() -> Result<(), HarnessError> {
    let mode = enter();
    let missing = missing_caps();
    if !missing.is_empty() {
        // SAFETY: geteuid has no preconditions.
        let who = if unsafe { libc::geteuid() } == 0 {
            "root without"
        } else {
            "not root: missing"
        };
        let (what, remedy) = match mode {
            Mode::Unprivileged { why } if !why.contains(NO_USERNS_ENV) => (
                format!(
                    "netconform needs {} or a user namespace; this process is {who} {}, and {why}",
                    missing.join(", "),
                    missing.join(", ")
                ),
                userns_refused_remedy(),
            ),
            _ => (
                format!(
                    "netconform needs {}; this process is {who} {}",
                    missing.join(", "),
                    missing.join(", ")
                ),
                remedy(),
            ),
        };
        return Err(HarnessError::Privilege { what, remedy });
    }
    // A seccomp profile or user-namespace policy (AppArmor) can still refuse unshare: try it once on a
    // scratch thread.
    let probe = std::thread::spawn(super::nsfd::NetNs::new_on_this_thread)
        .join()
        .map_err(|_| HarnessError::HostThread("namespace probe panicked".into()))?;
    if let Err(e) = probe {
        return Err(HarnessError::Privilege {
            what: format!("cannot create a network namespace (unshare(CLONE_NEWNET): {e})"),
            remedy: match mode {
                Mode::UserNamespace { .. } => userns_refused_remedy(),
                _ => remedy(),
            },
        });
    }
    Ok(())
}

/// What a lab can do on this machine beyond a namespace, veth and AF_PACKET. `None` means available; the
/// text says why not. Probed once per run, before any lab.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facilities {
    /// Per-namespace sysctls cannot be written (read-only `/proc/sys`): cases that set one are skipped.
    pub sysctls: Option<String>,
    /// TUN devices cannot be made (`/dev/net/tun`): relay, scripted-peer and SUT links are skipped.
    pub tun: Option<String>,
}

/// Set when the run accepted read-only sysctls ([`Facilities::sysctls`]): a lab host then keeps its new
/// namespace's defaults instead of failing on the lab's own default sysctl (`harness/src/lab/hosts.rs`).
static SYSCTLS_READ_ONLY: AtomicBool = AtomicBool::new(false);

/// True when labs are built without writing sysctls (see [`Facilities::accept`]).
pub fn sysctls_read_only() -> bool {
    SYSCTLS_READ_ONLY.load(Ordering::Relaxed)
}

/// The per-namespace sysctl the probe writes (in a scratch namespace of its own): the lab's one default.
const PROBE_SYSCTL: &str = "/proc/sys/net/ipv4/tcp_no_metrics_save";

impl Facilities {
    /// Probes, in a scratch network namespace (never the host's): can a sysctl be written there, can
    /// `/dev/net/tun` be opened?
    pub fn probe() -> Facilities {
        let sysctls = std::thread::spawn(|| {
            if let Err(e) = super::nsfd::NetNs::new_on_this_thread() {
                return Some(format!("no network namespace to probe in ({e})"));
            }
            match std::fs::write(PROBE_SYSCTL, "1\n") {
                Ok(()) => None,
                Err(e) if e.raw_os_error() == Some(libc::EROFS) => {
                    Some("/proc/sys is read-only here (a container's default)".into())
                }
                Err(e) => Some(format!(
                    "writing a per-namespace sysctl failed ({PROBE_SYSCTL}: {e})"
                )),
            }
        })
        .join()
        .unwrap_or_else(|_| Some("the sysctl probe panicked".into()));
        let tun = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
        {
            Ok(_) => None,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some("/dev/net/tun is missing".into()),
            Err(e) => Some(format!("/dev/net/tun cannot be opened by this user ({e})")),
        };
        Facilities { sysctls, tun }
    }

    /// Every facility is available.
    pub fn all() -> Facilities {
        Facilities::default()
    }

    /// Labs of this process will be built with what is available: with read-only sysctls, hosts keep their
    /// namespace's defaults.
    pub fn accept(&self) {
        SYSCTLS_READ_ONLY.store(self.sysctls.is_some(), Ordering::Relaxed);
    }

    /// Why a case that sets sysctls (`sets_sysctls`) and builds a TUN-based link (`needs_tun`) cannot run.
    pub fn unmet(&self, sets_sysctls: bool, needs_tun: bool) -> Option<String> {
        match (&self.sysctls, &self.tun) {
            (Some(why), _) if sets_sysctls => Some(format!("needs writable sysctls: {why}")),
            (_, Some(why)) if needs_tun => Some(format!("needs a TUN device: {why}")),
            _ => None,
        }
    }

    /// The one remedy line for everything missing, or `None`.
    pub fn remedy(&self) -> Option<String> {
        let rootless = matches!(mode(), Mode::UserNamespace { .. });
        let mut fixes = Vec::new();
        if self.sysctls.is_some() {
            fixes.push("--security-opt systempaths=unconfined (Docker/Podman) or --privileged");
        }
        if self.tun.is_some() {
            fixes.push(if rootless {
                "a /dev/net/tun this user can open (sudo chmod 0666 /dev/net/tun, the usual default) or root"
            } else {
                "--device /dev/net/tun (containers) or modprobe tun"
            });
        }
        (!fixes.is_empty()).then(|| fixes.join("; "))
    }
}

/// The kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into())
}
