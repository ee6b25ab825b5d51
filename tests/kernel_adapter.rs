//! The kernel adapter `netconform-sut-kernel` speaks docs/driver-protocol.md over real sockets.
//!
//! Each test runs the built adapter in a network namespace it creates (a thread calls `unshare(CLONE_NEWNET)`,
//! brings `lo` up with `SIOCSIFFLAGS` and spawns the adapter, which inherits the thread's namespace), with the
//! lab addresses on loopback: no traffic leaves a namespace the test made. Every assertion is on a real reply.
//! Needs root (CAP_SYS_ADMIN for the namespace).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ADAPTER: &str = env!("CARGO_BIN_EXE_netconform-sut-kernel");

/// How long past a request's `timeout_ms` the protocol lets the adapter take (docs/driver-protocol.md,
/// "Deadlines": no reply by `timeout_ms` + 1 s is a hung SUT).
const REPLY_GRACE: Duration = Duration::from_secs(1);

/// The lab of one test: which family, and the loopback addresses standing for both hosts.
#[derive(Clone, Copy)]
enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    fn env(self) -> Vec<(&'static str, &'static str)> {
        let family = match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        };
        vec![
            ("NETCONFORM_ADDR", "127.0.0.1/8"),
            ("NETCONFORM_PEER", "127.0.0.1"),
            ("NETCONFORM_ADDR6", "::1/128"),
            ("NETCONFORM_PEER6", "::1"),
            ("NETCONFORM_MTU", "65536"),
            ("NETCONFORM_FAMILY", family),
            ("NETCONFORM_SEED", "1"),
            ("NETCONFORM_CASE", "kernel_adapter"),
        ]
    }
}

/// One running adapter, driven request by request.
struct Sut {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    next_id: u64,
    hello: Value,
}

impl Sut {
    /// Sends one request (its id filled in) and returns the reply, checked to carry that id.
    fn request(&mut self, mut request: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        request["id"] = json!(id);
        let timeout = Duration::from_millis(request["timeout_ms"].as_u64().unwrap_or(0));
        self.send_raw(&request.to_string());
        let reply = self.next_reply(timeout + REPLY_GRACE);
        assert_eq!(reply["id"], json!(id), "reply to {request}: {reply}");
        reply
    }

    fn send_raw(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("adapter's stdin");
        stdin.flush().expect("adapter's stdin");
    }

