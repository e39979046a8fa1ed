//! Decoding a large scan's time groups on tasks of their own, several at once, beside
//! the task that consumes them ([`crate::ScanRequest::decode_tasks`]).
//!
//! A scan reads its sources in groups whose time ranges overlap (`read/mod.rs`); each
//! group's rows are complete on their own, so groups can be decoded independently.
//! Polled in one task, a scan decodes one batch, hands it to the operators above, and
//! only then decodes the next: one thread does all the work. Here each of up to
//! `tasks` groups is decoded by a task spawned on the runtime that polls the scan (the
//! `query` runtime for SQL, so the work stays in its bulkhead), which runs at most
//! [`AHEAD`] batches ahead of the consumer: memory stays bounded by
//! `tasks × (AHEAD + 1)` batches whatever the size of the SSTs.
//!
//! The consumer takes one batch from each running group in turn, in a fixed rotation
//! (a finished group's place goes to the next group, at the back). Which batch comes
//! next therefore depends only on the data, never on which task was faster, so the
//! operators above see the same sequence on every run: a floating-point sum is added
//! in the same order each time. Dropping the stream (a finished `LIMIT`, a cancelled
//! query) aborts every task; a task that panics fails the scan rather than ending its
//! group early.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::metrics::ScanMetrics;
use super::{ScanCtx, Source};
use crate::error::{Error, Result};

/// Batches a group's task decodes ahead of the consumer before it waits.
const AHEAD: usize = 2;

/// The runtime to spawn on and how many groups to decode at once, when `groups` are
/// to be decoded on tasks of their own (`decode_tasks` > 0, and the scan is polled
/// inside a tokio runtime).
pub(super) fn spawner(groups: &[Vec<Source>], decode_tasks: usize) -> Option<(Handle, usize)> {
    if decode_tasks == 0 || groups.is_empty() {
        return None;
    }
    let handle = Handle::try_current().ok()?;
    Some((handle, decode_tasks.min(groups.len())))
}

/// The batches of `groups`, each decoded by a task on `handle`, `tasks` at a time.
pub(super) fn decode(
    groups: Vec<Vec<Source>>,
    ctx: Arc<ScanCtx>,
    tasks: usize,
    handle: Handle,
) -> BoxStream<'static, Result<RecordBatch>> {
    let mut state = Rotation {
        pending: groups.into_iter(),
        running: VecDeque::with_capacity(tasks),
        ctx,
        handle,
        failed: false,
    };
    for _ in 0..tasks.max(1) {
        state.start_next();
    }
    stream::unfold(state, |mut state| async move {
        let item = state.next().await?;
        Some((item, state))
    })
    .boxed()
}

/// The groups being decoded, in the order the consumer takes from them.
struct Rotation {
    pending: std::vec::IntoIter<Vec<Source>>,
    running: VecDeque<Producer>,
    ctx: Arc<ScanCtx>,
    handle: Handle,
    /// An error was handed out: the scan is over.
    failed: bool,
}

impl Rotation {
    /// Start decoding the next pending group, at the back of the rotation.
    fn start_next(&mut self) {
        let Some(group) = self.pending.next() else {
            return;
        };
        ScanMetrics::add(&self.ctx.metrics.groups_on_tasks, 1);
        let (tx, rx) = mpsc::channel(AHEAD);
        let ctx = Arc::clone(&self.ctx);
        let task = self.handle.spawn(async move {
            let mut batches = match ctx.read_group(group).await {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            while let Some(item) = batches.next().await {
                let failed = item.is_err();
                // The consumer is gone (the scan was dropped), or it got the error.
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        self.running.push_back(Producer {
            rx,
            task: Some(task),
        });
    }

    /// The next batch in rotation order; `None` once every group is done.
    async fn next(&mut self) -> Option<Result<RecordBatch>> {
        if self.failed {
            return None;
        }
        loop {
            let mut producer = self.running.pop_front()?;
            match producer.rx.recv().await {
                Some(item) => {
                    if item.is_err() {
                        self.fail();
                    } else {
                        self.running.push_back(producer);
                    }
                    return Some(item);
                }
                None => {
                    // The group's task ended: normally, or by a panic that must not
                    // pass for the end of its rows.
                    if let Some(task) = producer.task.take()
                        && let Err(e) = task.await
                    {
                        self.fail();
                        return Some(Err(Error::Io {
                            op: "decoding a scan's time group on a task of its own",
                            source: std::io::Error::other(e),
                        }));
                    }
                    self.start_next();
                }
            }
        }
    }

    /// Stop every task: nothing more is handed out.
    fn fail(&mut self) {
        self.failed = true;
        self.running.clear();
        self.pending = Vec::new().into_iter();
    }
}

/// One group's task and the channel its batches come through.
struct Producer {
    rx: mpsc::Receiver<Result<RecordBatch>>,
    /// Taken when awaited; aborted if the producer is dropped first.
    task: Option<JoinHandle<()>>,
}

impl Drop for Producer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
