//! The active WAL segment: positioned writes, syncs, and recovery from IO errors.
//!
//! Every group is written with a positioned write (`pwrite`) at the segment's accepted
//! length, so a failed or short write can never move the place where the next group
//! goes: there is no file cursor to get out of step, and no hole of zeros can open
//! between two groups (issue 22: one ENOSPC used to strand every later record behind a
//! CRC mismatch).
//!
//! After **any** IO error (a write, a sync, a truncation) the segment is *broken*: the
//! bytes past the last known-good offset are in an unknown state, on disk and in the
//! page cache. A broken segment is *repaired* before anything else is written to it:
//!
//! 1. re-write, from our own memory, the bytes that were accepted but not yet synced
//!    (`wal.sync = interval`: acknowledged groups waiting for the periodic sync), at
//!    their offsets;
//! 2. `ftruncate` to the accepted length (dropping what the failed group left behind);
//! 3. `fdatasync`.
//!
//! Step 1 is the answer to "fsyncgate": after a failed `fsync`, Linux may have marked
//! the dirty pages clean, so a later `fsync` that succeeds proves nothing about them.
//! Re-writing them dirties them again, so the repair's own sync really writes them.
//! Until a repair succeeds every group fails fast with the cause; the repair is
//! retried before each later group, so the WAL heals by itself once space is freed.
//! The group whose write or sync failed is never acknowledged: its writers get the
//! error (an IO error whose kind is kept, so a full disk reads as `StorageFull`).

use std::fs::File;
use std::io::ErrorKind;
#[cfg(not(test))]
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::replay::SegmentFile;

/// A WAL IO failure: the message for logs and clients, and the `io::ErrorKind` (so the
/// server can answer a full disk with `507 Insufficient Storage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalError {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
}

impl WalError {
    pub(crate) fn io(what: &str, path: &Path, e: &std::io::Error) -> Self {
        Self {
            kind: e.kind(),
            message: format!("{what} {}: {e}", path.display()),
        }
    }
}

impl std::fmt::Display for WalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// When the accepted bytes of a segment are synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncPolicy {
    /// Every group is synced before it is accepted (`wal.sync = always`).
    EveryGroup,
    /// Groups are accepted after their write and synced later; the segment keeps a copy
    /// of the unsynced bytes to re-write after a failure (`wal.sync = interval`).
    Later,
    /// Groups are accepted after their write and synced only at rotation and shutdown;
    /// nothing is kept (`wal.sync = none`: the OS decides when they reach the disk).
    Never,
}

/// The segment being written.
pub(crate) struct ActiveSegment {
    pub(crate) seg: SegmentFile,
    file: File,
    policy: SyncPolicy,
    /// Bytes of the file that belong to accepted groups (the magic included).
    len: u64,
    /// The prefix known to be right without a re-write: synced (`EveryGroup`,
    /// `Later`), or written (`Never`).
    clean_len: u64,
    /// The bytes `clean_len..len` (only under `Later`).
    unsynced: Vec<u8>,
    /// Accepted bytes not yet synced.
    dirty: bool,
    /// Why the segment needs a repair before the next write.
    broken: Option<WalError>,
    /// The file was zero-filled past `len` (`prealloc.rs`): trim it before sealing.
    preallocated: bool,
    /// Pass-through outside tests; injected failures in them.
    pub(crate) faults: Arc<Faults>,
}

/// The file operations. Outside tests they go straight to the file; the tests swap in
/// [`tests::Faults`], which fails them on demand.
#[cfg(not(test))]
#[derive(Debug, Default)]
pub(crate) struct Faults;

