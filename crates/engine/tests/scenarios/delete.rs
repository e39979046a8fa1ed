//! Delete by predicate, against a model: random writes (overwrites, unset tags, two
//! tables, several segments) interleaved with random deletes (every predicate shape,
//! one table or all, random time ranges), flushes, compactions, clean reopens and
//! crash-reopens. After every step every table read, a time-range scan, a projected
//! scan (without the tags the deletes test) and a `last_per_series` scan (through
//! last-row metadata and through the series index) equal the model; rows outside a
//! delete are untouched and a rewrite of a deleted key is visible again. At the end a
//! flush and a compaction leave no tombstone behind.

use std::time::Duration;

use crate::common::*;
use bulkhead_engine::{
    DeletePredicate, DeleteRequest, FieldValue, ScanRequest, Scope, TimeRange, WriteBatch,
};
use bulkhead_runtime::RuntimeName;
use futures::TryStreamExt;
use proptest::prelude::*;

const TABLES: [&str; 2] = ["cpu", "mem"];
const SEGMENT: i64 = 100;

#[derive(Debug, Clone)]
struct W {
    table: usize,
    host: u8,
    region: Option<u8>,
    time: i64,
    value: i64,
}

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<W>),
    Delete {
        table: Option<usize>,
        range: (i64, i64),
        predicate: DeletePredicate,
    },
    Flush,
    Compact,
    Reopen,
    Crash,
}

fn leaf() -> impl Strategy<Value = DeletePredicate> {
    prop_oneof![
        (0u8..3).prop_map(|h| DeletePredicate::Eq("host".into(), format!("h{h}"))),
        (0u8..2).prop_map(|r| DeletePredicate::Eq("region".into(), format!("r{r}"))),
        proptest::collection::vec(0u8..3, 1..3).prop_map(|hs| DeletePredicate::In(
            "host".into(),
            hs.iter().map(|h| format!("h{h}")).collect()
        )),
        Just(DeletePredicate::IsNull("region".into())),
        Just(DeletePredicate::All),
        // A tag the tables never have.
        Just(DeletePredicate::Eq("dc".into(), "x".into())),
    ]
}

