//! Every path the repository cites exists in the repository (issue #15: docs/ holds what the code cites).
//!
//! Scans every `.rs`, `.md` and `.toml` file of the repository (tracked, or new and not ignored) for cited
//! relative paths and fails naming `file:line` for each one that does not exist or points outside the
//! repository. What counts as a citation:
//! - a path starting with one of [`ROOT_PREFIXES`] (`docs/…`, `harness/src/…`, `tests/…`, …), at a word
//!   boundary, resolved from the repository root — the convention for citations in code and docs;
//! - a path starting with `../` or `./`, resolved from the citing file's directory (as `path = "../harness"` in
//!   a Cargo.toml is);
//! - the target of a Markdown link `[text](target)`, resolved from the file's directory (URLs and `#anchors`
//!   are left out).
//!
//! No root needed.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// Directories at the repository root that code and docs cite as `dir/…`.
const ROOT_PREFIXES: &[&str] = &[
    "docs/",
    "harness/",
    "suites/",
    "tests/",
    "src/",
    "snapshots/",
    ".ci/",
];

/// Which file types are scanned.
const SCANNED: &[&str] = &["rs", "md", "toml"];

/// How a cited path is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    /// From the repository root (`docs/kernel-facts.md`).
    Root,
    /// From the citing file's directory (`../harness`, Markdown links).
    File,
}

/// A path cited on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Citation {
    path: String,
    base: Base,
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

/// The paths cited on one line.
fn citations(line: &str) -> Vec<Citation> {
    let mut found = Vec::new();
    // Markdown links: [text](target).
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let end = after.find(')').unwrap_or(after.len());
        let target = after[..end].split('#').next().unwrap_or("").trim();
        let is_url = target.contains("://") || target.starts_with("mailto:");
        if !target.is_empty() && !is_url && target.chars().all(is_path_char) {
            found.push(Citation {
                path: target.to_string(),
                base: Base::File,
            });
        }
        rest = &after[end..];
    }
    // Bare paths (in backticks, prose, strings).
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    for (k, &(at, _)) in chars.iter().enumerate() {
        if k > 0 && is_path_char(chars[k - 1].1) {
            continue; // not at a word boundary: part of a longer path or word
        }
        let tail = &line[at..];
        let base = if tail.starts_with("../") || tail.starts_with("./") {
            Base::File
        } else if ROOT_PREFIXES.iter().any(|p| tail.starts_with(p)) {
            Base::Root
        } else {
            continue;
        };
        let token: String = tail.chars().take_while(|&c| is_path_char(c)).collect();
        let token = token.trim_end_matches(['.', ',']).to_string();
        // A Markdown link target is already taken, resolved from the file.
        if k >= 2 && chars[k - 1].1 == '(' && chars[k - 2].1 == ']' {
            continue;
        }
        found.push(Citation { path: token, base });
    }
    found
}

/// Normalises `base/path` lexically; `None` when it climbs above the repository root.
fn resolve(citing_file: &str, c: &Citation) -> Option<PathBuf> {
    let start = match c.base {
        Base::Root => PathBuf::new(),
        Base::File => Path::new(citing_file)
            .parent()
            .unwrap_or(Path::new(""))
            .to_path_buf(),
    };
    let mut out: Vec<String> = start
        .components()
        .map(|x| x.as_os_str().to_string_lossy().into_owned())
        .collect();
    for comp in Path::new(&c.path).components() {
        match comp {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop()?;
            }
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out.iter().collect())
}

/// The problems of one file's text, as `file:line: message`, given the repository's files and directories.
fn problems(file: &str, text: &str, exists: &BTreeSet<PathBuf>) -> Vec<String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        for c in citations(line) {
            match resolve(file, &c) {
                None => out.push(format!(
                    "{file}:{}: `{}` points outside the repository",
                    i + 1,
                    c.path
                )),
                Some(p) if !exists.contains(&p) => out.push(format!(
                    "{file}:{}: `{}` does not exist in the repository (resolved to {})",
                    i + 1,
                    c.path,
                    p.display()
                )),
                Some(_) => {}
            }
        }
    }
    out
}

