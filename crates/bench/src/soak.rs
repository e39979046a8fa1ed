//! `bench soak`: hours-long behaviour in minutes. Ingest at ~80% of measured capacity
//! with a small query load, sample the server's RSS, write p99 and watchdog stalls per
//! window, and require that they stay flat; then overload at 3x capacity and require
//! 503 + `Retry-After` (not errors, not an OOM) with bounded RSS.
//!
//! Verdicts (the process exits non-zero when one fails, so `scripts/soak` can gate):
//! - RSS: the last third's mean RSS is at most 1.5x the first third's + 64 MiB;
//! - latency: the last third's median window p99 is at most 2x the first third's
//!   + 50 ms;
//! - stalls: no watchdog stall on `io`, `write` or `query` in the last third;
//! - overload: every answer is 204 or 503 with `Retry-After`, the server stays up, and
//!   its peak RSS stays under the soak peak + 3x the write buffer (memtables may hold
//!   up to 2x, and writes in flight up to 1x more).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::json;

use super::interference::{Batches, closed_loop_capacity, stalls, write_url};
use super::server::{ChildServer, current_rss, peak_rss};
use super::stats::Dist;

#[derive(Debug, clap::Args)]
pub(crate) struct SoakArgs {
    /// How long the steady phase runs.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Length of one sampling window.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// Steady load in rows/s; default: `--load` x the capacity measured at the start.
    #[arg(long)]
    rate: Option<f64>,
    /// Steady load as a fraction of the measured capacity.
    #[arg(long, default_value_t = 0.8)]
    load: f64,
    /// Overload as a multiple of the measured capacity (0 skips the overload phase).
    #[arg(long, default_value_t = 3.0)]
    overload: f64,
    /// How long the overload phase runs.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    overload_duration: Duration,
    /// TSBS hosts in the generated data.
    #[arg(long, default_value_t = 100)]
    hosts: usize,
    /// Lines per request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// The server's write buffer (`--write-buffer`), also its in-flight write budget
    /// (`--max-inflight-write-bytes`): small, so overload reaches backpressure quickly.
    #[arg(long, default_value = "64MiB")]
    write_buffer: String,
    /// How long each half of the hostile-client phase runs (quiet, then beside stalled
    /// uploads, slowloris, a heavy-join loop and a wrong-token loop); 0 skips it.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    hostile_duration: Duration,
    /// Report the verdicts but exit 0 even if one fails (for smoke tests).
    #[arg(long)]
    report_only: bool,
    /// Directory for results.json.
    #[arg(long, default_value = "bench-out/soak")]
    out: PathBuf,
}

/// One sampling window of the steady phase.
#[derive(Debug, Clone, Serialize)]
struct Window {
    at_s: f64,
    /// How far the load generator is behind its schedule (0 when it keeps up).
    behind_s: f64,
    rss_bytes: u64,
    writes: Dist,
    write_errors: usize,
    queries: usize,
    /// Watchdog stalls per runtime, cumulative.
    stalls: Vec<(String, u64)>,
}

#[derive(Debug, Serialize)]
struct Overload {
    offered_rows_per_s: f64,
    accepted: usize,
    rejected_503: usize,
    rejected_without_retry_after: usize,
    other_errors: usize,
    /// The first few of those other outcomes (status or client error), for diagnosis.
    other_samples: Vec<String>,
    /// Requests not sent because the client's in-flight cap was reached.
    client_dropped: usize,
    peak_rss_bytes: u64,
    rss_bound_bytes: u64,
    server_alive: bool,
}

/// Client-side cap on requests in flight, so overload measures the server, not an
/// unbounded queue in the load generator.
const MAX_IN_FLIGHT: usize = 256;

pub(crate) fn run(args: SoakArgs) -> anyhow::Result<()> {
    let rt = super::client_runtime(&args.out)?;
    rt.block_on(run_async(args))
}

