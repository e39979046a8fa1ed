//! When compactions run: after flushes and on a timer (background), or on request
//! (manual), bounded by a concurrency cap and a memory budget. Also applies retention.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use crate::sync::Mutex;
use bulkhead_runtime::RuntimeName;
use tokio::sync::{Notify, Semaphore, watch};

use crate::core::{EngineCore, now_nanos, sleep_or_shutdown};
use crate::error::{Error, Result};
use crate::memtable::segment_of;
use crate::model::Scope;
use crate::sst::SstMeta;

use super::CompactionConfig;
use super::executor::{self, FailPoints};
use super::picker::{CompactionTask, PickMode, pick};

/// Serializes compactions of one table.
type TableLock = Arc<tokio::sync::Mutex<()>>;

/// The memory budget is counted in KiB permits (a semaphore counts `u32`s).
const BUDGET_UNIT: u64 = 1024;

/// Compaction state shared by the scheduler, manual compactions and stats.
#[derive(Debug)]
pub(crate) struct Compactor {
    pub(crate) wake: Arc<Notify>,
    slots: Semaphore,
    budget: Semaphore,
    budget_permits: u32,
    /// One compaction at a time per table: (db, table) -> its lock.
    running: Mutex<HashMap<(String, String), TableLock>>,
    pub(crate) fail_points: FailPoints,
    pub(crate) compactions: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) input_bytes: AtomicU64,
    pub(crate) output_bytes: AtomicU64,
    pub(crate) duration_nanos: AtomicU64,
    pub(crate) expired_ssts: AtomicU64,
}

impl Compactor {
    pub(crate) fn stats(&self) -> crate::stats::CompactionStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        crate::stats::CompactionStats {
            completed: get(&self.compactions),
            failures: get(&self.failures),
            input_bytes: get(&self.input_bytes),
            output_bytes: get(&self.output_bytes),
            duration: std::time::Duration::from_nanos(get(&self.duration_nanos)),
            expired_ssts: get(&self.expired_ssts),
        }
    }

    pub(crate) fn new(cfg: &CompactionConfig) -> Self {
        let budget_permits = u32::try_from(cfg.memory_budget / BUDGET_UNIT)
            .unwrap_or(u32::MAX)
            .max(1);
        Self {
            wake: Arc::new(Notify::new()),
            slots: Semaphore::new(cfg.concurrency()),
            budget: Semaphore::new(budget_permits as usize),
            budget_permits,
            running: Mutex::new(HashMap::new()),
            fail_points: FailPoints::default(),
            compactions: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            input_bytes: AtomicU64::new(0),
            output_bytes: AtomicU64::new(0),
            duration_nanos: AtomicU64::new(0),
            expired_ssts: AtomicU64::new(0),
        }
    }
}

/// What a manual compaction did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CompactionSummary {
    pub tasks: usize,
    pub input_files: usize,
    pub input_bytes: u64,
    pub output_bytes: u64,
    /// SSTs dropped because their whole segment is past the table's TTL.
    pub expired_files: usize,
    /// Files left alone because alone they exceed the memory budget or output cap.
    pub oversized_files: usize,
    /// Files rewritten without the rows deletes removed (`purge.rs`).
    pub purged_files: usize,
}

impl EngineCore {
    /// Compact `scope` now (`Forced` or `Rewrite`), then apply retention and deletes.
    pub(crate) async fn compact_scope(
        self: &Arc<Self>,
        scope: &Scope,
        mode: PickMode,
    ) -> Result<CompactionSummary> {
        let mut summary = CompactionSummary {
            expired_files: self.apply_retention(scope).await?,
            ..CompactionSummary::default()
        };
        let decision = pick(
            &self.live_ssts(scope),
            &self.config.compaction,
            self.config.segment_nanos(),
            now_nanos(),
            mode,
        );
        summary.oversized_files = decision.oversized.len();
        let mut tasks = decision.tasks;
        // A background compaction may have merged some inputs meanwhile: those tasks
        // come back stale and the picker runs again on the new state.
        for _round in 0..8 {
            let mut stale = false;
            for task in tasks {
                match self.run_compaction(task.clone()).await? {
                    Some(out_bytes) => {
                        summary.tasks += 1;
                        summary.input_files += task.inputs.len();
                        summary.input_bytes += task.input_bytes();
                        summary.output_bytes += out_bytes;
                    }
                    None => stale = true,
                }
            }
            if !stale {
                break;
            }
            tasks = pick(
                &self.live_ssts(scope),
                &self.config.compaction,
                self.config.segment_nanos(),
                now_nanos(),
                mode,
            )
            .tasks;
        }
        summary.purged_files = self.purge_deletes(scope).await?;
        Ok(summary)
    }

