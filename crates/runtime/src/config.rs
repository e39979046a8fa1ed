//! Configuration of the bulkheads: which runtimes exist, their sizes and priorities.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The name of one bulkhead. Every piece of work in Bulkhead runs on exactly one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeName {
    /// Network servers, object-store IO, file IO hand-off. The only runtime with an IO driver.
    Io,
    /// Line-protocol parsing, WAL encoding, memtable inserts.
    Write,
    /// Memtable sort, dedup and Parquet encoding.
    Flush,
    /// DataFusion plans.
    Query,
    /// SST merge and re-encode, at low OS priority.
    Compact,
}

impl RuntimeName {
    /// Every bulkhead, in a stable order.
    pub const ALL: [RuntimeName; 5] = [
        RuntimeName::Io,
        RuntimeName::Write,
        RuntimeName::Flush,
        RuntimeName::Query,
        RuntimeName::Compact,
    ];

    /// The lowercase name used in thread names, metrics and config keys.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeName::Io => "io",
            RuntimeName::Write => "write",
            RuntimeName::Flush => "flush",
            RuntimeName::Query => "query",
            RuntimeName::Compact => "compact",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RuntimeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the named runtimes map onto tokio runtimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeMode {
    /// One tokio runtime per name (the production layout).
    #[default]
    Isolated,
    /// Every name on one shared runtime. Exists only so that the lab and the
    /// benchmarks can show what isolation buys; never use it in production.
    Shared,
}

impl FromStr for RuntimeMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "isolated" => Ok(RuntimeMode::Isolated),
            "shared" => Ok(RuntimeMode::Shared),
            other => Err(format!(
                "unknown runtime mode `{other}` (expected `isolated` or `shared`)"
            )),
        }
    }
}

impl fmt::Display for RuntimeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuntimeMode::Isolated => "isolated",
            RuntimeMode::Shared => "shared",
        })
    }
}

