//! Compaction and retention: SST counts come down, reads never change, crashes at any
//! point leave the old or the new set (and no garbage), the memory budget holds, TTL.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use bulkhead_engine::compaction::FailPoint;
use bulkhead_engine::{CompactionConfig, Engine, EngineConfig, FieldValue, Scope, WriteBatch};

const SEG: i64 = 7_200_000_000_000; // 2 h, the default segment

fn compaction_config(dir: &Path) -> EngineConfig {
    EngineConfig {
        compaction: CompactionConfig {
            trigger: 4,
            grace_period: Duration::ZERO,
            check_interval: Duration::from_millis(50),
            ..CompactionConfig::default()
        },
        ..config(dir)
    }
}

/// One small flush per call: `n` rows per host in segment `seg`, with overwrites of
/// earlier flushes (same times, new values).
async fn write_and_flush(engine: &Engine, model: &mut Rows, seg: i64, round: i64) {
    let mut b = WriteBatch::default();
    for host in ["a", "b", "c"] {
        for i in 0..20 {
            let t = seg * SEG + (i % 15) * 1_000_000_000 + round;
            let r = row(
                &[("host", host)],
                vec![
                    ("v", FieldValue::I64(round * 100 + i)),
                    (format!("f{}", round % 3).as_str(), FieldValue::F64(1.0)),
                ],
                t - round, // every round overwrites the same 15 timestamps
            );
            model_apply(model, &r);
            b.push("cpu", r);
        }
    }
    engine.write("db", b).await.expect("write");
    engine.flush(&Scope::All).await.expect("flush");
}

