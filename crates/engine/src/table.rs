//! A table's in-memory state: its memtables (active and frozen), live SSTs, schema,
//! tombstones and flush progress, behind one lock, and the catalog of tables.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::sync::Mutex;

use crate::memtable::Memtable;
use crate::schema::TableSchema;
use crate::sst::SstFile;

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
    /// One removal of this table's SSTs at a time (compaction, retention, the
    /// tombstone purge, a drop): checking that the SSTs are live and committing their
    /// removal happen under it. Flushes only add SSTs and do not take it, so a
    /// compaction's manifest commit never holds up a flush (issue 24). Taken after
    /// `flush_lock` by whoever needs both.
    pub(crate) sst_lock: tokio::sync::Mutex<()>,
}

impl Table {
    /// A new, empty table.
    pub(crate) fn new(db: &str, name: &str) -> Self {
        Self {
            db: db.to_string(),
            name: name.to_string(),
            state: Mutex::new(TableState::default()),
            flush_lock: tokio::sync::Mutex::new(()),
            sst_lock: tokio::sync::Mutex::new(()),
        }
    }
}

/// Database name -> table name -> table.
pub(crate) type Catalog = BTreeMap<String, BTreeMap<String, Arc<Table>>>;
