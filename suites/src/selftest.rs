//! Properties that test the harness itself, hidden unless the environment has `NETCONFORM_SELFTEST=1`.
//!
//! They let integration tests prove that a panic inside a property, or a SIGKILL of the whole process while
//! labs are live, leaves nothing behind on the host. They never appear in `list` or default runs.

use std::net::SocketAddr;
use std::time::Duration;

use harness::frame::Host;
use harness::property::{
    CaseEnv, CaseRng, KernelNeed, LinkKind, Needs, Property, PropertyInfo, Subject, Verdict,
};
use harness::runner::DynProperty;
use harness::sock::{Family, Socket};
use harness::trace::Trace;
use harness::HarnessError;
use serde::{Deserialize, Serialize};

pub fn enabled() -> bool {
    std::env::var("NETCONFORM_SELFTEST").is_ok_and(|v| v == "1")
}

pub fn all() -> Vec<&'static dyn DynProperty> {
    vec![&PanicInProperty, &HangInProperty]
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoCase {}

/// Opens a listening socket and a connection in the lab, then panics inside `execute`.
pub struct PanicInProperty;

/// Opens a listening socket and a connection in the lab, prints `selftest: labs live`, then sleeps 60 s.
pub struct HangInProperty;

fn open_connection(env: &CaseEnv) -> Result<(), HarnessError> {
    let family = env.family;
    let b = SocketAddr::new(env.lab.addr(Host::B, family), 7);
    let listener = env
        .lab
        .host(Host::B)
        .run(move || -> Result<Socket, HarnessError> {
            let l = Socket::tcp(family)?;
            l.bind(b)
                .map_err(|e| harness::sock::socket_step("bind", e))?;
            l.listen(8)
                .map_err(|e| harness::sock::socket_step("listen", e))?;
            Ok(l)
        })??;
    let client = env
        .lab
        .host(Host::A)
        .run(move || -> Result<Socket, HarnessError> {
            let c = Socket::tcp(family)?;
            c.connect_timeout(b, Duration::from_secs(2))?;
            Ok(c)
        })??;
    // Leak both into the host threads' lifetime on purpose: teardown must still free everything.
    std::mem::forget(listener);
    std::mem::forget(client);
    Ok(())
}

fn info(id: &'static str, title: &'static str) -> PropertyInfo {
    PropertyInfo {
        id,
        suite: "selftest",
        title,
        clauses: &[],
        questions: &[],
        subject: Subject::B,
        needs: Needs {
            links: &[LinkKind::Veth],
            kernel: &[KernelNeed::Sockets],
            caps: &[],
            ethernet: false,
        },
    }
}

impl Property for PanicInProperty {
    type Case = NoCase;
    type Observed = ();
    fn info(&self) -> PropertyInfo {
        info("selftest.panic", "panics inside execute with live sockets")
    }
    fn generate(&self, _rng: &mut CaseRng, _family: Family) -> NoCase {
        NoCase {}
    }
    fn describe(&self, _case: &NoCase) -> String {
        "panic with a live connection".into()
    }
    fn execute(&self, _case: &NoCase, env: &CaseEnv) -> Result<(), HarnessError> {
        open_connection(env)?;
        panic!("selftest: deliberate panic inside a property");
    }
    fn check(&self, _case: &NoCase, _observed: &(), _trace: &Trace) -> Verdict {
        Verdict::pass()
    }
}

impl Property for HangInProperty {
    type Case = NoCase;
    type Observed = ();
    fn info(&self) -> PropertyInfo {
        info("selftest.hang", "sleeps with live labs (to be killed)")
    }
    fn generate(&self, _rng: &mut CaseRng, _family: Family) -> NoCase {
        NoCase {}
    }
    fn describe(&self, _case: &NoCase) -> String {
        "sleep 60 s with a live connection".into()
    }
    fn execute(&self, _case: &NoCase, env: &CaseEnv) -> Result<(), HarnessError> {
        open_connection(env)?;
        eprintln!("selftest: labs live");
        std::thread::sleep(Duration::from_secs(60));
        Ok(())
    }
    fn check(&self, _case: &NoCase, _observed: &(), _trace: &Trace) -> Verdict {
        Verdict::pass()
    }
}