fn predicate() -> impl Strategy<Value = DeletePredicate> {
    leaf().prop_recursive(2, 6, 3, |inner| {
        prop_oneof![
            inner
                .clone()
                .prop_map(|p| DeletePredicate::Not(Box::new(p))),
            proptest::collection::vec(inner.clone(), 1..3).prop_map(DeletePredicate::And),
            proptest::collection::vec(inner, 1..3).prop_map(DeletePredicate::Or),
        ]
    })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let w = (
        0..TABLES.len(),
        0u8..3,
        proptest::option::weighted(0.5, 0u8..2),
        (-5i64..35).prop_map(|t| t * 10),
        -100i64..100,
    )
        .prop_map(|(table, host, region, time, value)| W {
            table,
            host,
            region,
            time,
            value,
        });
    let delete = (
        proptest::option::weighted(0.7, 0..TABLES.len()),
        (-60i64..360, 0i64..250),
        predicate(),
    )
        .prop_map(|(table, (lo, len), predicate)| Op::Delete {
            table,
            range: (lo, lo + len),
            predicate,
        });
    prop_oneof![
        6 => proptest::collection::vec(w, 1..12).prop_map(Op::Write),
        3 => delete,
        2 => Just(Op::Flush),
        2 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

/// SQL three-valued logic, written out independently of the engine: `None` is NULL.
fn eval(p: &DeletePredicate, tags: &[(String, String)]) -> Option<bool> {
    let get = |t: &str| tags.iter().find(|(k, _)| k == t).map(|(_, v)| v.as_str());
    match p {
        DeletePredicate::All => Some(true),
        DeletePredicate::Eq(t, v) => get(t).map(|x| x == v),
        DeletePredicate::In(t, vs) => get(t).map(|x| vs.iter().any(|v| v == x)),
        DeletePredicate::IsNull(t) => Some(get(t).is_none()),
        DeletePredicate::Not(p) => eval(p, tags).map(|b| !b),
        DeletePredicate::And(ps) => {
            let vals: Vec<Option<bool>> = ps.iter().map(|p| eval(p, tags)).collect();
            if vals.contains(&Some(false)) {
                Some(false)
            } else if vals.iter().all(|v| *v == Some(true)) {
                Some(true)
            } else {
                None
            }
        }
        DeletePredicate::Or(ps) => {
            let vals: Vec<Option<bool>> = ps.iter().map(|p| eval(p, tags)).collect();
            if vals.contains(&Some(true)) {
                Some(true)
            } else if vals.iter().all(|v| *v == Some(false)) {
                Some(false)
            } else {
                None
            }
        }
    }
}

fn to_batch(ws: &[W], models: &mut [Rows; 2]) -> WriteBatch {
    let mut b = WriteBatch::default();
    for w in ws {
        let host = format!("h{}", w.host);
        let region = w.region.map(|r| format!("r{r}"));
        let mut tags = vec![("host", host.as_str())];
        if let Some(r) = &region {
            tags.push(("region", r.as_str()));
        }
        let r = row(&tags, vec![("v", FieldValue::I64(w.value))], w.time);
        model_apply(&mut models[w.table], &r);
        b.push(TABLES[w.table], r);
    }
    b
}

async fn last_per_series(
    engine: &bulkhead_engine::Engine,
    table: &str,
    ignore_last_row_metadata: bool,
) -> Rows {
    let snap = engine
        .snapshot("db", table, TimeRange::ALL)
        .expect("snapshot");
    let batches: Vec<_> = snap
        .scan(ScanRequest {
            last_per_series: true,
            ignore_last_row_metadata,
            ..Default::default()
        })
        .try_collect()
        .await
        .expect("scan");
    let mut out = Rows::new();
    for b in &batches {
        for (k, v) in batch_rows(b) {
            assert!(out.insert(k.clone(), v).is_none(), "duplicate key {k:?}");
        }
    }
    out
}

async fn check(engine: &bulkhead_engine::Engine, models: &[Rows; 2]) -> Result<(), TestCaseError> {
    for (i, t) in TABLES.iter().enumerate() {
        if !engine.tables("db").iter().any(|x| x == t) {
            prop_assert!(models[i].is_empty(), "table {} missing", t);
            continue;
        }
        prop_assert_eq!(&read_all(engine, "db", t).await, &models[i], "table {}", t);
        let range = TimeRange::new(40, 160);
        let want: Rows = models[i]
            .iter()
            .filter(|((_, time), _)| range.contains(*time))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        prop_assert_eq!(
            read_range(engine, "db", t, range, None).await,
            want,
            "range scan of {}",
            t
        );
        // Without the tag columns in the projection: values per time must agree.
        let mut projected: Vec<(i64, i64)> = Vec::new();
        let snap = engine.snapshot("db", t, TimeRange::ALL).expect("snapshot");
        let batches: Vec<_> = snap
            .scan(ScanRequest {
                projection: Some(vec!["v".into(), "time".into()]),
                ..Default::default()
            })
            .try_collect()
            .await
            .expect("scan");
        for b in &batches {
            prop_assert_eq!(b.num_columns(), 2);
            for ((_, time), f) in batch_rows(b) {
                let FieldValue::I64(v) = f["v"] else {
                    panic!("v")
                };
                projected.push((time, v));
            }
        }
        projected.sort_unstable();
        let mut want: Vec<(i64, i64)> = models[i]
            .iter()
            .map(|((_, time), f)| match f["v"] {
                FieldValue::I64(v) => (*time, v),
                _ => unreachable!(),
            })
            .collect();
        want.sort_unstable();
        prop_assert_eq!(projected, want, "projected scan of {}", t);
        // The latest row of every series.
        let mut latest = Rows::new();
        for ((tags, time), f) in &models[i] {
            latest.retain(|(k, _), _| k != tags);
            let _ = time;
            latest.insert((tags.clone(), *time), f.clone());
        }
        for ignore in [false, true] {
            prop_assert_eq!(
                last_per_series(engine, t, ignore).await,
                latest.clone(),
                "last_per_series of {} (ignore metadata: {})",
                t,
                ignore
            );
        }
    }
    Ok(())
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let (dir, store) = temp_store();
    let mut cfg = config(dir.path());
    cfg.sst.segment_duration = Duration::from_nanos(SEGMENT as u64);
    cfg.wal.segment_size = 4096;
    cfg.manifest_checkpoint_interval = 3;
    cfg.snapshot_seal_bytes = 0;
    let mut engine = open(cfg.clone(), &store).await;
    let mut models: [Rows; 2] = [Rows::new(), Rows::new()];
    for op in ops {
        match op {
            Op::Write(ws) => {
                let b = to_batch(&ws, &mut models);
                engine.write("db", b).await.expect("write");
            }
            Op::Delete {
                table,
                range,
                predicate,
            } => {
                let req = DeleteRequest {
                    table: table.map(|i| TABLES[i].to_string()),
                    min_time: range.0,
                    max_time: range.1,
                    predicate: predicate.clone(),
                };
                let exists = match table {
                    Some(i) => engine.tables("db").iter().any(|x| x == TABLES[i]),
                    None => !engine.tables("db").is_empty(),
                };
                let result = engine.delete("db", req).await;
                prop_assert_eq!(result.is_ok(), exists, "delete result {:?}", result);
                for (i, m) in models.iter_mut().enumerate() {
                    if table.is_none_or(|t| t == i) {
                        m.retain(|(tags, time), _| {
                            !(*time >= range.0
                                && *time <= range.1
                                && eval(&predicate, tags) == Some(true))
                        });
                    }
                }
            }
            Op::Flush => engine.flush(&Scope::All).await.expect("flush"),
            Op::Compact => {
                engine.compact(&Scope::All).await.expect("compact");
            }
            Op::Reopen => {
                engine.close().await.expect("close");
                drop(engine);
                engine = open(cfg.clone(), &store).await;
            }
            Op::Crash => {
                drop(engine);
                engine = open(cfg.clone(), &store).await;
            }
        }
        check(&engine, &models).await?;
    }
    // Applied everywhere: no tombstone is left, and the data is still the model's.
    engine.flush(&Scope::All).await.expect("flush");
    engine.compact(&Scope::All).await.expect("compact");
    for t in TABLES {
        prop_assert!(
            engine.tombstones("db", t).is_empty(),
            "tombstones left in {}: {:?}",
            t,
            engine.tombstones("db", t)
        );
    }
    check(&engine, &models).await?;
    drop(engine);
    let engine = open(cfg.clone(), &store).await;
    check(&engine, &models).await?;
    engine.close().await.expect("close");
    Ok(())
}

proptest! {
    // More cases: `BULKHEAD_DELETE_CASES=500 cargo test -p bulkhead-engine --test scenarios delete`.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("BULKHEAD_DELETE_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(24),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn reads_equal_the_model_with_deletes(ops in proptest::collection::vec(op_strategy(), 1..16)) {
        runtimes().block_on(RuntimeName::Io, run(ops)).expect("runtime")?;
    }
}

/// A delete of a table that does not exist, or a predicate on a field, is an error;
/// a rewrite of a deleted key is visible again; the deleted rows stay deleted after a
/// crash whose WAL still holds the delete and the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_rewrites_and_crash() {
    let (dir, store) = temp_store();
    let engine = open(config(dir.path()), &store).await;
    let all = |table: Option<&str>| DeleteRequest {
        table: table.map(str::to_string),
        min_time: i64::MIN,
        max_time: i64::MAX,
        predicate: DeletePredicate::All,
    };
    assert!(matches!(
        engine.delete("nodb", all(None)).await,
        Err(bulkhead_engine::Error::DatabaseNotFound(_))
    ));
    let mut b = WriteBatch::default();
    for t in 0..10 {
        b.push(
            "cpu",
            row(&[("host", "a")], vec![("v", FieldValue::I64(t))], t),
        );
    }
    engine.write("db", b).await.expect("write");
    assert!(matches!(
        engine.delete("db", all(Some("nope"))).await,
        Err(bulkhead_engine::Error::TableNotFound { .. })
    ));
    let on_field = DeleteRequest {
        predicate: DeletePredicate::Eq("v".into(), "1".into()),
        ..all(Some("cpu"))
    };
    let err = engine.delete("db", on_field).await.expect_err("field");
    assert!(err.to_string().contains("`v` is a field"), "{err}");
    let some = DeleteRequest {
        min_time: 3,
        max_time: 6,
        predicate: DeletePredicate::Eq("host".into(), "a".into()),
        ..all(Some("cpu"))
    };
    assert_eq!(
        engine.delete("db", some).await.expect("delete").tables,
        vec!["cpu".to_string()]
    );
    assert_eq!(read_all(&engine, "db", "cpu").await.len(), 6);
    let mut b = WriteBatch::default();
    b.push(
        "cpu",
        row(&[("host", "a")], vec![("v", FieldValue::I64(40))], 4),
    );
    engine.write("db", b).await.expect("rewrite");
    let rows = read_all(&engine, "db", "cpu").await;
    assert_eq!(rows.len(), 7);
    let key = (vec![("host".to_string(), "a".to_string())], 4);
    assert_eq!(rows[&key]["v"], FieldValue::I64(40));
    drop(engine); // crash: everything only in the WAL
    let engine = open(config(dir.path()), &store).await;
    assert_eq!(read_all(&engine, "db", "cpu").await, rows);
    engine.close().await.expect("close");
}

