//! `tcp.reorder.sack` against a fault: b drops every segment it sends that carries a SACK option (nft, b's
//! output), so the relay sees duplicate ACKs without SACK blocks although SACK was negotiated.

mod common;

use common::*;

const DROP_SACKS: &str = "b:nft add table inet t; \
     nft add chain inet t o { type filter hook output priority 0 \\; }; \
     nft add rule inet t o tcp option sack exists drop";

#[test]
fn dropping_sack_blocks_fails_reorder_sack() {
    // Seed 1: the IPv4 case negotiates SACK on both hosts.
    let t = fails_with_fault("loss-drop-sack", "tcp.reorder.sack", DROP_SACKS, 1, 2);
    assert!(t.contains("FAIL tcp.reorder.sack case 0 (ipv4"), "{t}");
    assert!(
        t.contains("no duplicate ACK carried a SACK block although SACK was negotiated"),
        "{t}"
    );
    assert!(
        t.contains("field:    SACK blocks") && t.contains("actual:   none"),
        "{t}"
    );
}
