//! Deletes racing everything else: concurrent writers (each owning its series) write
//! and delete time ranges while the scheduler and a background task flush and compact
//! (with purges of deleted rows), and the engine crashes (dropped without `close`) and
//! reopens between rounds. After every reopen every row equals the model of what was
//! acknowledged: no deleted row comes back, no acknowledged row is lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::*;
use bulkhead_engine::{DeletePredicate, DeleteRequest, FieldValue, Scope, WriteBatch};
use bulkhead_tsbs::SplitMix64 as Rng;

const WRITERS: u64 = 4;
const TIMES: i64 = 120;
const ROUNDS: u64 = 4;
const OPS: u64 = 40;

/// Per writer: time -> value, as acknowledged.
type Model = BTreeMap<i64, i64>;

async fn writer(engine: Arc<bulkhead_engine::Engine>, w: u64, seed: u64, model: &mut Model) {
    let mut rng = Rng(seed | 1);
    let tag = format!("w{w}");
    for op in 0..OPS {
        if rng.below(5) == 0 {
            let a = rng.below(TIMES as u64) as i64;
            let b = (a + rng.below(30) as i64).min(TIMES - 1);
            let req = DeleteRequest {
                table: Some("t".into()),
                min_time: a,
                max_time: b,
                predicate: DeletePredicate::Eq("w".into(), tag.clone()),
            };
            match engine.delete("db", req).await {
                Ok(_) => {
                    model.retain(|t, _| *t < a || *t > b);
                }
                // The table may not exist yet.
                Err(bulkhead_engine::Error::TableNotFound { .. })
                | Err(bulkhead_engine::Error::DatabaseNotFound(_)) => {}
                Err(e) => panic!("delete: {e}"),
            }
        } else {
            let mut b = WriteBatch::default();
            let mut rows = Vec::new();
            for _ in 0..1 + rng.below(8) {
                let t = rng.below(TIMES as u64) as i64;
                let v = (seed as i64 & 0xffff) << 32 | (op as i64) << 8 | rows.len() as i64;
                rows.push((t, v));
                b.push(
                    "t",
                    row(&[("w", tag.as_str())], vec![("v", FieldValue::I64(v))], t),
                );
            }
            engine.write("db", b).await.expect("write");
            for (t, v) in rows {
                model.insert(t, v);
            }
        }
    }
}

async fn check(engine: &bulkhead_engine::Engine, models: &[Model], round: u64, seed: u64) {
    let rows = if engine.tables("db").is_empty() {
        Rows::new()
    } else {
        read_all(engine, "db", "t").await
    };
    let mut got: Vec<BTreeMap<i64, i64>> = vec![BTreeMap::new(); WRITERS as usize];
    for ((tags, time), fields) in &rows {
        let w: usize = tags[0].1.trim_start_matches('w').parse().expect("w");
        let FieldValue::I64(v) = fields["v"] else {
            panic!("v is not an integer")
        };
        got[w].insert(*time, v);
    }
    for (w, (model, got)) in models.iter().zip(&got).enumerate() {
        assert_eq!(
            got, model,
            "round {round} (seed {seed}): writer {w} reads differ from the model"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_racing_flushes_compactions_and_crashes() {
    let seed = std::env::var("BULKHEAD_DELETE_STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(11, |d| d.as_nanos() as u64)
        });
    eprintln!("seed {seed} (replay: BULKHEAD_DELETE_STRESS_SEED={seed})");
    let (dir, store) = temp_store();
    let mut cfg = config(dir.path());
    cfg.memtable.table_flush_size = 2 * 1024; // the scheduler flushes often
    cfg.sst.segment_duration = Duration::from_nanos(40);
    cfg.compaction.trigger = 2;
    cfg.compaction.grace_period = Duration::ZERO;
    cfg.compaction.check_interval = Duration::from_millis(20);
    cfg.compaction.enabled = true;
    let mut models: Vec<Model> = vec![Model::new(); WRITERS as usize];
    let mut rng = Rng(seed | 1);
    for round in 0..ROUNDS {
        let engine = open(cfg.clone(), &store).await;
        check(&engine, &models, round, seed).await;
        let stop = Arc::new(AtomicBool::new(false));
        let background = {
            let (engine, stop) = (Arc::clone(&engine), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let _ = engine.flush(&Scope::All).await;
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    let _ = engine.compact(&Scope::All).await;
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            })
        };
        let tasks: Vec<_> = models
            .drain(..)
            .enumerate()
            .map(|(w, mut model)| {
                let engine = Arc::clone(&engine);
                let s = rng.next_u64();
                tokio::spawn(async move {
                    writer(engine, w as u64, s, &mut model).await;
                    model
                })
            })
            .collect();
        for t in tasks {
            models.push(t.await.expect("writer"));
        }
        stop.store(true, Ordering::Relaxed);
        background.await.expect("background");
        check(&engine, &models, round, seed).await;
        // Crash: no close, everything not flushed is only in the WAL.
        drop(engine);
    }
    let engine = open(cfg.clone(), &store).await;
    check(&engine, &models, ROUNDS, seed).await;
    engine.close().await.expect("close");
}
