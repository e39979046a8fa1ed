//! Rollups declared by SQL through the real `bulkhead serve`: `CREATE ROLLUP` over HTTP
//! and over the PostgreSQL wire (psql); their tables equal a direct `GROUP BY
//! date_bin` over the raw data; a rollup created just before a `kill -9` is there after
//! the restart and is maintained; `DROP ROLLUP` stops maintenance for good (the table
//! stays until `DROP TABLE`); every error, with its HTTP status and SQLSTATE; and a
//! name declared both in the config file and by SQL stops startup.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bulkhead_tsbs::SplitMix64 as Rng;
use common::TestServer;
use common::rollup::{
    ALL_AGGREGATES, SEC, SHARED_SHAPES, Shape, assert_same, csv, direct_and_rollup, now_ns,
    random_rows, same, serve_with_rollups, wait_done_of, write,
};

/// `sql` over psql in database `db`, errors verbose (with their SQLSTATE).
fn psql(s: &TestServer, sql: &str) -> Output {
    Command::new("psql")
        .args(["-X", "-h", "127.0.0.1", "-p", &s.pg_addr.port().to_string()])
        .args(["-U", "bulkhead", "-d", "db", "-v", "ON_ERROR_STOP=1"])
        .args(["-v", "VERBOSITY=verbose", "-At", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql")
}

fn http_ok(s: &TestServer, sql: &str) -> Vec<Vec<String>> {
    csv(s, sql)
}

/// (name, origin, definition) of every rollup, by name.
fn declared(s: &TestServer) -> Vec<(String, String, String)> {
    let q = "SELECT name, origin, definition FROM system.rollups ORDER BY name";
    let r = s.sql("db", q, "json");
    assert_eq!(r.status, 200, "{}", r.text());
    let text = |row: &serde_json::Value, k: &str| row[k].as_str().unwrap_or_default().to_string();
    r.json()
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            (
                text(row, "name"),
                text(row, "origin"),
                text(row, "definition"),
            )
        })
        .collect()
}

