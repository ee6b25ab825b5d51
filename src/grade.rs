//! `netconform grade MANIFEST`: the same selection run against every SUT of a manifest, one table out.
//!
//! Each SUT is judged by a `netconform run` of its own (a child process of this binary, with `--json`), one
//! after the other, so one student's stack can neither disturb nor crash another's grading, and each gets its
//! own output directory with case files and pcapngs to replay (`<out>/<name>/`). The table has one row per
//! SUT and one column per property: `pass`, `FAIL` with the first violation, `skip` with why, `ERROR` (the
//! harness could not judge). Every SUT is run with the same seed (default 1, not the clock), so grades are
//! reproducible and every student faces the same cases.
//!
//! The manifest is TOML (or JSON, by its extension):
//!
//! ```toml
//! [run]                       # optional, for every SUT
//! cases = 16                  # per property and family
//! seed = 1
//! suites = ["tcp-lifecycle"]  # or properties = [...]; neither: every property
//! args = ["--family", "ipv4"] # more `netconform run` arguments
//!
//! [[sut]]
//! name = "alice"
//! command = "/srv/grading/alice/adapter"
//! attach = "fd"               # fd | tun[:NAME] | kernel
//! limit = 60                  # wall-clock seconds per case (--sut-limit)
//! # Passive stacks: mode = "stdio", role = "server", port = 5000, device = "tun144",
//! # addr / addr6 / peer / peer6 overrides: each key becomes `--sut-<key> VALUE` of `netconform run`.
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::Args;
use harness::HarnessError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Args, Debug)]
pub struct GradeArgs {
    /// The manifest: TOML (or JSON), one `[[sut]]` entry per student (see `netconform grade --help`).
    manifest: PathBuf,
    /// Seed for every SUT (overrides the manifest's; default 1).
    #[arg(long)]
    seed: Option<u64>,
    /// Cases per property and family (overrides the manifest's; default 16).
    #[arg(long)]
    cases: Option<u64>,
    /// Only this suite (repeatable; adds to the manifest's).
    #[arg(long = "suite")]
    suites: Vec<String>,
    /// Only this property (repeatable; adds to the manifest's).
    #[arg(long = "property")]
    properties: Vec<String>,
    /// Per-SUT output directories (case files, pcapngs, the run's log) go under this one.
    #[arg(long, default_value = "netconform-grade")]
    out: PathBuf,
    /// Also write the table as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also write the table as a self-contained HTML page.
    #[arg(long)]
    html: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(default)]
    run: RunSection,
    #[serde(default)]
    sut: Vec<SutEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunSection {
    cases: Option<u64>,
    seed: Option<u64>,
    #[serde(default)]
    suites: Vec<String>,
    #[serde(default)]
    properties: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SutEntry {
    name: String,
    command: String,
    attach: Option<String>,
    limit: Option<u64>,
    mode: Option<String>,
    role: Option<String>,
    port: Option<u16>,
    device: Option<String>,
    addr: Option<String>,
    addr6: Option<String>,
    peer: Option<String>,
    peer6: Option<String>,
}

impl SutEntry {
    /// The `netconform run` arguments that describe this SUT.
    fn run_args(&self) -> Vec<String> {
        let mut args = vec!["--sut".to_string(), self.command.clone()];
        let mut flag = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                args.push(format!("--{name}"));
                args.push(v);
            }
        };
        flag("attach", self.attach.clone());
        flag("sut-limit", self.limit.map(|l| l.to_string()));
        flag("sut-mode", self.mode.clone());
        flag("sut-role", self.role.clone());
        flag("sut-port", self.port.map(|p| p.to_string()));
        flag("sut-dev", self.device.clone());
        flag("sut-addr", self.addr.clone());
        flag("sut-addr6", self.addr6.clone());
        flag("sut-peer", self.peer.clone());
        flag("sut-peer6", self.peer6.clone());
        args
    }
}

/// One cell of the table.
#[derive(Debug, Clone, Serialize)]
struct Cell {
    /// `pass`, `fail`, `skipped`, `invalid` or `error`.
    verdict: &'static str,
    /// The first violation (fail), the reason (skipped), the message (error); empty for a pass.
    detail: String,
}

#[derive(Debug, Serialize)]
struct SutRow {
    name: String,
    command: String,
    /// `netconform run`'s exit code (0 all passed, 1 something did not, 2 could not run).
    exit_code: i32,
    /// Why nothing could be judged (the run exited 2 or wrote no report).
    harness_error: Option<String>,
    passed: usize,
    judged: usize,
    results: std::collections::BTreeMap<String, Cell>,
    out_dir: PathBuf,
}

