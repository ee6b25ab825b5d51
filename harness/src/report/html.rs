//! The HTML report: one self-contained file (inline CSS, SVG and a little JS; no network, no fonts to
//! fetch), readable offline years later and with scripts disabled (scripts only filter).
//!
//! It holds the summary table (with each property's aggregated notes), filters (status, suite, text), and
//! per drawn case ([`CaseView`]): the verdict as the terminal prints it, links to the pcapng and the replay
//! command, a **ladder diagram** and, for every TCP direction that carried payload, a **time-sequence
//! graph** (Wireshark's Stevens graph: segments as vertical bars, the peer's ACK line and its window line
//! ACK+window, SACK blocks, retransmissions and probes marked).
//!
//! Ladder: host A's timeline on the left, B's on the right, one row per event in time order (rows are not
//! proportional to time; a gap of 30 ms or more gets a `… +200 ms …` break). A frame is an arrow from its
//! sender, labelled with its canonical line (relative seq/ack/len, window, options) and its expert labels;
//! a frame the relay dropped ends half-way at a cross. The frames a violation names are red, with the
//! violation under the first one. The ops the executor ran sit in the margin of their host, at the time they
//! started; properties that do not drive their sockets through `run_program` (the scripted peer, a few
//! raw-socket properties) have no op times, and the ladder says so.

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use super::notes;
use super::view::{CaseView, FrameView};
use crate::error::HarnessError;
use crate::frame::Host;
use crate::link::LinkEventKind;
use crate::runner::{PropertyResult, RunReport};

/// A report page: a title, facts about the run, the properties' results and the drawn cases.
pub struct Page<'a> {
    pub title: String,
    /// (name, value) lines of the header: seed, command, wall time, …
    pub facts: Vec<(String, String)>,
    pub properties: &'a [PropertyResult],
    pub cases: &'a [CaseView],
    /// Why passing cases are or are not drawn (shown under the summary).
    pub drawn_note: String,
}

