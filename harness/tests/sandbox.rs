//! The SUT sandbox against the kernel: identity, isolation, limits, teardown, fd 3, `/dev/net/tun`, errors.
//! Needs root. Every SUT runs in a fresh lab namespace of its own (`HostWorker::spawn(Host::B)`).

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use harness::frame::Host;
use harness::lab::HostWorker;
use harness::sut::sandbox::{pids_of_uid, Sut, SutSpec, STDERR_KEPT, UID_BASE, UID_SLOTS};
use harness::HarnessError;

/// How long a test waits for something the SUT does at once.
const PATIENCE: Duration = Duration::from_secs(10);

/// A lab host thread and a SUT started on it (the worker must outlive the SUT: the SUT dies with it).
fn started(spec: SutSpec) -> (HostWorker, Sut) {
    let worker = HostWorker::spawn(Host::B).expect("lab host thread");
    let sut = worker
        .run(move || Sut::spawn(spec))
        .expect("host thread answers")
        .expect("SUT starts");
    (worker, sut)
}

fn shell(script: &str) -> SutSpec {
    SutSpec::new(["sh", "-c", script])
}

/// Everything the SUT writes on stdout until every process of it closed it, within [`PATIENCE`].
fn stdout_to_end(sut: &mut Sut) -> String {
    let mut stdout = sut.take_stdout().expect("stdout not taken yet");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    rx.recv_timeout(PATIENCE)
        .expect("the SUT closes its stdout in time")
}

/// Waits until `cond` holds, or panics naming `what`.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The shim is reaped: it is no longer our child.
fn assert_reaped(shim: u32) {
    // SAFETY: waitpid with WNOHANG on a pid only inspects our children.
    let r = unsafe { libc::waitpid(shim as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG) };
    assert_eq!(r, -1, "the shim {shim} is still our child");
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ECHILD)
    );
}

fn spawn_error(spec: SutSpec) -> String {
    let worker = HostWorker::spawn(Host::B).unwrap();
    match worker.run(move || Sut::spawn(spec)).unwrap() {
        Ok(sut) => panic!("expected a spawn error, got {sut:?}"),
        Err(HarnessError::Sut(f)) => f.message,
        Err(other) => panic!("expected HarnessError::Sut, got {other:?}"),
    }
}

/// A directory under the target dir, fresh, with `mode`.
fn scratch_dir(name: &str, mode: u32) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
    dir
}

