//! Packet ends: descriptors on which one `read()` returns one whole IP packet and one `write()` sends one —
//! a TUN device opened with `IFF_NO_PI` ([`crate::link::tun`]), one end of
//! `socketpair(AF_UNIX, SOCK_SEQPACKET)`, or a packet socket bound to a device whose frames are bare IP
//! packets. The relay forwards between two of them ([`crate::link::relay::forward`]) and the scripted
//! [`Peer`] is one with every packet recorded.
//!
//! A packet end carries IP packets ([`LinkType::RawIp`]) unless it is marked [`PacketEnd::ethernet`]: a TAP
//! device or a packet socket on one, whose reads and writes are whole Ethernet frames.
//!
//! Left out: stream descriptors (a read could return half a packet or two).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::HarnessError;
use crate::frame::{Frame, Host, LinkType};
use crate::record::Recorder;

/// Largest packet a packet end reads (64 KiB IP packets plus room).
pub const MAX_PACKET: usize = 65_600;

/// A descriptor on which one read or write is one IP packet, switched to non-blocking when it is handed over.
#[derive(Debug)]
pub struct PacketEnd {
    fd: OwnedFd,
    link: LinkType,
    /// A packet socket on a SUT's TUN/TAP device, which has a reader only while a SUT process holds it.
    detachable: bool,
}

/// What one non-blocking read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A packet of this many bytes is at the start of the buffer.
    Packet(usize),
    /// Nothing queued now (EAGAIN), or a read error (the packet, if any, is lost to the reader).
    Nothing,
    /// The other side closed it (a read of 0 bytes: a socketpair's other end is gone). A TUN device never
    /// reports this.
    Closed,
}

impl PacketEnd {
    /// Takes over `fd`, making it non-blocking (readers drain it until nothing is left).
    pub fn new(fd: OwnedFd) -> std::io::Result<PacketEnd> {
        // SAFETY: plain fcntl on a descriptor we own.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        if flags < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if flags & libc::O_NONBLOCK == 0 {
            // SAFETY: as above.
            if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(PacketEnd {
            fd,
            link: LinkType::RawIp,
            detachable: false,
        })
    }

    /// The same end, marked as a packet socket on a SUT's device (see [`PacketEnd::no_reader`]).
    pub fn on_sut_device(self) -> PacketEnd {
        PacketEnd {
            detachable: true,
            ..self
        }
    }

    /// Whether `error` from [`PacketEnd::write`] means the device had no reader: ENOBUFS from a packet socket
    /// that bypasses the qdisc on a TUN/TAP device whose queues are stopped because no process has it open
    /// (a stdio SUT between runs or after it exited). The packet is lost as to a host that is down.
    pub fn no_reader(&self, error: &std::io::Error) -> bool {
        self.detachable && error.raw_os_error() == Some(libc::ENOBUFS)
    }

    /// The same end, carrying Ethernet frames (a TAP device, or a packet socket on one).
    pub fn ethernet(self) -> PacketEnd {
        PacketEnd {
            link: LinkType::Ethernet,
            ..self
        }
    }

    /// What one packet of this end is: an IP packet, or an Ethernet frame.
    pub fn link(&self) -> LinkType {
        self.link
    }

    /// Reads one packet into `buf` without waiting.
    pub fn try_read(&self, buf: &mut [u8]) -> Received {
        // SAFETY: buf is valid for its length; the fd is non-blocking.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        };
        match n {
            n if n > 0 => Received::Packet(n as usize),
            0 => Received::Closed,
            _ => Received::Nothing,
        }
    }

    /// Waits until a packet can be read, at most `timeout_ms` (0: just look).
    pub fn wait_readable(&self, timeout_ms: i32) {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    }

    /// Writes one whole packet; a short write is an error.
    pub fn write(&self, pkt: &[u8]) -> std::io::Result<()> {
        // SAFETY: pkt is valid for its length.
        let w = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                pkt.as_ptr() as *const libc::c_void,
                pkt.len(),
            )
        };
        if w < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if w as usize != pkt.len() {
            return Err(std::io::Error::other(format!(
                "wrote {w} of {} bytes",
                pkt.len()
            )));
        }
        Ok(())
    }
}

impl AsRawFd for PacketEnd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The scripted peer: a packet end through which netconform plays host `a` — packets written into it arrive
/// at b, packets b sends are read from it; both are recorded (built by [`crate::link::peer`]).
pub struct Peer {
    end: PacketEnd,
    recorder: Arc<Recorder>,
}

impl Peer {
    pub fn new(end: PacketEnd) -> Peer {
        Peer {
            end,
            recorder: Arc::new(Recorder::default()),
        }
    }

    /// What the peer's packets are recorded into (the lab's capture).
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }

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
        let mut buf = vec![0u8; MAX_PACKET];
        loop {
            if let Received::Packet(n) = self.end.try_read(&mut buf) {
                let pkt = buf[..n].to_vec();
                self.record(Host::B, pkt.clone());
                return Some(pkt);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.end.wait_readable(left.as_millis().max(1) as i32);
        }
    }

    /// Sends one packet to b, as a.
    pub fn write(&self, pkt: Vec<u8>) -> Result<(), HarnessError> {
        self.end
            .write(&pkt)
            .map_err(|e| HarnessError::Socket(format!("peer: write into TUN: {e}")))?;
        self.record(Host::A, pkt);
        Ok(())
    }
}