#[derive(Debug, Serialize)]
struct Table {
    netconform: &'static str,
    seed: u64,
    cases: u64,
    properties: Vec<String>,
    suts: Vec<SutRow>,
}

pub fn grade(args: GradeArgs) -> Result<i32, HarnessError> {
    let manifest = read_manifest(&args.manifest)?;
    if manifest.sut.is_empty() {
        return Err(HarnessError::Usage(format!(
            "{}: no [[sut]] entry: nothing to grade",
            args.manifest.display()
        )));
    }
    let mut names = std::collections::BTreeSet::new();
    for s in &manifest.sut {
        if s.name.is_empty() || !names.insert(dir_name(&s.name)) {
            return Err(HarnessError::Usage(format!(
                "{}: SUT names must be non-empty and distinct (after replacing characters other than \
                 letters, digits, '-', '_' and '.'): {:?}",
                args.manifest.display(),
                s.name
            )));
        }
    }
    let seed = args.seed.or(manifest.run.seed).unwrap_or(1);
    let cases = args.cases.or(manifest.run.cases).unwrap_or(16);
    let mut selection = Vec::new();
    for s in manifest.run.suites.iter().chain(&args.suites) {
        selection.extend(["--suite".to_string(), s.clone()]);
    }
    for p in manifest.run.properties.iter().chain(&args.properties) {
        selection.extend(["--property".to_string(), p.clone()]);
    }
    // The selection is the same for every SUT: a mistake in it is one usage error, not one per SUT.
    let all = suites::all();
    for s in manifest.run.suites.iter().chain(&args.suites) {
        if !all.iter().any(|p| p.info().suite == s) {
            return Err(HarnessError::Usage(format!(
                "suite {s:?}: no such suite (`netconform list` shows them)"
            )));
        }
    }
    for id in manifest.run.properties.iter().chain(&args.properties) {
        if !all.iter().any(|p| p.info().id == id) {
            return Err(HarnessError::Usage(format!(
                "property {id:?}: no such property (`netconform list` shows them)"
            )));
        }
    }
    let exe = std::env::current_exe()
        .map_err(|e| HarnessError::Usage(format!("cannot find netconform's own binary: {e}")))?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| HarnessError::Usage(format!("cannot create {}: {e}", args.out.display())))?;
    eprintln!(
        "grade: {} SUT(s), {cases} case(s) per property and family, seed {seed}; output under {}",
        manifest.sut.len(),
        args.out.display()
    );
    let mut rows = Vec::new();
    let mut properties: Vec<String> = Vec::new();
    for (k, entry) in manifest.sut.iter().enumerate() {
        let dir = args.out.join(dir_name(&entry.name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| HarnessError::Usage(format!("cannot create {}: {e}", dir.display())))?;
        let json = dir.join("report.json");
        let mut cmd = Command::new(&exe);
        cmd.arg("run")
            .args(["--seed", &seed.to_string(), "--cases", &cases.to_string()])
            .args(&selection)
            .args(&manifest.run.args)
            .args(entry.run_args())
            .arg("--json")
            .arg(&json)
            .arg("--out")
            .arg(dir.join("cases"))
            .stdin(Stdio::null());
        eprintln!("grade: [{}/{}] {} …", k + 1, manifest.sut.len(), entry.name);
        let started = std::time::Instant::now();
        let output = cmd
            .output()
            .map_err(|e| HarnessError::Usage(format!("cannot start {}: {e}", exe.display())))?;
        let mut log = output.stdout.clone();
        log.extend_from_slice(b"\n--- stderr ---\n");
        log.extend_from_slice(&output.stderr);
        let _ = std::fs::write(dir.join("run.log"), &log);
        let exit_code = output.status.code().unwrap_or(-1);
        if exit_code == 130 {
            eprintln!("grade: interrupted");
            return Ok(crate::cli::EXIT_INTERRUPTED);
        }
        let row = row_of(entry, exit_code, &json, &output.stderr, &dir);
        for id in row.results.keys() {
            if !properties.contains(id) {
                properties.push(id.clone());
            }
        }
        eprintln!(
            "grade: [{}/{}] {}: {} of {} judged properties pass{} ({:.1} s)",
            k + 1,
            manifest.sut.len(),
            entry.name,
            row.passed,
            row.judged,
            row.harness_error
                .as_ref()
                .map(|e| format!("; not judged: {e}"))
                .unwrap_or_default(),
            started.elapsed().as_secs_f64()
        );
        rows.push(row);
    }
    let table = Table {
        netconform: env!("CARGO_PKG_VERSION"),
        seed,
        cases,
        properties,
        suts: rows,
    };
    print!("{}", render_text(&table));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&table).expect("the table serialises");
        std::fs::write(path, text)
            .map_err(|e| HarnessError::Usage(format!("cannot write {}: {e}", path.display())))?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, render_html(&table))
            .map_err(|e| HarnessError::Usage(format!("cannot write {}: {e}", path.display())))?;
        eprintln!("grade: html table: {}", path.display());
    }
    let all_passed = table
        .suts
        .iter()
        .all(|r| r.harness_error.is_none() && r.passed == r.judged);
    Ok(if all_passed { 0 } else { 1 })
}

