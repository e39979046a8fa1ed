//! Engine counters and the [`EngineStats`] snapshot exported on `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bulkhead_runtime::latency::{HistogramSnapshot, LatencyHistogram};
use serde::Serialize;

use crate::core::EngineCore;

/// Per-table numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableStats {
    pub db: String,
    pub table: String,
    /// Estimated bytes in memtables (active + frozen).
    pub memtable_bytes: usize,
    pub memtable_rows: usize,
    /// Memtables frozen and waiting for (or in) a flush.
    pub frozen_memtables: usize,
    pub sst_count: usize,
    pub sst_bytes: u64,
    pub sst_rows: u64,
    pub flushed_seq: u64,
    /// Flush attempts of this table that failed in a row (0 once one succeeds).
    pub consecutive_flush_failures: u32,
    /// The error of the last failed attempt, while they keep failing.
    pub last_flush_error: Option<String>,
    /// Its in-memory rows were parked (`park.rs`) so they do not pin the WAL.
    pub parked: bool,
    /// Deletes not yet applied to every file (`delete.rs`).
    pub tombstones: usize,
    /// Tag and field columns (without `time`).
    pub columns: usize,
}

/// A point-in-time copy of the engine's counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineStats {
    /// Estimated bytes in all memtables.
    pub memtable_bytes: usize,
    /// The global write buffer (stall at 1x, reject at 2x).
    pub write_buffer_size: usize,
    pub wal_bytes: u64,
    pub wal_segments: u64,
    pub wal_syncs: u64,
    pub wal_appends: u64,
    /// Write batches applied.
    pub writes: u64,
    pub rows_written: u64,
    /// Writes that had to wait for memory.
    pub stalled_writes: u64,
    /// Writes rejected with `Overloaded`.
    pub rejected_writes: u64,
    /// Writes refused by each catalog limit (`limits.max_databases`, ...).
    pub limit_rejections: Vec<(&'static str, u64)>,
    pub flush_count: u64,
    pub flush_failures: u64,
    pub flush_duration_total: Duration,
    pub last_flush_duration: Duration,
    pub compaction: CompactionStats,
    /// The SST metadata cache (`sst.metadata_cache_size`).
    pub sst_metadata_cache: crate::sst::cache::MetadataCacheStats,
    pub tables: Vec<TableStats>,
}

/// Latency of each stage of a write, from `Engine::write` to its acknowledgement, and
/// of the table-lock sections that readers take; see `docs/observability.md`.
#[derive(Debug, Default)]
pub(crate) struct WriteStages {
    /// From `Engine::write` until its task first runs on `write` (queueing for a CPU).
    pub(crate) queue: LatencyHistogram,
    /// Admission, validation, encoding and schema evolution, up to the WAL hand-off.
    pub(crate) prepare: LatencyHistogram,
    /// From the WAL hand-off until the applier takes the committed batch (group commit,
    /// fsync, and the applier's backlog).
    pub(crate) wal: LatencyHistogram,
    /// Inside `wal`: from the hand-off until the WAL thread starts writing the group
    /// (waiting for the thread and for the group before it).
    pub(crate) wal_queue: LatencyHistogram,
    /// Inside `wal`: from the group written until the applier (a task on `write`)
    /// takes the batch (waking the applier, and its backlog).
    pub(crate) wal_handoff: LatencyHistogram,
    /// The applier waiting for table locks (held by readers taking snapshots, flushes).
    pub(crate) lock_wait: LatencyHistogram,
    /// Inserting the batch into memtables, lock waits included.
    pub(crate) apply: LatencyHistogram,
    /// `Engine::write` from start to acknowledgement.
    pub(crate) total: LatencyHistogram,
    /// How long a reader holds a table's lock to take a snapshot.
    pub(crate) snapshot_lock_hold: LatencyHistogram,
    /// A table's flush (not a write stage, but what a write's memory waits for; issue
    /// 24 asks why flushes slow down under load): waiting for the table's flush lock
    /// (another flush of the same table, a tombstone purge or a drop in progress;
    /// compaction commits do not take it).
    pub(crate) flush_lock_wait: LatencyHistogram,
    /// Merging and encoding the frozen memtables as Parquet on `flush`, waiting for a
    /// CPU included.
    pub(crate) flush_encode: LatencyHistogram,
    /// The `flush` thread's own CPU time in `flush_encode`: against `flush_encode`, it
    /// tells work from waiting for a CPU.
    pub(crate) flush_encode_cpu: LatencyHistogram,
    /// Uploading the encoded SSTs through the io-bound store.
    pub(crate) flush_upload: LatencyHistogram,
    /// Committing the flush's manifest edit (queueing behind other commits included).
    pub(crate) flush_commit: LatencyHistogram,
    /// One table's flush attempt from start to finish (after the flush lock).
    pub(crate) flush_total: LatencyHistogram,
    /// How long a compaction's or the retention's manifest commit waited for flushes in
    /// progress to finish before starting its own (`flush_gate.rs`).
    pub(crate) background_commit_wait: LatencyHistogram,
}

