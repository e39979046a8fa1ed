//! Runs the `.slt` files in `tests/slt/` against a real engine and query layer, and over
//! both protocols against the real server binary.
//!
//! Each file runs five times; the expected output is the same in all five, because
//! neither where data sits nor how it is asked for may change an answer:
//! - `memtable` (in process): `FLUSH` directives are ignored, everything stays in memtables;
//! - `mixed` (in process): `FLUSH` directives run where the file says (part SSTs, part
//!   memtables);
//! - `sst` (in process): every `WRITE` is flushed right away (one SST per write);
//! - `http`: `bulkhead serve`, written over `/api/v2/write`, flushed over `/api/v1/flush`,
//!   queried over `/api/v1/sql` as Arrow IPC (types and values exactly as in process);
//! - `pg`: the same server, queried over the PostgreSQL wire: column types from a
//!   Describe (extended protocol), values as text from a simple query, read back into
//!   Arrow by the PostgreSQL type and printed the same way. Timestamps are compared at
//!   microseconds, PostgreSQL's precision (see docs/protocols.md).
//!
//! Directives (as `statement ok` bodies): `WRITE [db]` followed by line protocol lines
//! (timestamps in ns), `FLUSH`, and `USE db` (queries run against that database; `demo`
//! by default).
//!
//! Regenerate the expected results after a deliberate change with
//! `cargo test -p bulkhead --test slt_runner -- --complete` (runs in `mixed` mode), then
//! review the diff. Run one file with `-- <substring of its name>`.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use bulkhead_engine::Scope;
use bulkhead_runtime::RuntimeName;
use bulkhead_server::lineproto::{self, ParseOptions};
use bulkhead_testkit::TempDb;
use common::TestServer;
use parking_lot::Mutex;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};
use tokio_postgres::types::Type;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Memtable,
    Mixed,
    Sst,
    Http,
    Pg,
}

impl Mode {
    const ALL: [Mode; 5] = [Mode::Memtable, Mode::Mixed, Mode::Sst, Mode::Http, Mode::Pg];
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SltError(String);

fn err(e: impl std::fmt::Display) -> SltError {
    SltError(e.to_string())
}

/// A result: the schema (so an empty result still has column types), then the rows.
type Answer = (SchemaRef, Vec<RecordBatch>);

/// An engine + query layer on a temp dir, in this process (the test kit's).
struct InProcess(TempDb);

/// The real server, and for `pg` one client per database (the database is chosen at
/// connection startup) on a small runtime of the test's own.
struct Server {
    server: TestServer,
    pg_runtime: tokio::runtime::Runtime,
    pg_clients: Mutex<HashMap<String, Arc<tokio_postgres::Client>>>,
}

enum Backend {
    InProcess(InProcess),
    Server(Box<Server>),
}

/// What every connection of a file shares.
struct Shared {
    backend: Backend,
    mode: Mode,
    db: Mutex<String>,
}

#[derive(Clone)]
struct Conn(Arc<Shared>);

impl InProcess {
    fn open() -> Self {
        Self(TempDb::open())
    }

    async fn write(&self, db: &str, lines: &str) -> Result<(), SltError> {
        let parsed = lineproto::parse(lines.as_bytes(), &ParseOptions::default());
        if let Some(e) = parsed.errors.first() {
            return Err(SltError(format!(
                "line {}: {}",
                e.line_number, e.error_message
            )));
        }
        let (engine, db2, batch) = (Arc::clone(&self.0.engine), db.to_string(), parsed.batch);
        self.0
            .runtimes
            .run(RuntimeName::Write, async move {
                engine.write(&db2, batch).await
            })
            .await
            .map_err(err)?
            .map_err(err)
    }

    async fn flush(&self) -> Result<(), SltError> {
        let engine = Arc::clone(&self.0.engine);
        self.0
            .runtimes
            .run(RuntimeName::Flush, async move {
                engine.flush(&Scope::All).await
            })
            .await
            .map_err(err)?
            .map_err(err)
    }

    async fn query(&self, db: &str, sql: &str) -> Result<Answer, SltError> {
        let (q, db, sql) = (Arc::clone(&self.0.query), db.to_string(), sql.to_string());
        self.0
            .runtimes
            .run(RuntimeName::Io, async move {
                let output = q.sql(&db, &sql).await?;
                let schema = Arc::clone(&output.schema);
                Ok::<_, bulkhead_query::QueryError>((schema, output.collect().await?))
            })
            .await
            .map_err(err)?
            .map_err(err)
    }
}

impl Server {
    fn start() -> Self {
        Self {
            server: TestServer::start(&[]),
            pg_runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("pg client runtime"),
            pg_clients: Mutex::new(HashMap::new()),
        }
    }

