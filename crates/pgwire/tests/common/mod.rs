//! A real engine on a temp dir, the query layer over it, and the PG server in-process on
//! 127.0.0.1:0; plus helpers that run the real `psql` and Python `psycopg` clients.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bulkhead_engine::{Engine, EngineConfig, FieldValue, Row, WriteBatch};
use bulkhead_frontend::{QueryBackend, QueryError, QueryOutput};
use bulkhead_pgwire::PgServer;
use bulkhead_query::{QueryConfig, QueryEngine};
use bulkhead_runtime::store::IoObjectStore;
use bulkhead_runtime::{RuntimeConfig, RuntimeName, Runtimes};
use futures::StreamExt;
use object_store::local::LocalFileSystem;

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
}

pub struct Pg {
    /// Threads that planned queries and polled their batches.
    pub threads: Arc<Mutex<Vec<String>>>,
    pub runtimes: Arc<Runtimes>,
    pub engine: Arc<Engine>,
    pub addr: SocketAddr,
    pub token: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Pg {
    pub fn start(token: Option<&str>) -> Self {
        Self::start_with(token, QueryConfig::default())
    }

    pub fn start_with(token: Option<&str>, query: QueryConfig) -> Self {
        require_clients();
        let dir = tempfile::tempdir().unwrap();
        let runtimes = Runtimes::new(RuntimeConfig::for_parallelism(2)).unwrap();
        let objects = dir.path().join("objects");
        std::fs::create_dir_all(&objects).unwrap();
        let store = Arc::new(IoObjectStore::new(
            Arc::new(LocalFileSystem::new_with_prefix(&objects).unwrap()),
            runtimes.io().clone(),
        ));
        let config = EngineConfig::with_dir(dir.path());
        let rt = Arc::clone(&runtimes);
        let engine = runtimes
            .block_on(RuntimeName::Io, async move {
                Engine::open(config, store, rt).await
            })
            .unwrap()
            .unwrap();
        let query =
            Arc::new(QueryEngine::new(Arc::clone(&engine), Arc::clone(&runtimes), query).unwrap());
        let threads = Arc::new(Mutex::new(Vec::new()));
        let backend: Arc<dyn QueryBackend> = Arc::new(Recording {
            inner: query,
            threads: Arc::clone(&threads),
        });
        let token = token.map(str::to_owned);
        let (rt, tok) = (Arc::clone(&runtimes), token.clone());
        let server = runtimes
            .block_on(RuntimeName::Io, async move {
                PgServer::bind("127.0.0.1:0".parse().unwrap(), tok, rt, backend).await
            })
            .unwrap()
            .unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        runtimes.spawn_io(async move {
            server
                .serve(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            threads,
            runtimes,
            engine,
            addr,
            token,
            stop: Some(stop),
            _dir: dir,
        }
    }

    pub fn write(&self, db: &str, rows: Vec<(&str, Row)>) {
        let mut batch = WriteBatch::default();
        for (table, row) in rows {
            batch.push(table, row);
        }
        let (engine, db) = (Arc::clone(&self.engine), db.to_string());
        self.runtimes
            .block_on(
                RuntimeName::Write,
                async move { engine.write(&db, batch).await },
            )
            .unwrap()
            .unwrap();
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

impl Drop for Pg {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
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

pub fn row(tags: &[(&str, &str)], fields: &[(&str, FieldValue)], time: i64) -> Row {
    Row {
        tags: tags
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        fields: fields
            .iter()
            .map(|(k, v)| ((*k).into(), v.clone()))
            .collect(),
        time,
    }
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
