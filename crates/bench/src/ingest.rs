//! `bench ingest`: concurrent clients posting TSBS line protocol, durable acks.
//!
//! The same generated batches go to Bulkhead and to each peer (`--peers`), one system
//! after another in one run. Reported: rows/s, values/s, request p50/p99/max, the
//! server's peak RSS and CPU seconds per million rows.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;

use super::peers::{Peer, PeerServer};
use super::server::{ChildServer, cpu_seconds, peak_rss};
use super::stats::Dist;
use super::tsbs;

#[derive(Debug, clap::Args)]
pub(crate) struct IngestArgs {
    /// TSBS hosts.
    #[arg(long, default_value_t = 1000)]
    scale: usize,
    /// Span of generated data (one row per host every 10 s). The default, 1.44 M rows at
    /// 1000 hosts, loads each system for seconds; much shorter runs mostly measure warm-up
    /// (new tables, empty memtables, the first flush).
    #[arg(long, default_value = "4h", value_parser = humantime::parse_duration)]
    span: Duration,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Lines per request.
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Peers to measure side by side: victoriametrics, influxdb (Debian packages
    /// `victoria-metrics`, `influxdb`).
    #[arg(long, value_delimiter = ',')]
    peers: Vec<Peer>,
    /// WAL sync mode of Bulkhead: `always` (durable acks, the headline) or `none`.
    #[arg(long, default_value = "always")]
    wal_sync: String,
    /// Write to a running Bulkhead at this base URL (e.g. `http://127.0.0.1:5440`)
    /// instead of starting one; rows go to database `bench`. `--wal-sync` is then the
    /// server's business, and peers still run as children.
    #[arg(long)]
    target: Option<String>,
    /// With `--target` on this machine: the server's PID, to report its CPU and peak RSS.
    #[arg(long, requires = "target")]
    target_pid: Option<u32>,
    /// Directory for results.json.
    #[arg(long, default_value = "bench-out/ingest")]
    out: PathBuf,
}

#[derive(Debug, Serialize)]
pub(crate) struct IngestResult {
    pub(crate) system: String,
    pub(crate) durable_acks: bool,
    pub(crate) rows: usize,
    pub(crate) seconds: f64,
    pub(crate) rows_per_s: f64,
    pub(crate) values_per_s: f64,
    pub(crate) requests: Dist,
    pub(crate) peak_rss_bytes: Option<u64>,
    pub(crate) cpu_s_per_million_rows: Option<f64>,
}

pub(crate) fn run(args: IngestArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let batches = Arc::new(generate(&args));
    let rows: usize = batches.iter().map(|b| b.1).sum();
    eprintln!(
        "generated {rows} rows in {} requests of up to {} lines",
        batches.len(),
        args.batch
    );
    let rt = super::client_runtime(&args.out)?;
    let mut results = Vec::new();
    let write_url = |base: &str| {
        format!(
            "{}/api/v2/write?bucket=bench&precision=ns",
            base.trim_end_matches('/')
        )
    };
    if let Some(target) = &args.target {
        let r = rt.block_on(drive(
            "bulkhead",
            &write_url(target),
            &batches,
            args.clients,
            args.target_pid,
        ))?;
        results.push(r);
    } else {
        let dir = tempfile::tempdir()?;
        let server = ChildServer::start(dir.path(), &["--wal-sync", &args.wal_sync], &[])?;
        let mut r = rt.block_on(drive(
            "bulkhead",
            &write_url(&server.base),
            &batches,
            args.clients,
            Some(server.pid()),
        ))?;
        r.durable_acks = args.wal_sync == "always";
        results.push(r);
    }
    for peer in &args.peers {
        let dir = tempfile::tempdir()?;
        let server = PeerServer::start(*peer, dir.path())?;
        let r = rt.block_on(drive(
            peer.name(),
            &server.write_url,
            &batches,
            args.clients,
            Some(server.pid()),
        ))?;
        results.push(r);
    }
    print_table(&results);
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&json!({
            "benchmark": "ingest",
            "scale": args.scale,
            "span_s": args.span.as_secs_f64(),
            "clients": args.clients,
            "batch": args.batch,
            "results": results,
        }))?,
    )?;
    eprintln!("wrote {}/results.json", args.out.display());
    Ok(())
}

