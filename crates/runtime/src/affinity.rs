//! CPU affinity of the `flush` threads (`runtime.flush_affinity`, Linux).
//!
//! A flush encodes for hundreds of milliseconds at a time. Where it lands on the same
//! CPU as the `write` threads, which outrank it (nice -5), it waits for them, and the
//! kernel does not always move it to another CPU that runs only idle-class queries: in
//! phase B of `bench interference` on a 2-vCPU guest, 6.7 s of the 10 s of CPU0 went
//! to normal-class threads (writes, the flush, the load generator, `io`) while CPU1 ran
//! 6.7 s of `SCHED_IDLE` queries (`perf sched`, issue 24, `docs/benchmarks.md`). So the
//! flush threads get CPUs of their own choosing: the last ones the process may use,
//! where they still outrank every query and compaction, and the first CPUs (where
//! interrupts and the kernel's packing put most of the rest) are left to the writes.
//! A flush that falls behind (writers close to waiting for memory) may use every CPU
//! until it catches up ([`place_flush_thread`]).

/// Where a pinned `flush` thread may run: its own CPUs, or every CPU of the process
/// while the flush is behind (`place_flush_thread`).
struct FlushPlacement {
    own: Vec<usize>,
    all: Vec<usize>,
    spread: bool,
}

thread_local! {
    static FLUSH_PLACEMENT: std::cell::RefCell<Option<FlushPlacement>> =
        const { std::cell::RefCell::new(None) };
}

/// Pin the calling `flush` thread to `own` (at its start), remembering the CPUs it
/// could use before, for [`place_flush_thread`].
pub(crate) fn pin_flush_thread(own: &[usize]) -> std::io::Result<()> {
    let all = current_thread_cpus();
    pin_current_thread(own)?;
    FLUSH_PLACEMENT.with_borrow_mut(|p| {
        *p = Some(FlushPlacement {
            own: own.to_vec(),
            all,
            spread: false,
        })
    });
    Ok(())
}

/// Before a flush encodes on the calling thread: keep to the flush's own CPUs, or,
/// when `behind` (writers close to waiting for memory), use every CPU of the process,
/// so that a flush that cannot keep up on its own CPU is not also confined to it. A
/// no-op on threads that `runtime.flush_affinity` did not pin.
pub fn place_flush_thread(behind: bool) {
    FLUSH_PLACEMENT.with_borrow_mut(|p| {
        let Some(p) = p.as_mut() else { return };
        if p.spread == behind {
            return;
        }
        let cpus = if behind { &p.all } else { &p.own };
        match pin_current_thread(cpus) {
            Ok(()) => p.spread = behind,
            Err(error) => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(%error, ?cpus, "could not move a flush thread");
                });
            }
        }
    });
}

/// The CPUs the calling thread may run on (Linux: `sched_getaffinity`; elsewhere, or
/// on error, empty).
pub fn current_thread_cpus() -> Vec<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: an all-zero cpu_set_t is a valid empty set; the call fills it for the
        // calling thread (pid 0) and reads no more than its size.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
                return (0..libc::CPU_SETSIZE as usize)
                    .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
                    .collect();
            }
        }
    }
    Vec::new()
}

/// Restrict the calling thread to `cpus` (Linux; elsewhere a no-op).
pub(crate) fn pin_current_thread(cpus: &[usize]) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: as in `current_thread_cpus`; CPU_SET is only called with indexes
        // below CPU_SETSIZE.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for &cpu in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
                libc::CPU_SET(cpu, &mut set);
            }
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cpus;
    Ok(())
}

/// The CPUs `flush_threads` flush threads get out of `allowed` (the process's, in
/// order): the last `flush_threads` of them, leaving at least one to everything else;
/// `None` (no pinning) with fewer than two.
pub(crate) fn flush_cpus(allowed: &[usize], flush_threads: usize) -> Option<Vec<usize>> {
    if allowed.len() < 2 {
        return None;
    }
    let n = flush_threads.clamp(1, allowed.len() - 1);
    Some(allowed[allowed.len() - n..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_takes_the_last_cpus_and_leaves_at_least_one() {
        assert_eq!(flush_cpus(&[], 1), None);
        assert_eq!(flush_cpus(&[3], 1), None);
        assert_eq!(flush_cpus(&[0, 1], 1), Some(vec![1]));
        assert_eq!(flush_cpus(&[0, 1], 4), Some(vec![1]));
        assert_eq!(flush_cpus(&[2, 5, 7, 9], 2), Some(vec![7, 9]));
        assert_eq!(flush_cpus(&[0, 1, 2, 3, 4, 5, 6, 7], 0), Some(vec![7]));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_pinned_thread_runs_only_where_it_was_pinned() {
        let allowed = current_thread_cpus();
        assert!(!allowed.is_empty());
        let last = *allowed.last().unwrap();
        let seen = std::thread::spawn(move || {
            pin_current_thread(&[last]).unwrap();
            // SAFETY: sched_getcpu has no preconditions.
            let cpu = unsafe { libc::sched_getcpu() };
            (current_thread_cpus(), cpu)
        })
        .join()
        .unwrap();
        assert_eq!(seen, (vec![last], last as i32));
        // Other threads keep the process's set.
        assert_eq!(current_thread_cpus(), allowed);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_flush_thread_spreads_while_behind_and_returns_after() {
        let allowed = current_thread_cpus();
        let own = vec![*allowed.last().unwrap()];
        let expected = own.clone();
        let seen = std::thread::spawn(move || {
            pin_flush_thread(&expected).unwrap();
            let pinned = current_thread_cpus();
            place_flush_thread(true);
            let behind = current_thread_cpus();
            place_flush_thread(false);
            (pinned, behind, current_thread_cpus())
        })
        .join()
        .unwrap();
        assert_eq!(seen, (own.clone(), allowed.clone(), own));
        // Not a pinned flush thread: nothing changes.
        place_flush_thread(false);
        assert_eq!(current_thread_cpus(), allowed);
    }
}
