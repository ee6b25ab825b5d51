//! Running cases: type erasure over properties, one lab per case, concurrent workers, outputs per failure.
//!
//! A case flows left to right: generate → lab → capture → execute → settle → trace → check → verdict. Cases
//! run concurrently in independent labs, so the timer waits of one case overlap with the work of others; how
//! many run at once is decided by what they wait for ([`crate::schedule`]: CPU-bound phases hold one of
//! `cores` slots, new cases start while the CPUs have room, `--jobs` caps it). Seeds are derived per (run
//! seed, property, index): the same `--seed` gives the same cases whatever the concurrency is.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::HarnessError;
use crate::frame::{Frame, Host};
use crate::invariants::InvariantContext;
use crate::lab::privileges::Facilities;
use crate::lab::LabConfig;
use crate::pipeline::{case_config, case_lab, case_trace, run_in_lab, Ran, Settle};
use crate::property::{case_rng, case_seed, CaseEnv, Property, PropertyInfo, Verdict};
use crate::schedule::{Admission, CpuGate};
use crate::sock::Family;
use crate::trace::Trace;
use crate::verdict::Violation;

/// A case, fully determined: what a case file holds and what `replay` re-runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseSpec {
    pub property: String,
    pub index: u64,
    pub seed: u64,
    pub family: Family,
    /// The property's own case parameters.
    pub case: serde_json::Value,
    /// The user's lab settings (sysctls, exec commands) in force when the case ran.
    pub lab: LabConfig,
}

/// Status of a finished case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum CaseStatus {
    Pass {
        notes: Vec<String>,
    },
    Fail {
        violation: crate::property::Violation,
    },
    Skip {
        reason: String,
    },
    Invalid {
        reason: String,
    },
    /// The harness could not run the case (setup failure, panic in a property): neither pass nor fail.
    Error {
        message: String,
    },
}

impl CaseStatus {
    pub fn label(&self) -> &'static str {
        match self {
            CaseStatus::Pass { .. } => "pass",
            CaseStatus::Fail { .. } => "fail",
            CaseStatus::Skip { .. } => "skip",
            CaseStatus::Invalid { .. } => "invalid",
            CaseStatus::Error { .. } => "error",
        }
    }
}

/// Everything about one finished case. Frames are kept only until outputs are written.
#[derive(Debug, Clone)]
pub struct CaseRun {
    pub spec: CaseSpec,
    pub description: String,
    pub status: CaseStatus,
    pub frames: Vec<Frame>,
    pub trace_text: String,
    pub duration: Duration,
    /// What the HTML report needs besides the frames (kept only until outputs are written).
    pub drawing: crate::report::view::DrawInputs,
    /// The case drawn for the HTML report, when the run asked for it and the case is drawn.
    pub view: Option<Box<crate::report::view::CaseView>>,
}

/// A property with its case and observation types erased.
pub trait DynProperty: Send + Sync {
    fn info(&self) -> PropertyInfo;
    fn generate(&self, seed: u64, family: Family) -> serde_json::Value;
    /// Runs a case alone (replay, snapshots, tests): its CPU-bound phases never wait for a slot.
    fn run_case(&self, spec: &CaseSpec) -> CaseRun {
        self.run_case_gated(spec, &CpuGate::unlimited())
    }
    /// Runs a case among others: lab building, tracing and checking hold a slot of `gate`.
    fn run_case_gated(&self, spec: &CaseSpec, gate: &CpuGate) -> CaseRun;
    /// Smaller candidates of a case (see [`Property::shrink`]).
    fn shrink(&self, case: &serde_json::Value) -> Vec<serde_json::Value>;
    /// The size of a case shrinking minimises.
    fn size(&self, case: &serde_json::Value) -> Option<usize>;
    /// The link the case itself asks for ([`Property::lab_config`]); `Veth` means "the user's link".
    fn case_link(&self, case: &serde_json::Value) -> Option<crate::property::LinkKind>;
    /// The lab settings the case itself asks for ([`Property::lab_config`]).
    fn case_lab_config(&self, case: &serde_json::Value) -> Option<LabConfig>;
}

impl<P: Property> DynProperty for P {
    fn info(&self) -> PropertyInfo {
        Property::info(self)
    }

    fn generate(&self, seed: u64, family: Family) -> serde_json::Value {
        let mut rng = case_rng(seed);
        let case = Property::generate(self, &mut rng, family);
        serde_json::to_value(case).expect("case types serialise to JSON")
    }

