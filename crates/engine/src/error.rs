//! The engine's error type, one variant per way a caller must react.

use crate::model::FieldType;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field written with a type other than its column's. Nothing of the batch is applied.
    #[error(
        "schema conflict in {db}.{table}: column `{column}` has type {existing}, write has type {attempted}"
    )]
    SchemaConflict {
        db: String,
        table: String,
        column: String,
        existing: FieldType,
        attempted: FieldType,
    },
    /// The write is malformed (empty field set, bad name, ...). Nothing is applied.
    #[error("invalid write: {0}")]
    InvalidInput(String),
    /// Memtables hold twice the write buffer: the caller should retry later (HTTP 503).
    #[error("write buffer full ({used_bytes} bytes buffered, limit {limit_bytes}); retry later")]
    Overloaded {
        used_bytes: usize,
        limit_bytes: usize,
    },
    /// A catalog limit (`limits.rs`) would be passed: nothing of the write is applied.
    #[error("limit exceeded: limits.{limit} = {value}: {what}")]
    LimitExceeded {
        limit: &'static str,
        value: usize,
        what: String,
    },
    #[error("database `{0}` not found")]
    DatabaseNotFound(String),
    #[error("table `{db}.{table}` not found")]
    TableNotFound { db: String, table: String },
    /// The WAL holds data that is neither a clean record nor a torn tail.
    #[error("WAL corruption in {file} at byte offset {offset}: {reason}")]
    WalCorruption {
        file: String,
        offset: u64,
        reason: String,
    },
    #[error("object store error during {op}: {source}")]
    ObjectStore {
        op: &'static str,
        #[source]
        source: object_store::Error,
    },
    #[error("IO error during {op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("manifest error: {0}")]
    Manifest(String),
    #[error("parquet error: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("the engine is shutting down")]
    Closed,
    #[error(transparent)]
    Runtime(#[from] bulkhead_runtime::RuntimeError),
}
