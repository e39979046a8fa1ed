//! SQL over a real engine: catalog, dedup, pruning, system tables, errors, limits.

mod common;

use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::UInt64Type;

use bulkhead_query::{QueryConfig, QueryError};
use common::{Db, f, row};

const HOUR: i64 = 3_600_000_000_000;

#[test]
fn new_tables_and_columns_appear_without_restart_and_missing_values_are_null() {
    let db = Db::open();
    db.write(
        "demo",
        vec![("cpu", row(&[("host", "a")], &[("usage", f(1.0))], 10))],
    );
    assert_eq!(
        db.table("demo", "select host, usage, time from cpu"),
        "+------+-------+--------------------------------+\n\
         | host | usage | time                           |\n\
         +------+-------+--------------------------------+\n\
         | a    | 1.0   | 1970-01-01T00:00:00.000000010Z |\n\
         +------+-------+--------------------------------+"
    );
    db.write(
        "demo",
        vec![
            (
                "cpu",
                row(&[("host", "b"), ("dc", "x")], &[("idle", f(5.0))], 20),
            ),
            ("mem", row(&[("host", "a")], &[("free", f(3.0))], 20)),
        ],
    );
    let out = db.table(
        "demo",
        "select host, dc, usage, idle from cpu order by host",
    );
    assert!(out.contains("| a    |    | 1.0   |      |"), "{out}");
    assert!(out.contains("| b    | x  |       | 5.0  |"), "{out}");
    assert!(db.table("demo", "select free from mem").contains("3.0"));
    let tables = db.table("demo", "show tables");
    assert!(
        tables.contains("| bulkhead      | demo               | cpu "),
        "{tables}"
    );
}

#[test]
fn overwrites_are_deduplicated_in_memtables_and_across_ssts() {
    let db = Db::open();
    db.write(
        "demo",
        vec![(
            "cpu",
            row(&[("host", "a")], &[("usage", f(1.0)), ("idle", f(9.0))], 10),
        )],
    );
    db.flush();
    // Same key (host=a, time=10): `usage` is replaced, `idle` kept (field-by-field).
    db.write(
        "demo",
        vec![("cpu", row(&[("host", "a")], &[("usage", f(2.0))], 10))],
    );
    let check = |db: &Db| {
        let out = db.table("demo", "select host, usage, idle from cpu");
        assert!(out.contains("| a    | 2.0   | 9.0  |"), "{out}");
        assert_eq!(
            db.table("demo", "select count(*) as n from cpu")
                .matches("| 1 |")
                .count(),
            1
        );
    };
    check(&db);
    db.flush();
    check(&db);
}

#[test]
fn time_and_tag_filters_prune_ssts_and_explain_shows_it() {
    let db = Db::open();
    // Three flushes: host a in hour 0, host b in hour 0, host a in hour 5.
    db.write(
        "demo",
        vec![("cpu", row(&[("host", "a")], &[("usage", f(1.0))], 10))],
    );
    db.flush();
    db.write(
        "demo",
        vec![("cpu", row(&[("host", "b")], &[("usage", f(2.0))], 20))],
    );
    db.flush();
    db.write(
        "demo",
        vec![("cpu", row(&[("host", "a")], &[("usage", f(3.0))], 5 * HOUR))],
    );
    db.flush();
    let plan = db.table(
        "demo",
        "explain select usage from cpu where time >= '1970-01-01T04:00:00Z' and host = 'a'",
    );
    assert!(
        plan.contains("ssts=1/3 (pruned: 2 by time, 0 by tags)"),
        "{plan}"
    );
    let plan = db.table("demo", "explain select usage from cpu where host = 'b'");
    assert!(
        plan.contains("ssts=1/3 (pruned: 0 by time, 2 by tags)"),
        "{plan}"
    );
    // Pruning never changes answers.
    let out = db.table("demo", "select usage from cpu where host = 'b'");
    assert!(out.contains("2.0") && !out.contains("1.0"), "{out}");
    let out = db.table(
        "demo",
        "select usage from cpu where time >= '1970-01-01T04:00:00Z' order by usage",
    );
    assert!(out.contains("3.0") && !out.contains("1.0"), "{out}");
    let before = db.query.stats().to_prometheus();
    assert!(
        before.contains("bulkhead_query_ssts_pruned_total"),
        "{before}"
    );
}

#[test]
fn timestamp_literals_prune_too() {
    let db = Db::open();
    db.write(
        "demo",
        vec![("cpu", row(&[("host", "a")], &[("usage", f(1.0))], 0))],
    );
    db.flush();
    db.write(
        "demo",
        vec![(
            "cpu",
            row(&[("host", "a")], &[("usage", f(2.0))], 10 * HOUR),
        )],
    );
    db.flush();
    let plan = db.table(
        "demo",
        "explain select usage from cpu where time > '1970-01-01T05:00:00Z' and time < now()",
    );
    assert!(plan.contains("pruned: 1 by time"), "{plan}");
}

