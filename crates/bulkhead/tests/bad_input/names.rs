//! Table, database, tag and field names at the edges: length, reserved names, control characters (issue 22).
//!
//! The table cases run in the shared harness (`main.rs`); the tests below need a server
//! of their own: a table whose flush keeps failing (a dangling symlink where its
//! directory would be) must not pin the WAL, and a data directory whose WAL holds names
//! from before the limits must start, keep those rows and flush them.

use std::time::{Duration, Instant};

use bulkhead_engine::{FieldValue, Row, SmolStr, TableWrite, WriteBatch};
use bulkhead_server::promwrite::{Label, Sample, TimeSeries, WriteRequest};

use super::common::{self, TestServer};
use super::{AUTH, Case, Expect, http, line, write, write_to};

const LIMIT_NOTE: &str = "over the limit of 255 bytes";

fn prom(labels: &[(&str, &str)]) -> Vec<u8> {
    bulkhead_server::promwrite::encode(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: vec![Sample {
                value: 1.0,
                timestamp: 1,
            }],
            ..Default::default()
        }],
    })
}

fn prom_write(db: &str, labels: &[(&str, &str)]) -> super::Send {
    write_to(
        &format!("/api/v1/prom/write?db={db}"),
        vec![AUTH],
        prom(labels),
    )
}

fn reserved(name: &str) -> Expect {
    http(
        400,
        "bad_request",
        &format!(
            "database name `{name}` is reserved: system, information_schema, pg_catalog are \
             schemas of the SQL layer"
        ),
    )
}

pub(crate) fn cases() -> Vec<Case> {
    let long = "p".repeat(300);
    let percents = "%".repeat(86);
    let percents_in_url = "%25".repeat(86);
    vec![
        Case {
            name: "measurement name over 255 bytes once percent-encoded",
            send: write(format!("{percents} f=1 1\n")),
            expect: line(&format!(
                "measurement name is 258 bytes long once percent-encoded for object-store \
                 paths, {LIMIT_NOTE}"
            )),
        },
        Case {
            name: "database name over 255 bytes (?bucket=)",
            send: write_to(
                &format!("/api/v2/write?bucket={long}"),
                vec![AUTH],
                "m f=1 1\n",
            ),
            expect: http(
                400,
                "bad_request",
                &format!("database name is 300 bytes long, {LIMIT_NOTE}"),
            ),
        },
        Case {
            name: "database name over 255 bytes once percent-encoded (?bucket=)",
            send: write_to(
                &format!("/api/v2/write?bucket={percents_in_url}"),
                vec![AUTH],
                "m f=1 1\n",
            ),
            expect: http(
                400,
                "bad_request",
                &format!(
                    "database name is 258 bytes long once percent-encoded for object-store \
                     paths, {LIMIT_NOTE}"
                ),
            ),
        },
        Case {
            name: "remote write: metric name over 255 bytes",
            send: prom_write("b", &[("__name__", &long), ("job", "j")]),
            expect: http(
                400,
                "bad_request",
                &format!(
                    "series {{__name__={long:?}, ...}}: the metric name (`__name__`) is 300 \
                     bytes long, {LIMIT_NOTE}"
                ),
            ),
        },
        Case {
            name: "remote write: database name over 255 bytes once percent-encoded",
            send: prom_write(&percents_in_url, &[("__name__", "up")]),
            expect: http(
                400,
                "bad_request",
                &format!(
                    "database name is 258 bytes long once percent-encoded for object-store \
                     paths, {LIMIT_NOTE}"
                ),
            ),
        },
        Case {
            name: "reserved database `system` (v2 ?bucket=)",
            send: write_to("/api/v2/write?bucket=system", vec![AUTH], "m f=1 1\n"),
            expect: reserved("system"),
        },
        Case {
            name: "reserved database `information_schema` (v1 ?db=)",
            send: write_to("/write?db=information_schema", vec![AUTH], "m f=1 1\n"),
            expect: reserved("information_schema"),
        },
        Case {
            name: "reserved database `pg_catalog` (remote write)",
            send: prom_write("pg_catalog", &[("__name__", "up")]),
            expect: reserved("pg_catalog"),
        },
        Case {
            name: "reserved database in another case (`System`)",
            send: write_to("/api/v2/write?bucket=System", vec![AUTH], "m f=1 1\n"),
            expect: reserved("System"),
        },
        Case {
            name: "BOM before the measurement",
            send: write("\u{feff}m f=1 1\n"),
            expect: line(
                "measurement name contains a byte order mark (U+FEFF) at byte 0; save the text \
                 as UTF-8 without a BOM",
            ),
        },
        Case {
            name: "NUL byte in a measurement name",
            send: write("m\0x f=1 1\n"),
            expect: line("measurement name contains the control character U+0000 at byte 1"),
        },
        Case {
            name: "control character in a tag key",
            send: write("m,a\u{1}b=1 f=1 1\n"),
            expect: line("tag key contains the control character U+0001 at byte 1"),
        },
        Case {
            name: "NUL byte in a field key",
            send: write("m,t=a f\0=1 1\n"),
            expect: line("field key contains the control character U+0000 at byte 1"),
        },
        Case {
            name: "blank measurement name (an escaped space)",
            send: write("\\  f=1 1\n"),
            expect: line("measurement name is blank (only whitespace)"),
        },
        Case {
            name: "remote write: control character in a label name",
            send: prom_write("b", &[("__name__", "up"), ("jo\u{7}b", "x")]),
            expect: http(
                400,
                "bad_request",
                "series {__name__=\"up\", jo\u{7}b=\"x\"}: label name contains the control \
                 character U+0007 at byte 2",
            ),
        },
    ]
}

