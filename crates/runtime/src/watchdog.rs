//! The watchdog: a plain OS thread that notices when a runtime stops answering.
//!
//! Every `watchdog_interval` it (1) sends each runtime a no-op ping task and checks that
//! the previous one ran within `watchdog_threshold`, and (2) looks at every worker's
//! "instrumented poll in progress since" slot. Either check failing opens a *stall*;
//! a stall is counted once, logged with the runtime's name, and closed when the runtime
//! answers again. The ping catches a runtime whose every worker is busy (whatever
//! spawned the work); the slots catch one stuck worker even while its siblings are free.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::sync::Mutex;
use serde::Serialize;

use crate::metrics::{RuntimeStats, now_nanos};
use crate::runtimes::Runtimes;

/// How many stall events `/debug/bulkheads` keeps.
const RECENT_STALLS: usize = 32;

/// One stall the watchdog saw.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StallEvent {
    pub runtime: String,
    /// The stuck worker thread, when one poll was the cause.
    pub thread: Option<String>,
    /// How long the runtime had been unresponsive when the watchdog noticed.
    pub detected_after_ms: f64,
    /// Milliseconds since process start.
    pub at_ms: f64,
}

pub(crate) struct Watchdog {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    recent: Arc<Mutex<VecDeque<StallEvent>>>,
}

struct Watched {
    stats: Arc<RuntimeStats>,
    handle: tokio::runtime::Handle,
    /// `now_nanos()` when the outstanding ping was sent, 0 if none.
    ping_sent: u64,
    ping_answered: Arc<AtomicU64>,
    /// Start of the current stall, 0 when the runtime is healthy.
    stall_since: u64,
    last_busy: Duration,
    last_busy_at: u64,
}

impl Watchdog {
    pub(crate) fn start(runtimes: &Runtimes) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let recent = Arc::new(Mutex::new(VecDeque::new()));
        let threshold = runtimes.config().watchdog_threshold;
        let interval = runtimes.config().watchdog_interval;
        let mut watched: Vec<Watched> = runtimes
            .built
            .iter()
            .map(|b| Watched {
                stats: Arc::clone(&b.stats),
                handle: b.handle.clone(),
                ping_sent: 0,
                ping_answered: Arc::new(AtomicU64::new(0)),
                stall_since: 0,
                last_busy: Duration::ZERO,
                last_busy_at: now_nanos(),
            })
            .collect();
        let thread = {
            let stop = Arc::clone(&stop);
            let recent = Arc::clone(&recent);
            std::thread::Builder::new()
                .name("bh-watchdog".into())
                .spawn(move || {
                    let mut ticks = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for w in &mut watched {
                            check(w, threshold, &recent);
                        }
                        ticks += 1;
                        if ticks.is_multiple_of((1_000 / interval.as_millis().max(1) as u64).max(1))
                        {
                            for w in &mut watched {
                                update_busy_ratio(w);
                            }
                        }
                        std::thread::sleep(interval);
                    }
                })
                .expect("spawn watchdog thread")
        };
        Self {
            stop,
            thread: Some(thread),
            recent,
        }
    }

    pub(crate) fn recent_stalls(&self) -> Vec<StallEvent> {
        self.recent.lock().iter().cloned().collect()
    }

    pub(crate) fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn check(w: &mut Watched, threshold: Duration, recent: &Mutex<VecDeque<StallEvent>>) {
    let now = now_nanos();
    let threshold_ns = threshold.as_nanos() as u64;

    // (1) The ping: answered -> send the next one; late -> a stall.
    let mut late_ping = None;
    if w.ping_sent != 0 && w.ping_answered.load(Ordering::Acquire) >= w.ping_sent {
        w.ping_sent = 0;
    }
    if w.ping_sent == 0 {
        w.ping_sent = now;
        let answered = Arc::clone(&w.ping_answered);
        let sent = now;
        w.handle.spawn(async move {
            answered.fetch_max(sent, Ordering::Release);
        });
    } else if now - w.ping_sent > threshold_ns {
        late_ping = Some(w.ping_sent);
    }

    // (2) A worker stuck inside one instrumented poll: the earliest one names the thread.
    let mut late_slot: Option<(u64, String)> = None;
    for slot in w.stats.slots.lock().iter() {
        let started = slot.poll_started.load(Ordering::Relaxed);
        if started != 0
            && now.saturating_sub(started) > threshold_ns
            && late_slot.as_ref().is_none_or(|(t, _)| started < *t)
        {
            late_slot = Some((started, slot.thread_name.lock().clone()));
        }
    }

    let late_since = match (late_ping, late_slot) {
        (None, None) => None,
        (Some(p), None) => Some((p, None)),
        (p, Some((s, thread))) => Some((p.map_or(s, |p| p.min(s)), Some(thread))),
    };
    match late_since {
        Some((since, thread)) => {
            if w.stall_since == 0 {
                w.stall_since = since;
                let detected_after = Duration::from_nanos(now - since);
                w.stats.record_stall(detected_after);
                tracing::warn!(
                    runtime = %w.stats.label,
                    thread = thread.as_deref().unwrap_or("-"),
                    unresponsive_ms = detected_after.as_millis() as u64,
                    "bulkhead `{}` is stalled: a worker has not yielded for over {:?}",
                    w.stats.label,
                    threshold
                );
                let mut recent = recent.lock();
                if recent.len() == RECENT_STALLS {
                    recent.pop_front();
                }
                recent.push_back(StallEvent {
                    runtime: w.stats.label.clone(),
                    thread,
                    detected_after_ms: detected_after.as_secs_f64() * 1e3,
                    at_ms: now as f64 / 1e6,
                });
            } else {
                w.stats
                    .max_stall_nanos
                    .fetch_max(now - w.stall_since, Ordering::Relaxed);
            }
        }
        None => w.stall_since = 0,
    }
}

fn update_busy_ratio(w: &mut Watched) {
    let m = w.handle.metrics();
    let busy: Duration = (0..m.num_workers())
        .map(|i| m.worker_total_busy_duration(i))
        .sum();
    let now = now_nanos();
    let wall = Duration::from_nanos(now - w.last_busy_at) * m.num_workers() as u32;
    if !wall.is_zero() {
        let ratio = (busy.saturating_sub(w.last_busy)).as_secs_f64() / wall.as_secs_f64();
        w.stats
            .busy_ratio_bits
            .store(ratio.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }
    w.last_busy = busy;
    w.last_busy_at = now;
}
