//! `bulkhead serve`: config -> runtimes -> object store -> engine -> HTTP API.
//!
//! Startup order: load and validate the config (flags > env > file > defaults), build the
//! bulkheads, open the object store (wrapped so its IO runs on `io`), open the engine
//! (WAL replay), then bind and serve HTTP (and PG, Flight SQL) on `io`. Shutdown order on
//! SIGINT/SIGTERM: stop accepting, let in-flight requests finish, then close the engine,
//! which syncs the WAL, so every acknowledged write is durable before the process exits 0.

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use bulkhead_engine::{
    EngineConfig, Error as EngineError, FieldType, ROLE_KEY, Scope, WriteBatch, arrow_type,
};
use bulkhead_runtime::latency::HistogramSnapshot;
use bulkhead_runtime::{RuntimeName, Runtimes};
use bulkhead_server::{
    HttpServer, ServeArgs, ServerConfig, ServerState, TableColumns, WriteBackend,
};

/// Flags of `bulkhead serve`; every option of the config file has one.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeCmd {
    #[command(flatten)]
    args: ServeArgs,
}

pub(crate) fn run(cmd: ServeCmd) -> anyhow::Result<()> {
    let config = ServerConfig::load(&cmd.args)?;
    // Every connection is a descriptor: a soft limit of 1024 made the server
    // unreachable with 1,100 idle connections although the hard limit allows more.
    if let Some((old, new)) = bulkhead_runtime::raise_open_files_limit() {
        tracing::info!(old, new, "raised the open-files soft limit (RLIMIT_NOFILE)");
    }
    crate::allocator::configure(config.runtime.memory_purge_delay, config.runtime.huge_pages)
        .context("starting the memory purge thread")?;
    let runtimes = Runtimes::new(config.runtime.clone()).context("building the runtimes")?;
    tracing::info!(
        mode = %config.runtime.mode,
        data_dir = %config.storage.data_dir.display(),
        wal_dir = %config.storage.wal_dir().display(),
        object_store = %config.storage.object_store_url(),
        "starting bulkhead"
    );

    let url = config.storage.object_store_url();
    let cache = crate::store::cache_config(&config.cache, &config.storage.data_dir, &url);
    let opened = crate::store::open(&url, &config.s3, cache, &runtimes)?;
    let store = Arc::clone(&opened.store);
    let probe_store = Arc::clone(&store);
    let allow_unconditional = config.storage.unsafe_no_conditional_put;
    runtimes.block_on(RuntimeName::Io, async move {
        crate::store::check(probe_store.as_ref(), &url, allow_unconditional).await
    })??;
    // The `[[rollup]]` entries, checked when the config was loaded.
    let rollups = config.rollup.clone();
    let engine_config = engine_config(&config, &rollups);
    std::fs::create_dir_all(&engine_config.wal_dir).with_context(|| {
        format!(
            "creating the WAL directory {}",
            engine_config.wal_dir.display()
        )
    })?;
    let engine = runtimes
        .block_on(
            RuntimeName::Io,
            bulkhead_engine::Engine::open(engine_config, store, Arc::clone(&runtimes)),
        )?
        .context("opening the storage engine")?;
    opened.arm_faults();
    let writes = Arc::new(EngineBackend {
        engine: Arc::clone(&engine),
        cache: opened.cache.clone(),
    });

    let query_engine = bulkhead_query::QueryEngine::new(
        Arc::clone(&engine),
        Arc::clone(&runtimes),
        bulkhead_query::QueryConfig {
            memory_limit: config.limits.query_memory.as_usize(),
            // One partition by default: with as many partitions as query threads, a
            // heavy join's streams held every thread and a short query's sub-tasks
            // waited seconds for it to end (docs/reliability.md, "Fairness").
            target_partitions: config.limits.query_partitions.max(1),
            plan_cache_entries: config.limits.query_plan_cache,
            scan_tasks: config.limits.scan_tasks,
            scan_tasks_min_rows: bulkhead_query::DEFAULT_SCAN_TASKS_MIN_ROWS,
        },
    )
    .context("starting the query layer")?
    .with_cache(opened.cache.clone());
    let query_engine = Arc::new(query_engine);
    let rollups = bulkhead_query::rollup::Rollups::start(
        Arc::clone(&query_engine),
        rollups,
        config.compaction.rollups.clone(),
    )
    .context("starting the rollups")?;
    let queries = query_engine;
    let state = ServerState::new(
        &config,
        Arc::clone(&runtimes),
        Arc::clone(&writes) as Arc<dyn WriteBackend>,
        Arc::clone(&queries) as Arc<dyn bulkhead_server::QueryBackend>,
    );

    // The PostgreSQL wire listener: bound on `io` (its socket registers with io's
    // driver); its queries run on `query` through the same backend as HTTP.
    let pg = if config.pg.enabled {
        let token = config.auth.token().map(str::to_owned);
        let backend = Arc::clone(&queries) as Arc<dyn bulkhead_server::QueryBackend>;
        let server = runtimes
            .block_on(
                RuntimeName::Io,
                bulkhead_pgwire::PgServer::bind(
                    config.pg.addr,
                    token,
                    Arc::clone(&runtimes),
                    backend,
                ),
            )?
            .context("starting the PostgreSQL wire listener")?
            .with_limits(bulkhead_pgwire::PgLimits {
                query_timeout: config.limits.query_timeout.get(),
                trips: Arc::clone(&state.trips),
                max_connections: config.pg.max_connections,
                startup_timeout: config.pg.startup_timeout.get(),
                idle_timeout: Some(config.pg.idle_timeout.get()).filter(|d| !d.is_zero()),
                tcp_keepalive: config.limits.tcp_keepalive.get(),
                auth_failure_delay: config.auth.failure_delay.get(),
                connections: Arc::clone(&state.connections),
            });
        let server = if config.pg.tls_cert.is_empty() {
            server
        } else {
            server
                .with_tls(&config.pg.tls_cert, &config.pg.tls_key)
                .context("starting the PostgreSQL wire listener")?
        };
        Some(runtimes.spawn_io(server.serve(bulkhead_server::shutdown_signal())))
    } else {
        None
    };

    let flight = if config.flight_sql.enabled {
        Some(crate::flight::start(
            &config,
            &runtimes,
            &queries,
            &state.trips,
            &state.connections,
        )?)
    } else {
        None
    };

    let addr = config.http.addr;
    let drain = config.http.shutdown_timeout.get();
    let served = runtimes.block_on(RuntimeName::Io, async move {
        let server = HttpServer::bind(addr, state).await?;
        server
            .serve(bulkhead_server::shutdown_signal(), drain)
            .await
    })?;

    if let Some(pg) = pg {
        pg.abort();
    }
    if let Some(flight) = flight {
        flight.abort();
    }
    // No rollup writes after the engine closes (a bucket cut short is re-run at start).
    runtimes.block_on(RuntimeName::Io, rollups.stop())?;
    // Servers drained (or failed to start): close the engine either way so the WAL is
    // synced, then report the server error if there was one.
    let closed = runtimes.block_on(RuntimeName::Io, async move { writes.close().await })?;
    served?;
    closed.context("closing the storage engine (WAL sync)")?;
    tracing::info!("bulkhead stopped cleanly");
    Ok(())
}

