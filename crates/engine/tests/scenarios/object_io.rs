//! How SSTs travel to and from the object store: large files go up as multipart
//! uploads, and queries read with ranged GETs (footer, then only the projected column
//! chunks of the row groups that overlap the time range and may hold the wanted tag
//! values), never the whole object.

use std::sync::Arc;

use crate::common::*;
use arrow::array::{Array, StringArray};
use arrow::record_batch::RecordBatch;
use bulkhead_engine::{Engine, FieldValue, ScanRequest, Scope, TableStats, TimeRange, WriteBatch};
use bulkhead_runtime::store::{FaultConfig, FaultInjectingStore};
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;

/// A local store wrapped so the test can count multipart uploads and bytes read.
fn counting_store(dir: &std::path::Path) -> (Arc<dyn ObjectStore>, Arc<FaultInjectingStore>) {
    std::fs::create_dir_all(dir.join("store")).expect("mkdir");
    let fs: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.join("store")).expect("fs"));
    let counting = Arc::new(FaultInjectingStore::new(fs, FaultConfig::default()));
    (
        io_bound(Arc::clone(&counting) as Arc<dyn ObjectStore>),
        counting,
    )
}

/// `n` rows with five wide, incompressible-ish string fields and one float.
fn wide_rows(n: i64, model: &mut Rows) -> WriteBatch {
    let mut b = WriteBatch::default();
    for i in 0..n {
        let noise = |k: i64| {
            format!(
                "{:016x}{:016x}",
                (i * 7919 + k).wrapping_mul(0x9e37_79b9_7f4a_7c15_u64 as i64),
                i ^ (k << 20)
            )
        };
        let r = row(
            &[("host", &format!("h{}", i % 10))],
            vec![
                ("a", FieldValue::Str(noise(1))),
                ("b", FieldValue::Str(noise(2))),
                ("c", FieldValue::Str(noise(3))),
                ("d", FieldValue::Str(noise(4))),
                ("e", FieldValue::Str(noise(5))),
                ("usage", FieldValue::F64(i as f64 / 3.0)),
            ],
            i * 1_000_000,
        );
        model_apply(model, &r);
        b.push("wide", r);
    }
    b
}

