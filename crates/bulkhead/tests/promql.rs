//! PromQL against the reference: the same samples are remote-written to a real
//! Prometheus (Debian package, `--web.enable-remote-write-receiver`) and to the real
//! `bulkhead serve` (database `prom`, the API's default); then well over 80 expressions
//! are asked of both, as instant queries at three times and as two range queries, and
//! the answers must agree (label sets exactly, values to a relative 1e-6). The series,
//! labels and label-values endpoints are compared too, and `promtool query` is run
//! against Bulkhead.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bulkhead_server::promwrite::{TimeSeries, WriteRequest, encode};
use common::{Reply, TestServer, free_port, http_request, url_encode};
use serde_json::Value;

/// Sample spacing of the generated series (like a 15 s scrape).
const INTERVAL_MS: i64 = 15_000;
/// Samples per series: 45 minutes.
const SAMPLES: i64 = 181;

fn which(cmd: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(cmd))
        .find(|p| Path::new(p).is_file())
}

/// A Prometheus that only receives remote writes; killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// `extra`: more YAML for the config (e.g. `remote_read`).
    fn start(extra: &str) -> Self {
        let binary = which("prometheus").unwrap_or_else(|| {
            panic!("`prometheus` is not installed (scripts/test installs the Debian package)")
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, format!("global:\n  scrape_interval: 15s\n{extra}"))
            .expect("config");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        let mut p = Self { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", p.log());
            }
            if http_request(addr, "GET", "/-/ready", &[], b"").is_ok_and(|r| r.status == 200) {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small deterministic generator (64-bit LCG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// The test data: counters with resets, gauges (one with a gap), classic histograms.
fn dataset(t0: i64) -> WriteRequest {
    let mut rng = Lcg(42);
    let mut series = Vec::new();
    let time = |k: usize, i: i64, rng: &mut Lcg| {
        t0 + i * INTERVAL_MS + k as i64 * 700 + rng.next(300) as i64
    };
    let counters = [
        ("api", "a:1", "200", Some(60)),
        ("api", "b:1", "200", None),
        ("api", "a:1", "500", Some(120)),
        ("web", "a:1", "200", None),
        ("web", "b:1", "200", Some(90)),
        ("web", "b:1", "404", None),
    ];
    for (k, (job, instance, code, reset)) in counters.iter().enumerate() {
        let mut v = 0.0;
        let samples: Vec<(f64, i64)> = (0..SAMPLES)
            .map(|i| {
                let inc = rng.next(20) as f64 * 0.5 + k as f64;
                v = if Some(i) == *reset { inc } else { v + inc };
                (v, time(k, i, &mut rng))
            })
            .collect();
        series.push(TimeSeries::new(
            &[
                ("__name__", "http_requests_total"),
                ("job", job),
                ("instance", instance),
                ("code", code),
            ],
            &samples,
        ));
    }
    let gauges: [&[(&str, &str)]; 4] = [
        &[("job", "api"), ("instance", "a:1"), ("room", "x")],
        &[("job", "api"), ("instance", "b:1"), ("room", "y")],
        &[("job", "web"), ("instance", "a:1"), ("room", "x")],
        &[("job", "web"), ("instance", "c:1")],
    ];
    for (k, labels) in gauges.iter().enumerate() {
        let samples: Vec<(f64, i64)> = (0..SAMPLES)
            .map(|i| {
                let v = 20.0 + 5.0 * ((i as f64) / 9.0 + k as f64).sin();
                ((v * 100.0).round() / 100.0, time(k + 6, i, &mut rng))
            })
            .collect();
        let mut l = vec![("__name__", "temperature_celsius")];
        l.extend_from_slice(labels);
        series.push(TimeSeries::new(&l, &samples));
    }
    // A gauge that stops after 20 minutes and comes back for the last 5.
    let samples: Vec<(f64, i64)> = (0..SAMPLES)
        .filter(|i| *i < 80 || *i > 160)
        .map(|i| (rng.next(100) as f64 - 50.0, time(10, i, &mut rng)))
        .collect();
    series.push(TimeSeries::new(
        &[("__name__", "sporadic_gauge"), ("job", "api")],
        &samples,
    ));
    // Classic histograms, one per job (the web one resets).
    let bounds = ["0.1", "0.5", "1", "+Inf"];
    for (k, job) in ["api", "web"].iter().enumerate() {
        let mut counts = [0.0f64; 4];
        let mut sum = 0.0;
        let mut per_series: Vec<Vec<(f64, i64)>> = vec![Vec::new(); 6];
        for i in 0..SAMPLES {
            let t = time(11 + k, i, &mut rng);
            if k == 1 && i == 100 {
                counts = [0.0; 4];
                sum = 0.0;
            }
            for _ in 0..rng.next(8) {
                let bucket = rng.next(4) as usize;
                for c in counts.iter_mut().skip(bucket) {
                    *c += 1.0;
                }
                sum += [0.05, 0.3, 0.7, 2.0][bucket];
            }
            for (b, c) in counts.iter().enumerate() {
                per_series[b].push((*c, t));
            }
            per_series[4].push((sum, t));
            per_series[5].push((counts[3], t));
        }
        for (b, samples) in per_series.iter().enumerate() {
            let ts = match b {
                0..=3 => TimeSeries::new(
                    &[
                        ("__name__", "request_duration_seconds_bucket"),
                        ("job", job),
                        ("le", bounds[b]),
                    ],
                    samples,
                ),
                4 => TimeSeries::new(
                    &[("__name__", "request_duration_seconds_sum"), ("job", job)],
                    samples,
                ),
                _ => TimeSeries::new(
                    &[("__name__", "request_duration_seconds_count"), ("job", job)],
                    samples,
                ),
            };
            series.push(ts);
        }
    }
    WriteRequest { timeseries: series }
}

fn remote_write(addr: SocketAddr, path: &str, body: &[u8]) -> Reply {
    http_request(
        addr,
        "POST",
        path,
        &[
            ("Content-Encoding", "snappy"),
            ("Content-Type", "application/x-protobuf"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        body,
    )
    .expect("remote write")
}

fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let r = http_request(addr, "GET", path, &[], b"").expect("GET");
    let v = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {}", r.text()));
    (r.status, v)
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || ((a - b).abs() <= 1e-6 * a.abs().max(b.abs()))
}

fn num(v: &Value) -> f64 {
    match v.as_str() {
        Some("NaN") => f64::NAN,
        Some("+Inf") => f64::INFINITY,
        Some("-Inf") => f64::NEG_INFINITY,
        Some(s) => s.parse().unwrap_or_else(|_| panic!("not a number: {s}")),
        None => panic!("not a string value: {v}"),
    }
}

/// Series of a vector or matrix answer by label set: their `[time, value]` points.
fn by_labels(result: &Value, key: &str) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut out = BTreeMap::new();
    for s in result.as_array().expect("result array") {
        let points: Vec<(f64, f64)> = if key == "value" {
            vec![(s["value"][0].as_f64().unwrap(), num(&s["value"][1]))]
        } else {
            s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_f64().unwrap(), num(&p[1])))
                .collect()
        };
        let prev = out.insert(s["metric"].to_string(), points);
        assert!(
            prev.is_none(),
            "duplicate series {} in {result}",
            s["metric"]
        );
    }
    out
}

/// Compare two `data` objects; `Err` describes the first difference.
fn compare(expected: &Value, actual: &Value, ordered: bool) -> Result<(), String> {
    let kind = expected["resultType"].as_str().unwrap_or("");
    if actual["resultType"] != expected["resultType"] {
        return Err(format!(
            "resultType {} instead of {}",
            actual["resultType"], expected["resultType"]
        ));
    }
    let (e, a) = (&expected["result"], &actual["result"]);
    match kind {
        "scalar" | "string" => {
            let ok = e[0] == a[0]
                && (e[1] == a[1] || (kind == "scalar" && close(num(&e[1]), num(&a[1]))));
            if !ok {
                return Err(format!("{a} instead of {e}"));
            }
        }
        _ => {
            let key = if kind == "vector" { "value" } else { "values" };
            let (em, am) = (by_labels(e, key), by_labels(a, key));
            let (ek, ak): (Vec<_>, Vec<_>) = (em.keys().collect(), am.keys().collect());
            if ek != ak {
                return Err(format!("series {ak:?} instead of {ek:?}"));
            }
            for (labels, ep) in &em {
                let ap = &am[labels];
                let same = ep.len() == ap.len()
                    && ep
                        .iter()
                        .zip(ap)
                        .all(|(x, y)| x.0 == y.0 && close(x.1, y.1));
                if !same {
                    return Err(format!("{labels}: {ap:?} instead of {ep:?}"));
                }
            }
            if ordered {
                let order = |r: &Value| -> Vec<String> {
                    r.as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s["metric"].to_string())
                        .collect()
                };
                if order(e) != order(a) {
                    return Err(format!("order {:?} instead of {:?}", order(a), order(e)));
                }
            }
        }
    }
    Ok(())
}

/// The expressions compared; `{T}` is replaced by a time inside the data (for `@`).
const EXPRESSIONS: &[&str] = &[
    // Selectors, matchers, offset, @.
    "http_requests_total",
    "http_requests_total{job=\"api\"}",
    "http_requests_total{job!=\"api\"}",
    "http_requests_total{code=~\"2..\"}",
    "http_requests_total{code!~\"2..\",job=\"web\"}",
    "{__name__=~\"temperature_.*\"}",
    "{__name__=\"temperature_celsius\", room=\"\"}",
    "temperature_celsius{room!=\"\"}",
    "http_requests_total offset 5m",
    "http_requests_total @ {T}",
    "sporadic_gauge",
    "nonexistent_metric",
    // The rate family.
    "rate(http_requests_total[5m])",
    "rate(http_requests_total[1m])",
    "increase(http_requests_total[10m])",
    "delta(temperature_celsius[5m])",
    "irate(http_requests_total[5m])",
    "idelta(temperature_celsius[5m])",
    "deriv(temperature_celsius[10m])",
    "predict_linear(temperature_celsius[10m], 3600)",
    "resets(http_requests_total[30m])",
    "changes(temperature_celsius[10m])",
    "rate(http_requests_total[5m] offset 10m)",
    "rate(http_requests_total[5m] @ {T})",
    "increase(request_duration_seconds_count[15m])",
    "rate(sporadic_gauge[10m])",
    // *_over_time.
    "avg_over_time(temperature_celsius[10m])",
    "min_over_time(temperature_celsius[10m])",
    "max_over_time(temperature_celsius[10m])",
    "sum_over_time(temperature_celsius[10m])",
    "count_over_time(temperature_celsius[10m])",
    "last_over_time(temperature_celsius[5m])",
    "quantile_over_time(0.9, temperature_celsius[10m])",
    "stddev_over_time(temperature_celsius[10m])",
    "stdvar_over_time(temperature_celsius[10m])",
    "present_over_time(sporadic_gauge[5m])",
    "count_over_time(sporadic_gauge[10m])",
    "absent_over_time(sporadic_gauge[2m])",
    "absent_over_time(nonexistent_metric{job=\"x\"}[5m])",
    // Aggregations.
    "sum(http_requests_total)",
    "sum by (job) (rate(http_requests_total[5m]))",
    "sum without (instance) (rate(http_requests_total[5m]))",
    "avg by (job) (temperature_celsius)",
    "min by (job) (temperature_celsius)",
    "max(temperature_celsius)",
    "count by (code) (http_requests_total)",
    "stddev(temperature_celsius)",
    "stdvar by (job) (temperature_celsius)",
    "topk(2, rate(http_requests_total[5m]))",
    "bottomk by (job) (1, temperature_celsius)",
    "quantile(0.5, temperature_celsius)",
    "quantile by (job) (0.9, rate(http_requests_total[5m]))",
    "count_values(\"value\", round(temperature_celsius))",
    "group by (job) (http_requests_total)",
    "sum by (__name__) ({__name__=~\"http_requests_total|temperature_celsius\"})",
    "max without (room) (temperature_celsius)",
    // Binary operators.
    "http_requests_total * 2",
    "2 - http_requests_total",
    "http_requests_total / 10 > 5",
    "http_requests_total > bool 100",
    "25 < temperature_celsius",
    "temperature_celsius % 3",
    "temperature_celsius ^ 2",
    "-temperature_celsius",
    "temperature_celsius atan2 10",
    "rate(http_requests_total[5m]) / on(job, instance) group_left sum by (job, instance) (rate(http_requests_total[5m]))",
    "sum by (job, instance) (http_requests_total) + on(job, instance) temperature_celsius",
    "temperature_celsius * ignoring(room) group_left sum by (job, instance) (http_requests_total)",
    "sum by (job, instance) (http_requests_total) * on(job, instance) group_right temperature_celsius",
    "temperature_celsius * on(job, instance) group_left(code) http_requests_total{code=\"200\"}",
    "http_requests_total and http_requests_total{code=\"200\"}",
    "http_requests_total or temperature_celsius",
    "http_requests_total unless on(job) temperature_celsius{job=\"web\"}",
    "http_requests_total > http_requests_total offset 5m",
    "rate(http_requests_total[5m]) > bool on(job, instance, code) rate(http_requests_total[5m] offset 5m)",
    "1 + 2 * 3",
    "2 > bool 1",
    "(1 + 2) / 4 ^ 2",
    // Functions.
    "abs(temperature_celsius - 20)",
    "ceil(temperature_celsius)",
    "floor(temperature_celsius)",
    "round(temperature_celsius, 0.5)",
    "round(temperature_celsius)",
    "clamp(temperature_celsius, 18, 22)",
    "clamp_min(temperature_celsius, 20)",
    "clamp_max(temperature_celsius, 20)",
    "sqrt(http_requests_total)",
    "exp(temperature_celsius / 10)",
    "ln(http_requests_total + 1)",
    "log2(http_requests_total + 1)",
    "log10(http_requests_total + 1)",
    "sgn(temperature_celsius - 20)",
    "timestamp(temperature_celsius)",
    "time()",
    "vector(1)",
    "scalar(sum(temperature_celsius))",
    "scalar(temperature_celsius)",
    "sort(temperature_celsius)",
    "sort_desc(temperature_celsius)",
    "hour()",
    "minute(timestamp(temperature_celsius))",
    "month()",
    "year()",
    "day_of_month()",
    "day_of_week()",
    "days_in_month()",
    "label_replace(temperature_celsius, \"host\", \"h-$1\", \"instance\", \"([a-z]+):.*\")",
    "label_replace(temperature_celsius, \"room\", \"\", \"room\", \"x\")",
    "label_join(http_requests_total, \"joined\", \"-\", \"job\", \"code\")",
    "absent(nonexistent_metric{job=\"x\"})",
    "absent(http_requests_total)",
    "histogram_quantile(0.9, rate(request_duration_seconds_bucket[5m]))",
    "histogram_quantile(0.5, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.99, request_duration_seconds_bucket)",
    "rate(request_duration_seconds_sum[5m]) / rate(request_duration_seconds_count[5m])",
    // Subqueries.
    "max_over_time(rate(http_requests_total[1m])[10m:1m])",
    "avg_over_time(temperature_celsius[10m:])",
    "rate(http_requests_total[5m:30s])",
    "sum_over_time(sum(http_requests_total)[5m:1m] offset 2m)",
    "min_over_time((temperature_celsius > 20)[15m:2m])",
];

/// Expressions only an instant query may return (range vectors).
const INSTANT_ONLY: &[&str] = &[
    "http_requests_total[5m]",
    "temperature_celsius[2m] offset 1m",
    "rate(http_requests_total[1m])[5m:1m]",
];

fn path(kind: &str, query: &str, extra: &str) -> String {
    format!("/api/v1/{kind}?query={}{extra}", url_encode(query))
}

/// A Prometheus (remote-write receiver) and Bulkhead fed the same [`dataset`]; its `t0`.
fn setup() -> (Prometheus, TestServer, i64) {
    let prom = Prometheus::start("");
    let bulkhead = TestServer::start(&[]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t0 = (now / 60_000) * 60_000 - 50 * 60_000;
    let body = encode(&dataset(t0));
    let r = remote_write(prom.addr, "/api/v1/write", &body);
    assert!(
        r.status / 100 == 2,
        "prometheus: {} {}\n{}",
        r.status,
        r.text(),
        prom.log()
    );
    let r = remote_write(bulkhead.http_addr, "/api/v1/prom/write?db=prom", &body);
    assert_eq!(r.status, 204, "bulkhead: {}", r.text());
    (prom, bulkhead, t0)
}

fn secs(ms: i64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

#[test]
fn promql_answers_match_prometheus() {
    let (prom, bulkhead, t0) = setup();

    let at = secs(t0 + 20 * 60_000 + 500);
    let instants = [t0 + 20 * 60_000 + 123, t0 + 44 * 60_000, t0 + 49 * 60_000];
    let ranges = [
        (t0 + 5 * 60_000, t0 + 48 * 60_000, "60"),
        (t0 + 7 * 60_000 + 250, t0 + 30 * 60_000, "37.5"),
    ];
    let mut failures = Vec::new();
    let mut compared = 0;
    let mut check = |what: String, bulk: (u16, Value), reference: (u16, Value), ordered: bool| {
        compared += 1;
        if reference.0 != 200 {
            failures.push(format!(
                "{what}: Prometheus answered {} {}",
                reference.0, reference.1
            ));
            return;
        }
        if bulk.0 != 200 {
            failures.push(format!("{what}: Bulkhead answered {} {}", bulk.0, bulk.1));
            return;
        }
        if let Err(e) = compare(&reference.1["data"], &bulk.1["data"], ordered) {
            failures.push(format!("{what}: {e}"));
        }
    };
    for expr in EXPRESSIONS.iter().chain(INSTANT_ONLY) {
        let expr = expr.replace("{T}", &at);
        let ordered = expr.starts_with("sort");
        for t in instants {
            let p = path("query", &expr, &format!("&time={}", secs(t)));
            check(
                format!("{expr} at {}", secs(t)),
                get(bulkhead.http_addr, &p),
                get(prom.addr, &p),
                ordered,
            );
        }
        if INSTANT_ONLY.contains(&expr.as_str()) {
            continue;
        }
        for (start, end, step) in ranges {
            let p = path(
                "query_range",
                &expr,
                &format!("&start={}&end={}&step={step}", secs(start), secs(end)),
            );
            check(
                format!("{expr} over {}..{} step {step}", secs(start), secs(end)),
                get(bulkhead.http_addr, &p),
                get(prom.addr, &p),
                false,
            );
        }
    }
    assert!(EXPRESSIONS.len() + INSTANT_ONLY.len() >= 80);
    assert!(
        failures.is_empty(),
        "{} of {compared} answers differ from Prometheus:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Metadata endpoints: the same sets.
    for p in [
        "/api/v1/series?match[]=http_requests_total".to_string(),
        format!("/api/v1/series?match[]={}", url_encode("{job=\"api\"}")),
        format!(
            "/api/v1/series?match[]={}&match[]=sporadic_gauge",
            url_encode("temperature_celsius{room=~\"x|\"}")
        ),
        "/api/v1/labels".to_string(),
        format!(
            "/api/v1/labels?match[]={}",
            url_encode("temperature_celsius")
        ),
        "/api/v1/label/job/values".to_string(),
        "/api/v1/label/__name__/values".to_string(),
        format!(
            "/api/v1/label/instance/values?match[]={}",
            url_encode("temperature_celsius")
        ),
    ] {
        let (bs, b) = get(bulkhead.http_addr, &p);
        let (ps, r) = get(prom.addr, &p);
        assert_eq!((bs, ps), (200, 200), "{p}: {b} / {r}");
        let sorted = |v: &Value| {
            let mut items: Vec<String> = v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.to_string())
                .collect();
            items.sort();
            items
        };
        assert_eq!(sorted(&b), sorted(&r), "{p}");
        assert!(!sorted(&b).is_empty(), "{p}");
    }

    // Random selectors: what the matchers pushed down into SQL select (absent labels,
    // empty values, regexes matching "" or not) must be what Prometheus selects.
    let mut rng = Lcg(7);
    let names = ["job", "instance", "code", "room", "le", "nope"];
    let values = [
        "api", "web", "a:1", "c:1", "200", "404", "x", "", "0.5", "+Inf",
    ];
    let regexes = [
        "a.*",
        "(api|web)",
        ".+",
        "",
        "[xy]",
        "b:.*|c:1",
        ".*",
        "2..",
    ];
    let mut non_empty = 0;
    for _ in 0..40 {
        let mut matchers = vec!["__name__=~\".+\"".to_string()];
        for _ in 0..1 + rng.next(3) {
            let name = names[rng.next(names.len() as u64) as usize];
            let (op, value) = match rng.next(4) {
                0 => ("=", values[rng.next(values.len() as u64) as usize]),
                1 => ("!=", values[rng.next(values.len() as u64) as usize]),
                2 => ("=~", regexes[rng.next(regexes.len() as u64) as usize]),
                _ => ("!~", regexes[rng.next(regexes.len() as u64) as usize]),
            };
            matchers.push(format!("{name}{op}{value:?}"));
        }
        let selector = format!("{{{}}}", matchers.join(","));
        let p = format!("/api/v1/series?match[]={}", url_encode(&selector));
        let (bs, b) = get(bulkhead.http_addr, &p);
        let (ps, r) = get(prom.addr, &p);
        assert_eq!((bs, ps), (200, 200), "{selector}: {b} / {r}");
        let sorted = |v: &Value| {
            let mut items: Vec<String> = v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.to_string())
                .collect();
            items.sort();
            items
        };
        assert_eq!(sorted(&b), sorted(&r), "{selector}");
        non_empty += usize::from(!sorted(&r).is_empty());
    }
    assert!(
        non_empty >= 10,
        "only {non_empty} random selectors selected anything"
    );
}

#[test]
fn remote_read_promtool_and_errors() {
    let (reference, bulkhead, t0) = setup();
    // A second Prometheus with no data of its own reads Bulkhead through remote read.
    let reader = Prometheus::start(&format!(
        "remote_read:\n  - url: \"http://{}/api/v1/prom/read?db=prom\"\n    read_recent: true\n",
        bulkhead.http_addr
    ));
    let t = secs(t0 + 30 * 60_000);
    for expr in [
        "http_requests_total",
        "sum by (job) (rate(http_requests_total[5m]))",
        "temperature_celsius{room=\"x\"}",
        "histogram_quantile(0.9, rate(request_duration_seconds_bucket[5m]))",
    ] {
        let p = path("query", expr, &format!("&time={t}"));
        let (rs, r) = get(reader.addr, &p);
        let (es, e) = get(reference.addr, &p);
        assert_eq!((rs, es), (200, 200), "{expr}: {r} / {e}\n{}", reader.log());
        assert!(
            !e["data"]["result"].as_array().unwrap().is_empty(),
            "{expr}: {e}"
        );
        compare(&e["data"], &r["data"], false)
            .unwrap_or_else(|d| panic!("{expr} through remote read: {d}\n{}", reader.log()));
    }
    let range = path(
        "query_range",
        "rate(http_requests_total[2m])",
        &format!(
            "&start={}&end={}&step=30",
            secs(t0 + 60_000),
            secs(t0 + 40 * 60_000)
        ),
    );
    let (r, e) = (get(reader.addr, &range), get(reference.addr, &range));
    assert_eq!((r.0, e.0), (200, 200), "{r:?} / {e:?}");
    compare(&e.1["data"], &r.1["data"], false).unwrap_or_else(|d| panic!("range: {d}"));

    // promtool against Bulkhead (database `prom`, the default).
    let server = format!("http://{}", bulkhead.http_addr);
    let out = Command::new("promtool")
        .args(["query", "instant", "--time", &t, &server])
        .arg("sum by (job) (http_requests_total)")
        .output()
        .expect("run promtool");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "promtool: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("{job=\"api\"} =>") && text.contains("{job=\"web\"} =>"),
        "{text}"
    );
    let out = Command::new("promtool")
        .args([
            "query",
            "range",
            "--start",
            &secs(t0 + 60_000),
            "--end",
            &t,
            "--step",
            "5m",
        ])
        .arg(&server)
        .arg("max(temperature_celsius)")
        .output()
        .expect("run promtool");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "promtool: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("{} =>") && text.matches(" @[").count() >= 6,
        "{text}"
    );

    // Errors in Prometheus' format, with its status codes.
    for (p, status, kind) in [
        (path("query", "sum(", ""), 400, "bad_data"),
        (
            path(
                "query",
                "temperature_celsius + on() http_requests_total",
                &format!("&time={t}"),
            ),
            422,
            "execution",
        ),
        (
            path("query_range", "up", "&start=10&end=5&step=1"),
            400,
            "bad_data",
        ),
        (
            path("query_range", "up", "&start=0&end=100000&step=1"),
            400,
            "bad_data",
        ),
        (
            path("query_range", "up[5m]", "&start=0&end=10&step=1"),
            400,
            "bad_data",
        ),
        (path("query", "histogram_count(up)", ""), 400, "bad_data"),
        ("/api/v1/series".to_string(), 400, "bad_data"),
    ] {
        let (s, body) = get(bulkhead.http_addr, &p);
        assert_eq!(s, status, "{p}: {body}");
        assert_eq!(body["status"], "error", "{p}: {body}");
        assert_eq!(body["errorType"], kind, "{p}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
    let (s, body) = get(bulkhead.http_addr, "/api/v1/status/buildinfo");
    assert_eq!(s, 200, "{body}");
    assert!(body["data"]["version"].is_string(), "{body}");
    let (s, body) = get(bulkhead.http_addr, "/api/v1/query_exemplars?query=up");
    assert_eq!(
        (s, body["data"].clone()),
        (200, serde_json::json!([])),
        "{body}"
    );
}
