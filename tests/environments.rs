//! Where users run netconform: a container whose `/proc/sys` is read-only, a machine without a usable
//! `/dev/net/tun`, an unprivileged user (rootless mode, user namespaces), CI shards. The container constraints
//! are reproduced with a private mount namespace (`unshare -m`), never by touching the host's mounts.
//! `netconform doctor` reports each of them; `--partition` splits a run into shards whose union is the run.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use common::{bin, netconform, out_dir, text};

/// Runs `netconform ARGS` in a private mount namespace after `setup` (shell commands on that namespace only).
fn in_mount_ns(setup: &str, args: &[&str]) -> Output {
    let script = format!("{setup} && exec \"$0\" \"$@\"");
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .arg(bin())
        .args(args)
        .output()
        .expect("run unshare")
}

/// A container's default: `/proc/sys` read-only (Docker without --privileged or systempaths=unconfined).
const READ_ONLY_PROC_SYS: &str =
    "mount --bind /proc/sys /proc/sys && mount -o remount,ro,bind /proc/sys";
/// No `/dev/net/tun` (a container started without --device /dev/net/tun).
const NO_TUN: &str = "mount -t tmpfs none /dev/net";

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn property<'r>(report: &'r serde_json::Value, id: &str) -> &'r serde_json::Value {
    report["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in the report"))
}

fn count(p: &serde_json::Value, what: &str) -> u64 {
    p[what].as_u64().unwrap()
}

fn remedy_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("Remedy:"))
        .map(str::to_string)
        .collect()
}

