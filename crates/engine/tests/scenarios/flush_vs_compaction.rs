//! Compaction must not hold up flushes (the seed's flush latency rising with the
//! compaction load, issue 24): a compaction's manifest commit does not keep a flush of
//! its table from encoding and uploading, and a compaction does not start its commit
//! while a flush is in progress (`flush_gate.rs`), so the flush's commit does not
//! queue behind it. Reads stay what they were.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::common::*;
use async_trait::async_trait;
use bulkhead_engine::{Engine, FieldValue, Scope, TimeRange, WriteBatch};
use bulkhead_testkit::{HookedStore, StoreHooks};
use object_store::path::Path;
use object_store::{PutPayload, Result};
use std::sync::Mutex;

/// Holds chosen puts until released, and records the manifest log entries in order.
#[derive(Debug, Default)]
struct Hold {
    /// Hold manifest entries that remove an SST (compaction commits).
    hold_compaction_commits: AtomicBool,
    /// Hold the next upload of an SST of table `flushed`.
    hold_next_flush_upload: AtomicBool,
    held: AtomicU64,
    release: AtomicBool,
    /// Puts of SSTs of table `flushed` so far.
    flush_uploads: AtomicU64,
    /// Puts of SSTs of table `compacted` so far.
    compacted_uploads: AtomicU64,
    /// Each manifest entry as it was put: "compaction" or "flush".
    log: Mutex<Vec<&'static str>>,
}

