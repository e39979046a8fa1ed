//! `DROP TABLE` / `DROP DATABASE`: dropped rows stay gone across flushes, compaction
//! and crashes (an engine dropped without close), other tables are untouched, a name
//! can be reused with a new schema, and a write racing a drop lands on one side of it.

use crate::common::*;
use bulkhead_engine::{Error, FieldValue, Scope, WriteBatch};

fn batch(table: &str, host: &str, from: i64, n: i64, field: (&str, FieldValue)) -> WriteBatch {
    let mut b = WriteBatch::default();
    for t in from..from + n {
        b.push(
            table,
            row(&[("host", host)], vec![(field.0, field.1.clone())], t),
        );
    }
    b
}

fn int(v: i64) -> (&'static str, FieldValue) {
    ("usage", FieldValue::I64(v))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_tables_stay_dropped_across_flush_and_crash() {
    let (dir, store) = temp_store();
    let mut keep = Rows::new();
    {
        let engine = open(config(dir.path()), &store).await;
        // `cpu`: flushed rows and memtable rows; `mem`: must survive untouched.
        engine
            .write("db", batch("cpu", "a", 0, 50, int(1)))
            .await
            .expect("write");
        engine.flush(&Scope::All).await.expect("flush");
        engine
            .write("db", batch("cpu", "b", 100, 50, int(2)))
            .await
            .expect("write");
        let m = batch("mem", "a", 0, 30, int(3));
        for r in &m.tables[0].rows {
            model_apply(&mut keep, r);
        }
        engine.write("db", m).await.expect("write");

        let summary = engine.drop_table("db", "cpu", false).await.expect("drop");
        assert_eq!(summary.tables, vec!["cpu".to_string()]);
        assert_eq!(engine.tables("db"), vec!["mem".to_string()]);
        assert!(matches!(
            engine.drop_table("db", "cpu", false).await,
            Err(Error::TableNotFound { .. })
        ));
        assert_eq!(
            engine
                .drop_table("db", "cpu", true)
                .await
                .expect("if exists")
                .tables,
            Vec::<String>::new()
        );
        // Same name, new schema (the field is now a float): a new table.
        engine
            .write(
                "db",
                batch("cpu", "c", 500, 5, ("usage", FieldValue::F64(0.5))),
            )
            .await
            .expect("write after drop");
        assert_eq!(read_all(&engine, "db", "cpu").await.len(), 5);
        drop(engine); // a crash: no close, the new `cpu` only in the WAL
    }
    {
        let engine = open(config(dir.path()), &store).await;
        assert_eq!(
            read_all(&engine, "db", "cpu").await.len(),
            5,
            "after replay"
        );
        assert_eq!(read_all(&engine, "db", "mem").await, keep);
        engine.flush(&Scope::All).await.expect("flush");
        engine.compact(&Scope::All).await.expect("compact");
        engine.close().await.expect("close");
    }
    let engine = open(config(dir.path()), &store).await;
    assert_eq!(
        read_all(&engine, "db", "cpu").await.len(),
        5,
        "after flush + restart"
    );
    assert_eq!(read_all(&engine, "db", "mem").await, keep);
    engine.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_database_removes_every_table_and_its_files() {
    let (dir, store) = temp_store();
    // Files are counted in each database's directory: no packs (`packs.rs` drops
    // the members of one).
    let config = |d: &std::path::Path| {
        let mut c = config(d);
        c.memtable.pack_table_bytes = 0;
        c
    };
    let engine = open(config(dir.path()), &store).await;
    for t in ["a", "b", "c"] {
        engine
            .write("gone", batch(t, "h", 0, 20, int(1)))
            .await
            .expect("write");
    }
    engine
        .write("kept", batch("a", "h", 0, 20, int(1)))
        .await
        .expect("write");
    engine.flush(&Scope::All).await.expect("flush");
    let sst_files = |db: &str| {
        walk(dir.path())
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(&format!("/{db}/")))
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .count()
    };
    assert_eq!(sst_files("gone"), 3);
    let mut summary = engine.drop_database("gone", false).await.expect("drop db");
    summary.tables.sort();
    assert_eq!(summary.tables, vec!["a", "b", "c"]);
    assert_eq!(engine.databases(), vec!["kept".to_string()]);
    assert!(matches!(
        engine.drop_database("gone", false).await,
        Err(Error::DatabaseNotFound(_))
    ));
    // Files are deleted in the background once no reader holds them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sst_files("gone") > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(sst_files("gone"), 0, "dropped SSTs deleted");
    assert_eq!(sst_files("kept"), 1);
    engine.close().await.expect("close");
    let engine = open(config(dir.path()), &store).await;
    assert_eq!(engine.databases(), vec!["kept".to_string()]);
    engine.close().await.expect("close");
}

/// Writes racing drops: whatever interleaving happens, what a reader sees before the
/// crash equals what the replay rebuilds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_racing_drops_recover_to_what_was_seen() {
    let (dir, store) = temp_store();
    let seen = {
        let engine = open(config(dir.path()), &store).await;
        let writer = {
            let engine = std::sync::Arc::clone(&engine);
            tokio::spawn(async move {
                for i in 0..200 {
                    let mut b = batch("t", "w", i * 10, 10, int(i));
                    b.push("other", row(&[("host", "w")], vec![int(i)], i));
                    engine.write("db", b).await.expect("write");
                }
            })
        };
        for _ in 0..20 {
            let _ = engine.drop_table("db", "t", true).await.expect("drop");
            tokio::task::yield_now().await;
        }
        writer.await.expect("writer");
        let seen = (
            rows_if_any(&engine, "t").await,
            read_all(&engine, "db", "other").await,
        );
        assert_eq!(
            seen.1.len(),
            200,
            "the other table of each batch is never dropped"
        );
        drop(engine);
        seen
    };
    let engine = open(config(dir.path()), &store).await;
    let after = (
        rows_if_any(&engine, "t").await,
        read_all(&engine, "db", "other").await,
    );
    assert_eq!(after, seen);
    engine.close().await.expect("close");
}

async fn rows_if_any(engine: &bulkhead_engine::Engine, table: &str) -> Rows {
    if engine.tables("db").iter().any(|t| t == table) {
        read_all(engine, "db", table).await
    } else {
        Rows::new()
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
