//! The maintainer: one task on `compact` that, every check interval, brings each
//! rollup up to the buckets past their grace period, one aggregate query per range.
//!
//! The list of rollups is the board's, read again before every round: `CREATE ROLLUP`
//! adds work (and wakes the task), `DROP ROLLUP` sets a rollup's stop flag, which is
//! checked before every range, and waits for the rollup's `running` lock.
//!
//! Crash safety without a state file: the rows of a range are queried in bucket order
//! and written in that order, so whatever a crash interrupts, every bucket before the
//! newest one in the rollup table is complete. At start the maintainer re-runs that
//! newest bucket (same keys, so the rows are overwritten) and goes on from there.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type, UInt64Type};
use bulkhead_engine::{
    DeletePredicate, DeleteRequest, Error as EngineError, FieldValue, ROLE_KEY, Row, SettingChange,
    SmolStr, TableWatch, TableWrite, WriteBatch, parse_delete_mark,
};
use bulkhead_runtime::RuntimeName;
use futures::StreamExt;
use tokio::task::JoinHandle;

use super::board::RollupHandle;
use super::{RollupBoard, RollupConfig, RollupSpec, aggregate_sql};
use crate::error::{QueryError, Result};
use crate::{Pool, QueryEngine};

/// Buckets one aggregate query covers at first; halved while the query runs out of
/// its memory budget (down to one bucket).
const MAX_BUCKETS_PER_QUERY: i64 = 64;
/// Rows per engine write (each write is atomic; the WAL record stays small).
const ROWS_PER_WRITE: usize = 4096;

/// Start the maintainer of every rollup on `query`'s board, now and later ones.
pub(super) fn spawn(query: Arc<QueryEngine>, config: RollupConfig) -> Result<JoinHandle<()>> {
    let runtimes = Arc::clone(query.runtimes());
    let pool = Pool::new(
        config.memory_budget,
        RuntimeName::Compact,
        runtimes.config().threads(RuntimeName::Compact),
        // Background work: each scan decodes in its own task.
        crate::options::BulkheadOptions::new(0, crate::options::DEFAULT_SCAN_TASKS_MIN_ROWS),
    )?;
    let board = Arc::clone(query.rollup_board());
    let mut rollups: Vec<Maintainer> = Vec::new();
    Ok(runtimes.spawn(RuntimeName::Compact, async move {
        loop {
            // Forget dropped rollups, pick up created ones (a rollup dropped and
            // created again is new work: it finds its start point again).
            let work = board.work();
            rollups.retain(|m| work.iter().any(|(_, h)| h.id == m.handle.id));
            for (spec, handle) in work {
                if !rollups.iter().any(|m| m.handle.id == handle.id) {
                    rollups.push(Maintainer::new(spec, handle, query.engine()));
                }
            }
            for m in &mut rollups {
                m.run(&query, &pool, &board).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(config.check_interval) => {}
                _ = board.changed.notified() => {}
            }
        }
    }))
}

/// One rollup's in-memory progress.
struct Maintainer {
    spec: RollupSpec,
    handle: RollupHandle,
    every: i64,
    grace: i64,
    /// Every bucket before this is materialized; `None` until found (see `start_point`).
    done: Option<i64>,
    /// Buckets per query now (halved on "resources exhausted").
    buckets_per_query: i64,
    /// The source's tombstones (by sequence) whose buckets were computed again.
    redone: HashSet<u64>,
    /// Whether the ranges a crash left to compute again were read from the manifest.
    redo_loaded: bool,
    /// The engine's watch on the source: rows written late (below `done`), and a
    /// manifest mark per delete (`dirty_prefix`), set with the delete's tombstone.
    watch: Arc<TableWatch>,
}

