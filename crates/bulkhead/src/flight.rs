//! Starting the Arrow Flight SQL listener of `bulkhead serve`: bound and served on `io`,
//! its queries through the same backend (and so the same `query` runtime, limits and
//! memory pool) as HTTP and PG, its tripped limits counted with theirs.

use std::sync::Arc;

use anyhow::Context;
use bulkhead_runtime::{RuntimeName, Runtimes};
use bulkhead_server::ServerConfig;
use bulkhead_server::limits::LimitTrips;
use bulkhead_server::net::ConnectionCounts;
use tokio::task::JoinHandle;

use bulkhead_query::QueryEngine;

/// Bind `[flight_sql] addr` and serve it until the shutdown signal.
pub(crate) fn start(
    config: &ServerConfig,
    runtimes: &Arc<Runtimes>,
    queries: &Arc<QueryEngine>,
    trips: &Arc<LimitTrips>,
    connections: &Arc<ConnectionCounts>,
) -> anyhow::Result<JoinHandle<Result<(), bulkhead_flightsql::FlightSqlError>>> {
    let options = bulkhead_flightsql::FlightSqlOptions {
        token: config.auth.token().map(str::to_owned),
        database: Some(config.flight_sql.database.clone()),
        query_timeout: config.limits.query_timeout.get(),
        auth_failure_delay: config.auth.failure_delay.get(),
        trips: Arc::clone(trips),
        max_connections: config.flight_sql.max_connections,
        startup_timeout: config.flight_sql.startup_timeout.get(),
        idle_timeout: Some(config.flight_sql.idle_timeout.get()).filter(|d| !d.is_zero()),
        tcp_keepalive: config.limits.tcp_keepalive.get(),
        connections: Arc::clone(connections),
    };
    let backend = Arc::clone(queries) as Arc<dyn bulkhead_server::QueryBackend>;
    let server = runtimes
        .block_on(
            RuntimeName::Io,
            bulkhead_flightsql::FlightSqlServer::bind(
                config.flight_sql.addr,
                options,
                Arc::clone(runtimes),
                backend,
            ),
        )?
        .context("starting the Arrow Flight SQL listener")?;
    let server = if config.flight_sql.tls_cert.is_empty() {
        let tls_elsewhere = !config.http.tls_cert.is_empty()
            || (config.pg.enabled && !config.pg.tls_cert.is_empty());
        if tls_elsewhere {
            tracing::warn!(
                "HTTP or PG is served over TLS but Flight SQL is not: its token, queries \
                 and results travel in cleartext; set flight_sql.tls_cert and \
                 flight_sql.tls_key"
            );
        }
        server
    } else {
        server
            .with_tls(&config.flight_sql.tls_cert, &config.flight_sql.tls_key)
            .context("starting the Arrow Flight SQL listener")?
    };
    // Logged before HTTP starts, so a client that waited for `/health` finds the port
    // (with `--flight-sql-addr 127.0.0.1:0`) in the log.
    tracing::info!(addr = %server.local_addr()?, tls = server.tls(), "Arrow Flight SQL listening");
    Ok(runtimes.spawn_io(server.serve(bulkhead_server::shutdown_signal())))
}
