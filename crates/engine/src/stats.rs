//! Engine counters and the [`EngineStats`] snapshot exported on `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::engine::Engine;

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
    pub flush_count: u64,
    pub flush_failures: u64,
    pub flush_duration_total: Duration,
    pub last_flush_duration: Duration,
    pub compaction: CompactionStats,
    /// The SST metadata cache (`sst_metadata_cache_bytes`).
    pub sst_metadata_cache: crate::sst::cache::MetadataCacheStats,
    pub tables: Vec<TableStats>,
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
    pub(crate) writes: AtomicU64,
    pub(crate) rows_written: AtomicU64,
    pub(crate) stalled: AtomicU64,
    pub(crate) rejected: AtomicU64,
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

    pub(crate) fn snapshot(&self, engine: &Engine, tables: Vec<TableStats>) -> EngineStats {
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