fn sst_count(engine: &Engine, seg: i64) -> usize {
    engine
        .snapshot("db", "cpu", bulkhead_engine::TimeRange::ALL)
        .expect("snapshot")
        .ssts()
        .iter()
        .filter(|m| m.segment_start == seg * SEG)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_reencodes_a_lone_sst_and_reads_do_not_change() {
    let (dir, store) = temp_store();
    let mut cfg = config(dir.path());
    cfg.compaction.enabled = false;
    let engine = open(cfg.clone(), &store).await;
    let mut model = Rows::new();
    for round in 0..2 {
        write_and_flush(&engine, &mut model, 1, round).await;
    }
    write_and_flush(&engine, &mut model, 2, 0).await;
    let ids = |engine: &Engine| -> Vec<String> {
        let mut v: Vec<String> = engine
            .snapshot("db", "cpu", bulkhead_engine::TimeRange::ALL)
            .expect("snapshot")
            .ssts()
            .iter()
            .map(|m| m.file_id.clone())
            .collect();
        v.sort();
        v
    };
    // A plain compaction leaves segment 2's lone file alone; a rewrite does not.
    engine.compact(&Scope::All).await.expect("compact");
    let after_compact = ids(&engine);
    assert_eq!((sst_count(&engine, 1), sst_count(&engine, 2)), (1, 1));
    let summary = engine.rewrite(&Scope::All).await.expect("rewrite");
    assert_eq!((summary.tasks, summary.input_files), (2, 2), "{summary:?}");
    let after_rewrite = ids(&engine);
    assert_eq!(after_rewrite.len(), 2);
    assert!(
        after_rewrite.iter().all(|id| !after_compact.contains(id)),
        "{after_compact:?} -> {after_rewrite:?}"
    );
    assert_eq!(read_all(&engine, "db", "cpu").await, model);
    // Repeatable, and durable across a restart.
    engine.rewrite(&Scope::All).await.expect("rewrite again");
    assert_eq!(read_all(&engine, "db", "cpu").await, model);
    engine.close().await.expect("close");
    drop(engine);
    let engine = open(cfg, &store).await;
    assert_eq!(read_all(&engine, "db", "cpu").await, model);
    assert_eq!(ids(&engine).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_compaction_brings_sst_counts_down_and_reads_do_not_change() {
    let (dir, store) = temp_store();
    let engine = open(compaction_config(dir.path()), &store).await;
    let mut model = Rows::new();
    for round in 0..10 {
        for seg in [1, 2] {
            write_and_flush(&engine, &mut model, seg, round).await;
        }
        assert_eq!(read_all(&engine, "db", "cpu").await, model, "round {round}");
    }
    // The scheduler is woken by flushes; wait for it to catch up.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sst_count(&engine, 1) > 4 || sst_count(&engine, 2) > 4 {
        assert!(
            Instant::now() < deadline,
            "compaction did not catch up: {} / {}",
            sst_count(&engine, 1),
            sst_count(&engine, 2)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(read_all(&engine, "db", "cpu").await, model);
    let c = engine.stats().compaction;
    assert!(
        c.completed > 0 && c.input_bytes > c.output_bytes && c.failures == 0,
        "{c:?}"
    );
    // Manual compaction merges what is left; after a restart everything is the same.
    let summary = engine.compact(&Scope::All).await.expect("compact");
    assert!(
        sst_count(&engine, 1) <= 1 && sst_count(&engine, 2) <= 1,
        "{summary:?}"
    );
    assert_eq!(read_all(&engine, "db", "cpu").await, model);
    engine.close().await.expect("close");
    drop(engine);
    let engine = open(compaction_config(dir.path()), &store).await;
    assert_eq!(read_all(&engine, "db", "cpu").await, model);
    assert_eq!(
        stored_ssts(dir.path()),
        sst_count(&engine, 1) + sst_count(&engine, 2),
        "no garbage left"
    );
    engine.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_upload_and_commit_leaves_the_old_set_and_the_orphan_is_collected() {
    let (dir, store) = temp_store();
    let mut cfg = compaction_config(dir.path());
    cfg.compaction.enabled = false;
    let engine = open(cfg.clone(), &store).await;
    let mut model = Rows::new();
    for round in 0..4 {
        write_and_flush(&engine, &mut model, 1, round).await;
    }
    engine
        .compaction_fail_points()
        .set(Some(FailPoint::AfterUpload));
    let err = engine
        .compact(&Scope::All)
        .await
        .expect_err("injected failure");
    assert!(err.to_string().contains("injected"), "{err}");
    assert_eq!(
        sst_count(&engine, 1),
        4,
        "the old set is still the live set"
    );
    assert_eq!(
        stored_ssts(dir.path()),
        5,
        "the uploaded output is an orphan"
    );
    assert_eq!(read_all(&engine, "db", "cpu").await, model);
    drop(engine); // crash
    let engine = open(cfg, &store).await;
    assert_eq!(read_all(&engine, "db", "cpu").await, model);
    assert_eq!(
        stored_ssts(dir.path()),
        4,
        "the orphan was collected at startup"
    );
    engine.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_commit_and_delete_leaves_the_new_set_and_inputs_are_collected() {
    let (dir, store) = temp_store();
    let mut cfg = compaction_config(dir.path());
    cfg.compaction.enabled = false;
    let engine = open(cfg.clone(), &store).await;
    let mut model = Rows::new();
    for round in 0..4 {
        write_and_flush(&engine, &mut model, 1, round).await;
    }
    // A reader holds the inputs, so they cannot be deleted yet.
    let held = engine
        .snapshot("db", "cpu", bulkhead_engine::TimeRange::ALL)
        .expect("snapshot");
    engine.compact(&Scope::All).await.expect("compact");
    assert_eq!(sst_count(&engine, 1), 1);
    assert_eq!(
        stored_ssts(dir.path()),
        5,
        "inputs stay while a snapshot holds them"
    );
    // The held snapshot still reads the old files correctly.
    let old: Rows = {
        use futures::TryStreamExt;
        let batches: Vec<_> = held
            .scan(Default::default())
            .try_collect()
            .await
            .expect("scan");
        batches.iter().flat_map(batch_rows).collect()
    };
    assert_eq!(old, model);
    engine.close().await.expect("close");
    drop(engine); // crash before the inputs were deleted (the snapshot still holds them)
    let engine = open(cfg, &store).await;
    assert_eq!(read_all(&engine, "db", "cpu").await, model);
    assert_eq!(
        stored_ssts(dir.path()),
        1,
        "replaced inputs were collected at startup"
    );
    drop(held);
    engine.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_larger_than_the_memory_budget_does_not_run_whole() {
    let (dir, store) = temp_store();
    let mut cfg = compaction_config(dir.path());
    cfg.compaction.enabled = false;
    let engine = open(cfg.clone(), &store).await;
    let mut model = Rows::new();
    for round in 0..4 {
        write_and_flush(&engine, &mut model, 1, round).await;
    }
    let metas = engine
        .snapshot("db", "cpu", bulkhead_engine::TimeRange::ALL)
        .expect("snapshot")
        .ssts();
    let biggest = metas
        .iter()
        .map(bulkhead_engine::compaction::picker::estimate_memory)
        .max()
        .expect("ssts");
    engine.close().await.expect("close");
    drop(engine);
    // Room for two inputs at a time, not four.
    cfg.compaction.memory_budget = biggest * 2 + 1;
    let engine = open(cfg, &store).await;
    let summary = engine.compact(&Scope::All).await.expect("compact");
    assert_eq!(summary.tasks, 2, "{summary:?}");
    assert_eq!(summary.input_files, 4, "{summary:?}");
    assert_eq!(sst_count(&engine, 1), 2);
    assert_eq!(read_all(&engine, "db", "cpu").await, model);
    engine.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_hides_old_rows_at_once_and_drops_their_segments() {
    let (dir, store) = temp_store();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64;
    let mut cfg = compaction_config(dir.path());
    cfg.compaction.enabled = false;
    // A default TTL of one hour, one day for db.cpu, and forever (zero) for db.mem.
    cfg.retention.ttl = Duration::from_secs(3600);
    cfg.retention
        .overrides
        .insert("db.cpu".into(), Duration::from_secs(24 * 3600));
    cfg.retention
        .overrides
        .insert("db.mem".into(), Duration::ZERO);
    let engine = open(cfg, &store).await;
    let mut b = WriteBatch::default();
    let old = now - 3 * 24 * 3600 * 1_000_000_000;
    b.push(
        "cpu",
        row(&[("host", "a")], vec![("v", FieldValue::I64(1))], old),
    );
    b.push(
        "cpu",
        row(&[("host", "a")], vec![("v", FieldValue::I64(2))], now),
    );
    b.push(
        "mem",
        row(&[("host", "a")], vec![("v", FieldValue::I64(3))], old),
    );
    engine.write("db", b).await.expect("write");
    // Hidden from reads before anything is flushed or dropped.
    let rows = read_all(&engine, "db", "cpu").await;
    assert_eq!(rows.len(), 1);
    assert!(rows.keys().all(|(_, t)| *t == now));
    assert_eq!(
        read_all(&engine, "db", "mem").await.len(),
        1,
        "a zero override exempts db.mem from the default TTL"
    );
    engine.flush(&Scope::All).await.expect("flush");
    let cpu_ssts = |e: &Engine| {
        e.stats()
            .tables
            .iter()
            .find(|t| t.table == "cpu")
            .expect("cpu")
            .sst_count
    };
    assert_eq!(
        cpu_ssts(&engine),
        2,
        "one SST per segment: the expired one and today's"
    );
    let summary = engine.compact(&Scope::All).await.expect("compact");
    assert_eq!(summary.expired_files, 1, "{summary:?}");
    assert_eq!(engine.stats().compaction.expired_ssts, 1);
    assert_eq!(cpu_ssts(&engine), 1);
    assert_eq!(read_all(&engine, "db", "mem").await.len(), 1);
    assert_eq!(read_all(&engine, "db", "cpu").await.len(), 1);
    engine.close().await.expect("close");
}
