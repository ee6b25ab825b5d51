//! `netconform sut-check CMD`: replays a fixed transcript against an adapter and says, request by request,
//! what deviates from `netconform-sut/1` (`docs/driver-protocol.md`) — so adapter authors debug the adapter,
//! not the stack. The SUT runs as in a real case (sandbox, attachment, relay to host a's kernel); host a plays
//! the peer with kernel sockets: it connects to the SUT's listener, sends and reads data, half-closes,
//! refuses a connection, accepts one, and exchanges datagrams.
//!
//! A step passes when the reply has the shape and value the contract gives; otherwise it is a deviation
//! naming the request sent, the reply got, and what the contract expects. A crash or a hang ends the
//! transcript (the rest is reported not run). Exit 0: no deviation; 1: deviations; 2: could not run.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::backend::Cap;
use harness::error::SutFailure;
use harness::frame::Host;
use harness::lab::{Lab, LabConfig};
use harness::sock::{ConnectOutcome, Family, Socket};
use harness::sut::base64;
use harness::sut::driver::Reply;
use harness::sut::process::SutProcess;
use harness::sut::{Attach, CaseContext, SutSpec};
use harness::HarnessError;
use serde_json::{json, Map, Value};

#[derive(clap::Args)]
pub struct SutCheckArgs {
    /// `-q`: only the deviations and the verdict (set from the global flag).
    #[arg(skip)]
    pub quiet: bool,
    /// The adapter's command, as for `run --sut` (split like a shell, placeholders filled).
    command: String,
    /// How the SUT reaches the wire: fd (default), or kernel (a kernel adapter).
    #[arg(long, default_value = "fd")]
    attach: String,
    /// The family the transcript uses.
    #[arg(long, default_value = "ipv4", value_parser = ["ipv4", "ipv6"])]
    family: String,
}

/// How one step went.
enum Outcome {
    Ok(String),
    Deviation(String),
    /// Not applicable (a capability the SUT does not declare).
    NotDeclared(String),
}

struct Check {
    sut: Arc<Mutex<SutProcess>>,
    lab: Lab,
    family: Family,
    steps: Vec<(String, Outcome)>,
    /// Set by a crash or a hang: the transcript cannot go on.
    fatal: Option<SutFailure>,
}

/// Socket ports the transcript uses on b (the SUT) and a (the kernel peer).
const B_LISTEN: u16 = 5000;
const A_CLOSED: u16 = 5999;
const A_LISTEN: u16 = 6000;
const B_UDP: u16 = 7000;
const A_UDP: u16 = 7001;

pub fn sut_check(args: SutCheckArgs) -> Result<i32, HarnessError> {
    harness::lab::privileges::check()?;
    let args_quiet = args.quiet;
    let command = SutSpec::split_command(&args.command)
        .map_err(|e| HarnessError::Usage(format!("sut-check: {e}")))?;
    let attach = Attach::parse(&args.attach).ok_or_else(|| {
        HarnessError::Usage(format!(
            "--attach {}: expected fd, kernel, tun[:NAME] or tap[:NAME]",
            args.attach
        ))
    })?;
    let family = if args.family == "ipv6" {
        Family::Ipv6
    } else {
        Family::Ipv4
    };
    let spec = SutSpec {
        command,
        attach,
        case_limit_ms: 120_000,
        mode: Default::default(),
    };
    println!(
        "sut-check: {} (attachment {}, {})",
        args.command,
        args.attach,
        family.name()
    );
    let config = LabConfig {
        sut: Some(spec),
        ..Default::default()
    };
    let ctx = CaseContext {
        family,
        seed: 1,
        case: "sut-check".into(),
        mtu: 1500,
        port: None,
    };
    let lab = match Lab::build_case(&config, &ctx) {
        Ok(lab) => lab,
        Err(HarnessError::Sut(f)) => {
            println!("  FAIL  start and hello: {f}");
            println!("\n1 deviation: the SUT must say {{\"hello\":\"netconform-sut/1\",…}} on stdout within 5 s of its start");
            return Ok(1);
        }
        Err(e) => return Err(e),
    };
    let sut = lab
        .sut_process()
        .cloned()
        .expect("a lab built with a SUT has its process");
    let mut check = Check {
        sut,
        lab,
        family,
        steps: Vec::new(),
        fatal: None,
    };
    check.run();
    let end = check.finish();
    let deviations: Vec<&(String, Outcome)> = check
        .steps
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Deviation(_)))
        .collect();
    for (name, outcome) in &check.steps {
        match outcome {
            Outcome::Ok(_) if args_quiet => {}
            Outcome::Ok(what) => println!("  ok    {name}: {what}"),
            Outcome::Deviation(what) => println!("  FAIL  {name}: {what}"),
            Outcome::NotDeclared(why) => println!("  --    {name}: not run ({why})"),
        }
    }
    if let Some(f) = &check.fatal {
        println!("\nthe transcript stopped: {f}");
    }
    println!(
        "  {}  end of the case: {}",
        if end.0 { "ok  " } else { "FAIL" },
        end.1
    );
    let n = deviations.len() + usize::from(!end.0) + usize::from(check.fatal.is_some());
    if n == 0 {
        println!(
            "\n{} steps, no deviation from netconform-sut/1",
            check.steps.len() + 1
        );
        Ok(0)
    } else {
        let first = deviations
            .first()
            .map(|(name, _)| name.clone())
            .or_else(|| {
                check
                    .fatal
                    .as_ref()
                    .map(|_| "the transcript stopped".to_string())
            })
            .unwrap_or_else(|| "end of the case".into());
        println!("\n{n} deviation(s); the first: {first}");
        Ok(1)
    }
}