    /// The next line with an id (events are skipped), within `within`.
    fn next_reply(&mut self, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no reply within {within:?}; adapter stderr:\n{}",
                    self.stderr.lock().unwrap()
                )
            });
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("adapter wrote a line that is not JSON ({e}): {line}"));
            if value.get("event").is_some() && value.get("id").is_none() {
                continue;
            }
            return value;
        }
    }

    /// `ok:true`, or a panic naming the reply.
    fn ok(&mut self, request: Value) -> Value {
        let reply = self.request(request.clone());
        assert_eq!(reply["ok"], json!(true), "{request} → {reply}");
        reply
    }

    /// The errno name of a failed request, or a panic naming the reply.
    fn err(&mut self, request: Value) -> String {
        let reply = self.request(request.clone());
        assert_eq!(reply["ok"], json!(false), "{request} should fail: {reply}");
        reply["err"]
            .as_str()
            .unwrap_or_else(|| panic!("no err in {reply}"))
            .to_string()
    }

    fn socket(&mut self, kind: &str) -> u64 {
        let reply = self.ok(json!({"op": "socket", "kind": kind}));
        reply["sock"]
            .as_u64()
            .unwrap_or_else(|| panic!("no sock in {reply}"))
    }

    /// A TCP socket listening on `port` of the lab address.
    fn listener(&mut self, port: u16, backlog: u32) -> u64 {
        let sock = self.socket("tcp");
        self.ok(json!({"op": "bind", "sock": sock, "port": port}));
        self.ok(json!({"op": "listen", "sock": sock, "backlog": backlog}));
        sock
    }

    /// An established connection to a fresh listener on `port`: (client, accepted server side, listener).
    fn connected_pair(&mut self, port: u16) -> (u64, u64, u64) {
        let listener = self.listener(port, 4);
        let client = self.socket("tcp");
        self.ok(json!({"op": "connect", "sock": client, "port": port, "timeout_ms": 1000}));
        let server = self.ok(json!({"op": "accept", "sock": listener, "timeout_ms": 1000}))["sock"]
            .as_u64()
            .expect("accepted sock");
        (client, server, listener)
    }

    fn state(&mut self, sock: u64) -> String {
        self.ok(json!({"op": "state", "sock": sock}))["state"]
            .as_str()
            .expect("state name")
            .to_string()
    }

    /// Asks for the state until it is `want` (the kernel gets there within a round trip on loopback).
    fn wait_for_state(&mut self, sock: u64, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let state = self.state(sock);
            if state == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sock {sock} stays {state}, not {want}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn write(&mut self, sock: u64, data: &[u8]) -> u64 {
        let reply =
            self.ok(json!({"op": "write", "sock": sock, "data": encode(data), "timeout_ms": 500}));
        reply["n"].as_u64().expect("n")
    }

    /// Reads until `len` bytes came (loopback may split them), each read with a deadline.
    fn read_exactly(&mut self, sock: u64, len: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < len {
            let reply =
                self.ok(json!({"op": "read", "sock": sock, "max": 65536, "timeout_ms": 1000}));
            assert_eq!(reply["eof"], json!(false), "early eof: {reply}");
            got.extend(decode(reply["data"].as_str().expect("data")));
        }
        got
    }

    /// Waits until the adapter's stderr (read by another thread) contains `text`.
    fn wait_for_stderr(&self, text: &str) {
        let deadline = Instant::now() + REPLY_GRACE;
        loop {
            let stderr = self.stderr.lock().unwrap().clone();
            if stderr.contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} not on stderr within {REPLY_GRACE:?}:\n{stderr}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Closes stdin and returns how long the adapter took to exit, and whether it exited 0.
    fn end(&mut self) -> (Duration, bool) {
        drop(self.stdin.take());
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (start.elapsed(), status.success());
            }
            if start.elapsed() > Duration::from_secs(5) {
                return (start.elapsed(), false);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Sut {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// `count` adapters sharing one fresh network namespace, each past its hello.
fn adapters_in_fresh_namespace(family: Family, count: usize) -> Vec<Sut> {
    let children = std::thread::spawn(move || -> Result<Vec<Child>, String> {
        // SAFETY: unshare only changes this thread's namespaces; it is a thread of our own that ends here.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!(
                "unshare(CLONE_NEWNET): {} (these tests need root)",
                std::io::Error::last_os_error()
            ));
        }
        bring_loopback_up().map_err(|e| format!("bringing lo up: {e}"))?;
        (0..count)
            .map(|_| {
                let mut command = Command::new(ADAPTER);
                for (name, _) in std::env::vars() {
                    if name.starts_with("NETCONFORM_") {
                        command.env_remove(name);
                    }
                }
                command
                    .envs(family.env())
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("spawning {ADAPTER}: {e}"))
            })
            .collect()
    })
    .join()
    .expect("namespace thread")
    .unwrap_or_else(|e| panic!("{e}"));
    children.into_iter().map(start).collect()
}

/// Reader threads for stdout and stderr, then the hello.
fn start(mut child: Child) -> Sut {
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut pipe = child.stderr.take().expect("piped stderr");
    let sink = Arc::clone(&stderr);
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    let stdin = child.stdin.take();
    let mut sut = Sut {
        child,
        stdin,
        lines,
        stderr,
        next_id: 1,
        hello: Value::Null,
    };
    // The protocol gives the SUT 5 s to speak first.
    sut.hello = sut.next_reply(Duration::from_secs(5));
    sut
}

fn one_adapter(family: Family) -> Sut {
    adapters_in_fresh_namespace(family, 1).pop().unwrap()
}

/// `ip link set lo up`, by ioctl, in the calling thread's namespace.
fn bring_loopback_up() -> std::io::Result<()> {
    // SAFETY: a socket we close below; ifreq is plain old data, its name NUL-terminated by zeroing.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut request: libc::ifreq = std::mem::zeroed();
        for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo") {
            *slot = *byte as libc::c_char;
        }
        let mut result = Ok(());
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut request) < 0 {
            result = Err(std::io::Error::last_os_error());
        } else {
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &request) < 0 {
                result = Err(std::io::Error::last_os_error());
            }
        }
        libc::close(fd);
        result
    }
}

