//! What a check concludes: a [`Verdict`] per case, and the [`Violation`] that makes a failure — the clause, the
//! frame(s), the field, what was expected and what was seen. [`Findings`] collects several during one check.
//! A violation is a finding about the system under test; a harness that could not run says so with a
//! [`crate::HarnessError`] instead, never with a verdict.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A finding: the system under test did something a clause forbids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The clause broken.
    pub clause: String,
    /// What is wrong, in one sentence.
    pub summary: String,
    /// Frame numbers (1-based, as in Wireshark) the finding is about.
    pub frames: Vec<usize>,
    /// The field, e.g. `ack`, `flags`, `connect()`.
    pub field: Option<String>,
    pub expected: Option<String>,
    pub actual: Option<String>,
    /// Canonical lines around the frames (filled in by the runner from the trace).
    #[serde(default)]
    pub context: Vec<String>,
}

impl Violation {
    pub fn new(clause: impl Into<String>, summary: impl Into<String>) -> Self {
        Violation {
            clause: clause.into(),
            summary: summary.into(),
            frames: Vec::new(),
            field: None,
            expected: None,
            actual: None,
            context: Vec::new(),
        }
    }
    pub fn frame(mut self, number: usize) -> Self {
        self.frames.push(number);
        self
    }
    pub fn frames(mut self, numbers: impl IntoIterator<Item = usize>) -> Self {
        self.frames.extend(numbers);
        self
    }
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
    pub fn expected(mut self, v: impl fmt::Display) -> Self {
        self.expected = Some(v.to_string());
        self
    }
    pub fn actual(mut self, v: impl fmt::Display) -> Self {
        self.actual = Some(v.to_string());
        self
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.summary, self.clause)?;
        if !self.frames.is_empty() {
            let frames: Vec<String> = self.frames.iter().map(|n| format!("#{n}")).collect();
            write!(f, "\n    frame(s): {}", frames.join(", "))?;
        }
        if let Some(field) = &self.field {
            write!(f, "\n    field:    {field}")?;
        }
        if let Some(e) = &self.expected {
            write!(f, "\n    expected: {e}")?;
        }
        if let Some(a) = &self.actual {
            write!(f, "\n    actual:   {a}")?;
        }
        if !self.context.is_empty() {
            write!(f, "\n    trace:")?;
            for line in &self.context {
                write!(f, "\n      {line}")?;
            }
        }
        Ok(())
    }
}

/// The judgement of one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Verdict {
    /// Everything checked held. `notes` are annotations (e.g. which close shape was seen), never findings.
    Pass {
        notes: Vec<String>,
    },
    Fail {
        violation: Violation,
    },
    /// The case could not run here (missing capability, unsupported combination); says why.
    Skip {
        reason: String,
    },
    /// The case ran but its evidence is unusable (e.g. the capture dropped frames): neither pass nor fail.
    Invalid {
        reason: String,
    },
}

impl Verdict {
    pub fn pass() -> Self {
        Verdict::Pass { notes: Vec::new() }
    }
    pub fn fail(v: Violation) -> Self {
        Verdict::Fail { violation: v }
    }
}

/// Collects several violations during a check and returns the first (others are attached as context).
#[derive(Debug, Default)]
pub struct Findings {
    violations: Vec<Violation>,
    pub notes: Vec<String>,
}

impl Findings {
    pub fn push(&mut self, v: Violation) {
        self.violations.push(v);
    }
    pub fn check(&mut self, ok: bool, v: impl FnOnce() -> Violation) {
        if !ok {
            self.violations.push(v());
        }
    }
    pub fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }
    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }
    /// Appends `later`'s violations and notes after this one's (the first violation leads the verdict).
    pub fn append(&mut self, later: Findings) {
        self.violations.extend(later.violations);
        self.notes.extend(later.notes);
    }
    pub fn verdict(self) -> Verdict {
        let mut violations = self.violations.into_iter();
        match violations.next() {
            None => Verdict::Pass { notes: self.notes },
            Some(mut first) => {
                let more: Vec<String> = violations.map(|v| v.summary).collect();
                if !more.is_empty() {
                    first.summary = format!(
                        "{} (and {} more: {})",
                        first.summary,
                        more.len(),
                        more.join("; ")
                    );
                }
                Verdict::Fail { violation: first }
            }
        }
    }
}