fn read_manifest(path: &Path) -> Result<Manifest, HarnessError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| HarnessError::Usage(format!("cannot read {}: {e}", path.display())))?;
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    } else {
        toml::from_str(&text).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| HarnessError::Usage(format!("{}: {e}", path.display())))
}

/// A file-system-safe directory name for a SUT.
fn dir_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

/// The row of one SUT, from its run's JSON report (or why there is none).
fn row_of(entry: &SutEntry, exit_code: i32, json: &Path, stderr: &[u8], dir: &Path) -> SutRow {
    let mut row = SutRow {
        name: entry.name.clone(),
        command: entry.command.clone(),
        exit_code,
        harness_error: None,
        passed: 0,
        judged: 0,
        results: Default::default(),
        out_dir: dir.to_path_buf(),
    };
    let report: Option<Value> = std::fs::read_to_string(json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let Some(report) = report else {
        let text = String::from_utf8_lossy(stderr);
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output")
            .trim()
            .to_string();
        row.harness_error = Some(format!("netconform run exited {exit_code}: {last}"));
        return row;
    };
    for p in report["properties"].as_array().into_iter().flatten() {
        let id = p["id"].as_str().unwrap_or("?").to_string();
        let n = |k: &str| p[k].as_u64().unwrap_or(0);
        let first = |status: &str| -> String {
            p["problems"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|q| q["status"] == status)
                .map(describe_problem)
                .unwrap_or_default()
        };
        let cell = if let Some(why) = p["skipped"].as_str() {
            Cell {
                verdict: "skipped",
                detail: why.to_string(),
            }
        } else if n("fail") > 0 {
            Cell {
                verdict: "fail",
                detail: format!("{} of {} case(s): {}", n("fail"), total(p), first("fail")),
            }
        } else if n("error") > 0 {
            Cell {
                verdict: "error",
                detail: format!("{} of {} case(s): {}", n("error"), total(p), first("error")),
            }
        } else if n("invalid") > 0 {
            Cell {
                verdict: "invalid",
                detail: format!(
                    "{} of {} case(s): {}",
                    n("invalid"),
                    total(p),
                    first("invalid")
                ),
            }
        } else if n("pass") > 0 {
            Cell {
                verdict: "pass",
                detail: String::new(),
            }
        } else {
            Cell {
                verdict: "skipped",
                detail: "no case ran".into(),
            }
        };
        if cell.verdict != "skipped" {
            row.judged += 1;
            if cell.verdict == "pass" {
                row.passed += 1;
            }
        }
        row.results.insert(id, cell);
    }
    row
}

fn total(p: &Value) -> u64 {
    ["pass", "fail", "error", "invalid", "skip"]
        .iter()
        .map(|k| p[*k].as_u64().unwrap_or(0))
        .sum()
}

/// One line for a problem: the violation's clause, summary, field, expected and actual; or the message.
fn describe_problem(q: &Value) -> String {
    let v = &q["violation"];
    if v.is_object() {
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        let mut line = format!("{} — {}", s("clause"), s("summary"));
        if !s("field").is_empty() {
            line.push_str(&format!(
                "; {}: expected {}, actual {}",
                s("field"),
                s("expected"),
                s("actual")
            ));
        }
        line
    } else {
        q["message"]
            .as_str()
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    }
}

fn short(verdict: &str) -> &'static str {
    match verdict {
        "pass" => "pass",
        "fail" => "FAIL",
        "skipped" => "skip",
        "invalid" => "inv",
        _ => "ERROR",
    }
}