#[test]
fn rollups_created_by_sql_match_survive_kill9_and_stop_when_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = serve_with_rollups(dir.path(), "");
    let mut rng = Rng(0x5E_0021_5017);
    let end = now_ns() - 120 * SEC;
    for _ in 0..6 {
        write(&s, &random_rows(&mut rng, 400, end - 1200 * SEC, end));
    }

    // Over HTTP: a field list, `mean` for avg, a width that does not divide a minute.
    let r = http_ok(
        &s,
        "CREATE ROLLUP cpu_7s FROM cpu AGGREGATE mean, max, count EVERY 7s GRACE 1s FIELDS (usage)",
    );
    assert_eq!(r, [["db.cpu_7s"]]);
    // Over PG: every aggregate, a retention, a qualified name.
    let out = psql(
        &s,
        "create rollup db.cpu_1m from cpu aggregate avg, min, max, sum, count, first, last \
         every 1m grace period 1s retention 365d",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "db.cpu_1m");

    let [cpu_7s, cpu_1m] = SHARED_SHAPES;
    let shapes = [
        cpu_7s,
        cpu_1m,
        Shape {
            table: "cpu_30s",
            every_secs: 30,
            fields: &["usage", "load"],
            aggregates: ALL_AGGREGATES,
        },
    ];
    let until = |shape: &Shape| {
        let every = shape.every_secs * SEC;
        end - end.rem_euclid(every) + every
    };
    for shape in &shapes[..2] {
        wait_done_of(&s, shape.table, until(shape));
        let (direct, rollup) = direct_and_rollup(&s, shape, until(shape));
        assert!(direct.len() > 20, "{}: {} rows", shape.table, direct.len());
        assert_same(&direct, &rollup);
    }
    // `fields` keeps the other fields out of the rollup.
    let r = s.sql("db", "SELECT load_avg FROM cpu_7s", "csv");
    assert_eq!(r.status, 400, "{}", r.text());

    // kill -9 right after the answer: the rollup is durable and maintained after it.
    let r = http_ok(
        &s,
        "CREATE ROLLUP cpu_30s FROM cpu AGGREGATE avg, min, max, sum, count, first, last EVERY 30s GRACE 1s",
    );
    assert_eq!(r, [["db.cpu_30s"]]);
    s.kill9_and_restart();
    let rollups = declared(&s);
    let names: Vec<&str> = rollups.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(names, ["cpu_1m", "cpu_30s", "cpu_7s"], "{rollups:?}");
    assert!(rollups.iter().all(|r| r.1 == "sql"), "{rollups:?}");
    assert!(
        rollups[0]
            .2
            .starts_with("CREATE ROLLUP \"db\".\"cpu_1m\" FROM \"cpu\" AGGREGATE avg")
            && rollups[0].2.contains("RETENTION 365d"),
        "{rollups:?}"
    );
    for shape in &shapes {
        wait_done_of(&s, shape.table, until(shape));
        let (direct, rollup) = direct_and_rollup(&s, shape, until(shape));
        assert_same(&direct, &rollup);
    }
    // The rollup's retention is its table's TTL, the source has none.
    let r = csv(
        &s,
        "SELECT CAST(retention_seconds AS BIGINT) FROM system.rollups WHERE name = 'cpu_1m'",
    );
    assert_eq!(r, [["31536000"]]);

    // Deletes in the source: the computed buckets they touch are computed again, also
    // where a series lost every row of a bucket (its old rollup row goes).
    let (lo, hi) = (end - 600 * SEC, end - 300 * SEC);
    let deleted = http_ok(
        &s,
        &format!("DELETE FROM cpu WHERE host = 'a' AND time >= {lo} AND time < {hi}"),
    );
    assert_eq!(deleted, [["db.cpu"]]);
    let (lo, hi) = (end - 1000 * SEC, end - 990 * SEC);
    http_ok(
        &s,
        &format!("DELETE FROM cpu WHERE host IN ('b', 'c') AND time BETWEEN {lo} AND {hi}"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    for shape in &shapes {
        loop {
            let (direct, rollup) = direct_and_rollup(&s, shape, until(shape));
            if same(&direct, &rollup) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: the rollup was not computed again after the deletes",
                shape.table
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // DROP ROLLUP over PG: maintenance stops (even across a restart), the table stays.
    let before = csv(&s, "SELECT count(*), CAST(max(time) AS BIGINT) FROM cpu_7s");
    let out = psql(&s, "DROP ROLLUP cpu_7s");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "db.cpu_7s");
    let t0 = now_ns();
    write(&s, &random_rows(&mut rng, 200, t0, t0 + 3 * SEC));
    // The 30 s rollup (still declared) computes past these rows' 7 s buckets and
    // their grace period: the maintainer ran rounds in which the dropped one would
    // have computed them.
    let past = t0 + 10 * SEC;
    let past = past - past.rem_euclid(30 * SEC) + 30 * SEC;
    wait_done_of(&s, "cpu_30s", past);
    std::thread::sleep(Duration::from_secs(1));
    let after = csv(&s, "SELECT count(*), CAST(max(time) AS BIGINT) FROM cpu_7s");
    assert_eq!(before, after, "a dropped rollup was still maintained");
    s.kill9_and_restart();
    let names: Vec<String> = declared(&s).into_iter().map(|r| r.0).collect();
    assert_eq!(names, ["cpu_1m", "cpu_30s"]);
    std::thread::sleep(Duration::from_secs(2));
    let after = csv(&s, "SELECT count(*), CAST(max(time) AS BIGINT) FROM cpu_7s");
    assert_eq!(before, after, "a dropped rollup came back after a restart");
    // DROP TABLE removes the table; a rollup of that name can be declared again.
    assert_eq!(http_ok(&s, "DROP TABLE cpu_7s"), [["db.cpu_7s"]]);
    let r = s.sql("db", "SELECT count(*) FROM cpu_7s", "csv");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = http_ok(
        &s,
        "CREATE ROLLUP cpu_7s FROM cpu AGGREGATE mean, max, count EVERY 7s GRACE 1s FIELDS (usage)",
    );
    assert_eq!(r, [["db.cpu_7s"]]);
    wait_done_of(&s, "cpu_7s", until(&shapes[0]));
    let (direct, rollup) = direct_and_rollup(&s, &shapes[0], until(&shapes[0]));
    assert_same(&direct, &rollup);
}

#[test]
fn bad_rollup_statements_name_the_clause_with_status_and_sqlstate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_rollup = r#"
[[rollup]]
name = "cpu_cfg"
database = "db"
from = "cpu"
aggregates = ["max"]
every = "1m"
"#;
    let mut s = serve_with_rollups(dir.path(), config_rollup);
    write(&s, "cpu,host=a usage=1 1000000000\n");
    assert_eq!(
        http_ok(&s, "CREATE ROLLUP r FROM cpu AGGREGATE avg EVERY 1h"),
        [["db.r"]]
    );
    // (statement, SQLSTATE, words of the message)
    let cases = [
        (
            "CREATE ROLLUP x FROM cpu AGGREGATE median EVERY 1h",
            "42601",
            "AGGREGATE: unknown aggregate `median`",
        ),
        (
            "CREATE ROLLUP x FROM cpu AGGREGATE avg",
            "42601",
            "EVERY: missing",
        ),
        (
            "CREATE ROLLUP x FROM cpu EVERY 1h",
            "42601",
            "AGGREGATE: missing",
        ),
        (
            "CREATE ROLLUP x FROM cpu AGGREGATE avg EVERY soon",
            "42601",
            "EVERY: expected a duration",
        ),
        (
            "CREATE ROLLUP x FROM cpu AGGREGATE avg EVERY 1h GRACE 5 minutes",
            "42601",
            "GRACE: invalid duration `5`",
        ),
        (
            "CREATE ROLLUP x FROM cpu AGGREGATE avg EVERY 1h RETENTION forever",
            "42601",
            "RETENTION: expected a duration",
        ),
        (
            "CREATE ROLLUP x FROM cpu AGGREGATE avg EVERY 1h FIELDS usage",
            "42601",
            "FIELDS: expected `(`",
        ),
        (
            "CREATE ROLLUP x FROM cpu AGGREGATE avg EVERY 1h WHERE host = 'a'",
            "42601",
            "unexpected `WHERE`",
        ),
        (
            "CREATE ROLLUP x FROM other.cpu AGGREGATE avg EVERY 1h",
            "42601",
            "FROM: `other.cpu` is in another database",
        ),
        (
            "CREATE ROLLUP x FROM cpu AGGREGATE avg, avg EVERY 1h",
            "42000",
            "AGGREGATE: `avg` is listed twice",
        ),
        (
            "CREATE ROLLUP x FROM cpu AGGREGATE avg EVERY 0s",
            "42000",
            "EVERY: must be positive",
        ),
        (
            "CREATE ROLLUP cpu FROM cpu AGGREGATE avg EVERY 1h",
            "42000",
            "is also the source table",
        ),
        (
            "CREATE ROLLUP cpu FROM r AGGREGATE avg EVERY 1h",
            "42000",
            "a cycle",
        ),
        (
            "CREATE ROLLUP r FROM cpu AGGREGATE max EVERY 1m",
            "42710",
            "rollup `db.r` already exists",
        ),
        (
            "CREATE ROLLUP cpu_cfg FROM cpu AGGREGATE max EVERY 1m",
            "42710",
            "declared in the config file",
        ),
        (
            "DROP ROLLUP nope",
            "42704",
            "rollup `db.nope` does not exist",
        ),
        (
            "DROP ROLLUP cpu_cfg",
            "42000",
            "is declared in the config file",
        ),
        ("DROP ROLLUP", "42601", "DROP ROLLUP: name: expected a name"),
    ];
    for (sql, sqlstate, says) in cases {
        let r = s.sql("db", sql, "csv");
        assert_eq!(r.status, 400, "{sql}: {}", r.text());
        assert!(r.text().contains(says), "{sql}: {}", r.text());
        let out = psql(&s, sql);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{sql}");
        assert!(
            stderr.contains(&format!("ERROR:  {sqlstate}:")) && stderr.contains(says),
            "{sql}: {stderr}"
        );
    }
    // IF [NOT] EXISTS: no error, nothing changes.
    assert!(
        http_ok(
            &s,
            "CREATE ROLLUP IF NOT EXISTS r FROM cpu AGGREGATE max EVERY 1m"
        )
        .is_empty()
    );
    assert!(http_ok(&s, "DROP ROLLUP IF EXISTS nope").is_empty());
    let every = csv(
        &s,
        "SELECT CAST(every_seconds AS BIGINT) FROM system.rollups WHERE name = 'r'",
    );
    assert_eq!(every, [["3600"]]);
    // Nothing of the failed statements was declared.
    let names: Vec<String> = declared(&s).into_iter().map(|r| r.0).collect();
    assert_eq!(names, ["cpu_cfg", "r"]);
    let origins = csv(&s, "SELECT origin FROM system.rollups ORDER BY name");
    assert_eq!(origins, [["config"], ["sql"]]);

    // A name declared in the config file and by SQL stops startup, naming it.
    s.terminate(Duration::from_secs(30));
    let cfg = dir.path().join("clash.toml");
    std::fs::write(
        &cfg,
        "[[rollup]]\nname = \"r\"\ndatabase = \"db\"\nfrom = \"cpu\"\naggregates = [\"max\"]\nevery = \"1m\"\n",
    )
    .expect("write config");
    let out = Command::new(common::server_binary())
        .args(["serve", "--data-dir"])
        .arg(s.data_dir().join("data"))
        .args(["--http-addr", "127.0.0.1:0", "--pg-enabled", "false"])
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("run bulkhead");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rollup `db.r` is declared both in the config file"),
        "{stderr}"
    );
    // Without the clash it starts, and the SQL rollup is still there.
    s.restart();
    let names: Vec<String> = declared(&s).into_iter().map(|r| r.0).collect();
    assert_eq!(names, ["cpu_cfg", "r"]);
}
