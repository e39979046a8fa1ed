//! The handler traits the protocol servers call: writes and admin on one side, SQL on the
//! other. The engine and the query layer implement them; the servers know nothing else.

use std::fmt;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use async_trait::async_trait;
use bulkhead_engine::{FieldType, Scope, WriteBatch};
use bulkhead_runtime::latency::HistogramSnapshot;
use futures::stream::BoxStream;

/// Writes, admin and storage metrics: implemented by the storage engine.
#[async_trait]
pub trait WriteBackend: Send + Sync + 'static {
    /// Apply `batch` to database `db` (created on first write) atomically. Returns once
    /// the batch is durable (in the WAL, synced unless `wal.sync = false`).
    async fn write(&self, db: &str, batch: WriteBatch) -> Result<(), bulkhead_engine::Error>;

    /// Delete the rows `req` selects from `db` (durable and invisible to reads once this
    /// returns).
    async fn delete(
        &self,
        _db: &str,
        _req: bulkhead_engine::DeleteRequest,
    ) -> Result<bulkhead_engine::DeleteSummary, bulkhead_engine::Error> {
        Err(bulkhead_engine::Error::InvalidInput(
            "this server does not support deletes".into(),
        ))
    }

    /// Flush the memtables in `scope`; returns once the flush is committed.
    async fn flush(&self, scope: Scope) -> Result<(), bulkhead_engine::Error>;

    /// Compact the SSTs in `scope` (with `rewrite`, re-encode every SST, even one alone
    /// in its segment); returns once compaction has finished.
    async fn compact(&self, scope: Scope, rewrite: bool) -> Result<(), bulkhead_engine::Error>;

    /// The columns of an existing table (`None` if it does not exist or the backend does
    /// not say). The server uses them to reject conflicting lines one by one instead of
    /// letting the engine reject the whole batch. Called on the `write` runtime.
    fn table_columns(&self, _db: &str, _table: &str) -> Option<TableColumns> {
        None
    }

    /// Prometheus text (without the runtime metrics, which the server adds itself).
    fn metrics_text(&self) -> String;

    /// Latency histograms of the storage's write stages, by name, in pipeline order
    /// (`/debug/latency`, `/metrics`); empty if the backend has none.
    fn write_stages(&self) -> Vec<(&'static str, HistogramSnapshot)> {
        Vec::new()
    }

    /// Tables whose flushes keep failing, for `/health` (empty when every flush
    /// succeeds). Cheap: `/health` is polled.
    fn failing_flushes(&self) -> Vec<FailingFlush> {
        Vec::new()
    }

    /// Stop accepting writes and sync the WAL. Called once, after the servers drained.
    async fn close(&self) -> Result<(), bulkhead_engine::Error>;
}

/// A table whose last flush attempts failed (they are retried with backoff; its rows
/// stay readable and durable, see `docs/reliability.md`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FailingFlush {
    pub db: String,
    pub table: String,
    /// Attempts that failed in a row.
    pub consecutive_failures: u32,
    pub last_error: String,
    /// Its in-memory rows are parked, so it does not hold back WAL truncation.
    pub parked: bool,
}

/// Tag and field columns of a table, as far as type checks of new lines need them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableColumns {
    pub tags: foldhash::HashSet<String>,
    pub fields: foldhash::HashMap<String, FieldType>,
}

/// A query result: the schema first (so empty results still have a CSV header and an
/// Arrow IPC schema message), then the batches.
///
/// The server polls `batches` on the `query` runtime, so a DataFusion stream can be
/// returned as is: its CPU work then runs on `query`, never on `io`.
///
/// An error in the stream keeps its [`QueryErrorKind`] (and so its HTTP status) only if
/// it is a [`QueryError`] wrapped with `ArrowError::from(query_error)`; any other
/// error is reported as an execution error (500).
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: BoxStream<'static, Result<RecordBatch, ArrowError>>,
}

