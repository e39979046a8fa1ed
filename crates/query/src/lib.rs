//! SQL over DataFusion, executed on the `query` bulkhead.
//!
//! Each Bulkhead database is a DataFusion schema in the `bulkhead` catalog, and each
//! table a [`datafusion::catalog::TableProvider`] over an engine snapshot (memtables +
//! SSTs, deduplicated by primary key). Time-range and tag filters are pushed down to
//! prune SSTs; `EXPLAIN` shows what was pruned. `system.tables`, `system.sst_files` and
//! `system.runtimes` expose live state. Plans run on `query`; the caller (HTTP or PG on
//! `io`) only receives finished batches (see [`exec`]). The rollup maintainer
//! ([`rollup`]) runs its aggregate queries the same way, but on `compact` and in a
//! memory pool of its own, and writes their rows back through the engine.

mod applied_filters;
mod backend;
mod capped;
mod catalog;
mod ddl;
mod delete;
mod depth;
mod error;
pub mod exec;
mod field_filter;
mod functions;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod lastpoint;
mod options;
mod pg;
mod physical_template;
mod plan_cache;
mod pruning;
pub mod rollup;
mod run_agg;
mod series_filter;
mod stats;
mod system;
mod table;
pub mod yielding;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bulkhead_engine::Engine;
use bulkhead_runtime::{RuntimeName, Runtimes};
use datafusion::execution::TaskContext;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};

pub use catalog::CATALOG;
pub use depth::{MAX_EXPR_DEPTH, MAX_OPERATORS, MAX_SET_OPERATIONS};
pub use error::{QueryError, Result};
pub use exec::QueryOutput;
pub use options::DEFAULT_SCAN_TASKS_MIN_ROWS;
pub use pg::{PG_VERSION, pg_type_name, setting as pg_setting, version as pg_version};
pub use stats::QueryStats;

/// The session time zone: what `now()` and `timestamptz` values carry (the `time`
/// column is UTC too).
pub const TIME_ZONE: &str = "UTC";

/// Settings of the query layer, built by `bulkhead serve` from `limits.query_memory` and
/// the `query` runtime's threads (no section of the config file of its own).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryConfig {
    /// Memory all running queries may hold together; a query over it fails cleanly
    /// (default [`bulkhead_frontend::limits::DEFAULT_QUERY_MEMORY`], as the server's).
    pub memory_limit: usize,
    /// Partitions DataFusion plans for (defaults to the `query` runtime's threads).
    pub target_partitions: usize,
    /// Optimized plans kept by statement shape ([`plan_cache`]; 0 turns it off).
    pub plan_cache_entries: usize,
    /// Time groups one large scan decodes at once on tasks of its own
    /// ([`bulkhead_engine::ScanRequest::decode_tasks`]; 0 = none); a session may change
    /// it with `SET bulkhead.scan_tasks = n`.
    pub scan_tasks: usize,
    /// Scans estimated to read fewer rows decode in their query's task whatever
    /// `scan_tasks` says (`SET bulkhead.scan_tasks_min_rows = n`).
    pub scan_tasks_min_rows: u64,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            memory_limit: usize::try_from(bulkhead_frontend::limits::DEFAULT_QUERY_MEMORY)
                .unwrap_or(usize::MAX),
            target_partitions: bulkhead_runtime::available_parallelism(),
            plan_cache_entries: plan_cache::DEFAULT_PLAN_CACHE_ENTRIES,
            scan_tasks: DEFAULT_SCAN_TASKS,
            scan_tasks_min_rows: options::DEFAULT_SCAN_TASKS_MIN_ROWS,
        }
    }
}

/// [`QueryConfig::scan_tasks`] unless configured.
pub const DEFAULT_SCAN_TASKS: usize = 2;

