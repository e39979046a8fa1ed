//! The lastpoint fast path (aggregates over each series' latest row read only those
//! rows) gives exactly the full scan's answers, on random data with overwrites of the
//! same timestamp (some fields only), out-of-order writes into older segments, several
//! overlapping SSTs, rows still in memtables, and a TTL.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bulkhead_engine::FieldValue;
use bulkhead_query::QueryConfig;
use bulkhead_tsbs::SplitMix64;
use common::*;

const SEC: i64 = 1_000_000_000;
const HOUR: i64 = 3600 * SEC;

const HOSTS: usize = 12;

/// The tags of host `h`: its datacenter is fixed (unset for every fifth host), so a
/// host is one series.
fn tags(h: usize) -> Vec<(&'static str, String)> {
    let mut t = vec![("host", format!("host_{h}"))];
    if !h.is_multiple_of(5) {
        t.push(("dc", format!("dc{}", h % 3)));
    }
    t
}

/// Random rows over the 6 hours before `now` (three segments of 2 h), written in
/// rounds with flushes between them; the last round stays in the memtable. Times
/// within 15 minutes of `avoid` are not used (a TTL cutoff moves while the test runs).
/// Returns a time in the middle of the data.
fn load(db: &Db, seed: u64, now: i64, avoid: i64) -> i64 {
    let mut rng = SplitMix64(seed);
    let start = now - 6 * HOUR;
    let mut written: Vec<(usize, i64)> = Vec::new();
    for round in 0..5 {
        let mut rows = Vec::new();
        for _ in 0..120 {
            // host_11 only ever appears in the first round, early: its latest row is
            // in the oldest SST.
            let mut h = if round == 0 && rng.chance(10) {
                11
            } else {
                rng.below(HOSTS as u64 - 1) as usize
            };
            let t = if h == 11 {
                start + rng.below(HOUR as u64 / SEC as u64) as i64 * SEC
            } else if !written.is_empty() && rng.chance(20) {
                // Overwrite an existing key, often with some fields only.
                let (host, t) = written[rng.below(written.len() as u64) as usize];
                h = host;
                t
            } else if round == 3 {
                // Out of order: into the oldest segment, after newer data was flushed.
                start + rng.below(2 * HOUR as u64 / SEC as u64) as i64 * SEC
            } else {
                start + rng.below(6 * HOUR as u64 / SEC as u64) as i64 * SEC
            };
            if (t - avoid).abs() < 15 * 60 * SEC {
                continue;
            }
            let mut fields = Vec::new();
            if rng.chance(75) {
                fields.push(("f", FieldValue::F64(rng.below(1000) as f64 / 10.0)));
            }
            if fields.is_empty() || rng.chance(60) {
                fields.push(("g", FieldValue::I64(rng.below(100) as i64)));
            }
            let tags = tags(h);
            let tag_refs: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
            rows.push(("cpu", row(&tag_refs, &fields, t)));
            written.push((h, t));
        }
        db.write("demo", rows);
        if round < 4 {
            db.flush();
        }
    }
    start + 3 * HOUR + 7 * SEC
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Latest-row queries the fast path answers; `{mid}` is a time inside the data.
const QUERIES: &[&str] = &[
    "select host, dc, max(time) as t, last_value(f order by time) as f, \
     last_value(g order by time) as g from cpu group by host, dc order by host, dc",
    "select host, max(time), first_value(f order by time desc) as f from cpu \
     where dc = 'dc1' or dc is null group by host order by host",
    "select dc, max(time) from cpu group by dc order by dc",
    // Several series per group: the group's latest row is one series' latest.
    "select dc, max(time) as t, last_value(f order by time) as f, \
     first_value(g order by time desc) as g from cpu group by dc order by dc",
    "select c.dc, last_value(c.g order by c.time) as g from cpu as c group by c.dc order by 1",
    // No aggregate: the distinct tag values of the series with rows (in range).
    "select distinct dc from cpu order by dc",
    "select distinct host, dc from cpu where host != 'host_3' order by 1, 2",
    "select count(*) from (select host, max(time) from cpu group by host)",
    "select max(time) from cpu",
    "select host, last_value(g order by time) as g, max(time) from cpu \
     where time < to_timestamp_nanos({mid}) group by host order by host",
    "select host, last_value(f order by time asc) as f from cpu \
     where time >= to_timestamp_nanos({mid}) - interval '2 hours' and time <= to_timestamp_nanos({mid}) \
     and host != 'host_3' group by host order by host",
    "select c.host, last_value(c.f order by c.time) as f from cpu as c \
     where c.host in ('host_1', 'host_2', 'host_11') group by c.host order by c.host",
    "select distinct on (host, dc) host, dc, time, f, g from cpu \
     order by host, dc, time desc",
    "select distinct on (host) host, time, g from cpu where host != 'host_2' \
     order by host, time desc",
];

fn check(db: &Db, mid: i64) {
    for q in QUERIES {
        let q = q.replace("{mid}", &mid.to_string());
        db.query.set_lastpoint_fast_path(true);
        let plan = db.table("demo", &format!("explain {q}"));
        assert!(
            plan.contains("last_per_series"),
            "not the fast path: {q}\n{plan}"
        );
        // Without a filter, a grouped query is answered by the scan alone.
        let grouped = (q.contains("group by") || q.contains("distinct")) && !q.contains("where");
        assert_eq!(plan.contains("per group of"), grouped, "{q}\n{plan}");
        if grouped && !q.contains("count(*)") {
            assert!(!plan.contains("AggregateExec"), "{q}\n{plan}");
        }
        let fast = db.table("demo", &q);
        db.query.set_lastpoint_fast_path(false);
        let plan = db.table("demo", &format!("explain {q}"));
        assert!(!plan.contains("last_per_series"), "{q}\n{plan}");
        let full = db.table("demo", &q);
        assert_eq!(fast, full, "{q}");
        assert!(
            full.lines().count() > 4,
            "an empty answer proves nothing: {q}\n{full}"
        );
    }
    db.query.set_lastpoint_fast_path(true);
}

#[test]
fn fast_path_equals_full_scan_on_random_data() {
    for seed in 1..=6 {
        let db = Db::open();
        let mid = load(&db, seed, now_nanos(), i64::MIN / 2);
        check(&db, mid);
    }
}

#[test]
fn fast_path_respects_the_ttl() {
    for seed in 11..=13 {
        let ttl = Duration::from_secs(4 * 3600);
        let db = Db::open_with_engine(QueryConfig::default(), |c| c.retention.ttl = ttl);
        let now = now_nanos();
        let mid = load(&db, seed, now, now - 4 * HOUR);
        check(&db, mid);
        // host_11's rows are all older than the TTL: it is in no answer.
        let out = db.table("demo", QUERIES[0]);
        assert!(!out.contains("host_11"), "{out}");
    }
}

#[test]
fn other_shapes_keep_the_full_scan() {
    let db = Db::open();
    let mid = load(&db, 99, now_nanos(), i64::MIN / 2);
    for q in [
        // A field filter changes which row is a series' last.
        "select host, max(time) from cpu where f > 10 group by host",
        // Not latest-row aggregates.
        "select host, max(f) from cpu group by host",
        "select host, last_value(f order by g) from cpu group by host",
        "select host, last_value(f order by time) ignore nulls from cpu group by host",
        "select host, count(*), max(time) from cpu group by host",
        // The latest row of each dc, not of each series: dc is not grouped.
        "select distinct on (dc) dc, time from cpu order by dc, host, time desc",
        // Grouping on a non-tag.
        "select g, max(time) from cpu group by g",
        // A time filter the scan's range does not capture exactly.
        "select host, max(time) from cpu where time < to_timestamp_nanos({mid}) or host = 'host_1' group by host",
    ] {
        let q = q.replace("{mid}", &mid.to_string());
        let plan = db.table("demo", &format!("explain {q}"));
        assert!(!plan.contains("last_per_series"), "{q}\n{plan}");
    }
}

#[test]
fn lastpoint_reads_only_the_newest_sst() {
    // Six 2 h segments of in-order data, one SST each: the latest rows are all in
    // the newest, and the older five are skipped.
    let db = Db::open();
    let mut rows = Vec::new();
    for h in 0..10 {
        let tags = tags(h);
        let tag_refs: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for i in 0..72 {
            rows.push((
                "cpu",
                row(
                    &tag_refs,
                    &[("f", FieldValue::F64(i as f64))],
                    i * 600 * SEC,
                ),
            ));
        }
    }
    db.write("demo", rows);
    db.flush();
    let q = "select host, max(time), last_value(f order by time) as f from cpu group by host order by host";
    let plan = db.table("demo", &format!("explain analyze {q}"));
    assert!(plan.contains("last_per_series"), "{plan}");
    assert!(plan.contains("ssts=6/6"), "{plan}");
    // The newest SST's metadata holds each host's last row: no SST data is read.
    assert!(plan.contains("ssts_opened=0,"), "{plan}");
    assert!(
        plan.contains("rows_from_last_row_metadata=10,"),
        "one row per host: {plan}"
    );
    let out = db.table("demo", q);
    assert!(
        out.contains("| host_9 | 1970-01-01T11:50:00Z | 71.0 |"),
        "{out}"
    );
}
