//! Scans whose time groups are decoded on tasks of their own
//! (`ScanRequest::decode_tasks`): on random data (overwrites, out-of-order writes across
//! flushes, compaction, memtable rows over SSTs, several segments) and random time
//! ranges and field filters, they return exactly the rows of the scan polled in one
//! task, in a batch sequence that is the same on every run; and a scan dropped after
//! its first batch stops its tasks.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use arrow::record_batch::RecordBatch;
use bulkhead_engine::{
    Engine, FieldComparison, FieldFilter, FieldOp, FieldValue, ScanMetrics, ScanRequest, Scope,
    TimeRange, WriteBatch,
};
use bulkhead_runtime::RuntimeName;
use futures::{StreamExt, TryStreamExt};
use proptest::prelude::*;

const SEGMENT: i64 = 1_000;

#[derive(Debug, Clone)]
enum Op {
    /// (host, time, value) rows.
    Write(Vec<(u8, i64, i64)>),
    Flush,
    Compact,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let w = (0u8..6, 0i64..6_000, -50i64..50);
    prop_oneof![
        5 => proptest::collection::vec(w, 1..80).prop_map(Op::Write),
        3 => Just(Op::Flush),
        1 => Just(Op::Compact),
    ]
}

fn filter_strategy() -> impl Strategy<Value = Option<FieldFilter>> {
    let op = prop_oneof![Just(FieldOp::Lt), Just(FieldOp::GtEq), Just(FieldOp::NotEq),];
    proptest::option::weighted(0.4, (op, -50i64..50)).prop_map(|f| {
        f.map(|(op, v)| FieldFilter {
            conjuncts: vec![FieldComparison {
                field: "v".into(),
                op,
                value: FieldValue::I64(v),
            }],
        })
    })
}

async fn batches(
    engine: &Engine,
    range: TimeRange,
    filter: Option<FieldFilter>,
    decode_tasks: usize,
    metrics: &Arc<ScanMetrics>,
) -> Vec<RecordBatch> {
    engine
        .snapshot("db", "cpu", range)
        .expect("snapshot")
        .scan(ScanRequest {
            field_filter: filter,
            decode_tasks,
            metrics: Some(Arc::clone(metrics)),
            ..Default::default()
        })
        .try_collect()
        .await
        .expect("scan")
}

fn rows(batches: &[RecordBatch]) -> Rows {
    let mut out = Rows::new();
    for b in batches {
        for (k, v) in batch_rows(b) {
            assert!(out.insert(k.clone(), v).is_none(), "duplicate key {k:?}");
        }
    }
    out
}

async fn run(
    ops: Vec<Op>,
    checks: Vec<(i64, i64, Option<FieldFilter>)>,
) -> Result<(), TestCaseError> {
    let (_dir, engine) = open_streaming_engine(SEGMENT).await;
    if !ops.iter().any(|op| matches!(op, Op::Write(_))) {
        engine.close().await.expect("close");
        return Ok(()); // no table to scan
    }
    for op in ops {
        match op {
            Op::Write(ws) => {
                let mut b = WriteBatch::default();
                for (host, time, value) in ws {
                    let host = format!("h{host}");
                    b.push(
                        "cpu",
                        row(
                            &[("host", &host)],
                            vec![("v", FieldValue::I64(value))],
                            time,
                        ),
                    );
                }
                engine.write("db", b).await.expect("write");
            }
            Op::Flush => engine.flush(&Scope::All).await.expect("flush"),
            Op::Compact => {
                engine.compact(&Scope::All).await.expect("compact");
            }
        }
    }
    for (a, b, filter) in checks {
        let range = TimeRange::new(a.min(b), a.max(b) + 1);
        let plain_metrics = Arc::new(ScanMetrics::default());
        let plain = batches(&engine, range, filter.clone(), 0, &plain_metrics).await;
        prop_assert_eq!(plain_metrics.snapshot().groups_on_tasks, 0);
        let want = rows(&plain);
        for tasks in [1, 2, 3] {
            let m = Arc::new(ScanMetrics::default());
            let first = batches(&engine, range, filter.clone(), tasks, &m).await;
            prop_assert_eq!(&rows(&first), &want, "{} tasks, filter {:?}", tasks, filter);
            if !plain.is_empty() {
                prop_assert!(m.snapshot().groups_on_tasks > 0, "{:?}", m.snapshot());
            }
            // The same batches in the same order, whichever task was faster.
            let again = batches(&engine, range, filter.clone(), tasks, &m).await;
            prop_assert_eq!(&first, &again, "{} tasks: batch order changed", tasks);
        }
    }
    engine.close().await.expect("close");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("BULKHEAD_PARALLEL_SCAN_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(24),
        max_shrink_iters: 100,
        ..ProptestConfig::default()
    })]

    #[test]
    fn scans_on_tasks_equal_scans_in_one_task(
        ops in proptest::collection::vec(op_strategy(), 1..14),
        checks in proptest::collection::vec((0i64..6_000, 0i64..6_000, filter_strategy()), 1..5),
    ) {
        runtimes().block_on(RuntimeName::Io, run(ops, checks)).expect("runtime")?;
    }
}

/// A scan dropped after its first batch (a `LIMIT`, a cancelled query) stops every task
/// it started: nothing keeps decoding for it.
#[test]
fn a_dropped_scan_stops_its_tasks() {
    runtimes()
        .block_on(RuntimeName::Io, async {
            let (_dir, engine) = open_streaming_engine(SEGMENT).await;
            // Eight segments of 4,000 rows each, one SST per segment.
            for seg in 0..8i64 {
                let mut b = WriteBatch::default();
                for i in 0..4_000i64 {
                    let host = format!("h{}", i % 40);
                    let time = seg * SEGMENT + (i / 40) * 10 + i % 7;
                    b.push(
                        "cpu",
                        row(&[("host", &host)], vec![("v", FieldValue::I64(i))], time),
                    );
                }
                engine.write("db", b).await.expect("write");
                engine.flush(&Scope::All).await.expect("flush");
            }
            let metrics = Arc::new(ScanMetrics::default());
            let mut scan = engine
                .snapshot("db", "cpu", TimeRange::ALL)
                .expect("snapshot")
                .scan(ScanRequest {
                    decode_tasks: 2,
                    metrics: Some(Arc::clone(&metrics)),
                    ..Default::default()
                });
            let first = scan.next().await.expect("a batch").expect("scan");
            assert!(first.num_rows() > 0);
            drop(scan);
            // Give aborted tasks a moment; none of them may go on decoding.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let after_drop = metrics.snapshot();
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(
                metrics.snapshot(),
                after_drop,
                "decoding went on after the drop"
            );
            // Two groups were started (the rotation's width), not all eight.
            assert_eq!(after_drop.groups_on_tasks, 2, "{after_drop:?}");
            let full = rows(&batches(&engine, TimeRange::ALL, None, 0, &metrics).await);
            assert_eq!(full.len(), 8 * 4_000);
            engine.close().await.expect("close");
        })
        .expect("runtime");
}
