//! The executor: runs a [`Program`] on both hosts' real sockets and records every outcome.
//!
//! Each host's ops run on that host's thread (inside its namespace), which owns its sockets. The program is
//! cut into segments at [`Op::Sync`]; segment `k` of `a` and segment `k` of `b` run concurrently, then both
//! meet at a barrier (both hosts pass the same number of barriers, whatever their op counts). Every blocking
//! operation has a deadline ([`ExecConfig`]), so a program never hangs the harness; the barrier itself gives
//! up after [`BARRIER_TIMEOUT`] and reports the other host as stuck.
//!
//! What runs an op is a [`HostSession`] of the host's backend ([`crate::backend`]): the kernel's sockets on
//! the host's thread today. Sockets stay open until the caller drops the returned [`HostSockets`] — after
//! the capture stopped — so the trace shows the program, not the teardown.
//!
//! - [`outcome`] — what an op produced ([`OpResult`], [`SockSnapshot`], [`OpOutcome`]) and the deadlines.

pub mod outcome;

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::backend::driven::{DrivenSession, PortBook};
use crate::backend::kernel::KernelSession;
use crate::backend::{HostSession, Slot};
use crate::error::HarnessError;
use crate::frame::Host;
use crate::lab::Lab;
use crate::ops::{Op, Program};

pub use outcome::{ExecConfig, OpOutcome, OpResult, SockSnapshot};

/// How long a barrier waits for the other host before the case errors.
pub const BARRIER_TIMEOUT: Duration = Duration::from_secs(10);

/// Sockets of one host, kept open until the caller drops them.
pub struct HostSockets(#[allow(dead_code)] Box<dyn HostSession>);

struct SyncPoint {
    state: Mutex<(u32, u64, bool)>,
    cv: Condvar,
}

impl SyncPoint {
    fn new() -> Arc<SyncPoint> {
        Arc::new(SyncPoint {
            state: Mutex::new((0, 0, false)),
            cv: Condvar::new(),
        })
    }
    fn wait(&self) -> bool {
        let mut st = self.state.lock().unwrap();
        if st.2 {
            return false;
        }
        let generation = st.1;
        st.0 += 1;
        if st.0 == 2 {
            st.0 = 0;
            st.1 += 1;
            self.cv.notify_all();
            return true;
        }
        let deadline = Instant::now() + BARRIER_TIMEOUT;
        while st.1 == generation && !st.2 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                st.2 = true;
                self.cv.notify_all();
                return false;
            }
            st = self.cv.wait_timeout(st, left).unwrap().0;
        }
        !st.2
    }
    fn breaks(&self) {
        self.state.lock().unwrap().2 = true;
        self.cv.notify_all();
    }
}

/// Breaks the barrier if the host job ends without passing all of it (panic, harness error).
struct BreakOnDrop(Arc<SyncPoint>, bool);
impl Drop for BreakOnDrop {
    fn drop(&mut self) {
        if !self.1 {
            self.0.breaks();
        }
    }
}

fn split_segments(ops: &[Op]) -> Vec<Vec<(usize, Op)>> {
    let mut segs = vec![Vec::new()];
    for (i, op) in ops.iter().enumerate() {
        if *op == Op::Sync {
            segs.push(Vec::new());
        } else {
            segs.last_mut().expect("non-empty").push((i, op.clone()));
        }
    }
    segs
}

/// Runs `program` in `lab`; returns every outcome (a's then b's, each in op order) and the open sockets.
pub fn run_program(
    lab: &Lab,
    program: &Program,
    cfg: ExecConfig,
) -> Result<(Vec<OpOutcome>, Vec<HostSockets>), HarnessError> {
    let segs_a = split_segments(&program.a);
    let segs_b = split_segments(&program.b);
    let nseg = segs_a.len().max(segs_b.len());
    let sync = SyncPoint::new();
    let start = Instant::now();
    let start_wall_ns = crate::capture::realtime_ns();
    let mut pending = Vec::new();
    // a's ports, for a driven b to tell whose stream it reads (backend/driven.rs).
    let ports = Arc::new(PortBook::default());
    for (host, segs) in [(Host::A, segs_a), (Host::B, segs_b)] {
        let sync = sync.clone();
        let local = lab.addr(host, cfg.family);
        let peer = lab.addr(host.other(), cfg.family);
        let sut = (host == Host::B).then(|| lab.sut()).flatten();
        let ports = ports.clone();
        pending.push(lab.host(host).submit(move || {
            let mut guard = BreakOnDrop(sync.clone(), false);
            let session: Box<dyn HostSession> = match sut {
                Some(sut) => Box::new(DrivenSession::new(sut, cfg, ports.clone())),
                None => Box::new(KernelSession::new(cfg, local, peer)),
            };
            let mut exec = HostExec {
                host,
                session,
                start,
                ports: (host == Host::A).then_some(ports),
            };
            let mut outcomes = Vec::new();
            for s in 0..nseg {
                if let Some(seg) = segs.get(s) {
                    for (index, op) in seg {
                        outcomes.push(exec.step(*index, s, op)?);
                    }
                }
                if s + 1 < nseg && !sync.wait() {
                    return Err(HarnessError::HostThread(format!(
                        "{}: the other host did not reach barrier {} (it failed, or took over {BARRIER_TIMEOUT:?})",
                        host.name(),
                        s + 1
                    )));
                }
            }
            guard.1 = true;
            Ok::<_, HarnessError>((outcomes, HostSockets(exec.session)))
        }));
    }
    let results: Vec<_> = pending
        .into_iter()
        .map(|p| {
            p.wait_timeout(BARRIER_TIMEOUT * (nseg as u32 + 1))
                .and_then(|r| r)
        })
        .collect();
    // When one host fails, the other reports a broken barrier: the first cause is the failing host's own
    // error, and a SUT's fault (crash, hang) is always a cause.
    if let Some(i) = results
        .iter()
        .position(|r| matches!(r, Err(HarnessError::Sut(_))))
        .or_else(|| {
            results
                .iter()
                .position(|r| r.is_err() && !is_broken_barrier(r))
        })
    {
        if let Some(Err(e)) = results.into_iter().nth(i) {
            return Err(e);
        }
        unreachable!("position() found an error");
    }
    let mut all = Vec::new();
    let mut sockets = Vec::new();
    for r in results {
        let (outcomes, socks) = r?;
        all.extend(outcomes);
        sockets.push(socks);
    }
    record_ops(start_wall_ns, &all);
    Ok((all, sockets))
}

