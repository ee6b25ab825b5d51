//! Starting an untrusted system under test (student code) and ending it leaving nothing behind.
//!
//! [`Sut::spawn`] is called on a lab host thread ([`crate::lab::HostWorker`]); `fork` copies the calling
//! thread's network namespace, so the SUT lives in that host's namespace (only `lo` and what the lab puts
//! there). Three processes are involved:
//!
//! ```text
//! harness (host thread) ── fork ──▶ shim (root, our code) ── unshare(PID) + fork ──▶ SUT = PID 1 ── execve
//! ```
//!
//! - The **shim** stays outside the new PID namespace and only waits for its child. Its pid is the only one we
//!   hold (a `std::process::Child`, reaped only by us, so the pid cannot be reused under us). It dies with
//!   the harness thread that spawned it (`PR_SET_PDEATHSIG`), and the SUT dies with the shim the same way
//!   (its death signal is set after `setresuid`, which clears it, and is followed by a check that the shim
//!   is still there).
//! - The **SUT** is PID 1 of a new PID namespace and has its own mount namespace: everything is remounted
//!   read-only (nothing it writes survives it; `/tmp` stays readable, so a program may be installed there),
//!   a fresh `/proc` shows only its namespace, a fresh read-only `/sys` shows only its network namespace,
//!   `/run` is hidden, and on request a private `/dev/net/tun` node it may open (mode 0666, on a tmpfs over
//!   `/dev/net`) — the host's node is root-only. Then it drops to a pooled unprivileged uid/gid, takes
//!   rlimits and `PR_SET_NO_NEW_PRIVS`, and execs the program. Its working directory is `/`.
//!
//! **How it ends.** When PID 1 of a PID namespace exits, the kernel kills every other process in it —
//! children that called `setsid` or double-forked included — and PID 1 only becomes reapable after all of
//! them are gone (`zap_pid_ns_processes`). [`Sut::terminate`] and `Drop` send SIGTERM to the shim, which
//! SIGKILLs PID 1, reaps it, writes one byte to a pipe we hold and exits: once we have reaped a shim that
//! wrote its byte, no process of the SUT exists any more, and its uid goes back to the pool. A shim killed
//! instead (by us after [`SHIM_EXIT_WAIT`], by its host thread ending, by the OOM killer) leaves PID 1
//! with SIGKILL pending and dying asynchronously, reparented to init (which may leave it a zombie for a
//! while): its uid is retired, never reused by this process.
//!
//! **Uids.** Every running SUT has its own uid (gid the same number) from `1_900_000 + n`, `n < 4096`, a range
//! no login user has. `RLIMIT_NPROC` counts processes per real uid, so a fork bomb is bounded per SUT, and two
//! SUTs cannot signal or ptrace each other. Slots are handed out from a per-process pool, starting at an
//! offset derived from our pid and skipping uids that own a process, so two netconform processes on one
//! machine are unlikely to pick the same uid (not excluded: the pool is not shared between processes).
//!
//! **Errors.** Every step after `fork` is async-signal-safe (every string is prepared before); a step that
//! fails writes its step code and errno to a close-on-exec pipe that the spawner reads to EOF, so a failure
//! reads `sandbox: setresuid(1900000) failed: EPERM (...)`, never a silent exit. The program must be
//! reachable by the unprivileged uid (every directory on its path searchable by others, the file executable
//! by others): that is checked before forking, with the remedy.
//!
//! **Memory.** Every SUT gets a memory cgroup of its own ([`super::cgroup`], [`Limits::memory`]) that the
//! shim joins before it forks the SUT, so the limit holds for all its processes together; where no memory
//! cgroup can be made, `RLIMIT_AS` per process is the only bound and the run says so once.
//!
//! Left out: filesystem Unix sockets with mode o+w (outside `/run`) stay connectable (a read-only mount does
//! not stop `connect`); no seccomp filter; no CPU cgroup (`RLIMIT_CPU` per process and the wall-clock limit
//! of a case bound CPU use).

use std::collections::VecDeque;
use std::ffi::{CString, OsStr};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::errno::errno_name;
use crate::error::{HarnessError, Result};
use crate::lab::nsfd::NetNs;

use super::cgroup::MemoryCgroup;

/// Whether the missing memory cgroup was already reported in this run.
static NO_CGROUP_SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// First uid (and gid) of the SUT pool: above the 16-bit and systemd ranges (systemd-nspawn's container uids
/// start at 524288 and come in 65536 blocks; 1_900_000 is in none of the usual allocations).
pub const UID_BASE: u32 = 1_900_000;
/// Number of uids in the pool: the most SUTs one netconform process runs at once.
pub const UID_SLOTS: u32 = 4096;
/// How much of the SUT's stderr is kept (the end of it): enough for a panic message and its backtrace.
pub const STDERR_KEPT: usize = 64 * 1024;
/// How long the shim has to kill PID 1 and see the namespace empty after our SIGTERM.
pub const SHIM_EXIT_WAIT: Duration = Duration::from_secs(5);
/// The PATH given to the SUT when the harness has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How often exit is polled while waiting (a SUT's exit is not on any latency path).
const POLL: Duration = Duration::from_millis(2);

/// Resource limits of the SUT, each applied as both soft and hard limit (it cannot raise them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `RLIMIT_CPU`, whole seconds of CPU time per process (then SIGKILL). A case's wall-clock limit is the
    /// caller's.
    pub cpu_seconds: u64,
    /// `RLIMIT_AS`, bytes of address space per process.
    pub address_space: u64,
    /// `RLIMIT_NOFILE`, open descriptors per process.
    pub open_files: u64,
    /// `RLIMIT_NPROC`, processes and threads of the SUT's uid (one uid per SUT, so per SUT).
    pub processes: u64,
    /// `RLIMIT_FSIZE`, the largest file it may write (the file system is read-only anyway).
    pub file_size: u64,
    /// Resident memory of all the SUT's processes together (its memory cgroup's limit), in bytes.
    pub memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu_seconds: 30,
            address_space: 2 << 30,
            open_files: 256,
            processes: 64,
            file_size: 64 << 20,
            memory: 512 << 20,
        }
    }
}