#[test]
fn system_tables_describe_live_state() {
    // No background compaction: it would merge cpu's two SSTs below.
    let db = Db::open_with_engine(QueryConfig::default(), |c| c.compaction.enabled = false);
    db.write(
        "demo",
        vec![("cpu", row(&[("host", "a")], &[("usage", f(1.0))], 10))],
    );
    db.flush();
    db.write(
        "demo",
        vec![("cpu", row(&[("host", "b")], &[("usage", f(1.0))], 10))],
    );
    let out = db.table(
        "demo",
        "select database, \"table\", rows, sst_count from system.tables",
    );
    assert!(
        out.contains("| demo     | cpu   | 2    | 1         |"),
        "{out}"
    );
    let out = db.table(
        "demo",
        "select count(*) as n, sum(rows) as r from system.sst_files",
    );
    assert!(out.contains("| 1 | 1 |"), "{out}");
    let out = db.table(
        "demo",
        "select runtime, workers from system.runtimes order by runtime",
    );
    for name in ["compact", "flush", "io", "query", "write"] {
        assert!(out.contains(&format!("| {name}")), "{out}");
    }
    // The query runtime has just run queries: it has CPU time (Linux schedstat).
    if cfg!(target_os = "linux") {
        let out = db.table(
            "demo",
            "select runtime from system.runtimes where cpu_seconds > 0 and cpu_wait_seconds >= 0",
        );
        assert!(out.contains("| query"), "{out}");
    }

    // A flush round of two small tables writes them into one pack: cpu's second SST
    // and mem's are members (`path` = the pack, `pack_offset` = where each starts);
    // cpu's first SST stays standalone (`pack_offset` NULL).
    db.write(
        "demo",
        vec![("mem", row(&[("host", "a")], &[("free", f(3.0))], 10))],
    );
    db.flush();
    assert_eq!(
        db.table(
            "demo",
            "select \"table\", path like '%data/_packs/%.parquet' as in_pack, \
             pack_offset is null as standalone from system.sst_files \
             order by \"table\", in_pack"
        ),
        "+-------+---------+------------+\n\
         | table | in_pack | standalone |\n\
         +-------+---------+------------+\n\
         | cpu   | false   | true       |\n\
         | cpu   | true    | false      |\n\
         | mem   | true    | false      |\n\
         +-------+---------+------------+"
    );
    // Each row's (path, pack_offset, bytes) is a whole Parquet file in the object.
    let batches = db
        .sql(
            "demo",
            "select path, pack_offset, bytes from system.sst_files order by path, pack_offset",
        )
        .expect("sst_files");
    let mut ssts = Vec::new();
    for b in &batches {
        let path = b.column(0).as_string::<i32>();
        let offset = b.column(1).as_primitive::<UInt64Type>();
        let bytes = b.column(2).as_primitive::<UInt64Type>();
        for i in 0..b.num_rows() {
            let off = (!offset.is_null(i)).then(|| offset.value(i));
            ssts.push((path.value(i).to_string(), off, bytes.value(i)));
        }
    }
    assert_eq!(ssts.len(), 3, "{ssts:?}");
    let members: Vec<_> = ssts.iter().filter(|s| s.1.is_some()).collect();
    assert_eq!(members.len(), 2, "{ssts:?}");
    assert_eq!(members[0].0, members[1].0, "one pack: {ssts:?}");
    assert_eq!(members[0].1, Some(0), "the first member starts the pack");
    for (path, off, bytes) in &ssts {
        let object = std::fs::read(db.dir().join("objects").join(path)).expect(path);
        let start = off.unwrap_or(0) as usize;
        let file = &object[start..start + *bytes as usize];
        assert!(
            file.starts_with(b"PAR1") && file.ends_with(b"PAR1"),
            "{path}@{off:?}"
        );
        if off.is_none() {
            assert_eq!(object.len() as u64, *bytes, "{path}: the whole object");
        }
    }
}

#[test]
fn time_series_functions() {
    let db = Db::open();
    let m = 60_000_000_000i64;
    db.write(
        "demo",
        vec![
            ("cpu", row(&[("host", "a")], &[("usage", f(1.0))], 0)),
            ("cpu", row(&[("host", "a")], &[("usage", f(3.0))], m)),
            ("cpu", row(&[("host", "a")], &[("usage", f(7.0))], 6 * m)),
        ],
    );
    let out = db.table(
        "demo",
        "select time_bucket(interval '5 minutes', time) as b, avg(usage) as a from cpu group by b order by b",
    );
    assert!(out.contains("| 1970-01-01T00:00:00Z | 2.0 |"), "{out}");
    assert!(out.contains("| 1970-01-01T00:05:00Z | 7.0 |"), "{out}");
    let same = db.table(
        "demo",
        "select date_bin(interval '5 minutes', time) as b, avg(usage) as a from cpu group by b order by b",
    );
    assert_eq!(out, same);
    let out = db.table(
        "demo",
        "select first_value(usage order by time) as first, last_value(usage order by time) as last from cpu",
    );
    assert!(out.contains("| 1.0   | 7.0  |"), "{out}");
}

