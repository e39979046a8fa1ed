//! Building the named tokio runtimes once, and spawning work onto them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

use crate::config::{RuntimeConfig, RuntimeMode, RuntimeName};
use crate::metrics::{BulkheadsSnapshot, Instrumented, RuntimeSnapshot, RuntimeStats};
use crate::priority::Priority;
use crate::watchdog::Watchdog;

/// Errors from running work on a bulkhead.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("failed to build the `{name}` runtime: {source}")]
    Build {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("task on the `{0}` runtime was cancelled (runtime shutting down)")]
    Cancelled(RuntimeName),
}

pub(crate) struct BuiltRuntime {
    runtime: Option<Runtime>,
    pub(crate) handle: Handle,
    pub(crate) stats: Arc<RuntimeStats>,
}

/// The bulkheads: one tokio runtime per [`RuntimeName`] (or one shared runtime).
///
/// Built once in `main` and passed down as `Arc<Runtimes>`; there are no global runtimes.
/// Dropping it shuts every runtime down in the background (safe from async context).
pub struct Runtimes {
    config: RuntimeConfig,
    /// `RuntimeName::index()` -> index into `built`.
    map: [usize; 5],
    pub(crate) built: Vec<BuiltRuntime>,
    watchdog: Option<Watchdog>,
}

impl std::fmt::Debug for Runtimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtimes")
            .field("mode", &self.config.mode)
            .finish_non_exhaustive()
    }
}

impl Runtimes {
    /// Build every runtime and start the watchdog.
    /// Thread counts of 0 take the core-count defaults ([`RuntimeConfig::resolved`]).
    pub fn new(config: RuntimeConfig) -> Result<Arc<Self>, RuntimeError> {
        let config = config.resolved();
        let mut built = Vec::new();
        let mut map = [0usize; 5];
        match config.mode {
            RuntimeMode::Shared => {
                built.push(build_one(
                    "shared",
                    RuntimeName::ALL.to_vec(),
                    config.shared_threads,
                    true,
                    ThreadSetup {
                        priority: Priority::Normal {
                            nice: 0,
                            slice: Duration::ZERO,
                        },
                        yield_every: Duration::ZERO,
                        group: None,
                        cpus: None,
                    },
                    &config,
                )?);
            }
            RuntimeMode::Isolated => {
                let idle_group = config.idle_cgroup.then(idle_group).flatten();
                let flush_cpus = if config.flush_affinity {
                    crate::affinity::flush_cpus(
                        &crate::affinity::current_thread_cpus(),
                        config.flush_threads,
                    )
                } else {
                    None
                };
                for name in RuntimeName::ALL {
                    map[name.index()] = built.len();
                    let priority = match name {
                        RuntimeName::Compact if config.compact_sched_idle => Priority::Idle,
                        RuntimeName::Compact => Priority::Normal {
                            nice: config.compact_nice,
                            slice: Duration::ZERO,
                        },
                        RuntimeName::Query if config.query_sched_idle => Priority::Idle,
                        RuntimeName::Query => Priority::Normal {
                            nice: config.query_nice,
                            slice: Duration::ZERO,
                        },
                        RuntimeName::Write => Priority::Normal {
                            nice: config.write_nice,
                            slice: config.latency_slice,
                        },
                        RuntimeName::Io | RuntimeName::Flush => Priority::Normal {
                            nice: 0,
                            slice: config.latency_slice,
                        },
                    };
                    let yield_every = match name {
                        // Only the idle-class runtimes yield. A `sched_yield` from a
                        // normal-class thread (`flush`) can hand its CPU to an idle-class
                        // query or compaction thread for a whole scheduler slice: in
                        // phase B of `bench interference` the flush thread spent 0.58 s
                        // of 8 inside `sched_yield` (0.07 s in phase A), up to 17 ms at
                        // once. Writes preempt the flush on wakeup anyway.
                        RuntimeName::Query | RuntimeName::Compact => config.background_yield,
                        RuntimeName::Io | RuntimeName::Write | RuntimeName::Flush => Duration::ZERO,
                    };
                    let group = idle_group.filter(|_| priority == Priority::Idle);
                    let cpus = flush_cpus.clone().filter(|_| name == RuntimeName::Flush);
                    built.push(build_one(
                        name.as_str(),
                        vec![name],
                        config.threads(name),
                        name == RuntimeName::Io,
                        ThreadSetup {
                            priority,
                            yield_every,
                            group,
                            cpus,
                        },
                        &config,
                    )?);
                }
            }
        }
        let mut runtimes = Self {
            config,
            map,
            built,
            watchdog: None,
        };
        runtimes.watchdog = Some(Watchdog::start(&runtimes));
        Ok(Arc::new(runtimes))
    }

