//! The declared rollups and what each has done: the maintainer's list of work (added
//! to and removed from by `CREATE ROLLUP` / `DROP ROLLUP`), `system.rollups` and
//! `/metrics`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampNanosecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use super::RollupSpec;

/// Where a rollup was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A `[[rollup]]` entry of the config file.
    Config,
    /// `CREATE ROLLUP`, kept in the engine's manifest.
    Sql,
}

impl Origin {
    /// `config` or `sql`, as `system.rollups.origin` shows it.
    pub fn name(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Sql => "sql",
        }
    }
}

/// The progress of one rollup.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupStatus {
    pub spec: RollupSpec,
    pub origin: Origin,
    /// Every bucket before this time (ns) is materialized; `None` before the first run
    /// (or while the source is empty).
    pub done_until: Option<i64>,
    /// Buckets ending before this were ready (past their grace period) at the last run.
    pub ready_until: Option<i64>,
    /// Rows written to the rollup table since the start.
    pub rows_written: u64,
    /// Aggregate queries run since the start.
    pub queries: u64,
    /// Runs that failed since the start.
    pub errors: u64,
    /// The last failure's message (cleared by a run that succeeds).
    pub last_error: Option<String>,
    /// When the last run ended (ns since the epoch).
    pub last_run: Option<i64>,
    /// Runs ended since the start.
    pub runs: u64,
}

/// How the maintainer and `DROP ROLLUP` meet over one declared rollup.
#[derive(Debug, Clone)]
pub(crate) struct RollupHandle {
    /// Unique for the board's life: a rollup dropped and created again is new work.
    pub(crate) id: u64,
    /// Set by `DROP ROLLUP`: the maintainer stops before its next range of buckets.
    pub(crate) stop: Arc<AtomicBool>,
    /// Held by the maintainer while it works on this rollup; `DROP ROLLUP` takes it
    /// after setting `stop`, so once it answers no more rows are written.
    pub(crate) running: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug)]
struct Entry {
    handle: RollupHandle,
    status: RollupStatus,
}

/// Every declared rollup and its [`RollupStatus`], shared by the maintainer and the
/// SQL layer.
#[derive(Debug, Default)]
pub struct RollupBoard {
    rollups: Mutex<Vec<Entry>>,
    next_id: AtomicU64,
    /// Wakes the maintainer when a rollup is added or removed.
    pub(crate) changed: tokio::sync::Notify,
    /// Held by `CREATE ROLLUP` and `DROP ROLLUP` from their checks until they answer,
    /// so two of them never decide on the same state.
    pub(crate) ddl: tokio::sync::Mutex<()>,
}

impl RollupBoard {
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        // Updates are single assignments: a panic cannot leave a status half changed.
        self.rollups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add `spec`, declared in `origin`, and wake the maintainer.
    pub(crate) fn register(&self, spec: &RollupSpec, origin: Origin) -> RollupHandle {
        let handle = RollupHandle {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            stop: Arc::new(AtomicBool::new(false)),
            running: Arc::new(tokio::sync::Mutex::new(())),
        };
        self.lock().push(Entry {
            handle: handle.clone(),
            status: RollupStatus {
                spec: spec.clone(),
                origin,
                done_until: None,
                ready_until: None,
                rows_written: 0,
                queries: 0,
                errors: 0,
                last_error: None,
                last_run: None,
                runs: 0,
            },
        });
        self.changed.notify_one();
        handle
    }

    /// Have the maintainer run now instead of at its next interval (after the run
    /// in progress, if any).
    pub fn wake(&self) {
        self.changed.notify_one();
    }

    /// Remove the rollup whose table is `db.name`, tell the maintainer to stop it and
    /// wake it; the caller waits on the handle's `running` lock.
    pub(crate) fn remove(&self, db: &str, name: &str) -> Option<RollupHandle> {
        let mut rollups = self.lock();
        let i = rollups
            .iter()
            .position(|e| e.status.spec.database == db && e.status.spec.name == name)?;
        let entry = rollups.remove(i);
        drop(rollups);
        entry.handle.stop.store(true, Ordering::SeqCst);
        self.changed.notify_one();
        Some(entry.handle)
    }

    /// The rollup whose table is `db.name`.
    pub(crate) fn find(&self, db: &str, name: &str) -> Option<(RollupSpec, Origin)> {
        self.lock()
            .iter()
            .find(|e| e.status.spec.database == db && e.status.spec.name == name)
            .map(|e| (e.status.spec.clone(), e.status.origin))
    }

    /// Every declared rollup with its handle, for the maintainer.
    pub(crate) fn work(&self) -> Vec<(RollupSpec, RollupHandle)> {
        self.lock()
            .iter()
            .map(|e| (e.status.spec.clone(), e.handle.clone()))
            .collect()
    }

