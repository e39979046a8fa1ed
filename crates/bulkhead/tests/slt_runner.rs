//! Runs the `.slt` files in `tests/slt/` against a real engine and query layer.
//!
//! Each file runs three times, with its data in different places; the expected output
//! is the same in all three, because where data sits must never change an answer:
//! - `memtable`: `FLUSH` directives are ignored, everything stays in memtables;
//! - `mixed`: `FLUSH` directives run where the file says (part SSTs, part memtables);
//! - `sst`: every `WRITE` is flushed right away (one SST per write).
//!
//! Directives (as `statement ok` bodies): `WRITE [db]` followed by line protocol lines
//! (timestamps in ns), `FLUSH`, and `USE db` (queries run against that database; `demo`
//! by default).
//!
//! Regenerate the expected results after a deliberate change with
//! `cargo test -p bulkhead --test slt_runner -- --complete` (runs in `mixed` mode), then
//! review the diff. Run one file with `-- <substring of its name>`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use bulkhead_engine::{Engine, EngineConfig, Scope};
use bulkhead_query::{QueryConfig, QueryEngine};
use bulkhead_runtime::store::IoObjectStore;
use bulkhead_runtime::{RuntimeConfig, RuntimeName, Runtimes};
use bulkhead_server::lineproto::{self, ParseOptions};
use object_store::local::LocalFileSystem;
use parking_lot::Mutex;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Memtable,
    Mixed,
    Sst,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SltError(String);

/// One engine + query layer on a temp dir, shared by every connection of a file.
struct Shared {
    runtimes: Arc<Runtimes>,
    engine: Arc<Engine>,
    query: Arc<QueryEngine>,
    mode: Mode,
    db: Mutex<String>,
    _dir: tempfile::TempDir,
}

#[derive(Clone)]
struct Conn(Arc<Shared>);

impl Shared {
    fn open(mode: Mode) -> Arc<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let runtimes = Runtimes::new(RuntimeConfig::for_parallelism(2)).expect("runtimes");
        let objects = dir.path().join("objects");
        std::fs::create_dir_all(&objects).expect("objects dir");
        let store = Arc::new(IoObjectStore::new(
            Arc::new(LocalFileSystem::new_with_prefix(&objects).expect("local store")),
            runtimes.io().clone(),
        ));
        let config = EngineConfig::with_dir(dir.path());
        let rt = Arc::clone(&runtimes);
        let engine = runtimes
            .block_on(RuntimeName::Io, async move {
                Engine::open(config, store, rt).await
            })
            .expect("runtime")
            .expect("open engine");
        let query = Arc::new(
            QueryEngine::new(
                Arc::clone(&engine),
                Arc::clone(&runtimes),
                QueryConfig::default(),
            )
            .expect("query engine"),
        );
        Arc::new(Self {
            runtimes,
            engine,
            query,
            mode,
            db: Mutex::new("demo".into()),
            _dir: dir,
        })
    }

    async fn write(&self, db: &str, lines: &str) -> Result<(), SltError> {
        let parsed = lineproto::parse(lines.as_bytes(), &ParseOptions::default());
        if let Some(e) = parsed.errors.first() {
            return Err(SltError(format!(
                "line {}: {}",
                e.line_number, e.error_message
            )));
        }
        let (engine, db2, batch) = (Arc::clone(&self.engine), db.to_string(), parsed.batch);
        self.runtimes
            .run(RuntimeName::Write, async move {
                engine.write(&db2, batch).await
            })
            .await
            .map_err(|e| SltError(e.to_string()))?
            .map_err(|e| SltError(e.to_string()))?;
        if self.mode == Mode::Sst {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), SltError> {
        let engine = Arc::clone(&self.engine);
        self.runtimes
            .run(RuntimeName::Flush, async move {
                engine.flush(&Scope::All).await
            })
            .await
            .map_err(|e| SltError(e.to_string()))?
            .map_err(|e| SltError(e.to_string()))
    }

    async fn query(&self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let (q, db, sql) = (
            Arc::clone(&self.query),
            self.db.lock().clone(),
            sql.to_string(),
        );
        let batches = self
            .runtimes
            .run(RuntimeName::Io, async move {
                q.sql(&db, &sql).await?.collect().await
            })
            .await
            .map_err(|e| SltError(e.to_string()))?
            .map_err(|e| SltError(e.to_string()))?;
        to_output(&batches)
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

fn to_output(batches: &[RecordBatch]) -> Result<DBOutput<DefaultColumnType>, SltError> {
    let Some(first) = batches.first() else {
        return Ok(DBOutput::Rows {
            types: vec![],
            rows: vec![],
        });
    };
    let types = first
        .schema()
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
    runner.with_column_validator(sqllogictest::default_column_validator);
    runner
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
        for mode in [Mode::Memtable, Mode::Mixed, Mode::Sst] {
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
