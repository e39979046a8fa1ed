//! `ServerError`, the crate's one error enum, and its mapping to HTTP responses: every
//! status code the API returns for a failure is decided in [`ServerError::status`].

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bulkhead_engine::Error as EngineError;
use bulkhead_runtime::RuntimeError;
use serde_json::json;

use crate::backend::{QueryError, QueryErrorKind};
use crate::lineproto::LineError;

/// Seconds a client should wait after a 503 before retrying.
const RETRY_AFTER_SECS: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid; startup stops. The message names the key.
    #[error("configuration error: {message}")]
    Config { message: String },
    /// A malformed request: missing parameter, unknown precision, bad gzip, bad JSON.
    #[error("{0}")]
    BadRequest(String),
    /// A body in an encoding or message format this endpoint does not speak (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Missing or wrong token.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The body, compressed or decompressed, is larger than `limits.max_body_size`.
    #[error("request body exceeds the limit of {limit} bytes (limits.max_body_size)")]
    PayloadTooLarge { limit: u64 },
    /// Some lines of a line-protocol body were rejected. `written` is how many valid
    /// rows were nevertheless written (0 with `accept_partial=false`).
    #[error("{}", if *written > 0 { "partial write of line protocol occurred" } else { "parsing failed for line protocol" })]
    LineProtocol {
        rejected: Vec<LineError>,
        written: usize,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A result could not be encoded (JSON, CSV, Arrow IPC).
    #[error("encoding the result failed: {0}")]
    Encode(String),
    #[error("cannot bind {what} to {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("server IO error: {0}")]
    Io(#[from] std::io::Error),
    #[error("no route for {0}")]
    NotFound(String),
    /// The route exists, not for this method (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Write admission control: too many request bytes are already being parsed or
    /// waiting for the engine (503 + Retry-After, nothing written).
    #[error(
        "too many writes in flight: they already hold the {limit} bytes of \
         limits.max_inflight_write_bytes; retry later"
    )]
    WritesInFlight { limit: u64 },
    /// The listener already serves `http.max_connections` connections (503 +
    /// Retry-After; the connection is then closed).
    #[error("too many connections: {limit} are open (http.max_connections); retry later")]
    TooManyConnections { limit: usize },
    /// The client sent nothing of its body for `timeout` (408; the bytes it had sent are
    /// no longer charged to write admission).
    #[error("the request body stalled: no bytes for {timeout} (limits.body_read_timeout)")]
    BodyTimeout {
        timeout: crate::config::HumanDuration,
    },
}

