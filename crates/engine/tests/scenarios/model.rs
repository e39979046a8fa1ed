//! Property test: random writes (overwrites, new tags and fields, several tables and
//! time segments) interleaved with flushes, compactions, clean reopens and
//! crash-reopens; after every step, every table read equals a `BTreeMap` model with
//! field-by-field overwrite, and so do time-range scans.

use std::time::Duration;

use crate::common::*;
use bulkhead_engine::{FieldValue, Scope, TimeRange, WriteBatch};
use bulkhead_runtime::RuntimeName;
use proptest::prelude::*;

const TABLES: [&str; 2] = ["cpu", "mem"];
const SEGMENT: i64 = 100;

#[derive(Debug, Clone)]
struct W {
    table: usize,
    host: u8,
    region: Option<u8>,
    time: i64,
    fields: Vec<(u8, i64)>,
}

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<W>),
    Flush,
    Compact,
    Reopen,
    Crash,
}

fn field(idx: u8, v: i64) -> (String, FieldValue) {
    // Each field name has one fixed type, so random writes never conflict.
    let value = match idx {
        0 | 1 => FieldValue::I64(v),
        2 => FieldValue::F64(v as f64 / 4.0),
        3 => FieldValue::Str(format!("s{v}")),
        4 => FieldValue::Bool(v % 2 == 0),
        _ => FieldValue::U64(v.unsigned_abs()),
    };
    (format!("f{idx}"), value)
}

fn w_strategy() -> impl Strategy<Value = W> {
    (
        0..TABLES.len(),
        0u8..3,
        proptest::option::weighted(0.3, 0u8..2),
        // Few distinct times, so overwrites of the same key are common.
        (-5i64..35).prop_map(|t| t * 10),
        proptest::collection::vec((0u8..6, -100i64..100), 1..4),
    )
        .prop_map(|(table, host, region, time, fields)| W {
            table,
            host,
            region,
            time,
            fields,
        })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec(w_strategy(), 1..12).prop_map(Op::Write),
        2 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
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
        // Field names must be unique within a row.
        let mut fields: Vec<(bulkhead_engine::SmolStr, FieldValue)> = Vec::new();
        for (i, v) in &w.fields {
            let (name, value) = field(*i, *v);
            fields.retain(|(n, _)| *n != name);
            fields.push((name.into(), value));
        }
        let r = bulkhead_engine::Row {
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            fields,
            time: w.time,
        };
        model_apply(&mut models[w.table], &r);
        b.push(TABLES[w.table], r);
    }
    b
}

async fn check(engine: &bulkhead_engine::Engine, models: &[Rows; 2]) -> Result<(), TestCaseError> {
    for (i, t) in TABLES.iter().enumerate() {
        let got = if engine.tables("db").iter().any(|x| x == t) {
            read_all(engine, "db", t).await
        } else {
            Rows::new()
        };
        prop_assert_eq!(&got, &models[i], "table {}", t);
        if !models[i].is_empty() {
            let range = TimeRange::new(40, 160);
            let got = read_range(engine, "db", t, range, None).await;
            let want: Rows = models[i]
                .iter()
                .filter(|((_, time), _)| range.contains(*time))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            prop_assert_eq!(got, want, "range scan of {}", t);
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
    // Every read seals the active memtable, so flushes merge many frozen memtables.
    cfg.snapshot_seal_bytes = 0;
    let mut engine = open(cfg.clone(), &store).await;
    let mut models: [Rows; 2] = [Rows::new(), Rows::new()];
    for op in ops {
        match op {
            Op::Write(ws) => {
                let b = to_batch(&ws, &mut models);
                engine.write("db", b).await.expect("write");
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
    engine.close().await.expect("close");
    Ok(())
}

proptest! {
    // More cases: `BULKHEAD_MODEL_CASES=500 cargo test -p bulkhead-engine --test model`.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("BULKHEAD_MODEL_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(24),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn reads_equal_the_model(ops in proptest::collection::vec(op_strategy(), 1..14)) {
        runtimes().block_on(RuntimeName::Io, run(ops)).expect("runtime")?;
    }
}
