//! Traces: captured frames dissected, grouped into conversations, normalised, and rendered one canonical line
//! per frame.
//!
//! Normalise first, compare second (packetdrill): endpoints are roles (`A`, `B`: the lab hosts, or the first
//! two talkers of an offline capture), TCP sequence numbers are relative to each direction's ISN (its SYN, or
//! the first sequence number seen in that direction when no SYN was captured — e.g. `0` for a RST sent from a
//! closed port), acknowledgement numbers relative to the other direction's base, and volatile values
//! (timestamps values, ports, addresses) are not printed. Example:
//!
//! ```text
//!    1 +0.000021  A>B  S  0:0(0) win 64240 <mss 1460,sackOK,TS,nop,wscale 7>
//!    2 +0.000034  B>A  R. 0:0(0) ack 1 win 0
//! ```
//!
//! Labels follow Wireshark's expert info but are correct for Linux: a zero-window probe is a segment without
//! payload at SND.UNA−1 (or 1 byte at SND.UNA) while the peer's window is zero; the same shape while the window
//! is open is a keep-alive. Where and why they differ from tshark's expert analysis is written down in
//! `harness/src/trace/labels.rs` ("Where tshark differs") and tested against tshark in `tests/labels.rs`.

mod labels;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use crate::frame::{Frame, Host};
use crate::wire::{
    parse_frame, Network, Packet, SeqNumber, TcpOption, TcpRepr, Transport, WireError,
};
pub use labels::Label;

/// Which lab host each address belongs to.
#[derive(Debug, Clone, Default)]
pub struct HostAddrs {
    entries: Vec<(IpAddr, Host)>,
}

impl HostAddrs {
    pub fn new(entries: Vec<(IpAddr, Host)>) -> Self {
        HostAddrs { entries }
    }

    /// For an offline capture: the source of the first IP packet is `A`, its destination `B`.
    pub fn by_first_talker(frames: &[Frame]) -> Self {
        for f in frames {
            if let Ok(p) = parse_frame(f.link, &f.data) {
                if let (Some(s), Some(d)) = (p.src_ip(), p.dst_ip()) {
                    if !matches!(p.net, Network::Arp(_)) {
                        return HostAddrs::new(vec![(s, Host::A), (d, Host::B)]);
                    }
                }
            }
        }
        HostAddrs::default()
    }

    pub fn host_of(&self, addr: IpAddr) -> Option<Host> {
        self.entries
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, h)| *h)
    }

    fn name(&self, addr: IpAddr) -> String {
        match self.host_of(addr) {
            Some(h) => h.role().to_string(),
            None => addr.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationKind {
    Tcp,
    Udp,
    /// ICMP not tied to any conversation (errors quoting unknown packets, echo).
    Icmp,
    Arp,
    Neighbour,
    Other,
}

/// One endpoint of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: u16,
    pub host: Option<Host>,
}

/// Frames of one TCP connection, UDP flow, or other exchange. ICMP errors that quote a packet of a
/// conversation belong to it too.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub id: usize,
    pub kind: ConversationKind,
    /// The endpoint that sent the first frame (for TCP: normally the SYN).
    pub client: Endpoint,
    pub server: Endpoint,
    /// Indices into [`Trace::frames`].
    pub frames: Vec<usize>,
    /// Base of relative sequence numbers per direction: [client→server, server→client].
    pub base: [Option<SeqNumber>; 2],
    /// Whether the base is a real ISN (from a SYN).
    pub isn_seen: [bool; 2],
    /// Window scale in force per direction's advertisements (RFC 7323 §2.2: only when both SYNs carried it).
    pub window_scale: [Option<u8>; 2],
}

impl Conversation {
    /// 0 if `src` is the client side, 1 otherwise.
    pub fn direction(&self, src: IpAddr, src_port: u16) -> usize {
        if self.client.addr == src && self.client.port == src_port {
            0
        } else {
            1
        }
    }
}

