//! Run aggregation (time-bucket `GROUP BY`s folded run by run, `run_agg.rs`) gives the
//! plain aggregate's answers, on random data with missing fields, several series per
//! group, overwrites of the same timestamp, out-of-order writes into older segments,
//! several overlapping SSTs and rows still in memtables.

mod common;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use bulkhead_engine::FieldValue;
use bulkhead_query::QueryConfig;
use bulkhead_tsbs::SplitMix64;
use common::*;

const SEC: i64 = 1_000_000_000;
const HOUR: i64 = 3600 * SEC;
const HOSTS: u64 = 9;

/// Random rows over 6 hours, written in rounds with flushes between them; the last
/// round stays in the memtable. Hosts 0-2 have two series each (two values of `dc`).
fn load(db: &Db, seed: u64) {
    let mut rng = SplitMix64(seed);
    let mut written: Vec<(u64, u64, i64)> = Vec::new();
    for round in 0..5 {
        let mut rows = Vec::new();
        for _ in 0..400 {
            let (h, d, t) = if !written.is_empty() && rng.chance(10) {
                written[rng.below(written.len() as u64) as usize]
            } else {
                let h = rng.below(HOSTS);
                let d = if h < 3 { rng.below(2) } else { h % 2 };
                let span = if round == 3 { 2 * HOUR } else { 6 * HOUR };
                (h, d, rng.below((span / SEC) as u64) as i64 * SEC)
            };
            let mut fields = Vec::new();
            if rng.chance(80) {
                let v = match rng.below(40) {
                    0 => -0.0,
                    1 => 0.0,
                    _ => rng.below(10_000) as f64 / 7.0 - 500.0,
                };
                fields.push(("f", FieldValue::F64(v)));
            }
            if fields.is_empty() || rng.chance(70) {
                fields.push(("g", FieldValue::I64(rng.below(1_000) as i64 - 300)));
            }
            if rng.chance(50) {
                fields.push(("u", FieldValue::U64(rng.below(1 << 40))));
            }
            let (host, dc) = (format!("host_{h}"), format!("dc{d}"));
            let tags: Vec<(&str, &str)> = if h == 8 {
                vec![("host", &host)] // no dc: a null group key
            } else {
                vec![("host", &host), ("dc", &dc)]
            };
            rows.push(("cpu", row(&tags, &fields, t)));
            written.push((h, d, t));
        }
        db.write("demo", rows);
        if round < 4 {
            db.flush();
        }
    }
}

/// Queries the run aggregate answers.
const QUERIES: &[&str] = &[
    "select date_bin(interval '1 hour', time) as hour, host, avg(f) as a, count(*) as n, \
     count(f) as nf, sum(g) as s, min(f) as lo, max(f) as hi, avg(g) as ag from cpu \
     group by hour, host order by hour, host",
    "select date_bin(interval '10 minutes', time) as m, max(f), min(g), max(u), sum(u), sum(f) \
     from cpu where host in ('host_1', 'host_4') group by m order by m",
    "select date_trunc('hour', time) as h, dc, avg(f), count(g) from cpu \
     where time >= to_timestamp_nanos(3600000000000) and time < to_timestamp_nanos(18000000000000) \
     group by h, dc order by h, dc",
    "select host, dc, count(*), avg(f), max(g), avg(g) from cpu group by host, dc order by host, dc",
    "select date_bin(interval '1 hour', time) as hour, host, avg(f) from cpu \
     where f > 10 or g < 0 group by hour, host order by hour, host",
    "select date_bin(interval '30 minutes', time, to_timestamp_nanos(0)) as b, min(f), max(f) \
     from cpu where dc = 'dc0' group by b order by b",
    "select count(*) from (select host, date_bin(interval '1 hour', time), sum(g) from cpu \
     group by 1, 2)",
];

/// Shapes it leaves to DataFusion.
const OTHER_SHAPES: &[&str] = &[
    "select g, count(*) from cpu group by g",
    "select time, max(f) from cpu group by time",
    "select host, count(distinct g) from cpu group by host",
    "select host, max(f) filter (where g > 0) from cpu group by host",
    "select host, first_value(f order by time) from cpu group by host",
    "select host, max(f) from (select host, f from cpu order by time limit 100) group by host",
    "select max(f) from cpu",
];

/// Render every cell; floats are compared with a relative tolerance (sums are added in
/// another order), everything else exactly.
fn cells(batches: &[RecordBatch]) -> Vec<Vec<Cell>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            let mut row = Vec::new();
            for c in b.columns() {
                if c.data_type() == &DataType::Float64 {
                    let a = c.as_primitive::<Float64Type>();
                    row.push(Cell::F(a.is_valid(i).then(|| a.value(i))));
                } else {
                    let f = ArrayFormatter::try_new(c.as_ref(), &options).unwrap();
                    row.push(Cell::S(f.value(i).to_string()));
                }
            }
            rows.push(row);
        }
    }
    rows
}

#[derive(Debug)]
enum Cell {
    F(Option<f64>),
    S(String),
}

fn same(a: &Cell, b: &Cell) -> bool {
    match (a, b) {
        (Cell::S(x), Cell::S(y)) => x == y,
        (Cell::F(None), Cell::F(None)) => true,
        (Cell::F(Some(x)), Cell::F(Some(y))) => {
            x.to_bits() == y.to_bits() || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
        }
        _ => false,
    }
}

