//! Connection bounds through the real server and real clients (raw sockets, `psql`,
//! `psycopg`, `tokio-postgres`, `curl`): `max_connections` on HTTP (503 + Retry-After)
//! and PG (53300), the HTTP header-read (slowloris) and idle deadlines, the PG startup
//! and idle deadlines, delayed and counted auth failures, `?p=` only on the InfluxDB v1
//! endpoints, and TLS on both protocols.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::tls::self_signed;
use common::{Answer, TestServer, metric, read_answer};

/// Upper bound on waiting for the server to close a connection; the deadlines under
/// test are 1-2 s, so only a server that never closes it reaches this.
const CLOSE_BOUND: Duration = Duration::from_secs(30);

/// Start with `args`; the `demo` database exists (one row).
fn start(args: &[&str]) -> TestServer {
    let server = TestServer::start(args);
    let r = server.post("/write?db=demo", "m v=1 1\n");
    assert_eq!(r.status, 204, "{}", r.text());
    server
}

fn trips(server: &TestServer, limit: &str, protocol: &str) -> f64 {
    let text = server.get("/metrics").text();
    metric(
        &text,
        &format!("bulkhead_limit_trips_total{{limit=\"{limit}\",protocol=\"{protocol}\"}}"),
    )
    .unwrap_or_else(|| panic!("no trips for {limit}/{protocol} in\n{text}"))
}