/// One frame of a trace.
#[derive(Debug, Clone)]
pub struct TraceFrame {
    /// 1-based, as Wireshark numbers frames.
    pub number: usize,
    /// Nanoseconds since the trace start.
    pub rel_ns: u64,
    pub from: Option<Host>,
    pub to: Option<Host>,
    pub packet: Result<Packet, WireError>,
    pub conversation: Option<usize>,
    /// Direction within its conversation (0 client→server, 1 server→client).
    pub direction: Option<usize>,
    pub rel_seq: Option<u32>,
    pub rel_ack: Option<u32>,
    pub labels: Vec<Label>,
}

impl TraceFrame {
    pub fn tcp(&self) -> Option<&TcpRepr> {
        self.packet.as_ref().ok()?.tcp()
    }
}

/// A whole capture, dissected and normalised.
#[derive(Debug, Clone)]
pub struct Trace {
    pub frames: Vec<TraceFrame>,
    pub conversations: Vec<Conversation>,
    pub start_ns: u64,
    /// What an impairing link did on purpose to frames (index = position in `frames`); set by the runner.
    pub link_events: Vec<crate::record::LinkEvent>,
    hosts: HostAddrs,
}

/// Conversation key: protocol and the two endpoints in a canonical order.
type Key = (u8, (IpAddr, u16), (IpAddr, u16));

fn key(protocol: u8, a: (IpAddr, u16), b: (IpAddr, u16)) -> Key {
    if a <= b {
        (protocol, a, b)
    } else {
        (protocol, b, a)
    }
}

/// (protocol, src, src port, dst, dst port) of a packet with ports.
fn five_tuple(p: &Packet) -> Option<(u8, IpAddr, u16, IpAddr, u16)> {
    let (s, d) = (p.src_ip()?, p.dst_ip()?);
    match p.transport()? {
        Transport::Tcp { repr, .. } => Some((6, s, repr.src_port, d, repr.dst_port)),
        Transport::Udp { repr, .. } => Some((17, s, repr.src_port, d, repr.dst_port)),
        _ => None,
    }
}

