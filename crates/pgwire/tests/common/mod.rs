//! A real engine on a temp dir, the query layer over it, and the PG server in-process on
//! 127.0.0.1:0 (all three from the test kit, `bulkhead-testkit`); plus helpers that run
//! the real `psql` and Python `psycopg` clients.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::ops::Deref;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bulkhead_engine::FieldValue;
use bulkhead_frontend::{QueryBackend, QueryError, QueryOutput};
use bulkhead_query::{QueryConfig, QueryEngine};
pub use bulkhead_testkit::row;
use bulkhead_testkit::{PgHandle, TempDb};
use futures::StreamExt;

/// Wraps a backend and records the thread names that call `sql` and poll the batches,
/// so tests can check that queries never run on `io`.
struct Recording {
    /// The query layer: the `QueryBackend` `bulkhead serve` passes too.
    inner: Arc<QueryEngine>,
    threads: Arc<Mutex<Vec<String>>>,
}

fn record(threads: &Mutex<Vec<String>>) {
    let name = std::thread::current().name().unwrap_or("?").to_owned();
    threads.lock().unwrap().push(name);
}

#[async_trait]
impl QueryBackend for Recording {
    async fn sql(&self, db: &str, sql: &str) -> Result<QueryOutput, QueryError> {
        self.pg_sql(db, sql).await
    }

    async fn pg_sql(&self, db: &str, sql: &str) -> Result<QueryOutput, QueryError> {
        record(&self.threads);
        let out = self.inner.pg_sql(db, sql).await?;
        let threads = Arc::clone(&self.threads);
        let mut batches = out.batches;
        Ok(QueryOutput {
            schema: out.schema,
            batches: futures::stream::poll_fn(move |cx| {
                record(&threads);
                batches.poll_next_unpin(cx)
            })
            .boxed(),
        })
    }

    fn describe_without_running(
        &self,
        db: &str,
        sql: &str,
    ) -> Option<Result<arrow::datatypes::SchemaRef, QueryError>> {
        self.inner.describe_without_running(db, sql)
    }
}

pub struct Pg {
    /// Threads that planned queries and polled their batches.
    pub threads: Arc<Mutex<Vec<String>>>,
    pub token: Option<String>,
    pub addr: SocketAddr,
    /// Stops the server when dropped, before the engine goes.
    _server: PgHandle,
    /// The engine, the query layer and their runtimes (`runtimes`, `engine`, `write`).
    db: TempDb,
}

impl Deref for Pg {
    type Target = TempDb;
    fn deref(&self) -> &TempDb {
        &self.db
    }
}

impl Pg {
    pub fn start(token: Option<&str>) -> Self {
        Self::start_with(token, QueryConfig::default())
    }

    pub fn start_with(token: Option<&str>, query: QueryConfig) -> Self {
        require_clients();
        let db = TempDb::open_with(query);
        let threads = Arc::new(Mutex::new(Vec::new()));
        let backend: Arc<dyn QueryBackend> = Arc::new(Recording {
            inner: Arc::clone(&db.query),
            threads: Arc::clone(&threads),
        });
        let token = token.map(str::to_owned);
        let server = PgHandle::start(&db.runtimes, token.clone(), backend);
        Self {
            threads,
            token,
            addr: server.addr,
            _server: server,
            db,
        }
    }

    /// `psql -X -A -t -h 127.0.0.1 -p PORT -d DB` with `args` appended.
    pub fn psql(&self, db: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new("psql");
        cmd.args(["-X", "-h", "127.0.0.1", "-p", &self.addr.port().to_string()])
            .args(["-U", "bulkhead", "-d", db, "-v", "ON_ERROR_STOP=1"])
            .args(args)
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE");
        if let Some(t) = &self.token {
            cmd.env("PGPASSWORD", t);
        }
        cmd.output().expect("running psql")
    }

    /// Run a Python snippet with `DSN` defined (a libpq connection string).
    pub fn python(&self, db: &str, password: Option<&str>, code: &str) -> Output {
        let mut dsn = format!(
            "host=127.0.0.1 port={} dbname={db} user=bulkhead connect_timeout=10",
            self.addr.port()
        );
        if let Some(p) = password {
            dsn.push_str(&format!(" password={p}"));
        }
        let script = format!("import psycopg\nDSN = {dsn:?}\n{code}");
        Command::new("python3")
            .args(["-c", &script])
            .env_remove("PGPASSWORD")
            .output()
            .expect("running python3")
    }
}

/// Fail (never skip) when the real clients are missing.
pub fn require_clients() {
    let psql = Command::new("psql").arg("--version").output();
    assert!(
        psql.is_ok_and(|o| o.status.success()),
        "psql is not installed: run scripts/test (it installs postgresql-client)"
    );
    let py = Command::new("python3")
        .args(["-c", "import psycopg"])
        .output();
    assert!(
        py.is_ok_and(|o| o.status.success()),
        "python3 with psycopg is not installed: run scripts/test (it installs psycopg)"
    );
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Assert the command succeeded and return its stdout.
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "client failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// The `cpu` table of the tests: every column type Bulkhead has.
pub fn write_cpu(pg: &Pg) {
    let s = 1_000_000_000i64;
    let t0 = 1_700_000_000 * s;
    pg.write(
        "demo",
        vec![
            (
                "cpu",
                row(
                    &[("host", "a")],
                    &[
                        ("usage", FieldValue::F64(0.5)),
                        ("count", FieldValue::I64(-3)),
                        ("big", FieldValue::U64(u64::MAX)),
                        ("up", FieldValue::Bool(true)),
                        ("note", FieldValue::Str("it's".into())),
                    ],
                    t0,
                ),
            ),
            (
                "cpu",
                row(
                    &[("host", "b")],
                    &[
                        ("usage", FieldValue::F64(1.25)),
                        ("count", FieldValue::I64(7)),
                        ("big", FieldValue::U64(1)),
                        ("up", FieldValue::Bool(false)),
                        ("note", FieldValue::Str("x".into())),
                    ],
                    t0 + s,
                ),
            ),
        ],
    );
}
