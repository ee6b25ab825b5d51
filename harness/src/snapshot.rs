//! Snapshots: what this kernel actually does in named, fixed scenarios, rendered for people and compared
//! with files under `snapshots/<profile>/`.
//!
//! A [`Scenario`] is a fixed [`Program`] (no randomness) run in a fresh lab with a [`Profile`]'s sysctls.
//! The rendering is normalised by construction, not filtered afterwards: canonical segment lines (roles,
//! relative seq/ack, no timestamps values or ports — see [`crate::trace`]), an abstract timeline (a timing
//! class such as `+~40ms` only where a gap is 30 ms or more, so "immediate" is the absence of a class), the
//! operations with their outcomes and the TCP state after each. Only the scenario's own conversations are
//! shown: lab housekeeping (MLD reports of the address-less IPv6 interfaces) is not part of any scenario.
//!
//! Files use insta's format (a `---` header, then the body), so `cargo test` checks them with insta and
//! `netconform snapshot` compares them at run time without cargo.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::HarnessError;
use crate::exec::{run_program, ExecConfig, OpOutcome};
use crate::frame::Host;
use crate::lab::{LabConfig, SysctlSetting};
use crate::ops::Program;
use crate::pipeline::{run_in_lab, Settle};
use crate::schedule::CpuGate;
use crate::sock::Family;
use crate::trace::{ConversationKind, Trace};

/// A set of sysctls both hosts get; one directory of expectations each.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: &'static str,
    pub what: &'static str,
    pub sysctls: &'static [(&'static str, &'static str)],
}

/// The profiles netconform keeps expectations for.
pub const PROFILES: &[Profile] = &[
    Profile {
        name: "linux-default",
        what: "the kernel's defaults (plus the lab's own: tcp_no_metrics_save=1, no DAD, no link-local)",
        sysctls: &[],
    },
    Profile {
        name: "linux-no-sack",
        what: "net.ipv4.tcp_sack=0 on both hosts",
        sysctls: &[("net.ipv4.tcp_sack", "0")],
    },
];

pub fn profile(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|p| p.name == name)
}

/// A named, fixed scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// File name without extension, e.g. `half-close-ipv4`.
    pub name: String,
    /// One line saying what happens.
    pub what: String,
    pub family: Family,
    pub program: Program,
    /// Extra lab settings of this scenario (added to the profile's).
    pub lab: LabConfig,
    /// How long to keep capturing after the last op.
    pub settle: Duration,
    /// Deadline of blocking reads/writes/accepts.
    pub io_timeout_ms: u32,
    /// Sysctls applied last, over the scenario's and the profile's (`netconform snapshot --sysctl`).
    pub overrides: Vec<SysctlSetting>,
}

/// The timing class of a gap: empty below 30 ms ("immediate": scheduling on a loaded 2-core machine and
/// Linux's tail-loss probe, ~2·SRTT with a 10 ms floor, both land there), otherwise a round value with a
/// margin around the kernel constants it is meant to show (Linux TCP_DELACK_MIN 40 ms, zero-window probe
/// base 200 ms doubling, TCP_TIMEOUT_INIT 1 s).
pub fn timing_class(gap: Duration) -> &'static str {
    let ms = gap.as_secs_f64() * 1000.0;
    match ms {
        m if m < 30.0 => "",
        m if m < 60.0 => "+~40ms",
        m if m < 130.0 => "+~100ms",
        m if m < 300.0 => "+~200ms",
        m if m < 600.0 => "+~400ms",
        m if m < 1200.0 => "+~800ms",
        m if m < 2400.0 => "+~1.6s",
        _ => "+>2.4s",
    }
}

/// Runs a scenario under a profile and renders it.
pub fn run_scenario(s: &Scenario, profile: &Profile, seed: u64) -> Result<String, HarnessError> {
    let mut cfg = s.lab.clone();
    for (k, v) in profile.sysctls {
        for host in [Host::A, Host::B] {
            cfg.sysctls.push(SysctlSetting {
                host,
                key: (*k).into(),
                value: (*v).into(),
            });
        }
    }
    cfg.sysctls.extend(s.overrides.iter().cloned());
    let mut exec = ExecConfig::new(seed, s.family);
    exec.io_timeout_ms = s.io_timeout_ms;
    let gate = CpuGate::unlimited();
    let ran = run_in_lab(&cfg, None, &gate, Settle::Exactly(s.settle), |lab| {
        run_program(lab, &s.program, exec)
    })?;
    if ran.captured.drops > 0 {
        return Err(HarnessError::capture(
            "snapshot capture",
            std::io::Error::other(format!("{} frames dropped", ran.captured.drops)),
        ));
    }
    let trace = ran.trace();
    // The sockets close after the capture stopped: their FIN or RST is not part of the scenario.
    let (outcomes, _sockets) = ran.executed;
    Ok(render(s, profile, &outcomes, &trace))
}

