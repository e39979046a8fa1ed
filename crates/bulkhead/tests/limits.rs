//! Query limits through the real server, over HTTP and with real PG clients (`psql`,
//! `psycopg`): timeouts (`limits.query_timeout`, HTTP `timeout=`, `SET
//! statement_timeout`), cancellation when the client goes away or sends a
//! CancelRequest, and a `select 1` (and, with two query threads, a grouping query)
//! answering while a query that never ends runs; stalled uploads and a write refused
//! mid-body by write admission.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{TestServer, metric, read_answer, url_encode};

/// 2e13 pair evaluations in a nested-loop join: it never finishes on its own.
const HEAVY_JOIN: &str = "select count(*) from generate_series(1, 20000) a, \
                          generate_series(1, 1000000000) b where a.value + b.value = 7";
/// Longest a short query may take beside a heavy one in these tests: generous for a
/// debug build on a loaded machine (they answer in milliseconds), and far below the
/// seconds a starved query waited.
const SHORT_QUERY_BOUND: Duration = Duration::from_secs(5);
/// A generator aggregated in one poll unless the plan yields.
const HEAVY_SERIES: &str = "select count(*) from generate_series(1, 1000000000000)";

fn start(args: &[&str]) -> TestServer {
    let server = TestServer::start(args);
    let r = server.post("/write?db=demo", "m v=1 1\n");
    assert_eq!(r.status, 204, "{}", r.text());
    server
}

/// User + system CPU seconds of process `pid` so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of proc(5), in clock ticks (100 per second on Linux).
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

/// CPU seconds the server uses over `window`.
fn cpu_over(server: &TestServer, window: Duration) -> f64 {
    let pid = server.pid().unwrap();
    let before = cpu_secs(pid);
    std::thread::sleep(window);
    cpu_secs(pid) - before
}

