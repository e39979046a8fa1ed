//! A query engine over a [`TempEngine`]: what `bulkhead serve` wires, in process.

use std::ops::Deref;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use bulkhead_engine::EngineConfig;
use bulkhead_query::{QueryConfig, QueryEngine, QueryError};
use bulkhead_runtime::RuntimeName;

use crate::TempEngine;

/// An engine on a temp dir and the query layer over it. Derefs to the [`TempEngine`]
/// (`runtimes`, `engine`, `write`, `flush`).
pub struct TempDb {
    pub query: Arc<QueryEngine>,
    base: TempEngine,
}

impl Deref for TempDb {
    type Target = TempEngine;
    fn deref(&self) -> &TempEngine {
        &self.base
    }
}

impl TempDb {
    /// Default engine and query configs.
    pub fn open() -> Self {
        Self::open_with(QueryConfig::default())
    }

    /// The default engine under the query config `query`.
    pub fn open_with(query: QueryConfig) -> Self {
        Self::open_with_engine(query, |_| {})
    }

    /// Like [`TempDb::open_with`], with the engine's config adjusted by `tweak`.
    pub fn open_with_engine(query: QueryConfig, tweak: impl FnOnce(&mut EngineConfig)) -> Self {
        let base = TempEngine::open_with(tweak);
        let query = QueryEngine::new(Arc::clone(&base.engine), Arc::clone(&base.runtimes), query)
            .expect("query engine");
        Self {
            query: Arc::new(query),
            base,
        }
    }

    /// Run `sql` in `db` (planned on `io`, executed on `query`) and collect the batches.
    pub fn sql(&self, db: &str, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
        let (q, db, sql) = (Arc::clone(&self.query), db.to_string(), sql.to_string());
        self.runtimes
            .block_on(RuntimeName::Io, async move {
                q.sql(&db, &sql).await?.collect().await
            })
            .expect("runtime")
    }

    /// Query and pretty-print, panicking on error.
    pub fn table(&self, db: &str, sql: &str) -> String {
        let batches = self.sql(db, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        pretty_format_batches(&batches)
            .expect("pretty-print")
            .to_string()
    }
}
