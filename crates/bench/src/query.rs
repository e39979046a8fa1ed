//! `bench query`: the TSBS cpu-only query types, median and p99 latency over N runs.
//!
//! TSBS cpu-only data is loaded into Bulkhead (then flushed and compacted: the steady
//! state); with `--peers influxdb`, into InfluxDB 1.x (then fully compacted); with
//! `--peers duckdb`, Bulkhead's compacted SSTs into DuckDB (`query_duckdb.rs`); with
//! `--peers victoriametrics`, into VictoriaMetrics (then force-merged; `query_vm.rs`).
//! Each round runs every query type once, on every system, with the same random hosts
//! and time window (seeded), the systems taking turns at going first: SQL over HTTP for Bulkhead, the equivalent InfluxQL over
//! HTTP for InfluxDB, the same SQL for DuckDB, whose rows are checked equal to
//! Bulkhead's in every run, and TSBS's MetricsQL for VictoriaMetrics where it has one
//! (else n/a), whose points are checked against Bulkhead's rows in every run. A first
//! round warms caches and is not recorded. With `--full-scan`, a last probe streams
//! `select * from cpu` and reports the server's peak RSS during it (`query_scan.rs`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::load::{self, Chunks};
use super::peers::{Peer, PeerServer};
use super::query_duckdb::{self, DuckDb};
use super::query_report::{QueryResult, SystemResult, print_table};
use super::query_scan;
use super::query_vm::{self, VmQuery};
use super::server::ChildServer;
use super::stats::Dist;
use super::tsbs::{self, FIELDS, SplitMix64};

/// The TSBS cpu-only ("devops") query types, by their TSBS names.
pub(crate) const QUERY_TYPES: [&str; 15] = [
    "single-groupby-1-1-1",
    "single-groupby-1-1-12",
    "single-groupby-1-8-1",
    "single-groupby-5-1-1",
    "single-groupby-5-1-12",
    "single-groupby-5-8-1",
    "cpu-max-all-1",
    "cpu-max-all-8",
    "double-groupby-1",
    "double-groupby-5",
    "double-groupby-all",
    "high-cpu-1",
    "high-cpu-all",
    "lastpoint",
    "groupby-orderby-limit",
];

#[derive(Debug, clap::Args)]
pub(crate) struct QueryArgs {
    /// TSBS hosts.
    #[arg(long, default_value_t = 1000)]
    scale: usize,
    /// Span of generated data (one row per host every 10 s).
    #[arg(long, default_value = "1day", value_parser = humantime::parse_duration)]
    span: Duration,
    /// Recorded runs of each query type (after one warm-up round).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Query types to run, comma-separated (default: all fifteen TSBS cpu-only types).
    #[arg(long, value_delimiter = ',')]
    queries: Vec<String>,
    /// Seed of the random hosts and time windows.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Peers: `influxdb` (queried with InfluxQL), `duckdb` (SQL, over Bulkhead's SSTs;
    /// needs `pip install duckdb`), `victoriametrics` (TSBS's MetricsQL; 11 of the 15 types).
    #[arg(long, value_delimiter = ',')]
    peers: Vec<QueryPeer>,
    /// Also ask Bulkhead every question in InfluxQL (on `/query`), next to its SQL.
    #[arg(long)]
    influxql: bool,
    /// Query a running Bulkhead at this base URL (e.g. `http://127.0.0.1:5440`) instead
    /// of starting one. The data is loaded into its database `bench` (table `cpu`), which
    /// should not exist yet, then flushed and compacted.
    #[arg(long)]
    target: Option<String>,
    /// Directory for results.json and query.svg.
    #[arg(long, default_value = "bench-out/query")]
    out: PathBuf,
    /// Object-store cache mode: the same data on local disk and on a store with this
    /// injected latency per call (e.g. `20ms..80ms`, S3-like); reports local-disk,
    /// cold-cache and warm-cache medians per query type (see query_cache.rs).
    #[arg(long)]
    object_store_latency: Option<String>,
    /// Cold runs per query type in the cache mode (each one after a restart with an
    /// empty cache).
    #[arg(long, default_value_t = 3)]
    cold_runs: usize,
    /// After the queries, stream `select * from cpu` to the end and report the
    /// server's peak RSS during it (needs the server the bench starts: not with
    /// `--target`).
    #[arg(long)]
    full_scan: bool,
}