// Base64 (RFC 4648 §4), written again here so that the test does not trust the adapter's own.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut group = [0u8; 3];
        group[..chunk.len()].copy_from_slice(chunk);
        let bits = u32::from_be_bytes([0, group[0], group[1], group[2]]);
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                ALPHABET[(bits >> (18 - 6 * i)) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    out
}

fn decode(text: &str) -> Vec<u8> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        let value = ALPHABET
            .iter()
            .position(|&a| a == c)
            .unwrap_or_else(|| panic!("{c:?} is not base64 in {text:?}"))
            as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

/// Bytes that are not text, so that a base64 slip shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
}

#[test]
fn hello_names_the_protocol_the_kernel_and_every_cap() {
    let sut = one_adapter(Family::Ipv4);
    let hello = &sut.hello;
    assert_eq!(hello["hello"], json!("netconform-sut/1"), "{hello}");
    let stack = hello["stack"].as_str().expect("stack");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    assert_eq!(stack, format!("linux {}", release.trim()));
    assert_eq!(hello["families"], json!(["ipv4", "ipv6"]));
    let caps: Vec<&str> = hello["caps"]
        .as_array()
        .expect("caps")
        .iter()
        .map(|c| c.as_str().expect("cap name"))
        .collect();
    for cap in [
        "tcp",
        "udp",
        "set_opt:rcv_buf",
        "set_opt:snd_buf",
        "set_opt:no_delay",
        "shutdown_wr",
        "shutdown_rd",
        "abort",
        "state",
        "multi_conn",
        "ipv6",
    ] {
        assert!(caps.contains(&cap), "{cap} missing from {caps:?}");
    }
}

#[test]
fn tcp_round_trip_then_half_close_then_abort() {
    let mut sut = one_adapter(Family::Ipv4);
    let listener = sut.listener(5000, 4);
    assert_eq!(sut.state(listener), "LISTEN");

    let client = sut.socket("tcp");
    assert_eq!(sut.state(client), "CLOSED");
    sut.ok(json!({"op": "connect", "sock": client, "port": 5000, "timeout_ms": 1000}));
    assert_eq!(sut.state(client), "ESTABLISHED");
    let server = sut.ok(json!({"op": "accept", "sock": listener, "timeout_ms": 1000}))["sock"]
        .as_u64()
        .unwrap();
    assert_ne!(server, client);
    assert_eq!(sut.state(server), "ESTABLISHED");

    // Both directions, bytes exact.
    let request = pattern(3000);
    assert_eq!(sut.write(client, &request), 3000);
    assert_eq!(sut.read_exactly(server, 3000), request);
    let response = pattern(700);
    assert_eq!(sut.write(server, &response), 700);
    assert_eq!(sut.read_exactly(client, 700), response);

    // Half close: the server reads EOF, and can still write to the client, which can still read.
    sut.ok(json!({"op": "shutdown", "sock": client, "how": "wr"}));
    let eof = sut.ok(json!({"op": "read", "sock": server, "max": 100, "timeout_ms": 1000}));
    assert_eq!(
        (&eof["data"], &eof["eof"]),
        (&json!(""), &json!(true)),
        "{eof}"
    );
    sut.wait_for_state(client, "FIN-WAIT-2");
    assert_eq!(sut.state(server), "CLOSE-WAIT");
    assert_eq!(sut.write(server, b"after your FIN"), 14);
    assert_eq!(sut.read_exactly(client, 14), b"after your FIN");
    assert_eq!(
        sut.err(json!({"op": "write", "sock": client, "data": encode(b"x"), "timeout_ms": 100})),
        "EPIPE"
    );

    // Abort: RST, which the other side's read reports.
    sut.ok(json!({"op": "abort", "sock": server}));
    assert_eq!(
        sut.err(json!({"op": "read", "sock": client, "max": 100, "timeout_ms": 1000})),
        "ECONNRESET"
    );
    assert_eq!(sut.state(client), "CLOSED");
    // The aborted id is gone.
    assert_eq!(sut.err(json!({"op": "state", "sock": server})), "EBADF");

    sut.ok(json!({"op": "close", "sock": client}));
    sut.ok(json!({"op": "close", "sock": listener}));
    let (took, success) = sut.end();
    assert!(
        success && took < Duration::from_secs(1),
        "exit took {took:?}, success {success}"
    );
}

