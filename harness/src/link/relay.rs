//! The relay link: a TUN device `nc0` in each host's namespace and a userspace forwarder in the harness.
//!
//! Every IP packet one host sends leaves through its TUN device, is read by the forwarder thread of that
//! direction, recorded (exact capture, ns timestamp, origin), judged by the direction's [`Impairment`] with a
//! random source seeded from (seed, direction) — the same seed and the same packets give the same decisions —
//! and written into the other host's TUN device when its time comes. Nothing is dropped that the impairment
//! did not decide to drop: the forwarder's queue is unbounded in packets (memory, not a tail drop), the TUN
//! devices get a txqueuelen of 10,000 (docs/kernel-facts.md: 500 dropped packets at ~376 Mbit/s), and every write
//! error or TUN tx drop is counted as an unintended drop, which makes the case `invalid`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::frame::{Frame, Host, LinkType};
pub use crate::record::{LinkEvent, LinkEventKind, Recorder};
use crate::wire::{parse_ip, Network, Transport};

/// TUNSETIFF = _IOW('T', 202, int) (include/uapi/linux/if_tun.h).
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: i16 = 0x0001;
const IFF_NO_PI: i16 = 0x1000;
/// SIOCSIFTXQLEN (include/uapi/linux/sockios.h).
const SIOCSIFTXQLEN: libc::c_ulong = 0x8943;
/// TUN transmit queue (kernel → forwarder), sized so a burst never overflows it.
pub const TUN_TXQUEUELEN: i32 = 10_000;

/// A predicate rule applied before the random impairments (relative sequence numbers are relative to the
/// direction's first SYN, or its first segment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Rule {
    /// Drop the `n`-th TCP segment carrying payload in this direction (1-based).
    DropNthData { n: u32 },
    /// Delay the first FIN of this direction by `ms`.
    DelayFirstFin { ms: u32 },
    /// Drop every TCP segment whose relative sequence number is in [from, to).
    DropSeqRange { from: u32, to: u32 },
    /// Drop the `n`-th UDP datagram of this direction (1-based).
    DropNthUdp { n: u32 },
}

/// What the relay does to one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Impairment {
    #[serde(default)]
    pub delay_us: u64,
    #[serde(default)]
    pub jitter_us: u64,
    /// Loss probability in parts per million.
    #[serde(default)]
    pub loss_ppm: u32,
    #[serde(default)]
    pub reorder_ppm: u32,
    #[serde(default)]
    pub duplicate_ppm: u32,
    /// Rate limit in bits per second (None: no limit).
    #[serde(default)]
    pub rate_bps: Option<u64>,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// The relay of a lab: one impairment per direction and the seed of its decisions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelaySpec {
    #[serde(default)]
    pub a_to_b: Impairment,
    #[serde(default)]
    pub b_to_a: Impairment,
    #[serde(default)]
    pub seed: u64,
}

/// Opens TUN device `name` in the calling thread's namespace, non-blocking, with a long transmit queue.
pub fn open_tun(name: &str) -> std::io::Result<OwnedFd> {
    let path = c"/dev/net/tun";
    // SAFETY: valid C string.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    #[repr(C)]
    struct IfReqFlags {
        name: [libc::c_char; libc::IFNAMSIZ],
        value: i32,
        _pad: [u8; 20],
    }
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        value: (IFF_TUN | IFF_NO_PI) as i32,
        _pad: [0; 20],
    };
    for (d, s) in req
        .name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    // SAFETY: req is a valid ifreq-sized buffer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // txqueuelen through an ordinary socket of this namespace.
    // SAFETY: plain syscall.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    req.value = TUN_TXQUEUELEN;
    // SAFETY: as above.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCSIFTXQLEN as _, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// Per-direction state of the rules.
#[derive(Default)]
struct RuleState {
    data_segments: u32,
    udp_datagrams: u32,
    fin_seen: bool,
    base_seq: Option<u32>,
}