/// A system `bench query` compares Bulkhead with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum QueryPeer {
    /// InfluxDB 1.x, queried with InfluxQL.
    Influxdb,
    /// DuckDB over Bulkhead's compacted SSTs, queried with the same SQL.
    Duckdb,
    /// VictoriaMetrics, queried with TSBS's MetricsQL (where it can express the type).
    Victoriametrics,
}

impl QueryPeer {
    fn name(self) -> &'static str {
        match self {
            QueryPeer::Influxdb => "influxdb",
            QueryPeer::Duckdb => "duckdb",
            QueryPeer::Victoriametrics => "victoriametrics",
        }
    }
}

/// A peer started for the queries.
enum Running {
    Influx {
        server: PeerServer,
        _dir: tempfile::TempDir,
    },
    Duck(DuckDb),
    Vm {
        server: PeerServer,
        _dir: tempfile::TempDir,
    },
}

/// A peer's answer to one query, kept until Bulkhead's is there to check it against.
enum PeerOutput {
    Duck(Vec<serde_json::Value>),
    Vm(query_vm::Answer),
}

/// What a TSBS query type asks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Kind {
    /// max of `metrics` metrics per minute, for `hosts` hosts over `hours`.
    SingleGroupby {
        metrics: usize,
        hosts: usize,
        hours: u64,
    },
    /// max of all 10 metrics per hour, for `hosts` hosts over 8 hours.
    CpuMaxAll { hosts: usize },
    /// mean of `metrics` metrics per host per hour over 12 hours.
    DoubleGroupby { metrics: usize },
    /// rows with usage_user > 90 over 12 hours, one host or all (`None`).
    HighCpu { hosts: Option<usize> },
    /// the latest row of every host.
    Lastpoint,
    /// the last 5 per-minute maxima before a random point in time.
    GroupbyOrderbyLimit,
}

pub(super) fn parse_kind(name: &str) -> anyhow::Result<Kind> {
    let nums =
        |rest: &str| -> Option<Vec<u64>> { rest.split('-').map(|p| p.parse().ok()).collect() };
    let kind = if let Some(rest) = name.strip_prefix("single-groupby-") {
        match nums(rest).as_deref() {
            Some(&[m, h, t]) if (1..=10).contains(&m) && h > 0 && t > 0 => Kind::SingleGroupby {
                metrics: m as usize,
                hosts: h as usize,
                hours: t,
            },
            _ => bail!("bad query type {name:?}: expected single-groupby-METRICS-HOSTS-HOURS"),
        }
    } else if let Some(rest) = name.strip_prefix("cpu-max-all-") {
        match rest.parse::<usize>() {
            Ok(h) if h > 0 => Kind::CpuMaxAll { hosts: h },
            _ => bail!("bad query type {name:?}: expected cpu-max-all-HOSTS"),
        }
    } else if let Some(rest) = name.strip_prefix("double-groupby-") {
        match rest {
            "all" => Kind::DoubleGroupby { metrics: 10 },
            n => match n.parse::<usize>() {
                Ok(m) if (1..=10).contains(&m) => Kind::DoubleGroupby { metrics: m },
                _ => bail!("bad query type {name:?}: expected double-groupby-METRICS|all"),
            },
        }
    } else if let Some(rest) = name.strip_prefix("high-cpu-") {
        match rest {
            "all" => Kind::HighCpu { hosts: None },
            n => match n.parse::<usize>() {
                Ok(h) if h > 0 => Kind::HighCpu { hosts: Some(h) },
                _ => bail!("bad query type {name:?}: expected high-cpu-HOSTS|all"),
            },
        }
    } else if name == "lastpoint" {
        Kind::Lastpoint
    } else if name == "groupby-orderby-limit" {
        Kind::GroupbyOrderbyLimit
    } else {
        bail!(
            "unknown query type {name:?}; known: {}",
            QUERY_TYPES.join(", ")
        )
    };
    Ok(kind)
}