#[test]
fn the_sut_is_an_unprivileged_pid_1_alone_in_its_network_namespace() {
    let (_worker, mut sut) = started(shell(
        "id -u; id -g; cat /proc/self/status | grep NoNewPrivs; ls /sys/class/net; echo $$",
    ));
    let out = stdout_to_end(&mut sut);
    let lines: Vec<&str> = out.lines().collect();
    let uid = sut.uid();
    assert!((UID_BASE..UID_BASE + UID_SLOTS).contains(&uid), "{uid}");
    assert_eq!(
        lines,
        [
            uid.to_string().as_str(),
            uid.to_string().as_str(),
            "NoNewPrivs:\t1",
            "lo",
            "1"
        ],
        "stderr: {}",
        sut.stderr_tail(4096)
    );
    let status = sut.terminate(Duration::from_secs(5)).unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn setsid_and_double_forked_children_end_with_the_sut() {
    let (_worker, mut sut) = started(shell("setsid sleep 300 & (sleep 300 &) ; sleep 300"));
    let uid = sut.uid();
    // sh, the setsid'd sleep, the orphaned sleep of the subshell, the foreground sleep.
    wait_until("four processes run as the SUT's uid", || {
        pids_of_uid(uid).len() >= 4
    });
    let shim = sut.shim_pid();
    let status = sut.terminate(Duration::from_millis(50)).unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert_eq!(
        pids_of_uid(uid),
        Vec::<u32>::new(),
        "processes left behind at once"
    );
    assert_reaped(shim);
    assert_eq!(sut.try_exit(), Some(status));
}

#[test]
fn a_fork_bomb_is_bounded_by_rlimit_nproc_and_cleaned_up() {
    // dash exits when a fork fails, so the bomb runs in a subshell; its orphans stay with PID 1, which then
    // becomes a sleep itself (a fork for it would fail too: the limit is reached).
    let (_worker, mut sut) = started(shell(
        "(for i in $(seq 200); do sleep 30 & done); exec sleep 300",
    ));
    let uid = sut.uid();
    let limit = sut_limit_processes();
    wait_until("fork fails in the SUT", || {
        sut.stderr_tail(4096).to_lowercase().contains("fork")
    });
    let running = pids_of_uid(uid).len() as u64;
    assert!(
        running <= limit && running >= limit - 2,
        "{running} processes (limit {limit}); stderr: {}",
        sut.stderr_tail(512)
    );
    sut.terminate(Duration::ZERO).unwrap();
    assert_eq!(pids_of_uid(uid), Vec::<u32>::new());
}

fn sut_limit_processes() -> u64 {
    harness::sut::sandbox::Limits::default().processes
}

#[test]
fn a_stderr_flood_neither_blocks_the_sut_nor_grows_the_tail() {
    // 10 MB through stderr, then a line on stdout: only reachable if stderr is drained all along.
    let (_worker, mut sut) = started(shell(
        "head -c 10000000 /dev/zero | tr '\\0' x >&2; echo done",
    ));
    assert_eq!(stdout_to_end(&mut sut), "done\n");
    let tail = sut.stderr_tail(usize::MAX);
    assert_eq!(tail.len(), STDERR_KEPT);
    assert!(tail.bytes().all(|b| b == b'x'));
    assert_eq!(sut.stderr_tail(10), "x".repeat(10));
    sut.terminate(Duration::from_secs(5)).unwrap();

    // An endless flood: still bounded, and terminate ends it promptly.
    let (_worker, mut sut) = started(shell("yes xxxxxxxx >&2"));
    wait_until("the flood fills the tail", || {
        sut.stderr_tail(usize::MAX).len() == STDERR_KEPT
    });
    let started = Instant::now();
    sut.terminate(Duration::from_millis(20)).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(sut.stderr_tail(usize::MAX).len() <= STDERR_KEPT);
    assert!(sut.stderr_tail(usize::MAX).contains("xxxxxxxx\n"));
}

#[test]
fn the_sut_sees_only_its_processes_and_writes_nowhere() {
    let marker = format!("/tmp/netconform-sandbox-{}", std::process::id());
    let (_worker, mut sut) = started(shell(&format!(
        "ls /proc | grep -c '^[0-9]'; \
         touch /x 2>/dev/null && echo wrote-root || echo denied-root; \
         touch {marker} 2>/dev/null && echo wrote-tmp || echo denied-tmp; \
         ls /run | wc -l"
    )));
    let out = stdout_to_end(&mut sut);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    let visible: u32 = lines[0].parse().unwrap();
    assert!(
        (1..=4).contains(&visible),
        "{visible} pids visible in /proc"
    );
    assert_eq!(&lines[1..], ["denied-root", "denied-tmp", "0"]);
    assert!(!std::path::Path::new("/x").exists());
    assert!(!std::path::Path::new(&marker).exists());
    sut.terminate(Duration::from_secs(5)).unwrap();
}

#[test]
fn fd3_carries_one_packet_per_write() {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two fresh descriptors.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0);
    // SAFETY: fresh descriptors owned by nothing else.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut spec = shell("echo ping >&3; echo pong >&3; echo $NETCONFORM_FD");
    spec.fd3 = Some(theirs);
    spec.env = vec![("NETCONFORM_FD".into(), "3".into())];
    let (_worker, mut sut) = started(spec);
    assert_eq!(stdout_to_end(&mut sut), "3\n");
    let mut packets = Vec::new();
    loop {
        let mut buf = [0u8; 64];
        // SAFETY: recv into a buffer we own; DONTWAIT since the SUT has exited.
        let n = unsafe {
            libc::recv(
                ours.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n <= 0 {
            break;
        }
        packets.push(String::from_utf8_lossy(&buf[..n as usize]).into_owned());
    }
    assert_eq!(packets, ["ping\n", "pong\n"]);
    sut.terminate(Duration::from_secs(5)).unwrap();
}

#[test]
fn dev_net_tun_is_openable_only_when_asked_for() {
    let script = "exec 4<>/dev/net/tun && echo ok";
    let mut spec = shell(script);
    spec.dev_net_tun = true;
    let (_worker, mut sut) = started(spec);
    assert_eq!(
        stdout_to_end(&mut sut),
        "ok\n",
        "stderr: {}",
        sut.stderr_tail(512)
    );
    sut.terminate(Duration::from_secs(5)).unwrap();

    // The host's node is root-only (0600 here): without the private node the SUT cannot open it.
    let (_worker, mut sut) = started(shell(script));
    assert_eq!(stdout_to_end(&mut sut), "");
    let status = sut.terminate(Duration::from_secs(5)).unwrap();
    assert_ne!(status.code(), Some(0));
}

#[test]
fn the_environment_is_cleared_but_for_path_home_and_ours() {
    let mut spec = shell("env");
    spec.env = vec![("NETCONFORM_SEED".into(), "42".into())];
    let (_worker, mut sut) = started(spec);
    let out = stdout_to_end(&mut sut);
    let names: Vec<&str> = out.lines().filter_map(|l| l.split('=').next()).collect();
    assert!(
        out.contains("HOME=/\n") && out.contains("NETCONFORM_SEED=42\n"),
        "{out}"
    );
    for name in names {
        assert!(
            ["PATH", "HOME", "NETCONFORM_SEED", "PWD"].contains(&name),
            "unexpected {name} in {out}"
        );
    }
    assert_eq!(
        sut.terminate(Duration::from_secs(5)).unwrap().code(),
        Some(0)
    );
}

#[test]
fn a_missing_program_is_named() {
    let msg = spawn_error(SutSpec::new(["/nonexistent/netconform-sut"]));
    assert!(
        msg.contains("/nonexistent/netconform-sut") && msg.contains("not found"),
        "{msg}"
    );
    let msg = spawn_error(SutSpec::new(["netconform-no-such-sut"]));
    assert!(
        msg.contains("`netconform-no-such-sut` not found in the SUT's PATH"),
        "{msg}"
    );
}

#[test]
fn a_program_the_uid_cannot_reach_is_refused_with_the_remedy() {
    let dir = scratch_dir("sandbox-closed", 0o700);
    let prog = dir.join("student");
    std::fs::copy("/bin/true", &prog).unwrap();
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let msg = spawn_error(SutSpec::new([prog.to_str().unwrap()]));
    assert!(
        msg.contains(&format!("directory {} is mode 0700", dir.display()))
            && msg.contains("/usr/local/bin"),
        "{msg}"
    );
}

#[test]
fn an_exec_failure_in_the_sut_is_reported_by_step_and_errno() {
    let dir = scratch_dir("sandbox-open", 0o755);
    let prog = dir.join("not-a-program");
    std::fs::write(&prog, "no shebang, no ELF\n").unwrap();
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let msg = spawn_error(SutSpec::new([prog.to_str().unwrap()]));
    assert!(
        msg.starts_with(&format!("sandbox: execve({}) as uid", prog.display()))
            && msg.contains("failed: ENOEXEC"),
        "{msg}"
    );
}

#[test]
fn a_sut_is_only_started_on_a_lab_host_thread() {
    let err = std::thread::spawn(|| Sut::spawn(shell("true")).unwrap_err())
        .join()
        .unwrap();
    assert!(matches!(err, HarnessError::Containment(_)), "{err:?}");
}

#[test]
fn killing_the_shim_ends_the_whole_namespace() {
    let (_worker, mut sut) = started(shell("setsid sleep 300 & (sleep 300 &) ; sleep 300"));
    let uid = sut.uid();
    wait_until("four processes run as the SUT's uid", || {
        pids_of_uid(uid).len() >= 4
    });
    // SAFETY: kill(2) on our own unreaped child.
    assert_eq!(
        unsafe { libc::kill(sut.shim_pid() as libc::pid_t, libc::SIGKILL) },
        0
    );
    wait_until("no process of the SUT is left", || {
        pids_of_uid(uid).is_empty()
    });
    assert_eq!(sut.try_exit().and_then(|s| s.signal()), Some(libc::SIGKILL));
}

#[test]
fn the_sut_ends_with_its_handle_and_with_its_host_thread() {
    let (_worker, sut) = started(shell("setsid sleep 300 & sleep 300"));
    let (uid, shim) = (sut.uid(), sut.shim_pid());
    wait_until("the SUT's sleeps run", || pids_of_uid(uid).len() >= 3);
    drop(sut);
    assert_eq!(pids_of_uid(uid), Vec::<u32>::new(), "dropped, nothing left");
    assert_reaped(shim);

    let (worker, mut sut) = started(shell("setsid sleep 300 & sleep 300"));
    let uid = sut.uid();
    wait_until("the SUT's sleeps run", || pids_of_uid(uid).len() >= 3);
    drop(worker);
    wait_until("the SUT died with its host thread", || {
        sut.try_exit().is_some()
    });
    // The shim was killed, not asked: PID 1 has SIGKILL pending and takes the namespace with it.
    wait_until("no process of the SUT is left", || {
        pids_of_uid(uid).is_empty()
    });
}
