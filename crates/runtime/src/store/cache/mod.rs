//! [`CachedStore`]: a bounded memory and disk cache of immutable objects (SSTs) in
//! front of the io-bound object store, so warm queries on S3 run at local-disk speed.
//!
//! Objects are cached in fixed-size **blocks** (1 MiB by default) keyed by
//! `(object path, block number)`: a byte range of an object maps to the blocks that
//! cover it. Only paths the [`CacheConfig::cacheable`] policy accepts are cached
//! (by default SSTs, `…/data/…/*.parquet`, whose names are random and never
//! rewritten), so a key is valid forever; the manifest and everything else passes
//! through untouched. Two tiers:
//!
//! - **memory**: blocks as `Bytes`, LRU, bounded in bytes ([`lru`]);
//! - **disk**: one checksummed file per block, LRU, bounded in bytes, its index rebuilt
//!   by scanning the directory at startup ([`disk`]).
//!
//! A read looks in memory, then (on `io`) on disk, then fetches what is still missing
//! from the store: contiguous missing blocks, merged across gaps of up to
//! [`MAX_GAP_BLOCKS`], in one ranged GET each. Concurrent misses of the same block
//! join the one fetch in flight. Fetches run as tasks on the `io` runtime, disk reads
//! and writes under `spawn_blocking` there, so no cache IO ever runs on a CPU
//! runtime; a memory hit is a map lookup on the caller's thread.
//!
//! Puts of cacheable objects (flush and compaction outputs) are written through into
//! the disk tier once the upload succeeded; deletes (compaction, retention, GC) drop
//! the object's blocks from both tiers.

mod disk;
mod lru;
mod stats;
mod wrapper;

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sync::Mutex;
use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore};
use tokio::runtime::Handle;

pub use stats::{CacheStats, TierStats};
pub use wrapper::CachedStore;

use disk::{DiskRead, DiskTier};
use lru::{BlockKey, Lru};
use stats::{Counters, TierCounters};

/// Missing blocks separated by at most this many blocks are fetched with one GET.
pub const MAX_GAP_BLOCKS: u64 = 1;

/// Default block size: 1 MiB (object_store's own range-coalescing gap).
pub const DEFAULT_BLOCK_SIZE: u64 = 1024 * 1024;

/// How the cache is set up.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Bytes of the memory tier (0: no memory tier).
    pub memory_bytes: u64,
    /// The disk tier, if any.
    pub disk: Option<DiskCacheConfig>,
    /// Size of the blocks objects are cached in.
    pub block_size: u64,
    /// Which paths are immutable, and so may be cached.
    pub cacheable: fn(&Path) -> bool,
}

/// Where the disk tier lives and how big it may grow.
#[derive(Debug, Clone)]
pub struct DiskCacheConfig {
    pub dir: PathBuf,
    pub bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            memory_bytes: 256 * 1024 * 1024,
            disk: None,
            block_size: DEFAULT_BLOCK_SIZE,
            cacheable: is_sst_path,
        }
    }
}

/// The engine's SST paths: `{prefix}/data/{db}/{table}/{segment}/{file_id}.parquet`.
/// Their `file_id` is 128 random bits, so a name is never reused for other bytes.
pub fn is_sst_path(path: &Path) -> bool {
    path.filename().is_some_and(|f| f.ends_with(".parquet"))
        && path.parts().any(|p| p.as_ref() == "data")
}

/// One fetch of a run of blocks, shared by every reader waiting for one of them.
type Fetch = Shared<BoxFuture<'static, Result<Arc<Vec<Bytes>>, Arc<str>>>>;

/// The state behind a [`CachedStore`].
struct Core {
    inner: Arc<dyn ObjectStore>,
    io: Handle,
    block: u64,
    cacheable: fn(&Path) -> bool,
    memory: Mutex<Lru<Bytes>>,
    disk: Option<DiskTier>,
    /// Blocks being fetched: the fetch, its id, and the block's index in its run.
    inflight: Mutex<HashMap<BlockKey, (u64, Fetch, usize)>>,
    /// Object sizes learnt from puts, fetches and disk headers.
    sizes: Mutex<HashMap<Arc<str>, u64>>,
    counters: Arc<Counters>,
    next_fetch: AtomicU64,
}

fn cache_error(message: impl Into<String>) -> object_store::Error {
    object_store::Error::Generic {
        store: "cache",
        source: message.into().into(),
    }
}

