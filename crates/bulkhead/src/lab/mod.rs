//! `bulkhead lab`: the seed's two experiments, runnable (see `docs/lab.md`).
//!
//! - `mixed`: hybrid IO+CPU tasks and CPU-only tasks on one single-worker runtime, then
//!   split across an io and a cpu runtime (the seed's Figures 1 and 2).
//! - `pool`: one pooled HTTP client shared by an io and a cpu runtime, where the cpu
//!   runtime blocks its workers (the seed's `io-5 cost: 1.015s`), with the seed's
//!   workaround and the real fix.

mod mixed;
mod pool;

use std::time::Duration;

use serde::Serialize;

#[derive(Debug, clap::Args)]
pub(crate) struct LabArgs {
    /// Which experiment to run; all of them when omitted.
    #[arg(value_enum)]
    experiment: Option<Experiment>,
    /// Print one JSON object per experiment instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Experiment {
    /// Seed Figures 1 and 2: mixed vs split IO/CPU tasks.
    Mixed,
    /// Seed's connection-pool bug: naive, no-pool, bulkhead.
    Pool,
}

/// The result of one experiment, in the shape `--json` prints.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) experiment: &'static str,
    pub(crate) variants: Vec<serde_json::Value>,
}

pub(crate) fn run(args: LabArgs) -> anyhow::Result<()> {
    let experiments = match args.experiment {
        Some(e) => vec![e],
        None => vec![Experiment::Mixed, Experiment::Pool],
    };
    for e in experiments {
        let report = match e {
            Experiment::Mixed => mixed::run(!args.json)?,
            Experiment::Pool => pool::run(!args.json)?,
        };
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        }
    }
    Ok(())
}

/// Median and maximum of `samples`, in milliseconds.
pub(crate) fn p50_max_ms(samples: &[Duration]) -> (f64, f64) {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    if ms.is_empty() {
        return (0.0, 0.0);
    }
    let p50 = if ms.len() % 2 == 1 {
        ms[ms.len() / 2]
    } else {
        (ms[ms.len() / 2 - 1] + ms[ms.len() / 2]) / 2.0
    };
    (p50, ms[ms.len() - 1])
}

/// Keep a thread busy computing for `d` (CPU work that never yields).
pub(crate) fn spin_for(d: Duration) {
    let start = std::time::Instant::now();
    let mut x = 0u64;
    while start.elapsed() < d {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        std::hint::black_box(x);
    }
}

/// A tokio multi-thread runtime for the lab, with named threads.
pub(crate) fn lab_runtime(
    name: &str,
    workers: usize,
    io: bool,
) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(workers).thread_name(format!("lab-{name}"));
    if io {
        b.enable_all();
    } else {
        b.enable_time();
    }
    Ok(b.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p50_and_max() {
        let d = |ms| Duration::from_millis(ms);
        assert_eq!(p50_max_ms(&[d(3), d(1), d(2)]), (2.0, 3.0));
        assert_eq!(p50_max_ms(&[d(1), d(2), d(3), d(10)]), (2.5, 10.0));
        assert_eq!(p50_max_ms(&[]), (0.0, 0.0));
    }
}
