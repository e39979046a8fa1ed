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
use bulkhead_engine::{Error as EngineError, FieldType, FieldValue, Row, Scope, WriteBatch};
use bulkhead_runtime::{RuntimeConfig, Runtimes, current_runtime_label};
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
    async fn compact(&self, scope: Scope) -> Result<(), EngineError> {
        self.admin.lock().unwrap().push(("compact".into(), scope));
        Ok(())
    }
    fn table_columns(&self, db: &str, table: &str) -> Option<TableColumns> {
        let rows = self.rows(db);
        let mut cols = TableColumns::default();
        for (_, r) in rows.iter().filter(|(t, _)| t == table) {
            cols.tags.extend(r.tags.iter().map(|(k, _)| k.clone()));
            for (k, v) in &r.fields {
                cols.fields
                    .entry(k.clone())
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
            "select oom" => vec![Err(ArrowError::ExternalError(Box::new(QueryError::new(
                QueryErrorKind::ResourcesExhausted,
                "query exceeded its memory limit of 1 KiB (limits.query_memory)",
            ))))],
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

use futures::StreamExt;

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

#[tokio::test]
async fn v2_write_is_parsed_on_the_write_runtime_and_acknowledged_with_204() {
    let h = harness();
    let polls_before = write_polls(&h.runtimes);
    let r = h
        .post(
            "/api/v2/write?bucket=demo&org=ignored&precision=s",
            "cpu,host=a usage=1 1700000000\ncpu,host=b usage=2,cores=2i 1700000001",
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let rows = h.backend.rows("demo");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].0, "cpu");
    assert_eq!(rows[0].1.tags, vec![("host".to_string(), "a".to_string())]);
    assert_eq!(rows[0].1.time, 1_700_000_000_000_000_000);
    assert_eq!(rows[1].1.fields[1].1, FieldValue::I64(2));
    assert!(
        write_polls(&h.runtimes) > polls_before,
        "parsing must run on `write`"
    );
    assert_eq!(h.state.metrics.ingest_rows(), 2);
}

fn write_polls(runtimes: &Runtimes) -> u64 {
    let snap = runtimes.snapshot();
    snap.runtimes
        .iter()
        .find(|r| r.runtime == "write")
        .map(|r| r.polls)
        .unwrap_or(0)
}

#[tokio::test]
async fn v1_write_uses_db_and_v1_precision_and_defaults_time_to_now() {
    let h = harness();
    let r = h
        .post(
            "/write?db=v1db&rp=autogen&precision=ms",
            "m f=1 1700000000000\nm f=2",
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let rows = h.backend.rows("v1db");
    assert_eq!(rows[0].1.time, 1_700_000_000_000_000_000);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert!(
        (now - rows[1].1.time).abs() < 60_000_000_000,
        "default time is now"
    );
    let r = h.post("/write?bucket=x", "m f=1").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"].as_str().unwrap().contains("`db`"));
}

#[tokio::test]
async fn partial_write_writes_valid_lines_and_lists_exactly_the_bad_ones() {
    let h = harness();
    let body = "cpu f=1 1\ncpu f= 2\ncpu f=3 3\nnot a line\n";
    let r = h.post("/api/v2/write?bucket=p", body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let v = r.json();
    assert_eq!(v["error"], "partial write of line protocol occurred");
    let data = v["data"].as_array().unwrap();
    let got: Vec<(u64, &str)> = data
        .iter()
        .map(|e| {
            (
                e["line_number"].as_u64().unwrap(),
                e["original_line"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, vec![(2, "cpu f= 2"), (4, "not a line")]);
    assert!(
        data[0]["error_message"]
            .as_str()
            .unwrap()
            .contains("field `f`")
    );
    assert_eq!(h.backend.rows("p").len(), 2, "valid lines are written");
}

#[tokio::test]
async fn type_conflicts_reject_only_the_conflicting_lines() {
    let h = harness();
    let r = h
        .post("/api/v2/write?bucket=c", "cpu,host=a usage=1 1")
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let body = "cpu,host=b usage=\"high\" 2\ncpu,host=c usage=3 3\ncpu,host=d idle=1i 4\ncpu,host=e idle=2 5\n";
    let r = h.post("/api/v2/write?bucket=c", body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let v = r.json();
    let lines: Vec<u64> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line_number"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![1, 4], "{v}");
    assert!(
        v["data"][0]["error_message"]
            .as_str()
            .unwrap()
            .contains("has type float, line has type string")
    );
    let times: Vec<i64> = h.backend.rows("c").iter().map(|(_, r)| r.time).collect();
    assert_eq!(times, vec![1, 3, 4]);
    // With accept_partial=false the same conflict writes nothing.
    let r = h
        .post(
            "/api/v2/write?bucket=c&accept_partial=false",
            "cpu,host=f usage=9 9\ncpu usage=true 10",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.backend.rows("c").len(), 3);
}

#[tokio::test]
async fn accept_partial_false_writes_nothing() {
    let h = harness();
    let r = h
        .post(
            "/api/v2/write?bucket=p&accept_partial=false",
            "cpu f=1 1\nbad\n",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["data"][0]["line_number"], 2);
    assert_eq!(h.backend.total(), 0);
    let r = h
        .post("/api/v2/write?bucket=p&accept_partial=maybe", "cpu f=1 1")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_parameters_are_400_with_a_message() {
    let h = harness();
    let cases = [
        ("/api/v2/write", "missing query parameter `bucket`"),
        ("/api/v2/write?bucket=", "must not be empty"),
        (
            "/api/v2/write?bucket=d&precision=minutes",
            "unknown precision `minutes`",
        ),
    ];
    for (uri, want) in cases {
        let r = h.post(uri, "m f=1").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}");
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(want), "{uri}: {msg}");
    }
    assert_eq!(h.backend.total(), 0);
}

#[tokio::test]
async fn gzip_bodies_are_accepted_and_broken_gzip_is_400() {
    let h = harness();
    let req = Request::post("/api/v2/write?bucket=g")
        .header(header::CONTENT_ENCODING, "gzip")
        .body(Body::from(gzip(b"m f=1 1\nm f=2 2\n")))
        .unwrap();
    let r = h.send(req).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert_eq!(h.backend.rows("g").len(), 2);
    let req = Request::post("/api/v2/write?bucket=g")
        .header(header::CONTENT_ENCODING, "gzip")
        .body(Body::from("m f=1 1"))
        .unwrap();
    let r = h.send(req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.text().contains("gzip body does not decompress"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_compressed_or_not() {
    let h = harness_with(|c| c.limits.max_body_size = ByteSize(1000));
    let big = "m f=1 1\n".repeat(200);
    let r = h.post("/api/v2/write?bucket=l", big.clone()).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("limits.max_body_size")
    );
    // Small on the wire, too big once decompressed.
    let req = Request::post("/api/v2/write?bucket=l")
        .header(header::CONTENT_ENCODING, "gzip")
        .body(Body::from(gzip(big.as_bytes())))
        .unwrap();
    assert_eq!(h.send(req).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    // A streamed body without Content-Length.
    let chunks = futures::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 100])));
    let req = Request::post("/api/v2/write?bucket=l")
        .body(Body::from_stream(chunks))
        .unwrap();
    assert_eq!(h.send(req).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(h.backend.total(), 0);
}

#[tokio::test]
async fn line_length_and_tag_limits_name_the_line() {
    let h = harness_with(|c| {
        c.limits.max_line_length = ByteSize(50);
        c.limits.max_tags_per_line = 2;
    });
    let long = format!("m f=\"{}\"", "y".repeat(60));
    let body = format!("m,a=1 f=1 1\n{long}\nm,a=1,b=2,c=3 f=1 1\n");
    let r = h.post("/api/v2/write?bucket=l", body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let v = r.json();
    assert_eq!(v["data"][0]["line_number"], 2);
    assert!(
        v["data"][0]["error_message"]
            .as_str()
            .unwrap()
            .contains("limits.max_line_length")
    );
    assert_eq!(v["data"][1]["line_number"], 3);
    assert!(
        v["data"][1]["error_message"]
            .as_str()
            .unwrap()
            .contains("too many tags")
    );
    assert_eq!(h.backend.rows("l").len(), 1);
}

#[tokio::test]
async fn engine_errors_map_to_400_and_503_with_retry_after() {
    let h = harness();
    *h.backend.fail_next.lock().unwrap() = Some(EngineError::SchemaConflict {
        db: "d".into(),
        table: "cpu".into(),
        column: "usage".into(),
        existing: FieldType::F64,
        attempted: FieldType::Str,
    });
    let r = h.post("/api/v2/write?bucket=d", "cpu usage=\"x\"").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["code"], "schema_conflict");
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("`usage` has type float")
    );
    *h.backend.fail_next.lock().unwrap() = Some(EngineError::Overloaded {
        used_bytes: 10,
        limit_bytes: 5,
    });
    let r = h.post("/api/v2/write?bucket=d", "cpu usage=1").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers[header::RETRY_AFTER], "1");
    assert_eq!(h.backend.total(), 0);
}

#[tokio::test]
async fn auth_is_required_everywhere_but_health() {
    let h = harness_with(|c| c.auth.token = "s3cret".into());
    let body = "m f=1 1";
    let with = |auth: &str| {
        Request::post("/api/v2/write?bucket=a")
            .header(header::AUTHORIZATION, auth)
            .body(Body::from(body))
            .unwrap()
    };
    let r = h.post("/api/v2/write?bucket=a", body).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.contains_key(header::WWW_AUTHENTICATE));
    assert_eq!(
        h.send(with("Token nope")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.post("/write?db=a&u=x&p=nope", body).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(h.get("/metrics").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.get("/api/v1/sql?db=a&q=select%20*%20from%20cpu")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(h.backend.total(), 0, "nothing written without the token");

    assert_eq!(
        h.send(with("Token s3cret")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.send(with("Bearer s3cret")).await.status,
        StatusCode::NO_CONTENT
    );
    let basic = base64::engine::general_purpose::STANDARD.encode("me:s3cret");
    assert_eq!(
        h.send(with(&format!("Basic {basic}"))).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.post("/write?db=a&u=me&p=s3cret", body).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(h.backend.rows("a").len(), 4);
    assert_eq!(h.get("/health").await.status, StatusCode::OK);
    assert_eq!(h.get("/ping").await.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn sql_formats_json_csv_and_arrow() {
    let h = harness();
    let r = h.get("/api/v1/sql?db=demo&q=select%20*%20from%20cpu").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 4);
    assert_eq!(v[1], serde_json::json!({"host": "b", "usage": 2.5}));

    let r = h
        .get("/api/v1/sql?db=demo&q=select%20*%20from%20cpu&format=csv")
        .await;
    assert_eq!(r.text(), "host,usage\na,1.0\nb,2.5\na,1.0\nb,2.5\n");
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );

    let r = h
        .get("/api/v1/sql?db=demo&q=select%20*%20from%20cpu&format=arrow")
        .await;
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(r.body), None).unwrap();
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
    assert_eq!(batches, vec![fixed_batch(), fixed_batch()]);

    let r = h
        .get("/api/v1/sql?db=demo&q=select%20nothing&format=csv")
        .await;
    assert_eq!(r.text(), "host,usage\n");
    let r = h.get("/api/v1/sql?db=demo&q=select%20nothing").await;
    assert_eq!(r.text(), "[]");

    let labels = h.backend.sql_runtimes.lock().unwrap().clone();
    assert!(!labels.is_empty());
    assert!(
        labels.iter().all(|l| l.as_deref() == Some("query")),
        "{labels:?}"
    );
}

#[tokio::test]
async fn sql_post_accepts_json_bodies_and_raw_sql() {
    let h = harness();
    let req = Request::post("/api/v1/sql")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            r#"{"db":"demo","q":"select * from cpu","format":"csv"}"#,
        ))
        .unwrap();
    let r = h.send(req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().starts_with("host,usage\n"));
    let r = h
        .post("/api/v1/sql?db=demo&format=csv", "select * from cpu")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = h.post("/api/v1/sql", "{not json").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("invalid JSON body"));
}

#[tokio::test]
async fn sql_errors_have_statuses_and_messages() {
    let h = harness();
    let cases = [
        (
            "/api/v1/sql?db=demo&q=selec%20x",
            StatusCode::BAD_REQUEST,
            "syntax error",
        ),
        (
            "/api/v1/sql?db=demo&q=select%20oom",
            StatusCode::BAD_REQUEST,
            "memory limit",
        ),
        (
            "/api/v1/sql?db=missing&q=select%201",
            StatusCode::NOT_FOUND,
            "not found",
        ),
        ("/api/v1/sql?q=select%201", StatusCode::BAD_REQUEST, "`db`"),
        ("/api/v1/sql?db=demo", StatusCode::BAD_REQUEST, "`q`"),
        (
            "/api/v1/sql?db=demo&q=select%20*%20from%20cpu&format=xml",
            StatusCode::BAD_REQUEST,
            "`xml`",
        ),
    ];
    for (uri, status, want) in cases {
        let r = h.get(uri).await;
        assert_eq!(r.status, status, "{uri}: {}", r.text());
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(want), "{uri}: {msg}");
    }
    let r = h.get("/api/v1/sql?db=demo&q=select%20oom").await;
    assert_eq!(r.json()["code"], "resources_exhausted");
}

#[tokio::test]
async fn a_failure_after_the_first_batch_aborts_the_body() {
    let h = harness();
    let resp = router(Arc::clone(&h.state))
        .oneshot(
            Request::get("/api/v1/sql?db=demo&q=select%20late%20failure")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .is_err(),
        "a truncated body must not look complete"
    );
}

#[tokio::test]
async fn flush_and_compact_take_a_scope() {
    let h = harness();
    assert_eq!(h.post("/api/v1/flush", "").await.status, StatusCode::OK);
    assert_eq!(
        h.post("/api/v1/flush?db=d", "").await.status,
        StatusCode::OK
    );
    let r = h.post("/api/v1/compact?db=d&table=t", "").await;
    assert_eq!(r.json()["target"]["table"], "t");
    assert_eq!(
        h.post("/api/v1/compact?table=t", "").await.status,
        StatusCode::BAD_REQUEST
    );
    let admin = h.backend.admin.lock().unwrap().clone();
    assert_eq!(
        admin,
        vec![
            ("flush".to_string(), Scope::All),
            ("flush".to_string(), Scope::Database("d".into())),
            (
                "compact".to_string(),
                Scope::Table {
                    db: "d".into(),
                    table: "t".into()
                }
            ),
        ]
    );
}

#[tokio::test]
async fn ops_endpoints() {
    let h = harness();
    assert_eq!(
        h.post("/api/v2/write?bucket=m", "m f=1").await.status,
        StatusCode::NO_CONTENT
    );
    let r = h.get("/health").await;
    assert_eq!(r.json()["status"], "pass");
    let r = h.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    let text = r.text();
    assert!(text.contains("bulkhead_ingest_rows_total 1"), "{text}");
    assert!(
        text.contains("bulkhead_http_request_duration_seconds_bucket{route=\"/api/v2/write\""),
        "{text}"
    );
    assert!(text.contains("bulkhead_test_backend 1"), "{text}");
    assert!(text.contains("bulkhead_test_queries 2"), "{text}");
    assert!(text.contains("bulkhead_runtime_workers"), "{text}");
    let r = h.get("/debug/bulkheads").await;
    let names: Vec<String> = r.json()["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["runtime"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["io", "write", "flush", "query", "compact"]);
    let r = h.get("/no/such/thing").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["code"], "not_found");
}

/// Over real TCP on the io runtime: a request in flight when shutdown starts completes.
#[test]
fn graceful_shutdown_finishes_in_flight_requests() {
    let h = harness();
    *h.backend.write_delay.lock().unwrap() = Duration::from_millis(300);
    let state = Arc::clone(&h.state);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = h
        .runtimes
        .block_on(bulkhead_runtime::RuntimeName::Io, async move {
            HttpServer::bind("127.0.0.1:0".parse().unwrap(), state).await
        })
        .unwrap()
        .unwrap();
    let addr = server.local_addr().unwrap();
    let serving = h.runtimes.spawn_io(server.serve(
        async move {
            let _ = stop_rx.await;
        },
        Duration::from_secs(10),
    ));
    let client = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let body = "m f=1 1";
        write!(
            s,
            "POST /api/v2/write?bucket=s HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    });
    std::thread::sleep(Duration::from_millis(100));
    stop_tx.send(()).unwrap();
    let reply = client.join().unwrap();
    assert!(reply.starts_with("HTTP/1.1 204"), "{reply}");
    futures::executor::block_on(serving).unwrap().unwrap();
    assert_eq!(h.backend.rows("s").len(), 1);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "listener closed after shutdown"
    );
}

/// A request that outlives the drain bound does not hold shutdown hostage.
#[test]
fn shutdown_drain_is_bounded() {
    let h = harness();
    *h.backend.write_delay.lock().unwrap() = Duration::from_secs(30);
    let state = Arc::clone(&h.state);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = h
        .runtimes
        .block_on(bulkhead_runtime::RuntimeName::Io, async move {
            HttpServer::bind("127.0.0.1:0".parse().unwrap(), state).await
        })
        .unwrap()
        .unwrap();
    let addr = server.local_addr().unwrap();
    let serving = h.runtimes.spawn_io(server.serve(
        async move {
            let _ = stop_rx.await;
        },
        Duration::from_millis(200),
    ));
    let _client = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let _ = write!(
            s,
            "POST /api/v2/write?bucket=s HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\nm f=1 1"
        );
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
    });
    std::thread::sleep(Duration::from_millis(100));
    let start = std::time::Instant::now();
    stop_tx.send(()).unwrap();
    futures::executor::block_on(serving).unwrap().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(h.backend.total(), 0, "the hung write was never applied");
}
