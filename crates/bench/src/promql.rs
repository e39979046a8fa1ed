//! `bench promql`: PromQL latency of Bulkhead against VictoriaMetrics on the same TSBS data.
//!
//! TSBS cpu-only data (`--scale` hosts, one row every 10 s over `--span`) becomes two
//! Prometheus metrics per host for one TSBS field (`--field`, default `usage_user`):
//!
//! - the gauge `cpu_usage_user`, the TSBS value itself (an integer 0..=100);
//! - the counter `cpu_usage_user_total`, the running sum of that value per host (what a
//!   CPU-seconds counter such as `node_cpu_seconds_total` looks like; integers, so exact
//!   in both systems).
//!
//! Each metric has one series per host (so `--scale 1000` gives every query 1000 input
//! series), with the ten TSBS tags as labels. Both systems get the same line protocol
//! (`cpu_usage_user,hostname=host_0,… value=42 <ns>`): Bulkhead on `/api/v2/write`
//! (database `prom`, the PromQL default), VictoriaMetrics on its InfluxDB `/write`
//! (started with `-influxSkipSingleField`, so the metric is the measurement). Bulkhead is
//! then flushed and compacted, VictoriaMetrics force-flushed and force-merged.
//!
//! Every query runs as an instant query at `T` (10 minutes before the end of the data,
//! rounded down to `--step`) and as a range query over `[T - --range, T]` every `--step`,
//! on both systems, once to warm up and then `--runs` times. Every answer is compared
//! (see [`Check`]); a difference fails the run after the report is written.
//! VictoriaMetrics runs with `-search.disableCache`, so it computes every answer rather
//! than serving repeats from its rollup result cache (Bulkhead has no result cache).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;

use super::load;
use super::peers::{Peer, PeerServer};
use super::server::ChildServer;
use super::stats::Dist;
use super::tsbs::{self, FIELDS};

#[derive(Debug, clap::Args)]
pub(crate) struct PromqlArgs {
    /// TSBS hosts: the number of series of each metric, so of each query's input.
    #[arg(long, default_value_t = 1000)]
    scale: usize,
    /// Span of generated data (one sample per series every 10 s).
    #[arg(long, default_value = "6h", value_parser = humantime::parse_duration)]
    span: Duration,
    /// The TSBS field that becomes the metrics `cpu_<field>` and `cpu_<field>_total`.
    #[arg(long, default_value = "usage_user")]
    field: String,
    /// Length of the range queries (ending at the instant queries' time).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    range: Duration,
    /// Step of the range queries (a multiple of 10 s, so every step has a sample).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    step: Duration,
    /// Recorded runs of each query (after one warm-up round).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Lines per write request.
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Directory for results.json and promql.svg.
    #[arg(long, default_value = "bench-out/promql")]
    out: PathBuf,
}

/// How two answers to a query are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Check {
    /// Same label sets, same timestamps, values within a relative 1e-6.
    Exact,
    /// `topk` over integer gauges has ties at the k-th value, and which of the tied
    /// series is returned is up to the implementation. So: at every timestamp the same
    /// multiset of values (within 1e-6), and equal values wherever both return a series.
    TopkTies,
}

/// One PromQL expression of the benchmark.
struct PromQuery {
    name: &'static str,
    expr: String,
    check: Check,
}

fn queries(gauge: &str, counter: &str) -> Vec<PromQuery> {
    vec![
        PromQuery {
            name: "rate",
            expr: format!("rate({counter}[5m])"),
            check: Check::Exact,
        },
        PromQuery {
            name: "sum-by-rate",
            expr: format!("sum by (region) (rate({counter}[5m]))"),
            check: Check::Exact,
        },
        PromQuery {
            name: "topk",
            expr: format!("topk(5, {gauge})"),
            check: Check::TopkTies,
        },
        PromQuery {
            name: "avg-by",
            expr: format!("avg by (region) ({gauge})"),
            check: Check::Exact,
        },
    ]
}

/// A Prometheus answer: series (label set) → points (ms, value).
type Answer = BTreeMap<BTreeMap<String, String>, Vec<(i64, f64)>>;

