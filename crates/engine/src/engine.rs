//! [`Engine`]: the public façade of the storage engine. It owns an [`EngineCore`] (the
//! shared state the write, flush, read, recovery and compaction paths work on) and
//! holds every public method; dropping it stops the background work.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use bulkhead_runtime::latency::HistogramSnapshot;
use bulkhead_runtime::{RuntimeName, Runtimes};
use object_store::ObjectStore;

use crate::compaction::{CompactionSummary, PickMode};
use crate::config::EngineConfig;
use crate::core::{EngineCore, join};
use crate::error::Result;
use crate::manifest::ManifestState;
use crate::memtable::TimeRange;
use crate::model::{Scope, WriteBatch};
use crate::read::TableSnapshot;
use crate::sst::SstMeta;
use crate::stats::{EngineStats, TableStats};

/// The storage engine. See the crate docs for the data flow.
pub struct Engine {
    core: Arc<EngineCore>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("wal_dir", &self.core.config.wal_dir)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Open the engine: load the manifest, replay the WAL, start the WAL thread and the
    /// background flush scheduler. See `recovery.rs` for the rules.
    ///
    /// `store` should already be wrapped in `IoObjectStore` so its IO runs on `io`.
    pub async fn open(
        config: EngineConfig,
        store: Arc<dyn ObjectStore>,
        runtimes: Arc<Runtimes>,
    ) -> Result<Arc<Engine>> {
        let core = crate::recovery::open(config, store, runtimes).await?;
        Ok(Arc::new(Engine { core }))
    }

    /// Write `batch` to database `db` (created on first write). Returns once the batch
    /// is durable per the WAL sync mode and visible to reads. Atomic: on error nothing
    /// of the batch is applied.
    pub async fn write(&self, db: &str, batch: WriteBatch) -> Result<()> {
        crate::write::write(&self.core, db, batch).await
    }

    /// Flush the memtables in `scope` and return once their SSTs are committed in the
    /// manifest. Errors are returned (the background scheduler keeps retrying).
    pub async fn flush(&self, scope: &Scope) -> Result<()> {
        let tables = self.core.tables_in(scope)?;
        let core = Arc::clone(&self.core);
        let task = self.core.runtimes.spawn(RuntimeName::Flush, async move {
            crate::flush::flush_tables(&core, tables).await
        });
        join(task).await?
    }

    /// `DROP TABLE`: the table's rows, SSTs and schema are gone once this returns
    /// (durable per the WAL sync mode); a later write of the name starts a new table.
    /// With `if_exists`, a missing table is no error.
    pub async fn drop_table(
        &self,
        db: &str,
        table: &str,
        if_exists: bool,
    ) -> Result<crate::DropSummary> {
        crate::write::drop_tables(&self.core, db, Some(table), if_exists).await
    }

    /// `DROP DATABASE`: every table of `db`, as [`Engine::drop_table`] does for one.
    pub async fn drop_database(&self, db: &str, if_exists: bool) -> Result<crate::DropSummary> {
        crate::write::drop_tables(&self.core, db, None, if_exists).await
    }

    /// Delete the rows of `db` that `req` selects: durable (per the WAL sync mode) and
    /// invisible to every read once this returns. Rows written later are not affected;
    /// compaction removes the deleted rows from the SSTs. Errors if the named table
    /// (or the database) does not exist, or the predicate tests a field.
    pub async fn delete(
        &self,
        db: &str,
        req: crate::delete::DeleteRequest,
    ) -> Result<crate::delete::DeleteSummary> {
        crate::write::delete(&self.core, db, req).await
    }

    /// Watch `db.table` (which need not exist yet) for late writes and deletes, as
    /// long as the returned watch lives: rows written below its threshold are recorded
    /// in it, and each delete sets the manifest property `{delete_prefix}{seq}` =
    /// `{min_time}:{max_time}` in the edit that commits its tombstone (see `watch.rs`).
    pub fn watch(&self, db: &str, table: &str, delete_prefix: String) -> Arc<crate::TableWatch> {
        self.core.watches.watch(db, table, delete_prefix)
    }

