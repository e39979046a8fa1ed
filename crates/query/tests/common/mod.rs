//! A real engine on a temp dir, and a query engine over it.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use bulkhead_engine::{Engine, EngineConfig, FieldValue, Row, Scope, WriteBatch};
use bulkhead_query::{QueryConfig, QueryEngine, QueryError};
use bulkhead_runtime::store::IoObjectStore;
use bulkhead_runtime::{RuntimeConfig, RuntimeName, Runtimes};
use object_store::local::LocalFileSystem;

pub struct Db {
    pub runtimes: Arc<Runtimes>,
    pub engine: Arc<Engine>,
    pub query: Arc<QueryEngine>,
    _dir: tempfile::TempDir,
}

impl Db {
    pub fn open() -> Self {
        Self::open_with(QueryConfig::default())
    }

    pub fn open_with(query: QueryConfig) -> Self {
        Self::open_with_engine(query, |_| {})
    }

    /// Like [`Db::open_with`], with the engine's config adjusted by `tweak`.
    pub fn open_with_engine(query: QueryConfig, tweak: impl FnOnce(&mut EngineConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let runtimes = Runtimes::new(RuntimeConfig::for_parallelism(2)).unwrap();
        let objects = dir.path().join("objects");
        std::fs::create_dir_all(&objects).unwrap();
        let store = Arc::new(IoObjectStore::new(
            Arc::new(LocalFileSystem::new_with_prefix(&objects).unwrap()),
            runtimes.io().clone(),
        ));
        let mut config = EngineConfig::with_dir(dir.path());
        tweak(&mut config);
        let rt = Arc::clone(&runtimes);
        let engine = runtimes
            .block_on(RuntimeName::Io, async move {
                Engine::open(config, store, rt).await
            })
            .unwrap()
            .unwrap();
        let query =
            Arc::new(QueryEngine::new(Arc::clone(&engine), Arc::clone(&runtimes), query).unwrap());
        Self {
            runtimes,
            engine,
            query,
            _dir: dir,
        }
    }

    pub fn write(&self, db: &str, rows: Vec<(&str, Row)>) {
        let mut batch = WriteBatch::default();
        for (table, row) in rows {
            batch.push(table, row);
        }
        let (engine, db) = (Arc::clone(&self.engine), db.to_string());
        self.runtimes
            .block_on(
                RuntimeName::Write,
                async move { engine.write(&db, batch).await },
            )
            .unwrap()
            .unwrap();
    }

    pub fn flush(&self) {
        let engine = Arc::clone(&self.engine);
        self.runtimes
            .block_on(RuntimeName::Flush, async move {
                engine.flush(&Scope::All).await
            })
            .unwrap()
            .unwrap();
    }

    pub fn sql(&self, db: &str, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
        let (q, db, sql) = (Arc::clone(&self.query), db.to_string(), sql.to_string());
        self.runtimes
            .block_on(RuntimeName::Io, async move {
                q.sql(&db, &sql).await?.collect().await
            })
            .unwrap()
    }

    /// Query and pretty-print, panicking on error.
    pub fn table(&self, db: &str, sql: &str) -> String {
        let batches = self.sql(db, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        pretty_format_batches(&batches).unwrap().to_string()
    }
}

pub fn row(tags: &[(&str, &str)], fields: &[(&str, FieldValue)], time: i64) -> Row {
    Row {
        tags: tags
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        fields: fields
            .iter()
            .map(|(k, v)| ((*k).into(), v.clone()))
            .collect(),
        time,
    }
}

pub fn f(v: f64) -> FieldValue {
    FieldValue::F64(v)
}
