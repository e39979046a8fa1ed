//! `bench query --object-store-latency 20ms..80ms`: the object-store cache's benchmark.
//!
//! TSBS cpu-only data is loaded once into a local-disk server (flushed, compacted),
//! then the same objects are queried by five server configurations in turn:
//!
//! - `local`: local disk, default config (the memory tier of the cache is on);
//! - `local-nocache`: local disk, `--cache-enabled false`;
//! - `cold`: every object-store call delayed by the injected latency (which also turns
//!   the disk tier on, as for S3), each sample the first query after a restart with an
//!   empty cache directory;
//! - `warm`: the same store after one warm-up round;
//! - `remote-nocache`: the same store, `--cache-enabled false` (what every query cost
//!   before the cache).
//!
//! Every configuration runs the same seeded query instances. The target is
//! `warm` p50 <= 1.2 x `local` p50 for every query type.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use super::load::{self, Chunks};
use super::query::{Kind, instance};
use super::server::{ChildServer, INJECT_LATENCY_ENV};
use super::stats::Dist;
use super::tsbs::{self, SplitMix64};

/// What `bench query` hands over in the cache mode.
pub(crate) struct CacheBench {
    pub(crate) names: Vec<String>,
    pub(crate) kinds: Vec<Kind>,
    pub(crate) latency: String,
    pub(crate) scale: usize,
    pub(crate) span: Duration,
    pub(crate) runs: usize,
    pub(crate) cold_runs: usize,
    pub(crate) seed: u64,
    pub(crate) out: PathBuf,
}

const CONFIGS: [&str; 5] = ["local", "local-nocache", "cold", "warm", "remote-nocache"];

