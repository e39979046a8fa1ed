//! A batch with a type conflict is rejected whole: no row, column or table of it
//! becomes visible, and the error names database, table, column and both types.

use crate::common::*;
use bulkhead_engine::{Error, FieldType, FieldValue, WriteBatch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_batch_leaves_no_trace() {
    let (dir, store) = temp_store();
    let engine = open(config(dir.path()), &store).await;
    let mut first = WriteBatch::default();
    first.push(
        "cpu",
        row(&[("host", "a")], vec![("usage", FieldValue::F64(1.0))], 1),
    );
    engine.write("db", first).await.expect("first write");
    let before = read_all(&engine, "db", "cpu").await;
    let schema_before = engine.table_schema("db", "cpu").expect("schema");

    let mut bad = WriteBatch::default();
    // A new table, a new column on the existing table, then the conflict.
    bad.push(
        "mem",
        row(&[("host", "a")], vec![("free", FieldValue::I64(5))], 1),
    );
    bad.push(
        "cpu",
        row(
            &[("host", "b"), ("rack", "r1")],
            vec![("idle", FieldValue::F64(2.0))],
            2,
        ),
    );
    bad.push(
        "cpu",
        row(&[("host", "c")], vec![("usage", FieldValue::I64(3))], 3),
    );
    let err = engine.write("db", bad).await.expect_err("conflict");
    match &err {
        Error::SchemaConflict {
            db,
            table,
            column,
            existing,
            attempted,
        } => {
            assert_eq!(
                (db.as_str(), table.as_str(), column.as_str()),
                ("db", "cpu", "usage")
            );
            assert_eq!((*existing, *attempted), (FieldType::F64, FieldType::I64));
        }
        other => panic!("expected SchemaConflict, got {other}"),
    }
    assert!(err.to_string().contains("usage"), "{err}");
    assert_eq!(
        engine.tables("db"),
        vec!["cpu".to_string()],
        "no table from the bad batch"
    );
    assert_eq!(
        engine.table_schema("db", "cpu").expect("schema"),
        schema_before
    );
    assert_eq!(read_all(&engine, "db", "cpu").await, before);

    // Conflicts inside one batch are caught too, and nothing is written to the WAL:
    let mut self_conflict = WriteBatch::default();
    self_conflict.push("new", row(&[], vec![("x", FieldValue::Bool(true))], 1));
    self_conflict.push(
        "new",
        row(&[], vec![("x", FieldValue::Str("no".into()))], 2),
    );
    assert!(matches!(
        engine.write("db", self_conflict).await,
        Err(Error::SchemaConflict { .. })
    ));
    drop(engine);
    let engine = open(config(dir.path()), &store).await;
    assert_eq!(engine.tables("db"), vec!["cpu".to_string()]);
    assert_eq!(read_all(&engine, "db", "cpu").await, before);
}