/// `n` [`wide_rows`] written and flushed: the model and the table's stats.
async fn flushed_wide(engine: &Engine, n: i64) -> (Rows, TableStats) {
    let mut model = Rows::new();
    engine
        .write("db", wide_rows(n, &mut model))
        .await
        .expect("write");
    engine.flush(&Scope::All).await.expect("flush");
    let table = engine
        .stats()
        .tables
        .into_iter()
        .find(|t| t.table == "wide")
        .expect("table");
    (model, table)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_ssts_use_multipart_and_reads_are_ranged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, counting) = counting_store(dir.path());
    let mut cfg = config(dir.path());
    // Small enough that this test's SST crosses it; parts of 64 KiB (local disk has no
    // minimum part size, S3 would need 5 MiB).
    cfg.sst.multipart_threshold = 256 * 1024;
    cfg.sst.multipart_part_size = 64 * 1024;
    cfg.sst_row_group_size = 4096;
    cfg.compaction.enabled = false; // compaction below is manual, so it is counted
    let engine = open(cfg.clone(), &store).await;
    let (model, table) = flushed_wide(&engine, 40_000).await;
    assert_eq!(table.sst_count, 1, "{table:?}");
    assert!(
        table.sst_bytes > 256 * 1024,
        "the SST must exceed the threshold for this test to mean anything: {table:?}"
    );
    assert_eq!(
        counting.multipart_uploads(),
        1,
        "the big SST went up in parts"
    );

    // Everything reads back equal (the parts were assembled in order).
    assert_eq!(read_all(&engine, "db", "wide").await, model);

    // One narrow column: only a small part of the file is fetched.
    let before = counting.bytes_read();
    let got = read_range(
        &engine,
        "db",
        "wide",
        TimeRange::ALL,
        Some(vec!["host".into(), "usage".into(), "time".into()]),
    )
    .await;
    let narrow = counting.bytes_read() - before;
    assert_eq!(got.len(), model.len());
    assert!(
        narrow * 4 < table.sst_bytes,
        "projecting `usage` read {narrow} of {} bytes",
        table.sst_bytes
    );

    // A narrow time range skips the row groups outside it (rows are sorted by series,
    // then time, so each row group spans a few series; the first ones hold h0..).
    let before = counting.bytes_read();
    let range = TimeRange::new(0, 10 * 1_000_000);
    let got = read_range(&engine, "db", "wide", range, None).await;
    let ranged = counting.bytes_read() - before;
    assert_eq!(got.len(), 10);
    assert!(
        ranged < table.sst_bytes,
        "a 10-row time range read {ranged} of {} bytes",
        table.sst_bytes
    );

    // One host: rows are sorted by series, so the row groups whose `host` statistics
    // exclude `h3` are skipped, and all of h3's rows still come back.
    let before = counting.bytes_read();
    let snap = engine
        .snapshot("db", "wide", TimeRange::ALL)
        .expect("snapshot");
    let batches: Vec<RecordBatch> = snap
        .scan(ScanRequest {
            tag_values: [("host".to_string(), ["h3".to_string()].into())].into(),
            ..Default::default()
        })
        .try_collect()
        .await
        .expect("scan");
    let one_host = counting.bytes_read() - before;
    let h3_rows: usize = batches
        .iter()
        .map(|b| {
            let host = b.column_by_name("host").expect("host column");
            let host = arrow::compute::cast(host, &arrow::datatypes::DataType::Utf8)
                .expect("host as utf8");
            let host = host
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("utf8 host");
            host.iter().filter(|h| *h == Some("h3")).count()
        })
        .sum();
    assert_eq!(h3_rows, 4_000, "every row of h3 is read");
    assert!(
        one_host * 4 < table.sst_bytes,
        "one host of ten read {one_host} of {} bytes",
        table.sst_bytes
    );

    // Compaction output goes through the same upload path: two big files merge into
    // one multipart upload.
    engine
        .write("db", wide_rows(40_000, &mut Rows::new()))
        .await
        .expect("rewrite");
    engine.flush(&Scope::All).await.expect("flush 2");
    let uploads = counting.multipart_uploads();
    let summary = engine.compact(&Scope::All).await.expect("compact");
    assert_eq!(summary.tasks, 1, "{summary:?}");
    assert_eq!(counting.multipart_uploads(), uploads + 1);
    assert_eq!(read_all(&engine, "db", "wide").await, model);
    engine.close().await.expect("close");

    let engine = open(cfg, &store).await;
    assert_eq!(read_all(&engine, "db", "wide").await, model);
    engine.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_multipart_upload_is_retried_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, counting) = counting_store(dir.path());
    let mut cfg = config(dir.path());
    cfg.sst.multipart_threshold = 64 * 1024;
    cfg.sst.multipart_part_size = 16 * 1024;
    let engine = open(cfg.clone(), &store).await;
    let mut model = Rows::new();
    engine
        .write("db", wide_rows(5_000, &mut model))
        .await
        .expect("write");
    // Every call (initiate, each part, complete) fails with probability 0.1: most
    // attempts fail somewhere in the middle and are aborted; the flush retries.
    counting.set_config(FaultConfig {
        latency: None,
        error_probability: 0.1,
        ..Default::default()
    });
    let mut attempts = 0;
    while engine.flush(&Scope::All).await.is_err() {
        attempts += 1;
        assert!(attempts < 500, "no flush attempt succeeded");
    }
    counting.set_config(FaultConfig::default());
    assert!(counting.multipart_uploads() >= 1);
    assert_eq!(read_all(&engine, "db", "wide").await, model);
    engine.close().await.expect("close");
    let engine = open(cfg, &store).await;
    assert_eq!(read_all(&engine, "db", "wide").await, model);
    engine.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_streams_an_sst_a_row_group_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, counting) = counting_store(dir.path());
    let mut cfg = config(dir.path());
    cfg.sst_row_group_size = 4096;
    cfg.compaction.enabled = false;
    let engine = open(cfg, &store).await;
    let (model, table) = flushed_wide(&engine, 40_000).await;
    let sst_bytes = table.sst_bytes;

    // The first batch comes out after the metadata and one row group were fetched,
    // not the file's ten row groups: the scan holds a row group, not the SST.
    let before = counting.bytes_read();
    let snap = engine
        .snapshot("db", "wide", TimeRange::ALL)
        .expect("snapshot");
    let mut scan = snap.scan(ScanRequest::default());
    let first = scan.try_next().await.expect("scan").expect("a first batch");
    let at_first = counting.bytes_read() - before;
    assert!(
        at_first * 3 < sst_bytes,
        "the first batch came after reading {at_first} of the SST's {sst_bytes} bytes"
    );
    // Batches are bounded in rows, and the rest of the scan returns every row.
    let mut rows = first.num_rows();
    assert!(rows <= 8192, "a batch of {rows} rows");
    while let Some(b) = scan.try_next().await.expect("scan") {
        assert!(b.num_rows() <= 8192, "a batch of {} rows", b.num_rows());
        rows += b.num_rows();
    }
    assert_eq!(rows, model.len());
    assert_eq!(read_all(&engine, "db", "wide").await, model);

    // A scan dropped after its first batch reads no further.
    let before = counting.bytes_read();
    let mut scan = snap.scan(ScanRequest::default());
    scan.try_next().await.expect("scan").expect("a first batch");
    drop(scan);
    let dropped = counting.bytes_read() - before;
    assert!(
        dropped * 3 < sst_bytes,
        "a scan dropped after one batch read {dropped} of {sst_bytes} bytes"
    );
    engine.close().await.expect("close");
}
