//! Argument parsing and the subcommands.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use clap::{Parser, Subcommand, ValueEnum};
use harness::lab::{ExecCommand, LabConfig, SysctlSetting};
use harness::report::Verbosity;
use harness::runner::{self, CaseSpec, CaseStatus, DynProperty, Event, PcapPolicy, RunOptions};
use harness::sock::Family;
use harness::HarnessError;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "netconform",
    version,
    about = "Property-based conformance harness for TCP/UDP on real kernel sockets in network namespaces",
    after_help = "Exit codes: 0 all passed (skips with a reason allowed), 1 a property failed (or a case was \
                  invalid/errored), 2 could not run (one line says why; see `netconform doctor`), 130 \
                  interrupted (SIGINT/SIGTERM)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Quiet: only failures and the footer.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Verbose: every note, and the notes of each passing case as it finishes.
    #[arg(short, long, global = true)]
    verbose: bool,
}

#[derive(Subcommand)]
enum Command {
    /// List every property: id, suite, clauses, lab questions.
    List {
        /// JSON instead of a table.
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// The coverage tables of docs/ (RFC clauses and lab questions), generated from the code.
        #[arg(long)]
        markdown: bool,
    },
    /// Run properties against the kernel in fresh labs.
    Run(Box<RunArgs>),
    /// Re-run one case from its case file and print the verdict and the canonical trace.
    Replay {
        /// A case file written by `run` (e.g. netconform-out/<property>/case-0003-ipv4.json).
        file: PathBuf,
        /// Where to write the replay's pcapng.
        #[arg(long, default_value = "netconform-out")]
        out: PathBuf,
        /// Also write a self-contained HTML report of the case (ladder diagram, time-sequence graph).
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Print the canonical trace of a pcap or pcapng file (roles by first talker: A, then B).
    Trace { file: PathBuf },
    /// Judge any pcap/pcapng capture offline: wire validity of every frame, the TCP invariants and every
    /// wire-observable property, each pass / fail / not applicable (e.g. a capture from a real lab).
    Check(crate::check::CheckArgs),
    /// Measure lab setup+teardown time and cases/s of each property (targets: see README).
    Bench(crate::bench::BenchArgs),
    /// Run the named scenarios and compare them with snapshots/<profile>/ (--update rewrites them).
    Snapshot(crate::snapshots::SnapshotArgs),
    /// Replay a fixed transcript against a netconform-sut/1 adapter and report, request by request, each
    /// deviation from the contract (docs/driver-protocol.md).
    SutCheck(crate::sutcheck::SutCheckArgs),
    /// Check what this machine lets netconform do (privileges or user namespaces, sysctls, TUN, AF_PACKET,
    /// tools, kernel), each with a one-line remedy. Exit 0 when runs can happen (perhaps limited), 2 when not.
    Doctor {
        /// JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Run the same selection against every SUT of a manifest (one `[[sut]]` per student) and print one
    /// table: SUT × property, pass / FAIL with the first violation / skip with why (src/grade.rs).
    Grade(crate::grade::GradeArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum FamilyArg {
    Ipv4,
    Ipv6,
    Both,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LinkArg {
    Veth,
    Relay,
}

/// `20ms`, `1.5ms`, `300us`, `1s` → microseconds.
fn parse_duration_us(s: &str) -> Result<u64, String> {
    let (num, mult) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e6)
    } else {
        return Err(format!("{s:?}: give a unit, e.g. 20ms, 500us, 1s"));
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: not a number"))?;
    if !(0.0..=60e6).contains(&(v * mult)) {
        return Err(format!("{s:?}: between 0 and 60 s"));
    }
    Ok((v * mult) as u64)
}

/// `1%`, `0.5%`, `0.01` → parts per million.
fn parse_ppm(s: &str) -> Result<u32, String> {
    let (num, scale) = match s.strip_suffix('%') {
        Some(v) => (v, 1e4),
        None => (s, 1e6),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: not a number (e.g. 1%)"))?;
    let ppm = v * scale;
    if !(0.0..=1e6).contains(&ppm) {
        return Err(format!("{s:?}: a probability between 0% and 100%"));
    }
    Ok(ppm as u32)
}

/// `100mbit`, `1gbit`, `500kbit`, `64000` (bit/s) → bits per second.
fn parse_rate(s: &str) -> Result<u64, String> {
    let lower = s.to_ascii_lowercase();
    let (num, mult) = if let Some(v) = lower.strip_suffix("gbit") {
        (v.to_string(), 1e9)
    } else if let Some(v) = lower.strip_suffix("mbit") {
        (v.to_string(), 1e6)
    } else if let Some(v) = lower.strip_suffix("kbit") {
        (v.to_string(), 1e3)
    } else {
        (lower.clone(), 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: e.g. 100mbit, 1gbit"))?;
    if v <= 0.0 {
        return Err(format!("{s:?}: must be positive"));
    }
    Ok((v * mult) as u64)
}

#[derive(Clone, Copy, ValueEnum)]
enum PcapArg {
    Failures,
    All,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Run only this suite (repeatable).
    #[arg(long = "suite")]
    suites: Vec<String>,
    /// Run only this property (repeatable).
    #[arg(long = "property")]
    properties: Vec<String>,
    /// Cases per property.
    #[arg(long, default_value_t = 64)]
    cases: u64,
    /// Run seed (default: from the clock, printed so the run can be repeated).
    #[arg(long)]
    seed: Option<u64>,
    /// The most cases running at once, each in its own lab. Fewer run while the CPUs are busy: cases that
    /// wait on kernel timers hold no CPU slot (see harness/src/schedule.rs).
    #[arg(long, default_value_t = DEFAULT_JOBS)]
    jobs: usize,
    #[arg(long, value_enum, default_value_t = FamilyArg::Both)]
    family: FamilyArg,
    /// A sysctl in one host's namespace, H:KEY=VALUE (e.g. b:net.ipv4.tcp_sack=0); repeatable.
    #[arg(long = "sysctl")]
    sysctls: Vec<String>,
    /// A command run with `sh -c` inside one host's namespace before each case, H:COMMAND; repeatable.
    #[arg(long = "exec")]
    exec: Vec<String>,
    /// Directory for case files and pcapng files.
    #[arg(long, default_value = "netconform-out")]
    out: PathBuf,
    /// Write pcapng for failures only, or for every case.
    #[arg(long, value_enum, default_value_t = PcapArg::Failures)]
    pcap: PcapArg,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a JUnit XML report here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Write a self-contained HTML report here (summary, filters, a ladder diagram and time-sequence graph
    /// of every case that did not pass, or of every case with --pcap all).
    #[arg(long)]
    html: Option<PathBuf>,
    /// Time budget for shrinking one failing case, in seconds.
    #[arg(long, default_value_t = 30)]
    shrink_time: u64,
    /// Failing cases per property that are shrunk.
    #[arg(long, default_value_t = 3)]
    shrink_cases: usize,
    /// Re-runs of a shrunk case that classify it `confirmed` (all fail) or `flaky`.
    #[arg(long, default_value_t = 3)]
    confirm: usize,
    /// How the hosts are joined: veth (default) or relay (TUN devices and an impairing forwarder).
    #[arg(long, value_enum, default_value_t = LinkArg::Veth)]
    link: LinkArg,
    /// Relay: one-way delay each direction, e.g. 20ms.
    #[arg(long, value_parser = parse_duration_us)]
    delay: Option<u64>,
    /// Relay: uniform jitter added to the delay, e.g. 2ms.
    #[arg(long, value_parser = parse_duration_us)]
    jitter: Option<u64>,
    /// Relay: loss probability each direction, e.g. 1%.
    #[arg(long, value_parser = parse_ppm)]
    loss: Option<u32>,
    /// Relay: probability that a packet is held back so the next ones overtake it, e.g. 1%.
    #[arg(long, value_parser = parse_ppm)]
    reorder: Option<u32>,
    /// Relay: duplication probability, e.g. 0.5%.
    #[arg(long, value_parser = parse_ppm)]
    duplicate: Option<u32>,
    /// Relay: rate limit each direction, e.g. 100mbit.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<u64>,
    /// Also compare the named scenarios with snapshots/ (see `netconform snapshot`).
    #[arg(long)]
    snapshots: bool,
    /// With --snapshots: the profile(s) to compare (default: all).
    #[arg(long = "profile", requires = "snapshots")]
    profiles: Vec<String>,
    /// Most ops in a generated program (tcp.random_ops).
    #[arg(long, default_value_t = 20)]
    max_ops: usize,
    /// Test only: inject a deliberate error into the model's predictions.
    #[arg(long, hide = true, value_enum)]
    model_fault: Option<ModelFaultArg>,
    /// Put a system under test on host b instead of its kernel: a command speaking netconform-sut/1 on
    /// stdin/stdout (docs/driver-protocol.md), e.g. --sut netconform-sut-kernel. Placeholders {addr},
    /// {addr6}, {peer}, {peer6}, {dev}, {mtu}, {family}, {seed}, {case}; split like a shell, run by none.
    #[arg(long)]
    sut: Option<String>,
    /// With --sut: how the SUT reaches the wire: fd (fd 3, one packet per read/write), tun[:NAME] or
    /// tap[:NAME] (a device it opens by name; TAP: Ethernet, a's kernel does ARP/ND), or kernel (the lab
    /// addresses on a device in the SUT's namespace, for a kernel adapter).
    #[arg(long, default_value = "fd", requires = "sut")]
    attach: String,
    /// With --sut: wall-clock limit per case, in seconds.
    #[arg(long, default_value_t = 60, requires = "sut")]
    sut_limit: u64,
    /// Run only shard K of N, e.g. hash:2/3: every case (property × index) is in exactly one shard, so the
    /// N shards together are the unpartitioned run. Without --seed, every shard derives the same seed from
    /// the CI's variables (printed).
    #[arg(long, value_parser = runner::Partition::parse)]
    partition: Option<runner::Partition>,
    /// Start no new case after the first one that does not pass (the cases running finish and are reported).
    #[arg(long)]
    fail_fast: bool,
    // ---- Passive stdio SUTs (issue #19; docs/driver-protocol.md "Other modes") ----
    /// With --sut: driven (netconform-sut/1 on stdin/stdout) or stdio (the SUT's stdin is what it sends,
    /// its stdout what it received; one connection per run; needs --sut-role and --sut-port).
    #[arg(long, value_enum, default_value = "driven", requires = "sut")]
    sut_mode: SutModeArg,
    /// With --sut-mode stdio: the SUT listens (server: a connects to it) or connects to a (client).
    #[arg(long, value_enum, requires = "sut")]
    sut_role: Option<SutRoleArg>,
    /// With --sut-mode stdio: the SUT's port (server) or the port on a it connects to (client); {port}.
    #[arg(long, requires = "sut")]
    sut_port: Option<u16>,
    /// With --sut: the TUN device the SUT opens by name (CS144's tun144); the same as --attach tun:NAME.
    #[arg(long, requires = "sut")]
    sut_dev: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SutModeArg {
    Driven,
    Stdio,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SutRoleArg {
    Server,
    Client,
}

/// `--sut-mode/--sut-role/--sut-port/--sut-dev` applied to a SUT spec made from `--sut`/`--attach`.
fn stdio_options(
    args: &RunArgs,
    mut spec: harness::sut::SutSpec,
) -> Result<harness::sut::SutSpec, HarnessError> {
    if let Some(dev) = &args.sut_dev {
        spec.attach = harness::sut::Attach::parse(&format!("tun:{dev}")).ok_or_else(|| {
            HarnessError::Usage(format!(
                "--sut-dev {dev:?}: a device name of 1 to 15 characters"
            ))
        })?;
    }
    match args.sut_mode {
        SutModeArg::Driven => {
            if args.sut_role.is_some() || args.sut_port.is_some() {
                return Err(HarnessError::Usage(
                    "--sut-role/--sut-port apply to --sut-mode stdio".into(),
                ));
            }
        }
        SutModeArg::Stdio => {
            let (Some(role), Some(port)) = (args.sut_role, args.sut_port) else {
                return Err(HarnessError::Usage(
                    "--sut-mode stdio needs --sut-role server|client and --sut-port P".into(),
                ));
            };
            if port == 0 {
                return Err(HarnessError::Usage("--sut-port must not be 0".into()));
            }
            if spec.attach == harness::sut::Attach::Kernel {
                return Err(HarnessError::Usage(
                    "--sut-mode stdio: the SUT is the IP layer; attach it by fd or tun[:NAME] (or --sut-dev)"
                        .into(),
                ));
            }
            spec.mode = harness::sut::SutMode::Stdio {
                role: match role {
                    SutRoleArg::Server => harness::sut::StdioRole::Server,
                    SutRoleArg::Client => harness::sut::StdioRole::Client,
                },
                port,
            };
        }
    }
    Ok(spec)
}
// ---- end of passive stdio SUTs ----

#[derive(Clone, Copy, ValueEnum)]
enum ModelFaultArg {
    WriteAfterShutdownSucceeds,
}

/// The most cases `run` keeps in flight by default; the CPU decides how many of them really run at once.
pub const DEFAULT_JOBS: usize = 64;

/// Exit code of a run ended by SIGINT or SIGTERM (after cleanup and partial reports), as shells report it.
pub const EXIT_INTERRUPTED: i32 = 130;

extern "C" fn on_interrupt(signal: libc::c_int) {
    runner::INTERRUPTED.store(true, Ordering::SeqCst);
    // A second signal ends the process at once (the kernel still frees every lab).
    // SAFETY: signal() is async-signal-safe.
    unsafe { libc::signal(signal, libc::SIG_DFL) };
}

pub fn main() -> Result<i32, HarnessError> {
    let cli = Cli::parse();
    // Rootless mode: a command that builds labs enters its user namespace now, while the process still has a
    // single thread (harness/src/lab/privileges.rs).
    if matches!(
        cli.command,
        Command::Run(_)
            | Command::Replay { .. }
            | Command::Bench(_)
            | Command::Snapshot(_)
            | Command::SutCheck(_)
            | Command::Doctor { .. }
    ) {
        harness::lab::privileges::enter();
    }
    let verbosity = if cli.quiet {
        Verbosity::Quiet
    } else if cli.verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    match cli.command {
        Command::List { json, markdown } => {
            list(json, markdown);
            Ok(0)
        }
        Command::Run(args) => run(*args, verbosity),
        Command::Replay { file, out, html } => replay(file, out, html, verbosity),
        Command::Trace { file } => trace(file),
        Command::Check(args) => crate::check::check(args),
        Command::Snapshot(mut args) => {
            harness::lab::privileges::check()?;
            args.quiet = verbosity == Verbosity::Quiet;
            crate::snapshots::check(&args)
        }
        Command::SutCheck(mut args) => {
            args.quiet = verbosity == Verbosity::Quiet;
            crate::sutcheck::sut_check(args)
        }
        Command::Doctor { json } => crate::doctor::doctor(json, verbosity),
        Command::Grade(args) => {
            harness::lab::privileges::check()?;
            crate::grade::grade(args)
        }
        Command::Bench(args) => {
            harness::lab::privileges::check()?;
            crate::bench::bench(args)
        }
    }
}

fn list(json: bool, markdown: bool) {
    use std::io::Write;
    // Written through one handle whose errors end the listing: `netconform list | head` must not panic.
    let mut out = std::io::stdout().lock();
    let mut text = String::new();
    let props = suites::all();
    // The invariants run on every TCP case (validity: every frame) of every suite; listed like properties.
    let infos: Vec<harness::property::PropertyInfo> = props
        .iter()
        .map(|p| p.info())
        .chain(harness::invariants::INFO)
        .chain(harness::validity::infos())
        .collect();
    if json {
        let v: Vec<serde_json::Value> = infos
            .iter()
            .map(|i| {
                serde_json::json!({
                    "id": i.id, "suite": i.suite, "title": i.title,
                    "clauses": i.clauses, "questions": i.questions,
                    "links": i.needs.links,
                    "subject": i.subject,
                    "needs": { "kernel": i.needs.kernel, "caps": i.needs.caps.iter().map(|c| c.name()).collect::<Vec<_>>() },
                })
            })
            .collect();
        text = serde_json::to_string_pretty(&v).expect("serialises") + "\n";
    } else if markdown {
        text = harness::docs::coverage_markdown(&infos);
    } else {
        let idw = infos.iter().map(|i| i.id.len()).max().unwrap_or(8);
        text += &format!(
            "{:<idw$}  {:<14}  {:<10}  clauses\n",
            "property", "suite", "questions"
        );
        for i in &infos {
            text += &format!(
                "{:<idw$}  {:<14}  {:<10}  {}\n",
                i.id,
                i.suite,
                i.questions.join(","),
                i.clauses.join("; ")
            );
            text += &format!("{:<idw$}  {}\n", "", i.title);
            text += &format!(
                "{:<idw$}  subject {}; needs {}\n",
                "",
                i.subject.name(),
                i.needs.render()
            );
        }
    }
    let _ = out.write_all(text.as_bytes());
}

/// The SUT of `--sut COMMAND --attach A`, checked against the rest of the lab settings.
pub(crate) fn sut_spec(
    command: &str,
    attach: &str,
    limit_s: u64,
    lab: &LabConfig,
) -> Result<harness::sut::SutSpec, HarnessError> {
    let words = harness::sut::SutSpec::split_command(command)
        .map_err(|e| HarnessError::Usage(format!("--sut: {e}")))?;
    let attach = harness::sut::Attach::parse(attach).ok_or_else(|| {
        HarnessError::Usage(format!(
            "--attach {attach}: expected fd, kernel, tun[:NAME] or tap[:NAME]"
        ))
    })?;
    if lab
        .sysctls
        .iter()
        .any(|s| s.host == harness::frame::Host::B)
        || lab.exec.iter().any(|e| e.host == harness::frame::Host::B)
    {
        return Err(HarnessError::Usage(
            "--sysctl b:/--exec b: need a kernel on b; with --sut, b is the system under test (settings for a still apply)"
                .into(),
        ));
    }
    if limit_s == 0 {
        return Err(HarnessError::Usage(
            "--sut-limit must be at least 1 s".into(),
        ));
    }
    Ok(harness::sut::SutSpec {
        command: words,
        attach,
        case_limit_ms: limit_s * 1000,
        mode: harness::sut::SutMode::Driven,
    })
}

fn select(args: &RunArgs) -> Result<Vec<&'static dyn DynProperty>, HarnessError> {
    let all = suites::all();
    for s in &args.suites {
        if !all.iter().any(|p| p.info().suite == s) {
            return Err(HarnessError::Usage(format!(
                "--suite {s:?}: no such suite (known: {})",
                suites::suites().join(", ")
            )));
        }
    }
    for id in &args.properties {
        if !all.iter().any(|p| p.info().id == id) {
            let ids: Vec<&str> = all.iter().map(|p| p.info().id).collect();
            return Err(HarnessError::Usage(format!(
                "--property {id:?}: no such property (known: {})",
                ids.join(", ")
            )));
        }
    }
    Ok(all
        .into_iter()
        .filter(|p| {
            let i = p.info();
            let by_suite = args.suites.is_empty() || args.suites.iter().any(|s| s == i.suite);
            let by_id = args.properties.is_empty() || args.properties.iter().any(|id| id == i.id);
            // A selftest property runs only when named.
            let hidden = i.suite == "selftest" && !args.properties.iter().any(|id| id == i.id);
            by_suite && by_id && !hidden
        })
        .collect())
}

fn run(args: RunArgs, verbosity: Verbosity) -> Result<i32, HarnessError> {
    let props = select(&args)?;
    if args.cases == 0 {
        return Err(HarnessError::Usage("--cases must be at least 1".into()));
    }
    if args.jobs == 0 || args.jobs > 256 {
        return Err(HarnessError::Usage(
            "--jobs must be between 1 and 256".into(),
        ));
    }
    let mut lab = LabConfig::default();
    for s in &args.sysctls {
        lab.sysctls.push(SysctlSetting::parse(s)?);
    }
    for e in &args.exec {
        lab.exec.push(ExecCommand::parse(e)?);
    }
    let impaired = args.delay.is_some()
        || args.jitter.is_some()
        || args.loss.is_some()
        || args.reorder.is_some()
        || args.duplicate.is_some()
        || args.rate.is_some();
    if impaired && args.link != LinkArg::Relay {
        return Err(HarnessError::Usage(
            "--delay/--jitter/--loss/--reorder/--duplicate/--rate need --link relay".into(),
        ));
    }
    if args.link == LinkArg::Relay {
        let imp = harness::link::Impairment {
            delay_us: args.delay.unwrap_or(0),
            jitter_us: args.jitter.unwrap_or(0),
            loss_ppm: args.loss.unwrap_or(0),
            reorder_ppm: args.reorder.unwrap_or(0),
            duplicate_ppm: args.duplicate.unwrap_or(0),
            rate_bps: args.rate,
            rules: Vec::new(),
        };
        lab.link = harness::link::LinkSpec::Relay(harness::link::RelaySpec {
            a_to_b: imp.clone(),
            b_to_a: imp,
            seed: 0, // the run seed, set below
        });
    }
    harness::lab::privileges::check()?;
    let facilities = harness::lab::privileges::Facilities::probe();
    if let Some(why) = &facilities.sysctls {
        if !lab.sysctls.is_empty() {
            return Err(HarnessError::Privilege {
                what: format!("--sysctl: {why}"),
                remedy: facilities.remedy().unwrap_or_default(),
            });
        }
    }
    if let Some(why) = &facilities.tun {
        if args.link == LinkArg::Relay || args.sut.is_some() {
            return Err(HarnessError::Privilege {
                what: format!(
                    "{}: {why}",
                    if args.sut.is_some() {
                        "--sut"
                    } else {
                        "--link relay"
                    }
                ),
                remedy: facilities.remedy().unwrap_or_default(),
            });
        }
    }
    facilities.accept();
    let mut offer = harness::backend::Offer::kernel();
    let mut families = match args.family {
        FamilyArg::Ipv4 => vec![Family::Ipv4],
        FamilyArg::Ipv6 => vec![Family::Ipv6],
        FamilyArg::Both => vec![Family::Ipv4, Family::Ipv6],
    };
    if let Some(command) = &args.sut {
        if let harness::lab::privileges::Mode::UserNamespace { .. } =
            harness::lab::privileges::mode()
        {
            return Err(HarnessError::Privilege {
                what: "--sut needs root: the sandbox runs every SUT as a uid of its own, and a rootless user \
                       namespace maps only one"
                    .into(),
                remedy: "run as root (sudo netconform …)".into(),
            });
        }
        let spec = sut_spec(command, &args.attach, args.sut_limit, &lab)?;
        let spec = stdio_options(&args, spec)?;
        if args.snapshots {
            return Err(HarnessError::Usage(
                "--snapshots compares the kernel's behaviour with snapshots/<profile>/; it does not apply to --sut"
                    .into(),
            ));
        }
        offer = if let harness::sut::SutMode::Stdio { role, port } = spec.mode {
            // A stdio SUT says no hello: what it offers is its mode.
            eprintln!(
                "sut: stdio mode, role {}, port {port}, attachment {}",
                role.name(),
                spec.attach.device()
            );
            harness::backend::Offer::stdio(format!("stdio SUT {command}"))
        } else {
            match harness::sut::process::probe(&spec) {
                Ok(hello) => {
                    if !hello.ipv6() {
                        families.retain(|f| *f == Family::Ipv4);
                        if families.is_empty() {
                            return Err(HarnessError::Usage(format!(
                                "--family ipv6: the SUT ({}) declares only {:?}",
                                hello.stack, hello.families
                            )));
                        }
                    }
                    eprintln!(
                        "sut: {} ({}), attachment {}, caps {}",
                        hello.stack,
                        hello.families.join("+"),
                        args.attach,
                        hello
                            .caps
                            .iter()
                            .map(|c| c.name())
                            .collect::<Vec<_>>()
                            .join(" ")
                    );
                    harness::backend::Offer {
                        backend: hello.stack.clone(),
                        kernel: false,
                        caps: hello.caps.clone(),
                        ipv6: hello.ipv6(),
                    }
                }
                // Every case starts the SUT again: each reports what went wrong, as its own result. The run
                // assumes the least the contract lets a SUT offer (TCP over IPv4).
                Err(HarnessError::Sut(f)) => {
                    eprintln!(
                        "sut: the SUT failed before any case ({f}); each case will report it \
                     (debug the adapter with `netconform sut-check {command}`)"
                    );
                    families.retain(|f| *f == Family::Ipv4);
                    if families.is_empty() {
                        families.push(Family::Ipv4);
                    }
                    harness::backend::Offer {
                        backend: "a SUT that did not say hello".into(),
                        kernel: false,
                        caps: vec![harness::backend::Cap::Tcp],
                        ipv6: false,
                    }
                }
                Err(other) => return Err(other),
            }
        };
        lab.sut = Some(spec);
    }
    let (seed, derived_from) = match (args.seed, args.partition) {
        (Some(seed), _) => (seed, None),
        // Shards must agree on the seed, or their union is not one run (docs/ci.md).
        (None, Some(_)) => {
            let (seed, from) = shared_seed();
            (seed, Some(from))
        }
        (None, None) => (harness::capture::realtime_ns() % 1_000_000_000, None),
    };
    if let harness::link::LinkSpec::Relay(spec) = &mut lab.link {
        spec.seed = seed;
    }
    let opts = RunOptions {
        cases: args.cases,
        seed,
        jobs: args.jobs,
        families,
        lab,
        out_dir: args.out.clone(),
        pcap: match args.pcap {
            PcapArg::Failures => PcapPolicy::Failures,
            PcapArg::All => PcapPolicy::All,
        },
        shrink_budget: std::time::Duration::from_secs(args.shrink_time),
        shrink_max_cases: args.shrink_cases,
        confirm_runs: args.confirm,
        html: args.html.is_some(),
        offer,
        facilities: facilities.clone(),
        partition: args.partition,
        fail_fast: args.fail_fast,
    };
    let fault = args.model_fault.map(|f| match f {
        ModelFaultArg::WriteAfterShutdownSucceeds => {
            harness::model::ModelFault::WriteAfterShutdownSucceeds
        }
    });
    let limits = harness::model::GenLimits {
        max_ops: args.max_ops.max(1),
        ..Default::default()
    };
    let props =
        suites::with_random_ops(props, suites::tcp::random_ops::RandomOps { limits, fault });
    // SAFETY: installing a handler that only stores to an atomic and resets itself.
    unsafe {
        for signal in [libc::SIGINT, libc::SIGTERM] {
            libc::signal(signal, on_interrupt as *const () as libc::sighandler_t);
        }
    }
    if verbosity > Verbosity::Quiet {
        eprintln!(
            "netconform {}: {} properties × {} cases, seed {seed}, up to {} cases at once (repeat with --seed {seed})",
            env!("CARGO_PKG_VERSION"),
            props.len(),
            args.cases,
            args.jobs
        );
        if let Some(p) = args.partition {
            eprintln!(
                "partition {p}: {} of the {} cases; seed {seed}{}",
                props
                    .iter()
                    .map(|pr| p.count(pr.info().id, args.cases))
                    .sum::<u64>(),
                props.len() as u64 * args.cases,
                derived_from
                    .map(|f| format!(" derived from {f}, the same in every shard"))
                    .unwrap_or_default()
            );
        }
        if let harness::lab::privileges::Mode::UserNamespace { uid } =
            harness::lab::privileges::mode()
        {
            eprintln!("rootless: labs in a user namespace of uid {uid}");
        }
    }
    // Cases per property in this run (all of them, or this shard's).
    let cases_of = |id: &str| {
        args.partition
            .map_or(args.cases, |p| p.count(id, args.cases))
    };
    let tty = std::io::stderr().is_terminal() && verbosity > Verbosity::Quiet;
    // Without a terminal, progress is one line per finished suite: (suite, cases left, cases not passing).
    let suite_progress: Mutex<Vec<(String, u64, u64)>> = Mutex::new(Vec::new());
    for p in &props {
        let mut sp = suite_progress.lock().unwrap();
        let suite = p.info().suite;
        let per_case = cases_of(p.info().id);
        match sp.iter_mut().find(|(s, _, _)| s == suite) {
            Some(e) => e.1 += per_case,
            None => sp.push((suite.to_string(), per_case, 0)),
        }
    }
    let multi = MultiProgress::new();
    let idw = props.iter().map(|p| p.info().id.len()).max().unwrap_or(8);
    let style = ProgressStyle::with_template(&format!(
        "{{prefix:<{idw}}} [{{bar:30}}] {{pos:>5}}/{{len:5}} {{msg}} {{elapsed:>4}}"
    ))
    .expect("valid template")
    .progress_chars("=> ");
    // Per property: its id, its bar, and (cases done, cases not passing).
    type Bar = (String, ProgressBar, Mutex<(u64, u64)>);
    let bars: Vec<Bar> = props
        .iter()
        .map(|p| {
            let bar = if tty {
                multi.add(ProgressBar::new(cases_of(p.info().id)))
            } else {
                ProgressBar::hidden()
            };
            bar.set_style(style.clone());
            bar.set_prefix(p.info().id);
            (p.info().id.to_string(), bar, Mutex::new((0, 0)))
        })
        .collect();
    let on_event = |event: Event| match event {
        Event::CaseDone { property, run } => {
            if let Some((id, bar, counts)) = bars.iter().find(|(id, _, _)| id == property) {
                let mut c = counts.lock().unwrap();
                c.0 += 1;
                if !matches!(
                    run.status,
                    CaseStatus::Pass { .. } | CaseStatus::Skip { .. }
                ) {
                    c.1 += 1;
                    bar.set_message(format!("{} not passing", c.1));
                }
                bar.inc(1);
                if c.0 == cases_of(id) {
                    bar.finish();
                }
            }
            if verbosity == Verbosity::Verbose {
                if let CaseStatus::Pass { notes } = &run.status {
                    let line = format!(
                        "  pass {property} case {} ({}): {}",
                        run.spec.index,
                        run.spec.family.name(),
                        if notes.is_empty() {
                            "no notes".to_string()
                        } else {
                            notes.join("; ")
                        }
                    );
                    if tty {
                        multi.suspend(|| eprintln!("{line}"));
                    } else {
                        eprintln!("{line}");
                    }
                }
            }
            if !tty && verbosity > Verbosity::Quiet {
                let suite = props
                    .iter()
                    .find(|p| p.info().id == property)
                    .map(|p| p.info().suite)
                    .unwrap_or("");
                let mut sp = suite_progress.lock().unwrap();
                if let Some(e) = sp.iter_mut().find(|(s, _, _)| s == suite) {
                    e.1 = e.1.saturating_sub(1);
                    if !matches!(
                        run.status,
                        CaseStatus::Pass { .. } | CaseStatus::Skip { .. }
                    ) {
                        e.2 += 1;
                    }
                    if e.1 == 0 {
                        eprintln!("  suite {suite} done, {} case(s) not passing", e.2);
                    }
                }
            }
        }
    };
    let report = runner::run(&props, &opts, &on_event);
    for (_, bar, _) in &bars {
        bar.finish_and_clear();
    }
    println!("{}", harness::report::summary_with(&report, verbosity));
    if let Some(remedy) = facilities.remedy() {
        let skipped: u64 = report.properties.iter().map(|p| p.skip).sum();
        let what: Vec<&str> = [&facilities.sysctls, &facilities.tun]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        eprintln!(
            "netconform: limited run, {skipped} case(s) skipped: {}. Remedy: {remedy}",
            what.join("; ")
        );
    }
    if let Some(path) = &args.html {
        let cmd: Vec<String> = std::env::args().collect();
        harness::report::html::write_run(
            &report,
            &cmd.join(" "),
            opts.pcap == PcapPolicy::All,
            path,
        )?;
        if verbosity > Verbosity::Quiet {
            eprintln!("html report: {}", path.display());
        }
    }
    if let Some(path) = &args.json {
        harness::report::write_json(&report, path)?;
    }
    if let Some(path) = &args.junit {
        harness::report::write_junit(&report, path)?;
    }
    let mut code = report.exit_code();
    let ran: u64 = report
        .properties
        .iter()
        .map(|p| p.pass + p.fail + p.invalid + p.error)
        .sum();
    if ran == 0 && facilities.remedy().is_some() && !report.interrupted {
        // Nothing selected can run on this machine: the remedy line above says why (exit 2).
        code = 2;
    }
    if report.interrupted {
        eprintln!("netconform: interrupted; the report above covers the cases that finished");
        return Ok(EXIT_INTERRUPTED);
    }
    if args.snapshots {
        let snap = crate::snapshots::SnapshotArgs {
            update: false,
            profiles: args.profiles.clone(),
            scenarios: Vec::new(),
            dir: crate::snapshots::default_dir().to_path_buf(),
            repeat: 1,
            jobs: 3,
            sysctls: args.sysctls.clone(),
            quiet: verbosity == Verbosity::Quiet,
        };
        code = code.max(crate::snapshots::check(&snap)?);
    }
    Ok(code)
}

/// The seed every shard of a partitioned run derives alike, and what it was derived from: the CI's
/// identifiers of the pipeline run (the same in every job of it), else a constant.
fn shared_seed() -> (u64, String) {
    const SHARED: &[&str] = &[
        "GITHUB_SHA",
        "GITHUB_RUN_ID",
        "GITHUB_RUN_ATTEMPT",
        "CI_PIPELINE_ID",
        "CI_COMMIT_SHA",
        "BUILDKITE_BUILD_ID",
        "CIRCLE_WORKFLOW_ID",
    ];
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut used = Vec::new();
    for name in SHARED {
        if let Ok(v) = std::env::var(name) {
            for b in name.bytes().chain([b'=']).chain(v.bytes()).chain([0]) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            used.push(*name);
        }
    }
    if used.is_empty() {
        return (
            1,
            "no CI variable (GITHUB_SHA, CI_PIPELINE_ID, …): the fixed seed 1".into(),
        );
    }
    (h % 1_000_000_000, used.join(", "))
}

fn replay(
    file: PathBuf,
    out: PathBuf,
    html: Option<PathBuf>,
    verbosity: Verbosity,
) -> Result<i32, HarnessError> {
    let text =
        std::fs::read_to_string(&file).map_err(|e| HarnessError::output(file.display(), e))?;
    let spec: CaseSpec = serde_json::from_str(&text).map_err(|e| {
        HarnessError::Usage(format!(
            "{}: not a netconform case file: {e}",
            file.display()
        ))
    })?;
    let Some(prop) = suites::all_including_selftest()
        .into_iter()
        .find(|p| p.info().id == spec.property)
    else {
        return Err(HarnessError::Usage(format!(
            "{}: property {:?} is not known to this netconform",
            file.display(),
            spec.property
        )));
    };
    harness::lab::privileges::check()?;
    let run = prop.run_case(&spec);
    println!(
        "{} case {} ({}, seed {}): {}",
        spec.property,
        spec.index,
        spec.family.name(),
        spec.seed,
        run.description
    );
    if verbosity > Verbosity::Quiet {
        println!("\n{}", run.trace_text);
    }
    let (case_path, pcap_path) = runner::write_case_outputs(&out, &run)?;
    if let Some(path) = &html {
        let mut view = harness::runner::view_of_run(&run, Some(&(case_path, pcap_path.clone())));
        view.suite = prop.info().suite.to_string();
        harness::report::html::write_cases(
            &format!("netconform replay — {} case {}", spec.property, spec.index),
            vec![("case file".into(), file.display().to_string())],
            vec![view],
            path,
        )?;
    }
    match &run.status {
        CaseStatus::Pass { notes } => {
            println!(
                "PASS{}",
                if notes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", notes.join("; "))
                }
            )
        }
        CaseStatus::Fail { violation } => println!("FAIL {violation}"),
        CaseStatus::Skip { reason } => println!("SKIP {reason}"),
        CaseStatus::Invalid { reason } => println!("INVALID {reason}"),
        CaseStatus::Error { message } => println!("ERROR {message}"),
    }
    println!("pcapng: {pcap_path}");
    Ok(match run.status {
        CaseStatus::Pass { .. } | CaseStatus::Skip { .. } => 0,
        _ => 1,
    })
}

fn trace(file: PathBuf) -> Result<i32, HarnessError> {
    let records = harness::pcapng::read_capture(&file)
        .map_err(|e| HarnessError::Usage(format!("{}: {e}", file.display())))?;
    let frames: Vec<harness::frame::Frame> = records.into_iter().map(|r| r.frame).collect();
    let hosts = harness::trace::HostAddrs::by_first_talker(&frames);
    let trace = harness::trace::Trace::build(&frames, &hosts, None);
    print!("{}", trace.render());
    Ok(0)
}