/// What to start. The environment is cleared except `PATH` (the harness's) and `HOME=/`; `env` adds to it.
#[derive(Debug)]
pub struct SutSpec {
    /// Program and arguments; a program without `/` is looked up in the SUT's `PATH`.
    pub argv: Vec<String>,
    /// Extra environment variables (`NETCONFORM_FD=3`, …); they override `PATH` and `HOME`.
    pub env: Vec<(String, String)>,
    /// A descriptor that becomes the SUT's fd 3 (e.g. its end of the `SOCK_SEQPACKET` packet link).
    pub fd3: Option<OwnedFd>,
    /// Give the SUT a private `/dev/net/tun` node it may open (TUN/TAP attachment by name).
    pub dev_net_tun: bool,
    pub limits: Limits,
    /// The uid to run as, leased beforehand (a TUN device made for the SUT is owned by it); `None`: a new
    /// lease at spawn.
    pub uid: Option<UidLease>,
}

impl SutSpec {
    /// A spec with default limits, no fd 3, no `/dev/net/tun` and no extra environment.
    pub fn new<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> SutSpec {
        SutSpec {
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            fd3: None,
            dev_net_tun: false,
            limits: Limits::default(),
            uid: None,
        }
    }
}

/// A running (or ended) SUT. Dropping it ends the SUT like [`Sut::terminate`] with no grace.
pub struct Sut {
    shim: Child,
    uid: Option<UidLease>,
    uid_value: u32,
    /// The shim writes one byte here after it reaped PID 1, i.e. once the namespace is empty.
    reaped: std::fs::File,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Arc<Mutex<VecDeque<u8>>>,
    status: Option<ExitStatus>,
    /// Dropped (removed) after the shim: by then no process is left in it.
    memory: Option<MemoryCgroup>,
    /// The limit, when the OOM killer of the memory cgroup ended a process of the SUT (read before removal).
    memory_killed: Option<u64>,
}

