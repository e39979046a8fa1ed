//! The `bulkhead` binary: `serve`, `lab` and `admin` subcommands. The benchmarks are a
//! separate binary, `bulkhead-bench` (crates/bench).

mod admin;
mod allocator;
mod engine_metrics;
mod flight;
mod lab;
mod serve;
mod store;

use clap::{Parser, Subcommand};

/// Bulkhead: a time-series database whose IO, writes, flushes, queries and compactions
/// each run on their own runtime, so compaction can never starve the rest.
#[derive(Debug, Parser)]
#[command(name = "bulkhead", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the database: HTTP API (and, later, PostgreSQL wire) on the configured addresses.
    Serve(Box<serve::ServeCmd>),
    /// Reproduce the seed's experiments: why CPU work must not share IO's runtime.
    Lab(lab::LabArgs),
    /// Ask a running server to flush or compact.
    Admin(admin::AdminArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Lab(args) => lab::run(args),
        Command::Admin(args) => admin::run(args),
    }
}
