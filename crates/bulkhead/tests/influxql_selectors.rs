//! InfluxQL's `top`, `bottom`, `mode`, `integral` and `sample` against a real InfluxDB
//! 1.6: seeded random points written to both (several seeds, `INFLUXQL_SEEDS=1,2,3`
//! overrides them), each function asked in several shapes (plain, time bounds, GROUP BY
//! tags, GROUP BY time with fill and offsets, ORDER BY time DESC, tag arguments and other
//! fields beside `top`/`bottom`), answers equal to 1e-9 relative. `sample` is random:
//! only its shape is compared (the same series and row counts as InfluxDB, each row a
//! real point). What Bulkhead refuses is refused with an error naming the function.

mod common;

use std::collections::BTreeMap;

use common::TestServer;
use common::influx::{Influx, curl, post_query, query, same};
use serde_json::Value;

const HOUR: &str = "time >= '2016-01-01T00:00:00Z' AND time < '2016-01-01T01:00:00Z'";
const MID: &str = "time >= '2016-01-01T00:20:00Z' AND time < '2016-01-01T00:40:00Z'";
const TF: &str = "time >= 1451606400000ms and time <= 1451609999000ms";

/// Seeded line protocol: measurement `rnd`, five hosts, a `dc` tag some lack, a float
/// `f` (unique values), an integer `i` (many ties), `md` (an integer whose most frequent
/// value is clear: `mode` ties are an accident of Go's unstable sort in InfluxDB), a
/// string `s` (mostly `up`) and a boolean `b`; one point every ~2 s for an hour, times
/// unique.
fn random_data(seed: u64) -> String {
    let mut rng = bulkhead_tsbs::SplitMix64(seed);
    let mut next = move |n: u64| rng.below(n);
    let mut out = String::new();
    for k in 0..1800u64 {
        let t = 1_451_606_400 + k * 2 + next(2);
        let host = next(5);
        let dc = match host {
            0 | 1 => ",dc=d0",
            2 => ",dc=d1",
            3 if next(2) == 0 => ",dc=d1",
            _ => "",
        };
        let mut fields = vec![format!("f={}.{:02}{k:04}", next(100), next(100))];
        if next(4) != 0 {
            fields.push(format!("i={}i", next(20)));
        }
        let md = if next(5) < 3 { 7 } else { next(12) };
        fields.push(format!("md={md}i"));
        if next(3) == 0 {
            let s = if next(3) < 2 {
                "up"
            } else {
                ["down", "idle"][next(2) as usize]
            };
            fields.push(format!("s=\"{s}\""));
        }
        if next(5) == 0 {
            fields.push(format!("b={}", next(3) != 0));
        }
        out.push_str(&format!("rnd,host=h{host}{dc} {} {t}\n", fields.join(",")));
    }
    out
}

/// Queries whose answers must equal InfluxDB's.
fn compared() -> Vec<String> {
    let mut q = Vec::new();
    for tail in [
        "",
        &format!(" WHERE {HOUR}"),
        &format!(" WHERE {MID} GROUP BY host"),
        " GROUP BY host ORDER BY time DESC",
        &format!(" WHERE {MID} GROUP BY time(5m) fill(0)"),
        &format!(" WHERE {MID} GROUP BY time(7m, 2m), dc fill(null)"),
        &format!(" WHERE {MID} GROUP BY time(4m) ORDER BY time DESC"),
        &format!(" WHERE {TF} GROUP BY time(10m), \"host\" fill(null)"),
    ] {
        for call in ["top(f, 3)", "bottom(i, 4)", "top(i, 2)", "bottom(f, 2)"] {
            q.push(format!("SELECT {call} FROM rnd{tail}"));
        }
    }
    for sel in [
        format!("top(f, host, 3) FROM rnd WHERE {HOUR}"),
        format!("bottom(i, host, dc, 4), s, b FROM rnd WHERE {HOUR}"),
        format!("top(f, host, 2), i, dc FROM rnd WHERE {MID} GROUP BY time(10m)"),
        "top(f, 3), host, i AS x FROM rnd WHERE host =~ /h[12]/ GROUP BY dc".into(),
        "top(f, dc, 3) FROM rnd".into(),
        "bottom(md, host, 2) AS low, f FROM rnd GROUP BY dc".into(),
        format!(
            "top(\"f\", 2) AS t, \"host\" FROM \"autogen\".\"rnd\" WHERE {TF} GROUP BY time(15m)"
        ),
        "top(i, 3) FROM rnd WHERE i > 15 AND (host = 'h0' OR host = 'h4')".into(),
    ] {
        q.push(format!("SELECT {sel}"));
    }
    for sel in [
        format!("mode(md) FROM rnd WHERE {HOUR}"),
        format!("mode(md), mode(s), mode(b) FROM rnd WHERE {HOUR} GROUP BY host"),
        "mode(f) FROM rnd GROUP BY dc".into(),
        format!("mode(md) FROM rnd WHERE {HOUR} GROUP BY time(10m) fill(none)"),
        "mode(md) FROM rnd WHERE time >= '2016-01-01T00:50:00Z' AND time < '2016-01-01T01:10:00Z' GROUP BY time(5m), dc fill(-1)".into(),
        format!("mode(s) FROM rnd WHERE {HOUR} GROUP BY time(15m) ORDER BY time DESC"),
        format!("mode(md) FROM rnd WHERE {MID} GROUP BY time(2m) fill(previous) LIMIT 6 OFFSET 2"),
        format!("mode(\"md\") FROM \"rnd\" WHERE {TF} GROUP BY time(20m), \"host\" fill(null)"),
    ] {
        q.push(format!("SELECT {sel}"));
    }
    for sel in [
        "integral(f) FROM rnd".to_string(),
        format!("integral(f, 1m), integral(i) FROM rnd WHERE {MID}"),
        format!("integral(i, 10s) FROM rnd WHERE {HOUR} AND host = 'h2'"),
        format!("integral(f) FROM rnd WHERE {MID} GROUP BY time(5m)"),
        "integral(i) FROM rnd WHERE time >= '2016-01-01T00:07:30Z' AND time < '2016-01-01T00:40:00Z' GROUP BY time(4m)".into(),
        format!("integral(f, 1h) FROM rnd WHERE host = 'h3' AND {HOUR} GROUP BY time(90s) fill(0)"),
        format!("integral(md, 1m) FROM rnd WHERE {MID} GROUP BY time(6m, 1m)"),
    ] {
        q.push(format!("SELECT {sel}"));
    }
    q
}

