//! One SUT process for one case: started in the sandbox on b's thread, spoken to through the [`Driver`],
//! ended with the case. Every way it can go wrong becomes a [`SutFailure`] with the tail of its stderr.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::driver::{Driver, Reply, SutFault, HELLO_TIMEOUT};
use super::sandbox::{self, Sut};
use super::{CaseContext, SutSpec};
use crate::backend::driven::Conversation;
use crate::backend::Cap;
use crate::error::{HarnessError, SutFailure, SutFailureKind};

/// How much of the SUT's stderr a failure quotes.
pub const STDERR_QUOTED: usize = 2048;
/// How long a SUT has to exit once its stdin is closed (`docs/driver-protocol.md`, end of a case).
pub const EXIT_GRACE: Duration = Duration::from_secs(1);

/// A started SUT that said hello.
pub struct SutProcess {
    sut: Sut,
    driver: Driver,
    started: Instant,
    limit: Duration,
    /// Set once a fault ended the conversation: later requests fail the same way at once.
    broken: Option<SutFailure>,
}

impl SutProcess {
    /// Starts `spec` for the case `ctx` on the calling lab host thread (b's), `fd3` as its packet link,
    /// and waits for its hello.
    pub fn start(
        spec: &SutSpec,
        ctx: &CaseContext,
        fd3: Option<OwnedFd>,
        uid: Option<sandbox::UidLease>,
    ) -> Result<SutProcess, HarnessError> {
        let mut spawn = sandbox::SutSpec::new(spec.argv(ctx));
        spawn.uid = uid;
        spawn.env = spec.environment(ctx);
        spawn.fd3 = fd3;
        spawn.dev_net_tun = matches!(spec.attach, super::Attach::Tun { .. });
        let mut sut = Sut::spawn(spawn)?;
        let (Some(stdin), Some(stdout)) = (sut.take_stdin(), sut.take_stdout()) else {
            return Err(HarnessError::Sut(SutFailure {
                kind: SutFailureKind::Start,
                message: "the SUT's stdin/stdout pipes were not set up".into(),
                stderr_tail: String::new(),
            }));
        };
        let started = Instant::now();
        match Driver::start(Box::new(stdin), Box::new(stdout), HELLO_TIMEOUT) {
            Ok(driver) => Ok(SutProcess {
                sut,
                driver,
                started,
                limit: Duration::from_millis(spec.case_limit_ms),
                broken: None,
            }),
            Err(fault) => {
                let failure = describe(&mut sut, fault);
                let _ = sut.terminate(Duration::ZERO);
                Err(HarnessError::Sut(failure))
            }
        }
    }

    /// What the SUT said in its hello.
    pub fn hello(&self) -> &super::driver::Hello {
        &self.driver.hello
    }

    /// The SUT's stderr so far (the tail).
    pub fn stderr_tail(&self) -> String {
        self.sut.stderr_tail(STDERR_QUOTED)
    }

    /// The conversation so far.
    pub fn transcript(&self) -> &[super::driver::TranscriptLine] {
        self.driver.transcript()
    }

    /// Sends a request as-is (sut-check): the reply, or the fault as a failure.
    pub fn raw_request(
        &mut self,
        op: &str,
        fields: Map<String, Value>,
        timeout: Option<Duration>,
    ) -> Result<Reply, SutFailure> {
        if let Some(b) = &self.broken {
            return Err(b.clone());
        }
        if self.started.elapsed() > self.limit {
            let f = SutFailure {
                kind: SutFailureKind::Hung,
                message: format!(
                    "SUT hung: the case passed its wall-clock limit of {} s",
                    self.limit.as_secs_f64()
                ),
                stderr_tail: self.stderr_tail(),
            };
            let _ = self.sut.terminate(Duration::ZERO);
            self.broken = Some(f.clone());
            return Err(f);
        }
        match self.driver.request(op, fields, timeout) {
            Ok(r) => Ok(r),
            Err(fault) => {
                let f = describe(&mut self.sut, fault);
                let _ = self.sut.terminate(Duration::ZERO);
                self.broken = Some(f.clone());
                Err(f)
            }
        }
    }

