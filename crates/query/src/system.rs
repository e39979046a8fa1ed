//! The `system` schema: `system.tables`, `system.sst_files`, `system.runtimes`,
//! `system.cache`, `system.rollups`.
//!
//! Each is rebuilt from live state whenever a query plans against it, so it is always
//! current; they are small (one row per table, SST or runtime).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use bulkhead_engine::{Engine, TimeRange};
use bulkhead_runtime::Runtimes;
use datafusion::catalog::{MemTable, SchemaProvider, TableProvider};
use datafusion::error::Result;

pub(crate) const SYSTEM_SCHEMA: &str = "system";
const TABLES: [&str; 5] = ["tables", "sst_files", "runtimes", "cache", "rollups"];

#[derive(Debug)]
pub(crate) struct SystemSchema {
    pub(crate) engine: Arc<Engine>,
    pub(crate) runtimes: Arc<Runtimes>,
    pub(crate) cache: Option<bulkhead_runtime::store::CachedStore>,
    pub(crate) rollups: Arc<crate::rollup::RollupBoard>,
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|s| s.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let batch = match name {
            "tables" => tables(&self.engine).await?,
            "sst_files" => sst_files(&self.engine)?,
            "runtimes" => runtimes(&self.runtimes)?,
            "cache" => cache(self.cache.as_ref())?,
            "rollups" => self.rollups.to_batch()?,
            _ => return Ok(None),
        };
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

fn u64f(name: &str) -> Field {
    Field::new(name, DataType::UInt64, false)
}

fn batch(fields: Vec<Field>, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// One row per table. `rows` counts stored rows (SSTs + memtables) before
/// deduplication, so an overwritten key counts once per copy until compaction merges it
/// (and deleted rows until compaction removes them). `series`: distinct tag sets;
/// `columns`: tags and fields;
/// `tombstones`: deletes not yet applied to every file.
async fn tables(engine: &Engine) -> Result<RecordBatch> {
    let stats = engine.stats().tables;
    let mut series = Vec::with_capacity(stats.len());
    for s in &stats {
        let n = engine
            .series_count(&s.db, &s.table)
            .await
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        series.push(n as u64);
    }
    batch(
        vec![
            utf8("database"),
            utf8("table"),
            u64f("rows"),
            u64f("bytes"),
            u64f("sst_count"),
            u64f("memtable_bytes"),
            u64f("series"),
            u64f("columns"),
            u64f("tombstones"),
        ],
        vec![
            Arc::new(StringArray::from_iter_values(
                stats.iter().map(|s| s.db.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                stats.iter().map(|s| s.table.as_str()),
            )),
            Arc::new(UInt64Array::from_iter_values(
                stats.iter().map(|s| s.sst_rows + s.memtable_rows as u64),
            )),
            Arc::new(UInt64Array::from_iter_values(
                stats.iter().map(|s| s.sst_bytes),
            )),
            Arc::new(UInt64Array::from_iter_values(
                stats.iter().map(|s| s.sst_count as u64),
            )),
            Arc::new(UInt64Array::from_iter_values(
                stats.iter().map(|s| s.memtable_bytes as u64),
            )),
            Arc::new(UInt64Array::from(series)),
            Arc::new(UInt64Array::from_iter_values(
                stats.iter().map(|s| s.columns as u64),
            )),
            Arc::new(UInt64Array::from_iter_values(
                stats.iter().map(|s| s.tombstones as u64),
            )),
        ],
    )
}

/// One row per live SST, from a full-range snapshot of every table. `path` is the
/// object the SST is read from: for a member of a pack (`flush_pack.rs`) the pack's
/// `data/_packs/{id}.parquet`, shared with the other members, and `pack_offset` is
/// where the member's `bytes` start in it; `pack_offset` is NULL for a standalone SST
/// (the whole object at `path`).
fn sst_files(engine: &Engine) -> Result<RecordBatch> {
    let mut files = Vec::new();
    for db in engine.databases() {
        for table in engine.tables(&db) {
            if let Ok(snapshot) = engine.snapshot(&db, &table, TimeRange::ALL) {
                files.extend(snapshot.ssts());
            }
        }
    }
    let ts = |name: &str| {
        Field::new(
            name,
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        )
    };
    batch(
        vec![
            utf8("database"),
            utf8("table"),
            ts("segment"),
            utf8("path"),
            ts("min_time"),
            ts("max_time"),
            u64f("rows"),
            u64f("bytes"),
            Field::new("pack_offset", DataType::UInt64, true),
        ],
        vec![
            Arc::new(StringArray::from_iter_values(
                files.iter().map(|f| f.db.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                files.iter().map(|f| f.table.as_str()),
            )),
            Arc::new(
                TimestampNanosecondArray::from_iter_values(files.iter().map(|f| f.segment_start))
                    .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from_iter_values(
                files.iter().map(|f| f.path.as_str()),
            )),
            Arc::new(
                TimestampNanosecondArray::from_iter_values(files.iter().map(|f| f.min_time))
                    .with_timezone("UTC"),
            ),
            Arc::new(
                TimestampNanosecondArray::from_iter_values(files.iter().map(|f| f.max_time))
                    .with_timezone("UTC"),
            ),
            Arc::new(UInt64Array::from_iter_values(files.iter().map(|f| f.rows))),
            Arc::new(UInt64Array::from_iter_values(files.iter().map(|f| f.bytes))),
            Arc::new(UInt64Array::from_iter(files.iter().map(|f| f.pack_offset))),
        ],
    )
}

fn runtimes(runtimes: &Runtimes) -> Result<RecordBatch> {
    let snap = runtimes.snapshot();
    let r = &snap.runtimes;
    batch(
        vec![
            utf8("runtime"),
            utf8("serves"),
            u64f("workers"),
            u64f("alive_tasks"),
            u64f("queued_tasks"),
            Field::new("busy_ratio", DataType::Float64, false),
            u64f("polls"),
            u64f("slow_polls"),
            u64f("stalls"),
            Field::new("max_stall_ms", DataType::Float64, false),
            u64f("cpu_yields"),
            Field::new("cpu_seconds", DataType::Float64, false),
            Field::new("cpu_wait_seconds", DataType::Float64, false),
        ],
        vec![
            Arc::new(StringArray::from_iter_values(
                r.iter().map(|r| r.runtime.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(r.iter().map(|r| {
                r.serves
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            }))),
            Arc::new(UInt64Array::from_iter_values(
                r.iter().map(|r| r.workers as u64),
            )),
            Arc::new(UInt64Array::from_iter_values(
                r.iter().map(|r| r.alive_tasks as u64),
            )),
            Arc::new(UInt64Array::from_iter_values(
                r.iter().map(|r| r.queued_tasks as u64),
            )),
            Arc::new(Float64Array::from_iter_values(
                r.iter().map(|r| r.busy_ratio),
            )),
            Arc::new(UInt64Array::from_iter_values(r.iter().map(|r| r.polls))),
            Arc::new(UInt64Array::from_iter_values(
                r.iter().map(|r| r.slow_polls),
            )),
            Arc::new(UInt64Array::from_iter_values(r.iter().map(|r| r.stalls))),
            Arc::new(Float64Array::from_iter_values(
                r.iter().map(|r| r.max_stall_ms),
            )),
            Arc::new(UInt64Array::from_iter_values(
                r.iter().map(|r| r.cpu_yields),
            )),
            Arc::new(Float64Array::from_iter_values(
                r.iter().map(|r| r.cpu_seconds),
            )),
            Arc::new(Float64Array::from_iter_values(
                r.iter().map(|r| r.cpu_wait_seconds),
            )),
        ],
    )
}

/// One row per tier of the object-store block cache (none when it is off); the same
/// numbers as `bulkhead_cache_*` on `/metrics`. `fetches`, `fetched_bytes` and
/// `corrupt` are the cache's totals, repeated on each row.
fn cache(cache: Option<&bulkhead_runtime::store::CachedStore>) -> Result<RecordBatch> {
    let stats = cache.map(|c| c.stats());
    let mut tiers = Vec::new();
    if let Some(s) = &stats {
        tiers.push(("memory", s.memory.clone()));
        if let Some(d) = &s.disk {
            tiers.push(("disk", d.clone()));
        }
    }
    let total = |f: fn(&bulkhead_runtime::store::CacheStats) -> u64| -> ArrayRef {
        let v = stats.as_ref().map(f).unwrap_or(0);
        Arc::new(UInt64Array::from_iter_values(tiers.iter().map(|_| v)))
    };
    let col = |f: fn(&bulkhead_runtime::store::cache::TierStats) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(
            tiers.iter().map(|(_, t)| f(t)),
        ))
    };
    batch(
        vec![
            utf8("tier"),
            u64f("hits"),
            u64f("misses"),
            u64f("evictions"),
            u64f("fill_bytes"),
            u64f("bytes"),
            u64f("capacity_bytes"),
            u64f("entries"),
            u64f("fetches"),
            u64f("fetched_bytes"),
            u64f("corrupt"),
        ],
        vec![
            Arc::new(StringArray::from_iter_values(tiers.iter().map(|(n, _)| *n))),
            col(|t| t.hits),
            col(|t| t.misses),
            col(|t| t.evictions),
            col(|t| t.filled_bytes),
            col(|t| t.bytes),
            col(|t| t.capacity),
            col(|t| t.entries),
            total(|s| s.fetches),
            total(|s| s.fetched_bytes),
            total(|s| s.corrupt),
        ],
    )
}
