//! An engine on a temp dir: its runtimes, an io-bound local object store, the engine
//! opened on them, and blocking helpers to write and flush from a plain `#[test]`.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use bulkhead_engine::{Engine, EngineConfig, FieldValue, Row, Scope, SmolStr, WriteBatch};
use bulkhead_runtime::store::IoObjectStore;
use bulkhead_runtime::{RuntimeConfig, RuntimeName, Runtimes};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;

/// New runtimes as the tests size them (two threads per CPU runtime).
pub fn new_runtimes() -> Arc<Runtimes> {
    Runtimes::new(RuntimeConfig::for_parallelism(2)).expect("runtimes")
}

/// One set of runtimes for the whole test binary (engines opened and dropped by many
/// tests share them).
pub fn shared_runtimes() -> Arc<Runtimes> {
    static RT: OnceLock<Arc<Runtimes>> = OnceLock::new();
    Arc::clone(RT.get_or_init(new_runtimes))
}

/// `inner`, with every IO future driven on the io runtime (as `bulkhead serve` wraps
/// its store).
pub fn io_bound(inner: Arc<dyn ObjectStore>, runtimes: &Runtimes) -> Arc<dyn ObjectStore> {
    Arc::new(IoObjectStore::new(inner, runtimes.io().clone()))
}

/// A local-filesystem store rooted at `root` (created if missing), io-bound.
pub fn local_store(root: &Path, runtimes: &Runtimes) -> Arc<dyn ObjectStore> {
    std::fs::create_dir_all(root).expect("store dir");
    let fs = LocalFileSystem::new_with_prefix(root).expect("local store");
    io_bound(Arc::new(fs), runtimes)
}

/// Open (recover) an engine, panicking on error.
pub async fn open_engine(
    config: EngineConfig,
    store: &Arc<dyn ObjectStore>,
    runtimes: &Arc<Runtimes>,
) -> Arc<Engine> {
    Engine::open(config, Arc::clone(store), Arc::clone(runtimes))
        .await
        .expect("open engine")
}

/// [`open_engine`] from outside any runtime: runs on `io`.
pub fn open_engine_blocking(
    config: EngineConfig,
    store: &Arc<dyn ObjectStore>,
    runtimes: &Arc<Runtimes>,
) -> Arc<Engine> {
    let (store, rt) = (Arc::clone(store), Arc::clone(runtimes));
    runtimes
        .block_on(RuntimeName::Io, async move {
            open_engine(config, &store, &rt).await
        })
        .expect("runtime")
}

/// A row of `tags` and `fields` at `time` (ns).
pub fn row(tags: &[(&str, &str)], fields: &[(&str, FieldValue)], time: i64) -> Row {
    Row {
        tags: tags
            .iter()
            .map(|(k, v)| (SmolStr::new(k), SmolStr::new(v)))
            .collect(),
        fields: fields
            .iter()
            .map(|(k, v)| (SmolStr::new(k), v.clone()))
            .collect(),
        time,
    }
}

/// An engine on a temp dir (WAL and manifest state under it, SSTs in its `objects`
/// directory), with runtimes of its own; the dir goes when this is dropped.
pub struct TempEngine {
    pub runtimes: Arc<Runtimes>,
    pub engine: Arc<Engine>,
    pub store: Arc<dyn ObjectStore>,
    dir: tempfile::TempDir,
}

impl TempEngine {
    /// `EngineConfig::with_dir` defaults.
    pub fn open() -> Self {
        Self::open_with(|_| {})
    }

    /// The defaults adjusted by `tweak`.
    pub fn open_with(tweak: impl FnOnce(&mut EngineConfig)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let runtimes = new_runtimes();
        let store = local_store(&dir.path().join("objects"), &runtimes);
        let mut config = EngineConfig::with_dir(dir.path());
        tweak(&mut config);
        let engine = open_engine_blocking(config, &store, &runtimes);
        Self {
            runtimes,
            engine,
            store,
            dir,
        }
    }

    /// The temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Write `rows` (table, row) to `db` on the `write` runtime, panicking on error.
    pub fn write(&self, db: &str, rows: Vec<(&str, Row)>) {
        let mut batch = WriteBatch::default();
        for (table, row) in rows {
            batch.push(table, row);
        }
        self.write_batch(db, batch);
    }

    /// Write `batch` to `db` on the `write` runtime, panicking on error.
    pub fn write_batch(&self, db: &str, batch: WriteBatch) {
        let (engine, db) = (Arc::clone(&self.engine), db.to_string());
        self.runtimes
            .block_on(
                RuntimeName::Write,
                async move { engine.write(&db, batch).await },
            )
            .expect("runtime")
            .expect("write");
    }

    /// Flush every table on the `flush` runtime, panicking on error.
    pub fn flush(&self) {
        let engine = Arc::clone(&self.engine);
        self.runtimes
            .block_on(RuntimeName::Flush, async move {
                engine.flush(&Scope::All).await
            })
            .expect("runtime")
            .expect("flush");
    }
}