/// Plans and runs SQL against the engine.
#[derive(Debug)]
pub struct QueryEngine {
    engine: Arc<Engine>,
    runtimes: Arc<Runtimes>,
    /// The memory pool and runtime of user queries.
    pool: Pool,
    stats: Arc<QueryStats>,
    /// Whether [`lastpoint::LastpointRule`] runs (tests turn it off to compare).
    lastpoint: AtomicBool,
    /// Whether [`run_agg::RunAggregateRule`] runs (tests turn it off to compare).
    run_aggregate: Arc<AtomicBool>,
    /// Whether filter conjuncts the engine scan already applied are dropped before a
    /// query runs (see `applied_filters`; tests turn it off to compare).
    drop_applied_filters: AtomicBool,
    /// The object-store block cache, shown as `system.cache`.
    cache: Option<bulkhead_runtime::store::CachedStore>,
    pg: Arc<pg::PgCompat>,
    /// The rollups' progress, shown as `system.rollups` (empty without rollups).
    rollups: Arc<rollup::RollupBoard>,
    /// Built sessions by (database, flavor, lastpoint rule on): building one (every
    /// built-in function, the rules, the catalog, Bulkhead's functions) costs more than
    /// planning a small query, so each query starts from a clone of a built one.
    states: Mutex<HashMap<(String, Flavor, bool), Arc<BuiltSession>>>,
    /// Optimized plans by statement shape, for the plain flavor.
    plans: Arc<plan_cache::PlanCache>,
}

/// Built sessions kept at most; past it the map starts over (databases are few).
const MAX_CACHED_STATES: usize = 64;

/// Which SQL a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Flavor {
    /// DataFusion's SQL (HTTP, InfluxQL's translation, ...).
    #[default]
    Plain,
    /// A PostgreSQL client's: `pg_catalog`, PostgreSQL's functions and the rewriting
    /// of PostgreSQL-only syntax (see `crate::pg`).
    Postgres,
}

impl QueryEngine {
    pub fn new(engine: Arc<Engine>, runtimes: Arc<Runtimes>, config: QueryConfig) -> Result<Self> {
        let pool = Pool::new(
            config.memory_limit,
            RuntimeName::Query,
            config.target_partitions,
            options::BulkheadOptions::new(config.scan_tasks, config.scan_tasks_min_rows),
        )?;
        let stats = Arc::new(QueryStats::default());
        let rollups = Arc::new(rollup::RollupBoard::default());
        let base = Arc::new(catalog::BulkheadCatalog {
            engine: Arc::clone(&engine),
            runtimes: Arc::clone(&runtimes),
            stats: Arc::clone(&stats),
            cache: None,
            pg_catalog: None,
            rollups: Arc::clone(&rollups),
        });
        let pg = Arc::new(pg::PgCompat::new(base).map_err(QueryError::from)?);
        Ok(Self {
            engine,
            runtimes,
            pool,
            stats,
            pg,
            rollups,
            lastpoint: AtomicBool::new(true),
            run_aggregate: Arc::new(AtomicBool::new(true)),
            drop_applied_filters: AtomicBool::new(true),
            cache: None,
            states: Mutex::new(HashMap::new()),
            plans: Arc::new(plan_cache::PlanCache::new(config.plan_cache_entries)),
        })
    }

    /// Turn the lastpoint fast path (latest-row aggregates read only each series'
    /// latest row) on or off for sessions created from now on; on by default. Tests
    /// compare its answers with the full scan's.
    pub fn set_lastpoint_fast_path(&self, on: bool) {
        self.lastpoint.store(on, Ordering::Relaxed);
    }

    /// Turn run aggregation (time-bucket `GROUP BY`s folded run by run, see
    /// `run_agg`) on or off for queries planned from now on; on by default. Tests
    /// compare its answers with the plain aggregate's.
    pub fn set_run_aggregate(&self, on: bool) {
        self.run_aggregate.store(on, Ordering::Relaxed);
    }

    pub fn stats(&self) -> &Arc<QueryStats> {
        &self.stats
    }

    /// Show `cache`'s state as `system.cache`.
    pub fn with_cache(mut self, cache: Option<bulkhead_runtime::store::CachedStore>) -> Self {
        self.cache = cache;
        self.states_lock().clear(); // their catalogs show the old cache
        self
    }

    /// A session whose default schema is `db` (unqualified table names resolve there).
    pub fn session(&self, db: &str) -> SessionContext {
        self.session_with(db, Flavor::Plain)
    }

    /// A session whose default schema is `db`, speaking `flavor`: a clone of the one
    /// built for the first query of (`db`, `flavor`), so statements that change a
    /// session (`SET ...`) never leak into another query.
    pub fn session_with(&self, db: &str, flavor: Flavor) -> SessionContext {
        SessionContext::new_with_state(self.query_session(db, flavor).state)
    }

