//! The one test kit of the workspace (`publish = false`, used only as a dev-dependency):
//! an engine on a temp dir ([`TempEngine`]), a query engine over it ([`TempDb`]) and a
//! PostgreSQL wire server on a free loopback port ([`PgHandle`]), each with its
//! runtimes, plus a store wrapper whose hooks a test fills in ([`HookedStore`]).
//!
//! Layering: the kit depends on `engine`, `runtime`, `frontend`, `query` and `pgwire`.
//! Integration tests and benches of those crates use it as a dev-dependency; that works
//! because an integration test links the same build of its crate as the kit does. A
//! crate's *unit* tests (`#[cfg(test)]` in `src/`) must not use it: there the crate is
//! compiled a second time and its types would not match the kit's.
//!
//! The real `bulkhead serve` binary on free ports is `crates/bulkhead/tests/common`
//! (`TestServer`): it needs the binary cargo builds for that crate's tests.

mod engine;
mod hooked;
mod pg;
mod sql;

pub use engine::{
    TempEngine, io_bound, local_store, new_runtimes, open_engine, open_engine_blocking, row,
    shared_runtimes,
};
pub use hooked::{HookedStore, StoreHooks};
pub use pg::{PgHandle, free_port, free_port_pair};
pub use sql::TempDb;
