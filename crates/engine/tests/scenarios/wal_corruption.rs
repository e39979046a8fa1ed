//! Corruption before the WAL tail stops startup with an error naming file and offset;
//! the engine never silently drops acknowledged data.

use std::sync::Arc;

use crate::common::*;
use bulkhead_engine::{Error, FieldValue, WriteBatch};
use object_store::ObjectStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mid_file_corruption_is_a_named_error() {
    let (dir, store) = temp_store();
    write_twenty_one_row_records(dir.path(), &store).await;
    let seg = wal_segments(dir.path()).pop().expect("segment");
    let mut bytes = std::fs::read(&seg).expect("read");
    // Flip a byte inside the payload of the third record (records here are all the
    // same size; the file starts with an 8-byte magic).
    let record_len = (bytes.len() - 8) / 20;
    let offset = 8 + 2 * record_len;
    bytes[offset + 20] ^= 0x55;
    std::fs::write(&seg, &bytes).expect("write back");

    let err = bulkhead_engine::Engine::open(config(dir.path()), store, runtimes())
        .await
        .expect_err("corruption must stop startup");
    match err {
        Error::WalCorruption {
            file,
            offset: at,
            reason,
        } => {
            assert!(
                file.ends_with(seg.file_name().and_then(|n| n.to_str()).expect("name")),
                "{file}"
            );
            assert_eq!(at, offset as u64, "{reason}");
        }
        other => panic!("expected WalCorruption, got {other}"),
    }
    // The file was not "repaired" behind our back.
    assert_eq!(std::fs::read(&seg).expect("read"), bytes);
}

/// A sealed segment that ends in zeros (a preallocated tail whose trim a crash beat) is
/// replayed whole when its last record precedes the next segment's first; zeros over
/// its last record, which that check exposes, stop startup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_segment_may_end_in_zeros_only_after_its_last_record() {
    let (dir, store) = temp_store();
    write_twenty_one_row_records(dir.path(), &store).await;
    let seg = wal_segments(dir.path()).pop().expect("segment");
    let clean = std::fs::read(&seg).expect("read");
    let first: u64 = seg
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("named by its first sequence number");
    // As a rotation leaves it: the sealed segment with its zeros, and the next one
    // (named after the sequence number after the sealed one's last) holding its magic.
    let next = seg.with_file_name(format!("{:020}.wal", first + 20));
    let reopen = |bytes: &[u8]| {
        std::fs::write(&seg, bytes).expect("write segment");
        std::fs::write(&next, &clean[..8]).expect("write next segment");
        bulkhead_engine::Engine::open(config(dir.path()), Arc::clone(&store), runtimes())
    };
    let mut zero_tail = clean.clone();
    zero_tail.extend_from_slice(&[0u8; 64 << 10]);
    let engine = reopen(&zero_tail)
        .await
        .expect("a zero tail after the last record");
    let rows = read_all(&engine, "db", "m").await;
    assert_eq!(rows.len(), 20);
    engine.close().await.expect("close");

    // Zeros over the last record: the check against the next segment's name fails.
    for p in wal_segments(dir.path()) {
        std::fs::remove_file(p).expect("clear the WAL");
    }
    let record_len = (clean.len() - 8) / 20;
    let mut lost = clean.clone();
    let last_record = 8 + 19 * record_len;
    lost[last_record..].fill(0);
    lost.extend_from_slice(&[0u8; 64 << 10]);
    let err = reopen(&lost)
        .await
        .expect_err("zeros over an acknowledged record must stop startup");
    match err {
        Error::WalCorruption { file, offset, .. } => {
            assert!(
                file.ends_with(&*seg.file_name().unwrap().to_string_lossy()),
                "{file}"
            );
            assert_eq!(offset, last_record as u64);
        }
        other => panic!("expected WalCorruption, got {other}"),
    }
}

/// Write 20 rows to `db.m`, one record each (all the same size), and close the engine.
async fn write_twenty_one_row_records(dir: &std::path::Path, store: &Arc<dyn ObjectStore>) {
    let engine = open(config(dir), store).await;
    for t in 0..20 {
        let mut b = WriteBatch::default();
        b.push(
            "m",
            row(&[("host", "a")], vec![("v", FieldValue::I64(t))], t),
        );
        engine.write("db", b).await.expect("write");
    }
    engine.close().await.expect("close");
}