impl Trace {
    /// Dissects and groups `frames`. Timestamps are made relative to `start_ns`, or to the first frame.
    pub fn build(frames: &[Frame], hosts: &HostAddrs, start_ns: Option<u64>) -> Trace {
        let start_ns = start_ns.unwrap_or_else(|| frames.first().map(|f| f.ts_ns).unwrap_or(0));
        let mut out = Vec::with_capacity(frames.len());
        let mut conversations: Vec<Conversation> = Vec::new();
        let mut open: HashMap<Key, usize> = HashMap::new();
        let mut closed: HashMap<usize, (bool, bool, bool)> = HashMap::new(); // (fin c→s, fin s→c, rst)
        for (i, f) in frames.iter().enumerate() {
            let packet = parse_frame(f.link, &f.data);
            let (mut from, mut to) = (f.origin, f.origin.map(Host::other));
            if let Ok(p) = &packet {
                if let Some(h) = p.src_ip().and_then(|a| hosts.host_of(a)) {
                    from = Some(h);
                }
                to = p.dst_ip().and_then(|a| hosts.host_of(a)).or(to);
            }
            let mut conversation = None;
            if let Ok(p) = &packet {
                if let Some((proto, s, sp, d, dp)) = five_tuple(p) {
                    let k = key(proto, (s, sp), (d, dp));
                    let new_syn = p.tcp().is_some_and(|t| t.flags.syn && !t.flags.ack);
                    let reuse = open.get(&k).copied().filter(|id| {
                        let (fc, fs, rst) = closed.get(id).copied().unwrap_or_default();
                        !(new_syn && (rst || (fc && fs)))
                    });
                    let id = reuse.unwrap_or_else(|| {
                        let id = conversations.len();
                        conversations.push(Conversation {
                            id,
                            kind: if proto == 6 {
                                ConversationKind::Tcp
                            } else {
                                ConversationKind::Udp
                            },
                            client: Endpoint {
                                addr: s,
                                port: sp,
                                host: hosts.host_of(s),
                            },
                            server: Endpoint {
                                addr: d,
                                port: dp,
                                host: hosts.host_of(d),
                            },
                            frames: Vec::new(),
                            base: [None; 2],
                            isn_seen: [false; 2],
                            window_scale: [None; 2],
                        });
                        open.insert(k, id);
                        id
                    });
                    if let Some(t) = p.tcp() {
                        let dir = conversations[id].direction(s, sp);
                        let e = closed.entry(id).or_default();
                        if t.flags.fin {
                            if dir == 0 {
                                e.0 = true
                            } else {
                                e.1 = true
                            }
                        }
                        if t.flags.rst {
                            e.2 = true;
                        }
                    }
                    conversation = Some(id);
                } else if let Some(q) = p.icmp().and_then(|r| r.quoted.as_ref()) {
                    // An ICMP error belongs to the conversation of the packet it quotes.
                    if let (Some(sp), Some(dp)) = (q.src_port, q.dst_port) {
                        conversation = open
                            .get(&key(q.protocol, (q.src, sp), (q.dst, dp)))
                            .copied();
                    }
                }
                if conversation.is_none() {
                    let kind = match &p.net {
                        Network::Arp(_) => ConversationKind::Arp,
                        Network::Ipv6 {
                            transport: Transport::Icmpv6(r),
                            ..
                        } if (133..=137).contains(&r.icmp_type) => ConversationKind::Neighbour,
                        Network::Ipv4 {
                            transport: Transport::Icmpv4(_),
                            ..
                        }
                        | Network::Ipv6 {
                            transport: Transport::Icmpv6(_),
                            ..
                        } => ConversationKind::Icmp,
                        _ => ConversationKind::Other,
                    };
                    let (s, d) = (p.src_ip(), p.dst_ip());
                    let existing = conversations.iter().position(|c| {
                        c.kind == kind
                            && matches!(
                                kind,
                                ConversationKind::Arp
                                    | ConversationKind::Neighbour
                                    | ConversationKind::Icmp
                            )
                            && ((Some(c.client.addr), Some(c.server.addr)) == (s, d)
                                || (Some(c.server.addr), Some(c.client.addr)) == (s, d))
                    });
                    conversation = Some(existing.unwrap_or_else(|| {
                        let unspecified = IpAddr::from([0u8, 0, 0, 0]);
                        let ep = |a: Option<IpAddr>| Endpoint {
                            addr: a.unwrap_or(unspecified),
                            port: 0,
                            host: a.and_then(|a| hosts.host_of(a)),
                        };
                        conversations.push(Conversation {
                            id: conversations.len(),
                            kind,
                            client: ep(s),
                            server: ep(d),
                            frames: Vec::new(),
                            base: [None; 2],
                            isn_seen: [false; 2],
                            window_scale: [None; 2],
                        });
                        conversations.len() - 1
                    }));
                }
            }
            if let Some(id) = conversation {
                conversations[id].frames.push(i);
            }
            out.push(TraceFrame {
                number: i + 1,
                rel_ns: f.ts_ns.saturating_sub(start_ns),
                from,
                to,
                packet,
                conversation,
                direction: None,
                rel_seq: None,
                rel_ack: None,
                labels: Vec::new(),
            });
        }
        // Second pass over each TCP conversation: bases, window scale, relative numbers, labels.
        for c in conversations
            .iter_mut()
            .filter(|c| c.kind == ConversationKind::Tcp)
        {
            let mut syn_wscale: [Option<Option<u8>>; 2] = [None; 2];
            for &i in &c.frames {
                let Some(p) = out[i].packet.as_ref().ok() else {
                    continue;
                };
                let (Some(t), Some(src)) = (p.tcp().cloned(), p.src_ip()) else {
                    continue;
                };
                let dir = c.direction(src, t.src_port);
                out[i].direction = Some(dir);
                if t.flags.syn && !c.isn_seen[dir] {
                    c.base[dir] = Some(t.seq);
                    c.isn_seen[dir] = true;
                    syn_wscale[dir] = Some(t.window_scale());
                } else if c.base[dir].is_none() {
                    c.base[dir] = Some(t.seq);
                }
            }
            if let [Some(Some(w0)), Some(Some(w1))] = syn_wscale {
                c.window_scale = [Some(w0), Some(w1)];
            }
            for &i in &c.frames {
                let (Some(dir), Some(t)) = (out[i].direction, out[i].tcp().cloned()) else {
                    continue;
                };
                out[i].rel_seq = c.base[dir].map(|b| (t.seq - b) as u32);
                if t.flags.ack {
                    out[i].rel_ack = c.base[1 - dir].map(|b| (t.ack - b) as u32);
                }
            }
            labels::label_conversation(c, &mut out);
        }
        Trace {
            frames: out,
            conversations,
            start_ns,
            link_events: Vec::new(),
            hosts: hosts.clone(),
        }
    }

