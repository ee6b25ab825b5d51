//! netconform's expert labels against tshark's expert analysis (`tcp.analysis.*`) on captures of the tcp-data
//! suite: they agree frame by frame except where `harness/src/trace/labels.rs` documents why they differ.
//! Skipped (with a message) when tshark is not installed; `.ci/run` installs it.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;
use harness::trace::{Label, Trace};

/// tshark's analysis flags of one frame.
#[derive(Debug, Default, Clone)]
struct Wireshark {
    retransmission: bool,
    dup_ack: bool,
    zero_window: bool,
    zero_window_probe: bool,
    keep_alive: bool,
    window_update: bool,
}

const FIELDS: [&str; 10] = [
    "frame.number",
    "tcp.analysis.retransmission",
    "tcp.analysis.fast_retransmission",
    "tcp.analysis.spurious_retransmission",
    "tcp.analysis.out_of_order",
    "tcp.analysis.duplicate_ack_num",
    "tcp.analysis.zero_window",
    "tcp.analysis.zero_window_probe",
    "tcp.analysis.keep_alive",
    "tcp.analysis.window_update",
];

fn tshark(pcap: &Path) -> BTreeMap<usize, Wireshark> {
    let mut args = vec![
        "-r".to_string(),
        pcap.display().to_string(),
        "-T".into(),
        "fields".into(),
    ];
    for f in FIELDS {
        args.extend(["-e".to_string(), f.to_string()]);
    }
    let out = Command::new("tshark")
        .args(&args)
        .output()
        .expect("tshark runs");
    let mut m = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let p: Vec<&str> = line.split('\t').collect();
        let on = |i: usize| p.get(i).is_some_and(|v| !v.is_empty());
        m.insert(
            p[0].parse().unwrap(),
            Wireshark {
                retransmission: on(1) || on(2) || on(3) || on(4),
                dup_ack: on(5),
                zero_window: on(6),
                zero_window_probe: on(7),
                keep_alive: on(8),
                window_update: on(9),
            },
        );
    }
    m
}

#[test]
fn labels_agree_with_tshark_except_where_documented() {
    if Command::new("tshark").arg("-v").output().is_err() {
        eprintln!("tshark is not installed: label comparison skipped (apt-get install tshark)");
        return;
    }
    let dir = out_dir("labels-vs-tshark");
    let out = netconform(&[
        "run",
        "--suite",
        "tcp-data",
        "--cases",
        "6",
        "--seed",
        "20261203",
        "--pcap",
        "all",
        "-q",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut compared: BTreeMap<&str, usize> = BTreeMap::new();
    let mut disagreements = Vec::new();
    for property in std::fs::read_dir(&dir).unwrap() {
        for f in std::fs::read_dir(property.unwrap().path()).unwrap() {
            let pcap = f.unwrap().path();
            if pcap.extension().is_none_or(|e| e != "pcapng") {
                continue;
            }
            let frames: Vec<_> = harness::pcapng::read_capture(&pcap)
                .unwrap()
                .into_iter()
                .map(|r| r.frame)
                .collect();
            let trace = Trace::build(&frames, &harness::pipeline::lab_host_addrs(), None);
            let theirs = tshark(&pcap);
            for (i, f) in trace.frames.iter().enumerate() {
                let Some(t) = f.tcp() else { continue };
                let w = theirs.get(&f.number).cloned().unwrap_or_default();
                let has = |l: Label| f.labels.contains(&l);
                let dup = f.labels.iter().any(|l| matches!(l, Label::DupAck(_)));
                let probe = has(Label::ZeroWindowProbe);
                // The documented rules (harness/src/trace/labels.rs, "Where tshark differs").
                let linux_probe = probe && t.payload_len == 0;
                // RFC 5681 §2: a duplicate ACK needs data outstanding; tshark does not ask.
                let outstanding = f.conversation.zip(f.direction).is_some_and(|(c, d)| {
                    trace.conversations[c].frames.iter().any(|&j| {
                        j < i
                            && trace.frames[j].direction == Some(1 - d)
                            && trace.frames[j]
                                .tcp()
                                .is_some_and(|p| p.seq + p.segment_len() > t.ack)
                    })
                });
                let checks = [
                    (
                        "retransmission",
                        has(Label::Retransmission),
                        w.retransmission,
                    ),
                    ("dup-ack", dup, w.dup_ack && outstanding),
                    (
                        "zero-window",
                        has(Label::ZeroWindow) && !t.flags.fin,
                        w.zero_window,
                    ),
                    (
                        "zero-window-probe",
                        probe,
                        w.zero_window_probe || (linux_probe && w.keep_alive),
                    ),
                    (
                        "keep-alive",
                        has(Label::KeepAlive),
                        w.keep_alive && !linux_probe,
                    ),
                    (
                        "window-update",
                        has(Label::WindowUpdate) && t.window != 0,
                        w.window_update,
                    ),
                ];
                for (name, ours, wireshark) in checks {
                    if ours || wireshark {
                        *compared.entry(name).or_default() += 1;
                    }
                    if ours != wireshark {
                        disagreements.push(format!(
                            "{} frame #{}: {name}: netconform {ours}, tshark {wireshark}: {}",
                            pcap.display(),
                            f.number,
                            trace.canonical_line(i)
                        ));
                    }
                }
            }
        }
    }
    eprintln!("labels compared with tshark: {compared:?}");
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    for name in [
        "retransmission",
        "dup-ack",
        "zero-window",
        "zero-window-probe",
        "window-update",
    ] {
        assert!(
            compared.get(name).is_some_and(|n| *n > 0),
            "no {name} compared: {compared:?}"
        );
    }
}