/// The engine's config: its sections are the file's, as they are; only the paths are
/// derived, and rollup tables get their own retention.
fn engine_config(
    config: &ServerConfig,
    rollups: &[bulkhead_server::config::RollupSpec],
) -> EngineConfig {
    // A rollup table keeps its own retention, forever by default (a zero override
    // exempts it from `retention.ttl`); `validate` refused a clashing override.
    let mut retention = config.retention.clone();
    for r in rollups {
        retention
            .overrides
            .insert(r.qualified_name(), r.retention.unwrap_or_default());
    }
    EngineConfig {
        data_dir: config.storage.data_dir.clone(),
        wal_dir: config.storage.wal_dir(),
        wal: config.wal.clone(),
        memtable: config.memtable.clone(),
        sst: config.storage.sst.clone(),
        compaction: config.compaction.engine.clone(),
        retention,
        limits: config.limits.catalog.clone(),
        ..EngineConfig::default()
    }
}

/// The storage engine as the HTTP API's [`WriteBackend`].
struct EngineBackend {
    engine: Arc<bulkhead_engine::Engine>,
    cache: Option<bulkhead_runtime::store::CachedStore>,
}

#[async_trait]
impl WriteBackend for EngineBackend {
    async fn write(&self, db: &str, batch: WriteBatch) -> Result<(), EngineError> {
        self.engine.write(db, batch).await
    }

    async fn flush(&self, scope: Scope) -> Result<(), EngineError> {
        self.engine.flush(&scope).await
    }

    async fn delete(
        &self,
        db: &str,
        req: bulkhead_engine::DeleteRequest,
    ) -> Result<bulkhead_engine::DeleteSummary, EngineError> {
        self.engine.delete(db, req).await
    }

    async fn compact(&self, scope: Scope, rewrite: bool) -> Result<(), EngineError> {
        let summary = if rewrite {
            self.engine.rewrite(&scope).await?
        } else {
            self.engine.compact(&scope).await?
        };
        tracing::info!(?scope, rewrite, ?summary, "manual compaction finished");
        Ok(())
    }

    fn table_columns(&self, db: &str, table: &str) -> Option<TableColumns> {
        let schema = self.engine.table_schema(db, table)?;
        let types = [
            FieldType::F64,
            FieldType::I64,
            FieldType::U64,
            FieldType::Bool,
            FieldType::Str,
        ];
        let mut columns = TableColumns::default();
        for field in schema.fields() {
            match field.metadata().get(ROLE_KEY).map(String::as_str) {
                Some("tag") => {
                    columns.tags.insert(field.name().clone());
                }
                Some("field") => {
                    if let Some(ty) = types
                        .into_iter()
                        .find(|t| arrow_type(*t) == *field.data_type())
                    {
                        columns.fields.insert(field.name().clone(), ty);
                    }
                }
                _ => {}
            }
        }
        Some(columns)
    }

    fn write_stages(&self) -> Vec<(&'static str, HistogramSnapshot)> {
        self.engine.write_stages()
    }

    fn metrics_text(&self) -> String {
        let mut text = crate::engine_metrics::render(&self.engine.stats());
        if let Some(cache) = &self.cache {
            text.push_str(&cache.stats().prometheus());
        }
        text
    }

    fn failing_flushes(&self) -> Vec<bulkhead_server::FailingFlush> {
        self.engine
            .stats()
            .tables
            .into_iter()
            .filter(|t| t.consecutive_flush_failures > 0)
            .map(|t| bulkhead_server::FailingFlush {
                db: t.db,
                table: t.table,
                consecutive_failures: t.consecutive_flush_failures,
                last_error: t.last_flush_error.unwrap_or_default(),
                parked: t.parked,
            })
            .collect()
    }

    async fn close(&self) -> Result<(), EngineError> {
        self.engine.close().await
    }
}