    fn shrink(&self, case: &serde_json::Value) -> Vec<serde_json::Value> {
        match serde_json::from_value::<P::Case>(case.clone()) {
            Ok(c) => Property::shrink(self, &c)
                .into_iter()
                .map(|c| serde_json::to_value(c).expect("case types serialise to JSON"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn size(&self, case: &serde_json::Value) -> Option<usize> {
        serde_json::from_value::<P::Case>(case.clone())
            .ok()
            .and_then(|c| Property::size(self, &c))
    }

    fn case_link(&self, case: &serde_json::Value) -> Option<crate::property::LinkKind> {
        let c = serde_json::from_value::<P::Case>(case.clone()).ok()?;
        Some(self.lab_config(&c).link.kind())
    }

    fn case_lab_config(&self, case: &serde_json::Value) -> Option<LabConfig> {
        let c = serde_json::from_value::<P::Case>(case.clone()).ok()?;
        Some(self.lab_config(&c))
    }

    fn run_case_gated(&self, spec: &CaseSpec, gate: &CpuGate) -> CaseRun {
        let start = Instant::now();
        let mut run = CaseRun {
            spec: spec.clone(),
            description: String::new(),
            status: CaseStatus::Error {
                message: "not run".into(),
            },
            frames: Vec::new(),
            trace_text: String::new(),
            duration: Duration::ZERO,
            drawing: Default::default(),
            view: None,
        };
        let case: P::Case = match serde_json::from_value(spec.case.clone()) {
            Ok(c) => c,
            Err(e) => {
                run.status = CaseStatus::Error {
                    message: format!("case parameters do not fit property {}: {e}", spec.property),
                };
                return run;
            }
        };
        run.description = self.describe(&case);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            execute_and_check(self, &case, spec, gate)
        }));
        match outcome {
            Ok(Ok((status, frames, trace_text, drawing))) => {
                run.status = status;
                run.frames = frames;
                run.trace_text = trace_text;
                run.drawing = drawing;
            }
            Ok(Err(HarnessError::Sut(f))) if f.kind == crate::error::SutFailureKind::Crashed => {
                // The SUT dying mid-case is a finding about it, not a harness failure.
                let mut v = crate::property::Violation::new(
                    "docs/driver-protocol.md (failure semantics)",
                    "SUT crashed",
                )
                .field("process")
                .expected("alive until the harness closes its stdin")
                .actual(&f.message);
                v.context = crate::error::stderr_lines(&f.stderr_tail)
                    .into_iter()
                    .map(|l| format!("SUT stderr: {l}"))
                    .collect();
                run.status = CaseStatus::Fail { violation: v };
            }
            Ok(Err(e)) => {
                run.status = CaseStatus::Error {
                    message: e.to_string(),
                }
            }
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                run.status = CaseStatus::Error {
                    message: format!("panic inside property {}: {msg}", spec.property),
                };
            }
        }
        run.duration = start.elapsed();
        run
    }
}

fn execute_and_check<P: Property>(
    prop: &P,
    case: &P::Case,
    spec: &CaseSpec,
    gate: &CpuGate,
) -> Result<
    (
        CaseStatus,
        Vec<Frame>,
        String,
        crate::report::view::DrawInputs,
    ),
    HarnessError,
