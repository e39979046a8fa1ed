//! Two engines on one object-store prefix: the manifest's create-only puts let only one
//! of them commit; the other's flush fails with a manifest error and keeps its data.

use crate::common::*;
use bulkhead_engine::{Error, FieldValue, Scope, WriteBatch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_writer_cannot_commit() {
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let store = local_store(dir_a.path()); // shared by both engines
    let a = open(config(dir_a.path()), &store).await;
    let b = open(config(dir_b.path()), &store).await;
    for (engine, host) in [(&a, "a"), (&b, "b")] {
        let mut batch = WriteBatch::default();
        batch.push(
            "t",
            row(&[("host", host)], vec![("v", FieldValue::I64(1))], 1),
        );
        engine.write("db", batch).await.expect("write");
    }
    a.flush(&Scope::All).await.expect("first writer commits");
    let err = b
        .flush(&Scope::All)
        .await
        .expect_err("second writer is fenced");
    assert!(matches!(err, Error::Manifest(_)), "{err}");
    // B's data is still readable from its memtable; A's manifest is intact.
    assert_eq!(read_all(&b, "db", "t").await.len(), 1);
    a.close().await.expect("close");
    b.close().await.expect("close");
    let reopened = open(config(dir_a.path()), &store).await;
    let rows = read_all(&reopened, "db", "t").await;
    assert_eq!(rows.len(), 1);
    assert!(
        rows.keys()
            .all(|(tags, _)| tags == &vec![("host".to_string(), "a".to_string())])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_engine_on_the_same_wal_dir_is_refused() {
    let (dir, store) = temp_store();
    let a = open(config(dir.path()), &store).await;
    let err = bulkhead_engine::Engine::open(
        config(dir.path()),
        std::sync::Arc::clone(&store),
        runtimes(),
    )
    .await
    .expect_err("the WAL directory is locked");
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("lock"), "{err}");
    // Once the first engine is gone, the directory can be opened again; an empty
    // table write in a batch creates nothing.
    drop(a);
    let b = open(config(dir.path()), &store).await;
    let mut batch = WriteBatch::default();
    batch.tables.push(bulkhead_engine::TableWrite {
        table: "empty".into(),
        rows: vec![],
    });
    batch.push("t", row(&[], vec![("v", FieldValue::I64(1))], 1));
    b.write("db", batch).await.expect("write");
    assert_eq!(b.tables("db"), vec!["t".to_string()]);
}