impl Sut {
    /// Starts the SUT in the calling lab host thread's network namespace.
    ///
    /// Errors (all [`HarnessError::Sut`]) say which step failed and how to fix it: not on a lab host thread,
    /// program not found or not reachable by the unprivileged uid, a namespace, mount or credential step, or
    /// `execve` itself.
    pub fn spawn(spec: SutSpec) -> Result<Sut> {
        ensure_on_lab_thread()?;
        let SutSpec {
            argv,
            env,
            fd3,
            dev_net_tun,
            limits,
            uid,
        } = spec;
        let Some(program) = argv.first() else {
            return Err(HarnessError::sut_start("sandbox: empty argv"));
        };
        let env = sut_environment(env);
        let sut_path = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| DEFAULT_PATH.into());
        let lease = match uid {
            Some(lease) => lease,
            None => UidLease::take()?,
        };
        let uid = lease.uid;
        let path = resolve_program(program, &sut_path, uid)?;
        let memory = match MemoryCgroup::create(uid, limits.memory) {
            Ok(group) => Some(group),
            Err(why) => {
                if !NO_CGROUP_SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    eprintln!(
                        "netconform: no memory cgroup for SUTs ({why}); each SUT process is bounded by \
                         RLIMIT_AS only (give the harness a writable memory cgroup to bound them together)"
                    );
                }
                None
            }
        };

        let (report_read, report_write) = pipe_cloexec().map_err(|e| {
            HarnessError::sut_start(format!("sandbox: pipe2 for the child's report: {e}"))
        })?;
        let (reaped_read, reaped_write) = pipe_cloexec().map_err(|e| {
            HarnessError::sut_start(format!("sandbox: pipe2 for the shim's end: {e}"))
        })?;
        let plan = ChildPlan::new(
            &path,
            &argv,
            &env,
            uid,
            limits,
            dev_net_tun,
            fd3.as_ref().map(AsRawFd::as_raw_fd),
            report_write.as_raw_fd(),
            reaped_write.as_raw_fd(),
            memory.as_ref().map(|g| g.procs_file().clone()),
        )?;
        let mut command = Command::new(&path);
        command
            .args(&argv[1..])
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: `ChildPlan::run` only makes async-signal-safe calls on data prepared above and never
        // returns: it execs or `_exit`s in both the shim and the SUT.
        unsafe {
            command.pre_exec(move || plan.run());
        }
        let spawned = command.spawn();
        // Our copy of the write end must go before we read to EOF; the children close theirs by exec or exit.
        drop(report_write);
        drop(reaped_write);
        drop(fd3);
        let mut shim = spawned.map_err(|e| {
            HarnessError::sut_start(format!(
                "sandbox: fork of the shim for {}: {}",
                path.display(),
                describe_errno(e.raw_os_error().unwrap_or(libc::EIO))
            ))
        })?;
        if let Some(failure) = read_report(report_read) {
            let _ = shim.wait();
            return Err(HarnessError::sut_start(failure.describe(&path, uid)));
        }
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(pipe) = shim.stderr.take() {
            let kept = Arc::clone(&stderr);
            // The thread ends at EOF: when every process of the SUT is gone.
            thread::Builder::new()
                .name(format!("sut-stderr-{uid}"))
                .spawn(move || keep_tail(pipe, &kept))
                .map_err(|e| {
                    HarnessError::sut_start(format!("sandbox: thread for the SUT's stderr: {e}"))
                })?;
        }
        Ok(Sut {
            stdin: shim.stdin.take(),
            stdout: shim.stdout.take(),
            shim,
            uid: Some(lease),
            uid_value: uid,
            reaped: std::fs::File::from(reaped_read),
            stderr,
            status: None,
            memory,
            memory_killed: None,
        })
    }

    /// The SUT's uid (and gid).
    pub fn uid(&self) -> u32 {
        self.uid_value
    }

    /// Whether the SUT's memory cgroup limit ended a process of it (the OOM killer's SIGKILL).
    pub fn killed_by_memory_limit(&self) -> Option<u64> {
        self.memory_killed.or_else(|| {
            self.memory
                .as_ref()
                .filter(|g| g.killed_by_limit())
                .map(MemoryCgroup::limit)
        })
    }

    /// The shim's pid (in our PID namespace); the SUT's own pid is 1 in its namespace.
    pub fn shim_pid(&self) -> u32 {
        self.shim.id()
    }

    /// The SUT's stdin (requests go here); dropping it is the end-of-case signal.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// The SUT's stdout (replies come from here).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// The SUT's exit status once it has exited, with every process of its namespace gone — or, if the shim
    /// itself was killed (by something else than us), with SIGKILL pending for PID 1 and so for all of them.
    ///
    /// A SUT killed by a signal shows it as `ExitStatus::signal()` (the shim re-raises it on itself).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(status)) = self.shim.try_wait() {
                self.ended(status);
            }
        }
        self.status
    }

    /// The last `max_bytes` (at most [`STDERR_KEPT`]) of the SUT's stderr, invalid UTF-8 replaced.
    pub fn stderr_tail(&self, max_bytes: usize) -> String {
        let kept = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        let skip = kept.len().saturating_sub(max_bytes);
        let bytes: Vec<u8> = kept.iter().skip(skip).copied().collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Ends the SUT: closes its stdin, waits up to `grace` for it to exit, then kills its whole PID namespace.
    /// On `Ok`, no process of the SUT is left.
    pub fn terminate(&mut self, grace: Duration) -> Result<ExitStatus> {
        self.stdin.take();
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.try_exit() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return self.kill();
            }
            thread::sleep(POLL);
        }
    }

    /// SIGTERM to the shim (which SIGKILLs PID 1 and waits for the namespace to empty), then SIGKILL to the
    /// shim if it has not exited within [`SHIM_EXIT_WAIT`].
    fn kill(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.try_exit() {
            return Ok(status);
        }
        let pid = self.shim.id() as libc::pid_t;
        // SAFETY: plain kill(2); the shim is our unreaped child, so `pid` is still the shim.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + SHIM_EXIT_WAIT;
        while Instant::now() < deadline {
            if let Some(status) = self.try_exit() {
                return Ok(status);
            }
            thread::sleep(POLL);
        }
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let status = self.shim.wait().map_err(|e| {
            HarnessError::sut_start(format!("sandbox: waitpid({pid}) for the shim: {e}"))
        })?;
        self.ended(status);
        Err(HarnessError::sut_start(format!(
            "sandbox: the SUT (uid {}) did not end within {SHIM_EXIT_WAIT:?} of SIGKILL (a process stuck in \
             the kernel?); its shim was killed and the kernel ends its PID namespace on its own; uid {} is \
             retired",
            self.uid_value, self.uid_value
        )))
    }

    /// Records the end. The uid goes back to the pool only if the shim saw PID 1 reaped (the namespace is
    /// empty); a shim that was killed itself leaves PID 1 dying of its death signal, maybe as a zombie of
    /// init for a while, so its uid is retired.
    fn ended(&mut self, status: ExitStatus) {
        self.status = Some(status);
        let mut byte = [0u8; 1];
        // The shim has exited: the pipe holds its byte or is at EOF, so this read does not block.
        let namespace_empty = matches!(self.reaped.read(&mut byte), Ok(1));
        if let Some(lease) = self.uid.take() {
            if namespace_empty {
                drop(lease);
            } else {
                lease.retire();
            }
        }
        if namespace_empty {
            if let Some(group) = self.memory.take() {
                self.memory_killed = group.killed_by_limit().then(|| group.limit());
            }
        }
    }
}

impl Drop for Sut {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.kill();
    }
}

impl std::fmt::Debug for Sut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sut")
            .field("shim_pid", &self.shim.id())
            .field("uid", &self.uid_value)
            .field("status", &self.status)
            .finish()
    }
}

/// The pids (in our PID namespace) of every live process whose real uid is `uid`. Zombies are left out: an
/// exited process whose parent has not reaped it yet (e.g. an orphan of a killed shim, waiting for init).
pub fn pids_of_uid(uid: u32) -> Vec<u32> {
    processes()
        .filter(|p| p.uid == uid && !p.zombie)
        .map(|p| p.pid)
        .collect()
}

/// One entry of `/proc`: its real uid from `/proc/<pid>/status` (not the owner of `/proc/<pid>`, which is
/// root for a process that is not dumpable).
struct ProcessEntry {
    pid: u32,
    uid: u32,
    zombie: bool,
}

/// Every process of our PID namespace that is still there when its status is read.
fn processes() -> impl Iterator<Item = ProcessEntry> {
    let dir = std::fs::read_dir("/proc").into_iter().flatten().flatten();
    dir.filter_map(|entry| {
        let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .map(str::to_string)
        };
        Some(ProcessEntry {
            pid,
            uid: field("Uid:")?.parse().ok()?,
            zombie: field("State:")? == "Z",
        })
    })
}

/// A SUT forked from a thread outside a lab would live in the host's network namespace: refused.
fn ensure_on_lab_thread() -> Result<()> {
    let here = NetNs::current().map_err(|e| {
        HarnessError::sut_start(format!("sandbox: read this thread's namespace: {e}"))
    })?;
    match crate::sock::thread_lab_netns() {
        Some(lab) if lab == here.inode() => Ok(()),
        _ => Err(HarnessError::Containment(
            "a SUT may only be started on a lab host thread (HostWorker), whose network namespace it inherits"
                .into(),
        )),
    }
}

