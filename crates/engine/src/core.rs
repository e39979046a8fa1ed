//! [`EngineCore`]: the state the engine's paths share (config, store, runtimes,
//! catalog, WAL, manifest, memory accounting, counters, shutdown). `write`, `flush`,
//! `read`, `recovery` and `compaction` take the core; [`crate::Engine`] is the public
//! façade over it and owns its lifetime.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sync::{Mutex, RwLock};
use arrow::datatypes::SchemaRef;
use bulkhead_runtime::Runtimes;
use object_store::ObjectStore;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::config::EngineConfig;
use crate::error::{Error, Result};
use crate::manifest::{Action, Manifest};
use crate::memtable::TimeRange;
use crate::model::Scope;
use crate::read::TableSnapshot;
use crate::sst::{Purger, SstFile, SstMeta};
use crate::stats::StatsCounters;
use crate::table::{Catalog, Table};
use crate::wal::Wal;
use crate::write::PendingWrite;

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

    /// Memtables hold enough that the flush scheduler should run
    /// ([`crate::flush_policy::flush_mark`]), before writers stall at the limit.
    pub(crate) fn past_flush_mark(&self) -> bool {
        self.used() >= crate::flush_policy::flush_mark(self.limit)
    }
}

/// The engine's shared state: what the write, flush, read, recovery and compaction
/// paths work on. [`crate::Engine`] is the public façade over it.
pub(crate) struct EngineCore {
    pub(crate) config: EngineConfig,
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) runtimes: Arc<Runtimes>,
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
    /// Flushes in progress, which background manifest commits give way to.
    pub(crate) flush_gate: crate::flush_gate::FlushGate,
    pub(crate) counters: StatsCounters,
    /// Watches of the layers above on tables' late writes and deletes (`watch.rs`).
    pub(crate) watches: crate::watch::Watches,
    pub(crate) closed: AtomicBool,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Exclusive lock on `wal_dir/LOCK`, released by `close` or when the engine drops.
    pub(crate) wal_lock: Mutex<Option<std::fs::File>>,
}

impl std::fmt::Debug for EngineCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineCore")
            .field("wal_dir", &self.config.wal_dir)
            .finish_non_exhaustive()
    }
}

impl EngineCore {
    /// Sync the WAL and stop background work. Memtables are not flushed (the WAL holds
    /// them); later calls fail with [`Error::Closed`].
    pub(crate) async fn close(&self) -> Result<()> {
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

    /// The Arrow schema of a table: tags (sorted by name, `Dictionary(Int32, Utf8)`),
    /// fields (sorted by name), then `time` (`Timestamp(Nanosecond, "UTC")`). Each field
    /// carries metadata `bulkhead.role` = `tag` / `field` / `time`.
    pub(crate) fn table_schema(&self, db: &str, table: &str) -> Option<SchemaRef> {
        let t = self.table(db, table)?;
        let schema = Arc::clone(&t.state.lock().schema);
        Some(schema.arrow_schema())
    }

    /// A consistent snapshot of one table restricted to `range`: the memtable rows in
    /// range (copied now) and the SSTs overlapping it (held, so they stay readable).
    pub(crate) fn snapshot(
        &self,
        db: &str,
        table: &str,
        range: TimeRange,
    ) -> Result<TableSnapshot> {
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
                let cutoff = now_nanos().saturating_sub(ttl);
                range.intersect(&TimeRange::inclusive(cutoff, i64::MAX))
            }
            None => range,
        };
        TableSnapshot::take(self, &t, range)
    }

    /// Atomically replace SSTs of one table: one manifest edit removes `remove` (file
    /// ids) and adds `add` (already uploaded). Readers see either the old or the new
    /// set; removed files are deleted once no snapshot holds them. For compaction and
    /// retention.
    pub(crate) async fn replace_ssts(
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
        // Not the flush lock: flushes only add SSTs, and one waiting here for this
        // commit's PUT is what the seed's compaction did to its flushes.
        let _removing = t.sst_lock.lock().await;
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
        // A flush about to commit goes first (`flush_gate.rs`).
        self.flush_gate
            .wait_idle(
                crate::flush_gate::BACKGROUND_COMMIT_MAX_WAIT,
                &self.counters.stages.background_commit_wait,
            )
            .await;
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

    pub(crate) fn tables_in(&self, scope: &Scope) -> Result<Vec<Arc<Table>>> {
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
        Arc::clone(
            tables
                .entry(table.to_string())
                .or_insert_with(|| Arc::new(Table::new(db, table))),
        )
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

    /// The TTL of `db.table`: a per-table override, else a per-database one, else the
    /// default. A zero override means "keep forever" (it exempts the table or database
    /// from a default TTL).
    /// A TTL committed to the manifest (`settings.rs`, a rollup's own) comes first.
    pub(crate) fn ttl(&self, db: &str, table: &str) -> Option<Duration> {
        if let Some(n) = self.manifest.table_ttl(db, table) {
            return (n > 0).then(|| Duration::from_nanos(n));
        }
        let o = &self.config.retention.overrides;
        match o.get(&format!("{db}.{table}")).or_else(|| o.get(db)) {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(*d),
            None => Some(self.config.retention.ttl).filter(|d| !d.is_zero()),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

impl Drop for EngineCore {
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
/// Wall-clock time in nanoseconds since the epoch (retention cut-offs, compaction,
/// the query layer's `now()`).
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
