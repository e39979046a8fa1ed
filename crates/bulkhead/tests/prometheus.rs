//! A real Prometheus server (Debian package `prometheus`, installed by `scripts/test`)
//! scrapes itself and a static exposition file (served by `python3 -m http.server`)
//! every second and remote-writes to the real `bulkhead serve` with a bearer token. The
//! samples must become queryable by SQL with their labels as tags, a series that
//! disappears must send staleness markers that are counted but not stored, and no
//! remote-write request may be rejected.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestServer, free_port, url_encode};

const TOKEN: &str = "prom-remote-write-token";
/// How long samples may take to arrive (Prometheus start, first scrape, first send).
const ARRIVAL: Duration = Duration::from_secs(90);

/// A child process killed by PID (and reaped) on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `python3 -m http.server` on a free loopback port serving a temp dir whose file
/// `metrics` is a Prometheus text exposition the test rewrites.
struct Exporter {
    _child: Killed,
    port: u16,
    dir: tempfile::TempDir,
}

impl Exporter {
    fn start(metrics: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("metrics"), metrics).expect("metrics file");
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn python3 -m http.server");
        Self {
            _child: Killed(child),
            port,
            dir,
        }
    }

    /// Replace the exposition atomically (write, then rename).
    fn set(&self, metrics: &str) {
        let tmp = self.dir.path().join("metrics.tmp");
        std::fs::write(&tmp, metrics).expect("metrics file");
        std::fs::rename(&tmp, self.dir.path().join("metrics")).expect("rename");
    }
}