> {
    let config = case_config(&spec.lab, prop.lab_config(case));
    let ctx = crate::sut::CaseContext {
        family: spec.family,
        seed: spec.seed,
        case: format!("{}#{}", spec.property, spec.index),
        mtu: config.mtu.unwrap_or(1500),
        port: None,
    };
    let timing = if config.sut.is_some() {
        crate::backend::TimingBounds::RFC
    } else {
        crate::backend::TimingBounds::LINUX
    };
    // Answers still in flight need the link's round trip on top of the property's own settle time.
    // A user-space stack gets its answer grace on top (TimingBounds::answer_grace).
    let settle = Settle::PlusLinkRoundTrips(prop.settle(case) + timing.answer_grace);
    let ran = run_in_lab(&config, Some(&ctx), gate, settle, |lab| {
        let env = CaseEnv {
            lab,
            family: spec.family,
            seed: spec.seed,
            timing,
        };
        crate::exec::start_recording_ops();
        let observed = prop.execute(case, &env);
        let ops = crate::exec::take_recorded_ops();
        Ok((observed?, ops))
    })?;
    let rcvbuf_limit = [
        Some(ran.lab.rcvbuf_limit(Host::A)),
        // No kernel on b bounds a SUT's window by a buffer netconform knows.
        config.sut.is_none().then(|| ran.lab.rcvbuf_limit(Host::B)),
    ];
    let trace = ran.trace();
    let trace_text = trace.render();
    let Ran {
        executed: (observed, ops),
        captured,
        start_ns,
        checking: _checking,
        ..
    } = ran;
    let drawing = crate::report::view::DrawInputs {
        start_ns,
        link_events: captured.link_events,
        ops,
    };
    if captured.drops > 0 {
        return Ok((
            CaseStatus::Invalid {
                reason: format!(
                    "the capture dropped {} frame(s) (PACKET_STATISTICS)",
                    captured.drops
                ),
            },
            captured.frames,
            trace_text,
            drawing,
        ));
    }
    let mut verdict = prop.check(case, &observed, &trace);
    // Wire validity of every frame of the judged hosts (`crate::validity`): a malformed frame leads the
    // verdict, since it can explain any later finding; the property's own failure is kept in the summary.
    let judged = match prop.info().subject {
        crate::property::Subject::B => vec![Host::B],
        crate::property::Subject::A | crate::property::Subject::Both => vec![Host::A, Host::B],
    };
    let validity = crate::validity::check(
        &captured.frames,
        &trace,
        &crate::validity::ValidityContext {
            capture_host: Some(Host::A),
            judged: Some(judged),
            offline: None,
        },
    );
    // A skipped or invalid case stays so: its evidence is not judged.
    if matches!(verdict, Verdict::Pass { .. } | Verdict::Fail { .. }) {
        if let Some(v) = validity_violation(validity.findings, &verdict) {
            verdict = Verdict::Fail { violation: v };
        }
    }
    if let Verdict::Pass { .. } = verdict {
        let ctx = InvariantContext {
            capture_host: Some(Host::A),
            rcvbuf_limit,
        };
        if let Some((id, mut v)) = crate::invariants::check(&trace, &ctx).into_iter().next() {
            v.summary = format!("[invariant {id}] {}", v.summary);
            verdict = Verdict::Fail { violation: v };
        }
    }
    let status = match verdict {
        Verdict::Pass { notes } => CaseStatus::Pass { notes },
        Verdict::Fail { mut violation } => {
            violation
                .context
                .extend(context_lines(&trace, &violation.frames));
            CaseStatus::Fail { violation }
        }
        Verdict::Skip { reason } => CaseStatus::Skip { reason },
        Verdict::Invalid { reason } => CaseStatus::Invalid { reason },
    };
    Ok((status, captured.frames, trace_text, drawing))
}

/// The first validity finding as the case's violation (`[invariant ID] …`), counting the others and keeping
/// the property's own failure, if any, in the summary; `None` when every frame was valid.
pub fn validity_violation(
    findings: Vec<(&'static str, Violation)>,
    verdict: &Verdict,
) -> Option<Violation> {
    let total = findings.len();
    let (id, mut v) = findings.into_iter().next()?;
    v.summary = format!("[invariant {id}] {}", v.summary);
    if total > 1 {
        v.summary = format!("{} (and {} more invalid frame(s))", v.summary, total - 1);
    }
    if let Verdict::Fail { violation } = verdict {
        v.summary = format!(
            "{}; the property's own check: {}",
            v.summary, violation.summary
        );
    }
    Some(v)
}

/// Canonical lines around the frames a violation names (three before, three after), or the whole trace
/// when it is short or no frame is named.
pub fn context_lines(trace: &Trace, frames: &[usize]) -> Vec<String> {
    let all: Vec<String> = trace.render().lines().map(str::to_string).collect();
    if all.len() <= 12 {
        return all;
    }
    if frames.is_empty() {
        let mut head: Vec<String> = all.iter().take(30).cloned().collect();
        if all.len() > 30 {
            head.push(format!("… {} more frames (see the pcapng)", all.len() - 30));
        }
        return head;
    }
    let lo = frames.iter().min().copied().unwrap_or(1).saturating_sub(4);
    let hi = (frames.iter().max().copied().unwrap_or(1) + 3).min(all.len());
    all[lo..hi].to_vec()
}

/// How a failure was minimised and confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShrinkReport {
    pub original_size: Option<usize>,
    pub shrunk_size: Option<usize>,
    /// Candidate cases run while shrinking.
    pub attempts: usize,
    pub shrink_ms: u64,
    /// `confirmed` when every re-run of the minimal case failed, `flaky` otherwise (never a pass).
    pub classification: String,
    /// How many of the confirmation re-runs failed.
    pub confirmations_failed: usize,
    pub confirmations: usize,
}