/// The people-readable rendering of one run.
pub fn render(s: &Scenario, profile: &Profile, outcomes: &[OpOutcome], trace: &Trace) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "scenario {} ({}), profile {}",
        s.name,
        s.family.name(),
        profile.name
    );
    let _ = writeln!(out, "{}", s.what);
    let _ = writeln!(
        out,
        "\ntrace (A = host a, B = host b; seq/ack relative to each side's ISN)"
    );
    let shown: Vec<usize> = trace
        .conversations
        .iter()
        .filter(|c| {
            matches!(
                c.kind,
                ConversationKind::Tcp
                    | ConversationKind::Udp
                    | ConversationKind::Arp
                    | ConversationKind::Neighbour
            )
        })
        .flat_map(|c| c.frames.iter().copied())
        .collect();
    let mut shown = shown;
    shown.sort();
    order_simultaneous_close(trace, &mut shown);
    let tagged = trace
        .conversations
        .iter()
        .filter(|c| matches!(c.kind, ConversationKind::Tcp | ConversationKind::Udp))
        .count()
        > 1;
    let mut prev: Option<u64> = None;
    for i in shown {
        let f = &trace.frames[i];
        let class = prev
            .map(|p| timing_class(Duration::from_nanos(f.rel_ns.saturating_sub(p))))
            .unwrap_or("");
        prev = Some(f.rel_ns);
        let mut line = String::new();
        if tagged {
            let _ = write!(line, "c{} ", f.conversation.map_or(0, |c| c + 1));
        }
        line.push_str(&trace.canonical_line(i));
        for l in &f.labels {
            let _ = write!(line, "  [{l}]");
        }
        let _ = writeln!(out, "  {:<8}{line}", class);
    }
    let _ = writeln!(out, "\noperations (host, op, result, TCP state after)");
    for host in [Host::A, Host::B] {
        for o in outcomes.iter().filter(|o| o.host == host) {
            let state = o
                .sock
                .as_ref()
                .and_then(|s| s.state())
                .map(|s| s.rfc_name())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {}  {:<34} -> {:<16} {}",
                host.name(),
                o.op.render(),
                o.result.render(),
                state
            );
        }
    }
    // Trailing spaces make diffs noisy.
    out.lines()
        .map(|l| l.trim_end().to_string() + "\n")
        .collect()
}

/// Where a scenario's expectation lives.
/// Puts the frames of a simultaneous close in one order: `A` first, wherever the capture saw `B`'s first.
///
/// In a simultaneous close both FINs are sent before either arrives, and then both final ACKs: each pair
/// crosses on the link, so which one passes the capture point (a's end) first is a race, not behaviour — on a
/// loaded machine `B`'s came first in 1 of a few hundred runs, and the snapshot differed. Only pairs proven to
/// cross are reordered: adjacent frames of one TCP conversation, `B`'s then `A`'s, either both FINs with `A`'s
/// not acknowledging `B`'s (A had not seen it), or both pure ACKs once both FINs were sent (each answers a FIN,
/// neither answers the other). Any other order (a FIN answered by a FIN+ACK, a window update that triggers
/// data) is causal and kept.
pub(crate) fn order_simultaneous_close(trace: &Trace, shown: &mut [usize]) {
    use std::collections::HashMap;
    // Per conversation, the sequence number of each side's FIN once seen ([a, b]).
    let mut fins: HashMap<usize, [Option<u32>; 2]> = HashMap::new();
    let fin_seq = |i: usize| {
        let f = &trace.frames[i];
        let t = f.tcp()?;
        t.flags
            .fin
            .then(|| f.rel_seq.map(|s| s.wrapping_add(t.payload_len as u32)))
            .flatten()
    };
    let pure_ack = |i: usize| {
        trace.frames[i].tcp().is_some_and(|t| {
            t.payload_len == 0 && t.flags.ack && !t.flags.fin && !t.flags.syn && !t.flags.rst
        })
    };
    let mut i = 0;
    while i < shown.len() {
        let (first, conv) = (shown[i], trace.frames[shown[i]].conversation);
        if let Some(conv) = conv {
            if let (Some(seq), Some(host)) = (fin_seq(first), trace.frames[first].from) {
                fins.entry(conv).or_default()[host as usize] = Some(seq);
            }
        }
        let Some(&second) = shown.get(i + 1) else {
            break;
        };
        let (f1, f2) = (&trace.frames[first], &trace.frames[second]);
        let pair = conv.is_some()
            && f2.conversation == conv
            && f1.from == Some(Host::B)
            && f2.from == Some(Host::A);
        let crossing_fins = pair
            && fin_seq(first).is_some_and(|b_fin| {
                fin_seq(second).is_some()
                    && f2
                        .rel_ack
                        .is_none_or(|ack| (ack.wrapping_sub(b_fin) as i32) <= 0)
            });
        let both_fins_sent = conv
            .and_then(|c| fins.get(&c))
            .is_some_and(|f| f[0].is_some() && f[1].is_some());
        let crossing_acks = pair && both_fins_sent && pure_ack(first) && pure_ack(second);
        if crossing_fins || crossing_acks {
            shown.swap(i, i + 1);
            if let (Some(conv), Some(seq)) = (conv, fin_seq(second)) {
                fins.entry(conv).or_default()[Host::A as usize] = Some(seq);
            }
            i += 2;
        } else {
            i += 1;
        }
    }
}