impl Core {
    fn open(
        inner: Arc<dyn ObjectStore>,
        io: Handle,
        config: &CacheConfig,
    ) -> std::io::Result<Self> {
        let counters = Arc::new(Counters::default());
        let mut sizes = HashMap::new();
        let disk = match &config.disk {
            Some(d) if d.bytes > 0 => {
                let (tier, found) = DiskTier::open(&d.dir, d.bytes, Arc::clone(&counters))?;
                sizes.extend(found);
                Some(tier)
            }
            _ => None,
        };
        Ok(Self {
            inner,
            io,
            block: config.block_size.max(1),
            cacheable: config.cacheable,
            memory: Mutex::new(Lru::new(config.memory_bytes)),
            disk,
            inflight: Mutex::new(HashMap::new()),
            sizes: Mutex::new(sizes),
            counters,
            next_fetch: AtomicU64::new(0),
        })
    }

    fn stats(&self) -> CacheStats {
        let memory = {
            let m = self.memory.lock();
            (m.used(), m.capacity(), m.len() as u64)
        };
        self.counters
            .snapshot(memory, self.disk.as_ref().map(DiskTier::usage))
    }

    fn size_of(&self, path: &str) -> Option<u64> {
        self.sizes.lock().get(path).copied()
    }

    /// Whether every block of `path` (of `size` bytes) is in memory or on disk.
    fn holds_all(&self, path: &Arc<str>, size: u64) -> bool {
        let blocks = size.div_ceil(self.block);
        let mem = self.memory.lock();
        (0..blocks).all(|b| {
            let key = (Arc::clone(path), b);
            mem.peek(&key).is_some() || self.disk.as_ref().is_some_and(|d| d.contains(&key))
        })
    }

    /// The bytes of `ranges` of `location`, through the cache. A range past the end
    /// of the object comes back short.
    async fn read_ranges(
        self: &Arc<Self>,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let path: Arc<str> = Arc::from(location.as_ref());
        let b = self.block;
        let mut needed = BTreeSet::new();
        for r in ranges {
            if r.start > r.end {
                return Err(cache_error(format!(
                    "{path}: invalid range {}..{}",
                    r.start, r.end
                )));
            }
            if r.end > r.start {
                needed.extend(r.start / b..=(r.end - 1) / b);
            }
        }
        let mut got: HashMap<u64, Bytes> = HashMap::with_capacity(needed.len());
        {
            let mut mem = self.memory.lock();
            for &blk in &needed {
                if let Some(v) = mem.get(&(Arc::clone(&path), blk)) {
                    got.insert(blk, v.clone());
                }
            }
        }
        let c = &self.counters;
        TierCounters::add(&c.memory.hits, got.len() as u64);
        TierCounters::add(&c.memory.misses, (needed.len() - got.len()) as u64);
        let missing: Vec<u64> = needed
            .iter()
            .copied()
            .filter(|b| !got.contains_key(b))
            .collect();
        if !missing.is_empty() {
            for (blk, fetch, i) in self.join_or_start(&path, location, &missing) {
                let blocks = fetch.await.map_err(|m| cache_error(m.to_string()))?;
                got.insert(blk, blocks[i].clone());
            }
        }
        Ok(ranges.iter().map(|r| assemble(&got, b, r)).collect())
    }

    /// For each missing block, the fetch that will bring it: one already in flight,
    /// or a new one for its run.
    fn join_or_start(
        self: &Arc<Self>,
        path: &Arc<str>,
        location: &Path,
        missing: &[u64],
    ) -> Vec<(u64, Fetch, usize)> {
        let mut waits = Vec::with_capacity(missing.len());
        let mut inflight = self.inflight.lock();
        let mut fresh = Vec::new();
        for &blk in missing {
            match inflight.get(&(Arc::clone(path), blk)) {
                Some((_, fetch, i)) => {
                    TierCounters::add(&self.counters.coalesced, 1);
                    waits.push((blk, fetch.clone(), *i));
                }
                None => fresh.push(blk),
            }
        }
        for (first, last) in runs(&fresh, MAX_GAP_BLOCKS) {
            let id = self.next_fetch.fetch_add(1, Ordering::Relaxed);
            let task = self.io.spawn(Arc::clone(self).fetch_run(
                Arc::clone(path),
                location.clone(),
                first,
                last,
                id,
            ));
            let fetch: Fetch = async move {
                match task.await {
                    Ok(result) => result,
                    Err(e) => Err(Arc::from(format!("cache fetch task failed: {e}"))),
                }
            }
            .boxed()
            .shared();
            for blk in first..=last {
                inflight
                    .entry((Arc::clone(path), blk))
                    .or_insert_with(|| (id, fetch.clone(), (blk - first) as usize));
            }
            for &blk in fresh.iter().filter(|b| (first..=last).contains(*b)) {
                waits.push((blk, fetch.clone(), (blk - first) as usize));
            }
        }
        waits
    }