/// Shrinks a failing case greedily (the first smaller candidate that fails twice wins, then start over)
/// within `budget`, then re-runs the minimal case `confirm` times.
pub fn shrink_and_confirm(
    prop: &dyn DynProperty,
    failing: CaseRun,
    budget: Duration,
    confirm: usize,
) -> (CaseRun, ShrinkReport) {
    let started = Instant::now();
    let original_size = prop.size(&failing.spec.case);
    let mut best = failing;
    let mut attempts = 0;
    'outer: loop {
        for candidate in prop.shrink(&best.spec.case) {
            if started.elapsed() > budget || INTERRUPTED.load(Ordering::Relaxed) {
                break 'outer;
            }
            attempts += 1;
            let spec = CaseSpec {
                case: candidate,
                ..best.spec.clone()
            };
            let run = prop.run_case(&spec);
            // A candidate is taken only if it fails twice: shrinking must not walk into a race (e.g. a
            // removed barrier that only sometimes still fails).
            if matches!(run.status, CaseStatus::Fail { .. }) {
                attempts += 1;
                if matches!(prop.run_case(&spec).status, CaseStatus::Fail { .. }) {
                    best = run;
                    continue 'outer;
                }
            }
        }
        break;
    }
    let shrink_ms = started.elapsed().as_millis() as u64;
    let mut failed = 0;
    for _ in 0..confirm {
        if matches!(prop.run_case(&best.spec).status, CaseStatus::Fail { .. }) {
            failed += 1;
        }
    }
    let report = ShrinkReport {
        original_size,
        shrunk_size: prop.size(&best.spec.case),
        attempts,
        shrink_ms,
        classification: if failed == confirm {
            "confirmed"
        } else {
            "flaky"
        }
        .into(),
        confirmations_failed: failed,
        confirmations: confirm,
    };
    (best, report)
}

/// When to write pcapng files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PcapPolicy {
    /// For every case that did not pass (fail, invalid, error).
    Failures,
    All,
}

/// How a run is shaped.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub cases: u64,
    pub seed: u64,
    /// The most cases running at once (`--jobs`); fewer run while the CPUs are busy ([`crate::schedule`]).
    pub jobs: usize,
    pub families: Vec<Family>,
    pub lab: LabConfig,
    pub out_dir: PathBuf,
    pub pcap: PcapPolicy,
    /// Time budget for shrinking one failing case.
    pub shrink_budget: Duration,
    /// Failing cases per property that are shrunk (the rest are reported as found).
    pub shrink_max_cases: usize,
    /// Re-runs of a shrunk case to classify it confirmed or flaky.
    pub confirm_runs: usize,
    /// Build the HTML report's drawing of every case that is drawn (see [`crate::report::view`]).
    pub html: bool,
    /// What host b's backend offers; a property whose subject or needs it does not meet is skipped.
    pub offer: crate::backend::Offer,
    /// What labs can do on this machine: a case needing a missing facility (writable sysctls, TUN) is
    /// skipped with the reason.
    pub facilities: Facilities,
    /// Run only this shard of the cases (`--partition hash:K/N`).
    pub partition: Option<Partition>,
    /// Start no new case after the first that did not pass (`--fail-fast`).
    pub fail_fast: bool,
}

/// `--partition hash:K/N`: shard K of N. A case (property × index) belongs to exactly one shard, chosen by a
/// hash of its property id and index — not of the seed, and not of what else is selected — so the N shards
/// of the same selection and seed are together exactly the unpartitioned run, whatever machine runs each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    /// 1-based.
    pub shard: u64,
    pub of: u64,
}

impl Partition {
    /// `hash:K/N` with 1 ≤ K ≤ N.
    pub fn parse(s: &str) -> Result<Partition, String> {
        let bad = || format!("{s:?}: expected hash:K/N with 1 <= K <= N, e.g. hash:2/3");
        let rest = s.strip_prefix("hash:").ok_or_else(bad)?;
        let (k, n) = rest.split_once('/').ok_or_else(bad)?;
        let (shard, of): (u64, u64) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if shard == 0 || of == 0 || shard > of {
            return Err(bad());
        }
        Ok(Partition { shard, of })
    }

    /// True when case `index` of `property` is in this shard.
    pub fn contains(&self, property: &str, index: u64) -> bool {
        // FNV-1a 64 over "<id>#<index>", then splitmix64's finaliser so that neighbouring indices spread.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in property.bytes().chain([b'#']).chain(index.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
        h % self.of == self.shard - 1
    }