    /// What one query of `db` in `flavor` plans and runs in: a copy of the built
    /// session's state, and the task context built with it (shared by every query of
    /// the session, since neither its configuration nor its functions change).
    fn query_session(&self, db: &str, flavor: Flavor) -> exec::QuerySession {
        let built = self.built_session(db, flavor);
        if self.drop_applied_filters.load(Ordering::Relaxed) {
            return exec::QuerySession::new(&built.state, Some(Arc::clone(&built.task)));
        }
        // Compared with the plain path: scans leave every field comparison to the
        // filter above them (see `field_filter`).
        let mut state = built.state.clone();
        state
            .config_mut()
            .options_mut()
            .execution
            .parquet
            .pushdown_filters = false;
        exec::QuerySession::new(&state, None)
    }

    /// The built session of `db` and `flavor`, built now if it is not cached.
    fn built_session(&self, db: &str, flavor: Flavor) -> Arc<BuiltSession> {
        let lastpoint = self.lastpoint.load(Ordering::Relaxed);
        let key = (db.to_string(), flavor, lastpoint);
        if let Some(built) = self.states_lock().get(&key).cloned() {
            return built;
        }
        let ctx = self.build_session(db, flavor, lastpoint, &self.pool);
        let built = Arc::new(BuiltSession::new(ctx.state()));
        let mut states = self.states_lock();
        if states.len() >= MAX_CACHED_STATES {
            states.clear();
        }
        states.insert(key, Arc::clone(&built));
        built
    }