/// Wait until the server has used `secs` of CPU since `since` (a query is running),
/// up to 30 s: on a loaded machine it gets less than a core.
fn wait_for_cpu(server: &TestServer, since: f64, secs: f64, what: &str) {
    let pid = server.pid().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while cpu_secs(pid) - since < secs {
        assert!(
            Instant::now() < deadline,
            "{what}: {} s CPU in 30 s",
            cpu_secs(pid) - since
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait (up to 20 s) until `limit`/`protocol` has tripped `n` times: a trip is counted
/// when the server notices the client is gone.
fn wait_for_trips(server: &TestServer, limit: &str, protocol: &str, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = trips(server, limit, protocol);
        if seen >= n {
            assert_eq!(
                seen, n,
                "{limit}/{protocol} tripped more often than expected"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{limit}/{protocol}: {seen} trips after 20 s, expected {n}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `bulkhead_limit_trips_total` for `limit` and `protocol`.
fn trips(server: &TestServer, limit: &str, protocol: &str) -> f64 {
    let text = server.get("/metrics").text();
    metric(
        &text,
        &format!("bulkhead_limit_trips_total{{limit=\"{limit}\",protocol=\"{protocol}\"}}"),
    )
    .unwrap_or_else(|| panic!("no trips for {limit}/{protocol} in\n{text}"))
}

/// Send a SQL GET and leave the connection open, without reading the answer.
fn open_query(server: &TestServer, q: &str) -> TcpStream {
    let mut s = TcpStream::connect(server.http_addr).unwrap();
    write!(
        s,
        "GET /api/v1/sql?db=demo&q={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        url_encode(q)
    )
    .unwrap();
    s
}

fn psql(server: &TestServer, args: &[&str]) -> Command {
    let mut cmd = Command::new("psql");
    cmd.args([
        "-h",
        &server.pg_addr.ip().to_string(),
        "-p",
        &server.pg_addr.port().to_string(),
        "-U",
        "u",
        "-d",
        "demo",
        "-X",
        "-v",
        "VERBOSITY=verbose",
    ])
    .args(args)
    .env("PGCONNECT_TIMEOUT", "10");
    cmd
}

fn python(server: &TestServer, script: &str) -> Output {
    let dsn = format!(
        "host={} port={} user=u dbname=demo",
        server.pg_addr.ip(),
        server.pg_addr.port()
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!("import psycopg\nDSN = {dsn:?}\n{script}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn http_timeouts_stop_queries_and_can_only_be_lowered() {
    let server = start(&["--query-timeout", "2s"]);
    // The request's own, lower timeout.
    let r = server.get(&format!(
        "/api/v1/sql?db=demo&timeout=300ms&q={}",
        url_encode(HEAVY_SERIES)
    ));
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["code"], "query_timeout", "{}", r.text());
    assert!(
        r.text().contains("300ms (the request's `timeout`)"),
        "{}",
        r.text()
    );
    // A higher one is capped by limits.query_timeout.
    let r = server.get(&format!(
        "/api/v1/sql?db=demo&timeout=1h&q={}",
        url_encode(HEAVY_JOIN)
    ));
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        r.text().contains("2s (limits.query_timeout)"),
        "{}",
        r.text()
    );
    let r = server.get("/api/v1/sql?db=demo&timeout=soon&q=select%201");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("invalid parameter `timeout`"),
        "{}",
        r.text()
    );
    // Quick queries are unaffected.
    let r = server.get("/api/v1/sql?db=demo&timeout=5s&q=select%2042%20as%20x");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()[0]["x"], 42);
    assert_eq!(trips(&server, "query_timeout", "http"), 2.0);
}

#[test]
fn pg_statement_timeout_works_and_is_capped() {
    let server = start(&["--query-timeout", "3s"]);
    let out = psql(
        &server,
        &["-c", "SET statement_timeout = 300", "-c", HEAVY_SERIES],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("57014") && err.contains("statement timeout") && err.contains("300ms"),
        "{err}"
    );
    // RESET: back to limits.query_timeout.
    let out = psql(
        &server,
        &[
            "-c",
            "SET statement_timeout TO '1h'",
            "-c",
            "RESET statement_timeout",
            "-c",
            HEAVY_JOIN,
        ],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("57014") && err.contains("3s (limits.query_timeout)"),
        "{err}"
    );
    // Bad values and engine settings are refused, not silently ignored.
    let out = psql(&server, &["-c", "SET statement_timeout = 'soon'"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("22023"));
    let out = psql(&server, &["-c", "SET datafusion.execution.batch_size = 10"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("22023"));
    assert_eq!(trips(&server, "query_timeout", "pg"), 2.0);
}

#[test]
fn a_disconnected_http_client_stops_its_query() {
    let server = start(&[]);
    for (n, q) in [HEAVY_SERIES, HEAVY_JOIN].into_iter().enumerate() {
        let since = cpu_secs(server.pid().unwrap());
        let s = open_query(&server, q);
        wait_for_cpu(&server, since, 0.5, "the query should be running");
        drop(s);
        wait_for_trips(&server, "query_client_gone", "http", n as f64 + 1.0);
        // Generous: a query still running uses a full core (~2 s here).
        let after = cpu_over(&server, Duration::from_secs(2));
        assert!(
            after < 0.5,
            "{q}: {after} s CPU in the 2 s after the client left"
        );
    }
}

#[test]
fn pg_cancel_request_and_closed_connection_stop_the_query() {
    let server = start(&[]);
    // psycopg's conn.cancel(): a CancelRequest with the BackendKeyData.
    let out = python(
        &server,
        &format!(
            r#"
import threading, time
conn = psycopg.connect(DSN, autocommit=True)
def cancel():
    time.sleep(1.0)
    conn.cancel()
threading.Thread(target=cancel).start()
try:
    conn.execute("{HEAVY_JOIN}").fetchall()
    print("finished")
except psycopg.errors.QueryCanceled as e:
    print("cancelled", e.sqlstate, e)
print("after", conn.execute("select 1").fetchone()[0])
"#
        ),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("cancelled 57014 canceling statement due to user request"),
        "{stdout}"
    );
    assert!(
        stdout.contains("after 1"),
        "the connection stays usable: {stdout}"
    );
    assert_eq!(trips(&server, "query_cancel_request", "pg"), 1.0);

    // psql's Ctrl-C.
    let child = psql(&server, &["-c", HEAVY_SERIES])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("57014") && err.contains("canceling statement due to user request"),
        "{err}"
    );
    assert_eq!(trips(&server, "query_cancel_request", "pg"), 2.0);

    // A client killed mid-query: its connection closes, the query stops.
    let since = cpu_secs(server.pid().unwrap());
    let mut child = psql(&server, &["-c", HEAVY_JOIN])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_cpu(&server, since, 0.5, "the query should be running");
    child.kill().unwrap();
    child.wait().unwrap();
    wait_for_trips(&server, "query_client_gone", "pg", 1.0);
    let after = cpu_over(&server, Duration::from_secs(2));
    assert!(
        after < 0.5,
        "{after} s CPU in the 2 s after the client died"
    );
}

#[test]
fn select_1_answers_while_a_query_that_never_ends_runs() {
    let server = start(&[]);
    let since = cpu_secs(server.pid().unwrap());
    let mut heavy = vec![open_query(&server, HEAVY_JOIN)];
    heavy.push(open_query(&server, HEAVY_SERIES));
    wait_for_cpu(&server, since, 1.0, "the queries should be running");
    for _ in 0..5 {
        let t = Instant::now();
        let r = server.sql("demo", "select 1 as one", "json");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()[0]["one"], 1);
        eprintln!("HTTP select 1 beside two heavy queries: {:?}", t.elapsed());
        let t = Instant::now();
        let out = psql(&server, &["-A", "-t", "-c", "select 1"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
        eprintln!("psql select 1 beside two heavy queries: {:?}", t.elapsed());
    }
    // Both heavy queries are still running (their clients get nothing yet).
    for s in &mut heavy {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = [0u8; 1];
        let e = s.read(&mut buf).unwrap_err();
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{e}"
        );
    }
}

/// With two query threads and a join that never ends, a grouping query over a table
/// answers within [`SHORT_QUERY_BOUND`] every time. Its plan has a repartition (its own
/// sub-tasks) when a query has as many partitions as threads: then one probe in a few
/// waited for the join to end (here: never, so its own 30 s timeout), because the
/// join's two streams held both threads. `limits.query_partitions` (1) keeps a heavy
/// query on one thread.
#[test]
fn a_grouping_query_answers_while_a_join_holds_a_query_thread() {
    let server = start(&["--query-threads", "2"]);
    let body: String = (0..400)
        .map(|i| format!("cpu,host=h{} v={i} {}\n", i % 4, 1_000_000_000 + i))
        .collect();
    let r = server.post("/write?db=demo", body);
    assert_eq!(r.status, 204, "{}", r.text());
    let since = cpu_secs(server.pid().unwrap());
    let _heavy = open_query(&server, HEAVY_JOIN);
    wait_for_cpu(&server, since, 1.0, "the join should be running");
    let probe = format!(
        "/api/v1/sql?db=demo&format=json&timeout=30s&q={}",
        url_encode("select host, max(v) as v from cpu group by host order by host")
    );
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let t = Instant::now();
        let r = server.get(&probe);
        let took = t.elapsed();
        assert_eq!(r.status, 200, "probe {i} after {took:?}: {}", r.text());
        assert_eq!(r.json()[3]["v"], 399.0, "{}", r.text());
        assert!(
            took < SHORT_QUERY_BOUND,
            "probe {i} took {took:?} beside the join"
        );
        slowest = slowest.max(took);
    }
    eprintln!("slowest of 20 grouping queries beside a never-ending join: {slowest:?}");
}

#[test]
fn stalled_uploads_do_not_block_other_writers() {
    let server = start(&["--body-read-timeout", "3s"]);
    // Four uploads that declare the whole body limit (64 MiB), send a few bytes, stall.
    let mut stalled: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(server.http_addr).unwrap();
            write!(
                s,
                "POST /api/v2/write?bucket=demo HTTP/1.1\r\nHost: x\r\nContent-Length: 67108864\r\n\r\nm v=1"
            )
            .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Before, every write got 503 while they were open.
    for i in 0..20 {
        let r = server.post("/api/v2/write?bucket=demo", format!("m v={i} {}\n", 10 + i));
        assert_eq!(r.status, 204, "write {i}: {}", r.text());
    }
    // Each stalled upload gets 408 once it has sent nothing for 3 s.
    for s in &mut stalled {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
        assert!(reply.contains("body_timeout"), "{reply}");
    }
    assert_eq!(trips(&server, "body_read_timeout", "http"), 4.0);
    let r = server.sql("demo", "select count(*) as n from m", "json");
    assert_eq!(r.json()[0]["n"], 21, "{}", r.text());
}

/// `bulkhead_write_inflight_bytes`: write bytes admitted and not yet answered.
fn inflight_bytes(server: &TestServer) -> f64 {
    let text = server.get("/metrics").text();
    metric(&text, "bulkhead_write_inflight_bytes").unwrap_or_else(|| panic!("{text}"))
}

#[test]
fn a_write_refused_mid_body_gets_its_503_on_a_connection_it_can_keep_using() {
    // An 8 KiB write budget. One upload holds 6 KiB of it (sent, then stalled), so the
    // next write is admitted (1 KiB) and refused once more than 2 KiB of its 20 KiB
    // body has arrived, while its client is still sending.
    let server = start(&["--max-inflight-write-bytes", "8KiB"]);
    let mut holder = TcpStream::connect(server.http_addr).unwrap();
    write!(
        holder,
        "POST /api/v2/write?bucket=demo HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n"
    )
    .unwrap();
    holder.write_all(&[b'#'; 6 * 1024]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while inflight_bytes(&server) < 6.0 * 1024.0 {
        assert!(
            Instant::now() < deadline,
            "the holder's 6 KiB is never charged"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // 20 lines of 1 KiB, sent one by one with a pause: the refusal comes after the
    // third at the latest, and every later send must still succeed (before, the
    // server answered at once and closed: the client saw a broken pipe or a reset).
    let line = |i: usize| {
        let tail = format!(" v={i} {}\n", 100 + i);
        format!("m,pad={}{tail}", "x".repeat(1024 - 6 - tail.len()))
    };
    assert_eq!(line(0).len(), 1024);
    let mut c = TcpStream::connect(server.http_addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        c,
        "POST /api/v2/write?bucket=demo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        20 * 1024
    )
    .unwrap();
    for i in 0..20 {
        c.write_all(line(i).as_bytes())
            .unwrap_or_else(|e| panic!("sending line {i} of the refused write: {e}"));
        std::thread::sleep(Duration::from_millis(25));
    }
    let refused = read_answer(&mut c);
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.body.contains("overloaded"), "{}", refused.body);

    // The same connection still works, and once the holder is gone, it writes.
    write!(c, "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_answer(&mut c).status, 204);
    drop(holder);
    let deadline = Instant::now() + Duration::from_secs(30);
    while inflight_bytes(&server) != 0.0 {
        assert!(
            Instant::now() < deadline,
            "the holder's bytes are never released"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    write!(
        c,
        "POST /api/v2/write?bucket=demo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nm v=7 500\n"
    )
    .unwrap();
    assert_eq!(read_answer(&mut c).status, 204);
    let r = server.sql("demo", "select count(*) as n from m", "json");
    assert_eq!(r.json()[0]["n"], 2, "{}", r.text());
}

#[test]
fn functions_that_build_huge_values_are_refused_under_the_memory_limit() {
    let server = start(&[]);
    for q in [
        "select length(repeat('x', 1000000000))",
        "select sum(length(repeat('x', 10000000 + value))) from generate_series(1, 200)",
        "select cardinality(array_repeat(1, 200000000))",
        // A 1 MB constant copied into 3,000 rows: 3 GB (it overflowed Arrow's offsets).
        "select length(string_agg(repeat('x', 1000000), ',')) from generate_series(1, 3000)",
        // Each row's value is small, their aggregate is 2 GB: the memory pool refuses it.
        "select length(string_agg(repeat('x', 20000 + value % 2), ',')) \
         from generate_series(1, 100000)",
    ] {
        let r = server.sql("demo", q, "json");
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        assert_eq!(r.json()["code"], "resources_exhausted", "{q}: {}", r.text());
        assert!(
            r.text().contains("limits.query_memory"),
            "{q}: {}",
            r.text()
        );
    }
    let out = psql(&server, &["-c", "select length(repeat('x', 1000000000))"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("53200") && err.contains("repeat()"), "{err}");
    // Small values are unaffected.
    let r = server.sql("demo", "select repeat('ab', 3) as r", "json");
    assert_eq!(r.json()[0]["r"], "ababab", "{}", r.text());
}
