//! The passive stdio mode (`--sut-mode stdio`, `docs/driver-protocol.md` "Other modes"), end to end: a
//! deliberately broken stdio SUT of ours (`tests/sut-programs/stdio-tcp.py`: crashes when the peer closes
//! first, ISN 0, never a RST) is reported with each of those findings and no harness error; the same program
//! with the faults switched off (`--fixed`) passes every stdio property, as server and as client, over a TUN
//! device it opens by name and over fd 3. Nothing is left behind.
//!
//! The program runs as an unprivileged uid, so it is copied to a directory every uid may read.

mod common;

use std::path::PathBuf;
use std::sync::Mutex;

use common::*;
use serde_json::Value;

/// These tests compare global host state.
static HOST: Mutex<()> = Mutex::new(());

/// A world-readable copy of the program `name` of the test programs directory.
fn program(name: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sut-programs")
        .join(name);
    let dir = std::env::temp_dir().join(format!("netconform-stdio-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dst = dir.join(name);
    if !dst.exists() {
        std::fs::copy(&src, &dst).unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dst.to_string_lossy().into_owned()
}

/// Runs netconform on the stdio suite with a JSON report; returns (exit code, report, output text).
fn run_stdio(name: &str, sut: &str, extra: &[&str]) -> (i32, Value, String) {
    run_selected(name, sut, &["--suite", "stdio"], extra)
}

/// Runs netconform on `selection` (`--suite`/`--property` arguments) with a JSON report.
fn run_selected(name: &str, sut: &str, selection: &[&str], extra: &[&str]) -> (i32, Value, String) {
    let dir = out_dir(name);
    let json = dir.join("report.json");
    let (j, o) = (json.to_string_lossy(), dir.join("out"));
    let o = o.to_string_lossy();
    let mut args = vec!["run"];
    args.extend(selection);
    args.extend([
        "--cases",
        "3",
        "--seed",
        "19",
        "--sut",
        sut,
        "--sut-mode",
        "stdio",
        "--json",
        &j,
        "--out",
        &o,
    ]);
    args.extend(extra);
    let out = netconform(&args);
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(&json)
            .unwrap_or_else(|e| panic!("no JSON report ({e}):\n{}", text(&out))),
    )
    .unwrap();
    (out.status.code().unwrap_or(-1), report, text(&out))
}

fn property<'r>(report: &'r Value, id: &str) -> &'r Value {
    report["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in the report"))
}

fn count(p: &Value, k: &str) -> u64 {
    p[k].as_u64().unwrap_or(0)
}

