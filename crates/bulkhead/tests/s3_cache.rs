//! The SST block cache (`[cache]`) against a real S3 server (SeaweedFS's `weed`):
//! results through the cache equal results without it, a corrupted cache file is
//! caught and refetched, a restart keeps the disk tier warm, compaction releases its
//! inputs' blocks, the byte bounds hold under concurrent queries, and an outage with a
//! warm cache still serves what is cached and names what it could not fetch.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::weed::{Weed, serve_on_s3};
use common::{TestServer, metric};

/// One SeaweedFS for every scenario, run in sequence (starting `weed` takes seconds).
#[test]
fn cache_scenarios_against_seaweedfs() {
    let mut weed = Weed::start();
    results_equal_without_the_cache_and_survive_corruption_and_restarts(&weed);
    compaction_releases_the_inputs_cached_blocks(&weed);
    the_byte_bounds_hold_under_concurrent_queries(&weed);
    an_outage_serves_cached_ssts_and_names_what_it_could_not_fetch(&mut weed);
}

/// Rows of `table` with values that do not compress away (a small LCG), so SSTs span
/// several cache blocks.
fn rows(table: &str, round: i64, n: i64) -> String {
    let mut x: u64 = 0x9e37_79b9 ^ (round as u64);
    (0..n)
        .map(|i| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            format!(
                "{table},host=h{} a={}i,b={},c={}i {}\n",
                i % 10,
                x >> 40,
                (x >> 20) as f64 / 1000.0,
                round,
                1_000_000_000 * (round * n + i + 1)
            )
        })
        .collect()
}

fn load(s: &TestServer, table: &str, rounds: i64, n: i64) {
    for round in 0..rounds {
        let r = s.post("/api/v2/write?bucket=db", rows(table, round, n));
        assert_eq!(r.status, 204, "{}", r.text());
        let r = s.post("/api/v1/flush?db=db", "");
        assert!(r.status < 300, "flush: {} {}", r.status, r.text());
    }
}

const QUERIES: &[&str] = &[
    "select host, count(*) as n, sum(a) as sa, min(b) as mb, max(c) as mc from cpu group by host order by host",
    "select * from cpu where host = 'h3' order by time limit 50",
    "select count(*) as n from cpu where time >= to_timestamp(2000) and time < to_timestamp(5000)",
    "select host, max(time) as t, max(a) as a from cpu group by host order by host",
];

fn answers(s: &TestServer) -> Vec<String> {
    QUERIES
        .iter()
        .map(|q| {
            let r = s.sql("db", q, "csv");
            assert_eq!(r.status, 200, "{q}: {}\n{}", r.text(), s.log());
            r.text()
        })
        .collect()
}

fn metrics(s: &TestServer) -> String {
    s.get("/metrics").text()
}

fn m(text: &str, series: &str) -> f64 {
    metric(text, series).unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
}

/// Wait until the disk tier stops changing (its writes run in the background).
fn settle(s: &TestServer) -> String {
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics(s);
        let now = format!(
            "{} {}",
            m(&text, "bulkhead_cache_bytes{tier=\"disk\"}"),
            m(&text, "bulkhead_cache_fill_bytes_total{tier=\"disk\"}")
        );
        if now == last {
            return text;
        }
        assert!(Instant::now() < deadline, "disk tier never settled");
        last = now;
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn cache_files(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir.join("data").join("cache"))
        .map(|d| {
            d.map(|e| e.expect("entry").path())
                .filter(|p| p.extension().is_some_and(|e| e == "blk"))
                .collect()
        })
        .unwrap_or_default()
}

