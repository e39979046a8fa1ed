//! Concurrent writers, flushes and readers: every snapshot taken while data moves from
//! memtables to SSTs sees each writer's rows as a gap-free prefix (nothing missing, no
//! duplicates), and the final state equals the model.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::*;
use bulkhead_engine::{FieldValue, Scope, TimeRange, WriteBatch};

const WRITERS: usize = 6;
const BATCHES: i64 = 40;
const ROWS: i64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_stay_consistent_while_flushing() {
    let (dir, store) = temp_store();
    let mut cfg = config(dir.path());
    cfg.memtable.table_flush_size = 8 * 1024; // the scheduler flushes too
    cfg.sst.segment_duration = Duration::from_nanos(50);
    cfg.snapshot_seal_bytes = 0; // readers seal memtables while flushes merge them
    let engine = open(cfg.clone(), &store).await;
    let done = Arc::new(AtomicBool::new(false));

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let engine = Arc::clone(&engine);
            tokio::spawn(async move {
                for i in 0..BATCHES {
                    let mut b = WriteBatch::default();
                    for j in 0..ROWS {
                        let t = i * ROWS + j;
                        b.push(
                            "t",
                            row(&[("w", &w.to_string())], vec![("v", FieldValue::I64(t))], t),
                        );
                    }
                    engine.write("db", b).await.expect("write");
                }
            })
        })
        .collect();
    let flusher = {
        let (engine, done) = (Arc::clone(&engine), Arc::clone(&done));
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                engine.flush(&Scope::All).await.expect("flush");
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    let reader = {
        let (engine, done) = (Arc::clone(&engine), Arc::clone(&done));
        tokio::spawn(async move {
            let mut checks = 0;
            while !done.load(Ordering::SeqCst) {
                if engine.tables("db").is_empty() {
                    tokio::task::yield_now().await;
                    continue;
                }
                // read_range asserts there are no duplicate keys.
                let rows = read_range(&engine, "db", "t", TimeRange::ALL, None).await;
                for w in 0..WRITERS {
                    let times: Vec<i64> = rows
                        .keys()
                        .filter(|(tags, _)| tags[0].1 == w.to_string())
                        .map(|(_, t)| *t)
                        .collect();
                    let prefix: Vec<i64> = (0..times.len() as i64).collect();
                    assert_eq!(times, prefix, "writer {w}: rows are not a gap-free prefix");
                    // Whole batches only: a batch is atomic.
                    assert_eq!(
                        times.len() as i64 % ROWS,
                        0,
                        "writer {w}: partial batch visible"
                    );
                }
                checks += 1;
            }
            checks
        })
    };
    for w in writers {
        w.await.expect("writer");
    }
    done.store(true, Ordering::SeqCst);
    flusher.await.expect("flusher");
    let checks = reader.await.expect("reader");
    assert!(checks > 0);

    let expected = (WRITERS as i64 * BATCHES * ROWS) as usize;
    assert_eq!(read_all(&engine, "db", "t").await.len(), expected);
    assert!(engine.stats().flush_count > 0);
    engine.close().await.expect("close");
    let engine = open(cfg, &store).await;
    assert_eq!(read_all(&engine, "db", "t").await.len(), expected);
}