/// A Prometheus server on a free loopback port with its own config and TSDB dir;
/// killed by PID on drop.
struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(bulkhead: &TestServer, exporter: &Exporter) -> Self {
        let binary = which("prometheus").unwrap_or_else(|| {
            panic!("`prometheus` is not installed (scripts/test installs the Debian package)")
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        std::fs::write(
            dir.path().join("rules.yml"),
            "groups:\n  - name: test\n    interval: 1s\n    rules:\n      \
             - record: job:up:sum\n        expr: sum by (job) (up)\n",
        )
        .expect("rules");
        let config = format!(
            r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{rules}"]
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:{port}"]
  - job_name: exporter
    static_configs:
      - targets: ["127.0.0.1:{exporter}"]
remote_write:
  - url: "http://{bulkhead}/api/v1/prom/write?db=prom"
    authorization:
      credentials: "{TOKEN}"
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
"#,
            rules = dir.path().join("rules.yml").display(),
            bulkhead = bulkhead.http_addr,
            exporter = exporter.port,
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("config");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        Self { child, port, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("prometheus.log")
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(cmd: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(cmd))
        .find(|p| Path::new(p).is_file())
}

/// `bulkhead_prom_stale_samples_dropped_total` from `/metrics`.
fn stale_dropped(s: &TestServer) -> f64 {
    let auth = format!("Token {TOKEN}");
    let text = s
        .request("GET", "/metrics", &[("Authorization", &auth)], b"")
        .text();
    common::metric(&text, "bulkhead_prom_stale_samples_dropped_total")
        .unwrap_or_else(|| panic!("no bulkhead_prom_stale_samples_dropped_total in:\n{text}"))
}

fn sql(s: &TestServer, q: &str) -> (u16, String) {
    let path = format!("/api/v1/sql?db=prom&q={}&format=json", url_encode(q));
    let auth = format!("Token {TOKEN}");
    let r = s.request("GET", &path, &[("Authorization", &auth)], b"");
    (r.status, r.text())
}

/// Poll `q` until it returns rows that `accept` takes, or fail after [`ARRIVAL`] with
/// both servers' logs.
fn wait_for_rows(
    s: &TestServer,
    prom: &mut Prometheus,
    q: &str,
    accept: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + ARRIVAL;
    loop {
        if let Some(status) = prom.exited() {
            panic!("prometheus exited ({status}):\n{}", prom.log());
        }
        let last = match sql(s, q) {
            (200, body) => {
                let rows: Vec<serde_json::Value> = serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
                if accept(&rows) {
                    return rows;
                }
                (200, body)
            }
            other => other,
        };
        if Instant::now() > deadline {
            panic!(
                "`{q}` did not return the expected rows within {ARRIVAL:?}; last answer \
                 {last:?}\n--- prometheus log ---\n{}\n--- bulkhead log ---\n{}",
                prom.log(),
                s.log()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn prometheus_remote_writes_its_own_metrics_and_they_are_queryable_by_sql() {
    let s = TestServer::start(&["--auth-token", TOKEN]);
    let exporter = Exporter::start("# TYPE demo_gauge gauge\ndemo_gauge{color=\"blue\"} 42\n");
    let mut prom = Prometheus::start(&s, &exporter);
    let instance = format!("127.0.0.1:{}", prom.port);

    // `up` of the self-scrape: at least two scrapes, with the target's labels as tags.
    let up = wait_for_rows(
        &s,
        &mut prom,
        "SELECT job, instance, value, time FROM up WHERE job = 'prometheus' ORDER BY time",
        |rows| rows.len() >= 2,
    );
    for row in &up {
        assert_eq!(row["job"], "prometheus", "{row}");
        assert_eq!(row["instance"], instance.as_str(), "{row}");
        assert_eq!(row["value"].as_f64(), Some(1.0), "{row}");
    }
    assert_ne!(up[0]["time"], up[1]["time"], "one row per scrape: {up:?}");

    // A gauge with an extra label, and a recorded series whose name has colons.
    let build = wait_for_rows(
        &s,
        &mut prom,
        "SELECT version, job, value FROM prometheus_build_info",
        |rows| !rows.is_empty(),
    );
    assert!(
        build[0]["version"]
            .as_str()
            .is_some_and(|v| v.starts_with('2') || v.starts_with('3')),
        "{build:?}"
    );
    assert_eq!(build[0]["value"].as_f64(), Some(1.0), "{build:?}");
    let recorded = wait_for_rows(
        &s,
        &mut prom,
        r#"SELECT job, value FROM "job:up:sum" WHERE job = 'prometheus'"#,
        |rows| !rows.is_empty(),
    );
    assert_eq!(recorded[0]["job"], "prometheus", "{recorded:?}");
    assert_eq!(recorded[0]["value"].as_f64(), Some(1.0), "{recorded:?}");

    // A series that disappears from its target gets a staleness marker from
    // Prometheus: counted, never stored as a row.
    let blue = wait_for_rows(
        &s,
        &mut prom,
        "SELECT color, job, value FROM demo_gauge",
        |rows| !rows.is_empty(),
    );
    assert_eq!(blue[0]["color"], "blue", "{blue:?}");
    assert_eq!(blue[0]["job"], "exporter", "{blue:?}");
    assert_eq!(blue[0]["value"].as_f64(), Some(42.0), "{blue:?}");
    exporter.set("# TYPE demo_gauge gauge\ndemo_gauge{color=\"green\"} 7\n");
    wait_for_rows(
        &s,
        &mut prom,
        "SELECT color FROM demo_gauge WHERE color = 'green'",
        |rows| !rows.is_empty(),
    );
    let deadline = Instant::now() + ARRIVAL;
    while stale_dropped(&s) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "no staleness marker arrived within {ARRIVAL:?}\n--- prometheus log ---\n{}",
            prom.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let (status, body) = sql(
        &s,
        "SELECT count(*) AS n FROM demo_gauge WHERE isnan(value) OR value IS NULL",
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#""n":0"#),
        "staleness markers were stored: {body}"
    );

    // Every remote-write request was accepted: no 4xx in Bulkhead's request metrics,
    // no rejection in its log, no dropped batch in Prometheus's.
    let auth = format!("Token {TOKEN}");
    let metrics = s
        .request("GET", "/metrics", &[("Authorization", &auth)], b"")
        .text();
    let route = "route=\"/api/v1/prom/write\"";
    let statuses: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("bulkhead_http_requests_total{") && l.contains(route))
        .collect();
    assert!(
        statuses.iter().any(|l| l.contains("status=\"204\"")),
        "no accepted remote write in:\n{metrics}"
    );
    assert!(
        !statuses.iter().any(|l| l.contains("status=\"4")),
        "rejected remote writes: {statuses:?}\n--- bulkhead log ---\n{}",
        s.log()
    );
    assert!(
        !s.log().contains("Prometheus remote write rejected"),
        "{}",
        s.log()
    );
    let prom_log = prom.log();
    assert!(
        !prom_log.contains("non-recoverable error"),
        "Prometheus dropped a batch:\n{prom_log}"
    );
}