#[test]
fn errors_name_what_is_wrong() {
    let db = Db::open();
    db.write(
        "demo",
        vec![("cpu", row(&[("host", "a")], &[("usage", f(1.0))], 10))],
    );
    let err = db.sql("demo", "select * from nope").unwrap_err();
    assert!(matches!(err, QueryError::Plan(_)), "{err:?}");
    assert!(err.to_string().contains("nope"), "{err}");
    let err = db.sql("demo", "select missing from cpu").unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    let err = db.sql("demo", "selec 1").unwrap_err();
    assert!(matches!(err, QueryError::Plan(_)), "{err:?}");
    let err = db.sql("demo", "create table t (a int)").unwrap_err();
    assert!(matches!(err, QueryError::Plan(_)), "{err:?}");
    // An empty database is just empty.
    let err = db.sql("other", "select * from cpu").unwrap_err();
    assert!(err.to_string().contains("cpu"), "{err}");
}

#[test]
fn a_query_over_the_memory_limit_fails_cleanly() {
    let db = Db::open_with(QueryConfig {
        memory_limit: 256 * 1024,
        ..QueryConfig::default()
    });
    let rows = (0..20_000)
        .map(|i| {
            (
                "t",
                row(&[("k", &format!("key-{i:06}"))], &[("v", f(i as f64))], i),
            )
        })
        .collect();
    db.write("demo", rows);
    let err = db
        .sql("demo", "select k, count(*) from t group by k order by k")
        .unwrap_err();
    assert!(matches!(err, QueryError::ResourcesExhausted(_)), "{err:?}");
    // The engine and the query layer keep working.
    assert!(
        db.table("demo", "select count(*) as n from t")
            .contains("20000")
    );
}

#[test]
fn dropping_the_result_cancels_the_query() {
    let db = Db::open();
    let rows = (0..2_000)
        .map(|i| ("t", row(&[("k", "a")], &[("v", f(i as f64))], i)))
        .collect();
    db.write("demo", rows);
    let q = std::sync::Arc::clone(&db.query);
    let heavy = "select count(*) from t a, t b, t c where a.v + b.v + c.v > 0";
    db.runtimes
        .block_on(bulkhead_runtime::RuntimeName::Io, async move {
            let out = q.sql("demo", heavy).await.unwrap();
            drop(out);
        })
        .unwrap();
    wait_until_no_query_task_is_alive(&db);
}

#[test]
fn a_heavy_query_does_not_delay_small_writes() {
    let db = Db::open();
    let rows = (0..3_000)
        .map(|i| ("t", row(&[("k", "a")], &[("v", f(i as f64))], i)))
        .collect();
    db.write("demo", rows);
    let q = std::sync::Arc::clone(&db.query);
    // ~27 billion row combinations: far longer than this test runs; cancelled on drop.
    let heavy = "select count(*) from t a, t b, t c where a.v + b.v + c.v > 0";
    let running = db
        .runtimes
        .run(bulkhead_runtime::RuntimeName::Io, async move {
            q.sql("demo", heavy).await?.collect().await
        });
    // Let the query get going and saturate the `query` runtime.
    std::thread::sleep(Duration::from_millis(300));
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let t = Instant::now();
        db.write("demo", vec![("w", row(&[("k", "a")], &[("v", f(1.0))], i))]);
        worst = worst.max(t.elapsed());
    }
    let snap = db.runtimes.snapshot();
    let query = snap.runtimes.iter().find(|r| r.runtime == "query").unwrap();
    assert!(
        query.alive_tasks > 0,
        "the heavy query must still be running: {query:?}"
    );
    // Generous: an fsync'd write takes milliseconds; a write queued behind the query
    // would take as long as the query (minutes).
    assert!(
        worst < Duration::from_millis(500),
        "a small write took {worst:?} during a heavy query"
    );
    drop(running);
}

