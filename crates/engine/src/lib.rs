//! The storage engine: WAL, memtables, Parquet SSTs on object storage, manifest.
//!
//! Data flow (see `docs/storage.md`): a [`WriteBatch`] is encoded and appended to the WAL
//! on the `write` runtime, group-committed (fsync) on a blocking thread, then inserted
//! into per-table memtables and acknowledged. Flush sorts, dedups and encodes Parquet on
//! `flush`, uploads through the io-bound object store, then commits a manifest edit; only
//! then is the WAL truncated. Reads take a consistent snapshot of memtables + SSTs.
//!
//! This crate does not depend on DataFusion.

mod error;
mod model;

pub use error::{Error, Result};
pub use model::{FieldType, FieldValue, Row, Scope, TableWrite, WriteBatch};
