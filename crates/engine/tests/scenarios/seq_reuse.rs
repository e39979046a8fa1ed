//! Sequence numbers after a restart whose WAL is empty: the WAL's last records were
//! deletes (no rows, so no flush covers them), the startup flush truncated every old
//! segment, and the engine crashed before anything new was logged. The next start must
//! still number records above every sequence the manifest knows (tombstones, SSTs'
//! `tombstones_applied`), or a new delete gets an old delete's number: it is skipped as
//! "already applied", or files that applied the old one count as having seen it.
//! (The crash harness lost an acknowledged delete this way.) Nor may it number records
//! below the empty segment's name: a later rotation onto that name replaces the file
//! the stale entry still names, and truncating the stale entry deletes the live one.

use crate::common::*;
use bulkhead_engine::{DeletePredicate, DeleteRequest, FieldValue, Scope, TimeRange, WriteBatch};

fn rows(series: &str, times: std::ops::Range<i64>, value: i64) -> WriteBatch {
    let mut b = WriteBatch::default();
    for t in times {
        b.push(
            "t",
            row(&[("s", series)], vec![("v", FieldValue::I64(value + t))], t),
        );
    }
    b
}

fn delete(series: &str, min_time: i64, max_time: i64) -> DeleteRequest {
    DeleteRequest {
        table: Some("t".into()),
        min_time,
        max_time,
        predicate: DeletePredicate::Eq("s".into(), series.into()),
    }
}

/// The rows of series `s` (time -> value).
async fn series(engine: &bulkhead_engine::Engine, s: &str) -> Vec<(i64, FieldValue)> {
    read_range(engine, "db", "t", TimeRange::ALL, None)
        .await
        .into_iter()
        .filter(|((tags, _), _)| tags.iter().any(|(k, v)| k == "s" && v == s))
        .map(|((_, time), fields)| (time, fields["v"].clone()))
        .collect()
}

/// Wait until the WAL thread has carried out the flush's truncation: only the (empty)
/// segment the engine started with is left.
async fn wait_for_truncation(dir: &std::path::Path) {
    for _ in 0..500 {
        if wal_segments(dir).len() == 1 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the WAL was not truncated: {:?}", wal_segments(dir));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_after_a_restart_on_an_empty_wal_is_not_lost() {
    let (dir, store) = temp_store();
    let cfg = config(dir.path());
    {
        // Rows of `a` and `b`, then (the WAL's last record) a delete of some of `b`.
        let engine = open(cfg.clone(), &store).await;
        engine
            .write("db", rows("a", 0..10, 100))
            .await
            .expect("write");
        engine
            .write("db", rows("b", 0..10, 200))
            .await
            .expect("write");
        engine
            .delete("db", delete("b", 0, 4))
            .await
            .expect("delete b");
        drop(engine); // crash: nothing flushed
    }
    {
        // Replay, flush: the SST has `tombstones_applied` = the delete's sequence,
        // the flushed sequence is the last row's, and the WAL is truncated past all
        // of it (the new, empty segment is all that is left).
        let engine = open(cfg.clone(), &store).await;
        engine.flush(&Scope::All).await.expect("flush");
        wait_for_truncation(dir.path()).await;
        drop(engine); // crash before anything new is logged
    }
    let engine = open(cfg.clone(), &store).await;
    // The first record of this run: a delete of `a`. It must remove the rows of `a`.
    engine
        .delete("db", delete("a", 0, 9))
        .await
        .expect("delete a");
    assert_eq!(
        series(&engine, "a").await,
        vec![],
        "deleted rows are visible"
    );
    let b: Vec<i64> = series(&engine, "b").await.iter().map(|r| r.0).collect();
    assert_eq!(b, (5..10).collect::<Vec<_>>());
    // And still after a crash and a compaction that purges the tombstones.
    drop(engine);
    let engine = open(cfg.clone(), &store).await;
    assert_eq!(series(&engine, "a").await, vec![], "deleted rows came back");
    engine.flush(&Scope::All).await.expect("flush");
    engine.compact(&Scope::All).await.expect("compact");
    assert_eq!(series(&engine, "a").await, vec![]);
    engine.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_after_a_restart_on_an_empty_wal_is_not_deleted_by_an_older_delete() {
    let (dir, store) = temp_store();
    let mut cfg = config(dir.path());
    // No purge: the tombstones stay in the manifest.
    cfg.compaction.enabled = false;
    {
        // Two deletes end the WAL: the second one's number is above the first.
        let engine = open(cfg.clone(), &store).await;
        engine
            .write("db", rows("a", 0..10, 100))
            .await
            .expect("write");
        engine
            .delete("db", delete("b", 0, 9))
            .await
            .expect("delete b");
        engine
            .delete("db", delete("c", 0, 9))
            .await
            .expect("delete c");
        drop(engine);
    }
    {
        let engine = open(cfg.clone(), &store).await;
        engine.flush(&Scope::All).await.expect("flush");
        wait_for_truncation(dir.path()).await;
        drop(engine);
    }
    let engine = open(cfg.clone(), &store).await;
    // Acknowledged after both deletes: these rows must stay.
    engine
        .write("db", rows("c", 0..3, 300))
        .await
        .expect("write c");
    let c = vec![
        (0, FieldValue::I64(300)),
        (1, FieldValue::I64(301)),
        (2, FieldValue::I64(302)),
    ];
    assert_eq!(
        series(&engine, "c").await,
        c,
        "an acknowledged write is gone"
    );
    drop(engine);
    let engine = open(cfg.clone(), &store).await;
    assert_eq!(
        series(&engine, "c").await,
        c,
        "an acknowledged write is gone"
    );
    engine.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_never_reuses_the_name_of_a_segment_left_empty() {
    let (dir, store) = temp_store();
    let mut cfg = config(dir.path());
    cfg.wal.segment_size = 4096; // one batch below fills a segment
    cfg.wal.preallocate = false;
    {
        // The last record deletes every row: the manifest keeps no trace of it once
        // the flush has written nothing and the compaction dropped the tombstone.
        let engine = open(cfg.clone(), &store).await;
        engine
            .write("db", rows("a", 0..10, 100))
            .await
            .expect("write");
        engine
            .delete("db", delete("a", 0, 9))
            .await
            .expect("delete a");
        drop(engine);
    }
    {
        let engine = open(cfg.clone(), &store).await;
        engine.flush(&Scope::All).await.expect("flush");
        engine.compact(&Scope::All).await.expect("compact");
        assert_eq!(series(&engine, "a").await, vec![]);
        wait_for_truncation(dir.path()).await;
        drop(engine); // the WAL is one empty segment now
    }
    let engine = open(cfg.clone(), &store).await;
    // A batch that fills a segment (the WAL moves to a new one), more rows, a flush
    // (which truncates the WAL), then rows only the WAL holds.
    engine
        .write("db", rows("b", 0..2000, 0))
        .await
        .expect("write b");
    engine
        .write("db", rows("c", 0..3, 0))
        .await
        .expect("write c");
    engine.flush(&Scope::All).await.expect("flush");
    engine
        .write("db", rows("d", 0..3, 0))
        .await
        .expect("write d");
    drop(engine);
    let engine = open(cfg.clone(), &store).await;
    assert_eq!(series(&engine, "b").await.len(), 2000);
    assert_eq!(series(&engine, "c").await.len(), 3);
    assert_eq!(
        series(&engine, "d").await.len(),
        3,
        "acknowledged rows only in the WAL are gone"
    );
    engine.close().await.expect("close");
}