    /// Bring blocks `first..=last` of `path`: from disk where present, from the store
    /// otherwise; fill the tiers; then let go of the in-flight entries.
    async fn fetch_run(
        self: Arc<Self>,
        path: Arc<str>,
        location: Path,
        first: u64,
        last: u64,
        id: u64,
    ) -> Result<Arc<Vec<Bytes>>, Arc<str>> {
        let result = self.load_run(&path, &location, first, last).await;
        let mut inflight = self.inflight.lock();
        for blk in first..=last {
            let key = (Arc::clone(&path), blk);
            if inflight.get(&key).is_some_and(|(i, ..)| *i == id) {
                inflight.remove(&key);
            }
        }
        result.map(Arc::new)
    }

    async fn load_run(
        self: &Arc<Self>,
        path: &Arc<str>,
        location: &Path,
        first: u64,
        last: u64,
    ) -> Result<Vec<Bytes>, Arc<str>> {
        let n = (last - first + 1) as usize;
        let mut blocks: Vec<Option<Bytes>> = vec![None; n];
        if let Some(disk) = &self.disk {
            let present: Vec<u64> = (first..=last)
                .filter(|b| disk.contains(&(Arc::clone(path), *b)))
                .collect();
            if !present.is_empty() {
                let (core, p) = (Arc::clone(self), Arc::clone(path));
                let reads = self
                    .io
                    .spawn_blocking(move || {
                        let disk = core.disk.as_ref().expect("disk tier");
                        present
                            .into_iter()
                            .map(|b| (b, disk.read(&(Arc::clone(&p), b))))
                            .collect::<Vec<_>>()
                    })
                    .await
                    .map_err(|e| Arc::<str>::from(format!("cache disk read failed: {e}")))?;
                for (b, read) in reads {
                    if let DiskRead::Hit(bytes) = read {
                        blocks[(b - first) as usize] = Some(bytes);
                    }
                }
            }
            let hits = blocks.iter().filter(|b| b.is_some()).count() as u64;
            TierCounters::add(&self.counters.disk.hits, hits);
            TierCounters::add(&self.counters.disk.misses, n as u64 - hits);
        }
        let from_disk: Vec<bool> = blocks.iter().map(Option::is_some).collect();
        let wanted: Vec<u64> = (first..=last)
            .filter(|b| blocks[(b - first) as usize].is_none())
            .collect();
        let fetches = runs(&wanted, 0)
            .into_iter()
            .map(|(s, e)| self.fetch_remote(path, location, s, e));
        for (s, data) in futures::future::try_join_all(fetches).await? {
            for (k, chunk) in split(&data, self.block).into_iter().enumerate() {
                blocks[(s - first) as usize + k] = Some(chunk);
            }
        }
        // Blocks past the end of the object (a run's tail) are empty.
        let blocks: Vec<Bytes> = blocks.into_iter().map(Option::unwrap_or_default).collect();
        self.fill_memory(path, first, &blocks);
        if self.disk.is_some() {
            let object_size = self.size_of(path).unwrap_or(0);
            let fresh: Vec<(u64, Bytes)> = blocks
                .iter()
                .enumerate()
                .filter(|(i, b)| !from_disk[*i] && !b.is_empty())
                .map(|(i, b)| (first + i as u64, b.clone()))
                .collect();
            self.write_disk(Arc::clone(path), object_size, fresh);
        }
        Ok(blocks)
    }

