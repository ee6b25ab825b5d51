//! Systems under test on host b (`--sut`), end to end: the kernel adapter (`src/bin/netconform-sut-kernel.rs`,
//! the protocol over real sockets, kernel attachment) gives the verdicts of the direct kernel run for every
//! property it can be judged by, and lists the others as skipped with their reasons; SUTs that crash, hang,
//! print garbage, flood or never say hello (`tests/sut-programs/`) each give a clear per-case result and leave
//! no process, namespace, interface, mount or cgroup behind; hostile ones that fork without end, spin on the
//! CPU or allocate without bound are contained by the sandbox.
//!
//! The programs run as an unprivileged uid, so they are copied to a directory every uid may read (a clone
//! under `/root` is not).

mod common;

use std::path::PathBuf;
use std::sync::Mutex;

use common::*;
use serde_json::Value;

/// These tests compare global host state.
static HOST: Mutex<()> = Mutex::new(());

/// A world-readable copy of `src`, under a directory of this test process.
fn installed(src: &std::path::Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("netconform-sut-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dst = dir.join(src.file_name().unwrap());
    if !dst.exists() {
        std::fs::copy(src, &dst).unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dst
}

fn kernel_adapter() -> String {
    installed(std::path::Path::new(env!(
        "CARGO_BIN_EXE_netconform-sut-kernel"
    )))
    .to_string_lossy()
    .into_owned()
}

fn program(name: &str) -> String {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sut-programs")
        .join(name);
    installed(&src).to_string_lossy().into_owned()
}

/// Processes of the SUT uid pool (`harness/src/sut/sandbox.rs`).
fn sut_processes() -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let uid: Option<u32> = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|u| u.parse().ok());
        let zombie = status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'));
        if uid.is_some_and(|u| (1_900_000..1_900_000 + 4096).contains(&u)) && !zombie {
            out.push(format!("{:?} uid {uid:?}", entry.file_name()));
        }
    }
    out
}

/// Runs netconform with a JSON report; returns (exit code, report, output text).
fn run_json(name: &str, args: &[&str]) -> (i32, Value, String) {
    let dir = out_dir(name);
    let json = dir.join("report.json");
    let mut all: Vec<&str> = args.to_vec();
    let (j, o) = (json.to_string_lossy(), dir.join("out"));
    let o = o.to_string_lossy();
    all.extend(["--json", &j, "--out", &o]);
    let out = netconform(&all);
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(&json)
            .unwrap_or_else(|e| panic!("no JSON report ({e}):\n{}", text(&out))),
    )
    .unwrap();
    (out.status.code().unwrap_or(-1), report, text(&out))
}

fn status(p: &Value) -> &'static str {
    let n = |k: &str| p[k].as_u64().unwrap_or(0);
    if n("fail") > 0 {
        "fail"
    } else if n("error") > 0 {
        "error"
    } else if n("invalid") > 0 {
        "invalid"
    } else if n("pass") == 0 && n("skip") > 0 {
        "skip"
    } else {
        "pass"
    }
}