/// The terminal table: one row per SUT, one column per property (numbered, with a legend), then each
/// SUT's findings.
fn render_text(t: &Table) -> String {
    let mut out = String::new();
    let namew = t
        .suts
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(3)
        .max(3);
    out.push_str(&format!("\n{:<namew$}  score ", "SUT"));
    for k in 0..t.properties.len() {
        out.push_str(&format!(" {:>5}", format!("P{}", k + 1)));
    }
    out.push('\n');
    for r in &t.suts {
        let score = if r.harness_error.is_some() {
            "  -  ".to_string()
        } else {
            format!("{:>2}/{:<2}", r.passed, r.judged)
        };
        out.push_str(&format!("{:<namew$}  {score} ", r.name));
        for id in &t.properties {
            let cell = r.results.get(id).map(|c| short(c.verdict)).unwrap_or("-");
            out.push_str(&format!(" {cell:>5}"));
        }
        out.push('\n');
    }
    out.push('\n');
    for (k, id) in t.properties.iter().enumerate() {
        out.push_str(&format!("  P{:<3} {id}\n", k + 1));
    }
    for r in &t.suts {
        out.push_str(&format!("\n{} ({}):\n", r.name, r.out_dir.display()));
        if let Some(e) = &r.harness_error {
            out.push_str(&format!("  not judged: {e}\n"));
            continue;
        }
        let mut any = false;
        for id in &t.properties {
            if let Some(c) = r.results.get(id) {
                if c.verdict != "pass" {
                    any = true;
                    out.push_str(&format!("  {:<5} {id}: {}\n", short(c.verdict), c.detail));
                }
            }
        }
        if !any {
            out.push_str("  every property passed\n");
        }
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A self-contained HTML page with the same table; a cell's detail shows on hover and below the table.
fn render_html(t: &Table) -> String {
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>netconform grade</title><style>\
         body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}\
         th,td{border:1px solid #ccc;padding:4px 8px;text-align:center}th.p{writing-mode:vertical-rl;\
         transform:rotate(180deg);font-weight:normal}td.name{text-align:left;font-weight:bold}\
         .pass{background:#d8f5d0}.fail{background:#f8c9c4}.skipped{background:#eee;color:#777}\
         .error,.invalid{background:#fde9a8}li{margin:.2em 0}</style></head><body>",
    );
    h.push_str(&format!(
        "<h1>netconform grade</h1><p>seed {} · {} case(s) per property and family · netconform {}</p>\
         <table id=\"grade\"><tr><th>SUT</th><th>score</th>",
        t.seed,
        t.cases,
        esc(t.netconform)
    ));
    for id in &t.properties {
        h.push_str(&format!("<th class=\"p\">{}</th>", esc(id)));
    }
    h.push_str("</tr>");
    for r in &t.suts {
        h.push_str(&format!("<tr><td class=\"name\">{}</td>", esc(&r.name)));
        match &r.harness_error {
            Some(e) => h.push_str(&format!(
                "<td class=\"error\" colspan=\"{}\">not judged: {}</td>",
                t.properties.len() + 1,
                esc(e)
            )),
            None => {
                h.push_str(&format!("<td>{}/{}</td>", r.passed, r.judged));
                for id in &t.properties {
                    match r.results.get(id) {
                        Some(c) => h.push_str(&format!(
                            "<td class=\"{}\" title=\"{}\">{}</td>",
                            c.verdict,
                            esc(&c.detail),
                            short(c.verdict)
                        )),
                        None => h.push_str("<td>-</td>"),
                    }
                }
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
    for r in &t.suts {
        h.push_str(&format!("<h2>{}</h2><ul>", esc(&r.name)));
        for id in &t.properties {
            if let Some(c) = r.results.get(id).filter(|c| c.verdict != "pass") {
                h.push_str(&format!(
                    "<li class=\"{}\"><b>{}</b> {}: {}</li>",
                    c.verdict,
                    short(c.verdict),
                    esc(id),
                    esc(&c.detail)
                ));
            }
        }
        h.push_str("</ul>");
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_entry_becomes_run_arguments() {
        let m: Manifest = toml::from_str(
            "[run]\ncases = 4\nsuites = [\"udp\"]\n\n[[sut]]\nname = \"alice\"\ncommand = \"/x/adapter --v\"\n\
             attach = \"tun:tun144\"\nlimit = 10\n",
        )
        .unwrap();
        assert_eq!(m.run.cases, Some(4));
        assert_eq!(
            m.sut[0].run_args(),
            [
                "--sut",
                "/x/adapter --v",
                "--attach",
                "tun:tun144",
                "--sut-limit",
                "10"
            ]
        );
    }

    #[test]
    fn an_unknown_manifest_key_is_refused() {
        let e =
            toml::from_str::<Manifest>("[[sut]]\nname = \"a\"\ncommand = \"x\"\natach = \"fd\"\n")
                .unwrap_err();
        assert!(e.to_string().contains("atach"), "{e}");
    }

    #[test]
    fn names_become_safe_directory_names() {
        assert_eq!(dir_name("Alice Smith/../x"), "Alice_Smith_.._x");
        assert_eq!(dir_name("..hidden"), "hidden");
    }
}
