//! The PostgreSQL wire protocol over Bulkhead's query layer.
//!
//! Data flow: a connection is accepted and driven on `io` ([`server`]); its startup
//! message selects the Bulkhead database (`database` parameter) and authenticates
//! (password = API token, or trust). Each statement of the simple or extended protocol
//! ([`handler`]) is either a session command that is acknowledged (`SET`, `BEGIN`, ...),
//! a psql catalog query answered from Bulkhead's catalog ([`catalog`]), or SQL planned
//! and run through the [`bulkhead_frontend::QueryBackend`] on the `query` runtime, where
//! its Arrow batches are also encoded to PG rows (`arrow-pg`). Errors get their SQLSTATE
//! in one place ([`error`]).

mod catalog;
mod copy;
mod cursor;
pub mod error;
mod handler;
mod params;
mod server;
mod session;
mod sql;

pub use error::PgError;
pub use server::{PgServer, serve};
pub use session::PgLimits;
