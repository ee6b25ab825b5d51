//! The adapter on its own, outside any lab: its hello, a request or two over stdin/stdout, its exit at the end
//! of the case, and its refusal of an unknown fault variant. (The lab runs are in the workspace's
//! tests/smoltcp.rs; this file also makes `cargo test` build the adapter's binary for them.)

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};

use serde_json::Value;

fn adapter() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_netconform-sut-smoltcp"));
    command
        .env("NETCONFORM_ADDR", "198.18.0.2/24")
        .env("NETCONFORM_ADDR6", "2001:db8::2/64")
        .env("NETCONFORM_PEER", "198.18.0.1")
        .env("NETCONFORM_PEER6", "2001:db8::1")
        .env("NETCONFORM_FAMILY", "ipv4")
        .env("NETCONFORM_SEED", "7");
    command
}

#[test]
fn says_hello_answers_requests_and_exits_when_stdin_closes() {
    // A datagram socketpair stands in for the SEQPACKET pair netconform passes: one read, one packet.
    let (link, theirs) = UnixDatagram::pair().unwrap();
    // SAFETY: clearing FD_CLOEXEC on a descriptor we own, so the child inherits it.
    unsafe { libc::fcntl(theirs.as_raw_fd(), libc::F_SETFD, 0) };
    let mut child = adapter()
        .env("NETCONFORM_FD", theirs.as_raw_fd().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let mut next = |line: &mut String| -> Value {
        line.clear();
        stdout.read_line(line).unwrap();
        serde_json::from_str(line).unwrap()
    };
    let hello = next(&mut line);
    assert_eq!(hello["hello"], "netconform-sut/1");
    assert_eq!(hello["stack"], "smoltcp 0.12");
    let caps: Vec<&str> = hello["caps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        caps.contains(&"tcp") && caps.contains(&"udp") && caps.contains(&"abort"),
        "{caps:?}"
    );
    assert!(
        !caps.contains(&"shutdown_rd"),
        "smoltcp cannot stop reading: {caps:?}"
    );

    for (request, expected) in [
        (
            r#"{"id":1,"op":"socket","kind":"tcp"}"#,
            r#"{"id":1,"ok":true,"sock":0}"#,
        ),
        (
            r#"{"id":2,"op":"state","sock":0}"#,
            r#"{"id":2,"ok":true,"state":"CLOSED"}"#,
        ),
        (
            r#"{"id":3,"op":"bind","sock":0,"port":5000}"#,
            r#"{"id":3,"ok":true}"#,
        ),
        (
            r#"{"id":4,"op":"listen","sock":0,"backlog":2}"#,
            r#"{"id":4,"ok":true}"#,
        ),
        (
            r#"{"id":5,"op":"accept","sock":0,"timeout_ms":20}"#,
            r#"{"id":5,"ok":false,"err":"EAGAIN"}"#,
        ),
        (
            r#"{"id":6,"op":"state","sock":0}"#,
            r#"{"id":6,"ok":true,"state":"LISTEN"}"#,
        ),
        (
            r#"{"id":7,"op":"read","sock":9,"max":10}"#,
            r#"{"id":7,"ok":false,"err":"EBADF"}"#,
        ),
        (
            r#"{"id":8,"op":"shutdown","sock":0,"how":"rd"}"#,
            r#"{"id":8,"ok":false,"err":"UNSUPPORTED"}"#,
        ),
        (
            r#"{"id":9,"op":"fly"}"#,
            r#"{"id":9,"ok":false,"err":"UNSUPPORTED"}"#,
        ),
        // A line that is not a request is not answered: the next reply is the next request's.
        (
            "hello world\n{\"id\":10,\"op\":\"state\",\"sock\":0}",
            r#"{"id":10,"ok":true,"state":"LISTEN"}"#,
        ),
    ] {
        writeln!(stdin, "{request}").unwrap();
        let reply = next(&mut line);
        let expected: Value = serde_json::from_str(expected).unwrap();
        assert_eq!(reply, expected, "{request}");
    }
    // Nothing was sent on the link: a listener is silent.
    link.set_nonblocking(true).unwrap();
    assert!(link.recv(&mut [0u8; 2048]).is_err());
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn an_unknown_fault_is_refused_with_the_known_ones() {
    let out = adapter().args(["--fault", "nonsense"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for name in [
        "silent-closed-port",
        "short-fin-ack",
        "no-zero-window-probe",
        "bad-checksum",
        "ignore-peer-window",
    ] {
        assert!(err.contains(name), "{err}");
    }
}
