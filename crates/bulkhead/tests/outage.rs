//! Object-store outage, end to end: the real `bulkhead serve` on a real S3 server
//! (SeaweedFS) ingests continuously; `weed` is killed mid-run. Writes keep being
//! acknowledged (into the WAL) until the write buffer fills, then get 503 with
//! `Retry-After`, never a 500 and never a hang. `weed` comes back on the same data dir
//! and ports; flush retries succeed, every acknowledged row is queryable, the SSTs are
//! in the bucket, and after a `kill -9` and restart of the server everything is still
//! there. Then a second outage, with the server killed during it: what it acknowledged
//! into its WAL is there after the store and the server are back. See
//! `docs/reliability.md`.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::TestServer;
use common::weed::{Weed, serve_on_s3};

const DB: &str = "outage";
const TABLE: &str = "m";
const PREFIX: &str = "outage";
const LINES_PER_REQUEST: u64 = 200;

/// Small memory limits so backpressure comes quickly; S3 requests give up fast while
/// the server is down, so flushes fail (and are retried) instead of hanging; no
/// background compaction (this test is about flushes).
const ENV: &[(&str, &str)] = &[
    ("BULKHEAD_WRITE_BUFFER", "1MiB"),
    ("BULKHEAD_TABLE_FLUSH_SIZE", "128KiB"),
    ("BULKHEAD_FLUSH_INTERVAL", "500ms"),
    ("BULKHEAD_S3_MAX_RETRIES", "2"),
    ("BULKHEAD_S3_RETRY_TIMEOUT", "2s"),
    ("BULKHEAD_S3_CONNECT_TIMEOUT", "1s"),
    ("BULKHEAD_S3_REQUEST_TIMEOUT", "5s"),
    // The SST set must hold still between listing the manifest and the bucket.
    ("BULKHEAD_COMPACTION_ENABLED", "false"),
];

/// The rows the test sent: row id -> acknowledged?
#[derive(Default)]
struct Ledger {
    next: u64,
    acked: HashMap<u64, bool>,
}

/// What one write request got.
#[derive(Debug, PartialEq)]
enum Outcome {
    Acked,
    Overloaded,
}

impl Ledger {
    /// Send one batch of fresh rows; panics on anything but 204 or 503 + Retry-After,
    /// including no answer at all (the client waits up to 120 s).
    fn write(&mut self, server: &TestServer) -> Outcome {
        let first = self.next;
        self.next += LINES_PER_REQUEST;
        let body: String = (first..self.next)
            .map(|id| {
                format!(
                    "{TABLE},s=s{} v={id}i {}\n",
                    id % 10,
                    1_600_000_000_000_000_000u64 + id * 1_000_000
                )
            })
            .collect();
        let r = server
            .try_request(
                "POST",
                &format!("/api/v2/write?bucket={DB}"),
                &[],
                body.as_bytes(),
            )
            .unwrap_or_else(|e| panic!("write got no answer: {e}\n{}", server.log()));
        let outcome = match r.status {
            204 => Outcome::Acked,
            503 => {
                assert!(
                    r.header("retry-after").is_some(),
                    "503 without Retry-After: {}",
                    r.text()
                );
                Outcome::Overloaded
            }
            other => panic!(
                "write answered {other} {}\n{}",
                r.text(),
                tail(&server.log(), 60)
            ),
        };
        for id in first..self.next {
            self.acked.insert(id, outcome == Outcome::Acked);
        }
        outcome
    }

    fn acked_rows(&self) -> usize {
        self.acked.values().filter(|a| **a).count()
    }

    /// Every acknowledged row is there with its value, no row twice, nothing unsent.
    fn verify(&self, server: &TestServer, when: &str) {
        let r = server.sql(DB, &format!("select v from {TABLE}"), "csv");
        assert_eq!(r.status, 200, "{when}: {}\n{}", r.text(), server.log());
        let mut seen: HashMap<u64, u32> = HashMap::new();
        for line in r.text().lines().skip(1) {
            let id: u64 = line.parse().unwrap_or_else(|_| panic!("bad row `{line}`"));
            *seen.entry(id).or_default() += 1;
        }
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(10).collect();
        assert!(twice.is_empty(), "{when}: rows seen twice: {twice:?}");
        let unsent: Vec<_> = seen
            .keys()
            .filter(|id| !self.acked.contains_key(id))
            .take(10)
            .collect();
        assert!(unsent.is_empty(), "{when}: rows never sent: {unsent:?}");
        let lost: Vec<_> = self
            .acked
            .iter()
            .filter(|(id, acked)| **acked && !seen.contains_key(id))
            .map(|(id, _)| *id)
            .take(10)
            .collect();
        assert!(
            lost.is_empty(),
            "{when}: {} acknowledged rows missing, e.g. {lost:?}",
            self.acked
                .iter()
                .filter(|(id, a)| **a && !seen.contains_key(id))
                .count()
        );
    }
}

