//! The HTTP connector for object stores that speak HTTP (S3 and friends).
//!
//! # Why this exists: the seed's connection-pool bug
//!
//! `reqwest` pools connections, and `hyper` spawns each connection's driver task with
//! `tokio::spawn` on whichever runtime *opened* the connection; the socket is also
//! registered with that runtime's IO driver. If a CPU runtime opens a connection (because
//! a compaction task awaited an S3 call there), the connection goes back to the pool
//! still bound to the CPU runtime. A later request from the `io` runtime that picks it
//! up now makes progress only when the CPU runtime's workers poll the driver task, and
//! those workers may be inside a 200 ms merge. That is the seed's `io-5 cost: 1.015s`
//! (reqwest issue #1933). Two runtimes are not isolation if a pool is shared across them.
//!
//! The fix is to open and drive every connection on `io`: object_store's
//! `SpawnedReqwestConnector` spawns each request on the handle it is given, so
//! connections are created, registered and driven there, whoever awaits the request.
//! `bulkhead lab pool` shows the bug and this fix side by side; see `docs/lab.md`.

use object_store::client::SpawnedReqwestConnector;

use crate::Runtimes;

/// A connector for `AmazonS3Builder::with_http_connector` that opens and drives every
/// connection on the `io` bulkhead.
pub fn io_http_connector(runtimes: &Runtimes) -> SpawnedReqwestConnector {
    SpawnedReqwestConnector::new(runtimes.io().clone())
}
