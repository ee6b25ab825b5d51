//! The relay link: a TUN device `nc0` in each host's namespace and a userspace forwarder in the harness.
//!
//! Every IP packet one host sends leaves through its packet end, is read by the forwarder thread of that
//! direction, recorded (exact capture, ns timestamp, origin), judged by the direction's [`Impairment`] with a
//! random source seeded from (seed, direction) — the same seed and the same packets give the same decisions
//! ([`crate::link::impairment`]) — and written into the other host's packet end when its time comes. Nothing is
//! dropped that the impairment did not decide to drop: the forwarder's queue is unbounded in packets (memory,
//! not a tail drop), the TUN devices get a txqueuelen of 10,000 (docs/kernel-facts.md: 500 dropped packets at
//! ~376 Mbit/s), and every write error or TUN tx drop is counted as an unintended drop, which makes the case
//! `invalid`.
//!
//! The forwarder knows packet ends ([`PacketEnd`]), not TUN devices: [`Relay::build_to_end`] puts the relay
//! between host a's TUN device and any packet end for b (a socketpair end, a packet socket), and
//! [`start_forwarders`] between any two.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::capture::Capture;
use crate::error::{HarnessError, Result};
use crate::frame::{Frame, Host, LinkType};
use crate::lab::hosts::Hosts;
use crate::link::endpoint::{PacketEnd, Received, MAX_PACKET};
use crate::link::impairment::{decide, RuleState};
pub use crate::link::impairment::{Impairment, RelaySpec, Rule};
use crate::link::tun::{configure_tap_host, configure_tun_host};
use crate::link::{BuiltLink, LinkOptions};
pub use crate::record::{LinkEvent, LinkEventKind, Recorder};

/// A built relay link: the forwarders and each host's interface (0: b's end is not an interface netconform
/// set up in b).
pub struct Relay {
    forwarders: Forwarders,
    ifindex: [u32; 2],
    round_trip: Duration,
}

impl Relay {
    /// Builds the relay link: a TUN device in each host (set up at the same time) and a forwarder per
    /// direction.
    pub fn build(hosts: &Hosts, options: &LinkOptions, spec: &RelaySpec) -> Result<Relay> {
        let mtu = options.mtu;
        let setup_b = hosts
            .host(Host::B)
            .submit(move || configure_tun_host(Host::B, mtu));
        let (tun_a, ia) = hosts
            .host(Host::A)
            .run(move || configure_tun_host(Host::A, mtu))??;
        let (tun_b, ib) = setup_b.wait()??;
        Ok(Relay {
            forwarders: start_forwarders(tun_a, tun_b, spec)?,
            ifindex: [ia, ib],
            round_trip: spec.round_trip(),
        })
    }

    /// Builds a relay between a TUN device in host a and `b_end`, a packet end for b that whoever built b
    /// handed over (one end of `socketpair(AF_UNIX, SOCK_SEQPACKET)`, a packet socket bound to a device);
    /// nothing is set up in b's namespace. Same impairments and recording as [`Relay::build`].
    pub fn build_to_end(
        hosts: &Hosts,
        options: &LinkOptions,
        b_end: PacketEnd,
        spec: &RelaySpec,
    ) -> Result<Relay> {
        let mtu = options.mtu;
        // Ethernet frames from b's end (a TAP) go to a TAP in a, so a's kernel speaks ARP/ND with b.
        let a_tap = b_end.link() == LinkType::Ethernet;
        let (tun_a, ia) = hosts.host(Host::A).run(move || {
            if a_tap {
                configure_tap_host(Host::A, mtu)
            } else {
                configure_tun_host(Host::A, mtu)
            }
        })??;
        Ok(Relay {
            forwarders: start_forwarders(tun_a, b_end, spec)?,
            ifindex: [ia, 0],
            round_trip: spec.round_trip(),
        })
    }

    /// What the forwarders record into.
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.forwarders.recorder
    }
}

impl BuiltLink for Relay {
    fn start_capture(&self, _hosts: &Hosts) -> Result<Capture> {
        Ok(Capture::from_relay(self.forwarders.recorder.clone()))
    }

