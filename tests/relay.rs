//! The relay link against the kernel: the same seed gives the same impairment decisions, delay is real,
//! and a relay-based property passes.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use harness::frame::Host;
use harness::lab::{Lab, LabConfig};
use harness::link::{Impairment, LinkEvent, LinkSpec, RelaySpec};
use harness::sock::{ConnectOutcome, Errno, Family, Socket};

fn relay(imp: Impairment, seed: u64) -> LabConfig {
    LabConfig {
        link: LinkSpec::Relay(RelaySpec {
            a_to_b: imp,
            b_to_a: Impairment::default(),
            seed,
        }),
        ..Default::default()
    }
}

/// Sends 60 distinct datagrams a -> b through a lossy, duplicating, reordering relay; returns what the relay
/// decided, as (datagram index, event) pairs, and the indices b received.
fn decisions(seed: u64) -> (Vec<(u8, String)>, Vec<u8>) {
    let imp = Impairment {
        loss_ppm: 300_000,
        duplicate_ppm: 100_000,
        reorder_ppm: 100_000,
        delay_us: 2_000,
        ..Default::default()
    };
    let lab = Lab::build(&relay(imp, seed)).unwrap();
    let capture = lab.start_capture().unwrap();
    let b = SocketAddr::new(lab.addr(Host::B, Family::Ipv4), 5001);
    let rx = lab
        .host(Host::B)
        .run(move || {
            let s = Socket::udp(Family::Ipv4).unwrap();
            s.bind(b).unwrap();
            s
        })
        .unwrap();
    lab.host(Host::A)
        .run(move || {
            let s = Socket::udp(Family::Ipv4).unwrap();
            for i in 0..60u8 {
                s.send_to(&[i; 32], b, 0).unwrap().unwrap();
                std::thread::sleep(Duration::from_micros(200));
            }
        })
        .unwrap();
    let got = lab
        .host(Host::B)
        .run(move || {
            let mut got = Vec::new();
            while let Some(Ok(r)) = rx.recv_timeout(100, 0, Duration::from_millis(100)) {
                got.push(r.data[0]);
            }
            got
        })
        .unwrap();
    let captured = capture.stop().unwrap();
    assert_eq!(captured.drops, 0, "unintended drops");
    let index = |e: &LinkEvent| *captured.frames[e.frame].data.last().unwrap();
    let events = captured
        .link_events
        .iter()
        .map(|e| (index(e), format!("{:?}", e.kind)))
        .collect();
    (events, got)
}

#[test]
fn the_same_seed_gives_the_same_impairment_decisions() {
    let (first, got_first) = decisions(42);
    let (second, got_second) = decisions(42);
    let (other, _) = decisions(43);
    assert!(
        first.iter().any(|(_, k)| k == "Dropped") && first.iter().any(|(_, k)| k == "Duplicated"),
        "{first:?}"
    );
    assert_eq!(first, second, "same seed, same decisions");
    assert_ne!(first, other, "another seed, other decisions");
    // What b received follows from the decisions: dropped ones never arrive, duplicated ones twice.
    let dropped: Vec<u8> = first
        .iter()
        .filter(|(_, k)| k == "Dropped")
        .map(|(i, _)| *i)
        .collect();
    assert!(
        dropped.iter().all(|d| !got_first.contains(d)),
        "{dropped:?} {got_first:?}"
    );
    let dup = first.iter().filter(|(_, k)| k == "Duplicated").count();
    assert_eq!(got_first.len(), 60 - dropped.len() + dup);
    let mut a = got_first.clone();
    let mut b = got_second.clone();
    a.sort();
    b.sort();
    assert_eq!(
        a, b,
        "the same datagrams arrive (their order may differ by reordering)"
    );
}

#[test]
fn the_delay_is_real() {
    let lab = Lab::build(&relay(
        Impairment {
            delay_us: 20_000,
            ..Default::default()
        },
        1,
    ))
    .unwrap();
    let b = SocketAddr::new(lab.addr(Host::B, Family::Ipv6), 5009);
    let (outcome, rtt) = lab
        .host(Host::A)
        .run(move || {
            let s = Socket::tcp(Family::Ipv6).unwrap();
            let t = Instant::now();
            let o = s.connect_timeout(b, Duration::from_millis(500)).unwrap();
            (o, t.elapsed())
        })
        .unwrap();
    // b -> a has no delay configured here: the SYN waits 20 ms, the RST comes straight back.
    assert_eq!(
        outcome,
        ConnectOutcome::Done(Err(Errno(libc::ECONNREFUSED)))
    );
    assert!(
        rtt >= Duration::from_millis(20) && rtt < Duration::from_millis(60),
        "{rtt:?}"
    );
}

