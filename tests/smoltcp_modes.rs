//! smoltcp judged through both of its adapter's modes gives the same verdicts (project issue #19): the driven mode
//! (`netconform-sut-smoltcp`, netconform-sut/1) over fd 3, over a TUN device opened by name and over a TAP device
//! (Ethernet: smoltcp does ARP and ND with a's kernel), and the passive stdio mode (`netconform-sut-smoltcp
//! --stdio`) as server and as client over fd 3 and over a TUN device by name, as a student stack would open it,
//! and as client over a TAP device. The behaviours judged by both the `stdio` suite and a property that
//! runs through the driver are paired; per pair, every mode must give the same verdict: pass, or fail with a
//! finding under the same clause.
//!
//! | behaviour | driven property | stdio property | compared on | smoltcp 0.12 |
//! |---|---|---|---|---|
//! | RST for a SYN to a port with no listener | `tcp.rst.closed_port` | `stdio.rst.other_port` | the driven cases whose probe is a SYN (`stdio` probes with a SYN only) | pass |
//! | half-close: the closed side still receives everything | `tcp.close.half_close` | `stdio.close.half_close` | every case | pass |
//! | each connection its own ISN | `tcp.identity.four_tuple` | `stdio.isn.varies` | every case | pass |
//! | the bytes read are the bytes written | `tcp.identity.four_tuple` | `stdio.stream.integrity` | every case | pass |
//! | no ACK delayed 500 ms or more (MUST-40) | `tcp.ack.coalescing` | `stdio.ack.delay` | every case | pass |
//! | a zero window is probed (MUST-36) | `tcp.zero_window.sender` | `stdio.zero_window.probes` | every case | **fail** (finding 3) |
//!
//! Not paired: `stdio.handshake.mss` (`tcp.handshake.options` needs b's sysctls), `stdio.loss.retransmit`
//! (`tcp.loss.retransmit` needs b's sysctls), `stdio.sut.no_crash` and `stdio.liveness.no_stall` (no driven
//! property of their own).
//!
//! Stock smoltcp fails one pair alike everywhere (it never probes a zero window); so that a failure of another
//! rule is seen alike too, a second run with the adapter's `--fault silent-closed-port` (every RST that
//! answers a segment is dropped) shows that a failure is seen alike: the RST pair then fails in every mode under
//! RFC 9293 §3.10.7.1.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use common::*;
use serde_json::Value;

/// One test at a time: both compare global host state.
static HOST: Mutex<()> = Mutex::new(());

/// The run seed and the cases per property: small, so the eight runs take a few seconds each.
const SEED: &str = "19";
const CASES: &str = "4";

/// Which cases of the driven property a pair compares.
#[derive(Clone, Copy)]
enum Scope {
    Every,
    /// Only the cases whose probe is a SYN (a kernel connect(), or a crafted SYN).
    SynProbes,
}

struct Pair {
    driven: &'static str,
    stdio: &'static str,
    scope: Scope,
    /// Stock smoltcp's verdict: pass, or fail under this clause (docs/smoltcp.md).
    smoltcp_fails: Option<&'static str>,
}

const PAIRS: &[Pair] = &[
    Pair {
        driven: "tcp.rst.closed_port",
        stdio: "stdio.rst.other_port",
        scope: Scope::SynProbes,
        smoltcp_fails: None,
    },
    Pair {
        driven: "tcp.close.half_close",
        stdio: "stdio.close.half_close",
        scope: Scope::Every,
        smoltcp_fails: None,
    },
    Pair {
        driven: "tcp.identity.four_tuple",
        stdio: "stdio.isn.varies",
        scope: Scope::Every,
        smoltcp_fails: None,
    },
    Pair {
        driven: "tcp.identity.four_tuple",
        stdio: "stdio.stream.integrity",
        scope: Scope::Every,
        smoltcp_fails: None,
    },
    Pair {
        driven: "tcp.ack.coalescing",
        stdio: "stdio.ack.delay",
        scope: Scope::Every,
        smoltcp_fails: None,
    },
    Pair {
        driven: "tcp.zero_window.sender",
        stdio: "stdio.zero_window.probes",
        scope: Scope::Every,
        smoltcp_fails: Some("RFC 9293 §3.8.6.1"),
    },
];

