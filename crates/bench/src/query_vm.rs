//! VictoriaMetrics as a `bench query` peer: TSBS's MetricsQL for the query types it can
//! express, run over `/api/v1/query_range`, and the check of every answer against
//! Bulkhead's.
//!
//! The texts are those of TSBS's VictoriaMetrics query generator
//! (`cmd/tsbs_generate_queries/databases/victoriametrics/devops.go`):
//!
//! | type | MetricsQL | step |
//! |---|---|---|
//! | single-groupby-M-H-T | `max(max_over_time(SEL[1m])) by (__name__)` | 60 s |
//! | cpu-max-all-H | `max(max_over_time(SEL[1h])) by (__name__)`, all 10 metrics | 3600 s |
//! | double-groupby-M | `avg(avg_over_time(SEL[1h])) by (__name__, hostname)`, all hosts | 3600 s |
//!
//! where `SEL` is `cpu_usage_user{hostname='host_1'}` for one metric (`hostname=~'a|b'`
//! for several hosts, `{}` for no host filter) and `{__name__=~'cpu_(usage_user|…)',
//! hostname=~'a|b'}` for several metrics. high-cpu-*, lastpoint and
//! groupby-orderby-limit have no MetricsQL form ([`not_expressible`]; TSBS's generator
//! panics "not supported in PromQL" for them) and are reported as n/a.
//!
//! **Time alignment.** A range query's point at `t` aggregates the samples in
//! `(t - w, t]`, while Bulkhead's `date_bin` bucket `b` holds `[b, b + w)`. TSBS asks for
//! the points `start, start + step, …, end` of the window. Here the points are placed at
//! `b + step - 1 s` for every `date_bin` bucket `b` the SQL window `[t0, t1)` touches, so a
//! point's lookbehind `(b - 1 s, b + step - 1 s]` holds exactly the samples of
//! `[b, b + step)` (TSBS samples lie on a 10-s grid, so any shift in (0, 10 s) would do)
//! and the point stands for bucket `b`: the query text is TSBS's, the range is shifted by
//! one step less one second. single-groupby's windows are whole minutes, so every
//! bucket is whole and the two answers must be equal point for point. The hourly types'
//! windows start on a random minute: Bulkhead's first and last buckets are clipped to
//! the window, while VictoriaMetrics' lookbehind covers the whole hour. The counts are
//! still equal (one point per bucket and series); values must be equal (to 1e-9,
//! relative) in whole buckets, and in a clipped one a maximum must be at least
//! Bulkhead's (it saw a superset of the samples) and a mean is not compared.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{Context, bail};

use super::peers::{Peer, PeerServer};
use super::query::Kind;
use super::query_duckdb::parse_time;
use super::tsbs::FIELDS;

/// VictoriaMetrics' flags besides the data path, address and retention: no rollup
/// result cache, so every run computes its answer (Bulkhead has no result cache).
pub(super) const FLAGS: &[&str] = &["-search.disableCache"];

const NS: i64 = 1_000_000_000;

/// Start VictoriaMetrics ([`FLAGS`]) with its data under `dir`; returns it and the URL
/// that takes line protocol: `cpu` rows become the metrics `cpu_usage_user` … with the
/// tags as labels (no `db` label: the URL names none).
pub(super) fn start(dir: &Path) -> anyhow::Result<(PeerServer, String)> {
    let server = PeerServer::start_with_args(Peer::Victoriametrics, dir, false, FLAGS)?;
    let write = format!("{}/write?precision=ns", server.base);
    Ok((server, write))
}

/// One `/api/v1/query_range` request, and what Bulkhead's SQL answer to the same
/// question looks like (for [`check`]).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct VmQuery {
    /// The MetricsQL text (TSBS's).
    pub(super) query: String,
    /// `start`, `end` and `step` of the range query, in seconds.
    pub(super) start_s: i64,
    pub(super) end_s: i64,
    pub(super) step_s: i64,
    /// `max` or `avg`: the prefix of Bulkhead's value columns (`max_usage_user`).
    agg: &'static str,
    /// How many of [`FIELDS`] the query asks for: values per Bulkhead row.
    metrics: usize,
    /// Whether Bulkhead's rows (and VictoriaMetrics' series) are per host.
    by_host: bool,
    /// Bulkhead's bucket column (`minute` or `hour`).
    time_col: &'static str,
    /// The SQL window `[t0, t1)`, ns.
    window: (i64, i64),
}

impl VmQuery {
    /// The query and its range, for results.json.
    pub(super) fn text(&self) -> String {
        format!(
            "{} (query_range start={} end={} step={})",
            self.query, self.start_s, self.end_s, self.step_s
        )
    }
}

