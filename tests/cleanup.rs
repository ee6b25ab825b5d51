//! Nothing is left behind on the host: after a normal exit, a panic inside a property, Ctrl-C, and SIGKILL of
//! the process, the host has no new network namespaces, interfaces, mounts or processes. Each test also
//! checks that labs *were* live while the process ran, so the comparison cannot pass vacuously.
//!
//! These tests compare global host state, so they take a lock and live in their own test binary (cargo runs
//! test binaries one after another).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

static HOST: Mutex<()> = Mutex::new(());

/// Starts `netconform run --property selftest.hang`, waits until its labs are live, returns the child.
fn start_hanging_run(jobs: &str) -> std::process::Child {
    let mut child = Command::new(bin())
        .args([
            "run",
            "--property",
            "selftest.hang",
            "--cases",
            jobs,
            "--jobs",
            jobs,
        ])
        .env("NETCONFORM_SELFTEST", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start netconform");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut live = 0;
    let want: usize = jobs.parse().unwrap();
    while live < want {
        assert!(Instant::now() < deadline, "labs never became live");
        match lines.next() {
            Some(Ok(l)) if l.contains("selftest: labs live") => live += 1,
            Some(_) => {}
            None => panic!("netconform exited before its labs were live"),
        }
    }
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

fn assert_labs_visible(before: &HostState) {
    let during = host_state();
    let new: Vec<_> = during.netns.difference(&before.netns).collect();
    assert!(
        new.len() >= 2,
        "expected live lab namespaces during the run, found {new:?}"
    );
}

#[test]
fn sigkill_leaves_nothing_behind() {
    let _g = HOST.lock().unwrap_or_else(|e| e.into_inner());
    let before = host_state();
    let mut child = start_hanging_run("3");
    assert_labs_visible(&before);
    // End only the process we started, by its id.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    let left = wait_for_no_leftovers(&before);
    assert!(
        left.is_empty(),
        "host state changed after SIGKILL: {left:?}"
    );
}

#[test]
fn sigterm_is_an_interruption_too() {
    let _g = HOST.lock().unwrap_or_else(|e| e.into_inner());
    let before = host_state();
    let child = start_hanging_run("2");
    assert_labs_visible(&before);
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let left = wait_for_no_leftovers(&before);
    assert!(
        left.is_empty(),
        "host state changed after SIGTERM: {left:?}"
    );
}

#[test]
fn ctrl_c_leaves_nothing_behind_and_reports_partial_results() {
    let _g = HOST.lock().unwrap_or_else(|e| e.into_inner());
    let before = host_state();
    let child = start_hanging_run("2");
    assert_labs_visible(&before);
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    // The hanging cases finish their sleep; the run stops starting new ones, reports what finished and
    // exits 130 (interrupted, as shells report SIGINT).
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("INTERRUPTED"),
        "{}",
        text(&out)
    );
    let left = wait_for_no_leftovers(&before);
    assert!(left.is_empty(), "host state changed after Ctrl-C: {left:?}");
}

#[test]
fn panic_inside_a_property_is_an_error_and_leaves_nothing_behind() {
    let _g = HOST.lock().unwrap_or_else(|e| e.into_inner());
    let before = host_state();
    let out = Command::new(bin())
        .args([
            "run",
            "--property",
            "selftest.panic",
            "--cases",
            "4",
            "--jobs",
            "2",
        ])
        .env("NETCONFORM_SELFTEST", "1")
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("panic inside property selftest.panic"), "{t}");
    assert!(t.contains("ERROR"), "{t}");
    let left = wait_for_no_leftovers(&before);
    assert!(
        left.is_empty(),
        "host state changed after a panic inside a property: {left:?}"
    );
}

#[test]
fn normal_run_leaves_nothing_behind() {
    let _g = HOST.lock().unwrap_or_else(|e| e.into_inner());
    let before = host_state();
    let out = netconform(&["run", "--cases", "16", "--seed", "7"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let left = wait_for_no_leftovers(&before);
    assert!(
        left.is_empty(),
        "host state changed after a normal run: {left:?}"
    );
}
