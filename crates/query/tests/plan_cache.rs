//! The plan cache (optimized plans kept by statement shape, literals bound per query)
//! gives exactly the answers of planning every statement from scratch: random queries
//! of a few shapes with random literals, on random data (overwrites, rows in SSTs and
//! in the memtable, null fields), through one query engine with the cache and one
//! without, over the same engine.

mod common;

use std::sync::Arc;

use arrow::util::pretty::pretty_format_batches;
use bulkhead_engine::FieldValue;
use bulkhead_query::{Flavor, QueryConfig, QueryEngine};
use bulkhead_runtime::RuntimeName;
use bulkhead_tsbs::SplitMix64;
use common::*;

const SEC: i64 = 1_000_000_000;
/// 2016-01-01T00:00:00Z, the data's start.
const START: i64 = 1_451_606_400 * SEC;
const HOSTS: u64 = 8;

fn load(db: &Db, seed: u64) {
    let mut rng = SplitMix64(seed);
    for round in 0..3 {
        let mut rows = Vec::new();
        for _ in 0..300 {
            let h = rng.below(HOSTS);
            let host = format!("host_{h}");
            let dc = format!("dc{}", h % 3);
            let t = START + rng.below(4 * 3600) as i64 * SEC;
            let mut fields = Vec::new();
            if rng.chance(80) {
                fields.push(("f", FieldValue::F64(rng.below(1000) as f64 / 10.0)));
            }
            if fields.is_empty() || rng.chance(80) {
                fields.push(("g", FieldValue::I64(rng.below(100) as i64 - 20)));
            }
            let mut tags = vec![("host", host.as_str())];
            if h != 7 {
                tags.push(("dc", dc.as_str()));
            }
            rows.push(("cpu", row(&tags, &fields, t)));
        }
        db.write("demo", rows);
        if round < 2 {
            db.flush();
        }
    }
}

/// A random timestamp literal inside (or just outside) the data, in one of the forms
/// a client writes.
fn ts(rng: &mut SplitMix64) -> String {
    let s = rng.below(5 * 3600) as i64 - 1800;
    let secs = 1_451_606_400 + s;
    let (h, m, sec) = (
        (s.rem_euclid(86400)) / 3600,
        (s.rem_euclid(3600)) / 60,
        s.rem_euclid(60),
    );
    let day = if s < 0 { "2015-12-31" } else { "2016-01-01" };
    match rng.below(3) {
        0 => format!("{day}T{h:02}:{m:02}:{sec:02}Z"),
        1 => format!("{day} {h:02}:{m:02}:{sec:02}"),
        _ => format!("{day}T{h:02}:{m:02}:{sec:02}.{:03}Z", secs.rem_euclid(1000)),
    }
}

fn host(rng: &mut SplitMix64) -> String {
    format!("host_{}", rng.below(HOSTS + 1))
}

/// One random query of a random shape.
fn query(rng: &mut SplitMix64) -> String {
    let (t1, t2) = (ts(rng), ts(rng));
    let (h1, h2, h3) = (host(rng), host(rng), host(rng));
    let n = rng.below(100) as i64 - 30;
    let x = rng.below(1000) as f64 / 10.0;
    match rng.below(13) {
        0 => format!(
            "select date_bin(interval '10 minutes', time) as m, max(f) as f, count(g) as g from cpu \
             where host in ('{h1}', '{h2}') and time >= '{t1}' and time < '{t2}' group by m order by m"
        ),
        1 => format!("select * from cpu where g > {n} and host = '{h1}' order by time, host, dc"),
        2 => format!(
            "select host, count(*) as c, sum(g) as s from cpu where f >= {x} or g = {n} \
             group by host order by host"
        ),
        // An integer column against a float literal: compared as floats, never bound.
        3 => format!(
            "select host, count(*) as c from cpu where g >= {n}.5 group by host order by host"
        ),
        4 => format!(
            "select host, dc, count(*) as c from cpu where g between {n} and {} \
             and dc != 'dc1' group by host, dc order by host, dc",
            n + 40
        ),
        5 => format!(
            "select host, max(time) as t, last_value(f order by time) as f from cpu \
             where time < '{t1}' group by host order by host"
        ),
        6 => format!(
            "select host, count(*) as c from cpu where host not in ('{h1}', '{h2}', '{h3}') \
             and (dc = 'dc0' or dc is null) group by host order by host"
        ),
        7 => format!(
            "select time, host, f from cpu where time = '{t1}' or (host = '{h1}' and f < {x}) \
             order by time, host"
        ),
        // A string compared with an integer column: cast, or an error on both paths.
        8 => {
            let v = if rng.chance(50) {
                n.to_string()
            } else {
                "many".into()
            };
            format!("select count(*) as c from cpu where g = '{v}'")
        }
        9 => format!(
            "select date_bin(interval '1 hour', time) as h, avg(f) as f from cpu \
             where time between '{t1}' and '{t2}' and not host = '{h1}' group by h order by h"
        ),
        10 => format!(
            "select c.host, min(c.g) as g from cpu as c where c.g <= {n} and c.host > '{h1}' \
             group by c.host order by c.host"
        ),
        // More than three values stay an `IN` list (fewer become `OR`s).
        12 => format!(
            "select host, count(*) as c, max(time) as t from cpu \
             where host in ('{h1}', '{h2}', '{h3}', '{}', '{}') and time >= '{t1}' \
             group by host order by host",
            host(rng),
            host(rng)
        ),
        _ => format!(
            "select host, f, g from cpu where {n} < g and '{h1}' = host and f > {x} \
             order by time desc limit 5"
        ),
    }
}

