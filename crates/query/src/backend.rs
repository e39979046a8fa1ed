//! The query layer as the front ends' [`bulkhead_frontend::QueryBackend`]: HTTP, the
//! PostgreSQL wire and Flight SQL all run SQL through this one implementation, and this
//! is the one place where the query layer's errors get their kind (and so their HTTP
//! status and SQLSTATE).

use arrow::error::ArrowError;
use async_trait::async_trait;
use bulkhead_frontend::{QueryBackend, QueryErrorKind};
use futures::StreamExt;

use crate::{Flavor, QueryEngine};

#[async_trait]
impl QueryBackend for QueryEngine {
    async fn sql(
        &self,
        db: &str,
        sql: &str,
    ) -> Result<bulkhead_frontend::QueryOutput, bulkhead_frontend::QueryError> {
        output(self.sql_with(db, sql, Flavor::Plain).await)
    }

    async fn pg_sql(
        &self,
        db: &str,
        sql: &str,
    ) -> Result<bulkhead_frontend::QueryOutput, bulkhead_frontend::QueryError> {
        output(self.sql_with(db, sql, Flavor::Postgres).await)
    }

    fn describe_without_running(
        &self,
        db: &str,
        sql: &str,
    ) -> Option<Result<arrow::datatypes::SchemaRef, bulkhead_frontend::QueryError>> {
        crate::ddl::describe(db, sql).map(|r| r.map_err(Into::into))
    }

    fn metrics_text(&self) -> String {
        let mut text = self.stats().to_prometheus();
        text.push_str(&self.rollup_board().prometheus());
        text
    }
}

fn output(
    out: crate::Result<crate::QueryOutput>,
) -> Result<bulkhead_frontend::QueryOutput, bulkhead_frontend::QueryError> {
    let out = out?;
    Ok(bulkhead_frontend::QueryOutput {
        schema: out.schema,
        batches: out
            .batches
            .map(|b| b.map_err(|e| ArrowError::from(bulkhead_frontend::QueryError::from(e))))
            .boxed(),
    })
}

impl From<crate::QueryError> for bulkhead_frontend::QueryError {
    fn from(e: crate::QueryError) -> Self {
        use crate::QueryError as Q;
        let kind = match &e {
            Q::Plan(_) => QueryErrorKind::Plan,
            Q::Syntax(_) => QueryErrorKind::Syntax,
            Q::DuplicateObject(_) => QueryErrorKind::DuplicateObject,
            Q::UndefinedObject(_) => QueryErrorKind::UndefinedObject,
            Q::ResourcesExhausted(_) => QueryErrorKind::ResourcesExhausted,
            Q::DatabaseNotFound(_) => QueryErrorKind::NotFound,
            Q::TooComplex(_) => QueryErrorKind::TooComplex,
            Q::Execution(_) | Q::Cancelled => QueryErrorKind::Execution,
        };
        bulkhead_frontend::QueryError::new(kind, e.to_string())
    }
}
