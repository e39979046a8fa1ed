//! Engine configuration: the `[wal]`, `[memtable]`, `[retention]` sections and the SST
//! keys of `[storage]`, as the server's config file embeds them, plus tuning knobs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use bulkhead_runtime::units::{self, HumanDuration};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// When a WAL write is considered durable, i.e. when `write` returns.
///
/// * `Always` (default): every group commit ends with `fdatasync`; an acknowledged write
///   survives power loss.
/// * `Interval(d)`: writes are acknowledged once handed to the OS and the WAL is synced at
///   least every `d`; a process crash loses nothing, a power loss or kernel crash can lose
///   up to `d` of acknowledged writes.
/// * `None`: never synced by the engine (the OS flushes dirty pages on its own schedule);
///   a power loss can lose an unbounded window (typically ~30 s on Linux).
///
/// Written `always`, `none` or an interval such as `100ms`, in the config file and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WalSync {
    #[default]
    Always,
    Interval(Duration),
    None,
}

impl FromStr for WalSync {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "always" => Ok(Self::Always),
            "none" | "never" => Ok(Self::None),
            other => other
                .parse::<HumanDuration>()
                .map(|d| Self::Interval(d.get()))
                .map_err(|_| {
                    format!("invalid WAL sync mode `{s}` (expected `always`, `none` or an interval like `100ms`)")
                }),
        }
    }
}

impl fmt::Display for WalSync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Always => f.write_str("always"),
            Self::None => f.write_str("none"),
            Self::Interval(d) => write!(f, "{}", HumanDuration(*d)),
        }
    }
}

impl Serialize for WalSync {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WalSync {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Everything the engine needs besides its object store and runtimes.
///
/// The sections a user sets (`wal`, `memtable`, `sst`, `compaction`, `retention`,
/// `limits`) are embedded as they are in the server's config file, so each key has one
/// declaration and one default, here; sizes and durations are written in human units
/// (`bulkhead_runtime::units`). The other fields are tuning knobs for tests and
/// benchmarks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Root for local state other than the WAL (currently unused by the engine itself:
    /// SSTs and the manifest live in the object store the caller passes in, which by
    /// default is a `LocalFileSystem` rooted here).
    pub data_dir: PathBuf,
    /// Directory of WAL segment files (always local disk).
    pub wal_dir: PathBuf,
    /// The write-ahead log: `[wal]`.
    pub wal: WalConfig,
    /// The write buffer and when it flushes: `[memtable]`.
    pub memtable: MemtableConfig,
    /// How SSTs are partitioned, uploaded and cached: the SST keys of `[storage]`.
    pub sst: SstConfig,
    /// Time-window compaction (see `docs/storage.md`): `[compaction]`.
    pub compaction: crate::compaction::CompactionConfig,
    /// How long data is kept: `[retention]`.
    pub retention: RetentionConfig,
    /// Databases, tables, columns and series a write may create (`limits.rs`): the
    /// catalog keys of `[limits]`.
    pub limits: crate::limits::CatalogLimits,
    /// A writer stalled by backpressure waits at most this long, then gets `Overloaded`.
    #[serde(with = "units::duration")]
    pub max_write_stall: Duration,
    /// Write a manifest checkpoint every this many edits.
    pub manifest_checkpoint_interval: u64,
    /// Prefix of every object the engine writes in the object store.
    pub store_prefix: String,
    /// Rows per Parquet row group.
    pub sst_row_group_size: usize,
    /// zstd level for SSTs' float and string columns (the others are lz4).
    pub sst_zstd_level: i32,
    /// First delay after a failed flush; doubles up to `flush_retry_max_backoff`.
    #[serde(with = "units::duration")]
    pub flush_retry_initial_backoff: Duration,
    #[serde(with = "units::duration")]
    pub flush_retry_max_backoff: Duration,
    /// How often the background flush scheduler checks ages and sizes.
    #[serde(with = "units::duration")]
    pub flush_check_interval: Duration,
    /// A snapshot seals an active memtable at least this big (instead of copying its
    /// rows under the table lock); smaller ones are copied.
    pub snapshot_seal_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            wal_dir: PathBuf::from("data/wal"),
            wal: WalConfig::default(),
            memtable: MemtableConfig::default(),
            sst: SstConfig::default(),
            compaction: crate::compaction::CompactionConfig::default(),
            retention: RetentionConfig::default(),
            limits: crate::limits::CatalogLimits::default(),
            max_write_stall: Duration::from_secs(10),
            manifest_checkpoint_interval: 32,
            store_prefix: String::new(),
            sst_row_group_size: 256 * 1024,
            sst_zstd_level: 3,
            flush_retry_initial_backoff: Duration::from_millis(100),
            flush_retry_max_backoff: Duration::from_secs(5),
            flush_check_interval: Duration::from_secs(1),
            snapshot_seal_bytes: 1024 * 1024,
        }
    }
}

