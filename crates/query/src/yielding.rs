//! Time-sliced execution: every plan yields to the `query` runtime at least every few
//! milliseconds of CPU work, so one heavy query cannot starve the others and an
//! aborted query task (client gone, cancel, timeout) stops within a bounded time.
//!
//! A tokio task can only be aborted, and other tasks on its worker can only run, when
//! its poll returns. DataFusion yields per batch through the task budget, but some
//! operators do unbounded work between two batches of output: a nested-loop or cross
//! join joins each probe batch with every buffered build row, and an aggregate over
//! `generate_series` or such a join consumes millions of batches within one poll.
//! [`guard_plan`] wraps every operator of a physical plan in a [`YieldExec`] whose
//! stream returns `Pending` (after waking itself) once its slice is used up, and cuts
//! the probe input of nested-loop and cross joins into small batches so that a single
//! probe batch is a bounded amount of work.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result;
use datafusion::execution::{RecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::ChildrenPropertiesMode;
use datafusion::physical_plan::joins::{CrossJoinExec, NestedLoopJoinExec};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, ReplaceChildrenOptions,
    SendableRecordBatchStream,
};
use futures::{Stream, StreamExt};

/// Longest a guarded stream keeps its task busy before it yields.
pub const SLICE: Duration = Duration::from_millis(5);

/// Rows per probe batch of a nested-loop or cross join: each one is joined with every
/// build row inside one poll of the join, so that poll costs `PROBE_ROWS` x build rows
/// pair evaluations (DataFusion still evaluates them 8192 pairs at a time).
pub const PROBE_ROWS: usize = 64;

/// Wrap every operator of `plan` in a [`YieldExec`], slicing the probe input of
/// nested-loop and cross joins into batches of [`PROBE_ROWS`].
pub fn guard_plan(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    guard(plan, None)
}

fn guard(
    plan: Arc<dyn ExecutionPlan>,
    split_rows: Option<usize>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let is_loop_join = plan.is::<NestedLoopJoinExec>() || plan.is::<CrossJoinExec>();
    let children: Vec<Arc<dyn ExecutionPlan>> = plan.children().into_iter().cloned().collect();
    let plan = if children.is_empty() {
        plan
    } else {
        let guarded = children
            .into_iter()
            .enumerate()
            // Child 1 is the probe (streamed) side of both joins.
            .map(|(i, c)| guard(c, (is_loop_join && i == 1).then_some(PROBE_ROWS)))
            .collect::<Result<Vec<_>>>()?;
        // Same properties: the guards change no ordering, partitioning or schema, and
        // `Keep` preserves state such as a hash join's dynamic filter.
        plan.replace_children(
            guarded,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep),
        )?
    };
    Ok(Arc::new(YieldExec::new(plan, split_rows)))
}

/// Passes its input's batches through unchanged (or cut into `split_rows`-row slices),
/// yielding once its input has kept the task busy for [`SLICE`].
#[derive(Debug)]
pub struct YieldExec {
    input: Arc<dyn ExecutionPlan>,
    split_rows: Option<usize>,
}

impl YieldExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, split_rows: Option<usize>) -> Self {
        Self { input, split_rows }
    }
}

impl DisplayAs for YieldExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.split_rows {
            Some(rows) => write!(f, "YieldExec: split_rows={rows}"),
            None => write!(f, "YieldExec"),
        }
    }
}

impl ExecutionPlan for YieldExec {
    fn name(&self) -> &str {
        "YieldExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(datafusion::error::DataFusionError::Internal(format!(
                "YieldExec has one child, got {}",
                children.len()
            )));
        }
        Ok(Arc::new(Self::new(
            children.swap_remove(0),
            self.split_rows,
        )))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let inner = self.input.execute(partition, context)?;
        Ok(Box::pin(YieldStream {
            schema: inner.schema(),
            inner,
            split_rows: self.split_rows,
            pending: None,
            slice_start: Instant::now(),
        }))
    }
}

/// The stream of a [`YieldExec`].
struct YieldStream {
    schema: SchemaRef,
    inner: SendableRecordBatchStream,
    split_rows: Option<usize>,
    /// The rest of a batch being handed out in slices: (batch, next offset).
    pending: Option<(RecordBatch, usize)>,
    /// When the task last returned to the runtime, as far as this stream knows.
    slice_start: Instant,
}

