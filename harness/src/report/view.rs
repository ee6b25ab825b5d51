//! The render model of one case for the HTML report: what a ladder diagram and a time-sequence graph need,
//! and nothing else, built while the case's frames are still there.
//!
//! A [`CaseView`] holds, per frame, its canonical line, its labels, what the relay did to it, and for TCP
//! the relative numbers; per host, the socket ops the executor ran (when the property drove its sockets
//! through [`crate::exec::run_program`]). The runner builds one only for a case that will be drawn (a case
//! that did not pass, or every case with `--pcap all`), so a big run never keeps all its frames. At most
//! [`MAX_DRAWN_FRAMES`] frames are kept; the rest are counted.

use crate::exec::OpMark;
use crate::frame::Host;
use crate::link::{LinkEvent, LinkEventKind};
use crate::property::Violation;
use crate::trace::Trace;
use crate::wire::TcpOption;

/// Frames kept per drawn case (a ladder of more is unreadable anyway; the pcapng has them all).
pub const MAX_DRAWN_FRAMES: usize = 2000;

/// The TCP numbers of a segment, relative to each direction's ISN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpView {
    pub seq: u32,
    pub ack: Option<u32>,
    pub len: u32,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    /// The advertised window, scaled (RFC 7323).
    pub window: u32,
    /// SACK blocks, relative to the acknowledged direction's ISN.
    pub sack: Vec<(u32, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameView {
    /// 1-based, as Wireshark numbers them.
    pub number: usize,
    /// Nanoseconds since the case started.
    pub t_ns: u64,
    pub from: Option<Host>,
    /// The canonical line without its `A>B` direction.
    pub line: String,
    pub labels: Vec<String>,
    /// What the relay did to the frame, if anything.
    pub link: Option<LinkEventKind>,
    pub conversation: Option<usize>,
    pub direction: Option<usize>,
    pub tcp: Option<TcpView>,
}

/// A socket op on the case's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpView {
    pub host: Host,
    /// Nanoseconds since the case started (ops before the capture started are at 0).
    pub t_ns: u64,
    pub text: String,
}

/// Everything the HTML report draws for one case.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaseView {
    pub property: String,
    pub suite: String,
    pub index: u64,
    pub family: String,
    pub seed: u64,
    pub description: String,
    /// `pass`, `fail`, `skip`, `invalid`, `error`.
    pub status: String,
    /// The violation (as the terminal prints it, without the trace) or the reason / message.
    pub detail: String,
    /// The violation's one-line summary and clause, for the highlighted arrows.
    pub violation: Option<String>,
    pub violation_frames: Vec<usize>,
    pub frames: Vec<FrameView>,
    /// Frames beyond [`MAX_DRAWN_FRAMES`], not kept.
    pub omitted_frames: usize,
    /// `None`: the property's ops are not recorded with times (it did not use `run_program`).
    pub ops: Option<Vec<OpView>>,
    pub pcap: Option<String>,
    pub replay: Option<String>,
}

/// Who the case is, for the header of its section.
#[derive(Debug, Clone, Default)]
pub struct CaseMeta {
    pub property: String,
    pub suite: String,
    pub index: u64,
    pub family: String,
    pub seed: u64,
    pub description: String,
    pub status: String,
    pub detail: String,
    pub pcap: Option<String>,
    pub replay: Option<String>,
}

impl CaseView {
    /// The view of a case from its trace (its `link_events` included), its violation if it failed, and the
    /// ops the executor recorded (wall-clock times, see [`OpMark`]).
    pub fn build(
        meta: CaseMeta,
        trace: &Trace,
        violation: Option<&Violation>,
        ops: Option<&[OpMark]>,
    ) -> CaseView {
        let mut frames = Vec::new();
        for (i, f) in trace.frames.iter().enumerate().take(MAX_DRAWN_FRAMES) {
            let line = trace.canonical_line(i);
            // `A>B  S  0:0(0) …` → `S  0:0(0) …`
            let line = match line.split_once("  ") {
                Some((dir, rest)) if dir.contains('>') => rest.to_string(),
                _ => line,
            };
            let link = trace
                .link_events
                .iter()
                .filter(|e: &&LinkEvent| e.frame == i)
                .map(|e| e.kind)
                .next();
            let tcp = f.tcp().map(|t| {
                let ack_base = f
                    .conversation
                    .zip(f.direction)
                    .and_then(|(c, d)| trace.conversations[c].base[1 - d]);
                let sack = t
                    .options
                    .iter()
                    .filter_map(|o| match o {
                        TcpOption::SackRange(blocks) => Some(blocks.clone()),
                        _ => None,
                    })
                    .flatten()
                    .map(|(l, r)| match ack_base {
                        Some(b) => ((l - b) as u32, (r - b) as u32),
                        None => (l.0, r.0),
                    })
                    .collect();
                TcpView {
                    seq: f.rel_seq.unwrap_or(t.seq.0),
                    ack: t.flags.ack.then(|| f.rel_ack.unwrap_or(t.ack.0)),
                    len: t.payload_len as u32,
                    syn: t.flags.syn,
                    fin: t.flags.fin,
                    rst: t.flags.rst,
                    window: trace.scaled_window(i).unwrap_or(t.window as u32),
                    sack,
                }
            });
            frames.push(FrameView {
                number: f.number,
                t_ns: f.rel_ns,
                from: f.from,
                line,
                labels: f.labels.iter().map(|l| l.to_string()).collect(),
                link,
                conversation: f.conversation,
                direction: f.direction,
                tcp,
            });
        }
        let ops = ops.map(|ops| {
            ops.iter()
                .map(|o| OpView {
                    host: o.host,
                    t_ns: o.wall_ns.saturating_sub(trace.start_ns),
                    text: o.text.clone(),
                })
                .collect()
        });
        CaseView {
            property: meta.property,
            suite: meta.suite,
            index: meta.index,
            family: meta.family,
            seed: meta.seed,
            description: meta.description,
            status: meta.status,
            detail: meta.detail,
            violation: violation.map(|v| format!("{} [{}]", v.summary, v.clause)),
            violation_frames: violation.map(|v| v.frames.clone()).unwrap_or_default(),
            omitted_frames: trace.frames.len().saturating_sub(MAX_DRAWN_FRAMES),
            frames,
            ops,
            pcap: meta.pcap,
            replay: meta.replay,
        }
    }

    /// Whether the case has a TCP direction that carried payload (a time-sequence graph is drawn for it).
    pub fn has_tcp_payload(&self) -> bool {
        self.frames
            .iter()
            .any(|f| f.tcp.as_ref().is_some_and(|t| t.len > 0))
    }
}

/// What a case's drawing needs besides its frames, kept from the case's run until outputs are written.
#[derive(Debug, Clone, Default)]
pub struct DrawInputs {
    /// The case's time zero (CLOCK_REALTIME ns), as the trace used it.
    pub start_ns: u64,
    pub link_events: Vec<LinkEvent>,
    /// The ops run through [`crate::exec::run_program`], `None` when the property drove sockets otherwise.
    pub ops: Option<Vec<OpMark>>,
}