    /// One ranged GET for blocks `s..=e`; returns `s` and the bytes.
    async fn fetch_remote(
        &self,
        path: &Arc<str>,
        location: &Path,
        s: u64,
        e: u64,
    ) -> Result<(u64, Bytes), Arc<str>> {
        let range = s * self.block..(e + 1) * self.block;
        let fail = |err: object_store::Error| {
            Arc::<str>::from(format!(
                "could not fetch {path} (bytes {}..{}) from the object store: {err}",
                range.start, range.end
            ))
        };
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..GetOptions::default()
        };
        let result = self.inner.get_opts(location, options).await.map_err(fail)?;
        self.sizes.lock().insert(Arc::clone(path), result.meta.size);
        let data = result.bytes().await.map_err(fail)?;
        TierCounters::add(&self.counters.fetches, 1);
        TierCounters::add(&self.counters.fetched_bytes, data.len() as u64);
        Ok((s, data))
    }

    fn fill_memory(&self, path: &Arc<str>, first: u64, blocks: &[Bytes]) {
        let mut mem = self.memory.lock();
        if mem.capacity() == 0 {
            return;
        }
        for (i, data) in blocks.iter().enumerate() {
            let key = (Arc::clone(path), first + i as u64);
            let evicted = mem.insert(key.clone(), data.clone());
            let kept = mem.peek(&key).is_some();
            if kept {
                TierCounters::add(&self.counters.memory.filled_bytes, data.len() as u64);
            }
            let others = evicted.iter().filter(|(k, _)| *k != key).count() as u64;
            TierCounters::add(&self.counters.memory.evictions, others);
        }
    }

    /// Write blocks into the disk tier, in the background on `io`'s blocking pool.
    fn write_disk(self: &Arc<Self>, path: Arc<str>, object_size: u64, blocks: Vec<(u64, Bytes)>) {
        if blocks.is_empty() || self.disk.is_none() {
            return;
        }
        let core = Arc::clone(self);
        self.io.spawn_blocking(move || {
            if let Some(disk) = &core.disk {
                for (b, data) in blocks {
                    disk.write(&(Arc::clone(&path), b), object_size, &data);
                }
            }
        });
    }

    /// A cacheable object was uploaded: put its blocks into the disk tier.
    fn write_through(self: &Arc<Self>, location: &Path, parts: Vec<Bytes>) {
        let path: Arc<str> = Arc::from(location.as_ref());
        let size: u64 = parts.iter().map(|p| p.len() as u64).sum();
        self.sizes.lock().insert(Arc::clone(&path), size);
        let Some(disk) = &self.disk else {
            return;
        };
        if size > disk.usage().1 / 4 {
            return; // would flush a quarter of the tier at once
        }
        TierCounters::add(&self.counters.write_through_bytes, size);
        let core = Arc::clone(self);
        self.io.spawn_blocking(move || {
            let mut whole = BytesMut::with_capacity(size as usize);
            for p in parts {
                whole.extend_from_slice(&p);
            }
            let whole = whole.freeze();
            if let Some(disk) = &core.disk {
                for (b, data) in split(&whole, core.block).into_iter().enumerate() {
                    disk.write(&(Arc::clone(&path), b as u64), size, &data);
                }
            }
        });
    }

    /// `location` was deleted (or overwritten): drop its blocks from both tiers.
    fn invalidate(&self, location: &Path) {
        let path: Arc<str> = Arc::from(location.as_ref());
        self.sizes.lock().remove(&path);
        let dropped = self.memory.lock().remove_path(&path).len();
        let files = self
            .disk
            .as_ref()
            .map(|d| d.forget_path(&path))
            .unwrap_or_default();
        if dropped > 0 || !files.is_empty() {
            TierCounters::add(&self.counters.invalidations, 1);
        }
        if !files.is_empty() {
            self.io.spawn_blocking(move || disk::remove_files(files));
        }
    }
}

/// Runs `(first, last)` of sorted block numbers, merging runs whose gap is at most
/// `gap` blocks.
fn runs(blocks: &[u64], gap: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &b in blocks {
        match out.last_mut() {
            Some((_, last)) if b <= *last + gap + 1 => *last = (*last).max(b),
            _ => out.push((b, b)),
        }
    }
    out
}

/// `data` cut into `block`-sized pieces (zero-copy).
fn split(data: &Bytes, block: u64) -> Vec<Bytes> {
    let block = block as usize;
    (0..data.len())
        .step_by(block)
        .map(|s| data.slice(s..(s + block).min(data.len())))
        .collect()
}

/// The bytes of `r` from the blocks in `got` (all of them present). Short when the
/// object ends inside `r`.
fn assemble(got: &HashMap<u64, Bytes>, block: u64, r: &Range<u64>) -> Bytes {
    if r.end <= r.start {
        return Bytes::new();
    }
    let (first, last) = (r.start / block, (r.end - 1) / block);
    // Block `b`'s part of `r`, and whether the object ended before the part's end.
    let piece = |b: u64| -> (Bytes, bool) {
        let data = got.get(&b).cloned().unwrap_or_default();
        let base = b * block;
        let lo = (r.start.max(base) - base) as usize;
        let want = (r.end.min(base + block) - base) as usize;
        let hi = want.min(data.len());
        let part = if lo >= hi {
            Bytes::new()
        } else {
            data.slice(lo..hi)
        };
        (part, hi < want)
    };
    if first == last {
        return piece(first).0;
    }
    let mut out = BytesMut::with_capacity((r.end - r.start) as usize);
    for b in first..=last {
        let (part, ended) = piece(b);
        out.extend_from_slice(&part);
        if ended {
            break;
        }
    }
    out.freeze()
}

#[cfg(test)]
mod tests;
