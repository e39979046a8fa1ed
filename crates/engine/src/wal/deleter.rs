//! Deleting flushed segments off the WAL thread.
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

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// The deleting thread and the channel to it.
pub(super) struct Deleter {
    tx: Option<mpsc::Sender<PathBuf>>,
    thread: Option<JoinHandle<()>>,
}

impl Deleter {
    /// Start the thread; if it cannot be started, [`Deleter::delete`] deletes inline.
    pub(super) fn start() -> Self {
        let (tx, rx) = mpsc::channel::<PathBuf>();
        let spawned = std::thread::Builder::new()
            .name("bh-wal-delete".into())
            .spawn(move || {
                for path in rx {
                    delete(&path);
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
        match &self.tx {
            Some(tx) => {
                if let Err(mpsc::SendError(path)) = tx.send(path) {
                    delete(&path);
                }
            }
            None => delete(&path),
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
        // After finish, deletions happen inline.
        let late = dir.path().join("late.wal");
        std::fs::write(&late, b"x").unwrap();
        deleter.delete(late.clone());
        assert!(!late.exists());
    }
}