fn run(q: &Arc<QueryEngine>, db: &Db, sql: &str) -> Result<String, String> {
    run_as(q, db, sql, Flavor::Plain)
}

fn run_as(q: &Arc<QueryEngine>, db: &Db, sql: &str, flavor: Flavor) -> Result<String, String> {
    let (q, sql) = (Arc::clone(q), sql.to_string());
    db.runtimes
        .block_on(RuntimeName::Io, async move {
            let batches = q.sql_with("demo", &sql, flavor).await?.collect().await?;
            Ok::<_, bulkhead_query::QueryError>(batches)
        })
        .expect("runtime")
        .map(|b| pretty_format_batches(&b).unwrap().to_string())
        .map_err(|e| e.to_string())
}

fn counter(q: &QueryEngine, name: &str) -> u64 {
    let text = q.stats().to_prometheus();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing"))
        .parse()
        .unwrap()
}

/// One row of `table` in `demo`: host `host`, the integer field `field`.
fn write_one(db: &Db, table: &str, host: &str, field: &str, value: i64, time: i64) {
    let fields = [(field, FieldValue::I64(value))];
    db.write("demo", vec![(table, row(&[("host", host)], &fields, time))]);
}

fn plain_engine(db: &Db) -> Arc<QueryEngine> {
    let config = QueryConfig {
        plan_cache_entries: 0,
        ..QueryConfig::default()
    };
    Arc::new(QueryEngine::new(Arc::clone(&db.engine), Arc::clone(&db.runtimes), config).unwrap())
}

#[test]
fn cached_plans_answer_as_plain_planning_on_random_data() {
    let mut nonempty = 0;
    for seed in 1..=3 {
        let db = Db::open();
        load(&db, seed);
        let plain = plain_engine(&db);
        let mut rng = SplitMix64(seed * 7919);
        for i in 0..150 {
            let sql = query(&mut rng);
            let cached = run(&db.query, &db, &sql);
            let expected = run(&plain, &db, &sql);
            assert_eq!(cached, expected, "{sql}");
            if expected.as_ref().is_ok_and(|t| t.lines().count() > 4) {
                nonempty += 1;
            }
            // PostgreSQL sessions plan with functions and rewrites of their own, and
            // keep plans of their own: every other query goes through them too.
            if i % 2 == 0 {
                let cached = run_as(&db.query, &db, &sql, Flavor::Postgres);
                let expected = run_as(&plain, &db, &sql, Flavor::Postgres);
                assert_eq!(cached, expected, "PG: {sql}");
            }
        }
        assert!(
            counter(&db.query, "bulkhead_query_plan_cache_hits_total") > 150,
            "the cache was hardly used: {}",
            db.query.stats().to_prometheus()
        );
        assert_eq!(counter(&plain, "bulkhead_query_plan_cache_hits_total"), 0);
        // Most shapes qualify for a physical template (not TopK, whose dynamic
        // filter is state; not literals that collide).
        let templated = counter(&db.query, "bulkhead_query_plan_template_hits_total");
        assert!(
            templated > 50,
            "physical templates hardly used: {templated}"
        );
    }
    assert!(nonempty > 200, "too few answers with rows: {nonempty}");
}

