//! When segments and ACKs leave (`tcp.ack.coalescing`, `tcp.nagle`, `tcp.sws.avoidance`): the properties pass on this kernel, and hand-made
//! faults on the wire make them fail with a violation that names frames, field, expected and actual:
//! - an nft rule that lets at most ~1 ACK per second leave b makes ACKs come 500 ms late (MUST-40);
//! - `tcp.sws.avoidance`: an nft rule that rewrites the window of b's first three non-SYN segments to 1
//!   makes the right edge creep by a few bytes;
//! - `tcp.nagle`: an nft rule on a's output that clears PSH (`tcp flags set ack`) fails the PSH clause. No
//!   nft rule can make Linux's sender break Nagle itself (nft cannot create segments, and any ACK it drops
//!   is hidden from the capture as well as from a), so the sender-side fault is on the flags.

mod common;

use std::process::Command;

use common::*;

/// b's ACKs (from the property's port 5002) beyond one per second are dropped.
const THROTTLE_ACKS: &str = "b:nft add table inet t; \
     nft add chain inet t o { type filter hook output priority 0 \\; }; \
     nft add rule inet t o tcp sport 5002 tcp flags ack limit rate over 1/second drop";

fn run(
    property: &str,
    name: &str,
    cases: &str,
    seed: &str,
    exec: Option<&str>,
) -> (Option<i32>, String) {
    let out_dir = out_dir(name);
    let mut args = vec![
        "run",
        "--property",
        property,
        "--cases",
        cases,
        "--seed",
        seed,
        "--family",
        "both",
        "--shrink-cases",
        "0",
        "--out",
        out_dir.to_str().unwrap(),
    ];
    if let Some(e) = exec {
        args.extend(["--exec", e]);
    }
    let out = netconform(&args);
    (out.status.code(), text(&out))
}

#[test]
fn ack_coalescing_passes_on_this_kernel() {
    let (code, t) = run("tcp.ack.coalescing", "ack-pass", "8", "20261125", None);
    assert_eq!(code, Some(0), "{t}");
    assert!(
        t.contains("stretch ACK"),
        "the notes report ACK shapes: {t}"
    );
}

#[test]
fn throttled_acks_make_ack_coalescing_fail_must_40() {
    if Command::new("nft").arg("--version").output().is_err() {
        panic!("nft is required for this test: apt-get install nftables");
    }
    let (code, t) = run(
        "tcp.ack.coalescing",
        "ack-throttle",
        "2",
        "5",
        Some(THROTTLE_ACKS),
    );
    assert_eq!(code, Some(1), "{t}");
    assert!(
        t.contains("an ACK came 500 ms or more after the data it acknowledges"),
        "{t}"
    );
    assert!(
        t.contains("field:    time from the first unacknowledged segment to its ACK"),
        "{t}"
    );
    assert!(t.contains("expected: < 500 ms"), "{t}");
}

/// a's segments to the Nagle port lose their PSH flag.
const CLEAR_PSH: &str = "a:nft add table inet t; \
     nft add chain inet t o { type filter hook output priority 0 \\; }; \
     nft add rule inet t o tcp dport 5003 tcp flags psh tcp flags set ack";

#[test]
fn nagle_passes_on_this_kernel() {
    let (code, t) = run("tcp.nagle", "nagle-pass", "12", "20261125", None);
    assert_eq!(code, Some(0), "{t}");
}

#[test]
fn clearing_psh_makes_nagle_fail() {
    if Command::new("nft").arg("--version").output().is_err() {
        panic!("nft is required for this test: apt-get install nftables");
    }
    let (code, t) = run("tcp.nagle", "nagle-psh", "2", "7", Some(CLEAR_PSH));
    assert_eq!(code, Some(1), "{t}");
    assert!(
        t.contains("the segment with the last byte written has no PSH"),
        "{t}"
    );
    assert!(t.contains("field:    flags"), "{t}");
    assert!(t.contains("expected: PSH set"), "{t}");
}

/// b's first three non-SYN segments from the SWS port advertise window 1 (nft fixes the checksum up).
const TINY_WINDOW: &str = "b:nft add table inet t; \
     nft add chain inet t o { type filter hook output priority 0 \\; }; \
     nft add rule inet t o tcp sport 5004 tcp flags \\& syn == 0 limit rate 1/minute burst 3 packets tcp window set 1";

#[test]
fn sws_avoidance_passes_on_this_kernel() {
    let (code, t) = run("tcp.sws.avoidance", "sws-pass", "8", "20261125", None);
    assert_eq!(code, Some(0), "{t}");
}

#[test]
fn tiny_windows_make_sws_avoidance_fail() {
    if Command::new("nft").arg("--version").output().is_err() {
        panic!("nft is required for this test: apt-get install nftables");
    }
    let (code, t) = run("tcp.sws.avoidance", "sws-tiny", "4", "3", Some(TINY_WINDOW));
    assert_eq!(code, Some(1), "{t}");
    assert!(
        t.contains("the receiver advanced its right window edge by a small amount"),
        "{t}"
    );
    assert!(
        t.contains("field:    right edge (ack + scaled window) increase"),
        "{t}"
    );
    assert!(t.contains("expected: >= min(RCV.BUFF/2, MSS)"), "{t}");
}