    /// The server's answer to a failed request: its JSON `error` (and the rejected
    /// line's message for writes), as the in-process path would report it.
    fn error(reply: &common::Reply) -> SltError {
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        let line = body["line_errors"][0]["error_message"].as_str();
        match (line, body["error"].as_str()) {
            (Some(line), _) => SltError(format!("line 1: {line}")),
            (None, Some(e)) => SltError(e.to_string()),
            (None, None) => SltError(format!("HTTP {}: {}", reply.status, reply.text())),
        }
    }

    fn write(&self, db: &str, lines: &str) -> Result<(), SltError> {
        let path = format!("/api/v2/write?bucket={}", common::url_encode(db));
        let reply = self.server.post(&path, lines);
        if reply.status != 204 {
            return Err(Self::error(&reply));
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), SltError> {
        let reply = self.server.post("/api/v1/flush", b"");
        if reply.status != 200 {
            return Err(Self::error(&reply));
        }
        Ok(())
    }

    fn query_http(&self, db: &str, sql: &str) -> Result<Answer, SltError> {
        let reply = self.server.sql(db, sql, "arrow");
        if reply.status != 200 {
            return Err(Self::error(&reply));
        }
        let reader =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(reply.body), None)
                .map_err(err)?;
        let schema = reader.schema();
        let batches = reader.collect::<Result<Vec<_>, _>>().map_err(err)?;
        Ok((schema, batches))
    }

    fn pg_client(&self, db: &str) -> Result<Arc<tokio_postgres::Client>, SltError> {
        if let Some(c) = self.pg_clients.lock().get(db) {
            return Ok(Arc::clone(c));
        }
        let addr = self.server.pg_addr;
        let config = format!(
            "host={} port={} user=slt dbname={db}",
            addr.ip(),
            addr.port()
        );
        let client = self.pg_runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
                .await
                .map_err(err)?;
            tokio::spawn(connection);
            Ok::<_, SltError>(client)
        })?;
        let client = Arc::new(client);
        self.pg_clients
            .lock()
            .insert(db.to_string(), Arc::clone(&client));
        Ok(client)
    }

    /// Column types from a Describe, then the rows as text from a simple query, read
    /// back into Arrow arrays of the matching type.
    fn query_pg(&self, db: &str, sql: &str) -> Result<Answer, SltError> {
        let client = self.pg_client(db)?;
        let pg_error = |e: tokio_postgres::Error| match e.as_db_error() {
            Some(db) => SltError(db.message().to_string()),
            None => err(e),
        };
        let (types, messages) = self.pg_runtime.block_on(async {
            let statement = client.prepare(sql).await.map_err(pg_error)?;
            let types: Vec<(String, Type)> = statement
                .columns()
                .iter()
                .map(|c| (c.name().to_string(), c.type_().clone()))
                .collect();
            let messages = client.simple_query(sql).await.map_err(pg_error)?;
            Ok::<_, SltError>((types, messages))
        })?;
        let rows: Vec<_> = messages
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            })
            .collect();
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (i, (name, ty)) in types.iter().enumerate() {
            let text: StringArray = rows.iter().map(|r| r.get(i)).collect();
            let data_type = arrow_type(ty)?;
            columns.push(arrow::compute::cast(&text, &data_type).map_err(err)?);
            fields.push(Field::new(name, data_type, true));
        }
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns).map_err(err)?;
        Ok((schema, vec![batch]))
    }
}

/// The Arrow type a PostgreSQL column's text is read back as.
fn arrow_type(ty: &Type) -> Result<DataType, SltError> {
    Ok(match *ty {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 => DataType::Int64,
        // Bulkhead sends unsigned fields as `numeric` (docs/protocols.md): read them back
        // as what they are; a fractional value fails the cast and so the file.
        Type::NUMERIC => DataType::UInt64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => DataType::Utf8,
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Nanosecond, None),
        Type::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
        _ => return Err(SltError(format!("no Arrow type for PostgreSQL type {ty}"))),
    })
}

impl Shared {
    fn open(mode: Mode) -> Arc<Self> {
        let backend = match mode {
            Mode::Http | Mode::Pg => Backend::Server(Box::new(Server::start())),
            Mode::Memtable | Mode::Mixed | Mode::Sst => Backend::InProcess(InProcess::open()),
        };
        Arc::new(Self {
            backend,
            mode,
            db: Mutex::new("demo".into()),
        })
    }

