//! The subqueries of the InfluxQL comparison with InfluxDB 1.6 (`../influxql.rs`): the
//! queries both must answer alike, what Bulkhead refuses, and where InfluxDB 1.6 is
//! known to be wrong.

use serde_json::Value;

use crate::common::influx::query;

/// Over the hand-made data; `range` is the six minutes of the cpu data.
pub(crate) fn small(range: &str) -> Vec<String> {
    [
        "SELECT max(mean) FROM (SELECT mean(usage) FROM cpu GROUP BY time(1m), host) WHERE {RANGE} GROUP BY time(2m)",
        // The outer range starts inside the first inner bucket, which still counts.
        "SELECT max(mean) FROM (SELECT mean(usage) FROM cpu GROUP BY time(1m), host) WHERE time >= '2016-01-01T00:00:30Z' AND time < '2016-01-01T00:06:00Z' GROUP BY time(2m)",
        "SELECT * FROM (SELECT mean(usage) FROM cpu GROUP BY time(2m), host) WHERE {RANGE}",
        "SELECT sum(last) FROM (SELECT last(usage) FROM cpu GROUP BY host)",
        "SELECT last FROM (SELECT last(usage) FROM cpu GROUP BY host)",
        // Every row of the subquery, also those whose selected fields are null.
        "SELECT idle FROM (SELECT idle, usage FROM cpu) WHERE {RANGE}",
        "SELECT max(mean) FROM (SELECT mean(usage) FROM cpu GROUP BY host) WHERE host = 'a'",
        // Tags the subquery is not grouped by are not there: no series.
        "SELECT max(usage) FROM (SELECT usage FROM cpu) WHERE host = 'a'",
        // The outer GROUP BY tags group the subquery too.
        "SELECT max(mean) FROM (SELECT mean(usage) FROM cpu GROUP BY host) GROUP BY region",
        "SELECT usage FROM (SELECT usage FROM cpu) GROUP BY host",
        "SELECT count(mx) FROM (SELECT max(idle) AS mx, max(usage) AS mu FROM cpu GROUP BY time(1m)) WHERE {RANGE} GROUP BY time(2m)",
        "SELECT mean FROM (SELECT mean(usage) FROM cpu WHERE time >= '2016-01-01T00:01:00Z' GROUP BY host)",
        // Tags a subquery selects: columns, not fields for `f(*)` or tags for `GROUP BY *`.
        "SELECT * FROM (SELECT * FROM cpu)",
        "SELECT count(*) FROM (SELECT * FROM cpu)",
        "SELECT max(usage) FROM (SELECT * FROM cpu) GROUP BY *",
        "SELECT host FROM (SELECT usage, host FROM cpu)",
        "SELECT usage, host FROM (SELECT usage, host FROM cpu) GROUP BY host",
        // One subquery over several measurements: one derived table each.
        "SELECT max(mean) FROM (SELECT mean(free) FROM /^(mem|disk)$/ GROUP BY host)",
        "SELECT mean FROM (SELECT mean(free) FROM mem, disk GROUP BY host)",
        "SELECT sum(free) FROM (SELECT free FROM /./)",
        "SELECT max(m) FROM (SELECT max(usage) AS m FROM cpu GROUP BY time(2m, 1m)) WHERE {RANGE} GROUP BY time(4m, 1m)",
    ]
    .iter()
    .map(|q| q.replace("{RANGE}", range))
    .collect()
}

