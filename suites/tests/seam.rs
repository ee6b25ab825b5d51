//! The seam for systems under test (issue #14): a property file makes no system call of its own. Nothing under
//! `suites/src/` names the libc crate or holds `unsafe` code, and the suites crate does not depend on libc;
//! sockets, options, flags and errnos come from the `harness` crate's named APIs.
//!
//! Reads files only: no root, no lab.

use std::path::{Path, PathBuf};

/// Words a property file must not contain: the libc crate (`libc::…`, `use libc`) and `unsafe`.
const FORBIDDEN_WORDS: [&str; 2] = ["libc", "unsafe"];

/// Every `(line number, forbidden word, line)` of `source`. A word counts only whole (`glibc` or
/// `unsafe_code` do not), in code and comments alike.
fn forbidden_uses(source: &str) -> Vec<(usize, &'static str, String)> {
    let mut found = Vec::new();
    for (i, line) in source.lines().enumerate() {
        for word in FORBIDDEN_WORDS {
            if contains_word(line, word) {
                found.push((i + 1, word, line.trim().to_string()));
            }
        }
    }
    found
}

fn contains_word(line: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    line.match_indices(word).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_property_file_names_libc_or_holds_unsafe_code() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(
        files.iter().any(|f| f.ends_with("udp/common.rs")),
        "the scan must see the property files (looked in {})",
        src.display()
    );
    let mut report = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).expect("read a property file");
        for (line, word, text) in forbidden_uses(&source) {
            report.push(format!("{}:{line}: `{word}`: {text}", file.display()));
        }
    }
    assert!(
        report.is_empty(),
        "property files must use the harness's named APIs (harness::sock, harness::sockopt, harness::cpu, \
         Errno::…), not libc or unsafe code:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_suites_crate_does_not_depend_on_libc() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .expect("read suites/Cargo.toml");
    let uses = forbidden_uses(&manifest);
    assert!(
        uses.iter().all(|(_, word, _)| *word != "libc"),
        "suites/Cargo.toml names libc: {uses:?}"
    );
}

/// The check can fail: it finds each forbidden use, and only those.
#[test]
fn the_check_finds_libc_and_unsafe() {
    let with_libc = "let r = s.set_int_opt(libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);";
    assert_eq!(forbidden_uses(with_libc).len(), 1);
    assert_eq!(forbidden_uses(with_libc)[0].1, "libc");
    assert_eq!(forbidden_uses("use libc;")[0].1, "libc");
    assert_eq!(forbidden_uses("libc = { workspace = true }")[0].1, "libc");
    let with_unsafe = "fn pin() {\n    // SAFETY: none\n    unsafe { sched() };\n}";
    assert_eq!(
        forbidden_uses(with_unsafe),
        vec![(3, "unsafe", "unsafe { sched() };".to_string())]
    );
    let clean =
        "#![forbid(unsafe_code)]\n// glibc and libcurl are other words\ns.set_reuse_addr(true)?;";
    assert_eq!(forbidden_uses(clean), vec![]);
}
