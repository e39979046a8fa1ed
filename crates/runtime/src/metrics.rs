//! Per-runtime counters: slow polls, stalls, busy ratio, and the snapshot served at
//! `/metrics` and `/debug/bulkheads`.
//!
//! Tokio's stable metrics give workers, alive tasks, global queue depth and per-worker
//! busy time. Poll durations are not stable in tokio, so Bulkhead measures them itself:
//! every task spawned through [`crate::Runtimes`] is wrapped in [`Instrumented`], which
//! times each `poll` and publishes "a poll started at T on worker slot N" so that the
//! watchdog can see a worker stuck inside one poll while it is still stuck.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::sync::Mutex;
use serde::Serialize;

use crate::config::RuntimeName;

/// Nanoseconds since process start, never 0 (0 means "not set" in the slots).
pub(crate) fn now_nanos() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    start.elapsed().as_nanos() as u64 + 1
}

/// One worker (or blocking) thread of a runtime, as seen by the watchdog.
#[derive(Debug, Default)]
pub(crate) struct ThreadSlot {
    /// `now_nanos()` when the current instrumented poll began, 0 when not polling.
    pub(crate) poll_started: AtomicU64,
    pub(crate) thread_name: Mutex<String>,
    /// The kernel's id of the thread (Linux; 0 elsewhere), for its `schedstat`.
    pub(crate) tid: u32,
}

/// The calling thread's kernel id (Linux `gettid`; 0 elsewhere).
fn current_tid() -> u32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid takes no arguments and cannot fail.
        unsafe { libc::gettid() as u32 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// Nanoseconds thread `tid` of this process has run, and has waited runnable for a
/// CPU (`/proc/self/task/<tid>/schedstat`; zeros where it cannot be read).
fn thread_cpu_nanos(tid: u32) -> (u64, u64) {
    if tid == 0 {
        return (0, 0);
    }
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| parse_schedstat(&s))
        .map_or((0, 0), |(run, wait, _)| (run, wait))
}

/// A thread's `/proc/.../schedstat`: nanoseconds on a CPU, nanoseconds runnable but
/// waiting for one, and the times it was put on a CPU.
pub fn parse_schedstat(s: &str) -> Option<(u64, u64, u64)> {
    let mut f = s.split_whitespace().map(|x| x.parse::<u64>().ok());
    Some((f.next()??, f.next()??, f.next()??))
}

/// Counters of one tokio runtime (one per name in isolated mode, one in shared mode).
#[derive(Debug)]
pub(crate) struct RuntimeStats {
    pub(crate) label: String,
    pub(crate) names: Vec<RuntimeName>,
    pub(crate) slow_poll_threshold: Duration,
    pub(crate) slow_polls: AtomicU64,
    pub(crate) polls: AtomicU64,
    pub(crate) stalls: AtomicU64,
    pub(crate) max_stall_nanos: AtomicU64,
    /// `sched_yield` calls at yield points by this runtime's threads (`cpu_yield`).
    pub(crate) cpu_yields: Arc<AtomicU64>,
    /// Busy ratio over the last watchdog window, as `f64::to_bits`.
    pub(crate) busy_ratio_bits: AtomicU64,
    pub(crate) slots: Mutex<Vec<Arc<ThreadSlot>>>,
    /// CPU time and run-queue wait of threads that have exited (blocking threads come
    /// and go), nanoseconds.
    retired_cpu_nanos: AtomicU64,
    retired_cpu_wait_nanos: AtomicU64,
}

impl RuntimeStats {
    pub(crate) fn new(
        label: String,
        names: Vec<RuntimeName>,
        slow_poll_threshold: Duration,
    ) -> Self {
        Self {
            label,
            names,
            slow_poll_threshold,
            slow_polls: AtomicU64::new(0),
            polls: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            cpu_yields: Arc::default(),
            max_stall_nanos: AtomicU64::new(0),
            busy_ratio_bits: AtomicU64::new(0f64.to_bits()),
            slots: Mutex::new(Vec::new()),
            retired_cpu_nanos: AtomicU64::new(0),
            retired_cpu_wait_nanos: AtomicU64::new(0),
        }
    }