#[test]
fn ipv6_round_trip_and_datagram() {
    let mut sut = one_adapter(Family::Ipv6);
    let (client, server, _) = sut.connected_pair(5000);
    assert_eq!(sut.write(client, b"over ipv6"), 9);
    assert_eq!(sut.read_exactly(server, 9), b"over ipv6");

    let receiver = sut.socket("udp");
    sut.ok(json!({"op": "bind", "sock": receiver, "port": 6000}));
    let sender = sut.socket("udp");
    sut.ok(json!({"op": "bind", "sock": sender, "port": 6001}));
    sut.ok(json!({"op": "send_to", "sock": sender, "port": 6000, "data": encode(b"v6 datagram")}));
    let got = sut.ok(json!({"op": "recv_from", "sock": receiver, "max": 2048, "timeout_ms": 1000}));
    assert_eq!(decode(got["data"].as_str().unwrap()), b"v6 datagram");
    assert_eq!(got["port"], json!(6001));
}

#[test]
fn connect_to_a_port_without_listener_is_refused() {
    let mut sut = one_adapter(Family::Ipv4);
    let sock = sut.socket("tcp");
    assert_eq!(
        sut.err(json!({"op": "connect", "sock": sock, "port": 5999, "timeout_ms": 1000})),
        "ECONNREFUSED"
    );
}

#[test]
fn accept_and_read_wait_until_their_deadline_then_eagain() {
    let mut sut = one_adapter(Family::Ipv4);
    let (client, _server, listener) = sut.connected_pair(5000);

    let start = Instant::now();
    assert_eq!(
        sut.err(json!({"op": "accept", "sock": listener, "timeout_ms": 200})),
        "EAGAIN"
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_millis(200) + REPLY_GRACE,
        "accept answered after {waited:?}"
    );

    let start = Instant::now();
    assert_eq!(
        sut.err(json!({"op": "read", "sock": client, "max": 100, "timeout_ms": 150})),
        "EAGAIN"
    );
    assert!(start.elapsed() >= Duration::from_millis(150));
}

/// Linux drops a SYN while the accept queue is full (backlog 0 holds one connection), so a second connect stays in
/// SYN-SENT past its deadline; once the queue has room the retransmitted SYN (initial RTO 1 s, RFC 6298 §2.1) gets
/// through, and a later connect reports the completed handshake.
#[test]
fn connect_past_its_deadline_is_in_progress_and_completes_in_the_background() {
    let mut sut = one_adapter(Family::Ipv4);
    let listener = sut.listener(5000, 0);
    let first = sut.socket("tcp");
    sut.ok(json!({"op": "connect", "sock": first, "port": 5000, "timeout_ms": 1000}));
    // The first connection is in the accept queue once the listener's side is established.
    std::thread::sleep(Duration::from_millis(50));

    let second = sut.socket("tcp");
    assert_eq!(
        sut.err(json!({"op": "connect", "sock": second, "port": 5000, "timeout_ms": 200})),
        "EINPROGRESS"
    );
    assert_eq!(sut.state(second), "SYN-SENT");

    sut.ok(json!({"op": "accept", "sock": listener, "timeout_ms": 1000}));
    sut.ok(json!({"op": "connect", "sock": second, "port": 5000, "timeout_ms": 5000}));
    assert_eq!(sut.state(second), "ESTABLISHED");
    sut.ok(json!({"op": "accept", "sock": listener, "timeout_ms": 1000}));
}

#[test]
fn udp_datagrams_with_their_port_and_truncation() {
    let mut sut = one_adapter(Family::Ipv4);
    let receiver = sut.socket("udp");
    sut.ok(json!({"op": "bind", "sock": receiver, "port": 6000}));
    let sender = sut.socket("udp");
    sut.ok(json!({"op": "bind", "sock": sender, "port": 6001}));

    let datagram = pattern(120);
    let sent =
        sut.ok(json!({"op": "send_to", "sock": sender, "port": 6000, "data": encode(&datagram)}));
    assert_eq!(sent["n"], json!(120));
    let got = sut.ok(json!({"op": "recv_from", "sock": receiver, "max": 2048, "timeout_ms": 1000}));
    assert_eq!(decode(got["data"].as_str().unwrap()), datagram);
    assert_eq!(got["port"], json!(6001));
    assert_eq!(got["truncated"], json!(false));

    sut.ok(json!({"op": "send_to", "sock": sender, "port": 6000, "data": encode(&datagram)}));
    let got = sut.ok(json!({"op": "recv_from", "sock": receiver, "max": 10, "timeout_ms": 1000}));
    assert_eq!(decode(got["data"].as_str().unwrap()), &datagram[..10]);
    assert_eq!(got["truncated"], json!(true));

    assert_eq!(
        sut.err(json!({"op": "recv_from", "sock": receiver, "max": 2048, "timeout_ms": 50})),
        "EAGAIN"
    );
}