/// `PATH` (the harness's, or a default), `HOME=/`, then the spec's variables (which win).
fn sut_environment(extra: Vec<(String, String)>) -> Vec<(String, String)> {
    let path = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into());
    let mut env = vec![("PATH".to_string(), path), ("HOME".to_string(), "/".into())];
    for (k, v) in extra {
        env.retain(|(old, _)| *old != k);
        env.push((k, v));
    }
    env
}

// ---------------------------------------------------------------------------------------------------------
// The program, as the unprivileged uid will see it.

/// Finds `program` (in `path_var` when it has no `/`) and checks that uid `uid` can execute it: every
/// directory on the way searchable by others, the file executable by others (and readable, for a script).
fn resolve_program(program: &str, path_var: &str, uid: u32) -> Result<PathBuf> {
    let remedy = format!(
        "install it where uid {uid} can reach it, world-readable and executable, e.g. \
         `install -m 0755 PROGRAM /usr/local/bin/` (or copy it under /tmp and `chmod 0755` it)"
    );
    let candidate = if program.contains('/') {
        PathBuf::from(program)
    } else {
        let found = path_var
            .split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| Path::new(d).join(program))
            .find(|p| p.is_file() && reachable_by_others(p).is_ok());
        match found {
            Some(p) => p,
            None => {
                return Err(HarnessError::sut_start(format!(
                    "sandbox: program `{program}` not found in the SUT's PATH ({path_var}) as a file uid \
                     {uid} may execute — give its absolute path, or {remedy}"
                )))
            }
        }
    };
    let absolute = std::fs::canonicalize(&candidate).map_err(|e| {
        HarnessError::sut_start(format!(
            "sandbox: program `{}` not found: {} — check the path",
            candidate.display(),
            describe_errno(e.raw_os_error().unwrap_or(libc::EIO))
        ))
    })?;
    if !absolute.is_file() {
        return Err(HarnessError::sut_start(format!(
            "sandbox: program `{}` is not a regular file",
            absolute.display()
        )));
    }
    reachable_by_others(&absolute).map_err(|why| {
        HarnessError::sut_start(format!(
            "sandbox: program `{}` is not executable by the SUT's unprivileged uid {uid}: {why} — {remedy}",
            absolute.display()
        ))
    })?;
    Ok(absolute)
}

