//! Rollup test kit: random `cpu` rows, and the comparison of a rollup table with a
//! direct `GROUP BY date_bin` over its source (`rollups.rs`, `rollup_sql.rs`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bulkhead_tsbs::SplitMix64 as Rng;

use super::TestServer;

pub const SEC: i64 = 1_000_000_000;

pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i64
}

/// `n` random line-protocol rows of `cpu` with times in `[from, to)`.
pub fn random_rows(rng: &mut Rng, n: usize, from: i64, to: i64) -> String {
    let mut body = String::new();
    for _ in 0..n {
        let host = ["a", "b", "c", "d"][rng.below(4) as usize];
        let mut line = format!("cpu,host={host}");
        // Some series have no region: a NULL tag, grouped on its own.
        if rng.below(3) > 0 {
            line.push_str(&format!(",region=r{}", rng.below(2)));
        }
        let mut fields = Vec::new();
        if rng.below(5) > 0 {
            fields.push(format!("usage={}", rng.below(10_000) as f64 / 7.0 - 300.0));
        }
        if fields.is_empty() || rng.below(2) == 0 {
            fields.push(format!("load={}i", rng.below(1000) as i64 - 200));
        }
        let t = from + (rng.next_u64() % (to - from) as u64) as i64;
        line.push_str(&format!(" {} {t}\n", fields.join(",")));
        body.push_str(&line);
    }
    body
}

pub fn write(s: &TestServer, body: &str) {
    let r = s.post("/api/v2/write?bucket=db&precision=ns", body);
    assert_eq!(r.status, 204, "{}", r.text());
}

pub fn csv(s: &TestServer, q: &str) -> Vec<Vec<String>> {
    let r = s.sql("db", q, "csv");
    assert_eq!(r.status, 200, "{q}: {}", r.text());
    r.text()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// A rollup's declaration, as the comparison needs it.
pub struct Shape {
    pub table: &'static str,
    pub every_secs: i64,
    pub fields: &'static [&'static str],
    pub aggregates: &'static [&'static str],
}

/// Every aggregate a rollup can compute.
pub const ALL_AGGREGATES: &[&str] = &["avg", "min", "max", "sum", "count", "first", "last"];

/// The two rollups of `cpu` that both `rollups.rs` (in the config file) and
/// `rollup_sql.rs` (by `CREATE ROLLUP`) declare: a width that does not divide a minute,
/// with a field list and `mean` (stored as `avg`), and a minute with every aggregate.
pub const SHARED_SHAPES: [Shape; 2] = [
    Shape {
        table: "cpu_7s",
        every_secs: 7,
        fields: &["usage"],
        aggregates: &["avg", "max", "count"],
    },
    Shape {
        table: "cpu_1m",
        every_secs: 60,
        fields: &["usage", "load"],
        aggregates: ALL_AGGREGATES,
    },
];

/// Every bucket before `until` aggregated directly from `cpu`, and as the rollup has it.
pub fn direct_and_rollup(
    s: &TestServer,
    shape: &Shape,
    until: i64,
) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let mut direct = Vec::new();
    let mut rolled = Vec::new();
    for f in shape.fields {
        for a in shape.aggregates {
            direct.push(match *a {
                "first" => format!("first_value({f} ORDER BY time)"),
                "last" => format!("last_value({f} ORDER BY time)"),
                _ => format!("{a}({f})"),
            });
            rolled.push(format!("{f}_{a}"));
        }
    }
    let until = format!("arrow_cast({until}, 'Timestamp(Nanosecond, Some(\"UTC\"))')");
    let d = csv(
        s,
        &format!(
            "SELECT host, region, CAST(date_bin(INTERVAL '{} seconds', time) AS BIGINT) AS b, {} \
             FROM cpu WHERE time < {until} GROUP BY host, region, b ORDER BY host, region, b",
            shape.every_secs,
            direct.join(", ")
        ),
    );
    let r = csv(
        s,
        &format!(
            "SELECT host, region, CAST(time AS BIGINT) AS b, {} FROM {} \
             WHERE time < {until} ORDER BY host, region, b",
            rolled.join(", "),
            shape.table
        ),
    );
    (d, r)
}

/// Equal cell by cell; numbers within a relative 1e-9 (a sum's order may differ).
pub fn assert_same(direct: &[Vec<String>], rollup: &[Vec<String>]) {
    assert_eq!(direct.len(), rollup.len(), "rows: direct vs rollup");
    for (d, r) in direct.iter().zip(rollup) {
        assert!(same_row(d, r), "direct {d:?}\nrollup {r:?}");
    }
}

/// [`assert_same`] as a test.
pub fn same(direct: &[Vec<String>], rollup: &[Vec<String>]) -> bool {
    direct.len() == rollup.len() && direct.iter().zip(rollup).all(|(d, r)| same_row(d, r))
}

fn same_row(d: &[String], r: &[String]) -> bool {
    d.len() == r.len()
        && d.iter()
            .zip(r)
            .all(|(a, b)| match (a.parse::<f64>(), b.parse::<f64>()) {
                (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
                _ => a == b,
            })
}

/// `system.rollups.done_until` of `name` (ns), if any.
pub fn done_until(s: &TestServer, name: &str) -> Option<i64> {
    let rows = csv(
        s,
        &format!(
            "SELECT CAST(done_until AS BIGINT), errors, last_error FROM system.rollups WHERE name = '{name}'"
        ),
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][1], "0", "rollup errors: {rows:?}");
    rows[0][0].parse().ok()
}

pub fn wait_done_of(s: &TestServer, name: &str, until: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while done_until(s, name).is_none_or(|d| d < until) {
        assert!(Instant::now() < deadline, "rollup never reached {until}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A server with `rollups` (TOML `[[rollup]]` entries) checked every 200 ms.
pub fn serve_with_rollups(dir: &std::path::Path, rollups: &str) -> TestServer {
    let path = dir.join("rollups.toml");
    std::fs::write(
        &path,
        format!("[compaction]\nrollup_interval = \"200ms\"\n{rollups}"),
    )
    .expect("write config");
    let cfg = path.display().to_string();
    TestServer::start(&["--config", &cfg, "--compact-sched-idle", "false"])
}
