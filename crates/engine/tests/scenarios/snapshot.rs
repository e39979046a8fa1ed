//! Read snapshots: deduplication across SSTs and memtables with field-by-field
//! overwrite, time ranges, projection, SST metadata, schema, and an SST replaced while
//! a snapshot holds it stays readable until the snapshot is dropped.

use std::time::Duration;

use crate::common::*;
use arrow::datatypes::{DataType, TimeUnit};
use bulkhead_engine::{FieldValue, ScanRequest, Scope, TimeRange, WriteBatch};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;

const HOUR: i64 = 3_600_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrites_merge_across_ssts_and_memtables() {
    let (dir, store) = temp_store();
    let engine = open(config(dir.path()), &store).await;
    let mut model = Rows::new();
    let mut put = |b: &mut WriteBatch, r| {
        model_apply(&mut model, &r);
        b.push("cpu", r);
    };
    let mut b = WriteBatch::default();
    for t in [0, HOUR, 3 * HOUR] {
        put(
            &mut b,
            row(
                &[("host", "a")],
                vec![("u", FieldValue::I64(1)), ("s", FieldValue::F64(1.0))],
                t,
            ),
        );
    }
    engine.write("db", b).await.expect("write");
    engine.flush(&Scope::All).await.expect("flush");
    // Two segments (2h default) -> two SSTs.
    let snap = engine
        .snapshot("db", "cpu", TimeRange::ALL)
        .expect("snapshot");
    let ssts = snap.ssts();
    assert_eq!(ssts.len(), 2, "{ssts:?}");
    assert_eq!(ssts.iter().map(|s| s.rows).sum::<u64>(), 3);
    assert!(
        ssts.iter()
            .all(|s| s.bytes > 0 && s.min_time <= s.max_time && s.path.ends_with(".parquet"))
    );

    // Second SST overwrites only `u` at t=0; the memtable overwrites only `s` at t=HOUR
    // and adds a new column.
    let mut b = WriteBatch::default();
    put(
        &mut b,
        row(&[("host", "a")], vec![("u", FieldValue::I64(2))], 0),
    );
    engine.write("db", b).await.expect("write");
    engine.flush(&Scope::All).await.expect("flush");
    let mut b = WriteBatch::default();
    put(
        &mut b,
        row(
            &[("host", "a")],
            vec![
                ("s", FieldValue::F64(9.0)),
                ("new", FieldValue::Str("x".into())),
            ],
            HOUR,
        ),
    );
    engine.write("db", b).await.expect("write");

    assert_eq!(read_all(&engine, "db", "cpu").await, model);
    let expected_t0: Fields = [
        ("s".to_string(), FieldValue::F64(1.0)),
        ("u".to_string(), FieldValue::I64(2)),
    ]
    .into();
    assert_eq!(model[&(vec![("host".into(), "a".into())], 0)], expected_t0);

    // Time range and projection.
    let range = TimeRange::new(HOUR, 2 * HOUR);
    let got = read_range(
        &engine,
        "db",
        "cpu",
        range,
        Some(vec!["s".into(), "host".into(), "time".into()]),
    )
    .await;
    assert_eq!(got.len(), 1);
    let fields = got.values().next().expect("row");
    assert_eq!(fields.get("s"), Some(&FieldValue::F64(9.0)));
    assert!(!fields.contains_key("u") && !fields.contains_key("new"));

    // Schema: tags, fields sorted, time last.
    let schema = engine.table_schema("db", "cpu").expect("schema");
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["host", "new", "s", "u", "time"]);
    assert_eq!(
        schema.field_with_name("time").expect("time").data_type(),
        &DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
    );
    engine.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_sst_stays_readable_while_a_snapshot_holds_it() {
    let (dir, store) = temp_store();
    let engine = open(config(dir.path()), &store).await;
    let mut b = WriteBatch::default();
    for t in 0..10 {
        b.push("m", row(&[("k", "v")], vec![("x", FieldValue::I64(t))], t));
    }
    engine.write("db", b).await.expect("write");
    engine.flush(&Scope::All).await.expect("flush");
    let snap = engine
        .snapshot("db", "m", TimeRange::ALL)
        .expect("snapshot");
    let old = snap.ssts().pop().expect("an SST");

    // "Compaction": replace the SST with a copy under a new id in one manifest edit.
    let mut new = old.clone();
    new.file_id = "00000000000000000000000000000001".into();
    new.path = old.path.replace(&old.file_id, &new.file_id);
    store
        .copy(&old.object_path(), &new.object_path())
        .await
        .expect("copy");
    engine
        .replace_ssts(
            "db",
            "m",
            std::slice::from_ref(&old.file_id),
            vec![new.clone()],
        )
        .await
        .expect("replace");
    let current = engine
        .snapshot("db", "m", TimeRange::ALL)
        .expect("snapshot");
    assert_eq!(current.ssts(), vec![new.clone()]);

    // The old snapshot still reads the old file.
    let rows: Vec<_> = snap
        .scan(ScanRequest::default())
        .try_collect()
        .await
        .expect("scan old");
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 10);
    assert!(
        store.head(&old.object_path()).await.is_ok(),
        "held file must exist"
    );

    drop(snap);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.head(&old.object_path()).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "released file was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(read_all(&engine, "db", "m").await.len(), 10);
    // The edit is durable.
    engine.close().await.expect("close");
    let engine = open(config(dir.path()), &store).await;
    let state = engine.manifest_state().await;
    assert_eq!(
        state.tables["db"]["m"]
            .ssts
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        vec![new.file_id]
    );
    assert_eq!(read_all(&engine, "db", "m").await.len(), 10);
}

/// The write-stage histograms (`Engine::write_stages`, `/debug/latency`) count every
/// write once per stage, and every snapshot's hold of the table lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_stages_count_every_write_and_snapshot() {
    let (dir, store) = temp_store();
    let engine = open(config(dir.path()), &store).await;
    for t in 0..5 {
        let mut b = WriteBatch::default();
        b.push(
            "cpu",
            row(&[("host", "a")], vec![("u", FieldValue::I64(t))], t),
        );
        engine.write("db", b).await.expect("write");
    }
    for _ in 0..2 {
        engine
            .snapshot("db", "cpu", TimeRange::ALL)
            .expect("snapshot");
    }
    let count = |name: &str| stage_count(&engine, name);
    for stage in [
        "queue",
        "prepare",
        "wal",
        "wal_queue",
        "wal_handoff",
        "lock_wait",
        "apply",
        "total",
    ] {
        assert_eq!(count(stage), 5, "{stage}");
    }
    // Sequential writes: one WAL group each.
    assert_eq!(count("wal_io"), 5);
    assert_eq!(count("snapshot_lock_hold"), 2);
    for stage in FLUSH_STAGES {
        assert_eq!(count(stage), 0, "{stage} before any flush");
    }
    engine.flush(&Scope::All).await.expect("flush");
    for stage in FLUSH_STAGES {
        assert_eq!(count(stage), 1, "{stage} after one table's flush");
    }
}

/// A table flush's stages in `/debug/latency`.
const FLUSH_STAGES: [&str; 6] = [
    "flush_lock_wait",
    "flush_encode",
    "flush_encode_cpu",
    "flush_upload",
    "flush_commit",
    "flush_total",
];

/// How many times the engine's `name` stage (`/debug/latency`) was recorded.
fn stage_count(engine: &bulkhead_engine::Engine, name: &str) -> u64 {
    let stages = engine.write_stages();
    stages
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no stage {name}: {stages:?}"))
        .1
        .count()
}
