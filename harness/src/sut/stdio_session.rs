//! One connection with a passive stdio SUT (`docs/driver-protocol.md`, "Other modes"), host a's kernel
//! socket on the other end. The start and end of a case follow the contract:
//!
//! - **Start**: a SUT in role `server` is waited for until its device is running (a TUN has carrier once the
//!   SUT opened it) or it wrote `hello` on stderr, at most [`READY_WAIT`]; a's connect is then retried, one
//!   attempt per [`CONNECT_ATTEMPT`], for at most [`CONNECT_WINDOW`]. For role `client`, a listens before the
//!   SUT starts and accepts for at most [`CONNECT_WINDOW`].
//! - **End**: both FINs acknowledged (a read the SUT's FIN, and a's own socket reached CLOSED, which Linux
//!   enters once its FIN was acknowledged) plus [`QUIET`]; or the SUT exited; or the session limit (the
//!   case's limit, at most [`SESSION_LIMIT`]). The SUT then gets [`crate::sut::process::EXIT_GRACE`] to exit;
//!   one still running is ended, which is not a failure by itself.
//!
//! a's socket is non-blocking and served by one loop (writes as the window allows, reads unless paused), so
//! a plan can hold a's reading back (zero-window probing by the SUT) without threads.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::stdio::{Ending, StdioSut};
use super::StdioRole;
use crate::error::HarnessError;
use crate::frame::Host;
use crate::lab::Lab;
use crate::sock::{ConnectOutcome, Family, Socket};

/// How long a server SUT is given to bring its device up (or say hello) before a connects anyway.
pub const READY_WAIT: Duration = Duration::from_secs(5);
/// One connect attempt of a (a SYN and the kernel's own retransmission at 1 s).
pub const CONNECT_ATTEMPT: Duration = Duration::from_millis(1500);
/// How long a keeps trying to connect (server role) or waits to accept (client role).
pub const CONNECT_WINDOW: Duration = Duration::from_secs(10);
/// After both FINs were acknowledged: nothing more is expected, frames still in flight are let in.
pub const QUIET: Duration = Duration::from_millis(300);
/// The longest a session runs, whatever the case limit.
pub const SESSION_LIMIT: Duration = Duration::from_secs(20);
/// How long a probe to another port of the SUT waits for its RST (RFC bounds: a user-space stack under load).
pub const OTHER_PORT_WAIT: Duration = Duration::from_millis(3000);

/// Who shuts down its sending side first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirstClose {
    /// a shuts down (WR) once it wrote everything; the SUT's stdin is fed only after it received a's bytes
    /// and a's FIN had time to arrive: the SUT sends while its peer has closed.
    A,
    /// The SUT's stdin is fed and closed at once; a writes only after it read the SUT's FIN: the SUT
    /// receives after it closed.
    Sut,
    /// Both send at once; each side closes once it sent everything (a after the SUT's FIN).
    Both,
}

/// What one session does.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    /// What the SUT sends (its stdin).
    pub sut_sends: Vec<u8>,
    /// What a sends.
    pub a_sends: Vec<u8>,
    pub first_close: FirstClose,
    /// a's SO_RCVBUF, set before the connection (a tiny one makes a's window close).
    pub a_rcvbuf: Option<i32>,
    /// a reads nothing for this long after the connection is up.
    pub a_read_pause: Duration,
    /// a's shutdown (WR) waits this long after a got its last byte into its socket (a FIN held back, so
    /// late copies of a's segments still meet an open connection).
    #[serde(default)]
    pub a_shut_delay: Duration,
    /// a connects to another port of the SUT once connected, and records what came back.
    pub probe_other_port: bool,
}

impl Plan {
    /// Data both ways, the given close order, nothing else.
    pub fn exchange(sut_sends: Vec<u8>, a_sends: Vec<u8>, first_close: FirstClose) -> Plan {
        Plan {
            sut_sends,
            a_sends,
            first_close,
            a_rcvbuf: None,
            a_read_pause: Duration::ZERO,
            a_shut_delay: Duration::ZERO,
            probe_other_port: false,
        }
    }
}