#[test]
fn the_broken_stdio_sut_is_reported_with_each_of_its_faults() {
    let _host = HOST.lock().unwrap_or_else(|p| p.into_inner());
    let before = host_state();
    let sut = program("stdio-tcp.py");
    let (rc, report, out) = run_stdio(
        "stdio-broken",
        &sut,
        &[
            "--sut-role",
            "server",
            "--sut-port",
            "5001",
            "--sut-dev",
            "tun144",
            "--family",
            "ipv4",
        ],
    );
    assert_eq!(rc, 1, "{out}");
    for p in report["properties"].as_array().unwrap() {
        assert_eq!(count(p, "error"), 0, "{}: harness error\n{out}", p["id"]);
        assert_eq!(count(p, "invalid"), 0, "{}: invalid\n{out}", p["id"]);
        assert_eq!(count(p, "skip"), 0, "{}: skipped\n{out}", p["id"]);
    }
    // Each fault, by the property that names it: every case finds it.
    for (id, finding) in [
        (
            "stdio.sut.no_crash",
            "SUT crashed after its peer closed first",
        ),
        (
            "stdio.isn.varies",
            "the SUT's initial sequence number is the same for two connections",
        ),
        (
            "stdio.rst.other_port",
            "no RST answered a SYN to another port of the SUT",
        ),
    ] {
        let p = property(&report, id);
        assert_eq!(count(p, "fail"), 3, "{id} must fail every case:\n{out}");
        assert!(
            out.contains(finding),
            "{id}: {finding:?} not reported:\n{out}"
        );
    }
    assert!(
        out.contains("actual:   0 and 0"),
        "the ISNs are named:\n{out}"
    );
    assert!(
        out.contains("SUT stderr: RuntimeError: the peer closed first"),
        "the crash quotes the SUT's stderr:\n{out}"
    );
    // What is not one of its faults passes.
    for id in ["stdio.stream.integrity", "stdio.handshake.mss"] {
        assert_eq!(count(property(&report, id), "pass"), 3, "{id}:\n{out}");
    }
    let left = wait_for_no_leftovers(&before);
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn the_fixed_stdio_sut_passes_as_server_and_client_over_tun_and_fd() {
    let _host = HOST.lock().unwrap_or_else(|p| p.into_inner());
    let before = host_state();
    let sut = format!("{} --fixed", program("stdio-tcp.py"));
    for (name, extra) in [
        (
            "stdio-fixed-server-tun",
            [
                "--sut-role",
                "server",
                "--sut-port",
                "5001",
                "--sut-dev",
                "tun144",
            ],
        ),
        (
            "stdio-fixed-client-fd",
            [
                "--sut-role",
                "client",
                "--sut-port",
                "6001",
                "--attach",
                "fd",
            ],
        ),
    ] {
        let (rc, report, out) = run_stdio(name, &sut, &extra);
        assert_eq!(rc, 0, "{name}:\n{out}");
        for p in report["properties"].as_array().unwrap() {
            assert_eq!(count(p, "pass"), 3, "{name}: {}\n{out}", p["id"]);
        }
    }
    let left = wait_for_no_leftovers(&before);
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The fixed program with one fault switched on fails the property that judges it, in every case, with
/// the finding named: `--no-dup-ack` (out-of-order and old duplicate segments dropped silently) fails
/// `stdio.ack.out_of_order`, `--tiny-segments` (64-byte segments) fails `stdio.sws.avoidance`. (Without the
/// fault both pass: `the_fixed_stdio_sut_passes_as_server_and_client_over_tun_and_fd`.)
#[test]
fn missing_duplicate_acks_and_tiny_segments_are_reported() {
    let _host = HOST.lock().unwrap_or_else(|p| p.into_inner());
    let before = host_state();
    for (flag, id, finding) in [
        (
            "--no-dup-ack",
            "stdio.ack.out_of_order",
            "the SUT did not answer out-of-order data with duplicate ACKs",
        ),
        (
            "--tiny-segments",
            "stdio.sws.avoidance",
            "the SUT sent a short segment while another short one was unacknowledged",
        ),
    ] {
        let sut = format!("{} --fixed {flag}", program("stdio-tcp.py"));
        let (rc, report, out) = run_selected(
            &format!("stdio{flag}"),
            &sut,
            &["--property", id],
            &[
                "--sut-role",
                "server",
                "--sut-port",
                "5001",
                "--sut-dev",
                "tun144",
            ],
        );
        assert_eq!(rc, 1, "{flag}:\n{out}");
        assert_eq!(count(property(&report, id), "fail"), 3, "{flag}:\n{out}");
        assert!(
            out.contains(finding),
            "{flag}: {finding:?} not reported:\n{out}"
        );
    }
    let left = wait_for_no_leftovers(&before);
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A stdio SUT is judged only by the stdio suite: the properties that drive b with socket requests are
/// skipped with that reason, and against the kernel the stdio suite is skipped, never passed.
#[test]
fn stdio_and_request_properties_skip_each_other_with_reasons() {
    let _host = HOST.lock().unwrap_or_else(|p| p.into_inner());
    let sut = format!("{} --fixed", program("stdio-tcp.py"));
    let dir = out_dir("stdio-skips");
    let json = dir.join("report.json");
    let j = json.to_string_lossy().into_owned();
    let out = netconform(&[
        "run",
        "--property",
        "tcp.close.half_close",
        "--cases",
        "1",
        "--sut",
        &sut,
        "--sut-mode",
        "stdio",
        "--sut-role",
        "server",
        "--sut-port",
        "5001",
        "--json",
        &j,
    ]);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let why = report["properties"][0]["skipped"].as_str().unwrap_or("");
    assert!(
        why.contains("a stdio SUT") && why.contains("takes none"),
        "{why}\n{}",
        text(&out)
    );
    let out = netconform(&[
        "run",
        "--property",
        "stdio.isn.varies",
        "--cases",
        "1",
        "--json",
        &j,
    ]);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let why = report["properties"][0]["skipped"].as_str().unwrap_or("");
    assert!(why.contains("--sut-mode stdio"), "{why}\n{}", text(&out));
    let out = netconform(&["run", "--sut", &sut, "--sut-mode", "stdio"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--sut-role"), "{}", text(&out));
}
