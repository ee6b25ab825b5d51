//! The scripted peer link: only host `b` is a kernel, and its TUN device's other end is [`Peer`], through which
//! netconform plays `a` — packets written into the TUN arrive at b, packets b sends are read from it; both are
//! recorded. What to send and expect is a script ([`crate::script`]), which runs on top of this link.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::HarnessError;
use crate::frame::{Frame, Host, LinkType};
use crate::record::Recorder;

/// The peer's end of the TUN device in b.
pub struct Peer {
    pub tun: Arc<OwnedFd>,
    pub recorder: Arc<Recorder>,
}

impl Peer {
    fn record(&self, origin: Host, data: Vec<u8>) {
        self.recorder.record_frame(Frame {
            ts_ns: crate::record::realtime_ns(),
            origin: Some(origin),
            link: LinkType::RawIp,
            data,
        });
    }

    /// Reads one packet from b, waiting at most `timeout`.
    pub fn read(&self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65_600];
        loop {
            // SAFETY: buf is valid for its length; the fd is non-blocking.
            let n = unsafe {
                libc::read(
                    self.tun.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                )
            };
            if n > 0 {
                let pkt = buf[..n as usize].to_vec();
                self.record(Host::B, pkt.clone());
                return Some(pkt);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let mut pfd = libc::pollfd {
                fd: self.tun.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
        }
    }

    pub fn write(&self, pkt: Vec<u8>) -> Result<(), HarnessError> {
        // SAFETY: pkt is valid for its length.
        let w = unsafe {
            libc::write(
                self.tun.as_raw_fd(),
                pkt.as_ptr() as *const libc::c_void,
                pkt.len(),
            )
        };
        if w != pkt.len() as isize {
            return Err(HarnessError::Socket(format!(
                "peer: write into TUN: {}",
                std::io::Error::last_os_error()
            )));
        }
        self.record(Host::A, pkt);
        Ok(())
    }
}
