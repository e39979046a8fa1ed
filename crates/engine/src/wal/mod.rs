//! The write-ahead log: segment files on local disk, written by one dedicated thread
//! that group-commits concurrent appends.
//!
//! Writers hand an encoded payload to the WAL thread through a channel. The thread
//! takes everything queued (a *group*), assigns consecutive sequence numbers, writes the
//! group with one positioned write, syncs it according to [`WalSync`], and then forwards
//! the group's items, in sequence order, to an output channel (the engine's applier task,
//! which inserts them into memtables and acknowledges the writers). So concurrent
//! writers share each fsync, and no async worker ever blocks on disk. A group whose
//! write or sync fails is answered with the error, never acknowledged, and leaves no
//! trace in the segment (see [`segment`] for how any IO error is recovered from).
//!
//! Segments are named by the first sequence number they may hold. A segment is synced
//! before the next one is created, which is why recovery may treat damage in any but the
//! last segment as corruption (see [`replay`]).

mod deleter;
mod prealloc;
pub(crate) mod record;
pub(crate) mod replay;
pub(crate) mod segment;

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sync::Mutex;
use tokio::sync::{mpsc as tmpsc, oneshot};

use crate::config::WalSync;
use crate::error::{Error, Result};
use record::{MAGIC, frame};
use replay::{SegmentFile, segment_path};
pub(crate) use segment::WalError;
use segment::{ActiveSegment, SyncPolicy};

/// Largest group written with one `write` call.
const MAX_GROUP_BYTES: usize = 8 * 1024 * 1024;
/// Under `wal.sync = interval`, a sync is forced once this much is waiting for one (the
/// active segment keeps a copy of those bytes to re-write after an IO error).
const MAX_UNSYNCED_BYTES: usize = 64 * 1024 * 1024;

/// The outcome of one append, delivered on the output channel in sequence order.
pub(crate) struct Appended<T> {
    pub(crate) result: std::result::Result<u64, WalError>,
    pub(crate) item: T,
    /// When the WAL thread started writing the item's group.
    pub(crate) group_started: Instant,
    /// When the group was written (and synced, per the sync mode).
    pub(crate) committed_at: Instant,
}

enum Command<T> {
    Append {
        payload: Vec<u8>,
        item: T,
    },
    /// Delete every sealed segment whose records all have seq <= `upto`.
    Truncate {
        upto: u64,
    },
    Shutdown(oneshot::Sender<std::result::Result<(), WalError>>),
}

/// Counters shared with [`crate::EngineStats`].
#[derive(Debug, Default)]
pub(crate) struct WalCounters {
    pub(crate) bytes: AtomicU64,
    pub(crate) segments: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) appends: AtomicU64,
    /// Writing one group, and syncing it when the sync mode asks (the `wal_io` stage).
    pub(crate) group_io: bulkhead_runtime::latency::LatencyHistogram,
    /// Sealing the active segment and moving onto the next (the `wal_rotate` stage): it
    /// runs on the WAL thread between two groups, so the groups queued behind it wait.
    pub(crate) rotate: bulkhead_runtime::latency::LatencyHistogram,
}

/// Handle to the WAL thread.
pub(crate) struct Wal<T: Send + 'static> {
    tx: mpsc::Sender<Command<T>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    pub(crate) counters: Arc<WalCounters>,
}

pub(crate) struct WalOptions {
    pub(crate) dir: PathBuf,
    pub(crate) sync: WalSync,
    pub(crate) segment_size: u64,
    /// The first sequence number to assign.
    pub(crate) next_seq: u64,
    /// Segments left from before (already replayed), oldest first.
    pub(crate) existing: Vec<SegmentFile>,
    /// Zero-fill segments ahead of time (see `prealloc.rs`).
    pub(crate) preallocate: bool,
    /// The WAL thread's OS time slice (`runtime.latency_slice`; zero = default).
    pub(crate) latency_slice: std::time::Duration,
    /// The WAL thread's OS nice value (`runtime.write_nice`, as the `write` threads').
    pub(crate) nice: i32,
}

