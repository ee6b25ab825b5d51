//! AF_PACKET capture on the lab link, with kernel nanosecond timestamps and direction.
//!
//! One `SOCK_RAW` packet socket is opened in host `a` and bound to its veth end, so it sees every frame of the
//! link: `PACKET_OUTGOING` frames left `a`, all others left `b`. The socket is created with protocol 0 (it
//! receives nothing) and only then bound with `ETH_P_ALL` to the one interface, so no frame of another
//! interface slips in between. `SO_TIMESTAMPNS` gives each frame the kernel's receive/transmit time.
//!
//! A drain thread empties the socket while the case runs, so long transfers do not overflow the receive
//! buffer; [`Capture::stop`] drains what is left and reads `PACKET_STATISTICS`. Any drop makes the case
//! `invalid` (the caller decides), never a pass.

use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::error::{HarnessError, Result};
use crate::frame::{Frame, Host, LinkType};

/// Receive buffer asked for with SO_RCVBUFFORCE (root may exceed rmem_max).
const CAPTURE_RCVBUF: i32 = 32 << 20;
/// Largest frame we accept (veth MTU up to 64 KiB plus headers).
const MAX_FRAME: usize = 65_600;
/// linux/if_packet.h
const PACKET_OUTGOING: u8 = 4;
const PACKET_STATISTICS: i32 = 6;

/// What a capture produced.
#[derive(Debug, Clone)]
pub struct Captured {
    pub frames: Vec<Frame>,
    /// Frames lost by the capture itself (PACKET_STATISTICS tp_drops), or packets the relay lost without
    /// being told to: either makes the case invalid.
    pub drops: u32,
    /// What the relay did on purpose to recorded frames (empty on veth).
    pub link_events: Vec<crate::record::LinkEvent>,
}

/// A running capture: AF_PACKET on veth, or the relay's own recording.
pub struct Capture {
    inner: Inner,
}

enum Inner {
    Packet(PacketCapture),
    Relay(std::sync::Arc<crate::record::Recorder>),
}

impl Capture {
    /// Opens the packet socket in the calling thread's namespace (a lab host thread) on `ifindex`.
    pub fn open_on_this_thread(ifindex: u32) -> Result<Capture> {
        Ok(Capture {
            inner: Inner::Packet(PacketCapture::open_on_this_thread(ifindex)?),
        })
    }

    /// Starts the relay's recording.
    pub fn from_relay(recorder: std::sync::Arc<crate::record::Recorder>) -> Capture {
        recorder.start();
        Capture {
            inner: Inner::Relay(recorder),
        }
    }

    /// Stops the capture, collects every frame and the drop count.
    pub fn stop(self) -> Result<Captured> {
        match self.inner {
            Inner::Packet(p) => p.stop(),
            Inner::Relay(r) => {
                let (frames, events, drops) = r.stop();
                // Both directions record into one list; order it by timestamp and move the events along.
                let mut order: Vec<usize> = (0..frames.len()).collect();
                order.sort_by_key(|&i| frames[i].ts_ns);
                let mut new_index = vec![0; frames.len()];
                for (new, &old) in order.iter().enumerate() {
                    new_index[old] = new;
                }
                let link_events = events
                    .into_iter()
                    .map(|e| crate::record::LinkEvent {
                        frame: new_index[e.frame],
                        kind: e.kind,
                    })
                    .collect();
                let mut slots: Vec<Option<Frame>> = frames.into_iter().map(Some).collect();
                let frames = order
                    .iter()
                    .map(|&i| slots[i].take().expect("each frame once"))
                    .collect();
                Ok(Captured {
                    frames,
                    drops: drops as u32,
                    link_events,
                })
            }
        }
    }
}

/// AF_PACKET capture.
struct PacketCapture {
    fd: Arc<OwnedFd>,
    frames: Arc<Mutex<Vec<Frame>>>,
    stop: Arc<AtomicBool>,
    drain: Option<thread::JoinHandle<()>>,
    /// The first error the drain thread met.
    error: Arc<Mutex<Option<String>>>,
}

fn os_err(step: &str) -> HarnessError {
    HarnessError::capture(step, std::io::Error::last_os_error())
}

/// Keeps the kernel's receive timestamping switched on for the whole process.
///
/// SO_TIMESTAMPNS turns on a global static key (`netstamp_needed_key`) that makes the stack stamp frames when
/// they are tapped; the key is reference-counted and switched by deferred work (`netstamp_work`), so when the
/// last capture of one lab closes and the next one opens, the first frames of the new lab can be left
/// unstamped and get the time of the drain thread's `recvmsg` instead, later than the frames stamped once
/// the key is back on. Sorted by timestamp, a case then showed a FIN before its SYN (seen under load with
/// several runs in parallel). One socket with SO_TIMESTAMPNS held for the process's lifetime keeps the key
/// on; it is a UDP socket that never sends, created on the first capture's lab thread (so it lives in, and
/// keeps alive, that lab's namespace until the process exits), and the first capture waits for the
/// deferred switch.
fn keep_timestamping_on() {
    static ANCHOR: std::sync::OnceLock<Option<OwnedFd>> = std::sync::OnceLock::new();
    ANCHOR.get_or_init(|| {
        // SAFETY: plain syscall; the fd is owned right after.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return None;
        }
        // SAFETY: fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let on: i32 = 1;
        // SAFETY: `on` is a live c_int.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                &on as *const i32 as *const libc::c_void,
                size_of::<i32>() as libc::socklen_t,
            )
        };
        // The key is switched by a work item: give it time to run once.
        thread::sleep(std::time::Duration::from_millis(50));
        Some(fd)
    });
}