/// A key written as a field on one line and as a tag on a later one, in a table the
/// request creates: only the later line is rejected, the rest is written.
#[test]
fn a_key_used_as_field_then_tag_in_a_new_table_rejects_only_that_line() {
    let s = TestServer::start(&[]);
    let r = s.post("/api/v2/write?bucket=n", "n k=2 1\nn,k=a f=1 2\nn k=3 3\n");
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["code"], "line_protocol", "{v}");
    assert_eq!(v["error"], "partial write of line protocol occurred", "{v}");
    let data = v["data"].as_array().expect("data");
    assert_eq!(data.len(), 1, "{v}");
    assert_eq!(data[0]["line_number"], 2, "{v}");
    assert_eq!(
        data[0]["error_message"], "`k` is a field of table `n`, not a tag",
        "{v}"
    );
    let r = s.sql("n", "select k from n order by time", "csv");
    assert_eq!(r.text(), "k\n2.0\n3.0\n");
}

/// Wait (bounded) until `/metrics` shows `series` at or below `max`.
fn wait_metric_at_most(s: &TestServer, series: &str, max: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = s.get("/metrics").text();
        let v = common::metric(&text, series).unwrap_or_else(|| panic!("no {series}"));
        if v <= max || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn count(s: &TestServer, db: &str, table: &str) -> String {
    let r = s.sql(db, &format!("select count(*) as c from \"{table}\""), "csv");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), s.log());
    r.text()
}

