//! The series index read path: on random data (overwrites, out-of-order writes across
//! flushes, compaction, unset tags) and random tag predicates and time ranges, a scan
//! that resolves its predicate against the SSTs' series index returns exactly the rows
//! of the plain scan (index ignored) that satisfy the predicate, from SSTs and
//! memtables alike; and for data in SSTs it reads no row of a series the predicate
//! excludes. A `last_per_series` scan returns
//! each matching series' latest row in range, from the SSTs' last-row metadata and
//! through the series index alike.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use bulkhead_engine::{
    FieldValue, ScanMetrics, ScanRequest, Scope, TagPredicate, TimeRange, WriteBatch,
};
use bulkhead_runtime::RuntimeName;
use futures::TryStreamExt;
use proptest::prelude::*;

const SEGMENT: i64 = 1_000;

#[derive(Debug, Clone)]
struct W {
    host: Option<u8>,
    dc: Option<u8>,
    time: i64,
    value: i64,
}

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<W>),
    Flush,
    Compact,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let w = (
        proptest::option::weighted(0.85, 0u8..12),
        proptest::option::weighted(0.7, 0u8..3),
        0i64..2_500,
        -50i64..50,
    )
        .prop_map(|(host, dc, time, value)| W {
            host,
            dc,
            time,
            value,
        });
    prop_oneof![
        5 => proptest::collection::vec(w, 1..60).prop_map(Op::Write),
        3 => Just(Op::Flush),
        1 => Just(Op::Compact),
    ]
}

fn leaf_strategy() -> impl Strategy<Value = TagPredicate> {
    let tag = prop_oneof![Just("host"), Just("dc"), Just("rack")];
    let value = (0u8..12).prop_map(|i| i);
    prop_oneof![
        (tag.clone(), value.clone()).prop_map(|(t, v)| TagPredicate::Eq(t.into(), name(t, v))),
        (tag.clone(), proptest::collection::btree_set(value, 0..4)).prop_map(|(t, vs)| {
            TagPredicate::In(t.into(), vs.into_iter().map(|v| name(t, v)).collect())
        }),
        tag.clone().prop_map(|t| TagPredicate::IsNull(t.into())),
        (tag, 0u8..10).prop_map(|(t, d)| {
            // "ends with digit d": a regex-like matcher.
            let suffix = d.to_string();
            TagPredicate::Matches(
                t.into(),
                format!("~ '{d}$'"),
                Arc::new(move |s: &str| s.ends_with(&suffix)),
            )
        }),
        Just(TagPredicate::Unknown),
    ]
}

fn name(tag: &str, v: u8) -> String {
    match tag {
        "host" => format!("h{v}"),
        "dc" => format!("d{}", v % 4),
        _ => format!("r{v}"),
    }
}

fn predicate_strategy() -> impl Strategy<Value = TagPredicate> {
    leaf_strategy().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|p| TagPredicate::Not(Box::new(p))),
            proptest::collection::vec(inner.clone(), 1..3).prop_map(TagPredicate::And),
            proptest::collection::vec(inner, 1..3).prop_map(TagPredicate::Or),
        ]
    })
}

fn to_batch(ws: &[W], model: &mut Rows) -> WriteBatch {
    let mut b = WriteBatch::default();
    for w in ws {
        let host = w.host.map(|h| name("host", h));
        let dc = w.dc.map(|d| name("dc", d));
        let mut tags: Vec<(&str, &str)> = Vec::new();
        if let Some(h) = &host {
            tags.push(("host", h));
        }
        if let Some(d) = &dc {
            tags.push(("dc", d));
        }
        let r = row(&tags, vec![("v", FieldValue::I64(w.value))], w.time);
        model_apply(model, &r);
        b.push("cpu", r);
    }
    b
}

