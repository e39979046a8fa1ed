//! Regression test (found by the crash harness, `crates/bulkhead/tests/crash.rs`): the
//! startup garbage collector must not delete an SST that a background flush of the
//! replayed memtables uploads while the collector is listing the store.
//!
//! The store here lists slowly and uploads SSTs slowly, so that, were the collector
//! still running next to the flush scheduler, the flush's SST would be uploaded after
//! the collector took its manifest state and before its listing, and be deleted as
//! garbage although the flush then commits it.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use async_trait::async_trait;
use bulkhead_engine::{FieldValue, WriteBatch};
use bulkhead_testkit::{HookedStore, StoreHooks};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, Result};

/// Delays every `list` by 1 s and every SST upload by 300 ms.
#[derive(Debug)]
struct Slow;

#[async_trait]
impl StoreHooks for Slow {
    async fn before_put(&self, location: &Path, _payload: &PutPayload) -> Result<()> {
        if location.as_ref().ends_with(".parquet") {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(())
    }

    async fn before_list(&self) {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_gc_never_deletes_an_sst_the_startup_flush_uploads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs: Arc<dyn ObjectStore> = Arc::new(
        object_store::local::LocalFileSystem::new_with_prefix({
            let root = dir.path().join("store");
            std::fs::create_dir_all(&root).expect("store dir");
            root
        })
        .expect("local store"),
    );
    let plain = io_bound(Arc::clone(&fs));
    let mut model = Rows::new();
    {
        // Rows only in the WAL when the engine goes away (a crash).
        let engine = open(config(dir.path()), &plain).await;
        let mut b = WriteBatch::default();
        for t in 0..2000 {
            let r = row(&[("host", "a")], vec![("v", FieldValue::I64(t))], t);
            model_apply(&mut model, &r);
            b.push("cpu", r);
        }
        engine.write("db", b).await.expect("write");
        drop(engine);
    }

    // Reopen with a flush threshold the replayed memtable is over: the scheduler
    // flushes it as soon as it starts.
    let slow = io_bound(Arc::new(HookedStore::new(Arc::clone(&fs), Arc::new(Slow))));
    let mut cfg = config(dir.path());
    cfg.memtable.table_flush_size = 1;
    let engine = open(cfg, &slow).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while engine.stats().flush_count == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no flush after reopen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let state = engine.manifest_state().await;
    let ssts: Vec<_> = state
        .tables
        .values()
        .flat_map(|t| t.values())
        .flat_map(|t| t.ssts.values())
        .collect();
    assert!(!ssts.is_empty(), "the flush committed no SST");
    for m in ssts {
        fs.head(&Path::from(m.path.as_str()))
            .await
            .unwrap_or_else(|e| panic!("committed SST {} is gone: {e}", m.path));
    }
    assert_eq!(read_all(&engine, "db", "cpu").await, model);
    engine.close().await.expect("close");
}
