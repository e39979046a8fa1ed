//! [`DurableLocalStore`]: object_store's `LocalFileSystem`, with every write made
//! durable before it returns.
//!
//! `LocalFileSystem` writes an object to a staging file (`NAME#N`) and renames it into
//! place, but never calls `fsync`: after a power loss the new name can point at an
//! empty or partial file, or be gone, although the put returned. The engine commits a
//! flush by writing SSTs, then a manifest entry naming them, then truncating the WAL,
//! so a put must be on disk when it returns. Here a put is:
//!
//! 1. create the missing parent directories, each made durable by an `fsync` of its
//!    parent;
//! 2. write the staging file (`NAME#N`, the name `LocalFileSystem` uses, so listings
//!    skip it), `fsync` it;
//! 3. `rename` it into place (`PutMode::Overwrite`, and multipart uploads) or
//!    `link` it (`PutMode::Create`, which fails if the name exists), then `fsync` the
//!    directory so the entry itself survives.
//!
//! The file's content is synced before it gets its name, so after a crash the name
//! either does not exist or names the complete object. Copies and renames are
//! delegated and followed by an `fsync` of the directories involved (their content was
//! already durable). Reads, listings and deletes are `LocalFileSystem`'s own; a
//! deletion lost in a crash leaves an unreferenced object, which the engine's garbage
//! collection removes.
//!
//! All file IO runs under `spawn_blocking` (like `LocalFileSystem` itself), so no
//! async worker blocks on the disk; wrapped in [`super::IoObjectStore`] as `serve`
//! does, the calls are also started from the `io` runtime.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
    UploadPart,
};

const STORE: &str = "DurableLocalStore";

/// A local-directory object store whose writes are on disk when they return.
#[derive(Debug, Clone)]
pub struct DurableLocalStore {
    inner: Arc<LocalFileSystem>,
    root: PathBuf,
}

impl DurableLocalStore {
    /// Open (creating it durably if needed) the directory `root` as a store.
    pub fn new(root: impl AsRef<FsPath>) -> std::io::Result<Self> {
        let root = std::path::absolute(root.as_ref())?;
        create_dirs_durably(&root)?;
        let inner = LocalFileSystem::new_with_prefix(&root).map_err(std::io::Error::other)?;
        Ok(Self {
            inner: Arc::new(inner),
            root,
        })
    }

    /// The directory the objects live in.
    pub fn root(&self) -> &FsPath {
        &self.root
    }

    fn fs_path(&self, location: &Path) -> Result<PathBuf> {
        self.inner.path_to_filesystem(location)
    }
}

impl fmt::Display for DurableLocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{STORE}({})", self.root.display())
    }
}

/// Run blocking file IO off the async workers (inline when there is no runtime).
async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => rt
            .spawn_blocking(f)
            .await
            .map_err(|e| object_store::Error::Generic {
                store: STORE,
                source: Box::new(e),
            })?,
        Err(_) => f(),
    }
}

fn io_error(what: &str, path: &FsPath, e: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: format!("{what} {}: {e}", path.display()).into(),
    }
}

/// `fsync` a directory, so the entries created or renamed in it survive a power loss.
pub fn sync_dir(dir: &FsPath) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `mkdir -p dir`, with each directory it creates made durable (its parent synced).
pub fn create_dirs_durably(dir: &FsPath) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.is_dir() {
            break;
        }
        missing.push(d);
        cur = d.parent();
    }
    for d in missing.into_iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if let Some(parent) = d.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

fn parent(path: &FsPath) -> Result<&FsPath> {
    path.parent().ok_or_else(|| object_store::Error::Generic {
        store: STORE,
        source: format!("{} has no parent directory", path.display()).into(),
    })
}

/// Create a new staging file `{dest}#{n}` next to `dest` (parents created durably).
fn new_staging_file(dest: &FsPath) -> Result<(File, PathBuf)> {
    create_dirs_durably(parent(dest)?).map_err(|e| io_error("create directory for", dest, e))?;
    for n in 1u32.. {
        let mut staged = dest.as_os_str().to_owned();
        staged.push(format!("#{n}"));
        let staged = PathBuf::from(staged);
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&staged)
        {
            Ok(f) => return Ok((f, staged)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_error("create", &staged, e)),
        }
    }
    unreachable!("u32 staging names exhausted")
}

/// The same ETag `LocalFileSystem` reports for a file (inode, mtime, size).
fn etag(file: &File) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = file.metadata().ok()?;
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default()
        .as_micros();
    Some(format!("{:x}-{:x}-{:x}", m.ino(), mtime, m.len()))
}

/// Give the synced staging file its final name and sync the directory. `create`:
/// fail with `AlreadyExists` if `dest` exists (a link, not a rename).
fn publish(staged: &FsPath, dest: &FsPath, create: bool) -> Result<()> {
    if create {
        match std::fs::hard_link(staged, dest) {
            Ok(()) => {
                let _ = std::fs::remove_file(staged);
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_file(staged);
                return Err(object_store::Error::AlreadyExists {
                    path: dest.display().to_string(),
                    source: Box::new(e),
                });
            }
            Err(e) => return Err(io_error("link", dest, e)),
        }
    } else {
        std::fs::rename(staged, dest).map_err(|e| io_error("rename to", dest, e))?;
    }
    let dir = parent(dest)?;
    sync_dir(dir).map_err(|e| io_error("fsync directory", dir, e))
}