#[test]
fn the_kernel_adapter_gives_the_direct_runs_verdicts() {
    let _host = HOST.lock().unwrap_or_else(|p| p.into_inner());
    let before = host_state();
    let adapter = kernel_adapter();
    let common = ["run", "--cases", "6", "--seed", "4242"];
    let (direct_rc, direct, direct_text) = run_json("sut-direct", &common);
    assert_eq!(direct_rc, 0, "the direct run must pass:\n{direct_text}");
    let html = out_dir("sut-kernel-adapter-html").join("report.html");
    let html_arg = html.to_string_lossy().into_owned();
    let mut args = common.to_vec();
    args.extend(["--sut", &adapter, "--attach", "kernel", "--html", &html_arg]);
    let (rc, via, via_text) = run_json("sut-kernel-adapter", &args);
    // The HTML report says why each skipped property did not run.
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("skipped: needs kernel sock_diag on b"),
        "{via_text}"
    );
    let props = |r: &Value| -> Vec<Value> { r["properties"].as_array().unwrap().clone() };
    let (direct, via) = (props(&direct), props(&via));
    assert_eq!(direct.len(), via.len());
    let (mut judged, mut skipped) = (Vec::new(), Vec::new());
    for (d, v) in direct.iter().zip(&via) {
        let id = d["id"].as_str().unwrap();
        assert_eq!(id, v["id"].as_str().unwrap());
        match v["skipped"].as_str() {
            Some(why) => {
                assert!(!why.is_empty(), "{id}: skipped without a reason");
                assert_eq!(status(v), "skip", "{id}: skipped yet counted otherwise");
                skipped.push(format!("{id}: {why}"));
            }
            None => {
                assert_eq!(
                    status(v),
                    status(d),
                    "{id}: the kernel adapter's verdict differs from the direct run's:\n{via_text}"
                );
                assert!(v["pass"].as_u64().unwrap() > 0, "{id}: nothing judged");
                judged.push(id.to_string());
            }
        }
    }
    assert_eq!(rc, 0, "{via_text}");
    // The properties whose only needs are the wire and driver caps the adapter declares are all judged.
    for id in [
        "tcp.rst.closed_port",
        "tcp.close.half_close",
        "tcp.close.rst_on_unread",
        "tcp.close.write_after_peer_close",
        "tcp.identity.four_tuple",
        "tcp.flow.window_bound",
        "tcp.ack.coalescing",
        "tcp.zero_window.sender",
    ] {
        assert!(
            judged.iter().any(|j| j == id),
            "{id} was not judged through the adapter"
        );
    }
    assert!(
        skipped.iter().any(|s| s.contains("needs kernel")),
        "{skipped:?}"
    );
    eprintln!("judged through the adapter: {judged:?}\nskipped: {skipped:#?}");
    assert!(sut_processes().is_empty(), "{:?}", sut_processes());
    let left = wait_for_no_leftovers(&before);
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Runs `tcp.close.write_after_peer_close` (b's program drives the SUT from its first op) against a
/// misbehaving program; returns the problems of its cases.
fn misbehaving(name: &str) -> (i32, Vec<Value>, String) {
    let _host = HOST.lock().unwrap_or_else(|p| p.into_inner());
    let before = host_state();
    let sut = program(name);
    let (rc, report, out) = run_json(
        &format!("sut-{name}"),
        &[
            "run",
            "--property",
            "tcp.close.write_after_peer_close",
            "--cases",
            "2",
            "--seed",
            "7",
            "--sut",
            &sut,
        ],
    );
    let p = &report["properties"][0];
    let problems = p["problems"].as_array().unwrap().clone();
    assert_eq!(problems.len(), 2, "every case has its own result:\n{out}");
    assert!(sut_processes().is_empty(), "{name}: {:?}", sut_processes());
    let left = wait_for_no_leftovers(&before);
    assert!(left.is_empty(), "{name} left behind: {left:?}");
    (rc, problems, out)
}

fn field<'v>(p: &'v Value, key: &str) -> &'v str {
    p[key].as_str().unwrap_or("")
}

#[test]
fn a_crashing_sut_fails_its_cases_with_its_stderr() {
    let (rc, problems, out) = misbehaving("crash.sh");
    assert_eq!(rc, 1);
    for p in &problems {
        assert_eq!(field(p, "status"), "fail", "{out}");
        let v = &p["violation"];
        assert_eq!(v["summary"], "SUT crashed", "{out}");
        assert!(field(v, "actual").contains("status 139"), "{out}");
        let context = v["context"].to_string();
        assert!(
            context.contains("segfault in tcp_input (simulated)"),
            "{out}"
        );
    }
}

