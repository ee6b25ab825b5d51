//! `netconform`: the command line.
//!
//! Exit codes: 0 everything passed; 1 a property failed (or a case was invalid, errored, or the run was
//! interrupted); 2 netconform could not run (privileges, bad arguments, unreadable files) — with one line
//! saying what is missing and how to fix it.

mod bench;
mod check;
mod cli;
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