    /// How many of a property's first `cases` cases are in this shard.
    pub fn count(&self, property: &str, cases: u64) -> u64 {
        (0..cases).filter(|&i| self.contains(property, i)).count() as u64
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "hash:{}/{}", self.shard, self.of)
    }
}

impl RunOptions {
    /// Shrinking defaults: 30 s per case, the first 3 failures of a property, 3 confirmation runs.
    pub fn shrink_defaults() -> (Duration, usize, usize) {
        (Duration::from_secs(30), 3, 3)
    }
}

/// What the runner tells its caller while it runs.
pub enum Event<'a> {
    CaseDone { property: &'a str, run: &'a CaseRun },
}

/// Summary of one property in a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PropertyResult {
    pub id: String,
    pub suite: String,
    pub title: String,
    pub clauses: Vec<String>,
    pub questions: Vec<String>,
    pub pass: u64,
    pub fail: u64,
    pub skip: u64,
    pub invalid: u64,
    pub error: u64,
    pub duration_ms: u64,
    /// Every case that did not pass, with where its files are.
    pub problems: Vec<CaseProblem>,
    /// Distinct pass notes with their counts (e.g. which close shapes were seen).
    pub notes: Vec<(String, u64)>,
    /// Why no case of the property ran: its subject or needs are not met by host b's backend
    /// (`needs kernel TCP_INFO on b`), or, for the first case skipped, why this machine could not run it
    /// (`needs a TUN device: …`). Skipped cases count as skipped, never as passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// The index of every case of this property that ran (or was skipped), ascending: what a shard covered.
    #[serde(default)]
    pub cases: Vec<u64>,
}

impl PropertyResult {
    /// The property's overall status: fail > error > invalid > skip (all skipped) > pass.
    pub fn status(&self) -> &'static str {
        if self.fail > 0 {
            "fail"
        } else if self.error > 0 {
            "error"
        } else if self.invalid > 0 {
            "invalid"
        } else if self.pass == 0 && self.skip > 0 {
            "skip"
        } else {
            "pass"
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseProblem {
    pub index: u64,
    pub seed: u64,
    pub family: Family,
    pub description: String,
    #[serde(flatten)]
    pub status: CaseStatus,
    pub case_file: Option<String>,
    pub pcap: Option<String>,
    pub replay: Option<String>,
    /// Present when the failure was shrunk.
    pub shrink: Option<ShrinkReport>,
}

/// Why a case cannot run on this machine (a missing facility), judged from its lab settings before any lab.
fn facility_unmet(
    prop: &dyn DynProperty,
    spec: &CaseSpec,
    facilities: &Facilities,
) -> Option<String> {
    if facilities == &Facilities::all() {
        return None;
    }
    let config = case_config(&spec.lab, prop.case_lab_config(&spec.case)?);
    let needs_tun = config.sut.is_some()
        || matches!(
            config.link.kind(),
            crate::link::LinkKind::Relay | crate::link::LinkKind::Peer
        );
    facilities.unmet(!config.sysctls.is_empty(), needs_tun)
}

/// The result of a whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub netconform: String,
    pub seed: u64,
    pub cases_per_property: u64,
    pub families: Vec<Family>,
    /// Wall time of the whole run.
    pub duration_ms: u64,
    /// The most cases that ran at once.
    #[serde(default)]
    pub peak_jobs: usize,
    pub interrupted: bool,
    /// The shard this run was (`hash:K/N`), if partitioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// Cases never started because `--fail-fast` stopped the run after a case that did not pass.
    #[serde(default)]
    pub not_run: u64,
    pub properties: Vec<PropertyResult>,
    /// The drawn cases of the HTML report (only with [`RunOptions::html`]), in property and case order.
    #[serde(skip)]
    pub views: Vec<crate::report::view::CaseView>,
}

impl RunReport {
    /// 0 when everything passed (or was skipped with a reason), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self
            .properties
            .iter()
            .all(|p| matches!(p.status(), "pass" | "skip"))
            && !self.interrupted
        {
            0
        } else {
            1
        }
    }
}