#[test]
fn a_hanging_sut_is_a_case_error_naming_the_request() {
    let (rc, problems, out) = misbehaving("hang.sh");
    assert_eq!(rc, 1);
    for p in &problems {
        assert_eq!(field(p, "status"), "error", "{out}");
        let m = field(p, "message");
        assert!(m.starts_with("SUT hung: no reply to {"), "{m}");
        assert!(m.contains("\"op\":\"socket\""), "{m}");
    }
}

#[test]
fn garbage_on_stdout_is_a_protocol_error_naming_the_line() {
    let (rc, problems, out) = misbehaving("garbage.sh");
    assert_eq!(rc, 1);
    assert!(out.contains("each case will report it"), "{out}");
    for p in &problems {
        assert_eq!(field(p, "status"), "error", "{out}");
        let m = field(p, "message");
        assert!(m.contains("SUT protocol error: not JSON"), "{m}");
        assert!(m.contains("line hello world"), "{m}");
    }
}

#[test]
fn a_sut_that_never_says_hello_errors_each_case() {
    let (rc, problems, _) = misbehaving("no-hello.sh");
    assert_eq!(rc, 1);
    for p in &problems {
        assert_eq!(field(p, "status"), "error");
        assert!(field(p, "message").contains("never said hello"), "{p}");
    }
}

#[test]
fn a_flooding_sut_is_a_hang_with_a_bounded_stderr_tail() {
    let (rc, problems, _) = misbehaving("flood.sh");
    assert_eq!(rc, 1);
    for p in &problems {
        assert_eq!(field(p, "status"), "error");
        let m = field(p, "message");
        assert!(m.starts_with("SUT hung"), "{m}");
        assert!(
            m.len() < 8_000,
            "the quoted stderr is bounded: {} bytes",
            m.len()
        );
    }
}