    /// The config in use, thread counts resolved.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    pub fn mode(&self) -> RuntimeMode {
        self.config.mode
    }

    fn get(&self, name: RuntimeName) -> &BuiltRuntime {
        &self.built[self.map[name.index()]]
    }

    /// The tokio handle serving `name`.
    pub fn handle(&self, name: RuntimeName) -> &Handle {
        &self.get(name).handle
    }

    /// Whether the calling thread is one of the threads of the runtime serving `name`
    /// (in shared mode, of the shared runtime), where work for `name` may run without
    /// being handed to another task.
    pub fn on(&self, name: RuntimeName) -> bool {
        crate::metrics::current_thread_is(&self.get(name).stats)
    }

    pub fn io(&self) -> &Handle {
        self.handle(RuntimeName::Io)
    }

    /// Spawn `fut` on the runtime serving `name`. Its polls are timed for the metrics
    /// and visible to the watchdog.
    pub fn spawn<F>(&self, name: RuntimeName, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle(name).spawn(Instrumented::new(fut))
    }

    /// Spawn `fut` on `io`: the way to start any IO from a CPU runtime.
    pub fn spawn_io<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn(RuntimeName::Io, fut)
    }

    /// Run `fut` on `name` and await its result from wherever the caller is.
    ///
    /// Dropping the returned future aborts the task (so a dropped request cancels its
    /// work). A panic in the task is resumed in the caller.
    pub fn run<F>(&self, name: RuntimeName, fut: F) -> RunHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        RunHandle {
            name,
            handle: self.spawn(name, fut),
        }
    }

    /// Block the calling (non-runtime) thread on `fut`, run on `name`.
    pub fn block_on<F>(&self, name: RuntimeName, fut: F) -> Result<F::Output, RuntimeError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = self.run(name, fut);
        futures::executor::block_on(handle)
    }

    /// Metrics and watchdog counters of every runtime.
    pub fn snapshot(&self) -> BulkheadsSnapshot {
        let runtimes = self
            .built
            .iter()
            .map(|b| {
                let m = b.handle.metrics();
                let (cpu, cpu_wait) = b.stats.cpu_nanos();
                RuntimeSnapshot {
                    runtime: b.stats.label.clone(),
                    serves: b.stats.names.clone(),
                    workers: m.num_workers(),
                    alive_tasks: m.num_alive_tasks(),
                    queued_tasks: m.global_queue_depth(),
                    busy_ratio: b.stats.busy_ratio(),
                    polls: b.stats.polls.load(Ordering::Relaxed),
                    slow_polls: b.stats.slow_polls.load(Ordering::Relaxed),
                    cpu_yields: b.stats.cpu_yields.load(Ordering::Relaxed),
                    cpu_seconds: cpu as f64 / 1e9,
                    cpu_wait_seconds: cpu_wait as f64 / 1e9,
                    slow_poll_threshold_ms: b.stats.slow_poll_threshold.as_secs_f64() * 1e3,
                    stalls: b.stats.stalls.load(Ordering::Relaxed),
                    max_stall_ms: b.stats.max_stall_nanos.load(Ordering::Relaxed) as f64 / 1e6,
                }
            })
            .collect();
        BulkheadsSnapshot {
            mode: self.config.mode,
            watchdog_threshold_ms: self.config.watchdog_threshold.as_secs_f64() * 1e3,
            runtimes,
            recent_stalls: self
                .watchdog
                .as_ref()
                .map(|w| w.recent_stalls())
                .unwrap_or_default(),
        }
    }
}

impl Drop for Runtimes {
    fn drop(&mut self) {
        if let Some(w) = self.watchdog.take() {
            w.stop();
        }
        for b in &mut self.built {
            if let Some(rt) = b.runtime.take() {
                rt.shutdown_background();
            }
        }
    }
}

fn build_one(
    label: &str,
    names: Vec<RuntimeName>,
    threads: usize,
    with_io: bool,
    setup: ThreadSetup,
    config: &RuntimeConfig,
) -> Result<BuiltRuntime, RuntimeError> {
    let serves_query = names.contains(&RuntimeName::Query);
    let stats = Arc::new(RuntimeStats::new(
        label.to_string(),
        names,
        config.slow_poll_threshold,
    ));
    let mut builder = Builder::new_multi_thread();
    builder.worker_threads(threads.max(1));
    // Only `io` (or the shared runtime) gets an IO driver. CPU runtimes have timers
    // only, so a socket opened there panics ("IO is disabled") instead of silently
    // tying its readiness to a runtime that may be busy for seconds.
    if with_io {
        builder.enable_all();
    } else {
        builder.enable_time();
    }
    if serves_query {
        // Query plans yield every few ms (`bulkhead_query::yielding`). Tokio's defaults
        // assume short polls: it looks at tasks sent from other runtimes (a new query,
        // a result encoder) and at its timers (query deadlines) only every 61 polls,
        // which is 300 ms behind one heavy query and seconds for a `select 1` that
        // takes three such hops. Check both every few polls instead.
        builder.global_queue_interval(QUERY_GLOBAL_QUEUE_INTERVAL);
        builder.event_interval(QUERY_EVENT_INTERVAL);
    }
    let counter = Arc::new(AtomicUsize::new(0));
    let prefix = format!("bh-{label}");
    builder.thread_name_fn(move || format!("{prefix}-{}", counter.fetch_add(1, Ordering::Relaxed)));
    let start_stats = Arc::clone(&stats);
    builder.on_thread_start(move || {
        start_stats.register_current_thread();
        setup.priority.apply();
        if let Some(group) = setup.group
            && let Err(error) = group.add_current_thread()
        {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(%error, cgroup = %group.dir().display(),
                    "could not move a thread into the idle cgroup");
            });
        }
        if let Some(cpus) = &setup.cpus
            && let Err(error) = crate::affinity::pin_flush_thread(cpus)
        {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(%error, ?cpus, "could not pin a flush thread to its CPUs");
            });
        }
        crate::cpu_yield::enable_current_thread(
            setup.yield_every,
            Arc::clone(&start_stats.cpu_yields),
        );
    });
    builder.on_thread_unpark(crate::cpu_yield::restart_current_thread);
    builder.on_thread_stop(RuntimeStats::unregister_current_thread);
    let runtime = builder.build().map_err(|source| RuntimeError::Build {
        name: label.to_string(),
        source,
    })?;
    Ok(BuiltRuntime {
        handle: runtime.handle().clone(),
        runtime: Some(runtime),
        stats,
    })
}

