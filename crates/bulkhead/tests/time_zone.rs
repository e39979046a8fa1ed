//! `now()` and `timestamptz` values keep their time zone (UTC, like the `time` column)
//! over HTTP and the PostgreSQL wire, against the real `bulkhead serve` binary and psql.

mod common;

use std::process::Command;

use common::TestServer;

fn psql(server: &TestServer, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-X", "-A", "-t", "-h", "127.0.0.1", "-p"])
        .arg(server.pg_addr.port().to_string())
        .args([
            "-U",
            "bulkhead",
            "-d",
            "demo",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD")
        .output()
        .expect("running psql (scripts/test installs postgresql-client)");
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn http_json(server: &TestServer, sql: &str) -> serde_json::Value {
    let reply = server.sql("demo", sql, "json");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

#[test]
fn now_and_timestamptz_keep_their_time_zone() {
    let server = TestServer::start(&[]);
    let reply = server.post(
        "/api/v2/write?bucket=demo",
        "cpu,host=a usage=1 1767225600000000000\n",
    );
    assert_eq!(reply.status, 204, "{}", reply.text());

    // HTTP: the Arrow type carries UTC, and the JSON value says so (`Z`), as for `time`.
    let rows = http_json(
        &server,
        "select arrow_typeof(now()) as n, arrow_typeof(timestamptz '2024-01-01 12:00:00+02') as l, \
         arrow_typeof(cast('2024-01-01 12:00:00+02' as timestamp with time zone)) as c, \
         arrow_typeof(time) as t from cpu",
    );
    for col in ["n", "l", "c", "t"] {
        assert_eq!(rows[0][col], "Timestamp(ns, \"UTC\")", "{col}: {rows}");
    }
    let rows = http_json(
        &server,
        "select timestamptz '2024-01-01 12:00:00+02' as l, '2024-01-01T12:00:00-05:00'::timestamptz as c",
    );
    assert_eq!(rows[0]["l"], "2024-01-01T10:00:00Z", "{rows}");
    assert_eq!(rows[0]["c"], "2024-01-01T17:00:00Z", "{rows}");
    // Arithmetic and comparisons with the time column still work.
    let rows = http_json(
        &server,
        "select count(*) as n from cpu where time < now() and time > now() - interval '100000 days' \
         and time = timestamptz '2026-01-01 01:00:00+01'",
    );
    assert_eq!(rows[0]["n"], 1, "{rows}");
    // A timestamp without a time zone stays one.
    let rows = http_json(
        &server,
        "select arrow_typeof(timestamp '2024-01-01 12:00:00') as t",
    );
    assert_eq!(rows[0]["t"], "Timestamp(ns)", "{rows}");

    // PG: `timestamp with time zone`, printed with its offset like `time` (Bulkhead's PG
    // text format always has six fractional digits).
    assert_eq!(
        psql(&server, "select pg_typeof(now())::text"),
        "timestamp with time zone"
    );
    assert_eq!(
        psql(&server, "select timestamptz '2024-01-01 12:00:00+02'"),
        "2024-01-01 10:00:00.000000+00"
    );
    assert_eq!(
        psql(
            &server,
            "select '2024-01-01 12:00:00-05'::timestamptz, time from cpu"
        ),
        "2024-01-01 17:00:00.000000+00|2026-01-01 00:00:00.000000+00"
    );
    let now = psql(&server, "select now()");
    assert!(now.ends_with("+00"), "now() over PG: {now}");
    assert_eq!(
        psql(
            &server,
            "select count(*) from cpu where time < now() - interval '1 day'"
        ),
        "1"
    );
}
