//! Dropping the time and tag conjuncts that the engine scan already applied
//! (`applied_filters`) gives the full filter's answers, on random data with overwrites
//! of the same timestamp, out-of-order writes into older segments, overlapping SSTs,
//! rows still in memtables and unset tags, for random bounds (often exactly on written
//! timestamps, so `<` and `<=` differ) in every comparison form, with tag equalities,
//! `IN` lists and conditions the scan cannot resolve; and that the field comparisons
//! the engine applies itself (inside the Parquet decoder for SSTs) keep exactly the
//! rows DataFusion's own filter keeps.

mod common;

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use bulkhead_engine::FieldValue;
use bulkhead_query::QueryConfig;
use bulkhead_tsbs::SplitMix64;
use common::*;

const SEC: i64 = 1_000_000_000;
const HOUR: i64 = 3600 * SEC;

/// Random rows over 6 hours in rounds with flushes between them; the last round stays
/// in the memtable. With an odd seed every round spans the whole 6 hours, so all
/// sources overlap and are merged; with an even one the rounds after the first two
/// keep to their own hours, so most SSTs are read alone (and stream through the
/// decoder's filters). Returns every timestamp written.
fn load(db: &Db, seed: u64) -> Vec<i64> {
    let mut rng = SplitMix64(seed);
    let mut written: Vec<(u64, i64)> = Vec::new();
    for round in 0..5 {
        let (from, to) = match (seed % 2, round) {
            (1, 3) => (0, 2),
            (1, _) => (0, 6),
            (_, 0 | 1) => (0, 2),
            (_, 2) => (2, 4),
            (_, 3) => (4, 5),
            _ => (5, 6),
        };
        let (from, to) = (from * HOUR, to * HOUR);
        let mut rows = Vec::new();
        for _ in 0..300 {
            let earlier: Vec<(u64, i64)> = written
                .iter()
                .copied()
                .filter(|(_, t)| (from..to).contains(t))
                .collect();
            let (h, t) = if !earlier.is_empty() && rng.chance(10) {
                earlier[rng.below(earlier.len() as u64) as usize] // an overwrite
            } else {
                // Odd nanoseconds too, so bounds fall between and on rows.
                let t =
                    from + rng.below(((to - from) / SEC) as u64) as i64 * SEC + rng.below(3) as i64;
                (rng.below(6), t)
            };
            let (host, dc) = (format!("host_{h}"), format!("dc{}", h % 2));
            let v = FieldValue::I64(rng.below(1_000) as i64 - 300);
            // A float field that older SSTs lack, set in about half of the later rows.
            let u = FieldValue::F64(rng.below(200) as f64 / 2.0 - 50.0);
            let fields: Vec<(&str, FieldValue)> = if round >= 2 && rng.chance(2) {
                vec![("g", v), ("u", u)]
            } else {
                vec![("g", v)]
            };
            // Hosts 4 and 5 have no `dc`: a tag unset in some series.
            let tags: Vec<(&str, &str)> = if h < 4 {
                vec![("host", &host), ("dc", &dc)]
            } else {
                vec![("host", &host)]
            };
            rows.push(("cpu", row(&tags, &fields, t)));
            written.push((h, t));
        }
        db.write("demo", rows);
        if round < 4 {
            db.flush();
        }
    }
    written.into_iter().map(|(_, t)| t).collect()
}

/// A random time bound: usually a written timestamp (or one nanosecond off it).
fn bound(rng: &mut SplitMix64, times: &[i64]) -> i64 {
    match rng.below(4) {
        0 => rng.below((7 * HOUR / SEC) as u64) as i64 * SEC - HOUR,
        _ => times[rng.below(times.len() as u64) as usize] + rng.below(3) as i64 - 1,
    }
}

fn ts(t: i64) -> String {
    format!("to_timestamp_nanos({t})")
}