    fn states_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, Flavor, bool), Arc<BuiltSession>>> {
        // A panic while holding the lock left the map whole (inserts and clears only).
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Build a session from nothing: the slow path of [`Self::session_with`].
    fn build_session(
        &self,
        db: &str,
        flavor: Flavor,
        lastpoint: bool,
        pool: &Pool,
    ) -> SessionContext {
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, db)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true)
            .with_target_partitions(pool.partitions.max(1))
            .with_option_extension(pool.options.clone());
        // `now()`, `timestamptz` literals and casts keep a time zone, UTC like the
        // `time` column (DataFusion's default is none: they came back as naive
        // timestamps, `timestamp` rather than `timestamptz` over PG).
        config.options_mut().execution.time_zone = Some(TIME_ZONE.to_owned());
        // Scans apply `field <op> constant` conjuncts inside their Parquet decoder
        // (`field_filter`); DataFusion's own Parquet reader is not used.
        config.options_mut().execution.parquet.pushdown_filters = true;
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(Arc::clone(&pool.env))
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(run_agg::RunAggregateRule {
                enabled: Arc::clone(&self.run_aggregate),
            }));
        if flavor == Flavor::Postgres {
            // `regclass`, `regproc`, `oid`, ... as cast targets.
            state = state.with_type_planner(Arc::new(
                datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner,
            ));
        }
        let ctx = SessionContext::new_with_state(state.build());
        ctx.register_catalog(
            CATALOG,
            Arc::new(catalog::BulkheadCatalog {
                engine: Arc::clone(&self.engine),
                runtimes: Arc::clone(&self.runtimes),
                stats: Arc::clone(&self.stats),
                cache: self.cache.clone(),
                pg_catalog: (flavor == Flavor::Postgres).then(|| self.pg.schema()),
                rollups: Arc::clone(&self.rollups),
            }),
        );
        functions::register(&ctx);
        if flavor == Flavor::Postgres {
            self.pg.register(&ctx, db);
        }
        if lastpoint {
            ctx.add_optimizer_rule(Arc::new(lastpoint::LastpointRule));
        }
        capped::register(&ctx, pool.memory_limit);
        ctx
    }

    /// Plan and run `sql` with `db` as the default database, on the `query` runtime.
    /// Turn the dropping of filter conjuncts that the engine scan already applied (its
    /// time range, tag equalities, field comparisons; see `applied_filters`) on or off
    /// for queries run from now on; on by default. Off, scans do not apply field
    /// comparisons either: tests compare its answers with the full filter's.
    pub fn set_drop_applied_filters(&self, on: bool) {
        self.drop_applied_filters.store(on, Ordering::Relaxed);
    }

    pub async fn sql(&self, db: &str, sql: &str) -> Result<QueryOutput> {
        self.sql_with(db, sql, Flavor::Plain).await
    }

    /// Plan and run `sql`, written in `flavor`, with `db` as the default database.
    pub async fn sql_with(&self, db: &str, sql: &str, flavor: Flavor) -> Result<QueryOutput> {
        self.stats.queries.fetch_add(1, Ordering::Relaxed);
        let result = match ddl::try_run(self, db, sql).await {
            Some(result) => result,
            None => {
                let cached = Some(plan_cache::CachedPlans {
                    cache: Arc::clone(&self.plans),
                    db: db.to_string(),
                    lastpoint: self.lastpoint.load(Ordering::Relaxed),
                    flavor,
                    run_aggregate: Arc::clone(&self.run_aggregate),
                    drop_applied_filters: self.drop_applied_filters.load(Ordering::Relaxed),
                    stats: Arc::clone(&self.stats),
                });
                exec::run_sql(
                    &self.runtimes,
                    self.pool.runtime,
                    self.query_session(db, flavor),
                    sql.to_string(),
                    (flavor == Flavor::Postgres).then(|| Arc::clone(&self.pg)),
                    cached,
                    self.drop_applied_filters.load(Ordering::Relaxed),
                )
                .await
            }
        };
        if result.is_err() {
            self.stats.query_errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

/// A session built for one database (and flavor): what every query of it starts from.
#[derive(Debug)]
pub(crate) struct BuiltSession {
    state: SessionState,
    /// Built once from `state`: a task context copies the session's function
    /// registries, which is a good part of a small query's fixed cost.
    task: Arc<TaskContext>,
}

impl BuiltSession {
    fn new(state: SessionState) -> Self {
        let task = Arc::new(TaskContext::from(&state));
        Self { state, task }
    }
}

/// A memory pool, a runtime and a partition count for queries: user queries have one
/// (on `query`), rollups another (on `compact`), so neither takes the other's memory.
#[derive(Debug)]
pub(crate) struct Pool {
    env: Arc<RuntimeEnv>,
    memory_limit: usize,
    runtime: RuntimeName,
    partitions: usize,
    /// `bulkhead.*` of its sessions ([`QueryConfig::scan_tasks`]).
    options: options::BulkheadOptions,
    /// Built sessions by database, for [`QueryEngine::sql_in_pool`] (rollups query
    /// a few databases again and again; building a session is the slow part).
    sessions: Mutex<HashMap<String, Arc<BuiltSession>>>,
}

impl Pool {
    /// Queries on `runtime` that may hold `memory_limit` bytes together.
    pub(crate) fn new(
        memory_limit: usize,
        runtime: RuntimeName,
        partitions: usize,
        options: options::BulkheadOptions,
    ) -> Result<Self> {
        // No spilling: the memory limit is a hard limit, and a query over it fails with
        // a clear "resources exhausted" error instead of filling a temp directory.
        let env = RuntimeEnvBuilder::new()
            .with_memory_limit(memory_limit, 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(QueryError::from)?;
        Ok(Self {
            env,
            memory_limit,
            runtime,
            partitions,
            options,
            sessions: Mutex::new(HashMap::new()),
        })
    }
}

impl QueryEngine {
    /// Run `sql` (a query; no DDL) in `db` on `pool`'s runtime and memory.
    pub(crate) async fn sql_in_pool(
        &self,
        pool: &Pool,
        db: &str,
        sql: &str,
    ) -> Result<QueryOutput> {
        let built = {
            let sessions = pool.sessions.lock().unwrap_or_else(|e| e.into_inner());
            sessions.get(db).cloned()
        };
        let built = match built {
            Some(built) => built,
            None => {
                let ctx = self.build_session(db, Flavor::Plain, true, pool);
                let built = Arc::new(BuiltSession::new(ctx.state()));
                let mut sessions = pool.sessions.lock().unwrap_or_else(|e| e.into_inner());
                if sessions.len() >= MAX_CACHED_STATES {
                    sessions.clear();
                }
                sessions.insert(db.to_string(), Arc::clone(&built));
                built
            }
        };
        exec::run_sql(
            &self.runtimes,
            pool.runtime,
            exec::QuerySession::new(&built.state, Some(Arc::clone(&built.task))),
            sql.to_string(),
            None,
            None,
            true,
        )
        .await
    }

    /// The rollups' progress board (`system.rollups`).
    pub fn rollup_board(&self) -> &Arc<rollup::RollupBoard> {
        &self.rollups
    }

    /// The engine this layer reads.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The bulkheads.
    pub fn runtimes(&self) -> &Arc<Runtimes> {
        &self.runtimes
    }
}
