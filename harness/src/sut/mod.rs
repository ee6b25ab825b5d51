//! Systems under test beyond the kernel (the SUT contract, interface `netconform-sut/1`). Student and
//! user-space stacks are untrusted code; everything here assumes so.
//!
//! - [`sandbox`] — starts an untrusted SUT process in its own PID and mount namespaces inside a lab host's
//!   network namespace, as a pooled unprivileged uid with rlimits, and ends it leaving nothing behind.

pub mod sandbox;