    /// The window frame `i` advertises, scaled as RFC 7323 says (the SYN's own window is never scaled).
    pub fn scaled_window(&self, i: usize) -> Option<u32> {
        let f = self.frames.get(i)?;
        let t = f.tcp()?;
        let c = &self.conversations[f.conversation?];
        let shift = if t.flags.syn {
            0
        } else {
            c.window_scale[f.direction?].unwrap_or(0)
        };
        Some((t.window as u32) << shift)
    }

    /// The canonical line of frame index `i` (0-based), without number and time.
    pub fn canonical_line(&self, i: usize) -> String {
        let Some(f) = self.frames.get(i) else {
            return String::new();
        };
        let p = match &f.packet {
            Ok(p) => p,
            Err(e) => return format!("?  malformed: {e}"),
        };
        let role = |a: Option<IpAddr>| a.map(|a| self.hosts.name(a)).unwrap_or_else(|| "?".into());
        let dir = format!("{}>{}", role(p.src_ip()), role(p.dst_ip()));
        match &p.net {
            Network::Arp(a) => {
                let target = self.hosts.name(IpAddr::V4(a.target_ip));
                let sender = self.hosts.name(IpAddr::V4(a.sender_ip));
                match a.operation {
                    1 => format!("{dir}  arp who-has {target}"),
                    2 => format!("{dir}  arp reply {sender}"),
                    op => format!("{dir}  arp op {op}"),
                }
            }
            Network::Other { ethertype } => format!("?  ethertype {ethertype:#06x}"),
            Network::Ipv4 { transport, .. } | Network::Ipv6 { transport, .. } => {
                let v6 = matches!(p.net, Network::Ipv6 { .. });
                match transport {
                    Transport::Tcp {
                        repr,
                        options_error,
                        ..
                    } => self.tcp_line(&dir, f, repr, options_error.is_some()),
                    Transport::Udp { payload, .. } => format!("{dir}  udp {}", payload.len()),
                    Transport::Icmpv4(r) | Transport::Icmpv6(r) => {
                        let mut s = format!("{dir}  icmp {}", r.name(v6));
                        if let Some(t) = r.nd_target {
                            let _ = write!(s, " {}", self.hosts.name(IpAddr::V6(t)));
                        }
                        if let Some(q) = &r.quoted {
                            let qdir =
                                format!("{}>{}", self.hosts.name(q.src), self.hosts.name(q.dst));
                            let what = match (q.protocol, q.udp_length) {
                                (17, Some(l)) => format!("udp {}", l.saturating_sub(8)),
                                (6, _) => "tcp".to_string(),
                                (proto, _) => format!("proto {proto}"),
                            };
                            let _ = write!(s, " quoting {qdir} {what}");
                        }
                        s
                    }
                    Transport::Fragment {
                        protocol,
                        offset,
                        more,
                        data_len,
                        ..
                    } => {
                        format!(
                            "{dir}  frag proto {protocol} offset {offset} len {data_len}{}",
                            if *more { " +" } else { "" }
                        )
                    }
                    Transport::Other { protocol, len } => {
                        format!("{dir}  proto {protocol} len {len}")
                    }
                }
            }
        }
    }