pub(crate) fn run(b: CacheBench) -> anyhow::Result<()> {
    let rt = super::client_runtime(&b.out)?;
    let client = reqwest::Client::new();
    let span_ns = i64::try_from(b.span.as_nanos()).context("--span too long")?;
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let latency_env = [(INJECT_LATENCY_ENV, b.latency.as_str())];
    let no_cache = ["--cache-enabled", "false"];

    // Load once, on local disk.
    {
        let server = ChildServer::start(root, &[], &[])?;
        let base = server.base.clone();
        let rows_total = (span_ns / tsbs::INTERVAL_NS) as u64 * b.scale as u64;
        rt.block_on(async {
            let bar = load::rows_bar("bulkhead", rows_total);
            let write = format!("{base}/api/v2/write?bucket=bench&precision=ns");
            for (bodies, _) in Chunks::new(b.scale, b.span, Duration::from_secs(3600), 5000) {
                load::post_all(&client, &write, bodies, 4, &bar).await?;
            }
            bar.finish_and_clear();
            load::admin(&client, &base, "flush", "bench", "cpu").await?;
            load::admin(&client, &base, "compact", "bench", "cpu").await
        })?;
    }

    // One query: its latency in ms and its row count.
    let query = |base: &str, sql: &str| -> anyhow::Result<(f64, usize)> {
        let t = Instant::now();
        let body = rt.block_on(load::sql_body(&client, base, "bench", sql))?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        Ok((ms, load::sql_rows(sql, &body)?.len()))
    };
    // A warm-up round, then `runs` recorded rounds of every type; and the row counts
    // of the last round, which every configuration must agree on.
    let rounds = |base: &str| -> anyhow::Result<(Vec<Vec<f64>>, Vec<usize>)> {
        let mut samples = vec![Vec::new(); b.kinds.len()];
        let mut rows = vec![0; b.kinds.len()];
        let mut rng = SplitMix64(b.seed);
        for round in 0..=b.runs {
            for (k, &kind) in b.kinds.iter().enumerate() {
                let inst = instance(kind, &mut rng, b.scale, span_ns);
                let (ms, n) = query(base, &inst.sql)?;
                rows[k] = n;
                if round > 0 {
                    samples[k].push(ms);
                }
            }
        }
        Ok((samples, rows))
    };
    let mut results: Vec<Vec<Vec<f64>>> = Vec::new();
    let mut row_counts: Vec<(&str, Vec<usize>)> = Vec::new();

    eprintln!("local disk, cache (memory tier) on");
    let (samples, rows) = rounds(&ChildServer::start(root, &[], &[])?.base)?;
    results.push(samples);
    row_counts.push(("local", rows));
    eprintln!("local disk, cache off");
    let (samples, rows) = rounds(&ChildServer::start(root, &no_cache, &[])?.base)?;
    results.push(samples);
    row_counts.push(("local-nocache", rows));

    eprintln!(
        "latency {}: cold (restart, empty cache) per sample",
        b.latency
    );
    let mut cold = vec![Vec::new(); b.kinds.len()];
    let mut rng = SplitMix64(b.seed);
    for _ in 0..b.cold_runs {
        for (k, &kind) in b.kinds.iter().enumerate() {
            let inst = instance(kind, &mut rng, b.scale, span_ns);
            wipe_cache(root)?;
            let server = ChildServer::start(root, &[], &latency_env)?;
            cold[k].push(query(&server.base, &inst.sql)?.0);
        }
    }
    results.push(cold);
    eprintln!("latency {}: warm", b.latency);
    let (samples, rows) = rounds(&ChildServer::start(root, &[], &latency_env)?.base)?;
    results.push(samples);
    row_counts.push(("warm", rows));
    eprintln!("latency {}: cache off", b.latency);
    let (samples, rows) = rounds(&ChildServer::start(root, &no_cache, &latency_env)?.base)?;
    results.push(samples);
    row_counts.push(("remote-nocache", rows));
    // The cache must not change an answer: the same row counts everywhere.
    for (config, rows) in &row_counts[1..] {
        if *rows != row_counts[0].1 {
            anyhow::bail!(
                "{config} returned other row counts than {}: {rows:?} vs {:?} (query types {:?})",
                row_counts[0].0,
                row_counts[0].1,
                b.names
            );
        }
    }
    let rows = row_counts[0].1.clone();

    let dists: Vec<Vec<Dist>> = results
        .iter()
        .map(|per| per.iter().map(|s| Dist::of(s)).collect())
        .collect();
    print_table(&b.names, &dists);
    let per_query: Vec<_> = b
        .names
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let mut o = serde_json::Map::new();
            o.insert("query".into(), json!(name));
            o.insert("rows".into(), json!(rows[k]));
            for (c, config) in CONFIGS.iter().enumerate() {
                o.insert((*config).into(), json!(dists[c][k]));
            }
            o.insert(
                "warm_over_local_p50".into(),
                json!(dists[3][k].p50_ms / dists[0][k].p50_ms),
            );
            serde_json::Value::Object(o)
        })
        .collect();
    std::fs::write(
        b.out.join("results.json"),
        serde_json::to_string_pretty(&json!({
            "benchmark": "query-object-store-cache",
            "scale": b.scale,
            "span_s": b.span.as_secs_f64(),
            "runs": b.runs,
            "cold_runs": b.cold_runs,
            "object_store_latency": b.latency,
            "seed": b.seed,
            "results": per_query,
        }))?,
    )?;
    eprintln!("wrote {}/results.json", b.out.display());
    Ok(())
}

/// Remove the disk tier (`<data_dir>/cache`), so the next server starts cold.
fn wipe_cache(root: &Path) -> anyhow::Result<()> {
    let cache = root.join("data").join("cache");
    match std::fs::remove_dir_all(&cache) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", cache.display())),
    }
}

fn print_table(names: &[String], dists: &[Vec<Dist>]) {
    print!("{:<24}", "query (p50 ms)");
    for c in CONFIGS {
        print!(" {c:>14}");
    }
    println!(" {:>11}", "warm/local");
    for (k, name) in names.iter().enumerate() {
        print!("{name:<24}");
        for d in dists {
            print!(" {:>14.1}", d[k].p50_ms);
        }
        println!(" {:>10.2}x", dists[3][k].p50_ms / dists[0][k].p50_ms);
    }
}