fn is_broken_barrier<T>(r: &Result<T, HarnessError>) -> bool {
    matches!(r, Err(HarnessError::HostThread(m)) if m.contains("did not reach barrier"))
}

/// One executed op placed on the capture's clock, for drawings (the HTML report's ladder margins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpMark {
    pub host: Host,
    /// When the op started, nanoseconds since the Unix epoch (CLOCK_REALTIME, like frame timestamps).
    pub wall_ns: u64,
    /// `connect(s0, 5001) -> ECONNREFUSED`.
    pub text: String,
}

thread_local! {
    /// The ops [`run_program`] ran on this thread since [`start_recording_ops`], when recording.
    static RECORDED_OPS: std::cell::RefCell<Option<Vec<OpMark>>> = const { std::cell::RefCell::new(None) };
}

/// Starts recording the ops every [`run_program`] called on this thread runs (the runner does this around
/// a property's `execute`, which runs on the worker's thread).
pub fn start_recording_ops() {
    RECORDED_OPS.with(|r| *r.borrow_mut() = Some(Vec::new()));
}

/// The ops recorded since [`start_recording_ops`], in time order; recording stops. `None`: no program ran
/// through [`run_program`] (the property drove its sockets another way, so op times are not known).
pub fn take_recorded_ops() -> Option<Vec<OpMark>> {
    let mut ops = RECORDED_OPS.with(|r| r.borrow_mut().take())?;
    if ops.is_empty() {
        return None;
    }
    ops.sort_by_key(|o| o.wall_ns);
    Some(ops)
}

fn record_ops(start_wall_ns: u64, outcomes: &[OpOutcome]) {
    RECORDED_OPS.with(|r| {
        if let Some(list) = r.borrow_mut().as_mut() {
            list.extend(
                outcomes
                    .iter()
                    .filter(|o| o.op != Op::Sync)
                    .map(|o| OpMark {
                        host: o.host,
                        wall_ns: start_wall_ns + o.t_ns,
                        text: format!("{} -> {}", o.op.render(), o.result.render()),
                    }),
            );
        }
    });
}
/// A host's session with the clock of its program: turns each op into a timed [`OpOutcome`].
struct HostExec {
    host: Host,
    session: Box<dyn HostSession>,
    start: Instant,
    /// Where a's local ports are published (a's session of a program run).
    ports: Option<Arc<PortBook>>,
}

impl HostExec {
    fn step(&mut self, index: usize, segment: usize, op: &Op) -> Result<OpOutcome, HarnessError> {
        let t_ns = self.start.elapsed().as_nanos() as u64;
        let wall_ns = crate::record::realtime_ns();
        let result = match op.sock().map(|i| self.session.slot(i)) {
            Some(Slot::Missing) => OpResult::Skipped {
                why: "no such socket".into(),
            },
            Some(Slot::Closed) => OpResult::Skipped {
                why: "socket closed".into(),
            },
            Some(Slot::Open) | None => self.session.apply(op)?,
        };
        let done_wall_ns = crate::record::realtime_ns();
        let sock = op.sock().and_then(|i| self.session.snapshot(i));
        if let (Some(book), Some(port)) = (&self.ports, sock.as_ref().and_then(|s| s.local_port)) {
            book.insert(port);
        }
        Ok(OpOutcome {
            host: self.host,
            index,
            segment,
            op: op.clone(),
            result,
            sock,
            t_ns,
            wall_ns,
            done_wall_ns,
        })
    }
}

thread_local! {
    /// The socket table of a host thread driven one op at a time (scripted peer runs): it lives as long as
    /// the host thread, so sockets stay open between ops and close with the lab.
    static SESSION: std::cell::RefCell<Option<HostExec>> = const { std::cell::RefCell::new(None) };
}

/// Runs one op on `host`'s thread, keeping that host's sockets between calls (indices as in a program).
pub fn session_op(
    lab: &Lab,
    host: Host,
    index: usize,
    op: Op,
    cfg: ExecConfig,
) -> Result<OpOutcome, HarnessError> {
    let local = lab.addr(host, cfg.family);
    let peer = lab.addr(host.other(), cfg.family);
    lab.host(host).run(move || {
        SESSION.with(|s| {
            let mut s = s.borrow_mut();
            let exec = s.get_or_insert_with(|| HostExec {
                host,
                session: Box::new(KernelSession::new(cfg, local, peer)),
                start: Instant::now(),
                ports: None,
            });
            exec.step(index, 0, &op)
        })
    })?
}
