//! Host threads: one OS thread per lab host, living inside that host's anonymous network namespace.
//!
//! `setns`/`unshare` are per thread, so a namespace is "held" by the thread that created it and by the file
//! descriptor we keep. Work for a host is sent to its thread as a closure; sockets are created there and never
//! leave it. When the [`HostWorker`] is dropped its channel closes, the thread ends, its descriptors close,
//! and the kernel frees the namespace with everything in it (veth, addresses, sockets) — also when the whole
//! process dies, even by SIGKILL, because nothing names the namespace (no /run/netns bind mount).

use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::Duration;

use crate::error::{HarnessError, Result};
use crate::frame::Host;
use crate::lab::nsfd::NetNs;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A thread inside one lab host's network namespace, running the jobs it is given in order.
pub struct HostWorker {
    host: Host,
    jobs: Option<Sender<Job>>,
    netns: NetNs,
    thread: Option<thread::JoinHandle<()>>,
}

/// A job's result, to be collected later (lets both hosts work at the same time).
pub struct Pending<R> {
    host: Host,
    rx: Receiver<std::thread::Result<R>>,
}

impl<R> Pending<R> {
    /// Waits for the job. A panic inside the job is carried over to the caller's thread (so a property's panic
    /// is reported where it belongs), but the host thread survives it.
    pub fn wait(self) -> Result<R> {
        match self.rx.recv() {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(HarnessError::HostThread(format!(
                "{} stopped before answering",
                self.host.name()
            ))),
        }
    }

    /// Like [`Pending::wait`] with a deadline; a job still running then is reported as a harness error.
    pub fn wait_timeout(self, timeout: Duration) -> Result<R> {
        match self.rx.recv_timeout(timeout) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(HarnessError::HostThread(format!(
                "{}: a job did not finish within {timeout:?}",
                self.host.name()
            ))),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(HarnessError::HostThread(format!(
                "{} stopped before answering",
                self.host.name()
            ))),
        }
    }
}

/// A host thread that is still creating its namespace; [`Starting::finish`] waits for it.
pub struct Starting {
    host: Host,
    jobs: Sender<Job>,
    ready: Receiver<Result<NetNs>>,
    thread: thread::JoinHandle<()>,
}

impl Starting {
    /// Waits until the thread is inside its new namespace (and has run its first job).
    pub fn finish(self) -> Result<HostWorker> {
        let Starting {
            host,
            jobs,
            ready,
            thread,
        } = self;
        let netns = match ready.recv() {
            Ok(Ok(ns)) => ns,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(HarnessError::HostThread(format!(
                    "{} died during start",
                    host.name()
                )));
            }
        };
        Ok(HostWorker {
            host,
            jobs: Some(jobs),
            netns,
            thread: Some(thread),
        })
    }
}

impl HostWorker {
    /// Starts a thread, moves it into a new anonymous network namespace, and returns once that is done.
    pub fn spawn(host: Host) -> Result<HostWorker> {
        HostWorker::start(host, || Ok(()))?.finish()
    }

    /// Starts a thread that moves into a new anonymous network namespace and runs `init` there (e.g. the
    /// lab's default sysctls) before it takes jobs; returns at once, so several hosts start in parallel.
    /// An error of `init` is reported by [`Starting::finish`].
    pub fn start<F>(host: Host, init: F) -> Result<Starting>
    where
        F: FnOnce() -> Result<()> + Send + 'static,
    {
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<NetNs>>();
        let thread = thread::Builder::new()
            .name(format!("lab-{}", host.name()))
            .spawn(move || {
                let netns = match NetNs::new_on_this_thread() {
                    Ok(ns) => ns,
                    Err(e) => {
                        let _ = ready_tx.send(Err(HarnessError::lab(
                            format!("unshare(CLONE_NEWNET) for host {}", host.name()),
                            e,
                        )));
                        return;
                    }
                };
                crate::sock::set_thread_lab_netns(netns.inode());
                let answer = init().and_then(|()| {
                    netns.try_clone().map_err(|e| {
                        HarnessError::lab(format!("dup namespace fd of {}", host.name()), e)
                    })
                });
                // A failed start ends the thread: `Starting::finish` joins it while still holding the job
                // sender, so waiting for jobs here would hang both.
                let failed = answer.is_err();
                let _ = ready_tx.send(answer);
                drop(ready_tx);
                if failed {
                    return;
                }
                while let Ok(job) = jobs_rx.recv() {
                    job();
                }
            })
            .map_err(|e| HarnessError::lab(format!("spawn host thread {}", host.name()), e))?;
        Ok(Starting {
            host,
            jobs: jobs_tx,
            ready: ready_rx,
            thread,
        })
    }

    pub fn host(&self) -> Host {
        self.host
    }

    /// The host's network namespace (a descriptor of our own, and its inode).
    pub fn netns(&self) -> &NetNs {
        &self.netns
    }

    /// Sends a job to the host thread and returns at once.
    pub fn submit<R, F>(&self, f: F) -> Pending<R>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(result);
        });
        if let Some(jobs) = &self.jobs {
            // If the thread is gone the receiver is dropped and `wait` reports it.
            let _ = jobs.send(job);
        }
        Pending {
            host: self.host,
            rx,
        }
    }

    /// Runs a job on the host thread and waits for it.
    pub fn run<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        self.submit(f).wait()
    }
}

impl Drop for HostWorker {
    fn drop(&mut self) {
        // Closing the channel ends the thread after its current job. We do not join: a job blocked in the
        // kernel must not hang the harness; the thread exits on its own when the job returns.
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}