/// Why a range of computed buckets is computed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Redo {
    /// A delete seen as a live tombstone of the source: mark the range, clear it first
    /// (a series whose every row was deleted has no bucket left to overwrite its old
    /// one).
    Tombstone,
    /// A delete seen as its mark in the manifest (which stays until the range is
    /// done, so no other mark): clear the range first.
    DeleteMark,
    /// Rows written late: mark the range, clear it first (a recomputed aggregate may
    /// be NULL now, e.g. `last` of a field the newest row lacks, and a rollup row
    /// written without it would keep its old value).
    Late,
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, nanos)
}

impl Maintainer {
    fn new(spec: RollupSpec, handle: RollupHandle, engine: &bulkhead_engine::Engine) -> Self {
        let watch = engine.watch(&spec.database, &spec.source, dirty_prefix(&spec));
        Self {
            watch,
            every: nanos(spec.every).max(1),
            grace: nanos(spec.grace_period),
            spec,
            handle,
            done: None,
            buckets_per_query: MAX_BUCKETS_PER_QUERY,
            redone: HashSet::new(),
            redo_loaded: false,
        }
    }

    /// The start of the bucket holding `t`.
    fn floor(&self, t: i64) -> i64 {
        t - t.rem_euclid(self.every)
    }

    /// Materialize every ready bucket; a failure is recorded and retried next time.
    async fn run(&mut self, query: &QueryEngine, pool: &Pool, board: &RollupBoard) {
        let running = Arc::clone(&self.handle.running);
        let _running = running.lock().await;
        if self.stopped() {
            return;
        }
        let ready = self.floor(now_nanos().saturating_sub(self.grace));
        board.update(self.handle.id, |s| s.ready_until = Some(ready));
        let result = match self.catch_up(query, pool, board, ready).await {
            Ok(()) => self.redo_changes(query, pool, board).await,
            Err(e) => Err(e),
        };
        let done = self.done;
        board.update(self.handle.id, |s| {
            s.last_run = Some(now_nanos());
            s.runs += 1;
            s.done_until = done;
            match &result {
                Ok(()) => s.last_error = None,
                Err(e) => {
                    s.errors += 1;
                    s.last_error = Some(e.to_string());
                }
            }
        });
        if let Err(e) = result {
            tracing::warn!(rollup = %self.spec.qualified_name(), error = %e, "rollup run failed");
        }
    }

