//! Engine configuration: WAL sync mode, flush thresholds, segment size, manifest cadence.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When a WAL write is considered durable, i.e. when `write` returns.
///
/// * `Always` (default): every group commit ends with `fdatasync`; an acknowledged write
///   survives power loss.
/// * `Interval(d)`: writes are acknowledged once handed to the OS and the WAL is synced at
///   least every `d`; a process crash loses nothing, a power loss or kernel crash can lose
///   up to `d` of acknowledged writes.
/// * `None`: never synced by the engine (the OS flushes dirty pages on its own schedule);
///   a power loss can lose an unbounded window (typically ~30 s on Linux).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WalSync {
    #[default]
    Always,
    Interval(Duration),
    None,
}

/// Everything the engine needs besides its object store and runtimes.
///
/// Sizes are bytes, durations are [`Duration`]s; the server's config layer parses human
/// forms ("64MiB", "2h") into this struct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Root for local state other than the WAL (currently unused by the engine itself:
    /// SSTs and the manifest live in the object store the caller passes in, which by
    /// default is a `LocalFileSystem` rooted here).
    pub data_dir: PathBuf,
    /// Directory of WAL segment files (always local disk).
    pub wal_dir: PathBuf,
    pub wal_sync: WalSync,
    /// A WAL segment is closed and a new one started once it passes this size.
    pub wal_segment_size: u64,
    /// Zero-fill the next WAL segment ahead of time, so a sync writes data only (no
    /// file-size or allocation metadata) and is not held up by other files' writeback.
    /// Costs one spare segment of disk space, from the first MiB of WAL traffic on.
    pub wal_preallocate: bool,
    /// Flush a table once its memtables hold this many bytes (default 64 MiB).
    pub table_flush_threshold: usize,
    /// The global write buffer: all memtables together. Passing it triggers flushes of the
    /// largest tables and stalls writers; at twice it writes fail with `Overloaded`.
    /// Default: 1/8 of physical RAM, at most 1 GiB.
    pub write_buffer_size: usize,
    /// Flush a table whose oldest unflushed data is older than this (default 10 min).
    pub max_memtable_age: Duration,
    /// A writer stalled by backpressure waits at most this long, then gets `Overloaded`.
    pub max_write_stall: Duration,
    /// Width of the time segments SSTs are partitioned into (default 2 h).
    pub segment_duration: Duration,
    /// Write a manifest checkpoint every this many edits.
    pub manifest_checkpoint_interval: u64,
    /// Prefix of every object the engine writes in the object store.
    pub store_prefix: String,
    /// Rows per Parquet row group.
    pub sst_row_group_size: usize,
    /// zstd level for SSTs.
    pub sst_zstd_level: i32,
    /// SSTs larger than this are uploaded with multipart upload.
    pub sst_multipart_threshold: usize,
    /// Part size of multipart uploads (S3 requires at least 5 MiB but the last).
    pub sst_multipart_part_size: usize,
    /// First delay after a failed flush; doubles up to `flush_retry_max_backoff`.
    pub flush_retry_initial_backoff: Duration,
    pub flush_retry_max_backoff: Duration,
    /// How often the background flush scheduler checks ages and sizes.
    pub flush_check_interval: Duration,
    /// Tables flushed at once (default 32). Their uploads overlap and their manifest
    /// edits share commits, so thousands of small tables flush in seconds; the
    /// encoding itself stays on the `flush` runtime's threads. 0 is taken as 1.
    pub flush_concurrency: usize,
    /// A snapshot seals an active memtable at least this big (instead of copying its
    /// rows under the table lock); smaller ones are copied.
    pub snapshot_seal_bytes: usize,
    /// Memory for the parsed metadata of SSTs (Parquet footer, page index, series
    /// index), so warm queries open files without a GET (default 64 MiB; 0 = off).
    pub sst_metadata_cache_bytes: usize,
    /// Time-window compaction (see `docs/storage.md`).
    pub compaction: crate::compaction::CompactionConfig,
    /// Default retention: data older than this is hidden from reads and its segments
    /// are dropped (default: keep forever).
    pub ttl: Option<Duration>,
    /// Per-database (`"db"`) or per-table (`"db.table"`) retention, overriding `ttl`
    /// (zero: keep forever).
    pub ttl_overrides: std::collections::BTreeMap<String, Duration>,
    /// Databases, tables, columns and series a write may create (`limits.rs`).
    pub limits: crate::limits::CatalogLimits,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            wal_dir: PathBuf::from("data/wal"),
            wal_sync: WalSync::Always,
            wal_segment_size: 64 * 1024 * 1024,
            wal_preallocate: true,
            table_flush_threshold: 64 * 1024 * 1024,
            write_buffer_size: default_write_buffer_size(),
            max_memtable_age: Duration::from_secs(600),
            max_write_stall: Duration::from_secs(10),
            segment_duration: Duration::from_secs(2 * 3600),
            manifest_checkpoint_interval: 32,
            store_prefix: String::new(),
            sst_row_group_size: 256 * 1024,
            sst_zstd_level: 3,
            sst_multipart_threshold: 32 * 1024 * 1024,
            sst_multipart_part_size: 8 * 1024 * 1024,
            flush_retry_initial_backoff: Duration::from_millis(100),
            flush_retry_max_backoff: Duration::from_secs(5),
            flush_check_interval: Duration::from_secs(1),
            flush_concurrency: 32,
            snapshot_seal_bytes: 1024 * 1024,
            sst_metadata_cache_bytes: 64 * 1024 * 1024,
            compaction: crate::compaction::CompactionConfig::default(),
            ttl: None,
            ttl_overrides: std::collections::BTreeMap::new(),
            limits: crate::limits::CatalogLimits::default(),
        }
    }
}

impl EngineConfig {
    pub(crate) fn upload_options(&self) -> crate::sst::writer::UploadOptions {
        crate::sst::writer::UploadOptions {
            multipart_threshold: self.sst_multipart_threshold,
            part_size: self.sst_multipart_part_size,
        }
    }

    /// A config with the WAL under `dir/wal`, everything else default.
    pub fn with_dir(dir: impl Into<PathBuf>) -> Self {
        let data_dir = dir.into();
        Self {
            wal_dir: data_dir.join("wal"),
            data_dir,
            ..Self::default()
        }
    }

    pub(crate) fn segment_nanos(&self) -> i64 {
        i64::try_from(self.segment_duration.as_nanos())
            .unwrap_or(i64::MAX)
            .max(1)
    }
}

/// 1/8 of physical memory, capped at 1 GiB (64 MiB if RAM cannot be read).
pub fn default_write_buffer_size() -> usize {
    const CAP: usize = 1024 * 1024 * 1024;
    match physical_memory() {
        Some(total) => (total / 8).min(CAP),
        None => 64 * 1024 * 1024,
    }
}

fn physical_memory() -> Option<usize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_buffer_is_capped() {
        let b = default_write_buffer_size();
        assert!(b > 0 && b <= 1024 * 1024 * 1024, "{b}");
    }

    #[test]
    fn config_roundtrips_through_serde() {
        let mut c = EngineConfig::with_dir("/tmp/x");
        c.wal_sync = WalSync::Interval(Duration::from_millis(5));
        let json = serde_json::to_string(&c).expect("serialize");
        let back: EngineConfig = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, c);
    }
}
