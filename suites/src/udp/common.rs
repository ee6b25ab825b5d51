//! Helpers shared by the UDP properties: payload sizes and contents, CPU pinning, socket steps, the datagrams
//! seen on the wire.

use std::net::SocketAddr;
use std::time::Duration;

use harness::frame::Host;
use harness::property::{CaseEnv, CaseRng, Findings, Violation};
use harness::sock::{Errno, Family, Socket};
use harness::trace::Trace;
use harness::wire::reassembly::{udp_datagrams, Incomplete, UdpDatagram};
use harness::HarnessError;
use rand::Rng;

/// MTU of the lab link (veth default).
pub(super) const LINK_MTU: usize = 1500;

/// Largest UDP payload: IPv4 total length 65535 − 20 (IP) − 8 (UDP) = 65507; IPv6 payload length 65535 − 8
/// (UDP) = 65527 (RFC 8200 §3; jumbograms left out).
pub fn max_payload(family: Family) -> usize {
    match family {
        Family::Ipv4 => 65_535 - 20 - 8,
        Family::Ipv6 => 65_535 - 8,
    }
}

/// Largest payload that fits one frame on the lab link: MTU − IP header (20 / 40) − UDP header (8).
pub fn unfragmented_max(family: Family) -> usize {
    match family {
        Family::Ipv4 => LINK_MTU - 20 - 8,
        Family::Ipv6 => LINK_MTU - 40 - 8,
    }
}

/// A datagram size: tiny, ordinary, around the fragmentation boundary, fragmenting, up to the maximum.
pub(super) fn gen_size(rng: &mut CaseRng, family: Family) -> usize {
    let unfrag = unfragmented_max(family);
    let max = max_payload(family);
    match rng.gen_range(0..100) {
        0..=9 => rng.gen_range(0..=8),
        10..=49 => rng.gen_range(0..=unfrag),
        50..=64 => rng.gen_range(unfrag - 2..=unfrag + 2),
        65..=89 => rng.gen_range(unfrag + 1..=16_000),
        90..=94 => rng.gen_range(16_000..=max),
        _ => max,
    }
}

/// The payload of datagram `index`: its first byte is the index, so a received datagram names itself.
pub fn payload_of(index: usize, size: usize) -> Vec<u8> {
    (0..size)
        .map(|j| {
            if j == 0 {
                index as u8
            } else {
                (j as u8).wrapping_mul(7) ^ ((j >> 8) as u8) ^ (index as u8).wrapping_mul(37)
            }
        })
        .collect()
}

/// Which sent payload `data` is, if any.
pub(super) fn which(payloads: &[Vec<u8>], data: &[u8]) -> Option<usize> {
    payloads.iter().position(|p| p.as_slice() == data)
}

/// Receive buffer asked for (SO_RCVBUFFORCE, root) by receivers that must not drop for lack of room: eight
/// maximal datagrams, each charged ~100 KiB of truesize once reassembled from 45 fragments.
pub(super) const ROOMY_RCVBUF: i32 = 8 << 20;

/// How long a receiver waits for a datagram that was already sent (veth delivers in microseconds; the bound
/// only keeps a lost datagram from hanging the case).
pub(super) const RECV_WAIT: Duration = Duration::from_millis(1000);

/// Pins the calling (host) thread to the CPU it is running on (see the module doc: veth order).
pub(super) fn pin_to_current_cpu() {
    if let Some(cpu) = harness::cpu::current_cpu() {
        // Best effort, as before: an unpinned sender only loses the ordering guarantee.
        let _ = harness::cpu::pin_current_thread_to_cpu(cpu);
    }
}

pub(super) fn sock_step(what: &'static str) -> impl Fn(Errno) -> HarnessError {
    move |e| harness::sock::socket_step(what, e)
}

/// Every UDP datagram on the wire, whole or reassembled, with the host it left.
pub(super) fn wire_datagrams(
    trace: &Trace,
) -> Vec<(Option<Host>, Result<UdpDatagram, Incomplete>)> {
    let from: std::collections::HashMap<usize, Option<Host>> =
        trace.frames.iter().map(|f| (f.number, f.from)).collect();
    udp_datagrams(
        trace
            .frames
            .iter()
            .filter_map(|f| Some((f.number, f.packet.as_ref().ok()?))),
    )
    .into_iter()
    .map(|d| {
        let first = match &d {
            Ok(d) => d.frames[0],
            Err(i) => i.frames[0],
        };
        (from.get(&first).copied().flatten(), d)
    })
    .collect()
}

