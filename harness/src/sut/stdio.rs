//! A passive stdio SUT (`--sut-mode stdio`, `docs/driver-protocol.md` "Other modes"): a program that moves
//! the bytes of one connection between its stdio and its device, like CS144's `tcp_ipv4` or netcat. Its
//! stdin is what it sends (EOF on stdin is its shutdown(WR)), its stdout what it received, its exit the end of
//! its part. It runs in the same sandbox as a driven SUT; nothing is asked of it on stdout but the stream.
//!
//! Design choices: stdin is written by a thread of its own (a SUT that does not read must not block the
//! harness), stdout is collected by another. Its exit is a finding only when it is a crash (a non-zero status
//! or a signal) before netconform ended it; a SUT still running at the end of a case is ended, which is not a
//! failure by itself.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::{ChildStdin, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::sandbox::{self, Sut};
use super::{Attach, CaseContext, SutSpec};
use crate::error::HarnessError;

/// What the SUT wrote on stdout so far.
#[derive(Debug, Default, Clone)]
pub struct StdoutSoFar {
    pub bytes: Vec<u8>,
    /// Its stdout was closed (by it, or because it ended).
    pub eof: bool,
}

/// How a stdio SUT's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It exited by itself, with this status, before netconform ended it.
    Exited(ExitStatus),
    /// It was still running at the end of the case and was ended (not a failure by itself).
    Ended,
}

impl Ending {
    /// A crash: a non-zero exit status or a signal, by itself.
    pub fn crash(&self) -> Option<String> {
        use std::os::unix::process::ExitStatusExt;
        match self {
            Ending::Exited(s) => match (s.code(), s.signal()) {
                (Some(0), _) => None,
                (Some(c), _) => Some(format!("exited with status {c}")),
                (None, Some(sig)) => Some(format!("was killed by signal {sig}")),
                _ => Some(format!("ended ({s})")),
            },
            Ending::Ended => None,
        }
    }
}

/// One run of a stdio SUT.
pub struct StdioSut {
    sut: Sut,
    stdin: Arc<Mutex<Option<ChildStdin>>>,
    stdout: Arc<Mutex<StdoutSoFar>>,
    started: Instant,
    /// Set once it exited by itself (seen before netconform ended it).
    exited: Option<ExitStatus>,
}

impl StdioSut {
    /// Starts `spec` in the sandbox on the calling lab host thread (b's): `fd3` is its packet link (`fd`
    /// attachment), `uid` the owner of its TUN device.
    pub fn start(
        spec: &SutSpec,
        ctx: &CaseContext,
        fd3: Option<OwnedFd>,
        uid: Option<sandbox::UidLease>,
    ) -> Result<StdioSut, HarnessError> {
        let mut spawn = sandbox::SutSpec::new(spec.argv(ctx));
        spawn.uid = uid;
        spawn.env = spec.environment(ctx);
        spawn.fd3 = fd3;
        spawn.dev_net_tun = matches!(spec.attach, Attach::Tun { .. } | Attach::Tap { .. });
        let mut sut = Sut::spawn(spawn)?;
        let stdin = Arc::new(Mutex::new(sut.take_stdin()));
        let stdout = Arc::new(Mutex::new(StdoutSoFar::default()));
        if let Some(mut pipe) = sut.take_stdout() {
            let kept = Arc::clone(&stdout);
            // The thread ends at EOF: when the SUT closed its stdout or every process of it is gone.
            std::thread::Builder::new()
                .name("sut-stdio-out".into())
                .spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match pipe.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => kept.lock().unwrap().bytes.extend_from_slice(&buf[..n]),
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(_) => break,
                        }
                    }
                    kept.lock().unwrap().eof = true;
                })
                .map_err(|e| HarnessError::sut_start(format!("stdio SUT: stdout thread: {e}")))?;
        }
        Ok(StdioSut {
            sut,
            stdin,
            stdout,
            started: Instant::now(),
            exited: None,
        })
    }

    /// Writes `bytes` to its stdin (in the background), then closes stdin if `then_eof`: what it sends,
    /// then its shutdown(WR).
    pub fn feed(&self, bytes: Vec<u8>, then_eof: bool) {
        let stdin = Arc::clone(&self.stdin);
        let _ = std::thread::Builder::new()
            .name("sut-stdio-in".into())
            .spawn(move || {
                let mut guard = stdin.lock().unwrap();
                if let Some(pipe) = guard.as_mut() {
                    // A SUT that exited makes this EPIPE: what it did not take it did not send.
                    let _ = pipe.write_all(&bytes).and_then(|_| pipe.flush());
                }
                if then_eof {
                    guard.take();
                }
            });
    }

    /// What it wrote on stdout so far.
    pub fn stdout(&self) -> StdoutSoFar {
        self.stdout.lock().unwrap().clone()
    }

    /// It wrote a line containing `hello` on stderr (it is ready, for stacks that say so).
    pub fn said_hello(&self) -> bool {
        self.sut.stderr_tail(4096).contains("hello")
    }

    /// Its exit status if it exited by itself.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.sut.try_exit();
        }
        self.exited
    }

    /// How long it has been running.
    pub fn age(&self) -> Duration {
        self.started.elapsed()
    }

    /// The tail of its stderr.
    pub fn stderr_tail(&self) -> String {
        self.sut.stderr_tail(super::process::STDERR_QUOTED)
    }

    /// Ends the run: gives it `grace` to exit by itself (its stdin is closed), then ends its PID namespace.
    pub fn end(&mut self, grace: Duration) -> Ending {
        if let Some(s) = self.exited() {
            return Ending::Exited(s);
        }
        // A feeder still blocked on a SUT that does not read holds the lock: ending the SUT frees it.
        if let Ok(mut g) = self.stdin.try_lock() {
            g.take();
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(s) = self.exited() {
                return Ending::Exited(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.sut.terminate(Duration::ZERO);
        Ending::Ended
    }
}
