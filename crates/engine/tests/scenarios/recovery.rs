//! Recovery: acknowledged writes survive dropping the engine without a flush, and a
//! flush followed by more writes recovers from SSTs + WAL without duplicates.

use crate::common::*;
use bulkhead_engine::{FieldValue, Scope, WriteBatch};

fn batch(host: &str, from: i64, n: i64, value: i64) -> WriteBatch {
    let mut b = WriteBatch::default();
    for t in from..from + n {
        b.push(
            "cpu",
            row(
                &[("host", host)],
                vec![("usage", FieldValue::I64(value + t))],
                t,
            ),
        );
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_rows_survive_a_drop_without_flush() {
    let (dir, store) = temp_store();
    let mut model = Rows::new();
    {
        let engine = open(config(dir.path()), &store).await;
        for i in 0..20 {
            let b = batch(&format!("h{}", i % 3), i * 10, 10, i);
            for r in &b.tables[0].rows {
                model_apply(&mut model, r);
            }
            engine.write("db", b).await.expect("write");
        }
        assert_eq!(read_all(&engine, "db", "cpu").await, model);
        // No flush, no close: simulate a crash.
        drop(engine);
    }
    let engine = open(config(dir.path()), &store).await;
    assert_eq!(engine.databases(), vec!["db".to_string()]);
    assert_eq!(read_all(&engine, "db", "cpu").await, model);
    engine.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushed_and_unflushed_data_recover_once_and_wal_is_truncated() {
    let (dir, store) = temp_store();
    let mut cfg = config(dir.path());
    cfg.wal.segment_size = 4096; // many small segments
    let mut model = Rows::new();
    {
        let engine = open(cfg.clone(), &store).await;
        for i in 0..30 {
            let b = batch("a", i * 30, 30, i);
            for r in &b.tables[0].rows {
                model_apply(&mut model, r);
            }
            engine.write("db", b).await.expect("write");
        }
        let segments_before = wal_segments(dir.path()).len();
        assert!(
            segments_before > 2,
            "expected several WAL segments, got {segments_before}"
        );
        engine.flush(&Scope::All).await.expect("flush");
        // The WAL thread deletes covered segments asynchronously after the commit.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut segments_after = wal_segments(dir.path()).len();
        while segments_after >= segments_before && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            segments_after = wal_segments(dir.path()).len();
        }
        assert!(
            segments_after < segments_before,
            "flush should delete covered WAL segments ({segments_before} -> {segments_after})"
        );
        // Overwrite some flushed rows (field by field) and add new ones, unflushed.
        let mut b = WriteBatch::default();
        for t in 0..10 {
            b.push(
                "cpu",
                row(
                    &[("host", "a")],
                    vec![("extra", FieldValue::Bool(t % 2 == 0))],
                    t,
                ),
            );
        }
        for r in &b.tables[0].rows {
            model_apply(&mut model, r);
        }
        engine.write("db", b).await.expect("write overwrite");
        assert_eq!(read_all(&engine, "db", "cpu").await, model);
        let stats = engine.stats();
        assert!(stats.tables[0].sst_count >= 1, "{stats:?}");
        engine.close().await.expect("close");
    }
    let engine = open(cfg, &store).await;
    assert_eq!(read_all(&engine, "db", "cpu").await, model);
    // Only the unflushed overwrite batch was replayed into memory.
    assert_eq!(engine.stats().tables[0].memtable_rows, 10);
    engine.close().await.expect("close");
}
