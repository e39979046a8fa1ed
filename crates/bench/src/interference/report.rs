//! Pooling the rounds of `bench interference` and printing what they show: the pooled
//! p99 ratio B/A, and next to it each round's ratio, their median and the worst round,
//! with the number of samples behind every p99, so one lucky round cannot flatter.

use std::path::Path;

use bulkhead_runtime::latency::HistogramSnapshot;
use serde::Serialize;
use serde_json::json;

use super::PhaseBLoad;
use super::sched_wait::GroupWaits;
use crate::stats::Dist;

/// One timed event: when it started (s since the mode's start) and how long it took.
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct Sample {
    pub(super) at_s: f64,
    pub(super) ms: f64,
}

/// What one (phase A, phase B) run of a mode recorded.
pub(super) struct ModeRun {
    pub(super) writes: Vec<Sample>,
    pub(super) flushes: Vec<Sample>,
    pub(super) b_span: (f64, f64),
    pub(super) errors: (usize, usize),
    /// Latency of every query completed in phase B (phase A runs none).
    pub(super) queries_ms: Vec<f64>,
    pub(super) compactions: usize,
    pub(super) stalls: Vec<(String, u64)>,
    /// The server's write-stage latencies: (stage, phase A, phase B).
    pub(super) stages: Vec<(String, HistogramSnapshot, HistogramSnapshot)>,
    /// The whole machine's CPU time and disk writes in phase A and in phase B.
    pub(super) cpu: (CpuTimes, CpuTimes),
    /// Run-queue wait of the server's and the load generator's thread groups in phase A
    /// and in phase B (`sched_wait`).
    pub(super) waits: (GroupWaits, GroupWaits),
    /// CPU time the hypervisor stole in each 100 ms through both phases (`ms`: ms of
    /// CPU, all CPUs together), to line a stall of every thread up with the host's.
    pub(super) steal: Vec<Sample>,
    /// Per CPU, the late wake-ups of a real-time thread pinned to it (`pause.rs`): a CPU
    /// that did not run at all. Empty without real-time priority.
    pub(super) pauses: Vec<Vec<Sample>>,
}

/// Machine-wide CPU time over an interval, in clock ticks, from `/proc/stat`'s first
/// line. `steal` is time the hypervisor ran something else while this VM wanted a CPU:
/// no scheduling inside the server can win that back.
///
/// Also the bytes written to the machine's disks (`/proc/diskstats`, whole devices).
/// Another process's writes compete with the WAL's `fdatasync` (issue 24 measured
/// 24–37 ms syncs, and 100 ms acks, during a 280 MB writeback burst of a concurrent
/// build), so a phase that wrote much more than its neighbours was disturbed. (The
/// server's own `/proc/<pid>/io` `write_bytes` is no help here: it counts every
/// re-dirtied page, about 20 times the bytes the WAL really writes.)
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
pub(super) struct CpuTimes {
    pub(super) busy: u64,
    pub(super) idle: u64,
    pub(super) steal: u64,
    /// Bytes written to every disk device.
    pub(super) disk_written: u64,
}

impl CpuTimes {
    /// Now, since boot; zero where `/proc` is missing (not Linux).
    pub(super) fn now() -> Self {
        let mut t = Self::cpu_now();
        t.disk_written = std::fs::read_to_string("/proc/diskstats")
            .map(|s| disk_written(&s, |dev| Path::new("/sys/block").join(dev).exists()))
            .unwrap_or(0);
        t
    }