#[test]
fn a_new_column_a_dropped_table_or_a_new_table_replans() {
    let db = Db::open();
    load(&db, 9);
    let plain = plain_engine(&db);
    let q = |h: &str| format!("select * from cpu where host = '{h}' order by time desc limit 3");
    let first = run(&db.query, &db, &q("host_1")).unwrap();
    assert!(!first.contains("| z "), "{first}");
    // A write adds a field: the cached `select *` must show it.
    write_one(&db, "cpu", "host_2", "z", 42, START + 5 * 3600 * SEC);
    let cached = run(&db.query, &db, &q("host_2"));
    assert_eq!(cached, run(&plain, &db, &q("host_2")));
    assert!(cached.unwrap().contains("42"));
    // The plan of the same shape on another table is not confused with it.
    write_one(&db, "mem", "host_2", "used", 7, START);
    let other = run(&db.query, &db, "select * from mem where host = 'host_2'").unwrap();
    assert!(other.contains("used"), "{other}");
    // Dropped, then written again with other fields: planned again.
    run(&db.query, &db, "drop table mem").unwrap();
    let gone = run(&db.query, &db, "select * from mem where host = 'host_2'");
    assert!(gone.is_err(), "{gone:?}");
    write_one(&db, "mem", "host_2", "free", 8, START);
    let again = run(&db.query, &db, "select * from mem where host = 'host_2'").unwrap();
    assert!(again.contains("free") && !again.contains("used"), "{again}");
    // A table queried before it exists is planned (and cached) once it does.
    let disk = |h: &str| format!("select * from disk where host = '{h}'");
    let missing = run(&db.query, &db, &disk("host_1")).unwrap_err();
    assert_eq!(Err(missing), run(&plain, &db, &disk("host_1")));
    write_one(&db, "disk", "host_1", "free", 9, START);
    let hits = counter(&db.query, "bulkhead_query_plan_cache_hits_total");
    for h in ["host_1", "host_2", "host_1"] {
        assert_eq!(run(&db.query, &db, &disk(h)), run(&plain, &db, &disk(h)));
    }
    assert_eq!(
        counter(&db.query, "bulkhead_query_plan_cache_hits_total"),
        hits + 2
    );
}

/// A plan made from a physical template scans the data as it is now: rows written
/// (and flushed) since the template was made are in its answers, and literals that
/// contradict each other read nothing.
#[test]
fn templated_plans_read_new_data_and_contradictions() {
    let db = Db::open();
    load(&db, 5);
    let plain = plain_engine(&db);
    let q = |h: &str, from: &str, to: &str| {
        format!(
            "select date_trunc('minute', time) as m, max(g) as g from cpu where host = '{h}' \
             and time >= '{from}' and time < '{to}' group by m order by m"
        )
    };
    let (a, b, late) = (
        "2016-01-01T00:00:00Z",
        "2016-01-01T06:00:00Z",
        "2016-01-01T05:30:00Z",
    );
    for h in ["host_1", "host_2", "host_3"] {
        assert_eq!(
            run(&db.query, &db, &q(h, a, b)),
            run(&plain, &db, &q(h, a, b))
        );
    }
    let before = counter(&db.query, "bulkhead_query_plan_template_hits_total");
    write_one(&db, "cpu", "host_4", "g", 1000, START + 5 * 3600 * SEC);
    let fresh = run(&db.query, &db, &q("host_4", a, b)).unwrap();
    assert!(fresh.contains("1000"), "{fresh}");
    assert_eq!(Ok(fresh), run(&plain, &db, &q("host_4", a, b)));
    db.flush();
    write_one(
        &db,
        "cpu",
        "host_4",
        "g",
        2000,
        START + 5 * 3600 * SEC + 60 * SEC,
    );
    let both = run(&db.query, &db, &q("host_4", a, b)).unwrap();
    assert!(both.contains("1000") && both.contains("2000"), "{both}");
    assert_eq!(Ok(both), run(&plain, &db, &q("host_4", a, b)));
    // Empty time range: the scan reads nothing, planned afresh.
    let empty = run(&db.query, &db, &q("host_4", b, late)).unwrap();
    assert_eq!(Ok(empty.clone()), run(&plain, &db, &q("host_4", b, late)));
    assert!(!empty.contains("1000"), "{empty}");
    assert_eq!(
        counter(&db.query, "bulkhead_query_plan_template_hits_total"),
        before + 2
    );
}

#[test]
fn volatile_and_system_queries_are_not_cached() {
    let db = Db::open();
    load(&db, 3);
    let before = counter(&db.query, "bulkhead_query_plan_cache_hits_total");
    for _ in 0..3 {
        // `now()` outside a column comparison and `random()` are evaluated at planning:
        // a cached plan would keep the first value.
        run(
            &db.query,
            &db,
            "select now() > time as past, count(*) as c from cpu where host = 'host_1' \
             group by past",
        )
        .unwrap();
        run(
            &db.query,
            &db,
            "select count(*) from cpu where g < random() * 10 and host = 'host_1'",
        )
        .unwrap();
        run(
            &db.query,
            &db,
            "select \"table\" from system.tables where database = 'demo'",
        )
        .unwrap();
    }
    assert_eq!(
        counter(&db.query, "bulkhead_query_plan_cache_hits_total"),
        before
    );
}

