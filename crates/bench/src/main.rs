//! `bulkhead-bench`: workload generation and the benchmarks of `docs/benchmarks.md`.
//!
//! A separate binary from the database, so the product does not link plotters, indicatif
//! or the peers' drivers. It starts the `bulkhead` binary it finds next to itself (both
//! are built into the same target directory) or the one named by `BULKHEAD_BIN`.

mod hostile;
mod ingest;
mod interference;
mod load;
mod peers;
mod plot;
mod promql;
mod query;
mod query_cache;
mod query_duckdb;
mod query_report;
mod query_scan;
mod query_vm;
mod server;
mod soak;
mod stats;
mod storage;
mod tables;
use bulkhead_tsbs as tsbs;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// mimalloc, as in the server: the load generator allocates per line.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Benchmarks for Bulkhead: each starts `bulkhead serve` (and, where asked, peers) on
/// free loopback ports, measures, and writes its results under `--out`.
#[derive(Debug, Parser)]
#[command(name = "bulkhead-bench", version, about, long_about = None)]
struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, clap::Subcommand)]
enum BenchCommand {
    /// Generate TSBS cpu-only line protocol (seeded, deterministic).
    Gen(GenArgs),
    /// The seed's experiment: write and flush latency with and without compaction +
    /// query load, isolated vs shared runtimes, in one run.
    Interference(interference::InterferenceArgs),
    /// Durable ingest throughput, against peers side by side.
    Ingest(ingest::IngestArgs),
    /// Bytes per value before and after full compaction, compaction throughput, against
    /// peers side by side.
    Storage(storage::StorageArgs),
    /// The TSBS cpu-only query types: median and p99 latency over N runs.
    Query(query::QueryArgs),
    /// PromQL latency (rate, sum by, topk, avg by over 1000 series) against
    /// VictoriaMetrics on the same TSBS data, every answer cross-checked.
    Promql(promql::PromqlArgs),
    /// Ingest at ~80% of capacity with a small query load; RSS, p99 and stalls must
    /// stay flat; then 3x overload must get 503 + Retry-After with bounded RSS.
    Soak(soak::SoakArgs),
    /// One flush of many one-row tables (100k by default), one table at a time against
    /// `memtable.flush_concurrency` tables at once.
    Tables(tables::TablesArgs),
}

#[derive(Debug, clap::Args)]
struct GenArgs {
    /// Number of hosts.
    #[arg(long, default_value_t = 100)]
    scale: usize,
    /// Time span to generate, e.g. `1h`, `1day`.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// RNG seed; the same seed always produces the same output.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = BenchArgs::parse();
    match args.command {
        BenchCommand::Gen(args) => generate(args),
        BenchCommand::Interference(args) => interference::run(args),
        BenchCommand::Ingest(args) => ingest::run(args),
        BenchCommand::Storage(args) => storage::run(args),
        BenchCommand::Query(args) => query::run(args),
        BenchCommand::Promql(args) => promql::run(args),
        BenchCommand::Soak(args) => soak::run(args),
        BenchCommand::Tables(args) => tables::run(args),
    }
}

/// What every benchmark starts with: its `--out` directory, and the load generator's
/// own 2-worker runtime (threads `bench-client`), separate from the server under test.
fn client_runtime(out: &std::path::Path) -> anyhow::Result<tokio::runtime::Runtime> {
    std::fs::create_dir_all(out).map_err(|e| anyhow::anyhow!("creating {}: {e}", out.display()))?;
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("bench-client")
        .build()?)
}

fn generate(args: GenArgs) -> anyhow::Result<()> {
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let intervals = (args.duration.as_nanos() / tsbs::INTERVAL_NS as u128) as u64;
    let mut generator = tsbs::Generator::new(args.scale, tsbs::DEFAULT_START_NS, args.seed);
    let mut buf = String::with_capacity(generator.scale() * 400);
    for _ in 0..intervals {
        buf.clear();
        generator.write_interval(&mut buf);
        out.write_all(buf.as_bytes())?;
    }
    out.flush()?;
    if let Some(path) = &args.out {
        eprintln!(
            "wrote {} rows ({} hosts x {intervals} intervals) to {}",
            intervals as usize * args.scale,
            args.scale,
            path.display()
        );
    }
    Ok(())
}
