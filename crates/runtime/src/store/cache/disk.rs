//! The disk tier: one file per cached block under the cache directory, LRU by bytes.
//!
//! A block file is `{fnv64(path):016x}-{block}-{generation}.blk`, a new generation
//! per write, so removing an evicted file can never hit a newer copy of the block:
//!
//! | bytes | field                                                        |
//! |-------|--------------------------------------------------------------|
//! | 4     | magic `BHC1`                                                 |
//! | 4     | CRC-32 of everything after this field                         |
//! | 8     | block number (little endian, like every integer here)        |
//! | 8     | size of the whole object                                     |
//! | 4     | length of the object path                                    |
//! | 4     | length of the block's data                                   |
//! | ..    | the object path (UTF-8), then the data                       |
//!
//! A file is written under a temporary name and renamed into place; no fsync, because
//! a torn or partial file is caught by its size (at startup) or its checksum (on every
//! read) and dropped, never served. At startup the index is rebuilt from the headers
//! of the files present, oldest modification first, so recency survives a restart
//! roughly. Every method here does blocking file IO: callers run them under
//! `spawn_blocking` on the `io` runtime.

use std::fs;
use std::io::{ErrorKind, Read};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sync::Mutex;
use bytes::Bytes;

use super::lru::{BlockKey, Lru, Weighted};
use super::stats::{Counters, TierCounters};

/// An object path and the object's size in bytes.
pub(crate) type ObjectSize = (Arc<str>, u64);

const MAGIC: &[u8; 4] = b"BHC1";
const HEADER: usize = 32;
const SUFFIX: &str = ".blk";

/// What the index knows of one block file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DiskEntry {
    /// Size of the file (header, path and data): what it weighs against the bound.
    file_bytes: u64,
    /// Which write reserved the entry; a write only publishes its own reservation.
    generation: u64,
    /// Whether the file is complete (false while it is being written).
    ready: bool,
}

impl Weighted for DiskEntry {
    fn weight(&self) -> u64 {
        self.file_bytes
    }
}

/// The outcome of reading a block file.
pub(crate) enum DiskRead {
    Hit(Bytes),
    /// Not in the tier (never was, evicted, or being written).
    Missing,
    /// The file was there but wrong (checksum, size, header); it has been dropped.
    Corrupt,
}

/// The disk tier.
pub(crate) struct DiskTier {
    dir: PathBuf,
    index: Mutex<Lru<DiskEntry>>,
    next_generation: AtomicU64,
    counters: Arc<Counters>,
}

