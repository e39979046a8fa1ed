//! The write path: admission (backpressure), validation and schema evolution, WAL
//! append, and the applier task that inserts committed batches into memtables in
//! sequence order and acknowledges their writers.
//!
//! ```text
//! write() ──spawn on `write`──> admit ─> validate+evolve schema ─> encode ─> WAL thread
//!                                                                              │ group
//!   ack <── applier task on `write` <── (seq, batch) in seq order <── fsync ───┘
//! ```
//!
//! Inserting in sequence order (one applier) keeps memtables identical to what a WAL
//! replay produces, so a read before and after a crash gives the same answer.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use bulkhead_runtime::RuntimeName;
use tokio::sync::{mpsc, oneshot};

use crate::core::{EngineCore, join};
use crate::drop_table::{DropSummary, PendingDrop};
use crate::error::{Error, Result};
use crate::model::{FieldType, SmolStr, WriteBatch};
use crate::schema::{TIME_COLUMN, TableSchema};
use crate::table::Table;
use crate::wal::{Appended, record, wal_io_error};

/// A record travelling through the WAL thread to the applier.
pub(crate) struct PendingWrite {
    pub(crate) db: String,
    pub(crate) op: WalOp,
    pub(crate) done: oneshot::Sender<Result<()>>,
    /// When it was handed to the WAL (for the `wal` stage's latency).
    pub(crate) appended_at: Instant,
}

pub(crate) enum WalOp {
    /// `tables[i]` is the table `batch.tables[i]` was evolved into (`None` for a table
    /// without rows): its rows go there even if the name was dropped meanwhile.
    Write {
        batch: WriteBatch,
        tables: Vec<Option<Arc<Table>>>,
    },
    Drop(PendingDrop),
    /// A delete and the tables it applies to (resolved when it was appended).
    Delete {
        op: crate::delete::DeleteOp,
        tables: Vec<Arc<Table>>,
    },
}

pub(crate) async fn write(engine: &Arc<EngineCore>, db: &str, batch: WriteBatch) -> Result<()> {
    if engine.is_closed() {
        return Err(Error::Closed);
    }
    if batch.is_empty() {
        return Ok(());
    }
    if let Err(e) = crate::names::check_database(db) {
        return Err(Error::InvalidInput(format!("database name {e}")));
    }
    let engine = Arc::clone(engine);
    let db = db.to_string();
    // Spawned (not `run`): a caller that goes away must not cancel a batch half way
    // between the WAL and the memtables.
    let runtimes = Arc::clone(&engine.runtimes);
    let start = Instant::now();
    let stages_of = Arc::clone(&engine);
    let task = runtimes.spawn(RuntimeName::Write, async move {
        engine.counters.stages.queue.record(start.elapsed());
        write_on_write_runtime(&engine, db, batch).await
    });
    let reply = join(task).await?;
    stages_of.counters.stages.total.record(start.elapsed());
    if let Err(e) = &reply {
        crate::limits::count(&stages_of, e);
    }
    reply
}

async fn write_on_write_runtime(engine: &EngineCore, db: String, batch: WriteBatch) -> Result<()> {
    let start = Instant::now();
    admit(engine).await?;
    validate_rows(&batch)?;
    crate::limits::load_series(engine, &db, &batch).await?;
    let series = crate::limits::batch_series(engine, &batch);
    let payload = record::encode_batch(&db, &batch);
    let (tx, rx) = oneshot::channel();
    {
        // Schemas evolve and records enter the WAL in one order, so a drop (which
        // takes this lock too) is either before or after the whole batch.
        let _guard = engine.schema_lock.lock();
        crate::limits::check(engine, &db, &batch, &series)?;
        evolve_schemas(
            engine,
            &db,
            &batch,
            engine.config.limits.max_columns_per_table,
        )?;
        let tables = batch
            .tables
            .iter()
            .map(|t| engine.table(&db, &t.table))
            .collect();
        let appended_at = Instant::now();
        engine.counters.stages.prepare.record(appended_at - start);
        engine.wal.append(
            payload,
            PendingWrite {
                db,
                op: WalOp::Write { batch, tables },
                done: tx,
                appended_at,
            },
        )?;
    }
    rx.await.map_err(|_| Error::Closed)?
}

