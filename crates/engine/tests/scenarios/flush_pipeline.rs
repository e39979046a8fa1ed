//! A table's flushes are pipelined (`flush.rs`): the next one encodes while the one
//! ahead waits on the object store, and they commit in turn. Checked here: the overlap
//! happens, and concurrent flushes over a slow, failing store (so that flushes ahead
//! fail while later ones have already encoded) lose nothing, duplicate nothing and
//! survive a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use bulkhead_engine::{FieldValue, Scope, TimeRange, WriteBatch};
use bulkhead_runtime::store::{FaultConfig, FaultInjectingStore};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;

/// A store under `dir/store` whose faults the test sets, io-bound like the server's.
fn faulty_store(dir: &std::path::Path) -> (Arc<FaultInjectingStore>, Arc<dyn ObjectStore>) {
    std::fs::create_dir_all(dir.join("store")).expect("mkdir");
    let fs: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.join("store")).expect("fs"));
    let faults = Arc::new(FaultInjectingStore::new(fs, FaultConfig::default()));
    let store = io_bound(Arc::clone(&faults) as Arc<dyn ObjectStore>);
    (faults, store)
}

/// Writer `w`'s batch `i`: `ROWS` rows of its own series, times `i * ROWS ..`, and a
/// new value for the first row of batch `i - 1` (so that a flush committing older
/// rows after newer ones would show).
fn batch(w: usize, i: i64, model: &mut Rows) -> WriteBatch {
    let mut b = WriteBatch::default();
    if i > 0 {
        let r = row(
            &[("w", &w.to_string())],
            vec![("v", FieldValue::I64(-i))],
            (i - 1) * ROWS,
        );
        model_apply(model, &r);
        b.push("t", r);
    }
    for j in 0..ROWS {
        let t = i * ROWS + j;
        let r = row(
            &[("w", &w.to_string())],
            vec![("v", FieldValue::I64(t)), ("i", FieldValue::I64(i))],
            t,
        );
        model_apply(model, &r);
        b.push("t", r);
    }
    b
}

const ROWS: i64 = 20;

