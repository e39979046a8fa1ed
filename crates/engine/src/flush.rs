//! Flush: freeze a table's memtable, encode it as one Parquet SST per time segment on
//! the `flush` runtime, upload through the io-bound store, commit one manifest edit,
//! and only then drop the memtable and let the WAL be truncated.
//!
//! Ordering (the invariant recovery relies on):
//! 1. upload SSTs (unreferenced objects until step 2; a crash leaves orphans, never
//!    data loss),
//! 2. commit the manifest edit `[SetSchema, AddSst.., Flushed{seq}]` atomically,
//! 3. install the SSTs in the table version and remove the frozen memtable *in one
//!    critical section* (a snapshot sees either the memtable or the SSTs, never
//!    neither and never both),
//! 4. release the memory and wake stalled writers,
//! 5. ask the WAL thread to delete segments wholly at or below the truncatable
//!    sequence. A crash between 2 and 5 only means replay skips records the manifest
//!    says are flushed.
//!
//! A failed flush keeps the frozen memtable (still readable, still in the WAL); the
//! scheduler retries with exponential backoff, and every attempt, failed or not, wakes
//! stalled writers so they re-check and either proceed or fail with `Overloaded`.

use std::sync::Arc;
use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use tokio::sync::watch;

use crate::core::{EngineCore, sleep_or_shutdown};
use crate::error::{Error, Result};
use crate::flush_policy::{self, TableUsage, Thresholds};
use crate::manifest::Action;
use crate::memtable::{Memtable, TimeRange, merged_batch, merged_row_count, segment_of};
use crate::park;
use crate::sst::writer::encode;
use crate::sst::{SstFile, SstMeta, new_file_id, sst_path};
use crate::table::{FrozenMemtable, Table};

/// A flush's SST uploads in flight at once (one per time segment it spans).
const SST_UPLOADS_IN_FLIGHT: usize = 4;