/// Everything needed to build the bulkheads. Built once in `main`, passed down; it is
/// also the `[runtime]` section of the server's config file, as is.
///
/// Thread counts of 0 mean "derive from the core count" ([`Self::for_parallelism`]);
/// [`Runtimes::new`](crate::Runtimes::new) resolves them, so
/// [`Runtimes::config`](crate::Runtimes::config) shows the counts in use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// `isolated` (one runtime per bulkhead) or `shared` (one runtime; benchmarks only).
    pub mode: RuntimeMode,
    pub io_threads: usize,
    pub write_threads: usize,
    pub flush_threads: usize,
    pub query_threads: usize,
    pub compact_threads: usize,
    /// Worker threads of the single runtime in `shared` mode.
    pub shared_threads: usize,
    /// OS nice value applied to `compact` threads (0 = unchanged, 19 = lowest priority).
    pub compact_nice: i32,
    /// Run `compact` threads under `SCHED_IDLE` (Linux) instead of `compact_nice`:
    /// they get only CPU time nothing else wants, and yield it at once.
    pub compact_sched_idle: bool,
    /// OS nice value applied to `query` threads. Slightly lowered by default, so a
    /// heavy query on a small machine yields the CPU to write acks and flushes, which
    /// hold clients and memory; queries still get most of a core.
    pub query_nice: i32,
    /// Run `query` threads under `SCHED_IDLE` (Linux) instead of `query_nice`, like
    /// `compact_sched_idle`: a waking write or flush thread preempts a query at once
    /// (issue 24: nice 5 let two query loops inflate write-ack p99). On by default. The
    /// price: under sustained 100 % CPU from ingest and flushes, queries get only the
    /// kernel's idle-class share (weight 3 against 1024), so they slow to a crawl
    /// instead of slowing the writes.
    pub query_sched_idle: bool,
    /// OS nice value of the `write` threads and the WAL thread, which every write ack
    /// waits for: -5 by default, so a flush's Parquet encoding, the `io` threads and
    /// other processes cannot keep them off the CPU for tens of milliseconds (issue 24:
    /// full stalls of 100-290 ms in 13 of 18 benchmark phases at 0, none in 12 at -5).
    /// Raising a priority needs `CAP_SYS_NICE`; without it the threads keep nice 0 and
    /// one warning is logged. 0 leaves them alone. Not applied in `shared` mode.
    pub write_nice: i32,
    /// The time slice asked of the OS for `io`, `write` and `flush` threads and the WAL
    /// thread (Linux ≥ 6.12, EEVDF; zero = the kernel's default). Shorter than the
    /// default (0.75–3 ms), a waking write preempts a running query or compaction
    /// thread at once instead of queueing behind its slice.
    #[serde(with = "crate::units::duration")]
    pub latency_slice: Duration,
    /// How long a `query` or `compact` thread runs before it offers its CPU to
    /// waiting threads (`sched_yield`) at its next yield point, between two batches
    /// (zero: never). A write thread woken onto a CPU busy with a query is sometimes
    /// left waiting until the next scheduler tick, up to 4 ms (see `cpu_yield`); this
    /// bounds that wait. Not applied in `shared` mode.
    #[serde(with = "crate::units::duration")]
    pub background_yield: Duration,
    /// Move the `SCHED_IDLE` threads (`query`, `compact`) into a cgroup of their own
    /// with `cpu.idle = 1` (Linux, cgroup v1 `cpu` controller, when the process may
    /// create one), so that they are idle to the whole machine and not only inside this
    /// process's autogroup or service cgroup (see `idle_cgroup`). Without permission the
    /// threads keep `SCHED_IDLE` alone and one warning says why. Not applied in `shared`
    /// mode.
    pub idle_cgroup: bool,
    /// Pin the `flush` threads to the last `flush_threads` CPUs the process may use
    /// (Linux, when it may use two or more; at least one CPU is left to the rest), so
    /// that a flush's long Parquet encode does not queue behind the `write` threads on
    /// the CPU they crowd onto (issue 24; `affinity.rs`). A flush that starts while the
    /// write buffer is half full may use every CPU (`place_flush_thread`). Nothing else
    /// is pinned. Not applied in `shared` mode.
    pub flush_affinity: bool,
    /// A single poll longer than this counts as a slow poll.
    #[serde(with = "crate::units::duration")]
    pub slow_poll_threshold: Duration,
    /// A runtime that does not answer the watchdog within this is counted as stalled.
    #[serde(with = "crate::units::duration")]
    pub watchdog_threshold: Duration,
    /// How often the watchdog pings every runtime.
    #[serde(with = "crate::units::duration")]
    pub watchdog_interval: Duration,
    /// How long memory the process has freed stays mapped before the allocator gives it
    /// back to the OS (mimalloc's purge delay; zero: at once). Returning it costs a
    /// system call per range and, when it is needed again, a page fault per page, on
    /// whichever thread happens to allocate or free next. With transparent huge pages
    /// that fault was a 2 MiB zeroing, and a small query a second after a big one spent
    /// 3-5 ms on it; without them (the default, `huge_pages`) the penalty is gone and a
    /// longer delay made ingest 7 % slower (`docs/benchmarks.md`, "Transparent huge
    /// pages"). A background thread purges what is due while the server is idle, so a
    /// quiet server still gives memory back.
    #[serde(with = "crate::units::duration")]
    pub memory_purge_delay: Duration,
    /// Whether the kernel may back the allocator's memory with transparent huge pages.
    /// Off by default: on a kernel with THP in `madvise` mode (common), mimalloc asks
    /// for them, and every fresh 2 MiB page is zeroed in the fault that touches it; the
    /// write path's memory churn then spent a third of the server's CPU zeroing pages,
    /// and ingest was 27 % slower (`docs/benchmarks.md`, "Transparent huge pages").
    pub huge_pages: bool,
}

impl Default for RuntimeConfig {
    /// Every thread count 0 (derived from the core count when the runtimes are built).
    fn default() -> Self {
        Self {
            io_threads: 0,
            write_threads: 0,
            flush_threads: 0,
            query_threads: 0,
            compact_threads: 0,
            shared_threads: 0,
            ..Self::for_parallelism(1)
        }
    }
}