    /// The CPU times alone (no `disk_written`), for sampling often.
    pub(super) fn cpu_now() -> Self {
        std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| Self::parse(s.lines().next()?))
            .unwrap_or_default()
    }

    /// `cpu  user nice system idle iowait irq softirq steal ...`
    fn parse(line: &str) -> Option<Self> {
        let v: Vec<u64> = line
            .strip_prefix("cpu ")?
            .split_whitespace()
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        Some(Self {
            busy: at(0) + at(1) + at(2) + at(5) + at(6),
            idle: at(3) + at(4),
            steal: at(7),
            ..Self::default()
        })
    }

    pub(super) fn since(self, earlier: Self) -> Self {
        Self {
            busy: self.busy.saturating_sub(earlier.busy),
            idle: self.idle.saturating_sub(earlier.idle),
            steal: self.steal.saturating_sub(earlier.steal),
            disk_written: self.disk_written.saturating_sub(earlier.disk_written),
        }
    }

    fn add(&mut self, o: Self) {
        self.busy += o.busy;
        self.idle += o.idle;
        self.steal += o.steal;
        self.disk_written += o.disk_written;
    }

    /// Share of all CPU time that was busy, in percent.
    fn busy_pct(self) -> f64 {
        let all = self.busy + self.idle + self.steal;
        if all == 0 {
            0.0
        } else {
            self.busy as f64 * 100.0 / all as f64
        }
    }
}

/// Bytes written, summed over the whole devices of `/proc/diskstats` (`is_device`
/// tells a whole device from a partition, whose writes its device already counts).
fn disk_written(diskstats: &str, is_device: impl Fn(&str) -> bool) -> u64 {
    diskstats
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // major minor name reads ... sectors_written (the 10th field, 512-byte units)
            let name = *f.get(2)?;
            let sectors: u64 = f.get(9)?.parse().ok()?;
            (is_device(name) && !name.starts_with("loop") && !name.starts_with("ram"))
                .then_some(sectors * 512)
        })
        .sum()
}

impl ModeRun {
    fn split(v: &[Sample], b_start: f64, b: bool) -> Vec<f64> {
        v.iter()
            .filter(|s| (s.at_s >= b_start) == b)
            .map(|s| s.ms)
            .collect()
    }
}

#[derive(Debug, Default, Serialize)]
pub(super) struct Phase {
    writes: Dist,
    flushes: Dist,
    write_errors: usize,
    /// Queries completed, and their latency (phase B only).
    queries: Dist,
    compactions: usize,
}

/// One round's own p99 ratios, with the samples behind each p99.
#[derive(Debug, Clone, Serialize)]
struct RoundRatios {
    write_p99_ratio: f64,
    flush_p99_ratio: f64,
    write_samples: (usize, usize),
    flush_samples: (usize, usize),
    queries: usize,
    /// The round's slowest WAL write and sync (`wal_io`), phase A and B, ms: a bad round
    /// with a slow one waited for the disk; one without, for something else.
    wal_io_max_ms: (f64, f64),
    /// The most CPU time the hypervisor stole in one 100 ms window, phase A and B, ms
    /// (both CPUs together: 200 = the whole machine stopped).
    steal_peak_ms: (f64, f64),
    /// Per CPU, the longest time it did not run at all (`pause.rs`), phase A and B, ms;
    /// empty where the detector had no real-time priority.
    pause_ms: (Vec<f64>, Vec<f64>),
    /// How long the `write` threads and the WAL thread waited for a CPU, phase A and
    /// B, ms (`sched_wait`).
    write_cpu_wait_ms: (f64, f64),
}

/// Median and worst of the rounds' ratios.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(super) struct Spread {
    pub(super) median: f64,
    pub(super) worst: f64,
}

impl Spread {
    fn of(v: impl Iterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = v.filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Self {
            median,
            worst: v[v.len() - 1],
        }
    }
}

/// One write stage's latency in both phases (from the server's histograms, so each
/// figure is a bucket's upper bound, at most 9 % above the exact value).
#[derive(Debug, Clone, Serialize)]
struct StageLatency {
    stage: String,
    p50_ms: (f64, f64),
    p99_ms: (f64, f64),
    /// The slowest sample's bucket: a rare long stall shows here, not in the p99.
    max_ms: (f64, f64),
    count: (u64, u64),
}

