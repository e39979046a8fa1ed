//! Preallocated WAL segments. Appending to a growing file makes every `fdatasync` commit
//! metadata too (the new size, newly allocated blocks): on ext4 that is a journal commit,
//! which also waits for other files' dirty data (flushed SSTs, compaction output, cache
//! blocks). Under a flush or a compaction, the write acks' p99 then follows the disk's
//! busiest moments (measured: `docs/benchmarks.md`, "Where a write ack's time goes").
//!
//! So once a WAL sees real traffic, a background thread prepares a *spare*: the magic
//! followed by zeros up to the segment size, written and synced. The next rotation
//! renames it into place; appends then overwrite blocks that already exist and an
//! `fdatasync` has only data to write. The zeros after the last record read as a torn
//! tail at recovery (`replay.rs`), which is cut off; a sealed segment, and the active one
//! at a clean shutdown, is first trimmed to its accepted length.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use super::record::MAGIC;

/// The spare's file name: not `{seq}.wal`, so recovery never reads it.
const SPARE_NAME: &str = "spare.wal.tmp";

/// Zeros written per call while filling a spare, and synced every this many bytes, so
/// the fill trickles out instead of landing on the disk as one burst. A `write` call is
/// not preempted inside the kernel on a `PREEMPT_NONE` kernel, whatever the thread's
/// nice: with 1 MiB calls (~3 ms of page-cache work each) the nice-10 filler held a CPU
/// for 4-6 ms at a time (p90-p99 of its runs, up to 34 ms) while woken write-path
/// threads at nice -5 waited (`perf sched timehist`, issue 24, session 40). 64 KiB calls
/// return to user space, where it is preempted, every ~0.2 ms.
const FILL_CHUNK: usize = 64 << 10;
const FILL_SYNC_EVERY: u64 = 8 << 20;

/// The filling thread's OS nice value. Spawned by the WAL thread, it would inherit the
/// ack path's raised priority (`runtime.write_nice`, -5), and writing 64 MiB of zeros
/// costs about 200 ms of CPU in 0.4 s (page cache allocation and copying): at -5 that
/// burst took a CPU from the write path every few seconds, and lined up with stalls of
/// write acks (issue 24, session 36, `docs/benchmarks.md`). The spare has until the next
/// rotation to be ready, and a rotation that finds none only writes the plain way.
const FILL_NICE: i32 = 10;

/// A WAL that has written this much (or half a segment, if less) into a segment that is
/// not preallocated starts preparing a spare (short-lived engines, as in most tests,
/// never do; the crash harness's 128 KiB segments always do).
pub(crate) const TRAFFIC_THRESHOLD: u64 = 1 << 20;

/// The spare segment being prepared, or ready.
pub(crate) struct Spare {
    path: PathBuf,
    size: u64,
    filling: Option<JoinHandle<std::io::Result<()>>>,
    ready: bool,
}

impl Spare {
    /// A spare for segments of `size` bytes in `dir`; a leftover from an earlier run is
    /// removed (it may be half filled).
    pub(crate) fn new(dir: &Path, size: u64) -> Self {
        let path = dir.join(SPARE_NAME);
        let _ = std::fs::remove_file(&path);
        Self {
            path,
            size,
            filling: None,
            ready: false,
        }
    }

    /// Start filling a spare in the background, unless one is ready or under way.
    pub(crate) fn prepare(&mut self) {
        if self.ready || self.filling.is_some() {
            return;
        }
        let (path, size) = (self.path.clone(), self.size);
        let spawned = std::thread::Builder::new()
            .name("bh-wal-prealloc".into())
            .spawn(move || {
                bulkhead_runtime::set_current_thread_nice(FILL_NICE);
                fill(&path, size)
            });
        match spawned {
            Ok(handle) => self.filling = Some(handle),
            Err(e) => tracing::warn!(error = %e, "could not start preallocating a WAL segment"),
        }
    }

    /// Whether a spare is ready to be taken (never blocks).
    pub(crate) fn is_ready(&mut self) -> bool {
        if !self.ready && self.filling.as_ref().is_some_and(JoinHandle::is_finished) {
            let handle = self.filling.take().expect("checked above");
            match handle.join() {
                Ok(Ok(())) => self.ready = true,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, path = %self.path.display(), "could not preallocate a WAL segment; segments grow as they are written");
                    let _ = std::fs::remove_file(&self.path);
                }
                Err(_) => tracing::warn!("the WAL preallocation thread panicked"),
            }
        }
        self.ready
    }

    /// Rename the ready spare to `target` (its directory entry made durable) and open
    /// it; `None` when no spare is ready or the rename fails (the caller then creates
    /// the segment the plain way).
    pub(crate) fn take(&mut self, target: &Path) -> Option<File> {
        if !self.is_ready() {
            return None;
        }
        self.ready = false;
        let opened = (|| {
            std::fs::rename(&self.path, target)?;
            if let Some(dir) = target.parent() {
                File::open(dir)?.sync_all()?;
            }
            OpenOptions::new().read(true).write(true).open(target)
        })();
        match opened {
            Ok(file) => Some(file),
            Err(e) => {
                tracing::warn!(error = %e, target = %target.display(), "could not use the preallocated WAL segment");
                let _ = std::fs::remove_file(&self.path);
                None
            }
        }
    }

    /// Wait for a fill under way and delete the spare (at shutdown).
    pub(crate) fn discard(&mut self) {
        if let Some(handle) = self.filling.take() {
            let _ = handle.join();
        }
        self.ready = false;
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Write the magic and zeros up to `size` bytes, synced.
fn fill(path: &Path, size: u64) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)?;
    file.write_all(MAGIC)?;
    let zeros = vec![0u8; FILL_CHUNK];
    let mut written = MAGIC.len() as u64;
    let mut since_sync = 0;
    while written < size {
        let n = (size - written).min(FILL_CHUNK as u64) as usize;
        file.write_all(&zeros[..n])?;
        written += n as u64;
        since_sync += n as u64;
        if since_sync >= FILL_SYNC_EVERY {
            file.sync_data()?;
            since_sync = 0;
        }
    }
    file.sync_all()
}