/// What a session saw.
#[derive(Debug, Clone)]
pub struct Session {
    pub role: StdioRole,
    /// The SUT's port of this connection (its listening port, or the port it connected from).
    pub sut_port: Option<u16>,
    /// Why the connection did not come up, if it did not.
    pub not_connected: Option<String>,
    pub a_received: Vec<u8>,
    /// a read the SUT's FIN.
    pub a_eof: bool,
    /// A read or write error of a's socket (`ECONNRESET`).
    pub a_error: Option<String>,
    /// Bytes a got into its socket.
    pub a_wrote: usize,
    /// What the SUT wrote on stdout, and whether it closed it.
    pub sut_stdout: Vec<u8>,
    pub sut_stdout_eof: bool,
    /// Both FINs were acknowledged (a's socket reached CLOSED after the SUT's FIN).
    pub closed_cleanly: bool,
    /// The session stopped at its limit, waiting for this.
    pub limit_hit: Option<String>,
    pub ending: Ending,
    pub stderr_tail: String,
    /// The other port probed and what a's connect to it ended in (`ECONNREFUSED`: a RST came).
    pub other_port: Option<(u16, String)>,
}

impl Session {
    /// The SUT crashed (exited with a non-zero status or a signal, by itself).
    pub fn crash(&self) -> Option<String> {
        self.ending.crash()
    }
}