    /// Called on every new thread of the runtime (from `on_thread_start`).
    pub(crate) fn register_current_thread(self: &Arc<Self>) {
        let slot = Arc::new(ThreadSlot {
            tid: current_tid(),
            ..ThreadSlot::default()
        });
        *slot.thread_name.lock() = std::thread::current().name().unwrap_or("?").to_string();
        self.slots.lock().push(Arc::clone(&slot));
        CURRENT.with(|c| {
            *c.borrow_mut() = Some(ThreadCtx {
                stats: Arc::clone(self),
                slot,
            })
        });
    }

    /// Called when a runtime thread exits (from `on_thread_stop`): blocking-pool threads
    /// come and go, so their slots must not pile up.
    pub(crate) fn unregister_current_thread() {
        if let Some(ctx) = CURRENT.with(|c| c.borrow_mut().take()) {
            let (cpu, wait) = thread_cpu_nanos(ctx.slot.tid);
            ctx.stats
                .retired_cpu_nanos
                .fetch_add(cpu, Ordering::Relaxed);
            ctx.stats
                .retired_cpu_wait_nanos
                .fetch_add(wait, Ordering::Relaxed);
            ctx.stats
                .slots
                .lock()
                .retain(|s| !Arc::ptr_eq(s, &ctx.slot));
        }
    }

    pub(crate) fn record_stall(&self, how_long: Duration) {
        self.stalls.fetch_add(1, Ordering::Relaxed);
        self.max_stall_nanos
            .fetch_max(how_long.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Nanoseconds this runtime's threads, live and exited, have run and have waited
    /// runnable for a CPU (Linux schedstat; zeros elsewhere).
    pub(crate) fn cpu_nanos(&self) -> (u64, u64) {
        let tids: Vec<u32> = self.slots.lock().iter().map(|s| s.tid).collect();
        tids.into_iter().map(thread_cpu_nanos).fold(
            (
                self.retired_cpu_nanos.load(Ordering::Relaxed),
                self.retired_cpu_wait_nanos.load(Ordering::Relaxed),
            ),
            |(c, w), (c2, w2)| (c + c2, w + w2),
        )
    }

    pub(crate) fn busy_ratio(&self) -> f64 {
        f64::from_bits(self.busy_ratio_bits.load(Ordering::Relaxed))
    }
}

struct ThreadCtx {
    stats: Arc<RuntimeStats>,
    slot: Arc<ThreadSlot>,
}

thread_local! {
    static CURRENT: RefCell<Option<ThreadCtx>> = const { RefCell::new(None) };
}

/// A future whose every `poll` is timed and visible to the watchdog.
pub struct Instrumented<F> {
    inner: Pin<Box<F>>,
}

impl<F> Instrumented<F> {
    pub(crate) fn new(inner: F) -> Self {
        Self {
            inner: Box::pin(inner),
        }
    }
}

impl<F: Future> Future for Instrumented<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let inner = self.inner.as_mut();
        CURRENT.with(|c| {
            let guard = c.borrow();
            match guard.as_ref() {
                None => inner.poll(cx),
                Some(ctx) => timed_poll(ctx, inner, cx),
            }
        })
    }
}

fn timed_poll<F: Future>(
    ctx: &ThreadCtx,
    inner: Pin<&mut F>,
    cx: &mut Context<'_>,
) -> Poll<F::Output> {
    // Nested instrumented polls (a future awaiting another) are timed once, by the
    // outermost poll.
    let outer = ctx.slot.poll_started.load(Ordering::Relaxed) == 0;
    let start = now_nanos();
    if outer {
        ctx.slot.poll_started.store(start, Ordering::Relaxed);
    }
    let out = inner.poll(cx);
    if outer {
        ctx.slot.poll_started.store(0, Ordering::Relaxed);
        let took = Duration::from_nanos(now_nanos() - start);
        ctx.stats.polls.fetch_add(1, Ordering::Relaxed);
        if took > ctx.stats.slow_poll_threshold {
            ctx.stats.slow_polls.fetch_add(1, Ordering::Relaxed);
        }
    }
    out
}

/// Whether the calling thread is one of the runtime's with these `stats`.
pub(crate) fn current_thread_is(stats: &Arc<RuntimeStats>) -> bool {
    CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .is_some_and(|ctx| Arc::ptr_eq(&ctx.stats, stats))
    })
}

/// The name of the runtime whose thread is running this code, if any (for tests and logs).
pub fn current_runtime_label() -> Option<String> {
    CURRENT.with(|c| c.borrow().as_ref().map(|ctx| ctx.stats.label.clone()))
}

