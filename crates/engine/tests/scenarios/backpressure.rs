//! Backpressure: writers stall when memtables hold the write buffer and resume after a
//! flush frees memory; at twice the buffer they are rejected with `Overloaded`.
//! Flushes are held back by an object-store outage.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use bulkhead_engine::{Engine, Error, FieldValue, WriteBatch};
use bulkhead_runtime::store::{FaultConfig, FaultInjectingStore};
use object_store::ObjectStore;
use object_store::memory::InMemory;

fn big_batch(tag: &str, rows: i64) -> WriteBatch {
    let mut b = WriteBatch::default();
    for t in 0..rows {
        b.push(
            "logs",
            row(
                &[("src", tag)],
                vec![("line", FieldValue::Str("x".repeat(200)))],
                t,
            ),
        );
    }
    b
}

/// Memory the engine accounts for `big_batch(_, rows)`.
async fn calibrate(rows: i64) -> usize {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = io_bound(Arc::new(InMemory::new()));
    let engine = open(config(dir.path()), &store).await;
    engine
        .write("db", big_batch("a", rows))
        .await
        .expect("write");
    let used = engine.stats().memtable_bytes;
    engine.close().await.expect("close");
    used
}

async fn faulty_engine(
    dir: &std::path::Path,
    limit: usize,
) -> (Arc<Engine>, Arc<FaultInjectingStore>) {
    let faults = Arc::new(FaultInjectingStore::new(
        Arc::new(InMemory::new()),
        FaultConfig::default(),
    ));
    let store = io_bound(Arc::clone(&faults) as Arc<dyn ObjectStore>);
    let mut cfg = config(dir);
    cfg.memtable.write_buffer = limit;
    cfg.max_write_stall = Duration::from_secs(60);
    let engine = open(cfg, &store).await;
    (engine, faults)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_stall_at_the_buffer_and_resume_after_flush() {
    let used = calibrate(1000).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, faults) = faulty_engine(dir.path(), used * 3 / 4).await;
    faults.set_down(true);
    engine
        .write("db", big_batch("a", 1000))
        .await
        .expect("admitted below the limit");

    let e2 = Arc::clone(&engine);
    let stalled = tokio::spawn(async move { e2.write("db", big_batch("b", 10)).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !stalled.is_finished(),
        "writer should be stalled while flushes fail"
    );
    let stats = engine.stats();
    assert!(stats.stalled_writes >= 1, "{stats:?}");
    assert!(
        stats.flush_failures >= 1,
        "flushes should have been attempted: {stats:?}"
    );

    faults.set_down(false);
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(10), stalled)
        .await
        .expect("stalled writer must resume once the store is back")
        .expect("join");
    result.expect("stalled write succeeds");
    assert!(started.elapsed() < Duration::from_secs(10));
    let rows = read_all(&engine, "db", "logs").await;
    assert_eq!(rows.len(), 1010);
    assert!(engine.stats().flush_count >= 1);
    engine.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_rejected_at_twice_the_buffer_then_accepted_again() {
    let used = calibrate(1000).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, faults) = faulty_engine(dir.path(), used * 2 / 5).await;
    faults.set_down(true);
    engine
        .write("db", big_batch("a", 1000))
        .await
        .expect("admitted at zero usage");

    let started = Instant::now();
    let err = engine
        .write("db", big_batch("rejected", 5))
        .await
        .expect_err("over 2x must be rejected");
    assert!(matches!(err, Error::Overloaded { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "rejection must not wait for the stall timeout"
    );
    assert!(engine.stats().rejected_writes >= 1);

    faults.set_down(false);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match engine.write("db", big_batch("later", 5)).await {
            Ok(()) => break,
            Err(Error::Overloaded { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("writes did not resume: {e}"),
        }
    }
    let rows = read_all(&engine, "db", "logs").await;
    assert_eq!(rows.len(), 1005, "the rejected batch must not be visible");
    assert!(
        !rows
            .keys()
            .any(|(tags, _)| tags.iter().any(|(_, v)| v == "rejected"))
    );
    engine.close().await.expect("close");
}