#[test]
fn relay_properties_pass_and_any_property_runs_over_the_relay() {
    let out = netconform(&[
        "run",
        "--property",
        "udp.no_retransmit",
        "--cases",
        "32",
        "--seed",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = netconform(&[
        "run",
        "--link",
        "relay",
        "--delay",
        "5ms",
        "--property",
        "tcp.rst.closed_port",
        "--property",
        "tcp.random_ops",
        "--cases",
        "32",
        "--seed",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let bad = netconform(&["run", "--delay", "5ms", "--cases", "1"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "impairments without --link relay: {}",
        text(&bad)
    );
}

#[test]
fn predicate_rules_drop_the_nth_data_segment_and_delay_the_first_fin() {
    use harness::link::{LinkEventKind, Rule};
    use harness::trace::Trace;
    let imp = Impairment {
        rules: vec![Rule::DropNthData { n: 3 }, Rule::DelayFirstFin { ms: 50 }],
        ..Default::default()
    };
    let lab = Lab::build(&relay(imp, 9)).unwrap();
    let capture = lab.start_capture().unwrap();
    let b = SocketAddr::new(lab.addr(Host::B, Family::Ipv4), 5001);
    let listener = lab
        .host(Host::B)
        .run(move || {
            let l = Socket::tcp(Family::Ipv4).unwrap();
            l.bind(b).unwrap();
            l.listen(1).unwrap();
            l
        })
        .unwrap();
    let reader = lab.host(Host::B).submit(move || {
        assert!(listener.poll(libc::POLLIN, Duration::from_secs(2)) != 0);
        let (s, _) = listener.accept_now().unwrap();
        let mut got = Vec::new();
        while let Some(Ok(r)) = s.recv_timeout(65536, 0, Duration::from_secs(2)) {
            if r.returned == 0 {
                break;
            }
            got.extend(r.data);
        }
        got
    });
    let sent: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let data = sent.clone();
    lab.host(Host::A)
        .run(move || {
            let c = Socket::tcp(Family::Ipv4).unwrap();
            assert_eq!(
                c.connect_timeout(b, Duration::from_secs(1)).unwrap(),
                ConnectOutcome::Done(Ok(()))
            );
            let mut off = 0;
            while off < data.len() {
                off += c.send(&data[off..], 0).unwrap().unwrap();
            }
            c.shutdown(libc::SHUT_WR).unwrap();
            std::thread::sleep(Duration::from_millis(100));
        })
        .unwrap();
    assert_eq!(
        reader.wait().unwrap(),
        sent,
        "the stream arrives intact despite the drop"
    );
    let captured = capture.stop().unwrap();
    let trace = Trace::build(&captured.frames, &harness::pipeline::lab_host_addrs(), None);
    let dropped: Vec<usize> = captured
        .link_events
        .iter()
        .filter(|e| e.kind == LinkEventKind::Dropped)
        .map(|e| e.frame)
        .collect();
    assert_eq!(
        dropped.len(),
        1,
        "exactly the 3rd data segment is dropped: {:?}",
        captured.link_events
    );
    let lost = trace.frames[dropped[0]].tcp().unwrap().clone();
    let data_from_a: Vec<_> = trace
        .frames
        .iter()
        .filter_map(|f| {
            f.tcp()
                .filter(|t| f.from == Some(Host::A) && t.payload_len > 0)
        })
        .collect();
    assert_eq!(
        data_from_a.iter().position(|t| **t == lost),
        Some(2),
        "it was the third data segment"
    );
    // Retransmitted with the same range later (RFC 9293 §3.8.1).
    let again = trace.frames[dropped[0] + 1..]
        .iter()
        .filter_map(|f| f.tcp().filter(|_| f.from == Some(Host::A)))
        .any(|t| t.seq == lost.seq && t.payload_len >= lost.payload_len);
    assert!(
        again,
        "the dropped range was retransmitted\n{}",
        trace.render()
    );
    // The first FIN from a waits 50 ms in the relay: b cannot acknowledge it before that, unless a's own
    // retransmission of the FIN (its loss recovery or tail-loss probe, not delayed: only the first FIN is)
    // got there first. Without the rule b acknowledges within microseconds.
    let fin = trace
        .frames
        .iter()
        .position(|f| f.from == Some(Host::A) && f.tcp().is_some_and(|t| t.flags.fin))
        .unwrap();
    let fin_seg = trace.frames[fin].tcp().unwrap().clone();
    let fin_ack = trace.frames[fin + 1..]
        .iter()
        .position(|f| {
            f.from == Some(Host::B)
                && f.tcp()
                    .is_some_and(|t| t.ack == fin_seg.seq + fin_seg.segment_len())
        })
        .map(|k| k + fin + 1)
        .expect("b acknowledged the FIN");
    let waited = trace.frames[fin_ack].rel_ns - trace.frames[fin].rel_ns >= 50_000_000;
    let resent_first = trace.frames[fin + 1..fin_ack]
        .iter()
        .any(|f| f.from == Some(Host::A) && f.tcp().is_some_and(|t| t.flags.fin));
    assert!(waited || resent_first, "{}", trace.render());
}

/// Every case of a `--link relay` run gets its own relay seed, derived from the case seed and written into
/// its case file, and re-running the case file reproduces exactly the relay's decisions.
#[test]
fn relay_seeds_are_per_case_and_replay_reproduces_the_drops() {
    use harness::runner::{self, CaseRun, CaseSpec, Event, PcapPolicy, RunOptions};
    use std::sync::Mutex;
    let prop = suites::all()
        .into_iter()
        .find(|p| p.info().id == "udp.recv.boundaries")
        .unwrap();
    let lossy = Impairment {
        loss_ppm: 300_000,
        ..Default::default()
    };
    let opts = RunOptions {
        cases: 6,
        seed: 77,
        jobs: 3,
        families: vec![Family::Ipv4],
        lab: relay(lossy, 77),
        out_dir: out_dir("relay-per-case-seeds"),
        pcap: PcapPolicy::All,
        shrink_budget: Duration::ZERO,
        shrink_max_cases: 0,
        confirm_runs: 0,
        html: false,
        offer: harness::backend::Offer::kernel(),
        facilities: harness::lab::privileges::Facilities::all(),
        partition: None,
        fail_fast: false,
    };
    let runs: Mutex<Vec<CaseRun>> = Mutex::new(Vec::new());
    runner::run(&[prop], &opts, &|e| match e {
        Event::CaseDone { run, .. } => runs.lock().unwrap().push(run.clone()),
    });
    let runs = runs.into_inner().unwrap();
    assert_eq!(runs.len(), 6);
    let drops = |trace: &str| -> Vec<String> {
        trace
            .lines()
            .filter(|l| l.contains("[relay: dropped]"))
            // Without the frame number and the time: the frame's line and its labels.
            .map(|l| l.split_whitespace().skip(2).collect::<Vec<_>>().join(" "))
            .collect()
    };
    let mut seeds = std::collections::BTreeSet::new();
    let mut dropped_somewhere = 0;
    for run in &runs {
        let LinkSpec::Relay(r) = &run.spec.lab.link else {
            panic!("case {} has no relay", run.spec.index)
        };
        seeds.insert(r.seed);
        // The case file on disk is what replay reads.
        let file = opts
            .out_dir
            .join("udp.recv.boundaries")
            .join(format!("case-{:04}-ipv4.json", run.spec.index));
        let spec: CaseSpec =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(
            spec,
            run.spec,
            "{} holds the case as it ran",
            file.display()
        );
        let replayed = prop.run_case(&spec);
        let (original, again) = (drops(&run.trace_text), drops(&replayed.trace_text));
        assert_eq!(
            original, again,
            "case {}: replay dropped other frames\n--- run:\n{}\n--- replay:\n{}",
            run.spec.index, run.trace_text, replayed.trace_text
        );
        dropped_somewhere += !original.is_empty() as usize;
    }
    assert_eq!(
        seeds.len(),
        6,
        "every case has its own relay seed: {seeds:?}"
    );
    assert!(
        dropped_somewhere > 0,
        "30 % loss dropped nothing in 6 cases"
    );
}