/// Set from a SIGINT handler: stop starting new cases.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Writes the case file and pcapng of a case; returns their paths.
pub fn write_case_outputs(out_dir: &Path, run: &CaseRun) -> Result<(String, String), HarnessError> {
    let dir = out_dir.join(&run.spec.property);
    std::fs::create_dir_all(&dir).map_err(|e| HarnessError::output(dir.display(), e))?;
    let stem = format!("case-{:04}-{}", run.spec.index, run.spec.family.name());
    let case_path = dir.join(format!("{stem}.json"));
    let pcap_path = dir.join(format!("{stem}.pcapng"));
    let json = serde_json::to_string_pretty(&run.spec).expect("case spec serialises");
    std::fs::write(&case_path, json + "\n")
        .map_err(|e| HarnessError::output(case_path.display(), e))?;
    let comment = format!(
        "netconform {} case {} seed {} ({}): {} — {}",
        run.spec.property,
        run.spec.index,
        run.spec.seed,
        run.spec.family.name(),
        run.description,
        run.status.label()
    );
    crate::pcapng::write_case_frames(&pcap_path, &comment, &run.frames)
        .map_err(|e| HarnessError::output(pcap_path.display(), e))?;
    Ok((
        case_path.display().to_string(),
        pcap_path.display().to_string(),
    ))
}

/// After Ctrl-C, how long cases already running may take to finish before the run reports what it has.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(1);

