//! Expert labels of TCP segments, computed per conversation after the relative numbers are known.
//!
//! Per direction we track SND.NXT (highest sequence end sent) and, from the other direction, the last
//! acknowledgement (SND.UNA as the sender sees it) and the last advertised window. Definitions:
//! - `retransmission`: data/SYN/FIN whose range starts before SND.NXT, not a probe or keep-alive;
//! - `zero-window`: a non-SYN, non-RST segment advertising window 0;
//! - `zero-window-probe`: while the peer's last window is 0, a segment at SND.UNA−1 with no payload (Linux's
//!   form, `tcp_xmit_probe_skb`) or at SND.UNA with 1 byte (RFC 9293 §3.8.6.1's form);
//! - `keep-alive`: a segment at SND.UNA−1 with 0 or 1 byte while the peer's window is open;
//! - `window-update`: a pure ACK with the same ack as this direction's previous segment but another window;
//! - `dup-ack N`: a pure ACK with the same ack and window as the previous one while the peer has data
//!   outstanding (RFC 5681 §2's definition of a duplicate acknowledgment).
//!
//! # Where tshark differs
//!
//! Wireshark's expert analysis (`tcp.analysis.*`) labels the same six things with other rules in places.
//! `tests/labels.rs` runs the tcp-data suite with `--pcap all` and compares frame by frame with tshark when it
//! is installed; apart from the differences below they agree (measured here: 137 duplicate ACKs, 35
//! retransmissions, 47 window updates, 52 zero windows and 22 zero-window probes compared, no other
//! disagreement). The differences, and why:
//! - **Zero-window probe.** Linux probes a zero window with a segment of no payload at SND.UNA−1
//!   (`tcp_xmit_probe_skb`); Wireshark recognises only RFC 9293's form (one byte at SND.NXT) and calls
//!   Linux's probe `keep-alive`, since its shape is a keep-alive's. We label it by what it is for: the peer's
//!   last window was zero. Our keep-alive is Wireshark's keep-alive minus these.
//! - **Retransmission.** One label: any data, SYN or FIN that starts below SND.NXT (probes and keep-alives
//!   aside). Wireshark splits it into retransmission, fast retransmission (after duplicate ACKs), spurious
//!   retransmission (already acknowledged) and out-of-order (a lower sequence number within an RTT, a guess
//!   based on timing). On a veth capture, frames from the far host can be reordered at the capture point
//!   (docs/kernel-facts.md); Wireshark calls those out-of-order, we call them retransmissions: we do not guess
//!   from timing.
//! - **Duplicate ACK.** RFC 5681 §2 counts an ACK as a duplicate only while the receiver of the ACK has data
//!   outstanding; Wireshark does not ask, so it also labels a repeated ACK with nothing outstanding (e.g. a
//!   D-SACK answering a spurious retransmission). Such an ACK cannot signal loss, so we do not label it.
//! - **Zero window.** Wireshark leaves out a FIN with window 0; we label it (the window is zero all the same).
//! - **Window update.** Wireshark requires the new window to be non-zero; an ACK that shrinks the window to
//!   zero with the same acknowledgment is `zero-window` and `window-update` here, `zero-window` there.
//! - Wireshark also labels the ACK of a probe or keep-alive, a segment whose predecessor was not captured and
//!   an ACK of an unseen segment. We label none of them: `netconform check` reports the last two as a
//!   warning that the capture may be lossy.

use std::fmt;

use super::{Conversation, TraceFrame};
use crate::wire::SeqNumber;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    Retransmission,
    ZeroWindow,
    ZeroWindowProbe,
    KeepAlive,
    WindowUpdate,
    DupAck(u32),
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Label::Retransmission => f.write_str("retransmission"),
            Label::ZeroWindow => f.write_str("zero-window"),
            Label::ZeroWindowProbe => f.write_str("zero-window-probe"),
            Label::KeepAlive => f.write_str("keep-alive"),
            Label::WindowUpdate => f.write_str("window-update"),
            Label::DupAck(n) => write!(f, "dup-ack {n}"),
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Dir {
    snd_nxt: Option<SeqNumber>,
    /// Last (ack, window) this direction sent.
    last_ack: Option<(SeqNumber, u16)>,
    dup_count: u32,
}

pub(super) fn label_conversation(c: &Conversation, frames: &mut [TraceFrame]) {
    let mut dirs = [Dir::default(); 2];
    for &i in &c.frames {
        let (Some(d), Some(t)) = (frames[i].direction, frames[i].tcp().cloned()) else {
            continue;
        };
        let peer = dirs[1 - d];
        let mut labels = Vec::new();
        let len = t.segment_len();
        let snd_una = peer.last_ack.map(|(a, _)| a);
        let peer_window = peer.last_ack.map(|(_, w)| w);
        let pure_ack = t.payload_len == 0 && !t.flags.syn && !t.flags.fin && !t.flags.rst;
        let mut probe_like = false;
        if let Some(una) = snd_una {
            if !t.flags.syn && !t.flags.rst && !t.flags.fin {
                let at_una_minus_1 = t.seq == una + u32::MAX && t.payload_len <= 1;
                let at_una_one_byte = t.seq == una && t.payload_len == 1;
                if peer_window == Some(0)
                    && (at_una_minus_1 && t.payload_len == 0 || at_una_one_byte)
                {
                    labels.push(Label::ZeroWindowProbe);
                    probe_like = true;
                } else if peer_window != Some(0) && at_una_minus_1 {
                    labels.push(Label::KeepAlive);
                    probe_like = true;
                }
            }
        }
        if !probe_like && len > 0 {
            if let Some(nxt) = dirs[d].snd_nxt {
                if t.seq < nxt {
                    labels.push(Label::Retransmission);
                }
            }
        }
        if t.window == 0 && !t.flags.syn && !t.flags.rst {
            labels.push(Label::ZeroWindow);
        }
        if pure_ack && t.flags.ack && !probe_like {
            if let Some((ack, win)) = dirs[d].last_ack {
                let peer_outstanding = peer.snd_nxt.is_some_and(|n| n > t.ack);
                if ack == t.ack && win != t.window {
                    labels.push(Label::WindowUpdate);
                    dirs[d].dup_count = 0;
                } else if ack == t.ack && win == t.window && peer_outstanding {
                    dirs[d].dup_count += 1;
                    labels.push(Label::DupAck(dirs[d].dup_count));
                } else {
                    dirs[d].dup_count = 0;
                }
            }
        } else {
            dirs[d].dup_count = 0;
        }
        let end = t.seq + len;
        if dirs[d].snd_nxt.is_none_or(|n| end > n) && !probe_like {
            dirs[d].snd_nxt = Some(end);
        }
        if t.flags.ack {
            dirs[d].last_ack = Some((t.ack, t.window));
        }
        frames[i].labels = labels;
    }
}
