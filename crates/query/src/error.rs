//! Query errors, by phase, so that HTTP and PG can map them to a status once.

use datafusion::error::DataFusionError;

pub type Result<T, E = QueryError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL is wrong: syntax, unknown table or column, type errors (HTTP 400, SQLSTATE 42xxx).
    #[error("{0}")]
    Plan(String),
    /// A statement Bulkhead parses itself (`CREATE ROLLUP`, `DROP ROLLUP`) does not
    /// parse; the message names the clause (HTTP 400, SQLSTATE 42601).
    #[error("{0}")]
    Syntax(String),
    /// The object the statement creates exists already (HTTP 400, SQLSTATE 42710).
    #[error("{0}")]
    DuplicateObject(String),
    /// The object the statement names does not exist (HTTP 400, SQLSTATE 42704).
    #[error("{0}")]
    UndefinedObject(String),
    /// The query needs more memory than the pool allows (HTTP 400, SQLSTATE 53200).
    #[error("query exceeded its memory limit: {0}")]
    ResourcesExhausted(String),
    /// The database named by the request does not exist (HTTP 404, SQLSTATE 3D000).
    #[error("database `{0}` not found")]
    DatabaseNotFound(String),
    /// The statement nests too deeply or has too many operators to plan safely
    /// (HTTP 400, SQLSTATE 54001); the message names the limit.
    #[error("{0}")]
    TooComplex(String),
    /// Something failed while running a valid plan (HTTP 500, SQLSTATE XX000).
    #[error("query execution failed: {0}")]
    Execution(String),
    /// The query was cancelled (the client went away, or shutdown).
    #[error("query cancelled")]
    Cancelled,
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        match e.find_root() {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => QueryError::Plan(e.strip_backtrace()),
            DataFusionError::ResourcesExhausted(msg) => QueryError::ResourcesExhausted(msg.clone()),
            _ => QueryError::Execution(e.strip_backtrace()),
        }
    }
}