impl<T: Send + 'static> Wal<T> {
    /// Start the WAL thread. Appended items come out of `out` in sequence order.
    pub(crate) fn start(
        opts: WalOptions,
        out: tmpsc::UnboundedSender<Appended<T>>,
    ) -> Result<Self> {
        let counters = Arc::new(WalCounters::default());
        let (slice, nice) = (opts.latency_slice, opts.nice);
        let mut writer = Writer::open(opts, Arc::clone(&counters))?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("bh-wal".into())
            .spawn(move || {
                // Every write ack waits for this thread: it preempts queries at once.
                if !slice.is_zero() {
                    bulkhead_runtime::set_current_thread_latency_slice(slice);
                }
                if nice != 0 {
                    bulkhead_runtime::set_current_thread_nice(nice);
                }
                writer.run(rx, out)
            })
            .map_err(|source| Error::Io {
                op: "spawn WAL thread",
                source,
            })?;
        Ok(Self {
            tx,
            thread: Mutex::new(Some(thread)),
            counters,
        })
    }

    /// Queue `payload`; its outcome arrives on the output channel with `item`.
    pub(crate) fn append(&self, payload: Vec<u8>, item: T) -> Result<()> {
        self.tx
            .send(Command::Append { payload, item })
            .map_err(|_| Error::Closed)
    }

    /// Delete sealed segments fully covered by `upto` (a flushed sequence number).
    pub(crate) fn truncate(&self, upto: u64) {
        let _ = self.tx.send(Command::Truncate { upto });
    }

    /// Sync and stop the thread. Appends queued before this are written first.
    pub(crate) async fn shutdown(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Shutdown(tx)).is_err() {
            return Ok(()); // already stopped
        }
        let result = rx.await.map_err(|_| Error::Closed)?;
        let thread = self.thread.lock().take();
        if let Some(t) = thread {
            // The thread has answered and is returning; joining cannot block for long.
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        result.map_err(wal_io_error)
    }
}

/// The engine error for a failed WAL write, keeping the IO error's kind (a full disk
/// stays `StorageFull`, which the server answers with 507).
pub(crate) fn wal_io_error(e: WalError) -> Error {
    Error::Io {
        op: "WAL write",
        source: std::io::Error::new(e.kind, e.message),
    }
}

struct Writer {
    dir: PathBuf,
    sync: WalSync,
    segment_size: u64,
    next_seq: u64,
    /// Sealed segments, oldest first, with their sizes.
    sealed: VecDeque<(SegmentFile, u64)>,
    active: ActiveSegment,
    /// When the last sync (or sync attempt) happened.
    last_sync: Instant,
    counters: Arc<WalCounters>,
    /// The next segment, zero-filled ahead of time (`None`: `wal_preallocate = false`).
    spare: Option<prealloc::Spare>,
    /// Deletes flushed segments off this thread.
    deleter: deleter::Deleter,
}

fn policy(sync: WalSync) -> SyncPolicy {
    match sync {
        WalSync::Always => SyncPolicy::EveryGroup,
        WalSync::Interval(_) => SyncPolicy::Later,
        WalSync::None => SyncPolicy::Never,
    }
}

impl Writer {
    fn open(opts: WalOptions, counters: Arc<WalCounters>) -> Result<Self> {
        std::fs::create_dir_all(&opts.dir).map_err(|source| Error::Io {
            op: "create WAL dir",
            source,
        })?;
        let mut sealed = VecDeque::new();
        for s in opts.existing {
            // A replayed segment named like the new one held no records; it is replaced.
            if s.first_seq == opts.next_seq {
                continue;
            }
            let len = std::fs::metadata(&s.path).map(|m| m.len()).unwrap_or(0);
            sealed.push_back((s, len));
        }
        let segment_size = opts.segment_size.max(4096);
        let spare = opts
            .preallocate
            .then(|| prealloc::Spare::new(&opts.dir, segment_size));
        let (active, file) =
            create_segment(&opts.dir, opts.next_seq).map_err(|source| Error::Io {
                op: "create WAL segment",
                source,
            })?;
        let sealed_bytes: u64 = sealed.iter().map(|(_, l)| l).sum();
        counters
            .bytes
            .store(sealed_bytes + MAGIC.len() as u64, Ordering::Relaxed);
        counters
            .segments
            .store(sealed.len() as u64 + 1, Ordering::Relaxed);
        Ok(Self {
            dir: opts.dir,
            sync: opts.sync,
            segment_size,
            next_seq: opts.next_seq,
            sealed,
            active: ActiveSegment::new(active, file, MAGIC.len() as u64, policy(opts.sync)),
            last_sync: Instant::now(),
            counters,
            spare,
            deleter: deleter::Deleter::start(),
        })
    }

