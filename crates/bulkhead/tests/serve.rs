//! End-to-end tests of `bulkhead serve` through the real binary (see `common::TestServer`).
//! SQL round trips join these once the query layer is wired into `serve`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{TestServer, assert_prometheus_text, metric};

fn rows_in(server: &TestServer, db: &str, table: &str) -> f64 {
    let text = server.get("/metrics").text();
    let mem = metric(
        &text,
        &format!("bulkhead_table_memtable_rows{{db=\"{db}\",table=\"{table}\"}}"),
    )
    .unwrap_or(0.0);
    let sst = metric(
        &text,
        &format!("bulkhead_table_sst_rows{{db=\"{db}\",table=\"{table}\"}}"),
    )
    .unwrap_or(0.0);
    mem + sst
}

#[test]
fn writes_v1_and_v2_metrics_and_graceful_shutdown() {
    let mut s = TestServer::start(&[]);
    let r = s.post(
        "/api/v2/write?bucket=demo&org=x",
        "cpu,host=a usage=1\ncpu,host=b usage=2",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let r = s.post(
        "/write?db=demo&precision=s",
        "cpu,host=c usage=3 1700000000\n",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(rows_in(&s, "demo", "cpu"), 3.0);

    let metrics = s.get("/metrics");
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    assert_prometheus_text(&text);
    assert_eq!(metric(&text, "bulkhead_ingest_rows_total"), Some(3.0));
    assert!(
        text.contains("bulkhead_runtime_workers{"),
        "runtime metrics missing"
    );
    assert!(text.contains("bulkhead_http_request_duration_seconds_bucket{route=\"/api/v2/write\""));
    let debug = s.get("/debug/bulkheads").json();
    assert_eq!(debug["runtimes"].as_array().map(Vec::len), Some(5));

    // Partial write: the bad line is reported, the good one written.
    let r = s.post(
        "/api/v2/write?bucket=demo",
        "cpu,host=d usage=4\ncpu,host=e usage=oops\n",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["data"][0]["line_number"], 2);
    // accept_partial=false: nothing written.
    let r = s.post(
        "/api/v2/write?bucket=demo&accept_partial=false",
        "cpu,host=f usage=5\nbad\n",
    );
    assert_eq!(r.status, 400);
    assert_eq!(rows_in(&s, "demo", "cpu"), 4.0);
    // A type conflict with the stored schema rejects just that line, naming the column.
    let r = s.post(
        "/api/v2/write?bucket=demo",
        "cpu,host=g usage=\"str\"\ncpu,host=h usage=6",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["data"][0]["line_number"], 1, "{v}");
    assert!(
        v["data"][0]["error_message"]
            .as_str()
            .unwrap_or("")
            .contains("column `usage` has type float"),
        "{v}"
    );
    assert_eq!(v["data"].as_array().map(Vec::len), Some(1), "{v}");

    // SIGTERM: exit 0, and everything acknowledged is there after a restart.
    let status = s.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}:\n{}", s.log());
    s.restart();
    assert_eq!(rows_in(&s, "demo", "cpu"), 5.0, "{}", s.log());
}

#[test]
fn kill_9_then_restart_keeps_every_acknowledged_row() {
    let mut s = TestServer::start(&[]);
    let mut acked = 0;
    for i in 0..20 {
        let body: String = (0..50)
            .map(|j| format!("m,w=w{i} v={j}i {}\n", i * 1000 + j))
            .collect();
        let r = s.post("/api/v2/write?bucket=k", body);
        assert_eq!(r.status, 204, "{}", r.text());
        acked += 50;
    }
    s.kill9_and_restart();
    assert_eq!(rows_in(&s, "k", "m"), acked as f64, "{}", s.log());
}

#[test]
fn auth_and_body_limit() {
    let s = TestServer::start(&["--auth-token", "s3cret", "--max-body-size", "1KiB"]);
    assert_eq!(s.get("/health").status, 200, "health needs no token");
    let r = s.post("/api/v2/write?bucket=a", "m f=1");
    assert_eq!(r.status, 401);
    let r = s.request(
        "POST",
        "/api/v2/write?bucket=a",
        &[("Authorization", "Token wrong")],
        b"m f=1",
    );
    assert_eq!(r.status, 401);
    assert_eq!(s.request("GET", "/metrics", &[], b"").status, 401);
    let ok = s.request(
        "POST",
        "/api/v2/write?bucket=a",
        &[("Authorization", "Token s3cret")],
        b"m f=1",
    );
    assert_eq!(ok.status, 204, "{}", ok.text());
    let big = "m f=1\n".repeat(400);
    let r = s.request(
        "POST",
        "/api/v2/write?bucket=a",
        &[("Authorization", "Bearer s3cret")],
        big.as_bytes(),
    );
    assert_eq!(r.status, 413, "{}", r.text());
    let text = s
        .request("GET", "/metrics", &[("Authorization", "Token s3cret")], b"")
        .text();
    assert_eq!(
        metric(&text, "bulkhead_ingest_rows_total"),
        Some(1.0),
        "only the authorized write"
    );
}

#[test]
fn env_vars_apply_and_flags_win() {
    let s = TestServer::start_with_env(
        &["--max-tags-per-line", "1"],
        &[
            ("BULKHEAD_MAX_TAGS_PER_LINE", "5"),
            ("BULKHEAD_MAX_LINE_LENGTH", "30"),
        ],
    );
    let r = s.post(
        "/api/v2/write?bucket=e",
        "m,a=1,b=2 f=1\nm f=1\nm,a=1 f=\"this line is longer than thirty bytes\"\n",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let data = r.json()["data"].clone();
    assert_eq!(data[0]["line_number"], 1);
    assert!(
        data[0]["error_message"]
            .as_str()
            .unwrap_or("")
            .contains("too many tags"),
        "flag beats env: {data}"
    );
    assert_eq!(data[1]["line_number"], 3);
    assert!(
        data[1]["error_message"]
            .as_str()
            .unwrap_or("")
            .contains("max_line_length"),
        "env applies: {data}"
    );
}

#[test]
fn bad_config_stops_startup_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("b.toml");
    std::fs::write(&cfg, "[memtable]\nwrite_bufer = \"1GiB\"\n").expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .expect("run bulkhead");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("write_bufer"), "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .args(["serve", "--runtime-mode", "both"])
        .output()
        .expect("run bulkhead");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("both"));
}