fn parse_value(v: &serde_json::Value) -> anyhow::Result<(i64, f64)> {
    let pair = v
        .as_array()
        .filter(|a| a.len() == 2)
        .context("not [ts, value]")?;
    let ts = pair[0].as_f64().context("timestamp not a number")?;
    let text = pair[1].as_str().context("value not a string")?;
    let value = match text {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        t => t.parse().with_context(|| format!("value {t:?}"))?,
    };
    Ok(((ts * 1000.0).round() as i64, value))
}

/// Parse a `/api/v1/query(_range)` answer (vector or matrix).
fn parse_answer(body: &[u8]) -> anyhow::Result<Answer> {
    let v: serde_json::Value = serde_json::from_slice(body).context("answer is not JSON")?;
    if v["status"] != "success" {
        bail!("query failed: {v}");
    }
    let mut answer = Answer::new();
    for series in v["data"]["result"].as_array().context("no data.result")? {
        let labels: BTreeMap<String, String> = series["metric"]
            .as_object()
            .context("no metric")?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let points = if let Some(values) = series["values"].as_array() {
            values
                .iter()
                .map(parse_value)
                .collect::<anyhow::Result<_>>()?
        } else {
            vec![parse_value(&series["value"])?]
        };
        if answer.insert(labels.clone(), points).is_some() {
            bail!("series {labels:?} twice in one answer");
        }
    }
    Ok(answer)
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-6 * a.abs().max(b.abs()) + 1e-12
}

fn labels_text(l: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(","))
}

