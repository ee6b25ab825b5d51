//! `tcp.ack.coalescing` against a fault: b drops every pure ACK it sends (nft, b's output), so the data a
//! sends is never acknowledged on the wire and MUST-40's 500 ms bound is broken.

mod common;

use std::process::Command;

use common::*;

const DROP_B_ACKS: &str = "b:nft add table inet t; \
     nft add chain inet t o { type filter hook output priority 0 \\; }; \
     nft add rule inet t o tcp flags == ack drop";

#[test]
fn dropped_acks_fail_ack_coalescing() {
    if Command::new("nft").arg("--version").output().is_err() {
        panic!("nft is required for this test: apt-get install nftables");
    }
    let out_dir = out_dir("segments-drop-acks");
    let out = netconform(&[
        "run",
        "--property",
        "tcp.ack.coalescing",
        "--cases",
        "2",
        "--seed",
        "1",
        "--family",
        "both",
        "--shrink-time",
        "0",
        "--exec",
        DROP_B_ACKS,
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("FAIL tcp.ack.coalescing"), "{t}");
    assert!(t.contains("a data segment was never acknowledged"), "{t}");
    assert!(
        t.contains("expected: ≥ 1449 within 500 ms")
            || t.contains("expected: ≥ 1429 within 500 ms"),
        "{t}"
    );
    assert!(t.contains("actual:   no such ACK in the capture"), "{t}");
}