/// A point-in-time view of one runtime, served at `/metrics` and `/debug/bulkheads`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RuntimeSnapshot {
    /// `io`, `write`, ... in isolated mode; `shared` in shared mode.
    pub runtime: String,
    /// The bulkhead names this runtime serves.
    pub serves: Vec<RuntimeName>,
    pub workers: usize,
    pub alive_tasks: usize,
    /// Tasks waiting in the global (injection) queue.
    pub queued_tasks: usize,
    /// Fraction of worker time spent running tasks over the last watchdog window (0..=1).
    pub busy_ratio: f64,
    pub polls: u64,
    pub slow_polls: u64,
    pub slow_poll_threshold_ms: f64,
    pub stalls: u64,
    pub max_stall_ms: f64,
    /// Times a thread of this runtime offered its CPU at a yield point
    /// (`runtime.background_yield`; always 0 for `io`, `write` and `flush`).
    pub cpu_yields: u64,
    /// CPU time of the runtime's threads, seconds (Linux; 0 elsewhere).
    pub cpu_seconds: f64,
    /// Time the runtime's threads were runnable but waiting for a CPU, seconds (Linux
    /// schedstat; 0 elsewhere): how much other work on the machine delayed this
    /// bulkhead. Writes that wait here are what the priorities and placement of
    /// `[runtime]` are for.
    pub cpu_wait_seconds: f64,
}

/// Name, type, help and getter of one exported metric.
type Metric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&RuntimeSnapshot) -> f64,
);

/// All runtimes at one instant.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BulkheadsSnapshot {
    pub mode: crate::config::RuntimeMode,
    pub watchdog_threshold_ms: f64,
    pub runtimes: Vec<RuntimeSnapshot>,
    /// The last few stalls, oldest first.
    pub recent_stalls: Vec<crate::watchdog::StallEvent>,
}

impl BulkheadsSnapshot {
    /// Stall count of the runtime serving `name`.
    pub fn stalls(&self, name: RuntimeName) -> u64 {
        self.runtimes
            .iter()
            .find(|r| r.serves.contains(&name))
            .map(|r| r.stalls)
            .unwrap_or(0)
    }

    /// Prometheus text exposition of these metrics (no trailing `# EOF`).
    pub fn to_prometheus(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let metrics: [Metric; 11] = [
            (
                "bulkhead_runtime_workers",
                "gauge",
                "Worker threads of the runtime.",
                |r| r.workers as f64,
            ),
            (
                "bulkhead_runtime_alive_tasks",
                "gauge",
                "Tasks alive on the runtime.",
                |r| r.alive_tasks as f64,
            ),
            (
                "bulkhead_runtime_queued_tasks",
                "gauge",
                "Tasks waiting in the runtime's global queue.",
                |r| r.queued_tasks as f64,
            ),
            (
                "bulkhead_runtime_busy_ratio",
                "gauge",
                "Fraction of worker time spent running tasks.",
                |r| r.busy_ratio,
            ),
            (
                "bulkhead_runtime_polls_total",
                "counter",
                "Instrumented task polls.",
                |r| r.polls as f64,
            ),
            (
                "bulkhead_runtime_slow_polls_total",
                "counter",
                "Instrumented polls longer than the slow-poll threshold.",
                |r| r.slow_polls as f64,
            ),
            (
                "bulkhead_runtime_stalls_total",
                "counter",
                "Times the watchdog found the runtime unresponsive.",
                |r| r.stalls as f64,
            ),
            (
                "bulkhead_runtime_max_stall_seconds",
                "gauge",
                "Longest stall seen by the watchdog.",
                |r| r.max_stall_ms / 1000.0,
            ),
            (
                "bulkhead_runtime_cpu_yields_total",
                "counter",
                "Times a thread offered its CPU to waiting threads (runtime.background_yield).",
                |r| r.cpu_yields as f64,
            ),
            (
                "bulkhead_runtime_cpu_seconds_total",
                "counter",
                "CPU time of the runtime's threads (Linux).",
                |r| r.cpu_seconds,
            ),
            (
                "bulkhead_runtime_cpu_wait_seconds_total",
                "counter",
                "Time the runtime's threads were runnable but waiting for a CPU (Linux schedstat).",
                |r| r.cpu_wait_seconds,
            ),
        ];
        for (name, kind, help, get) in metrics {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for r in &self.runtimes {
                let _ = writeln!(out, "{name}{{runtime=\"{}\"}} {}", r.runtime, get(r));
            }
        }
        out
    }
}
