//! Storage faults and edges: timestamps at the ends of i64, disk full, wide tables (issue 22).

use super::{Case, line, write_to};
use crate::common::{self, TestServer};

pub(crate) fn cases() -> Vec<Case> {
    vec![Case {
        name: "timestamp below i64 for precision s",
        send: write_to(
            "/api/v2/write?bucket=b&precision=s",
            vec![super::AUTH],
            "m f=1 -9223372036854775808\n",
        ),
        expect: line(
            "timestamp -9223372036854775808 is out of range for precision `s`: in \
             nanoseconds it must fit in a signed 64-bit integer (years 1677 to 2262)",
        ),
    }]
}

/// The rows of `edge` as `host,value,time` CSV lines (sorted), through SQL.
fn edge_rows(s: &TestServer) -> String {
    let r = s.sql(
        "edges",
        "select host, value, cast(time as bigint) as t from edge order by host",
        "csv",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

/// What [`edge_rows`] must return: rows at i64::MAX, at i64::MIN, in the first hour of
/// 1677 and (from remote write) at -9223372036854 ms, and one ordinary row.
const EDGE_ROWS: &str = "host,value,t\n\
    early,3.0,-9223372036854000000\n\
    max,1.0,9223372036854775807\n\
    min,2.0,-9223372036854775808\n\
    now,4.0,1700000000000000000\n\
    prom,5.0,-9223372036854000000\n";

fn post_ok(s: &TestServer, path: &str, body: &[u8]) {
    let r = s.request("POST", path, &[], body);
    assert!(
        r.status == 200 || r.status == 204,
        "{path}: {} {}",
        r.status,
        r.text()
    );
}

/// Issue 22, item 4: every i64 nanosecond time is accepted (204) and stays readable:
/// after the write, after a flush (the segment arithmetic used to overflow in 1677,
/// so the flush wrote no SST for those rows and still truncated the WAL), after a
/// compaction of the edge segments, and after a restart. A time range that ends at
/// i64::MAX includes it.
#[test]
fn timestamps_at_both_ends_of_i64_survive_flush_compaction_and_restart() {
    let mut s = TestServer::start(&[]);
    let lines = "edge,host=max value=1 9223372036854775807\n\
                 edge,host=min value=2 -9223372036854775808\n\
                 edge,host=early value=3 -9223372036854000000\n\
                 edge,host=now value=4 1700000000000000000\n";
    post_ok(&s, "/api/v2/write?bucket=edges", lines.as_bytes());
    let prom = bulkhead_server::promwrite::encode(&bulkhead_server::promwrite::WriteRequest {
        timeseries: vec![bulkhead_server::promwrite::TimeSeries::new(
            &[("__name__", "edge"), ("host", "prom")],
            &[(5.0, -9_223_372_036_854)],
        )],
    });
    let r = s.request(
        "POST",
        "/api/v1/prom/write?db=edges",
        &[
            ("Content-Encoding", "snappy"),
            ("Content-Type", "application/x-protobuf"),
        ],
        &prom,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(edge_rows(&s), EDGE_ROWS, "after the write");
    // Time filters at the ends (the planner's bounds become the engine's range).
    let at_max = s.sql(
        "edges",
        "select host from edge where time >= '2262-04-11T23:47:16.854775807Z'",
        "csv",
    );
    assert_eq!(at_max.text(), "host\nmax\n");

    post_ok(&s, "/api/v1/flush?db=edges", b"");
    let metrics = s.get("/metrics").text();
    assert_eq!(
        common::metric(&metrics, "bulkhead_memtable_bytes"),
        Some(0.0),
        "the flush took every row"
    );
    assert_eq!(edge_rows(&s), EDGE_ROWS, "after the flush");

    // A second SST in each edge segment, then a compaction merging them.
    let again = "edge,host=max value=1 9223372036854775807\n\
                 edge,host=min value=2 -9223372036854775808\n";
    post_ok(&s, "/api/v2/write?bucket=edges", again.as_bytes());
    post_ok(&s, "/api/v1/flush?db=edges", b"");
    post_ok(&s, "/api/v1/compact?db=edges", b"");
    assert_eq!(edge_rows(&s), EDGE_ROWS, "after the compaction");

    s.terminate(std::time::Duration::from_secs(30));
    s.restart();
    assert_eq!(edge_rows(&s), EDGE_ROWS, "after the restart");
}

/// Issue 22, item 6: a memtable row costs what it holds, not a slot per column id of a
/// wide table. After the table has 50,000 fields, 100 one-field rows must add a few
/// kilobytes to the engine's memtable accounting (it used to be 1.6 MB per row), and
/// `count(*)` answers without building the table's columns.
#[test]
fn wide_table_rows_cost_what_they_hold() {
    // Past the default column limit (2000) on purpose: the limit is off here.
    let s = TestServer::start(&["--max-columns-per-table", "0"]);
    const FIELDS: usize = 50_000;
    let mut wide = String::new();
    for chunk in 0..FIELDS / 1000 {
        wide.push_str("w,h=wide ");
        let fields: Vec<String> = (chunk * 1000..(chunk + 1) * 1000)
            .map(|f| format!("f{f}=1"))
            .collect();
        wide.push_str(&fields.join(","));
        wide.push_str(&format!(" {}\n", 1_000 + chunk));
    }
    post_ok(&s, "/api/v2/write?bucket=wide", wide.as_bytes());
    let memtable_bytes = || {
        let text = s.get("/metrics").text();
        common::metric(&text, "bulkhead_memtable_bytes").expect("bulkhead_memtable_bytes")
    };
    let before = memtable_bytes();
    assert!(before > 0.0);

    let narrow: String = (0..100)
        .map(|i| format!("w,h=n{i} f{}={i} {}\n", FIELDS - 1, 10_000 + i))
        .collect();
    post_ok(&s, "/api/v2/write?bucket=wide", narrow.as_bytes());
    let grown = memtable_bytes() - before;
    // Each row: its series, one entry, one tree slot: a few hundred bytes.
    assert!(
        grown > 100.0 * 40.0 && grown < 100.0 * 1_000.0,
        "100 one-field rows grew the memtables by {grown} bytes"
    );

    let count = s.sql("wide", "select count(*) as n from w", "csv");
    assert_eq!(count.text(), "n\n150\n");
    let one = s.sql(
        "wide",
        &format!("select h, f{} from w where h = 'n7'", FIELDS - 1),
        "csv",
    );
    assert_eq!(one.text(), format!("h,f{}\nn7,7.0\n", FIELDS - 1));
}

/// Issue 22 #3, a full disk: a write whose WAL group does not fit gets `507` with code
/// `insufficient_storage` (not a `500`, not a hang) and nothing of it is kept; once space
/// is freed, writes are acknowledged again without a restart; a restart then replays
/// exactly the acknowledged rows. Before the fix the failed group left the WAL's file
/// cursor past the end, the next group landed after a hole of zeros, and the restart
/// failed with `WAL corruption ... CRC mismatch`.
#[test]
fn a_full_disk_answers_507_and_a_restart_keeps_every_acknowledged_row() {
    use crate::common::tmpfs::Tmpfs;
    let fs = match Tmpfs::mount("16m", "data") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED a_full_disk_answers_507...: cannot mount a small tmpfs: {why}");
            return;
        }
    };
    let mut server = crate::common::TestServer::start_in(fs.parent(), &[]);
    let path = "/api/v2/write?bucket=full&precision=s";
    // Each row carries 60 bytes of string, so a few hundred rows need fresh pages.
    let body = |rows: std::ops::Range<u64>| {
        rows.map(|i| {
            format!(
                "disk,host=h{} v={i}i,s=\"{}\" {}\n",
                i % 10,
                "x".repeat(60),
                1_600_000_000 + i
            )
        })
        .collect::<String>()
    };
    assert_eq!(server.post(path, body(0..100)).status, 204);
    assert!(fs.fill() > 0, "the tmpfs had free space to fill");
    for rows in [100..400, 400..700] {
        let r = server.post(path, body(rows));
        assert_eq!(r.status, 507, "{}", r.text());
        let json = r.json();
        assert_eq!(json["code"], "insufficient_storage", "{json}");
        let error = json["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("IO error during WAL write: ")
                && error.ends_with("No space left on device (os error 28)"),
            "{error}"
        );
    }
    fs.free();
    assert_eq!(server.post(path, body(700..1000)).status, 204);
    let status = server.terminate(std::time::Duration::from_secs(60));
    assert!(
        status.success(),
        "clean shutdown: {status}\n{}",
        server.log()
    );
    server.restart();
    let r = server.sql(
        "full",
        "select count(*) as n, sum(v) as total, min(length(s)) as len from disk",
        "csv",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let acked_sum: u64 = (0..100).chain(700..1000).sum();
    assert_eq!(r.text(), format!("n,total,len\n400,{acked_sum},60\n"));
}