/// Write through v1 and v2, read back as JSON, CSV and Arrow IPC; SQL errors are 400.
#[test]
fn sql_round_trip_in_every_format() {
    let s = TestServer::start(&[]);
    let r = s.post(
        "/api/v2/write?bucket=q&precision=s",
        "cpu,host=a usage=1.5,n=1i 1700000000\ncpu,host=b usage=2.5,n=2i 1700000001\n",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let r = s.post(
        "/write?db=q&precision=s",
        "cpu,host=c usage=3.5,n=3i 1700000002\n",
    );
    assert_eq!(r.status, 204, "{}", r.text());

    let q = "select host, usage, n from cpu order by host";
    let json = s.sql("q", q, "json");
    assert_eq!(json.status, 200, "{}", json.text());
    assert_eq!(
        json.json(),
        serde_json::json!([
            {"host": "a", "usage": 1.5, "n": 1},
            {"host": "b", "usage": 2.5, "n": 2},
            {"host": "c", "usage": 3.5, "n": 3},
        ])
    );

    let csv = s.sql("q", q, "csv");
    assert_eq!(csv.status, 200, "{}", csv.text());
    assert_eq!(csv.text(), "host,usage,n\na,1.5,1\nb,2.5,2\nc,3.5,3\n");

    let arrow = s.sql("q", q, "arrow");
    assert_eq!(arrow.status, 200, "{}", arrow.text());
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(arrow.body), None)
        .expect("an Arrow IPC stream");
    let rows: usize = reader.map(|b| b.expect("batch").num_rows()).sum();
    assert_eq!(rows, 3);

    let bad = s.sql("q", "selec nonsense", "json");
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(bad.json()["code"], "plan");
    let missing = s.sql("q", "select * from no_such_table", "json");
    assert!(matches!(missing.status, 400 | 404), "{}", missing.text());

    // kill -9: every acknowledged row comes back, queryable.
    let mut s = s;
    s.kill9_and_restart();
    let csv = s.sql("q", "select count(*) as c from cpu", "csv");
    assert_eq!(csv.text(), "c\n3\n", "{}", s.log());
}

/// Admin endpoints through the real engine: flush makes SSTs, compact merges them.
#[test]
fn flush_and_compact_through_the_api() {
    let s = TestServer::start(&[]);
    for i in 0..3 {
        let r = s.post(
            "/api/v2/write?bucket=a&precision=s",
            format!("m,t=x f={i} {}\n", 1_700_000_000 + i),
        );
        assert_eq!(r.status, 204, "{}", r.text());
        let r = s.post("/api/v1/flush?db=a&table=m", "");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["status"], "flushed");
    }
    let files = |s: &TestServer| {
        metric(
            &s.get("/metrics").text(),
            "bulkhead_table_sst_files{db=\"a\",table=\"m\"}",
        )
    };
    assert_eq!(files(&s), Some(3.0));
    let r = s.post("/api/v1/compact?db=a", "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(files(&s), Some(1.0), "{}", s.log());
    assert_eq!(rows_in(&s, "a", "m"), 3.0);
    assert_eq!(s.post("/api/v1/compact?table=m", "").status, 400);
}

