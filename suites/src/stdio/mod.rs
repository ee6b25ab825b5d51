//! Suite `stdio`: properties for a passive stdio SUT on b (`--sut-mode stdio`, `docs/driver-protocol.md`
//! "Other modes"). b is judged only through its one connection per run: what a's kernel socket sends and
//! receives, what the SUT printed, how it ended, and the wire. They need [`harness::property::Cap::Stdio`]:
//! against the kernel or a driven SUT they are skipped with that reason. One file per property, named after
//! its id (`stdio.stream.integrity` is `stream_integrity.rs`); shared helpers in `common.rs`.

pub mod ack_delay;
pub mod ack_out_of_order;
pub mod close_half_close;
pub mod common;
pub mod handshake_mss;
pub mod isn_varies;
pub mod liveness_no_stall;
pub mod loss_retransmit;
pub mod rst_other_port;
pub mod stream_integrity;
pub mod sut_no_crash;
pub mod sws_avoidance;
pub mod zero_window_probes;
