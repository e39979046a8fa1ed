//! [`FaultInjectingStore`]: adds S3-like latency and injected failures to any store.
//!
//! Used by engine tests (a store that fails, then recovers) and by `bulkhead-bench`
//! (so local disk behaves like S3: 20-80 ms per call). Wrap it *inside*
//! [`super::IoObjectStore`] so the injected sleeps happen on `io`, like real network waits.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::sync::Mutex;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use rand::Rng;

/// What to inject.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConfig {
    /// Each call sleeps a uniformly random time in this range (e.g. 20..80 ms for S3).
    pub latency: Option<Range<Duration>>,
    /// Probability in 0..=1 that a call fails with an injected error.
    pub error_probability: f64,
    /// Probability in 0..=1 that a `put` succeeds in the inner store but its caller
    /// gets an error anyway (a reply lost on the way back: the ambiguous failure).
    pub lost_reply_probability: f64,
}

impl FaultConfig {
    /// S3-like latency: 20-80 ms per call, no errors.
    pub fn s3_like() -> Self {
        Self {
            latency: Some(Duration::from_millis(20)..Duration::from_millis(80)),
            ..Self::default()
        }
    }
}

/// An object store that delays and fails calls on request.
#[derive(Debug)]
pub struct FaultInjectingStore {
    inner: Arc<dyn ObjectStore>,
    config: Mutex<FaultConfig>,
    /// While set, every call fails (an outage).
    down: AtomicBool,
    calls: AtomicU64,
    injected_errors: AtomicU64,
    bytes_read: AtomicU64,
    multipart_uploads: AtomicU64,
}

impl FaultInjectingStore {
    pub fn new(inner: Arc<dyn ObjectStore>, config: FaultConfig) -> Self {
        Self {
            inner,
            config: Mutex::new(config),
            down: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            injected_errors: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            multipart_uploads: AtomicU64::new(0),
        }
    }

    /// Start (`true`) or end (`false`) an outage: every call fails while it lasts.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn set_config(&self, config: FaultConfig) {
        *self.config.lock() = config;
    }

    /// Calls made through this store so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Calls that failed because of an injected error or outage.
    pub fn injected_errors(&self) -> u64 {
        self.injected_errors.load(Ordering::Relaxed)
    }

    /// Bytes that reads asked for: the ranges of `get`s (the whole object when
    /// unranged) and of `get_ranges`. Tells tests whether readers fetch only what they
    /// need.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// Multipart uploads started.
    pub fn multipart_uploads(&self) -> u64 {
        self.multipart_uploads.load(Ordering::Relaxed)
    }

    /// Sleep and/or fail as configured; called at the start of every operation.
    async fn inject(&self, op: &'static str) -> Result<()> {
        self.inject_owned(op).await
    }
}

impl fmt::Display for FaultInjectingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultInjectingStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultInjectingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inject("put").await?;
        let result = self.inner.put_opts(location, payload, opts).await?;
        let lost = self.config.lock().lost_reply_probability;
        if lost > 0.0 && rand::rng().random_bool(lost.min(1.0)) {
            self.injected_errors.fetch_add(1, Ordering::Relaxed);
            return Err(object_store::Error::Generic {
                store: "fault-injection",
                source: "injected lost reply: the put landed".into(),
            });
        }
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inject("put_multipart").await?;
        self.multipart_uploads.fetch_add(1, Ordering::Relaxed);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inject("get").await?;
        let head = options.head;
        let result = self.inner.get_opts(location, options).await?;
        if !head {
            self.bytes_read
                .fetch_add(result.range.end - result.range.start, Ordering::Relaxed);
        }
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inject("get_ranges").await?;
        let total: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        self.bytes_read.fetch_add(total, Ordering::Relaxed);
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        // Deletes are injected per stream: one check, then the inner store's stream.
        let inner = Arc::clone(&self.inner);
        let check = self.inject_owned("delete");
        futures::stream::once(async move {
            match check.await {
                Ok(()) => inner.delete_stream(locations),
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let inner = Arc::clone(&self.inner);
        let prefix = prefix.cloned();
        let check = self.inject_owned("list");
        futures::stream::once(async move {
            match check.await {
                Ok(()) => inner.list(prefix.as_ref()),
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inject("list").await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inject("copy").await?;
        self.inner.copy_opts(from, to, options).await
    }
}

impl FaultInjectingStore {
    /// The injection as a `'static` future: decided when the call is made, slept and
    /// failed when awaited (the stream-returning methods need it `'static`).
    fn inject_owned(&self, op: &'static str) -> futures::future::BoxFuture<'static, Result<()>> {
        let cfg = self.config.lock().clone();
        let down = self.down.load(Ordering::SeqCst);
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut rng = rand::rng();
        let delay = cfg.latency.as_ref().map(|r| {
            if r.end > r.start {
                rng.random_range(r.clone())
            } else {
                r.start
            }
        });
        let fail = down
            || (cfg.error_probability > 0.0 && rng.random_bool(cfg.error_probability.min(1.0)));
        if fail {
            self.injected_errors.fetch_add(1, Ordering::Relaxed);
        }
        async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            if fail {
                Err(object_store::Error::Generic {
                    store: "fault-injection",
                    source: format!("injected {op} failure").into(),
                })
            } else {
                Ok(())
            }
        }
        .boxed()
    }
}