/// Why a user that is neither owner nor in the group cannot execute `file` (an absolute path without
/// symlinks), if it cannot. Pool uids own nothing and are in no group, so only the "others" bits count.
fn reachable_by_others(file: &Path) -> std::result::Result<(), String> {
    for dir in file.ancestors().skip(1) {
        let mode = std::fs::metadata(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            return Err(format!(
                "directory {} is mode {:04o} (others need x on every directory on the path)",
                dir.display(),
                mode & 0o7777
            ));
        }
    }
    let mode = std::fs::metadata(file)
        .map_err(|e| format!("{}: {e}", file.display()))?
        .permissions()
        .mode();
    if mode & 0o001 == 0 {
        return Err(format!(
            "the file is mode {:04o} (others need x)",
            mode & 0o7777
        ));
    }
    let mut head = [0u8; 2];
    let is_script = std::fs::File::open(file)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == *b"#!";
    if is_script && mode & 0o004 == 0 {
        return Err(format!(
            "it is a script and mode {:04o} (the interpreter needs others to have r)",
            mode & 0o7777
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// The uid pool.

/// One bit per pool slot; set while a SUT of ours holds the uid (or after it was retired).
static POOL: Mutex<[u64; (UID_SLOTS / 64) as usize]> = Mutex::new([0; (UID_SLOTS / 64) as usize]);

/// A pool uid held by one SUT; freed on drop.
#[derive(Debug)]
pub struct UidLease {
    uid: u32,
}

impl UidLease {
    /// The uid (and gid) leased.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The first free slot from an offset derived from our pid, skipping uids that own a process.
    pub fn take() -> Result<UidLease> {
        let busy: Vec<u32> = pool_uids_in_use();
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        let start = std::process::id().wrapping_mul(2_654_435_761) % UID_SLOTS;
        for k in 0..UID_SLOTS {
            let slot = (start + k) % UID_SLOTS;
            let (word, bit) = ((slot / 64) as usize, slot % 64);
            let uid = UID_BASE + slot;
            if pool[word] & (1 << bit) == 0 && !busy.contains(&uid) {
                pool[word] |= 1 << bit;
                return Ok(UidLease { uid });
            }
        }
        Err(HarnessError::sut_start(format!(
            "sandbox: all {UID_SLOTS} SUT uids ({UID_BASE}..{}) are in use — run fewer SUTs at once",
            UID_BASE + UID_SLOTS
        )))
    }

    /// Keeps the uid marked as used for the rest of this process (its processes may still exist).
    fn retire(self) {
        std::mem::forget(self);
    }
}

impl Drop for UidLease {
    fn drop(&mut self) {
        let slot = self.uid - UID_BASE;
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        pool[(slot / 64) as usize] &= !(1 << (slot % 64));
    }
}

/// The pool uids that own a process now, zombies included (other netconform processes', or retired ones').
fn pool_uids_in_use() -> Vec<u32> {
    processes()
        .map(|p| p.uid)
        .filter(|uid| (UID_BASE..UID_BASE + UID_SLOTS).contains(uid))
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// Stderr.

/// Reads `pipe` to EOF, keeping its last [`STDERR_KEPT`] bytes: a flood never blocks the SUT nor grows memory.
fn keep_tail(mut pipe: impl Read, kept: &Mutex<VecDeque<u8>>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
                kept.extend(&buf[..n]);
                let excess = kept.len().saturating_sub(STDERR_KEPT);
                kept.drain(..excess);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// After fork: the shim and the SUT's setup. Only async-signal-safe calls below `ChildPlan::run`.

/// The steps after fork, as reported through the pipe (a `u32` code and the errno).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum Step {
    ShimDeathSignal = 1,
    HarnessGone,
    BlockSignals,
    LifePipe,
    UnsharePid,
    Fork,
    UnblockSignals,
    UnshareMount,
    MountPrivate,
    MountReadOnly,
    MountProc,
    MountSys,
    MountRun,
    MountDevNet,
    MknodTun,
    ChmodTun,
    Chdir,
    MoveOffFd3,
    Fd3,
    CloseOnExec,
    LimitCpu,
    LimitAddressSpace,
    LimitOpenFiles,
    LimitProcesses,
    LimitCore,
    LimitFileSize,
    SetGroups,
    SetGid,
    SetUid,
    NoNewPrivs,
    SutDeathSignal,
    ShimGone,
    Exec,
    JoinCgroup,
}

/// Every step, to decode a report.
const STEPS: &[Step] = &[
    Step::ShimDeathSignal,
    Step::HarnessGone,
    Step::BlockSignals,
    Step::LifePipe,
    Step::UnsharePid,
    Step::Fork,
    Step::UnblockSignals,
    Step::UnshareMount,
    Step::MountPrivate,
    Step::MountReadOnly,
    Step::MountProc,
    Step::MountSys,
    Step::MountRun,
    Step::MountDevNet,
    Step::MknodTun,
    Step::ChmodTun,
    Step::Chdir,
    Step::MoveOffFd3,
    Step::Fd3,
    Step::CloseOnExec,
    Step::LimitCpu,
    Step::LimitAddressSpace,
    Step::LimitOpenFiles,
    Step::LimitProcesses,
    Step::LimitCore,
    Step::LimitFileSize,
    Step::SetGroups,
    Step::SetGid,
    Step::SetUid,
    Step::NoNewPrivs,
    Step::SutDeathSignal,
    Step::ShimGone,
    Step::Exec,
    Step::JoinCgroup,
];

/// A step that failed in a child, as read from the report pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChildFailure {
    step: Option<Step>,
    errno: i32,
}

impl ChildFailure {
    /// The message: the call as written, its errno, and for the usual causes the remedy.
    fn describe(&self, path: &Path, uid: u32) -> String {
        let errno = describe_errno(self.errno);
        let path = path.display();
        let Some(step) = self.step else {
            return format!("sandbox: an unknown step failed: {errno}");
        };
        let (call, remedy) = match step {
            Step::ShimDeathSignal => ("prctl(PR_SET_PDEATHSIG) in the shim".into(), ""),
            Step::HarnessGone => ("the shim's parent ended before it started".into(), ""),
            Step::BlockSignals => ("sigprocmask in the shim".into(), ""),
            Step::LifePipe => ("pipe2 in the shim".into(), ""),
            Step::JoinCgroup => (
                "joining the SUT's memory cgroup (write to cgroup.procs)".into(),
                "",
            ),
            Step::UnsharePid => (
                "unshare(CLONE_NEWPID)".into(),
                " — run as root (CAP_SYS_ADMIN); in a container, it must allow new PID namespaces",
            ),
            Step::Fork => (
                "fork of the SUT".into(),
                " — too many processes? (the shim forks as root)",
            ),
            Step::SutDeathSignal => ("prctl(PR_SET_PDEATHSIG) in the SUT".into(), ""),
            Step::ShimGone => ("the shim ended before the SUT started".into(), ""),
            Step::UnblockSignals => ("sigprocmask in the SUT".into(), ""),
            Step::UnshareMount => (
                "unshare(CLONE_NEWNS)".into(),
                " — run as root (CAP_SYS_ADMIN)",
            ),
            Step::MountPrivate => ("mount(\"/\", MS_REC|MS_PRIVATE)".into(), ""),
            Step::MountReadOnly => (
                "mount_setattr(\"/\", AT_RECURSIVE, MOUNT_ATTR_RDONLY)".into(),
                " — needs Linux ≥ 5.12",
            ),
            Step::MountProc => ("mount(proc on /proc)".into(), ""),
            Step::MountSys => ("mount(sysfs on /sys)".into(), ""),
            Step::MountRun => ("mount(empty tmpfs on /run)".into(), ""),
            Step::MountDevNet => (
                "mount(tmpfs on /dev/net)".into(),
                " — the host needs a /dev/net directory (modprobe tun)",
            ),
            Step::MknodTun => ("mknod(/dev/net/tun, c 10 200)".into(), ""),
            Step::ChmodTun => ("chmod(/dev/net/tun, 0666)".into(), ""),
            Step::Chdir => ("chdir(\"/\")".into(), ""),
            Step::MoveOffFd3 => ("fcntl(F_DUPFD_CLOEXEC) of a pipe on fd 3".into(), ""),
            Step::Fd3 => ("dup2(fd, 3)".into(), ""),
            Step::CloseOnExec => ("close_range(CLOSE_RANGE_CLOEXEC)".into(), ""),
            Step::LimitCpu => ("setrlimit(RLIMIT_CPU)".into(), ""),
            Step::LimitAddressSpace => ("setrlimit(RLIMIT_AS)".into(), ""),
            Step::LimitOpenFiles => (
                "setrlimit(RLIMIT_NOFILE)".into(),
                " — the limit may not exceed fs.nr_open",
            ),
            Step::LimitProcesses => ("setrlimit(RLIMIT_NPROC)".into(), ""),
            Step::LimitCore => ("setrlimit(RLIMIT_CORE)".into(), ""),
            Step::LimitFileSize => ("setrlimit(RLIMIT_FSIZE)".into(), ""),
            Step::SetGroups => ("setgroups(0)".into(), ""),
            Step::SetGid => (format!("setresgid({uid})"), ""),
            Step::SetUid => (format!("setresuid({uid})"), ""),
            Step::NoNewPrivs => ("prctl(PR_SET_NO_NEW_PRIVS)".into(), ""),
            Step::Exec => {
                let remedy = match self.errno {
                    libc::EACCES => {
                        " — the SUT's uid may not execute it (a directory on the path or the file lacks \
                         others' x, or its file system is mounted noexec); install it world-readable, e.g. \
                         under /usr/local/bin with `chmod 0755`"
                    }
                    libc::ENOEXEC => " — not a binary of this machine, nor a script starting with `#!`",
                    libc::ENOENT => {
                        " — the file or its interpreter (`#!` line, or the ELF loader) is missing"
                    }
                    _ => "",
                };
                (format!("execve({path}) as uid {uid}"), remedy)
            }
        };
        format!("sandbox: {call} failed: {errno}{remedy}")
    }
}

/// An errno as `EPERM (Operation not permitted)`.
fn describe_errno(errno: i32) -> String {
    let text = io::Error::from_raw_os_error(errno).to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    format!("{} ({text})", errno_name(errno))
}

/// Reads the report pipe to EOF: nothing means the SUT reached `execve` and it succeeded.
fn read_report(pipe: OwnedFd) -> Option<ChildFailure> {
    let mut file = std::fs::File::from(pipe);
    let mut bytes = Vec::new();
    if let Err(e) = file.read_to_end(&mut bytes) {
        return Some(ChildFailure {
            step: None,
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        });
    }
    if bytes.len() < 8 {
        return None;
    }
    let code = u32::from_ne_bytes(bytes[0..4].try_into().ok()?);
    let errno = i32::from_ne_bytes(bytes[4..8].try_into().ok()?);
    Some(ChildFailure {
        step: STEPS.iter().copied().find(|s| *s as u32 == code),
        errno,
    })
}

/// A pipe, both ends close-on-exec: (read, write).
fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: two fresh descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `struct mount_attr` (include/uapi/linux/mount.h), for `mount_setattr(2)`; not in the libc crate.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `MOUNT_ATTR_RDONLY` and `MOUNT_ATTR_NOSUID` (include/uapi/linux/mount.h).
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
/// `/dev/net/tun` is char device 10:200 (Documentation/admin-guide/devices.txt, "misc" 200 = tun).
const TUN_MAJOR: u32 = 10;
const TUN_MINOR: u32 = 200;

/// Everything the children need, prepared before fork (no allocation after it).
struct ChildPlan {
    path: CString,
    /// Keeps the strings `argv_ptrs` and `envp_ptrs` point into alive.
    _strings: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    uid: libc::uid_t,
    limits: Limits,
    dev_net_tun: bool,
    fd3: Option<RawFd>,
    report: RawFd,
    reaped: RawFd,
    harness_pid: libc::pid_t,
    /// The SUT's memory cgroup's `cgroup.procs`, joined by the shim before it forks.
    cgroup_procs: Option<CString>,
}

// SAFETY: the raw pointers point into `_strings`, owned by the plan and never changed after `new`.
unsafe impl Send for ChildPlan {}
// SAFETY: as above; the plan is only read.
unsafe impl Sync for ChildPlan {}

/// A C string from a Rust one, or a usage error naming it (an interior NUL).
fn c_string(what: &str, s: &[u8]) -> Result<CString> {
    CString::new(s).map_err(|_| {
        HarnessError::Usage(format!(
            "sandbox: {what} contains a NUL byte: {:?}",
            String::from_utf8_lossy(s)
        ))
    })
}

impl ChildPlan {
    #[allow(clippy::too_many_arguments)]
    fn new(
        path: &Path,
        argv: &[String],
        env: &[(String, String)],
        uid: u32,
        limits: Limits,
        dev_net_tun: bool,
        fd3: Option<RawFd>,
        report: RawFd,
        reaped: RawFd,
        cgroup_procs: Option<CString>,
    ) -> Result<ChildPlan> {
        let path = c_string("program path", OsStr::as_bytes(path.as_os_str()))?;
        let mut strings = Vec::new();
        for a in argv {
            strings.push(c_string("argument", a.as_bytes())?);
        }
        let argc = strings.len();
        for (k, v) in env {
            strings.push(c_string(
                "environment variable",
                format!("{k}={v}").as_bytes(),
            )?);
        }
        let mut argv_ptrs: Vec<_> = strings[..argc].iter().map(|s| s.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<_> = strings[argc..].iter().map(|s| s.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
        Ok(ChildPlan {
            path,
            _strings: strings,
            argv_ptrs,
            envp_ptrs,
            uid,
            limits,
            dev_net_tun,
            fd3,
            report,
            reaped,
            // SAFETY: getpid has no preconditions.
            harness_pid: unsafe { libc::getpid() },
            cgroup_procs,
        })
    }

    /// Runs in the forked child of the harness (the future shim), from `pre_exec`; never returns.
    fn run(&self) -> io::Result<()> {
        // SAFETY: we are in a freshly forked child; every call below is async-signal-safe.
        unsafe { self.shim_then_sut() }
    }

    /// Writes the failed step and errno to the report pipe and exits.
    unsafe fn fail(&self, report: RawFd, step: Step) -> ! {
        let errno = *libc::__errno_location();
        let mut msg = [0u8; 8];
        msg[..4].copy_from_slice(&(step as u32).to_ne_bytes());
        msg[4..].copy_from_slice(&errno.to_ne_bytes());
        libc::write(report, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }

    unsafe fn shim_then_sut(&self) -> ! {
        let report = self.report;
        // The fork copied every descriptor the harness had open at that moment, close-on-exec or not, and no
        // exec comes for a long while (the SUT's mounts and uid change come first). Held here, another case's
        // descriptor stays alive: its TUN device stays attached (that case's SUT then fails TUNSETIFF with
        // EBUSY) and its pipes never reach EOF. Only stdio, our pipes and fd 3 are kept.
        let mut keep = [0, 1, 2, report, self.reaped, self.fd3.unwrap_or(-1)];
        close_all_but(&mut keep);
        // The shim dies with the harness thread that forked it; if the harness is already gone, stop.
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
            self.fail(report, Step::ShimDeathSignal);
        }
        if libc::getppid() != self.harness_pid {
            *libc::__errno_location() = libc::ESRCH;
            self.fail(report, Step::HarnessGone);
        }
        // Blocked before fork, so the SUT's SIGCHLD cannot come before the shim waits for it.
        let mut waited: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut waited);
        libc::sigaddset(&mut waited, libc::SIGCHLD);
        libc::sigaddset(&mut waited, libc::SIGTERM);
        if libc::sigprocmask(libc::SIG_BLOCK, &waited, std::ptr::null_mut()) != 0 {
            self.fail(report, Step::BlockSignals);
        }
        // The SUT checks this pipe's EOF after its own PDEATHSIG is set: it tells whether the shim died first.
        let mut life = [0 as libc::c_int; 2];
        if libc::pipe2(life.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            self.fail(report, Step::LifePipe);
        }
        // Into the memory cgroup before anything of the SUT exists: "0" moves the writer, and children inherit.
        if let Some(procs) = &self.cgroup_procs {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, c"0".as_ptr().cast(), 1) != 1 {
                self.fail(report, Step::JoinCgroup);
            }
            libc::close(fd);
        }
        if libc::unshare(libc::CLONE_NEWPID) != 0 {
            self.fail(report, Step::UnsharePid);
        }
        let child = libc::fork();
        if child < 0 {
            self.fail(report, Step::Fork);
        }
        if child > 0 {
            libc::close(life[0]);
            shim(child, life[1], self.reaped, &waited);
        }
        libc::close(life[1]);
        libc::close(self.reaped);
        self.sut(life[0])
    }

    /// PID 1 of the new namespace: isolate, drop privileges, exec.
    unsafe fn sut(&self, life: RawFd) -> ! {
        let mut report = self.report;
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        if libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
            self.fail(report, Step::UnblockSignals);
        }

        // Mounts: a namespace of our own, nothing propagating back to the host, all read-only.
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            self.fail(report, Step::UnshareMount);
        }
        let null = std::ptr::null::<libc::c_char>();
        if libc::mount(
            null,
            c"/".as_ptr(),
            null,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            self.fail(report, Step::MountPrivate);
        }
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        if libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c"/".as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        ) != 0
        {
            self.fail(report, Step::MountReadOnly);
        }
        let hardened = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        if libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            hardened,
            std::ptr::null(),
        ) != 0
        {
            self.fail(report, Step::MountProc);
        }
        // sysfs shows the network devices of the namespace that mounts it: only ours.
        if libc::mount(
            c"sysfs".as_ptr(),
            c"/sys".as_ptr(),
            c"sysfs".as_ptr(),
            hardened | libc::MS_RDONLY,
            std::ptr::null(),
        ) != 0
        {
            self.fail(report, Step::MountSys);
        }
        // /run holds the host's daemons' sockets (D-Bus, ...): hidden. A host without /run is fine.
        if libc::mount(
            c"tmpfs".as_ptr(),
            c"/run".as_ptr(),
            c"tmpfs".as_ptr(),
            hardened | libc::MS_RDONLY,
            c"size=4k,mode=0755".as_ptr().cast(),
        ) != 0
            && *libc::__errno_location() != libc::ENOENT
        {
            self.fail(report, Step::MountRun);
        }
        if self.dev_net_tun {
            if libc::mount(
                c"tmpfs".as_ptr(),
                c"/dev/net".as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NOEXEC,
                c"size=4k,mode=0755".as_ptr().cast(),
            ) != 0
            {
                self.fail(report, Step::MountDevNet);
            }
            if libc::mknod(
                c"/dev/net/tun".as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(TUN_MAJOR, TUN_MINOR),
            ) != 0
            {
                self.fail(report, Step::MknodTun);
            }
            // mknod's mode is filtered by the inherited umask.
            if libc::chmod(c"/dev/net/tun".as_ptr(), 0o666) != 0 {
                self.fail(report, Step::ChmodTun);
            }
        }
        if libc::chdir(c"/".as_ptr()) != 0 {
            self.fail(report, Step::Chdir);
        }

        // Descriptors: 0-2 are std's pipes; fd 3 is the caller's, if any; nothing else survives exec.
        let mut life = life;
        if let Some(fd3) = self.fd3 {
            // Our own descriptors that happen to be number 3 move out of the way first.
            if report == 3 {
                report = libc::fcntl(report, libc::F_DUPFD_CLOEXEC, 4);
                if report < 0 {
                    self.fail(self.report, Step::MoveOffFd3);
                }
            }
            if life == 3 {
                life = libc::fcntl(life, libc::F_DUPFD_CLOEXEC, 4);
                if life < 0 {
                    self.fail(report, Step::MoveOffFd3);
                }
            }
            let ok = if fd3 == 3 {
                libc::fcntl(3, libc::F_SETFD, 0) == 0
            } else {
                libc::dup2(fd3, 3) == 3
            };
            if !ok {
                self.fail(report, Step::Fd3);
            }
        }
        let first_closed: libc::c_uint = if self.fd3.is_some() { 4 } else { 3 };
        if libc::syscall(
            libc::SYS_close_range,
            first_closed,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) != 0
        {
            self.fail(report, Step::CloseOnExec);
        }

        // Limits while still root (any value may be set), then the unprivileged uid.
        let limits = [
            (libc::RLIMIT_CPU, self.limits.cpu_seconds, Step::LimitCpu),
            (
                libc::RLIMIT_AS,
                self.limits.address_space,
                Step::LimitAddressSpace,
            ),
            (
                libc::RLIMIT_NOFILE,
                self.limits.open_files,
                Step::LimitOpenFiles,
            ),
            (
                libc::RLIMIT_NPROC,
                self.limits.processes,
                Step::LimitProcesses,
            ),
            (libc::RLIMIT_CORE, 0, Step::LimitCore),
            (
                libc::RLIMIT_FSIZE,
                self.limits.file_size,
                Step::LimitFileSize,
            ),
        ];
        for (resource, value, step) in limits {
            let limit = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            if libc::setrlimit(resource, &limit) != 0 {
                self.fail(report, step);
            }
        }
        if libc::setgroups(0, std::ptr::null()) != 0 {
            self.fail(report, Step::SetGroups);
        }
        if libc::setresgid(self.uid, self.uid, self.uid) != 0 {
            self.fail(report, Step::SetGid);
        }
        // Clears every capability: the uid goes from 0 to non-zero with no SECBIT_KEEP_CAPS.
        if libc::setresuid(self.uid, self.uid, self.uid) != 0 {
            self.fail(report, Step::SetUid);
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            self.fail(report, Step::NoNewPrivs);
        }
        // Only now: a change of effective uid or gid clears the parent-death signal (prctl(2)).
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
            self.fail(report, Step::SutDeathSignal);
        }
        let mut poll = libc::pollfd {
            fd: life,
            events: libc::POLLIN,
            revents: 0,
        };
        if libc::poll(&mut poll, 1, 0) != 0 {
            // EOF (or an error): the shim died before our death signal was set; nobody would end us.
            *libc::__errno_location() = libc::ESRCH;
            self.fail(report, Step::ShimGone);
        }
        libc::close(life);
        libc::execve(
            self.path.as_ptr(),
            self.argv_ptrs.as_ptr(),
            self.envp_ptrs.as_ptr(),
        );
        self.fail(report, Step::Exec)
    }
}

