//! The PG wire server against real clients: `psql` (simple protocol, `\d`, `\dt`),
//! Python `psycopg` (extended protocol with parameters, SQLSTATEs), password auth, and
//! a garbage client that must only lose its own connection.

mod common;

use std::io::{Read, Write};

use common::{Pg, ok, stderr, stdout, write_cpu};

#[test]
fn psql_selects_every_column_type() {
    let pg = Pg::start(None);
    write_cpu(&pg);
    let out = ok(pg.psql(
        "demo",
        &[
            "-A",
            "-t",
            "-c",
            "select host, usage, count, big, up, note, time from cpu order by host",
        ],
    ));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "a|0.5|-3|18446744073709551615|t|it's|2023-11-14 22:13:20.000000+00",
            "b|1.25|7|1|f|x|2023-11-14 22:13:21.000000+00",
        ],
        "{out}"
    );
}

#[test]
fn queries_run_on_the_query_runtime_never_on_io() {
    let pg = Pg::start(None);
    write_cpu(&pg);
    ok(pg.psql("demo", &["-c", "select * from cpu", "-c", "\\d cpu"]));
    ok(pg.python(
        "demo",
        None,
        r#"
with psycopg.connect(DSN, autocommit=True) as conn:
    conn.execute("select * from cpu where host = %s", ("a",)).fetchall()
"#,
    ));
    let threads = pg.threads.lock().unwrap().clone();
    assert!(threads.len() >= 4, "{threads:?}");
    assert!(
        threads.iter().all(|t| t.starts_with("bh-query")),
        "{threads:?}"
    );
}

#[test]
fn psql_session_commands_version_and_multiple_statements() {
    let pg = Pg::start(None);
    write_cpu(&pg);
    let out = ok(pg.psql(
        "demo",
        &[
            "-A",
            "-t",
            "-c",
            "SET extra_float_digits = 3",
            "-c",
            "SET application_name = 'x'; select count(*) from cpu",
            "-c",
            "select version()",
            "-c",
            "SHOW TRANSACTION ISOLATION LEVEL",
            "-c",
            "BEGIN",
            "-c",
            "COMMIT",
        ],
    ));
    let lines: Vec<_> = out.lines().collect();
    assert!(lines.contains(&"2"), "{out}");
    assert!(lines.iter().any(|l| l.contains("DataFusion")), "{out}");
    assert!(lines.contains(&"read committed"), "{out}");
}

#[test]
fn psycopg_extended_protocol_types_and_parameters() {
    let pg = Pg::start(None);
    write_cpu(&pg);
    let out = ok(pg.python(
        "demo",
        None,
        r#"
with psycopg.connect(DSN, autocommit=True) as conn:
    cur = conn.execute(
        "select host, usage, count, big, up, note, time from cpu where host = %s and usage > %s",
        ("b", 1.0),
    )
    print([d.type_code for d in cur.description])
    for r in cur.fetchall():
        print(repr(r))
    cur = conn.execute("select host from cpu where count < %s order by host", (0,), prepare=True)
    print(cur.fetchall())
    cur = conn.execute("select %s::bigint + 1 as n", (41,), binary=True)
    print(cur.fetchall())
    # Describe of a prepared statement (not a portal): parameter and result types.
    pgc = conn.pgconn
    pgc.prepare(b"s1", b"select host, usage from cpu where host = $1")
    d = pgc.describe_prepared(b"s1")
    print(d.nparams, d.nfields, d.ftype(0), d.ftype(1))
# a driver's default (non-autocommit) mode works too
with psycopg.connect(DSN) as conn:
    print(conn.execute("select count(*) from cpu").fetchone())
"#,
    ));
    let lines: Vec<_> = out.lines().collect();
    // text, float8, int8, numeric, bool, text, timestamptz
    assert_eq!(lines[0], "[25, 701, 20, 1700, 16, 25, 1184]", "{out}");
    assert!(lines[1].starts_with("('b', 1.25, 7, Decimal('1'), False, 'x', datetime.datetime(2023, 11, 14, 22, 13, 21, tzinfo="), "{out}");
    assert_eq!(lines[2], "[('a',)]", "{out}");
    assert_eq!(lines[3], "[(42,)]", "{out}");
    assert_eq!(lines[4], "1 2 25 701", "{out}");
    assert_eq!(lines[5], "(2,)", "{out}");
}

