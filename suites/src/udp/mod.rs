//! UDP (suite `udp`): the ICMP answer to a datagram for a closed port, ports per host, the datagram on the wire
//! (incl. fragmented datagrams, reassembled by netconform), message boundaries, truncation, sending to an
//! unresolved neighbour, receive-buffer overflow, and no retransmission of datagrams lost on a relay link.
//!
//! Shared choices: senders pin their host thread to the CPU it runs on before sending, because veth hands a
//! frame to the *sending* CPU's backlog: a sender that migrates between two sends can have its datagrams
//! processed out of order by the receiving host (docs/kernel-facts.md: veth reorders occasionally on 2 CPUs).
//! Pinned, the link is a FIFO and "in order on a lossless link" is a fair requirement. Receivers that are not studying
//! buffer limits get a large receive buffer (SO_RCVBUFFORCE) so that no datagram is dropped for room.
//!
//! One property per file, named after its id:
//!
//! - [`closed_port_icmp`] — `udp.closed_port.icmp`.
//! - [`bind_per_host`] — `udp.bind.per_host`.
//! - [`wire_header`] — `udp.wire.header`.
//! - [`recv_boundaries`] — `udp.recv.boundaries`.
//! - [`recv_truncate`] — `udp.recv.truncate`.
//! - [`send_unresolved`] — `udp.send.unresolved`.
//! - [`rcvbuf_overflow_drops`] — `udp.rcvbuf.overflow_drops`.
//! - [`no_retransmit`] — `udp.no_retransmit`.
//! - `common` — helpers shared by several of them.

pub mod bind_per_host;
pub mod closed_port_icmp;
mod common;
pub mod no_retransmit;
pub mod rcvbuf_overflow_drops;
pub mod recv_boundaries;
pub mod recv_truncate;
pub mod send_unresolved;
pub mod wire_header;
