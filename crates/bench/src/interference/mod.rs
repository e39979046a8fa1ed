//! `bench interference`: the seed's experiment at database scale.
//!
//! For each runtime mode (`isolated`, then `shared`), a fresh server on the S3-like
//! latency-injecting store gets a steady open-loop ingest load (about half its
//! capacity) with a flush every half second:
//! - phase A: just that;
//! - phase B: the same, while compaction is kept saturated (a side table, written as
//!   small SSTs before phase A, is rewritten back to back) and a heavy query loops.
//!
//! Every write ack and every flush is timed. The report gives p50/p99/max per phase, the
//! ratio B/A of the p99s, and the watchdog's stall counts during B. Isolation works when
//! the isolated ratios stay near 1 while the shared ones grow.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use parking_lot::Mutex;
use serde_json::json;

use super::server::ChildServer;
use super::tsbs;

mod pause;
mod report;
mod sched_wait;

use bulkhead_runtime::latency::HistogramSnapshot;
use report::{CpuTimes, ModeResult, ModeRun, Sample, pool, print_table};

#[derive(Debug, clap::Args)]
pub(crate) struct InterferenceArgs {
    /// Length of each phase.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    phase: Duration,
    /// Repetitions of (isolated A, B, shared A, B) at each rate. The report pools every
    /// round's samples and also gives the median and the worst round.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Ingest rate in rows/s; 0 = the `--load-shares` of the capacity probed at the start.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Ingest rates to run, as shares of the probed capacity (ignored with `--rate`).
    #[arg(long, value_delimiter = ',', default_value = "0.5,0.75")]
    load_shares: Vec<f64>,
    /// Lines per write request (small, so a phase has many acks to take a p99 of).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// TSBS hosts (series) in the ingest load.
    #[arg(long, default_value_t = 100)]
    hosts: usize,
    /// Latency injected into every object-store call (like S3).
    #[arg(long, default_value = "20ms..80ms")]
    store_latency: String,
    /// Ingest (and flushes) at the same rate before phase A, not recorded: a fresh
    /// server's first second (new connections, tables, series, memtables) is start-up,
    /// not steady state, and would inflate phase A's p99.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Interval between flushes.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    flush_every: Duration,
    /// What phase B adds: `compaction`, `query`, or both (to tell their effects apart);
    /// `none` is the control, phase A twice.
    #[arg(long, value_delimiter = ',', default_value = "compaction,query")]
    load: Vec<PhaseBLoad>,
    /// A diagnostic, not a configuration to quote: put each server's WAL in a fresh
    /// directory under this one (e.g. `/dev/shm`, a tmpfs). With the WAL off the disk, a
    /// run shows how much of the leak is the disk's (fdatasync stalls behind other
    /// writes) rather than CPU scheduling; acks on a tmpfs are not durable.
    #[arg(long)]
    wal_dir_under: Option<PathBuf>,
    /// A diagnostic, the converse of `--wal-dir-under`: put each server's object store
    /// (SSTs, manifest) in a fresh directory under this one (e.g. `/dev/shm`), so that
    /// flush and compaction output no longer shares the WAL's disk, as with real S3. A
    /// run shows whether the WAL's slow syncs come from the server's own object writes.
    #[arg(long)]
    store_dir_under: Option<PathBuf>,
    /// Directory for results.json and interference.svg.
    #[arg(long, default_value = "bench-out/interference")]
    out: PathBuf,
}

/// A load that phase B adds to the steady ingest.
#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
enum PhaseBLoad {
    /// Many small SSTs of a side table, flushed and merged continuously.
    Compaction,
    /// Two clients looping a full-scan GROUP BY over the ingested table.
    Query,
    /// Nothing: phase B is phase A again. A control: its ratios show what the harness
    /// and the server's own drift (a longer life, more SSTs) add with no load at all.
    None,
}

pub(crate) fn run(args: InterferenceArgs) -> anyhow::Result<()> {
    if args.load.contains(&PhaseBLoad::None) && args.load.len() > 1 {
        bail!(
            "--load none is the control (phase B adds nothing); it cannot be combined with other loads"
        );
    }
    let rt = super::client_runtime(&args.out)?;
    rt.block_on(run_async(args))
}