#[test]
fn read_only_proc_sys_skips_the_cases_that_set_sysctls_with_one_remedy_line() {
    let dir = out_dir("env-ro-sysctls");
    let json = dir.join("report.json");
    let out = in_mount_ns(
        READ_ONLY_PROC_SYS,
        &[
            "run",
            "--property",
            "tcp.nagle",
            "--property",
            "udp.bind.per_host",
            "--property",
            "tcp.identity.four_tuple",
            "--cases",
            "4",
            "--seed",
            "5",
            "--out",
            dir.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
    );
    let t = text(&out);
    // Skips with a reason are not failures: the documented exit code is 0 when everything else passed.
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(!t.contains("ERROR"), "no case errors:\n{t}");
    let remedies = remedy_lines(&out);
    assert_eq!(remedies.len(), 1, "one remedy line:\n{t}");
    assert!(
        remedies[0].contains("systempaths=unconfined") && remedies[0].contains("read-only"),
        "{t}"
    );
    let r = report(&json);
    let nagle = property(&r, "tcp.nagle");
    assert_eq!((count(nagle, "skip"), count(nagle, "pass")), (4, 0), "{t}");
    assert!(
        nagle["skipped"]
            .as_str()
            .unwrap()
            .starts_with("needs writable sysctls: /proc/sys is read-only"),
        "{nagle}"
    );
    for id in ["udp.bind.per_host", "tcp.identity.four_tuple"] {
        assert_eq!(count(property(&r, id), "pass"), 4, "{id} still runs:\n{t}");
    }
    // A sysctl the user asks for cannot be skipped: exit 2, one line with the remedy.
    let out = in_mount_ns(
        READ_ONLY_PROC_SYS,
        &[
            "run",
            "--property",
            "udp.bind.per_host",
            "--sysctl",
            "b:net.ipv4.tcp_sack=0",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("systempaths=unconfined"), "{stderr}");
}

#[test]
fn without_a_tun_device_relay_and_peer_cases_are_skipped_with_one_remedy_line() {
    let dir = out_dir("env-no-tun");
    let json = dir.join("report.json");
    let out = in_mount_ns(
        NO_TUN,
        &[
            "run",
            "--property",
            "udp.no_retransmit",
            "--property",
            "tcp.zero_window.peer",
            "--property",
            "udp.recv.truncate",
            "--cases",
            "3",
            "--seed",
            "5",
            "--out",
            dir.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let remedies = remedy_lines(&out);
    assert_eq!(remedies.len(), 1, "one remedy line:\n{t}");
    assert!(remedies[0].contains("--device /dev/net/tun"), "{t}");
    let r = report(&json);
    for id in ["udp.no_retransmit", "tcp.zero_window.peer"] {
        let p = property(&r, id);
        assert_eq!((count(p, "skip"), count(p, "pass")), (3, 0), "{id}:\n{t}");
        assert!(
            p["skipped"]
                .as_str()
                .unwrap()
                .starts_with("needs a TUN device: /dev/net/tun is missing"),
            "{p}"
        );
    }
    assert_eq!(count(property(&r, "udp.recv.truncate"), "pass"), 3, "{t}");
    // The user's own relay cannot run at all: exit 2 with the remedy.
    let out = in_mount_ns(NO_TUN, &["run", "--link", "relay", "--cases", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--device /dev/net/tun"),
        "{}",
        text(&out)
    );
}

/// A temporary directory owned by `nobody` (a rootless run's working and output directory) holding a copy
/// of the binary every user can run (the test binary's own lives under /root).
fn nobody_dir(name: &str) -> std::path::PathBuf {
    // Not under the target directory, which nobody may not traverse.
    let dir = std::env::temp_dir().join(format!("netconform-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(bin(), dir.join("netconform")).unwrap();
    let status = Command::new("chown")
        .args(["-R", "nobody:", dir.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn as_nobody(command: &str) -> Output {
    Command::new("su")
        .args(["-s", "/bin/sh", "nobody", "-c", command])
        .output()
        .expect("run su")
}

/// Why this machine refuses an unprivileged user namespace, if it does.
fn user_namespaces_refused() -> Option<String> {
    let out = as_nobody("unshare -U -r -n true");
    (!out.status.success()).then(|| text(&out))
}

#[test]
fn rootless_udp_and_tcp_lifecycle_pass_as_nobody() {
    if let Some(why) = user_namespaces_refused() {
        eprintln!("SKIPPED: this kernel refuses nobody a user namespace: {why}");
        return;
    }
    let dir = nobody_dir("rootless");
    let d = dir.to_str().unwrap();
    let out = as_nobody(&format!(
        "cd {d} && {d}/netconform run --suite udp --suite tcp-lifecycle --json {d}/report.json"
    ));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("rootless: labs in a user namespace of uid 65534"),
        "{t}"
    );
    let r = report(&dir.join("report.json"));
    for p in r["properties"].as_array().unwrap() {
        assert!(
            matches!(p["invalid"].as_u64(), Some(0)) && p["error"] == 0 && p["fail"] == 0,
            "{p}"
        );
    }
    // /dev/net/tun is root-only here: the relay's property is skipped, saying so.
    let tun = std::fs::metadata("/dev/net/tun").map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o006 == 0o006
    });
    if matches!(tun, Ok(false)) {
        let p = property(&r, "udp.no_retransmit");
        assert!(
            p["skipped"]
                .as_str()
                .unwrap()
                .contains("/dev/net/tun cannot be opened by this user"),
            "{p}"
        );
    }
    let doctor = as_nobody(&format!("cd {d} && {d}/netconform doctor"));
    let dt = text(&doctor);
    assert_eq!(doctor.status.code(), Some(0), "{dt}");
    assert!(dt.contains("rootless: uid 65534"), "{dt}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_capabilities_or_a_user_namespace_exit_2_with_one_line() {
    // NETCONFORM_NO_USERNS keeps a rootless process from entering a user namespace: what a machine that
    // refuses them sees.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(bin())
        .args(["run", "--cases", "1"])
        .env("NETCONFORM_NO_USERNS", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr.contains("CAP_NET_ADMIN")
            && stderr.contains("sudo")
            && stderr.contains("--privileged"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn doctor_names_every_check_and_the_remedy_of_what_is_missing() {
    let out = netconform(&["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        [
            "privileges",
            "sysctls",
            "tun",
            "af_packet",
            "nft",
            "tshark",
            "kernel"
        ]
    );
    assert_eq!(v["can_run"], true);
    let out = in_mount_ns(READ_ONLY_PROC_SYS, &["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sysctls = &v["checks"][1];
    assert_eq!(sysctls["status"], "limited", "{sysctls}");
    assert!(
        sysctls["remedy"]
            .as_str()
            .unwrap()
            .contains("systempaths=unconfined"),
        "{sysctls}"
    );
    // The plain form: one line per check, a remedy line under what is not ok; -q only those.
    let out = in_mount_ns(NO_TUN, &["doctor", "-q"]);
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(t.starts_with("limited  tun "), "{t}");
    assert!(t.contains("remedy: --device /dev/net/tun"), "{t}");
}

/// (property, case index) of every case a run's JSON report covers.
fn cases_of(report: &serde_json::Value) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for p in report["properties"].as_array().unwrap() {
        for i in p["cases"].as_array().unwrap() {
            out.push((p["id"].as_str().unwrap().to_string(), i.as_u64().unwrap()));
        }
    }
    out
}

#[test]
fn three_shards_cover_exactly_the_unpartitioned_run() {
    let dir = out_dir("env-partition");
    let run = |partition: Option<&str>, seed: Option<u64>, name: &str| {
        let json = dir.join(format!("{name}.json"));
        let mut args: Vec<String> = [
            "run",
            "--property",
            "udp.bind.per_host",
            "--property",
            "tcp.rst.closed_port",
            "--property",
            "udp.recv.truncate",
            "--cases",
            "10",
            "--family",
            "ipv4",
            "--out",
            dir.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "-q",
        ]
        .map(String::from)
        .to_vec();
        if let Some(p) = partition {
            args.extend(["--partition".into(), p.into()]);
        }
        if let Some(s) = seed {
            args.extend(["--seed".into(), s.to_string()]);
        }
        // Without --seed, shards derive the same one from the CI's variables.
        let out = Command::new(bin())
            .args(&args)
            .env("GITHUB_SHA", "0123abcd")
            .env("GITHUB_RUN_ID", "42")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out));
        report(&json)
    };
    let mut union: Vec<(String, u64)> = Vec::new();
    let mut seeds = BTreeSet::new();
    for k in 1..=3 {
        let shard = run(Some(&format!("hash:{k}/3")), None, &format!("shard{k}"));
        assert_eq!(shard["partition"], format!("hash:{k}/3"));
        seeds.insert(shard["seed"].as_u64().unwrap());
        let cases = cases_of(&shard);
        assert!(!cases.is_empty(), "shard {k} is empty");
        union.extend(cases);
    }
    assert_eq!(
        seeds.len(),
        1,
        "every shard derives the same seed: {seeds:?}"
    );
    // The unpartitioned run with that seed.
    let full = run(None, seeds.into_iter().next(), "whole");
    assert_eq!(cases_of(&full).len(), 30);
    let n = union.len();
    let union: BTreeSet<_> = union.into_iter().collect();
    assert_eq!(n, union.len(), "a case ran in two shards");
    let expected: BTreeSet<_> = cases_of(&full).into_iter().collect();
    assert_eq!(union, expected);
    // Deterministic: the same shard again is the same cases.
    assert_eq!(
        cases_of(&run(Some("hash:2/3"), None, "shard2-again")),
        cases_of(&report(&dir.join("shard2.json")))
    );
    let bad = netconform(&["run", "--partition", "hash:4/3"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
}

#[test]
fn fail_fast_stops_starting_cases_after_the_first_failure() {
    let dir = out_dir("env-fail-fast");
    let json = dir.join("report.json");
    let out = netconform(&[
        "run",
        "--property",
        "tcp.random_ops",
        "--model-fault",
        "write-after-shutdown-succeeds",
        "--cases",
        "200",
        "--jobs",
        "2",
        "--shrink-cases",
        "0",
        "--seed",
        "3",
        "--fail-fast",
        "--out",
        dir.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "-q",
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let r = report(&json);
    let not_run = r["not_run"].as_u64().unwrap();
    let ran = cases_of(&r).len() as u64;
    assert!(
        not_run > 0 && ran + not_run == 200,
        "ran {ran}, not run {not_run}:\n{t}"
    );
    assert!(t.contains("stopped by --fail-fast"), "{t}");
}

#[test]
fn the_documented_container_line_is_the_one_doctor_recommends() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let minimal = "--cap-add NET_ADMIN --cap-add SYS_ADMIN --security-opt systempaths=unconfined --device /dev/net/tun";
    assert!(harness::lab::privileges::CONTAINER_REMEDY.contains(minimal));
    let flat = |path: &str| {
        std::fs::read_to_string(root.join(path))
            .unwrap()
            .split_whitespace()
            .filter(|w| *w != "\\")
            .collect::<Vec<_>>()
            .join(" ")
    };
    for path in ["README.md", "docs/ci.md"] {
        assert!(
            flat(path).contains(minimal),
            "{path} lacks the container line"
        );
    }
    // The old line without systempaths=unconfined leaves /proc/sys read-only: it must not come back.
    assert!(!flat("README.md").contains("--cap-add NET_RAW --device"));
    let containerfile = flat("Containerfile");
    assert!(containerfile.contains("FROM debian:"), "Debian-based");
    assert!(
        containerfile.contains("--bin netconform "),
        "builds netconform"
    );
    assert!(containerfile.contains("WITH_TSHARK"), "tshark optional");
}

#[test]
fn refused_user_namespaces_exit_2_naming_the_knob() {
    // In a user namespace of the test's own whose limit of nested user namespaces is 0 (its own sysctl, not
    // the host's), without capabilities: rootless mode is refused, as on a machine that forbids it.
    let out = Command::new("unshare")
        .args([
            "-U",
            "--map-root-user",
            "sh",
            "-c",
            "echo 0 > /proc/sys/user/max_user_namespaces && \
             exec setpriv --inh-caps=-all --bounding-set=-all \"$0\" \"$@\"",
        ])
        .arg(bin())
        .args(["run", "--cases", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("refused a user namespace")
            && stderr.contains("sudo sysctl user.max_user_namespaces="),
        "{stderr}"
    );
}
