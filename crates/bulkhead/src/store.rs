//! Opening the object store named by `storage.object_store`, and checking it is usable.
//!
//! - `file://PATH`: a local directory (the embedded default).
//! - `s3://BUCKET[/PREFIX]`: object_store's S3 client, configured by the `[s3]` section
//!   (flags `--s3-*`), whose empty values fall back to the standard `AWS_*` environment
//!   variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//!   `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, ...). Its HTTP connections are opened and driven
//!   on the `io` runtime (the seed's connection-pool bug; see docs/lab.md).
//!
//! Whatever the backend, the store is wrapped so every call runs on `io`. Before the
//! engine opens, [`check`] proves the store is reachable and writable, and that it
//! enforces create-only puts, which the manifest's single-writer guarantee rests on.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use bulkhead_runtime::Runtimes;
use bulkhead_runtime::store::{FaultConfig, FaultInjectingStore, IoObjectStore, io_http_connector};
use bulkhead_server::config::S3Config;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

/// Benchmark knob, not a config option: `20ms..80ms` delays every object-store call by
/// a random time in that range, so local disk behaves like S3 (`bulkhead bench`).
pub(crate) const INJECT_LATENCY_ENV: &str = "BULKHEAD_INJECT_LATENCY";

/// Open `url` as an io-bound store.
pub(crate) fn open(
    url: &str,
    s3: &S3Config,
    runtimes: &Runtimes,
) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let inner: Arc<dyn ObjectStore> = if let Some(path) = url.strip_prefix("file://") {
        let root = PathBuf::from(path);
        std::fs::create_dir_all(&root)
            .with_context(|| format!("creating the object-store directory {}", root.display()))?;
        Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(&root)
                .with_context(|| format!("opening the object store at {}", root.display()))?,
        )
    } else if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("storage.object_store: `{url}` names no bucket (expected s3://BUCKET/PREFIX)");
        }
        let s3 = s3_builder(s3)
            .with_bucket_name(bucket)
            .with_http_connector(io_http_connector(runtimes))
            .build()
            .with_context(|| {
                format!(
                    "configuring S3 for `{url}` ([s3] settings and AWS_* environment variables)"
                )
            })?;
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(PrefixStore::new(s3, prefix))
        }
    } else {
        bail!(
            "storage.object_store: unsupported URL `{url}` (use file://PATH or s3://BUCKET/PREFIX)"
        )
    };
    // Inside the io wrapper, so the injected waits happen on `io` like network waits.
    let inner = match injected_latency()? {
        Some(latency) => {
            tracing::warn!(
                ?latency,
                "{INJECT_LATENCY_ENV} is set: every object-store call is delayed (benchmarks only)"
            );
            Arc::new(FaultInjectingStore::new(
                inner,
                FaultConfig {
                    latency: Some(latency),
                    error_probability: 0.0,
                },
            )) as Arc<dyn ObjectStore>
        }
        None => inner,
    };
    Ok(Arc::new(IoObjectStore::new(inner, runtimes.io().clone())))
}

/// The S3 client from `[s3]`; empty settings keep what `from_env` read from `AWS_*`.
fn s3_builder(c: &S3Config) -> object_store::aws::AmazonS3Builder {
    use object_store::aws::AmazonS3ConfigKey as Key;
    let mut b = object_store::aws::AmazonS3Builder::from_env();
    for (key, value) in [
        (Key::Endpoint, &c.endpoint),
        (Key::Region, &c.region),
        (Key::AccessKeyId, &c.access_key_id),
        (Key::SecretAccessKey, &c.secret_access_key),
    ] {
        if !value.is_empty() {
            b = b.with_config(key, value);
        }
    }
    if c.allow_http {
        b = b.with_allow_http(true);
    }
    if c.virtual_hosted_style {
        b = b.with_virtual_hosted_style_request(true);
    }
    let retry = object_store::RetryConfig {
        max_retries: c.max_retries,
        retry_timeout: c.retry_timeout.get(),
        ..object_store::RetryConfig::default()
    };
    let client = object_store::ClientOptions::new()
        .with_timeout(c.request_timeout.get())
        .with_connect_timeout(c.connect_timeout.get());
    b.with_retry(retry).with_client_options(client)
}

fn injected_latency() -> anyhow::Result<Option<std::ops::Range<std::time::Duration>>> {
    let Ok(value) = std::env::var(INJECT_LATENCY_ENV) else {
        return Ok(None);
    };
    let (lo, hi) = value.split_once("..").unwrap_or((&value, &value));
    let parse = |s: &str| {
        humantime::parse_duration(s.trim()).with_context(|| {
            format!("{INJECT_LATENCY_ENV}: `{s}` is not a duration (expected e.g. 20ms..80ms)")
        })
    };
    Ok(Some(parse(lo)?..parse(hi)?))
}

/// Prove the store is reachable and writable, and that a create-only put of an existing
/// object fails. `allow_unconditional` downgrades the last check to a warning.
pub(crate) async fn check(
    store: &dyn ObjectStore,
    url: &str,
    allow_unconditional: bool,
) -> anyhow::Result<()> {
    let probe = Path::from(format!("_bulkhead/startup-probe-{:016x}", rand_id()));
    let create = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    store
        .put_opts(&probe, PutPayload::from_static(b"probe"), create.clone())
        .await
        .with_context(|| format!("the object store `{url}` is not reachable or not writable"))?;
    let second = store
        .put_opts(&probe, PutPayload::from_static(b"probe"), create)
        .await;
    let _ = store.delete(&probe).await;
    match second {
        Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("checking create-only puts on `{url}`")),
        Ok(_) if allow_unconditional => {
            tracing::warn!(%url, "the object store ignores create-only puts (If-None-Match); a second writer could overwrite the manifest");
            Ok(())
        }
        Ok(_) => bail!(
            "the object store `{url}` does not enforce create-only puts (If-None-Match: *): \
             the manifest relies on them so that two writers can never both commit. \
             Use a store that enforces them, or start with --unsafe-no-conditional-put \
             if you are certain only one Bulkhead process writes to this prefix"
        ),
    }
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}
