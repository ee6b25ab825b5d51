//! The SUT link: host b is a system under test (`--sut`), joined to a's kernel through the relay's
//! forwarder, so capture, recording and seeded impairments work as on any relay link. What b's end is
//! depends on the attachment (`docs/driver-protocol.md`, "Attachment"):
//!
//! - `fd`: one end of `socketpair(AF_UNIX, SOCK_SEQPACKET)`; the SUT gets the other as fd 3, and b's
//!   namespace has only `lo`.
//! - `kernel`: a TUN device `nc0` in b's namespace with the lab addresses and routes: the SUT (a kernel
//!   adapter) uses the kernel's own IP layer, the harness forwards the device's packets.

use std::os::fd::OwnedFd;

use crate::error::{HarnessError, Result};
use crate::frame::Host;
use crate::lab::hosts::Hosts;
use crate::link::endpoint::PacketEnd;
use crate::link::impairment::RelaySpec;
use crate::link::relay::Relay;
use crate::link::tun::configure_tun_host;
use crate::link::LinkOptions;
use crate::sut::Attach;

/// b's end of a SUT link, and what the SUT process gets of it.
pub struct SutEnd {
    /// The harness's side, forwarded by the relay.
    pub end: PacketEnd,
    /// The descriptor the SUT gets as fd 3 (`fd` attachment).
    pub fd3: Option<OwnedFd>,
}

/// Sets up b's end for `attach` in b's namespace.
pub fn prepare_b(hosts: &Hosts, options: &LinkOptions, attach: &Attach) -> Result<SutEnd> {
    match attach {
        Attach::Fd => {
            let (ours, theirs) = crate::sut::seqpacket_pair()
                .map_err(|e| HarnessError::lab("SUT link: socketpair(AF_UNIX, SOCK_SEQPACKET)", e))?;
            let end =
                PacketEnd::new(ours).map_err(|e| HarnessError::lab("SUT link: packet end", e))?;
            Ok(SutEnd {
                end,
                fd3: Some(theirs),
            })
        }
        Attach::Kernel => {
            let mtu = options.mtu;
            let (end, _) = hosts
                .host(Host::B)
                .run(move || configure_tun_host(Host::B, mtu))??;
            Ok(SutEnd { end, fd3: None })
        }
        Attach::Tun { name } => Err(HarnessError::Usage(format!(
            "--attach tun:{name}: attachment by TUN name is not available in this version; use --attach fd \
             (fd 3, like a TUN fd with IFF_NO_PI) or --attach kernel"
        ))),
    }
}

/// The relay between a's TUN device and b's end.
pub fn build(
    hosts: &Hosts,
    options: &LinkOptions,
    b: PacketEnd,
    spec: &RelaySpec,
) -> Result<Relay> {
    Relay::build_to_end(hosts, options, b, spec)
}
