//! `netconform bench`: lab setup+teardown time and cases/s per property, measured on this machine; with
//! `--soak N`, N consecutive default runs with snapshots (endurance), optionally under `--stress` (CPU
//! oversubscription by busy threads of this process).
//!
//! Targets (2-core machine): lab setup+teardown ≤ 2 ms median; the default run ≤ 15 s wall; soak and stress
//! runs with no false failure, no error, no spurious snapshot diff. Speed lives here, never in timed tests.

use std::time::{Duration, Instant};

use harness::lab::{Lab, LabConfig};
use harness::pipeline::{run_in_lab, Settle};
use harness::runner::{self, PcapPolicy, RunOptions};
use harness::sock::Family;
use harness::HarnessError;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Labs built and torn down for the setup measurement.
    #[arg(long, default_value_t = 300)]
    labs: usize,
    /// Cases per property for the throughput measurement.
    #[arg(long, default_value_t = 400)]
    cases: u64,
    /// The most cases at once (as `run --jobs`).
    #[arg(long, default_value_t = crate::cli::DEFAULT_JOBS)]
    jobs: usize,
    /// Only this property (repeatable); default: all.
    #[arg(long = "property")]
    properties: Vec<String>,
    /// Also measure the relay link: TCP goodput without impairment and at 20 ms one-way delay with a
    /// 100 Mbit/s rate limit (targets: >= 1 Gbit/s; >= 80 % of the rate, no unintended drop).
    #[arg(long)]
    relay: bool,
    /// Endurance: run the default selection this many times (`run --snapshots`, a new seed each time) as
    /// child processes and count false failures, errors, invalid cases and snapshot diffs; then stop.
    #[arg(long, value_name = "RUNS")]
    soak: Option<usize>,
    /// With --soak: keep this many busy-looping threads per core running meanwhile (2 = every core
    /// oversubscribed twice over by the load alone).
    #[arg(long, value_name = "PER_CORE", requires = "soak")]
    stress: Option<usize>,
    /// With --soak: the first run's seed (run i uses seed + i).
    #[arg(long, default_value_t = 1000, requires = "soak")]
    seed: u64,
    /// Measure cases/s with this system under test on host b (as `run --sut`); properties it cannot be
    /// judged by are listed as skipped.
    #[arg(long, conflicts_with = "soak")]
    sut: Option<String>,
    /// With --sut: fd, kernel or tun[:NAME] (as `run --attach`).
    #[arg(long, default_value = "fd", requires = "sut")]
    attach: String,
}

/// One soak run's outcome, read from its JSON report and its exit code.
struct SoakRun {
    seed: u64,
    code: Option<i32>,
    wall_s: f64,
    counts: [u64; 4],
    /// `property: first problem` for every property that did not pass.
    problems: Vec<String>,
    snapshot_lines: Vec<String>,
    /// Snapshots that differed once and matched on a re-run (shown, not counted as diffs).
    rerun_lines: Vec<String>,
}

