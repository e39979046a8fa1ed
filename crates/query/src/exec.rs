//! Running a query on the `query` bulkhead and streaming its batches to the caller.
//!
//! Planning and every poll of the physical plan happen on `query` (DataFusion's own
//! internal tasks, spawned with `tokio::spawn`, land there too). A caller on `io` (a
//! PostgreSQL or Flight SQL handler) gets a task of its own on `query` and only
//! receives finished batches through a small bounded channel, so a heavy query can
//! slow down its own client but never the io workers. A caller already on `query`
//! (the HTTP handler's query task) plans and polls in its own task. Either way,
//! dropping the output stream stops the query: a client that goes away cancels it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bulkhead_runtime::{RuntimeName, Runtimes};
use datafusion::execution::TaskContext;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::session_state::SessionState;
use datafusion::physical_plan::{SendableRecordBatchStream, execute_stream};
use datafusion::prelude::SessionContext;
use futures::stream::BoxStream;
use futures::{FutureExt, SinkExt, Stream, StreamExt};
use tokio::task::JoinHandle;

use crate::error::{QueryError, Result};
use crate::plan_cache::CachedPlans;

/// Batches buffered between the query task and the consumer.
const BATCH_BUFFER: usize = 2;

/// A running query: its schema, and its batches as they are produced.
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: BoxStream<'static, Result<RecordBatch>>,
}

impl std::fmt::Debug for QueryOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryOutput")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl QueryOutput {
    /// Collect every batch (for tests and small results).
    pub async fn collect(self) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        let mut batches = self.batches;
        while let Some(b) = batches.next().await {
            out.push(b?);
        }
        Ok(out)
    }
}

/// What a query plans and runs in: its own copy of its database's session state (so
/// `now()` is its own start time and a `SET` changes nothing but itself), and the
/// task context built once with the state it was copied from, if there is one.
pub(crate) struct QuerySession {
    pub(crate) state: SessionState,
    task: Option<Arc<TaskContext>>,
}

impl QuerySession {
    /// A copy of `state` started now, running with `task` (which must have been built
    /// from a state with the same configuration and functions) or, without one, a
    /// task context of its own.
    pub(crate) fn new(state: &SessionState, task: Option<Arc<TaskContext>>) -> Self {
        let mut state = state.clone();
        state.mark_start_execution();
        Self { state, task }
    }
}

impl From<SessionContext> for QuerySession {
    fn from(ctx: SessionContext) -> Self {
        Self {
            state: ctx.state(),
            task: None,
        }
    }
}

/// Plan and run `sql` in `session` on `runtime` (`query`; `compact` for rollups); with
/// `drop_applied_filters`, without the filter conjuncts its scans already applied.
///
/// Called from a thread of `runtime` itself (the HTTP handler's query task), the query
/// is planned and polled right there, in the caller's task: a second task and a channel
/// would only add a hand-off, and the wake-up of a parked thread it may cost, to every
/// query. Called from elsewhere (a PostgreSQL or Flight SQL handler on `io`), it runs
/// in a task of its own on `runtime` and the caller receives finished batches.
pub(crate) async fn run_sql(
    runtimes: &Runtimes,
    runtime: RuntimeName,
    session: QuerySession,
    sql: String,
    pg: Option<Arc<crate::pg::PgCompat>>,
    cached: Option<CachedPlans>,
    drop_applied_filters: bool,
) -> Result<QueryOutput> {
    if runtimes.on(runtime) {
        let planned =
            std::panic::AssertUnwindSafe(plan(session, sql, pg, cached, drop_applied_filters))
                .catch_unwind()
                .await;
        let (schema, stream) = match planned {
            Ok(planned) => planned?,
            Err(_) => return Err(QueryError::Execution("the query planner panicked".into())),
        };
        return Ok(QueryOutput {
            schema,
            batches: Inline {
                stream: std::panic::AssertUnwindSafe(stream).catch_unwind().boxed(),
                finished: false,
            }
            .boxed(),
        });
    }
    let (schema_tx, schema_rx) = tokio::sync::oneshot::channel();
    let (mut tx, rx) = futures::channel::mpsc::channel(BATCH_BUFFER);
    let task = runtimes.spawn(runtime, async move {
        let mut stream = match plan(session, sql, pg, cached, drop_applied_filters).await {
            Ok((schema, stream)) => {
                if schema_tx.send(Ok(schema)).is_err() {
                    return; // caller gone
                }
                stream
            }
            Err(e) => {
                let _ = schema_tx.send(Err(e));
                return;
            }
        };
        while let Some(batch) = stream.next().await {
            let item = batch.map_err(QueryError::from);
            let stop = item.is_err();
            if tx.send(Some(item)).await.is_err() || stop {
                return;
            }
        }
        // The clean end: without it the consumer reports a truncated result.
        let _ = tx.send(None).await;
    });
    let guard = AbortOnDrop(task);
    let schema = match schema_rx.await {
        Ok(result) => result?,
        Err(_) => return Err(QueryError::Cancelled),
    };
    Ok(QueryOutput {
        schema,
        batches: Batches {
            rx,
            finished: false,
            _guard: guard,
        }
        .boxed(),
    })
}

