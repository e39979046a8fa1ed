//! The write-ahead log: segment files on local disk, written by one dedicated thread
//! that group-commits concurrent appends.
//!
//! Writers hand an encoded payload to the WAL thread through a channel. The thread
//! takes everything queued (a *group*), assigns consecutive sequence numbers, writes the
//! group with one `write` call, syncs it according to [`WalSync`], and then forwards the
//! group's items, in sequence order, to an output channel (the engine's applier task,
//! which inserts them into memtables and acknowledges the writers). So concurrent
//! writers share each fsync, and no async worker ever blocks on disk.
//!
//! Segments are named by the first sequence number they may hold. A segment is synced
//! before the next one is created, which is why recovery may treat damage in any but the
//! last segment as corruption (see [`replay`]).

pub(crate) mod record;
pub(crate) mod replay;

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{mpsc as tmpsc, oneshot};

use crate::config::WalSync;
use crate::error::{Error, Result};
use record::{MAGIC, frame};
use replay::{SegmentFile, segment_path};

/// Largest group written with one `write` call.
const MAX_GROUP_BYTES: usize = 8 * 1024 * 1024;

/// The outcome of one append, delivered on the output channel in sequence order.
pub(crate) struct Appended<T> {
    pub(crate) result: std::result::Result<u64, String>,
    pub(crate) item: T,
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
    Shutdown(oneshot::Sender<std::result::Result<(), String>>),
}

/// Counters shared with [`crate::EngineStats`].
#[derive(Debug, Default)]
pub(crate) struct WalCounters {
    pub(crate) bytes: AtomicU64,
    pub(crate) segments: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) appends: AtomicU64,
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
}

impl<T: Send + 'static> Wal<T> {
    /// Start the WAL thread. Appended items come out of `out` in sequence order.
    pub(crate) fn start(
        opts: WalOptions,
        out: tmpsc::UnboundedSender<Appended<T>>,
    ) -> Result<Self> {
        let counters = Arc::new(WalCounters::default());
        let mut writer = Writer::open(opts, Arc::clone(&counters))?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("bh-wal".into())
            .spawn(move || writer.run(rx, out))
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

pub(crate) fn wal_io_error(msg: String) -> Error {
    Error::Io {
        op: "WAL write",
        source: std::io::Error::other(msg),
    }
}

struct Writer {
    dir: PathBuf,
    sync: WalSync,
    segment_size: u64,
    next_seq: u64,
    /// Sealed segments, oldest first, with their sizes.
    sealed: VecDeque<(SegmentFile, u64)>,
    active: SegmentFile,
    file: File,
    active_len: u64,
    /// Bytes written since the last sync.
    dirty: bool,
    last_sync: Instant,
    /// Set after a write error that could not be rolled back: every later append fails.
    poisoned: Option<String>,
    counters: Arc<WalCounters>,
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
        let (active, file) = create_segment(&opts.dir, opts.next_seq)?;
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
            segment_size: opts.segment_size.max(4096),
            next_seq: opts.next_seq,
            sealed,
            active,
            file,
            active_len: MAGIC.len() as u64,
            dirty: false,
            last_sync: Instant::now(),
            poisoned: None,
            counters,
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
                WalSync::Interval(d) if self.dirty => {
                    let wait = d.saturating_sub(self.last_sync.elapsed());
                    match rx.recv_timeout(wait.max(Duration::from_micros(100))) {
                        Ok(c) => Some(c),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => return self.finish(),
                    }
                }
                _ => match rx.recv() {
                    Ok(c) => Some(c),
                    Err(_) => return self.finish(),
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
            let result = self.write_group(&buf);
            self.counters
                .appends
                .fetch_add(items.len() as u64, Ordering::Relaxed);
            for (seq, item) in items {
                let result = result.clone().map(|()| seq);
                let _ = out.send(Appended { result, item });
            }
            if self.active_len >= self.segment_size
                && let Err(e) = self.rotate()
            {
                tracing::error!(error = %e, "WAL segment rotation failed");
            }
        }
        for cmd in control {
            match cmd {
                Command::Truncate { upto } => self.truncate(upto),
                Command::Shutdown(reply) => {
                    let _ = reply.send(self.sync_now());
                    return true;
                }
                Command::Append { .. } => {}
            }
        }
        false
    }

    fn write_group(&mut self, buf: &[u8]) -> std::result::Result<(), String> {
        if let Some(p) = &self.poisoned {
            return Err(format!("WAL unusable after an earlier failure: {p}"));
        }
        if let Err(e) = self.file.write_all(buf) {
            // Roll the file back so a half-written group cannot look like mid-file
            // corruption once later groups follow it.
            let msg = format!("write {}: {e}", self.active.path.display());
            if let Err(e2) = self.file.set_len(self.active_len) {
                self.poisoned = Some(format!("{msg}; rollback failed: {e2}"));
            }
            return Err(msg);
        }
        self.active_len += buf.len() as u64;
        self.counters
            .bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.dirty = true;
        match self.sync {
            WalSync::Always => self.sync_now(),
            WalSync::Interval(d) if self.last_sync.elapsed() >= d => {
                // Acknowledge anyway on failure? No: report it, the data may be lost.
                self.sync_now()
            }
            _ => Ok(()),
        }
    }

    fn sync_now(&mut self) -> std::result::Result<(), String> {
        if !self.dirty {
            return Ok(());
        }
        match self.file.sync_data() {
            Ok(()) => {
                self.dirty = false;
                self.last_sync = Instant::now();
                self.counters.syncs.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                // After a failed fsync the page cache state is unknown (fsyncgate): never
                // trust this file again.
                let msg = format!("fsync {}: {e}", self.active.path.display());
                self.poisoned = Some(msg.clone());
                Err(msg)
            }
        }
    }

    /// Seal the active segment (synced first) and start a new one.
    fn rotate(&mut self) -> std::result::Result<(), String> {
        self.dirty = true;
        self.sync_now()?;
        let (active, file) = create_segment(&self.dir, self.next_seq).map_err(|e| e.to_string())?;
        let old = std::mem::replace(&mut self.active, active);
        self.sealed.push_back((old, self.active_len));
        self.file = file;
        self.active_len = MAGIC.len() as u64;
        self.dirty = false;
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
                .unwrap_or(self.active.first_seq);
            if next_first.saturating_sub(1) > upto {
                break;
            }
            match std::fs::remove_file(&seg.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %seg.path.display(), error = %e, "could not delete WAL segment");
                    break;
                }
            }
            tracing::debug!(path = %seg.path.display(), upto, "deleted flushed WAL segment");
            self.counters.bytes.fetch_sub(*len, Ordering::Relaxed);
            self.counters.segments.fetch_sub(1, Ordering::Relaxed);
            self.sealed.pop_front();
        }
    }

    fn finish(&mut self) {
        let _ = self.sync_now();
    }
}

fn create_segment(dir: &Path, first_seq: u64) -> Result<(SegmentFile, File)> {
    let io = |source| Error::Io {
        op: "create WAL segment",
        source,
    };
    let path = segment_path(dir, first_seq);
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(io)?;
    file.write_all(MAGIC).map_err(io)?;
    file.sync_all().map_err(io)?;
    // Make the new directory entry durable too.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok((SegmentFile { first_seq, path }, file))
}
