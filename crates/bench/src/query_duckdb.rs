//! DuckDB as a `bench query` peer, and the cross-check of every peer's answers.
//!
//! DuckDB (PyPI `duckdb`, run by `python3`) loads Bulkhead's own live SSTs after the
//! compaction (`CREATE TABLE cpu AS SELECT * FROM read_parquet([...])`, so it queries
//! its native storage, not the Parquet files) and answers the same SQL, with
//! DataFusion's `date_bin` spelled `time_bucket` and `last_value` spelled `last`. One
//! long-lived Python process serves the queries, one JSON line each way; a query's
//! latency includes that round trip, as Bulkhead's includes HTTP.
//!
//! Answers are compared as sets of rows: every value canonical (timestamps as epoch
//! nanoseconds, numbers to 9 significant digits, NULLs absent) under its column's name
//! (without DataFusion's `cpu.` qualifier), so row order, column order and float
//! summation order do not matter.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{Context, bail};

/// The Python side: load the files, then answer one JSON request per line.
const SERVER: &str = r#"
import datetime, json, sys, time
import duckdb
files = json.loads(sys.argv[1])
con = duckdb.connect()
# A load over ~2 s draws a progress bar on stdout, which is this protocol's channel.
con.execute("SET enable_progress_bar = false")
con.execute("SET TimeZone = 'UTC'")
con.execute("CREATE TABLE cpu AS SELECT * REPLACE (CAST(time AS TIMESTAMP_NS) AS time) FROM read_parquet(?) ORDER BY hostname, time", [files])
EPOCH = datetime.datetime(1970, 1, 1)
def value(v):
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        d = v - EPOCH
        return {"ns": (d.days * 86400 + d.seconds) * 1000000000 + d.microseconds * 1000}
    return v
print(json.dumps({"ready": con.execute("SELECT count(*) FROM cpu").fetchone()[0], "version": duckdb.__version__}), flush=True)
for line in sys.stdin:
    try:
        sql = json.loads(line)["sql"]
        start = time.perf_counter()
        cur = con.execute(sql)
        fetched = cur.fetchall()
        ms = (time.perf_counter() - start) * 1e3
        names = [d[0] for d in cur.description]
        rows = [{n: value(v) for n, v in zip(names, row) if v is not None} for row in fetched]
        out = {"rows": rows, "ms": ms}
    except Exception as e:
        out = {"error": str(e)}
    print(json.dumps(out), flush=True)
"#;

/// A running DuckDB (in a `python3` child), killed when dropped.
pub(super) struct DuckDb {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub(super) version: String,
}

impl DuckDb {
    /// Start DuckDB and load `files` (Parquet) into its table `cpu`; returns once loaded.
    pub(super) fn start(files: &[PathBuf]) -> anyhow::Result<Self> {
        let list: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(SERVER)
            .arg(serde_json::to_string(&list)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting python3 for DuckDB (`pip install duckdb`)")?;
        let stdin = child.stdin.take().context("python3 stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("python3 stdout")?);
        let mut db = Self {
            child,
            stdin,
            stdout,
            version: String::new(),
        };
        let ready = db.line().context(
            "DuckDB did not load the SSTs (is the `duckdb` Python package installed? `pip install duckdb`)",
        )?;
        db.version = ready["version"].as_str().unwrap_or("?").to_string();
        eprintln!(
            "duckdb {}: loaded {} rows from {} SSTs",
            db.version,
            ready["ready"],
            files.len()
        );
        Ok(db)
    }

    fn line(&mut self) -> anyhow::Result<serde_json::Value> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the DuckDB process ended");
        }
        Ok(serde_json::from_str(&line)?)
    }

    /// Run Bulkhead's `sql` (translated) and return its rows as JSON objects.
    /// DuckDB's own time to execute `sql` and fetch every row (not the conversion and
    /// transfer to this process), and the rows.
    pub(super) fn query(&mut self, sql: &str) -> anyhow::Result<(f64, Vec<serde_json::Value>)> {
        let sql = translate(sql);
        writeln!(self.stdin, "{}", serde_json::json!({ "sql": sql }))?;
        self.stdin.flush()?;
        let mut out = self.line()?;
        if let Some(e) = out["error"].as_str() {
            bail!("DuckDB {sql:?}: {e}");
        }
        let ms = out["ms"]
            .as_f64()
            .ok_or_else(|| anyhow::anyhow!("DuckDB {sql:?}: no time in the answer"))?;
        match out["rows"].take() {
            serde_json::Value::Array(rows) => Ok((ms, rows)),
            other => bail!("DuckDB {sql:?}: expected rows, got {other}"),
        }
    }
}