/// The shim: holds only the SUT's life pipe and the harness's "reaped" pipe, waits for PID 1 and exits as it
/// did. SIGTERM (from [`Sut::terminate`]) makes it SIGKILL PID 1 first; PID 1 is reapable only once its
/// namespace is empty, which the shim says by writing one byte to `reaped` before exiting.
unsafe fn shim(child: libc::pid_t, life: RawFd, reaped: RawFd, waited: &libc::sigset_t) -> ! {
    // std's error pipe, our report pipe, stdio, fd 3: the shim needs none of them, and holding them would
    // keep the harness's reads from seeing EOF.
    let (low, high) = (life.min(reaped), life.max(reaped));
    close_range(0, low - 1);
    close_range(low + 1, high - 1);
    close_range(high + 1, libc::c_int::MAX);
    loop {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let signal = libc::sigwaitinfo(waited, &mut info);
        if signal == libc::SIGTERM {
            libc::kill(child, libc::SIGKILL);
        }
        let mut status = 0;
        let waited_for = libc::waitpid(child, &mut status, libc::WNOHANG);
        if waited_for == child {
            libc::write(reaped, b"R".as_ptr().cast(), 1);
            exit_as(status);
        }
        if waited_for < 0 && *libc::__errno_location() == libc::ECHILD {
            libc::_exit(127);
        }
    }
}

