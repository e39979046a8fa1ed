//! Scans of overlapping sources (out-of-order writes across flushes, memtable rows over
//! SSTs) stream through the k-way merge: a scan started before a compaction replaces
//! its SSTs reads them to the end, and they are deleted only once it lets go.

use std::time::Duration;

use crate::common::*;
use bulkhead_engine::{FieldValue, ScanRequest, Scope, TimeRange, WriteBatch};
use bulkhead_runtime::RuntimeName;
use futures::StreamExt;

const SEGMENT: i64 = 100_000;

#[test]
fn a_merging_scan_reads_its_ssts_to_the_end_across_a_compaction() {
    runtimes()
        .block_on(RuntimeName::Io, async {
            // Small row groups: each SST streams out in many batches.
            let (dir, engine) = open_streaming_engine(SEGMENT).await;
            let mut model = Rows::new();
            // Three rounds over the same keys, each flushed: every SST overlaps the
            // others in time, so the scan merges them; the last round overwrites only
            // `v` of every third key, so `w` must come from an older SST.
            for round in 0..3i64 {
                let mut b = WriteBatch::default();
                for i in 0..3_000i64 {
                    if round == 2 && i % 3 != 0 {
                        continue;
                    }
                    let host = format!("h{}", i % 30);
                    let mut fields = vec![("v", FieldValue::I64(i * 10 + round))];
                    if round < 2 {
                        fields.push(("w", FieldValue::I64(-i - round)));
                    }
                    let r = row(&[("host", &host)], fields, (i / 30) * 7 + round % 2);
                    model_apply(&mut model, &r);
                    b.push("cpu", r);
                }
                engine.write("db", b).await.expect("write");
                engine.flush(&Scope::All).await.expect("flush");
            }
            let before = stored_ssts(dir.path());
            assert_eq!(before, 3, "one SST per round");
            let snapshot = engine
                .snapshot("db", "cpu", TimeRange::ALL)
                .expect("snapshot");
            let mut scan = snapshot.scan(ScanRequest::default());
            let first = scan.next().await.expect("a batch").expect("scan");
            drop(snapshot);
            // The compaction replaces the three SSTs by one; the scan still holds and
            // reads them.
            engine.compact(&Scope::All).await.expect("compact");
            assert_eq!(stored_ssts(dir.path()), 4, "inputs kept while scanned");
            let mut got = Rows::new();
            for (k, v) in batch_rows(&first) {
                assert!(got.insert(k, v).is_none(), "duplicate key");
            }
            while let Some(b) = scan.next().await {
                for (k, v) in batch_rows(&b.expect("the scan outlives the compaction")) {
                    assert!(got.insert(k.clone(), v).is_none(), "duplicate key {k:?}");
                }
            }
            assert_eq!(got, model);
            drop(scan);
            // The replaced SSTs go once the scan lets go (the purger deletes them).
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while stored_ssts(dir.path()) != 1 {
                assert!(std::time::Instant::now() < deadline, "inputs never deleted");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(read_all(&engine, "db", "cpu").await, model);
            engine.close().await.expect("close");
        })
        .expect("runtime");
}