/// Integral with GROUP BY tags: InfluxDB 1.6 splits a series' rows into several series
/// objects (a row's columns too, the others null) and lists series in random order (Go
/// map iteration); compared after merging and sorting.
fn compared_unordered() -> Vec<String> {
    vec![
        format!("SELECT integral(f) FROM rnd WHERE {HOUR} GROUP BY host"),
        format!("SELECT integral(i) FROM rnd WHERE {MID} GROUP BY time(3m), host"),
        format!("SELECT integral(f, 1m), integral(md) FROM rnd WHERE {MID} GROUP BY time(5m), dc"),
    ]
}

/// `results[0].series` merged by name and tags, each series' rows sorted by time.
fn normalized(answer: &Value) -> Value {
    let mut merged: BTreeMap<String, Value> = BTreeMap::new();
    for s in answer["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = format!("{}{}", s["name"], s["tags"]);
        let entry = merged.entry(key).or_insert_with(|| {
            let mut s = s.clone();
            s["values"] = Value::Array(Vec::new());
            s
        });
        let rows = entry["values"].as_array_mut().unwrap();
        rows.extend(s["values"].as_array().unwrap().iter().cloned());
        rows.sort_by(|a, b| a[0].as_str().cmp(&b[0].as_str()));
        // The columns of one time may come as separate rows, the others null.
        let mut joined: Vec<Value> = Vec::new();
        for row in rows.drain(..) {
            match joined.last_mut() {
                Some(last) if last[0] == row[0] => {
                    let cells = last.as_array_mut().unwrap();
                    for (cell, new) in cells.iter_mut().zip(row.as_array().unwrap()) {
                        if cell.is_null() {
                            *cell = new.clone();
                        }
                    }
                }
                _ => joined.push(row),
            }
        }
        *rows = joined;
    }
    Value::Array(merged.into_values().collect())
}

/// Statements both refuse.
const BOTH_REFUSE: [&str; 8] = [
    "SELECT top(f) FROM rnd",
    "SELECT top(f, 0) FROM rnd",
    "SELECT top(f, 5) FROM rnd LIMIT 2",
    "SELECT top(f, 2), mean(f) FROM rnd",
    "SELECT top(s, 2) FROM rnd",
    "SELECT sample(f, host, 2) FROM rnd",
    "SELECT integral(s) FROM rnd",
    "SELECT integral(f, 2) FROM rnd",
];

/// Statements Bulkhead refuses (InfluxDB 1.6 answers them with its own quirks).
const BULKHEAD_REFUSES: [(&str, &str); 6] = [
    (
        "SELECT top(f, 2) FROM rnd GROUP BY host LIMIT 4 OFFSET 1",
        "top",
    ),
    (
        "SELECT integral(f) FROM rnd WHERE time >= '2016-01-01T00:20:00Z' AND time < '2016-01-01T00:40:00Z' GROUP BY time(5m) ORDER BY time DESC",
        "integral",
    ),
    (
        "SELECT top(f, 2) FROM rnd WHERE time >= '2016-01-01T00:20:00Z' AND time < '2016-01-01T00:40:00Z' GROUP BY time(5m) LIMIT 3",
        "top",
    ),
    ("SELECT mode(md), mean(f) FROM rnd", "mode"),
    ("SELECT top(f, 2) * 2 FROM rnd", "top"),
    (
        "SELECT derivative(mode(f)) FROM rnd WHERE time >= '2016-01-01T00:20:00Z' AND time < '2016-01-01T00:40:00Z' GROUP BY time(5m)",
        "mode",
    ),
];