/// Writes the HTML report of a run.
pub fn write_run(
    report: &RunReport,
    command: &str,
    all_drawn: bool,
    path: &Path,
) -> Result<(), HarnessError> {
    let total: u64 = report
        .properties
        .iter()
        .map(|p| p.pass + p.fail + p.skip + p.invalid + p.error)
        .sum();
    let mut facts = vec![
        ("command".to_string(), command.to_string()),
        ("seed".to_string(), report.seed.to_string()),
        (
            "cases".to_string(),
            format!(
                "{total} ({} per property; families {})",
                report.cases_per_property,
                report
                    .families
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        (
            "wall time".to_string(),
            format!("{:.2} s", report.duration_ms as f64 / 1000.0),
        ),
        ("netconform".to_string(), report.netconform.clone()),
    ];
    if report.interrupted {
        facts.push((
            "interrupted".to_string(),
            "yes — partial results".to_string(),
        ));
    }
    let mut cases = report.views.clone();
    for c in &mut cases {
        if let Some(p) = report.properties.iter().find(|p| p.id == c.property) {
            c.suite = p.suite.clone();
        }
        relink(c, path);
    }
    let page = Page {
        title: format!(
            "netconform run — {}",
            match report.exit_code() {
                0 => "all passed",
                _ => "NOT all passed",
            }
        ),
        facts,
        properties: &report.properties,
        cases: &cases,
        drawn_note: if all_drawn {
            "Every case is drawn (--pcap all).".into()
        } else {
            "Cases that did not pass are drawn; passing cases are summarised (run with --pcap all to draw them)."
                .into()
        },
    };
    write(&page, path)
}

/// Writes a page of single cases (`replay`, `check`).
pub fn write_cases(
    title: &str,
    facts: Vec<(String, String)>,
    mut cases: Vec<CaseView>,
    path: &Path,
) -> Result<(), HarnessError> {
    for c in &mut cases {
        relink(c, path);
    }
    let page = Page {
        title: title.to_string(),
        facts,
        properties: &[],
        cases: &cases,
        drawn_note: String::new(),
    };
    write(&page, path)
}

fn write(page: &Page, path: &Path) -> Result<(), HarnessError> {
    std::fs::write(path, render(page)).map_err(|e| HarnessError::output(path.display(), e))
}

/// Makes the pcapng path relative to the report's directory, so the link works where the report is.
fn relink(c: &mut CaseView, report: &Path) {
    if let Some(p) = &c.pcap {
        c.pcap = Some(relative_to(Path::new(p), report));
    }
}

fn absolute(p: &Path) -> PathBuf {
    let p = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn relative_to(target: &Path, report: &Path) -> String {
    let target = absolute(target);
    let dir = absolute(report);
    let dir = dir.parent().unwrap_or(Path::new("/"));
    let t: Vec<_> = target.components().collect();
    let d: Vec<_> = dir.components().collect();
    let common = t.iter().zip(&d).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..d.len() {
        rel.push("..");
    }
    for c in &t[common..] {
        rel.push(c);
    }
    rel.display().to_string()
}

/// `<`, `>`, `&`, quotes escaped for text and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The whole page.
pub fn render(page: &Page) -> String {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(h, "<title>{}</title>", esc(&page.title));
    let _ = writeln!(h, "<style>{CSS}</style>\n</head>");
    // Errors of the page's own script are recorded into the page (and read back by tests/html.rs).
    h.push_str("<body data-js=\"off\">\n<script>window.__errors=[];window.addEventListener('error',function(e){window.__errors.push(String(e.message));var l=document.getElementById('js-errors');if(l){var i=document.createElement('li');i.textContent=String(e.message);l.appendChild(i);}});</script>\n");
    let _ = writeln!(
        h,
        "<header><h1>{}</h1><dl class=\"facts\">",
        esc(&page.title)
    );
    for (k, v) in &page.facts {
        let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    }
    h.push_str("</dl></header>\n<ul id=\"js-errors\"></ul>\n");
    filters(&mut h, page);
    if !page.properties.is_empty() {
        summary_table(&mut h, page.properties);
    }
    if !page.drawn_note.is_empty() {
        let _ = writeln!(h, "<p class=\"note\">{}</p>", esc(&page.drawn_note));
    }
    let _ = writeln!(h, "<main id=\"cases\" data-count=\"{}\">", page.cases.len());
    if page.cases.is_empty() {
        h.push_str("<p class=\"note\">No case to draw.</p>\n");
    }
    for (i, c) in page.cases.iter().enumerate() {
        case_section(&mut h, i, c);
    }
    h.push_str("</main>\n");
    let _ = writeln!(h, "<script>{JS}</script>\n</body>\n</html>");
    h
}

fn filters(h: &mut String, page: &Page) {
    let mut suites: Vec<&str> = page
        .properties
        .iter()
        .map(|p| p.suite.as_str())
        .chain(page.cases.iter().map(|c| c.suite.as_str()))
        .filter(|s| !s.is_empty())
        .collect();
    suites.dedup();
    suites.sort();
    suites.dedup();
    h.push_str("<form id=\"filters\" onsubmit=\"return false\">\n<label>status <select id=\"f-status\"><option value=\"\">any</option>");
    for s in ["pass", "fail", "skip", "invalid", "error"] {
        let _ = write!(h, "<option value=\"{s}\">{s}</option>");
    }
    h.push_str(
        "</select></label>\n<label>suite <select id=\"f-suite\"><option value=\"\">any</option>",
    );
    for s in suites {
        let _ = write!(h, "<option value=\"{0}\">{0}</option>", esc(s));
    }
    h.push_str("</select></label>\n<label>search <input id=\"f-text\" type=\"search\" placeholder=\"property, clause, text…\"></label>\n<span id=\"f-count\"></span>\n</form>\n");
}

fn summary_table(h: &mut String, props: &[PropertyResult]) {
    h.push_str("<table id=\"summary\">\n<thead><tr><th>property</th><th>suite</th><th>clauses</th><th>pass</th><th>fail</th><th>skip</th><th>invalid</th><th>error</th><th title=\"the cases' durations added up (cases run concurrently, so this is more than the wall time)\">case time, summed</th><th>status</th></tr></thead>\n<tbody>\n");
    for p in props {
        let status = p.status();
        let notes = notes::aggregate(&p.notes);
        let text = format!(
            "{} {} {} {} {}",
            p.id,
            p.suite,
            p.title,
            p.clauses.join(" "),
            notes.join(" ")
        );
        let _ = write!(
            h,
            "<tr class=\"prop st-{status}\" data-status=\"{status}\" data-suite=\"{}\" data-text=\"{}\"><td><a href=\"#p-{}\">{}</a><div class=\"title\">{}</div>",
            esc(&p.suite),
            esc(&text.to_lowercase()),
            esc(&p.id),
            esc(&p.id),
            esc(&p.title)
        );
        if let Some(why) = &p.skipped {
            let _ = write!(
                h,
                "<div class=\"notes skipped\">skipped: {}</div>",
                esc(why)
            );
        }
        if !notes.is_empty() {
            let _ = write!(h, "<div class=\"notes\">{}</div>", esc(&notes.join("; ")));
        }
        let _ = writeln!(
            h,
            "</td><td>{}</td><td class=\"clauses\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2} s</td><td class=\"status\">{}</td></tr>",
            esc(&p.suite),
            esc(&p.clauses.join("; ")),
            p.pass,
            p.fail,
            p.skip,
            p.invalid,
            p.error,
            p.duration_ms as f64 / 1000.0,
            status.to_uppercase()
        );
    }
    h.push_str("</tbody>\n</table>\n");
}

fn case_section(h: &mut String, i: usize, c: &CaseView) {
    let text = format!(
        "{} {} {} {} {}",
        c.property, c.suite, c.description, c.detail, c.family
    );
    let _ = writeln!(
        h,
        "<section class=\"case st-{0}\" id=\"case-{i}\" data-status=\"{0}\" data-suite=\"{1}\" data-property=\"{2}\" data-text=\"{3}\">",
        esc(&c.status),
        esc(&c.suite),
        esc(&c.property),
        esc(&text.to_lowercase())
    );
    let open = if c.status == "pass" { "" } else { " open" };
    // A capture checked offline (`check`) has no case index, family or seed.
    let which = if c.family.is_empty() {
        String::new()
    } else {
        format!(" case {} ({}, seed {})", c.index, c.family, c.seed)
    };
    let _ = writeln!(
        h,
        "<details{open}><summary><span class=\"badge\">{}</span> <a id=\"p-{}\"></a><b>{}</b>{}: {}</summary>",
        esc(&c.status.to_uppercase()),
        esc(&c.property),
        esc(&c.property),
        esc(&which),
        esc(&c.description)
    );
    if !c.detail.is_empty() {
        let _ = writeln!(h, "<pre class=\"detail\">{}</pre>", esc(&c.detail));
    }
    h.push_str("<p class=\"links\">");
    if let Some(p) = &c.pcap {
        let _ = write!(
            h,
            "pcapng: <a href=\"{0}\">{0}</a> (open in Wireshark) ",
            esc(p)
        );
    }
    if let Some(r) = &c.replay {
        let _ = write!(h, "replay: <code class=\"replay\">{}</code>", esc(r));
    }
    h.push_str("</p>\n");
    ladder(h, c);
    tsgs(h, c);
    h.push_str("</details>\n</section>\n");
}

// ---------------------------------------------------------------------------------------------------------
// Ladder diagram

const ROW: f64 = 30.0;
const GAP_ROW: f64 = 18.0;
const TOP: f64 = 56.0;
const X_A: f64 = 340.0;
const X_B: f64 = 900.0;
const WIDTH: f64 = 1240.0;
/// A pause this long between two rows gets a break marker (as the snapshots' coarse timeline does).
const GAP_MARK_NS: u64 = 30_000_000;

enum Row<'a> {
    Frame(&'a FrameView),
    Op(&'a super::view::OpView),
}

fn row_time(r: &Row) -> u64 {
    match r {
        Row::Frame(f) => f.t_ns,
        Row::Op(o) => o.t_ns,
    }
}

fn secs(ns: u64) -> String {
    format!("+{:.6}", ns as f64 / 1e9)
}

fn duration_text(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        format!("{:.2} s", ns as f64 / 1e9)
    } else {
        format!("{:.1} ms", ns as f64 / 1e6)
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// Words of `s` in lines of at most `width` characters, at most `max_lines` lines (the last one cut with …).
fn wrap(s: &str, width: usize, max_lines: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for word in s.split_whitespace() {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    if lines.len() > max_lines {
        lines.truncate(max_lines);
        let last = lines.last_mut().expect("max_lines > 0");
        *last = shorten(&format!("{last} …"), width);
    }
    lines.iter().map(|l| shorten(l, width)).collect()
}

fn ladder(h: &mut String, c: &CaseView) {
    let mut rows: Vec<Row> = c.frames.iter().map(Row::Frame).collect();
    if let Some(ops) = &c.ops {
        rows.extend(ops.iter().map(Row::Op));
    }
    // Ops before frames at the same instant (an op causes frames, not the other way round).
    rows.sort_by_key(|r| (row_time(r), matches!(r, Row::Frame(_))));
    let first_violating = c
        .frames
        .iter()
        .find(|f| c.violation_frames.contains(&f.number))
        .map(|f| f.number);
    let mut body = String::new();
    let mut y = TOP;
    let mut last_t: Option<u64> = None;
    for r in &rows {
        let t = row_time(r);
        if let Some(lt) = last_t {
            if t.saturating_sub(lt) >= GAP_MARK_NS {
                let _ = write!(
                    body,
                    "<g class=\"gap\"><rect x=\"{}\" y=\"{:.1}\" width=\"{}\" height=\"{:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\">… {} later …</text></g>",
                    X_A - 4.0,
                    y,
                    X_B - X_A + 8.0,
                    GAP_ROW - 4.0,
                    (X_A + X_B) / 2.0,
                    y + GAP_ROW - 8.0,
                    duration_text(t - lt)
                );
                y += GAP_ROW;
            }
        }
        last_t = Some(t);
        match r {
            Row::Op(o) => {
                let (x, anchor, dx) = match o.host {
                    Host::A => (X_A - 12.0, "end", X_A),
                    Host::B => (X_B + 12.0, "start", X_B),
                };
                let _ = write!(
                    body,
                    "<g class=\"op op-{}\"><title>{} {} {}</title><text class=\"time\" x=\"8\" y=\"{:.1}\">{}</text><circle cx=\"{dx}\" cy=\"{:.1}\" r=\"3.5\"/><text x=\"{x}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text></g>",
                    o.host.name(),
                    o.host.name(),
                    secs(o.t_ns),
                    esc(&o.text),
                    y + 16.0,
                    secs(o.t_ns),
                    y + 12.0,
                    y + 16.0,
                    esc(&shorten(&o.text, 44))
                );
                y += ROW * 0.8;
            }
            Row::Frame(f) => {
                arrow(&mut body, c, f, y);
                y += ROW;
                if Some(f.number) == first_violating {
                    if let Some(v) = &c.violation {
                        // Wrapped between the two timelines, at most three lines (the full text is above).
                        let lines = wrap(&format!("▲ {v}"), 78, 3);
                        body.push_str("<g class=\"violation-note\">");
                        for line in &lines {
                            let _ = write!(
                                body,
                                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                                (X_A + X_B) / 2.0,
                                y + 8.0,
                                esc(line)
                            );
                            y += 16.0;
                        }
                        body.push_str("</g>");
                        y += 6.0;
                    }
                }
            }
        }
    }
    let height = y + 20.0;
    let ops_note = match &c.ops {
        Some(ops) => format!(
            "{} socket op(s) in the margins, at the time each started",
            ops.len()
        ),
        None => "this property does not record op times (its sockets are not driven through the executor's programs), so no ops are drawn".into(),
    };
    let _ = writeln!(
        h,
        "<h3>Ladder diagram</h3>\n<p class=\"note\">{} frame(s){}; {}. Hover an arrow for its full line.</p>",
        c.frames.len(),
        if c.omitted_frames > 0 {
            format!(
                " drawn, {} more in the pcapng (only the first {} are kept)",
                c.omitted_frames,
                super::view::MAX_DRAWN_FRAMES
            )
        } else {
            String::new()
        },
        esc(&ops_note)
    );
    let _ = write!(
        h,
        "<div class=\"scroll\"><svg class=\"ladder\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height:.0}\" viewBox=\"0 0 {WIDTH} {height:.0}\" data-frames=\"{}\">",
        c.frames.len()
    );
    let _ = write!(
        h,
        "<defs><marker id=\"ah\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#333\"/></marker><marker id=\"ahv\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#c00\"/></marker></defs>"
    );
    let _ = write!(
        h,
        "<text class=\"host\" x=\"{X_A}\" y=\"22\" text-anchor=\"middle\">A</text><text class=\"hostsub\" x=\"{X_A}\" y=\"38\" text-anchor=\"middle\">host a</text><text class=\"host\" x=\"{X_B}\" y=\"22\" text-anchor=\"middle\">B</text><text class=\"hostsub\" x=\"{X_B}\" y=\"38\" text-anchor=\"middle\">host b</text><text class=\"hostsub\" x=\"8\" y=\"38\">time (s)</text><line class=\"timeline\" x1=\"{X_A}\" y1=\"{:.0}\" x2=\"{X_A}\" y2=\"{:.0}\"/><line class=\"timeline\" x1=\"{X_B}\" y1=\"{:.0}\" x2=\"{X_B}\" y2=\"{:.0}\"/>",
        TOP - 10.0,
        height - 10.0,
        TOP - 10.0,
        height - 10.0
    );
    h.push_str(&body);
    h.push_str("</svg></div>\n");
}

fn arrow(body: &mut String, c: &CaseView, f: &FrameView, y: f64) {
    let violating = c.violation_frames.contains(&f.number);
    let (x0, x1) = match f.from {
        Some(Host::B) => (X_B, X_A),
        _ => (X_A, X_B),
    };
    let (y0, y1) = (y + 10.0, y + 24.0);
    let dropped = f.link == Some(LinkEventKind::Dropped);
    let (xe, ye) = if dropped {
        ((x0 + x1) / 2.0, (y0 + y1) / 2.0)
    } else {
        (x1, y1)
    };
    let mut classes = vec!["arrow".to_string()];
    if violating {
        classes.push("violating".into());
    }
    if dropped {
        classes.push("dropped".into());
    }
    for l in &f.labels {
        let k = l.split(' ').next().unwrap_or("");
        classes.push(format!("lbl-{k}"));
    }
    let mut label = format!("#{} {}", f.number, f.line);
    let mut extra: Vec<String> = f.labels.iter().map(|l| format!("[{l}]")).collect();
    match f.link {
        Some(LinkEventKind::Dropped) => extra.push("[dropped by the relay]".into()),
        Some(LinkEventKind::Duplicated) => extra.push("[duplicated by the relay]".into()),
        Some(LinkEventKind::Reordered) => extra.push("[held back by the relay]".into()),
        None => {}
    }
    let title = format!(
        "#{} {} {}>{} {} {}",
        f.number,
        secs(f.t_ns),
        f.from.map(|h| h.role()).unwrap_or("?"),
        f.from.map(|h| h.other().role()).unwrap_or("?"),
        f.line,
        extra.join(" ")
    );
    if !extra.is_empty() {
        label.push(' ');
    }
    let _ = write!(
        body,
        "<g class=\"{}\" data-frame=\"{}\"><title>{}{}</title>",
        classes.join(" "),
        f.number,
        esc(&title),
        if violating {
            format!(
                "\n{}",
                esc(c.violation.as_deref().unwrap_or("named by the violation"))
            )
        } else {
            String::new()
        }
    );
    if violating {
        let _ = write!(
            body,
            "<rect class=\"band\" x=\"4\" y=\"{:.1}\" width=\"{:.0}\" height=\"{:.1}\"/>",
            y + 1.0,
            WIDTH - 8.0,
            ROW - 2.0
        );
    }
    let _ = write!(
        body,
        "<text class=\"time\" x=\"8\" y=\"{:.1}\">{}</text><line x1=\"{x0}\" y1=\"{y0:.1}\" x2=\"{xe:.1}\" y2=\"{ye:.1}\" marker-end=\"url(#{})\"/>",
        y + 20.0,
        secs(f.t_ns),
        if violating { "ahv" } else { "ah" }
    );
    if dropped {
        let _ = write!(
            body,
            "<text class=\"cross\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">✕</text>",
            xe + if x1 > x0 { 10.0 } else { -10.0 },
            ye + 5.0
        );
    }
    let _ = write!(
        body,
        "<text class=\"seg\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}",
        (X_A + X_B) / 2.0,
        y + 7.0,
        esc(&shorten(&label, 88))
    );
    if !extra.is_empty() {
        let _ = write!(
            body,
            "<tspan class=\"lbl\">{}</tspan>",
            esc(&extra.join(" "))
        );
    }
    body.push_str("</text></g>");
}

// ---------------------------------------------------------------------------------------------------------
// Time-sequence graphs

const G_W: f64 = 980.0;
const G_H: f64 = 380.0;
const G_ML: f64 = 80.0;
const G_MR: f64 = 20.0;
const G_MT: f64 = 20.0;
const G_MB: f64 = 40.0;
/// Graphs drawn per case at most (conversation × direction with payload).
const MAX_GRAPHS: usize = 4;

fn tsgs(h: &mut String, c: &CaseView) {
    let mut keys: Vec<(usize, usize, u64)> = Vec::new();
    for f in &c.frames {
        let (Some(conv), Some(dir), Some(t)) = (f.conversation, f.direction, &f.tcp) else {
            continue;
        };
        if t.len == 0 {
            continue;
        }
        match keys.iter_mut().find(|k| k.0 == conv && k.1 == dir) {
            Some(k) => k.2 += t.len as u64,
            None => keys.push((conv, dir, t.len as u64)),
        }
    }
    // A graph needs a conversation with some exchange (a lone segment is clearer in the ladder).
    keys.retain(|(conv, _, _)| {
        c.frames
            .iter()
            .filter(|f| f.conversation == Some(*conv) && f.tcp.is_some())
            .count()
            >= 3
    });
    if keys.is_empty() {
        return;
    }
    let more = keys.len().saturating_sub(MAX_GRAPHS);
    for (conv, dir, bytes) in keys.into_iter().take(MAX_GRAPHS) {
        tsg(h, c, conv, dir, bytes);
    }
    if more > 0 {
        let _ = writeln!(
            h,
            "<p class=\"note\">{more} more direction(s) with data are not graphed (see the pcapng).</p>"
        );
    }
}

fn nice_step(range: f64, ticks: f64) -> f64 {
    let raw = (range / ticks).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let step = if norm < 1.5 {
        1.0
    } else if norm < 3.5 {
        2.0
    } else if norm < 7.5 {
        5.0
    } else {
        10.0
    };
    step * mag
}

fn bytes_text(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1} MB", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0} kB", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn tsg(h: &mut String, c: &CaseView, conv: usize, dir: usize, bytes: u64) {
    let in_conv: Vec<&FrameView> = c
        .frames
        .iter()
        .filter(|f| f.conversation == Some(conv) && f.tcp.is_some())
        .collect();
    let sender: Vec<&FrameView> = in_conv
        .iter()
        .copied()
        .filter(|f| f.direction == Some(dir))
        .collect();
    let receiver: Vec<&FrameView> = in_conv
        .iter()
        .copied()
        .filter(|f| f.direction == Some(1 - dir) && f.tcp.as_ref().is_some_and(|t| t.ack.is_some()))
        .collect();
    let t0 = in_conv.first().map(|f| f.t_ns).unwrap_or(0);
    let t1 = in_conv.last().map(|f| f.t_ns).unwrap_or(0).max(t0 + 1_000);
    let data_max = sender
        .iter()
        .filter_map(|f| f.tcp.as_ref())
        .map(|t| t.seq as f64 + t.len as f64)
        .fold(1.0, f64::max);
    let ack_max = receiver
        .iter()
        .filter_map(|f| f.tcp.as_ref()?.ack)
        .map(|a| a as f64)
        .fold(0.0, f64::max);
    let win_max = receiver
        .iter()
        .filter_map(|f| {
            let t = f.tcp.as_ref()?;
            Some(t.ack? as f64 + t.window as f64)
        })
        .fold(0.0, f64::max);
    let base = data_max.max(ack_max);
    // The window line may run far above the data: show up to half again the data, clip the rest.
    let y_max = base.max(win_max.min(base * 1.5)) * 1.04;
    let pw = G_W - G_ML - G_MR;
    let ph = G_H - G_MT - G_MB;
    let x = |t: u64| G_ML + (t.saturating_sub(t0)) as f64 / (t1 - t0) as f64 * pw;
    let y = |v: f64| G_MT + ph - (v.min(y_max) / y_max) * ph;
    let from = sender
        .first()
        .and_then(|f| f.from)
        .map(|h| h.role())
        .unwrap_or("?");
    let to = if from == "A" { "B" } else { "A" };
    let _ = writeln!(
        h,
        "<h3>Time-sequence graph: {from}→{to} data (conversation {}), {bytes} bytes</h3>",
        conv + 1
    );
    let _ = write!(
        h,
        "<div class=\"scroll\"><svg class=\"tsg\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{G_W}\" height=\"{G_H}\" viewBox=\"0 0 {G_W} {G_H}\" data-direction=\"{from}{to}\">"
    );
    // Axes and ticks.
    let _ = write!(
        h,
        "<rect class=\"plot\" x=\"{G_ML}\" y=\"{G_MT}\" width=\"{pw}\" height=\"{ph}\"/>"
    );
    let span_ms = (t1 - t0) as f64 / 1e6;
    let step = nice_step(span_ms, 8.0);
    let mut v = 0.0;
    while v <= span_ms + 1e-9 {
        let xx = G_ML + v / span_ms * pw;
        let _ = write!(
            h,
            "<line class=\"grid\" x1=\"{xx:.1}\" y1=\"{G_MT}\" x2=\"{xx:.1}\" y2=\"{:.1}\"/><text class=\"tick\" x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            G_MT + ph,
            G_MT + ph + 14.0,
            tick_text(v + t0 as f64 / 1e6, step)
        );
        v += step;
    }
    let _ = write!(
        h,
        "<text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">time since the case started (ms)</text>",
        G_ML + pw / 2.0,
        G_H - 6.0
    );
    let ystep = nice_step(y_max, 6.0);
    let mut v = 0.0;
    while v <= y_max {
        let yy = y(v);
        let _ = write!(
            h,
            "<line class=\"grid\" x1=\"{G_ML}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\"/><text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            G_ML + pw,
            G_ML - 6.0,
            yy + 4.0,
            bytes_text(v)
        );
        v += ystep;
    }
    let _ = write!(
        h,
        "<text class=\"axis\" transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\">relative sequence number ({from}→{to})</text>",
        G_MT + ph / 2.0
    );
    // Window line (ack + window) and ACK line, as steps.
    let mut win_path = String::new();
    let mut ack_path = String::new();
    for (i, f) in receiver.iter().enumerate() {
        let t = f.tcp.as_ref().expect("tcp");
        let a = t.ack.unwrap_or(0) as f64;
        let (xx, ya, yw) = (x(f.t_ns), y(a), y(a + t.window as f64));
        if i == 0 {
            let _ = write!(ack_path, "M{xx:.1},{ya:.1}");
            let _ = write!(win_path, "M{xx:.1},{yw:.1}");
        } else {
            let _ = write!(ack_path, " H{xx:.1} V{ya:.1}");
            let _ = write!(win_path, " H{xx:.1} V{yw:.1}");
        }
    }
    if !receiver.is_empty() {
        let end = G_ML + pw;
        let _ = write!(
            h,
            "<path class=\"winline\" d=\"{win_path} H{end:.1}\"><title>window: ACK + advertised window ({to}'s receive window)</title></path><path class=\"ackline\" d=\"{ack_path} H{end:.1}\"><title>{to}'s cumulative ACK</title></path>"
        );
    }
    // SACK blocks and zero windows from the receiver.
    for f in &receiver {
        let t = f.tcp.as_ref().expect("tcp");
        let xx = x(f.t_ns);
        for (l, r) in &t.sack {
            let _ = write!(
                h,
                "<line class=\"sack\" x1=\"{xx:.1}\" y1=\"{:.1}\" x2=\"{xx:.1}\" y2=\"{:.1}\"><title>#{} SACK {l}:{r}</title></line>",
                y(*l as f64),
                y(*r as f64),
                f.number
            );
        }
        if f.labels.iter().any(|l| l == "zero-window") {
            let ya = y(t.ack.unwrap_or(0) as f64);
            let _ = write!(
                h,
                "<path class=\"zerowin\" d=\"M{:.1},{:.1} l5,-9 l5,9 z\"><title>#{} {} advertises a zero window</title></path>",
                xx - 5.0,
                ya - 2.0,
                f.number,
                to
            );
        }
    }
    // The sender's segments.
    for f in &sender {
        let t = f.tcp.as_ref().expect("tcp");
        let xx = x(f.t_ns);
        let is = |name: &str| f.labels.iter().any(|l| l.starts_with(name));
        let class = if c.violation_frames.contains(&f.number) {
            "seg violating"
        } else if is("retransmission") {
            "seg retrans"
        } else if is("zero-window-probe") || is("keep-alive") {
            "seg probe"
        } else if f.link == Some(LinkEventKind::Dropped) {
            "seg dropped"
        } else {
            "seg"
        };
        let title = format!(
            "#{} {} {} {}",
            f.number,
            secs(f.t_ns),
            f.line,
            f.labels
                .iter()
                .map(|l| format!("[{l}]"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let (ys, ye) = (y(t.seq as f64), y(t.seq as f64 + t.len as f64));
        if t.len == 0 && !(t.syn || t.fin || is("zero-window-probe") || is("keep-alive")) {
            continue; // pure ACKs of the sender's direction carry nothing to graph here
        }
        if t.len == 0 {
            let _ = write!(
                h,
                "<g class=\"{class}\"><title>{}</title><circle cx=\"{xx:.1}\" cy=\"{ys:.1}\" r=\"3\"/></g>",
                esc(&title)
            );
        } else {
            let _ = write!(
                h,
                "<g class=\"{class}\"><title>{}</title><line x1=\"{xx:.1}\" y1=\"{ys:.1}\" x2=\"{xx:.1}\" y2=\"{ye:.1}\"/><line x1=\"{:.1}\" y1=\"{ys:.1}\" x2=\"{:.1}\" y2=\"{ys:.1}\"/><line x1=\"{:.1}\" y1=\"{ye:.1}\" x2=\"{:.1}\" y2=\"{ye:.1}\"/></g>",
                esc(&title),
                xx - 2.5,
                xx + 2.5,
                xx - 2.5,
                xx + 2.5
            );
        }
    }
    // Legend.
    let items = [
        ("seg", "segment"),
        ("seg retrans", "retransmission"),
        ("seg probe", "probe / keep-alive"),
        ("ackline", "ACK"),
        ("winline", "ACK + window"),
        ("sack", "SACK block"),
        ("zerowin", "zero window"),
    ];
    let mut lx = G_ML + 10.0;
    for (class, name) in items {
        let _ = write!(
            h,
            "<g class=\"legend {class}\"><line x1=\"{lx:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\">{name}</text></g>",
            G_MT + 12.0,
            lx + 16.0,
            G_MT + 12.0,
            lx + 20.0,
            G_MT + 16.0
        );
        lx += 30.0 + name.len() as f64 * 6.6;
    }
    h.push_str("</svg></div>\n");
}

/// A tick value with as many decimals as the tick step needs.
fn tick_text(v: f64, step: f64) -> String {
    let decimals = (-step.log10().floor()).clamp(0.0, 6.0) as usize;
    format!("{v:.decimals$}")
}

const CSS: &str = r#"
:root{--fail:#c00;--pass:#17803d;--skip:#777;--warn:#b35c00;--ink:#1d1d1f;--muted:#666;--line:#ddd}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--ink);margin:0;padding:16px 24px;background:#fafafa}
h1{font-size:20px;margin:0 0 6px}
h3{font-size:14px;margin:18px 0 4px}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0 0 12px;font-size:13px}
.facts dt{color:var(--muted)} .facts dd{margin:0;font-family:ui-monospace,"DejaVu Sans Mono",monospace;word-break:break-all}
#js-errors:empty{display:none} #js-errors{color:var(--fail);border:1px solid var(--fail);padding:6px 24px}
#filters{display:flex;gap:16px;align-items:center;background:#fff;border:1px solid var(--line);padding:8px 12px;border-radius:6px;position:sticky;top:0;z-index:2}
#filters input{width:260px} #f-count{color:var(--muted)}
table#summary{border-collapse:collapse;margin:12px 0;background:#fff;width:100%}
#summary th,#summary td{border-bottom:1px solid var(--line);padding:4px 8px;text-align:right;vertical-align:top}
#summary th:nth-child(-n+3),#summary td:nth-child(-n+3){text-align:left}
#summary td .title{color:var(--muted);font-size:12px}
#summary td .notes{color:#345;font-size:12px;max-width:640px}
#summary td.clauses{font-size:12px;color:var(--muted);max-width:260px}
tr.st-fail td.status,tr.st-error td.status,tr.st-invalid td.status{color:var(--fail);font-weight:bold}
tr.st-pass td.status{color:var(--pass)} tr.st-skip td.status{color:var(--skip)}
.note{color:var(--muted);font-size:13px;margin:4px 0}
section.case{background:#fff;border:1px solid var(--line);border-left:6px solid var(--pass);border-radius:6px;margin:12px 0;padding:8px 14px}
section.st-fail,section.st-error,section.st-invalid{border-left-color:var(--fail)}
section.st-skip{border-left-color:var(--skip)}
section.case summary{cursor:pointer;font-size:15px}
.badge{display:inline-block;padding:0 6px;border-radius:3px;color:#fff;background:var(--pass);font-size:12px;font-weight:bold}
.st-fail .badge,.st-error .badge,.st-invalid .badge{background:var(--fail)} .st-skip .badge{background:var(--skip)}
pre.detail{background:#fff5f5;border:1px solid #f3c4c4;padding:8px 10px;white-space:pre-wrap;font-size:12.5px}
.st-pass pre.detail{background:#f4faf6;border-color:#cfe8d6}
code.replay{background:#f0f0f0;padding:1px 5px;user-select:all}
.links{font-size:13px}
.scroll{overflow-x:auto}
svg text{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,monospace;font-size:11px}
svg.ladder{background:#fff}
.ladder .host{font-size:16px;font-weight:bold;font-family:system-ui,sans-serif}
.ladder .hostsub{fill:var(--muted);font-family:system-ui,sans-serif}
.ladder .timeline{stroke:#555;stroke-width:2}
.ladder .time{fill:var(--muted)}
.ladder g.arrow line{stroke:#333;stroke-width:1.3}
.ladder g.arrow text.seg{paint-order:stroke;stroke:#fff;stroke-width:4px;stroke-linejoin:round}
.ladder g.arrow:hover text.seg{font-weight:bold}
.ladder g.arrow .lbl{fill:var(--warn)}
.ladder g.arrow.lbl-retransmission line{stroke:#d0021b;stroke-dasharray:6 3}
.ladder g.arrow.lbl-zero-window text.seg,.ladder g.arrow.lbl-zero-window-probe text.seg{fill:#6a1b9a}
.ladder g.arrow.dropped line{stroke:var(--fail);stroke-dasharray:3 3}
.ladder .cross{fill:var(--fail);font-size:16px;font-weight:bold}
.ladder g.arrow.violating line{stroke:var(--fail);stroke-width:2.6}
.ladder g.arrow.violating text.seg{fill:var(--fail);font-weight:bold;stroke:#ffe3e3}
.ladder g.arrow.violating .band{fill:#ffe3e3}
.ladder .violation-note text{fill:var(--fail);font-weight:bold;font-family:system-ui,sans-serif;font-size:12.5px}
.ladder g.op text{fill:#1f4e8c} .ladder g.op circle{fill:#1f4e8c}
.ladder g.gap rect{fill:#f3f3f3} .ladder g.gap text{fill:var(--muted);text-anchor:middle;font-style:italic}
svg.tsg{background:#fff}
.tsg .plot{fill:#fcfcfc;stroke:#999}
.tsg .grid{stroke:#eee} .tsg .tick{fill:var(--muted);font-size:10px} .tsg .axis{fill:#444;font-family:system-ui,sans-serif;font-size:12px}
.tsg g.seg line{stroke:#1f4e8c;stroke-width:1.4} .tsg g.seg circle{fill:#1f4e8c}
.tsg g.seg.retrans line{stroke:#d0021b;stroke-width:2} .tsg g.seg.retrans circle{fill:#d0021b}
.tsg g.seg.probe line{stroke:#8e24aa;stroke-width:2} .tsg g.seg.probe circle{fill:#8e24aa}
.tsg g.seg.dropped line{stroke:#d0021b;stroke-dasharray:2 2}
.tsg g.seg.violating line{stroke:var(--fail);stroke-width:3} .tsg g.seg.violating circle{fill:var(--fail)}
.tsg path.ackline{fill:none;stroke:#17803d;stroke-width:1.4}
.tsg path.winline{fill:none;stroke:#e0a800;stroke-width:1.4}
.tsg line.sack{stroke:#c2185b;stroke-width:3;opacity:.6}
.tsg path.zerowin{fill:var(--fail)}
.tsg g.legend text{font-family:system-ui,sans-serif;font-size:11px;fill:#333}
.tsg g.legend.seg line{stroke:#1f4e8c;stroke-width:2} .tsg g.legend.retrans line{stroke:#d0021b}
.tsg g.legend.probe line{stroke:#8e24aa} .tsg g.legend.ackline line{stroke:#17803d;stroke-width:2}
.tsg g.legend.winline line{stroke:#e0a800;stroke-width:2} .tsg g.legend.sack line{stroke:#c2185b;stroke-width:3}
.tsg g.legend.zerowin line{stroke:var(--fail);stroke-width:4}
.hidden{display:none}
"#;

const JS: &str = r#"
(function(){
  var st=document.getElementById('f-status'),su=document.getElementById('f-suite'),tx=document.getElementById('f-text'),cnt=document.getElementById('f-count');
  function apply(){
    var s=st.value,u=su.value,q=tx.value.trim().toLowerCase(),shown=0,total=0;
    var items=document.querySelectorAll('tr.prop,section.case');
    for(var i=0;i<items.length;i++){
      var el=items[i],ok=(!s||el.dataset.status===s)&&(!u||el.dataset.suite===u)&&(!q||el.dataset.text.indexOf(q)>=0);
      el.classList.toggle('hidden',!ok);
      if(el.tagName==='SECTION'){total++;if(ok)shown++;}
    }
    cnt.textContent=shown+' of '+total+' drawn case(s) shown';
  }
  st.addEventListener('change',apply);su.addEventListener('change',apply);tx.addEventListener('input',apply);
  apply();
  document.body.setAttribute('data-js','ready');
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_violations_wrap_into_three_lines_at_most() {
        let w = wrap(&"word ".repeat(100), 20, 3);
        assert_eq!(w.len(), 3);
        assert!(w.iter().all(|l| l.chars().count() <= 20), "{w:?}");
        assert!(w[2].ends_with('…'), "{w:?}");
        assert_eq!(wrap("a short one", 20, 3), vec!["a short one"]);
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn pcap_links_are_relative_to_the_report() {
        assert_eq!(
            relative_to(Path::new("/o/out/p/case.pcapng"), Path::new("/o/r.html")),
            "out/p/case.pcapng"
        );
        // One level up: the link climbs out of the report's folder first.
        let up = relative_to(Path::new("/o/out/case.pcapng"), Path::new("/o/html/r.html"));
        assert_eq!(up, format!("{}/out/case.pcapng", ".."));
    }
}