async fn run_async(args: SoakArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = ChildServer::start(
        dir.path(),
        &[
            "--write-buffer",
            &args.write_buffer,
            "--max-inflight-write-bytes",
            &args.write_buffer,
            // So the hostile phase's wrong-token loop meets the failed-auth delay.
            "--auth-token",
            super::hostile::TOKEN,
        ],
        &[],
    )?;
    let mut auth = reqwest::header::HeaderMap::new();
    auth.insert(
        reqwest::header::AUTHORIZATION,
        format!("Token {}", super::hostile::TOKEN).parse()?,
    );
    let client = reqwest::Client::builder().default_headers(auth).build()?;
    let gen_ = Arc::new(Mutex::new(Batches::new(args.hosts, args.batch)));

    eprintln!("measuring capacity (5 s, 4 closed-loop clients)...");
    let capacity = closed_loop_capacity(&client, &server.base, &gen_).await?;
    let rate = args.rate.unwrap_or(capacity * args.load);
    eprintln!(
        "capacity {capacity:.0} rows/s; soaking at {rate:.0} rows/s for {:?}",
        args.duration
    );

    let windows = steady(&client, &server, &gen_, rate, &args).await?;
    let steady_verdict = verdict(&windows);
    let soak_peak = windows.iter().map(|w| w.rss_bytes).max().unwrap_or(0);

    let hostile = if args.hostile_duration.is_zero() {
        None
    } else {
        Some(
            super::hostile::run(
                &client,
                &server,
                &gen_,
                rate,
                args.batch,
                args.hostile_duration,
            )
            .await?,
        )
    };

    let overload = if args.overload > 0.0 {
        let write_buffer: u64 = args
            .write_buffer
            .parse::<bulkhead_frontend::units::ByteSize>()
            .map_err(|e| anyhow::anyhow!("--write-buffer: {e}"))?
            .as_u64();
        let bound = soak_peak + 3 * write_buffer;
        let offered = capacity * args.overload;
        eprintln!(
            "overload at {offered:.0} rows/s for {:?}",
            args.overload_duration
        );
        Some(overload_phase(&client, &server, &gen_, offered, bound, &args).await?)
    } else {
        None
    };

    print_report(&windows, &steady_verdict, overload.as_ref());
    let mut failures = steady_verdict.failures.clone();
    if let Some(h) = &hostile {
        print_hostile(h);
        failures.extend(h.failures());
    }
    if let Some(o) = &overload {
        if o.other_errors > 0 || o.rejected_without_retry_after > 0 {
            failures.push(format!(
                "overload: {} errors other than 503, {} 503s without Retry-After",
                o.other_errors, o.rejected_without_retry_after
            ));
        }
        if !o.server_alive {
            failures.push("overload: the server died".into());
        }
        if o.peak_rss_bytes > o.rss_bound_bytes {
            failures.push(format!(
                "overload: peak RSS {} MiB over the bound {} MiB",
                o.peak_rss_bytes >> 20,
                o.rss_bound_bytes >> 20
            ));
        }
    }
    let results = json!({
        "benchmark": "soak",
        "capacity_rows_per_s": capacity,
        "steady_rows_per_s": rate,
        "duration_s": args.duration.as_secs_f64(),
        "windows": windows,
        "flat": steady_verdict.failures.is_empty(),
        "checks": steady_verdict.checks,
        "hostile": hostile,
        "overload": overload,
        "failures": failures,
    });
    let path = args.out.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;
    eprintln!("wrote {}", path.display());
    if !failures.is_empty() && !args.report_only {
        bail!("soak failed:\n- {}", failures.join("\n- "));
    }
    Ok(())
}