/// TSBS's series selector: `cpu_M{hostname=…}` for one metric, else a `__name__` regex.
fn selector(metrics: &[&str], hosts: &[String]) -> String {
    let host = match hosts {
        [] => String::new(),
        [h] => format!("hostname='{h}'"),
        many => format!("hostname=~'{}'", many.join("|")),
    };
    match metrics {
        [m] => format!("cpu_{m}{{{host}}}"),
        _ => {
            let names = format!("__name__=~'cpu_({})'", metrics.join("|"));
            if host.is_empty() {
                format!("{{{names}}}")
            } else {
                format!("{{{names}, {host}}}")
            }
        }
    }
}

/// The MetricsQL of `kind` over `hosts` and the SQL window `[t0, t1)` (ns), or `None`
/// if MetricsQL cannot express it.
pub(super) fn metricsql(kind: Kind, hosts: &[String], window: (i64, i64)) -> Option<VmQuery> {
    let (agg, metrics, hosts, step_s, by_host) = match kind {
        Kind::SingleGroupby { metrics, .. } => ("max", metrics, hosts, 60, false),
        Kind::CpuMaxAll { .. } => ("max", FIELDS.len(), hosts, 3600, false),
        Kind::DoubleGroupby { metrics } => ("avg", metrics, &[][..], 3600, true),
        Kind::HighCpu { .. } | Kind::Lastpoint | Kind::GroupbyOrderbyLimit => return None,
    };
    let (lookbehind, time_col) = if step_s == 60 {
        ("1m", "minute")
    } else {
        ("1h", "hour")
    };
    let by = if by_host {
        "__name__, hostname"
    } else {
        "__name__"
    };
    let step = step_s * NS;
    // The first and last date_bin buckets of the window; a point at b + step - 1 s
    // stands for bucket b.
    let first = window.0.div_euclid(step) * step;
    let last = (window.1 - 1).div_euclid(step) * step;
    Some(VmQuery {
        query: format!(
            "{agg}({agg}_over_time({}[{lookbehind}])) by ({by})",
            selector(&FIELDS[..metrics], hosts)
        ),
        start_s: (first + step) / NS - 1,
        end_s: (last + step) / NS - 1,
        step_s,
        agg,
        metrics,
        by_host,
        time_col,
        window,
    })
}

/// Why MetricsQL cannot ask what a TSBS type asks (`None`: it can).
pub(super) fn not_expressible(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::HighCpu { .. } => Some(
            "n/a: returns whole readings (all 10 fields) where usage_user > 90; a MetricsQL \
             answer is one metric per series, evaluated on a step grid (TSBS: not supported)",
        ),
        Kind::Lastpoint => Some(
            "n/a: the newest reading of every host however old; MetricsQL only looks back a \
             bounded window from each evaluation time (TSBS: not supported)",
        ),
        Kind::GroupbyOrderbyLimit => Some(
            "n/a: the last 5 per-minute maxima before a time; MetricsQL can sort and limit \
             series but not the points of a series (TSBS: not supported)",
        ),
        Kind::SingleGroupby { .. } | Kind::CpuMaxAll { .. } | Kind::DoubleGroupby { .. } => None,
    }
}

/// Run `q` on VictoriaMetrics at `base`; returns the latency (ms, request to the parsed
/// last byte, as for the other systems) and the answer.
pub(super) async fn query(
    client: &reqwest::Client,
    base: &str,
    q: &VmQuery,
) -> anyhow::Result<(f64, Answer)> {
    let t = Instant::now();
    let resp = client
        .get(format!("{base}/api/v1/query_range"))
        .query(&[
            ("query", q.query.clone()),
            ("start", q.start_s.to_string()),
            ("end", q.end_s.to_string()),
            ("step", q.step_s.to_string()),
        ])
        .send()
        .await?;
    let status = resp.status();
    let bytes = resp.bytes().await?;
    let body: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("MetricsQL {}: {status}: not JSON", q.text()))?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if !status.is_success() || body["status"] != "success" {
        bail!("MetricsQL {}: {status}: {body}", q.text());
    }
    Ok((ms, Answer::parse(&body).context("victoriametrics answer")?))
}

/// One series of an answer: its labels and its points (time ms, value).
type Series = (BTreeMap<String, String>, Vec<(i64, f64)>);

/// A range query's answer: per series, its labels and its points (time ms, value).
#[derive(Debug, Default)]
pub(super) struct Answer {
    series: Vec<Series>,
}

