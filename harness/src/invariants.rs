//! Invariants checked on every TCP conversation of every case, whatever the property.
//!
//! - `tcp.seq.accounting` (Q19, RFC 9293 §3.4): per direction, the sequence space is used without holes
//!   (every byte between the ISN and the highest byte sent appears in some segment), no data follows the
//!   FIN, no ACK acknowledges a byte the other side has not sent yet, and ACKs from the capture host never
//!   go backwards.
//! - `tcp.window.respected` (Q28, RFC 9293 §3.8.6 / MUST-… "the sending TCP must not send beyond the right
//!   window edge"; RFC 7323 §2.3 for scaling): no payload byte beyond the highest right edge
//!   (ACK + window << scale) the receiver has advertised so far; zero-window probes are exempt.
//! - `tcp.window.bounded_by_buffer` (Q29, RFC 9293 §3.8.6): no advertised window exceeds the receive
//!   buffer the advertising host can have (the largest SO_RCVBUF seen for that host, or its namespace's
//!   `tcp_rmem` maximum).
//!
//! Tolerances, named: on a veth capture in host `a`, frames from `b` are seen in `a`'s receive order, which may
//! differ from `b`'s send order (docs/kernel-facts.md: veth reorders blocks now and then), so ordering rules apply
//! only to frames from the capture host; the hole rule and the ACK rule hold in any order (an ACK is
//! checked against everything the other side sent in the whole capture: a frame from `b` can even be tapped
//! after `a`'s ACK of it when the two CPUs process the veth backlog in parallel). The highest right
//! edge (not the latest) is used because a sender may rely on a window it was offered (RFC 9293 §3.8.6
//! discourages shrinking). Conversations whose SYNs were not captured are skipped by the window rules
//! (the scale is unknown).

use crate::frame::Host;
use crate::property::{PropertyInfo, Violation};
use crate::trace::{ConversationKind, Label, Trace};
use crate::wire::SeqNumber;

/// The invariants, for `list` and the coverage docs.
pub const INFO: [PropertyInfo; 4] = [
    PropertyInfo {
        id: "tcp.stream.integrity",
        suite: "invariant",
        title: "bytes read are exactly the bytes written, in order, once; all of them when both sides closed cleanly",
        clauses: &["RFC 9293 §3.4", "RFC 9293 §3.10.4"],
        questions: &["Q19"],
        subject: crate::property::Subject::Both,
        needs: crate::property::Needs {
            links: &[crate::property::LinkKind::Veth],
            kernel: &[],
            caps: &[],
            ethernet: false,
        },
    },
    PropertyInfo {
        id: "tcp.seq.accounting",
        suite: "invariant",
        title: "sequence space used without holes, nothing after FIN, no ACK beyond what was sent, ACKs never go back",
        clauses: &["RFC 9293 §3.4"],
        questions: &["Q19"],
        subject: crate::property::Subject::Both,
        needs: crate::property::Needs {
            links: &[crate::property::LinkKind::Veth],
            kernel: &[],
            caps: &[],
            ethernet: false,
        },
    },
    PropertyInfo {
        id: "tcp.window.respected",
        suite: "invariant",
        title: "no byte is sent beyond ack + scaled window (zero-window probes accounted for)",
        clauses: &["RFC 9293 §3.8.6", "RFC 7323 §2.3"],
        questions: &["Q28"],
        subject: crate::property::Subject::Both,
        needs: crate::property::Needs {
            links: &[crate::property::LinkKind::Veth],
            kernel: &[],
            caps: &[],
            ethernet: false,
        },
    },
    PropertyInfo {
        id: "tcp.window.bounded_by_buffer",
        suite: "invariant",
        title: "no advertised window exceeds what the receive buffer can hold",
        clauses: &["RFC 9293 §3.8.6", "RFC 7323 §2.2"],
        questions: &["Q29"],
        subject: crate::property::Subject::Both,
        needs: crate::property::Needs {
            links: &[crate::property::LinkKind::Veth],
            kernel: &[],
            caps: &[],
            ethernet: false,
        },
    },
];