/// Parse, plan and start `sql`: its output schema and its stream of batches.
async fn plan(
    session: QuerySession,
    sql: String,
    pg: Option<Arc<crate::pg::PgCompat>>,
    cached: Option<CachedPlans>,
    drop_applied_filters: bool,
) -> Result<(SchemaRef, SendableRecordBatchStream)> {
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false);
    // What `SessionContext::sql_with_options` does, with the depth check between
    // parsing and planning.
    let QuerySession { state, task } = session;
    let (statement, depth) = crate::depth::parse(&state, &sql, pg.as_deref())?;
    let cached_plan = match &cached {
        // Templating clones, prints and drops the tree on this thread's stack: only for
        // the shallow statements that dashboards send.
        Some(c) if depth <= crate::plan_cache::MAX_DEPTH => {
            c.plan(&state, &statement, &sql, &options).await
        }
        _ => None,
    };
    let (plan, task) = match cached_plan {
        Some(plan) => {
            let task = task.unwrap_or_else(|| Arc::new(TaskContext::from(&state)));
            (plan?, task)
        }
        None => {
            let plan = state.statement_to_plan(statement).await?;
            options.verify_plan(&plan)?;
            // A `SET` changes this context's configuration, which the task then reads.
            let ctx = SessionContext::new_with_state(state);
            let df = ctx.execute_logical_plan(plan).await?;
            (df.create_physical_plan().await?, ctx.task_ctx())
        }
    };
    // Filter conjuncts the engine scan already applied (its time range).
    let plan = if drop_applied_filters {
        crate::applied_filters::drop_applied(plan)?
    } else {
        plan
    };
    // Time-sliced: the query yields every few ms, so others run and an abort (client
    // gone, cancel, timeout) takes effect within a bounded time.
    let plan = crate::yielding::guard_plan(plan)?;
    let stream = execute_stream(Arc::clone(&plan), task)?;
    Ok((plan.schema(), stream))
}

/// The batches of a query polled in its caller's task. A panic while polling ends the
/// stream with an error, as a query task's death does, never with a silently truncated
/// result.
struct Inline {
    stream: BoxStream<'static, std::thread::Result<datafusion::error::Result<RecordBatch>>>,
    finished: bool,
}

impl Stream for Inline {
    type Item = Result<RecordBatch>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.stream.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(item))) => {
                let item = item.map_err(QueryError::from);
                self.finished = item.is_err();
                Poll::Ready(Some(item))
            }
            Poll::Ready(Some(Err(_))) => {
                self.finished = true;
                Poll::Ready(Some(Err(QueryError::Execution(
                    "the query panicked before its result was complete".into(),
                ))))
            }
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `None` on the channel marks the clean end of the result.
struct Batches {
    rx: futures::channel::mpsc::Receiver<Option<Result<RecordBatch>>>,
    finished: bool,
    _guard: AbortOnDrop,
}

impl Stream for Batches {
    type Item = Result<RecordBatch>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.rx.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Some(item))) => {
                self.finished = item.is_err();
                Poll::Ready(Some(item))
            }
            Poll::Ready(Some(None)) => {
                self.finished = true;
                Poll::Ready(None)
            }
            // The task died (panic or abort) before the clean end: never hand out a
            // silently truncated result.
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(Some(Err(QueryError::Execution(
                    "the query task ended before its result was complete".into(),
                ))))
            }
        }
    }
}