impl YieldStream {
    fn next_slice(&mut self, rows: usize) -> Option<Result<RecordBatch>> {
        let (batch, offset) = self.pending.take()?;
        let len = rows.min(batch.num_rows() - offset);
        // Copied, not a zero-copy slice: a join passes probe columns through to its
        // output, and a slice would report (and keep alive) the whole batch's buffers,
        // so a join that buffers that output (the build side of another join) would be
        // charged 128x its memory.
        let indices =
            arrow::array::UInt32Array::from_iter_values(offset as u32..(offset + len) as u32);
        let slice = arrow::compute::take_record_batch(&batch, &indices).map_err(Into::into);
        if offset + len < batch.num_rows() {
            self.pending = Some((batch, offset + len));
        }
        Some(slice)
    }
}

impl Stream for YieldStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Every operator boundary is also a point where the OS thread offers its CPU
        // to a waiting write or WAL thread (issue 24).
        bulkhead_runtime::yield_point();
        if self.slice_start.elapsed() >= SLICE {
            // Out of time: let the runtime run other tasks (and apply an abort), and
            // come back at the end of its queue.
            self.slice_start = Instant::now();
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if let Some(rows) = self.split_rows
            && let Some(slice) = self.next_slice(rows)
        {
            return Poll::Ready(Some(slice));
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Pending => {
                self.slice_start = Instant::now();
                Poll::Pending
            }
            Poll::Ready(Some(Ok(batch))) => match self.split_rows {
                Some(rows) if batch.num_rows() > rows => {
                    self.pending = Some((batch, 0));
                    Poll::Ready(self.next_slice(rows))
                }
                _ => Poll::Ready(Some(Ok(batch))),
            },
            other => other,
        }
    }
}

impl RecordBatchStream for YieldStream {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn run(ctx: &SessionContext, sql: &str, guarded: bool) -> Vec<RecordBatch> {
        let df = ctx.sql(sql).await.unwrap();
        let mut plan = df.create_physical_plan().await.unwrap();
        if guarded {
            plan = guard_plan(plan).unwrap();
        }
        datafusion::physical_plan::collect(plan, ctx.task_ctx())
            .await
            .unwrap()
    }

    /// The guarded plan gives the same answer as the plain one, for joins whose probe
    /// side gets sliced and for aggregates over generators, on random data.
    #[tokio::test]
    async fn guarded_plans_answer_like_plain_ones() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        let ctx = SessionContext::new();
        let values: Vec<String> = (0..3000)
            .map(|_| format!("({}, {})", rng.random_range(0..50), rng.random_range(-5..5)))
            .collect();
        ctx.sql(&format!(
            "create table t(k int, v int) as values {}",
            values.join(",")
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
        for sql in [
            "select count(*), sum(a.v * b.k) from t a, t b where a.v + b.v = 3",
            "select count(*) from t a cross join t b",
            "select a.k, count(*) from t a left join t b on a.k < b.k and a.v = 1 group by a.k order by a.k",
            "select count(*), sum(value) from generate_series(1, 200000)",
            "select k, sum(v) from t group by k order by k",
        ] {
            let plain = run(&ctx, sql, false).await;
            let guarded = run(&ctx, sql, true).await;
            assert_eq!(
                arrow::util::pretty::pretty_format_batches(&plain)
                    .unwrap()
                    .to_string(),
                arrow::util::pretty::pretty_format_batches(&guarded)
                    .unwrap()
                    .to_string(),
                "{sql}"
            );
        }
    }

    /// A cross join that would run for minutes in one poll yields within its slice:
    /// other tasks on a one-worker runtime keep running, and dropping it stops it.
    #[test]
    fn heavy_join_yields_and_stops_when_aborted() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let ctx = SessionContext::new();
            let df = ctx
                .sql(
                    "select count(*) from generate_series(1, 20000) a, \
                     generate_series(1, 1000000000) b where a.value + b.value = 7",
                )
                .await
                .unwrap();
            let plan = guard_plan(df.create_physical_plan().await.unwrap()).unwrap();
            let task = tokio::spawn(datafusion::physical_plan::collect(plan, ctx.task_ctx()));
            // Both run on the same single worker: this only completes if the join yields.
            let ticks = tokio::spawn(async {
                for _ in 0..20 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
            ticks.await.unwrap();
            // 2e13 pairs: it cannot have finished.
            task.abort();
            let err = task.await.unwrap_err();
            assert!(err.is_cancelled(), "{err}");
        });
    }
}
