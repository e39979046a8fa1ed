//! Where a flush encodes (`runtime.flush_affinity`): on the flush's own CPU, or on
//! every CPU of the process while the write buffer is half full or more, so that a
//! flush falling behind the writes is not also confined to one CPU.

use std::sync::Arc;

use crate::common::*;
use bulkhead_engine::{Engine, FieldValue, Scope, WriteBatch};
use bulkhead_runtime::{RuntimeConfig, RuntimeName, Runtimes};

/// `n` rows of about 1 KiB each into `db.t`.
async fn write_kib(engine: &Engine, from: i64, n: i64) {
    let mut b = WriteBatch::default();
    for t in from..from + n {
        b.push(
            "t",
            row(
                &[("host", "a")],
                vec![("v", FieldValue::Str("y".repeat(1000)))],
                t,
            ),
        );
    }
    engine.write("db", b).await.expect("write");
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_behind_the_writes_may_use_every_cpu_and_one_on_time_keeps_to_its_own() {
    let allowed = bulkhead_runtime::current_thread_cpus();
    if allowed.len() < 2 {
        // One CPU: the flush is not pinned at all.
        return;
    }
    // Runtimes of its own (one flush thread), so that no other test's flush moves it.
    let rt = Runtimes::new(RuntimeConfig::for_parallelism(2)).expect("runtimes");
    let flush_cpus = {
        let rt = Arc::clone(&rt);
        move || {
            let rt = Arc::clone(&rt);
            async move {
                rt.spawn(RuntimeName::Flush, async {
                    bulkhead_runtime::current_thread_cpus()
                })
                .await
                .expect("flush thread")
            }
        }
    };
    let own = vec![*allowed.last().unwrap()];
    assert_eq!(flush_cpus().await, own, "pinned at start");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    // 4 MiB of buffer: the flush policy starts flushing at 3 MiB by itself, so between
    // 2 and 3 MiB of rows is behind (half full or more) and left to the flush below.
    cfg.memtable.write_buffer = 4 << 20;
    let store = bulkhead_testkit::local_store(&dir.path().join("store"), &rt);
    let engine = bulkhead_testkit::open_engine(cfg, &store, &rt).await;
    let scope = Scope::Table {
        db: "db".into(),
        table: "t".into(),
    };

    let mut rows = 0;
    while engine.stats().memtable_bytes < 2 << 20 {
        write_kib(&engine, rows, 100).await;
        rows += 100;
    }
    let used = engine.stats().memtable_bytes;
    assert!(used < 3 << 20, "{used} bytes in memory");
    engine.flush(&scope).await.expect("flush");
    assert_eq!(flush_cpus().await, allowed, "a flush behind spreads");

    // A small flush, with the buffer nearly empty, goes back to its own CPU.
    write_kib(&engine, 100_000, 10).await;
    assert!(engine.stats().memtable_bytes < 1 << 20);
    engine.flush(&scope).await.expect("flush");
    assert_eq!(flush_cpus().await, own, "a flush on time keeps to its CPU");
    assert_eq!(read_all(&engine, "db", "t").await.len(), rows as usize + 10);
    engine.close().await.expect("close");
}
