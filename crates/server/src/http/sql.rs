//! `GET|POST /api/v1/sql`: one task on `query` plans, polls and encodes the result
//! stream, forwarding encoded chunks to the response body (sent from `io`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arrow::error::ArrowError;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use bulkhead_runtime::{RuntimeError, RuntimeName};
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::ServerState;
use super::body::read_limited;
use super::encode::{Encoder, Format};
use crate::backend::{QueryError, QueryErrorKind, QueryOutput};
use crate::config::HumanDuration;
use crate::error::ServerError;
use crate::limits::{Deadline, Limit, Protocol};

/// `db`, `q`, `format` and `timeout`, from the query string or a JSON body.
#[derive(Debug, Default, Deserialize)]
struct SqlParams {
    db: Option<String>,
    q: Option<String>,
    format: Option<String>,
    timeout: Option<String>,
}

/// A validated SQL request: what [`run`] executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SqlRequest {
    pub(crate) db: String,
    pub(crate) q: String,
    pub(crate) format: Format,
    /// The request's own timeout (`timeout=30s`); it can only lower
    /// `limits.query_timeout`.
    pub(crate) timeout: Option<Duration>,
}

pub(super) async fn sql_get(
    State(state): State<Arc<ServerState>>,
    uri: Uri,
) -> Result<Response, ServerError> {
    run(state, parse_request(&uri, None, b"")?).await
}

pub(super) async fn sql_post(
    State(state): State<Arc<ServerState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ServerError> {
    let raw = read_limited(&state, &headers, body, state.limits.max_body_size.as_u64()).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    run(state, parse_request(&uri, content_type, &raw)?).await
}

/// Turn a request's query string and body into a [`SqlRequest`], without IO (also the
/// body of the `sql_params` fuzz target). The body is either JSON (`{"db": .., "q": ..,
/// "format": ..}`, when the content type says JSON or it starts with `{`) or the SQL
/// text itself; body values win over the query string. Every failure is a 400 naming
/// what is wrong.
pub(crate) fn parse_request(
    uri: &Uri,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<SqlRequest, ServerError> {
    let Query(mut p) = Query::<SqlParams>::try_from_uri(uri)
        .map_err(|e: QueryRejection| ServerError::BadRequest(e.body_text()))?;
    let text = std::str::from_utf8(body)
        .map_err(|_| ServerError::BadRequest("the request body is not valid UTF-8".into()))?;
    if !text.trim().is_empty() {
        let json_type = content_type.is_some_and(|v| v.contains("json"));
        if json_type || text.trim_start().starts_with('{') {
            let b: SqlParams = serde_json::from_str(text)
                .map_err(|e| ServerError::BadRequest(format!("invalid JSON body: {e}")))?;
            p.db = b.db.or(p.db);
            p.q = b.q.or(p.q);
            p.format = b.format.or(p.format);
            p.timeout = b.timeout.or(p.timeout);
        } else {
            p.q = Some(text.to_string());
        }
    }
    let db =
        p.db.filter(|d| !d.trim().is_empty())
            .ok_or_else(|| ServerError::BadRequest("missing parameter `db`".into()))?;
    let q = p
        .q
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| ServerError::BadRequest("missing parameter `q` (the SQL query)".into()))?;
    let format = Format::parse(p.format.as_deref()).map_err(ServerError::BadRequest)?;
    let timeout = p
        .timeout
        .map(|t| match t.parse::<HumanDuration>() {
            Ok(d) if d.get() <= MAX_REQUEST_TIMEOUT => Ok(d.get()),
            _ => Err(ServerError::BadRequest(format!(
                "invalid parameter `timeout`: `{t}` (expected a duration up to a year, such as \
                 `500ms`, `30s` or `2m`; it can only lower limits.query_timeout)"
            ))),
        })
        .transpose()?;
    Ok(SqlRequest {
        db,
        q,
        format,
        timeout,
    })
}

/// Longest `timeout` a request may name (it is capped by `limits.query_timeout` anyway).
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(365 * 86_400);

/// Messages from the encoding task to the response body.
type Chunk = Result<Bytes, ServerError>;

async fn run(state: Arc<ServerState>, req: SqlRequest) -> Result<Response, ServerError> {
    let SqlRequest {
        db,
        q,
        format,
        timeout,
    } = req;
    let limit = state.limits.query_timeout.get();
    let deadline = match timeout {
        Some(t) if !t.is_zero() && t < limit => Deadline::after(t, "the request's `timeout`"),
        _ => Deadline::after(limit, "limits.query_timeout"),
    };
    let (tx, mut rx) = mpsc::channel::<Chunk>(4);
    // One task on `query` plans, polls and encodes: the handler on `io` hands the request
    // over once and then only receives chunks (two thread hand-offs per query, not four:
    // on a busy machine each wake-up of a parked thread can cost more than planning).
    let task = state.runtimes.spawn(
        RuntimeName::Query,
        query_task(Arc::clone(&state), db, q, format, deadline, tx),
    );

    // Wait for the first chunk (or error) so that an early failure gets its status code.
    let first = match rx.recv().await {
        Some(Ok(bytes)) => bytes,
        Some(Err(e)) => return Err(e),
        // The task ended without a word: it panicked (resumed here, as before), or the
        // runtime is shutting down (503).
        None => {
            return match task.await {
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => Err(RuntimeError::Cancelled(RuntimeName::Query).into()),
                Ok(()) => Err(ServerError::Encode(
                    "the query task ended without a result".into(),
                )),
            };
        }
    };
    let rest =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let stream = futures::stream::once(async move { Ok::<_, ServerError>(first) }).chain(rest);
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    Ok(response)
}

/// Plan `q` under `deadline`, then encode its batches into `tx`. A client that goes
/// away (the handler or the response body drops the receiver) cancels the query, while
/// it is planned as while it runs.
async fn query_task(
    state: Arc<ServerState>,
    db: String,
    q: String,
    format: Format,
    deadline: Deadline,
    tx: mpsc::Sender<Chunk>,
) {
    let planned = tokio::select! {
        planned = deadline.plan(state.queries.sql(&db, &q)) => planned,
        () = tx.closed() => {
            state.trips.trip(Limit::ClientGone, Protocol::Http);
            return;
        }
    };
    let output = match planned {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            let _ = tx
                .send(Err(ServerError::Query(memory_limit_message(e, &state))))
                .await;
            return;
        }
        Err(timed_out) => {
            state.trips.trip(Limit::QueryTimeout, Protocol::Http);
            let _ = tx.send(Err(ServerError::Query(timed_out))).await;
            return;
        }
    };
    encode_task(deadline.bound(output), format, tx, state).await;
}