/// `[compaction]` and `[retention]` from flags: the background compactor merges at the
/// configured trigger and reports it on /metrics; rows past the TTL vanish from SQL.
#[test]
fn background_compaction_and_retention_follow_their_flags() {
    let s = TestServer::start(&[
        "--compaction-trigger",
        "2",
        "--compaction-check-interval",
        "100ms",
        "--compaction-grace-period",
        "0s",
        "--retention-ttl",
        "30d",
    ]);
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    // Two flushed files in one old (but unexpired) segment, one expired row.
    for (i, t) in [(1, now_s - 86_400), (2, now_s - 86_400 + 1)] {
        let r = s.post(
            "/api/v2/write?bucket=a&precision=s",
            format!("m,t=x f={i} {t}\n"),
        );
        assert_eq!(r.status, 204, "{}", r.text());
        assert_eq!(s.post("/api/v1/flush?db=a", "").status, 200);
    }
    let r = s.post(
        "/api/v2/write?bucket=a&precision=s",
        format!("m,t=old f=0 {}\n", now_s - 40 * 86_400),
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = s.get("/metrics").text();
        if metric(&text, "bulkhead_compactions_total").unwrap_or(0.0) >= 1.0 {
            assert!(metric(&text, "bulkhead_compaction_output_bytes_total").unwrap_or(0.0) > 0.0);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no background compaction within 60 s: {text}\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = s.sql("a", "SELECT t, f FROM m ORDER BY f", "csv");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        "t,f\nx,1.0\nx,2.0\n",
        "the 40-day-old row is past the TTL"
    );
}

/// Precedence end to end: env beats the config file, which beats the default.
#[test]
fn env_beats_file_beats_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("b.toml");
    std::fs::write(
        &cfg,
        "[limits]\nmax_tags_per_line = 1\nmax_fields_per_line = 1\n",
    )
    .expect("write config");
    let path = cfg.to_string_lossy().into_owned();
    let s =
        TestServer::start_with_env(&["--config", &path], &[("BULKHEAD_MAX_TAGS_PER_LINE", "5")]);
    let r = s.post("/api/v2/write?bucket=p", "m,a=1,b=2,c=3 f=1\nm g=1,h=2\n");
    assert_eq!(r.status, 400, "{}", r.text());
    let data = r.json()["data"].clone();
    assert_eq!(
        data.as_array().map(Vec::len),
        Some(1),
        "env allows 3 tags: {data}"
    );
    assert_eq!(data[0]["line_number"], 2);
    assert!(
        data[0]["error_message"]
            .as_str()
            .unwrap_or("")
            .contains("too many fields"),
        "file applies: {data}"
    );
}

/// `DROP TABLE` and `DROP DATABASE` over HTTP SQL and psql: dropped rows stay gone
/// after kill -9, other tables keep theirs, and the name takes a new schema.
#[test]
fn drop_table_and_database_survive_kill9() {
    let mut s = TestServer::start(&[]);
    let write = |s: &TestServer, body: &str| {
        let r = s.post("/api/v2/write?bucket=demo", body);
        assert_eq!(r.status, 204, "{}", r.text());
    };
    write(
        &s,
        "cpu,host=a usage=1 1\ncpu,host=b usage=2 2\nmem,host=a used=5 1\n",
    );
    assert_eq!(s.post("/api/v1/flush?db=demo", "").status, 200);
    write(&s, "cpu,host=c usage=3 3\n");
    write(&s, "disk,host=a free=1 1\n");
    let r = s.post("/write?db=other", "t,k=v f=1 1\n");
    assert_eq!(r.status, 204, "{}", r.text());

    let r = s.sql("demo", "DROP TABLE cpu", "csv");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text().trim(), "dropped\ndemo.cpu");
    let r = s.sql("demo", "select count(*) from cpu", "csv");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = s.sql("demo", "drop table cpu", "csv");
    assert_eq!(
        r.status,
        400,
        "a second drop names the missing table: {}",
        r.text()
    );
    assert!(r.text().contains("demo.cpu"), "{}", r.text());
    assert_eq!(s.sql("demo", "drop table if exists cpu", "csv").status, 200);
    let r = s.sql("demo", "drop view v", "csv");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("DROP TABLE, DROP DATABASE"),
        "{}",
        r.text()
    );

    // psql over the PG wire drops `disk`.
    let out = Command::new("psql")
        .args(["-X", "-h", "127.0.0.1", "-p", &s.pg_addr.port().to_string()])
        .args([
            "-U",
            "bulkhead",
            "-d",
            "demo",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
        ])
        .args(["-c", "drop table disk"])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "demo.disk");

    // The name comes back with another schema: `usage` is now a string.
    write(&s, "cpu,host=z usage=\"high\" 10\n");
    let r = s.sql("demo", "drop database other", "csv");
    assert_eq!(r.text().trim(), "dropped\nother.t");

    s.kill9_and_restart();
    let r = s.sql("demo", "select host, usage from cpu", "csv");
    assert_eq!(r.text().trim(), "host,usage\nz,high", "after kill -9");
    let r = s.sql("demo", "select count(*) as n from mem", "csv");
    assert_eq!(r.text().trim(), "n\n1");
    let r = s.sql("demo", "select count(*) from disk", "csv");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = s.sql("other", "select * from t", "csv");
    assert!(r.status >= 400, "a dropped database is gone: {}", r.text());
    let r = s.sql(
        "demo",
        "select schema_name from information_schema.schemata where schema_name = 'other'",
        "csv",
    );
    assert_eq!(r.text().trim(), "schema_name", "{}", r.text());
}
