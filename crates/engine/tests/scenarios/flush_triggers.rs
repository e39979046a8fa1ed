//! Automatic flushes: a table passing its threshold, the global write buffer, and the
//! maximum memtable age each trigger a flush without any explicit call; the WAL sync
//! modes `interval` and `none` still recover after a clean close.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use bulkhead_engine::{Engine, EngineConfig, FieldValue, WalSync, WriteBatch};

async fn write_rows(engine: &Engine, table: &str, n: i64) {
    let mut b = WriteBatch::default();
    for t in 0..n {
        b.push(
            table,
            row(
                &[("host", "a")],
                vec![("v", FieldValue::Str("y".repeat(100)))],
                t,
            ),
        );
    }
    engine.write("db", b).await.expect("write");
}

async fn wait_for_sst(engine: &Arc<Engine>, table: &str) -> Duration {
    let started = Instant::now();
    loop {
        let stats = engine.stats();
        if stats
            .tables
            .iter()
            .any(|t| t.table == table && t.sst_count > 0 && t.memtable_bytes == 0)
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no automatic flush: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn trigger(cfg: EngineConfig, dir: &std::path::Path) {
    let store = local_store(dir);
    let engine = open(cfg, &store).await;
    write_rows(&engine, "small", 2).await;
    write_rows(&engine, "big", 500).await;
    wait_for_sst(&engine, "big").await;
    // The small table stays in memory: only the table over its threshold was flushed.
    let small = engine
        .stats()
        .tables
        .into_iter()
        .find(|t| t.table == "small")
        .expect("small");
    assert_eq!(small.sst_count, 0, "{small:?}");
    assert_eq!(read_all(&engine, "db", "big").await.len(), 500);
    engine.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_threshold_triggers_a_flush() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.memtable.table_flush_size = 16 * 1024;
    trigger(cfg, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_buffer_flushes_the_largest_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.memtable.write_buffer = 32 * 1024;
    trigger(cfg, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_memtables_are_flushed() {
    let (dir, store) = temp_store();
    let mut cfg = config(dir.path());
    cfg.memtable.flush_interval = Duration::from_millis(200);
    let engine = open(cfg, &store).await;
    write_rows(&engine, "t", 3).await;
    let waited = wait_for_sst(&engine, "t").await;
    assert!(
        waited >= Duration::from_millis(150),
        "flushed before the age limit: {waited:?}"
    );
    engine.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_and_none_sync_modes_recover() {
    for mode in [WalSync::Interval(Duration::from_millis(5)), WalSync::None] {
        let (dir, store) = temp_store();
        let mut cfg = config(dir.path());
        cfg.wal.sync = mode;
        let engine = open(cfg.clone(), &store).await;
        write_rows(&engine, "t", 50).await;
        engine.close().await.expect("close");
        assert!(matches!(
            engine.write("db", WriteBatch::default()).await,
            Ok(()) | Err(bulkhead_engine::Error::Closed)
        ));
        drop(engine);
        let engine = open(cfg, &store).await;
        assert_eq!(read_all(&engine, "db", "t").await.len(), 50, "{mode:?}");
        engine.close().await.expect("close");
    }
}
