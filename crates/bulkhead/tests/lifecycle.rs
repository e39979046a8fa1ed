//! Data lifecycle through the real `bulkhead serve`: deletes by predicate over SQL on
//! HTTP, over psql, and InfluxDB 2's `POST /api/v2/delete`, against a model on random
//! data, interleaved with writes, flushes, compactions and `kill -9` restarts; and the
//! errors a bad delete gets.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use bulkhead_tsbs::SplitMix64 as Rng;
use common::TestServer;

/// (host, region, time) -> v.
type Model = BTreeMap<(String, Option<String>, i64), i64>;

const HOSTS: [&str; 3] = ["a", "b", "c"];
const REGIONS: [&str; 2] = ["r1", "r2"];
const TIMES: u64 = 200;

/// A condition's value for a row's (host, region): SQL three-valued logic, `None` = NULL.
type Eval = Box<dyn Fn(&str, Option<&str>) -> Option<bool>>;

/// A condition on tags: its SQL text and its value for a row.
struct Cond {
    sql: String,
    eval: Eval,
}

fn leaf(rng: &mut Rng) -> Cond {
    let host = HOSTS[rng.below(3) as usize].to_string();
    let other = HOSTS[rng.below(3) as usize].to_string();
    let region = REGIONS[rng.below(2) as usize].to_string();
    match rng.below(7) {
        0 => Cond {
            sql: format!("host = '{host}'"),
            eval: Box::new(move |h, _| Some(h == host)),
        },
        1 => Cond {
            sql: format!("host <> '{host}'"),
            eval: Box::new(move |h, _| Some(h != host)),
        },
        2 => Cond {
            sql: format!("region = '{region}'"),
            eval: Box::new(move |_, r| r.map(|r| r == region)),
        },
        3 => Cond {
            sql: format!("host IN ('{host}', '{other}')"),
            eval: Box::new(move |h, _| Some(h == host || h == other)),
        },
        4 => Cond {
            sql: format!("region NOT IN ('{region}')"),
            eval: Box::new(move |_, r| r.map(|r| r != region)),
        },
        5 => Cond {
            sql: "region IS NULL".into(),
            eval: Box::new(|_, r| Some(r.is_none())),
        },
        _ => Cond {
            sql: "region IS NOT NULL".into(),
            eval: Box::new(|_, r| Some(r.is_some())),
        },
    }
}

fn cond(rng: &mut Rng, depth: u32) -> Cond {
    if depth == 0 || rng.below(2) == 0 {
        return leaf(rng);
    }
    let a = cond(rng, depth - 1);
    match rng.below(3) {
        0 => Cond {
            sql: format!("NOT ({})", a.sql),
            eval: Box::new(move |h, r| (a.eval)(h, r).map(|b| !b)),
        },
        1 => {
            let b = cond(rng, depth - 1);
            Cond {
                sql: format!("({} OR {})", a.sql, b.sql),
                eval: Box::new(move |h, r| match ((a.eval)(h, r), (b.eval)(h, r)) {
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                }),
            }
        }
        _ => {
            let b = cond(rng, depth - 1);
            Cond {
                sql: format!("({} AND {})", a.sql, b.sql),
                eval: Box::new(move |h, r| match ((a.eval)(h, r), (b.eval)(h, r)) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                }),
            }
        }
    }
}

fn write_random(s: &TestServer, rng: &mut Rng, model: &mut Model, mem: &mut Model) {
    let mut body = String::new();
    for _ in 0..40 {
        let host = HOSTS[rng.below(3) as usize];
        let region = match rng.below(3) {
            2 => None,
            i => Some(REGIONS[i as usize]),
        };
        let time = rng.below(TIMES) as i64;
        let v = rng.below(1000) as i64;
        let table = if rng.below(4) == 0 { "mem" } else { "cpu" };
        let tags = match region {
            Some(r) => format!("host={host},region={r}"),
            None => format!("host={host}"),
        };
        body.push_str(&format!("{table},{tags} v={v}i {time}\n"));
        let m = if table == "cpu" {
            &mut *model
        } else {
            &mut *mem
        };
        m.insert((host.to_string(), region.map(str::to_string), time), v);
    }
    let r = s.post("/api/v2/write?bucket=demo", body);
    assert_eq!(r.status, 204, "{}", r.text());
}

