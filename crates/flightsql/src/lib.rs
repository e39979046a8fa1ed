//! Arrow Flight SQL over Bulkhead's query layer.
//!
//! Data flow: the gRPC server (tonic, via `arrow-flight`'s `FlightSqlService`) accepts
//! connections and drives them on `io` ([`server`]), each under a connection cap and
//! deadlines ([`conn`]), over TLS when a certificate is configured ([`tls`]). Every
//! call is authenticated like the other listeners ([`auth`]). A statement's `GetFlightInfo` returns a ticket
//! carrying its database and SQL; `DoGet` plans it through the same
//! [`bulkhead_frontend::QueryBackend`] as HTTP and PG, on the `query` runtime, under
//! `limits.query_timeout`, and encodes the Arrow batches to Flight data on `query` too
//! ([`service`]). Prepared statements bind one row of parameters as SQL literals
//! ([`params`]). The catalog calls read `information_schema` ([`metadata`]). Query
//! errors become gRPC codes in one place ([`error`]). InfluxDB 3's clients, which send
//! a JSON ticket straight to `DoGet`, are served by the same path ([`front`]).

mod auth;
mod conn;
pub mod error;
mod front;
mod metadata;
mod params;
mod server;
mod service;
mod tls;

pub use error::FlightSqlError;
pub use server::{FlightSqlOptions, FlightSqlServer};