impl WriteStages {
    /// Every histogram by name, in pipeline order.
    pub(crate) fn snapshot(&self) -> Vec<(&'static str, HistogramSnapshot)> {
        vec![
            ("queue", self.queue.snapshot()),
            ("prepare", self.prepare.snapshot()),
            ("wal", self.wal.snapshot()),
            ("wal_queue", self.wal_queue.snapshot()),
            ("wal_handoff", self.wal_handoff.snapshot()),
            ("lock_wait", self.lock_wait.snapshot()),
            ("apply", self.apply.snapshot()),
            ("total", self.total.snapshot()),
            ("snapshot_lock_hold", self.snapshot_lock_hold.snapshot()),
            ("flush_lock_wait", self.flush_lock_wait.snapshot()),
            ("flush_encode", self.flush_encode.snapshot()),
            ("flush_encode_cpu", self.flush_encode_cpu.snapshot()),
            ("flush_upload", self.flush_upload.snapshot()),
            ("flush_commit", self.flush_commit.snapshot()),
            ("flush_total", self.flush_total.snapshot()),
            (
                "background_commit_wait",
                self.background_commit_wait.snapshot(),
            ),
        ]
    }
}

/// Compaction and retention counters (since the process started).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompactionStats {
    /// Compaction tasks committed.
    pub completed: u64,
    /// Compaction tasks that failed (their inputs stay live; they are retried later).
    pub failures: u64,
    /// Bytes of the SSTs merged away by committed compactions.
    pub input_bytes: u64,
    /// Bytes of the SSTs those compactions wrote.
    pub output_bytes: u64,
    /// Time spent in committed compactions (fetch, merge, upload, commit).
    pub duration: Duration,
    /// SSTs dropped whole by retention (TTL).
    pub expired_ssts: u64,
}

#[derive(Debug, Default)]
pub(crate) struct StatsCounters {
    /// Where a write's time goes, stage by stage (`/debug/latency`).
    pub(crate) stages: WriteStages,
    pub(crate) writes: AtomicU64,
    pub(crate) rows_written: AtomicU64,
    pub(crate) stalled: AtomicU64,
    pub(crate) rejected: AtomicU64,
    /// Writes refused by each catalog limit, in [`crate::limits::NAMES`] order.
    pub(crate) limit_rejections: [AtomicU64; crate::limits::NAMES.len()],
    pub(crate) flushes: AtomicU64,
    pub(crate) flush_failures: AtomicU64,
    flush_nanos_total: AtomicU64,
    flush_nanos_last: AtomicU64,
}

impl StatsCounters {
    pub(crate) fn record_flush_duration(&self, d: Duration) {
        let n = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.flush_nanos_total.fetch_add(n, Ordering::Relaxed);
        self.flush_nanos_last.store(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, engine: &EngineCore, tables: Vec<TableStats>) -> EngineStats {
        let wal = &engine.wal.counters;
        EngineStats {
            memtable_bytes: engine.memory.used(),
            write_buffer_size: engine.memory.limit,
            wal_bytes: wal.bytes.load(Ordering::Relaxed),
            wal_segments: wal.segments.load(Ordering::Relaxed),
            wal_syncs: wal.syncs.load(Ordering::Relaxed),
            wal_appends: wal.appends.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            rows_written: self.rows_written.load(Ordering::Relaxed),
            stalled_writes: self.stalled.load(Ordering::Relaxed),
            rejected_writes: self.rejected.load(Ordering::Relaxed),
            limit_rejections: crate::limits::NAMES
                .iter()
                .zip(&self.limit_rejections)
                .map(|(name, n)| (*name, n.load(Ordering::Relaxed)))
                .collect(),
            flush_count: self.flushes.load(Ordering::Relaxed),
            flush_failures: self.flush_failures.load(Ordering::Relaxed),
            flush_duration_total: Duration::from_nanos(
                self.flush_nanos_total.load(Ordering::Relaxed),
            ),
            last_flush_duration: Duration::from_nanos(
                self.flush_nanos_last.load(Ordering::Relaxed),
            ),
            compaction: engine.compactor.stats(),
            sst_metadata_cache: engine.purger.cache.stats(),
            tables,
        }
    }
}
