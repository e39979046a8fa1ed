//! A delete whose own manifest commit failed stays in the WAL until a later commit of
//! its table holds it (`TableState::uncommitted_tombstones` hold back truncation). That
//! must hold *while* that later commit is in flight too: another table's flush that
//! commits meanwhile truncates the WAL, and if the tombstone's commit then fails (or
//! the engine crashes before it lands), the delete must still be in the WAL.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use crate::common::*;
use async_trait::async_trait;
use bulkhead_engine::{DeletePredicate, DeleteRequest, FieldValue, Scope, TimeRange, WriteBatch};
use bulkhead_testkit::{HookedStore, StoreHooks};
use object_store::path::Path;
use object_store::{PutPayload, Result};

/// Every manifest log entry goes through.
const PASS: u8 = 0;
/// Every manifest log entry fails.
const FAIL_ALL: u8 = 1;
/// Entries adding a tombstone fail; the others wait until released, then go through.
const FAIL_TOMBSTONES_HOLD_OTHERS: u8 = 2;

/// Hooks making the store's manifest commits fail or wait on request.
#[derive(Debug)]
struct Gate {
    mode: AtomicU8,
    /// Log entries waiting for `release`.
    held: AtomicU64,
    release: AtomicBool,
}

fn injected() -> object_store::Error {
    object_store::Error::Generic {
        store: "Gate",
        source: "injected failure".into(),
    }
}

#[async_trait]
impl StoreHooks for Gate {
    async fn before_put(&self, location: &Path, payload: &PutPayload) -> Result<()> {
        if location.as_ref().contains("manifest/log/") {
            let body: Vec<u8> = payload.iter().flat_map(|b| b.iter().copied()).collect();
            let tombstone = String::from_utf8_lossy(&body).contains("add_tombstone");
            match self.mode.load(Ordering::SeqCst) {
                FAIL_ALL => return Err(injected()),
                FAIL_TOMBSTONES_HOLD_OTHERS if tombstone => return Err(injected()),
                FAIL_TOMBSTONES_HOLD_OTHERS => {
                    self.held.fetch_add(1, Ordering::SeqCst);
                    while !self.release.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn rows(table: &str, times: Range<i64>) -> WriteBatch {
    let mut b = WriteBatch::default();
    for t in times {
        b.push(
            table,
            row(&[("h", "a")], vec![("v", FieldValue::I64(t))], t),
        );
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_not_yet_in_the_manifest_keeps_its_wal_record_while_a_flush_commits_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    std::fs::create_dir_all(&root).expect("store dir");
    let gate = Arc::new(Gate {
        mode: AtomicU8::new(PASS),
        held: AtomicU64::new(0),
        release: AtomicBool::new(false),
    });
    let fs = object_store::local::LocalFileSystem::new_with_prefix(&root).expect("fs");
    let store = io_bound(Arc::new(HookedStore::new(Arc::new(fs), Arc::clone(&gate))));
    let plain = local_store(dir.path());
    let mut cfg = config(dir.path());
    cfg.wal.segment_size = 4096; // the big batch below seals the segment of the delete
    cfg.wal.preallocate = false;
    cfg.compaction.enabled = false;
    {
        let engine = open(cfg.clone(), &store).await;
        engine.write("db", rows("t", 0..10)).await.expect("write t");
        engine.flush(&Scope::All).await.expect("flush");
        // The delete's own commit fails: acknowledged, kept in the WAL.
        gate.mode.store(FAIL_ALL, Ordering::SeqCst);
        let req = DeleteRequest {
            table: Some("t".into()),
            min_time: 0,
            max_time: 9,
            predicate: DeletePredicate::All,
        };
        engine.delete("db", req).await.expect("delete");
        // From now on the tombstone's commits fail, and `u`'s flush commit waits.
        gate.mode
            .store(FAIL_TOMBSTONES_HOLD_OTHERS, Ordering::SeqCst);
        engine
            .write("db", rows("u", 0..2000))
            .await
            .expect("write u");
        let flush_u = {
            let engine = Arc::clone(&engine);
            tokio::spawn(async move {
                let u = Scope::Table {
                    db: "db".into(),
                    table: "u".into(),
                };
                engine.flush(&u).await
            })
        };
        while gate.held.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // `t`'s flush picks up the tombstone and queues its commit behind `u`'s.
        let flush_t = {
            let engine = Arc::clone(&engine);
            tokio::spawn(async move {
                let t = Scope::Table {
                    db: "db".into(),
                    table: "t".into(),
                };
                engine.flush(&t).await
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        // `u` commits and truncates the WAL; then the tombstone's commit fails.
        gate.release.store(true, Ordering::SeqCst);
        let _ = flush_u.await.expect("flush u");
        let _ = flush_t.await.expect("flush t");
        // Let the WAL thread carry out the truncations, then crash.
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(engine);
    }
    let engine = open(cfg.clone(), &plain).await;
    let left = read_range(&engine, "db", "t", TimeRange::ALL, None).await;
    assert!(
        left.is_empty(),
        "an acknowledged delete was lost: {} rows are back",
        left.len()
    );
    engine.close().await.expect("close");
}