/// How the adapter is run.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Driven {
        attach: &'static str,
    },
    Stdio {
        role: &'static str,
        attach: &'static str,
    },
}

const MODES: &[Mode] = &[
    Mode::Driven { attach: "fd" },
    Mode::Driven {
        attach: "tun:tun144",
    },
    Mode::Stdio {
        role: "server",
        attach: "fd",
    },
    Mode::Stdio {
        role: "client",
        attach: "fd",
    },
    Mode::Stdio {
        role: "server",
        attach: "tun:tun144",
    },
    Mode::Stdio {
        role: "client",
        attach: "tun:tun144",
    },
    // Ethernet: smoltcp does ARP and ND with a's kernel.
    Mode::Driven { attach: "tap:tap0" },
    Mode::Stdio {
        role: "client",
        attach: "tap:tap0",
    },
];

/// A pair's verdict in one mode: pass, or fail with the clauses of its findings (the part before any
/// parenthesis, `RFC 9293 §3.10.7.1`, so that the two properties' wordings compare).
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Pass,
    Fail(BTreeSet<String>),
}

/// Runs every property of `pairs` in `mode`; returns the report, the case-file directory and the output.
fn run(name: &str, sut: &str, mode: Mode, pairs: &[&Pair]) -> (Value, std::path::PathBuf, String) {
    let dir = out_dir(name);
    let (json, cases_dir) = (dir.join("report.json"), dir.join("out"));
    let (j, o) = (json.to_string_lossy(), cases_dir.to_string_lossy());
    let stdio_sut = format!("{sut} --stdio");
    let mut args = vec![
        "run",
        "--seed",
        SEED,
        "--cases",
        CASES,
        "--shrink-time",
        "0",
    ];
    args.extend(["--pcap", "all", "--json", &j, "--out", &o]);
    match mode {
        Mode::Driven { attach } => {
            args.extend(["--sut", sut, "--attach", attach]);
            for p in pairs {
                args.extend(["--property", p.driven]);
            }
        }
        Mode::Stdio { role, attach } => {
            args.extend([
                "--sut",
                &stdio_sut,
                "--sut-mode",
                "stdio",
                "--sut-role",
                role,
            ]);
            args.extend(["--sut-port", "5001", "--attach", attach]);
            for p in pairs {
                args.extend(["--property", p.stdio]);
            }
        }
    }
    let out = netconform(&args);
    let t = text(&out);
    let report = serde_json::from_str(
        &std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("no report ({e}):\n{t}")),
    )
    .unwrap();
    (report, cases_dir.to_path_buf(), t)
}

/// The case indices of `property` whose probe is a SYN, from the case files `--pcap all` wrote.
fn syn_probe_cases(cases_dir: &Path, property: &str) -> BTreeSet<u64> {
    let mut syn = BTreeSet::new();
    for file in std::fs::read_dir(cases_dir.join(property)).unwrap() {
        let path = file.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let case: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let probe = &case["case"]["probe"];
            if probe["kind"] == "kernel_syn" || probe["flags"] == "syn" {
                syn.insert(case["index"].as_u64().unwrap());
            }
        }
    }
    syn
}