/// `DROP TABLE` (`table: Some`) or `DROP DATABASE` (`None`); see `drop_table.rs`.
pub(crate) async fn drop_tables(
    engine: &Arc<EngineCore>,
    db: &str,
    table: Option<&str>,
    if_exists: bool,
) -> Result<DropSummary> {
    if engine.is_closed() {
        return Err(Error::Closed);
    }
    let engine = Arc::clone(engine);
    let (db, table) = (db.to_string(), table.map(str::to_string));
    let runtimes = Arc::clone(&engine.runtimes);
    let task = runtimes.spawn(RuntimeName::Write, async move {
        let (tx, rx) = oneshot::channel();
        let tables = {
            let _guard = engine.schema_lock.lock();
            let pending = crate::drop_table::detach(&engine, &db, table.as_deref(), if_exists)?;
            if pending.op.tables.is_empty() {
                return Ok(DropSummary::default());
            }
            let tables = pending.op.tables.clone();
            engine.wal.append(
                record::encode_drop(&pending.op),
                PendingWrite {
                    db,
                    op: WalOp::Drop(pending),
                    done: tx,
                    appended_at: Instant::now(),
                },
            )?;
            tables
        };
        rx.await.map_err(|_| Error::Closed)??;
        Ok(DropSummary { tables })
    });
    join(task).await?
}

/// Delete by predicate; see `delete.rs`.
pub(crate) async fn delete(
    engine: &Arc<EngineCore>,
    db: &str,
    req: crate::delete::DeleteRequest,
) -> Result<crate::delete::DeleteSummary> {
    if engine.is_closed() {
        return Err(Error::Closed);
    }
    if req.min_time > req.max_time {
        return Err(Error::InvalidInput(format!(
            "delete range is empty: start {} is after stop {}",
            req.min_time, req.max_time
        )));
    }
    let engine = Arc::clone(engine);
    let db = db.to_string();
    let runtimes = Arc::clone(&engine.runtimes);
    let task = runtimes.spawn(RuntimeName::Write, async move {
        let (tx, rx) = oneshot::channel();
        let names = {
            let _guard = engine.schema_lock.lock();
            let tables: Vec<Arc<Table>> = match &req.table {
                Some(name) => match engine.table(&db, name) {
                    Some(t) => vec![t],
                    None if engine.catalog.read().contains_key(&db) => {
                        return Err(Error::TableNotFound {
                            db: db.clone(),
                            table: name.clone(),
                        });
                    }
                    None => return Err(Error::DatabaseNotFound(db.clone())),
                },
                None => {
                    let cat = engine.catalog.read();
                    let d = cat
                        .get(&db)
                        .ok_or_else(|| Error::DatabaseNotFound(db.clone()))?;
                    d.values().cloned().collect()
                }
            };
            for t in &tables {
                let schema = Arc::clone(&t.state.lock().schema);
                crate::delete::check(&schema, &req.predicate)?;
            }
            if tables.is_empty() {
                return Ok(crate::delete::DeleteSummary::default());
            }
            let op = crate::delete::DeleteOp {
                db: db.clone(),
                tables: tables.iter().map(|t| t.name.clone()).collect(),
                min_time: req.min_time,
                max_time: req.max_time,
                predicate: req.predicate,
            };
            let names = op.tables.clone();
            engine.wal.append(
                record::encode_delete(&op),
                PendingWrite {
                    db,
                    op: WalOp::Delete { op, tables },
                    done: tx,
                    appended_at: Instant::now(),
                },
            )?;
            names
        };
        rx.await.map_err(|_| Error::Closed)??;
        Ok(crate::delete::DeleteSummary { tables: names })
    });
    join(task).await?
}

/// Put the tombstone of the delete record `seq` in each table's state and try once to
/// commit it to the manifest. A failed commit (a full disk) does not hold up the write
/// pipeline: the tombstone is kept as uncommitted, and the table's next flush commits
/// it in the same edit that advances its flushed sequence past it (`flush.rs`); until
/// then its WAL record is kept, so a crash replays the delete.
pub(crate) async fn apply_delete(
    engine: &EngineCore,
    op: &crate::delete::DeleteOp,
    tables: &[Arc<Table>],
    seq: u64,
) -> Result<()> {
    let tomb = Arc::new(op.tombstone(seq));
    let mut added = Vec::new();
    for t in tables {
        let mut st = t.state.lock();
        if seq <= st.flushed_seq || st.tombstones.iter().any(|x| x.seq == seq) {
            continue; // replay: already applied, or compacted away
        }
        st.tombstones.push(Arc::clone(&tomb));
        st.uncommitted_tombstones.push(Arc::clone(&tomb));
        added.push(Arc::clone(t));
    }
    engine.applied_seq.fetch_max(seq, Ordering::SeqCst);
    if !added.is_empty() && !engine.is_closed() {
        let mut actions = Vec::new();
        for t in &added {
            actions.push(crate::manifest::Action::AddTombstone {
                db: op.db.clone(),
                table: t.name.clone(),
                tombstone: (*tomb).clone(),
            });
            // Watchers learn of the delete durably, in the same edit (`watch.rs`).
            actions.extend(engine.watches.delete_actions(&op.db, &t.name, &tomb));
        }
        match engine.manifest.commit(actions).await {
            Ok(_) => {
                for t in &added {
                    t.state
                        .lock()
                        .uncommitted_tombstones
                        .retain(|x| x.seq != seq);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, seq, "could not commit a delete to the manifest; \
                    it stays in the WAL and is committed with the next flush");
                engine.flush_wanted.notify_one();
            }
        }
    }
    engine.compactor.wake.notify_one();
    Ok(())
}

