//! The establishment properties of `tcp-lifecycle` against faults injected with nft: b's SYN-ACK MSS
//! rewritten to 500 makes `tcp.handshake.options` fail naming the SYN-ACK options; b's SYN-ACKs dropped
//! make `tcp.accept.backlog` fail (no connect() completes, so nothing is queued for accept()).

mod common;

use std::process::Command;

use common::*;

const REWRITE_MSS: &str = "b:nft add table inet t; \
     nft add chain inet t o { type filter hook output priority -150 \\; }; \
     nft add rule inet t o tcp flags syn tcp option maxseg size set 500";

const DROP_SYN_ACKS: &str = "b:nft add table inet t; \
     nft add chain inet t o { type filter hook output priority 0 \\; }; \
     nft add rule inet t o tcp flags \\& syn != 0 drop";

fn fails_with_fault(name: &str, property: &str, fault: &str) -> String {
    if Command::new("nft").arg("--version").output().is_err() {
        panic!("nft is required for this test: apt-get install nftables");
    }
    let out_dir = out_dir(name);
    let out = netconform(&[
        "run",
        "--property",
        property,
        "--cases",
        "2",
        "--seed",
        "1",
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

#[test]
fn a_rewritten_mss_fails_handshake_options() {
    let t = fails_with_fault("hs-mss", "tcp.handshake.options", REWRITE_MSS);
    assert!(
        t.contains("B's SYN-ACK options do not match the offer, the MTU and B's sysctls"),
        "{t}"
    );
    assert!(
        t.contains("field:    SYN-ACK options") && t.contains("actual:   mss 500,"),
        "{t}"
    );
}

#[test]
fn dropped_syn_acks_fail_accept_backlog() {
    let t = fails_with_fault("hs-drop-synack", "tcp.accept.backlog", DROP_SYN_ACKS);
    assert!(
        t.contains("connect() 1 did not complete before b called accept()"),
        "{t}"
    );
    assert!(t.contains("actual:   timed out"), "{t}");
}
