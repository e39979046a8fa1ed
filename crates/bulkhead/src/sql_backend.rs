//! The query layer behind the servers' [`QueryBackend`] trait.

use std::sync::Arc;

use arrow::error::ArrowError;
use async_trait::async_trait;
use bulkhead_query::{Flavor, QueryEngine};
use bulkhead_server::{QueryBackend, QueryError, QueryErrorKind, QueryOutput};
use futures::StreamExt;

/// SQL over the engine, through DataFusion on the `query` runtime.
#[derive(Debug)]
pub(crate) struct SqlBackend(pub(crate) Arc<QueryEngine>);

#[async_trait]
impl QueryBackend for SqlBackend {
    async fn sql(&self, db: &str, sql: &str) -> Result<QueryOutput, QueryError> {
        output(self.0.sql(db, sql).await)
    }

    async fn pg_sql(&self, db: &str, sql: &str) -> Result<QueryOutput, QueryError> {
        output(self.0.sql_with(db, sql, Flavor::Postgres).await)
    }

    fn metrics_text(&self) -> String {
        let mut text = self.0.stats().to_prometheus();
        text.push_str(&self.0.rollup_board().prometheus());
        text
    }
}

fn output(
    out: bulkhead_query::Result<bulkhead_query::QueryOutput>,
) -> Result<QueryOutput, QueryError> {
    let out = out.map_err(to_server_error)?;
    Ok(QueryOutput {
        schema: out.schema,
        batches: out
            .batches
            .map(|b| b.map_err(|e| ArrowError::from(to_server_error(e))))
            .boxed(),
    })
}

/// One place maps query-layer errors to the servers' kinds (and so HTTP status / SQLSTATE).
pub(crate) fn to_server_error(e: bulkhead_query::QueryError) -> QueryError {
    use bulkhead_query::QueryError as Q;
    let kind = match &e {
        Q::Plan(_) => QueryErrorKind::Plan,
        Q::ResourcesExhausted(_) => QueryErrorKind::ResourcesExhausted,
        Q::DatabaseNotFound(_) => QueryErrorKind::NotFound,
        Q::TooComplex(_) => QueryErrorKind::TooComplex,
        Q::Execution(_) | Q::Cancelled => QueryErrorKind::Execution,
    };
    QueryError::new(kind, e.to_string())
}
