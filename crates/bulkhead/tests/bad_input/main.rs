//! Bad input and limits, table-driven, against the real binary (issue 10, part 4; the
//! table is listed in docs/reliability.md, "Bad input and limits"). Every case asserts
//! the exact status, `code` and error text (for the PG port: the connection closes, or
//! the exact SQLSTATE and message). Throughout, another client keeps writing and
//! querying and must never fail; after each case a healthy write and query succeed; at
//! the end every row acknowledged before the table is unchanged and every row the
//! other client was acknowledged is there.

#[path = "../common/mod.rs"]
mod common;
// One module per area, each adding its cases to the table (and tests of its own where a
// case needs more than one request, e.g. a restart).
mod names;
mod queries;
mod storage;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::TestServer;

const TOKEN: &str = "t0k";
const AUTH: (&str, &str) = ("Authorization", "Token t0k");

/// What a case sends.
enum Send {
    Http {
        method: &'static str,
        path: String,
        headers: Vec<(&'static str, &'static str)>,
        body: Vec<u8>,
    },
    /// Raw bytes to the PG port; `startup` first runs a valid startup + password.
    Pg { startup: bool, bytes: Vec<u8> },
}

/// What the server must answer.
enum Expect {
    /// Status, `code`, the exact `error`, and for line-protocol errors the exact
    /// `error_message` of the only rejected line (line 1).
    Http {
        status: u16,
        code: &'static str,
        error: String,
        line_error: Option<String>,
    },
    /// The server closes the connection without sending anything (after the startup
    /// exchange, when there was one).
    PgClosed,
    /// An ErrorResponse with this SQLSTATE and message, then the connection closes.
    PgError {
        sqlstate: &'static str,
        message: &'static str,
    },
}

struct Case {
    name: &'static str,
    send: Send,
    expect: Expect,
}

fn write(body: impl Into<Vec<u8>>) -> Send {
    write_to("/api/v2/write?bucket=b", vec![AUTH], body)
}

fn write_to(
    path: &str,
    headers: Vec<(&'static str, &'static str)>,
    body: impl Into<Vec<u8>>,
) -> Send {
    Send::Http {
        method: "POST",
        path: path.to_string(),
        headers,
        body: body.into(),
    }
}

fn sql(q: &str) -> Send {
    Send::Http {
        method: "GET",
        path: format!("/api/v1/sql?db=b&q={}", common::url_encode(q)),
        headers: vec![AUTH],
        body: Vec::new(),
    }
}

fn http(status: u16, code: &'static str, error: &str) -> Expect {
    Expect::Http {
        status,
        code,
        error: error.to_string(),
        line_error: None,
    }
}

