//! SSTs: immutable Parquet files in the object store, one per flush (or compaction
//! output) per table per time segment.
//!
//! Path: `{prefix}/data/{db}/{table}/{segment_start_ns}/{file_id}.parquet`, each part
//! percent-encoded by `object_store::path` (a name too long for a component, possible
//! only from before the name limits, is shortened and hashed: `names::path_component`).
//! `file_id` is 128 random bits in hex, so two
//! writers (or a retried upload) never collide on a name.
//!
//! [`SstFile`] is the in-memory handle. The table's current version holds one `Arc` per
//! live file and every read snapshot clones the `Arc`s it uses. When an edit removes a
//! file (compaction, retention) the handle is marked deleted, and the object is deleted
//! only when the last `Arc` drops: a file held by a snapshot stays readable.
//!
//! A *pack* holds the SSTs of many small tables from one flush round in one object
//! (`{prefix}/data/_packs/{file_id}.parquet`, any segments): each member is a
//! complete Parquet file at [`SstMeta::pack_offset`], `bytes` long, so one PUT (and
//! one fsync on local disk) serves hundreds of tables. Members are read, compacted and
//! removed like any SST; the object goes once every member is removed and unread
//! ([`Pack`]).

pub(crate) mod cache;
mod index_tags;
pub(crate) mod last_rows;
pub(crate) mod reader;
pub(crate) mod selection;
pub(crate) mod series_index;
#[cfg(test)]
mod tsbs_size;
pub(crate) mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use object_store::ObjectStore;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

/// What the manifest and the query layer know about one SST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SstMeta {
    pub file_id: String,
    pub db: String,
    pub table: String,
    /// Object-store path of the Parquet file.
    pub path: String,
    /// Start (ns) of the time segment the file belongs to.
    pub segment_start: i64,
    /// Inclusive time bounds of its rows (ns).
    pub min_time: i64,
    pub max_time: i64,
    pub rows: u64,
    /// Size of the Parquet object.
    pub bytes: u64,
    /// Highest WAL sequence number whose data the file holds. When rows with the same
    /// primary key appear in several files, the file with the higher `max_seq` wins
    /// (field by field). Compaction must therefore only merge files that are adjacent
    /// in `max_seq` order among the files they overlap with, and give the output the
    /// inputs' highest `max_seq`.
    pub max_seq: u64,
    /// 0 for flush output; compaction may use higher levels.
    #[serde(default)]
    pub level: u32,
    /// Per tag column, the smallest and largest value in the file (rows with the tag
    /// unset are not counted). Lets queries skip files by tag (`host = 'a'`).
    #[serde(default)]
    pub tag_ranges: std::collections::BTreeMap<String, (String, String)>,
    /// Every tombstone up to this sequence number was applied to the file's rows when
    /// it was written (`delete.rs`), so only newer ones still apply to it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tombstones_applied: u64,
    /// Set for a member of a pack: the SST is the `bytes` bytes at this offset of the
    /// object at `path`, which other SSTs share (see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack_offset: Option<u64>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl SstMeta {
    /// Rows of records up to this sequence number are in the file as the deletes
    /// left them: tombstones newer than it still apply.
    pub fn deletes_seen(&self) -> u64 {
        self.max_seq.max(self.tombstones_applied)
    }

    /// `path` as an object-store path (it is stored already encoded).
    pub fn object_path(&self) -> Path {
        Path::parse(&self.path).unwrap_or_else(|_| Path::from(self.path.as_str()))
    }

    /// Where the SST's bytes start in its object (0 unless it is in a pack).
    pub fn offset(&self) -> u64 {
        self.pack_offset.unwrap_or(0)
    }

    /// The key of the SST's parsed metadata in the metadata cache: the path, and the
    /// offset for a pack member (its pack's path names several SSTs).
    pub(crate) fn cache_key(&self) -> std::borrow::Cow<'_, str> {
        match self.pack_offset {
            Some(off) => format!("{}#{off}", self.path).into(),
            None => self.path.as_str().into(),
        }
    }
}

/// Min and max value of every tag column of `batch` (see [`SstMeta::tag_ranges`]).
pub(crate) fn tag_ranges(
    batch: &arrow::record_batch::RecordBatch,
) -> std::collections::BTreeMap<String, (String, String)> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Int32Type};
    let mut out = std::collections::BTreeMap::new();
    for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
        if field
            .metadata()
            .get(crate::schema::ROLE_KEY)
            .map(String::as_str)
            != Some("tag")
        {
            continue;
        }
        let values: Vec<&str> = match col.data_type() {
            DataType::Dictionary(k, _) if **k == DataType::Int32 => {
                let dict = col.as_dictionary::<Int32Type>();
                let strings = dict.values().as_string::<i32>();
                // Only values some row references count (the dictionary may hold more).
                let mut used = vec![false; strings.len()];
                for key in dict.keys().iter().flatten() {
                    used[key as usize] = true;
                }
                (0..strings.len())
                    .filter(|&i| used[i] && strings.is_valid(i))
                    .map(|i| strings.value(i))
                    .collect()
            }
            DataType::Utf8 => col.as_string::<i32>().iter().flatten().collect(),
            _ => continue,
        };
        if let (Some(min), Some(max)) = (values.iter().min(), values.iter().max()) {
            out.insert(field.name().clone(), (min.to_string(), max.to_string()));
        }
    }
    out
}

/// A fresh random file id.
pub(crate) fn new_file_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The object path of an SST.
pub(crate) fn sst_path(
    prefix: &str,
    db: &str,
    table: &str,
    segment_start: i64,
    file_id: &str,
) -> Path {
    // Names too long for a path component (only from before the name limits) get a
    // shortened, hashed component instead of failing every flush.
    let mut p = base_path(prefix)
        .join("data")
        .join(crate::names::path_component(db).as_str())
        .join(crate::names::path_component(table).as_str());
    p = p.join(segment_start.to_string().as_str());
    p.join(format!("{file_id}.parquet").as_str())
}