    /// Live tombstones of `db.table` (for tests and `system.tables`).
    pub fn tombstones(&self, db: &str, table: &str) -> Vec<crate::delete::Tombstone> {
        self.core
            .table(db, table)
            .map(|t| {
                t.state
                    .lock()
                    .tombstones
                    .iter()
                    .map(|x| (**x).clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sync the WAL and stop background work. Memtables are not flushed (the WAL holds
    /// them); later calls fail with [`Error::Closed`](crate::Error::Closed).
    pub async fn close(&self) -> Result<()> {
        self.core.close().await
    }

    /// Database names, sorted.
    pub fn databases(&self) -> Vec<String> {
        self.core.catalog.read().keys().cloned().collect()
    }

    /// Table names of `db`, sorted (empty if the database does not exist).
    pub fn tables(&self, db: &str) -> Vec<String> {
        self.core
            .catalog
            .read()
            .get(db)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The Arrow schema of a table: tags (sorted by name, `Dictionary(Int32, Utf8)`),
    /// fields (sorted by name), then `time` (`Timestamp(Nanosecond, "UTC")`). Each field
    /// carries metadata `bulkhead.role` = `tag` / `field` / `time`.
    pub fn table_schema(&self, db: &str, table: &str) -> Option<SchemaRef> {
        self.core.table_schema(db, table)
    }

    /// A consistent snapshot of one table restricted to `range`: the memtable rows in
    /// range (copied now) and the SSTs overlapping it (held, so they stay readable).
    /// Rows older than the table's TTL are left out.
    pub fn snapshot(&self, db: &str, table: &str, range: TimeRange) -> Result<TableSnapshot> {
        self.core.snapshot(db, table, range)
    }

    /// Latency histograms of the write path's stages (see [`crate::stats::WriteStages`]).
    pub fn write_stages(&self) -> Vec<(&'static str, HistogramSnapshot)> {
        let mut stages = self.core.counters.stages.snapshot();
        // Inside `wal`: the WAL thread writing (and syncing) one group.
        // (after `wal_queue`, before `wal_handoff`: the pipeline's order).
        stages.insert(4, ("wal_io", self.core.wal.counters.group_io.snapshot()));
        // Between two groups: sealing a segment and moving onto the next.
        stages.insert(5, ("wal_rotate", self.core.wal.counters.rotate.snapshot()));
        stages
    }

    /// Counters and per-table figures for `/metrics` and `system.tables`.
    pub fn stats(&self) -> EngineStats {
        let tables = self
            .core
            .all_tables()
            .into_iter()
            .map(|t| {
                let st = t.state.lock();
                TableStats {
                    db: t.db.clone(),
                    table: t.name.clone(),
                    memtable_bytes: st.mem_bytes(),
                    memtable_rows: st.active.rows()
                        + st.frozen.iter().map(|f| f.mem.rows()).sum::<usize>(),
                    frozen_memtables: st.frozen.len(),
                    sst_count: st.ssts.len(),
                    sst_bytes: st.ssts.iter().map(|s| s.meta().bytes).sum(),
                    sst_rows: st.ssts.iter().map(|s| s.meta().rows).sum(),
                    flushed_seq: st.flushed_seq,
                    consecutive_flush_failures: st.flush_failures,
                    last_flush_error: st.last_flush_error.clone(),
                    parked: st.parked_upto > 0,
                    tombstones: st.tombstones.len(),
                    columns: st.schema.tags.len() + st.schema.fields.len(),
                }
            })
            .collect();
        self.core.counters.snapshot(&self.core, tables)
    }

    /// The manifest state (schemas, SSTs, flushed sequences) as of the last commit; the
    /// input of the compaction picker.
    pub async fn manifest_state(&self) -> ManifestState {
        self.core.manifest.state()
    }

    /// Atomically replace SSTs of one table: one manifest edit removes `remove` (file
    /// ids) and adds `add` (already uploaded). Readers see either the old or the new
    /// set; removed files are deleted once no snapshot holds them. For compaction and
    /// retention.
    pub async fn replace_ssts(
        &self,
        db: &str,
        table: &str,
        remove: &[String],
        add: Vec<SstMeta>,
    ) -> Result<()> {
        self.core.replace_ssts(db, table, remove, add).await
    }

    /// Compact `scope` now, ignoring the trigger and the hot-segment grace period:
    /// every segment with two or more files is merged (within the size caps), and
    /// expired segments are dropped. Returns when done.
    pub async fn compact(&self, scope: &Scope) -> Result<CompactionSummary> {
        self.core.compact_scope(scope, PickMode::Forced).await
    }

    /// Like [`Engine::compact`], but every SST in `scope` is rewritten, even one alone
    /// in its segment: re-encodes old data with the current SST settings (zstd level,
    /// row group size). Returns when done.
    pub async fn rewrite(&self, scope: &Scope) -> Result<CompactionSummary> {
        self.core.compact_scope(scope, PickMode::Rewrite).await
    }

    /// Inject failures into compactions (tests of crash safety; `test-util` feature).
    #[cfg(feature = "test-util")]
    pub fn compaction_fail_points(&self) -> &crate::compaction::FailPoints {
        &self.core.compactor.fail_points
    }

    /// The TTL of `db.table`: a per-table override, else a per-database one, else the
    /// default. A zero override means "keep forever" (it exempts the table or database
    /// from a default TTL).
    pub fn ttl(&self, db: &str, table: &str) -> Option<std::time::Duration> {
        self.core.ttl(db, table)
    }

    /// Commit `changes` (properties, per-table TTLs) to the manifest atomically: all
    /// of them are durable once this returns, none on error (`settings.rs`).
    pub async fn commit_settings(&self, changes: Vec<crate::SettingChange>) -> Result<()> {
        crate::settings::commit(&self.core, changes).await
    }

    /// The committed properties whose key starts with `prefix`, by key.
    pub fn properties(&self, prefix: &str) -> std::collections::BTreeMap<String, String> {
        self.core.manifest.properties(prefix)
    }

    /// Distinct series (tag sets) of `db.table` (0 if it does not exist). Counted from
    /// the series set the limit keeps, or by a scan of each series' latest row when
    /// `max_series_per_table` is off.
    pub async fn series_count(&self, db: &str, table: &str) -> Result<usize> {
        crate::limits::series_count(&self.core, db, table).await
    }
}

impl Drop for Engine {
    /// Stop the background work now, even while a task still holds the core.
    fn drop(&mut self) {
        let _ = self.core.shutdown.send(true);
        for t in self.core.tasks.lock().drain(..) {
            t.abort();
        }
    }
}
