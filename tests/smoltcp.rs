//! smoltcp on host b through its adapter (`sut/smoltcp`, binary `netconform-sut-smoltcp`), end to end: it meets
//! the driver contract over the fd and TUN attachments, every property that can judge it runs with no harness
//! error and gives smoltcp's known findings (docs/smoltcp.md) and nothing else, and each fault variant of the
//! adapter is caught by a property with a clear violation.
//!
//! The adapter is a workspace member: `cargo build --release` and `cargo test --workspace --release` build it
//! next to `netconform` (its own test, sut/smoltcp/tests/hello.rs, makes `cargo test` build the binary). It
//! runs as an unprivileged uid, so it is copied to a directory every uid may read.

mod common;

use std::path::PathBuf;
use std::sync::Mutex;

use common::*;
use serde_json::Value;

/// One lab run at a time: each uses every core.
static RUNS: Mutex<()> = Mutex::new(());

/// The properties that can judge smoltcp through the adapter (the others need b's kernel or judge a).
const JUDGED: &[&str] = &[
    "tcp.identity.four_tuple",
    "tcp.rst.closed_port",
    "tcp.close.rst_on_unread",
    "tcp.close.half_close",
    "tcp.close.write_after_peer_close",
    "tcp.ack.coalescing",
    "tcp.flow.window_bound",
    "tcp.zero_window.sender",
];

/// `netconform run` of `properties` against `sut` with a JSON report; returns (exit code, report, output).
fn run(
    name: &str,
    sut: &str,
    attach: &str,
    properties: &[&str],
    cases: u32,
    seed: u64,
) -> (i32, Value, String) {
    let _one = RUNS.lock().unwrap_or_else(|p| p.into_inner());
    let dir = out_dir(name);
    let json = dir.join("report.json");
    let (cases, seed) = (cases.to_string(), seed.to_string());
    let mut args = vec![
        "run", "--sut", sut, "--attach", attach, "--cases", &cases, "--seed", &seed,
    ];
    args.extend(["--shrink-time", "0", "--jobs", "16"]);
    for p in properties {
        args.extend(["--property", p]);
    }
    let (j, o) = (
        json.to_string_lossy().into_owned(),
        dir.join("out").to_string_lossy().into_owned(),
    );
    args.extend(["--json", &j, "--out", &o]);
    let out = netconform(&args);
    let t = text(&out);
    let report = serde_json::from_str(
        &std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("no report ({e}):\n{t}")),
    )
    .unwrap();
    (out.status.code().unwrap_or(-1), report, t)
}

fn property<'r>(report: &'r Value, id: &str) -> &'r Value {
    report["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap()
}

fn count(p: &Value, key: &str) -> u64 {
    p[key].as_u64().unwrap_or(0)
}

