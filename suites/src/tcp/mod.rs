//! TCP (suites `tcp-lifecycle`, `tcp-data`, `tcp-ops`): one property per file, named after its id, and a small
//! `*_common` module per area for the helpers several of its properties share.
//!
//! Opening connections (`tcp-lifecycle`), helpers in `handshake_common`:
//! - [`handshake_options`] — `tcp.handshake.options`: SYN, SYN-ACK, ACK, their options and numbering.
//! - [`accept_backlog`] — `tcp.accept.backlog`: the accept queue and its overflow.
//! - [`identity_four_tuple`] — `tcp.identity.four_tuple`: the 4-tuple as a connection's identity.
//!
//! TCP resets (`tcp-lifecycle`): the RST answering a segment for a port with no listener, and the RST sent by
//! close() with unread data or SO_LINGER 0:
//! - [`rst_closed_port`] — `tcp.rst.closed_port`.
//! - [`close_rst_on_unread`] — `tcp.close.rst_on_unread`.
//!
//! Closing connections (`tcp-lifecycle`), helpers in `close_common`:
//! - [`close_half_close`] — `tcp.close.half_close`.
//! - [`close_write_after_peer_close`] — `tcp.close.write_after_peer_close`.
//! - [`close_shapes`] — `tcp.close.shapes`: the three close shapes.
//!
//! The state machine (`tcp-lifecycle`):
//! - [`state_transitions`] — `tcp.state.transitions`: the RFC 9293 diagram as data, transitions justified.
//!
//! Zero windows (`tcp-data`), helpers in `zero_window_common`:
//! - [`zero_window_probes`] — `tcp.zero_window.probes`: against a kernel receiver.
//! - [`zero_window_peer`] — `tcp.zero_window.peer`: against a scripted peer.
//! - [`zero_window_sender`] — `tcp.zero_window.sender`: b (the kernel or a driven SUT) as the sender, a's kernel
//!   as the receiver; Linux's probe schedule for the kernel, the RFC's for any other stack.
//!
//! When segments and ACKs leave (`tcp-data`): ACK coalescing (delayed ACKs), Nagle / TCP_NODELAY / TCP_CORK /
//! PSH, and silly window syndrome avoidance on both sides:
//! - [`ack_coalescing`] — `tcp.ack.coalescing`.
//! - [`nagle`] — `tcp.nagle`.
//! - [`sws_avoidance`] — `tcp.sws.avoidance`.
//!
//! Flow control (`tcp-data`): the send buffer pushing back on a writer, and throughput bounded by window /
//! round-trip time:
//! - [`sndbuf_backpressure`] — `tcp.sndbuf.backpressure`.
//! - [`flow_window_bound`] — `tcp.flow.window_bound`.
//!
//! Loss and reordering (`tcp-data`), helpers in `loss_common`:
//! - [`loss_retransmit`] — `tcp.loss.retransmit`.
//! - [`reorder_sack`] — `tcp.reorder.sack`.
//!
//! Random programs (`tcp-ops`):
//! - [`random_ops`] — `tcp.random_ops`: judged by the reference model and the TCP invariants.

mod close_common;
mod handshake_common;
mod loss_common;
mod zero_window_common;

pub mod accept_backlog;
pub mod ack_coalescing;
pub mod close_half_close;
pub mod close_rst_on_unread;
pub mod close_shapes;
pub mod close_write_after_peer_close;
pub mod flow_window_bound;
pub mod handshake_options;
pub mod identity_four_tuple;
pub mod loss_retransmit;
pub mod nagle;
pub mod random_ops;
pub mod reorder_sack;
pub mod rst_closed_port;
pub mod sndbuf_backpressure;
pub mod state_transitions;
pub mod sws_avoidance;
pub mod zero_window_peer;
pub mod zero_window_probes;
pub mod zero_window_sender;
