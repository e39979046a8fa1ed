//! `DROP TABLE` and `DROP DATABASE`. A drop is a WAL record, so it is ordered with the
//! writes around it, durable before it is acknowledged, and replayed after a crash.
//!
//! 1. Under `schema_lock` (which writes hold while they evolve schemas and append to
//!    the WAL), the tables leave the catalog and the drop record is appended. A write
//!    appended after it creates a new table of the same name. Writes appended before
//!    it carry handles to the tables they evolved, so the applier still puts their
//!    rows in the old (dropped) table, exactly as a replay does.
//! 2. When the applier reaches the drop record, [`finish`] runs: it waits for the old
//!    table's running flush or compaction commit (its flush and SST locks), releases its
//!    memtables, commits `DropTable` to the manifest, marks its SSTs deleted (they are
//!    removed once no reader holds them), then acknowledges.
//!
//! While a drop is pending, the WAL is not truncated past its record, and a new table
//! of the same name is not flushed, so its manifest edits always follow the drop's.

use std::collections::HashMap;
use std::sync::Arc;

use crate::sync::Mutex;
use tokio::sync::Notify;

use crate::core::EngineCore;
use crate::error::{Error, Result};
use crate::manifest::Action;
use crate::table::Table;
use crate::wal::record::DropOp;

/// A name being dropped: how many drops of it are pending, and the lowest record
/// sequence among them once the applier has reached it.
type Pending = (usize, Option<u64>);

/// Drops appended but not yet committed to the manifest.
#[derive(Debug, Default)]
pub(crate) struct PendingDrops {
    /// (db, table) -> its pending drops.
    names: Mutex<HashMap<(String, String), Pending>>,
    /// Notified whenever a drop finishes.
    done: Notify,
}

impl PendingDrops {
    fn add(&self, db: &str, tables: &[String]) {
        let mut names = self.names.lock();
        for t in tables {
            names.entry((db.to_string(), t.clone())).or_default().0 += 1;
        }
    }

    /// The applier reached the drop record `seq`: the WAL must keep it until the drop
    /// is in the manifest.
    fn reached(&self, db: &str, tables: &[String], seq: u64) {
        let mut names = self.names.lock();
        for t in tables {
            if let Some(e) = names.get_mut(&(db.to_string(), t.clone())) {
                e.1 = Some(e.1.map_or(seq, |s| s.min(seq)));
            }
        }
    }

    fn remove(&self, db: &str, tables: &[String]) {
        {
            let mut names = self.names.lock();
            for t in tables {
                let key = (db.to_string(), t.clone());
                if let Some(e) = names.get_mut(&key) {
                    e.0 -= 1;
                    if e.0 == 0 {
                        names.remove(&key);
                    }
                }
            }
        }
        self.done.notify_waiters();
    }

    /// The lowest sequence number of a drop record not yet in the manifest.
    pub(crate) fn min_seq(&self) -> Option<u64> {
        self.names.lock().values().filter_map(|e| e.1).min()
    }

    /// Whether a drop of `db.table` is pending.
    pub(crate) fn is_pending(&self, db: &str, table: &str) -> bool {
        self.names
            .lock()
            .contains_key(&(db.to_string(), table.to_string()))
    }

    /// Wait until no drop of `db.table` is pending (a new table of a dropped name
    /// flushes only after the drop is committed).
    pub(crate) async fn wait_for(&self, db: &str, table: &str) {
        loop {
            let done = self.done.notified();
            if !self
                .names
                .lock()
                .contains_key(&(db.to_string(), table.to_string()))
            {
                return;
            }
            done.await;
        }
    }
}

/// What a drop removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropSummary {
    pub tables: Vec<String>,
}

/// A drop travelling through the WAL with the tables it took out of the catalog.
pub(crate) struct PendingDrop {
    pub(crate) op: DropOp,
    pub(crate) old: Vec<Arc<Table>>,
}

