//! The SST metadata cache: per SST path, the parsed Parquet footer, page index and
//! series index, so a warm query opens a file without a GET.
//!
//! SSTs are immutable and never reuse a path (the file id is random), so an entry can
//! never be stale; entries of deleted SSTs are dropped when the object is deleted
//! ([`super::Purger`]). The cache is bounded in bytes (`sst.metadata_cache_size`)
//! and evicts the least recently used entries; 0 disables it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sync::Mutex;
use parquet::arrow::arrow_reader::ArrowReaderMetadata;

use arrow::record_batch::RecordBatch;

use super::series_index::SeriesIndex;

/// What opening an SST produces, shared between the cache and readers.
#[derive(Debug, Clone)]
pub(crate) struct SstMetadata {
    pub(crate) arrow: ArrowReaderMetadata,
    pub(crate) index: Option<Arc<SeriesIndex>>,
    /// The last row of each series of the index, in run order (see `last_rows`).
    pub(crate) last_rows: Option<RecordBatch>,
}

impl SstMetadata {
    /// Approximate heap bytes held.
    pub(crate) fn size(&self) -> usize {
        self.arrow.metadata().memory_size()
            + self.index.as_ref().map_or(0, |i| i.heap_size())
            + self
                .last_rows
                .as_ref()
                .map_or(0, RecordBatch::get_array_memory_size)
    }
}

/// Counters of the cache (for `/metrics`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MetadataCacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    /// Bytes held now, and the bound.
    pub bytes: u64,
    pub capacity_bytes: u64,
    pub entries: u64,
}

struct Entry {
    meta: SstMetadata,
    bytes: usize,
    tick: u64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, Entry>,
    /// tick of last use -> path (least recently used first).
    lru: BTreeMap<u64, String>,
    bytes: usize,
    tick: u64,
}

/// A byte-bounded LRU map from SST path to its parsed metadata.
#[derive(Default)]
pub(crate) struct MetadataCache {
    capacity: usize,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl std::fmt::Debug for MetadataCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataCache")
            .field("stats", &self.stats())
            .finish()
    }
}

impl MetadataCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ..Default::default()
        }
    }

    /// The entry for `path`, counting a hit or a miss.
    pub(crate) fn get(&self, path: &str) -> Option<SstMetadata> {
        let mut inner = self.inner.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let Inner { map, lru, .. } = &mut *inner;
        match map.get_mut(path) {
            Some(e) => {
                lru.remove(&e.tick);
                e.tick = tick;
                lru.insert(tick, path.to_string());
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(e.meta.clone())
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Keep `meta` for `path`, evicting the least recently used entries to stay under
    /// the bound. An entry larger than the whole bound is not kept.
    pub(crate) fn insert(&self, path: &str, meta: SstMetadata) {
        let bytes = meta.size() + path.len();
        if bytes > self.capacity {
            return;
        }
        let mut inner = self.inner.lock();
        Self::remove_locked(&mut inner, path);
        while inner.bytes + bytes > self.capacity {
            let Some((_, victim)) = inner.lru.pop_first() else {
                break;
            };
            if let Some(e) = inner.map.remove(&victim) {
                inner.bytes -= e.bytes;
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner.lru.insert(tick, path.to_string());
        inner.bytes += bytes;
        inner
            .map
            .insert(path.to_string(), Entry { meta, bytes, tick });
    }

    /// Drop the entry of a deleted SST.
    pub(crate) fn remove(&self, path: &str) {
        Self::remove_locked(&mut self.inner.lock(), path);
    }

    fn remove_locked(inner: &mut Inner, path: &str) {
        if let Some(e) = inner.map.remove(path) {
            inner.lru.remove(&e.tick);
            inner.bytes -= e.bytes;
        }
    }

    pub(crate) fn stats(&self) -> MetadataCacheStats {
        let inner = self.inner.lock();
        MetadataCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            bytes: inner.bytes as u64,
            capacity_bytes: self.capacity as u64,
            entries: inner.map.len() as u64,
        }
    }
}
