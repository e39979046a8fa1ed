//! The HTTP API: routes, shared state, binding, and graceful shutdown.
//!
//! Handlers run on the `io` runtime (axum is served from there). Anything CPU-heavy is
//! handed off: body decompression, line-protocol parsing and remote-write decoding to
//! `write`, SQL planning, execution and result encoding to `query`. Shutdown order (see
//! [`HttpServer::serve`]): stop accepting, let in-flight requests finish, return; the
//! caller then closes the write backend so the WAL is synced before the process exits.

mod admission;
mod auth;
mod body;
mod delete;
pub(crate) mod encode;
mod gzip;
mod listener;
mod metrics;
mod ops;
mod prom;
mod prom_api;
pub(crate) mod sql;
mod write;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use bulkhead_runtime::Runtimes;

use crate::backend::{QueryBackend, WriteBackend};
use crate::config::{HttpConfig, LimitsConfig, ServerConfig};
use crate::error::ServerError;

pub use metrics::HttpMetrics;

/// Everything a handler needs, shared by all requests.
pub struct ServerState {
    pub runtimes: Arc<Runtimes>,
    pub writes: Arc<dyn WriteBackend>,
    pub queries: Arc<dyn QueryBackend>,
    pub limits: LimitsConfig,
    /// `None`: no auth.
    pub token: Option<String>,
    pub metrics: HttpMetrics,
    /// Budget of write request bytes in flight (`limits.max_inflight_write_bytes`).
    pub(crate) write_admission: admission::WriteAdmission,
    /// InfluxQL's `CREATE DATABASE` bookkeeping (`/query`).
    pub(crate) influxql: crate::influxql::InfluxqlState,
    /// Limits that tripped, HTTP and PG (shared with the PG server).
    pub trips: Arc<crate::limits::LimitTrips>,
    /// Open and accepted connections, HTTP and PG (shared with the PG server).
    pub connections: Arc<crate::net::ConnectionCounts>,
    /// `[http]`: the listener's connection limits and TLS files.
    pub http: HttpConfig,
    /// `auth.failure_delay`: how long a wrong token waits for its 401.
    pub auth_failure_delay: Duration,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("limits", &self.limits)
            .field("auth", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerState {
    pub fn new(
        config: &ServerConfig,
        runtimes: Arc<Runtimes>,
        writes: Arc<dyn WriteBackend>,
        queries: Arc<dyn QueryBackend>,
    ) -> Arc<Self> {
        Arc::new(Self {
            runtimes,
            writes,
            queries,
            limits: config.limits.clone(),
            token: config.auth.token().map(str::to_string),
            metrics: HttpMetrics::default(),
            write_admission: admission::WriteAdmission::new(
                config.limits.max_inflight_write_bytes.as_u64(),
            ),
            influxql: Default::default(),
            trips: Default::default(),
            connections: Default::default(),
            http: config.http.clone(),
            auth_failure_delay: config.auth.failure_delay.get(),
        })
    }
}

/// The API's routes, with auth and request metrics.
pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/api/v2/write", post(write::write_v2))
        .route("/api/v2/delete", post(delete::delete_v2))
        .route("/write", post(write::write_v1))
        .route("/api/v1/prom/write", post(prom::prom_write))
        .route(
            "/api/v1/sql",
            get(sql::sql_get)
                .post(sql::sql_post)
                .layer(middleware::from_fn_with_state(
                    Arc::clone(&state),
                    gzip::compress,
                )),
        )
        .route(
            "/query",
            get(crate::influxql::query_get).post(crate::influxql::query_post),
        )
        .route("/api/v1/flush", post(ops::flush))
        .route("/api/v1/compact", post(ops::compact))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/ping", get(ops::ping))
        .route("/metrics", get(ops::metrics))
        .route("/debug/bulkheads", get(ops::debug_bulkheads))
        .route("/debug/latency", get(ops::debug_latency))
        .merge(prom_api::routes())
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::require_token,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            metrics::track,
        ))
        // Bodies are read by `body::read_limited` against `limits.max_body_size`.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// Read a request body under `limits.max_body_size` (for handlers outside this module).
pub(crate) async fn read_body(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    state: &ServerState,
) -> Result<bytes::Bytes, ServerError> {
    body::read_limited(state, headers, body, state.limits.max_body_size.as_u64()).await
}

/// A bound (not yet serving) HTTP listener.
pub struct HttpServer {
    listener: tokio::net::TcpListener,
    state: Arc<ServerState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("addr", &self.listener.local_addr().ok())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl HttpServer {
    /// Bind `addr`. Must be called on the `io` runtime (the socket registers with its
    /// IO driver). Warns loudly when a non-loopback address is bound without a token,
    /// and loads the TLS certificate and key when `http.tls_cert` is set.
    pub async fn bind(addr: SocketAddr, state: Arc<ServerState>) -> Result<Self, ServerError> {
        let tls = if state.http.tls_cert.is_empty() {
            None
        } else {
            let acceptor = crate::net::tls::acceptor(
                &state.http.tls_cert,
                &state.http.tls_key,
                &[b"http/1.1"],
            )
            .map_err(|message| ServerError::Config {
                message: format!("http.tls_cert / http.tls_key: {message}"),
            })?;
            Some(acceptor)
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind {
                what: "HTTP API",
                addr,
                source,
            })?;
        if !addr.ip().is_loopback() && state.token.is_none() {
            tracing::warn!(
                %addr,
                "!!! HTTP API bound to a non-loopback address WITHOUT an auth token: anyone who \
                 can reach it can write, query and delete data. Set --auth-token / \
                 BULKHEAD_AUTH_TOKEN / [auth] token. !!!"
            );
        }
        Ok(Self {
            listener,
            state,
            tls,
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        Ok(self.listener.local_addr()?)
    }

    /// Serve until `shutdown` resolves, then stop accepting and wait up to `drain` for
    /// in-flight requests to finish. The caller closes the write backend afterwards;
    /// a request still running then fails (the backend is closed) and is never
    /// acknowledged, so the drain bound cannot cost an acknowledged write.
    pub async fn serve<F>(self, shutdown: F, drain: Duration) -> Result<(), ServerError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let addr = self.local_addr()?;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        tracing::info!(%addr, scheme, "HTTP API listening");
        let (fired_tx, fired_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            let _ = fired_tx.send(());
        };
        let http = &self.state.http;
        let settings = listener::Settings {
            gate: crate::net::ConnectionGate::new(
                crate::limits::Protocol::Http,
                http.max_connections,
                Arc::clone(&self.state.connections),
                Arc::clone(&self.state.trips),
            ),
            timeouts: crate::net::Timeouts {
                startup: http.header_read_timeout.get(),
                receiving: Some(http.header_read_timeout.get()),
                idle: Some(http.idle_timeout.get()).filter(|d| !d.is_zero()),
            },
            keepalive: self.state.limits.tcp_keepalive.get(),
            tls: self.tls,
            trips: Arc::clone(&self.state.trips),
        };
        let serving = listener::run(self.listener, router(self.state), settings, signal);
        let deadline = async move {
            match fired_rx.await {
                Ok(()) => tokio::time::sleep(drain).await,
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = serving => {
                tracing::info!(%addr, "HTTP API stopped; in-flight requests finished");
            }
            () = deadline => {
                tracing::warn!(%addr, ?drain, "in-flight requests did not finish in time; shutting down anyway");
            }
        }
        Ok(())
    }
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM. Must run on the `io` runtime.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
    }
}

#[cfg(test)]
mod tests;
