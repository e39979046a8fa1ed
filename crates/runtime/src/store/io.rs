//! [`IoObjectStore`]: whichever runtime awaits a call, the IO runs on `io`.
//!
//! Every call is spawned on the io handle and the caller awaits a join handle, so no IO
//! future is ever created or polled on a CPU runtime. Streams (GET bodies, listings) are
//! driven by a task on `io` and forwarded through a small bounded channel; the caller
//! only ever polls the channel. Dropping a call aborts its io task.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
    UploadPart,
};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// Chunks buffered between the io task that drives a stream and its consumer.
const STREAM_BUFFER: usize = 4;

/// An [`ObjectStore`] whose IO always runs on the `io` runtime.
#[derive(Debug, Clone)]
pub struct IoObjectStore {
    inner: Arc<dyn ObjectStore>,
    io: Handle,
}

impl IoObjectStore {
    pub fn new(inner: Arc<dyn ObjectStore>, io: Handle) -> Self {
        Self { inner, io }
    }

    /// The wrapped store (whose calls are *not* moved to `io`).
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    fn on_io<T, F>(&self, fut: F) -> OnIo<T>
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        OnIo(self.io.spawn(fut))
    }

    /// Drive `stream` on `io`, forwarding its items through a bounded channel.
    fn forward<T: Send + 'static>(
        &self,
        stream: impl Future<Output = BoxStream<'static, Result<T>>> + Send + 'static,
    ) -> BoxStream<'static, Result<T>> {
        let (mut tx, rx) = futures::channel::mpsc::channel(STREAM_BUFFER);
        let task = self.io.spawn(async move {
            let mut stream = stream.await;
            while let Some(item) = stream.next().await {
                if tx.send(item).await.is_err() {
                    break; // consumer dropped the stream
                }
            }
        });
        AbortOnDrop { rx, task }.boxed()
    }
}

impl fmt::Display for IoObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IoObjectStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for IoObjectStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let (inner, location) = (Arc::clone(&self.inner), location.clone());
        self.on_io(async move { inner.put_opts(&location, payload, opts).await })
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let (inner, location) = (Arc::clone(&self.inner), location.clone());
        let upload = self
            .on_io(async move { inner.put_multipart_opts(&location, opts).await })
            .await?;
        Ok(Box::new(IoMultipartUpload {
            inner: Some(upload),
            io: self.io.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let (inner, location) = (Arc::clone(&self.inner), location.clone());
        let head = options.head;
        let result = self
            .on_io(async move { inner.get_opts(&location, options).await })
            .await?;
        if head {
            return Ok(result);
        }
        let GetResult {
            meta,
            range,
            attributes,
            ..
        } = &result;
        let (meta, range, attributes) = (meta.clone(), range.clone(), attributes.clone());
        // Reading the body (a socket for S3, a file for the local store) is IO too.
        let payload = self.forward(async move { result.into_stream() });
        Ok(GetResult {
            payload: GetResultPayload::Stream(payload),
            meta,
            range,
            attributes,
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let (inner, location, ranges) =
            (Arc::clone(&self.inner), location.clone(), ranges.to_vec());
        self.on_io(async move { inner.get_ranges(&location, &ranges).await })
            .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let inner = Arc::clone(&self.inner);
        self.forward(async move { inner.delete_stream(locations) })
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let (inner, prefix) = (Arc::clone(&self.inner), prefix.cloned());
        self.forward(async move { inner.list(prefix.as_ref()) })
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let (inner, prefix, offset) = (Arc::clone(&self.inner), prefix.cloned(), offset.clone());
        self.forward(async move { inner.list_with_offset(prefix.as_ref(), &offset) })
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let (inner, prefix) = (Arc::clone(&self.inner), prefix.cloned());
        self.on_io(async move { inner.list_with_delimiter(prefix.as_ref()).await })
            .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let (inner, from, to) = (Arc::clone(&self.inner), from.clone(), to.clone());
        self.on_io(async move { inner.copy_opts(&from, &to, options).await })
            .await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let (inner, from, to) = (Arc::clone(&self.inner), from.clone(), to.clone());
        self.on_io(async move { inner.rename_opts(&from, &to, options).await })
            .await
    }
}

/// A join handle for a call running on `io`; aborts the call when dropped.
struct OnIo<T>(JoinHandle<Result<T>>);

impl<T> Future for OnIo<T> {
    type Output = Result<T>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        Pin::new(&mut self.0).poll(cx).map(|joined| match joined {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(object_store::Error::Generic {
                store: "io",
                source: Box::new(e),
            }),
        })
    }
}

impl<T> Drop for OnIo<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The consumer side of [`IoObjectStore::forward`].
struct AbortOnDrop<T> {
    rx: futures::channel::mpsc::Receiver<T>,
    task: JoinHandle<()>,
}

impl<T> futures::Stream for AbortOnDrop<T> {
    type Item = T;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.rx.poll_next_unpin(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A multipart upload whose parts and completion run on `io`.
#[derive(Debug)]
struct IoMultipartUpload {
    /// `None` only while `complete`/`abort` has it on the io runtime.
    inner: Option<Box<dyn MultipartUpload>>,
    io: Handle,
}

impl IoMultipartUpload {
    async fn with_inner<T, F>(&mut self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(
                &'a mut Box<dyn MultipartUpload>,
            ) -> futures::future::BoxFuture<'a, Result<T>>
            + Send
            + 'static,
    {
        let mut upload = self
            .inner
            .take()
            .ok_or_else(|| object_store::Error::Generic {
                store: "io",
                source: "multipart upload used after a cancelled complete/abort".into(),
            })?;
        let joined = self
            .io
            .spawn(async move {
                let result = f(&mut upload).await;
                (upload, result)
            })
            .await;
        match joined {
            Ok((upload, result)) => {
                self.inner = Some(upload);
                result
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(object_store::Error::Generic {
                store: "io",
                source: Box::new(e),
            }),
        }
    }
}

#[async_trait]
impl MultipartUpload for IoMultipartUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let part = match self.inner.as_mut() {
            Some(inner) => inner.put_part(data),
            None => {
                return Box::pin(futures::future::ready(Err(object_store::Error::Generic {
                    store: "io",
                    source: "multipart upload used after a cancelled complete/abort".into(),
                })));
            }
        };
        let task = self.io.spawn(part);
        Box::pin(OnIo(task))
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.with_inner(|u| u.complete()).await
    }

    async fn abort(&mut self) -> Result<()> {
        self.with_inner(|u| u.abort()).await
    }
}
