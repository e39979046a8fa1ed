//! What every protocol front end of Bulkhead shares, and nothing else: the contract
//! between the servers (HTTP in `bulkhead-server`, the PostgreSQL wire in
//! `bulkhead-pgwire`, Flight SQL in `bulkhead-flightsql`) and the layers behind them.
//!
//! - [`backend`]: the handler traits the servers call, [`WriteBackend`] (the engine) and
//!   [`QueryBackend`] (the query layer), and one typed [`QueryError`] whose
//!   [`QueryErrorKind`] decides the HTTP status and the SQLSTATE.
//! - [`limits`]: query deadlines and the counters of every limit that trips.
//! - [`net`]: connection caps, idle and header timeouts, socket options and TLS.
//! - [`sql_text`]: the parameter limit, literal quoting and placeholder substitution
//!   shared by the front ends with bound parameters.
//! - [`units`]: human sizes and durations (`64MiB`, `1m30s`) for config and messages.
//!
//! It depends on the engine's data types and the runtimes only; the front ends depend on
//! it and never on each other.

pub mod backend;
pub mod limits;
pub mod net;
pub mod sql_text;
pub mod units;

pub use backend::{
    FailingFlush, NoSqlBackend, QueryBackend, QueryError, QueryErrorKind, QueryOutput,
    TableColumns, WriteBackend,
};