/// Flush everything `tables` hold in memory now, `flush_concurrency` tables at a time,
/// and then truncate the WAL once. Runs on the `flush` runtime. Every table is tried;
/// the first error is returned.
///
/// Thousands of small tables are the case this is for: one at a time, each flush waits
/// for its own upload and its own manifest commit. At once, the uploads overlap on `io`
/// and the manifest's group commit writes the edits that queue up behind one PUT as one
/// entry. Truncating once matters too: finding the truncatable sequence visits every
/// table, so doing it after each of n flushes costs n².
pub(crate) async fn flush_tables(engine: &EngineCore, tables: Vec<Arc<Table>>) -> Result<()> {
    // Background manifest commits wait until this is dropped (`flush_gate.rs`).
    let _in_progress = engine.flush_gate.enter();
    let concurrency = engine.config.memtable.flush_concurrency.max(1);
    let mut flushed_any = false;
    let mut first_error = None;
    // Small tables first, into shared SSTs (`flush_pack.rs`): a couple of packs at
    // once, so that one's encoding overlaps the other's upload and commit.
    let (packs, mut tables) = crate::flush_pack::split(engine, tables);
    let mut packed = futures::stream::iter(packs)
        .map(|group| async move { crate::flush_pack::flush_pack(engine, group).await })
        .buffer_unordered(PACKS_IN_FLIGHT);
    while let Some(r) = packed.next().await {
        flushed_any |= r.flushed;
        if let Some(e) = r.error {
            first_error.get_or_insert(e);
        }
        tables.extend(r.left);
    }
    drop(packed);
    // Owned tables: a closure over borrowed ones makes the future not `Send` (rustc's
    // higher-ranked lifetime inference).
    let mut results = futures::stream::iter(tables)
        .map(|t| async move { flush_one(engine, &t).await })
        .buffer_unordered(concurrency);
    while let Some(r) = results.next().await {
        match r {
            Ok(()) => flushed_any = true,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if flushed_any {
        engine.wal.truncate(engine.truncatable_seq());
    }
    first_error.map_or(Ok(()), Err)
}

/// Packs flushed at once by [`flush_tables`].
const PACKS_IN_FLIGHT: usize = 2;

/// Flush everything `table` holds in memory now, without truncating the WAL (the
/// caller does, once for all the tables it flushes).
async fn flush_one(engine: &EngineCore, table: &Table) -> Result<()> {
    // A dropped table has nothing left to flush; a new table of a name being dropped
    // flushes once the drop is committed, so its manifest edits come after the drop's.
    let current = engine
        .table(&table.db, &table.name)
        .is_some_and(|t| std::ptr::eq(Arc::as_ptr(&t), table));
    if !current {
        return Ok(());
    }
    engine.pending_drops.wait_for(&table.db, &table.name).await;
    let stages = &engine.counters.stages;
    let waiting = Instant::now();
    let _guard = table.flush_lock.lock().await;
    stages.flush_lock_wait.record(waiting.elapsed());
    let frozen = freeze(table);
    if frozen.is_empty() {
        return commit_tombstones(engine, table).await;
    }
    // Every frozen memtable (sealed by readers, or left by failed flushes) goes into
    // this one flush: one SST per segment, their rows merged while converting.
    let started = Instant::now();
    let result = flush_parts(engine, table, &frozen).await;
    stages.flush_total.record(started.elapsed());
    after_attempt(engine, table, &frozen, started, &result).await;
    result
}

/// Freeze the active memtable of `table` (the caller holds its flush lock) and return
/// every frozen one, oldest first: what this flush writes.
pub(crate) fn freeze(table: &Table) -> Vec<Arc<FrozenMemtable>> {
    let mut st = table.state.lock();
    if !st.active.is_empty() {
        let mem = std::mem::take(&mut st.active);
        let schema = Arc::clone(&st.schema);
        st.frozen.push(Arc::new(FrozenMemtable::new(mem, schema)));
    }
    st.frozen.clone()
}

/// After a flush attempt of `frozen` (started at `started`; the caller holds the flush
/// lock): count it, record its failure or success, park the rows of a table whose
/// flushes keep failing, and wake stalled writers.
pub(crate) async fn after_attempt(
    engine: &EngineCore,
    table: &Table,
    frozen: &[Arc<FrozenMemtable>],
    started: Instant,
    result: &Result<()>,
) {
    let failures = {
        let mut st = table.state.lock();
        st.flush_failed = result.is_err();
        match result {
            Ok(()) => {
                st.flush_failures = 0;
                st.last_flush_error = None;
            }
            Err(e) => {
                st.flush_failures = st.flush_failures.saturating_add(1);
                st.last_flush_error = Some(e.to_string());
            }
        }
        st.flush_failures
    };
    match result {
        Ok(()) => {
            engine.counters.flushes.fetch_add(1, Ordering::Relaxed);
            engine.counters.record_flush_duration(started.elapsed());
            unpark_if_flushed(engine, table);
        }
        Err(e) => {
            engine
                .counters
                .flush_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(db = %table.db, table = %table.name, error = %e, failures, "flush failed");
            if failures >= park::PARK_AFTER_FAILURES && !engine.is_closed() {
                match park_table(engine, table, frozen).await {
                    Ok(()) => engine.wal.truncate(engine.truncatable_seq()),
                    Err(e) => {
                        tracing::error!(db = %table.db, table = %table.name, error = %e,
                            "could not park the rows of a table whose flush keeps failing; \
                             it keeps holding back WAL truncation")
                    }
                }
            }
        }
    }
    // Wake stalled writers after every attempt (success or not).
    engine.memory.released.notify_waiters();
}

/// Park the rows of `frozen` (every in-memory row of `table` when its flush began;
/// the caller holds the flush lock) so they stop pinning the WAL (`park.rs`).
async fn park_table(
    engine: &EngineCore,
    table: &Table,
    frozen: &[Arc<FrozenMemtable>],
) -> Result<()> {
    let upto = frozen.iter().map(|f| f.mem.max_seq()).max().unwrap_or(0);
    if upto <= table.state.lock().parked_upto {
        return Ok(()); // nothing new since the last parking
    }
    // A replay applies the parked rows as of `upto`, after every tombstone they
    // predate: deleted rows must not be in them.
    let tombs = table.state.lock().tombstones.clone();
    let kept = crate::delete::without_deleted(frozen, &tombs, engine.config.segment_nanos())?;
    let rows = park::rows_of(&kept)?;
    let n = rows.len();
    let (dir, db, name) = (
        engine.config.wal_dir.clone(),
        table.db.clone(),
        table.name.clone(),
    );
    tokio::task::spawn_blocking(move || park::write(&dir, &db, &name, upto, rows))
        .await
        .map_err(|_| Error::Closed)??;
    let mut st = table.state.lock();
    st.parked_upto = st.parked_upto.max(upto);
    tracing::warn!(db = %table.db, table = %table.name, rows = n, upto,
        "parked the rows of a table whose flush keeps failing, so the WAL can be truncated");
    Ok(())
}

/// After a committed flush: the parked file of `table`, if any, is covered by SSTs now.
fn unpark_if_flushed(engine: &EngineCore, table: &Table) {
    let mut st = table.state.lock();
    if st.parked_upto > 0 && st.flushed_seq >= st.parked_upto {
        st.parked_upto = 0;
        drop(st);
        park::remove(&engine.config.wal_dir, &table.db, &table.name);
    }
}

/// Write `parts` (oldest first, a prefix of the table's frozen list) as SSTs, commit
/// them, and drop the parts from the table.
async fn flush_parts(
    engine: &EngineCore,
    table: &Table,
    parts: &[Arc<FrozenMemtable>],
) -> Result<()> {
    let stages = &engine.counters.stages;
    let started = Instant::now();
    let cpu = bulkhead_runtime::current_thread_cpu_time();
    let prepared = prepare(engine, table, parts)?;
    stages.flush_encode.record(started.elapsed());
    stages
        .flush_encode_cpu
        .record(bulkhead_runtime::current_thread_cpu_time().saturating_sub(cpu));
    let uploading = Instant::now();
    // IO: the store is io-bound, so these awaits park us while `io` does the work. A
    // flush that spans several segments uploads their SSTs side by side: each PUT is
    // a round trip to the store, and the next flush waits behind this one.
    let metas: Vec<SstMeta> = futures::stream::iter(prepared.ssts)
        .map(|(meta, bytes)| async move {
            crate::sst::writer::upload(
                &engine.store,
                &meta.object_path(),
                bytes,
                engine.config.upload_options(),
                "upload SST",
            )
            .await
            .map(|()| meta)
        })
        .buffered(SST_UPLOADS_IN_FLIGHT)
        .try_collect()
        .await?;
    stages.flush_upload.record(uploading.elapsed());
    // A closed engine must not commit: another engine may own the store by now.
    if engine.is_closed() {
        return Err(Error::Closed);
    }
    // Deletes whose own commit failed go in first: the flushed sequence must not pass
    // a tombstone the manifest does not hold (`write::apply_delete`). They stay
    // uncommitted (holding back WAL truncation) until the edit is in the manifest.
    let tombs = table.state.lock().uncommitted_tombstones.clone();
    let edit = flush_actions(
        engine,
        table,
        &tombs,
        &prepared.schema,
        &metas,
        prepared.max_seq,
    );
    let committing = Instant::now();
    engine.manifest.commit(edit).await?;
    stages.flush_commit.record(committing.elapsed());
    engine.compactor.wake.notify_one();
    install(engine, table, parts, &tombs, metas, prepared.max_seq, None);
    Ok(())
}

/// What a flush of some tables' parts writes, encoded but not yet uploaded.
pub(crate) struct Prepared {
    /// The widest schema of the parts.
    pub(crate) schema: Arc<crate::schema::TableSchema>,
    /// The highest sequence number in the parts.
    pub(crate) max_seq: u64,
    /// One SST per time segment, with its encoded bytes; `path` is where a
    /// standalone upload puts it.
    pub(crate) ssts: Vec<(SstMeta, bytes::Bytes)>,
}

/// Merge and encode `parts` (oldest first, a prefix of the table's frozen list) into
/// one SST per segment (CPU only).
pub(crate) fn prepare(
    engine: &EngineCore,
    table: &Table,
    parts: &[Arc<FrozenMemtable>],
) -> Result<Prepared> {
    // The encode below runs on this thread: on the flush's own CPU, or on any while
    // the write buffer is half full (`runtime.flush_affinity`).
    bulkhead_runtime::place_flush_thread(engine.memory.used() >= engine.memory.limit / 2);
    // Column ids only grow, so the widest schema covers every part.
    let schema = parts
        .iter()
        .map(|p| Arc::clone(&p.schema))
        .max_by_key(|s| s.tags.len() + s.fields.len())
        .unwrap_or_default();
    let max_seq = parts.iter().map(|p| p.mem.max_seq()).max().unwrap_or(0);
    // Deleted rows leave before the parts merge (`delete.rs`).
    let tombs = table.state.lock().tombstones.clone();
    let kept = crate::delete::without_deleted(parts, &tombs, engine.config.segment_nanos())?;
    let mems: Vec<&Memtable> = kept.iter().map(|p| &p.mem).collect();
    let applied = crate::delete::newest(&tombs);
    let ssts = encode_ssts(
        engine,
        &table.db,
        &table.name,
        &mems,
        &schema,
        (max_seq, applied),
    )?;
    Ok(Prepared {
        schema,
        max_seq,
        ssts,
    })
}

/// The manifest edit of a flush of `table`: the uncommitted tombstones `tombs` first,
/// then the schema, the SSTs and the flushed sequence.
pub(crate) fn flush_actions(
    engine: &EngineCore,
    table: &Table,
    tombs: &[Arc<crate::delete::Tombstone>],
    schema: &crate::schema::TableSchema,
    metas: &[SstMeta],
    max_seq: u64,
) -> Vec<Action> {
    let mut actions = tombstone_actions(engine, table, tombs);
    actions.push(Action::SetSchema {
        db: table.db.clone(),
        table: table.name.clone(),
        schema: schema.clone(),
    });
    actions.extend(metas.iter().cloned().map(Action::AddSst));
    actions.push(Action::Flushed {
        db: table.db.clone(),
        table: table.name.clone(),
        seq: max_seq,
    });
    actions
}

/// The flush of `parts` is committed: install its SSTs (members of `pack`, if given)
/// and drop the parts in one critical section, then release their memory.
pub(crate) fn install(
    engine: &EngineCore,
    table: &Table,
    parts: &[Arc<FrozenMemtable>],
    tombs: &[Arc<crate::delete::Tombstone>],
    metas: Vec<SstMeta>,
    max_seq: u64,
    pack: Option<&Arc<crate::sst::Pack>>,
) {
    let released = {
        let mut st = table.state.lock();
        committed(&mut st, tombs);
        for meta in metas {
            let purger = Some(Arc::clone(&engine.purger));
            let file = match pack {
                Some(pack) => SstFile::in_pack(meta, purger, Arc::clone(pack)),
                None => SstFile::new(meta, purger),
            };
            st.ssts.push(Arc::new(file));
        }
        st.frozen
            .retain(|x| !parts.iter().any(|p| Arc::ptr_eq(p, x)));
        st.flushed_seq = st.flushed_seq.max(max_seq);
        parts.iter().map(|p| p.mem.bytes()).sum::<usize>()
    };
    engine.memory.release(released);
}

/// Commit the tombstones of `table` whose own commit failed, when it has nothing in
/// memory to flush them with (the caller holds the flush lock).
async fn commit_tombstones(engine: &EngineCore, table: &Table) -> Result<()> {
    // Cloned, not taken: until the commit is in, they hold back WAL truncation (a
    // flush of another table may truncate meanwhile, and this commit may fail).
    let tombs = table.state.lock().uncommitted_tombstones.clone();
    if tombs.is_empty() || engine.is_closed() {
        return Ok(());
    }
    engine
        .manifest
        .commit(tombstone_actions(engine, table, &tombs))
        .await?;
    committed(&mut table.state.lock(), &tombs);
    // The WAL records of these deletes may go now.
    engine.wal.truncate(engine.truncatable_seq());
    Ok(())
}

/// The tombstones' actions, each with the properties that tell the table's watchers
/// of the delete (`watch.rs`).
fn tombstone_actions(
    engine: &EngineCore,
    table: &Table,
    tombs: &[Arc<crate::delete::Tombstone>],
) -> Vec<Action> {
    let mut actions = Vec::new();
    for t in tombs {
        actions.push(Action::AddTombstone {
            db: table.db.clone(),
            table: table.name.clone(),
            tombstone: (**t).clone(),
        });
        actions.extend(engine.watches.delete_actions(&table.db, &table.name, t));
    }
    actions
}

/// `tombs` are in the manifest now: they no longer hold back WAL truncation.
fn committed(st: &mut crate::table::TableState, tombs: &[Arc<crate::delete::Tombstone>]) {
    st.uncommitted_tombstones
        .retain(|u| !tombs.iter().any(|t| t.seq == u.seq));
}

/// Encode one SST per time segment of `mems` (merged, later ones winning); `seqs`:
/// the highest sequence number in them, and the newest tombstone applied.
fn encode_ssts(
    engine: &EngineCore,
    db: &str,
    table: &str,
    mems: &[&Memtable],
    schema: &crate::schema::TableSchema,
    seqs: (u64, u64),
) -> Result<Vec<(SstMeta, bytes::Bytes)>> {
    let (max_seq, tombstones_applied) = seqs;
    let seg_nanos = engine.config.segment_nanos();
    let opts = engine.config.encode_options();
    let mut metas = Vec::new();
    let segments: std::collections::BTreeSet<i64> =
        mems.iter().flat_map(|m| m.segments()).collect();
    // The WAL is truncated past every row of `mems` once this flush commits, so the
    // SSTs must hold every one of them: count what each segment wrote.
    let expected = merged_row_count(mems, TimeRange::ALL) as u64;
    let mut written = 0u64;
    let mut segment_ranges: Vec<(i64, TimeRange)> = Vec::new();
    for seg in segments {
        let range = segment_of(seg, seg_nanos);
        if range.start != seg || segment_ranges.last().is_some_and(|(_, r)| r.last >= seg) {
            return Err(Error::Manifest(format!(
                "flush of {db}.{table}: segment start {seg} is not a segment boundary"
            )));
        }
        segment_ranges.push((seg, range));
    }
    for (seg, range) in segment_ranges {
        // CPU: sort (memtables are ordered maps; series are sorted here) and encode.
        let Some(batch) = merged_batch(mems, schema, range, None)? else {
            continue;
        };
        let rows = batch.num_rows() as u64;
        written += rows;
        let (min_time, max_time) = batch_time_bounds(&batch).unwrap_or((seg, seg));
        let tag_ranges = crate::sst::tag_ranges(&batch);
        let bytes = encode(&[batch], opts)?;
        let file_id = new_file_id();
        let path = sst_path(&engine.config.store_prefix, db, table, seg, &file_id);
        let size = bytes.len() as u64;
        let meta = SstMeta {
            file_id,
            db: db.to_string(),
            table: table.to_string(),
            path: path.to_string(),
            segment_start: seg,
            min_time,
            max_time,
            rows,
            bytes: size,
            max_seq,
            level: 0,
            tag_ranges,
            tombstones_applied,
            pack_offset: None,
        };
        metas.push((meta, bytes));
    }
    if written != expected {
        // Never reached by the segment arithmetic above; if it ever is, failing keeps
        // the rows in memory and in the WAL instead of acknowledging their loss.
        return Err(Error::Manifest(format!(
            "flush of {db}.{table} wrote {written} of its {expected} rows to SSTs; \
             not committing it"
        )));
    }
    Ok(metas)
}

pub(crate) fn batch_time_bounds(batch: &arrow::record_batch::RecordBatch) -> Option<(i64, i64)> {
    use arrow::array::{Array, TimestampNanosecondArray};
    let col = batch.column_by_name(crate::schema::TIME_COLUMN)?;
    let times = col.as_any().downcast_ref::<TimestampNanosecondArray>()?;
    let min = arrow::compute::min(times)?;
    let max = arrow::compute::max(times)?;
    (!times.is_empty()).then_some((min, max))
}

/// Tables that should be flushed now, most urgent first (`flush_policy.rs`).
fn pick(engine: &EngineCore) -> Vec<Arc<Table>> {
    let tables = engine.all_tables();
    let usages: Vec<TableUsage> = tables
        .iter()
        .map(|t| {
            let st = t.state.lock();
            TableUsage {
                bytes: st.mem_bytes(),
                age: st.oldest_created().map(|c| c.elapsed()),
                flush_failed: st.flush_failed,
                uncommitted_tombstones: !st.uncommitted_tombstones.is_empty(),
            }
        })
        .collect();
    let thresholds = Thresholds {
        table_bytes: engine.config.memtable.table_flush_size,
        max_age: engine.config.memtable.flush_interval,
        memory_used: engine.memory.used(),
        memory_limit: engine.memory.limit,
    };
    flush_policy::pick(&usages, &thresholds)
        .into_iter()
        .map(|i| Arc::clone(&tables[i]))
        .collect()
}

/// The background flush scheduler, on the `flush` runtime: wakes on demand (a table or
/// the global buffer passed its threshold) and every `flush_check_interval` (ages,
/// retries), flushes what [`pick`] returns, and backs off exponentially while flushes
/// fail. The backoff is capped, so once the store recovers the next attempt comes
/// within `flush_retry_max_backoff` and stalled writers resume.
pub(crate) async fn run_scheduler(engine: Weak<EngineCore>, mut shutdown: watch::Receiver<bool>) {
    let (interval, initial, max_backoff) = match engine.upgrade() {
        Some(e) => (
            e.config.flush_check_interval,
            e.config.flush_retry_initial_backoff,
            e.config.flush_retry_max_backoff,
        ),
        None => return,
    };
    let mut backoff = initial;
    let mut retry_now = false;
    loop {
        if !retry_now {
            match engine.upgrade() {
                Some(e) => {
                    let notify = Arc::clone(&e.flush_wanted);
                    drop(e);
                    let notified = notify.notified();
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep(interval) => {}
                        _ = shutdown.changed() => return,
                    }
                }
                None => return,
            }
        }
        let Some(e) = engine.upgrade() else { return };
        if e.is_closed() {
            return;
        }
        let picked = pick(&e);
        let failed = !picked.is_empty() && flush_tables(&e, picked).await.is_err();
        drop(e);
        retry_now = failed;
        if failed {
            if !sleep_or_shutdown(backoff, &mut shutdown).await {
                return;
            }
            backoff = (backoff * 2).min(max_backoff);
        } else {
            backoff = initial;
        }
    }
}