impl PacketCapture {
    fn open_on_this_thread(ifindex: u32) -> Result<PacketCapture> {
        keep_timestamping_on();
        // SAFETY: plain syscall; the fd is owned right after.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(os_err("socket(AF_PACKET)"));
        }
        // SAFETY: fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let set = |level: i32, name: i32, value: i32, step: &str| -> Result<()> {
            // SAFETY: value is a live c_int.
            let r = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    level,
                    name,
                    &value as *const i32 as *const libc::c_void,
                    size_of::<i32>() as libc::socklen_t,
                )
            };
            if r < 0 {
                Err(os_err(step))
            } else {
                Ok(())
            }
        };
        // SO_RCVBUFFORCE needs CAP_NET_ADMIN in the initial user namespace; rootless labs (a user namespace
        // of their own) get SO_RCVBUF, clamped to net.core.rmem_max — a capture that then drops frames makes
        // its case invalid, never a pass.
        set(
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            CAPTURE_RCVBUF,
            "SO_RCVBUFFORCE",
        )
        .or_else(|e| match e {
            HarnessError::Capture { ref source, .. }
                if source.raw_os_error() == Some(libc::EPERM) =>
            {
                set(
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    CAPTURE_RCVBUF,
                    "SO_RCVBUF",
                )
            }
            other => Err(other),
        })?;
        set(libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1, "SO_TIMESTAMPNS")?;
        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: sll is a valid sockaddr_ll.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sll as *const _ as *const libc::sockaddr,
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(os_err("bind(AF_PACKET, ETH_P_ALL)"));
        }
        // Reset the statistics so only this capture's drops count.
        read_stats(fd.as_raw_fd())?;
        let fd = Arc::new(fd);
        let frames = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let error = Arc::new(Mutex::new(None));
        let drain = {
            let (fd, frames, stop, error) =
                (fd.clone(), frames.clone(), stop.clone(), error.clone());
            thread::Builder::new()
                .name("capture".into())
                .spawn(move || {
                    let mut buf = vec![0u8; MAX_FRAME];
                    while !stop.load(Ordering::Acquire) {
                        let mut pfd = libc::pollfd {
                            fd: fd.as_raw_fd(),
                            events: libc::POLLIN,
                            revents: 0,
                        };
                        // SAFETY: one valid pollfd.
                        unsafe { libc::poll(&mut pfd, 1, 5) };
                        if let Err(e) = drain_now(fd.as_raw_fd(), &mut buf, &frames) {
                            error.lock().unwrap().get_or_insert(e);
                            return;
                        }
                    }
                })
                .map_err(|e| HarnessError::capture("spawn drain thread", e))?
        };
        Ok(PacketCapture {
            fd,
            frames,
            stop,
            drain: Some(drain),
            error,
        })
    }

    fn stop(mut self) -> Result<Captured> {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.drain.take() {
            let _ = t.join();
        }
        if let Some(e) = self.error.lock().unwrap().take() {
            return Err(HarnessError::capture("read", std::io::Error::other(e)));
        }
        let mut buf = vec![0u8; MAX_FRAME];
        drain_now(self.fd.as_raw_fd(), &mut buf, &self.frames)
            .map_err(|e| HarnessError::capture("final read", std::io::Error::other(e)))?;
        let drops = read_stats(self.fd.as_raw_fd())?;
        let mut frames = std::mem::take(&mut *self.frames.lock().unwrap());
        // Timestamps of frames from the two directions can interleave out of order in the queue.
        frames.sort_by_key(|f| f.ts_ns);
        Ok(Captured {
            frames,
            drops,
            link_events: Vec::new(),
        })
    }
}

impl Drop for PacketCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn read_stats(fd: RawFd) -> Result<u32> {
    // struct tpacket_stats { unsigned int tp_packets; unsigned int tp_drops; }
    let mut stats = [0u32; 2];
    let mut len = size_of::<[u32; 2]>() as libc::socklen_t;
    // SAFETY: stats/len describe a valid buffer of the kernel's struct size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            PACKET_STATISTICS,
            stats.as_mut_ptr() as *mut libc::c_void,
            &mut len,
        )
    };
    if r < 0 {
        return Err(os_err("getsockopt(PACKET_STATISTICS)"));
    }
    Ok(stats[1])
}

/// Reads every queued frame without blocking.
fn drain_now(
    fd: RawFd,
    buf: &mut [u8],
    frames: &Mutex<Vec<Frame>>,
) -> std::result::Result<(), String> {
    loop {
        match recv_frame(fd, buf) {
            Ok(Some(frame)) => frames.lock().unwrap().push(frame),
            Ok(None) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

fn recv_frame(fd: RawFd, buf: &mut [u8]) -> std::result::Result<Option<Frame>, String> {
    // SAFETY: all-zero is valid for these plain structs.
    let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = &mut sll as *mut _ as *mut libc::c_void;
    msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = size_of::<[u64; 16]>();
    // SAFETY: msg points at live buffers.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT | libc::MSG_TRUNC) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
            _ => Err(format!("recvmsg: {e}")),
        };
    }
    let n = n as usize;
    if n > buf.len() {
        return Err(format!(
            "frame of {n} bytes is larger than the capture buffer ({})",
            buf.len()
        ));
    }
    let mut ts_ns = None;
    // SAFETY: the CMSG macros walk the control buffer the kernel filled, bounded by msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SO_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::timespec);
                ts_ns = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    let ts_ns =
        ts_ns.ok_or_else(|| "frame without a kernel timestamp (SO_TIMESTAMPNS)".to_string())?;
    let origin = if sll.sll_pkttype == PACKET_OUTGOING {
        Host::A
    } else {
        Host::B
    };
    Ok(Some(Frame {
        ts_ns,
        origin: Some(origin),
        link: LinkType::Ethernet,
        data: buf[..n].to_vec(),
    }))
}

pub use crate::record::realtime_ns;