#[async_trait]
impl ObjectStore for DurableLocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let create = match opts.mode {
            PutMode::Overwrite => false,
            PutMode::Create => true,
            // Unsupported by LocalFileSystem too; let it answer.
            PutMode::Update(_) => return self.inner.put_opts(location, payload, opts).await,
        };
        if !opts.attributes.is_empty() {
            return self.inner.put_opts(location, payload, opts).await;
        }
        let dest = self.fs_path(location)?;
        blocking(move || {
            let (mut file, staged) = new_staging_file(&dest)?;
            let written = payload
                .iter()
                .try_for_each(|chunk| file.write_all(chunk))
                .and_then(|()| file.sync_all());
            let e_tag = etag(&file);
            drop(file);
            let done = written
                .map_err(|e| io_error("write", &staged, e))
                .and_then(|()| publish(&staged, &dest, create));
            if let Err(e) = done {
                // A file that did not fit must not keep holding the space.
                let _ = std::fs::remove_file(&staged);
                return Err(e);
            }
            Ok(PutResult {
                e_tag,
                version: None,
            })
        })
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        if !opts.attributes.is_empty() {
            return self.inner.put_multipart_opts(location, opts).await;
        }
        let dest = self.fs_path(location)?;
        let (file, staged) = blocking({
            let dest = dest.clone();
            move || new_staging_file(&dest)
        })
        .await?;
        Ok(Box::new(DurableUpload {
            file: Arc::new(file),
            staged: Some(staged),
            dest,
            offset: 0,
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let dest = self.fs_path(to)?;
        let dir = parent(&dest)?.to_path_buf();
        let pre = dir.clone();
        blocking(move || create_dirs_durably(&pre).map_err(|e| io_error("create", &pre, e)))
            .await?;
        self.inner.copy_opts(from, to, options).await?;
        blocking(move || sync_dir(&dir).map_err(|e| io_error("fsync directory", &dir, e))).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let (src, dest) = (self.fs_path(from)?, self.fs_path(to)?);
        let dirs = [parent(&dest)?.to_path_buf(), parent(&src)?.to_path_buf()];
        let pre = dirs[0].clone();
        blocking(move || create_dirs_durably(&pre).map_err(|e| io_error("create", &pre, e)))
            .await?;
        self.inner.rename_opts(from, to, options).await?;
        blocking(move || {
            for dir in &dirs {
                sync_dir(dir).map_err(|e| io_error("fsync directory", dir, e))?;
            }
            Ok(())
        })
        .await
    }
}

/// A multipart upload into a staging file: parts are positioned writes, `complete`
/// syncs the file, renames it into place and syncs the directory.
#[derive(Debug)]
struct DurableUpload {
    file: Arc<File>,
    /// `None` once completed or aborted.
    staged: Option<PathBuf>,
    dest: PathBuf,
    offset: u64,
}

#[async_trait]
impl MultipartUpload for DurableUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let offset = self.offset;
        self.offset += data.content_length() as u64;
        let file = Arc::clone(&self.file);
        let path = self.staged.clone().unwrap_or_default();
        // Lazy: the write starts when the future is first polled (on `io` when wrapped
        // in `IoObjectStore`), not on the caller's thread.
        async move {
            blocking(move || {
                let mut at = offset;
                for chunk in data.iter() {
                    file.write_all_at(chunk, at)
                        .map_err(|e| io_error("write", &path, e))?;
                    at += chunk.len() as u64;
                }
                Ok(())
            })
            .await
        }
        .boxed()
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let staged = self
            .staged
            .take()
            .ok_or_else(|| object_store::Error::Generic {
                store: STORE,
                source: "multipart upload already completed or aborted".into(),
            })?;
        let (file, dest) = (Arc::clone(&self.file), self.dest.clone());
        blocking(move || {
            let done = file
                .sync_all()
                .map_err(|e| io_error("fsync", &staged, e))
                .and_then(|()| publish(&staged, &dest, false));
            if let Err(e) = done {
                let _ = std::fs::remove_file(&staged);
                return Err(e);
            }
            Ok(PutResult {
                e_tag: etag(&file),
                version: None,
            })
        })
        .await
    }

    async fn abort(&mut self) -> Result<()> {
        let Some(staged) = self.staged.take() else {
            return Ok(());
        };
        blocking(move || std::fs::remove_file(&staged).map_err(|e| io_error("remove", &staged, e)))
            .await
    }
}

impl Drop for DurableUpload {
    fn drop(&mut self) {
        if let Some(staged) = self.staged.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => drop(rt.spawn_blocking(move || std::fs::remove_file(staged))),
                Err(_) => drop(std::fs::remove_file(staged)),
            }
        }
    }
}

#[cfg(test)]
mod tests;
