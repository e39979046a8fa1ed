//! Opening the engine: manifest load, WAL replay, then starting the WAL thread and the
//! background tasks.
//!
//! Recovery rules (also in `docs/storage.md`):
//! 1. Load the manifest (newest checkpoint + later log entries). It gives every table's
//!    schema, live SSTs and `flushed_seq`.
//! 2. Replay WAL segments in order. A record's table write is applied only if its
//!    sequence number is above that table's `flushed_seq` (its data is otherwise
//!    already in SSTs). Schemas are re-evolved exactly as on the write path.
//! 3. A torn tail in the last segment is truncated (with a warning) and the file
//!    synced; damage anywhere else aborts startup with `WalCorruption` (file, offset).
//! 4. The WAL restarts in a new segment at `max(last replayed seq, highest sequence the
//!    manifest refers to, newest segment's first seq - 1)+1` ([`ManifestState::max_seq`]:
//!    flushed sequences, tombstones, SSTs' `max_seq` and `tombstones_applied`), so
//!    sequence numbers never go backwards, even when the WAL holds no record: its last
//!    records were deletes (which no flushed sequence covers) and a flush truncated
//!    them away, leaving only the empty segment the last start created.
//! 5. Memtables rebuilt from the WAL count against the write buffer; the flush
//!    scheduler flushes them as usual.
//! 6. Parked rows (`park.rs`: a table whose flush kept failing) are applied as of their
//!    sequence number unless the table is flushed past it, and that table's WAL records
//!    at or below it are skipped (the parked record holds their merged rows).

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};

use crate::sync::{Mutex, RwLock};
use bulkhead_runtime::{RuntimeName, Runtimes};
use object_store::ObjectStore;
use tokio::sync::{Notify, mpsc, watch};

use crate::config::EngineConfig;
use crate::core::{EngineCore, Memory, join};
use crate::error::{Error, Result};
use crate::manifest::{Manifest, ManifestState};
use crate::sst::{Purger, SstFile};
use crate::stats::StatsCounters;
use crate::table::{Table, TableState};
use crate::wal::record::{MAGIC, Record, decode_record};
use crate::wal::replay::{SegmentContents, SegmentFile, list_segments, read_segment};
use crate::wal::{Wal, WalOptions};
use crate::write::{apply, evolve_schemas};