/// A rejected single-line write (nothing written: "parsing failed").
fn line(message: &str) -> Expect {
    Expect::Http {
        status: 400,
        code: "line_protocol",
        error: "parsing failed for line protocol".into(),
        line_error: Some(message.to_string()),
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

fn cases() -> Vec<Case> {
    let mut all = base_cases();
    all.extend(names::cases());
    all.extend(queries::cases());
    all.extend(storage::cases());
    all
}

fn base_cases() -> Vec<Case> {
    let mut bad_utf8 = b"m,t=".to_vec();
    bad_utf8.extend_from_slice(&[0xff, 0xfe]);
    bad_utf8.extend_from_slice(b" f=1 3\n");
    let mut bad_utf8_sql = b"select \xff".to_vec();
    bad_utf8_sql.push(b'1');
    vec![
        Case {
            name: "body over the limit",
            send: write(vec![b'x'; 70_000]),
            expect: http(
                413,
                "payload_too_large",
                "request body exceeds the limit of 65536 bytes (limits.max_body_size)",
            ),
        },
        Case {
            name: "gzip body over the limit once decompressed",
            send: write_to(
                "/api/v2/write?bucket=b",
                vec![AUTH, ("Content-Encoding", "gzip")],
                gzip(&b"m f=1 1\n".repeat(20_000)),
            ),
            expect: http(
                413,
                "payload_too_large",
                "request body exceeds the limit of 65536 bytes (limits.max_body_size)",
            ),
        },
        Case {
            name: "line over the limit",
            send: write(format!("m f=\"{}\" 2\n", "x".repeat(300))),
            expect: line("line is 308 bytes long, over the limit of 200 (limits.max_line_length)"),
        },
        Case {
            name: "too many tags",
            send: write("m,a=1,b=2,c=3,d=4 f=1 4\n"),
            expect: line("too many tags (more than 3, limits.max_tags_per_line)"),
        },
        Case {
            name: "invalid UTF-8 in a line",
            send: write(bad_utf8),
            expect: line("invalid UTF-8 in tag value at byte 0"),
        },
        Case {
            name: "invalid UTF-8 in a SQL body",
            send: write_to("/api/v1/sql?db=b", vec![AUTH], bad_utf8_sql),
            expect: http(400, "bad_request", "the request body is not valid UTF-8"),
        },
        Case {
            name: "field type conflict",
            send: write("m,t=a f=\"text\" 5\n"),
            expect: line(
                "schema conflict in table `m`: column `f` has type float, line has type string",
            ),
        },
        Case {
            name: "timestamp out of range",
            send: write_to(
                "/api/v2/write?bucket=b&precision=s",
                vec![AUTH],
                "m f=1 9223372036854775807\n",
            ),
            expect: line(
                "timestamp 9223372036854775807 is out of range for precision `s`: in \
                 nanoseconds it must fit in a signed 64-bit integer (years 1677 to 2262)",
            ),
        },
        Case {
            name: "timestamp not an integer",
            send: write("m f=1 1.5e9\n"),
            expect: line("invalid timestamp `1.5e9` (expected an integer)"),
        },
        Case {
            name: "unknown precision",
            send: write_to(
                "/api/v2/write?bucket=b&precision=h",
                vec![AUTH],
                "m f=1 6\n",
            ),
            expect: http(
                400,
                "bad_request",
                "unknown precision `h` (expected ns, us, ms or s; v1 also n and u)",
            ),
        },
        Case {
            name: "gzip that does not decompress",
            send: write_to(
                "/api/v2/write?bucket=b",
                vec![AUTH, ("Content-Encoding", "gzip")],
                "this is plain text, not gzip",
            ),
            expect: http(
                400,
                "bad_request",
                "gzip body does not decompress: invalid gzip header",
            ),
        },
        Case {
            name: "truncated gzip",
            send: write_to(
                "/api/v2/write?bucket=b",
                vec![AUTH, ("Content-Encoding", "gzip")],
                gzip(b"m f=1 7\n")[..12].to_vec(),
            ),
            expect: http(
                400,
                "bad_request",
                "gzip body does not decompress: incomplete deflate stream",
            ),
        },
        Case {
            name: "SQL syntax error",
            send: sql("selec * from m"),
            expect: http(
                400,
                "plan",
                "SQL error: ParserError(\"Expected: an SQL statement, found: selec at Line: 1, \
                 Column: 1\")",
            ),
        },
        Case {
            name: "SQL on an unknown table",
            send: sql("select * from nope"),
            expect: http(
                400,
                "plan",
                "Error during planning: table 'bulkhead.b.nope' not found",
            ),
        },
        Case {
            name: "SQL on an unknown database",
            send: Send::Http {
                method: "GET",
                path: "/api/v1/sql?db=nope&q=select%20*%20from%20m".into(),
                headers: vec![AUTH],
                body: Vec::new(),
            },
            // The SQL layer resolves tables per database: an unknown database is an
            // unknown table (the catalog is created on first write).
            expect: http(
                400,
                "plan",
                "Error during planning: table 'bulkhead.nope.m' not found",
            ),
        },
        Case {
            name: "query over the memory limit",
            send: sql("select k, count(*) from big group by k order by k"),
            expect: http(
                400,
                "resources_exhausted",
                "query exceeded its memory limit of 256KiB (limits.query_memory): failed to allocate \
                 2.4 MB for FinalHashAggregateStream[0]",
            ),
        },
        Case {
            name: "wrong token",
            send: write_to(
                "/api/v2/write?bucket=b",
                vec![("Authorization", "Token nope")],
                "m f=1 8\n",
            ),
            expect: http(401, "unauthorized", "invalid token"),
        },
        Case {
            name: "missing token",
            send: write_to("/api/v2/write?bucket=b", vec![], "m f=1 8\n"),
            expect: http(
                401,
                "unauthorized",
                "missing token: send `Authorization: Token <token>` (or Bearer, basic auth, \
                 or v1 `p=`)",
            ),
        },
        Case {
            name: "PG: an HTTP request on the PG port",
            send: Send::Pg {
                startup: false,
                bytes: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            },
            expect: Expect::PgClosed,
        },
        Case {
            name: "PG: 64 bytes of 0xff",
            send: Send::Pg {
                startup: false,
                bytes: vec![0xff; 64],
            },
            expect: Expect::PgClosed,
        },
        Case {
            name: "PG: startup with protocol version 2.0",
            send: Send::Pg {
                startup: false,
                bytes: [8u32.to_be_bytes(), 0x0002_0000u32.to_be_bytes()].concat(),
            },
            expect: Expect::PgClosed,
        },
        Case {
            name: "PG: startup message claiming 2 GiB",
            send: Send::Pg {
                startup: false,
                bytes: [0x7fff_ffffu32.to_be_bytes(), 196_608u32.to_be_bytes()].concat(),
            },
            expect: Expect::PgClosed,
        },
        Case {
            name: "PG: unknown message type after authentication",
            send: Send::Pg {
                startup: true,
                bytes: b"\xfe\x00\x00\x00\x05Z".to_vec(),
            },
            expect: Expect::PgClosed,
        },
        Case {
            name: "PG: query message claiming 4 GiB after authentication",
            send: Send::Pg {
                startup: true,
                bytes: b"Q\xff\xff\xff\xffselect 1".to_vec(),
            },
            expect: Expect::PgClosed,
        },
        Case {
            name: "PG: wrong password",
            send: Send::Pg {
                startup: false,
                bytes: [startup_message(), password_message("nope")].concat(),
            },
            expect: Expect::PgError {
                sqlstate: "28P01",
                message: "Password authentication failed for user \"u\"",
            },
        },
    ]
}

#[test]
fn bad_input_gets_exact_statuses_and_messages_and_nothing_changes() {
    let s = TestServer::start(&[
        "--auth-token",
        TOKEN,
        "--max-body-size",
        "64KiB",
        "--max-line-length",
        "200",
        "--max-tags-per-line",
        "3",
        "--query-memory",
        "256KiB",
    ]);
    let post = |path: &str, body: &[u8]| s.request("POST", path, &[AUTH], body);

    // Acknowledged before the table: a few rows of every type, and `big`, which a
    // high-cardinality GROUP BY cannot aggregate in 256 KiB.
    let r = post(
        "/api/v2/write?bucket=b",
        b"m,t=a f=1,i=2i,u=3u,b=true,s=\"x y\" 1\nm,t=b f=2.5 2\n",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    for chunk in 0..20 {
        let body: String = (0..1000)
            .map(|i| {
                let n = chunk * 1000 + i;
                format!("big,k=key-{n:06} v={n} {n}\n")
            })
            .collect();
        let r = post("/api/v2/write?bucket=b", body.as_bytes());
        assert_eq!(r.status, 204, "{}", r.text());
    }
    let snapshot = || {
        let m = query(&s, "b", "select * from m order by time", "csv");
        assert_eq!(m.status, 200, "{}", m.text());
        let big = query(&s, "b", "select count(*) as n, sum(v) as s from big", "csv");
        assert_eq!(big.status, 200, "{}", big.text());
        (m.text(), big.text())
    };
    let before = snapshot();
    assert_eq!(before.1, "n,s\n20000,199990000.0\n");

    let stop = AtomicBool::new(false);
    let (other_acked, other_failures) = std::thread::scope(|scope| {
        // The other client: writes and queries throughout; every request must succeed.
        let other = scope.spawn(|| {
            let mut acked = 0u64;
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) || acked < 3 {
                let r = post(
                    "/api/v2/write?bucket=other",
                    format!("o n={acked} {acked}\n").as_bytes(),
                );
                if r.status == 204 {
                    acked += 1;
                } else {
                    failures.push(format!("write: {} {}", r.status, r.text()));
                }
                let r = query(&s, "other", "select count(*) as c from o", "csv");
                if r.status != 200 {
                    failures.push(format!("query: {} {}", r.status, r.text()));
                }
            }
            (acked, failures)
        });

        // Stop the other client however this scope ends: a failed case panics here,
        // and the scope waits for the other thread before propagating the panic.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stop);
        for (i, case) in cases().into_iter().enumerate() {
            run_case(&s, &case);
            // A healthy write and query right after each case.
            let r = post(
                "/api/v2/write?bucket=healthy",
                format!("h n={i}i {i}\n").as_bytes(),
            );
            assert_eq!(r.status, 204, "after {:?}: {}", case.name, r.text());
            let r = query(&s, "healthy", "select count(*) as c from h", "csv");
            assert_eq!(r.text(), format!("c\n{}\n", i + 1), "after {:?}", case.name);
        }
        drop(_stop);
        other.join().expect("other client thread")
    });
    assert!(
        other_failures.is_empty(),
        "the other client failed: {other_failures:#?}"
    );

    // A well-behaved PG client is still served.
    let rows = pg_simple_query(s.pg_addr, "select count(*) from m");
    assert_eq!(rows, vec![vec!["2".to_string()]]);

    // Nothing acknowledged changed; everything the other client was told is there.
    assert_eq!(snapshot(), before, "{}", s.log());
    let r = query(&s, "other", "select count(*) as c from o", "csv");
    assert_eq!(r.text(), format!("c\n{other_acked}\n"));
    assert_eq!(s.get("/health").status, 200);
}

/// `GET /api/v1/sql` with the token.
fn query(s: &TestServer, db: &str, q: &str, format: &str) -> common::Reply {
    let path = format!(
        "/api/v1/sql?db={db}&q={}&format={format}",
        common::url_encode(q)
    );
    s.request("GET", &path, &[AUTH], b"")
}

fn run_case(s: &TestServer, case: &Case) {
    let name = case.name;
    match (&case.send, &case.expect) {
        (
            Send::Http {
                method,
                path,
                headers,
                body,
            },
            Expect::Http {
                status,
                code,
                error,
                line_error,
            },
        ) => {
            let r = s.request(method, path, headers, body);
            assert_eq!(r.status, *status, "{name}: {}", r.text());
            let v = r.json();
            assert_eq!(v["code"], *code, "{name}: {v}");
            assert_eq!(v["error"], error.as_str(), "{name}: {v}");
            match line_error {
                Some(message) => {
                    let data = v["data"].as_array().expect("data");
                    assert_eq!(data.len(), 1, "{name}: {v}");
                    assert_eq!(data[0]["line_number"], 1, "{name}: {v}");
                    assert_eq!(data[0]["error_message"], message.as_str(), "{name}: {v}");
                }
                None => assert!(v.get("data").is_none(), "{name}: {v}"),
            }
            if *status == 401 {
                assert_eq!(
                    r.header("WWW-Authenticate"),
                    Some("Token realm=\"bulkhead\"")
                );
            }
        }
        (Send::Pg { startup, bytes }, expect) => {
            let mut sent = Vec::new();
            if *startup {
                sent.extend(startup_message());
                sent.extend(password_message(TOKEN));
            }
            sent.extend_from_slice(bytes);
            let reply = pg_exchange(s.pg_addr, &sent);
            let messages = pg_messages(&reply);
            let mut rest = messages.as_slice();
            if *startup {
                // The startup exchange, up to ReadyForQuery; the garbage comes after.
                let ready = rest
                    .iter()
                    .position(|(t, _)| *t == b'Z')
                    .unwrap_or_else(|| panic!("{name}: no ReadyForQuery in {messages:?}"));
                rest = &rest[ready + 1..];
            }
            match expect {
                Expect::PgClosed => assert!(rest.is_empty(), "{name}: got {rest:?}"),
                Expect::PgError { sqlstate, message } => {
                    let error = rest
                        .iter()
                        .find(|(t, _)| *t == b'E')
                        .unwrap_or_else(|| panic!("{name}: no ErrorResponse in {rest:?}"));
                    let fields = error_fields(&error.1);
                    assert_eq!(
                        fields.get(&b'C').map(String::as_str),
                        Some(*sqlstate),
                        "{name}"
                    );
                    assert_eq!(
                        fields.get(&b'M').map(String::as_str),
                        Some(*message),
                        "{name}"
                    );
                }
                Expect::Http { .. } => unreachable!("{name}: HTTP expectation for a PG case"),
            }
        }
        (Send::Http { .. }, _) => panic!("{name}: PG expectation for an HTTP case"),
    }
}

/// StartupMessage (protocol 3.0) for user `u`, database `b`.
fn startup_message() -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0u\0database\0b\0\0");
    [((body.len() + 4) as u32).to_be_bytes().to_vec(), body].concat()
}

fn password_message(password: &str) -> Vec<u8> {
    let mut m = vec![b'p'];
    m.extend_from_slice(&((password.len() + 5) as u32).to_be_bytes());
    m.extend_from_slice(password.as_bytes());
    m.push(0);
    m
}

/// Send `bytes`, then read until the server closes (bounded: a server that keeps the
/// connection open fails the test instead of hanging it).
fn pg_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut c = TcpStream::connect(addr).expect("connect to the PG port");
    c.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    // The server may close before reading everything; that is an answer too.
    let _ = c.write_all(bytes);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("the PG server neither answered nor closed: {e}; got {out:?}"),
        }
    }
}

