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
    /// A system under test could not be started or ended (program not reachable by its uid, a namespace,
    /// mount or credential step of the sandbox); the message names the step and the remedy.
    #[error("{0}")]
    Sut(String),
    /// A host thread died or did not answer.
    #[error("host thread {0}")]
    HostThread(String),
}

impl HarnessError {
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