pub(crate) async fn open(
    config: EngineConfig,
    store: Arc<dyn ObjectStore>,
    runtimes: Arc<Runtimes>,
) -> Result<Arc<EngineCore>> {
    // One engine per WAL directory: a second one would interleave records.
    let wal_lock = lock_wal_dir(&config.wal_dir).await?;
    let (manifest, state) = Manifest::load(
        Arc::clone(&store),
        &config.store_prefix,
        config.manifest_checkpoint_interval,
    )
    .await?;
    let wal_dir = config.wal_dir.clone();
    let segments = tokio::task::spawn_blocking(move || -> Result<Vec<SegmentFile>> {
        std::fs::create_dir_all(&wal_dir).map_err(|source| Error::Io {
            op: "create WAL dir",
            source,
        })?;
        list_segments(&wal_dir)
    })
    .await
    .map_err(|_| Error::Closed)??;

    let max_flushed = state
        .tables
        .values()
        .flat_map(|d| d.values())
        .map(|t| t.flushed_seq)
        .max()
        .unwrap_or(0);
    // Records of this run are numbered above every sequence the manifest knows, not
    // only above the flushed ones (replay still starts from the flushed ones).
    let known_seq = state.max_seq();
    let purger = Arc::new(Purger {
        store: Arc::clone(&store),
        io: runtimes.io().clone(),
        cache: Arc::new(crate::sst::cache::MetadataCache::new(
            config.sst.metadata_cache_size,
        )),
    });
    let catalog = catalog_from(&state, &purger);
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (shutdown, shutdown_rx) = watch::channel(false);

    // Replay before the WAL thread starts: records are read on a blocking thread, one
    // segment at a time, then applied on the `write` runtime in sequence order.
    let limit = config.memtable.write_buffer.max(1);
    let mut last_seq = max_flushed;
    let flushed: HashMap<(String, String), u64> = state
        .tables
        .iter()
        .flat_map(|(db, ts)| {
            ts.iter()
                .map(move |(t, m)| ((db.clone(), t.clone()), m.flushed_seq))
        })
        .collect();
    // Parked rows (`park.rs`) of tables the manifest does not yet cover: applied as of
    // their sequence number, in place of the table's WAL records up to it.
    let wal_dir = config.wal_dir.clone();
    let parked_records = tokio::task::spawn_blocking(move || crate::park::read_all(&wal_dir))
        .await
        .map_err(|_| Error::Closed)??;
    let mut parked: HashMap<(String, String), u64> = HashMap::new();
    // (seq, db, record, parked)
    let mut pending_replay: Vec<(u64, String, Replayed, bool)> = Vec::new();
    for p in parked_records {
        let Some(table) = p.batch.tables.first().map(|t| t.table.clone()) else {
            continue;
        };
        let key = (p.db.clone(), table);
        if p.upto <= flushed.get(&key).copied().unwrap_or(0) {
            // Flushed since it was parked; the flush could not delete the file.
            let _ = std::fs::remove_file(&p.path);
            continue;
        }
        tracing::warn!(db = %key.0, table = %key.1, upto = p.upto,
            "replaying the parked rows of a table whose flush was failing");
        last_seq = last_seq.max(p.upto);
        parked.insert(key, p.upto);
        pending_replay.push((p.upto, p.db, Replayed::Write(p.batch), true));
    }
    let n_segments = segments.len();
    let mut removed: Vec<std::path::PathBuf> = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        let is_last = i + 1 == n_segments;
        let path = seg.path.clone();
        let min_seq = last_seq.min(seg.first_seq.saturating_sub(1));
        let contents = tokio::task::spawn_blocking(move || -> Result<_> {
            let contents = read_segment(&path, is_last, min_seq)?;
            if let Some(at) = contents.torn_at
                && at < MAGIC.len() as u64
            {
                // Crashed while creating the segment: not even the header is complete.
                tracing::warn!(file = %path.display(), "removing WAL segment with a torn header");
                std::fs::remove_file(&path).map_err(|source| Error::Io {
                    op: "remove torn WAL segment",
                    source,
                })?;
                return Ok((contents, Some(path)));
            } else if let Some(at) = contents.torn_at {
                tracing::warn!(file = %path.display(), offset = at, "truncating torn WAL tail");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|source| Error::Io {
                        op: "truncate torn WAL tail",
                        source,
                    })?;
                f.set_len(at).map_err(|source| Error::Io {
                    op: "truncate torn WAL tail",
                    source,
                })?;
                f.sync_all().map_err(|source| Error::Io {
                    op: "sync WAL after truncation",
                    source,
                })?;
            }
            Ok((contents, None))
        })
        .await
        .map_err(|_| Error::Closed)??;
        let (contents, removed_path) = contents;
        removed.extend(removed_path);
        if let Some(at) = contents.zero_tail_at {
            check_zero_tail(seg, &contents, segments.get(i + 1), at)?;
        }
        for (offset, seq, payload) in contents.records {
            let record = decode_record(&payload).map_err(|reason| Error::WalCorruption {
                file: seg.path.display().to_string(),
                offset,
                reason: format!("record {seq} passed its CRC but does not decode: {reason}"),
            })?;
            last_seq = last_seq.max(seq);
            let (db, record) = match record {
                Record::Write(db, mut batch) => {
                    // Rows a flush (or a parked record) already holds are dropped here,
                    // not at apply time: a WAL whose rows are all flushed would
                    // otherwise be held decoded in memory whole (about 14x its size)
                    // until the replay starts.
                    batch.tables.retain(|t| {
                        let key = (db.clone(), t.table.clone());
                        let flushed = flushed.get(&key).copied().unwrap_or(0);
                        seq > flushed.max(parked.get(&key).copied().unwrap_or(0))
                    });
                    if batch.tables.is_empty() {
                        continue;
                    }
                    (db, Replayed::Write(batch))
                }
                Record::Drop(op) => (op.db.clone(), Replayed::Drop(op)),
                Record::Delete(op) => (op.db.clone(), Replayed::Delete(op)),
            };
            pending_replay.push((seq, db, record, false));
        }
    }

    // A segment is named after the first sequence it was created for: every number
    // below it was handed out. The newest one may be empty (created by the last start
    // or a rotation, then nothing logged before the crash), with the records before it
    // truncated away; numbering below it again would reuse numbers, and a later
    // rotation onto its name would replace the file the stale entry still names. (A
    // segment removed for its torn header held nothing, and its name is free again.)
    let named_seq = segments
        .iter()
        .filter(|s| !removed.contains(&s.path))
        .map(|s| s.first_seq.saturating_sub(1))
        .max()
        .unwrap_or(0);
    let last_seq = last_seq.max(known_seq).max(named_seq);
    let wal = Wal::start(
        WalOptions {
            dir: config.wal_dir.clone(),
            sync: config.wal.sync,
            segment_size: config.wal.segment_size,
            next_seq: last_seq + 1,
            existing: segments
                .into_iter()
                .filter(|s| !removed.contains(&s.path))
                .collect(),
            preallocate: config.wal.preallocate,
            latency_slice: match runtimes.mode() {
                bulkhead_runtime::RuntimeMode::Isolated => runtimes.config().latency_slice,
                bulkhead_runtime::RuntimeMode::Shared => std::time::Duration::ZERO,
            },
            nice: match runtimes.mode() {
                bulkhead_runtime::RuntimeMode::Isolated => runtimes.config().write_nice,
                bulkhead_runtime::RuntimeMode::Shared => 0,
            },
        },
        out_tx,
    )?;
    let compactor = crate::compaction::Compactor::new(&config.compaction);
    let engine = Arc::new(EngineCore {
        config,
        store,
        runtimes: Arc::clone(&runtimes),
        catalog: RwLock::new(catalog),
        schema_lock: Mutex::new(()),
        pending_drops: Default::default(),
        series: Default::default(),
        wal,
        manifest,
        memory: Memory {
            used: AtomicUsize::new(0),
            limit,
            released: Notify::new(),
        },
        applied_seq: AtomicU64::new(max_flushed),
        flush_wanted: Arc::new(Notify::new()),
        wal_lock: Mutex::new(Some(wal_lock)),
        purger,
        compactor,
        flush_gate: Default::default(),
        counters: StatsCounters::default(),
        watches: Default::default(),
        closed: AtomicBool::new(false),
        shutdown,
        tasks: Mutex::new(Vec::new()),
    });

    // Apply the replayed records on `write`, in sequence order.
    let replay_engine = Arc::clone(&engine);
    let replayed = pending_replay.len();
    // In sequence order, a parked record before the WAL record of the same number.
    pending_replay.sort_by_key(|r| (r.0, !r.3));
    let parked_tables = parked.clone();
    let task = runtimes.spawn(RuntimeName::Write, async move {
        for (seq, db, record, is_parked) in pending_replay {
            let mut batch = match record {
                Replayed::Write(batch) => batch,
                Replayed::Delete(op) => {
                    let tables: Vec<Arc<Table>> = op
                        .tables
                        .iter()
                        .filter_map(|t| replay_engine.table(&db, t))
                        .collect();
                    crate::write::apply_delete(&replay_engine, &op, &tables, seq).await?;
                    continue;
                }
                Replayed::Drop(mut op) => {
                    // Tables whose drop the manifest already has (or that flushed past
                    // it under a new table of the name) are left alone.
                    op.tables.retain(|t| {
                        seq > flushed.get(&(db.clone(), t.clone())).copied().unwrap_or(0)
                    });
                    crate::drop_table::replay(&replay_engine, op, seq).await?;
                    replay_engine
                        .applied_seq
                        .fetch_max(seq, std::sync::atomic::Ordering::SeqCst);
                    continue;
                }
            };
            batch.tables.retain(|t| {
                let key = (db.clone(), t.table.clone());
                let flushed = flushed.get(&key).copied().unwrap_or(0);
                if is_parked {
                    return seq > flushed;
                }
                // A parked record holds this table's rows up to its seq.
                seq > flushed.max(parked.get(&key).copied().unwrap_or(0))
            });
            if batch.tables.is_empty() {
                replay_engine
                    .applied_seq
                    .fetch_max(seq, std::sync::atomic::Ordering::SeqCst);
                continue;
            }
            {
                let _guard = replay_engine.schema_lock.lock();
                evolve_schemas(&replay_engine, &db, &batch, 0)?;
            }
            apply(&replay_engine, &db, &batch, seq, None)?;
        }
        Ok::<(), Error>(())
    });
    join(task).await??;
    for ((db, table), upto) in parked_tables {
        if let Some(t) = engine.table(&db, &table) {
            t.state.lock().parked_upto = upto;
        }
    }
    engine
        .applied_seq
        .fetch_max(last_seq, std::sync::atomic::Ordering::SeqCst);
    tracing::info!(
        records = replayed,
        next_seq = last_seq + 1,
        "engine recovered"
    );

    // Garbage collection must finish before any background task starts: a flush or a
    // compaction uploads its SST before committing it, and an SST uploaded but not yet
    // committed looks exactly like garbage. (Found by the crash harness: the startup
    // flush of replayed memtables uploaded and committed an SST that the collector,
    // running concurrently with an older manifest state, had just listed and deleted.)
    let state = engine.manifest.state();
    let orphans = crate::compaction::gc::delete_orphans(&engine, &state).await;
    if orphans > 0 {
        tracing::info!(orphans, "deleted SST objects no manifest entry references");
    }

    // Background tasks hold only weak references: dropping the engine stops them.
    let applier = runtimes.spawn(
        RuntimeName::Write,
        crate::write::run_applier(Arc::downgrade(&engine), out_rx),
    );
    let scheduler = runtimes.spawn(
        RuntimeName::Flush,
        crate::flush::run_scheduler(Arc::downgrade(&engine), shutdown_rx),
    );
    let compactor = runtimes.spawn(
        RuntimeName::Compact,
        crate::compaction::scheduler::run_scheduler(
            Arc::downgrade(&engine),
            engine.shutdown.subscribe(),
        ),
    );
    engine.tasks.lock().extend([applier, scheduler, compactor]);
    if engine.memory.past_flush_mark() {
        engine.flush_wanted.notify_one();
    }
    Ok(engine)
}