/// Pools every round's stage histograms per phase.
fn pool_stages(runs: &[ModeRun]) -> Vec<StageLatency> {
    let mut pooled: Vec<(String, HistogramSnapshot, HistogramSnapshot)> = Vec::new();
    for r in runs {
        for (name, a, b) in &r.stages {
            match pooled.iter_mut().find(|(n, ..)| n == name) {
                Some((_, pa, pb)) => {
                    add(pa, a);
                    add(pb, b);
                }
                None => pooled.push((name.clone(), a.clone(), b.clone())),
            }
        }
    }
    fn add(into: &mut HistogramSnapshot, h: &HistogramSnapshot) {
        into.counts.resize(into.counts.len().max(h.counts.len()), 0);
        for (i, c) in h.counts.iter().enumerate() {
            into.counts[i] += c;
        }
        into.sum_nanos += h.sum_nanos;
    }
    pooled
        .into_iter()
        .map(|(stage, a, b)| StageLatency {
            stage,
            p50_ms: (a.quantile_ms(0.5), b.quantile_ms(0.5)),
            p99_ms: (a.quantile_ms(0.99), b.quantile_ms(0.99)),
            max_ms: (a.quantile_ms(1.0), b.quantile_ms(1.0)),
            count: (a.count(), b.count()),
        })
        .collect()
}

#[derive(Debug, Serialize)]
pub(super) struct ModeResult {
    pub(super) mode: String,
    /// p99 of every round's phase-B samples over p99 of every round's phase-A samples.
    pub(super) write_p99_ratio: f64,
    pub(super) flush_p99_ratio: f64,
    pub(super) write_rounds: Spread,
    pub(super) flush_rounds: Spread,
    phase_a: Phase,
    phase_b: Phase,
    stalls: serde_json::Map<String, serde_json::Value>,
    /// Machine CPU time per phase, every round summed (ticks, usually 10 ms).
    cpu: (CpuTimes, CpuTimes),
    /// Run-queue wait per thread group and phase, every round summed.
    waits: (GroupWaits, GroupWaits),
    /// Each write stage's p50/p99 in phase A and B, every round pooled: where a late
    /// ack spent its time.
    stages: Vec<StageLatency>,
    rounds: Vec<RoundRatios>,
    #[serde(skip)]
    pub(super) write_samples: Vec<Sample>,
    #[serde(skip)]
    pub(super) phase_b_span: (f64, f64),
}