async fn run_async(args: InterferenceArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    // (rows/s, share of capacity)
    let rates: Vec<(u64, Option<f64>)> = if args.rate > 0 {
        vec![(args.rate, None)]
    } else {
        let capacity = probe_capacity(&client, &args).await?;
        let rates: Vec<_> = args
            .load_shares
            .iter()
            .map(|&s| ((capacity * s) as u64, Some(s)))
            .collect();
        eprintln!(
            "capacity {capacity:.0} rows/s -> ingest rates {:?} rows/s",
            rates.iter().map(|r| r.0).collect::<Vec<_>>()
        );
        rates
    };
    const MODES: [&str; 2] = ["isolated", "shared"];
    let mut per_rate = Vec::new();
    let mut csv = String::from("rate,mode,round,at_s,phase,ms\n");
    for (k, &(rate, share)) in rates.iter().enumerate() {
        let mut runs: [Vec<ModeRun>; 2] = [Vec::new(), Vec::new()];
        for round in 0..args.rounds {
            for (i, mode) in MODES.iter().enumerate() {
                eprintln!(
                    "rate {rate} rows/s, round {}/{}: mode {mode}",
                    round + 1,
                    args.rounds
                );
                runs[i].push(run_mode(&client, &args, mode, rate).await?);
            }
        }
        let results: Vec<ModeResult> = MODES
            .iter()
            .zip(&runs)
            .map(|(mode, runs)| pool(mode, runs))
            .collect();
        print_table(&results, rate, share, &args.load);
        // Every write ack of every round, for plotting or correlating elsewhere.
        for (mode, runs) in MODES.iter().zip(&runs) {
            for (round, r) in runs.iter().enumerate() {
                for s in &r.writes {
                    let phase = if s.at_s >= r.b_span.0 { "B" } else { "A" };
                    csv.push_str(&format!(
                        "{rate},{mode},{},{:.4},{phase},{:.3}\n",
                        round + 1,
                        s.at_s,
                        s.ms
                    ));
                }
            }
        }
        // The plot shows the last round of the first (lower) rate.
        if k == 0 {
            super::plot::latency_over_time(
                &args.out.join("interference.svg"),
                &results
                    .iter()
                    .map(|r| {
                        (
                            r.mode.as_str(),
                            r.write_samples.iter().map(|s| (s.at_s, s.ms)).collect(),
                            r.phase_b_span,
                        )
                    })
                    .collect::<Vec<_>>(),
            )?;
        }
        per_rate.push(json!({
            "rate_rows_per_s": rate,
            "share_of_capacity": share,
            "modes": results,
        }));
    }
    let json = json!({
        "benchmark": "interference",
        "batch": args.batch,
        "phase_s": args.phase.as_secs_f64(),
        "rounds": args.rounds,
        "phase_b_load": args.load.iter().map(|l| format!("{l:?}").to_lowercase()).collect::<Vec<_>>(),
        "store_latency": args.store_latency,
        "rates": per_rate,
    });
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    std::fs::write(args.out.join("write_samples.csv"), csv)?;
    eprintln!(
        "wrote {}/results.json, write_samples.csv and interference.svg",
        args.out.display()
    );
    Ok(())
}

fn start_server(
    args: &InterferenceArgs,
    mode: &str,
) -> anyhow::Result<(Vec<tempfile::TempDir>, ChildServer)> {
    let dir = tempfile::tempdir()?;
    // Compaction runs only when phase B asks for it, never behind phase A's back.
    let mut server_args = vec![
        "--runtime-mode".to_string(),
        mode.to_string(),
        "--compaction-enabled".into(),
        "false".into(),
        // The open-loop writer opens a connection per request in flight: when the shared
        // runtime stalls for a second at 1,350 requests/s, that is past the default 1,024,
        // and the refused requests (and the bench's own stats calls) would end the run.
        "--http-max-connections".into(),
        "16384".into(),
    ];
    let mut dirs = vec![dir];
    if let Some(under) = &args.wal_dir_under {
        let wal = tempfile::tempdir_in(under)
            .with_context(|| format!("creating a WAL directory under {}", under.display()))?;
        server_args.push("--wal-dir".into());
        server_args.push(wal.path().display().to_string());
        dirs.push(wal);
    }
    if let Some(under) = &args.store_dir_under {
        let store = tempfile::tempdir_in(under).with_context(|| {
            format!(
                "creating an object-store directory under {}",
                under.display()
            )
        })?;
        server_args.push("--object-store".into());
        server_args.push(format!("file://{}", store.path().display()));
        dirs.push(store);
    }
    let server = ChildServer::start(
        dirs[0].path(),
        &server_args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[(
            super::server::INJECT_LATENCY_ENV,
            args.store_latency.as_str(),
        )],
    )?;
    Ok((dirs, server))
}