/// The repository's files (tracked, or new and not ignored), relative to the root.
fn repo_files(root: &Path) -> Vec<String> {
    let out = Command::new("git")
        .args(["ls-files", "--cached", "--others", "--exclude-standard"])
        .current_dir(root)
        .output()
        .expect("git ls-files (the docs test needs git)");
    assert!(out.status.success(), "git ls-files failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|f| root.join(f).exists()) // deleted but not yet committed
        .map(String::from)
        .collect()
}

/// Files and every directory above them.
fn existing(files: &[String]) -> BTreeSet<PathBuf> {
    let mut set = BTreeSet::from([PathBuf::new()]); // the root itself
    for f in files {
        let mut p = PathBuf::from(f);
        loop {
            set.insert(p.clone());
            if !p.pop() || p.as_os_str().is_empty() {
                break;
            }
        }
    }
    set
}

#[test]
fn every_cited_path_exists_in_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = repo_files(root);
    let exists = existing(&files);
    let mut scanned = 0;
    let mut all = Vec::new();
    for f in &files {
        let scan = Path::new(f)
            .extension()
            .is_some_and(|e| SCANNED.iter().any(|s| e == *s));
        // This file's own tests are full of deliberately bad citations.
        if !scan || f == "tests/docs.rs" {
            continue;
        }
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        all.extend(problems(f, &text, &exists));
        scanned += 1;
    }
    assert!(
        scanned > 50,
        "only {scanned} files scanned: the file list is wrong"
    );
    assert!(
        all.is_empty(),
        "cited paths that do not exist:\n{}",
        all.join("\n")
    );
}

#[test]
fn docs_cited_by_the_code_are_in_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for doc in [
        "docs/architecture.md",
        "docs/kernel-facts.md",
        "docs/lab-catalogue.md",
    ] {
        assert!(root.join(doc).is_file(), "{doc} is missing");
    }
}

fn fake_repo() -> BTreeSet<PathBuf> {
    existing(&[
        "docs/kernel-facts.md".into(),
        "harness/src/sock.rs".into(),
        "harness/Cargo.toml".into(),
        "suites/Cargo.toml".into(),
    ])
}

#[test]
fn the_scanner_names_a_citation_outside_the_repository() {
    let text = "//! ok\n//! Building a lab (see `../shared/kernel-facts.md`).\n";
    let found = problems("README.md", text, &fake_repo());
    assert_eq!(
        found,
        vec!["README.md:2: `../shared/kernel-facts.md` points outside the repository"]
    );
}

#[test]
fn the_scanner_names_a_missing_file_with_its_line() {
    let text = "a\nb\n// see docs/kernel-facts.md and docs/kernel-fact.md, harness/src/sock.rs\n";
    let found = problems("suites/src/lib.rs", text, &fake_repo());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("suites/src/lib.rs:3: `docs/kernel-fact.md` does not exist"),
        "{found:?}"
    );
}

#[test]
fn the_scanner_resolves_relative_paths_from_the_citing_file() {
    let repo = fake_repo();
    // `../harness` from suites/Cargo.toml is harness/: fine. The old `../shared/…` from inside harness/src is
    // harness/shared/…: missing.
    assert!(problems("suites/Cargo.toml", "path = \"../harness\"", &repo).is_empty());
    assert_eq!(
        problems(
            "harness/src/docs.rs",
            "(`../shared/lab-catalogue.md`)",
            &repo
        )
        .len(),
        1
    );
}

#[test]
fn the_scanner_checks_markdown_links_and_skips_urls() {
    let repo = fake_repo();
    assert!(problems("docs/x.md", "[facts](kernel-facts.md)", &repo).is_empty());
    assert!(problems(
        "docs/x.md",
        "[rfc](https://example.org/a/b) [top](#x)",
        &repo
    )
    .is_empty());
    let found = problems(
        "docs/x.md",
        "see [the catalogue](lab-catalogue.md#udp)",
        &repo,
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("docs/lab-catalogue.md"), "{found:?}");
}

#[test]
fn the_scanner_leaves_paths_that_are_not_citations_alone() {
    // Absolute paths and paths inside other paths are not repository citations.
    let cites =
        citations("/proc/thread-self/net/snmp and include/uapi/linux/tcp.h and foo/src/x.rs");
    assert!(cites.is_empty(), "{cites:?}");
    let cites = citations("`harness/src/sock.rs`, and docs/kernel-facts.md.");
    let paths: Vec<&str> = cites.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths, vec!["harness/src/sock.rs", "docs/kernel-facts.md"]);
}