/// Over the random data: `hour` its hour, `mid` twenty minutes inside it, `tf` Grafana's
/// `$timeFilter` for the hour.
pub(crate) fn random(hour: &str, mid: &str, tf: &str) -> Vec<String> {
    vec![
        format!("SELECT max(mean) FROM (SELECT mean(f) FROM rnd GROUP BY time(1m), host) WHERE {hour} GROUP BY time(5m)"),
        format!("SELECT max(\"mean\") FROM (SELECT mean(\"f\") FROM \"rnd\" WHERE {tf} GROUP BY time(1m), \"host\") WHERE {tf} GROUP BY time(10m) fill(null)"),
        "SELECT sum(last) FROM (SELECT last(i) FROM rnd GROUP BY host)".to_string(),
        // The subquery takes the outer interval.
        format!("SELECT sum(last) FROM (SELECT last(f) FROM rnd GROUP BY host) WHERE {mid} GROUP BY time(5m)"),
        format!("SELECT derivative(max) FROM (SELECT max(i) FROM rnd WHERE {mid} GROUP BY time(2m))"),
        format!("SELECT derivative(max, 1m) FROM (SELECT max(f) FROM rnd GROUP BY time(2m), host) WHERE {mid} GROUP BY host"),
        format!("SELECT mean FROM (SELECT mean(f) FROM rnd WHERE {hour} GROUP BY time(10m), dc)"),
        format!("SELECT mean FROM (SELECT mean(f) FROM rnd GROUP BY time(5m)) WHERE {hour} AND mean > 50"),
        format!("SELECT * FROM (SELECT mean(f) AS m, count(i) FROM rnd WHERE {mid} GROUP BY time(4m), host) WHERE m < 55"),
        // Nested time ranges: the inner start, the outer end.
        "SELECT mean(m) AS avg, max(m) FROM (SELECT max(f) AS m FROM rnd WHERE time >= '2016-01-01T00:10:00Z' GROUP BY time(3m), host) WHERE time < '2016-01-01T00:50:00Z' GROUP BY time(15m), dc".to_string(),
        format!("SELECT count(f) FROM (SELECT f, i FROM rnd WHERE host = 'h2') WHERE {hour} AND i > 10 GROUP BY time(10m)"),
        "SELECT f FROM (SELECT f, i FROM rnd WHERE i > 18) WHERE time < '2016-01-01T00:10:00Z'".to_string(),
        "SELECT x FROM (SELECT f * 2 - i AS x FROM rnd WHERE host = 'h4') WHERE time < '2016-01-01T00:05:00Z' AND x > 50".to_string(),
        "SELECT max(mean) FROM (SELECT mean(f) FROM rnd GROUP BY host) GROUP BY dc".to_string(),
        format!("SELECT spread(sum) FROM (SELECT sum(i) FROM rnd WHERE {hour} GROUP BY time(10m), host) GROUP BY host"),
        format!("SELECT first(max), last(max) FROM (SELECT max(f) FROM rnd WHERE {hour} GROUP BY time(10m))"),
        format!("SELECT sum(total) FROM (SELECT count(f) AS total FROM rnd GROUP BY time(10m), host) WHERE {hour} GROUP BY time(20m)"),
        format!("SELECT mean(mean) FROM (SELECT mean(f) FROM (SELECT f FROM rnd WHERE {mid}) GROUP BY time(5m), host)"),
        format!("SELECT last FROM (SELECT last(f) FROM rnd WHERE {hour} GROUP BY host)"),
        format!("SELECT median(mx) FROM (SELECT max(i) AS mx FROM rnd WHERE {hour} GROUP BY time(6m), host) GROUP BY time(12m) fill(none)"),
        format!("SELECT mean FROM (SELECT mean(f) FROM rnd WHERE {hour} GROUP BY time(10m), host) LIMIT 4 OFFSET 1"),
        format!("SELECT mean FROM (SELECT mean(f) FROM rnd WHERE {hour} GROUP BY time(20m), host) ORDER BY time DESC"),
        format!("SELECT mean_f, mean_i FROM (SELECT mean(*) FROM rnd WHERE {hour} GROUP BY time(30m))"),
        format!("SELECT mean(v) FROM (SELECT f - i AS v FROM rnd) WHERE {hour} GROUP BY time(15m), host"),
        format!("SELECT count(mean), stddev(mean), percentile(mean, 50) FROM (SELECT mean(f) FROM rnd GROUP BY time(5m), host) WHERE {hour} GROUP BY time(30m)"),
        // Transformations inside: SQL window functions per inner series. Grafana's sum of
        // per-host rates; the inner start is read one interval early only when it is the
        // subquery's own, as InfluxDB 1.6 does.
        format!("SELECT sum(rate) FROM (SELECT non_negative_derivative(max(i), 1s) AS rate FROM rnd GROUP BY time(1m), host) WHERE {mid} GROUP BY time(1m)"),
        format!("SELECT sum(rate) FROM (SELECT non_negative_derivative(max(i), 1s) AS rate FROM rnd WHERE {hour} GROUP BY time(1m), host) WHERE {mid} GROUP BY time(1m)"),
        format!("SELECT sum(derivative) FROM (SELECT derivative(mean(f)) FROM rnd WHERE {hour} GROUP BY time(5m), host) GROUP BY host"),
        format!("SELECT derivative FROM (SELECT derivative(mean(f)) FROM rnd WHERE {mid} GROUP BY time(5m), dc)"),
        format!("SELECT max(d) FROM (SELECT difference(i) AS d FROM rnd WHERE host = 'h1') WHERE {mid} GROUP BY time(5m)"),
        format!("SELECT cumulative_sum FROM (SELECT cumulative_sum(sum(i)) FROM rnd WHERE {mid} GROUP BY time(4m))"),
        format!("SELECT mean(moving_average) FROM (SELECT moving_average(max(f), 3) FROM rnd GROUP BY time(2m), host) WHERE {mid} GROUP BY time(10m)"),
        "SELECT elapsed FROM (SELECT elapsed(f, 1s) FROM rnd WHERE host = 'h3') WHERE time < '2016-01-01T00:02:00Z'".to_string(),
        format!("SELECT non_negative_difference FROM (SELECT non_negative_difference(max(i)) FROM rnd WHERE {mid} GROUP BY time(3m))"),
        "SELECT difference FROM (SELECT difference(i) FROM rnd GROUP BY host) WHERE time < '2016-01-01T00:01:00Z'".to_string(),
        // Selectors over a subquery: the top hosts by mean (values without ties: among
        // equal values InfluxDB's pick is arbitrary).
        format!("SELECT top(mean, host, 3) FROM (SELECT mean(f) FROM rnd WHERE {hour} GROUP BY host)"),
        format!("SELECT top(mean, 2) FROM (SELECT mean(f) FROM rnd WHERE {hour} GROUP BY time(10m), host)"),
        format!("SELECT bottom(mean, host, 2) FROM (SELECT mean(f) FROM rnd GROUP BY time(10m), host) WHERE {hour} GROUP BY time(30m)"),
        format!("SELECT mode(max) FROM (SELECT max(i) FROM rnd WHERE {hour} GROUP BY time(5m), host)"),
        format!("SELECT integral(mean) FROM (SELECT mean(f) FROM rnd WHERE {hour} GROUP BY time(10m))"),
        format!("SELECT sum(v) FROM (SELECT v FROM (SELECT mean(f) AS v FROM rnd WHERE {hour} GROUP BY time(20m), host))"),
        // SLIMIT and SOFFSET count the outer series only.
        "SELECT max(mean) FROM (SELECT mean(f) FROM rnd GROUP BY host) GROUP BY host SLIMIT 2 SOFFSET 1".to_string(),
        format!("SELECT mean FROM (SELECT mean(f) FROM rnd WHERE {hour} GROUP BY time(20m), host, dc) GROUP BY host, dc SLIMIT 2 SOFFSET 2"),
        "SELECT sum(mean) FROM (SELECT mean(f) FROM rnd GROUP BY host) GROUP BY dc SLIMIT 1 SOFFSET 1".to_string(),
        "SELECT sum(mean) FROM (SELECT mean(f) FROM rnd GROUP BY host) SLIMIT 2".to_string(),
    ]
}