/// Wait until `n` HTTP connections are open besides the one asking (connections
/// closed just before are released by their tasks a moment after the close).
fn wait_http_open(server: &TestServer, n: usize) {
    let deadline = Instant::now() + CLOSE_BOUND;
    loop {
        let text = server.get("/metrics").text();
        let open = metric(&text, "bulkhead_connections_open{protocol=\"http\"}");
        if open == Some(n as f64 + 1.0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "open HTTP connections stay at {open:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until `/metrics`, asked over `c`, shows `n` open HTTP connections (`c`
/// included). Asking over a connection that stays open is what makes this exact: a
/// connection opened just to ask would hold a slot for a moment after it closes.
fn wait_open_seen_by(c: &mut KeepAlive, n: usize, what: &str) {
    let deadline = Instant::now() + CLOSE_BOUND;
    loop {
        let text = c.get("/metrics").body;
        let open = metric(&text, "bulkhead_connections_open{protocol=\"http\"}");
        if open == Some(n as f64) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: open stays at {open:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A kept-alive HTTP/1.1 connection.
struct KeepAlive(TcpStream);

impl KeepAlive {
    fn open(server: &TestServer) -> Self {
        let s = TcpStream::connect(server.http_addr).unwrap();
        s.set_read_timeout(Some(CLOSE_BOUND)).unwrap();
        Self(s)
    }

    fn get(&mut self, path: &str) -> Answer {
        write!(self.0, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        read_answer(&mut self.0)
    }
}

/// Whether the server closes `s` (EOF or reset) within [`CLOSE_BOUND`], reading and
/// discarding anything it sends first.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(CLOSE_BOUND)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn pg_dsn(server: &TestServer) -> String {
    format!(
        "host={} port={} user=u dbname=demo",
        server.pg_addr.ip(),
        server.pg_addr.port()
    )
}

fn python(script: &str) -> Output {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn http_max_connections_refuses_with_503_and_frees_slots() {
    let server = start(&["--http-max-connections", "4"]);
    // The first held connection watches until the setup's connections have given their
    // slots back, then three more fill the cap.
    let mut held = vec![KeepAlive::open(&server)];
    wait_open_seen_by(
        &mut held[0],
        1,
        "the setup's connections were never released",
    );
    held.extend((0..3).map(|_| KeepAlive::open(&server)));
    for c in &mut held {
        assert_eq!(c.get("/health").status, 200);
    }
    // The fifth connection is answered, not left hanging: 503 + Retry-After, closed.
    let mut fifth = TcpStream::connect(server.http_addr).unwrap();
    fifth.set_read_timeout(Some(CLOSE_BOUND)).unwrap();
    write!(fifth, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let refused = read_answer(&mut fifth);
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.head.contains("retry-after: 1"), "{}", refused.head);
    assert!(
        refused.head.contains("connection: close"),
        "{}",
        refused.head
    );
    assert!(
        refused.body.contains("too_many_connections")
            && refused.body.contains("http.max_connections"),
        "{}",
        refused.body
    );
    assert!(closed_by_server(&mut fifth));

    let metrics = held[0].get("/metrics").body;
    assert_eq!(
        metric(&metrics, "bulkhead_connections_open{protocol=\"http\"}"),
        Some(4.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "bulkhead_limit_trips_total{limit=\"max_connections\",protocol=\"http\"}"
        ),
        Some(1.0)
    );
    // A slot given back is taken by the next connection.
    drop(held.pop());
    wait_open_seen_by(
        &mut held[0],
        3,
        "the closed connection's slot was never freed",
    );
    assert_eq!(server.get("/health").status, 200);
}

#[test]
fn slowloris_and_idle_http_connections_are_closed_but_busy_ones_are_not() {
    let server = start(&[
        "--http-header-read-timeout",
        "1s",
        "--http-idle-timeout",
        "2s",
        "--http-max-connections",
        "6",
    ]);
    wait_http_open(&server, 0);
    // Six slowloris clients fill every slot: each trickles a header line every 100 ms
    // and never finishes its head.
    let loris: Vec<_> = (0..6)
        .map(|i| {
            let addr = server.http_addr;
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let _ = write!(s, "GET /health HTTP/1.1\r\nHost: x\r\n");
                let started = Instant::now();
                let mut buf = [0u8; 64];
                while started.elapsed() < CLOSE_BOUND {
                    if write!(s, "X-Slow-{i}: {}\r\n", started.elapsed().as_millis()).is_err() {
                        return true;
                    }
                    match s.read(&mut buf) {
                        Ok(0) => return true,
                        Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
                        _ => {}
                    }
                }
                false
            })
        })
        .collect();
    for t in loris {
        assert!(t.join().unwrap(), "a slowloris connection was never closed");
    }
    // The slots are free again: ordinary requests get through.
    assert_eq!(server.get("/health").status, 200);
    assert!(trips(&server, "header_read_timeout", "http") >= 6.0);

    // A connection that sends nothing at all is closed by the same deadline.
    let mut silent = TcpStream::connect(server.http_addr).unwrap();
    assert!(closed_by_server(&mut silent));

    // An idle kept-alive connection is closed after http.idle_timeout...
    let mut idle = KeepAlive::open(&server);
    assert_eq!(idle.get("/health").status, 200);
    assert!(closed_by_server(&mut idle.0));
    assert!(trips(&server, "idle_timeout", "http") >= 1.0);

    // ...but a request in flight longer than both deadlines keeps its connection: it
    // ends with the query's own timeout answer, on a connection still usable after.
    let mut busy = KeepAlive::open(&server);
    let slow = busy.get(&format!(
        "/api/v1/sql?db=demo&timeout=3s&q={}",
        common::url_encode("select count(*) from generate_series(1, 1000000000000)")
    ));
    assert_eq!(slow.status, 504, "{}", slow.body);
    assert_eq!(busy.get("/health").status, 200);
}

#[test]
fn pg_max_connections_answers_53300_and_frees_slots() {
    let server = start(&["--pg-max-connections", "2"]);
    let dsn = pg_dsn(&server);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (held, refused) = rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..2 {
            let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            client.simple_query("select 1").await.unwrap();
            held.push(client);
        }
        let refused = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
            .await
            .err()
            .expect("a third connection must be refused");
        (held, refused)
    });
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::TOO_MANY_CONNECTIONS),
        "{refused:?}"
    );
    // psql shows the reason.
    let out = Command::new("psql")
        .arg(&dsn)
        .args(["-X", "-c", "select 1"])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("too many clients") && err.contains("pg.max_connections"),
        "{err}"
    );
    assert_eq!(trips(&server, "max_connections", "pg"), 2.0);
    let text = server.get("/metrics").text();
    assert_eq!(
        metric(&text, "bulkhead_connections_open{protocol=\"pg\"}"),
        Some(2.0)
    );
    // Closing them frees their slots for the next client. (Their connection tasks live
    // on `rt`, which nothing polls outside `block_on`: dropping it closes the sockets.)
    drop(held);
    drop(rt);
    let deadline = Instant::now() + CLOSE_BOUND;
    while metric(
        &server.get("/metrics").text(),
        "bulkhead_connections_open{protocol=\"pg\"}",
    ) != Some(0.0)
    {
        assert!(Instant::now() < deadline, "PG slots were never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = Command::new("psql")
        .arg(&dsn)
        .args(["-X", "-At", "-c", "select 41 + 1"])
        .output()
        .unwrap();
    assert_eq!(ok(&out).trim(), "42");
}

#[test]
fn pg_startup_and_idle_deadlines_close_sessions_but_not_running_queries() {
    let server = start(&["--pg-startup-timeout", "1s", "--pg-idle-timeout", "2s"]);
    // Connected, never sends a startup message.
    let mut silent = TcpStream::connect(server.pg_addr).unwrap();
    assert!(closed_by_server(&mut silent));
    // A startup message cut short.
    let mut partial = TcpStream::connect(server.pg_addr).unwrap();
    partial.write_all(&[0, 0, 0, 40, 0, 3, 0, 0]).unwrap();
    assert!(closed_by_server(&mut partial));
    assert!(trips(&server, "startup_timeout", "pg") >= 2.0);

    // psycopg: a query running longer than the idle timeout is not cut off (it ends by
    // its statement_timeout, 57014), then an idle spell closes the session.
    let script = format!(
        r#"
import time, psycopg
conn = psycopg.connect({dsn:?}, autocommit=True)
conn.execute("set statement_timeout = '3s'")
try:
    conn.execute("select count(*) from generate_series(1, 1000000000000)")
    raise SystemExit("the heavy query finished?")
except psycopg.errors.QueryCanceled as e:
    print("canceled", e.sqlstate)
print("after", conn.execute("select 7").fetchone()[0])
time.sleep(5)
try:
    conn.execute("select 1")
    raise SystemExit("an idle session survived pg.idle_timeout")
except psycopg.OperationalError as e:
    print("closed")
"#,
        dsn = pg_dsn(&server)
    );
    let text = ok(&python(&script));
    assert!(text.contains("canceled 57014"), "{text}");
    assert!(text.contains("after 7"), "{text}");
    assert!(text.contains("closed"), "{text}");
    assert!(trips(&server, "idle_timeout", "pg") >= 1.0);
}

#[test]
fn auth_failures_are_delayed_counted_and_p_is_v1_only() {
    let server = TestServer::start(&["--auth-token", "s3cret", "--auth-failure-delay", "300ms"]);
    let auth = ("Authorization", "Token s3cret");
    let started = Instant::now();
    let wrong = server.request(
        "GET",
        "/api/v1/sql?db=demo&q=select%201",
        &[("Authorization", "Token nope")],
        b"",
    );
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    // The delay is a floor: the answer cannot come sooner.
    assert!(started.elapsed() >= Duration::from_millis(300));
    // `p=` with the right token: refused on SQL and admin, accepted on /write and /query.
    for path in [
        "/api/v1/sql?db=demo&q=select%201&p=s3cret",
        "/api/v1/flush?p=s3cret",
    ] {
        let r = server.request("POST", path, &[], b"");
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        assert!(r.text().contains("only accepted"), "{}", r.text());
    }
    let w = server.post("/write?db=demo&p=s3cret", "m v=1 1\n");
    assert_eq!(w.status, 204, "{}", w.text());
    let q = server.get("/query?db=demo&p=s3cret&q=show%20databases");
    assert_eq!(q.status, 200, "{}", q.text());
    let metrics = server.request("GET", "/metrics", &[auth], b"").text();
    assert_eq!(
        metric(
            &metrics,
            "bulkhead_limit_trips_total{limit=\"auth_failure\",protocol=\"http\"}"
        ),
        Some(3.0),
        "{metrics}"
    );
    // PG: a wrong password waits too, and is counted.
    let started = Instant::now();
    let out = Command::new("psql")
        .arg(pg_dsn(&server))
        .args(["-X", "-c", "select 1"])
        .env("PGPASSWORD", "nope")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .to_lowercase()
            .contains("password authentication failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metrics = server.request("GET", "/metrics", &[auth], b"").text();
    assert_eq!(
        metric(
            &metrics,
            "bulkhead_limit_trips_total{limit=\"auth_failure\",protocol=\"pg\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
}

#[test]
fn tls_on_http_and_pg_with_curl_psql_and_psycopg() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path());
    let server = TestServer::start(&[
        "--http-tls-cert",
        &cert,
        "--http-tls-key",
        &key,
        "--pg-tls-cert",
        &cert,
        "--pg-tls-key",
        &key,
        "--auth-token",
        "s3cret",
    ]);
    let base = format!("https://localhost:{}", server.http_addr.port());
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-sS", "--cacert", &cert, "--resolve"])
            .arg(format!("localhost:{}:127.0.0.1", server.http_addr.port()))
            .args(["-H", "Authorization: Token s3cret"])
            .args(args)
            .output()
            .unwrap();
        ok(&out)
    };
    // The certificate verifies (no -k), and the API works over it.
    let w = curl(&[
        "-w",
        "%{http_code}",
        "--data-binary",
        "m v=5 1",
        &format!("{base}/api/v2/write?bucket=demo"),
    ]);
    assert_eq!(w.trim(), "204", "{w}");
    let q = curl(&[&format!(
        "{base}/api/v1/sql?db=demo&q=select%20v%20from%20m"
    )]);
    assert!(q.contains('5'), "{q}");
    // Plaintext HTTP on the TLS port gets no answer.
    let plain = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
        ])
        .arg(format!(
            "http://127.0.0.1:{}/health",
            server.http_addr.port()
        ))
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout).trim(), "200");

    // psql with sslmode=require, and verify-full against our certificate.
    let dsn = format!(
        "host=localhost port={} user=u dbname=demo password=s3cret",
        server.pg_addr.port()
    );
    let out = Command::new("psql")
        .arg(format!("{dsn} sslmode=require"))
        .args(["-X", "-c", "\\conninfo", "-c", "select v from m"])
        .output()
        .unwrap();
    let text = ok(&out);
    assert!(text.contains("SSL connection"), "{text}");
    assert!(text.contains(" 5"), "{text}");
    let script = format!(
        r#"
import psycopg
conn = psycopg.connect({dsn:?} + " sslmode=verify-full sslrootcert={cert}")
print("ssl", conn.info.pgconn.ssl_in_use, conn.execute("select v from m").fetchone()[0])
"#
    );
    let text = ok(&python(&script));
    assert!(text.contains("ssl True 5"), "{text}");
    // Plaintext PG clients are still served (sslmode=disable).
    let out = Command::new("psql")
        .arg(format!("{dsn} sslmode=disable"))
        .args(["-X", "-At", "-c", "select 1 + 1"])
        .output()
        .unwrap();
    assert_eq!(ok(&out).trim(), "2");
}
