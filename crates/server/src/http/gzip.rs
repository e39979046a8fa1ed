//! `Accept-Encoding: gzip` for SQL results: a middleware on `/api/v1/sql` that
//! compresses a successful response body as it streams.
//!
//! The body's chunks are compressed on the `query` runtime (a task between the result
//! encoder and the socket), each chunk flushed so that a client reading a long result
//! gets data as it is produced; errors keep their plain JSON body.

use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use bulkhead_runtime::RuntimeName;
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::ServerState;

/// Whether an `Accept-Encoding` value accepts gzip (`gzip`, `x-gzip` or `*`, with a
/// non-zero `q`).
pub(crate) fn accepts_gzip(value: &str) -> bool {
    value.split(',').any(|item| {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q_zero = parts.any(|p| {
            let p = p.trim().replace(' ', "");
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        matches!(coding.as_str(), "gzip" | "x-gzip" | "*") && !q_zero
    })
}

/// The middleware: compress a 200 response when the request accepts gzip.
pub(crate) async fn compress(
    State(state): State<Arc<ServerState>>,
    request: Request,
    next: Next,
) -> Response {
    let gzip = request
        .headers()
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(accepts_gzip);
    let response = next.run(request).await;
    if !gzip
        || response.status() != StatusCode::OK
        || response.headers().contains_key(header::CONTENT_ENCODING)
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    parts
        .headers
        .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    let (tx, rx) = mpsc::channel::<Result<Bytes, axum::Error>>(4);
    state
        .runtimes
        .spawn(RuntimeName::Query, gzip_task(body, tx));
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Compress `body` chunk by chunk into `tx`; stops when the client goes away.
async fn gzip_task(body: Body, tx: mpsc::Sender<Result<Bytes, axum::Error>>) {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    let mut data = body.into_data_stream();
    while let Some(chunk) = data.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        if let Err(e) = encoder.write_all(&chunk).and_then(|()| encoder.flush()) {
            let _ = tx.send(Err(axum::Error::new(e))).await;
            return;
        }
        let out = std::mem::take(encoder.get_mut());
        if !out.is_empty() && tx.send(Ok(Bytes::from(out))).await.is_err() {
            return;
        }
    }
    match encoder.finish() {
        Ok(rest) => {
            let _ = tx.send(Ok(Bytes::from(rest))).await;
        }
        Err(e) => {
            let _ = tx.send(Err(axum::Error::new(e))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::accepts_gzip;

    #[test]
    fn accept_encoding_values() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("deflate, gzip;q=0.5"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("identity"));
        assert!(!accepts_gzip("br, deflate"));
    }
}
