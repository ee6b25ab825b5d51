//! The first two properties end to end: they pass on this kernel, and a fault injected with `--exec` makes the
//! matching property fail with a clear violation, exit code 1, a pcapng that tshark opens, and a case file
//! that `replay` reproduces.

mod common;

use std::process::Command;

use common::*;

const DROP_RST: &str =
    "b:nft add table inet t; nft add chain inet t o { type filter hook output priority 0 \\; }; \
                        nft add rule inet t o tcp flags rst drop";

#[test]
fn every_property_passes_on_this_kernel_for_both_families() {
    let out_dir = out_dir("pass");
    let json = out_dir.join("report.json");
    let junit = out_dir.join("junit.xml");
    let out = netconform(&[
        "run",
        "--family",
        "both",
        "--cases",
        "64",
        "--seed",
        "20261125",
        "--out",
        out_dir.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let props = report["properties"].as_array().unwrap();
    let ids: Vec<&str> = props.iter().map(|p| p["id"].as_str().unwrap()).collect();
    let listed: Vec<&str> = suites::all().iter().map(|p| p.info().id).collect();
    assert_eq!(ids, listed, "the default run covers every property");
    assert!(ids.contains(&"tcp.rst.closed_port") && ids.contains(&"udp.closed_port.icmp"));
    for p in props {
        if p["suite"] == "stdio" {
            // Written for a passive stdio SUT on b: skipped against the kernel, with the reason.
            assert_eq!(p["skip"], 64, "{p}");
            assert!(
                p["skipped"]
                    .as_str()
                    .is_some_and(|w| w.contains("--sut-mode stdio")),
                "{p}"
            );
            continue;
        }
        assert_eq!(p["pass"], 64, "{p}");
    }
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("tcp.rst.closed_port") && xml.contains(&format!("tests=\"{}\"", listed.len())),
        "{xml}"
    );
    assert!(!xml.contains("<failure"), "{xml}");
}

#[test]
fn dropping_rsts_makes_the_rst_property_fail_with_a_readable_violation() {
    if Command::new("nft").arg("--version").output().is_err() {
        panic!("nft is required for this test: apt-get install nftables");
    }
    let out_dir = out_dir("drop-rst");
    let out = netconform(&[
        "run",
        "--property",
        "tcp.rst.closed_port",
        "--cases",
        "6",
        "--seed",
        "3",
        "--family",
        "both",
        "--exec",
        DROP_RST,
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("no RST answered a segment to a closed port"),
        "{t}"
    );
    assert!(t.contains("RFC 9293 §3.10.7.1"), "{t}");
    assert!(
        t.contains("expected:") && t.contains("actual:   no RST from B"),
        "{t}"
    );
    // Every failing case left a pcapng and a case file.
    let dir = out_dir.join("tcp.rst.closed_port");
    let mut pcaps: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcapng"))
        .collect();
    pcaps.sort();
    assert_eq!(pcaps.len(), 6, "{t}");
    // tshark reads it back without a warning and sees the frames netconform wrote.
    assert!(
        tshark_available(),
        "tshark is required for this test: apt-get install tshark"
    );
    let pcap = &pcaps[0];
    let tshark = Command::new("tshark").arg("-r").arg(pcap).output().unwrap();
    assert!(tshark.status.success(), "{}", text(&tshark));
    // tshark run as root says so on stderr; anything else there is a warning about the file.
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
    // Replaying the case file reproduces the failure (its lab settings include the --exec rule).
    let case = pcap.with_extension("json");
    let replay = netconform(&[
        "replay",
        case.to_str().unwrap(),
        "--out",
        out_dir.join("replay").to_str().unwrap(),
    ]);
    let rt = text(&replay);
    assert_eq!(replay.status.code(), Some(1), "{rt}");
    assert!(rt.contains("FAIL no RST answered"), "{rt}");
}

#[test]
fn the_same_seed_gives_the_same_cases() {
    for prop in suites::all() {
        for index in 0..32 {
            let seed = harness::property::case_seed(99, prop.info().id, index);
            let family = harness::sock::Family::Ipv4;
            assert_eq!(prop.generate(seed, family), prop.generate(seed, family));
        }
        let a = prop.generate(
            harness::property::case_seed(1, prop.info().id, 0),
            harness::sock::Family::Ipv4,
        );
        let b = prop.generate(
            harness::property::case_seed(2, prop.info().id, 0),
            harness::sock::Family::Ipv4,
        );
        assert_ne!(
            a,
            b,
            "{}: different seeds should give different cases",
            prop.info().id
        );
    }
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["run", "--suite", "nope"][..],
        &["run", "--sysctl", "b:kernel.panic=1"],
        &["run", "--exec", "c:true"],
        &["replay", "/nonexistent/case.json"],
    ] {
        let out = netconform(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    }
}

#[test]
fn list_names_every_property_with_clauses_and_questions() {
    let out = netconform(&["list", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for p in v.as_array().unwrap() {
        assert!(!p["clauses"].as_array().unwrap().is_empty(), "{p}");
        assert!(!p["questions"].as_array().unwrap().is_empty(), "{p}");
    }
}

#[test]
fn docs_coverage_tables_are_generated_from_the_code() {
    let out = netconform(&["list", "--markdown"]);
    assert!(out.status.success());
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/coverage.md")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        committed,
        "docs/coverage.md is stale: run `cargo run --release -- list --markdown > docs/coverage.md`"
    );
}

#[test]
fn dropping_a_rsts_makes_rst_on_unread_fail_with_a_readable_violation() {
    let out_dir = out_dir("drop-rst-on-close");
    let out = netconform(&[
        "run",
        "--property",
        "tcp.close.rst_on_unread",
        "--cases",
        "4",
        "--seed",
        "1",
        "--exec",
        "a:nft add table inet t; nft add chain inet t o { type filter hook output priority 0 \\; }; \
         nft add rule inet t o tcp flags rst drop",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("sent no RST") && t.contains("RFC 2525 §2.17"),
        "{t}"
    );
    assert!(
        t.contains("expected: RST") && t.contains("actual:   none before the capture ended"),
        "{t}"
    );
}
