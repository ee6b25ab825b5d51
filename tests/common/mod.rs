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
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let base = entry.path();
        if let Ok(tasks) = std::fs::read_dir(base.join("task")) {
            for t in tasks.flatten() {
                if let Some(l) = read_link(&t.path().join("ns/net")) {
                    netns.insert(l);
                }
            }
        }
        if let Ok(fds) = std::fs::read_dir(base.join("fd")) {
            for fd in fds.flatten() {
                if let Some(l) = read_link(&fd.path()) {
                    if l.starts_with("net:[") {
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
    }
}

/// Waits (up to 5 s) until the host state equals `before`; returns the last state seen.
pub fn wait_for_state(before: &HostState) -> HostState {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let now = host_state();
        if &now == before || std::time::Instant::now() > deadline {
            return now;
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
