//! The harness's own failures, kept apart from findings.
//!
//! A [`HarnessError`] means netconform could not run or judge a case (setup, permissions, I/O, a timeout of
//! its own machinery). It is never a verdict on the system under test: findings are
//! [`crate::property::Violation`]s.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The process lacks a privilege or a kernel feature; `remedy` says how to run instead.
    #[error("{what} — {remedy}")]
    Privilege { what: String, remedy: String },
    /// A lab setup or teardown step failed.
    #[error("lab setup: {step}: {source}")]
    Lab {
        step: String,
        #[source]
        source: io::Error,
    },
    /// A socket about to connect or send is not in a lab namespace.
    #[error("containment: {0}")]
    Containment(String),
    /// A user `--exec` command failed.
    #[error("exec on host {host}: `{command}` {status}{stderr}")]
    Exec {
        host: &'static str,
        command: String,
        status: String,
        stderr: String,
    },
    /// A user `--sysctl` could not be applied.
    #[error("sysctl on host {host}: {key}={value}: {source}")]
    Sysctl {
        host: &'static str,
        key: String,
        value: String,
        #[source]
        source: io::Error,
    },
    /// Packet capture could not be set up or read.
    #[error("capture: {step}: {source}")]
    Capture {
        step: String,
        #[source]
        source: io::Error,
    },
    /// A socket operation failed in a way that is not an observation (bad arguments, harness bug).
    #[error("socket: {0}")]
    Socket(String),
    /// Bad user input (arguments, case file).
    #[error("{0}")]
    Usage(String),
    /// Reading or writing an output file.
    #[error("{path}: {source}")]
    Output {
        path: String,
        #[source]
        source: io::Error,
    },
    /// A host thread died or did not answer.
    #[error("host thread {0}")]
    HostThread(String),
    /// The system under test on b crashed, hung, broke the protocol or could not start. A crash mid-case
    /// is a finding about the SUT: the runner turns [`SutFailureKind::Crashed`] into a failed case
    /// ("SUT crashed"); every other kind is a case error.
    #[error("{0}")]
    Sut(SutFailure),
}

/// The last lines of a SUT's stderr as reports quote them: at most 20, each cut at 160 characters.
pub fn stderr_lines(tail: &str) -> Vec<String> {
    let lines: Vec<&str> = tail.trim_end().lines().collect();
    lines[lines.len().saturating_sub(20)..]
        .iter()
        .map(|l| {
            if l.chars().count() > 160 {
                let cut: String = l.chars().take(160).collect();
                format!("{cut}… ({} bytes)", l.len())
            } else {
                l.to_string()
            }
        })
        .collect()
}

/// What went wrong with a system under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SutFailure {
    pub kind: SutFailureKind,
    pub message: String,
    /// The tail of the SUT's stderr, when it ran.
    pub stderr_tail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SutFailureKind {
    /// The process exited or was killed by a signal mid-case.
    Crashed,
    /// No reply by a request's deadline, or the per-case wall-clock limit passed.
    Hung,
    /// A line that is not what `docs/driver-protocol.md` allows there; no hello.
    Protocol,
    /// The process could not be started (not found, not executable by the SUT's uid, sandbox setup).
    Start,
}

impl SutFailure {
    pub fn protocol(message: impl Into<String>) -> SutFailure {
        SutFailure {
            kind: SutFailureKind::Protocol,
            message: message.into(),
            stderr_tail: String::new(),
        }
    }
}

impl std::fmt::Display for SutFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if !self.stderr_tail.trim().is_empty() {
            write!(f, "\n  SUT stderr (tail):")?;
            for line in stderr_lines(&self.stderr_tail) {
                write!(f, "\n    {line}")?;
            }
        }
        Ok(())
    }
}

impl HarnessError {
    /// A SUT that could not be started (sandbox setup, program not found or not executable).
    pub fn sut_start(message: impl Into<String>) -> Self {
        HarnessError::Sut(SutFailure {
            kind: SutFailureKind::Start,
            message: message.into(),
            stderr_tail: String::new(),
        })
    }
    pub fn lab(step: impl Into<String>, source: io::Error) -> Self {
        HarnessError::Lab {
            step: step.into(),
            source,
        }
    }
    pub fn capture(step: impl Into<String>, source: io::Error) -> Self {
        HarnessError::Capture {
            step: step.into(),
            source,
        }
    }
    pub fn output(path: impl std::fmt::Display, source: io::Error) -> Self {
        HarnessError::Output {
            path: path.to_string(),
            source,
        }
    }
}

pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
