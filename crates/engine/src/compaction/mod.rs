//! Compaction and retention: the background half of the engine, on the `compact`
//! bulkhead (low OS priority), so it can never slow flushes, writes or queries.
//!
//! - [`picker`]: a pure function from the live SSTs to a list of merge tasks
//!   (time-window compaction: merge within a time segment, never across).
//! - [`executor`]: one task: fetch inputs through the io-bound store (all of them,
//!   before any CPU work), merge + dedup + re-encode on `compact`, upload, then commit
//!   one manifest edit that removes the inputs and adds the output.
//! - [`scheduler`]: runs the picker after flushes and on a timer, bounded by a
//!   concurrency cap and a memory budget; applies retention (TTL); manual compaction.
//! - [`purge`]: rewrites the files deletes apply to and drops applied tombstones.
//! - [`gc`]: at startup, deletes SST objects the manifest does not reference (left by
//!   a crash between upload and commit, or between commit and delete).

pub(crate) mod executor;
pub(crate) mod gc;
pub mod picker;
pub(crate) mod purge;
pub(crate) mod scheduler;

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[cfg(feature = "test-util")]
pub use executor::{FailPoint, FailPoints};
pub use picker::{CompactionTask, Decision, PickMode, pick};
pub use scheduler::CompactionSummary;
pub(crate) use scheduler::Compactor;

/// Compaction settings (see `docs/storage.md`): the `[compaction]` section of the
/// server's config file, where it is flattened next to the rollup maintainer's keys (so
/// this struct does not deny unknown keys; the server's section does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompactionConfig {
    /// Merge a segment's files once it has this many (default 4).
    pub trigger: usize,
    /// Cap on one task's total input bytes, so its output stays under it (512 MiB).
    #[serde(rename = "max_output_size", with = "bulkhead_runtime::units::bytes")]
    pub max_output_bytes: u64,
    /// Memory all running compactions may hold together (256 MiB). A task whose
    /// estimate exceeds it is split; a single file over it is skipped with a warning.
    #[serde(with = "bulkhead_runtime::units::bytes")]
    pub memory_budget: u64,
    /// Compactions running at once; 0 (the default) derives it from the core count
    /// ([`Self::concurrency`]: 1 on 2 cores, cores/4 above).
    pub max_concurrent: usize,
    /// The newest segments are left alone until their end is this far in the past, so
    /// files still being written to are not churned (default 10 min).
    #[serde(with = "bulkhead_runtime::units::duration")]
    pub grace_period: Duration,
    /// How often the scheduler looks for work without being woken by a flush.
    #[serde(with = "bulkhead_runtime::units::duration")]
    pub check_interval: Duration,
    /// Run compactions in the background (manual compaction works either way).
    pub enabled: bool,
}

impl CompactionConfig {
    /// Compactions at once: `max_concurrent`, or a quarter of the cores (at least 1)
    /// when it is 0.
    pub fn concurrency(&self) -> usize {
        if self.max_concurrent == 0 {
            (bulkhead_runtime::available_parallelism() / 4).max(1)
        } else {
            self.max_concurrent
        }
    }
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self {
            trigger: 4,
            max_output_bytes: 512 * 1024 * 1024,
            memory_budget: 256 * 1024 * 1024,
            max_concurrent: 0,
            grace_period: Duration::from_secs(600),
            check_interval: Duration::from_secs(30),
            enabled: true,
        }
    }
}
