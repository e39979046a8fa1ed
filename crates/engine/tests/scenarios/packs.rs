//! Packs: small tables flushed in one round share one object (`sst` module docs).
//! Their rows read back (members sit at offsets in the object), compaction replaces a
//! member like any SST, a reopened engine finds the pack again, and the object is
//! deleted only once every member is gone.

use std::time::{Duration, Instant};

use crate::common::*;
use bulkhead_engine::{FieldValue, Scope, SstMeta, WriteBatch};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;

const HOUR: i64 = 3600 * 1_000_000_000;

fn v(x: i64) -> Vec<(&'static str, FieldValue)> {
    vec![("v", FieldValue::I64(x))]
}

fn values(rows: &Rows) -> Vec<FieldValue> {
    rows.values().map(|f| f["v"].clone()).collect()
}

async fn metas(engine: &bulkhead_engine::Engine) -> Vec<SstMeta> {
    let state = engine.manifest_state().await;
    state
        .tables
        .get("db")
        .map(|t| t.values().flat_map(|t| t.ssts.values().cloned()).collect())
        .unwrap_or_default()
}

async fn objects(store: &std::sync::Arc<dyn object_store::ObjectStore>) -> Vec<String> {
    let listed: Vec<_> = store
        .list(Some(&Path::from("data")))
        .try_collect()
        .await
        .expect("list");
    listed.into_iter().map(|m| m.location.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_tables_share_a_pack_until_every_member_is_gone() {
    let (dir, store) = temp_store();
    let engine = open(config(dir.path()), &store).await;
    // t1 has rows in two segments: two members of the pack.
    let mut b = WriteBatch::default();
    b.push("t0", row(&[("host", "a")], v(0), 1));
    b.push("t1", row(&[("host", "b")], v(10), 1));
    b.push("t1", row(&[("host", "b")], v(11), 3 * HOUR));
    b.push("t2", row(&[("host", "c"), ("dc", "x")], v(20), 1));
    engine.write("db", b).await.expect("write");
    engine.flush(&Scope::All).await.expect("flush");

    let packed = metas(&engine).await;
    assert_eq!(packed.len(), 4, "{packed:?}");
    assert!(packed.iter().all(|m| m.pack_offset.is_some()), "{packed:?}");
    let pack = packed[0].path.clone();
    assert!(
        packed.iter().all(|m| m.path == pack),
        "one object: {packed:?}"
    );
    assert_eq!(objects(&store).await, vec![pack.clone()]);
    let mut offsets: Vec<_> = packed
        .iter()
        .map(|m| (m.offset(), m.offset() + m.bytes))
        .collect();
    offsets.sort();
    assert!(offsets.windows(2).all(|w| w[0].1 <= w[1].0), "{offsets:?}");
    assert_eq!(values(&read_all(&engine, "db", "t0").await), v_list(&[0]));
    assert_eq!(
        values(&read_all(&engine, "db", "t1").await),
        v_list(&[10, 11])
    );
    assert_eq!(values(&read_all(&engine, "db", "t2").await), v_list(&[20]));

    // One table alone flushes as a standalone SST; compaction then merges it with
    // t1's member in the first segment, which leaves the pack.
    let mut b = WriteBatch::default();
    b.push("t1", row(&[("host", "b")], v(12), 2));
    engine.write("db", b).await.expect("write");
    let t1 = Scope::Table {
        db: "db".into(),
        table: "t1".into(),
    };
    engine.flush(&t1).await.expect("flush t1");
    let summary = engine.compact(&t1).await.expect("compact");
    assert_eq!(summary.tasks, 1, "{summary:?}");
    assert_eq!(
        values(&read_all(&engine, "db", "t1").await),
        v_list(&[10, 12, 11])
    );
    let in_pack = metas(&engine)
        .await
        .iter()
        .filter(|m| m.pack_offset.is_some())
        .count();
    assert_eq!(in_pack, 3);
    engine.close().await.expect("close");

    // A reopened engine reads the members and still owns the pack.
    let engine = open(config(dir.path()), &store).await;
    assert_eq!(values(&read_all(&engine, "db", "t0").await), v_list(&[0]));
    assert_eq!(values(&read_all(&engine, "db", "t2").await), v_list(&[20]));
    for t in ["t0", "t2"] {
        engine.drop_table("db", t, false).await.expect("drop");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pack_path = Path::from(pack.as_str());
    store
        .head(&pack_path)
        .await
        .expect("t1's member keeps the pack");
    assert_eq!(
        values(&read_all(&engine, "db", "t1").await),
        v_list(&[10, 12, 11])
    );
    engine.drop_table("db", "t1", false).await.expect("drop");
    let started = Instant::now();
    while store.head(&pack_path).await.is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the pack outlived its members"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    engine.close().await.expect("close");
}

fn v_list(xs: &[i64]) -> Vec<FieldValue> {
    xs.iter().map(|&x| FieldValue::I64(x)).collect()
}