    fn ifindex(&self, host: Host) -> u32 {
        self.ifindex[host as usize]
    }

    fn mac(&self, _host: Host) -> [u8; 6] {
        [0; 6]
    }

    fn round_trip(&self) -> Duration {
        self.round_trip
    }

    fn peer(&self) -> Option<&crate::link::endpoint::Peer> {
        None
    }

    fn played_host(&self) -> Option<Host> {
        None
    }
}

/// The forwarder threads of a relay, one per direction, and what they record into; they stop when this is
/// dropped (within one poll interval, 20 ms) and close their packet ends.
pub struct Forwarders {
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
}

impl Forwarders {
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }
}

impl Drop for Forwarders {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Starts a forwarder per direction between `a_end` (host a's packet end) and `b_end` (host b's), with the
/// impairments and seed of `spec`.
pub fn start_forwarders(
    a_end: PacketEnd,
    b_end: PacketEnd,
    spec: &RelaySpec,
) -> Result<Forwarders> {
    let (a_end, b_end) = (Arc::new(a_end), Arc::new(b_end));
    let forwarders = Forwarders {
        recorder: Arc::new(Recorder::default()),
        stop: Arc::new(AtomicBool::new(false)),
    };
    for (origin, input, output, imp) in [
        (Host::A, a_end.clone(), b_end.clone(), spec.a_to_b.clone()),
        (Host::B, b_end, a_end, spec.b_to_a.clone()),
    ] {
        let (recorder, stop, seed) = (
            forwarders.recorder.clone(),
            forwarders.stop.clone(),
            spec.seed,
        );
        std::thread::Builder::new()
            .name(format!("relay-{}", origin.name()))
            .spawn(move || forward(origin, input, output, imp, seed, recorder, stop))
            .map_err(|e| HarnessError::lab("spawn relay thread", e))?;
    }
    Ok(forwarders)
}

/// Forwards packets from `input` (the packet end of `origin`) to `output` until `stop`, recording and
/// impairing them. An input whose other side closed is no longer read; what is queued is still delivered.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    origin: Host,
    input: Arc<PacketEnd>,
    output: Arc<PacketEnd>,
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
    let mut buf = vec![0u8; MAX_PACKET];
    let mut input_closed = false;
    let link = input.link();
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        let timeout_ms = match queue.peek() {
            Some(Reverse((due, _, _))) => {
                due.saturating_duration_since(now).as_millis().min(20) as i32
            }
            None => 20,
        };
        if input_closed {
            std::thread::sleep(Duration::from_millis(timeout_ms as u64));
        } else {
            input.wait_readable(timeout_ms);
        }
        while !input_closed {
            let n = match input.try_read(&mut buf) {
                Received::Packet(n) => n,
                Received::Nothing => break,
                Received::Closed => {
                    input_closed = true;
                    break;
                }
            };
            let pkt = buf[..n].to_vec();
            let (delays, events) = decide(&imp, &mut rng, &mut rules, ip_part(link, &pkt));
            recorder.record(
                Frame {
                    ts_ns: crate::record::realtime_ns(),
                    origin: Some(origin),
                    link,
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
            if let Err(e) = output.write(&pkt) {
                // A SUT's device with no process attached (a stdio SUT between or after its runs) takes
                // nothing: that is a host that is down, not a link losing packets.
                if !output.no_reader(&e) {
                    recorder.unintended_drops.fetch_add(1, Ordering::AcqRel);
                }
            }
        }
    }
}

/// The IP packet inside `pkt`: the whole of it on an IP end, the payload of an IPv4/IPv6 Ethernet frame on an
/// Ethernet end (an ARP frame or other EtherType is judged whole: only loss, delay and duplication apply).
fn ip_part(link: LinkType, pkt: &[u8]) -> &[u8] {
    match link {
        LinkType::RawIp => pkt,
        LinkType::Ethernet => match pkt.get(12..14) {
            Some([0x08, 0x00]) | Some([0x86, 0xdd]) => &pkt[14..],
            _ => pkt,
        },
    }
}