/// The decision for one packet: delivery delays (empty: dropped) and what to record.
fn decide(
    imp: &Impairment,
    rng: &mut ChaCha8Rng,
    st: &mut RuleState,
    pkt: &[u8],
) -> (Vec<Duration>, Vec<LinkEventKind>) {
    let base = Duration::from_micros(imp.delay_us);
    // Draw every random number for every packet, so one decision never shifts the next ones.
    let (r_loss, r_dup, r_reorder, r_jitter) = (
        rng.gen_range(0..1_000_000),
        rng.gen_range(0..1_000_000),
        rng.gen_range(0..1_000_000),
        rng.gen::<f64>(),
    );
    let jitter = Duration::from_micros((imp.jitter_us as f64 * r_jitter) as u64);
    let mut delay = base + jitter;
    let mut rule_drop = false;
    if let Ok(net) = parse_ip(pkt) {
        let transport = match &net {
            Network::Ipv4 { transport, .. } | Network::Ipv6 { transport, .. } => Some(transport),
            _ => None,
        };
        match transport {
            Some(Transport::Tcp { repr, .. }) => {
                if repr.flags.syn && st.base_seq.is_none() {
                    st.base_seq = Some(repr.seq.0);
                }
                let base_seq = *st.base_seq.get_or_insert(repr.seq.0);
                let rel = repr.seq.0.wrapping_sub(base_seq);
                if repr.payload_len > 0 {
                    st.data_segments += 1;
                }
                for rule in &imp.rules {
                    match rule {
                        Rule::DropNthData { n } => {
                            rule_drop |= repr.payload_len > 0 && st.data_segments == *n
                        }
                        Rule::DropSeqRange { from, to } => {
                            rule_drop |= repr.payload_len > 0 && rel >= *from && rel < *to
                        }
                        Rule::DelayFirstFin { ms } => {
                            if repr.flags.fin && !st.fin_seen {
                                delay += Duration::from_millis(*ms as u64);
                            }
                        }
                        Rule::DropNthUdp { .. } => {}
                    }
                }
                if repr.flags.fin {
                    st.fin_seen = true;
                }
            }
            Some(Transport::Udp { .. }) => {
                st.udp_datagrams += 1;
                for rule in &imp.rules {
                    if let Rule::DropNthUdp { n } = rule {
                        rule_drop |= st.udp_datagrams == *n;
                    }
                }
            }
            _ => {}
        }
    }
    if rule_drop || r_loss < imp.loss_ppm {
        return (Vec::new(), vec![LinkEventKind::Dropped]);
    }
    let mut events = Vec::new();
    if r_reorder < imp.reorder_ppm {
        // Held back by one base delay plus 1 ms, so packets sent just after it overtake it.
        delay += base + Duration::from_millis(1);
        events.push(LinkEventKind::Reordered);
    }
    let mut out = vec![delay];
    if r_dup < imp.duplicate_ppm {
        out.push(delay + Duration::from_micros(100));
        events.push(LinkEventKind::Duplicated);
    }
    (out, events)
}

/// Forwards packets from `input` to `output` until `stop`, recording and impairing them.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    origin: Host,
    input: Arc<OwnedFd>,
    output: Arc<OwnedFd>,
    imp: Impairment,
    seed: u64,
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ if origin == Host::A { 0xa } else { 0xb });
    let mut rules = RuleState::default();
    let mut queue: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>> = BinaryHeap::new();
    let mut order = 0u64;
    let mut next_free = Instant::now();
    let mut buf = vec![0u8; 65_600];
    let in_fd: RawFd = input.as_raw_fd();
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        let timeout_ms = match queue.peek() {
            Some(Reverse((due, _, _))) => {
                due.saturating_duration_since(now).as_millis().min(20) as i32
            }
            None => 20,
        };
        let mut pfd = libc::pollfd {
            fd: in_fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        loop {
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::read(in_fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
            if n <= 0 {
                break;
            }
            let pkt = buf[..n as usize].to_vec();
            let (delays, events) = decide(&imp, &mut rng, &mut rules, &pkt);
            recorder.record(
                Frame {
                    ts_ns: crate::record::realtime_ns(),
                    origin: Some(origin),
                    link: LinkType::RawIp,
                    data: pkt.clone(),
                },
                &events,
            );
            let now = Instant::now();
            // Rate limit: serialisation time on a link of rate_bps, one packet after the other.
            let departs = match imp.rate_bps {
                Some(rate) if rate > 0 => {
                    let start = next_free.max(now);
                    next_free =
                        start + Duration::from_nanos(pkt.len() as u64 * 8 * 1_000_000_000 / rate);
                    next_free
                }
                _ => now,
            };
            for d in delays {
                order += 1;
                queue.push(Reverse((departs + d, order, pkt.clone())));
            }
        }
        let now = Instant::now();
        while let Some(Reverse((due, _, _))) = queue.peek() {
            if *due > now {
                break;
            }
            let Some(Reverse((_, _, pkt))) = queue.pop() else {
                break;
            };
            // SAFETY: pkt is valid for its length.
            let w = unsafe {
                libc::write(
                    output.as_raw_fd(),
                    pkt.as_ptr() as *const libc::c_void,
                    pkt.len(),
                )
            };
            if w != pkt.len() as isize {
                recorder.unintended_drops.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_decisions() {
        let imp = Impairment {
            loss_ppm: 300_000,
            duplicate_ppm: 100_000,
            reorder_ppm: 100_000,
            jitter_us: 500,
            ..Default::default()
        };
        let pkt = vec![0x45u8; 40];
        let run = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut st = RuleState::default();
            (0..500)
                .map(|_| decide(&imp, &mut rng, &mut st, &pkt))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let dropped = run(7).iter().filter(|(d, _)| d.is_empty()).count();
        assert!((100..200).contains(&dropped), "30 % of 500: {dropped}");
    }
}