/// A Describe (of a prepared statement or of a portal) tells the columns of a statement
/// that changes something without running it: Parse + Describe alone changes nothing,
/// and Parse + Bind + Describe + Execute (psycopg's every `execute`) runs it once.
#[test]
fn describe_never_runs_deletes_drops_or_rollup_statements() {
    let pg = Pg::start(None);
    write_cpu(&pg);
    let out = ok(pg.python(
        "demo",
        None,
        r#"
from psycopg.pq import ExecStatus
with psycopg.connect(DSN, autocommit=True) as conn:
    def count():
        return conn.execute("select count(*) from cpu").fetchone()[0]
    def rollups():
        return conn.execute("select count(*) from system.rollups").fetchone()[0]
    def tombstones():
        return conn.execute("select tombstones from system.tables where \"table\" = 'cpu'").fetchone()[0]
    pgc = conn.pgconn
    # Parse + Describe (statement), never Bind / Execute.
    statements = [
        (b"s1", b"delete from cpu where host = 'a'"),
        (b"s2", b"drop table cpu"),
        (b"s3", b"drop database demo"),
        (b"s4", b"create rollup cpu_1h from cpu aggregate avg, count every 1h"),
        (b"s5", b"drop rollup cpu_1h"),
        (b"s6", b"delete from cpu where host = $1"),
    ]
    for name, sql in statements:
        assert pgc.prepare(name, sql).status == ExecStatus.COMMAND_OK, sql
        d = pgc.describe_prepared(name)
        assert d.status == ExecStatus.COMMAND_OK, (sql, d.error_message)
        print(name.decode(), d.nparams, d.nfields, d.fname(0).decode())
    print("after describe", count(), tombstones(), rollups())
    # Parse + Bind + Describe (portal) + Execute: each runs exactly once (a second
    # CREATE ROLLUP would fail with 42710, a second DROP TABLE with "not found").
    cur = conn.execute("create rollup cpu_1h from cpu aggregate avg, count every 1h")
    print([c.name for c in cur.description], cur.fetchall(), rollups())
    cur = conn.execute("drop rollup cpu_1h")
    print([c.name for c in cur.description], cur.fetchall(), rollups())
    cur = conn.execute("delete from cpu where host = %s", ("a",))
    print([c.name for c in cur.description], cur.fetchall(), count(), tombstones())
    # The prepared statement of above: Bind + Execute of the described one.
    r = pgc.exec_prepared(b"s2", [])
    assert r.status == ExecStatus.TUPLES_OK, r.error_message
    print(r.ntuples, r.get_value(0, 0).decode())
    print(conn.execute("select count(*) from information_schema.tables where table_name = 'cpu'").fetchone()[0])
"#,
    ));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "s1 0 1 deleted_from",
            "s2 0 1 dropped",
            "s3 0 1 dropped",
            "s4 0 1 created",
            "s5 0 1 dropped",
            "s6 1 1 deleted_from",
            "after describe 2 0 0",
            "['created'] [('demo.cpu_1h',)] 1",
            "['dropped'] [('demo.cpu_1h',)] 0",
            "['deleted_from'] [('demo.cpu',)] 1 1",
            "1 demo.cpu",
            "0",
        ],
        "{out}"
    );
}

#[test]
fn errors_carry_sqlstates_and_keep_the_connection() {
    let pg = Pg::start(None);
    write_cpu(&pg);
    let out = ok(pg.python(
        "demo",
        None,
        r#"
with psycopg.connect(DSN, autocommit=True) as conn:
    for q in ["select * from nope", "select nope from cpu", "selec 1", "select * from cpu where host = %s"]:
        try:
            conn.execute(q, ("a",) if "%s" in q else None).fetchall()
            print("no error")
        except psycopg.Error as e:
            print(e.sqlstate)
    print(conn.execute("select 1").fetchone())
"#,
    ));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["42P01", "42703", "42601", "no error", "(1,)"],
        "{out}"
    );
    // psql, simple protocol, with the SQLSTATE in the message.
    let bad = pg.psql(
        "demo",
        &["-c", "\\set VERBOSITY verbose", "-c", "select * from nope"],
    );
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("ERROR:  42P01"), "{}", stderr(&bad));
}

