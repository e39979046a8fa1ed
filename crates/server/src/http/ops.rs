//! Admin and ops endpoints: flush, compact, health, metrics, the bulkheads' debug view.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{Uri, header};
use axum::response::IntoResponse;
use bulkhead_engine::Scope;
use bulkhead_runtime::latency::HistogramSnapshot;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ServerState;
use crate::error::ServerError;

#[derive(Debug, Deserialize)]
pub(super) struct ScopeParams {
    db: Option<String>,
    table: Option<String>,
}

impl ScopeParams {
    fn scope(self) -> Result<Scope, ServerError> {
        let db = self.db.filter(|s| !s.is_empty());
        let table = self.table.filter(|s| !s.is_empty());
        match (db, table) {
            (None, None) => Ok(Scope::All),
            (Some(db), None) => Ok(Scope::Database(db)),
            (Some(db), Some(table)) => Ok(Scope::Table { db, table }),
            (None, Some(_)) => Err(ServerError::BadRequest("`table` needs `db`".into())),
        }
    }
}

fn describe(scope: &Scope) -> Value {
    match scope {
        Scope::All => json!({ "scope": "all" }),
        Scope::Database(db) => json!({ "scope": "database", "db": db }),
        Scope::Table { db, table } => json!({ "scope": "table", "db": db, "table": table }),
    }
}

/// `POST /api/v1/flush?db=&table=`: returns once the flush is committed.
pub(super) async fn flush(
    State(state): State<Arc<ServerState>>,
    params: Result<Query<ScopeParams>, QueryRejection>,
) -> Result<Json<Value>, ServerError> {
    let Query(p) = params.map_err(|e| ServerError::BadRequest(e.body_text()))?;
    let scope = p.scope()?;
    let body = describe(&scope);
    state.writes.flush(scope).await?;
    Ok(Json(json!({ "status": "flushed", "target": body })))
}

#[derive(Debug, Deserialize)]
pub(super) struct CompactParams {
    // Not `#[serde(flatten)]`: serde_urlencoded then fails to parse the bool.
    db: Option<String>,
    table: Option<String>,
    /// Re-encode every SST, even one alone in its segment.
    #[serde(default)]
    rewrite: bool,
}

/// `POST /api/v1/compact?db=&table=&rewrite=`: returns once compaction has finished.
pub(super) async fn compact(
    State(state): State<Arc<ServerState>>,
    params: Result<Query<CompactParams>, QueryRejection>,
) -> Result<Json<Value>, ServerError> {
    let Query(p) = params.map_err(|e| ServerError::BadRequest(e.body_text()))?;
    let scope = ScopeParams {
        db: p.db,
        table: p.table,
    }
    .scope()?;
    let body = describe(&scope);
    state.writes.compact(scope, p.rewrite).await?;
    Ok(Json(
        json!({ "status": "compacted", "target": body, "rewrite": p.rewrite }),
    ))
}

/// `GET /health`: no auth; 200 while the server accepts requests. `status` is `pass`,
/// or `warn` with a `flush` check listing the tables whose flushes keep failing (the
/// server still serves reads and writes; those tables' rows are kept in memory and in
/// the WAL or parked, see `docs/reliability.md`).
pub(super) async fn health(State(state): State<Arc<ServerState>>) -> Json<Value> {
    let failing = state.writes.failing_flushes();
    if failing.is_empty() {
        return Json(json!({
            "name": "bulkhead",
            "message": "ready for queries and writes",
            "status": "pass",
            "checks": [],
            "version": env!("CARGO_PKG_VERSION"),
        }));
    }
    Json(json!({
        "name": "bulkhead",
        "message": "some flushes keep failing",
        "status": "warn",
        "version": env!("CARGO_PKG_VERSION"),
        "checks": [{
            "name": "flush",
            "status": "warn",
            "message": format!(
                "the flush of {} table(s) keeps failing; their rows are kept and the \
                 flush is retried",
                failing.len()
            ),
            "tables": failing,
        }],
    }))
}

/// `GET /ready`: InfluxDB 2's readiness probe; 200 once the server serves, no auth.
pub(super) async fn ready() -> Json<Value> {
    Json(json!({ "status": "ready", "version": env!("CARGO_PKG_VERSION") }))
}

/// A route that exists but not for this method: 405 with a JSON body naming it.
pub(super) async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> ServerError {
    ServerError::MethodNotAllowed(format!("method {method} is not allowed for {}", uri.path()))
}

/// `GET /ping`: InfluxDB clients' liveness probe; 204, no auth.
pub(super) async fn ping() -> impl IntoResponse {
    (
        axum::http::StatusCode::NO_CONTENT,
        [(
            "X-Influxdb-Version",
            concat!("bulkhead-", env!("CARGO_PKG_VERSION")),
        )],
    )
}

/// `GET /metrics`: Prometheus text: HTTP, backend, then per-runtime metrics.
pub(super) async fn metrics(State(state): State<Arc<ServerState>>) -> impl IntoResponse {
    let mut text = state.metrics.render();
    let _ = std::fmt::Write::write_fmt(
        &mut text,
        format_args!(
            "# HELP bulkhead_write_inflight_bytes Write request bytes admitted and not yet answered (limits.max_inflight_write_bytes).\n\
             # TYPE bulkhead_write_inflight_bytes gauge\nbulkhead_write_inflight_bytes {}\n",
            u64::from(state.write_admission.in_flight_kib()) * 1024
        ),
    );
    for backend in [state.writes.metrics_text(), state.queries.metrics_text()] {
        if !backend.is_empty() {
            text.push_str(&backend);
            if !text.ends_with('\n') {
                text.push('\n');
            }
        }
    }
    text.push_str(&state.trips.render());
    text.push_str(
        "# HELP bulkhead_write_stage_seconds Latency of each stage of a write request (see /debug/latency).\n\
         # TYPE bulkhead_write_stage_seconds histogram\n",
    );
    for (stage, hist) in write_stages(&state) {
        text.push_str(&hist.to_prometheus(
            "bulkhead_write_stage_seconds",
            &format!("stage=\"{stage}\""),
        ));
    }
    text.push_str(&state.connections.render());
    text.push_str(&state.runtimes.snapshot().to_prometheus());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// Every write-stage histogram: the HTTP layer's, then the storage's.
fn write_stages(state: &ServerState) -> Vec<(&'static str, HistogramSnapshot)> {
    let mut stages = state.metrics.write_stages();
    stages.extend(state.writes.write_stages());
    stages
}

/// `GET /debug/latency`: the write stages' latency histograms as JSON,
/// `{"write_stages": [{"stage", "counts", "sum_nanos"}, ...]}` (buckets as in
/// [`HistogramSnapshot`]); `bench interference` diffs two of them per phase.
pub(super) async fn debug_latency(State(state): State<Arc<ServerState>>) -> impl IntoResponse {
    let stages: Vec<_> = write_stages(&state)
        .into_iter()
        .map(|(stage, h)| {
            serde_json::json!({"stage": stage, "counts": h.counts, "sum_nanos": h.sum_nanos})
        })
        .collect();
    Json(serde_json::json!({ "write_stages": stages }))
}

/// `GET /debug/bulkheads`: the runtimes' metrics and recent stalls as JSON.
pub(super) async fn debug_bulkheads(State(state): State<Arc<ServerState>>) -> impl IntoResponse {
    Json(state.runtimes.snapshot())
}

pub(super) async fn not_found(uri: Uri) -> ServerError {
    ServerError::NotFound(uri.path().to_string())
}