/// How a runtime's threads are scheduled: set by each thread as it starts.
#[derive(Debug, Clone)]
struct ThreadSetup {
    priority: Priority,
    /// `runtime.background_yield` for this runtime (zero: never yields).
    yield_every: Duration,
    /// The idle cgroup its threads join (`runtime.idle_cgroup`).
    group: Option<&'static crate::idle_cgroup::IdleCgroup>,
    /// The CPUs its threads are pinned to (`runtime.flush_affinity`); `None`: all.
    cpus: Option<Vec<usize>>,
}

/// The process's idle cgroup, or `None` after saying once why there is none.
fn idle_group() -> Option<&'static crate::idle_cgroup::IdleCgroup> {
    static REPORTED: std::sync::Once = std::sync::Once::new();
    let group = crate::idle_cgroup::get();
    REPORTED.call_once(|| match &group {
        Ok(g) => tracing::info!(cgroup = %g.dir().display(),
            "query and compaction threads run in an idle cgroup (runtime.idle_cgroup)"),
        Err(reason) => tracing::warn!(%reason,
            "query and compaction threads stay in this process's cgroup with SCHED_IDLE \
             alone: with autogroup or a service cgroup they can then delay kernel workers \
             the WAL waits on (runtime.idle_cgroup = false silences this)"),
    });
    group.ok()
}

/// The directory of the idle cgroup the `query` and `compact` threads of isolated
/// runtimes join (`runtime.idle_cgroup`), made on first use; `None` where the process
/// may not make one.
pub fn idle_cgroup_dir() -> Option<&'static std::path::Path> {
    crate::idle_cgroup::get().ok().map(|g| g.dir())
}

/// Polls between two looks at the `query` runtime's queue of tasks sent from other
/// runtimes (tokio's default self-tunes between 2 and 127).
const QUERY_GLOBAL_QUEUE_INTERVAL: u32 = 2;

/// Polls between two looks at the `query` runtime's timers (tokio's default: 61).
const QUERY_EVENT_INTERVAL: u32 = 4;

/// A task running on a bulkhead, awaited from elsewhere; aborts the task when dropped.
#[derive(Debug)]
pub struct RunHandle<T> {
    name: RuntimeName,
    handle: JoinHandle<T>,
}

impl<T> Future for RunHandle<T> {
    type Output = Result<T, RuntimeError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let name = self.name;
        match Pin::new(&mut self.handle).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(v)) => Poll::Ready(Ok(v)),
            Poll::Ready(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Poll::Ready(Err(_)) => Poll::Ready(Err(RuntimeError::Cancelled(name))),
        }
    }
}

impl<T> Drop for RunHandle<T> {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Raise the soft limit on open files to the hard limit (Linux and other Unixes), so
/// that connections, WAL segments and SSTs are not capped by a default of 1024 while
/// the hard limit allows far more. Returns the (old, new) soft limit when it changed.
#[cfg(unix)]
pub fn raise_open_files_limit() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the plain struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= lim.rlim_max {
            return None;
        }
        let old = lim.rlim_cur;
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "could not raise the open-files limit");
            return None;
        }
        Some((old, lim.rlim_cur))
    }
}

#[cfg(not(unix))]
pub fn raise_open_files_limit() -> Option<(u64, u64)> {
    None
}

#[cfg(all(test, unix))]
mod fd_limit_tests {
    #[test]
    fn the_soft_open_files_limit_is_raised_to_the_hard_one() {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in `raise_open_files_limit`.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
            if lim.rlim_max <= 256 {
                return; // nothing to lower and raise
            }
            let hard = lim.rlim_max;
            lim.rlim_cur = 256;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
            assert_eq!(super::raise_open_files_limit(), Some((256, hard)));
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
            assert_eq!(lim.rlim_cur, hard);
        }
    }
}
