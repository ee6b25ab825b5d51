//! A memory cgroup per SUT: the bound on everything its processes hold together.
//!
//! `RLIMIT_AS` bounds one process; a SUT that forks (up to `RLIMIT_NPROC` processes) and allocates in each
//! could still take `processes × address space`. A cgroup counts the resident memory of every process in
//! it, children included, so it is the real bound. The group is created under the memory cgroup the harness
//! itself is in (cgroup v1's `memory` hierarchy or the v2 unified one, as `/proc/self/cgroup` names it), as
//! `netconform-<our pid>-<uid>-<n>` (n counts the groups this process made: a name is never reused, so an
//! earlier group whose removal is still pending cannot be removed under a later SUT); the shim joins it before it forks the SUT (writing `0` to `cgroup.procs`
//! moves the writer), so nothing of the SUT ever runs outside it. Swap is not counted against the limit
//! where the kernel has no swap accounting; the machine kinds this runs on have no swap.
//!
//! Where no writable memory controller is found (a container without cgroup delegation, a read-only
//! `/sys/fs/cgroup`), [`MemoryCgroup::create`] says why and the sandbox runs with the rlimits alone: the
//! run goes on, the reason is printed once (`netconform doctor` shows it too).
//!
//! When the limit is reached the kernel's OOM killer ends a process of the group with SIGKILL: the SUT
//! "crashed", and [`MemoryCgroup::oom_kills`] lets the report say it was the memory limit.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long removal waits for the last process to leave the group (the kernel frees it asynchronously
/// after the final reap).
const REMOVE_WAIT: Duration = Duration::from_millis(500);

/// One SUT's memory cgroup; removed when dropped.
#[derive(Debug)]
pub struct MemoryCgroup {
    dir: PathBuf,
    v2: bool,
    /// `<dir>/cgroup.procs`, for the shim to join without allocating after fork.
    procs: CString,
    limit: u64,
}

impl MemoryCgroup {
    /// Creates the group for the SUT of `uid`, limited to `bytes`. `Err` says why there is none.
    pub fn create(uid: u32, bytes: u64) -> Result<MemoryCgroup, String> {
        static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let (base, v2) = own_memory_cgroup()?;
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = base.join(format!("netconform-{}-{uid}-{n}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let group = MemoryCgroup {
            procs: CString::new(dir.join("cgroup.procs").as_os_str().as_encoded_bytes())
                .map_err(|_| "cgroup path with a NUL byte".to_string())?,
            dir,
            v2,
            limit: bytes,
        };
        let (limit_file, swap_file) = if v2 {
            ("memory.max", "memory.swap.max")
        } else {
            ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
        };
        std::fs::write(group.dir.join(limit_file), bytes.to_string())
            .map_err(|e| format!("cannot set {}: {e}", group.dir.join(limit_file).display()))?;
        // Swap accounting exists only where the kernel has it; without swap there is nothing to bound.
        let swap = if v2 {
            "0".to_string()
        } else {
            bytes.to_string()
        };
        let _ = std::fs::write(group.dir.join(swap_file), swap);
        Ok(group)
    }

    /// `<group>/cgroup.procs`: writing `0` there moves the writing process into the group.
    pub fn procs_file(&self) -> &CString {
        &self.procs
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// How many processes of the group the OOM killer ended (0 where the kernel does not count them).
    pub fn oom_kills(&self) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        std::fs::read_to_string(self.dir.join(file))
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// v1 only: whether the limit was ever hit (`memory.failcnt`), for kernels without an `oom_kill` count.
    fn limit_hit(&self) -> bool {
        !self.v2
            && std::fs::read_to_string(self.dir.join("memory.failcnt"))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .is_some_and(|n| n > 0)
    }

    /// Whether the SUT's end was the memory limit's doing.
    pub fn killed_by_limit(&self) -> bool {
        self.oom_kills() > 0 || self.limit_hit()
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + REMOVE_WAIT;
        while std::fs::remove_dir(&self.dir).is_err() && self.dir.exists() {
            if Instant::now() >= deadline {
                // Still busy: a process of the SUT outlived its shim (the sandbox retires the uid then too).
                // The group holds no memory once it is empty; the kernel keeps the directory until rmdir.
                eprintln!(
                    "netconform: {} still has processes; remove it with rmdir once they are gone",
                    self.dir.display()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The directory of the memory cgroup this process is in, and whether it is cgroup v2.
fn own_memory_cgroup() -> Result<(PathBuf, bool), String> {
    let text = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(id), Some(c), Some(p)) => (id, c, p),
            _ => continue,
        };
        let v2 = controllers.is_empty();
        if !v2 && !controllers.split(',').any(|c| c == "memory") {
            continue;
        }
        let Some(mount) = mount_point(&mounts, v2) else {
            continue;
        };
        let dir = mount.join(path.trim_start_matches('/'));
        let probe = if v2 {
            "cgroup.subtree_control"
        } else {
            "memory.limit_in_bytes"
        };
        if v2 {
            let enabled = std::fs::read_to_string(dir.join(probe)).unwrap_or_default();
            if !enabled.split_whitespace().any(|c| c == "memory") {
                continue;
            }
        } else if !dir.join(probe).exists() {
            continue;
        }
        return Ok((dir, v2));
    }
    Err("no memory cgroup controller this process may use (cgroup v1 `memory` or v2 with `memory` in \
         cgroup.subtree_control)"
        .into())
}

/// Where the memory hierarchy (v1) or the unified hierarchy (v2) is mounted, from mountinfo.
fn mount_point(mountinfo: &str, v2: bool) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut rf = right.split_whitespace();
        let fstype = rf.next()?;
        let _source = rf.next();
        let super_opts = rf.next().unwrap_or("");
        let mount = left.split_whitespace().nth(4)?;
        let ok = if v2 {
            fstype == "cgroup2"
        } else {
            fstype == "cgroup" && super_opts.split(',').any(|o| o == "memory")
        };
        // A read-only mount cannot hold our group.
        let writable = left
            .split_whitespace()
            .nth(5)
            .is_some_and(|opts| opts.split(',').any(|o| o == "rw"));
        (ok && writable).then(|| Path::new(mount).to_path_buf())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 1 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 30 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 30 0:33 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn mount_points_are_read_from_mountinfo() {
        assert_eq!(
            mount_point(MOUNTINFO, false),
            Some(PathBuf::from("/sys/fs/cgroup/memory"))
        );
        assert_eq!(
            mount_point(MOUNTINFO, true),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn a_read_only_hierarchy_is_not_used() {
        let ro = "35 30 0:32 / /sys/fs/cgroup/memory ro,relatime - cgroup cgroup rw,memory\n";
        assert_eq!(mount_point(ro, false), None);
    }
}