    fn run<T: Send + 'static>(
        &mut self,
        rx: mpsc::Receiver<Command<T>>,
        out: tmpsc::UnboundedSender<Appended<T>>,
    ) {
        let mut pending: Vec<Command<T>> = Vec::new();
        loop {
            let first = match self.sync {
                WalSync::Interval(d) if self.active.is_dirty() || self.active.is_broken() => {
                    let wait = d.saturating_sub(self.last_sync.elapsed());
                    match rx.recv_timeout(wait.max(Duration::from_micros(100))) {
                        Ok(c) => Some(c),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            let _ = self.finish();
                            return;
                        }
                    }
                }
                _ => match rx.recv() {
                    Ok(c) => Some(c),
                    Err(_) => {
                        let _ = self.finish();
                        return;
                    }
                },
            };
            let Some(first) = first else {
                if let Err(e) = self.sync_now() {
                    tracing::error!(error = %e, "periodic WAL sync failed");
                }
                continue;
            };
            pending.push(first);
            // Take everything else already queued: that is the group.
            let mut bytes = 0usize;
            while bytes < MAX_GROUP_BYTES {
                match rx.try_recv() {
                    Ok(c) => {
                        if let Command::Append { payload, .. } = &c {
                            bytes += payload.len();
                        }
                        pending.push(c);
                    }
                    Err(_) => break,
                }
            }
            if self.process(&mut pending, &out) {
                return;
            }
        }
    }

    /// Handle one group of commands; returns true on shutdown.
    fn process<T>(
        &mut self,
        pending: &mut Vec<Command<T>>,
        out: &tmpsc::UnboundedSender<Appended<T>>,
    ) -> bool {
        let mut buf = Vec::new();
        let mut items = Vec::new();
        let mut control = Vec::new();
        for cmd in pending.drain(..) {
            match cmd {
                Command::Append { payload, item } => {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    frame(&mut buf, seq, &payload);
                    items.push((seq, item));
                }
                other => control.push(other),
            }
        }
        if !items.is_empty() {
            let started = Instant::now();
            let result = self.write_group(&buf);
            let committed_at = Instant::now();
            self.counters.group_io.record(committed_at - started);
            self.counters
                .appends
                .fetch_add(items.len() as u64, Ordering::Relaxed);
            for (seq, item) in items {
                let result = result.clone().map(|()| seq);
                let _ = out.send(Appended {
                    result,
                    item,
                    group_started: started,
                    committed_at,
                });
            }
            if !self.active.is_broken()
                && (self.active.len() >= self.segment_size || self.spare_wanted())
            {
                let started = Instant::now();
                let rotated = self.rotate();
                self.counters.rotate.record(started.elapsed());
                if let Err(e) = rotated {
                    tracing::error!(error = %e, "WAL segment rotation failed");
                }
            }
        }
        for cmd in control {
            match cmd {
                Command::Truncate { upto } => self.truncate(upto),
                Command::Shutdown(reply) => {
                    let _ = reply.send(self.finish());
                    return true;
                }
                Command::Append { .. } => {}
            }
        }
        false
    }

    /// Write (and per the sync mode, sync) one group. On error nothing of the group is
    /// acknowledged, and the segment repairs itself (see [`segment`]).
    fn write_group(&mut self, buf: &[u8]) -> std::result::Result<(), WalError> {
        self.active.append(buf)?;
        self.counters
            .bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        match self.sync {
            WalSync::Always => {
                // `append` synced the group.
                self.last_sync = Instant::now();
                self.counters.syncs.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            // A failed sync (and repair) fails this group too: the data may be lost.
            WalSync::Interval(d)
                if self.last_sync.elapsed() >= d
                    || self.active.unsynced_bytes() > MAX_UNSYNCED_BYTES =>
            {
                self.sync_now()
            }
            _ => Ok(()),
        }
    }

    /// Sync the active segment, repairing it first if an earlier IO error broke it.
    fn sync_now(&mut self) -> std::result::Result<(), WalError> {
        let needed = self.active.is_dirty() || self.active.is_broken();
        if !needed {
            return Ok(());
        }
        // Also on failure: the next attempt waits for the interval, not 100 µs.
        self.last_sync = Instant::now();
        self.active.sync()?;
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Whether to move off a segment that grows as it is written: once the WAL sees
    /// traffic, a spare is prepared, and the rotation onto it happens when it is ready.
    fn spare_wanted(&mut self) -> bool {
        let Some(spare) = &mut self.spare else {
            return false;
        };
        let traffic = prealloc::TRAFFIC_THRESHOLD.min(self.segment_size / 2);
        if self.active.is_preallocated() || self.active.len() < traffic {
            return false;
        }
        spare.prepare();
        spare.is_ready()
    }

    /// Seal the active segment (synced; trimmed soon if preallocated) and start a new
    /// one: the spare if one is ready, else a new file.
    fn rotate(&mut self) -> std::result::Result<(), WalError> {
        self.sync_now()?;
        // The records are synced; the zeros past them are cut off the WAL thread
        // (`deleter.rs`), and replay accepts them until then (`replay.rs`). Synchronously
        // trimmed (a journal commit), they held every write queued behind the rotation.
        if let Some((file, len)) = self.active.detach_trim()? {
            self.deleter.trim(file, len, self.active.seg.path.clone());
        }
        let path = segment_path(&self.dir, self.next_seq);
        let spare = self.spare.as_mut().and_then(|s| s.take(&path));
        let preallocated = spare.is_some();
        let (seg, file) = match spare {
            Some(file) => (
                replay::SegmentFile {
                    first_seq: self.next_seq,
                    path,
                },
                file,
            ),
            None => create_segment(&self.dir, self.next_seq)
                .map_err(|e| WalError::io("create", &path, &e))?,
        };
        if let Some(spare) = &mut self.spare {
            spare.prepare();
        }
        let mut next = ActiveSegment::new(seg, file, MAGIC.len() as u64, policy(self.sync));
        if preallocated {
            next = next.preallocated();
        }
        next.faults = Arc::clone(&self.active.faults);
        let old = std::mem::replace(&mut self.active, next);
        let old_len = old.len();
        self.sealed.push_back((old.seg, old_len));
        self.counters
            .bytes
            .fetch_add(MAGIC.len() as u64, Ordering::Relaxed);
        self.counters.segments.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn truncate(&mut self, upto: u64) {
        // Sealed segment i holds seqs in [first_i, first_{i+1}); it may go once
        // first_{i+1} - 1 <= upto. The active segment is never deleted.
        while let Some((seg, len)) = self.sealed.front() {
            let next_first = self
                .sealed
                .get(1)
                .map(|(s, _)| s.first_seq)
                .unwrap_or(self.active.seg.first_seq);
            if next_first.saturating_sub(1) > upto {
                break;
            }
            self.deleter.delete(seg.path.clone());
            self.counters.bytes.fetch_sub(*len, Ordering::Relaxed);
            self.counters.segments.fetch_sub(1, Ordering::Relaxed);
            self.sealed.pop_front();
        }
    }

    /// At shutdown: sync, trim a preallocated segment, delete the spare.
    fn finish(&mut self) -> std::result::Result<(), WalError> {
        let synced = self.sync_now();
        if let Err(e) = self.active.trim() {
            tracing::warn!(error = %e, "could not trim the preallocated WAL segment; recovery cuts its zeros off");
        }
        if let Some(spare) = &mut self.spare {
            spare.discard();
        }
        self.deleter.finish();
        synced
    }
}

/// Create segment `first_seq` holding only the magic, synced, with its directory entry.
/// A half-created file is removed: as the newest segment it would make recovery treat
/// the older one (which this process may go on writing) as sealed.
fn create_segment(dir: &Path, first_seq: u64) -> std::io::Result<(SegmentFile, File)> {
    let path = segment_path(dir, first_seq);
    let created = (|| {
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(true)
            .open(&path)?;
        file.write_all(MAGIC)?;
        file.sync_all()?;
        // Make the new directory entry durable too.
        File::open(dir)?.sync_all()?;
        Ok(file)
    })();
    match created {
        Ok(file) => Ok((SegmentFile { first_seq, path }, file)),
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests;
