//! Reports of a run: the terminal summary, JSON, JUnit XML, and the HTML report ([`html`]).
//!
//! The report never re-runs anything: it renders a [`RunReport`]. Terminal verbosity: the default prints the
//! summary table, one line of aggregated notes per property ([`notes`]), the failures and the footer;
//! `-q` only the failures and the footer; `-v` every distinct note (and the CLI prints per-case notes).

pub mod html;
pub mod notes;
pub mod view;

use std::fmt::Write as _;
use std::path::Path;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::error::HarnessError;
use crate::runner::{CaseStatus, RunReport};

/// How much the terminal report says (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// The summary table printed at the end of a run, then the details of every case that did not pass.
pub fn summary(report: &RunReport) -> String {
    summary_with(report, Verbosity::Normal)
}

/// [`summary`] at a verbosity. Failure blocks are the same at every verbosity.
pub fn summary_with(report: &RunReport, verbosity: Verbosity) -> String {
    let mut s = String::new();
    if verbosity > Verbosity::Quiet {
        table(&mut s, report, verbosity);
    }
    failures(&mut s, report);
    footer(&mut s, report);
    s
}

fn table(s: &mut String, report: &RunReport, verbosity: Verbosity) {
    let idw = report
        .properties
        .iter()
        .map(|p| p.id.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let _ = writeln!(
        s,
        "{:<idw$}  {:<14}  {:>5} {:>5} {:>5} {:>7} {:>5}  {:>17}  status",
        "property", "suite", "pass", "fail", "skip", "invalid", "error", "case time, summed"
    );
    // A suite skipped whole for one reason (the stdio suite in a kernel run) is one row, unless -v.
    let whole_suite_skip = |suite: &str| -> Option<(usize, &str)> {
        let members: Vec<_> = report
            .properties
            .iter()
            .filter(|p| p.suite == suite)
            .collect();
        let why = members.first()?.skipped.as_deref()?;
        let one_reason = members.iter().all(|p| p.skipped.as_deref() == Some(why));
        (verbosity != Verbosity::Verbose && members.len() > 1 && one_reason)
            .then_some((members.len(), why))
    };
    let mut folded: Vec<(String, usize, &str)> = Vec::new();
    for p in &report.properties {
        let (id, what) = match whole_suite_skip(&p.suite) {
            Some((n, why)) => {
                if folded.iter().any(|(suite, _, _)| *suite == p.suite) {
                    continue;
                }
                folded.push((p.suite.clone(), n, why));
                let skips: u64 = report
                    .properties
                    .iter()
                    .filter(|q| q.suite == p.suite)
                    .map(|q| q.skip)
                    .sum();
                (format!("({n} properties)"), skips)
            }
            None => (p.id.clone(), p.skip),
        };
        let _ = writeln!(
            s,
            "{:<idw$}  {:<14}  {:>5} {:>5} {:>5} {:>7} {:>5}  {:>16.2}s  {}",
            id,
            p.suite,
            p.pass,
            p.fail,
            what,
            p.invalid,
            p.error,
            p.duration_ms as f64 / 1000.0,
            p.status().to_uppercase()
        );
    }
    for (suite, n, why) in &folded {
        let _ = writeln!(s, "  skipped suite {suite} ({n} properties): {why}");
    }
    for p in &report.properties {
        if let Some(why) = &p.skipped {
            if whole_suite_skip(&p.suite).is_none() {
                let _ = writeln!(s, "  skipped {}: {why}", p.id);
            }
        }
    }
    for p in &report.properties {
        if p.notes.is_empty() {
            continue;
        }
        if verbosity == Verbosity::Verbose {
            for (note, count) in &p.notes {
                let _ = writeln!(s, "  note {}: {note} ×{count}", p.id);
            }
        } else {
            let _ = writeln!(
                s,
                "  notes {}: {}",
                p.id,
                notes::aggregate(&p.notes).join("; ")
            );
        }
    }
}

fn failures(s: &mut String, report: &RunReport) {
    for p in &report.properties {
        for c in p.problems.iter().take(5) {
            let _ = writeln!(
                s,
                "\n{} {} case {} ({}, seed {}): {}",
                c.status.label().to_uppercase(),
                p.id,
                c.index,
                c.family.name(),
                c.seed,
                c.description
            );
            match &c.status {
                CaseStatus::Fail { violation } => {
                    let _ = writeln!(s, "  {}", violation.to_string().replace('\n', "\n  "));
                }
                CaseStatus::Invalid { reason } | CaseStatus::Skip { reason } => {
                    let _ = writeln!(s, "  {reason}");
                }
                CaseStatus::Error { message } => {
                    let _ = writeln!(s, "  {message}");
                }
                CaseStatus::Pass { .. } => {}
            }
            if let Some(sh) = &c.shrink {
                let _ = writeln!(
                    s,
                    "  shrunk: {} -> {} ops in {} runs ({:.1} s); {} ({}/{} re-runs failed)",
                    sh.original_size.map_or("?".into(), |n| n.to_string()),
                    sh.shrunk_size.map_or("?".into(), |n| n.to_string()),
                    sh.attempts,
                    sh.shrink_ms as f64 / 1000.0,
                    sh.classification.to_uppercase(),
                    sh.confirmations_failed,
                    sh.confirmations
                );
            }
            if let Some(pcap) = &c.pcap {
                let _ = writeln!(s, "  pcapng: {pcap}");
            }
            if let Some(replay) = &c.replay {
                let _ = writeln!(s, "  replay: {replay}");
            }
        }
        if p.problems.len() > 5 {
            let _ = writeln!(
                s,
                "\n… and {} more non-passing cases of {} (see the JSON report)",
                p.problems.len() - 5,
                p.id
            );
        }
    }
}

fn footer(s: &mut String, report: &RunReport) {
    let total: u64 = report
        .properties
        .iter()
        .map(|p| p.pass + p.fail + p.skip + p.invalid + p.error)
        .sum();
    let _ = writeln!(
        s,
        "\n{} cases of {} properties in {:.2}s wall (up to {} at once), seed {}{}{}{}",
        total,
        report.properties.len(),
        report.duration_ms as f64 / 1000.0,
        report.peak_jobs,
        report.seed,
        report
            .partition
            .as_ref()
            .map(|p| format!(", partition {p}"))
            .unwrap_or_default(),
        if report.not_run > 0 {
            format!(
                " — stopped by --fail-fast, {} case(s) not run",
                report.not_run
            )
        } else {
            String::new()
        },
        if report.interrupted {
            " — INTERRUPTED (partial results)"
        } else {
            ""
        }
    );
}

pub fn write_json(report: &RunReport, path: &Path) -> Result<(), HarnessError> {
    let text = serde_json::to_string_pretty(report).expect("reports serialise");
    std::fs::write(path, text + "\n").map_err(|e| HarnessError::output(path.display(), e))
}

/// JUnit XML: one test suite per netconform suite, one test case per property.
pub fn junit(report: &RunReport) -> String {
    let mut junit = Report::new("netconform");
    let mut suites: Vec<TestSuite> = Vec::new();
    for p in &report.properties {
        let idx = match suites.iter().position(|s| s.name.as_str() == p.suite) {
            Some(i) => i,
            None => {
                suites.push(TestSuite::new(p.suite.clone()));
                suites.len() - 1
            }
        };
        let status = match p.status() {
            "pass" => TestCaseStatus::success(),
            "skip" => {
                let mut st = TestCaseStatus::skipped();
                if let TestCaseStatus::Skipped { message, .. } = &mut st {
                    *message = p
                        .skipped
                        .clone()
                        .or_else(|| p.problems.first().map(|c| c.description.clone()))
                        .map(Into::into);
                }
                st
            }
            other => {
                let kind = if other == "fail" {
                    NonSuccessKind::Failure
                } else {
                    NonSuccessKind::Error
                };
                let mut st = TestCaseStatus::non_success(kind);
                let first = p
                    .problems
                    .iter()
                    .find(|c| c.status.label() == other)
                    .or(p.problems.first());
                if let TestCaseStatus::NonSuccess {
                    message,
                    description,
                    ty,
                    ..
                } = &mut st
                {
                    *ty = Some(other.to_string().into());
                    if let Some(c) = first {
                        let text = match &c.status {
                            CaseStatus::Fail { violation } => violation.to_string(),
                            CaseStatus::Invalid { reason } | CaseStatus::Skip { reason } => {
                                reason.clone()
                            }
                            CaseStatus::Error { message } => message.clone(),
                            CaseStatus::Pass { .. } => String::new(),
                        };
                        *message = Some(
                            format!(
                                "case {} ({}, seed {}): {}",
                                c.index,
                                c.family.name(),
                                c.seed,
                                c.description
                            )
                            .into(),
                        );
                        let mut d = text;
                        if let Some(r) = &c.replay {
                            d.push_str(&format!("\nreplay: {r}"));
                        }
                        *description = Some(d.into());
                    }
                }
                st
            }
        };
        let mut tc = TestCase::new(p.id.clone(), status);
        tc.set_classname(p.suite.clone());
        tc.set_time(std::time::Duration::from_millis(p.duration_ms));
        suites[idx].add_test_case(tc);
    }
    junit.add_test_suites(suites);
    junit.to_string().unwrap_or_default()
}

pub fn write_junit(report: &RunReport, path: &Path) -> Result<(), HarnessError> {
    std::fs::write(path, junit(report)).map_err(|e| HarnessError::output(path.display(), e))
}