/// A random comparison of a field with a constant, in a form the scan applies.
fn field(rng: &mut SplitMix64) -> String {
    let (name, value) = match rng.below(3) {
        0 => ("u", format!("{:.1}", rng.below(200) as f64 / 2.0 - 50.0)),
        _ => ("g", format!("{}", rng.below(1_000) as i64 - 300)),
    };
    let op = ["<", "<=", ">", ">=", "=", "!="][rng.below(6) as usize];
    if rng.chance(4) {
        // The constant first: the scan swaps the comparison.
        let swapped = match op {
            "<" => ">",
            "<=" => ">=",
            ">" => "<",
            ">=" => "<=",
            o => o,
        };
        format!("{value} {swapped} {name}")
    } else {
        format!("{name} {op} {value}")
    }
}

/// A random `WHERE` clause on time, and sometimes tags and fields.
fn clause(rng: &mut SplitMix64, times: &[i64]) -> String {
    let w = time_and_tags(rng, times);
    match rng.below(3) {
        0 => w,
        1 => format!("{w} and {}", field(rng)),
        _ => format!("{} and {w} and {}", field(rng), field(rng)),
    }
}

fn time_and_tags(rng: &mut SplitMix64, times: &[i64]) -> String {
    let (a, b) = (bound(rng, times), bound(rng, times));
    let (lo, hi) = (a.min(b), a.max(b));
    let time = match rng.below(8) {
        0 => format!("time >= {} and time < {}", ts(lo), ts(hi)),
        1 => format!("time > {} and time <= {}", ts(lo), ts(hi)),
        2 => format!("time >= {}", ts(lo)),
        3 => format!("{} > time", ts(hi)),
        4 => format!("time = {}", ts(a)),
        5 => format!("time between {} and {}", ts(lo), ts(hi)),
        6 => format!("{} <= time and time < {}", ts(lo), ts(hi)),
        _ => format!("(time < {} or time > {})", ts(lo), ts(hi)),
    };
    let (h, k) = (rng.below(7), rng.below(7));
    match rng.below(9) {
        0 => time,
        1 => format!("{time} and host = 'host_{h}'"),
        2 => format!("host in ('host_{h}', 'host_{k}') and {time}"),
        3 => format!("{time} and host = 'host_{h}' and dc = 'dc{}'", k % 2),
        4 => format!("{time} and dc = 'dc{}' and g > {}", h % 2, k * 50),
        5 => format!("{time} and (host = 'host_{h}' or g > 100)"),
        6 => format!("{time} and host != 'host_{h}'"),
        7 => format!("'host_{h}' = host and {time} and dc is not null"),
        _ => format!("{time} and g > {}", rng.below(600) as i64 - 300),
    }
}

fn text(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).unwrap().to_string()
}

#[test]
fn dropping_applied_conjuncts_keeps_every_answer() {
    for seed in 1..=6 {
        // The server's default (one partition), and a repartitioned plan.
        let db = Db::open_with(QueryConfig {
            target_partitions: 1 + (seed % 2) as usize,
            ..QueryConfig::default()
        });
        let times = load(&db, seed);
        let mut rng = SplitMix64(seed * 7919);
        let mut nonempty = 0;
        for _ in 0..60 {
            let w = clause(&mut rng, &times);
            let queries = |w: &str| {
                [
                    format!("select host, time, g, u from cpu where {w} order by host, time"),
                    format!(
                        "select host, count(*), sum(g), min(time), max(time) from cpu where {w} group by host order by host"
                    ),
                    format!(
                        "select date_bin(interval '1 hour', time) as h, max(g) from cpu where {w} group by h order by h"
                    ),
                    format!("select time, dc from cpu where {w} order by time, dc"),
                ]
            };
            // Off, the scan applies no field comparison and the filter above checks
            // every conjunct: the plain path.
            for q in queries(&w) {
                db.query.set_drop_applied_filters(true);
                let fast = text(&db.sql("demo", &q).unwrap());
                db.query.set_drop_applied_filters(false);
                let plain = text(&db.sql("demo", &q).unwrap());
                assert_eq!(fast, plain, "{q}");
                nonempty += usize::from(fast.lines().count() > 4);
            }
        }
        assert!(
            nonempty > 80,
            "too few non-empty answers to prove anything: {nonempty}"
        );
        db.query.set_drop_applied_filters(true);
    }
}