/// One table's flush keeps failing (a dangling symlink sits where its object directory
/// would be):
/// after three failed attempts its rows are parked, the WAL is truncated for the other
/// tables, `/health` and `/metrics` name the table, and nothing is lost, through a
/// `kill -9`, until the fault is gone and the flush succeeds.
#[test]
fn a_table_whose_flush_keeps_failing_does_not_pin_the_wal() {
    let mut s = TestServer::start(&["--wal-segment-size", "4KiB"]);
    // `data_dir()` holds the server's `--data-dir` as `data/`.
    let data = s.data_dir().join("data");
    let objects = data.join("objects").join("data").join("b");
    std::fs::create_dir_all(&objects).expect("mkdir");
    // A dangling symlink: directories cannot be created under it, and the startup
    // garbage collection does not list it (a plain file would be deleted as an orphan).
    std::os::unix::fs::symlink("/nonexistent/bulkhead-test", objects.join("stuck")).expect("block");

    let mut t = 0;
    for _ in 0..50 {
        let stuck: String = (0..10)
            .map(|i| format!("stuck,h=h{i} v={t} {}\n", t + i))
            .collect();
        let ok: String = (0..10)
            .map(|i| format!("ok,h=h{i} v={t} {}\n", t + i))
            .collect();
        for body in [stuck, ok] {
            let r = s.post("/api/v2/write?bucket=b", body);
            assert_eq!(r.status, 204, "{}", r.text());
        }
        t += 10;
    }
    let r = s.post("/api/v1/flush?db=b&table=ok", "");
    assert_eq!(r.status, 200, "{}", r.text());
    let pinned = common::metric(&s.get("/metrics").text(), "bulkhead_wal_segments").expect("wal");
    assert!(
        pinned >= 3.0,
        "the writes should span several segments: {pinned}"
    );

    for _ in 0..3 {
        let r = s.post("/api/v1/flush?db=b&table=stuck", "");
        assert_eq!(r.status, 500, "{}", r.text());
    }
    let h = s.get("/health");
    assert_eq!(h.status, 200);
    let h = h.json();
    assert_eq!(h["status"], "warn", "{h}");
    let failing = &h["checks"][0]["tables"][0];
    assert_eq!(failing["db"], "b", "{h}");
    assert_eq!(failing["table"], "stuck", "{h}");
    assert_eq!(failing["parked"], true, "{h}");
    assert!(failing["consecutive_failures"].as_u64() >= Some(3), "{h}");
    assert!(
        failing["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{h}"
    );
    let text = s.get("/metrics").text();
    assert_eq!(
        common::metric(&text, "bulkhead_table_parked{db=\"b\",table=\"stuck\"}"),
        Some(1.0)
    );
    assert!(
        common::metric(
            &text,
            "bulkhead_table_flush_failures{db=\"b\",table=\"stuck\"}"
        ) >= Some(3.0)
    );
    assert_eq!(
        common::metric(
            &text,
            "bulkhead_table_flush_failures{db=\"b\",table=\"ok\"}"
        ),
        Some(0.0)
    );

    // After the parking, the other table's flush truncates the WAL.
    let r = s.post("/api/v2/write?bucket=b", "ok,h=x v=1 1000000\n");
    assert_eq!(r.status, 204, "{}", r.text());
    let r = s.post("/api/v1/flush?db=b&table=ok", "");
    assert_eq!(r.status, 200, "{}", r.text());
    let segments = wait_metric_at_most(&s, "bulkhead_wal_segments", 2.0);
    assert!(
        segments <= 2.0,
        "the WAL kept {segments} segments (was {pinned})"
    );

    // Rows written to the parked table afterwards, one overwriting a parked row.
    let r = s.post(
        "/api/v2/write?bucket=b",
        "stuck,h=h0 v=-1 0\nstuck,h=new v=7 5000\n",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let expect_stuck = "c\n501\n";
    let expect_ok = "c\n501\n";
    assert_eq!(count(&s, "b", "stuck"), expect_stuck);
    assert_eq!(count(&s, "b", "ok"), expect_ok);

    s.kill9_and_restart();
    assert_eq!(count(&s, "b", "stuck"), expect_stuck, "{}", s.log());
    assert_eq!(count(&s, "b", "ok"), expect_ok);
    let r = s.sql(
        "b",
        "select v from stuck where h = 'h0' order by time limit 1",
        "csv",
    );
    assert_eq!(
        r.text(),
        "v\n-1.0\n",
        "the later write wins over the parked row"
    );

    // The fault goes away: the flush succeeds, the parked file goes, nothing is lost.
    std::fs::remove_file(objects.join("stuck")).expect("unblock");
    let r = s.post("/api/v1/flush?db=b&table=stuck", "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.get("/health").json()["status"], "pass");
    let parked: Vec<_> = std::fs::read_dir(data.join("wal").join("parked"))
        .expect("parked dir")
        .collect();
    assert!(parked.is_empty(), "{parked:?}");
    s.kill9_and_restart();
    assert_eq!(count(&s, "b", "stuck"), expect_stuck, "{}", s.log());
    assert_eq!(count(&s, "b", "ok"), expect_ok);
}

/// A WAL written before the name limits, holding a 300-byte table name and a database
/// name of 86 `%` (258 bytes percent-encoded): the server starts, the rows are there,
/// and they flush (to shortened, hashed path components) instead of failing forever;
/// new writes with such names are refused.
#[test]
fn a_wal_from_before_the_name_limits_starts_and_flushes() {
    let dir = tempfile::tempdir().expect("tmp");
    let long = "p".repeat(300);
    let percents = "%".repeat(86);
    let batch = |table: &str, v: f64| WriteBatch {
        tables: vec![TableWrite {
            table: table.to_string(),
            rows: vec![Row {
                tags: vec![(SmolStr::new("h"), SmolStr::new("a"))],
                fields: vec![(SmolStr::new("v"), FieldValue::F64(v))],
                time: 1,
            }],
        }],
    };
    let (a, b) = (batch(&long, 1.0), batch("m", 2.0));
    let (name, bytes) =
        bulkhead_engine::fuzzing::wal_segment(&[(1, "b", &a), (2, percents.as_str(), &b)]);
    let wal = dir.path().join("data").join("wal");
    std::fs::create_dir_all(&wal).expect("mkdir");
    std::fs::write(wal.join(name), bytes).expect("segment");

    let mut s = TestServer::start_in(dir.path(), &[]);
    let percents_in_url = "%25".repeat(86);
    let check = |s: &TestServer| {
        assert_eq!(count(s, "b", &long), "c\n1\n", "{}", s.log());
        let r = s.get(&format!(
            "/api/v1/sql?db={percents_in_url}&q={}&format=csv",
            common::url_encode("select v from m")
        ));
        assert_eq!(r.text(), "v\n2.0\n");
    };
    check(&s);
    let r = s.post("/api/v1/flush", "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.get("/health").json()["status"], "pass");
    s.kill9_and_restart();
    check(&s);
    let r = s.post("/api/v2/write?bucket=b", format!("{long} v=3 2\n"));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.json()["data"][0]["error_message"],
        format!("measurement name is 300 bytes long, {LIMIT_NOTE}")
    );
}
