//! Wire validity end to end (`harness/src/validity.rs`): a host that emits bad checksums or a malformed option
//! fails `tcp.random_ops` and `tcp.handshake.options` with a validity violation, `netconform check` finds the
//! same in their captures, and `check` on clean captures of every suite finds nothing.
//!
//! The faults are real packets of host b's kernel, mangled by nft in b's namespace (`--exec`) on the output
//! hook. A raw payload write to the TCP checksum field corrupts it: with TX checksum offload off, the kernel
//! completes the checksum in software after netfilter (`skb_checksum_help`) from whatever the field holds, so
//! the garbage stays. A raw write elsewhere in the header (an option's length byte) is checksummed after it and
//! leaves a well-formed checksum over a malformed option. The output hook sees a write before segmentation, so
//! "every third data segment" is every third skb b sends with PSH (the last segment of a write): all segments
//! of that skb carry the bad checksum.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// An nft output chain in `host`'s namespace with one rule.
fn nft_output_rule(host: &str, rule: &str) -> String {
    format!(
        "{host}:nft add table inet t; nft add chain inet t o {{ type filter hook output priority 0 \\; }}; \
         nft add rule inet t o {rule}"
    )
}

/// Every third PSH segment of b gets checksum 0xdead written over its pseudo-header seed.
const BAD_CHECKSUM: &str = "'tcp flags & psh == psh' numgen inc mod 3 == 0 @th,128,16 set 0xdead";
/// The SYN-ACK's first option (MSS, kind 2 length 4) gets length 9: it crosses the end of the header.
const MALFORMED_SYN_ACK_OPTION: &str = "'tcp flags & (syn|ack) == syn|ack' @th,168,8 set 9";

fn run(property: &str, cases: &str, seed: &str, exec: &str, dir: &Path) -> (Option<i32>, String) {
    let out = netconform(&[
        "run",
        "--property",
        property,
        "--cases",
        cases,
        "--seed",
        seed,
        "--family",
        "both",
        "--shrink-time",
        "0",
        "--confirm",
        "0",
        "--exec",
        exec,
        "--out",
        dir.to_str().unwrap(),
    ]);
    (out.status.code(), text(&out))
}

/// Each failing case's block of the run's output with its pcapng.
fn failures(run_text: &str) -> Vec<(String, PathBuf)> {
    run_text
        .split("\nFAIL ")
        .skip(1)
        .map(|block| {
            let pcap = block
                .lines()
                .find_map(|l| l.trim().strip_prefix("pcapng: "))
                .expect("a failing case names its pcapng");
            (block.to_string(), PathBuf::from(pcap))
        })
        .collect()
}

/// The field, expected and actual lines of the first violation of a block.
fn violation_lines(block: &str) -> Vec<String> {
    block
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("frame(s):")
                || l.starts_with("field:")
                || l.starts_with("expected:")
                || l.starts_with("actual:")
        })
        .take(4)
        .map(str::to_string)
        .collect()
}

fn check(pcap: &Path) -> (Option<i32>, String) {
    let out = netconform(&["check", pcap.to_str().unwrap()]);
    (out.status.code(), text(&out))
}

#[test]
fn bad_checksums_of_every_third_write_fail_random_ops_and_check_finds_the_same() {
    let dir = out_dir("validity-bad-checksum");
    let (code, t) = run(
        "tcp.random_ops",
        "8",
        "3",
        &nft_output_rule("b", BAD_CHECKSUM),
        &dir,
    );
    assert_eq!(code, Some(1), "{t}");
    let failed = failures(&t);
    assert!(!failed.is_empty(), "{t}");
    for (block, pcap) in failed {
        assert!(
            block.contains("[invariant tcp.header.valid] a TCP checksum is wrong")
                && block.contains("[RFC 9293 §3.1 (Checksum over the pseudo-header, MUST-2)]")
                && block.contains("field:    tcp.checksum"),
            "{block}"
        );
        check_finds_the_same(
            &pcap,
            &block,
            "FAIL tcp.header.valid: a TCP checksum is wrong",
        );
    }
}

/// `netconform check` on the failing case's pcapng fails with `fail_line` and repeats every violation line
/// the run printed in `block`.
fn check_finds_the_same(pcap: &Path, block: &str, fail_line: &str) {
    let (code, c) = check(pcap);
    assert_eq!(code, Some(1), "{c}");
    assert!(c.contains(fail_line), "{c}");
    for line in violation_lines(block) {
        assert!(
            c.contains(&line),
            "check misses {line:?}:\n{c}\nrun said:\n{block}"
        );
    }
}

#[test]
fn a_malformed_syn_ack_option_fails_handshake_options_and_check_finds_the_same() {
    let dir = out_dir("validity-malformed-option");
    let (code, t) = run(
        "tcp.handshake.options",
        "2",
        "5",
        &nft_output_rule("b", MALFORMED_SYN_ACK_OPTION),
        &dir,
    );
    assert_eq!(code, Some(1), "{t}");
    let failed = failures(&t);
    assert_eq!(failed.len(), 2, "{t}"); // 2 cases (ipv4, ipv6)
    for (block, pcap) in failed {
        assert!(
            block.contains("[invariant tcp.header.valid] a TCP option is malformed")
                && block.contains("frame(s): #2")
                && block.contains("field:    tcp.options")
                && block.contains("actual:   tcp option: kind 2 length 9"),
            "{block}"
        );
        // The segment is still traced: its options show where they went wrong.
        assert!(
            block.contains("B>A  S. 0:0(0) ack 1") && block.contains("<malformed>"),
            "{block}"
        );
        check_finds_the_same(
            &pcap,
            &block,
            "FAIL tcp.header.valid: a TCP option is malformed",
        );
    }
}

#[test]
fn check_finds_nothing_in_clean_captures_of_every_suite() {
    let dir = out_dir("validity-clean");
    let out = netconform(&[
        "run",
        "--cases",
        "8",
        "--seed",
        "20261203",
        "--pcap",
        "all",
        "-q",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut pcaps = Vec::new();
    for property in std::fs::read_dir(&dir).unwrap() {
        for f in std::fs::read_dir(property.unwrap().path()).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "pcapng") {
                pcaps.push(f);
            }
        }
    }
    // 28 properties × 8 cases (families alternate).
    assert_eq!(pcaps.len(), 28 * 8, "{}", text(&out));
    for pcap in &pcaps {
        let (code, c) = check(pcap);
        assert_eq!(code, Some(0), "{}:\n{c}", pcap.display());
        assert!(
            c.contains(" 0 finding(s)")
                && !c.contains("capture may be lossy")
                && !c.contains("capture artifact"),
            "{}:\n{c}",
            pcap.display()
        );
    }
}