/// Closes every descriptor but those in `keep` (negative entries mean none); sorts `keep`, allocates nothing.
unsafe fn close_all_but(keep: &mut [libc::c_int]) {
    keep.sort_unstable();
    let mut first = 0;
    for &fd in keep.iter() {
        if fd >= first {
            close_range(first, fd - 1);
            first = fd + 1;
        }
    }
    close_range(first, libc::c_int::MAX);
}

/// Closes descriptors `first..=last` (nothing if the range is empty).
unsafe fn close_range(first: libc::c_int, last: libc::c_int) {
    if first <= last {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            last as libc::c_uint,
            0,
        );
    }
}

/// Exits with the SUT's status: its exit code, or the signal that killed it, re-raised without a core dump.
unsafe fn exit_as(status: libc::c_int) -> ! {
    if libc::WIFEXITED(status) {
        libc::_exit(libc::WEXITSTATUS(status));
    }
    let signal = libc::WTERMSIG(status);
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    libc::setrlimit(libc::RLIMIT_CORE, &no_core);
    libc::signal(signal, libc::SIG_DFL);
    let mut only: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut only);
    libc::sigaddset(&mut only, signal);
    libc::sigprocmask(libc::SIG_UNBLOCK, &only, std::ptr::null_mut());
    libc::kill(libc::getpid(), signal);
    libc::_exit(128 + signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stderr_tail_keeps_only_the_end() {
        let kept = Mutex::new(VecDeque::new());
        let flood: Vec<u8> = (0..STDERR_KEPT * 3)
            .map(|i| b'a' + (i % 26) as u8)
            .collect();
        keep_tail(&flood[..], &kept);
        let kept = kept.into_inner().unwrap();
        assert_eq!(kept.len(), STDERR_KEPT);
        assert!(kept
            .iter()
            .copied()
            .eq(flood[flood.len() - STDERR_KEPT..].iter().copied()));
    }

    #[test]
    fn leases_are_distinct_and_freed() {
        let a = UidLease::take().unwrap();
        let b = UidLease::take().unwrap();
        assert_ne!(a.uid, b.uid);
        for lease in [&a, &b] {
            assert!((UID_BASE..UID_BASE + UID_SLOTS).contains(&lease.uid));
        }
        let freed = a.uid;
        drop(a);
        let again = UidLease::take().unwrap();
        assert_eq!(
            again.uid, freed,
            "the lowest free slot from the offset is reused"
        );
    }

    #[test]
    fn a_report_names_the_call_and_the_errno() {
        let failure = ChildFailure {
            step: Some(Step::SetUid),
            errno: libc::EPERM,
        };
        assert_eq!(
            failure.describe(Path::new("/usr/bin/x"), 1_900_001),
            "sandbox: setresuid(1900001) failed: EPERM (Operation not permitted)"
        );
        assert_eq!(
            STEPS.len(),
            Step::JoinCgroup as usize,
            "STEPS lists every step"
        );
    }

    #[test]
    fn a_directory_closed_to_others_is_named() {
        let dir = std::env::temp_dir().join(format!("sandbox-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let prog = dir.join("prog");
        std::fs::write(&prog, b"\x7fELF").unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        let why = reachable_by_others(&prog).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            why.contains(&dir.display().to_string()) && why.contains("0700"),
            "{why}"
        );
    }
}
