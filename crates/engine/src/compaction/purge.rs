//! Applying deletes physically: rewrite the SSTs a tombstone still applies to (each
//! one alone, through the compaction executor, which leaves deleted rows out), then
//! drop the tombstones that apply to no SST and no memtable any more.

use std::sync::Arc;

use crate::core::EngineCore;
use crate::delete::applicable;
use crate::error::Result;
use crate::manifest::Action;
use crate::model::Scope;
use crate::table::Table;

use super::picker::CompactionTask;

/// Memory a rewrite of one file may take, per byte of the file (decoded Arrow plus its
/// merged copy; the picker estimates merges the same way).
const MEMORY_PER_FILE_BYTE: u64 = 8;

impl EngineCore {
    /// Rewrite the SSTs in `scope` that tombstones apply to and drop the tombstones
    /// applied everywhere. Returns how many files were rewritten.
    pub(crate) async fn purge_deletes(self: &Arc<Self>, scope: &Scope) -> Result<usize> {
        let tables: Vec<Arc<Table>> = self
            .all_tables()
            .into_iter()
            .filter(|t| match scope {
                Scope::All => true,
                Scope::Database(db) => &t.db == db,
                Scope::Table { db, table } => &t.db == db && &t.name == table,
            })
            .filter(|t| !t.state.lock().tombstones.is_empty())
            .collect();
        let mut rewritten = 0;
        for table in tables {
            let tasks: Vec<CompactionTask> = {
                let st = table.state.lock();
                st.ssts
                    .iter()
                    .map(|f| f.meta())
                    .filter(|m| {
                        !applicable(&st.tombstones, m.deletes_seen(), m.min_time, m.max_time)
                            .is_empty()
                    })
                    .map(|m| CompactionTask {
                        db: table.db.clone(),
                        table: table.name.clone(),
                        segment_start: m.segment_start,
                        inputs: vec![m.clone()],
                        estimated_memory: m.bytes.saturating_mul(MEMORY_PER_FILE_BYTE),
                    })
                    .collect()
            };
            for task in tasks {
                if self.is_closed() {
                    return Ok(rewritten);
                }
                if self.run_compaction(task).await?.is_some() {
                    rewritten += 1;
                }
            }
            self.drop_applied_tombstones(&table).await?;
        }
        Ok(rewritten)
    }

    /// Remove from the manifest and the table the tombstones that apply to none of its
    /// SSTs and memtables. Holds the flush and SST locks, so no flush or compaction
    /// commits a source between the check and the removal (and any later source is
    /// newer than the tombstones or written with them applied).
    async fn drop_applied_tombstones(&self, table: &Table) -> Result<()> {
        let _flush = table.flush_lock.lock().await;
        let _removing = table.sst_lock.lock().await;
        let seqs: Vec<u64> = {
            let st = table.state.lock();
            let mems = st
                .frozen
                .iter()
                .map(|f| &f.mem)
                .chain(std::iter::once(&st.active));
            let mut mem_bounds = Vec::new();
            for m in mems {
                if let Some((lo, hi)) = m.time_range() {
                    mem_bounds.push((m.max_seq(), lo, hi));
                }
            }
            st.tombstones
                .iter()
                // Not in the manifest yet: the flush that commits it must find it.
                .filter(|t| !st.uncommitted_tombstones.iter().any(|u| u.seq == t.seq))
                .filter(|t| {
                    st.ssts.iter().all(|f| {
                        let m = f.meta();
                        !t.applies(m.deletes_seen(), m.min_time, m.max_time)
                    }) && mem_bounds
                        .iter()
                        .all(|&(seq, lo, hi)| !t.applies(seq, lo, hi))
                })
                .map(|t| t.seq)
                .collect()
        };
        if seqs.is_empty() {
            return Ok(());
        }
        self.manifest
            .commit(vec![Action::RemoveTombstones {
                db: table.db.clone(),
                table: table.name.clone(),
                seqs: seqs.clone(),
            }])
            .await?;
        table
            .state
            .lock()
            .tombstones
            .retain(|t| !seqs.contains(&t.seq));
        tracing::info!(db = %table.db, table = %table.name, ?seqs, "deletes applied to every file; tombstones dropped");
        Ok(())
    }
}