/// Backpressure: stall while memtables hold the write buffer, reject at twice it.
///
/// A stalled writer wakes whenever memory is released or a flush attempt ends (also a
/// failed one), re-checks, and gives up with `Overloaded` after `max_write_stall`, so
/// it can never wait forever on a flush that keeps failing (GreptimeDB #4012).
async fn admit(engine: &EngineCore) -> Result<()> {
    let limit = engine.memory.limit;
    let mut stalled_since: Option<Instant> = None;
    loop {
        let used = engine.memory.used();
        if used >= limit.saturating_mul(2) {
            engine.counters.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(Error::Overloaded {
                used_bytes: used,
                limit_bytes: limit,
            });
        }
        if used < limit {
            return Ok(());
        }
        if engine.is_closed() {
            return Err(Error::Closed);
        }
        let since = *stalled_since.get_or_insert_with(|| {
            engine.counters.stalled.fetch_add(1, Ordering::Relaxed);
            Instant::now()
        });
        let waited = since.elapsed();
        if waited >= engine.config.max_write_stall {
            engine.counters.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(Error::Overloaded {
                used_bytes: used,
                limit_bytes: limit,
            });
        }
        engine.flush_wanted.notify_one();
        let released = engine.memory.released.notified();
        let tick =
            (engine.config.max_write_stall - waited).min(std::time::Duration::from_millis(50));
        let _ = tokio::time::timeout(tick, released).await;
    }
}

/// Checks that need no schema: names, at least one field, unique tag keys.
fn validate_rows(batch: &WriteBatch) -> Result<()> {
    for t in &batch.tables {
        if let Err(e) = crate::names::check_table(&t.table) {
            return Err(Error::InvalidInput(format!("table name {e}")));
        }
        for row in &t.rows {
            if row.fields.is_empty() {
                return Err(Error::InvalidInput(format!(
                    "a row of `{}` has no fields",
                    t.table
                )));
            }
            for (k, _) in &row.tags {
                if let Err(e) = crate::names::check_column(k) {
                    return Err(Error::InvalidInput(format!(
                        "a tag key of `{}` {e}",
                        t.table
                    )));
                }
                if k == TIME_COLUMN {
                    return Err(Error::InvalidInput(format!(
                        "invalid tag name `{k}` in `{}`",
                        t.table
                    )));
                }
            }
            for (k, _) in &row.fields {
                if let Err(e) = crate::names::check_column(k) {
                    return Err(Error::InvalidInput(format!(
                        "a field key of `{}` {e}",
                        t.table
                    )));
                }
                if k == TIME_COLUMN {
                    return Err(Error::InvalidInput(format!(
                        "invalid field name `{k}` in `{}`",
                        t.table
                    )));
                }
            }
            if has_duplicate_key(&row.tags) {
                return Err(Error::InvalidInput(format!(
                    "duplicate tag key in a row of `{}`",
                    t.table
                )));
            }
        }
    }
    Ok(())
}

/// Whether two tags share a key. Rows have a handful of tags: comparing pairs beats
/// hashing them; a hash set only for unusually wide rows.
fn has_duplicate_key(tags: &[(SmolStr, SmolStr)]) -> bool {
    if tags.len() <= 16 {
        return tags
            .iter()
            .enumerate()
            .any(|(i, (k, _))| tags[i + 1..].iter().any(|(other, _)| other == k));
    }
    let mut seen = foldhash::HashSet::with_capacity_and_hasher(tags.len(), Default::default());
    !tags.iter().all(|(k, _)| seen.insert(k.as_str()))
}

