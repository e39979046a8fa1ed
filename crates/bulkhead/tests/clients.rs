//! Real SQL clients against the real `bulkhead serve` binary: SQLAlchemy 2 + pandas,
//! the ADBC PostgreSQL driver, psql's catalog commands and `\copy`, psycopg named
//! cursors, the exact SQL of Grafana's PostgreSQL data source; plus the HTTP probes
//! clients check (`/health`, `/ready`), JSON 405s and gzip for SQL results.
//!
//! The clients are installed by `scripts/test`; a missing one fails the test.

mod common;

use std::io::Read;
use std::process::{Command, Output};

use common::TestServer;

/// `cpu` in `demo`: `n` rows, hosts `a`/`b` alternating, one second apart from
/// 2026-01-01T00:00:00Z, `usage` = the row number.
fn write_cpu(server: &TestServer, n: usize) {
    let start: i64 = 1_767_225_600_000_000_000;
    let mut body = String::new();
    for i in 0..n {
        let host = if i % 2 == 0 { "a" } else { "b" };
        body.push_str(&format!(
            "cpu,host={host} usage={i}.5,cores={}i {}\n",
            i % 4,
            start + i as i64 * 1_000_000_000
        ));
    }
    let reply = server.post("/api/v2/write?bucket=demo", body);
    assert_eq!(reply.status, 204, "{}", reply.text());
}

fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "client failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn psql(server: &TestServer, args: &[&str]) -> Output {
    Command::new("psql")
        .args(["-X", "-h", "127.0.0.1", "-p"])
        .arg(server.pg_addr.port().to_string())
        .args(["-U", "bulkhead", "-d", "demo", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE")
        .output()
        .expect("running psql (scripts/test installs postgresql-client)")
}

/// Run Python `code` with `PORT` (the PG port), `DSN` (libpq) and `URI`
/// (`postgresql://...`) defined.
fn python(server: &TestServer, code: &str) -> Output {
    let port = server.pg_addr.port();
    let script = format!(
        "PORT = {port}\n\
         DSN = 'host=127.0.0.1 port={port} dbname=demo user=bulkhead connect_timeout=10'\n\
         URI = 'postgresql://bulkhead@127.0.0.1:{port}/demo'\n\
         {code}"
    );
    Command::new("python3")
        .args(["-c", &script])
        .env_remove("PGPASSWORD")
        .output()
        .expect("running python3")
}

#[test]
fn sqlalchemy_inspect_and_pandas_read_sql() {
    let server = TestServer::start(&[]);
    write_cpu(&server, 10);
    let out = ok(python(
        &server,
        r#"
import sqlalchemy as sa, pandas as pd
engine = sa.create_engine(URI.replace("postgresql://", "postgresql+psycopg://"))
insp = sa.inspect(engine)
print("schema", insp.default_schema_name)
print("tables", insp.get_table_names(), sorted(insp.get_table_names(schema="system")))
for c in insp.get_columns("cpu"):
    print("column", c["name"], repr(c["type"]), c["nullable"])
df = pd.read_sql("select host, usage from cpu where host = 'b' order by time", engine)
print("rows", len(df), list(df.columns), df["usage"].tolist()[:3])
with engine.connect() as conn:
    print("scalar", conn.execute(sa.text("select count(*) from cpu where usage > :u"), {"u": 4}).scalar())
"#,
    ));
    assert!(out.contains("schema demo\n"), "{out}");
    assert!(
        out.contains("tables ['cpu'] ['cache', 'rollups', 'runtimes', 'sst_files', 'tables']\n"),
        "{out}"
    );
    assert!(out.contains("column host TEXT() True\n"), "{out}");
    assert!(
        out.contains("column usage DOUBLE_PRECISION(precision=53) True\n"),
        "{out}"
    );
    assert!(out.contains("column cores BIGINT() True\n"), "{out}");
    assert!(
        out.contains("column time TIMESTAMP(timezone=True) False\n"),
        "{out}"
    );
    assert!(
        out.contains("rows 5 ['host', 'usage'] [1.5, 3.5, 5.5]\n"),
        "{out}"
    );
    assert!(out.contains("scalar 6\n"), "{out}");
}

#[test]
fn adbc_postgresql_driver_fetches_arrow_and_objects() {
    let server = TestServer::start(&[]);
    write_cpu(&server, 10);
    let out = ok(python(
        &server,
        r#"
import adbc_driver_postgresql.dbapi as adbc
with adbc.connect(URI) as conn:
    with conn.cursor() as cur:
        cur.execute("select host, usage, cores, time from cpu order by time limit 4")
        t = cur.fetch_arrow_table()
        print("schema", [(f.name, str(f.type)) for f in t.schema])
        print("usage", t.column("usage").to_pylist())
        print("hosts", t.column("host").to_pylist())
        cur.execute("select count(*) as n from cpu where host = 'a'")
        print("count", cur.fetchone()[0])
    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    for catalog in objects:
        for schema in catalog["catalog_db_schemas"] or []:
            for table in schema["db_schema_tables"] or []:
                cols = sorted(c["column_name"] for c in table["table_columns"] or [])
                print("object", catalog["catalog_name"], schema["db_schema_name"], table["table_name"], cols)
"#,
    ));
    assert!(
        out.contains(
            "schema [('host', 'string'), ('usage', 'double'), ('cores', 'int64'), ('time', 'timestamp[us, tz=UTC]')]"
        ),
        "{out}"
    );
    assert!(out.contains("usage [0.5, 1.5, 2.5, 3.5]\n"), "{out}");
    assert!(out.contains("hosts ['a', 'b', 'a', 'b']\n"), "{out}");
    assert!(out.contains("count 5\n"), "{out}");
    // Bulkhead databases are PostgreSQL databases (catalogs) and schemas.
    assert!(
        out.contains("object demo demo cpu ['cores', 'host', 'time', 'usage']\n"),
        "{out}"
    );
    assert!(out.contains("object demo system tables "), "{out}");
}

#[test]
fn psql_schemas_describe_plus_and_copy() {
    let server = TestServer::start(&[]);
    write_cpu(&server, 4);
    let dn = ok(psql(&server, &["-c", "\\dn"]));
    assert!(dn.contains(" demo "), "{dn}");
    assert!(dn.contains(" system "), "{dn}");
    assert!(!dn.contains("pg_catalog"), "{dn}");

    let d = ok(psql(&server, &["-c", "\\d+ cpu"]));
    for (column, ty) in [
        ("host", "text"),
        ("usage", "double precision"),
        ("cores", "bigint"),
        ("time", "timestamp with time zone"),
    ] {
        assert!(
            d.lines()
                .any(|l| l.split('|').map(str::trim).take(2).eq([column, ty])),
            "{column} {ty}:\n{d}"
        );
    }

    let csv = ok(psql(
        &server,
        &[
            "-c",
            "\\copy (select host, usage, time from cpu order by time limit 2) to stdout with (format csv, header)",
        ],
    ));
    assert_eq!(
        csv,
        "host,usage,time\na,0.5,2026-01-01 00:00:00.000000+00\nb,1.5,2026-01-01 00:00:01.000000+00\n"
    );
    let text = ok(psql(
        &server,
        &[
            "-c",
            "COPY (select host, cores from cpu order by time limit 2) TO STDOUT",
        ],
    ));
    assert_eq!(text, "a\t0\nb\t1\n");
    // COPY FROM is refused with 0A000, naming the alternative.
    let from = psql(&server, &["-c", "COPY cpu FROM STDIN"]);
    let err = String::from_utf8_lossy(&from.stderr);
    assert!(!from.status.success());
    assert!(err.contains("HTTP API"), "{err}");
}

#[test]
fn psycopg_named_cursor_fetches_in_chunks() {
    let server = TestServer::start(&[]);
    write_cpu(&server, 5_000);
    let out = ok(python(
        &server,
        r#"
import psycopg
with psycopg.connect(DSN) as conn:
    with conn.cursor(name="big") as cur:
        cur.itersize = 700
        cur.execute("select usage, host from cpu order by time")
        print("description", [d.name for d in cur.description])
        chunks, total, first = 0, 0, None
        while True:
            rows = cur.fetchmany(1000)
            if not rows:
                break
            first = first if first is not None else rows[0]
            chunks += 1
            total += len(rows)
        print("chunks", chunks, "rows", total, "first", first)
    with conn.cursor(name="all", binary=True) as cur:
        cur.execute("select count(*) from cpu")
        print("binary", cur.fetchall())
    conn.commit()
    # Outside a transaction a cursor needs WITH HOLD, as in PostgreSQL.
    conn.autocommit = True
    try:
        with conn.cursor(name="nohold") as cur:
            cur.execute("select 1")
    except psycopg.Error as e:
        print("sqlstate", e.sqlstate)
    with conn.cursor(name="held", withhold=True) as cur:
        cur.execute("select usage from cpu order by time limit 3")
        print("held", cur.fetchall())
    # pgx's ping and other empty statements: EmptyQueryResponse.
    for q in [b"-- ping", b"/* nothing */ ;", b""]:
        print("empty", psycopg.pq.ExecStatus(conn.pgconn.exec_(q).status).name)
"#,
    ));
    assert!(out.contains("description ['usage', 'host']\n"), "{out}");
    assert!(
        out.contains("chunks 5 rows 5000 first (0.5, 'a')\n"),
        "{out}"
    );
    assert!(out.contains("binary [(5000,)]\n"), "{out}");
    assert!(out.contains("sqlstate 25P01\n"), "{out}");
    assert!(out.contains("held [(0.5,), (1.5,), (2.5,)]\n"), "{out}");
    assert_eq!(out.matches("empty EMPTY_QUERY\n").count(), 3, "{out}");
}

/// The SQL Grafana's PostgreSQL data source sends (Grafana's
/// `postgresMetaQuery.ts` and `macros.go`), over the extended protocol with binary
/// results as its pgx driver uses it.
#[test]
fn grafana_postgres_data_source_queries() {
    let server = TestServer::start(&[]);
    write_cpu(&server, 600);
    let search_path = r#"
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )"#;
    let show_tables = format!(
        r#"SELECT
    CASE WHEN {search_path}
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
    ORDER BY CASE WHEN {search_path} THEN 0 ELSE 1 END, 1"#
    );
    let table = "'cpu'";
    let get_schema = format!(
        r#"SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident({table}),1) = 2
        THEN quote_ident(table_schema) = (parse_ident({table}))[1]
          AND quote_ident(table_name) = (parse_ident({table}))[2]
        ELSE quote_ident(table_name) = {table}
          AND {search_path}
      END"#
    );
    // `$__timeGroupAlias(time,'5m')`, `$__timeFilter(time)` over 2026-01-01 00:00-00:10.
    let macros = r#"SELECT floor(extract(epoch from time)/300)*300 AS "time", avg(usage) AS "usage"
FROM cpu
WHERE time BETWEEN '2026-01-01T00:00:00Z' AND '2026-01-01T00:09:59Z'
GROUP BY 1
ORDER BY 1"#;
    let code = format!(
        r#"
import psycopg
queries = {{
    "version": "SELECT current_setting('server_version_num')::int/100 as version",
    "timescaledb": "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'",
    "tables": {show_tables:?},
    "columns": {get_schema:?},
    "macros": {macros:?},
    "epoch": "SELECT extract(epoch from time) as \"time\", usage FROM cpu WHERE time >= to_timestamp(1767225600) AND time <= to_timestamp(1767225601) ORDER BY 1",
}}
with psycopg.connect(DSN, autocommit=True) as conn:
    print("ping", psycopg.pq.ExecStatus(conn.pgconn.exec_(b"-- ping").status).name)
    for name, sql in queries.items():
        rows = conn.execute(sql, binary=True).fetchall()
        print(name, rows)
"#
    );
    let out = ok(python(&server, &code));
    assert!(out.contains("ping EMPTY_QUERY\n"), "{out}");
    assert!(out.contains("version [(1600,)]\n"), "{out}");
    assert!(out.contains("timescaledb []\n"), "{out}");
    // The connected database's tables unqualified, first; others qualified.
    assert!(
        out.contains(
            "tables [('cpu',), ('system.cache',), ('system.rollups',), ('system.runtimes',), ('system.sst_files',), ('system.tables',)]\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "columns [('host', 'text'), ('cores', 'bigint'), ('usage', 'double precision'), ('time', 'timestamp with time zone')]\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("macros [(1767225600.0, 150.0), (1767225900.0, 450.0)]\n"),
        "{out}"
    );
    assert!(
        out.contains("epoch [(1767225600.0, 0.5), (1767225601.0, 1.5)]\n"),
        "{out}"
    );
}

#[test]
fn http_probes_405_and_gzip() {
    let server = TestServer::start(&[]);
    write_cpu(&server, 100);
    let health = server.get("/health").json();
    assert_eq!(health["name"], "bulkhead");
    assert_eq!(health["status"], "pass");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    let ready = server.get("/ready");
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["status"], "ready");

    let wrong = server.request("DELETE", "/api/v1/sql", &[], b"");
    assert_eq!(wrong.status, 405);
    assert_eq!(
        wrong.json()["code"],
        "method_not_allowed",
        "{}",
        wrong.text()
    );

    let path = "/api/v1/sql?db=demo&format=csv&q=select%20host%2C%20usage%20from%20cpu%20order%20by%20time";
    let plain = server.get(path);
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-encoding"), None);
    let gz = server.request("GET", path, &[("Accept-Encoding", "gzip")], b"");
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert!(
        gz.body.len() < plain.body.len(),
        "{} vs {}",
        gz.body.len(),
        plain.body.len()
    );
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_end(&mut unzipped)
        .expect("a gzip body");
    assert_eq!(unzipped, plain.body);
    // Errors stay plain JSON.
    let bad = server.request(
        "GET",
        "/api/v1/sql?db=demo&q=select%20nope",
        &[("Accept-Encoding", "gzip")],
        b"",
    );
    assert_eq!(bad.status, 400);
    assert_eq!(bad.header("content-encoding"), None);
    assert!(bad.json()["error"].is_string(), "{}", bad.text());
}