pub fn snapshot_path(dir: &Path, profile: &str, scenario: &str) -> PathBuf {
    dir.join(profile).join(format!("{scenario}.snap"))
}

/// The body of a snapshot file (insta's header removed), if it exists.
pub fn read_snapshot(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(strip_header(&text).to_string())
}

fn strip_header(text: &str) -> &str {
    if let Some(rest) = text.strip_prefix("---\n") {
        if let Some(end) = rest.find("\n---\n") {
            return &rest[end + 5..];
        }
    }
    text
}

/// Writes a snapshot in insta's format.
pub fn write_snapshot(path: &Path, body: &str) -> Result<(), HarnessError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| HarnessError::output(dir.display(), e))?;
    }
    let text = format!("---\nsource: tests/snapshots.rs\nexpression: rendered\n---\n{body}");
    std::fs::write(path, text).map_err(|e| HarnessError::output(path.display(), e))
}

/// A unified diff, expected (`-`) against actual (`+`), coloured when `color`.
pub fn diff(expected: &str, actual: &str, color: bool) -> String {
    let d = similar::TextDiff::from_lines(expected, actual);
    let mut out = String::new();
    for group in d.grouped_ops(3) {
        let _ = writeln!(out, "@@");
        for op in group {
            for change in d.iter_changes(&op) {
                let (sign, code) = match change.tag() {
                    similar::ChangeTag::Delete => ("-", "\x1b[31m"),
                    similar::ChangeTag::Insert => ("+", "\x1b[32m"),
                    similar::ChangeTag::Equal => (" ", ""),
                };
                let line = change.to_string_lossy();
                if color && !code.is_empty() {
                    let _ = write!(out, "{code}{sign}{line}\x1b[0m");
                } else {
                    let _ = write!(out, "{sign}{line}");
                }
                if !line.ends_with('\n') {
                    out.push('\n');
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_classes_have_margins_around_kernel_constants() {
        let ms = |v| Duration::from_micros((v * 1000.0) as u64);
        assert_eq!(timing_class(ms(0.3)), "");
        assert_eq!(timing_class(ms(22.0)), "");
        assert_eq!(timing_class(ms(40.0)), "+~40ms");
        assert_eq!(timing_class(ms(48.0)), "+~40ms");
        assert_eq!(timing_class(ms(210.0)), "+~200ms");
        assert_eq!(timing_class(ms(430.0)), "+~400ms");
        assert_eq!(timing_class(ms(860.0)), "+~800ms");
        assert_eq!(timing_class(ms(1700.0)), "+~1.6s");
    }

    #[test]
    fn insta_headers_are_stripped_and_diffs_show_both_sides() {
        assert_eq!(strip_header("---\nsource: x\n---\nbody\n"), "body\n");
        assert_eq!(strip_header("plain\n"), "plain\n");
        let d = diff("a\nb\n", "a\nc\n", false);
        assert!(d.contains("-b\n") && d.contains("+c\n"), "{d}");
    }
}
