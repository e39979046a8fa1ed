//! What every protocol front end of Bulkhead shares, and nothing else: the contract
//! between the servers (HTTP in `bulkhead-server`, the PostgreSQL wire in
//! `bulkhead-pgwire`, Flight SQL in `bulkhead-flightsql`) and the layers behind them.
//!
//! - [`backend`]: the handler traits the servers call, [`WriteBackend`] (the engine) and
//!   [`QueryBackend`] (the query layer), and one typed [`QueryError`] whose
//!   [`QueryErrorKind`] decides the HTTP status and the SQLSTATE.
//! - [`limits`]: query deadlines and the counters of every limit that trips.
//! - [`net`]: connection caps, idle and header timeouts, socket options and TLS.
//! - [`rollup`]: the rollup maintainer's settings and the one declaration of a rollup
//!   ([`RollupSpec`]), which the server's config embeds (`[compaction]`, `[[rollup]]`).
//! - [`sql_text`]: the parameter limit, literal quoting and placeholder substitution
//!   shared by the front ends with bound parameters.
//! - [`units`]: human sizes and durations (`64MiB`, `1m30s`), re-exported from
//!   `bulkhead-runtime`, where every crate's config type can reach them.
//!
//! It depends on the engine's data types and the runtimes only; the front ends depend on
//! it and never on each other.

pub mod backend;
pub mod limits;
pub mod net;
pub mod rollup;
pub mod sql_text;
pub use bulkhead_runtime::units;

pub use backend::{
    FailingFlush, NoSqlBackend, QueryBackend, QueryError, QueryErrorKind, QueryOutput,
    TableColumns, WriteBackend,
};
pub use rollup::{RollupConfig, RollupSpec};
