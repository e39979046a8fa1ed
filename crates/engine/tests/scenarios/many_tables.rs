//! Many small tables: thousands of one-row tables flush together (admin flush and the
//! background scheduler), every row is in an SST afterwards, the WAL is truncated past
//! them, and a reopened engine reads them all back. Small tables flush into shared
//! objects (packs, `packs.rs`); others run concurrently (`flush_concurrency`) and
//! share manifest commits.

use std::time::{Duration, Instant};

use crate::common::*;
use bulkhead_engine::{Engine, EngineConfig, FieldValue, Scope, WriteBatch};

const TABLES: usize = 1500;

fn table_name(i: usize) -> String {
    format!("t{i:05}")
}

/// One row in each of `TABLES` tables, with the value `round * 1_000_000 + i`.
async fn write_round(engine: &Engine, round: i64) {
    let mut b = WriteBatch::default();
    for i in 0..TABLES {
        b.push(
            &table_name(i),
            row(
                &[("host", "h")],
                vec![("v", FieldValue::I64(round * 1_000_000 + i as i64))],
                round,
            ),
        );
    }
    engine.write("db", b).await.expect("write");
}

/// Tables of `db` with rows still in memory, and tables without an SST.
fn unflushed(engine: &Engine) -> (usize, usize) {
    let stats = engine.stats();
    let in_memory = stats.tables.iter().filter(|t| t.memtable_bytes > 0).count();
    let no_sst = stats.tables.iter().filter(|t| t.sst_count == 0).count();
    (in_memory, no_sst)
}

async fn check_rows(engine: &Engine, rounds: i64) {
    for i in (0..TABLES).step_by(97).chain([TABLES - 1]) {
        let rows = read_all(engine, "db", &table_name(i)).await;
        let values: Vec<_> = rows.values().map(|f| f["v"].clone()).collect();
        let expected: Vec<_> = (0..rounds)
            .map(|r| FieldValue::I64(r * 1_000_000 + i as i64))
            .collect();
        assert_eq!(values, expected, "table {}", table_name(i));
    }
}

fn cfg(dir: &std::path::Path) -> EngineConfig {
    config(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_one_row_tables_flush_and_reopen() {
    let (dir, store) = temp_store();

    // Round 0 through the admin flush.
    let engine = open(cfg(dir.path()), &store).await;
    write_round(&engine, 0).await;
    assert_eq!(engine.stats().tables.len(), TABLES);
    engine.flush(&Scope::All).await.expect("flush");
    assert_eq!(unflushed(&engine), (0, 0));
    let version_after_admin = engine.manifest_state().await.version;
    engine.close().await.expect("close");

    // Round 1 through the background scheduler: the age threshold picks every table.
    let engine = open(
        {
            let mut c = cfg(dir.path());
            c.memtable.flush_interval = Duration::from_millis(200);
            c
        },
        &store,
    )
    .await;
    check_rows(&engine, 1).await;
    write_round(&engine, 1).await;
    let started = Instant::now();
    while unflushed(&engine).0 > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the scheduler left tables in memory: {:?}",
            unflushed(&engine)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let state = engine.manifest_state().await;
    assert!(state.version > version_after_admin);
    let ssts: usize = state.tables["db"].values().map(|t| t.ssts.len()).sum();
    assert_eq!(ssts, 2 * TABLES, "one SST per table per round");
    // ... in a few shared objects (packs), not one object each.
    let objects: std::collections::HashSet<&str> = state.tables["db"]
        .values()
        .flat_map(|t| t.ssts.values().map(|m| m.path.as_str()))
        .collect();
    assert!(objects.len() < TABLES / 10, "{} objects", objects.len());
    // Every row is in an SST, so the WAL segments holding them can go.
    engine.flush(&Scope::All).await.expect("flush");
    let wal_bytes = engine.stats().wal_bytes;
    engine.close().await.expect("close");

    // A reopen reads both rounds from SSTs alone.
    let engine = open(cfg(dir.path()), &store).await;
    assert_eq!(unflushed(&engine), (0, 0), "replay found unflushed rows");
    check_rows(&engine, 2).await;
    engine.close().await.expect("close");
    assert!(
        wal_bytes < 1 << 20,
        "the WAL was not truncated: {wal_bytes} bytes"
    );
}