#[test]
fn options_and_a_port_in_use() {
    let mut sut = one_adapter(Family::Ipv4);
    let sock = sut.socket("tcp");
    sut.ok(json!({"op": "set_opt", "sock": sock, "opt": "rcv_buf", "value": 1024}));
    sut.ok(json!({"op": "set_opt", "sock": sock, "opt": "snd_buf", "value": 4096}));
    sut.ok(json!({"op": "set_opt", "sock": sock, "opt": "no_delay", "value": true}));
    assert_eq!(
        sut.err(json!({"op": "set_opt", "sock": sock, "opt": "no_delay", "value": 1})),
        "EINVAL"
    );
    assert_eq!(
        sut.err(json!({"op": "set_opt", "sock": sock, "opt": "keep_alive", "value": true})),
        "UNSUPPORTED"
    );
    sut.listener(5000, 1);
    assert_eq!(
        sut.err(json!({"op": "bind", "sock": sock, "port": 5000})),
        "EADDRINUSE"
    );
}

#[test]
fn unknown_requests_are_unsupported_and_broken_lines_einval() {
    let mut sut = one_adapter(Family::Ipv4);
    assert_eq!(sut.err(json!({"op": "frobnicate"})), "UNSUPPORTED");
    assert_eq!(
        sut.err(json!({"op": "socket", "kind": "sctp"})),
        "UNSUPPORTED"
    );
    // Unknown fields are ignored.
    let sock = sut.ok(json!({"op": "socket", "kind": "tcp", "colour": "blue"}))["sock"].clone();
    assert!(sock.is_u64());
    assert_eq!(sut.err(json!({"op": "bind", "sock": sock})), "EINVAL");

    // A line that is not JSON but shows its id is answered EINVAL.
    sut.send_raw(r#"{"id": 900, "op": "socket", "kind": "#);
    let reply = sut.next_reply(REPLY_GRACE);
    assert_eq!(reply, json!({"id": 900, "ok": false, "err": "EINVAL"}));
    // A line without an id gets no reply (it is reported on stderr) and the next request is answered.
    sut.send_raw("hello world");
    sut.ok(json!({"op": "socket", "kind": "udp"}));
    sut.wait_for_stderr("hello world");
}

/// At the end of a case the adapter aborts what is open: a second adapter in the same namespace, holding the
/// other end of the connection, sees the RST.
#[test]
fn stdin_eof_aborts_what_is_open_and_exits_within_a_second() {
    let mut suts = adapters_in_fresh_namespace(Family::Ipv4, 2);
    let (mut server, mut client) = {
        let client = suts.pop().unwrap();
        (suts.pop().unwrap(), client)
    };
    let listener = server.listener(5000, 1);
    let sock = client.socket("tcp");
    client.ok(json!({"op": "connect", "sock": sock, "port": 5000, "timeout_ms": 1000}));
    let accepted = server.ok(json!({"op": "accept", "sock": listener, "timeout_ms": 1000}))["sock"]
        .as_u64()
        .unwrap();
    // Nothing left unread: a plain close would send FIN here, only an abort sends RST.
    assert_eq!(client.write(sock, b"all read"), 8);
    assert_eq!(server.read_exactly(accepted, 8), b"all read");

    let (took, success) = server.end();
    assert!(success, "adapter exited with failure");
    assert!(took < Duration::from_secs(1), "exit took {took:?}");
    assert_eq!(
        client.err(json!({"op": "read", "sock": sock, "max": 100, "timeout_ms": 1000})),
        "ECONNRESET"
    );
    let (took, success) = client.end();
    assert!(
        success && took < Duration::from_secs(1),
        "exit took {took:?}, success {success}"
    );
}