/// `[wal]`: the write-ahead log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalConfig {
    /// When the WAL is fsynced: `always` (before every acknowledgement), an interval
    /// such as `100ms` (acknowledge once written, sync at least that often), or `none`.
    /// Anything but `always` can lose acknowledged writes on power loss (not on a
    /// process crash).
    pub sync: WalSync,
    /// Roll over to a new WAL segment file past this size.
    #[serde(with = "units::bytes")]
    pub segment_size: u64,
    /// Zero-fill the next segment ahead of time, so that a sync writes data only (no
    /// file-size or allocation metadata) and does not wait for other files' writeback.
    /// Costs one spare segment of disk space, from the first MiB of WAL traffic on.
    pub preallocate: bool,
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            sync: WalSync::Always,
            segment_size: 64 * 1024 * 1024,
            preallocate: true,
        }
    }
}

/// `[memtable]`: the write buffer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemtableConfig {
    /// The global write buffer: all memtables together. Passing three quarters of it
    /// flushes the largest tables; passing it stalls writers; at twice it writes fail with
    /// `Overloaded` (HTTP 503). Default 256 MiB, whatever the machine's memory.
    #[serde(with = "units::bytes")]
    pub write_buffer: usize,
    /// Flush a single table's memtable once it holds this much.
    #[serde(with = "units::bytes")]
    pub table_flush_size: usize,
    /// Flush a memtable at the latest this long after its first write.
    #[serde(with = "units::duration")]
    pub flush_interval: Duration,
    /// Tables flushed at once. Their uploads overlap and their manifest edits share
    /// commits, so thousands of small tables flush in seconds; the encoding itself
    /// stays on the `flush` runtime's threads. 0 is taken as 1.
    pub flush_concurrency: usize,
    /// Tables holding at most this much in memory when a flush round starts are
    /// written into shared SSTs ("packs", `docs/storage.md`): one object, one PUT and
    /// one manifest edit for up to 2,048 tables, instead of one of each
    /// per table. 0 turns packing off.
    #[serde(with = "units::bytes")]
    pub pack_table_bytes: usize,
}

/// Most tables written into one pack.
pub(crate) const PACK_MAX_TABLES: usize = 2048;

impl Default for MemtableConfig {
    fn default() -> Self {
        Self {
            write_buffer: 256 * 1024 * 1024,
            table_flush_size: 64 * 1024 * 1024,
            flush_interval: Duration::from_secs(600),
            flush_concurrency: 32,
            pack_table_bytes: 64 * 1024,
        }
    }
}