/// The violation summaries of a property's failing cases.
fn summaries(p: &Value) -> Vec<String> {
    p["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["violation"]["summary"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn smoltcp_meets_the_driver_contract_over_fd_and_tun() {
    let sut = smoltcp_adapter();
    for (attach, family) in [("fd", "ipv4"), ("fd", "ipv6"), ("tun:nc0", "ipv4")] {
        let _one = RUNS.lock().unwrap_or_else(|p| p.into_inner());
        let out = netconform(&["sut-check", "--attach", attach, "--family", family, &sut]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{attach} {family}:\n{t}");
        assert!(t.contains("no deviation from netconform-sut/1"), "{t}");
    }
}

/// Every judged property runs with no harness error, over both attachments; the ones smoltcp conforms to pass,
/// and the three with known findings (docs/smoltcp.md) fail only with those findings.
#[test]
fn smoltcp_gives_its_known_findings_and_nothing_else() {
    let sut = smoltcp_adapter();
    for attach in ["fd", "tun:nc0"] {
        let (rc, report, out) = run(
            &format!("smoltcp-{}", attach.replace(':', "-")),
            &sut,
            attach,
            JUDGED,
            8,
            18,
        );
        assert_eq!(rc, 1, "the known findings fail the run:\n{out}");
        for id in JUDGED {
            let p = property(&report, id);
            assert_eq!(count(p, "error"), 0, "{attach} {id}: harness errors\n{out}");
            assert!(p["skipped"].is_null(), "{attach} {id} was skipped:\n{out}");
        }
        // Invalid cases (a machine too loaded to time a case) are allowed; failures are not.
        for id in [
            "tcp.identity.four_tuple",
            "tcp.close.rst_on_unread",
            "tcp.close.half_close",
            "tcp.ack.coalescing",
            "tcp.flow.window_bound",
        ] {
            let p = property(&report, id);
            assert_eq!(count(p, "fail"), 0, "{attach} {id}:\n{out}");
            assert!(count(p, "pass") >= 6, "{attach} {id}:\n{out}");
        }
        // Finding 1: smoltcp's RST for a segment without ACK (other than a SYN) has no ACK bit.
        for s in summaries(property(&report, "tcp.rst.closed_port")) {
            assert!(
                s.starts_with(
                    "RST for a segment without ACK must be <ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>"
                ),
                "{s}"
            );
        }
        // Finding 2: data after close() is acknowledged, never answered by RST.
        let p = property(&report, "tcp.close.write_after_peer_close");
        assert_eq!(count(p, "pass"), 0, "{out}");
        assert!(count(p, "fail") >= 6, "{out}");
        for s in summaries(p) {
            assert!(
                s.starts_with("data sent after the peer's close() was not answered by a RST"),
                "{s}"
            );
        }
        // Finding 3: smoltcp never probes a zero window (the 3.3–4 s of every case are long enough for two).
        let p = property(&report, "tcp.zero_window.sender");
        assert_eq!(count(p, "pass"), 0, "{out}");
        assert!(count(p, "fail") >= 6, "{out}");
        for s in summaries(p) {
            assert_eq!(s, "b never probed a's zero window", "{out}");
        }
    }
}

/// Runs `property` against the adapter with `--fault fault`; returns the failing cases' summaries and the report.
fn caught(fault: &str, property_id: &str, cases: u32, seed: u64) -> (Vec<String>, Value, String) {
    let sut = format!("{} --fault {fault}", smoltcp_adapter());
    let (rc, report, out) = run(
        &format!("smoltcp-fault-{fault}"),
        &sut,
        "fd",
        &[property_id],
        cases,
        seed,
    );
    assert_eq!(rc, 1, "{fault} must fail {property_id}:\n{out}");
    let p = property(&report, property_id);
    assert_eq!(count(p, "error"), 0, "{out}");
    (summaries(p), report, out)
}

#[test]
fn fault_silent_closed_port_is_caught_by_the_closed_port_rst_property() {
    let (summaries, _, out) = caught("silent-closed-port", "tcp.rst.closed_port", 4, 1);
    assert!(summaries.len() >= 3, "{out}");
    assert!(
        summaries
            .iter()
            .all(|s| s.starts_with("no RST answered a segment to a closed port")),
        "{summaries:?}"
    );
}

#[test]
fn fault_short_fin_ack_is_caught_by_half_close() {
    let (summaries, _, out) = caught("short-fin-ack", "tcp.close.half_close", 4, 1);
    assert!(summaries.len() >= 3, "{out}");
    assert!(
        summaries
            .iter()
            .all(|s| s.starts_with("B never acknowledged A's FIN")),
        "{summaries:?}"
    );
}

/// smoltcp reads every window as 65535 (scaled): it sends past a's window when a's receive buffer is small. The
/// case fails half_close (a drops what does not fit), and the capture shows the cause: `netconform check` names
/// the segments beyond a's right window edge (tcp.window.respected).
#[test]
fn fault_ignore_peer_window_is_caught_by_the_window_invariant() {
    let (_, report, out) = caught("ignore-peer-window", "tcp.close.half_close", 64, 11);
    let pcaps: Vec<PathBuf> = property(&report, "tcp.close.half_close")["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["pcap"].as_str().map(PathBuf::from))
        .collect();
    assert!(!pcaps.is_empty(), "{out}");
    let beyond_window = pcaps.iter().any(|pcap| {
        let t = text(&netconform(&["check", pcap.to_str().unwrap()]));
        t.contains(
            "FAIL tcp.window.respected: a segment goes beyond the receiver's right window edge",
        ) && t.contains("B>A")
    });
    assert!(
        beyond_window,
        "no capture shows b sending beyond a's window:\n{out}"
    );
}

/// Every fourth data segment leaves with a wrong TCP checksum; per-frame validity names the frame.
#[test]
fn fault_bad_checksum_is_caught_by_per_frame_validity() {
    let (summaries, _, out) = caught("bad-checksum", "tcp.close.half_close", 8, 1);
    assert!(
        summaries
            .iter()
            .any(|s| s.to_lowercase().contains("checksum")),
        "{summaries:?}\n{out}"
    );
}

/// Nothing leaves while a's window is zero: no probe. Stock smoltcp 0.12 does not probe either (finding 3 of
/// docs/smoltcp.md), so the variant fails the same way; the violation names a's zero-window frame and the RFC's
/// bound a non-kernel stack is held to.
#[test]
fn fault_no_zero_window_probe_is_caught_by_zero_window_sender() {
    let (summaries, report, out) = caught("no-zero-window-probe", "tcp.zero_window.sender", 4, 1);
    assert!(summaries.len() >= 3, "{out}");
    assert!(
        summaries
            .iter()
            .all(|s| s == "b never probed a's zero window"),
        "{summaries:?}"
    );
    let v = &property(&report, "tcp.zero_window.sender")["problems"][0]["violation"];
    assert_eq!(
        v["clause"], "RFC 9293 §3.8.6.1 (MUST-36: probing of zero windows MUST be supported)",
        "{v}"
    );
    assert_eq!(v["field"], "zero-window probe", "{v}");
    assert!(
        v["expected"].as_str().is_some_and(
            |e| e.starts_with("a probe within 2000 ms of the zero window (RFC 9293 SHLD-29/30")
        ),
        "{v}"
    );
    assert!(
        v["actual"]
            .as_str()
            .is_some_and(|a| a.starts_with("none while the window stayed zero for")),
        "{v}"
    );
    assert_eq!(v["frames"].as_array().map(Vec::len), Some(1), "{v}");
}
