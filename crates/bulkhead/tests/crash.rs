//! Crash harness: writers ingest over HTTP while flushes and compactions run constantly
//! (tiny thresholds); the real `bulkhead serve` is killed with `kill -9` at a random
//! moment, restarted on the same data, and checked: every acknowledged row is there
//! with its acknowledged value (or a later, unacknowledged attempt's value), no row
//! appears twice, nothing appears that was never sent, and the recovery time
//! (spawn -> `/health` OK -> first query answered) is reported. Deletes are in the mix:
//! now and then a writer deletes a time range of one of its series through
//! `/api/v2/delete`; an acknowledged delete's keys must stay gone (until written again).
//!
//! Runs on local disk and on a real S3 server (SeaweedFS). `BULKHEAD_CRASH_CYCLES`
//! (default 10) and `BULKHEAD_CRASH_SEED` (default: from the clock; always printed)
//! control a run; `scripts/crash-test` runs the long mode. See `docs/reliability.md`.
//! `BULKHEAD_CRASH_EMPTY_CYCLES=1` makes every odd cycle kill within 2 ms (before the
//! writers log anything, so the next start finds a WAL without records) and deletes one
//! request in three instead of one in twelve: the setting that reproduced WAL sequence
//! numbers being reused after a restart (`crates/engine/tests/scenarios/seq_reuse.rs`).
//!
//! The ENOSPC mode (`enospc_cycles_on_a_small_tmpfs`) puts the data directory on a small
//! tmpfs and fills it mid-ingest: writes must be answered `507` while it is full, be
//! acknowledged again once it is freed, and the restart (clean, `kill -9`, or `kill -9`
//! while still full) must bring back every acknowledged row.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bulkhead_tsbs::SplitMix64 as Rng;
use common::TestServer;
use common::tmpfs::Tmpfs;
use common::weed::{Weed, serve_on_s3};

const DB: &str = "crash";
const TABLE: &str = "m";
const WRITERS: u64 = 3;
/// Series per writer, and timestamps per series: the key space stays bounded (so long
/// runs keep verifying a table of the same size) and later writes are overwrites.
const SERIES: u64 = 16;
const TIMES: u64 = 1000;
const LINES_PER_REQUEST: usize = 40;
/// 2020-09-13 in seconds: old enough that compaction's grace period never holds back a
/// segment, so compactions run as soon as a segment has enough files.
const BASE_SECS: u64 = 1_600_000_000;
const STEP_SECS: u64 = 6;
/// Recovery must take less than this (a generous bound; the figures are printed).
const RECOVERY_BOUND: Duration = Duration::from_secs(60);

/// Small thresholds so that flushes, WAL rollovers and truncations, and compactions
/// (10-minute segments over 100 minutes of timestamps; 3 files trigger a merge) happen
/// all the time.
const SMALL_THRESHOLDS: &[(&str, &str)] = &[
    ("BULKHEAD_TABLE_FLUSH_SIZE", "64KiB"),
    ("BULKHEAD_WRITE_BUFFER", "1MiB"),
    ("BULKHEAD_FLUSH_INTERVAL", "300ms"),
    ("BULKHEAD_WAL_SEGMENT_SIZE", "128KiB"),
    ("BULKHEAD_SEGMENT_DURATION", "10m"),
    ("BULKHEAD_COMPACTION_TRIGGER", "3"),
];

/// Only one harness at a time, so recovery times are not measured under the other's load.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn crash_cycles_on_local_disk() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = TestServer::start_with_env(&[], SMALL_THRESHOLDS);
    run("local disk", &mut server);
}

#[test]
fn crash_cycles_on_s3() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let weed = Weed::start();
    let mut server = serve_on_s3(&weed, "crash", None, &[], SMALL_THRESHOLDS);
    run("S3 (SeaweedFS)", &mut server);
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}=`{v}` is not a number")),
    )
}

/// `BULKHEAD_CRASH_EMPTY_CYCLES` is set (see the module doc).
fn empty_cycles() -> bool {
    std::env::var_os("BULKHEAD_CRASH_EMPTY_CYCLES").is_some()
}

