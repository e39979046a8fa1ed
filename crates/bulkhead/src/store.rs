//! Opening the object store named by `storage.object_store`, and checking it is usable.
//!
//! - `file://PATH`: a local directory (the embedded default), through
//!   [`DurableLocalStore`]: an object is fsynced, renamed into place and its directory
//!   fsynced before its put returns.
//! - `s3://BUCKET[/PREFIX]`: object_store's S3 client, configured by the `[s3]` section
//!   (flags `--s3-*`), whose empty values fall back to the standard `AWS_*` environment
//!   variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//!   `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, ...). Its HTTP connections are opened and driven
//!   on the `io` runtime (the seed's connection-pool bug; see docs/lab.md).
//!
//! Whatever the backend, the store is wrapped so every call runs on `io`, and then in
//! the SST block cache (`[cache]`: memory for every store, disk too for `s3://`; see
//! docs/object-storage.md). Before the
//! engine opens, [`check`] proves the store is reachable and writable, and that it
//! enforces create-only puts, which the manifest's single-writer guarantee rests on.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use bulkhead_runtime::Runtimes;
use bulkhead_runtime::store::{
    CacheConfig, CachedStore, DiskCacheConfig, DurableLocalStore, FaultConfig, FaultInjectingStore,
    IoObjectStore, io_http_connector,
};
use bulkhead_server::config::{CacheSection, S3Config};
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

/// Benchmark knob, not a config option: `20ms..80ms` delays every object-store call by
/// a random time in that range, so local disk behaves like S3 (`bulkhead-bench`).
pub(crate) const INJECT_LATENCY_ENV: &str = "BULKHEAD_INJECT_LATENCY";

/// Test knob, not a config option: `0.2` fails every object-store call with that
/// probability, to show that injected errors lose nothing (tests/s3.rs).
pub(crate) const INJECT_ERRORS_ENV: &str = "BULKHEAD_INJECT_ERRORS";

/// Test knob, not a config option: the cache's block size in bytes (default 1 MiB), so
/// tests can exercise eviction with little data (tests/s3_cache.rs).
pub(crate) const CACHE_BLOCK_SIZE_ENV: &str = "BULKHEAD_CACHE_BLOCK_SIZE";

/// An opened store, and the fault injector inside it when a test knob asked for one.
pub(crate) struct OpenedStore {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// The SST block cache (also `store`'s outermost layer), when enabled.
    pub(crate) cache: Option<CachedStore>,
    faults: Option<(Arc<FaultInjectingStore>, FaultConfig)>,
}

impl OpenedStore {
    /// Turn on the injected errors of `BULKHEAD_INJECT_ERRORS`. Called once the engine
    /// is open: startup (the store check, manifest recovery) runs without them.
    pub(crate) fn arm_faults(&self) {
        if let Some((faults, config)) = &self.faults {
            faults.set_config(config.clone());
        }
    }
}

