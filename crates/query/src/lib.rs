//! SQL over DataFusion, executed on the `query` bulkhead.
//!
//! Each Bulkhead database is a DataFusion schema in the `bulkhead` catalog, and each
//! table a [`datafusion::catalog::TableProvider`] over an engine snapshot (memtables +
//! SSTs, deduplicated by primary key). Time-range and tag filters are pushed down to
//! prune SSTs; `EXPLAIN` shows what was pruned. `system.tables`, `system.sst_files` and
//! `system.runtimes` expose live state. Plans run on `query`; the caller (HTTP or PG on
//! `io`) only receives finished batches (see [`exec`]).

mod capped;
mod catalog;
mod depth;
mod error;
pub mod exec;
mod functions;
#[doc(hidden)]
pub mod fuzzing;
mod pruning;
mod series_filter;
mod stats;
mod system;
mod table;
pub mod yielding;

use std::sync::Arc;

use bulkhead_engine::Engine;
use bulkhead_runtime::Runtimes;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};

pub use catalog::CATALOG;
pub use depth::{MAX_EXPR_DEPTH, MAX_OPERATORS, MAX_SET_OPERATIONS};
pub use error::{QueryError, Result};
pub use exec::QueryOutput;
pub use stats::QueryStats;

/// Settings of the query layer.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryConfig {
    /// Memory all running queries may hold together; a query over it fails cleanly.
    pub memory_limit: usize,
    /// Partitions DataFusion plans for (defaults to the `query` runtime's threads).
    pub target_partitions: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            memory_limit: 512 * 1024 * 1024,
            target_partitions: bulkhead_runtime::available_parallelism(),
        }
    }
}

/// Plans and runs SQL against the engine.
#[derive(Debug)]
pub struct QueryEngine {
    engine: Arc<Engine>,
    runtimes: Arc<Runtimes>,
    env: Arc<RuntimeEnv>,
    config: QueryConfig,
    stats: Arc<QueryStats>,
}

impl QueryEngine {
    pub fn new(engine: Arc<Engine>, runtimes: Arc<Runtimes>, config: QueryConfig) -> Result<Self> {
        // No spilling: the memory limit is a hard limit, and a query over it fails with
        // a clear "resources exhausted" error instead of filling a temp directory.
        let env = RuntimeEnvBuilder::new()
            .with_memory_limit(config.memory_limit, 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(QueryError::from)?;
        Ok(Self {
            engine,
            runtimes,
            env,
            config,
            stats: Arc::new(QueryStats::default()),
        })
    }

    pub fn stats(&self) -> &Arc<QueryStats> {
        &self.stats
    }

    /// A session whose default schema is `db` (unqualified table names resolve there).
    pub fn session(&self, db: &str) -> SessionContext {
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, db)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true)
            .with_target_partitions(self.config.target_partitions.max(1));
        let ctx = SessionContext::new_with_config_rt(config, Arc::clone(&self.env));
        ctx.register_catalog(
            CATALOG,
            Arc::new(catalog::BulkheadCatalog {
                engine: Arc::clone(&self.engine),
                runtimes: Arc::clone(&self.runtimes),
                stats: Arc::clone(&self.stats),
            }),
        );
        functions::register(&ctx);
        capped::register(&ctx, self.config.memory_limit);
        ctx
    }

    /// Plan and run `sql` with `db` as the default database, on the `query` runtime.
    pub async fn sql(&self, db: &str, sql: &str) -> Result<QueryOutput> {
        self.stats
            .queries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let result = exec::run_sql(&self.runtimes, self.session(db), sql.to_string()).await;
        if result.is_err() {
            self.stats
                .query_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }
}
