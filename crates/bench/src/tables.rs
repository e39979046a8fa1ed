//! `bench tables`: how long one flush of many one-row tables takes (issue 23's "100k
//! tables in one 1.6 MB request, then a flush of minutes"). For each
//! `--flush-concurrency` value a fresh server gets `--count` one-row tables in requests
//! of `--per-request` lines, then `POST /api/v1/flush?db=bench` is timed; every table
//! must then be in an SST (checked through `system.tables`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::json;

use super::load;
use super::server::{ChildServer, INJECT_LATENCY_ENV};

#[derive(Debug, clap::Args)]
pub(crate) struct TablesArgs {
    /// One-row tables to write, then flush.
    #[arg(long, default_value_t = 100_000)]
    count: usize,
    /// `memtable.flush_concurrency` values to compare, each on a fresh server; 0 passes
    /// no flag (the server's default; for a `BULKHEAD_BIN` that predates the option).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 32])]
    flush_concurrency: Vec<usize>,
    /// Lines per write request.
    #[arg(long, default_value_t = 10_000)]
    per_request: usize,
    /// Object-store latency to inject, e.g. `20ms..80ms` (S3-like); none by default.
    #[arg(long)]
    latency: Option<String>,
    /// Directory for results.json.
    #[arg(long, default_value = "bench-out/tables")]
    out: PathBuf,
}

#[derive(Debug, Serialize)]
struct Run {
    flush_concurrency: usize,
    tables: usize,
    write_s: f64,
    flush_s: f64,
    tables_per_s: f64,
    tables_with_sst: usize,
}

pub(crate) fn run(args: TablesArgs) -> anyhow::Result<()> {
    if args.count == 0 || args.per_request == 0 || args.flush_concurrency.is_empty() {
        bail!("--count and --per-request must be > 0, with one --flush-concurrency or more");
    }
    let rt = super::client_runtime(&args.out)?;
    let client = reqwest::Client::new();
    let mut runs = Vec::new();
    for &c in &args.flush_concurrency {
        let run = rt.block_on(one(&client, &args, c))?;
        eprintln!(
            "flush_concurrency {c}: {} tables flushed in {:.2} s ({:.0} tables/s)",
            run.tables, run.flush_s, run.tables_per_s
        );
        runs.push(run);
    }
    println!("| flush_concurrency | tables | write (s) | flush (s) | tables/s |");
    println!("|---|---|---|---|---|");
    for r in &runs {
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.0} |",
            r.flush_concurrency, r.tables, r.write_s, r.flush_s, r.tables_per_s
        );
    }
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&json!({
            "benchmark": "tables",
            "latency": args.latency,
            "runs": runs,
        }))?,
    )?;
    eprintln!("wrote {}/results.json", args.out.display());
    Ok(())
}

async fn one(
    client: &reqwest::Client,
    args: &TablesArgs,
    concurrency: usize,
) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let c = concurrency.to_string();
    let count = args.count.to_string();
    let mut server_args = vec![
        "--max-tables-per-database",
        count.as_str(),
        "--compaction-enabled",
        "false",
    ];
    if concurrency > 0 {
        server_args.extend(["--flush-concurrency", c.as_str()]);
    }
    let envs: Vec<(&str, &str)> = args
        .latency
        .as_deref()
        .map(|l| vec![(INJECT_LATENCY_ENV, l)])
        .unwrap_or_default();
    let server = ChildServer::start(dir.path(), &server_args, &envs)?;
    let base = server.base.clone();
    let write = format!("{base}/api/v2/write?bucket=bench&precision=s");
    let started = Instant::now();
    let mut written = 0;
    while written < args.count {
        let n = args.per_request.min(args.count - written);
        let body: String = (written..written + n)
            .map(|i| format!("t{i},host=h v={i} 1700000000\n"))
            .collect();
        let resp = client
            .post(&write)
            .body(body)
            .send()
            .await
            .context("write request")?;
        if !resp.status().is_success() {
            let status = resp.status();
            bail!("write: {status}: {}", resp.text().await.unwrap_or_default());
        }
        written += n;
    }
    let write_s = started.elapsed().as_secs_f64();
    let t = Instant::now();
    let resp = client
        .post(format!("{base}/api/v1/flush"))
        .query(&[("db", "bench")])
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .context("flush request")?;
    if !resp.status().is_success() {
        let status = resp.status();
        bail!("flush: {status}: {}", resp.text().await.unwrap_or_default());
    }
    let flush_s = t.elapsed().as_secs_f64();
    let rows = load::sql(
        client,
        &base,
        "bench",
        "SELECT count(*) AS n FROM system.tables WHERE database = 'bench' AND sst_count > 0 AND memtable_bytes = 0",
    )
    .await?;
    let tables_with_sst = rows
        .first()
        .and_then(|r| r.get("n"))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0) as usize;
    if tables_with_sst != args.count {
        bail!(
            "after the flush {tables_with_sst} of {} tables are in SSTs only",
            args.count
        );
    }
    Ok(Run {
        flush_concurrency: concurrency,
        tables: args.count,
        write_s,
        flush_s,
        tables_per_s: args.count as f64 / flush_s.max(1e-9),
        tables_with_sst,
    })
}