/// What `[cache]` asks for with the store `url`: the memory tier always, the disk tier
/// only for a remote store (a `file://` store is local disk already, unless
/// `BULKHEAD_INJECT_LATENCY` makes it play S3 for a benchmark).
pub(crate) fn cache_config(
    section: &CacheSection,
    data_dir: &std::path::Path,
    url: &str,
) -> Option<CacheConfig> {
    if !section.enabled {
        return None;
    }
    let remote = !url.starts_with("file://") || std::env::var_os(INJECT_LATENCY_ENV).is_some();
    let disk = (remote && section.disk_size.as_u64() > 0).then(|| DiskCacheConfig {
        dir: section.disk_dir(data_dir),
        bytes: section.disk_size.as_u64(),
    });
    if section.memory_size.as_u64() == 0 && disk.is_none() {
        return None;
    }
    let mut config = CacheConfig {
        memory_bytes: section.memory_size.as_u64(),
        disk,
        ..CacheConfig::default()
    };
    if let Some(size) = std::env::var(CACHE_BLOCK_SIZE_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
    {
        tracing::warn!(
            size,
            "{CACHE_BLOCK_SIZE_ENV} is set: cache blocks of {size} bytes (tests only)"
        );
        config.block_size = size;
    }
    Some(config)
}

/// Open `url` as an io-bound store, behind the block cache when `cache` is given.
pub(crate) fn open(
    url: &str,
    s3: &S3Config,
    cache: Option<CacheConfig>,
    runtimes: &Runtimes,
) -> anyhow::Result<OpenedStore> {
    let inner: Arc<dyn ObjectStore> = if let Some(path) = url.strip_prefix("file://") {
        // Every put is fsynced, renamed into place, and its directory fsynced before it
        // returns: the manifest may only name objects a power loss cannot take back.
        let root = PathBuf::from(path);
        Arc::new(
            DurableLocalStore::new(&root).with_context(|| {
                format!("opening the object-store directory {}", root.display())
            })?,
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
    let latency = injected_latency()?;
    let error_probability = injected_errors()?;
    let mut faults = None;
    let inner = if latency.is_some() || error_probability > 0.0 {
        tracing::warn!(
            ?latency,
            error_probability,
            "{INJECT_LATENCY_ENV} or {INJECT_ERRORS_ENV} is set: object-store calls are \
             delayed or failed on purpose (benchmarks and tests only)"
        );
        // Latency from the start; errors once armed (after startup).
        let injector = Arc::new(FaultInjectingStore::new(
            inner,
            FaultConfig {
                latency: latency.clone(),
                error_probability: 0.0,
                ..Default::default()
            },
        ));
        faults = Some((
            Arc::clone(&injector),
            FaultConfig {
                latency,
                error_probability,
                ..Default::default()
            },
        ));
        injector as Arc<dyn ObjectStore>
    } else {
        inner
    };
    let io_bound: Arc<dyn ObjectStore> = Arc::new(IoObjectStore::new(inner, runtimes.io().clone()));
    let (store, cache) =
        match cache {
            Some(config) => {
                let cached = CachedStore::new(io_bound, runtimes.io().clone(), &config)
                    .with_context(|| match &config.disk {
                        Some(d) => format!("opening the cache directory {}", d.dir.display()),
                        None => "opening the cache".to_string(),
                    })?;
                let stats = cached.stats();
                tracing::info!(
                    memory = config.memory_bytes,
                    disk = ?config.disk.as_ref().map(|d| (d.dir.display().to_string(), d.bytes)),
                    disk_blocks_found = stats.disk.map(|d| d.entries),
                    "object-store cache on"
                );
                (
                    Arc::new(cached.clone()) as Arc<dyn ObjectStore>,
                    Some(cached),
                )
            }
            None => (io_bound, None),
        };
    Ok(OpenedStore {
        store,
        cache,
        faults,
    })
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
    // Through config keys, not `with_client_options`, which would replace the client
    // options `from_env` filled in (AWS_ALLOW_HTTP among them).
    use object_store::ClientConfigKey;
    let millis = |d: std::time::Duration| format!("{}ms", d.as_millis());
    b.with_retry(retry)
        .with_config(
            Key::Client(ClientConfigKey::Timeout),
            millis(c.request_timeout.get()),
        )
        .with_config(
            Key::Client(ClientConfigKey::ConnectTimeout),
            millis(c.connect_timeout.get()),
        )
}

fn injected_errors() -> anyhow::Result<f64> {
    let Ok(value) = std::env::var(INJECT_ERRORS_ENV) else {
        return Ok(0.0);
    };
    match value.trim().parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => bail!("{INJECT_ERRORS_ENV}: `{value}` is not a probability in 0..=1"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_data_dir_is_served_by_the_durable_store() {
        let dir = tempfile::tempdir().expect("tmp");
        let runtimes = Runtimes::new(bulkhead_runtime::RuntimeConfig::default()).expect("runtimes");
        let url = format!("file://{}", dir.path().join("objects").display());
        let opened = open(&url, &S3Config::default(), None, &runtimes).expect("open");
        let name = opened.store.to_string();
        assert!(
            name.starts_with("IoObjectStore(DurableLocalStore("),
            "serve's local store is {name}"
        );
        let cache = cache_config(&CacheSection::default(), dir.path(), &url);
        assert!(
            cache
                .as_ref()
                .is_some_and(|c| c.disk.is_none() && c.memory_bytes > 0)
        );
        let opened = open(&url, &S3Config::default(), cache, &runtimes).expect("open");
        let name = opened.store.to_string();
        assert!(
            name.starts_with("CachedStore(IoObjectStore(DurableLocalStore("),
            "serve's cached local store is {name}"
        );
        let remote = cache_config(&CacheSection::default(), dir.path(), "s3://b/p");
        assert_eq!(
            remote.and_then(|c| c.disk).map(|d| d.dir),
            Some(dir.path().join("cache"))
        );
    }
}