fn stage_count(engine: &bulkhead_engine::Engine, name: &str) -> u64 {
    engine
        .write_stages()
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, h)| h.count())
        .unwrap_or_else(|| panic!("no stage {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_flush_encodes_while_the_one_ahead_uploads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (faults, store) = faulty_store(dir.path());
    let engine = open(config(dir.path()), &store).await;
    let mut model = Rows::new();
    engine
        .write("db", batch(0, 0, &mut model))
        .await
        .expect("write");
    // Every store call now takes 2 s: the first flush's PUT and commit take 4 s.
    faults.set_config(FaultConfig {
        latency: Some(Duration::from_secs(2)..Duration::from_secs(2)),
        ..FaultConfig::default()
    });
    let first = {
        let engine = Arc::clone(&engine);
        tokio::spawn(async move { engine.flush(&Scope::All).await })
    };
    while stage_count(&engine, "flush_encode") < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    engine
        .write("db", batch(0, 1, &mut model))
        .await
        .expect("write");
    let second = {
        let engine = Arc::clone(&engine);
        tokio::spawn(async move { engine.flush(&Scope::All).await })
    };
    // The second flush encodes the second batch while the first is still uploading.
    let deadline = Instant::now() + Duration::from_secs(3);
    while stage_count(&engine, "flush_encode") < 2 {
        assert!(
            Instant::now() < deadline,
            "the second flush did not encode while the first one uploaded"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!first.is_finished(), "the first flush is still uploading");
    assert_eq!(
        stage_count(&engine, "flush_commit"),
        0,
        "nothing committed yet"
    );
    first.await.expect("join").expect("first flush");
    second.await.expect("join").expect("second flush");
    faults.set_config(FaultConfig::default());
    let stats = engine.stats();
    assert_eq!(stats.memtable_bytes, 0, "{stats:?}");
    assert_eq!(stats.flush_count, 2, "{stats:?}");
    assert_eq!(read_all(&engine, "db", "t").await, model);
    engine.close().await.expect("close");
    let engine = open(config(dir.path()), &store).await;
    assert_eq!(read_all(&engine, "db", "t").await, model);
    engine.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_flushes_over_a_failing_store_lose_nothing() {
    const WRITERS: usize = 3;
    const BATCHES: i64 = 60;
    let dir = tempfile::tempdir().expect("tempdir");
    let (faults, store) = faulty_store(dir.path());
    let mut cfg = config(dir.path());
    cfg.memtable.table_flush_size = 16 * 1024; // the scheduler flushes too
    cfg.sst.segment_duration = Duration::from_nanos(400); // flushes span segments
    cfg.snapshot_seal_bytes = 0; // readers seal memtables while flushes take them
    let engine = open(cfg.clone(), &store).await;
    faults.set_config(FaultConfig {
        latency: Some(Duration::from_millis(1)..Duration::from_millis(15)),
        error_probability: 0.15,
        lost_reply_probability: 0.05,
    });
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let engine = Arc::clone(&engine);
            tokio::spawn(async move {
                let mut model = Rows::new();
                for i in 0..BATCHES {
                    engine
                        .write("db", batch(w, i, &mut model))
                        .await
                        .expect("write");
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                model
            })
        })
        .collect();
    let flushers: Vec<_> = (0..3)
        .map(|_| {
            let (engine, done) = (Arc::clone(&engine), Arc::clone(&done));
            tokio::spawn(async move {
                let mut ok = 0u32;
                while !done.load(Ordering::SeqCst) {
                    // Failures are expected: the store fails calls, and a flush whose
                    // flush ahead failed does not commit.
                    ok += u32::from(engine.flush(&Scope::All).await.is_ok());
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                ok
            })
        })
        .collect();
    let reader = {
        let (engine, done) = (Arc::clone(&engine), Arc::clone(&done));
        tokio::spawn(async move {
            let mut checks = 0u32;
            while !done.load(Ordering::SeqCst) {
                // A scan of memtables never waits: without this the loop would keep
                // its worker, and a writer woken there would never run.
                tokio::time::sleep(Duration::from_millis(1)).await;
                if engine.tables("db").is_empty() {
                    continue;
                }
                // Reads may fail while the store fails calls; a read that succeeds
                // sees no duplicate and, per writer, a gap-free prefix of batches.
                let Ok(snap) = engine.snapshot("db", "t", TimeRange::ALL) else {
                    continue;
                };
                let scanned: Result<Vec<_>, _> = futures::TryStreamExt::try_collect(
                    snap.scan(bulkhead_engine::ScanRequest::default()),
                )
                .await;
                let Ok(batches) = scanned else { continue };
                let mut rows = Rows::new();
                for b in &batches {
                    for (key, fields) in batch_rows(b) {
                        assert!(
                            rows.insert(key.clone(), fields).is_none(),
                            "duplicate {key:?}"
                        );
                    }
                }
                for w in 0..WRITERS {
                    let times: Vec<i64> = rows
                        .keys()
                        .filter(|(tags, _)| tags[0].1 == w.to_string())
                        .map(|(_, t)| *t)
                        .collect();
                    let prefix: Vec<i64> = (0..times.len() as i64).collect();
                    assert_eq!(times, prefix, "writer {w}: not a gap-free prefix");
                }
                checks += 1;
            }
            checks
        })
    };
    let mut model = Rows::new();
    for w in writers {
        model.extend(w.await.expect("writer"));
    }
    done.store(true, Ordering::SeqCst);
    let flushed: u32 = futures::future::join_all(flushers)
        .await
        .into_iter()
        .map(|r| r.expect("flusher"))
        .sum();
    let checks = reader.await.expect("reader");
    assert!(
        flushed > 0,
        "no flush succeeded while the store failed calls"
    );
    assert!(checks > 0, "the reader never read");

    // Whatever the flushes left: a restart replays the WAL past what they committed.
    faults.set_config(FaultConfig::default());
    engine.close().await.expect("close");
    let engine = open(cfg.clone(), &store).await;
    assert_eq!(read_all(&engine, "db", "t").await, model, "after a restart");
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.flush(&Scope::All).await.is_err() {
        assert!(Instant::now() < deadline, "no flush after the store healed");
    }
    let stats = engine.stats();
    assert_eq!(stats.memtable_bytes, 0, "{stats:?}");
    assert_eq!(read_all(&engine, "db", "t").await, model);
    engine.close().await.expect("close");
    let engine = open(cfg, &store).await;
    assert_eq!(read_all(&engine, "db", "t").await, model);
    engine.close().await.expect("close");
}