/// Runs `cases` cases of every property with `jobs` concurrent labs.
///
/// On Ctrl-C ([`INTERRUPTED`]) no new case starts; cases already running get [`INTERRUPT_GRACE`] to finish,
/// then the report of what finished is returned (the caller exits; the kernel frees the labs still open).
pub fn run(
    properties: &[&'static dyn DynProperty],
    opts: &RunOptions,
    on_event: &(dyn Fn(Event) + Sync),
) -> RunReport {
    let started = Instant::now();
    let unmet: Vec<Option<String>> = properties
        .iter()
        .map(|p| {
            let info = p.info();
            opts.offer.unmet(info.subject, &info.needs).or_else(|| {
                let ip_only = opts.lab.sut.is_some() || opts.lab.link != crate::link::LinkSpec::Veth;
                (info.needs.ethernet && ip_only).then(|| {
                    "needs an Ethernet link (ARP/ND): this run's link carries IP packets only (use the default veth link)"
                        .to_string()
                })
            })
        })
        .collect();
    let in_shard = |id: &str, index: u64| opts.partition.is_none_or(|s| s.contains(id, index));
    let mut queue = VecDeque::new();
    // Round robin over the properties (case 0 of each, then case 1 of each, …): the slow ones — waiting on
    // 200 ms probe timers or a 40 ms relay — start at once instead of forming the run's tail.
    for index in 0..opts.cases {
        for (p, prop) in properties.iter().enumerate() {
            if unmet[p].is_some() {
                continue;
            }
            if !in_shard(prop.info().id, index) {
                continue;
            }
            let seed = case_seed(opts.seed, prop.info().id, index);
            let family = opts.families[(index as usize) % opts.families.len()];
            queue.push_back((p, index, seed, family));
        }
    }
    let total = queue.len();
    let queue = Arc::new(Mutex::new(queue));
    let mut results: Vec<PropertyResult> = properties
        .iter()
        .zip(&unmet)
        .map(|(prop, unmet)| {
            let info = prop.info();
            PropertyResult {
                id: info.id.into(),
                suite: info.suite.into(),
                title: info.title.into(),
                clauses: info.clauses.iter().map(|s| s.to_string()).collect(),
                questions: info.questions.iter().map(|s| s.to_string()).collect(),
                pass: 0,
                fail: 0,
                skip: if unmet.is_some() {
                    (0..opts.cases).filter(|&i| in_shard(info.id, i)).count() as u64
                } else {
                    0
                },
                invalid: 0,
                error: 0,
                duration_ms: 0,
                problems: Vec::new(),
                notes: Vec::new(),
                skipped: unmet.clone(),
                cases: if unmet.is_some() {
                    (0..opts.cases).filter(|&i| in_shard(info.id, i)).collect()
                } else {
                    Vec::new()
                },
            }
        })
        .collect();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Done>();
    let shrunk_per_property: Arc<Vec<std::sync::atomic::AtomicUsize>> = Arc::new(
        properties
            .iter()
            .map(|_| std::sync::atomic::AtomicUsize::new(0))
            .collect(),
    );
    let props: Arc<Vec<&'static dyn DynProperty>> = Arc::new(properties.to_vec());
    let workers = opts.jobs.max(1).min(total.max(1));
    let admission = Arc::new(Admission::new(Admission::default_floor(), workers));
    let gate = Arc::new(CpuGate::new(crate::schedule::cores()));
    // Set by --fail-fast after the first case that did not pass: no new case starts.
    let stop = Arc::new(AtomicBool::new(false));
    for _ in 0..workers {
        let (queue, props, done_tx, opts) =
            (queue.clone(), props.clone(), done_tx.clone(), opts.clone());
        let (shrunk_per_property, admission, gate, stop) = (
            shrunk_per_property.clone(),
            admission.clone(),
            gate.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || loop {
            let stopping = || INTERRUPTED.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed);
            if !admission.enter(&stopping) {
                return;
            }
            if stopping() {
                admission.leave();
                return;
            }
            let next = queue.lock().unwrap().pop_front();
            let Some((p, index, seed, family)) = next else {
                admission.leave();
                return;
            };
            let prop = props[p];
            let spec = CaseSpec {
                property: prop.info().id.to_string(),
                index,
                seed,
                family,
                case: prop.generate(seed, family),
                lab: case_lab(&opts.lab, seed),
            };
            let mut run = match facility_unmet(prop, &spec, &opts.facilities) {
                Some(reason) => skipped_run(&spec, reason),
                None => prop.run_case_gated(&spec, &gate),
            };
            rerun_invalid(prop, &spec, &gate, &mut run);
            let mut shrink = None;
            if matches!(run.status, CaseStatus::Fail { .. })
                && !prop.shrink(&spec.case).is_empty()
                && shrunk_per_property[p].fetch_add(1, Ordering::SeqCst) < opts.shrink_max_cases
            {
                let (best, report) =
                    shrink_and_confirm(prop, run, opts.shrink_budget, opts.confirm_runs);
                run = best;
                shrink = Some(report);
            }
            let passed = matches!(
                run.status,
                CaseStatus::Pass { .. } | CaseStatus::Skip { .. }
            );
            let (mut files, mut write_error) = (None, None);
            if !passed || opts.pcap == PcapPolicy::All {
                match write_case_outputs(&opts.out_dir, &run) {
                    Ok(f) => files = Some(f),
                    Err(e) => write_error = Some(e.to_string()),
                }
            }
            if opts.html && (!passed || opts.pcap == PcapPolicy::All) {
                run.view = Some(Box::new(view_of_run(&run, files.as_ref())));
            }
            run.frames = Vec::new();
            admission.leave();
            if done_tx.send((p, run, files, write_error, shrink)).is_err() {
                return;
            }
        });
    }
    drop(done_tx);
    let mut finished = 0;
    let mut views = Vec::new();
    let mut grace_until: Option<Instant> = None;
    while finished < total {
        let received = match grace_until {
            Some(until) => {
                match done_rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                    Ok(r) => r,
                    Err(_) => break,
                }
            }
            None => match done_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(r) => r,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if INTERRUPTED.load(Ordering::Relaxed) {
                        grace_until = Some(Instant::now() + INTERRUPT_GRACE);
                    }
                    continue;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            },
        };
        finished += 1;
        let (p, mut run, files, write_error, shrink) = received;
        if opts.fail_fast
            && !matches!(
                run.status,
                CaseStatus::Pass { .. } | CaseStatus::Skip { .. }
            )
        {
            stop.store(true, Ordering::SeqCst);
        }
        if let Some(view) = run.view.take() {
            views.push((p, *view));
        }
        record(&mut results[p], &run, files, write_error, shrink);
        on_event(Event::CaseDone {
            property: props[p].info().id,
            run: &run,
        });
    }
    for p in &mut results {
        p.problems.sort_by_key(|c| c.index);
        p.notes.sort();
        p.cases.sort_unstable();
    }
    RunReport {
        netconform: env!("CARGO_PKG_VERSION").to_string(),
        seed: opts.seed,
        cases_per_property: opts.cases,
        families: opts.families.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
        peak_jobs: admission.peak(),
        interrupted: INTERRUPTED.load(Ordering::Relaxed),
        partition: opts.partition.map(|p| p.to_string()),
        not_run: if stop.load(Ordering::Relaxed) {
            (total - finished) as u64
        } else {
            0
        },
        properties: results,
        views: {
            views.sort_by_key(|(p, v)| (*p, v.index));
            views.into_iter().map(|(_, v)| v).collect()
        },
    }
}

/// A case not run because this machine lacks what it needs (`reason`).
fn skipped_run(spec: &CaseSpec, reason: String) -> CaseRun {
    CaseRun {
        spec: spec.clone(),
        description: String::new(),
        status: CaseStatus::Skip { reason },
        frames: Vec::new(),
        trace_text: String::new(),
        duration: Duration::ZERO,
        drawing: Default::default(),
        view: None,
    }
}

/// Re-runs of a case whose premise was not reached (`invalid`), before it is reported invalid.
pub const INVALID_RERUNS: usize = 2;

