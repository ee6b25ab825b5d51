//! `netconform`: the command line.
//!
//! Exit codes, for every command: 0 everything selected passed (skips with their reasons allowed); 1 a
//! property failed (or a case was invalid or errored, a snapshot changed); 2 netconform could not run
//! (privileges, bad arguments, unreadable files, nothing runnable on this machine) — with one line saying
//! what is missing and how to fix it; 130 interrupted (SIGINT/SIGTERM), after partial reports.

mod bench;
mod check;
mod cli;
mod doctor;
mod grade;
mod snapshots;
mod sutcheck;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::main() {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("netconform: {e}");
            ExitCode::from(2)
        }
    }
}
