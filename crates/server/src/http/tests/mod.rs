//! HTTP-layer tests against an in-memory backend that records writes in a `BTreeMap`
//! and answers SQL with fixed Arrow batches.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use arrow::array::{Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use bulkhead_engine::{
    Error as EngineError, FieldType, FieldValue, Row, Scope, SmolStr, WriteBatch,
};
use bulkhead_runtime::{RuntimeConfig, Runtimes, current_runtime_label};
use futures::StreamExt;
use tower::ServiceExt;

use super::*;
use crate::backend::{QueryError, QueryErrorKind, QueryOutput, TableColumns};
use crate::config::ByteSize;

/// Records every write as db -> rows (table, row); can be told to fail the next write.
#[derive(Default)]
struct MemBackend {
    rows: Mutex<BTreeMap<String, Vec<(String, Row)>>>,
    fail_next: Mutex<Option<EngineError>>,
    admin: Mutex<Vec<(String, Scope)>>,
    write_delay: Mutex<Duration>,
    closed: Mutex<bool>,
    /// Runtime labels seen by `sql` and by polls of its result stream.
    sql_runtimes: Arc<Mutex<Vec<Option<String>>>>,
}

impl MemBackend {
    fn rows(&self, db: &str) -> Vec<(String, Row)> {
        self.rows
            .lock()
            .unwrap()
            .get(db)
            .cloned()
            .unwrap_or_default()
    }
    fn total(&self) -> usize {
        self.rows.lock().unwrap().values().map(Vec::len).sum()
    }
}

#[async_trait]
impl WriteBackend for MemBackend {
    async fn write(&self, db: &str, batch: WriteBatch) -> Result<(), EngineError> {
        let delay = *self.write_delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Some(e) = self.fail_next.lock().unwrap().take() {
            return Err(e);
        }
        let mut rows = self.rows.lock().unwrap();
        let entry = rows.entry(db.to_string()).or_default();
        for t in batch.tables {
            for r in t.rows {
                entry.push((t.table.clone(), r));
            }
        }
        Ok(())
    }
    async fn flush(&self, scope: Scope) -> Result<(), EngineError> {
        self.admin.lock().unwrap().push(("flush".into(), scope));
        Ok(())
    }
    async fn compact(&self, scope: Scope, rewrite: bool) -> Result<(), EngineError> {
        let what = if rewrite { "rewrite" } else { "compact" };
        self.admin.lock().unwrap().push((what.into(), scope));
        Ok(())
    }
    fn table_columns(&self, db: &str, table: &str) -> Option<TableColumns> {
        let rows = self.rows(db);
        let mut cols = TableColumns::default();
        for (_, r) in rows.iter().filter(|(t, _)| t == table) {
            cols.tags.extend(r.tags.iter().map(|(k, _)| k.to_string()));
            for (k, v) in &r.fields {
                cols.fields
                    .entry(k.to_string())
                    .or_insert_with(|| v.field_type());
            }
        }
        (!rows.is_empty()).then_some(cols)
    }

    fn metrics_text(&self) -> String {
        "# TYPE bulkhead_test_backend gauge\nbulkhead_test_backend 1\n".into()
    }
    async fn close(&self) -> Result<(), EngineError> {
        *self.closed.lock().unwrap() = true;
        Ok(())
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("host", DataType::Utf8, false),
        Field::new("usage", DataType::Float64, false),
    ]))
}

fn fixed_batch() -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(vec!["a", "b"])),
            Arc::new(Float64Array::from(vec![1.0, 2.5])),
        ],
    )
    .unwrap()
}

#[async_trait]
impl QueryBackend for MemBackend {
    async fn sql(&self, db: &str, sql: &str) -> Result<QueryOutput, QueryError> {
        self.sql_runtimes
            .lock()
            .unwrap()
            .push(current_runtime_label());
        if db == "missing" {
            return Err(QueryError::new(
                QueryErrorKind::NotFound,
                "database `missing` not found",
            ));
        }
        let seen = Arc::clone(&self.sql_runtimes);
        let items: Vec<Result<RecordBatch, ArrowError>> = match sql {
            "select * from cpu" => vec![Ok(fixed_batch()), Ok(fixed_batch())],
            "select nothing" => vec![],
            "select oom" => vec![Err(ArrowError::from(QueryError::new(
                QueryErrorKind::ResourcesExhausted,
                "query exceeded its memory limit of 1 KiB (limits.query_memory)",
            )))],
            "select late failure" => vec![
                Ok(fixed_batch()),
                Err(ArrowError::ComputeError("boom".into())),
            ],
            other => {
                return Err(QueryError::plan(format!(
                    "SQL error: syntax error near `{other}`"
                )));
            }
        };
        let stream = futures::stream::iter(items)
            .inspect(move |_| seen.lock().unwrap().push(current_runtime_label()));
        Ok(QueryOutput {
            schema: schema(),
            batches: Box::pin(stream),
        })
    }

    fn metrics_text(&self) -> String {
        "bulkhead_test_queries 2\n".into()
    }
}

struct Harness {
    backend: Arc<MemBackend>,
    state: Arc<ServerState>,
    runtimes: Arc<Runtimes>,
}

fn harness_with(f: impl FnOnce(&mut ServerConfig)) -> Harness {
    let mut config = ServerConfig::default();
    f(&mut config);
    let runtimes = Runtimes::new(RuntimeConfig::for_parallelism(2)).unwrap();
    let backend = Arc::new(MemBackend::default());
    let state = ServerState::new(
        &config,
        Arc::clone(&runtimes),
        Arc::clone(&backend) as Arc<dyn WriteBackend>,
        Arc::clone(&backend) as Arc<dyn QueryBackend>,
    );
    Harness {
        backend,
        state,
        runtimes,
    }
}

fn harness() -> Harness {
    harness_with(|_| {})
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Harness {
    async fn send(&self, req: Request<Body>) -> Reply {
        let resp = router(Arc::clone(&self.state)).oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }
    async fn post(&self, uri: &str, body: impl Into<Body>) -> Reply {
        self.send(Request::post(uri).body(body.into()).unwrap())
            .await
    }
    async fn get(&self, uri: &str) -> Reply {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

mod prom;
mod shutdown;
mod sql_ops;
mod write;