/// One query instance: the same question in SQL, InfluxQL and (if it can) MetricsQL.
pub(super) struct Instance {
    pub(super) sql: String,
    influxql: String,
    metricsql: Option<VmQuery>,
}

fn ts(ns: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64))
        .to_string()
}

/// Random distinct hosts (all of them if `n >= scale`).
fn hosts(rng: &mut SplitMix64, scale: usize, n: usize) -> Vec<String> {
    let mut set = BTreeSet::new();
    while set.len() < n.min(scale) {
        set.insert(rng.below(scale as u64));
    }
    set.into_iter().map(|h| format!("host_{h}")).collect()
}

/// A random window of `hours` (at most the span), starting on a whole minute.
fn window(rng: &mut SplitMix64, span_ns: i64, hours: u64) -> (i64, i64) {
    let len = (hours as i64 * 3_600_000_000_000).min(span_ns);
    let minute = 60_000_000_000;
    let slots = ((span_ns - len) / minute).max(0) as u64 + 1;
    let start = tsbs::DEFAULT_START_NS + rng.below(slots) as i64 * minute;
    (start, start + len)
}

pub(super) fn instance(kind: Kind, rng: &mut SplitMix64, scale: usize, span_ns: i64) -> Instance {
    let sql_hosts = |h: &[String]| {
        let list: Vec<String> = h.iter().map(|h| format!("'{h}'")).collect();
        format!("hostname in ({})", list.join(", "))
    };
    let influx_hosts = |h: &[String]| {
        let list: Vec<String> = h.iter().map(|h| format!("hostname = '{h}'")).collect();
        format!("({})", list.join(" OR "))
    };
    let aggs = |f: &str, m: usize, influx: bool| -> String {
        FIELDS[..m]
            .iter()
            .map(|c| {
                if influx {
                    format!("{f}({c})")
                } else {
                    format!("{f}({c}) as {f}_{c}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let range = |(t0, t1): (i64, i64), influx: bool| {
        if influx {
            format!("time >= '{}' AND time < '{}'", ts(t0), ts(t1))
        } else {
            format!("time >= '{}' and time < '{}'", ts(t0), ts(t1))
        }
    };
    match kind {
        Kind::SingleGroupby {
            metrics,
            hosts: n,
            hours,
        } => {
            let h = hosts(rng, scale, n);
            let w = window(rng, span_ns, hours);
            Instance {
                metricsql: query_vm::metricsql(kind, &h, w),
                sql: format!(
                    "select date_bin(interval '1 minute', time) as minute, {} from cpu where {} and {} group by minute order by minute",
                    aggs("max", metrics, false),
                    sql_hosts(&h),
                    range(w, false)
                ),
                influxql: format!(
                    "SELECT {} FROM cpu WHERE {} AND {} GROUP BY time(1m)",
                    aggs("max", metrics, true),
                    influx_hosts(&h),
                    range(w, true)
                ),
            }
        }
        Kind::CpuMaxAll { hosts: n } => {
            let h = hosts(rng, scale, n);
            let w = window(rng, span_ns, 8);
            Instance {
                metricsql: query_vm::metricsql(kind, &h, w),
                sql: format!(
                    "select date_bin(interval '1 hour', time) as hour, {} from cpu where {} and {} group by hour order by hour",
                    aggs("max", 10, false),
                    sql_hosts(&h),
                    range(w, false)
                ),
                influxql: format!(
                    "SELECT {} FROM cpu WHERE {} AND {} GROUP BY time(1h)",
                    aggs("max", 10, true),
                    influx_hosts(&h),
                    range(w, true)
                ),
            }
        }
        Kind::DoubleGroupby { metrics } => {
            let w = window(rng, span_ns, 12);
            Instance {
                metricsql: query_vm::metricsql(kind, &[], w),
                sql: format!(
                    "select date_bin(interval '1 hour', time) as hour, hostname, {} from cpu where {} group by hour, hostname order by hour, hostname",
                    aggs("avg", metrics, false),
                    range(w, false)
                ),
                influxql: format!(
                    "SELECT {} FROM cpu WHERE {} GROUP BY time(1h), hostname",
                    aggs("mean", metrics, true),
                    range(w, true)
                ),
            }
        }
        Kind::HighCpu { hosts: n } => {
            let h = n.map(|n| hosts(rng, scale, n));
            let w = window(rng, span_ns, 12);
            let (sql_h, influx_h) = match &h {
                Some(h) => (
                    format!(" and {}", sql_hosts(h)),
                    format!(" AND {}", influx_hosts(h)),
                ),
                None => (String::new(), String::new()),
            };
            Instance {
                metricsql: None,
                sql: format!(
                    "select * from cpu where usage_user > 90 and {}{sql_h}",
                    range(w, false)
                ),
                influxql: format!(
                    "SELECT * FROM cpu WHERE usage_user > 90 AND {}{influx_h}",
                    range(w, true)
                ),
            }
        }
        Kind::Lastpoint => Instance {
            metricsql: None,
            sql: format!(
                "select hostname, max(time) as time, {} from cpu group by hostname",
                FIELDS
                    .iter()
                    .map(|f| format!("last_value({f} order by time) as {f}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            influxql: "SELECT * FROM cpu GROUP BY hostname ORDER BY time DESC LIMIT 1".into(),
        },
        Kind::GroupbyOrderbyLimit => {
            let (_, end) = window(rng, span_ns, 0);
            // At least 5 minutes of data before the end point, so there are 5 buckets.
            let end = end.max(tsbs::DEFAULT_START_NS + 5 * 60_000_000_000);
            Instance {
                metricsql: None,
                sql: format!(
                    "select date_bin(interval '1 minute', time) as minute, max(usage_user) from cpu where time < '{}' group by minute order by minute desc limit 5",
                    ts(end)
                ),
                // InfluxQL needs a lower bound for GROUP BY time(); the data starts there.
                influxql: format!(
                    "SELECT max(usage_user) FROM cpu WHERE time >= '{}' AND time < '{}' GROUP BY time(1m) ORDER BY time DESC LIMIT 5",
                    ts(tsbs::DEFAULT_START_NS),
                    ts(end)
                ),
            }
        }
    }
}

pub(crate) fn run(args: QueryArgs) -> anyhow::Result<()> {
    let names: Vec<String> = if args.queries.is_empty() {
        QUERY_TYPES.iter().map(|s| s.to_string()).collect()
    } else {
        args.queries.clone()
    };
    let kinds: Vec<Kind> = names
        .iter()
        .map(|n| parse_kind(n))
        .collect::<anyhow::Result<_>>()?;
    if args.peers.contains(&QueryPeer::Duckdb) && args.target.is_some() {
        bail!("--peers duckdb reads the SSTs of the Bulkhead it starts: not with --target");
    }
    if args.full_scan && args.target.is_some() {
        bail!("--full-scan measures the memory of the server the bench starts: not with --target");
    }
    if args.scale == 0 || args.runs == 0 {
        bail!("--scale and --runs must be > 0");
    }
    let span_ns = i64::try_from(args.span.as_nanos()).context("--span too long")?;
    if span_ns < tsbs::INTERVAL_NS {
        bail!("--span must be at least 10s (one TSBS interval)");
    }
    if let Some(latency) = &args.object_store_latency {
        return super::query_cache::run(super::query_cache::CacheBench {
            names,
            kinds,
            latency: latency.clone(),
            scale: args.scale,
            span: args.span,
            runs: args.runs,
            cold_runs: args.cold_runs.max(1),
            seed: args.seed,
            out: args.out.clone(),
        });
    }
    let rt = super::client_runtime(&args.out)?;
    let client = reqwest::Client::new();

    // Load every system first (each ends up flushed and compacted), then query them side
    // by side.
    // The child server (if any), stopped once the queries are done (before its directory goes).
    let mut child = None;
    let base = match &args.target {
        Some(target) => target.trim_end_matches('/').to_string(),
        None => {
            let dir = tempfile::tempdir()?;
            let server = ChildServer::start(dir.path(), &[], &[])?;
            let base = server.base.clone();
            child = Some((server, dir));
            base
        }
    };
    let rows_total = (span_ns / tsbs::INTERVAL_NS) as u64 * args.scale as u64;
    rt.block_on(async {
        let bar = load::rows_bar("bulkhead", rows_total);
        let write = format!("{base}/api/v2/write?bucket=bench&precision=ns");
        for (bodies, _) in Chunks::new(args.scale, args.span, Duration::from_secs(3600), 5000) {
            load::post_all(&client, &write, bodies, 4, &bar).await?;
        }
        bar.finish_and_clear();
        load::admin(&client, &base, "flush", "bench", "cpu").await?;
        load::admin(&client, &base, "compact", "bench", "cpu").await
    })?;
    let mut peers = Vec::new();
    for &peer in &args.peers {
        if peer == QueryPeer::Duckdb {
            let ssts = rt.block_on(load::sst_files(&client, &base, "bench", "cpu"))?;
            let names: Vec<String> = ssts.into_iter().map(|s| s.0).collect();
            let data_dir = child
                .as_ref()
                .map(|(_, dir): &(ChildServer, tempfile::TempDir)| dir.path().join("data"))
                .context("no data directory")?;
            let files = query_duckdb::sst_paths(&data_dir, &names)?;
            peers.push(Running::Duck(DuckDb::start(&files)?));
            continue;
        }
        let dir = tempfile::tempdir()?;
        let vm = peer == QueryPeer::Victoriametrics;
        let (p, write) = match vm {
            true => query_vm::start(dir.path())?,
            false => {
                let p = PeerServer::start_with(Peer::Influxdb, dir.path(), true)?;
                let write = p.write_url.clone();
                (p, write)
            }
        };
        rt.block_on(async {
            let bar = load::rows_bar(peer.name(), rows_total);
            for (bodies, _) in Chunks::new(args.scale, args.span, Duration::from_secs(3600), 5000) {
                load::post_all(&client, &write, bodies, 4, &bar).await?;
            }
            bar.finish_and_clear();
            p.settle(&client).await
        })?;
        let (server, _dir) = (p, dir);
        peers.push(match vm {
            true => Running::Vm { server, _dir },
            false => Running::Influx { server, _dir },
        });
    }

    // Bulkhead in SQL, optionally Bulkhead in InfluxQL, then the peers.
    let first_peer = 1 + usize::from(args.influxql);
    let systems = first_peer + peers.len();
    let mut samples = vec![vec![Vec::new(); kinds.len()]; systems];
    let mut last = vec![vec![(0usize, String::new()); kinds.len()]; systems];
    // Per system and type: runs whose rows differed from Bulkhead's, and the first diff.
    let mut differ = vec![vec![(0usize, String::new()); kinds.len()]; systems];
    let mut rng = SplitMix64(args.seed);
    let bar = ProgressBar::new(((args.runs + 1) * kinds.len() * systems) as u64).with_style(
        ProgressStyle::with_template("{prefix:>16} [{bar:40}] {pos}/{len} queries {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix("queries");
    for round in 0..=args.runs {
        for (k, &kind) in kinds.iter().enumerate() {
            let inst = instance(kind, &mut rng, args.scale, span_ns);
            bar.set_message(names[k].clone());
            // The systems take turns going first: each one's query then follows each
            // other system's equally often (all share the two cores and the harness,
            // which parses every answer), so no system always inherits the caches,
            // freed memory and scheduling that one neighbour leaves behind.
            let mut answer = None;
            let mut outputs: Vec<Option<PeerOutput>> = (0..peers.len()).map(|_| None).collect();
            for turn in 0..systems {
                let s = (turn + round + k) % systems;
                if s == 0 {
                    // Every system is timed from the request to the whole answer
                    // received (as TSBS does), not through the harness's parse of it.
                    let t = Instant::now();
                    let body = rt.block_on(load::sql_body(&client, &base, "bench", &inst.sql))?;
                    let ms = t.elapsed().as_secs_f64() * 1e3;
                    let rows = load::sql_rows(&inst.sql, &body)?;
                    bar.inc(1);
                    if round > 0 {
                        samples[0][k].push(ms);
                    }
                    last[0][k] = (rows.len(), inst.sql.clone());
                    answer = Some(rows);
                    continue;
                }
                if s < first_peer {
                    let (ms, rows) = rt.block_on(influxql(&client, &base, &inst.influxql))?;
                    bar.inc(1);
                    if round > 0 {
                        samples[1][k].push(ms);
                    }
                    last[1][k] = (rows, inst.influxql.clone());
                    continue;
                }
                let i = s - first_peer;
                // Each peer times its request alone, not the harness's check (which
                // waits for Bulkhead's answer, below).
                let (ms, rows, text, output) = match &mut peers[i] {
                    Running::Influx { server, .. } => {
                        let (ms, points) =
                            rt.block_on(influxql(&client, &server.base, &inst.influxql))?;
                        (ms, points, inst.influxql.clone(), None)
                    }
                    Running::Duck(d) => {
                        let (ms, rows) = d.query(&inst.sql)?;
                        let n = rows.len();
                        (
                            ms,
                            n,
                            query_duckdb::translate(&inst.sql),
                            Some(PeerOutput::Duck(rows)),
                        )
                    }
                    Running::Vm { server, .. } => {
                        let Some(q) = &inst.metricsql else {
                            bar.inc(1); // n/a: no MetricsQL form
                            continue;
                        };
                        let (ms, points) =
                            rt.block_on(query_vm::query(&client, &server.base, q))?;
                        let n = points.points();
                        (ms, n, q.text(), Some(PeerOutput::Vm(points)))
                    }
                };
                bar.inc(1);
                if round > 0 {
                    samples[s][k].push(ms);
                }
                last[s][k] = (rows, text);
                outputs[i] = output;
            }
            let answer = answer.context("Bulkhead's answer")?;
            for (i, output) in outputs.into_iter().enumerate() {
                let checked = match output {
                    None => continue,
                    Some(PeerOutput::Duck(rows)) => query_duckdb::same_answer(&answer, &rows),
                    Some(PeerOutput::Vm(points)) => match &inst.metricsql {
                        Some(q) => query_vm::check(q, &answer, &points),
                        None => continue,
                    },
                };
                if let Err(e) = checked {
                    note(&mut differ[first_peer + i][k], e);
                }
            }
        }
    }
    bar.finish_and_clear();
    let full_scan = match (&child, args.full_scan) {
        (Some((server, _)), true) => {
            let scan = rt.block_on(query_scan::run(&client, &base, server.pid(), "bench"))?;
            eprintln!("{scan}");
            if scan.rows != rows_total {
                bail!(
                    "the full scan returned {} rows, not {rows_total}",
                    scan.rows
                );
            }
            Some(scan)
        }
        _ => None,
    };
    drop(child);

    let mut results = Vec::new();
    for s in 0..systems {
        let peer = s.checked_sub(first_peer).map(|i| args.peers[i]);
        let (system, language) = match (s, peer) {
            (0, _) => ("bulkhead", "sql"),
            (_, None) => ("bulkhead", "influxql"),
            (_, Some(QueryPeer::Duckdb)) => ("duckdb", "sql"),
            (_, Some(QueryPeer::Victoriametrics)) => ("victoriametrics", "metricsql"),
            (_, Some(p)) => (p.name(), "influxql"),
        };
        let vm = peer == Some(QueryPeer::Victoriametrics);
        let checked = vm || peer == Some(QueryPeer::Duckdb);
        results.push(SystemResult {
            system: system.into(),
            language: language.into(),
            queries: names
                .iter()
                .enumerate()
                .map(|(k, name)| {
                    let unsupported = vm
                        .then(|| query_vm::not_expressible(kinds[k]))
                        .flatten()
                        .map(str::to_string);
                    let ran = unsupported.is_none();
                    QueryResult {
                        query: name.clone(),
                        latency: ran.then(|| Dist::of(&samples[s][k])),
                        rows: ran.then_some(last[s][k].0),
                        check: (checked && ran).then(|| match &differ[s][k] {
                            (0, _) if vm => format!(
                                "same as bulkhead in all {} runs (points = rows x metrics, values per bucket)",
                                args.runs + 1
                            ),
                            (0, _) => format!("same rows as bulkhead in all {} runs", args.runs + 1),
                            (n, first) => format!("DIFFERS from bulkhead in {n} runs: {first}"),
                        }),
                        unsupported,
                        example: last[s][k].1.clone(),
                    }
                })
                .collect(),
        });
    }
    print_table(&results);
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&json!({
            "benchmark": "query",
            "scale": args.scale,
            "span_s": args.span.as_secs_f64(),
            "runs": args.runs,
            "seed": args.seed,
            "results": results,
            "full_scan": full_scan,
        }))?,
    )?;
    let bars: Vec<(String, f64)> = names
        .iter()
        .enumerate()
        .flat_map(|(k, name)| {
            results.iter().filter_map(move |r| {
                let p50 = r.queries[k].latency?.p50_ms;
                Some((format!("{name} {}", r.system), p50))
            })
        })
        .collect();
    super::plot::bars(
        &args.out.join("query.svg"),
        &format!(
            "TSBS cpu-only query latency, median of {} runs ({} hosts, {})",
            args.runs,
            args.scale,
            humantime::format_duration(args.span)
        ),
        "ms",
        &bars,
    )?;
    eprintln!("wrote {}/results.json and query.svg", args.out.display());
    let wrong: Vec<String> = results
        .iter()
        .flat_map(|r| {
            r.queries.iter().filter_map(move |q| {
                let c = q.check.as_deref()?;
                c.starts_with("DIFFERS")
                    .then(|| format!("{} {}: {c}", r.system, q.query))
            })
        })
        .collect();
    if !wrong.is_empty() {
        bail!("answers differ:\n{}", wrong.join("\n"));
    }
    Ok(())
}

/// Count a run whose answer differed, keeping the first difference.
fn note(differ: &mut (usize, String), e: String) {
    differ.0 += 1;
    if differ.1.is_empty() {
        differ.1 = e;
    }
}

/// Run an InfluxQL query; returns the number of points in the result.
/// Milliseconds from the request to the whole answer received, and its points.
async fn influxql(client: &reqwest::Client, base: &str, q: &str) -> anyhow::Result<(f64, usize)> {
    let t = Instant::now();
    let resp = client
        .get(format!("{base}/query"))
        .query(&[("db", "bench"), ("q", q)])
        .send()
        .await?;
    let status = resp.status();
    let text = resp.bytes().await?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let body: serde_json::Value = serde_json::from_slice(&text)
        .with_context(|| format!("InfluxQL {q:?}: {status}: not JSON"))?;
    if !status.is_success() {
        bail!("InfluxQL {q:?}: {status}: {body}");
    }
    let mut points = 0;
    for result in body["results"].as_array().into_iter().flatten() {
        if let Some(e) = result["error"].as_str() {
            bail!("InfluxQL {q:?}: {e}");
        }
        for series in result["series"].as_array().into_iter().flatten() {
            points += series["values"].as_array().map_or(0, Vec::len);
        }
    }
    Ok((ms, points))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_parses_and_bad_names_are_rejected() {
        for name in QUERY_TYPES {
            parse_kind(name).unwrap();
        }
        assert_eq!(
            parse_kind("single-groupby-5-8-1").unwrap(),
            Kind::SingleGroupby {
                metrics: 5,
                hosts: 8,
                hours: 1
            }
        );
        for bad in [
            "single-groupby-11-1-1",
            "cpu-max-all-0",
            "nope",
            "high-cpu-x",
        ] {
            assert!(parse_kind(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn windows_stay_inside_the_data() {
        let mut rng = SplitMix64(1);
        let span = 6 * 3_600_000_000_000;
        for _ in 0..100 {
            let (a, b) = window(&mut rng, span, 1);
            assert!(a >= tsbs::DEFAULT_START_NS && b <= tsbs::DEFAULT_START_NS + span);
            assert_eq!(b - a, 3_600_000_000_000);
        }
        // A window longer than the span is the whole span.
        assert_eq!(window(&mut rng, span, 12).1 - tsbs::DEFAULT_START_NS, span);
        assert_eq!(hosts(&mut rng, 3, 8).len(), 3);
    }
}