/// An invalid case did not test anything: its premise (full buffers, a closed window, a lossless capture)
/// was never reached, mostly because a loaded machine delayed a host. It is run again, same seed, up to
/// [`INVALID_RERUNS`] times; the first run that reaches its premise is the case's result, with a note saying
/// why it was re-run. Only a case invalid every time is reported invalid.
fn rerun_invalid(prop: &dyn DynProperty, spec: &CaseSpec, gate: &CpuGate, run: &mut CaseRun) {
    for attempt in 1..=INVALID_RERUNS {
        let CaseStatus::Invalid { reason } = &run.status else {
            return;
        };
        let reason = reason.clone();
        let mut again = prop.run_case_gated(spec, gate);
        match &mut again.status {
            CaseStatus::Invalid { .. } => {}
            CaseStatus::Pass { notes } => notes.push(format!(
                "re-run {attempt}× after an invalid run ({})",
                reason.split(':').next().unwrap_or(&reason)
            )),
            _ => {}
        }
        *run = again;
    }
}

/// A finished case as a worker hands it back: property index, run, (case file, pcapng), write error, shrink.
type Done = (
    usize,
    CaseRun,
    Option<(String, String)>,
    Option<String>,
    Option<ShrinkReport>,
);

fn record(
    r: &mut PropertyResult,
    run: &CaseRun,
    files: Option<(String, String)>,
    write_error: Option<String>,
    shrink: Option<ShrinkReport>,
) {
    r.duration_ms += run.duration.as_millis() as u64;
    r.cases.push(run.spec.index);
    match &run.status {
        CaseStatus::Pass { notes } => {
            r.pass += 1;
            for n in notes {
                match r.notes.iter_mut().find(|(k, _)| k == n) {
                    Some((_, c)) => *c += 1,
                    None => r.notes.push((n.clone(), 1)),
                }
            }
        }
        CaseStatus::Fail { .. } => r.fail += 1,
        CaseStatus::Skip { reason } => {
            r.skip += 1;
            r.skipped.get_or_insert_with(|| reason.clone());
        }
        CaseStatus::Invalid { .. } => r.invalid += 1,
        CaseStatus::Error { .. } => r.error += 1,
    }
    if matches!(
        run.status,
        CaseStatus::Pass { .. } | CaseStatus::Skip { .. }
    ) {
        return;
    }
    let mut status = run.status.clone();
    if let Some(e) = &write_error {
        let msg = format!(" (writing its case file and pcapng failed: {e})");
        match &mut status {
            CaseStatus::Error { message } => message.push_str(&msg),
            CaseStatus::Invalid { reason } | CaseStatus::Skip { reason } => reason.push_str(&msg),
            CaseStatus::Fail { violation } => violation.summary.push_str(&msg),
            CaseStatus::Pass { .. } => {}
        }
    }
    r.problems.push(CaseProblem {
        index: run.spec.index,
        seed: run.spec.seed,
        family: run.spec.family,
        description: run.description.clone(),
        status,
        replay: files
            .as_ref()
            .map(|(c, _)| format!("netconform replay {c}")),
        case_file: files.as_ref().map(|(c, _)| c.clone()),
        pcap: files.as_ref().map(|(_, p)| p.clone()),
        shrink,
    });
}

/// The view of a finished run's case (frames still present); `files` = (case file, pcapng) if written.
pub fn view_of_run(
    run: &CaseRun,
    files: Option<&(String, String)>,
) -> crate::report::view::CaseView {
    let trace = case_trace(&run.frames, run.drawing.start_ns, &run.drawing.link_events);
    let (violation, detail) = match &run.status {
        CaseStatus::Fail { violation } => {
            let mut shown = violation.clone();
            shown.context.clear();
            (Some(violation), shown.to_string())
        }
        CaseStatus::Pass { notes } => (None, notes.join("; ")),
        CaseStatus::Skip { reason } | CaseStatus::Invalid { reason } => (None, reason.clone()),
        CaseStatus::Error { message } => (None, message.clone()),
    };
    let meta = crate::report::view::CaseMeta {
        property: run.spec.property.clone(),
        suite: String::new(),
        index: run.spec.index,
        family: run.spec.family.name().to_string(),
        seed: run.spec.seed,
        description: run.description.clone(),
        status: run.status.label().to_string(),
        detail,
        pcap: files.map(|(_, p)| p.clone()),
        replay: files.map(|(c, _)| format!("netconform replay {c}")),
    };
    crate::report::view::CaseView::build(meta, &trace, violation, run.drawing.ops.as_deref())
}