/// `Ok` if the two answers agree under `check`, else the first difference.
fn compare(check: Check, ours: &Answer, theirs: &Answer) -> Result<(), String> {
    let points = |a: &Answer| a.values().map(Vec::len).sum::<usize>();
    if ours.is_empty() || theirs.is_empty() {
        return Err(format!(
            "empty answer (bulkhead {} series, victoriametrics {})",
            ours.len(),
            theirs.len()
        ));
    }
    // Wherever both return a series, its points must agree.
    for (labels, a) in ours {
        let Some(b) = theirs.get(labels) else {
            if check == Check::Exact {
                return Err(format!("{} only in bulkhead's answer", labels_text(labels)));
            }
            continue;
        };
        let b: BTreeMap<i64, f64> = b.iter().copied().collect();
        for &(t, x) in a {
            match b.get(&t) {
                Some(&y) if close(x, y) => {}
                Some(&y) => {
                    return Err(format!(
                        "{} at {t} ms: bulkhead {x}, victoriametrics {y}",
                        labels_text(labels)
                    ));
                }
                None if check == Check::Exact => {
                    return Err(format!(
                        "{} at {t} ms: only bulkhead has a point",
                        labels_text(labels)
                    ));
                }
                None => {}
            }
        }
    }
    match check {
        Check::Exact => {
            if let Some(l) = theirs.keys().find(|l| !ours.contains_key(*l)) {
                return Err(format!(
                    "{} only in victoriametrics' answer",
                    labels_text(l)
                ));
            }
            if points(ours) != points(theirs) {
                return Err(format!(
                    "{} points from bulkhead, {} from victoriametrics",
                    points(ours),
                    points(theirs)
                ));
            }
        }
        Check::TopkTies => {
            let by_time = |a: &Answer| {
                let mut m: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
                for &(t, v) in a.values().flatten() {
                    m.entry(t).or_default().push(v);
                }
                for v in m.values_mut() {
                    v.sort_by(f64::total_cmp);
                }
                m
            };
            let (a, b) = (by_time(ours), by_time(theirs));
            if a.len() != b.len() {
                return Err(format!(
                    "{} timestamps from bulkhead, {} from victoriametrics",
                    a.len(),
                    b.len()
                ));
            }
            for ((t, x), (u, y)) in a.iter().zip(&b) {
                if t != u || x.len() != y.len() || !x.iter().zip(y).all(|(p, q)| close(*p, *q)) {
                    return Err(format!(
                        "at {t} ms: bulkhead's values {x:?}, victoriametrics' at {u} ms {y:?}"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// TSBS rows as two single-field metrics per host, in bodies of up to `batch` lines.
struct Lines {
    generator: tsbs::Generator,
    field: usize,
    gauge: String,
    counter: String,
    /// Per host: its tags joined (`hostname=host_0,region=…`) and its running sum.
    hosts: Vec<(String, i64)>,
}

impl Lines {
    fn new(scale: usize, field: usize) -> Self {
        Self {
            generator: tsbs::Generator::new(scale, tsbs::DEFAULT_START_NS, 1),
            field,
            gauge: format!("cpu_{}", FIELDS[field]),
            counter: format!("cpu_{}_total", FIELDS[field]),
            hosts: Vec::with_capacity(scale),
        }
    }

    /// `intervals` more intervals as request bodies; returns (bodies, lines).
    fn chunk(&mut self, intervals: usize, batch: usize) -> (Vec<Bytes>, usize) {
        let mut lines = Vec::with_capacity(intervals * self.generator.scale() * 2);
        for _ in 0..intervals {
            let mut i = 0;
            let (field, hosts, gauge, counter) =
                (self.field, &mut self.hosts, &self.gauge, &self.counter);
            self.generator.for_each_in_interval(|row| {
                if hosts.len() == i {
                    let tags: Vec<String> =
                        row.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    hosts.push((tags.join(","), 0));
                }
                let (tags, sum) = &mut hosts[i];
                let v = row.fields[field];
                *sum += v;
                lines.push(format!("{gauge},{tags} value={v} {}", row.time));
                lines.push(format!("{counter},{tags} value={sum} {}", row.time));
                i += 1;
            });
        }
        let n = lines.len();
        let bodies = lines
            .chunks(batch.max(1))
            .map(|c| {
                let mut body = String::with_capacity(c.iter().map(|l| l.len() + 1).sum());
                for l in c {
                    body.push_str(l);
                    body.push('\n');
                }
                Bytes::from(body)
            })
            .collect();
        (bodies, n)
    }
}

/// One timed query: (milliseconds, the answer's bytes).
async fn timed(
    client: &reqwest::Client,
    url: &str,
    params: &[(&str, String)],
) -> anyhow::Result<(f64, Bytes)> {
    let t = Instant::now();
    let resp = client.get(url).query(params).send().await?;
    let status = resp.status();
    let body = resp.bytes().await?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if !status.is_success() {
        bail!(
            "{url} {params:?}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok((ms, body))
}

#[derive(Debug, Serialize)]
struct QueryResult {
    query: String,
    /// `instant` or `range`.
    mode: String,
    expr: String,
    check: Check,
    bulkhead: Dist,
    victoriametrics: Dist,
    /// Bulkhead p50 / VictoriaMetrics p50 (below 1: Bulkhead is faster).
    ratio_p50: f64,
    ratio_p99: f64,
    /// Series and points in Bulkhead's last answer.
    series: usize,
    points: usize,
    /// Whether the answers agreed in every run (else how they first differed).
    answers: String,
    mismatches: usize,
}

pub(crate) fn run(args: PromqlArgs) -> anyhow::Result<()> {
    let field = FIELDS
        .iter()
        .position(|f| *f == args.field)
        .with_context(|| format!("--field must be one of {}", FIELDS.join(", ")))?;
    if args.scale == 0 || args.runs == 0 {
        bail!("--scale and --runs must be > 0");
    }
    let step_s = args.step.as_secs();
    if step_s == 0 || !step_s.is_multiple_of(10) || args.step.subsec_nanos() != 0 {
        bail!("--step must be a whole multiple of 10s (one TSBS interval)");
    }
    let range_s = args.range.as_secs();
    if range_s == 0 || !range_s.is_multiple_of(step_s) {
        bail!("--range must be a positive multiple of --step");
    }
    let intervals = (args.span.as_nanos() / tsbs::INTERVAL_NS as u128) as usize;
    let start_s = tsbs::DEFAULT_START_NS / 1_000_000_000;
    let end_s = start_s + intervals as i64 * 10;
    // T: 10 minutes before the end, on a multiple of the step; the first range step
    // still needs 5 minutes of data before it for rate.
    let time_s = (end_s - 600) / step_s as i64 * step_s as i64;
    if time_s - range_s as i64 - 300 < start_s {
        bail!(
            "--span {} is too short for --range {}: it needs range + 15 minutes",
            humantime::format_duration(args.span),
            humantime::format_duration(args.range)
        );
    }

    let rt = super::client_runtime(&args.out)?;
    let client = reqwest::Client::new();
    let bh_dir = tempfile::tempdir()?;
    let bulkhead = ChildServer::start(bh_dir.path(), &[], &[])?;
    let vm_dir = tempfile::tempdir()?;
    let vm = PeerServer::start_with_args(
        Peer::Victoriametrics,
        vm_dir.path(),
        false,
        &["-influxSkipSingleField", "-search.disableCache"],
    )?;
    let gauge = format!("cpu_{}", FIELDS[field]);
    let counter = format!("{gauge}_total");
    eprintln!(
        "bulkhead pid {}, victoriametrics pid {}; loading {} hosts x {} intervals x 2 metrics ({gauge}, {counter})",
        bulkhead.pid(),
        vm.pid(),
        args.scale,
        intervals
    );

    // Load: the same bodies to both, chunk by chunk (an hour of data at a time).
    let samples = (intervals * args.scale * 2) as u64;
    let bh_write = format!("{}/api/v2/write?bucket=prom&precision=ns", bulkhead.base);
    let vm_write = format!("{}/write?precision=ns", vm.base);
    let (mut bh_load, mut vm_load) = (Duration::ZERO, Duration::ZERO);
    rt.block_on(async {
        let bars = indicatif::MultiProgress::new();
        let bh_bar = bars.add(load::rows_bar("bulkhead", samples));
        let vm_bar = bars.add(load::rows_bar("victoriametrics", samples));
        let mut lines = Lines::new(args.scale, field);
        let mut left = intervals;
        while left > 0 {
            let n = left.min(360);
            left -= n;
            let (bodies, _) = lines.chunk(n, args.batch);
            let t = Instant::now();
            load::post_all(&client, &bh_write, bodies.clone(), 4, &bh_bar).await?;
            bh_load += t.elapsed();
            let t = Instant::now();
            load::post_all(&client, &vm_write, bodies, 4, &vm_bar).await?;
            vm_load += t.elapsed();
        }
        bh_bar.finish_and_clear();
        vm_bar.finish_and_clear();
        eprintln!("settling: bulkhead flush + compact, victoriametrics force_flush + force_merge");
        for table in [&gauge, &counter] {
            load::admin(&client, &bulkhead.base, "flush", "prom", table).await?;
            load::admin(&client, &bulkhead.base, "compact", "prom", table).await?;
        }
        vm.settle(&client).await
    })?;
    eprintln!(
        "loaded {samples} samples: bulkhead {:.1} s, victoriametrics {:.1} s",
        bh_load.as_secs_f64(),
        vm_load.as_secs_f64()
    );

    let qs = queries(&gauge, &counter);
    // (query, mode) pairs, in report order.
    let cases: Vec<(usize, bool)> = (0..qs.len())
        .flat_map(|q| [(q, false), (q, true)])
        .collect();
    let params = |expr: &str, range: bool| -> Vec<(&'static str, String)> {
        if range {
            vec![
                ("query", expr.to_string()),
                ("start", (time_s - range_s as i64).to_string()),
                ("end", time_s.to_string()),
                ("step", step_s.to_string()),
            ]
        } else {
            vec![("query", expr.to_string()), ("time", time_s.to_string())]
        }
    };
    let url = |base: &str, range: bool| {
        format!(
            "{base}/api/v1/{}",
            if range { "query_range" } else { "query" }
        )
    };
    let mut bh_ms = vec![Vec::new(); cases.len()];
    let mut vm_ms = vec![Vec::new(); cases.len()];
    let mut shape = vec![(0usize, 0usize); cases.len()];
    let mut differ = vec![(0usize, String::new()); cases.len()];
    let bar = ProgressBar::new(((args.runs + 1) * cases.len() * 2) as u64).with_style(
        ProgressStyle::with_template("{prefix:>16} [{bar:40}] {pos}/{len} queries {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix("queries");
    for round in 0..=args.runs {
        for (c, &(q, range)) in cases.iter().enumerate() {
            let query = &qs[q];
            bar.set_message(format!(
                "{} {}",
                query.name,
                if range { "range" } else { "instant" }
            ));
            let p = params(&query.expr, range);
            // Alternate who goes first, so neither always runs right after the other.
            let (bh, vmr) = rt.block_on(async {
                if round % 2 == 0 {
                    let a = timed(&client, &url(&bulkhead.base, range), &p).await?;
                    let b = timed(&client, &url(&vm.base, range), &p).await?;
                    anyhow::Ok((a, b))
                } else {
                    let b = timed(&client, &url(&vm.base, range), &p).await?;
                    let a = timed(&client, &url(&bulkhead.base, range), &p).await?;
                    anyhow::Ok((a, b))
                }
            })?;
            bar.inc(2);
            if round > 0 {
                bh_ms[c].push(bh.0);
                vm_ms[c].push(vmr.0);
            }
            let ours = parse_answer(&bh.1).context("bulkhead")?;
            let theirs = parse_answer(&vmr.1).context("victoriametrics")?;
            shape[c] = (ours.len(), ours.values().map(Vec::len).sum());
            if let Err(e) = compare(query.check, &ours, &theirs) {
                let d = &mut differ[c];
                d.0 += 1;
                if d.1.is_empty() {
                    d.1 = e;
                }
            }
        }
    }
    bar.finish_and_clear();
    drop(bulkhead);
    drop(vm);

    let results: Vec<QueryResult> = cases
        .iter()
        .enumerate()
        .map(|(c, &(q, range))| {
            let (b, v) = (Dist::of(&bh_ms[c]), Dist::of(&vm_ms[c]));
            QueryResult {
                query: qs[q].name.into(),
                mode: if range { "range" } else { "instant" }.into(),
                expr: qs[q].expr.clone(),
                check: qs[q].check,
                bulkhead: b,
                victoriametrics: v,
                ratio_p50: b.p50_ms / v.p50_ms,
                ratio_p99: b.p99_ms / v.p99_ms,
                series: shape[c].0,
                points: shape[c].1,
                answers: match &differ[c] {
                    (0, _) => format!("same in all {} runs", args.runs + 1),
                    (n, first) => format!("DIFFER in {n} runs: {first}"),
                },
                mismatches: differ[c].0,
            }
        })
        .collect();
    print_table(&results);
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&json!({
            "benchmark": "promql",
            "scale": args.scale,
            "span_s": args.span.as_secs_f64(),
            "field": args.field,
            "metrics": [gauge, counter],
            "samples": samples,
            "load_s": {"bulkhead": bh_load.as_secs_f64(), "victoriametrics": vm_load.as_secs_f64()},
            "instant_time_s": time_s,
            "range": {"start_s": time_s - range_s as i64, "end_s": time_s, "step_s": step_s},
            "runs": args.runs,
            "victoriametrics_flags": ["-influxSkipSingleField", "-search.disableCache", "-retentionPeriod=20y"],
            "results": results,
        }))?,
    )?;
    let bars: Vec<(String, f64)> = results
        .iter()
        .flat_map(|r| {
            [
                (
                    format!("{} {} bulkhead", r.query, r.mode),
                    r.bulkhead.p50_ms,
                ),
                (
                    format!("{} {} victoriametrics", r.query, r.mode),
                    r.victoriametrics.p50_ms,
                ),
            ]
        })
        .collect();
    super::plot::bars(
        &args.out.join("promql.svg"),
        &format!(
            "PromQL latency, median of {} runs ({} series per metric)",
            args.runs, args.scale
        ),
        "ms",
        &bars,
    )?;
    eprintln!("wrote {}/results.json and promql.svg", args.out.display());
    let wrong: Vec<String> = results
        .iter()
        .filter(|r| r.mismatches > 0)
        .map(|r| format!("{} {}: {}", r.query, r.mode, r.answers))
        .collect();
    if !wrong.is_empty() {
        bail!("answers differ:\n{}", wrong.join("\n"));
    }
    Ok(())
}

fn print_table(results: &[QueryResult]) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:<8} {:>22} {:>22} {:>12} {:>7} {:>8}  answers",
        "query", "mode", "bulkhead p50/p99 ms", "vm p50/p99 ms", "ratio p50", "series", "points"
    );
    for r in results {
        let _ = writeln!(
            out,
            "{:<12} {:<8} {:>22} {:>22} {:>12.2} {:>7} {:>8}  {}",
            r.query,
            r.mode,
            format!("{:.1}/{:.1}", r.bulkhead.p50_ms, r.bulkhead.p99_ms),
            format!(
                "{:.1}/{:.1}",
                r.victoriametrics.p50_ms, r.victoriametrics.p99_ms
            ),
            r.ratio_p50,
            r.series,
            r.points,
            r.answers
        );
    }
    print!("{out}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(series: &[(&str, &[(i64, f64)])]) -> Answer {
        series
            .iter()
            .map(|(h, pts)| {
                (
                    BTreeMap::from([("hostname".to_string(), h.to_string())]),
                    pts.to_vec(),
                )
            })
            .collect()
    }

    #[test]
    fn answers_parse_and_compare() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"hostname":"a"},"value":[1451606400,"1.5"]}]}}"#;
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"hostname":"a"},"values":[[1451606400.5,"NaN"],[1451606401,"+Inf"]]}]}}"#;
        assert_eq!(
            parse_answer(vector).unwrap(),
            answer(&[("a", &[(1_451_606_400_000, 1.5)])])
        );
        let m = parse_answer(matrix).unwrap();
        let pts = &m.values().next().unwrap();
        assert!(pts[0].1.is_nan() && pts[0].0 == 1_451_606_400_500);
        assert_eq!(pts[1].1, f64::INFINITY);

        let a = answer(&[("a", &[(0, 1.0)]), ("b", &[(0, 2.0)])]);
        assert!(compare(Check::Exact, &a, &a).is_ok());
        let near = answer(&[("a", &[(0, 1.0 + 1e-9)]), ("b", &[(0, 2.0)])]);
        assert!(compare(Check::Exact, &a, &near).is_ok());
        let off = answer(&[("a", &[(0, 1.01)]), ("b", &[(0, 2.0)])]);
        assert!(compare(Check::Exact, &a, &off).is_err());
        let other = answer(&[("a", &[(0, 1.0)]), ("c", &[(0, 2.0)])]);
        assert!(compare(Check::Exact, &a, &other).is_err());
        // A tie: another series with the same value is fine for topk, not for exact.
        assert!(compare(Check::TopkTies, &a, &other).is_ok());
        let other_value = answer(&[("a", &[(0, 1.0)]), ("c", &[(0, 3.0)])]);
        assert!(compare(Check::TopkTies, &a, &other_value).is_err());
        assert!(compare(Check::Exact, &a, &Answer::new()).is_err());
    }

    #[test]
    fn lines_are_a_gauge_and_its_running_sum() {
        let mut lines = Lines::new(2, 0);
        let (bodies, n) = lines.chunk(2, 3);
        assert_eq!(n, 8);
        assert_eq!(bodies.len(), 3);
        let text: String = bodies
            .iter()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect();
        let rows: Vec<&str> = text.lines().collect();
        let value = |l: &str| -> i64 {
            l.split(" value=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        assert!(rows[0].starts_with("cpu_usage_user,hostname=host_0,region="));
        assert!(rows[1].starts_with("cpu_usage_user_total,hostname=host_0,"));
        // host_0: the counter is the sum of the gauge so far.
        assert_eq!(value(rows[1]), value(rows[0]));
        assert_eq!(value(rows[5]), value(rows[0]) + value(rows[4]));
        assert!(rows[4].ends_with(&format!(" {}", tsbs::DEFAULT_START_NS + tsbs::INTERVAL_NS)));
    }
}