impl Hold {
    async fn wait_for_release(&self) {
        self.held.fetch_add(1, Ordering::SeqCst);
        while !self.release.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[async_trait]
impl StoreHooks for Hold {
    async fn before_put(&self, location: &Path, payload: &PutPayload) -> Result<()> {
        let path = location.as_ref();
        if path.contains("manifest/log/") {
            let body: Vec<u8> = payload.iter().flat_map(|b| b.iter().copied()).collect();
            let compaction = String::from_utf8_lossy(&body).contains("remove_sst");
            if compaction && self.hold_compaction_commits.load(Ordering::SeqCst) {
                self.wait_for_release().await;
            }
            self.log
                .lock()
                .unwrap()
                .push(if compaction { "compaction" } else { "flush" });
        } else if path.contains("/compacted/") && path.ends_with(".parquet") {
            self.compacted_uploads.fetch_add(1, Ordering::SeqCst);
        } else if path.contains("/flushed/") && path.ends_with(".parquet") {
            self.flush_uploads.fetch_add(1, Ordering::SeqCst);
            if self.hold_next_flush_upload.swap(false, Ordering::SeqCst) {
                self.wait_for_release().await;
            }
        }
        Ok(())
    }
}

/// Rows of `table` at times `from..from + n` (one series), then a flush of it.
async fn write_and_flush(engine: &Engine, table: &str, from: i64, n: i64) {
    write(engine, table, from, n).await;
    engine.flush(&scope(table)).await.expect("flush");
}

async fn write(engine: &Engine, table: &str, from: i64, n: i64) {
    let mut b = WriteBatch::default();
    for t in from..from + n {
        b.push(
            table,
            row(&[("h", "a")], vec![("v", FieldValue::I64(t))], t),
        );
    }
    engine.write("db", b).await.expect("write");
}

/// A flush of `table`, running while the test goes on.
fn spawn_flush(
    engine: &Arc<Engine>,
    table: &'static str,
) -> JoinHandle<bulkhead_engine::Result<()>> {
    let engine = Arc::clone(engine);
    tokio::spawn(async move { engine.flush(&scope(table)).await })
}

/// A compaction of `table`, running while the test goes on.
fn spawn_compaction(
    engine: &Arc<Engine>,
    table: &'static str,
) -> JoinHandle<bulkhead_engine::Result<bulkhead_engine::CompactionSummary>> {
    let engine = Arc::clone(engine);
    tokio::spawn(async move { engine.compact(&scope(table)).await })
}

fn scope(table: &str) -> Scope {
    Scope::Table {
        db: "db".into(),
        table: table.into(),
    }
}

async fn hooked_engine() -> (tempfile::TempDir, Arc<Hold>, Arc<Engine>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    std::fs::create_dir_all(&root).expect("store dir");
    let hold = Arc::new(Hold::default());
    let fs = object_store::local::LocalFileSystem::new_with_prefix(&root).expect("fs");
    let store = io_bound(Arc::new(HookedStore::new(Arc::new(fs), Arc::clone(&hold))));
    let mut cfg = config(dir.path());
    cfg.compaction.enabled = false; // compactions only when the test asks
    let engine = open(cfg, &store).await;
    (dir, hold, engine)
}

/// Wait (up to 10 s) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_encodes_and_uploads_while_its_tables_compaction_commits() {
    let (_dir, hold, engine) = hooked_engine().await;
    for i in 0..3 {
        write_and_flush(&engine, "flushed", i * 100, 50).await;
    }
    hold.hold_compaction_commits.store(true, Ordering::SeqCst);
    let compaction = spawn_compaction(&engine, "flushed");
    until("the compaction's commit is in flight", || {
        hold.held.load(Ordering::SeqCst) == 1
    })
    .await;
    let uploads = hold.flush_uploads.load(Ordering::SeqCst);
    write(&engine, "flushed", 1_000, 50).await;
    let flush = spawn_flush(&engine, "flushed");
    // The flush gets as far as its upload without the compaction's commit ending
    // (its own commit then queues behind that PUT in the manifest).
    until("the flush uploads its SST", || {
        hold.flush_uploads.load(Ordering::SeqCst) > uploads
    })
    .await;
    hold.release.store(true, Ordering::SeqCst);
    compaction.await.expect("join").expect("compaction");
    flush.await.expect("join").expect("flush");
    let rows = read_range(&engine, "db", "flushed", TimeRange::ALL, None).await;
    assert_eq!(rows.len(), 200, "every row is read once");
    engine.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_commits_after_a_flush_in_progress() {
    let (_dir, hold, engine) = hooked_engine().await;
    for i in 0..3 {
        write_and_flush(&engine, "compacted", i * 100, 50).await;
    }
    write_and_flush(&engine, "flushed", 0, 50).await;
    hold.log.lock().unwrap().clear();
    // Another table's flush is in progress, stuck in its upload.
    hold.hold_next_flush_upload.store(true, Ordering::SeqCst);
    write(&engine, "flushed", 1_000, 50).await;
    let flush = spawn_flush(&engine, "flushed");
    until("the flush's upload is held", || {
        hold.held.load(Ordering::SeqCst) == 1
    })
    .await;
    let uploads = hold.compacted_uploads.load(Ordering::SeqCst);
    let compaction = spawn_compaction(&engine, "compacted");
    until("the compaction uploads its output", || {
        hold.compacted_uploads.load(Ordering::SeqCst) > uploads
    })
    .await;
    // Its commit would follow at once; the gate holds it (for up to 1 s).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        hold.log.lock().unwrap().is_empty(),
        "a compaction committed while a flush was in progress: {:?}",
        hold.log.lock().unwrap()
    );
    hold.release.store(true, Ordering::SeqCst);
    flush.await.expect("join").expect("flush");
    compaction.await.expect("join").expect("compaction");
    assert_eq!(*hold.log.lock().unwrap(), ["flush", "compaction"]);
    let waits = engine
        .write_stages()
        .into_iter()
        .find(|(n, _)| *n == "background_commit_wait")
        .expect("background_commit_wait stage")
        .1;
    assert_eq!(waits.count(), 1, "one background commit");
    assert!(
        // Most of the 200 ms above (the rest of its upload and the way to the gate
        // come off it); without the gate it would be about zero.
        waits.sum_nanos >= 150_000_000,
        "it waited for the flush: {} ms",
        waits.sum_nanos / 1_000_000
    );
    for table in ["compacted", "flushed"] {
        let rows = read_range(&engine, "db", table, TimeRange::ALL, None).await;
        assert_eq!(rows.len(), if table == "flushed" { 100 } else { 150 });
    }
    engine.close().await.expect("close");
}