/// Pool the rounds of one mode: distributions over every round's samples together.
pub(super) fn pool(mode: &str, runs: &[ModeRun]) -> ModeResult {
    let mut w = (Vec::new(), Vec::new());
    let mut f = (Vec::new(), Vec::new());
    let mut q = Vec::new();
    let mut rounds = Vec::new();
    let mut stalls = serde_json::Map::new();
    let (mut phase_a, mut phase_b) = (Phase::default(), Phase::default());
    let mut cpu = (CpuTimes::default(), CpuTimes::default());
    let mut waits = (GroupWaits::default(), GroupWaits::default());
    for r in runs {
        cpu.0.add(r.cpu.0);
        cpu.1.add(r.cpu.1);
        waits.0.add(&r.waits.0);
        waits.1.add(&r.waits.1);
        let b0 = r.b_span.0;
        let (wa, wb) = (
            ModeRun::split(&r.writes, b0, false),
            ModeRun::split(&r.writes, b0, true),
        );
        let (fa, fb) = (
            ModeRun::split(&r.flushes, b0, false),
            ModeRun::split(&r.flushes, b0, true),
        );
        rounds.push(RoundRatios {
            write_p99_ratio: ratio(Dist::of(&wb).p99_ms, Dist::of(&wa).p99_ms),
            flush_p99_ratio: ratio(Dist::of(&fb).p99_ms, Dist::of(&fa).p99_ms),
            write_samples: (wa.len(), wb.len()),
            flush_samples: (fa.len(), fb.len()),
            queries: r.queries_ms.len(),
            wal_io_max_ms: r
                .stages
                .iter()
                .find(|(name, _, _)| name == "wal_io")
                .map_or((f64::NAN, f64::NAN), |(_, a, b)| {
                    (a.quantile_ms(1.0), b.quantile_ms(1.0))
                }),
            steal_peak_ms: {
                let peak = |b: bool| {
                    ModeRun::split(&r.steal, b0, b)
                        .into_iter()
                        .fold(0.0, f64::max)
                };
                (peak(false), peak(true))
            },
            pause_ms: (
                super::pause::longest_per_cpu(&r.pauses, f64::MIN, b0),
                super::pause::longest_per_cpu(&r.pauses, b0, f64::MAX),
            ),
            write_cpu_wait_ms: (r.waits.0.write_wait_ms(), r.waits.1.write_wait_ms()),
        });
        w.0.extend(wa);
        w.1.extend(wb);
        f.0.extend(fa);
        f.1.extend(fb);
        q.extend_from_slice(&r.queries_ms);
        phase_a.write_errors += r.errors.0;
        phase_b.write_errors += r.errors.1;
        phase_b.compactions += r.compactions;
        for (name, n) in &r.stalls {
            let prev = stalls.get(name).and_then(|v| v.as_u64()).unwrap_or(0);
            stalls.insert(name.clone(), json!(prev + n));
        }
    }
    phase_a.writes = Dist::of(&w.0);
    phase_a.flushes = Dist::of(&f.0);
    phase_b.writes = Dist::of(&w.1);
    phase_b.flushes = Dist::of(&f.1);
    phase_b.queries = Dist::of(&q);
    let last = runs.last();
    ModeResult {
        mode: mode.to_string(),
        write_p99_ratio: ratio(phase_b.writes.p99_ms, phase_a.writes.p99_ms),
        flush_p99_ratio: ratio(phase_b.flushes.p99_ms, phase_a.flushes.p99_ms),
        write_rounds: Spread::of(rounds.iter().map(|r| r.write_p99_ratio)),
        flush_rounds: Spread::of(rounds.iter().map(|r| r.flush_p99_ratio)),
        phase_a,
        phase_b,
        stalls,
        cpu,
        waits,
        stages: pool_stages(runs),
        rounds,
        write_samples: last.map(|r| r.writes.clone()).unwrap_or_default(),
        phase_b_span: last.map(|r| r.b_span).unwrap_or_default(),
    }
}

fn ratio(b: f64, a: f64) -> f64 {
    if a > 0.0 { b / a } else { f64::NAN }
}

