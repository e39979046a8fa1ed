//! InfluxQL on `/query`, end to end: the real `bulkhead` binary and a real InfluxDB 1.6
//! (the Debian `influxdb` package's `influxd`, started here on free ports) are written
//! the same line protocol, then asked the same queries; series names, tags, columns and
//! values must agree. Also: the protocol details (errors, epoch, auth, POST forms) and
//! the python `influxdb` client. Missing `influxd` or python client fails the test
//! (`scripts/test` installs both).

mod common;
#[path = "influxql/subqueries.rs"]
mod subqueries;

use std::process::Command;

use common::influx::{Influx, curl, post_query, query, same};
use common::{TestServer, url_encode};
use serde_json::Value;

const DATA: &str = "\
cpu,host=a,region=east usage=10.5,idle=80i,ok=true,note=\"x\" 1451606400
cpu,host=a,region=east usage=12,idle=78i 1451606460
cpu,host=b,region=west usage=20,idle=60i,ok=false 1451606430
cpu,host=b,region=west usage=25.5,idle=55i 1451606520
cpu,host=a,region=east usage=11,note=\"y\" 1451606700
cpu,host=c usage=5,idle=90i 1451606580
mem,host=a free=50,total=100i 1451606400
mem,host=b free=40,total=100i 1451606460
disk,host=a,path=/ free=1.5 1451606400
";

/// The six minutes the cpu data covers.
const RANGE: &str = "time >= '2016-01-01T00:00:00Z' AND time < '2016-01-01T00:06:00Z'";

fn write(base: &str, path: &str) {
    let (status, body) = curl(&["-XPOST", &format!("{base}{path}"), "--data-binary", DATA]);
    assert_eq!(status, 204, "write to {base}: {body}");
}

