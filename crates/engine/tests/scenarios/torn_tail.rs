//! A torn WAL tail (a partial last record) is truncated at startup, with every
//! acknowledged row intact, and the WAL keeps working afterwards.

use std::io::Write;

use crate::common::*;
use bulkhead_engine::{FieldValue, WriteBatch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_is_truncated_and_acknowledged_rows_survive() {
    let (dir, store) = temp_store();
    let mut model = Rows::new();
    {
        let engine = open(config(dir.path()), &store).await;
        for t in 0..50 {
            let mut b = WriteBatch::default();
            let r = row(&[("host", "a")], vec![("v", FieldValue::F64(t as f64))], t);
            model_apply(&mut model, &r);
            b.push("m", r);
            engine.write("db", b).await.expect("write");
        }
        drop(engine);
    }
    // Simulate a crash in the middle of writing the next record: a header promising
    // 100 bytes followed by only 10 of them.
    let last = wal_segments(dir.path()).pop().expect("a segment");
    let len_before = std::fs::metadata(&last).expect("meta").len();
    {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&last)
            .expect("open");
        let mut partial = Vec::new();
        partial.extend_from_slice(&100u32.to_le_bytes());
        partial.extend_from_slice(&0xdead_beefu32.to_le_bytes());
        partial.extend_from_slice(&999u64.to_le_bytes());
        partial.extend_from_slice(&[7u8; 10]);
        f.write_all(&partial).expect("append");
    }
    let engine = open(config(dir.path()), &store).await;
    assert_eq!(read_all(&engine, "db", "m").await, model);
    assert_eq!(
        std::fs::metadata(&last).expect("meta").len(),
        len_before,
        "the torn record must be cut off"
    );
    // New writes go on and survive another restart.
    let mut b = WriteBatch::default();
    let r = row(&[("host", "b")], vec![("v", FieldValue::F64(1.0))], 1);
    model_apply(&mut model, &r);
    b.push("m", r);
    engine.write("db", b).await.expect("write after recovery");
    drop(engine);
    let engine = open(config(dir.path()), &store).await;
    assert_eq!(read_all(&engine, "db", "m").await, model);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_with_torn_header_is_removed_and_later_restarts_work() {
    let (dir, store) = temp_store();
    let mut model = Rows::new();
    {
        let engine = open(config(dir.path()), &store).await;
        let mut b = WriteBatch::default();
        let r = row(&[("host", "a")], vec![("v", FieldValue::I64(1))], 1);
        model_apply(&mut model, &r);
        b.push("m", r);
        engine.write("db", b).await.expect("write");
        drop(engine);
    }
    // A crash right after creating the next segment: only 3 bytes of its magic.
    let torn = dir
        .path()
        .join("wal")
        .join(format!("{:020}.wal", 1_000_000u64));
    std::fs::write(&torn, b"BHW").expect("write torn segment");
    for _ in 0..2 {
        let engine = open(config(dir.path()), &store).await;
        assert_eq!(read_all(&engine, "db", "m").await, model);
        assert!(!torn.exists(), "the torn segment must be removed");
        engine.close().await.expect("close");
    }
}
