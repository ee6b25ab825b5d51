//! `netconform doctor`: what this machine lets netconform do, each finding with a one-line remedy.
//!
//! The checks are the ones a run makes (`harness/src/lab/privileges.rs`), in the same process state: a
//! rootless doctor has entered its user namespace like a rootless run does. Every probe happens in a scratch
//! network namespace, never the host's. Exit 0 when runs can happen — perhaps limited, with cases skipped —
//! and 2 when they cannot.

use std::process::{Command, Stdio};

use harness::lab::privileges::{self, Facilities, Mode};
use harness::report::Verbosity;
use harness::HarnessError;
use serde::Serialize;

/// One finding.
#[derive(Serialize)]
struct Finding {
    check: &'static str,
    /// `ok`; `limited` (runs, skipping what needs it); `absent` (optional, nothing skipped); `fail` (no run).
    status: &'static str,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    remedy: Option<String>,
}

impl Finding {
    fn new(check: &'static str, status: &'static str, detail: impl Into<String>) -> Finding {
        Finding {
            check,
            status,
            detail: detail.into(),
            remedy: None,
        }
    }

    fn remedy(mut self, remedy: impl Into<String>) -> Finding {
        self.remedy = Some(remedy.into());
        self
    }
}

/// Opens an AF_PACKET socket (what the capture uses) in a scratch network namespace.
fn af_packet() -> Result<(), String> {
    std::thread::spawn(|| {
        harness::lab::nsfd::NetNs::new_on_this_thread()
            .map_err(|e| format!("no network namespace to try it in ({e})"))?;
        // SAFETY: plain socket(2); the descriptor is closed right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                (libc::ETH_P_ALL as u16).to_be() as i32,
            )
        };
        if fd < 0 {
            return Err(format!(
                "socket(AF_PACKET): {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(fd) };
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| Err("the probe panicked".into()))
}

/// The first line of `program --version`, or `None` when it does not run.
fn tool_version(program: &str) -> Option<String> {
    let out = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or(program)
            .trim()
            .to_string()
    })
}

/// `major.minor` of a kernel release such as `6.18.44-fc-v1098`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn findings() -> Vec<Finding> {
    let mut out = Vec::new();
    let privileged = privileges::check();
    out.push(match (privileges::mode(), &privileged) {
        (Mode::Privileged, Ok(())) => Finding::new(
            "privileges",
            "ok",
            "CAP_NET_ADMIN, CAP_SYS_ADMIN and CAP_NET_RAW (root or a privileged container)",
        ),
        (Mode::UserNamespace { uid }, Ok(())) => Finding::new(
            "privileges",
            "ok",
            format!("rootless: uid {uid} enters a user namespace of its own, mapped to 0"),
        ),
        (_, Err(HarnessError::Privilege { what, remedy })) => {
            Finding::new("privileges", "fail", what.clone()).remedy(remedy.clone())
        }
        (_, Err(e)) => Finding::new("privileges", "fail", e.to_string()),
        (Mode::Unprivileged { why }, Ok(())) => Finding::new("privileges", "fail", why.clone()),
    });
    let can_run = privileged.is_ok();
    if can_run {
        let facilities = Facilities::probe();
        let remedy_of = |one: Facilities| one.remedy().unwrap_or_default();
        out.push(match &facilities.sysctls {
            None => Finding::new(
                "sysctls",
                "ok",
                "per-namespace net.* sysctls can be written in a lab",
            ),
            Some(why) => Finding::new(
                "sysctls",
                "limited",
                format!("{why}: cases that set sysctls are skipped"),
            )
            .remedy(remedy_of(Facilities {
                sysctls: Some(why.clone()),
                tun: None,
            })),
        });
        out.push(match &facilities.tun {
            None => Finding::new(
                "tun",
                "ok",
                "/dev/net/tun opens: relay, scripted peer and --sut links",
            ),
            Some(why) => Finding::new(
                "tun",
                "limited",
                format!("{why}: relay, scripted-peer and --sut cases are skipped"),
            )
            .remedy(remedy_of(Facilities {
                sysctls: None,
                tun: Some(why.clone()),
            })),
        });
        out.push(match af_packet() {
            Ok(()) => Finding::new("af_packet", "ok", "AF_PACKET capture sockets open in a lab"),
            Err(e) => Finding::new("af_packet", "fail", format!("{e}: no capture, no run"))
                .remedy(privileges::CONTAINER_REMEDY),
        });
    }
    for (tool, package, used_for) in [
        ("nft", "nftables", "--exec fault injection (optional)"),
        (
            "tshark",
            "tshark",
            "reading pcapng back in the tests (optional)",
        ),
    ] {
        out.push(match tool_version(tool) {
            Some(v) => Finding::new(tool, "ok", format!("{v} — {used_for}")),
            None => Finding::new(tool, "absent", format!("not found — {used_for}"))
                .remedy(format!("apt-get install {package}")),
        });
    }
    let release = privileges::kernel_release();
    out.push(match kernel_version(&release) {
        // SIOCGSKNS (the containment check before every connect/send) is Linux ≥ 4.9.
        Some(v) if v >= (4, 9) => Finding::new("kernel", "ok", format!("Linux {release}")),
        _ => Finding::new(
            "kernel",
            "fail",
            format!("Linux {release}: netconform needs ≥ 4.9 (SIOCGSKNS)"),
        )
        .remedy("run on a newer kernel"),
    });
    out
}

/// `netconform doctor [--json]`.
pub fn doctor(json: bool, verbosity: Verbosity) -> Result<i32, HarnessError> {
    let found = findings();
    let code = if found.iter().any(|f| f.status == "fail") {
        2
    } else {
        0
    };
    if json {
        let v = serde_json::json!({
            "netconform": env!("CARGO_PKG_VERSION"),
            "can_run": code == 0,
            "checks": found,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("findings serialise")
        );
        return Ok(code);
    }
    for f in &found {
        if verbosity == Verbosity::Quiet && f.status == "ok" {
            continue;
        }
        println!("{:<8} {:<10} {}", f.status, f.check, f.detail);
        if let Some(r) = &f.remedy {
            println!("{:<8} {:<10} remedy: {r}", "", "");
        }
    }
    let limited = found.iter().any(|f| f.status == "limited");
    println!(
        "{}",
        match (code, limited) {
            (2, _) => "netconform cannot run here (exit 2): see the remedy above",
            (_, true) => "netconform runs here, skipping the cases marked limited above",
            _ => "netconform runs here with every property",
        }
    );
    Ok(code)
}
