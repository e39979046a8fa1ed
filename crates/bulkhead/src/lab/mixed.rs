//! Seed Figures 1 and 2: hybrid IO+CPU tasks queued behind CPU-only tasks.
//!
//! Four hybrid tasks each wait 10 ms on "IO" (a timer standing in for a network call)
//! and then compute for 5 ms; four CPU-only tasks compute for 20 ms each without
//! yielding. On one single-worker runtime (`mixed`) a hybrid task whose IO finished
//! must wait until the CPU-only tasks release the worker. With the hybrid tasks on an
//! io runtime and the CPU-only tasks on a cpu runtime (`split`), they never wait.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{Report, lab_runtime, p50_max_ms, spin_for};

const HYBRID_TASKS: usize = 4;
const CPU_TASKS: usize = 4;
const HYBRID_IO: Duration = Duration::from_millis(10);
const HYBRID_CPU: Duration = Duration::from_millis(5);
const CPU_ONLY: Duration = Duration::from_millis(20);

pub(crate) fn run(print: bool) -> anyhow::Result<Report> {
    if print {
        println!("== lab mixed: seed Figures 1 and 2 ==");
        println!(
            "{HYBRID_TASKS} hybrid tasks ({} ms IO, then {} ms CPU) and {CPU_TASKS} CPU-only tasks ({} ms each)",
            HYBRID_IO.as_millis(),
            HYBRID_CPU.as_millis(),
            CPU_ONLY.as_millis()
        );
    }
    let mut variants = Vec::new();
    let mut summary = Vec::new();
    for layout in ["mixed", "split"] {
        let (hybrid, cpu) = run_layout(layout == "split")?;
        let (p50, max) = p50_max_ms(&hybrid);
        if print {
            println!("-- layout `{layout}`");
            for (i, d) in hybrid.iter().enumerate() {
                println!("  hybrid-{i} cost {:>7.1} ms", d.as_secs_f64() * 1e3);
            }
            for (i, d) in cpu.iter().enumerate() {
                println!("  cpu-{i}    cost {:>7.1} ms", d.as_secs_f64() * 1e3);
            }
        }
        summary.push(format!(
            "  {layout:<6} hybrid p50 {p50:>6.1} ms   max {max:>6.1} ms"
        ));
        variants.push(json!({"name": layout, "hybrid_p50_ms": p50, "hybrid_max_ms": max, "hybrid_tasks": hybrid.len()}));
    }
    if print {
        println!("summary:");
        for line in summary {
            println!("{line}");
        }
        println!(
            "(ideal hybrid cost: {} ms; in `mixed` the hybrids wait behind CPU-only work)\n",
            (HYBRID_IO + HYBRID_CPU).as_millis()
        );
    }
    Ok(Report {
        experiment: "mixed",
        variants,
    })
}

/// Returns the hybrid and CPU-only task costs, measured from a common start.
fn run_layout(split: bool) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let io = lab_runtime("io", 1, true)?;
    let cpu = if split {
        Some(lab_runtime("cpu", 1, false)?)
    } else {
        None
    };
    let cpu_handle = cpu
        .as_ref()
        .map_or_else(|| io.handle().clone(), |c| c.handle().clone());
    let start = Instant::now();
    let hybrids: Vec<_> = (0..HYBRID_TASKS)
        .map(|_| {
            io.spawn(async move {
                tokio::time::sleep(HYBRID_IO).await;
                spin_for(HYBRID_CPU);
                start.elapsed()
            })
        })
        .collect();
    let cpus: Vec<_> = (0..CPU_TASKS)
        .map(|_| {
            cpu_handle.spawn(async move {
                spin_for(CPU_ONLY);
                start.elapsed()
            })
        })
        .collect();
    let hybrid = io.block_on(futures::future::try_join_all(hybrids))?;
    let cpu_costs = io.block_on(futures::future::try_join_all(cpus))?;
    if let Some(cpu) = cpu {
        cpu.shutdown_background();
    }
    io.shutdown_background();
    Ok((hybrid, cpu_costs))
}
