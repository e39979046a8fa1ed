//! Deleting flushed segments, and trimming sealed ones, off the WAL thread.
//!
//! Unlinking a segment (64 MiB by default) frees its blocks, and on a filesystem mounted
//! with `discard` the kernel may make the unlinking thread wait for the device to discard
//! them. Done on the WAL thread, that wait holds up every group queued behind it: issue
//! 24 traced 123 synchronous discards to the WAL thread in three rounds of `bench
//! interference`. So the WAL thread only hands the paths to this thread, which deletes
//! them in order, oldest first.
//!
//! A deletion that has not happened when the process dies leaves a segment whose
//! records are all flushed: recovery skips its records, as after any crash between a
//! flush and the WAL's truncation, and the segment is deleted at the next truncation.
//!
//! Trimming is the same idea: a rotation seals a preallocated segment once its records
//! are synced, and cutting off the zeros past them (`ftruncate` and `fsync`, a journal
//! commit that waited up to 18 ms behind compaction's writes in issue 24's benchmark) is
//! handed here. A trim that has not happened when the process dies leaves a sealed
//! segment ending in zeros, which replay accepts (`replay.rs`).

use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// One piece of work, done in the order handed over.
enum Job {
    Delete(PathBuf),
    /// Cut `file` (the segment at `path`) to `len` bytes and sync it.
    Trim {
        file: File,
        len: u64,
        path: PathBuf,
    },
}

/// The deleting thread and the channel to it.
pub(super) struct Deleter {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Deleter {
    /// Start the thread; if it cannot be started, [`Deleter::delete`] deletes inline.
    pub(super) fn start() -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("bh-wal-delete".into())
            .spawn(move || {
                for job in rx {
                    run(job);
                }
            });
        match spawned {
            Ok(thread) => Self {
                tx: Some(tx),
                thread: Some(thread),
            },
            Err(e) => {
                tracing::warn!(error = %e, "could not start the WAL deletion thread; segments are deleted by the WAL thread");
                Self {
                    tx: None,
                    thread: None,
                }
            }
        }
    }

    /// Delete `path` soon (inline if the thread is gone).
    pub(super) fn delete(&self, path: PathBuf) {
        self.submit(Job::Delete(path));
    }

    /// Cut the sealed segment `file` (at `path`) to `len` bytes and sync it, soon.
    pub(super) fn trim(&self, file: File, len: u64, path: PathBuf) {
        self.submit(Job::Trim { file, len, path });
    }

    fn submit(&self, job: Job) {
        match &self.tx {
            Some(tx) => {
                if let Err(mpsc::SendError(job)) = tx.send(job) {
                    run(job);
                }
            }
            None => run(job),
        }
    }

    /// Wait until every deletion handed over so far is done, and stop the thread.
    pub(super) fn finish(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Deleter {
    fn drop(&mut self) {
        self.finish();
    }
}

fn run(job: Job) {
    match job {
        Job::Delete(path) => delete(&path),
        Job::Trim { file, len, path } => {
            if let Err(e) = file.set_len(len).and_then(|()| file.sync_all()) {
                tracing::warn!(path = %path.display(), error = %e, "could not trim a sealed WAL segment; replay accepts its zero tail");
            }
        }
    }
}

fn delete(path: &std::path::Path) {
    match std::fs::remove_file(path) {
        Ok(()) => tracing::debug!(path = %path.display(), "deleted flushed WAL segment"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not delete a flushed WAL segment; it is deleted after the next restart");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Deleter;

    #[test]
    fn deletes_in_the_background_and_finish_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<_> = (0..5)
            .map(|i| {
                let p = dir.path().join(format!("{i}.wal"));
                std::fs::write(&p, b"x").unwrap();
                p
            })
            .collect();
        let mut deleter = Deleter::start();
        for p in &paths {
            deleter.delete(p.clone());
        }
        // A path that is already gone is not an error.
        deleter.delete(dir.path().join("missing.wal"));
        deleter.finish();
        assert!(paths.iter().all(|p| !p.exists()));
        // Trims run in order with deletions, and after finish inline too.
        let sealed = dir.path().join("sealed.wal");
        std::fs::write(&sealed, [7u8; 4096]).unwrap();
        let mut deleter = Deleter::start();
        deleter.trim(
            std::fs::File::options().write(true).open(&sealed).unwrap(),
            10,
            sealed.clone(),
        );
        deleter.finish();
        assert_eq!(std::fs::metadata(&sealed).unwrap().len(), 10);
        deleter.trim(
            std::fs::File::options().write(true).open(&sealed).unwrap(),
            3,
            sealed.clone(),
        );
        assert_eq!(std::fs::read(&sealed).unwrap(), [7u8; 3]);
        // After finish, deletions happen inline.
        let late = dir.path().join("late.wal");
        std::fs::write(&late, b"x").unwrap();
        deleter.delete(late.clone());
        assert!(!late.exists());
    }
}
