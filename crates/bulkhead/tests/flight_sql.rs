//! Arrow Flight SQL against the real `bulkhead serve` binary, with the real ADBC Flight
//! SQL driver (`adbc_driver_flightsql`, installed by `scripts/test`): query results equal
//! the HTTP SQL results (as Arrow) on the same random data, prepared statements with
//! parameters, the catalog calls ADBC makes, auth, database selection, bad queries and
//! the query timeout, a client that goes away mid-query, the connection cap and startup
//! deadline, TLS (`grpc+tls://` with the certificate as root; plaintext refused);
//! pyarrow's Flight client by hand (handshake, raw commands); and
//! InfluxDB 3's Python client (`influxdb3-python`), which sends JSON tickets.

mod common;

use std::process::{Command, Output};

use common::TestServer;
use rand::{Rng, SeedableRng};

const TOKEN: &str = "fl1ght-t0ken";

/// A server with Flight SQL on an ephemeral port, and that port (from its log).
fn start(extra: &[&str]) -> (TestServer, u16) {
    let mut args = vec![
        "--flight-sql-enabled",
        "true",
        "--flight-sql-addr",
        "127.0.0.1:0",
        "--auth-token",
        TOKEN,
    ];
    args.extend_from_slice(extra);
    let server = TestServer::start(&args);
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("Arrow Flight SQL listening"))
        .unwrap_or_else(|| panic!("no Flight SQL address in the log:\n{log}"));
    // `addr=127.0.0.1:PORT` (the log may be colored).
    let port = line
        .split("127.0.0.1:")
        .nth(1)
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line}"));
    (server, port)
}

/// `cpu` in `demo`: `n` random rows (seeded), several hosts and regions, floats with
/// fractions, integers, a few booleans and strings.
fn write_random(server: &TestServer, n: usize, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let start: i64 = 1_767_225_600_000_000_000;
    let mut body = String::new();
    for i in 0..n {
        let host = ["a", "b", "c", "d'x"][rng.random_range(0..4)];
        let region = ["eu", "us"][rng.random_range(0..2)];
        let usage: f64 = rng.random_range(-1000.0..1000.0);
        let cores: i64 = rng.random_range(-5..64);
        let up = rng.random_bool(0.5);
        let ts = start + i as i64 * 1_000_000_000 + rng.random_range(0..999_999_999);
        body.push_str(&format!(
            "cpu,host={},region={region} usage={usage},cores={cores}i,up={up},note=\"n{}\" {ts}\n",
            host,
            i % 7
        ));
    }
    let auth = format!("Bearer {TOKEN}");
    let reply = server.request(
        "POST",
        "/api/v2/write?bucket=demo",
        &[("Authorization", &auth)],
        body.as_bytes(),
    );
    assert_eq!(reply.status, 204, "{}", reply.text());
}

