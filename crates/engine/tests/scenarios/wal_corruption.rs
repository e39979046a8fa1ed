//! Corruption before the WAL tail stops startup with an error naming file and offset;
//! the engine never silently drops acknowledged data.

use crate::common::*;
use bulkhead_engine::{Error, FieldValue, WriteBatch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mid_file_corruption_is_a_named_error() {
    let (dir, store) = temp_store();
    {
        let engine = open(config(dir.path()), &store).await;
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