/// The verdict of `property` in a report, over the cases `scope` names: no harness error and no invalid case
/// there, at least one case judged.
fn verdict(report: &Value, cases_dir: &Path, property: &str, scope: Scope, out: &str) -> Verdict {
    let p = report["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == property)
        .unwrap_or_else(|| panic!("{property} not in the report:\n{out}"));
    assert!(p["skipped"].is_null(), "{property} skipped:\n{out}");
    let ran: BTreeSet<u64> = p["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap())
        .collect();
    let compared = match scope {
        Scope::Every => ran,
        Scope::SynProbes => syn_probe_cases(cases_dir, property),
    };
    assert!(
        !compared.is_empty(),
        "{property}: no case to compare:\n{out}"
    );
    let mut clauses = BTreeSet::new();
    for problem in p["problems"].as_array().unwrap() {
        if !compared.contains(&problem["index"].as_u64().unwrap()) {
            continue;
        }
        assert_eq!(problem["status"], "fail", "{property}: {problem}\n{out}");
        let clause = problem["violation"]["clause"].as_str().unwrap();
        clauses.insert(clause.split(" (").next().unwrap().trim().to_string());
    }
    if clauses.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(clauses)
    }
}

/// Runs `pairs` in every mode with the adapter `sut`; returns, per pair, the verdict of each mode.
fn verdicts(name: &str, sut: &str, pairs: &[&Pair]) -> Vec<Vec<(Mode, Verdict)>> {
    let mut per_pair: Vec<Vec<(Mode, Verdict)>> = pairs.iter().map(|_| Vec::new()).collect();
    for (m, &mode) in MODES.iter().enumerate() {
        let (report, cases_dir, out) = run(&format!("{name}-{m}"), sut, mode, pairs);
        for (i, pair) in pairs.iter().enumerate() {
            let id = match mode {
                Mode::Driven { .. } => pair.driven,
                Mode::Stdio { .. } => pair.stdio,
            };
            let scope = match mode {
                Mode::Driven { .. } => pair.scope,
                Mode::Stdio { .. } => Scope::Every,
            };
            per_pair[i].push((mode, verdict(&report, &cases_dir, id, scope, &out)));
        }
    }
    per_pair
}

/// Every mode gives the first mode's verdict; returns it.
fn all_alike<'v>(pair: &Pair, verdicts: &'v [(Mode, Verdict)]) -> &'v Verdict {
    let (first_mode, first) = &verdicts[0];
    for (mode, v) in &verdicts[1..] {
        assert_eq!(
            v, first,
            "{} / {}: {mode:?} gives {v:?}, {first_mode:?} gives {first:?}",
            pair.driven, pair.stdio
        );
    }
    first
}

#[test]
fn smoltcp_gives_the_same_verdicts_driven_and_through_stdio_over_fd_and_tun() {
    let _host = HOST.lock().unwrap_or_else(|p| p.into_inner());
    let before = host_state();
    let sut = smoltcp_adapter();
    let pairs: Vec<&Pair> = PAIRS.iter().collect();
    for (pair, verdicts) in pairs.iter().zip(verdicts("smoltcp-modes", &sut, &pairs)) {
        // docs/smoltcp.md, "Findings" and "Through stdio mode".
        let expected = match pair.smoltcp_fails {
            None => Verdict::Pass,
            Some(clause) => Verdict::Fail(BTreeSet::from([clause.to_string()])),
        };
        assert_eq!(*all_alike(pair, &verdicts), expected);
    }
    let left = wait_for_no_leftovers(&before);
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The same comparison sees a failure alike: with every RST dropped, the RST pair fails in every mode under
/// the same clause.
#[test]
fn a_fault_fails_the_paired_properties_alike_in_every_mode() {
    let _host = HOST.lock().unwrap_or_else(|p| p.into_inner());
    let before = host_state();
    let sut = format!("{} --fault silent-closed-port", smoltcp_adapter());
    let rst = &PAIRS[0];
    let verdicts = verdicts("smoltcp-modes-fault", &sut, &[rst]);
    let expected = Verdict::Fail(BTreeSet::from(["RFC 9293 §3.10.7.1".to_string()]));
    assert_eq!(*all_alike(rst, &verdicts[0]), expected);
    let left = wait_for_no_leftovers(&before);
    assert!(left.is_empty(), "left behind: {left:?}");
}