/// Check every column of `batch` against the table schemas and add the new ones.
/// All-or-nothing: conflicts are found before anything changes. Caller holds
/// `schema_lock`. Also used by WAL replay (with `max_columns` 0: no limit). A table
/// that would get new columns past `max_columns` (tags + fields) refuses the batch.
pub(crate) fn evolve_schemas(
    engine: &EngineCore,
    db: &str,
    batch: &WriteBatch,
    max_columns: usize,
) -> Result<()> {
    // Phase 1: compute the new schema of every touched table, without publishing.
    let mut planned: HashMap<&str, TableSchema> = HashMap::new();
    for t in batch.tables.iter().filter(|t| !t.rows.is_empty()) {
        // Fast path: every column already exists with the right type (no clone).
        if !planned.contains_key(t.table.as_str())
            && let Some(tb) = engine.table(db, &t.table)
        {
            let current = Arc::clone(&tb.state.lock().schema);
            if all_known(&current, db, t)? {
                continue;
            }
        }
        if !planned.contains_key(t.table.as_str()) {
            let current = engine
                .table(db, &t.table)
                .map(|tb| (*tb.state.lock().schema).clone())
                .unwrap_or_default();
            planned.insert(t.table.as_str(), current);
        }
        let Some(schema) = planned.get_mut(t.table.as_str()) else {
            continue;
        };
        for row in &t.rows {
            for (k, _) in &row.tags {
                if schema.field(k).is_some() {
                    return Err(Error::InvalidInput(format!(
                        "column `{k}` of {db}.{} is a field, written as a tag",
                        t.table
                    )));
                }
                schema.add_tag(k);
            }
            for (k, v) in &row.fields {
                let ty: FieldType = v.field_type();
                if schema.tag_id(k).is_some() {
                    return Err(Error::InvalidInput(format!(
                        "column `{k}` of {db}.{} is a tag, written as a field",
                        t.table
                    )));
                }
                match schema.field(k) {
                    Some((_, existing)) if existing != ty => {
                        return Err(Error::SchemaConflict {
                            db: db.to_string(),
                            table: t.table.clone(),
                            column: k.to_string(),
                            existing,
                            attempted: ty,
                        });
                    }
                    Some(_) => {}
                    None => {
                        schema.add_field(k, ty);
                    }
                }
            }
        }
    }
    if max_columns > 0 {
        for (name, schema) in &planned {
            let before = engine.table(db, name).map_or(0, |t| {
                let s = &t.state.lock().schema;
                s.tags.len() + s.fields.len()
            });
            let after = schema.tags.len() + schema.fields.len();
            if after > before && after > max_columns {
                return Err(crate::limits::exceeded(
                    "max_columns_per_table",
                    max_columns,
                    format!("`{db}.{name}` would have {after} columns"),
                ));
            }
        }
    }
    // Phase 2: publish. Tables are created only now, so a rejected batch leaves no
    // trace, not even an empty table.
    for (name, schema) in planned {
        let table = engine.table_or_create(db, name);
        let mut st = table.state.lock();
        if st.schema.tags.len() != schema.tags.len()
            || st.schema.fields.len() != schema.fields.len()
        {
            st.schema = Arc::new(schema);
        }
    }
    Ok(())
}

/// Whether every column of `t` exists in `schema` with the written type. A conflict
/// with an existing column is an error whatever else the batch adds.
fn all_known(schema: &TableSchema, db: &str, t: &crate::model::TableWrite) -> Result<bool> {
    let mut known = true;
    for row in &t.rows {
        for (k, _) in &row.tags {
            if schema.tag_id(k).is_none() {
                known = false;
            }
        }
        for (k, v) in &row.fields {
            match schema.field(k) {
                Some((_, existing)) if existing != v.field_type() => {
                    return Err(Error::SchemaConflict {
                        db: db.to_string(),
                        table: t.table.clone(),
                        column: k.to_string(),
                        existing,
                        attempted: v.field_type(),
                    });
                }
                Some(_) => {}
                None => known = false,
            }
        }
    }
    Ok(known)
}