fn results_equal_without_the_cache_and_survive_corruption_and_restarts(weed: &Weed) {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = ["--compaction-enabled", "false"];
    let mut s = serve_on_s3(weed, "cache-eq", Some(dir.path()), &flags, &[]);
    load(&s, "cpu", 4, 2000);
    let text = settle(&s);
    assert!(
        m(&text, "bulkhead_cache_write_through_bytes_total") > 0.0,
        "flushes write through:\n{text}"
    );
    let cold = answers(&s);
    let warm = answers(&s);
    assert_eq!(cold, warm);
    let text = settle(&s);
    assert!(
        m(&text, "bulkhead_cache_hits_total{tier=\"memory\"}") > 0.0,
        "{text}"
    );
    common::assert_prometheus_text(&text);
    let table = s
        .sql(
            "db",
            "select tier, capacity_bytes, hits > 0 as hit from system.cache order by tier",
            "csv",
        )
        .text();
    assert_eq!(
        table,
        "tier,capacity_bytes,hit\ndisk,10737418240,true\nmemory,268435456,true\n"
    );
    s.terminate(Duration::from_secs(30));

    // The same data without the cache.
    let mut plain_flags = flags.to_vec();
    plain_flags.extend(["--cache-enabled", "false"]);
    let mut plain = serve_on_s3(weed, "cache-eq", Some(dir.path()), &plain_flags, &[]);
    assert_eq!(answers(&plain), cold, "with and without the cache");
    assert!(metric(&metrics(&plain), "bulkhead_cache_bytes{tier=\"memory\"}").is_none());
    let table = plain
        .sql("db", "select count(*) as n from system.cache", "csv")
        .text();
    assert_eq!(table, "n\n0\n", "no cache, no rows");
    plain.terminate(Duration::from_secs(30));

    // A restart keeps the disk tier: the first queries fetch nothing.
    let files = cache_files(dir.path());
    assert!(
        !files.is_empty(),
        "no cache files in {}: {:?}\n{}",
        dir.path().display(),
        std::fs::read_dir(dir.path()).map(|d| d.map(|e| e.map(|e| e.path())).collect::<Vec<_>>()),
        plain.log()
    );
    s.restart();
    assert_eq!(answers(&s), cold);
    let text = metrics(&s);
    assert_eq!(
        m(&text, "bulkhead_cache_fetches_total"),
        0.0,
        "warm after restart:\n{text}"
    );
    assert!(
        m(&text, "bulkhead_cache_hits_total{tier=\"disk\"}") > 0.0,
        "{text}"
    );
    s.terminate(Duration::from_secs(30));

    // Corrupt every cache file: flip the last byte of most, truncate one.
    let files = cache_files(dir.path());
    for (i, f) in files.iter().enumerate() {
        let mut bytes = std::fs::read(f).expect("read cache file");
        if i == 0 {
            bytes.truncate(bytes.len() / 2);
        } else {
            let last = bytes.len() - 1;
            bytes[last] ^= 0x5a;
        }
        std::fs::write(f, bytes).expect("corrupt cache file");
    }
    s.restart();
    assert_eq!(answers(&s), cold, "corrupt cache files are never served");
    let text = metrics(&s);
    assert!(m(&text, "bulkhead_cache_corrupt_total") >= 2.0, "{text}");
    assert!(
        m(&text, "bulkhead_cache_fetches_total") > 0.0,
        "refetched:\n{text}"
    );
}

fn compaction_releases_the_inputs_cached_blocks(weed: &Weed) {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = ["--compaction-enabled", "false"];
    let s = serve_on_s3(weed, "cache-compact", Some(dir.path()), &flags, &[]);
    load(&s, "cpu", 4, 2000);
    let before = answers(&s);
    settle(&s);
    let r = s.post("/api/v1/compact?db=db", "");
    assert!(r.status < 300, "compact: {} {}", r.status, r.text());
    assert_eq!(answers(&s), before);
    let live: f64 = s
        .sql(
            "db",
            "select sum(bytes) as b, count(*) as n from system.sst_files",
            "csv",
        )
        .text()
        .lines()
        .nth(1)
        .and_then(|l| l.split(',').next()?.parse().ok())
        .expect("sst bytes");
    // The inputs are deleted once no snapshot holds them; their blocks go with them.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = settle(&s);
        let disk = m(&text, "bulkhead_cache_bytes{tier=\"disk\"}");
        let memory = m(&text, "bulkhead_cache_bytes{tier=\"memory\"}");
        // Block files carry a header (32 bytes + the path) per block of 1 MiB.
        let overhead = 4096.0;
        if disk <= live + overhead
            && memory <= live
            && m(&text, "bulkhead_cache_invalidations_total") >= 4.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "inputs still cached: disk {disk}, memory {memory}, live SSTs {live}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let on_disk: u64 = cache_files(dir.path())
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    assert!(
        on_disk as f64 <= live + 4096.0,
        "{on_disk} bytes of cache files, {live} live"
    );
}

