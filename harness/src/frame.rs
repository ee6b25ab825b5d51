//! One captured frame, as every capture source (AF_PACKET on veth, the relay, a pcap file) hands it on.
//!
//! The frame owns its bytes; parsing happens later in [`crate::wire`] and [`crate::trace`].

use serde::{Deserialize, Serialize};

/// Which lab host a frame left from, when the capture point knows it.
///
/// On a veth link captured in host `a`, a frame with `PACKET_OUTGOING` left host `a` (`Host::A`),
/// every other frame left host `b`. Roles in canonical lines (`A>B`) are these host names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Host {
    A,
    B,
}

impl Host {
    pub fn name(self) -> &'static str {
        match self {
            Host::A => "a",
            Host::B => "b",
        }
    }
    pub fn role(self) -> &'static str {
        match self {
            Host::A => "A",
            Host::B => "B",
        }
    }
    pub fn other(self) -> Host {
        match self {
            Host::A => Host::B,
            Host::B => Host::A,
        }
    }
}

/// The link-layer framing of [`Frame::data`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkType {
    /// Ethernet II (pcap LINKTYPE_ETHERNET = 1).
    Ethernet,
    /// A bare IPv4 or IPv6 packet, version from the first nibble (pcap LINKTYPE_RAW = 101), as on TUN.
    RawIp,
}

/// A frame as captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Kernel timestamp, nanoseconds since the Unix epoch (CLOCK_REALTIME, as SO_TIMESTAMPNS gives it).
    pub ts_ns: u64,
    /// The host the frame left from, if the capture point knows it.
    pub origin: Option<Host>,
    pub link: LinkType,
    /// Captured bytes (never truncated: the capture snaplen is 65535+).
    pub data: Vec<u8>,
}