    async fn write(&self, db: &str, lines: &str) -> Result<(), SltError> {
        match &self.backend {
            Backend::InProcess(p) => p.write(db, lines).await?,
            Backend::Server(s) => s.write(db, lines)?,
        }
        if self.mode == Mode::Sst {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), SltError> {
        match &self.backend {
            Backend::InProcess(p) => p.flush().await,
            Backend::Server(s) => s.flush(),
        }
    }

    async fn query(&self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let db = self.db.lock().clone();
        let answer = match &self.backend {
            Backend::InProcess(p) => p.query(&db, sql).await?,
            Backend::Server(s) if self.mode == Mode::Pg => s.query_pg(&db, sql)?,
            Backend::Server(s) => s.query_http(&db, sql)?,
        };
        to_output(&answer)
    }
}

#[async_trait]
impl AsyncDB for Conn {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let trimmed = sql.trim_start();
        let (first, rest) = trimmed.split_once('\n').unwrap_or((trimmed, ""));
        let mut words = first.split_whitespace();
        match words.next().map(str::to_ascii_uppercase).as_deref() {
            Some("WRITE") => {
                let db = words
                    .next()
                    .map_or_else(|| self.0.db.lock().clone(), str::to_string);
                self.0.write(&db, rest).await?;
                Ok(DBOutput::StatementComplete(0))
            }
            Some("FLUSH") => {
                if self.0.mode != Mode::Memtable {
                    self.0.flush().await?;
                }
                Ok(DBOutput::StatementComplete(0))
            }
            Some("USE") => {
                let db = words
                    .next()
                    .ok_or_else(|| SltError("USE needs a database".into()))?;
                *self.0.db.lock() = db.trim_end_matches(';').to_string();
                Ok(DBOutput::StatementComplete(0))
            }
            _ => self.0.query(sql).await,
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "bulkhead"
    }
}

fn to_output((schema, batches): &Answer) -> Result<DBOutput<DefaultColumnType>, SltError> {
    let types = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                DefaultColumnType::Integer
            }
            DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
                DefaultColumnType::Integer
            }
            DataType::Float16 | DataType::Float32 | DataType::Float64 => {
                DefaultColumnType::FloatingPoint
            }
            _ => DefaultColumnType::Text,
        })
        .collect();
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SltError(e.to_string()))?;
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| {
                        let s = f.value(row).to_string();
                        if s.is_empty() {
                            "(empty)".to_string()
                        } else {
                            s
                        }
                    })
                    .collect(),
            );
        }
    }
    Ok(DBOutput::Rows { types, rows })
}

fn slt_files(filter: Option<&str>) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .filter(|p| filter.is_none_or(|f| p.to_string_lossy().contains(f)))
        .collect();
    files.sort();
    files
}

fn runner(mode: Mode) -> Runner<Conn, impl sqllogictest::MakeConnection<Conn = Conn>> {
    let shared = Shared::open(mode);
    let mut runner = Runner::new(move || {
        let conn = Conn(Arc::clone(&shared));
        async move { Ok(conn) }
    });
    runner.with_column_validator(sqllogictest::strict_column_validator);
    if mode == Mode::Pg {
        runner.with_normalizer(microsecond_normalizer);
    }
    // `onlyif pg` / `skipif pg`: what differs over the PostgreSQL wire on purpose (its
    // catalog speaks PostgreSQL's type names).
    runner.add_label(if mode == Mode::Pg { "pg" } else { "arrow" });
    runner
}

/// `T12:00:00.123456789` and `T12:00:00.1234567` both read `T12:00:00.123456`: the
/// PostgreSQL wire carries timestamps in microseconds, so `pg` compares them at that
/// precision (expected and actual alike); everything else is compared as is.
#[allow(clippy::ptr_arg)] // the signature sqllogictest's `Normalizer` requires
fn microsecond_normalizer(s: &String) -> String {
    static TIMESTAMP: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?").expect("regex")
    });
    let s = sqllogictest::default_normalizer(s);
    TIMESTAMP
        .replace_all(&s, |c: &regex::Captures<'_>| {
            let fraction = c.get(2).map_or("", |f| &f.as_str()[..f.len().min(6)]);
            let fraction = fraction.trim_end_matches('0');
            if fraction.is_empty() {
                c[1].to_string()
            } else {
                format!("{}.{fraction}", &c[1])
            }
        })
        .into_owned()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--") || a == "--complete")
        .collect();
    let complete = args.iter().any(|a| a == "--complete");
    let filter = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(String::as_str);
    let files = slt_files(filter);
    assert!(!files.is_empty(), "no .slt files matched");
    let mut failures = Vec::new();
    for file in &files {
        if complete {
            let mut r = runner(Mode::Mixed);
            futures::executor::block_on(r.update_test_file(
                file,
                " ",
                sqllogictest::default_validator,
                sqllogictest::default_normalizer,
                sqllogictest::default_column_validator,
            ))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            println!("completed {}", file.display());
            continue;
        }
        for mode in Mode::ALL {
            let mut r = runner(mode);
            match futures::executor::block_on(r.run_file_async(file)) {
                Ok(()) => println!("ok   {} [{mode:?}]", file.display()),
                Err(e) => {
                    println!("FAIL {} [{mode:?}]\n{e}", file.display());
                    failures.push(format!("{} [{mode:?}]", file.display()));
                }
            }
        }
    }
    if !failures.is_empty() {
        eprintln!("{} slt run(s) failed: {failures:?}", failures.len());
        std::process::exit(1);
    }
}
