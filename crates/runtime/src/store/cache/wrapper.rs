//! [`CachedStore`]'s `ObjectStore` implementation: which calls go through the cache
//! (plain ranged and whole reads of cacheable objects), which write through (their
//! puts), which invalidate (deletes, copies and renames onto them), and which pass
//! straight to the wrapped store (everything else).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result, UploadPart,
};
use tokio::runtime::Handle;

use super::{CacheConfig, CacheStats, Core};

/// An object store with a bounded memory and disk cache of immutable objects in front
/// of it (see the [module docs](super)). Wrap it around the io-bound store.
#[derive(Clone)]
pub struct CachedStore {
    core: Arc<Core>,
}

impl CachedStore {
    /// Cache `inner` as `config` says. Opening the disk tier scans its directory
    /// (blocking; call it at startup).
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        io: Handle,
        config: &CacheConfig,
    ) -> std::io::Result<Self> {
        Ok(Self {
            core: Arc::new(Core::open(inner, io, config)?),
        })
    }

    /// Counters and sizes of both tiers.
    pub fn stats(&self) -> CacheStats {
        self.core.stats()
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.core.inner
    }

    fn cacheable(&self, location: &Path) -> bool {
        (self.core.cacheable)(location)
    }
}

impl fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CachedStore({})", self.core.inner)
    }
}

impl fmt::Display for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CachedStore({})", self.core.inner)
    }
}

/// Whether `o` asks for nothing but (at most) a bounded range of the current version.
fn plain(o: &GetOptions) -> bool {
    o.if_match.is_none()
        && o.if_none_match.is_none()
        && o.if_modified_since.is_none()
        && o.if_unmodified_since.is_none()
        && o.version.is_none()
        && !o.head
        && matches!(o.range, None | Some(GetRange::Bounded(_)))
}

fn result(location: &Path, size: u64, range: Range<u64>, bytes: Bytes) -> GetResult {
    GetResult {
        payload: GetResultPayload::Stream(futures::stream::once(async move { Ok(bytes) }).boxed()),
        meta: ObjectMeta {
            location: location.clone(),
            last_modified: Default::default(),
            size,
            e_tag: None,
            version: None,
        },
        range,
        attributes: Default::default(),
    }
}

#[async_trait]
impl ObjectStore for CachedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        if !self.cacheable(location) {
            return self.core.inner.put_opts(location, payload, opts).await;
        }
        // Whatever was cached under this name is stale from now on.
        self.core.invalidate(location);
        let parts: Vec<Bytes> = payload.iter().cloned().collect();
        let put = self.core.inner.put_opts(location, payload, opts).await?;
        self.core.write_through(location, parts);
        Ok(put)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let upload = self.core.inner.put_multipart_opts(location, opts).await?;
        if !self.cacheable(location) || self.core.disk.is_none() {
            return Ok(upload);
        }
        self.core.invalidate(location);
        Ok(Box::new(WriteThroughUpload {
            inner: upload,
            parts: Vec::new(),
            core: Arc::clone(&self.core),
            location: location.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if !self.cacheable(location) || !plain(&options) {
            return self.core.inner.get_opts(location, options).await;
        }
        match options.range {
            Some(GetRange::Bounded(r)) => {
                let bytes = self
                    .core
                    .read_ranges(location, std::slice::from_ref(&r))
                    .await?
                    .pop()
                    .unwrap_or_default();
                let size = self
                    .core
                    .size_of(location.as_ref())
                    .unwrap_or(r.start + bytes.len() as u64);
                if bytes.is_empty() && r.end > r.start {
                    return Err(super::cache_error(format!(
                        "{location}: range {}..{} starts past the end of the object ({size} bytes)",
                        r.start, r.end
                    )));
                }
                let range = r.start..r.start + bytes.len() as u64;
                Ok(result(location, size, range, bytes))
            }
            _ => {
                // A whole object (compaction inputs): served from the cache only when
                // every block is there; otherwise fetched without filling the cache,
                // so a merge does not push the query working set out.
                let path: Arc<str> = Arc::from(location.as_ref());
                match self.core.size_of(&path) {
                    Some(size) if self.core.holds_all(&path, size) => {
                        let bytes = self
                            .core
                            .read_ranges(location, std::slice::from_ref(&(0..size)))
                            .await?
                            .pop()
                            .unwrap_or_default();
                        Ok(result(location, size, 0..bytes.len() as u64, bytes))
                    }
                    _ => self.core.inner.get_opts(location, options).await,
                }
            }
        }
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        if !self.cacheable(location) {
            return self.core.inner.get_ranges(location, ranges).await;
        }
        let out = self.core.read_ranges(location, ranges).await?;
        for (r, b) in ranges.iter().zip(&out) {
            if (b.len() as u64) < r.end - r.start {
                return Err(super::cache_error(format!(
                    "{location}: range {}..{} is past the end of the object",
                    r.start, r.end
                )));
            }
        }
        Ok(out)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let core = Arc::clone(&self.core);
        let locations = locations
            .inspect(move |l| match l {
                Ok(l) if (core.cacheable)(l) => core.invalidate(l),
                _ => {}
            })
            .boxed();
        self.core.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.core.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.core.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.core.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        if self.cacheable(to) {
            self.core.invalidate(to);
        }
        self.core.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        for p in [from, to] {
            if self.cacheable(p) {
                self.core.invalidate(p);
            }
        }
        self.core.inner.rename_opts(from, to, options).await
    }
}

/// A multipart upload of a cacheable object: remembers its parts (the caller's own
/// buffers, not copies) and writes them through once the upload completes.
struct WriteThroughUpload {
    inner: Box<dyn MultipartUpload>,
    parts: Vec<Bytes>,
    core: Arc<Core>,
    location: Path,
}

impl fmt::Debug for WriteThroughUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WriteThroughUpload({})", self.location)
    }
}

#[async_trait]
impl MultipartUpload for WriteThroughUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.parts.extend(data.iter().cloned());
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let done = self.inner.complete().await?;
        self.core
            .write_through(&self.location, std::mem::take(&mut self.parts));
        Ok(done)
    }

    async fn abort(&mut self) -> Result<()> {
        self.parts.clear();
        self.inner.abort().await
    }
}
