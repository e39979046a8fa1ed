//! `bulkhead bench`: workload generation and benchmarks (see `docs/benchmarks.md`).

mod ingest;
mod interference;
mod load;
mod peers;
mod plot;
mod query;
mod server;
mod soak;
mod stats;
mod storage;
mod tsbs;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
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
    /// Ingest at ~80% of capacity with a small query load; RSS, p99 and stalls must
    /// stay flat; then 3x overload must get 503 + Retry-After with bounded RSS.
    Soak(soak::SoakArgs),
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

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Gen(args) => generate(args),
        BenchCommand::Interference(args) => interference::run(args),
        BenchCommand::Ingest(args) => ingest::run(args),
        BenchCommand::Storage(args) => storage::run(args),
        BenchCommand::Query(args) => query::run(args),
        BenchCommand::Soak(args) => soak::run(args),
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
