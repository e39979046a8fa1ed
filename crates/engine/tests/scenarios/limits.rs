//! Catalog limits: each refuses the whole write naming the limit and its value; WAL
//! replay never applies them (a lowered limit does not stop recovery), the series count
//! survives a reopen (rebuilt from stored data), and a drop frees its table's slot.

use crate::common::*;
use bulkhead_engine::{CatalogLimits, Error, FieldValue, Scope, WriteBatch};

fn one(table: &str, host: &str, t: i64) -> WriteBatch {
    let mut b = WriteBatch::default();
    b.push(
        table,
        row(&[("host", host)], vec![("v", FieldValue::I64(t))], t),
    );
    b
}

fn limit_of(e: Error) -> (&'static str, usize) {
    match e {
        Error::LimitExceeded { limit, value, .. } => (limit, value),
        other => panic!("expected a limit error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_writes_but_never_recovery() {
    let (dir, store) = temp_store();
    let engine = open(config(dir.path()), &store).await;
    // Under the defaults: 5 series, 2 tables.
    for h in ["a", "b", "c", "d", "e"] {
        engine.write("db", one("cpu", h, 1)).await.expect("write");
    }
    engine.write("db", one("mem", "a", 1)).await.expect("write");
    engine.flush(&Scope::All).await.expect("flush");
    engine.write("db", one("cpu", "f", 2)).await.expect("write");
    assert_eq!(engine.series_count("db", "cpu").await.expect("count"), 6);
    drop(engine); // crash: `f` only in the WAL

    let mut cfg = config(dir.path());
    cfg.limits = CatalogLimits {
        max_databases: 1,
        max_tables_per_database: 2,
        max_columns_per_table: 2,
        max_series_per_table: 3,
    };
    let engine = open(cfg.clone(), &store).await;
    assert_eq!(
        read_all(&engine, "db", "cpu").await.len(),
        6,
        "replayed past the limits"
    );
    assert_eq!(engine.series_count("db", "cpu").await.expect("count"), 6);
    let e = engine
        .write("db", one("cpu", "g", 3))
        .await
        .expect_err("series");
    assert_eq!(limit_of(e), ("max_series_per_table", 3));
    // A stored series still takes writes.
    engine
        .write("db", one("cpu", "a", 3))
        .await
        .expect("existing series");
    let e = engine
        .write("db", one("disk", "a", 3))
        .await
        .expect_err("tables");
    assert_eq!(limit_of(e), ("max_tables_per_database", 2));
    let e = engine
        .write("other", one("cpu", "a", 3))
        .await
        .expect_err("dbs");
    assert_eq!(limit_of(e), ("max_databases", 1));
    let mut wide = WriteBatch::default();
    wide.push(
        "mem",
        row(
            &[("host", "a")],
            vec![("v", FieldValue::I64(1)), ("w", FieldValue::I64(1))],
            5,
        ),
    );
    let e = engine.write("db", wide).await.expect_err("columns");
    assert_eq!(limit_of(e), ("max_columns_per_table", 2));
    // The refused writes left nothing behind.
    assert_eq!(
        engine.tables("db"),
        vec!["cpu".to_string(), "mem".to_string()]
    );
    assert!(engine.databases() == vec!["db".to_string()]);
    assert_eq!(read_all(&engine, "db", "cpu").await.len(), 7);
    // A dropped table frees its slot; its name starts with no series.
    engine.drop_table("db", "cpu", false).await.expect("drop");
    engine
        .write("db", one("disk", "a", 3))
        .await
        .expect("a free slot");
    for h in ["x", "y"] {
        engine
            .write("db", one("disk", h, 4))
            .await
            .expect("3 series");
    }
    let e = engine
        .write("db", one("disk", "z", 4))
        .await
        .expect_err("4 series");
    assert_eq!(limit_of(e), ("max_series_per_table", 3));
    engine.close().await.expect("close");
}
