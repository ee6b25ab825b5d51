//! Faults against the zero-window properties (issue: TCP data suite): an nft rule that drops every probe a
//! sends makes `tcp.zero_window.probes` fail with "no zero-window probe"; an nft rule that rewrites every
//! window b advertises after the handshake to 0, so b's window update never says the window opened, makes it
//! fail with "not every byte written was read" and "no window update ever followed the zero window".
//!
//! `tcp.zero_window.sender` (b sends into a's zero window) passes with the kernel as b, and fails with "b never
//! probed a's zero window" when an nft rule drops b's probes; with smoltcp as b it is `tests/smoltcp.rs`.

mod common;

use common::*;

/// a drops its own pure ACKs (no payload, flags exactly ACK) before they reach the device: with timestamps
/// a TCP header is 32 bytes (IPv4 total length 52, IPv6 payload length 32), without 20 (40 / 20). In the
/// zero-window cases a sends pure ACKs only for the handshake (b's first data-less ACK is then completed by
/// a's first data segment) and for its probes.
const DROP_PROBES: &str = "a:nft add table inet t; \
     nft add chain inet t o { type filter hook output priority 0 \\; }; \
     nft add rule inet t o meta nfproto ipv4 tcp flags == ack ip length { 40, 52 } drop; \
     nft add rule inet t o meta nfproto ipv6 tcp flags == ack ip6 length { 20, 32 } drop";

/// Every segment b sends after its SYN-ACK advertises window 0 (nft fixes the checksum up).
const ZERO_EVERY_WINDOW: &str = "b:nft add table inet t; \
     nft add chain inet t o { type filter hook output priority 0 \\; }; \
     nft add rule inet t o tcp flags \\& syn == 0 tcp window set 0";

#[test]
fn dropping_every_probe_fails_zero_window_probes() {
    let t = fails_with_fault(
        "zw-drop-probes",
        "tcp.zero_window.probes",
        DROP_PROBES,
        7,
        2,
    );
    assert!(
        t.contains("no zero-window probe while the window was zero [RFC 9293 §3.8.6.1 (MUST-36)]"),
        "{t}"
    );
    assert!(
        t.contains("field:    probes") && t.contains("actual:   none"),
        "{t}"
    );
}

#[test]
fn a_window_update_rewritten_to_zero_fails_zero_window_probes() {
    let t = fails_with_fault(
        "zw-zero-window",
        "tcp.zero_window.probes",
        ZERO_EVERY_WINDOW,
        7,
        2,
    );
    // The stalled transfer is the first finding, the missing update the second (listed in the summary).
    assert!(
        t.contains("not every byte written was read (and 1 more: no window update ever followed the zero window)"),
        "{t}"
    );
    assert!(t.contains("field:    bytes read by b"), "{t}");
}

/// b drops its own pure ACKs: as the sender of `tcp.zero_window.sender` (b accepted, a sends no data) its only
/// pure ACKs are its zero-window probes.
const B_DROPS_PROBES: &str = "b:nft add table inet t; \
     nft add chain inet t o { type filter hook output priority 0 \\; }; \
     nft add rule inet t o meta nfproto ipv4 tcp flags == ack ip length { 40, 52 } drop; \
     nft add rule inet t o meta nfproto ipv6 tcp flags == ack ip6 length { 20, 32 } drop";

#[test]
fn the_kernel_as_sender_passes_zero_window_sender() {
    let out = netconform(&[
        "run",
        "--property",
        "tcp.zero_window.sender",
        "--cases",
        "8",
        "--seed",
        "3",
        "--out",
        out_dir("zw-sender-pass").to_str().unwrap(),
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("Linux tcp_probe0_when: 200 ms"), "{t}");
}

#[test]
fn dropping_bs_probes_fails_zero_window_sender() {
    let t = fails_with_fault(
        "zw-sender-drop-probes",
        "tcp.zero_window.sender",
        B_DROPS_PROBES,
        7,
        2,
    );
    assert!(
        t.contains("b never probed a's zero window [RFC 9293 §3.8.6.1 (MUST-36: probing of zero windows MUST be supported)]"),
        "{t}"
    );
    assert!(
        t.contains("field:    zero-window probe")
            && t.contains(
                "expected: a probe within 290 ms of the zero window (Linux tcp_probe0_when"
            )
            && t.contains("actual:   none while the window stayed zero for"),
        "{t}"
    );
}
