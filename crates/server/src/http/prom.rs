//! `POST /api/v1/prom/write`: Prometheus remote write 1.0. The body is read on `io`
//! under the size limit; decompression, decoding, validation and the schema check run
//! on `write` ([`crate::promwrite`]); the batch is written whole or not at all, and
//! acknowledged (204) only once it is durable.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use bulkhead_runtime::RuntimeName;
use serde::Deserialize;

use super::ServerState;
use super::admission::read_admitted;
use crate::error::ServerError;
use crate::promwrite::{self, DecodeOptions, PromWriteError};

/// The `proto` parameter of a remote-write 1.0 `Content-Type`.
const V1_PROTO: &str = "prometheus.WriteRequest";

#[derive(Debug, Deserialize)]
pub(super) struct PromParams {
    db: Option<String>,
}

pub(super) async fn prom_write(
    State(state): State<Arc<ServerState>>,
    params: Result<Query<PromParams>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ServerError> {
    let Query(p) = params.map_err(|e| ServerError::BadRequest(e.body_text()))?;
    let db = p.db.unwrap_or_default();
    if db.trim().is_empty() {
        return Err(ServerError::BadRequest(
            "missing query parameter `db` (the database to write to)".into(),
        ));
    }
    super::write::check_database(&db)?;
    check_headers(&headers)?;
    let limit = state.limits.max_body_size.as_u64();
    // Held until the write is acknowledged (or refused).
    let (raw, mut admitted) = read_admitted(&state, &headers, body, limit).await?;

    let opts = DecodeOptions {
        max_decompressed: limit,
        max_labels: state.limits.max_tags_per_line,
    };
    // Decompression, decoding and checks are CPU work: on `write`, never on `io`.
    let backend = Arc::clone(&state.writes);
    let db_name = db.clone();
    let (decoded, estimate) = state
        .runtimes
        .run(RuntimeName::Write, async move {
            let decoded = promwrite::decode_with(&raw, &opts)?;
            promwrite::check_schema(&decoded.batch, |table| {
                backend.table_columns(&db_name, table)
            })?;
            // Sized here, on `write`: it walks every row.
            let estimate = decoded.batch.estimated_bytes() as u64;
            Ok::<_, PromWriteError>((decoded, estimate))
        })
        .await?
        .map_err(|e| {
            // A 4xx is not retried by Prometheus: the samples are dropped, so say so.
            tracing::warn!(db = %db, error = %e, "Prometheus remote write rejected");
            match e {
                PromWriteError::TooLarge { limit, .. } => ServerError::PayloadTooLarge { limit },
                other => ServerError::BadRequest(other.to_string()),
            }
        })?;

    let metrics = &state.metrics;
    metrics
        .ingest_bytes
        .fetch_add(decoded.decompressed_bytes as u64, Ordering::Relaxed);
    // Decoded rows take several times the snappy bytes: charge their estimate.
    state.write_admission.grow(&mut admitted, estimate)?;
    let rows = decoded.batch.row_count();
    if rows > 0 {
        state.writes.write(&db, decoded.batch).await?;
        metrics
            .ingest_rows
            .fetch_add(rows as u64, Ordering::Relaxed);
    }
    metrics
        .prom_stale_dropped
        .fetch_add(decoded.stale_dropped as u64, Ordering::Relaxed);
    metrics.prom_ignored.fetch_add(
        (decoded.histograms_ignored + decoded.exemplars_ignored) as u64,
        Ordering::Relaxed,
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Remote write 1.0 is snappy-compressed `prometheus.WriteRequest`; anything else
/// (remote write 2.0's `io.prometheus.write.v2.Request`, zstd) gets 415 rather than
/// being misread, so a 2.0 sender can fall back to 1.0.
fn check_headers(headers: &HeaderMap) -> Result<(), ServerError> {
    let text = |name: header::HeaderName| {
        headers
            .get(&name)
            .map(|v| {
                v.to_str().map(str::trim).map_err(|_| {
                    ServerError::BadRequest(format!("invalid {name} header (not ASCII)"))
                })
            })
            .transpose()
    };
    match text(header::CONTENT_ENCODING)? {
        None => {}
        Some(v) if v.eq_ignore_ascii_case("snappy") => {}
        Some(v) => {
            return Err(ServerError::UnsupportedMediaType(format!(
                "unsupported Content-Encoding `{v}`: remote write bodies must be snappy"
            )));
        }
    }
    if let Some(ct) = text(header::CONTENT_TYPE)? {
        let proto = ct.split(';').skip(1).find_map(|param| {
            let (k, v) = param.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("proto")
                .then(|| v.trim().trim_matches('"'))
        });
        if let Some(proto) = proto
            && proto != V1_PROTO
        {
            return Err(ServerError::UnsupportedMediaType(format!(
                "unsupported remote-write message `{proto}`: only remote write 1.0 \
                 ({V1_PROTO}) is supported"
            )));
        }
    }
    Ok(())
}