/// A row key: (writer, series, timestamp index).
type Key = (u64, u64, u64);

/// What one key may hold after a crash.
#[derive(Debug, Default, Clone)]
struct KeyState {
    /// The value of the last acknowledged write.
    acked: Option<i64>,
    /// Values of writes after it whose outcome is unknown (no answer, or an error):
    /// each may or may not have been applied.
    unknown: Vec<i64>,
}

impl KeyState {
    fn allows(&self, v: i64) -> bool {
        self.acked == Some(v) || self.unknown.contains(&v)
    }
}

/// One writer's view: every key it ever sent, and its counters.
#[derive(Default)]
struct Writer {
    keys: HashMap<Key, KeyState>,
    next_fresh: u64,
    next_value: i64,
    acked_requests: u64,
    unknown_requests: u64,
    overloaded: u64,
    rows_acked: u64,
    deletes_acked: u64,
}

impl Writer {
    /// One request body: fresh keys and overwrites of keys already sent, no key twice.
    fn batch(&mut self, w: u64, rng: &mut Rng) -> (String, Vec<(Key, i64)>) {
        let mut lines = String::new();
        let mut sent: Vec<(Key, i64)> = Vec::with_capacity(LINES_PER_REQUEST);
        let space = SERIES * TIMES;
        while sent.len() < LINES_PER_REQUEST {
            let fresh = self.next_fresh < space && (self.keys.is_empty() || rng.below(2) == 0);
            let idx = if fresh {
                self.next_fresh += 1;
                self.next_fresh - 1
            } else {
                rng.below(self.next_fresh)
            };
            let key = (w, idx % SERIES, idx / SERIES);
            if sent.iter().any(|(k, _)| *k == key) {
                continue;
            }
            self.next_value += 1;
            let v = ((w as i64) << 40) | self.next_value;
            lines.push_str(&format!(
                "{TABLE},w=w{},s=s{} v={v}i {}\n",
                key.0,
                key.1,
                BASE_SECS + key.2 * STEP_SECS
            ));
            sent.push((key, v));
        }
        (lines, sent)
    }

    /// A delete of series `s`, time indexes `a..=b`: acknowledged, the keys are gone;
    /// unknown, each may be gone or keep its value.
    fn record_delete(&mut self, w: u64, s: u64, (a, b): (u64, u64), acked: bool) {
        for (key, st) in self.keys.iter_mut() {
            if key.0 != w || key.1 != s || key.2 < a || key.2 > b {
                continue;
            }
            if acked {
                st.acked = None;
                st.unknown.clear();
            } else if let Some(v) = st.acked.take() {
                st.unknown.push(v);
            }
        }
    }

    fn record(&mut self, sent: Vec<(Key, i64)>, acked: bool) {
        for (key, v) in sent {
            let st = self.keys.entry(key).or_default();
            if acked {
                st.acked = Some(v);
                st.unknown.clear();
            } else {
                st.unknown.push(v);
            }
        }
    }
}

/// Counters the main thread watches while the writers run.
#[derive(Default)]
struct Progress {
    acked: AtomicU64,
    /// `507 Insufficient Storage` answers.
    full: AtomicU64,
    /// `503 Service Unavailable` answers (write buffer full, load shed).
    overloaded: AtomicU64,
    /// Requests without an answer (connection refused or reset, timeout).
    no_answer: AtomicU64,
}

/// Per-cycle measurements.
struct Cycle {
    ran_for: Duration,
    health: Duration,
    first_query: Duration,
}