fn the_byte_bounds_hold_under_concurrent_queries(weed: &Weed) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (memory, disk) = (24 * 1024u64, 48 * 1024u64);
    let (mem_flag, disk_flag) = (format!("{memory}B"), format!("{disk}B"));
    let flags = [
        "--compaction-enabled",
        "false",
        "--cache-memory-size",
        mem_flag.as_str(),
        "--cache-disk-size",
        disk_flag.as_str(),
        "--metadata-cache-size",
        "0",
    ];
    let s = serve_on_s3(
        weed,
        "cache-bounds",
        Some(dir.path()),
        &flags,
        &[("BULKHEAD_CACHE_BLOCK_SIZE", "4096")],
    );
    load(&s, "cpu", 4, 3000);
    let expected = answers(&s);
    let total: f64 = s
        .sql("db", "select sum(bytes) as b from system.sst_files", "csv")
        .text()
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .expect("sst bytes");
    assert!(
        total > 2.0 * disk as f64,
        "the data ({total} B) must not fit the cache"
    );
    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    for _ in 0..3 {
                        assert_eq!(answers(&s), expected);
                    }
                })
            })
            .collect();
        while readers.iter().any(|r| !r.is_finished()) {
            let text = metrics(&s);
            assert!(
                m(&text, "bulkhead_cache_bytes{tier=\"memory\"}") <= memory as f64,
                "{text}"
            );
            assert!(
                m(&text, "bulkhead_cache_bytes{tier=\"disk\"}") <= disk as f64,
                "{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for r in readers {
            r.join().expect("reader");
        }
    });
    let text = settle(&s);
    assert!(
        m(&text, "bulkhead_cache_evictions_total{tier=\"memory\"}") > 0.0,
        "{text}"
    );
    assert!(
        m(&text, "bulkhead_cache_evictions_total{tier=\"disk\"}") > 0.0,
        "{text}"
    );
    let on_disk: u64 = cache_files(dir.path())
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    assert!(
        on_disk <= disk,
        "{on_disk} bytes of cache files over {disk}"
    );
}

fn an_outage_serves_cached_ssts_and_names_what_it_could_not_fetch(weed: &mut Weed) {
    // One server writes two tables and goes; a second, with an empty cache, reads one.
    let flags = [
        "--compaction-enabled",
        "false",
        "--s3-max-retries",
        "1",
        "--s3-retry-timeout",
        "2s",
    ];
    let writer_dir = tempfile::tempdir().expect("tempdir");
    let mut writer = serve_on_s3(weed, "cache-outage", Some(writer_dir.path()), &flags, &[]);
    load(&writer, "cpu", 2, 2000);
    load(&writer, "mem", 2, 2000);
    let cpu = answers(&writer);
    writer.terminate(Duration::from_secs(30));

    let dir = tempfile::tempdir().expect("tempdir");
    let s = serve_on_s3(weed, "cache-outage", Some(dir.path()), &flags, &[]);
    assert_eq!(answers(&s), cpu);
    let fetched = m(&metrics(&s), "bulkhead_cache_fetches_total");
    assert!(fetched > 0.0);
    weed.kill();
    let served = answers(&s);
    weed.restart();
    assert_eq!(
        served, cpu,
        "cached SSTs are served while the store is down"
    );
    weed.kill();
    let r = s.sql("db", "select count(*), sum(a) from mem", "csv");
    weed.restart();
    assert!(r.status >= 500, "{} {}", r.status, r.text());
    let text = r.text();
    assert!(
        text.contains("could not fetch")
            && text.contains("data/db/mem/")
            && text.contains(".parquet"),
        "the error names the SST it could not fetch: {text}"
    );
}
