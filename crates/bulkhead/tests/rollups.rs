//! Downsampling rollups through the real `bulkhead serve`: on random data (random tags,
//! integer and float fields, missing values, shuffled timestamps) plus rows that arrive
//! late but within the grace period, the rollup table equals a direct
//! `GROUP BY date_bin` over the raw data, over SQL and InfluxQL, before and after a
//! `kill -9`; several rollups of one source (a `fields` list, widths of 7 s and 1 m);
//! a rollup table's own retention; and bad rollup config stops startup naming the key and value.

mod common;

use std::process::Command;
use std::time::Duration;

use bulkhead_tsbs::SplitMix64 as Rng;
use common::rollup::{
    SEC, SHARED_SHAPES, Shape, assert_same, csv, direct_and_rollup, done_until, now_ns,
    random_rows, serve_with_rollups, wait_done_of, write,
};
use common::{TestServer, url_encode};

/// Bucket width and grace period of the test's rollup.
const EVERY: i64 = 10 * SEC;
const GRACE: i64 = 15 * SEC;

/// The test's main rollup.
const CPU_10S: Shape = Shape {
    table: "cpu_10s",
    every_secs: 10,
    fields: &["usage", "load"],
    aggregates: &["avg", "min", "max", "sum", "count", "first", "last"],
};

fn wait_done(s: &TestServer, until: i64) {
    wait_done_of(s, "cpu_10s", until);
}

fn config(dir: &std::path::Path) -> String {
    let path = dir.join("rollups.toml");
    std::fs::write(
        &path,
        r#"
[compaction]
rollup_interval = "200ms"

[[rollup]]
name = "cpu_10s"
database = "db"
from = "cpu"
aggregates = ["avg", "min", "max", "sum", "count", "first", "last"]
every = "10s"
grace_period = "15s"
retention = "365d"
"#,
    )
    .expect("write config");
    path.display().to_string()
}

#[test]
fn rollup_equals_group_by_with_late_rows_and_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    // Not SCHED_IDLE: on a machine shared with builds, an idle-class `compact` thread
    // may get no CPU for many seconds, and the late rows' bucket must still be open
    // (not yet computed) when they are written, and computed within the deadlines below.
    let mut s = TestServer::start(&["--config", &cfg, "--compact-sched-idle", "false"]);
    let mut rng = Rng(0x5EED_0021);

    // History: 10 minutes of rows, ready at once; written in shuffled batches.
    let start = now_ns() - 600 * SEC;
    for _ in 0..8 {
        write(&s, &random_rows(&mut rng, 300, start, now_ns() - 30 * SEC));
    }
    // Wait for the start of a bucket, so the bucket before has just ended: its rows
    // written from now on are late, but within the grace period (15 s).
    loop {
        let into = now_ns().rem_euclid(EVERY);
        if (SEC / 2..2 * SEC).contains(&into) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let bucket_end = now_ns() - now_ns().rem_euclid(EVERY);
    let late_bucket = bucket_end - EVERY;
    wait_done(&s, late_bucket - EVERY);
    write(&s, &random_rows(&mut rng, 200, late_bucket, bucket_end));
    let done = done_until(&s, "cpu_10s").expect("history materialized");
    assert!(
        done <= late_bucket,
        "the late rows' bucket was materialized before its grace period ended: {done} > {late_bucket}"
    );
    assert!(
        now_ns() < bucket_end + GRACE,
        "the machine was too slow to write late rows in time"
    );

    wait_done(&s, bucket_end);
    let (direct, rollup) = direct_and_rollup(&s, &CPU_10S, bucket_end);
    assert!(direct.len() > 100, "{} buckets", direct.len());
    assert_same(&direct, &rollup);

    // Queryable over InfluxQL too.
    let q = "SELECT usage_max FROM cpu_10s WHERE host = 'a'";
    let r = s.get(&format!("/query?db=db&q={}", url_encode(q)));
    assert_eq!(r.status, 200, "{}", r.text());
    let values = r.json()["results"][0]["series"][0]["values"]
        .as_array()
        .map_or(0, Vec::len);
    let sql = csv(&s, "SELECT count(usage_max) FROM cpu_10s WHERE host = 'a'");
    assert_eq!(values.to_string(), sql[0][0], "InfluxQL vs SQL rows");

    // kill -9: the rollup rows are in the WAL; the maintainer resumes from the rollup
    // table's newest bucket, and newer buckets equal the direct query too.
    s.kill9_and_restart();
    let (direct_after, rollup_after) = direct_and_rollup(&s, &CPU_10S, bucket_end);
    assert_same(&direct, &rollup_after);
    assert_same(&direct_after, &rollup_after);
    let from = now_ns();
    write(
        &s,
        &random_rows(&mut rng, 300, from - 5 * SEC, from + 15 * SEC),
    );
    let until = from + 15 * SEC;
    let until = until - until.rem_euclid(EVERY) + EVERY;
    std::thread::sleep(Duration::from_nanos(
        (until + GRACE - now_ns()).max(0) as u64
    ));
    wait_done(&s, until);
    let (direct, rollup) = direct_and_rollup(&s, &CPU_10S, until);
    assert_same(&direct, &rollup);

    // Status on /metrics.
    let metrics = s.get("/metrics").text();
    let written = common::metric(
        &metrics,
        "bulkhead_rollup_rows_written_total{database=\"db\",rollup=\"cpu_10s\"}",
    );
    assert!(written.is_some_and(|n| n > 0.0), "{metrics}");
}