impl RuntimeConfig {
    /// Defaults for a machine with `cores` CPUs. On 2 cores: io 2, write 2, flush, query
    /// and compact 1. CPU runtimes deliberately add up to more threads than cores: the
    /// OS time-slices them, and `query` and `compact` run under SCHED_IDLE, so both
    /// yield to flushes and writes at once.
    pub fn for_parallelism(cores: usize) -> Self {
        let cores = cores.max(1);
        Self {
            mode: RuntimeMode::Isolated,
            io_threads: (cores / 4).max(2),
            // Two even on 2 cores: parsing is most of an ingest's CPU, and one thread
            // capped bench ingest at one core (1 -> 2 threads: +33 % rows/s).
            write_threads: (cores / 2).max(2),
            flush_threads: (cores / 4).max(1),
            // Two even on 2 cores: with one plan partition per query (limits.query_partitions)
            // a heavy query holds one thread and short ones run on the other. One thread
            // let a join loop grow a short query's p99 4x (bench soak, docs/reliability.md).
            // Under SCHED_IDLE the second thread takes only CPU nothing else wants.
            query_threads: (cores / 2).max(2),
            compact_threads: (cores / 4).max(1),
            shared_threads: cores.max(2),
            compact_nice: 10,
            compact_sched_idle: true,
            write_nice: -5,
            query_nice: 5,
            query_sched_idle: true,
            latency_slice: Duration::ZERO,
            background_yield: Duration::from_micros(250),
            idle_cgroup: true,
            flush_affinity: true,
            slow_poll_threshold: Duration::from_millis(10),
            watchdog_threshold: Duration::from_millis(100),
            watchdog_interval: Duration::from_millis(20),
            memory_purge_delay: Duration::from_secs(1),
            huge_pages: false,
        }
    }

    /// This config with every thread count of 0 replaced by the one
    /// [`Self::for_parallelism`] gives for this machine.
    pub fn resolved(&self) -> Self {
        let auto = Self::for_parallelism(available_parallelism());
        let pick = |configured: usize, derived: usize| {
            if configured == 0 { derived } else { configured }
        };
        Self {
            io_threads: pick(self.io_threads, auto.io_threads),
            write_threads: pick(self.write_threads, auto.write_threads),
            flush_threads: pick(self.flush_threads, auto.flush_threads),
            query_threads: pick(self.query_threads, auto.query_threads),
            compact_threads: pick(self.compact_threads, auto.compact_threads),
            shared_threads: pick(self.shared_threads, auto.shared_threads),
            ..self.clone()
        }
    }

    /// Thread count configured for `name` (in isolated mode).
    pub fn threads(&self, name: RuntimeName) -> usize {
        match name {
            RuntimeName::Io => self.io_threads,
            RuntimeName::Write => self.write_threads,
            RuntimeName::Flush => self.flush_threads,
            RuntimeName::Query => self.query_threads,
            RuntimeName::Compact => self.compact_threads,
        }
    }
}

/// The machine's parallelism, or 2 if it cannot be known.
pub fn available_parallelism() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_suit_two_cores_and_scale() {
        let two = RuntimeConfig::for_parallelism(2);
        assert_eq!(
            (
                two.io_threads,
                two.write_threads,
                two.flush_threads,
                two.query_threads,
                two.compact_threads
            ),
            (2, 2, 1, 2, 1)
        );
        let sixteen = RuntimeConfig::for_parallelism(16);
        assert_eq!(sixteen.io_threads, 4);
        assert_eq!(sixteen.query_threads, 8);
        assert_eq!(sixteen.compact_threads, 4);
    }

    #[test]
    fn zero_thread_counts_resolve_to_the_core_count_defaults() {
        let auto = RuntimeConfig::for_parallelism(available_parallelism());
        let resolved = RuntimeConfig::default().resolved();
        assert_eq!(resolved, auto);
        let cfg = RuntimeConfig {
            io_threads: 5,
            ..RuntimeConfig::default()
        };
        let resolved = cfg.resolved();
        assert_eq!(resolved.io_threads, 5);
        assert_eq!(resolved.write_threads, auto.write_threads);
    }

    #[test]
    fn mode_parses_and_rejects_unknown() {
        assert_eq!(
            "shared".parse::<RuntimeMode>().unwrap(),
            RuntimeMode::Shared
        );
        let err = "both".parse::<RuntimeMode>().unwrap_err();
        assert!(err.contains("both"), "{err}");
    }
}