    /// Live SSTs of the tables in `scope`.
    fn live_ssts(&self, scope: &Scope) -> Vec<SstMeta> {
        self.all_tables()
            .into_iter()
            .filter(|t| match scope {
                Scope::All => true,
                Scope::Database(db) => &t.db == db,
                Scope::Table { db, table } => &t.db == db && &t.name == table,
            })
            .flat_map(|t| {
                t.state
                    .lock()
                    .ssts
                    .iter()
                    .map(|s| s.meta().clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Drop SSTs whose whole segment is older than the table's TTL; returns how many.
    async fn apply_retention(&self, scope: &Scope) -> Result<usize> {
        let now = now_nanos();
        let seg = self.config.segment_nanos();
        let mut expired_by_table: std::collections::BTreeMap<(String, String), Vec<String>> =
            Default::default();
        for m in self.live_ssts(scope) {
            let Some(ttl) = self.ttl(&m.db, &m.table) else {
                continue;
            };
            let cutoff = now.saturating_sub(i64::try_from(ttl.as_nanos()).unwrap_or(i64::MAX));
            if segment_of(m.segment_start, seg).last < cutoff {
                expired_by_table
                    .entry((m.db.clone(), m.table.clone()))
                    .or_default()
                    .push(m.file_id);
            }
        }
        let mut dropped = 0;
        for ((db, table), ids) in expired_by_table {
            self.replace_ssts(&db, &table, &ids, Vec::new()).await?;
            tracing::info!(%db, %table, files = ids.len(), "dropped SSTs past the retention period");
            dropped += ids.len();
        }
        self.compactor
            .expired_ssts
            .fetch_add(dropped as u64, Ordering::Relaxed);
        Ok(dropped)
    }

    /// Run one task on `compact` within the concurrency and memory limits; returns the
    /// output's bytes. `None` if the task went stale (another compaction replaced some
    /// of its inputs first).
    pub(crate) async fn run_compaction(
        self: &Arc<Self>,
        task: CompactionTask,
    ) -> Result<Option<u64>> {
        let c = &self.compactor;
        let key = (task.db.clone(), task.table.clone());
        let table_lock = Arc::clone(c.running.lock().entry(key.clone()).or_default());
        let _table = table_lock.lock().await;
        let live = self.live_ssts(&Scope::Table {
            db: key.0.clone(),
            table: key.1.clone(),
        });
        if !task
            .inputs
            .iter()
            .all(|i| live.iter().any(|m| m.file_id == i.file_id))
        {
            return Ok(None);
        }
        let _slot = c.slots.acquire().await.map_err(|_| Error::Closed)?;
        let permits = u32::try_from(task.estimated_memory.div_ceil(BUDGET_UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, c.budget_permits);
        let _budget = c
            .budget
            .acquire_many(permits)
            .await
            .map_err(|_| Error::Closed)?;
        let engine = Arc::clone(self);
        let input_bytes = task.input_bytes();
        let start = Instant::now();
        let result = self
            .runtimes
            .run(RuntimeName::Compact, async move {
                executor::run(&engine, &task).await
            })
            .await;
        let result = result
            .map_err(Error::from)
            .and_then(|r| r)
            .map(|out| out.map_or(0, |m| m.bytes));
        match &result {
            Ok(out_bytes) => {
                c.compactions.fetch_add(1, Ordering::Relaxed);
                c.input_bytes.fetch_add(input_bytes, Ordering::Relaxed);
                c.output_bytes.fetch_add(*out_bytes, Ordering::Relaxed);
                c.duration_nanos
                    .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                c.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(db = %key.0, table = %key.1, error = %e, "compaction failed");
            }
        }
        result.map(Some)
    }
}

/// The background loop: woken after flushes, and every `check_interval`.
/// Holds only a weak reference between rounds: dropping the engine stops it.
pub(crate) async fn run_scheduler(engine: Weak<EngineCore>, mut shutdown: watch::Receiver<bool>) {
    let Some((wake, interval, enabled)) = engine.upgrade().map(|e| {
        let c = &e.config.compaction;
        (Arc::clone(&e.compactor.wake), c.check_interval, c.enabled)
    }) else {
        return;
    };
    loop {
        let woken = tokio::select! {
            _ = wake.notified() => true,
            alive = sleep_or_shutdown(interval, &mut shutdown) => alive,
        };
        if !woken || *shutdown.borrow() {
            return;
        }
        if !enabled {
            continue;
        }
        let Some(e) = engine.upgrade() else { return };
        if let Err(err) = e.apply_retention(&Scope::All).await {
            tracing::warn!(error = %err, "retention failed");
        }
        let decision = pick(
            &e.live_ssts(&Scope::All),
            &e.config.compaction,
            e.config.segment_nanos(),
            now_nanos(),
            PickMode::Background,
        );
        for m in &decision.oversized {
            tracing::warn!(path = %m.path, bytes = m.bytes, "SST too large to compact within the memory budget; skipped");
        }
        for task in decision.tasks {
            if e.is_closed() {
                return;
            }
            // Errors are logged and counted; the next round retries.
            let _ = e.run_compaction(task).await;
        }
        if let Err(err) = e.purge_deletes(&Scope::All).await {
            tracing::warn!(error = %err, "applying deletes failed");
        }
    }
}