impl Answer {
    fn parse(body: &serde_json::Value) -> anyhow::Result<Self> {
        let mut series = Vec::new();
        for s in body["data"]["result"]
            .as_array()
            .context("no data.result")?
        {
            let labels = s["metric"]
                .as_object()
                .context("series without labels")?
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            let mut points = Vec::new();
            for p in s["values"].as_array().context("series without values")? {
                let t = p[0].as_f64().context("point without a time")?;
                let v = p[1].as_str().and_then(|v| v.parse::<f64>().ok());
                points.push((
                    (t * 1e3).round() as i64,
                    v.context("point without a value")?,
                ));
            }
            series.push((labels, points));
        }
        Ok(Self { series })
    }

    /// Points in the answer, summed over its series.
    pub(super) fn points(&self) -> usize {
        self.series.iter().map(|(_, p)| p.len()).sum()
    }
}

fn at(ms: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
        .to_string()
}

/// Whether VictoriaMetrics' answer to `q` is Bulkhead's SQL answer (`bulkhead`, JSON
/// rows) to the same question: one point per Bulkhead row and metric, each stamped
/// `bucket + step - 1 s`, with the same value (see the module doc for clipped buckets).
/// `Err` says how they differ.
pub(super) fn check(
    q: &VmQuery,
    bulkhead: &[serde_json::Value],
    vm: &Answer,
) -> Result<(), String> {
    let want = bulkhead.len() * q.metrics;
    if vm.points() != want {
        return Err(format!(
            "{} points, bulkhead {} rows x {} metrics = {want}",
            vm.points(),
            bulkhead.len(),
            q.metrics
        ));
    }
    // (bucket ms, " hostname" or "", field) -> value
    let mut ours = BTreeMap::new();
    for row in bulkhead {
        let t = row[q.time_col]
            .as_str()
            .and_then(parse_time)
            .ok_or_else(|| format!("bulkhead row without a {}: {row}", q.time_col))?;
        let host = match q.by_host {
            true => format!(" {}", row["hostname"].as_str().unwrap_or_default()),
            false => String::new(),
        };
        for f in &FIELDS[..q.metrics] {
            let v = row[format!("{}_{f}", q.agg)]
                .as_f64()
                .ok_or_else(|| format!("bulkhead row without {}_{f}: {row}", q.agg))?;
            ours.insert((t / 1_000_000, host.clone(), f.to_string()), v);
        }
    }
    let step_ms = q.step_s * 1000;
    let mut theirs = BTreeMap::new();
    for (labels, points) in &vm.series {
        let field = labels
            .get("__name__")
            .and_then(|n| n.strip_prefix("cpu_"))
            .ok_or_else(|| format!("victoriametrics series without a cpu_ name: {labels:?}"))?;
        let host = match q.by_host {
            true => format!(" {}", labels.get("hostname").map_or("", String::as_str)),
            false => String::new(),
        };
        for &(t, v) in points {
            let key = (t + 1000 - step_ms, host.clone(), field.to_string());
            if theirs.insert(key, v).is_some() {
                return Err(format!(
                    "two victoriametrics points at {} {labels:?}",
                    at(t)
                ));
            }
        }
    }
    let only = |a: &BTreeMap<(i64, String, String), f64>, b: &BTreeMap<_, f64>| {
        a.keys()
            .find(|k| !b.contains_key(*k))
            .map(|(t, h, f)| format!("bucket {}{h} {f}", at(*t)))
    };
    if let Some(k) = only(&ours, &theirs) {
        return Err(format!("{k} only in bulkhead's answer"));
    }
    if let Some(k) = only(&theirs, &ours) {
        return Err(format!("{k} only in victoriametrics' answer"));
    }
    for (key @ (t, h, f), &a) in &ours {
        let b = theirs[key];
        let whole = t * 1_000_000 >= q.window.0 && (t + step_ms) * 1_000_000 <= q.window.1;
        let ok = match (whole, q.agg) {
            (true, _) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
            (false, "max") => b >= a,
            (false, _) => true,
        };
        if !ok {
            let clipped = if whole { "" } else { " (clipped bucket)" };
            return Err(format!(
                "bucket {}{clipped}{h} {}_{f}: bulkhead {a}, victoriametrics {b}",
                at(*t),
                q.agg
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: i64 = 1_451_606_400 * NS; // 2016-01-01T00:00:00Z
    const MIN: i64 = 60 * NS;
    const HOUR: i64 = 3600 * NS;

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|h| h.to_string()).collect()
    }

    #[test]
    fn texts_are_tsbs_metricsql() {
        let sg = |metrics, hosts| Kind::SingleGroupby {
            metrics,
            hosts,
            hours: 1,
        };
        let w = (T0 + 17 * MIN, T0 + 17 * MIN + HOUR);
        let q = metricsql(sg(1, 1), &hosts(&["host_3"]), w).unwrap();
        assert_eq!(
            q.query,
            "max(max_over_time(cpu_usage_user{hostname='host_3'}[1m])) by (__name__)"
        );
        let q = metricsql(sg(2, 2), &hosts(&["host_1", "host_12"]), w).unwrap();
        assert_eq!(
            q.query,
            "max(max_over_time({__name__=~'cpu_(usage_user|usage_system)', hostname=~'host_1|host_12'}[1m])) by (__name__)"
        );
        let q = metricsql(Kind::CpuMaxAll { hosts: 1 }, &hosts(&["host_0"]), w).unwrap();
        assert_eq!(
            q.query,
            "max(max_over_time({__name__=~'cpu_(usage_user|usage_system|usage_idle|usage_nice|usage_iowait|usage_irq|usage_softirq|usage_steal|usage_guest|usage_guest_nice)', hostname='host_0'}[1h])) by (__name__)"
        );
        assert_eq!(q.step_s, 3600);
        // double-groupby has no host filter, even if handed hosts.
        let q = metricsql(Kind::DoubleGroupby { metrics: 1 }, &hosts(&["host_0"]), w).unwrap();
        assert_eq!(
            q.query,
            "avg(avg_over_time(cpu_usage_user{}[1h])) by (__name__, hostname)"
        );
        let q = metricsql(Kind::DoubleGroupby { metrics: 3 }, &[], w).unwrap();
        assert_eq!(
            q.query,
            "avg(avg_over_time({__name__=~'cpu_(usage_user|usage_system|usage_idle)'}[1h])) by (__name__, hostname)"
        );
        for kind in [
            Kind::HighCpu { hosts: Some(1) },
            Kind::HighCpu { hosts: None },
            Kind::Lastpoint,
            Kind::GroupbyOrderbyLimit,
        ] {
            assert_eq!(metricsql(kind, &[], w), None);
            assert!(not_expressible(kind).unwrap().starts_with("n/a: "));
        }
        assert_eq!(not_expressible(sg(1, 1)), None);
    }

    #[test]
    fn points_sit_one_step_less_a_second_after_each_bucket() {
        let s = T0 / NS;
        // A whole-minute window of 1 h: 60 points, at b + 59 s for b = 00:17 … 01:16.
        let w = (T0 + 17 * MIN, T0 + 17 * MIN + HOUR);
        let kind = Kind::SingleGroupby {
            metrics: 1,
            hosts: 1,
            hours: 1,
        };
        let q = metricsql(kind, &hosts(&["host_0"]), w).unwrap();
        assert_eq!(
            (q.start_s, q.end_s, q.step_s),
            (s + 17 * 60 + 59, s + 76 * 60 + 59, 60)
        );
        assert_eq!((q.end_s - q.start_s) / q.step_s + 1, 60);
        // 8 h from 00:17: date_bin's hours 00:00 … 08:00 (nine, two of them clipped).
        let w = (T0 + 17 * MIN, T0 + 17 * MIN + 8 * HOUR);
        let q = metricsql(Kind::CpuMaxAll { hosts: 1 }, &hosts(&["host_0"]), w).unwrap();
        assert_eq!((q.start_s, q.end_s), (s + 3599, s + 9 * 3600 - 1));
        // An hour-aligned window: exactly its hours.
        let q = metricsql(Kind::DoubleGroupby { metrics: 1 }, &[], (T0, T0 + 2 * HOUR)).unwrap();
        assert_eq!((q.start_s, q.end_s), (s + 3599, s + 7199));
    }

    /// A series to answer with: name, hostname, points (ms, value).
    type Spec<'a> = (&'a str, Option<&'a str>, &'a [(i64, f64)]);

    fn vm(series: &[Spec<'_>]) -> Answer {
        Answer::parse(&json!({"status": "success", "data": {"result": series
            .iter()
            .map(|(name, host, points)| {
                let mut metric = json!({"__name__": name});
                if let Some(h) = host {
                    metric["hostname"] = json!(h);
                }
                let values: Vec<_> = points
                    .iter()
                    .map(|(t, v)| json!([*t as f64 / 1e3, v.to_string()]))
                    .collect();
                json!({"metric": metric, "values": values})
            })
            .collect::<Vec<_>>()}}))
        .unwrap()
    }

    #[test]
    fn answers_are_checked_point_by_point() {
        let ms = T0 / 1_000_000;
        let kind = Kind::SingleGroupby {
            metrics: 2,
            hosts: 1,
            hours: 1,
        };
        let q = metricsql(kind, &hosts(&["host_0"]), (T0, T0 + 2 * MIN)).unwrap();
        let ours = [
            json!({"minute": "2016-01-01T00:00:00", "max_usage_user": 5, "max_usage_system": 7}),
            json!({"minute": "2016-01-01T00:01:00Z", "max_usage_user": 6, "max_usage_system": 8}),
        ];
        let user: &[(i64, f64)] = &[(ms + 59_000, 5.0), (ms + 119_000, 6.0)];
        let system: &[(i64, f64)] = &[(ms + 59_000, 7.0), (ms + 119_000, 8.0)];
        let good = vm(&[
            ("cpu_usage_user", None, user),
            ("cpu_usage_system", None, system),
        ]);
        assert_eq!(good.points(), 4);
        assert_eq!(check(&q, &ours, &good), Ok(()));
        // A wrong value, a missing point, a point one step off.
        let bad = vm(&[
            ("cpu_usage_user", None, user),
            (
                "cpu_usage_system",
                None,
                &[(ms + 59_000, 7.0), (ms + 119_000, 9.0)],
            ),
        ]);
        let e = check(&q, &ours, &bad).unwrap_err();
        assert!(e.contains("bulkhead 8, victoriametrics 9"), "{e}");
        let short = vm(&[
            ("cpu_usage_user", None, user),
            ("cpu_usage_system", None, &system[..1]),
        ]);
        let e = check(&q, &ours, &short).unwrap_err();
        assert!(
            e.contains("3 points, bulkhead 2 rows x 2 metrics = 4"),
            "{e}"
        );
        let shifted = vm(&[
            ("cpu_usage_user", None, user),
            (
                "cpu_usage_system",
                None,
                &[(ms + 59_000, 7.0), (ms + 179_000, 8.0)],
            ),
        ]);
        let e = check(&q, &ours, &shifted).unwrap_err();
        assert!(e.contains("only in bulkhead's answer"), "{e}");
    }

    #[test]
    fn clipped_hours_compare_max_as_at_least_and_skip_the_mean() {
        let ms = T0 / 1_000_000;
        // 00:30 … 01:30: hour 00:00 and 01:00 are both clipped by the window.
        let w = (T0 + 30 * MIN, T0 + 90 * MIN);
        let q = metricsql(Kind::CpuMaxAll { hosts: 1 }, &hosts(&["host_0"]), w).unwrap();
        assert_eq!(
            (q.start_s * 1000, q.end_s * 1000),
            (ms + 3_599_000, ms + 7_199_000)
        );
        let row = |hour: &str, v: f64| {
            let mut r = json!({ "hour": hour });
            for f in FIELDS {
                r[format!("max_{f}")] = json!(v);
            }
            r
        };
        let ours = [
            row("2016-01-01T00:00:00", 50.0),
            row("2016-01-01T01:00:00", 60.0),
        ];
        let answer = |first: f64| {
            let points = [(ms + 3_599_000, first), (ms + 7_199_000, 60.0)];
            let names: Vec<String> = FIELDS.iter().map(|f| format!("cpu_{f}")).collect();
            let series: Vec<Spec<'_>> = names
                .iter()
                .map(|n| (n.as_str(), None, &points[..]))
                .collect();
            vm(&series)
        };
        // The whole hour's maximum may exceed the clipped bucket's, never fall below it.
        assert_eq!(check(&q, &ours, &answer(70.0)), Ok(()));
        let e = check(&q, &ours, &answer(40.0)).unwrap_err();
        assert!(e.contains("(clipped bucket)"), "{e}");
        // A mean over a clipped hour is not compared; over a whole hour it is.
        let avg = |window| metricsql(Kind::DoubleGroupby { metrics: 1 }, &[], window).unwrap();
        let ours =
            [json!({"hour": "2016-01-01T00:00:00", "hostname": "host_0", "avg_usage_user": 50.25})];
        let theirs = vm(&[("cpu_usage_user", Some("host_0"), &[(ms + 3_599_000, 49.5)])]);
        assert_eq!(
            check(&avg((T0 + 30 * MIN, T0 + HOUR)), &ours, &theirs),
            Ok(())
        );
        assert!(check(&avg((T0, T0 + HOUR)), &ours, &theirs).is_err());
        let same = vm(&[("cpu_usage_user", Some("host_0"), &[(ms + 3_599_000, 50.25)])]);
        assert_eq!(check(&avg((T0, T0 + HOUR)), &ours, &same), Ok(()));
    }
}
