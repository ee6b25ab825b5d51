//! The scripted peer against the kernel: a script that matches passes, and the checker reports what
//! packetdrill would miss — a segment b sends that no step expected.

use harness::exec::ExecConfig;
use harness::lab::{Lab, LabConfig};
use harness::link::LinkSpec;
use harness::ops::{Op, SockKind};
use harness::script::{run_script, Expect, Inject, Script, Step};
use harness::sock::Family;

fn handshake(family: Family, extra: Vec<Step>) -> Script {
    // b's MSS comes from its MTU (1500 - 40 / - 60); our SYN offered only an MSS, so b echoes nothing else.
    let mss = match family {
        Family::Ipv4 => 1460,
        Family::Ipv6 => 1440,
    };
    let mut steps = vec![
        Step::B(Op::Socket {
            kind: SockKind::Tcp,
        }),
        Step::B(Op::Bind {
            sock: 0,
            port: 5001,
        }),
        Step::B(Op::Listen {
            sock: 0,
            backlog: 4,
        }),
        Step::Inject(Inject {
            flags: "S".into(),
            seq: 0,
            ack: 0,
            win: 65535,
            len: 0,
            mss: Some(1460),
        }),
        Step::Expect(Expect {
            flags: Some("S.".into()),
            seq: Some(0),
            ack: Some(1),
            options: Some(format!("mss {mss}")),
            ..Default::default()
        }),
        Step::Inject(Inject {
            flags: ".".into(),
            seq: 1,
            ack: 1,
            win: 65535,
            len: 0,
            mss: None,
        }),
        Step::B(Op::Accept { sock: 0 }),
    ];
    steps.extend(extra);
    Script {
        b_port: 5001,
        a_port: 40000,
        a_isn: 1_000_000,
        steps,
        quiet_ms: 50,
    }
}

fn run(script: &Script, family: Family) -> harness::script::ScriptRun {
    let lab = Lab::build(&LabConfig {
        link: LinkSpec::Peer,
        ..Default::default()
    })
    .unwrap();
    run_script(
        &lab,
        lab.peer().unwrap(),
        script,
        ExecConfig::new(1, family),
    )
    .unwrap()
}

#[test]
fn a_matching_script_passes_for_both_families() {
    for family in [Family::Ipv4, Family::Ipv6] {
        let script = handshake(
            family,
            vec![
                Step::B(Op::Write { sock: 1, len: 100 }),
                Step::Expect(Expect {
                    flags: Some("P.".into()),
                    seq: Some(1),
                    ack: Some(1),
                    len: Some(100),
                    ..Default::default()
                }),
                Step::Inject(Inject {
                    flags: ".".into(),
                    seq: 1,
                    ack: 101,
                    win: 65535,
                    len: 0,
                    mss: None,
                }),
            ],
        );
        let r = run(&script, family);
        assert!(r.violations.is_empty(), "{family:?}: {:?}", r.violations);
        assert_eq!(r.seen.len(), 2);
        assert!(r.seen.iter().all(|(_, m)| m.is_some()));
    }
}

#[test]
fn an_unexpected_segment_and_a_wrong_field_are_reported() {
    // b sends 100 bytes the script never expects: reported after the script ends.
    let r = run(
        &handshake(Family::Ipv4, vec![Step::B(Op::Write { sock: 1, len: 100 })]),
        Family::Ipv4,
    );
    assert!(
        r.violations
            .iter()
            .any(|v| v.summary.contains("after the script ended")),
        "{:?}",
        r.violations
    );
    // A wrong expectation (seq 5 where b sends 1) is reported with both values.
    let r = run(
        &handshake(
            Family::Ipv6,
            vec![
                Step::B(Op::Write { sock: 1, len: 100 }),
                Step::Expect(Expect {
                    seq: Some(5),
                    ..Default::default()
                }),
            ],
        ),
        Family::Ipv6,
    );
    let v = r
        .violations
        .iter()
        .find(|v| v.summary.contains("did not expect"))
        .expect("a mismatch");
    assert!(v.actual.as_deref().unwrap_or("").contains("seq: 1"), "{v}");
}
