//! The bulkheads: named tokio runtimes that keep CPU-heavy work away from IO.
//!
//! Bulkhead runs every piece of work on one of five runtimes ([`RuntimeName`]): `io`
//! (servers, object-store and file IO; the only runtime with an IO driver), `write`
//! (parsing, WAL encoding, memtable inserts), `flush` (Parquet encoding), `query`
//! (DataFusion) and `compact` (merges, at low OS priority). [`Runtimes`] builds them
//! once from a [`RuntimeConfig`]; it is passed down as `Arc<Runtimes>`.
//!
//! IO never runs on a CPU runtime: [`store::IoObjectStore`] spawns every object-store
//! call on `io`, and [`store::io_http_connector`] makes S3 connections live there too
//! (the seed's connection-pool bug; see `docs/lab.md`). A watchdog thread counts stalls
//! per runtime, and [`Runtimes::snapshot`] exposes the metrics.

mod affinity;
mod config;
mod cpu_yield;
mod idle_cgroup;
pub mod latency;
mod metrics;
mod priority;
mod runtimes;
pub mod store;
pub mod sync;
pub mod units;
mod watchdog;

pub use affinity::{current_thread_cpus, place_flush_thread};
pub use config::{RuntimeConfig, RuntimeMode, RuntimeName, available_parallelism};
/// The calling thread's yield interval, for tests (`test-util` feature).
#[cfg(feature = "test-util")]
pub use cpu_yield::current_thread_yield_interval;
pub use cpu_yield::yield_point;
pub use metrics::{
    BulkheadsSnapshot, Instrumented, RuntimeSnapshot, current_runtime_label, parse_schedstat,
};
pub use priority::{
    current_thread_cpu_time, set_current_thread_latency_slice, set_current_thread_nice,
    set_current_thread_sched_idle,
};
/// Probes of the calling thread's OS scheduling, for tests (`test-util` feature).
#[cfg(all(target_os = "linux", feature = "test-util"))]
pub use priority::{
    current_thread_is_sched_idle, current_thread_latency_slice, current_thread_nice,
};
pub use runtimes::{RunHandle, RuntimeError, Runtimes, idle_cgroup_dir, raise_open_files_limit};
pub use watchdog::StallEvent;