/// The subqueries Bulkhead refuses (naming what), and the answers where InfluxDB 1.6 is
/// wrong, over the hand-made data in both (`influx`, `bulkhead`: base URLs).
pub(crate) fn refused_and_known_differences(influx: &str, bulkhead: &str, range: &str) {
    // Subqueries Bulkhead refuses, naming what it does not plan (InfluxDB answers them).
    for (q, what) in [
        (
            "SELECT max(d) FROM (SELECT derivative(usage) AS d, elapsed(usage) FROM cpu)",
            "several transformations",
        ),
        (
            "SELECT max(top) FROM (SELECT top(usage, 2) FROM cpu)",
            "top()",
        ),
        ("SELECT usage FROM (SELECT usage FROM cpu LIMIT 2)", "LIMIT"),
        (
            "SELECT * FROM (SELECT usage, host FROM cpu) GROUP BY host",
            "GROUP BY tag \"host\" as a field",
        ),
        (
            "SELECT mean FROM (SELECT mean(usage) FROM cpu GROUP BY time(1m) fill(0))",
            "fill()",
        ),
    ] {
        let (_, got) = query(bulkhead, "test", q, "");
        let err = got["results"][0]["error"].as_str().unwrap_or_default();
        assert!(err.contains(what) && err.contains("subquery"), "{q}: {got}");
    }
    // InfluxDB 1.6 is wrong here: it finds a subquery column by its function's name, so
    // `count_1` (the second `count`) reads as null. Bulkhead answers the column.
    let q = format!(
        "SELECT count, count_1 FROM (SELECT count(ok), count(idle) FROM cpu GROUP BY time(1m)) WHERE {range}"
    );
    let (_, want) = query(influx, "test", &q, "");
    let (_, got) = query(bulkhead, "test", &q, "");
    let column = |v: &Value, i: usize| -> Vec<Value> {
        let rows = v["results"][0]["series"][0]["values"].as_array().cloned();
        rows.unwrap_or_default()
            .iter()
            .map(|r| r[i].clone())
            .collect()
    };
    assert!(column(&want, 2).iter().all(Value::is_null), "{q}: {want}");
    assert_eq!(
        column(&got, 2),
        [2, 1, 1, 1].map(Value::from).to_vec(),
        "{q}: {got}"
    );
    // InfluxDB 1.6 answers nothing for a transformation over GROUP BY time in a subquery
    // without a lower time bound (its start, the smallest time, read one interval
    // early); Bulkhead answers it.
    let q =
        "SELECT max(derivative) FROM (SELECT derivative(mean(usage)) FROM cpu GROUP BY time(1m))";
    let (_, want) = query(influx, "test", q, "");
    let (_, got) = query(bulkhead, "test", q, "");
    assert_eq!(
        want["results"][0],
        serde_json::json!({"statement_id": 0}),
        "{q}"
    );
    assert!(got["results"][0]["series"].is_array(), "{q}: {got}");
}