/// Runs one session of `plan` with a fresh run of the lab's stdio SUT.
pub fn run(lab: &Lab, family: Family, plan: &Plan) -> Result<Session, HarnessError> {
    let Some((role, port)) = lab.stdio_mode() else {
        return Err(HarnessError::Usage(
            "this property needs a passive stdio SUT on b (--sut-mode stdio)".into(),
        ));
    };
    let limit = Duration::from_millis(
        lab.config()
            .sut
            .as_ref()
            .map_or(60_000, |s| s.case_limit_ms),
    )
    .min(SESSION_LIMIT);
    let a_addr = lab.addr(Host::A, family);
    let b_addr = lab.addr(Host::B, family);
    let rcvbuf = plan.a_rcvbuf;
    let a = lab.host(Host::A);
    let mut sut;
    let started = Instant::now();
    // The connection, on a's thread: a connected socket, or why there is none.
    let sock: Result<Socket, String> = match role {
        StdioRole::Client => {
            let listener = a.run(move || -> Result<Socket, HarnessError> {
                let l = Socket::tcp(family)?;
                l.set_reuse_addr(true)
                    .map_err(|e| crate::sock::socket_step("SO_REUSEADDR", e))?;
                if let Some(b) = rcvbuf {
                    l.set_rcvbuf(b)
                        .map_err(|e| crate::sock::socket_step("SO_RCVBUF", e))?;
                }
                l.bind(SocketAddr::new(a_addr, port))
                    .map_err(|e| crate::sock::socket_step("bind", e))?;
                l.listen(1)
                    .map_err(|e| crate::sock::socket_step("listen", e))?;
                Ok(l)
            })??;
            sut = lab.start_stdio()?;
            let mut got = Err(format!(
                "the SUT (role client) did not connect to a's port {port} within {} s",
                CONNECT_WINDOW.as_secs()
            ));
            let deadline = Instant::now() + CONNECT_WINDOW.min(limit);
            let mut listener = Some(listener);
            while Instant::now() < deadline {
                let l = listener
                    .take()
                    .expect("the listener is put back every round");
                let (l, accepted) = a.run(move || {
                    let r = if l.poll_readable(Duration::from_millis(100)) {
                        l.accept_now().ok().map(|(s, _)| s)
                    } else {
                        None
                    };
                    (l, r)
                })?;
                listener = Some(l);
                if let Some(s) = accepted {
                    got = Ok(s);
                    break;
                }
                if sut.exited().is_some() {
                    got = Err("the SUT exited before it connected".into());
                    break;
                }
            }
            got
        }
        StdioRole::Server => {
            sut = lab.start_stdio()?;
            let ready_by = Instant::now() + READY_WAIT;
            while Instant::now() < ready_by
                && !lab.b_device_running()
                && !sut.said_hello()
                && sut.exited().is_none()
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            let deadline = Instant::now() + CONNECT_WINDOW.min(limit);
            let mut got = Err(format!(
                "a could not connect to the SUT's port {port} within {} s",
                CONNECT_WINDOW.as_secs()
            ));
            while Instant::now() < deadline && sut.exited().is_none() {
                let outcome =
                    a.run(move || -> Result<(Option<Socket>, String), HarnessError> {
                        let s = Socket::tcp(family)?;
                        if let Some(b) = rcvbuf {
                            s.set_rcvbuf(b)
                                .map_err(|e| crate::sock::socket_step("SO_RCVBUF", e))?;
                        }
                        let o =
                            s.connect_timeout(SocketAddr::new(b_addr, port), CONNECT_ATTEMPT)?;
                        Ok(match o {
                            ConnectOutcome::Done(Ok(())) => (Some(s), o.to_string()),
                            _ => (None, o.to_string()),
                        })
                    })??;
                match outcome {
                    (Some(s), _) => {
                        got = Ok(s);
                        break;
                    }
                    (None, why) => {
                        got = Err(format!(
                            "a could not connect to the SUT's port {port}: last attempt {why}"
                        ));
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
            got
        }
    };
    let mut session = Session {
        role,
        sut_port: None,
        not_connected: None,
        a_received: Vec::new(),
        a_eof: false,
        a_error: None,
        a_wrote: 0,
        sut_stdout: Vec::new(),
        sut_stdout_eof: false,
        closed_cleanly: false,
        limit_hit: None,
        ending: Ending::Ended,
        stderr_tail: String::new(),
        other_port: None,
    };
    match sock {
        Err(why) => session.not_connected = Some(why),
        Ok(sock) => {
            let sock = a.run(move || {
                sock.set_nonblocking(true).ok();
                sock
            })?;
            let sut_port = a.run(move || {
                let p = sock.peer_addr().ok().map(|p| p.port());
                (sock, p)
            })?;
            let (sock, sut_port) = sut_port;
            session.sut_port = sut_port;
            if plan.probe_other_port {
                let own = sut_port.unwrap_or(port);
                let other = if own == u16::MAX { own - 1 } else { own + 1 };
                let o = a.run(move || -> Result<String, HarnessError> {
                    let s = Socket::tcp(family)?;
                    Ok(
                        s.connect_timeout(SocketAddr::new(b_addr, other), OTHER_PORT_WAIT)?
                            .to_string(),
                    )
                })??;
                session.other_port = Some((other, o));
            }
            converse(lab, &mut sut, sock, plan, limit, started, &mut session)?;
        }
    }
    session.ending = sut.end(super::process::EXIT_GRACE);
    let out = sut.stdout();
    session.sut_stdout = out.bytes;
    session.sut_stdout_eof = out.eof;
    session.stderr_tail = sut.stderr_tail();
    Ok(session)
}

/// The conversation over a's connected, non-blocking socket, until both FINs are acknowledged (plus
/// [`QUIET`]), the SUT exits, or the limit.
fn converse(
    lab: &Lab,
    sut: &mut StdioSut,
    sock: Socket,
    plan: &Plan,
    limit: Duration,
    started: Instant,
    session: &mut Session,
) -> Result<(), HarnessError> {
    let a = lab.host(Host::A);
    let connected = Instant::now();
    let mut fed = false;
    let mut a_shut = false;
    let mut sut_got_all_at: Option<Instant> = None;
    let mut a_wrote_all_at: Option<Instant> = None;
    let mut clean_at: Option<Instant> = None;
    let mut exited_at: Option<Instant> = None;
    let mut sock = Some(sock);
    let quiet_feed = Duration::from_millis(200);
    if matches!(plan.first_close, FirstClose::Sut | FirstClose::Both) {
        sut.feed(plan.sut_sends.clone(), true);
        fed = true;
    }
    loop {
        let now = Instant::now();
        if started.elapsed() > limit {
            session.limit_hit = Some(format!(
                "{} (a wrote {} of {} B, read {} B{}; the SUT printed {} of {} B)",
                if session.a_eof {
                    "the acknowledgement of a's FIN"
                } else {
                    "the SUT's FIN"
                },
                session.a_wrote,
                plan.a_sends.len(),
                session.a_received.len(),
                if session.a_eof { " and EOF" } else { "" },
                sut.stdout().bytes.len(),
                plan.a_sends.len()
            ));
            break;
        }
        if let Some(t) = clean_at {
            if now.duration_since(t) >= QUIET {
                session.closed_cleanly = true;
                break;
            }
        }
        if sut.exited().is_some() {
            let t = *exited_at.get_or_insert(now);
            // Frames it sent just before exiting are let in.
            if now.duration_since(t) >= QUIET {
                session.closed_cleanly = clean_at.is_some();
                break;
            }
        }
        // The SUT's side: feed its stdin when the plan says so.
        let out = sut.stdout();
        if out.bytes.len() >= plan.a_sends.len() && sut_got_all_at.is_none() && a_shut {
            sut_got_all_at = Some(now);
        }
        if !fed && plan.first_close == FirstClose::A {
            if let Some(t) = sut_got_all_at {
                if out.eof || now.duration_since(t) >= quiet_feed {
                    sut.feed(plan.sut_sends.clone(), true);
                    fed = true;
                }
            }
        }
        // a's side, one round on a's thread.
        let may_write = match plan.first_close {
            FirstClose::Sut => session.a_eof,
            FirstClose::A | FirstClose::Both => true,
        };
        let may_read = connected.elapsed() >= plan.a_read_pause;
        let shut_delay_over = plan.a_shut_delay.is_zero()
            || a_wrote_all_at.is_some_and(|t| now.duration_since(t) >= plan.a_shut_delay);
        let may_shut = shut_delay_over
            && match plan.first_close {
                FirstClose::A => true,
                FirstClose::Sut | FirstClose::Both => session.a_eof,
            };
        let s = sock.take().expect("the socket is put back every round");
        let wrote = session.a_wrote;
        let already_shut = a_shut;
        let pending: Vec<u8> = if may_write && !a_shut {
            plan.a_sends[wrote..].to_vec()
        } else {
            Vec::new()
        };
        let (s, round) = a.run(move || {
            let mut r = Round::default();
            if !pending.is_empty() {
                match s.send(&pending[..pending.len().min(64 * 1024)], 0) {
                    Ok(Ok(n)) => r.wrote = n,
                    Ok(Err(e)) if e.0 == libc::EAGAIN => {}
                    Ok(Err(e)) => r.error = Some(e.to_string()),
                    Err(e) => r.error = Some(e.to_string()),
                }
            }
            if !already_shut
                && pending.len() == r.wrote
                && may_write
                && may_shut
                && r.error.is_none()
            {
                r.shut = s.shutdown(libc::SHUT_WR).is_ok();
            }
            if may_read {
                loop {
                    match s.recv_now(64 * 1024, libc::MSG_DONTWAIT) {
                        Ok(got) if got.data.is_empty() => {
                            r.eof = true;
                            break;
                        }
                        Ok(got) => r.read.extend_from_slice(&got.data),
                        Err(e) if e.0 == libc::EAGAIN => break,
                        Err(e) => {
                            r.error = Some(e.to_string());
                            break;
                        }
                    }
                }
            }
            r.state = s.tcp_info().map(|i| i.state);
            if !r.eof && r.read.is_empty() && r.wrote == 0 {
                if may_read {
                    s.poll(libc::POLLIN, Duration::from_millis(5));
                } else {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            (s, r)
        })?;
        sock = Some(s);
        session.a_wrote += round.wrote;
        if session.a_wrote == plan.a_sends.len() && a_wrote_all_at.is_none() {
            a_wrote_all_at = Some(Instant::now());
        }
        session.a_received.extend_from_slice(&round.read);
        session.a_eof |= round.eof;
        if round.shut {
            a_shut = true;
        }
        if let Some(e) = round.error {
            session.a_error.get_or_insert(e);
            if exited_at.is_none() {
                exited_at = Some(now);
            }
        }
        // Linux's CLOSE (7) after the SUT's FIN: a's FIN was acknowledged (include/net/tcp_states.h).
        if clean_at.is_none() && session.a_eof && a_shut && round.state == Some(7) {
            clean_at = Some(Instant::now());
        }
        if sut.exited().is_none() && round.state.is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // a's socket is closed on a's thread (a RST if it still holds unread data: the case is over).
    let s = sock.take();
    a.run(move || drop(s))?;
    Ok(())
}

#[derive(Default)]
struct Round {
    wrote: usize,
    read: Vec<u8>,
    eof: bool,
    shut: bool,
    error: Option<String>,
    state: Option<u8>,
}