/// Two more rollups of one source, on history only (every bucket ready at once): a
/// width that does not divide a minute with a field list, and a minute with every
/// aggregate; each equals its direct `GROUP BY date_bin`.
#[test]
fn several_rollups_of_one_source_match_on_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = serve_with_rollups(
        dir.path(),
        r#"
[[rollup]]
name = "cpu_7s"
database = "db"
from = "cpu"
aggregates = ["mean", "max", "count"]
fields = ["usage"]
every = "7s"
grace_period = "1s"

[[rollup]]
name = "cpu_1m"
database = "db"
from = "cpu"
aggregates = ["avg", "min", "max", "sum", "count", "first", "last"]
every = "1m"
grace_period = "1s"
"#,
    );
    let mut rng = Rng(0xC0FF_EE21);
    let end = now_ns() - 120 * SEC;
    for _ in 0..6 {
        write(&s, &random_rows(&mut rng, 400, end - 1200 * SEC, end));
    }
    for shape in &SHARED_SHAPES {
        let every = shape.every_secs * SEC;
        let until = end - end.rem_euclid(every) + every;
        wait_done_of(&s, shape.table, until);
        let (direct, rollup) = direct_and_rollup(&s, shape, until);
        assert!(direct.len() > 20, "{}: {} rows", shape.table, direct.len());
        assert_same(&direct, &rollup);
    }
    // `fields` keeps the other fields out of the rollup.
    let r = s.sql("db", "SELECT load_avg FROM cpu_7s", "csv");
    assert_eq!(r.status, 400, "{}", r.text());
}

/// A rollup table keeps its own retention: with `retention = "10m"` its buckets older
/// than ten minutes are gone from reads while the source (no TTL) keeps every row, and
/// the buckets it shows still equal the direct `GROUP BY date_bin`.
#[test]
fn a_rollup_table_keeps_its_own_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = serve_with_rollups(
        dir.path(),
        r#"
[[rollup]]
name = "cpu_1m"
database = "db"
from = "cpu"
aggregates = ["avg", "min", "max", "sum", "count", "first", "last"]
every = "1m"
grace_period = "1s"
retention = "10m"
"#,
    );
    let mut rng = Rng(0x7E7E_5710);
    let end = now_ns() - 90 * SEC;
    let start = end - 40 * 60 * SEC;
    for _ in 0..6 {
        write(&s, &random_rows(&mut rng, 400, start, end));
    }
    let every = 60 * SEC;
    let until = end - end.rem_euclid(every) + every;
    wait_done_of(&s, "cpu_1m", until);

    let before = now_ns();
    let shape = Shape {
        table: "cpu_1m",
        every_secs: 60,
        fields: &["usage", "load"],
        aggregates: &["avg", "min", "max", "sum", "count", "first", "last"],
    };
    let (direct, rollup) = direct_and_rollup(&s, &shape, until);
    let after = now_ns();
    let bucket = |row: &Vec<String>| row[2].parse::<i64>().expect("bucket");
    // Nothing older than the table's own TTL is visible...
    let ttl = 10 * 60 * SEC;
    assert!(
        rollup.iter().all(|r| bucket(r) >= before - ttl),
        "a bucket older than the rollup's retention is visible: {:?}",
        rollup.iter().map(bucket).min()
    );
    // ...while the source still has its oldest rows (retention is per table).
    let oldest = csv(&s, "SELECT CAST(min(time) AS BIGINT) FROM cpu");
    let oldest: i64 = oldest[0][0].parse().expect("min(time)");
    assert!(oldest < start + 60 * SEC, "the source lost rows: {oldest}");
    assert!(
        direct.len() > rollup.len(),
        "nothing was hidden by the rollup's TTL"
    );
    // The buckets it shows equal the direct aggregate, and every bucket surely inside
    // the TTL is there.
    let shown: Vec<Vec<String>> = direct
        .iter()
        .filter(|d| rollup.iter().any(|r| r[..3] == d[..3]))
        .cloned()
        .collect();
    assert_same(&shown, &rollup);
    let inside = direct
        .iter()
        .filter(|d| bucket(d) >= after - ttl + every)
        .count();
    assert!(inside > 0);
    assert!(
        rollup
            .iter()
            .filter(|r| bucket(r) >= after - ttl + every)
            .count()
            == inside,
        "buckets inside the retention are missing from the rollup"
    );
}

#[test]
fn bad_rollup_config_stops_startup_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "aggregates = [\"median\"]\nevery = \"1h\"",
            "rollup[0] (db.cpu_1h): aggregates: unknown aggregate `median`",
        ),
        (
            "aggregates = [\"avg\"]\nevery = \"0s\"",
            "rollup[0] (db.cpu_1h): every: must be positive",
        ),
        (
            "aggregates = [\"avg\"]\nevery = \"1h\"\ncolour = 1",
            "colour",
        ),
        ("aggregates = [\"avg\"]", "every"),
    ];
    for (body, expected) in cases {
        let cfg = dir.path().join("bad.toml");
        std::fs::write(
            &cfg,
            format!("[[rollup]]\nname = \"cpu_1h\"\ndatabase = \"db\"\nfrom = \"cpu\"\n{body}\n"),
        )
        .expect("write config");
        let out = Command::new(common::server_binary())
            .args(["serve", "--data-dir"])
            .arg(dir.path().join("data"))
            .args([
                "--http-addr",
                "127.0.0.1:0",
                "--pg-enabled",
                "false",
                "--config",
            ])
            .arg(&cfg)
            .output()
            .expect("run bulkhead");
        assert!(!out.status.success(), "{body}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{body}: {stderr}");
    }
}