/// Split backend messages: `(type, body)`.
fn pg_messages(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while b.len() >= 5 {
        let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
        let end = (1 + len).min(b.len());
        out.push((b[0], b[5..end].to_vec()));
        b = &b[end..];
    }
    assert!(b.is_empty(), "trailing bytes {b:?}");
    out
}

fn error_fields(body: &[u8]) -> std::collections::HashMap<u8, String> {
    body.split(|&c| c == 0)
        .filter(|f| !f.is_empty())
        .map(|f| (f[0], String::from_utf8_lossy(&f[1..]).into_owned()))
        .collect()
}

/// A minimal well-behaved PG client: startup, password, one simple query, terminate.
fn pg_simple_query(addr: SocketAddr, sql: &str) -> Vec<Vec<String>> {
    let mut q = vec![b'Q'];
    q.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
    q.extend_from_slice(sql.as_bytes());
    q.push(0);
    let terminate = b"X\x00\x00\x00\x04";
    let sent = [
        startup_message(),
        password_message(TOKEN),
        q,
        terminate.to_vec(),
    ]
    .concat();
    let messages = pg_messages(&pg_exchange(addr, &sent));
    assert!(
        messages.iter().all(|(t, _)| *t != b'E'),
        "PG error: {messages:?}"
    );
    messages
        .iter()
        .filter(|(t, _)| *t == b'D')
        .map(|(_, body)| {
            let n = u16::from_be_bytes([body[0], body[1]]) as usize;
            let mut pos = 2;
            (0..n)
                .map(|_| {
                    let len = i32::from_be_bytes([
                        body[pos],
                        body[pos + 1],
                        body[pos + 2],
                        body[pos + 3],
                    ]);
                    pos += 4;
                    if len < 0 {
                        return "NULL".to_string();
                    }
                    let v = String::from_utf8_lossy(&body[pos..pos + len as usize]).into_owned();
                    pos += len as usize;
                    v
                })
                .collect()
        })
        .collect()
}
