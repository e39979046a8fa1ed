//! Flushing many small tables into shared SSTs ("packs", `sst` module docs): one
//! object, one PUT and one manifest edit for up to `PACK_MAX_TABLES` tables, where
//! flushing them one by one costs an object (a PUT, and on local disk an fsync of the
//! file and of each new directory) and a manifest edit each.
//!
//! Each table's SSTs are encoded exactly as a flush of that table alone would encode
//! them (a complete Parquet file per segment); the pack is their concatenation, and
//! each [`SstMeta`] records its offset. The ordering of `flush.rs` holds for the pack
//! as a whole: upload the pack, commit one edit with every table's actions, then
//! install each table's SSTs and drop its memtables. A failure fails every table of
//! the pack (their memtables stay, as after any failed flush), and an uploaded pack
//! whose edit did not commit is an orphan the startup GC deletes.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::config::PACK_MAX_TABLES;
use crate::core::EngineCore;
use crate::error::{Error, Result};
use crate::flush::{Prepared, after_attempt, flush_actions, freeze, install, prepare};
use crate::sst::{Pack, SstMeta, new_file_id, pack_path};
use crate::table::{FrozenMemtable, Table};

/// Split `tables` into groups to flush as packs (tables holding at most
/// `memtable.pack_table_bytes`, when there are two or more) and the rest.
pub(crate) fn split(
    engine: &EngineCore,
    tables: Vec<Arc<Table>>,
) -> (Vec<Vec<Arc<Table>>>, Vec<Arc<Table>>) {
    let limit = engine.config.memtable.pack_table_bytes;
    if limit == 0 {
        return (Vec::new(), tables);
    }
    let (small, rest): (Vec<_>, Vec<_>) = tables.into_iter().partition(|t| {
        let bytes = t.state.lock().mem_bytes();
        bytes > 0 && bytes <= limit
    });
    if small.len() < 2 {
        return (Vec::new(), small.into_iter().chain(rest).collect());
    }
    let groups = small
        .chunks(PACK_MAX_TABLES)
        .map(<[Arc<Table>]>::to_vec)
        .collect();
    (groups, rest)
}

/// How the flush of one pack went.
#[derive(Default)]
pub(crate) struct PackOutcome {
    /// Some table's rows are in SSTs now (the WAL may be truncated).
    pub(crate) flushed: bool,
    pub(crate) error: Option<Error>,
    /// Tables the pack did not take (their flush lock was held, a drop of their name
    /// is pending, or they hold nothing but tombstones): flush them one by one.
    pub(crate) left: Vec<Arc<Table>>,
}

/// One table's share of a pack.
struct Member<'a> {
    table: &'a Table,
    frozen: Vec<Arc<FrozenMemtable>>,
    prepared: Prepared,
    tombs: Vec<Arc<crate::delete::Tombstone>>,
}

/// Flush `tables` (small ones, from [`split`]) as one pack.
pub(crate) async fn flush_pack(engine: &EngineCore, tables: Vec<Arc<Table>>) -> PackOutcome {
    let mut out = PackOutcome::default();
    let started = Instant::now();
    // Take what can be taken without waiting: a pack never waits for one table.
    let mut guards = Vec::with_capacity(tables.len());
    for t in &tables {
        let current = engine
            .table(&t.db, &t.name)
            .is_some_and(|c| Arc::ptr_eq(&c, t));
        if !current {
            continue; // dropped: nothing left to flush
        }
        if engine.pending_drops.is_pending(&t.db, &t.name) {
            out.left.push(Arc::clone(t));
            continue;
        }
        match t.flush_lock.try_lock() {
            Ok(g) => guards.push((t, g)),
            Err(_) => out.left.push(Arc::clone(t)),
        }
    }
    // CPU: merge and encode every table's SSTs.
    let mut members = Vec::with_capacity(guards.len());
    for (t, _) in &guards {
        let frozen = freeze(t);
        if frozen.is_empty() {
            // Flushed meanwhile; tombstones waiting for a commit, if any, go alone.
            out.left.push(Arc::clone(t));
            continue;
        }
        match prepare(engine, t, &frozen) {
            Ok(prepared) => members.push(Member {
                table: t,
                tombs: t.state.lock().uncommitted_tombstones.clone(),
                frozen,
                prepared,
            }),
            Err(e) => {
                let failed = Err(e);
                after_attempt(engine, t, &frozen, started, &failed).await;
                if let Err(e) = failed {
                    out.error.get_or_insert(e);
                }
            }
        }
    }
    if members.is_empty() {
        return out;
    }
    let result = write_and_commit(engine, &mut members).await;
    for m in &members {
        let own = match &result {
            Ok(_) => Ok(()),
            Err(e) => Err(Error::Manifest(format!(
                "the flush of a pack of {} tables failed: {e}",
                members.len()
            ))),
        };
        after_attempt(engine, m.table, &m.frozen, started, &own).await;
    }
    match result {
        Ok(()) => out.flushed = true,
        Err(e) => {
            out.error.get_or_insert(e);
        }
    }
    drop(guards);
    out
}

/// Upload the pack of `members`' SSTs, commit one manifest edit for all of them, and
/// install each table's SSTs.
async fn write_and_commit(engine: &EngineCore, members: &mut [Member<'_>]) -> Result<()> {
    let path = pack_path(&engine.config.store_prefix, &new_file_id());
    let size: usize = members
        .iter()
        .flat_map(|m| m.prepared.ssts.iter())
        .map(|(_, b)| b.len())
        .sum();
    let mut pack = BytesMut::with_capacity(size);
    let mut ssts = 0;
    for m in members.iter_mut() {
        for (meta, bytes) in &mut m.prepared.ssts {
            meta.path = path.to_string();
            meta.pack_offset = Some(pack.len() as u64);
            pack.extend_from_slice(bytes);
            // The pack holds them now.
            *bytes = Bytes::new();
            ssts += 1;
        }
    }
    crate::sst::writer::upload(
        &engine.store,
        &path,
        pack.freeze(),
        engine.config.upload_options(),
        "upload SST pack",
    )
    .await?;
    // A closed engine must not commit: another engine may own the store by now.
    if engine.is_closed() {
        return Err(Error::Closed);
    }
    let metas = |m: &Member<'_>| -> Vec<SstMeta> {
        m.prepared
            .ssts
            .iter()
            .map(|(meta, _)| meta.clone())
            .collect()
    };
    let edit: Vec<_> = members
        .iter()
        .flat_map(|m| {
            flush_actions(
                engine,
                m.table,
                &m.tombs,
                &m.prepared.schema,
                &metas(m),
                m.prepared.max_seq,
            )
        })
        .collect();
    engine.manifest.commit(edit).await?;
    engine.compactor.wake.notify_one();
    let handle = Pack::new(path, ssts, Some(Arc::clone(&engine.purger)));
    for m in members.iter() {
        install(
            engine,
            m.table,
            &m.frozen,
            &m.tombs,
            metas(m),
            m.prepared.max_seq,
            Some(&handle),
        );
    }
    Ok(())
}
