//! The scripted peer link: only host `b` is a kernel. b gets a TUN device whose other end is a [`Peer`],
//! through which netconform plays `a` — packets written into it arrive at b, packets b sends are read from
//! it; both are recorded. What to send and expect is a script ([`crate::script`]), which runs on top of this
//! link. a's namespace exists (its sysctls and commands still run) but nothing of the link is in it.

use std::time::Duration;

use crate::capture::Capture;
use crate::error::Result;
use crate::frame::Host;
use crate::lab::hosts::Hosts;
pub use crate::link::endpoint::Peer;
use crate::link::tun::configure_tun_host;
use crate::link::{BuiltLink, LinkOptions};

/// A built peer link: b's TUN device and the peer at its other end.
pub struct PeerLink {
    peer: Peer,
    ifindex_b: u32,
}

impl PeerLink {
    /// Builds the peer link: a TUN device in b, its packet end handed to a [`Peer`].
    pub fn build(hosts: &Hosts, options: &LinkOptions) -> Result<PeerLink> {
        let mtu = options.mtu;
        let (tun, ifindex_b) = hosts
            .host(Host::B)
            .run(move || configure_tun_host(Host::B, mtu))??;
        Ok(PeerLink {
            peer: Peer::new(tun),
            ifindex_b,
        })
    }
}

impl BuiltLink for PeerLink {
    fn start_capture(&self, _hosts: &Hosts) -> Result<Capture> {
        Ok(Capture::from_relay(self.peer.recorder().clone()))
    }

    fn ifindex(&self, host: Host) -> u32 {
        match host {
            Host::A => 0,
            Host::B => self.ifindex_b,
        }
    }

    fn mac(&self, _host: Host) -> [u8; 6] {
        [0; 6]
    }

    fn round_trip(&self) -> Duration {
        Duration::ZERO
    }

    fn peer(&self) -> Option<&Peer> {
        Some(&self.peer)
    }

    fn played_host(&self) -> Option<Host> {
        Some(Host::A)
    }
}
