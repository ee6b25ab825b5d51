//! What a run prints: a passing default-shaped run stays short (progress, the summary table, one line of
//! aggregated notes per property, the footer), `-q` prints only failures and the footer, `-v` the notes of
//! each case.

mod common;

use common::{netconform, out_dir, text};

#[test]
fn a_passing_run_of_every_property_prints_a_row_and_at_most_a_line_of_notes_each() {
    let dir = out_dir("terminal-default");
    let out = netconform(&[
        "run",
        "--cases",
        "2",
        "--seed",
        "11",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let list = netconform(&["list", "--json"]);
    let props: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).unwrap();
    // Every listed property but the invariants (suite `invariant`: checked inside every case) has a table row.
    let ids: Vec<&str> = props
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .filter(|id| {
            t.lines()
                .any(|l| l.starts_with(&format!("{id} ")) && l.ends_with("PASS"))
        })
        .collect();
    let invariants = props.iter().filter(|p| p["suite"] == "invariant").count();
    assert_eq!(invariants, 9, "four TCP invariants and five validity rules");
    // The stdio suite judges a passive stdio SUT on b: against the kernel it is skipped whole, …
    let stdio: Vec<&str> = props
        .iter()
        .filter(|p| p["suite"] == "stdio")
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(!stdio.is_empty());
    // … folded into one row and one reason line (-v lists them one by one).
    let row = format!("({} properties)", stdio.len());
    assert!(
        t.lines()
            .any(|l| l.starts_with(&row) && l.contains(" stdio ") && l.ends_with("SKIP")),
        "no folded stdio row:\n{t}"
    );
    assert!(t.contains("  skipped suite stdio ("), "{t}");
    assert_eq!(ids.len(), props.len() - invariants - stdio.len(), "{t}");
    // A row per property and at most one line of notes for it (never a line per case), the folded stdio row and
    // its reason, a header, a footer and the blank lines around them.
    let lines = t.lines().count();
    let budget = 2 * (ids.len() + 1) + 6;
    eprintln!("a passing run of every property printed {lines} lines (budget {budget})");
    assert!(lines <= budget, "{lines} lines:\n{t}");
    assert!(!t.contains("  note "), "no per-note lines by default:\n{t}");
    assert!(t.contains("case time, summed"), "{t}");
    assert!(t.contains("at once), seed 11"), "{t}");
    // The notes of the two cases of tcp.flow.window_bound are one line.
    assert_eq!(
        t.lines()
            .filter(|l| l.contains("tcp.flow.window_bound:"))
            .count(),
        1,
        "{t}"
    );
}

#[test]
fn quiet_prints_the_footer_and_verbose_every_case() {
    let dir = out_dir("terminal-quiet");
    let args = |v: &'static str| {
        vec![
            "run",
            "--suite",
            "udp",
            "--cases",
            "2",
            "--seed",
            "3",
            "--out",
            dir.to_str().unwrap(),
            v,
        ]
    };
    let quiet = netconform(&args("-q"));
    let t = text(&quiet);
    assert_eq!(quiet.status.code(), Some(0), "{t}");
    assert!(!t.contains("case time, summed"), "no table with -q:\n{t}");
    assert_eq!(t.trim().lines().count(), 1, "only the footer:\n{t}");
    assert!(t.contains("16 cases of 8 properties"), "{t}");

    let verbose = netconform(&args("-v"));
    let t = text(&verbose);
    assert_eq!(verbose.status.code(), Some(0), "{t}");
    assert_eq!(
        t.lines().filter(|l| l.starts_with("  pass udp.")).count(),
        16,
        "one line per passing case:\n{t}"
    );
    assert!(t.contains("  note udp."), "every distinct note:\n{t}");
}