impl Check {
    fn addr(&self, host: Host, port: u16) -> SocketAddr {
        SocketAddr::new(self.lab.addr(host, self.family), port)
    }

    fn has(&self, cap: Cap) -> bool {
        self.sut.lock().unwrap().hello().has(cap)
    }

    /// Sends one request; `None` after a fatal fault (recorded).
    fn request(
        &mut self,
        op: &str,
        fields: Value,
        timeout_ms: Option<u64>,
    ) -> Option<(String, Reply)> {
        if self.fatal.is_some() {
            return None;
        }
        let Value::Object(fields) = fields else {
            unreachable!("requests are objects")
        };
        let shown = {
            let mut m = Map::new();
            m.insert("op".into(), op.into());
            m.extend(fields.clone());
            if let Some(t) = timeout_ms {
                m.insert("timeout_ms".into(), t.into());
            }
            Value::Object(m).to_string()
        };
        let r =
            self.sut
                .lock()
                .unwrap()
                .raw_request(op, fields, timeout_ms.map(Duration::from_millis));
        match r {
            Ok(reply) => Some((shown, reply)),
            Err(f) => {
                self.steps.push((
                    op.to_string(),
                    Outcome::Deviation(format!("sent {shown}: {f}")),
                ));
                self.fatal = Some(f);
                None
            }
        }
    }

    fn step(&mut self, name: &str, outcome: Outcome) {
        self.steps.push((name.to_string(), outcome));
    }

    /// Expects `ok:true`; returns the reply's fields, or records the deviation.
    fn expect_ok(&mut self, name: &str, sent: &str, reply: &Reply) -> bool {
        if reply.ok {
            return true;
        }
        self.step(
            name,
            Outcome::Deviation(format!(
                "sent {sent}; got {}; expected ok:true",
                Value::Object(reply.fields.clone())
            )),
        );
        false
    }

    fn expect_err(&mut self, name: &str, sent: &str, reply: &Reply, errno: &str, why: &str) {
        let got = Value::Object(reply.fields.clone());
        if !reply.ok && reply.err.as_deref() == Some(errno) {
            self.step(name, Outcome::Ok(format!("err {errno}")));
        } else {
            self.step(
                name,
                Outcome::Deviation(format!(
                    "sent {sent}; got {got}; the contract: {{\"ok\":false,\"err\":\"{errno}\"}} ({why})"
                )),
            );
        }
    }

    fn sock_of(&mut self, name: &str, sent: &str, reply: &Reply) -> Option<u64> {
        if !self.expect_ok(name, sent, reply) {
            return None;
        }
        match reply.u64("sock") {
            Some(s) => Some(s),
            None => {
                self.step(
                    name,
                    Outcome::Deviation(format!(
                        "sent {sent}; got {}; expected \"sock\": a small integer",
                        Value::Object(reply.fields.clone())
                    )),
                );
                None
            }
        }
    }

