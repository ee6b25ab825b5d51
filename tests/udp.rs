//! The UDP suite end to end: every property passes on this kernel for both families (the suite's wall time
//! is printed), and faults injected with `--exec` make the matching property fail with a clear violation:
//! an nft rule that rewrites the UDP length field fails `udp.wire.header`; an nft rule that drops one datagram
//! before it reaches b's socket fails `udp.rcvbuf.overflow_drops` (neither queued nor counted as a buffer
//! drop). Each failing case leaves a pcapng that tshark reads and a case file that `replay` reproduces.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::*;

const UDP_IDS: [&str; 7] = [
    "udp.closed_port.icmp",
    "udp.bind.per_host",
    "udp.wire.header",
    "udp.recv.boundaries",
    "udp.recv.truncate",
    "udp.send.unresolved",
    "udp.rcvbuf.overflow_drops",
];

/// a rewrites the UDP length field of everything it sends to 20 (nft fixes the checksum up incrementally).
const MANGLE_UDP_LENGTH: &str = "a:nft add table inet t; \
     nft add chain inet t o { type filter hook output priority 0 \\; }; \
     nft add rule inet t o udp length set 20";

/// b drops, before any socket sees it, every UDP datagram whose first payload byte is 3: the property's
/// 4th datagram (its payloads start with their index; the truesize calibration datagrams start with 255).
const DROP_UDP_AT_B: &str = "b:nft add table inet t; \
     nft add chain inet t i { type filter hook input priority 0 \\; }; \
     nft add rule inet t i meta l4proto udp @th,64,8 3 drop";

fn pcaps_in(dir: &Path) -> Vec<PathBuf> {
    let mut pcaps: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcapng"))
        .collect();
    pcaps.sort();
    pcaps
}

/// tshark reads the pcapng without a warning and sees as many frames as netconform wrote.
fn tshark_reads(pcap: &Path) {
    assert!(
        tshark_available(),
        "tshark is required for this test: apt-get install tshark"
    );
    let tshark = Command::new("tshark").arg("-r").arg(pcap).output().unwrap();
    assert!(tshark.status.success(), "{}", text(&tshark));
    let warnings: Vec<String> = String::from_utf8_lossy(&tshark.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("Running as user \"root\""))
        .map(str::to_string)
        .collect();
    assert!(warnings.is_empty(), "tshark warned: {warnings:?}");
    let tshark_frames = String::from_utf8_lossy(&tshark.stdout).lines().count();
    let ours = harness::pcapng::read_capture(pcap).unwrap().len();
    assert!(ours >= 1);
    assert_eq!(tshark_frames, ours);
}

fn replay_fails_with(case: &Path, out_dir: &Path, needle: &str) {
    let replay = netconform(&[
        "replay",
        case.to_str().unwrap(),
        "--out",
        out_dir.join("replay").to_str().unwrap(),
    ]);
    let rt = text(&replay);
    assert_eq!(replay.status.code(), Some(1), "{rt}");
    assert!(rt.contains(needle), "{rt}");
}

#[test]
fn the_udp_suite_passes_on_this_kernel_for_both_families() {
    let out_dir = out_dir("udp-pass");
    let json = out_dir.join("report.json");
    let started = Instant::now();
    let out = netconform(&[
        "run",
        "--suite",
        "udp",
        "--family",
        "both",
        "--cases",
        "64",
        "--seed",
        "20261126",
        "--jobs",
        "8",
        "--out",
        out_dir.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let wall = started.elapsed();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    eprintln!("udp suite, 64 cases per property, both families: {wall:.2?} wall time");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let props = report["properties"].as_array().unwrap();
    let ids: Vec<&str> = props.iter().map(|p| p["id"].as_str().unwrap()).collect();
    let udp: Vec<&str> = suites::all()
        .iter()
        .map(|p| p.info())
        .filter(|i| i.suite == "udp")
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, udp, "the udp suite runs every udp property");
    for id in &UDP_IDS {
        assert!(ids.contains(id), "{id} missing");
    }
    for p in props {
        assert_eq!(p["pass"], 64, "{p}");
    }
}

#[test]
fn a_mangled_udp_length_fails_udp_wire_header() {
    require_nft();
    let out_dir = out_dir("udp-mangle-length");
    let out = netconform(&[
        "run",
        "--property",
        "udp.wire.header",
        "--cases",
        "4",
        "--seed",
        "5",
        "--family",
        "both",
        "--exec",
        MANGLE_UDP_LENGTH,
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("FAIL udp.wire.header"), "{t}");
    // The wire-validity rule leads (harness/src/validity.rs: a malformed frame explains any later finding);
    // the property's own finding follows in the summary.
    assert!(
        t.contains("[invariant udp.header.valid] a UDP length field is wrong")
            && t.contains(
                "the property's own check: datagram 1: the length field is not 8 + payload"
            ),
        "{t}"
    );
    assert!(
        t.contains("field:    udp.length") && t.contains("actual:   20"),
        "{t}"
    );
    let pcaps = pcaps_in(&out_dir.join("udp.wire.header"));
    assert_eq!(pcaps.len(), 4, "{t}");
    tshark_reads(&pcaps[0]);
    // The capture itself shows the rewritten field: tshark reads UDP length 20.
    let lengths = Command::new("tshark")
        .arg("-r")
        .arg(&pcaps[0])
        .args(["-Y", "udp", "-T", "fields", "-e", "udp.length"])
        .output()
        .unwrap();
    let lengths = String::from_utf8_lossy(&lengths.stdout);
    assert!(lengths.lines().any(|l| l.trim() == "20"), "{lengths}");
    replay_fails_with(
        &pcaps[0].with_extension("json"),
        &out_dir,
        "the property's own check: datagram 1: the length field is not 8 + payload",
    );
}

#[test]
fn dropped_datagrams_fail_udp_rcvbuf_overflow_drops() {
    require_nft();
    let out_dir = out_dir("udp-drop");
    let out = netconform(&[
        "run",
        "--property",
        "udp.rcvbuf.overflow_drops",
        "--cases",
        "2",
        "--seed",
        "11",
        "--family",
        "both",
        "--exec",
        DROP_UDP_AT_B,
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("FAIL udp.rcvbuf.overflow_drops"), "{t}");
    assert!(
        t.contains("was not queued although it fits") && t.contains("neither queued nor counted"),
        "{t}"
    );
    assert!(t.contains("RcvbufErrors did not rise by exactly"), "{t}");
    let pcaps = pcaps_in(&out_dir.join("udp.rcvbuf.overflow_drops"));
    assert_eq!(pcaps.len(), 2, "{t}");
    tshark_reads(&pcaps[0]);
    replay_fails_with(
        &pcaps[0].with_extension("json"),
        &out_dir,
        "was not queued although it fits",
    );
}