#[test]
fn postgres_sessions_keep_plans_of_their_own() {
    let db = Db::open();
    load(&db, 4);
    let hits = || counter(&db.query, "bulkhead_query_plan_cache_hits_total");
    let misses = || counter(&db.query, "bulkhead_query_plan_cache_misses_total");
    let sql = |h: &str| format!("select count(*) as c from cpu where host = '{h}'");
    run(&db.query, &db, &sql("host_1")).unwrap();
    let (h, m) = (hits(), misses());
    // The same shape from a PostgreSQL session is planned in its own flavor first.
    let pg = run_as(&db.query, &db, &sql("host_2"), Flavor::Postgres).unwrap();
    assert_eq!((hits(), misses()), (h, m + 1));
    // Then reused, for PostgreSQL sessions and the plain flavor alike.
    let pg_again = run_as(&db.query, &db, &sql("host_2"), Flavor::Postgres).unwrap();
    run(&db.query, &db, &sql("host_3")).unwrap();
    assert_eq!((hits(), misses()), (h + 2, m + 1));
    assert_eq!(pg, pg_again);
    assert_eq!(pg, run(&plain_engine(&db), &db, &sql("host_2")).unwrap());
}

/// Rows on a 10-minute grid offset by 5 minutes from `load` (36 back, 6 ahead), and
/// windows that are whole multiples of 10 minutes: a query's `now()` would have to drift
/// 5 minutes from `load` before any row crossed a window's edge, so the cached and the
/// plain answer (planned a few ms apart, each with its own `now()`) must be equal.
#[test]
fn now_relative_ranges_are_cached_and_answer_as_plain_planning() {
    const STEP: i64 = 600 * SEC;
    let db = Db::open();
    let plain = plain_engine(&db);
    let load = bulkhead_engine::now_nanos();
    let mut rng = SplitMix64(42);
    let mut rows = Vec::new();
    for h in 0..HOSTS {
        let host = format!("host_{h}");
        for k in -6..36 {
            let t = load - k * STEP - STEP / 2;
            let fields = [("g", FieldValue::I64(rng.below(100) as i64))];
            rows.push(("cpu", row(&[("host", host.as_str())], &fields, t)));
        }
    }
    db.write("demo", rows);
    db.flush();
    let before = counter(&db.query, "bulkhead_query_plan_cache_hits_total");
    for _ in 0..60 {
        let n = 10 * (1 + rng.below(40));
        let m = 10 * rng.below(n / 10);
        let h = rng.below(HOSTS);
        let sql = match rng.below(6) {
            0 => format!(
                "select host, count(*) as c, max(g) as m from cpu \
                 where time > now() - interval '{n} minutes' group by host order by host"
            ),
            1 => format!(
                "select count(*) as c, sum(g) as s from cpu where host = 'host_{h}' \
                 and time >= now() - interval '{n} minutes' and time < now() - interval '{m} minutes'"
            ),
            2 => format!(
                "select count(*) as c from cpu \
                 where time between now() - interval '{n} minutes' and now()"
            ),
            3 => format!(
                "select count(*) as c, min(g) as g from cpu \
                 where time < now() + interval '{} minutes' and host = 'host_{h}'",
                n % 70
            ),
            4 => format!(
                "select count(*) as c from cpu \
                 where time > current_timestamp - interval '{} hours 30 minutes'",
                n / 60
            ),
            _ => format!(
                "select host, count(*) as c from cpu where time > now() - interval '{} days' \
                 and time <= now() group by host order by host",
                1 + n % 2
            ),
        };
        let cached = run(&db.query, &db, &sql);
        let expected = run(&plain, &db, &sql);
        assert_eq!(cached, expected, "{sql}");
        assert!(cached.is_ok(), "{sql}: {cached:?}");
    }
    let hits = counter(&db.query, "bulkhead_query_plan_cache_hits_total") - before;
    assert!(
        hits > 40,
        "now()-relative ranges hardly cached: {hits} hits"
    );
    // A tag compared with `now()` casts the tag (or fails) as plain planning does; it
    // is never bound as a string.
    for _ in 0..2 {
        let sql = "select count(*) as c from cpu where host < now() - interval '1 hour'";
        assert_eq!(run(&db.query, &db, sql), run(&plain, &db, sql), "{sql}");
    }
    // The rows really are where the windows put them: the last 20 minutes hold two
    // rows per host, the next 10 one more.
    let recent = run(
        &db.query,
        &db,
        "select count(*) as c from cpu where time > now() - interval '20 minutes' \
         and time < now() + interval '10 minutes'",
    )
    .unwrap();
    assert!(recent.contains(&format!("| {} ", 3 * HOSTS)), "{recent}");
}
