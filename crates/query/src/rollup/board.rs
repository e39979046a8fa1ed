//! What each rollup has done, for `system.rollups` and `/metrics`.

use std::sync::{Arc, Mutex, MutexGuard};

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampNanosecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use super::RollupSpec;

/// The progress of one rollup.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupStatus {
    pub spec: RollupSpec,
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
}

/// Every rollup's [`RollupStatus`], shared by the maintainer and the SQL layer.
#[derive(Debug, Default)]
pub struct RollupBoard {
    rollups: Mutex<Vec<RollupStatus>>,
}

impl RollupBoard {
    fn lock(&self) -> MutexGuard<'_, Vec<RollupStatus>> {
        // Updates are single assignments: a panic cannot leave a status half changed.
        self.rollups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add `spec`; returns its index for [`Self::update`].
    pub(crate) fn register(&self, spec: &RollupSpec) -> usize {
        let mut rollups = self.lock();
        rollups.push(RollupStatus {
            spec: spec.clone(),
            done_until: None,
            ready_until: None,
            rows_written: 0,
            queries: 0,
            errors: 0,
            last_error: None,
            last_run: None,
        });
        rollups.len() - 1
    }

    /// Change rollup `i`'s status.
    pub(crate) fn update(&self, i: usize, f: impl FnOnce(&mut RollupStatus)) {
        if let Some(s) = self.lock().get_mut(i) {
            f(s);
        }
    }

    /// A copy of every status.
    pub fn snapshot(&self) -> Vec<RollupStatus> {
        self.lock().clone()
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
