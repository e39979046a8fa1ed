//! The protocol servers of `bulkhead serve`, and its configuration.
//!
//! Data flow: a request arrives on the `io` runtime (axum, [`http`]); its body is read
//! there under the size limit, then decompressed and parsed ([`lineproto`]; Prometheus
//! remote write: [`promwrite`]) on `write` into a [`bulkhead_engine::WriteBatch`], which
//! goes to a [`WriteBackend`] (the engine).
//! SQL goes to a [`QueryBackend`] (the query layer) on `query`, and its result batches
//! are polled and encoded (JSON, CSV, Arrow IPC) on `query` too, streamed back from `io`.
//! The servers know the backends only through those two traits ([`backend`]); every
//! failure becomes an HTTP status in one place ([`error`]). [`ServerConfig`] is the TOML
//! config with its flag and env-var overlay ([`config`]).

pub mod config;
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
mod influxql;
pub mod lineproto;
mod promquery;
pub mod promwrite;

// The front-end contract lives in `bulkhead-frontend`; these paths stay valid here.
pub use bulkhead_frontend::{backend, limits, net};

pub use backend::{
    FailingFlush, NoSqlBackend, QueryBackend, QueryError, QueryErrorKind, QueryOutput,
    TableColumns, WriteBackend,
};
pub use config::{ServeArgs, ServerConfig};
pub use error::ServerError;
pub use http::{HttpServer, ServerState, router, shutdown_signal};