/// The ingest rate the server sustains *with its flushes*, the capacity the load shares
/// are taken of: 4 closed-loop clients for 10 s with the benchmark's flush of `cpu`
/// every `--flush-every`, then one last flush of what is left; the rows acknowledged
/// over the time until that last flush returns.
///
/// Acknowledged rows alone (a burst) can overstate it: closed-loop writers are not held
/// back by a flush that falls behind. Counting the drain charges each row its encoding
/// and upload. (On 2 cores the two differ by 2-4 %: the flush keeps up; session 36,
/// `docs/benchmarks.md`.)
async fn probe_capacity(client: &reqwest::Client, args: &InterferenceArgs) -> anyhow::Result<f64> {
    let (_dir, server) = start_server(args, "isolated")?;
    let gen_ = Arc::new(Mutex::new(Batches::new(args.hosts, args.batch)));
    const SPAN: Duration = Duration::from_secs(10);
    let t0 = Instant::now();
    let flushes: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let flusher = tokio::spawn(flusher(
        client.clone(),
        server.base.clone(),
        args.flush_every,
        t0,
        SPAN,
        Arc::clone(&flushes),
    ));
    let rows = closed_loop_rows(client, &server.base, &gen_, SPAN).await?;
    let written = t0.elapsed();
    flusher.await??;
    let drain = Instant::now();
    client
        .post(format!("{}/api/v1/flush?db=bench&table=cpu", server.base))
        .send()
        .await?
        .error_for_status()?;
    let total = t0.elapsed();
    let flushes = flushes.lock();
    let slowest = flushes.iter().map(|f| f.ms).fold(0.0, f64::max);
    eprintln!(
        "capacity probe: {rows} rows acknowledged in {:.1} s ({:.0} rows/s), {} flushes \
         during it (slowest {slowest:.0} ms), the last flush {:.2} s: {:.0} rows/s \
         written and flushed",
        written.as_secs_f64(),
        rows as f64 / written.as_secs_f64(),
        flushes.len(),
        drain.elapsed().as_secs_f64(),
        rows as f64 / total.as_secs_f64(),
    );
    Ok(rows as f64 / total.as_secs_f64())
}

/// Rows/s that 4 closed-loop clients get acknowledged in 5 s.
pub(super) async fn closed_loop_capacity(
    client: &reqwest::Client,
    base: &str,
    gen_: &Arc<Mutex<Batches>>,
) -> anyhow::Result<f64> {
    let span = Duration::from_secs(5);
    let start = Instant::now();
    let rows = closed_loop_rows(client, base, gen_, span).await?;
    Ok(rows as f64 / start.elapsed().as_secs_f64())
}

/// Rows that 4 closed-loop clients get acknowledged in `span`.
async fn closed_loop_rows(
    client: &reqwest::Client,
    base: &str,
    gen_: &Arc<Mutex<Batches>>,
    span: Duration,
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + span;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, url, gen_) = (client.clone(), write_url(base), Arc::clone(gen_));
        tasks.push(tokio::spawn(async move {
            let mut rows = 0usize;
            while Instant::now() < deadline {
                let (body, n) = {
                    let mut g = gen_.lock();
                    (g.next(), g.batch)
                };
                if post(&client, &url, body).await.is_ok() {
                    rows += n;
                }
            }
            rows
        }));
    }
    let mut rows = 0;
    for t in tasks {
        rows += t.await?;
    }
    Ok(rows)
}

