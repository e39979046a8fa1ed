//! OS scheduling of the runtimes' threads (Linux): lower priority for `query` and
//! `compact` (nice, or `SCHED_IDLE`), and a short EEVDF time slice for the latency-critical
//! ones (`io`, `write`, `flush`, the WAL thread), so that a write waking up preempts a
//! busy query thread at once instead of waiting for the end of its slice.

use std::time::Duration;

/// CPU time the calling thread has used (Linux: `CLOCK_THREAD_CPUTIME_ID`; elsewhere
/// zero). The difference of two readings around a synchronous piece of work is what it
/// cost in CPU, without the time the thread waited for one.
pub fn current_thread_cpu_time() -> Duration {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid out-pointer for the duration of the call.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
        }
    }
    Duration::ZERO
}

/// The OS priority given to a runtime's threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Priority {
    /// SCHED_OTHER with this nice value, asking the kernel for this time slice (zero:
    /// its default; see [`set_current_thread_latency_slice`]).
    Normal { nice: i32, slice: Duration },
    /// SCHED_IDLE: runs only when no other thread wants the CPU.
    Idle,
}

impl Priority {
    /// Apply to the calling thread.
    pub(crate) fn apply(self) {
        match self {
            Priority::Normal { nice, slice } => {
                if nice != 0 {
                    set_current_thread_nice(nice);
                }
                if !slice.is_zero() {
                    set_current_thread_latency_slice(slice);
                }
            }
            Priority::Idle => set_current_thread_sched_idle(),
        }
    }
}

/// Put the calling thread under `SCHED_IDLE` (Linux). A thread waking up on a CPU that
/// runs only idle-policy threads preempts them at once, and the kernel counts such a
/// CPU as idle when placing wakeups. Plain nice does not give that under EEVDF: a
/// waking write thread was seen queued 5 ms behind a nice-10 compaction thread.
#[cfg(target_os = "linux")]
pub fn set_current_thread_sched_idle() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a syscall on the calling thread (pid 0) with a valid, initialised param.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "could not set SCHED_IDLE");
    }
}

#[cfg(not(target_os = "linux"))]
pub fn set_current_thread_sched_idle() {
    tracing::debug!("SCHED_IDLE is only applied on Linux");
}

/// Whether the calling thread runs under `SCHED_IDLE` (Linux), for tests.
#[cfg(all(target_os = "linux", any(test, feature = "test-util")))]
pub fn current_thread_is_sched_idle() -> bool {
    // SAFETY: reads the calling thread's own policy.
    unsafe { libc::sched_getscheduler(0) == libc::SCHED_IDLE }
}

/// Lower (or raise) the OS priority of the calling thread. On Linux, `setpriority` with
/// a thread id applies to that thread only. Raising it (a negative nice) needs
/// `CAP_SYS_NICE` or an `RLIMIT_NICE` that allows it; without, the thread keeps nice 0
/// and one warning says so.
#[cfg(target_os = "linux")]
pub fn set_current_thread_nice(nice: i32) {
    // SAFETY: plain syscalls on the calling thread's own id; no memory is shared.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
    if rc == 0 {
        return;
    }
    let error = std::io::Error::last_os_error();
    if nice < 0 && error.kind() == std::io::ErrorKind::PermissionDenied {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(nice, %error, "could not raise the write path's thread priority: \
                it needs CAP_SYS_NICE (or LimitNICE= in a systemd unit); writes then \
                compete with flushes at equal priority (runtime.write_nice = 0 silences this)");
        });
    } else {
        tracing::warn!(nice, %error, "could not set thread priority");
    }
}

#[cfg(not(target_os = "linux"))]
pub fn set_current_thread_nice(nice: i32) {
    tracing::debug!(nice, "thread priorities are only applied on Linux");
}

/// The current OS nice value of the calling thread (Linux), for tests and diagnostics.
#[cfg(all(target_os = "linux", any(test, feature = "test-util")))]
pub fn current_thread_nice() -> i32 {
    // SAFETY: see `set_current_thread_nice`.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}

/// `struct sched_attr` of `sched_setattr(2)`, in its first published size (48 bytes).
#[cfg(target_os = "linux")]
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
}

/// Ask for a shorter EEVDF time slice for the calling thread (SCHED_OTHER, nice 0;
/// Linux ≥ 6.12 honours `sched_runtime` as the slice, clamped to 0.1–100 ms). With the
/// kernel's `PREEMPT_SHORT` behaviour, a waking thread whose slice is shorter than the
/// running thread's preempts it at once when eligible, instead of waiting up to a full
/// slice (0.75–3 ms) behind it. Older kernels ignore the field; a failure is logged once
/// per thread and changes nothing else.
#[cfg(target_os = "linux")]
pub fn set_current_thread_latency_slice(slice: Duration) {
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        sched_policy: libc::SCHED_OTHER as u32,
        sched_runtime: slice.as_nanos().min(u64::MAX as u128) as u64,
        ..SchedAttr::default()
    };
    // SAFETY: sched_setattr on the calling thread (pid 0) with a valid, initialised
    // struct whose `size` field tells the kernel how much of it to read.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if rc != 0 {
        tracing::warn!(
            ?slice,
            error = %std::io::Error::last_os_error(),
            "could not set the thread's time slice"
        );
    }
}

#[cfg(not(target_os = "linux"))]
pub fn set_current_thread_latency_slice(slice: Duration) {
    tracing::debug!(?slice, "time slices are only applied on Linux");
}

/// The calling thread's requested time slice (`sched_runtime`; Linux), for tests.
#[cfg(all(target_os = "linux", any(test, feature = "test-util")))]
pub fn current_thread_latency_slice() -> Option<Duration> {
    let mut attr = SchedAttr::default();
    let size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: sched_getattr fills at most `size` bytes of `attr`, which it points to.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut attr as *mut SchedAttr,
            size,
            0,
        )
    };
    (rc == 0).then(|| Duration::from_nanos(attr.sched_runtime))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_gets_the_slice_it_asks_for() {
        std::thread::spawn(|| {
            let before = current_thread_latency_slice().expect("sched_getattr");
            Priority::Normal {
                nice: 0,
                slice: Duration::from_micros(300),
            }
            .apply();
            let after = current_thread_latency_slice().expect("sched_getattr");
            // Kernels before 6.12 do not keep a slice for SCHED_OTHER.
            assert!(
                after == Duration::from_micros(300) || after == before,
                "{before:?} -> {after:?}"
            );
            assert_eq!(current_thread_nice(), 0);
            assert!(!current_thread_is_sched_idle());
        })
        .join()
        .unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn thread_cpu_time_counts_running_not_sleeping() {
        let start = current_thread_cpu_time();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut x = 0u64;
        while current_thread_cpu_time() - start < Duration::from_millis(5) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            assert!(
                std::time::Instant::now() < deadline,
                "CPU time never advanced"
            );
        }
        std::hint::black_box(x);
        let before = current_thread_cpu_time();
        std::thread::sleep(Duration::from_millis(100));
        let slept = current_thread_cpu_time() - before;
        assert!(
            slept < Duration::from_millis(50),
            "a sleep counted {slept:?} of CPU"
        );
    }
}