    /// Runs `f` on host a's thread (its namespace).
    fn on_a<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<R, HarnessError> + Send + 'static,
    ) -> Result<R, HarnessError> {
        self.lab.host(Host::A).run(f)?
    }

    fn run(&mut self) {
        let hello = self.sut.lock().unwrap().hello().clone();
        let mut what = format!(
            "{} ({}), caps {}",
            hello.stack,
            hello.families.join("+"),
            hello
                .caps
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(" ")
        );
        if !hello.unknown_caps.is_empty() {
            what.push_str(&format!(
                " (unknown, ignored: {})",
                hello.unknown_caps.join(" ")
            ));
        }
        if !hello.has(Cap::Tcp) {
            self.step(
                "hello",
                Outcome::Deviation(format!("{what}: a SUT must declare \"tcp\"")),
            );
            return;
        }
        if self.family == Family::Ipv6 && !hello.ipv6() {
            self.step(
                "hello",
                Outcome::Deviation(format!("{what}: ipv6 asked for, not in \"families\"")),
            );
            return;
        }
        self.step("hello", Outcome::Ok(what));
        if let Err(e) = self.tcp_passive() {
            self.step(
                "host a",
                Outcome::Deviation(format!("the peer could not act: {e}")),
            );
        }
        if let Err(e) = self.tcp_active() {
            self.step(
                "host a",
                Outcome::Deviation(format!("the peer could not act: {e}")),
            );
        }
        if let Err(e) = self.udp() {
            self.step(
                "host a",
                Outcome::Deviation(format!("the peer could not act: {e}")),
            );
        }
    }

    /// b listens; a connects, both exchange data, a half-closes, b closes.
    fn tcp_passive(&mut self) -> Result<(), HarnessError> {
        let Some((sent, r)) = self.request("socket", json!({"kind": "tcp"}), None) else {
            return Ok(());
        };
        let Some(listener) = self.sock_of("socket tcp", &sent, &r) else {
            return Ok(());
        };
        self.step("socket tcp", Outcome::Ok(format!("sock {listener}")));
        for (name, op, fields) in [
            ("bind", "bind", json!({"sock": listener, "port": B_LISTEN})),
            ("listen", "listen", json!({"sock": listener, "backlog": 1})),
        ] {
            let Some((sent, r)) = self.request(op, fields, None) else {
                return Ok(());
            };
            if !self.expect_ok(name, &sent, &r) {
                return Ok(());
            }
            self.step(name, Outcome::Ok("ok".into()));
        }
        let Some((sent, r)) = self.request("accept", json!({"sock": listener}), Some(100)) else {
            return Ok(());
        };
        self.expect_err(
            "accept with nothing queued",
            &sent,
            &r,
            "EAGAIN",
            "accept answers EAGAIN at its deadline",
        );
        // a connects to b's listener.
        let to = self.addr(Host::B, B_LISTEN);
        let family = self.family;
        let a = self.on_a(move || {
            let s = Socket::tcp(family)?;
            let outcome = s.connect_timeout(to, Duration::from_secs(2))?;
            Ok((s, outcome))
        })?;
        let a_conn = match a {
            (s, ConnectOutcome::Done(Ok(()))) => s,
            (_, other) => {
                self.step(
                    "handshake in the background",
                    Outcome::Deviation(format!(
                        "a's connect to the listening SUT ended {other:?}: a listening socket completes \
                         handshakes in the background (up to its backlog)"
                    )),
                );
                return Ok(());
            }
        };
        self.step(
            "handshake in the background",
            Outcome::Ok("a connected".into()),
        );
        let Some((sent, r)) = self.request("accept", json!({"sock": listener}), Some(1000)) else {
            return Ok(());
        };
        let Some(conn) = self.sock_of("accept", &sent, &r) else {
            return Ok(());
        };
        if conn == listener {
            self.step(
                "accept",
                Outcome::Deviation(format!(
                    "got sock {conn}, the listener's own id: accept returns a new socket"
                )),
            );
            return Ok(());
        }
        self.step("accept", Outcome::Ok(format!("sock {conn}")));
        if self.has(Cap::State) {
            self.state("state after accept", conn, "ESTABLISHED");
        }
        // a → b data.
        let payload = b"netconform sut-check: a to b\n".to_vec();
        let p = payload.clone();
        let a_conn = Arc::new(Mutex::new(a_conn));
        let ac = a_conn.clone();
        self.on_a(move || {
            ac.lock()
                .unwrap()
                .send(&p, 0)?
                .map(|_| ())
                .map_err(|e| HarnessError::Socket(format!("a's send: {e}")))
        })?;
        self.read_exact("read", conn, &payload);
        // b → a data.
        let back = b"and b to a".to_vec();
        let Some((sent, r)) = self.request(
            "write",
            json!({"sock": conn, "data": base64::encode(&back)}),
            Some(1000),
        ) else {
            return Ok(());
        };
        if self.expect_ok("write", &sent, &r) {
            if r.u64("n") == Some(back.len() as u64) {
                let ac = a_conn.clone();
                let got = self
                    .on_a(move || Ok(recv_all(&ac.lock().unwrap(), 64, Duration::from_secs(1))))?;
                if got == back {
                    self.step(
                        "write",
                        Outcome::Ok(format!("n {}, a read the same bytes", back.len())),
                    );
                } else {
                    self.step(
                        "write",
                        Outcome::Deviation(format!(
                            "a read {:?} after the write; expected {:?}",
                            String::from_utf8_lossy(&got),
                            String::from_utf8_lossy(&back)
                        )),
                    );
                }
            } else {
                self.step(
                    "write",
                    Outcome::Deviation(format!(
                        "sent {sent}; got {}; expected n = {} (everything fits an empty buffer)",
                        Value::Object(r.fields.clone()),
                        back.len()
                    )),
                );
            }
        }
        let Some((sent, r)) = self.request("read", json!({"sock": conn, "max": 100}), Some(50))
        else {
            return Ok(());
        };
        self.expect_err(
            "read with nothing to read",
            &sent,
            &r,
            "EAGAIN",
            "nothing arrived by the deadline",
        );
        // a half-closes: b reads EOF.
        let ac = a_conn.clone();
        self.on_a(move || {
            ac.lock()
                .unwrap()
                .shutdown(libc::SHUT_WR)
                .map_err(|e| HarnessError::Socket(format!("a's shutdown: {e}")))
        })?;
        let Some((sent, r)) = self.request("read", json!({"sock": conn, "max": 100}), Some(1000))
        else {
            return Ok(());
        };
        let eof_ok = r.ok && r.str("data") == Some("") && r.bool("eof") == Some(true);
        self.step(
            "read after the peer's FIN",
            if eof_ok {
                Outcome::Ok("eof".into())
            } else {
                Outcome::Deviation(format!(
                    "sent {sent}; got {}; expected {{\"ok\":true,\"data\":\"\",\"eof\":true}}",
                    Value::Object(r.fields.clone())
                ))
            },
        );
        // b closes: a reads EOF.
        let Some((sent, r)) = self.request("close", json!({"sock": conn}), None) else {
            return Ok(());
        };
        if self.expect_ok("close", &sent, &r) {
            let ac = a_conn.clone();
            let eof = self.on_a(move || {
                Ok(matches!(
                    ac.lock().unwrap().recv_timeout(64, 0, Duration::from_secs(1)),
                    Some(Ok(r)) if r.data.is_empty()
                ))
            })?;
            self.step(
                "close",
                if eof {
                    Outcome::Ok("a read EOF (the SUT sent its FIN)".into())
                } else {
                    Outcome::Deviation(
                        "a did not read EOF within 1 s: close sends a FIN after queued data".into(),
                    )
                },
            );
        }
        Ok(())
    }

    /// b connects: refused by a closed port, then accepted; state; abort.
    fn tcp_active(&mut self) -> Result<(), HarnessError> {
        let Some((sent, r)) = self.request("socket", json!({"kind": "tcp"}), None) else {
            return Ok(());
        };
        let Some(s) = self.sock_of("socket tcp", &sent, &r) else {
            return Ok(());
        };
        let Some((sent, r)) =
            self.request("connect", json!({"sock": s, "port": A_CLOSED}), Some(1000))
        else {
            return Ok(());
        };
        self.expect_err(
            "connect to a closed port",
            &sent,
            &r,
            "ECONNREFUSED",
            "a's kernel answered the SYN with a RST",
        );
        let at = self.addr(Host::A, A_LISTEN);
        let family = self.family;
        let listener = Arc::new(Mutex::new(self.on_a(move || {
            let l = Socket::tcp(family)?;
            l.bind(at)
                .and_then(|_| l.listen(4))
                .map_err(|e| HarnessError::Socket(format!("a's listener: {e}")))?;
            Ok(l)
        })?));
        let Some((sent, r)) = self.request("socket", json!({"kind": "tcp"}), None) else {
            return Ok(());
        };
        let Some(s) = self.sock_of("socket tcp", &sent, &r) else {
            return Ok(());
        };
        let Some((sent, r)) =
            self.request("connect", json!({"sock": s, "port": A_LISTEN}), Some(1000))
        else {
            return Ok(());
        };
        if !self.expect_ok("connect", &sent, &r) {
            return Ok(());
        }
        let l = listener.clone();
        let accepted = self.on_a(move || {
            let l = l.lock().unwrap();
            Ok((l.poll(libc::POLLIN, Duration::from_secs(1)) != 0)
                .then(|| l.accept_now().ok().map(|(s, _)| s))
                .flatten())
        })?;
        let Some(a_conn) = accepted else {
            self.step(
                "connect",
                Outcome::Deviation("ok, but a accepted no connection within 1 s".into()),
            );
            return Ok(());
        };
        self.step("connect", Outcome::Ok("ok, a accepted it".into()));
        if self.has(Cap::State) {
            self.state("state after connect", s, "ESTABLISHED");
        } else {
            self.step("state", Outcome::NotDeclared("no cap state".into()));
        }
        if !self.has(Cap::Abort) {
            self.step("abort", Outcome::NotDeclared("no cap abort".into()));
            return Ok(());
        }
        let Some((sent, r)) = self.request("abort", json!({"sock": s}), None) else {
            return Ok(());
        };
        if self.expect_ok("abort", &sent, &r) {
            let reset = self.on_a(move || {
                Ok(matches!(
                    a_conn.recv_timeout(64, 0, Duration::from_secs(1)),
                    Some(Err(e)) if e.0 == libc::ECONNRESET
                ))
            })?;
            self.step(
                "abort",
                if reset {
                    Outcome::Ok("a's read: ECONNRESET (the SUT sent a RST)".into())
                } else {
                    Outcome::Deviation(
                        "a's read did not report ECONNRESET within 1 s: abort sends a RST".into(),
                    )
                },
            );
        }
        Ok(())
    }

    /// Datagrams both ways (cap udp).
    fn udp(&mut self) -> Result<(), HarnessError> {
        if !self.has(Cap::Udp) {
            self.step("udp", Outcome::NotDeclared("no cap udp".into()));
            return Ok(());
        }
        let Some((sent, r)) = self.request("socket", json!({"kind": "udp"}), None) else {
            return Ok(());
        };
        let Some(s) = self.sock_of("socket udp", &sent, &r) else {
            return Ok(());
        };
        let Some((sent, r)) = self.request("bind", json!({"sock": s, "port": B_UDP}), None) else {
            return Ok(());
        };
        if !self.expect_ok("bind udp", &sent, &r) {
            return Ok(());
        }
        let (from, to, family) = (
            self.addr(Host::A, A_UDP),
            self.addr(Host::B, B_UDP),
            self.family,
        );
        let a = Arc::new(Mutex::new(self.on_a(move || {
            let u = Socket::udp(family)?;
            u.bind(from)
                .map_err(|e| HarnessError::Socket(format!("a's UDP bind: {e}")))?;
            u.send_to(b"dgram from a", to, 0)?
                .map_err(|e| HarnessError::Socket(format!("a's sendto: {e}")))?;
            Ok(u)
        })?));
        let Some((sent, r)) = self.request("recv_from", json!({"sock": s, "max": 100}), Some(1000))
        else {
            return Ok(());
        };
        let data = r.str("data").and_then(base64::decode);
        if r.ok
            && data.as_deref() == Some(&b"dgram from a"[..])
            && r.u64("port") == Some(A_UDP as u64)
            && r.bool("truncated") == Some(false)
        {
            self.step(
                "recv_from",
                Outcome::Ok(format!("the datagram, port {A_UDP}")),
            );
        } else {
            self.step(
                "recv_from",
                Outcome::Deviation(format!(
                    "sent {sent}; got {}; expected data \"{}\", port {A_UDP}, truncated false",
                    Value::Object(r.fields.clone()),
                    base64::encode(b"dgram from a")
                )),
            );
        }
        let Some((sent, r)) = self.request(
            "send_to",
            json!({"sock": s, "port": A_UDP, "data": base64::encode(b"back")}),
            None,
        ) else {
            return Ok(());
        };
        if self.expect_ok("send_to", &sent, &r) {
            let got = self.on_a(move || {
                Ok(a.lock()
                    .unwrap()
                    .recv_timeout(100, 0, Duration::from_secs(1))
                    .and_then(|r| r.ok())
                    .map(|r| r.data))
            })?;
            self.step(
                "send_to",
                if got.as_deref() == Some(&b"back"[..]) && r.u64("n") == Some(4) {
                    Outcome::Ok("n 4, a received it".into())
                } else {
                    Outcome::Deviation(format!(
                        "reply {}; a received {got:?}; expected n 4 and the datagram \"back\"",
                        Value::Object(r.fields.clone())
                    ))
                },
            );
        }
        Ok(())
    }

    fn state(&mut self, name: &str, sock: u64, want: &str) {
        let Some((sent, r)) = self.request("state", json!({"sock": sock}), None) else {
            return;
        };
        if r.ok && r.str("state") == Some(want) {
            self.step(name, Outcome::Ok(want.into()));
        } else {
            self.step(
                name,
                Outcome::Deviation(format!(
                    "sent {sent}; got {}; expected state \"{want}\" (RFC 9293 names, e.g. SYN-RECEIVED)",
                    Value::Object(r.fields.clone())
                )),
            );
        }
    }

    /// Reads until `want` arrived (several reads may be needed), checking every reply's shape.
    fn read_exact(&mut self, name: &str, sock: u64, want: &[u8]) {
        let mut got = Vec::new();
        for _ in 0..8 {
            if got.len() >= want.len() {
                break;
            }
            let Some((sent, r)) =
                self.request("read", json!({"sock": sock, "max": 1000}), Some(1000))
            else {
                return;
            };
            let Some(data) =
                r.ok.then(|| r.str("data").and_then(base64::decode))
                    .flatten()
            else {
                self.step(
                    name,
                    Outcome::Deviation(format!(
                        "sent {sent}; got {}; expected {{\"ok\":true,\"data\":\"<base64>\",\"eof\":false}}",
                        Value::Object(r.fields.clone())
                    )),
                );
                return;
            };
            if data.is_empty() {
                break;
            }
            got.extend(data);
        }
        self.step(
            name,
            if got == want {
                Outcome::Ok(format!("{} bytes, as a sent them", want.len()))
            } else {
                Outcome::Deviation(format!(
                    "read {:?}; a sent {:?}",
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(want)
                ))
            },
        );
    }

    /// Closes the SUT's stdin and says whether it exited by itself within the contract's second.
    fn finish(&mut self) -> (bool, String) {
        let mut p = self.sut.lock().unwrap();
        match p.finish_status() {
            Some(s) if s.success() => (
                true,
                "stdin closed, the SUT exited (status 0) within 1 s".into(),
            ),
            Some(s) => {
                use std::os::unix::process::ExitStatusExt;
                if s.signal() == Some(libc::SIGKILL) {
                    (
                        false,
                        "stdin closed, the SUT did not exit within 1 s and was killed".into(),
                    )
                } else {
                    (
                        false,
                        format!("stdin closed, the SUT exited {s}: expected status 0"),
                    )
                }
            }
            None => (false, "the SUT could not be ended".into()),
        }
    }
}

/// Reads from `s` until `max` bytes or a quiet `wait`.
fn recv_all(s: &Socket, max: usize, wait: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < max {
        match s.recv_timeout(max - got.len(), 0, wait) {
            Some(Ok(r)) if !r.data.is_empty() => got.extend(r.data),
            _ => break,
        }
        if got.len() >= 10 {
            // The transcript's messages are short; once some bytes came, a brief wait for the rest.
            if let Some(Ok(r)) = s.recv_timeout(max - got.len(), 0, Duration::from_millis(50)) {
                got.extend(r.data);
            }
            break;
        }
    }
    got
}