fn check(db: &Db) {
    for q in QUERIES {
        db.query.set_run_aggregate(true);
        let plan = db.table("demo", &format!("explain {q}"));
        assert!(
            plan.contains("RunAggregateExec"),
            "not run-aggregated: {q}\n{plan}"
        );
        let fast = cells(&db.sql("demo", q).unwrap());
        db.query.set_run_aggregate(false);
        let plan = db.table("demo", &format!("explain {q}"));
        assert!(!plan.contains("RunAggregateExec"), "{q}\n{plan}");
        let plain = cells(&db.sql("demo", q).unwrap());
        assert!(!plain.is_empty(), "an empty answer proves nothing: {q}");
        assert_eq!(fast.len(), plain.len(), "{q}");
        for (a, b) in fast.iter().zip(&plain) {
            assert!(
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y)),
                "{q}\nrun aggregate: {a:?}\nplain:         {b:?}"
            );
        }
    }
    db.query.set_run_aggregate(true);
}

#[test]
fn run_aggregate_equals_plain_aggregate_on_random_data() {
    for seed in 1..=6 {
        let db = one_partition();
        load(&db, seed);
        check(&db);
    }
}

/// The server's default plan shape (`limits.query_partitions = 1`).
fn one_partition() -> Db {
    Db::open_with(QueryConfig {
        target_partitions: 1,
        ..QueryConfig::default()
    })
}

#[test]
fn other_shapes_keep_the_plain_aggregate() {
    let db = one_partition();
    load(&db, 42);
    for q in OTHER_SHAPES {
        let plan = db.table("demo", &format!("explain {q}"));
        assert!(!plan.contains("RunAggregateExec"), "{q}\n{plan}");
        db.sql("demo", q).unwrap_or_else(|e| panic!("{q}: {e}"));
    }
    // Several partitions: their partial rows would reach the final step in no fixed
    // order, so DataFusion's partial step stays.
    let db = Db::open_with(QueryConfig {
        target_partitions: 2,
        ..QueryConfig::default()
    });
    load(&db, 42);
    let plan = db.table("demo", &format!("explain {}", QUERIES[0]));
    assert!(!plan.contains("RunAggregateExec"), "{plan}");
}

#[test]
fn runs_fold_to_few_rows() {
    // In-order data, one SST: each host's hour is one run, so the partial step emits
    // one row per (hour, host) and batch.
    let db = one_partition();
    let mut rows = Vec::new();
    for h in 0..4 {
        let host = format!("host_{h}");
        for i in 0..720 {
            rows.push((
                "cpu",
                row(
                    &[("host", &host)],
                    &[("f", FieldValue::F64(i as f64))],
                    i * 10 * SEC,
                ),
            ));
        }
    }
    db.write("demo", rows);
    db.flush();
    let q = "select date_bin(interval '1 hour', time) as hour, host, avg(f), count(*) \
             from cpu group by hour, host order by hour, host";
    let plan = db.table("demo", &format!("explain analyze {q}"));
    let line = plan
        .lines()
        .find(|l| l.contains("RunAggregateExec"))
        .unwrap_or_else(|| panic!("{plan}"));
    assert!(line.contains("output_rows=8,"), "2 hours x 4 hosts: {line}");
    let out = db.table("demo", q);
    assert!(
        out.contains("| 1970-01-01T01:00:00Z | host_3 | 539.5      | 360      |"),
        "{out}"
    );
}

/// Scans decoded on tasks of their own (`limits.scan_tasks`, here on every scan of a
/// whole table) give the answers of scans decoded in the query's task, through run
/// aggregation and the plain aggregate alike, on the same random data.
#[test]
fn scans_on_tasks_give_the_answers_of_scans_in_one_task() {
    let extra = [
        "select * from cpu order by host, dc, time",
        "select host, dc, time, f from cpu where g > 100 order by host, dc, time",
        "select count(*), sum(g), max(f), min(u) from cpu",
    ];
    for seed in [3, 4] {
        let plain = one_partition();
        let tasks = Db::open_with(QueryConfig {
            target_partitions: 1,
            scan_tasks: 2,
            scan_tasks_min_rows: 0,
            ..QueryConfig::default()
        });
        load(&plain, seed);
        load(&tasks, seed);
        let mut on_tasks = 0;
        for run_aggregate in [true, false] {
            plain.query.set_run_aggregate(run_aggregate);
            tasks.query.set_run_aggregate(run_aggregate);
            for q in QUERIES.iter().chain(&extra) {
                let want = cells(&plain.sql("demo", q).unwrap());
                let got = cells(&tasks.sql("demo", q).unwrap());
                assert!(!want.is_empty(), "an empty answer proves nothing: {q}");
                assert_eq!(got.len(), want.len(), "{q}");
                for (a, b) in got.iter().zip(&want) {
                    assert!(
                        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y)),
                        "{q}\nscan tasks: {a:?}\none task:   {b:?}"
                    );
                }
                let plan = tasks.table("demo", &format!("explain analyze {q}"));
                if !plan.contains("groups_decoded_on_tasks=0") {
                    on_tasks += 1;
                }
                let plan = plain.table("demo", &format!("explain analyze {q}"));
                assert!(plan.contains("groups_decoded_on_tasks=0"), "{q}\n{plan}");
            }
        }
        // Every query but the two that select series by tag (`host in (...)`,
        // `dc = 'dc0'`) read on tasks.
        assert_eq!(
            on_tasks,
            2 * (QUERIES.len() + extra.len() - 2),
            "seed {seed}"
        );
    }
}
