//! A failing object store loses no data: flushes fail and retry while writes continue
//! from the WAL and memtables; once the store recovers everything is flushed, readable,
//! and survives a restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use bulkhead_engine::{FieldValue, Scope, WriteBatch};
use bulkhead_runtime::store::{FaultConfig, FaultInjectingStore};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_and_flaky_store_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("store")).expect("mkdir");
    let fs: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("store")).expect("fs"));
    let faults = Arc::new(FaultInjectingStore::new(fs, FaultConfig::default()));
    let store = io_bound(Arc::clone(&faults) as Arc<dyn ObjectStore>);
    let mut cfg = config(dir.path());
    cfg.memtable.table_flush_size = 16 * 1024; // the scheduler flushes on its own, too
    let engine = open(cfg.clone(), &store).await;
    let mut model = Rows::new();
    fn write(i: i64, model: &mut Rows) -> WriteBatch {
        let mut b = WriteBatch::default();
        for t in 0..50 {
            let r = row(
                &[("host", &format!("h{}", t % 5))],
                vec![
                    ("v", FieldValue::I64(i * 1000 + t)),
                    ("i", FieldValue::U64(i as u64)),
                ],
                (i % 7) * 1_000 + t,
            );
            model_apply(model, &r);
            b.push("cpu", r);
        }
        b
    }

    // 1. Outage: writes go on, explicit flushes fail.
    faults.set_down(true);
    for i in 0..20 {
        engine
            .write("db", write(i, &mut model))
            .await
            .expect("write during outage");
    }
    assert!(
        engine.flush(&Scope::All).await.is_err(),
        "flush cannot succeed while the store is down"
    );
    assert_eq!(read_all(&engine, "db", "cpu").await, model);

    // 2. Flaky store: half of all calls fail.
    faults.set_down(false);
    faults.set_config(FaultConfig {
        latency: None,
        error_probability: 0.5,
        ..Default::default()
    });
    for i in 20..40 {
        engine
            .write("db", write(i, &mut model))
            .await
            .expect("write while flaky");
        let _ = engine.flush(&Scope::All).await;
    }
    // (Reads may fail while the store is flaky; they are checked once it is healthy.)

    // 3. Recovery: the next flush succeeds and memory drains.
    faults.set_config(FaultConfig::default());
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.flush(&Scope::All).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "flush never succeeded after the store recovered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = engine.stats();
    assert_eq!(stats.memtable_bytes, 0, "{stats:?}");
    assert!(stats.flush_failures > 0, "{stats:?}");
    assert_eq!(read_all(&engine, "db", "cpu").await, model);
    engine
        .write("db", write(40, &mut model))
        .await
        .expect("write after recovery");
    engine.close().await.expect("close");

    let engine = open(cfg, &store).await;
    assert_eq!(read_all(&engine, "db", "cpu").await, model);
    engine.close().await.expect("close");
}
