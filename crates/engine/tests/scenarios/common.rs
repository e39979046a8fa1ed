//! Helpers shared by the engine's scenario tests: the scenarios' config and store on
//! top of the workspace's test kit (`bulkhead-testkit`), and a model of the rows.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, BooleanArray, Float64Array, Int64Array, StringArray, TimestampNanosecondArray,
    UInt64Array,
};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use bulkhead_engine::{
    Engine, EngineConfig, FieldValue, MemtableConfig, ROLE_KEY, Row, ScanRequest, TimeRange,
    WalConfig, WalSync,
};
use bulkhead_runtime::Runtimes;
use futures::TryStreamExt;
use object_store::ObjectStore;

/// Tags (sorted), time.
pub type Key = (Vec<(String, String)>, i64);
/// Field name -> value.
pub type Fields = BTreeMap<String, FieldValue>;
pub type Rows = BTreeMap<Key, Fields>;

/// One set of runtimes for the whole test binary (the test kit's).
pub fn runtimes() -> Arc<Runtimes> {
    bulkhead_testkit::shared_runtimes()
}

/// A test config: WAL under `dir/wal`, fast background loops, no automatic flush.
pub fn config(dir: &Path) -> EngineConfig {
    EngineConfig {
        wal: WalConfig {
            sync: WalSync::Always,
            ..WalConfig::default()
        },
        memtable: MemtableConfig {
            table_flush_size: 1 << 30,
            write_buffer: 1 << 30,
            flush_interval: Duration::from_secs(3600),
            ..MemtableConfig::default()
        },
        flush_check_interval: Duration::from_millis(20),
        flush_retry_initial_backoff: Duration::from_millis(10),
        flush_retry_max_backoff: Duration::from_millis(100),
        ..EngineConfig::with_dir(dir)
    }
}

/// A local-filesystem store under `dir/store`, io-bound.
pub fn local_store(dir: &Path) -> Arc<dyn ObjectStore> {
    bulkhead_testkit::local_store(&dir.join("store"), &runtimes())
}

/// A temp dir and a local store under it (`local_store`): the start of most scenarios.
pub fn temp_store() -> (tempfile::TempDir, Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = local_store(dir.path());
    (dir, store)
}

pub fn io_bound(inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    bulkhead_testkit::io_bound(inner, &runtimes())
}

pub async fn open(cfg: EngineConfig, store: &Arc<dyn ObjectStore>) -> Arc<Engine> {
    bulkhead_testkit::open_engine(cfg, store, &runtimes()).await
}

/// [`bulkhead_testkit::row`], taking the fields by value as these scenarios build them.
pub fn row(tags: &[(&str, &str)], fields: Vec<(&str, FieldValue)>, time: i64) -> Row {
    bulkhead_testkit::row(tags, &fields, time)
}

/// Every row of `db.table` in `range`, as a model map.
pub async fn read_range(
    engine: &Engine,
    db: &str,
    table: &str,
    range: TimeRange,
    projection: Option<Vec<String>>,
) -> Rows {
    let snap = engine.snapshot(db, table, range).expect("snapshot");
    let batches: Vec<RecordBatch> = snap
        .scan(ScanRequest {
            projection,
            ..Default::default()
        })
        .try_collect()
        .await
        .expect("scan");
    let mut out = Rows::new();
    for b in &batches {
        for (key, fields) in batch_rows(b) {
            assert!(
                out.insert(key.clone(), fields).is_none(),
                "duplicate primary key {key:?}"
            );
        }
    }
    out
}

pub async fn read_all(engine: &Engine, db: &str, table: &str) -> Rows {
    read_range(engine, db, table, TimeRange::ALL, None).await
}

/// Decode a batch into (key, fields); null fields are absent.
pub fn batch_rows(b: &RecordBatch) -> Vec<(Key, Fields)> {
    let schema = b.schema();
    let mut rows: Vec<(Key, Fields)> = (0..b.num_rows())
        .map(|_| ((Vec::new(), 0), Fields::new()))
        .collect();
    for (f, col) in schema.fields().iter().zip(b.columns()) {
        let role = f.metadata().get(ROLE_KEY).map(String::as_str).unwrap_or("");
        match role {
            "tag" => {
                let s = cast(col, &DataType::Utf8).expect("cast tag");
                let s = s.as_any().downcast_ref::<StringArray>().expect("utf8");
                for (i, r) in rows.iter_mut().enumerate() {
                    if s.is_valid(i) {
                        r.0.0.push((f.name().clone(), s.value(i).to_string()));
                    }
                }
            }
            "time" => {
                let t = col
                    .as_any()
                    .downcast_ref::<TimestampNanosecondArray>()
                    .expect("time");
                for (i, r) in rows.iter_mut().enumerate() {
                    r.0.1 = t.value(i);
                }
            }
            _ => {
                for (i, r) in rows.iter_mut().enumerate() {
                    if let Some(v) = value_at(col.as_ref(), i) {
                        r.1.insert(f.name().clone(), v);
                    }
                }
            }
        }
    }
    for r in &mut rows {
        r.0.0.sort();
    }
    rows
}

fn value_at(col: &dyn Array, i: usize) -> Option<FieldValue> {
    if col.is_null(i) {
        return None;
    }
    let a = col.as_any();
    if let Some(a) = a.downcast_ref::<Float64Array>() {
        return Some(FieldValue::F64(a.value(i)));
    }
    if let Some(a) = a.downcast_ref::<Int64Array>() {
        return Some(FieldValue::I64(a.value(i)));
    }
    if let Some(a) = a.downcast_ref::<UInt64Array>() {
        return Some(FieldValue::U64(a.value(i)));
    }
    if let Some(a) = a.downcast_ref::<BooleanArray>() {
        return Some(FieldValue::Bool(a.value(i)));
    }
    if let Some(a) = a.downcast_ref::<StringArray>() {
        return Some(FieldValue::Str(a.value(i).to_string()));
    }
    panic!("unexpected field type {:?}", col.data_type());
}

/// Apply `row` to the model with field-by-field overwrite.
pub fn model_apply(model: &mut Rows, r: &Row) {
    let mut tags: Vec<(String, String)> = r
        .tags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tags.sort();
    let entry = model.entry((tags, r.time)).or_default();
    for (k, v) in &r.fields {
        entry.insert(k.to_string(), v.clone());
    }
}

/// WAL segment files in `dir/wal`, sorted.
pub fn wal_segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .expect("wal dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

/// SST objects actually present in the store directory of an engine under `dir`.
pub fn stored_ssts(dir: &Path) -> usize {
    fn walk(p: &Path) -> usize {
        std::fs::read_dir(p).map_or(0, |entries| {
            entries
                .flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        walk(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
    }
    walk(&dir.join("store/data"))
}

/// An engine whose segments are `segment` ns long, with no background compaction and
/// row groups of 16 rows (so an SST streams out in many batches); the directory lives
/// as long as the guard.
pub async fn open_streaming_engine(segment: i64) -> (tempfile::TempDir, Arc<Engine>) {
    let (dir, store) = temp_store();
    let mut cfg = config(dir.path());
    cfg.sst.segment_duration = Duration::from_nanos(segment as u64);
    cfg.compaction.enabled = false;
    cfg.sst_row_group_size = 16;
    let engine = open(cfg, &store).await;
    (dir, engine)
}