async fn encode_task(
    output: QueryOutput,
    format: Format,
    tx: mpsc::Sender<Chunk>,
    state: Arc<ServerState>,
) {
    let QueryOutput {
        schema,
        mut batches,
    } = output;
    let mut encoder = match Encoder::new(format, &schema) {
        Ok(e) => e,
        Err(e) => {
            let _ = tx.send(Err(ServerError::Encode(e.to_string()))).await;
            return;
        }
    };
    let mut pending = encoder.take();
    let mut sent_first = false;
    loop {
        // Watch the client while the query runs, not only when a batch is ready: the
        // response body (or, before the first batch, the handler) is dropped when the
        // client disconnects, and returning drops the query stream, which aborts it.
        let next = tokio::select! {
            next = batches.next() => next,
            () = tx.closed() => {
                state.trips.trip(Limit::ClientGone, Protocol::Http);
                tracing::debug!("SQL client went away; cancelling its query");
                return;
            }
        };
        let Some(next) = next else { break };
        let chunk = match next {
            Ok(batch) => {
                state
                    .metrics
                    .query_rows
                    .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                encoder
                    .write(&batch)
                    .map_err(|e| ServerError::Encode(e.to_string()))
            }
            Err(e) => {
                let e = classify(e);
                if e.kind == QueryErrorKind::Timeout {
                    state.trips.trip(Limit::QueryTimeout, Protocol::Http);
                }
                Err(ServerError::Query(memory_limit_message(e, &state)))
            }
        };
        let chunk = match chunk {
            Ok(bytes) if !sent_first => {
                let mut joined = Vec::with_capacity(pending.len() + bytes.len());
                joined.extend_from_slice(&pending);
                joined.extend_from_slice(&bytes);
                pending = Bytes::new();
                Ok(Bytes::from(joined))
            }
            other => other,
        };
        if let Err(e) = &chunk
            && sent_first
        {
            tracing::warn!(error = %e, "query failed after the response started; aborting the body");
        }
        let failed = chunk.is_err();
        if tx.send(chunk).await.is_err() || failed {
            return; // client gone, or error delivered
        }
        sent_first = true;
    }
    let last = encoder
        .finish()
        .map_err(|e| ServerError::Encode(e.to_string()));
    let last = match last {
        Ok(bytes) if !sent_first => {
            let mut joined = pending.to_vec();
            joined.extend_from_slice(&bytes);
            Ok(Bytes::from(joined))
        }
        other => other,
    };
    let _ = tx.send(last).await;
}

/// Give a stream error its kind: backends wrap a [`QueryError`] in
/// `ArrowError::ExternalError` to choose one; Arrow's own memory errors are
/// "resources exhausted"; anything else is an execution error.
fn classify(e: ArrowError) -> QueryError {
    match e {
        ArrowError::ExternalError(inner) => match inner.downcast::<QueryError>() {
            Ok(q) => *q,
            Err(other) => QueryError::execution(other.to_string()),
        },
        ArrowError::MemoryError(m) => QueryError::new(QueryErrorKind::ResourcesExhausted, m),
        other => QueryError::execution(other.to_string()),
    }
}

/// A query over `limits.query_memory` says so, naming the limit and its key, plus the
/// operator that asked for more (DataFusion's full report, with its per-reservation
/// counters, goes to the log instead of the client).
fn memory_limit_message(e: QueryError, state: &ServerState) -> QueryError {
    if e.kind != QueryErrorKind::ResourcesExhausted {
        return e;
    }
    tracing::info!(error = %e.message, "query over its memory limit");
    let detail = e
        .message
        .split("Failed to allocate additional ")
        .nth(1)
        .and_then(|rest| rest.split(" with ").next())
        .map(|what| format!(": failed to allocate {what}"))
        .unwrap_or_default();
    QueryError::new(
        QueryErrorKind::ResourcesExhausted,
        format!(
            "query exceeded its memory limit of {} (limits.query_memory){detail}",
            state.limits.query_memory
        ),
    )
}
