//! Prepared hosts: pairs of host threads already inside fresh namespaces with the lab defaults written, made
//! ahead of time by one background thread so that building a lab starts at its link.
//!
//! Creating the two namespaces is the largest step of a lab (≈0.9 ms of the ≈1.9 ms setup measured on two
//! cores, serialised in the kernel by the RTNL that each new loopback device takes; `docs/kernel-facts.md`,
//! "Building and tearing down a lab"). A run's cases spend most of their time waiting on kernel timers, so
//! making the next pair while a case waits takes that step off the case's path.
//!
//! Isolation is the same as building on demand: a pair is handed out once and never returned; it was made by
//! [`Hosts::spawn`] (the one way hosts are made) and nothing has run in it since. Only its age differs, and
//! nothing a lab judges depends on a namespace's age: its first interface is created after it is taken.
//! When making a pair fails (no privileges, a broken kernel), the pool stops and every later lab builds its
//! hosts on demand, which reports the error where it belongs. Pairs left when the process ends vanish with it
//! (anonymous namespaces held by its threads; `crate::lab::worker`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, Once};

use crate::error::Result;
use crate::lab::hosts::Hosts;

/// Pairs kept ready. One is enough for labs built one after another; more would only hold namespaces idle
/// while many cases at once drain the pool faster than one thread fills it (they then build on demand).
const DEPTH: usize = 2;

struct Pool {
    ready: Mutex<Vec<Hosts>>,
    /// Signalled when a pair is taken (the filler may make another).
    taken: Condvar,
}

static POOL: Pool = Pool {
    ready: Mutex::new(Vec::new()),
    taken: Condvar::new(),
};
static FILLER: Once = Once::new();
/// Whether [`take`] uses prepared pairs (`netconform bench` measures both ways).
static PREPARE: AtomicBool = AtomicBool::new(true);

/// Prepared pairs handed out so far (tests check that labs really come from the pool).
static SERVED: AtomicU64 = AtomicU64::new(0);

/// How many labs got a prepared pair so far in this process.
pub fn served() -> u64 {
    SERVED.load(Ordering::Relaxed)
}

/// Turns the use of prepared pairs on or off for the labs built from now on (pairs already made stay ready).
pub fn prepare_ahead(on: bool) {
    PREPARE.store(on, Ordering::Relaxed);
}

/// Hosts for a new lab: a prepared pair if one is ready, else a pair made now. The first call starts the
/// filler thread (a process that never builds a lab never starts it).
pub fn take() -> Result<Hosts> {
    FILLER.call_once(|| {
        // Without the filler every lab builds its hosts on demand, as before it existed.
        let _ = std::thread::Builder::new()
            .name("lab-pool".into())
            .spawn(fill);
    });
    if !PREPARE.load(Ordering::Relaxed) {
        return Hosts::spawn();
    }
    let prepared = POOL.ready.lock().unwrap().pop();
    POOL.taken.notify_one();
    match prepared {
        Some(hosts) => {
            SERVED.fetch_add(1, Ordering::Relaxed);
            Ok(hosts)
        }
        None => Hosts::spawn(),
    }
}

/// The filler: keeps [`DEPTH`] pairs ready for the life of the process; stops at the first pair it cannot make.
fn fill() {
    loop {
        {
            let mut ready = POOL.ready.lock().unwrap();
            while ready.len() >= DEPTH {
                ready = POOL.taken.wait(ready).unwrap();
            }
        }
        match Hosts::spawn() {
            Ok(hosts) => POOL.ready.lock().unwrap().push(hosts),
            Err(_) => return,
        }
    }
}
