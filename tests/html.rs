//! The HTML report in a real browser (headless Chromium): a run with a known failure (every RST b sends is
//! dropped by nft, so `tcp.rst.closed_port` fails) is rendered, its DOM read back after the page's scripts
//! ran, and checked: one ladder arrow per captured frame (counted in the pcapng by tshark), the frame the
//! violation names drawn as the violating arrow with the violation text, no script error. A screenshot is
//! kept (its path is printed). Skipped, saying so, only when no Chromium is installed (`.ci/run` installs it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{netconform, out_dir, require_nft, text};

const DROP_B_RSTS: &str = "b:nft add table inet t; \
     nft add chain inet t o { type filter hook output priority 0 \\; }; \
     nft add rule inet t o tcp flags rst drop";

fn browser() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Runs headless Chromium on `page` with `args` (a fresh profile each time); returns (stdout, stderr).
fn chromium(browser: &Path, profile: &Path, page: &Path, args: &[&str]) -> (String, String) {
    let _ = std::fs::remove_dir_all(profile);
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of attribute `name` in the first tag of `s` that has it.
fn attr<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let start = s.find(&key)? + key.len();
    Some(&s[start..start + s[start..].find('"')?])
}

fn frames_in_pcapng(path: &Path) -> usize {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .output()
        .expect("tshark (apt-get install tshark; .ci/run installs it)");
    assert!(out.status.success(), "tshark -r {}", path.display());
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn a_failing_run_is_drawn_with_its_violation_in_a_browser() {
    require_nft();
    let dir = out_dir("html-fault");
    let report = dir.join("report.html");
    let out = netconform(&[
        "run",
        "--property",
        "tcp.rst.closed_port",
        "--cases",
        "4",
        "--seed",
        "21",
        "--exec",
        DROP_B_RSTS,
        "--out",
        dir.join("out").to_str().unwrap(),
        "--html",
        report.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let html = std::fs::read_to_string(&report).expect("the report is written");
    // Self-contained: nothing is fetched (the SVG namespace is a name, not a fetch).
    for fetch in ["src=\"http", "href=\"http", "url(http", "@import", "<link "] {
        assert!(!html.contains(fetch), "the report fetches {fetch:?}");
    }

    let Some(browser) = browser() else {
        eprintln!(
            "SKIPPED the browser half of this test: no chromium in PATH (apt-get install chromium; .ci/run does)"
        );
        return;
    };
    let (dom, log) = chromium(&browser, &dir.join("profile-dom"), &report, &["--dump-dom"]);
    assert!(
        dom.contains("data-js=\"ready\""),
        "the page's script did not run to its end:\n{log}"
    );
    assert!(
        dom.contains("<ul id=\"js-errors\"></ul>"),
        "the page recorded script errors: {}",
        &dom[dom.find("js-errors").unwrap_or(0)..][..400.min(dom.len())]
    );
    for bad in ["Uncaught", "SyntaxError", "TypeError", "ReferenceError"] {
        assert!(
            !log.contains(bad),
            "console error {bad:?} in Chromium's log:\n{log}"
        );
    }

    let sections: Vec<&str> = dom.split("<section class=\"case").skip(1).collect();
    assert_eq!(sections.len(), 4, "every failing case is drawn");
    for s in &sections {
        assert_eq!(attr(s, "data-status"), Some("fail"), "{s:.300}");
        let pcap = attr(&s[s.find("pcapng: <a").expect("a pcapng link")..], "href").expect("href");
        let pcap = report.parent().unwrap().join(pcap);
        let frames = frames_in_pcapng(&pcap);
        let ladder = &s[s.find("<svg class=\"ladder\"").expect("a ladder")..];
        let ladder = &ladder[..ladder.find("</svg>").unwrap()];
        assert_eq!(
            ladder.matches("<g class=\"arrow").count(),
            frames,
            "one arrow per frame of {}",
            pcap.display()
        );
        // The violation names the segment no RST answered (frame #1, or later when the kernel's MLD reports
        // for the new interfaces were captured first): that arrow is the violating one.
        let detail = &s[s.find("<pre class=\"detail\">").unwrap()..];
        let named = detail
            .split("frame(s): #")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .unwrap_or_else(|| panic!("the violation names a frame: {detail:.400}"));
        let violating: Vec<&str> = ladder
            .split("<g class=\"arrow violating")
            .skip(1)
            .map(|g| attr(g, "data-frame").unwrap())
            .collect();
        assert_eq!(violating, vec![named], "{ladder:.600}");

        assert!(
            ladder.contains("class=\"violation-note\"")
                && ladder.contains("no RST answered a segment to a closed port"),
            "the violation text sits under its arrow"
        );
    }

    let shot = dir.join("screenshot-fault.png");
    let _ = std::fs::remove_file(&shot);
    let (_, log) = chromium(
        &browser,
        &dir.join("profile-shot"),
        &report,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,1800",
        ],
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 20_000,
        "screenshot {} missing or empty:\n{log}",
        shot.display()
    );
    eprintln!("screenshot of the report: {}", shot.display());
}

#[test]
fn a_replay_and_a_check_write_html_too() {
    require_nft();
    let dir = out_dir("html-replay");
    let out = netconform(&[
        "run",
        "--property",
        "tcp.rst.closed_port",
        "--cases",
        "1",
        "--seed",
        "5",
        "--exec",
        DROP_B_RSTS,
        "--out",
        dir.join("out").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let case = dir.join("out/tcp.rst.closed_port/case-0000-ipv4.json");
    let replay_html = dir.join("replay.html");
    let out = netconform(&[
        "replay",
        case.to_str().unwrap(),
        "--out",
        dir.join("replay-out").to_str().unwrap(),
        "--html",
        replay_html.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let html = std::fs::read_to_string(&replay_html).unwrap();
    assert!(
        html.contains("<g class=\"arrow violating"),
        "replay draws the violation"
    );

    let pcap = dir.join("replay-out/tcp.rst.closed_port/case-0000-ipv4.pcapng");
    let check_html = dir.join("check.html");
    let out = netconform(&[
        "check",
        pcap.to_str().unwrap(),
        "--html",
        check_html.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let html = std::fs::read_to_string(&check_html).unwrap();
    let ladder = &html[html.find("<svg class=\"ladder\"").expect("a ladder")..];
    assert_eq!(
        attr(ladder, "data-frames").map(|n| n.parse::<usize>().unwrap()),
        Some(
            ladder[..ladder.find("</svg>").unwrap()]
                .matches("<g class=\"arrow")
                .count()
        )
    );
}