#[cfg(not(test))]
impl Faults {
    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
        file.write_all_at(buf, offset)
    }

    fn sync_data(&self, file: &File, _clean_len: u64) -> std::io::Result<()> {
        file.sync_data()
    }

    fn set_len(&self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
pub(crate) use tests::Faults;

impl ActiveSegment {
    /// A freshly created segment that holds `header_len` synced bytes (the magic).
    pub(crate) fn new(seg: SegmentFile, file: File, header_len: u64, policy: SyncPolicy) -> Self {
        Self {
            seg,
            file,
            policy,
            len: header_len,
            clean_len: header_len,
            unsynced: Vec::new(),
            dirty: false,
            broken: None,
            preallocated: false,
            faults: Default::default(),
        }
    }

    /// Marks the file as zero-filled past the header (a spare from `prealloc.rs`).
    pub(crate) fn preallocated(mut self) -> Self {
        self.preallocated = true;
        self
    }

    pub(crate) fn is_preallocated(&self) -> bool {
        self.preallocated
    }

    /// Cut a preallocated file's zeros off (the file then holds exactly the accepted
    /// bytes, synced), before it is sealed or at shutdown; a no-op otherwise.
    pub(crate) fn trim(&mut self) -> Result<(), WalError> {
        if !self.preallocated || self.broken.is_some() {
            return Ok(());
        }
        let path = self.seg.path.clone();
        self.set_len(self.len)
            .map_err(|e| self.fail(WalError::io("truncate", &path, &e)))?;
        self.preallocated = false;
        self.dirty = true;
        self.sync()
    }

    /// Hand over the cutting of a preallocated file's zeros, for a sealed segment whose
    /// records are synced: a second handle on the file and the accepted length, for
    /// `deleter.rs` to `ftruncate` and sync off the WAL thread. `None` if there is
    /// nothing to cut.
    pub(crate) fn detach_trim(&mut self) -> Result<Option<(File, u64)>, WalError> {
        if !self.preallocated || self.broken.is_some() || self.dirty {
            return Ok(None);
        }
        let file = self
            .file
            .try_clone()
            .map_err(|e| WalError::io("duplicate the handle of", &self.seg.path, &e))?;
        self.preallocated = false;
        Ok(Some((file, self.len)))
    }

    /// Bytes of accepted groups in the file.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Accepted bytes that still wait for a sync.
    pub(crate) fn unsynced_bytes(&self) -> usize {
        self.unsynced.len()
    }

    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Write one group at the accepted length; under `EveryGroup` also sync it. On
    /// success the group is accepted (and may be acknowledged); on error it is not, and
    /// the segment is repaired (now, or before the next group).
    pub(crate) fn append(&mut self, buf: &[u8]) -> Result<(), WalError> {
        if let Some(cause) = self.broken.clone() {
            self.repair().map_err(|e| WalError {
                kind: e.kind,
                message: format!(
                    "the WAL segment could not be repaired after an earlier failure ({cause}): {e}"
                ),
            })?;
        }
        if let Err(e) = self.write_at(buf, self.len) {
            return Err(self.fail(WalError::io("write", &self.seg.path, &e)));
        }
        if self.policy == SyncPolicy::EveryGroup {
            if let Err(e) = self.sync_data() {
                return Err(self.fail(WalError::io("fdatasync", &self.seg.path, &e)));
            }
            self.len += buf.len() as u64;
            self.clean_len = self.len;
            return Ok(());
        }
        self.len += buf.len() as u64;
        self.dirty = true;
        match self.policy {
            SyncPolicy::Later => self.unsynced.extend_from_slice(buf),
            _ => self.clean_len = self.len,
        }
        Ok(())
    }

    /// Sync the accepted bytes (repairing first if needed).
    pub(crate) fn sync(&mut self) -> Result<(), WalError> {
        if self.broken.is_some() {
            return self.repair();
        }
        if !self.dirty {
            return Ok(());
        }
        match self.sync_data() {
            Ok(()) => {
                self.synced();
                Ok(())
            }
            Err(e) => {
                // The repair re-writes and syncs every accepted byte: if it succeeds,
                // they are durable after all.
                let err = WalError::io("fdatasync", &self.seg.path, &e);
                tracing::error!(error = %err, "WAL sync failed; re-writing the unsynced records");
                self.broken = Some(err.clone());
                self.repair().map_err(|r| WalError {
                    kind: r.kind,
                    message: format!("{err}; repair failed: {r}"),
                })
            }
        }
    }

    /// Whether the segment is waiting for a repair.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    fn synced(&mut self) {
        self.clean_len = self.len;
        self.unsynced.clear();
        self.dirty = false;
    }

    /// Record `err` as the reason for a repair, try the repair once, and return `err`.
    fn fail(&mut self, err: WalError) -> WalError {
        tracing::error!(error = %err, "WAL IO failed; the group is not acknowledged");
        self.broken = Some(err.clone());
        if let Err(e) = self.repair() {
            tracing::error!(error = %e, "WAL segment repair failed; retried before the next group");
        }
        err
    }

    /// Make the file hold exactly the accepted bytes, synced (see the module docs).
    fn repair(&mut self) -> Result<(), WalError> {
        let path = self.seg.path.clone();
        if !self.unsynced.is_empty() {
            let bytes = std::mem::take(&mut self.unsynced);
            let written = self.write_at(&bytes, self.clean_len);
            self.unsynced = bytes;
            written.map_err(|e| WalError::io("re-write unsynced records of", &path, &e))?;
        }
        self.set_len(self.len)
            .map_err(|e| WalError::io("truncate", &path, &e))?;
        self.preallocated = false;
        self.sync_data()
            .map_err(|e| WalError::io("fdatasync", &path, &e))?;
        self.synced();
        if let Some(cause) = self.broken.take() {
            tracing::warn!(%cause, path = %path.display(), len = self.len, "WAL segment repaired");
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.faults.write_at(&self.file, buf, offset)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        self.faults.sync_data(&self.file, self.clean_len)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.faults.set_len()?;
        self.file.set_len(len)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! The injected failures the WAL tests use: a disk that fills up after a byte
    //! budget (with a short write first, like a real `ENOSPC`), syncs that fail (and
    //! lose the unsynced pages, as Linux may after a failed writeback), truncations that
    //! fail.

    use std::fs::File;
    use std::io::{Error, ErrorKind};
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

    #[derive(Debug)]
    pub(crate) struct Faults {
        /// Bytes that may still be written; negative = unlimited.
        pub(crate) space: AtomicI64,
        /// Syncs that fail from now on.
        pub(crate) failing_syncs: AtomicU32,
        /// Truncations that fail from now on.
        pub(crate) failing_truncates: AtomicU32,
    }

    impl Default for Faults {
        fn default() -> Self {
            Self {
                space: AtomicI64::new(-1),
                failing_syncs: AtomicU32::new(0),
                failing_truncates: AtomicU32::new(0),
            }
        }
    }

    fn take(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    impl Faults {
        pub(crate) fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
            let space = self.space.load(Ordering::SeqCst);
            if space >= 0 && (buf.len() as i64) > space {
                // A short write of what fits, then the error, like a real full disk.
                file.write_all_at(&buf[..space as usize], offset)?;
                self.space.store(0, Ordering::SeqCst);
                return Err(Error::new(
                    ErrorKind::StorageFull,
                    "No space left on device",
                ));
            }
            file.write_all_at(buf, offset)?;
            if space >= 0 {
                self.space.fetch_sub(buf.len() as i64, Ordering::SeqCst);
            }
            Ok(())
        }

        /// A failed sync also zeroes `clean_len..file end`: the pages the kernel
        /// dropped after a failed writeback.
        pub(crate) fn sync_data(&self, file: &File, clean_len: u64) -> std::io::Result<()> {
            if take(&self.failing_syncs) {
                let end = file.metadata()?.len();
                if end > clean_len {
                    file.write_all_at(&vec![0u8; (end - clean_len) as usize], clean_len)?;
                }
                return Err(Error::other("injected fsync failure (EIO)"));
            }
            file.sync_data()
        }

        pub(crate) fn set_len(&self) -> std::io::Result<()> {
            if take(&self.failing_truncates) {
                return Err(Error::other("injected ftruncate failure"));
            }
            Ok(())
        }
    }
}
