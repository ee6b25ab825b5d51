//! How the lab hosts are joined. A link kind is one file that builds itself over the [`crate::lab::hosts`]
//! (which never import this module) and hands back a [`BuiltLink`]: what the rest of the harness needs from a
//! link (its capture, its interfaces, the round trip it adds, the scripted peer), so nothing outside the
//! kind's file and the one `match` in [`crate::lab::Lab::build`] knows which kind it is.
//!
//! - [`veth`] — a veth pair (default, fastest); captured with AF_PACKET on a's end.
//! - [`relay`] — a TUN device in each namespace and a forwarder per direction in the harness, which applies
//!   seeded impairments and records every packet itself.
//! - [`peer`] — a scripted peer: netconform plays host `a` through a TUN device in b's namespace.
//! - [`impairment`] — what the relay does to each packet, decided from a seed (pure, no devices).
//! - [`endpoint`] — packet ends: descriptors on which one read or write is one IP packet; the [`Peer`].
//! - [`tun`] — a TUN device `nc0` in a host's namespace, as a packet end.
//! - [`sut`] — b is a system under test: a's TUN relayed to b's end (a socketpair, or a TUN with the lab
//!   addresses for a kernel adapter).
//!
//! A new kind is a file with a `build` function and a [`BuiltLink`] impl, a [`LinkSpec`] and [`LinkKind`]
//! variant, and an arm in [`crate::lab::Lab::build`]. A link whose b end is not in a namespace netconform
//! set up — a packet end handed over by whoever built b (one end of `socketpair(AF_UNIX, SOCK_SEQPACKET)`,
//! a packet socket bound to a device) — reuses the relay: [`relay::Relay::build_to_end`]`(hosts, options,
//! b_end, spec)` gives a a TUN device and starts the forwarders between it and `b_end`, with the same
//! impairments and recording ([`relay::start_forwarders`] forwards between any two packet ends).

pub mod endpoint;
pub mod impairment;
pub mod peer;
pub mod relay;
pub mod sut;
pub mod tun;
pub mod veth;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::capture::Capture;
use crate::error::Result;
use crate::frame::Host;
use crate::lab::hosts::Hosts;

pub use crate::record::{LinkEvent, LinkEventKind};
pub use endpoint::{PacketEnd, Peer};
pub use impairment::{Impairment, RelaySpec, Rule};

/// The link of a lab; part of every case file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LinkSpec {
    #[default]
    Veth,
    Relay(RelaySpec),
    /// Only b is a kernel; netconform plays a through a TUN device in b ([`peer`]).
    Peer,
}

/// How the hosts of a property's lab are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    /// A veth pair (default, fastest; `harness/src/link/veth.rs`).
    Veth,
    /// A TUN device in each namespace and netconform's forwarder with seeded impairments
    /// (`harness/src/link/relay.rs`).
    Relay,
    /// Only `b` is a kernel; netconform plays `a` through a TUN device in b's namespace
    /// (`harness/src/link/peer.rs`).
    Peer,
}

impl LinkSpec {
    /// The kind of link this builds, as properties declare it.
    pub fn kind(&self) -> LinkKind {
        match self {
            LinkSpec::Veth => LinkKind::Veth,
            LinkSpec::Relay(_) => LinkKind::Relay,
            LinkSpec::Peer => LinkKind::Peer,
        }
    }

    /// The link of one case of a run: a relay's seed is derived from the case seed
    /// ([`RelaySpec::for_case`]); other kinds have nothing seeded.
    pub fn for_case(&self, case_seed: u64) -> LinkSpec {
        match self {
            LinkSpec::Veth => LinkSpec::Veth,
            LinkSpec::Relay(relay) => LinkSpec::Relay(relay.for_case(case_seed)),
            LinkSpec::Peer => LinkSpec::Peer,
        }
    }
}

/// The lab settings a link is built with (the rest of [`crate::lab::LabConfig`] belongs to the hosts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkOptions {
    /// MTU of each host's end (None: the device's default, 1500).
    pub mtu: Option<u32>,
    /// Static neighbour entries instead of ARP/ND (links that carry Ethernet frames).
    pub static_neighbours: bool,
}

/// A link, built: what the lab and the runner need from it. It lives as long as the lab; dropping it stops
/// whatever it runs (forwarder threads) and closes its descriptors.
pub trait BuiltLink: Send + Sync {
    /// Starts recording every frame of the link (both directions), before the first operation.
    fn start_capture(&self, hosts: &Hosts) -> Result<Capture>;

    /// Interface index of `host`'s end of the link in its namespace (0: none there).
    fn ifindex(&self, host: Host) -> u32;

    /// MAC address of `host`'s end (all zero: the link carries IP packets, not Ethernet frames).
    fn mac(&self, host: Host) -> [u8; 6];

    /// The longest round trip the link adds to the hosts' own; the runner waits twice this on top of a
    /// property's settle time for answers still in flight.
    fn round_trip(&self) -> Duration;

    /// The scripted peer netconform plays a host through (the peer link only).
    fn peer(&self) -> Option<&Peer>;

    /// The host netconform plays instead of a kernel, if any; no kernel bounds its window, so the lab gives it
    /// the other host's receive-buffer limit.
    fn played_host(&self) -> Option<Host>;
}
