//! [`Engine`]: the catalog of databases and tables, and the public API tying the WAL,
//! memtables, flush, manifest and read snapshots together.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use bulkhead_runtime::{RuntimeName, Runtimes};
use object_store::ObjectStore;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::config::EngineConfig;
use crate::error::{Error, Result};
use crate::manifest::{Action, Manifest, ManifestState};
use crate::memtable::{Memtable, TimeRange};
use crate::model::{Scope, WriteBatch};
use crate::read::TableSnapshot;
use crate::schema::TableSchema;
use crate::sst::{Purger, SstFile, SstMeta};
use crate::stats::{EngineStats, StatsCounters, TableStats};
use crate::wal::Wal;
use crate::write::PendingWrite;
use bulkhead_runtime::latency::HistogramSnapshot;

/// A memtable that no longer takes writes and waits to be flushed (or a read
/// snapshot's copy of active rows). Readers convert it to Arrow per scan, with the
/// scan's columns only: a full conversion of a wide table would cost rows x columns.
#[derive(Debug)]
pub(crate) struct FrozenMemtable {
    pub(crate) mem: Memtable,
    /// The table schema when it was frozen (covers every column in it).
    pub(crate) schema: Arc<TableSchema>,
}

impl FrozenMemtable {
    pub(crate) fn new(mem: Memtable, schema: Arc<TableSchema>) -> Self {
        Self { mem, schema }
    }
}

/// Mutable state of one table, behind its lock.
#[derive(Debug, Default)]
pub(crate) struct TableState {
    pub(crate) schema: Arc<TableSchema>,
    pub(crate) active: Memtable,
    /// Oldest first.
    pub(crate) frozen: Vec<Arc<FrozenMemtable>>,
    pub(crate) ssts: Vec<Arc<SstFile>>,
    pub(crate) flushed_seq: u64,
    /// The last flush attempt failed: the scheduler retries (with backoff).
    pub(crate) flush_failed: bool,
    /// Flush attempts that failed in a row, and the last one's error (for `/health`
    /// and `/metrics`).
    pub(crate) flush_failures: u32,
    pub(crate) last_flush_error: Option<String>,
    /// Rows up to this sequence number are durable in the table's parked file
    /// (`park.rs`), so its memtables up to it no longer hold back WAL truncation.
    pub(crate) parked_upto: u64,
    /// Deletes not yet applied to every SST and memtable, oldest first (`delete.rs`).
    pub(crate) tombstones: Vec<Arc<crate::delete::Tombstone>>,
    /// Those of `tombstones` not yet in the manifest: their commit failed (a full disk,
    /// an unreachable store). The table's next flush commits them in its own edit,
    /// before the flushed sequence passes them, and until then their WAL records stay
    /// (`min_unflushed_seq`), so a crash replays them.
    pub(crate) uncommitted_tombstones: Vec<Arc<crate::delete::Tombstone>>,
}

impl TableState {
    /// Memtable bytes (active + frozen).
    pub(crate) fn mem_bytes(&self) -> usize {
        self.active.bytes() + self.frozen.iter().map(|f| f.mem.bytes()).sum::<usize>()
    }

    /// When the oldest data still only in memory arrived.
    pub(crate) fn oldest_created(&self) -> Option<std::time::Instant> {
        self.frozen
            .iter()
            .map(|f| &f.mem)
            .chain(std::iter::once(&self.active))
            .filter_map(|m| m.created())
            .min()
    }

    /// Lowest WAL sequence number whose data is only in memory (not in SSTs, not
    /// parked), or whose delete is not in the manifest yet, if any.
    pub(crate) fn min_unflushed_seq(&self) -> Option<u64> {
        let rows = self
            .frozen
            .iter()
            .map(|f| &f.mem)
            .chain(std::iter::once(&self.active))
            .filter(|m| !m.is_empty() && m.max_seq() > self.parked_upto)
            .map(|m| m.min_seq());
        let deletes = self.uncommitted_tombstones.iter().map(|t| t.seq);
        rows.chain(deletes).min()
    }
}

