//! `bench storage`: bytes per value on disk before and after full compaction, and
//! compaction throughput, on TSBS cpu-only data at several scales.
//!
//! Bulkhead runs as a child server with background compaction off. The data is sent in
//! time order and a flush is forced after every `--flush-every` of data time, so each
//! 2 h segment holds many small SSTs (like a live server flushing every few minutes).
//! Then `POST /api/v1/compact` merges everything; its wall time and the rows of the
//! SSTs it replaced give the compaction throughput. Peers get the same data, then are
//! made to flush and finish their own compaction (see [`PeerServer::settle`]); their
//! size is the `du` of their data directory.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Serialize;
use serde_json::json;

use super::load::{self, Chunks};
use super::peers::{DiskUsage, Peer, PeerServer, disk_usage, disk_usage_except};
use super::server::ChildServer;
use super::tsbs;

#[derive(Debug, clap::Args)]
pub(crate) struct StorageArgs {
    /// TSBS scales (hosts) to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000])]
    scales: Vec<usize>,
    /// Span of generated data (one row per host every 10 s).
    #[arg(long, default_value = "1day", value_parser = humantime::parse_duration)]
    span: Duration,
    /// Force a Bulkhead flush after every this much data time (sets how many SSTs
    /// each 2 h segment holds before compaction).
    #[arg(long, default_value = "10min", value_parser = humantime::parse_duration)]
    flush_every: Duration,
    /// Concurrent HTTP clients while loading.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Lines per write request.
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Peers to measure side by side: victoriametrics, influxdb.
    #[arg(long, value_delimiter = ',')]
    peers: Vec<Peer>,
    /// Directory for results.json and storage.svg.
    #[arg(long, default_value = "bench-out/storage")]
    out: PathBuf,
}

/// Size of a system's data at one moment.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Footprint {
    /// Bytes of the data files proper: Bulkhead SSTs (object sizes), VictoriaMetrics
    /// `data/`, InfluxDB `*.tsm`.
    pub(crate) data_bytes: u64,
    pub(crate) data_bytes_per_value: f64,
    /// Everything under the data directory except the WAL (index, manifest, series
    /// file included), as `du` counts it (allocated blocks). The headline number.
    pub(crate) disk: DiskUsage,
    pub(crate) disk_bytes_per_value: f64,
    /// The WAL directory. Bulkhead keeps its active WAL segment (up to
    /// `wal.segment_size`, 64 MiB) even when every record in it is flushed.
    pub(crate) wal: DiskUsage,
    /// Bulkhead: live SSTs.
    pub(crate) sst_files: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Compaction {
    pub(crate) wall_s: f64,
    /// Rows × 10 fields of the SSTs the compaction replaced.
    pub(crate) values_merged: u64,
    pub(crate) values_per_s: f64,
    pub(crate) input_files: usize,
    pub(crate) output_files: usize,
    /// Deltas of the server's `bulkhead_compaction_*` counters.
    pub(crate) tasks: f64,
    pub(crate) input_bytes: f64,
    pub(crate) output_bytes: f64,
    pub(crate) server_seconds: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct StorageResult {
    pub(crate) system: String,
    pub(crate) scale: usize,
    pub(crate) rows: u64,
    pub(crate) values: u64,
    pub(crate) load_s: f64,
    /// Bulkhead only: after the forced flushes, before compaction.
    pub(crate) before: Option<Footprint>,
    pub(crate) after: Footprint,
    pub(crate) compaction: Option<Compaction>,
    /// Peers: seconds from the end of the load until flush + compaction were done.
    pub(crate) settle_s: Option<f64>,
}

pub(crate) fn run(args: StorageArgs) -> anyhow::Result<()> {
    if args.scales.is_empty() || args.scales.contains(&0) {
        bail!("--scales needs one or more host counts > 0");
    }
    if args.span < Duration::from_nanos(tsbs::INTERVAL_NS as u64) {
        bail!("--span must be at least 10s (one TSBS interval)");
    }
    let rt = super::client_runtime(&args.out)?;
    let client = reqwest::Client::new();
    let mut results = Vec::new();
    for &scale in &args.scales {
        results.push(rt.block_on(bulkhead(&client, &args, scale))?);
        for &peer in &args.peers {
            results.push(rt.block_on(peer_run(&client, &args, scale, peer))?);
        }
    }
    print_table(&results);
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&json!({
            "benchmark": "storage",
            "span_s": args.span.as_secs_f64(),
            "flush_every_s": args.flush_every.as_secs_f64(),
            "fields_per_row": tsbs::FIELDS.len(),
            "results": results,
        }))?,
    )?;
    let bars: Vec<(String, f64)> = results
        .iter()
        .flat_map(|r| {
            let mut v = Vec::new();
            if let Some(b) = &r.before {
                v.push((
                    format!("{} {} (flushed)", r.system, r.scale),
                    b.disk_bytes_per_value,
                ));
            }
            v.push((
                format!("{} {}", r.system, r.scale),
                r.after.disk_bytes_per_value,
            ));
            v
        })
        .collect();
    super::plot::bars(
        &args.out.join("storage.svg"),
        "bytes per value on disk (du), TSBS cpu-only, after compaction unless marked",
        "bytes/value",
        &bars,
    )?;
    eprintln!("wrote {}/results.json and storage.svg", args.out.display());
    Ok(())
}