#[test]
fn a_time_range_is_checked_once() {
    let db = Db::open_with(QueryConfig {
        target_partitions: 1,
        ..QueryConfig::default()
    });
    load(&db, 3);
    let q = format!(
        "select host, max(g) from cpu where time >= {} and time < {} group by host",
        ts(HOUR),
        ts(3 * HOUR)
    );
    let plan = db.table("demo", &format!("explain analyze {q}"));
    assert!(!plan.contains("FilterExec"), "{plan}");
    assert!(plan.contains("ProjectionExec"), "{plan}");
    // A one-host query: the scan applies the host and the range, nothing is left.
    let q = format!(
        "select max(g) from cpu where host in ('host_2') and time >= {} and time < {}",
        ts(HOUR),
        ts(3 * HOUR)
    );
    let plan = db.table("demo", &format!("explain analyze {q}"));
    assert!(!plan.contains("FilterExec"), "{plan}");
    // `!=` is not an equality the scan reports: it stays.
    let q = "select max(g) from cpu where host != 'host_2'";
    let plan = db.table("demo", &format!("explain analyze {q}"));
    assert!(plan.contains("FilterExec"), "{plan}");
    // A field comparison is applied by the scan (inside the decoder), and goes too.
    let q = format!(
        "select host, g from cpu where time >= {} and time < {} and g > 5",
        ts(HOUR),
        ts(3 * HOUR)
    );
    let plan = db.table("demo", &format!("explain analyze {q}"));
    assert!(!plan.contains("FilterExec"), "{plan}");
    assert!(plan.contains("fields=(g > 5)"), "{plan}");
    let dropped = metric(&plan, "rows_filtered_by_field");
    assert!(dropped > 0.0, "{plan}");
    // One with a cast or a function stays in the filter, over the scan's rows.
    let q = "select host, g from cpu where g + 1 > 5 and g > 0";
    let plan = db.table("demo", &format!("explain analyze {q}"));
    let filter = plan
        .lines()
        .find(|l| l.contains("FilterExec"))
        .expect(&plan);
    assert!(filter.contains("+ 1") && !filter.contains("> 0"), "{plan}");

    // A disjunction is not a range: it is checked in full.
    let q = format!(
        "select count(*) from cpu where time < {} or time > {}",
        ts(HOUR),
        ts(3 * HOUR)
    );
    let plan = db.table("demo", &format!("explain analyze {q}"));
    assert!(plan.contains("FilterExec"), "{plan}");
    db.query.set_drop_applied_filters(false);
    // The plain path of the random test: the scan applies no field comparison.
    let plan = db.table("demo", "explain analyze select g from cpu where g > 5");
    assert!(
        plan.contains("FilterExec") && !plan.contains("fields="),
        "{plan}"
    );
    let q = format!(
        "select count(*) from cpu where time >= {} and time < {}",
        ts(HOUR),
        ts(3 * HOUR)
    );
    let plan = db.table("demo", &format!("explain analyze {q}"));
    assert!(plan.contains("FilterExec"), "{plan}");
}

/// The value of an `EXPLAIN ANALYZE` metric (`name=123` or `name=1.2 K`).
fn metric(plan: &str, name: &str) -> f64 {
    let at = plan
        .find(&format!("{name}="))
        .unwrap_or_else(|| panic!("{name} in {plan}"));
    let rest = &plan[at + name.len() + 1..];
    let end = rest.find([',', ']']).unwrap();
    let text = rest[..end].trim();
    match text.strip_suffix(" K") {
        Some(k) => k.parse::<f64>().unwrap() * 1e3,
        None => text.parse().unwrap(),
    }
}