/// Open-loop ingest at `rate` plus one small query every 2 s, sampled per window.
async fn steady(
    client: &reqwest::Client,
    server: &ChildServer,
    gen_: &Arc<Mutex<Batches>>,
    rate: f64,
    args: &SoakArgs,
) -> anyhow::Result<Vec<Window>> {
    let url = write_url(&server.base);
    let every = Duration::from_secs_f64(args.batch as f64 / rate.max(1.0));
    let t0 = Instant::now();
    let end = t0 + args.duration;
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
    let errors = Arc::new(AtomicUsize::new(0));
    let queries = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let query_task = {
        let (client, base, queries) = (client.clone(), server.base.clone(), Arc::clone(&queries));
        tokio::spawn(async move {
            let q = "select hostname, max(usage_user) from cpu where time > now() - interval '1 minute' group by hostname";
            while Instant::now() < end {
                let ok = client
                    .get(format!("{base}/api/v1/sql"))
                    .query(&[("db", "bench"), ("q", q), ("format", "csv")])
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    queries.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };
    let mut windows = Vec::new();
    let mut due = Instant::now();
    let mut next_window = t0 + args.window;
    // Wall-clock bound: if the client cannot keep up with the schedule it stops on time
    // anyway, and the shortfall is reported (`behind_s`) instead of stretching the run.
    while Instant::now() < end {
        tokio::time::sleep_until(due.into()).await;
        if in_flight.load(Ordering::Relaxed) < MAX_IN_FLIGHT {
            let body = gen_.lock().next();
            let (client, url) = (client.clone(), url.clone());
            let (latencies, errors, in_flight) = (
                Arc::clone(&latencies),
                Arc::clone(&errors),
                Arc::clone(&in_flight),
            );
            let scheduled = due;
            in_flight.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let ok = client
                    .post(&url)
                    .body(body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    latencies
                        .lock()
                        .push(scheduled.elapsed().as_secs_f64() * 1e3);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        } else {
            errors.fetch_add(1, Ordering::Relaxed);
        }
        due += every;
        if Instant::now() >= next_window {
            let window_latencies = std::mem::take(&mut *latencies.lock());
            let w = Window {
                at_s: t0.elapsed().as_secs_f64(),
                behind_s: Instant::now().saturating_duration_since(due).as_secs_f64(),
                rss_bytes: current_rss(server.pid()).unwrap_or(0),
                writes: Dist::of(&window_latencies),
                write_errors: errors.swap(0, Ordering::Relaxed),
                queries: queries.swap(0, Ordering::Relaxed),
                stalls: stalls(client, &server.base).await.unwrap_or_default(),
            };
            // One progress line per window (long runs are often not on a terminal).
            eprintln!(
                "  {:>6.0}/{} s  rss {} MiB  write p99 {:.0} ms  errors {}  behind {:.1} s",
                w.at_s,
                args.duration.as_secs(),
                w.rss_bytes >> 20,
                w.writes.p99_ms,
                w.write_errors,
                w.behind_s
            );
            windows.push(w);
            next_window += args.window;
        }
    }
    query_task.await?;
    while in_flight.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(windows)
}

#[derive(Debug, Clone, Default)]
struct Verdict {
    checks: serde_json::Value,
    failures: Vec<String>,
}

/// Compare the first and last thirds of the windows (the first window is warm-up).
fn verdict(windows: &[Window]) -> Verdict {
    let w = windows.get(1..).unwrap_or_default();
    if w.len() < 3 {
        return Verdict {
            checks: json!({"note": "fewer than 4 windows: nothing to compare"}),
            failures: Vec::new(),
        };
    }
    let third = w.len() / 3;
    let (first, last) = (&w[..third], &w[w.len() - third..]);
    let mean_rss =
        |s: &[Window]| s.iter().map(|x| x.rss_bytes as f64).sum::<f64>() / s.len() as f64;
    let median_p99 = |s: &[Window]| {
        let mut v: Vec<f64> = s.iter().map(|x| x.writes.p99_ms).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let stalls_of = |x: &Window| -> u64 {
        x.stalls
            .iter()
            .filter(|(r, _)| matches!(r.as_str(), "io" | "write" | "query"))
            .map(|(_, n)| n)
            .sum()
    };
    let (rss_a, rss_b) = (mean_rss(first), mean_rss(last));
    let (p99_a, p99_b) = (median_p99(first), median_p99(last));
    let stalls_last = stalls_of(&w[w.len() - 1]) - stalls_of(&w[w.len() - third - 1]);
    let mut failures = Vec::new();
    if rss_b > rss_a * 1.5 + 64.0 * 1024.0 * 1024.0 {
        failures.push(format!(
            "RSS grew: {:.0} MiB -> {:.0} MiB",
            rss_a / 1048576.0,
            rss_b / 1048576.0
        ));
    }
    if p99_b > p99_a * 2.0 + 50.0 {
        failures.push(format!("write p99 grew: {p99_a:.1} ms -> {p99_b:.1} ms"));
    }
    if stalls_last > 0 {
        failures.push(format!(
            "{stalls_last} watchdog stalls on io/write/query in the last third"
        ));
    }
    Verdict {
        checks: json!({
            "rss_first_third_mib": rss_a / 1048576.0,
            "rss_last_third_mib": rss_b / 1048576.0,
            "write_p99_first_third_ms": p99_a,
            "write_p99_last_third_ms": p99_b,
            "io_write_query_stalls_last_third": stalls_last,
        }),
        failures,
    }
}

/// Open-loop ingest at `offered` rows/s: count what the server answers.
async fn overload_phase(
    client: &reqwest::Client,
    server: &ChildServer,
    gen_: &Arc<Mutex<Batches>>,
    offered: f64,
    rss_bound: u64,
    args: &SoakArgs,
) -> anyhow::Result<Overload> {
    let url = write_url(&server.base);
    let every = Duration::from_secs_f64(args.batch as f64 / offered.max(1.0));
    let end = Instant::now() + args.overload_duration;
    let counts: Arc<Mutex<[usize; 4]>> = Arc::default(); // ok, 503, 503 w/o RA, other
    let others: Arc<Mutex<Vec<String>>> = Arc::default();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut dropped = 0;
    let mut peak = 0;
    let mut due = Instant::now();
    let mut next_sample = Instant::now();
    while Instant::now() < end {
        tokio::time::sleep_until(due.into()).await;
        if in_flight.load(Ordering::Relaxed) < MAX_IN_FLIGHT {
            let body = gen_.lock().next();
            let (client, url, counts, in_flight, others) = (
                client.clone(),
                url.clone(),
                Arc::clone(&counts),
                Arc::clone(&in_flight),
                Arc::clone(&others),
            );
            in_flight.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let slot = match client.post(&url).body(body).send().await {
                    Ok(r) if r.status().is_success() => 0,
                    Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                        if r.headers().contains_key(reqwest::header::RETRY_AFTER) {
                            1
                        } else {
                            2
                        }
                    }
                    Ok(r) => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        note(&others, format!("{status}: {body}"));
                        3
                    }
                    Err(e) => {
                        note(&others, format!("client error: {}", error_chain(&e)));
                        3
                    }
                };
                counts.lock()[slot] += 1;
                in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        } else {
            dropped += 1;
        }
        due += every;
        if Instant::now() >= next_sample {
            peak = peak.max(current_rss(server.pid()).unwrap_or(0));
            next_sample += Duration::from_millis(500);
        }
    }
    while in_flight.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // VmHWM: the lifetime peak, so it covers moments between samples too.
    peak = peak.max(peak_rss(server.pid()).unwrap_or(0));
    let alive = client
        .get(format!("{}/health", server.base))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    let c = *counts.lock();
    Ok(Overload {
        offered_rows_per_s: offered,
        accepted: c[0],
        rejected_503: c[1] + c[2],
        rejected_without_retry_after: c[2],
        other_errors: c[3],
        other_samples: others.lock().clone(),
        client_dropped: dropped,
        peak_rss_bytes: peak,
        rss_bound_bytes: rss_bound,
        server_alive: alive,
    })
}

/// Keep the first few unexpected outcomes.
fn note(samples: &Mutex<Vec<String>>, what: String) {
    let mut s = samples.lock();
    if s.len() < 5 {
        s.push(what);
    }
}

fn print_report(windows: &[Window], v: &Verdict, overload: Option<&Overload>) {
    println!(
        "{:>8} {:>9} {:>9} {:>9} {:>7} {:>8} {:>8}  stalls (cumulative)",
        "t (s)", "RSS MiB", "p50 ms", "p99 ms", "errors", "queries", "behind s"
    );
    for w in windows {
        let stalls: Vec<String> = w
            .stalls
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        println!(
            "{:>8.0} {:>9} {:>9.1} {:>9.1} {:>7} {:>8} {:>8.1}  {}",
            w.at_s,
            w.rss_bytes >> 20,
            w.writes.p50_ms,
            w.writes.p99_ms,
            w.write_errors,
            w.queries,
            w.behind_s,
            stalls.join(", ")
        );
    }
    println!("flatness: {}", v.checks);
    if let Some(o) = overload {
        println!(
            "overload {:.0} rows/s: {} accepted, {} x 503 ({} without Retry-After), {} other errors, {} not sent (client cap); peak RSS {} MiB (bound {} MiB); server alive: {}",
            o.offered_rows_per_s,
            o.accepted,
            o.rejected_503,
            o.rejected_without_retry_after,
            o.other_errors,
            o.client_dropped,
            o.peak_rss_bytes >> 20,
            o.rss_bound_bytes >> 20,
            o.server_alive
        );
    }
}

fn print_hostile(h: &super::hostile::Hostile) {
    println!(
        "hostile clients: write p99 {:.1} -> {:.1} ms ({:.2}x), query p99 {:.1} -> {:.1} ms \
         ({:.2}x), peak RSS {} MiB, server alive: {}",
        h.quiet_write_p99(),
        h.hostile_write_p99(),
        h.write_p99_ratio,
        h.quiet_query_p99(),
        h.hostile_query_p99(),
        h.query_p99_ratio,
        h.peak_rss_bytes >> 20,
        h.server_alive
    );
}

/// `e` and its sources, `: `-separated (reqwest's own message names none of them).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