/// Run Python `code` with `PORT` (Flight SQL), `HTTP` (the HTTP base URL), `TOKEN`,
/// and helpers: `connect(**db_kwargs)` (ADBC, database `demo`, bearer token) and
/// `http_arrow(sql)` (the same query over HTTP as an Arrow table).
fn python(server: &TestServer, port: u16, code: &str) -> Output {
    let script = format!(
        r#"
import json, urllib.parse, urllib.request
import pyarrow as pa
import adbc_driver_flightsql as fs
import adbc_driver_flightsql.dbapi as flight
PORT = {port}
HTTP = "http://{http}"
TOKEN = "{TOKEN}"
URI = f"grpc://127.0.0.1:{{PORT}}"
HEADER = fs.DatabaseOptions.RPC_CALL_HEADER_PREFIX.value
def connect(**kw):
    opts = {{HEADER + "database": "demo", fs.DatabaseOptions.AUTHORIZATION_HEADER.value: "Bearer " + TOKEN}}
    opts.update(kw)
    opts = {{k: v for k, v in opts.items() if v is not None}}
    return flight.connect(URI, db_kwargs=opts)
def http_arrow(sql):
    q = urllib.parse.urlencode({{"db": "demo", "q": sql, "format": "arrow"}})
    req = urllib.request.Request(f"{{HTTP}}/api/v1/sql?{{q}}", headers={{"Authorization": "Bearer " + TOKEN}})
    with urllib.request.urlopen(req) as r:
        t = pa.ipc.open_stream(r.read()).read_all()
    # Flight SQL sends tags (dictionaries) as their values.
    plain = lambda ty: ty.value_type if pa.types.is_dictionary(ty) else ty
    return t.cast(pa.schema([pa.field(f.name, plain(f.type), f.nullable, f.metadata) for f in t.schema]))
def same(a, b, what):
    assert a.schema.equals(b.schema), f"{{what}}: schemas differ:\n{{a.schema}}\n{{b.schema}}"
    assert a.combine_chunks().equals(b.combine_chunks()), f"{{what}}: rows differ:\n{{a}}\n{{b}}"
{code}
"#,
        http = server.http_addr,
    );
    Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("running python3")
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

#[test]
fn adbc_queries_equal_http_results_on_random_data() {
    let (server, port) = start(&[]);
    write_random(&server, 3000, 18);
    let out = ok(python(
        &server,
        port,
        r#"
queries = [
    "select * from cpu order by time",
    "select host, region, count(*) as n, avg(usage) as mean, min(cores), max(time) from cpu group by host, region order by host, region",
    "select date_bin(interval '5 minutes', time) as t, sum(usage) from cpu where up group by 1 order by 1",
    "select host, note, usage * cores as x from cpu where usage > 500 order by time limit 37",
    "select 1 as one, 'two' as two, arrow_cast(3, 'Int8') as three",
    "select * from cpu where false",
]
with connect() as conn, conn.cursor() as cur:
    for sql in queries:
        cur.execute(sql)
        got = cur.fetch_arrow_table()
        want = http_arrow(sql)
        same(got, want, sql)
        print(sql[:30], got.num_rows)
"#,
    ));
    // Row counts are what the data says (not zero by accident).
    assert!(out.contains("select * from cpu order by tim 3000"), "{out}");
    assert!(out.contains("select * from cpu where false 0"), "{out}");
    assert!(out.contains("select 1 as one, 'two' as two, 1"), "{out}");
}

#[test]
fn adbc_prepared_statements_bind_parameters() {
    let (server, port) = start(&[]);
    write_random(&server, 500, 7);
    let out = ok(python(
        &server,
        port,
        r#"
with connect() as conn, conn.cursor() as cur:
    # `?` parameters of several types, a quote inside a string parameter.
    cur.execute("select time, host, usage from cpu where host = ? and usage > ? and cores >= ? order by time",
                parameters=("d'x", -200.5, 3))
    got = cur.fetch_arrow_table()
    want = http_arrow("select time, host, usage from cpu where host = 'd''x' and usage > -200.5 and cores >= 3 order by time")
    same(got, want, "bound")
    assert got.num_rows > 0, "the filter should match rows"
    # The same prepared statement again with other values (ADBC re-binds).
    for host in ["a", "b"]:
        cur.execute("select count(*) as n from cpu where host = ?", parameters=(host,))
        got = cur.fetch_arrow_table()
        want = http_arrow(f"select count(*) as n from cpu where host = '{host}'")
        same(got, want, host)
        print("count", host, got.column(0)[0].as_py())
    # A timestamp parameter compares with the time column (row i is in second i of
    # 2026-01-01, so 250 rows are past 00:04:10).
    import datetime
    at = datetime.datetime(2026, 1, 1, 0, 4, 10, tzinfo=datetime.timezone.utc)
    cur.execute("select count(*) as n from cpu where time > ?", parameters=(at,))
    n = cur.fetch_arrow_table().column(0)[0].as_py()
    want = http_arrow("select count(*) as n from cpu where time > '2026-01-01T00:04:10Z'").column(0)[0].as_py()
    assert n == want == 250, (n, want)
    # Preparing describes the result before it runs.
    cur.adbc_prepare("select host, usage from cpu where cores = ?")
    print("prepared ok")
    # Too few parameters is a clear error, not a wrong answer.
    try:
        cur.execute("select * from cpu where host = ? and cores = ?", parameters=("a",))
        raise SystemExit("expected an error for a missing parameter")
    except Exception as e:
        print("missing:", e)
# A statement run for its effect (ADBC's execute_update: Flight SQL's DoPut update).
with connect() as conn, conn.cursor() as cur:
    cur.adbc_statement.set_sql_query("delete from cpu where host = 'a'")
    print("update count:", cur.adbc_statement.execute_update())
    cur.execute("select count(*) as n from cpu where host = 'a'")
    print("after delete:", cur.fetch_arrow_table().column(0)[0].as_py())
"#,
    ));
    assert!(out.contains("count a "), "{out}");
    assert!(out.contains("prepared ok"), "{out}");
    assert!(
        out.contains("missing:") && out.contains("parameter 2"),
        "a missing parameter names itself: {out}"
    );
    assert!(out.contains("update count: -1"), "{out}");
    assert!(out.contains("after delete: 0"), "{out}");
}

#[test]
fn adbc_catalog_calls_auth_and_errors() {
    let (server, port) = start(&[]);
    write_random(&server, 50, 3);
    let out = ok(python(
        &server,
        port,
        r#"
with connect() as conn:
    info = conn.adbc_get_info()
    print("info:", info.get("vendor_name"), info.get("driver_name"))
    assert info.get("vendor_name") == "Bulkhead", info
    types = conn.adbc_get_table_types()
    assert "TABLE" in types, types
    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    catalogs = {c["catalog_name"]: c for c in objects}
    assert "bulkhead" in catalogs, list(catalogs)
    schemas = {s["db_schema_name"]: s for s in catalogs["bulkhead"]["catalog_db_schemas"]}
    assert "demo" in schemas, list(schemas)
    tables = {t["table_name"]: t for t in schemas["demo"]["db_schema_tables"]}
    assert tables["cpu"]["table_type"] == "TABLE", tables["cpu"]
    columns = [c["column_name"] for c in tables["cpu"]["table_columns"]]
    print("columns:", sorted(columns))
    schema = conn.adbc_get_table_schema("cpu", db_schema_filter="demo")
    want = http_arrow("select * from cpu limit 0").schema
    assert schema.equals(want), f"{schema}\n{want}"
    # Filters: a table pattern that matches nothing.
    none = conn.adbc_get_objects(depth="tables", table_name_filter="nomatch%").read_all().to_pylist()
    left = [t for c in none for s in (c["catalog_db_schemas"] or []) for t in (s["db_schema_tables"] or [])]
    assert left == [], left
    # A bad query: a clear error naming the column, as INVALID_ARGUMENT.
    with conn.cursor() as cur:
        cur.execute("select now() as n, timestamptz '2024-01-01 12:00:00+02' as l")
        t = cur.fetch_arrow_table()
        print("now type:", t.schema.field("n").type, "literal:", t.column("l")[0].as_py().isoformat())
        try:
            cur.execute("select nope from cpu")
            cur.fetch_arrow_table()
            raise SystemExit("expected an error")
        except flight.Error as e:
            print("bad query:", type(e).__name__, e)
# Wrong token, no token, and basic auth with the token as the password.
for kw in [{fs.DatabaseOptions.AUTHORIZATION_HEADER.value: "Bearer wrong"},
           {fs.DatabaseOptions.AUTHORIZATION_HEADER.value: None}]:
    try:
        with connect(**kw) as conn, conn.cursor() as cur:
            cur.execute("select 1")
            cur.fetch_arrow_table()
        raise SystemExit(f"expected an auth error with {kw}")
    except flight.Error as e:
        print("auth:", e)
with connect(**{fs.DatabaseOptions.AUTHORIZATION_HEADER.value: None, "username": "me", "password": TOKEN}) as conn, conn.cursor() as cur:
    cur.execute("select count(*) as n from cpu")
    print("basic auth rows:", cur.fetch_arrow_table().column(0)[0].as_py())
# No database header: a clear error.
with connect(**{HEADER + "database": None}) as conn, conn.cursor() as cur:
    try:
        cur.execute("select * from cpu")
        cur.fetch_arrow_table()
        raise SystemExit("expected a database error")
    except flight.Error as e:
        print("no db:", e)
    # Fully qualified names need no database.
    cur.execute("select count(*) from bulkhead.demo.cpu")
    print("qualified rows:", cur.fetch_arrow_table().column(0)[0].as_py())
"#,
    ));
    assert!(out.contains("info: Bulkhead"), "{out}");
    assert!(
        out.contains("now type: timestamp[ns, tz=UTC] literal: 2024-01-01T10:00:00+00:00"),
        "{out}"
    );
    assert!(
        out.contains("columns: ['cores', 'host', 'note', 'region', 'time', 'up', 'usage']"),
        "{out}"
    );
    let bad = out
        .lines()
        .find(|l| l.starts_with("bad query:"))
        .unwrap_or_default();
    assert!(
        bad.contains("nope") && bad.contains("INVALID_ARGUMENT"),
        "{out}"
    );
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("auth:") && l.contains("UNAUTHENTICATED"))
            .count(),
        2,
        "{out}"
    );
    assert!(out.contains("basic auth rows: 50"), "{out}");
    // The wrong and the missing token were counted (ADBC may retry a refused call).
    assert!(trips(&server, "auth_failure", "flight_sql") >= 2.0);
    assert!(
        out.contains("no db:") && out.contains("no database selected"),
        "{out}"
    );
    assert!(out.contains("qualified rows: 50"), "{out}");
}

