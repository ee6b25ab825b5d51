//! The opening properties (`tcp.accept.backlog`, `tcp.handshake.options`, `tcp.identity.four_tuple`) pass on
//! this kernel, and a hand-made fault injected with nft through `--exec` makes the matching one fail with a
//! violation that names the clause, the field, the expected and the actual value.

mod common;

use common::*;

/// An nft output chain on `host` with one rule (quoted: the rules hold shell metacharacters).
fn nft_output_rule(host: &str, rule: &str) -> String {
    format!(
        "{host}:nft add table inet t; nft add chain inet t o {{ type filter hook output priority 0 \\; }}; \
         nft add rule inet t o {rule}"
    )
}

fn run_property(id: &str, cases: &str, seed: &str, exec: Option<&str>) -> (Option<i32>, String) {
    let dir = out_dir(&format!("{id}-{seed}-{}", exec.is_some()));
    let mut args = vec![
        "run",
        "--property",
        id,
        "--family",
        "both",
        "--cases",
        cases,
        "--seed",
        seed,
        "--out",
        dir.to_str().unwrap(),
    ];
    if let Some(e) = exec {
        args.extend(["--exec", e]);
    }
    let out = netconform(&args);
    (out.status.code(), text(&out))
}

#[test]
fn the_opening_properties_pass_on_this_kernel() {
    for id in [
        "tcp.accept.backlog",
        "tcp.handshake.options",
        "tcp.identity.four_tuple",
    ] {
        let (code, t) = run_property(id, "16", "20261125", None);
        assert_eq!(code, Some(0), "{id}: {t}");
        assert!(t.contains("PASS"), "{t}");
    }
}

#[test]
fn dropping_syn_acks_makes_the_backlog_property_fail() {
    let exec = nft_output_rule("b", "'tcp flags & (syn|ack) == syn|ack' drop");
    let (code, t) = run_property("tcp.accept.backlog", "2", "5", Some(&exec));
    assert_eq!(code, Some(1), "{t}");
    assert!(
        t.contains("did not complete while b had not called accept"),
        "{t}"
    );
    assert!(t.contains("RFC 9293 §3.5, §3.9.1; listen(2)"), "{t}");
    assert!(
        t.contains("expected: ok, ESTABLISHED") && t.contains("actual:   timed out, SYN-SENT"),
        "{t}"
    );
}

#[test]
fn rewriting_the_syn_ack_mss_makes_the_options_property_fail_naming_the_field() {
    let exec = nft_output_rule(
        "b",
        "'tcp flags & syn == syn' tcp option maxseg size set 500",
    );
    let (code, t) = run_property("tcp.handshake.options", "4", "5", Some(&exec));
    assert_eq!(code, Some(1), "{t}");
    assert!(
        t.contains("the SYN-ACK's MSS option is not MTU − headers"),
        "{t}"
    );
    assert!(t.contains("RFC 9293 §3.7.1 (MUST-14, MUST-16)"), "{t}");
    assert!(
        t.contains("field:    SYN-ACK option MSS") && t.contains("actual:   500"),
        "{t}"
    );
}

#[test]
fn dropping_b_s_rsts_hides_the_abort_on_overflow_reset() {
    // Seed 6, case 0: backlog 1, one queued connect, then the final-ACK race with tcp_abort_on_overflow=1.
    let exec = nft_output_rule("b", "tcp flags rst drop");
    let dir = out_dir("backlog-race-no-rst");
    let out = netconform(&[
        "run",
        "--property",
        "tcp.accept.backlog",
        "--family",
        "ipv4",
        "--cases",
        "1",
        "--seed",
        "6",
        "--exec",
        &exec,
        "--out",
        dir.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("a final ACK that met a full accept queue was not handled as tcp_abort_on_overflow says"),
        "{t}"
    );
    assert!(
        t.contains("expected: exactly one (tcp_abort_on_overflow=1: reset)")
            && t.contains("actual:   0 (ports [])"),
        "{t}"
    );
}
