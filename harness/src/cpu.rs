//! Which CPU the calling thread runs on, and pinning it there: a sender pinned to one CPU hands veth its
//! packets through one per-CPU backlog, in order (see the `udp` suite's module doc).
//!
//! Only the calling thread is ever affected; nothing here changes another thread's or the process's affinity.

use std::mem::{size_of, zeroed};

use crate::sock::Errno;

/// The CPU the calling thread is running on now (sched_getcpu(3)), or None if the kernel does not say.
pub fn current_cpu() -> Option<usize> {
    // SAFETY: sched_getcpu takes no arguments and only reads the calling thread's state.
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).ok()
}

/// Restricts the calling thread to CPU `cpu` (sched_setaffinity(2)). EINVAL for a CPU beyond the affinity
/// mask (CPU_SETSIZE, 1024) or one the thread may not use.
pub fn pin_current_thread_to_cpu(cpu: usize) -> Result<(), Errno> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(Errno::EINVAL);
    }
    // SAFETY: cpu_set_t is a plain bit array, for which all-zero (the empty set) is a valid value.
    let mut set: libc::cpu_set_t = unsafe { zeroed() };
    // SAFETY: cpu < CPU_SETSIZE (checked above), so the bit CPU_SET sets lies within `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a live cpu_set_t whose size is passed with it; pid 0 is the calling thread.
    let r = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if r < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_a_thread_to_the_cpu_it_runs_on() {
        std::thread::spawn(|| {
            let cpu = current_cpu().expect("sched_getcpu");
            pin_current_thread_to_cpu(cpu).expect("sched_setaffinity");
            assert_eq!(current_cpu(), Some(cpu));
            assert_eq!(
                pin_current_thread_to_cpu(libc::CPU_SETSIZE as usize),
                Err(Errno::EINVAL)
            );
        })
        .join()
        .expect("test thread");
    }
}
