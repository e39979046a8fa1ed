//! Object-store plumbing that keeps IO on the `io` bulkhead: the [`IoObjectStore`]
//! wrapper, the io-bound HTTP connector for S3, and a fault-injecting store for tests
//! and benchmarks.

mod fault;
mod http;
mod io;

pub use fault::{FaultConfig, FaultInjectingStore};
pub use http::io_http_connector;
pub use io::IoObjectStore;
