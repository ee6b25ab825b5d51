//! netconform's properties, one module per behaviour area; `docs/lab-catalogue.md` maps each lab question to its
//! property. One line per module:
//!
//! - [`tcp_handshake`] — suite `tcp-lifecycle`: handshake options and numbering, the accept queue, 4-tuples.
//! - [`tcp_lifecycle`] — suite `tcp-lifecycle`: RST for a closed port, RST on close with unread data.
//! - [`tcp_close`] — suite `tcp-lifecycle`: close shapes, half-close, writing after the peer closed.
//! - [`tcp_state`] — suite `tcp-lifecycle`: the RFC 9293 state diagram as data, transitions justified by events.
//! - [`udp`] — suite `udp`: ports, datagrams on the wire, ICMP errors, boundaries, buffers, no retransmission.
//! - [`tcp_data`] — suite `tcp-data`: zero-window probes, against a kernel receiver and a scripted peer.
//! - [`tcp_segments`] — suite `tcp-data`: delayed ACKs, Nagle / NODELAY / CORK, silly window syndrome.
//! - [`tcp_flow`] — suite `tcp-data`: send-buffer backpressure, throughput bounded by window / RTT.
//! - [`tcp_loss`] — suite `tcp-data`: retransmission of a dropped segment, SACK and the cumulative ACK.
//! - [`random_ops`] — suite `tcp-ops`: random socket programs judged by the model and the TCP invariants.
//! - [`scenarios`] — the named fixed scenarios behind `snapshots/` (no property, no verdict).
//! - [`conn`] — helpers: an established-connection program, a connection's segments with relative numbers.
//! - [`selftest`] — properties that test the harness itself (hidden unless `NETCONFORM_SELFTEST=1`).
//!
//! A property makes no system call of its own: sockets, options, flags and errnos are the `harness` crate's
//! named APIs (`harness::sock`, `harness::sockopt`, `harness::cpu`), the seam behind which the system under
//! test sits. The crate forbids `unsafe_code`, and `suites/tests/seam.rs` fails on any use of the C library.

#![forbid(unsafe_code)]

pub mod conn;
pub mod random_ops;
pub mod scenarios;
pub mod selftest;
pub mod tcp_close;
pub mod tcp_data;
pub mod tcp_flow;
pub mod tcp_handshake;
pub mod tcp_lifecycle;
pub mod tcp_loss;
pub mod tcp_segments;
pub mod tcp_state;
pub mod udp;

use harness::runner::DynProperty;

/// The properties of the default suites, in listing order.
fn defaults() -> Vec<&'static dyn DynProperty> {
    vec![
        &tcp_handshake::HandshakeOptions,
        &tcp_handshake::AcceptBacklog,
        &tcp_handshake::FourTuple,
        &tcp_lifecycle::RstOnClosedPort,
        &tcp_lifecycle::RstOnUnread,
        &tcp_close::HalfClose,
        &tcp_close::WriteAfterPeerClose,
        &tcp_close::CloseShapes,
        &tcp_state::StateTransitions,
        &udp::PortUnreachable,
        &udp::BindPerHost,
        &udp::WireHeader,
        &udp::RecvBoundaries,
        &udp::RecvTruncate,
        &udp::SendUnresolved,
        &udp::RcvbufOverflow,
        &udp::NoRetransmit,
        &tcp_data::ZeroWindowProbes,
        &tcp_data::PeerZeroWindow,
        &tcp_segments::AckCoalescing,
        &tcp_segments::Nagle,
        &tcp_segments::SwsAvoidance,
        &tcp_flow::SndbufBackpressure,
        &tcp_flow::WindowBound,
        &tcp_loss::LossRetransmit,
        &tcp_loss::ReorderSack,
        &random_ops::RandomOps,
    ]
}

/// Every property of the default suites, plus the self-test ones when `NETCONFORM_SELFTEST=1`.
pub fn all() -> Vec<&'static dyn DynProperty> {
    let mut props = defaults();
    if selftest::enabled() {
        props.extend(selftest::all());
    }
    props
}

/// Suite names, in listing order.
pub fn suites() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for p in all() {
        let s = p.info().suite;
        if !names.contains(&s) {
            names.push(s);
        }
    }
    names
}

/// Every property including the self-test ones (for `replay` of a self-test case file).
pub fn all_including_selftest() -> Vec<&'static dyn DynProperty> {
    let mut props = defaults();
    props.extend(selftest::all());
    props
}