fn soak_once(seed: u64, dir: &std::path::Path) -> Result<SoakRun, HarnessError> {
    let exe = std::env::current_exe().map_err(|e| HarnessError::output("current executable", e))?;
    let json = dir.join(format!("soak-{seed}.json"));
    let started = Instant::now();
    let out = std::process::Command::new(exe)
        .args(["run", "--snapshots", "--seed", &seed.to_string(), "--json"])
        .arg(&json)
        .arg("--out")
        .arg(dir.join(format!("soak-{seed}")))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| HarnessError::output("start a soak run", e))?;
    let wall_s = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let snapshot_lines = stdout
        .lines()
        .filter(|l| {
            // The snapshot stage's keywords are padded to ten columns ("ERROR     label: …"); a case's
            // "ERROR property case N" line is a run problem, counted from the JSON report instead.
            [
                "CHANGED ",
                "UNSTABLE ",
                "ERROR     ",
                "NEW     ",
                "MISSING ",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .map(str::to_string)
        .collect();
    // A RERUN line and the first run's diff after it (`@@`, context, `+` and `-` lines, up to a blank line).
    let mut rerun_lines = Vec::new();
    let mut in_rerun = false;
    for l in stdout.lines() {
        if l.starts_with("RERUN") {
            in_rerun = true;
        } else if l.trim().is_empty() || !l.starts_with([' ', '+', '-', '@']) {
            in_rerun = false;
        }
        if in_rerun {
            rerun_lines.push(l.to_string());
        }
    }
    let mut run = SoakRun {
        seed,
        code: out.status.code(),
        wall_s,
        counts: [0; 4],
        problems: Vec::new(),
        snapshot_lines,
        rerun_lines,
    };
    if let Ok(text) = std::fs::read_to_string(&json) {
        if let Ok(report) = serde_json::from_str::<harness::runner::RunReport>(&text) {
            for p in &report.properties {
                run.counts[0] += p.fail;
                run.counts[1] += p.error;
                run.counts[2] += p.invalid;
                run.counts[3] += p.pass;
                if let Some(first) = p.problems.first() {
                    let what = match &first.status {
                        harness::runner::CaseStatus::Fail { violation } => {
                            violation.summary.clone()
                        }
                        harness::runner::CaseStatus::Error { message } => message.clone(),
                        harness::runner::CaseStatus::Invalid { reason } => reason.clone(),
                        other => other.label().to_string(),
                    };
                    run.problems.push(format!(
                        "{} case {} ({}): {} — {}",
                        p.id,
                        first.index,
                        first.status.label(),
                        what,
                        first.replay.clone().unwrap_or_default()
                    ));
                }
            }
        }
    }
    Ok(run)
}

/// Busy threads that spin until dropped (only threads of this process: nothing to clean up elsewhere).
struct Stress {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Stress {
    fn start(threads: usize) -> Stress {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x: u64 = 1;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..10_000 {
                            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                        }
                        std::hint::black_box(x);
                    }
                })
            })
            .collect();
        Stress { stop, threads }
    }
}

