//! What every capture source records: frames with their decisions ([`Recorder`], filled by the relay and the
//! scripted peer, read by [`crate::capture`]) and the clock they are stamped with ([`realtime_ns`], the clock
//! the kernel's SO_TIMESTAMPNS uses, so AF_PACKET and relay frames of one case share one time line). It sits
//! below both capture and the links, so neither imports the other.

use std::mem::zeroed;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::frame::Frame;

/// What the relay did to a recorded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkEventKind {
    /// Dropped on purpose (loss or a rule).
    Dropped,
    /// Delivered twice.
    Duplicated,
    /// Held back so later packets overtake it.
    Reordered,
}

impl LinkEventKind {
    /// As trace lines show it: `[relay: dropped]`.
    pub fn name(self) -> &'static str {
        match self {
            LinkEventKind::Dropped => "dropped",
            LinkEventKind::Duplicated => "duplicated",
            LinkEventKind::Reordered => "reordered",
        }
    }
}

/// One decision, tied to the recorded frame it concerns (index into the captured frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkEvent {
    pub frame: usize,
    pub kind: LinkEventKind,
}

/// Frames and decisions recorded while a capture is on.
#[derive(Default)]
pub struct Recorder {
    pub recording: AtomicBool,
    state: Mutex<(Vec<Frame>, Vec<LinkEvent>)>,
    /// Packets the relay lost without being told to (write errors, TUN tx drops).
    pub unintended_drops: AtomicU64,
}

impl Recorder {
    /// Records a frame with the link's decisions about it (the relay).
    pub fn record(&self, frame: Frame, kinds: &[LinkEventKind]) {
        if !self.recording.load(Ordering::Acquire) {
            return;
        }
        let mut st = self.state.lock().unwrap();
        let index = st.0.len();
        st.0.push(frame);
        for k in kinds {
            st.1.push(LinkEvent {
                frame: index,
                kind: *k,
            });
        }
    }

    /// Records a frame with no decision (the scripted peer).
    pub fn record_frame(&self, frame: Frame) {
        self.record(frame, &[]);
    }

    /// Starts recording from now on.
    pub fn start(&self) {
        *self.state.lock().unwrap() = (Vec::new(), Vec::new());
        self.unintended_drops.store(0, Ordering::Release);
        self.recording.store(true, Ordering::Release);
    }

    /// Stops and returns what was recorded.
    pub fn stop(&self) -> (Vec<Frame>, Vec<LinkEvent>, u64) {
        self.recording.store(false, Ordering::Release);
        let (frames, events) = std::mem::take(&mut *self.state.lock().unwrap());
        (
            frames,
            events,
            self.unintended_drops.load(Ordering::Acquire),
        )
    }
}

/// CLOCK_REALTIME now, in nanoseconds (the clock SO_TIMESTAMPNS uses).
pub fn realtime_ns() -> u64 {
    // SAFETY: ts is written by the kernel.
    let mut ts: libc::timespec = unsafe { zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