#[test]
fn a_query_past_the_timeout_is_stopped() {
    let (server, port) = start(&["--query-timeout", "1s"]);
    let out = ok(python(
        &server,
        port,
        r#"
with connect() as conn, conn.cursor() as cur:
    try:
        cur.execute("select count(*) from generate_series(1, 1000000000000)")
        cur.fetch_arrow_table()
        raise SystemExit("expected a timeout")
    except flight.Error as e:
        print("timeout:", e)
    cur.execute("select 41 + 1 as x")
    print("after:", cur.fetch_arrow_table().column(0)[0].as_py())
"#,
    ));
    assert!(
        out.contains("timeout:")
            && out.contains("DeadlineExceeded")
            && out.contains("limits.query_timeout"),
        "{out}"
    );
    assert!(out.contains("after: 42"), "{out}");
    // Counted with the other front ends' trips, under its own label, once.
    assert_eq!(trips(&server, "query_timeout", "flight_sql"), 1.0);
    assert_eq!(trips(&server, "query_timeout", "http"), 0.0);
}

#[test]
fn a_client_that_goes_away_stops_its_query() {
    let (server, port) = start(&[]);
    let out = ok(python(
        &server,
        port,
        r#"
import os, threading, time
conn = connect()
cur = conn.cursor()
def run():
    cur.execute("select count(*) from generate_series(1, 1000000000000)")
    cur.fetch_arrow_table()
threading.Thread(target=run, daemon=True).start()
time.sleep(2)
print("leaving", flush=True)
os._exit(0)
"#,
    ));
    assert!(out.contains("leaving"), "{out}");
    // The server sees the stream reset, drops the query and counts it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while trips(&server, "query_client_gone", "flight_sql") < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the query of a client that went away is still running:\n{}",
            server.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(trips(&server, "query_client_gone", "flight_sql"), 1.0);
}

