//! Operation sequences end to end: random programs pass on this kernel, a deliberate model fault is found,
//! shrunk to a handful of ops, confirmed and replayed, and every committed case file replays as named.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use harness::runner::{CaseSpec, CaseStatus, DynProperty};

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases")
}

fn replay_case(file: &Path) -> CaseStatus {
    let spec: CaseSpec = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let prop: &dyn DynProperty = suites::all_including_selftest()
        .into_iter()
        .find(|p| p.info().id == spec.property)
        .unwrap_or_else(|| panic!("{}: unknown property {}", file.display(), spec.property));
    prop.run_case(&spec).status
}

#[test]
fn random_programs_pass_on_this_kernel() {
    let out = out_dir("random-ops-pass");
    let r = netconform(&[
        "run",
        "--property",
        "tcp.random_ops",
        "--cases",
        "150",
        "--seed",
        "77",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r));
}

#[test]
fn a_model_fault_is_found_shrunk_to_at_most_5_ops_confirmed_and_replayed() {
    let out = out_dir("model-fault");
    let json = out.join("report.json");
    let r = netconform(&[
        "run",
        "--property",
        "tcp.random_ops",
        "--cases",
        "64",
        "--seed",
        "11",
        "--model-fault",
        "write-after-shutdown-succeeds",
        "--shrink-cases",
        "64",
        "--out",
        out.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let t = text(&r);
    assert_eq!(r.status.code(), Some(1), "{t}");
    assert!(t.contains("shrunk: "), "{t}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let problems = report["properties"][0]["problems"].as_array().unwrap();
    let best = problems
        .iter()
        .filter(|p| p["shrink"]["classification"] == "confirmed")
        .min_by_key(|p| p["shrink"]["shrunk_size"].as_u64().unwrap())
        .unwrap_or_else(|| panic!("no confirmed shrunk failure: {t}"));
    let size = best["shrink"]["shrunk_size"].as_u64().unwrap();
    assert!(size <= 5, "shrunk only to {size} ops: {best}");
    assert!(
        best["shrink"]["original_size"].as_u64().unwrap() > size,
        "{best}"
    );
    assert!(
        best["violation"]["summary"]
            .as_str()
            .unwrap()
            .contains("write after shutdown(WR) did not succeed"),
        "{best}"
    );
    // The written case file replays to the same failure.
    let case = best["case_file"].as_str().unwrap();
    let replay = netconform(&[
        "replay",
        case,
        "--out",
        out.join("replay").to_str().unwrap(),
    ]);
    let rt = text(&replay);
    assert_eq!(replay.status.code(), Some(1), "{rt}");
    assert!(
        rt.contains("FAIL") && rt.contains("model fault (test only)"),
        "{rt}"
    );
}

#[test]
fn regression_shutdown_unconnected_read() {
    let status = replay_case(&cases_dir().join("regression_shutdown_unconnected_read.json"));
    assert!(matches!(status, CaseStatus::Pass { .. }), "{status:?}");
}

#[test]
fn regression_udp_unconnected_shutdown_write() {
    let status = replay_case(&cases_dir().join("regression_udp_unconnected_shutdown_write.json"));
    assert!(matches!(status, CaseStatus::Pass { .. }), "{status:?}");
}

#[test]
fn regression_second_connect_keeps_peer() {
    let status = replay_case(&cases_dir().join("regression_second_connect_keeps_peer.json"));
    assert!(matches!(status, CaseStatus::Pass { .. }), "{status:?}");
}

#[test]
fn regression_fault_write_after_shutdown_still_fails() {
    let status = replay_case(&cases_dir().join("fault_write_after_shutdown.json"));
    match status {
        CaseStatus::Fail { violation } => assert!(
            violation.summary.contains("write after shutdown(WR)"),
            "{violation}"
        ),
        other => panic!("the fault case no longer fails: {other:?}"),
    }
}

#[test]
fn every_committed_case_file_replays_as_its_name_says() {
    let mut seen = 0;
    for entry in std::fs::read_dir(cases_dir()).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let status = replay_case(&path);
        if name.starts_with("fault_") {
            assert!(
                matches!(status, CaseStatus::Fail { .. }),
                "{name}: {status:?}"
            );
        } else {
            assert!(
                name.starts_with("regression_"),
                "{name}: case files are named regression_* or fault_*"
            );
            assert!(
                matches!(status, CaseStatus::Pass { .. }),
                "{name}: {status:?}"
            );
        }
        seen += 1;
    }
    assert!(seen >= 2);
}
