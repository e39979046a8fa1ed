//! `TestServer`: runs the real `bulkhead serve` binary on free loopback ports with a
//! temporary data dir, waits for `/health`, and kills it by PID when dropped. Requests
//! go through a minimal blocking HTTP/1.1 client so tests need no async runtime.

#![allow(dead_code, unreachable_pub)]

pub mod influx;
pub mod rollup;
pub mod tls;
pub mod tmpfs;
pub mod weed;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running `bulkhead serve`.
pub struct TestServer {
    child: Option<Child>,
    data: DataDir,
    pub http_addr: SocketAddr,
    pub pg_addr: SocketAddr,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    log_path: PathBuf,
}

/// The temp dir lives as long as the server (and across restarts).
enum DataDir {
    Owned(tempfile::TempDir),
    Borrowed(PathBuf),
}

impl DataDir {
    fn path(&self) -> &Path {
        match self {
            DataDir::Owned(t) => t.path(),
            DataDir::Borrowed(p) => p,
        }
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The `bulkhead` binary to run: `BULKHEAD_TEST_BINARY` if set (e.g. a copy that a
/// long run keeps using while the checkout is rebuilt), else the one cargo built.
pub fn server_binary() -> String {
    std::env::var("BULKHEAD_TEST_BINARY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_bulkhead").to_string())
}

pub use bulkhead_testkit::{free_port, free_port_pair};

impl TestServer {
    /// Start with default options plus `args` (e.g. `["--auth-token", "t"]`).
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// Start with extra flags and environment variables.
    pub fn start_with_env(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = free_port_pair();
        let mut s = Self {
            child: None,
            data: DataDir::Owned(dir),
            http_addr: SocketAddr::from(([127, 0, 0, 1], ports.0)),
            pg_addr: SocketAddr::from(([127, 0, 0, 1], ports.1)),
            args: args.iter().map(|a| a.to_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log_path: PathBuf::new(),
        };
        s.log_path = s.data.path().join("server.log");
        s.spawn();
        s
    }

    /// Start on an existing data dir (not deleted on drop).
    pub fn start_in(dir: &Path, args: &[&str]) -> Self {
        Self::start_in_with_env(dir, args, &[])
    }

    /// Start on an existing data dir with extra environment variables.
    pub fn start_in_with_env(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let ports = free_port_pair();
        let mut s = Self {
            child: None,
            data: DataDir::Borrowed(dir.to_path_buf()),
            http_addr: SocketAddr::from(([127, 0, 0, 1], ports.0)),
            pg_addr: SocketAddr::from(([127, 0, 0, 1], ports.1)),
            args: args.iter().map(|a| a.to_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log_path: dir.join("server.log"),
        };
        s.spawn();
        s
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) {
        let data = self.data.path().join("data");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open server log");
        let mut cmd = Command::new(server_binary());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .arg("--http-addr")
            .arg(self.http_addr.to_string())
            .arg("--pg-addr")
            .arg(self.pg_addr.to_string())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log);
        // A BULKHEAD_* variable from the developer's shell must not leak into tests.
        for (k, _) in std::env::vars() {
            if k.starts_with("BULKHEAD_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn bulkhead serve"));
        self.wait_ready(Duration::from_secs(60));
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "bulkhead serve exited during startup ({status}):\n{}",
                    self.log()
                );
            }
            if self.healthy() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "bulkhead serve not healthy after {timeout:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `/health` answers 200: over plain HTTP, or with `curl -k` when the server was
    /// started with `--http-tls-cert` (HTTPS only).
    fn healthy(&self) -> bool {
        if self.args.iter().any(|a| a == "--http-tls-cert") {
            let url = format!("https://{}/health", self.http_addr);
            return Command::new("curl")
                .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", &url])
                .output()
                .is_ok_and(|o| o.stdout == b"200");
        }
        self.try_request("GET", "/health", &[], b"")
            .is_ok_and(|r| r.status == 200)
    }

    /// The server's stderr/stdout so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `kill -9`, then start again on the same data dir and ports.
    pub fn kill9_and_restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// SIGKILL by PID and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM by PID; wait (bounded) for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("server running");
        let pid = c.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = c.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "server did not exit within {timeout:?} of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Restart after `terminate` or `kill9`.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        self.spawn();
    }

    /// `GET /api/v1/sql` with `db`, `q` and `format` URL-encoded.
    pub fn sql(&self, db: &str, q: &str, format: &str) -> Reply {
        let path = format!(
            "/api/v1/sql?db={}&q={}&format={}",
            url_encode(db),
            url_encode(q),
            url_encode(format)
        );
        self.get(&path)
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], b"")
    }

    pub fn post(&self, path: &str, body: impl AsRef<[u8]>) -> Reply {
        self.request("POST", path, &[], body.as_ref())
    }

    /// A request with extra headers; panics on a transport error.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()))
    }

    /// One HTTP/1.1 request on a fresh connection (`Connection: close`).
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Reply> {
        http_request(self.http_addr, method, path, headers, body)
    }
}

/// One HTTP/1.1 request to `addr` on a fresh connection (`Connection: close`), for
/// servers other than Bulkhead too (Prometheus).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    // The server may answer (413) before reading the whole body.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Percent-encode everything but unreserved characters (RFC 3986).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_response(raw: &[u8]) -> std::io::Result<Reply> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("non-UTF-8 headers"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("empty response"))?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body (truncated?)"))?;
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// Decode a chunked body; `None` if it is malformed or lacks the final 0-size chunk.
fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// The value of an unlabelled (or exactly-labelled) sample in Prometheus text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Check that `text` is well-formed Prometheus text exposition: every sample line is
/// `name{labels} value`, every sampled family has a `# TYPE`.
pub fn assert_prometheus_text(text: &str) {
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let name = parts.next().expect("TYPE name");
            let kind = parts.next().expect("TYPE kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad type line: {line}"
            );
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line: {line}"));
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value in: {line}"
        );
        let name = series.split('{').next().unwrap_or(series);
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in: {line}"
        );
        if series.contains('{') {
            assert!(series.ends_with('}'), "unclosed labels in: {line}");
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "sample without # TYPE: {line}");
    }
}

/// Status line + headers (lower-cased names) and body of one response read off a raw
/// socket (tests that need the connection itself: keep-alive, refusals mid-body).
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Read one HTTP/1.1 response with a Content-Length body (what the server sends) from `s`.
pub fn read_answer(s: &mut TcpStream) -> Answer {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "connection closed mid-head");
        raw.push(byte[0]);
    }
    let head = String::from_utf8(raw).unwrap().to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    Answer {
        status,
        head,
        body: String::from_utf8(body).unwrap(),
    }
}
