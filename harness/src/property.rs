//! The property framework: what a property is, what a case is, and what a verdict says.
//!
//! A property is a generator of cases plus two functions kept apart on purpose: [`Property::execute`] drives
//! real sockets in a lab and records what the kernel answered (it never parses packets), and
//! [`Property::check`] judges those observations together with the captured [`Trace`] (it never touches a
//! socket). A check returns a [`Verdict`]; a finding is a [`Violation`] that names the frame(s), the field, the
//! expected and the actual value. A [`HarnessError`] (could not run) is never a verdict.

use std::fmt;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::HarnessError;
use crate::lab::{Lab, LabConfig};
pub use crate::link::LinkKind;
use crate::sock::Family;
use crate::trace::Trace;
pub use crate::verdict::{Findings, Verdict, Violation};

/// The random source of one case; seeded from (run seed, property id, case index).
pub type CaseRng = ChaCha8Rng;

/// Derives the seed of case `index` of `property` in a run seeded with `run_seed` (stable across versions).
pub fn case_seed(run_seed: u64, property: &str, index: u64) -> u64 {
    // FNV-1a over the id, then splitmix64 — simple, documented, and independent of std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in property.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = run_seed ^ h ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub fn case_rng(seed: u64) -> CaseRng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub use crate::backend::{Cap, KernelNeed, Needs, Subject, TimingBounds};

/// Static description of a property (listed by `netconform list`).
#[derive(Debug, Clone, Copy)]
pub struct PropertyInfo {
    /// Stable id, e.g. `tcp.rst.closed_port`; appears in reports and case files.
    pub id: &'static str,
    /// Suite, e.g. `tcp-lifecycle`.
    pub suite: &'static str,
    /// One line saying what holds.
    pub title: &'static str,
    /// Clauses checked, e.g. `RFC 9293 §3.10.7.1`.
    pub clauses: &'static [&'static str],
    /// Lab questions covered, e.g. `Q18`.
    pub questions: &'static [&'static str],
    /// The host whose behaviour the property judges.
    pub subject: Subject,
    pub needs: Needs,
}

/// What `execute` gets: the lab, plus the case's identity for diagnostics.
pub struct CaseEnv<'l> {
    pub lab: &'l Lab,
    pub family: Family,
    pub seed: u64,
    /// The timing the subject is held to (Linux constants for the kernel, RFC bounds otherwise).
    pub timing: TimingBounds,
}

/// A property, with its own case type and observation type.
pub trait Property: Send + Sync + 'static {
    /// A generated case: everything needed to re-run it (serialised into case files).
    type Case: Serialize + DeserializeOwned + Clone + fmt::Debug + Send + Sync + 'static;
    /// What the executor observed (socket outcomes), judged by `check` with the trace.
    type Observed: fmt::Debug + Send + 'static;

    fn info(&self) -> PropertyInfo;
    /// Makes a case from its seeded random source.
    fn generate(&self, rng: &mut CaseRng, family: Family) -> Self::Case;
    /// Lab settings the case itself requires (sysctls it varies), added after the user's.
    fn lab_config(&self, _case: &Self::Case) -> LabConfig {
        LabConfig::default()
    }
    /// One line describing the case for reports.
    fn describe(&self, case: &Self::Case) -> String;
    /// Runs the case on real sockets in the lab.
    fn execute(&self, case: &Self::Case, env: &CaseEnv) -> Result<Self::Observed, HarnessError>;
    /// How long to keep capturing after `execute` returns, for answers still in flight.
    fn settle(&self, _case: &Self::Case) -> std::time::Duration {
        std::time::Duration::from_millis(10)
    }
    /// Smaller variants of a failing case, most promising first (empty: the property does not shrink).
    /// Every candidate must be a valid case: ops on missing sockets are no-ops, so removing ops is safe.
    fn shrink(&self, _case: &Self::Case) -> Vec<Self::Case> {
        Vec::new()
    }
    /// The size shrinking minimises (e.g. the number of ops), for reports.
    fn size(&self, _case: &Self::Case) -> Option<usize> {
        None
    }
    /// Judges the case.
    fn check(&self, case: &Self::Case, observed: &Self::Observed, trace: &Trace) -> Verdict;
}