impl DiskTier {
    /// Open (creating it if needed) `dir` as a tier of `capacity` bytes, rebuilding the
    /// index from the block files found there. Returns the tier and the object sizes
    /// learnt from the files' headers.
    pub(crate) fn open(
        dir: &FsPath,
        capacity: u64,
        counters: Arc<Counters>,
    ) -> std::io::Result<(Self, Vec<ObjectSize>)> {
        fs::create_dir_all(dir)?;
        let tier = Self {
            dir: dir.to_path_buf(),
            index: Mutex::new(Lru::new(capacity)),
            next_generation: AtomicU64::new(1),
            counters,
        };
        let mut found = Vec::new();
        for item in fs::read_dir(dir)? {
            let item = item?;
            let name = item.file_name();
            let name = name.to_string_lossy();
            let path = item.path();
            if !name.ends_with(SUFFIX) {
                // A temporary file of a write the process did not finish.
                if name.ends_with(".tmp") {
                    let _ = fs::remove_file(&path);
                }
                continue;
            }
            let generation = name
                .trim_end_matches(SUFFIX)
                .rsplit('-')
                .next()
                .and_then(|g| g.parse::<u64>().ok());
            match (read_header(&path), generation) {
                (Some((key, object_size, file_bytes, mtime)), Some(generation))
                    if path == tier.file(&key, generation) =>
                {
                    found.push((mtime, key, object_size, file_bytes, generation))
                }
                _ => {
                    TierCounters::add(&tier.counters.corrupt, 1);
                    tracing::warn!(path = %path.display(), "dropping a cache file with a bad header or size");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        found.sort_by_key(|(mtime, ..)| *mtime);
        let mut sizes = Vec::new();
        let next = found.iter().map(|f| f.4 + 1).max().unwrap_or(1);
        tier.next_generation.store(next, Ordering::Relaxed);
        for (_, key, object_size, file_bytes, generation) in found {
            sizes.push((Arc::clone(&key.0), object_size));
            let entry = DiskEntry {
                file_bytes,
                generation,
                ready: true,
            };
            let evicted = tier.index.lock().insert(key, entry);
            tier.delete_evicted(evicted, None);
        }
        Ok((tier, sizes))
    }

    /// Bytes held, capacity, blocks held.
    pub(crate) fn usage(&self) -> (u64, u64, u64) {
        let ix = self.index.lock();
        (ix.used(), ix.capacity(), ix.len() as u64)
    }

    /// Whether `key` is complete in the tier (marks it recently used).
    pub(crate) fn contains(&self, key: &BlockKey) -> bool {
        self.index.lock().get(key).is_some_and(|e| e.ready)
    }

    fn file(&self, key: &BlockKey, generation: u64) -> PathBuf {
        self.dir.join(format!(
            "{:016x}-{}-{generation}{SUFFIX}",
            fnv64(key.0.as_bytes()),
            key.1
        ))
    }

    /// Read and verify `key`'s block. A corrupt file is removed with its entry.
    pub(crate) fn read(&self, key: &BlockKey) -> DiskRead {
        let generation = match self.index.lock().peek(key) {
            Some(e) if e.ready => e.generation,
            _ => return DiskRead::Missing,
        };
        let path = self.file(key, generation);
        let buf = match fs::read(&path) {
            Ok(buf) => Bytes::from(buf),
            Err(e) => {
                if e.kind() != ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "could not read a cache file");
                }
                // Evicted (or removed by hand) since it was looked up.
                self.forget(key, generation);
                return DiskRead::Missing;
            }
        };
        match decode(&buf) {
            Some((p, block, _, data)) if *p == *key.0 && block == key.1 => {
                DiskRead::Hit(buf.slice(data))
            }
            _ => {
                TierCounters::add(&self.counters.corrupt, 1);
                tracing::warn!(path = %path.display(), object = %key.0, block = key.1,
                    "cache file failed its checksum or header check; dropped, refetching");
                self.forget(key, generation);
                let _ = fs::remove_file(&path);
                DiskRead::Corrupt
            }
        }
    }

    fn forget(&self, key: &BlockKey, generation: u64) {
        let mut ix = self.index.lock();
        if ix.peek(key).is_some_and(|e| e.generation == generation) {
            ix.remove(key);
        }
    }

    /// Write `data` as block `key` of an object of `object_size` bytes, evicting the
    /// least recently used blocks to stay within the capacity.
    pub(crate) fn write(&self, key: &BlockKey, object_size: u64, data: &[u8]) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let file_bytes = (HEADER + key.0.len() + data.len()) as u64;
        let entry = DiskEntry {
            file_bytes,
            generation,
            ready: false,
        };
        let evicted = self.index.lock().insert(key.clone(), entry);
        if self.delete_evicted(evicted, Some((key, generation))) {
            return; // larger than the whole tier
        }
        let path = self.file(key, generation);
        let tmp = self.dir.join(format!(
            "{}.{generation}.tmp",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        let written =
            fs::write(&tmp, encode(key, object_size, data)).and_then(|()| fs::rename(&tmp, &path));
        let mut ix = self.index.lock();
        let ours = ix.peek(key).is_some_and(|e| e.generation == generation);
        match written {
            Ok(()) if ours => {
                if let Some(e) = ix.peek_mut(key) {
                    e.ready = true;
                }
                TierCounters::add(&self.counters.disk.filled_bytes, data.len() as u64);
            }
            Ok(()) => {
                // Evicted or invalidated while being written.
                drop(ix);
                let _ = fs::remove_file(&path);
            }
            Err(e) => {
                if ours {
                    ix.remove(key);
                }
                drop(ix);
                tracing::warn!(path = %path.display(), error = %e, "could not write a cache file");
                let _ = fs::remove_file(&tmp);
            }
        }
    }

    /// Remove the files of `evicted` entries. Returns whether `own` (the entry just
    /// inserted) was refused for being larger than the tier.
    fn delete_evicted(
        &self,
        evicted: Vec<(BlockKey, DiskEntry)>,
        own: Option<(&BlockKey, u64)>,
    ) -> bool {
        let mut refused = false;
        for (k, e) in evicted {
            if own.is_some_and(|(key, generation)| *key == k && generation == e.generation) {
                refused = true;
                continue;
            }
            if own.is_none_or(|(key, _)| *key != k) {
                TierCounters::add(&self.counters.disk.evictions, 1);
            }
            let _ = fs::remove_file(self.file(&k, e.generation));
        }
        refused
    }

    /// Drop every block of `path` from the index (the object was deleted). Returns
    /// the files to remove (with [`remove_files`], off the async workers).
    pub(crate) fn forget_path(&self, path: &Arc<str>) -> Vec<PathBuf> {
        let gone = self.index.lock().remove_path(path);
        gone.into_iter()
            .map(|(k, e)| self.file(&k, e.generation))
            .collect()
    }

    /// The cache directory.
    #[cfg(test)]
    pub(crate) fn dir(&self) -> &FsPath {
        &self.dir
    }
}

/// Remove `files` (blocking).
pub(crate) fn remove_files(files: Vec<PathBuf>) {
    for f in files {
        let _ = fs::remove_file(f);
    }
}

/// FNV-1a, 64 bits: the file name of an object's blocks (the header holds the path,
/// so a collision is detected, not served).
fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn encode(key: &BlockKey, object_size: u64, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + key.0.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&key.1.to_le_bytes());
    out.extend_from_slice(&object_size.to_le_bytes());
    out.extend_from_slice(&(key.0.len() as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(key.0.as_bytes());
    out.extend_from_slice(data);
    let crc = crc32fast::hash(&out[8..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))
}

fn le_u32(b: &[u8]) -> usize {
    u32::from_le_bytes(b.try_into().unwrap_or([0; 4])) as usize
}

/// `(path, block, object size, data range)` of a complete, intact file.
fn decode(buf: &[u8]) -> Option<(&str, u64, u64, std::ops::Range<usize>)> {
    if buf.len() < HEADER || &buf[..4] != MAGIC {
        return None;
    }
    let (path_len, data_len) = (le_u32(&buf[24..28]), le_u32(&buf[28..32]));
    if buf.len() != HEADER + path_len + data_len {
        return None;
    }
    if crc32fast::hash(&buf[8..]) != le_u32(&buf[4..8]) as u32 {
        return None;
    }
    let path = std::str::from_utf8(&buf[HEADER..HEADER + path_len]).ok()?;
    let start = HEADER + path_len;
    Some((
        path,
        le_u64(&buf[8..16]),
        le_u64(&buf[16..24]),
        start..start + data_len,
    ))
}

/// The key, object size, file size and modification time of a block file whose
/// header is well formed and whose size matches it (the data is checked on read).
fn read_header(path: &FsPath) -> Option<(BlockKey, u64, u64, std::time::SystemTime)> {
    let mut f = fs::File::open(path).ok()?;
    let meta = f.metadata().ok()?;
    let mut head = [0u8; HEADER];
    f.read_exact(&mut head).ok()?;
    if &head[..4] != MAGIC {
        return None;
    }
    let (path_len, data_len) = (le_u32(&head[24..28]), le_u32(&head[28..32]));
    let file_bytes = (HEADER + path_len + data_len) as u64;
    if meta.len() != file_bytes || path_len > 64 * 1024 {
        return None;
    }
    let mut name = vec![0u8; path_len];
    f.read_exact(&mut name).ok()?;
    let name = String::from_utf8(name).ok()?;
    let key = (Arc::from(name.as_str()), le_u64(&head[8..16]));
    let mtime = meta.modified().ok()?;
    Some((key, le_u64(&head[16..24]), file_bytes, mtime))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: &str, b: u64) -> BlockKey {
        (Arc::from(p), b)
    }

    #[test]
    fn blocks_survive_a_reopen_and_a_flipped_byte_is_caught() {
        let dir = tempfile::tempdir().expect("tmp");
        let counters = Arc::new(Counters::default());
        let (tier, _) = DiskTier::open(dir.path(), 1 << 20, Arc::clone(&counters)).expect("open");
        tier.write(&key("data/a.parquet", 0), 10, b"0123456789");
        tier.write(&key("data/a.parquet", 1), 10, b"");
        assert!(tier.contains(&key("data/a.parquet", 0)));
        drop(tier);

        let (tier, sizes) =
            DiskTier::open(dir.path(), 1 << 20, Arc::clone(&counters)).expect("reopen");
        assert_eq!(sizes.len(), 2);
        assert_eq!(sizes[0].1, 10);
        match tier.read(&key("data/a.parquet", 0)) {
            DiskRead::Hit(b) => assert_eq!(&b[..], b"0123456789"),
            _ => panic!("block lost across a reopen"),
        }
        // Flip one data byte: the checksum catches it and the file goes.
        let file = fs::read_dir(dir.path())
            .expect("ls")
            .next()
            .expect("a file")
            .expect("entry")
            .path();
        let file = if fs::metadata(&file).expect("meta").len() > HEADER as u64 + 20 {
            file
        } else {
            fs::read_dir(dir.path())
                .expect("ls")
                .map(|e| e.expect("entry").path())
                .find(|p| *p != file)
                .expect("other")
        };
        let mut bytes = fs::read(&file).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&file, bytes).expect("write");
        assert!(matches!(
            tier.read(&key("data/a.parquet", 0)),
            DiskRead::Corrupt
        ));
        assert!(!file.exists());
        assert!(!tier.contains(&key("data/a.parquet", 0)));
        assert_eq!(counters.corrupt.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_truncated_file_is_dropped_at_startup() {
        let dir = tempfile::tempdir().expect("tmp");
        let counters = Arc::new(Counters::default());
        let (tier, _) = DiskTier::open(dir.path(), 1 << 20, Arc::clone(&counters)).expect("open");
        tier.write(&key("p", 3), 100, &[7u8; 50]);
        let file = fs::read_dir(dir.path())
            .expect("ls")
            .next()
            .expect("a file")
            .expect("entry")
            .path();
        drop(tier);
        let len = fs::metadata(&file).expect("meta").len();
        fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_len(len - 1))
            .expect("truncate");
        fs::write(dir.path().join("x.blk.9.tmp"), b"partial").expect("tmp file");
        let (tier, sizes) = DiskTier::open(dir.path(), 1 << 20, counters).expect("reopen");
        assert!(sizes.is_empty());
        assert_eq!(tier.usage().2, 0);
        assert_eq!(
            fs::read_dir(tier.dir()).expect("ls").count(),
            0,
            "truncated and temporary files removed"
        );
    }

    #[test]
    fn the_tier_stays_within_its_bytes_and_deletes_evicted_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let counters = Arc::new(Counters::default());
        let cap = 5 * (HEADER as u64 + 1 + 100);
        let (tier, _) = DiskTier::open(dir.path(), cap, Arc::clone(&counters)).expect("open");
        for b in 0..20 {
            tier.write(&key("p", b), 2000, &[b as u8; 100]);
            assert!(tier.usage().0 <= cap);
        }
        assert_eq!(tier.usage().2, 5);
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 5);
        assert_eq!(counters.disk.evictions.load(Ordering::Relaxed), 15);
        remove_files(tier.forget_path(&Arc::from("p")));
        assert_eq!(tier.usage(), (0, cap, 0));
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 0);
    }
}