/// Rows of `got` whose tags satisfy `p` (exactly, by SQL's three-valued logic).
fn satisfying(rows: &Rows, p: &TagPredicate) -> Rows {
    rows.iter()
        .filter(|((tags, _), _)| {
            p.may_match(|t: &str| tags.iter().find(|(k, _)| k == t).map(|(_, v)| v.as_str()))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

async fn scan(
    engine: &bulkhead_engine::Engine,
    range: TimeRange,
    predicate: Option<TagPredicate>,
    metrics: &Arc<ScanMetrics>,
) -> Rows {
    let snap = engine.snapshot("db", "cpu", range).expect("snapshot");
    let batches: Vec<_> = snap
        .scan(ScanRequest {
            tag_predicate: predicate,
            metrics: Some(Arc::clone(metrics)),
            ..Default::default()
        })
        .try_collect()
        .await
        .expect("scan");
    let mut out = Rows::new();
    for b in &batches {
        for (k, v) in batch_rows(b) {
            assert!(out.insert(k.clone(), v).is_none(), "duplicate key {k:?}");
        }
    }
    out
}

/// Each series' row with the greatest time in `rows`.
fn latest(rows: &Rows) -> Rows {
    let mut out = Rows::new();
    let mut prev: Option<(&Key, &Fields)> = None;
    for (k, v) in rows {
        if let Some((pk, pv)) = prev
            && pk.0 != k.0
        {
            out.insert(pk.clone(), pv.clone());
        }
        prev = Some((k, v));
    }
    if let Some((pk, pv)) = prev {
        out.insert(pk.clone(), pv.clone());
    }
    out
}

async fn scan_last(
    engine: &bulkhead_engine::Engine,
    range: TimeRange,
    predicate: Option<TagPredicate>,
    ignore_last_row_metadata: bool,
) -> Rows {
    let snap = engine.snapshot("db", "cpu", range).expect("snapshot");
    let batches: Vec<_> = snap
        .scan(ScanRequest {
            tag_predicate: predicate,
            last_per_series: true,
            ignore_last_row_metadata,
            ..Default::default()
        })
        .try_collect()
        .await
        .expect("scan");
    let mut out = Rows::new();
    for b in &batches {
        for (k, v) in batch_rows(b) {
            assert!(out.insert(k.clone(), v).is_none(), "duplicate key {k:?}");
        }
    }
    out
}

async fn run(ops: Vec<Op>, checks: Vec<(TagPredicate, i64, i64)>) -> Result<(), TestCaseError> {
    let (dir, store) = temp_store();
    let mut cfg = config(dir.path());
    cfg.sst.segment_duration = Duration::from_nanos(SEGMENT as u64);
    cfg.compaction.enabled = false;
    // Small row groups, so selections cross row-group boundaries.
    cfg.sst_row_group_size = 1;
    let engine = open(cfg, &store).await;
    let mut model = Rows::new();
    for op in ops {
        match op {
            Op::Write(ws) => {
                let b = to_batch(&ws, &mut model);
                engine.write("db", b).await.expect("write");
            }
            Op::Flush => engine.flush(&Scope::All).await.expect("flush"),
            Op::Compact => {
                engine.compact(&Scope::All).await.expect("compact");
            }
        }
    }
    if model.is_empty() {
        engine.close().await.expect("close");
        return Ok(());
    }
    // Everything in SSTs for the last checks: the index is then the only pruning.
    for (i, (p, a, b)) in checks.iter().enumerate() {
        if i == checks.len() / 2 {
            engine.flush(&Scope::All).await.expect("flush");
        }
        let range = TimeRange::new(*a.min(b), *a.max(b) + 1);
        let plain = Arc::new(ScanMetrics::default());
        let all = scan(&engine, range, None, &plain).await;
        let want_all: Rows = model
            .iter()
            .filter(|((_, t), _)| range.contains(*t))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        prop_assert_eq!(&all, &want_all, "plain scan");
        let indexed = Arc::new(ScanMetrics::default());
        let got = scan(&engine, range, Some(p.clone()), &indexed).await;
        let want = satisfying(&all, p);
        prop_assert_eq!(&satisfying(&got, p), &want, "predicate {}", p);
        if !p.is_unknown() {
            // From every source (memtables too): exactly the rows it may be TRUE for.
            prop_assert_eq!(&got, &want, "predicate {}", p);
        }
        let m = indexed.snapshot();
        if engine
            .snapshot("db", "cpu", range)
            .expect("snap")
            .memtable_rows()
            == 0
            && !p.is_unknown()
        {
            // All in SSTs, all indexed: exactly the matching rows are read.
            prop_assert_eq!(
                &got,
                &want,
                "indexed scan reads only matching series: {}",
                p
            );
            prop_assert_eq!(m.ssts_with_index, m.ssts, "{:?}", m);
            // A key overwritten in several SSTs is read once from each (then merged).
            let out = m.rows_output as usize;
            prop_assert!(
                want.len() <= out && out <= want.len() * m.ssts as usize,
                "{:?}",
                m
            );
        }
        prop_assert!(m.rows_selected <= plain.snapshot().rows_selected, "{:?}", m);
        let want_last = latest(&want);
        for ignore in [false, true] {
            let last = scan_last(&engine, range, Some(p.clone()), ignore).await;
            prop_assert_eq!(
                &satisfying(&last, p),
                &want_last,
                "latest rows (metadata ignored: {}), predicate {}",
                ignore,
                p
            );
        }
    }
    engine.close().await.expect("close");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("BULKHEAD_SERIES_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(24),
        max_shrink_iters: 100,
        ..ProptestConfig::default()
    })]

    #[test]
    fn indexed_scans_equal_plain_scans(
        ops in proptest::collection::vec(op_strategy(), 1..10),
        checks in proptest::collection::vec((predicate_strategy(), 0i64..2_500, 0i64..2_500), 2..8),
    ) {
        runtimes().block_on(RuntimeName::Io, run(ops, checks)).expect("runtime")?;
    }
}

/// Unset tags sort after set ones in an SST; the index still finds every run, and a
/// predicate on a tag a file does not have at all (added later) sees it unset.
#[test]
fn tags_added_later_and_unset_tags() {
    runtimes()
        .block_on(RuntimeName::Io, async {
            let (dir, store) = temp_store();
            let engine = open(config(dir.path()), &store).await;
            let mut model = Rows::new();
            let mut b = WriteBatch::default();
            for (i, host) in ["a", "b", "c"].iter().enumerate() {
                let r = row(
                    &[("host", host)],
                    vec![("v", FieldValue::I64(i as i64))],
                    10,
                );
                model_apply(&mut model, &r);
                b.push("cpu", r);
            }
            engine.write("db", b).await.expect("write");
            engine.flush(&Scope::All).await.expect("flush");
            let mut b = WriteBatch::default();
            let r = row(
                &[("host", "a"), ("rack", "r1")],
                vec![("v", FieldValue::I64(9))],
                20,
            );
            model_apply(&mut model, &r);
            b.push("cpu", r);
            engine.write("db", b).await.expect("write");
            engine.flush(&Scope::All).await.expect("flush");

            let m = Arc::new(ScanMetrics::default());
            let p = TagPredicate::IsNull("rack".into());
            let got = scan(&engine, TimeRange::ALL, Some(p.clone()), &m).await;
            assert_eq!(got.len(), 3, "the first SST has no rack column: all unset");
            let p = TagPredicate::Not(Box::new(TagPredicate::Eq("rack".into(), "r1".into())));
            let got = scan(&engine, TimeRange::ALL, Some(p), &m).await;
            assert!(
                got.is_empty(),
                "rack != 'r1' is NULL for unset racks: {got:?}"
            );
            let p = TagPredicate::In("host".into(), BTreeSet::from(["a".to_string()]));
            let got = scan(&engine, TimeRange::ALL, Some(p.clone()), &m).await;
            assert_eq!(got, satisfying(&model, &p));
            assert_eq!(got.len(), 2);
            engine.close().await.expect("close");
        })
        .expect("runtime");
}

/// The metadata cache: a warm scan opens its SSTs without a GET (a predicate that
/// matches no series then costs no request at all), and compaction drops the entries
/// of the SSTs it deletes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_cache_serves_warm_queries_without_gets() {
    use bulkhead_runtime::store::{FaultConfig, FaultInjectingStore};
    use object_store::ObjectStore;
    use object_store::local::LocalFileSystem;

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("store")).expect("mkdir");
    let fs: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("store")).expect("fs"));
    let counting = Arc::new(FaultInjectingStore::new(fs, FaultConfig::default()));
    let store = io_bound(Arc::clone(&counting) as Arc<dyn ObjectStore>);
    let mut cfg = config(dir.path());
    cfg.compaction.enabled = false;
    let engine = open(cfg, &store).await;
    for flush in 0..2 {
        let mut b = WriteBatch::default();
        for h in 0..20 {
            for t in 0..50 {
                let time = flush * 1_000 + t;
                b.push(
                    "cpu",
                    row(
                        &[("host", &format!("h{h:02}"))],
                        vec![("v", FieldValue::I64(t))],
                        time,
                    ),
                );
            }
        }
        engine.write("db", b).await.expect("write");
        engine.flush(&Scope::All).await.expect("flush");
    }
    assert_eq!(engine.stats().sst_metadata_cache.entries, 0);
    // `h05x` lies inside every SST's host range, so only the series index rules it out.
    let nothing = TagPredicate::Eq("host".into(), "h05x".into());
    let one = TagPredicate::Eq("host".into(), "h07".into());

    let cold = Arc::new(ScanMetrics::default());
    let calls = counting.calls();
    assert!(
        scan(&engine, TimeRange::ALL, Some(nothing.clone()), &cold)
            .await
            .is_empty()
    );
    let cold_calls = counting.calls() - calls;
    assert!(
        cold_calls >= 2,
        "two SSTs' metadata fetched: {cold_calls} calls"
    );
    assert_eq!(cold.snapshot().metadata_cache_hits, 0);
    let stats = engine.stats().sst_metadata_cache;
    assert_eq!((stats.entries, stats.misses), (2, 2), "{stats:?}");
    assert!(
        stats.bytes > 0 && stats.bytes <= stats.capacity_bytes,
        "{stats:?}"
    );

    let warm = Arc::new(ScanMetrics::default());
    let calls = counting.calls();
    assert!(
        scan(&engine, TimeRange::ALL, Some(nothing), &warm)
            .await
            .is_empty()
    );
    assert_eq!(
        counting.calls() - calls,
        0,
        "a warm scan that matches no series issues no request"
    );
    assert_eq!(warm.snapshot().metadata_cache_hits, 2);

    // Reading one series: warm, only its data is fetched (one request per SST).
    let m = Arc::new(ScanMetrics::default());
    let calls = counting.calls();
    let got = scan(&engine, TimeRange::ALL, Some(one), &m).await;
    assert_eq!(got.len(), 100);
    assert_eq!(
        counting.calls() - calls,
        2,
        "one data request per SST, no metadata request"
    );
    assert_eq!(m.snapshot().rows_output, 100);

    // Compaction deletes both inputs: their entries go with them.
    engine.compact(&Scope::All).await.expect("compact");
    assert_eq!(engine.stats().sst_metadata_cache.entries, 0);
    assert_eq!(read_all(&engine, "db", "cpu").await.len(), 2_000);
    assert_eq!(engine.stats().sst_metadata_cache.entries, 1);
    engine.close().await.expect("close");
}