async fn run_mode(
    client: &reqwest::Client,
    args: &InterferenceArgs,
    mode: &str,
    rate: u64,
) -> anyhow::Result<ModeRun> {
    // Write back what earlier work (the previous round's server, a build, anything else
    // on the machine) left dirty in the page cache, so its writeback does not land in
    // this round and stall the WAL's fdatasync (see `CpuTimes`).
    let _ = std::process::Command::new("sync").status();
    let (dir, mut server) = start_server(args, mode)?;
    // A failed round says what the server logged (its directory goes with the round).
    measure(client, args, rate, &server).await.map_err(|e| {
        let log = std::fs::read_to_string(dir[0].path().join("server.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let status = server.exit_status();
        e.context(format!(
            "{mode} round failed; the server {status}; the last lines of its log:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ))
    })
}

/// One round of one mode against a started `server`: warm-up, phase A, phase B.
async fn measure(
    client: &reqwest::Client,
    args: &InterferenceArgs,
    rate: u64,
    server: &ChildServer,
) -> anyhow::Result<ModeRun> {
    let base = server.base.clone();
    // Written before phase A, so both phases see the same ingest; phase B differs only
    // by the compaction (and query) work.
    prepare_churn(client, &base).await?;
    let gen_ = Arc::new(Mutex::new(Batches::new(args.hosts, args.batch)));
    if !args.warmup.is_zero() {
        open_loop_writer(
            client.clone(),
            write_url(&base),
            Arc::clone(&gen_),
            rate,
            Instant::now(),
            args.warmup,
            Arc::default(),
            Arc::default(),
        )
        .await?;
    }
    let stages_start = write_stages(client, &base).await?;
    let cpu_start = CpuTimes::now();
    // The server's threads and this process's load generator, per phase.
    let pids = [server.pid(), std::process::id()];
    let threads_start = sched_wait::ThreadTimes::now(&pids);
    let t0 = Instant::now();
    // To line the samples' `at_s` up with a trace taken beside the run (`perf record -k
    // CLOCK_MONOTONIC`): phase A's start on the monotonic clock, printed once per round.
    tracing::info!(
        monotonic_s = pause::monotonic_now_s(),
        "phase A starts (samples' at_s = 0)"
    );
    let writes: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let flushes: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let errors = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    // Phase A, then phase B; the writer and the flusher run through both.
    let total = args.phase * 2;
    let writer = tokio::spawn(open_loop_writer(
        client.clone(),
        write_url(&base),
        Arc::clone(&gen_),
        rate,
        t0,
        total,
        Arc::clone(&writes),
        Arc::clone(&errors),
    ));
    let flusher = tokio::spawn(flusher(
        client.clone(),
        base.clone(),
        args.flush_every,
        t0,
        total,
        Arc::clone(&flushes),
    ));
    let steal = tokio::spawn(steal_sampler(t0, total));
    let pauses = pause::PauseDetector::start(t0);
    tokio::time::sleep(args.phase).await;
    let errors_a = errors.load(std::sync::atomic::Ordering::Relaxed);
    let b_start = t0.elapsed().as_secs_f64();
    let cpu_mid = CpuTimes::now();
    let threads_mid = sched_wait::ThreadTimes::now(&pids);
    let stalls_before = stalls(client, &base).await?;
    let stages_mid = write_stages(client, &base).await?;
    let b_deadline = Instant::now() + args.phase;
    let churn = args
        .load
        .contains(&PhaseBLoad::Compaction)
        .then(|| tokio::spawn(compaction_loop(client.clone(), base.clone(), b_deadline)));
    let query_clients = if args.load.contains(&PhaseBLoad::Query) {
        2
    } else {
        0
    };
    let queries: Vec<_> = (0..query_clients)
        .map(|_| tokio::spawn(query_loop(client.clone(), base.clone(), b_deadline)))
        .collect();
    let compactions = match churn {
        Some(churn) => churn.await??,
        None => 0,
    };
    let mut queries_ms = Vec::new();
    for q in queries {
        queries_ms.extend(q.await??);
    }
    writer.await??;
    flusher.await??;
    let steal = steal.await?;
    let pauses = pauses.finish();
    let b_end = t0.elapsed().as_secs_f64();
    let cpu_end = CpuTimes::now();
    let threads_end = sched_wait::ThreadTimes::now(&pids);
    let stalls_after = stalls(client, &base).await?;
    let stages_end = write_stages(client, &base).await?;
    let errors_b = errors.load(std::sync::atomic::Ordering::Relaxed) - errors_a;

    let mut stall_delta = Vec::new();
    for (name, after) in &stalls_after {
        let before = stalls_before
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v);
        stall_delta.push((name.clone(), after - before));
    }
    let writes = writes.lock().clone();
    let flushes = flushes.lock().clone();
    // Each stage's latencies in phase A and in phase B (the server's histograms diffed).
    let stages = stages_end
        .into_iter()
        .filter_map(|(name, end)| {
            let start = stages_start.iter().find(|(n, _)| *n == name)?;
            let mid = stages_mid.iter().find(|(n, _)| *n == name)?;
            Some((name, mid.1.since(&start.1), end.since(&mid.1)))
        })
        .collect();
    Ok(ModeRun {
        stages,
        writes,
        flushes,
        b_span: (b_start, b_end),
        errors: (errors_a, errors_b),
        queries_ms,
        compactions,
        stalls: stall_delta,
        cpu: (cpu_mid.since(cpu_start), cpu_end.since(cpu_mid)),
        waits: (
            threads_mid.since(&threads_start),
            threads_end.since(&threads_mid),
        ),
        steal,
        pauses,
    })
}

/// CPU time stolen by the hypervisor in each 100 ms from `t0` for `total`, in ms of CPU
/// (`/proc/stat` counts it in clock ticks of 10 ms, all CPUs together).
async fn steal_sampler(t0: Instant, total: Duration) -> Vec<Sample> {
    const TICK_MS: f64 = 10.0;
    let mut out = Vec::new();
    let mut every = tokio::time::interval(Duration::from_millis(100));
    let mut last = CpuTimes::cpu_now().steal;
    while t0.elapsed() < total {
        every.tick().await;
        let now = CpuTimes::cpu_now().steal;
        out.push(Sample {
            at_s: t0.elapsed().as_secs_f64(),
            ms: now.saturating_sub(last) as f64 * TICK_MS,
        });
        last = now;
    }
    out
}

/// TSBS batches of line protocol, continuing in time across calls.
pub(super) struct Batches {
    generator: tsbs::Generator,
    pending: Vec<String>,
    pub(super) batch: usize,
}

impl Batches {
    pub(super) fn new(hosts: usize, batch: usize) -> Self {
        Self {
            generator: tsbs::Generator::new(hosts, tsbs::DEFAULT_START_NS, 42),
            pending: Vec::new(),
            batch: batch.max(1),
        }
    }

    pub(super) fn next(&mut self) -> String {
        while self.pending.len() < self.batch {
            let mut s = String::new();
            self.generator.write_interval(&mut s);
            self.pending.extend(s.lines().map(str::to_string));
        }
        let mut body = self
            .pending
            .drain(..self.batch)
            .collect::<Vec<_>>()
            .join("\n");
        body.push('\n');
        body
    }
}

pub(super) fn write_url(base: &str) -> String {
    format!("{base}/api/v2/write?bucket=bench&precision=ns")
}

async fn post(client: &reqwest::Client, url: &str, body: String) -> anyhow::Result<()> {
    let resp = client.post(url).body(body).send().await?;
    if !resp.status().is_success() {
        let status = resp.status();
        bail!("{url}: {status}: {}", resp.text().await.unwrap_or_default());
    }
    resp.bytes().await?;
    Ok(())
}

/// Open loop: a request is due every `batch / rate` seconds whether or not earlier ones
/// returned, and its latency counts from when it was due (no coordinated omission).
#[allow(clippy::too_many_arguments)]
async fn open_loop_writer(
    client: reqwest::Client,
    url: String,
    gen_: Arc<Mutex<Batches>>,
    rate: u64,
    t0: Instant,
    total: Duration,
    out: Arc<Mutex<Vec<Sample>>>,
    errors: Arc<std::sync::atomic::AtomicUsize>,
) -> anyhow::Result<()> {
    let batch = gen_.lock().batch as f64;
    let every = Duration::from_secs_f64(batch / rate.max(1) as f64);
    let mut due = Instant::now();
    let end = t0 + total;
    let mut inflight = Vec::new();
    while due < end {
        tokio::time::sleep_until(due.into()).await;
        let body = gen_.lock().next();
        let (client, url, out, errors) = (
            client.clone(),
            url.clone(),
            Arc::clone(&out),
            Arc::clone(&errors),
        );
        let scheduled = due;
        inflight.push(tokio::spawn(async move {
            let ok = post(&client, &url, body).await;
            let sample = Sample {
                at_s: scheduled.duration_since(t0).as_secs_f64(),
                ms: scheduled.elapsed().as_secs_f64() * 1e3,
            };
            match ok {
                Ok(()) => out.lock().push(sample),
                Err(e) => {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(error = %e, "write failed");
                }
            }
        }));
        due += every;
    }
    for t in inflight {
        t.await?;
    }
    Ok(())
}

async fn flusher(
    client: reqwest::Client,
    base: String,
    every: Duration,
    t0: Instant,
    total: Duration,
    out: Arc<Mutex<Vec<Sample>>>,
) -> anyhow::Result<()> {
    let url = format!("{base}/api/v1/flush?db=bench&table=cpu");
    while t0.elapsed() + every < total {
        tokio::time::sleep(every).await;
        let start = Instant::now();
        client.post(&url).send().await?.error_for_status()?;
        out.lock().push(Sample {
            at_s: start.duration_since(t0).as_secs_f64(),
            ms: start.elapsed().as_secs_f64() * 1e3,
        });
    }
    Ok(())
}

/// Before the phases: 120,000 rows of a side table, in 12 small SSTs over 4 time
/// segments, for phase B's compactions to chew on.
async fn prepare_churn(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let write = format!("{base}/api/v2/write?bucket=bench&precision=ns");
    let flush = format!("{base}/api/v1/flush?db=bench&table=churn");
    const HOUR_NS: u64 = 3_600_000_000_000;
    for round in 0..12u64 {
        let mut body = String::new();
        for i in 0..10_000u64 {
            // 8 hours (4 segments of 2 h), a row every 2.88 s per round.
            let t = 1_451_606_400_000_000_000u64 + (i * 8 * HOUR_NS / 10_000) + round;
            body.push_str(&format!(
                "churn,host=h{},rack=r{} a={}i,b={}.5,c=\"s{}\" {t}\n",
                i % 50,
                i % 7,
                round + i,
                i,
                i % 13
            ));
        }
        post(client, &write, body).await?;
        client.post(&flush).send().await?.error_for_status()?;
    }
    Ok(())
}

/// Keep compaction saturated: rewrite the side table's SSTs (fetch, decode, merge,
/// re-encode, upload) back to back until the deadline. Returns how many ran.
async fn compaction_loop(
    client: reqwest::Client,
    base: String,
    deadline: Instant,
) -> anyhow::Result<usize> {
    let compact = format!("{base}/api/v1/compact?db=bench&table=churn&rewrite=true");
    let mut compactions = 0;
    while Instant::now() < deadline {
        client.post(&compact).send().await?.error_for_status()?;
        compactions += 1;
    }
    Ok(compactions)
}

/// Loop a full-scan GROUP BY until the deadline; the latency of each completed query.
async fn query_loop(
    client: reqwest::Client,
    base: String,
    deadline: Instant,
) -> anyhow::Result<Vec<f64>> {
    let url = format!("{base}/api/v1/sql");
    let q = "select hostname, avg(usage_user), max(usage_system), min(usage_idle), count(*) \
             from cpu group by hostname order by hostname";
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        let start = Instant::now();
        client
            .get(&url)
            .query(&[("db", "bench"), ("q", q), ("format", "csv")])
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        latencies.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(latencies)
}

/// The server's write-stage latency histograms, from `/debug/latency`.
async fn write_stages(
    client: &reqwest::Client,
    base: &str,
) -> anyhow::Result<Vec<(String, HistogramSnapshot)>> {
    let body = client
        .get(format!("{base}/debug/latency"))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    #[derive(serde::Deserialize)]
    struct Stage {
        stage: String,
        #[serde(flatten)]
        hist: HistogramSnapshot,
    }
    #[derive(serde::Deserialize)]
    struct Body {
        write_stages: Vec<Stage>,
    }
    let body: Body = serde_json::from_slice(&body)?;
    Ok(body
        .write_stages
        .into_iter()
        .map(|s| (s.stage, s.hist))
        .collect())
}

/// Watchdog stall counts per runtime, from `/debug/bulkheads`.
pub(super) async fn stalls(
    client: &reqwest::Client,
    base: &str,
) -> anyhow::Result<Vec<(String, u64)>> {
    let body = client
        .get(format!("{base}/debug/bulkheads"))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(v["runtimes"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    (
                        r["runtime"].as_str().unwrap_or("?").to_string(),
                        r["stalls"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}
