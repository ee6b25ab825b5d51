//! The passive stdio mode, `netconform-sut-smoltcp --stdio` (docs/driver-protocol.md, "Other modes: stdio
//! stream"): smoltcp as a student's `tcp_ipv4` or netcat would be run, with no protocol. One connection — to
//! `NETCONFORM_PEER` port `NETCONFORM_PORT` when `NETCONFORM_ROLE=client`, accepted on that port when `server` —
//! whose bytes are this process's stdio: stdin is what it sends (EOF: `close()`, a FIN after the data), stdout
//! what it received (closed at the peer's FIN). It exits once both directions are done: the connection is in
//! TIME-WAIT with the ACK of the peer's FIN sent, or CLOSED.
//!
//! The link and the stack are set up as in driven mode ([`crate::stack`]), except the random seed: each run is
//! a new boot of the stack, and smoltcp's ISNs come from its seed (`Config::random_seed`: "strongly recommended
//! that the random seed be different on each boot"), so `NETCONFORM_SEED` is mixed with the clock. A RST ends
//! the run too, with status 0 and a line on stderr: being reset is the peer's doing, not a crash.

use std::io::Write;

use smoltcp::iface::SocketSet;
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

use crate::fault::Fault;
use crate::{link, Options};

/// In TIME-WAIT the only timer left is smoltcp's TIME-WAIT timer (10 s); anything due sooner is an ACK still to
/// send (smoltcp delays ACKs by 10 ms, the ACK of a FIN too).
const ONLY_TIME_WAIT_LEFT: Duration = Duration::from_secs(1);

pub fn run(fault: Option<Fault>) -> Result<(), String> {
    let role = std::env::var("NETCONFORM_ROLE").map_err(|_| "NETCONFORM_ROLE is not set")?;
    let port: u16 = std::env::var("NETCONFORM_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .ok_or("NETCONFORM_PORT is not a port")?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let seed = crate::env_seed() ^ now.map_or(0, |t| t.as_nanos() as u64);
    let (mut iface, mut link, peer) = crate::stack(fault, seed)?;
    let mut socket = crate::tcp_socket(&Options::default());
    match role.as_str() {
        "server" => socket.listen(port).map_err(|e| format!("listen: {e}"))?,
        "client" => socket
            .connect(
                iface.context(),
                IpEndpoint::new(peer, port),
                crate::first_ephemeral_port(seed),
            )
            .map_err(|e| format!("connect: {e}"))?,
        other => return Err(format!("NETCONFORM_ROLE={other:?}: server or client")),
    }
    let mut sockets = SocketSet::new(Vec::new());
    let handle = sockets.add(socket);
    link::set_nonblocking(0).map_err(|e| format!("stdin: {e}"))?;
    eprintln!("netconform-sut-smoltcp: hello, stdio {role} on port {port}");

    let mut outgoing = Vec::new(); // read from stdin, not yet taken by the socket
    let (mut stdin_open, mut stdout_open, mut closed) = (true, true, false);
    loop {
        iface.poll(Instant::now(), &mut link, &mut sockets);
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        // What came in goes to stdout; the peer's FIN closes it.
        while stdout_open {
            match socket.recv(|data| (data.len(), data.to_vec())) {
                Ok(data) if data.is_empty() => break,
                Ok(data) => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&data)
                        .and_then(|()| out.flush())
                        .map_err(|e| format!("stdout: {e}"))?;
                }
                Err(tcp::RecvError::Finished) => {
                    // SAFETY: nothing is written to stdout after this.
                    unsafe { libc::close(1) };
                    stdout_open = false;
                }
                Err(tcp::RecvError::InvalidState) => break, // not connected yet, or reset
            }
        }
        // What stdin gives goes out; its EOF, once everything is queued, is the FIN.
        if stdin_open && outgoing.is_empty() {
            let mut chunk = [0u8; 65536];
            // SAFETY: the buffer and its length are passed together; stdin is non-blocking.
            match unsafe { libc::read(0, chunk.as_mut_ptr().cast(), chunk.len()) } {
                0 => stdin_open = false,
                n if n > 0 => outgoing.extend_from_slice(&chunk[..n as usize]),
                _ => {} // EAGAIN
            }
        }
        if socket.may_send() {
            let n = socket.send_slice(&outgoing).unwrap_or(0);
            outgoing.drain(..n);
            if !stdin_open && outgoing.is_empty() && !closed {
                socket.close();
                closed = true;
            }
        }
        let delay = iface.poll_delay(Instant::now(), &sockets);
        match sockets.get::<tcp::Socket>(handle).state() {
            State::Closed => {
                let both_fins = closed && !stdout_open;
                if !both_fins {
                    eprintln!("netconform-sut-smoltcp: the connection was reset or refused");
                }
                return Ok(());
            }
            State::TimeWait if delay.is_none_or(|d| d >= ONLY_TIME_WAIT_LEFT) => return Ok(()),
            State::Listen
            | State::SynSent
            | State::SynReceived
            | State::Established
            | State::FinWait1
            | State::FinWait2
            | State::CloseWait
            | State::Closing
            | State::LastAck
            | State::TimeWait => {}
        }
        link.wait(delay, (stdin_open && outgoing.is_empty()).then_some(0));
    }
}