/// Each query starts from a clone of a session built once per database: what one
/// query sets stays in that query, and each database keeps its own default schema.
#[test]
fn reused_sessions_are_isolated_per_query_and_per_database() {
    let db = Db::open();
    db.write(
        "one",
        vec![("cpu", row(&[("host", "a")], &[("usage", f(1.0))], 10))],
    );
    db.write(
        "two",
        vec![("cpu", row(&[("host", "b")], &[("usage", f(2.0))], 10))],
    );
    let show = "show datafusion.execution.batch_size";
    let default = db.table("one", show);
    assert!(!default.contains("1234"), "{default}");
    db.sql("one", "set datafusion.execution.batch_size = 1234")
        .unwrap();
    assert_eq!(db.table("one", show), default);
    for _ in 0..2 {
        assert!(db.table("one", "select host from cpu").contains("| a "));
        assert!(db.table("two", "select host from cpu").contains("| b "));
    }
    // A column written after the sessions were built is visible to the next query.
    db.write(
        "two",
        vec![("cpu", row(&[("host", "c")], &[("idle", f(3.0))], 20))],
    );
    let out = db.table("two", "select host, idle from cpu where idle is not null");
    assert!(out.contains("| c    | 3.0  |"), "{out}");
}

/// Run `sql` from a task on `runtime` and pretty-print its answer (or its error).
fn answer_from(db: &Db, runtime: bulkhead_runtime::RuntimeName, sql: &str) -> String {
    let (q, sql) = (std::sync::Arc::clone(&db.query), sql.to_string());
    db.runtimes
        .block_on(runtime, async move {
            let batches = q.sql("demo", &sql).await?.collect().await?;
            Ok::<_, QueryError>(
                arrow::util::pretty::pretty_format_batches(&batches)
                    .unwrap()
                    .to_string(),
            )
        })
        .unwrap()
        .unwrap_or_else(|e| format!("error: {e}"))
}

#[test]
fn a_query_started_on_the_query_runtime_answers_as_one_started_on_io() {
    // From `io` a query gets a task of its own on `query`; from `query` itself (the
    // HTTP handler's task) it is planned and polled in the caller's task. Same answers,
    // same errors, on random data.
    use bulkhead_runtime::RuntimeName::{Io, Query};
    let db = Db::open();
    let mut rng = bulkhead_tsbs::SplitMix64(7);
    let rows = (0..3_000)
        .map(|i| {
            let k = format!("k{}", rng.below(7));
            let v = rng.below(1_000) as f64 / 10.0;
            (
                "t",
                row(&[("k", k.as_str())], &[("v", f(v))], i * 1_000_000),
            )
        })
        .collect();
    db.write("demo", rows);
    db.flush();
    db.write(
        "demo",
        vec![("t", row(&[("k", "k1")], &[("v", f(5.0))], 17))],
    );
    for sql in [
        "select k, count(*), sum(v), max(time) from t group by k order by k",
        "select * from t where v > 90 order by time, k",
        "select date_bin(interval '1 second', time) as s, avg(v) from t \
         where k = 'k3' group by s order by s",
        "select k, last_value(v order by time) from t group by k order by k",
        // Fails while it runs, after planning.
        "select cast(k as int) from t",
        // Fails while it plans.
        "select nope from t",
    ] {
        let (on_io, on_query) = (answer_from(&db, Io, sql), answer_from(&db, Query, sql));
        // An execution error names the first row that failed, which depends on which
        // source's batch came first: compare errors up to the quoted value.
        let comparable = |a: &str| a.split('\'').next().unwrap_or(a).to_string();
        assert_eq!(comparable(&on_io), comparable(&on_query), "{sql}");
        assert!(
            on_io.lines().count() > 3 || on_io.starts_with("error"),
            "{sql}: {on_io}"
        );
    }
    assert!(answer_from(&db, Query, "select cast(k as int) from t").starts_with("error"));
}

#[test]
fn dropping_a_result_started_on_the_query_runtime_cancels_the_query() {
    let db = Db::open();
    let rows = (0..2_000)
        .map(|i| ("t", row(&[("k", "a")], &[("v", f(i as f64))], i)))
        .collect();
    db.write("demo", rows);
    let q = std::sync::Arc::clone(&db.query);
    let heavy = "select count(*) from t a, t b, t c where a.v + b.v + c.v > 0";
    db.runtimes
        .block_on(bulkhead_runtime::RuntimeName::Query, async move {
            let mut out = q.sql("demo", heavy).await.unwrap();
            // Started: poll it once, briefly, then give up on it.
            let _ = tokio::time::timeout(
                Duration::from_millis(50),
                futures::StreamExt::next(&mut out.batches),
            )
            .await;
            drop(out);
        })
        .unwrap();
    wait_until_no_query_task_is_alive(&db);
}

/// Wait (up to 10 s, else fail) until the `query` runtime has no task alive.
fn wait_until_no_query_task_is_alive(db: &Db) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let snap = db.runtimes.snapshot();
        let query = snap.runtimes.iter().find(|r| r.runtime == "query").unwrap();
        if query.alive_tasks == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "query tasks still alive: {query:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
