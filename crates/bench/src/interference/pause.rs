//! A pause detector: one thread per CPU, pinned to it, at the highest real-time
//! priority (`SCHED_FIFO` 99), that sleeps 5 ms at a time and records every wake-up
//! that came late (200 wake-ups a second per CPU: too few to disturb what it watches).
//!
//! No thread of the server or of the load generator can keep a `SCHED_FIFO` thread off
//! its CPU: it preempts them all. So a late wake-up of tens of milliseconds means the
//! CPU itself did not run: the hypervisor had descheduled the vCPU (or the guest kernel
//! ran that long without a preemption point). When a round's write acks stall while
//! both detectors report a pause of the same length, the stall was the machine's, and
//! no scheduling inside the server could have avoided it (issue 24,
//! `docs/benchmarks.md`). The hypervisor's steal counter does not always show such
//! pauses, which is why this measures them directly.
//!
//! Without the permission to use `SCHED_FIFO` (root or `CAP_SYS_NICE`), the detector
//! reports nothing rather than the delays of an ordinary thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::report::Sample;

/// Late wake-ups shorter than this are not recorded (timer slack, interrupts).
const RECORD_OVER: Duration = Duration::from_millis(2);
const PERIOD: Duration = Duration::from_millis(5);

/// The detector threads of one round.
pub(super) struct PauseDetector {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Option<Vec<Sample>>>>,
}

impl PauseDetector {
    /// One thread per CPU the process may run on; samples are timed from `t0`.
    pub(super) fn start(t0: Instant) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (0..cpus)
            .map(|cpu| {
                let stop = Arc::clone(&stop);
                std::thread::Builder::new()
                    .name(format!("bench-pause-{cpu}"))
                    .spawn(move || detect(cpu, t0, &stop))
                    .expect("spawn a pause detector")
            })
            .collect();
        Self { stop, threads }
    }

    /// Per CPU, every late wake-up: `at_s` when the sleep began, `ms` how late it woke.
    /// Empty if the threads could not get real-time priority.
    pub(super) fn finish(self) -> Vec<Vec<Sample>> {
        self.stop.store(true, Ordering::Relaxed);
        let per_cpu: Option<Vec<Vec<Sample>>> = self
            .threads
            .into_iter()
            .map(|t| t.join().ok().flatten())
            .collect();
        per_cpu.unwrap_or_default()
    }
}

/// The detector loop on `cpu`; `None` if it could not be pinned there at `SCHED_FIFO`.
fn detect(cpu: usize, t0: Instant, stop: &AtomicBool) -> Option<Vec<Sample>> {
    if !pin_realtime(cpu) {
        return None;
    }
    let mut late = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let before = Instant::now();
        std::thread::sleep(PERIOD);
        let over = before.elapsed().saturating_sub(PERIOD);
        if over >= RECORD_OVER {
            late.push(Sample {
                at_s: before.duration_since(t0).as_secs_f64(),
                ms: over.as_secs_f64() * 1e3,
            });
        }
    }
    Some(late)
}

#[cfg(target_os = "linux")]
fn pin_realtime(cpu: usize) -> bool {
    // SAFETY: `set` is a plain bitmask owned by this frame; both calls act on the
    // calling thread only (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return false;
        }
        let param = libc::sched_param { sched_priority: 99 };
        libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn pin_realtime(_cpu: usize) -> bool {
    false
}

/// `CLOCK_MONOTONIC` now, in seconds (the clock `Instant` and `perf -k CLOCK_MONOTONIC`
/// use), to line the benchmark's samples up with a trace.
pub(super) fn monotonic_now_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// The longest late wake-up in `[from_s, to_s)` on each CPU, ms (0 if none).
pub(super) fn longest_per_cpu(per_cpu: &[Vec<Sample>], from_s: f64, to_s: f64) -> Vec<f64> {
    per_cpu
        .iter()
        .map(|late| {
            late.iter()
                .filter(|s| s.at_s >= from_s && s.at_s < to_s)
                .map(|s| s.ms)
                .fold(0.0, f64::max)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_pause_is_taken_per_cpu_within_the_window() {
        let s = |at_s, ms| Sample { at_s, ms };
        let per_cpu = vec![
            vec![s(1.0, 3.0), s(5.0, 120.0), s(12.0, 40.0)],
            vec![s(11.0, 2.5)],
        ];
        assert_eq!(longest_per_cpu(&per_cpu, 0.0, 10.0), vec![120.0, 0.0]);
        assert_eq!(longest_per_cpu(&per_cpu, 10.0, 20.0), vec![40.0, 2.5]);
    }

    /// The detector runs and stops; where it may not use SCHED_FIFO it reports nothing.
    #[test]
    fn detector_starts_and_finishes() {
        let d = PauseDetector::start(Instant::now());
        std::thread::sleep(Duration::from_millis(30));
        let per_cpu = d.finish();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert!(per_cpu.is_empty() || per_cpu.len() == cpus);
    }
}
