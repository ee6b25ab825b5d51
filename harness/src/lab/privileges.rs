//! What netconform needs from the process before it builds any lab, checked up front so a missing privilege is
//! one clear line (exit code 2), not a confusing failure in the middle of a run.

use crate::error::HarnessError;

const CAP_NET_ADMIN: u32 = 12; // include/uapi/linux/capability.h
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;

const REMEDY: &str =
    "run as root (sudo netconform …) or in a container started with --cap-add NET_ADMIN \
                      --cap-add SYS_ADMIN --cap-add NET_RAW --device /dev/net/tun";

fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

/// Checks capabilities, /dev/net/tun, and that an anonymous network namespace can really be made.
pub fn check() -> Result<(), HarnessError> {
    let caps = effective_caps().unwrap_or(0);
    let missing: Vec<&str> = [
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
        (CAP_NET_RAW, "CAP_NET_RAW"),
    ]
    .iter()
    .filter(|(bit, _)| caps & (1u64 << bit) == 0)
    .map(|(_, name)| *name)
    .collect();
    if !missing.is_empty() {
        // SAFETY: geteuid has no preconditions.
        let who = if unsafe { libc::geteuid() } == 0 {
            "root without"
        } else {
            "not root: missing"
        };
        return Err(HarnessError::Privilege {
            what: format!(
                "netconform needs {}; this process is {who} {}",
                missing.join(", "),
                missing.join(", ")
            ),
            remedy: REMEDY.into(),
        });
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Err(HarnessError::Privilege {
            what: "/dev/net/tun is missing (needed by the relay and peer links)".into(),
            remedy: REMEDY.into(),
        });
    }
    // A seccomp profile or user-namespace policy can still refuse unshare: try it once on a scratch thread.
    let probe = std::thread::spawn(super::nsfd::NetNs::new_on_this_thread)
        .join()
        .map_err(|_| HarnessError::HostThread("namespace probe panicked".into()))?;
    if let Err(e) = probe {
        return Err(HarnessError::Privilege {
            what: format!("cannot create a network namespace (unshare(CLONE_NEWNET): {e})"),
            remedy: REMEDY.into(),
        });
    }
    Ok(())
}