impl Drop for DuckDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bulkhead's (DataFusion's) SQL in DuckDB's words.
pub(super) fn translate(sql: &str) -> String {
    sql.replace("date_bin(", "time_bucket(")
        .replace("last_value(", "last(")
}

/// The live SST files of Bulkhead's data directory `data_dir`: each `path` of
/// `system.sst_files`, found below it.
pub(super) fn sst_paths(data_dir: &Path, ssts: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    let mut all = Vec::new();
    let mut stack = vec![data_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                all.push(p);
            }
        }
    }
    ssts.iter()
        .map(|s| {
            all.iter()
                .find(|p| p.ends_with(s))
                .cloned()
                .with_context(|| format!("SST {s} not found under {}", data_dir.display()))
        })
        .collect()
}

/// One canonical value: timestamps (RFC 3339 strings, or DuckDB's `{"ns": n}`) as
/// epoch nanoseconds, numbers to 9 significant digits, strings as they are.
fn canonical(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::Number(n) => n.as_f64().map(|x| format!("{x:.8e}")),
        serde_json::Value::String(s) => Some(match parse_time(s) {
            Some(ns) => format!("t{ns}"),
            None => format!("s{s}"),
        }),
        serde_json::Value::Object(o) if o.contains_key("ns") => {
            o["ns"].as_i64().map(|ns| format!("t{ns}"))
        }
        other => Some(other.to_string()),
    }
}

pub(super) fn parse_time(s: &str) -> Option<i64> {
    if s.len() < 19 || s.as_bytes()[4] != b'-' {
        return None;
    }
    let t = humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos()).ok()
}

/// `rows` (JSON objects) as a sorted list of canonical rows.
pub(super) fn canonical_rows(rows: &[serde_json::Value]) -> Vec<String> {
    let mut out: Vec<String> = rows
        .iter()
        .map(|r| {
            let cols: BTreeMap<String, String> = r
                .as_object()
                .into_iter()
                .flatten()
                // DataFusion names an unaliased `max(usage_user)` `max(cpu.usage_user)`.
                .filter_map(|(k, v)| Some((k.replace("cpu.", ""), canonical(v)?)))
                .collect();
            cols.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    out.sort();
    out
}

/// Whether two systems' answers are the same set of rows; `Err` says how they differ.
pub(super) fn same_answer(a: &[serde_json::Value], b: &[serde_json::Value]) -> Result<(), String> {
    let (a, b) = (canonical_rows(a), canonical_rows(b));
    if a.len() != b.len() {
        return Err(format!("{} rows vs {}", a.len(), b.len()));
    }
    match a.iter().zip(&b).find(|(x, y)| x != y) {
        Some((x, y)) => Err(format!("first difference: {x} vs {y}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_compare_as_sets_of_canonical_rows() {
        let bulkhead = vec![
            json!({"minute": "2016-01-01T00:01:00Z", "max_usage_user": 0.1 + 0.2, "hostname": "host_1"}),
            json!({"minute": "2016-01-01T00:00:00", "max_usage_user": 1.0}),
        ];
        let duck = vec![
            json!({"max_usage_user": 1, "minute": {"ns": 1_451_606_400_000_000_000_i64}}),
            json!({"hostname": "host_1", "max_usage_user": 0.3, "minute": {"ns": 1_451_606_460_000_000_000_i64}}),
        ];
        assert_eq!(same_answer(&bulkhead, &duck), Ok(()));
        let other = vec![
            duck[0].clone(),
            json!({"hostname": "host_1", "max_usage_user": 0.31, "minute": {"ns": 1_451_606_460_000_000_000_i64}}),
        ];
        assert!(same_answer(&bulkhead, &other).is_err());
        assert!(same_answer(&bulkhead, &duck[..1]).is_err());
        // DataFusion qualifies unaliased aggregates' names; DuckDB does not.
        assert_eq!(
            same_answer(
                &[json!({"max(cpu.usage_user)": 1})],
                &[json!({"max(usage_user)": 1})]
            ),
            Ok(())
        );
        // A NULL is the same as an absent column.
        assert_eq!(
            same_answer(&[json!({"a": 1, "b": null})], &[json!({"a": 1.0})]),
            Ok(())
        );
    }

    #[test]
    fn sql_is_translated_to_duckdb_names() {
        assert_eq!(
            translate(
                "select date_bin(interval '1 hour', time) as hour, last_value(x order by time) from cpu"
            ),
            "select time_bucket(interval '1 hour', time) as hour, last(x order by time) from cpu"
        );
    }
}