fn rows(s: &TestServer, table: &str) -> Model {
    let r = s.sql(
        "demo",
        &format!("select host, region, cast(time as bigint) as t, v from {table}"),
        "csv",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    parse(&r.text())
}

fn parse(csv: &str) -> Model {
    let mut out = Model::new();
    for line in csv.lines().skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        assert_eq!(c.len(), 4, "row `{line}`");
        let region = (!c[1].is_empty()).then(|| c[1].to_string());
        let key = (c[0].to_string(), region, c[2].parse().expect("time"));
        assert!(
            out.insert(key, c[3].parse().expect("v")).is_none(),
            "duplicate `{line}`"
        );
    }
    out
}

/// The latest row of each series, through the lastpoint fast path.
fn lastpoint(s: &TestServer) -> Model {
    let r = s.sql(
        "demo",
        "select distinct on (host, region) host, region, cast(time as bigint) as t, v \
         from cpu order by host, region, time desc",
        "csv",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    parse(&r.text())
}

fn latest(model: &Model) -> Model {
    let mut out: BTreeMap<(String, Option<String>), (i64, i64)> = BTreeMap::new();
    for ((h, r, t), v) in model {
        out.insert((h.clone(), r.clone()), (*t, *v));
    }
    out.into_iter()
        .map(|((h, r), (t, v))| ((h, r, t), v))
        .collect()
}

fn psql(s: &TestServer, sql: &str) -> std::process::Output {
    Command::new("psql")
        .args(["-X", "-h", "127.0.0.1", "-p", &s.pg_addr.port().to_string()])
        .args([
            "-U",
            "bulkhead",
            "-d",
            "demo",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
        ])
        .args(["-c", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql")
}

fn rfc3339(ns: i64) -> String {
    format!("1970-01-01T00:00:00.{ns:09}Z")
}

#[test]
fn deletes_equal_a_model_over_http_psql_and_v2_across_kill9() {
    let seed = std::env::var("BULKHEAD_DELETE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let steps = std::env::var("BULKHEAD_DELETE_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(14);
    eprintln!("seed {seed} (BULKHEAD_DELETE_SEED), {steps} steps");
    let mut rng = Rng(seed);
    let mut s = TestServer::start(&[]);
    let (mut model, mut mem) = (Model::new(), Model::new());
    let mut deleted_rows = 0;
    for step in 0..steps {
        write_random(&s, &mut rng, &mut model, &mut mem);
        // Time bounds, one of the shapes, or none.
        let (lo, hi) = (rng.below(TIMES) as i64, rng.below(TIMES) as i64);
        let (lo, hi) = (lo.min(hi), lo.max(hi));
        let (time_sql, range) = match rng.below(4) {
            0 => (String::new(), (i64::MIN, i64::MAX)),
            1 => (format!("time >= {lo} AND time < {hi}"), (lo, hi - 1)),
            2 => (format!("time BETWEEN {lo} AND {hi}"), (lo, hi)),
            _ => (format!("time > '{}'", rfc3339(lo)), (lo + 1, i64::MAX)),
        };
        let how = rng.below(6);
        let op = if how <= 2 {
            // SQL (HTTP twice as often as psql).
            let c = cond(&mut rng, 2);
            let wher = match (c.sql.as_str(), time_sql.as_str()) {
                (c, "") => c.to_string(),
                (c, t) => format!("{t} AND {c}"),
            };
            let sql = format!("DELETE FROM cpu WHERE {wher}");
            if how == 2 {
                let out = psql(&s, &sql);
                assert!(
                    out.status.success(),
                    "{sql}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "demo.cpu");
            } else {
                let r = s.sql("demo", &sql, "csv");
                assert_eq!(r.status, 200, "{sql}: {}", r.text());
                assert_eq!(r.text().trim(), "deleted_from\ndemo.cpu", "{sql}");
            }
            let before = model.len();
            model.retain(|(h, r, t), _| {
                !(*t >= range.0 && *t <= range.1 && (c.eval)(h, r.as_deref()) == Some(true))
            });
            deleted_rows += before - model.len();
            sql
        } else if how == 3 {
            // InfluxDB 2: start/stop inclusive, `=` / `!=` terms joined by AND.
            let host = HOSTS[rng.below(3) as usize];
            let neq = rng.below(2) == 0;
            let predicate = format!(
                "_measurement=\"cpu\" AND host{}\"{host}\"",
                if neq { "!=" } else { "=" }
            );
            let body = serde_json::json!({
                "start": rfc3339(lo), "stop": rfc3339(hi), "predicate": predicate,
            });
            let r = s.post("/api/v2/delete?bucket=demo&org=x", body.to_string());
            assert_eq!(r.status, 204, "{body}: {}", r.text());
            let before = model.len();
            model.retain(|(h, _, t), _| !(*t >= lo && *t <= hi && ((h == host) != neq)));
            deleted_rows += before - model.len();
            format!("v2 delete {body}")
        } else if how == 4 {
            assert_eq!(s.post("/api/v1/flush?db=demo", "").status, 200);
            "flush".into()
        } else {
            assert_eq!(s.post("/api/v1/compact?db=demo", "").status, 200);
            "compact".into()
        };
        if rng.below(3) == 0 {
            s.kill9_and_restart();
        }
        assert_eq!(rows(&s, "cpu"), model, "step {step} after {op}");
        assert_eq!(
            lastpoint(&s),
            latest(&model),
            "lastpoint, step {step} after {op}"
        );
        assert_eq!(rows(&s, "mem"), mem, "untouched table, step {step}");
    }
    assert!(deleted_rows > 0, "the run deleted nothing");
    // Flush and compact: the deletes are applied to every file, and stay applied.
    assert_eq!(s.post("/api/v1/flush?db=demo", "").status, 200);
    assert_eq!(s.post("/api/v1/compact?db=demo", "").status, 200);
    s.kill9_and_restart();
    assert_eq!(rows(&s, "cpu"), model, "after the final compaction");
    // The restart replays the WAL's last deletes (the active segment is never
    // truncated) and re-adds their tombstones; every file already has them applied, so
    // the purge, a background task, drops them again shortly after startup.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = s.sql(
            "demo",
            r#"select tombstones from system.tables where "table" = 'cpu'"#,
            "csv",
        );
        if r.text().trim() == "tombstones\n0" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the tombstones were never purged: {}",
            r.text()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(rows(&s, "cpu"), model, "after the purge");
}

#[test]
fn bad_deletes_are_refused_with_the_reason() {
    let s = TestServer::start(&[]);
    let r = s.post("/api/v2/write?bucket=demo", "cpu,host=a usage=1 1\n");
    assert_eq!(r.status, 204);
    for (sql, status, says) in [
        ("DELETE FROM cpu WHERE usage = 1", 400, "`usage` is a field"),
        (
            "DELETE FROM cpu WHERE dc = 'x'",
            400,
            "column `dc` not found",
        ),
        ("DELETE FROM nope", 400, "demo.nope"),
        (
            "DELETE FROM cpu WHERE host = 'a' OR time > 5",
            400,
            "time must be top-level AND terms",
        ),
        (
            "DELETE FROM cpu WHERE host LIKE 'a%'",
            400,
            "unsupported condition",
        ),
        ("DELETE FROM cpu WHERE time > 'yesterday'", 400, "yesterday"),
    ] {
        let r = s.sql("demo", sql, "csv");
        assert_eq!(r.status, status, "{sql}: {}", r.text());
        assert!(r.text().contains(says), "{sql}: {}", r.text());
    }
    // psql gets an error with a SQLSTATE.
    let out = psql(&s, "DELETE FROM cpu WHERE usage = 1");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is a field"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (body, says) in [
        (r#"{"start":"1970-01-01T00:00:00Z"}"#, "stop"),
        (
            r#"{"start":"x","stop":"1970-01-01T00:00:00Z"}"#,
            "invalid `start` time",
        ),
        (
            r#"{"start":"1970-01-01T00:00:00Z","stop":"1970-01-01T00:00:01Z","predicate":"host=\"a\" OR host=\"b\""}"#,
            "OR is not supported",
        ),
    ] {
        let r = s.post("/api/v2/delete?bucket=demo", body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.text().contains(says), "{body}: {}", r.text());
    }
    let r = s.post(
        "/api/v2/delete?bucket=nodb",
        r#"{"start":"1970-01-01T00:00:00Z","stop":"1970-01-01T00:00:01Z"}"#,
    );
    assert_eq!(r.status, 404, "{}", r.text());
    // Nothing was deleted by the refused requests.
    let r = s.sql("demo", "select count(*) as n from cpu", "csv");
    assert_eq!(r.text().trim(), "n\n1");
}

/// Each catalog limit refuses the write that would pass it with a 400 naming the limit
/// and its value, writes within them still work, and the series limit still holds
/// after `kill -9` (the count comes back from the stored data). `system.tables` shows
/// series and column counts.
#[test]
fn catalog_limits_are_enforced_with_a_clear_error() {
    let mut s = TestServer::start(&[
        "--max-databases",
        "2",
        "--max-tables-per-database",
        "2",
        "--max-columns-per-table",
        "4",
        "--max-series-per-table",
        "3",
    ]);
    let write =
        |s: &TestServer, db: &str, body: &str| s.post(&format!("/api/v2/write?bucket={db}"), body);
    let refused = |r: common::Reply, limit: &str, value: &str| {
        assert_eq!(r.status, 400, "{}", r.text());
        let body = r.json();
        assert_eq!(body["code"], "limit_exceeded", "{body}");
        let msg = body["error"].as_str().unwrap_or_default().to_string();
        assert!(
            msg.contains(&format!("limits.{limit} = {value}")),
            "{limit}: {msg}"
        );
    };
    assert_eq!(write(&s, "d1", "cpu,host=a v=1 1\n").status, 204);
    assert_eq!(write(&s, "d2", "cpu,host=a v=1 1\n").status, 204);
    refused(write(&s, "d3", "cpu,host=a v=1 1\n"), "max_databases", "2");
    assert_eq!(write(&s, "d1", "mem,host=a v=1 1\n").status, 204);
    refused(
        write(&s, "d1", "disk,host=a v=1 1\n"),
        "max_tables_per_database",
        "2",
    );
    // 4 columns: host, dc, v, w; a fifth is refused, the whole batch with it.
    assert_eq!(write(&s, "d1", "cpu,host=b,dc=x v=1,w=2 2\n").status, 204);
    refused(
        write(&s, "d1", "cpu,host=c v=1 3\ncpu,host=a v=1,z=1 3\n"),
        "max_columns_per_table",
        "4",
    );
    // Series: (host=a), (host=b,dc=x); one more fits, a fourth does not.
    assert_eq!(write(&s, "d1", "cpu,host=c v=1 4\n").status, 204);
    refused(
        write(&s, "d1", "cpu,host=d v=1 5\n"),
        "max_series_per_table",
        "3",
    );
    // Existing series still take writes.
    assert_eq!(write(&s, "d1", "cpu,host=a v=2 6\n").status, 204);
    assert_eq!(s.post("/api/v1/flush?db=d1", "").status, 200);
    assert_eq!(write(&s, "d1", "cpu,host=b,dc=x v=3 7\n").status, 204);
    s.kill9_and_restart();
    refused(
        write(&s, "d1", "cpu,host=e v=1 8\n"),
        "max_series_per_table",
        "3",
    );
    assert_eq!(write(&s, "d1", "cpu,host=c v=2 9\n").status, 204);
    // Each refusal since the restart is counted under its limit.
    let text = s.get("/metrics").text();
    let rejections = |limit: &str| {
        common::metric(
            &text,
            &format!("bulkhead_catalog_limit_rejections_total{{limit=\"{limit}\"}}"),
        )
    };
    assert_eq!(rejections("max_series_per_table"), Some(1.0), "{text}");
    assert_eq!(rejections("max_databases"), Some(0.0), "{text}");
    let r = s.sql(
        "d1",
        r#"select "table", series, columns from system.tables where database = 'd1' order by "table""#,
        "csv",
    );
    assert_eq!(
        r.text().trim(),
        "table,series,columns\ncpu,3,4\nmem,1,2",
        "{}",
        r.text()
    );
    // Nothing of a refused write was applied.
    let r = s.sql(
        "d1",
        "select count(*) as n from cpu where host in ('d', 'e')",
        "csv",
    );
    assert_eq!(r.text().trim(), "n\n0");
    // A dropped table frees its slot and its series.
    assert_eq!(s.sql("d1", "drop table mem", "csv").status, 200);
    assert_eq!(write(&s, "d1", "disk,host=a v=1 1\n").status, 204);
}