/// Step 1, under `schema_lock`: take the tables out of the catalog. `table: None`
/// drops the whole database. Errors if nothing by that name exists (and `if_exists`
/// is false).
pub(crate) fn detach(
    engine: &EngineCore,
    db: &str,
    table: Option<&str>,
    if_exists: bool,
) -> Result<PendingDrop> {
    let mut cat = engine.catalog.write();
    let Some(tables) = cat.get_mut(db) else {
        return if if_exists {
            Ok(PendingDrop {
                op: DropOp {
                    db: db.to_string(),
                    tables: Vec::new(),
                    database: table.is_none(),
                },
                old: Vec::new(),
            })
        } else {
            Err(Error::DatabaseNotFound(db.to_string()))
        };
    };
    let old: Vec<Arc<Table>> = match table {
        Some(name) => match tables.remove(name) {
            Some(t) => vec![t],
            None if if_exists => Vec::new(),
            None => {
                return Err(Error::TableNotFound {
                    db: db.to_string(),
                    table: name.to_string(),
                });
            }
        },
        None => std::mem::take(tables).into_values().collect(),
    };
    if tables.is_empty() {
        cat.remove(db);
    }
    let op = DropOp {
        db: db.to_string(),
        tables: old.iter().map(|t| t.name.clone()).collect(),
        database: table.is_none(),
    };
    engine.pending_drops.add(db, &op.tables);
    crate::limits::forget(engine, db, &op.tables);
    Ok(PendingDrop { op, old })
}

/// The drop record could not be written: put the tables back where their names are
/// still free, so the live state matches what a replay will see.
pub(crate) fn reattach(engine: &EngineCore, pending: PendingDrop) {
    {
        let mut cat = engine.catalog.write();
        for t in &pending.old {
            let tables = cat.entry(t.db.clone()).or_default();
            if tables.contains_key(&t.name) {
                tracing::error!(db = %t.db, table = %t.name,
                    "a failed drop's table was re-created meanwhile; its old rows stay hidden until a restart");
            } else {
                tables.insert(t.name.clone(), Arc::clone(t));
            }
        }
    }
    engine
        .pending_drops
        .remove(&pending.op.db, &pending.op.tables);
}

/// Step 2, once the applier reaches the drop record `seq`.
pub(crate) fn reached(engine: &EngineCore, pending: &PendingDrop, seq: u64) {
    engine
        .pending_drops
        .reached(&pending.op.db, &pending.op.tables, seq);
}

/// Step 3: release the old tables, commit the drop to the manifest, delete their SSTs.
pub(crate) async fn finish(engine: &EngineCore, pending: PendingDrop, seq: u64) -> Result<()> {
    let result = commit(engine, &pending, seq).await;
    engine
        .pending_drops
        .remove(&pending.op.db, &pending.op.tables);
    result
}

async fn commit(engine: &EngineCore, pending: &PendingDrop, seq: u64) -> Result<()> {
    // Hold every old table's flush and SST locks: a flush or compaction of it that is
    // running commits first, and none starts before the drop is committed.
    let mut guards = Vec::with_capacity(pending.old.len());
    for t in &pending.old {
        guards.push((t.flush_lock.lock().await, t.sst_lock.lock().await));
    }
    let actions: Vec<Action> = pending
        .op
        .tables
        .iter()
        .map(|t| Action::DropTable {
            db: pending.op.db.clone(),
            table: t.clone(),
            seq,
        })
        .collect();
    if !actions.is_empty() {
        engine.manifest.commit(actions).await?;
    }
    let mut released = 0;
    for t in &pending.old {
        let mut st = t.state.lock();
        released += st.mem_bytes();
        st.active = Default::default();
        st.frozen.clear();
        for s in st.ssts.drain(..) {
            s.mark_deleted();
        }
    }
    if released > 0 {
        engine.memory.release(released);
    }
    drop(guards);
    tracing::info!(db = %pending.op.db, tables = ?pending.op.tables, seq, "dropped");
    engine.wal.truncate(engine.truncatable_seq());
    Ok(())
}

/// Replay a drop record (recovery, before background work starts): the listed tables
/// that exist leave the catalog, and the drop is committed as live.
pub(crate) async fn replay(engine: &EngineCore, op: DropOp, seq: u64) -> Result<()> {
    let pending = {
        let _guard = engine.schema_lock.lock();
        let mut cat = engine.catalog.write();
        let mut old = Vec::new();
        if let Some(tables) = cat.get_mut(&op.db) {
            old.extend(op.tables.iter().filter_map(|t| tables.remove(t)));
            if tables.is_empty() {
                cat.remove(&op.db);
            }
        }
        engine.pending_drops.add(&op.db, &op.tables);
        PendingDrop { op, old }
    };
    reached(engine, &pending, seq);
    finish(engine, pending, seq).await
}