async fn bulkhead(
    client: &reqwest::Client,
    args: &StorageArgs,
    scale: usize,
) -> anyhow::Result<StorageResult> {
    let dir = tempfile::tempdir()?;
    let server = ChildServer::start(dir.path(), &["--compaction-enabled", "false"], &[])?;
    let base = server.base.clone();
    let write = format!("{base}/api/v2/write?bucket=bench&precision=ns");
    let chunks = Chunks::new(scale, args.span, args.flush_every, args.batch);
    let rows_total = rows_in(scale, args.span);
    let bar = load::rows_bar(&format!("bulkhead {scale}"), rows_total);
    let start = Instant::now();
    let mut rows = 0u64;
    for (bodies, n) in chunks {
        load::post_all(client, &write, bodies, args.clients, &bar).await?;
        load::admin(client, &base, "flush", "bench", "cpu").await?;
        rows += n as u64;
    }
    let load_s = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let values = rows * tsbs::FIELDS.len() as u64;
    let data_dir = dir.path().join("data");

    let before_ssts = load::sst_files(client, &base, "bench", "cpu").await?;
    let before = footprint(&before_ssts, &data_dir, values)?;
    let m0 = load::metrics(client, &base).await?;
    eprintln!(
        "bulkhead {scale}: {} SSTs after {:.0} s of loading; compacting",
        before_ssts.len(),
        load_s
    );
    let t = Instant::now();
    load::admin(client, &base, "compact", "bench", "cpu").await?;
    let wall_s = t.elapsed().as_secs_f64();
    let m1 = load::metrics(client, &base).await?;
    let after_ssts = load::sst_files(client, &base, "bench", "cpu").await?;
    let after_paths: BTreeSet<&str> = after_ssts.iter().map(|s| s.0.as_str()).collect();
    let before_paths: BTreeSet<&str> = before_ssts.iter().map(|s| s.0.as_str()).collect();
    let replaced: Vec<_> = before_ssts
        .iter()
        .filter(|s| !after_paths.contains(s.0.as_str()))
        .collect();
    let values_merged = replaced.iter().map(|s| s.1).sum::<u64>() * tsbs::FIELDS.len() as u64;
    let delta = |k: &str| m1.get(k).copied().unwrap_or(0.0) - m0.get(k).copied().unwrap_or(0.0);
    let compaction = Compaction {
        wall_s,
        values_merged,
        values_per_s: values_merged as f64 / wall_s.max(1e-9),
        input_files: replaced.len(),
        output_files: after_ssts
            .iter()
            .filter(|s| !before_paths.contains(s.0.as_str()))
            .count(),
        tasks: delta("bulkhead_compactions_total"),
        input_bytes: delta("bulkhead_compaction_input_bytes_total"),
        output_bytes: delta("bulkhead_compaction_output_bytes_total"),
        server_seconds: delta("bulkhead_compaction_duration_seconds_total"),
    };
    // Replaced inputs are deleted once no snapshot holds them: wait (bounded) until the
    // SST objects on disk are exactly the live ones.
    let live_bytes: u64 = after_ssts.iter().map(|s| s.2).sum();
    let deadline = Instant::now() + Duration::from_secs(60);
    while parquet_bytes(&data_dir)? != live_bytes {
        if Instant::now() > deadline {
            bail!("replaced SSTs were not deleted within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = footprint(&after_ssts, &data_dir, values)?;
    drop(server);
    Ok(StorageResult {
        system: "bulkhead".into(),
        scale,
        rows,
        values,
        load_s,
        before: Some(before),
        after,
        compaction: Some(compaction),
        settle_s: None,
    })
}

async fn peer_run(
    client: &reqwest::Client,
    args: &StorageArgs,
    scale: usize,
    peer: Peer,
) -> anyhow::Result<StorageResult> {
    let dir = tempfile::tempdir()?;
    let server = PeerServer::start_with(peer, dir.path(), true)?;
    let bar = load::rows_bar(
        &format!("{} {scale}", peer.name()),
        rows_in(scale, args.span),
    );
    let start = Instant::now();
    let mut rows = 0u64;
    for (bodies, n) in Chunks::new(scale, args.span, args.flush_every, args.batch) {
        load::post_all(client, &server.write_url, bodies, args.clients, &bar).await?;
        rows += n as u64;
    }
    let load_s = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    eprintln!(
        "{} {scale}: loaded in {load_s:.0} s; forcing flush + compaction",
        peer.name()
    );
    let t = Instant::now();
    server.settle(client).await?;
    let settle_s = t.elapsed().as_secs_f64();
    let values = rows * tsbs::FIELDS.len() as u64;
    let wal_dir = server.wal_dir();
    let disk = disk_usage_except(server.data_dir(), wal_dir.as_deref())?;
    let wal = match &wal_dir {
        Some(w) => disk_usage(w)?,
        None => DiskUsage::default(),
    };
    let data_bytes = server.data_file_bytes()?;
    Ok(StorageResult {
        system: peer.name().into(),
        scale,
        rows,
        values,
        load_s,
        before: None,
        after: Footprint {
            data_bytes,
            data_bytes_per_value: data_bytes as f64 / values as f64,
            disk,
            disk_bytes_per_value: disk.allocated_bytes as f64 / values as f64,
            wal,
            sst_files: None,
        },
        compaction: None,
        settle_s: Some(settle_s),
    })
}

fn rows_in(scale: usize, span: Duration) -> u64 {
    (span.as_nanos() / tsbs::INTERVAL_NS as u128) as u64 * scale as u64
}

fn footprint(
    ssts: &[(String, u64, u64)],
    data_dir: &std::path::Path,
    values: u64,
) -> anyhow::Result<Footprint> {
    let data_bytes: u64 = ssts.iter().map(|s| s.2).sum();
    let wal_dir = data_dir.join("wal");
    let disk = disk_usage_except(data_dir, Some(&wal_dir))?;
    Ok(Footprint {
        data_bytes,
        data_bytes_per_value: data_bytes as f64 / values as f64,
        disk,
        disk_bytes_per_value: disk.allocated_bytes as f64 / values as f64,
        wal: disk_usage(&wal_dir)?,
        sst_files: Some(ssts.len()),
    })
}

/// Bytes of the `.parquet` objects under Bulkhead's data directory.
fn parquet_bytes(data_dir: &std::path::Path) -> anyhow::Result<u64> {
    let mut total = 0;
    let mut stack = vec![data_dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if entry.path().extension().is_some_and(|e| e == "parquet") {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

fn print_table(results: &[StorageResult]) {
    println!(
        "{:<16} {:>6} {:>12} {:>9} {:>18} {:>13} {:>13} {:>8} {:>13} {:>10}",
        "system",
        "hosts",
        "values",
        "SSTs",
        "flushed B/value",
        "data B/value",
        "disk B/value",
        "WAL MiB",
        "compact Mv/s",
        "vs bulkh."
    );
    println!(
        "(data = data files only; disk = du of everything but the WAL; flushed = data / disk before compaction)"
    );
    for r in results {
        let bh = results
            .iter()
            .find(|b| b.system == "bulkhead" && b.scale == r.scale)
            .map_or(f64::NAN, |b| b.after.disk_bytes_per_value);
        println!(
            "{:<16} {:>6} {:>12} {:>9} {:>18} {:>13.3} {:>13.3} {:>8.1} {:>13} {:>10.2}",
            r.system,
            r.scale,
            r.values,
            match (&r.before, &r.after.sst_files) {
                (Some(b), Some(a)) => format!("{}->{}", b.sst_files.unwrap_or(0), a),
                _ => "-".into(),
            },
            r.before.as_ref().map_or("-".into(), |b| format!(
                "{:.3} / {:.3}",
                b.data_bytes_per_value, b.disk_bytes_per_value
            )),
            r.after.data_bytes_per_value,
            r.after.disk_bytes_per_value,
            r.after.wal.allocated_bytes as f64 / 1048576.0,
            r.compaction
                .as_ref()
                .map_or("-".into(), |c| format!("{:.2}", c.values_per_s / 1e6)),
            r.after.disk_bytes_per_value / bh,
        );
    }
}
