//! Yield points for background CPU work: a `query` or `compact` thread that has
//! run for `runtime.background_yield` since it last gave up its CPU calls
//! `sched_yield` at its next [`yield_point`], so a waiting `write`, `io` or WAL thread
//! runs now instead of at the next scheduler tick.
//!
//! Why (issue 24, `docs/benchmarks.md`): a write or WAL thread woken onto a CPU that
//! runs a `SCHED_IDLE` query or compaction thread usually preempts it within 0.1 ms.
//! But in `perf sched` traces of the interference benchmark's phase B, about one such
//! wakeup in 300 (one in 30 behind compaction) was not acted on: the woken thread sat
//! queued until the next timer tick (up to 4 ms at HZ=250), with the idle-class thread
//! still running in user space. `sched_yield` enters the scheduler explicitly, which
//! then picks the queued normal-class thread over the idle-class one. When nothing
//! waits, the call returns at once (about a microsecond).
//!
//! The work calls [`yield_point`] between batches: every operator boundary of a query
//! plan (`bulkhead_query::yielding`), and the merge and encode loops of flushes and
//! compactions. Threads of the other runtimes never yield: for them it is a no-op.
//! That includes `flush`, a normal-class runtime: its `sched_yield` could hand its CPU
//! to an idle-class thread for a whole scheduler slice (issue 24, session 18).

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

thread_local! {
    /// This thread's interval and its runtime's yield counter (`None`: it never yields).
    static POLICY: RefCell<Option<(Duration, Arc<AtomicU64>)>> = const { RefCell::new(None) };
    /// When this thread last gave up its CPU, if it yields at all.
    static SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Make the calling thread yield at its yield points every `interval` of running
/// (zero: never), counting its `sched_yield` calls in `count`.
pub(crate) fn enable_current_thread(interval: Duration, count: Arc<AtomicU64>) {
    if !interval.is_zero() {
        POLICY.set(Some((interval, count)));
        SINCE.set(Some(Instant::now()));
    }
}

/// The calling thread has just woken up (tokio unparked it): it gave up its CPU while
/// it slept, so its interval starts again.
pub(crate) fn restart_current_thread() {
    if SINCE.get().is_some() {
        SINCE.set(Some(Instant::now()));
    }
}

/// Offer the CPU to waiting threads if this thread has run for its interval. Cheap when
/// it has not (one clock read), and a no-op on threads that do not yield.
#[inline]
pub fn yield_point() {
    let Some(since) = SINCE.get() else {
        return;
    };
    let elapsed = since.elapsed();
    POLICY.with_borrow(|policy| {
        if let Some((interval, count)) = policy
            && elapsed >= *interval
        {
            os_yield();
            count.fetch_add(1, Ordering::Relaxed);
            SINCE.set(Some(Instant::now()));
        }
    });
}

/// The calling thread's yield interval (`None`: it never yields), for tests.
#[cfg(any(test, feature = "test-util"))]
pub fn current_thread_yield_interval() -> Option<Duration> {
    POLICY.with_borrow(|p| p.as_ref().map(|(interval, _)| *interval))
}

#[cfg(unix)]
fn os_yield() {
    // SAFETY: no arguments, no memory; it only asks the scheduler to run someone else.
    unsafe {
        libc::sched_yield();
    }
}

#[cfg(not(unix))]
fn os_yield() {
    std::thread::yield_now();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_enabled_threads_yield_and_only_after_their_interval() {
        std::thread::spawn(|| {
            let count = Arc::new(AtomicU64::new(0));
            yield_point();
            assert_eq!(current_thread_yield_interval(), None);

            enable_current_thread(Duration::from_secs(3600), Arc::clone(&count));
            yield_point();
            assert_eq!(count.load(Ordering::Relaxed), 0, "an hour has not passed");

            enable_current_thread(Duration::from_micros(100), Arc::clone(&count));
            std::thread::sleep(Duration::from_millis(1));
            yield_point();
            assert_eq!(count.load(Ordering::Relaxed), 1);
            // The interval restarted: an immediate second yield point does not yield.
            yield_point();
            assert_eq!(count.load(Ordering::Relaxed), 1);
            std::thread::sleep(Duration::from_millis(1));
            restart_current_thread();
            yield_point();
            assert_eq!(count.load(Ordering::Relaxed), 1, "waking up restarts it");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn zero_interval_leaves_the_thread_alone() {
        std::thread::spawn(|| {
            enable_current_thread(Duration::ZERO, Arc::default());
            restart_current_thread();
            yield_point();
            assert_eq!(current_thread_yield_interval(), None);
            assert!(SINCE.get().is_none());
        })
        .join()
        .unwrap();
    }
}