fn run(label: &str, server: &mut TestServer) {
    let cycles = env_u64("BULKHEAD_CRASH_CYCLES").unwrap_or(10);
    let seed = env_u64("BULKHEAD_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!("[crash {label}] {cycles} cycles, seed {seed} (replay: BULKHEAD_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let mut writers: Vec<Writer> = (0..WRITERS).map(|_| Writer::default()).collect();
    let mut measured = Vec::new();
    let (mut flushes, mut compactions) = (0u64, 0u64);
    let started = Instant::now();
    for cycle in 0..cycles {
        // Mostly 0.3-2.5 s; one cycle in four kills within 300 ms of the restart, while
        // the replayed memtables are being flushed and compacted.
        let run_for = if cycle % 2 == 1 && empty_cycles() {
            Duration::from_millis(rng.below(2))
        } else if rng.below(4) == 0 {
            Duration::from_millis(rng.below(300))
        } else {
            Duration::from_millis(300 + rng.below(2200))
        };
        let writer_seeds: Vec<u64> = (0..WRITERS).map(|_| rng.next_u64()).collect();
        let admin_seed = rng.next_u64();
        let stop = AtomicBool::new(false);
        let last_flushes = AtomicU64::new(0);
        let last_compactions = AtomicU64::new(0);
        let progress = Progress::default();
        let pid = server.pid().expect("server running");
        std::thread::scope(|scope| {
            let srv = &*server;
            let stop = &stop;
            let progress = &progress;
            for (w, (writer, seed)) in writers.iter_mut().zip(&writer_seeds).enumerate() {
                scope.spawn(move || write_loop(srv, w as u64, writer, Rng(*seed), stop, progress));
            }
            let (lf, lc) = (&last_flushes, &last_compactions);
            scope.spawn(move || admin_loop(srv, Rng(admin_seed), stop, lf, lc));
            std::thread::sleep(run_for);
            let killed = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .expect("run kill");
            assert!(killed.success(), "kill -9 {pid} failed");
            stop.store(true, Ordering::SeqCst);
        });
        flushes += last_flushes.load(Ordering::SeqCst);
        compactions += last_compactions.load(Ordering::SeqCst);
        server.kill9(); // reap

        let t0 = Instant::now();
        server.restart(); // spawn, then poll /health until 200
        let health = t0.elapsed();
        let r = server.sql(DB, &format!("select count(*) as c from {TABLE}"), "csv");
        let first_query = t0.elapsed();
        let any_acked = writers.iter().any(|w| w.rows_acked > 0);
        assert!(
            r.status == 200 || (!any_acked && no_table(&r)),
            "cycle {cycle}: first query after restart: {} {}\n{}",
            r.status,
            r.text(),
            server.log()
        );
        assert!(
            first_query < RECOVERY_BOUND,
            "cycle {cycle}: recovery took {first_query:?}"
        );
        verify(server, &writers, cycle, seed);
        eprintln!(
            "[crash {label}] cycle {cycle}: killed after {run_for:?}; healthy in {health:?}, first query in {first_query:?}"
        );
        measured.push(Cycle {
            ran_for: run_for,
            health,
            first_query,
        });
    }
    let sum = |f: fn(&Writer) -> u64| writers.iter().map(f).sum::<u64>();
    let rows_acked = sum(|w| w.rows_acked);
    assert!(rows_acked > 0, "no write was ever acknowledged");
    let keys: usize = writers.iter().map(|w| w.keys.len()).sum();
    let mut health: Vec<Duration> = measured.iter().map(|c| c.health).collect();
    let mut query: Vec<Duration> = measured.iter().map(|c| c.first_query).collect();
    health.sort();
    query.sort();
    let ingest: Duration = measured.iter().map(|c| c.ran_for).sum();
    eprintln!(
        "[crash {label}] RESULT seed {seed}: {cycles} cycles in {:.1?} ({:.1?} of ingest), \
         no acknowledged row lost or duplicated, no deleted row back; {} requests acked \
         ({rows_acked} rows), {} deletes acked, \
         {} unknown, {} overloaded (503); {keys} distinct keys; >= {flushes} flushes, \
         >= {compactions} compactions seen in /metrics before the kills; recovery \
         (spawn -> /health OK) min/median/max {:?}/{:?}/{:?}; (spawn -> first query) \
         {:?}/{:?}/{:?}",
        started.elapsed(),
        ingest,
        sum(|w| w.acked_requests),
        sum(|w| w.deletes_acked),
        sum(|w| w.unknown_requests),
        sum(|w| w.overloaded),
        health[0],
        health[health.len() / 2],
        health[health.len() - 1],
        query[0],
        query[query.len() / 2],
        query[query.len() - 1],
    );
}

/// Send batches until `stop`; an error or a missing answer makes the batch unknown. A
/// `507` (the disk is full) must say so; any status but 204, 503 and 507 fails the test.
fn write_loop(
    server: &TestServer,
    w: u64,
    writer: &mut Writer,
    mut rng: Rng,
    stop: &AtomicBool,
    progress: &Progress,
) {
    let path = format!("/api/v2/write?bucket={DB}&precision=s");
    while !stop.load(Ordering::SeqCst) {
        if rng.below(if empty_cycles() { 3 } else { 12 }) == 0 {
            let s = rng.below(SERIES);
            let a = rng.below(TIMES);
            let range = (a, (a + rng.below(TIMES / 10)).min(TIMES - 1));
            let body = format!(
                r#"{{"start":"{}","stop":"{}","predicate":"_measurement=\"{TABLE}\" AND w=\"w{w}\" AND s=\"s{s}\""}}"#,
                rfc3339(BASE_SECS + range.0 * STEP_SECS),
                rfc3339(BASE_SECS + range.1 * STEP_SECS),
            );
            let outcome = server.try_request(
                "POST",
                &format!("/api/v2/delete?bucket={DB}"),
                &[],
                body.as_bytes(),
            );
            match &outcome {
                Ok(r) if r.status == 204 => {
                    writer.deletes_acked += 1;
                    writer.record_delete(w, s, range, true);
                }
                // No table yet: nothing to delete.
                Ok(r) if r.status == 404 => {}
                // The disk is full (ENOSPC mode) or the server is shedding load.
                Ok(r) if r.status == 507 || r.status == 503 => {
                    writer.record_delete(w, s, range, false);
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(r) => panic!(
                    "writer {w}: delete answered {} {}\n{}",
                    r.status,
                    r.text(),
                    server.log()
                ),
                Err(_) => writer.record_delete(w, s, range, false),
            }
            continue;
        }
        let (body, sent) = writer.batch(w, &mut rng);
        let outcome = server.try_request("POST", &path, &[], body.as_bytes());
        let acked = matches!(&outcome, Ok(r) if r.status == 204);
        match &outcome {
            Ok(r) if r.status == 204 => {
                writer.acked_requests += 1;
                writer.rows_acked += sent.len() as u64;
                progress.acked.fetch_add(1, Ordering::SeqCst);
            }
            Ok(r) if r.status == 507 => {
                let body = r.json();
                assert_eq!(body["code"], "insufficient_storage", "{body}");
                let msg = body["error"].as_str().unwrap_or_default();
                assert!(msg.contains("No space left on device"), "507 says: {msg}");
                writer.unknown_requests += 1;
                progress.full.fetch_add(1, Ordering::SeqCst);
            }
            Ok(r) if r.status == 503 => {
                assert!(
                    r.header("retry-after").is_some(),
                    "503 without Retry-After: {}",
                    r.text()
                );
                writer.overloaded += 1;
                writer.unknown_requests += 1;
                progress.overloaded.fetch_add(1, Ordering::SeqCst);
            }
            Ok(r) => panic!(
                "writer {w}: unexpected answer {} {}\n{}",
                r.status,
                r.text(),
                server.log()
            ),
            Err(_) => {
                writer.unknown_requests += 1;
                progress.no_answer.fetch_add(1, Ordering::SeqCst);
            }
        }
        writer.record(sent, acked);
        if matches!(&outcome, Ok(r) if r.status == 503 || r.status == 507) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `secs` since the epoch as RFC 3339 (UTC), for `/api/v2/delete`.
fn rfc3339(secs: u64) -> String {
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[test]
fn rfc3339_of_known_instants() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(BASE_SECS), "2020-09-13T12:26:40Z");
    assert_eq!(rfc3339(951_825_600), "2000-02-29T12:00:00Z");
}

/// Until `stop`: now and then force a flush or a compaction (on top of the automatic
/// ones), and remember the last flush/compaction counters seen in `/metrics`.
fn admin_loop(
    server: &TestServer,
    mut rng: Rng,
    stop: &AtomicBool,
    flushes: &AtomicU64,
    compactions: &AtomicU64,
) {
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50 + rng.below(250)));
        let path = match rng.below(3) {
            0 => format!("/api/v1/flush?db={DB}"),
            1 => format!("/api/v1/compact?db={DB}"),
            _ => "/metrics".to_string(),
        };
        let method = if path == "/metrics" { "GET" } else { "POST" };
        if let Ok(r) = server.try_request(method, &path, &[], b"")
            && method == "GET"
            && r.status == 200
        {
            let text = r.text();
            if let Some(v) = common::metric(&text, "bulkhead_flushes_total") {
                flushes.store(v as u64, Ordering::SeqCst);
            }
            if let Some(v) = common::metric(&text, "bulkhead_compactions_total") {
                compactions.store(v as u64, Ordering::SeqCst);
            }
        }
    }
}

/// The query's table does not exist: 404, or (a `SELECT`, planned by DataFusion) 400
/// saying so. Fine only while no write was ever acknowledged (a kill within the first
/// milliseconds of the first cycle).
fn no_table(r: &common::Reply) -> bool {
    r.status == 404
        || (r.status == 400
            && r.text()
                .contains(&format!("table 'bulkhead.{DB}.{TABLE}' not found")))
}

/// Read every row back and compare with what the writers know.
fn verify(server: &TestServer, writers: &[Writer], cycle: u64, seed: u64) {
    let q = format!("select w, s, cast(time as bigint) as t, v from {TABLE}");
    let r = server.sql(DB, &q, "csv");
    let any_sent = writers.iter().any(|w| !w.keys.is_empty());
    if no_table(&r) && writers.iter().all(|w| w.rows_acked == 0) {
        return; // nothing acknowledged yet, and the table does not exist: fine
    }
    assert_eq!(
        r.status,
        200,
        "cycle {cycle}: {}\n{}",
        r.text(),
        server.log()
    );
    let text = r.text();
    let mut seen: HashMap<Key, Vec<i64>> = HashMap::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        assert_eq!(cols.len(), 4, "cycle {cycle}: bad row `{line}`");
        let w: u64 = cols[0].trim_start_matches('w').parse().expect("w");
        let s: u64 = cols[1].trim_start_matches('s').parse().expect("s");
        let t: u64 = cols[2].parse::<u64>().expect("time") / 1_000_000_000;
        let v: i64 = cols[3].parse().expect("v");
        let ti = (t - BASE_SECS) / STEP_SECS;
        seen.entry((w, s, ti)).or_default().push(v);
    }
    let mut problems = Vec::new();
    for (key, values) in &seen {
        if values.len() > 1 {
            problems.push(format!(
                "{key:?} appears {} times: {values:?}",
                values.len()
            ));
        }
        let state = writers.get(key.0 as usize).and_then(|w| w.keys.get(key));
        match state {
            None => problems.push(format!("{key:?} = {values:?} was never written")),
            Some(st) if !st.allows(values[0]) => problems.push(format!(
                "{key:?} = {} but the last acknowledged value is {:?} (unknown after it: {:?})",
                values[0], st.acked, st.unknown
            )),
            Some(_) => {}
        }
    }
    let mut lost = 0;
    for (w, writer) in writers.iter().enumerate() {
        for (key, st) in &writer.keys {
            if st.acked.is_some() && !seen.contains_key(key) {
                lost += 1;
                if lost <= 20 {
                    problems.push(format!(
                        "writer {w}: acknowledged {key:?} = {:?} is missing",
                        st.acked
                    ));
                }
            }
        }
    }
    if lost > 20 {
        problems.push(format!("... {lost} acknowledged keys missing in all"));
    }
    let count = server.sql(DB, &format!("select count(*) as c from {TABLE}"), "csv");
    let counted = count.text().lines().nth(1).unwrap_or("").to_string();
    if counted != seen.len().to_string() {
        problems.push(format!(
            "count(*) says {counted}, a full scan returned {} distinct keys",
            seen.len()
        ));
    }
    if !problems.is_empty() {
        // The whole log's lines about deletes and manifest commits, then its tail.
        let log = server.log();
        let deletes: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("delete") || l.contains("tombstone") || l.contains("manifest"))
            .collect();
        panic!(
            "cycle {cycle} (seed {seed}, any_sent {any_sent}): {} problems:\n{}\n\
             --- server log: deletes and manifest ---\n{}\n--- server log ---\n{}",
            problems.len(),
            problems.join("\n"),
            deletes.join("\n"),
            tail(&log, 80)
        );
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The kill mode's thresholds, with a write buffer large enough that the flushes that
/// fail while the disk is full do not stall writers (the full phase lasts ~1.5 s).
const ENOSPC_THRESHOLDS: &[(&str, &str)] = &[
    ("BULKHEAD_TABLE_FLUSH_SIZE", "64KiB"),
    ("BULKHEAD_WRITE_BUFFER", "8MiB"),
    ("BULKHEAD_FLUSH_INTERVAL", "300ms"),
    ("BULKHEAD_WAL_SEGMENT_SIZE", "128KiB"),
    ("BULKHEAD_SEGMENT_DURATION", "10m"),
    ("BULKHEAD_COMPACTION_TRIGGER", "3"),
];

/// How long a cycle's disk stays full at most while waiting for the first 507.
const FULL_PHASE_LIMIT: Duration = Duration::from_secs(30);

/// How an ENOSPC cycle ends before the restart.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// Space freed, writes acknowledged again, then `SIGTERM` (a clean shutdown).
    Terminate,
    /// Space freed, writes acknowledged again, then `kill -9`.
    Kill,
    /// `kill -9` while the disk is still full, with writers in flight; freed after.
    KillWhileFull,
}