#[test]
fn a_fork_bomb_is_bounded_by_the_sandbox_and_ended_with_its_namespace() {
    // fork-bomb.py forks until refused, every child in a session of its own, then never answers.
    let (rc, problems, out) = misbehaving("fork-bomb.py");
    assert_eq!(rc, 1);
    for p in &problems {
        assert_eq!(field(p, "status"), "error", "{out}");
        let m = field(p, "message");
        assert!(m.starts_with("SUT hung"), "{m}");
        let forked: u32 = m
            .split("forked ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("the SUT said how many it forked: {m}"));
        // RLIMIT_NPROC of the SUT's uid is 64 processes (harness/src/sut/sandbox.rs, Limits::default).
        assert!(forked < 64, "{forked} forks: {m}");
        assert!(m.contains("Resource temporarily unavailable"), "{m}");
    }
    // misbehaving() checked that no process of the SUT uids and nothing else is left.
}

#[test]
fn a_sut_spinning_on_the_cpu_is_a_hang_and_is_ended() {
    let (rc, problems, out) = misbehaving("cpu-spin.sh");
    assert_eq!(rc, 1);
    for p in &problems {
        assert_eq!(field(p, "status"), "error", "{out}");
        let m = field(p, "message");
        assert!(m.starts_with("SUT hung: no reply to {"), "{m}");
        assert!(m.contains("cpu-spin.sh: spinning"), "{m}");
    }
}

#[test]
fn a_sut_allocating_without_bound_is_stopped_by_its_memory_limit() {
    let (rc, problems, out) = misbehaving("alloc.py");
    assert_eq!(rc, 1);
    for p in &problems {
        let v = &p["violation"];
        if memory_cgroup_available() && field(p, "status") == "error" {
            // At the limit the kernel may first thrash the group's file pages (the interpreter's own code)
            // before its OOM killer acts (seen once in a fresh-clone CI run): the request deadline ends the
            // SUT first. Contained all the same (misbehaving() checked nothing is left).
            let m = field(p, "message");
            assert!(m.starts_with("SUT hung"), "{m}");
            assert!(m.contains("alloc.py: allocating without bound"), "{m}");
        } else if memory_cgroup_available() {
            // The SUT's memory cgroup (512 MiB) ends it: a crash that says why.
            assert_eq!(field(p, "status"), "fail", "{out}");
            assert_eq!(v["summary"], "SUT crashed", "{out}");
            let actual = field(v, "actual");
            assert!(actual.contains("killed by signal 9"), "{actual}");
            assert!(actual.contains("memory limit of 512 MiB"), "{actual}");
        } else {
            // RLIMIT_AS alone (2 GiB per process): Python's MemoryError, or the request deadline first.
            let all = p.to_string();
            assert!(
                all.contains("MemoryError") || field(p, "message").starts_with("SUT hung"),
                "{out}"
            );
        }
    }
}

#[test]
fn sut_check_passes_the_kernel_adapter_in_both_families() {
    let _host = HOST.lock().unwrap_or_else(|p| p.into_inner());
    let adapter = kernel_adapter();
    for family in ["ipv4", "ipv6"] {
        let out = netconform(&[
            "sut-check",
            "--attach",
            "kernel",
            "--family",
            family,
            &adapter,
        ]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{t}");
        assert!(t.contains("no deviation from netconform-sut/1"), "{t}");
        assert!(!t.contains("FAIL"), "{t}");
        assert!(t.contains("ok    abort: a's read: ECONNRESET"), "{t}");
        assert!(t.contains("ok    recv_from: the datagram"), "{t}");
    }
    assert!(sut_processes().is_empty(), "{:?}", sut_processes());
}

#[test]
fn sut_check_names_the_first_deviation_of_a_broken_adapter() {
    let _host = HOST.lock().unwrap_or_else(|p| p.into_inner());
    let broken = format!("{} {}", program("wrong-errno.sh"), kernel_adapter());
    let out = netconform(&["sut-check", "--attach", "kernel", &broken]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("deviation(s); the first: accept with nothing queued"),
        "{t}"
    );
    assert!(
        t.contains(r#"got {"err":"ETIMEDOUT","id":4,"ok":false}; the contract: {"ok":false,"err":"EAGAIN"}"#),
        "{t}"
    );
    // A program that never speaks the protocol fails at its start, with the contract's first rule.
    let out = netconform(&["sut-check", &program("garbage.sh")]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("FAIL  start and hello: SUT protocol error"),
        "{t}"
    );
    assert!(t.contains("line hello world"), "{t}");
    assert!(sut_processes().is_empty(), "{:?}", sut_processes());
}

/// A user-space "stack" (`tests/sut-programs/rst-responder.py`: a closed port's RSTs, computed in Python)
/// attached by fd 3 and by a TUN device it opens by name: netconform judges it through the relay, and a
/// buggy variant fails.
#[test]
fn a_user_space_stack_is_judged_over_fd_tun_and_tap_attachments() {
    let _host = HOST.lock().unwrap_or_else(|p| p.into_inner());
    let before = host_state();
    let stack = program("rst-responder.py");
    for attach in ["fd", "tun:tun144", "tap:tap0"] {
        let (rc, report, out) = run_json(
            &format!("sut-rst-{}", attach.replace(':', "-")),
            &[
                "run",
                "--property",
                "tcp.rst.closed_port",
                "--cases",
                "6",
                "--seed",
                "3",
                "--sut",
                &stack,
                "--attach",
                attach,
            ],
        );
        assert_eq!(rc, 0, "{attach}:\n{out}");
        let p = &report["properties"][0];
        assert_eq!(p["pass"], 6, "{attach}:\n{out}");
        assert!(out.contains("sut: rst-responder.py (ipv4+ipv6)"), "{out}");
        let buggy = format!("{stack} --wrong-ack");
        let (rc, report, out) = run_json(
            &format!("sut-rst-buggy-{}", attach.replace(':', "-")),
            &[
                "run",
                "--property",
                "tcp.rst.closed_port",
                "--cases",
                "6",
                "--seed",
                "3",
                "--sut",
                &buggy,
                "--attach",
                attach,
            ],
        );
        assert_eq!(rc, 1, "{attach}: the buggy stack must fail:\n{out}");
        assert!(
            report["properties"][0]["fail"].as_u64().unwrap() > 0,
            "{out}"
        );
    }
    assert!(sut_processes().is_empty(), "{:?}", sut_processes());
    let left = wait_for_no_leftovers(&before);
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// `netconform grade`: three SUTs (the kernel adapter, a user-space responder with a wrong RST ack, a stack
/// that crashes) through one manifest give one table, in text, JSON and HTML, with each SUT's own verdicts.
#[test]
fn grading_three_suts_prints_one_table_with_each_suts_verdicts() {
    let _host = HOST.lock().unwrap_or_else(|p| p.into_inner());
    let before = host_state();
    let dir = out_dir("grade");
    let manifest = dir.join("class.toml");
    std::fs::write(
        &manifest,
        format!(
            "[run]\ncases = 2\nproperties = [\"tcp.rst.closed_port\", \"tcp.handshake.options\"]\n\
             args = [\"--shrink-time\", \"0\"]\n\n\
             [[sut]]\nname = \"kernel\"\ncommand = \"{}\"\nattach = \"kernel\"\n\n\
             [[sut]]\nname = \"wrong-ack\"\ncommand = \"{} --wrong-ack\"\n\n\
             [[sut]]\nname = \"crasher\"\ncommand = \"{}\"\n",
            kernel_adapter(),
            program("rst-responder.py"),
            program("crash.sh")
        ),
    )
    .unwrap();
    let (json, html) = (dir.join("grade.json"), dir.join("grade.html"));
    let out = netconform(&[
        "grade",
        manifest.to_str().unwrap(),
        "--out",
        dir.join("out").to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    // The table: a row per SUT with its score, then what each one got wrong.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name) && !l.contains('('))
            .unwrap_or_else(|| panic!("no row for {name}:\n{stdout}"))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
    };
    assert!(stdout.contains("P1   tcp.handshake.options"), "{stdout}");
    assert!(stdout.contains("P2   tcp.rst.closed_port"), "{stdout}");
    assert_eq!(row("kernel"), ["1/1", "skip", "pass"], "{stdout}");
    assert_eq!(row("wrong-ack"), ["0/1", "skip", "FAIL"], "{stdout}");
    assert_eq!(row("crasher"), ["0/1", "skip", "FAIL"], "{stdout}");
    assert!(
        stdout.contains("skip  tcp.handshake.options: needs kernel sysctls on b"),
        "{stdout}"
    );
    assert!(stdout.contains("ack: expected ack"), "{stdout}");
    // crash.sh dies at its first request; this property sends it none, so it is judged as a stack that
    // never answers a closed port.
    assert!(
        stdout.contains("no RST answered a segment to a closed port"),
        "{stdout}"
    );
    // The same table as JSON.
    let t: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(t["seed"], 1);
    let suts = t["suts"].as_array().unwrap();
    assert_eq!(suts.len(), 3);
    let cell = |k: usize, id: &str| {
        suts[k]["results"][id]["verdict"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(cell(0, "tcp.rst.closed_port"), "pass");
    assert_eq!(cell(1, "tcp.rst.closed_port"), "fail");
    assert_eq!(cell(2, "tcp.rst.closed_port"), "fail");
    assert_eq!(cell(1, "tcp.handshake.options"), "skipped");
    // And as a page, each SUT's replayable cases in its own directory.
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<table id=\"grade\">") && page.contains("wrong-ack"));
    assert!(dir.join("out/wrong-ack/cases/tcp.rst.closed_port").is_dir());
    assert!(sut_processes().is_empty(), "{:?}", sut_processes());
    let left = wait_for_no_leftovers(&before);
    assert!(left.is_empty(), "left behind: {left:?}");
}