/// A delete whose manifest commit fails (the store is down, as on a full disk) is
/// acknowledged anyway and does not hold up later writes. Its WAL record stays until
/// the table's next flush commits the tombstone: a crash before that replays it, and
/// after that flush the delete holds without the WAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_while_the_manifest_cannot_commit() {
    use bulkhead_runtime::store::{FaultConfig, FaultInjectingStore};
    use object_store::ObjectStore;
    use object_store::local::LocalFileSystem;
    use std::sync::Arc;

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("store")).expect("mkdir");
    let fs: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("store")).expect("fs"));
    let faults = Arc::new(FaultInjectingStore::new(fs, FaultConfig::default()));
    let store = io_bound(Arc::clone(&faults) as Arc<dyn ObjectStore>);
    let write = |host: &str, times: std::ops::Range<i64>| {
        let mut b = WriteBatch::default();
        for t in times {
            b.push(
                "cpu",
                row(&[("host", host)], vec![("v", FieldValue::I64(t))], t),
            );
        }
        b
    };
    let hosts = |rows: &Rows| {
        let mut v: Vec<(String, i64)> = rows
            .keys()
            .map(|(tags, t)| (tags[0].1.clone(), *t))
            .collect();
        v.sort();
        v
    };
    let delete = |host: &str, min_time: i64, max_time: i64| DeleteRequest {
        table: Some("cpu".into()),
        min_time,
        max_time,
        predicate: DeletePredicate::Eq("host".into(), host.into()),
    };
    // A hang, the old behaviour (retrying the commit in the write pipeline), fails here.
    let bounded = Duration::from_secs(60);

    let engine = open(config(dir.path()), &store).await;
    engine
        .write("db", write("a", 0..10))
        .await
        .expect("write a");
    engine
        .write("db", write("b", 0..10))
        .await
        .expect("write b");
    engine.flush(&Scope::All).await.expect("flush");

    faults.set_down(true);
    tokio::time::timeout(
        bounded,
        engine.delete("db", delete("a", i64::MIN, i64::MAX)),
    )
    .await
    .expect("the delete returns while the store is down")
    .expect("the delete is acknowledged: its WAL record is durable");
    tokio::time::timeout(bounded, engine.write("db", write("b", 10..20)))
        .await
        .expect("a later write is not held up")
        .expect("a later write is acknowledged");
    assert_eq!(engine.tombstones("db", "cpu").len(), 1);
    drop(engine); // crash: the tombstone is only in the WAL
    faults.set_down(false);

    let engine = open(config(dir.path()), &store).await;
    let only_b: Vec<(String, i64)> = (0..20).map(|t| ("b".to_string(), t)).collect();
    assert_eq!(hosts(&read_all(&engine, "db", "cpu").await), only_b);

    faults.set_down(true);
    tokio::time::timeout(bounded, engine.delete("db", delete("b", 0, 4)))
        .await
        .expect("the delete returns while the store is down")
        .expect("the delete is acknowledged");
    faults.set_down(false);
    engine
        .flush(&Scope::All)
        .await
        .expect("a flush commits the tombstone with the rows");
    // Nothing in memory now: the flush commits the tombstone alone.
    faults.set_down(true);
    tokio::time::timeout(bounded, engine.delete("db", delete("b", 5, 6)))
        .await
        .expect("the delete returns while the store is down")
        .expect("the delete is acknowledged");
    faults.set_down(false);
    engine
        .flush(&Scope::All)
        .await
        .expect("a flush commits the tombstone alone");
    engine.close().await.expect("close");
    // The manifest alone must hold the delete now.
    for segment in wal_segments(dir.path()) {
        std::fs::remove_file(segment).expect("remove a WAL segment");
    }
    let engine = open(config(dir.path()), &store).await;
    let expected: Vec<(String, i64)> = (7..20).map(|t| ("b".to_string(), t)).collect();
    assert_eq!(hosts(&read_all(&engine, "db", "cpu").await), expected);
    engine.close().await.expect("close");
}
