//! The storage engine: WAL, memtables, Parquet SSTs on object storage, manifest.
//!
//! Data flow (see `docs/storage.md`): a [`WriteBatch`] is validated (schema evolution,
//! type conflicts) and encoded on the `write` runtime, appended to the WAL by a
//! dedicated thread that group-commits concurrent writers with one `fsync`, then
//! inserted into per-table memtables, in WAL sequence order, by an applier task on
//! `write`, and acknowledged. Memtable memory is accounted globally: writers stall at
//! the write buffer and get [`Error::Overloaded`] at twice it. The flush scheduler (on
//! `flush`) sorts, deduplicates and encodes a memtable as one Parquet SST per time
//! segment, uploads through the io-bound object store, then commits a manifest edit;
//! only then is the memtable dropped and the WAL truncated. Reads take a consistent
//! [`TableSnapshot`] (memtable rows + SST handles) and stream Arrow batches
//! deduplicated by primary key.
//!
//! The API, in short:
//! * [`Engine::open`]`(EngineConfig, Arc<dyn ObjectStore>, Arc<Runtimes>)` runs recovery;
//!   [`Engine::write`]`(db, WriteBatch)`, [`Engine::flush`]`(&Scope)`, [`Engine::close`].
//! * Catalog: [`Engine::databases`], [`Engine::tables`], [`Engine::table_schema`].
//! * Reads: [`Engine::snapshot`]`(db, table, TimeRange)` -> [`TableSnapshot`], whose
//!   [`TableSnapshot::ssts`] lists [`SstMeta`] for pruning and [`TableSnapshot::scan`]
//!   streams deduplicated Arrow batches for a [`ScanRequest`].
//! * Operations: [`Engine::stats`] -> [`EngineStats`]; [`Engine::manifest_state`] and
//!   [`Engine::replace_ssts`] for compaction and retention.
//!
//! This crate does not depend on DataFusion.

#[cfg(feature = "bench-support")]
#[doc(hidden)]
pub mod bench_support;
pub mod compaction;
mod config;
mod core;
mod delete;
mod drop_table;
mod engine;
mod error;
mod flush;
mod flush_gate;
mod flush_pack;
mod flush_policy;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod limits;
mod manifest;
mod memtable;
mod model;
pub mod names;
mod park;
mod read;
mod recovery;
mod schema;
mod settings;
mod sst;
mod stats;
mod table;
mod wal;
mod watch;
mod write;

/// The locks (`std`'s futex locks, never `sched_yield`): `bulkhead_runtime::sync`.
use bulkhead_runtime::sync;

pub use compaction::{CompactionConfig, CompactionSummary};
pub use config::{
    EngineConfig, IntegerCompression, MemtableConfig, RetentionConfig, SstConfig, WalConfig,
    WalSync,
};
pub use core::now_nanos;
pub use delete::{DeletePredicate, DeleteRequest, DeleteSummary, Tombstone};
pub use drop_table::DropSummary;
pub use engine::Engine;
pub use error::{Error, Result};
pub use limits::CatalogLimits;
pub use manifest::{Action, ManifestEdit, ManifestState, TableManifest};
pub use memtable::TimeRange;
pub use model::{FieldType, FieldValue, Row, Scope, SmolStr, TableWrite, WriteBatch};
pub use read::field_filter::{FieldComparison, FieldFilter, FieldOp};
pub use read::metrics::{ScanMetrics, ScanMetricsSnapshot};
pub use read::predicate::{TagMatcher, TagPredicate};
pub use read::{ScanRequest, SstFilter, TableSnapshot};
pub use schema::{ROLE_KEY, TIME_COLUMN, TableSchema, arrow_type};
pub use settings::SettingChange;
pub use sst::cache::MetadataCacheStats;
pub use sst::{SstFile, SstMeta};
pub use stats::{CompactionStats, EngineStats, TableStats};
pub use watch::{TableWatch, parse_delete_mark};