/// What the invariants need to know beyond the trace.
#[derive(Debug, Clone, Copy)]
pub struct InvariantContext {
    /// The host whose capture point orders its own frames exactly (veth: `a`).
    pub capture_host: Option<Host>,
    /// Per host (index `Host as usize`): the largest receive buffer a socket of that host can have.
    pub rcvbuf_limit: [Option<u64>; 2],
}

/// Checks every TCP conversation of `trace`; returns (invariant id, violation) pairs.
pub fn check(trace: &Trace, ctx: &InvariantContext) -> Vec<(&'static str, Violation)> {
    let mut out = Vec::new();
    for c in trace
        .conversations
        .iter()
        .filter(|c| c.kind == ConversationKind::Tcp)
    {
        // Per direction: ranges of sequence space seen (relative), highest end, FIN position.
        let mut ranges: [Vec<(i64, i64, usize)>; 2] = [Vec::new(), Vec::new()];
        // The highest sequence number each direction sent, over the whole capture: the ACK rule holds in
        // any capture order (frames from b can be tapped after a's ACK of them, see the module doc).
        let mut max_end: [Option<SeqNumber>; 2] = [None; 2];
        for &i in &c.frames {
            let f = &trace.frames[i];
            if let (Some(d), Some(t)) = (f.direction, f.tcp()) {
                let end = t.seq + t.segment_len();
                if !t.flags.rst && max_end[d].is_none_or(|m| end > m) {
                    max_end[d] = Some(end);
                }
            }
        }
        let mut fin_at: [Option<(SeqNumber, usize)>; 2] = [None; 2];
        let mut last_ack: [Option<(SeqNumber, usize)>; 2] = [None; 2];
        let mut right_edge: [Option<SeqNumber>; 2] = [None; 2];
        let mut reset = false;
        for &i in &c.frames {
            let f = &trace.frames[i];
            let (Some(d), Some(t)) = (f.direction, f.tcp()) else {
                continue;
            };
            let o = 1 - d;
            let base = c.base[d].unwrap_or(t.seq);
            if t.flags.rst {
                reset = true;
                continue;
            }
            let len = t.segment_len();
            let start = t.seq;
            let end = t.seq + len;
            let payload_end = t.seq + t.payload_len as u32 + t.flags.syn as u32;
            let probe =
                f.labels.contains(&Label::ZeroWindowProbe) || f.labels.contains(&Label::KeepAlive);
            if len > 0 && !probe {
                ranges[d].push(((start - base) as i64, (end - base) as i64, f.number));
            }
            // No data after the FIN.
            if let Some((fin, fin_no)) = fin_at[d] {
                if t.payload_len > 0 && payload_end > fin && !probe {
                    out.push((
                        "tcp.seq.accounting",
                        Violation::new(
                            "RFC 9293 §3.4 (FIN is the last sequence number of a direction)",
                            "data sent after the FIN",
                        )
                        .frames([fin_no, f.number])
                        .field("seq")
                        .expected(format!(
                            "data ending at or before the FIN (rel {})",
                            fin - base
                        ))
                        .actual(format!("{}:{}", start - base, end - base)),
                    ));
                }
            }
            if t.flags.fin && fin_at[d].is_none() {
                fin_at[d] = Some((t.seq + t.payload_len as u32 + t.flags.syn as u32, f.number));
            }
            // The window rule: payload within the highest right edge the other side advertised.
            if c.isn_seen == [true, true] && !t.flags.syn && t.payload_len > 0 && !probe {
                if let Some(edge) = right_edge[o] {
                    let data_end = t.seq + t.payload_len as u32;
                    if data_end > edge {
                        out.push((
                            "tcp.window.respected",
                            Violation::new(
                                "RFC 9293 §3.8.6 (send only within the offered window)",
                                "a segment goes beyond the receiver's right window edge",
                            )
                            .frame(f.number)
                            .field("seq + len")
                            .expected(format!(
                                "<= {} (highest ack + scaled window advertised)",
                                edge - c.base[d].unwrap_or(edge)
                            ))
                            .actual(format!("{}", data_end - c.base[d].unwrap_or(data_end))),
                        ));
                    }
                }
            }
            if t.flags.ack {
                // No ACK beyond what the other side sent.
                if let Some(sent) = max_end[o] {
                    if t.ack > sent {
                        let ob = c.base[o].unwrap_or(sent);
                        out.push((
                            "tcp.seq.accounting",
                            Violation::new(
                                "RFC 9293 §3.4 (an ACK acknowledges only data sent)",
                                "an ACK acknowledges bytes the other side has not sent",
                            )
                            .frame(f.number)
                            .field("ack")
                            .expected(format!(
                                "<= {} (highest sequence number sent by the other side)",
                                sent - ob
                            ))
                            .actual(format!("{}", t.ack - ob)),
                        ));
                    }
                }
                // ACKs from the capture host never go backwards.
                if f.from == ctx.capture_host {
                    if let Some((prev, prev_no)) = last_ack[d] {
                        if t.ack < prev {
                            let ob = c.base[o].unwrap_or(prev);
                            out.push((
                                "tcp.seq.accounting",
                                Violation::new(
                                    "RFC 9293 §3.4 (SND.UNA only advances)",
                                    "an ACK number went backwards",
                                )
                                .frames([prev_no, f.number])
                                .field("ack")
                                .expected(format!(">= {}", prev - ob))
                                .actual(format!("{}", t.ack - ob)),
                            ));
                        }
                    }
                    last_ack[d] = Some((t.ack, f.number));
                }
                // Window: scaled per RFC 7323 §2.3 (never in a SYN).
                let shift = if t.flags.syn {
                    0
                } else {
                    c.window_scale[d].unwrap_or(0)
                };
                let window = (t.window as u64) << shift;
                let edge = t.ack + window.min(u32::MAX as u64 / 2) as u32;
                if right_edge[d].is_none_or(|e| edge > e) {
                    right_edge[d] = Some(edge);
                }
                if let Some(limit) = f.from.and_then(|h| ctx.rcvbuf_limit[h as usize]) {
                    if window > limit {
                        out.push((
                            "tcp.window.bounded_by_buffer",
                            Violation::new(
                                "RFC 9293 §3.8.6 (the window is the buffer space available)",
                                "advertised window exceeds the receive buffer",
                            )
                            .frame(f.number)
                            .field("window (scaled)")
                            .expected(format!("<= {limit} bytes"))
                            .actual(format!("{window} bytes ({} << {shift})", t.window)),
                        ));
                    }
                }
            }
        }
        // No holes in the sequence space of either direction (any capture order).
        if !reset {
            for dir_ranges in &ranges {
                let mut r = dir_ranges.clone();
                r.sort();
                let mut covered: Option<i64> = None;
                for (s, e, no) in r {
                    if let Some(cov) = covered {
                        if s > cov {
                            out.push((
                                "tcp.seq.accounting",
                                Violation::new(
                                    "RFC 9293 §3.4 (each byte has the next sequence number)",
                                    "bytes of the sequence space were never sent",
                                )
                                .frame(no)
                                .field("seq")
                                .expected(format!("a segment covering {cov}"))
                                .actual(format!("the next segment starts at {s}")),
                            ));
                            break;
                        }
                    }
                    covered = Some(covered.map_or(e, |c| c.max(e)));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::frame::{Frame, LinkType};
    use crate::trace::HostAddrs;
    use crate::wire::testutil::tcp_v4;
    use crate::wire::{TcpFlags, TcpOption, TcpRepr};

    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    fn seg(
        from_a: bool,
        flags: &str,
        seq: u32,
        ack: u32,
        win: u16,
        len: usize,
        wscale: Option<u8>,
    ) -> Frame {
        let repr = TcpRepr {
            src_port: if from_a { 40000 } else { 5000 },
            dst_port: if from_a { 5000 } else { 40000 },
            seq: SeqNumber(seq),
            ack: SeqNumber(ack),
            flags: TcpFlags {
                syn: flags.contains('S'),
                fin: flags.contains('F'),
                ack: flags.contains('.'),
                ..Default::default()
            },
            window: win,
            urgent: 0,
            options: wscale
                .map(|w| vec![TcpOption::WindowScale(w)])
                .unwrap_or_default(),
            payload_len: len,
        };
        let data = if from_a {
            tcp_v4(A, B, &repr, &vec![0; len], true)
        } else {
            tcp_v4(B, A, &repr, &vec![0; len], false)
        };
        Frame {
            ts_ns: 0,
            origin: Some(if from_a { Host::A } else { Host::B }),
            link: LinkType::Ethernet,
            data,
        }
    }

    fn ids(frames: &[Frame], limit: Option<u64>) -> Vec<&'static str> {
        let hosts = HostAddrs::new(vec![(IpAddr::V4(A), Host::A), (IpAddr::V4(B), Host::B)]);
        let trace = Trace::build(frames, &hosts, Some(0));
        let ctx = InvariantContext {
            capture_host: Some(Host::A),
            rcvbuf_limit: [limit, limit],
        };
        check(&trace, &ctx).into_iter().map(|(id, _)| id).collect()
    }

    /// Handshake with window scale 2 both ways; b advertises 1000 << 2 = 4000 bytes.
    fn handshake() -> Vec<Frame> {
        vec![
            seg(true, "S", 0, 0, 64240, 0, Some(2)),
            seg(false, "S.", 100, 1, 1000, 0, Some(2)),
            seg(true, ".", 1, 101, 1000, 0, None),
            // The SYN-ACK's window is never scaled (RFC 7323 §2.2): this update opens 1000 << 2.
            seg(false, ".", 101, 1, 1000, 0, None),
        ]
    }

    #[test]
    fn a_clean_exchange_holds_every_invariant() {
        let mut f = handshake();
        f.push(seg(true, ".", 1, 101, 1000, 4000, None));
        f.push(seg(false, ".", 101, 4001, 1000, 0, None));
        f.push(seg(true, "F.", 4001, 101, 1000, 0, None));
        f.push(seg(false, "F.", 101, 4002, 1000, 0, None));
        f.push(seg(true, ".", 4002, 102, 1000, 0, None));
        assert_eq!(ids(&f, Some(1 << 20)), Vec::<&str>::new());
    }

    #[test]
    fn data_beyond_the_scaled_window_is_found() {
        let mut f = handshake();
        f.push(seg(true, ".", 1, 101, 1000, 4001, None));
        assert_eq!(ids(&f, None), ["tcp.window.respected"]);
    }

    #[test]
    fn holes_acks_beyond_data_and_data_after_fin_are_found() {
        let mut hole = handshake();
        hole.push(seg(true, ".", 1, 101, 1000, 100, None));
        hole.push(seg(true, ".", 201, 101, 1000, 100, None));
        assert_eq!(ids(&hole, None), ["tcp.seq.accounting"]);

        let mut ack = handshake();
        ack.push(seg(false, ".", 101, 50, 1000, 0, None)); // acks 49 bytes never sent
        assert_eq!(ids(&ack, None), ["tcp.seq.accounting"]);

        let mut after_fin = handshake();
        after_fin.push(seg(true, "F.", 1, 101, 1000, 0, None));
        after_fin.push(seg(true, ".", 2, 101, 1000, 10, None));
        assert!(ids(&after_fin, None).contains(&"tcp.seq.accounting"));
    }

    #[test]
    fn a_window_larger_than_the_buffer_is_found() {
        let mut f = handshake();
        f.push(seg(false, ".", 101, 1, 60000, 0, None)); // 60000 << 2 = 240000 bytes
        assert_eq!(ids(&f, Some(200_000)), ["tcp.window.bounded_by_buffer"]);
        assert_eq!(ids(&f, Some(300_000)), Vec::<&str>::new());
    }
}