/// The queries both must answer the same way.
fn compared_queries() -> Vec<String> {
    let mut q: Vec<String> = [
        // Metadata.
        "SHOW DATABASES",
        "SHOW MEASUREMENTS",
        "SHOW MEASUREMENTS WITH MEASUREMENT =~ /^(cpu|mem)$/",
        "SHOW MEASUREMENTS LIMIT 2",
        "SHOW MEASUREMENTS WHERE host = 'b'",
        "SHOW TAG KEYS",
        "SHOW TAG KEYS FROM cpu",
        "SHOW TAG VALUES WITH KEY = \"host\"",
        "SHOW TAG VALUES FROM cpu WITH KEY IN (\"host\", \"region\")",
        "SHOW TAG VALUES FROM cpu WITH KEY =~ /^reg/",
        "SHOW TAG VALUES FROM cpu WITH KEY = \"host\" WHERE region = 'east'",
        "SHOW FIELD KEYS",
        "SHOW FIELD KEYS FROM mem",
        "SHOW RETENTION POLICIES",
        "SHOW SERIES",
        "SHOW SERIES FROM cpu WHERE host = 'a'",
        // Cardinality (Bulkhead's "cardinality estimation" is exact; small data makes
        // InfluxDB 1.6's sketch exact too).
        "SHOW MEASUREMENT CARDINALITY",
        "SHOW MEASUREMENT EXACT CARDINALITY",
        "SHOW MEASUREMENT EXACT CARDINALITY WHERE host = 'b'",
        "SHOW SERIES CARDINALITY",
        "SHOW SERIES EXACT CARDINALITY",
        "SHOW SERIES EXACT CARDINALITY FROM cpu WHERE host = 'a'",
        "SHOW TAG KEY CARDINALITY",
        "SHOW TAG KEY EXACT CARDINALITY FROM cpu",
        "SHOW TAG VALUES CARDINALITY WITH KEY = \"host\"",
        "SHOW TAG VALUES EXACT CARDINALITY FROM cpu WITH KEY IN (\"host\", \"region\")",
        "SHOW FIELD KEY CARDINALITY",
        "SHOW FIELD KEY EXACT CARDINALITY FROM mem",
        // Raw selects.
        "SELECT * FROM cpu",
        "SELECT usage FROM cpu",
        "SELECT usage, host FROM cpu WHERE host = 'a'",
        "SELECT usage FROM cpu WHERE host != 'a'",
        "SELECT usage FROM cpu WHERE host =~ /^[ab]$/",
        "SELECT usage FROM cpu WHERE host !~ /a/",
        "SELECT usage FROM cpu WHERE region = ''",
        "SELECT usage, idle FROM cpu WHERE usage > 11 AND idle < 80",
        "SELECT usage FROM cpu WHERE host = 'a' OR usage > 20",
        "SELECT usage * 2 + 1, idle / 2 FROM cpu",
        "SELECT usage AS u FROM cpu WHERE time >= '2016-01-01T00:01:00Z' AND time <= '2016-01-01T00:03:00Z'",
        "SELECT usage FROM cpu WHERE time > 1451606460s",
        "SELECT usage FROM cpu WHERE time >= 1451606460000000000 AND time < 1451606580000ms",
        "SELECT usage FROM cpu WHERE time > now() - 5000d",
        "SELECT usage FROM cpu ORDER BY time DESC",
        "SELECT usage FROM cpu LIMIT 2 OFFSET 1",
        "SELECT usage FROM cpu GROUP BY host",
        "SELECT usage FROM cpu GROUP BY * LIMIT 1",
        "SELECT usage FROM cpu GROUP BY host SLIMIT 1 SOFFSET 1",
        "SELECT note FROM cpu",
        "SELECT ok FROM cpu WHERE ok = true",
        "SELECT free FROM /^(mem|disk)$/",
        "SELECT usage FROM nope",
        "SELECT host FROM cpu",
        "SELECT nofield FROM cpu",
        "SELECT /us/ FROM cpu",
        "SELECT usage FROM cpu WHERE nope = 'x'",
        "SELECT usage FROM cpu WHERE nope != 'x' LIMIT 1",
        // Grafana's $timeFilter.
        "SELECT usage FROM cpu WHERE time >= 1451606400000ms and time <= 1451606460000ms",
        "SHOW TAG KEYS WHERE host = 'c'",
        // Aggregates and selectors.
        "SELECT mean(usage) FROM cpu",
        "SELECT count(usage), sum(usage), min(usage), max(usage) FROM cpu",
        "SELECT count(idle), sum(idle), mean(idle) FROM cpu",
        "SELECT median(idle), stddev(usage), spread(idle) FROM cpu",
        "SELECT first(usage) FROM cpu",
        "SELECT last(usage) FROM cpu",
        "SELECT max(usage) FROM cpu",
        "SELECT min(idle) FROM cpu",
        "SELECT percentile(usage, 50) FROM cpu",
        "SELECT percentile(usage, 90) FROM cpu GROUP BY host",
        "SELECT max(usage), min(usage) FROM cpu",
        "SELECT first(usage) FROM cpu GROUP BY host",
        "SELECT mean(usage) FROM cpu GROUP BY host",
        "SELECT mean(usage) FROM cpu GROUP BY region",
        "SELECT mean(usage) * 2 AS double FROM cpu",
        "SELECT mean(free) FROM mem, disk",
        "SELECT count(distinct(idle)) FROM cpu",
        "SELECT distinct(usage) FROM cpu",
        "SELECT DISTINCT note FROM cpu",
        "SELECT distinct(ok) FROM cpu",
        "SELECT distinct(idle) FROM cpu GROUP BY host",
        "SELECT distinct(idle) AS d FROM cpu WHERE host = 'a'",
        "SELECT distinct(idle) FROM cpu LIMIT 2 OFFSET 1",
        "SELECT distinct(usage) * 2 FROM cpu",
        "SELECT distinct(host) FROM cpu",
        "SELECT mean(*) FROM cpu",
        "SELECT mean(usage) FROM cpu GROUP BY nope",
        "SELECT mean(usage) FROM cpu WHERE time >= '2016-01-01T00:01:00Z' AND time <= '2016-01-01T00:10:00Z'",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // GROUP BY time over the data's six minutes.
    for tail in [
        "GROUP BY time(2m)",
        "GROUP BY time(2m) fill(none)",
        "GROUP BY time(1m) fill(0)",
        "GROUP BY time(1m) fill(previous)",
        "GROUP BY time(1m) fill(linear)",
        "GROUP BY time(2m, 1m)",
        "GROUP BY time(2m), host fill(none)",
        "GROUP BY time(1m) ORDER BY time DESC",
        "GROUP BY time(1m) LIMIT 2 OFFSET 1",
    ] {
        q.push(format!("SELECT mean(usage) FROM cpu WHERE {RANGE} {tail}"));
    }
    // distinct never fills; DESC orders buckets newest first.
    for tail in [
        "GROUP BY time(2m)",
        "GROUP BY time(2m) ORDER BY time DESC",
        "GROUP BY time(2m), host LIMIT 1",
        "GROUP BY time(1m) fill(3)",
    ] {
        q.push(format!(
            "SELECT distinct(idle) FROM cpu WHERE {RANGE} {tail}"
        ));
    }
    q.push(format!(
        "SELECT count(usage) FROM cpu WHERE {RANGE} GROUP BY time(1m)"
    ));
    q.push(format!(
        "SELECT max(usage), sum(idle) FROM cpu WHERE {RANGE} GROUP BY time(3m), *"
    ));
    q.extend(subqueries::small(RANGE));
    q
}

#[test]
fn answers_like_influxdb_1_6() {
    let influx = Influx::start();
    let (status, _) = query(&influx.base, "", "CREATE DATABASE test", "");
    assert_eq!(status, 200);
    write(&influx.base, "/write?db=test&precision=s");
    let bulkhead = TestServer::start(&[]);
    let base = format!("http://{}", bulkhead.http_addr);
    write(&base, "/write?db=test&precision=s");

    let queries = compared_queries();
    assert!(queries.len() >= 60, "{} queries", queries.len());
    let mut failures = Vec::new();
    for q in &queries {
        for epoch in ["", "&epoch=s"] {
            let (want_status, want) = query(&influx.base, "test", q, epoch);
            let (got_status, got) = query(&base, "test", q, epoch);
            assert!(
                want.to_string().len() < 100_000,
                "{q}: InfluxDB's answer is suspiciously large"
            );
            if want_status != got_status || !same(&want, &got) {
                failures.push(format!("{q}{epoch}\n  influxdb: {want}\n  bulkhead: {got}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} queries differ:\n{}",
        failures.len(),
        queries.len() * 2,
        failures.join("\n")
    );

    // Both reject the same statements (the messages differ in wording for some).
    for q in [
        "SELECT usage FROM cpu GROUP BY time(1m)",
        "SELECT mean(usage), idle FROM cpu",
        "SELECT percentile(usage) FROM cpu",
        "SELECT usage FROM (SELECT usage FROM cpu ORDER BY time DESC)",
    ] {
        let (_, want) = query(&influx.base, "test", q, "");
        let (_, got) = query(&base, "test", q, "");
        assert!(want["results"][0]["error"].is_string(), "{q}: {want}");
        assert!(got["results"][0]["error"].is_string(), "{q}: {got}");
    }
    for q in ["SELEC usage FROM cpu", "SELECT FROM cpu"] {
        let (want_status, want) = query(&influx.base, "test", q, "");
        let (got_status, got) = query(&base, "test", q, "");
        assert_eq!((want_status, got_status), (400, 400), "{q}");
        assert_eq!(want, got, "{q}");
    }

    subqueries::refused_and_known_differences(&influx.base, &base, RANGE);

    // CSV (`Accept: application/csv`): the same text.

    for (q, extra) in [
        (
            "SELECT usage FROM cpu GROUP BY host LIMIT 2; SHOW TAG VALUES WITH KEY = \"host\"",
            "",
        ),
        ("SELECT mean(usage) FROM cpu GROUP BY region", "&epoch=s"),
        ("SELECT usage, note FROM cpu WHERE host = 'a'", "&epoch=ms"),
        ("SHOW DATABASES; SELECT usage FROM cpu WHERE host = 'b'", ""),
        ("SELEC", ""),
    ] {
        let url = |base: &str| format!("{base}/query?db=test&q={}{extra}", url_encode(q));
        let accept = "Accept: application/csv";
        let want = curl(&["-H", accept, &url(&influx.base)]);
        let got = curl(&["-H", accept, &url(&base)]);
        assert_eq!(want, got, "CSV of {q}");
    }

    // Management statements (POSTed, as clients send them), then the same listings.
    for q in [
        "DROP MEASUREMENT disk",
        "DROP MEASUREMENT nope",
        "CREATE DATABASE other; DROP DATABASE other",
        "DROP DATABASE nope",
    ] {
        let want = post_query(&influx.base, "test", q);
        let got = post_query(&base, "test", q);
        assert_eq!(want, got, "{q}");
    }
    for q in [
        "SHOW MEASUREMENTS",
        "SHOW DATABASES",
        "SHOW SERIES",
        "SELECT * FROM disk",
    ] {
        let (_, want) = query(&influx.base, "test", q, "");
        let (_, got) = query(&base, "test", q, "");
        assert!(
            same(&want, &got),
            "{q}\n  influxdb: {want}\n  bulkhead: {got}"
        );
    }
    let (_, gone) = query(&base, "test", "SELECT * FROM disk", "");
    assert_eq!(gone["results"][0], serde_json::json!({"statement_id": 0}));
}

/// `POST base/query` with `q` and `db` in the query string; the JSON answer.
#[test]
fn protocol_details() {
    let server = TestServer::start(&["--auth-token", "s3cret"]);
    let base = format!("http://{}", server.http_addr);
    let auth = "&u=me&p=s3cret";
    write(&base, "/write?db=test&precision=s&p=s3cret");

    // Several statements, each with its id; an unsupported one errors.
    let (status, body) = query(
        &base,
        "test",
        "SELECT count(usage) FROM cpu; SHOW USERS; SHOW MEASUREMENTS",
        auth,
    );
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["series"][0]["values"][0][1], 6);
    assert_eq!(results[1]["statement_id"], 1);
    let err = results[1]["error"].as_str().unwrap();
    assert!(err.contains("SHOW USERS is not supported"), "{err}");
    // As InfluxDB 1.x, the statements after a failed one are not executed.
    assert_eq!(results[2]["error"], "not executed");

    // epoch: ms integers; no epoch: RFC 3339.
    let q = "SELECT usage FROM cpu WHERE host = 'b'";
    let (_, ms) = query(&base, "test", q, &format!("{auth}&epoch=ms"));
    assert_eq!(
        ms["results"][0]["series"][0]["values"][0][0],
        1_451_606_430_000i64
    );
    let (_, rfc) = query(&base, "test", q, auth);
    assert_eq!(
        rfc["results"][0]["series"][0]["values"][1][0],
        "2016-01-01T00:02:00Z"
    );
    let (status, _) = query(&base, "test", q, &format!("{auth}&epoch=d"));
    assert_eq!(status, 400);

    // pretty
    let url = format!("{base}/query?db=test&pretty=true&q=SHOW%20DATABASES{auth}");
    let (_, text) = curl(&[&url]);
    assert!(text.contains("\n  "), "{text}");

    // Auth: Basic, Token; missing or wrong: 401.
    let url = format!("{base}/query?db=test&q=SHOW%20DATABASES");
    assert_eq!(curl(&["-u", "me:s3cret", &url]).0, 200);
    assert_eq!(curl(&["-H", "Authorization: Token s3cret", &url]).0, 200);
    assert_eq!(curl(&[&url]).0, 401);
    assert_eq!(curl(&[&format!("{url}&u=me&p=nope")]).0, 401);

    // POST with a form body (Grafana's POST mode), CREATE DATABASE, then listed.
    let (status, body) = curl(&[
        "-XPOST",
        "-H",
        "Authorization: Token s3cret",
        &format!("{base}/query"),
        "--data-urlencode",
        "q=CREATE DATABASE fresh; SHOW DATABASES",
    ]);
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["results"][1]["series"][0]["values"],
        serde_json::json!([["fresh"], ["test"]])
    );
    // An empty database answers with no series, an unknown one with an error.
    let (_, body) = query(&base, "fresh", "SHOW MEASUREMENTS", auth);
    assert_eq!(body["results"][0], serde_json::json!({"statement_id": 0}));
    let (_, body) = query(&base, "nope", "SELECT * FROM cpu", auth);
    assert_eq!(body["results"][0]["error"], "database not found: nope");

    // Parse errors and a missing `q`: 400 with InfluxDB's shape.
    let (status, body) = query(&base, "test", "SELECT * FROM", auth);
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("error parsing query: found EOF, expected identifier"),
        "{body}"
    );
    let (status, _) = curl(&[&format!("{base}/query?db=test{auth}")]);
    assert_eq!(status, 400);
}

#[test]
fn python_influxdb_client() {
    let server = TestServer::start(&["--auth-token", "s3cret"]);
    let script = format!(
        r#"
import json
from influxdb import InfluxDBClient
c = InfluxDBClient(host="127.0.0.1", port={port}, username="me", password="s3cret", database="py")
c.create_database("py")
assert {{"name": "py"}} in c.get_list_database(), c.get_list_database()
assert c.write_points([
    {{"measurement": "cpu", "tags": {{"host": "a"}}, "time": "2016-01-01T00:00:00Z", "fields": {{"v": 1.5}}}},
    {{"measurement": "cpu", "tags": {{"host": "b"}}, "time": "2016-01-01T00:01:00Z", "fields": {{"v": 2.5}}}},
])
print(json.dumps({{
    "measurements": c.get_list_measurements(),
    "mean": list(c.query("SELECT mean(v) FROM cpu").get_points()),
    "by_host": list(c.query("SELECT v FROM cpu GROUP BY host").get_points(tags={{"host": "b"}})),
}}, sort_keys=True))
"#,
        port = server.http_addr.port()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("running python3");
    assert!(
        out.status.success(),
        "python influxdb client failed (pip package `influxdb`, scripts/test installs it):\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        got,
        serde_json::json!({
            "measurements": [{"name": "cpu"}],
            "mean": [{"time": "1970-01-01T00:00:00Z", "mean": 2}],
            "by_host": [{"time": "2016-01-01T00:01:00Z", "v": 2.5}],
        })
    );
}

/// Random-ish line protocol (seeded, so a failure reproduces): measurement `rnd`, five
/// hosts, a `dc` tag some points lack, float/integer/string/boolean fields some points
/// lack, one point every ~2 s over an hour (times unique, so `first`/`last` and the
/// selectors' times have one answer).
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
        // Unique values: InfluxDB's selectors pick an arbitrary point among equal values.
        let mut fields = vec![format!("f={}.{:02}{k:04}", next(100), next(100))];
        if next(4) != 0 {
            fields.push(format!("i={}i", next(20)));
        }
        if next(3) == 0 {
            fields.push(format!(
                "s=\"{}\"",
                ["up", "down", "idle"][next(3) as usize]
            ));
        }
        if next(5) == 0 {
            fields.push(format!("b={}", next(2) == 0));
        }
        out.push_str(&format!("rnd,host=h{host}{dc} {} {t}\n", fields.join(",")));
    }
    out
}

/// `GROUP BY tags ORDER BY time DESC LIMIT 1`, which Bulkhead answers with the engine's
/// lastpoint path (with `LIMIT 2`, the plain path).
const LATEST: [&str; 4] = [
    "SELECT * FROM rnd GROUP BY host ORDER BY time DESC LIMIT 1",
    "SELECT f, i, s FROM rnd GROUP BY * ORDER BY time DESC LIMIT 1",
    "SELECT i FROM rnd WHERE time < '2016-01-01T00:30:00Z' GROUP BY dc ORDER BY time DESC LIMIT 1",
    "SELECT f * 2, host FROM rnd WHERE host =~ /h[12]/ GROUP BY dc ORDER BY time DESC LIMIT 1",
];

/// The queries over [`random_data`]: every aggregate and selector in each grouping,
/// conditions, fill modes, and the shapes Grafana's InfluxQL editor sends.
fn random_queries() -> Vec<String> {
    const HOUR: &str = "time >= '2016-01-01T00:00:00Z' AND time < '2016-01-01T01:00:00Z'";
    // Grafana's $timeFilter for the same hour.
    const TF: &str = "time >= 1451606400000ms and time <= 1451609999000ms";
    let mut q = Vec::new();
    let calls = [
        "count(f)",
        "sum(f)",
        "mean(f)",
        "median(f)",
        "min(f)",
        "max(f)",
        "first(f)",
        "last(f)",
        "spread(f)",
        "stddev(f)",
        "percentile(f, 95)",
        "count(i)",
        "sum(i)",
        "mean(i)",
        "median(i)",
        "spread(i)",
        "percentile(i, 25)",
        "count(distinct(i))",
        "first(s)",
        "last(b)",
        "count(s)",
    ];
    for call in calls {
        for tail in [
            "",
            " GROUP BY host",
            " GROUP BY time(10m)",
            " GROUP BY time(7m, 2m), dc",
            " GROUP BY time(5m), * fill(none)",
        ] {
            if call.starts_with("percentile(i") && !tail.contains("time(") {
                // Many points share each value of `i`; which one's time percentile()
                // reports is an accident of Go's unstable sort in InfluxDB.
                continue;
            }
            q.push(format!("SELECT {call} FROM rnd WHERE {HOUR}{tail}"));
        }
    }
    for call in [
        "min(i)",
        "max(i)",
        "first(i)",
        "last(f)",
        "percentile(f, 50)",
    ] {
        q.push(format!("SELECT {call} FROM rnd"));
        q.push(format!("SELECT {call} FROM rnd GROUP BY host"));
    }
    for tail in [
        "",
        " GROUP BY host",
        " GROUP BY time(15m)",
        " GROUP BY time(15m) ORDER BY time DESC",
        " GROUP BY time(20m), dc LIMIT 3",
    ] {
        q.push(format!("SELECT distinct(i) FROM rnd WHERE {HOUR}{tail}"));
    }
    q.push("SELECT distinct(s) FROM rnd GROUP BY host".into());
    q.push(format!(
        "SELECT mean(f), count(i) FROM rnd WHERE {HOUR} GROUP BY time(20m), host ORDER BY time DESC"
    ));
    // Transformations, over aggregates from a start inside the data (InfluxDB reads one
    // interval more for them) and over raw points.
    const MID: &str = "time >= '2016-01-01T00:20:00Z' AND time < '2016-01-01T00:40:00Z'";
    for call in [
        "derivative(mean(f))",
        "derivative(max(i), 1s)",
        "non_negative_derivative(mean(f), 1m)",
        "difference(max(i))",
        "non_negative_difference(sum(i))",
        "cumulative_sum(count(f))",
        "moving_average(mean(f), 3)",
        "elapsed(max(i), 1s)",
        "derivative(count(b))",
    ] {
        for tail in [
            "GROUP BY time(5m)",
            "GROUP BY time(2m), host fill(none)",
            "GROUP BY time(3m) fill(0)",
            "GROUP BY time(1m) fill(previous) LIMIT 5 OFFSET 2",
            "GROUP BY time(4m) ORDER BY time DESC",
        ] {
            q.push(format!("SELECT {call} FROM rnd WHERE {MID} {tail}"));
        }
    }
    for call in [
        "derivative(f)",
        "derivative(i, 1m)",
        "non_negative_derivative(f)",
        "difference(i)",
        "non_negative_difference(f)",
        "cumulative_sum(i)",
        "moving_average(f, 4)",
        "elapsed(f, 1s)",
    ] {
        q.push(format!(
            "SELECT {call} FROM rnd WHERE host = 'h2' AND time < '2016-01-01T00:10:00Z'"
        ));
        q.push(format!("SELECT {call} FROM rnd GROUP BY host LIMIT 5"));
    }
    q.push(
        "SELECT derivative(f, 1m), difference(i), non_negative_difference(i) AS nn FROM rnd \
         WHERE host = 'h1' LIMIT 4"
            .into(),
    );
    q.push("SELECT difference(i) FROM rnd WHERE host = 'h0' ORDER BY time DESC LIMIT 10".into());
    for cond in [
        "host = 'h1'",
        "host != 'h1' AND dc = 'd1'",
        "host =~ /^h[0-2]$/",
        "host !~ /h[34]/ OR i > 15",
        "dc = ''",
        "f > 50 AND f <= 75.5",
        "s = 'up'",
        "b = true",
        "(host = 'h0' OR host = 'h4') AND i < 5",
    ] {
        q.push(format!(
            "SELECT mean(f), max(i) FROM rnd WHERE {HOUR} AND ({cond}) GROUP BY time(6m)"
        ));
        q.push(format!(
            "SELECT f, i FROM rnd WHERE ({cond}) AND time < '2016-01-01T00:05:00Z'"
        ));
    }
    for fill in ["null", "none", "0", "-1.5", "previous", "linear"] {
        q.push(format!(
            "SELECT mean(i) FROM rnd WHERE host = 'h3' AND {HOUR} GROUP BY time(30s) fill({fill}) LIMIT 40"
        ));
        q.push(format!(
            "SELECT count(b), last(f) FROM rnd WHERE time >= '2016-01-01T00:50:00Z' AND time < '2016-01-01T01:10:00Z' GROUP BY time(1m), host fill({fill})"
        ));
    }
    for raw in [
        "SELECT * FROM rnd WHERE host = 'h2' LIMIT 20",
        "SELECT f, s FROM rnd WHERE time > '2016-01-01T00:30:00Z' ORDER BY time DESC LIMIT 15",
        "SELECT i FROM rnd GROUP BY host, dc LIMIT 3 OFFSET 2",
        "SELECT f FROM rnd GROUP BY * LIMIT 2 SLIMIT 2 SOFFSET 1",
        "SELECT f * 2 - i AS x, i / 3 FROM rnd WHERE host = 'h4' LIMIT 10",
    ] {
        q.push(raw.to_string());
    }
    // The latest row per series (the lastpoint fast path), next to the plain path.
    q.extend(LATEST.iter().map(|l| l.to_string()));
    q.extend(subqueries::random(HOUR, MID, TF));
    // Grafana's query editor and template variables.
    for g in [
        format!(
            "SELECT mean(\"f\") FROM \"rnd\" WHERE (\"host\" =~ /^(h1|h2)$/) AND {TF} GROUP BY time(1m), \"host\" fill(null)"
        ),
        format!(
            "SELECT mean(\"f\") FROM \"autogen\".\"rnd\" WHERE {TF} GROUP BY time(2m) fill(null)"
        ),
        format!("SELECT last(\"f\") FROM \"rnd\" WHERE {TF} GROUP BY \"host\""),
        format!(
            "SELECT non_negative_derivative(mean(\"f\"), 1s) FROM \"rnd\" WHERE {TF} GROUP BY time(1m), \"host\" fill(null)"
        ),
        format!("SELECT count(\"i\") FROM \"rnd\" WHERE {TF} GROUP BY time(10m) fill(0)"),
        format!(
            "SELECT max(\"i\") FROM \"rnd\" WHERE (\"dc\" = 'd0') AND {TF} GROUP BY time(5m) fill(previous)"
        ),
        format!("SELECT \"f\" FROM \"rnd\" WHERE (\"host\" = 'h0') AND {TF} LIMIT 30"),
        "SHOW TAG VALUES FROM \"rnd\" WITH KEY = \"host\" WHERE \"dc\" =~ /^d1$/".to_string(),
        "SHOW TAG VALUES WITH KEY = \"dc\"".to_string(),
        "SHOW MEASUREMENTS WITH MEASUREMENT =~ /rn/ LIMIT 100".to_string(),
        "SHOW TAG KEYS FROM \"rnd\"".to_string(),
        "SHOW FIELD KEYS FROM \"rnd\"".to_string(),
        "SHOW RETENTION POLICIES on \"test\"".to_string(),
        "SHOW SERIES FROM \"rnd\" WHERE \"dc\" = 'd1'".to_string(),
        "SHOW SERIES EXACT CARDINALITY WHERE \"dc\" = 'd1'".to_string(),
        "SHOW TAG VALUES EXACT CARDINALITY WITH KEY = \"host\"".to_string(),
        "SHOW FIELD KEY EXACT CARDINALITY".to_string(),
    ] {
        q.push(g);
    }
    q
}

#[test]
fn random_data_like_influxdb_1_6() {
    let data = random_data(19);
    let influx = Influx::start();
    assert_eq!(
        post_query(&influx.base, "", "CREATE DATABASE test")["results"][0]["statement_id"],
        0
    );
    let bulkhead = TestServer::start(&[]);
    let base = format!("http://{}", bulkhead.http_addr);
    for b in [&influx.base, &base] {
        let url = format!("{b}/write?db=test&precision=s");
        let (status, body) = curl(&["-XPOST", &url, "--data-binary", &data]);
        assert_eq!(status, 204, "write to {b}: {body}");
    }
    let queries = random_queries();
    assert!(queries.len() >= 150, "{} queries", queries.len());
    let mut failures = Vec::new();
    for q in &queries {
        let (want_status, want) = query(&influx.base, "test", q, "");
        let (got_status, got) = query(&base, "test", q, "");
        // A query InfluxDB answers with an empty result would compare nothing.
        if !want["results"][0]["series"].is_array() {
            failures.push(format!("{q}\n  influxdb has no series: {want}"));
        } else if want_status != got_status || !same(&want, &got) {
            failures.push(format!("{q}\n  influxdb: {want}\n  bulkhead: {got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} queries differ:\n{}",
        failures.len(),
        queries.len(),
        failures.join("\n")
    );

    // The lastpoint path (LIMIT 1) gives the first row of the plain path (LIMIT 2).
    for q in LATEST {
        let (_, fast) = query(&base, "test", q, "");
        let (_, mut plain) = query(&base, "test", &q.replace("LIMIT 1", "LIMIT 2"), "");
        let series = plain["results"][0]["series"].as_array_mut().unwrap();
        assert!(!series.is_empty(), "{q}");
        for s in series {
            s["values"].as_array_mut().unwrap().truncate(1);
        }
        assert!(
            same(&fast, &plain),
            "{q}\n  LIMIT 1: {fast}\n  LIMIT 2: {plain}"
        );
    }
}