#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) db: String,
    pub(crate) name: String,
    pub(crate) state: Mutex<TableState>,
    /// One flush of this table at a time.
    pub(crate) flush_lock: tokio::sync::Mutex<()>,
}

/// Global memtable memory accounting and the writers waiting on it.
#[derive(Debug)]
pub(crate) struct Memory {
    pub(crate) used: AtomicUsize,
    pub(crate) limit: usize,
    /// Notified whenever memory is released or a flush attempt ends.
    pub(crate) released: Notify,
}

impl Memory {
    pub(crate) fn add(&self, n: usize) {
        self.used.fetch_add(n, Ordering::SeqCst);
    }

    pub(crate) fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::SeqCst);
        self.released.notify_waiters();
    }

    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }
}

type Catalog = BTreeMap<String, BTreeMap<String, Arc<Table>>>;

/// The storage engine. See the crate docs for the data flow.
pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) runtimes: Arc<Runtimes>,
    pub(crate) me: Weak<Engine>,
    pub(crate) catalog: RwLock<Catalog>,
    /// Held while a batch is validated and its new columns are added, so schema checks
    /// and additions of concurrent batches do not interleave.
    pub(crate) schema_lock: Mutex<()>,
    /// Drops appended to the WAL and not yet committed (`drop_table.rs`).
    pub(crate) pending_drops: crate::drop_table::PendingDrops,
    /// Known series per table, for `limits.max_series_per_table` (`limits.rs`).
    pub(crate) series: crate::limits::SeriesSets,
    pub(crate) wal: Wal<PendingWrite>,
    pub(crate) manifest: Manifest,
    pub(crate) memory: Memory,
    /// Highest WAL sequence number applied to memtables.
    pub(crate) applied_seq: AtomicU64,
    pub(crate) flush_wanted: Arc<Notify>,
    pub(crate) purger: Arc<Purger>,
    pub(crate) compactor: crate::compaction::Compactor,
    pub(crate) counters: StatsCounters,
    pub(crate) closed: AtomicBool,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Exclusive lock on `wal_dir/LOCK`, released by `close` or when the engine drops.
    pub(crate) wal_lock: Mutex<Option<std::fs::File>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("wal_dir", &self.config.wal_dir)
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
        crate::recovery::open(config, store, runtimes).await
    }

    /// Write `batch` to database `db` (created on first write). Returns once the batch
    /// is durable per the WAL sync mode and visible to reads. Atomic: on error nothing
    /// of the batch is applied.
    pub async fn write(&self, db: &str, batch: WriteBatch) -> Result<()> {
        crate::write::write(self, db, batch).await
    }

    /// Flush the memtables in `scope` and return once their SSTs are committed in the
    /// manifest. Errors are returned (the background scheduler keeps retrying).
    pub async fn flush(&self, scope: &Scope) -> Result<()> {
        let tables = self.tables_in(scope)?;
        let engine = self.arc()?;
        let task = self.runtimes.spawn(RuntimeName::Flush, async move {
            for t in tables {
                crate::flush::flush_table(&engine, &t).await?;
            }
            Ok::<(), Error>(())
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
        crate::write::drop_tables(self, db, Some(table), if_exists).await
    }

    /// `DROP DATABASE`: every table of `db`, as [`Engine::drop_table`] does for one.
    pub async fn drop_database(&self, db: &str, if_exists: bool) -> Result<crate::DropSummary> {
        crate::write::drop_tables(self, db, None, if_exists).await
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
        crate::write::delete(self, db, req).await
    }

    /// Live tombstones of `db.table` (for tests and `system.tables`).
    pub fn tombstones(&self, db: &str, table: &str) -> Vec<crate::delete::Tombstone> {
        self.table(db, table)
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
    /// them); later calls fail with [`Error::Closed`].
    pub async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // The WAL thread writes what is queued, syncs and exits, which closes the
        // applier's channel: the applier then applies and acknowledges what is left and
        // ends on its own (tasks[0]). Background flushes are cancelled; their data is
        // in the WAL.
        let synced = self.wal.shutdown().await;
        let _ = self.shutdown.send(true);
        let mut tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock());
        if !tasks.is_empty() {
            let mut applier = tasks.remove(0);
            if tokio::time::timeout(Duration::from_secs(10), &mut applier)
                .await
                .is_err()
            {
                applier.abort();
            }
        }
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        self.memory.released.notify_waiters();
        // A checkpoint still uploading only shortens the next load: give it a moment.
        self.manifest.settle(Duration::from_secs(5)).await;
        // Nothing of this engine writes to the WAL directory any more.
        drop(self.wal_lock.lock().take());
        synced
    }

    /// Database names, sorted.
    pub fn databases(&self) -> Vec<String> {
        self.catalog.read().keys().cloned().collect()
    }

    /// Table names of `db`, sorted (empty if the database does not exist).
    pub fn tables(&self, db: &str) -> Vec<String> {
        self.catalog
            .read()
            .get(db)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The Arrow schema of a table: tags (sorted by name, `Dictionary(Int32, Utf8)`),
    /// fields (sorted by name), then `time` (`Timestamp(Nanosecond, "UTC")`). Each field
    /// carries metadata `bulkhead.role` = `tag` / `field` / `time`.
    pub fn table_schema(&self, db: &str, table: &str) -> Option<SchemaRef> {
        let t = self.table(db, table)?;
        let schema = Arc::clone(&t.state.lock().schema);
        Some(schema.arrow_schema())
    }

    /// A consistent snapshot of one table restricted to `range`: the memtable rows in
    /// range (copied now) and the SSTs overlapping it (held, so they stay readable).
    pub fn snapshot(&self, db: &str, table: &str, range: TimeRange) -> Result<TableSnapshot> {
        let t = self.table(db, table).ok_or_else(|| {
            if self.catalog.read().contains_key(db) {
                Error::TableNotFound {
                    db: db.to_string(),
                    table: table.to_string(),
                }
            } else {
                Error::DatabaseNotFound(db.to_string())
            }
        })?;
        // Rows older than the table's TTL disappear from reads at once, before the
        // retention pass drops their segments.
        let range = match self.ttl(db, table) {
            Some(ttl) => {
                let ttl = i64::try_from(ttl.as_nanos()).unwrap_or(i64::MAX);
                let cutoff = crate::compaction::scheduler::now_nanos().saturating_sub(ttl);
                range.intersect(&TimeRange::inclusive(cutoff, i64::MAX))
            }
            None => range,
        };
        TableSnapshot::take(self, &t, range)
    }

    /// Counters for `/metrics`.
    /// Latency histograms of the write path's stages (see [`crate::stats::WriteStages`]).
    pub fn write_stages(&self) -> Vec<(&'static str, HistogramSnapshot)> {
        let mut stages = self.counters.stages.snapshot();
        // Inside `wal`: the WAL thread writing (and syncing) one group.
        stages.insert(3, ("wal_io", self.wal.counters.group_io.snapshot()));
        stages
    }

    pub fn stats(&self) -> EngineStats {
        let tables = self
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
        self.counters.snapshot(self, tables)
    }

    /// The manifest state (schemas, SSTs, flushed sequences) as of the last commit; the
    /// input of the compaction picker.
    pub async fn manifest_state(&self) -> ManifestState {
        self.manifest.state()
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
        let t = self.table(db, table).ok_or_else(|| Error::TableNotFound {
            db: db.to_string(),
            table: table.to_string(),
        })?;
        let _flush = t.flush_lock.lock().await;
        {
            let st = t.state.lock();
            for id in remove {
                if !st.ssts.iter().any(|s| &s.meta().file_id == id) {
                    return Err(Error::InvalidInput(format!(
                        "SST {id} is not live in {db}.{table}"
                    )));
                }
            }
        }
        let mut actions: Vec<Action> = remove
            .iter()
            .map(|id| Action::RemoveSst {
                db: db.to_string(),
                table: table.to_string(),
                file_id: id.clone(),
            })
            .collect();
        actions.extend(add.iter().cloned().map(Action::AddSst));
        self.manifest.commit(actions).await?;
        let mut st = t.state.lock();
        st.ssts.retain(|s| {
            let gone = remove.contains(&s.meta().file_id);
            if gone {
                s.mark_deleted();
            }
            !gone
        });
        for meta in add {
            st.ssts
                .push(Arc::new(SstFile::new(meta, Some(Arc::clone(&self.purger)))));
        }
        Ok(())
    }

    pub(crate) fn arc(&self) -> Result<Arc<Engine>> {
        self.me.upgrade().ok_or(Error::Closed)
    }

    pub(crate) fn table(&self, db: &str, table: &str) -> Option<Arc<Table>> {
        self.catalog.read().get(db)?.get(table).cloned()
    }

    pub(crate) fn all_tables(&self) -> Vec<Arc<Table>> {
        self.catalog
            .read()
            .values()
            .flat_map(|d| d.values().cloned())
            .collect()
    }

    fn tables_in(&self, scope: &Scope) -> Result<Vec<Arc<Table>>> {
        match scope {
            Scope::All => Ok(self.all_tables()),
            Scope::Database(db) => {
                let cat = self.catalog.read();
                let d = cat
                    .get(db)
                    .ok_or_else(|| Error::DatabaseNotFound(db.clone()))?;
                Ok(d.values().cloned().collect())
            }
            Scope::Table { db, table } => {
                let t = self.table(db, table).ok_or_else(|| Error::TableNotFound {
                    db: db.clone(),
                    table: table.clone(),
                })?;
                Ok(vec![t])
            }
        }
    }

    /// Get or create a table in the catalog (callers hold `schema_lock`).
    pub(crate) fn table_or_create(&self, db: &str, table: &str) -> Arc<Table> {
        if let Some(t) = self.table(db, table) {
            return t;
        }
        let mut cat = self.catalog.write();
        let tables = cat.entry(db.to_string()).or_default();
        Arc::clone(tables.entry(table.to_string()).or_insert_with(|| {
            Arc::new(Table {
                db: db.to_string(),
                name: table.to_string(),
                state: Mutex::new(TableState::default()),
                flush_lock: tokio::sync::Mutex::new(()),
            })
        }))
    }

    /// The highest sequence number whose WAL records are no longer needed: everything
    /// up to it is either in committed SSTs or was never data of any table.
    ///
    /// Invariant (the WAL-truncation / manifest-commit ordering): a table's memtable
    /// data leaves memory only after the manifest edit holding its SSTs and its
    /// `Flushed` sequence is committed, so any record above this bound is still either
    /// in a memtable (and will be flushed) or not yet applied.
    pub(crate) fn truncatable_seq(&self) -> u64 {
        let applied = self.applied_seq.load(Ordering::SeqCst);
        self.all_tables()
            .iter()
            .filter_map(|t| t.state.lock().min_unflushed_seq())
            .map(|s| s.saturating_sub(1))
            .fold(applied, u64::min)
            // A drop's record stays until the drop is in the manifest.
            .min(
                self.pending_drops
                    .min_seq()
                    .map_or(u64::MAX, |s| s.saturating_sub(1)),
            )
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks.get_mut().drain(..) {
            t.abort();
        }
    }
}

/// Await a task spawned on a bulkhead, turning a cancelled task into `Closed`.
pub(crate) async fn join<T>(task: JoinHandle<T>) -> Result<T> {
    match task.await {
        Ok(v) => Ok(v),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Error::Closed),
    }
}

/// Sleep `d`, or less if the engine shuts down. Returns false on shutdown.
pub(crate) async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = shutdown.changed() => false,
    }
}