impl fmt::Debug for QueryOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryOutput")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// SQL over a database: implemented by the query layer.
#[async_trait]
pub trait QueryBackend: Send + Sync + 'static {
    /// Plan `sql` against database `db`. Called on the `query` runtime.
    async fn sql(&self, db: &str, sql: &str) -> Result<QueryOutput, QueryError>;

    /// Plan `sql` from a PostgreSQL client (the PG wire protocol): PostgreSQL's catalog
    /// and functions are there too. Defaults to [`QueryBackend::sql`].
    async fn pg_sql(&self, db: &str, sql: &str) -> Result<QueryOutput, QueryError> {
        self.sql(db, sql).await
    }

    /// The result schema of `sql` when running it would change something (`DELETE`,
    /// `DROP TABLE`, `DROP DATABASE`, `CREATE ROLLUP`, `DROP ROLLUP`), found by parsing
    /// it only, never by running it: a PostgreSQL Describe must not execute the
    /// statement. `None` for every other statement, whose planning has no side effects
    /// (the caller plans it to learn its columns). Cheap: it parses one statement.
    fn describe_without_running(
        &self,
        _db: &str,
        _sql: &str,
    ) -> Option<Result<SchemaRef, QueryError>> {
        None
    }

    /// Prometheus text of the query layer (added to `/metrics`).
    fn metrics_text(&self) -> String {
        String::new()
    }
}

/// What went wrong with a query, by the phase that failed (DataFusion's taxonomy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryErrorKind {
    /// Syntax or planning error (unknown column, bad type): the client's fault. 400.
    Plan,
    /// A statement Bulkhead parses itself (`CREATE ROLLUP`) does not parse; the
    /// message names the clause. 400 (SQLSTATE 42601, syntax_error).
    Syntax,
    /// The statement creates an object that already exists (a rollup of that name).
    /// 400 (SQLSTATE 42710, duplicate_object).
    DuplicateObject,
    /// The statement names an object that does not exist (`DROP ROLLUP` of an unknown
    /// rollup). 400 (SQLSTATE 42704, undefined_object).
    UndefinedObject,
    /// The database or table does not exist. 404.
    NotFound,
    /// The query needs more memory (or other resources) than its limit. 400: retrying
    /// the same query will not help; the message names the limit.
    ResourcesExhausted,
    /// The statement nests too deeply or is too large to plan safely. 400 (SQLSTATE
    /// 54001, statement_too_complex); the message names the limit.
    TooComplex,
    /// The query ran past its time limit (`limits.query_timeout` or the request's own,
    /// lower one) and was stopped. 504 (SQLSTATE 57014); the message names the limit.
    Timeout,
    /// Execution failed for a reason that is not the client's. 500.
    Execution,
    /// This backend cannot run SQL at all. 501.
    Unsupported,
}

impl QueryErrorKind {
    /// Stable snake_case name, used as the `code` of HTTP error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            QueryErrorKind::Plan => "plan",
            QueryErrorKind::Syntax => "syntax",
            QueryErrorKind::DuplicateObject => "duplicate_object",
            QueryErrorKind::UndefinedObject => "undefined_object",
            QueryErrorKind::NotFound => "not_found",
            QueryErrorKind::ResourcesExhausted => "resources_exhausted",
            QueryErrorKind::TooComplex => "too_complex",
            QueryErrorKind::Timeout => "query_timeout",
            QueryErrorKind::Execution => "execution",
            QueryErrorKind::Unsupported => "unsupported",
        }
    }
}

/// A failed query: its kind decides the HTTP status (and the PG SQLSTATE).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    pub kind: QueryErrorKind,
    pub message: String,
}

impl QueryError {
    pub fn new(kind: QueryErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn plan(message: impl Into<String>) -> Self {
        Self::new(QueryErrorKind::Plan, message)
    }

    pub fn execution(message: impl Into<String>) -> Self {
        Self::new(QueryErrorKind::Execution, message)
    }
}

impl From<QueryError> for ArrowError {
    /// Wrap a classified error for a [`QueryOutput`] stream (see there).
    fn from(e: QueryError) -> Self {
        ArrowError::ExternalError(Box::new(e))
    }
}

/// A query backend for a server built without the query layer: every query answers
/// 501 with a message saying so. It never pretends to have data.
#[derive(Debug, Default)]
pub struct NoSqlBackend;

#[async_trait]
impl QueryBackend for NoSqlBackend {
    async fn sql(&self, _db: &str, _sql: &str) -> Result<QueryOutput, QueryError> {
        Err(QueryError::new(
            QueryErrorKind::Unsupported,
            "SQL is not available: this server was started without the query layer",
        ))
    }
}