    /// Ends the case: closes stdin, gives the SUT [`EXIT_GRACE`] to exit, then ends its PID namespace.
    /// Returns how it ended.
    pub fn finish(&mut self) -> String {
        match self.finish_status() {
            Some(status) => format!("{status}"),
            None => "could not be ended".into(),
        }
    }

    /// [`SutProcess::finish`], with the exit status (a SUT killed after the grace shows SIGKILL).
    pub fn finish_status(&mut self) -> Option<std::process::ExitStatus> {
        self.driver.close_stdin();
        self.sut.terminate(EXIT_GRACE).ok()
    }
}

impl Drop for SutProcess {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Conversation for SutProcess {
    fn request(
        &mut self,
        op: &str,
        fields: Map<String, Value>,
        timeout: Option<Duration>,
    ) -> Result<Reply, HarnessError> {
        self.raw_request(op, fields, timeout)
            .map_err(HarnessError::Sut)
    }

    fn has(&self, cap: Cap) -> bool {
        self.driver.hello.has(cap)
    }
}

/// A fault, with the process's fate and stderr: an exit is a crash, silence a hang, a bad line a protocol
/// error.
fn describe(sut: &mut Sut, fault: SutFault) -> SutFailure {
    let kind = match &fault {
        SutFault::Exited { .. } => SutFailureKind::Crashed,
        SutFault::Hung { .. } => SutFailureKind::Hung,
        SutFault::NoHello { .. } | SutFault::Protocol { .. } => SutFailureKind::Protocol,
    };
    let mut message = fault.to_string();
    if let SutFault::Exited { during } = &fault {
        // The pipe closes just before the process is reaped: give it a moment to report how it ended.
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut status = sut.try_exit();
        while status.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            status = sut.try_exit();
        }
        message = match status {
            Some(s) => format!("SUT crashed: it {} during {during}", exit_words(s)),
            None => format!("SUT crashed: it closed its stdout during {during}"),
        };
        if let Some(limit) = sut.killed_by_memory_limit() {
            message.push_str(&format!(
                " (its memory limit of {} MiB was reached: the kernel's OOM killer ended it)",
                limit >> 20
            ));
        }
    }
    SutFailure {
        kind,
        message,
        stderr_tail: sut.stderr_tail(STDERR_QUOTED),
    }
}

fn exit_words(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => format!("ended ({s})"),
    }
}

/// Starts `spec` once in a namespace of its own, outside any case, and returns its hello: what the run
/// may ask of it (`caps`, `families`) before any case is generated.
pub fn probe(spec: &SutSpec) -> Result<super::driver::Hello, HarnessError> {
    let worker = crate::lab::worker::HostWorker::spawn(crate::frame::Host::B)?;
    let spec = spec.clone();
    worker.run(move || {
        // The link end stays open while the SUT runs: a SUT may use its device before it says hello.
        let (_ours, fd3, uid) = match &spec.attach {
            super::Attach::Fd => {
                let (ours, theirs) = super::seqpacket_pair()
                    .map_err(|e| HarnessError::lab("SUT probe: socketpair", e))?;
                (
                    Some(
                        crate::link::endpoint::PacketEnd::new(ours)
                            .map_err(|e| HarnessError::lab("SUT probe", e))?,
                    ),
                    Some(theirs),
                    None,
                )
            }
            super::Attach::Tun { name } => {
                let lease = sandbox::UidLease::take()?;
                let end = crate::link::sut::persistent_tun(name, lease.uid(), None)?;
                (Some(end), None, Some(lease))
            }
            super::Attach::Kernel => (None, None, None),
        };
        let ctx = CaseContext {
            family: crate::sock::Family::Ipv4,
            seed: 0,
            case: "probe".into(),
            mtu: 1500,
            port: None,
        };
        let mut p = SutProcess::start(&spec, &ctx, fd3, uid)?;
        let hello = p.hello().clone();
        p.finish();
        Ok(hello)
    })?
}