#[test]
fn enospc_cycles_on_a_small_tmpfs() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The data dir is the tmpfs (`<parent>/data`); the server log stays on the real disk.
    let fs = match Tmpfs::mount("48m", "data") {
        Ok(fs) => fs,
        Err(why) if std::env::var_os("BULKHEAD_REQUIRE_TMPFS").is_none() => {
            eprintln!(
                "[crash ENOSPC] SKIPPED: could not mount a small tmpfs for the data dir: {why}. \
                 This mode needs root (or CAP_SYS_ADMIN); set BULKHEAD_REQUIRE_TMPFS=1 to make \
                 that a failure."
            );
            return;
        }
        Err(why) => panic!("BULKHEAD_REQUIRE_TMPFS is set and the tmpfs mount failed: {why}"),
    };
    // Declared after `fs`, so dropped (killed) before the unmount.
    let mut server = TestServer::start_in_with_env(fs.parent(), &[], ENOSPC_THRESHOLDS);
    run_enospc(&fs, &mut server);
}

fn run_enospc(fs: &Tmpfs, server: &mut TestServer) {
    let label = "ENOSPC, 48 MiB tmpfs";
    let cycles = env_u64("BULKHEAD_ENOSPC_CYCLES").unwrap_or(4);
    let seed = env_u64("BULKHEAD_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!("[crash {label}] {cycles} cycles, seed {seed} (replay: BULKHEAD_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let mut writers: Vec<Writer> = (0..WRITERS).map(|_| Writer::default()).collect();
    let mut total_full = 0;
    let started = Instant::now();
    for cycle in 0..cycles {
        let ending = match cycle % 3 {
            0 => Ending::Terminate,
            1 => Ending::Kill,
            _ => Ending::KillWhileFull,
        };
        let before_full = Duration::from_millis(300 + rng.below(700));
        let while_full = Duration::from_millis(800 + rng.below(700));
        let writer_seeds: Vec<u64> = (0..WRITERS).map(|_| rng.next_u64()).collect();
        let admin_seed = rng.next_u64();
        let stop = AtomicBool::new(false);
        let progress = Progress::default();
        let (flushes, compactions) = (AtomicU64::new(0), AtomicU64::new(0));
        let pid = server.pid().expect("server running");
        let mut filled = 0;
        let mut full_answers = 0;
        let mut full_for = Duration::ZERO;
        let mut recovered = true;
        std::thread::scope(|scope| {
            let srv = &*server;
            let (stop, progress) = (&stop, &progress);
            for (w, (writer, seed)) in writers.iter_mut().zip(&writer_seeds).enumerate() {
                scope.spawn(move || write_loop(srv, w as u64, writer, Rng(*seed), stop, progress));
            }
            let (lf, lc) = (&flushes, &compactions);
            scope.spawn(move || admin_loop(srv, Rng(admin_seed), stop, lf, lc));
            std::thread::sleep(before_full);
            filled = fs.fill();
            let full_since = Instant::now();
            std::thread::sleep(while_full);
            // Flushes and compactions may have deleted files meanwhile: still full now.
            filled += fs.fill();
            // The WAL writes into space it reserved before the disk filled (its
            // preallocated current and spare segments), so the first writes after the
            // fill are still acknowledged. The full phase lasts until the server has
            // said so: a 507 once the reserve is used up (at most `FULL_PHASE_LIMIT`).
            let full_deadline = Instant::now() + FULL_PHASE_LIMIT;
            while progress.full.load(Ordering::SeqCst) == 0 && Instant::now() < full_deadline {
                std::thread::sleep(Duration::from_millis(50));
                filled += fs.fill();
            }
            full_answers = progress.full.load(Ordering::SeqCst);
            full_for = full_since.elapsed();
            if let Ending::KillWhileFull = ending {
                let killed = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status()
                    .expect("run kill");
                assert!(killed.success(), "kill -9 {pid} failed");
            } else {
                fs.free();
                let acked_at_free = progress.acked.load(Ordering::SeqCst);
                let deadline = Instant::now() + Duration::from_secs(30);
                while progress.acked.load(Ordering::SeqCst) < acked_at_free + 5 {
                    if Instant::now() > deadline {
                        recovered = false;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            stop.store(true, Ordering::SeqCst);
        });
        assert!(
            recovered,
            "cycle {cycle}: writes were not acknowledged again within 30 s of freeing the disk\n{}",
            tail(&server.log(), 60)
        );
        assert!(
            full_answers > 0,
            "cycle {cycle}: no write was answered 507 within {FULL_PHASE_LIMIT:?} of the disk \
             filling up ({} acked, {} x 503 in the cycle)\n{}",
            progress.acked.load(Ordering::SeqCst),
            progress.overloaded.load(Ordering::SeqCst),
            tail(&server.log(), 60)
        );
        let no_answer = progress.no_answer.load(Ordering::SeqCst);
        match ending {
            Ending::KillWhileFull => {
                server.kill9();
                fs.free();
            }
            Ending::Kill => server.kill9(),
            Ending::Terminate => {
                let status = server.terminate(Duration::from_secs(60));
                assert!(
                    status.success(),
                    "cycle {cycle}: clean shutdown failed ({status})\n{}",
                    tail(&server.log(), 60)
                );
            }
        }
        if !matches!(ending, Ending::KillWhileFull) {
            assert_eq!(
                no_answer,
                0,
                "cycle {cycle}: {no_answer} write requests got no answer (the server hung or \
                 died) although it was not killed during them\n{}",
                tail(&server.log(), 60)
            );
        }
        total_full += full_answers;
        server.restart();
        verify(server, &writers, cycle, seed);
        eprintln!(
            "[crash {label}] cycle {cycle} ({ending:?}): filled {} KiB after {before_full:?}, \
             {full_answers} x 507 in {full_for:.1?} full, {} acked in all; restart OK, nothing lost",
            filled / 1024,
            progress.acked.load(Ordering::SeqCst),
        );
    }

    let sum = |f: fn(&Writer) -> u64| writers.iter().map(f).sum::<u64>();
    assert!(sum(|w| w.rows_acked) > 0, "no write was ever acknowledged");
    eprintln!(
        "[crash {label}] RESULT seed {seed}: {cycles} cycles in {:.1?}, {} requests acked ({} \
         rows), {total_full} x 507 while full, {} unknown in all; no acknowledged row lost",
        started.elapsed(),
        sum(|w| w.acked_requests),
        sum(|w| w.rows_acked),
        sum(|w| w.unknown_requests),
    );
}