fn seeds() -> Vec<u64> {
    match std::env::var("INFLUXQL_SEEDS") {
        Ok(s) => s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => vec![19, 7, 2026],
    }
}

#[test]
fn selectors_like_influxdb_1_6() {
    let influx = Influx::start();
    let bulkhead = TestServer::start(&[]);
    let base = format!("http://{}", bulkhead.http_addr);
    let mut failures = Vec::new();
    let mut asked = 0;
    for seed in seeds() {
        let db = format!("sel{seed}");
        post_query(&influx.base, "", &format!("CREATE DATABASE {db}"));
        let data = random_data(seed);
        for b in [&influx.base, &base] {
            let url = format!("{b}/write?db={db}&precision=s");
            let (status, body) = curl(&["-XPOST", &url, "--data-binary", &data]);
            assert_eq!(status, 204, "write to {b}: {body}");
        }
        let mut ask = |q: &str, normalize: bool| {
            asked += 1;
            let (want_status, want) = query(&influx.base, &db, q, "");
            let (got_status, got) = query(&base, &db, q, "");
            if !want["results"][0]["series"].is_array() {
                failures.push(format!(
                    "seed {seed}: {q}\n  influxdb has no series: {want}"
                ));
                return;
            }
            let equal = if normalize {
                same(&normalized(&want), &normalized(&got))
            } else {
                same(&want, &got)
            };
            if want_status != got_status || !equal {
                failures.push(format!(
                    "seed {seed}: {q}\n  influxdb: {want}\n  bulkhead: {got}"
                ));
            }
        };
        for q in compared() {
            ask(&q, false);
        }
        for q in compared_unordered() {
            ask(&q, true);
        }
        check_samples(&influx.base, &base, &db, &mut failures);
        for q in BOTH_REFUSE {
            let (_, want) = query(&influx.base, &db, q, "");
            let (_, got) = query(&base, &db, q, "");
            assert!(want["results"][0]["error"].is_string(), "{q}: {want}");
            assert!(got["results"][0]["error"].is_string(), "{q}: {got}");
        }
        for (q, name) in BULKHEAD_REFUSES {
            let (status, got) = query(&base, &db, q, "");
            assert_eq!(status, 200, "{q}");
            let error = got["results"][0]["error"].as_str().unwrap_or_default();
            assert!(error.contains(&format!("{name}()")), "{q}: {got}");
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {asked} queries differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `sample`: the same series and row counts as InfluxDB (min(N, points) per series and
/// bucket), each row one of the series' points with its other fields.
fn check_samples(influx: &str, base: &str, db: &str, failures: &mut Vec<String>) {
    // Every point: time -> (f, host, i).
    let (_, all) = query(base, db, "SELECT f, host, i FROM rnd", "");
    let mut points: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for row in all["results"][0]["series"][0]["values"].as_array().unwrap() {
        points.insert(
            row[0].as_str().unwrap().to_string(),
            row.as_array().unwrap()[1..].to_vec(),
        );
    }
    assert_eq!(points.len(), 1800);
    for (q, n, with_aux) in [
        (
            "SELECT sample(f, 3) FROM rnd GROUP BY host".to_string(),
            3,
            false,
        ),
        (
            format!("SELECT sample(f, 2), host, i FROM rnd WHERE {MID} GROUP BY time(10m)"),
            4,
            true,
        ),
        (
            "SELECT sample(f, 50) FROM rnd WHERE host = 'h0' AND time < '2016-01-01T00:01:00Z'"
                .into(),
            50,
            false,
        ),
        (
            format!(
                "SELECT sample(i, 4) FROM rnd WHERE {MID} GROUP BY time(5m), dc ORDER BY time DESC"
            ),
            16,
            false,
        ),
    ] {
        let (_, want) = query(influx, db, &q, "");
        let (_, got) = query(base, db, &q, "");
        let shape = |a: &Value| -> Vec<(String, Vec<Value>, usize)> {
            a["results"][0]["series"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    let cols = s["columns"].as_array().unwrap().clone();
                    (
                        s["tags"].to_string(),
                        cols,
                        s["values"].as_array().unwrap().len(),
                    )
                })
                .collect()
        };
        if shape(&want) != shape(&got) {
            failures.push(format!("{q}\n  influxdb: {want}\n  bulkhead: {got}"));
            continue;
        }
        for s in got["results"][0]["series"].as_array().unwrap() {
            let rows = s["values"].as_array().unwrap();
            assert!(rows.len() <= n, "{q}: {s}");
            for row in rows {
                let point = points.get(row[0].as_str().unwrap());
                let real = point.is_some_and(|p| {
                    let value = if q.contains("sample(i") { &p[2] } else { &p[0] };
                    same(value, &row[1]) && (!with_aux || (p[1] == row[2] && p[2] == row[3]))
                });
                assert!(real, "{q}: {row:?} is not a point");
            }
        }
    }
}