/// Request bodies (and their row counts), generated once for every system.
fn generate(args: &IngestArgs) -> Vec<(String, usize)> {
    let mut generator = tsbs::Generator::new(args.scale, tsbs::DEFAULT_START_NS, 1);
    let intervals = (args.span.as_nanos() / tsbs::INTERVAL_NS as u128) as usize;
    let mut out = Vec::new();
    let (mut body, mut n) = (String::new(), 0);
    let mut interval = String::new();
    for _ in 0..intervals {
        interval.clear();
        generator.write_interval(&mut interval);
        for line in interval.lines() {
            body.push_str(line);
            body.push('\n');
            n += 1;
            if n == args.batch {
                out.push((std::mem::take(&mut body), n));
                n = 0;
            }
        }
    }
    if n > 0 {
        out.push((body, n));
    }
    out
}

async fn drive(
    system: &str,
    url: &str,
    batches: &Arc<Vec<(String, usize)>>,
    clients: usize,
    pid: Option<u32>,
) -> anyhow::Result<IngestResult> {
    let client = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let bar = ProgressBar::new(batches.len() as u64).with_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len} requests {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(system.to_string());
    let cpu0 = pid.and_then(cpu_seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let (client, url, batches, next, bar) = (
            client.clone(),
            url.to_string(),
            Arc::clone(batches),
            Arc::clone(&next),
            bar.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((body, _)) = batches.get(i) else {
                    break;
                };
                let t = Instant::now();
                let resp = client.post(&url).body(body.clone()).send().await?;
                if !resp.status().is_success() {
                    let status = resp.status();
                    bail!("{url}: {status}: {}", resp.text().await.unwrap_or_default());
                }
                resp.bytes().await?;
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
                bar.inc(1);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let rows: usize = batches.iter().map(|b| b.1).sum();
    let cpu = pid.and_then(cpu_seconds).zip(cpu0).map(|(b, a)| b - a);
    Ok(IngestResult {
        system: system.to_string(),
        durable_acks: system != "victoriametrics",
        rows,
        seconds,
        rows_per_s: rows as f64 / seconds,
        values_per_s: rows as f64 * tsbs::FIELDS.len() as f64 / seconds,
        requests: Dist::of(&latencies),
        peak_rss_bytes: pid.and_then(peak_rss),
        cpu_s_per_million_rows: cpu.map(|c| c / (rows as f64 / 1e6)),
    })
}

fn print_table(results: &[IngestResult]) {
    println!(
        "{:<16} {:>8} {:>12} {:>12} {:>18} {:>10} {:>12} {:>10}",
        "system",
        "durable",
        "rows/s",
        "values/s",
        "req p50/p99/max ms",
        "peak RSS",
        "CPU s/Mrow",
        "vs first"
    );
    let first = results.first().map_or(1.0, |r| r.rows_per_s);
    for r in results {
        println!(
            "{:<16} {:>8} {:>12.0} {:>12.0} {:>18} {:>9.0}M {:>12.2} {:>10.2}",
            r.system,
            r.durable_acks,
            r.rows_per_s,
            r.values_per_s,
            format!(
                "{:.0}/{:.0}/{:.0}",
                r.requests.p50_ms, r.requests.p99_ms, r.requests.max_ms
            ),
            r.peak_rss_bytes.unwrap_or(0) as f64 / 1048576.0,
            r.cpu_s_per_million_rows.unwrap_or(f64::NAN),
            first / r.rows_per_s,
        );
    }
}
