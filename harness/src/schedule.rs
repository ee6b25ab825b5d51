//! How many cases run at once: concurrency by what a case waits for.
//!
//! Most of a case's wall time is spent waiting — on kernel timers (delayed ACK 40 ms, zero-window probes from
//! 200 ms, RTO 200 ms), on relay delays, on read/accept deadlines — while the CPU is idle. A fixed number of
//! concurrent cases either wastes that idle time (too few) or, for CPU-bound work, oversubscribes the cores
//! and makes timing checks lie (too many). Two mechanisms share the work:
//!
//! - [`CpuGate`]: the CPU-bound phases of a case (building the lab, building the trace and checking it) hold
//!   one of `cores` slots, so they never pile up beyond the machine (more than two labs built at once add
//!   nothing on two cores: `docs/kernel-facts.md`). Waiting phases hold no slot.
//! - [`Admission`]: a new case starts while fewer than `floor` cases run, or — up to `cap` (`--jobs`) — while
//!   the machine's CPUs were less than [`BUSY_TARGET`] busy over the last [`SAMPLE_EVERY`]. Busy time is read
//!   from `/proc/stat` for the whole machine, kernel work included (namespace teardown runs in kernel workers,
//!   not in this process), so a machine loaded by something else admits fewer cases, which keeps timer
//!   measurements honest under load; niced work yields to us and counts as room.
//!
//! The same `--seed` gives the same cases whatever the concurrency: only their timing changes.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Above this fraction of busy CPU time no case is admitted beyond the floor.
pub const BUSY_TARGET: f64 = 0.85;
/// How often the machine's CPU time is sampled for admission.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// Least spacing between two admissions above the floor: the CPU sample must see the last one start.
const ADMIT_SPACING: Duration = Duration::from_millis(5);

/// The number of CPUs this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Slots for CPU-bound phases; at most `slots` holders at once.
pub struct CpuGate {
    free: Mutex<usize>,
    cv: Condvar,
}

impl CpuGate {
    pub fn new(slots: usize) -> CpuGate {
        CpuGate {
            free: Mutex::new(slots.max(1)),
            cv: Condvar::new(),
        }
    }

    /// A gate that never blocks (a case run alone: replay, snapshots, tests).
    pub fn unlimited() -> CpuGate {
        CpuGate::new(usize::MAX / 2)
    }

    /// Waits for a slot; it is given back when the returned guard is dropped.
    pub fn acquire(&self) -> CpuSlot<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.cv.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        CpuSlot { gate: self }
    }

    fn release(&self) {
        *self.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.cv.notify_one();
    }
}

/// A held CPU slot.
pub struct CpuSlot<'g> {
    gate: &'g CpuGate,
}

impl Drop for CpuSlot<'_> {
    fn drop(&mut self) {
        self.gate.release();
    }
}

/// Machine-wide CPU time from `/proc/stat`: (busy, total) in clock ticks.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user). Niced work (a
    // background `nice cargo build`) yields the CPU to cases, so it counts as room, like idle time.
    if v.len() < 8 {
        return None;
    }
    let total: u64 = v[..8].iter().sum();
    let room = v[1] + v[3] + v[4];
    Some((total - room, total))
}

struct AdmissionState {
    running: usize,
    last_admit: Instant,
    /// The previous CPU sample: when, and the tick counters then.
    sample_at: Instant,
    sample: Option<(u64, u64)>,
    busy: f64,
    /// The most cases seen running at once (for reports).
    peak: usize,
}

/// Decides when the next case may start.
pub struct Admission {
    floor: usize,
    cap: usize,
    state: Mutex<AdmissionState>,
    cv: Condvar,
}

impl Admission {
    /// `floor` cases always run (if there are that many); up to `cap` while the CPUs have room.
    pub fn new(floor: usize, cap: usize) -> Admission {
        let cap = cap.max(1);
        Admission {
            floor: floor.clamp(1, cap),
            cap,
            state: Mutex::new(AdmissionState {
                running: 0,
                last_admit: Instant::now(),
                sample_at: Instant::now(),
                sample: cpu_ticks(),
                busy: 0.0,
                peak: 0,
            }),
            cv: Condvar::new(),
        }
    }

    /// The default floor for this machine: four cases per core, the fixed concurrency that ran without false
    /// failures under load before admission existed (8 on 2 cores).
    pub fn default_floor() -> usize {
        4 * cores()
    }

    /// Blocks until a new case may start, then counts it as running. Returns false when `stop` says so.
    pub fn enter(&self, stop: &dyn Fn() -> bool) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if stop() {
                return false;
            }
            let now = Instant::now();
            if now.duration_since(st.sample_at) >= SAMPLE_EVERY {
                let ticks = cpu_ticks();
                if let (Some((b0, t0)), Some((b1, t1))) = (st.sample, ticks) {
                    if t1 > t0 {
                        st.busy = (b1 - b0) as f64 / (t1 - t0) as f64;
                    }
                }
                st.sample = ticks;
                st.sample_at = now;
            }
            let room = st.running < self.floor
                || (st.running < self.cap
                    && st.busy < BUSY_TARGET
                    && now.duration_since(st.last_admit) >= ADMIT_SPACING);
            if room {
                st.running += 1;
                st.peak = st.peak.max(st.running);
                st.last_admit = now;
                return true;
            }
            st = self
                .cv
                .wait_timeout(st, ADMIT_SPACING)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// A case finished.
    pub fn leave(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.running = st.running.saturating_sub(1);
        self.cv.notify_one();
    }

    /// The most cases that ran at once so far.
    pub fn peak(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).peak
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn the_gate_never_lets_more_than_its_slots_in() {
        let gate = Arc::new(CpuGate::new(2));
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (gate, inside, most) = (gate.clone(), inside.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let _slot = gate.acquire();
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn admission_always_admits_up_to_the_floor_and_never_beyond_the_cap() {
        let adm = Admission::new(3, 3);
        for _ in 0..3 {
            assert!(adm.enter(&|| false));
        }
        assert_eq!(adm.peak(), 3);
        // At the cap, only a stop request ends the wait.
        assert!(!adm.enter(&|| true));
        adm.leave();
        assert!(adm.enter(&|| false));
        assert_eq!(adm.peak(), 3);
    }

    #[test]
    fn cpu_ticks_reads_proc_stat() {
        let (busy, total) = cpu_ticks().expect("/proc/stat has a cpu line");
        assert!(busy <= total && total > 0);
    }
}