/// `bulkhead_limit_trips_total{limit, protocol}` from `/metrics`.
fn trips(server: &TestServer, limit: &str, protocol: &str) -> f64 {
    let auth = format!("Bearer {TOKEN}");
    let text = server
        .request("GET", "/metrics", &[("Authorization", &auth)], b"")
        .text();
    let series = format!("bulkhead_limit_trips_total{{limit=\"{limit}\",protocol=\"{protocol}\"}}");
    common::metric(&text, &series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[test]
fn pyarrow_flight_client_speaks_flight_sql_with_basic_auth() {
    let (server, port) = start(&[]);
    write_random(&server, 200, 11);
    let out = ok(python(
        &server,
        port,
        r#"
import pyarrow.flight as pf
# Flight SQL commands by hand: a protobuf Any around the command message.
def varint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])
def field(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data
def command(name, body=b""):
    url = f"type.googleapis.com/arrow.flight.protocol.sql.{name}".encode()
    return pf.FlightDescriptor.for_command(field(1, url) + field(2, body))
client = pf.FlightClient(URI)
try:
    client.authenticate_basic_token(b"me", b"wrong")
    raise SystemExit("expected a handshake error")
except pf.FlightUnauthenticatedError as e:
    print("bad password:", e)
# The handshake checks the password and answers with the bearer header to send.
auth = client.authenticate_basic_token(b"me", TOKEN.encode())
print("handshake header:", auth[0].decode())
opts = pf.FlightCallOptions(headers=[auth, (b"database", b"demo")])
sql = "select host, count(*) as n, sum(usage) as s from cpu group by host order by host"
info = client.get_flight_info(command("CommandStatementQuery", field(1, sql.encode())), opts)
got = client.do_get(info.endpoints[0].ticket, opts).read_all()
same(got, http_arrow(sql), sql)
print("statement rows:", got.num_rows)
info = client.get_flight_info(command("CommandGetCatalogs"), opts)
catalogs = client.do_get(info.endpoints[0].ticket, opts).read_all()
assert info.schema.equals(catalogs.schema), f"{info.schema}\n{catalogs.schema}"
print("catalogs:", catalogs.column("catalog_name").to_pylist())
# Without the header the same ticket is refused.
try:
    client.do_get(info.endpoints[0].ticket).read_all()
    raise SystemExit("expected an auth error")
except pf.FlightUnauthenticatedError as e:
    print("no token:", e)
"#,
    ));
    assert!(out.contains("bad password:"), "{out}");
    assert!(out.contains("handshake header: authorization"), "{out}");
    assert!(out.contains("statement rows: 4"), "{out}");
    assert!(out.contains("catalogs: ['bulkhead']"), "{out}");
    assert!(out.contains("no token:"), "{out}");
}

/// InfluxDB 3's own Python client (`influxdb3-python`): it sends a JSON ticket straight
/// to `DoGet`, with the database in the ticket and named `$parameters`.
#[test]
fn influxdb3_python_client_queries() {
    let (server, port) = start(&[]);
    write_random(&server, 300, 5);
    let out = ok(python(
        &server,
        port,
        r#"
from influxdb_client_3 import InfluxDBClient3
client = InfluxDBClient3(host=HTTP, token=TOKEN, database="demo", query_port_overwrite=PORT)
sql = "select host, count(*) as n, max(usage) as m from cpu group by host order by host"
got = client.query(sql)
same(got, http_arrow(sql), sql)
print("rows:", got.num_rows)
got = client.query("select count(*) as n from cpu where host = $host and cores >= $cores",
                   query_parameters={"host": "d'x", "cores": 3})
want = http_arrow("select count(*) as n from cpu where host = 'd''x' and cores >= 3")
same(got, want, "parameters")
print("with parameters:", got.column(0)[0].as_py())
try:
    client.query("select * from cpu", language="influxql")
    raise SystemExit("expected InfluxQL to be refused")
except Exception as e:
    print("influxql:", e)
bad = InfluxDBClient3(host=HTTP, token="wrong", database="demo", query_port_overwrite=PORT)
try:
    bad.query("select 1")
    raise SystemExit("expected an auth error")
except Exception as e:
    print("bad token:", e)
"#,
    ));
    assert!(out.contains("rows: 4"), "{out}");
    assert!(out.contains("with parameters:"), "{out}");
    assert!(out.contains("influxql:") && out.contains("/query"), "{out}");
    assert!(
        out.contains("bad token:") && out.contains("nauthenticated"),
        "{out}"
    );
}

#[test]
fn flight_sql_is_off_unless_enabled() {
    let server = TestServer::start(&[]);
    assert!(
        !server.log().contains("Arrow Flight SQL listening"),
        "{}",
        server.log()
    );
}

/// `flight_sql.max_connections`: a connection past it gets UNAVAILABLE on its calls,
/// a closed one frees its slot, and a connection that never speaks is closed by
/// `flight_sql.startup_timeout`; every trip is counted, open connections are shown.
#[test]
fn connections_are_capped_and_silent_ones_closed() {
    use std::io::Read;
    use std::time::{Duration, Instant};

    let (server, port) = start(&[
        "--flight-sql-max-connections",
        "2",
        "--flight-sql-startup-timeout",
        "1s",
    ]);
    let out = ok(python(
        &server,
        port,
        r#"
import time
import pyarrow.flight as pf
def client():
    # Its own subchannel pool, so each client is its own TCP connection.
    return pf.FlightClient(URI, generic_options=[("grpc.use_local_subchannel_pool", 1)])
a, b = client(), client()
for c in (a, b):
    c.authenticate_basic_token(b"me", TOKEN.encode())
print("two admitted")
over = client()
try:
    over.authenticate_basic_token(b"me", TOKEN.encode())
    raise SystemExit("expected the third connection to be refused")
except pf.FlightUnavailableError as e:
    print("third refused:", e)
over.close()
a.close()
# The server frees a's slot once it sees the connection close.
deadline = time.time() + 20
while True:
    c = client()
    try:
        c.authenticate_basic_token(b"me", TOKEN.encode())
        print("admitted after a close")
        break
    except pf.FlightUnavailableError:
        c.close()
        if time.time() > deadline:
            raise SystemExit("no slot was freed by closing a connection")
        time.sleep(0.2)
"#,
    ));
    assert!(out.contains("two admitted"), "{out}");
    assert!(
        out.contains("third refused:") && out.contains("flight_sql.max_connections"),
        "{out}"
    );
    assert!(out.contains("admitted after a close"), "{out}");
    assert!(trips(&server, "max_connections", "flight_sql") >= 1.0);

    // A connection that sends nothing is closed by the startup deadline (1 s).
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let started = Instant::now();
    let mut buf = [0u8; 64];
    loop {
        match silent.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {} // the server's HTTP/2 preface: keep reading
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the silent connection was not closed"
    );
    assert!(trips(&server, "startup_timeout", "flight_sql") >= 1.0);
    let auth = format!("Bearer {TOKEN}");
    let metrics = server
        .request("GET", "/metrics", &[("Authorization", &auth)], b"")
        .text();
    assert!(
        common::metric(
            &metrics,
            "bulkhead_connections_accepted_total{protocol=\"flight_sql\"}"
        )
        .is_some_and(|n| n >= 3.0),
        "{metrics}"
    );
}

#[test]
fn tls_serves_grpc_tls_clients_and_refuses_plaintext() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let certs = tempfile::tempdir().expect("temp dir");
    let (cert, key) = common::tls::self_signed(certs.path());
    let (server, port) = start(&[
        "--flight-sql-tls-cert",
        &cert,
        "--flight-sql-tls-key",
        &key,
        "--flight-sql-startup-timeout",
        "1s",
    ]);
    write_random(&server, 200, 3);
    let out = ok(python(
        &server,
        port,
        &format!(
            r#"
CERT = open({cert:?}).read()
TLS_URI = f"grpc+tls://127.0.0.1:{{PORT}}"
ROOTS = fs.DatabaseOptions.TLS_ROOT_CERTS.value
def connect_to(uri, **kw):
    opts = {{HEADER + "database": "demo", fs.DatabaseOptions.AUTHORIZATION_HEADER.value: "Bearer " + TOKEN}}
    opts.update(kw)
    return flight.connect(uri, db_kwargs=opts)
sql = "select host, usage from cpu order by time"
# The certificate verifies against its PEM as the only root, and queries work over it.
with connect_to(TLS_URI, **{{ROOTS: CERT}}) as conn, conn.cursor() as cur:
    cur.execute(sql)
    got = cur.fetch_arrow_table()
    same(got, http_arrow(sql), sql)
    cur.execute("select count(*) as n from cpu where host = ?", parameters=("a",))
    n = cur.fetch_arrow_table().column(0)[0].as_py()
    assert n == http_arrow("select count(*) as n from cpu where host = 'a'").column(0)[0].as_py()
    print("tls rows:", got.num_rows)
# Without our certificate as a root, the client refuses the server.
try:
    with connect_to(TLS_URI) as conn, conn.cursor() as cur:
        cur.execute("select 1")
        cur.fetch_arrow_table()
    raise SystemExit("expected the certificate to be refused without its root")
except SystemExit:
    raise
except Exception as e:
    print("unverified:", str(e).replace("\n", " "))
# A plaintext client gets no answer from the TLS port.
try:
    with connect_to(f"grpc://127.0.0.1:{{PORT}}", **{{fs.DatabaseOptions.TIMEOUT_QUERY.value: "20"}}) as conn, conn.cursor() as cur:
        cur.execute("select 1")
        cur.fetch_arrow_table()
    raise SystemExit("expected a plaintext client to fail against the TLS port")
except SystemExit:
    raise
except Exception as e:
    print("plaintext:", str(e).replace("\n", " "))
"#
        ),
    ));
    assert!(out.contains("tls rows: 200"), "{out}");
    let unverified = out
        .lines()
        .find(|l| l.starts_with("unverified:"))
        .unwrap_or_default();
    assert!(unverified.contains("certificate"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("plaintext:")), "{out}");
    eprintln!("{out}");
    let log = server.log();
    let listening = log
        .lines()
        .find(|l| l.contains("Arrow Flight SQL listening"))
        .unwrap_or_default();
    // `tls=true`, maybe with color codes around the `=`.
    assert!(
        listening.contains("tls") && listening.contains("true"),
        "{listening}"
    );

    // A handshake that stalls after its first bytes is closed by the startup deadline
    // (1 s), and counted.
    let before = trips(&server, "startup_timeout", "flight_sql");
    let mut stalled = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stalled.write_all(&[0x16, 0x03, 0x01]).expect("write");
    stalled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let started = Instant::now();
    let mut buf = [0u8; 64];
    while let Ok(n) = stalled.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the stalled handshake was not closed"
    );
    assert!(trips(&server, "startup_timeout", "flight_sql") > before);
}
