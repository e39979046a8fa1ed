//! [`HookedStore`]: an object store that runs a test's hooks before puts and listings
//! and delegates everything to the store it wraps, so a test that needs a slow or
//! failing commit writes only the hook, not a whole `ObjectStore`.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// What a [`HookedStore`] runs; each hook defaults to doing nothing.
#[async_trait]
pub trait StoreHooks: fmt::Debug + Send + Sync + 'static {
    /// Before a single-request put of `location`; an error fails the put (nothing is
    /// written), `Ok` lets it through (after any delay the hook chose).
    async fn before_put(&self, _location: &Path, _payload: &PutPayload) -> Result<()> {
        Ok(())
    }

    /// Before a `list` stream yields its first entry.
    async fn before_list(&self) {}
}

/// `inner` with `hooks` run before puts and listings; see the module docs.
#[derive(Debug)]
pub struct HookedStore<H> {
    inner: Arc<dyn ObjectStore>,
    hooks: Arc<H>,
}

impl<H: StoreHooks> HookedStore<H> {
    pub fn new(inner: Arc<dyn ObjectStore>, hooks: Arc<H>) -> Self {
        Self { inner, hooks }
    }
}

impl<H> fmt::Display for HookedStore<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hooked({})", self.inner)
    }
}

#[async_trait]
impl<H: StoreHooks> ObjectStore for HookedStore<H> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.hooks.before_put(location, &payload).await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
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
        let (inner, hooks) = (Arc::clone(&self.inner), Arc::clone(&self.hooks));
        let prefix = prefix.cloned();
        async move {
            hooks.before_list().await;
            inner.list(prefix.as_ref())
        }
        .into_stream()
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