/// The object path of a pack (see the module docs).
pub(crate) fn pack_path(prefix: &str, file_id: &str) -> Path {
    base_path(prefix)
        .join("data")
        .join("_packs")
        .join(format!("{file_id}.parquet").as_str())
}

/// The store root for `prefix` (which may be empty or contain `/`).
pub(crate) fn base_path(prefix: &str) -> Path {
    prefix
        .split('/')
        .filter(|s| !s.is_empty())
        .fold(Path::default(), |p, part| p.join(part))
}

/// Deletes objects in the background on the io runtime, and drops their entries from
/// the metadata cache.
#[derive(Debug)]
pub(crate) struct Purger {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) io: Handle,
    pub(crate) cache: Arc<cache::MetadataCache>,
}

impl Purger {
    fn delete(&self, path: Path) {
        let store = Arc::clone(&self.store);
        self.io.spawn(async move {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    tracing::debug!(%path, "deleted SST");
                }
                Err(e) => {
                    tracing::warn!(%path, error = %e, "could not delete SST; it is now an orphan")
                }
            }
        });
    }
}

/// One pack object, shared by the [`SstFile`]s of its members: it is deleted when the
/// last of them drops, if every member was removed from its table by then (an engine
/// that closes drops them all without removing any).
#[derive(Debug)]
pub(crate) struct Pack {
    path: Path,
    /// Members not yet removed.
    live: AtomicUsize,
    purger: Option<Arc<Purger>>,
}

/// Packs by path.
pub(crate) type Packs = std::collections::HashMap<String, Arc<Pack>>;

impl Pack {
    pub(crate) fn new(path: Path, members: usize, purger: Option<Arc<Purger>>) -> Arc<Self> {
        Arc::new(Self {
            path,
            live: AtomicUsize::new(members),
            purger,
        })
    }

    /// The packs the SSTs of `metas` belong to, one per pack path, each counting
    /// its members among `metas` (on opening: the manifest's live SSTs).
    pub(crate) fn registry<'a>(
        metas: impl IntoIterator<Item = &'a SstMeta>,
        purger: &Option<Arc<Purger>>,
    ) -> Packs {
        let mut counts: std::collections::HashMap<&str, usize> = Default::default();
        for m in metas.into_iter().filter(|m| m.pack_offset.is_some()) {
            *counts.entry(m.path.as_str()).or_default() += 1;
        }
        counts
            .into_iter()
            .map(|(path, n)| {
                let object = Path::parse(path).unwrap_or_else(|_| Path::from(path));
                (path.to_string(), Pack::new(object, n, purger.clone()))
            })
            .collect()
    }
}

impl Drop for Pack {
    fn drop(&mut self) {
        if self.live.load(Ordering::SeqCst) == 0
            && let Some(p) = &self.purger
        {
            p.delete(self.path.clone());
        }
    }
}

/// A live SST, shared by the table version and the snapshots reading it.
#[derive(Debug)]
pub struct SstFile {
    meta: SstMeta,
    deleted: AtomicBool,
    purger: Option<Arc<Purger>>,
    /// The pack it is in (`meta.pack_offset` is set), which owns the object.
    pack: Option<Arc<Pack>>,
}

impl SstFile {
    pub(crate) fn new(meta: SstMeta, purger: Option<Arc<Purger>>) -> Self {
        Self {
            meta,
            deleted: AtomicBool::new(false),
            purger,
            pack: None,
        }
    }

    /// A member of `pack` (`meta.pack_offset` is set, `meta.path` is the pack's).
    pub(crate) fn in_pack(meta: SstMeta, purger: Option<Arc<Purger>>, pack: Arc<Pack>) -> Self {
        Self {
            meta,
            deleted: AtomicBool::new(false),
            purger,
            pack: Some(pack),
        }
    }

    /// A handle for `meta`: a member of its pack in `packs` if it is in a pack.
    pub(crate) fn open(meta: SstMeta, purger: &Option<Arc<Purger>>, packs: &Packs) -> Self {
        match packs.get(&meta.path).filter(|_| meta.pack_offset.is_some()) {
            Some(pack) => Self::in_pack(meta, purger.clone(), Arc::clone(pack)),
            None => Self::new(meta, purger.clone()),
        }
    }

    pub fn meta(&self) -> &SstMeta {
        &self.meta
    }

    /// Mark the file as removed from the version: the object is deleted once the last
    /// holder drops it.
    pub(crate) fn mark_deleted(&self) {
        let was = self.deleted.swap(true, Ordering::SeqCst);
        if !was && let Some(pack) = &self.pack {
            pack.live.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for SstFile {
    fn drop(&mut self) {
        if self.deleted.load(Ordering::SeqCst)
            && let Some(p) = &self.purger
        {
            p.cache.remove(&self.meta.cache_key());
            // A pack member's object goes with its pack (`Pack`'s drop; one without
            // its pack handle never deletes it: startup GC does, once unreferenced).
            if self.meta.pack_offset.is_none() {
                p.delete(self.meta.object_path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_and_prefixed() {
        let p = sst_path("pre/fix", "my db", "a/b", -7200, "ff");
        assert_eq!(p.as_ref(), "pre/fix/data/my db/a%2Fb/-7200/ff.parquet");
        let q = sst_path("", "db", "t", 0, "x");
        assert_eq!(q.as_ref(), "data/db/t/0/x.parquet");
        assert_eq!(new_file_id().len(), 32);
    }
}