    /// Every declared rollup.
    pub(crate) fn specs(&self) -> Vec<RollupSpec> {
        self.lock().iter().map(|e| e.status.spec.clone()).collect()
    }

    /// Change the status of rollup `id` (nothing if it was dropped meanwhile).
    pub(crate) fn update(&self, id: u64, f: impl FnOnce(&mut RollupStatus)) {
        if let Some(e) = self.lock().iter_mut().find(|e| e.handle.id == id) {
            f(&mut e.status);
        }
    }

    /// A copy of every status.
    pub fn snapshot(&self) -> Vec<RollupStatus> {
        self.lock().iter().map(|e| e.status.clone()).collect()
    }

    /// `system.rollups`: one row per rollup.
    pub(crate) fn to_batch(&self) -> datafusion::error::Result<RecordBatch> {
        let rows = self.snapshot();
        let utf8 = |n: &str, null| Field::new(n, DataType::Utf8, null);
        let ts = |n: &str| {
            Field::new(
                n,
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                true,
            )
        };
        let u64f = |n: &str| Field::new(n, DataType::UInt64, false);
        let schema = Arc::new(Schema::new(vec![
            utf8("database", false),
            utf8("name", false),
            utf8("source", false),
            utf8("aggregates", false),
            Field::new("every_seconds", DataType::Float64, false),
            Field::new("grace_period_seconds", DataType::Float64, false),
            Field::new("retention_seconds", DataType::Float64, true),
            ts("done_until"),
            Field::new("lag_seconds", DataType::Float64, true),
            u64f("rows_written"),
            u64f("queries"),
            u64f("errors"),
            utf8("last_error", true),
            ts("last_run"),
            utf8("origin", false),
            utf8("definition", false),
        ]));
        let strings = |f: &dyn Fn(&RollupStatus) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
        };
        let secs = |f: &dyn Fn(&RollupStatus) -> Option<f64>| -> ArrayRef {
            Arc::new(arrow::array::Float64Array::from_iter(rows.iter().map(f)))
        };
        let times = |f: &dyn Fn(&RollupStatus) -> Option<i64>| -> ArrayRef {
            Arc::new(TimestampNanosecondArray::from_iter(rows.iter().map(f)).with_timezone("UTC"))
        };
        let counts = |f: &dyn Fn(&RollupStatus) -> u64| -> ArrayRef {
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(f)))
        };
        let columns = vec![
            strings(&|s| s.spec.database.clone()),
            strings(&|s| s.spec.name.clone()),
            strings(&|s| s.spec.source.clone()),
            strings(&|s| {
                let names: Vec<_> = s.spec.aggregates.iter().map(|a| a.name()).collect();
                names.join(",")
            }),
            secs(&|s| Some(s.spec.every.as_secs_f64())),
            secs(&|s| Some(s.spec.grace_period.as_secs_f64())),
            secs(&|s| s.spec.retention.map(|d| d.as_secs_f64())),
            times(&|s| s.done_until),
            // How far materialization is behind what is ready: 0 when caught up.
            secs(&|s| {
                let (done, ready) = (s.done_until?, s.ready_until?);
                Some(ready.saturating_sub(done).max(0) as f64 / 1e9)
            }),
            counts(&|s| s.rows_written),
            counts(&|s| s.queries),
            counts(&|s| s.errors),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|s| s.last_error.clone()),
            )),
            times(&|s| s.last_run),
            strings(&|s| s.origin.name().to_string()),
            strings(&|s| super::sql::to_sql(&s.spec)),
        ];
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    /// `bulkhead_rollup_*` lines for `/metrics`.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let rows = self.snapshot();
        if rows.is_empty() {
            return out;
        }
        let mut family =
            |name: &str, kind: &str, help: &str, value: &dyn Fn(&RollupStatus) -> Option<f64>| {
                out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
                for s in &rows {
                    if let Some(v) = value(s) {
                        out.push_str(&format!(
                            "{name}{{database=\"{}\",rollup=\"{}\"}} {v}\n",
                            escape(&s.spec.database),
                            escape(&s.spec.name)
                        ));
                    }
                }
            };
        family(
            "bulkhead_rollup_rows_written_total",
            "counter",
            "Rows written to rollup tables.",
            &|s| Some(s.rows_written as f64),
        );
        family(
            "bulkhead_rollup_errors_total",
            "counter",
            "Rollup runs that failed.",
            &|s| Some(s.errors as f64),
        );
        family(
            "bulkhead_rollup_lag_seconds",
            "gauge",
            "How far a rollup's materialized buckets are behind the buckets past their grace period.",
            &|s| Some(s.ready_until?.saturating_sub(s.done_until?).max(0) as f64 / 1e9),
        );
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