/// SST partitioning, upload and metadata caching: the engine's keys of the server's
/// `[storage]` section (flattened there, so this struct does not deny unknown keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SstConfig {
    /// Width of the time segments SSTs are partitioned into.
    #[serde(with = "units::duration")]
    pub segment_duration: Duration,
    /// SSTs larger than this are uploaded with multipart upload.
    #[serde(with = "units::bytes")]
    pub multipart_threshold: usize,
    /// Part size of multipart uploads (S3 requires at least 5 MiB but the last).
    #[serde(with = "units::bytes")]
    pub multipart_part_size: usize,
    /// Memory for the parsed metadata of SSTs (Parquet footer, page index, series
    /// index), so warm queries open files without a GET (0 = off).
    #[serde(with = "units::bytes")]
    pub metadata_cache_size: usize,
    /// Codec of `time`, integer fields and tags in new SSTs (floats and strings are
    /// always zstd).
    pub integer_compression: IntegerCompression,
    /// Most rows per Parquet data page in new SSTs. A query that reads one series
    /// decodes whole pages around its rows, so smaller pages cost it less; larger ones
    /// make the page index smaller (measured in `docs/benchmarks.md`, "Page size").
    pub page_rows: usize,
}

/// How SSTs compress delta-packed integers (`time`, integer fields) and dictionary
/// tag keys. `lz4` is the default: zstd takes only about 6 % more off these encodings,
/// and each zstd column chunk a query opens costs a new codec context (measured in
/// `docs/benchmarks.md`, "zstd contexts").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntegerCompression {
    /// Faster reads: no codec context per column chunk.
    #[default]
    Lz4,
    /// About 6 % smaller integer columns, at a codec context per column chunk read.
    Zstd,
}

impl std::str::FromStr for IntegerCompression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lz4" => Ok(Self::Lz4),
            "zstd" => Ok(Self::Zstd),
            other => Err(format!("`{other}` is not `lz4` or `zstd`")),
        }
    }
}

impl Default for SstConfig {
    fn default() -> Self {
        Self {
            segment_duration: Duration::from_secs(2 * 3600),
            multipart_threshold: 32 * 1024 * 1024,
            multipart_part_size: 8 * 1024 * 1024,
            metadata_cache_size: 64 * 1024 * 1024,
            integer_compression: IntegerCompression::Lz4,
            page_rows: crate::sst::writer::PAGE_ROWS,
        }
    }
}

/// `[retention]`: how long data is kept.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Default time to live: data older than this is hidden from reads and its
    /// segments are dropped. Zero (the default) keeps data forever.
    #[serde(with = "units::duration")]
    pub ttl: Duration,
    /// Per-database (`"db"`) or per-table (`"db.table"`) TTLs overriding `ttl` (zero:
    /// keep forever).
    #[serde(with = "units::duration_map")]
    pub overrides: BTreeMap<String, Duration>,
}

impl EngineConfig {
    pub(crate) fn upload_options(&self) -> crate::sst::writer::UploadOptions {
        crate::sst::writer::UploadOptions {
            multipart_threshold: self.sst.multipart_threshold,
            part_size: self.sst.multipart_part_size,
        }
    }

    /// How flushes and compactions encode SSTs.
    pub(crate) fn encode_options(&self) -> crate::sst::writer::EncodeOptions {
        crate::sst::writer::EncodeOptions {
            row_group_size: self.sst_row_group_size,
            zstd_level: self.sst_zstd_level,
            integers: self.sst.integer_compression,
            page_rows: self.sst.page_rows,
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
        i64::try_from(self.sst.segment_duration.as_nanos())
            .unwrap_or(i64::MAX)
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_sync_modes_parse_and_print() {
        assert_eq!("always".parse::<WalSync>().unwrap(), WalSync::Always);
        assert_eq!("none".parse::<WalSync>().unwrap(), WalSync::None);
        assert_eq!(
            "100ms".parse::<WalSync>().unwrap(),
            WalSync::Interval(Duration::from_millis(100))
        );
        assert!(
            "sometimes"
                .parse::<WalSync>()
                .unwrap_err()
                .contains("`sometimes`")
        );
        assert_eq!(WalSync::Interval(Duration::from_secs(1)).to_string(), "1s");
    }

    #[test]
    fn config_roundtrips_through_serde() {
        let mut c = EngineConfig::with_dir("/tmp/x");
        c.wal.sync = WalSync::Interval(Duration::from_millis(5));
        let json = serde_json::to_string(&c).expect("serialize");
        let back: EngineConfig = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, c);
    }
}