/// Adds a note unless the case already has it (notes are counted per case in the report).
pub(super) fn note_once(findings: &mut Findings, note: &str) {
    if !findings.notes.iter().any(|n| n == note) {
        findings.note(note);
    }
}

pub(super) fn describe_sizes(sizes: &[usize]) -> String {
    let v: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
    format!("[{}]", v.join(", "))
}

pub(super) fn outcome<T: std::fmt::Debug>(r: &Result<T, Errno>) -> String {
    match r {
        Ok(v) => format!("{v:?}"),
        Err(e) => e.name(),
    }
}

// ---------------------------------------------------------------------------------------------------------
// udp.recv.boundaries and udp.recv.truncate (Q6)
// ---------------------------------------------------------------------------------------------------------

/// A receiving socket on b with room for every datagram of a case, and a pinned sending socket on a.
pub(super) fn datagram_pair(
    env: &CaseEnv,
    family: Family,
    port: u16,
) -> Result<(Socket, Socket, SocketAddr, SocketAddr), HarnessError> {
    let b = SocketAddr::new(env.lab.addr(Host::B, family), port);
    let receiver = env
        .lab
        .host(Host::B)
        .run(move || -> Result<Socket, HarnessError> {
            let s = Socket::udp(family)?;
            s.set_rcvbuf_force(ROOMY_RCVBUF)
                .map_err(sock_step("SO_RCVBUFFORCE"))?;
            s.bind(b).map_err(sock_step("bind"))?;
            Ok(s)
        })??;
    let a_ip = env.lab.addr(Host::A, family);
    let (sender, a) = env
        .lab
        .host(Host::A)
        .run(move || -> Result<_, HarnessError> {
            pin_to_current_cpu();
            let s = Socket::udp(family)?;
            s.bind(SocketAddr::new(a_ip, 0))
                .map_err(sock_step("bind"))?;
            let a = s.local_addr().map_err(sock_step("getsockname"))?;
            Ok((s, a))
        })??;
    Ok((receiver, sender, a, b))
}

/// Sends `payload` from the socket on a's thread and hands the socket back.
pub(super) fn send_on_a(
    env: &CaseEnv,
    sender: Socket,
    payload: Vec<u8>,
    to: SocketAddr,
) -> Result<(Socket, Result<usize, Errno>), HarnessError> {
    env.lab
        .host(Host::A)
        .run(move || -> Result<_, HarnessError> {
            let r = sender.send_to(&payload, to, 0)?;
            Ok((sender, r))
        })?
}

/// Frame numbers of our datagrams on the wire (a → b, these ports), in order.
pub(super) fn our_wire_frames(trace: &Trace, a: SocketAddr, b_port: u16) -> Vec<Vec<usize>> {
    wire_datagrams(trace)
        .into_iter()
        .filter_map(|(from, d)| match d {
            Ok(d)
                if from == Some(Host::A)
                    && d.repr.src_port == a.port()
                    && d.repr.dst_port == b_port =>
            {
                Some(d.frames)
            }
            _ => None,
        })
        .collect()
}

/// Every send of a case sent its whole datagram (POSIX send); a failed send names the frames of that
/// datagram on the wire (`wire` from [`our_wire_frames`]).
pub(super) fn check_sends(
    findings: &mut Findings,
    sizes: impl IntoIterator<Item = usize>,
    sends: &[Result<usize, Errno>],
    wire: &[Vec<usize>],
) {
    for (i, (size, sent)) in sizes.into_iter().zip(sends).enumerate() {
        findings.check(*sent == Ok(size), || {
            Violation::new("POSIX send", format!("send of datagram {} failed", i + 1))
                .frames(wire.get(i).cloned().unwrap_or_default())
                .field("sendto()")
                .expected(format!("{size} bytes"))
                .actual(outcome(sent))
        });
    }
}
