//! How the lab hosts are joined. `veth` (the default) is built in [`crate::lab`]; the [`relay`] joins the
//! hosts through a TUN device in each namespace and a forwarder in the harness, which applies seeded
//! impairments (delay, jitter, loss, reordering, duplication, rate, predicate rules) and records every
//! packet itself.
//!
//! - [`relay`] — TUN devices in both namespaces and a forwarder per direction with seeded impairments.
//! - [`peer`] — a scripted peer: netconform plays host `a` through a TUN device in b's namespace.

pub mod peer;
pub mod relay;

use serde::{Deserialize, Serialize};

pub use relay::{Impairment, LinkEvent, LinkEventKind, RelaySpec, Rule};

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
    /// A veth pair (default, fastest).
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
}