    /// `DROP ROLLUP` asked this rollup to stop.
    fn stopped(&self) -> bool {
        self.handle.stop.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn catch_up(
        &mut self,
        query: &QueryEngine,
        pool: &Pool,
        board: &RollupBoard,
        ready: i64,
    ) -> Result<()> {
        let db = &self.spec.database;
        if query.engine().table_schema(db, &self.spec.source).is_none() {
            return Ok(()); // no source (yet, or dropped): nothing to aggregate
        }
        if self.done.is_none() {
            self.done = self.start_point(query, pool).await?;
            if let Some(done) = self.done {
                self.watch.raise_threshold(done);
            }
        }
        let Some(start) = self.done.filter(|d| *d < ready) else {
            return Ok(());
        };
        if self.stopped() {
            return Ok(());
        }
        self.fill(query, pool, board, start, ready, |me, next| {
            me.done = Some(next);
            board.update(me.handle.id, |s| s.done_until = Some(next));
            !me.stopped()
        })
        .await
    }

    /// Compute the buckets of `[start, end)`: `buckets_per_query` of them per query
    /// (halved while a query is over the memory budget), jumping over gaps in the
    /// source. After each query, `progress` gets where the next one starts; when it
    /// returns false (the rollup was stopped), the fill stops there.
    async fn fill(
        &mut self,
        query: &QueryEngine,
        pool: &Pool,
        board: &RollupBoard,
        start: i64,
        end: i64,
        mut progress: impl FnMut(&mut Self, i64) -> bool,
    ) -> Result<()> {
        let mut at = start;
        while at < end {
            let span = self.every.saturating_mul(self.buckets_per_query);
            let stop = at.saturating_add(span).min(end);
            // From now on, a row written before `stop` is late (it may miss the query).
            self.watch.raise_threshold(stop);
            let written = match self.materialize(query, pool, board, at, stop).await {
                Ok(n) => n,
                Err(QueryError::ResourcesExhausted(e)) if self.buckets_per_query > 1 => {
                    self.buckets_per_query /= 2;
                    tracing::info!(
                        rollup = %self.spec.qualified_name(),
                        buckets = self.buckets_per_query,
                        error = %e,
                        "rollup query over its memory budget: fewer buckets per query"
                    );
                    continue;
                }
                Err(e) => return Err(e),
            };
            at = if written == 0 && stop < end {
                // A gap in the source: jump to its next row (or to `end`).
                self.next_row(query, pool, stop, end).await?
            } else {
                stop
            };
            if !progress(self, at) {
                break;
            }
        }
        Ok(())
    }

    /// The start of the bucket of the source's first row at or after `from`, within
    /// `[from, limit]` (`limit` if there is none).
    async fn next_row(
        &self,
        query: &QueryEngine,
        pool: &Pool,
        from: i64,
        limit: i64,
    ) -> Result<i64> {
        let sql = format!(
            "SELECT CAST(min(\"time\") AS BIGINT) FROM {} WHERE \"time\" >= '{}'",
            ident(&self.spec.source),
            rfc3339(from)
        );
        Ok(
            match scalar(query, pool, &self.spec.database, &sql).await? {
                Some(t) => self.floor(t).clamp(from, limit),
                None => limit,
            },
        )
    }

    /// Where to start: the newest bucket in the rollup table (re-run, in case a crash
    /// cut it short), else the source's oldest bucket; `None` while the source is empty.
    async fn start_point(&self, query: &QueryEngine, pool: &Pool) -> Result<Option<i64>> {
        let db = &self.spec.database;
        let engine = query.engine();
        for table in [&self.spec.name, &self.spec.source] {
            if engine.table_schema(db, table).is_none() {
                continue;
            }
            let agg = if table == &self.spec.name {
                "max"
            } else {
                "min"
            };
            let sql = format!(
                "SELECT CAST({agg}(\"time\") AS BIGINT) FROM {}",
                ident(table)
            );
            if let Some(t) = scalar(query, pool, db, &sql).await? {
                return Ok(Some(self.floor(t)));
            }
        }
        Ok(None)
    }

    /// The computed buckets (before `done`) that rows in `[min, max]` fall in.
    fn span(&self, min: i64, max: i64, done: i64) -> (i64, i64) {
        let start = self.floor(min.max(i64::MIN / 2));
        let end = self
            .floor(max.min(done.saturating_sub(1)))
            .saturating_add(self.every)
            .min(done);
        (start, end)
    }

    /// Compute again the computed buckets that changed in the source since: those
    /// late rows were written to (the source's watch), and those a delete touched.
    /// A delete is known by its mark in the manifest, set with its tombstone (so
    /// compaction cannot hide it) and removed here once its range is computed
    /// again, or by its live tombstone (a delete from before the watch existed).
    /// First, after a start, the ranges a crash interrupted, which the manifest keeps.
    async fn redo_changes(
        &mut self,
        query: &QueryEngine,
        pool: &Pool,
        board: &RollupBoard,
    ) -> Result<()> {
        let Some(done) = self.done else {
            return Ok(());
        };
        let engine = query.engine();
        if !self.redo_loaded {
            for (key, end) in engine.properties(&redo_prefix(&self.spec)) {
                let start = key.rsplit('/').next().and_then(|s| s.parse().ok());
                if let (Some(start), Ok(end)) = (start, end.parse()) {
                    if self.stopped() {
                        return Ok(());
                    }
                    if start < end {
                        self.redo(query, pool, board, start, end, Redo::Tombstone)
                            .await?;
                    }
                }
            }
            self.redo_loaded = true;
        }
        if let Some((min, max)) = self.watch.take_late() {
            let (start, end) = self.span(min, max, done);
            if start < end {
                let redone = self.redo(query, pool, board, start, end, Redo::Late).await;
                if redone.is_err() {
                    self.watch.record_late(min, max); // retried at the next run
                }
                redone?;
            }
        }
        // Deletes by sequence: (min, max, the key of its mark if it has one).
        let prefix = dirty_prefix(&self.spec);
        let mut deletes: BTreeMap<u64, (i64, i64, Option<String>)> = BTreeMap::new();
        for (key, value) in engine.properties(&prefix) {
            let mark = key
                .strip_prefix(&prefix)
                .and_then(|seq| parse_delete_mark(seq, &value));
            if let Some((seq, min, max)) = mark {
                deletes.insert(seq, (min, max, Some(key)));
            }
        }
        for t in engine.tombstones(&self.spec.database, &self.spec.source) {
            deletes
                .entry(t.seq)
                .or_insert((t.min_time, t.max_time, None));
        }
        let mut handled = Vec::new();
        for (seq, (min, max, key)) in deletes {
            if self.stopped() {
                break;
            }
            if !self.redone.contains(&seq) {
                let (start, end) = self.span(min, max, done);
                if start < end {
                    let kind = match key {
                        Some(_) => Redo::DeleteMark,
                        None => Redo::Tombstone,
                    };
                    self.redo(query, pool, board, start, end, kind).await?;
                }
                self.redone.insert(seq);
            }
            handled.extend(key);
        }
        if !handled.is_empty() {
            let changes = handled
                .into_iter()
                .map(|key| SettingChange::Property { key, value: None })
                .collect();
            engine
                .commit_settings(changes)
                .await
                .map_err(|e| QueryError::Execution(format!("unmarking deletes: {e}")))?;
        }
        Ok(())
    }

    /// Compute `[start, end)` again: mark it in the manifest (so a crash before the
    /// end redoes it; a delete's own mark does that already), remove the rollup's
    /// rows in it (see [`Redo`]), compute it, unmark.
    async fn redo(
        &mut self,
        query: &QueryEngine,
        pool: &Pool,
        board: &RollupBoard,
        start: i64,
        end: i64,
        kind: Redo,
    ) -> Result<()> {
        let engine = query.engine();
        let key = format!("{}{start}", redo_prefix(&self.spec));
        let failed = |e: EngineError| QueryError::Execution(format!("recomputing buckets: {e}"));
        let marked = kind != Redo::DeleteMark;
        if marked {
            mark(engine, &key, Some(end.to_string()))
                .await
                .map_err(failed)?;
        }
        self.clear(engine, start, end).await.map_err(failed)?;
        self.fill(query, pool, board, start, end, |_, _| true)
            .await?;
        if marked {
            mark(engine, &key, None).await.map_err(failed)?;
        }
        let why = match kind {
            Redo::Late => "rows written late",
            Redo::Tombstone | Redo::DeleteMark => "a delete",
        };
        tracing::info!(
            rollup = %self.spec.qualified_name(),
            from = %rfc3339(start),
            to = %rfc3339(end),
            "rollup buckets computed again after {why} in the source"
        );
        Ok(())
    }

    /// Delete the rollup's rows in `[start, end)`.
    async fn clear(
        &self,
        engine: &bulkhead_engine::Engine,
        start: i64,
        end: i64,
    ) -> std::result::Result<(), EngineError> {
        let delete = DeleteRequest {
            table: Some(self.spec.name.clone()),
            min_time: start,
            max_time: end - 1,
            predicate: DeletePredicate::All,
        };
        match engine.delete(&self.spec.database, delete).await {
            Ok(_) | Err(EngineError::TableNotFound { .. } | EngineError::DatabaseNotFound(_)) => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Aggregate the buckets in `[start, end)` and write them; returns the rows written.
    async fn materialize(
        &self,
        query: &QueryEngine,
        pool: &Pool,
        board: &RollupBoard,
        start: i64,
        end: i64,
    ) -> Result<usize> {
        let Some(plan) = Plan::new(query, &self.spec) else {
            return Ok(0); // the source table does not exist (yet)
        };
        let sql = plan.sql(&self.spec, self.every, start, end);
        board.update(self.handle.id, |s| s.queries += 1);
        let out = query.sql_in_pool(pool, &self.spec.database, &sql).await?;
        let mut batches = out.batches;
        let mut rows = Vec::new();
        let mut written = 0;
        while let Some(batch) = batches.next().await {
            plan.rows(&batch?, &mut rows)?;
            if rows.len() >= ROWS_PER_WRITE {
                written += self.write(query, board, &mut rows).await?;
            }
        }
        written += self.write(query, board, &mut rows).await?;
        Ok(written)
    }

    async fn write(
        &self,
        query: &QueryEngine,
        board: &RollupBoard,
        rows: &mut Vec<Row>,
    ) -> Result<usize> {
        if rows.is_empty() {
            return Ok(0);
        }
        let n = rows.len();
        let batch = WriteBatch {
            tables: vec![TableWrite {
                table: self.spec.name.clone(),
                rows: std::mem::take(rows),
            }],
        };
        query
            .engine()
            .write(&self.spec.database, batch)
            .await
            .map_err(|e| QueryError::Execution(format!("writing the rollup rows: {e}")))?;
        board.update(self.handle.id, |s| s.rows_written += n as u64);
        Ok(n)
    }
}

/// The columns of one aggregate query: the source's tags, then the bucket, then one
/// column per (field, aggregate).
struct Plan {
    tags: Vec<String>,
    /// (output column, SQL expression), e.g. (`usage_avg`, `avg("usage")`).
    outputs: Vec<(String, String)>,
}

impl Plan {
    /// From the source's current schema; `None` if the source does not exist.
    fn new(query: &QueryEngine, spec: &RollupSpec) -> Option<Self> {
        let schema = query.engine().table_schema(&spec.database, &spec.source)?;
        let mut tags = Vec::new();
        let mut outputs = Vec::new();
        for field in schema.fields() {
            let role = field.metadata().get(ROLE_KEY).map(String::as_str);
            let name = field.name();
            match role {
                Some("tag") => tags.push(name.clone()),
                Some("field")
                    if matches!(
                        field.data_type(),
                        DataType::Float64 | DataType::Int64 | DataType::UInt64
                    ) && (spec.fields.is_empty() || spec.fields.contains(name)) =>
                {
                    for a in &spec.aggregates {
                        outputs.push((format!("{name}_{a}"), aggregate_sql(*a, &ident(name))));
                    }
                }
                _ => {}
            }
        }
        Some(Self { tags, outputs })
    }

    fn sql(&self, spec: &RollupSpec, every: i64, start: i64, end: i64) -> String {
        let mut select: Vec<String> = self.tags.iter().map(|t| ident(t)).collect();
        select.push(format!(
            "date_bin(INTERVAL '{every} nanoseconds', \"time\") AS \"__bucket\""
        ));
        for (name, expr) in &self.outputs {
            select.push(format!("{expr} AS {}", ident(name)));
        }
        let group: Vec<String> = (1..=self.tags.len() + 1).map(|i| i.to_string()).collect();
        format!(
            "SELECT {} FROM {} WHERE \"time\" >= '{}' AND \"time\" < '{}' GROUP BY {} ORDER BY \"__bucket\"",
            select.join(", "),
            ident(&spec.source),
            rfc3339(start),
            rfc3339(end),
            group.join(", ")
        )
    }

    /// Append `batch`'s rows (skipping those whose every aggregate is NULL).
    fn rows(&self, batch: &RecordBatch, out: &mut Vec<Row>) -> Result<()> {
        let n_tags = self.tags.len();
        let err = |e: arrow::error::ArrowError| QueryError::Execution(e.to_string());
        let tags = (0..n_tags)
            .map(|i| cast(batch.column(i), &DataType::Utf8).map_err(err))
            .collect::<Result<Vec<_>>>()?;
        let time = cast(batch.column(n_tags), &DataType::Int64).map_err(err)?;
        let time = time.as_primitive::<Int64Type>();
        let fields = (0..self.outputs.len())
            .map(|i| {
                let col = batch.column(n_tags + 1 + i);
                match col.data_type() {
                    DataType::Float64 | DataType::Int64 | DataType::UInt64 => Ok(Arc::clone(col)),
                    _ => cast(col, &DataType::Float64).map_err(err),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        for row in 0..batch.num_rows() {
            let mut values = Vec::with_capacity(fields.len());
            for (col, (name, _)) in fields.iter().zip(&self.outputs) {
                if col.is_null(row) {
                    continue;
                }
                let v = match col.data_type() {
                    DataType::Int64 => FieldValue::I64(col.as_primitive::<Int64Type>().value(row)),
                    DataType::UInt64 => {
                        FieldValue::U64(col.as_primitive::<UInt64Type>().value(row))
                    }
                    _ => FieldValue::F64(col.as_primitive::<Float64Type>().value(row)),
                };
                values.push((SmolStr::new(name), v));
            }
            if values.is_empty() || time.is_null(row) {
                continue;
            }
            let tags = self
                .tags
                .iter()
                .zip(&tags)
                .filter(|(_, col)| !col.is_null(row))
                .map(|(name, col)| {
                    (
                        SmolStr::new(name),
                        SmolStr::new(col.as_string::<i32>().value(row)),
                    )
                })
                .collect();
            out.push(Row {
                tags,
                fields: values,
                time: time.value(row),
            });
        }
        Ok(())
    }
}

/// The single `BIGINT` (or NULL) a query like `SELECT CAST(min(time) AS BIGINT)` returns.
async fn scalar(query: &QueryEngine, pool: &Pool, db: &str, sql: &str) -> Result<Option<i64>> {
    let batches = query.sql_in_pool(pool, db, sql).await?.collect().await?;
    for b in &batches {
        if b.num_rows() > 0 && b.num_columns() > 0 {
            let col = cast(b.column(0), &DataType::Int64)
                .map_err(|e| QueryError::Execution(e.to_string()))?;
            let col = col.as_primitive::<Int64Type>();
            return Ok((!col.is_null(0)).then(|| col.value(0)));
        }
    }
    Ok(None)
}

/// Set or clear the manifest property `key` (a range to compute again).
async fn mark(
    engine: &bulkhead_engine::Engine,
    key: &str,
    value: Option<String>,
) -> std::result::Result<(), EngineError> {
    engine
        .commit_settings(vec![SettingChange::Property {
            key: key.to_string(),
            value,
        }])
        .await
}

/// Prefix of the manifest properties marking ranges of `spec` to compute again,
/// `rollup-redo/"db"."name"/{start}` = `{end}`.
pub(super) fn redo_prefix(spec: &RollupSpec) -> String {
    format!(
        "rollup-redo/{}.{}/",
        super::sql::quote(&spec.database),
        super::sql::quote(&spec.name)
    )
}

/// Prefix of the manifest properties the engine sets for each delete in `spec`'s
/// source, `rollup-dirty/"db"."name"/{seq}` = `{min_time}:{max_time}` (`watch.rs` of
/// the engine), removed once its buckets are computed again.
pub(super) fn dirty_prefix(spec: &RollupSpec) -> String {
    format!(
        "rollup-dirty/{}.{}/",
        super::sql::quote(&spec.database),
        super::sql::quote(&spec.name)
    )
}

/// A double-quoted SQL identifier (case kept).
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `t` (ns since the epoch) as an RFC 3339 literal with nanoseconds.
fn rfc3339(t: i64) -> String {
    match arrow::temporal_conversions::timestamp_ns_to_datetime(t) {
        Some(dt) => dt.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string(),
        None => "1970-01-01T00:00:00Z".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_render_with_nanoseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_500_000_001), "1970-01-01T00:00:01.500000001Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(ident("cpu"), "\"cpu\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }
}