/// Insert a committed batch into the memtables. Returns bytes added. `handles` are
/// the tables the write evolved (see [`WalOp::Write`]); a replay looks them up by name.
pub(crate) fn apply(
    engine: &EngineCore,
    db: &str,
    batch: &WriteBatch,
    seq: u64,
    handles: Option<&[Option<Arc<Table>>]>,
) -> Result<usize> {
    let seg = engine.config.segment_nanos();
    let mut added = 0usize;
    let mut rows = 0u64;
    for (i, t) in batch.tables.iter().enumerate() {
        if t.rows.is_empty() {
            continue;
        }
        let handle = match handles {
            Some(h) => h.get(i).cloned().flatten(),
            None => engine.table(db, &t.table),
        };
        let Some(table) = handle else {
            return Err(Error::TableNotFound {
                db: db.to_string(),
                table: t.table.clone(),
            });
        };
        let wait = Instant::now();
        let mut st = table.state.lock();
        engine.counters.stages.lock_wait.record(wait.elapsed());
        // A memtable never holds rows from both sides of a delete (`delete.rs`).
        if !st.active.is_empty()
            && crate::delete::separates(&st.tombstones, st.active.max_seq(), seq)
        {
            let mem = std::mem::take(&mut st.active);
            let schema = Arc::clone(&st.schema);
            st.frozen
                .push(Arc::new(crate::table::FrozenMemtable::new(mem, schema)));
        }
        let schema = Arc::clone(&st.schema);
        let mut table_added = 0;
        let mut resolver = crate::memtable::RowResolver::new(&schema);
        for row in &t.rows {
            table_added += st.active.insert_resolved(&mut resolver, row, seq, seg)?;
        }
        rows += t.rows.len() as u64;
        added += table_added;
        engine.watches.written(db, &t.table, &t.rows);
        if st.mem_bytes() >= engine.config.memtable.table_flush_size {
            engine.flush_wanted.notify_one();
        }
    }
    engine.memory.add(added);
    engine.applied_seq.fetch_max(seq, Ordering::SeqCst);
    engine
        .counters
        .rows_written
        .fetch_add(rows, Ordering::Relaxed);
    if engine.memory.past_flush_mark() {
        engine.flush_wanted.notify_one();
    }
    Ok(added)
}

/// The applier: receives WAL outcomes in sequence order, applies and acknowledges.
pub(crate) async fn run_applier(
    engine: Weak<EngineCore>,
    mut rx: mpsc::UnboundedReceiver<Appended<PendingWrite>>,
) {
    while let Some(Appended {
        result,
        item,
        group_started,
        committed_at,
    }) = rx.recv().await
    {
        let PendingWrite {
            db,
            op,
            done,
            appended_at,
        } = item;
        let Some(engine) = engine.upgrade() else {
            let _ = done.send(Err(Error::Closed));
            continue;
        };
        match (result, op) {
            (Err(msg), WalOp::Write { .. }) => {
                let _ = done.send(Err(wal_io_error(msg)));
            }
            (Ok(seq), WalOp::Write { batch, tables }) => {
                engine.counters.writes.fetch_add(1, Ordering::Relaxed);
                let applying = Instant::now();
                let stages = &engine.counters.stages;
                stages.wal.record(applying - appended_at);
                stages
                    .wal_queue
                    .record(group_started.saturating_duration_since(appended_at));
                stages
                    .wal_handoff
                    .record(applying.saturating_duration_since(committed_at));
                let reply = apply(&engine, &db, &batch, seq, Some(&tables)).map(|_| ());
                stages.apply.record(applying.elapsed());
                let _ = done.send(reply);
            }
            (Err(msg), WalOp::Delete { .. }) => {
                let _ = done.send(Err(wal_io_error(msg)));
            }
            (Ok(seq), WalOp::Delete { op, tables }) => {
                let reply = apply_delete(&engine, &op, &tables, seq).await;
                let _ = done.send(reply);
            }
            (Err(msg), WalOp::Drop(pending)) => {
                crate::drop_table::reattach(&engine, pending);
                let _ = done.send(Err(wal_io_error(msg)));
            }
            (Ok(seq), WalOp::Drop(pending)) => {
                // Every earlier record is applied; the rest of the drop (waiting for a
                // running flush, the manifest commit) must not hold up later writes.
                crate::drop_table::reached(&engine, &pending, seq);
                engine.applied_seq.fetch_max(seq, Ordering::SeqCst);
                let runtimes = Arc::clone(&engine.runtimes);
                runtimes.spawn(RuntimeName::Write, async move {
                    let reply = crate::drop_table::finish(&engine, pending, seq).await;
                    let _ = done.send(reply);
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{SmolStr, has_duplicate_key};

    fn tags(keys: &[&str]) -> Vec<(SmolStr, SmolStr)> {
        keys.iter()
            .map(|k| (SmolStr::new(k), SmolStr::new("v")))
            .collect()
    }

    #[test]
    fn duplicate_tag_keys_are_found_in_narrow_and_wide_rows() {
        assert!(!has_duplicate_key(&tags(&[])));
        assert!(!has_duplicate_key(&tags(&["a", "b", "c"])));
        assert!(has_duplicate_key(&tags(&["a", "b", "a"])));
        let wide: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
        let mut keys: Vec<&str> = wide.iter().map(String::as_str).collect();
        assert!(!has_duplicate_key(&tags(&keys)));
        keys.push("t7");
        assert!(has_duplicate_key(&tags(&keys)));
    }
}
