//! Background manifest commits give way to flushes in progress.
//!
//! The manifest writes one log entry at a time (`manifest/mod.rs`): a commit that
//! arrives while another's PUT is in flight waits for it. A flush's commit that
//! arrives behind a compaction's waits a whole store round trip longer (20–80 ms on
//! S3), which is the seed's flush latency rising with the compaction load. So a
//! compaction or retention commit first waits, up to [`BACKGROUND_COMMIT_MAX_WAIT`],
//! until no flush is in progress: a flush that starts after that check still has its
//! encode and upload ahead of it, which outlast the background commit's PUT.
//! Compaction only loses the wait; its output stays unreferenced until it commits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bulkhead_runtime::latency::LatencyHistogram;
use tokio::sync::Notify;

/// The longest a background commit waits for flushes: under a steady stream of
/// flushes it commits anyway, so compaction is never starved.
pub(crate) const BACKGROUND_COMMIT_MAX_WAIT: Duration = Duration::from_secs(1);

/// How many flushes are in progress, and a wake-up for when none is.
#[derive(Debug, Default)]
pub(crate) struct FlushGate {
    active: AtomicUsize,
    idle: Notify,
}

/// A flush in progress; dropping it ends it.
#[must_use]
pub(crate) struct InProgress<'a>(&'a FlushGate);

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl FlushGate {
    /// A flush starts; it is in progress until the guard drops.
    pub(crate) fn enter(&self) -> InProgress<'_> {
        self.active.fetch_add(1, Ordering::AcqRel);
        InProgress(self)
    }

    /// Wait until no flush is in progress, or `limit` has passed; record the wait in
    /// `waited`. True if the gate was idle when it returned.
    pub(crate) async fn wait_idle(&self, limit: Duration, waited: &LatencyHistogram) -> bool {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + limit;
        let idle = loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a flush ending in between wakes us.
            notified.as_mut().enable();
            if self.active.load(Ordering::Acquire) == 0 {
                break true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break false;
            }
        };
        waited.record(started.elapsed());
        idle
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    #[tokio::test]
    async fn an_idle_gate_does_not_wait() {
        let gate = FlushGate::default();
        let waited = LatencyHistogram::default();
        assert!(gate.wait_idle(Duration::from_secs(60), &waited).await);
        assert_eq!(waited.snapshot().count(), 1);
    }

    #[tokio::test]
    async fn waits_for_the_last_flush_to_end_or_the_limit() {
        let gate = FlushGate::default();
        let waited = LatencyHistogram::default();
        let (a, b) = (gate.enter(), gate.enter());
        let last_ended = AtomicBool::new(false);
        let ends = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(a);
            tokio::time::sleep(Duration::from_millis(20)).await;
            last_ended.store(true, Ordering::SeqCst);
            drop(b);
        };
        let wait = async {
            let idle = gate.wait_idle(Duration::from_secs(60), &waited).await;
            // Not when the first of the two ended: when the last did.
            assert!(last_ended.load(Ordering::SeqCst));
            idle
        };
        let (idle, ()) = tokio::join!(wait, ends);
        assert!(idle);
        // A flush that never ends holds a wait up to its limit only.
        let _c = gate.enter();
        assert!(!gate.wait_idle(Duration::from_millis(20), &waited).await);
        assert_eq!(waited.snapshot().count(), 2);
    }
}