#[test]
fn writes_survive_an_object_store_outage() {
    let mut weed = Weed::start();
    let mut server = serve_on_s3(&weed, PREFIX, None, &[], ENV);
    let mut ledger = Ledger::default();

    // Healthy: ingest for a moment, with flushes to S3.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        assert_eq!(ledger.write(&server), Outcome::Acked);
    }
    let r = server.post(&format!("/api/v1/flush?db={DB}"), "");
    assert_eq!(r.status, 200, "{}", r.text());

    // Outage: keep writing. Acknowledged into the WAL first, then 503 once the write
    // buffer (memtables that cannot be flushed) reaches twice its limit.
    weed.kill();
    let down_at = Instant::now();
    let before = ledger.acked_rows();
    let mut acked_during = 0;
    let mut overloaded = 0;
    let mut first_503 = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while overloaded < 3 {
        assert!(
            Instant::now() < deadline,
            "no backpressure after 120 s of outage ({acked_during} batches acked)\n{}",
            tail(&server.log(), 40)
        );
        match ledger.write(&server) {
            Outcome::Acked => acked_during += 1,
            Outcome::Overloaded => {
                first_503.get_or_insert_with(|| down_at.elapsed());
                overloaded += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    assert!(
        acked_during > 0,
        "no write was acknowledged while the store was down"
    );
    let metrics = server.get("/metrics").text();
    let failures = common::metric(&metrics, "bulkhead_flush_failures_total").unwrap_or(0.0);
    assert!(failures > 0.0, "no flush failed during the outage?");
    eprintln!(
        "[outage] store down: {acked_during} batches ({} rows) acknowledged into the WAL, \
         first 503 after {:.1?}, then {overloaded} x 503 in all; {failures} failed flush \
         attempts; store down for {:.1?}",
        ledger.acked_rows() - before,
        first_503.unwrap_or_default(),
        down_at.elapsed()
    );
    // Reads of what is in memory still work while the store is down? Not asserted:
    // older data lives in SSTs on the store.

    // The store comes back: flushes succeed again and writers are admitted.
    weed.restart();
    let up_at = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = server.post(&format!("/api/v1/flush?db={DB}"), "");
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "flush still failing 120 s after the store came back: {} {}",
            r.status,
            r.text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let flushed_after = up_at.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ledger.write(&server) != Outcome::Acked {
        assert!(Instant::now() < deadline, "writes still rejected");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "[outage] store back: the backlog flushed {flushed_after:.1?} after the restart of \
         weed, writes acknowledged again {:.1?} after it",
        up_at.elapsed()
    );
    for _ in 0..20 {
        ledger.write(&server);
    }
    let r = server.post(&format!("/api/v1/flush?db={DB}"), "");
    assert_eq!(r.status, 200, "{}", r.text());
    ledger.verify(&server, "after the outage");

    // The SSTs are in the bucket.
    let objects = weed.list_objects(PREFIX).expect("list the bucket");
    let ssts = server
        .sql(DB, "select path from system.sst_files", "csv")
        .text();
    let paths: Vec<&str> = ssts.lines().skip(1).collect();
    assert!(!paths.is_empty(), "no SSTs after the flush");
    for p in &paths {
        let key = format!("{PREFIX}/{p}");
        assert!(
            objects.contains(&key),
            "{key} is in the manifest but not in the bucket: {objects:?}"
        );
    }
    let metrics = server.get("/metrics").text();
    let mem = common::metric(&metrics, "bulkhead_memtable_bytes").unwrap_or(-1.0);
    assert_eq!(mem, 0.0, "memtables not drained after the final flush");

    // And it all survives a crash of the server.
    server.kill9_and_restart();
    ledger.verify(&server, "after kill -9 and restart");
    eprintln!(
        "[outage] {} rows acknowledged in all, all present; {} SSTs in the manifest",
        ledger.acked_rows(),
        paths.len()
    );

    // A second outage, and the server crashes during it: what it acknowledged is only
    // in its WAL. It cannot start while the store is down (the startup check), so the
    // store comes back first; the restarted server replays the WAL and flushes it.
    weed.kill();
    let before = ledger.acked_rows();
    for _ in 0..10 {
        assert_eq!(ledger.write(&server), Outcome::Acked, "below the buffer");
    }
    server.kill9();
    weed.restart();
    server.restart();
    ledger.verify(&server, "after a crash during an outage");
    let r = server.post(&format!("/api/v1/flush?db={DB}"), "");
    assert_eq!(r.status, 200, "{}", r.text());
    server.kill9_and_restart();
    ledger.verify(
        &server,
        "after flushing the replayed WAL and another kill -9",
    );
    eprintln!(
        "[outage] crash during a second outage: {} rows acknowledged only into the WAL, \
         all present after the restart",
        ledger.acked_rows() - before
    );
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
