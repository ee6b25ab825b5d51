//! Helpers shared by the stdio properties: the needs they declare, the streams they send, the session's
//! failures every one of them reports the same way, and b's frames.

use harness::frame::Host;
use harness::property::{Cap, CaseEnv, LinkKind, Needs, Violation};
use harness::sut::stdio_session::{self, FirstClose, Plan, Session};
use harness::trace::{Trace, TraceFrame};
use harness::wire::TcpRepr;
use harness::HarnessError;

/// A stdio SUT on b, on the user's link (the SUT link with the user's impairments, if any).
pub const STDIO: Needs = Needs {
    links: &[LinkKind::Veth],
    kernel: &[],
    caps: &[Cap::Stdio],
    ethernet: false,
};

/// Where the stdio mode's rules are written.
pub const MODE_CLAUSE: &str = "docs/driver-protocol.md (Other modes: stdio stream)";

/// The sessions of a case, in order.
pub type Sessions = Vec<Session>;

/// Runs `plan` once with a fresh run of the SUT.
pub fn session(env: &CaseEnv, plan: &Plan) -> Result<Session, HarnessError> {
    stdio_session::run(env.lab, env.family, plan)
}

/// `len` bytes of a stream told apart by `tag` and `seed` (printable, so a SUT's stdout stays readable).
pub fn stream(seed: u64, tag: u8, len: usize) -> Vec<u8> {
    let mut x = seed ^ ((tag as u64) << 56) ^ 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'!' + (x % 94) as u8
        })
        .collect()
}

/// The plan most stdio cases use: the SUT sends `sut_bytes` of the case's stream 1, a sends `a_bytes` of its
/// stream 2, and `first` closes first.
pub fn exchange(seed: u64, sut_bytes: usize, a_bytes: usize, first: FirstClose) -> Plan {
    Plan::exchange(stream(seed, 1, sut_bytes), stream(seed, 2, a_bytes), first)
}

/// A size in one of four bands: none, under one segment, a few segments, many.
pub fn gen_size(rng: &mut harness::property::CaseRng) -> usize {
    use rand::Rng;
    match rng.gen_range(0..4) {
        0 => 0,
        1 => rng.gen_range(1..=1000),
        2 => rng.gen_range(1000..=8000),
        _ => rng.gen_range(8000..=60_000),
    }
}

/// The findings every stdio property reports first: no connection, a crash, a stall at the limit.
pub fn session_failure(s: &Session) -> Option<Violation> {
    if let Some(why) = &s.not_connected {
        return Some(
            Violation::new(MODE_CLAUSE, "no connection with the SUT")
                .field("connection")
                .expected(match s.role {
                    harness::sut::StdioRole::Server => "the SUT accepts a's connect",
                    harness::sut::StdioRole::Client => "the SUT connects to a's port",
                })
                .actual(why),
        );
    }
    if let Some(how) = s.crash() {
        return Some(crash_violation(s, &how));
    }
    None
}

/// The SUT crashed: its stderr goes with the violation.
pub fn crash_violation(s: &Session, how: &str) -> Violation {
    let mut v = Violation::new("docs/driver-protocol.md (failure semantics)", "SUT crashed")
        .field("process")
        .expected("runs until both FINs are acknowledged, then exits with status 0 (or is ended)")
        .actual(format!("it {how}"));
    v.context = harness::error::stderr_lines(&s.stderr_tail)
        .into_iter()
        .map(|l| format!("SUT stderr: {l}"))
        .collect();
    v
}

/// The frames b sent, with their TCP header.
pub fn from_b(trace: &Trace) -> impl Iterator<Item = (&TraceFrame, &TcpRepr)> {
    trace
        .frames
        .iter()
        .filter(|f| f.from == Some(Host::B))
        .filter_map(|f| f.tcp().map(|t| (f, t)))
}

/// The frames a sent, with their TCP header.
pub fn from_a(trace: &Trace) -> impl Iterator<Item = (&TraceFrame, &TcpRepr)> {
    trace
        .frames
        .iter()
        .filter(|f| f.from == Some(Host::A))
        .filter_map(|f| f.tcp().map(|t| (f, t)))
}

/// b's SYN or SYN-ACK of each connection, in order.
pub fn b_syns(trace: &Trace) -> Vec<(&TraceFrame, &TcpRepr)> {
    from_b(trace).filter(|(_, t)| t.flags.syn).collect()
}

/// The first offset where `got` differs from `want` (or where one ends), if any.
pub fn first_difference(want: &[u8], got: &[u8]) -> Option<usize> {
    if want == got {
        return None;
    }
    Some(
        want.iter()
            .zip(got)
            .position(|(a, b)| a != b)
            .unwrap_or(want.len().min(got.len())),
    )
}

/// The frame from `from` whose payload holds stream byte `offset` (relative sequence number offset + 1).
pub fn frame_with_byte(trace: &Trace, from: Host, offset: usize) -> Option<usize> {
    let want = offset as u64 + 1;
    trace
        .frames
        .iter()
        .filter(|f| f.from == Some(from))
        .find(|f| {
            let (Some(seq), Some(t)) = (f.rel_seq, f.tcp()) else {
                return false;
            };
            let seq = seq as u64;
            t.payload_len > 0 && seq <= want && want < seq + t.payload_len as u64
        })
        .map(|f| f.number)
}

/// One stream compared: the violation names the first byte that differs and the frame that carried it.
pub fn stream_violation(
    trace: &Trace,
    clause: &str,
    summary: &str,
    sender: Host,
    field: &str,
    want: &[u8],
    got: &[u8],
) -> Option<Violation> {
    let at = first_difference(want, got)?;
    let mut v = Violation::new(clause, summary).field(field);
    if let Some(n) = frame_with_byte(trace, sender, at) {
        v = v.frame(n);
    }
    let show = |b: &[u8]| match b.get(at) {
        Some(c) => format!("byte {at} = {c:#04x}"),
        None => format!("the stream ends at byte {at}"),
    };
    Some(
        v.expected(format!("{} B; {}", want.len(), show(want)))
            .actual(format!("{} B; {}", got.len(), show(got))),
    )
}