impl ServerError {
    /// The HTTP status for this error: the one place where that is decided.
    pub fn status(&self) -> StatusCode {
        match self {
            ServerError::Config { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ServerError::BadRequest(_) | ServerError::LineProtocol { .. } => {
                StatusCode::BAD_REQUEST
            }
            ServerError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ServerError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ServerError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServerError::NotFound(_) => StatusCode::NOT_FOUND,
            ServerError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ServerError::WritesInFlight { .. } | ServerError::TooManyConnections { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ServerError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ServerError::Engine(e) => match e {
                EngineError::SchemaConflict { .. }
                | EngineError::InvalidInput(_)
                | EngineError::LimitExceeded { .. } => StatusCode::BAD_REQUEST,
                EngineError::DatabaseNotFound(_) | EngineError::TableNotFound { .. } => {
                    StatusCode::NOT_FOUND
                }
                EngineError::Overloaded { .. } | EngineError::Closed => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                // The WAL's disk is full: nothing was written, retry once space is freed.
                EngineError::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::StorageFull =>
                {
                    StatusCode::INSUFFICIENT_STORAGE
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ServerError::Query(q) => match q.kind {
                QueryErrorKind::Plan
                | QueryErrorKind::Syntax
                | QueryErrorKind::DuplicateObject
                | QueryErrorKind::UndefinedObject
                | QueryErrorKind::ResourcesExhausted
                | QueryErrorKind::TooComplex => StatusCode::BAD_REQUEST,
                QueryErrorKind::NotFound => StatusCode::NOT_FOUND,
                QueryErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
                QueryErrorKind::Execution => StatusCode::INTERNAL_SERVER_ERROR,
                QueryErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
            },
            ServerError::Runtime(RuntimeError::Cancelled(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ServerError::Runtime(_)
            | ServerError::Encode(_)
            | ServerError::Bind { .. }
            | ServerError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable machine-readable code for the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            ServerError::Config { .. } => "config",
            ServerError::BadRequest(_) => "bad_request",
            ServerError::Unauthorized(_) => "unauthorized",
            ServerError::UnsupportedMediaType(_) => "unsupported_media_type",
            ServerError::PayloadTooLarge { .. } => "payload_too_large",
            ServerError::LineProtocol { .. } => "line_protocol",
            ServerError::NotFound(_) => "not_found",
            ServerError::MethodNotAllowed(_) => "method_not_allowed",
            ServerError::WritesInFlight { .. } => "overloaded",
            ServerError::BodyTimeout { .. } => "body_timeout",
            ServerError::TooManyConnections { .. } => "too_many_connections",
            ServerError::Engine(e) => match e {
                EngineError::SchemaConflict { .. } => "schema_conflict",
                EngineError::InvalidInput(_) => "invalid_input",
                EngineError::LimitExceeded { .. } => "limit_exceeded",
                EngineError::Overloaded { .. } => "overloaded",
                EngineError::DatabaseNotFound(_) | EngineError::TableNotFound { .. } => "not_found",
                EngineError::Closed => "shutting_down",
                EngineError::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::StorageFull =>
                {
                    "insufficient_storage"
                }
                _ => "internal",
            },
            ServerError::Query(q) => q.kind.as_str(),
            ServerError::Runtime(RuntimeError::Cancelled(_)) => "shutting_down",
            ServerError::Runtime(_)
            | ServerError::Encode(_)
            | ServerError::Bind { .. }
            | ServerError::Io(_) => "internal",
        }
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = self.status();
        if self.code() == "overloaded" {
            // Expected under overload, possibly thousands per second: counted on
            // /metrics (responses by status), not logged one by one.
            tracing::debug!(error = %self, "write rejected by backpressure");
        } else if status.is_server_error() {
            tracing::warn!(error = %self, %status, "request failed");
        }
        let body = match &self {
            ServerError::LineProtocol { rejected, .. } => json!({
                "error": self.to_string(),
                "code": self.code(),
                "data": rejected,
            }),
            _ => json!({ "error": self.to_string(), "code": self.code() }),
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Token realm=\"bulkhead\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_engine::FieldType;

    #[test]
    fn engine_errors_map_to_statuses() {
        let conflict = ServerError::from(EngineError::SchemaConflict {
            db: "d".into(),
            table: "t".into(),
            column: "c".into(),
            existing: FieldType::F64,
            attempted: FieldType::Str,
        });
        assert_eq!(conflict.status(), StatusCode::BAD_REQUEST);
        assert!(conflict.to_string().contains("`c`"));
        let overloaded = ServerError::from(EngineError::Overloaded {
            used_bytes: 2,
            limit_bytes: 1,
        });
        let response = overloaded.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            ServerError::from(EngineError::Manifest("x".into())).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn query_errors_map_by_kind() {
        let cases = [
            (QueryErrorKind::Plan, StatusCode::BAD_REQUEST),
            (QueryErrorKind::Syntax, StatusCode::BAD_REQUEST),
            (QueryErrorKind::DuplicateObject, StatusCode::BAD_REQUEST),
            (QueryErrorKind::UndefinedObject, StatusCode::BAD_REQUEST),
            (QueryErrorKind::NotFound, StatusCode::NOT_FOUND),
            (QueryErrorKind::ResourcesExhausted, StatusCode::BAD_REQUEST),
            (QueryErrorKind::TooComplex, StatusCode::BAD_REQUEST),
            (QueryErrorKind::Timeout, StatusCode::GATEWAY_TIMEOUT),
            (QueryErrorKind::Execution, StatusCode::INTERNAL_SERVER_ERROR),
            (QueryErrorKind::Unsupported, StatusCode::NOT_IMPLEMENTED),
        ];
        for (kind, status) in cases {
            assert_eq!(
                ServerError::from(QueryError::new(kind, "m")).status(),
                status,
                "{kind:?}"
            );
        }
    }
}