/// The report of one rate: a row per mode, then each round's ratios.
pub(super) fn print_table(
    results: &[ModeResult],
    rate: u64,
    share: Option<f64>,
    load: &[PhaseBLoad],
) {
    let adds: Vec<&str> = load
        .iter()
        .map(|l| match l {
            PhaseBLoad::Compaction => "saturated compaction",
            PhaseBLoad::Query => "a looping heavy query",
            PhaseBLoad::None => "nothing (the control)",
        })
        .collect();
    let of_capacity = share.map_or(String::new(), |s| {
        format!(" ({:.0}% of capacity)", s * 100.0)
    });
    println!(
        "\nbench interference: {rate} rows/s steady ingest{of_capacity}; phase B adds {}",
        adds.join(" + ")
    );
    println!(
        "{:<9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>14} {:>14}",
        "mode",
        "write B/A",
        "median",
        "worst",
        "flush B/A",
        "median",
        "worst",
        "write p99 A→B",
        "flush p99 A→B"
    );
    for r in results {
        println!(
            "{:<9} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>14} {:>14}",
            r.mode,
            r.write_p99_ratio,
            r.write_rounds.median,
            r.write_rounds.worst,
            r.flush_p99_ratio,
            r.flush_rounds.median,
            r.flush_rounds.worst,
            format!(
                "{:.1}→{:.1}",
                r.phase_a.writes.p99_ms, r.phase_b.writes.p99_ms
            ),
            format!(
                "{:.0}→{:.0}",
                r.phase_a.flushes.p99_ms, r.phase_b.flushes.p99_ms
            ),
        );
    }
    println!(
        "(B/A: p99 of every round's samples pooled; median and worst: of the rounds' own ratios)"
    );
    for r in results {
        println!(
            "{:<9} samples A/B: writes {}/{}, flushes {}/{}; write errors {}/{}; \
             phase B: {} queries (p50 {:.0} ms, p99 {:.0} ms), {} compactions; stalls in B {}",
            r.mode,
            r.phase_a.writes.count,
            r.phase_b.writes.count,
            r.phase_a.flushes.count,
            r.phase_b.flushes.count,
            r.phase_a.write_errors,
            r.phase_b.write_errors,
            r.phase_b.queries.count,
            r.phase_b.queries.p50_ms,
            r.phase_b.queries.p99_ms,
            r.phase_b.compactions,
            serde_json::Value::Object(r.stalls.clone())
        );
        println!(
            "{:<9} machine CPU busy A/B: {:.0}%/{:.0}%, steal A/B: {}/{} ticks; disk writes A/B: {}/{} MB",
            "",
            r.cpu.0.busy_pct(),
            r.cpu.1.busy_pct(),
            r.cpu.0.steal,
            r.cpu.1.steal,
            r.cpu.0.disk_written >> 20,
            r.cpu.1.disk_written >> 20,
        );
        println!(
            "{:<9} waited for a CPU A→B, ms (mean per run, µs): {}",
            "",
            GroupWaits::describe(&r.waits.0, &r.waits.1, 8)
        );
        let per_round: Vec<String> = r
            .rounds
            .iter()
            .map(|x| {
                let cpus = |v: &[f64]| {
                    v.iter()
                        .map(|ms| format!("{ms:.0}"))
                        .collect::<Vec<_>>()
                        .join(",")
                };
                format!(
                    "{:.2}/{:.2} ({}q, wal_io {:.0}/{:.0}, steal {:.0}/{:.0}, pause {}/{}, write cpu wait {:.0}/{:.0})",
                    x.write_p99_ratio,
                    x.flush_p99_ratio,
                    x.queries,
                    x.wal_io_max_ms.0,
                    x.wal_io_max_ms.1,
                    x.steal_peak_ms.0,
                    x.steal_peak_ms.1,
                    cpus(&x.pause_ms.0),
                    cpus(&x.pause_ms.1),
                    x.write_cpu_wait_ms.0,
                    x.write_cpu_wait_ms.1
                )
            })
            .collect();
        println!(
            "{:<9} per round (write/flush B/A p99; slowest wal_io A/B ms; most steal in 100 ms A/B, ms; \
             longest pause per CPU A/B, ms; write and WAL threads' wait for a CPU A/B, ms): {}",
            "",
            per_round.join("  ")
        );
        let stages: Vec<String> = r
            .stages
            .iter()
            .map(|s| format!("{} {:.2}→{:.2}", s.stage, s.p99_ms.0, s.p99_ms.1))
            .collect();
        println!("{:<9} stage p99 ms A→B: {}", "", stages.join(", "));
        let maxes: Vec<String> = r
            .stages
            .iter()
            .map(|s| format!("{} {:.1}→{:.1}", s.stage, s.max_ms.0, s.max_ms.1))
            .collect();
        println!("{:<9} stage max ms A→B: {}", "", maxes.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interference::sched_wait::GroupTimes;

    #[test]
    fn spread_takes_median_and_worst_of_finite_ratios() {
        let s = Spread::of([1.2, 0.9, f64::NAN, 1.6, 1.0].into_iter());
        assert_eq!((s.median, s.worst), (1.1, 1.6));
        let s = Spread::of([1.3, 0.8, 1.0].into_iter());
        assert_eq!((s.median, s.worst), (1.0, 1.3));
    }

    #[test]
    fn cpu_times_parse_proc_stat() {
        let a = CpuTimes::parse("cpu  100 5 20 1000 7 0 3 9 0 0").unwrap();
        assert_eq!(
            a,
            CpuTimes {
                busy: 128,
                idle: 1007,
                steal: 9,
                ..CpuTimes::default()
            }
        );
        let b = CpuTimes::parse("cpu  150 5 30 1100 7 0 3 19 0 0").unwrap();
        assert_eq!(b.since(a).steal, 10);
        assert!(CpuTimes::parse("cpu0 1 2 3").is_none());
    }

    #[test]
    fn disk_writes_sum_whole_devices_from_diskstats() {
        let stats = "\
 254       0 vda 100 0 800 10 2000 50 4096 70 0 90 80 0 0 0 0 0 0
 254       1 vda1 90 0 700 9 1900 40 4000 60 0 80 70 0 0 0 0 0 0
   7       0 loop0 1 0 8 0 5 0 999 0 0 0 0 0 0 0 0 0 0
 259       0 nvme0n1 1 0 8 0 5 0 10 0 0 0 0 0 0 0 0 0 0
";
        let is_device = |d: &str| !d.ends_with('1') || d == "nvme0n1";
        // vda and nvme0n1 (sectors of 512 bytes); the partition and the loop device not.
        assert_eq!(disk_written(stats, is_device), (4096 + 10) * 512);
        assert_eq!(disk_written("garbage\n", is_device), 0);
    }

    #[test]
    fn pool_counts_samples_and_queries_per_round() {
        let run = |slow: f64| ModeRun {
            writes: (0..200)
                .map(|i| Sample {
                    at_s: i as f64 / 10.0,
                    ms: if i >= 100 { slow } else { 1.0 },
                })
                .collect(),
            flushes: vec![],
            b_span: (10.0, 20.0),
            errors: (0, 0),
            queries_ms: vec![5.0; 7],
            compactions: 3,
            stalls: vec![("write".into(), 1)],
            stages: vec![],
            cpu: (
                CpuTimes::default(),
                CpuTimes {
                    busy: 3,
                    idle: 1,
                    steal: 1,
                    disk_written: 4 << 20,
                },
            ),
            steal: [(2.0, 10.0), (12.0, 30.0), (14.0, 20.0)]
                .into_iter()
                .map(|(at_s, ms)| Sample { at_s, ms })
                .collect(),
            pauses: vec![
                vec![Sample {
                    at_s: 15.0,
                    ms: 250.0,
                }],
                vec![],
            ],
            waits: (GroupWaits::default(), {
                let t = |wait_ms: u64| GroupTimes {
                    run_ns: 1,
                    wait_ns: wait_ms * 1_000_000,
                    runs: 1,
                };
                GroupWaits {
                    groups: [("bh-write", t(2)), ("bh-wal", t(1)), ("bh-query", t(50))]
                        .into_iter()
                        .map(|(g, t)| (g.to_string(), t))
                        .collect(),
                }
            }),
        };
        let r = pool("isolated", &[run(2.0), run(4.0), run(1.0)]);
        assert_eq!(r.rounds[0].write_cpu_wait_ms, (0.0, 3.0));
        assert_eq!(r.waits.1.groups["bh-query"].wait_ns, 150_000_000);
        assert_eq!(r.rounds.len(), 3);
        assert_eq!(r.rounds[0].write_samples, (100, 100));
        assert_eq!(r.rounds[0].steal_peak_ms, (10.0, 30.0));
        assert_eq!(r.rounds[0].pause_ms, (vec![0.0, 0.0], vec![250.0, 0.0]));
        assert_eq!((r.write_rounds.median, r.write_rounds.worst), (2.0, 4.0));
        assert_eq!(r.phase_b.queries.count, 21);
        assert_eq!(r.phase_b.compactions, 9);
        assert_eq!(r.stalls["write"], json!(3));
        assert_eq!((r.cpu.1.busy, r.cpu.1.steal), (9, 3));
        assert_eq!(r.cpu.1.disk_written, 12 << 20);
        assert_eq!(r.cpu.1.busy_pct(), 60.0);
        // Pooled: phase B holds 100 samples each of 2, 4 and 1 ms, so its p99 is 4.
        assert_eq!(r.write_p99_ratio, 4.0);
    }
}