    /// `malformed`: the options area has a malformed option after the ones listed (shown as `malformed`).
    fn tcp_line(&self, dir: &str, f: &TraceFrame, t: &TcpRepr, malformed: bool) -> String {
        let seq = f.rel_seq.unwrap_or(t.seq.0);
        let mut s = format!(
            "{dir}  {:<2} {}:{}({})",
            t.flags.tcpdump(),
            seq,
            seq.wrapping_add(t.payload_len as u32),
            t.payload_len
        );
        if t.flags.ack {
            let _ = write!(s, " ack {}", f.rel_ack.unwrap_or(t.ack.0));
        }
        let _ = write!(s, " win {}", t.window);
        if !t.options.is_empty() || malformed {
            let ack_base = f
                .conversation
                .zip(f.direction)
                .and_then(|(c, d)| self.conversations[c].base[1 - d]);
            let opts: Vec<String> = t
                .options
                .iter()
                .map(|o| match o {
                    TcpOption::EndOfList => "eol".to_string(),
                    TcpOption::NoOperation => "nop".to_string(),
                    TcpOption::MaxSegmentSize(m) => format!("mss {m}"),
                    TcpOption::WindowScale(w) => format!("wscale {w}"),
                    TcpOption::SackPermitted => "sackOK".to_string(),
                    TcpOption::Timestamp { .. } => "TS".to_string(),
                    TcpOption::SackRange(blocks) => {
                        let rel = |x: SeqNumber| ack_base.map(|b| (x - b) as u32).unwrap_or(x.0);
                        let b: Vec<String> = blocks
                            .iter()
                            .map(|(l, r)| format!("{{{}:{}}}", rel(*l), rel(*r)))
                            .collect();
                        format!("sack {} {}", blocks.len(), b.join(""))
                    }
                    TcpOption::Unknown { kind, data } => {
                        format!("opt-{kind} len {}", data.len() + 2)
                    }
                })
                .chain(malformed.then(|| "malformed".to_string()))
                .collect();
            let _ = write!(s, " <{}>", opts.join(","));
        }
        s
    }

    /// Every frame: number, time since start, (conversation tag when there are several), canonical line, labels.
    pub fn render(&self) -> String {
        let tagged = self
            .conversations
            .iter()
            .filter(|c| matches!(c.kind, ConversationKind::Tcp | ConversationKind::Udp))
            .count()
            > 1;
        let mut s = String::new();
        for (i, f) in self.frames.iter().enumerate() {
            let _ = write!(s, "{:>4} +{:.6}  ", f.number, f.rel_ns as f64 / 1e9);
            if tagged {
                match f.conversation {
                    Some(c) => {
                        let _ = write!(s, "c{:<2} ", c + 1);
                    }
                    None => s.push_str("    "),
                }
            }
            s.push_str(&self.canonical_line(i));
            for l in &f.labels {
                let _ = write!(s, "  [{l}]");
            }
            for e in self.link_events.iter().filter(|e| e.frame == i) {
                let _ = write!(s, "  [relay: {}]", e.kind.name());
            }
            s.push('\n');
        }
        s
    }

    /// The frames of one conversation, rendered.
    pub fn render_conversation(&self, id: usize) -> String {
        let Some(c) = self.conversations.get(id) else {
            return String::new();
        };
        let mut s = String::new();
        for &i in &c.frames {
            let f = &self.frames[i];
            let _ = write!(
                s,
                "{:>4} +{:.6}  {}",
                f.number,
                f.rel_ns as f64 / 1e9,
                self.canonical_line(i)
            );
            for l in &f.labels {
                let _ = write!(s, "  [{l}]");
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests;
