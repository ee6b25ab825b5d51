//! What the relay does to each packet, decided from a seed: per-direction [`Impairment`]s (delay, jitter,
//! loss, reordering, duplication, rate, predicate [`Rule`]s) and the [`RelaySpec`] that names them. Pure: the
//! same seed and the same packets give the same decisions ([`decide`]), with no device or thread involved;
//! [`crate::link::relay`] applies them.

use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::record::LinkEventKind;
use crate::wire::{parse_ip, Network, Transport};

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
    /// Deliver the `n`-th TCP segment carrying payload in this direction (1-based) `ms` late, so the segments
    /// sent after it overtake it (recorded as reordered).
    HoldNthData { n: u32, ms: u32 },
    /// Deliver every TCP segment whose payload holds relative sequence number `at` twice, the copy `ms` after
    /// the original (recorded as duplicated).
    DuplicateSeq { at: u32, ms: u32 },
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

impl RelaySpec {
    /// The longest round trip the relay adds to the hosts' own: both directions' delay plus jitter (rules and
    /// reordering hold single packets back and are not counted).
    pub fn round_trip(&self) -> Duration {
        Duration::from_micros(
            self.a_to_b.delay_us
                + self.a_to_b.jitter_us
                + self.b_to_a.delay_us
                + self.b_to_a.jitter_us,
        )
    }

    /// The relay of one case: its seed derived from the run's relay seed and the case seed (splitmix64 of
    /// their mix), so every case of a `--link relay` run gets its own loss pattern and its case file replays
    /// exactly that pattern.
    pub fn for_case(&self, case_seed: u64) -> RelaySpec {
        let mut z = self.seed ^ case_seed.rotate_left(17) ^ 0x005e_ed0f_4e1a_u64;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        RelaySpec {
            seed: z ^ (z >> 31),
            ..self.clone()
        }
    }
}

/// Per-direction state of the rules.
#[derive(Default)]
pub struct RuleState {
    data_segments: u32,
    udp_datagrams: u32,
    fin_seen: bool,
    base_seq: Option<u32>,
}

/// The decision for one packet: delivery delays (empty: dropped) and what to record.
pub fn decide(
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
    let mut rule_hold: Option<Duration> = None;
    let mut rule_copy: Option<Duration> = None;
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
                        Rule::HoldNthData { n, ms } => {
                            if repr.payload_len > 0 && st.data_segments == *n {
                                rule_hold = Some(Duration::from_millis(*ms as u64));
                            }
                        }
                        Rule::DuplicateSeq { at, ms } => {
                            let len = repr.payload_len as u32;
                            if len > 0 && at.wrapping_sub(rel) < len {
                                rule_copy = Some(Duration::from_millis(*ms as u64));
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
    if let Some(hold) = rule_hold {
        delay += hold;
        events.push(LinkEventKind::Reordered);
    } else if r_reorder < imp.reorder_ppm {
        // Held back by one base delay plus 1 ms, so packets sent just after it overtake it.
        delay += base + Duration::from_millis(1);
        events.push(LinkEventKind::Reordered);
    }
    let mut out = vec![delay];
    if let Some(copy) = rule_copy {
        out.push(delay + copy);
        events.push(LinkEventKind::Duplicated);
    } else if r_dup < imp.duplicate_ppm {
        out.push(delay + Duration::from_micros(100));
        events.push(LinkEventKind::Duplicated);
    }
    (out, events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

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

    /// An IPv4 TCP segment of this direction: relative sequence `seq` (the SYN at 0), `len` bytes of payload.
    fn segment(seq: u32, len: usize, syn: bool) -> Vec<u8> {
        let repr = crate::wire::TcpRepr {
            src_port: 1000,
            dst_port: 2000,
            seq: crate::wire::SeqNumber(1000u32.wrapping_add(seq)),
            ack: crate::wire::SeqNumber(0),
            flags: crate::wire::TcpFlags {
                syn,
                ack: !syn,
                ..Default::default()
            },
            window: 1000,
            urgent: 0,
            options: Vec::new(),
            payload_len: len,
        };
        let (src, dst) = ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap());
        let tcp = repr.emit(src, dst, &vec![b'x'; len]);
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
        ];
        let total = (20 + tcp.len()) as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&tcp);
        ip
    }

    #[test]
    fn hold_and_duplicate_rules_pick_their_segments() {
        use rand::SeedableRng;
        let imp = Impairment {
            rules: vec![
                Rule::HoldNthData { n: 2, ms: 300 },
                Rule::DuplicateSeq { at: 2500, ms: 80 },
            ],
            ..Default::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut st = RuleState::default();
        let mut go = |p: Vec<u8>| decide(&imp, &mut rng, &mut st, &p);
        // The SYN, then data segments [1, 1001), [1001, 2001), [2001, 3001), [3001, 4001).
        assert_eq!(go(segment(0, 0, true)), (vec![Duration::ZERO], vec![]));
        assert_eq!(go(segment(1, 1000, false)), (vec![Duration::ZERO], vec![]));
        assert_eq!(
            go(segment(1001, 1000, false)),
            (
                vec![Duration::from_millis(300)],
                vec![LinkEventKind::Reordered]
            )
        );
        assert_eq!(
            go(segment(2001, 1000, false)),
            (
                vec![Duration::ZERO, Duration::from_millis(80)],
                vec![LinkEventKind::Duplicated]
            )
        );
        assert_eq!(
            go(segment(3001, 1000, false)),
            (vec![Duration::ZERO], vec![])
        );
        // A pure ACK is neither held nor copied; a retransmission of the copied byte is copied again, and
        // the 6th data segment is not held.
        assert_eq!(go(segment(4001, 0, false)), (vec![Duration::ZERO], vec![]));
        assert_eq!(
            go(segment(2401, 200, false)).1,
            vec![LinkEventKind::Duplicated]
        );
    }
}
