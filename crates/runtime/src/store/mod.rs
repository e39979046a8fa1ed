//! Object-store plumbing that keeps IO on the `io` bulkhead: the [`IoObjectStore`]
//! wrapper, the io-bound HTTP connector for S3, the durable local-disk store, and a
//! fault-injecting store for tests and benchmarks, and the object cache in front of it all.

pub mod cache;
mod durable;
mod fault;
mod http;
mod io;

pub use cache::{CacheConfig, CacheStats, CachedStore, DiskCacheConfig};
pub use durable::{DurableLocalStore, create_dirs_durably, sync_dir};
pub use fault::{FaultConfig, FaultInjectingStore};
pub use http::io_http_connector;
pub use io::IoObjectStore;