impl Drop for Stress {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// `bench --soak N [--stress K]`: N default runs with snapshots; exit 1 on any non-pass.
fn soak(runs: usize, stress: Option<usize>, seed: u64) -> Result<i32, HarnessError> {
    // Each run compares with the snapshots directory of the current directory, as `run --snapshots` does:
    // without one every scenario is MISSING.
    if !std::path::Path::new("snapshots").is_dir() {
        return Err(HarnessError::Usage(
            "bench --soak runs `run --snapshots`, which compares with the snapshots directory of the \
             current directory: there is none here; run it from the netconform checkout"
                .into(),
        ));
    }
    let dir = std::env::temp_dir().join(format!("netconform-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| HarnessError::output(dir.display(), e))?;
    let cores = harness::schedule::cores();
    let load = stress.map(|k| Stress::start(k * cores));
    println!(
        "soak: {runs} default runs with --snapshots, seeds {seed}..{}{}",
        seed + runs as u64 - 1,
        match stress {
            Some(k) => format!(
                ", {} busy threads ({k} per core) running meanwhile",
                k * cores
            ),
            None => String::new(),
        }
    );
    let mut bad = 0;
    let mut walls = Vec::new();
    for i in 0..runs {
        let r = soak_once(seed + i as u64, &dir)?;
        walls.push(r.wall_s);
        let [fail, error, invalid, pass] = r.counts;
        let ok = r.code == Some(0) && r.snapshot_lines.is_empty();
        bad += !ok as usize;
        println!(
            "run {:>2} seed {}: exit {:?} in {:.1} s — {pass} pass, {fail} fail, {error} error, {invalid} invalid, {} snapshot diff(s)",
            i + 1,
            r.seed,
            r.code,
            r.wall_s,
            r.snapshot_lines.len()
        );
        for line in r.problems.iter().chain(&r.snapshot_lines) {
            println!("    {line}");
        }
        for line in &r.rerun_lines {
            let counted = if line.starts_with("RERUN") {
                "(not counted) "
            } else {
                ""
            };
            println!("    {counted}{line}");
        }
    }
    drop(load);
    walls.sort_by(f64::total_cmp);
    println!(
        "soak: {} of {runs} runs clean; wall median {:.1} s, max {:.1} s; outputs of failing runs in {}",
        runs - bad,
        walls[walls.len() / 2],
        walls.last().copied().unwrap_or(0.0),
        dir.display()
    );
    if bad == 0 {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(if bad == 0 { 0 } else { 1 })
}

/// One TCP bulk transfer a -> b for `secs` seconds over a lab with `link`; returns (bits/s, unintended drops).
fn tcp_goodput(link: harness::link::LinkSpec, secs: f64) -> Result<(f64, u32), HarnessError> {
    use harness::frame::Host;
    use harness::sock::Socket;
    use std::net::SocketAddr;
    let config = LabConfig {
        link,
        ..Default::default()
    };
    let gate = harness::schedule::CpuGate::unlimited();
    let ran = run_in_lab(
        &config,
        None,
        &gate,
        Settle::Exactly(Duration::ZERO),
        |lab| {
            let b = SocketAddr::new(lab.addr(Host::B, Family::Ipv4), 5001);
            let listener = lab
                .host(Host::B)
                .run(move || -> Result<Socket, HarnessError> {
                    let l = Socket::tcp(Family::Ipv4)?;
                    l.bind(b)
                        .map_err(|e| harness::sock::socket_step("bind", e))?;
                    l.listen(1)
                        .map_err(|e| harness::sock::socket_step("listen", e))?;
                    Ok(l)
                })??;
            // The reader times the transfer itself: from its first byte to its last.
            let reader = lab.host(Host::B).submit(move || -> (u64, f64) {
                let Some(Ok((s, _))) = (listener.poll(libc::POLLIN, Duration::from_secs(5)) != 0)
                    .then(|| listener.accept_now())
                else {
                    return (0, 0.0);
                };
                let (mut total, mut first, mut last) = (0u64, None, Instant::now());
                while let Some(Ok(r)) = s.recv_timeout(1 << 20, 0, Duration::from_millis(500)) {
                    if r.returned == 0 {
                        break;
                    }
                    first.get_or_insert_with(Instant::now);
                    last = Instant::now();
                    total += r.returned as u64;
                }
                (total, first.map_or(0.0, |f| (last - f).as_secs_f64()))
            });
            lab.host(Host::A)
                .run(move || -> Result<(), HarnessError> {
                    let c = Socket::tcp(Family::Ipv4)?;
                    c.connect_timeout(b, Duration::from_secs(2))?;
                    let buf = vec![0u8; 1 << 16];
                    let end = Instant::now() + Duration::from_secs_f64(secs);
                    while Instant::now() < end {
                        if c.send(&buf, 0)?.is_err() {
                            break;
                        }
                    }
                    Ok(())
                })??;
            reader.wait()
        },
    )?;
    let (bytes, elapsed) = ran.executed;
    Ok((bytes as f64 * 8.0 / elapsed.max(0.001), ran.captured.drops))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Labs built and torn down one after another, half with hosts prepared ahead (`harness::lab::pool`, as every
/// run builds them) and half made on demand, in alternating blocks so that both see the same machine.
fn lab_setup(labs: usize) -> Result<(), HarnessError> {
    const BLOCK: usize = 50;
    let mut times: [Vec<Duration>; 2] = Default::default();
    let mut wall = [Duration::ZERO; 2];
    let block = if labs < 2 * BLOCK { 1 } else { BLOCK };
    for i in 0..labs {
        let prepared = (i / block).is_multiple_of(2);
        harness::lab::pool::prepare_ahead(prepared);
        let t = Instant::now();
        let lab = Lab::build(&LabConfig::default())?;
        drop(lab);
        let took = t.elapsed();
        times[usize::from(!prepared)].push(took);
        wall[usize::from(!prepared)] += took;
    }
    harness::lab::pool::prepare_ahead(true);
    for (i, how) in ["hosts prepared ahead", "hosts made on demand"]
        .iter()
        .enumerate()
    {
        let times = &mut times[i];
        if times.is_empty() {
            continue;
        }
        times.sort();
        println!(
            "lab setup+teardown ({} labs, sequential, {how}): median {:.2} ms, p90 {:.2} ms, max {:.2} ms, {:.0} labs/s{}",
            times.len(),
            percentile(times, 0.5).as_secs_f64() * 1e3,
            percentile(times, 0.9).as_secs_f64() * 1e3,
            times.last().unwrap().as_secs_f64() * 1e3,
            times.len() as f64 / wall[i].as_secs_f64(),
            if i == 0 { "  (target ≤ 2 ms median)" } else { "" },
        );
    }
    Ok(())
}

pub fn bench(args: BenchArgs) -> Result<i32, HarnessError> {
    if let Some(runs) = args.soak {
        return soak(runs.max(1), args.stress, args.seed);
    }
    lab_setup(args.labs.max(1))?;
    let props: Vec<_> = suites::all()
        .into_iter()
        .filter(|p| {
            args.properties.is_empty() || args.properties.iter().any(|id| id == p.info().id)
        })
        // The kernel is b here: properties it cannot run (the stdio suite's) have nothing to measure.
        .filter(|p| {
            let info = p.info();
            harness::backend::Offer::kernel()
                .unmet(info.subject, &info.needs)
                .is_none()
        })
        .collect();
    // tcp.random_ops is measured on programs of up to 20 ops without sleeps (issue #3's target).
    let props = suites::with_random_ops(
        props,
        suites::tcp::random_ops::RandomOps {
            limits: harness::model::GenLimits {
                max_ops: 20,
                allow_sleep: false,
                allow_udp: true,
            },
            fault: None,
        },
    );
    let mut code = 0;
    if args.relay {
        use harness::link::{Impairment, LinkSpec, RelaySpec};
        let (plain, drops) = tcp_goodput(LinkSpec::Relay(RelaySpec::default()), 3.0)?;
        println!(
            "relay, no impairment: TCP goodput {:.2} Gbit/s, {drops} unintended drops  (target >= 1 Gbit/s)",
            plain / 1e9
        );
        let imp = Impairment {
            delay_us: 20_000,
            rate_bps: Some(100_000_000),
            ..Default::default()
        };
        let spec = RelaySpec {
            a_to_b: imp.clone(),
            b_to_a: Impairment {
                delay_us: 20_000,
                ..Default::default()
            },
            seed: 1,
        };
        let (slow, drops) = tcp_goodput(LinkSpec::Relay(spec), 5.0)?;
        println!(
            "relay, 20 ms one-way delay, 100 Mbit/s: TCP goodput {:.1} Mbit/s = {:.0} % of the rate, {drops} unintended drops  (target >= 80 %, 0 drops)",
            slow / 1e6,
            slow / 1e6
        );
    }
    // Cases a machine cannot run (read-only sysctls, no TUN) are skipped, as in `run`.
    let facilities = harness::lab::privileges::Facilities::probe();
    facilities.accept();
    let (lab, offer) = match &args.sut {
        None => (LabConfig::default(), harness::backend::Offer::kernel()),
        Some(command) => {
            let mut lab = LabConfig::default();
            let spec = crate::cli::sut_spec(command, &args.attach, 60, &lab)?;
            let hello = harness::sut::process::probe(&spec)?;
            println!(
                "sut: {} ({}), attachment {}",
                hello.stack,
                hello.families.join("+"),
                args.attach
            );
            lab.sut = Some(spec);
            let offer = harness::backend::Offer {
                backend: hello.stack.clone(),
                kernel: false,
                caps: hello.caps.clone(),
                ipv6: hello.ipv6(),
            };
            (lab, offer)
        }
    };
    for prop in props {
        let opts = RunOptions {
            cases: args.cases,
            seed: 1,
            jobs: args.jobs,
            families: vec![Family::Ipv4, Family::Ipv6],
            lab: lab.clone(),
            out_dir: std::env::temp_dir().join("netconform-bench"),
            pcap: PcapPolicy::Failures,
            shrink_budget: Duration::ZERO,
            shrink_max_cases: 0,
            confirm_runs: 0,
            html: false,
            offer: offer.clone(),
            facilities: facilities.clone(),
            partition: None,
            fail_fast: false,
        };
        let t = Instant::now();
        let report = runner::run(&[prop], &opts, &|_| {});
        let secs = t.elapsed().as_secs_f64();
        let r = &report.properties[0];
        if let Some(why) = &r.skipped {
            println!("{:<24} skipped: {why}", r.id);
            continue;
        }
        println!(
            "{:<24} {:>5} cases in {:>6.2} s = {:>7.1} cases/s, up to {} at once  (pass {}, not passing {})",
            r.id,
            args.cases,
            secs,
            args.cases as f64 / secs,
            report.peak_jobs,
            r.pass,
            r.fail + r.invalid + r.error
        );
        if report.exit_code() != 0 {
            code = 1;
        }
    }
    Ok(code)
}
