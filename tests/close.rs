//! The closing properties of `tcp-lifecycle` against faults injected with nft: b's FINs dropped before they
//! leave make `tcp.close.half_close` fail (a never sees b's FIN, its read never reaches EOF); b's RSTs
//! dropped make `tcp.close.write_after_peer_close` fail (the data written after b's close() is never
//! answered, and the later writes succeed instead of failing with EPIPE); b's FINs dropped fail
//! `tcp.close.shapes` too.

mod common;

use common::*;

const DROP_B_FINS: &str = "b:nft add table inet t; \
     nft add chain inet t o { type filter hook output priority 0 \\; }; \
     nft add rule inet t o tcp flags \\& fin != 0 drop";

const DROP_B_RSTS: &str = "b:nft add table inet t; \
     nft add chain inet t o { type filter hook output priority 0 \\; }; \
     nft add rule inet t o tcp flags \\& rst != 0 drop";

#[test]
fn dropped_fins_fail_half_close() {
    let t = fails_with_fault("close-drop-fin", "tcp.close.half_close", DROP_B_FINS, 3, 2);
    assert!(
        t.contains(
            "B's close() after its data sent no FIN [RFC 9293 §3.6 (MAY-1: half-duplex close)]"
        ) || t.contains("B's close() after its data sent no FIN (and"),
        "{t}"
    );
    assert!(
        t.contains("expected: a FIN from B at seq") && t.contains("actual:   no FIN from B"),
        "{t}"
    );
}

#[test]
fn dropped_rsts_fail_write_after_peer_close() {
    let t = fails_with_fault(
        "close-drop-rst",
        "tcp.close.write_after_peer_close",
        DROP_B_RSTS,
        3,
        2,
    );
    assert!(
        t.contains("data sent after the peer's close() was not answered by a RST"),
        "{t}"
    );
    assert!(t.contains("actual:   no RST in the capture"), "{t}");
    assert!(
        t.contains("a write after the peer's RST did not fail with EPIPE"),
        "{t}"
    );
}

#[test]
fn dropped_fins_fail_close_shapes() {
    let t = fails_with_fault("shapes-drop-fin", "tcp.close.shapes", DROP_B_FINS, 3, 2);
    assert!(
        t.contains("B closed without sending a FIN [RFC 9293 §3.6]"),
        "{t}"
    );
    assert!(
        t.contains("expected: a FIN from B") && t.contains("actual:   none in the capture"),
        "{t}"
    );
}
