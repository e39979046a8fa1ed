//! Queries that must not crash the server: deep and wide expressions, huge parameter
//! numbers (issue 22, items 1 and 2). The table's cases expect a clean refusal; the
//! tests below check the answers that must be right (a 2,500-term `OR`) and inputs
//! larger than the table server's 64 KiB body limit.

use super::common::TestServer;
use super::{AUTH, Case, Expect, Send, TOKEN, http, pg_exchange, pg_messages, sql};

/// What a statement nested past the limit gets, over HTTP and PG.
const TOO_DEEP: &str = "expression too deep: it nests more than 1000 levels (a long chain of \
                        OR is fine; every other operator, function call and subquery adds a \
                        level)";

/// `select 1+1+…+1` with `terms` terms.
fn sum_of_ones(terms: usize) -> String {
    let mut q = String::from("select 1");
    for _ in 1..terms {
        q.push_str("+1");
    }
    q
}

/// A frontend message: type byte, length, body.
fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// StartupMessage (protocol 3.0) for user `u` and database `db`.
fn startup_message(db: &str) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    body.extend_from_slice(format!("user\0u\0database\0{db}\0\0").as_bytes());
    [((body.len() + 4) as u32).to_be_bytes().to_vec(), body].concat()
}

/// A simple-protocol Query, then Terminate (so the server closes the connection).
fn pg_query(q: &str) -> Vec<u8> {
    let mut body = q.as_bytes().to_vec();
    body.push(0);
    [message(b'Q', &body), message(b'X', b"")].concat()
}

/// What psql's `\gdesc` sends: Parse of the unnamed statement, Describe it, Sync; then
/// Terminate.
fn pg_parse_describe(q: &str) -> Vec<u8> {
    let mut parse = vec![0]; // unnamed statement
    parse.extend_from_slice(q.as_bytes());
    parse.push(0);
    parse.extend_from_slice(&0u16.to_be_bytes()); // no parameter types
    [
        message(b'P', &parse),
        message(b'D', b"S\0"),
        message(b'S', b""),
        message(b'X', b""),
    ]
    .concat()
}

pub(crate) fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "SQL: 1+1+…+1 with 2,000 terms",
            send: sql(&sum_of_ones(2_000)),
            expect: http(400, "too_complex", TOO_DEEP),
        },
        Case {
            name: "PG: 1+1+…+1 with 2,000 terms",
            send: Send::Pg {
                startup: true,
                bytes: pg_query(&sum_of_ones(2_000)),
            },
            expect: Expect::PgError {
                sqlstate: "54001",
                message: TOO_DEEP,
            },
        },
        Case {
            // 200 KB: over the table server's HTTP body limit, not over PG's.
            name: "PG: 1+1+…+1 with 100,000 terms",
            send: Send::Pg {
                startup: true,
                bytes: pg_query(&sum_of_ones(100_000)),
            },
            expect: Expect::PgError {
                sqlstate: "54001",
                message: TOO_DEEP,
            },
        },
        Case {
            name: "PG: select $100000000000 described (psql's \\gdesc)",
            send: Send::Pg {
                startup: true,
                bytes: pg_parse_describe("select $100000000000"),
            },
            expect: Expect::PgError {
                sqlstate: "54023",
                message: "too many parameters: the statement refers to $100000000000, but at \
                          most 65535 are allowed",
            },
        },
    ]
}

/// `host = 'host-0000' OR …` over `hosts`.
fn or_of_hosts(hosts: &[String]) -> String {
    hosts
        .iter()
        .map(|h| format!("host = '{h}'"))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// The answers that must be right, and inputs past the table server's body limit: a
/// 2,500-term `OR` (what Grafana sends for "All") over HTTP and PG, and a 100,000-term
/// sum over HTTP. The server stays up throughout.
#[test]
fn long_or_chains_are_answered_and_huge_depths_refused_over_http() {
    let s = TestServer::start(&["--auth-token", TOKEN]);
    let hosts: Vec<String> = (0..3_000).map(|i| format!("host-{i:04}")).collect();
    let lines: String = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| format!("cpu,host={h} usage={i} 1\n"))
        .collect();
    let r = s.request("POST", "/api/v2/write?bucket=g", &[AUTH], lines.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());

    let wanted = &hosts[500..];
    let q = format!(
        "select count(*) as n, sum(usage) as s from cpu where {}",
        or_of_hosts(wanted)
    );
    let expected = format!("n,s\n2500,{}.0\n", (500..3_000).sum::<usize>());
    // POSTed as the body (the text is ~45 KB).
    let r = s.request("POST", "/api/v1/sql?db=g&format=csv", &[AUTH], q.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), expected);

    // The same over PG, simple protocol.
    let mut sent = startup_message("g");
    sent.extend(super::password_message(TOKEN));
    sent.extend(pg_query(&q));
    let messages = pg_messages(&pg_exchange(s.pg_addr, &sent));
    assert!(
        messages.iter().all(|(t, _)| *t != b'E'),
        "PG error: {messages:?}"
    );
    let row = messages
        .iter()
        .find(|(t, _)| *t == b'D')
        .map(|(_, body)| String::from_utf8_lossy(body).into_owned())
        .expect("a DataRow");
    assert!(row.contains("2500"), "{row:?}");

    // 100,000 terms (200 KB, under the default body limit): refused, not a crash.
    let r = s.request(
        "POST",
        "/api/v1/sql?db=g&format=csv",
        &[AUTH],
        sum_of_ones(100_000).as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["code"], "too_complex", "{v}");
    assert_eq!(v["error"], TOO_DEEP, "{v}");
    // 1,000,000 terms (2 MB): refused from its tokens, before any tree is built.
    let r = s.request(
        "POST",
        "/api/v1/sql?db=g&format=csv",
        &[AUTH],
        sum_of_ones(1_000_000).as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["code"], "too_complex", "{v}");
    assert_eq!(
        v["error"],
        "statement too complex: it has 1000000 operators and keywords, over the limit of \
         200000",
        "{v}"
    );

    // Still up, and still right.
    assert_eq!(s.get("/health").status, 200);
    let r = s.request("POST", "/api/v1/sql?db=g&format=csv", &[AUTH], q.as_bytes());
    assert_eq!(r.text(), expected);
}
