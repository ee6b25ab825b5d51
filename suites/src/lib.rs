//! netconform's properties, one file per property named after its id (`tcp.close.shapes` is `tcp/close_shapes.rs`);
//! `docs/lab-catalogue.md` maps each lab question to its property. One line per module:
//!
//! - [`tcp`] — suites `tcp-lifecycle`, `tcp-data`, `tcp-ops`: `tcp/<id>.rs`, shared helpers in `tcp/*_common.rs`.
//! - [`udp`] — suite `udp`: one file per property (`udp/<id>.rs`), shared helpers in `udp/common.rs`.
//! - [`stdio`] — suite `stdio`: properties for a passive stdio SUT on b (`--sut-mode stdio`), `stdio/<id>.rs`.
//! - [`scenarios`] — the named fixed scenarios behind `snapshots/` (no property, no verdict).
//! - [`conn`] — helpers: an established-connection program, a connection's segments with relative numbers.
//! - [`selftest`] — properties that test the harness itself (hidden unless `NETCONFORM_SELFTEST=1`).
//!
//! A property makes no system call of its own: sockets, options, flags and errnos are the `harness` crate's named
//! APIs (`harness::sock`, `harness::sockopt`, `harness::cpu`), the seam behind which the system under test sits.
//! The crate forbids `unsafe_code`, and `suites/tests/seam.rs` fails on any use of the C library.

#![forbid(unsafe_code)]

pub mod conn;
pub mod scenarios;
pub mod selftest;
pub mod stdio;
pub mod tcp;
pub mod udp;

use harness::runner::DynProperty;

/// The properties of the default suites, in listing order.
fn defaults() -> Vec<&'static dyn DynProperty> {
    vec![
        &tcp::handshake_options::HandshakeOptions,
        &tcp::accept_backlog::AcceptBacklog,
        &tcp::identity_four_tuple::FourTuple,
        &tcp::rst_closed_port::RstOnClosedPort,
        &tcp::close_rst_on_unread::RstOnUnread,
        &tcp::close_half_close::HalfClose,
        &tcp::close_write_after_peer_close::WriteAfterPeerClose,
        &tcp::close_shapes::CloseShapes,
        &tcp::state_transitions::StateTransitions,
        &udp::closed_port_icmp::PortUnreachable,
        &udp::bind_per_host::BindPerHost,
        &udp::wire_header::WireHeader,
        &udp::recv_boundaries::RecvBoundaries,
        &udp::recv_truncate::RecvTruncate,
        &udp::send_unresolved::SendUnresolved,
        &udp::rcvbuf_overflow_drops::RcvbufOverflow,
        &udp::no_retransmit::NoRetransmit,
        &tcp::zero_window_probes::ZeroWindowProbes,
        &tcp::zero_window_peer::PeerZeroWindow,
        &tcp::zero_window_sender::ZeroWindowSender,
        &tcp::ack_coalescing::AckCoalescing,
        &tcp::nagle::Nagle,
        &tcp::sws_avoidance::SwsAvoidance,
        &tcp::sndbuf_backpressure::SndbufBackpressure,
        &tcp::flow_window_bound::WindowBound,
        &tcp::loss_retransmit::LossRetransmit,
        &tcp::reorder_sack::ReorderSack,
        &tcp::random_ops::RANDOM_OPS,
        &stdio::stream_integrity::StreamIntegrity,
        &stdio::close_half_close::HalfClose,
        &stdio::sut_no_crash::NoCrash,
        &stdio::isn_varies::IsnVaries,
        &stdio::handshake_mss::MssPresent,
        &stdio::rst_other_port::RstOtherPort,
        &stdio::zero_window_probes::ZeroWindowProbes,
        &stdio::loss_retransmit::LossRetransmit,
        &stdio::ack_delay::AckDelay,
        &stdio::liveness_no_stall::NoStall,
        &stdio::ack_out_of_order::AckOutOfOrder,
        &stdio::sws_avoidance::SwsAvoidance,
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

/// `props` with `tcp.random_ops` replaced by `random_ops` (the command line's `--max-ops`/`--model-fault`):
/// settings reach the property as a value, never through shared state. The value lives for the process.
pub fn with_random_ops(
    props: Vec<&'static dyn DynProperty>,
    random_ops: tcp::random_ops::RandomOps,
) -> Vec<&'static dyn DynProperty> {
    let configured: &'static dyn DynProperty = Box::leak(Box::new(random_ops));
    props
        .into_iter()
        .map(|p| {
            if p.info().id == configured.info().id {
                configured
            } else {
                p
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness::property::LinkKind;
    use harness::sock::Family;

    /// What `netconform list` says a property runs on is what its cases build: a property declaring `veth`
    /// builds no link of its own (it runs on the user's link), one declaring `relay` or `peer` builds that.
    #[test]
    fn declared_link_kinds_are_what_the_cases_build() {
        let mut wrong = Vec::new();
        for p in all_including_selftest() {
            let info = p.info();
            let mut built = Vec::new();
            for seed in 0..32u64 {
                for family in [Family::Ipv4, Family::Ipv6] {
                    let case =
                        p.generate(harness::property::case_seed(seed, info.id, seed), family);
                    let link = p.case_link(&case).expect("generated cases parse");
                    if !built.contains(&link) {
                        built.push(link);
                    }
                }
            }
            for link in &built {
                if !info.needs.links.contains(link) {
                    wrong.push(format!("{}: a case builds {link:?}, not declared", info.id));
                }
            }
            for link in info.needs.links {
                if !built.contains(link) {
                    wrong.push(format!("{}: declares {link:?}, no case builds it", info.id));
                }
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
        let declared: Vec<LinkKind> = all()
            .iter()
            .flat_map(|p| p.info().needs.links.iter().copied())
            .collect();
        assert!(declared.contains(&LinkKind::Relay) && declared.contains(&LinkKind::Peer));
    }
}