#[test]
fn psql_describe_commands() {
    let pg = Pg::start(None);
    write_cpu(&pg);
    pg.write(
        "demo",
        vec![(
            "mem",
            common::row(
                &[("host", "a")],
                &[("free", bulkhead_engine::FieldValue::I64(1))],
                1,
            ),
        )],
    );
    let dt = ok(pg.psql("demo", &["-c", "\\dt"]));
    assert!(
        dt.contains("cpu") && dt.contains("mem") && dt.contains("table"),
        "{dt}"
    );
    let dt = ok(pg.psql("demo", &["-c", "\\dt cp*"]));
    assert!(dt.contains("cpu") && !dt.contains("mem"), "{dt}");
    ok(pg.psql("demo", &["-c", "\\d"]));
    let d = ok(pg.psql("demo", &["-c", "\\d cpu"]));
    for expected in [
        "host",
        "double precision",
        "bigint",
        "numeric",
        "boolean",
        "timestamp with time zone",
    ] {
        assert!(d.contains(expected), "missing {expected}: {d}");
    }
    let l = ok(pg.psql("demo", &["-c", "\\l"]));
    assert!(l.contains("demo") && !l.contains("system"), "{l}");
    let missing = pg.psql("demo", &["-c", "\\d nope"]);
    assert!(
        stderr(&missing).contains("Did not find any relation"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn password_must_equal_the_token() {
    let pg = Pg::start(Some("s3cret"));
    write_cpu(&pg);
    assert_eq!(
        ok(pg.psql("demo", &["-A", "-t", "-c", "select count(*) from cpu"])).trim(),
        "2"
    );
    let out = ok(pg.python(
        "demo",
        Some("wrong"),
        r#"
try:
    psycopg.connect(DSN)
    print("connected")
except psycopg.OperationalError as e:
    print("rejected", e)
"#,
    ));
    assert!(out.starts_with("rejected"), "{out}");
    assert!(
        out.to_lowercase()
            .contains("password authentication failed"),
        "{out}"
    );
    let out = ok(pg.python(
        "demo",
        None,
        r#"
try:
    psycopg.connect(DSN)
    print("connected")
except psycopg.OperationalError as e:
    print("rejected")
"#,
    ));
    assert_eq!(out.trim(), "rejected", "{out}");
}

#[test]
fn garbage_client_only_loses_its_own_connection() {
    let pg = Pg::start(None);
    write_cpu(&pg);
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0xff; 64][..],
        &[0, 0, 0, 8, 0xde, 0xad, 0xbe, 0xef][..],
    ] {
        let mut s = std::net::TcpStream::connect(pg.addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        s.write_all(garbage).unwrap();
        let mut buf = Vec::new();
        // The server answers with an error or just closes; either way the read ends.
        let _ = s.read_to_end(&mut buf);
    }
    // A client that goes away in the middle of the startup.
    drop(std::net::TcpStream::connect(pg.addr).unwrap());
    let out = pg.psql("demo", &["-A", "-t", "-c", "select count(*) from cpu"]);
    assert_eq!(stdout(&out).trim(), "2", "{}", stderr(&out));
}

#[test]
fn a_query_over_the_memory_limit_is_53200() {
    let pg = Pg::start_with(
        None,
        bulkhead_query::QueryConfig {
            memory_limit: 256 * 1024,
            ..bulkhead_query::QueryConfig::default()
        },
    );
    let rows = (0..20_000)
        .map(|i| {
            (
                "t",
                common::row(
                    &[("k", &format!("key-{i:06}"))],
                    &[("v", bulkhead_engine::FieldValue::F64(i as f64))],
                    i,
                ),
            )
        })
        .collect();
    pg.write("demo", rows);
    let out = ok(pg.python(
        "demo",
        None,
        r#"
with psycopg.connect(DSN, autocommit=True) as conn:
    try:
        conn.execute("select k, count(*) from t group by k order by k").fetchall()
        print("no error")
    except psycopg.Error as e:
        print(e.sqlstate)
    print(conn.execute("select count(*) from t").fetchone())
"#,
    ));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["53200", "(20000,)"],
        "{out}"
    );
}
