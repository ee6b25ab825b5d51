//! Helpers shared by the integration tests: run the binary, snapshot the host's state.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_netconform"))
}

pub fn netconform(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("run netconform")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fresh output directory under the target dir.
pub fn out_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Everything on the host a lab could leave behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostState {
    /// Network namespaces reachable from any process (its threads' ns links and its open fds).
    pub netns: BTreeSet<String>,
    /// Interfaces of the root namespace.
    pub links: BTreeSet<String>,
    /// Mount points of the root mount namespace.
    pub mounts: BTreeSet<String>,
    /// Processes whose command line mentions netconform (other than the test itself).
    pub processes: BTreeSet<String>,
    /// Every pid, and which pids hold each namespace: things held only by processes that existed before
    /// the test (another run on the same machine) are not the test's leftovers.
    pub pids: BTreeSet<u32>,
    pub holders: std::collections::BTreeMap<String, BTreeSet<u32>>,
    /// SUT memory cgroups (`netconform-*` groups in the memory cgroup this test runs in).
    pub cgroups: BTreeSet<String>,
}

impl HostState {
    /// What is on the host now and was not `before`, leaving out what processes older than `before` hold.
    pub fn leftovers_since(&self, before: &HostState) -> Vec<String> {
        let older = |pids: &BTreeSet<u32>| pids.iter().all(|p| before.pids.contains(p));
        let mut out = Vec::new();
        for ns in self.netns.difference(&before.netns) {
            if !self.holders.get(ns).is_some_and(older) {
                out.push(format!("namespace {ns} held by {:?}", self.holders.get(ns)));
            }
        }
        for l in self.links.difference(&before.links) {
            out.push(format!("interface {l}"));
        }
        for m in self.mounts.difference(&before.mounts) {
            out.push(format!("mount {m}"));
        }
        for g in self.cgroups.difference(&before.cgroups) {
            out.push(format!("cgroup {g}"));
        }
        for p in self.processes.difference(&before.processes) {
            let pid: u32 = p
                .split(':')
                .next()
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
            if !before.pids.contains(&pid) {
                out.push(format!("process {p}"));
            }
        }
        out
    }
}

fn read_link(p: &std::path::Path) -> Option<String> {
    std::fs::read_link(p)
        .ok()
        .map(|l| l.to_string_lossy().into_owned())
}

pub fn host_state() -> HostState {
    let me = std::process::id().to_string();
    let mut netns = BTreeSet::new();
    let mut processes = BTreeSet::new();
    let mut pids = BTreeSet::new();
    let mut holders: std::collections::BTreeMap<String, BTreeSet<u32>> = Default::default();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let base = entry.path();
        let pid: u32 = name.parse().unwrap_or(0);
        pids.insert(pid);
        if let Ok(tasks) = std::fs::read_dir(base.join("task")) {
            for t in tasks.flatten() {
                if let Some(l) = read_link(&t.path().join("ns/net")) {
                    holders.entry(l.clone()).or_default().insert(pid);
                    netns.insert(l);
                }
            }
        }
        if let Ok(fds) = std::fs::read_dir(base.join("fd")) {
            for fd in fds.flatten() {
                if let Some(l) = read_link(&fd.path()) {
                    if l.starts_with("net:[") {
                        holders.entry(l.clone()).or_default().insert(pid);
                        netns.insert(l);
                    }
                }
            }
        }
        if name != me {
            if let Ok(cmd) = std::fs::read(base.join("cmdline")) {
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                if cmd.contains("netconform ") && !cmd.contains("cargo") && !cmd.contains("/deps/")
                {
                    processes.insert(format!("{name}: {cmd}"));
                }
            }
        }
    }
    let links = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(|l| l.split(' ').nth(4).unwrap_or("").to_string())
        .collect();
    HostState {
        netns,
        links,
        mounts,
        processes,
        pids,
        holders,
        cgroups: sut_cgroups(),
    }
}

/// The `netconform-*` groups in this process's memory cgroup (v1 `memory` hierarchy or v2), where the
/// sandbox makes one per SUT (`harness/src/sut/cgroup.rs`).
pub fn sut_cgroups() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let roots: &[&str] = if controllers.is_empty() {
            &["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        } else if controllers.split(',').any(|c| c == "memory") {
            &["/sys/fs/cgroup/memory"]
        } else {
            continue;
        };
        for root in roots {
            let dir = std::path::Path::new(root).join(path.trim_start_matches('/'));
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("netconform-") {
                    out.insert(dir.join(name).display().to_string());
                }
            }
        }
    }
    out
}

/// Whether this machine gives SUTs a memory cgroup: a `memory` controller in this process's cgroups.
pub fn memory_cgroup_available() -> bool {
    std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|c| c == "memory"))
        })
        || std::fs::read_to_string("/sys/fs/cgroup/cgroup.subtree_control")
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
}

/// Waits (up to 5 s) until nothing new is left on the host since `before`; returns what is left.
pub fn wait_for_no_leftovers(before: &HostState) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let left = host_state().leftovers_since(before);
        if left.is_empty() || std::time::Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

pub fn tshark_available() -> bool {
    Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Fails the test at once when nft is missing (fault injection needs it; `.ci/run` installs nftables).
pub fn require_nft() {
    if Command::new("nft").arg("--version").output().is_err() {
        panic!("nft is required for this test: apt-get install nftables");
    }
}

/// Runs `property` for `cases` cases of each family with seed `seed` and the `--exec` fault in place, no
/// shrinking; asserts exit code 1 and a FAIL line for the property; returns the output.
pub fn fails_with_fault(name: &str, property: &str, fault: &str, seed: u64, cases: u32) -> String {
    require_nft();
    let out_dir = out_dir(name);
    let (seed, cases) = (seed.to_string(), cases.to_string());
    let out = netconform(&[
        "run",
        "--property",
        property,
        "--cases",
        &cases,
        "--seed",
        &seed,
        "--family",
        "both",
        "--shrink-time",
        "0",
        "--exec",
        fault,
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains(&format!("FAIL {property}")), "{t}");
    t
}

/// A world-readable copy of the smoltcp adapter (it runs as an unprivileged uid), under a directory of this test
/// process.
pub fn smoltcp_adapter() -> String {
    use std::os::unix::fs::PermissionsExt;
    let built = bin().with_file_name("netconform-sut-smoltcp");
    assert!(
        built.exists(),
        "{} is missing: `cargo build --release` at the workspace root builds it",
        built.display()
    );
    let dir = std::env::temp_dir().join(format!("netconform-smoltcp-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let installed = dir.join("netconform-sut-smoltcp");
    if !installed.exists() {
        // Copied under a name of this thread, then renamed: tests running at once never see half a file.
        let partial = dir.join(format!("{:?}.partial", std::thread::current().id()));
        std::fs::copy(&built, &partial).unwrap();
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&partial, &installed).unwrap();
    }
    installed.to_string_lossy().into_owned()
}
