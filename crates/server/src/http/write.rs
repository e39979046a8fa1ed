//! `POST /api/v2/write` and `POST /write`: line protocol in, InfluxDB 3 partial-write
//! semantics out. The body is read on `io`, decompressed and parsed on `write`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use bulkhead_runtime::RuntimeName;
use serde::Deserialize;

use super::ServerState;
use super::admission::read_admitted;
use super::body::{Encoding, decode};
use crate::error::ServerError;
use crate::lineproto::{self, ParseOptions, Precision};

/// Query parameters of both write endpoints (`org`, `rp`, `u`, `p`, ... are ignored).
#[derive(Debug, Deserialize)]
pub(super) struct WriteParams {
    db: Option<String>,
    bucket: Option<String>,
    precision: Option<String>,
    accept_partial: Option<String>,
}

pub(super) async fn write_v2(
    State(state): State<Arc<ServerState>>,
    params: Result<Query<WriteParams>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ServerError> {
    let Query(p) = params.map_err(|e| ServerError::BadRequest(e.body_text()))?;
    let db = p.bucket.or(p.db).ok_or_else(|| missing("bucket"))?;
    write(state, db, p.precision, p.accept_partial, headers, body).await
}

pub(super) async fn write_v1(
    State(state): State<Arc<ServerState>>,
    params: Result<Query<WriteParams>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ServerError> {
    let Query(p) = params.map_err(|e| ServerError::BadRequest(e.body_text()))?;
    let db = p.db.ok_or_else(|| missing("db"))?;
    write(state, db, p.precision, p.accept_partial, headers, body).await
}

fn missing(name: &str) -> ServerError {
    ServerError::BadRequest(format!(
        "missing query parameter `{name}` (the database to write to)"
    ))
}

async fn write(
    state: Arc<ServerState>,
    db: String,
    precision: Option<String>,
    accept_partial: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ServerError> {
    if db.trim().is_empty() {
        return Err(ServerError::BadRequest(
            "the database name must not be empty".into(),
        ));
    }
    check_database(&db)?;
    let precision =
        Precision::parse(precision.as_deref().unwrap_or("")).map_err(ServerError::BadRequest)?;
    let accept_partial = match accept_partial.as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(ServerError::BadRequest(format!(
                "invalid accept_partial `{other}` (expected true or false)"
            )));
        }
    };
    let encoding = Encoding::from_headers(&headers)?;
    let limit = state.limits.max_body_size.as_u64();
    // Held until the write is acknowledged (or refused).
    let (raw, mut admitted) = read_admitted(&state, &headers, body, limit).await?;

    let opts = ParseOptions {
        precision,
        default_time: now_nanos(),
        max_line_length: state.limits.max_line_length.as_usize(),
        max_tags: state.limits.max_tags_per_line,
        max_fields: state.limits.max_fields_per_line,
    };
    // Decompression, parsing and type checks are CPU work: on `write`, never on `io`.
    let backend = Arc::clone(&state.writes);
    let db_name = db.clone();
    let read_at = Instant::now();
    let _handler = state.metrics.write_handler.timer_from(read_at);
    let stages = Arc::clone(&state);
    let parsed = state
        .runtimes
        .run(RuntimeName::Write, async move {
            let parsing = Instant::now();
            stages.metrics.write_parse_queue.record(parsing - read_at);
            let _parse = stages.metrics.write_parse.timer_from(parsing);
            let text = decode(raw, encoding, limit)?;
            let mut parsed = lineproto::parse(&text, &opts);
            lineproto::reject_conflicting_rows(&mut parsed, &text, |table| {
                backend.table_columns(&db_name, table)
            });
            // Sized here, on `write`: it walks every row.
            let estimate = parsed.batch.estimated_bytes() as u64;
            Ok::<_, ServerError>((text.len(), parsed, estimate))
        })
        .await??;
    let (bytes, parsed, estimate) = parsed;
    // Parsed rows take several times the line protocol's bytes: charge their estimate.
    state.write_admission.grow(&mut admitted, estimate)?;
    let metrics = &state.metrics;
    metrics
        .ingest_bytes
        .fetch_add(bytes as u64, Ordering::Relaxed);
    metrics
        .ingest_lines_rejected
        .fetch_add(parsed.errors.len() as u64, Ordering::Relaxed);

    if !parsed.errors.is_empty() && !accept_partial {
        return Err(ServerError::LineProtocol {
            rejected: parsed.errors,
            written: 0,
        });
    }
    let rows = parsed.batch.row_count();
    if rows > 0 {
        state.writes.write(&db, parsed.batch).await?;
        metrics
            .ingest_rows
            .fetch_add(rows as u64, Ordering::Relaxed);
    }
    if parsed.errors.is_empty() {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ServerError::LineProtocol {
            rejected: parsed.errors,
            written: rows,
        })
    }
}

/// The shared name rules (`bulkhead_engine::names`) for the database a write names:
/// 400 naming the rule, before the body is read.
pub(super) fn check_database(db: &str) -> Result<(), ServerError> {
    bulkhead_engine::names::check_database(db)
        .map_err(|e| ServerError::BadRequest(format!("database name {e}")))
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