/// Create `dir` and take an exclusive lock on `dir/LOCK`, retrying for a few seconds
/// (a just-dropped engine may still be finishing a background flush).
async fn lock_wal_dir(dir: &std::path::Path) -> Result<std::fs::File> {
    let io = |op| move |source| Error::Io { op, source };
    let path = dir.join("LOCK");
    let dir = dir.to_path_buf();
    let file = tokio::task::spawn_blocking(move || -> Result<std::fs::File> {
        std::fs::create_dir_all(&dir).map_err(io("create WAL dir"))?;
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("open WAL lock file"))
    })
    .await
    .map_err(|_| Error::Closed)??;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Io {
                    op: "lock WAL directory",
                    source: std::io::Error::new(
                        std::io::ErrorKind::WouldBlock,
                        "another engine is using this WAL directory",
                    ),
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(Error::Io {
                    op: "lock WAL directory",
                    source,
                });
            }
        }
    }
}

/// A WAL (or parked) record waiting to be replayed.
enum Replayed {
    Write(crate::model::WriteBatch),
    Drop(crate::wal::record::DropOp),
    Delete(crate::delete::DeleteOp),
}

/// Tables as the manifest knows them: schema, SSTs, flushed sequence; empty memtables.
fn catalog_from(
    state: &ManifestState,
    purger: &Arc<Purger>,
) -> BTreeMap<String, BTreeMap<String, Arc<Table>>> {
    let mut catalog: BTreeMap<String, BTreeMap<String, Arc<Table>>> = BTreeMap::new();
    // Members of one pack share its handle, which counts them.
    let purger = Some(Arc::clone(purger));
    let packs = crate::sst::Pack::registry(
        state
            .tables
            .values()
            .flat_map(|t| t.values())
            .filter(|m| !m.is_dropped())
            .flat_map(|m| m.ssts.values()),
        &purger,
    );
    for (db, tables) in &state.tables {
        for (name, m) in tables.iter().filter(|(_, m)| !m.is_dropped()) {
            let mut ssts: Vec<Arc<SstFile>> = m
                .ssts
                .values()
                .map(|meta| Arc::new(SstFile::open(meta.clone(), &purger, &packs)))
                .collect();
            ssts.sort_by_key(|f| f.meta().max_seq);
            let table = Table {
                db: db.clone(),
                name: name.clone(),
                state: Mutex::new(TableState {
                    schema: Arc::new(m.schema.clone()),
                    ssts,
                    flushed_seq: m.flushed_seq,
                    tombstones: m.tombstones.iter().cloned().map(Arc::new).collect(),
                    ..TableState::default()
                }),
                flush_lock: tokio::sync::Mutex::new(()),
                sst_lock: tokio::sync::Mutex::new(()),
            };
            catalog
                .entry(db.clone())
                .or_default()
                .insert(name.clone(), Arc::new(table));
        }
    }
    catalog
}

/// A sealed segment that ends in zeros (its preallocated tail, not yet cut off when the
/// process stopped) must still hold every record up to the next segment's first: the
/// next file is named after the first sequence number it was created for, and a
/// rotation only happens after the group before it was written and synced.
fn check_zero_tail(
    seg: &SegmentFile,
    contents: &SegmentContents,
    next: Option<&SegmentFile>,
    at: u64,
) -> Result<()> {
    let last = contents
        .records
        .last()
        .map_or(seg.first_seq.saturating_sub(1), |(_, seq, _)| *seq);
    match next {
        Some(next) if last + 1 == next.first_seq => Ok(()),
        _ => Err(Error::WalCorruption {
            file: seg.path.display().to_string(),
            offset: at,
            reason: format!(
                "zeros from here to the end of a sealed segment whose last record is {last}, \
                 but the next segment starts at {}",
                next.map_or("nothing".to_string(), |n| n.first_seq.to_string())
            ),
        }),
    }
}
